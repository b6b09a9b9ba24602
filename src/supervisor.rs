//! The supervisor binds one `SO_REUSEPORT` listener per worker, spawns the workers, the
//! health thread, the access-log writer and the admin listener, publishes reloaded
//! configuration, and stops everything gracefully. [`Server`] is the library's entry
//! point: embedders and tests drive the real balancer through it.

use std::io;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Instant;

use mio::{Poll, Waker};
use socket2::{Domain, Protocol, Socket, Type};

use crate::admin::Admin;
use crate::config::Config;
use crate::control::{Control, HealthMsg, Mailbox, WorkerMsg};
use crate::health::HealthChecker;
use crate::snapshot::Snapshot;
use crate::stats::Shared;
use crate::token;
use crate::worker::{Worker, WorkerSetup};

/// Pending connections the kernel queues per listener.
const BACKLOG: i32 = 1024;

/// A running balancer. [`Server::stop`] (or [`Server::shutdown`] then [`Server::join`])
/// stops it gracefully; dropping it instead stops every thread at once without waiting
/// for in-flight requests or for the threads.
pub struct Server {
    control: Arc<Control>,
    local_addr: SocketAddr,
    tls_addr: Option<SocketAddr>,
    workers: Vec<JoinHandle<()>>,
    health: Option<JoinHandle<()>>,
    admin: Option<Admin>,
    access_log: Option<JoinHandle<()>>,
}

impl Server {
    /// Binds the listeners and starts every thread. Port 0 in `server.listen` picks a free
    /// port, shared by every worker; [`Server::local_addr`] tells which. If any part fails
    /// to start, what was started is stopped and joined before the error returns: no
    /// thread or listener is left behind.
    pub fn start(config: Config) -> io::Result<Server> {
        Self::launch(config, None)
    }

    /// Like [`Server::start`], remembering `path` for [`Server::reload`] (SIGHUP, admin).
    pub fn start_from_file(config: Config, path: &Path) -> io::Result<Server> {
        Self::launch(config, Some(path.to_path_buf()))
    }

    fn launch(config: Config, config_path: Option<PathBuf>) -> io::Result<Server> {
        let workers = config.server.workers;
        let snapshot = Arc::new(Snapshot::new(config, &Control::initial_members()));
        let shared = Arc::new(Shared::default());
        let (listeners, addr) = bind_all(snapshot.config.server.listen, workers)?;
        let (tls_listeners, tls_addr): (Vec<Option<_>>, _) = match &snapshot.config.tls {
            Some(tls) => {
                let (list, addr) = bind_all(tls.listen, workers)?;
                (list.into_iter().map(Some).collect(), Some(addr))
            }
            None => ((0..workers).map(|_| None).collect(), None),
        };
        let (access_tx, access_rx) = crate::access::channel();
        let health_poll = Poll::new()?;
        let (health_box, health_rx) =
            Mailbox::new(Waker::new(health_poll.registry(), token::HEALTH_WAKER)?);
        // Every worker is built before any thread starts, so a failure here leaves
        // nothing running.
        let mut built = Vec::with_capacity(workers);
        let mut worker_boxes = Vec::with_capacity(workers);
        for (id, (listener, tls_listener)) in listeners.into_iter().zip(tls_listeners).enumerate() {
            let poll = Poll::new()?;
            let (worker_box, rx) = Mailbox::new(Waker::new(poll.registry(), token::WAKER)?);
            built.push(Worker::new(WorkerSetup {
                id,
                listener,
                tls_listener,
                poll,
                control: rx,
                snapshot: Arc::clone(&snapshot),
                shared: Arc::clone(&shared),
                health: Some(health_box.clone()),
                access_log: Some(access_tx.clone()),
            })?);
            worker_boxes.push(worker_box);
        }
        drop(access_tx);
        let access_thread = crate::access::spawn_writer(access_rx)?;
        let checker = HealthChecker::new(
            health_poll,
            health_rx,
            Arc::clone(&snapshot),
            worker_boxes.clone(),
        );
        let admin_addr = snapshot.config.admin.as_ref().map(|a| a.listen);
        let control = Arc::new(Control::new(
            Arc::clone(&snapshot),
            shared,
            worker_boxes,
            health_box,
            config_path,
        ));
        let mut server = Server {
            control,
            local_addr: addr,
            tls_addr,
            workers: Vec::with_capacity(workers),
            health: None,
            admin: None,
            access_log: Some(access_thread),
        };
        for worker in built {
            let id = worker.id();
            match std::thread::Builder::new()
                .name(format!("lbd-worker-{id}"))
                .spawn(move || worker.run())
            {
                Ok(thread) => server.workers.push(thread),
                Err(e) => return Err(server.abort(e)),
            }
        }
        match checker.spawn() {
            Ok(thread) => server.health = Some(thread),
            Err(e) => return Err(server.abort(e)),
        }
        #[cfg(feature = "dns")]
        if let Err(e) = server.control.start_resolver() {
            return Err(server.abort(e));
        }
        log::info!("listening addr={addr} workers={workers}");
        if let Some(tls_addr) = tls_addr {
            log::info!("listening tls addr={tls_addr}");
        }
        for warning in snapshot.config.warnings() {
            log::warn!("config: {warning}");
        }
        for b in &snapshot.backends {
            log::info!(
                "backend name={} address={} weight={}",
                b.name,
                b.address,
                b.weight
            );
        }
        if let Some(admin_addr) = admin_addr {
            match Admin::start(admin_addr, Arc::clone(&server.control)) {
                Ok(admin) => server.admin = Some(admin),
                Err(e) => return Err(server.abort(e)),
            }
        }
        Ok(server)
    }

