//! Moving bytes: the request body from the client into `upstream_out`, the request out
//! to the upstream, the response in from it, and the response on into `client_out`,
//! re-framed. Each handler does what it can without blocking and says whether anything
//! moved; a failure ends or retries the attempt.

use super::{After, Attempt, Exchange, Flow, HeadWait, Outcome, Relay, Upload, MAX_INTERIM};
use crate::fault::Fault;
use crate::http::body::{self, BodyError, Decoder, Encoder};
use crate::http::chunked::ChunkedError;
use crate::http::request::Method;
use crate::http::response::ResponseContext;
use crate::http::scan::ResponseScan;
use crate::net::{Io, Peer};
use crate::retry::Failure;
use crate::session::{Conn, Env, Progress};
use crate::upstream::UpstreamId;

impl Exchange {
    /// Moves request body bytes from `client_in` to `upstream_out`.
    pub(super) fn pump_request_body(&mut self, conn: &mut Conn, env: &mut Env) -> Flow {
        if let Attempt::Relaying {
            upload: Upload::Abandoned,
            ..
        } = self.attempt
        {
            if !self.body.dec.is_done() {
                // Nobody takes the rest of this body; it is dropped as it arrives and the
                // client connection closes after the response.
                let n = conn.client_in.len();
                conn.client_in.advance(n);
                conn.client_in.reset_if_empty();
            }
            return Flow::Continue(Progress::Idle);
        }
        if self.body.dec.is_done() {
            return Flow::Continue(Progress::Idle);
        }
        let out = &mut conn.upstream_out;
        if out.tail_room() < out.room() / 2 && out.start() > 0 {
            // Moving bytes forfeits replay: the start of the request is gone.
            self.body.replayable = false;
            out.compact();
        }
        let eof = conn.peer.is_eof();
        let t = match body::transfer(
            &mut self.body.dec,
            &mut self.body.enc,
            conn.client_in.data(),
            eof,
            &mut conn.upstream_out,
        ) {
            Ok(t) => t,
            Err(e) => {
                log::debug!("client={} bad request body: {e}", conn.addr);
                let fault = match e {
                    BodyError::Truncated if eof => Fault::ClientClosed,
                    BodyError::Chunked(ChunkedError::TooLarge) => Fault::BodyTooLarge,
                    _ => Fault::BadBody,
                };
                return Flow::Break(self.end(fault, conn, env));
            }
        };
        conn.client_in.advance(t.consumed);
        conn.client_in.reset_if_empty();
        self.body.read += t.payload as u64;
        if let Some(max) = env.config().limits.body_bytes {
            if self.body.read > max {
                return Flow::Break(self.end(Fault::BodyTooLarge, conn, env));
            }
        }
        Flow::Continue(Progress::from(t.consumed > 0 || t.done))
    }

    /// Writes `upstream_out` to the upstream; notes when the whole request is out.
    pub(super) fn write_upstream(&mut self, conn: &mut Conn, env: &mut Env) -> Flow {
        let up = match self.attempt {
            Attempt::Sending { up, .. }
            | Attempt::Relaying {
                up,
                upload: Upload::Sending,
                ..
            } => up,
            _ => return Flow::Continue(Progress::Idle),
        };
        let mut progress = Progress::Idle;
        if !conn.upstream_out.is_empty() {
            match env.upstreams.write(up, conn.upstream_out.data()) {
                Io::Progress(n) => {
                    conn.upstream_out.advance(n);
                    if !self.body.replayable {
                        conn.upstream_out.reset_if_empty();
                    }
                    self.sent += n;
                    self.upstream_io = env.now;
                    progress = Progress::Moved;
                }
                Io::WouldBlock => {}
                Io::Closed | Io::Failed(_) => {
                    if let Attempt::Relaying { upload, .. } = &mut self.attempt {
                        // The upstream answered and stopped reading: keep relaying the
                        // response, drop the rest of the request.
                        *upload = Upload::Abandoned;
                        conn.upstream_out.clear();
                        return Flow::Continue(Progress::Moved);
                    }
                    let failure = Failure::BeforeResponse {
                        reused: env.upstreams.is_reused(up),
                        sent_any: self.sent > 0,
                    };
                    return Flow::Break(self.fail(failure, conn, env));
                }
            }
        }
        if self.body.dec.is_done() && conn.upstream_out.is_empty() {
            match &mut self.attempt {
                Attempt::Sending { up, head } => {
                    self.attempt = Attempt::Awaiting {
                        up: *up,
                        head: *head,
                    }
                }
                Attempt::Relaying { upload, .. } => *upload = Upload::Sent,
                _ => {}
            }
            self.upstream_io = env.now;
            progress = Progress::Moved;
        }
        Flow::Continue(progress)
    }

