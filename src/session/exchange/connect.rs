//! Getting a connection for an attempt: pick a backend (unless one is held), take a
//! pooled connection to it or open one, wait for the connect; and when an attempt fails
//! before any response, let the retry policy decide what comes next.

use std::sync::atomic::Ordering;

use super::{Attempt, Exchange, Flow, HeadWait, Outcome};
use crate::balance::PickContext;
use crate::bounds::MAX_ATTEMPTS;
use crate::config::{HashKey, ProxyVersion};
use crate::fault::Fault;
use crate::net::{self, ConnectStatus};
use crate::proxy_protocol;
use crate::retry::{self, Attempts, Budget, Failure, Next};
use crate::session::{Conn, Env, Progress};
use crate::upstream::UpstreamId;

impl Exchange {
    /// Moves the attempt towards a connected upstream: picks, connects, or waits.
    pub(super) fn connect(&mut self, sid: usize, conn: &mut Conn, env: &mut Env) -> Flow {
        match self.attempt {
            Attempt::BackOff { until } if env.now < until => Flow::Continue(Progress::Idle),
            Attempt::Pick | Attempt::Reconnect | Attempt::BackOff { .. } => {
                self.attach(sid, conn, env)
            }
            Attempt::Connecting { up, .. } => match env.upstreams.poll_connect(up) {
                ConnectStatus::Pending => Flow::Continue(Progress::Idle),
                ConnectStatus::Connected => {
                    self.start(up, conn, env);
                    Flow::Continue(Progress::Moved)
                }
                ConnectStatus::Failed(e) => {
                    log::debug!("backend={} connect failed: {e}", self.backend_name(env));
                    Flow::Break(self.fail(Failure::Connect, conn, env))
                }
            },
            _ => Flow::Continue(Progress::Idle),
        }
    }

    /// Picks a backend if none is held, then gets a connection to it: a pooled one
    /// unless the attempt must be fresh, or a new connect.
    fn attach(&mut self, sid: usize, conn: &mut Conn, env: &mut Env) -> Flow {
        let fresh = !matches!(self.attempt, Attempt::Pick);
        if self.tries.lease.is_none() {
            let Some(index) = self.pick(conn, env) else {
                log::debug!("client={} no backend available", conn.addr);
                return Flow::Break(self.end(Fault::NoBackend, conn, env));
            };
            let n = self.tries.attempts.backends as usize;
            self.tries.tried[n] = index;
            self.tries.attempts = Attempts {
                backends: n as u32 + 1,
                connects: 0,
                fresh_retry_used: false,
            };
            self.tries.lease = Some(env.generations.lease(index));
        }
        let lease = self.tries.lease.as_ref().expect("held");
        let (generation, index) = (lease.generation(), lease.index());
        if !fresh {
            if let Some(up) = env.upstreams.take_idle(generation, index, sid) {
                self.start(up, conn, env);
                return Flow::Continue(Progress::Moved);
            }
        }
        self.tries.attempts.connects += 1;
        let backend = std::sync::Arc::clone(env.generations.backend(lease));
        // Spec §11: the backend learns the client's address (the one a PROXY header gave
        // lbd, if any) and the address it connected to.
        let preface = backend.send_proxy.map(|version| match version {
            ProxyVersion::V1 => proxy_protocol::write_v1(conn.addr, conn.local),
            ProxyVersion::V2 => proxy_protocol::write_v2(conn.addr, conn.local),
        });
        match env
            .upstreams
            .connect(&backend, generation, index, sid, preface)
        {
            Ok(up) => {
                self.attempt = Attempt::Connecting {
                    up,
                    deadline: env.now + env.config().timeouts.connect,
                };
                self.upstream_io = env.now;
                conn.upstream_in.clear();
                // Try the connect at once: a loopback connect is often done already.
                self.connect(sid, conn, env)
            }
            Err(e) if net::is_resource_exhaustion(&e) => {
                // No descriptor or memory for a socket here: not the backend's fault, so
                // no retries and no down-marking (spec §7.6); this client gets 503.
                log::warn!("backend={} no socket: {e}", backend.name);
                Flow::Break(self.end(Fault::NoBackend, conn, env))
            }
            Err(e) => {
                log::debug!("backend={} connect failed: {e}", backend.name);
                Flow::Break(self.fail(Failure::Connect, conn, env))
            }
        }
    }

