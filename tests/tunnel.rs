//! Upgrade tunnels (spec §10, issue 12) with real WebSocket peers: a tungstenite server
//! as lbd's backend and a tungstenite client through lbd. Handshake, frames both ways,
//! 16 MiB messages, ping/pong, the close handshake, TCP half-close each way, the idle
//! limit, reloads and a drain, shutdown, 1,000 idle tunnels and a slow reader (RSS of
//! the real binary), and the HTTP rules around upgrades (h2c, unasked 101, CONNECT, a
//! refused upgrade), metrics and the access log.

use std::io::{self, BufRead, BufReader, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{mpsc, Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

use tungstenite::client::IntoClientRequest;
use tungstenite::error::ProtocolError;
use tungstenite::handshake::server::{Callback, ErrorResponse, Request, Response};
use tungstenite::protocol::{Role, WebSocketConfig};
use tungstenite::{Error as WsError, Message, WebSocket};

use crate::binary::{Lbd, TempDir};
use crate::util::*;

/// Room for the 16 MiB messages (tungstenite's default frame limit is exactly 16 MiB).
pub(crate) fn ws_config() -> WebSocketConfig {
    WebSocketConfig::default()
        .max_message_size(Some(80 << 20))
        .max_frame_size(Some(80 << 20))
}

/// A small-footprint config for peers that only hold many idle connections.
fn small_ws_config() -> WebSocketConfig {
    WebSocketConfig::default()
        .read_buffer_size(4096)
        .write_buffer_size(0)
}

/// The headers of a handshake request as the backend saw them.
type Headers = Vec<(String, String)>;

fn header<'h>(headers: &'h Headers, name: &str) -> Option<&'h str> {
    headers
        .iter()
        .find(|(n, _)| n.eq_ignore_ascii_case(name))
        .map(|(_, v)| v.as_str())
}

fn has_token(value: Option<&str>, token: &str) -> bool {
    value.is_some_and(|v| v.split(',').any(|t| t.trim().eq_ignore_ascii_case(token)))
}

fn headers_of(req: &Request) -> Headers {
    req.headers()
        .iter()
        .map(|(n, v)| (n.to_string(), String::from_utf8_lossy(v.as_bytes()).into()))
        .collect()
}

/// The backend's handshake answer: it names the first subprotocol the client offered,
/// and records the request's headers in `log`.
struct Answer {
    log: Option<Arc<Mutex<Vec<Headers>>>>,
}

impl Callback for Answer {
    fn on_request(self, req: &Request, mut resp: Response) -> Result<Response, ErrorResponse> {
        if let Some(log) = self.log {
            log.lock().unwrap().push(headers_of(req));
        }
        if let Some(p) = req.headers().get("sec-websocket-protocol") {
            let first = p.to_str().unwrap().split(',').next().unwrap().trim();
            resp.headers_mut()
                .insert("sec-websocket-protocol", first.parse().unwrap());
        }
        Ok(resp)
    }
}

/// A tungstenite WebSocket server on 127.0.0.1 (a thread per connection) running
/// `script` on every upgraded connection. Connections that do not complete a WebSocket
/// handshake (lbd's TCP health probes) are dropped.
pub(crate) struct WsBackend {
    pub(crate) addr: SocketAddr,
    /// Handshake requests received, in order.
    requests: Arc<Mutex<Vec<Headers>>>,
    /// Connections upgraded.
    upgraded: Arc<AtomicUsize>,
}

impl WsBackend {
    fn start(script: impl Fn(WebSocket<TcpStream>) + Send + Sync + 'static) -> WsBackend {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let requests = Arc::new(Mutex::new(Vec::new()));
        let upgraded = Arc::new(AtomicUsize::new(0));
        let script = Arc::new(script);
        let (reqs, ups) = (requests.clone(), upgraded.clone());
        thread::spawn(move || {
            for stream in listener.incoming() {
                let Ok(stream) = stream else { continue };
                let (reqs, ups, script) = (reqs.clone(), ups.clone(), script.clone());
                thread::spawn(move || {
                    stream.set_read_timeout(Some(IO_TIMEOUT)).unwrap();
                    let callback = Answer {
                        log: Some(reqs.clone()),
                    };
                    let Ok(ws) =
                        tungstenite::accept_hdr_with_config(stream, callback, Some(ws_config()))
                    else {
                        return;
                    };
                    ups.fetch_add(1, Ordering::SeqCst);
                    script(ws);
                });
            }
        });
        WsBackend {
            addr,
            requests,
            upgraded,
        }
    }

    /// Echoes text and binary messages until the connection ends (tungstenite answers
    /// pings and the close handshake by itself).
    pub(crate) fn echo() -> WsBackend {
        WsBackend::start(|mut ws| {
            while let Ok(m) = ws.read() {
                if (m.is_text() || m.is_binary()) && ws.send(m).is_err() {
                    return;
                }
            }
        })
    }

    fn upgraded(&self) -> usize {
        self.upgraded.load(Ordering::SeqCst)
    }
}

/// Opens a WebSocket to `addr` (lbd) asking for subprotocol `chat`.
fn ws_connect(
    addr: SocketAddr,
) -> (
    WebSocket<TcpStream>,
    tungstenite::handshake::client::Response,
) {
    let stream = TcpStream::connect(addr).unwrap();
    stream.set_read_timeout(Some(IO_TIMEOUT)).unwrap();
    stream.set_nodelay(true).unwrap();
    ws_handshake(stream, Some(ws_config()))
}

pub(crate) fn ws_handshake<S: Read + Write>(
    stream: S,
    config: Option<WebSocketConfig>,
) -> (WebSocket<S>, tungstenite::handshake::client::Response) {
    let mut req = "ws://lbd.test/chat?room=1".into_client_request().unwrap();
    req.headers_mut()
        .insert("sec-websocket-protocol", "chat, superchat".parse().unwrap());
    req.headers_mut().insert(
        "sec-websocket-extensions",
        "x-test-extension; param=1".parse().unwrap(),
    );
    match tungstenite::client::client_with_config(req, stream, config) {
        Ok(pair) => pair,
        Err(e) => panic!("WebSocket handshake through lbd failed: {e}"),
    }
}

/// Reads a response head byte by byte (a 101 has no body; what follows it is the
/// tunnel's): (status, raw head).
fn read_switch_head(reader: &mut impl Read) -> (u16, String) {
    let mut head = Vec::new();
    let mut b = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        reader.read_exact(&mut b).unwrap();
        head.push(b[0]);
    }
    let head = String::from_utf8(head).unwrap();
    let status = head.split(' ').nth(1).unwrap().parse().unwrap();
    (status, head)
}

