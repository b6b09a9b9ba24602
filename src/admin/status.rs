//! `GET /status`: the backends' state as JSON, written by hand (no serde_json).

use std::fmt::Write as _;
use std::sync::atomic::Ordering;

use crate::snapshot::Snapshot;
use crate::stats::Shared;

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

/// `{"version", "uptime_seconds", "workers", "backends": [...]}`.
pub fn json(snapshot: &Snapshot, shared: &Shared) -> String {
    let mut out = String::with_capacity(512);
    out.push_str("{\"version\":");
    string(&mut out, crate::VERSION);
    let _ = write!(
        out,
        ",\"uptime_seconds\":{:.3},\"workers\":{},\"generation\":{},\"algorithm\":",
        shared.started.elapsed().as_secs_f64(),
        snapshot.config.server.workers,
        snapshot.generation
    );
    string(&mut out, snapshot.config.balancer.algorithm.as_str());
    let _ = write!(
        out,
        ",\"client_connections\":{},\"backends\":[",
        shared.open_connections.load(Ordering::Relaxed)
    );
    for (i, b) in snapshot.backends.iter().enumerate() {
        if i > 0 {
            out.push(',');
        }
        out.push_str("{\"name\":");
        string(&mut out, &b.name);
        out.push_str(",\"address\":");
        string(&mut out, &b.address.to_string());
        let _ = write!(
            out,
            ",\"weight\":{},\"alive\":{},\"admin_state\":\"{}\",\"in_flight\":{},\"requests_total\":{},\
             \"errors_total\":{},\"retries_total\":{},\"idle_connections\":{},\"last_probe\":\"{}\"}}",
            b.weight,
            b.is_alive(),
            b.admin_state().as_str(),
            b.load(),
            b.responses.total(),
            b.responses.server_errors(),
            b.retries_total.load(Ordering::Relaxed),
            b.idle_connections(),
            b.last_probe().as_str()
        );
    }
    out.push_str("]}");
    out
}
