//! Incremental checks of a head as its bytes arrive, so a head that can no longer become
//! valid is refused at its first invalid byte: a TLS ClientHello on the plain port, binary
//! junk, CR-only line ends, or junk after a complete request get their 400 (a response
//! its 502) at once, not when a timeout expires.
//!
//! A scan is a small state machine over the bytes received so far; it resumes where it
//! stopped, so a head trickled in is checked once, not once per read. It also finds where
//! the head ends. httparse still parses the complete head ([`super::request::parse`],
//! [`super::response::parse`]); a scan only refuses what httparse would refuse too, or
//! what lbd's stricter rules (docs/http.md) refuse: bare LF and more than
//! [`MAX_EMPTY_LINES`] empty lines before a request, request-target bytes outside RFC 3986,
//! anything but a status line at the start of a response.

use super::request::RequestError;
use super::response::{self, ResponseContext, ResponseError, ResponseHead};
use crate::buffer::Buffer;
use crate::grammar::{classes, TARGET, TEXT, TOKEN};

/// Empty lines (CRLF) skipped before a request line; one more is a 400. RFC 9112 §2.2 asks
/// a server to ignore at least one (clients once sent a CRLF after a POST body); a few
/// cover any client, and a stream of them is not a request.
pub const MAX_EMPTY_LINES: u8 = 4;

/// Where a scan is in the head grammar (RFC 9112 §2.1, §3, §4, §5).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    /// Request: at the start of a line before the request line; that many empty lines seen.
    Blank(u8),
    /// Request: a CR at the start of such a line; expecting LF.
    BlankCr(u8),
    /// Request: in the method token.
    Method,
    /// Request: after the SP following the method; the target's first byte is due.
    TargetStart,
    /// Request: in the request target.
    Target,
    /// Request and response: this many bytes of `HTTP/1.` matched.
    Version(u8),
    /// Request and response: the minor version digit is due.
    Minor,
    /// Request: after the version; the line end is due.
    LineEnd,
    /// Response: after the version; one SP is due.
    VersionSp,
    /// Response: this many digits of the status code read.
    Code(u8),
    /// Response: after the status code; SP and a reason, or the line end, is due.
    AfterCode,
    /// Response: in the reason phrase.
    Reason,
    /// A CR ended a line; expecting LF, then a field line or the final empty line.
    Cr,
    /// At the start of a field line or of the final empty line.
    FieldStart,
    /// In a field name.
    Name,
    /// In a field value (after the colon).
    Value,
    /// A CR at the start of a line after the start line: the final CRLF, expecting LF.
    EndCr,
    /// The head is complete; the scan stopped at its end.
    Done,
}

/// Which head a scan checks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    /// A request head: CRLF line ends only (a bare LF is refused).
    Request,
    /// A response head: CRLF or a bare LF (lbd re-serialises it with CRLF anyway).
    Response,
}

/// Why a scan stopped: a reason for the log, mapped to the caller's error type.
type Refusal = &'static str;

/// Progress of a scan: the state at `pos`, the first byte not yet checked.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Scanner {
    /// Bytes of the head checked so far: all valid, or the last one refused (the scan
    /// returns the same refusal again if called again).
    pos: usize,
    /// The grammar state after those bytes.
    state: State,
}

/// The incremental check of a request head (the request line after at most
/// [`MAX_EMPTY_LINES`] empty lines, then field lines, CRLF line ends only).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RequestScan(Scanner);

impl Default for RequestScan {
    fn default() -> Self {
        RequestScan(Scanner {
            pos: 0,
            state: State::Blank(0),
        })
    }
}

impl RequestScan {
    /// Checks the bytes of `head` not checked yet (`head` starts where the head starts and
    /// holds at least what the last call saw). `Ok(Some(len))`: the head is complete and
    /// `len` bytes long, empty lines before it and the final CRLF included; `Ok(None)`: so
    /// far every byte can still begin a valid head; `Err`: the first invalid byte was found.
    pub fn check(&mut self, head: &[u8]) -> Result<Option<usize>, RequestError> {
        self.0
            .run(head, Kind::Request)
            .map_err(RequestError::Malformed)
    }

