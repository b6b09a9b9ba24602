//! Pools, routes and DNS discovery (spec §12) through the real balancer: the route
//! precedence table, per-pool algorithms, health and retry scope, a reload swapping pools
//! and routes under load, DNS members following a test DNS server, and two instances
//! agreeing on every consistent-hash key.

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::Stdio;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;

use lbd::{Config, Server};

use crate::binary::{Lbd, TempDir};
use crate::ops::admin;
use crate::util::*;

/// The head of every config here: lbd and its admin listener on free ports.
const HEAD: &str = "[server]\nlisten = \"127.0.0.1:0\"\nworkers = 2\n\
                    [admin]\nlisten = \"127.0.0.1:0\"\n";

/// lbd started in-process from a config file (so that it can be reloaded).
struct Running {
    server: Server,
    path: PathBuf,
    _dir: TempDir,
}

impl Running {
    fn start(text: &str) -> Running {
        let dir = TempDir::new();
        let path = dir.write("lbd.toml", text);
        let config = Config::load(&path).expect("valid config");
        let _ = env_logger::builder().is_test(true).try_init();
        let server = Server::start_from_file(config, &path).expect("lbd starts");
        Running {
            server,
            path,
            _dir: dir,
        }
    }

    fn addr(&self) -> SocketAddr {
        self.server.local_addr()
    }

    fn admin(&self) -> SocketAddr {
        self.server.admin_addr().expect("an admin listener")
    }

    fn status(&self) -> String {
        let (code, body) = admin(self.admin(), "GET", "/status");
        assert_eq!(code, 200, "{body}");
        body
    }

    fn metrics(&self) -> String {
        let (code, body) = admin(self.admin(), "GET", "/metrics");
        assert_eq!(code, 200, "{body}");
        body
    }

    /// Whether the backend named `name` is alive in the snapshot in force.
    fn is_alive(&self, name: &str) -> bool {
        let s = self.server.snapshot();
        let i = s
            .backend_index(name)
            .unwrap_or_else(|| panic!("no backend {name}"));
        s.backends[i].is_alive()
    }
}

/// The `backends` of the entry of `pool` in the `pools` list of a `/status` body, sorted.
fn pool_backends(status: &str, pool: &str) -> Vec<String> {
    let pools = status.split("\"pools\":[").nth(1).expect("a pools list");
    let entry = pools
        .split(&format!("{{\"name\":\"{pool}\","))
        .nth(1)
        .unwrap_or_else(|| panic!("no pool {pool} in {status}"));
    let list = entry
        .split("\"backends\":[")
        .nth(1)
        .and_then(|rest| rest.split(']').next())
        .expect("a backends list");
    let mut names: Vec<String> = list
        .split(',')
        .map(|n| n.trim_matches('"').to_owned())
        .filter(|n| !n.is_empty())
        .collect();
    names.sort();
    names
}

/// One `[[pool]]` with backends `(name, address)` and extra pool keys.
fn pool(name: &str, extra: &str, backends: &[(&str, SocketAddr)]) -> String {
    let mut text = format!("[[pool]]\nname = \"{name}\"\n{extra}");
    for (b, addr) in backends {
        text.push_str(&format!(
            "[[pool.backend]]\nname = \"{b}\"\naddress = \"{addr}\"\n"
        ));
    }
    text
}

/// One `[[route]]`; `None` leaves the key out.
fn route(host: Option<&str>, path_prefix: Option<&str>, pool: &str) -> String {
    let mut text = String::from("[[route]]\n");
    if let Some(h) = host {
        text.push_str(&format!("host = \"{h}\"\n"));
    }
    if let Some(p) = path_prefix {
        text.push_str(&format!("path_prefix = \"{p}\"\n"));
    }
    text.push_str(&format!("pool = \"{pool}\"\n"));
    text
}

/// A GET for `target` with `Host: host`.
fn get(host: &str, target: &str) -> Vec<u8> {
    format!("GET {target} HTTP/1.1\r\nHost: {host}\r\n\r\n").into_bytes()
}

/// Keep-alive clients sending requests in a loop until stopped, each recording the
/// bodies of its answers in order; a failed request (error or not 200) is counted and
/// the client reconnects.
struct Load {
    stop: Arc<AtomicBool>,
    failures: Arc<AtomicUsize>,
    answers: Vec<Arc<Mutex<Vec<String>>>>,
    threads: Vec<JoinHandle<()>>,
}

impl Load {
    /// Longest a load runs: a bound on each client's loop.
    const MAX_REQUESTS: usize = 50_000;

