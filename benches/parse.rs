//! Head parsing and rewriting, the per-request pure work of a worker: `RequestScan` (the
//! byte-by-byte check that also finds the end of the head) plus `http::request::parse`
//! (httparse, validation, lbd's re-serialised upstream head), and `ResponseScan` plus
//! `http::response::parse` for the way back. Reported as bytes of input head per
//! second. Results: docs/benchmarks.md.
//!
//! Run: `cargo bench --bench parse`.

use std::hint::black_box;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};

use criterion::{criterion_group, criterion_main, Criterion, Throughput};

use lbd::buffer::{BufPool, Buffer};
use lbd::http::request::{self, RequestContext};
use lbd::http::response::{self, ResponseContext};
use lbd::http::scan::{RequestScan, ResponseScan};

/// What `wrk` sends: the request of every proxy benchmark.
const WRK: &[u8] = b"GET / HTTP/1.1\r\nHost: 127.0.0.1:8080\r\n\r\n";

/// A browser's navigation request.
const BROWSER: &[u8] = b"GET /articles/2024/load-balancing?page=2&sort=new HTTP/1.1\r\n\
Host: www.example.com\r\n\
User-Agent: Mozilla/5.0 (X11; Linux x86_64; rv:128.0) Gecko/20100101 Firefox/128.0\r\n\
Accept: text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8\r\n\
Accept-Language: en-US,en;q=0.5\r\n\
Accept-Encoding: gzip, deflate, br, zstd\r\n\
Referer: https://www.example.com/articles/2024/\r\n\
Connection: keep-alive\r\n\
Cookie: session=7f3c2a9b41d84e0f9a6b5c3d2e1f0a9b; theme=dark; consent=1\r\n\
Upgrade-Insecure-Requests: 1\r\n\
Sec-Fetch-Dest: document\r\n\
Sec-Fetch-Mode: navigate\r\n\
Sec-Fetch-Site: same-origin\r\n\
Priority: u=0, i\r\n\r\n";

/// An API call behind another proxy: a body, a forwarded chain, a header listed in
/// `Connection` (dropped), hop-by-hop headers (dropped).
const API: &[u8] = b"POST /v1/orders HTTP/1.1\r\n\
Host: api.internal:8443\r\n\
Content-Type: application/json\r\n\
Content-Length: 512\r\n\
Authorization: Bearer eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxMjM0NTY3ODkwIn0.c2lnbmF0dXJl\r\n\
X-Forwarded-For: 203.0.113.7, 198.51.100.23\r\n\
X-Request-Id: 4b8e2f0c-1d3a-4c5b-9e6f-7a8b9c0d1e2f\r\n\
Connection: keep-alive, X-Debug\r\n\
X-Debug: 1\r\n\
Keep-Alive: timeout=5\r\n\
Accept: application/json\r\n\r\n";

/// nginx's answer in the proxy benchmarks (13-byte body).
const RESPONSE: &[u8] = b"HTTP/1.1 200 OK\r\n\
Server: nginx/1.22.1\r\n\
Date: Mon, 01 Jan 2024 00:00:00 GMT\r\n\
Content-Type: text/plain\r\n\
Content-Length: 13\r\n\
Connection: keep-alive\r\n\r\n";

fn request_heads(c: &mut Criterion) {
    let mut pool = BufPool::new(16 * 1024, 4);
    let mut out = Buffer::default();
    out.ensure(&mut pool);
    let ctx = RequestContext {
        client: IpAddr::V4(Ipv4Addr::new(127, 0, 0, 1)),
        local: SocketAddr::from(([127, 0, 0, 1], 8080)),
        max_headers: 100,
        max_body: None,
        hash_header: None,
        tls: false,
    };
    let mut group = c.benchmark_group("request_parse_rewrite");
    for (name, head) in [("wrk", WRK), ("browser", BROWSER), ("api", API)] {
        // Sanity: the head is accepted, so the bench measures the success path.
        let end = RequestScan::default()
            .check(head)
            .ok()
            .flatten()
            .expect("complete head");
        request::parse(&head[..end], &ctx, &mut out).expect("valid head");
        out.clear();
        group.throughput(Throughput::Bytes(head.len() as u64));
        group.bench_function(name, |b| {
            b.iter(|| {
                let input = black_box(head);
                let end = RequestScan::default().check(input).ok().flatten();
                let parsed = request::parse(&input[..end.unwrap_or(0)], &ctx, &mut out);
                black_box(&parsed);
                black_box(out.data());
                out.clear();
            })
        });
    }
    group.finish();
}

fn response_heads(c: &mut Criterion) {
    let mut pool = BufPool::new(16 * 1024, 4);
    let mut out = Buffer::default();
    out.ensure(&mut pool);
    let ctx = ResponseContext {
        head_request: false,
        client_minor: 1,
        client_keep_alive: true,
        upgrade: false,
    };
    let mut group = c.benchmark_group("response_parse_rewrite");
    response::parse(RESPONSE, &ctx, &mut out).expect("valid head");
    out.clear();
    group.throughput(Throughput::Bytes(RESPONSE.len() as u64));
    group.bench_function("nginx_200", |b| {
        b.iter(|| {
            let input = black_box(RESPONSE);
            let end = ResponseScan::default().check(input).ok().flatten();
            let parsed = response::parse(&input[..end.unwrap_or(0)], &ctx, &mut out);
            black_box(&parsed);
            black_box(out.data());
            out.clear();
        })
    });
    group.finish();
}

criterion_group! {
    name = benches;
    config = Criterion::default()
        .warm_up_time(std::time::Duration::from_secs(1))
        .measurement_time(std::time::Duration::from_secs(3));
    targets = request_heads, response_heads
}
criterion_main!(benches);