    /// True while nothing but empty lines has arrived (no request has begun).
    pub fn is_blank(&self) -> bool {
        matches!(self.0.state, State::Blank(_) | State::BlankCr(_))
    }
}

/// The incremental check of a response head (a status line, then field lines; a bare LF
/// is accepted as a line end).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ResponseScan(Scanner);

impl Default for ResponseScan {
    fn default() -> Self {
        ResponseScan(Scanner {
            pos: 0,
            state: State::Version(0),
        })
    }
}

impl ResponseScan {
    /// As [`RequestScan::check`], for a response head.
    pub fn check(&mut self, head: &[u8]) -> Result<Option<usize>, ResponseError> {
        self.0
            .run(head, Kind::Response)
            .map_err(|_| ResponseError::Malformed)
    }

    /// Checks the new bytes of a response head and parses the head once it is whole
    /// (appending lbd's head for the client to `out`); `Ok(None)`: not whole yet.
    ///
    /// A head that arrived whole, nearly every head, is parsed at once instead of scanned
    /// and then parsed: for bytes that begin with `HTTP/1.` httparse refuses everything
    /// the scan refuses and finds the same end (the property tests here and the
    /// `response_head` fuzz target check it). Otherwise the scan runs as for a request.
    pub fn parse(
        &mut self,
        data: &[u8],
        ctx: &ResponseContext,
        out: &mut Buffer,
    ) -> Result<Option<ResponseHead>, ResponseError> {
        if self.0.pos == 0 && data.starts_with(VERSION) {
            if let Some(head) = response::parse_whole(data, ctx, out)? {
                return Ok(Some(head));
            }
        }
        match self.check(data)? {
            Some(end) => response::parse(&data[..end], ctx, out).map(Some),
            None => Ok(None),
        }
    }
}

/// `HTTP/1.`: the part of HTTP-version before the minor digit that lbd speaks.
const VERSION: &[u8; 7] = b"HTTP/1.";

impl Scanner {
    fn run(&mut self, buf: &[u8], kind: Kind) -> Result<Option<usize>, Refusal> {
        let mut pos = self.pos;
        let mut state = self.state;
        let result = loop {
            if let State::Done = state {
                break Ok(Some(pos));
            }
            // The version arrives whole nearly always: matched in one comparison.
            if let State::Version(0) = state {
                if buf.get(pos..pos + VERSION.len()) == Some(&VERSION[..]) {
                    pos += VERSION.len();
                    state = State::Minor;
                    continue;
                }
            }
            // A field line that arrived whole (name, colon, value, CRLF) is taken in one
            // pass; anything else goes byte by byte below from the line's start.
            if let State::FieldStart = state {
                let name_end = skip(buf, pos, TOKEN);
                if name_end > pos && buf.get(name_end) == Some(&b':') {
                    let value_end = skip(buf, name_end + 1, TEXT);
                    if buf.get(value_end..value_end + 2) == Some(&b"\r\n"[..]) {
                        pos = value_end + 2;
                        continue;
                    }
                }
            }
            // Long runs (target, names, values, reasons) are skipped a class at a time.
            let class = match state {
                State::Target => TARGET,
                State::Method | State::Name => TOKEN,
                State::Value | State::Reason => TEXT,
                _ => 0,
            };
            if class != 0 {
                pos = skip(buf, pos, class);
            }
            let Some(&b) = buf.get(pos) else {
                break Ok(None);
            };
            match next(state, b, kind) {
                Ok(s) => state = s,
                Err(why) => break Err(why),
            }
            pos += 1;
        };
        self.pos = pos;
        self.state = state;
        result
    }
}

/// The first position from `pos` on whose byte is not in `class` (or the end of `buf`):
/// one table load and test per byte, and field values eight bytes at a time.
fn skip(buf: &[u8], mut pos: usize, class: u8) -> usize {
    if class == TEXT {
        while let Some(word) = buf.get(pos..pos + 8) {
            let word = u64::from_le_bytes([
                word[0], word[1], word[2], word[3], word[4], word[5], word[6], word[7],
            ]);
            if may_hold_control(word) {
                break;
            }
            pos += 8;
        }
    }
    match buf.get(pos..) {
        Some(rest) => {
            pos + rest
                .iter()
                .take_while(|&&b| classes(b) & class != 0)
                .count()
        }
        None => pos,
    }
}

