//! An Exchange is one request and its response inside a session: pick a backend, get an
//! upstream connection (pooled or fresh), stream the request out and the response back,
//! retry what the policy allows, and leave both connections in a clean state.
//!
//! Its state machine is [`Attempt`]: one attempt is one connection to one backend, and a
//! fresh attempt is one assignment. What survives across attempts (the backend held,
//! the backends tried, the retry counts) is [`Tries`]; the request body's relay state,
//! which does not depend on the attempt, is [`RequestBody`].
//!
//! ```text
//!            +----------------------- retry (policy) ----------------------+
//!            v                                                             |
//!   Pick --> Connecting --> Sending --> Awaiting --> Relaying --> Ended    |
//!    |  \__ pooled ________/   \___ final head early ___/                  |
//!    +-> Reconnect (pooled connection failed: fresh connection)            |
//!    +-> BackOff (connect retry delay) --> Connecting (a fresh connection)|
//!   any failure before a response head -> policy ---------------------------+
//! ```
//!
//! The phases live in `connect.rs` (picking, connecting, retrying) and `relay.rs`
//! (moving bytes both ways); this file holds the states, timeouts and the ending.

mod connect;
mod relay;

use std::time::{Instant, SystemTime};

use super::{Conn, Env, Progress};
use crate::access::{self, RequestInfo};
use crate::bounds::MAX_ATTEMPTS;
use crate::fault::Fault;
use crate::http::body::{Decoder, Encoder};
use crate::http::request::{Method, RequestHead};
use crate::http::response::ResponseHead;
use crate::http::scan::ResponseScan;
use crate::retry::Attempts;
use crate::snapshot::Lease;
use crate::upstream::UpstreamId;

/// Most interim (1xx) responses relayed for one request.
const MAX_INTERIM: u32 = 16;

/// What a step of the exchange means for the session.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// Still running.
    Running(Progress),
    /// The whole response (or lbd's answer) is queued in `client_out`; then the client
    /// connection goes on as `After` says.
    Finished(After),
    /// The upstream answered `101 Switching Protocols` (relayed into `client_out`): the
    /// session turns the connection into a tunnel ([`Exchange::into_tunnel`]).
    Upgraded,
    /// The exchange ended without a complete response (cut after it began, or the
    /// client went away): the session closes the client connection now, so the client
    /// sees the truncation. Already recorded.
    Aborted,
}

/// What a tunnel takes over from the exchange that switched protocols.
#[derive(Debug)]
pub struct TunnelStart {
    /// The upstream connection (busy for this session, never pooled again).
    pub up: UpstreamId,
    /// The backend's in-flight slot, held for the tunnel's life.
    pub lease: Lease,
    /// The request's logged fields, when the access log is on.
    pub access: Option<Box<RequestInfo>>,
    /// Attempts retried before the switch.
    pub retries: u32,
    /// When the request head arrived.
    pub started: Instant,
    /// When the 101 arrived.
    pub opened: Instant,
}

/// What becomes of the client connection once an exchange's answer is queued.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum After {
    /// It stays open for another request.
    KeepAlive,
    /// It closes once the answer is out: everything the client sent was read, so a plain
    /// close (FIN) loses nothing.
    Close,
    /// It closes after the answer with a lingering close (spec §7.7): the write side is
    /// shut and unread input drained briefly, so the client reads the answer, not a reset.
    Linger,
}

/// Where the current attempt is.
#[derive(Debug)]
enum Attempt {
    /// Needs a connection: pick a backend unless one is held, then take a pooled
    /// connection to it or open a new one.
    Pick,
    /// A pooled connection failed before any response: open a fresh one to the held
    /// backend.
    Reconnect,
    /// A connect failed: connect to the held backend again at `until`.
    BackOff {
        /// End of the retry delay.
        until: Instant,
    },
    /// A connect is in progress.
    Connecting {
        /// The connection.
        up: UpstreamId,
        /// `timeouts.connect` after it began.
        deadline: Instant,
    },
    /// The request is going out; no final response head yet (1xx heads may pass).
    Sending {
        /// The connection.
        up: UpstreamId,
        /// What has arrived of the response head.
        head: HeadWait,
    },
    /// The whole request is out; waiting for the final response head.
    Awaiting {
        /// The connection.
        up: UpstreamId,
        /// What has arrived of the response head.
        head: HeadWait,
    },
    /// The final response head is in; its body is relayed.
    Relaying {
        /// The connection.
        up: UpstreamId,
        /// The response and its framing.
        relay: Relay,
        /// What became of the request's remaining bytes.
        upload: Upload,
    },
    /// The upstream switched protocols (`101`): the connection is the session's tunnel's.
    Switched {
        /// The connection.
        up: UpstreamId,
    },
    /// Over: answered, finished or abandoned, and recorded.
    Ended,
}

