//! A Session is one accepted client connection across its keep-alive requests: it reads
//! heads, runs one [`Exchange`] at a time (pipelined requests wait in the input buffer,
//! answered in order), and closes cleanly.
//!
//! Its state machine is [`Phase`]. Every readiness event, timer or retry ends in
//! [`Session::drive`], a bounded progress loop: read what can be read, let the phase move
//! bytes, write what can be written, and repeat while anything moved.

mod conn;
mod env;
mod exchange;
mod tunnel;

use std::net::{Shutdown, SocketAddr};
use std::time::{Duration, Instant};

use mio::net::TcpStream;

pub use conn::{Conn, Transport};
pub use env::Env;
use exchange::{After, Exchange, Outcome};
use tunnel::{Tunnel, TunnelStep};

use crate::access::{self, RequestInfo};
use crate::config::HashKey;
use crate::fault::Fault;
use crate::http::request::RequestHead;
use crate::http::scan::RequestScan;
use crate::http::{self, Framing, RequestError};
use crate::net::{Io, Peer};
use crate::proxy_protocol::{self, Parsed};

/// Progress rounds per drive before yielding to other sessions (fairness); the worker
/// drives a session that hit the bound again on its next turn.
const ROUNDS: usize = 32;
/// After an error response: how long the unread request is discarded before closing.
const LINGER: Duration = Duration::from_secs(2);
/// ... and how many bytes of it at most.
const LINGER_BYTES: usize = 1 << 20;

/// Whether a handler moved bytes or state; the drive loop repeats while anything moved.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Progress {
    /// Nothing moved: wait for an event or a deadline.
    Idle,
    /// Bytes or state moved: another round may move more.
    Moved,
}

impl From<bool> for Progress {
    fn from(moved: bool) -> Progress {
        if moved {
            Progress::Moved
        } else {
            Progress::Idle
        }
    }
}

impl std::ops::BitOr for Progress {
    type Output = Progress;
    fn bitor(self, other: Progress) -> Progress {
        Progress::from(self == Progress::Moved || other == Progress::Moved)
    }
}

/// What a session is doing.
///
/// `Exchange` is large, but sessions live in a slab and boxing it would cost an
/// allocation per request.
#[derive(Debug)]
#[allow(clippy::large_enum_variant)]
enum Phase {
    /// The connection must begin with a PROXY protocol header (spec §11), read before
    /// anything else (before TLS on the TLS listener); due `client_header` after accept.
    /// A bad, oversized or late header closes the connection without an answer.
    Proxy {
        /// Accept + `client_header`; the first head is due by the same deadline.
        deadline: Instant,
    },
    /// A new connection: nothing of its first head has arrived (a TLS handshake may be
    /// under way). The first head is due `client_header` after accept; passing it with
    /// no byte closes the connection without an answer.
    Fresh {
        /// Accept + `client_header`.
        deadline: Instant,
    },
    /// Between keep-alive requests: nothing of the next head has arrived; passing
    /// `client_idle` closes the connection without an answer.
    Idle {
        /// When waiting ends.
        deadline: Instant,
    },
    /// Part of a request head has arrived; the rest is due by `client_header` (from
    /// accept for the first request, from its first byte for later ones).
    Head {
        /// When a 408 answers the incomplete head (or, if only empty lines came, when
        /// the connection closes without an answer).
        deadline: Instant,
        /// The check of the bytes of `client_in` received so far, resumed on each read.
        scan: RequestScan,
    },
    /// One request/response in progress. Boxed: an exchange is large and most
    /// connections, between requests, have none, so the idle session stays small
    /// (issue 14: RSS per idle keep-alive connection).
    Exchange(Box<Exchange>),
    /// The upstream switched protocols: bytes pass both ways until both sides are done
    /// (spec §10). Boxed for the same reason as an exchange.
    Tunnel(Box<Tunnel>),
    /// A final response is leaving; then the connection ends as `ending` says.
    Flushing {
        /// Hard end of the flush (`client_io`).
        deadline: Instant,
        /// Input bytes discarded so far.
        discarded: usize,
        /// A plain close, or a lingering one.
        ending: Ending,
    },
    /// The write side is shut: unread input is discarded briefly, so the client reads the
    /// last response instead of a reset (spec §7.7).
    Lingering {
        /// Hard end of the linger.
        deadline: Instant,
        /// Input bytes discarded so far.
        discarded: usize,
    },
    /// Finished: the worker removes the session.
    Done,
}

