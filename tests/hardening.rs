//! Hostile clients and broken backends, byte by byte (spec §7, issue 6). Two tables:
//! bad (and borderline) requests, and bad responses from a scripted backend. Each row
//! states exactly what the client gets (statuses in order, then a close or a connection
//! still in sync), what the backend received, and lbd serves a fresh client afterwards.
//! The chosen answer for each row is written down in docs/http.md ("Hostile input").

use std::collections::HashMap;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use crate::util::*;

/// lbd closes the client connection after the listed responses.
const CLOSE: bool = true;
/// The connection stays open and in sync: a follow-up request on it is answered.
const OPEN: bool = false;

/// One request row.
struct Case {
    name: &'static str,
    input: Vec<u8>,
    /// Statuses of the responses the client reads, in order.
    statuses: Vec<u16>,
    /// See [`CLOSE`] and [`OPEN`].
    closed: bool,
    /// What the backend received, one `METHOD TARGET FRAMING BODY` line per request.
    upstream: Vec<&'static str>,
    /// The client shuts its write side after sending.
    eof: bool,
}

fn case(
    name: &'static str,
    input: impl AsRef<[u8]>,
    statuses: &[u16],
    closed: bool,
    upstream: &[&'static str],
) -> Case {
    Case {
        name,
        input: input.as_ref().to_vec(),
        statuses: statuses.to_vec(),
        closed,
        upstream: upstream.to_vec(),
        eof: false,
    }
}

/// Refused with `status` and closed; nothing reaches the backend.
fn refused(name: &'static str, input: impl AsRef<[u8]>, status: u16) -> Case {
    case(name, input, &[status], CLOSE, &[])
}

/// Forwarded as `upstream`, answered 200, connection kept.
fn served(name: &'static str, input: impl AsRef<[u8]>, upstream: &'static str) -> Case {
    case(name, input, &[200], OPEN, &[upstream])
}

/// A POST with `headers` (after Host) and `body`.
fn post(headers: &str, body: &str) -> Vec<u8> {
    format!("POST / HTTP/1.1\r\nHost: a\r\n{headers}\r\n{body}").into_bytes()
}

/// A GET with one extra raw header block.
fn get_with(headers: &[u8]) -> Vec<u8> {
    [b"GET / HTTP/1.1\r\nHost: a\r\n", headers, b"\r\n"].concat()
}

/// A chunked POST with this body.
fn chunked(body: &[u8]) -> Vec<u8> {
    [
        &b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n"[..],
        body,
    ]
    .concat()
}

/// Every request row.
fn request_cases() -> Vec<Case> {
    let te_hello = "5\r\nhello\r\n0\r\n\r\n";
    let mut many_headers = String::from("GET / HTTP/1.1\r\nHost: a\r\n");
    for i in 0..101 {
        many_headers.push_str(&format!("X-{i}: v\r\n"));
    }
    many_headers.push_str("\r\n");
    let mut rows = vec![
        // Content-Length and Transfer-Encoding together.
        refused("cl_then_te", post("Content-Length: 5\r\nTransfer-Encoding: chunked\r\n", "0\r\n\r\n"), 400),
        refused("te_then_cl", post("Transfer-Encoding: chunked\r\nContent-Length: 5\r\n", "0\r\n\r\n"), 400),
        refused("cl0_and_te", post("Content-Length: 0\r\nTransfer-Encoding: chunked\r\n", "0\r\n\r\n"), 400),
        refused("cl_te_smuggled_get", post("Content-Length: 35\r\nTransfer-Encoding: chunked\r\n", "0\r\n\r\nGET /smuggled HTTP/1.1\r\nHost: a\r\n\r\n"), 400),
        refused("cl_and_unknown_te", post("Transfer-Encoding: xchunked\r\nContent-Length: 5\r\n", "hello"), 400),
        refused("te_space_before_colon", post("Transfer-Encoding : chunked\r\n", te_hello), 400),
        // Content-Length values.
        refused("cl_two_values", post("Content-Length: 5\r\nContent-Length: 6\r\n", "hello!"), 400),
        served("cl_same_twice", post("Content-Length: 5\r\nContent-Length: 5\r\n", "hello"), "POST / cl=5 hello"),
        refused("cl_list_same", post("Content-Length: 5, 5\r\n", "hello"), 400),
        refused("cl_list_differ", post("Content-Length: 5, 6\r\n", "hello"), 400),
        refused("cl_plus_sign", post("Content-Length: +5\r\n", "hello"), 400),
        refused("cl_minus_sign", post("Content-Length: -5\r\n", "hello"), 400),
        refused("cl_hex", post("Content-Length: 0x5\r\n", "hello"), 400),
        refused("cl_inner_space", post("Content-Length: 5 5\r\n", "hello"), 400),
        served("cl_surrounding_spaces", post("Content-Length:   5  \r\n", "hello"), "POST / cl=5 hello"),
        served("cl_surrounding_tabs", post("Content-Length:\t5\t\r\n", "hello"), "POST / cl=5 hello"),
        served("cl_no_space", post("Content-Length:5\r\n", "hello"), "POST / cl=5 hello"),
        served("cl_leading_zeros", post("Content-Length: 0005\r\n", "hello"), "POST / cl=5 hello"),
        refused("cl_exponent", post("Content-Length: 1e3\r\n", "hello"), 400),
        refused("cl_decimal", post("Content-Length: 5.0\r\n", "hello"), 400),
        refused("cl_empty", post("Content-Length: \r\n", "hello"), 400),
        refused("cl_u64_overflow", post("Content-Length: 18446744073709551616\r\n", "hello"), 400),
        refused("cl_20_digits", post("Content-Length: 99999999999999999999\r\n", "hello"), 400),
        refused("cl_nul", "POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 5\0\r\n\r\nhello", 400),
        refused("cl_fullwidth_digit", post("Content-Length: \u{ff15}\r\n", "hello"), 400),
        refused("cl_above_body_limit", post("Content-Length: 123456789012\r\n", ""), 413),
        refused("cl_19_digits", post("Content-Length: 1234567890123456789\r\n", ""), 413),
        refused("cl_u64_max", post("Content-Length: 18446744073709551615\r\n", ""), 413),
        served("cl_leading_zeros_20_digits", post("Content-Length: 00000000000000000005\r\n", "hello"), "POST / cl=5 hello"),
        served("cl_zero_on_get", "GET / HTTP/1.1\r\nHost: a\r\nContent-Length: 0\r\n\r\n", "GET / -"),
        served("cl_body_on_get", "GET / HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\n\r\nhello", "GET / cl=5 hello"),
        // Transfer-Encoding values.
        served("te_chunked", chunked(te_hello.as_bytes()), "POST / te=chunked hello"),
        served("te_upper_case", post("Transfer-Encoding: CHUNKED\r\n", te_hello), "POST / te=chunked hello"),
        served("te_surrounding_spaces", post("Transfer-Encoding:   chunked  \r\n", te_hello), "POST / te=chunked hello"),
        refused("te_gzip", post("Transfer-Encoding: gzip\r\n", "hello"), 501),
        refused("te_gzip_chunked", post("Transfer-Encoding: gzip, chunked\r\n", te_hello), 501),
        refused("te_chunked_gzip", post("Transfer-Encoding: chunked, gzip\r\n", te_hello), 501),
        refused("te_chunked_twice_listed", post("Transfer-Encoding: chunked, chunked\r\n", te_hello), 501),
        refused("te_chunked_two_fields", post("Transfer-Encoding: chunked\r\nTransfer-Encoding: chunked\r\n", te_hello), 501),
        refused("te_identity", post("Transfer-Encoding: identity\r\n", "hello"), 501),
        refused("te_xchunked", post("Transfer-Encoding: xchunked\r\n", te_hello), 501),
        refused("te_quoted", post("Transfer-Encoding: \"chunked\"\r\n", te_hello), 501),
        refused("te_with_parameter", post("Transfer-Encoding: chunked;q=1\r\n", te_hello), 501),
        refused("te_empty", post("Transfer-Encoding: \r\n", te_hello), 501),
        refused("te_vertical_tab", post("Transfer-Encoding: \x0bchunked\r\n", te_hello), 400),
        refused("te_folded", post("Transfer-Encoding:\r\n chunked\r\n", te_hello), 400),
        served("te_on_get", "GET / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n", "GET / te=chunked"),
        refused("te_on_http10", "POST / HTTP/1.0\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n", 400),
        refused("te_gzip_on_http10", "POST / HTTP/1.0\r\nTransfer-Encoding: gzip\r\n\r\nhello", 400),
        // Chunked framing of a request body.
        refused("chunk_size_not_hex", chunked(b"zz\r\nhello\r\n0\r\n\r\n"), 400),
        refused("chunk_size_missing", chunked(b"\r\nhello\r\n0\r\n\r\n"), 400),
        refused("chunk_size_negative", chunked(b"-5\r\nhello\r\n0\r\n\r\n"), 400),
        refused("chunk_size_0x", chunked(b"0x5\r\nhello\r\n0\r\n\r\n"), 400),
        refused("chunk_size_plus", chunked(b"+5\r\nhello\r\n0\r\n\r\n"), 400),
        refused("chunk_size_leading_space", chunked(b" 5\r\nhello\r\n0\r\n\r\n"), 400),
        refused("chunk_size_trailing_space", chunked(b"5 \r\nhello\r\n0\r\n\r\n"), 400),
        refused("chunk_size_garbage", chunked(b"5 x\r\nhello\r\n0\r\n\r\n"), 400),
        // 2^64: 17 digits, but past the 1 MiB limit from its 7th digit on, where it is refused.
        refused("chunk_size_overflow", chunked(b"10000000000000000\r\nhello\r\n0\r\n\r\n"), 413),
        served("chunk_size_leading_zeros", chunked(b"0005\r\nhello\r\n0\r\n\r\n"), "POST / te=chunked hello"),
        refused("chunk_size_bare_lf", chunked(b"5\nhello\r\n0\r\n\r\n"), 400),
        refused("chunk_size_bare_cr", chunked(b"5\rhello\r\n0\r\n\r\n"), 400),
        refused("chunk_data_too_long", chunked(b"5\r\nhelloX\r\n0\r\n\r\n"), 400),
        refused("chunk_data_bare_lf", chunked(b"5\r\nhello\n0\r\n\r\n"), 400),
        refused("chunk_data_no_crlf", chunked(b"5\r\nhello0\r\n\r\n"), 400),
        served("chunk_extension", chunked(b"5;name=value\r\nhello\r\n0\r\n\r\n"), "POST / te=chunked hello"),
        served("chunk_extension_quoted", chunked(b"5;a=\"b c\"\r\nhello\r\n0\r\n\r\n"), "POST / te=chunked hello"),
        refused("chunk_extension_bare_lf", chunked(b"5;a\nb\r\nhello\r\n0\r\n\r\n"), 400),
        refused("chunk_extension_control_byte", chunked(b"5;\x01\r\nhello\r\n0\r\n\r\n"), 400),
        served("chunk_size_16_digits", chunked(b"0000000000000005\r\nhello\r\n0\r\n\r\n"), "POST / te=chunked hello"),
        refused("chunk_size_17_digits", chunked(b"00000000000000005\r\nhello\r\n0\r\n\r\n"), 400),
        // Sizes that cannot be real: 413 at the size line, no data awaited (none follows).
        refused("chunk_size_u64_max", chunked(b"ffffffffffffffff\r\n"), 413),
        refused("chunk_size_over_body_limit", chunked(b"100001\r\n"), 413),
        refused("chunk_size_over_body_limit_no_line_end", chunked(b"100001"), 413),
        refused("chunked_total_over_body_limit", chunked(&[&b"80000\r\n"[..], &vec![b'a'; 0x80000], b"\r\n80001\r\n"].concat()), 413),
        // Extensions: *( BWS ";" BWS token [ BWS "=" BWS ( token / quoted-string ) ] ).
        served("chunk_extension_bws", chunked(b"5 ; a = b\r\nhello\r\n0\r\n\r\n"), "POST / te=chunked hello"),
        served("chunk_extension_quoted_pair", chunked(b"5;a=\"b\\\"c\";d\r\nhello\r\n0\r\n\r\n"), "POST / te=chunked hello"),
        refused("chunk_extension_empty", chunked(b"2;\r\nhi\r\n0\r\n\r\n"), 400),
        refused("chunk_extension_unbalanced_quote", chunked(b"5;a=\"b\r\nhello\r\n0\r\n\r\n"), 400),
        refused("chunk_extension_no_value", chunked(b"5;a=\r\nhello\r\n0\r\n\r\n"), 400),
        refused("chunk_extension_name_then_space", chunked(b"5;a \r\nhello\r\n0\r\n\r\n"), 400),
        refused("chunk_extension_bad_token", chunked(b"5;a=b@c\r\nhello\r\n0\r\n\r\n"), 400),
        refused("chunk_extension_control_no_end", chunked(b"5;a=\"b\x01"), 400),
        refused("chunk_size_garbage_no_end", chunked(b"5x"), 400),
        refused("chunk_extension_too_long", chunked(format!("5;{}\r\nhello\r\n0\r\n\r\n", "a".repeat(5000)).as_bytes()), 400),
        served("trailer_field", chunked(b"5\r\nhello\r\n0\r\nX-T: v\r\n\r\n"), "POST / te=chunked hello"),
        served("trailer_content_length_ignored", chunked(b"5\r\nhello\r\n0\r\nContent-Length: 99\r\n\r\n"), "POST / te=chunked hello"),
        refused("trailer_without_colon", chunked(b"5\r\nhello\r\n0\r\nbad trailer\r\n\r\n"), 400),
        refused("trailer_bare_lf", chunked(b"5\r\nhello\r\n0\r\nX: y\n\r\n"), 400),
        refused("trailer_obs_fold", chunked(b"5\r\nhello\r\n0\r\nX: y\r\n z\r\n\r\n"), 400),
        refused("last_chunk_bare_lf", chunked(b"5\r\nhello\r\n0\r\n\n"), 400),
        refused("trailers_too_large", chunked(format!("0\r\n{}\r\n", "X-Big: yyyyyyyyyyyyyyyyyyyyyyyyyyyyyy\r\n".repeat(600)).as_bytes()), 400),
        // Line endings.
        refused("bare_lf_head", "GET / HTTP/1.1\nHost: a\n\n", 400),
        refused("mixed_line_endings", "GET / HTTP/1.1\r\nHost: a\n\r\n", 400),
        served("empty_lines_before_request", "\r\n\r\nGET / HTTP/1.1\r\nHost: a\r\n\r\n", "GET / -"),
        served("empty_lines_at_the_limit", "\r\n\r\n\r\n\r\nGET / HTTP/1.1\r\nHost: a\r\n\r\n", "GET / -"),
        refused("too_many_empty_lines", "\r\n\r\n\r\n\r\n\r\nGET / HTTP/1.1\r\nHost: a\r\n\r\n", 400),
        refused("bare_lf_empty_line", "\nGET / HTTP/1.1\r\nHost: a\r\n\r\n", 400),
        // Refused at the first bad byte. None of these ends its head: waiting for the end
        // would give a 408 when client_header expires, not the 400 expected.
        refused("tls_client_hello", [&b"\x16\x03\x01\x00\xc8\x01\x00\x00\xc4\x03\x03"[..], &[0x5a; 32], b"\x00\x00\x02\x13\x01\x01\x00"].concat(), 400),
        refused("binary_junk", b"\x00\x01\x02\xff\xfe", 400),
        refused("cr_only_line_ends", "GET / HTTP/1.1\rHost: a\r\r", 400),
        refused("bare_lf_ends_request_line", "GET / HTTP/1.1\n", 400),
        refused("bare_lf_ends_field_line", "GET / HTTP/1.1\r\nHost: a\n", 400),
        refused("stray_cr_before_request", "\rGET / HTTP/1.1\r\n", 400),
        refused("space_before_request", " GET / HTTP/1.1\r\n", 400),
        refused("bad_field_name_no_end", "GET / HTTP/1.1\r\nHost: a\r\nBad Name", 400),
        refused("control_byte_in_value_no_end", "GET / HTTP/1.1\r\nHost: a\r\nX: \x01", 400),
        // After a complete request, the next bytes must begin a request line.
        case("junk_after_request", "GET /1 HTTP/1.1\r\nHost: a\r\n\r\nGARBAGE\x00", &[200, 400], CLOSE, &["GET /1 -"]),
        case("stray_cr_after_request", "GET /1 HTTP/1.1\r\nHost: a\r\n\r\n\rGET /2 HTTP/1.1\r\nHost: a\r\n\r\n", &[200, 400], CLOSE, &["GET /1 -"]),
        case("bare_lf_after_request", "GET /1 HTTP/1.1\r\nHost: a\r\n\r\n\nGET /2 HTTP/1.1\r\nHost: a\r\n\r\n", &[200, 400], CLOSE, &["GET /1 -"]),
        case("tls_after_request", "GET /1 HTTP/1.1\r\nHost: a\r\n\r\n\x16\x03\x01\x00", &[200, 400], CLOSE, &["GET /1 -"]),
        case("empty_line_after_body", "POST /1 HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\n\r\nhello\r\nGET /2 HTTP/1.1\r\nHost: a\r\n\r\n", &[200, 200], OPEN, &["POST /1 cl=5 hello", "GET /2 -"]),
        refused("bare_cr_in_value", get_with(b"X: a\rb\r\n"), 400),
        refused("bare_cr_ends_request_line", "GET / HTTP/1.1\rHost: a\r\n\r\n", 400),
        refused("cr_cr_lf", "GET / HTTP/1.1\r\r\nHost: a\r\n\r\n", 400),
        refused("bare_cr_in_target", "GET /a\rb HTTP/1.1\r\nHost: a\r\n\r\n", 400),
        refused("lf_inside_header_name", get_with(b"X-A\nB: c\r\n"), 400),
        // Framing header names spelled with '_', folded lines.
        refused("content_length_underscore", post("Content_Length: 5\r\n", "hello"), 400),
        refused("transfer_encoding_underscore", post("Transfer_Encoding: chunked\r\n", te_hello), 400),
        refused("content_length_underscore_lower", post("content_length: 5\r\n", "hello"), 400),
        served("other_header_with_underscore", get_with(b"X_Custom: a\r\n"), "GET / -"),
        refused("obs_fold_space", get_with(b"X: a\r\n b\r\n"), 400),
        refused("obs_fold_tab", get_with(b"X: a\r\n\tb\r\n"), 400),
        refused("obs_fold_content_length", post("Content-Length: 5\r\n 0\r\n", "hello"), 400),
        refused("space_before_first_header", "GET / HTTP/1.1\r\n Host: a\r\n\r\n", 400),
        // Request line bytes.
        refused("method_nul", "G\0T / HTTP/1.1\r\nHost: a\r\n\r\n", 400),
        refused("method_separator", "GE(T / HTTP/1.1\r\nHost: a\r\n\r\n", 400),
        refused("method_utf8", "G\u{c9}T / HTTP/1.1\r\nHost: a\r\n\r\n", 400),
        refused("method_empty", " / HTTP/1.1\r\nHost: a\r\n\r\n", 400),
        served("method_lower_case_forwarded", "get / HTTP/1.1\r\nHost: a\r\n\r\n", "get / -"),
        refused("target_space", "GET /a b HTTP/1.1\r\nHost: a\r\n\r\n", 400),
        refused("target_tab", "GET /a\tb HTTP/1.1\r\nHost: a\r\n\r\n", 400),
        refused("target_nul", "GET /a\0b HTTP/1.1\r\nHost: a\r\n\r\n", 400),
        refused("target_del", "GET /a\x7fb HTTP/1.1\r\nHost: a\r\n\r\n", 400),
        refused("target_relative", "GET a HTTP/1.1\r\nHost: a\r\n\r\n", 400),
        refused("target_star_on_get", "GET * HTTP/1.1\r\nHost: a\r\n\r\n", 400),
        served("target_star_on_options", "OPTIONS * HTTP/1.1\r\nHost: a\r\n\r\n", "OPTIONS * -"),
        served("target_absolute_form", "GET http://b.example/x?y HTTP/1.1\r\nHost: a\r\n\r\n", "GET /x?y -"),
        refused("target_userinfo", "GET http://u@b/x HTTP/1.1\r\nHost: a\r\n\r\n", 400),
        refused("target_query_without_path", "GET http://b?x HTTP/1.1\r\nHost: a\r\n\r\n", 400),
        refused("target_other_scheme", "GET ftp://b/x HTTP/1.1\r\nHost: a\r\n\r\n", 400),
        refused("connect_method", "CONNECT b:443 HTTP/1.1\r\nHost: b:443\r\n\r\n", 405),
        served("version_1_2", "GET / HTTP/1.2\r\nHost: a\r\n\r\n", "GET / -"),
        served("version_1_9", "POST / HTTP/1.9\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n", "POST / te=chunked hello"),
        refused("version_1_2_without_host", "GET / HTTP/1.2\r\n\r\n", 400),
        refused("version_1_10", "GET / HTTP/1.10\r\nHost: a\r\n", 400),
        refused("version_major_2_no_end", "GET / HTTP/2", 400),
        refused("version_2_0", "GET / HTTP/2.0\r\nHost: a\r\n\r\n", 400),
        refused("version_lower_case", "GET / http/1.1\r\nHost: a\r\n\r\n", 400),
        refused("version_missing", "GET /\r\nHost: a\r\n\r\n", 400),
        refused("version_trailing_space", "GET / HTTP/1.1 \r\nHost: a\r\n\r\n", 400),
        refused("double_space", "GET  / HTTP/1.1\r\nHost: a\r\n\r\n", 400),
        // Request target bytes outside RFC 3986 (no head end: refused at the byte).
        refused("target_fragment", "GET /a#b HTTP/1.1\r\nHost: a\r\n", 400),
        refused("target_double_quote", "GET /a\"b HTTP/1.1\r\nHost: a\r\n", 400),
        refused("target_less_than", "GET /a<b HTTP/1.1\r\nHost: a\r\n", 400),
        refused("target_greater_than", "GET /a>b HTTP/1.1\r\nHost: a\r\n", 400),
        refused("target_backslash", "GET /a\\b HTTP/1.1\r\nHost: a\r\n", 400),
        refused("target_caret", "GET /a^b HTTP/1.1\r\nHost: a\r\n", 400),
        refused("target_backtick", "GET /a`b HTTP/1.1\r\nHost: a\r\n", 400),
        refused("target_brace_open", "GET /a{b HTTP/1.1\r\nHost: a\r\n", 400),
        refused("target_brace_close", "GET /a}b HTTP/1.1\r\nHost: a\r\n", 400),
        refused("target_pipe", "GET /a|b HTTP/1.1\r\nHost: a\r\n", 400),
        refused("target_utf8", "GET /caf\u{e9} HTTP/1.1\r\nHost: a\r\n", 400),
        refused("target_latin1", b"GET /caf\xe9 HTTP/1.1\r\nHost: a\r\n", 400),
        refused("target_control_no_end", "GET /a\x01b HTTP/1.1\r\nHost: a\r\n", 400),
        served("target_percent_left_as_sent", "GET /a%2Fb%zz%41 HTTP/1.1\r\nHost: a\r\n\r\n", "GET /a%2Fb%zz%41 -"),
        served("target_every_allowed_byte", "GET /aZ09-._~:@!$&'()*+,;=?/[]%20 HTTP/1.1\r\nHost: a\r\n\r\n", "GET /aZ09-._~:@!$&'()*+,;=?/[]%20 -"),
        // Header bytes.
        refused("header_name_nul", get_with(b"X\0: a\r\n"), 400),
        refused("header_value_nul", get_with(b"X: a\0b\r\n"), 400),
        refused("header_value_del", get_with(b"X: a\x7fb\r\n"), 400),
        served("header_value_obs_text", get_with(b"X: caf\xe9\r\n"), "GET / -"),
        refused("header_name_empty", get_with(b": a\r\n"), 400),
        refused("header_without_colon", get_with(b"Foo\r\n"), 400),
        refused("header_name_space", get_with(b"Bad Name: a\r\n"), 400),
        refused("header_name_utf8", get_with("X-\u{e9}: a\r\n".as_bytes()), 400),
        // Host.
        refused("host_missing", "GET / HTTP/1.1\r\n\r\n", 400),
        refused("host_twice_same", "GET / HTTP/1.1\r\nHost: a\r\nHost: a\r\n\r\n", 400),
        refused("host_twice_differ", "GET / HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n", 400),
        refused("host_empty", "GET / HTTP/1.1\r\nHost: \r\n\r\n", 400),
        refused("host_space", "GET / HTTP/1.1\r\nHost: a b\r\n\r\n", 400),
        refused("host_userinfo", "GET / HTTP/1.1\r\nHost: u@a\r\n\r\n", 400),
        refused("host_port_not_numeric", "GET / HTTP/1.1\r\nHost: a:8x\r\n\r\n", 400),
        refused("host_port_too_long", "GET / HTTP/1.1\r\nHost: a:123456\r\n\r\n", 400),
        refused("host_port_above_65535", "GET / HTTP/1.1\r\nHost: a:99999\r\n\r\n", 400),
        refused("host_port_65536", "GET / HTTP/1.1\r\nHost: a:65536\r\n\r\n", 400),
        served("host_port_65535", "GET / HTTP/1.1\r\nHost: a:65535\r\n\r\n", "GET / -"),
        refused("target_authority_port_above_65535", "GET http://b:70000/x HTTP/1.1\r\nHost: a\r\n\r\n", 400),
        refused("host_slash", "GET / HTTP/1.1\r\nHost: a/b\r\n\r\n", 400),
        served("host_ipv6", "GET / HTTP/1.1\r\nHost: [::1]:8080\r\n\r\n", "GET / -"),
        refused("host_invalid_with_absolute_target", "GET http://b/x HTTP/1.1\r\nHost: a b\r\n\r\n", 400),
        case("host_missing_http10", "GET / HTTP/1.0\r\n\r\n", &[200], CLOSE, &["GET / -"]),
        refused("host_twice_http10", "GET / HTTP/1.0\r\nHost: a\r\nHost: b\r\n\r\n", 400),
        // Pipelining: responses are counted, nothing after a refusal is parsed.
        case("pipeline_two_gets", "GET /1 HTTP/1.1\r\nHost: a\r\n\r\nGET /2 HTTP/1.1\r\nHost: a\r\n\r\n", &[200, 200], OPEN, &["GET /1 -", "GET /2 -"]),
        case("pipeline_good_then_bad", "GET /1 HTTP/1.1\r\nHost: a\r\n\r\nGET /2 HTTP/1.1\r\n\r\n", &[200, 400], CLOSE, &["GET /1 -"]),
        case("pipeline_bad_then_good", "GET /1 HTTP/1.1\r\n\r\nGET /2 HTTP/1.1\r\nHost: a\r\n\r\n", &[400], CLOSE, &[]),
        case("pipeline_body_then_get", "POST /1 HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\n\r\nhelloGET /2 HTTP/1.1\r\nHost: a\r\n\r\n", &[200, 200], OPEN, &["POST /1 cl=5 hello", "GET /2 -"]),
        case("pipeline_chunked_then_get", [chunked(te_hello.as_bytes()), b"GET /2 HTTP/1.1\r\nHost: a\r\n\r\n".to_vec()].concat(), &[200, 200], OPEN, &["POST / te=chunked hello", "GET /2 -"]),
        case("pipeline_after_http10_close", "GET /1 HTTP/1.0\r\n\r\nGET /2 HTTP/1.1\r\nHost: a\r\n\r\n", &[200], CLOSE, &["GET /1 -"]),
        case("pipeline_after_connection_close", "GET /1 HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\nGET /2 HTTP/1.1\r\nHost: a\r\n\r\n", &[200], CLOSE, &["GET /1 -"]),
        case("pipeline_after_bad_chunk", [chunked(b"zz\r\n"), b"GET /2 HTTP/1.1\r\nHost: a\r\n\r\n".to_vec()].concat(), &[400], CLOSE, &[]),
        // Limits.
        refused("too_many_headers", many_headers, 431),
        refused("head_too_large", format!("GET / HTTP/1.1\r\nHost: a\r\nX: {}\r\n\r\n", "b".repeat(20_000)), 431),
        refused("request_line_too_long", format!("GET /{} HTTP/1.1\r\nHost: a\r\n\r\n", "a".repeat(20_000)), 414),
    ];
    // The client goes away: no response, nothing complete upstream.
    let mut mid_head = case("eof_mid_head", "GET / HTTP/1.1\r\nHost:", &[], CLOSE, &[]);
    mid_head.eof = true;
    let mut mid_body = case(
        "eof_mid_body",
        post("Content-Length: 10\r\n", "hello"),
        &[],
        CLOSE,
        &[],
    );
    mid_body.eof = true;
    rows.extend([mid_head, mid_body]);
    rows
}

/// A backend that answers every request with a summary of what it received.
fn summary(req: &Req) -> String {
    let framing = match (
        req.header("transfer-encoding"),
        req.header("content-length"),
    ) {
        (Some(te), _) => format!("te={te}"),
        (None, Some(cl)) => format!("cl={cl}"),
        (None, None) => "-".to_string(),
    };
    let line = format!(
        "{} {} {framing} {}",
        req.method,
        req.target,
        String::from_utf8_lossy(&req.body)
    );
    line.trim_end().to_string()
}

/// How a row's bytes are written: in one piece, or trickled in small pieces so lbd reads
/// them at many split points (the answer must not depend on where reads end).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Feed {
    Whole,
    Trickled,
}

