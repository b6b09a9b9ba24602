//! Properties over generated and arbitrary heads: the incremental head check (as a
//! session runs it, resuming where it stopped) and the parse give the same answer for any
//! split of the input as for the input in one piece; nothing panics.

use super::*;
use crate::buffer::BufPool;
use crate::http::scan::RequestScan;
use proptest::prelude::*;

/// Lines heads are assembled from: valid, borderline and hostile.
const LINES: &[&[u8]] = &[
    b"GET / HTTP/1.1",
    b"POST /p?q HTTP/1.1",
    b"HEAD / HTTP/1.0",
    b"OPTIONS * HTTP/1.1",
    b"GET http://h:80/x HTTP/1.1",
    b"CONNECT h:443 HTTP/1.1",
    b"G\0T / HTTP/1.1",
    b"GET / HTTP/1.2",
    b"Host: a",
    b"Host: a b",
    b"Host: [::1]:80",
    b"Content-Length: 5",
    b"Content-Length: +5",
    b"Content-Length: 5, 5",
    b"Content_Length: 5",
    b"Transfer-Encoding: chunked",
    b"Transfer-Encoding: gzip, chunked",
    b"Connection: close, X-A",
    b"Connection: keep-alive",
    b"X-A: 1",
    b"X-Forwarded-For: 1.2.3.4, , 5.6.7.8",
    b"Expect: 100-continue",
    b" folded",
    b"X: a\rb",
    b"Bad Name: x",
    b"",
];
const EOLS: &[&[u8]] = &[b"\r\n", b"\n", b"\r", b"\r\r\n"];

/// A head assembled from [`LINES`], with a few bytes overwritten.
fn assembled() -> impl Strategy<Value = Vec<u8>> {
    (
        prop::collection::vec((0..LINES.len(), 0..EOLS.len()), 0..10),
        prop::collection::vec((any::<prop::sample::Index>(), any::<u8>()), 0..3),
        prop::collection::vec(any::<u8>(), 0..8),
    )
        .prop_map(|(lines, mutations, tail)| {
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
            head.extend_from_slice(&tail);
            head
        })
}

fn input() -> impl Strategy<Value = Vec<u8>> {
    prop_oneof![assembled(), prop::collection::vec(any::<u8>(), 0..200)]
}

/// Where the head ended (0 when the scan refused it) and the parse's answer.
type Outcome = Option<(usize, Result<(RequestHead, Vec<u8>), RequestError>)>;

fn parse_head(head: &[u8]) -> Result<(RequestHead, Vec<u8>), RequestError> {
    let ctx = RequestContext {
        client: "10.0.0.9".parse().unwrap(),
        local: "127.0.0.1:8080".parse().unwrap(),
        max_headers: 8,
        max_body: Some(1000),
        hash_header: Some("x-a"),
        tls: false,
    };
    let mut pool = BufPool::new(64, 1);
    let mut out = Buffer::default();
    out.ensure(&mut pool);
    parse(head, &ctx, &mut out).map(|h| (h, out.data().to_vec()))
}

/// The session's way: check what has arrived, resume from there on the next read,
/// parse the head once it is complete.
fn in_pieces(input: &[u8], splits: &[usize]) -> Outcome {
    let mut scan = RequestScan::default();
    let mut arrived = 0;
    for end in splits.iter().copied().chain([input.len()]) {
        arrived = arrived.max(end);
        let data = &input[..arrived];
        match scan.check(data) {
            Ok(Some(head_end)) => return Some((head_end, parse_head(&data[..head_end]))),
            Ok(None) => {}
            Err(e) => return Some((0, Err(e))),
        }
    }
    None
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn any_split_gives_the_one_piece_answer(
        input in input(),
        cuts in prop::collection::vec(any::<prop::sample::Index>(), 0..6),
    ) {
        let mut splits: Vec<usize> = cuts.iter().map(|c| c.index(input.len() + 1)).collect();
        splits.sort_unstable();
        let whole = in_pieces(&input, &[]);
        prop_assert_eq!(in_pieces(&input, &splits), whole.clone());
        // Byte by byte, the slowest trickle.
        let every: Vec<usize> = (0..input.len()).collect();
        prop_assert_eq!(in_pieces(&input, &every), whole.clone());
        if let Some((end, Ok((head, out)))) = whole {
            // httparse and the head check agree on where the head ends.
            prop_assert_eq!(head.head_len, end);
            // lbd's own head passes lbd's own check.
            prop_assert_eq!(RequestScan::default().check(&out), Ok(Some(out.len())));
        }
        // The parser alone never panics on arbitrary bytes either.
        let _ = parse_head(&input);
    }
}
