//! Streaming decoder for `Transfer-Encoding: chunked` (RFC 9112 §7.1), strict about
//! framing: 1 to 16 hex digits per size, a size the body limit allows, extensions that
//! follow the RFC's grammar, exact CRLFs, bounded size lines and trailers. Each size line
//! is checked byte by byte as it arrives (a line trickled in is read once, and a size or a
//! byte that cannot be valid is refused at once, not after waiting for data). Chunk
//! extensions and trailers are read and dropped.

use crate::grammar::is_token_byte;

/// Longest chunk-size line (size, extensions, CRLF) accepted.
pub const MAX_SIZE_LINE: usize = 4096;
/// Most trailer bytes accepted after the last chunk.
pub const MAX_TRAILER_BYTES: usize = 16384;
/// Most hex digits in a chunk size (leading zeros included): 16 hold any `u64`.
pub const MAX_SIZE_DIGITS: u8 = 16;

/// A chunked body that cannot be decoded.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ChunkedError {
    /// The framing breaks RFC 9112 §7.1 or one of lbd's bounds on it (request: 400).
    Malformed(&'static str),
    /// A chunk size would take the body past the decoder's limit (request: 413).
    TooLarge,
}

impl std::fmt::Display for ChunkedError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ChunkedError::Malformed(why) => write!(f, "bad chunked framing: {why}"),
            ChunkedError::TooLarge => f.write_str("chunked body over its size limit"),
        }
    }
}

/// Where a chunk-size line is in `chunk-size [ chunk-ext ] CRLF`, with
/// `chunk-ext = *( BWS ";" BWS chunk-ext-name [ BWS "=" BWS chunk-ext-val ] )` and
/// `chunk-ext-val = token / quoted-string` (RFC 9112 §7.1.1, RFC 9110 §5.6).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Part {
    /// In the hex digits.
    Digits,
    /// Whitespace after the size or a value: only `;` may follow.
    BeforeSemi,
    /// After `;` (and whitespace): an extension name is due.
    AfterSemi,
    /// In an extension name.
    Name,
    /// Whitespace after a name: `=` or `;` is due.
    AfterName,
    /// After `=` (and whitespace): a token or a quoted string is due.
    AfterEquals,
    /// In a token value.
    Token,
    /// In a quoted string.
    Quoted,
    /// After a backslash in a quoted string.
    QuotedPair,
    /// After a closing quote: whitespace, `;` or the line end.
    AfterQuoted,
    /// After the CR: the LF is due.
    Cr,
}

/// A chunk-size line checked so far. It stays in the decoder's input until complete, so
/// the next step resumes at byte `len` of it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct SizeLine {
    /// Bytes of the line checked, at most [`MAX_SIZE_LINE`].
    len: usize,
    /// Where those bytes end in the line's grammar.
    part: Part,
    /// Hex digits read, at most [`MAX_SIZE_DIGITS`].
    digits: u8,
    /// Their value (fits: 16 digits at most).
    value: u64,
}

impl SizeLine {
    const START: SizeLine = SizeLine {
        len: 0,
        part: Part::Digits,
        digits: 0,
        value: 0,
    };
}

/// Where the decoder is in the chunked grammar.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    /// In a chunk-size line.
    Size(SizeLine),
    /// Inside chunk data; this many bytes remain.
    Data(u64),
    /// After chunk data: expecting CR (false) or LF (true).
    DataEnd(bool),
    /// After the last chunk: at the start of a trailer line or the final empty line;
    /// `seen` trailer bytes so far; the first `scanned` bytes of the current line are
    /// known to hold no LF (a line trickled in is searched once, not once per read).
    Trailer { seen: usize, scanned: usize },
    /// The final CRLF has been read.
    Done,
}

/// One decoding step's result.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Step {
    /// Payload found in the input given to [`ChunkedDecoder::step`].
    Data {
        /// Offset of the payload in that input.
        start: usize,
        /// Payload bytes.
        len: usize,
    },
    /// All input was framing; more input is needed.
    NeedMore,
    /// The body ended (last chunk, trailers and final CRLF consumed).
    Done,
}

/// Decoder state; feed it input with [`ChunkedDecoder::step`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ChunkedDecoder {
    state: State,
    /// Most payload bytes the body may carry; a size line that would pass it is refused.
    limit: u64,
    /// Payload bytes announced by the size lines so far (never above `limit`).
    announced: u64,
}

