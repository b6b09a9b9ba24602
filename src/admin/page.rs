//! `GET /`: the status page, rendered here so that the HTML lbd sends already lists every
//! backend (a `curl` of `/` reads it without script). The page's script then refreshes the
//! table from `/status` every `?refresh=` milliseconds and draws each backend's charts
//! from those samples.
//!
//! The table is [`COLUMNS`]: each names the `/status` key its cells show and how they
//! read, and the script takes the same list from the header the server wrote, so a
//! column (a backend's `pool`, spec §12) is one entry here and one key in the view.

use std::fmt::Write as _;

use super::view::{BackendView, StatusView};

/// The page around the rendered parts; `{{name}}` marks where each goes.
const TEMPLATE: &str = include_str!("page.html");

/// Refresh interval (milliseconds) without `?refresh=`.
pub const DEFAULT_REFRESH_MS: u64 = 2000;
/// The shortest and longest `?refresh=` accepted (milliseconds); others are clamped.
pub const REFRESH_RANGE_MS: (u64, u64) = (100, 60_000);

/// How a column's value reads; the page's script formats by the same word.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    /// Shown as is.
    Text,
    /// Right-aligned number.
    Number,
    /// `true`/`false` shown as `up`/`down`.
    Alive,
    /// The admin state, highlighted unless `enabled`.
    Admin,
}

impl Kind {
    fn as_str(self) -> &'static str {
        match self {
            Kind::Text => "text",
            Kind::Number => "number",
            Kind::Alive => "alive",
            Kind::Admin => "admin",
        }
    }
}

/// One column of the backend table.
struct Column {
    /// Header text.
    header: &'static str,
    /// The backend's `/status` key the script refreshes the cell from.
    key: &'static str,
    kind: Kind,
    /// The cell's value as `/status` has it (`alive` as `true`/`false`).
    value: fn(&BackendView) -> String,
}

/// The backend table, left to right.
const COLUMNS: &[Column] = &[
    Column {
        header: "backend",
        key: "name",
        kind: Kind::Text,
        value: |b| b.name.to_string(),
    },
    Column {
        header: "pool",
        key: "pool",
        kind: Kind::Text,
        value: |b| b.pool.to_string(),
    },
    Column {
        header: "address",
        key: "address",
        kind: Kind::Text,
        value: |b| b.address.clone(),
    },
    Column {
        header: "state",
        key: "alive",
        kind: Kind::Alive,
        value: |b| b.alive.to_string(),
    },
    Column {
        header: "admin",
        key: "admin_state",
        kind: Kind::Admin,
        value: |b| b.admin_state.to_string(),
    },
    Column {
        header: "weight",
        key: "weight",
        kind: Kind::Number,
        value: |b| b.weight.to_string(),
    },
    Column {
        header: "in flight",
        key: "in_flight",
        kind: Kind::Number,
        value: |b| b.in_flight.to_string(),
    },
    Column {
        header: "requests",
        key: "requests_total",
        kind: Kind::Number,
        value: |b| b.requests_total.to_string(),
    },
    Column {
        header: "5xx",
        key: "errors_total",
        kind: Kind::Number,
        value: |b| b.errors_total.to_string(),
    },
    Column {
        header: "retries",
        key: "retries_total",
        kind: Kind::Number,
        value: |b| b.retries_total.to_string(),
    },
    Column {
        header: "idle conns",
        key: "idle_connections",
        kind: Kind::Number,
        value: |b| b.idle_connections.to_string(),
    },
    Column {
        header: "last probe",
        key: "last_probe",
        kind: Kind::Text,
        value: |b| b.last_probe.to_string(),
    },
];

/// The refresh interval a request's query asks for (`refresh=MILLISECONDS`), clamped to
/// [`REFRESH_RANGE_MS`]; [`DEFAULT_REFRESH_MS`] when absent or not a number.
pub fn refresh_ms(query: &str) -> u64 {
    query
        .split('&')
        .find_map(|pair| pair.strip_prefix("refresh="))
        .and_then(|v| v.parse::<u64>().ok())
        .map_or(DEFAULT_REFRESH_MS, |ms| {
            ms.clamp(REFRESH_RANGE_MS.0, REFRESH_RANGE_MS.1)
        })
}

/// The whole page for `view`, refreshing every `refresh_ms`.
pub fn html(view: &StatusView, refresh_ms: u64) -> String {
    let mut out = String::with_capacity(TEMPLATE.len() + 1024 * (1 + view.backends.len()));
    let mut rest = TEMPLATE;
    while let Some(start) = rest.find("{{") {
        out.push_str(&rest[..start]);
        let Some(len) = rest[start..].find("}}") else {
            break;
        };
        fill(&mut out, &rest[start + 2..start + len], view, refresh_ms);
        rest = &rest[start + len + 2..];
    }
    out.push_str(rest);
    out
}

