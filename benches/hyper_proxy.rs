//! The async opponent in `benches/compare.py`: a small, idiomatic tokio + hyper 1.x
//! round-robin reverse proxy with a pooled keep-alive upstream client
//! (`hyper_util::client::legacy::Client`).
//!
//! Shaped like lbd so the comparison measures the I/O model, not the topology: one
//! current-thread tokio runtime per thread, each with its own `SO_REUSEPORT` listener and
//! its own connection pool, one shared round-robin cursor. Like lbd it removes hop-by-hop
//! headers in both directions, appends `X-Forwarded-For`, sets `X-Forwarded-Proto`, and
//! answers 502 when the upstream fails.
//!
//! With `--tls CERT KEY` it terminates TLS with tokio-rustls (rustls, ring provider, as
//! lbd: TLS 1.3 and 1.2, ALPN `http/1.1`, rustls's default session cache and tickets),
//! the handshake in the connection's task, and sets `X-Forwarded-Proto: https`.
//!
//! Not a criterion bench: `cargo bench --bench hyper_proxy --no-run` builds it, and
//! `compare.py` runs the binary as `hyper_proxy [--tls CERT KEY] LISTEN THREADS BACKEND...`.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};
use tokio_rustls::rustls;
use tokio_rustls::TlsAcceptor;

use hyper::body::{Bytes, Incoming};
use hyper::header::{HeaderName, HeaderValue, CONNECTION};
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{HeaderMap, Request, Response, StatusCode, Uri};
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::Client;
use hyper_util::rt::{TokioExecutor, TokioIo};
use socket2::{Domain, Protocol, Socket, Type};

/// Hop-by-hop headers (RFC 9110 §7.6.1), removed in both directions.
const HOP_BY_HOP: [&str; 8] = [
    "connection",
    "keep-alive",
    "proxy-connection",
    "proxy-authenticate",
    "proxy-authorization",
    "te",
    "trailer",
    "upgrade",
];

type Body = http_body_util::Either<Incoming, http_body_util::Empty<Bytes>>;

struct Shared {
    backends: Vec<String>,
    cursor: AtomicUsize,
    /// `X-Forwarded-Proto`: `http`, or `https` behind the TLS listener.
    proto: &'static str,
}

fn main() {
    let mut args: Vec<String> = std::env::args().skip(1).collect();
    let mut tls = None;
    if args.len() >= 3 && args[0] == "--tls" {
        tls = Some(tls_acceptor(&args[1], &args[2]));
        args.drain(..3);
    }
    // `cargo bench` passes `--bench`; this target only runs when started by hand.
    if args.len() < 3 || args.iter().any(|a| a.starts_with("--")) {
        eprintln!("usage: hyper_proxy [--tls CERT KEY] LISTEN THREADS BACKEND...");
        return;
    }
    let listen: SocketAddr = args[0].parse().expect("LISTEN is host:port");
    let threads: usize = args[1].parse().expect("THREADS is a number");
    let shared = Arc::new(Shared {
        backends: args[2..].to_vec(),
        cursor: AtomicUsize::new(0),
        proto: if tls.is_some() { "https" } else { "http" },
    });
    let handles: Vec<_> = (0..threads)
        .map(|_| {
            let listener = bind_reuseport(listen);
            let shared = Arc::clone(&shared);
            let tls = tls.clone();
            std::thread::spawn(move || serve(listener, shared, tls))
        })
        .collect();
    let mode = if tls.is_some() { " (TLS)" } else { "" };
    eprintln!("hyper_proxy listening on {listen}{mode} with {threads} thread(s)");
    for h in handles {
        h.join().expect("worker thread");
    }
}

/// A rustls server configuration like lbd's (src/config/tls.rs): ring, TLS 1.3 and 1.2,
/// ALPN `http/1.1`, everything else rustls's default. ring's provider is deprecated for
/// lacking post-quantum key exchange; lbd silences the warning the same way.
#[allow(deprecated)]
fn tls_acceptor(cert: &str, key: &str) -> TlsAcceptor {
    let chain: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(cert)
        .expect("CERT is readable")
        .collect::<Result<_, _>>()
        .expect("CERT is PEM");
    let key = PrivateKeyDer::from_pem_file(key).expect("KEY is a PEM private key");
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut config = rustls::ServerConfig::builder_with_provider(provider)
        .with_protocol_versions(&[&rustls::version::TLS13, &rustls::version::TLS12])
        .expect("protocol versions")
        .with_no_client_auth()
        .with_single_cert(chain, key)
        .expect("KEY matches CERT");
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    TlsAcceptor::from(Arc::new(config))
}

