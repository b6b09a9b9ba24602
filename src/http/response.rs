//! Response heads: parse an upstream's head with httparse, validate its framing, decide
//! how lbd frames the body toward the client, and write lbd's own head for the client.

use super::{
    copy_field_line, is_framing, is_hop_by_hop, listed_in_connection, name_is,
    parse_content_length, trim, write_header, write_u64, ConnectionTokens, Framing,
};
use crate::buffer::Buffer;

/// Most header fields accepted in a response head; more is a 502.
pub const RESPONSE_HEADERS: usize = 128;

/// Why an upstream's response head is unusable; the client gets `502`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ResponseError {
    /// The head does not parse, or has too many header fields.
    Malformed,
    /// Status outside 100–599, or a `101` to a request that did not ask to upgrade.
    BadStatus,
    /// Both `Content-Length` and `Transfer-Encoding`, or conflicting lengths.
    AmbiguousFraming,
    /// A `Transfer-Encoding` other than exactly `chunked`.
    UnknownEncoding,
}

impl std::fmt::Display for ResponseError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            ResponseError::Malformed => "malformed response head",
            ResponseError::BadStatus => "invalid response status",
            ResponseError::AmbiguousFraming => "ambiguous response framing",
            ResponseError::UnknownEncoding => "unsupported response transfer-encoding",
        })
    }
}

/// What the exchange needs to know about the request while reading its response.
#[derive(Debug, Clone, Copy)]
pub struct ResponseContext {
    /// The request was `HEAD`: the response has no body whatever it says.
    pub head_request: bool,
    /// The client's HTTP minor version.
    pub client_minor: u8,
    /// The client connection may carry another request after this response.
    pub client_keep_alive: bool,
    /// The request asked to upgrade (spec §10): a `101` is welcome.
    pub upgrade: bool,
}

/// A parsed response head and the framing decisions for both sides.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ResponseHead {
    /// Bytes of the head in the input.
    pub head_len: usize,
    /// Status code, 100–599.
    pub status: u16,
    /// A 1xx interim response: another head follows.
    pub interim: bool,
    /// How the body arrives from the upstream.
    pub upstream_framing: Framing,
    /// How lbd frames the body to the client.
    pub client_framing: Framing,
    /// The upstream connection may be pooled after this response (framing permitting).
    pub upstream_keep_alive: bool,
    /// The client connection stays open after this response.
    pub client_keep_alive: bool,
}

/// Parses `input[..head_len]` (checked and found by [`super::scan::ResponseScan`]) and
/// appends the client-facing head to `out` (nothing for an interim response an HTTP/1.0
/// client must not see).
pub fn parse(
    input: &[u8],
    ctx: &ResponseContext,
    out: &mut Buffer,
) -> Result<ResponseHead, ResponseError> {
    parse_whole(input, ctx, out)?.ok_or(ResponseError::Malformed)
}

