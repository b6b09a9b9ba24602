use super::*;
use crate::buffer::BufPool;

fn ctx() -> RequestContext<'static> {
    RequestContext {
        client: "10.0.0.9".parse().unwrap(),
        local: "127.0.0.1:8080".parse().unwrap(),
        max_headers: 100,
        max_body: Some(1000),
        hash_header: Some("x-user"),
        tls: false,
    }
}

fn run(input: &str) -> Result<(RequestHead, String), RequestError> {
    let mut pool = BufPool::new(256, 1);
    let mut out = Buffer::default();
    out.ensure(&mut pool);
    let head = parse(input.as_bytes(), &ctx(), &mut out)?;
    Ok((head, String::from_utf8(out.data().to_vec()).unwrap()))
}

#[test]
fn rewrites_a_simple_get() {
    let (head, out) = run("GET /a?b HTTP/1.1\r\nHost: ex\r\nAccept: */*\r\n\r\n").unwrap();
    assert_eq!(head.method, Method::Get);
    assert_eq!(head.framing, Framing::Empty);
    assert!(head.keep_alive);
    assert_eq!(
        out,
        "GET /a?b HTTP/1.1\r\nHost: ex\r\nAccept: */*\r\nX-Forwarded-For: 10.0.0.9\r\n\
         X-Forwarded-Proto: http\r\n\r\n"
    );
}

#[test]
fn removes_hop_by_hop_and_merges_xff() {
    let (head, out) = run(
        "POST /p HTTP/1.1\r\nHost: ex\r\nConnection: close, X-Secret\r\nX-Secret: 1\r\n\
         Keep-Alive: 5\r\nTE: trailers\r\nUpgrade: h2c\r\nProxy-Connection: x\r\n\
         X-Forwarded-For: 1.1.1.1, 2.2.2.2\r\nX-Forwarded-For: 3.3.3.3\r\n\
         X-Forwarded-Proto: https\r\nContent-Length: 3\r\n\r\n",
    )
    .unwrap();
    assert!(!head.keep_alive);
    assert_eq!(head.framing, Framing::Length(3));
    assert_eq!(
        out,
        "POST /p HTTP/1.1\r\nHost: ex\r\nX-Forwarded-For: 1.1.1.1, 2.2.2.2, 3.3.3.3, 10.0.0.9\r\n\
         X-Forwarded-Proto: http\r\nContent-Length: 3\r\n\r\n"
    );
}

#[test]
fn http10_rules() {
    let (head, out) = run("GET / HTTP/1.0\r\n\r\n").unwrap();
    assert!(!head.keep_alive);
    assert!(out.contains("Host: 127.0.0.1:8080\r\n"), "{out}");
    let (head, _) = run("GET / HTTP/1.0\r\nConnection: keep-alive\r\n\r\n").unwrap();
    assert!(head.keep_alive);
    let (head, out) =
        run("PUT / HTTP/1.0\r\nExpect: 100-continue\r\nContent-Length: 1\r\n\r\n").unwrap();
    assert!(!head.expect_continue);
    assert!(!out.contains("Expect"), "{out}");
}

/// RFC 9110 §2.5: a later HTTP/1.x minor version is HTTP/1.1 (Host required,
/// persistent by default), and lbd's request line says HTTP/1.1.
#[test]
fn later_minor_versions_are_http11() {
    for version in ["1.2", "1.9"] {
        let (head, out) = run(&format!("\r\nGET / HTTP/{version}\r\nHost: a\r\n\r\n")).unwrap();
        assert_eq!((head.minor, head.keep_alive, head.head_len), (1, true, 29));
        assert!(out.starts_with("GET / HTTP/1.1\r\nHost: a\r\n"), "{out}");
    }
    let no_host = run("GET / HTTP/1.2\r\n\r\n").unwrap_err();
    assert_eq!(no_host, RequestError::Malformed("missing Host"));
    for version in ["1.10", "2.0", "0.9", "1.a"] {
        let input = format!("GET / HTTP/{version}\r\nHost: a\r\n\r\n");
        assert!(
            matches!(run(&input), Err(RequestError::Malformed(_))),
            "{input}"
        );
    }
}

#[test]
fn absolute_form_becomes_origin_form() {
    let (_, out) = run("GET http://Origin:81/x HTTP/1.1\r\nHost: other\r\n\r\n").unwrap();
    assert!(
        out.starts_with("GET /x HTTP/1.1\r\nHost: Origin:81\r\n"),
        "{out}"
    );
    assert!(!out.contains("other"));
    // Without a path: "/" upstream; for routing, the empty path at the authority's
    // end (a regression: the span pointed at the method).
    let input = "GET http://Origin:81 HTTP/1.1\r\nHost: other\r\n\r\n";
    let (head, out) = run(input).unwrap();
    assert!(out.starts_with("GET / HTTP/1.1\r\n"), "{out}");
    assert_eq!(head.path.of(input.as_bytes()), b"");
    assert_eq!(head.host.of(input.as_bytes()), b"Origin:81");
    let input = "OPTIONS * HTTP/1.1\r\nHost: a\r\n\r\n";
    let (head, out) = run(input).unwrap();
    assert!(out.starts_with("OPTIONS * HTTP/1.1\r\n"), "{out}");
    assert_eq!(head.path.of(input.as_bytes()), b"*");
}

