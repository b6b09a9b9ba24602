//! The socket boundary: every `io::Error` from a read, a write or a connect is classified
//! here once, and the readiness edges of a socket are remembered here ([`Edges`]).

use std::io::{self, Read, Write};

use mio::net::TcpStream;

/// The outcome of one non-blocking read or write.
#[derive(Debug)]
pub enum Io {
    /// This many bytes moved (never 0).
    Progress(usize),
    /// The kernel has nothing (read) or no room (write) now; wait for the next edge.
    WouldBlock,
    /// The peer closed: a read returned 0.
    Closed,
    /// The connection is broken (reset, broken pipe, ...).
    Failed(io::Error),
}

/// Reads once into `buf` (non-empty), retrying on `EINTR`.
pub fn read(stream: &mut impl Read, buf: &mut [u8]) -> Io {
    loop {
        return match stream.read(buf) {
            Ok(0) => Io::Closed,
            Ok(n) => Io::Progress(n),
            // EAGAIN: drained; edge-triggered polling reports the next arrival.
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => Io::WouldBlock,
            // EINTR: a signal landed mid-call; nothing happened, try again.
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            // ECONNRESET, ETIMEDOUT, ...: the connection is gone.
            Err(e) => Io::Failed(e),
        };
    }
}

/// Writes once from `buf` (non-empty), retrying on `EINTR`.
pub fn write(stream: &mut impl Write, buf: &[u8]) -> Io {
    loop {
        return match stream.write(buf) {
            // A zero-byte write on a stream socket means it can take no more: treat as closed.
            Ok(0) => Io::Closed,
            Ok(n) => Io::Progress(n),
            // EAGAIN: the send buffer is full; the next writable edge resumes.
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => Io::WouldBlock,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            // EPIPE, ECONNRESET: the peer is gone.
            Err(e) => Io::Failed(e),
        };
    }
}

/// A client socket whose write is the last before its `close` or `shutdown(Write)`.
///
/// It writes with `MSG_MORE`: a response shorter than a segment waits in the kernel's
/// send queue, and the FIN that follows at once is tacked onto that unsent segment
/// (Linux `tcp_send_fin`). A `Connection: close` answer then leaves as one packet, data
/// and FIN, instead of two: one transmit, one receive and one wake-up less per closed
/// connection (issue 14, connection churn). The close or shutdown must follow: without
/// it the tail would wait (the session's `Flushing` phase guarantees it, deadline
/// included).
pub struct BeforeFin<'a>(pub &'a TcpStream);

impl Write for BeforeFin<'_> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        socket2::SockRef::from(self.0).send_with_flags(buf, libc::MSG_MORE | libc::MSG_NOSIGNAL)
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

/// True for accept errors that mean "out of resources" (descriptors, buffers, memory):
/// accepting again at once would spin, so the worker pauses accepting instead.
pub fn is_resource_exhaustion(e: &io::Error) -> bool {
    matches!(
        e.raw_os_error(),
        Some(libc::EMFILE | libc::ENFILE | libc::ENOBUFS | libc::ENOMEM)
    )
}

/// What is known of a connection's far end.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Peer {
    /// Both directions open.
    Open,
    /// The peer sent FIN (a read returned 0): nothing more will arrive; writing may go on.
    HalfClosed,
    /// The connection failed (reset, error): nothing arrives and nothing can be sent.
    Broken,
}

impl Peer {
    /// Nothing more will arrive.
    pub fn is_eof(self) -> bool {
        self != Peer::Open
    }
}

/// The readiness edges of one non-blocking socket.
///
/// mio registers sockets edge-triggered: an edge is reported once. Events only set the
/// flags; a flag is cleared only when the socket says it is used up: a read or write
/// returns `WouldBlock`, or moves less than offered. `read_closed` remembers that an
/// event reported FIN (or an error): a short read then no longer means drained, so
/// reading goes on until it returns 0 (data and FIN often arrive in one event).
#[derive(Debug, Clone, Copy, Default)]
pub struct Edges {
    /// A readable edge has not yet been drained.
    pub readable: bool,
    /// A writable edge has not yet been used up.
    pub writable: bool,
    /// The kernel reported read-closed or an error.
    pub read_closed: bool,
}

impl Edges {
    /// Remembers the edges of one event.
    pub fn record(&mut self, readable: bool, writable: bool, read_closed: bool) {
        self.readable |= readable;
        self.writable |= writable;
        self.read_closed |= read_closed;
    }

    /// Reads once into `buf` (non-empty) and updates the readable edge.
    pub fn read(&mut self, stream: &mut impl Read, buf: &mut [u8]) -> Io {
        let io = read(stream, buf);
        self.readable = match io {
            Io::Progress(n) => n == buf.len() || self.read_closed,
            Io::WouldBlock | Io::Closed | Io::Failed(_) => false,
        };
        io
    }

    /// Writes once from `buf` (non-empty) and updates the writable edge.
    pub fn write(&mut self, stream: &mut impl Write, buf: &[u8]) -> Io {
        let io = write(stream, buf);
        match io {
            Io::Progress(n) => self.writable = n == buf.len(),
            Io::WouldBlock => self.writable = false,
            Io::Closed | Io::Failed(_) => {}
        }
        io
    }
}

impl Edges {
    /// Writes `first` then `second` in one `writev`, and updates the writable edge.
    pub fn write_two(&mut self, stream: &mut impl Write, first: &[u8], second: &[u8]) -> Io {
        let bufs = [io::IoSlice::new(first), io::IoSlice::new(second)];
        let total = first.len() + second.len();
        loop {
            return match stream.write_vectored(&bufs) {
                Ok(0) => Io::Closed,
                Ok(n) => {
                    self.writable = n == total;
                    Io::Progress(n)
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                    self.writable = false;
                    Io::WouldBlock
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => Io::Failed(e),
            };
        }
    }
}

/// The outcome of checking a pending non-blocking connect.
#[derive(Debug)]
pub enum ConnectStatus {
    /// Connected: the socket is usable.
    Connected,
    /// Still in progress: wait for the next edge.
    Pending,
    /// The connect failed.
    Failed(io::Error),
}

/// Checks a pending connect after an edge, following mio's `TcpStream::connect` contract:
/// 1. `take_error` reports an error: the connect failed;
/// 2. `peer_addr` succeeds: connected;
/// 3. `peer_addr` says not connected (or `EINPROGRESS`): still pending;
/// 4. any other `peer_addr` error: failed.
///
/// (Step 0, no edge at all yet, is the caller's: it means pending without a syscall.)
pub fn connect_status(stream: &TcpStream) -> ConnectStatus {
    match stream.take_error() {
        Ok(Some(e)) | Err(e) => return ConnectStatus::Failed(e),
        Ok(None) => {}
    }
    match stream.peer_addr() {
        Ok(_) => ConnectStatus::Connected,
        Err(e)
            if e.kind() == io::ErrorKind::NotConnected
                || e.raw_os_error() == Some(libc::EINPROGRESS) =>
        {
            ConnectStatus::Pending
        }
        Err(e) => ConnectStatus::Failed(e),
    }
}