/// How a connection ends once its final answer is out.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Ending {
    /// Close: everything the client sent was read, so its FIN loses nothing.
    Close,
    /// Shut the write side, then drain input briefly (spec §7.7).
    Linger,
}

impl Phase {
    fn is_closing(&self) -> bool {
        matches!(self, Phase::Flushing { .. } | Phase::Lingering { .. })
    }
}

/// What [`Session::drive`] leaves behind.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Drive {
    /// Waiting for an event or a deadline.
    Idle,
    /// Hit the round bound with work left: drive again soon.
    Again,
    /// Finished: remove the session.
    Finished,
}

/// One client connection.
#[derive(Debug)]
pub struct Session {
    conn: Conn,
    phase: Phase,
    /// The current deadline (see `Phase`).
    pub deadline: Instant,
    /// Earliest timer entry armed for this session.
    pub armed: Option<Instant>,
    /// Queued in the worker's ready list.
    pub scheduled: bool,
}

impl Session {
    /// A freshly accepted connection, waiting for its first head (after a PROXY protocol
    /// header when its listener expects one).
    pub fn new(
        client: TcpStream,
        transport: Transport,
        addr: SocketAddr,
        local: SocketAddr,
        expect_proxy: bool,
        env: &Env,
    ) -> Session {
        let deadline = env.now + env.config().timeouts.client_header;
        Session {
            conn: Conn::new(client, transport, addr, local, env.now),
            phase: if expect_proxy {
                Phase::Proxy { deadline }
            } else {
                Phase::Fresh { deadline }
            },
            deadline,
            armed: None,
            scheduled: false,
        }
    }

    /// The client connected over TLS.
    pub fn is_tls(&self) -> bool {
        self.conn.is_tls()
    }

    /// The session must hear from the client socket (it waits for client bytes, or for
    /// room to write them) and is not registered with the poll yet.
    pub fn must_watch_client(&self) -> bool {
        if self.conn.watched {
            return false;
        }
        match &self.phase {
            Phase::Exchange(x) => !x.has_whole_request() || self.conn.is_blocked_on_client(),
            Phase::Done => false,
            _ => true,
        }
    }

    /// The client socket was registered: events report its edges from now on. A session
    /// that waits on its client is a keep-alive or a slow one, so small writes must not
    /// wait for Nagle: `TCP_NODELAY` is set now, once (a connection answered at once
    /// never pays for it).
    pub fn watched(&mut self) {
        self.conn.watched = true;
        let _ = self.conn.client.set_nodelay(true);
    }

    /// The client socket, for (de)registration.
    pub fn client(&mut self) -> &mut TcpStream {
        &mut self.conn.client
    }

    /// Records readiness from a client event.
    pub fn client_ready(&mut self, readable: bool, writable: bool, read_closed: bool) {
        self.conn.edges.record(readable, writable, read_closed);
    }

    /// True when idle between requests with nothing pending (closed first at shutdown).
    pub fn is_idle(&self) -> bool {
        matches!(
            self.phase,
            Phase::Proxy { .. } | Phase::Fresh { .. } | Phase::Idle { .. }
        ) && self.conn.client_in.is_empty()
            && self.conn.client_out.is_empty()
    }

    /// Runs the progress loop. `sid` is this session's slab index.
    pub fn drive(&mut self, sid: usize, env: &mut Env) -> Drive {
        for _ in 0..ROUNDS {
            let progress = self.read_client(env) | self.step(sid, env) | self.write_client(env);
            if matches!(self.phase, Phase::Done) {
                return Drive::Finished;
            }
            if progress == Progress::Idle {
                self.settle(env);
                return Drive::Idle;
            }
        }
        self.settle(env);
        Drive::Again
    }

