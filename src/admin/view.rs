//! What the status endpoints show, read once per request from the snapshot and the shared
//! counters. `/status` (JSON, `status.rs`) and `/` (HTML, `page.rs`) both render one
//! [`StatusView`], so the page and the JSON it refreshes from never disagree. Backends
//! carry their pool (spec §12), and the pools are listed with their algorithm.

use std::sync::atomic::Ordering;

use crate::backend::Backend;
use crate::snapshot::Snapshot;
use crate::stats::{Shared, BUCKETS};

/// The process and every backend of the snapshot in force.
#[derive(Debug)]
pub struct StatusView<'a> {
    /// `lbd` version.
    pub version: &'static str,
    /// Seconds since the process started serving (the page's clock for rates).
    pub uptime_seconds: f64,
    /// Worker threads.
    pub workers: usize,
    /// The snapshot's generation (0 at start, +1 per reload).
    pub generation: u64,
    /// The balancing algorithm by its config word (`round_robin`).
    pub algorithm: &'static str,
    /// Open client connections.
    pub client_connections: usize,
    /// The backends, pool after pool.
    pub backends: Vec<BackendView<'a>>,
    /// The pools (spec §12): `default` for the top-level backends, then `[[pool]]`s.
    pub pools: Vec<PoolView<'a>>,
}

/// One pool.
#[derive(Debug)]
pub struct PoolView<'a> {
    /// Its name.
    pub name: &'a str,
    /// Its algorithm by its config word.
    pub algorithm: &'static str,
    /// Its backends' names (a DNS service's members as `NAME@IP:PORT`).
    pub backends: Vec<&'a str>,
}

/// One backend's state and counters.
#[derive(Debug)]
pub struct BackendView<'a> {
    /// Its name (unique).
    pub name: &'a str,
    /// The pool it belongs to.
    pub pool: &'a str,
    /// `IP:PORT`.
    pub address: String,
    /// Configured weight.
    pub weight: u32,
    /// Passes health checks.
    pub alive: bool,
    /// `enabled`, `draining` or `disabled`.
    pub admin_state: &'static str,
    /// Requests in flight to it.
    pub in_flight: usize,
    /// Requests it answered.
    pub requests_total: u64,
    /// Of those, answered with a 5xx.
    pub errors_total: u64,
    /// Attempts on it that were retried.
    pub retries_total: u64,
    /// Pooled idle upstream connections, all workers.
    pub idle_connections: i64,
    /// `none`, `ok` or `failed`.
    pub last_probe: &'static str,
    /// Cumulative request-duration counts: one per bound of [`BUCKETS`], then `+Inf`
    /// (which equals the number of durations recorded).
    pub duration_buckets: [u64; BUCKETS.len() + 1],
}

impl<'a> StatusView<'a> {
    /// Reads `snapshot` and `shared` now.
    pub fn read(snapshot: &'a Snapshot, shared: &Shared) -> StatusView<'a> {
        StatusView {
            version: crate::VERSION,
            uptime_seconds: shared.started.elapsed().as_secs_f64(),
            workers: snapshot.config.server.workers,
            generation: snapshot.generation,
            algorithm: snapshot.config.balancer.algorithm.as_str(),
            client_connections: shared.open_connections.load(Ordering::Relaxed),
            backends: snapshot
                .backends
                .iter()
                .map(|b| BackendView::read(b))
                .collect(),
            pools: snapshot
                .pools
                .iter()
                .zip(snapshot.config.pools())
                .map(|(p, c)| PoolView {
                    name: &p.name,
                    algorithm: c.balancer.algorithm.as_str(),
                    backends: snapshot.backends[p.range.clone()]
                        .iter()
                        .map(|b| b.name.as_str())
                        .collect(),
                })
                .collect(),
        }
    }
}

impl<'a> BackendView<'a> {
    fn read(b: &'a Backend) -> BackendView<'a> {
        BackendView {
            name: &b.name,
            pool: &b.pool,
            address: b.address.to_string(),
            weight: b.weight,
            alive: b.is_alive(),
            admin_state: b.admin_state().as_str(),
            in_flight: b.load(),
            requests_total: b.responses.total(),
            errors_total: b.responses.server_errors(),
            retries_total: b.retries_total.load(Ordering::Relaxed),
            idle_connections: b.idle_connections(),
            last_probe: b.last_probe().as_str(),
            duration_buckets: b.responses.cumulative_buckets(),
        }
    }
}
