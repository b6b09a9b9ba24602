//! Test helpers: scripted backends (blocking std::net, a thread per connection), a raw
//! HTTP client with deadlines, and `wait_until` instead of sleeps.

#![allow(dead_code)]

pub mod peers;

/// The DNS server of the resolver's unit tests (std and simple-dns only), shared rather
/// than copied.
#[cfg(feature = "dns")]
#[path = "../../src/dns/testserver.rs"]
pub mod dns_server;

use std::collections::HashMap;
use std::io::{self, BufRead, BufReader, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

use lbd::config::RawConfig;
use lbd::Server;

/// How long any single client read may block before the test fails.
pub const IO_TIMEOUT: Duration = Duration::from_secs(20);

/// Polls `condition` until it holds or `within` passes; returns whether it held.
pub fn wait_until(within: Duration, mut condition: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + within;
    loop {
        if condition() {
            return true;
        }
        if Instant::now() >= deadline {
            return false;
        }
        thread::sleep(Duration::from_millis(5));
    }
}

/// A request as a test backend received it.
#[derive(Debug, Clone, Default)]
pub struct Req {
    pub method: String,
    pub target: String,
    pub version: String,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
    /// Raw head bytes as received.
    pub raw_head: String,
}

impl Req {
    /// All values of a header (case-insensitive name).
    pub fn header_all(&self, name: &str) -> Vec<&str> {
        self.headers
            .iter()
            .filter(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
            .collect()
    }

    /// The first value of a header.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.header_all(name).first().copied()
    }
}

/// What a scripted backend does with a request.
pub enum Reply {
    /// A complete response with Content-Length.
    Full {
        status: u16,
        headers: Vec<(String, String)>,
        body: Vec<u8>,
    },
    /// These exact bytes, then keep the connection.
    Raw(Vec<u8>),
    /// These exact bytes, then close.
    RawClose(Vec<u8>),
    /// Close without answering.
    Close,
    /// Do something custom with the socket; then close.
    Custom(Box<dyn FnOnce(&mut TcpStream) + Send>),
}

impl Reply {
    /// 200 with a text body.
    pub fn text(body: &str) -> Reply {
        Reply::Full {
            status: 200,
            headers: vec![],
            body: body.as_bytes().to_vec(),
        }
    }
}

type Handler = dyn Fn(&Req) -> Reply + Send + Sync;

/// A scripted HTTP/1.1 backend on 127.0.0.1 with a free port.
pub struct TestBackend {
    pub addr: SocketAddr,
    /// Connections accepted.
    pub connections: Arc<AtomicUsize>,
    /// Requests fully received.
    pub requests: Arc<AtomicUsize>,
    /// Every request received, in order.
    pub received: Arc<Mutex<Vec<Req>>>,
    stop: Arc<AtomicBool>,
    /// Open connections (clones, removed when their thread ends), so `kill` can cut them.
    open: Arc<Mutex<HashMap<usize, TcpStream>>>,
}

impl TestBackend {
    pub fn start(handler: impl Fn(&Req) -> Reply + Send + Sync + 'static) -> TestBackend {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        Self::serve(listener, Arc::new(handler))
    }

    /// Starts on a given address (to bring a killed backend back on its port).
    pub fn start_on(
        addr: SocketAddr,
        handler: impl Fn(&Req) -> Reply + Send + Sync + 'static,
    ) -> TestBackend {
        let listener = TcpListener::bind(addr).unwrap();
        Self::serve(listener, Arc::new(handler))
    }

    /// Starts on a listener the test bound itself (to hold one port on several
    /// addresses before serving any of them).
    pub fn start_listener(
        listener: TcpListener,
        handler: impl Fn(&Req) -> Reply + Send + Sync + 'static,
    ) -> TestBackend {
        Self::serve(listener, Arc::new(handler))
    }

    /// A backend answering `name` to everything.
    pub fn named(name: &'static str) -> TestBackend {
        Self::start(move |_| Reply::text(name))
    }

    fn serve(listener: TcpListener, handler: Arc<Handler>) -> TestBackend {
        let addr = listener.local_addr().unwrap();
        let connections = Arc::new(AtomicUsize::new(0));
        let requests = Arc::new(AtomicUsize::new(0));
        let received = Arc::new(Mutex::new(Vec::new()));
        let stop = Arc::new(AtomicBool::new(false));
        let open = Arc::new(Mutex::new(HashMap::new()));
        let b = TestBackend {
            addr,
            connections: connections.clone(),
            requests: requests.clone(),
            received: received.clone(),
            stop: stop.clone(),
            open: open.clone(),
        };
        thread::spawn(move || {
            for stream in listener.incoming() {
                if stop.load(Ordering::SeqCst) {
                    break;
                }
                let Ok(stream) = stream else { continue };
                let id = connections.fetch_add(1, Ordering::SeqCst);
                if let Ok(clone) = stream.try_clone() {
                    open.lock().unwrap().insert(id, clone);
                }
                let (handler, requests, received, open) = (
                    handler.clone(),
                    requests.clone(),
                    received.clone(),
                    open.clone(),
                );
                thread::spawn(move || {
                    let _ = serve_conn(stream, &*handler, &requests, &received);
                    // Dropping the clone too is what actually closes the socket.
                    open.lock().unwrap().remove(&id);
                });
            }
        });
        b
    }

    /// Stops accepting (the listener closes; open connections are left to their threads).
    pub fn stop(&self) {
        self.stop.store(true, Ordering::SeqCst);
        let _ = TcpStream::connect(self.addr);
    }

    /// Dies: stops listening and cuts every open connection.
    pub fn kill(&self) {
        self.stop();
        for (_, s) in self.open.lock().unwrap().drain() {
            let _ = s.shutdown(Shutdown::Both);
        }
        // The port is closed once a connect is refused.
        assert!(wait_until(Duration::from_secs(10), || TcpStream::connect(
            self.addr
        )
        .is_err()));
    }

    pub fn received(&self) -> Vec<Req> {
        self.received.lock().unwrap().clone()
    }

    pub fn request_count(&self) -> usize {
        self.requests.load(Ordering::SeqCst)
    }

    pub fn connection_count(&self) -> usize {
        self.connections.load(Ordering::SeqCst)
    }
}

impl Drop for TestBackend {
    fn drop(&mut self) {
        self.stop();
    }
}

fn serve_conn(
    stream: TcpStream,
    handler: &Handler,
    requests: &AtomicUsize,
    received: &Mutex<Vec<Req>>,
) -> io::Result<()> {
    let mut reader = BufReader::new(stream.try_clone()?);
    let mut stream = stream;
    loop {
        let Some(mut req) = read_head(&mut reader)? else {
            return Ok(());
        };
        if req
            .header("expect")
            .is_some_and(|v| v.eq_ignore_ascii_case("100-continue"))
        {
            stream.write_all(b"HTTP/1.1 100 Continue\r\n\r\n")?;
        }
        req.body = read_body(&mut reader, &req.headers, false)?;
        requests.fetch_add(1, Ordering::SeqCst);
        received.lock().unwrap().push(req.clone());
        let close = req
            .header("connection")
            .is_some_and(|v| v.eq_ignore_ascii_case("close"));
        match handler(&req) {
            Reply::Full {
                status,
                headers,
                body,
            } => {
                let mut out = format!("HTTP/1.1 {status} X\r\n");
                for (n, v) in &headers {
                    out.push_str(&format!("{n}: {v}\r\n"));
                }
                if !headers.iter().any(|(n, _)| {
                    n.eq_ignore_ascii_case("content-length")
                        || n.eq_ignore_ascii_case("transfer-encoding")
                }) {
                    out.push_str(&format!("Content-Length: {}\r\n", body.len()));
                }
                out.push_str("\r\n");
                let mut bytes = out.into_bytes();
                if req.method != "HEAD" {
                    bytes.extend_from_slice(&body);
                }
                stream.write_all(&bytes)?;
            }
            Reply::Raw(bytes) => stream.write_all(&bytes)?,
            Reply::RawClose(bytes) => {
                stream.write_all(&bytes)?;
                return Ok(());
            }
            Reply::Close => return Ok(()),
            Reply::Custom(f) => {
                f(&mut stream);
                return Ok(());
            }
        }
        if close {
            return Ok(());
        }
    }
}

/// Reads one line into `line` (cleared first), replacing bytes that are not UTF-8 (a
/// header value may carry obs-text); returns the bytes read.
fn read_line_lossy(reader: &mut impl BufRead, line: &mut String) -> io::Result<usize> {
    let mut bytes = Vec::new();
    let n = reader.read_until(b'\n', &mut bytes)?;
    line.clear();
    line.push_str(&String::from_utf8_lossy(&bytes));
    Ok(n)
}

/// Reads a request head; `None` at a clean EOF.
fn read_head(reader: &mut impl BufRead) -> io::Result<Option<Req>> {
    let mut raw = String::new();
    let mut line = String::new();
    if read_line_lossy(reader, &mut line)? == 0 {
        return Ok(None);
    }
    raw.push_str(&line);
    let mut parts = line.trim_end().splitn(3, ' ');
    let mut req = Req {
        method: parts.next().unwrap_or("").to_string(),
        target: parts.next().unwrap_or("").to_string(),
        version: parts.next().unwrap_or("").to_string(),
        ..Req::default()
    };
    loop {
        if read_line_lossy(reader, &mut line)? == 0 {
            return Ok(None);
        }
        raw.push_str(&line);
        let l = line.trim_end_matches(['\r', '\n']);
        if l.is_empty() {
            break;
        }
        if let Some((n, v)) = l.split_once(':') {
            req.headers.push((n.to_string(), v.trim().to_string()));
        }
    }
    req.raw_head = raw;
    Ok(Some(req))
}

/// Reads a body framed by `headers` (CL or chunked; close-delimited when `until_close`).
pub fn read_body(
    reader: &mut impl BufRead,
    headers: &[(String, String)],
    until_close: bool,
) -> io::Result<Vec<u8>> {
    let get = |name: &str| {
        headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.clone())
    };
    let mut body = Vec::new();
    if get("transfer-encoding").is_some_and(|v| v.eq_ignore_ascii_case("chunked")) {
        loop {
            let mut line = String::new();
            reader.read_line(&mut line)?;
            let size = usize::from_str_radix(line.trim_end().split(';').next().unwrap_or(""), 16)
                .map_err(|_| {
                io::Error::new(
                    io::ErrorKind::InvalidData,
                    format!("bad chunk line {line:?}"),
                )
            })?;
            if size == 0 {
                loop {
                    line.clear();
                    reader.read_line(&mut line)?;
                    if line == "\r\n" || line.is_empty() {
                        return Ok(body);
                    }
                }
            }
            let start = body.len();
            body.resize(start + size, 0);
            reader.read_exact(&mut body[start..])?;
            let mut crlf = [0u8; 2];
            reader.read_exact(&mut crlf)?;
            if &crlf != b"\r\n" {
                return Err(io::Error::new(
                    io::ErrorKind::InvalidData,
                    "chunk without CRLF",
                ));
            }
        }
    } else if let Some(n) = get("content-length") {
        let n: usize = n
            .parse()
            .map_err(|_| io::Error::new(io::ErrorKind::InvalidData, "bad length"))?;
        body.resize(n, 0);
        reader.read_exact(&mut body)?;
    } else if until_close {
        reader.read_to_end(&mut body)?;
    }
    Ok(body)
}

