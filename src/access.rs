//! The access log: one nginx `combined` line per exchange, plus lbd's own fields
//! (`upstream=`, `upstream_status=`, `duration=`, `retries=`, `reason=`). Workers format a
//! line and send it over a channel; one writer thread owns stdout, so a slow terminal or
//! pipe never blocks a worker (when the channel is full, lines are dropped).

use std::fmt::Write as _;
use std::io::Write;
use std::net::{IpAddr, SocketAddr};
use std::thread::JoinHandle;
use std::time::{SystemTime, UNIX_EPOCH};

use crossbeam_channel::{Receiver, Sender};

/// Lines buffered between workers and the writer before lines are dropped.
pub const QUEUE: usize = 65_536;
/// Most bytes the writer gathers into one write.
const BATCH_BYTES: usize = 256 * 1024;

/// The parts of a request head the log line quotes (copied only when logging is on).
#[derive(Debug, Default, Clone)]
pub struct RequestInfo {
    /// The request line as received.
    pub line: String,
    /// `Referer`, or empty.
    pub referer: String,
    /// `User-Agent`, or empty.
    pub user_agent: String,
}

impl RequestInfo {
    /// Extracts the logged fields from a raw head (validated, or the part of it received
    /// before a refusal), skipping the empty lines a request line may follow.
    pub fn from_head(head: &[u8]) -> RequestInfo {
        let blank = head
            .iter()
            .take_while(|&&b| b == b'\r' || b == b'\n')
            .count();
        let mut lines = head[blank..]
            .split(|&b| b == b'\n')
            .map(|l| l.strip_suffix(b"\r").unwrap_or(l));
        let line = lines.next().map(printable).unwrap_or_default();
        let mut info = RequestInfo {
            line,
            ..RequestInfo::default()
        };
        for l in lines {
            let Some(colon) = l.iter().position(|&b| b == b':') else {
                continue;
            };
            let (name, value) = (&l[..colon], crate::http::trim(&l[colon + 1..]));
            if name.eq_ignore_ascii_case(b"referer") {
                info.referer = printable(value);
            } else if name.eq_ignore_ascii_case(b"user-agent") {
                info.user_agent = printable(value);
            }
        }
        info
    }
}

/// Bytes as log-safe text: quotes, backslashes and non-printable bytes escaped `\xHH`.
fn printable(bytes: &[u8]) -> String {
    let mut out = String::with_capacity(bytes.len());
    for &b in bytes.iter().take(2048) {
        match b {
            b'"' | b'\\' => {
                let _ = write!(out, "\\x{b:02X}");
            }
            0x20..=0x7e => out.push(b as char),
            _ => {
                let _ = write!(out, "\\x{b:02X}");
            }
        }
    }
    out
}

/// One exchange's log record.
#[derive(Debug)]
pub struct Entry<'a> {
    /// The client.
    pub client: IpAddr,
    /// The request's logged fields.
    pub request: &'a RequestInfo,
    /// Status sent to the client (499: client closed first).
    pub status: u16,
    /// Response body bytes sent.
    pub body_bytes: u64,
    /// The backend that answered, if any.
    pub upstream: Option<SocketAddr>,
    /// The upstream's status, if a response head arrived.
    pub upstream_status: Option<u16>,
    /// Seconds from request head to the end.
    pub duration: f64,
    /// The TLS version (`TLSv1.3`), or `-` for a plain connection.
    pub tls: &'a str,
    /// The server name the TLS client sent (SNI), if any.
    pub sni: Option<&'a str>,
    /// For a tunnel (spec §10): bytes passed to the upstream and to the client.
    pub tunnel: Option<(u64, u64)>,
    /// Attempts retried.
    pub retries: u32,
    /// Why lbd answered or closed: `ok`, `client_closed`, `bad_request`, `timeout`, ...
    pub reason: &'static str,
}

/// Formats `entry` at `now` (seconds since the Unix epoch) as one line.
pub fn format(entry: &Entry<'_>, now: SystemTime) -> String {
    let mut line = String::with_capacity(256);
    let r = entry.request;
    let _ = write!(
        line,
        "{} - - [{}] \"{}\" {} {} \"{}\" \"{}\"",
        entry.client,
        clf_time(now),
        r.line,
        entry.status,
        entry.body_bytes,
        or_dash(&r.referer),
        or_dash(&r.user_agent)
    );
    let _ = match entry.upstream {
        Some(a) => write!(line, " upstream={a}"),
        None => write!(line, " upstream=-"),
    };
    let _ = match entry.upstream_status {
        Some(s) => write!(line, " upstream_status={s}"),
        None => write!(line, " upstream_status=-"),
    };
    let _ = write!(line, " duration={:.3} tls={}", entry.duration, entry.tls);
    if entry.tls != "-" {
        let _ = write!(line, " sni={}", entry.sni.unwrap_or("-"));
    }
    if let Some((up, down)) = entry.tunnel {
        let _ = write!(line, " tunnel_up={up} tunnel_down={down}");
    }
    let _ = write!(line, " retries={} reason={}", entry.retries, entry.reason);
    line
}

