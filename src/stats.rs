//! Shared counters: what workers record and the renderers (`metrics`, `admin`) read. A
//! leaf module: it knows nothing of backends, snapshots or sockets.
//!
//! Every counter is a `Relaxed` atomic: each is an independent statistic and publishes no
//! other memory.

use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

/// Upper bounds (seconds) of the request duration histogram buckets.
pub const BUCKETS: [f64; 12] = [
    0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
];

/// The reasons a connection is refused for its PROXY protocol header (spec §11): the
/// parser's words (`proxy_protocol::ProxyError::reason`), then `timeout` (incomplete at
/// `client_header`), `closed` (the peer closed mid-header) and `untrusted` (a peer outside
/// `trusted_proxies`).
pub const PROXY_ERROR_REASONS: [&str; 10] = [
    "bad_signature",
    "bad_syntax",
    "too_long",
    "bad_version",
    "bad_command",
    "bad_family",
    "bad_length",
    "timeout",
    "closed",
    "untrusted",
];

/// Responses by status code and their durations, for one backend (or for answers lbd
/// made without one).
#[derive(Debug)]
pub struct ResponseStats {
    /// Index `code - 100`, codes 100–599.
    codes: Box<[AtomicU64]>,
    /// Each slot counts its own range; cumulative counts are computed when rendered.
    buckets: [AtomicU64; BUCKETS.len() + 1],
    sum_micros: AtomicU64,
    count: AtomicU64,
}

impl Default for ResponseStats {
    fn default() -> Self {
        ResponseStats {
            codes: (100..600).map(|_| AtomicU64::new(0)).collect(),
            buckets: Default::default(),
            sum_micros: AtomicU64::new(0),
            count: AtomicU64::new(0),
        }
    }
}

impl ResponseStats {
    /// Records one answered request.
    pub fn record(&self, code: u16, duration: Duration) {
        if let Some(slot) = self.codes.get(usize::from(code).wrapping_sub(100)) {
            slot.fetch_add(1, Ordering::Relaxed);
        }
        let secs = duration.as_secs_f64();
        let bucket = BUCKETS
            .iter()
            .position(|&b| secs <= b)
            .unwrap_or(BUCKETS.len());
        self.buckets[bucket].fetch_add(1, Ordering::Relaxed);
        self.sum_micros
            .fetch_add(duration.as_micros() as u64, Ordering::Relaxed);
        self.count.fetch_add(1, Ordering::Relaxed);
    }

    /// Requests answered with `code`.
    pub fn code(&self, code: u16) -> u64 {
        self.codes
            .get(usize::from(code).wrapping_sub(100))
            .map_or(0, |c| c.load(Ordering::Relaxed))
    }

    /// Every status code with a non-zero count, ascending.
    pub fn codes(&self) -> impl Iterator<Item = (u16, u64)> + '_ {
        self.codes
            .iter()
            .enumerate()
            .map(|(i, c)| (i as u16 + 100, c.load(Ordering::Relaxed)))
            .filter(|&(_, n)| n > 0)
    }

    /// Cumulative histogram counts: one per bound of [`BUCKETS`], then `+Inf`.
    pub fn cumulative_buckets(&self) -> [u64; BUCKETS.len() + 1] {
        let mut out = [0; BUCKETS.len() + 1];
        let mut total = 0;
        for (slot, bucket) in out.iter_mut().zip(&self.buckets) {
            total += bucket.load(Ordering::Relaxed);
            *slot = total;
        }
        out
    }

    /// Sum of the recorded durations.
    pub fn sum(&self) -> Duration {
        Duration::from_micros(self.sum_micros.load(Ordering::Relaxed))
    }

    /// All requests answered.
    pub fn total(&self) -> u64 {
        self.count.load(Ordering::Relaxed)
    }

    /// Requests answered with a 5xx.
    pub fn server_errors(&self) -> u64 {
        (500..600).map(|c| self.code(c)).sum()
    }
}

