//! Failover: health checks, passive marking, retries; a client should not notice a
//! backend dying.

use std::collections::HashMap;
use std::io::Read;
use std::net::TcpStream;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crate::util::*;

/// Fast probes for tests.
fn fast_health(cfg: &mut lbd::config::RawConfig) {
    cfg.health.interval = Duration::from_millis(100);
    cfg.health.timeout = Duration::from_millis(100);
    cfg.health.rise = 2;
    cfg.health.fall = 2;
    cfg.retry.delay = Duration::from_millis(5);
}

#[test]
fn killing_a_backend_under_load_loses_no_request() {
    let a = TestBackend::start(|req| Reply::text(&format!("a{}", req.target)));
    let b = TestBackend::start(|req| Reply::text(&format!("b{}", req.target)));
    let mut cfg = config(&[a.addr, b.addr]);
    fast_health(&mut cfg);
    let server = start(cfg);
    let addr = server.local_addr();
    let failures = Arc::new(AtomicUsize::new(0));
    let done = Arc::new(AtomicUsize::new(0));
    let threads: Vec<_> = (0..64)
        .map(|t| {
            let (failures, done) = (failures.clone(), done.clone());
            std::thread::spawn(move || {
                let mut c = Client::connect(addr);
                for i in 0..60 {
                    let path = format!("/{t}/{i}");
                    c.send(format!("GET {path} HTTP/1.1\r\nHost: t\r\n\r\n").as_bytes());
                    match c.try_response(false) {
                        Ok(r) if r.status == 200 && r.text()[1..] == path => {}
                        other => {
                            eprintln!("request {path} failed: {other:?}");
                            failures.fetch_add(1, Ordering::SeqCst);
                            c = Client::connect(addr);
                        }
                    }
                    done.fetch_add(1, Ordering::SeqCst);
                }
            })
        })
        .collect();
    // Kill `a` a third of the way through.
    assert!(wait_until(Duration::from_secs(30), || done
        .load(Ordering::SeqCst)
        >= 64 * 20));
    a.kill();
    for t in threads {
        t.join().unwrap();
    }
    assert_eq!(
        failures.load(Ordering::SeqCst),
        0,
        "requests failed while a backend died"
    );
    assert_eq!(done.load(Ordering::SeqCst), 64 * 60);
    assert!(wait_until(Duration::from_secs(5), || !server
        .snapshot()
        .backends[0]
        .is_alive()));
    assert!(b.request_count() > 64 * 40 - 64);
}

#[test]
fn a_returning_backend_is_used_again() {
    let a = TestBackend::named("a");
    let b = TestBackend::named("b");
    let mut cfg = config(&[a.addr, b.addr]);
    fast_health(&mut cfg);
    let server = start(cfg);
    let addr = server.local_addr();
    let a_addr = a.addr;
    a.kill();
    drop(a);
    assert!(wait_until(Duration::from_secs(5), || !server
        .snapshot()
        .backends[0]
        .is_alive()));
    for _ in 0..10 {
        assert_eq!(Client::connect(addr).get("/").text(), "b");
    }
    let back = Instant::now();
    let a = TestBackend::start_on(a_addr, |_| Reply::text("a"));
    // rise × interval plus one interval, with generous slack for a loaded machine.
    assert!(wait_until(Duration::from_secs(3), || server
        .snapshot()
        .backends[0]
        .is_alive()));
    let waited = back.elapsed();
    let mut seen_a = false;
    for _ in 0..10 {
        seen_a |= Client::connect(addr).get("/").text() == "a";
    }
    assert!(seen_a, "backend a not used after recovery");
    assert!(a.request_count() >= 1);
    eprintln!("recovered after {waited:?}");
}

#[test]
fn all_backends_down_gives_503_quickly_and_recovers() {
    let a = TestBackend::named("a");
    let a_addr = a.addr;
    a.kill();
    drop(a);
    let mut cfg = config(&[a_addr]);
    fast_health(&mut cfg);
    let server = start(cfg);
    let addr = server.local_addr();
    let mut c = Client::connect(addr);
    assert_eq!(c.get("/").status, 503);
    assert!(wait_until(Duration::from_secs(5), || !server
        .snapshot()
        .backends[0]
        .is_alive()));
    // Now no connect is even attempted.
    let r = c.get("/");
    assert_eq!(
        (r.status, r.text().as_str()),
        (503, "503 Service Unavailable\n")
    );
    let _a = TestBackend::start_on(a_addr, |_| Reply::text("back"));
    assert!(wait_until(Duration::from_secs(5), || Client::connect(addr)
        .get("/")
        .text()
        == "back"));
}

