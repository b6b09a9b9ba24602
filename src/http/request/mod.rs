//! Request heads: parse a client's head with httparse, validate it strictly (spec §7),
//! and write lbd's own re-serialised head for the upstream.

use std::fmt::Write as _;
use std::mem::MaybeUninit;
use std::net::{IpAddr, SocketAddr};

use super::{
    copy_field_line, is_framing, is_hop_by_hop, list_items, listed_in_connection, name_is,
    parse_content_length, trim, write_header, write_ip, write_u64, ConnectionTokens, Framing,
};
use crate::bounds::MAX_HEADERS;
use crate::buffer::Buffer;
use crate::grammar::{classes, HOST};
use crate::hash::fnv1a;

/// Request methods lbd distinguishes; everything else is `Other` and forwarded as is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Method {
    /// GET
    Get,
    /// HEAD: the response never has a body.
    Head,
    /// POST
    Post,
    /// PUT
    Put,
    /// DELETE
    Delete,
    /// OPTIONS
    Options,
    /// TRACE
    Trace,
    /// CONNECT: not supported by a reverse proxy.
    Connect,
    /// Any other token (PATCH, PROPFIND, ...), treated as non-idempotent.
    Other,
}

impl Method {
    fn from_token(token: &str) -> Method {
        match token {
            "GET" => Method::Get,
            "HEAD" => Method::Head,
            "POST" => Method::Post,
            "PUT" => Method::Put,
            "DELETE" => Method::Delete,
            "OPTIONS" => Method::Options,
            "TRACE" => Method::Trace,
            "CONNECT" => Method::Connect,
            _ => Method::Other,
        }
    }

    /// Idempotent per RFC 9110 §9.2.2: sending it twice has the effect of sending it once,
    /// so a failed attempt may be replayed.
    pub fn is_idempotent(self) -> bool {
        matches!(
            self,
            Method::Get
                | Method::Head
                | Method::Put
                | Method::Delete
                | Method::Options
                | Method::Trace
        )
    }
}

/// Why a request head was refused; each maps to one status in [`super::Canned`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RequestError {
    /// 400: malformed syntax, bad Host, ambiguous framing.
    Malformed(&'static str),
    /// 413: declared body larger than `limits.body_bytes`.
    BodyTooLarge,
    /// 414: the request line alone exceeds `limits.head_bytes`.
    UriTooLong,
    /// 431: the head exceeds `limits.head_bytes` or `limits.headers`.
    HeadersTooLarge,
    /// 501: a `Transfer-Encoding` other than exactly `chunked`.
    NotImplemented(&'static str),
    /// 405: CONNECT (a reverse proxy opens no tunnels to arbitrary hosts).
    MethodNotAllowed,
}

impl std::fmt::Display for RequestError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            RequestError::Malformed(why) => write!(f, "bad request: {why}"),
            RequestError::BodyTooLarge => f.write_str("request body too large"),
            RequestError::UriTooLong => f.write_str("request line too long"),
            RequestError::HeadersTooLarge => f.write_str("request head too large"),
            RequestError::NotImplemented(why) => write!(f, "not implemented: {why}"),
            RequestError::MethodNotAllowed => f.write_str("method not allowed: CONNECT"),
        }
    }
}

/// What the session needs to know about a parsed request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RequestHead {
    /// Bytes of the head in the input, terminating empty line included.
    pub head_len: usize,
    /// The method class.
    pub method: Method,
    /// HTTP minor version: 0 or 1.
    pub minor: u8,
    /// How the request body is framed (`Empty`, `Length` or `Chunked`).
    pub framing: Framing,
    /// The client allows another request on this connection after this one.
    pub keep_alive: bool,
    /// `Expect: 100-continue` was sent (and forwarded).
    pub expect_continue: bool,
    /// The client asks to switch protocols (`Connection: upgrade` with an `Upgrade`
    /// other than `h2c`, HTTP/1.1): both headers were forwarded, and a `101` answer
    /// turns the connection into a tunnel (spec §10).
    pub upgrade: bool,
    /// FNV-1a hash of the configured hash header's value, when present.
    pub hash: Option<u64>,
    /// Where the request's host is in the head (the absolute-form authority, else the
    /// `Host` value; empty without one), for routing (spec §12).
    pub host: Span,
    /// Where the request target's path (with its query) is in the head, for routing:
    /// `*` for `OPTIONS *`, and empty for an absolute-form target without a path (which
    /// is forwarded as `/`).
    pub path: Span,
}

