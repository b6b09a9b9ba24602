//! The client side of a session: its socket, what is known of it, and the four byte
//! queues an exchange moves bytes through.

use std::net::SocketAddr;
use std::time::Instant;

use mio::net::TcpStream;

use super::Env;
use crate::buffer::Buffer;
use crate::net::{Edges, Io, Peer};

/// One client connection's socket and buffers.
///
/// `client_in` holds bytes from the client (heads, bodies, pipelined requests);
/// `upstream_out` the request as lbd re-serialised it; `upstream_in` bytes from the
/// upstream; `client_out` the response as lbd re-serialised it.
#[derive(Debug)]
pub struct Conn {
    /// The client socket.
    pub client: TcpStream,
    /// The client's address.
    pub addr: SocketAddr,
    /// The local address it connected to.
    pub local: SocketAddr,
    /// Readiness edges of the client socket.
    pub edges: Edges,
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
    pub fn new(client: TcpStream, addr: SocketAddr, local: SocketAddr, now: Instant) -> Conn {
        Conn {
            client,
            addr,
            local,
            edges: Edges::default(),
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
        let io = self.edges.read(&mut self.client, self.client_in.spare());
        match io {
            Io::Progress(n) => self.client_in.commit(n),
            Io::Closed => self.peer = Peer::HalfClosed,
            Io::Failed(_) => self.peer = Peer::Broken,
            Io::WouldBlock => {}
        }
        io
    }

    /// Writes once from `client_out` (not empty) to the client.
    pub fn write(&mut self) -> Io {
        let io = self.edges.write(&mut self.client, self.client_out.data());
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

    /// A response is waiting for the client to make room.
    pub fn is_blocked_on_client(&self) -> bool {
        !self.client_out.is_empty() && !self.edges.writable
    }

    /// Drops pending bytes and returns all four buffers' storage to the pools.
    pub fn release_buffers(&mut self, env: &mut Env) {
        for b in [&mut self.client_in, &mut self.upstream_out] {
            b.clear();
            b.release(&mut env.bufs);
        }
        for b in [&mut self.upstream_in, &mut self.client_out] {
            b.clear();
            b.release(&mut env.big_bufs);
        }
    }
}