/// As [`parse`], for bytes that begin with `HTTP/1.` and were not scanned: `Ok(None)` if
/// they do not yet hold the whole head ([`super::scan::ResponseScan::parse`] says when
/// this is used).
pub fn parse_whole(
    input: &[u8],
    ctx: &ResponseContext,
    out: &mut Buffer,
) -> Result<Option<ResponseHead>, ResponseError> {
    // Uninitialised header storage: nothing is written per response but the fields found.
    let mut storage =
        [const { std::mem::MaybeUninit::<httparse::Header<'_>>::uninit() }; RESPONSE_HEADERS];
    let mut res = httparse::Response::new(&mut []);
    let parsed = httparse::ParserConfig::default().parse_response_with_uninit_headers(
        &mut res,
        input,
        &mut storage,
    );
    let head_len = match parsed {
        Ok(httparse::Status::Complete(n)) => n,
        Ok(httparse::Status::Partial) => return Ok(None),
        Err(httparse::Error::Version) => {
            return match later_minor_at(input) {
                // RFC 9110 §2.5: HTTP/1.x with x > 1 is handled as HTTP/1.1; httparse
                // knows 1.0 and 1.1 only, so a copy that says 1.1 is parsed (rare).
                Some(at) => {
                    let mut copy = input.to_vec();
                    copy[at] = b'1';
                    parse_whole(&copy, ctx, out)
                }
                None => Err(ResponseError::Malformed),
            };
        }
        _ => return Err(ResponseError::Malformed),
    };
    let (Some(minor), Some(status)) = (res.version, res.code) else {
        return Err(ResponseError::Malformed);
    };
    let reason = res.reason.unwrap_or("");
    let headers: &[httparse::Header<'_>] = res.headers;
    if !(100..=599).contains(&status) || (status == 101 && !ctx.upgrade) {
        return Err(ResponseError::BadStatus);
    }
    if status == 101 {
        return Ok(Some(switching(head_len, reason, headers, out)));
    }
    let interim = status < 200;

    let mut content_length = None;
    let mut encodings = 0;
    let mut chunked = false;
    for h in headers {
        if name_is(h.name, "content-length") {
            let n = parse_content_length(trim(h.value)).ok_or(ResponseError::AmbiguousFraming)?;
            if content_length.is_some_and(|m| m != n) {
                return Err(ResponseError::AmbiguousFraming);
            }
            content_length = Some(n);
        } else if name_is(h.name, "transfer-encoding") {
            encodings += 1;
            chunked = trim(h.value).eq_ignore_ascii_case(b"chunked");
        }
    }
    let bodiless = interim || ctx.head_request || status == 204 || status == 304;
    let upstream_framing = match (encodings, content_length) {
        (0, _) | (_, None) if bodiless => Framing::Empty,
        (0, Some(0)) => Framing::Empty,
        (0, Some(n)) => Framing::Length(n),
        (0, None) => Framing::Close,
        (_, Some(_)) => return Err(ResponseError::AmbiguousFraming),
        (1, None) if chunked && minor == 1 => Framing::Chunked,
        _ => return Err(ResponseError::UnknownEncoding),
    };
    let connection = ConnectionTokens::of(headers);
    let upstream_keep_alive = upstream_framing != Framing::Close
        && !connection.close
        && (minor == 1 || connection.keep_alive);

    let client_framing = match upstream_framing {
        Framing::Chunked | Framing::Close if ctx.client_minor == 0 => Framing::Close,
        Framing::Chunked | Framing::Close => Framing::Chunked,
        other => other,
    };
    let client_keep_alive = ctx.client_keep_alive && client_framing != Framing::Close;

    let head = ResponseHead {
        head_len,
        status,
        interim,
        upstream_framing,
        client_framing,
        upstream_keep_alive,
        client_keep_alive,
    };
    if interim && ctx.client_minor == 0 {
        // RFC 9110 §15.2: never send a 1xx response to an HTTP/1.0 client.
        return Ok(Some(head));
    }

    out.extend(b"HTTP/1.1 ");
    write_u64(out, u64::from(status));
    out.extend(b" ");
    out.extend(
        if reason.is_empty() {
            default_reason(status)
        } else {
            reason
        }
        .as_bytes(),
    );
    out.extend(b"\r\n");
    let listing = connection.lists_fields;
    for h in headers {
        let drop = is_hop_by_hop(h.name)
            || is_framing(h.name)
            || (listing && listed_in_connection(headers, h.name));
        if !drop {
            copy_field_line(out, input, h);
        }
    }
    if !interim {
        match client_framing {
            Framing::Length(n) => {
                out.extend(b"Content-Length: ");
                write_u64(out, n);
                out.extend(b"\r\n");
            }
            Framing::Chunked => out.extend(b"Transfer-Encoding: chunked\r\n"),
            Framing::Empty => {
                // A HEAD or 304 response keeps the length of the representation; a
                // 2xx with a zero length says so.
                if let Some(n) = content_length.filter(|_| status != 204) {
                    out.extend(b"Content-Length: ");
                    write_u64(out, n);
                    out.extend(b"\r\n");
                }
            }
            Framing::Close => {}
        }
        if !client_keep_alive {
            out.extend(b"Connection: close\r\n");
        } else if ctx.client_minor == 0 {
            out.extend(b"Connection: keep-alive\r\n");
        }
    }
    out.extend(b"\r\n");
    Ok(Some(head))
}

/// Where the minor digit of an `HTTP/1.x` version with x from 2 to 9 sits in the status
/// line of `head` (after any empty lines, which httparse skips); `None` otherwise.
fn later_minor_at(head: &[u8]) -> Option<usize> {
    let start = head.iter().position(|&b| b != b'\r' && b != b'\n')?;
    let line = head.get(start..start + 9)?;
    (line.starts_with(b"HTTP/1.") && (b'2'..=b'9').contains(&line[7]) && line[8] == b' ')
        .then_some(start + 7)
}

/// A `101 Switching Protocols` to an upgrade request (spec §10): relayed with its
/// `Connection: upgrade` and `Upgrade` (the one exception to hop-by-hop removal) and no
/// framing; after it the connection is a tunnel, so nothing is pooled or kept alive.
fn switching(
    head_len: usize,
    reason: &str,
    headers: &[httparse::Header<'_>],
    out: &mut Buffer,
) -> ResponseHead {
    out.extend(b"HTTP/1.1 101 ");
    out.extend(
        if reason.is_empty() {
            "Switching Protocols"
        } else {
            reason
        }
        .as_bytes(),
    );
    out.extend(b"\r\n");
    let listing = ConnectionTokens::of(headers).lists_fields;
    for h in headers {
        let drop = is_hop_by_hop(h.name)
            || is_framing(h.name)
            || (listing && listed_in_connection(headers, h.name));
        if !drop {
            write_header(out, h.name.as_bytes(), h.value);
        }
    }
    out.extend(b"Connection: upgrade\r\n");
    for h in headers.iter().filter(|h| name_is(h.name, "upgrade")) {
        write_header(out, b"Upgrade", h.value);
    }
    out.extend(b"\r\n");
    ResponseHead {
        head_len,
        status: 101,
        interim: false,
        upstream_framing: Framing::Empty,
        client_framing: Framing::Empty,
        upstream_keep_alive: false,
        client_keep_alive: false,
    }
}

/// The standard reason phrase, for heads that came with none.
pub fn default_reason(status: u16) -> &'static str {
    match status {
        100 => "Continue",
        103 => "Early Hints",
        200 => "OK",
        201 => "Created",
        202 => "Accepted",
        204 => "No Content",
        206 => "Partial Content",
        301 => "Moved Permanently",
        302 => "Found",
        303 => "See Other",
        304 => "Not Modified",
        307 => "Temporary Redirect",
        308 => "Permanent Redirect",
        400 => "Bad Request",
        401 => "Unauthorized",
        403 => "Forbidden",
        404 => "Not Found",
        405 => "Method Not Allowed",
        408 => "Request Timeout",
        413 => "Content Too Large",
        414 => "URI Too Long",
        429 => "Too Many Requests",
        431 => "Request Header Fields Too Large",
        500 => "Internal Server Error",
        501 => "Not Implemented",
        502 => "Bad Gateway",
        503 => "Service Unavailable",
        504 => "Gateway Timeout",
        _ => "Unknown",
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::buffer::BufPool;

    fn run(input: &str, ctx: ResponseContext) -> Result<(ResponseHead, String), ResponseError> {
        let mut pool = BufPool::new(256, 1);
        let mut out = Buffer::default();
        out.ensure(&mut pool);
        let head = parse(input.as_bytes(), &ctx, &mut out)?;
        Ok((head, String::from_utf8(out.data().to_vec()).unwrap()))
    }

    const GET11: ResponseContext = ResponseContext {
        head_request: false,
        client_minor: 1,
        client_keep_alive: true,
        upgrade: false,
    };
    const GET10: ResponseContext = ResponseContext {
        head_request: false,
        client_minor: 0,
        client_keep_alive: true,
        upgrade: false,
    };

    #[test]
    fn content_length_relayed() {
        let (h, out) = run(
            "HTTP/1.1 200 OK\r\nContent-Length: 5\r\nConnection: keep-alive\r\nX-A: b\r\n\r\n",
            GET11,
        )
        .unwrap();
        assert_eq!(h.upstream_framing, Framing::Length(5));
        assert!(h.upstream_keep_alive && h.client_keep_alive);
        assert_eq!(
            out,
            "HTTP/1.1 200 OK\r\nX-A: b\r\nContent-Length: 5\r\n\r\n"
        );
    }

    #[test]
    fn close_delimited_is_rechunked_for_11_and_closed_for_10() {
        let (h, out) = run("HTTP/1.0 200 OK\r\n\r\n", GET11).unwrap();
        assert_eq!(
            (h.upstream_framing, h.client_framing),
            (Framing::Close, Framing::Chunked)
        );
        assert!(!h.upstream_keep_alive && h.client_keep_alive);
        assert!(out.contains("Transfer-Encoding: chunked"));
        let (h, out) = run(
            "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n",
            GET10,
        )
        .unwrap();
        assert_eq!(
            (h.upstream_framing, h.client_framing),
            (Framing::Chunked, Framing::Close)
        );
        assert!(!h.client_keep_alive);
        assert!(
            out.contains("Connection: close") && !out.contains("chunked"),
            "{out}"
        );
    }

    /// RFC 9110 §2.5: a later HTTP/1.x minor version is HTTP/1.1 (chunked allowed,
    /// persistent by default); lbd's status line says HTTP/1.1 anyway.
    #[test]
    fn later_minor_versions_are_http11() {
        let (h, out) = run(
            "HTTP/1.5 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n",
            GET11,
        )
        .unwrap();
        assert_eq!(h.upstream_framing, Framing::Chunked);
        assert!(h.upstream_keep_alive);
        assert!(out.starts_with("HTTP/1.1 200 OK\r\n"), "{out}");
        for version in ["1.10", "2.0", "1.a"] {
            let input = format!("HTTP/{version} 200 OK\r\n\r\n");
            assert_eq!(run(&input, GET11).unwrap_err(), ResponseError::Malformed);
        }
    }

    #[test]
    fn keep_alive_to_http10_client_is_announced() {
        let (_, out) = run("HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n", GET10).unwrap();
        assert!(out.contains("Connection: keep-alive"), "{out}");
    }

    #[test]
    fn bodiless_responses() {
        let head = ResponseContext {
            head_request: true,
            ..GET11
        };
        let (h, out) = run("HTTP/1.1 200 OK\r\nContent-Length: 9\r\n\r\n", head).unwrap();
        assert_eq!(h.upstream_framing, Framing::Empty);
        assert!(out.contains("Content-Length: 9"));
        let (h, _) = run("HTTP/1.1 204 No Content\r\n\r\n", GET11).unwrap();
        assert_eq!(h.upstream_framing, Framing::Empty);
        let (h, _) = run(
            "HTTP/1.1 304 Not Modified\r\nTransfer-Encoding: chunked\r\n\r\n",
            GET11,
        )
        .unwrap();
        assert_eq!(h.upstream_framing, Framing::Empty);
        let (h, out) = run("HTTP/1.1 100 Continue\r\n\r\n", GET11).unwrap();
        assert!(h.interim);
        assert_eq!(out, "HTTP/1.1 100 Continue\r\n\r\n");
        let (_, out) = run("HTTP/1.1 100 Continue\r\n\r\n", GET10).unwrap();
        assert_eq!(out, "");
    }

    #[test]
    fn refusals() {
        let table: &[(&str, ResponseError)] = &[
            ("HTTP/1.1 2000 OK\r\n\r\n", ResponseError::Malformed),
            ("HTTP/1.1 099 X\r\n\r\n", ResponseError::BadStatus),
            ("HTTP/1.1 600 X\r\n\r\n", ResponseError::BadStatus),
            ("HTTP/1.1 101 Switching\r\n\r\n", ResponseError::BadStatus),
            (
                "HTTP/1.1 200 OK\r\nContent-Length: 1\r\nTransfer-Encoding: chunked\r\n\r\n",
                ResponseError::AmbiguousFraming,
            ),
            (
                "HTTP/1.1 200 OK\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\n",
                ResponseError::AmbiguousFraming,
            ),
            (
                "HTTP/1.1 200 OK\r\nContent-Length: -1\r\n\r\n",
                ResponseError::AmbiguousFraming,
            ),
            (
                "HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip\r\n\r\n",
                ResponseError::UnknownEncoding,
            ),
            (
                "HTTP/1.0 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n",
                ResponseError::UnknownEncoding,
            ),
            (
                "HTTP/1.1 200 OK\r\nX: a\r\n b\r\n\r\n",
                ResponseError::Malformed,
            ),
            (
                "HTTP/1.1 200 OK\r\nBad Header: a\r\n\r\n",
                ResponseError::Malformed,
            ),
            ("FOO 200 OK\r\n\r\n", ResponseError::Malformed),
        ];
        for (input, want) in table {
            assert_eq!(
                run(input, GET11).map(|r| r.0).unwrap_err(),
                *want,
                "{input:?}"
            );
        }
    }
}
