//! `power_of_two`: two distinct random candidates, the less loaded (per unit of weight)
//! wins.
//!
//! Samples are drawn in proportion to weight, by taking random slots of the smooth
//! weighted table (each backend owns `weight` slots), and on a tie the first sample
//! wins; so idle backends get traffic in proportion to weight, busy ones by load. No
//! shared cursor: the only shared state read is the load counters. Slow start: a
//! sampled ramping backend is kept with probability ramp, and loads are divided by
//! weight × ramp.

use std::sync::Arc;

use super::table::SmoothTable;
use super::{rng, Candidates};
use crate::backend::Backend;

/// Random slots drawn before giving up on a sample (then the scan fallbacks run).
const MAX_SAMPLES: usize = 8;

/// The weighted sampling table.
#[derive(Debug)]
pub struct PowerOfTwo {
    table: SmoothTable,
}

impl PowerOfTwo {
    /// The sampling table for the backends' weights.
    pub fn new(backends: &[Arc<Backend>]) -> PowerOfTwo {
        let weights: Vec<u32> = backends.iter().map(|b| b.weight).collect();
        PowerOfTwo {
            table: SmoothTable::new(&weights),
        }
    }

    /// Two samples and one comparison; O(1) unless most slots belong to backends that
    /// cannot take the request.
    pub(super) fn pick(&self, c: &Candidates<'_>) -> Option<usize> {
        if self.table.is_empty() {
            return None;
        }
        let first = self.sample(c, None).or_else(|| c.random(true))?;
        let Some(second) = self.sample(c, Some(first)).or_else(|| other(c, first)) else {
            return Some(first);
        };
        Some(if c.is_less_loaded(second, first) {
            second
        } else {
            first
        })
    }

    /// A weighted random candidate other than `not`, if one turns up in `MAX_SAMPLES`.
    fn sample(&self, c: &Candidates<'_>, not: Option<usize>) -> Option<usize> {
        (0..MAX_SAMPLES)
            .map(|_| self.table.at(rng::below(self.table.len() as u64) as usize))
            .find(|&i| Some(i) != not && c.admits_random(i))
    }
}

/// Any candidate other than `not`, scanning from a random index (ramping ones included).
fn other(c: &Candidates<'_>, not: usize) -> Option<usize> {
    let n = c.len();
    let start = rng::below(n as u64) as usize;
    (0..n)
        .map(|k| (start + k) % n)
        .find(|&i| i != not && c.is_candidate(i))
}

#[cfg(test)]
mod tests {
    use super::super::testing::*;
    use super::super::PickContext;
    use super::*;

    fn counts(weights: &[u32], loads: &[usize], n: usize) -> Vec<usize> {
        let b = backends(weights);
        set_loads(&b, loads);
        let p2c = PowerOfTwo::new(&b);
        let ctx = PickContext::new(now());
        let c = Candidates {
            backends: &b,
            ctx: &ctx,
            slow_start: None,
        };
        histogram(n, weights.len(), || p2c.pick(&c))
    }

    #[test]
    fn prefers_the_least_loaded() {
        let got = counts(&[1, 1, 1, 1], &[0, 1, 2, 3], 100_000);
        // The most loaded never wins a pair; the least loaded wins every pair it is in.
        assert_eq!(got[3], 0, "{got:?}");
        assert!(got[0] > got[1] && got[1] > got[2] && got[2] > 0, "{got:?}");
        // Pairs are uniform over 6: backend 0 is in 3 of them, 1 wins 2, 2 wins 1.
        assert_shares(&got, &[3, 2, 1, 0], 0.02);
        // Weight-aware: 4 in flight on weight 4 beats 2 on weight 1.
        let got = counts(&[4, 1], &[4, 2], 1000);
        assert_eq!(got, [1000, 0]);
    }

    #[test]
    fn idle_shares_follow_weights() {
        for weights in [&[1u32, 1, 1][..], &[5, 3, 2], &[5, 1, 1]] {
            let got = counts(weights, &[0; 3], 100_000);
            assert_shares(&got, weights, 0.02);
        }
    }

    #[test]
    fn two_distinct_even_when_one_dominates() {
        // Weight 1000 against 1: the second sample rarely finds backend 1 by slots, the
        // scan fallback does, and the less loaded one wins.
        let got = counts(&[1000, 1], &[5, 0], 1000);
        assert_eq!(got, [0, 1000]);
    }
}
