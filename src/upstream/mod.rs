//! A worker's upstream connections and their one owner, [`Upstreams`]: the connections
//! themselves (a slab whose indexes are their tokens), the idle keep-alive pool, the idle
//! deadlines, the check that an idle connection is still quiet, and the generation guard
//! that keeps a connection opened under an older snapshot out of the pool. Sessions ask
//! it for connections and hand them back; they never touch its slab.
//!
//! Each connection is in one [`Link`] state: connecting for a session, busy with one
//! session's exchange, or idle in the pool until a deadline.

mod pool;

use std::collections::HashMap;
use std::io;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use mio::net::TcpStream;
use mio::{Interest, Registry};
use slab::Slab;

use crate::backend::Backend;
use crate::net::{self, ConnectStatus, Edges, Io, Peer};
use crate::proxy_protocol::HeaderBytes;
use crate::timer::Timers;
use crate::token;
use pool::IdlePool;

/// Names one upstream connection of a worker (its slab index).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct UpstreamId(usize);

/// Where a connection is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Link {
    /// `connect` issued for session `owner`, not yet confirmed.
    Connecting {
        /// The session it was opened for.
        owner: usize,
    },
    /// Connected, carrying one exchange of session `owner`.
    Busy {
        /// The session using it.
        owner: usize,
        /// What reads have learned of the backend's side.
        peer: Peer,
    },
    /// In the idle pool, closed at `until` unless taken first.
    Idle {
        /// The idle deadline (`timeouts.upstream_idle` after it was pooled).
        until: Instant,
        /// The one session that may take it back (a connection that began with a PROXY
        /// header carries that client's address); `None`: any session.
        session: Option<usize>,
    },
}

/// One TCP connection to a backend.
#[derive(Debug)]
struct Upstream {
    stream: TcpStream,
    /// The backend it connects to (its counters and eligibility).
    backend: Arc<Backend>,
    /// The backend's index in snapshot `generation`.
    index: usize,
    /// The snapshot generation `index` belongs to: the one it was opened under, or a later
    /// one that carried its backend over ([`Upstreams::install`]); only the owner's
    /// current one pools.
    generation: u64,
    edges: Edges,
    link: Link,
    /// A PROXY protocol header still to be written before the first request byte.
    preface: Option<Preface>,
    /// Exchanges completed on it; above zero means it came from the pool.
    exchanges: u32,
    /// Earliest timer entry armed for it.
    armed: Option<Instant>,
}

/// A PROXY protocol header (spec §11) a new connection sends before anything else.
#[derive(Debug, Clone, Copy)]
struct Preface {
    header: HeaderBytes,
    /// Bytes of it written so far.
    sent: usize,
}

/// Every upstream connection of one worker.
///
/// Invariants: a connection is in `idle` exactly while its link is `Idle`, and then its
/// generation is `generation`; `keep_idle` is `None` once shutdown began (nothing pools).
pub struct Upstreams {
    registry: Registry,
    conns: Slab<Upstream>,
    idle: IdlePool,
    /// Idle connections that only their own session may take back (`Link::Idle` with a
    /// session): one per session and backend at most.
    bound: Vec<usize>,
    timers: Timers<usize>,
    generation: u64,
    keep_idle: Option<Duration>,
}

impl Upstreams {
    /// An empty set registering its sockets with `registry`, pooling connections of
    /// snapshot `generation` for `idle_timeout`.
    pub fn new(registry: Registry, generation: u64, idle_timeout: Duration) -> Upstreams {
        Upstreams {
            registry,
            conns: Slab::new(),
            idle: IdlePool::default(),
            bound: Vec::new(),
            timers: Timers::default(),
            generation,
            keep_idle: Some(idle_timeout),
        }
    }

