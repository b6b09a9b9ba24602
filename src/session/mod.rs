//! A Session is one accepted client connection across its keep-alive requests: it reads
//! heads, runs one [`Exchange`] at a time (pipelined requests wait in the input buffer,
//! answered in order), and closes cleanly.
//!
//! Every readiness event, timer or retry ends in [`Session::drive`], a bounded progress
//! loop: read what can be read, let the phase move bytes, write what can be written, and
//! repeat while anything moved.

mod exchange;

use std::net::{Shutdown, SocketAddr};
use std::time::{Duration, Instant};

use mio::net::TcpStream;

pub use exchange::Exchange;
use exchange::Outcome;

use crate::access::{self, RequestInfo};
use crate::buffer::Buffer;
use crate::http::{self, Canned, RequestError};
use crate::net::{self, Io};
use crate::worker::Env;

/// Progress rounds per drive before yielding to other sessions (fairness); the worker
/// drives a session that hit the bound again on its next turn.
const ROUNDS: usize = 32;
/// After an error response: how long the unread request is drained before closing.
const LINGER: Duration = Duration::from_secs(2);
/// ... and how many bytes of it at most.
const LINGER_BYTES: usize = 1 << 20;

/// The client side of a session: socket, edges, and the four byte queues.
///
/// `client_in` holds bytes from the client (heads, bodies, pipelined requests);
/// `upstream_out` the request as lbd re-serialised it; `upstream_in` bytes from the
/// upstream; `client_out` the response as lbd re-serialised it.
#[derive(Debug)]
pub struct Conn {
    /// The client socket.
    pub client: TcpStream,
    /// The client's address.
    pub peer: SocketAddr,
    /// The local address it connected to.
    pub local: SocketAddr,
    /// A readable edge not yet drained.
    pub readable: bool,
    /// The kernel reported the peer's FIN (or an error): a short read no longer means
    /// "drained", so reading continues until it returns 0.
    pub read_closed: bool,
    /// A writable edge not yet used up.
    pub writable: bool,
    /// The client sent FIN (or its socket failed): nothing more will arrive.
    pub eof: bool,
    /// The client socket failed: nothing can be sent either.
    pub broken: bool,
    /// Bytes from the client.
    pub client_in: Buffer,
    /// Bytes for the client.
    pub client_out: Buffer,
    /// Bytes for the upstream.
    pub upstream_out: Buffer,
    /// Bytes from the upstream.
    pub upstream_in: Buffer,
    /// Last time bytes moved to or from the client.
    pub last_client_io: Instant,
}

impl Conn {
    /// Drops pending bytes and returns all four buffers' storage to the pool.
    fn release_buffers(&mut self, env: &mut Env) {
        for b in [&mut self.client_in, &mut self.upstream_out] {
            b.clear();
            b.release(&mut env.bufs);
        }
        for b in [&mut self.upstream_in, &mut self.client_out] {
            b.clear();
            b.release(&mut env.big_bufs);
        }
    }
}

/// What a session is doing.
///
/// `Exchange` is large, but sessions live in a slab and boxing it would cost an
/// allocation per request.
#[derive(Debug)]
#[allow(clippy::large_enum_variant)]
enum Phase {
    /// Waiting for (the rest of) a request head.
    Head {
        /// When waiting ends: idle or header timeout.
        deadline: Instant,
        /// Part of a head has arrived (header timeout applies, not idle).
        started: bool,
        /// Bytes of `client_in` already searched for the end of the head.
        scanned: usize,
    },
    /// One request/response in progress.
    Exchange(Exchange),
    /// Flushing a final response, then draining unread input before closing.
    Closing {
        /// Hard end of the linger.
        deadline: Instant,
        /// The write side has been shut down.
        shut: bool,
        /// Bytes discarded so far.
        drained: usize,
    },
    /// Finished: the worker removes the session.
    Done,
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
    /// Requests started on this connection.
    requests: u64,
    /// The current deadline (see `Phase`).
    pub deadline: Instant,
    /// Earliest timer entry armed for this session.
    pub armed: Option<Instant>,
    /// Queued in the worker's ready list.
    pub scheduled: bool,
}