impl Default for ChunkedDecoder {
    /// A decoder bounded by [`super::MAX_BODY`] only.
    fn default() -> Self {
        ChunkedDecoder::new(super::MAX_BODY)
    }
}

impl ChunkedDecoder {
    /// A decoder for a body of at most `limit` payload bytes (`limits.body_bytes` for a
    /// request): a chunk size that would pass it is refused at its size line.
    pub fn new(limit: u64) -> ChunkedDecoder {
        ChunkedDecoder {
            state: State::Size(SizeLine::START),
            limit,
            announced: 0,
        }
    }

    /// Consumes framing from `input` until payload (at most `max_data` bytes) is found,
    /// more input is needed, or the body ends. Returns bytes consumed (payload included)
    /// and what was found. Never reads past the body's end; a partial size line is not
    /// consumed (the next call gets it again and resumes where this one stopped).
    pub fn step(&mut self, input: &[u8], max_data: usize) -> Result<(usize, Step), ChunkedError> {
        let mut pos = 0;
        loop {
            let rest = &input[pos..];
            match self.state {
                State::Done => return Ok((pos, Step::Done)),
                State::Data(remaining) => {
                    if rest.is_empty() || max_data == 0 {
                        return Ok((pos, Step::NeedMore));
                    }
                    let len = (remaining.min(rest.len() as u64) as usize).min(max_data);
                    let left = remaining - len as u64;
                    self.state = if left == 0 {
                        State::DataEnd(false)
                    } else {
                        State::Data(left)
                    };
                    return Ok((pos + len, Step::Data { start: pos, len }));
                }
                State::DataEnd(after_cr) => {
                    let Some(&b) = rest.first() else {
                        return Ok((pos, Step::NeedMore));
                    };
                    match (after_cr, b) {
                        (false, b'\r') => self.state = State::DataEnd(true),
                        (true, b'\n') => self.state = State::Size(SizeLine::START),
                        _ => return Err(malformed("chunk data not followed by CRLF")),
                    }
                    pos += 1;
                }
                State::Size(line) => {
                    let room = self.limit - self.announced;
                    match size_line(line, rest, room)? {
                        SizeScan::Partial(line) => {
                            self.state = State::Size(line);
                            return Ok((pos, Step::NeedMore));
                        }
                        SizeScan::Complete { used, size } => {
                            pos += used;
                            self.announced += size;
                            self.state = if size == 0 {
                                State::Trailer {
                                    seen: 0,
                                    scanned: 0,
                                }
                            } else {
                                State::Data(size)
                            };
                        }
                    }
                }
                State::Trailer { seen, scanned } => {
                    let from = scanned.min(rest.len());
                    let Some(lf) = rest[from..].iter().position(|&b| b == b'\n') else {
                        if seen + rest.len() > MAX_TRAILER_BYTES {
                            return Err(malformed("trailers too large"));
                        }
                        self.state = State::Trailer {
                            seen,
                            scanned: rest.len(),
                        };
                        return Ok((pos, Step::NeedMore));
                    };
                    let lf = from + lf;
                    let line = &rest[..=lf];
                    if seen + line.len() > MAX_TRAILER_BYTES {
                        return Err(malformed("trailers too large"));
                    }
                    if line.len() < 2 || line[line.len() - 2] != b'\r' {
                        return Err(malformed("trailer line without CRLF"));
                    }
                    let content = &line[..line.len() - 2];
                    pos += line.len();
                    if content.is_empty() {
                        self.state = State::Done;
                    } else if !is_trailer_field(content) {
                        return Err(malformed("malformed trailer field"));
                    } else {
                        self.state = State::Trailer {
                            seen: seen + line.len(),
                            scanned: 0,
                        };
                    }
                }
            }
        }
    }
}

fn malformed(why: &'static str) -> ChunkedError {
    ChunkedError::Malformed(why)
}

/// What [`size_line`] found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum SizeScan {
    /// Every byte so far is valid; the line goes on.
    Partial(SizeLine),
    /// The line is complete: `used` bytes, CRLF included, announcing `size` bytes.
    Complete { used: usize, size: u64 },
}

