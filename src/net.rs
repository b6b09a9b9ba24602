//! The socket boundary: every `io::Error` from a read or write is classified here once.

use std::io::{self, Read, Write};

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

/// True for accept errors that mean "out of resources" (descriptors, buffers, memory):
/// accepting again at once would spin, so the worker pauses accepting instead.
pub fn is_resource_exhaustion(e: &io::Error) -> bool {
    matches!(
        e.raw_os_error(),
        Some(libc::EMFILE | libc::ENFILE | libc::ENOBUFS | libc::ENOMEM)
    )
}
