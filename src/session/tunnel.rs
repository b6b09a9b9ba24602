//! A Tunnel is what a session becomes after an upstream answered `101 Switching
//! Protocols` to an upgrade request (spec §10): bytes pass both ways unparsed until both
//! sides are done. Each direction is its own small state machine ([`Direction`]); a FIN
//! one way is passed on as a FIN (`shutdown(Write)`) once the bytes before it are out,
//! while the other direction keeps flowing.
//!
//! No copies: client bytes are read into `client_in` and written from there to the
//! upstream; upstream bytes are read into `client_out` and the session writes them to the
//! client. A full buffer stops the read that would fill it (backpressure both ways). Both
//! buffers go back to the worker's pools whenever they are empty after a drive, so an
//! idle tunnel holds no buffer memory.

use std::sync::atomic::Ordering;
use std::time::{Instant, SystemTime};

use super::exchange::TunnelStart;
use super::{Conn, Env, Progress};
use crate::access::{self, RequestInfo};
use crate::net::{Io, Peer};
use crate::snapshot::Lease;
use crate::upstream::UpstreamId;

/// One direction of a tunnel.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Direction {
    /// Bytes flow.
    Open,
    /// The sending side closed (FIN); what it sent before is still being delivered.
    Ending,
    /// The FIN was passed on: this direction is over.
    Closed,
}

/// What a tunnel step means for the session.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TunnelStep {
    /// Still open.
    Running(Progress),
    /// Over, for this reason (the access log's word); the session closes.
    Ended(&'static str),
}

/// An open tunnel.
///
/// Invariant: `lease` is held (the backend counts the tunnel in flight) until
/// [`Tunnel::finish`], which also ends the tunnel's upstream connection (never pooled).
#[derive(Debug)]
pub struct Tunnel {
    up: UpstreamId,
    lease: Option<Lease>,
    /// Client to upstream.
    upward: Direction,
    /// Upstream to client.
    downward: Direction,
    /// Bytes passed to the upstream.
    bytes_up: u64,
    /// Bytes passed to the client.
    bytes_down: u64,
    access: Option<Box<RequestInfo>>,
    retries: u32,
    started: Instant,
    /// Last time a byte moved either way (with the client's own I/O, see `deadline`).
    last_io: Instant,
}

impl Tunnel {
    /// A tunnel over the connection an exchange switched. Bytes the upstream sent right
    /// after its `101` are moved to the client's queue.
    pub fn open(start: TunnelStart, conn: &mut Conn, env: &mut Env) -> Tunnel {
        // Tunnel bytes that came in the same reads as the 101 are the first ones down.
        let early = conn.upstream_in.len();
        if early > 0 {
            conn.client_out.extend(conn.upstream_in.data());
            conn.upstream_in.advance(early);
        }
        conn.upstream_in.clear();
        conn.upstream_in.release(&mut env.big_bufs);
        conn.upstream_out.clear();
        conn.upstream_out.release(&mut env.bufs);
        env.shared.tunnels.fetch_add(1, Ordering::Relaxed);
        let backend = env.generations.backend(&start.lease);
        backend.tunnels_total.fetch_add(1, Ordering::Relaxed);
        // The 101 is the response: counted now, its duration the time to it (a
        // tunnel's life, minutes or hours, would swamp the latency histogram).
        let to_switch = start.opened.saturating_duration_since(start.started);
        backend.responses.record(101, to_switch);
        Tunnel {
            up: start.up,
            lease: Some(start.lease),
            upward: Direction::Open,
            downward: Direction::Open,
            bytes_up: 0,
            bytes_down: early as u64,
            access: start.access,
            retries: start.retries,
            started: start.started,
            last_io: start.opened,
        }
    }