    /// `clients` connections to `addr`; request `n` of a client is `request(n)`.
    fn start(addr: SocketAddr, clients: usize, request: fn(usize) -> Vec<u8>) -> Load {
        let stop = Arc::new(AtomicBool::new(false));
        let failures = Arc::new(AtomicUsize::new(0));
        let mut answers = Vec::new();
        let threads = (0..clients)
            .map(|_| {
                let (stop, failures) = (stop.clone(), failures.clone());
                let mine = Arc::new(Mutex::new(Vec::new()));
                answers.push(mine.clone());
                std::thread::spawn(move || {
                    let mut c = Client::connect(addr);
                    for n in 0..Self::MAX_REQUESTS {
                        if stop.load(Ordering::SeqCst) {
                            break;
                        }
                        let ok = c.stream.write_all_checked(&request(n))
                            && match c.try_response(false) {
                                Ok(r) if r.status == 200 => {
                                    mine.lock().unwrap().push(r.text());
                                    true
                                }
                                _ => false,
                            };
                        if !ok {
                            failures.fetch_add(1, Ordering::SeqCst);
                            c = Client::connect(addr);
                        }
                    }
                })
            })
            .collect();
        Load {
            stop,
            failures,
            answers,
            threads,
        }
    }

    /// Answers so far of client `i`.
    fn answers(&self, i: usize) -> Vec<String> {
        self.answers[i].lock().unwrap().clone()
    }

    /// Stops every client; returns the failures and each client's answers.
    fn finish(self) -> (usize, Vec<Vec<String>>) {
        self.stop.store(true, Ordering::SeqCst);
        for t in self.threads {
            t.join().unwrap();
        }
        let answers = self
            .answers
            .iter()
            .map(|a| a.lock().unwrap().clone())
            .collect();
        (self.failures.load(Ordering::SeqCst), answers)
    }
}

/// `write_all` that reports failure instead of panicking.
trait WriteChecked {
    fn write_all_checked(&mut self, bytes: &[u8]) -> bool;
}

impl WriteChecked for std::net::TcpStream {
    fn write_all_checked(&mut self, bytes: &[u8]) -> bool {
        std::io::Write::write_all(self, bytes).is_ok()
    }
}

