//! The data path: balancing, methods, bodies, framing, keep-alive, pipelining, reuse,
//! header rewriting.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::sync::Arc;
use std::time::Duration;

use crate::util::*;

#[test]
fn demo_backends_alternate() {
    let b1 = lbd::demo::spawn_backend("127.0.0.1:0".parse().unwrap()).unwrap();
    let b2 = lbd::demo::spawn_backend("127.0.0.1:0".parse().unwrap()).unwrap();
    let server = start(config(&[b1, b2]));
    let texts: Vec<String> = (0..4)
        .map(|_| Client::connect(server.local_addr()).get("/").text())
        .collect();
    let want = |p: u16| format!("Hello from backend server on :{p}\n");
    assert_eq!(
        texts,
        [
            want(b1.port()),
            want(b2.port()),
            want(b1.port()),
            want(b2.port())
        ]
    );
}

#[test]
fn methods_and_bodies_reach_the_backend() {
    let backend = TestBackend::start(|req| Reply::Full {
        status: 200,
        headers: vec![("X-Method".into(), req.method.clone())],
        body: [req.method.as_bytes(), b" ", &req.body].concat(),
    });
    let server = start(config(&[backend.addr]));
    let mut c = Client::connect(server.local_addr());
    for method in ["GET", "DELETE", "OPTIONS"] {
        c.send(format!("{method} /m HTTP/1.1\r\nHost: t\r\n\r\n").as_bytes());
        let r = c.response(false);
        assert_eq!((r.status, r.text()), (200, format!("{method} ")));
    }
    for method in ["POST", "PUT", "PATCH"] {
        c.send(
            format!("{method} /m HTTP/1.1\r\nHost: t\r\nContent-Length: 5\r\n\r\nhello").as_bytes(),
        );
        let r = c.response(false);
        assert_eq!(r.text(), format!("{method} hello"));
    }
    c.send(b"HEAD /m HTTP/1.1\r\nHost: t\r\n\r\n");
    let r = c.response(true);
    assert_eq!(r.status, 200);
    assert_eq!(r.header("content-length"), Some("5"));
    assert_eq!(r.header("x-method"), Some("HEAD"));
    // The connection is still in sync after HEAD: no stray body bytes.
    assert_eq!(c.get("/after").text(), "GET ");
    let methods: Vec<String> = backend
        .received()
        .iter()
        .map(|r| r.method.clone())
        .collect();
    assert_eq!(
        methods,
        ["GET", "DELETE", "OPTIONS", "POST", "PUT", "PATCH", "HEAD", "GET"]
    );
}

#[test]
fn ten_mib_request_body_arrives_intact() {
    let backend = TestBackend::start(|req| {
        Reply::text(&format!(
            "{} {:x}",
            req.body.len(),
            checksum(&req.body, CHECKSUM_SEED)
        ))
    });
    let server = start(config(&[backend.addr]));
    let body: Vec<u8> = (0..10 << 20).map(payload_byte).collect();
    let want = format!("{} {:x}", body.len(), checksum(&body, CHECKSUM_SEED));

    let mut c = Client::connect(server.local_addr());
    c.send(
        format!(
            "POST /up HTTP/1.1\r\nHost: t\r\nContent-Length: {}\r\n\r\n",
            body.len()
        )
        .as_bytes(),
    );
    let writer = {
        let mut s = c.stream.try_clone().unwrap();
        let body = body.clone();
        std::thread::spawn(move || s.write_all(&body).unwrap())
    };
    assert_eq!(c.response(false).text(), want);
    writer.join().unwrap();

    // The same body chunked, in uneven chunks.
    let mut chunked = Vec::new();
    for piece in body.chunks(100_003) {
        chunked.extend_from_slice(format!("{:x};ext=1\r\n", piece.len()).as_bytes());
        chunked.extend_from_slice(piece);
        chunked.extend_from_slice(b"\r\n");
    }
    chunked.extend_from_slice(b"0\r\nX-Trailer: t\r\n\r\n");
    c.send(b"PUT /up HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\n");
    let writer = {
        let mut s = c.stream.try_clone().unwrap();
        std::thread::spawn(move || s.write_all(&chunked).unwrap())
    };
    assert_eq!(c.response(false).text(), want);
    writer.join().unwrap();
    let got = backend.received();
    assert_eq!(got[1].header("transfer-encoding"), Some("chunked"));
    assert!(!got[1].raw_head.contains("ext=1"));
}

