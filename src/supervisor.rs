//! The supervisor binds one `SO_REUSEPORT` listener per worker, spawns the workers, the
//! health thread, the access-log writer and the admin listener, publishes reloaded
//! configuration, and stops everything gracefully. [`Server`] is the library's entry
//! point: embedders and tests drive the real balancer through it.

use std::io;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex, RwLock};
use std::thread::JoinHandle;
use std::time::Instant;

use mio::{Poll, Waker};
use socket2::{Domain, Protocol, Socket, Type};

use crate::backend::AdminState;
use crate::config::Config;
use crate::control::{HealthMsg, Mailbox, Shared, Snapshot, WorkerMsg};
use crate::health::{self, HealthChecker};
use crate::worker::{token, Worker, WorkerSetup};

/// Pending connections the kernel queues per listener.
const BACKLOG: i32 = 1024;

/// The state the supervisor, the signal handler and the admin thread share: the snapshot
/// in force and the way to every thread. Reloads are serialised by `reloading`.
pub struct Control {
    current: RwLock<Arc<Snapshot>>,
    shared: Arc<Shared>,
    workers: Vec<Mailbox<WorkerMsg>>,
    health: Mailbox<HealthMsg>,
    config_path: Option<PathBuf>,
    reloading: Mutex<()>,
    local_addr: SocketAddr,
}

/// Why an admin action on a backend failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AdminError {
    /// No backend has that name.
    UnknownBackend,
}

impl Control {
    /// The snapshot in force.
    pub fn snapshot(&self) -> Arc<Snapshot> {
        Arc::clone(&self.current.read().unwrap_or_else(|e| e.into_inner()))
    }

    /// Process-wide counters.
    pub fn shared(&self) -> &Shared {
        &self.shared
    }

    /// Re-reads the configuration file and applies it. On error the old configuration
    /// stays and the error is returned (and counted, and logged).
    pub fn reload(&self) -> Result<(), String> {
        let Some(path) = &self.config_path else {
            log::warn!("reload ignored: lbd was not started from a configuration file");
            return Err("no configuration file to reload (started from a Config)".into());
        };
        match Config::load(path) {
            Ok(config) => self.apply(config),
            Err(e) => {
                self.shared.reloads_failed.fetch_add(1, Ordering::Relaxed);
                log::error!("reload failed path={} error={e}", path.display());
                Err(e.to_string())
            }
        }
    }

    /// Applies a validated configuration: new requests use it at once, exchanges in
    /// progress finish under the old one, no connection is dropped. Keys that need a
    /// restart (`server.listen`, `server.workers`) keep their running values.
    pub fn apply(&self, mut config: Config) -> Result<(), String> {
        let _guard = self.reloading.lock().unwrap_or_else(|e| e.into_inner());
        let old = self.snapshot();
        let running = &old.config.server;
        if config.server.listen != running.listen && config.server.listen != self.local_addr {
            log::warn!(
                "reload: server.listen changed to {}; restart to apply",
                config.server.listen
            );
        }
        if config.admin.as_ref().map(|a| a.listen) != old.config.admin.as_ref().map(|a| a.listen) {
            log::warn!("reload: [admin] changed; restart to apply");
        }
        if config.server.workers != running.workers {
            log::warn!(
                "reload: server.workers changed to {}; restart to apply",
                config.server.workers
            );
        }
        config.server.listen = running.listen;
        config.server.workers = running.workers;
        let snapshot = Arc::new(old.reload(config, Instant::now()));
        *self.current.write().unwrap_or_else(|e| e.into_inner()) = Arc::clone(&snapshot);
        for w in &self.workers {
            w.send(WorkerMsg::Reload(Arc::clone(&snapshot)));
        }
        self.health.send(HealthMsg::Reload(Arc::clone(&snapshot)));
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
        Ok(())
    }

    /// Sets a backend's admin state (`drain`, `enable`, `disable`). Drained and disabled
    /// backends take no new requests; their idle pooled connections close at once, and
    /// in-flight requests finish.
    pub fn set_admin_state(&self, name: &str, state: AdminState) -> Result<(), AdminError> {
        // Serialised with reloads, so a reload cannot copy the state from before this.
        let _guard = self.reloading.lock().unwrap_or_else(|e| e.into_inner());
        let snapshot = self.snapshot();
        let index = snapshot
            .backends
            .iter()
            .position(|b| b.name == name)
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
        if state != AdminState::Enabled {
            for w in &self.workers {
                w.send(WorkerMsg::BackendChanged {
                    generation: snapshot.generation,
                    index,
                    alive: false,
                });
            }
        }
        Ok(())
    }
}

/// A thread the supervisor started.
struct Thread(Option<JoinHandle<()>>);

impl Thread {
    fn join(&mut self) {
        if let Some(thread) = self.0.take() {
            let _ = thread.join();
        }
    }
}

/// A running balancer.
pub struct Server {
    control: Arc<Control>,
    workers: Vec<Thread>,
    health: Thread,
    admin: Option<crate::admin::Admin>,
    access_log: Thread,
}

impl Server {
    /// Binds the listeners and starts every thread. Port 0 in `server.listen` picks a free
    /// port, shared by every worker; [`Server::local_addr`] tells which.
    pub fn start(config: Config) -> io::Result<Server> {
        Self::launch(config, None)
    }

    /// Like [`Server::start`], remembering `path` for [`Server::reload`] (SIGHUP, admin).
    pub fn start_from_file(config: Config, path: &Path) -> io::Result<Server> {
        Self::launch(config, Some(path.to_path_buf()))
    }

