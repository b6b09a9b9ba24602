//! An Exchange is one request and its response inside a session: pick a backend, get an
//! upstream connection (pooled or fresh), stream the request out and the response back,
//! retry what the policy allows, and leave both connections in a clean state.

use std::sync::atomic::Ordering;
use std::time::{Instant, SystemTime};

use super::Conn;
use crate::access::{self, RequestInfo};
use crate::balance::PickContext;
use crate::bounds::MAX_ATTEMPTS;
use crate::http::body::{self, Decoder, Encoder};
use crate::http::request::{Method, RequestHead};
use crate::http::response::{self, ResponseContext, ResponseHead};
use crate::http::{find_head_end, Canned};
use crate::net::{self, Io};
use crate::retry::{self, Attempts, Failure, Next};
use crate::upstream::{ConnectStatus, Link};
use crate::worker::Env;

/// Most interim (1xx) responses relayed for one request.
const MAX_INTERIM: u32 = 16;

/// What a step of the exchange means for the session.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// Still running; `true` when bytes or state moved.
    Continue(bool),
    /// The whole response is queued in `client_out`; the session may read another head.
    Finished {
        /// The client connection stays open.
        keep_alive: bool,
    },
    /// The response was cut after it started: close the client connection now, so the
    /// client sees the truncation.
    Abort,
}

/// One request/response.
///
/// Invariants: `backend` is `Some` exactly while this exchange holds one in-flight slot
/// on that backend; `upstream` is `Some` only with `backend`; `replayable` means
/// `upstream_out` still holds the whole request from offset 0 (nothing compacted away).
#[derive(Debug)]
pub struct Exchange {
    req: RequestHead,
    req_dec: Decoder,
    req_enc: Encoder,
    /// Request payload bytes read from the client (checked against `limits.body_bytes`).
    body_read: u64,
    replayable: bool,
    /// The backend holding this exchange's in-flight slot: (snapshot generation, index).
    backend: Option<(u64, usize)>,
    upstream: Option<usize>,
    tried: [usize; MAX_ATTEMPTS],
    /// `tried[tried_from..]` are indexes in snapshot `tried_generation`.
    tried_from: usize,
    tried_generation: u64,
    attempts: Attempts,
    /// The next connection must be fresh (a pooled one just failed).
    fresh_next: bool,
    /// Connect again no earlier than this (a connect retry's delay).
    retry_at: Option<Instant>,
    connect_deadline: Instant,
    /// Request bytes handed to the kernel on the current attempt.
    sent: usize,
    /// The whole request has been written to the current upstream.
    request_sent: bool,
    /// Writing the rest of the request failed after the response began.
    request_abandoned: bool,
    last_upstream_io: Instant,
    upstream_eof: bool,
    upstream_broken: bool,
    /// Any byte arrived from the current upstream.
    got_response_bytes: bool,
    resp_scanned: usize,
    /// Interim (1xx) heads relayed so far.
    interim: u32,
    resp: Option<ResponseHead>,
    resp_dec: Decoder,
    resp_enc: Encoder,
    /// Response payload bytes relayed.
    resp_bytes: u64,
    /// Attempts retried.
    retries: u32,
    /// Metrics and access log are written (once).
    concluded: bool,
    /// Logged request fields, when the access log is on.
    access: Option<Box<RequestInfo>>,
    started: Instant,
}

impl Exchange {
    /// Starts an exchange for a parsed head; `conn.upstream_out` holds lbd's request head.
    pub fn new(
        req: RequestHead,
        access: Option<Box<RequestInfo>>,
        conn: &mut Conn,
        env: &mut Env,
    ) -> Exchange {
        conn.upstream_in.ensure(&mut env.big_bufs);
        conn.upstream_in.clear();
        conn.client_out.ensure(&mut env.big_bufs);
        Exchange {
            req,
            req_dec: Decoder::new(req.framing),
            req_enc: Encoder::new(req.framing),
            body_read: 0,
            replayable: true,
            backend: None,
            upstream: None,
            tried: [usize::MAX; MAX_ATTEMPTS],
            tried_from: 0,
            tried_generation: env.generation,
            attempts: Attempts::default(),
            fresh_next: false,
            retry_at: None,
            connect_deadline: env.now,
            sent: 0,
            request_sent: false,
            request_abandoned: false,
            last_upstream_io: env.now,
            upstream_eof: false,
            upstream_broken: false,
            got_response_bytes: false,
            resp_scanned: 0,
            interim: 0,
            resp: None,
            resp_dec: Decoder::Done,
            resp_enc: Encoder::Identity,
            resp_bytes: 0,
            retries: 0,
            concluded: false,
            access,
            started: env.now,
        }
    }

