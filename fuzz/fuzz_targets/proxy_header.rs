//! The PROXY protocol parser on any bytes (after a leading knob byte), whole and cut at a
//! split point taken from the knob: it must never panic, a prefix that decided (complete or failed) must agree
//! with the whole input, a complete header must lie within the input and be complete
//! exactly at its length, and a header written again from what was parsed (v1 and v2) must
//! parse back to the same addresses.

#![no_main]

use lbd::proxy_protocol::{
    parse, write_v1, write_v1_unknown, write_v2, write_v2_local, HeaderBytes, Parsed, ProxyHeader,
};
use libfuzzer_sys::fuzz_target;

/// The header as lbd would write it, in both versions.
fn rewrite(header: ProxyHeader) -> [HeaderBytes; 2] {
    match (header.source, header.destination) {
        (Some(source), Some(destination)) => {
            [write_v1(source, destination), write_v2(source, destination)]
        }
        (None, None) => [write_v1_unknown(), write_v2_local()],
        _ => panic!("one address without the other: {header:?}"),
    }
}

fuzz_target!(|input: &[u8]| {
    let Some((&knob, data)) = input.split_first() else {
        return;
    };
    let whole = parse(data);
    let split = usize::from(knob) * 3 % (data.len() + 1);
    let prefix = parse(&data[..split]);
    if prefix != Ok(Parsed::Incomplete) {
        assert_eq!(prefix, whole, "split at {split}");
    }
    let Ok(Parsed::Complete { header, len }) = whole else {
        return;
    };
    assert!(len > 0 && len <= data.len());
    assert_eq!(parse(&data[..len]), whole);
    assert_eq!(parse(&data[..len - 1]), Ok(Parsed::Incomplete));
    if let (Some(source), Some(destination)) = (header.source, header.destination) {
        assert_eq!(source.is_ipv4(), destination.is_ipv4(), "{header:?}");
    }
    for written in rewrite(header) {
        let bytes = written.as_bytes();
        let again = parse(bytes);
        assert_eq!(
            again,
            Ok(Parsed::Complete {
                header,
                len: bytes.len()
            }),
            "{written:?}"
        );
    }
});