    /// A pooled connection to backend `index` of snapshot `generation`, now busy for
    /// session `owner`; `None` when there is none (or `generation` is not current).
    pub fn take_idle(&mut self, generation: u64, index: usize, owner: usize) -> Option<UpstreamId> {
        if generation != self.generation {
            return None;
        }
        let bound = self.bound.iter().position(|&u| {
            let up = &self.conns[u];
            up.index == index
                && matches!(up.link, Link::Idle { session: Some(s), .. } if s == owner)
        });
        let uid = match bound {
            Some(i) => self.bound.swap_remove(i),
            None => self.idle.take(index)?,
        };
        let up = &mut self.conns[uid];
        up.backend.add_idle(-1);
        up.link = Link::Busy {
            owner,
            peer: Peer::Open,
        };
        Some(UpstreamId(uid))
    }

    /// Starts a non-blocking connect to `backend` (index `index` of snapshot
    /// `generation`) for session `owner` (step 1 of mio's connect recipe). `preface` is a
    /// PROXY protocol header written before the first request byte.
    pub fn connect(
        &mut self,
        backend: &Arc<Backend>,
        generation: u64,
        index: usize,
        owner: usize,
        preface: Option<HeaderBytes>,
    ) -> io::Result<UpstreamId> {
        let mut stream = TcpStream::connect(backend.address)?;
        let entry = self.conns.vacant_entry();
        let uid = entry.key();
        self.registry.register(
            &mut stream,
            token::upstream(uid),
            Interest::READABLE | Interest::WRITABLE,
        )?;
        entry.insert(Upstream {
            stream,
            backend: Arc::clone(backend),
            index,
            generation,
            edges: Edges::default(),
            link: Link::Connecting { owner },
            preface: preface.map(|header| Preface { header, sent: 0 }),
            exchanges: 0,
            armed: None,
        });
        backend.connections_total.fetch_add(1, Ordering::Relaxed);
        Ok(UpstreamId(uid))
    }

    /// Checks a pending connect (see [`net::connect_status`]); `Connected` for a
    /// connection that is past it.
    pub fn poll_connect(&mut self, id: UpstreamId) -> ConnectStatus {
        let up = &mut self.conns[id.0];
        let Link::Connecting { owner } = up.link else {
            return ConnectStatus::Connected;
        };
        if !up.edges.writable && !up.edges.readable {
            return ConnectStatus::Pending; // no edge yet: nothing to ask the kernel
        }
        let status = net::connect_status(&up.stream);
        match status {
            ConnectStatus::Connected => {
                up.link = Link::Busy {
                    owner,
                    peer: Peer::Open,
                };
                // Small heads must leave at once, not wait for Nagle.
                let _ = up.stream.set_nodelay(true);
            }
            ConnectStatus::Pending => up.edges = Edges::default(),
            ConnectStatus::Failed(_) => {}
        }
        status
    }

    /// True for a connection that came from the pool (it carried an exchange before).
    pub fn is_reused(&self, id: UpstreamId) -> bool {
        self.conns[id.0].exchanges > 0
    }

    /// Writes once when the socket has a writable edge; `WouldBlock` without one. A
    /// PROXY header not yet sent goes first, in the same `writev`; `Progress` counts only
    /// bytes of `data`.
    pub fn write(&mut self, id: UpstreamId, data: &[u8]) -> Io {
        let up = &mut self.conns[id.0];
        if !up.edges.writable {
            return Io::WouldBlock;
        }
        let Some(preface) = &mut up.preface else {
            return up.edges.write(&mut up.stream, data);
        };
        let rest = &preface.header.as_bytes()[preface.sent..];
        match up.edges.write_two(&mut up.stream, rest, data) {
            Io::Progress(n) if n < rest.len() => {
                preface.sent += n;
                Io::WouldBlock // the socket took less than offered: its edge is used up
            }
            Io::Progress(n) => {
                let data_sent = n - rest.len();
                up.preface = None;
                match data_sent {
                    0 => Io::WouldBlock,
                    n => Io::Progress(n),
                }
            }
            io => io,
        }
    }

    /// Reads once into `buf` when the socket has a readable edge and has not ended;
    /// `WouldBlock` otherwise. An end (FIN or failure) is reported once and remembered
    /// (see [`Upstreams::peer`]).
    pub fn read(&mut self, id: UpstreamId, buf: &mut [u8]) -> Io {
        let up = &mut self.conns[id.0];
        let Link::Busy { peer, .. } = &mut up.link else {
            return Io::WouldBlock;
        };
        if !up.edges.readable || peer.is_eof() {
            return Io::WouldBlock;
        }
        let io = up.edges.read(&mut up.stream, buf);
        match io {
            Io::Closed => *peer = Peer::HalfClosed,
            Io::Failed(_) => *peer = Peer::Broken,
            Io::Progress(_) | Io::WouldBlock => {}
        }
        io
    }