/// A range of bytes of the head a [`RequestHead`] was parsed from (valid while those
/// bytes are).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Span {
    start: u32,
    end: u32,
}

impl Span {
    /// The span of `part`, a subslice of `whole` (an empty `part` may lie anywhere: the
    /// span is empty).
    fn within(whole: &[u8], part: &[u8]) -> Span {
        debug_assert!(
            part.is_empty() || whole.as_ptr_range().contains(&part.as_ptr()),
            "a span outside the head"
        );
        let start = (part.as_ptr() as usize).saturating_sub(whole.as_ptr() as usize);
        let start = start.min(whole.len());
        let end = (start + part.len()).min(whole.len());
        Span {
            start: start as u32,
            end: end as u32,
        }
    }

    /// The bytes of `head` it covers.
    pub fn of<'a>(&self, head: &'a [u8]) -> &'a [u8] {
        head.get(self.start as usize..self.end as usize)
            .unwrap_or_default()
    }
}

/// Per-request inputs of the rewrite that come from the connection and the config.
#[derive(Debug, Clone, Copy)]
pub struct RequestContext<'a> {
    /// The client's address, appended to `X-Forwarded-For`.
    pub client: IpAddr,
    /// The address the client connected to; the `Host` of a host-less HTTP/1.0 request.
    pub local: SocketAddr,
    /// `limits.headers`.
    pub max_headers: usize,
    /// `limits.body_bytes`.
    pub max_body: Option<u64>,
    /// Lower-case header name whose value `consistent_hash` hashes.
    pub hash_header: Option<&'a str>,
    /// The client connected over TLS: `X-Forwarded-Proto: https`.
    pub tls: bool,
}