/// A response as a client saw it.
#[derive(Debug, Clone, Default)]
pub struct Resp {
    pub status: u16,
    pub version: String,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
    pub raw_head: String,
}

impl Resp {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    pub fn has_header(&self, name: &str) -> bool {
        self.header(name).is_some()
    }

    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }
}

/// A raw HTTP client on one connection.
pub struct Client {
    pub reader: BufReader<TcpStream>,
    pub stream: TcpStream,
}

impl Client {
    pub fn connect(addr: SocketAddr) -> Client {
        let stream = TcpStream::connect(addr).unwrap();
        stream.set_read_timeout(Some(IO_TIMEOUT)).unwrap();
        stream.set_nodelay(true).unwrap();
        Client {
            reader: BufReader::new(stream.try_clone().unwrap()),
            stream,
        }
    }

    pub fn send(&mut self, bytes: &[u8]) {
        self.stream.write_all(bytes).unwrap();
    }

    /// Sends a GET and reads the response.
    pub fn get(&mut self, path: &str) -> Resp {
        self.send(format!("GET {path} HTTP/1.1\r\nHost: test\r\n\r\n").as_bytes());
        self.response(false)
    }

    /// Sends a GET and reports whether a 2xx arrived (false on any failure).
    pub fn send_get_checked(&mut self) -> bool {
        if self
            .stream
            .write_all(b"GET / HTTP/1.1\r\nHost: t\r\n\r\n")
            .is_err()
        {
            return false;
        }
        matches!(self.try_response(false), Ok(r) if (200..300).contains(&r.status))
    }

