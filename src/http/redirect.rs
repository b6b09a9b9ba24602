//! The `308` the plain listener answers with when `tls.redirect_http` is on (spec §9):
//! `Location: https://HOST[:PORT]TARGET`, HOST the request's host without its port,
//! PORT the TLS listener's (left out when 443), TARGET the path and query as sent.

use crate::buffer::Buffer;

/// Writes the redirect for a head that `super::request::parse` accepted (so its syntax,
/// target form and Host are valid). `fallback_host` stands in for a host-less HTTP/1.0
/// request; `close` adds `Connection: close`.
pub fn write_308(head: &[u8], tls_port: u16, fallback_host: &str, close: bool, out: &mut Buffer) {
    let mut headers = [httparse::EMPTY_HEADER; 64];
    let mut req = httparse::Request::new(&mut headers);
    let _ = req.parse(head);
    let target = req.path.unwrap_or("/");
    let (authority, path) = match split_absolute(target) {
        Some((authority, path)) => (Some(authority), path),
        None => (None, target),
    };
    let host = authority
        .or_else(|| {
            req.headers
                .iter()
                .find(|h| h.name.eq_ignore_ascii_case("host"))
                .and_then(|h| std::str::from_utf8(super::trim(h.value)).ok())
        })
        .unwrap_or(fallback_host);
    out.extend(b"HTTP/1.1 308 Permanent Redirect\r\nLocation: https://");
    out.extend(without_port(host).as_bytes());
    if tls_port != 443 {
        out.extend(b":");
        super::write_u64(out, u64::from(tls_port));
    }
    out.extend(if path == "*" { "/" } else { path }.as_bytes());
    out.extend(b"\r\nContent-Length: 0\r\n");
    if close {
        out.extend(b"Connection: close\r\n");
    }
    out.extend(b"\r\n");
}

/// `http://authority/path` → (authority, path); `None` for origin form.
fn split_absolute(target: &str) -> Option<(&str, &str)> {
    let rest = target
        .get(..7)
        .filter(|p| p.eq_ignore_ascii_case("http://"))
        .map(|_| &target[7..])
        .or_else(|| {
            target
                .get(..8)
                .filter(|p| p.eq_ignore_ascii_case("https://"))
                .map(|_| &target[8..])
        })?;
    let end = rest.find('/').unwrap_or(rest.len());
    let path = &rest[end..];
    Some((&rest[..end], if path.is_empty() { "/" } else { path }))
}

/// `host[:port]` or `[v6][:port]` without the port.
fn without_port(host: &str) -> &str {
    if host.starts_with('[') {
        return host.find(']').map_or(host, |i| &host[..=i]);
    }
    host.split(':').next().unwrap_or(host)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::buffer::BufPool;

    fn location(head: &str, port: u16) -> String {
        let mut pool = BufPool::new(1024, 1);
        let mut out = Buffer::default();
        out.ensure(&mut pool);
        write_308(head.as_bytes(), port, "10.0.0.1", false, &mut out);
        let text = String::from_utf8(out.data().to_vec()).unwrap();
        assert!(
            text.starts_with("HTTP/1.1 308 Permanent Redirect\r\n"),
            "{text}"
        );
        assert!(text.ends_with("Content-Length: 0\r\n\r\n"), "{text}");
        text.lines()
            .find_map(|l| l.strip_prefix("Location: "))
            .unwrap()
            .to_string()
    }

    #[test]
    fn locations() {
        let table = [
            (
                "GET /a?b=1 HTTP/1.1\r\nHost: ex.com:8080\r\n\r\n",
                8443,
                "https://ex.com:8443/a?b=1",
            ),
            (
                "GET / HTTP/1.1\r\nHost: ex.com\r\n\r\n",
                443,
                "https://ex.com/",
            ),
            (
                "GET /x HTTP/1.1\r\nHost: [::1]:80\r\n\r\n",
                443,
                "https://[::1]/x",
            ),
            (
                "GET http://abs.example:81/p?q HTTP/1.1\r\nHost: other\r\n\r\n",
                8443,
                "https://abs.example:8443/p?q",
            ),
            (
                "GET http://abs.example HTTP/1.1\r\nHost: other\r\n\r\n",
                443,
                "https://abs.example/",
            ),
            ("GET /old HTTP/1.0\r\n\r\n", 443, "https://10.0.0.1/old"),
            (
                "OPTIONS * HTTP/1.1\r\nHost: ex.com\r\n\r\n",
                443,
                "https://ex.com/",
            ),
        ];
        for (head, port, want) in table {
            assert_eq!(location(head, port), want, "{head:?}");
        }
    }
}
