//! The smooth weighted sequence (nginx's smooth weighted round-robin), computed once per
//! snapshot so that a pick only advances a shared cursor over it.
//!
//! nginx keeps a `current` weight per backend and, per pick, adds every weight, takes the
//! largest `current` (the first on ties) and subtracts the total from it. That is state
//! updated on every pick; here the same sequence is laid out in a table of one period
//! (the sum of the weights, after dividing them by their gcd), so workers share it
//! through one `AtomicUsize`.

use std::fmt;

/// Longest period kept. Larger weight sums are scaled down to about this many slots
/// (each backend keeps at least one), which changes shares by at most ~n/65536.
const MAX_SLOTS: u64 = 1 << 16;

/// Work (slots × backends) allowed for the exact nginx construction; beyond it (many
/// thousands of backends) the sequence is built by virtual deadlines instead, which is
/// as smooth but may order equal-deadline slots differently from nginx.
const EXACT_BUDGET: u64 = 1 << 26;

/// One period of the smooth weighted sequence: backend indexes, each appearing in
/// proportion to its weight. Invariant: empty only when there are no backends.
pub struct SmoothTable {
    slots: Box<[u16]>,
}

impl SmoothTable {
    /// The sequence for `weights` (each ≥ 1; at most `u16::MAX + 1` backends, config
    /// allows 10000).
    pub fn new(weights: &[u32]) -> SmoothTable {
        assert!(
            weights.len() <= usize::from(u16::MAX) + 1,
            "too many backends"
        );
        let weights = reduced(weights);
        let period: u64 = weights.iter().sum();
        let slots = if period * weights.len() as u64 <= EXACT_BUDGET {
            nginx_order(&weights, period)
        } else {
            deadline_order(&weights)
        };
        SmoothTable {
            slots: slots.into_boxed_slice(),
        }
    }

    /// Slots in one period.
    pub fn len(&self) -> usize {
        self.slots.len()
    }

    /// True when there are no backends.
    pub fn is_empty(&self) -> bool {
        self.slots.is_empty()
    }

    /// The backend of turn `turn` (any integer; taken modulo the period). The table must
    /// not be empty.
    pub fn at(&self, turn: usize) -> usize {
        usize::from(self.slots[turn % self.slots.len()])
    }
}

impl fmt::Debug for SmoothTable {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "SmoothTable({} slots)", self.slots.len())
    }
}

/// Weights divided by their gcd, then scaled to about `MAX_SLOTS` if still larger.
fn reduced(weights: &[u32]) -> Vec<u64> {
    let g = weights.iter().fold(0, |g, &w| gcd(g, u64::from(w))).max(1);
    let mut w: Vec<u64> = weights.iter().map(|&w| u64::from(w).max(1) / g).collect();
    let sum: u64 = w.iter().sum();
    if sum > MAX_SLOTS {
        for x in &mut w {
            *x = (*x * MAX_SLOTS / sum).max(1);
        }
    }
    w
}

fn gcd(a: u64, b: u64) -> u64 {
    if b == 0 {
        a
    } else {
        gcd(b, a % b)
    }
}

/// nginx's construction, run for one period: O(period × backends).
fn nginx_order(weights: &[u64], period: u64) -> Vec<u16> {
    let total = period as i64;
    let mut current = vec![0i64; weights.len()];
    let mut out = Vec::with_capacity(period as usize);
    for _ in 0..period {
        let mut best = 0;
        for (i, &w) in weights.iter().enumerate() {
            current[i] += w as i64;
            if current[i] > current[best] {
                best = i;
            }
        }
        current[best] -= total;
        out.push(best as u16);
    }
    out
}

/// Each backend's k-th slot at virtual time (k + φᵢ) / wᵢ, sorted by time then index,
/// with the phase φᵢ = (i + ½) / n staggering backends of equal weight (otherwise all
/// weight-1 backends would bunch at the same instant). O(period × log period); smooth
/// in the same sense as nginx: a backend's slots are 1/wᵢ of a period apart.
fn deadline_order(weights: &[u64]) -> Vec<u16> {
    let n = weights.len() as u64;
    let mut slots: Vec<(u64, u64, u16)> = Vec::new();
    for (i, &w) in weights.iter().enumerate() {
        // (k + (i + ½) / n) / w as the fraction (2nk + 2i + 1) / (2nw).
        let iu = i as u64;
        slots.extend((0..w).map(|k| (2 * n * k + 2 * iu + 1, 2 * n * w, i as u16)));
    }
    slots.sort_by(|a, b| {
        (u128::from(a.0) * u128::from(b.1))
            .cmp(&(u128::from(b.0) * u128::from(a.1)))
            .then(a.2.cmp(&b.2))
    });
    slots.into_iter().map(|s| s.2).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn seq(weights: &[u32]) -> Vec<usize> {
        let t = SmoothTable::new(weights);
        (0..t.len()).map(|k| t.at(k)).collect()
    }

    #[test]
    fn nginx_sequences() {
        let table: [(&[u32], &[usize]); 5] = [
            (&[5, 1, 1], &[0, 0, 1, 0, 2, 0, 0]),
            (&[1, 1, 1], &[0, 1, 2]),
            (&[2, 1], &[0, 1, 0]),
            (&[10, 5, 5], &[0, 1, 2, 0]),
            (&[3, 2, 1], &[0, 1, 0, 2, 1, 0]),
        ];
        for (weights, want) in table {
            assert_eq!(seq(weights), want, "{weights:?}");
        }
    }

    #[test]
    fn counts_follow_weights() {
        for weights in [&[7u32, 3, 1000, 1][..], &[1000; 200][..]] {
            let t = SmoothTable::new(weights);
            let mut counts = vec![0u64; weights.len()];
            for k in 0..t.len() {
                counts[t.at(k)] += 1;
            }
            let g = weights.iter().fold(0, |g, &w| gcd(g, u64::from(w)));
            let want: Vec<u64> = weights.iter().map(|&w| u64::from(w) / g).collect();
            assert_eq!(counts, want);
        }
    }

    /// Past the exact budget the deadline order is used; it keeps the counts, and no
    /// backend of weight 1 waits more than one period.
    #[test]
    fn many_backends_use_deadlines() {
        let mut weights = vec![1u32; 9000];
        weights[0] = 1000;
        let t = SmoothTable::new(&weights);
        assert_eq!(t.len(), 9999);
        let heavy = (0..t.len()).filter(|&k| t.at(k) == 0).count();
        assert_eq!(heavy, 1000);
        // The heavy backend's slots are spread: gaps between 9 and 11 slots.
        let pos: Vec<usize> = (0..t.len()).filter(|&k| t.at(k) == 0).collect();
        assert!(pos.windows(2).all(|w| (9..=11).contains(&(w[1] - w[0]))));
    }

    #[test]
    fn huge_sums_are_scaled() {
        let weights: Vec<u32> = (0..300).map(|i| 1000 - i).collect();
        let t = SmoothTable::new(&weights);
        assert!(t.len() as u64 <= MAX_SLOTS + 300);
        assert!(t.len() > 60_000);
    }
}