/// The message as text (panics on anything else).
pub(crate) fn text(m: Message) -> String {
    match m {
        Message::Text(t) => t.as_str().to_string(),
        other => panic!("expected a text message, got {other:?}"),
    }
}

/// True for the error a WebSocket reports when the TCP stream ended (FIN or reset)
/// without a close handshake, or the socket failed.
fn is_stream_end(e: &WsError) -> bool {
    matches!(
        e,
        WsError::Protocol(ProtocolError::ResetWithoutClosingHandshake)
            | WsError::ConnectionClosed
            | WsError::Io(_)
    )
}

/// A deterministic binary payload of `len` bytes, different per `seed`.
pub(crate) fn payload(len: usize, seed: usize) -> Vec<u8> {
    (0..len).map(|i| payload_byte(i + seed * 7919)).collect()
}

fn lbd_tunnels(server: &lbd::Server) -> usize {
    server.shared().tunnels.load(Ordering::Relaxed)
}

/// lbd in front of `backends` with a tunnel idle limit of `tunnel`.
fn lbd_for(backends: &[SocketAddr], tunnel: Duration) -> lbd::Server {
    let mut c = config(backends);
    c.timeouts.tunnel = tunnel;
    start(c)
}

/// A TOML config with an admin listener, for reload, drain and metrics tests.
fn toml(backends: &[(usize, SocketAddr)], extra: &str) -> String {
    let mut text = String::from(
        "[server]\nlisten = \"127.0.0.1:0\"\nworkers = 2\n[admin]\nlisten = \"127.0.0.1:0\"\n\
         [timeouts]\nshutdown = \"5s\"\n",
    );
    text.push_str(extra);
    for (i, b) in backends {
        text.push_str(&format!(
            "[[backend]]\naddress = \"{b}\"\nname = \"b{i}\"\n"
        ));
    }
    text
}

struct FromFile {
    server: lbd::Server,
    path: std::path::PathBuf,
    _dir: TempDir,
}

fn start_file(text: &str) -> FromFile {
    let dir = TempDir::new();
    let path = dir.write("lbd.toml", text);
    let config = lbd::Config::load(&path).unwrap();
    let _ = env_logger::builder().is_test(true).try_init();
    let server = lbd::Server::start_from_file(config, &path).unwrap();
    FromFile {
        server,
        path,
        _dir: dir,
    }
}

/// The value of an unlabelled (or exactly labelled) metric line `name`.
fn metric(admin: SocketAddr, name: &str) -> Option<f64> {
    let (status, body) = crate::ops::admin(admin, "GET", "/metrics");
    assert_eq!(status, 200);
    body.lines()
        .find_map(|l| l.strip_prefix(name)?.strip_prefix(' ')?.trim().parse().ok())
}

#[test]
fn websocket_handshake_frames_ping_and_close() {
    let backend = WsBackend::echo();
    let server = lbd_for(&[backend.addr], Duration::from_secs(3600));
    let (mut ws, resp) = ws_connect(server.local_addr());

    // The 101 reached the client with the upgrade headers and the Sec-WebSocket-*
    // answers (tungstenite checked Sec-WebSocket-Accept against its key).
    assert_eq!(resp.status(), 101);
    let h = |name: &str| resp.headers().get(name).map(|v| v.to_str().unwrap());
    assert!(has_token(h("connection"), "upgrade"), "{resp:?}");
    assert!(h("upgrade").is_some_and(|v| v.eq_ignore_ascii_case("websocket")));
    assert!(h("sec-websocket-accept").is_some(), "{resp:?}");
    assert_eq!(h("sec-websocket-protocol"), Some("chat"));
    assert!(h("content-length").is_none() && h("transfer-encoding").is_none());

    // The backend got both upgrade headers and every Sec-WebSocket-* header.
    let seen = backend.requests.lock().unwrap()[0].clone();
    assert!(
        has_token(header(&seen, "connection"), "upgrade"),
        "{seen:?}"
    );
    assert_eq!(header(&seen, "upgrade"), Some("websocket"));
    assert!(header(&seen, "sec-websocket-key").is_some_and(|k| k.len() == 24));
    assert_eq!(header(&seen, "sec-websocket-version"), Some("13"));
    assert_eq!(
        header(&seen, "sec-websocket-protocol"),
        Some("chat, superchat")
    );
    assert_eq!(
        header(&seen, "sec-websocket-extensions"),
        Some("x-test-extension; param=1")
    );
    assert_eq!(header(&seen, "x-forwarded-for"), Some("127.0.0.1"));
    assert_eq!(lbd_tunnels(&server), 1);

    // Text and binary frames both ways (the backend echoes them).
    for i in 0..20 {
        ws.send(Message::text(format!("hello {i} ünïcode")))
            .unwrap();
        assert_eq!(text(ws.read().unwrap()), format!("hello {i} ünïcode"));
        let bin = payload(1 + i * 997, i);
        ws.send(Message::binary(bin.clone())).unwrap();
        assert_eq!(ws.read().unwrap(), Message::binary(bin));
    }
    // Ping from the client: the backend's pong comes back with the same payload.
    ws.send(Message::Ping(b"are you there".to_vec().into()))
        .unwrap();
    match ws.read().unwrap() {
        Message::Pong(p) => assert_eq!(&p[..], b"are you there"),
        other => panic!("expected a pong, got {other:?}"),
    }

    // Close handshake, started by the client: the backend's Close comes back, then
    // both TCP connections end and the tunnel is gone.
    ws.close(None).unwrap();
    let end = loop {
        match ws.read() {
            Ok(Message::Close(_)) => continue,
            Ok(other) => panic!("unexpected {other:?} after close"),
            Err(e) => break e,
        }
    };
    assert!(matches!(end, WsError::ConnectionClosed), "{end:?}");
    // The backend closed its TCP connection: its FIN reached the client. The tunnel
    // ends when the client closes its side too (half-closes pass each way).
    let mut rest = Vec::new();
    assert_eq!(ws.get_mut().read_to_end(&mut rest).unwrap(), 0);
    assert_eq!(lbd_tunnels(&server), 1, "the client's side is still open");
    drop(ws);
    assert!(
        wait_until(Duration::from_secs(10), || lbd_tunnels(&server) == 0),
        "the tunnel did not end after both sides closed"
    );
}

