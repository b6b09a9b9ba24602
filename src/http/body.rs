//! Body relay: decode a body as its sender framed it and re-encode it the way lbd frames
//! it for the receiver, a buffer at a time (never the whole body).

use super::chunked::{ChunkedDecoder, ChunkedError, Step};
use super::Framing;
use crate::buffer::Buffer;

/// Room a chunk's own framing takes: up to 16 hex digits and two CRLFs.
const CHUNK_OVERHEAD: usize = 16 + 4;
/// The last chunk and the empty trailer section lbd writes.
const LAST_CHUNK: &[u8] = b"0\r\n\r\n";

/// A body that cannot be relayed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BodyError {
    /// Bad chunked framing.
    Chunked(ChunkedError),
    /// The sender closed before the framing said the body ended.
    Truncated,
}

impl std::fmt::Display for BodyError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            BodyError::Chunked(e) => e.fmt(f),
            BodyError::Truncated => f.write_str("body cut short"),
        }
    }
}

/// Reads a body as the sender framed it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Decoder {
    /// This many bytes remain.
    Length(u64),
    /// Chunked framing.
    Chunked(ChunkedDecoder),
    /// Everything until the sender closes.
    Close,
    /// The body has ended.
    Done,
}

impl Decoder {
    /// The decoder for a framing.
    pub fn new(framing: Framing) -> Decoder {
        match framing {
            Framing::Empty | Framing::Length(0) => Decoder::Done,
            Framing::Length(n) => Decoder::Length(n),
            Framing::Chunked => Decoder::Chunked(ChunkedDecoder::default()),
            Framing::Close => Decoder::Close,
        }
    }

    /// The decoder for a framing whose payload may not pass `max` bytes (unset:
    /// [`super::MAX_BODY`]); a chunked body is refused at the size line that would pass it.
    /// A length was checked against the same limit with the head.
    pub fn bounded(framing: Framing, max: Option<u64>) -> Decoder {
        match framing {
            Framing::Chunked => {
                Decoder::Chunked(ChunkedDecoder::new(max.unwrap_or(super::MAX_BODY)))
            }
            other => Decoder::new(other),
        }
    }

    /// True once the body has ended.
    pub fn is_done(&self) -> bool {
        *self == Decoder::Done
    }
}

/// Writes a body the way lbd frames it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Encoder {
    /// Bytes as they are: `Content-Length` or close-delimited output, or no body.
    Identity,
    /// lbd's own chunks: `size CRLF data CRLF`, then `0 CRLF CRLF`.
    Chunked {
        /// The last chunk has been written.
        finished: bool,
    },
}

impl Encoder {
    /// The encoder for an output framing.
    pub fn new(framing: Framing) -> Encoder {
        match framing {
            Framing::Chunked => Encoder::Chunked { finished: false },
            _ => Encoder::Identity,
        }
    }
}

/// What one [`transfer`] call did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Transfer {
    /// Input bytes consumed.
    pub consumed: usize,
    /// Payload bytes moved.
    pub payload: usize,
    /// The body has ended and its end is written to `out`.
    pub done: bool,
}