    /// Passes a FIN on to the backend (a tunnel whose client closed its side).
    pub fn shutdown_write(&mut self, id: UpstreamId) {
        let _ = self.conns[id.0].stream.shutdown(std::net::Shutdown::Write);
    }

    /// What reads have learned of the backend's side of a busy connection.
    pub fn peer(&self, id: UpstreamId) -> Peer {
        match self.conns[id.0].link {
            Link::Busy { peer, .. } => peer,
            Link::Connecting { .. } | Link::Idle { .. } => Peer::Open,
        }
    }

    /// Takes a connection back after an exchange: pooled when the exchange says it is
    /// `reusable` and the pool accepts it (spec §7.4), closed otherwise.
    pub fn release(&mut self, id: UpstreamId, reusable: bool, now: Instant) {
        let uid = id.0;
        if reusable && self.is_poolable(uid) {
            let until = now + self.keep_idle.unwrap_or_default();
            let up = &mut self.conns[uid];
            // A connection that began with a PROXY header speaks for its client only.
            let session = match up.link {
                Link::Busy { owner, .. } if up.backend.send_proxy.is_some() => Some(owner),
                _ => None,
            };
            let pooled = match session {
                Some(_) => {
                    self.bound.push(uid);
                    true
                }
                None => self.idle.put(up.index, uid),
            };
            if pooled {
                up.link = Link::Idle { until, session };
                up.exchanges += 1;
                up.backend.add_idle(1);
                self.timers.arm(uid, until, &mut up.armed);
                return;
            }
        }
        self.close(uid);
    }

    /// A session ended: the idle connections only it could take back close.
    pub fn release_session(&mut self, sid: usize) {
        let mine: Vec<usize> = self
            .bound
            .iter()
            .copied()
            .filter(
                |&u| matches!(self.conns[u].link, Link::Idle { session: Some(s), .. } if s == sid),
            )
            .collect();
        for uid in mine {
            self.discard_idle(uid);
        }
    }

    /// Spec §7.4: only a connection of the current snapshot to a backend that may be
    /// picked, whose backend has not closed or sent anything unasked, may idle in the
    /// pool; and nothing pools once shutdown began.
    fn is_poolable(&mut self, uid: usize) -> bool {
        let up = &self.conns[uid];
        let open = matches!(
            up.link,
            Link::Busy {
                peer: Peer::Open,
                ..
            }
        );
        self.keep_idle.is_some()
            && open
            && !up.edges.read_closed
            && up.generation == self.generation
            && up.backend.is_eligible()
            && self.is_quiet(uid)
    }

    /// True when the backend sent nothing since the last read: a pending readable edge
    /// is checked with a one-byte read, which must find nothing (`WouldBlock`). Data or
    /// EOF on an idle connection means it can no longer be trusted with a request.
    fn is_quiet(&mut self, uid: usize) -> bool {
        let up = &mut self.conns[uid];
        if !up.edges.readable {
            return true;
        }
        let mut byte = [0u8; 1];
        matches!(up.edges.read(&mut up.stream, &mut byte), Io::WouldBlock)
    }

    /// Records an event's edges; returns the session to drive, if a session uses the
    /// connection. An idle connection that turned readable is checked and closed unless
    /// still quiet.
    pub fn on_event(
        &mut self,
        id: usize,
        readable: bool,
        writable: bool,
        read_closed: bool,
    ) -> Option<usize> {
        let up = self.conns.get_mut(id)?;
        up.edges.record(readable, writable, read_closed);
        match up.link {
            Link::Connecting { owner } | Link::Busy { owner, .. } => Some(owner),
            Link::Idle { .. } => {
                if readable && !self.is_quiet(id) {
                    self.discard_idle(id);
                }
                None
            }
        }
    }