#[test]
fn ping_from_the_backend_and_close_started_by_the_backend() {
    let (tx, rx) = mpsc::channel();
    let tx = Mutex::new(tx);
    let backend = WsBackend::start(move |mut ws| {
        ws.send(Message::Ping(b"backend ping".to_vec().into()))
            .unwrap();
        // tungstenite answers the client's pong; read until it arrives.
        let pong = loop {
            match ws.read().unwrap() {
                Message::Pong(p) => break p.to_vec(),
                _ => continue,
            }
        };
        ws.close(None).unwrap();
        let end = loop {
            match ws.read() {
                Ok(_) => continue,
                Err(e) => break e,
            }
        };
        tx.lock()
            .unwrap()
            .send((pong, matches!(end, WsError::ConnectionClosed)))
            .unwrap();
    });
    let server = lbd_for(&[backend.addr], Duration::from_secs(3600));
    let (mut ws, _) = ws_connect(server.local_addr());
    match ws.read().unwrap() {
        Message::Ping(p) => assert_eq!(&p[..], b"backend ping"),
        other => panic!("expected a ping, got {other:?}"),
    }
    // The next read flushes the automatic pong, then sees the backend's Close.
    assert!(matches!(ws.read().unwrap(), Message::Close(_)));
    assert!(matches!(ws.read(), Err(WsError::ConnectionClosed)));
    let (pong, closed) = rx.recv_timeout(IO_TIMEOUT).unwrap();
    assert_eq!(pong, b"backend ping");
    assert!(closed, "the backend's close handshake completed");
    drop(ws);
    assert!(wait_until(Duration::from_secs(10), || lbd_tunnels(&server) == 0));
}

#[test]
fn sixteen_mib_messages_each_way_are_intact() {
    const LEN: usize = 16 << 20;
    let (tx, rx) = mpsc::channel();
    let tx = Mutex::new(tx);
    let backend = WsBackend::start(move |mut ws| {
        // Receives one 16 MiB message, reports its checksum, sends its own back.
        let m = ws.read().unwrap();
        let data = m.into_data();
        tx.lock()
            .unwrap()
            .send((data.len(), checksum(&data, CHECKSUM_SEED)))
            .unwrap();
        ws.send(Message::binary(payload(LEN, 2))).unwrap();
        while ws.read().is_ok() {}
    });
    let server = lbd_for(&[backend.addr], Duration::from_secs(3600));
    let (mut ws, _) = ws_connect(server.local_addr());
    let up = payload(LEN, 1);
    let up_sum = checksum(&up, CHECKSUM_SEED);
    ws.send(Message::binary(up)).unwrap();
    let (len, sum) = rx.recv_timeout(Duration::from_secs(60)).unwrap();
    assert_eq!((len, sum), (LEN, up_sum), "client to backend");
    let down = ws.read().unwrap().into_data();
    assert_eq!(down.len(), LEN);
    assert_eq!(
        checksum(&down, CHECKSUM_SEED),
        checksum(&payload(LEN, 2), CHECKSUM_SEED),
        "backend to client"
    );
    ws.close(None).unwrap();
    while ws.read().is_ok() {}
    drop(ws);
    assert!(wait_until(Duration::from_secs(10), || lbd_tunnels(&server) == 0));
}

/// A FIN from the client reaches the backend as EOF while the backend can still send to
/// the client; the tunnel ends once the backend's FIN reached the client too.
#[test]
fn half_close_from_the_client_keeps_the_other_direction() {
    let (tx, rx) = mpsc::channel();
    let tx = Mutex::new(tx);
    let backend = WsBackend::start(move |mut ws| {
        assert_eq!(text(ws.read().unwrap()), "before");
        ws.send(Message::text("ack")).unwrap();
        // The client's FIN: the stream ends without a close frame.
        let end = ws.read().unwrap_err();
        let eof = matches!(
            end,
            WsError::Protocol(ProtocolError::ResetWithoutClosingHandshake)
        );
        // This side still sends (a fresh WebSocket over the same socket: tungstenite
        // refuses to write once it saw the stream end).
        let raw = ws.get_ref().try_clone().unwrap();
        let mut late = WebSocket::from_raw_socket(raw, Role::Server, Some(ws_config()));
        let sent = late.send(Message::text("after your FIN")).is_ok()
            && late.send(Message::binary(payload(1 << 20, 3))).is_ok();
        ws.get_ref().shutdown(Shutdown::Write).unwrap();
        tx.lock().unwrap().send((eof, sent)).unwrap();
    });
    let server = lbd_for(&[backend.addr], Duration::from_secs(3600));
    let (mut ws, _) = ws_connect(server.local_addr());
    ws.send(Message::text("before")).unwrap();
    assert_eq!(text(ws.read().unwrap()), "ack");
    ws.get_ref().shutdown(Shutdown::Write).unwrap();
    let (eof, sent) = rx.recv_timeout(IO_TIMEOUT).unwrap();
    assert!(
        eof,
        "the backend saw the client's FIN as the end of the stream"
    );
    assert!(sent, "the backend could still send after the client's FIN");
    assert_eq!(text(ws.read().unwrap()), "after your FIN");
    assert_eq!(ws.read().unwrap(), Message::binary(payload(1 << 20, 3)));
    let end = ws.read().unwrap_err();
    assert!(
        matches!(
            end,
            WsError::Protocol(ProtocolError::ResetWithoutClosingHandshake)
        ),
        "the backend's FIN reached the client: {end:?}"
    );
    assert!(wait_until(Duration::from_secs(10), || lbd_tunnels(&server) == 0));
}