/// Most writes a trickled row is cut into (a byte each for rows up to this long).
const TRICKLE_PIECES: usize = 256;

/// Writes `bytes` as `feed` says. A trickled write stops quietly at the first error: the
/// peer may have answered and closed while the rest was still coming, which the row's
/// checks then judge.
fn feed(stream: &mut TcpStream, bytes: &[u8], feed: Feed) {
    match feed {
        Feed::Whole => stream.write_all(bytes).unwrap(),
        Feed::Trickled => {
            for piece in bytes.chunks(bytes.len().div_ceil(TRICKLE_PIECES).max(1)) {
                if stream.write_all(piece).is_err() {
                    return;
                }
            }
        }
    }
}

fn run_request_case(addr: SocketAddr, backend: &TestBackend, case: &Case, how: Feed) {
    let name = case.name;
    let before = backend.received().len();
    let mut c = Client::connect(addr);
    feed(&mut c.stream, &case.input, how);
    if case.eof {
        c.shutdown_write();
    }
    for (i, &want) in case.statuses.iter().enumerate() {
        let r = c
            .try_response(false)
            .unwrap_or_else(|e| panic!("{name}: response {i}: {e}"));
        assert_eq!(r.status, want, "{name}: response {i}: {}", r.raw_head);
        if want >= 400 {
            assert_eq!(
                r.header("connection"),
                Some("close"),
                "{name}: {}",
                r.raw_head
            );
        }
    }
    let mut want_upstream: Vec<String> = case.upstream.iter().map(|s| s.to_string()).collect();
    if case.closed {
        // No further response, and a clean end (FIN after the linger, not a reset).
        let mut rest = Vec::new();
        let end = c.reader.read_to_end(&mut rest);
        assert!(end.is_ok(), "{name}: {end:?}");
        assert!(
            rest.is_empty(),
            "{name}: unexpected bytes {:?}",
            String::from_utf8_lossy(&rest)
        );
    } else {
        let r = c.get("/after");
        assert_eq!(
            (r.status, r.text()),
            (200, "GET /after -".to_string()),
            "{name}: connection out of sync"
        );
        want_upstream.push("GET /after -".into());
    }
    let fresh = Client::connect(addr).get("/fresh");
    assert_eq!(fresh.status, 200, "{name}: lbd still serves");
    want_upstream.push("GET /fresh -".into());
    let got: Vec<String> = backend.received()[before..].iter().map(summary).collect();
    assert_eq!(got, want_upstream, "{name}: what the backend received");
}

