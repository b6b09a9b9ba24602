//! A [`Snapshot`] is one immutable view of the configuration in force: the validated
//! config, its backends and their balancer. Workers and the health thread hold an `Arc`
//! of one; a reload builds and publishes the next.

use std::sync::Arc;
use std::time::Instant;

use crate::backend::Backend;
use crate::balance::{Balancer, Kind};
use crate::config::{Algorithm, Balancer as BalancerConfig, Config};

/// The configuration in force and what is built from it.
#[derive(Debug)]
pub struct Snapshot {
    /// Numbers snapshots: 0 at start, +1 per reload. Backend indexes are only meaningful
    /// together with the generation they were taken under.
    pub generation: u64,
    /// The validated configuration.
    pub config: Config,
    /// The backends, in configuration order; indexes are stable within a snapshot.
    pub backends: Vec<Arc<Backend>>,
    /// The balancer over `backends`.
    pub balancer: Balancer,
}

impl Snapshot {
    /// Builds backends and the balancer for `config` (generation 0).
    pub fn new(config: Config) -> Snapshot {
        let backends: Vec<Arc<Backend>> = config
            .backends
            .iter()
            .map(|b| Arc::new(Backend::new(b)))
            .collect();
        let balancer = balancer(&config.balancer, &backends);
        Snapshot {
            generation: 0,
            config,
            backends,
            balancer,
        }
    }

    /// The snapshot after a reload to `config`. A backend whose name, address and weight
    /// are unchanged is carried over (its health, admin state and counters with it); a
    /// changed one starts afresh but keeps the health verdict of its address; a new
    /// address starts alive and ramps up under slow start.
    pub fn reload(&self, config: Config, now: Instant) -> Snapshot {
        let backends: Vec<Arc<Backend>> = config
            .backends
            .iter()
            .map(|c| {
                let same = self
                    .backends
                    .iter()
                    .find(|b| b.name == c.name && b.address == c.address && b.weight == c.weight);
                if let Some(b) = same {
                    return Arc::clone(b);
                }
                let fresh = Backend::new(c);
                match self.backends.iter().find(|b| b.address == c.address) {
                    Some(old) => {
                        fresh.set_alive(old.is_alive(), now);
                        fresh.set_admin_state(old.admin_state());
                    }
                    None => fresh.mark_new(now),
                }
                Arc::new(fresh)
            })
            .collect();
        let balancer = balancer(&config.balancer, &backends);
        Snapshot {
            generation: self.generation + 1,
            config,
            backends,
            balancer,
        }
    }

    /// The index of the backend named `name`.
    pub fn backend_index(&self, name: &str) -> Option<usize> {
        self.backends.iter().position(|b| b.name == name)
    }
}

/// The balancer the `[balancer]` section asks for.
fn balancer(config: &BalancerConfig, backends: &[Arc<Backend>]) -> Balancer {
    let kind = match config.algorithm {
        Algorithm::RoundRobin => Kind::RoundRobin,
        Algorithm::WeightedRoundRobin => Kind::WeightedRoundRobin,
        Algorithm::LeastConnections => Kind::LeastConnections,
        Algorithm::PowerOfTwo => Kind::PowerOfTwo,
        Algorithm::ConsistentHash | Algorithm::IpHash => Kind::Maglev,
    };
    Balancer::new(kind, config.slow_start, backends)
}