/// The mirror image: the backend's FIN reaches the client as EOF while the client can
/// still send to the backend.
#[test]
fn half_close_from_the_backend_keeps_the_other_direction() {
    let (tx, rx) = mpsc::channel();
    let tx = Mutex::new(tx);
    let backend = WsBackend::start(move |mut ws| {
        ws.send(Message::text("last words")).unwrap();
        ws.get_ref().shutdown(Shutdown::Write).unwrap();
        let a = ws.read().map(text).unwrap_or_default();
        let b = ws.read().map(Message::into_data).unwrap_or_default();
        let end = ws.read().unwrap_err();
        let eof = matches!(
            end,
            WsError::Protocol(ProtocolError::ResetWithoutClosingHandshake)
        );
        tx.lock()
            .unwrap()
            .send((a, checksum(&b, CHECKSUM_SEED), eof))
            .unwrap();
    });
    let server = lbd_for(&[backend.addr], Duration::from_secs(3600));
    let (mut ws, _) = ws_connect(server.local_addr());
    assert_eq!(text(ws.read().unwrap()), "last words");
    let end = ws.read().unwrap_err();
    assert!(
        matches!(
            end,
            WsError::Protocol(ProtocolError::ResetWithoutClosingHandshake)
        ),
        "the backend's FIN reached the client: {end:?}"
    );
    assert_eq!(lbd_tunnels(&server), 1, "one direction is still open");
    let raw = ws.get_ref().try_clone().unwrap();
    let mut late = WebSocket::from_raw_socket(raw, Role::Client, Some(ws_config()));
    late.send(Message::text("after your FIN")).unwrap();
    let big = payload(1 << 20, 4);
    late.send(Message::binary(big.clone())).unwrap();
    ws.get_ref().shutdown(Shutdown::Write).unwrap();
    let (a, sum, eof) = rx.recv_timeout(IO_TIMEOUT).unwrap();
    assert_eq!(a, "after your FIN");
    assert_eq!(sum, checksum(&big, CHECKSUM_SEED));
    assert!(eof, "the client's FIN reached the backend");
    assert!(wait_until(Duration::from_secs(10), || lbd_tunnels(&server) == 0));
}

/// `timeouts.tunnel` closes a tunnel with no byte either way for that long; traffic in
/// one direction alone keeps it open.
#[test]
fn idle_tunnel_closes_after_timeouts_tunnel_and_not_before() {
    const LIMIT: Duration = Duration::from_millis(800);
    const STEP: Duration = Duration::from_millis(200);
    let (tx, rx) = mpsc::channel();
    let tx = Mutex::new(tx);
    let backend = WsBackend::start(move |mut ws| {
        // Phase 1: only the client speaks, for twice the limit.
        for i in 0..8 {
            assert_eq!(text(ws.read().unwrap()), format!("up {i}"));
        }
        // Phase 2: only the backend speaks, for twice the limit.
        for i in 0..8 {
            thread::sleep(STEP);
            ws.send(Message::text(format!("down {i}"))).unwrap();
        }
        // Phase 3: silence; lbd ends the tunnel.
        let quiet = Instant::now();
        let end = ws.read().unwrap_err();
        tx.lock()
            .unwrap()
            .send((quiet.elapsed(), is_stream_end(&end)))
            .unwrap();
    });
    let server = lbd_for(&[backend.addr], LIMIT);
    let (mut ws, _) = ws_connect(server.local_addr());
    for i in 0..8 {
        thread::sleep(STEP);
        ws.send(Message::text(format!("up {i}"))).unwrap();
    }
    for i in 0..8 {
        assert_eq!(text(ws.read().unwrap()), format!("down {i}"));
    }
    assert_eq!(
        lbd_tunnels(&server),
        1,
        "open after 3.2 s of one-way traffic"
    );
    let quiet = Instant::now();
    let end = ws.read().unwrap_err();
    let waited = quiet.elapsed();
    assert!(is_stream_end(&end), "{end:?}");
    assert!(
        waited >= LIMIT - Duration::from_millis(100) && waited < LIMIT + Duration::from_secs(3),
        "closed after {waited:?} of silence, limit {LIMIT:?}"
    );
    let (backend_waited, ended) = rx.recv_timeout(IO_TIMEOUT).unwrap();
    assert!(ended);
    assert!(
        backend_waited >= LIMIT - Duration::from_millis(100),
        "{backend_waited:?}"
    );
    assert!(wait_until(Duration::from_secs(5), || lbd_tunnels(&server) == 0));
}

/// Ten reloads (the file rewritten each time, the tunnel's backend even absent from
/// every other config) and a drain of its backend leave an open tunnel working.
#[test]
fn tunnel_survives_ten_reloads_and_a_drain_of_its_backend() {
    let ws_backend = WsBackend::echo();
    let other = TestBackend::named("other");
    let both = [(0, ws_backend.addr), (1, other.addr)];
    let run = start_file(&toml(&both, ""));
    let admin = run.server.admin_addr().unwrap();
    let (mut ws, _) = ws_connect(run.server.local_addr());
    ws.send(Message::text("first")).unwrap();
    assert_eq!(text(ws.read().unwrap()), "first");
    for i in 0..10 {
        let backends: &[(usize, SocketAddr)] = if i % 2 == 0 { &both[1..] } else { &both };
        let extra = format!("[timeouts]\nclient_idle = \"{}s\"\n", 10 + i);
        let text_config = toml(backends, "").replace("[timeouts]\n", &extra);
        std::fs::write(&run.path, text_config).unwrap();
        run.server.reload().unwrap();
        let msg = format!("after reload {i}");
        ws.send(Message::text(msg.clone())).unwrap();
        assert_eq!(text(ws.read().unwrap()), msg);
        assert_eq!(lbd_tunnels(&run.server), 1);
    }
    assert_eq!(
        metric(admin, "lbd_config_reloads_total{result=\"ok\"}"),
        Some(10.0)
    );
    let (status, _) = crate::ops::admin(admin, "POST", "/backends/b0/drain");
    assert_eq!(status, 200);
    for i in 0..5 {
        let big = payload(256 << 10, i);
        ws.send(Message::binary(big.clone())).unwrap();
        assert_eq!(ws.read().unwrap(), Message::binary(big));
    }
    // New requests avoid the drained backend; the tunnel keeps it.
    assert_eq!(
        Client::connect(run.server.local_addr()).get("/").text(),
        "other"
    );
    ws.send(Message::text("still here")).unwrap();
    assert_eq!(text(ws.read().unwrap()), "still here");
    assert_eq!(ws_backend.upgraded(), 1);
    ws.close(None).unwrap();
    while ws.read().is_ok() {}
    drop(ws);
    assert!(wait_until(Duration::from_secs(10), || lbd_tunnels(
        &run.server
    ) == 0));
}

/// The binary: the same across SIGHUPs (the signal path, not the library call).
#[test]
fn tunnel_survives_sighup_in_the_binary() {
    let backend = WsBackend::echo();
    let lbd = Lbd::spawn(&format!(
        "[server]\nlisten = \"127.0.0.1:0\"\nworkers = 1\n[[backend]]\naddress = \"{}\"\n",
        backend.addr
    ));
    let (mut ws, _) = ws_connect(lbd.addr);
    for i in 0..10 {
        lbd.signal(libc::SIGHUP);
        let msg = format!("after SIGHUP {i}");
        ws.send(Message::text(msg.clone())).unwrap();
        assert_eq!(text(ws.read().unwrap()), msg);
    }
    // A new tunnel still opens after the reloads.
    let (mut second, _) = ws_connect(lbd.addr);
    second.send(Message::text("new")).unwrap();
    assert_eq!(text(second.read().unwrap()), "new");
    ws.send(Message::text("old")).unwrap();
    assert_eq!(text(ws.read().unwrap()), "old");
}

