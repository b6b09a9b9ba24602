//! Counters behind `/metrics` and `/status`, and the Prometheus text writer. Recording is
//! lock-free (`Relaxed` atomics: each value is an independent statistic); rendering runs
//! on the admin thread.

use std::fmt::Write as _;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use crate::backend::Backend;
use crate::control::{Shared, Snapshot};

/// Upper bounds (seconds) of the request duration histogram buckets.
pub const BUCKETS: [f64; 12] = [
    0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
];

/// Responses by status code and their durations, for one backend (or for answers lbd
/// made without one).
#[derive(Debug)]
pub struct ResponseStats {
    /// Index `code - 100`, codes 100–599.
    codes: Box<[AtomicU64]>,
    /// Cumulative counts are computed at render time; each slot counts its own range.
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

    /// All requests answered.
    pub fn total(&self) -> u64 {
        self.count.load(Ordering::Relaxed)
    }

    /// Requests answered with a 5xx.
    pub fn server_errors(&self) -> u64 {
        (500..600).map(|c| self.code(c)).sum()
    }

    fn render(&self, out: &mut String, backend: &str) {
        for (i, c) in self.codes.iter().enumerate() {
            let n = c.load(Ordering::Relaxed);
            if n > 0 {
                let _ = writeln!(
                    out,
                    "lbd_requests_total{{backend=\"{backend}\",code=\"{}\"}} {n}",
                    i + 100
                );
            }
        }
    }

    fn render_histogram(&self, out: &mut String, backend: &str) {
        let mut cumulative = 0;
        for (i, bound) in BUCKETS.iter().enumerate() {
            cumulative += self.buckets[i].load(Ordering::Relaxed);
            let _ = writeln!(
                out,
                "lbd_request_duration_seconds_bucket{{backend=\"{backend}\",le=\"{bound}\"}} {cumulative}"
            );
        }
        cumulative += self.buckets[BUCKETS.len()].load(Ordering::Relaxed);
        let _ = writeln!(
            out,
            "lbd_request_duration_seconds_bucket{{backend=\"{backend}\",le=\"+Inf\"}} {cumulative}"
        );
        let sum = self.sum_micros.load(Ordering::Relaxed) as f64 / 1e6;
        let _ = writeln!(
            out,
            "lbd_request_duration_seconds_sum{{backend=\"{backend}\"}} {sum}"
        );
        let _ = writeln!(
            out,
            "lbd_request_duration_seconds_count{{backend=\"{backend}\"}} {cumulative}"
        );
    }
}

