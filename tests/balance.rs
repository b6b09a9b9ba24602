//! Balancing algorithms through real sockets: each algorithm's shares over three
//! backends with known weights, load-awareness, and the stickiness of the hashing ones.

use std::io::BufReader;
use std::net::{Ipv4Addr, SocketAddr, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use lbd::config::RawConfig;
use lbd::config::{Algorithm, HashKey};
use lbd::Server;

use crate::util::*;

/// Weights of the three backends in every test.
const WEIGHTS: [u32; 3] = [3, 2, 1];

/// Three backends answering their index ("0", "1", "2"); a request for `/hold` waits
/// until `release` is set.
struct Three {
    backends: Vec<TestBackend>,
    release: Arc<AtomicBool>,
    server: Server,
}

impl Three {
    fn start(algorithm: Algorithm, edit: impl FnOnce(&mut RawConfig)) -> Three {
        let release = Arc::new(AtomicBool::new(false));
        let backends: Vec<TestBackend> = (0..3)
            .map(|i| {
                let release = release.clone();
                TestBackend::start(move |req| {
                    if req.target == "/hold" {
                        wait_until(IO_TIMEOUT, || release.load(Ordering::SeqCst));
                    }
                    Reply::text(&i.to_string())
                })
            })
            .collect();
        let addrs: Vec<SocketAddr> = backends.iter().map(|b| b.addr).collect();
        let mut c = config(&addrs);
        for (b, w) in c.backends.iter_mut().zip(WEIGHTS) {
            b.weight = w;
        }
        c.balancer.algorithm = algorithm;
        edit(&mut c);
        let server = start(c);
        Three {
            backends,
            release,
            server,
        }
    }

    fn addr(&self) -> SocketAddr {
        self.server.local_addr()
    }

    /// `n` GETs on one keep-alive connection; the index of the backend of each.
    fn run(&self, n: usize) -> Vec<usize> {
        let mut c = Client::connect(self.addr());
        (0..n).map(|_| answer(&c.get("/"))).collect()
    }
}

impl Drop for Three {
    fn drop(&mut self) {
        self.release.store(true, Ordering::SeqCst);
    }
}

/// Which backend answered.
fn answer(r: &Resp) -> usize {
    assert_eq!(r.status, 200, "{}", r.text());
    r.text().parse().expect("a backend index")
}

fn counts(picks: &[usize]) -> [usize; 3] {
    let mut c = [0; 3];
    for &i in picks {
        c[i] += 1;
    }
    c
}

/// Each share within `tolerance` (absolute) of `weights`' shares.
fn assert_shares(picks: &[usize], weights: [u32; 3], tolerance: f64) {
    let c = counts(picks);
    let total: u32 = weights.iter().sum();
    for i in 0..3 {
        let got = c[i] as f64 / picks.len() as f64;
        let want = f64::from(weights[i]) / f64::from(total);
        assert!(
            (got - want).abs() <= tolerance,
            "backend {i}: {got:.3}, want {want:.3} ± {tolerance} ({c:?})"
        );
    }
}

/// A client connecting from `ip` (any 127.x.y.z is local on Linux).
fn client_from(ip: Ipv4Addr, server: SocketAddr) -> Client {
    use socket2::{Domain, Socket, Type};
    let socket = Socket::new(Domain::IPV4, Type::STREAM, None).unwrap();
    socket.bind(&SocketAddr::from((ip, 0)).into()).unwrap();
    socket.connect(&server.into()).unwrap();
    let stream: TcpStream = socket.into();
    stream.set_read_timeout(Some(IO_TIMEOUT)).unwrap();
    Client {
        reader: BufReader::new(stream.try_clone().unwrap()),
        stream,
    }
}

#[test]
fn round_robin_ignores_weights() {
    let t = Three::start(Algorithm::RoundRobin, |_| {});
    let picks = t.run(300);
    assert_eq!(&picks[..6], [0, 1, 2, 0, 1, 2]);
    assert_eq!(counts(&picks), [100, 100, 100]);
}

#[test]
fn weighted_round_robin_is_smooth_and_exact() {
    let t = Three::start(Algorithm::WeightedRoundRobin, |_| {});
    let picks = t.run(600);
    // nginx's smooth sequence for 3:2:1.
    assert_eq!(&picks[..6], [0, 1, 0, 2, 1, 0]);
    assert_eq!(counts(&picks), [300, 200, 100]);
}

/// One request at a time: every backend idle at each pick, ties follow the weights.
#[test]
fn least_connections_idle_follows_weights() {
    let t = Three::start(Algorithm::LeastConnections, |_| {});
    assert_shares(&t.run(600), WEIGHTS, 0.03);
}

#[test]
fn power_of_two_idle_follows_weights() {
    let t = Three::start(Algorithm::PowerOfTwo, |_| {});
    assert_shares(&t.run(1200), WEIGHTS, 0.05);
}

/// A backend busy with a request is avoided while the others are idle.
#[test]
fn load_aware_algorithms_avoid_the_busy_backend() {
    for algorithm in [Algorithm::LeastConnections, Algorithm::PowerOfTwo] {
        let t = Three::start(algorithm, |c| {
            for b in &mut c.backends {
                b.weight = 1;
            }
        });
        let mut held = Client::connect(t.addr());
        held.send(b"GET /hold HTTP/1.1\r\nHost: t\r\n\r\n");
        let total = || t.backends.iter().map(|b| b.request_count()).sum::<usize>();
        assert!(wait_until(IO_TIMEOUT, || total() == 1));
        let busy = (0..3)
            .find(|&i| t.backends[i].request_count() == 1)
            .unwrap();
        let picks = t.run(60);
        assert!(!picks.contains(&busy), "{algorithm:?}: {picks:?}");
        assert!(
            (0..3).all(|i| i == busy || picks.contains(&i)),
            "{algorithm:?}"
        );
        t.release.store(true, Ordering::SeqCst);
        assert_eq!(answer(&held.response(false)), busy);
    }
}

/// Many users by header: shares follow the weights; each user stays on one backend,
/// across connections; requests without the header go round-robin.
#[test]
fn consistent_hash_on_a_header_keeps_a_user_on_one_backend() {
    let t = Three::start(Algorithm::ConsistentHash, |c| {
        c.balancer.hash_key = HashKey::Header("x-user".into());
    });
    let get = |user: usize| {
        let mut c = Client::connect(t.addr());
        c.send(format!("GET / HTTP/1.1\r\nHost: t\r\nX-User: user-{user}\r\n\r\n").as_bytes());
        answer(&c.response(false))
    };
    let first: Vec<usize> = (0..600).map(get).collect();
    assert_shares(&first, WEIGHTS, 0.07);
    for (user, &home) in first.iter().enumerate().take(60) {
        for _ in 0..3 {
            assert_eq!(get(user), home, "user-{user}");
        }
    }
    // Keyless: round-robin.
    assert_eq!(counts(&t.run(30)), [10, 10, 10]);
}

/// One client address, one backend; many addresses spread by weight.
#[test]
fn ip_hash_sends_one_client_to_one_backend() {
    let t = Three::start(Algorithm::IpHash, |_| {});
    let one: Vec<usize> = (0..20)
        .map(|_| answer(&Client::connect(t.addr()).get("/")))
        .collect();
    assert!(one.iter().all(|&i| i == one[0]), "{one:?}");
    let ips: Vec<Ipv4Addr> = (1..=3)
        .flat_map(|x| (1..=200).map(move |y| Ipv4Addr::new(127, 0, x, y)))
        .collect();
    let picks: Vec<usize> = ips
        .iter()
        .map(|&ip| answer(&client_from(ip, t.addr()).get("/")))
        .collect();
    assert_shares(&picks, WEIGHTS, 0.07);
    for (k, &ip) in ips.iter().enumerate().step_by(20) {
        let mut c = client_from(ip, t.addr());
        for _ in 0..3 {
            assert_eq!(answer(&c.get("/")), picks[k], "{ip}");
        }
    }
}

/// A hashed client's backend goes down: it moves; when the backend is back, so is the
/// client (health checks take it out and bring it back). `stop` closes the listener, so
/// probes fail; connections already open linger, but a dead backend is never picked.
#[test]
fn ip_hash_client_moves_back_after_recovery() {
    let t = Three::start(Algorithm::IpHash, |c| {
        c.health.interval = Duration::from_millis(50);
        c.health.timeout = Duration::from_millis(200);
        c.health.rise = 1;
        c.health.fall = 1;
    });
    let home = answer(&Client::connect(t.addr()).get("/"));
    let addr = t.backends[home].addr;
    t.backends[home].stop();
    let snapshot = t.server.snapshot();
    assert!(wait_until(IO_TIMEOUT, || !snapshot.backends[home].is_alive()));
    let away = answer(&Client::connect(t.addr()).get("/"));
    assert_ne!(away, home);
    let _revived = TestBackend::start_on(addr, move |_| Reply::text(&home.to_string()));
    assert!(wait_until(IO_TIMEOUT, || snapshot.backends[home].is_alive()));
    assert_eq!(answer(&Client::connect(t.addr()).get("/")), home);
}