    /// Handles the deadline having passed at `env.now`.
    pub fn expire(&mut self, sid: usize, env: &mut Env) -> Drive {
        match &mut self.phase {
            Phase::Head { scan, .. } if self.conn.client_out.is_empty() && !scan.is_blank() => {
                log::debug!("client={} header timeout", self.conn.addr);
                self.refuse(Fault::HeaderTimeout, None, env);
            }
            Phase::Proxy { .. } => {
                log::debug!("client={} PROXY header timeout", self.conn.addr);
                env.shared.record_proxy_error("timeout");
                self.phase = Phase::Done;
            }
            Phase::Fresh { .. } | Phase::Idle { .. } | Phase::Head { .. } => {
                log::debug!("client={} idle timeout", self.conn.addr);
                self.phase = Phase::Done;
            }
            Phase::Exchange(x) => {
                let outcome = x.expire(&mut self.conn, env);
                self.apply(outcome, env);
            }
            Phase::Tunnel(t) => {
                log::debug!("client={} tunnel idle timeout", self.conn.addr);
                t.finish("timeout", &self.conn, env);
                self.phase = Phase::Done;
            }
            Phase::Flushing { .. } | Phase::Lingering { .. } => self.phase = Phase::Done,
            Phase::Done => {}
        }
        if matches!(self.phase, Phase::Done) {
            return Drive::Finished;
        }
        self.drive(sid, env)
    }

    /// Releases everything the session holds (upstream, backend slot, buffers).
    pub fn close(&mut self, env: &mut Env) {
        match &mut self.phase {
            Phase::Exchange(x) => x.abandon(Fault::Shutdown, &mut self.conn, env),
            Phase::Tunnel(t) => t.finish("closed", &self.conn, env),
            _ => {}
        }
        self.phase = Phase::Done;
        self.conn.release_buffers(env);
    }

    /// Asks the session to finish: idle ones close now, others after their exchange.
    pub fn begin_shutdown(&mut self) {
        let blank = matches!(&self.phase, Phase::Head { scan, .. } if scan.is_blank());
        if self.is_idle() || (blank && self.conn.client_out.is_empty()) {
            self.phase = Phase::Done;
        }
    }

    fn step(&mut self, sid: usize, env: &mut Env) -> Progress {
        match &mut self.phase {
            Phase::Proxy { deadline } => {
                let deadline = *deadline;
                self.step_proxy(deadline, env)
            }
            Phase::Fresh { .. } | Phase::Idle { .. } | Phase::Head { .. } => self.step_head(env),
            Phase::Exchange(x) => {
                let outcome = x.step(sid, &mut self.conn, env);
                self.apply(outcome, env)
            }
            Phase::Tunnel(t) => match t.step(&mut self.conn, env) {
                TunnelStep::Running(progress) => progress,
                TunnelStep::Ended(reason) => {
                    t.finish(reason, &self.conn, env);
                    self.phase = Phase::Done;
                    Progress::Moved
                }
            },
            Phase::Flushing {
                deadline,
                discarded,
                ending,
            } => {
                let conn = &mut self.conn;
                if conn.peer != Peer::Broken {
                    if !conn.client_out.is_empty() {
                        return Progress::Idle;
                    }
                    // The transport's own end (TLS close_notify) leaves before the FIN.
                    conn.close_transport();
                    if conn.wants_write() {
                        conn.flush();
                        if conn.wants_write() && conn.peer != Peer::Broken {
                            return Progress::Idle;
                        }
                    }
                }
                if *ending == Ending::Close {
                    // The last write held its tail for the FIN (`BeforeFin`). Shut the
                    // write side first: that sends tail and FIN now, before a close that
                    // finds unread input (pipelined bytes that arrived since) resets the
                    // connection and would discard a tail still queued.
                    if matches!(conn.transport, Transport::Plain) && conn.peer != Peer::Broken {
                        let _ = conn.client.shutdown(Shutdown::Write);
                    }
                    self.phase = Phase::Done;
                    return Progress::Moved;
                }
                let _ = conn.client.shutdown(Shutdown::Write);
                self.phase = Phase::Lingering {
                    deadline: (*deadline).min(env.now + LINGER),
                    discarded: *discarded,
                };
                Progress::Moved
            }
            Phase::Lingering { discarded, .. } => {
                if self.conn.peer.is_eof() || *discarded > LINGER_BYTES {
                    self.phase = Phase::Done;
                    return Progress::Moved;
                }
                Progress::Idle
            }
            Phase::Done => Progress::Idle,
        }
    }

