//! The exchange's state machine, step by step, on real loopback sockets: a test thread
//! plays the backend (blocking std sockets with timeouts) and drives the exchange's
//! steps and deadlines itself, checking the attempt's state after each.

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::Arc;
use std::time::{Duration, Instant};

use mio::{Events, Poll};

use super::{After, Attempt, Exchange, Outcome, Upload};
use crate::buffer::BufPool;
use crate::config::RawConfig;
use crate::http::request::{self, RequestContext};
use crate::session::{Conn, Env, Progress};
use crate::snapshot::{Generations, Snapshot};
use crate::stats::{LocalStats, Shared};
use crate::token;
use crate::upstream::Upstreams;

impl Attempt {
    fn name(&self) -> &'static str {
        match self {
            Attempt::Pick => "pick",
            Attempt::Reconnect => "reconnect",
            Attempt::BackOff { .. } => "back_off",
            Attempt::Connecting { .. } => "connecting",
            Attempt::Sending { .. } => "sending",
            Attempt::Awaiting { .. } => "awaiting",
            Attempt::Relaying {
                upload: Upload::Sending,
                ..
            } => "relaying+sending",
            Attempt::Relaying { .. } => "relaying",
            Attempt::Switched { .. } => "switched",
            Attempt::Ended => "ended",
        }
    }
}

struct Rig {
    poll: Poll,
    events: Events,
    env: Env,
    conn: Conn,
    _client: TcpStream,
    backend: TcpListener,
}

impl Rig {
    fn new(backend: TcpListener, tune: impl FnOnce(&mut RawConfig)) -> Rig {
        let mut raw = RawConfig::new(
            "127.0.0.1:0".parse().unwrap(),
            &[backend.local_addr().unwrap()],
        );
        tune(&mut raw);
        let config = raw.validate().unwrap();
        let snapshot = Arc::new(Snapshot::new(config, &Default::default()));
        let poll = Poll::new().unwrap();
        let front = TcpListener::bind("127.0.0.1:0").unwrap();
        let client = TcpStream::connect(front.local_addr().unwrap()).unwrap();
        let (accepted, addr) = front.accept().unwrap();
        accepted.set_nonblocking(true).unwrap();
        let mut stream = mio::net::TcpStream::from_std(accepted);
        poll.registry()
            .register(&mut stream, token::session(0), mio::Interest::WRITABLE)
            .unwrap();
        let local = stream.local_addr().unwrap();
        let now = Instant::now();
        let env = Env {
            upstreams: Upstreams::new(
                poll.registry().try_clone().unwrap(),
                0,
                snapshot.config.timeouts.upstream_idle,
            ),
            bufs: BufPool::new(16 * 1024, 8),
            big_bufs: BufPool::new(64 * 1024, 8),
            generations: Generations::new(snapshot),
            shared: Arc::new(Shared::default()),
            stats: LocalStats::default(),
            now,
            shutting_down: false,
            health: None,
            access_log: None,
            tls_port: None,
        };
        let mut conn = Conn::new(stream, crate::session::Transport::Plain, addr, local, now);
        conn.client_in.ensure(&mut BufPool::new(16 * 1024, 1));
        Rig {
            poll,
            events: Events::with_capacity(16),
            env,
            conn,
            _client: client,
            backend,
        }
    }

    /// An exchange for `head` (the client's head; its body follows in `client_in`).
    fn exchange(&mut self, head: &[u8]) -> Exchange {
        self.conn.upstream_out.ensure(&mut self.env.bufs);
        self.conn.upstream_out.clear();
        let ctx = RequestContext {
            client: self.conn.addr.ip(),
            local: self.conn.local,
            max_headers: 100,
            max_body: None,
            hash_header: None,
            tls: false,
        };
        let req = request::parse(head, &ctx, &mut self.conn.upstream_out).unwrap();
        Exchange::new(req, 0, None, &mut self.conn, &mut self.env)
    }

