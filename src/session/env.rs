//! What a session borrows from its worker while it runs: the upstream connections, the
//! buffer pools, the snapshots, the counters, the clock reading of this loop turn, and
//! the ways out (health reports, access-log lines).

use std::sync::Arc;
use std::time::Instant;

use crossbeam_channel::Sender;

use crate::buffer::BufPool;
use crate::config::Config;
use crate::control::{HealthMsg, Mailbox};
use crate::snapshot::{Generations, Lease, Snapshot};
use crate::stats::{LocalStats, Shared};
use crate::upstream::Upstreams;

/// Everything a session needs from its worker besides itself.
pub struct Env {
    /// The worker's upstream connections, pooled or in use.
    pub upstreams: Upstreams,
    /// Spare storage for the request direction (`client_in`, `upstream_out`).
    pub bufs: BufPool,
    /// Spare storage for the response direction (`upstream_in`, `client_out`): larger,
    /// so a typical response crosses lbd in one read and one write.
    pub big_bufs: BufPool,
    /// The snapshot in force, and older ones exchanges still hold leases in.
    pub generations: Generations,
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
    pub access_log: Option<Sender<String>>,
    /// The port of this worker's TLS listener, with `[tls]` (for `redirect_http`).
    pub tls_port: Option<u16>,
}

impl Env {
    /// The snapshot in force for new requests.
    pub fn snapshot(&self) -> &Arc<Snapshot> {
        self.generations.current()
    }

    /// The configuration in force for new requests.
    pub fn config(&self) -> &Config {
        &self.generations.current().config
    }

    /// The access-log channel, when `log.access` is on in the snapshot in force.
    pub fn access_log(&self) -> Option<&Sender<String>> {
        self.access_log
            .as_ref()
            .filter(|_| self.config().log.access)
    }

    /// The TLS port a plain request is redirected to, when `tls.redirect_http` is on.
    pub fn redirect_port(&self) -> Option<u16> {
        self.config()
            .tls
            .as_ref()
            .filter(|t| t.redirect_http)
            .and(self.tls_port)
    }

    /// Reports a backend whose connects keep failing to the health thread.
    pub fn report_down(&self, lease: &Lease) {
        if let Some(health) = &self.health {
            health.send(HealthMsg::ReportDown {
                generation: lease.generation(),
                index: lease.index(),
            });
        }
    }

    /// Puts a reloaded snapshot in force; exchanges in progress keep theirs.
    pub fn install(&mut self, snapshot: Arc<Snapshot>) {
        self.upstreams.install(
            snapshot.generation,
            snapshot.config.timeouts.upstream_idle,
            &snapshot.backends,
            self.now,
        );
        self.generations.install(snapshot);
    }
}
