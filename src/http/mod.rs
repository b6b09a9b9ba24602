//! HTTP/1.x: head parsing and re-serialisation (requests and responses), body framing
//! (Content-Length, chunked, close-delimited), and the responses lbd makes itself.
//!
//! Everything here is pure: bytes in, bytes (or a verdict) out, no sockets, no clocks.

pub mod body;
pub mod canned;
pub mod chunked;
pub(crate) mod redirect;
pub mod request;
pub mod response;
pub mod scan;

pub use canned::Canned;
pub use request::RequestError;

/// Headers that describe one connection, never forwarded (RFC 9110 §7.6.1).
const HOP_BY_HOP: [&str; 6] = [
    "connection",
    "keep-alive",
    "proxy-connection",
    "te",
    "trailer",
    "upgrade",
];

/// Most body bytes lbd accepts when no limit is configured (`limits.body_bytes` unset, and
/// every response): 2^63 − 1, the largest length a signed 64-bit file offset can hold
/// (nginx, and most servers behind lbd, use one). A larger length cannot be real.
pub const MAX_BODY: u64 = i64::MAX as u64;

/// Framing headers: lbd regenerates them from its own framing of the body, so the
/// sender's are never copied (they are end-to-end, but the framing is lbd's).
const FRAMING: [&str; 2] = ["content-length", "transfer-encoding"];

/// Case-insensitive ASCII comparison of a header name.
pub fn name_is(name: &str, lower: &str) -> bool {
    name.len() == lower.len() && name.as_bytes().eq_ignore_ascii_case(lower.as_bytes())
}

/// True for the fixed hop-by-hop headers (those a `Connection` header lists are found
/// by [`listed_in_connection`]).
pub fn is_hop_by_hop(name: &str) -> bool {
    HOP_BY_HOP.iter().any(|h| name_is(name, h))
}

/// True for `Content-Length` and `Transfer-Encoding`, which lbd writes itself.
pub fn is_framing(name: &str) -> bool {
    FRAMING.iter().any(|h| name_is(name, h))
}

/// The comma-separated elements of a list header, trimmed of whitespace, empty ones
/// skipped (RFC 9110 §5.6.1).
pub fn list_items(value: &[u8]) -> impl Iterator<Item = &[u8]> {
    value
        .split(|&b| b == b',')
        .map(trim)
        .filter(|item| !item.is_empty())
}

/// `value` without leading and trailing spaces and tabs.
pub fn trim(value: &[u8]) -> &[u8] {
    let start = value
        .iter()
        .position(|b| !matches!(b, b' ' | b'\t'))
        .unwrap_or(value.len());
    let end = value
        .iter()
        .rposition(|b| !matches!(b, b' ' | b'\t'))
        .map_or(start, |i| i + 1);
    &value[start..end]
}

/// What the `Connection` header values of a head say, found in one pass over the head.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ConnectionTokens {
    /// `close` is listed.
    pub close: bool,
    /// `keep-alive` is listed.
    pub keep_alive: bool,
    /// `upgrade` is listed.
    pub upgrade: bool,
    /// Some field name is listed (anything but `close` and `keep-alive`): only then is
    /// the per-header [`listed_in_connection`] scan needed (the common head skips it,
    /// which keeps forwarding linear in the headers).
    pub lists_fields: bool,
}

