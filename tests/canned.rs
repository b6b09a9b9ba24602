//! Every response lbd makes itself, with its trigger; and that lbd keeps serving after.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

use crate::util::*;

fn status_of(raw: &[u8]) -> u16 {
    let text = String::from_utf8_lossy(raw);
    text.split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0)
}

/// Sends `raw`, expects `status` and a closed connection, and no request at the backend.
fn refused(raw: &[u8], status: u16) {
    let backend = TestBackend::named("ok");
    let server = start(config(&[backend.addr]));
    let out = exchange_raw(server.local_addr(), raw);
    assert_eq!(
        status_of(&out),
        status,
        "{:?} -> {:?}",
        String::from_utf8_lossy(raw),
        String::from_utf8_lossy(&out)
    );
    let text = String::from_utf8_lossy(&out);
    assert!(text.contains("Connection: close"), "{text}");
    assert_eq!(
        backend.request_count(),
        0,
        "a refused request reached the backend"
    );
    assert_eq!(
        Client::connect(server.local_addr()).get("/").text(),
        "ok",
        "lbd still serves"
    );
}

#[test]
fn bad_request_400() {
    refused(b"GET / HTTP/1.1\r\n\r\n", 400); // no Host
    refused(
        b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n",
        400,
    );
    refused(
        b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 3\r\nContent-Length: 4\r\n\r\nabc",
        400,
    );
    refused(b"GET / HTTP/1.1\r\nHost: a\r\nBad\x01: x\r\n\r\n", 400);
    refused(b"GARBAGE\r\n\r\n", 400);
}

#[test]
fn bad_chunked_request_body_400() {
    let backend = TestBackend::named("ok");
    let server = start(config(&[backend.addr]));
    let out = exchange_raw(
        server.local_addr(),
        b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\nhello\r\n0\r\n\r\n",
    );
    assert_eq!(status_of(&out), 400, "{}", String::from_utf8_lossy(&out));
}

#[test]
fn uri_too_long_414_and_headers_too_large_431() {
    let long_target = format!("GET /{} HTTP/1.1\r\nHost: a\r\n\r\n", "a".repeat(20_000));
    refused(long_target.as_bytes(), 414);
    let big_header = format!(
        "GET / HTTP/1.1\r\nHost: a\r\nX-Big: {}\r\n\r\n",
        "b".repeat(20_000)
    );
    refused(big_header.as_bytes(), 431);
    let mut many = String::from("GET / HTTP/1.1\r\nHost: a\r\n");
    for i in 0..101 {
        many.push_str(&format!("X-{i}: v\r\n"));
    }
    many.push_str("\r\n");
    refused(many.as_bytes(), 431);
}

#[test]
fn unknown_transfer_encoding_501() {
    refused(
        b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: gzip\r\n\r\n",
        501,
    );
}

#[test]
fn body_too_large_413() {
    let backend = TestBackend::named("ok");
    let mut cfg = config(&[backend.addr]);
    cfg.limits.body_bytes = Some(10);
    let server = start(cfg);
    let out = exchange_raw(
        server.local_addr(),
        b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 11\r\n\r\nhello world",
    );
    assert_eq!(status_of(&out), 413);
    let out = exchange_raw(
        server.local_addr(),
        b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n6\r\nhello \r\n5\r\nworld\r\n0\r\n\r\n",
    );
    assert_eq!(status_of(&out), 413, "{}", String::from_utf8_lossy(&out));
}

#[test]
fn header_timeout_408() {
    let backend = TestBackend::named("ok");
    let mut cfg = config(&[backend.addr]);
    cfg.timeouts.client_header = Duration::from_millis(300);
    let server = start(cfg);
    let mut c = Client::connect(server.local_addr());
    c.send(b"GET / HTTP/1.1\r\nHost:");
    let started = Instant::now();
    let mut out = Vec::new();
    c.reader.read_to_end(&mut out).unwrap();
    assert_eq!(status_of(&out), 408, "{}", String::from_utf8_lossy(&out));
    assert!(started.elapsed() < Duration::from_secs(10));
    // An idle connection that never sent a byte is closed without a response.
    let mut idle = Client::connect(server.local_addr());
    let mut out = Vec::new();
    idle.reader.read_to_end(&mut out).unwrap();
    assert!(out.is_empty(), "{}", String::from_utf8_lossy(&out));
}