/// Parses the head `input[..head_len]` (checked and found by [`super::scan::RequestScan`],
/// which refuses what httparse leaves to lbd: bare LF, target bytes outside RFC 3986) and
/// appends lbd's re-serialised upstream head to `out`. On error `out` may hold a partial
/// head and must be cleared by the caller.
pub fn parse(
    input: &[u8],
    ctx: &RequestContext<'_>,
    out: &mut Buffer,
) -> Result<RequestHead, RequestError> {
    let mut storage = [const { MaybeUninit::<httparse::Header<'_>>::uninit() }; MAX_HEADERS];
    let max = ctx.max_headers.min(MAX_HEADERS);
    let mut req = httparse::Request::new(&mut []);
    let head_len = match req.parse_with_uninit_headers(input, &mut storage[..max]) {
        Ok(httparse::Status::Complete(n)) => n,
        Ok(httparse::Status::Partial) => return Err(RequestError::Malformed("incomplete head")),
        Err(httparse::Error::TooManyHeaders) => return Err(RequestError::HeadersTooLarge),
        Err(httparse::Error::Version) => {
            return match later_minor_at(input) {
                // RFC 9110 §2.5: HTTP/1.x with x > 1 is handled as HTTP/1.1. httparse knows
                // 1.0 and 1.1 only: parse a copy that says 1.1 (such requests are rare
                // enough that this one allocation never matters).
                Some(at) => {
                    let mut copy = input.to_vec();
                    copy[at] = b'1';
                    parse(&copy, ctx, out)
                }
                None => Err(RequestError::Malformed("unsupported HTTP version")),
            };
        }
        Err(_) => return Err(RequestError::Malformed("invalid request head")),
    };
    let (Some(method_token), Some(target), Some(minor)) = (req.method, req.path, req.version)
    else {
        return Err(RequestError::Malformed("incomplete request line"));
    };
    let headers: &[httparse::Header<'_>] = req.headers;
    let method = Method::from_token(method_token);
    let target = RequestTarget::classify(method, target)?;

    let mut facts = HeaderFacts::default();
    for h in headers {
        facts.observe(h, ctx.hash_header)?;
    }
    let framing = facts.framing(minor)?;
    if let Framing::Length(n) = framing {
        if n > ctx.max_body.unwrap_or(super::MAX_BODY) {
            return Err(RequestError::BodyTooLarge);
        }
    }
    match (minor, facts.hosts) {
        (1, 1) | (0, 0 | 1) => {}
        (1, 0) => return Err(RequestError::Malformed("missing Host")),
        _ => return Err(RequestError::Malformed("more than one Host")),
    }
    let connection = ConnectionTokens::of(headers);
    let close = connection.close;
    let keep_alive = !close && (minor == 1 || connection.keep_alive);
    let expect_continue = minor == 1 && facts.expect_continue;
    // Spec §10: `Connection: upgrade` and `Upgrade` are kept (the one exception to
    // hop-by-hop removal), `h2c` taken out of the list (lbd speaks no HTTP/2).
    let upgrade = minor == 1 && connection.upgrade && upgrade_protocols(headers).next().is_some();

    // The upstream head: lbd's own request line, kept end-to-end headers, then the
    // headers lbd generates.
    out.extend(method_token.as_bytes());
    out.extend(b" ");
    out.extend(
        match target.path {
            "" => "/",
            path => path,
        }
        .as_bytes(),
    );
    out.extend(b" HTTP/1.1\r\n");
    let listing = connection.lists_fields;
    for h in headers {
        let drop = is_hop_by_hop(h.name)
            || is_framing(h.name)
            || name_is(h.name, "x-forwarded-for")
            || name_is(h.name, "x-forwarded-proto")
            || (name_is(h.name, "host") && target.authority.is_some())
            || (name_is(h.name, "expect") && minor == 0)
            || (listing && !name_is(h.name, "host") && listed_in_connection(headers, h.name));
        if !drop {
            copy_field_line(out, input, h);
        }
    }
    if upgrade {
        out.extend(b"Connection: upgrade\r\nUpgrade: ");
        for (i, protocol) in upgrade_protocols(headers).enumerate() {
            if i > 0 {
                out.extend(b", ");
            }
            out.extend(protocol);
        }
        out.extend(b"\r\n");
    }
    if let Some(authority) = target.authority {
        write_header(out, b"Host", authority.as_bytes());
    } else if facts.hosts == 0 {
        let _ = write!(out, "Host: {}\r\n", ctx.local);
    }
    out.extend(b"X-Forwarded-For: ");
    for h in headers
        .iter()
        .filter(|h| name_is(h.name, "x-forwarded-for"))
    {
        for item in list_items(h.value) {
            out.extend(item);
            out.extend(b", ");
        }
    }
    let proto = if ctx.tls { "https" } else { "http" };
    write_ip(out, ctx.client);
    out.extend_all(&[b"\r\nX-Forwarded-Proto: ", proto.as_bytes(), b"\r\n"]);
    match framing {
        Framing::Length(n) => {
            out.extend(b"Content-Length: ");
            write_u64(out, n);
            out.extend(b"\r\n");
        }
        Framing::Chunked => out.extend(b"Transfer-Encoding: chunked\r\n"),
        Framing::Empty | Framing::Close => {
            // A body-less POST/PUT still states its length, as clients do.
            if matches!(method, Method::Post | Method::Put) {
                out.extend(b"Content-Length: 0\r\n");
            }
        }
    }
    out.extend(b"\r\n");
    Ok(RequestHead {
        head_len,
        method,
        minor,
        framing,
        keep_alive,
        expect_continue,
        upgrade,
        hash: facts.hash,
        host: match target.authority {
            Some(authority) => Span::within(input, authority.as_bytes()),
            None => Span::within(input, facts.host),
        },
        path: Span::within(input, target.path.as_bytes()),
    })
}

/// Where the minor digit of an `HTTP/1.x` version with x from 2 to 9 sits in the request
/// line of `head` (after any empty lines); `None` for any other version.
fn later_minor_at(head: &[u8]) -> Option<usize> {
    let start = head.iter().position(|&b| b != b'\r' && b != b'\n')?;
    let end = start
        + head[start..]
            .iter()
            .position(|&b| b == b'\r' || b == b'\n')?;
    let line = &head[start..end];
    let version = line.len().checked_sub(9).map(|i| &line[i..])?;
    (version.starts_with(b" HTTP/1.") && (b'2'..=b'9').contains(&version[8])).then_some(end - 1)
}

/// FNV-1a of the first `name` header's value in a head that [`parse`] accepted (a
/// pool hashing another header than the one the parse was told about).
pub fn header_hash(head: &[u8], name: &str) -> Option<u64> {
    head.split(|&b| b == b'\n').skip(1).find_map(|line| {
        let colon = line.iter().position(|&b| b == b':')?;
        line[..colon]
            .eq_ignore_ascii_case(name.as_bytes())
            .then(|| {
                fnv1a(trim(
                    line[colon + 1..]
                        .strip_suffix(b"\r")
                        .unwrap_or(&line[colon + 1..]),
                ))
            })
    })
}

/// The protocols of the `Upgrade` headers, `h2c` left out.
fn upgrade_protocols<'h>(headers: &'h [httparse::Header<'_>]) -> impl Iterator<Item = &'h [u8]> {
    headers
        .iter()
        .filter(|h| name_is(h.name, "upgrade"))
        .flat_map(|h| list_items(h.value))
        .filter(|p| {
            let name = p.split(|&b| b == b'/').next().unwrap_or(p);
            !name.eq_ignore_ascii_case(b"h2c")
        })
}

/// The request target after validation: the path to forward, and the authority of an
/// absolute-form target (which replaces `Host`, RFC 9112 §3.2.2). Both are slices of the
/// head, so that spans can point at them.
struct RequestTarget<'a> {
    /// `*`, an origin-form target, or empty for an absolute-form one without a path
    /// (forwarded as `/`).
    path: &'a str,
    authority: Option<&'a str>,
}

impl<'a> RequestTarget<'a> {
    fn classify(method: Method, target: &'a str) -> Result<RequestTarget<'a>, RequestError> {
        if method == Method::Connect {
            return Err(RequestError::MethodNotAllowed);
        }
        if target == "*" {
            return if method == Method::Options {
                Ok(RequestTarget {
                    path: target,
                    authority: None,
                })
            } else {
                Err(RequestError::Malformed("'*' target is for OPTIONS only"))
            };
        }
        if target.starts_with('/') {
            return Ok(RequestTarget {
                path: target,
                authority: None,
            });
        }
        let rest = strip_prefix_ignore_case(target, "http://")
            .or_else(|| strip_prefix_ignore_case(target, "https://"))
            .ok_or(RequestError::Malformed("unsupported request target"))?;
        let end = rest.find(['/', '?']).unwrap_or(rest.len());
        let (authority, path) = rest.split_at(end);
        if !is_valid_host(authority.as_bytes()) {
            return Err(RequestError::Malformed("invalid authority"));
        }
        let path = if path.is_empty() {
            path // forwarded as "/"
        } else if path.starts_with('?') {
            // "http://a?x" has an empty path; lbd cannot prepend "/" without copying, and
            // such targets are vanishingly rare: refuse them rather than guess.
            return Err(RequestError::Malformed(
                "absolute-form target without a path",
            ));
        } else {
            path
        };
        Ok(RequestTarget {
            path,
            authority: Some(authority),
        })
    }
}

fn strip_prefix_ignore_case<'a>(s: &'a str, prefix: &str) -> Option<&'a str> {
    let head = s.get(..prefix.len())?;
    head.eq_ignore_ascii_case(prefix)
        .then(|| &s[prefix.len()..])
}

/// `uri-host [ ":" port ]` (RFC 3986): reg-name or IP-literal characters only, no
/// userinfo, no whitespace, a numeric port that fits TCP's 16 bits (at most 65535).
pub(crate) fn is_valid_host(host: &[u8]) -> bool {
    if host.is_empty() || host.len() > 255 {
        return false;
    }
    let (name, port) = if host[0] == b'[' {
        let Some(close) = host.iter().position(|&b| b == b']') else {
            return false;
        };
        let literal = &host[1..close];
        if literal.is_empty()
            || !literal
                .iter()
                .all(|b| b.is_ascii_hexdigit() || b":.".contains(b))
        {
            return false;
        }
        (&host[..=close], &host[close + 1..])
    } else {
        let colon = host.iter().position(|&b| b == b':').unwrap_or(host.len());
        let name = &host[..colon];
        let ok = !name.is_empty() && name.iter().all(|&b| classes(b) & HOST != 0);
        if !ok {
            return false;
        }
        (name, &host[colon..])
    };
    let _ = name;
    match port {
        [] => true,
        [b':', digits @ ..] => {
            digits.len() <= 5
                && digits.iter().all(u8::is_ascii_digit)
                && digits
                    .iter()
                    .fold(0u32, |n, &d| n * 10 + u32::from(d - b'0'))
                    <= u32::from(u16::MAX)
        }
        _ => false,
    }
}

/// What the header fields of one request say about framing, Host and expectations.
#[derive(Default)]
struct HeaderFacts<'h> {
    hosts: usize,
    /// The (last) `Host` value, trimmed.
    host: &'h [u8],
    content_length: Option<u64>,
    transfer_encodings: usize,
    chunked: bool,
    expect_continue: bool,
    hash: Option<u64>,
}

impl<'h> HeaderFacts<'h> {
    fn observe(
        &mut self,
        h: &httparse::Header<'h>,
        hash_header: Option<&str>,
    ) -> Result<(), RequestError> {
        let name = h.name;
        if name_is(name, "host") {
            self.hosts += 1;
            self.host = trim(h.value);
            if !is_valid_host(self.host) {
                return Err(RequestError::Malformed("invalid Host"));
            }
        } else if name_is(name, "content-length") {
            let n = parse_content_length(trim(h.value))
                .ok_or(RequestError::Malformed("invalid Content-Length"))?;
            if self.content_length.is_some_and(|m| m != n) {
                return Err(RequestError::Malformed("conflicting Content-Length"));
            }
            self.content_length = Some(n);
        } else if name_is(name, "transfer-encoding") {
            self.transfer_encodings += 1;
            self.chunked = trim(h.value).eq_ignore_ascii_case(b"chunked");
        } else if name_is(name, "expect") {
            self.expect_continue |= trim(h.value).eq_ignore_ascii_case(b"100-continue");
        } else if name.contains('_') {
            // Some servers fold '_' into '-': a "Content_Length" must not reach them as a
            // second framing header behind lbd's back.
            let looks_like = |framing: &str| {
                name.len() == framing.len()
                    && name
                        .bytes()
                        .zip(framing.bytes())
                        .all(|(a, b)| a.eq_ignore_ascii_case(&b) || (a == b'_' && b == b'-'))
            };
            if looks_like("content-length") || looks_like("transfer-encoding") {
                return Err(RequestError::Malformed("framing header spelled with '_'"));
            }
        }
        if let Some(key) = hash_header {
            if self.hash.is_none() && name_is(name, key) {
                self.hash = Some(fnv1a(trim(h.value)));
            }
        }
        Ok(())
    }

    fn framing(&self, minor: u8) -> Result<Framing, RequestError> {
        match (self.transfer_encodings, self.content_length) {
            (0, None | Some(0)) => Ok(Framing::Empty),
            (0, Some(n)) => Ok(Framing::Length(n)),
            (_, Some(_)) => Err(RequestError::Malformed(
                "both Content-Length and Transfer-Encoding",
            )),
            (_, None) if minor == 0 => Err(RequestError::Malformed(
                "Transfer-Encoding in an HTTP/1.0 request",
            )),
            (1, None) if self.chunked => Ok(Framing::Chunked),
            _ => Err(RequestError::NotImplemented(
                "Transfer-Encoding other than chunked",
            )),
        }
    }
}

#[cfg(test)]
mod tests;

#[cfg(test)]
mod props;
