//! Responses lbd makes itself (spec §4), each with a short text body.

use crate::buffer::Buffer;

/// A response lbd answers with instead of an upstream's.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Canned {
    /// 400: malformed request or ambiguous framing.
    BadRequest,
    /// 404: no route matches and there is no default pool.
    NotFound,
    /// 405: CONNECT.
    MethodNotAllowed,
    /// 408: the head or body did not arrive in time.
    RequestTimeout,
    /// 413: body larger than `limits.body_bytes`.
    ContentTooLarge,
    /// 414: request line too long.
    UriTooLong,
    /// 431: head too large or too many header fields.
    HeadersTooLarge,
    /// 501: unknown `Transfer-Encoding`, or CONNECT.
    NotImplemented,
    /// 502: the upstream's response was invalid or cut before its head ended.
    BadGateway,
    /// 503: no backend alive, or every attempt failed.
    ServiceUnavailable,
    /// 504: the upstream did not answer within `upstream_response`.
    GatewayTimeout,
}

impl Canned {
    /// The status code.
    pub fn status(self) -> u16 {
        match self {
            Canned::BadRequest => 400,
            Canned::NotFound => 404,
            Canned::MethodNotAllowed => 405,
            Canned::RequestTimeout => 408,
            Canned::ContentTooLarge => 413,
            Canned::UriTooLong => 414,
            Canned::HeadersTooLarge => 431,
            Canned::NotImplemented => 501,
            Canned::BadGateway => 502,
            Canned::ServiceUnavailable => 503,
            Canned::GatewayTimeout => 504,
        }
    }

    /// Status line text after the version; the body repeats it.
    fn line(self) -> &'static str {
        match self {
            Canned::BadRequest => "400 Bad Request",
            Canned::NotFound => "404 Not Found",
            Canned::MethodNotAllowed => "405 Method Not Allowed",
            Canned::RequestTimeout => "408 Request Timeout",
            Canned::ContentTooLarge => "413 Content Too Large",
            Canned::UriTooLong => "414 URI Too Long",
            Canned::HeadersTooLarge => "431 Request Header Fields Too Large",
            Canned::NotImplemented => "501 Not Implemented",
            Canned::BadGateway => "502 Bad Gateway",
            Canned::ServiceUnavailable => "503 Service Unavailable",
            Canned::GatewayTimeout => "504 Gateway Timeout",
        }
    }

    /// Appends the response to `out`; `close` adds `Connection: close`. A `HEAD` request
    /// gets the head only.
    pub fn write(self, out: &mut Buffer, close: bool, head_request: bool) {
        let line = self.line().as_bytes();
        out.extend(b"HTTP/1.1 ");
        out.extend(line);
        out.extend(b"\r\nContent-Type: text/plain\r\n");
        if self == Canned::MethodNotAllowed {
            // RFC 9110 §15.5.6: a 405 lists the methods the target supports.
            out.extend(b"Allow: GET, HEAD, POST, PUT, DELETE, OPTIONS, TRACE, PATCH\r\n");
        }
        out.extend(b"Content-Length: ");
        super::write_u64(out, line.len() as u64 + 1);
        out.extend(if close {
            &b"\r\nConnection: close\r\n\r\n"[..]
        } else {
            b"\r\n\r\n"
        });
        if !head_request {
            out.extend(line);
            out.extend(b"\n");
        }
    }
}