#[test]
fn request_table() {
    let backend = TestBackend::start(|req| Reply::text(&summary(req)));
    let mut cfg = config(&[backend.addr]);
    cfg.limits.body_bytes = Some(1 << 20);
    let server = start(cfg);
    let cases = request_cases();
    let mut names = std::collections::HashSet::new();
    let failed: Vec<String> = cases
        .iter()
        .flat_map(|case| {
            assert!(names.insert(case.name), "duplicate name {}", case.name);
            [Feed::Whole, Feed::Trickled]
                .into_iter()
                .filter(|&how| {
                    !passes(|| run_request_case(server.local_addr(), &backend, case, how))
                })
                .map(|how| format!("{} ({how:?})", case.name))
        })
        .collect();
    eprintln!("request_table: {} cases", cases.len());
    assert!(failed.is_empty(), "failed rows: {failed:?}");
}

/// Runs one row, reporting (not propagating) its panic, so one run lists every failure.
fn passes(row: impl FnOnce()) -> bool {
    std::panic::catch_unwind(std::panic::AssertUnwindSafe(row)).is_ok()
}

/// What the scripted backend does after writing a response row's bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Then {
    /// Keep the connection and report whether lbd closes it (it must: never reused).
    Watch,
    /// Close it (FIN).
    Close,
    /// Reset it (RST), once the client has seen the response head.
    Reset,
}

