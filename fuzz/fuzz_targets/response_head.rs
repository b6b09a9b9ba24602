//! The response head path: `find_head_end`, then `response::parse` for each kind of
//! request (HEAD or not, HTTP/1.0 or 1.1 client). Must never panic; an accepted head
//! has a status in 100–599 and consistent framing.

#![no_main]

use lbd::buffer::{BufPool, Buffer};
use lbd::http::response::{parse, ResponseContext};
use lbd::http::{find_head_end, Framing};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|input: &[u8]| {
    let Some((&knobs, data)) = input.split_first() else {
        return;
    };
    let Some(end) = find_head_end(data, 0) else {
        return;
    };
    let ctx = ResponseContext {
        head_request: knobs & 1 == 1,
        client_minor: (knobs >> 1) & 1,
        client_keep_alive: knobs & 4 == 4,
    };
    let mut pool = BufPool::new(256, 1);
    let mut out = Buffer::default();
    out.ensure(&mut pool);
    if let Ok(head) = parse(&data[..end], &ctx, &mut out) {
        assert!((100..=599).contains(&head.status) && head.status != 101);
        assert!(head.head_len <= end);
        if ctx.head_request || head.interim || head.status == 204 || head.status == 304 {
            assert_eq!(head.upstream_framing, Framing::Empty);
        }
        if ctx.client_minor == 0 {
            assert_ne!(head.client_framing, Framing::Chunked);
        }
        let written = out.data();
        assert!(written.is_empty() || written.ends_with(b"\r\n\r\n"));
    }
});
