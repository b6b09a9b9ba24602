//! The response head path: `ResponseScan` (in one piece and resumed after a split point),
//! then `response::parse` for each kind of request (HEAD or not, HTTP/1.0 or 1.1 client).
//! Must never panic; the resumed check agrees with the one-piece check; an accepted head
//! has a status in 100–599 and consistent framing.

#![no_main]

use lbd::buffer::{BufPool, Buffer};
use lbd::http::response::{parse, ResponseContext};
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
    let Ok(Some(end)) = whole else {
        return;
    };
    let ctx = ResponseContext {
        head_request: knobs & 1 == 1,
        client_minor: (knobs >> 1) & 1,
        client_keep_alive: knobs & 4 == 4,
        upgrade: knobs & 8 == 8,
    };
    let mut pool = BufPool::new(256, 1);
    let mut out = Buffer::default();
    out.ensure(&mut pool);
    if let Ok(head) = parse(&data[..end], &ctx, &mut out) {
        assert!((100..=599).contains(&head.status) && head.status != 101);
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