    /// One pass over every direction.
    pub fn step(&mut self, sid: usize, conn: &mut Conn, env: &mut Env) -> Outcome {
        let mut progress = false;
        if let Some(outcome) = self.pump_request_body(conn, env, &mut progress) {
            return outcome;
        }
        if self.upstream.is_none() {
            if self.retry_at.is_some_and(|at| env.now < at) {
                return Outcome::Continue(progress);
            }
            self.retry_at = None;
            match self.attach(sid, conn, env) {
                Outcome::Continue(p) => progress |= p,
                other => return other,
            }
            if self.upstream.is_none() {
                return Outcome::Continue(true);
            }
        }
        let uid = self.upstream.expect("attached");
        if env.upstreams[uid].link == Link::Connecting {
            match env.upstreams[uid].poll_connect() {
                ConnectStatus::Pending => return Outcome::Continue(progress),
                ConnectStatus::Connected => {
                    progress = true;
                    self.last_upstream_io = env.now;
                }
                ConnectStatus::Failed(e) => {
                    log::debug!("backend={} connect failed: {e}", self.backend_name(env));
                    return self.fail(Failure::Connect, conn, env);
                }
            }
        }
        if let Some(outcome) = self.write_upstream(uid, conn, env, &mut progress) {
            return outcome;
        }
        self.read_upstream(uid, conn, env, &mut progress);
        self.pump_response(conn, env, &mut progress)
    }

    /// Handles the session deadline passing during this exchange.
    pub fn expire(&mut self, conn: &mut Conn, env: &mut Env) -> Outcome {
        let now = env.now;
        let t = env.snapshot.config.timeouts;
        if self.retry_at.is_some() {
            return Outcome::Continue(true); // the delay is over: step() connects
        }
        if let Some(uid) = self.upstream {
            if env.upstreams[uid].link == Link::Connecting {
                if now >= self.connect_deadline {
                    log::debug!("backend={} connect timed out", self.backend_name(env));
                    return self.fail(Failure::Connect, conn, env);
                }
                return Outcome::Continue(false);
            }
            if self.is_waiting_on_upstream(conn)
                && now >= self.last_upstream_io + t.upstream_response
            {
                log::debug!("backend={} response timed out", self.backend_name(env));
                return if self.resp.is_none() {
                    self.give_up(Canned::GatewayTimeout, conn, env)
                } else {
                    Outcome::Abort
                };
            }
        }
        if self.is_waiting_on_client(conn) && now >= conn.last_client_io + t.client_io {
            log::debug!("client={} stalled mid-exchange", conn.peer);
            return if self.resp.is_none() && !conn.broken {
                self.release_upstream(false, env);
                self.conclude(conn, env, 408, "timeout");
                Canned::RequestTimeout.write(&mut conn.client_out, true, false);
                Outcome::Finished { keep_alive: false }
            } else {
                Outcome::Abort
            };
        }
        Outcome::Continue(false)
    }

    /// The earliest instant at which [`Exchange::expire`] has something to do.
    pub fn deadline(&self, conn: &Conn, env: &Env) -> Instant {
        let t = env.snapshot.config.timeouts;
        let far = env.now + t.client_idle.max(t.upstream_response).max(t.client_io);
        if let Some(at) = self.retry_at {
            return at;
        }
        let mut deadline = far;
        if let Some(uid) = self.upstream {
            if env.upstreams[uid].link == Link::Connecting {
                deadline = deadline.min(self.connect_deadline);
            } else if self.is_waiting_on_upstream(conn) {
                deadline = deadline.min(self.last_upstream_io + t.upstream_response);
            }
        }
        if self.is_waiting_on_client(conn) {
            deadline = deadline.min(conn.last_client_io + t.client_io);
        }
        deadline
    }

    /// Lets go of the upstream and backend slot without answering (the client is gone or
    /// the response was cut).
    pub fn abandon(&mut self, conn: &mut Conn, env: &mut Env, reason: &'static str) {
        self.release_upstream(false, env);
        // 499, as nginx logs it: the client closed before a response began.
        let status = self.resp.map_or(499, |h| h.status);
        self.conclude(conn, env, status, reason);
    }

