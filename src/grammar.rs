//! Character classes of the HTTP grammar (RFC 9110) that both the parsers and the
//! configuration's validation use. A leaf: no other module of lbd is imported here.

/// `tchar` of RFC 9110 §5.6.2: a byte of a token (method, header name, chunk extension).
pub fn is_token_byte(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b)
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