    /// Moves what can be moved both ways and passes on FINs.
    pub fn step(&mut self, conn: &mut Conn, env: &mut Env) -> TunnelStep {
        let mut progress = Progress::Idle;
        // Client to upstream: straight from `client_in`.
        if !conn.client_in.is_empty() {
            match env.upstreams.write(self.up, conn.client_in.data()) {
                Io::Progress(n) => {
                    conn.client_in.advance(n);
                    conn.client_in.reset_if_empty();
                    self.bytes_up += n as u64;
                    self.last_io = env.now;
                    progress = Progress::Moved;
                }
                Io::WouldBlock => {}
                Io::Closed | Io::Failed(_) => return TunnelStep::Ended("upstream_error"),
            }
        }
        if self.upward == Direction::Open && conn.peer.is_eof() {
            if conn.peer == Peer::Broken {
                return TunnelStep::Ended("client_closed");
            }
            self.upward = Direction::Ending;
            progress = Progress::Moved;
        }
        if self.upward == Direction::Ending && conn.client_in.is_empty() {
            env.upstreams.shutdown_write(self.up);
            self.upward = Direction::Closed;
            progress = Progress::Moved;
        }
        // Upstream to client: straight into `client_out`.
        if self.downward == Direction::Open {
            let out = &mut conn.client_out;
            // A quiet tunnel gave its buffer back (`Session::settle`).
            out.ensure(&mut env.big_bufs);
            if out.tail_room() == 0 {
                out.compact();
            }
            if out.tail_room() > 0 {
                match env.upstreams.read(self.up, out.spare()) {
                    Io::Progress(n) => {
                        out.commit(n);
                        self.bytes_down += n as u64;
                        self.last_io = env.now;
                        progress = Progress::Moved;
                    }
                    Io::WouldBlock => {}
                    Io::Closed => {
                        self.downward = Direction::Ending;
                        progress = Progress::Moved;
                    }
                    Io::Failed(_) => return TunnelStep::Ended("upstream_error"),
                }
            }
        }
        if self.downward == Direction::Ending && conn.client_out.is_empty() {
            // The transport's own end (TLS close_notify) leaves before the FIN.
            conn.close_transport();
            if conn.wants_write() {
                conn.flush();
            }
            if !conn.wants_write() || conn.peer == Peer::Broken {
                let _ = conn.client.shutdown(std::net::Shutdown::Write);
                self.downward = Direction::Closed;
                progress = Progress::Moved;
            }
        }
        if self.upward == Direction::Closed && self.downward == Direction::Closed {
            return TunnelStep::Ended("ok");
        }
        TunnelStep::Running(progress)
    }

    /// When the tunnel counts as idle: `timeouts.tunnel` after the last byte either way.
    pub fn deadline(&self, conn: &Conn, env: &Env) -> Instant {
        self.last_io.max(conn.last_client_io) + env.config().timeouts.tunnel
    }

    /// Ends the tunnel: the upstream connection closes, the backend's slot is given back,
    /// and the tunnel is access-logged (status 101, bytes both ways, its whole duration).
    pub fn finish(&mut self, reason: &'static str, conn: &Conn, env: &mut Env) {
        let Some(lease) = self.lease.take() else {
            return;
        };
        env.upstreams.release(self.up, false, env.now);
        env.shared.tunnels.fetch_sub(1, Ordering::Relaxed);
        let duration = env.now.saturating_duration_since(self.started);
        let backend = env.generations.backend(&lease);
        if let (Some(log), Some(request)) = (env.access_log(), &self.access) {
            let (tls, sni) = conn.tls_info();
            let entry = access::Entry {
                client: conn.addr.ip(),
                request,
                status: 101,
                body_bytes: self.bytes_down,
                upstream: Some(backend.address),
                upstream_status: Some(101),
                duration: duration.as_secs_f64(),
                tls,
                sni,
                tunnel: Some((self.bytes_up, self.bytes_down)),
                retries: self.retries,
                reason,
            };
            let _ = log.try_send(access::format(&entry, SystemTime::now()));
        }
        env.generations.release(lease);
    }
}