/// Progress of a response head on one attempt.
#[derive(Debug, Clone, Copy, Default)]
struct HeadWait {
    /// The check of the head's bytes in `upstream_in` so far, resumed on each read.
    scan: ResponseScan,
    /// Response bytes received on this attempt (interim heads included).
    received: usize,
}

/// The response being relayed.
#[derive(Debug, Clone, Copy)]
struct Relay {
    head: ResponseHead,
    dec: Decoder,
    enc: Encoder,
}

/// The request's fate once the response began (an upstream may answer early).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Upload {
    /// Still going out.
    Sending,
    /// All of it was written.
    Sent,
    /// The upstream stopped reading it; the rest is dropped and the client connection
    /// closes after the response.
    Abandoned,
}

/// The request body's relay from `client_in` to `upstream_out`, across attempts.
#[derive(Debug)]
struct RequestBody {
    dec: Decoder,
    enc: Encoder,
    /// Payload bytes read from the client (checked against `limits.body_bytes`).
    read: u64,
    /// `upstream_out` still holds the whole request from offset 0 (nothing compacted
    /// away), so it can be sent again.
    replayable: bool,
}

/// What survives from one attempt to the next.
///
/// Invariant: `lease` is `Some` exactly while the exchange holds an in-flight slot on a
/// backend; `tried[tried_from..attempts.backends]` are indexes in snapshot
/// `tried_generation`, and so is `pool`.
#[derive(Debug)]
struct Tries {
    lease: Option<Lease>,
    tried: [usize; MAX_ATTEMPTS],
    tried_from: usize,
    tried_generation: u64,
    /// The pool the request was routed to (spec §12); retries stay within it.
    pool: usize,
    /// FNV-1a of the pool's name, to find it again after a reload renumbered the pools.
    pool_key: u64,
    attempts: Attempts,
    /// Attempts retried.
    retries: u32,
    /// Interim (1xx) heads relayed, all attempts.
    interim: u32,
}

/// One request/response.
#[derive(Debug)]
pub struct Exchange {
    req: RequestHead,
    body: RequestBody,
    tries: Tries,
    attempt: Attempt,
    /// Request bytes handed to the kernel on the current attempt.
    sent: usize,
    /// Last time bytes moved on the current attempt's connection (or it began).
    upstream_io: Instant,
    /// Response payload bytes relayed.
    resp_bytes: u64,
    /// Logged request fields, when the access log is on.
    access: Option<Box<RequestInfo>>,
    started: Instant,
}

impl Exchange {
    /// Starts an exchange for a parsed head; `conn.upstream_out` holds lbd's request head.
    pub fn new(
        req: RequestHead,
        pool: usize,
        access: Option<Box<RequestInfo>>,
        conn: &mut Conn,
        env: &mut Env,
    ) -> Exchange {
        let pool_key = env.snapshot().pools[pool].key;
        conn.upstream_in.ensure(&mut env.big_bufs);
        conn.upstream_in.clear();
        conn.client_out.ensure(&mut env.big_bufs);
        Exchange {
            req,
            body: RequestBody {
                dec: Decoder::bounded(req.framing, env.config().limits.body_bytes),
                enc: Encoder::new(req.framing),
                read: 0,
                replayable: true,
            },
            tries: Tries {
                lease: None,
                tried: [usize::MAX; MAX_ATTEMPTS],
                tried_from: 0,
                tried_generation: env.snapshot().generation,
                pool,
                pool_key,
                attempts: Attempts::default(),
                retries: 0,
                interim: 0,
            },
            attempt: Attempt::Pick,
            sent: 0,
            upstream_io: env.now,
            resp_bytes: 0,
            access,
            started: env.now,
        }
    }

    /// One pass over every direction: the request body in, a connection if there is
    /// none, the request out, the response in and on to the client.
    pub fn step(&mut self, sid: usize, conn: &mut Conn, env: &mut Env) -> Outcome {
        match self.advance(sid, conn, env) {
            std::ops::ControlFlow::Continue(progress) => Outcome::Running(progress),
            std::ops::ControlFlow::Break(outcome) => outcome,
        }
    }