/// Graceful shutdown lets an open tunnel run until `timeouts.shutdown`, then closes it:
/// `Server::stop` returns at about that deadline and both peers see the end.
#[test]
fn shutdown_closes_open_tunnels_at_the_deadline() {
    const GRACE: Duration = Duration::from_millis(1500);
    let (tx, rx) = mpsc::channel();
    let tx = Mutex::new(tx);
    let backend = WsBackend::start(move |mut ws| {
        let end = loop {
            match ws.read() {
                Ok(m) if m.is_text() => ws.send(m).unwrap(),
                Ok(_) => continue,
                Err(e) => break e,
            }
        };
        tx.lock().unwrap().send(is_stream_end(&end)).unwrap();
    });
    let mut c = config(&[backend.addr]);
    // Its own loopback address: a port freed here cannot be taken by another test's
    // listener before the check below.
    c.server.listen = "127.0.0.3:0".parse().unwrap();
    c.timeouts.shutdown = GRACE;
    let server = start(c);
    let addr = server.local_addr();
    let (mut ws, _) = ws_connect(addr);
    ws.send(Message::text("before")).unwrap();
    assert_eq!(text(ws.read().unwrap()), "before");
    let began = Instant::now();
    let stopper = thread::spawn(move || {
        server.stop();
        began.elapsed()
    });
    // Shutdown began (the listener is closed) and the tunnel still carries messages.
    assert!(wait_until(Duration::from_secs(5), || TcpStream::connect(
        addr
    )
    .is_err()));
    ws.send(Message::text("during the grace period")).unwrap();
    assert_eq!(text(ws.read().unwrap()), "during the grace period");
    let end = ws.read().unwrap_err();
    let closed_after = began.elapsed();
    assert!(is_stream_end(&end), "{end:?}");
    let stopped_after = stopper.join().unwrap();
    assert!(
        closed_after >= GRACE - Duration::from_millis(100),
        "the tunnel closed {closed_after:?} after shutdown began, before the deadline"
    );
    assert!(
        stopped_after >= GRACE - Duration::from_millis(100)
            && stopped_after < GRACE + Duration::from_secs(3),
        "Server::stop returned after {stopped_after:?}, deadline {GRACE:?}"
    );
    assert!(
        rx.recv_timeout(IO_TIMEOUT).unwrap(),
        "the backend saw the end"
    );
}

/// A backend that completes WebSocket handshakes on one thread and holds the
/// connections (no thread per connection), for the 1,000-tunnel test.
fn holding_backend() -> (SocketAddr, Arc<Mutex<Vec<WebSocket<TcpStream>>>>) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    let held = Arc::new(Mutex::new(Vec::new()));
    let keep = held.clone();
    thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(stream) = stream else { continue };
            stream.set_read_timeout(Some(IO_TIMEOUT)).unwrap();
            let callback = Answer { log: None };
            let accepted =
                tungstenite::accept_hdr_with_config(stream, callback, Some(small_ws_config()));
            if let Ok(ws) = accepted {
                keep.lock().unwrap().push(ws);
            }
        }
    });
    (addr, held)
}

/// Raises the soft descriptor limit to the hard one; returns it.
fn raise_nofile() -> u64 {
    let mut limit = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit/setrlimit only read and write the struct passed.
    unsafe {
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) == 0 && limit.rlim_cur < limit.rlim_max
        {
            limit.rlim_cur = limit.rlim_max;
            libc::setrlimit(libc::RLIMIT_NOFILE, &limit);
            libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit);
        }
    }
    limit.rlim_cur
}

/// 1,000 concurrent idle tunnels through the real binary: RSS per tunnel is reported
/// and bounded, and every tunnel still works afterwards.
#[test]
fn thousand_idle_tunnels_have_bounded_memory() {
    const N: usize = 1000;
    // Here: a client and a backend socket per tunnel; lbd (a child) two more.
    assert!(
        raise_nofile() >= 4 * N as u64 + 400,
        "the descriptor limit is too low for {N} tunnels"
    );
    let (backend, held) = holding_backend();
    let lbd = Lbd::spawn(&format!(
        "[server]\nlisten = \"127.0.0.1:0\"\nworkers = 2\n[[backend]]\naddress = \"{backend}\"\n"
    ));
    // Warm up (buffer pools, allocator arenas) with a few tunnels opened and closed.
    for _ in 0..8 {
        let (mut ws, _) = ws_connect(lbd.addr);
        ws.send(Message::text("warm")).unwrap();
        assert!(wait_until(Duration::from_secs(10), || !held
            .lock()
            .unwrap()
            .is_empty()));
        let mut server_side = held.lock().unwrap().pop().unwrap();
        assert_eq!(text(server_side.read().unwrap()), "warm");
        drop(server_side);
        while ws.read().is_ok() {}
    }
    let baseline = lbd.rss_kib();
    let mut clients = Vec::with_capacity(N);
    for _ in 0..N {
        let stream = TcpStream::connect(lbd.addr).unwrap();
        stream.set_read_timeout(Some(IO_TIMEOUT)).unwrap();
        clients.push(ws_handshake(stream, Some(small_ws_config())).0);
    }
    assert!(wait_until(Duration::from_secs(20), || held
        .lock()
        .unwrap()
        .len()
        == N));
    let rss = lbd.rss_kib();
    let per_tunnel = rss.saturating_sub(baseline) as f64 / N as f64;
    eprintln!(
        "{N} idle tunnels: lbd RSS {baseline} KiB -> {rss} KiB, {per_tunnel:.1} KiB per tunnel"
    );
    // Every tunnel still carries a message both ways.
    let mut servers = held.lock().unwrap();
    for (i, (c, s)) in clients.iter_mut().zip(servers.iter_mut()).enumerate() {
        if i % 50 != 0 {
            continue;
        }
        c.send(Message::text(format!("ping {i}"))).unwrap();
        assert_eq!(text(s.read().unwrap()), format!("ping {i}"));
        s.send(Message::text(format!("pong {i}"))).unwrap();
        assert_eq!(text(c.read().unwrap()), format!("pong {i}"));
    }
    // Then each tunnel carries 128 KiB each way (every buffer byte touched) and goes
    // idle again: what an idle tunnel holds must not depend on what it carried.
    let big = payload(128 << 10, 5);
    for (c, s) in clients.iter_mut().zip(servers.iter_mut()) {
        s.send(Message::binary(big.clone())).unwrap();
        assert_eq!(c.read().unwrap().len(), big.len());
        c.send(Message::binary(big.clone())).unwrap();
        assert_eq!(s.read().unwrap().len(), big.len());
    }
    let after = lbd.rss_kib();
    let per_tunnel_after = after.saturating_sub(baseline) as f64 / N as f64;
    eprintln!(
        "after 128 KiB each way through each: lbd RSS {after} KiB, {per_tunnel_after:.1} KiB per tunnel"
    );
    // Generous: an idle tunnel holding its two buffers (80 KiB) fails it.
    assert!(
        per_tunnel < 40.0 && per_tunnel_after < 40.0,
        "{per_tunnel:.1} then {per_tunnel_after:.1} KiB per idle tunnel \
         (RSS {baseline} -> {rss} -> {after} KiB)"
    );
}