    /// Reads one response; `head_request` means no body follows.
    pub fn response(&mut self, head_request: bool) -> Resp {
        self.try_response(head_request).expect("a response")
    }

    pub fn try_response(&mut self, head_request: bool) -> io::Result<Resp> {
        read_response(&mut self.reader, head_request)
    }

    /// True when the server closed the connection (EOF within the timeout).
    pub fn is_closed_by_peer(&mut self) -> bool {
        let mut buf = [0u8; 1];
        matches!(self.reader.read(&mut buf), Ok(0) | Err(_))
    }

    pub fn shutdown_write(&self) {
        let _ = self.stream.shutdown(Shutdown::Write);
    }
}

/// Reads one response (interim ones skipped); `head_request` means no body follows.
pub fn read_response(reader: &mut impl BufRead, head_request: bool) -> io::Result<Resp> {
    loop {
        let mut resp = Resp::default();
        let mut line = String::new();
        if reader.read_line(&mut line)? == 0 {
            return Err(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                "closed before a response",
            ));
        }
        resp.raw_head.push_str(&line);
        let mut parts = line.trim_end().splitn(3, ' ');
        resp.version = parts.next().unwrap_or("").to_string();
        resp.status = parts.next().unwrap_or("0").parse().unwrap_or(0);
        loop {
            line.clear();
            if reader.read_line(&mut line)? == 0 {
                return Err(io::Error::new(
                    io::ErrorKind::UnexpectedEof,
                    "closed mid-head",
                ));
            }
            resp.raw_head.push_str(&line);
            let l = line.trim_end_matches(['\r', '\n']);
            if l.is_empty() {
                break;
            }
            let (n, v) = l.split_once(':').expect("header line");
            resp.headers.push((n.to_string(), v.trim().to_string()));
        }
        if (100..200).contains(&resp.status) {
            continue;
        }
        if !head_request && resp.status != 204 && resp.status != 304 {
            resp.body = read_body(reader, &resp.headers, true)?;
        }
        return Ok(resp);
    }
}