impl Session {
    /// A freshly accepted connection, waiting for its first head.
    pub fn new(client: TcpStream, peer: SocketAddr, local: SocketAddr, env: &Env) -> Session {
        let deadline = env.now + env.snapshot.config.timeouts.client_header;
        Session {
            conn: Conn {
                client,
                peer,
                local,
                readable: false,
                read_closed: false,
                writable: false,
                eof: false,
                broken: false,
                client_in: Buffer::default(),
                client_out: Buffer::default(),
                upstream_out: Buffer::default(),
                upstream_in: Buffer::default(),
                last_client_io: env.now,
            },
            phase: Phase::Head {
                deadline,
                started: false,
                scanned: 0,
            },
            requests: 0,
            deadline,
            armed: None,
            scheduled: false,
        }
    }

    /// The client socket, for (de)registration.
    pub fn client(&mut self) -> &mut TcpStream {
        &mut self.conn.client
    }

    /// Records readiness from a client event.
    pub fn client_ready(&mut self, readable: bool, writable: bool, read_closed: bool) {
        self.conn.readable |= readable;
        self.conn.read_closed |= read_closed;
        self.conn.writable |= writable;
    }

    /// True when idle between requests with nothing pending (closed first at shutdown).
    pub fn is_idle(&self) -> bool {
        matches!(self.phase, Phase::Head { started: false, .. })
            && self.conn.client_in.is_empty()
            && self.conn.client_out.is_empty()
    }

