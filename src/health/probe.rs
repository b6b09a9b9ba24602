//! One health probe of one backend on a non-blocking socket: a TCP connect, optionally
//! followed by `GET path` and a look at the status line. Many run at once on the health
//! thread's poll, so a hung backend delays only its own verdict.

use std::io;
use std::net::SocketAddr;
use std::time::Instant;

use mio::net::TcpStream;

use crate::net::{self, ConnectStatus, Io};

/// Most response bytes a probe reads looking for the status line.
const MAX_STATUS_LINE: usize = 1024;

/// Where a probe is.
#[derive(Debug)]
enum Stage {
    /// Waiting for the connect to complete.
    Connecting,
    /// Writing the request; this many bytes are out.
    Sending(usize),
    /// Reading until the status line is complete.
    Reading,
}

/// An in-flight probe.
#[derive(Debug)]
pub struct Probe {
    /// The socket.
    pub stream: TcpStream,
    stage: Stage,
    /// What is sent once connected: a PROXY header for a `send_proxy` backend, then the
    /// HTTP check's request; empty for a plain TCP check.
    request: Vec<u8>,
    /// An HTTP check: the status line decides; otherwise connecting (and sending the
    /// PROXY header) is the whole check.
    http: bool,
    response: Vec<u8>,
    /// When the probe counts as failed.
    pub deadline: Instant,
}

/// What a probe step concluded.
#[derive(Debug, PartialEq, Eq)]
pub enum Verdict {
    /// Not done yet: wait for an event or the deadline.
    Pending,
    /// The backend passed.
    Healthy,
    /// The backend failed, and why.
    Unhealthy(String),
}

impl Probe {
    /// Starts a probe: a connect, and for `path` an HTTP GET.
    pub fn start(
        addr: SocketAddr,
        path: Option<&str>,
        preface: Option<&[u8]>,
        deadline: Instant,
    ) -> io::Result<Probe> {
        let stream = TcpStream::connect(addr)?;
        let mut request = preface.unwrap_or_default().to_vec();
        if let Some(p) = path {
            request.extend_from_slice(
                format!("GET {p} HTTP/1.1\r\nHost: {addr}\r\nUser-Agent: lbd-health\r\nConnection: close\r\n\r\n")
                    .as_bytes(),
            );
        }
        Ok(Probe {
            stream,
            stage: Stage::Connecting,
            request,
            http: path.is_some(),
            response: Vec::new(),
            deadline,
        })
    }

    /// Advances after a readiness event (or at start); edge-triggered, so each stage
    /// works until `WouldBlock`.
    pub fn advance(&mut self) -> Verdict {
        loop {
            match self.stage {
                Stage::Connecting => {
                    match net::connect_status(&self.stream) {
                        ConnectStatus::Connected => {}
                        ConnectStatus::Pending => return Verdict::Pending,
                        ConnectStatus::Failed(e) => {
                            return Verdict::Unhealthy(format!("connect: {e}"))
                        }
                    }
                    self.stage = Stage::Sending(0);
                }
                Stage::Sending(sent) => {
                    if sent == self.request.len() {
                        if !self.http {
                            return Verdict::Healthy;
                        }
                        self.stage = Stage::Reading;
                        continue;
                    }
                    match net::write(&mut self.stream, &self.request[sent..]) {
                        Io::Progress(n) => self.stage = Stage::Sending(sent + n),
                        Io::WouldBlock => return Verdict::Pending,
                        Io::Closed => return Verdict::Unhealthy("closed while sending".into()),
                        Io::Failed(e) => return Verdict::Unhealthy(format!("send: {e}")),
                    }
                }
                Stage::Reading => {
                    if let Some(verdict) = judge_status_line(&self.response) {
                        return verdict;
                    }
                    if self.response.len() >= MAX_STATUS_LINE {
                        return Verdict::Unhealthy("no status line".into());
                    }
                    let mut buf = [0u8; 512];
                    match net::read(&mut self.stream, &mut buf) {
                        Io::Progress(n) => self.response.extend_from_slice(&buf[..n]),
                        Io::WouldBlock => return Verdict::Pending,
                        Io::Closed => {
                            return judge_status_line(&self.response).unwrap_or_else(|| {
                                Verdict::Unhealthy("closed before a status line".into())
                            })
                        }
                        Io::Failed(e) => return Verdict::Unhealthy(format!("read: {e}")),
                    }
                }
            }
        }
    }
}

/// `HTTP/1.x NNN ...`: 2xx and 3xx pass. `None` while the line is incomplete.
fn judge_status_line(bytes: &[u8]) -> Option<Verdict> {
    let end = bytes.iter().position(|&b| b == b'\n')?;
    let line = &bytes[..end];
    let code = match line {
        [b'H', b'T', b'T', b'P', b'/', b'1', b'.', _, b' ', a, b, c, ..]
            if [a, b, c].iter().all(|d| d.is_ascii_digit()) =>
        {
            u16::from(a - b'0') * 100 + u16::from(b - b'0') * 10 + u16::from(c - b'0')
        }
        _ => return Some(Verdict::Unhealthy("malformed status line".into())),
    };
    Some(if (200..400).contains(&code) {
        Verdict::Healthy
    } else {
        Verdict::Unhealthy(format!("status {code}"))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn status_lines() {
        assert_eq!(
            judge_status_line(b"HTTP/1.1 200 OK\r\n"),
            Some(Verdict::Healthy)
        );
        assert_eq!(
            judge_status_line(b"HTTP/1.0 302 Found\r\n"),
            Some(Verdict::Healthy)
        );
        assert_eq!(
            judge_status_line(b"HTTP/1.1 500 Oops\r\n"),
            Some(Verdict::Unhealthy("status 500".into()))
        );
        assert_eq!(judge_status_line(b"HTTP/1.1 20"), None);
        assert!(matches!(
            judge_status_line(b"SSH-2.0\r\n"),
            Some(Verdict::Unhealthy(_))
        ));
    }
}
