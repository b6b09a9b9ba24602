//! The client side of a session: its socket and transport (plain, or TLS), what is known
//! of it, and the four byte queues an exchange moves bytes through.

use std::net::SocketAddr;
use std::time::Instant;

use mio::net::TcpStream;

use super::Env;
use crate::buffer::Buffer;
use crate::net::{BeforeFin, Edges, Io, Peer};
#[cfg(feature = "tls")]
use crate::tls::TlsConn;

/// How bytes cross the client socket. The session reads and writes plaintext either way.
#[derive(Debug)]
pub enum Transport {
    /// The socket carries HTTP as is.
    Plain,
    /// The socket carries TLS; boxed so plain sessions do not carry its size.
    #[cfg(feature = "tls")]
    Tls(Box<TlsConn>),
}

/// One client connection's socket and buffers.
///
/// `client_in` holds bytes from the client (heads, bodies, pipelined requests);
/// `upstream_out` the request as lbd re-serialised it; `upstream_in` bytes from the
/// upstream; `client_out` the response as lbd re-serialised it.
#[derive(Debug)]
pub struct Conn {
    /// The client socket.
    pub client: TcpStream,
    /// Plain or TLS.
    pub transport: Transport,
    /// The client's address.
    pub addr: SocketAddr,
    /// The local address it connected to.
    pub local: SocketAddr,
    /// Readiness edges of the client socket. Until the socket is registered with the
    /// poll (`watched`), both are assumed: a read or write is simply tried.
    pub edges: Edges,
    /// The socket is registered with the worker's poll.
    pub watched: bool,
    /// What is known of the client's side.
    pub peer: Peer,
    /// Bytes from the client.
    pub client_in: Buffer,
    /// Bytes for the client.
    pub client_out: Buffer,
    /// Bytes for the upstream.
    pub upstream_out: Buffer,
    /// Bytes from the upstream.
    pub upstream_in: Buffer,
    /// Last time bytes moved to or from the client.
    pub last_client_io: Instant,
}

impl Conn {
    /// A freshly accepted connection.
    pub fn new(
        client: TcpStream,
        transport: Transport,
        addr: SocketAddr,
        local: SocketAddr,
        now: Instant,
    ) -> Conn {
        Conn {
            client,
            transport,
            addr,
            local,
            edges: Edges {
                readable: true,
                writable: true,
                read_closed: false,
            },
            watched: false,
            peer: Peer::Open,
            client_in: Buffer::default(),
            client_out: Buffer::default(),
            upstream_out: Buffer::default(),
            upstream_in: Buffer::default(),
            last_client_io: now,
        }
    }

    /// Reads once from the client into the free tail of `client_in` (which has room),
    /// noting an end in `peer`.
    pub fn read(&mut self) -> Io {
        let spare = self.client_in.spare();
        let io = match &mut self.transport {
            Transport::Plain => self.edges.read(&mut self.client, spare),
            #[cfg(feature = "tls")]
            Transport::Tls(tls) => tls.read(&mut self.client, &mut self.edges, spare),
        };
        match io {
            Io::Progress(n) => self.client_in.commit(n),
            Io::Closed => self.peer = Peer::HalfClosed,
            Io::Failed(_) => self.peer = Peer::Broken,
            Io::WouldBlock => {}
        }
        io
    }

    /// Reads once from the socket itself, bypassing the transport (a PROXY protocol
    /// header precedes TLS).
    pub fn read_raw(&mut self) -> Io {
        let io = self.edges.read(&mut self.client, self.client_in.spare());
        match io {
            Io::Progress(n) => self.client_in.commit(n),
            Io::Closed => self.peer = Peer::HalfClosed,
            Io::Failed(_) => self.peer = Peer::Broken,
            Io::WouldBlock => {}
        }
        io
    }

    /// Bytes read raw (after a PROXY header) belong to the transport: a TLS transport
    /// takes them as ciphertext; plain ones stay in `client_in` as the request's start.
    pub fn hand_over_input(&mut self) -> std::io::Result<()> {
        match &mut self.transport {
            Transport::Plain => {}
            #[cfg(feature = "tls")]
            Transport::Tls(tls) => {
                tls.feed(self.client_in.data())?;
                self.client_in.clear();
            }
        }
        self.client_in.reset_if_empty();
        Ok(())
    }

