//! The one place that maps a failure to what lbd does about it: the response it sends
//! (if any), whether the client connection closes after it, and the access log's
//! `reason` word. Head refusals, refused bodies, retry give-ups, timeouts and cut
//! exchanges all go through [`Fault::answer`].

use crate::http::{Canned, RequestError};

/// Why an exchange (or a request head) did not end with an upstream's complete response.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fault {
    /// The request head was refused (400, 413, 414, 431 or 501).
    Refused(RequestError),
    /// The request head did not arrive within `timeouts.client_header` (408).
    HeaderTimeout,
    /// The request body's framing is broken (400).
    BadBody,
    /// The request body passed `limits.body_bytes` (413).
    BodyTooLarge,
    /// The client stopped sending its body or reading its response (408, or a close
    /// once the response began).
    ClientStalled,
    /// No backend could be picked, every attempt failed, or no socket was left (503).
    NoBackend,
    /// No route matches the request and there is no default pool (404, spec §12).
    NoRoute,
    /// The upstream's response was invalid or ended before its head did (502).
    BadResponse,
    /// A non-idempotent request failed after it may have reached the backend; it is not
    /// sent again (502).
    NotResent,
    /// The upstream did not answer within `timeouts.upstream_response` (504).
    UpstreamTimeout,
    /// The client went away; nothing is sent.
    ClientClosed,
    /// The shutdown deadline passed with the exchange unfinished; nothing is sent.
    Shutdown,
}

/// What lbd does for a [`Fault`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Answer {
    /// The response lbd sends, when nothing of an upstream's response has been sent yet;
    /// `None`: the connection closes without one.
    pub canned: Option<Canned>,
    /// The client connection closes after the answer, whatever the request asked.
    pub closes: bool,
    /// The access log's `reason` word.
    pub reason: &'static str,
}

impl Fault {
    /// The answer to this fault.
    pub fn answer(self) -> Answer {
        let (canned, closes, reason) = match self {
            Fault::Refused(e) => (Some(refused(e)), true, refused_reason(e)),
            Fault::HeaderTimeout => (Some(Canned::RequestTimeout), true, "timeout"),
            Fault::BadBody => (Some(Canned::BadRequest), true, "bad_request"),
            Fault::BodyTooLarge => (Some(Canned::ContentTooLarge), true, "body_too_large"),
            Fault::ClientStalled => (Some(Canned::RequestTimeout), true, "timeout"),
            Fault::NoBackend => (Some(Canned::ServiceUnavailable), false, "no_backend"),
            Fault::NoRoute => (Some(Canned::NotFound), false, "no_route"),
            Fault::BadResponse | Fault::NotResent => {
                (Some(Canned::BadGateway), false, "upstream_error")
            }
            Fault::UpstreamTimeout => (Some(Canned::GatewayTimeout), false, "timeout"),
            Fault::ClientClosed => (None, true, "client_closed"),
            Fault::Shutdown => (None, true, "closed"),
        };
        Answer {
            canned,
            closes,
            reason,
        }
    }
}

fn refused(e: RequestError) -> Canned {
    match e {
        RequestError::Malformed(_) => Canned::BadRequest,
        RequestError::BodyTooLarge => Canned::ContentTooLarge,
        RequestError::UriTooLong => Canned::UriTooLong,
        RequestError::HeadersTooLarge => Canned::HeadersTooLarge,
        RequestError::NotImplemented(_) => Canned::NotImplemented,
        RequestError::MethodNotAllowed => Canned::MethodNotAllowed,
    }
}

fn refused_reason(e: RequestError) -> &'static str {
    match e {
        RequestError::BodyTooLarge => "body_too_large",
        _ => "bad_request",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The whole table: status, close, reason.
    #[test]
    fn answers() {
        let table: &[(Fault, Option<u16>, bool, &str)] = &[
            (
                Fault::Refused(RequestError::Malformed("x")),
                Some(400),
                true,
                "bad_request",
            ),
            (
                Fault::Refused(RequestError::BodyTooLarge),
                Some(413),
                true,
                "body_too_large",
            ),
            (
                Fault::Refused(RequestError::UriTooLong),
                Some(414),
                true,
                "bad_request",
            ),
            (
                Fault::Refused(RequestError::HeadersTooLarge),
                Some(431),
                true,
                "bad_request",
            ),
            (
                Fault::Refused(RequestError::NotImplemented("x")),
                Some(501),
                true,
                "bad_request",
            ),
            (Fault::HeaderTimeout, Some(408), true, "timeout"),
            (Fault::BadBody, Some(400), true, "bad_request"),
            (Fault::BodyTooLarge, Some(413), true, "body_too_large"),
            (Fault::ClientStalled, Some(408), true, "timeout"),
            (Fault::NoBackend, Some(503), false, "no_backend"),
            (Fault::NoRoute, Some(404), false, "no_route"),
            (Fault::BadResponse, Some(502), false, "upstream_error"),
            (Fault::NotResent, Some(502), false, "upstream_error"),
            (Fault::UpstreamTimeout, Some(504), false, "timeout"),
            (Fault::ClientClosed, None, true, "client_closed"),
            (Fault::Shutdown, None, true, "closed"),
        ];
        for &(fault, status, closes, reason) in table {
            let a = fault.answer();
            assert_eq!(a.canned.map(Canned::status), status, "{fault:?}");
            assert_eq!((a.closes, a.reason), (closes, reason), "{fault:?}");
        }
    }
}
