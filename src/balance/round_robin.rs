//! `round_robin`: a shared cursor advanced once per pick, skipping ineligible backends.

use std::sync::atomic::{AtomicUsize, Ordering};

use crossbeam_utils::CachePadded;

use super::{is_candidate, PickContext};
use std::sync::Arc;

use crate::backend::Backend;

/// The cursor lives on its own cache line: every worker bumps it on every request.
#[derive(Debug, Default)]
pub struct RoundRobin {
    cursor: CachePadded<AtomicUsize>,
}

impl RoundRobin {
    /// The next candidate after the cursor; at most `backends.len()` probes.
    pub fn pick(&self, backends: &[Arc<Backend>], ctx: &PickContext<'_>) -> Option<usize> {
        let n = backends.len();
        // Relaxed: the cursor only spreads load; no other memory hangs on its value.
        let start = self.cursor.fetch_add(1, Ordering::Relaxed);
        (0..n)
            .map(|k| (start + k) % n)
            .find(|&i| is_candidate(backends, i, ctx))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::BackendConfig;

    fn backends(n: usize) -> Vec<Arc<Backend>> {
        (0..n)
            .map(|i| {
                Arc::new(Backend::new(&BackendConfig {
                    address: format!("127.0.0.1:{}", 1000 + i).parse().unwrap(),
                    weight: 1,
                    name: format!("b{i}"),
                }))
            })
            .collect()
    }

    #[test]
    fn alternates_and_skips_dead() {
        let b = backends(3);
        let rr = RoundRobin::default();
        let ctx = PickContext::default();
        let seq: Vec<_> = (0..6).map(|_| rr.pick(&b, &ctx).unwrap()).collect();
        assert_eq!(seq, [0, 1, 2, 0, 1, 2]);
        b[1].set_alive(false, std::time::Instant::now());
        let seq: Vec<_> = (0..4).map(|_| rr.pick(&b, &ctx).unwrap()).collect();
        assert!(!seq.contains(&1));
        let tried = [0, 2];
        assert_eq!(
            rr.pick(
                &b,
                &PickContext {
                    hash: None,
                    tried: &tried
                }
            ),
            None
        );
    }
}
