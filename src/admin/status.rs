//! `GET /status`: the backends' state as JSON, written by hand (no serde_json).

use std::fmt::Write as _;

use super::view::StatusView;
use crate::stats::BUCKETS;

/// A JSON string literal.
fn string(out: &mut String, s: &str) {
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            c if (c as u32) < 0x20 => {
                let _ = write!(out, "\\u{:04x}", c as u32);
            }
            c => out.push(c),
        }
    }
    out.push('"');
}

/// A JSON array of numbers.
fn array<T: std::fmt::Display>(out: &mut String, items: impl IntoIterator<Item = T>) {
    out.push('[');
    for (i, item) in items.into_iter().enumerate() {
        if i > 0 {
            out.push(',');
        }
        let _ = write!(out, "{item}");
    }
    out.push(']');
}

/// `{"version", "uptime_seconds", "workers", ..., "duration_bounds", "backends": [...]}`.
///
/// `duration_bounds` are the upper bounds (seconds) of the request-duration histogram;
/// each backend's `duration_buckets` holds its cumulative counts, one per bound and a
/// last one for `+Inf` (as `lbd_request_duration_seconds_bucket`). The difference of two
/// samples is the histogram of the requests answered between them (the page's p99).
pub fn json(view: &StatusView) -> String {
    let mut out = String::with_capacity(512 + 256 * view.backends.len());
    out.push_str("{\"version\":");
    string(&mut out, view.version);
    let _ = write!(
        out,
        ",\"uptime_seconds\":{:.3},\"workers\":{},\"generation\":{},\"algorithm\":",
        view.uptime_seconds, view.workers, view.generation
    );
    string(&mut out, view.algorithm);
    let _ = write!(
        out,
        ",\"client_connections\":{},\"duration_bounds\":",
        view.client_connections
    );
    array(&mut out, BUCKETS);
    out.push_str(",\"backends\":[");
    for (i, b) in view.backends.iter().enumerate() {
        if i > 0 {
            out.push(',');
        }
        out.push_str("{\"name\":");
        string(&mut out, b.name);
        out.push_str(",\"pool\":");
        string(&mut out, b.pool);
        out.push_str(",\"address\":");
        string(&mut out, &b.address);
        let _ = write!(
            out,
            ",\"weight\":{},\"alive\":{},\"admin_state\":\"{}\",\"in_flight\":{},\"requests_total\":{},\
             \"errors_total\":{},\"retries_total\":{},\"idle_connections\":{},\"last_probe\":\"{}\",\
             \"duration_buckets\":",
            b.weight,
            b.alive,
            b.admin_state,
            b.in_flight,
            b.requests_total,
            b.errors_total,
            b.retries_total,
            b.idle_connections,
            b.last_probe
        );
        array(&mut out, b.duration_buckets);
        out.push('}');
    }
    out.push_str("],\"pools\":[");
    for (i, p) in view.pools.iter().enumerate() {
        if i > 0 {
            out.push(',');
        }
        out.push_str("{\"name\":");
        string(&mut out, p.name);
        out.push_str(",\"algorithm\":");
        string(&mut out, p.algorithm);
        out.push_str(",\"backends\":[");
        for (j, name) in p.backends.iter().enumerate() {
            if j > 0 {
                out.push(',');
            }
            string(&mut out, name);
        }
        out.push_str("]}");
    }
    out.push_str("]}");
    out
}
