//! A Worker is one thread with one `mio::Poll`: its own `SO_REUSEPORT` listener, its
//! sessions and upstream connections in slabs, its idle-upstream pool and its deadline
//! heap. Its loop is a dispatcher: poll, handle events, drive ready sessions, expire
//! deadlines. Nothing here sleeps or blocks.

mod listen;

use std::io;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use crossbeam_channel::Receiver;
use mio::{Events, Interest, Poll};
use slab::Slab;

use crate::buffer::BufPool;
use crate::control::{HealthMsg, Mailbox, WorkerMsg};
use crate::session::{Drive, Env, Session, Transport};
use crate::snapshot::{Generations, Snapshot};
use crate::stats::{LocalStats, Shared};
use crate::timer::Timers;
use crate::token::{self, Target};
use crate::upstream::Upstreams;
use listen::{Accepted, Listeners, Protocol};

/// Most connections accepted per wake before serving others.
const ACCEPT_BATCH: usize = 64;
/// Events taken per poll.
const EVENTS: usize = 1024;
/// Spare buffers a worker keeps for reuse: four per exchange for 256 concurrent exchanges
/// (16 MiB at 16 KiB). Below the working set, the pool frees buffers that the next
/// requests allocate and zero again (benchmarks.md, "proxies": c256 cost 1.5× the CPU
/// per request with 256).
const SPARE_BUFFERS: usize = 1024;
/// Size of the response-direction buffers (`upstream_in`, `client_out`). With 16 KiB, a
/// 64 KiB response took five reads and writes; this size relays it in one or two.
const RESPONSE_BUFFER_SIZE: usize = 64 * 1024;
/// Size of every session buffer at least; `limits.head_bytes` may raise it.
const BUFFER_SIZE: usize = 16 * 1024;

/// What starting a worker needs.
pub struct WorkerSetup {
    /// Index for logs.
    pub id: usize,
    /// The bound, listening socket.
    pub listener: std::net::TcpListener,
    /// The bound TLS listening socket, with `[tls]`.
    pub tls_listener: Option<std::net::TcpListener>,
    /// The poll the waker was made from.
    pub poll: Poll,
    /// Control messages.
    pub control: Receiver<WorkerMsg>,
    /// Configuration.
    pub snapshot: Arc<Snapshot>,
    /// Process-wide counters.
    pub shared: Arc<Shared>,
    /// Health thread, for passive marking.
    pub health: Option<Mailbox<HealthMsg>>,
    /// Access-log writer, when the access log is on.
    pub access_log: Option<crossbeam_channel::Sender<String>>,
}

/// One event-loop thread's state.
pub struct Worker {
    id: usize,
    poll: Poll,
    listeners: Listeners,
    sessions: Slab<Session>,
    /// Session deadlines, by session slab index.
    timers: Timers<usize>,
    env: Env,
    control: Receiver<WorkerMsg>,
    /// Sessions to drive this turn (each at most once: `Session::scheduled`).
    ready: Vec<usize>,
    /// Spare list swapped with `ready` while driving.
    driving: Vec<usize>,
    shutdown_deadline: Option<Instant>,
}

impl Worker {
    /// Registers the listener and builds the worker.
    pub fn new(setup: WorkerSetup) -> io::Result<Worker> {
        let WorkerSetup {
            id,
            listener,
            tls_listener,
            poll,
            control,
            snapshot,
            shared,
            health,
            access_log,
        } = setup;
        let listeners = Listeners::new(poll.registry(), listener, tls_listener)?;
        let size = BUFFER_SIZE.max(snapshot.config.limits.head_bytes);
        Ok(Worker {
            id,
            timers: Timers::default(),
            env: Env {
                upstreams: Upstreams::new(
                    poll.registry().try_clone()?,
                    snapshot.generation,
                    snapshot.config.timeouts.upstream_idle,
                ),
                bufs: BufPool::new(size, SPARE_BUFFERS),
                big_bufs: BufPool::new(size.max(RESPONSE_BUFFER_SIZE), SPARE_BUFFERS / 2),
                generations: Generations::new(snapshot),
                shared,
                stats: LocalStats::default(),
                now: Instant::now(),
                shutting_down: false,
                health,
                access_log,
                tls_port: listeners.tls_port(),
            },
            poll,
            listeners,
            sessions: Slab::new(),
            control,
            ready: Vec::new(),
            driving: Vec::new(),
            shutdown_deadline: None,
        })
    }

    /// Index for logs and the thread name.
    pub fn id(&self) -> usize {
        self.id
    }