/// Checks the bytes of a chunk-size line that `line` has not seen yet (`input` starts at
/// the line's first byte); `room` is how many payload bytes the body may still announce.
/// The complete line's size is read by `httparse::parse_chunk_size` (spec §1), which
/// agrees with the digits checked here.
fn size_line(mut line: SizeLine, input: &[u8], room: u64) -> Result<SizeScan, ChunkedError> {
    use Part::*;
    let limit = input.len().min(MAX_SIZE_LINE);
    while line.len < limit {
        let b = input[line.len];
        line.len += 1;
        line.part = match (line.part, b) {
            (Digits, _) if b.is_ascii_hexdigit() => {
                if line.digits == MAX_SIZE_DIGITS {
                    return Err(malformed("chunk size of more than 16 hex digits"));
                }
                line.digits += 1;
                // At most 15 digits so far: no overflow.
                line.value = line.value * 16 + u64::from(hex_value(b));
                if line.value > room {
                    return Err(ChunkedError::TooLarge);
                }
                Digits
            }
            (Digits, _) if line.digits == 0 => {
                return Err(malformed("chunk size without hex digits"))
            }
            (Digits | Token | AfterQuoted | BeforeSemi, b' ' | b'\t') => BeforeSemi,
            (Digits | Name | AfterName | Token | AfterQuoted | BeforeSemi, b';') => AfterSemi,
            (Digits | Name | Token | AfterQuoted, b'\r') => Cr,
            (BeforeSemi, _) => return Err(malformed("garbage after chunk size")),
            (AfterSemi, b' ' | b'\t') => AfterSemi,
            (AfterSemi, _) if is_token_byte(b) => Name,
            (AfterSemi, _) => return Err(malformed("chunk extension without a name")),
            (Name, _) if is_token_byte(b) => Name,
            (Name | AfterName, b' ' | b'\t') => AfterName,
            (Name | AfterName, b'=') => AfterEquals,
            (AfterEquals, b' ' | b'\t') => AfterEquals,
            (AfterEquals, b'"') => Quoted,
            (AfterEquals | Token, _) if is_token_byte(b) => Token,
            (AfterEquals, _) => return Err(malformed("chunk extension without a value")),
            (Quoted, b'"') => AfterQuoted,
            (Quoted, b'\\') => QuotedPair,
            (Quoted, _) if is_qdtext(b) => Quoted,
            (QuotedPair, _) if is_qdtext(b) || b == b'"' || b == b'\\' => Quoted,
            (Quoted | QuotedPair, _) => {
                return Err(malformed("unterminated or invalid quoted string"))
            }
            (Cr, b'\n') => {
                let used = line.len;
                return match httparse::parse_chunk_size(&input[..used]) {
                    Ok(httparse::Status::Complete((n, size)))
                        if n == used && size == line.value =>
                    {
                        Ok(SizeScan::Complete { used, size })
                    }
                    _ => Err(malformed("invalid chunk size")),
                };
            }
            (Cr, _) => return Err(malformed("bare CR in chunk size line")),
            (_, b'\n') => return Err(malformed("bare LF in chunk size line")),
            (_, _) => return Err(malformed("invalid byte in chunk size line")),
        };
    }
    if line.len >= MAX_SIZE_LINE {
        return Err(malformed("chunk size line too long"));
    }
    Ok(SizeScan::Partial(line))
}

/// The value of an ASCII hex digit.
fn hex_value(b: u8) -> u8 {
    match b {
        b'0'..=b'9' => b - b'0',
        b'a'..=b'f' => b - b'a' + 10,
        _ => b - b'A' + 10,
    }
}

/// `qdtext` (RFC 9110 §5.6.4): HTAB, SP, VCHAR but `"` and `\`, obs-text.
fn is_qdtext(b: u8) -> bool {
    b == b'\t' || b == b' ' || ((0x21..=0x7e).contains(&b) && b != b'"' && b != b'\\') || b >= 0x80
}