    fn advance(&mut self, sid: usize, conn: &mut Conn, env: &mut Env) -> Flow {
        let mut progress = self.pump_request_body(conn, env)?;
        progress = progress | self.connect(sid, conn, env)?;
        if self.upstream().is_none() {
            return Flow::Continue(progress);
        }
        progress = progress | self.write_upstream(conn, env)?;
        progress = progress | self.read_upstream(conn, env);
        progress = progress | self.pump_response(conn, env)?;
        Flow::Continue(progress)
    }

    /// The connection of the current attempt, once it has one.
    fn upstream(&self) -> Option<UpstreamId> {
        match self.attempt {
            Attempt::Connecting { up, .. }
            | Attempt::Sending { up, .. }
            | Attempt::Awaiting { up, .. }
            | Attempt::Relaying { up, .. }
            | Attempt::Switched { up } => Some(up),
            Attempt::Pick | Attempt::Reconnect | Attempt::BackOff { .. } | Attempt::Ended => None,
        }
    }

    /// The response head, once the final one arrived.
    fn response(&self) -> Option<&ResponseHead> {
        match &self.attempt {
            Attempt::Relaying { relay, .. } => Some(&relay.head),
            _ => None,
        }
    }

    /// Handles the session deadline passing during this exchange.
    pub fn expire(&mut self, conn: &mut Conn, env: &mut Env) -> Outcome {
        let now = env.now;
        let t = env.config().timeouts;
        match self.attempt {
            // The delay is over: the next step connects.
            Attempt::BackOff { .. } => return Outcome::Running(Progress::Moved),
            Attempt::Connecting { deadline, .. } => {
                if now >= deadline {
                    log::debug!("backend={} connect timed out", self.backend_name(env));
                    return self.fail(crate::retry::Failure::Connect, conn, env);
                }
                return Outcome::Running(Progress::Idle);
            }
            _ => {}
        }
        if self.is_waiting_on_upstream(conn) && now >= self.upstream_io + t.upstream_response {
            log::debug!("backend={} response timed out", self.backend_name(env));
            return self.end(Fault::UpstreamTimeout, conn, env);
        }
        if self.is_waiting_on_client(conn) && now >= conn.last_client_io + t.client_io {
            log::debug!("client={} stalled mid-exchange", conn.addr);
            return self.end(Fault::ClientStalled, conn, env);
        }
        Outcome::Running(Progress::Idle)
    }

    /// The earliest instant at which [`Exchange::expire`] has something to do.
    pub fn deadline(&self, conn: &Conn, env: &Env) -> Instant {
        let t = env.config().timeouts;
        match self.attempt {
            Attempt::BackOff { until } => return until,
            Attempt::Connecting { deadline, .. } => return deadline,
            _ => {}
        }
        let mut deadline = env.now + t.client_idle.max(t.upstream_response).max(t.client_io);
        if self.is_waiting_on_upstream(conn) {
            deadline = deadline.min(self.upstream_io + t.upstream_response);
        }
        if self.is_waiting_on_client(conn) {
            deadline = deadline.min(conn.last_client_io + t.client_io);
        }
        deadline
    }

    /// Hands the switched connection, the backend's lease and what the access log needs
    /// to a tunnel (after [`Outcome::Upgraded`]); the exchange is over.
    pub fn into_tunnel(mut self, env: &mut Env) -> TunnelStart {
        let Attempt::Switched { up } = self.attempt else {
            unreachable!("a tunnel follows a 101");
        };
        self.attempt = Attempt::Ended;
        TunnelStart {
            up,
            lease: self
                .tries
                .lease
                .take()
                .expect("a switched exchange holds a backend"),
            access: self.access.take(),
            retries: self.tries.retries,
            started: self.started,
            opened: env.now,
        }
    }

    /// The client has sent the whole request (head and body).
    pub fn has_whole_request(&self) -> bool {
        self.body.dec.is_done()
    }

    /// The upstream owes bytes: it has request bytes to take, or (with the request out
    /// and the client keeping up) response bytes to send.
    fn is_waiting_on_upstream(&self, conn: &Conn) -> bool {
        let owes_response = match &self.attempt {
            Attempt::Awaiting { .. } => true,
            Attempt::Relaying { relay, upload, .. } => {
                *upload != Upload::Sending && !relay.dec.is_done()
            }
            _ => false,
        };
        (owes_response && !conn.is_blocked_on_client())
            || (self.upstream().is_some() && !conn.upstream_out.is_empty())
    }