/// Writes the part of the page named `name`.
fn fill(out: &mut String, name: &str, view: &StatusView, refresh_ms: u64) {
    match name {
        "refresh_ms" => {
            let _ = write!(out, "{refresh_ms}");
        }
        "refresh_s" => {
            let _ = write!(out, "{}", refresh_ms.div_ceil(1000));
        }
        "summary" => escape(out, &summary(view)),
        "columns" => {
            for c in COLUMNS {
                let _ = write!(
                    out,
                    "<th data-key=\"{}\" data-kind=\"{}\">",
                    c.key,
                    c.kind.as_str()
                );
                escape(out, c.header);
                out.push_str("</th>");
            }
        }
        "rows" => {
            for b in &view.backends {
                out.push_str("\n    <tr>");
                for c in COLUMNS {
                    cell(out, c.kind, &(c.value)(b));
                }
                out.push_str("</tr>");
            }
        }
        "charts" => {
            for b in &view.backends {
                out.push_str("\n  <div class=\"card\" data-chart=\"");
                escape(out, b.name);
                out.push_str("\"><h2>");
                escape(out, b.name);
                out.push_str("</h2><p class=\"pending\">collecting samples…</p></div>");
            }
        }
        other => debug_assert!(false, "page.html names an unknown part {other:?}"),
    }
}

/// The line under the title (the script writes the same).
fn summary(view: &StatusView) -> String {
    format!(
        "version {} · up {} s · {} workers · {} client connections · algorithm {} · config generation {}",
        view.version,
        view.uptime_seconds.floor(),
        view.workers,
        view.client_connections,
        view.algorithm,
        view.generation
    )
}

/// One `<td>`, read as `kind` (the script's `cell` makes the same).
fn cell(out: &mut String, kind: Kind, value: &str) {
    let (text, class) = match kind {
        Kind::Text => (value, ""),
        Kind::Number => (value, "num"),
        Kind::Alive if value == "true" => ("up", "state up"),
        Kind::Alive => ("down", "state down"),
        Kind::Admin if value == "enabled" => (value, ""),
        Kind::Admin => (value, value),
    };
    out.push_str("<td");
    if !class.is_empty() {
        out.push_str(" class=\"");
        escape(out, class);
        out.push('"');
    }
    out.push('>');
    escape(out, text);
    out.push_str("</td>");
}

/// Appends `s` with the characters HTML gives meaning to (in text and in quoted
/// attributes) escaped.
fn escape(out: &mut String, s: &str) {
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::stats::BUCKETS;

    fn backend<'a>(name: &'a str, alive: bool) -> BackendView<'a> {
        BackendView {
            name,
            pool: "default",
            address: "127.0.0.1:8081".into(),
            weight: 2,
            alive,
            admin_state: "draining",
            in_flight: 1,
            requests_total: 42,
            errors_total: 3,
            retries_total: 0,
            idle_connections: 2,
            last_probe: "ok",
            duration_buckets: [0; BUCKETS.len() + 1],
        }
    }

    fn view<'a>(backends: Vec<BackendView<'a>>) -> StatusView<'a> {
        StatusView {
            version: "0.1.0",
            uptime_seconds: 12.7,
            workers: 2,
            generation: 1,
            algorithm: "round_robin",
            client_connections: 5,
            backends,
            pools: Vec::new(),
        }
    }

    #[test]
    fn refresh_query() {
        for (query, ms) in [
            ("", DEFAULT_REFRESH_MS),
            ("refresh=200", 200),
            ("x=1&refresh=750", 750),
            ("refresh=1", 100),
            ("refresh=99999999", 60_000),
            ("refresh=soon", DEFAULT_REFRESH_MS),
            ("refresh=-5", DEFAULT_REFRESH_MS),
        ] {
            assert_eq!(refresh_ms(query), ms, "{query:?}");
        }
    }

    #[test]
    fn renders_every_backend_row_escaped() {
        let page = html(
            &view(vec![backend("app-1", true), backend("<b>&\"x'", false)]),
            200,
        );
        assert!(!page.contains("{{"), "a part left unfilled");
        assert!(page.contains("data-refresh-ms=\"200\""));
        assert!(
            page.contains("content=\"1\""),
            "noscript refresh in seconds"
        );
        assert!(page.contains(
            "<tr><td>app-1</td><td>default</td><td>127.0.0.1:8081</td><td class=\"state up\">up</td>\
             <td class=\"draining\">draining</td><td class=\"num\">2</td><td class=\"num\">1</td>\
             <td class=\"num\">42</td><td class=\"num\">3</td>"
        ));
        assert!(page.contains("<td>&lt;b&gt;&amp;&quot;x&#39;</td>"));
        assert!(page.contains("<td class=\"state down\">down</td>"));
        assert!(page.contains("data-chart=\"&lt;b&gt;&amp;&quot;x&#39;\""));
        assert!(!page.contains("<b>&"), "an unescaped name");
        assert!(page.contains("up 12 s · 2 workers · 5 client connections · algorithm round_robin"));
        assert!(page.contains("<th data-key=\"errors_total\" data-kind=\"number\">5xx</th>"));
    }
}