    /// A backend for this request that it has not tried, within `retry.max_attempts`.
    fn pick(&mut self, conn: &Conn, env: &Env) -> Option<usize> {
        let snapshot = env.snapshot();
        let max = (snapshot.config.retry.max_attempts as usize).min(MAX_ATTEMPTS);
        let n = self.tries.attempts.backends as usize;
        if n >= max {
            return None;
        }
        if self.tries.tried_generation != snapshot.generation {
            // A reload renumbered the backends (and maybe the pools): earlier indexes
            // mean nothing now; the pool is found again by its name.
            self.tries.tried_generation = snapshot.generation;
            self.tries.tried_from = n;
            self.tries.pool = snapshot
                .pools
                .iter()
                .position(|p| p.key == self.tries.pool_key)?;
        }
        let pool = snapshot.pools.get(self.tries.pool)?;
        let hash = match pool.hash_key {
            HashKey::Ip => pool
                .balancer
                .needs_hash()
                .then(|| crate::hash::ip(conn.addr.ip())),
            HashKey::Header(_) => self.req.hash,
        };
        // The balancer sees the pool's backends only: retries stay within the pool, and
        // the backends tried are given to it in its own numbering.
        let mut tried = [usize::MAX; MAX_ATTEMPTS];
        let mut count = 0;
        for &t in &self.tries.tried[self.tries.tried_from..n] {
            if pool.range.contains(&t) {
                tried[count] = t - pool.range.start;
                count += 1;
            }
        }
        let ctx = PickContext {
            hash,
            tried: &tried[..count],
            now: env.now,
        };
        let picked = pool
            .balancer
            .pick(&snapshot.backends[pool.range.clone()], &ctx)?;
        Some(pool.range.start + picked)
    }

    /// A connected upstream: the request goes out from its first byte.
    fn start(&mut self, up: UpstreamId, conn: &mut Conn, env: &Env) {
        if !matches!(self.attempt, Attempt::Connecting { .. }) {
            conn.upstream_in.clear();
        }
        self.attempt = Attempt::Sending {
            up,
            head: HeadWait::default(),
        };
        self.sent = 0;
        self.upstream_io = env.now;
    }

    /// An attempt failed before any response: retry as the policy says, or answer.
    pub(super) fn fail(&mut self, failure: Failure, conn: &mut Conn, env: &mut Env) -> Outcome {
        self.release_upstream(false, env);
        // The connection is gone; whatever comes next starts without one.
        self.attempt = Attempt::Pick;
        let lease = self
            .tries
            .lease
            .as_ref()
            .expect("an attempt holds a backend");
        let backend = std::sync::Arc::clone(env.generations.backend(lease));
        backend.failures_total.fetch_add(1, Ordering::Relaxed);
        let policy = env.config().retry;
        let budget = Budget {
            same_backend: policy.same_backend,
            max_attempts: policy.max_attempts,
        };
        let replayable =
            self.req.method.is_idempotent() && self.body.replayable && self.body.dec.is_done();
        let decision = retry::decide(budget, &self.tries.attempts, failure, replayable);
        if decision.mark_down {
            env.report_down(lease);
        }
        self.attempt = match decision.next {
            Next::GiveUp(fault) => return self.end(fault, conn, env),
            Next::SameBackend => Attempt::BackOff {
                until: env.now + policy.delay,
            },
            Next::FreshConnection => {
                self.tries.attempts.fresh_retry_used = true;
                Attempt::Reconnect
            }
            Next::OtherBackend => {
                self.release_lease(env);
                Attempt::Pick
            }
        };
        // Send the request again from its first byte.
        if self.sent > 0 {
            conn.upstream_out.rewind_to(0);
        }
        env.stats.retries += 1;
        self.tries.retries += 1;
        backend.retries_total.fetch_add(1, Ordering::Relaxed);
        Outcome::Running(Progress::Moved)
    }
}