#[test]
fn invalid_upstream_response_502() {
    for raw in [
        &b"NOT HTTP AT ALL\r\n\r\n"[..],
        b"HTTP/1.1 200 OK\r\nContent-Length: 1\r\nTransfer-Encoding: chunked\r\n\r\n",
        b"HTTP/1.1 700 Weird\r\n\r\n",
        b"HTTP/1.1 200 OK\r\nContent-",
    ] {
        let raw = raw.to_vec();
        let backend = TestBackend::start(move |_| Reply::RawClose(raw.clone()));
        let server = start(config(&[backend.addr]));
        let mut c = Client::connect(server.local_addr());
        let r = c.get("/");
        assert_eq!(r.status, 502, "{}", r.raw_head);
        assert_eq!(r.text(), "502 Bad Gateway\n");
    }
}

#[test]
fn no_backend_503() {
    let mut cfg = config(&[dead_addr(), dead_addr()]);
    cfg.retry.delay = Duration::from_millis(1);
    let server = start(cfg);
    let mut c = Client::connect(server.local_addr());
    let r = c.get("/");
    assert_eq!(r.status, 503);
    // The connection survives a 503 for a body-less request.
    assert_eq!(c.get("/").status, 503);
}

#[test]
fn upstream_timeout_504() {
    let backend = TestBackend::start(|req| {
        if req.target == "/hang" {
            Reply::Custom(Box::new(|s: &mut TcpStream| {
                let mut b = [0u8; 1];
                let _ = s.read(&mut b); // waits until lbd gives up and closes
            }))
        } else {
            Reply::text("ok")
        }
    });
    let mut cfg = config(&[backend.addr]);
    cfg.timeouts.upstream_response = Duration::from_millis(300);
    let server = start(cfg);
    let mut c = Client::connect(server.local_addr());
    let r = c.get("/hang");
    assert_eq!(r.status, 504);
    assert_eq!(c.get("/fine").text(), "ok");
}

#[test]
fn truncated_response_closes_the_client() {
    let backend = TestBackend::start(|_| {
        Reply::RawClose(b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\nonly a part".to_vec())
    });
    let server = start(config(&[backend.addr]));
    let mut c = Client::connect(server.local_addr());
    c.send(b"GET / HTTP/1.1\r\nHost: a\r\n\r\n");
    let mut out = Vec::new();
    c.reader.read_to_end(&mut out).unwrap();
    let text = String::from_utf8_lossy(&out);
    assert!(text.starts_with("HTTP/1.1 200"), "{text}");
    assert!(text.contains("Content-Length: 100"));
    assert!(text.ends_with("only a part"), "{text}");
}

#[test]
fn error_response_is_readable_despite_unread_body() {
    // lbd answers 413 while the client is still sending: lingering close means the
    // client reads the answer instead of a reset.
    let backend = TestBackend::named("ok");
    let mut cfg = config(&[backend.addr]);
    cfg.limits.body_bytes = Some(1000);
    let server = start(cfg);
    let mut s = TcpStream::connect(server.local_addr()).unwrap();
    s.set_read_timeout(Some(IO_TIMEOUT)).unwrap();
    s.write_all(b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n")
        .unwrap();
    let chunk = format!("{:x}\r\n{}\r\n", 4000, "x".repeat(4000));
    for _ in 0..50 {
        if s.write_all(chunk.as_bytes()).is_err() {
            break;
        }
    }
    let mut out = Vec::new();
    let _ = s.read_to_end(&mut out);
    assert_eq!(status_of(&out), 413, "{}", String::from_utf8_lossy(&out));
}
