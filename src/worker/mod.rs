//! A Worker is one thread with one `mio::Poll`: its own `SO_REUSEPORT` listener, its
//! sessions and upstream connections in slabs, its idle-upstream pool and its deadline
//! heap. Its loop is a dispatcher: poll, handle events, drive ready sessions, expire
//! deadlines. Nothing here sleeps or blocks.

use std::io;
use std::net::SocketAddr;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use crossbeam_channel::Receiver;
use mio::net::{TcpListener, TcpStream};
use mio::{Events, Interest, Poll, Registry};
use slab::Slab;

use crate::backend::Backend;
use crate::buffer::BufPool;
use crate::control::{HealthMsg, Mailbox, WorkerMsg};
use crate::net::{self, Io};
use crate::pool::UpstreamPool;
use crate::session::{Drive, Session};
use crate::snapshot::Snapshot;
use crate::stats::{LocalStats, Shared};
use crate::timer::{TimerKey, Timers};
use crate::token::{self, Target};
use crate::upstream::Upstream;

/// Most connections accepted per wake before serving others.
const ACCEPT_BATCH: usize = 64;
/// How long accepting pauses after `EMFILE` and friends, or at `max_connections`.
const ACCEPT_PAUSE: Duration = Duration::from_millis(50);
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

/// Everything a session needs from its worker besides itself.
pub struct Env {
    /// Registers upstream sockets.
    pub registry: Registry,
    /// Upstream connections, by slab index (see [`token`]).
    pub upstreams: Slab<Upstream>,
    /// Idle upstream connections.
    pub pool: UpstreamPool,
    /// Spare buffer storage.
    pub bufs: BufPool,
    /// Spare storage for the response direction (`upstream_in`, `client_out`): larger,
    /// so a typical response crosses lbd in one read and one write.
    pub big_bufs: BufPool,
    /// Deadlines.
    pub timers: Timers,
    /// The configuration in force for new requests.
    pub snapshot: Arc<Snapshot>,
    /// `snapshot.generation`.
    pub generation: u64,
    /// Backend slots held by exchanges under `snapshot`.
    pub holders: usize,
    /// Earlier snapshots that exchanges on this worker still hold backend slots in, with
    /// their holder counts; dropped when the count reaches zero.
    pub retired: Vec<(Arc<Snapshot>, usize)>,
    /// Process-wide counters.
    pub shared: Arc<Shared>,
    /// This worker's counters not yet added to `shared`.
    pub stats: LocalStats,
    /// The time at the top of this loop turn.
    pub now: Instant,
    /// Shutdown has begun: finish exchanges, keep nothing alive.
    pub shutting_down: bool,
    /// Where passive down-marks go (the health thread), when there is one.
    pub health: Option<Mailbox<HealthMsg>>,
    /// Where access-log lines go, when the access log is on.
    pub access_log: Option<crossbeam_channel::Sender<String>>,
}

impl Env {
    /// The backend `index` of snapshot `generation` (current or retired but held).
    pub fn backend(&self, generation: u64, index: usize) -> &Arc<Backend> {
        if generation == self.generation {
            return &self.snapshot.backends[index];
        }
        let (snapshot, _) = self
            .retired
            .iter()
            .find(|(s, _)| s.generation == generation)
            .expect("a held generation is kept");
        &snapshot.backends[index]
    }

    /// Records that an exchange took a backend slot under the current snapshot.
    pub fn hold(&mut self) -> u64 {
        self.holders += 1;
        self.generation
    }

    /// Releases a slot taken under `generation`; a retired snapshot nobody holds is dropped.
    pub fn unhold(&mut self, generation: u64) {
        if generation == self.generation {
            self.holders -= 1;
            return;
        }
        if let Some(i) = self
            .retired
            .iter()
            .position(|(s, _)| s.generation == generation)
        {
            self.retired[i].1 -= 1;
            if self.retired[i].1 == 0 {
                self.retired.swap_remove(i);
            }
        }
    }

    /// Puts a new snapshot in force; exchanges in progress keep theirs.
    pub fn install(&mut self, snapshot: Arc<Snapshot>) {
        self.clear_pool(None);
        let old = std::mem::replace(&mut self.snapshot, snapshot);
        if self.holders > 0 {
            self.retired.push((old, self.holders));
        }
        self.holders = 0;
        self.generation = self.snapshot.generation;
    }