    /// Closes idle connections whose deadline has passed.
    pub fn expire(&mut self, now: Instant) {
        while let Some((at, uid)) = self.timers.pop_due(now) {
            let Some(up) = self.conns.get_mut(uid) else {
                continue;
            };
            if up.armed != Some(at) {
                continue; // stale entry
            }
            up.armed = None;
            if let Link::Idle { until, .. } = up.link {
                if until <= now {
                    self.discard_idle(uid);
                } else {
                    self.timers.arm(uid, until, &mut up.armed);
                }
            }
        }
    }

    /// Time until the next idle deadline, for the poll timeout.
    pub fn next_timeout(&self, now: Instant) -> Option<Duration> {
        self.timers.next_timeout(now)
    }

    /// A new snapshot (a reload, a DNS member change) whose backends are `backends`.
    /// A connection to a backend it carried over (the same [`Backend`]: same name,
    /// address, weight, `send_proxy` and pool) is renumbered to the backend's new index
    /// and belongs to the new generation: idle ones stay pooled, busy ones may pool after
    /// their exchange. Connections to other backends close now if idle, or after their
    /// exchange. So a DNS change to one service costs no other backend its warm pool.
    /// A carried-over connection idles no longer than the new `upstream_idle` from `now`.
    pub fn install(
        &mut self,
        generation: u64,
        idle_timeout: Duration,
        backends: &[Arc<Backend>],
        now: Instant,
    ) {
        let index: HashMap<*const Backend, usize> = backends
            .iter()
            .enumerate()
            .map(|(i, b)| (Arc::as_ptr(b), i))
            .collect();
        let pooled = self.idle.take_all(None);
        self.generation = generation;
        for (_, up) in self.conns.iter_mut() {
            if let Some(&i) = index.get(&Arc::as_ptr(&up.backend)) {
                up.index = i;
                up.generation = generation;
            }
        }
        let latest = now + idle_timeout;
        for uid in pooled {
            let up = &mut self.conns[uid];
            if up.generation == generation
                && up.backend.is_eligible()
                && self.idle.put(up.index, uid)
            {
                self.idle_until_at_most(uid, latest);
                continue;
            }
            up.backend.add_idle(-1);
            self.close(uid);
        }
        let stale: Vec<usize> = (self.bound.iter().copied())
            .filter(|&u| {
                let up = &self.conns[u];
                up.generation != generation || !up.backend.is_eligible()
            })
            .collect();
        for uid in stale {
            self.discard_idle(uid);
        }
        for uid in self.bound.clone() {
            self.idle_until_at_most(uid, latest);
        }
        if self.keep_idle.is_some() {
            self.keep_idle = Some(idle_timeout);
        }
    }

    /// Brings an idle connection's deadline forward to `latest` if it is later.
    fn idle_until_at_most(&mut self, uid: usize, latest: Instant) {
        let up = &mut self.conns[uid];
        if let Link::Idle { until, .. } = &mut up.link {
            *until = (*until).min(latest);
            self.timers.arm(uid, *until, &mut up.armed);
        }
    }

    /// Closes the idle connections of every backend that may not be picked now (down,
    /// draining, disabled). For a status change reported against an older snapshot: the
    /// index it names no longer counts, but the backend may have been carried over.
    pub fn close_ineligible(&mut self) {
        let ineligible: Vec<usize> = (self.conns.iter())
            .filter(|(_, up)| matches!(up.link, Link::Idle { .. }) && !up.backend.is_eligible())
            .map(|(uid, _)| uid)
            .collect();
        for uid in ineligible {
            self.discard_idle(uid);
        }
    }

    /// Shutdown began: idle connections close and nothing pools from now on.
    pub fn shut_down(&mut self) {
        self.close_idle(None);
        self.keep_idle = None;
    }

    /// Closes the idle connections to backend `index` of the current snapshot (`Some`),
    /// or all of them (`None`).
    pub fn close_idle(&mut self, index: Option<usize>) {
        for uid in self.idle.take_all(index) {
            self.conns[uid].backend.add_idle(-1);
            self.close(uid);
        }
        let bound: Vec<usize> = self
            .bound
            .iter()
            .copied()
            .filter(|&u| index.is_none_or(|i| self.conns[u].index == i))
            .collect();
        for uid in bound {
            self.discard_idle(uid);
        }
    }