    /// The client owes bytes: the rest of its body, or room for the response.
    fn is_waiting_on_client(&self, conn: &Conn) -> bool {
        conn.is_blocked_on_client() || !self.body.dec.is_done()
    }

    fn backend_name<'e>(&self, env: &'e Env) -> &'e str {
        self.tries
            .lease
            .as_ref()
            .map_or("-", |l| env.generations.backend(l).name.as_str())
    }

    /// Ends the exchange for `fault` (see [`Fault::answer`]): once a response has begun
    /// the client connection is cut; otherwise lbd answers, or closes without an answer.
    fn end(&mut self, fault: Fault, conn: &mut Conn, env: &mut Env) -> Outcome {
        self.release_upstream(false, env);
        let answer = fault.answer();
        let canned = match answer.canned {
            Some(canned) if self.response().is_none() && conn.peer != crate::net::Peer::Broken => {
                canned
            }
            _ => {
                // 499, as nginx logs it: the client closed before a response began.
                let status = self.response().map_or(499, |h| h.status);
                self.conclude(conn, env, status, answer.reason);
                return Outcome::Aborted;
            }
        };
        self.conclude(conn, env, canned.status(), answer.reason);
        let after = if answer.closes {
            After::Linger
        } else if self.req.keep_alive && self.body.dec.is_done() && !env.shutting_down {
            After::KeepAlive
        } else {
            self.closing(conn)
        };
        canned.write(
            &mut conn.client_out,
            after != After::KeepAlive,
            self.req.method == Method::Head,
        );
        Outcome::Finished(after)
    }

    /// How a client connection that does not stay open closes: plainly when all it sent
    /// was read, lingering otherwise.
    fn closing(&self, conn: &Conn) -> After {
        if self.body.dec.is_done() && conn.client_in.is_empty() {
            After::Close
        } else {
            After::Linger
        }
    }

    /// Lets go of everything without answering: the session is closing the client
    /// connection (`fault` says why: the client went away, or shutdown).
    pub fn abandon(&mut self, fault: Fault, conn: &mut Conn, env: &mut Env) {
        if matches!(self.attempt, Attempt::Ended) {
            return;
        }
        self.release_upstream(false, env);
        let status = self.response().map_or(499, |h| h.status);
        self.conclude(conn, env, status, fault.answer().reason);
    }

    /// Gives the current attempt's connection back: to the pool when `reusable`.
    fn release_upstream(&mut self, reusable: bool, env: &mut Env) {
        if let Some(up) = self.upstream() {
            env.upstreams.release(up, reusable, env.now);
        }
    }

    /// Gives the backend's in-flight slot back.
    fn release_lease(&mut self, env: &mut Env) {
        if let Some(lease) = self.tries.lease.take() {
            env.generations.release(lease);
        }
    }

    /// Records the exchange's end (metrics, access log), frees its backend slot, and
    /// ends the state machine. Runs once: every ending goes through here.
    fn conclude(&mut self, conn: &Conn, env: &mut Env, status: u16, reason: &'static str) {
        let duration = env.now.saturating_duration_since(self.started);
        let upstream_status = self.response().map(|h| h.status);
        let backend = self
            .tries
            .lease
            .as_ref()
            .map(|l| env.generations.backend(l));
        match backend {
            Some(b) => b.responses.record(status, duration),
            None => {
                let snapshot = env.snapshot();
                match snapshot.pools.iter().find(|p| p.key == self.tries.pool_key) {
                    Some(pool) => pool.answered.record(status, duration),
                    None => env.shared.unrouted.record(status, duration),
                }
            }
        }
        if let (Some(log), Some(request)) = (env.access_log(), &self.access) {
            let (tls, sni) = conn.tls_info();
            let entry = access::Entry {
                client: conn.addr.ip(),
                request,
                status,
                body_bytes: self.resp_bytes,
                upstream: backend.map(|b| b.address),
                upstream_status,
                duration: duration.as_secs_f64(),
                tls,
                sni,
                tunnel: None,
                retries: self.tries.retries,
                reason,
            };
            let _ = log.try_send(access::format(&entry, SystemTime::now()));
        }
        self.release_lease(env);
        self.attempt = Attempt::Ended;
    }
}

/// A phase handler's result: go on (having made progress or not), or stop with the
/// exchange's outcome.
type Flow = std::ops::ControlFlow<Outcome, Progress>;

#[cfg(test)]
mod tests;