    fn is_blocked_on_client(conn: &Conn) -> bool {
        !conn.client_out.is_empty() && !conn.writable
    }

    fn is_waiting_on_upstream(&self, conn: &Conn) -> bool {
        let response_pending = !self.resp_dec.is_done() || self.resp.is_none();
        (self.request_sent && response_pending && !Self::is_blocked_on_client(conn))
            || !conn.upstream_out.is_empty()
    }

    fn is_waiting_on_client(&self, conn: &Conn) -> bool {
        Self::is_blocked_on_client(conn) || !self.req_dec.is_done()
    }

    fn backend_name<'e>(&self, env: &'e Env) -> &'e str {
        self.backend
            .map_or("-", |(g, b)| env.backend(g, b).name.as_str())
    }

    /// Moves request body bytes from `client_in` to `upstream_out`.
    fn pump_request_body(
        &mut self,
        conn: &mut Conn,
        env: &mut Env,
        progress: &mut bool,
    ) -> Option<Outcome> {
        if self.req_dec.is_done() || self.request_abandoned {
            if self.request_abandoned && !self.req_dec.is_done() {
                // Nobody takes the rest of this body; it is dropped as it arrives and the
                // client connection closes after the response.
                let n = conn.client_in.len();
                conn.client_in.advance(n);
                conn.client_in.reset_if_empty();
            }
            return None;
        }
        if conn.upstream_out.tail_room() < conn.upstream_out.room() / 2
            && conn.upstream_out.start() > 0
        {
            // Moving bytes forfeits replay: the start of the request is gone.
            self.replayable = false;
            conn.upstream_out.compact();
        }
        let eof = conn.eof;
        let t = match body::transfer(
            &mut self.req_dec,
            &mut self.req_enc,
            conn.client_in.data(),
            eof,
            &mut conn.upstream_out,
        ) {
            Ok(t) => t,
            Err(e) => {
                log::debug!("client={} bad request body: {e}", conn.peer);
                if eof && matches!(e, body::BodyError::Truncated) {
                    return Some(Outcome::Abort);
                }
                return Some(self.refuse_body(Canned::BadRequest, conn, env));
            }
        };
        conn.client_in.advance(t.consumed);
        conn.client_in.reset_if_empty();
        self.body_read += t.payload as u64;
        if let Some(max) = env.snapshot.config.limits.body_bytes {
            if self.body_read > max {
                return Some(self.refuse_body(Canned::ContentTooLarge, conn, env));
            }
        }
        *progress |= t.consumed > 0 || t.done;
        None
    }

    /// The request body is unacceptable: answer (if nothing was sent yet) and close.
    fn refuse_body(&mut self, canned: Canned, conn: &mut Conn, env: &mut Env) -> Outcome {
        self.release_upstream(false, env);
        if self.resp.is_some() {
            self.abandon(conn, env, "bad_request");
            return Outcome::Abort;
        }
        self.conclude(conn, env, canned.status(), reason_for(canned));
        canned.write(&mut conn.client_out, true, self.req.method == Method::Head);
        Outcome::Finished { keep_alive: false }
    }

    /// Picks a backend if needed and gets a connection to it.
    fn attach(&mut self, sid: usize, conn: &mut Conn, env: &mut Env) -> Outcome {
        let (generation, backend) = match self.backend {
            Some(held) => held,
            None => {
                let max = (env.snapshot.config.retry.max_attempts as usize).min(MAX_ATTEMPTS);
                let n = self.attempts.backends as usize;
                if self.tried_generation != env.generation {
                    // A reload renumbered the backends: earlier indexes mean nothing now.
                    self.tried_generation = env.generation;
                    self.tried_from = n;
                }
                let hash = match env.snapshot.config.balancer.hash_key {
                    crate::config::HashKey::Ip => env
                        .snapshot
                        .balancer
                        .needs_hash()
                        .then(|| crate::hash::ip(conn.peer.ip())),
                    crate::config::HashKey::Header(_) => self.req.hash,
                };
                let ctx = PickContext {
                    hash,
                    tried: &self.tried[self.tried_from..n],
                    now: env.now,
                };
                let picked = if n < max {
                    env.snapshot.balancer.pick(&env.snapshot.backends, &ctx)
                } else {
                    None
                };
                let Some(b) = picked else {
                    log::debug!("client={} no backend available", conn.peer);
                    return self.give_up(Canned::ServiceUnavailable, conn, env);
                };
                let backend = &env.snapshot.backends[b];
                backend.in_flight.fetch_add(1, Ordering::Relaxed);
                backend.requests_total.fetch_add(1, Ordering::Relaxed);
                let generation = env.hold();
                self.tried[n] = b;
                self.attempts = Attempts {
                    backends: n as u32 + 1,
                    connects: 0,
                    fresh_retry_used: false,
                };
                self.backend = Some((generation, b));
                (generation, b)
            }
        };
        if !self.fresh_next && generation == env.generation {
            if let Some(uid) = env.take_pooled(backend, sid) {
                self.start_attempt(uid, conn, env);
                return Outcome::Continue(true);
            }
        }
        self.fresh_next = false;
        self.attempts.connects += 1;
        match env.open_upstream(generation, backend, sid) {
            Ok(uid) => {
                self.connect_deadline = env.now + env.snapshot.config.timeouts.connect;
                self.start_attempt(uid, conn, env);
                Outcome::Continue(true)
            }
            Err(e) if net::is_resource_exhaustion(&e) => {
                // No descriptor or memory for a socket here: not the backend's fault, so
                // no retries and no down-marking (spec §7.6); this client gets 503.
                log::warn!("backend={} no socket: {e}", self.backend_name(env));
                self.give_up(Canned::ServiceUnavailable, conn, env)
            }
            Err(e) => {
                log::debug!("backend={} connect failed: {e}", self.backend_name(env));
                self.fail(Failure::Connect, conn, env)
            }
        }
    }

    fn start_attempt(&mut self, uid: usize, conn: &mut Conn, env: &Env) {
        self.upstream = Some(uid);
        self.sent = 0;
        self.request_sent = false;
        self.upstream_eof = false;
        self.upstream_broken = false;
        self.got_response_bytes = false;
        self.resp_scanned = 0;
        self.last_upstream_io = env.now;
        conn.upstream_in.clear();
    }

    fn write_upstream(
        &mut self,
        uid: usize,
        conn: &mut Conn,
        env: &mut Env,
        progress: &mut bool,
    ) -> Option<Outcome> {
        if self.request_abandoned {
            return None;
        }
        let up = &mut env.upstreams[uid];
        if up.writable && !conn.upstream_out.is_empty() {
            let pending = conn.upstream_out.len();
            match net::write(&mut up.stream, conn.upstream_out.data()) {
                Io::Progress(n) => {
                    conn.upstream_out.advance(n);
                    if !self.replayable {
                        conn.upstream_out.reset_if_empty();
                    }
                    up.writable = n == pending;
                    self.sent += n;
                    self.last_upstream_io = env.now;
                    *progress = true;
                }
                Io::WouldBlock => up.writable = false,
                Io::Closed | Io::Failed(_) => {
                    if self.resp.is_some() {
                        // The upstream answered and stopped reading: keep relaying the
                        // response, drop the rest of the request.
                        self.request_abandoned = true;
                        conn.upstream_out.clear();
                        return None;
                    }
                    let reused = up.exchanges > 0;
                    let sent_any = self.sent > 0;
                    return Some(self.fail(
                        Failure::BeforeResponse { reused, sent_any },
                        conn,
                        env,
                    ));
                }
            }
        }
        if !self.request_sent && self.req_dec.is_done() && conn.upstream_out.is_empty() {
            self.request_sent = true;
            self.last_upstream_io = env.now;
            *progress = true;
        }
        None
    }

    fn read_upstream(&mut self, uid: usize, conn: &mut Conn, env: &mut Env, progress: &mut bool) {
        let up = &mut env.upstreams[uid];
        if !up.readable || self.upstream_eof {
            return;
        }
        if conn.upstream_in.tail_room() == 0 {
            conn.upstream_in.compact();
            if conn.upstream_in.tail_room() == 0 {
                return; // backpressure: the client has not taken what we have
            }
        }
        let spare = conn.upstream_in.spare();
        let room = spare.len();
        match net::read(&mut up.stream, spare) {
            Io::Progress(n) => {
                conn.upstream_in.commit(n);
                up.readable = n == room || up.read_closed;
                self.got_response_bytes = true;
                self.last_upstream_io = env.now;
                *progress = true;
            }
            Io::WouldBlock => up.readable = false,
            Io::Closed => {
                up.readable = false;
                self.upstream_eof = true;
                *progress = true;
            }
            Io::Failed(e) => {
                up.readable = false;
                self.upstream_eof = true;
                self.upstream_broken = true;
                *progress = true;
                log::debug!("backend={} read failed: {e}", self.backend_name(env));
            }
        }
    }

    /// Parses response heads and relays the body into `client_out`.
    fn pump_response(&mut self, conn: &mut Conn, env: &mut Env, progress: &mut bool) -> Outcome {
        // Interim (1xx) heads are relayed one by one, at most MAX_INTERIM per exchange.
        loop {
            if self.resp.is_some() {
                break;
            }
            let data = conn.upstream_in.data();
            let Some(end) = find_head_end(data, self.resp_scanned) else {
                self.resp_scanned = data.len();
                // The head limit is the request-side buffer size (16 KiB or head_bytes).
                if data.len() >= env.bufs.size() {
                    log::debug!("backend={} response head too large", self.backend_name(env));
                    return self.give_up(Canned::BadGateway, conn, env);
                }
                if self.upstream_eof {
                    if self.got_response_bytes {
                        log::debug!(
                            "backend={} closed before a complete head",
                            self.backend_name(env)
                        );
                        return self.give_up(Canned::BadGateway, conn, env);
                    }
                    let reused = self
                        .upstream
                        .is_some_and(|u| env.upstreams[u].exchanges > 0);
                    let sent_any = self.sent > 0;
                    return self.fail(Failure::BeforeResponse { reused, sent_any }, conn, env);
                }
                return Outcome::Continue(*progress);
            };
            let ctx = ResponseContext {
                head_request: self.req.method == Method::Head,
                client_minor: self.req.minor,
                // A response that starts before the request body ended (an early answer)
                // announces the close that follows: the rest of the body is not read.
                client_keep_alive: self.req.keep_alive
                    && !env.shutting_down
                    && self.req_dec.is_done(),
            };
            match response::parse(&data[..end], &ctx, &mut conn.client_out) {
                Ok(head) => {
                    conn.upstream_in.advance(head.head_len);
                    self.resp_scanned = 0;
                    *progress = true;
                    if head.interim {
                        self.interim += 1;
                        if self.interim > MAX_INTERIM {
                            log::debug!(
                                "backend={} too many interim responses",
                                self.backend_name(env)
                            );
                            return self.give_up(Canned::BadGateway, conn, env);
                        }
                    } else {
                        self.resp = Some(head);
                        self.resp_dec = Decoder::new(head.upstream_framing);
                        self.resp_enc = Encoder::new(head.client_framing);
                    }
                }
                Err(e) => {
                    log::debug!("backend={} {e}", self.backend_name(env));
                    return self.give_up(Canned::BadGateway, conn, env);
                }
            }
        }
        let Some(head) = self.resp else {
            return Outcome::Continue(*progress);
        };
        if conn.client_out.tail_room() < conn.client_out.room() / 2 {
            conn.client_out.compact();
        }
        if self.upstream_broken && self.resp_dec == Decoder::Close {
            return Outcome::Abort; // a reset is not a clean end of a close-delimited body
        }
        match body::transfer(
            &mut self.resp_dec,
            &mut self.resp_enc,
            conn.upstream_in.data(),
            self.upstream_eof,
            &mut conn.client_out,
        ) {
            Ok(t) => {
                conn.upstream_in.advance(t.consumed);
                conn.upstream_in.reset_if_empty();
                self.resp_bytes += t.payload as u64;
                *progress |= t.consumed > 0;
                if t.done {
                    return self.finish(head, conn, env);
                }
                Outcome::Continue(*progress)
            }
            Err(e) => {
                log::debug!("backend={} response body: {e}", self.backend_name(env));
                Outcome::Abort
            }
        }
    }

    /// The response is fully queued: settle both connections.
    fn finish(&mut self, head: ResponseHead, conn: &mut Conn, env: &mut Env) -> Outcome {
        // Spec §7.4: reuse only after a clean, complete exchange with nothing extra.
        let reusable = head.upstream_keep_alive
            && self.request_sent
            && !self.request_abandoned
            && conn.upstream_in.is_empty()
            && !self.upstream_eof;
        self.release_upstream(reusable, env);
        self.conclude(conn, env, head.status, "ok");
        let keep_alive =
            head.client_keep_alive && self.req_dec.is_done() && !self.request_abandoned;
        Outcome::Finished { keep_alive }
    }

    /// Answers with a canned response (nothing of a response has reached the client).
    fn give_up(&mut self, canned: Canned, conn: &mut Conn, env: &mut Env) -> Outcome {
        self.release_upstream(false, env);
        if self.resp.is_some() {
            self.abandon(conn, env, "upstream_error");
            return Outcome::Abort;
        }
        self.conclude(conn, env, canned.status(), reason_for(canned));
        let keep_alive = self.req.keep_alive && self.req_dec.is_done() && !env.shutting_down;
        canned.write(
            &mut conn.client_out,
            !keep_alive,
            self.req.method == Method::Head,
        );
        Outcome::Finished { keep_alive }
    }

    /// An attempt failed before any response: retry as the policy says, or answer.
    fn fail(&mut self, failure: Failure, conn: &mut Conn, env: &mut Env) -> Outcome {
        self.release_upstream(false, env);
        if let Some((g, b)) = self.backend {
            env.backend(g, b)
                .failures_total
                .fetch_add(1, Ordering::Relaxed);
        }
        if self.resp.is_some() {
            self.abandon(conn, env, "upstream_error");
            return Outcome::Abort;
        }
        let replayable =
            self.req.method.is_idempotent() && self.replayable && self.req_dec.is_done();
        // Connects exhausted on this backend: report it down even when no other
        // attempt follows (passive marking must not depend on max_attempts).
        let exhausted = failure == Failure::Connect
            && self.attempts.connects > env.snapshot.config.retry.same_backend;
        if exhausted {
            if let Some((g, b)) = self.backend {
                env.report_down(g, b);
            }
        }
        let next = retry::decide(
            &env.snapshot.config.retry,
            &self.attempts,
            failure,
            replayable,
        );
        if !matches!(next, Next::GiveUp(_)) {
            // Send the request again from its first byte.
            if self.sent > 0 {
                conn.upstream_out.rewind_to(0);
            }
            env.stats.retries += 1;
            self.retries += 1;
            if let Some((g, b)) = self.backend {
                env.backend(g, b)
                    .retries_total
                    .fetch_add(1, Ordering::Relaxed);
            }
        }
        match next {
            Next::SameBackend(delay) => {
                self.retry_at = Some(env.now + delay);
                Outcome::Continue(true)
            }
            Next::FreshConnection => {
                self.attempts.fresh_retry_used = true;
                self.fresh_next = true;
                Outcome::Continue(true)
            }
            Next::NextBackend { .. } => {
                // (a down-mark, if due, was sent above)
                self.release_backend(env);
                Outcome::Continue(true)
            }
            Next::GiveUp(canned) => self.give_up(canned, conn, env),
        }
    }

    fn release_upstream(&mut self, reusable: bool, env: &mut Env) {
        if let Some(uid) = self.upstream.take() {
            env.release_upstream(uid, reusable);
        }
    }

    fn release_backend(&mut self, env: &mut Env) {
        if let Some((g, b)) = self.backend.take() {
            env.backend(g, b).in_flight.fetch_sub(1, Ordering::Relaxed);
            env.unhold(g);
        }
    }

    /// Records the exchange's end once (metrics, access log), then frees its backend slot.
    fn conclude(&mut self, conn: &Conn, env: &mut Env, status: u16, reason: &'static str) {
        if !self.concluded {
            self.concluded = true;
            let duration = env.now.saturating_duration_since(self.started);
            let backend = self.backend.map(|(g, b)| env.backend(g, b));
            match backend {
                Some(b) => b.responses.record(status, duration),
                None => env.shared.unrouted.record(status, duration),
            }
            if let (Some(log), Some(request)) = (env.access_log(), &self.access) {
                let entry = access::Entry {
                    client: conn.peer.ip(),
                    request,
                    status,
                    body_bytes: self.resp_bytes,
                    upstream: backend.map(|b| b.address),
                    upstream_status: self.resp.map(|h| h.status),
                    duration: duration.as_secs_f64(),
                    retries: self.retries,
                    reason,
                };
                let _ = log.try_send(access::format(&entry, SystemTime::now()));
            }
        }
        self.release_backend(env);
    }
}

/// The access log's `reason` word for a canned response.
pub fn reason_for(canned: Canned) -> &'static str {
    match canned {
        Canned::BadRequest
        | Canned::UriTooLong
        | Canned::HeadersTooLarge
        | Canned::NotImplemented => "bad_request",
        Canned::ContentTooLarge => "body_too_large",
        Canned::RequestTimeout | Canned::GatewayTimeout => "timeout",
        Canned::BadGateway => "upstream_error",
        Canned::ServiceUnavailable => "no_backend",
    }
}
