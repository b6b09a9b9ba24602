//! Properties: writer output parses back at its exact length and not before; any bytes,
//! valid headers mangled or noise, get one verdict whatever the read boundaries: once
//! complete or failed, more bytes change nothing; nothing panics.

use super::tests::{pair, valid};
use super::*;
use proptest::prelude::*;
use std::net::{Ipv4Addr, Ipv6Addr};

fn ipv6() -> impl Strategy<Value = Ipv6Addr> {
    // Runs of zero groups, so the `::` compression is exercised, and IPv4-mapped ones.
    let group = prop_oneof![Just(0u16), Just(0xffff), any::<u16>()];
    prop_oneof![
        any::<[u16; 8]>().prop_map(Ipv6Addr::from),
        prop::array::uniform8(group).prop_map(Ipv6Addr::from),
        any::<[u8; 4]>().prop_map(|o| Ipv4Addr::from(o).to_ipv6_mapped()),
    ]
}

fn socket_addr() -> impl Strategy<Value = SocketAddr> {
    prop_oneof![
        (any::<[u8; 4]>(), any::<u16>()).prop_map(|(o, p)| SocketAddr::from((o, p))),
        (ipv6(), any::<u16>()).prop_map(|(ip, p)| SocketAddr::from((ip, p))),
    ]
}

/// The header `write_v1`/`write_v2` say they write: one family, mixed ones mapped.
fn expected(source: SocketAddr, destination: SocketAddr) -> ProxyHeader {
    let (source, destination) = match Pair::new(source, destination) {
        Pair::V4(s, d) => (SocketAddr::V4(s), SocketAddr::V4(d)),
        Pair::V6(s, d) => (SocketAddr::V6(s), SocketAddr::V6(d)),
    };
    ProxyHeader {
        source: Some(source),
        destination: Some(destination),
    }
}

/// Checks that every prefix of `input` agrees with the first one that decided (complete
/// or failed), and that a header is complete exactly at its length.
fn one_verdict(input: &[u8]) {
    let mut decided: Option<Result<Parsed, ProxyError>> = None;
    for split in 0..=input.len() {
        let got = parse(&input[..split]);
        if let (None, Ok(Parsed::Complete { len, .. })) = (decided, got) {
            assert_eq!(len, split, "complete before its end");
        }
        match decided {
            Some(first) => assert_eq!(got, first, "first {split} bytes"),
            None if got != Ok(Parsed::Incomplete) => decided = Some(got),
            None => {}
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn written_headers_parse_back(source in socket_addr(), destination in socket_addr()) {
        let want = expected(source, destination);
        for written in [write_v1(source, destination), write_v2(source, destination)] {
            let bytes = written.as_bytes();
            for split in 0..bytes.len() {
                prop_assert_eq!(parse(&bytes[..split]), Ok(Parsed::Incomplete));
            }
            prop_assert_eq!(
                parse(bytes),
                Ok(Parsed::Complete { header: want, len: bytes.len() })
            );
        }
    }

    /// Other senders write IPv6 with the standard text (dotted IPv4-mapped ones
    /// included); lbd's writer uses hex groups only. Both parse back.
    #[test]
    fn ipv6_texts_parse_back(a in ipv6(), b in ipv6(), p in any::<u16>()) {
        let line = format!("PROXY TCP6 {a} {b} {p} {p}\r\n");
        let header = pair(&format!("[{a}]:{p}"), &format!("[{b}]:{p}"));
        let len = line.len();
        one_verdict(line.as_bytes());
        prop_assert_eq!(parse(line.as_bytes()), Ok(Parsed::Complete { header, len }));
        let mut out = HeaderBytes::new();
        v1::write_ipv6(&mut out, &a);
        let text = std::str::from_utf8(out.as_bytes()).expect("ascii");
        prop_assert_eq!(text.parse::<Ipv6Addr>(), Ok(a));
        if a.to_ipv4_mapped().is_none() {
            prop_assert_eq!(text, a.to_string());
        }
    }

    #[test]
    fn mangled_headers_get_one_verdict(
        pick in any::<prop::sample::Index>(),
        edits in prop::collection::vec((any::<prop::sample::Index>(), any::<u8>(), 0u8..3), 0..4),
    ) {
        let table = valid();
        let mut input = table[pick.index(table.len())].1.clone();
        for (at, byte, kind) in edits {
            let at = at.index(input.len() + 1);
            match kind {
                0 if at < input.len() => input[at] = byte,
                1 => input.insert(at, byte),
                _ if at < input.len() => { input.remove(at); }
                _ => {}
            }
        }
        // one_verdict reads every prefix: truncations are covered.
        one_verdict(&input);
    }

    #[test]
    fn noise_gets_one_verdict(
        start in prop_oneof![Just(&b""[..]), Just(&b"PROXY "[..]), Just(&v2::SIGNATURE[..])],
        rest in prop::collection::vec(any::<u8>(), 0..160),
    ) {
        let input = [start, &rest[..]].concat();
        one_verdict(&input);
    }
}
