//! The demo's built-in backends: tiny blocking HTTP/1.1 servers (a thread per
//! connection, keep-alive) that answer every request with one line naming their port.
//! They run on their own threads, never on a worker.

use std::io::{self, BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::thread;

/// Starts a demo backend on `addr` answering `Hello from backend server on :PORT`.
pub fn spawn_backend(addr: SocketAddr) -> io::Result<SocketAddr> {
    let listener = TcpListener::bind(addr)?;
    let local = listener.local_addr()?;
    let body = format!("Hello from backend server on :{}\n", local.port());
    thread::Builder::new()
        .name(format!("demo-{}", local.port()))
        .spawn(move || {
            for stream in listener.incoming().flatten() {
                let body = body.clone();
                let _ = thread::Builder::new().spawn(move || serve(stream, &body));
            }
        })?;
    Ok(local)
}

/// Answers requests on one connection until the client closes.
fn serve(stream: TcpStream, body: &str) -> io::Result<()> {
    stream.set_nodelay(true)?;
    let mut reader = BufReader::new(stream.try_clone()?);
    let mut writer = stream;
    loop {
        let mut content_length = 0usize;
        let mut close = false;
        let mut line = String::new();
        if reader.read_line(&mut line)? == 0 {
            return Ok(());
        }
        close |= line.ends_with("HTTP/1.0\r\n");
        loop {
            line.clear();
            if reader.read_line(&mut line)? == 0 {
                return Ok(());
            }
            if line == "\r\n" || line == "\n" {
                break;
            }
            let lower = line.to_ascii_lowercase();
            if let Some(v) = lower.strip_prefix("content-length:") {
                content_length = v.trim().parse().unwrap_or(0);
            }
            close |= lower.starts_with("connection:") && lower.contains("close");
        }
        io::copy(
            &mut (&mut reader).take(content_length as u64),
            &mut io::sink(),
        )?;
        // One write per response: split writes meet Nagle and delayed ACKs (40 ms stalls).
        let response = format!(
            "HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: {}\r\n\r\n{body}",
            body.len()
        );
        writer.write_all(response.as_bytes())?;
        if close {
            return Ok(());
        }
    }
}