/// What the client must see.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Want {
    /// lbd's own response with this status; the client connection stays in sync.
    Canned(u16),
    /// The upstream's status and body, complete; the client connection stays in sync.
    Relayed(u16, &'static str),
    /// The upstream's head, then a close before the body's framing completes.
    Truncated(u16),
}

struct RespCase {
    name: &'static str,
    method: &'static str,
    reply: Vec<u8>,
    then: Then,
    want: Want,
}

fn resp(name: &'static str, reply: impl AsRef<[u8]>, then: Then, want: Want) -> RespCase {
    RespCase {
        name,
        method: "GET",
        reply: reply.as_ref().to_vec(),
        then,
        want,
    }
}

/// Every response row.
fn response_cases() -> Vec<RespCase> {
    use Then::*;
    use Want::*;
    let many_headers = format!(
        "HTTP/1.1 200 OK\r\n{}Content-Length: 0\r\n\r\n",
        "X: y\r\n".repeat(129)
    );
    let huge_head = format!("HTTP/1.1 200 OK\r\nX: {}", "y".repeat(20_000));
    let mut head_request = resp(
        "body_on_head_response",
        "HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nhello",
        Watch,
        Relayed(200, ""),
    );
    head_request.method = "HEAD";
    vec![
        // Status lines.
        resp("not_http", "NOT HTTP AT ALL\r\n\r\n", Watch, Canned(502)),
        resp("status_four_digits", "HTTP/1.1 2000 OK\r\nContent-Length: 0\r\n\r\n", Watch, Canned(502)),
        resp("status_two_digits", "HTTP/1.1 20 OK\r\nContent-Length: 0\r\n\r\n", Watch, Canned(502)),
        resp("status_099", "HTTP/1.1 099 Low\r\nContent-Length: 0\r\n\r\n", Watch, Canned(502)),
        resp("status_000", "HTTP/1.1 000 Zero\r\nContent-Length: 0\r\n\r\n", Watch, Canned(502)),
        resp("status_600", "HTTP/1.1 600 High\r\nContent-Length: 0\r\n\r\n", Watch, Canned(502)),
        resp("status_999", "HTTP/1.1 999 High\r\nContent-Length: 0\r\n\r\n", Watch, Canned(502)),
        resp("status_101", "HTTP/1.1 101 Switching Protocols\r\nUpgrade: x\r\n\r\n", Watch, Canned(502)),
        resp("status_not_digits", "HTTP/1.1 2x0 OK\r\nContent-Length: 0\r\n\r\n", Watch, Canned(502)),
        resp("status_negative", "HTTP/1.1 -200 OK\r\nContent-Length: 0\r\n\r\n", Watch, Canned(502)),
        resp("version_2_0", "HTTP/2.0 200 OK\r\nContent-Length: 0\r\n\r\n", Watch, Canned(502)),
        resp("version_lower_case", "http/1.1 200 OK\r\nContent-Length: 0\r\n\r\n", Watch, Canned(502)),
        resp("version_1_2_accepted", "HTTP/1.2 200 OK\r\nContent-Length: 2\r\n\r\nok", Close, Relayed(200, "ok")),
        resp("version_1_9_chunked_accepted", "HTTP/1.9 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nok\r\n0\r\n\r\n", Close, Relayed(200, "ok")),
        resp("version_1_10", "HTTP/1.10 200 OK\r\nContent-Length: 0\r\n\r\n", Watch, Canned(502)),
        resp("version_missing", "200 OK\r\nContent-Length: 0\r\n\r\n", Watch, Canned(502)),
        resp("status_599_accepted", "HTTP/1.1 599 Custom\r\nContent-Length: 2\r\n\r\nok", Close, Relayed(599, "ok")),
        resp("status_100_accepted", "HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok", Close, Relayed(200, "ok")),
        // Header bytes.
        resp("bare_cr_in_header", "HTTP/1.1 200 OK\r\nX: a\rb\r\nContent-Length: 0\r\n\r\n", Watch, Canned(502)),
        resp("obs_fold", "HTTP/1.1 200 OK\r\nX: a\r\n b\r\nContent-Length: 0\r\n\r\n", Watch, Canned(502)),
        resp("space_before_colon", "HTTP/1.1 200 OK\r\nContent-Length : 2\r\n\r\nok", Watch, Canned(502)),
        resp("nul_in_header", "HTTP/1.1 200 OK\r\nX: a\0b\r\nContent-Length: 0\r\n\r\n", Watch, Canned(502)),
        resp("bare_lf_accepted", "HTTP/1.1 200 OK\nContent-Length: 2\n\nok", Close, Relayed(200, "ok")),
        resp("bare_lf_mixed_accepted", "HTTP/1.1 200 OK\r\nContent-Length: 2\n\r\nok", Close, Relayed(200, "ok")),
        resp("leading_empty_line", "\r\nHTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok", Watch, Canned(502)),
        // Refused at the first bad byte: the backend keeps the connection and never ends
        // the head, so waiting for the end would give a 504 at upstream_response.
        resp("ssh_banner", "SSH-2.0-OpenSSH_9.6\r\n", Watch, Canned(502)),
        resp("tls_alert", b"\x15\x03\x03\x00\x02\x02\x28", Watch, Canned(502)),
        resp("status_not_digits_no_end", "HTTP/1.1 2x0 OK\r\n", Watch, Canned(502)),
        resp("status_600_no_end", "HTTP/1.1 600 High\r\n", Watch, Canned(502)),
        resp("cr_only_line_ends", "HTTP/1.1 200 OK\rContent-Length: 2\r\r", Watch, Canned(502)),
        resp("nul_after_status_line", "HTTP/1.1 200 OK\r\n\x00", Watch, Canned(502)),
        resp("obs_fold_no_end", "HTTP/1.1 200 OK\r\nX: a\r\n b", Watch, Canned(502)),
        resp("interim_then_junk_no_end", "HTTP/1.1 100 Continue\r\n\r\nJUNK", Watch, Canned(502)),
        resp("too_many_headers", many_headers, Watch, Canned(502)),
        resp("head_too_large", huge_head, Watch, Canned(502)),
        // Framing.
        resp("cl_and_te", "HTTP/1.1 200 OK\r\nContent-Length: 2\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nok\r\n0\r\n\r\n", Watch, Canned(502)),
        resp("cl_two_values", "HTTP/1.1 200 OK\r\nContent-Length: 2\r\nContent-Length: 3\r\n\r\nok!", Watch, Canned(502)),
        resp("cl_same_twice_accepted", "HTTP/1.1 200 OK\r\nContent-Length: 2\r\nContent-Length: 2\r\n\r\nok", Close, Relayed(200, "ok")),
        resp("cl_list", "HTTP/1.1 200 OK\r\nContent-Length: 2, 2\r\n\r\nok", Watch, Canned(502)),
        resp("cl_plus_sign", "HTTP/1.1 200 OK\r\nContent-Length: +2\r\n\r\nok", Watch, Canned(502)),
        resp("cl_hex", "HTTP/1.1 200 OK\r\nContent-Length: 0x2\r\n\r\nok", Watch, Canned(502)),
        resp("cl_overflow", "HTTP/1.1 200 OK\r\nContent-Length: 99999999999999999999\r\n\r\nok", Watch, Canned(502)),
        resp("te_gzip", "HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip\r\n\r\nok", Watch, Canned(502)),
        resp("te_gzip_chunked", "HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip, chunked\r\n\r\n2\r\nok\r\n0\r\n\r\n", Watch, Canned(502)),
        resp("te_two_fields", "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nok\r\n0\r\n\r\n", Watch, Canned(502)),
        resp("te_on_http10", "HTTP/1.0 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nok\r\n0\r\n\r\n", Watch, Canned(502)),
        // Closing or failing before the head ends.
        resp("close_mid_head", "HTTP/1.1 200 OK\r\nContent-", Close, Canned(502)),
        resp("close_after_status_line", "HTTP/1.1 200 OK\r\n", Close, Canned(502)),
        resp("close_mid_status_line", "HTT", Close, Canned(502)),
        resp("close_without_a_byte", "", Close, Canned(503)),
        resp("interim_then_garbage", "HTTP/1.1 100 Continue\r\n\r\nGARBAGE\r\n\r\n", Watch, Canned(502)),
        resp("too_many_interim", "HTTP/1.1 103 Early Hints\r\n\r\n".repeat(17), Watch, Canned(502)),
        // Failing after the head: the client sees a truncated response.
        resp("cl_body_cut", "HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\npartial", Close, Truncated(200)),
        resp("chunk_cut", "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhel", Close, Truncated(200)),
        resp("last_chunk_missing", "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n", Close, Truncated(200)),
        resp("chunk_size_not_hex", "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\nhello\r\n0\r\n\r\n", Watch, Truncated(200)),
        resp("chunk_size_u64_max", "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nffffffffffffffff\r\n", Watch, Truncated(200)),
        resp("chunk_size_17_digits", "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n00000000000000002\r\nok\r\n0\r\n\r\n", Watch, Truncated(200)),
        resp("chunk_size_trailing_space", "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n2 \r\nok\r\n0\r\n\r\n", Watch, Truncated(200)),
        resp("chunk_extension_empty", "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n2;\r\nok\r\n0\r\n\r\n", Watch, Truncated(200)),
        resp("chunk_extension_unbalanced_quote", "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n2;a=\"b\r\nok\r\n0\r\n\r\n", Watch, Truncated(200)),
        resp("chunk_extension_bare_lf", "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n2;a\nok\r\n0\r\n\r\n", Watch, Truncated(200)),
        resp("chunk_extension_control_no_end", "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n2;a=\x01", Watch, Truncated(200)),
        resp("chunk_extension_accepted", "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n2 ; a = \"b c\"\r\nok\r\n0\r\n\r\n", Close, Relayed(200, "ok")),
        resp("chunk_data_too_long", "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhelloXX\r\n0\r\n\r\n", Watch, Truncated(200)),
        resp("chunk_trailer_malformed", "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\nbad trailer\r\n\r\n", Watch, Truncated(200)),
        resp("close_delimited_reset", "HTTP/1.1 200 OK\r\n\r\npartial", Reset, Truncated(200)),
        resp("cl_body_reset", "HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\npartial", Reset, Truncated(200)),
        resp("close_delimited_complete", "HTTP/1.0 200 OK\r\n\r\nbody", Close, Relayed(200, "body")),
        // Bodies where none may be, and bytes after the body: relayed without them, and
        // the upstream connection is closed.
        resp("body_on_204", "HTTP/1.1 204 No Content\r\nContent-Length: 5\r\n\r\nhello", Watch, Relayed(204, "")),
        resp("chunked_body_on_204", "HTTP/1.1 204 No Content\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n", Watch, Relayed(204, "")),
        resp("body_on_304", "HTTP/1.1 304 Not Modified\r\nContent-Length: 5\r\n\r\nhello", Watch, Relayed(304, "")),
        head_request,
        resp("bytes_after_cl_body", "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nokEXTRA", Watch, Relayed(200, "ok")),
        resp("bytes_after_chunked_body", "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nok\r\n0\r\n\r\nEXTRA", Watch, Relayed(200, "ok")),
        resp("second_response_after_body", "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nokHTTP/1.1 200 OK\r\nContent-Length: 4\r\n\r\nevil", Watch, Relayed(200, "ok")),
        resp("connection_close_honoured", "HTTP/1.1 200 OK\r\nConnection: close\r\nContent-Length: 2\r\n\r\nok", Watch, Relayed(200, "ok")),
        resp("http10_without_keep_alive", "HTTP/1.0 200 OK\r\nContent-Length: 2\r\n\r\nok", Watch, Relayed(200, "ok")),
    ]
}