    /// Polls once (bounded) and records the events where the worker would.
    fn turn(&mut self) {
        self.poll
            .poll(&mut self.events, Some(Duration::from_millis(100)))
            .unwrap();
        for e in self.events.iter() {
            let (r, w, c) = (
                e.is_readable() || e.is_read_closed(),
                e.is_writable(),
                e.is_read_closed() || e.is_error(),
            );
            match token::classify(e.token()) {
                token::Target::Session(_) => self.conn.edges.record(r, w, c),
                token::Target::Upstream(uid) => {
                    self.env.upstreams.on_event(uid, r, w, c);
                }
                _ => {}
            }
        }
        self.env.now = Instant::now();
    }

    fn step(&mut self, x: &mut Exchange) -> Outcome {
        x.step(0, &mut self.conn, &mut self.env)
    }

    /// Turns and steps until the attempt is `want` (bounded), returning the last outcome.
    fn step_until(&mut self, x: &mut Exchange, want: &str) -> Outcome {
        let mut outcome = self.step(x);
        for _ in 0..50 {
            if x.attempt.name() == want {
                return outcome;
            }
            self.turn();
            outcome = self.step(x);
        }
        panic!("attempt is {}, never became {want}", x.attempt.name());
    }

    /// The backend's side of the next connection.
    fn accept(&self) -> TcpStream {
        let (s, _) = self.backend.accept().unwrap();
        s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        s
    }
}

fn listener() -> TcpListener {
    TcpListener::bind("127.0.0.1:0").unwrap()
}

/// Reads from the backend's side until `want` has arrived.
fn read_until(s: &mut TcpStream, want: &[u8]) -> Vec<u8> {
    let mut got = Vec::new();
    let mut buf = [0u8; 4096];
    while !got.windows(want.len()).any(|w| w == want) {
        let n = s.read(&mut buf).unwrap();
        assert!(n > 0, "backend saw EOF before {want:?}");
        got.extend_from_slice(&buf[..n]);
    }
    got
}

const POST: &[u8] = b"POST /u HTTP/1.1\r\nHost: a\r\nContent-Length: 6\r\n\r\n";
const GET: &[u8] = b"GET / HTTP/1.1\r\nHost: a\r\n\r\n";

/// pick -> connecting -> sending (body still arriving) -> awaiting -> relaying -> ended;
/// the connection goes back to the pool.
#[test]
fn a_request_with_a_body_walks_every_state() {
    let mut rig = Rig::new(listener(), |_| {});
    rig.conn.client_in.extend(b"abc");
    let mut x = rig.exchange(POST);
    assert_eq!(x.attempt.name(), "pick");
    assert_eq!(rig.step(&mut x), Outcome::Running(Progress::Moved));
    assert_eq!(x.attempt.name(), "connecting");
    let mut backend = rig.accept();
    rig.step_until(&mut x, "sending");
    read_until(&mut backend, b"\r\n\r\nabc");
    rig.conn.client_in.extend(b"def");
    rig.step_until(&mut x, "awaiting");
    read_until(&mut backend, b"def");
    backend
        .write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 4\r\n\r\nok")
        .unwrap();
    rig.step_until(&mut x, "relaying");
    backend.write_all(b"!!").unwrap();
    let outcome = rig.step_until(&mut x, "ended");
    assert_eq!(outcome, Outcome::Finished(After::KeepAlive));
    assert!(rig.conn.client_out.data().ends_with(b"ok!!"));
    assert_eq!(rig.env.snapshot().backends[0].idle_connections(), 1);
    assert_eq!(rig.env.snapshot().backends[0].load(), 0, "lease given back");
}

/// An answer before the request body ended: relaying while the request still goes out;
/// the client connection closes after it (the rest of the body is not read).
#[test]
fn an_early_response_relays_while_the_request_goes_out() {
    let mut rig = Rig::new(listener(), |_| {});
    rig.conn.client_in.extend(b"abc");
    let mut x = rig.exchange(POST);
    rig.step(&mut x);
    let mut backend = rig.accept();
    rig.step_until(&mut x, "sending");
    read_until(&mut backend, b"abc");
    backend
        .write_all(b"HTTP/1.1 413 Too Big\r\nContent-Length: 4\r\n\r\nno")
        .unwrap();
    rig.step_until(&mut x, "relaying+sending");
    backend.write_all(b"pe").unwrap();
    let outcome = rig.step_until(&mut x, "ended");
    assert_eq!(outcome, Outcome::Finished(After::Linger));
    assert_eq!(rig.env.snapshot().backends[0].idle_connections(), 0);
}

