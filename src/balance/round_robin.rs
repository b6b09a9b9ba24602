//! `round_robin`: a shared cursor advanced once per turn; every backend in order.

use std::sync::atomic::{AtomicUsize, Ordering};

use crossbeam_utils::CachePadded;

use super::{Candidates, MAX_TURNS};

/// The cursor lives on its own cache line: every worker bumps it on every request.
#[derive(Debug, Default)]
pub struct RoundRobin {
    cursor: CachePadded<AtomicUsize>,
}

impl RoundRobin {
    /// The backend of the next turn. A turn that lands on a backend that cannot take the
    /// request (or a ramping one that loses its coin) is used up and the next turn is
    /// taken, so the survivors keep equal shares (walking on from the dead backend would
    /// double its successor's share). After `MAX_TURNS`: a random candidate.
    pub(super) fn pick(&self, c: &Candidates<'_>) -> Option<usize> {
        let n = c.len();
        if n == 0 {
            return None;
        }
        for _ in 0..MAX_TURNS {
            // Relaxed: the cursor only spreads load; no other memory hangs on its value.
            let i = self.cursor.fetch_add(1, Ordering::Relaxed) % n;
            if c.admits_random(i) {
                return Some(i);
            }
        }
        c.random(false)
    }
}

#[cfg(test)]
mod tests {
    use super::super::testing::*;
    use super::super::PickContext;
    use super::*;

    fn pick(
        rr: &RoundRobin,
        b: &[std::sync::Arc<crate::backend::Backend>],
        ctx: &PickContext<'_>,
    ) -> Option<usize> {
        rr.pick(&Candidates {
            backends: b,
            ctx,
            slow_start: None,
        })
    }

    #[test]
    fn alternates_and_skips_dead() {
        let b = backends(&[1, 1, 1]);
        let rr = RoundRobin::default();
        let ctx = PickContext::new(now());
        let seq: Vec<_> = (0..6).map(|_| pick(&rr, &b, &ctx).unwrap()).collect();
        assert_eq!(seq, [0, 1, 2, 0, 1, 2]);
        b[1].set_alive(false, now());
        let seq: Vec<_> = (0..4).map(|_| pick(&rr, &b, &ctx).unwrap()).collect();
        assert_eq!(seq, [0, 2, 0, 2]);
        let tried = [0, 2];
        let ctx = PickContext {
            tried: &tried,
            ..ctx
        };
        assert_eq!(pick(&rr, &b, &ctx), None);
    }

    /// Weights are ignored; the survivors of a dead backend share equally.
    #[test]
    fn equal_shares() {
        let b = backends(&[5, 1, 1, 1]);
        let rr = RoundRobin::default();
        let ctx = PickContext::new(now());
        let counts = histogram(100_000, 4, || pick(&rr, &b, &ctx));
        assert_shares(&counts, &[1, 1, 1, 1], 0.02);
        b[0].set_alive(false, now());
        let counts = histogram(100_000, 4, || pick(&rr, &b, &ctx));
        assert_shares(&counts, &[0, 1, 1, 1], 0.02);
    }
}
