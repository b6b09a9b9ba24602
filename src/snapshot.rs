//! A [`Snapshot`] is one immutable view of the configuration in force: the validated
//! config, its pools (their backends and balancers), the route table, and the members of
//! the DNS services known when it was built. Workers and the health thread hold an `Arc`
//! of one; a reload, or a change of a service's members, builds and publishes the next.
//! [`Generations`] is a worker's record of the snapshot in force and of older ones its
//! exchanges still hold [`Lease`]s in.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::ops::Range;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Instant;

use crate::backend::Backend;
use crate::balance::{Balancer, Kind};
use crate::config::{Algorithm, BackendConfig, BalancerConfig, Config, HashKey, Health};
use crate::route::RouteTable;
use crate::stats::ResponseStats;

/// The members of DNS services (spec §12), by `(host, port)`: the addresses the name
/// resolved to last. A service with no entry (not resolved yet) has no member.
pub type Members = HashMap<(String, u16), Vec<SocketAddr>>;

/// The configuration in force and what is built from it.
#[derive(Debug)]
pub struct Snapshot {
    /// Numbers snapshots: 0 at start, +1 per reload or member change. Backend indexes are
    /// only meaningful together with the generation they were taken under.
    pub generation: u64,
    /// The validated configuration.
    pub config: Config,
    /// Every backend of every pool, pool after pool (a pool's are `pools[i].range`); a
    /// DNS service contributes one backend per member. Indexes are stable within a
    /// snapshot.
    pub backends: Vec<Arc<Backend>>,
    /// The pools, in the order of [`Config::pools`].
    pub pools: Vec<PoolView>,
    /// The routes, for [`Snapshot::route`].
    pub routes: RouteTable,
}

/// One pool as a snapshot runs it.
#[derive(Debug)]
pub struct PoolView {
    /// Its name (`default` for the top-level backends).
    pub name: String,
    /// FNV-1a of `name`: how an exchange finds its pool again after a reload.
    pub key: u64,
    /// Its backends' indexes in [`Snapshot::backends`].
    pub range: Range<usize>,
    /// The pool's balancer over `backends[range]`.
    pub balancer: Balancer,
    /// What `consistent_hash` hashes for this pool.
    pub hash_key: HashKey,
    /// The pool's health settings.
    pub health: Health,
    /// Answers for requests routed here that no backend took (no member alive, none
    /// resolved): `backend="none",pool=NAME` in metrics. Carried over by name on reload.
    pub answered: Arc<ResponseStats>,
}

impl Snapshot {
    /// Builds the pools for `config` (generation 0), services with the `members` known.
    pub fn new(config: Config, members: &Members) -> Snapshot {
        Snapshot::build(config, members, 0, &[], |c, pool| {
            Arc::new(Backend::new(c, pool))
        })
    }

    /// The snapshot after a reload to `config` (or after `members` changed). A backend
    /// whose name, address, weight, `send_proxy` and pool are unchanged is carried over
    /// (its health, admin state and counters with it); a changed one starts afresh but
    /// keeps the health verdict of its address; a new address (a new member too) starts
    /// alive and ramps up under slow start.
    pub fn reload(&self, config: Config, members: &Members, now: Instant) -> Snapshot {
        Snapshot::build(
            config,
            members,
            self.generation + 1,
            &self.pools,
            |c, pool| {
                let same = self.backends.iter().find(|b| {
                    b.name == c.name
                        && b.address == c.address
                        && b.weight == c.weight
                        && b.send_proxy == c.send_proxy
                        && b.pool == pool
                });
                if let Some(b) = same {
                    return Arc::clone(b);
                }
                let fresh = Backend::new(c, pool);
                match self.backends.iter().find(|b| b.address == c.address) {
                    Some(old) => {
                        fresh.set_alive(old.is_alive(), now);
                        fresh.set_admin_state(old.admin_state());
                    }
                    None => fresh.mark_new(now),
                }
                Arc::new(fresh)
            },
        )
    }

    fn build(
        config: Config,
        members: &Members,
        generation: u64,
        previous: &[PoolView],
        mut backend: impl FnMut(&BackendConfig, &str) -> Arc<Backend>,
    ) -> Snapshot {
        let mut backends = Vec::new();
        let mut pools = Vec::with_capacity(config.pools().len());
        for pool in config.pools() {
            let start = backends.len();
            for c in &pool.backends {
                for member in expand(c, members) {
                    backends.push(backend(&member, &pool.name));
                }
            }
            let range = start..backends.len();
            pools.push(PoolView {
                name: pool.name.clone(),
                key: crate::hash::fnv1a(pool.name.as_bytes()),
                balancer: balancer(&pool.balancer, &backends[range.clone()]),
                range,
                hash_key: pool.balancer.hash_key.clone(),
                health: pool.health.clone(),
                answered: previous
                    .iter()
                    .find(|p| p.name == pool.name)
                    .map(|p| Arc::clone(&p.answered))
                    .unwrap_or_default(),
            });
        }
        let routes = RouteTable::new(config.routes());
        Snapshot {
            generation,
            config,
            backends,
            pools,
            routes,
        }
    }