    /// A pooled connection to `backend`, now owned by session `owner`.
    pub fn take_pooled(&mut self, backend: usize, owner: usize) -> Option<usize> {
        let uid = self.pool.take(backend)?;
        self.snapshot.backends[backend].add_idle(-1);
        let up = &mut self.upstreams[uid];
        up.owner = Some(owner);
        up.idle_deadline = None;
        Some(uid)
    }

    /// Starts a connect to backend `index` of snapshot `generation` for session `owner`.
    pub fn open_upstream(
        &mut self,
        generation: u64,
        index: usize,
        owner: usize,
    ) -> io::Result<usize> {
        let b = Arc::clone(self.backend(generation, index));
        let mut up = Upstream::connect(b.address, index, generation, owner)?;
        let entry = self.upstreams.vacant_entry();
        let uid = entry.key();
        self.registry.register(
            &mut up.stream,
            token::upstream(uid),
            Interest::READABLE | Interest::WRITABLE,
        )?;
        entry.insert(up);
        b.connections_total.fetch_add(1, Ordering::Relaxed);
        Ok(uid)
    }

    /// Gives a connection back after an exchange: pooled when `reusable` and clean,
    /// closed otherwise.
    pub fn release_upstream(&mut self, uid: usize, reusable: bool) {
        if reusable && !self.shutting_down && self.pool_accepts(uid) {
            let deadline = self.now + self.snapshot.config.timeouts.upstream_idle;
            let up = &mut self.upstreams[uid];
            up.owner = None;
            up.exchanges += 1;
            up.idle_deadline = Some(deadline);
            self.timers
                .arm(TimerKey::Upstream(uid), deadline, &mut up.armed);
            if self.pool.put(up.backend, uid) {
                self.snapshot.backends[up.backend].add_idle(1);
                return;
            }
        }
        self.close_upstream(uid);
    }

    /// Spec §7.4: only a connection of this snapshot to a backend that may be picked,
    /// with no pending input (no stray bytes, no EOF), may idle in the pool.
    fn pool_accepts(&mut self, uid: usize) -> bool {
        let up = &mut self.upstreams[uid];
        if up.read_closed
            || up.generation != self.generation
            || !self.snapshot.backends[up.backend].is_eligible()
        {
            return false;
        }
        if up.readable {
            let mut probe = [0u8; 1];
            match net::read(&mut up.stream, &mut probe) {
                Io::WouldBlock => up.readable = false,
                _ => return false,
            }
        }
        true
    }

    /// Closes a pooled connection that expired, closed or may no longer be used.
    pub fn discard_pooled(&mut self, uid: usize) {
        let backend = self.upstreams[uid].backend;
        self.pool.remove(backend, uid);
        self.snapshot.backends[backend].add_idle(-1);
        self.close_upstream(uid);
    }

    /// Closes the pooled connections to one backend (`Some`) or to all (`None`).
    pub fn clear_pool(&mut self, backend: Option<usize>) {
        let uids = match backend {
            Some(b) => self.pool.drain_backend(b),
            None => self.pool.drain_all(),
        };
        for uid in uids {
            let b = self.upstreams[uid].backend;
            self.snapshot.backends[b].add_idle(-1);
            self.close_upstream(uid);
        }
    }

    /// Closes an upstream connection (not pooled).
    pub fn close_upstream(&mut self, uid: usize) {
        let mut up = self.upstreams.remove(uid);
        let _ = self.registry.deregister(&mut up.stream);
    }

    /// The access-log channel, when `log.access` is on in the snapshot in force.
    pub fn access_log(&self) -> Option<&crossbeam_channel::Sender<String>> {
        self.access_log
            .as_ref()
            .filter(|_| self.snapshot.config.log.access)
    }

    /// Reports a backend whose connects keep failing.
    pub fn report_down(&mut self, generation: u64, index: usize) {
        if let Some(health) = &self.health {
            health.send(HealthMsg::ReportDown { generation, index });
        }
    }
}

/// What starting a worker needs.
pub struct WorkerSetup {
    /// Index for logs.
    pub id: usize,
    /// The bound, listening socket.
    pub listener: std::net::TcpListener,
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
    listener: Option<TcpListener>,
    local: SocketAddr,
    sessions: Slab<Session>,
    env: Env,
    control: Receiver<WorkerMsg>,
    /// Sessions to drive this turn (each at most once: `Session::scheduled`).
    ready: Vec<usize>,
    /// Spare list swapped with `ready` while driving.
    driving: Vec<usize>,
    /// The listener may have connections waiting.
    accept_ready: bool,
    accept_paused_until: Option<Instant>,
    /// Accepting hit a resource limit (EMFILE, ...) and has not succeeded since.
    accept_starved: bool,
    shutdown_deadline: Option<Instant>,
}