/// False only if none of the eight bytes is a control byte (below SP, or DEL): all are
/// [`TEXT`]. True for a word with HTAB too (text, left to the byte loop).
fn may_hold_control(word: u64) -> bool {
    const ONES: u64 = 0x0101_0101_0101_0101;
    const HIGHS: u64 = 0x8080_8080_8080_8080;
    // A byte below 0x20 (Bit Twiddling Hacks' `hasless(x, 0x20)`), or a byte equal to
    // 0x7f (`haszero(x ^ 0x7f…)`): the borrows may flag bytes above one found, never
    // when there is none.
    let below_space = word.wrapping_sub(ONES * 0x20) & !word & HIGHS;
    let del = word ^ (ONES * 0x7f);
    let is_del = del.wrapping_sub(ONES) & !del & HIGHS;
    below_space | is_del != 0
}

/// The state after byte `b` in `state`, or why `b` cannot be there.
fn next(state: State, b: u8, kind: Kind) -> Result<State, Refusal> {
    use State::*;
    // A bare LF ends a line of a response head; in a request head it is refused.
    let response = matches!(kind, Kind::Response);
    Ok(match state {
        Blank(n) => match b {
            b'\r' => BlankCr(n),
            b'\n' => return Err("bare LF before the request line"),
            _ if is_tchar(b) => Method,
            _ => return Err("not a request line"),
        },
        BlankCr(n) => match b {
            b'\n' if n < MAX_EMPTY_LINES => Blank(n + 1),
            b'\n' => return Err("too many empty lines before the request line"),
            _ => return Err("bare CR"),
        },
        Method => match b {
            b' ' => TargetStart,
            _ if is_tchar(b) => Method,
            _ => return Err("invalid method"),
        },
        TargetStart | Target => match b {
            b' ' if matches!(state, Target) => Version(0),
            b'#' => return Err("fragment in the request target"),
            _ if is_target_byte(b) => Target,
            _ => return Err("invalid byte in the request target"),
        },
        Version(i) if b == VERSION[usize::from(i)] => match usize::from(i) + 1 {
            n if n == VERSION.len() => Minor,
            _ => Version(i + 1),
        },
        Version(_) => return Err("unsupported HTTP version"),
        Minor => match b {
            b'0'..=b'9' if response => VersionSp,
            b'0'..=b'9' => LineEnd,
            _ => return Err("unsupported HTTP version"),
        },
        LineEnd => match b {
            b'\r' => Cr,
            b'\n' => return Err("bare LF"),
            _ => return Err("invalid request line"),
        },
        VersionSp => match b {
            b' ' => Code(0),
            _ => return Err("invalid status line"),
        },
        Code(n) => match (n, b) {
            (0, b'1'..=b'5') => Code(1),
            (1, b'0'..=b'9') => Code(2),
            (2, b'0'..=b'9') => AfterCode,
            _ => return Err("invalid status code"),
        },
        AfterCode => match b {
            b' ' => Reason,
            b'\r' => Cr,
            b'\n' => FieldStart,
            _ => return Err("invalid status line"),
        },
        Reason => match b {
            b'\r' => Cr,
            b'\n' => FieldStart,
            _ if is_text_byte(b) => Reason,
            _ => return Err("invalid byte in the reason phrase"),
        },
        Cr | EndCr => match b {
            b'\n' if matches!(state, EndCr) => Done,
            b'\n' => FieldStart,
            _ => return Err("bare CR"),
        },
        FieldStart => match b {
            b'\r' => EndCr,
            b'\n' if response => Done,
            b'\n' => return Err("bare LF"),
            b' ' | b'\t' => return Err("whitespace at the start of a field line"),
            _ if is_tchar(b) => Name,
            _ => return Err("invalid field name"),
        },
        Name => match b {
            b':' => Value,
            _ if is_tchar(b) => Name,
            _ => return Err("invalid field name"),
        },
        Value => match b {
            b'\r' => Cr,
            b'\n' if response => FieldStart,
            b'\n' => return Err("bare LF"),
            _ if is_text_byte(b) => Value,
            _ => return Err("invalid byte in a field value"),
        },
        Done => Done,
    })
}

