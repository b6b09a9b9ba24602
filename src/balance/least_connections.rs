//! `least_connections`: the candidate with the fewest in-flight requests per unit of
//! weight.
//!
//! Ties are the normal case when traffic is light (every load 0), so where the scan
//! starts matters: it starts at the next turn of the smooth weighted sequence (shared
//! cursor, as `weighted_round_robin`), and the first least-loaded backend from there
//! wins. Idle backends are therefore picked in weighted round-robin order, not always
//! the first one; busy ones by load. Slow start: the load is divided by weight × ramp,
//! and a ramping backend passes its turn as a starting point with probability ramp.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use crossbeam_utils::CachePadded;

use super::table::SmoothTable;
use super::{is_lighter, rng, Candidates, MAX_TURNS};
use crate::backend::Backend;

/// The tie-breaking sequence and its shared cursor.
#[derive(Debug)]
pub struct LeastConnections {
    table: SmoothTable,
    /// Turns taken, all workers; on its own cache line (bumped on every request).
    cursor: CachePadded<AtomicUsize>,
}

impl LeastConnections {
    /// The tie-breaking sequence for the backends' weights.
    pub fn new(backends: &[Arc<Backend>]) -> LeastConnections {
        let weights: Vec<u32> = backends.iter().map(|b| b.weight).collect();
        LeastConnections {
            table: SmoothTable::new(&weights),
            cursor: CachePadded::new(AtomicUsize::new(0)),
        }
    }

    /// One scan of all backends from the starting turn: O(n) atomic loads.
    pub(super) fn pick(&self, c: &Candidates<'_>) -> Option<usize> {
        let n = c.len();
        if n == 0 {
            return None;
        }
        // (index, load, weight × ramp) of the least loaded so far.
        let mut best: Option<(usize, u64, u64)> = None;
        let mut i = self.start(c);
        for _ in 0..n {
            if c.is_candidate(i) {
                let (load, weight) = (c.load(i), c.effective_weight(i));
                if best.is_none_or(|(_, l, w)| is_lighter(load, weight, l, w)) {
                    best = Some((i, load, weight));
                }
            }
            i = if i + 1 == n { 0 } else { i + 1 };
        }
        best.map(|(i, _, _)| i)
    }

    /// Where the scan starts: the next turn whose backend can take the request, or a
    /// random index after `MAX_TURNS` misses.
    fn start(&self, c: &Candidates<'_>) -> usize {
        for _ in 0..MAX_TURNS {
            // Relaxed: the cursor only orders turns; no other memory hangs on its value.
            let i = self.table.at(self.cursor.fetch_add(1, Ordering::Relaxed));
            if c.admits_random(i) {
                return i;
            }
        }
        rng::below(c.len() as u64) as usize
    }
}

#[cfg(test)]
mod tests {
    use super::super::testing::*;
    use super::super::PickContext;
    use super::*;

    fn pick_all(weights: &[u32], loads: &[usize], n: usize) -> Vec<usize> {
        let b = backends(weights);
        set_loads(&b, loads);
        let lc = LeastConnections::new(&b);
        let ctx = PickContext::new(now());
        let c = Candidates {
            backends: &b,
            ctx: &ctx,
            slow_start: None,
        };
        (0..n).map(|_| lc.pick(&c).unwrap()).collect()
    }

    #[test]
    fn prefers_the_least_loaded() {
        assert!(pick_all(&[1, 1, 1], &[3, 1, 2], 20).iter().all(|&i| i == 1));
        // Per unit of weight: 4/4 < 2/1.
        assert!(pick_all(&[4, 1], &[4, 2], 20).iter().all(|&i| i == 0));
        // 3/1 > 5/2: the second.
        assert!(pick_all(&[1, 2], &[3, 5], 20).iter().all(|&i| i == 1));
    }

    /// Idle backends: ties go round in weighted order, not always to the first.
    #[test]
    fn ties_follow_the_weighted_sequence() {
        assert_eq!(pick_all(&[5, 1, 1], &[0, 0, 0], 7), [0, 0, 1, 0, 2, 0, 0]);
        assert_eq!(pick_all(&[1, 1, 1], &[2, 0, 0], 6), [1, 1, 2, 1, 1, 2]);
        for weights in [&[1u32, 1, 1][..], &[5, 3, 2]] {
            let mut counts = vec![0; weights.len()];
            for i in pick_all(weights, &[0, 0, 0], 100_000) {
                counts[i] += 1;
            }
            assert_shares(&counts, weights, 0.02);
        }
    }

    /// Requests that stay in flight spread in proportion to weight.
    #[test]
    fn in_flight_follows_weights() {
        let weights = [5, 3, 2];
        let b = backends(&weights);
        let lc = LeastConnections::new(&b);
        let ctx = PickContext::new(now());
        let c = Candidates {
            backends: &b,
            ctx: &ctx,
            slow_start: None,
        };
        for _ in 0..1000 {
            let i = lc.pick(&c).unwrap();
            b[i].in_flight.fetch_add(1, Ordering::Relaxed);
        }
        let loads: Vec<usize> = b.iter().map(|x| x.load()).collect();
        assert_shares(&loads, &weights, 0.01);
    }
}