    /// Applies an exchange's outcome to the session's phase.
    fn apply(&mut self, outcome: Outcome, env: &mut Env) -> Progress {
        match outcome {
            Outcome::Running(progress) => progress,
            Outcome::Finished(after) => {
                match after {
                    After::KeepAlive if !env.shutting_down && !self.conn.peer.is_eof() => {
                        self.phase = Phase::Idle {
                            deadline: env.now + env.config().timeouts.client_idle,
                        };
                    }
                    After::KeepAlive | After::Close => self.end_after_flush(Ending::Close, env),
                    After::Linger => self.end_after_flush(Ending::Linger, env),
                }
                Progress::Moved
            }
            Outcome::Aborted => {
                self.phase = Phase::Done;
                Progress::Moved
            }
            Outcome::Upgraded => {
                let Phase::Exchange(x) = std::mem::replace(&mut self.phase, Phase::Done) else {
                    unreachable!("an exchange switched");
                };
                let start = x.into_tunnel(env);
                self.phase = Phase::Tunnel(Box::new(Tunnel::open(start, &mut self.conn, env)));
                Progress::Moved
            }
        }
    }

    /// Flushes what is queued (within `client_io`), then ends the connection: a plain
    /// close, or (`Linger`) shuts the write side and drains input for at most `LINGER`,
    /// so the client reads the last response, not a reset.
    fn end_after_flush(&mut self, ending: Ending, env: &Env) {
        self.phase = Phase::Flushing {
            deadline: env.now + env.config().timeouts.client_io,
            discarded: 0,
            ending,
        };
    }

    /// Answers a request lbd refuses before any exchange began, records it, and closes
    /// after the answer (spec §7.7).
    fn refuse(&mut self, fault: Fault, info: Option<RequestInfo>, env: &mut Env) {
        let answer = fault.answer();
        let canned = answer.canned.expect("a refusal is answered");
        self.record_answer(canned.status(), answer.reason, info, env);
        self.conn.client_out.ensure(&mut env.big_bufs);
        canned.write(&mut self.conn.client_out, true, false);
        self.end_after_flush(Ending::Linger, env);
    }

    /// Counts (and access-logs) an answer lbd made without a backend.
    fn record_answer(
        &self,
        status: u16,
        reason: &'static str,
        info: Option<RequestInfo>,
        env: &mut Env,
    ) {
        env.shared.unrouted.record(status, Duration::ZERO);
        if let Some(log) = env.access_log() {
            let request = info.unwrap_or_default();
            let (tls, sni) = self.conn.tls_info();
            let entry = access::Entry {
                client: self.conn.addr.ip(),
                request: &request,
                status,
                body_bytes: 0,
                upstream: None,
                upstream_status: None,
                duration: 0.0,
                tls,
                sni,
                tunnel: None,
                retries: 0,
                reason,
            };
            let _ = log.try_send(access::format(&entry, std::time::SystemTime::now()));
        }
    }

    /// No route matches and there is no default pool (spec §12): 404 (reason
    /// `no_route`); the connection stays open for a body-less keep-alive request.
    fn no_route(&mut self, head: &RequestHead, end: usize, env: &mut Env) {
        let conn = &mut self.conn;
        conn.upstream_out.clear();
        let data = conn.client_in.data();
        let info = env
            .access_log()
            .map(|_| RequestInfo::from_head(&data[..end]));
        conn.client_in.advance(head.head_len);
        let keep_alive = head.keep_alive && head.framing == Framing::Empty && !env.shutting_down;
        conn.client_out.ensure(&mut env.big_bufs);
        let answer = Fault::NoRoute.answer();
        let canned = answer.canned.expect("a 404");
        canned.write(
            &mut conn.client_out,
            !keep_alive,
            head.method == crate::http::request::Method::Head,
        );
        self.record_answer(canned.status(), answer.reason, info, env);
        if keep_alive {
            self.phase = Phase::Idle {
                deadline: env.now + env.config().timeouts.client_idle,
            };
        } else if head.framing != Framing::Empty {
            self.end_after_flush(Ending::Linger, env);
        } else {
            self.end_after_flush(Ending::Close, env);
        }
    }

