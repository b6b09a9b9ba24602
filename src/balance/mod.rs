//! Backend choice: one [`Balancer`] per configuration snapshot, shared by every worker,
//! whose `pick` reads only atomics (no lock, no allocation).

mod round_robin;

use std::sync::Arc;

use crate::backend::Backend;
use crate::config::Algorithm;

pub use round_robin::RoundRobin;

/// What a pick may depend on besides the backends' state.
#[derive(Debug, Clone, Copy, Default)]
pub struct PickContext<'a> {
    /// Hash of the request's balancing key (client IP or header), when there is one.
    pub hash: Option<u64>,
    /// Backends this request already tried; never picked again.
    pub tried: &'a [usize],
}

/// The configured algorithm with its shared state.
#[derive(Debug)]
pub enum Balancer {
    /// `round_robin`.
    RoundRobin(RoundRobin),
}

impl Balancer {
    /// The balancer for `algorithm` over `backends`.
    pub fn new(algorithm: Algorithm, _backends: &[Arc<Backend>]) -> Balancer {
        // Config validation admits only the algorithms implemented here.
        debug_assert_eq!(algorithm, Algorithm::RoundRobin);
        Balancer::RoundRobin(RoundRobin::default())
    }

    /// Index of an eligible backend not in `ctx.tried`, or `None` when there is none.
    pub fn pick(&self, backends: &[Arc<Backend>], ctx: &PickContext<'_>) -> Option<usize> {
        match self {
            Balancer::RoundRobin(rr) => rr.pick(backends, ctx),
        }
    }
}

/// True when `i` may be picked for this request.
fn is_candidate(backends: &[Arc<Backend>], i: usize, ctx: &PickContext<'_>) -> bool {
    backends[i].is_eligible() && !ctx.tried.contains(&i)
}
