//! The request head path as a session runs it: `find_head_end` (also resumed from a split
//! point, as when a head is trickled in), then `request::parse` into a small buffer that
//! must grow. Must never panic; the resumed scan must agree with the one-piece scan.

#![no_main]

use lbd::buffer::{BufPool, Buffer};
use lbd::http::find_head_end;
use lbd::http::request::{parse, RequestContext};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|input: &[u8]| {
    let Some((&knobs, data)) = input.split_first() else {
        return;
    };
    let whole = find_head_end(data, 0);
    // The session scans what has arrived, then resumes from there: same answer.
    let split = usize::from(knobs).min(data.len());
    let resumed = find_head_end(&data[..split], 0).or_else(|| find_head_end(data, split));
    assert_eq!(whole, resumed, "split at {split}");
    let Some(end) = whole else {
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
        // httparse and find_head_end agree on where the head ends: no byte of it can
        // be left over to be read as a body or the next request.
        assert_eq!(head.head_len, end);
        assert!(head.minor <= 1);
        // lbd's own head is well formed: one request line, CRLF lines, an empty line.
        let written = out.data();
        assert!(written.ends_with(b"\r\n\r\n"));
        assert!(!written.windows(2).any(|w| w[1] == b'\n' && w[0] != b'\r'));
    }
});