    /// Closes one idle connection that expired, closed or sent stray bytes.
    fn discard_idle(&mut self, uid: usize) {
        let up = &self.conns[uid];
        match up.link {
            Link::Idle {
                session: Some(_), ..
            } => self.bound.retain(|&u| u != uid),
            _ => self.idle.remove(up.index, uid),
        }
        up.backend.add_idle(-1);
        self.close(uid);
    }

    /// Closes a connection. No deregister: closing the socket takes it out of the epoll
    /// set (one syscall fewer per connection).
    fn close(&mut self, uid: usize) {
        drop(self.conns.remove(uid));
    }
}

#[cfg(test)]
mod tests {
    //! The connection state machine on real loopback sockets.

    use super::*;
    use crate::config::BackendConfig;
    use mio::{Events, Poll};
    use std::io::{Read, Write};
    use std::net::TcpListener;

    struct Rig {
        poll: Poll,
        events: Events,
        ups: Upstreams,
        backend: Arc<Backend>,
        listener: TcpListener,
        preface: Option<HeaderBytes>,
    }

    /// A backend named `name` at `listener`'s address, in the default pool.
    fn backend(
        listener: &TcpListener,
        name: &str,
        send_proxy: Option<crate::config::ProxyVersion>,
    ) -> Arc<Backend> {
        let address = listener.local_addr().unwrap();
        let config = BackendConfig {
            address,
            host_port: address.to_string(),
            weight: 1,
            name: name.into(),
            send_proxy,
            service: None,
        };
        Arc::new(Backend::new(&config, "default"))
    }

    impl Rig {
        fn new() -> Rig {
            let listener = TcpListener::bind("127.0.0.1:0").unwrap();
            let backend = backend(&listener, "b", None);
            let poll = Poll::new().unwrap();
            let ups = Upstreams::new(
                poll.registry().try_clone().unwrap(),
                0,
                Duration::from_secs(60),
            );
            Rig {
                poll,
                events: Events::with_capacity(16),
                ups,
                backend,
                listener,
                preface: None,
            }
        }

        /// Polls once (bounded) and feeds the events to the owner.
        fn turn(&mut self) {
            self.poll
                .poll(&mut self.events, Some(Duration::from_millis(200)))
                .unwrap();
            for e in self.events.iter() {
                let token::Target::Upstream(uid) = token::classify(e.token()) else {
                    continue;
                };
                self.ups.on_event(
                    uid,
                    e.is_readable() || e.is_read_closed(),
                    e.is_writable(),
                    e.is_read_closed() || e.is_error(),
                );
            }
        }

        /// A connected, busy connection for session 7, and the backend's end of it.
        fn connected(&mut self) -> (UpstreamId, std::net::TcpStream) {
            self.connected_in(0)
        }

        /// The same, opened under snapshot `generation` (backend index 0).
        fn connected_in(&mut self, generation: u64) -> (UpstreamId, std::net::TcpStream) {
            let id = self
                .ups
                .connect(&self.backend, generation, 0, 7, self.preface)
                .unwrap();
            let (server, _) = self.listener.accept().unwrap();
            for _ in 0..50 {
                self.turn();
                if let ConnectStatus::Connected = self.ups.poll_connect(id) {
                    return (id, server);
                }
            }
            panic!("connect did not complete");
        }
    }

