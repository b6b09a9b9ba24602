//! Table-driven tests fed at every split point, writer round trips, and properties.

use super::*;
use std::net::Ipv6Addr;

fn addr(text: &str) -> SocketAddr {
    text.parse().expect("test address")
}

pub(super) fn pair(source: &str, destination: &str) -> ProxyHeader {
    ProxyHeader {
        source: Some(addr(source)),
        destination: Some(addr(destination)),
    }
}

/// A v2 header: signature, version/command byte, family/protocol byte, `body`'s length.
fn v2(version_command: u8, family_protocol: u8, body: &[u8]) -> Vec<u8> {
    let mut header = v2::SIGNATURE.to_vec();
    header.extend([version_command, family_protocol]);
    header.extend(u16::try_from(body.len()).expect("short body").to_be_bytes());
    header.extend(body);
    header
}

fn tlv(kind: u8, value: &[u8]) -> Vec<u8> {
    let mut tlv = vec![kind];
    tlv.extend(
        u16::try_from(value.len())
            .expect("short value")
            .to_be_bytes(),
    );
    tlv.extend(value);
    tlv
}

/// A v2 TCP4 address block: 192.0.2.1:56324 -> 198.51.100.2:443.
fn inet4() -> Vec<u8> {
    let mut body = vec![192, 0, 2, 1, 198, 51, 100, 2];
    body.extend(56324u16.to_be_bytes());
    body.extend(443u16.to_be_bytes());
    body
}

/// A v2 TCP6 address block: [2001:db8::1]:1234 -> [2001:db8::2]:80.
fn inet6() -> Vec<u8> {
    let mut body = Ipv6Addr::new(0x2001, 0xdb8, 0, 0, 0, 0, 0, 1)
        .octets()
        .to_vec();
    body.extend(Ipv6Addr::new(0x2001, 0xdb8, 0, 0, 0, 0, 0, 2).octets());
    body.extend(1234u16.to_be_bytes());
    body.extend(80u16.to_be_bytes());
    body
}

fn cat(parts: &[&[u8]]) -> Vec<u8> {
    parts.concat()
}

const FULL6: &str = "ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff";

