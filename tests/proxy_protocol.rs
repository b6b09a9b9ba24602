//! The PROXY protocol (spec §11, issue 12) with real peers: HAProxy in TCP mode in front
//! of lbd (`send-proxy`, `send-proxy-v2`), and lbd's `send_proxy` toward nginx
//! (`proxy_protocol`) and HAProxy (`accept-proxy`) as backends; each shows the original
//! client's address (a 127.0.0.x source) arriving. Malformed headers are refused at
//! every byte boundary.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::Duration;

use crate::util::peers::{self, connect_from, free_port};
use crate::util::*;

/// A backend answering with the `X-Forwarded-For` it received.
fn xff_backend() -> TestBackend {
    TestBackend::start(|req| Reply::text(req.header("x-forwarded-for").unwrap_or("-")))
}

/// One GET on `stream`; the response body.
fn get(stream: TcpStream) -> String {
    let mut c = Client {
        reader: std::io::BufReader::new(stream.try_clone().unwrap()),
        stream,
    };
    c.send(b"GET / HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n");
    c.response(false).text()
}

/// HAProxy (TCP mode, `send-proxy` then `send-proxy-v2`) in front of lbd: the backend
/// sees the client's own address in `X-Forwarded-For`, not HAProxy's.
#[test]
fn haproxy_in_front_sends_the_client_address() {
    if !peers::available("haproxy") {
        return;
    }
    let backend = xff_backend();
    let mut cfg = config(&[backend.addr]);
    cfg.server.proxy_protocol = true;
    let lbd = start(cfg);
    for (option, from) in [
        ("send-proxy", [127, 0, 0, 11]),
        ("send-proxy-v2", [127, 0, 0, 12]),
    ] {
        let front: SocketAddr = ([127, 0, 0, 1], free_port()).into();
        let _haproxy = peers::haproxy(
            &format!(
                "frontend f\n  mode tcp\n  bind {front}\n  default_backend b\n\
                 backend b\n  mode tcp\n  server lbd {} {option}\n",
                lbd.local_addr()
            ),
            front,
        );
        let ip = std::net::Ipv4Addr::from(from).to_string();
        assert_eq!(get(connect_from(from, front)), ip, "{option}");
    }
}

/// HAProxy passing TLS through (TCP mode, `send-proxy-v2`) to lbd's TLS listener with
/// `tls.proxy_protocol`: the header precedes the ClientHello.
#[cfg(feature = "tls")]
#[test]
fn proxy_header_before_tls() {
    if !peers::available("haproxy") {
        return;
    }
    let dir = crate::binary::TempDir::new();
    let key = rcgen::KeyPair::generate().unwrap();
    let cert = rcgen::CertificateParams::new(vec!["localhost".to_string()])
        .unwrap()
        .self_signed(&key)
        .unwrap();
    let cert_path = dir.write("c.pem", &cert.pem());
    let key_path = dir.write("k.pem", &key.serialize_pem());
    let backend = xff_backend();
    let text = format!(
        "[server]\nlisten = \"127.0.0.1:0\"\nworkers = 1\n[[backend]]\naddress = \"{}\"\n\
         [tls]\nlisten = \"127.0.0.1:0\"\nproxy_protocol = true\n\
         [[tls.certificate]]\ncert = \"{}\"\nkey = \"{}\"\n",
        backend.addr,
        cert_path.display(),
        key_path.display()
    );
    let path = dir.write("lbd.toml", &text);
    let server = lbd::Server::start(lbd::Config::load(&path).unwrap()).unwrap();
    let front: SocketAddr = ([127, 0, 0, 1], free_port()).into();
    let _haproxy = peers::haproxy(
        &format!(
            "frontend f\n  mode tcp\n  bind {front}\n  default_backend b\n\
             backend b\n  mode tcp\n  server lbd {} send-proxy-v2\n",
            server.tls_addr().unwrap()
        ),
        front,
    );
    let mut roots = rustls::RootCertStore::empty();
    roots.add(cert.der().clone()).unwrap();
    let config = std::sync::Arc::new(
        rustls::ClientConfig::builder_with_provider(std::sync::Arc::new(
            lbd::config::crypto_provider(),
        ))
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth(),
    );
    let tcp = connect_from([127, 0, 0, 13], front);
    let conn = rustls::ClientConnection::new(config, "localhost".try_into().unwrap()).unwrap();
    let mut tls = rustls::StreamOwned::new(conn, tcp);
    tls.write_all(b"GET / HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n")
        .unwrap();
    let mut reader = std::io::BufReader::new(tls);
    let r = read_response(&mut reader, false).unwrap();
    assert_eq!(r.text(), "127.0.0.13");
}