    /// `tls.redirect_http`: answers a plain request with a 308 to `https://` (the head
    /// was accepted; a request body is not read, so the connection closes after it).
    fn redirect(&mut self, head: &RequestHead, end: usize, tls_port: u16, env: &mut Env) {
        let conn = &mut self.conn;
        conn.upstream_out.clear();
        let close = !head.keep_alive || head.framing != Framing::Empty || env.shutting_down;
        conn.client_out.ensure(&mut env.big_bufs);
        let data = conn.client_in.data();
        let fallback = conn.local.ip().to_string();
        http::redirect::write_308(
            &data[..end],
            tls_port,
            &fallback,
            close,
            &mut conn.client_out,
        );
        let info = env
            .access_log()
            .map(|_| RequestInfo::from_head(&data[..end]));
        conn.client_in.advance(head.head_len);
        self.record_answer(308, "redirect", info, env);
        if head.framing != Framing::Empty {
            self.end_after_flush(Ending::Linger, env);
        } else if close {
            self.end_after_flush(Ending::Close, env);
        } else {
            self.phase = Phase::Idle {
                deadline: env.now + env.config().timeouts.client_idle,
            };
        }
    }

    /// Waits for a whole PROXY protocol header; its source becomes the client's address
    /// (X-Forwarded-For, hashing, logs, metrics). Bytes after it are the connection's own:
    /// the first request, or (TLS listener) the ClientHello, handed to the transport.
    fn step_proxy(&mut self, deadline: Instant, env: &mut Env) -> Progress {
        let conn = &mut self.conn;
        let parsed = proxy_protocol::parse(conn.client_in.data());
        let reason = match parsed {
            Ok(Parsed::Complete { header, len }) => {
                conn.addr = header.client(conn.addr);
                conn.client_in.advance(len);
                match conn.hand_over_input() {
                    Ok(()) => {
                        self.phase = Phase::Fresh { deadline };
                        return Progress::Moved;
                    }
                    Err(e) => {
                        log::debug!("client={} tls: {e}", conn.addr);
                        if let Some(ok) = conn.take_handshake() {
                            env.stats.record_handshake(ok);
                        }
                        self.phase = Phase::Done;
                        return Progress::Moved;
                    }
                }
            }
            Ok(Parsed::Incomplete) if !conn.peer.is_eof() => return Progress::Idle,
            Ok(Parsed::Incomplete) => "closed",
            Err(e) => {
                log::debug!("client={} {e}", conn.addr);
                e.reason()
            }
        };
        env.shared.record_proxy_error(reason);
        self.phase = Phase::Done;
        Progress::Moved
    }