fn or_dash(s: &str) -> &str {
    if s.is_empty() {
        "-"
    } else {
        s
    }
}

/// `21/Nov/2026:08:00:00 +0000` (UTC).
pub fn clf_time(now: SystemTime) -> String {
    const MONTHS: [&str; 12] = [
        "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
    ];
    let secs = now.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs());
    let (days, rem) = (secs / 86_400, secs % 86_400);
    let (y, m, d) = civil_from_days(days as i64);
    format!(
        "{d:02}/{}/{y:04}:{:02}:{:02}:{:02} +0000",
        MONTHS[(m - 1) as usize],
        rem / 3600,
        rem % 3600 / 60,
        rem % 60
    )
}

/// Days since 1970-01-01 to (year, month, day), after Howard Hinnant's algorithm.
fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    (yoe + era * 400 + i64::from(m <= 2), m, d)
}

/// The channel workers send lines into; [`spawn_writer`] takes the receiving end.
pub fn channel() -> (Sender<String>, Receiver<String>) {
    crossbeam_channel::bounded(QUEUE)
}

/// Starts the writer thread on the receiving end of [`channel`]; it ends once every
/// sender is gone.
pub fn spawn_writer(rx: Receiver<String>) -> std::io::Result<JoinHandle<()>> {
    std::thread::Builder::new()
        .name("lbd-access-log".into())
        .spawn(move || write_lines(rx))
}

/// Writes lines in batches: whatever is queued goes out in one write when the queue runs
/// empty, so lines appear promptly without a syscall each. Stdout is locked only while a
/// batch is written, never while waiting.
fn write_lines(rx: Receiver<String>) {
    let mut batch = Vec::with_capacity(64 * 1024);
    while let Ok(line) = rx.recv() {
        batch.extend_from_slice(line.as_bytes());
        batch.push(b'\n');
        while let Ok(line) = rx.try_recv() {
            batch.extend_from_slice(line.as_bytes());
            batch.push(b'\n');
            if batch.len() >= BATCH_BYTES {
                break;
            }
        }
        let mut out = std::io::stdout().lock();
        let _ = out.write_all(&batch).and_then(|()| out.flush());
        batch.clear();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn dates() {
        let t = |s: u64| clf_time(UNIX_EPOCH + Duration::from_secs(s));
        assert_eq!(t(0), "01/Jan/1970:00:00:00 +0000");
        assert_eq!(t(951_782_400), "29/Feb/2000:00:00:00 +0000");
        assert_eq!(t(1_795_219_200 + 3_723), "21/Nov/2026:01:02:03 +0000");
    }

    #[test]
    fn combined_line() {
        let info = RequestInfo::from_head(b"GET /a?b HTTP/1.1\r\nHost: x\r\nUser-Agent: curl/8 \"q\"\r\nReferer: http://r/\r\n\r\n");
        assert_eq!(info.line, "GET /a?b HTTP/1.1");
        let after_empty_lines = RequestInfo::from_head(b"\r\n\r\nGET / HTTP/1.1\r\n\r\n");
        assert_eq!(after_empty_lines.line, "GET / HTTP/1.1");
        let line = format(
            &Entry {
                client: "10.1.2.3".parse().unwrap(),
                request: &info,
                status: 200,
                body_bytes: 13,
                upstream: Some("127.0.0.1:8081".parse().unwrap()),
                upstream_status: Some(200),
                duration: 0.0123,
                tls: "-",
                sni: None,
                tunnel: None,
                retries: 1,
                reason: "ok",
            },
            UNIX_EPOCH,
        );
        assert_eq!(
            line,
            "10.1.2.3 - - [01/Jan/1970:00:00:00 +0000] \"GET /a?b HTTP/1.1\" 200 13 \"http://r/\" \
             \"curl/8 \\x22q\\x22\" upstream=127.0.0.1:8081 upstream_status=200 duration=0.012 tls=- retries=1 reason=ok"
        );
    }
}