impl Worker {
    /// Registers the listener and builds the worker.
    pub fn new(setup: WorkerSetup) -> io::Result<Worker> {
        let WorkerSetup {
            id,
            listener,
            poll,
            control,
            snapshot,
            shared,
            health,
            access_log,
        } = setup;
        listener.set_nonblocking(true)?;
        let local = listener.local_addr()?;
        let mut listener = TcpListener::from_std(listener);
        poll.registry()
            .register(&mut listener, token::LISTENER, Interest::READABLE)?;
        let size = BUFFER_SIZE.max(snapshot.config.limits.head_bytes);
        Ok(Worker {
            id,
            env: Env {
                registry: poll.registry().try_clone()?,
                upstreams: Slab::new(),
                pool: UpstreamPool::default(),
                bufs: BufPool::new(size, SPARE_BUFFERS),
                big_bufs: BufPool::new(size.max(RESPONSE_BUFFER_SIZE), SPARE_BUFFERS / 2),
                timers: Timers::default(),
                generation: snapshot.generation,
                snapshot,
                holders: 0,
                retired: Vec::new(),
                shared,
                stats: LocalStats::default(),
                now: Instant::now(),
                shutting_down: false,
                health,
                access_log,
            },
            poll,
            listener: Some(listener),
            local,
            sessions: Slab::new(),
            control,
            ready: Vec::new(),
            driving: Vec::new(),
            accept_ready: true,
            accept_paused_until: None,
            accept_starved: false,
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
            if self.accept_ready {
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
        if !self.ready.is_empty() || (self.accept_ready && self.accept_paused_until.is_none()) {
            return Some(Duration::ZERO);
        }
        let mut timeout = self.env.timers.next_timeout(now);
        let mut consider = |at: Option<Instant>| {
            if let Some(at) = at {
                let d = at.saturating_duration_since(now);
                timeout = Some(timeout.map_or(d, |t| t.min(d)));
            }
        };
        consider(self.accept_paused_until);
        consider(self.shutdown_deadline);
        // mio rounds a timeout up to whole milliseconds, so a deadline is never missed.
        timeout
    }

    fn dispatch(&mut self, target: Target, readable: bool, writable: bool, closed: bool) {
        match target {
            Target::Listener => self.accept_ready = true,
            Target::Waker => self.handle_control(),
            Target::Session(sid) => {
                if let Some(s) = self.sessions.get_mut(sid) {
                    s.client_ready(readable, writable, closed);
                    schedule(&mut self.ready, s, sid);
                }
            }
            Target::Upstream(uid) => {
                let Some(up) = self.env.upstreams.get_mut(uid) else {
                    return;
                };
                up.readable |= readable;
                up.read_closed |= closed;
                up.writable |= writable;
                match up.owner {
                    Some(sid) => {
                        if let Some(s) = self.sessions.get_mut(sid) {
                            schedule(&mut self.ready, s, sid);
                        }
                    }
                    None if readable => self.check_idle_upstream(uid),
                    None => {}
                }
            }
        }
    }

    /// An idle pooled connection became readable: the backend closed it or sent stray
    /// bytes. Either way it can no longer be trusted with a request.
    fn check_idle_upstream(&mut self, uid: usize) {
        let up = &mut self.env.upstreams[uid];
        let mut probe = [0u8; 1];
        if let Io::WouldBlock = net::read(&mut up.stream, &mut probe) {
            up.readable = false;
            return;
        }
        self.env.discard_pooled(uid);
    }

    fn accept(&mut self) {
        if let Some(until) = self.accept_paused_until {
            if self.env.now < until {
                return;
            }
            self.accept_paused_until = None;
        }
        let max = self.env.snapshot.config.server.max_connections;
        for _ in 0..ACCEPT_BATCH {
            let Some(listener) = &self.listener else {
                self.accept_ready = false;
                return;
            };
            // Reserve a slot before accepting, so workers accepting at the same moment
            // cannot exceed the limit together.
            let open = &self.env.shared.open_connections;
            if open.fetch_add(1, Ordering::Relaxed) >= max {
                open.fetch_sub(1, Ordering::Relaxed);
                self.accept_paused_until = Some(self.env.now + ACCEPT_PAUSE);
                return;
            }
            let accepted = listener.accept();
            if accepted.is_err() {
                open.fetch_sub(1, Ordering::Relaxed);
            }
            match accepted {
                Ok((stream, peer)) => {
                    if self.accept_starved {
                        self.accept_starved = false;
                        log::info!("worker={} accepting again", self.id);
                    }
                    self.add_session(stream, peer);
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                    self.accept_ready = false;
                    return;
                }
                Err(e) if net::is_resource_exhaustion(&e) => {
                    // Once per episode: the pause repeats every ACCEPT_PAUSE until it clears.
                    if !self.accept_starved {
                        self.accept_starved = true;
                        log::warn!("worker={} accept paused: {e}", self.id);
                    }
                    self.accept_paused_until = Some(self.env.now + ACCEPT_PAUSE);
                    return;
                }
                // ECONNABORTED and the like concern one connection only.
                Err(e) => log::debug!("worker={} accept failed: {e}", self.id),
            }
        }
    }

    /// Registers an accepted connection (its `open_connections` slot is already taken).
    fn add_session(&mut self, mut stream: TcpStream, peer: SocketAddr) {
        let _ = stream.set_nodelay(true);
        let local = stream.local_addr().unwrap_or(self.local);
        let entry = self.sessions.vacant_entry();
        let sid = entry.key();
        if let Err(e) = self.env.registry.register(
            &mut stream,
            token::session(sid),
            Interest::READABLE | Interest::WRITABLE,
        ) {
            log::warn!("worker={} cannot register client: {e}", self.id);
            self.env
                .shared
                .open_connections
                .fetch_sub(1, Ordering::Relaxed);
            return;
        }
        let mut session = Session::new(stream, peer, local, &self.env);
        self.env
            .timers
            .arm(TimerKey::Session(sid), session.deadline, &mut session.armed);
        entry.insert(session);
        self.env
            .shared
            .connections_total
            .fetch_add(1, Ordering::Relaxed);
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
        match result {
            Drive::Finished => self.remove_session(sid),
            Drive::Again => {
                let s = &mut self.sessions[sid];
                schedule(&mut self.ready, s, sid);
                self.env
                    .timers
                    .arm(TimerKey::Session(sid), s.deadline, &mut s.armed);
            }
            Drive::Idle => {
                let s = &mut self.sessions[sid];
                self.env
                    .timers
                    .arm(TimerKey::Session(sid), s.deadline, &mut s.armed);
            }
        }
    }

    fn expire(&mut self) {
        let now = self.env.now;
        while let Some((at, key)) = self.env.timers.pop_due(now) {
            match key {
                TimerKey::Session(sid) => {
                    let Some(s) = self.sessions.get_mut(sid) else {
                        continue;
                    };
                    if s.armed != Some(at) {
                        continue; // stale entry
                    }
                    s.armed = None;
                    if s.deadline > now {
                        self.env.timers.arm(key, s.deadline, &mut s.armed);
                        continue;
                    }
                    let result = s.expire(sid, &mut self.env);
                    self.after_drive(sid, result);
                }
                TimerKey::Upstream(uid) => {
                    let Some(up) = self.env.upstreams.get_mut(uid) else {
                        continue;
                    };
                    if up.armed != Some(at) {
                        continue;
                    }
                    up.armed = None;
                    match up.idle_deadline {
                        Some(deadline) if up.owner.is_none() && deadline <= now => {
                            self.env.discard_pooled(uid);
                        }
                        Some(deadline) if up.owner.is_none() => {
                            self.env.timers.arm(key, deadline, &mut up.armed);
                        }
                        _ => {}
                    }
                }
            }
        }
    }

    fn remove_session(&mut self, sid: usize) {
        let mut s = self.sessions.remove(sid);
        s.close(&mut self.env);
        let _ = self.env.registry.deregister(s.client());
        self.env
            .shared
            .open_connections
            .fetch_sub(1, Ordering::Relaxed);
        if self.accept_paused_until.is_some() && self.listener.is_some() {
            // A slot freed up: try accepting again now rather than after the pause.
            self.accept_paused_until = None;
            self.accept_ready = true;
        }
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
                    if !eligible && generation == self.env.generation {
                        self.env.clear_pool(Some(index));
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
        if let Some(mut listener) = self.listener.take() {
            let _ = self.env.registry.deregister(&mut listener);
        }
        self.accept_ready = false;
        self.env.clear_pool(None);
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
        self.env.clear_pool(None);
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
