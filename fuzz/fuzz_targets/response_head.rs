//! The response head path: `ResponseScan` (in one piece and resumed after a split point),
//! then `response::parse` for each kind of request (HEAD or not, HTTP/1.0 or 1.1 client).
//! Must never panic; the resumed check agrees with the one-piece check; an accepted head
//! has a status in 100–599 and consistent framing; `response::parse_whole` on unscanned
//! bytes that begin with `HTTP/1.` (the relay's path for a head that arrived whole) accepts
//! a head only where the scan finds its end, and then answers as the scan-then-parse path.

#![no_main]

use lbd::buffer::{BufPool, Buffer};
use lbd::http::response::{parse, parse_whole, ResponseContext};
use lbd::http::scan::ResponseScan;
use lbd::http::Framing;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|input: &[u8]| {
    let Some((&knobs, data)) = input.split_first() else {
        return;
    };
    let whole = ResponseScan::default().check(data);
    let split = (usize::from(knobs) * 3).min(data.len());
    let mut scan = ResponseScan::default();
    let resumed = match scan.check(&data[..split]) {
        Ok(None) => scan.check(data),
        other => other,
    };
    assert_eq!(whole, resumed, "split at {split}");
    let ctx = ResponseContext {
        head_request: knobs & 1 == 1,
        client_minor: (knobs >> 1) & 1,
        client_keep_alive: knobs & 4 == 4,
        upgrade: knobs & 8 == 8,
    };
    let mut pool = BufPool::new(256, 2);
    let mut fast = Buffer::default();
    fast.ensure(&mut pool);
    let at_once = data
        .starts_with(b"HTTP/1.")
        .then(|| parse_whole(data, &ctx, &mut fast));
    let Ok(Some(end)) = whole else {
        assert!(!matches!(at_once, Some(Ok(Some(_)))), "parsed what the scan refuses or waits on");
        return;
    };
    let mut out = Buffer::default();
    out.ensure(&mut pool);
    let parsed = parse(&data[..end], &ctx, &mut out);
    if let Some(at_once) = at_once {
        assert_eq!(at_once.map(|h| h.expect("a whole head")), parsed);
        if parsed.is_ok() {
            assert_eq!(fast.data(), out.data());
        }
    }
    if let Ok(head) = parsed {
        assert!((100..=599).contains(&head.status) && (head.status != 101 || ctx.upgrade));
        assert_eq!(head.head_len, end);
        if ctx.head_request || head.interim || head.status == 204 || head.status == 304 {
            assert_eq!(head.upstream_framing, Framing::Empty);
        }
        if ctx.client_minor == 0 {
            assert_ne!(head.client_framing, Framing::Chunked);
        }
        // lbd's own head, when it writes one, passes lbd's check, with CRLF lines only.
        let written = out.data();
        if !written.is_empty() {
            assert_eq!(
                ResponseScan::default().check(written),
                Ok(Some(written.len()))
            );
            assert!(!written.windows(2).any(|w| w[1] == b'\n' && w[0] != b'\r'));
        }
    }
});