/// A backend that streams `len` payload bytes, framed as asked.
pub fn streaming_backend(len: usize) -> TestBackend {
    TestBackend::start(move |req| {
        let chunked = req.target.contains("chunked");
        let close = req.target.contains("close");
        Reply::Custom(Box::new(move |s: &mut TcpStream| {
            let head = if chunked {
                "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n".to_string()
            } else if close {
                "HTTP/1.1 200 OK\r\nConnection: close\r\n\r\n".to_string()
            } else {
                format!("HTTP/1.1 200 OK\r\nContent-Length: {len}\r\n\r\n")
            };
            s.write_all(head.as_bytes()).unwrap();
            let mut block = vec![0u8; 64 * 1024];
            let mut sent = 0;
            while sent < len {
                let n = block.len().min(len - sent);
                for (i, b) in block[..n].iter_mut().enumerate() {
                    *b = payload_byte(sent + i);
                }
                if chunked && s.write_all(format!("{n:x}\r\n").as_bytes()).is_err() {
                    return;
                }
                if s.write_all(&block[..n]).is_err() {
                    return;
                }
                if chunked {
                    let _ = s.write_all(b"\r\n");
                }
                sent += n;
            }
            if chunked {
                let _ = s.write_all(b"0\r\n\r\n");
            }
        }))
    })
}

pub fn expected_checksum(len: usize) -> u64 {
    let mut h = CHECKSUM_SEED;
    let mut block = Vec::with_capacity(1 << 20);
    let mut i = 0;
    while i < len {
        block.clear();
        block.extend((i..len.min(i + (1 << 20))).map(payload_byte));
        h = checksum(&block, h);
        i += block.len();
    }
    h
}

#[test]
fn large_responses_in_every_framing() {
    let len = 8 << 20;
    let backend = streaming_backend(len);
    let server = start(config(&[backend.addr]));
    let want = expected_checksum(len);
    for (path, http10, framing) in [
        ("/length", false, Some("content-length")),
        ("/chunked", false, Some("transfer-encoding")),
        ("/close", false, Some("transfer-encoding")),
        ("/chunked", true, None),
    ] {
        let mut c = Client::connect(server.local_addr());
        let version = if http10 { "1.0" } else { "1.1" };
        c.send(format!("GET {path} HTTP/{version}\r\nHost: t\r\n\r\n").as_bytes());
        let r = c.response(false);
        assert_eq!(r.body.len(), len, "{path} 1.{}", !http10 as u8);
        assert_eq!(checksum(&r.body, CHECKSUM_SEED), want, "{path}");
        match framing {
            Some(h) => assert!(r.has_header(h), "{path}: {}", r.raw_head),
            None => {
                assert!(
                    !r.has_header("transfer-encoding") && !r.has_header("content-length"),
                    "{}",
                    r.raw_head
                );
                assert!(c.is_closed_by_peer());
            }
        }
        if path == "/close" && !http10 {
            // Re-framed as chunked for HTTP/1.1, so the client connection survives.
            assert_eq!(r.header("transfer-encoding"), Some("chunked"));
        }
    }
}

#[test]
fn http10_and_http11_keep_alive_rules() {
    let backend = TestBackend::named("ok");
    let server = start(config(&[backend.addr]));
    let addr = server.local_addr();

    let mut c = Client::connect(addr);
    c.send(b"GET / HTTP/1.0\r\n\r\n");
    let r = c.response(false);
    assert_eq!(r.header("connection"), Some("close"));
    assert!(c.is_closed_by_peer(), "HTTP/1.0 without keep-alive closes");

    let mut c = Client::connect(addr);
    for _ in 0..3 {
        c.send(b"GET / HTTP/1.0\r\nConnection: keep-alive\r\n\r\n");
        let r = c.response(false);
        assert_eq!(
            (r.text().as_str(), r.header("connection")),
            ("ok", Some("keep-alive"))
        );
    }

    let mut c = Client::connect(addr);
    for _ in 0..3 {
        let r = c.get("/");
        assert_eq!(r.text(), "ok");
        assert!(!r.has_header("connection"));
    }
    c.send(b"GET / HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n");
    assert_eq!(c.response(false).header("connection"), Some("close"));
    assert!(c.is_closed_by_peer(), "Connection: close closes");
}

