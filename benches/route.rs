//! `RouteTable::lookup` over 1,000 routes, a mix like a shared edge's: 300 exact hosts
//! with two prefixes each (`/` and `/api/`), 100 wildcard hosts, 300 host-less prefixes,
//! and no catch-all (so a miss is possible). Each row cycles through 64 different
//! requests of one kind, with a port in `Host`, mixed case and a query string where a
//! client would send them. The reference is the obvious implementation: a scan of all
//! 1,000 routes keeping the best match. One iteration is one lookup. Results:
//! docs/benchmarks.md.
//!
//! Run: `cargo bench --bench route`.

use std::hint::black_box;
use std::time::Duration;

use criterion::{criterion_group, criterion_main, Criterion};

use lbd::route::{HostPattern, RouteSpec, RouteTable};

const EXACT_HOSTS: usize = 300;
const WILDCARDS: usize = 100;
const HOSTLESS: usize = 300;
const REQUESTS: usize = 64;

fn spec(host: HostPattern, path_prefix: String) -> RouteSpec {
    RouteSpec {
        host,
        path_prefix,
        pool: 0,
    }
}

/// The 1,000 routes, interleaved as a hand-written file might list them.
fn routes() -> Vec<RouteSpec> {
    let mut specs = Vec::new();
    for i in 0..EXACT_HOSTS {
        let host = HostPattern::parse(&format!("svc{i}.example.com")).unwrap();
        specs.push(spec(host.clone(), "/".into()));
        specs.push(spec(host, "/api/".into()));
    }
    for i in 0..WILDCARDS {
        let host = HostPattern::parse(&format!("*.tenant{i}.example.net")).unwrap();
        specs.push(spec(host, "/".into()));
    }
    for i in 0..HOSTLESS {
        let prefix = match i % 3 {
            0 => format!("/static/v{i}/"),
            1 => format!("/media/{i}/"),
            _ => format!("/legacy/app{i}"),
        };
        specs.push(spec(HostPattern::Any, prefix));
    }
    assert_eq!(specs.len(), 1000);
    specs
}

/// `REQUESTS` (Host, target) pairs made by `f(k)`.
fn requests(f: impl Fn(usize) -> (String, String)) -> Vec<(String, String)> {
    (0..REQUESTS).map(|k| f(k * 37 % 300)).collect()
}

/// Brute force: every route, the best match by spec §12's precedence.
fn scan(specs: &[RouteSpec], host: &[u8], target: &[u8]) -> Option<usize> {
    let path = target.split(|&b| b == b'?').next().unwrap_or(target);
    let mut host = host.split(|&b| b == b':').next().unwrap_or(host);
    if let Some(h) = host.strip_suffix(b".") {
        host = h;
    }
    let mut best: Option<((u8, usize, usize), usize)> = None;
    for (i, s) in specs.iter().enumerate() {
        if !path.starts_with(s.path_prefix.as_bytes()) {
            continue;
        }
        let kind = match &s.host {
            HostPattern::Any => (0, 0),
            HostPattern::Exact(name) if name.as_bytes().eq_ignore_ascii_case(host) => (2, 0),
            HostPattern::Wildcard(w) => {
                let suffix = &w.as_bytes()[1..];
                let at = host.len().wrapping_sub(suffix.len());
                match host.get(at..) {
                    Some(end) if at > 0 && end.eq_ignore_ascii_case(suffix) => (1, suffix.len()),
                    _ => continue,
                }
            }
            HostPattern::Exact(_) => continue,
        };
        let rank = (kind.0, kind.1, s.path_prefix.len());
        if best.is_none_or(|(r, _)| rank > r) {
            best = Some((rank, i));
        }
    }
    best.map(|(_, i)| i)
}

fn route_benches(c: &mut Criterion) {
    let specs = routes();
    let table = RouteTable::new(&specs);
    let kinds: [(&str, Vec<(String, String)>); 4] = [
        (
            "exact_host",
            requests(|k| {
                (
                    format!("Svc{k}.Example.com:8443"),
                    format!("/api/v2/users/{k}?page=3"),
                )
            }),
        ),
        (
            "wildcard_host",
            requests(|k| {
                (
                    format!("app-{k}.tenant{}.example.net", k % WILDCARDS),
                    "/dashboard?tab=usage".to_owned(),
                )
            }),
        ),
        (
            "hostless_prefix",
            requests(|k| {
                (
                    format!("www.customer{k}.org"),
                    format!("/media/{}/img/logo.png", k / 3 * 3 + 1),
                )
            }),
        ),
        (
            "miss",
            requests(|k| {
                (
                    format!("www.customer{k}.org:8080"),
                    format!("/search?q={k}"),
                )
            }),
        ),
    ];
    for (name, reqs) in &kinds {
        for (host, target) in reqs {
            let got = table.lookup(host.as_bytes(), target.as_bytes());
            assert_eq!(got, scan(&specs, host.as_bytes(), target.as_bytes()));
            assert_eq!(got.is_some(), *name != "miss", "{name}: {host} {target}");
        }
    }

    let mut group = c.benchmark_group("route_lookup_1000");
    for (name, reqs) in &kinds {
        group.bench_function(*name, |b| {
            let mut k = 0;
            b.iter(|| {
                k = (k + 1) % REQUESTS;
                let (host, target) = &reqs[k];
                black_box(table.lookup(black_box(host.as_bytes()), target.as_bytes()))
            })
        });
    }
    for (name, reqs) in kinds
        .iter()
        .filter(|(n, _)| *n == "miss" || *n == "exact_host")
    {
        group.bench_function(format!("reference_scan/{name}"), |b| {
            let mut k = 0;
            b.iter(|| {
                k = (k + 1) % REQUESTS;
                let (host, target) = &reqs[k];
                black_box(scan(&specs, black_box(host.as_bytes()), target.as_bytes()))
            })
        });
    }
    group.finish();
}

criterion_group! {
    name = benches;
    config = Criterion::default()
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(2));
    targets = route_benches
}
criterion_main!(benches);