/// The route precedence table of spec §12 through real sockets: every backend answers its
/// pool's name, and each row says which pool a request must reach (or 404).
#[test]
fn route_precedence_table() {
    let names = [
        "api",
        "api-v1",
        "admin",
        "wild",
        "deep",
        "wild-static",
        "shop",
        "assets",
    ];
    let backends: Vec<TestBackend> = names.iter().map(|n| TestBackend::named(n)).collect();
    let mut text = String::from(HEAD);
    for (name, b) in names.iter().zip(&backends) {
        text.push_str(&pool(name, "", &[(name, b.addr)]));
    }
    for (host, prefix, to) in [
        (Some("api.example.com"), Some("/v1/"), "api-v1"),
        (Some("api.example.com"), None, "api"),
        (Some("*.example.com"), None, "wild"),
        (Some("*.deep.example.com"), None, "deep"),
        (Some("*.example.com"), Some("/static/"), "wild-static"),
        (None, Some("/assets/"), "assets"),
        (Some("API.Example.com"), Some("/v1/admin"), "admin"),
        (Some("shop.example.com"), Some("/cart/"), "shop"),
    ] {
        text.push_str(&route(host, prefix, to));
    }
    let run = Running::start(&text);
    assert_eq!(run.server.snapshot().config.default_pool(), None);

    // (request bytes, the pool that must answer; None: 404 no_route)
    let origin = |host: &str, target: &str| get(host, target);
    let raw = |s: &str| s.as_bytes().to_vec();
    let table: Vec<(Vec<u8>, Option<&str>)> = vec![
        // exact host, longest prefix
        (origin("api.example.com", "/v1/users"), Some("api-v1")),
        (
            origin("API.Example.COM:8080", "/v1/users?page=2"),
            Some("api-v1"),
        ),
        (origin("api.example.com.", "/v1/"), Some("api-v1")),
        (origin("api.example.com", "/v1/admin/x"), Some("admin")),
        (
            origin("api.example.com", "/v1/administrators"),
            Some("admin"),
        ),
        (origin("api.example.com", "/v1"), Some("api")),
        (origin("api.example.com", "/V1/users"), Some("api")),
        (origin("api.example.com", "/x?/v1/"), Some("api")),
        (origin("api.example.com:443", "/?q=/v1/admin"), Some("api")),
        // an exact host beats a host-less route with a longer prefix
        (origin("api.example.com", "/assets/a.png"), Some("api")),
        // wildcards
        (origin("www.example.com", "/"), Some("wild")),
        (origin("a.b.example.com:80", "/x"), Some("wild")),
        (
            origin("www.example.com", "/static/app.css"),
            Some("wild-static"),
        ),
        (
            origin("WWW.EXAMPLE.COM:443", "/static/?v=1"),
            Some("wild-static"),
        ),
        (origin("www.example.com", "/static"), Some("wild")),
        (origin("www.example.com", "/assets/x"), Some("wild")),
        // the longer wildcard wins before any prefix is compared
        (origin("x.deep.example.com", "/static/a"), Some("deep")),
        (origin("deep.example.com", "/static/a"), Some("wild-static")),
        // an exact host whose prefixes miss falls through to the wildcards
        (origin("shop.example.com", "/cart/1"), Some("shop")),
        (
            origin("Shop.Example.Com:8443", "/cart/?item=2"),
            Some("shop"),
        ),
        (origin("shop.example.com", "/other"), Some("wild")),
        (origin("shop.example.com", "/static/x"), Some("wild-static")),
        // host-less routes: any host, no host
        (origin("example.com", "/assets/logo.png"), Some("assets")),
        (origin("other.org:8080", "/assets/x?y=/z"), Some("assets")),
        (origin("[::1]:8080", "/assets/"), Some("assets")),
        (
            raw("GET /assets/x HTTP/1.0\r\nConnection: keep-alive\r\n\r\n"),
            Some("assets"),
        ),
        // absolute-form: the target's authority is the host, not the Host header
        (
            raw("GET http://api.example.com/v1/x?q HTTP/1.1\r\nHost: api.example.com\r\n\r\n"),
            Some("api-v1"),
        ),
        (
            raw("GET http://API.EXAMPLE.COM:8080/v1/ HTTP/1.1\r\nHost: other.org\r\n\r\n"),
            Some("api-v1"),
        ),
        (
            raw("GET http://x.deep.example.com/ HTTP/1.1\r\nHost: api.example.com\r\n\r\n"),
            Some("deep"),
        ),
        // ... and without a path, the path is "/" (a regression: it matched none)
        (
            raw("GET http://api.example.com HTTP/1.1\r\nHost: api.example.com\r\n\r\n"),
            Some("api"),
        ),
        // OPTIONS * takes its host's routes of "/" (a regression: it matched none)
        (
            raw("OPTIONS * HTTP/1.1\r\nHost: api.example.com\r\n\r\n"),
            Some("api"),
        ),
        (
            raw("OPTIONS * HTTP/1.1\r\nHost: shop.example.com\r\n\r\n"),
            Some("wild"),
        ),
        (raw("OPTIONS * HTTP/1.1\r\nHost: example.com\r\n\r\n"), None),
        // no route and no default pool
        (origin("example.com", "/"), None),
        (origin("other.org", "/asset"), None),
        (origin("other.org", "/v1/"), None),
        (
            raw("GET http://other.org/v1/ HTTP/1.1\r\nHost: api.example.com\r\n\r\n"),
            None,
        ),
        (
            raw("GET / HTTP/1.0\r\nConnection: keep-alive\r\n\r\n"),
            None,
        ),
    ];
    // One keep-alive connection for the whole table: a 404 keeps it open.
    let mut c = Client::connect(run.addr());
    let mut not_found = 0;
    for (request, want) in &table {
        c.send(request);
        let r = c.response(false);
        let shown = String::from_utf8_lossy(request).into_owned();
        match want {
            Some(pool) => assert_eq!((r.status, r.text()), (200, pool.to_string()), "{shown}"),
            None => {
                assert_eq!(r.status, 404, "{shown}: {}", r.text());
                not_found += 1;
            }
        }
    }
    // The backend got the target with its query string, in origin form.
    let got: Vec<String> = backends[1]
        .received()
        .iter()
        .map(|r| r.target.clone())
        .collect();
    assert!(got.contains(&"/v1/users?page=2".to_owned()), "{got:?}");
    assert!(got.contains(&"/v1/x?q".to_owned()), "{got:?}");

    let metrics = run.metrics();
    for line in [
        format!("lbd_requests_total{{backend=\"none\",pool=\"none\",code=\"404\"}} {not_found}"),
        "lbd_requests_total{backend=\"api-v1\",pool=\"api-v1\",code=\"200\"} 5".to_owned(),
        "lbd_requests_total{backend=\"assets\",pool=\"assets\",code=\"200\"} 4".to_owned(),
    ] {
        assert!(metrics.contains(&line), "missing {line:?} in\n{metrics}");
    }
    let status = run.status();
    assert_eq!(pool_backends(&status, "wild-static"), ["wild-static"]);
    assert!(
        status.contains("\"name\":\"deep\",\"pool\":\"deep\""),
        "{status}"
    );
}

/// The access log gives an unrouted request the reason `no_route` (the `lbd` binary,
/// whose access log is its stdout).
#[test]
fn unrouted_request_is_logged_as_no_route() {
    let a = TestBackend::named("a");
    let text = format!(
        "[server]\nlisten = \"127.0.0.1:0\"\nworkers = 1\n[log]\naccess = true\n{}{}",
        pool("p", "", &[("a", a.addr)]),
        route(Some("a.test"), None, "p"),
    );
    let mut lbd = Lbd::spawn_with(&text, |c| {
        c.stdout(Stdio::piped());
    });
    let mut c = Client::connect(lbd.addr);
    c.send(&get("b.test", "/x?y"));
    let r = c.response(false);
    assert_eq!(r.status, 404);
    c.send(&get("a.test", "/"));
    assert_eq!(c.response(false).text(), "a");
    let mut stdout = BufReader::new(lbd.child.stdout.take().unwrap());
    let mut lines = [String::new(), String::new()];
    for line in &mut lines {
        stdout.read_line(line).unwrap();
    }
    assert!(
        lines[0].contains("\"GET /x?y HTTP/1.1\" 404 ")
            && lines[0].contains(" upstream=- ")
            && lines[0].trim_end().ends_with("reason=no_route"),
        "{}",
        lines[0]
    );
    assert!(lines[1].trim_end().ends_with("reason=ok"), "{}", lines[1]);
}