    /// The event loop; returns after shutdown completes.
    pub fn run(mut self) {
        let mut events = Events::with_capacity(EVENTS);
        loop {
            let timeout = self.poll_timeout();
            if let Err(e) = self.poll.poll(&mut events, timeout) {
                if e.kind() == io::ErrorKind::Interrupted {
                    continue;
                }
                log::error!("worker={} poll failed: {e}", self.id);
                break;
            }
            self.env.now = Instant::now();
            for event in events.iter() {
                let closed = event.is_read_closed() || event.is_error();
                let readable = event.is_readable() || closed;
                let writable = event.is_writable() || event.is_write_closed() || event.is_error();
                self.dispatch(token::classify(event.token()), readable, writable, closed);
            }
            if self.listeners.is_ready() || self.listeners.paused_until().is_some() {
                self.accept();
            }
            self.run_ready();
            self.expire();
            self.flush_stats();
            if let Some(deadline) = self.shutdown_deadline {
                if self.sessions.is_empty() {
                    break;
                }
                if self.env.now >= deadline {
                    log::warn!(
                        "worker={} shutdown deadline passed, closing {} connections",
                        self.id,
                        self.sessions.len()
                    );
                    break;
                }
            }
        }
        self.close_everything();
        log::debug!("worker={} stopped", self.id);
    }

    fn poll_timeout(&self) -> Option<Duration> {
        let now = Instant::now();
        if !self.ready.is_empty() || self.listeners.is_ready() {
            return Some(Duration::ZERO);
        }
        let mut timeout = self.timers.next_timeout(now);
        let mut consider = |at: Option<Instant>| {
            if let Some(at) = at {
                let d = at.saturating_duration_since(now);
                timeout = Some(timeout.map_or(d, |t| t.min(d)));
            }
        };
        consider(self.env.upstreams.next_timeout(now).map(|d| now + d));
        consider(self.listeners.paused_until());
        consider(self.shutdown_deadline);
        // mio rounds a timeout up to whole milliseconds, so a deadline is never missed.
        timeout
    }

    fn dispatch(&mut self, target: Target, readable: bool, writable: bool, closed: bool) {
        match target {
            Target::Listener => self.listeners.on_event(Protocol::Http),
            Target::TlsListener => self.listeners.on_event(Protocol::Https),
            Target::Waker => self.handle_control(),
            Target::Session(sid) => {
                if let Some(s) = self.sessions.get_mut(sid) {
                    s.client_ready(readable, writable, closed);
                    schedule(&mut self.ready, s, sid);
                }
            }
            Target::Upstream(uid) => {
                let owner = self.env.upstreams.on_event(uid, readable, writable, closed);
                if let Some(s) = owner.and_then(|sid| self.sessions.get_mut(sid).map(|s| (sid, s)))
                {
                    schedule(&mut self.ready, s.1, s.0);
                }
            }
        }
    }

    fn accept(&mut self) {
        let max = self.env.config().server.max_connections;
        for _ in 0..ACCEPT_BATCH {
            let open = &self.env.shared.open_connections;
            let Some(accepted) = self.listeners.accept(self.env.now, open, max, self.id) else {
                return;
            };
            self.add_session(accepted);
        }
    }

    /// Registers an accepted connection (its `open_connections` slot is already taken).
    fn add_session(&mut self, accepted: Accepted) {
        let Accepted {
            stream,
            peer,
            local,
            protocol,
        } = accepted;
        let shared = &self.env.shared;
        let config = self.env.config();
        let trusted = &config.server.trusted_proxies;
        if !trusted.is_empty() && !trusted.iter().any(|c| c.contains(peer.ip())) {
            log::debug!("worker={} client={peer} not in trusted_proxies", self.id);
            shared.record_proxy_error("untrusted");
            shared.open_connections.fetch_sub(1, Ordering::Relaxed);
            return;
        }
        let expect_proxy = match protocol {
            Protocol::Http => config.server.proxy_protocol,
            Protocol::Https => config.tls.as_ref().is_some_and(|t| t.proxy_protocol),
        };
        let Some(transport) = self.transport(protocol) else {
            shared.open_connections.fetch_sub(1, Ordering::Relaxed);
            return;
        };
        if protocol == Protocol::Https {
            shared.tls_connections.fetch_add(1, Ordering::Relaxed);
        }
        shared.connections_total.fetch_add(1, Ordering::Relaxed);
        // Not registered with the poll yet: a client usually sends its request with the
        // connect, so the session is driven (read) at once, and registered only if it
        // has to wait for the client (`after_drive`). A connection answered without
        // waiting costs no epoll_ctl at all.
        let entry = self.sessions.vacant_entry();
        let sid = entry.key();
        let mut session = Session::new(stream, transport, peer, local, expect_proxy, &self.env);
        self.timers.arm(sid, session.deadline, &mut session.armed);
        schedule(&mut self.ready, &mut session, sid);
        entry.insert(session);
    }