/// Valid headers: name, exact bytes, what they say.
pub(super) fn valid() -> Vec<(&'static str, Vec<u8>, ProxyHeader)> {
    let v4 = pair("192.0.2.1:56324", "198.51.100.2:443");
    let v6 = pair("[2001:db8::1]:1234", "[2001:db8::2]:80");
    let keep = ProxyHeader::KEEP_PEER;
    let full6 = format!("[{FULL6}]:65535");
    let max_tlv = tlv(0xe0, &[7; V2_MAX_ADDRESS_LEN - 12 - 3]);
    vec![
        (
            "v1 tcp4",
            b"PROXY TCP4 192.0.2.1 198.51.100.2 56324 443\r\n".to_vec(),
            v4,
        ),
        (
            "v1 tcp4 longest",
            b"PROXY TCP4 255.255.255.255 255.255.255.255 65535 65535\r\n".to_vec(),
            pair("255.255.255.255:65535", "255.255.255.255:65535"),
        ),
        (
            "v1 tcp4 zeros",
            b"PROXY TCP4 0.0.0.0 0.0.0.0 0 0\r\n".to_vec(),
            pair("0.0.0.0:0", "0.0.0.0:0"),
        ),
        (
            "v1 tcp6",
            b"PROXY TCP6 2001:db8::1 2001:db8::2 1234 80\r\n".to_vec(),
            v6,
        ),
        (
            "v1 tcp6 upper case, all zeros",
            b"PROXY TCP6 2001:DB8::A :: 1 2\r\n".to_vec(),
            pair("[2001:db8::a]:1", "[::]:2"),
        ),
        (
            "v1 tcp6 longest (104 bytes)",
            format!("PROXY TCP6 {FULL6} {FULL6} 65535 65535\r\n").into_bytes(),
            ProxyHeader {
                source: Some(addr(&full6)),
                destination: Some(addr(&full6)),
            },
        ),
        (
            "v1 tcp6 ipv4-mapped, dotted",
            b"PROXY TCP6 ::ffff:192.0.2.1 ::ffff:255.255.255.255 5000 80\r\n".to_vec(),
            pair("[::ffff:192.0.2.1]:5000", "[::ffff:255.255.255.255]:80"),
        ),
        (
            "v1 tcp6 eight groups, leading zeros in groups",
            b"PROXY TCP6 1:2:3:4:5:6:7:8 0001:0:0:0:0:0:0:00ff 1 2\r\n".to_vec(),
            pair("[1:2:3:4:5:6:7:8]:1", "[1::ff]:2"),
        ),
        ("v1 unknown", b"PROXY UNKNOWN\r\n".to_vec(), keep),
        (
            "v1 unknown with addresses (107 bytes, the longest line)",
            format!("PROXY UNKNOWN {FULL6} {FULL6} 65535 65535\r\n").into_bytes(),
            keep,
        ),
        (
            "v1 unknown with anything",
            b"PROXY UNKNOWN whatever \x01 ::1\r\n".to_vec(),
            keep,
        ),
        ("v2 tcp4", v2(0x21, 0x11, &inet4()), v4),
        ("v2 tcp6", v2(0x21, 0x21, &inet6()), v6),
        (
            "v2 tcp4 with tlvs",
            v2(
                0x21,
                0x11,
                &cat(&[
                    &inet4(),
                    &tlv(0x01, b"h2"),
                    &tlv(0x04, b""),
                    &tlv(0x02, b"example.com"),
                ]),
            ),
            v4,
        ),
        (
            "v2 tcp6 with a tlv",
            v2(0x21, 0x21, &cat(&[&inet6(), &tlv(0x05, &[1; 128])])),
            v6,
        ),
        (
            "v2 tcp4, longest length",
            v2(0x21, 0x11, &cat(&[&inet4(), &max_tlv])),
            v4,
        ),
        ("v2 local", v2(0x20, 0x00, &[]), keep),
        ("v2 local with addresses", v2(0x20, 0x11, &inet4()), keep),
        (
            "v2 local: family and bytes ignored",
            v2(0x20, 0xff, &[1, 2]),
            keep,
        ),
        (
            "v2 local, longest length",
            v2(0x20, 0x00, &[0; V2_MAX_ADDRESS_LEN]),
            keep,
        ),
        ("v2 proxy unspec", v2(0x21, 0x00, &[]), keep),
        ("v2 proxy unspec with bytes", v2(0x21, 0x00, &[1, 2]), keep),
        ("v2 proxy inet, unspec protocol", v2(0x21, 0x10, &[9]), keep),
        ("v2 udp4", v2(0x21, 0x12, &inet4()), keep),
        ("v2 udp6", v2(0x21, 0x22, &inet6()), keep),
        ("v2 unix stream", v2(0x21, 0x31, &[b'/'; 216]), keep),
        (
            "v2 unix dgram with a tlv",
            v2(0x21, 0x32, &cat(&[&[0; 216], &tlv(0x04, b"x")])),
            keep,
        ),
    ]
}