fn bind_reuseport(addr: SocketAddr) -> std::net::TcpListener {
    let socket =
        Socket::new(Domain::for_address(addr), Type::STREAM, Some(Protocol::TCP)).expect("socket");
    socket.set_reuse_address(true).expect("SO_REUSEADDR");
    socket.set_reuse_port(true).expect("SO_REUSEPORT");
    socket.set_nonblocking(true).expect("non-blocking");
    socket.bind(&addr.into()).expect("bind");
    socket.listen(1024).expect("listen");
    socket.into()
}

/// One thread: a current-thread runtime, its listener, its upstream pool.
fn serve(listener: std::net::TcpListener, shared: Arc<Shared>, tls: Option<TlsAcceptor>) {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_io()
        .build()
        .expect("runtime");
    runtime.block_on(async move {
        let listener = tokio::net::TcpListener::from_std(listener).expect("listener");
        let mut connector = HttpConnector::new();
        connector.set_nodelay(true);
        let client: Client<HttpConnector, Incoming> = Client::builder(TokioExecutor::new())
            .pool_max_idle_per_host(512)
            .build(connector);
        loop {
            let Ok((stream, peer)) = listener.accept().await else {
                continue;
            };
            let _ = stream.set_nodelay(true);
            let client = client.clone();
            let shared = Arc::clone(&shared);
            let tls = tls.clone();
            tokio::spawn(async move {
                let service =
                    service_fn(move |req| proxy(req, peer, client.clone(), Arc::clone(&shared)));
                match tls {
                    None => {
                        let _ = http1::Builder::new()
                            .serve_connection(TokioIo::new(stream), service)
                            .await;
                    }
                    Some(acceptor) => {
                        let Ok(stream) = acceptor.accept(stream).await else {
                            return;
                        };
                        let _ = http1::Builder::new()
                            .serve_connection(TokioIo::new(stream), service)
                            .await;
                    }
                }
            });
        }
    });
}

async fn proxy(
    mut req: Request<Incoming>,
    peer: SocketAddr,
    client: Client<HttpConnector, Incoming>,
    shared: Arc<Shared>,
) -> Result<Response<Body>, Infallible> {
    let n = shared.cursor.fetch_add(1, Ordering::Relaxed);
    let backend = &shared.backends[n % shared.backends.len()];
    let path = req.uri().path_and_query().map_or("/", |p| p.as_str());
    let Ok(uri) = format!("http://{backend}{path}").parse::<Uri>() else {
        return Ok(status(StatusCode::BAD_REQUEST));
    };
    *req.uri_mut() = uri;
    let headers = req.headers_mut();
    strip_hop_by_hop(headers);
    let forwarded = match headers.get("x-forwarded-for").map(HeaderValue::to_str) {
        Some(Ok(prior)) => format!("{prior}, {}", peer.ip()),
        _ => peer.ip().to_string(),
    };
    if let Ok(value) = HeaderValue::from_str(&forwarded) {
        headers.insert("x-forwarded-for", value);
    }
    headers.insert("x-forwarded-proto", HeaderValue::from_static(shared.proto));
    match client.request(req).await {
        Ok(resp) => {
            let (mut parts, body) = resp.into_parts();
            strip_hop_by_hop(&mut parts.headers);
            Ok(Response::from_parts(
                parts,
                http_body_util::Either::Left(body),
            ))
        }
        Err(_) => Ok(status(StatusCode::BAD_GATEWAY)),
    }
}

fn strip_hop_by_hop(headers: &mut HeaderMap) {
    let listed: Vec<HeaderName> = headers
        .get_all(CONNECTION)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .filter_map(|name| HeaderName::from_bytes(name.trim().as_bytes()).ok())
        .collect();
    for name in listed {
        headers.remove(name);
    }
    for name in HOP_BY_HOP {
        headers.remove(name);
    }
}

fn status(code: StatusCode) -> Response<Body> {
    let mut resp = Response::new(http_body_util::Either::Right(http_body_util::Empty::new()));
    *resp.status_mut() = code;
    resp
}
