//! The chunked decoder fed in two pieces (split point from the first input byte) and in
//! one piece (payload taken a few bytes at a time): both must give the same payload,
//! consumed length and verdict, and it must never panic. Half the runs bound the body
//! (a small limit from the knobs): no accepted payload passes it.

#![no_main]

use lbd::http::chunked::{ChunkedDecoder, ChunkedError, Step};
use libfuzzer_sys::fuzz_target;

/// Payload, bytes consumed, and whether the body ended; or the error.
fn decode(
    limit: u64,
    input: &[u8],
    splits: &[usize],
    max_data: usize,
) -> Result<(Vec<u8>, usize, bool), ChunkedError> {
    let mut dec = ChunkedDecoder::new(limit);
    let mut payload = Vec::new();
    let mut pending: Vec<u8> = Vec::new();
    let mut consumed = 0;
    let mut fed = 0;
    for end in splits.iter().copied().chain([input.len()]) {
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
                Step::Data { .. } => continue,
                Step::Done => return Ok((payload, consumed, true)),
                Step::NeedMore => break,
            }
        }
    }
    Ok((payload, consumed, false))
}

fuzz_target!(|input: &[u8]| {
    let Some((&knobs, data)) = input.split_first() else {
        return;
    };
    let split = (usize::from(knobs) * 7) % (data.len() + 1);
    let max_data = 1 + usize::from(knobs % 5);
    let limit = if knobs & 0x40 == 0 {
        lbd::http::MAX_BODY
    } else {
        u64::from(knobs & 0x3f)
    };
    let whole = decode(limit, data, &[], usize::MAX);
    let pieces = decode(limit, data, &[split], max_data);
    if let Ok((payload, ..)) = &whole {
        assert!(payload.len() as u64 <= limit);
    }
    // Everything was fed to both runs in the end, so they must agree exactly.
    match (&whole, &pieces) {
        (Ok(a), Ok(b)) => assert_eq!(a, b, "split at {split}"),
        (Err(_), Err(_)) => {}
        _ => panic!("split at {split}: {whole:?} vs {pieces:?}"),
    }
});