    /// The index of the backend named `name`.
    pub fn backend_index(&self, name: &str) -> Option<usize> {
        self.backends.iter().position(|b| b.name == name)
    }

    /// The pool a request for `host` and `path` goes to (spec §12): the pool of the
    /// route that matches, else the default pool; `None`: no route and no default (404).
    pub fn route(&self, host: &[u8], path: &[u8]) -> Option<usize> {
        let routes = self.config.routes();
        if routes.is_empty() {
            return self.config.default_pool();
        }
        match self.routes.lookup(host, path) {
            Some(r) => Some(routes[r].pool),
            None => self.config.default_pool(),
        }
    }

    /// The pool backend `index` belongs to.
    pub fn pool_of(&self, index: usize) -> &PoolView {
        let p = self
            .pools
            .partition_point(|p| p.range.end <= index)
            .min(self.pools.len() - 1);
        &self.pools[p]
    }

    /// The members a reload keeps for its `services`: those of services still
    /// configured; a service whose port is new takes the addresses its host resolved to
    /// under another port (A and AAAA records carry no port), so it serves at once
    /// instead of answering 503 until the resolver reports. Members of services no
    /// longer configured are forgotten: re-added, such a service starts unresolved.
    pub fn carry_members(members: &Members, services: &[(String, u16)]) -> Members {
        services
            .iter()
            .filter_map(|(host, port)| {
                let key = (host.clone(), *port);
                let addrs = members.get(&key).cloned().or_else(|| {
                    let (_, addrs) = members.iter().find(|((h, _), _)| h == host)?;
                    Some(
                        addrs
                            .iter()
                            .map(|a| SocketAddr::new(a.ip(), *port))
                            .collect(),
                    )
                })?;
                Some((key, addrs))
            })
            .collect()
    }

    /// The DNS services (host, port) of the configuration, for the resolver.
    pub fn services(config: &Config) -> Vec<(String, u16)> {
        let mut out: Vec<(String, u16)> = config
            .pools()
            .iter()
            .flat_map(|p| &p.backends)
            .filter_map(|b| Some((b.service.clone()?, b.address.port())))
            .collect();
        out.sort();
        out.dedup();
        out
    }
}

/// The backends a configured backend stands for: itself, or one per member of its DNS
/// service, named `NAME@IP:PORT`.
fn expand(c: &BackendConfig, members: &Members) -> Vec<BackendConfig> {
    let Some(host) = &c.service else {
        return vec![c.clone()];
    };
    let port = c.address.port();
    members
        .get(&(host.clone(), port))
        .map(|addrs| {
            addrs
                .iter()
                .map(|&address| BackendConfig {
                    address,
                    name: member_name(&c.name, address),
                    service: None,
                    ..c.clone()
                })
                .collect()
        })
        .unwrap_or_default()
}

/// The name of the member at `addr` of the service whose backend is named `backend` (by
/// default its address, `host:port`): `NAME@IP:PORT` (spec §12), for example
/// `api-1.internal:8080@10.0.0.7:8080` or `api@[2001:db8::7]:8080`.
fn member_name(backend: &str, addr: SocketAddr) -> String {
    format!("{backend}@{addr}")
}

/// The balancer a pool's balancer keys ask for.
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

    #[test]
    fn member_names_bracket_ipv6() {
        let v6: SocketAddr = "[2001:db8::7]:8080".parse().unwrap();
        assert_eq!(
            member_name("api.test:8080", v6),
            "api.test:8080@[2001:db8::7]:8080"
        );
        let v4: SocketAddr = "10.0.0.7:8080".parse().unwrap();
        assert_eq!(member_name("api", v4), "api@10.0.0.7:8080");
    }

    #[test]
    fn a_reload_keeps_members_of_configured_services_only() {
        let at = |last: u8, port: u16| SocketAddr::from(([10, 0, 0, last], port));
        let members: Members = [
            (("api".to_owned(), 80), vec![at(1, 80), at(2, 80)]),
            (("gone".to_owned(), 80), vec![at(9, 80)]),
        ]
        .into_iter()
        .collect();
        let kept = Snapshot::carry_members(
            &members,
            &[("api".into(), 80), ("api".into(), 8080), ("new".into(), 80)],
        );
        assert_eq!(kept[&("api".to_owned(), 80)], vec![at(1, 80), at(2, 80)]);
        assert_eq!(
            kept[&("api".to_owned(), 8080)],
            vec![at(1, 8080), at(2, 8080)],
            "a new port of a resolved host"
        );
        assert_eq!(
            kept.len(),
            2,
            "the removed service is forgotten, new is unresolved"
        );
    }

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
        let first = Arc::new(Snapshot::new(config(&[1, 2]), &Members::new()));
        let mut g = Generations::new(Arc::clone(&first));
        let lease = g.lease(1);
        assert_eq!(first.backends[1].load(), 1);
        let second = Arc::new(first.reload(config(&[3]), &Members::new(), Instant::now()));
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