    fn launch(config: Config, config_path: Option<PathBuf>) -> io::Result<Server> {
        let workers = config.server.workers;
        let snapshot = Arc::new(Snapshot::new(config));
        let shared = Arc::new(Shared::new());
        let mut addr = snapshot.config.server.listen;
        let mut listeners = Vec::with_capacity(workers);
        for _ in 0..workers {
            let listener = bind_reuseport(addr)?;
            addr = listener.local_addr()?;
            listeners.push(listener);
        }
        let (access_tx, access_thread) = crate::access::spawn_writer()?;
        let health_poll = Poll::new()?;
        let (health_box, health_rx) = mailbox(&health_poll, health::WAKER)?;
        let mut worker_boxes = Vec::with_capacity(workers);
        let mut threads = Vec::with_capacity(workers);
        for (id, listener) in listeners.into_iter().enumerate() {
            let poll = Poll::new()?;
            let (worker_box, rx) = mailbox(&poll, token::WAKER)?;
            let worker = Worker::new(WorkerSetup {
                id,
                listener,
                poll,
                control: rx,
                snapshot: Arc::clone(&snapshot),
                shared: Arc::clone(&shared),
                health: Some(health_box.clone()),
                access_log: Some(access_tx.clone()),
            })?;
            let thread = std::thread::Builder::new()
                .name(format!("lbd-worker-{id}"))
                .spawn(move || worker.run())?;
            worker_boxes.push(worker_box);
            threads.push(Thread(Some(thread)));
        }
        drop(access_tx);
        let checker = HealthChecker::new(
            health_poll,
            health_rx,
            Arc::clone(&snapshot),
            worker_boxes.clone(),
        );
        let health = Thread(Some(checker.spawn()?));
        log::info!("listening addr={addr} workers={workers}");
        for b in &snapshot.backends {
            log::info!(
                "backend name={} address={} weight={}",
                b.name,
                b.address,
                b.weight
            );
        }
        let admin_addr = snapshot.config.admin.as_ref().map(|a| a.listen);
        let control = Arc::new(Control {
            current: RwLock::new(snapshot),
            shared,
            workers: worker_boxes,
            health: health_box,
            config_path,
            reloading: Mutex::new(()),
            local_addr: addr,
        });
        let mut server = Server {
            control: Arc::clone(&control),
            workers: threads,
            health,
            admin: None,
            access_log: Thread(Some(access_thread)),
        };
        if let Some(admin_addr) = admin_addr {
            server.admin = Some(crate::admin::Admin::start(admin_addr, control)?);
        }
        Ok(server)
    }

    /// The address the listeners are bound to.
    pub fn local_addr(&self) -> SocketAddr {
        self.control.local_addr
    }

    /// The admin listener's address, when there is one.
    pub fn admin_addr(&self) -> Option<SocketAddr> {
        self.admin.as_ref().map(|a| a.local_addr())
    }

    /// The configuration and backends in force.
    pub fn snapshot(&self) -> Arc<Snapshot> {
        self.control.snapshot()
    }

    /// Process-wide counters.
    pub fn shared(&self) -> &Shared {
        self.control.shared()
    }

    /// The shared control state (reload, admin actions).
    pub fn control(&self) -> &Arc<Control> {
        &self.control
    }

    /// Re-reads the configuration file (see [`Control::reload`]).
    pub fn reload(&self) -> Result<(), String> {
        self.control.reload()
    }

    /// Begins a graceful shutdown: listeners close at once, in-flight exchanges get
    /// `timeouts.shutdown` to finish. Returns immediately; see [`Server::join`].
    pub fn shutdown(&self) {
        let shared = &self.control.shared;
        if shared.shutting_down.swap(true, Ordering::Relaxed) {
            return;
        }
        let timeout = self.control.snapshot().config.timeouts.shutdown;
        let deadline = Instant::now() + timeout;
        log::info!("shutdown begins timeout={timeout:?}");
        for w in &self.control.workers {
            w.send(WorkerMsg::Shutdown { deadline });
        }
    }

    /// Waits for every worker to finish, then stops the other threads.
    pub fn join(mut self) {
        self.join_all();
    }

    /// Shuts down gracefully and waits.
    pub fn stop(self) {
        self.shutdown();
        self.join();
    }

    fn join_all(&mut self) {
        for w in &mut self.workers {
            w.join();
        }
        self.control.health.send(HealthMsg::Shutdown);
        self.health.join();
        if let Some(admin) = self.admin.take() {
            admin.stop();
        }
        // The writer ends when the last worker's sender is gone.
        self.access_log.join();
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.shutdown();
        self.join_all();
    }
}

/// A channel whose receiver belongs to the thread polling `poll`, woken through `token`.
fn mailbox<T>(
    poll: &Poll,
    token: mio::Token,
) -> io::Result<(Mailbox<T>, crossbeam_channel::Receiver<T>)> {
    let (tx, rx) = crossbeam_channel::unbounded();
    let waker = Arc::new(Waker::new(poll.registry(), token)?);
    Ok((Mailbox::new(tx, waker), rx))
}

/// Binds a listening socket with `SO_REUSEPORT`, so every worker has its own accept
/// queue on the same address and the kernel spreads connections among them.
fn bind_reuseport(addr: SocketAddr) -> io::Result<std::net::TcpListener> {
    let socket = Socket::new(Domain::for_address(addr), Type::STREAM, Some(Protocol::TCP))?;
    socket.set_reuse_address(true)?;
    socket.set_reuse_port(true)?;
    socket.set_nonblocking(true)?;
    socket
        .bind(&addr.into())
        .map_err(|e| io::Error::new(e.kind(), format!("bind {addr}: {e}")))?;
    socket.listen(BACKLOG)?;
    Ok(socket.into())
}
