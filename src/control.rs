//! Every message that crosses threads, in one place, and the state they share.

use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize};
use std::sync::Arc;
use std::time::Instant;

use crate::backend::Backend;
use crate::balance::Balancer;
use crate::config::Config;
use crate::metrics::ResponseStats;

/// One immutable view of the configuration and its backends. Workers hold an `Arc` of
/// it; a reload publishes a new one.
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
    /// Builds backends and the balancer for `config`.
    pub fn new(config: Config) -> Snapshot {
        let backends: Vec<Arc<Backend>> = config
            .backends
            .iter()
            .map(|b| Arc::new(Backend::new(b)))
            .collect();
        let balancer = Balancer::new(&config.balancer, &backends);
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
        let balancer = Balancer::new(&config.balancer, &backends);
        Snapshot {
            generation: self.generation + 1,
            config,
            backends,
            balancer,
        }
    }

    /// The backend named `name`.
    pub fn backend_named(&self, name: &str) -> Option<&Arc<Backend>> {
        self.backends.iter().find(|b| b.name == name)
    }
}

/// Process-wide state outside any snapshot. Counters are `Relaxed`: statistics only.
#[derive(Debug)]
pub struct Shared {
    /// When the process started serving.
    pub started: Instant,
    /// Open client connections, all workers (bounded by `server.max_connections`).
    pub open_connections: AtomicUsize,
    /// Client connections ever accepted.
    pub connections_total: AtomicU64,
    /// Bytes read from clients.
    pub client_in_bytes: AtomicU64,
    /// Bytes written to clients.
    pub client_out_bytes: AtomicU64,
    /// Attempts retried after a failure.
    pub retries_total: AtomicU64,
    /// Answers lbd made without a backend (refused requests, no backend alive).
    pub unrouted: ResponseStats,
    /// Successful configuration reloads.
    pub reloads_ok: AtomicU64,
    /// Rejected configuration reloads.
    pub reloads_failed: AtomicU64,
    /// Set once shutdown begins.
    pub shutting_down: AtomicBool,
}

impl Shared {
    /// Fresh counters.
    pub fn new() -> Shared {
        Shared {
            started: Instant::now(),
            open_connections: AtomicUsize::new(0),
            connections_total: AtomicU64::new(0),
            client_in_bytes: AtomicU64::new(0),
            client_out_bytes: AtomicU64::new(0),
            retries_total: AtomicU64::new(0),
            unrouted: ResponseStats::default(),
            reloads_ok: AtomicU64::new(0),
            reloads_failed: AtomicU64::new(0),
            shutting_down: AtomicBool::new(false),
        }
    }
}

impl Default for Shared {
    fn default() -> Self {
        Shared::new()
    }
}

/// Sent to a worker over its channel, followed by a wake of its `mio::Waker`.
#[derive(Debug)]
pub enum WorkerMsg {
    /// Stop accepting, finish in-flight exchanges by the deadline, then exit.
    Shutdown {
        /// Hard deadline for in-flight work.
        deadline: Instant,
    },
    /// A new configuration snapshot is in force for new requests.
    Reload(Arc<Snapshot>),
    /// A backend's health or admin state changed; the pooled connections of one that
    /// may no longer be picked are dropped.
    BackendChanged {
        /// Snapshot generation `index` refers to.
        generation: u64,
        /// Index in that snapshot.
        index: usize,
        /// The new verdict.
        alive: bool,
    },
}

/// Sent to the health thread (by workers, and by the supervisor).
#[derive(Debug)]
pub enum HealthMsg {
    /// Stop probing and exit.
    Shutdown,
    /// Probe the backends of this snapshot from now on.
    Reload(Arc<Snapshot>),
    /// Connects to this backend (index in the current snapshot) kept failing: mark it
    /// down now; probes bring it back.
    ReportDown {
        /// Snapshot generation `index` refers to.
        generation: u64,
        /// Backend index.
        index: usize,
    },
}

/// A thread's inbox: a channel plus the `mio::Waker` that interrupts its poll.
#[derive(Debug)]
pub struct Mailbox<T> {
    tx: crossbeam_channel::Sender<T>,
    waker: Arc<mio::Waker>,
}

impl<T> Clone for Mailbox<T> {
    fn clone(&self) -> Self {
        Mailbox {
            tx: self.tx.clone(),
            waker: Arc::clone(&self.waker),
        }
    }
}

impl<T> Mailbox<T> {
    /// A mailbox for a thread polling on the registry `waker` was made from.
    pub fn new(tx: crossbeam_channel::Sender<T>, waker: Arc<mio::Waker>) -> Mailbox<T> {
        Mailbox { tx, waker }
    }

    /// Sends and wakes; false when the thread is gone.
    pub fn send(&self, msg: T) -> bool {
        self.tx.send(msg).is_ok() && self.waker.wake().is_ok()
    }
}