/// Escapes a label value (backslash, quote, newline).
fn label(value: &str) -> String {
    value
        .replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

fn header(out: &mut String, name: &str, kind: &str, help: &str) {
    let _ = writeln!(out, "# HELP {name} {help}");
    let _ = writeln!(out, "# TYPE {name} {kind}");
}

/// Renders the Prometheus text exposition (version 0.0.4).
pub fn render(snapshot: &Snapshot, shared: &Shared) -> String {
    let mut out = String::with_capacity(4096);
    let backends: Vec<(String, &Backend)> = snapshot
        .backends
        .iter()
        .map(|b| (label(&b.name), &**b))
        .collect();
    let load = |a: &AtomicU64| a.load(Ordering::Relaxed);

    header(
        &mut out,
        "lbd_requests_total",
        "counter",
        "Requests answered, by backend and status code.",
    );
    for (name, b) in &backends {
        b.responses.render(&mut out, name);
    }
    shared.unrouted.render(&mut out, "none");

    header(
        &mut out,
        "lbd_request_duration_seconds",
        "histogram",
        "Time from request head to response end.",
    );
    for (name, b) in &backends {
        b.responses.render_histogram(&mut out, name);
    }
    shared.unrouted.render_histogram(&mut out, "none");

    header(
        &mut out,
        "lbd_backend_up",
        "gauge",
        "1 when the backend passes health checks.",
    );
    for (name, b) in &backends {
        let _ = writeln!(
            out,
            "lbd_backend_up{{backend=\"{name}\"}} {}",
            u8::from(b.is_alive())
        );
    }
    header(
        &mut out,
        "lbd_backend_in_flight",
        "gauge",
        "Requests in flight to the backend.",
    );
    for (name, b) in &backends {
        let _ = writeln!(
            out,
            "lbd_backend_in_flight{{backend=\"{name}\"}} {}",
            b.load()
        );
    }
    header(
        &mut out,
        "lbd_backend_admin_state",
        "gauge",
        "1 for the backend's current admin state.",
    );
    for (name, b) in &backends {
        for state in crate::backend::AdminState::ALL {
            let v = u8::from(b.admin_state() == state);
            let _ = writeln!(
                out,
                "lbd_backend_admin_state{{backend=\"{name}\",state=\"{}\"}} {v}",
                state.as_str()
            );
        }
    }
    header(
        &mut out,
        "lbd_retries_total",
        "counter",
        "Attempts retried after a failure, by backend that failed.",
    );
    for (name, b) in &backends {
        let _ = writeln!(
            out,
            "lbd_retries_total{{backend=\"{name}\"}} {}",
            load(&b.retries_total)
        );
    }
    header(
        &mut out,
        "lbd_health_probes_total",
        "counter",
        "Health probes, by result.",
    );
    for (name, b) in &backends {
        let _ = writeln!(
            out,
            "lbd_health_probes_total{{backend=\"{name}\",result=\"ok\"}} {}",
            load(&b.probes_ok)
        );
        let _ = writeln!(
            out,
            "lbd_health_probes_total{{backend=\"{name}\",result=\"failed\"}} {}",
            load(&b.probes_failed)
        );
    }
    header(
        &mut out,
        "lbd_upstream_connections_total",
        "counter",
        "Upstream connections opened.",
    );
    for (name, b) in &backends {
        let _ = writeln!(
            out,
            "lbd_upstream_connections_total{{backend=\"{name}\"}} {}",
            load(&b.connections_total)
        );
    }
    header(
        &mut out,
        "lbd_upstream_idle_connections",
        "gauge",
        "Pooled idle upstream connections.",
    );
    for (name, b) in &backends {
        let _ = writeln!(
            out,
            "lbd_upstream_idle_connections{{backend=\"{name}\"}} {}",
            b.idle_connections()
        );
    }
    header(
        &mut out,
        "lbd_client_connections",
        "gauge",
        "Open client connections.",
    );
    let _ = writeln!(
        out,
        "lbd_client_connections {}",
        shared.open_connections.load(Ordering::Relaxed)
    );
    header(
        &mut out,
        "lbd_client_connections_total",
        "counter",
        "Client connections accepted.",
    );
    let _ = writeln!(
        out,
        "lbd_client_connections_total {}",
        load(&shared.connections_total)
    );
    header(
        &mut out,
        "lbd_bytes_total",
        "counter",
        "Bytes to and from clients.",
    );
    let _ = writeln!(
        out,
        "lbd_bytes_total{{direction=\"client_in\"}} {}",
        load(&shared.client_in_bytes)
    );
    let _ = writeln!(
        out,
        "lbd_bytes_total{{direction=\"client_out\"}} {}",
        load(&shared.client_out_bytes)
    );
    header(
        &mut out,
        "lbd_config_reloads_total",
        "counter",
        "Configuration reloads, by result.",
    );
    let _ = writeln!(
        out,
        "lbd_config_reloads_total{{result=\"ok\"}} {}",
        load(&shared.reloads_ok)
    );
    let _ = writeln!(
        out,
        "lbd_config_reloads_total{{result=\"failed\"}} {}",
        load(&shared.reloads_failed)
    );
    header(
        &mut out,
        "lbd_build_info",
        "gauge",
        "Always 1; the version is a label.",
    );
    let _ = writeln!(out, "lbd_build_info{{version=\"{}\"}} 1", crate::VERSION);
    header(
        &mut out,
        "lbd_uptime_seconds",
        "gauge",
        "Seconds since lbd started.",
    );
    let _ = writeln!(
        out,
        "lbd_uptime_seconds {}",
        shared.started.elapsed().as_secs_f64()
    );
    out
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
        let mut out = String::new();
        s.render_histogram(&mut out, "b");
        assert!(out.contains("le=\"0.001\"} 1\n"), "{out}");
        assert!(out.contains("le=\"0.05\"} 2\n"), "{out}");
        assert!(out.contains("le=\"+Inf\"} 3\n"), "{out}");
    }

    #[test]
    fn labels_are_escaped() {
        assert_eq!(label("a\"b\\c"), "a\\\"b\\\\c");
    }
}