/// A stream that reads at most 16 KiB at a time, pausing 2 ms, while `slow` has bytes
/// left: a slow reader.
struct Sipping {
    inner: TcpStream,
    slow: Arc<AtomicUsize>,
}

impl Read for Sipping {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let left = self.slow.load(Ordering::SeqCst);
        if left == 0 {
            return self.inner.read(buf);
        }
        thread::sleep(Duration::from_millis(2));
        let cap = buf.len().min(16 * 1024);
        let n = self.inner.read(&mut buf[..cap])?;
        self.slow.store(left.saturating_sub(n), Ordering::SeqCst);
        Ok(n)
    }
}

impl Write for Sipping {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.inner.write(buf)
    }
    fn flush(&mut self) -> io::Result<()> {
        self.inner.flush()
    }
}

/// 64 MiB each way through a tunnel whose receiver first reads slowly: lbd stops
/// reading the sender instead of buffering (RSS of the real binary stays bounded), and
/// every byte arrives.
#[test]
fn slow_reader_on_a_tunnel_keeps_memory_bounded() {
    const MESSAGES: usize = 64;
    const SIZE: usize = 1 << 20;
    const SLOW: usize = 4 << 20;
    let expected: u64 = (0..MESSAGES).fold(CHECKSUM_SEED, |h, i| checksum(&payload(SIZE, i), h));
    let (tx, rx) = mpsc::channel();
    let tx = Mutex::new(tx);
    let backend = WsBackend::start(move |mut ws| {
        // Down: 64 MiB to a client that sips.
        for i in 0..MESSAGES {
            ws.send(Message::binary(payload(SIZE, i))).unwrap();
        }
        // Up: the backend is the slow reader now (a fresh WebSocket over the same
        // socket: nothing was read past the handshake).
        let slow = Arc::new(AtomicUsize::new(SLOW));
        let raw = Sipping {
            inner: ws.get_ref().try_clone().unwrap(),
            slow: slow.clone(),
        };
        let mut sip = WebSocket::from_raw_socket(raw, Role::Server, Some(ws_config()));
        tx.lock().unwrap().send(None).unwrap();
        let mut h = CHECKSUM_SEED;
        for _ in 0..MESSAGES {
            h = checksum(&sip.read().unwrap().into_data(), h);
        }
        tx.lock().unwrap().send(Some(h)).unwrap();
        while sip.read().is_ok() {}
    });
    let lbd = Lbd::spawn(&format!(
        "[server]\nlisten = \"127.0.0.1:0\"\nworkers = 1\n[[backend]]\naddress = \"{}\"\n",
        backend.addr
    ));
    let baseline = lbd.rss_kib();
    let slow = Arc::new(AtomicUsize::new(SLOW));
    let stream = TcpStream::connect(lbd.addr).unwrap();
    stream.set_read_timeout(Some(IO_TIMEOUT)).unwrap();
    let raw = Sipping {
        inner: stream,
        slow: slow.clone(),
    };
    let (mut ws, _) = ws_handshake(raw, Some(ws_config()));
    let mut peak = baseline;
    let mut h = CHECKSUM_SEED;
    for _ in 0..MESSAGES {
        h = checksum(&ws.read().unwrap().into_data(), h);
        peak = peak.max(lbd.rss_kib());
    }
    assert_eq!(h, expected, "backend to client");
    assert_eq!(rx.recv_timeout(IO_TIMEOUT).unwrap(), None);
    let sender = thread::spawn(move || {
        for i in 0..MESSAGES {
            ws.send(Message::binary(payload(SIZE, i))).unwrap();
        }
        ws
    });
    let deadline = Instant::now() + Duration::from_secs(120);
    let got = loop {
        peak = peak.max(lbd.rss_kib());
        match rx.recv_timeout(Duration::from_millis(10)) {
            Ok(got) => break got,
            Err(_) => assert!(Instant::now() < deadline, "the backend did not get 64 MiB"),
        }
    };
    assert_eq!(got, Some(expected), "client to backend");
    let mut ws = sender.join().unwrap();
    ws.close(None).unwrap();
    eprintln!("slow tunnel reader: lbd RSS {baseline} KiB, peak {peak} KiB");
    assert!(
        peak < baseline + 20 * 1024,
        "RSS grew from {baseline} KiB to {peak} KiB"
    );
}

/// `Upgrade: h2c` is taken out: the backend sees neither it nor `Connection: upgrade`
/// (nor the header the `Connection` field named) and answers as usual; in a list,
/// only `h2c` is dropped.
#[test]
fn h2c_upgrade_is_removed() {
    let backend = TestBackend::start(|_| Reply::text("plain answer"));
    let server = lbd_for(&[backend.addr], Duration::from_secs(3600));
    let mut c = Client::connect(server.local_addr());
    c.send(
        b"GET /a HTTP/1.1\r\nHost: t\r\nConnection: Upgrade, HTTP2-Settings\r\n\
          Upgrade: h2c\r\nHTTP2-Settings: AAMAAABkAARAAAAAAAIAAAAA\r\n\r\n",
    );
    let r = c.response(false);
    assert_eq!((r.status, r.text().as_str()), (200, "plain answer"));
    // The connection is still HTTP.
    assert_eq!(c.get("/b").text(), "plain answer");
    let seen = &backend.received()[0];
    assert!(seen.header("upgrade").is_none(), "{}", seen.raw_head);
    assert!(seen.header("http2-settings").is_none(), "{}", seen.raw_head);
    assert!(
        !seen
            .header_all("connection")
            .iter()
            .any(|v| v.to_ascii_lowercase().contains("upgrade")),
        "{}",
        seen.raw_head
    );
    // `h2c` next to another protocol: only the other one is asked for.
    c.send(b"GET /c HTTP/1.1\r\nHost: t\r\nConnection: upgrade\r\nUpgrade: h2c, websocket\r\n\r\n");
    assert_eq!(c.response(false).status, 200);
    let seen = &backend.received()[2];
    assert_eq!(
        seen.header("upgrade"),
        Some("websocket"),
        "{}",
        seen.raw_head
    );
    assert_eq!(lbd_tunnels(&server), 0);
}