    /// Waits for a whole request head, then starts its exchange (or refuses it).
    fn step_head(&mut self, env: &mut Env) -> Progress {
        let conn = &mut self.conn;
        if !conn.client_out.is_empty() {
            // The previous response is still leaving; pipelined heads wait their turn.
            return Progress::Idle;
        }
        let (deadline, mut scan) = match self.phase {
            Phase::Head { deadline, scan } => (deadline, scan),
            Phase::Fresh { deadline } | Phase::Idle { deadline } => {
                if conn.client_in.is_empty() {
                    conn.client_in.reset_if_empty();
                    if conn.peer.is_eof() || env.shutting_down {
                        self.phase = Phase::Done;
                        return Progress::Moved;
                    }
                    return Progress::Idle;
                }
                // The first head is due from accept; a later one from its first byte.
                let deadline = match self.phase {
                    Phase::Fresh { .. } => deadline,
                    _ => env.now + env.config().timeouts.client_header,
                };
                (deadline, RequestScan::default())
            }
            _ => return Progress::Idle,
        };
        let limits = env.config().limits;
        let data = conn.client_in.data();
        // Every byte is checked as it arrives: a head that can no longer become valid is
        // refused now, not when client_header expires.
        let checked = scan.check(data);
        self.phase = Phase::Head { deadline, scan };
        let end = match checked {
            Ok(end) => end,
            Err(e) => {
                log::debug!("client={} refused request: {e}", conn.addr);
                let info = RequestInfo::from_head(data);
                self.refuse(Fault::Refused(e), Some(info), env);
                return Progress::Moved;
            }
        };
        let Some(end) = end else {
            if data.len() >= limits.head_bytes || conn.client_in.room() == 0 {
                let e = too_large(data, limits.head_bytes);
                self.refuse(Fault::Refused(e), None, env);
                return Progress::Moved;
            }
            if conn.peer.is_eof() {
                log::debug!("client={} closed mid-head", conn.addr);
                self.phase = Phase::Done;
                return Progress::Moved;
            }
            return Progress::Idle;
        };
        if end > limits.head_bytes {
            let e = too_large(data, limits.head_bytes);
            self.refuse(Fault::Refused(e), None, env);
            return Progress::Moved;
        }
        conn.upstream_out.ensure(&mut env.bufs);
        conn.upstream_out.clear();
        let snapshot = env.snapshot();
        let hash_header = match &snapshot.config.balancer.hash_key {
            HashKey::Header(name) => Some(name.as_str()),
            HashKey::Ip => None,
        };
        let ctx = http::request::RequestContext {
            client: conn.addr.ip(),
            local: conn.local,
            max_headers: limits.headers,
            max_body: limits.body_bytes,
            hash_header,
            tls: conn.is_tls(),
        };
        match http::request::parse(&data[..end], &ctx, &mut conn.upstream_out) {
            Ok(head) if !conn.is_tls() && env.redirect_port().is_some() => {
                let port = env.redirect_port().expect("checked");
                self.redirect(&head, end, port, env);
            }
            Ok(mut head) => {
                let raw = &data[..end];
                let snapshot = env.snapshot();
                let Some(pool) = snapshot.route(head.host.of(raw), head.path.of(raw)) else {
                    self.no_route(&head, end, env);
                    return Progress::Moved;
                };
                // The pool's own hash key, when it hashes another header than the default.
                if let HashKey::Header(name) = &snapshot.pools[pool].hash_key {
                    if Some(name.as_str()) != hash_header {
                        head.hash = http::request::header_hash(raw, name);
                    }
                }
                let access = env
                    .access_log()
                    .map(|_| Box::new(RequestInfo::from_head(raw)));
                conn.client_in.advance(head.head_len);
                self.phase =
                    Phase::Exchange(Box::new(Exchange::new(head, pool, access, conn, env)));
            }
            Err(e) => {
                log::debug!("client={} refused request: {e}", conn.addr);
                conn.upstream_out.clear();
                let info = RequestInfo::from_head(&data[..end]);
                self.refuse(Fault::Refused(e), Some(info), env);
            }
        }
        Progress::Moved
    }

    fn read_client(&mut self, env: &mut Env) -> Progress {
        let conn = &mut self.conn;
        if conn.peer.is_eof() || !(conn.edges.readable || conn.has_pending_input()) {
            return Progress::Idle;
        }
        // A tunnel moves bulk bytes: it reads the client in pieces as large as the
        // upstream's (a 16 KiB piece costs a read and a write per 16 KiB, 4x the syscalls).
        if matches!(self.phase, Phase::Tunnel(_)) {
            conn.client_in.ensure(&mut env.big_bufs);
        } else {
            conn.client_in.ensure(&mut env.bufs);
        }
        if self.phase.is_closing() {
            conn.client_in.clear();
        } else if conn.client_in.tail_room() == 0 {
            // Head scan offsets are relative to the first pending byte: compaction keeps them.
            conn.client_in.compact();
            if conn.client_in.tail_room() == 0 {
                return Progress::Idle; // backpressure: the client waits until we consume
            }
        }
        let io = if matches!(self.phase, Phase::Proxy { .. }) {
            conn.read_raw()
        } else {
            conn.read()
        };
        if let Some(ok) = conn.take_handshake() {
            env.stats.record_handshake(ok);
        }
        match io {
            Io::Progress(n) => {
                conn.last_client_io = env.now;
                env.stats.client_in += n as u64;
                if let Phase::Flushing { discarded, .. } | Phase::Lingering { discarded, .. } =
                    &mut self.phase
                {
                    *discarded += n;
                    conn.client_in.clear();
                }
                Progress::Moved
            }
            Io::WouldBlock => Progress::Idle,
            Io::Closed => Progress::Moved,
            Io::Failed(e) => {
                log::debug!("client={} read failed: {e}", conn.addr);
                self.client_gone(env);
                Progress::Moved
            }
        }
    }