/// Sends `raw` on a fresh connection and returns everything until the server closes
/// (or `IO_TIMEOUT`).
pub fn exchange_raw(addr: SocketAddr, raw: &[u8]) -> Vec<u8> {
    let mut c = Client::connect(addr);
    c.send(raw);
    let mut out = Vec::new();
    let _ = c.reader.read_to_end(&mut out);
    out
}

/// A config for lbd on 127.0.0.1:0 in front of `backends`, with test-friendly knobs.
pub fn config(backends: &[SocketAddr]) -> RawConfig {
    let mut c = RawConfig::new("127.0.0.1:0".parse().unwrap(), backends);
    c.server.workers = 2;
    c.timeouts.shutdown = Duration::from_secs(5);
    c
}

/// Validates `config` and starts lbd with it.
pub fn start(config: RawConfig) -> Server {
    let _ = env_logger::builder().is_test(true).try_init();
    Server::start(config.validate().expect("valid config")).expect("lbd starts")
}

/// An address with nothing listening (bound then released).
pub fn dead_addr() -> SocketAddr {
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    l.local_addr().unwrap()
}

/// FNV-1a, to compare large bodies without keeping two copies.
pub fn checksum(bytes: &[u8], mut h: u64) -> u64 {
    for &b in bytes {
        h = (h ^ u64::from(b)).wrapping_mul(0x100_0000_01b3);
    }
    h
}

pub const CHECKSUM_SEED: u64 = 0xcbf2_9ce4_8422_2325;

/// Deterministic test payload byte at offset `i`.
pub fn payload_byte(i: usize) -> u8 {
    (i.wrapping_mul(2_654_435_761) >> 13) as u8
}