/// A 101 to a request that did not ask to upgrade is a bad response: 502.
#[test]
fn unasked_101_is_502() {
    let backend = TestBackend::start(|_| {
        Reply::Raw(
            b"HTTP/1.1 101 Switching Protocols\r\nConnection: upgrade\r\nUpgrade: websocket\r\n\r\n"
                .to_vec(),
        )
    });
    let server = lbd_for(&[backend.addr], Duration::from_secs(3600));
    let mut c = Client::connect(server.local_addr());
    assert_eq!(c.get("/").status, 502);
    // `Connection: upgrade` without `Upgrade` asks for nothing either.
    let mut c = Client::connect(server.local_addr());
    c.send(b"GET / HTTP/1.1\r\nHost: t\r\nConnection: upgrade\r\n\r\n");
    assert_eq!(c.response(false).status, 502);
    assert_eq!(lbd_tunnels(&server), 0);
}

/// CONNECT is refused with 405 and `Allow`; no backend is asked.
#[test]
fn connect_is_405() {
    let backend = TestBackend::named("never");
    let server = lbd_for(&[backend.addr], Duration::from_secs(3600));
    let mut c = Client::connect(server.local_addr());
    c.send(b"CONNECT backend.example:443 HTTP/1.1\r\nHost: backend.example:443\r\n\r\n");
    let r = c.response(false);
    assert_eq!(r.status, 405);
    assert!(
        r.header("allow").is_some_and(|a| a.contains("GET")),
        "{}",
        r.raw_head
    );
    assert_eq!(backend.request_count(), 0);
}

/// A backend that declines an upgrade answers an ordinary response; the client
/// connection stays HTTP and carries the next request. A WebSocket client sees the
/// refusal as an HTTP error.
#[test]
fn refused_upgrade_stays_http() {
    let backend = TestBackend::start(|req| {
        if req.header("upgrade").is_some() {
            Reply::Full {
                status: 426,
                headers: vec![("Upgrade".into(), "other/1".into())],
                body: b"not here".to_vec(),
            }
        } else {
            Reply::text("next")
        }
    });
    let server = lbd_for(&[backend.addr], Duration::from_secs(3600));
    let mut c = Client::connect(server.local_addr());
    c.send(
        b"GET /ws HTTP/1.1\r\nHost: t\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\
          Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n",
    );
    let r = c.response(false);
    assert_eq!((r.status, r.text().as_str()), (426, "not here"));
    assert_eq!(c.get("/").text(), "next");
    assert_eq!(c.get("/").text(), "next");
    let stream = TcpStream::connect(server.local_addr()).unwrap();
    stream.set_read_timeout(Some(IO_TIMEOUT)).unwrap();
    match tungstenite::client("ws://t/ws", stream) {
        Err(tungstenite::HandshakeError::Failure(WsError::Http(resp))) => {
            assert_eq!(resp.status(), 426)
        }
        Err(e) => panic!("unexpected handshake error {e}"),
        Ok(_) => panic!("the refused upgrade succeeded"),
    }
    assert_eq!(lbd_tunnels(&server), 0);
}

/// An upgrade request with a body: the body goes out whole before the switch.
#[test]
fn upgrade_request_body_is_relayed_before_the_switch() {
    let backend = TestBackend::start(|req| {
        assert_eq!(req.body, b"hello body");
        Reply::Custom(Box::new(|s: &mut TcpStream| {
            s.write_all(
                b"HTTP/1.1 101 Switching Protocols\r\nConnection: Upgrade\r\nUpgrade: echo\r\n\r\n",
            )
            .unwrap();
            // A line echo until EOF, then the FIN back.
            let mut buf = [0u8; 1024];
            loop {
                match s.read(&mut buf) {
                    Ok(0) | Err(_) => break,
                    Ok(n) => s.write_all(&buf[..n]).unwrap(),
                }
            }
        }))
    });
    let server = lbd_for(&[backend.addr], Duration::from_secs(3600));
    let mut c = Client::connect(server.local_addr());
    c.send(
        b"POST /up HTTP/1.1\r\nHost: t\r\nConnection: upgrade\r\nUpgrade: echo\r\n\
          Content-Length: 10\r\n\r\nhello body",
    );
    let (status, head) = read_switch_head(&mut c.reader);
    assert_eq!(status, 101);
    assert!(head.contains("\r\nUpgrade: echo\r\n"), "{head}");
    c.send(b"raw bytes\n");
    let mut line = String::new();
    c.reader.read_line(&mut line).unwrap();
    assert_eq!(line, "raw bytes\n");
    c.shutdown_write();
    assert!(c.is_closed_by_peer());
    assert!(wait_until(Duration::from_secs(10), || lbd_tunnels(&server) == 0));
}

