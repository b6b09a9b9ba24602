//! `slow_start`: how far a backend that came up (new or recovered) has ramped toward its
//! full weight. Pure: takes how long it has been up and the configured span.

use std::time::Duration;

/// A fully ramped backend (the unit of a ramp).
pub const RAMP_ONE: u32 = 1024;

/// The least a ramping backend counts for (1/16 of its weight), so a backend that has
/// just come up still gets some traffic and its first requests warm it.
pub const RAMP_FLOOR: u32 = RAMP_ONE / 16;

/// `RAMP_ONE × min(1, up_for / span)`, at least `RAMP_FLOOR`; `RAMP_ONE` when the
/// backend has been up since lbd started (`up_for` is `None`).
pub fn ramp(up_for: Option<Duration>, span: Duration) -> u32 {
    match up_for {
        Some(up) if up < span => {
            // up < span, so the quotient is below RAMP_ONE and fits in u32.
            let r = up.as_nanos() * u128::from(RAMP_ONE) / span.as_nanos();
            (r as u32).max(RAMP_FLOOR)
        }
        _ => RAMP_ONE,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn linear_with_a_floor() {
        let span = Duration::from_secs(30);
        let table = [
            (None, RAMP_ONE),
            (Some(Duration::ZERO), RAMP_FLOOR),
            (Some(Duration::from_secs(1)), RAMP_FLOOR),
            (Some(Duration::from_secs(15)), RAMP_ONE / 2),
            (Some(Duration::from_millis(22_500)), RAMP_ONE * 3 / 4),
            (Some(span), RAMP_ONE),
            (Some(Duration::from_secs(3600)), RAMP_ONE),
        ];
        for (up, want) in table {
            assert_eq!(ramp(up, span), want, "{up:?}");
        }
    }
}