    /// Writes once from `client_out` (not empty) to the client. `fin_follows`: the
    /// connection closes (or shuts its write side) as soon as `client_out` is out, so a
    /// plain socket lets the FIN share the last segment ([`BeforeFin`]).
    pub fn write(&mut self, fin_follows: bool) -> Io {
        let data = self.client_out.data();
        let io = match &mut self.transport {
            Transport::Plain if fin_follows => self.edges.write(&mut BeforeFin(&self.client), data),
            Transport::Plain => self.edges.write(&mut self.client, data),
            #[cfg(feature = "tls")]
            Transport::Tls(tls) => tls.write(&mut self.client, &mut self.edges, data),
        };
        match io {
            Io::Progress(n) => {
                self.client_out.advance(n);
                self.client_out.reset_if_empty();
            }
            Io::Closed | Io::Failed(_) => {
                self.peer = Peer::Broken;
                self.client_out.clear();
            }
            Io::WouldBlock => {}
        }
        io
    }

    /// Writes what the transport itself has queued (TLS records: handshake, alerts,
    /// encrypted responses); `WouldBlock` when there is nothing or no room.
    pub fn flush(&mut self) -> Io {
        let io = match &mut self.transport {
            Transport::Plain => Io::WouldBlock,
            #[cfg(feature = "tls")]
            Transport::Tls(tls) => tls.flush(&mut self.client, &mut self.edges),
        };
        if let Io::Closed | Io::Failed(_) = io {
            self.peer = Peer::Broken;
        }
        io
    }

    /// Input is waiting inside the transport even without a readable edge (decrypted
    /// bytes that did not fit `client_in` last time).
    pub fn has_pending_input(&mut self) -> bool {
        match &mut self.transport {
            Transport::Plain => false,
            #[cfg(feature = "tls")]
            Transport::Tls(tls) => tls.has_plaintext(),
        }
    }

    /// The transport has bytes of its own to send.
    pub fn wants_write(&self) -> bool {
        match &self.transport {
            Transport::Plain => false,
            #[cfg(feature = "tls")]
            Transport::Tls(tls) => tls.wants_write(),
        }
    }

    /// Ends the transport's own stream before the write side is shut (TLS:
    /// `close_notify`, queued for [`Conn::flush`]).
    pub fn close_transport(&mut self) {
        match &mut self.transport {
            Transport::Plain => {}
            #[cfg(feature = "tls")]
            Transport::Tls(tls) => tls.close_notify(),
        }
    }

    /// A TLS handshake outcome not yet counted (see [`TlsConn::take_handshake`]).
    pub fn take_handshake(&mut self) -> Option<bool> {
        match &mut self.transport {
            Transport::Plain => None,
            #[cfg(feature = "tls")]
            Transport::Tls(tls) => tls.take_handshake(),
        }
    }

    /// The access log's `tls=` and `sni=` values (`-` for plain or unknown).
    pub fn tls_info(&self) -> (&'static str, Option<&str>) {
        match &self.transport {
            Transport::Plain => ("-", None),
            #[cfg(feature = "tls")]
            Transport::Tls(tls) => (tls.version(), tls.sni()),
        }
    }

    /// The client connected over TLS.
    pub fn is_tls(&self) -> bool {
        !matches!(self.transport, Transport::Plain)
    }

    /// A response is waiting for the client to make room.
    pub fn is_blocked_on_client(&self) -> bool {
        (!self.client_out.is_empty() || self.wants_write()) && !self.edges.writable
    }

    /// Gives `client_in`'s storage back, if it is empty, to the pool it came from: a
    /// tunnel reads its client into big buffers (see `Session::read_client`).
    pub fn release_client_in(&mut self, env: &mut Env) {
        if self.client_in.fits(&env.bufs) {
            self.client_in.release(&mut env.bufs);
        } else {
            self.client_in.release(&mut env.big_bufs);
        }
    }

    /// Drops pending bytes and returns all four buffers' storage to the pools.
    pub fn release_buffers(&mut self, env: &mut Env) {
        self.client_in.clear();
        self.release_client_in(env);
        self.upstream_out.clear();
        self.upstream_out.release(&mut env.bufs);
        for b in [&mut self.upstream_in, &mut self.client_out] {
            b.clear();
            b.release(&mut env.big_bufs);
        }
    }
}
