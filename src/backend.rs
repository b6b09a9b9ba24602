//! A configured origin server and the lock-free state every worker reads and updates.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicI64, AtomicU64, AtomicU8, AtomicUsize, Ordering};
use std::sync::OnceLock;

use crossbeam_utils::CachePadded;
use std::time::{Duration, Instant};

use crate::config::{BackendConfig, ProxyVersion};
use crate::stats::ResponseStats;

/// Operator-set admission state of a backend (spec §6 drain/enable/disable).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub enum AdminState {
    /// Takes new requests when alive.
    Enabled = 0,
    /// Finishes in-flight work, takes no new requests.
    Draining = 1,
    /// Takes no new requests.
    Disabled = 2,
}

impl AdminState {
    /// Every state, for metrics.
    pub const ALL: [AdminState; 3] = [
        AdminState::Enabled,
        AdminState::Draining,
        AdminState::Disabled,
    ];

    /// Parses the admin API's verb (`enable`, `drain`, `disable`).
    pub fn from_verb(verb: &str) -> Option<AdminState> {
        match verb {
            "enable" => Some(AdminState::Enabled),
            "drain" => Some(AdminState::Draining),
            "disable" => Some(AdminState::Disabled),
            _ => None,
        }
    }

    /// Lower-case name used in metrics and JSON.
    pub fn as_str(self) -> &'static str {
        match self {
            AdminState::Enabled => "enabled",
            AdminState::Draining => "draining",
            AdminState::Disabled => "disabled",
        }
    }
}

/// The result of a backend's last health probe.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub enum LastProbe {
    /// No probe has finished yet.
    None = 0,
    /// The last probe passed.
    Passed = 1,
    /// The last probe failed.
    Failed = 2,
}

impl LastProbe {
    /// The word in `/status`: `none`, `ok` or `failed`.
    pub fn as_str(self) -> &'static str {
        match self {
            LastProbe::None => "none",
            LastProbe::Passed => "ok",
            LastProbe::Failed => "failed",
        }
    }
}

/// One origin server.
///
/// Invariants: `alive` has one writer (the health thread, or startup); counters change
/// only through `fetch_add`/`fetch_sub`. All atomics use `Relaxed`: each is an
/// independent statistic or hint, and no other memory is published through them.
#[derive(Debug)]
pub struct Backend {
    /// Name in logs, metrics and the admin API.
    pub name: String,
    /// The pool it belongs to.
    pub pool: String,
    /// Where it listens.
    pub address: SocketAddr,
    /// Relative share for weighted algorithms (≥ 1).
    pub weight: u32,
    /// The PROXY protocol header each new connection to it starts with, if any.
    pub send_proxy: Option<ProxyVersion>,
    alive: AtomicBool,
    /// Milliseconds after [`epoch`] at which it last came up; `u64::MAX` while it has
    /// been up since lbd started (no slow start due).
    up_since: AtomicU64,
    admin: AtomicU8,
    /// Requests currently assigned to it, across workers. On its own cache line: every
    /// worker updates it per request, and it must not slow down reads of `alive`.
    pub in_flight: CachePadded<AtomicUsize>,
    /// Upstream connections opened to it.
    pub connections_total: AtomicU64,
    /// Tunnels opened to it (101 answers relayed).
    pub tunnels_total: AtomicU64,
    /// Attempts on it that failed (connect or before a response).
    pub failures_total: AtomicU64,
    /// Health probes that passed.
    pub probes_ok: AtomicU64,
    /// Health probes that failed.
    pub probes_failed: AtomicU64,
    /// A [`LastProbe`] as its `u8`; written by the health thread only.
    last_probe: AtomicU8,
    /// Attempts on it that were retried (elsewhere or on a fresh connection).
    pub retries_total: AtomicU64,
    /// Pooled idle connections to it, all workers.
    idle: AtomicI64,
    /// Answers relayed from it, by status, with durations.
    pub responses: ResponseStats,
}