    /// Reads what the upstream sent into `upstream_in`, as room allows (backpressure:
    /// nothing is read while the client has not taken what is there).
    pub(super) fn read_upstream(&mut self, conn: &mut Conn, env: &mut Env) -> Progress {
        let (up, head) = match &mut self.attempt {
            Attempt::Sending { up, head } | Attempt::Awaiting { up, head } => (*up, Some(head)),
            Attempt::Relaying { up, .. } => (*up, None),
            _ => return Progress::Idle,
        };
        let buf = &mut conn.upstream_in;
        if buf.tail_room() == 0 {
            buf.compact();
            if buf.tail_room() == 0 {
                return Progress::Idle;
            }
        }
        match env.upstreams.read(up, buf.spare()) {
            Io::Progress(n) => {
                buf.commit(n);
                if let Some(head) = head {
                    head.received += n;
                }
                self.upstream_io = env.now;
                Progress::Moved
            }
            Io::WouldBlock => Progress::Idle,
            Io::Closed => Progress::Moved,
            Io::Failed(e) => {
                log::debug!("backend={} read failed: {e}", self.backend_name(env));
                Progress::Moved
            }
        }
    }

    /// Parses response heads (relaying interim ones) and relays the body into
    /// `client_out`.
    pub(super) fn pump_response(&mut self, conn: &mut Conn, env: &mut Env) -> Flow {
        let mut progress = Progress::Idle;
        loop {
            let (up, head) = match &mut self.attempt {
                Attempt::Sending { up, head } | Attempt::Awaiting { up, head } => (*up, head),
                Attempt::Relaying { .. } => break,
                _ => return Flow::Continue(progress),
            };
            let data = conn.upstream_in.data();
            let ctx = ResponseContext {
                head_request: self.req.method == Method::Head,
                client_minor: self.req.minor,
                // A response that starts before the request body ended (an early answer)
                // announces the close that follows: the rest of the body is not read.
                client_keep_alive: self.req.keep_alive
                    && !env.shutting_down
                    && self.body.dec.is_done(),
                upgrade: self.req.upgrade,
            };
            // Every byte is checked as it arrives: 502 as soon as the bytes can no longer
            // become a valid head, not when upstream_response expires.
            let parsed = match head.scan.parse(data, &ctx, &mut conn.client_out) {
                Ok(Some(parsed)) => Ok(parsed),
                Ok(None) => {
                    let received = head.received;
                    return self.await_more(progress, received, up, conn, env);
                }
                Err(e) => Err(e),
            };
            match parsed {
                Ok(parsed) => {
                    conn.upstream_in.advance(parsed.head_len);
                    *head = HeadWait {
                        scan: ResponseScan::default(),
                        received: head.received,
                    };
                    progress = Progress::Moved;
                    if parsed.interim {
                        self.tries.interim += 1;
                        if self.tries.interim > MAX_INTERIM {
                            log::debug!(
                                "backend={} too many interim responses",
                                self.backend_name(env)
                            );
                            return Flow::Break(self.end(Fault::BadResponse, conn, env));
                        }
                        continue;
                    }
                    if parsed.status == 101 {
                        // Spec §10: the request (body included) went out whole before
                        // the switch; a 101 sooner is not a valid answer.
                        let whole = self.body.dec.is_done() && conn.upstream_out.is_empty();
                        if !whole {
                            return Flow::Break(self.end(Fault::BadResponse, conn, env));
                        }
                        self.attempt = Attempt::Switched { up };
                        return Flow::Break(Outcome::Upgraded);
                    }
                    let upload = match self.attempt {
                        Attempt::Sending { .. } => Upload::Sending,
                        _ => Upload::Sent,
                    };
                    self.attempt = Attempt::Relaying {
                        up,
                        relay: Relay {
                            head: parsed,
                            dec: Decoder::new(parsed.upstream_framing),
                            enc: Encoder::new(parsed.client_framing),
                        },
                        upload,
                    };
                }
                Err(e) => {
                    log::debug!("backend={} {e}", self.backend_name(env));
                    return Flow::Break(self.end(Fault::BadResponse, conn, env));
                }
            }
        }
        self.relay_body(progress, conn, env)
    }