/// Invalid headers: name, bytes, the error they must give by their end.
fn invalid() -> Vec<(&'static str, Vec<u8>, ProxyError)> {
    use ProxyError::*;
    let line = |text: &str| text.as_bytes().to_vec();
    let mut wrong_signature = v2(0x21, 0x11, &inet4());
    wrong_signature[11] = b'\r';
    vec![
        (
            "http request",
            line("GET / HTTP/1.1\r\nHost: a\r\n\r\n"),
            BadSignature,
        ),
        ("http post", line("POST / HTTP/1.1\r\n"), BadSignature),
        (
            "http/2 preface",
            line("PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"),
            BadSignature,
        ),
        (
            "tls clienthello",
            vec![
                0x16, 0x03, 0x01, 0x02, 0x00, 0x01, 0x00, 0x01, 0xfc, 0x03, 0x03,
            ],
            BadSignature,
        ),
        ("nul", vec![0], BadSignature),
        (
            "lower case",
            line("proxy TCP4 1.2.3.4 5.6.7.8 1 2\r\n"),
            BadSignature,
        ),
        (
            "no space",
            line("PROXYTCP4 1.2.3.4 5.6.7.8 1 2\r\n"),
            BadSignature,
        ),
        (
            "empty lines then http",
            line("\r\n\r\nGET / HTTP/1.1\r\n"),
            BadSignature,
        ),
        ("v2 signature, last byte", wrong_signature, BadSignature),
        (
            "two spaces",
            line("PROXY  TCP4 1.2.3.4 5.6.7.8 1 2\r\n"),
            BadSyntax,
        ),
        (
            "tcp5",
            line("PROXY TCP5 1.2.3.4 5.6.7.8 1 2\r\n"),
            BadSyntax,
        ),
        (
            "udp4",
            line("PROXY UDP4 1.2.3.4 5.6.7.8 1 2\r\n"),
            BadSyntax,
        ),
        (
            "lower-case tcp4",
            line("PROXY tcp4 1.2.3.4 5.6.7.8 1 2\r\n"),
            BadSyntax,
        ),
        ("no protocol", line("PROXY \r\n"), BadSyntax),
        (
            "tab",
            line("PROXY TCP4\t1.2.3.4 5.6.7.8 1 2\r\n"),
            BadSyntax,
        ),
        (
            "two spaces between addresses",
            line("PROXY TCP4 1.2.3.4  5.6.7.8 1 2\r\n"),
            BadSyntax,
        ),
        (
            "bare lf",
            line("PROXY TCP4 1.2.3.4 5.6.7.8 1 2\n"),
            BadSyntax,
        ),
        (
            "cr cr",
            line("PROXY TCP4 1.2.3.4 5.6.7.8 1 2\r\r"),
            BadSyntax,
        ),
        (
            "trailing space",
            line("PROXY TCP4 1.2.3.4 5.6.7.8 1 2 \r\n"),
            BadSyntax,
        ),
        (
            "missing port",
            line("PROXY TCP4 1.2.3.4 5.6.7.8 1\r\n"),
            BadSyntax,
        ),
        (
            "extra field",
            line("PROXY TCP4 1.2.3.4 5.6.7.8 1 2 3\r\n"),
            BadSyntax,
        ),
        (
            "three octets",
            line("PROXY TCP4 1.2.3 5.6.7.8 1 2\r\n"),
            BadSyntax,
        ),
        (
            "five octets",
            line("PROXY TCP4 1.2.3.4.5 5.6.7.8 1 2\r\n"),
            BadSyntax,
        ),
        (
            "octet 256",
            line("PROXY TCP4 256.1.1.1 5.6.7.8 1 2\r\n"),
            BadSyntax,
        ),
        (
            "octet leading zero",
            line("PROXY TCP4 01.2.3.4 5.6.7.8 1 2\r\n"),
            BadSyntax,
        ),
        (
            "empty octet",
            line("PROXY TCP4 1..2.3 5.6.7.8 1 2\r\n"),
            BadSyntax,
        ),
        (
            "trailing dot",
            line("PROXY TCP4 1.2.3.4. 5.6.7.8 1 2\r\n"),
            BadSyntax,
        ),
        (
            "ipv6 in tcp4",
            line("PROXY TCP4 ::1 ::1 1 2\r\n"),
            BadSyntax,
        ),
        (
            "ipv4 in tcp6",
            line("PROXY TCP6 1.2.3.4 5.6.7.8 1 2\r\n"),
            BadSyntax,
        ),
        (
            "hostname",
            line("PROXY TCP4 localhost 5.6.7.8 1 2\r\n"),
            BadSyntax,
        ),
        (
            "port 65536",
            line("PROXY TCP4 1.2.3.4 5.6.7.8 65536 2\r\n"),
            BadSyntax,
        ),
        (
            "port plus",
            line("PROXY TCP4 1.2.3.4 5.6.7.8 +1 2\r\n"),
            BadSyntax,
        ),
        (
            "port minus",
            line("PROXY TCP4 1.2.3.4 5.6.7.8 -1 2\r\n"),
            BadSyntax,
        ),
        (
            "port leading zero",
            line("PROXY TCP4 1.2.3.4 5.6.7.8 01 2\r\n"),
            BadSyntax,
        ),
        (
            "port six digits",
            line("PROXY TCP4 1.2.3.4 5.6.7.8 1 123456\r\n"),
            BadSyntax,
        ),
        (
            "port hex",
            line("PROXY TCP4 1.2.3.4 5.6.7.8 0x1 2\r\n"),
            BadSyntax,
        ),
        (
            "nine groups",
            line("PROXY TCP6 1:2:3:4:5:6:7:8:9 ::1 1 2\r\n"),
            BadSyntax,
        ),
        (
            "seven groups",
            line("PROXY TCP6 1:2:3:4:5:6:7 ::1 1 2\r\n"),
            BadSyntax,
        ),
        (
            "two compressions",
            line("PROXY TCP6 1::2::3 ::1 1 2\r\n"),
            BadSyntax,
        ),
        (
            "triple colon",
            line("PROXY TCP6 :::1 ::1 1 2\r\n"),
            BadSyntax,
        ),
        (
            "five hex digits",
            line("PROXY TCP6 12345::1 ::1 1 2\r\n"),
            BadSyntax,
        ),
        (
            "lone leading colon",
            line("PROXY TCP6 :1 ::1 1 2\r\n"),
            BadSyntax,
        ),
        (
            "lone trailing colon",
            line("PROXY TCP6 1: ::1 1 2\r\n"),
            BadSyntax,
        ),
        (
            "scope id",
            line("PROXY TCP6 fe80::1%eth0 ::1 1 2\r\n"),
            BadSyntax,
        ),
        ("brackets", line("PROXY TCP6 [::1] ::1 1 2\r\n"), BadSyntax),
        (
            "dotted quad too long",
            line("PROXY TCP6 ::ffff:1.2.3.4.5 ::1 1 2\r\n"),
            BadSyntax,
        ),
        (
            "dotted quad not last",
            line("PROXY TCP6 ::1.2.3.4:1 ::1 1 2\r\n"),
            BadSyntax,
        ),
        (
            "dotted quad after 7 groups",
            line("PROXY TCP6 1:2:3:4:5:6:7:1.2.3.4 ::1 1 2\r\n"),
            BadSyntax,
        ),
        ("unknown bare lf", line("PROXY UNKNOWN\n"), BadSyntax),
        ("unknownx", line("PROXY UNKNOWNX\r\n"), BadSyntax),
        (
            "unknown lf inside",
            line("PROXY UNKNOWN a\nb\r\n"),
            BadSyntax,
        ),
        (
            "unknown cr inside",
            line("PROXY UNKNOWN a\rb\r\n"),
            BadSyntax,
        ),
        (
            "unknown without crlf",
            line(&format!("PROXY UNKNOWN {}", "a".repeat(93))),
            TooLong,
        ),
        (
            "unknown, crlf at 108",
            line(&format!("PROXY UNKNOWN {}\r\n", "a".repeat(92))),
            TooLong,
        ),
        (
            "tcp6 with dotted quads past 107 bytes",
            line(&format!(
                "PROXY TCP6 {0} {0} 65535 65535\r\n",
                "ffff:ffff:ffff:ffff:ffff:ffff:255.255.255.255"
            )),
            TooLong,
        ),
        ("v2 version 1", v2(0x11, 0x11, &inet4()), BadVersion),
        ("v2 version 3", v2(0x31, 0x11, &inet4()), BadVersion),
        ("v2 version 0", v2(0x01, 0x11, &inet4()), BadVersion),
        ("v2 command 2", v2(0x22, 0x11, &inet4()), BadCommand),
        ("v2 command 15", v2(0x2f, 0x11, &inet4()), BadCommand),
        ("v2 family 4", v2(0x21, 0x41, &inet4()), BadFamily),
        ("v2 protocol 3", v2(0x21, 0x13, &inet4()), BadFamily),
        ("v2 family 15", v2(0x21, 0xf1, &inet4()), BadFamily),
        (
            "v2 length 513",
            v2(0x21, 0x11, &cat(&[&inet4(), &tlv(0xe0, &[0; 498])])),
            TooLong,
        ),
        ("v2 local length 513", v2(0x20, 0x00, &[0; 513]), TooLong),
        (
            "v2 length 0xffff",
            cat(&[&v2::SIGNATURE, &[0x21, 0x11, 0xff, 0xff]]),
            TooLong,
        ),
        (
            "v2 tcp4 too short",
            v2(0x21, 0x11, &inet4()[..11]),
            BadLength,
        ),
        (
            "v2 tcp6 too short",
            v2(0x21, 0x21, &inet6()[..35]),
            BadLength,
        ),
        (
            "v2 tcp6 with tcp4 addresses",
            v2(0x21, 0x21, &inet4()),
            BadLength,
        ),
        ("v2 unix too short", v2(0x21, 0x31, &[0; 215]), BadLength),
        ("v2 udp4 too short", v2(0x21, 0x12, &[0; 4]), BadLength),
        (
            "v2 tlv past the length",
            v2(0x21, 0x11, &cat(&[&inet4(), &[0x04, 0, 5, 1, 2]])),
            BadLength,
        ),
        (
            "v2 tlv stub",
            v2(0x21, 0x11, &cat(&[&inet4(), &[0x04, 0]])),
            BadLength,
        ),
        (
            "v2 second tlv past the length",
            v2(
                0x21,
                0x21,
                &cat(&[&inet6(), &tlv(1, b"h2"), &[0x02, 0xff, 0xff]]),
            ),
            BadLength,
        ),
    ]
}