    /// Stops and joins whatever started, for a launch that failed with `error`.
    fn abort(mut self, error: io::Error) -> io::Error {
        log::error!("start failed: {error}");
        self.signal_shutdown(Instant::now());
        self.join_all();
        error
    }

    /// The address the listeners are bound to.
    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    /// The address the TLS listeners are bound to, with `[tls]`.
    pub fn tls_addr(&self) -> Option<SocketAddr> {
        self.tls_addr
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

    /// Re-reads the configuration file (see [`Control::reload`]).
    pub fn reload(&self) -> Result<(), String> {
        self.control.reload()
    }

    /// Begins a graceful shutdown: listeners close at once, in-flight exchanges get
    /// `timeouts.shutdown` to finish. Returns immediately; see [`Server::join`].
    pub fn shutdown(&self) {
        let timeout = self.control.snapshot().config.timeouts.shutdown;
        if self.signal_shutdown(Instant::now() + timeout) {
            log::info!("shutdown begins timeout={timeout:?}");
        }
    }

    /// Tells every worker to finish by `deadline`; false when a shutdown had begun.
    fn signal_shutdown(&self, deadline: Instant) -> bool {
        if self
            .control
            .shared()
            .shutting_down
            .swap(true, Ordering::Relaxed)
        {
            return false;
        }
        for w in self.control.workers() {
            w.send(WorkerMsg::Shutdown { deadline });
        }
        true
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
        for w in self.workers.drain(..) {
            let _ = w.join();
        }
        #[cfg(feature = "dns")]
        self.control.stop_resolver(true);
        self.control.health().send(HealthMsg::Shutdown);
        if let Some(health) = self.health.take() {
            let _ = health.join();
        }
        if let Some(admin) = self.admin.take() {
            admin.stop();
        }
        // The writer ends when the last worker's sender is gone.
        if let Some(writer) = self.access_log.take() {
            let _ = writer.join();
        }
    }
}

impl Drop for Server {
    /// Releases the threads: each stops at once (no drain), nobody waits for them.
    fn drop(&mut self) {
        if !self.workers.is_empty() {
            self.signal_shutdown(Instant::now());
            self.control.health().send(HealthMsg::Shutdown);
        }
        if let Some(admin) = &self.admin {
            admin.signal_stop();
        }
        #[cfg(feature = "dns")]
        self.control.stop_resolver(false);
    }
}

/// Binds `count` listening sockets to `addr` (port 0: the first bind picks the port and
/// the others take the same); returns them and the address they share.
fn bind_all(
    addr: SocketAddr,
    count: usize,
) -> io::Result<(Vec<std::net::TcpListener>, SocketAddr)> {
    let mut addr = addr;
    let mut listeners = Vec::with_capacity(count);
    for _ in 0..count {
        let listener = bind_reuseport(addr)?;
        addr = listener.local_addr()?;
        listeners.push(listener);
    }
    Ok((listeners, addr))
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
