//! The supervisor binds one `SO_REUSEPORT` listener per worker, spawns the workers, and
//! stops them gracefully. [`Server`] is the library's entry point: embedders and tests
//! drive the real balancer through it.

use std::io;
use std::net::SocketAddr;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Instant;

use mio::{Poll, Waker};
use socket2::{Domain, Protocol, Socket, Type};

use crate::config::Config;
use crate::control::{HealthMsg, Mailbox, Shared, Snapshot, WorkerMsg};
use crate::health::{self, HealthChecker};
use crate::worker::{token, Worker, WorkerSetup};

/// Pending connections the kernel queues per listener.
const BACKLOG: i32 = 1024;

/// A thread the supervisor started and how to reach it.
struct Handle<T> {
    mailbox: Mailbox<T>,
    thread: Option<JoinHandle<()>>,
}

impl<T> Handle<T> {
    fn join(&mut self) {
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

/// A running balancer.
pub struct Server {
    local_addr: SocketAddr,
    workers: Vec<Handle<WorkerMsg>>,
    health: Handle<HealthMsg>,
    snapshot: Arc<Snapshot>,
    shared: Arc<Shared>,
}

impl Server {
    /// Binds the listeners and starts the workers. Port 0 in `server.listen` picks a free
    /// port, shared by every worker; [`Server::local_addr`] tells which.
    pub fn start(config: Config) -> io::Result<Server> {
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
        let health_poll = Poll::new()?;
        let health_mailbox = mailbox(&health_poll, health::WAKER)?;
        let mut handles = Vec::with_capacity(workers);
        for (id, listener) in listeners.into_iter().enumerate() {
            let poll = Poll::new()?;
            let (tx, rx) = crossbeam_channel::unbounded();
            let waker = Arc::new(Waker::new(poll.registry(), token::WAKER)?);
            let worker = Worker::new(WorkerSetup {
                id,
                listener,
                poll,
                control: rx,
                snapshot: Arc::clone(&snapshot),
                shared: Arc::clone(&shared),
                health: Some(health_mailbox.0.clone()),
            })?;
            let thread = std::thread::Builder::new()
                .name(format!("lbd-worker-{id}"))
                .spawn(move || worker.run())?;
            handles.push(Handle {
                mailbox: Mailbox::new(tx, waker),
                thread: Some(thread),
            });
        }
        let (health_box, health_rx) = health_mailbox;
        let worker_boxes = handles.iter().map(|h| h.mailbox.clone()).collect();
        let checker =
            HealthChecker::new(health_poll, health_rx, Arc::clone(&snapshot), worker_boxes);
        let health = Handle {
            mailbox: health_box,
            thread: Some(checker.spawn()?),
        };
        log::info!("listening addr={addr} workers={workers}");
        for b in &snapshot.backends {
            log::info!(
                "backend name={} address={} weight={}",
                b.name,
                b.address,
                b.weight
            );
        }
        Ok(Server {
            local_addr: addr,
            workers: handles,
            health,
            snapshot,
            shared,
        })
    }

    /// The address the listeners are bound to.
    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    /// The configuration and backends in force.
    pub fn snapshot(&self) -> Arc<Snapshot> {
        Arc::clone(&self.snapshot)
    }

    /// Process-wide counters.
    pub fn shared(&self) -> Arc<Shared> {
        Arc::clone(&self.shared)
    }

    /// Begins a graceful shutdown: listeners close at once, in-flight exchanges get
    /// `timeouts.shutdown` to finish. Returns immediately; see [`Server::join`].
    pub fn shutdown(&self) {
        if self.shared.shutting_down.swap(true, Ordering::Relaxed) {
            return;
        }
        let deadline = Instant::now() + self.snapshot.config.timeouts.shutdown;
        log::info!(
            "shutdown begins timeout={:?}",
            self.snapshot.config.timeouts.shutdown
        );
        self.broadcast(|| WorkerMsg::Shutdown { deadline });
    }

    /// Waits for every worker to finish.
    pub fn join(mut self) {
        self.join_workers();
    }

    /// Shuts down gracefully and waits.
    pub fn stop(self) {
        self.shutdown();
        self.join();
    }

    fn broadcast(&self, msg: impl Fn() -> WorkerMsg) {
        for w in &self.workers {
            w.mailbox.send(msg());
        }
    }

    fn join_workers(&mut self) {
        for w in &mut self.workers {
            w.join();
        }
        self.health.mailbox.send(HealthMsg::Shutdown);
        self.health.join();
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.shutdown();
        self.join_workers();
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