/// `tchar` (RFC 9110 §5.6.2): method and field-name bytes.
fn is_tchar(b: u8) -> bool {
    classes(b) & TOKEN != 0
}

/// Request-target bytes ([`crate::grammar::TARGET`]).
fn is_target_byte(b: u8) -> bool {
    classes(b) & TARGET != 0
}

/// Field-value and reason-phrase bytes ([`crate::grammar::TEXT`]).
fn is_text_byte(b: u8) -> bool {
    classes(b) & TEXT != 0
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A scan's answer to `input` fed in the pieces ending at `splits` (then the rest),
    /// resumed after each piece as a session does.
    fn fed<E>(
        mut check: impl FnMut(&[u8]) -> Result<Option<usize>, E>,
        input: &[u8],
        splits: &[usize],
    ) -> Result<Option<usize>, E> {
        for &end in splits.iter().chain([input.len()].iter()) {
            let got = check(&input[..end])?;
            if got.is_some() {
                return Ok(got);
            }
        }
        Ok(None)
    }

    fn request(input: &[u8], splits: &[usize]) -> Result<Option<usize>, RequestError> {
        let mut scan = RequestScan::default();
        fed(|b| scan.check(b), input, splits)
    }

    fn response(input: &[u8], splits: &[usize]) -> Result<Option<usize>, ResponseError> {
        let mut scan = ResponseScan::default();
        fed(|b| scan.check(b), input, splits)
    }

    /// A scan fed a whole input in the pieces ending at the split points.
    type Fed<E> = fn(&[u8], &[usize]) -> Result<Option<usize>, E>;

    /// The same answer in one piece, in two pieces at every split point, and byte by byte.
    fn at_every_split<E: std::fmt::Debug + PartialEq>(
        scan: Fed<E>,
        input: &[u8],
    ) -> Result<Option<usize>, E> {
        let whole = scan(input, &[]);
        for split in 0..=input.len() {
            assert_eq!(scan(input, &[split]), whole, "{input:?} split at {split}");
        }
        let every: Vec<usize> = (0..input.len()).collect();
        assert_eq!(scan(input, &every), whole, "{input:?} byte by byte");
        whole
    }

    /// Refused at exactly the first byte of `bad`: everything before it is a valid prefix.
    fn refused_at<E: std::fmt::Debug + PartialEq>(
        scan: Fed<E>,
        (before, bad, after): (&[u8], &[u8], &[u8]),
    ) {
        let input = [before, bad, after].concat();
        assert!(at_every_split(scan, &input).is_err(), "{input:?} accepted");
        assert_eq!(scan(before, &[]).ok(), Some(None), "{input:?}: the prefix");
        let through = &input[..=before.len()];
        assert!(
            scan(through, &[]).is_err(),
            "{input:?}: not refused at once"
        );
    }

    #[test]
    fn requests_accepted_at_every_split() {
        let table: &[(&[u8], Option<usize>)] = &[
            (b"GET / HTTP/1.1\r\nHost: a\r\n\r\n", Some(27)),
            (b"GET / HTTP/1.1\r\nHost: a\r\n\r\nBODY\n\r", Some(27)),
            (b"\r\n\r\nGET / HTTP/1.0\r\n\r\n", Some(22)),
            (b"\r\n\r\n\r\n\r\nGET / HTTP/1.0\r\n\r\n", Some(26)),
            (b"OPTIONS * HTTP/1.1\r\nHost: a\r\n\r\n", Some(31)),
            (b"GET http://b.example:80/x?y HTTP/1.1\r\n\r\n", Some(40)),
            (b"GET /a%zz?q=[x]@!$&'()*+,;=~ HTTP/1.1\r\n\r\n", Some(41)),
            (b"GET / HTTP/1.9\r\nHost: a\r\n\r\n", Some(27)),
            (b"get / HTTP/1.1\r\nX:\r\nY: \t caf\xe9 \r\n\r\n", Some(34)),
            (b"", None),
            (b"\r\n\r", None),
            (b"GET / HTTP/1.1\r\nHost: a\r\n", None),
            (b"GET / HTTP/1.1\r\nHost: a\r\n\r", None),
        ];
        for &(input, want) in table {
            assert_eq!(at_every_split(request, input), Ok(want), "{input:?}");
        }
    }

    #[test]
    fn requests_refused_at_the_first_bad_byte() {
        let table: &[(&[u8], &[u8], &[u8])] = &[
            // Not a request at all: TLS ClientHello, binary junk, a bare LF or a stray CR.
            (b"", b"\x16\x03\x01\x02\x00\x01", b""),
            (b"", b"\x00\xff", b"GET / HTTP/1.1\r\n\r\n"),
            (b"", b"\n", b"GET / HTTP/1.1\r\n\r\n"),
            (b"\r\n", b"\n", b""),
            (b"", b" ", b"/ HTTP/1.1\r\n\r\n"),
            (b"\r", b"X", b""),
            (b"\r\n\r\n\r\n\r\n\r", b"\n", b"GET / HTTP/1.1\r\n\r\n"),
            // Request line.
            (b"G", b"(", b"T / HTTP/1.1\r\n\r\n"),
            (b"GET ", b" ", b"/ HTTP/1.1\r\n\r\n"),
            (b"GET /a", b"#", b"b HTTP/1.1\r\n\r\n"),
            (b"GET /a", b"\"", b" HTTP/1.1\r\n\r\n"),
            (b"GET /a", b"<", b" HTTP/1.1\r\n\r\n"),
            (b"GET /a", b">", b" HTTP/1.1\r\n\r\n"),
            (b"GET /a", b"\\", b" HTTP/1.1\r\n\r\n"),
            (b"GET /a", b"^", b" HTTP/1.1\r\n\r\n"),
            (b"GET /a", b"`", b" HTTP/1.1\r\n\r\n"),
            (b"GET /a", b"{", b" HTTP/1.1\r\n\r\n"),
            (b"GET /a", b"}", b" HTTP/1.1\r\n\r\n"),
            (b"GET /a", b"|", b" HTTP/1.1\r\n\r\n"),
            (b"GET /a", b"\xc3\xa9", b" HTTP/1.1\r\n\r\n"),
            (b"GET /a", b"\t", b" HTTP/1.1\r\n\r\n"),
            (b"GET /a", b"\x00", b" HTTP/1.1\r\n\r\n"),
            (b"GET /a", b"\x7f", b" HTTP/1.1\r\n\r\n"),
            (b"GET /", b"\r", b"\nHost: a\r\n\r\n"),
            (b"GET / HTTP/", b"2", b".0\r\n\r\n"),
            (b"GET / ", b"h", b"ttp/1.1\r\n\r\n"),
            (b"GET / HTTP/1.1", b" ", b"\r\n\r\n"),
            (b"GET / HTTP/1.1", b"0", b"\r\n\r\n"),
            (b"GET / HTTP/1.1\r", b"H", b"ost: a\r\n\r\n"),
            (b"GET / HTTP/1.1", b"\n", b"Host: a\n\n"),
            // Field lines.
            (b"GET / HTTP/1.1\r\nHost: a", b"\n", b"\r\n"),
            (b"GET / HTTP/1.1\r\nHost: a\r\n", b"\n", b""),
            (b"GET / HTTP/1.1\r\n", b" ", b"Host: a\r\n\r\n"),
            (b"GET / HTTP/1.1\r\nX: a\r\n", b"\t", b"b\r\n\r\n"),
            (b"GET / HTTP/1.1\r\nHost", b" ", b": a\r\n\r\n"),
            (b"GET / HTTP/1.1\r\n", b":", b" a\r\n\r\n"),
            (b"GET / HTTP/1.1\r\nFoo", b"\r", b"\n\r\n"),
            (b"GET / HTTP/1.1\r\nX-", b"\xe9", b": a\r\n\r\n"),
            (b"GET / HTTP/1.1\r\nX: a", b"\x00", b"\r\n\r\n"),
            (b"GET / HTTP/1.1\r\nX: a", b"\x7f", b"\r\n\r\n"),
            (b"GET / HTTP/1.1\r\nX: a\r", b"b", b"\r\n\r\n"),
            (b"GET / HTTP/1.1\r\nX: a\r\n\r", b"X", b""),
        ];
        for &row in table {
            refused_at(request, row);
        }
    }

    #[test]
    fn control_bytes_are_found_in_any_lane() {
        for lane in 0..8 {
            for b in 0u8..=255 {
                let mut word = *b"abcdefgh";
                word[lane] = b;
                let found = may_hold_control(u64::from_le_bytes(word));
                let control = b < 0x20 || b == 0x7f;
                assert!(found || !control, "{b:#x} in lane {lane} missed");
                assert!(!found || control, "{b:#x} in lane {lane} flagged");
            }
        }
    }

    #[test]
    fn blank_until_a_request_begins() {
        let mut scan = RequestScan::default();
        assert_eq!(scan.check(b"\r\n\r"), Ok(None));
        assert!(scan.is_blank());
        assert_eq!(scan.check(b"\r\n\r\nG"), Ok(None));
        assert!(!scan.is_blank());
    }

    #[test]
    fn responses_accepted_at_every_split() {
        let table: &[(&[u8], Option<usize>)] = &[
            (b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok", Some(38)),
            (b"HTTP/1.1 200 OK\nContent-Length: 2\n\nok", Some(35)),
            (b"HTTP/1.1 200 OK\r\nA: b\n\r\n", Some(24)),
            (b"HTTP/1.1 200\r\n\r\n", Some(16)),
            (b"HTTP/1.1 204 \r\n\r\n", Some(17)),
            (b"HTTP/1.0 599 Caf\xe9\tX\r\nX:\r\n\r\n", Some(27)),
            (b"HTTP/1.2 100 Continue\r\n\r\nHTTP/1.1 200", Some(25)),
            (b"HTT", None),
            (b"HTTP/1.1 200 OK\r\n", None),
        ];
        for &(input, want) in table {
            assert_eq!(at_every_split(response, input), Ok(want), "{input:?}");
        }
    }

    #[test]
    fn responses_refused_at_the_first_bad_byte() {
        let table: &[(&[u8], &[u8], &[u8])] = &[
            (b"", b"\r", b"\nHTTP/1.1 200 OK\r\n\r\n"),
            (b"", b"S", b"SH-2.0-OpenSSH_9.6\r\n"),
            (b"", b"h", b"ttp/1.1 200 OK\r\n\r\n"),
            (b"", b"2", b"00 OK\r\n\r\n"),
            (b"HTTP/", b"2", b".0 200 OK\r\n\r\n"),
            (b"HTTP/1.1", b"\r", b"\n\r\n"),
            (b"HTTP/1.1 ", b" ", b"200 OK\r\n\r\n"),
            (b"HTTP/1.1 ", b"0", b"99 Low\r\n\r\n"),
            (b"HTTP/1.1 ", b"6", b"00 High\r\n\r\n"),
            (b"HTTP/1.1 ", b"-", b"200 OK\r\n\r\n"),
            (b"HTTP/1.1 2", b"x", b"0 OK\r\n\r\n"),
            (b"HTTP/1.1 20", b" ", b"OK\r\n\r\n"),
            (b"HTTP/1.1 200", b"0", b" OK\r\n\r\n"),
            (b"HTTP/1.1 200 O", b"\x00", b"K\r\n\r\n"),
            (b"HTTP/1.1 200 OK\r", b"X", b": a\r\n\r\n"),
            (b"HTTP/1.1 200 OK\r\nX: a\r", b"b", b"\r\n\r\n"),
            (b"HTTP/1.1 200 OK\r\nX: a\r\n", b" ", b"b\r\n\r\n"),
            (b"HTTP/1.1 200 OK\r\nContent-Length", b" ", b": 2\r\n\r\n"),
            (b"HTTP/1.1 200 OK\r\nX: a", b"\x00", b"b\r\n\r\n"),
            (b"HTTP/1.1 200 OK\r\nX", b"\n", b"\r\n"),
        ];
        for &row in table {
            refused_at(response, row);
        }
    }
}

/// Properties: a scan gives the same answer whatever the read boundaries, and where it
/// finds the end of a head, httparse finds the same end (or refuses the head).
#[cfg(test)]
mod props {
    use super::*;
    use proptest::prelude::*;

    /// Lines heads are assembled from: valid, borderline and hostile, both directions.
    const LINES: &[&[u8]] = &[
        b"GET / HTTP/1.1",
        b"POST /p?q=1 HTTP/1.0",
        b"OPTIONS * HTTP/1.1",
        b"GET http://h:80/x HTTP/1.2",
        b"GET /a b HTTP/1.1",
        b"GET /#f HTTP/1.1",
        b"HTTP/1.1 200 OK",
        b"HTTP/1.0 404",
        b"HTTP/1.1 600 X",
        b"Host: a",
        b"Content-Length: 5",
        b"X: caf\xe9",
        b"X:",
        b" folded",
        b"Bad Name: x",
        b"\x16\x03\x01",
        b"",
    ];
    const EOLS: &[&[u8]] = &[b"\r\n", b"\r\n", b"\n", b"\r"];

    fn input() -> impl Strategy<Value = Vec<u8>> {
        let assembled = (
            prop::collection::vec((0..LINES.len(), 0..EOLS.len()), 0..8),
            prop::collection::vec((any::<prop::sample::Index>(), any::<u8>()), 0..2),
        )
            .prop_map(|(lines, mutations)| {
                let mut head = Vec::new();
                for (line, eol) in lines {
                    head.extend_from_slice(LINES[line]);
                    head.extend_from_slice(EOLS[eol]);
                }
                head.extend_from_slice(b"\r\n");
                for (at, byte) in mutations {
                    let i = at.index(head.len());
                    head[i] = byte;
                }
                head
            });
        prop_oneof![assembled, prop::collection::vec(any::<u8>(), 0..80)]
    }

    fn request(input: &[u8], splits: &[usize]) -> Result<Option<usize>, RequestError> {
        let mut scan = RequestScan::default();
        for end in splits.iter().copied().chain([input.len()]) {
            if let Some(len) = scan.check(&input[..end])? {
                return Ok(Some(len));
            }
        }
        Ok(None)
    }

    fn response(input: &[u8], splits: &[usize]) -> Result<Option<usize>, ResponseError> {
        let mut scan = ResponseScan::default();
        for end in splits.iter().copied().chain([input.len()]) {
            if let Some(len) = scan.check(&input[..end])? {
                return Ok(Some(len));
            }
        }
        Ok(None)
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(256))]

        #[test]
        fn same_answer_whatever_the_splits(
            input in input(),
            cuts in prop::collection::vec(any::<prop::sample::Index>(), 0..6),
        ) {
            let mut splits: Vec<usize> = cuts.iter().map(|c| c.index(input.len() + 1)).collect();
            splits.sort_unstable();
            let every: Vec<usize> = (0..input.len()).collect();
            let whole = request(&input, &[]);
            prop_assert_eq!(request(&input, &splits), whole);
            prop_assert_eq!(request(&input, &every), whole);
            let whole = response(&input, &[]);
            prop_assert_eq!(response(&input, &splits), whole);
            prop_assert_eq!(response(&input, &every), whole);
        }

        #[test]
        fn httparse_agrees_on_the_end(input in input()) {
            if let Ok(Some(end)) = request(&input, &[]) {
                let mut headers = [httparse::EMPTY_HEADER; 16];
                let got = httparse::Request::new(&mut headers).parse(&input);
                prop_assert!(
                    matches!(got, Ok(httparse::Status::Complete(n)) if n == end)
                        || got.is_err(),
                    "scan {} httparse {:?}", end, got
                );
            }
            if let Ok(Some(end)) = response(&input, &[]) {
                let mut headers = [httparse::EMPTY_HEADER; 16];
                let got = httparse::Response::new(&mut headers).parse(&input);
                prop_assert!(
                    matches!(got, Ok(httparse::Status::Complete(n)) if n == end)
                        || got.is_err(),
                    "scan {} httparse {:?}", end, got
                );
            }
        }
    }
}
