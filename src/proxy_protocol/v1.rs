//! Version 1: one line of US-ASCII text,
//! `PROXY TCP4|TCP6 SRC DST SPORT DPORT\r\n` or `PROXY UNKNOWN[ anything]\r\n`.
//!
//! Strict, as the protocol asks ("any sequence which does not exactly match the protocol
//! must be discarded"): single spaces, addresses of the announced family, no leading zeros
//! in IPv4 octets or ports, exact CRLF. Each field is checked as a prefix while it arrives
//! and in full once the byte after it is in, so a line goes wrong at the byte that breaks
//! it, not at its end.

use super::{HeaderBytes, Pair, Parsed, ProxyError, ProxyHeader, V1_MAX_LEN};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

const PREFIX: &[u8] = b"PROXY ";
const TCP4: &[u8] = b"TCP4 ";
const TCP6: &[u8] = b"TCP6 ";
const UNKNOWN: &[u8] = b"UNKNOWN";
/// Longest IPv6 text accepted: eight groups, or six and a dotted quad
/// (`ffff:ffff:ffff:ffff:ffff:ffff:255.255.255.255`).
const V6_TEXT_MAX: usize = 45;

/// Parses a v1 line at the start of `buf` (which begins with `P`).
pub(super) fn parse(buf: &[u8]) -> Result<Parsed, ProxyError> {
    // Only the first V1_MAX_LEN bytes may hold the line; a line not done within them never
    // will be.
    match parse_line(&buf[..buf.len().min(V1_MAX_LEN)])? {
        Parsed::Incomplete if buf.len() >= V1_MAX_LEN => Err(ProxyError::TooLong),
        parsed => Ok(parsed),
    }
}

fn parse_line(line: &[u8]) -> Result<Parsed, ProxyError> {
    let head = &line[..line.len().min(PREFIX.len())];
    if head != &PREFIX[..head.len()] {
        return Err(ProxyError::BadSignature);
    }
    let rest = &line[head.len()..];
    let at = PREFIX.len();
    if rest.starts_with(TCP4) {
        inet(line, at + TCP4.len(), Field::V4)
    } else if rest.starts_with(TCP6) {
        inet(line, at + TCP6.len(), Field::V6)
    } else if rest.starts_with(UNKNOWN) {
        unknown(line, at + UNKNOWN.len())
    } else if [TCP4, TCP6, UNKNOWN]
        .iter()
        .any(|word| word.starts_with(rest))
    {
        Ok(Parsed::Incomplete)
    } else {
        Err(ProxyError::BadSyntax)
    }
}

/// After `PROXY UNKNOWN` (ending at `at`): CRLF at once, or a space and anything up to the
/// CRLF, which the protocol says to ignore. A lone CR or LF is still refused.
fn unknown(line: &[u8], at: usize) -> Result<Parsed, ProxyError> {
    let rest = &line[at..];
    match rest.first() {
        None => return Ok(Parsed::Incomplete),
        Some(b'\r' | b' ') => {}
        Some(_) => return Err(ProxyError::BadSyntax),
    }
    let Some(end) = rest.iter().position(|&b| b == b'\r' || b == b'\n') else {
        return Ok(Parsed::Incomplete);
    };
    if rest[end] == b'\n' {
        return Err(ProxyError::BadSyntax);
    }
    match rest.get(end + 1) {
        None => Ok(Parsed::Incomplete),
        Some(b'\n') => Ok(Parsed::Complete {
            header: ProxyHeader::KEEP_PEER,
            len: at + end + 2,
        }),
        Some(_) => Err(ProxyError::BadSyntax),
    }
}

/// The four fields of a `TCP4`/`TCP6` line from `at`: two addresses of the family of
/// `address`, two ports, single spaces between them, CRLF after. Each field is read in
/// full as soon as the byte after it is in.
fn inet(line: &[u8], at: usize, address: Field) -> Result<Parsed, ProxyError> {
    let fields = [address, address, Field::Port, Field::Port];
    let mut ips = [IpAddr::from(Ipv4Addr::UNSPECIFIED); 2];
    let mut ports = [0; 2];
    let mut pos = at;
    for (i, field) in fields.into_iter().enumerate() {
        let start = pos;
        while pos < line.len() && field.is_byte(line[pos]) {
            pos += 1;
        }
        let text = &line[start..pos];
        if !field.is_prefix(text) {
            return Err(ProxyError::BadSyntax);
        }
        let Some(&after) = line.get(pos) else {
            return Ok(Parsed::Incomplete);
        };
        let separator = if i + 1 < fields.len() { b' ' } else { b'\r' };
        if after != separator {
            return Err(ProxyError::BadSyntax);
        }
        match i {
            0 | 1 => ips[i] = address.ip(text).ok_or(ProxyError::BadSyntax)?,
            _ => ports[i - 2] = port(text).ok_or(ProxyError::BadSyntax)?,
        }
        pos += 1;
    }
    match line.get(pos) {
        None => return Ok(Parsed::Incomplete),
        Some(b'\n') => {}
        Some(_) => return Err(ProxyError::BadSyntax),
    }
    Ok(Parsed::Complete {
        header: ProxyHeader {
            source: Some(SocketAddr::new(ips[0], ports[0])),
            destination: Some(SocketAddr::new(ips[1], ports[1])),
        },
        len: pos + 1,
    })
}

/// A port whose text passed [`Field::is_prefix`] (digits, no leading zero, at most 65535).
/// Empty text: `None`.
fn port(text: &[u8]) -> Option<u16> {
    std::str::from_utf8(text).ok()?.parse().ok()
}

/// The kinds of field of a `TCP4`/`TCP6` line.
#[derive(Debug, Clone, Copy)]
enum Field {
    V4,
    V6,
    Port,
}

