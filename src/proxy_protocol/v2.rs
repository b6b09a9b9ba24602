//! Version 2: a 16-byte binary header (signature, version and command, family and
//! protocol, length) and then `length` bytes of addresses and TLVs.
//!
//! Each fixed byte is checked as soon as it arrives; a length above
//! [`V2_MAX_ADDRESS_LEN`] is refused at its first byte when that is enough to tell. What
//! the header carries depends on its command and family:
//!
//! | command | family / protocol | addresses | TLVs |
//! |---|---|---|---|
//! | `LOCAL` | ignored (as the protocol says) | none: keep the socket's peer | skipped unread |
//! | `PROXY` | `AF_INET`/`AF_INET6` + `STREAM` | taken | walked: each must end within the length |
//! | `PROXY` | `AF_INET`/`AF_INET6` + `DGRAM`, `AF_UNIX` + `STREAM`/`DGRAM` | known size, not used: keep the peer (the protocol's fallback to "unspecified") | walked |
//! | `PROXY` | `AF_UNSPEC`, or protocol `UNSPEC` | none: keep the peer | skipped unread (layout unknown) |
//! | `PROXY` | family above 3 or protocol above 2 | refused (`BadFamily`) | |

use super::{HeaderBytes, Pair, Parsed, ProxyError, ProxyHeader};
use super::{V2_HEADER_LEN, V2_MAX_ADDRESS_LEN};
use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr};

/// The first 12 bytes of every v2 header.
pub(super) const SIGNATURE: [u8; 12] = *b"\r\n\r\n\0\r\nQUIT\n";
/// The version, in the high nibble of byte 12.
const VERSION: u8 = 2;
/// Commands, in the low nibble of byte 12.
const LOCAL: u8 = 0;
const PROXY: u8 = 1;
/// Address families, in the high nibble of byte 13.
const AF_UNSPEC: u8 = 0;
const AF_INET: u8 = 1;
const AF_INET6: u8 = 2;
const AF_UNIX: u8 = 3;
/// Transport protocols, in the low nibble of byte 13.
const STREAM: u8 = 1;
const DGRAM: u8 = 2;
/// Address block sizes: two addresses and two ports (AF_UNIX: two 108-byte paths).
const INET_LEN: usize = 2 * 4 + 2 * 2;
const INET6_LEN: usize = 2 * 16 + 2 * 2;
const UNIX_LEN: usize = 2 * 108;
/// Type and length bytes before each TLV's value.
const TLV_HEADER_LEN: usize = 3;

/// What follows the fixed part, as the command and family announce it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Block {
    /// TCP over IPv4: the addresses are used.
    Tcp4,
    /// TCP over IPv6: the addresses are used.
    Tcp6,
    /// Addresses of this size that lbd does not use, then TLVs.
    Unused(usize),
    /// Nothing known about the layout: every byte of the length is skipped.
    Opaque,
}

impl Block {
    /// Size of the address part, when the layout is known.
    fn address_len(self) -> Option<usize> {
        match self {
            Block::Tcp4 => Some(INET_LEN),
            Block::Tcp6 => Some(INET6_LEN),
            Block::Unused(len) => Some(len),
            Block::Opaque => None,
        }
    }
}

/// Parses a v2 header at the start of `buf` (which begins with CR).
pub(super) fn parse(buf: &[u8]) -> Result<Parsed, ProxyError> {
    let signature = &buf[..buf.len().min(SIGNATURE.len())];
    if signature != &SIGNATURE[..signature.len()] {
        return Err(ProxyError::BadSignature);
    }
    let Some(&version_command) = buf.get(12) else {
        return Ok(Parsed::Incomplete);
    };
    if version_command >> 4 != VERSION {
        return Err(ProxyError::BadVersion);
    }
    let command = version_command & 0x0f;
    if command != LOCAL && command != PROXY {
        return Err(ProxyError::BadCommand);
    }
    let Some(&family_protocol) = buf.get(13) else {
        return Ok(Parsed::Incomplete);
    };
    let block = if command == PROXY {
        block(family_protocol)?
    } else {
        Block::Opaque
    };
    // The length is big-endian: its high byte alone can already be too much.
    let Some(&len_high) = buf.get(14) else {
        return Ok(Parsed::Incomplete);
    };
    if usize::from(len_high) << 8 > V2_MAX_ADDRESS_LEN {
        return Err(ProxyError::TooLong);
    }
    let Some(&len_low) = buf.get(15) else {
        return Ok(Parsed::Incomplete);
    };
    let declared = usize::from(u16::from_be_bytes([len_high, len_low]));
    if declared > V2_MAX_ADDRESS_LEN {
        return Err(ProxyError::TooLong);
    }
    let total = V2_HEADER_LEN + declared;
    let received = &buf[..buf.len().min(total)];
    if let Some(address_len) = block.address_len() {
        if address_len > declared {
            return Err(ProxyError::BadLength);
        }
        check_tlvs(received, V2_HEADER_LEN + address_len, total)?;
    }
    if received.len() < total {
        return Ok(Parsed::Incomplete);
    }
    let header = addresses(block, &received[V2_HEADER_LEN..]);
    Ok(Parsed::Complete { header, len: total })
}