/// True when a raw HTTP/1.1 response (head and body) ends where its framing says.
fn framing_complete(raw: &[u8]) -> bool {
    let text = String::from_utf8_lossy(raw);
    let Some((head, body)) = text.split_once("\r\n\r\n") else {
        return false;
    };
    let header = |name: &str| {
        head.lines()
            .filter_map(|l| l.split_once(':'))
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.trim().to_string())
    };
    if header("transfer-encoding").is_some_and(|v| v == "chunked") {
        body.ends_with("0\r\n\r\n")
    } else if let Some(n) = header("content-length") {
        body.len() == n.parse::<usize>().unwrap()
    } else {
        true
    }
}

fn canned_body(status: u16) -> String {
    let line = match status {
        502 => "502 Bad Gateway",
        503 => "503 Service Unavailable",
        _ => unreachable!("no canned {status} in the table"),
    };
    format!("{line}\n")
}

#[test]
fn response_table() {
    let cases = Arc::new(response_cases());
    // What each Watch row's backend connection saw after its response: "closed" is the
    // only right answer (a reused connection would have carried another request).
    let verdicts: Arc<Verdicts> = Arc::default();
    let reset_now: Arc<AtomicBool> = Arc::default();
    let backend = {
        let (cases, verdicts, reset_now) = (cases.clone(), verdicts.clone(), reset_now.clone());
        TestBackend::start(move |req| {
            let Some(row) = req.target.strip_prefix("/r/") else {
                return Reply::text("ok");
            };
            let (i, how) = match row.strip_suffix("/trickled") {
                Some(i) => (i, Feed::Trickled),
                None => (row, Feed::Whole),
            };
            let i: usize = i.parse().unwrap();
            let (bytes, then) = (cases[i].reply.clone(), cases[i].then);
            let (verdicts, reset_now) = (verdicts.clone(), reset_now.clone());
            let target = req.target.clone();
            Reply::Custom(Box::new(move |s: &mut TcpStream| {
                match how {
                    Feed::Whole => {
                        let _ = s.write_all(&bytes);
                    }
                    Feed::Trickled => feed(s, &bytes, how),
                }
                match then {
                    Then::Close => {}
                    Then::Reset => {
                        wait_until(IO_TIMEOUT, || reset_now.swap(false, Ordering::SeqCst));
                        let _ = socket2::SockRef::from(&*s).set_linger(Some(Duration::ZERO));
                    }
                    Then::Watch => {
                        s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
                        let verdict = match s.read(&mut [0u8; 1]) {
                            Ok(0) => "closed",
                            Ok(_) => "reused",
                            // Closed with our bytes unread: a reset.
                            Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => "closed",
                            Err(_) => "kept open",
                        };
                        verdicts
                            .lock()
                            .unwrap()
                            .entry(target)
                            .or_default()
                            .push(verdict);
                    }
                }
            }))
        })
    };
    let server = start(config(&[backend.addr]));
    let addr = server.local_addr();
    let mut failed = Vec::new();
    for (i, case) in cases.iter().enumerate() {
        for how in [Feed::Whole, Feed::Trickled] {
            if !passes(|| run_response_case(addr, i, case, how, &verdicts, &reset_now)) {
                failed.push(format!("{} ({how:?})", case.name));
            }
        }
    }
    eprintln!("response_table: {} cases", cases.len());
    assert!(failed.is_empty(), "failed rows: {failed:?}");
}