    fn write_client(&mut self, env: &mut Env) -> Progress {
        let conn = &mut self.conn;
        if !conn.edges.writable || conn.peer == Peer::Broken {
            return Progress::Idle;
        }
        let io = if !conn.client_out.is_empty() {
            conn.write(matches!(self.phase, Phase::Flushing { .. }))
        } else if conn.wants_write() {
            match conn.flush() {
                // Transport bytes only (a handshake, an alert): no response bytes moved.
                Io::Progress(_) => return Progress::Moved,
                io => io,
            }
        } else {
            return Progress::Idle;
        };
        match io {
            Io::Progress(n) => {
                conn.last_client_io = env.now;
                env.stats.client_out += n as u64;
                Progress::Moved
            }
            Io::WouldBlock => Progress::Idle,
            Io::Closed | Io::Failed(_) => {
                log::debug!("client={} went away mid-response", conn.addr);
                self.client_gone(env);
                Progress::Moved
            }
        }
    }

    /// The client socket failed: abandon whatever is in progress and finish.
    fn client_gone(&mut self, env: &mut Env) {
        match &mut self.phase {
            Phase::Exchange(x) => x.abandon(Fault::ClientClosed, &mut self.conn, env),
            Phase::Tunnel(t) => t.finish("client_closed", &self.conn, env),
            _ => {}
        }
        self.phase = Phase::Done;
    }

    /// After a drive: return idle buffers to the pool and compute the deadline.
    fn settle(&mut self, env: &mut Env) {
        let conn = &mut self.conn;
        self.deadline = match &self.phase {
            Phase::Fresh { .. } | Phase::Idle { .. } | Phase::Head { .. }
                if !conn.client_out.is_empty() =>
            {
                conn.last_client_io + env.config().timeouts.client_io
            }
            Phase::Proxy { deadline }
            | Phase::Fresh { deadline }
            | Phase::Idle { deadline }
            | Phase::Head { deadline, .. } => *deadline,
            Phase::Exchange(x) => x.deadline(conn, env),
            Phase::Tunnel(t) => t.deadline(conn, env),
            Phase::Flushing { deadline, .. } | Phase::Lingering { deadline, .. } => *deadline,
            Phase::Done => env.now,
        };
        if self.is_idle() {
            self.conn.release_buffers(env);
        } else if matches!(self.phase, Phase::Tunnel(_)) {
            // A quiet tunnel holds no buffer storage: what it carried must not decide
            // what thousands of idle WebSockets cost. Empty queues go back to the pools
            // and are taken again when bytes move.
            self.conn.release_client_in(env);
            self.conn.client_out.release(&mut env.big_bufs);
        }
    }
}

/// 414 when even the request line does not fit, 431 otherwise.
fn too_large(data: &[u8], head_bytes: usize) -> RequestError {
    let line_end = data[..data.len().min(head_bytes)]
        .iter()
        .position(|&b| b == b'\n');
    if line_end.is_none() {
        RequestError::UriTooLong
    } else {
        RequestError::HeadersTooLarge
    }
}

#[cfg(test)]
mod size {
    /// An idle keep-alive connection costs about its session (issue 14: at most 0.5 KiB
    /// per idle connection, measured by `benches/compare.sh`): the exchange and the tunnel
    /// are boxed so a session between requests stays this small.
    #[test]
    fn an_idle_session_stays_small() {
        let session = std::mem::size_of::<super::Session>();
        assert!(session <= 384, "Session is {session} bytes");
    }
}