/// Two pools, two algorithms, on one connection: weighted round-robin keeps its exact
/// shares while consistent hashing (on another header than the default pool's key)
/// keeps each user on one backend.
#[test]
fn each_pool_runs_its_own_algorithm() {
    let w: Vec<TestBackend> = ["w0", "w1"].into_iter().map(TestBackend::named).collect();
    let h: Vec<TestBackend> = ["h0", "h1", "h2"]
        .into_iter()
        .map(TestBackend::named)
        .collect();
    let mut text = format!(
        "{HEAD}[balancer]\nalgorithm = \"consistent_hash\"\nhash_key = \"header:X-Other\"\n"
    );
    text.push_str(&format!(
        "[[pool]]\nname = \"wrr\"\nalgorithm = \"weighted_round_robin\"\n\
         [[pool.backend]]\nname = \"w0\"\naddress = \"{}\"\nweight = 3\n\
         [[pool.backend]]\nname = \"w1\"\naddress = \"{}\"\n",
        w[0].addr, w[1].addr
    ));
    text.push_str(&pool(
        "hash",
        "algorithm = \"consistent_hash\"\nhash_key = \"header:X-User\"\n",
        &[("h0", h[0].addr), ("h1", h[1].addr), ("h2", h[2].addr)],
    ));
    text.push_str(&route(Some("wrr.test"), None, "wrr"));
    text.push_str(&route(Some("hash.test"), None, "hash"));
    let run = Running::start(&text);
    let user = |u: usize| {
        format!("GET / HTTP/1.1\r\nHost: hash.test\r\nX-User: user-{u}\r\n\r\n").into_bytes()
    };
    let mut c = Client::connect(run.addr());
    let mut wrr = Vec::new();
    let mut home = Vec::new();
    for i in 0..200 {
        c.send(&get("wrr.test", "/"));
        wrr.push(c.response(false).text());
        c.send(&user(i % 100));
        let r = c.response(false);
        assert_eq!(r.status, 200);
        if i < 100 {
            home.push(r.text());
        } else {
            assert_eq!(r.text(), home[i % 100], "user-{} moved", i % 100);
        }
    }
    let count = |name: &str| wrr.iter().filter(|t| *t == name).count();
    assert_eq!((count("w0"), count("w1")), (150, 50), "exact 3:1 shares");
    for b in ["h0", "h1", "h2"] {
        assert!(home.iter().any(|t| t == b), "{b} has no user: {home:?}");
    }
    // Each user from a fresh connection: the same backend.
    for u in (0..100).step_by(7) {
        let mut c = Client::connect(run.addr());
        c.send(&user(u));
        assert_eq!(c.response(false).text(), home[u], "user-{u}");
    }
    let status = run.status();
    for part in [
        "{\"name\":\"wrr\",\"algorithm\":\"weighted_round_robin\"",
        "{\"name\":\"hash\",\"algorithm\":\"consistent_hash\"",
    ] {
        assert!(status.contains(part), "missing {part:?} in {status}");
    }
}

