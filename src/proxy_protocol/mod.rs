//! PROXY protocol headers, versions 1 (text) and 2 (binary), as HAProxy's
//! `doc/proxy-protocol.txt` defines them (spec §11): the parser a listener with
//! `proxy_protocol = true` runs on a connection's first bytes, and the writers for
//! `send_proxy` upstream connections and their health probes.
//!
//! A pure core: bytes in, header or error out; no socket, clock or config type. [`parse`]
//! is given every byte received so far and answers [`Parsed::Incomplete`] until a whole
//! header is in, or an error as soon as the bytes can no longer begin a valid header, so a
//! plain HTTP request or a TLS ClientHello is refused at its first byte or few instead of
//! waiting for `client_header`. The writers fill a [`HeaderBytes`] on the stack (no
//! allocation) whose bytes the caller appends with `Buffer::extend`.
//!
//! ```
//! use lbd::proxy_protocol::{parse, write_v2, Parsed};
//!
//! let (client, listener) = ("192.0.2.7:51000".parse()?, "198.51.100.1:80".parse()?);
//! let mut wire = write_v2(client, listener).as_bytes().to_vec();
//! wire.extend_from_slice(b"GET / HTTP/1.1\r\n");
//! let Ok(Parsed::Complete { header, len }) = parse(&wire) else { panic!() };
//! assert_eq!(header.source, Some(client));
//! assert_eq!(&wire[len..], b"GET / HTTP/1.1\r\n");
//! # Ok::<(), std::net::AddrParseError>(())
//! ```

mod v1;
mod v2;

use std::fmt;
use std::net::{SocketAddr, SocketAddrV4, SocketAddrV6};

/// Longest v1 header accepted, CRLF included (`PROXY UNKNOWN` with two full IPv6
/// addresses and ports, the protocol's own worst case).
pub const V1_MAX_LEN: usize = 107;
/// The fixed part of a v2 header: signature, version and command, family, length.
pub const V2_HEADER_LEN: usize = 16;
/// Most address and TLV bytes accepted after a v2 header's fixed part; a larger declared
/// length is refused as soon as it is read.
pub const V2_MAX_ADDRESS_LEN: usize = 512;
/// Room in a [`HeaderBytes`]: the longest header lbd writes is a v1 `TCP6` line
/// (104 bytes); a v2 one is at most 52.
pub const WRITE_CAPACITY: usize = V1_MAX_LEN;

/// What a PROXY header says about the connection it starts.
///
/// Invariant: `source` and `destination` are both `Some`, of one address family, or both
/// `None`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ProxyHeader {
    /// The client's address as the sending proxy saw it; `None`: keep the socket's peer
    /// (v1 `UNKNOWN`, v2 `LOCAL`, or a v2 family or protocol other than TCP over IPv4/IPv6).
    pub source: Option<SocketAddr>,
    /// The address the client connected to on the sending proxy; `None` with `source`.
    pub destination: Option<SocketAddr>,
}

impl ProxyHeader {
    /// A header that carries no address: the socket's own endpoints stand.
    pub const KEEP_PEER: ProxyHeader = ProxyHeader {
        source: None,
        destination: None,
    };

    /// The client address to use for the connection: the header's source, else `peer`.
    pub fn client(&self, peer: SocketAddr) -> SocketAddr {
        self.source.unwrap_or(peer)
    }
}

/// The answer of [`parse`] on the bytes received so far.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Parsed {
    /// Every byte so far can begin a valid header, but it is not whole yet.
    Incomplete,
    /// A whole header.
    Complete {
        /// What it says.
        header: ProxyHeader,
        /// Its length: the connection's own bytes (the HTTP request) start here.
        len: usize,
    },
}

/// Why the bytes are not a PROXY header. Each reason has a stable word for metric labels
/// and logs ([`ProxyError::reason`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ProxyError {
    /// Neither `PROXY ` (v1) nor the 12-byte v2 signature: the peer does not speak the
    /// protocol (an HTTP request, a TLS ClientHello, ...).
    BadSignature,
    /// A v1 line that breaks the grammar: an unknown protocol word, a missing or doubled
    /// space, an address of the wrong family or not canonical, a bad port, no CRLF.
    BadSyntax,
    /// A v1 line without its CRLF within [`V1_MAX_LEN`] bytes, or a v2 length above
    /// [`V2_MAX_ADDRESS_LEN`].
    TooLong,
    /// A v2 version other than 2.
    BadVersion,
    /// A v2 command other than `LOCAL` (0) or `PROXY` (1).
    BadCommand,
    /// A v2 `PROXY` header with an unassigned address family (above 3) or transport
    /// protocol (above 2).
    BadFamily,
    /// A v2 length shorter than the addresses its family needs, or a TLV that does not end
    /// exactly within it.
    BadLength,
}

impl ProxyError {
    /// A one-word reason, for metric labels and log fields.
    pub fn reason(self) -> &'static str {
        match self {
            ProxyError::BadSignature => "bad_signature",
            ProxyError::BadSyntax => "bad_syntax",
            ProxyError::TooLong => "too_long",
            ProxyError::BadVersion => "bad_version",
            ProxyError::BadCommand => "bad_command",
            ProxyError::BadFamily => "bad_family",
            ProxyError::BadLength => "bad_length",
        }
    }
}

