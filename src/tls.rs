//! TLS termination as a transport under a session (spec §9): a rustls server connection
//! driven by the worker's own loop. The session reads and writes plaintext through it;
//! ciphertext moves between rustls and the socket as the socket's edges allow, and
//! rustls's `wants_read`/`wants_write` say when it has work. No thread, no runtime.
//!
//! The handshake happens inside the first reads and writes: no plaintext arrives until it
//! completes, and the session's `client_header` deadline bounds it.

use std::io::{self, BufRead, IoSlice, Read, Write};
use std::sync::Arc;

use mio::net::TcpStream;
use rustls::{ServerConfig, ServerConnection};

use crate::config::TLS_BUFFER_LIMIT;
use crate::net::{Edges, Io};

/// Most `read_tls` + `process_new_packets` rounds per read call before yielding (a
/// record is at most 16 KiB; a few rounds fill any plaintext buffer).
const READ_ROUNDS: usize = 8;

/// Where the handshake stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Handshake {
    /// Not finished.
    Pending,
    /// Finished; the outcome is not yet counted.
    Done,
    /// Failed; the outcome is not yet counted.
    Failed,
    /// Finished or failed, and counted.
    Counted,
}

/// One client's TLS connection.
pub struct TlsConn {
    conn: ServerConnection,
    handshake: Handshake,
}

impl std::fmt::Debug for TlsConn {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TlsConn")
            .field("handshake", &self.handshake)
            .field("version", &self.version())
            .finish()
    }
}

/// The socket seen through its edges: a read or write without an edge is `WouldBlock`
/// without a syscall, and every result updates the edges (see [`Edges`]).
struct Socket<'a> {
    stream: &'a mut TcpStream,
    edges: &'a mut Edges,
}

impl Read for Socket<'_> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if !self.edges.readable {
            return Err(io::ErrorKind::WouldBlock.into());
        }
        match self.edges.read(self.stream, buf) {
            Io::Progress(n) => Ok(n),
            Io::Closed => Ok(0),
            Io::WouldBlock => Err(io::ErrorKind::WouldBlock.into()),
            Io::Failed(e) => Err(e),
        }
    }
}