/// Health per pool: a pool with an HTTP check takes its failing backend out, while a
/// pool with a TCP check keeps an identical backend in. Retries stay within the pool: a
/// backend that refuses or drops requests in pool `a` makes them go to `a`'s other
/// backend, and a pool whose backends all fail answers 503, never reaching pool `b`.
#[test]
fn health_and_retries_stay_within_each_pool() {
    // Answers `name`, but 503 to the health path.
    let failing_check = |name: &'static str| {
        TestBackend::start(move |req| {
            if req.target == "/healthz" {
                Reply::Full {
                    status: 503,
                    headers: vec![],
                    body: b"sick".to_vec(),
                }
            } else {
                Reply::text(name)
            }
        })
    };
    let c_ok = TestBackend::named("c-ok");
    let c_bad = failing_check("c-bad");
    let t_bad = failing_check("t-bad");
    let a_closer = TestBackend::start(|_| Reply::Close);
    let a_live = TestBackend::named("a-live");
    let b_live = TestBackend::named("b-live");
    let g1 = TestBackend::start(|_| Reply::Close);
    let g2 = TestBackend::start(|_| Reply::Close);
    let fast = "interval = \"100ms\", timeout = \"500ms\", rise = 1, fall = 1";
    let mut text = format!("{HEAD}[health]\ninterval = \"1m\"\n");
    text.push_str(&pool(
        "checked",
        &format!("health = {{ path = \"/healthz\", {fast} }}\n"),
        &[("c-ok", c_ok.addr), ("c-bad", c_bad.addr)],
    ));
    text.push_str(&pool(
        "tcp",
        &format!("health = {{ {fast} }}\n"),
        &[("t-bad", t_bad.addr)],
    ));
    text.push_str(&pool(
        "a",
        "",
        &[
            ("a-dead", dead_addr()),
            ("a-closer", a_closer.addr),
            ("a-live", a_live.addr),
        ],
    ));
    text.push_str(&pool("b", "", &[("b-live", b_live.addr)]));
    text.push_str(&pool("gone", "", &[("g1", g1.addr), ("g2", g2.addr)]));
    for name in ["checked", "tcp", "a", "b", "gone"] {
        text.push_str(&route(Some(&format!("{name}.test")), None, name));
    }
    let run = Running::start(&text);

    // The HTTP check takes c-bad down; the TCP check of the other pool, several rounds
    // later, still has t-bad up.
    assert!(wait_until(IO_TIMEOUT, || !run.is_alive("c-bad")));
    let probes = t_bad.connection_count();
    assert!(wait_until(IO_TIMEOUT, || t_bad.connection_count() >= probes + 5));
    assert!(run.is_alive("t-bad") && run.is_alive("c-ok"));
    assert!(c_ok.received().iter().any(|r| r.target == "/healthz"));
    assert_eq!(t_bad.request_count(), 0, "a TCP check sends no request");
    let mut c = Client::connect(run.addr());
    for _ in 0..10 {
        c.send(&get("checked.test", "/"));
        assert_eq!(c.response(false).text(), "c-ok");
        c.send(&get("tcp.test", "/"));
        assert_eq!(c.response(false).text(), "t-bad");
    }
    let metrics = run.metrics();
    for line in [
        "lbd_backend_up{backend=\"c-bad\",pool=\"checked\"} 0",
        "lbd_backend_up{backend=\"c-ok\",pool=\"checked\"} 1",
        "lbd_backend_up{backend=\"t-bad\",pool=\"tcp\"} 1",
    ] {
        assert!(metrics.contains(line), "missing {line:?} in\n{metrics}");
    }

    // Pool a: a refused connect and a dropped request are retried on a's live backend.
    for _ in 0..30 {
        c.send(&get("a.test", "/"));
        let r = c.response(false);
        assert_eq!((r.status, r.text()), (200, "a-live".to_owned()));
    }
    assert!(a_closer.request_count() > 0, "the closer was tried");
    assert!(
        !run.is_alive("a-dead"),
        "connect retries marked a-dead down"
    );
    // Pool gone: every backend drops the request; 503, and pool b never sees it.
    for _ in 0..10 {
        let mut c = Client::connect(run.addr());
        c.send(&get("gone.test", "/"));
        assert_eq!(c.response(false).status, 503);
    }
    assert!(
        g1.request_count() > 0 && g2.request_count() > 0,
        "both tried"
    );
    assert_eq!(b_live.request_count(), 0, "a retry left its pool");
    c.send(&get("b.test", "/"));
    assert_eq!(c.response(false).text(), "b-live");
    let metrics = run.metrics();
    assert!(
        metrics.contains("lbd_retries_total{backend=\"a-closer\",pool=\"a\"}"),
        "{metrics}"
    );
}

/// A reload under load from 8 keep-alive clients swaps pools and routes at once: every
/// client's answers are all old-config answers, then all new-config ones (never a mix
/// of an old route with a new pool), and no request fails.
#[test]
fn reload_swaps_pools_and_routes_under_load() {
    let blue = TestBackend::named("blue");
    let green = TestBackend::named("green");
    let wild = TestBackend::named("wild");
    let before = format!(
        "{HEAD}{}{}{}{}{}",
        pool("blue", "", &[("blue", blue.addr)]),
        pool("green", "", &[("green", green.addr)]),
        pool("wild", "", &[("wild", wild.addr)]),
        route(Some("app.test"), None, "blue"),
        route(Some("*.test"), None, "wild"),
    );
    // app.test moves to green; the wildcard now goes to blue; pool wild is gone.
    let after = format!(
        "{HEAD}{}{}{}{}",
        pool("green", "", &[("green", green.addr)]),
        pool("blue", "", &[("blue", blue.addr)]),
        route(Some("app.test"), None, "green"),
        route(Some("*.test"), None, "blue"),
    );
    let run = Running::start(&before);
    fn request(n: usize) -> Vec<u8> {
        get(if n % 2 == 0 { "app.test" } else { "x.test" }, "/")
    }
    let load = Load::start(run.addr(), 8, request);
    assert!(wait_until(IO_TIMEOUT, || (0..8).all(|i| load.answers(i).len() > 50)));
    std::fs::write(&run.path, &after).unwrap();
    let (code, body) = admin(run.admin(), "POST", "/reload");
    assert_eq!((code, body.as_str()), (200, "reloaded\n"));
    // Every client gets the new routes.
    assert!(wait_until(IO_TIMEOUT, || (0..8).all(|i| load
        .answers(i)
        .iter()
        .filter(|a| *a == "green")
        .count()
        > 50)));
    let wild_after = wild.request_count();
    let (failures, answers) = load.finish();
    assert_eq!(failures, 0);
    for (i, list) in answers.iter().enumerate() {
        // Request n of a client went to app.test when n is even.
        let new: Vec<bool> = list
            .iter()
            .enumerate()
            .map(|(n, a)| match (n % 2, a.as_str()) {
                (0, "blue") | (1, "wild") => false,
                (0, "green") | (1, "blue") => true,
                other => panic!("client {i}: request {n} answered {other:?}"),
            })
            .collect();
        let first_new = new.iter().position(|&x| x).expect("saw the reload");
        assert!(
            new[first_new..].iter().all(|&x| x),
            "client {i}: an old answer after a new one"
        );
    }
    assert!(wild.request_count() <= wild_after + 8, "wild kept traffic");
    let status = run.status();
    assert_eq!(pool_backends(&status, "green"), ["green"]);
    assert!(!status.contains("{\"name\":\"wild\""), "{status}");
    assert_eq!(run.server.snapshot().generation, 1);
}

