//! Rise/fall hysteresis: how many probe results in a row flip a backend's verdict. Pure:
//! results in, flips out.

/// One backend's verdict and its run of contrary results.
///
/// Invariant: `run` counts consecutive results that disagree with `alive`; it resets to
/// zero on any agreeing result and on a flip.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Hysteresis {
    alive: bool,
    run: u32,
}

impl Hysteresis {
    /// Starts with a verdict (backends start alive).
    pub fn new(alive: bool) -> Hysteresis {
        Hysteresis { alive, run: 0 }
    }

    /// The current verdict.
    #[cfg(test)]
    fn is_alive(&self) -> bool {
        self.alive
    }

    /// Records one probe result; returns the new verdict when it flips: `fall` failures
    /// in a row take an up backend down, `rise` successes bring a down one up.
    pub fn observe(&mut self, ok: bool, rise: u32, fall: u32) -> Option<bool> {
        if ok == self.alive {
            self.run = 0;
            return None;
        }
        self.run += 1;
        let needed = if self.alive { fall } else { rise };
        if self.run >= needed.max(1) {
            self.alive = ok;
            self.run = 0;
            return Some(ok);
        }
        None
    }

    /// Forces the verdict down (passive marking); returns true when it was up.
    pub fn force_down(&mut self) -> bool {
        let was = self.alive;
        self.alive = false;
        self.run = 0;
        was
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rise_and_fall() {
        let mut h = Hysteresis::new(true);
        // fall = 3: two failures are tolerated, a success resets the run.
        assert_eq!(h.observe(false, 2, 3), None);
        assert_eq!(h.observe(false, 2, 3), None);
        assert_eq!(h.observe(true, 2, 3), None);
        assert_eq!(h.observe(false, 2, 3), None);
        assert_eq!(h.observe(false, 2, 3), None);
        assert_eq!(h.observe(false, 2, 3), Some(false));
        assert!(!h.is_alive());
        // Further failures change nothing; rise = 2 successes bring it back.
        assert_eq!(h.observe(false, 2, 3), None);
        assert_eq!(h.observe(true, 2, 3), None);
        assert_eq!(h.observe(false, 2, 3), None);
        assert_eq!(h.observe(true, 2, 3), None);
        assert_eq!(h.observe(true, 2, 3), Some(true));
    }

    #[test]
    fn forced_down_needs_rise_to_return() {
        let mut h = Hysteresis::new(true);
        assert!(h.force_down());
        assert!(!h.force_down());
        assert_eq!(h.observe(true, 2, 3), None);
        assert_eq!(h.observe(true, 2, 3), Some(true));
    }

    #[test]
    fn one_is_immediate() {
        let mut h = Hysteresis::new(true);
        assert_eq!(h.observe(false, 1, 1), Some(false));
        assert_eq!(h.observe(true, 1, 1), Some(true));
    }
}
