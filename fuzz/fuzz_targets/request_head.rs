//! The request head path as a session runs it: `RequestScan` over the bytes as they arrive
//! (in one piece, and resumed after a split point, as when a head is trickled in), then
//! `request::parse` into a small buffer that must grow. Must never panic; the resumed check
//! must agree with the one-piece check.

#![no_main]

use lbd::buffer::{BufPool, Buffer};
use lbd::http::request::{parse, RequestContext};
use lbd::http::scan::RequestScan;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|input: &[u8]| {
    let Some((&knobs, data)) = input.split_first() else {
        return;
    };
    let whole = RequestScan::default().check(data);
    // The session checks what has arrived, then resumes from there: same answer.
    let split = usize::from(knobs).min(data.len());
    let mut scan = RequestScan::default();
    let resumed = match scan.check(&data[..split]) {
        Ok(None) => scan.check(data),
        other => other,
    };
    assert_eq!(whole, resumed, "split at {split}");
    let Ok(Some(end)) = whole else {
        return;
    };
    let ctx = RequestContext {
        client: "10.0.0.1".parse().unwrap(),
        local: "127.0.0.1:8080".parse().unwrap(),
        max_headers: 1 + usize::from(knobs % 128),
        max_body: (knobs & 1 == 1).then_some(1 << 20),
        hash_header: (knobs & 2 == 2).then_some("x-user"),
        tls: knobs & 4 == 4,
    };
    let mut pool = BufPool::new(256, 1);
    let mut out = Buffer::default();
    out.ensure(&mut pool);
    if let Ok(head) = parse(&data[..end], &ctx, &mut out) {
        // httparse and the scan agree on where the head ends: no byte of it can be left
        // over to be read as a body or the next request.
        assert_eq!(head.head_len, end);
        assert!(head.minor <= 1);
        // lbd's own head is well formed by lbd's own rules: CRLF lines, an empty line.
        let written = out.data();
        assert_eq!(
            RequestScan::default().check(written),
            Ok(Some(written.len()))
        );
    }
});