#[test]
fn pipelined_requests_are_answered_in_order() {
    let backend = TestBackend::start(|req| Reply::text(&req.target));
    let server = start(config(&[backend.addr]));
    let mut c = Client::connect(server.local_addr());
    let mut batch = Vec::new();
    for i in 0..10 {
        batch.extend_from_slice(format!("GET /{i} HTTP/1.1\r\nHost: t\r\n\r\n").as_bytes());
    }
    batch.extend_from_slice(b"POST /post HTTP/1.1\r\nHost: t\r\nContent-Length: 3\r\n\r\nabcGET /last HTTP/1.1\r\nHost: t\r\n\r\n");
    c.send(&batch);
    for i in 0..10 {
        assert_eq!(c.response(false).text(), format!("/{i}"));
    }
    assert_eq!(c.response(false).text(), "/post");
    assert_eq!(c.response(false).text(), "/last");
    assert_eq!(backend.received()[10].body, b"abc");
}

#[test]
fn upstream_connections_are_reused() {
    let backend = TestBackend::named("ok");
    let mut cfg = config(&[backend.addr]);
    cfg.server.workers = 1;
    let server = start(cfg);
    let mut c = Client::connect(server.local_addr());
    for _ in 0..100 {
        assert_eq!(c.get("/").text(), "ok");
    }
    // Separate client connections share the pool too.
    for _ in 0..20 {
        assert_eq!(Client::connect(server.local_addr()).get("/").text(), "ok");
    }
    assert_eq!(backend.request_count(), 120);
    assert!(
        backend.connection_count() <= 2,
        "{} upstream connections for 120 requests",
        backend.connection_count()
    );
}

#[test]
fn hop_by_hop_headers_removed_and_forwarding_headers_added() {
    let backend = TestBackend::start(|_| {
        Reply::Raw(
        b"HTTP/1.1 200 OK\r\nConnection: X-Private\r\nX-Private: secret\r\nKeep-Alive: timeout=5\r\n\
          Upgrade: h2c\r\nTrailer: X\r\nProxy-Connection: keep-alive\r\nX-Public: yes\r\nContent-Length: 2\r\n\r\nok"
            .to_vec(),
    )
    });
    let server = start(config(&[backend.addr]));
    let mut c = Client::connect(server.local_addr());
    c.send(
        b"GET /h HTTP/1.1\r\nHost: example\r\nConnection: keep-alive, X-Drop\r\nX-Drop: 1\r\nKeep-Alive: 300\r\n\
          TE: trailers\r\nUpgrade: websocket\r\nProxy-Connection: x\r\nTrailer: y\r\nX-Keep: 1\r\n\
          X-Forwarded-For: 1.2.3.4\r\nX-Forwarded-Proto: https\r\n\r\n",
    );
    let r = c.response(false);
    assert_eq!(r.text(), "ok");
    for h in [
        "connection",
        "x-private",
        "keep-alive",
        "upgrade",
        "trailer",
        "proxy-connection",
    ] {
        assert!(!r.has_header(h), "response kept {h}: {}", r.raw_head);
    }
    assert_eq!(r.header("x-public"), Some("yes"));
    let req = &backend.received()[0];
    for h in [
        "connection",
        "x-drop",
        "keep-alive",
        "te",
        "upgrade",
        "proxy-connection",
        "trailer",
    ] {
        assert!(
            req.header(h).is_none(),
            "request kept {h}: {}",
            req.raw_head
        );
    }
    assert_eq!(req.header("x-keep"), Some("1"));
    assert_eq!(req.header("host"), Some("example"));
    assert_eq!(req.header_all("x-forwarded-for"), ["1.2.3.4, 127.0.0.1"]);
    assert_eq!(req.header_all("x-forwarded-proto"), ["http"]);
    assert_eq!(req.version, "HTTP/1.1");
}

#[test]
fn expect_100_continue() {
    let backend = TestBackend::start(|req| Reply::text(&String::from_utf8_lossy(&req.body)));
    let server = start(config(&[backend.addr]));
    let mut c = Client::connect(server.local_addr());
    c.send(b"PUT /e HTTP/1.1\r\nHost: t\r\nExpect: 100-continue\r\nContent-Length: 4\r\n\r\n");
    let mut line = String::new();
    std::io::BufRead::read_line(&mut c.reader, &mut line).unwrap();
    assert_eq!(line, "HTTP/1.1 100 Continue\r\n");
    line.clear();
    std::io::BufRead::read_line(&mut c.reader, &mut line).unwrap();
    assert_eq!(line, "\r\n");
    c.send(b"body");
    assert_eq!(c.response(false).text(), "body");
}

