//! The Prometheus text exposition of `/metrics`: a renderer on the admin thread that reads
//! the snapshot's backends and the shared counters (`crate::stats`); nothing on a worker
//! imports it.

use std::fmt::Write as _;
use std::sync::atomic::{AtomicU64, Ordering};

use crate::backend::Backend;
use crate::snapshot::Snapshot;
use crate::stats::{ResponseStats, Shared, BUCKETS, PROXY_ERROR_REASONS};

/// The labels of answers lbd made without a backend.
const UNROUTED: &str = "backend=\"none\",pool=\"none\"";

/// `lbd_requests_total` lines for one set of labels.
fn render_codes(out: &mut String, stats: &ResponseStats, backend: &str) {
    for (code, n) in stats.codes() {
        let _ = writeln!(out, "lbd_requests_total{{{backend},code=\"{code}\"}} {n}");
    }
}

/// `lbd_request_duration_seconds` histogram lines for one label value.
fn render_histogram(out: &mut String, stats: &ResponseStats, backend: &str) {
    let cumulative = stats.cumulative_buckets();
    for (bound, n) in BUCKETS.iter().zip(cumulative) {
        let _ = writeln!(
            out,
            "lbd_request_duration_seconds_bucket{{{backend},le=\"{bound}\"}} {n}"
        );
    }
    let all = cumulative[BUCKETS.len()];
    let _ = writeln!(
        out,
        "lbd_request_duration_seconds_bucket{{{backend},le=\"+Inf\"}} {all}"
    );
    let _ = writeln!(
        out,
        "lbd_request_duration_seconds_sum{{{backend}}} {}",
        stats.sum().as_secs_f64()
    );
    let _ = writeln!(out, "lbd_request_duration_seconds_count{{{backend}}} {all}");
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
    // Every backend's labels: its name and its pool (spec §12).
    let backends: Vec<(String, &Backend)> = snapshot
        .backends
        .iter()
        .map(|b| {
            let labels = format!("backend=\"{}\",pool=\"{}\"", label(&b.name), label(&b.pool));
            (labels, &**b)
        })
        .collect();
    // Answers a pool gave without a backend (spec §12: which pool is failing); only
    // pools that gave one, so a healthy configuration's exposition does not grow.
    let pools: Vec<(String, &ResponseStats)> = snapshot
        .pools
        .iter()
        .filter(|p| p.answered.total() > 0)
        .map(|p| {
            (
                format!("backend=\"none\",pool=\"{}\"", label(&p.name)),
                &*p.answered,
            )
        })
        .collect();
    let load = |a: &AtomicU64| a.load(Ordering::Relaxed);

    header(
        &mut out,
        "lbd_requests_total",
        "counter",
        "Requests answered, by backend and status code.",
    );
    for (name, b) in &backends {
        render_codes(&mut out, &b.responses, name);
    }
    for (name, stats) in &pools {
        render_codes(&mut out, stats, name);
    }
    render_codes(&mut out, &shared.unrouted, UNROUTED);

    header(
        &mut out,
        "lbd_request_duration_seconds",
        "histogram",
        "Time from request head to response end.",
    );
    for (name, b) in &backends {
        render_histogram(&mut out, &b.responses, name);
    }
    for (name, stats) in &pools {
        render_histogram(&mut out, stats, name);
    }
    render_histogram(&mut out, &shared.unrouted, UNROUTED);

    header(
        &mut out,
        "lbd_backend_up",
        "gauge",
        "1 when the backend passes health checks.",
    );
    for (name, b) in &backends {
        let _ = writeln!(out, "lbd_backend_up{{{name}}} {}", u8::from(b.is_alive()));
    }
    header(
        &mut out,
        "lbd_backend_in_flight",
        "gauge",
        "Requests in flight to the backend.",
    );
    for (name, b) in &backends {
        let _ = writeln!(out, "lbd_backend_in_flight{{{name}}} {}", b.load());
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
                "lbd_backend_admin_state{{{name},state=\"{}\"}} {v}",
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
            "lbd_retries_total{{{name}}} {}",
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
            "lbd_health_probes_total{{{name},result=\"ok\"}} {}",
            load(&b.probes_ok)
        );
        let _ = writeln!(
            out,
            "lbd_health_probes_total{{{name},result=\"failed\"}} {}",
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
            "lbd_upstream_connections_total{{{name}}} {}",
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
            "lbd_upstream_idle_connections{{{name}}} {}",
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
        "lbd_tls_handshakes_total",
        "counter",
        "TLS handshakes, by result.",
    );
    let _ = writeln!(
        out,
        "lbd_tls_handshakes_total{{result=\"ok\"}} {}",
        load(&shared.tls_handshakes_ok)
    );
    let _ = writeln!(
        out,
        "lbd_tls_handshakes_total{{result=\"failed\"}} {}",
        load(&shared.tls_handshakes_failed)
    );
    header(
        &mut out,
        "lbd_tls_connections",
        "gauge",
        "Open TLS client connections.",
    );
    let _ = writeln!(
        out,
        "lbd_tls_connections {}",
        shared.tls_connections.load(Ordering::Relaxed)
    );
    header(
        &mut out,
        "lbd_tunnels",
        "gauge",
        "Open tunnels (upgraded connections).",
    );
    let _ = writeln!(
        out,
        "lbd_tunnels {}",
        shared.tunnels.load(Ordering::Relaxed)
    );
    header(
        &mut out,
        "lbd_tunnels_total",
        "counter",
        "Tunnels opened, by backend.",
    );
    for (name, b) in &backends {
        let _ = writeln!(
            out,
            "lbd_tunnels_total{{{name}}} {}",
            load(&b.tunnels_total)
        );
    }
    header(
        &mut out,
        "lbd_proxy_protocol_errors_total",
        "counter",
        "Connections closed for their PROXY protocol header, by reason.",
    );
    for (reason, n) in PROXY_ERROR_REASONS.iter().zip(&shared.proxy_errors) {
        let _ = writeln!(
            out,
            "lbd_proxy_protocol_errors_total{{reason=\"{reason}\"}} {}",
            load(n)
        );
    }
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
    use std::time::Duration;

    #[test]
    fn histogram_lines_are_cumulative() {
        let s = ResponseStats::default();
        s.record(200, Duration::from_micros(500));
        s.record(200, Duration::from_millis(30));
        s.record(503, Duration::from_secs(60));
        let mut out = String::new();
        render_histogram(&mut out, &s, "backend=\"b\"");
        assert!(out.contains("le=\"0.001\"} 1\n"), "{out}");
        assert!(out.contains("le=\"0.05\"} 2\n"), "{out}");
        assert!(out.contains("le=\"+Inf\"} 3\n"), "{out}");
    }

    #[test]
    fn labels_are_escaped() {
        assert_eq!(label("a\"b\\c"), "a\\\"b\\\\c");
    }
}