    /// Runs the progress loop. `sid` is this session's slab index.
    pub fn drive(&mut self, sid: usize, env: &mut Env) -> Drive {
        for _ in 0..ROUNDS {
            let mut progress = self.read_client(env);
            progress |= self.step(sid, env);
            progress |= self.write_client(env);
            if matches!(self.phase, Phase::Done) {
                return Drive::Finished;
            }
            if !progress {
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
            Phase::Head { started, .. } => {
                if *started && self.conn.client_out.is_empty() {
                    log::debug!("client={} header timeout", self.conn.peer);
                    self.record_refusal(Canned::RequestTimeout, None, env);
                    self.respond_and_close(Canned::RequestTimeout, env);
                } else {
                    log::debug!("client={} idle timeout", self.conn.peer);
                    self.phase = Phase::Done;
                }
            }
            Phase::Exchange(x) => {
                let outcome = x.expire(&mut self.conn, env);
                self.apply(outcome, env);
            }
            Phase::Closing { .. } => self.phase = Phase::Done,
            Phase::Done => {}
        }
        if matches!(self.phase, Phase::Done) {
            return Drive::Finished;
        }
        self.drive(sid, env)
    }

    /// Releases everything the session holds (upstream, backend slot, buffers).
    pub fn close(&mut self, env: &mut Env) {
        if let Phase::Exchange(x) = &mut self.phase {
            x.abandon(&mut self.conn, env, "closed");
        }
        self.phase = Phase::Done;
        self.conn.release_buffers(env);
    }

    /// Asks the session to finish: idle ones close now, others after their exchange.
    pub fn begin_shutdown(&mut self) {
        if self.is_idle() {
            self.phase = Phase::Done;
        }
    }

    fn step(&mut self, sid: usize, env: &mut Env) -> bool {
        match &mut self.phase {
            Phase::Head { .. } => self.step_head(env),
            Phase::Exchange(x) => {
                let outcome = x.step(sid, &mut self.conn, env);
                self.apply(outcome, env)
            }
            Phase::Closing {
                deadline,
                shut,
                drained,
            } => {
                if !self.conn.client_out.is_empty() && !self.conn.broken {
                    return false;
                }
                if !*shut {
                    *shut = true;
                    *deadline = (*deadline).min(env.now + LINGER);
                    let _ = self.conn.client.shutdown(Shutdown::Write);
                }
                if self.conn.eof || *drained > LINGER_BYTES {
                    self.phase = Phase::Done;
                    return true;
                }
                false
            }
            Phase::Done => false,
        }
    }

    /// Applies an exchange's outcome to the session's phase; returns progress.
    fn apply(&mut self, outcome: Outcome, env: &mut Env) -> bool {
        match outcome {
            Outcome::Continue(progress) => progress,
            Outcome::Finished { keep_alive } => {
                if keep_alive && !env.shutting_down && !self.conn.eof {
                    self.phase = Phase::Head {
                        deadline: env.now + env.snapshot.config.timeouts.client_idle,
                        started: false,
                        scanned: 0,
                    };
                } else {
                    self.linger(env);
                }
                true
            }
            Outcome::Abort => {
                if let Phase::Exchange(x) = &mut self.phase {
                    x.abandon(&mut self.conn, env, "upstream_error");
                }
                self.phase = Phase::Done;
                true
            }
        }
    }

    /// Flushes what is queued (within `client_io`), then shuts the write side and drains
    /// input for at most `LINGER`, so the client reads the last response, not a reset.
    fn linger(&mut self, env: &Env) {
        let flush = env.snapshot.config.timeouts.client_io;
        self.phase = Phase::Closing {
            deadline: env.now + flush,
            shut: false,
            drained: 0,
        };
    }

    /// Counts (and logs) an answer lbd made before any exchange began.
    fn record_refusal(&self, canned: Canned, info: Option<RequestInfo>, env: &mut Env) {
        env.shared.unrouted.record(canned.status(), Duration::ZERO);
        if let Some(log) = env.access_log() {
            let request = info.unwrap_or_default();
            let entry = access::Entry {
                client: self.conn.peer.ip(),
                request: &request,
                status: canned.status(),
                body_bytes: 0,
                upstream: None,
                upstream_status: None,
                duration: 0.0,
                retries: 0,
                reason: exchange::reason_for(canned),
            };
            let _ = log.try_send(access::format(&entry, std::time::SystemTime::now()));
        }
    }

    /// Queues a canned response and closes after it (spec §7.7).
    fn respond_and_close(&mut self, canned: Canned, env: &mut Env) {
        self.conn.client_out.ensure(&mut env.big_bufs);
        canned.write(&mut self.conn.client_out, true, false);
        self.linger(env);
    }

    fn step_head(&mut self, env: &mut Env) -> bool {
        let Phase::Head {
            deadline,
            started,
            scanned,
        } = &mut self.phase
        else {
            return false;
        };
        let conn = &mut self.conn;
        if !conn.client_out.is_empty() {
            // The previous response is still leaving; pipelined heads wait their turn.
            return false;
        }
        // RFC 9112 §2.2: ignore empty lines before a request line.
        let blank = conn
            .client_in
            .data()
            .iter()
            .take_while(|&&b| b == b'\r' || b == b'\n')
            .count();
        if blank > 0 && *scanned == 0 {
            conn.client_in.advance(blank);
        }
        if conn.client_in.is_empty() {
            conn.client_in.reset_if_empty();
            if conn.eof || env.shutting_down {
                self.phase = Phase::Done;
                return true;
            }
            return false;
        }
        if !*started {
            *started = true;
            *deadline = env.now + env.snapshot.config.timeouts.client_header;
        }
        let limits = env.snapshot.config.limits;
        let data = conn.client_in.data();
        let Some(end) = http::find_head_end(data, *scanned) else {
            *scanned = data.len();
            if data.len() >= limits.head_bytes || conn.client_in.room() == 0 {
                let canned = too_large(data, limits.head_bytes);
                self.record_refusal(canned, None, env);
                self.respond_and_close(canned, env);
                return true;
            }
            if conn.eof {
                log::debug!("client={} closed mid-head", conn.peer);
                self.phase = Phase::Done;
                return true;
            }
            return false;
        };
        if end > limits.head_bytes {
            let canned = too_large(data, limits.head_bytes);
            self.record_refusal(canned, None, env);
            self.respond_and_close(canned, env);
            return true;
        }
        conn.upstream_out.ensure(&mut env.bufs);
        conn.upstream_out.clear();
        let hash_header = match &env.snapshot.config.balancer.hash_key {
            crate::config::HashKey::Header(name) => Some(name.as_str()),
            crate::config::HashKey::Ip => None,
        };
        let ctx = http::request::RequestContext {
            client: conn.peer.ip(),
            local: conn.local,
            max_headers: limits.headers,
            max_body: limits.body_bytes,
            hash_header,
        };
        match http::request::parse(&data[..end], &ctx, &mut conn.upstream_out) {
            Ok(head) => {
                let access = env
                    .access_log()
                    .map(|_| Box::new(RequestInfo::from_head(&data[..end])));
                conn.client_in.advance(head.head_len);
                self.requests += 1;
                self.phase = Phase::Exchange(Exchange::new(head, access, conn, env));
            }
            Err(e) => {
                log::debug!("client={} refused request: {e}", conn.peer);
                conn.upstream_out.clear();
                let info = RequestInfo::from_head(&data[..end]);
                let canned = canned_for(e);
                self.record_refusal(canned, Some(info), env);
                self.respond_and_close(canned, env);
            }
        }
        true
    }

    fn read_client(&mut self, env: &mut Env) -> bool {
        let conn = &mut self.conn;
        if !conn.readable || conn.eof {
            return false;
        }
        conn.client_in.ensure(&mut env.bufs);
        let closing = matches!(self.phase, Phase::Closing { .. });
        if closing {
            conn.client_in.clear();
        } else if conn.client_in.tail_room() == 0 {
            // Head scan offsets are relative to the first pending byte: compaction keeps them.
            conn.client_in.compact();
            if conn.client_in.tail_room() == 0 {
                return false; // backpressure: the client waits until we consume
            }
        }
        let spare = conn.client_in.spare();
        let room = spare.len();
        match net::read(&mut conn.client, spare) {
            Io::Progress(n) => {
                conn.client_in.commit(n);
                conn.readable = n == room || conn.read_closed;
                conn.last_client_io = env.now;
                env.stats.client_in += n as u64;
                if let Phase::Closing { drained, .. } = &mut self.phase {
                    *drained += n;
                    conn.client_in.clear();
                }
                true
            }
            Io::WouldBlock => {
                conn.readable = false;
                false
            }
            Io::Closed => {
                conn.eof = true;
                conn.readable = false;
                true
            }
            Io::Failed(e) => {
                log::debug!("client={} read failed: {e}", conn.peer);
                conn.eof = true;
                conn.broken = true;
                conn.readable = false;
                if let Phase::Exchange(x) = &mut self.phase {
                    x.abandon(conn, env, "client_closed");
                }
                self.phase = Phase::Done;
                true
            }
        }
    }

    fn write_client(&mut self, env: &mut Env) -> bool {
        let conn = &mut self.conn;
        if !conn.writable || conn.client_out.is_empty() || conn.broken {
            return false;
        }
        let pending = conn.client_out.len();
        match net::write(&mut conn.client, conn.client_out.data()) {
            Io::Progress(n) => {
                conn.client_out.advance(n);
                conn.client_out.reset_if_empty();
                conn.writable = n == pending;
                conn.last_client_io = env.now;
                env.stats.client_out += n as u64;
                true
            }
            Io::WouldBlock => {
                conn.writable = false;
                false
            }
            Io::Closed | Io::Failed(_) => {
                log::debug!("client={} went away mid-response", conn.peer);
                conn.broken = true;
                conn.eof = true;
                conn.client_out.clear();
                match &mut self.phase {
                    Phase::Exchange(x) => {
                        x.abandon(conn, env, "client_closed");
                        self.phase = Phase::Done;
                    }
                    _ => self.phase = Phase::Done,
                }
                true
            }
        }
    }

    /// After a drive: return idle buffers to the pool and compute the deadline.
    fn settle(&mut self, env: &mut Env) {
        let conn = &mut self.conn;
        self.deadline = match &self.phase {
            Phase::Head { .. } if !conn.client_out.is_empty() => {
                conn.last_client_io + env.snapshot.config.timeouts.client_io
            }
            Phase::Head { deadline, .. } => *deadline,
            Phase::Exchange(x) => x.deadline(conn, env),
            Phase::Closing { deadline, .. } => *deadline,
            Phase::Done => env.now,
        };
        if self.is_idle() {
            self.conn.release_buffers(env);
        }
    }
}

/// 414 when even the request line does not fit, 431 otherwise.
fn too_large(data: &[u8], head_bytes: usize) -> Canned {
    let line_end = data[..data.len().min(head_bytes)]
        .iter()
        .position(|&b| b == b'\n');
    if line_end.is_none() {
        Canned::UriTooLong
    } else {
        Canned::HeadersTooLarge
    }
}

/// The response lbd sends for a refused head.
fn canned_for(e: RequestError) -> Canned {
    match e {
        RequestError::Malformed(_) => Canned::BadRequest,
        RequestError::BodyTooLarge => Canned::ContentTooLarge,
        RequestError::UriTooLong => Canned::UriTooLong,
        RequestError::HeadersTooLarge => Canned::HeadersTooLarge,
        RequestError::NotImplemented(_) => Canned::NotImplemented,
    }
}