/// Two lbd instances from one configuration (nothing shared between them) send every one
/// of 1,000 `consistent_hash` keys to the same backend; after a backend goes down in both,
/// they agree again, and only the keys of the failed backend moved.
#[test]
fn two_instances_agree_on_every_key() {
    const KEYS: usize = 1000;
    let names = ["k0", "k1", "k2", "k3"];
    let backends: Vec<TestBackend> = names.iter().map(|n| TestBackend::named(n)).collect();
    let mut text = String::from(
        "[server]\nlisten = \"127.0.0.1:0\"\nworkers = 2\n\
         [balancer]\nalgorithm = \"consistent_hash\"\nhash_key = \"header:X-Key\"\n\
         [health]\ninterval = \"100ms\"\ntimeout = \"500ms\"\nrise = 1\nfall = 1\n",
    );
    for (n, b) in names.iter().zip(&backends) {
        text.push_str(&format!(
            "[[backend]]\nname = \"{n}\"\naddress = \"{}\"\n",
            b.addr
        ));
    }
    let _ = env_logger::builder().is_test(true).try_init();
    let instances: Vec<Server> = (0..2)
        .map(|_| Server::start(Config::parse(&text).unwrap()).unwrap())
        .collect();
    let picks = |server: &Server| -> Vec<String> {
        let mut c = Client::connect(server.local_addr());
        (0..KEYS)
            .map(|k| {
                c.send(format!("GET / HTTP/1.1\r\nHost: t\r\nX-Key: key-{k}\r\n\r\n").as_bytes());
                let r = c.response(false);
                assert_eq!(r.status, 200);
                r.text()
            })
            .collect()
    };
    let first = picks(&instances[0]);
    assert_eq!(first, picks(&instances[1]), "the instances disagree");
    for n in names {
        let share = first.iter().filter(|t| *t == n).count();
        assert!(share > KEYS / 8, "{n} has {share} keys");
    }

    backends[1].kill();
    let down = |s: &Server| {
        let snap = s.snapshot();
        !snap.backends[snap.backend_index("k1").unwrap()].is_alive()
    };
    assert!(wait_until(IO_TIMEOUT, || instances.iter().all(down)));
    let second = picks(&instances[0]);
    assert_eq!(
        second,
        picks(&instances[1]),
        "they disagree after k1 went down"
    );
    for (k, (was, is)) in first.iter().zip(&second).enumerate() {
        assert_ne!(is, "k1", "key-{k} went to the dead backend");
        if was != "k1" {
            assert_eq!(was, is, "key-{k} moved though its backend is up");
        }
    }
    for s in instances {
        s.stop();
    }
}

/// DNS discovery against a DNS server the test runs on 127.0.0.1: the members of a
/// service are local backends on 127.0.0.x, one port for all.
#[cfg(feature = "dns")]
mod dns {
    use std::net::{IpAddr, Ipv4Addr, TcpListener};
    use std::time::{Duration, Instant};

    use super::*;
    use crate::util::dns_server::TestDns;

    impl Running {
        /// The backend names `/status` lists for `pool` (its `pools` entry), sorted.
        fn members(&self, pool: &str) -> Vec<String> {
            pool_backends(&self.status(), pool)
        }
    }

    /// The service's name in the test DNS server.
    const NAME: &str = "svc.test";

    /// 127.0.0.`last`.
    fn ip(last: u8) -> IpAddr {
        IpAddr::V4(Ipv4Addr::new(127, 0, 0, last))
    }

    /// Backends on 127.0.0.2 to 127.0.0.5, one port; each answers its address, and
    /// holds `/slow` until `release` is set.
    struct Members {
        port: u16,
        /// By last byte of the address minus 2.
        backends: Vec<TestBackend>,
        release: Arc<AtomicBool>,
    }

    impl Members {
        fn start() -> Members {
            let release = Arc::new(AtomicBool::new(false));
            // One port free on every address (bounded tries: another test may hold it).
            for _ in 0..50 {
                let first = TcpListener::bind((ip(2), 0)).unwrap();
                let port = first.local_addr().unwrap().port();
                let mut listeners = vec![first];
                for last in 3..=5 {
                    match TcpListener::bind((ip(last), port)) {
                        Ok(l) => listeners.push(l),
                        Err(_) => break,
                    }
                }
                if listeners.len() < 4 {
                    continue;
                }
                let backends = listeners
                    .into_iter()
                    .map(|l| {
                        let me = l.local_addr().unwrap().ip().to_string();
                        let release = release.clone();
                        TestBackend::start_listener(l, move |req| {
                            if req.target == "/slow" {
                                wait_until(IO_TIMEOUT, || release.load(Ordering::SeqCst));
                            }
                            Reply::text(&me)
                        })
                    })
                    .collect();
                return Members {
                    port,
                    backends,
                    release,
                };
            }
            panic!("no port free on 127.0.0.2-5");
        }

