//! A worker's listening sockets: the plain one and, with `[tls]`, the TLS one, each its
//! own `SO_REUSEPORT` socket. Accepting is bounded per turn, reserves a
//! `max_connections` slot before each accept, and pauses (instead of spinning) when the
//! process is out of descriptors or at its connection limit.

use std::io;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use mio::net::{TcpListener, TcpStream};
use mio::{Interest, Registry, Token};

use crate::net;
use crate::token;

/// How long accepting pauses after `EMFILE` and friends, or at `max_connections`.
const ACCEPT_PAUSE: Duration = Duration::from_millis(50);

/// What a listener's connections speak.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Protocol {
    /// HTTP/1.x in the clear.
    Http,
    /// HTTP/1.x over TLS (spec §9).
    Https,
}

/// One accepted connection.
pub struct Accepted {
    /// The client socket.
    pub stream: TcpStream,
    /// The client's address.
    pub peer: SocketAddr,
    /// The address it connected to.
    pub local: SocketAddr,
    /// What it speaks.
    pub protocol: Protocol,
}

/// One listening socket.
struct Listener {
    socket: TcpListener,
    protocol: Protocol,
    /// The bound address; when its IP is a specific one, it is every connection's local
    /// address (no `getsockname` per connection).
    local: SocketAddr,
    /// A readable edge not yet drained by accepting until `WouldBlock`.
    ready: bool,
}

/// The worker's listeners and the accept pause they share.
pub struct Listeners {
    list: Vec<Listener>,
    paused_until: Option<Instant>,
    /// Accepting hit a resource limit (EMFILE, ...) and has not succeeded since.
    starved: bool,
}

impl Listeners {
    /// Registers the plain listener (and the TLS one).
    pub fn new(
        registry: &Registry,
        plain: std::net::TcpListener,
        tls: Option<std::net::TcpListener>,
    ) -> io::Result<Listeners> {
        let mut list = Vec::with_capacity(2);
        let sockets = [
            (Some(plain), Protocol::Http, token::LISTENER),
            (tls, Protocol::Https, token::TLS_LISTENER),
        ];
        for (socket, protocol, token) in sockets {
            let Some(socket) = socket else { continue };
            list.push(Listener::register(registry, socket, protocol, token)?);
        }
        Ok(Listeners {
            list,
            paused_until: None,
            starved: false,
        })
    }

    /// The TLS listener's port, when there is one.
    pub fn tls_port(&self) -> Option<u16> {
        self.list
            .iter()
            .find(|l| l.protocol == Protocol::Https)
            .map(|l| l.local.port())
    }

    /// A listener's readable event.
    pub fn on_event(&mut self, protocol: Protocol) {
        if let Some(l) = self.list.iter_mut().find(|l| l.protocol == protocol) {
            l.ready = true;
        }
    }

    /// Connections may be waiting and accepting is not paused.
    pub fn is_ready(&self) -> bool {
        self.paused_until.is_none() && self.list.iter().any(|l| l.ready)
    }

    /// When a pause ends, for the poll timeout.
    pub fn paused_until(&self) -> Option<Instant> {
        self.paused_until
    }

    /// A connection closed: a pause for the connection limit may end now.
    pub fn slot_freed(&mut self) {
        if self.paused_until.is_some() && !self.list.is_empty() {
            self.paused_until = None;
            for l in &mut self.list {
                l.ready = true;
            }
        }
    }

    /// Stops listening (shutdown): new connections are refused once every worker did.
    pub fn close(&mut self, registry: &Registry) {
        for mut l in self.list.drain(..) {
            let _ = registry.deregister(&mut l.socket);
        }
    }

    /// Accepts one connection from a ready listener, reserving its slot in `open` first
    /// (so workers accepting at the same moment cannot pass `max` together); `None` when
    /// none is waiting or accepting pauses.
    pub fn accept(
        &mut self,
        now: Instant,
        open: &AtomicUsize,
        max: usize,
        worker: usize,
    ) -> Option<Accepted> {
        if let Some(until) = self.paused_until {
            if now < until {
                return None;
            }
            self.paused_until = None;
        }
        loop {
            let l = self.list.iter_mut().find(|l| l.ready)?;
            if open.fetch_add(1, Ordering::Relaxed) >= max {
                open.fetch_sub(1, Ordering::Relaxed);
                self.paused_until = Some(now + ACCEPT_PAUSE);
                return None;
            }
            match l.socket.accept() {
                Ok((stream, peer)) => {
                    if self.starved {
                        self.starved = false;
                        log::info!("worker={worker} accepting again");
                    }
                    let local = if l.local.ip().is_unspecified() {
                        stream.local_addr().unwrap_or(l.local)
                    } else {
                        l.local
                    };
                    return Some(Accepted {
                        stream,
                        peer,
                        local,
                        protocol: l.protocol,
                    });
                }
                Err(e) => {
                    open.fetch_sub(1, Ordering::Relaxed);
                    if e.kind() == io::ErrorKind::WouldBlock {
                        l.ready = false;
                        continue;
                    }
                    if net::is_resource_exhaustion(&e) {
                        // Once per episode: the pause repeats until it clears.
                        if !self.starved {
                            self.starved = true;
                            log::warn!("worker={worker} accept paused: {e}");
                        }
                        self.paused_until = Some(now + ACCEPT_PAUSE);
                        return None;
                    }
                    // ECONNABORTED and the like concern one connection only.
                    log::debug!("worker={worker} accept failed: {e}");
                }
            }
        }
    }
}

impl Listener {
    fn register(
        registry: &Registry,
        socket: std::net::TcpListener,
        protocol: Protocol,
        token: Token,
    ) -> io::Result<Listener> {
        socket.set_nonblocking(true)?;
        let local = socket.local_addr()?;
        let mut socket = TcpListener::from_std(socket);
        registry.register(&mut socket, token, Interest::READABLE)?;
        Ok(Listener {
            socket,
            protocol,
            local,
            ready: true,
        })
    }
}