#[test]
fn valid_headers_at_every_split() {
    for (name, input, header) in valid() {
        for split in 0..input.len() {
            assert_eq!(
                parse(&input[..split]),
                Ok(Parsed::Incomplete),
                "{name}: first {split} bytes"
            );
        }
        let complete = Ok(Parsed::Complete {
            header,
            len: input.len(),
        });
        assert_eq!(parse(&input), complete, "{name}");
        // The connection's own bytes after the header are not looked at.
        let mut more = input.clone();
        more.extend_from_slice(b"GET / HTTP/1.1\r\nHost: a\r\n\r\n");
        assert_eq!(parse(&more), complete, "{name}, request after it");
        more.extend_from_slice(&[0xff; 600]);
        assert_eq!(parse(&more), complete, "{name}, binary bytes after it");
    }
}

#[test]
fn invalid_headers_fail_by_their_end_and_stay_failed() {
    for (name, input, error) in invalid() {
        let mut failed = None;
        for split in 0..=input.len() {
            let got = parse(&input[..split]);
            match (failed, got) {
                (_, Ok(Parsed::Complete { .. })) => panic!("{name}: complete at {split}"),
                (None, Ok(Parsed::Incomplete)) => {}
                (None, Err(e)) => failed = Some(e),
                (Some(e), got) => assert_eq!(got, Err(e), "{name}: first {split} bytes"),
            }
        }
        assert_eq!(failed, Some(error), "{name}");
    }
}