    /// The transport for a connection accepted on a `protocol` listener; `None` when the
    /// snapshot in force has no TLS to offer (a reload removed `[tls]`).
    fn transport(&self, protocol: Protocol) -> Option<Transport> {
        match protocol {
            Protocol::Http => Some(Transport::Plain),
            #[cfg(feature = "tls")]
            Protocol::Https => {
                let server = &self.env.config().tls_server()?.server;
                match crate::tls::TlsConn::new(server) {
                    Ok(tls) => Some(Transport::Tls(Box::new(tls))),
                    Err(e) => {
                        log::warn!("worker={} tls: {e}", self.id);
                        None
                    }
                }
            }
            #[cfg(not(feature = "tls"))]
            Protocol::Https => None,
        }
    }

    fn run_ready(&mut self) {
        std::mem::swap(&mut self.ready, &mut self.driving);
        let mut driving = std::mem::take(&mut self.driving);
        for sid in driving.drain(..) {
            let Some(s) = self.sessions.get_mut(sid) else {
                continue;
            };
            s.scheduled = false;
            let result = s.drive(sid, &mut self.env);
            self.after_drive(sid, result);
        }
        self.driving = driving;
    }

    fn after_drive(&mut self, sid: usize, result: Drive) {
        if result == Drive::Finished {
            self.remove_session(sid);
            return;
        }
        let s = &mut self.sessions[sid];
        if result == Drive::Again {
            schedule(&mut self.ready, s, sid);
        }
        self.timers.arm(sid, s.deadline, &mut s.armed);
        if s.must_watch_client() {
            // Registered edge-triggered: the kernel reports the socket's present
            // readiness at once, so nothing that arrived meanwhile is missed.
            let registered = self.poll.registry().register(
                s.client(),
                token::session(sid),
                Interest::READABLE | Interest::WRITABLE,
            );
            match registered {
                Ok(()) => s.watched(),
                Err(e) => {
                    log::warn!("worker={} cannot register client: {e}", self.id);
                    self.remove_session(sid);
                }
            }
        }
    }

    fn expire(&mut self) {
        let now = self.env.now;
        self.env.upstreams.expire(now);
        while let Some((at, sid)) = self.timers.pop_due(now) {
            let Some(s) = self.sessions.get_mut(sid) else {
                continue;
            };
            if s.armed != Some(at) {
                continue; // stale entry
            }
            s.armed = None;
            if s.deadline > now {
                self.timers.arm(sid, s.deadline, &mut s.armed);
                continue;
            }
            let result = s.expire(sid, &mut self.env);
            self.after_drive(sid, result);
        }
    }

    fn remove_session(&mut self, sid: usize) {
        let mut s = self.sessions.remove(sid);
        s.close(&mut self.env);
        self.env.upstreams.release_session(sid);
        // No deregister: closing the socket (dropping `s`) takes it out of the epoll set.
        let shared = &self.env.shared;
        shared.open_connections.fetch_sub(1, Ordering::Relaxed);
        if s.is_tls() {
            shared.tls_connections.fetch_sub(1, Ordering::Relaxed);
        }
        // A slot freed up: try accepting again now rather than after a pause.
        self.listeners.slot_freed();
    }

    fn handle_control(&mut self) {
        while let Ok(msg) = self.control.try_recv() {
            match msg {
                WorkerMsg::Shutdown { deadline } => self.begin_shutdown(deadline),
                WorkerMsg::Reload(snapshot) => self.env.install(snapshot),
                WorkerMsg::BackendChanged {
                    generation,
                    index,
                    eligible,
                } => {
                    let current = generation == self.env.snapshot().generation;
                    match (eligible, current) {
                        (true, _) => {}
                        (false, true) => self.env.upstreams.close_idle(Some(index)),
                        // Reported against an older snapshot: the newer one may have
                        // carried the backend (and its idle connections) over.
                        (false, false) => self.env.upstreams.close_ineligible(),
                    }
                }
            }
        }
    }

    fn begin_shutdown(&mut self, deadline: Instant) {
        if self.shutdown_deadline.is_some() {
            return;
        }
        self.shutdown_deadline = Some(deadline);
        self.env.shutting_down = true;
        self.listeners.close(self.poll.registry());
        self.env.upstreams.shut_down();
        let idle: Vec<usize> = self
            .sessions
            .iter()
            .filter(|(_, s)| s.is_idle())
            .map(|(sid, _)| sid)
            .collect();
        for sid in idle {
            self.remove_session(sid);
        }
        for (sid, s) in self.sessions.iter_mut() {
            s.begin_shutdown();
            schedule(&mut self.ready, s, sid);
        }
    }

    fn close_everything(&mut self) {
        let sids: Vec<usize> = self.sessions.iter().map(|(sid, _)| sid).collect();
        for sid in sids {
            self.remove_session(sid);
        }
        self.env.upstreams.shut_down();
        self.flush_stats();
    }

    fn flush_stats(&mut self) {
        self.env.stats.flush(&self.env.shared);
    }
}

fn schedule(ready: &mut Vec<usize>, s: &mut Session, sid: usize) {
    if !s.scheduled {
        s.scheduled = true;
        ready.push(sid);
    }
}
