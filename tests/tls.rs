//! TLS termination (spec §9, issue 11) with real TLS clients: rustls (a Rust client),
//! and the `curl` and `openssl s_client` command-line tools. Certificates are made by
//! rcgen in each test: a private CA and leaves signed by it.

use std::io::{BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::PathBuf;
use std::process::Command;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{ClientConfig, ClientConnection, DigitallySignedStruct, StreamOwned};

use crate::binary::{Lbd, TempDir};
use crate::proxy::{expected_checksum, streaming_backend};
use crate::util::*;

/// A private CA and the files of the leaves it signs.
struct Pki {
    dir: TempDir,
    ca: rcgen::Certificate,
    ca_key: rcgen::KeyPair,
    n: AtomicUsize,
}

/// One leaf certificate's files and DER.
#[derive(Clone)]
struct Leaf {
    cert: PathBuf,
    key: PathBuf,
    der: Vec<u8>,
}

impl Pki {
    fn new() -> Pki {
        let ca_key = rcgen::KeyPair::generate().unwrap();
        let mut params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
        params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
        params
            .distinguished_name
            .push(rcgen::DnType::CommonName, "lbd test CA");
        let ca = params.self_signed(&ca_key).unwrap();
        let dir = TempDir::new();
        dir.write("ca.pem", &ca.pem());
        Pki {
            dir,
            ca,
            ca_key,
            n: AtomicUsize::new(0),
        }
    }

    fn ca_file(&self) -> PathBuf {
        self.dir.0.join("ca.pem")
    }

    /// An ECDSA P-256 leaf for `names`, signed by the CA.
    fn leaf(&self, names: &[&str]) -> Leaf {
        let key = rcgen::KeyPair::generate().unwrap();
        let params =
            rcgen::CertificateParams::new(names.iter().map(|n| n.to_string()).collect::<Vec<_>>())
                .unwrap();
        let cert = params.signed_by(&key, &self.ca, &self.ca_key).unwrap();
        let n = self.n.fetch_add(1, Ordering::SeqCst);
        Leaf {
            cert: self.dir.write(&format!("leaf{n}.crt"), &cert.pem()),
            key: self
                .dir
                .write(&format!("leaf{n}.key"), &key.serialize_pem()),
            der: cert.der().to_vec(),
        }
    }

    /// A client trusting the CA, limited to `versions`.
    fn client(&self, versions: &[&'static rustls::SupportedProtocolVersion]) -> Arc<ClientConfig> {
        let mut roots = rustls::RootCertStore::empty();
        roots
            .add(CertificateDer::from(self.ca.der().to_vec()))
            .unwrap();
        let mut config = ClientConfig::builder_with_provider(provider())
            .with_protocol_versions(versions)
            .unwrap()
            .with_root_certificates(roots)
            .with_no_client_auth();
        config.alpn_protocols = vec![b"http/1.1".to_vec()];
        Arc::new(config)
    }
}

fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(lbd::config::crypto_provider())
}

/// Accepts any certificate (to look at which one lbd chose for an SNI it does not cover).
#[derive(Debug)]
struct AnyCert;

impl ServerCertVerifier for AnyCert {
    fn verify_server_cert(
        &self,
        _: &CertificateDer<'_>,
        _: &[CertificateDer<'_>],
        _: &ServerName<'_>,
        _: &[u8],
        _: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        let algs = provider().signature_verification_algorithms;
        rustls::crypto::verify_tls12_signature(message, cert, dss, &algs)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        let algs = provider().signature_verification_algorithms;
        rustls::crypto::verify_tls13_signature(message, cert, dss, &algs)
    }

    fn supported_verify_schemes(&self) -> Vec<rustls::SignatureScheme> {
        provider()
            .signature_verification_algorithms
            .supported_schemes()
    }
}

fn any_cert_client() -> Arc<ClientConfig> {
    Arc::new(
        ClientConfig::builder_with_provider(provider())
            .with_safe_default_protocol_versions()
            .unwrap()
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(AnyCert))
            .with_no_client_auth(),
    )
}

/// An HTTP/1.1 client over TLS.
struct TlsClient {
    reader: BufReader<StreamOwned<ClientConnection, TcpStream>>,
}

impl TlsClient {
    /// Connects and completes the handshake; `name` is sent as SNI unless it is an IP.
    fn connect(addr: SocketAddr, name: &str, config: &Arc<ClientConfig>) -> std::io::Result<Self> {
        let tcp = TcpStream::connect(addr)?;
        tcp.set_read_timeout(Some(IO_TIMEOUT))?;
        tcp.set_nodelay(true)?;
        let server = ServerName::try_from(name.to_string()).unwrap();
        let conn = ClientConnection::new(Arc::clone(config), server).unwrap();
        let mut stream = StreamOwned::new(conn, tcp);
        while stream.conn.is_handshaking() {
            stream.conn.complete_io(&mut stream.sock)?;
        }
        Ok(TlsClient {
            reader: BufReader::new(stream),
        })
    }

    fn stream(&mut self) -> &mut StreamOwned<ClientConnection, TcpStream> {
        self.reader.get_mut()
    }

    fn send(&mut self, bytes: &[u8]) {
        self.stream().write_all(bytes).unwrap();
        self.stream().flush().unwrap();
    }

    fn response(&mut self) -> Resp {
        read_response(&mut self.reader, false).expect("a response")
    }

    fn get(&mut self, path: &str) -> Resp {
        self.send(format!("GET {path} HTTP/1.1\r\nHost: t\r\n\r\n").as_bytes());
        self.response()
    }

    /// The leaf certificate lbd presented.
    fn peer_leaf(&mut self) -> Vec<u8> {
        self.stream().conn.peer_certificates().unwrap()[0].to_vec()
    }

    fn version(&mut self) -> Option<rustls::ProtocolVersion> {
        self.stream().conn.protocol_version()
    }
}

/// A TOML config: plain and TLS listeners on free ports, `leaves` in order.
fn toml(backend: SocketAddr, leaves: &[&Leaf], extra: &str) -> String {
    let mut text = format!(
        "[server]\nlisten = \"127.0.0.1:0\"\nworkers = 2\n\
         [[backend]]\naddress = \"{backend}\"\n{extra}\n\
         [tls]\nlisten = \"127.0.0.1:0\"\n"
    );
    for l in leaves {
        text.push_str(&format!(
            "[[tls.certificate]]\ncert = \"{}\"\nkey = \"{}\"\n",
            l.cert.display(),
            l.key.display()
        ));
    }
    text
}

/// Starts lbd in-process from a config file (so a test can rewrite and reload it).
struct Running {
    server: lbd::Server,
    dir: TempDir,
    path: PathBuf,
}

impl Running {
    fn start(text: &str) -> Running {
        let dir = TempDir::new();
        let path = dir.write("lbd.toml", text);
        let config = lbd::Config::load(&path).unwrap();
        let _ = env_logger::builder().is_test(true).try_init();
        let server = lbd::Server::start_from_file(config, &path).unwrap();
        Running { server, dir, path }
    }

    fn tls(&self) -> SocketAddr {
        self.server.tls_addr().unwrap()
    }

    fn rewrite(&self, text: &str) {
        let _ = &self.dir;
        std::fs::write(&self.path, text).unwrap();
    }
}

/// SNI picks the most specific certificate: an exact name beats a wildcard; a name no
/// certificate covers, and no SNI at all, get the first one.
#[test]
fn sni_picks_exact_then_wildcard_then_the_first() {
    let pki = Pki::new();
    let first = pki.leaf(&["default.test"]);
    let wildcard = pki.leaf(&["*.example.com"]);
    let exact = pki.leaf(&["a.example.com"]);
    let backend = TestBackend::named("ok");
    let run = Running::start(&toml(backend.addr, &[&first, &wildcard, &exact], ""));
    let any = any_cert_client();
    let table: &[(&str, &Leaf)] = &[
        ("a.example.com", &exact),
        ("A.Example.COM", &exact),
        ("b.example.com", &wildcard),
        ("x.a.example.com", &first), // a wildcard covers one label
        ("example.com", &first),
        ("other.test", &first),
        ("127.0.0.1", &first), // an IP: no SNI is sent
    ];
    for (name, want) in table {
        let mut c = TlsClient::connect(run.tls(), name, &any).unwrap();
        assert!(c.peer_leaf() == want.der, "{name}: wrong certificate");
        assert_eq!(c.get("/").text(), "ok", "{name}");
    }
    // And with verification: the CA-signed chain is valid for the names it covers.
    let verified = pki.client(&[&rustls::version::TLS13, &rustls::version::TLS12]);
    for name in ["a.example.com", "b.example.com", "default.test"] {
        let mut c = TlsClient::connect(run.tls(), name, &verified).unwrap();
        assert_eq!(c.get("/").status, 200, "{name}");
    }
}

/// `min_version = "1.3"` refuses a TLS 1.2-only client (counted as a failed handshake);
/// the default accepts both versions.
#[test]
fn min_version_refuses_older_clients() {
    let pki = Pki::new();
    let leaf = pki.leaf(&["localhost"]);
    let backend = TestBackend::named("ok");
    let only12 = pki.client(&[&rustls::version::TLS12]);
    let only13 = pki.client(&[&rustls::version::TLS13]);

    let run = Running::start(&toml(backend.addr, &[&leaf], ""));
    let mut c = TlsClient::connect(run.tls(), "localhost", &only12).unwrap();
    assert_eq!(c.version(), Some(rustls::ProtocolVersion::TLSv1_2));
    assert_eq!(c.get("/").text(), "ok");
    let mut c = TlsClient::connect(run.tls(), "localhost", &only13).unwrap();
    assert_eq!(c.version(), Some(rustls::ProtocolVersion::TLSv1_3));
    assert_eq!(c.get("/").text(), "ok");

    let text =
        toml(backend.addr, &[&leaf], "").replace("[tls]\n", "[tls]\nmin_version = \"1.3\"\n");
    let run = Running::start(&text);
    assert!(TlsClient::connect(run.tls(), "localhost", &only12).is_err());
    let mut c = TlsClient::connect(run.tls(), "localhost", &only13).unwrap();
    assert_eq!(c.get("/").text(), "ok");
    let shared = run.server.shared();
    assert!(wait_until(IO_TIMEOUT, || {
        shared.tls_handshakes_failed.load(Ordering::Relaxed) == 1
            && shared.tls_handshakes_ok.load(Ordering::Relaxed) == 1
    }));
    assert_eq!(
        backend.request_count(),
        3,
        "a failed handshake reaches no backend"
    );
}

/// Keep-alive and pipelining over TLS; the backend sees `X-Forwarded-Proto: https`.
#[test]
fn keep_alive_and_pipelining_over_tls() {
    let pki = Pki::new();
    let leaf = pki.leaf(&["localhost"]);
    let backend = TestBackend::start(|req| Reply::text(&req.target));
    let run = Running::start(&toml(backend.addr, &[&leaf], ""));
    let client = pki.client(&[&rustls::version::TLS13]);
    let mut c = TlsClient::connect(run.tls(), "localhost", &client).unwrap();
    for i in 0..20 {
        assert_eq!(c.get(&format!("/k{i}")).text(), format!("/k{i}"));
    }
    let mut pipelined = Vec::new();
    for i in 0..12 {
        pipelined.extend_from_slice(format!("GET /p{i} HTTP/1.1\r\nHost: t\r\n\r\n").as_bytes());
    }
    c.send(&pipelined);
    for i in 0..12 {
        assert_eq!(c.response().text(), format!("/p{i}"));
    }
    let received = backend.received();
    assert!(received
        .iter()
        .all(|r| r.header("x-forwarded-proto") == Some("https")));
    // One upstream connection carried every request (the other one the backend counts
    // is the health probe's).
    assert!(
        backend.connection_count() <= 2,
        "{}",
        backend.connection_count()
    );
}

/// A WebSocket through lbd's TLS listener (spec §10: tunnels over TLS clients as over
/// plain ones): frames both ways, a 1 MiB message, the close handshake; when the
/// backend's FIN ends the downward direction, lbd ends TLS with close_notify first.
#[test]
fn websocket_tunnel_over_tls() {
    use crate::tunnel::{payload, text, ws_config, ws_handshake, WsBackend};
    use tungstenite::Message;
    let pki = Pki::new();
    let leaf = pki.leaf(&["localhost"]);
    let backend = WsBackend::echo();
    let run = Running::start(&toml(backend.addr, &[&leaf], ""));
    let client = pki.client(&[&rustls::version::TLS13]);
    let tls = TlsClient::connect(run.tls(), "localhost", &client).unwrap();
    let (mut ws, resp) = ws_handshake(tls.reader.into_inner(), Some(ws_config()));
    assert_eq!(resp.status(), 101);
    for i in 0..10 {
        ws.send(Message::text(format!("over tls {i}"))).unwrap();
        assert_eq!(text(ws.read().unwrap()), format!("over tls {i}"));
    }
    let big = payload(1 << 20, 9);
    ws.send(Message::binary(big.clone())).unwrap();
    assert_eq!(ws.read().unwrap(), Message::binary(big));
    ws.close(None).unwrap();
    let end = loop {
        match ws.read() {
            Ok(_) => continue,
            Err(e) => break e,
        }
    };
    assert!(
        matches!(end, tungstenite::Error::ConnectionClosed),
        "{end:?}"
    );
    // The backend closed: a clean TLS end (close_notify, then EOF), not a bare FIN.
    let mut rest = Vec::new();
    assert_eq!(ws.get_mut().read_to_end(&mut rest).unwrap(), 0);
    assert_eq!(run.server.shared().tunnels.load(Ordering::Relaxed), 1);
    drop(ws);
    assert!(wait_until(Duration::from_secs(10), || run
        .server
        .shared()
        .tunnels
        .load(Ordering::Relaxed)
        == 0));
}

/// A 10 MiB upload and a 100 MiB download (slow reader first) arrive intact, and lbd's
/// memory stays bounded: rustls's buffers are limited, backpressure works through TLS.
#[test]
fn large_bodies_over_tls_with_bounded_memory() {
    let pki = Pki::new();
    let leaf = pki.leaf(&["localhost"]);
    let len = 100 << 20;
    let down = streaming_backend(len);
    let lbd = Lbd::spawn(&toml(down.addr, &[&leaf], "").replace("workers = 2", "workers = 1"));
    let client = pki.client(&[&rustls::version::TLS13]);
    let tls = lbd.tls_addr.unwrap();

    let baseline = lbd.rss_kib();
    let mut c = TlsClient::connect(tls, "localhost", &client).unwrap();
    c.send(b"GET /length HTTP/1.1\r\nHost: t\r\n\r\n");
    let mut head = Vec::new();
    while !head.ends_with(b"\r\n\r\n") {
        let mut b = [0u8; 1];
        c.reader.read_exact(&mut b).unwrap();
        head.push(b[0]);
    }
    let head = String::from_utf8(head).unwrap();
    assert!(head.contains(&format!("Content-Length: {len}")), "{head}");
    let (mut h, mut got, mut peak) = (CHECKSUM_SEED, 0usize, baseline);
    let mut buf = vec![0u8; 64 * 1024];
    while got < 4 << 20 {
        let n = c.reader.read(&mut buf[..16 * 1024]).unwrap();
        assert!(n > 0);
        h = checksum(&buf[..n], h);
        got += n;
        std::thread::sleep(Duration::from_millis(2));
        peak = peak.max(lbd.rss_kib());
    }
    while got < len {
        let n = c.reader.read(&mut buf).unwrap();
        assert!(n > 0, "truncated at {got}");
        h = checksum(&buf[..n], h);
        got += n;
    }
    peak = peak.max(lbd.rss_kib());
    assert_eq!((got, h), (len, expected_checksum(len)));
    assert!(
        peak < baseline + 20 * 1024,
        "RSS grew from {baseline} KiB to {peak} KiB"
    );
    drop(lbd);

    // Upload: the backend answers with the length and checksum of what it received.
    let up = TestBackend::start(|req| {
        Reply::text(&format!(
            "{} {:x}",
            req.body.len(),
            checksum(&req.body, CHECKSUM_SEED)
        ))
    });
    let run = Running::start(&toml(up.addr, &[&leaf], ""));
    let body: Vec<u8> = (0..10 << 20).map(payload_byte).collect();
    let mut c = TlsClient::connect(run.tls(), "localhost", &client).unwrap();
    c.send(
        format!(
            "POST /up HTTP/1.1\r\nHost: t\r\nContent-Length: {}\r\n\r\n",
            body.len()
        )
        .as_bytes(),
    );
    for piece in body.chunks(256 * 1024) {
        c.stream().write_all(piece).unwrap();
    }
    c.stream().flush().unwrap();
    assert_eq!(
        c.response().text(),
        format!("{} {:x}", body.len(), checksum(&body, CHECKSUM_SEED))
    );
}

/// A handshake that stalls is closed at `client_header`, and one that fails (plain HTTP
/// sent to the TLS port) is closed at once; neither reaches a backend.
#[test]
fn stalled_or_failed_handshakes_close_and_reach_no_backend() {
    let pki = Pki::new();
    let leaf = pki.leaf(&["localhost"]);
    let backend = TestBackend::named("ok");
    let run = Running::start(&toml(
        backend.addr,
        &[&leaf],
        "[timeouts]\nclient_header = \"300ms\"\n",
    ));
    // Half a ClientHello, then silence.
    let mut s = TcpStream::connect(run.tls()).unwrap();
    s.set_read_timeout(Some(IO_TIMEOUT)).unwrap();
    s.write_all(&[0x16, 0x03, 0x01, 0x02, 0x00, 0x01]).unwrap();
    let mut buf = [0u8; 64];
    assert!(
        matches!(s.read(&mut buf), Ok(0) | Err(_)),
        "closed at client_header"
    );

    let run = Running::start(&toml(
        backend.addr,
        &[&leaf],
        "[timeouts]\nclient_header = \"60s\"\n",
    ));
    let mut s = TcpStream::connect(run.tls()).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    s.write_all(b"GET / HTTP/1.1\r\nHost: t\r\n\r\n").unwrap();
    let mut out = Vec::new();
    let read = s.read_to_end(&mut out);
    assert!(
        read.is_ok() || out.is_empty(),
        "closed well before client_header (60 s): {read:?}"
    );
    assert!(!out.starts_with(b"HTTP/"), "no HTTP answer on the TLS port");
    let shared = run.server.shared();
    assert!(wait_until(IO_TIMEOUT, || shared
        .tls_handshakes_failed
        .load(Ordering::Relaxed)
        == 1));
    assert_eq!(backend.request_count(), 0);
}

/// Certificates reload with SIGHUP semantics under load: no request fails, handshakes
/// after the reload get the new certificate, and an invalid new certificate keeps the
/// old set (the reload is refused).
#[test]
fn certificate_reload_under_load_fails_nothing() {
    let pki = Pki::new();
    let old = pki.leaf(&["localhost"]);
    let new = pki.leaf(&["localhost"]);
    let backend = TestBackend::named("ok");
    let run = Running::start(&toml(backend.addr, &[&old], ""));
    let tls = run.tls();
    let client = pki.client(&[&rustls::version::TLS13, &rustls::version::TLS12]);
    let stop = Arc::new(AtomicBool::new(false));
    let failures = Arc::new(AtomicUsize::new(0));
    let done = Arc::new(AtomicUsize::new(0));
    let load: Vec<_> = (0..4)
        .map(|i| {
            let (stop, failures, done, client) =
                (stop.clone(), failures.clone(), done.clone(), client.clone());
            std::thread::spawn(move || {
                let mut n = 0;
                while !stop.load(Ordering::SeqCst) && n < 3_000 {
                    // Half the clients keep their connection, half handshake each time.
                    let ok = TlsClient::connect(tls, "localhost", &client)
                        .map(|mut c| {
                            let rounds = if i % 2 == 0 { 20 } else { 1 };
                            (0..rounds).all(|_| c.get("/").status == 200)
                        })
                        .unwrap_or(false);
                    if !ok {
                        failures.fetch_add(1, Ordering::SeqCst);
                    }
                    done.fetch_add(1, Ordering::SeqCst);
                    n += 1;
                }
            })
        })
        .collect();
    assert!(wait_until(IO_TIMEOUT, || done.load(Ordering::SeqCst) > 100));
    let garbage = pki.dir.write("bad.crt", "not a certificate");
    run.rewrite(&toml(
        backend.addr,
        &[&Leaf {
            cert: garbage,
            ..old.clone()
        }],
        "",
    ));
    assert!(
        run.server.reload().is_err(),
        "an invalid certificate is refused"
    );
    let mut c = TlsClient::connect(tls, "localhost", &client).unwrap();
    assert!(c.peer_leaf() == old.der, "the old set stays");
    run.rewrite(&toml(backend.addr, &[&new], ""));
    run.server.reload().unwrap();
    let at_reload = done.load(Ordering::SeqCst);
    assert!(wait_until(IO_TIMEOUT, || done.load(Ordering::SeqCst) > at_reload + 100));
    stop.store(true, Ordering::SeqCst);
    for t in load {
        t.join().unwrap();
    }
    assert_eq!(failures.load(Ordering::SeqCst), 0);
    let mut c = TlsClient::connect(tls, "localhost", &client).unwrap();
    assert!(
        c.peer_leaf() == new.der,
        "new handshakes use the new certificate"
    );
    assert_eq!(c.get("/").text(), "ok");
}

/// 500 clients handshaking at once are all served.
#[test]
fn five_hundred_concurrent_handshakes() {
    let pki = Pki::new();
    let leaf = pki.leaf(&["localhost"]);
    let backend = TestBackend::named("ok");
    let run = Running::start(&toml(backend.addr, &[&leaf], ""));
    let tls = run.tls();
    let client = pki.client(&[&rustls::version::TLS13]);
    let ready = Arc::new(std::sync::Barrier::new(500));
    let threads: Vec<_> = (0..500)
        .map(|_| {
            let (ready, client) = (ready.clone(), client.clone());
            std::thread::spawn(move || {
                let tcp = TcpStream::connect(tls).unwrap();
                tcp.set_read_timeout(Some(IO_TIMEOUT)).unwrap();
                ready.wait();
                let server = ServerName::try_from("localhost").unwrap();
                let conn = ClientConnection::new(client, server).unwrap();
                let mut stream = StreamOwned::new(conn, tcp);
                stream
                    .write_all(b"GET / HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n")
                    .unwrap();
                let mut reader = BufReader::new(stream);
                read_response(&mut reader, false).map(|r| r.status)
            })
        })
        .collect();
    let served = threads
        .into_iter()
        .map(|t| t.join().unwrap())
        .filter(|r| matches!(r, Ok(200)))
        .count();
    assert_eq!(served, 500);
    let shared = run.server.shared();
    assert!(shared.tls_handshakes_ok.load(Ordering::Relaxed) >= 500);
}

/// The command-line clients: `curl --cacert` and `openssl s_client`, when installed
/// (CI installs them and sets `LBD_REQUIRE_TLS_TOOLS`, turning a missing tool into a
/// failure).
#[test]
fn curl_and_openssl_clients() {
    let require = std::env::var_os("LBD_REQUIRE_TLS_TOOLS").is_some();
    let have = |tool: &str| {
        Command::new(tool).arg("--version").output().is_ok()
            || Command::new(tool).arg("version").output().is_ok()
    };
    for tool in ["curl", "openssl"] {
        if !have(tool) {
            assert!(!require, "{tool} is required (LBD_REQUIRE_TLS_TOOLS)");
            eprintln!("skipping: {tool} not installed");
            return;
        }
    }
    let pki = Pki::new();
    let leaf = pki.leaf(&["a.example.com", "localhost"]);
    let backend = TestBackend::named("via curl");
    let run = Running::start(&toml(backend.addr, &[&leaf], ""));
    let port = run.tls().port();
    let out = Command::new("curl")
        .args(["-sS", "--http1.1", "--cacert"])
        .arg(pki.ca_file())
        .args(["--resolve", &format!("a.example.com:{port}:127.0.0.1")])
        .arg(format!("https://a.example.com:{port}/x"))
        .output()
        .unwrap();
    assert_eq!(
        String::from_utf8_lossy(&out.stdout),
        "via curl",
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let mut child = Command::new("openssl")
        .args(["s_client", "-connect", &format!("127.0.0.1:{port}")])
        .args(["-servername", "a.example.com", "-CAfile"])
        .arg(pki.ca_file())
        .args(["-verify_return_error", "-quiet", "-alpn", "http/1.1"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(b"GET / HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n")
        .unwrap();
    let out = child.wait_with_output().unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.starts_with("HTTP/1.1 200") && text.ends_with("via curl"),
        "{text}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// `--check` loads every certificate and key and names the one that is wrong; an
/// expired certificate is a warning naming it.
#[test]
fn check_names_the_wrong_certificate_or_key() {
    let pki = Pki::new();
    let good = pki.leaf(&["localhost"]);
    let other = pki.leaf(&["localhost"]);
    let dir = TempDir::new();
    let not_pem = dir.write("junk.key", "hello");
    let missing = dir.0.join("missing.crt");
    let cases: Vec<(Leaf, &str)> = vec![
        (
            Leaf {
                key: other.key.clone(),
                ..good.clone()
            },
            "does not match",
        ),
        (
            Leaf {
                key: not_pem,
                ..good.clone()
            },
            "is not a PEM private key",
        ),
        (
            Leaf {
                cert: missing,
                ..good.clone()
            },
            "cannot read",
        ),
    ];
    for (leaf, want) in cases {
        let path = dir.write(
            "lbd.toml",
            &toml("127.0.0.1:1".parse().unwrap(), &[&good, &leaf], ""),
        );
        let out = Command::new(env!("CARGO_BIN_EXE_lbd"))
            .arg("--check")
            .arg(&path)
            .output()
            .unwrap();
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(1), "{err}");
        assert!(
            err.contains("tls.certificate[1]") && err.contains(want),
            "{want}: {err}"
        );
    }
    // Expired: still valid to load, with a warning naming it.
    let key = rcgen::KeyPair::generate().unwrap();
    let mut params = rcgen::CertificateParams::new(vec!["localhost".to_string()]).unwrap();
    params.not_before = rcgen::date_time_ymd(2020, 1, 1);
    params.not_after = rcgen::date_time_ymd(2021, 1, 1);
    let cert = params.signed_by(&key, &pki.ca, &pki.ca_key).unwrap();
    let expired = Leaf {
        cert: dir.write("old.crt", &cert.pem()),
        key: dir.write("old.key", &key.serialize_pem()),
        der: vec![],
    };
    let path = dir.write(
        "lbd.toml",
        &toml("127.0.0.1:1".parse().unwrap(), &[&expired], ""),
    );
    let out = Command::new(env!("CARGO_BIN_EXE_lbd"))
        .arg("--check")
        .arg(&path)
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "{err}");
    assert!(
        err.contains("warning") && err.contains("tls.certificate[0]") && err.contains("expired"),
        "{err}"
    );
    assert_eq!(String::from_utf8_lossy(&out.stdout), "config ok\n");
}

/// The metrics of spec §9 are exported.
#[test]
fn tls_metrics_are_exported() {
    let pki = Pki::new();
    let leaf = pki.leaf(&["localhost"]);
    let backend = TestBackend::named("ok");
    let text = toml(
        backend.addr,
        &[&leaf],
        "[admin]\nlisten = \"127.0.0.1:0\"\n",
    );
    let run = Running::start(&text);
    let client = pki.client(&[&rustls::version::TLS13]);
    let mut c = TlsClient::connect(run.tls(), "localhost", &client).unwrap();
    assert_eq!(c.get("/").status, 200);
    let mut admin = TcpStream::connect(run.server.admin_addr().unwrap()).unwrap();
    admin
        .write_all(b"GET /metrics HTTP/1.1\r\nHost: a\r\n\r\n")
        .unwrap();
    let mut metrics = String::new();
    BufReader::new(admin).read_to_string(&mut metrics).unwrap();
    assert!(
        metrics.contains("lbd_tls_handshakes_total{result=\"ok\"} 1"),
        "{metrics}"
    );
    assert!(metrics.contains("lbd_tls_connections 1"), "{metrics}");
    drop(c);
}

/// `redirect_http`: the plain listener answers every request with a 308 to the TLS
/// listener (Host without its port, the TLS port, the target as sent), keeping the
/// connection for body-less keep-alive requests; nothing reaches a backend over plain
/// HTTP, and the TLS listener serves as usual.
#[test]
fn redirect_http_sends_plain_requests_to_https() {
    let pki = Pki::new();
    let leaf = pki.leaf(&["localhost"]);
    let backend = TestBackend::named("ok");
    let text = toml(backend.addr, &[&leaf], "").replace("[tls]\n", "[tls]\nredirect_http = true\n");
    let run = Running::start(&text);
    let port = run.tls().port();
    let mut c = Client::connect(run.server.local_addr());
    let r = c.get("/a/b?c=1");
    assert_eq!(r.status, 308);
    assert_eq!(
        r.header("location"),
        Some(format!("https://test:{port}/a/b?c=1").as_str())
    );
    c.send(b"GET /x HTTP/1.1\r\nHost: example.com:8080\r\n\r\n");
    let r = c.response(false);
    assert_eq!(
        r.header("location"),
        Some(format!("https://example.com:{port}/x").as_str())
    );
    // A request with a body: redirected, then the connection closes (the body is unread).
    c.send(b"POST /p HTTP/1.1\r\nHost: h\r\nContent-Length: 3\r\n\r\nabc");
    let r = c.response(false);
    assert_eq!((r.status, r.header("connection")), (308, Some("close")));
    assert!(c.is_closed_by_peer());
    assert_eq!(
        backend.request_count(),
        0,
        "plain requests never reach a backend"
    );
    let client = pki.client(&[&rustls::version::TLS13]);
    let mut t = TlsClient::connect(run.tls(), "localhost", &client).unwrap();
    assert_eq!(t.get("/").text(), "ok");
}
