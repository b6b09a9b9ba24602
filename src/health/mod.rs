//! Health checking: one dedicated `std::thread` with its own `mio::Poll` probes every
//! backend each `health.interval`, all probes in flight at once. Rise/fall hysteresis
//! decides flips; only this thread writes a backend's alive flag. Every flip is logged
//! once and sent to every worker, which drops its pooled connections to a dead backend.
//! Workers report backends whose connects keep failing; those go down at once and come
//! back only through probes.

mod hysteresis;
mod probe;

use std::io;
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Instant;

use crossbeam_channel::Receiver;
use mio::{Events, Interest, Poll};

use hysteresis::Hysteresis;
use probe::{Probe, Verdict};

use crate::config::ProxyVersion;
use crate::control::{HealthMsg, Mailbox, WorkerMsg};
use crate::proxy_protocol;
use crate::snapshot::Snapshot;
use crate::token::{self, HealthTarget};

/// The longest the health thread sleeps with nothing to probe (no pool at all).
const IDLE_WAIT: std::time::Duration = std::time::Duration::from_secs(60);

/// The health thread's state.
pub struct HealthChecker {
    poll: Poll,
    rx: Receiver<HealthMsg>,
    snapshot: Arc<Snapshot>,
    workers: Vec<Mailbox<WorkerMsg>>,
    /// Per backend, in snapshot order.
    states: Vec<Hysteresis>,
    /// Per backend: the probe in flight, if any.
    probes: Vec<Option<Probe>>,
    /// Per pool (each has its own `health.interval`): when its next round starts.
    next_round: Vec<Instant>,
}

impl HealthChecker {
    /// A checker for `snapshot`'s backends, polling on `poll` (whose registry made the
    /// waker behind the health mailbox), reporting flips to `workers`.
    pub fn new(
        poll: Poll,
        rx: Receiver<HealthMsg>,
        snapshot: Arc<Snapshot>,
        workers: Vec<Mailbox<WorkerMsg>>,
    ) -> HealthChecker {
        let n = snapshot.backends.len();
        HealthChecker {
            poll,
            rx,
            states: snapshot
                .backends
                .iter()
                .map(|b| Hysteresis::new(b.is_alive()))
                .collect(),
            probes: (0..n).map(|_| None).collect(),
            next_round: vec![Instant::now(); snapshot.pools.len()],
            snapshot,
            workers,
        }
    }

    /// Starts the thread.
    pub fn spawn(self) -> io::Result<JoinHandle<()>> {
        std::thread::Builder::new()
            .name("lbd-health".into())
            .spawn(move || self.run())
    }

    fn run(mut self) {
        let mut events = Events::with_capacity(256);
        loop {
            let now = Instant::now();
            for p in 0..self.next_round.len() {
                if now >= self.next_round[p] {
                    self.start_round(p, now);
                    self.next_round[p] = now + self.snapshot.pools[p].health.interval;
                }
            }
            let next = self
                .probes
                .iter()
                .flatten()
                .map(|p| p.deadline)
                .chain(self.next_round.iter().copied())
                .fold(now + IDLE_WAIT, Instant::min);
            if let Err(e) = self
                .poll
                .poll(&mut events, Some(next.saturating_duration_since(now)))
            {
                if e.kind() == io::ErrorKind::Interrupted {
                    continue;
                }
                log::error!("health poll failed: {e}");
                return;
            }
            for event in events.iter() {
                match token::classify_health(event.token()) {
                    HealthTarget::Waker => {
                        if !self.handle_messages() {
                            return;
                        }
                    }
                    HealthTarget::Probe(i) => self.advance(i),
                }
            }
            self.expire(Instant::now());
        }
    }

    /// Returns false on shutdown.
    fn handle_messages(&mut self) -> bool {
        while let Ok(msg) = self.rx.try_recv() {
            match msg {
                HealthMsg::Shutdown => return false,
                HealthMsg::Reload(snapshot) => self.install(snapshot),
                HealthMsg::ReportDown { generation, index } => {
                    if generation != self.snapshot.generation {
                        continue; // the index belongs to an older snapshot
                    }
                    if let Some(state) = self.states.get_mut(index) {
                        if state.force_down() {
                            self.flip(index, false, "connect retries exhausted");
                        }
                    }
                }
            }
        }
        true
    }