/// `field-name ":" OWS field-value`, with a token name and no control bytes.
fn is_trailer_field(line: &[u8]) -> bool {
    let Some(colon) = line.iter().position(|&b| b == b':') else {
        return false;
    };
    colon > 0
        && line[..colon].iter().all(|&b| is_token_byte(b))
        && line[colon + 1..]
            .iter()
            .all(|&b| b == b'\t' || (b >= b' ' && b != 0x7f))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::http::MAX_BODY;

    /// Decodes `input` fed in pieces split at `splits`; returns payload or the error.
    fn decode(input: &[u8], splits: &[usize]) -> Result<(Vec<u8>, bool), ChunkedError> {
        decode_within(MAX_BODY, input, splits)
    }

    /// As [`decode`], for a body limited to `limit` payload bytes.
    fn decode_within(
        limit: u64,
        input: &[u8],
        splits: &[usize],
    ) -> Result<(Vec<u8>, bool), ChunkedError> {
        let mut dec = ChunkedDecoder::new(limit);
        let mut payload = Vec::new();
        let mut pending: Vec<u8> = Vec::new();
        let mut bounds: Vec<usize> = splits.to_vec();
        bounds.push(input.len());
        let mut fed = 0;
        for end in bounds {
            pending.extend_from_slice(&input[fed..end]);
            fed = end;
            loop {
                let (used, step) = dec.step(&pending, usize::MAX)?;
                if let Step::Data { start, len } = step {
                    payload.extend_from_slice(&pending[start..start + len]);
                }
                pending.drain(..used);
                match step {
                    Step::Data { .. } => continue,
                    Step::Done => return Ok((payload, pending.is_empty() && fed == input.len())),
                    Step::NeedMore => break,
                }
            }
        }
        Ok((payload, false))
    }

    #[test]
    fn valid_bodies_at_every_split() {
        let table: &[(&[u8], &[u8])] = &[
            (b"5\r\nhello\r\n0\r\n\r\n", b"hello"),
            (b"A\r\n0123456789\r\n0\r\n\r\n", b"0123456789"),
            (b"3;ext=1\r\nabc\r\n2 ; x\r\nde\r\n0\r\n\r\n", b"abcde"),
            (b"1\r\nx\r\n0\r\nX-Trailer: v\r\nY: w\r\n\r\n", b"x"),
            (b"0\r\n\r\n", b""),
            (b"000\r\n\r\n", b""),
        ];
        for (input, want) in table {
            for split in 0..=input.len() {
                let (got, done) =
                    decode(input, &[split]).unwrap_or_else(|e| panic!("{input:?}: {e}"));
                assert_eq!(&got, want, "{input:?} split {split}");
                assert!(done, "{input:?} split {split}");
            }
        }
    }

    #[test]
    fn malformed_bodies() {
        let table: &[&[u8]] = &[
            b"\r\nhello\r\n0\r\n\r\n",
            b"5\nhello\r\n0\r\n\r\n",
            b"5\r\nhelloX\r\n0\r\n\r\n",
            b"5\r\nhello\n0\r\n\r\n",
            b"-5\r\nhello\r\n0\r\n\r\n",
            b"0x5\r\nhello\r\n0\r\n\r\n",
            b"5 x\r\nhello\r\n0\r\n\r\n",
            b"5;a\nb\r\nhello\r\n0\r\n\r\n",
            b"5;\x01\r\nhello\r\n0\r\n\r\n",
            b"11111111111111111\r\n",
            b"0\r\nbad trailer\r\n\r\n",
            b"0\r\nX: y\n\r\n",
            b"0\r\n\n",
        ];
        for input in table {
            assert!(decode(input, &[]).is_err(), "{input:?} should fail");
        }
    }

    /// Size lines with extensions (RFC 9112 §7.1.1), whole, split at every point, and byte
    /// by byte.
    #[test]
    fn size_lines_at_every_split() {
        let table: &[(&[u8], &[u8])] = &[
            (b"5 ;a\r\nhello\r\n0\r\n\r\n", b"hello"),
            (b"5\t; a = b ;c\r\nhello\r\n0\r\n\r\n", b"hello"),
            (b"5;a=\"b c\";d;e=f\r\nhello\r\n0\r\n\r\n", b"hello"),
            (
                b"5;a=\"q\\\"\\\\\t\xe9\" ; b=\"\"\r\nhello\r\n0\r\n\r\n",
                b"hello",
            ),
            (b"0000000000000005\r\nhello\r\n0\r\n\r\n", b"hello"),
            (b"7fffffffffffffff\r\nab", b"ab"),
            (b"0;last=1\r\n\r\n", b""),
        ];
        for (input, want) in table {
            let done = !input.ends_with(b"ab");
            assert_eq!(decode(input, &[]), Ok((want.to_vec(), done)), "{input:?}");
            for split in 0..=input.len() {
                let got = decode(input, &[split]);
                assert_eq!(got, Ok((want.to_vec(), done)), "{input:?} split {split}");
            }
            let every: Vec<usize> = (0..input.len()).collect();
            assert_eq!(
                decode(input, &every),
                Ok((want.to_vec(), done)),
                "{input:?}"
            );
        }
    }

    /// Each refusal comes at exactly its first bad byte: everything before it waits for
    /// more, the bad byte is refused whatever follows (no waiting for data or a line end).
    #[test]
    fn refused_at_the_first_bad_byte() {
        use ChunkedError::{Malformed, TooLarge};
        type Row = (u64, &'static [u8], &'static [u8], &'static [u8], bool);
        const M: bool = false;
        const BIG: bool = true;
        let table: &[Row] = &[
            // (limit, before, bad byte, after, too large?)
            (MAX_BODY, b"5 ", b"\r", b"\nhello\r\n0\r\n\r\n", M),
            (MAX_BODY, b"2;", b"\r", b"\nhi\r\n0\r\n\r\n", M),
            (MAX_BODY, b"2; ", b"=", b"x\r\nhi\r\n0\r\n\r\n", M),
            (MAX_BODY, b"5;a=\"b", b"\r", b"\nhello\r\n0\r\n\r\n", M),
            (MAX_BODY, b"5;a=\"b", b"\n", b"\"\r\nhello\r\n0\r\n\r\n", M),
            (MAX_BODY, b"5;a=\"\\", b"\x01", b"\"\r\n", M),
            (MAX_BODY, b"5;a", b"\n", b"hello\r\n0\r\n\r\n", M),
            (MAX_BODY, b"5", b"\n", b"hello\r\n0\r\n\r\n", M),
            (MAX_BODY, b"5\r", b"h", b"ello\r\n0\r\n\r\n", M),
            (MAX_BODY, b"5;a ", b"\r", b"\nhello\r\n0\r\n\r\n", M),
            (MAX_BODY, b"5;a=", b"\r", b"\nhello\r\n0\r\n\r\n", M),
            (MAX_BODY, b"5;a=b", b"@", b"\r\nhello\r\n0\r\n\r\n", M),
            (MAX_BODY, b"5;a=b ", b"c", b"\r\nhello\r\n0\r\n\r\n", M),
            (MAX_BODY, b"5;a=\"b\"", b"c", b"\r\nhello\r\n0\r\n\r\n", M),
            (MAX_BODY, b"5;", b"\x01", b"\r\nhello\r\n0\r\n\r\n", M),
            (MAX_BODY, b"", b";", b"a\r\n", M),
            (MAX_BODY, b"", b" ", b"5\r\n", M),
            (MAX_BODY, b"", b"g", b"\r\n", M),
            (
                MAX_BODY,
                b"0000000000000000",
                b"5",
                b"\r\nhello\r\n0\r\n\r\n",
                M,
            ),
            (MAX_BODY, b"5\r\nhello", b"X", b"\r\n0\r\n\r\n", M),
            (MAX_BODY, b"5\r\nhello\r\n0\r\n", b"\n", b"", M),
            // Sizes that cannot be real, refused at the digit that makes them so.
            (MAX_BODY, b"fffffffffffffff", b"f", b"\r\n", BIG),
            (MAX_BODY, b"800000000000000", b"0", b"\r\n", BIG),
            (10, b"", b"b", b"\r\n", BIG),
            (10, b"1", b"0", b"\r\n", BIG),
            (10, b"5\r\nhello\r\n", b"6", b"\r\nhello!\r\n0\r\n\r\n", BIG),
        ];
        for &(limit, before, bad, after, too_large) in table {
            let input = [before, bad, after].concat();
            let verdict = |e: ChunkedError| match e {
                TooLarge => too_large,
                Malformed(_) => !too_large,
            };
            let whole = decode_within(limit, &input, &[]);
            assert!(whole.clone().is_err_and(verdict), "{input:?}: {whole:?}");
            for split in 0..=input.len() {
                let got = decode_within(limit, &input, &[split]);
                assert!(
                    got.clone().is_err_and(verdict),
                    "{input:?} split {split}: {got:?}"
                );
            }
            let prefix = decode_within(limit, before, &[]);
            assert!(matches!(prefix, Ok((_, false))), "{input:?}: {prefix:?}");
            let through = [before, bad].concat();
            let got = decode_within(limit, &through, &[]);
            assert!(
                got.clone().is_err_and(verdict),
                "{input:?}: not refused at once: {got:?}"
            );
        }
        // At the limit is fine.
        assert_eq!(
            decode_within(10, b"a\r\n0123456789\r\n0\r\n\r\n", &[]),
            Ok((b"0123456789".to_vec(), true))
        );
    }

    /// Regression: a partial size line was parsed from its start on every read, O(n²) for
    /// a line trickled in a byte at a time. The decoder resumes where it stopped: a byte
    /// planted in the part already checked is not checked again (`\x01` would be refused).
    #[test]
    fn size_line_check_resumes_where_it_stopped() {
        let mut dec = ChunkedDecoder::default();
        assert_eq!(dec.step(b"5;a", usize::MAX), Ok((0, Step::NeedMore)));
        assert_eq!(
            dec.step(b"5;\x01\r\nhello", usize::MAX),
            Ok((10, Step::Data { start: 5, len: 5 }))
        );
        let mut fresh = ChunkedDecoder::default();
        assert!(fresh.step(b"5;\x01\r\nhello", usize::MAX).is_err());
    }

    #[test]
    fn long_size_line_is_refused() {
        let mut input = b"1;".to_vec();
        input.resize(MAX_SIZE_LINE + 10, b'a');
        assert!(decode(&input, &[]).is_err());
    }

    /// Regression: a partial trailer line was searched for its LF from its start on every
    /// read, O(n²) for a line trickled in a byte at a time. The decoder resumes where it
    /// stopped: a line end planted in the part already searched is not seen again.
    #[test]
    fn trailer_search_resumes_where_it_stopped() {
        let mut dec = ChunkedDecoder::default();
        assert_eq!(
            dec.step(b"0\r\nX-A: b", usize::MAX),
            Ok((3, Step::NeedMore))
        );
        // As long as what was searched ("X-A: b"): searching it again would find a
        // trailer line and the end of the body, Ok((6, Done)).
        assert_eq!(dec.step(b"X:\r\n\r\n", usize::MAX), Ok((0, Step::NeedMore)));
    }

    #[test]
    fn stops_at_the_end_of_the_body() {
        let mut dec = ChunkedDecoder::default();
        let input = b"0\r\n\r\nGET / HTTP/1.1";
        assert_eq!(dec.step(input, usize::MAX), Ok((5, Step::Done)));
    }
}

/// Properties: any chunked body, valid or mangled, decodes to the same payload, length
/// and verdict whatever the read boundaries and the room for payload; nothing panics.
#[cfg(test)]
mod props {
    use super::*;
    use proptest::prelude::*;

    /// Payload, bytes consumed and whether the body ended; or the error.
    type Decoded = Result<(Vec<u8>, usize, bool), ChunkedError>;

    /// Feeds `input` in pieces ending at `splits` (and its end), `max_data` payload
    /// bytes at most per step, keeping unconsumed bytes as a session's buffer does.
    fn decode(input: &[u8], splits: &[usize], max_data: usize) -> Decoded {
        decode_within(crate::http::MAX_BODY, input, splits, max_data)
    }

    /// As [`decode`], for a body limited to `limit` payload bytes.
    fn decode_within(limit: u64, input: &[u8], splits: &[usize], max_data: usize) -> Decoded {
        let mut dec = ChunkedDecoder::new(limit);
        let (mut payload, mut pending) = (Vec::new(), Vec::new());
        let (mut consumed, mut fed) = (0, 0);
        for end in splits.iter().copied().chain([input.len()]) {
            let end = end.max(fed);
            pending.extend_from_slice(&input[fed..end]);
            fed = end;
            loop {
                let (used, step) = dec.step(&pending, max_data)?;
                assert!(used <= pending.len());
                if let Step::Data { start, len } = step {
                    assert!(len > 0 && len <= max_data && start + len <= used);
                    payload.extend_from_slice(&pending[start..start + len]);
                }
                pending.drain(..used);
                consumed += used;
                match step {
                    Step::Data { .. } => {}
                    Step::Done => return Ok((payload, consumed, true)),
                    Step::NeedMore => break,
                }
            }
        }
        Ok((payload, consumed, false))
    }

    /// Extensions of RFC 9112 §7.1.1's grammar, BWS and quoted-pairs included.
    const EXTENSIONS: &[&[u8]] = &[
        b"",
        b" ;name=\"v v\";x",
        b";a",
        b"\t; a = b ;c=d",
        b";q=\"\\\"\\\\\t\xe9\"",
    ];

    /// A valid chunked body of `chunks` (with optional extensions and trailers), and
    /// the payload it carries.
    fn valid() -> impl Strategy<Value = (Vec<u8>, Vec<u8>)> {
        (
            prop::collection::vec(
                (
                    prop::collection::vec(any::<u8>(), 1..40),
                    0..EXTENSIONS.len(),
                    any::<bool>(),
                ),
                0..6,
            ),
            prop::collection::vec("[A-Za-z-]{1,8}: [ -~]{0,10}", 0..3),
        )
            .prop_map(|(chunks, trailers)| {
                let (mut body, mut payload) = (Vec::new(), Vec::new());
                for (data, ext, upper) in chunks {
                    let size = if upper {
                        format!("{:X}", data.len())
                    } else {
                        format!("{:04x}", data.len())
                    };
                    body.extend_from_slice(size.as_bytes());
                    body.extend_from_slice(EXTENSIONS[ext]);
                    body.extend_from_slice(b"\r\n");
                    body.extend_from_slice(&data);
                    body.extend_from_slice(b"\r\n");
                    payload.extend_from_slice(&data);
                }
                body.extend_from_slice(b"0\r\n");
                for t in trailers {
                    body.extend_from_slice(t.as_bytes());
                    body.extend_from_slice(b"\r\n");
                }
                body.extend_from_slice(b"\r\n");
                (body, payload)
            })
    }

    /// A valid body with a few bytes overwritten, inserted or cut, or arbitrary bytes.
    fn mangled() -> impl Strategy<Value = Vec<u8>> {
        let edits =
            prop::collection::vec((any::<prop::sample::Index>(), any::<u8>(), 0..3u8), 1..4);
        prop_oneof![
            (valid(), edits).prop_map(|((mut body, _), edits)| {
                for (at, byte, kind) in edits {
                    let i = at.index(body.len() + 1);
                    match kind {
                        0 if i < body.len() => body[i] = byte,
                        1 => body.insert(i, byte),
                        _ => body.truncate(i),
                    }
                }
                body
            }),
            prop::collection::vec(any::<u8>(), 0..100),
        ]
    }

    fn payload_len(decoded: &Decoded) -> u64 {
        decoded
            .as_ref()
            .map_or(0, |(payload, ..)| payload.len() as u64)
    }

    fn cuts(len: usize, cuts: &[prop::sample::Index]) -> Vec<usize> {
        let mut splits: Vec<usize> = cuts.iter().map(|c| c.index(len + 1)).collect();
        splits.sort_unstable();
        splits
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(256))]

        #[test]
        fn valid_bodies_decode_whatever_the_splits(
            (body, payload) in valid(),
            at in prop::collection::vec(any::<prop::sample::Index>(), 0..8),
            max_data in 1usize..50,
        ) {
            let splits = cuts(body.len(), &at);
            let want = Ok((payload, body.len(), true));
            prop_assert_eq!(decode(&body, &[], usize::MAX), want.clone());
            prop_assert_eq!(decode(&body, &splits, max_data), want.clone());
            let every: Vec<usize> = (0..body.len()).collect();
            prop_assert_eq!(decode(&body, &every, 1), want.clone());
            // The payload's own length is the tightest limit that lets the body through;
            // one byte less is refused (at a size line, whatever the splits).
            let exact = payload_len(&want);
            prop_assert_eq!(decode_within(exact, &body, &splits, max_data), want);
            if exact > 0 {
                let refused = decode_within(exact - 1, &body, &splits, max_data);
                prop_assert_eq!(refused, Err(ChunkedError::TooLarge));
            }
        }

        #[test]
        fn mangled_bodies_get_one_verdict_whatever_the_splits(
            body in mangled(),
            at in prop::collection::vec(any::<prop::sample::Index>(), 0..8),
            max_data in 1usize..50,
        ) {
            let whole = decode(&body, &[], usize::MAX);
            let splits = cuts(body.len(), &at);
            let pieces = decode(&body, &splits, max_data);
            let every: Vec<usize> = (0..body.len()).collect();
            let trickled = decode(&body, &every, 1);
            prop_assert_eq!(whole.is_err(), pieces.is_err(), "{:?} vs {:?}", whole, pieces);
            prop_assert_eq!(whole.is_err(), trickled.is_err(), "{:?} vs {:?}", whole, trickled);
            if let (Ok(a), Ok(b), Ok(c)) = (&whole, &pieces, &trickled) {
                prop_assert_eq!(a, b);
                prop_assert_eq!(a, c);
            }
        }
    }
}