/// lbd's `send_proxy` toward nginx (`listen ... proxy_protocol`, v1 and v2) and HAProxy
/// (`accept-proxy`): each sees the client lbd served, not lbd. Health probes (an HTTP
/// check through the PROXY listener) keep the backends up, so the probes' `UNKNOWN` /
/// `LOCAL` headers are accepted too.
#[test]
fn send_proxy_tells_the_backend_who_the_client_is() {
    let (have_nginx, have_haproxy) = (peers::available("nginx"), peers::available("haproxy"));
    let mut running = Vec::new();
    let mut backends = Vec::new();
    if have_nginx {
        let port = free_port();
        let listen: SocketAddr = ([127, 0, 0, 1], port).into();
        running.push(peers::nginx(
            &format!(
                "server {{ listen {listen} proxy_protocol;\n\
                 location / {{ return 200 \"nginx $proxy_protocol_addr\"; }} }}\n"
            ),
            listen,
        ));
        backends.push((listen, "v1", "nginx"));
        backends.push((listen, "v2", "nginx"));
    }
    if have_haproxy {
        let listen: SocketAddr = ([127, 0, 0, 1], free_port()).into();
        running.push(peers::haproxy(
            &format!(
                "frontend f\n  mode http\n  bind {listen} accept-proxy\n  \
                 http-request return status 200 content-type text/plain lf-string \"haproxy %[src]\"\n"
            ),
            listen,
        ));
        backends.push((listen, "v2", "haproxy"));
    }
    for (i, (addr, version, name)) in backends.into_iter().enumerate() {
        let text = format!(
            "[server]\nlisten = \"127.0.0.1:0\"\nworkers = 1\n\
             [health]\ninterval = \"100ms\"\npath = \"/healthz\"\n\
             [[backend]]\naddress = \"{addr}\"\nsend_proxy = \"{version}\"\n"
        );
        let server = lbd::Server::start(lbd::Config::parse(&text).unwrap()).unwrap();
        let from = [127, 0, 0, 20 + i as u8];
        for _ in 0..3 {
            let body = get(connect_from(from, server.local_addr()));
            assert_eq!(
                body,
                format!("{name} 127.0.0.{}", from[3]),
                "{name} {version}"
            );
        }
        // Probes passed (with their own headers): still up after a few rounds.
        let snapshot = server.snapshot();
        let backend = &snapshot.backends[0];
        assert!(wait_until(Duration::from_secs(5), || backend
            .probes_ok
            .load(std::sync::atomic::Ordering::Relaxed)
            >= 3));
        assert!(backend.is_alive(), "{name} {version}: probes failed");
    }
}