/// Moves as much of `input` into the tail of `out` as both allow (the caller compacts
/// `out` when it may; a replayable request must stay where it is). `eof` says the sender has closed:
/// it ends a close-delimited body and truncates any other.
pub fn transfer(
    dec: &mut Decoder,
    enc: &mut Encoder,
    input: &[u8],
    eof: bool,
    out: &mut Buffer,
) -> Result<Transfer, BodyError> {
    let mut consumed = 0;
    let mut payload = 0;
    loop {
        let room = out.tail_room();
        let room = match enc {
            Encoder::Identity => room,
            Encoder::Chunked { .. } => room.saturating_sub(CHUNK_OVERHEAD + LAST_CHUNK.len()),
        };
        let rest = &input[consumed..];
        let (used, data) = match dec {
            Decoder::Done => {
                if let Encoder::Chunked {
                    finished: finished @ false,
                } = enc
                {
                    if out.tail_room() < LAST_CHUNK.len() {
                        return Ok(Transfer {
                            consumed,
                            payload,
                            done: false,
                        });
                    }
                    out.extend(LAST_CHUNK);
                    *finished = true;
                }
                return Ok(Transfer {
                    consumed,
                    payload,
                    done: true,
                });
            }
            Decoder::Length(remaining) => {
                let len = (*remaining).min(rest.len() as u64).min(room as u64) as usize;
                if len == 0 {
                    if eof && rest.is_empty() {
                        return Err(BodyError::Truncated);
                    }
                    break;
                }
                *remaining -= len as u64;
                if *remaining == 0 {
                    *dec = Decoder::Done;
                }
                (len, &rest[..len])
            }
            Decoder::Close => {
                if eof && rest.is_empty() {
                    *dec = Decoder::Done;
                    continue;
                }
                let len = rest.len().min(room);
                if len == 0 {
                    break;
                }
                (len, &rest[..len])
            }
            Decoder::Chunked(chunked) => {
                let (used, step) = chunked.step(rest, room).map_err(BodyError::Chunked)?;
                match step {
                    Step::Done => {
                        *dec = Decoder::Done;
                        consumed += used;
                        continue;
                    }
                    Step::NeedMore => {
                        consumed += used;
                        if eof && room > 0 {
                            return Err(BodyError::Truncated);
                        }
                        break;
                    }
                    Step::Data { start, len } => (used, &rest[start..start + len]),
                }
            }
        };
        match enc {
            Encoder::Identity => out.extend(data),
            Encoder::Chunked { .. } => {
                let _ = std::fmt::Write::write_fmt(out, format_args!("{:x}\r\n", data.len()));
                out.extend(data);
                out.extend(b"\r\n");
            }
        }
        consumed += used;
        payload += data.len();
    }
    Ok(Transfer {
        consumed,
        payload,
        done: false,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::buffer::BufPool;

    /// Relays `input` fed in `step`-byte pieces through an `out_size`-byte buffer.
    fn relay(
        input: &[u8],
        from: Framing,
        to: Framing,
        step: usize,
        out_size: usize,
    ) -> Result<Vec<u8>, BodyError> {
        let mut pool = BufPool::new(out_size, 1);
        let mut out = Buffer::default();
        out.ensure(&mut pool);
        let (mut dec, mut enc) = (Decoder::new(from), Encoder::new(to));
        let mut pending = Vec::new();
        let mut sent = Vec::new();
        let mut fed = 0;
        for _ in 0..100_000 {
            let eof = fed == input.len();
            let t = transfer(&mut dec, &mut enc, &pending, eof, &mut out)?;
            pending.drain(..t.consumed);
            sent.extend_from_slice(out.data());
            out.clear();
            if t.done {
                return Ok(sent);
            }
            let end = (fed + step).min(input.len());
            pending.extend_from_slice(&input[fed..end]);
            fed = end;
        }
        panic!("no progress");
    }

    #[test]
    fn reframing_table() {
        use Framing::*;
        let table: &[(&[u8], Framing, Framing, &[u8])] = &[
            (b"hello", Length(5), Length(5), b"hello"),
            (b"hello", Close, Chunked, b"5\r\nhello\r\n0\r\n\r\n"),
            (b"hello", Close, Close, b"hello"),
            (b"5\r\nhello\r\n0\r\n\r\n", Chunked, Close, b"hello"),
            (
                b"2;x=y\r\nhe\r\n3\r\nllo\r\n0\r\nT: v\r\n\r\n",
                Chunked,
                Chunked,
                b"2\r\nhe\r\n3\r\nllo\r\n0\r\n\r\n",
            ),
            (b"", Empty, Empty, b""),
        ];
        for (input, from, to, want) in table {
            let got = relay(input, *from, *to, 64, 256).unwrap();
            assert_eq!(got, *want, "{from:?}->{to:?}");
            // Byte-at-a-time input keeps the payload identical.
            let slow = relay(input, *from, *to, 1, 64).unwrap();
            let strip = |v: &[u8]| relay(v, *to, Close, 1000, 256).unwrap_or_default();
            if *to != Empty {
                assert_eq!(strip(&slow), strip(want), "{from:?}->{to:?} byte by byte");
            }
        }
    }

    #[test]
    fn truncation_is_an_error() {
        assert_eq!(
            relay(b"hel", Framing::Length(5), Framing::Length(5), 64, 256),
            Err(BodyError::Truncated)
        );
        assert_eq!(
            relay(b"5\r\nhel", Framing::Chunked, Framing::Chunked, 64, 256),
            Err(BodyError::Truncated)
        );
    }

    #[test]
    fn large_body_through_small_buffer() {
        let body: Vec<u8> = (0..100_000u32).map(|i| (i % 251) as u8).collect();
        let got = relay(&body, Framing::Close, Framing::Chunked, 1000, 512).unwrap();
        let back = relay(&got, Framing::Chunked, Framing::Close, 777, 300).unwrap();
        assert_eq!(back, body);
    }
}