impl Backend {
    /// A backend from its config, alive and enabled.
    pub fn new(config: &BackendConfig, pool: &str) -> Backend {
        epoch();
        Backend {
            name: config.name.clone(),
            pool: pool.to_owned(),
            address: config.address,
            weight: config.weight,
            send_proxy: config.send_proxy,
            alive: AtomicBool::new(true),
            up_since: AtomicU64::new(u64::MAX),
            admin: AtomicU8::new(AdminState::Enabled as u8),
            in_flight: CachePadded::new(AtomicUsize::new(0)),
            connections_total: AtomicU64::new(0),
            tunnels_total: AtomicU64::new(0),
            failures_total: AtomicU64::new(0),
            probes_ok: AtomicU64::new(0),
            probes_failed: AtomicU64::new(0),
            last_probe: AtomicU8::new(LastProbe::None as u8),
            retries_total: AtomicU64::new(0),
            idle: AtomicI64::new(0),
            responses: ResponseStats::default(),
        }
    }

    /// The health verdict.
    pub fn is_alive(&self) -> bool {
        self.alive.load(Ordering::Relaxed)
    }

    /// Sets the health verdict; called by the health thread only (and by a reload on a
    /// backend not yet published). Returns the old value.
    /// Coming up records `now` as the start of a slow-start ramp.
    pub fn set_alive(&self, alive: bool, now: Instant) -> bool {
        if alive && !self.is_alive() {
            let ms = now.saturating_duration_since(epoch()).as_millis() as u64;
            self.up_since.store(ms.min(u64::MAX - 1), Ordering::Relaxed);
        }
        self.alive.swap(alive, Ordering::Relaxed)
    }

    /// Marks a backend added by a reload as new, so slow start ramps it up.
    pub fn mark_new(&self, now: Instant) {
        let ms = now.saturating_duration_since(epoch()).as_millis() as u64;
        self.up_since.store(ms.min(u64::MAX - 1), Ordering::Relaxed);
    }

    /// How long it has been up, if it came up (or was added) after lbd started; `None`
    /// when it has been up all along.
    pub fn up_for(&self, now: Instant) -> Option<Duration> {
        match self.up_since.load(Ordering::Relaxed) {
            u64::MAX => None,
            ms => Some(now.saturating_duration_since(epoch() + Duration::from_millis(ms))),
        }
    }

    /// The operator's admission state.
    pub fn admin_state(&self) -> AdminState {
        match self.admin.load(Ordering::Relaxed) {
            0 => AdminState::Enabled,
            1 => AdminState::Draining,
            _ => AdminState::Disabled,
        }
    }

    /// Sets the operator's admission state.
    pub fn set_admin_state(&self, state: AdminState) {
        self.admin.store(state as u8, Ordering::Relaxed);
    }

    /// Alive and enabled: may be picked for a new request.
    pub fn is_eligible(&self) -> bool {
        self.is_alive() && self.admin_state() == AdminState::Enabled
    }

    /// Pooled idle connections to it right now.
    pub fn idle_connections(&self) -> i64 {
        self.idle.load(Ordering::Relaxed)
    }

    /// Adjusts the idle-connection gauge (pool put: +1, take or close: -1).
    pub fn add_idle(&self, delta: i64) {
        self.idle.fetch_add(delta, Ordering::Relaxed);
    }

    /// Records a probe's result (health thread only).
    pub fn record_probe(&self, ok: bool) {
        let (counter, last) = if ok {
            (&self.probes_ok, LastProbe::Passed)
        } else {
            (&self.probes_failed, LastProbe::Failed)
        };
        counter.fetch_add(1, Ordering::Relaxed);
        self.last_probe.store(last as u8, Ordering::Relaxed);
    }

    /// The last probe's result.
    pub fn last_probe(&self) -> LastProbe {
        match self.last_probe.load(Ordering::Relaxed) {
            1 => LastProbe::Passed,
            2 => LastProbe::Failed,
            _ => LastProbe::None,
        }
    }

    /// Requests in flight right now.
    pub fn load(&self) -> usize {
        self.in_flight.load(Ordering::Relaxed)
    }
}

/// The instant `up_since` counts from (the first time anyone asked).
fn epoch() -> Instant {
    static EPOCH: OnceLock<Instant> = OnceLock::new();
    *EPOCH.get_or_init(Instant::now)
}