    /// Transitions: connecting -> busy -> idle -> busy (taken) -> idle -> closed when
    /// stray bytes arrive; a generation change keeps a connection out of the pool.
    #[test]
    fn connection_transitions() {
        let mut rig = Rig::new();
        let (id, mut server) = rig.connected();
        assert!(matches!(
            rig.ups.conns[id.0].link,
            Link::Busy { owner: 7, .. }
        ));
        assert!(!rig.ups.is_reused(id));
        assert_eq!(rig.ups.on_event(id.0, false, true, false), Some(7));
        // Busy -> idle: pooled, counted idle.
        rig.ups.release(id, true, Instant::now());
        assert_eq!(rig.backend.idle_connections(), 1);
        assert_eq!(rig.ups.on_event(id.0, false, false, false), None);
        // Idle -> busy: taken by session 9 (same generation only).
        assert_eq!(rig.ups.take_idle(1, 0, 9), None);
        let again = rig.ups.take_idle(0, 0, 9).expect("pooled");
        assert_eq!(again, id);
        assert!(rig.ups.is_reused(again));
        assert_eq!(rig.backend.idle_connections(), 0);
        // Busy -> idle -> closed: the backend sends bytes nobody asked for.
        rig.ups.release(again, true, Instant::now());
        server.write_all(b"x").unwrap();
        for _ in 0..20 {
            rig.turn();
            if rig.backend.idle_connections() == 0 {
                break;
            }
        }
        assert_eq!(rig.backend.idle_connections(), 0, "stray bytes close it");
        assert!(rig.ups.take_idle(0, 0, 9).is_none());
        let mut buf = [0u8; 1];
        server
            .set_read_timeout(Some(Duration::from_secs(5)))
            .unwrap();
        assert_eq!(server.read(&mut buf).unwrap(), 0, "lbd closed its end");
    }

    /// A connection of an older generation, an ineligible backend, an EOF seen by a
    /// read, or shutdown: closed instead of pooled.
    #[test]
    fn pool_refusals() {
        let mut rig = Rig::new();
        let (id, _server) = rig.connected();
        rig.ups
            .install(1, Duration::from_secs(60), &[], Instant::now());
        rig.ups.release(id, true, Instant::now());
        assert_eq!(
            rig.backend.idle_connections(),
            0,
            "a backend the snapshot dropped"
        );

        let (id, _server) = rig.connected();
        rig.backend
            .set_admin_state(crate::backend::AdminState::Draining);
        rig.ups.release(id, true, Instant::now());
        assert_eq!(rig.backend.idle_connections(), 0, "ineligible backend");
        rig.backend
            .set_admin_state(crate::backend::AdminState::Enabled);

        let (id, server) = rig.connected();
        drop(server);
        let mut buf = [0u8; 8];
        for _ in 0..20 {
            rig.turn();
            if matches!(rig.ups.read(id, &mut buf), Io::Closed) {
                break;
            }
        }
        assert_eq!(rig.ups.peer(id), Peer::HalfClosed);
        rig.ups.release(id, true, Instant::now());
        assert_eq!(rig.backend.idle_connections(), 0, "backend closed");

        let (id, _server) = rig.connected();
        rig.ups.shut_down();
        rig.ups.release(id, true, Instant::now());
        assert_eq!(rig.backend.idle_connections(), 0, "shutting down");
    }

    /// An idle connection past its deadline is closed by `expire`.
    #[test]
    fn idle_deadline() {
        let mut rig = Rig::new();
        let (id, _server) = rig.connected();
        let now = Instant::now();
        rig.ups.release(id, true, now);
        assert_eq!(rig.ups.next_timeout(now), Some(Duration::from_secs(60)));
        rig.ups.expire(now + Duration::from_secs(59));
        assert_eq!(rig.backend.idle_connections(), 1);
        rig.ups.expire(now + Duration::from_secs(60));
        assert_eq!(rig.backend.idle_connections(), 0);
        assert!(rig.ups.take_idle(0, 0, 1).is_none());
    }

    /// A new snapshot keeps the connections of the backends it carried over, under
    /// their new index (idle and busy alike), and closes the idle ones of a backend it
    /// dropped or replaced.
    #[test]
    fn a_new_snapshot_keeps_carried_over_backends_connections() {
        let mut rig = Rig::new();
        let (idle, _s1) = rig.connected();
        rig.ups.release(idle, true, Instant::now());
        let (busy, _s2) = rig.connected();
        // The backend is carried over to index 1 behind a new one at index 0.
        let other = backend(&rig.listener, "o", None);
        let carried = [Arc::clone(&other), Arc::clone(&rig.backend)];
        rig.ups
            .install(1, Duration::from_secs(60), &carried, Instant::now());
        assert_eq!(rig.backend.idle_connections(), 1, "still pooled");
        assert!(
            rig.ups.take_idle(1, 0, 9).is_none(),
            "not under its old index"
        );
        let again = rig.ups.take_idle(1, 1, 9).expect("under its new index");
        assert_eq!(again, idle);
        rig.ups.release(again, true, Instant::now());
        rig.ups.release(busy, true, Instant::now());
        assert_eq!(
            rig.backend.idle_connections(),
            2,
            "the busy one pools after"
        );
        // Replaced (a new Backend for the same address): its connections close.
        rig.ups
            .install(2, Duration::from_secs(60), &[other], Instant::now());
        assert_eq!(rig.backend.idle_connections(), 0);
        assert!(rig.ups.take_idle(2, 0, 9).is_none());
    }

