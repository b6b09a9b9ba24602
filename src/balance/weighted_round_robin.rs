//! `weighted_round_robin`: nginx's smooth weighted round-robin, shared by every worker
//! without a lock.
//!
//! The sequence for the configured weights is laid out once per snapshot in a
//! [`SmoothTable`]; a pick takes the next turn from a shared `AtomicUsize` cursor. A turn
//! whose backend cannot take the request is used up and the next one taken, so the
//! survivors keep their relative shares and interleaving. Slow start: a ramping backend
//! keeps its turns but passes each with probability ramp / `RAMP_ONE`.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use crossbeam_utils::CachePadded;

use super::table::SmoothTable;
use super::{Candidates, MAX_TURNS};
use crate::backend::Backend;

/// The smooth sequence of one period and the shared position in it.
#[derive(Debug)]
pub struct WeightedRoundRobin {
    table: SmoothTable,
    /// Turns taken, all workers; on its own cache line (bumped on every request).
    cursor: CachePadded<AtomicUsize>,
}

impl WeightedRoundRobin {
    /// The sequence for the backends' weights.
    pub fn new(backends: &[Arc<Backend>]) -> WeightedRoundRobin {
        let weights: Vec<u32> = backends.iter().map(|b| b.weight).collect();
        WeightedRoundRobin {
            table: SmoothTable::new(&weights),
            cursor: CachePadded::new(AtomicUsize::new(0)),
        }
    }

    /// The backend of the next turn that can take the request; after `MAX_TURNS` misses
    /// (say, the heaviest backend is down and owns a run of turns), a random candidate in
    /// proportion to weight.
    pub(super) fn pick(&self, c: &Candidates<'_>) -> Option<usize> {
        if self.table.is_empty() {
            return None;
        }
        for _ in 0..MAX_TURNS {
            // Relaxed: the cursor only orders turns; no other memory hangs on its value.
            let i = self.table.at(self.cursor.fetch_add(1, Ordering::Relaxed));
            if c.admits_random(i) {
                return Some(i);
            }
        }
        c.random(true)
    }
}

#[cfg(test)]
mod tests {
    use super::super::testing::*;
    use super::super::PickContext;
    use super::*;

    fn run(weights: &[u32], n: usize, setup: impl Fn(&[Arc<Backend>])) -> Vec<usize> {
        let b = backends(weights);
        setup(&b);
        let wrr = WeightedRoundRobin::new(&b);
        let ctx = PickContext::new(now());
        let c = Candidates {
            backends: &b,
            ctx: &ctx,
            slow_start: None,
        };
        (0..n).map(|_| wrr.pick(&c).unwrap()).collect()
    }

    #[test]
    fn smooth_sequence_5_1_1() {
        let seq = run(&[5, 1, 1], 14, |_| {});
        // a a b a c a a, twice.
        assert_eq!(seq, [0, 0, 1, 0, 2, 0, 0, 0, 0, 1, 0, 2, 0, 0]);
    }

    #[test]
    fn shares_within_two_percent() {
        for weights in [&[5u32, 1, 1][..], &[3, 2, 1], &[7, 13, 1, 100, 50]] {
            let seq = run(weights, 100_000, |_| {});
            let mut counts = vec![0; weights.len()];
            for i in seq {
                counts[i] += 1;
            }
            assert_shares(&counts, weights, 0.02);
        }
    }

    /// A dead backend's turns go to the others in proportion to their weights, still
    /// interleaved.
    #[test]
    fn dead_backend_turns_are_skipped() {
        let seq = run(&[5, 1, 1], 14, |b| {
            b[0].set_alive(false, now());
        });
        assert_eq!(seq, [1, 2, 1, 2, 1, 2, 1, 2, 1, 2, 1, 2, 1, 2]);
        let seq = run(&[1, 3, 2], 60_000, |b| {
            b[0].set_alive(false, now());
        });
        let mut counts = [0; 3];
        for i in seq {
            counts[i] += 1;
        }
        assert_shares(&counts, &[0, 3, 2], 0.02);
        // The heavy backend down: most turns miss, the random fallback keeps the shares.
        let seq = run(&[100, 1, 3], 40_000, |b| {
            b[0].set_alive(false, now());
        });
        let mut counts = [0; 3];
        for i in seq {
            counts[i] += 1;
        }
        assert_shares(&counts, &[0, 1, 3], 0.02);
    }
}