/// Other protocols are refused within their first few bytes, without waiting for more.
#[test]
fn other_protocols_are_refused_at_once() {
    let table: &[(&[u8], usize)] = &[
        (b"GET / HTTP/1.1\r\n", 1),
        (b"HEAD / HTTP/1.1\r\n", 1),
        (b"POST / HTTP/1.1\r\n", 2),
        (b"PUT / HTTP/1.1\r\n", 2),
        (b"PATCH / HTTP/1.1\r\n", 2),
        (b"PRI * HTTP/2.0\r\n", 3),
        (b"PROPFIND / HTTP/1.1\r\n", 4),
        (b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03", 1),
        (b"\r\n\r\nGET / HTTP/1.1\r\n", 5),
        (b"\r\nGET / HTTP/1.1\r\n", 3),
        (b"SSH-2.0-OpenSSH_9.6\r\n", 1),
    ];
    for (input, within) in table {
        let refused_at = (0..=input.len()).find(|&n| parse(&input[..n]).is_err());
        assert!(
            refused_at.is_some_and(|n| n <= *within),
            "{:?} refused at {refused_at:?}",
            input.escape_ascii().to_string()
        );
    }
    // A v2 length that cannot fit is refused on its high byte.
    let mut huge = v2::SIGNATURE.to_vec();
    huge.extend([0x21, 0x11, 0x03]);
    assert_eq!(parse(&huge), Err(ProxyError::TooLong));
}

#[test]
fn writers_write_the_expected_bytes() {
    let (s4, d4) = (addr("192.0.2.1:56324"), addr("198.51.100.2:443"));
    assert_eq!(
        write_v1(s4, d4).as_bytes(),
        b"PROXY TCP4 192.0.2.1 198.51.100.2 56324 443\r\n"
    );
    assert_eq!(
        write_v1(addr("[2001:db8::1]:0"), addr("[::]:65535")).as_bytes(),
        b"PROXY TCP6 2001:db8::1 :: 0 65535\r\n"
    );
    // Mixed families: the IPv4 side is written IPv4-mapped.
    assert_eq!(
        write_v1(addr("192.0.2.1:1"), addr("[2001:db8::2]:2")).as_bytes(),
        b"PROXY TCP6 ::ffff:c000:201 2001:db8::2 1 2\r\n"
    );
    assert_eq!(write_v1_unknown().as_bytes(), b"PROXY UNKNOWN\r\n");
    assert_eq!(write_v2(s4, d4).as_bytes(), &v2(0x21, 0x11, &inet4())[..]);
    assert_eq!(
        write_v2(addr("[2001:db8::1]:1234"), addr("[2001:db8::2]:80")).as_bytes(),
        &v2(0x21, 0x21, &inet6())[..]
    );
    assert_eq!(write_v2_local().as_bytes(), &v2(0x20, 0x00, &[])[..]);
    let longest = write_v1(
        addr(&format!("[{FULL6}]:65535")),
        addr(&format!("[{FULL6}]:65535")),
    );
    assert_eq!(longest.as_bytes().len(), 104);
}

#[test]
fn ipv6_text_is_rfc5952_in_hex_groups() {
    let table = [
        ("::", "::"),
        ("::1", "::1"),
        ("1::", "1::"),
        ("2001:db8::1", "2001:db8::1"),
        ("2001:DB8:0:0:0:0:0:1", "2001:db8::1"),
        ("1:0:0:2:0:0:0:3", "1:0:0:2::3"),
        ("1:0:0:2:0:0:3:4", "1::2:0:0:3:4"),
        ("1:0:2:3:4:5:6:7", "1:0:2:3:4:5:6:7"),
        ("0:1:2:3:4:5:6:0", "0:1:2:3:4:5:6:0"),
        ("::ffff:192.0.2.1", "::ffff:c000:201"),
        (FULL6, FULL6),
    ];
    for (ip, text) in table {
        let mut out = HeaderBytes::new();
        v1::write_ipv6(&mut out, &ip.parse().expect("test address"));
        assert_eq!(out.as_bytes(), text.as_bytes(), "{ip}");
    }
}

#[test]
fn round_trips() {
    let table = [
        (
            "192.0.2.1:56324",
            "198.51.100.2:443",
            "192.0.2.1:56324",
            "198.51.100.2:443",
        ),
        (
            "0.0.0.0:0",
            "255.255.255.255:65535",
            "0.0.0.0:0",
            "255.255.255.255:65535",
        ),
        ("[2001:db8::1]:1", "[::1]:2", "[2001:db8::1]:1", "[::1]:2"),
        ("[::]:0", "[::]:0", "[::]:0", "[::]:0"),
        (
            "192.0.2.1:1",
            "[2001:db8::2]:2",
            "[::ffff:192.0.2.1]:1",
            "[2001:db8::2]:2",
        ),
        (
            "[2001:db8::2]:2",
            "192.0.2.1:1",
            "[2001:db8::2]:2",
            "[::ffff:192.0.2.1]:1",
        ),
        ("[fe80::1%7]:80", "[::1]:81", "[fe80::1]:80", "[::1]:81"),
    ];
    for (source, destination, want_source, want_destination) in table {
        let want = pair(want_source, want_destination);
        for written in [
            write_v1(addr(source), addr(destination)),
            write_v2(addr(source), addr(destination)),
        ] {
            let len = written.as_bytes().len();
            assert_eq!(
                parse(written.as_bytes()),
                Ok(Parsed::Complete { header: want, len }),
                "{written:?}"
            );
        }
    }
    for written in [write_v1_unknown(), write_v2_local()] {
        let len = written.as_bytes().len();
        let header = ProxyHeader::KEEP_PEER;
        assert_eq!(
            parse(written.as_bytes()),
            Ok(Parsed::Complete { header, len })
        );
    }
}

#[test]
fn a_written_header_appends_to_a_buffer() {
    let mut out = crate::buffer::Buffer::default();
    out.extend(write_v2(addr("192.0.2.1:1"), addr("192.0.2.2:2")).as_bytes());
    out.extend(b"GET / HTTP/1.1\r\n\r\n");
    let Ok(Parsed::Complete { header, len }) = parse(out.data()) else {
        panic!("no header in {:?}", out.data());
    };
    assert_eq!(header.client(addr("10.0.0.1:9")), addr("192.0.2.1:1"));
    assert_eq!(&out.data()[len..], b"GET / HTTP/1.1\r\n\r\n");
    assert_eq!(
        ProxyHeader::KEEP_PEER.client(addr("10.0.0.1:9")),
        addr("10.0.0.1:9")
    );
}

#[test]
fn reasons_are_label_words() {
    use ProxyError::*;
    for e in [
        BadSignature,
        BadSyntax,
        TooLong,
        BadVersion,
        BadCommand,
        BadFamily,
        BadLength,
    ] {
        let word = e.reason();
        assert!(
            word.bytes().all(|b| b.is_ascii_lowercase() || b == b'_'),
            "{word}"
        );
        assert!(!e.to_string().is_empty());
    }
    assert_eq!(TooLong.reason(), "too_long");
    assert_eq!(BadSignature.to_string(), "not a PROXY protocol header");
}
