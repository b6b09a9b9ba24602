//! A [`Snapshot`] is one immutable view of the configuration in force: the validated
//! config, its backends and their balancer. Workers and the health thread hold an `Arc`
//! of one; a reload builds and publishes the next. [`Generations`] is a worker's record
//! of the snapshot in force and of older ones its exchanges still hold [`Lease`]s in.

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Instant;

use crate::backend::Backend;
use crate::balance::{Balancer, Kind};
use crate::config::{Algorithm, BalancerConfig, Config};

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

    /// The snapshot after a reload to `config`. A backend whose name, address, weight
    /// and `send_proxy` are unchanged is carried over (its health, admin state and counters with it); a
    /// changed one starts afresh but keeps the health verdict of its address; a new
    /// address starts alive and ramps up under slow start.
    pub fn reload(&self, config: Config, now: Instant) -> Snapshot {
        let backends: Vec<Arc<Backend>> = config
            .backends
            .iter()
            .map(|c| {
                let same = self.backends.iter().find(|b| {
                    b.name == c.name
                        && b.address == c.address
                        && b.weight == c.weight
                        && b.send_proxy == c.send_proxy
                });
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

/// An exchange's claim on one backend: one in-flight slot on it, and a hold on the
/// snapshot generation its index belongs to (so that snapshot stays readable until the
/// claim ends). Not `Clone`: it is given back exactly once, to
/// [`Generations::release`].
#[derive(Debug, PartialEq, Eq)]
pub struct Lease {
    generation: u64,
    index: usize,
}

impl Lease {
    /// The snapshot generation `index` belongs to.
    pub fn generation(&self) -> u64 {
        self.generation
    }

    /// The backend's index in that snapshot.
    pub fn index(&self) -> usize {
        self.index
    }
}

/// One worker's snapshots: the one in force for new requests, and older ones that
/// exchanges still hold leases in, each with its count of leases; an older snapshot is
/// dropped when its count reaches zero.
#[derive(Debug)]
pub struct Generations {
    current: Arc<Snapshot>,
    /// Leases taken under `current`.
    leases: usize,
    retired: Vec<(Arc<Snapshot>, usize)>,
}

impl Generations {
    /// Starts with `current` in force.
    pub fn new(current: Arc<Snapshot>) -> Generations {
        Generations {
            current,
            leases: 0,
            retired: Vec::new(),
        }
    }

    /// The snapshot in force for new requests.
    pub fn current(&self) -> &Arc<Snapshot> {
        &self.current
    }

    /// Takes a lease on backend `index` of the current snapshot: one more request in
    /// flight on it.
    pub fn lease(&mut self, index: usize) -> Lease {
        self.current.backends[index]
            .in_flight
            .fetch_add(1, Ordering::Relaxed);
        self.leases += 1;
        Lease {
            generation: self.current.generation,
            index,
        }
    }

    /// The backend a lease is on (in the current snapshot or a retired one).
    pub fn backend(&self, lease: &Lease) -> &Arc<Backend> {
        &self.snapshot_of(lease.generation).backends[lease.index]
    }

    fn snapshot_of(&self, generation: u64) -> &Arc<Snapshot> {
        if generation == self.current.generation {
            return &self.current;
        }
        &self
            .retired
            .iter()
            .find(|(s, _)| s.generation == generation)
            .expect("a snapshot with leases is kept")
            .0
    }

    /// Gives a lease back; a retired snapshot nobody holds any more is dropped.
    pub fn release(&mut self, lease: Lease) {
        self.backend(&lease)
            .in_flight
            .fetch_sub(1, Ordering::Relaxed);
        if lease.generation == self.current.generation {
            self.leases -= 1;
            return;
        }
        if let Some(i) = self
            .retired
            .iter()
            .position(|(s, _)| s.generation == lease.generation)
        {
            self.retired[i].1 -= 1;
            if self.retired[i].1 == 0 {
                self.retired.swap_remove(i);
            }
        }
    }

    /// Puts `next` in force; exchanges holding leases keep theirs.
    pub fn install(&mut self, next: Arc<Snapshot>) {
        let old = std::mem::replace(&mut self.current, next);
        if self.leases > 0 {
            self.retired.push((old, self.leases));
        }
        self.leases = 0;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(ports: &[u16]) -> Config {
        let addrs: Vec<_> = ports
            .iter()
            .map(|p| std::net::SocketAddr::from(([127, 0, 0, 1], *p)))
            .collect();
        crate::config::RawConfig::new("127.0.0.1:0".parse().unwrap(), &addrs)
            .validate()
            .unwrap()
    }

    /// A lease taken before a reload keeps its backend readable (and counted) until it
    /// is given back; then the old snapshot goes.
    #[test]
    fn leases_outlive_a_reload() {
        let first = Arc::new(Snapshot::new(config(&[1, 2])));
        let mut g = Generations::new(Arc::clone(&first));
        let lease = g.lease(1);
        assert_eq!(first.backends[1].load(), 1);
        let second = Arc::new(first.reload(config(&[3]), Instant::now()));
        g.install(Arc::clone(&second));
        assert_eq!(g.current().generation, 1);
        assert_eq!(g.backend(&lease).address.port(), 2);
        assert_eq!(Arc::strong_count(&first), 2, "kept for the lease");
        g.release(lease);
        assert_eq!(first.backends[1].load(), 0);
        assert_eq!(Arc::strong_count(&first), 1, "dropped when free");
        let fresh = g.lease(0);
        assert_eq!(g.backend(&fresh).address.port(), 3);
        g.release(fresh);
    }
}