    /// Carried over, an idle connection takes a shorter `upstream_idle` at once; one to
    /// a backend that may not be picked is closed by the new snapshot, and by
    /// `close_ineligible` (a status change reported against an older snapshot).
    #[test]
    fn a_new_snapshot_applies_idle_limit_and_eligibility() {
        let mut rig = Rig::new();
        let (id, _server) = rig.connected();
        let now = Instant::now();
        rig.ups.release(id, true, now);
        let carried = [Arc::clone(&rig.backend)];
        rig.ups.install(1, Duration::from_secs(5), &carried, now);
        assert_eq!(rig.ups.next_timeout(now), Some(Duration::from_secs(5)));
        rig.ups.expire(now + Duration::from_secs(5));
        assert_eq!(rig.backend.idle_connections(), 0, "closed at the new limit");

        let (id, _server) = rig.connected_in(1);
        rig.ups.release(id, true, now);
        assert_eq!(rig.backend.idle_connections(), 1);
        rig.backend
            .set_admin_state(crate::backend::AdminState::Draining);
        rig.ups.close_ineligible();
        assert_eq!(rig.backend.idle_connections(), 0, "close_ineligible");
        rig.backend
            .set_admin_state(crate::backend::AdminState::Enabled);

        let (id, _server) = rig.connected_in(1);
        rig.ups.release(id, true, now);
        rig.backend
            .set_admin_state(crate::backend::AdminState::Disabled);
        rig.ups.install(2, Duration::from_secs(60), &carried, now);
        assert_eq!(
            rig.backend.idle_connections(),
            0,
            "not carried while ineligible"
        );
    }

    /// A connection to a `send_proxy` backend writes its PROXY header before the first
    /// request byte (in one writev), and idles bound to its session: another session
    /// cannot take it, and it closes when its session ends.
    #[test]
    fn proxy_preface_and_session_bound_idling() {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let mut rig = Rig::new();
        rig.backend = backend(&listener, "p", Some(crate::config::ProxyVersion::V1));
        rig.listener = listener;
        let header = crate::proxy_protocol::write_v1(
            "10.1.2.3:4567".parse().unwrap(),
            "10.9.9.9:80".parse().unwrap(),
        );
        rig.preface = Some(header);
        let (id, mut server) = rig.connected();
        let mut sent = 0;
        for _ in 0..50 {
            if let Io::Progress(n) = rig.ups.write(id, b"GET / HTTP/1.1\r\n\r\n") {
                sent = n;
                break;
            }
            rig.turn();
        }
        assert_eq!(sent, 18, "only request bytes are counted");
        let want = b"PROXY TCP4 10.1.2.3 10.9.9.9 4567 80\r\nGET / HTTP/1.1\r\n\r\n";
        let mut got = vec![0u8; want.len()];
        server
            .set_read_timeout(Some(Duration::from_secs(5)))
            .unwrap();
        server.read_exact(&mut got).unwrap();
        assert_eq!(&got[..], &want[..]);
        rig.ups.release(id, true, Instant::now());
        assert_eq!(rig.backend.idle_connections(), 1);
        assert!(rig.ups.take_idle(0, 0, 8).is_none(), "another session");
        let again = rig.ups.take_idle(0, 0, 7).expect("its own session");
        rig.ups.release(again, true, Instant::now());
        rig.ups.release_session(7);
        assert_eq!(rig.backend.idle_connections(), 0, "closed with its session");
    }
}
