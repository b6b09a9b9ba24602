//! The admin listener (spec §6): its own thread with plain blocking `std::net`, one
//! request per connection. `GET /metrics`, `GET /status`, `GET /`, `POST /reload`,
//! `POST /backends/{name}/drain|enable|disable`. Nothing here touches a worker's loop:
//! it reads atomics and snapshots, and acts through [`Control`].

mod page;
mod status;
mod view;

use std::io::{self, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

use crate::backend::AdminState;
use crate::control::{AdminError, Control};
use view::StatusView;

/// Largest admin request head read.
const MAX_HEAD: usize = 8192;
/// How long one admin client may take to send its request.
const IO_TIMEOUT: Duration = Duration::from_secs(5);

/// A running admin listener.
pub struct Admin {
    addr: SocketAddr,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl Admin {
    /// Binds `addr` and serves on a new thread.
    pub fn start(addr: SocketAddr, control: Arc<Control>) -> io::Result<Admin> {
        let listener = TcpListener::bind(addr)
            .map_err(|e| io::Error::new(e.kind(), format!("admin bind {addr}: {e}")))?;
        let addr = listener.local_addr()?;
        let stop = Arc::new(AtomicBool::new(false));
        let flag = Arc::clone(&stop);
        let thread = std::thread::Builder::new()
            .name("lbd-admin".into())
            .spawn(move || {
                for stream in listener.incoming() {
                    if flag.load(Ordering::Relaxed) {
                        break;
                    }
                    match stream {
                        Ok(stream) => {
                            if let Err(e) = serve(stream, &control) {
                                log::debug!("admin request failed: {e}");
                            }
                        }
                        Err(e) => {
                            log::warn!("admin accept failed: {e}");
                            std::thread::sleep(Duration::from_millis(50));
                        }
                    }
                }
            })?;
        log::info!("admin listening addr={addr}");
        Ok(Admin {
            addr,
            stop,
            thread: Some(thread),
        })
    }

    /// The bound address.
    pub fn local_addr(&self) -> SocketAddr {
        self.addr
    }

    /// Stops the listener thread and waits for it.
    pub fn stop(mut self) {
        self.signal_stop();
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }

    /// Tells the listener thread to stop after the request it is serving, if any.
    pub fn signal_stop(&self) {
        self.stop.store(true, Ordering::Relaxed);
        let _ = TcpStream::connect(self.addr); // wakes the blocking accept
    }
}

/// One admin response.
struct Reply {
    status: u16,
    content_type: &'static str,
    body: String,
    allow: Option<&'static str>,
}

impl Reply {
    fn text(status: u16, body: impl Into<String>) -> Reply {
        Reply {
            status,
            content_type: "text/plain; charset=utf-8",
            body: body.into(),
            allow: None,
        }
    }

    fn method_not_allowed(allow: &'static str) -> Reply {
        Reply {
            allow: Some(allow),
            ..Reply::text(405, "method not allowed\n")
        }
    }
}

fn serve(mut stream: TcpStream, control: &Control) -> io::Result<()> {
    stream.set_read_timeout(Some(IO_TIMEOUT))?;
    stream.set_write_timeout(Some(IO_TIMEOUT))?;
    let mut buf = vec![0u8; MAX_HEAD];
    let mut len = 0;
    let (method, path) = loop {
        let n = stream.read(&mut buf[len..])?;
        if n == 0 {
            return Ok(());
        }
        len += n;
        let mut headers = [httparse::EMPTY_HEADER; 32];
        let mut req = httparse::Request::new(&mut headers);
        match req.parse(&buf[..len]) {
            Ok(httparse::Status::Complete(_)) => {
                break (
                    req.method.unwrap_or("").to_string(),
                    req.path.unwrap_or("").to_string(),
                )
            }
            Ok(httparse::Status::Partial) if len < buf.len() => continue,
            _ => return respond(&mut stream, Reply::text(400, "bad request\n"), false),
        }
    };
    let reply = route(&method, &path, control);
    respond(&mut stream, reply, method == "HEAD")
}

fn route(method: &str, target: &str, control: &Control) -> Reply {
    let (path, query) = target.split_once('?').unwrap_or((target, ""));
    match (method, path) {
        ("GET" | "HEAD", "/metrics") => Reply {
            content_type: "text/plain; version=0.0.4; charset=utf-8",
            ..Reply::text(
                200,
                crate::metrics::render(&control.snapshot(), control.shared()),
            )
        },
        (_, "/metrics") => Reply::method_not_allowed("GET, HEAD"),
        ("GET" | "HEAD", "/status") => Reply {
            content_type: "application/json",
            ..Reply::text(
                200,
                status::json(&StatusView::read(&control.snapshot(), control.shared())),
            )
        },
        (_, "/status") => Reply::method_not_allowed("GET, HEAD"),
        ("GET" | "HEAD", "/") => Reply {
            content_type: "text/html; charset=utf-8",
            ..Reply::text(
                200,
                page::html(
                    &StatusView::read(&control.snapshot(), control.shared()),
                    page::refresh_ms(query),
                ),
            )
        },
        (_, "/") => Reply::method_not_allowed("GET, HEAD"),
        ("POST", "/reload") => match control.reload() {
            Ok(()) => Reply::text(200, "reloaded\n"),
            Err(e) => Reply::text(400, format!("reload failed: {e}\n")),
        },
        (_, "/reload") => Reply::method_not_allowed("POST"),
        (_, p) if p.starts_with("/backends/") => {
            backend_action(method, &p["/backends/".len()..], control)
        }
        _ => Reply::text(404, "not found\n"),
    }
}

/// `POST /backends/{name}/drain|enable|disable`.
fn backend_action(method: &str, rest: &str, control: &Control) -> Reply {
    let Some((name, verb)) = rest.rsplit_once('/') else {
        return Reply::text(404, "not found\n");
    };
    let Some(state) = AdminState::from_verb(verb) else {
        return Reply::text(404, "not found\n");
    };
    let name = percent_decode(name);
    if control.snapshot().backend_index(&name).is_none() {
        return Reply::text(404, format!("no backend named {name:?}\n"));
    }
    if method != "POST" {
        return Reply::method_not_allowed("POST");
    }
    match control.set_admin_state(&name, state) {
        Ok(()) => Reply::text(200, format!("{name} {}\n", state.as_str())),
        Err(AdminError::UnknownBackend) => Reply::text(404, format!("no backend named {name:?}\n")),
    }
}

/// Decodes `%XX` escapes (backend names may contain ':' which clients may escape).
fn percent_decode(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let hex = |b: u8| (b as char).to_digit(16);
        if bytes[i] == b'%' && i + 2 < bytes.len() {
            if let (Some(h), Some(l)) = (hex(bytes[i + 1]), hex(bytes[i + 2])) {
                out.push((h * 16 + l) as u8);
                i += 3;
                continue;
            }
        }
        out.push(bytes[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// Writes `reply`; the answer to a `HEAD` request is its head alone (its
/// `Content-Length` still that of the body a `GET` would get).
fn respond(stream: &mut TcpStream, reply: Reply, head_only: bool) -> io::Result<()> {
    let reason = crate::http::response::default_reason(reply.status);
    let mut head = format!(
        "HTTP/1.1 {} {reason}\r\nContent-Type: {}\r\nContent-Length: {}\r\nCache-Control: no-store\r\nConnection: close\r\n",
        reply.status,
        reply.content_type,
        reply.body.len()
    );
    if let Some(allow) = reply.allow {
        head.push_str(&format!("Allow: {allow}\r\n"));
    }
    head.push_str("\r\n");
    stream.write_all(head.as_bytes())?;
    if !head_only {
        stream.write_all(reply.body.as_bytes())?;
    }
    stream.flush()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decodes_names() {
        assert_eq!(percent_decode("127.0.0.1%3A8081"), "127.0.0.1:8081");
        assert_eq!(percent_decode("b1"), "b1");
        assert_eq!(percent_decode("bad%zz"), "bad%zz");
        assert_eq!(percent_decode("%4"), "%4");
    }
}
