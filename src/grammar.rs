//! Character classes of the HTTP grammar (RFC 9110) that both the parsers and the
//! configuration's validation use. A leaf: no other module of lbd is imported here.

/// `tchar` of RFC 9110 §5.6.2: a byte of a token (method, header name, chunk extension).
pub const fn is_token_byte(b: u8) -> bool {
    matches!(b,
        b'0'..=b'9' | b'a'..=b'z' | b'A'..=b'Z'
        | b'!' | b'#' | b'$' | b'%' | b'&' | b'\'' | b'*' | b'+' | b'-' | b'.' | b'^' | b'_'
        | b'`' | b'|' | b'~')
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens() {
        assert!(b"GET".iter().all(|&b| is_token_byte(b)));
        assert!(b"x-a_b.c~".iter().all(|&b| is_token_byte(b)));
        for b in [b' ', b':', b'"', b'(', b'@', 0x7f, 0x80, b'\r'] {
            assert!(!is_token_byte(b), "{b}");
        }
    }
}