/// Connects refused: back off, connect again, then (connects exhausted, no other
/// backend) 503 and a down-mark due.
#[test]
fn refused_connects_back_off_then_give_up() {
    let mut rig = Rig::new(listener(), |c| {
        c.retry.same_backend = 1;
        c.retry.max_attempts = 1;
        c.retry.delay = Duration::from_millis(1);
    });
    // Nothing listens on the backend's address any more.
    rig.backend = listener();
    let mut x = rig.exchange(GET);
    rig.step_until(&mut x, "back_off");
    rig.env.now += Duration::from_millis(5);
    let outcome = rig.step_until(&mut x, "ended");
    assert_eq!(outcome, Outcome::Finished(After::KeepAlive));
    assert!(rig.conn.client_out.data().starts_with(b"HTTP/1.1 503"));
    assert_eq!(x.tries.attempts.connects, 2);
    assert_eq!(x.tries.retries, 1);
}

/// A pooled connection that turns out dead after the request was written: one retry on
/// a fresh connection to the same backend.
#[test]
fn a_dead_pooled_connection_reconnects() {
    let mut rig = Rig::new(listener(), |_| {});
    let mut x = rig.exchange(GET);
    rig.step(&mut x);
    let mut backend = rig.accept();
    rig.step_until(&mut x, "awaiting");
    read_until(&mut backend, b"\r\n\r\n");
    backend
        .write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n")
        .unwrap();
    rig.step_until(&mut x, "ended");
    assert_eq!(rig.env.snapshot().backends[0].idle_connections(), 1);
    // The backend closes the idle connection; the worker has not seen the FIN yet.
    drop(backend);
    rig.conn.client_out.clear();
    let mut x = rig.exchange(GET);
    rig.step(&mut x);
    assert_eq!(x.attempt.name(), "awaiting", "took the pooled connection");
    rig.step_until(&mut x, "connecting");
    assert!(x.tries.attempts.fresh_retry_used);
    let mut backend = rig.accept();
    rig.step_until(&mut x, "awaiting");
    read_until(&mut backend, b"\r\n\r\n");
    backend
        .write_all(b"HTTP/1.1 204 No Content\r\n\r\n")
        .unwrap();
    let outcome = rig.step_until(&mut x, "ended");
    assert_eq!(outcome, Outcome::Finished(After::KeepAlive));
    assert!(rig.conn.client_out.data().starts_with(b"HTTP/1.1 204"));
}

/// The deadlines each state sets, and what passing them does: a silent backend gets
/// 504 after `upstream_response`.
#[test]
fn deadlines_follow_the_state() {
    let mut rig = Rig::new(listener(), |c| {
        c.timeouts.connect = Duration::from_secs(2);
        c.timeouts.upstream_response = Duration::from_secs(3);
    });
    let mut x = rig.exchange(GET);
    rig.step(&mut x);
    let Attempt::Connecting { deadline, .. } = x.attempt else {
        panic!("connecting");
    };
    assert_eq!(x.deadline(&rig.conn, &rig.env), deadline);
    let _backend = rig.accept();
    rig.step_until(&mut x, "awaiting");
    let due = x.upstream_io + Duration::from_secs(3);
    assert_eq!(x.deadline(&rig.conn, &rig.env), due);
    rig.env.now = due - Duration::from_millis(1);
    assert_eq!(
        x.expire(&mut rig.conn, &mut rig.env),
        Outcome::Running(Progress::Idle)
    );
    rig.env.now = due;
    let outcome = x.expire(&mut rig.conn, &mut rig.env);
    assert_eq!(outcome, Outcome::Finished(After::KeepAlive));
    assert!(rig.conn.client_out.data().starts_with(b"HTTP/1.1 504"));
    assert_eq!(x.attempt.name(), "ended");
}