        /// The backend on 127.0.0.`last`.
        fn at(&self, last: u8) -> &TestBackend {
            &self.backends[usize::from(last) - 2]
        }

        /// The member name of 127.0.0.`last` (`NAME@IP:PORT`; the backend's name is its
        /// address as written).
        fn name(&self, last: u8) -> String {
            let p = self.port;
            format!("{NAME}:{p}@127.0.0.{last}:{p}")
        }

        fn names(&self, lasts: &[u8]) -> Vec<String> {
            let mut v: Vec<String> = lasts.iter().map(|&l| self.name(l)).collect();
            v.sort();
            v
        }
    }

    impl Drop for Members {
        fn drop(&mut self) {
            self.release.store(true, Ordering::SeqCst);
        }
    }

    /// Records for `lasts` with `ttl`.
    fn records(lasts: &[u8], ttl: u32) -> Vec<(IpAddr, u32)> {
        lasts.iter().map(|&l| (ip(l), ttl)).collect()
    }

    /// lbd with pool `svc` = the service, routed for every request.
    fn start(dns: &TestDns, members: &Members, interval: &str) -> Running {
        let text = format!(
            "{HEAD}[dns]\nresolver = \"{}\"\ninterval = \"{interval}\"\n\
             [[pool]]\nname = \"svc\"\n[[pool.backend]]\naddress = \"{NAME}:{}\"\n\
             [[route]]\npool = \"svc\"\n",
            dns.addr(),
            members.port
        );
        Running::start(&text)
    }

    /// Waits up to `within` for the pool's members to be `want`; returns how long it took.
    fn follows(run: &Running, want: &[String], within: Duration) -> Duration {
        let t0 = Instant::now();
        let mut seen = Vec::new();
        let ok = wait_until(within, || {
            seen = run.members("svc");
            seen == want
        });
        assert!(ok, "members {seen:?}, want {want:?} within {within:?}");
        t0.elapsed()
    }

    /// `n` GETs on one connection; the answers.
    fn answers(run: &Running, n: usize) -> Vec<String> {
        let mut c = Client::connect(run.addr());
        (0..n)
            .map(|_| {
                let r = c.get("/");
                assert_eq!(r.status, 200, "{}", r.text());
                r.text()
            })
            .collect()
    }

    /// Records changed at run time: members are added and removed within the interval
    /// plus a second, shown as `NAME@IP:PORT` in `/status` and in metrics, and traffic
    /// follows.
    #[test]
    fn members_follow_the_records() {
        let m = Members::start();
        let dns = TestDns::start();
        dns.set(NAME, &records(&[2, 3], 300));
        let run = start(&dns, &m, "1s");
        let within = Duration::from_secs(2); // interval + 1 s
        follows(&run, &m.names(&[2, 3]), IO_TIMEOUT);
        let mut got = answers(&run, 20);
        got.sort();
        got.dedup();
        assert_eq!(got, ["127.0.0.2", "127.0.0.3"]);

        dns.set(NAME, &records(&[2, 3, 4], 300));
        let took = follows(&run, &m.names(&[2, 3, 4]), within);
        eprintln!("member added after {took:?}");
        assert!(answers(&run, 30).iter().any(|a| a == "127.0.0.4"));
        let (status, metrics) = (run.status(), run.metrics());
        let four = m.name(4);
        let entry = format!(
            "{{\"name\":\"{four}\",\"pool\":\"svc\",\"address\":\"127.0.0.4:{}\"",
            m.port
        );
        assert!(status.contains(&entry), "missing {entry:?} in {status}");
        for line in [
            format!("lbd_backend_up{{backend=\"{four}\",pool=\"svc\"}} 1"),
            format!("lbd_requests_total{{backend=\"{four}\",pool=\"svc\",code=\"200\"}}"),
        ] {
            assert!(metrics.contains(&line), "missing {line:?} in\n{metrics}");
        }

        dns.set(NAME, &records(&[3, 4], 300));
        let took = follows(&run, &m.names(&[3, 4]), within);
        eprintln!("member removed after {took:?}");
        let served = m.at(2).request_count();
        let got = answers(&run, 30);
        assert!(got.iter().all(|a| a != "127.0.0.2"), "{got:?}");
        assert_eq!(m.at(2).request_count(), served);
        assert!(
            !run.metrics().contains(&m.name(2)),
            "a removed member in metrics"
        );
        dns.stop();
    }