#[test]
fn chunked_and_hash() {
    let (head, out) =
        run("POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\nX-User: bob\r\n\r\n")
            .unwrap();
    assert_eq!(head.framing, Framing::Chunked);
    assert_eq!(head.hash, Some(fnv1a(b"bob")));
    assert!(out.ends_with("Transfer-Encoding: chunked\r\n\r\n"));
}

/// Every refused head and the verdict it must get.
#[test]
fn refusals() {
    use RequestError::*;
    type Verdict = fn(RequestError) -> bool;
    let table: &[(&str, Verdict)] = &[
        ("GET / HTTP/1.1\r\n\r\n", |e| matches!(e, Malformed(_))),
        ("GET / HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n", |e| matches!(e, Malformed(_))),
        ("GET / HTTP/1.1\r\nHost: a b\r\n\r\n", |e| matches!(e, Malformed(_))),
        ("GET / HTTP/1.1\r\nHost: u@a\r\n\r\n", |e| matches!(e, Malformed(_))),
        ("GET / HTTP/1.1\r\nHost: a:8x\r\n\r\n", |e| matches!(e, Malformed(_))),
        ("GET / HTTP/1.1\r\nHost: a:99999\r\n\r\n", |e| matches!(e, Malformed(_))),
        ("GET / HTTP/1.1\r\nHost: a:65536\r\n\r\n", |e| matches!(e, Malformed(_))),
        ("GET http://b:65536/ HTTP/1.1\r\nHost: a\r\n\r\n", |e| matches!(e, Malformed(_))),
        ("GET / HTTP/2.0\r\nHost: a\r\n\r\n", |e| matches!(e, Malformed(_))),
        ("GET a HTTP/1.1\r\nHost: a\r\n\r\n", |e| matches!(e, Malformed(_))),
        ("GET * HTTP/1.1\r\nHost: a\r\n\r\n", |e| matches!(e, Malformed(_))),
        ("CONNECT a:443 HTTP/1.1\r\nHost: a\r\n\r\n", |e| matches!(e, MethodNotAllowed)),
        ("G\x01T / HTTP/1.1\r\nHost: a\r\n\r\n", |e| matches!(e, Malformed(_))),
        ("GET / HTTP/1.1\r\nHost: a\r\nX: a\rb\r\n\r\n", |e| matches!(e, Malformed(_))),
        ("GET / HTTP/1.1\r\nHost: a\r\nX: a\r\n b\r\n\r\n", |e| matches!(e, Malformed(_))),
        ("GET / HTTP/1.1\r\nHost: a\r\nBad Name: a\r\n\r\n", |e| matches!(e, Malformed(_))),
        ("POST / HTTP/1.1\r\nHost: a\r\nContent-Length: +5\r\n\r\n", |e| matches!(e, Malformed(_))),
        ("POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 5, 5\r\n\r\n", |e| matches!(e, Malformed(_))),
        ("POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 0x5\r\n\r\n", |e| matches!(e, Malformed(_))),
        ("POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\nContent-Length: 6\r\n\r\n", |e| matches!(e, Malformed(_))),
        ("POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 99999999999999999999\r\n\r\n", |e| matches!(e, Malformed(_))),
        ("POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n", |e| matches!(e, Malformed(_))),
        ("POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: gzip, chunked\r\n\r\n", |e| matches!(e, NotImplemented(_))),
        ("POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\nTransfer-Encoding: chunked\r\n\r\n", |e| matches!(e, NotImplemented(_))),
        ("POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: xchunked\r\n\r\n", |e| matches!(e, NotImplemented(_))),
        ("POST / HTTP/1.0\r\nTransfer-Encoding: chunked\r\n\r\n", |e| matches!(e, Malformed(_))),
        ("POST / HTTP/1.1\r\nHost: a\r\nContent_Length: 5\r\n\r\n", |e| matches!(e, Malformed(_))),
        ("POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 1001\r\n\r\n", |e| e == BodyTooLarge),
        ("POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 1234567890123456789\r\n\r\n", |e| e == BodyTooLarge),
        ("POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 18446744073709551615\r\n\r\n", |e| e == BodyTooLarge),
    ];
    for (input, verdict) in table {
        let got = run(input).map(|(h, _)| h);
        match got {
            Err(e) if verdict(e) => {}
            other => panic!("{input:?}: got {other:?}"),
        }
    }
}

/// Without `limits.body_bytes`, a length over `MAX_BODY` (2^63 − 1) is still too large;
/// up to it, any length is forwarded.
#[test]
fn unlimited_bodies_stop_at_max_body() {
    let unlimited = RequestContext {
        max_body: None,
        ..ctx()
    };
    let mut pool = BufPool::new(256, 1);
    let mut out = Buffer::default();
    out.ensure(&mut pool);
    let head = |n: u64| format!("POST / HTTP/1.1\r\nHost: a\r\nContent-Length: {n}\r\n\r\n");
    let max = crate::http::MAX_BODY;
    let got = parse(head(max).as_bytes(), &unlimited, &mut out).map(|h| h.framing);
    assert_eq!(got, Ok(Framing::Length(max)));
    out.clear();
    let got = parse(head(max + 1).as_bytes(), &unlimited, &mut out);
    assert_eq!(got.unwrap_err(), RequestError::BodyTooLarge);
}

#[test]
fn too_many_headers() {
    let mut input = String::from("GET / HTTP/1.1\r\nHost: a\r\n");
    for i in 0..100 {
        input.push_str(&format!("X-{i}: v\r\n"));
    }
    input.push_str("\r\n");
    assert_eq!(run(&input).unwrap_err(), RequestError::HeadersTooLarge);
}