/// Valid headers arriving a byte at a time are waited for; every malformed header is
/// refused without an answer at every point it may be cut, and nothing reaches the
/// backend; `trusted_proxies` refuses other peers; an incomplete header is closed at
/// `client_header`.
#[test]
fn headers_at_every_byte_boundary() {
    let backend = xff_backend();
    let mut cfg = config(&[backend.addr]);
    cfg.server.proxy_protocol = true;
    cfg.timeouts.client_header = Duration::from_millis(500);
    let lbd = start(cfg);
    let addr = lbd.local_addr();
    let request = b"GET / HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n";

    let v2: Vec<u8> = {
        let mut h = b"\r\n\r\n\0\r\nQUIT\n\x21\x11\x00\x0c".to_vec();
        h.extend_from_slice(&[192, 0, 2, 9, 127, 0, 0, 1, 0x30, 0x39, 0, 80]);
        h
    };
    let valid: [(&[u8], &str); 4] = [
        (
            b"PROXY TCP4 198.51.100.7 127.0.0.1 5555 80\r\n",
            "198.51.100.7",
        ),
        (b"PROXY TCP6 2001:db8::7 ::1 5555 80\r\n", "2001:db8::7"),
        (b"PROXY UNKNOWN\r\n", "127.0.0.1"),
        (&v2, "192.0.2.9"),
    ];
    for (header, want) in valid {
        for cut in 1..header.len() {
            let mut s = TcpStream::connect(addr).unwrap();
            s.set_read_timeout(Some(IO_TIMEOUT)).unwrap();
            s.write_all(&header[..cut]).unwrap();
            s.flush().unwrap();
            s.write_all(&header[cut..]).unwrap();
            s.write_all(request).unwrap();
            let mut out = String::new();
            s.read_to_string(&mut out).unwrap();
            assert!(out.ends_with(want), "cut {cut} of {header:?}: {out}");
        }
    }

    let served = backend.request_count();
    let malformed: [&[u8]; 6] = [
        b"GET / HTTP/1.1\r\nHost: t\r\n\r\n",
        b"PROXY TCP4 1.2.3.4 5.6.7.8 1 2\n",
        b"PROXY TCP4 1.2.3.4  5.6.7.8 1 2\r\n",
        b"PROXY TCP4 ::1 5.6.7.8 1 2\r\n",
        b"PROXY TCP4 1.2.3.4 5.6.7.8 99999 2\r\n",
        b"\r\n\r\n\0\r\nQUIT\n\x31\x11\x00\x0c",
    ];
    for header in malformed {
        for cut in 1..=header.len() {
            let mut s = TcpStream::connect(addr).unwrap();
            s.set_read_timeout(Some(IO_TIMEOUT)).unwrap();
            s.write_all(&header[..cut]).unwrap();
            let _ = s.write_all(&header[cut..]);
            let _ = s.write_all(request);
            let mut out = Vec::new();
            let _ = s.read_to_end(&mut out);
            assert!(out.is_empty(), "cut {cut} of {header:?}: answered {out:?}");
        }
    }
    assert_eq!(
        backend.request_count(),
        served,
        "refused connections reach no backend"
    );

    // Silence after half a header: closed at client_header.
    let mut s = TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(IO_TIMEOUT)).unwrap();
    s.write_all(b"PROXY TCP4 1.2").unwrap();
    let mut out = Vec::new();
    let _ = s.read_to_end(&mut out);
    assert!(out.is_empty());
    let shared = lbd.shared();
    let reason = |r: &str| {
        let i = [
            "bad_signature",
            "bad_syntax",
            "too_long",
            "bad_version",
            "bad_command",
            "bad_family",
            "bad_length",
            "timeout",
            "closed",
            "untrusted",
        ]
        .iter()
        .position(|x| *x == r)
        .unwrap();
        shared.proxy_errors[i].load(std::sync::atomic::Ordering::Relaxed)
    };
    assert!(wait_until(IO_TIMEOUT, || reason("timeout") == 1));
    assert!(reason("bad_signature") > 0 && reason("bad_syntax") > 0 && reason("bad_version") > 0);

    // trusted_proxies: only 127.0.0.1 may connect.
    let mut cfg = config(&[backend.addr]);
    cfg.server.proxy_protocol = true;
    cfg.server.trusted_proxies = vec!["127.0.0.1/32".parse().unwrap()];
    let lbd = start(cfg);
    let mut s = connect_from([127, 0, 0, 30], lbd.local_addr());
    let _ = s.write_all(b"PROXY TCP4 1.2.3.4 5.6.7.8 1 2\r\n");
    let _ = s.write_all(request);
    let mut out = Vec::new();
    let _ = s.read_to_end(&mut out);
    assert!(out.is_empty(), "an untrusted peer is closed");
    let mut s = connect_from([127, 0, 0, 1], lbd.local_addr());
    s.write_all(b"PROXY TCP4 1.2.3.4 5.6.7.8 1 2\r\n").unwrap();
    assert_eq!(get(s), "1.2.3.4");
}