    /// Switches to a reloaded snapshot: carried-over backends keep their hysteresis, new
    /// ones start from their current verdict; probes in flight are dropped and a round
    /// starts at once.
    fn install(&mut self, snapshot: Arc<Snapshot>) {
        for i in 0..self.probes.len() {
            if let Some(mut probe) = self.probes[i].take() {
                let _ = self.poll.registry().deregister(&mut probe.stream);
            }
        }
        let states = snapshot
            .backends
            .iter()
            .map(|b| {
                self.snapshot
                    .backends
                    .iter()
                    .position(|old| Arc::ptr_eq(old, b))
                    .map_or(Hysteresis::new(b.is_alive()), |i| self.states[i])
            })
            .collect();
        self.states = states;
        self.probes = (0..snapshot.backends.len()).map(|_| None).collect();
        self.next_round = vec![Instant::now(); snapshot.pools.len()];
        self.snapshot = snapshot;
    }

    /// Starts a probe of every backend of pool `p` that has none in flight.
    fn start_round(&mut self, p: usize, now: Instant) {
        let snapshot = Arc::clone(&self.snapshot);
        let pool = &snapshot.pools[p];
        let health = &pool.health;
        for i in pool.range.clone() {
            let backend = &snapshot.backends[i];
            if self.probes[i].is_some() {
                continue; // still running: its deadline settles it
            }
            // Spec §11: a probe has no client behind it.
            let preface = backend.send_proxy.map(|version| match version {
                ProxyVersion::V1 => proxy_protocol::write_v1_unknown(),
                ProxyVersion::V2 => proxy_protocol::write_v2_local(),
            });
            match Probe::start(
                backend.address,
                health.path.as_deref(),
                preface.as_ref().map(|h| h.as_bytes()),
                now + health.timeout,
            ) {
                Ok(mut probe) => {
                    let registered = self.poll.registry().register(
                        &mut probe.stream,
                        token::probe(i),
                        Interest::READABLE | Interest::WRITABLE,
                    );
                    match registered {
                        Ok(()) => self.probes[i] = Some(probe),
                        Err(e) => self.record(i, false, &format!("register: {e}")),
                    }
                }
                // No descriptor or memory for a socket here says nothing about the
                // backend (spec §7.6): no verdict this round.
                Err(e) if crate::net::is_resource_exhaustion(&e) => {
                    log::warn!("backend={} probe skipped: {e}", backend.name);
                }
                Err(e) => self.record(i, false, &format!("connect: {e}")),
            }
        }
    }

    fn advance(&mut self, i: usize) {
        let Some(probe) = self.probes.get_mut(i).and_then(Option::as_mut) else {
            return;
        };
        match probe.advance() {
            Verdict::Pending => {}
            Verdict::Healthy => self.finish(i, true, "probe passed"),
            Verdict::Unhealthy(reason) => self.finish(i, false, &reason),
        }
    }

    fn expire(&mut self, now: Instant) {
        for i in 0..self.probes.len() {
            if self.probes[i].as_ref().is_some_and(|p| p.deadline <= now) {
                self.finish(i, false, "probe timed out");
            }
        }
    }

    fn finish(&mut self, i: usize, ok: bool, reason: &str) {
        if let Some(mut probe) = self.probes[i].take() {
            let _ = self.poll.registry().deregister(&mut probe.stream);
        }
        self.record(i, ok, reason);
    }

    fn record(&mut self, i: usize, ok: bool, reason: &str) {
        let backend = &self.snapshot.backends[i];
        backend.record_probe(ok);
        if !ok {
            log::debug!("backend={} probe failed: {reason}", backend.name);
        }
        let health = &self.snapshot.pool_of(i).health;
        if let Some(alive) = self.states[i].observe(ok, health.rise, health.fall) {
            self.flip(i, alive, reason);
        }
    }

    fn flip(&mut self, i: usize, alive: bool, reason: &str) {
        let backend = &self.snapshot.backends[i];
        let was = backend.set_alive(alive, Instant::now());
        let word = |up: bool| if up { "up" } else { "down" };
        log::info!(
            "backend={} state={}->{} reason={reason:?}",
            backend.name,
            word(was),
            word(alive)
        );
        for w in &self.workers {
            w.send(WorkerMsg::BackendChanged {
                generation: self.snapshot.generation,
                index: i,
                eligible: backend.is_eligible(),
            });
        }
    }
}