/// Process-wide state outside any snapshot.
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
    /// TLS handshakes that finished.
    pub tls_handshakes_ok: AtomicU64,
    /// TLS handshakes that failed (bad ClientHello, no shared version or cipher, ...).
    pub tls_handshakes_failed: AtomicU64,
    /// Open TLS client connections, all workers.
    pub tls_connections: AtomicUsize,
    /// Open tunnels (spec §10), all workers.
    pub tunnels: AtomicUsize,
    /// Connections closed for their PROXY protocol header, by reason
    /// ([`PROXY_ERROR_REASONS`]).
    pub proxy_errors: [AtomicU64; PROXY_ERROR_REASONS.len()],
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
    /// Counts a connection refused for its PROXY header, by reason (one of
    /// [`PROXY_ERROR_REASONS`]; another word is counted nowhere).
    pub fn record_proxy_error(&self, reason: &str) {
        if let Some(i) = PROXY_ERROR_REASONS.iter().position(|&r| r == reason) {
            self.proxy_errors[i].fetch_add(1, Ordering::Relaxed);
        }
    }
}

impl Default for Shared {
    fn default() -> Self {
        Shared {
            started: Instant::now(),
            open_connections: AtomicUsize::new(0),
            connections_total: AtomicU64::new(0),
            client_in_bytes: AtomicU64::new(0),
            client_out_bytes: AtomicU64::new(0),
            retries_total: AtomicU64::new(0),
            tls_handshakes_ok: AtomicU64::new(0),
            tls_handshakes_failed: AtomicU64::new(0),
            tls_connections: AtomicUsize::new(0),
            tunnels: AtomicUsize::new(0),
            proxy_errors: Default::default(),
            unrouted: ResponseStats::default(),
            reloads_ok: AtomicU64::new(0),
            reloads_failed: AtomicU64::new(0),
            shutting_down: AtomicBool::new(false),
        }
    }
}

/// Counters a worker accumulates locally and adds to [`Shared`] once per loop turn
/// ([`LocalStats::flush`]), so bytes and retries cost no shared write per request.
/// (Per-backend response counts are still recorded in the backend's [`ResponseStats`].)
#[derive(Debug, Default)]
pub struct LocalStats {
    /// Bytes read from clients.
    pub client_in: u64,
    /// Bytes written to clients.
    pub client_out: u64,
    /// Retried attempts.
    pub retries: u64,
    /// TLS handshakes finished.
    pub tls_handshakes_ok: u64,
    /// TLS handshakes failed.
    pub tls_handshakes_failed: u64,
}

impl LocalStats {
    /// Counts a TLS handshake's outcome.
    pub fn record_handshake(&mut self, ok: bool) {
        if ok {
            self.tls_handshakes_ok += 1;
        } else {
            self.tls_handshakes_failed += 1;
        }
    }

    /// Adds what was counted to `shared` and starts over.
    pub fn flush(&mut self, shared: &Shared) {
        let stats = std::mem::take(self);
        for (counter, n) in [
            (&shared.client_in_bytes, stats.client_in),
            (&shared.client_out_bytes, stats.client_out),
            (&shared.retries_total, stats.retries),
            (&shared.tls_handshakes_ok, stats.tls_handshakes_ok),
            (&shared.tls_handshakes_failed, stats.tls_handshakes_failed),
        ] {
            if n > 0 {
                counter.fetch_add(n, Ordering::Relaxed);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn histogram_is_cumulative() {
        let s = ResponseStats::default();
        s.record(200, Duration::from_micros(500));
        s.record(200, Duration::from_millis(30));
        s.record(503, Duration::from_secs(60));
        assert_eq!(
            (s.code(200), s.code(503), s.total(), s.server_errors()),
            (2, 1, 3, 1)
        );
        let b = s.cumulative_buckets();
        assert_eq!((b[0], b[4], b[BUCKETS.len()]), (1, 2, 3));
        assert_eq!(s.codes().collect::<Vec<_>>(), vec![(200, 2), (503, 1)]);
    }
}