    /// No whole response head yet: 502 if it can no longer fit or the upstream closed
    /// midway; a failure before any response (retried as policy says) if it closed
    /// before sending a byte; otherwise wait for more.
    fn await_more(
        &mut self,
        progress: Progress,
        received: usize,
        up: UpstreamId,
        conn: &mut Conn,
        env: &mut Env,
    ) -> Flow {
        // The head limit is the request-side buffer size (16 KiB or head_bytes).
        if conn.upstream_in.len() >= env.bufs.size() {
            log::debug!("backend={} response head too large", self.backend_name(env));
            return Flow::Break(self.end(Fault::BadResponse, conn, env));
        }
        if env.upstreams.peer(up).is_eof() {
            if received > 0 {
                log::debug!(
                    "backend={} closed before a complete head",
                    self.backend_name(env)
                );
                return Flow::Break(self.end(Fault::BadResponse, conn, env));
            }
            let failure = Failure::BeforeResponse {
                reused: env.upstreams.is_reused(up),
                sent_any: self.sent > 0,
            };
            return Flow::Break(self.fail(failure, conn, env));
        }
        Flow::Continue(progress)
    }

    /// Relays the response body from `upstream_in` into `client_out`.
    fn relay_body(&mut self, progress: Progress, conn: &mut Conn, env: &mut Env) -> Flow {
        let Attempt::Relaying { up, relay, .. } = &mut self.attempt else {
            return Flow::Continue(progress);
        };
        let peer = env.upstreams.peer(*up);
        let out = &mut conn.client_out;
        if out.tail_room() < out.room() / 2 {
            out.compact();
        }
        if peer == Peer::Broken && relay.dec == Decoder::Close {
            // A reset is not a clean end of a close-delimited body.
            return Flow::Break(self.end(Fault::BadResponse, conn, env));
        }
        match body::transfer(
            &mut relay.dec,
            &mut relay.enc,
            conn.upstream_in.data(),
            peer.is_eof(),
            &mut conn.client_out,
        ) {
            Ok(t) => {
                conn.upstream_in.advance(t.consumed);
                conn.upstream_in.reset_if_empty();
                self.resp_bytes += t.payload as u64;
                if t.done {
                    return Flow::Break(self.finish(conn, env));
                }
                Flow::Continue(progress | Progress::from(t.consumed > 0))
            }
            Err(e) => {
                log::debug!("backend={} response body: {e}", self.backend_name(env));
                Flow::Break(self.end(Fault::BadResponse, conn, env))
            }
        }
    }

    /// The response is fully queued: settle both connections.
    fn finish(&mut self, conn: &mut Conn, env: &mut Env) -> Outcome {
        let Attempt::Relaying { up, relay, upload } = self.attempt else {
            unreachable!("finish follows a relayed body");
        };
        // Spec §7.4: reuse only after a clean, complete exchange with nothing extra.
        let reusable = relay.head.upstream_keep_alive
            && upload == Upload::Sent
            && conn.upstream_in.is_empty()
            && !env.upstreams.peer(up).is_eof();
        self.release_upstream(reusable, env);
        self.conclude(conn, env, relay.head.status, "ok");
        let keep_alive =
            relay.head.client_keep_alive && self.body.dec.is_done() && upload != Upload::Abandoned;
        Outcome::Finished(if keep_alive {
            After::KeepAlive
        } else {
            self.closing(conn)
        })
    }
}