impl Write for Socket<'_> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.write_vectored(&[IoSlice::new(buf)])
    }

    fn write_vectored(&mut self, bufs: &[IoSlice<'_>]) -> io::Result<usize> {
        if !self.edges.writable {
            return Err(io::ErrorKind::WouldBlock.into());
        }
        let total: usize = bufs.iter().map(|b| b.len()).sum();
        loop {
            return match self.stream.write_vectored(bufs) {
                Ok(n) => {
                    self.edges.writable = n == total;
                    Ok(n)
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                    self.edges.writable = false;
                    Err(e)
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => Err(e),
            };
        }
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

impl TlsConn {
    /// A server connection for a freshly accepted client.
    pub fn new(config: &Arc<ServerConfig>) -> Result<TlsConn, rustls::Error> {
        let mut conn = ServerConnection::new(Arc::clone(config))?;
        conn.set_buffer_limit(Some(TLS_BUFFER_LIMIT));
        Ok(TlsConn {
            conn,
            handshake: Handshake::Pending,
        })
    }

    /// Reads plaintext into `buf`: decrypted bytes already held first, then ciphertext
    /// from the socket as its readable edge allows. `Closed` after the client's
    /// `close_notify`, and also on a TCP EOF without it (spec §9: a truncation is a
    /// client close); `Failed` when the TLS stream is invalid (the alert rustls queued is
    /// sent first) or the socket failed.
    pub fn read(&mut self, stream: &mut TcpStream, edges: &mut Edges, buf: &mut [u8]) -> Io {
        for _ in 0..READ_ROUNDS {
            match self.conn.reader().read(buf) {
                Ok(0) => return Io::Closed,
                Ok(n) => return Io::Progress(n),
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
                // UnexpectedEof: TCP EOF with no close_notify.
                Err(_) => return Io::Closed,
            }
            if !self.conn.wants_read() {
                return Io::WouldBlock; // handshake output must leave first
            }
            match self.conn.read_tls(&mut Socket { stream, edges }) {
                Ok(_) => {}
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Io::WouldBlock,
                Err(e) => return Io::Failed(e),
            }
            if let Err(e) = self.conn.process_new_packets() {
                if self.handshake == Handshake::Pending {
                    self.handshake = Handshake::Failed;
                }
                let _ = self.flush(stream, edges);
                return Io::Failed(io::Error::new(io::ErrorKind::InvalidData, e));
            }
            if self.handshake == Handshake::Pending && !self.conn.is_handshaking() {
                self.handshake = Handshake::Done;
            }
        }
        Io::WouldBlock
    }

    /// Takes ciphertext that was read before the transport started (bytes after a PROXY
    /// protocol header).
    pub fn feed(&mut self, mut bytes: &[u8]) -> io::Result<()> {
        while !bytes.is_empty() {
            if self.conn.read_tls(&mut bytes)? == 0 {
                break;
            }
            if let Err(e) = self.conn.process_new_packets() {
                self.handshake = Handshake::Failed;
                return Err(io::Error::new(io::ErrorKind::InvalidData, e));
            }
        }
        if self.handshake == Handshake::Pending && !self.conn.is_handshaking() {
            self.handshake = Handshake::Done;
        }
        Ok(())
    }

    /// Hands plaintext to rustls, as much as its bounded buffer takes, then writes
    /// ciphertext as the socket allows. `Progress(n)`: `n` bytes of `data` were taken.
    pub fn write(&mut self, stream: &mut TcpStream, edges: &mut Edges, data: &[u8]) -> Io {
        if let Io::Failed(e) = self.flush(stream, edges) {
            return Io::Failed(e);
        }
        let taken = match self.conn.writer().write(data) {
            Ok(n) => n,
            Err(e) => return Io::Failed(e),
        };
        if let Io::Failed(e) = self.flush(stream, edges) {
            return Io::Failed(e);
        }
        match taken {
            0 => Io::WouldBlock,
            n => Io::Progress(n),
        }
    }

    /// Writes queued ciphertext until none is left or the socket is full: `Progress`
    /// when something went out, `WouldBlock` when nothing could.
    pub fn flush(&mut self, stream: &mut TcpStream, edges: &mut Edges) -> Io {
        let mut sent = 0;
        while self.conn.wants_write() {
            match self.conn.write_tls(&mut Socket { stream, edges }) {
                Ok(0) => return Io::Closed,
                Ok(n) => sent += n,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                Err(e) => return Io::Failed(e),
            }
        }
        match sent {
            0 => Io::WouldBlock,
            n => Io::Progress(n),
        }
    }

    /// Decrypted bytes are waiting to be read (they did not fit the last read's buffer).
    pub fn has_plaintext(&mut self) -> bool {
        matches!(self.conn.reader().fill_buf(), Ok(b) if !b.is_empty())
    }

    /// Ciphertext is waiting for the socket.
    pub fn wants_write(&self) -> bool {
        self.conn.wants_write()
    }

    /// Queues the `close_notify` alert (once); [`TlsConn::flush`] sends it.
    pub fn close_notify(&mut self) {
        self.conn.send_close_notify();
    }

    /// A handshake outcome not yet counted: `Some(true)` finished, `Some(false)` failed;
    /// each is returned once.
    pub fn take_handshake(&mut self) -> Option<bool> {
        let outcome = match self.handshake {
            Handshake::Done => true,
            Handshake::Failed => false,
            Handshake::Pending | Handshake::Counted => return None,
        };
        self.handshake = Handshake::Counted;
        Some(outcome)
    }

    /// The negotiated protocol version as the access log writes it (`TLSv1.3`).
    pub fn version(&self) -> &'static str {
        match self.conn.protocol_version() {
            Some(rustls::ProtocolVersion::TLSv1_3) => "TLSv1.3",
            Some(rustls::ProtocolVersion::TLSv1_2) => "TLSv1.2",
            Some(_) => "TLS",
            None => "-",
        }
    }

    /// The server name the client asked for (SNI), if any.
    pub fn sni(&self) -> Option<&str> {
        self.conn.server_name()
    }
}
