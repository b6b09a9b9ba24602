//! Every message that crosses threads, in one place, and [`Control`]: the state the
//! supervisor (its main thread, which handles signals) and the admin thread share to change a running lbd
//! (reload, backend admin states). Threads receive messages through a [`Mailbox`].

use std::path::PathBuf;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex, RwLock};
use std::time::Instant;

use crate::backend::AdminState;
use crate::config::Config;
use crate::snapshot::{Members, Snapshot};
use crate::stats::Shared;

/// Sent to a worker over its channel, followed by a wake of its `mio::Waker`.
#[derive(Debug)]
pub enum WorkerMsg {
    /// Stop accepting, finish in-flight exchanges by the deadline, then exit.
    Shutdown {
        /// Hard deadline for in-flight work.
        deadline: Instant,
    },
    /// A new configuration snapshot is in force for new requests.
    Reload(Arc<Snapshot>),
    /// A backend's health verdict or admin state changed; the pooled connections of one
    /// that may no longer be picked are dropped.
    BackendChanged {
        /// Snapshot generation `index` refers to.
        generation: u64,
        /// Index in that snapshot.
        index: usize,
        /// It may be picked now (alive and enabled).
        eligible: bool,
    },
}

/// Sent to the health thread (by workers, by [`Control`], and by the `Server`).
#[derive(Debug)]
pub enum HealthMsg {
    /// Stop probing and exit.
    Shutdown,
    /// Probe the backends of this snapshot from now on.
    Reload(Arc<Snapshot>),
    /// Connects to this backend (index in the current snapshot) kept failing: mark it
    /// down now; probes bring it back.
    ReportDown {
        /// Snapshot generation `index` refers to.
        generation: u64,
        /// Backend index.
        index: usize,
    },
}

/// A thread's inbox: a channel plus the `mio::Waker` that interrupts its poll.
#[derive(Debug)]
pub struct Mailbox<T> {
    tx: crossbeam_channel::Sender<T>,
    waker: Arc<mio::Waker>,
}

impl<T> Clone for Mailbox<T> {
    fn clone(&self) -> Self {
        Mailbox {
            tx: self.tx.clone(),
            waker: Arc::clone(&self.waker),
        }
    }
}

impl<T> Mailbox<T> {
    /// A channel whose receiver belongs to the thread polling the registry `waker` was
    /// made from.
    pub fn new(waker: mio::Waker) -> (Mailbox<T>, crossbeam_channel::Receiver<T>) {
        let (tx, rx) = crossbeam_channel::unbounded();
        let waker = Arc::new(waker);
        (Mailbox { tx, waker }, rx)
    }

    /// Sends and wakes; false when the thread is gone.
    pub fn send(&self, msg: T) -> bool {
        self.tx.send(msg).is_ok() && self.waker.wake().is_ok()
    }
}

/// Why an admin action on a backend failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AdminError {
    /// No backend has that name.
    UnknownBackend,
}

/// The snapshot in force and the way to every thread that holds one. Reloads and admin
/// actions are serialised by `changing`.
pub struct Control {
    current: RwLock<Arc<Snapshot>>,
    shared: Arc<Shared>,
    workers: Vec<Mailbox<WorkerMsg>>,
    health: Mailbox<HealthMsg>,
    config_path: Option<PathBuf>,
    /// The members of the DNS services, as the resolver reported them last; guarded by
    /// its mutex, which also serialises reloads, member changes and admin actions.
    changing: Mutex<Members>,
    /// The resolver thread, once started, to hand it a reload's services.
    #[cfg(feature = "dns")]
    resolver: Mutex<Option<crate::dns::resolver::Resolver>>,
}

impl Control {
    /// Control over running threads that hold `snapshot`.
    pub fn new(
        snapshot: Arc<Snapshot>,
        shared: Arc<Shared>,
        workers: Vec<Mailbox<WorkerMsg>>,
        health: Mailbox<HealthMsg>,
        config_path: Option<PathBuf>,
    ) -> Control {
        Control {
            current: RwLock::new(snapshot),
            shared,
            workers,
            health,
            config_path,
            changing: Mutex::new(Members::new()),
            #[cfg(feature = "dns")]
            resolver: Mutex::new(None),
        }
    }

    /// The members known when the first snapshot was built (none: the resolver starts
    /// after it and reports each service as it resolves).
    pub fn initial_members() -> Members {
        Members::new()
    }

    /// Starts the resolver thread for the snapshot's DNS services (spec §12); each
    /// member change it reports publishes a new snapshot. Nothing to do without services.
    #[cfg(feature = "dns")]
    pub fn start_resolver(self: &Arc<Control>) -> std::io::Result<()> {
        let snapshot = self.snapshot();
        let services = Snapshot::services(&snapshot.config);
        let weak = Arc::downgrade(self);
        let resolver = crate::dns::resolver::Resolver::spawn(
            dns_settings(&snapshot.config),
            services,
            move |update| {
                if let Some(control) = weak.upgrade() {
                    control.update_members(update);
                }
            },
        )?;
        *self.resolver.lock().unwrap_or_else(|e| e.into_inner()) = Some(resolver);
        Ok(())
    }

