//! The WebSocket peers of the tunnel comparison (`bash benches/compare.sh --tunnel`): the
//! same server behind every proxy, and the client that drives it. tungstenite, blocking,
//! a thread per connection: simple, and cheap next to the proxies it measures.
//!
//! ```text
//! ws_peer server ADDR
//!     A WebSocket server. The first text message of each connection chooses its role:
//!     "up": a sink, binary messages are read and counted until the text "done", which
//!     is answered "got BYTES"; "down SIZE": a source, binary messages of SIZE bytes until
//!     the client goes away.
//! ws_peer client ADDR CONNS SECONDS SIZE up|down
//!     CONNS WebSockets to ws://ADDR/ws for SECONDS each: "up" sends SIZE-byte binary
//!     messages, then "done", and counts what the server says it got; "down" counts what
//!     arrives. Prints one JSON line: bytes, seconds, MiB/s, connections, errors.
//! ```
//!
//! Built by compare.py with `cargo build --release --bench ws_peer` (a bench target with
//! `harness = false`, so tungstenite stays a dev-dependency).

use std::net::{TcpListener, TcpStream};
use std::process::ExitCode;
use std::sync::{Arc, Barrier};
use std::thread;
use std::time::{Duration, Instant};

use tungstenite::protocol::WebSocketConfig;
use tungstenite::{Message, WebSocket};

fn config() -> WebSocketConfig {
    WebSocketConfig::default()
        .max_message_size(Some(64 << 20))
        .max_frame_size(Some(64 << 20))
}

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    match args.as_slice() {
        ["server", addr] => server(addr),
        ["client", addr, conns, seconds, size, dir @ ("up" | "down")] => {
            match (conns.parse(), seconds.parse(), size.parse()) {
                (Ok(conns), Ok(seconds), Ok(size)) => {
                    client(addr, conns, Duration::from_secs_f64(seconds), size, dir)
                }
                _ => usage(),
            }
        }
        // `cargo bench` passes `--bench`; this target only runs when started by hand.
        _ if args.iter().any(|a| a.starts_with("--")) => {
            usage();
            ExitCode::SUCCESS
        }
        _ => usage(),
    }
}

fn usage() -> ExitCode {
    eprintln!("usage: ws_peer server ADDR | ws_peer client ADDR CONNS SECONDS SIZE up|down");
    ExitCode::from(2)
}

fn server(addr: &str) -> ExitCode {
    let listener = match TcpListener::bind(addr) {
        Ok(l) => l,
        Err(e) => {
            eprintln!("ws_peer: bind {addr}: {e}");
            return ExitCode::FAILURE;
        }
    };
    eprintln!("ws_peer: listening on {addr}");
    for stream in listener.incoming().flatten() {
        thread::spawn(move || {
            let _ = stream.set_nodelay(true);
            // Health probes and plain requests fail the handshake: nothing to do.
            if let Ok(ws) = tungstenite::accept_with_config(stream, Some(config())) {
                serve(ws);
            }
        });
    }
    ExitCode::SUCCESS
}

fn serve(mut ws: WebSocket<TcpStream>) {
    let Ok(Message::Text(role)) = ws.read() else {
        return;
    };
    let role = role.as_str();
    if role == "up" {
        let mut got = 0u64;
        while let Ok(m) = ws.read() {
            match m {
                Message::Binary(b) => got += b.len() as u64,
                Message::Text(t) if t.as_str() == "done" => {
                    let _ = ws.send(Message::text(format!("got {got}")));
                    return;
                }
                _ => {}
            }
        }
    } else if let Some(size) = role.strip_prefix("down ").and_then(|s| s.parse().ok()) {
        let message = Message::binary(vec![0x5a_u8; size]);
        while ws.send(message.clone()).is_ok() {}
    }
}

/// What one client connection moved.
struct Moved {
    bytes: u64,
    seconds: f64,
}

fn client(addr: &str, conns: usize, duration: Duration, size: usize, dir: &str) -> ExitCode {
    let start = Arc::new(Barrier::new(conns));
    let threads: Vec<_> = (0..conns)
        .map(|_| {
            let (addr, dir, start) = (addr.to_string(), dir.to_string(), start.clone());
            thread::spawn(move || run_one(&addr, &dir, size, duration, &start))
        })
        .collect();
    let (mut bytes, mut seconds, mut errors) = (0u64, 0f64, 0usize);
    for t in threads {
        match t.join() {
            Ok(Ok(m)) => {
                bytes += m.bytes;
                seconds = seconds.max(m.seconds);
            }
            Ok(Err(e)) => {
                eprintln!("ws_peer: {e}");
                errors += 1;
            }
            Err(_) => errors += 1,
        }
    }
    let mib_s = if seconds > 0.0 {
        bytes as f64 / (1 << 20) as f64 / seconds
    } else {
        0.0
    };
    println!(
        "{{\"bytes\": {bytes}, \"seconds\": {seconds:.3}, \"mib_s\": {mib_s:.1}, \
         \"connections\": {conns}, \"errors\": {errors}}}"
    );
    if errors == 0 {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
}

/// One connection: handshake, wait for the others, then move bytes for `duration`.
/// Every connection passes the barrier, failed or not, so none waits forever.
fn run_one(
    addr: &str,
    dir: &str,
    size: usize,
    duration: Duration,
    start: &Barrier,
) -> Result<Moved, String> {
    let opened = open(addr);
    start.wait();
    let mut ws = opened?;
    let fail = |e: tungstenite::Error| e.to_string();
    let began = Instant::now();
    let deadline = began + duration;
    if dir == "up" {
        ws.send(Message::text("up")).map_err(fail)?;
        let message = Message::binary(vec![0xa5_u8; size]);
        while Instant::now() < deadline {
            ws.send(message.clone()).map_err(fail)?;
        }
        ws.send(Message::text("done")).map_err(fail)?;
        loop {
            if let Message::Text(t) = ws.read().map_err(fail)? {
                let got = t.as_str().strip_prefix("got ").and_then(|n| n.parse().ok());
                let bytes = got.ok_or_else(|| format!("unexpected answer {t}"))?;
                return Ok(Moved {
                    bytes,
                    seconds: began.elapsed().as_secs_f64(),
                });
            }
        }
    }
    ws.send(Message::text(format!("down {size}")))
        .map_err(fail)?;
    let mut bytes = 0u64;
    while Instant::now() < deadline {
        if let Message::Binary(b) = ws.read().map_err(fail)? {
            bytes += b.len() as u64;
        }
    }
    Ok(Moved {
        bytes,
        seconds: began.elapsed().as_secs_f64(),
    })
}

fn open(addr: &str) -> Result<WebSocket<TcpStream>, String> {
    let stream = TcpStream::connect(addr).map_err(|e| format!("connect {addr}: {e}"))?;
    let _ = stream.set_nodelay(true);
    let _ = stream.set_read_timeout(Some(Duration::from_secs(30)));
    let url = format!("ws://{addr}/ws");
    tungstenite::client::client_with_config(url, stream, Some(config()))
        .map(|(ws, _)| ws)
        .map_err(|e| format!("handshake via {addr}: {e}"))
}