/// The layout a `PROXY` command's family and protocol byte announces.
fn block(family_protocol: u8) -> Result<Block, ProxyError> {
    let (family, protocol) = (family_protocol >> 4, family_protocol & 0x0f);
    if family > AF_UNIX || protocol > DGRAM {
        return Err(ProxyError::BadFamily);
    }
    Ok(match (family, protocol) {
        (AF_INET, STREAM) => Block::Tcp4,
        (AF_INET6, STREAM) => Block::Tcp6,
        (AF_INET, DGRAM) => Block::Unused(INET_LEN),
        (AF_INET6, DGRAM) => Block::Unused(INET6_LEN),
        (AF_UNIX, STREAM | DGRAM) => Block::Unused(UNIX_LEN),
        // AF_UNSPEC, or the UNSPEC protocol with any family.
        _ => Block::Opaque,
    })
}

/// Walks the TLVs from `at` to `total` in the `received` bytes (a prefix of the header):
/// each must fit whole before `total`. Bytes not received yet are not judged. Bounded:
/// each step moves at least [`TLV_HEADER_LEN`] bytes and `total` is at most
/// `V2_HEADER_LEN + V2_MAX_ADDRESS_LEN`.
fn check_tlvs(received: &[u8], mut at: usize, total: usize) -> Result<(), ProxyError> {
    while at < total {
        if at + TLV_HEADER_LEN > total {
            return Err(ProxyError::BadLength);
        }
        let Some(tlv) = received.get(at..at + TLV_HEADER_LEN) else {
            return Ok(());
        };
        at += TLV_HEADER_LEN + usize::from(u16::from_be_bytes([tlv[1], tlv[2]]));
        if at > total {
            return Err(ProxyError::BadLength);
        }
    }
    Ok(())
}

/// The header's addresses from its address part (long enough for `block`, as checked).
fn addresses(block: Block, part: &[u8]) -> ProxyHeader {
    let port = |at: usize| u16::from_be_bytes([part[at], part[at + 1]]);
    let (source, destination) = match block {
        Block::Tcp4 => {
            let ip = |at: usize| Ipv4Addr::from(octets::<4>(part, at));
            (
                SocketAddr::from((ip(0), port(8))),
                SocketAddr::from((ip(4), port(10))),
            )
        }
        Block::Tcp6 => {
            let ip = |at: usize| Ipv6Addr::from(octets::<16>(part, at));
            (
                SocketAddr::from((ip(0), port(32))),
                SocketAddr::from((ip(16), port(34))),
            )
        }
        Block::Unused(_) | Block::Opaque => return ProxyHeader::KEEP_PEER,
    };
    ProxyHeader {
        source: Some(source),
        destination: Some(destination),
    }
}

/// The `N` bytes of `part` from `at`.
fn octets<const N: usize>(part: &[u8], at: usize) -> [u8; N] {
    let mut octets = [0; N];
    octets.copy_from_slice(&part[at..at + N]);
    octets
}

/// Writes a `PROXY` header, TCP over the pair's family, no TLV.
pub(super) fn write(out: &mut HeaderBytes, pair: Pair) {
    out.push(&SIGNATURE);
    out.push(&[VERSION << 4 | PROXY]);
    match pair {
        Pair::V4(s, d) => {
            out.push(&[AF_INET << 4 | STREAM]);
            out.push(&(INET_LEN as u16).to_be_bytes());
            out.push(&s.ip().octets());
            out.push(&d.ip().octets());
            out.push(&s.port().to_be_bytes());
            out.push(&d.port().to_be_bytes());
        }
        Pair::V6(s, d) => {
            out.push(&[AF_INET6 << 4 | STREAM]);
            out.push(&(INET6_LEN as u16).to_be_bytes());
            out.push(&s.ip().octets());
            out.push(&d.ip().octets());
            out.push(&s.port().to_be_bytes());
            out.push(&d.port().to_be_bytes());
        }
    }
}

/// Writes a `LOCAL` header: family unspecified, no address.
pub(super) fn write_local(out: &mut HeaderBytes) {
    out.push(&SIGNATURE);
    out.push(&[VERSION << 4 | LOCAL, AF_UNSPEC << 4, 0, 0]);
}