impl fmt::Display for ProxyError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let what = match self {
            ProxyError::BadSignature => "not a PROXY protocol header",
            ProxyError::BadSyntax => "malformed PROXY v1 line",
            ProxyError::TooLong => "PROXY header too long",
            ProxyError::BadVersion => "PROXY v2 header with an unknown version",
            ProxyError::BadCommand => "PROXY v2 header with an unknown command",
            ProxyError::BadFamily => "PROXY v2 header with an unknown address family",
            ProxyError::BadLength => "PROXY v2 header whose length does not fit its content",
        };
        f.write_str(what)
    }
}

impl std::error::Error for ProxyError {}

/// Parses the PROXY header at the start of `buf`, the bytes received so far on a
/// connection. The version is told by the first byte (`P` for v1, CR for v2); bytes after
/// the header are not looked at.
pub fn parse(buf: &[u8]) -> Result<Parsed, ProxyError> {
    match buf.first() {
        None => Ok(Parsed::Incomplete),
        Some(b'P') => v1::parse(buf),
        Some(b'\r') => v2::parse(buf),
        Some(_) => Err(ProxyError::BadSignature),
    }
}

/// Writes a v1 line (`PROXY TCP4 ...` or `PROXY TCP6 ...`) for a connection from
/// `source` to `destination`. When one is IPv4 and the other IPv6, the IPv4 one is
/// written as its IPv4-mapped IPv6 address (`::ffff:a.b.c.d`), as both must share a
/// family. IPv6 flow labels and scope ids are not carried.
pub fn write_v1(source: SocketAddr, destination: SocketAddr) -> HeaderBytes {
    let mut out = HeaderBytes::new();
    v1::write(&mut out, Pair::new(source, destination));
    out
}

/// Writes `PROXY UNKNOWN\r\n`, the v1 header of a connection with no client behind it (a
/// health probe): the receiver keeps the socket's endpoints.
pub fn write_v1_unknown() -> HeaderBytes {
    let mut out = HeaderBytes::new();
    out.push(b"PROXY UNKNOWN\r\n");
    out
}

/// Writes a v2 `PROXY` header (TCP over IPv4 or IPv6, no TLV) for a connection from
/// `source` to `destination`; mixed families as in [`write_v1`].
pub fn write_v2(source: SocketAddr, destination: SocketAddr) -> HeaderBytes {
    let mut out = HeaderBytes::new();
    v2::write(&mut out, Pair::new(source, destination));
    out
}

/// Writes a v2 `LOCAL` header (family unspecified, no address), the v2 header of a
/// connection with no client behind it (a health probe).
pub fn write_v2_local() -> HeaderBytes {
    let mut out = HeaderBytes::new();
    v2::write_local(&mut out);
    out
}

/// One header written on the stack, for `Buffer::extend(header.as_bytes())`.
///
/// Invariant: `len <= WRITE_CAPACITY`; `bytes[..len]` is the header.
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct HeaderBytes {
    bytes: [u8; WRITE_CAPACITY],
    len: usize,
}

impl HeaderBytes {
    fn new() -> HeaderBytes {
        HeaderBytes {
            bytes: [0; WRITE_CAPACITY],
            len: 0,
        }
    }

    /// The header's bytes.
    pub fn as_bytes(&self) -> &[u8] {
        &self.bytes[..self.len]
    }

    /// Appends `bytes`. The writers' longest output is known (see [`WRITE_CAPACITY`]), so
    /// this never runs out of room; it would panic on a writer bug, never on input.
    fn push(&mut self, bytes: &[u8]) {
        self.bytes[self.len..self.len + bytes.len()].copy_from_slice(bytes);
        self.len += bytes.len();
    }

    /// Appends `n` in decimal, without leading zeros.
    fn push_decimal(&mut self, n: u16) {
        self.push_digits(n, 10);
    }

    /// Appends `n` in lowercase hexadecimal, without leading zeros.
    fn push_hex(&mut self, n: u16) {
        self.push_digits(n, 16);
    }

    fn push_digits(&mut self, mut n: u16, base: u16) {
        const DIGITS: &[u8; 16] = b"0123456789abcdef";
        // Five decimal digits hold any u16 (four hex ones do too).
        let mut text = [0u8; 5];
        let mut at = text.len();
        loop {
            at -= 1;
            text[at] = DIGITS[usize::from(n % base)];
            n /= base;
            if n == 0 {
                break;
            }
        }
        self.push(&text[at..]);
    }
}

impl AsRef<[u8]> for HeaderBytes {
    fn as_ref(&self) -> &[u8] {
        self.as_bytes()
    }
}

impl fmt::Debug for HeaderBytes {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "HeaderBytes(\"{}\")", self.as_bytes().escape_ascii())
    }
}

/// A source and a destination of one family, as both header versions carry them.
#[derive(Debug, Clone, Copy)]
enum Pair {
    V4(SocketAddrV4, SocketAddrV4),
    V6(SocketAddrV6, SocketAddrV6),
}

impl Pair {
    /// Pairs `source` and `destination`, mapping an IPv4 one into IPv6 when the families
    /// differ. Flow labels and scope ids are dropped: the headers have no room for them.
    fn new(source: SocketAddr, destination: SocketAddr) -> Pair {
        match (source, destination) {
            (SocketAddr::V4(s), SocketAddr::V4(d)) => Pair::V4(s, d),
            (s, d) => Pair::V6(as_v6(s), as_v6(d)),
        }
    }
}

fn as_v6(addr: SocketAddr) -> SocketAddrV6 {
    let ip = match addr {
        SocketAddr::V4(a) => a.ip().to_ipv6_mapped(),
        SocketAddr::V6(a) => *a.ip(),
    };
    SocketAddrV6::new(ip, addr.port(), 0, 0)
}

#[cfg(test)]
mod props;
#[cfg(test)]
mod tests;
