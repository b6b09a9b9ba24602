//! Streaming decoder for `Transfer-Encoding: chunked` (RFC 9112 §7.1), strict about
//! framing: at least one hex digit per size, exact CRLFs, bounded size lines and
//! trailers. Chunk extensions and trailers are read and dropped.

/// Longest chunk-size line (size, extensions, CRLF) accepted.
pub const MAX_SIZE_LINE: usize = 4096;
/// Most trailer bytes accepted after the last chunk.
pub const MAX_TRAILER_BYTES: usize = 16384;

/// A malformed chunked body.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ChunkedError(pub &'static str);

impl std::fmt::Display for ChunkedError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "bad chunked framing: {}", self.0)
    }
}

/// Where the decoder is in the chunked grammar.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    /// Expecting a chunk-size line.
    Size,
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
}

impl Default for ChunkedDecoder {
    fn default() -> Self {
        ChunkedDecoder { state: State::Size }
    }
}

impl ChunkedDecoder {
    /// Consumes framing from `input` until payload (at most `max_data` bytes) is found,
    /// more input is needed, or the body ends. Returns bytes consumed (payload included)
    /// and what was found. Never reads past the body's end.
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
                        (true, b'\n') => self.state = State::Size,
                        _ => return Err(ChunkedError("chunk data not followed by CRLF")),
                    }
                    pos += 1;
                }
                State::Size => match size_line(rest)? {
                    None => return Ok((pos, Step::NeedMore)),
                    Some((used, 0)) => {
                        pos += used;
                        self.state = State::Trailer {
                            seen: 0,
                            scanned: 0,
                        };
                    }
                    Some((used, size)) => {
                        pos += used;
                        self.state = State::Data(size);
                    }
                },
                State::Trailer { seen, scanned } => {
                    let from = scanned.min(rest.len());
                    let Some(lf) = rest[from..].iter().position(|&b| b == b'\n') else {
                        if seen + rest.len() > MAX_TRAILER_BYTES {
                            return Err(ChunkedError("trailers too large"));
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
                        return Err(ChunkedError("trailers too large"));
                    }
                    if line.len() < 2 || line[line.len() - 2] != b'\r' {
                        return Err(ChunkedError("trailer line without CRLF"));
                    }
                    let content = &line[..line.len() - 2];
                    pos += line.len();
                    if content.is_empty() {
                        self.state = State::Done;
                    } else if !is_trailer_field(content) {
                        return Err(ChunkedError("malformed trailer field"));
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

/// Parses one chunk-size line with `httparse::parse_chunk_size`, then applies the rules
/// it leaves open: a hex digit first, nothing but extensions after the digits, no
/// control bytes, bounded length. `Ok(None)`: the line is incomplete.
fn size_line(input: &[u8]) -> Result<Option<(usize, u64)>, ChunkedError> {
    match httparse::parse_chunk_size(input) {
        Ok(httparse::Status::Complete((used, size))) => {
            let line = &input[..used - 2];
            let digits = line.iter().take_while(|b| b.is_ascii_hexdigit()).count();
            if digits == 0 {
                return Err(ChunkedError("chunk size without hex digits"));
            }
            let ext = &line[digits..];
            let ext_start = ext.iter().position(|&b| b != b' ' && b != b'\t');
            if ext_start.is_some_and(|i| ext[i] != b';') {
                return Err(ChunkedError("garbage after chunk size"));
            }
            if ext.iter().any(|&b| (b < b' ' && b != b'\t') || b == 0x7f) {
                return Err(ChunkedError("control byte in chunk extension"));
            }
            if used > MAX_SIZE_LINE {
                return Err(ChunkedError("chunk size line too long"));
            }
            Ok(Some((used, size)))
        }
        Ok(httparse::Status::Partial) if input.len() >= MAX_SIZE_LINE => {
            Err(ChunkedError("chunk size line too long"))
        }
        Ok(httparse::Status::Partial) => {
            // Bare LF inside a partial line would otherwise be accepted as extension text.
            if input.contains(&b'\n') {
                return Err(ChunkedError("bare LF in chunk size line"));
            }
            Ok(None)
        }
        Err(_) => Err(ChunkedError("invalid chunk size")),
    }
}

/// `field-name ":" OWS field-value`, with a token name and no control bytes.
fn is_trailer_field(line: &[u8]) -> bool {
    let Some(colon) = line.iter().position(|&b| b == b':') else {
        return false;
    };
    colon > 0
        && line[..colon]
            .iter()
            .all(|&b| crate::grammar::is_token_byte(b))
        && line[colon + 1..]
            .iter()
            .all(|&b| b == b'\t' || (b >= b' ' && b != 0x7f))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Decodes `input` fed in pieces split at `splits`; returns payload or the error.
    fn decode(input: &[u8], splits: &[usize]) -> Result<(Vec<u8>, bool), ChunkedError> {
        let mut dec = ChunkedDecoder::default();
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
        let mut dec = ChunkedDecoder::default();
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

    /// A valid chunked body of `chunks` (with optional extensions and trailers), and
    /// the payload it carries.
    fn valid() -> impl Strategy<Value = (Vec<u8>, Vec<u8>)> {
        (
            prop::collection::vec(
                (
                    prop::collection::vec(any::<u8>(), 1..40),
                    any::<bool>(),
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
                    if ext {
                        body.extend_from_slice(b" ;name=\"v v\";x");
                    }
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
            prop_assert_eq!(decode(&body, &every, 1), want);
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