impl ConnectionTokens {
    /// The tokens of every `Connection` header of a head.
    pub fn of(headers: &[httparse::Header<'_>]) -> ConnectionTokens {
        let mut tokens = ConnectionTokens::default();
        for h in headers.iter().filter(|h| name_is(h.name, "connection")) {
            for item in list_items(h.value) {
                if item.eq_ignore_ascii_case(b"close") {
                    tokens.close = true;
                } else if item.eq_ignore_ascii_case(b"keep-alive") {
                    tokens.keep_alive = true;
                } else {
                    tokens.upgrade |= item.eq_ignore_ascii_case(b"upgrade");
                    tokens.lists_fields = true;
                }
            }
        }
        tokens
    }
}

/// True when a header is listed in a `Connection` header, making it hop-by-hop.
pub fn listed_in_connection(headers: &[httparse::Header<'_>], name: &str) -> bool {
    headers
        .iter()
        .filter(|h| name_is(h.name, "connection"))
        .flat_map(|h| list_items(h.value))
        .any(|item| item.eq_ignore_ascii_case(name.as_bytes()))
}

/// Parses a `Content-Length` value strictly: `1*DIGIT`, ASCII digits only (no sign, space,
/// comma or hex), as many as the head holds (leading zeros are allowed). `None` for
/// anything else, and for a number too large for `u64` (RFC 9110 §8.6: a recipient must
/// not let a large number overflow). Whether a length fits a limit is the caller's check.
pub fn parse_content_length(value: &[u8]) -> Option<u64> {
    if value.is_empty() || !value.iter().all(u8::is_ascii_digit) {
        return None;
    }
    value.iter().try_fold(0u64, |n, &d| {
        n.checked_mul(10)?.checked_add(u64::from(d - b'0'))
    })
}

/// How a message body is delimited on the wire.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Framing {
    /// No body at all.
    Empty,
    /// Exactly this many bytes.
    Length(u64),
    /// `Transfer-Encoding: chunked`.
    Chunked,
    /// Until the connection closes (responses only).
    Close,
}

/// Writes a header line `name: value\r\n`.
fn write_header(out: &mut crate::buffer::Buffer, name: &[u8], value: &[u8]) {
    out.extend_all(&[name, b": ", value, b"\r\n"]);
}

/// Writes a kept field line of `input` as the sender wrote it (name, colon, optional
/// whitespace, value: httparse refuses obs-fold, so nothing else lies between) and CRLF,
/// in one copy; piecewise if the line is not one stretch of `input`.
fn copy_field_line(out: &mut crate::buffer::Buffer, input: &[u8], h: &httparse::Header<'_>) {
    let base = input.as_ptr() as usize;
    let start = (h.name.as_ptr() as usize).wrapping_sub(base);
    let end = (h.value.as_ptr() as usize)
        .wrapping_sub(base)
        .wrapping_add(h.value.len());
    match input.get(start..end) {
        Some(line) if !h.value.is_empty() && line.len() > h.name.len() => {
            out.extend_all(&[line, b"\r\n"])
        }
        _ => write_header(out, h.name.as_bytes(), h.value),
    }
}

/// Writes an IP address as `Display` does; IPv4, the common case, without the formatter.
fn write_ip(out: &mut crate::buffer::Buffer, ip: std::net::IpAddr) {
    match ip {
        std::net::IpAddr::V4(v4) => {
            // Dotted decimal assembled from a table of the 256 octets, then one copy.
            let mut text = [0u8; 15];
            let mut len = 0;
            for (i, octet) in v4.octets().into_iter().enumerate() {
                if i > 0 {
                    text[len] = b'.';
                    len += 1;
                }
                let (digits, n) = OCTETS[usize::from(octet)];
                text[len..len + 3].copy_from_slice(&digits);
                len += usize::from(n);
            }
            out.extend(&text[..len]);
        }
        std::net::IpAddr::V6(v6) => {
            use std::fmt::Write;
            let _ = write!(out, "{v6}");
        }
    }
}

/// Every octet in decimal: its digits (left-aligned) and how many there are.
static OCTETS: [([u8; 3], u8); 256] = {
    let mut table = [([0u8; 3], 0u8); 256];
    let mut i = 0;
    while i < 256 {
        let n = i as u8;
        table[i] = match n {
            100.. => ([b'0' + n / 100, b'0' + n / 10 % 10, b'0' + n % 10], 3),
            10.. => ([b'0' + n / 10, b'0' + n % 10, 0], 2),
            _ => ([b'0' + n, 0, 0], 1),
        };
        i += 1;
    }
    table
};

/// Writes a decimal number without allocating.
fn write_u64(out: &mut crate::buffer::Buffer, mut n: u64) {
    if n < 1000 {
        // Status codes, IPv4 octets, short lengths: no loop.
        let n = n as u16;
        let digits = [
            b'0' + (n / 100) as u8,
            b'0' + (n / 10 % 10) as u8,
            b'0' + (n % 10) as u8,
        ];
        let skip = match n {
            100.. => 0,
            10.. => 1,
            _ => 2,
        };
        out.extend(&digits[skip..]);
        return;
    }
    let mut digits = [0u8; 20];
    let mut i = digits.len();
    loop {
        i -= 1;
        digits[i] = b'0' + (n % 10) as u8;
        n /= 10;
        if n == 0 {
            break;
        }
    }
    out.extend(&digits[i..]);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn content_length_is_strict() {
        let table: &[(&[u8], Option<u64>)] = &[
            (b"0", Some(0)),
            (b"42", Some(42)),
            (b"007", Some(7)),
            (b"+5", None),
            (b"-5", None),
            (b" 5", None),
            (b"5,5", None),
            (b"0x10", None),
            (b"", None),
            (b"123456789012345678", Some(123456789012345678)),
            (b"1234567890123456789", Some(1234567890123456789)),
            (b"18446744073709551615", Some(u64::MAX)),
            (b"18446744073709551616", None),
            (b"99999999999999999999", None),
            (b"000000000000000000000042", Some(42)),
        ];
        for (value, want) in table {
            assert_eq!(parse_content_length(value), *want, "{:?}", value);
        }
    }

    #[test]
    fn ip_addresses_are_written_as_display_writes_them() {
        let mut pool = crate::buffer::BufPool::new(64, 1);
        for ip in [
            "0.0.0.0",
            "9.10.99.100",
            "127.0.0.1",
            "255.255.255.255",
            "1.22.203.4",
            "::1",
            "2001:db8::7",
        ] {
            let ip: std::net::IpAddr = ip.parse().unwrap();
            let mut out = crate::buffer::Buffer::default();
            out.ensure(&mut pool);
            write_ip(&mut out, ip);
            assert_eq!(out.data(), ip.to_string().as_bytes());
            out.release(&mut pool);
        }
    }

    #[test]
    fn list_items_trim() {
        let items: Vec<&[u8]> = list_items(b" close ,, keep-alive\t").collect();
        assert_eq!(items, vec![&b"close"[..], &b"keep-alive"[..]]);
    }
}