    /// Stops the resolver thread; `wait`: and waits for it (otherwise it ends on its
    /// own once a resolution in progress is over).
    #[cfg(feature = "dns")]
    pub fn stop_resolver(&self, wait: bool) {
        let resolver = self
            .resolver
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .take();
        if let (Some(resolver), true) = (resolver, wait) {
            resolver.stop();
        }
    }

    /// A DNS service's members changed: a new snapshot adds the new ones (under slow
    /// start) and leaves the vanished ones out (exchanges on them finish on the old one).
    #[cfg(feature = "dns")]
    fn update_members(&self, update: crate::dns::DnsUpdate) {
        let mut members = self.changing.lock().unwrap_or_else(|e| e.into_inner());
        let key = (update.service.host.clone(), update.service.port);
        let old = self.snapshot();
        if !Snapshot::services(&old.config).contains(&key) {
            // Resolved before a reload removed the service: nothing uses it now.
            return;
        }
        members.insert(key, update.members);
        let snapshot = Arc::new(old.reload(old.config.clone(), &members, Instant::now()));
        self.publish(&snapshot);
        log::info!(
            "dns members changed service={}:{} generation={}",
            update.service.host,
            update.service.port,
            snapshot.generation
        );
    }

    /// Puts `snapshot` in force for new requests everywhere.
    fn publish(&self, snapshot: &Arc<Snapshot>) {
        *self.current.write().unwrap_or_else(|e| e.into_inner()) = Arc::clone(snapshot);
        for w in &self.workers {
            w.send(WorkerMsg::Reload(Arc::clone(snapshot)));
        }
        self.health.send(HealthMsg::Reload(Arc::clone(snapshot)));
    }

    /// The snapshot in force.
    pub fn snapshot(&self) -> Arc<Snapshot> {
        Arc::clone(&self.current.read().unwrap_or_else(|e| e.into_inner()))
    }

    /// Process-wide counters.
    pub fn shared(&self) -> &Shared {
        &self.shared
    }

    /// Every worker's mailbox.
    pub fn workers(&self) -> &[Mailbox<WorkerMsg>] {
        &self.workers
    }

    /// The health thread's mailbox.
    pub fn health(&self) -> &Mailbox<HealthMsg> {
        &self.health
    }

    /// Re-reads the configuration file and applies it. On error the old configuration
    /// stays and the error is returned (and counted, and logged).
    pub fn reload(&self) -> Result<(), String> {
        let Some(path) = &self.config_path else {
            log::warn!("reload ignored: lbd was not started from a configuration file");
            return Err("no configuration file to reload (started from a Config)".into());
        };
        match Config::load(path) {
            Ok(config) => {
                self.apply(config);
                Ok(())
            }
            Err(e) => {
                self.shared.reloads_failed.fetch_add(1, Ordering::Relaxed);
                log::error!("reload failed path={} error={e}", path.display());
                Err(e.to_string())
            }
        }
    }

    /// Applies a validated configuration: new requests use it at once, exchanges in
    /// progress finish under the old one, no connection is dropped. Keys that need a
    /// restart (`server.listen`, `server.workers`, `[admin]`) keep their running values.
    pub fn apply(&self, config: Config) {
        let mut members = self.changing.lock().unwrap_or_else(|e| e.into_inner());
        let old = self.snapshot();
        let config = config.keeping_restart_keys(&old.config);
        for warning in config.warnings() {
            log::warn!("config: {warning}");
        }
        *members = Snapshot::carry_members(&members, &Snapshot::services(&config));
        let snapshot = Arc::new(old.reload(config, &members, Instant::now()));
        self.publish(&snapshot);
        #[cfg(feature = "dns")]
        if let Some(resolver) = &*self.resolver.lock().unwrap_or_else(|e| e.into_inner()) {
            resolver.reload(
                dns_settings(&snapshot.config),
                Snapshot::services(&snapshot.config),
            );
        }
        drop(members);
        self.shared.reloads_ok.fetch_add(1, Ordering::Relaxed);
        log::info!(
            "reload ok generation={} backends={}",
            snapshot.generation,
            snapshot
                .backends
                .iter()
                .map(|b| b.name.as_str())
                .collect::<Vec<_>>()
                .join(",")
        );
    }

    /// Sets a backend's admin state (`drain`, `enable`, `disable`). Drained and disabled
    /// backends take no new requests; their idle pooled connections close at once, and
    /// in-flight requests finish.
    pub fn set_admin_state(&self, name: &str, state: AdminState) -> Result<(), AdminError> {
        // Serialised with reloads, so a reload cannot copy the state from before this.
        let _guard = self.changing.lock().unwrap_or_else(|e| e.into_inner());
        let snapshot = self.snapshot();
        let index = snapshot
            .backend_index(name)
            .ok_or(AdminError::UnknownBackend)?;
        let backend = &snapshot.backends[index];
        let old = backend.admin_state();
        backend.set_admin_state(state);
        if old != state {
            log::info!(
                "backend={} admin={}->{}",
                backend.name,
                old.as_str(),
                state.as_str()
            );
        }
        for w in &self.workers {
            w.send(WorkerMsg::BackendChanged {
                generation: snapshot.generation,
                index,
                eligible: backend.is_eligible(),
            });
        }
        Ok(())
    }
}

/// The resolver settings of `[dns]`.
#[cfg(feature = "dns")]
fn dns_settings(config: &Config) -> crate::dns::DnsSettings {
    crate::dns::DnsSettings::new(config.dns.interval, config.dns.resolver)
}