#[test]
fn slow_reader_keeps_memory_bounded_and_data_intact() {
    // 100 MiB through a client that first reads slowly: lbd must stop reading the
    // upstream instead of buffering. RSS is measured on the real binary.
    let len = 100 << 20;
    let backend = streaming_backend(len);
    let lbd = crate::binary::Lbd::spawn(&format!(
        "[server]\nlisten = \"127.0.0.1:0\"\nworkers = 1\n[[backend]]\naddress = \"{}\"\n",
        backend.addr
    ));
    let baseline = lbd.rss_kib();
    let mut c = Client::connect(lbd.addr);
    c.send(b"GET /length HTTP/1.1\r\nHost: t\r\n\r\n");
    let mut head = String::new();
    while !head.ends_with("\r\n\r\n") {
        let mut b = [0u8; 1];
        c.reader.read_exact(&mut b).unwrap();
        head.push(b[0] as char);
    }
    assert!(head.contains(&format!("Content-Length: {len}")), "{head}");
    let mut h = CHECKSUM_SEED;
    let mut got = 0usize;
    let mut buf = vec![0u8; 64 * 1024];
    let mut peak = baseline;
    // Slow phase: 4 MiB in small sips while the backend could send far more.
    while got < 4 << 20 {
        let n = c.reader.read(&mut buf[..16 * 1024]).unwrap();
        assert!(n > 0);
        h = checksum(&buf[..n], h);
        got += n;
        std::thread::sleep(Duration::from_millis(2));
        peak = peak.max(lbd.rss_kib());
    }
    while got < len {
        let n = c.reader.read(&mut buf).unwrap();
        assert!(n > 0, "truncated at {got}");
        h = checksum(&buf[..n], h);
        got += n;
    }
    peak = peak.max(lbd.rss_kib());
    assert_eq!(got, len);
    assert_eq!(h, expected_checksum(len));
    assert!(
        peak < baseline + 20 * 1024,
        "RSS grew from {baseline} KiB to {peak} KiB"
    );
}

#[test]
fn many_concurrent_clients() {
    let backends: Vec<TestBackend> = (0..2)
        .map(|_| TestBackend::start(|req| Reply::text(&req.target)))
        .collect();
    let server = Arc::new(start(config(&[backends[0].addr, backends[1].addr])));
    let threads: Vec<_> = (0..16)
        .map(|t| {
            let addr = server.local_addr();
            std::thread::spawn(move || {
                let mut c = Client::connect(addr);
                for i in 0..50 {
                    let path = format!("/{t}/{i}");
                    assert_eq!(c.get(&path).text(), path);
                }
            })
        })
        .collect();
    for t in threads {
        t.join().unwrap();
    }
    assert_eq!(
        backends[0].request_count() + backends[1].request_count(),
        800
    );
    assert_eq!(backends[0].request_count(), 400);
}

/// A `Connection: close` answer reaches the client even when the client sent more bytes
/// after its request, bytes lbd never reads: closing with unread input makes the kernel
/// reset the connection, so the answer (whose last segment waits for the FIN) must have
/// left before the close.
#[test]
fn a_closing_answer_survives_unread_client_bytes() {
    use std::sync::atomic::{AtomicBool, Ordering};
    let release = Arc::new(AtomicBool::new(false));
    let gate = release.clone();
    let backend = TestBackend::start(move |_| {
        wait_until(IO_TIMEOUT, || gate.load(Ordering::SeqCst));
        Reply::text("posted")
    });
    let server = start(config(&[backend.addr]));
    for _ in 0..5 {
        release.store(false, Ordering::SeqCst);
        let count = backend.request_count();
        let mut c = Client::connect(server.local_addr());
        c.send(b"POST /x HTTP/1.1\r\nHost: t\r\nContent-Length: 2\r\nConnection: close\r\n\r\nhi");
        assert!(wait_until(IO_TIMEOUT, || backend.request_count() > count));
        // After the request lbd has read: on loopback these bytes are in lbd's receive
        // queue when `send` returns.
        c.send(b"GET /y HTTP/1.1\r\nHost: t\r\n\r\n");
        release.store(true, Ordering::SeqCst);
        let r = c.try_response(false).expect("the answer, not a reset");
        assert_eq!((r.status, r.text()), (200, "posted".to_owned()));
    }
}