/// Bytes a client sends right behind its upgrade request (before the 101 came back)
/// wait in lbd and are the first tunnel bytes the backend reads after its 101.
#[test]
fn client_bytes_behind_the_upgrade_request_follow_the_101() {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    let (tx, rx) = mpsc::channel();
    thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(mut s) = stream else { continue };
            s.set_read_timeout(Some(IO_TIMEOUT)).unwrap();
            // Byte by byte up to the end of the head, so nothing after it is taken.
            let mut head = Vec::new();
            let mut b = [0u8; 1];
            while !head.ends_with(b"\r\n\r\n") {
                match s.read(&mut b) {
                    Ok(1) => head.push(b[0]),
                    _ => break,
                }
            }
            if !head.ends_with(b"\r\n\r\n") {
                continue; // a health probe
            }
            // Nothing but the head before the switch.
            s.set_read_timeout(Some(Duration::from_millis(200)))
                .unwrap();
            let before = s.read(&mut b).is_ok();
            s.set_read_timeout(Some(IO_TIMEOUT)).unwrap();
            s.write_all(
                b"HTTP/1.1 101 Switching Protocols\r\nConnection: upgrade\r\nUpgrade: x\r\n\r\n",
            )
            .unwrap();
            let mut early = [0u8; 5];
            s.read_exact(&mut early).unwrap();
            s.write_all(&early).unwrap();
            tx.send(before).unwrap();
            return;
        }
    });
    let server = lbd_for(&[addr], Duration::from_secs(3600));
    let mut c = Client::connect(server.local_addr());
    c.send(b"GET / HTTP/1.1\r\nHost: t\r\nConnection: upgrade\r\nUpgrade: x\r\n\r\nearly");
    assert_eq!(read_switch_head(&mut c.reader).0, 101);
    let mut echoed = [0u8; 5];
    c.reader.read_exact(&mut echoed).unwrap();
    assert_eq!(&echoed, b"early");
    assert!(
        !rx.recv_timeout(IO_TIMEOUT).unwrap(),
        "bytes reached the backend before its 101"
    );
}

/// `lbd_tunnels` counts open tunnels (back to 0 when they end) and
/// `lbd_tunnels_total{backend}` every tunnel opened.
#[test]
fn tunnel_metrics() {
    let backend = WsBackend::echo();
    let run = start_file(&toml(&[(0, backend.addr)], ""));
    let admin = run.server.admin_addr().unwrap();
    let total = "lbd_tunnels_total{backend=\"b0\",pool=\"default\"}";
    assert_eq!(metric(admin, "lbd_tunnels"), Some(0.0));
    assert_eq!(metric(admin, total), Some(0.0));
    let open: Vec<_> = (0..3)
        .map(|_| ws_connect(run.server.local_addr()).0)
        .collect();
    assert!(wait_until(Duration::from_secs(5), || metric(
        admin,
        "lbd_tunnels"
    ) == Some(3.0)));
    assert_eq!(metric(admin, total), Some(3.0));
    // The 101s count as answered requests as they happen, with the time to the 101 as
    // their duration: tunnels that live past the histogram's 1 s bucket stay in it.
    let code_101 = "lbd_requests_total{backend=\"b0\",pool=\"default\",code=\"101\"}";
    assert_eq!(metric(admin, code_101), Some(3.0));
    let open_for = Instant::now();
    while open_for.elapsed() < Duration::from_millis(1100) {
        thread::sleep(Duration::from_millis(50));
    }
    for mut ws in open {
        ws.close(None).unwrap();
        while ws.read().is_ok() {}
    }
    assert!(
        wait_until(Duration::from_secs(10), || metric(admin, "lbd_tunnels")
            == Some(0.0)),
        "the gauge did not come back to 0"
    );
    assert_eq!(metric(admin, total), Some(3.0));
    assert_eq!(metric(admin, code_101), Some(3.0));
    let within_1s = "lbd_request_duration_seconds_bucket{backend=\"b0\",pool=\"default\",le=\"1\"}";
    assert_eq!(metric(admin, within_1s), Some(3.0));
}

/// One access-log line per tunnel, written when it ends: status 101, the bytes each way
/// (those that came with the 101 included), the duration.
#[test]
fn access_log_line_at_the_tunnel_end() {
    const DOWN: usize = 3000;
    const UP: usize = 1000;
    let backend = TestBackend::start(|_| {
        Reply::Custom(Box::new(|s: &mut TcpStream| {
            // The first tunnel bytes leave in the same write as the 101.
            let mut out = b"HTTP/1.1 101 Switching Protocols\r\nConnection: upgrade\r\nUpgrade: websocket\r\n\r\n".to_vec();
            out.extend(std::iter::repeat_n(b'd', DOWN));
            s.write_all(&out).unwrap();
            let mut got = 0;
            let mut buf = [0u8; 4096];
            loop {
                match s.read(&mut buf) {
                    Ok(0) | Err(_) => break,
                    Ok(n) => got += n,
                }
            }
            assert_eq!(got, UP);
            let _ = s.shutdown(Shutdown::Write);
        }))
    });
    let dir = TempDir::new();
    let path = dir.write(
        "lbd.toml",
        &format!(
            "[server]\nlisten = \"127.0.0.1:0\"\nworkers = 1\n[log]\naccess = true\n\
             [[backend]]\naddress = \"{}\"\nname = \"a\"\n",
            backend.addr
        ),
    );
    let mut child = Reaped(
        Command::new(env!("CARGO_BIN_EXE_lbd"))
            .arg(&path)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap(),
    );
    let stderr = BufReader::new(child.0.stderr.take().unwrap());
    let mut addr = None;
    for line in stderr.lines().map_while(Result::ok) {
        if let Some(rest) = line.split("listening addr=").nth(1) {
            addr = rest
                .split_whitespace()
                .next()
                .map(|s| s.parse::<SocketAddr>().unwrap());
            break;
        }
    }
    let addr = addr.expect("lbd starts");
    let mut stdout = BufReader::new(child.0.stdout.take().unwrap());
    let mut c = Client::connect(addr);
    c.send(
        b"GET /ws?room=1 HTTP/1.1\r\nHost: t\r\nUser-Agent: ws-agent\r\nConnection: Upgrade\r\n\
          Upgrade: websocket\r\n\r\n",
    );
    assert_eq!(read_switch_head(&mut c.reader).0, 101);
    let mut down = vec![0u8; DOWN];
    c.reader.read_exact(&mut down).unwrap();
    assert!(down.iter().all(|&b| b == b'd'));
    c.send(&[b'u'; UP]);
    c.shutdown_write();
    assert!(c.is_closed_by_peer());
    let mut line = String::new();
    stdout.read_line(&mut line).unwrap();
    assert!(line.starts_with("127.0.0.1 - - ["), "{line}");
    assert!(
        line.contains(&format!(
            "] \"GET /ws?room=1 HTTP/1.1\" 101 {DOWN} \"-\" \"ws-agent\" upstream={}",
            backend.addr
        )) && line.contains(" upstream_status=101 duration=")
            && line.contains(&format!(" tunnel_up={UP} tunnel_down={DOWN} "))
            && line.trim_end().ends_with("retries=0 reason=ok"),
        "{line}"
    );
}

/// A child process, killed and reaped on drop (also when an assertion fails).
struct Reaped(std::process::Child);

impl Drop for Reaped {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}
