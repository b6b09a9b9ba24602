//! One TCP connection to a backend, owned by a worker: its non-blocking connect, the
//! readiness edges seen on it, and who uses it (a session, or the idle pool).

use std::io;
use std::net::SocketAddr;
use std::time::Instant;

use mio::net::TcpStream;

/// Where a connection is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Link {
    /// `connect` issued, not yet confirmed.
    Connecting,
    /// Connected and usable.
    Ready,
}

/// The outcome of checking a pending connect.
#[derive(Debug)]
pub enum ConnectStatus {
    /// Connected: the socket is usable.
    Connected,
    /// Still in progress: wait for the next writable edge.
    Pending,
    /// The connect failed.
    Failed(io::Error),
}

/// An upstream connection.
///
/// Invariants: `owner` is `Some` exactly while a session's exchange uses it, `None`
/// while it sits in the worker's [`crate::pool::UpstreamPool`]; `idle_deadline` is
/// `Some` only while pooled. `readable`/`writable` remember edges until a read or write
/// reports `WouldBlock` (edge-triggered polling reports each edge once).
#[derive(Debug)]
pub struct Upstream {
    /// The socket.
    pub stream: TcpStream,
    /// Index of its backend in the snapshot it was opened under.
    pub backend: usize,
    /// Snapshot generation it was opened under (a reload may renumber backends).
    pub generation: u64,
    /// Connect progress.
    pub link: Link,
    /// A readable edge has not yet been drained.
    pub readable: bool,
    /// The kernel reported FIN or an error: read until 0, never trust a short read.
    pub read_closed: bool,
    /// A writable edge has not yet been used up.
    pub writable: bool,
    /// The session using it.
    pub owner: Option<usize>,
    /// Exchanges completed on it; above zero means it came from the pool.
    pub exchanges: u32,
    /// When a pooled connection is closed.
    pub idle_deadline: Option<Instant>,
    /// Earliest timer entry armed for it.
    pub armed: Option<Instant>,
}

impl Upstream {
    /// Issues a non-blocking connect to `addr` (step 1 of mio's connect recipe).
    pub fn connect(
        addr: SocketAddr,
        backend: usize,
        generation: u64,
        owner: usize,
    ) -> io::Result<Upstream> {
        let stream = TcpStream::connect(addr)?;
        Ok(Upstream {
            stream,
            backend,
            generation,
            link: Link::Connecting,
            readable: false,
            read_closed: false,
            writable: false,
            owner: Some(owner),
            exchanges: 0,
            idle_deadline: None,
            armed: None,
        })
    }

    /// Checks a pending connect after an event, following mio's `TcpStream::connect`
    /// contract:
    /// 1. no writable or readable edge yet: still pending;
    /// 2. `take_error` reports an error: the connect failed;
    /// 3. `peer_addr` succeeds: connected;
    /// 4. `peer_addr` says not connected (or `EINPROGRESS`): still pending;
    /// 5. any other `peer_addr` error: failed.
    pub fn poll_connect(&mut self) -> ConnectStatus {
        if self.link == Link::Ready {
            return ConnectStatus::Connected;
        }
        if !self.writable && !self.readable {
            return ConnectStatus::Pending;
        }
        match self.stream.take_error() {
            Ok(Some(e)) | Err(e) => return ConnectStatus::Failed(e),
            Ok(None) => {}
        }
        match self.stream.peer_addr() {
            Ok(_) => {
                self.link = Link::Ready;
                // Small heads must leave at once, not wait for Nagle.
                let _ = self.stream.set_nodelay(true);
                ConnectStatus::Connected
            }
            Err(e)
                if e.kind() == io::ErrorKind::NotConnected
                    || e.raw_os_error() == Some(libc::EINPROGRESS) =>
            {
                self.writable = false;
                self.readable = false;
                ConnectStatus::Pending
            }
            Err(e) => ConnectStatus::Failed(e),
        }
    }
}