#[test]
fn a_hung_backend_gives_504_while_others_serve() {
    let hung = TestBackend::start(|_| {
        Reply::Custom(Box::new(|s: &mut TcpStream| {
            let mut b = [0u8; 1];
            let _ = s.read(&mut b);
        }))
    });
    let ok = TestBackend::named("ok");
    let mut cfg = config(&[hung.addr, ok.addr]);
    cfg.timeouts.upstream_response = Duration::from_millis(400);
    let server = start(cfg);
    let addr = server.local_addr();
    let mut statuses = HashMap::new();
    let started = Instant::now();
    let threads: Vec<_> = (0..4)
        .map(|_| {
            std::thread::spawn(move || {
                (0..4)
                    .map(|_| Client::connect(addr).get("/").status)
                    .collect::<Vec<_>>()
            })
        })
        .collect();
    for t in threads {
        for s in t.join().unwrap() {
            *statuses.entry(s).or_insert(0) += 1;
        }
    }
    assert_eq!(statuses.get(&504), Some(&8), "{statuses:?}");
    assert_eq!(statuses.get(&200), Some(&8), "{statuses:?}");
    assert!(started.elapsed() < Duration::from_secs(15));
}

#[test]
fn a_post_is_never_delivered_twice() {
    // The backend closes every connection shortly after answering, like a short
    // keep-alive timeout: pooled connections die under lbd's feet.
    let deliveries = Arc::new(Mutex::new(HashMap::<String, usize>::new()));
    let d = deliveries.clone();
    let backend = TestBackend::start(move |req| {
        *d.lock().unwrap().entry(req.target.clone()).or_default() += 1;
        Reply::Custom(Box::new(|s: &mut TcpStream| {
            use std::io::Write;
            let _ = s.write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok");
            std::thread::sleep(Duration::from_millis(3));
        }))
    });
    let server = start(config(&[backend.addr]));
    let addr = server.local_addr();
    let mut ok = 0;
    let mut c = Client::connect(addr);
    for i in 0..200 {
        c.send(format!("POST /p{i} HTTP/1.1\r\nHost: t\r\nContent-Length: 1\r\n\r\nx").as_bytes());
        match c.try_response(false) {
            Ok(r) if r.status == 200 => ok += 1,
            Ok(r) => assert_eq!(r.status, 502, "{}", r.raw_head),
            Err(_) => c = Client::connect(addr),
        }
        std::thread::sleep(Duration::from_millis((i % 5) as u64));
    }
    let deliveries = deliveries.lock().unwrap();
    let twice: Vec<_> = deliveries.iter().filter(|(_, &n)| n > 1).collect();
    assert!(twice.is_empty(), "delivered twice: {twice:?}");
    assert!(ok >= 100, "only {ok} of 200 POSTs succeeded");
}

#[test]
fn http_health_check_marks_a_500_backend_down() {
    let sick_hits = Arc::new(AtomicBool::new(false));
    let sick = TestBackend::start(|req| {
        if req.target == "/healthz" {
            Reply::Full {
                status: 500,
                headers: vec![],
                body: b"sick".to_vec(),
            }
        } else {
            Reply::text("sick")
        }
    });
    let well = TestBackend::start(|_| Reply::text("well"));
    let mut cfg = config(&[sick.addr, well.addr]);
    fast_health(&mut cfg);
    cfg.health.path = Some("/healthz".into());
    let server = start(cfg);
    assert!(wait_until(Duration::from_secs(5), || !server
        .snapshot()
        .backends[0]
        .is_alive()));
    assert!(server.snapshot().backends[1].is_alive());
    let _ = sick_hits;
    for _ in 0..10 {
        assert_eq!(Client::connect(server.local_addr()).get("/").text(), "well");
    }
    // TCP connects to it still succeed: only the HTTP check says it is sick.
    assert!(TcpStream::connect(sick.addr).is_ok());
    assert!(sick.received().iter().all(|r| r.target == "/healthz"));
}