/// What each watched upstream connection saw after its response, by request target.
type Verdicts = Mutex<HashMap<String, Vec<&'static str>>>;

fn run_response_case(
    addr: SocketAddr,
    i: usize,
    case: &RespCase,
    how: Feed,
    verdicts: &Verdicts,
    reset_now: &AtomicBool,
) {
    {
        let name = case.name;
        let head_request = case.method == "HEAD";
        let target = match how {
            Feed::Whole => format!("/r/{i}"),
            Feed::Trickled => format!("/r/{i}/trickled"),
        };
        let mut c = Client::connect(addr);
        c.send(format!("{} {target} HTTP/1.1\r\nHost: a\r\n\r\n", case.method).as_bytes());
        match case.want {
            Want::Canned(status) => {
                let r = c.try_response(head_request).unwrap();
                assert_eq!(r.status, status, "{name}: {}", r.raw_head);
                assert_eq!(r.text(), canned_body(status), "{name}");
            }
            Want::Relayed(status, body) => {
                let r = c.try_response(head_request).unwrap();
                assert_eq!((r.status, r.text().as_str()), (status, body), "{name}");
            }
            Want::Truncated(status) => {
                let mut raw = Vec::new();
                if case.then == Then::Reset {
                    // Let the backend reset only once the head has reached the client.
                    let mut byte = [0u8; 1];
                    while !raw.ends_with(b"\r\n\r\n") {
                        c.reader.read_exact(&mut byte).unwrap();
                        raw.push(byte[0]);
                    }
                    reset_now.store(true, Ordering::SeqCst);
                }
                let _ = c.reader.read_to_end(&mut raw);
                let text = String::from_utf8_lossy(&raw);
                assert!(
                    text.starts_with(&format!("HTTP/1.1 {status} ")),
                    "{name}: {text}"
                );
                assert!(!framing_complete(&raw), "{name}: not truncated: {text}");
            }
        }
        if !matches!(case.want, Want::Truncated(_)) {
            // The client connection is still in sync: no stray bytes from that response.
            let r = c.get("/ok");
            assert_eq!(
                (r.status, r.text().as_str()),
                (200, "ok"),
                "{name}: follow-up"
            );
        }
        if case.then == Then::Watch {
            assert!(
                wait_until(IO_TIMEOUT, || verdicts
                    .lock()
                    .unwrap()
                    .contains_key(&target)),
                "{name}: no verdict"
            );
            let seen = verdicts.lock().unwrap()[&target].clone();
            assert!(
                seen.iter().all(|v| *v == "closed"),
                "{name}: upstream connection {seen:?}"
            );
        }
        let fresh = Client::connect(addr).get("/ok");
        assert_eq!(fresh.text(), "ok", "{name}: lbd still serves");
    }
}

/// Spec §7.4 by connection count: after a response with bytes beyond its body, the next
/// request opens a new upstream connection; after clean ones, the pooled one is reused.
#[test]
fn extra_bytes_after_a_body_are_never_reused() {
    let backend = TestBackend::start(|req| match req.target.as_str() {
        "/extra" => Reply::Raw(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nokEXTRA".to_vec()),
        _ => Reply::text("ok"),
    });
    let mut cfg = config(&[backend.addr]);
    cfg.server.workers = 1;
    // One probe round at startup, then none during the test.
    cfg.health.interval = Duration::from_secs(3600);
    let server = start(cfg);
    wait_until(Duration::from_secs(2), || backend.connection_count() >= 1);
    let base = backend.connection_count();
    let mut c = Client::connect(server.local_addr());
    for _ in 0..3 {
        assert_eq!(c.get("/ok").text(), "ok");
    }
    assert_eq!(
        backend.connection_count() - base,
        1,
        "clean responses reuse"
    );
    assert_eq!(c.get("/extra").text(), "ok");
    for _ in 0..3 {
        assert_eq!(c.get("/ok").text(), "ok");
    }
    assert_eq!(
        backend.connection_count() - base,
        2,
        "the connection that sent extra bytes was reused"
    );
}