    /// A member removed under load from 8 keep-alive clients drains: its request in
    /// flight finishes with its answer, new requests go to the others, none fails.
    #[test]
    fn a_removed_member_drains_under_load() {
        let m = Members::start();
        let dns = TestDns::start();
        dns.set(NAME, &records(&[2, 3], 300));
        let run = start(&dns, &m, "1s");
        follows(&run, &m.names(&[2, 3]), IO_TIMEOUT);
        fn request(_: usize) -> Vec<u8> {
            get("t", "/")
        }
        let load = Load::start(run.addr(), 8, request);
        assert!(wait_until(IO_TIMEOUT, || m.at(2).request_count() > 100
            && m.at(3).request_count() > 100));
        // A slow request held by one of them: that one is removed.
        let addr = run.addr();
        let slow = std::thread::spawn(move || Client::connect(addr).get("/slow"));
        let held = |b: &TestBackend| b.received().iter().any(|r| r.target == "/slow");
        assert!(wait_until(IO_TIMEOUT, || held(m.at(2)) || held(m.at(3))));
        let (gone, kept) = if held(m.at(2)) { (2, 3) } else { (3, 2) };
        dns.set(NAME, &records(&[kept], 300));
        follows(&run, &m.names(&[kept]), Duration::from_secs(2));
        let removed_at = m.at(gone).request_count();
        let kept_at = m.at(kept).request_count();
        assert!(wait_until(IO_TIMEOUT, || m.at(kept).request_count() > kept_at + 500));
        // Requests already sent to it may finish; none are new.
        assert!(m.at(gone).request_count() <= removed_at + 8);
        m.release.store(true, Ordering::SeqCst);
        let r = slow.join().unwrap();
        assert_eq!((r.status, r.text()), (200, format!("127.0.0.{gone}")));
        let (failures, _) = load.finish();
        assert_eq!(failures, 0);
        dns.stop();
    }

    /// A name that does not resolve at start is not an error: its pool answers 503 until
    /// the name appears, then serves.
    #[test]
    fn a_name_unresolvable_at_start_is_503_until_it_resolves() {
        let m = Members::start();
        let dns = TestDns::start();
        let run = start(&dns, &m, "1s");
        // The first resolution was answered (NXDOMAIN).
        assert!(wait_until(IO_TIMEOUT, || dns.udp_queries() >= 2));
        assert_eq!(run.members("svc"), Vec::<String>::new());
        let mut c = Client::connect(run.addr());
        for _ in 0..3 {
            assert_eq!(c.get("/").status, 503);
        }
        let line = "lbd_requests_total{backend=\"none\",pool=\"svc\",code=\"503\"} 3";
        assert!(run.metrics().contains(line), "the pool is named");
        dns.set(NAME, &records(&[5], 300));
        let t0 = Instant::now();
        assert!(wait_until(Duration::from_secs(2), || {
            Client::connect(run.addr()).get("/").status == 200
        }));
        eprintln!("served after {:?}", t0.elapsed());
        assert_eq!(answers(&run, 5), vec!["127.0.0.5"; 5]);
        assert_eq!(run.members("svc"), m.names(&[5]));
        dns.stop();
    }

    /// The DNS server going silent (and then away) keeps the last members, which keep
    /// serving; while it answers again, members follow its records.
    #[test]
    fn a_dns_server_down_keeps_the_members() {
        let m = Members::start();
        let dns = TestDns::start();
        dns.set(NAME, &records(&[2, 3], 300));
        let run = start(&dns, &m, "1s");
        follows(&run, &m.names(&[2, 3]), IO_TIMEOUT);
        dns.silent(true);
        // One whole failed resolution (3 attempts × A and AAAA), then the next begins.
        let before = dns.udp_queries();
        assert!(wait_until(Duration::from_secs(30), || dns.udp_queries() >= before + 8));
        assert_eq!(run.members("svc"), m.names(&[2, 3]), "members kept");
        let mut got = answers(&run, 10);
        got.sort();
        got.dedup();
        assert_eq!(got, ["127.0.0.2", "127.0.0.3"]);

        dns.set(NAME, &records(&[3], 300));
        dns.silent(false);
        follows(&run, &m.names(&[3]), IO_TIMEOUT);

        // Stopped: the port refuses. Over three intervals the member stays and serves.
        dns.stop();
        let changed = wait_until(Duration::from_secs(3), || {
            run.members("svc") != m.names(&[3])
        });
        assert!(!changed, "members changed with the server down");
        assert_eq!(answers(&run, 5), vec!["127.0.0.3"; 5]);
    }

    /// Records with a 1 s TTL are resolved again when it expires, long before a 30 s
    /// interval.
    #[test]
    fn the_ttl_is_honoured() {
        let m = Members::start();
        let dns = TestDns::start();
        dns.set(NAME, &records(&[2], 1));
        let run = start(&dns, &m, "30s");
        follows(&run, &m.names(&[2]), IO_TIMEOUT);
        dns.set(NAME, &records(&[4], 1));
        let took = follows(&run, &m.names(&[4]), Duration::from_secs(3));
        eprintln!("ttl change followed after {took:?}");
        assert_eq!(answers(&run, 3), vec!["127.0.0.4"; 3]);
        dns.stop();
    }
}