impl Field {
    /// Whether `b` can appear in this field (a field runs up to the first byte that cannot).
    fn is_byte(self, b: u8) -> bool {
        match self {
            Field::V4 => b.is_ascii_digit() || b == b'.',
            Field::Port => b.is_ascii_digit(),
            Field::V6 => b.is_ascii_hexdigit() || b == b':' || b == b'.',
        }
    }

    /// The address in `text`, which passed [`Field::is_prefix`] for this family (so the
    /// standard parser sees only this family's form). Empty text: `None`.
    fn ip(self, text: &[u8]) -> Option<IpAddr> {
        let text = std::str::from_utf8(text).ok()?;
        match self {
            Field::V4 => text.parse::<Ipv4Addr>().ok().map(IpAddr::from),
            Field::V6 => text.parse::<Ipv6Addr>().ok().map(IpAddr::from),
            Field::Port => None,
        }
    }

    /// Whether `text` (possibly empty) can begin a valid field of this kind. Never false
    /// for the beginning of a valid field; true for some beginnings no ending can save
    /// (those fail once the field ends).
    fn is_prefix(self, text: &[u8]) -> bool {
        match self {
            Field::V4 => is_ipv4_prefix(text),
            Field::V6 => is_ipv6_prefix(text),
            Field::Port => is_decimal_prefix(text, u16::MAX.into()),
        }
    }
}

/// Digits only, no leading zero (so at most 5 digits for a u16), value at most `max`.
fn is_decimal_prefix(text: &[u8], max: u32) -> bool {
    text.len() <= 5
        && text.iter().all(u8::is_ascii_digit)
        && !(text.len() > 1 && text[0] == b'0')
        && text.iter().fold(0u32, |n, &d| n * 10 + u32::from(d - b'0')) <= max
}

/// At most four dot-separated octets, each 0-255 without a leading zero; only the last may
/// be empty (still to come).
fn is_ipv4_prefix(text: &[u8]) -> bool {
    let octets = text.split(|&b| b == b'.').count();
    octets <= 4
        && text.split(|&b| b == b'.').enumerate().all(|(i, octet)| {
            (i + 1 == octets || !octet.is_empty()) && is_decimal_prefix(octet, 255)
        })
}

/// Colon-separated groups of at most 4 hex digits, at most one `::`, no `:::`, a lone
/// leading colon only as the start of `::`, a dotted quad only as the last group after a
/// colon, and no
/// more groups than 128 bits hold (a dotted quad counts two, `::` at least one).
fn is_ipv6_prefix(text: &[u8]) -> bool {
    if text.len() > V6_TEXT_MAX
        || (text.len() >= 2 && text[0] == b':' && text[1] != b':')
        || text.windows(3).any(|w| w == b":::")
    {
        return false;
    }
    let compressions = text.windows(2).filter(|w| *w == b"::").count();
    if compressions > 1 {
        return false;
    }
    let groups = text.split(|&b| b == b':').count();
    let mut explicit = 0;
    for (i, group) in text.split(|&b| b == b':').enumerate() {
        if group.contains(&b'.') {
            if i == 0 || i + 1 != groups || !is_ipv4_prefix(group) {
                return false;
            }
            explicit += 2;
        } else {
            if group.len() > 4 || !group.iter().all(u8::is_ascii_hexdigit) {
                return false;
            }
            explicit += usize::from(!group.is_empty());
        }
    }
    explicit <= if compressions == 1 { 7 } else { 8 }
}

/// Writes `PROXY TCP4 ...` or `PROXY TCP6 ...` with CRLF.
pub(super) fn write(out: &mut HeaderBytes, pair: Pair) {
    out.push(PREFIX);
    let (sport, dport) = match pair {
        Pair::V4(s, d) => {
            out.push(TCP4);
            write_ipv4(out, s.ip().octets());
            out.push(b" ");
            write_ipv4(out, d.ip().octets());
            (s.port(), d.port())
        }
        Pair::V6(s, d) => {
            out.push(TCP6);
            write_ipv6(out, s.ip());
            out.push(b" ");
            write_ipv6(out, d.ip());
            (s.port(), d.port())
        }
    };
    out.push(b" ");
    out.push_decimal(sport);
    out.push(b" ");
    out.push_decimal(dport);
    out.push(b"\r\n");
}

fn write_ipv4(out: &mut HeaderBytes, octets: [u8; 4]) {
    for (i, octet) in octets.into_iter().enumerate() {
        if i > 0 {
            out.push(b".");
        }
        out.push_decimal(octet.into());
    }
}

/// Writes `ip` as RFC 5952 text in hex groups only (an IPv4-mapped address too, as
/// `::ffff:102:304`: the protocol's text describes hex groups, and every parser reads
/// them): lowercase, no leading zeros, the longest run of two or more zero groups (the
/// first of equals) as `::`.
pub(super) fn write_ipv6(out: &mut HeaderBytes, ip: &Ipv6Addr) {
    let groups = ip.segments();
    let (mut run_start, mut run_len) = (0, 0);
    let mut i = 0;
    while i < groups.len() {
        let start = i;
        while i < groups.len() && groups[i] == 0 {
            i += 1;
        }
        if i - start > run_len {
            (run_start, run_len) = (start, i - start);
        }
        i += 1;
    }
    let write_groups = |out: &mut HeaderBytes, groups: &[u16]| {
        for (i, &group) in groups.iter().enumerate() {
            if i > 0 {
                out.push(b":");
            }
            out.push_hex(group);
        }
    };
    if run_len < 2 {
        write_groups(out, &groups);
    } else {
        write_groups(out, &groups[..run_start]);
        out.push(b"::");
        write_groups(out, &groups[run_start + run_len..]);
    }
}
