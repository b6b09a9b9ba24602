//! Character classes of the HTTP grammar (RFC 9110) that both the parsers and the
//! configuration's validation use. A leaf: no other module of lbd is imported here.

/// `tchar` of RFC 9110 §5.6.2: a byte of a token (method, header name, chunk extension).
pub fn is_token_byte(b: u8) -> bool {
    classes(b) & TOKEN != 0
}

/// Class bit: `tchar` (RFC 9110 §5.6.2).
pub const TOKEN: u8 = 1;
/// Class bit: a request-target byte: RFC 3986's unreserved, gen-delims except `#` (a
/// fragment is never sent), sub-delims and `%` (percent-encoding is left as sent).
pub const TARGET: u8 = 2;
/// Class bit: a field-value or reason-phrase byte: HTAB, SP, VCHAR, obs-text (RFC 9110
/// §5.5).
pub const TEXT: u8 = 4;
/// Class bit: a reg-name or IPv4 byte of Host (RFC 3986 unreserved, sub-delims, `%`).
pub const HOST: u8 = 8;

/// The class bits of byte `b`: one table load, so the long runs of a head cost a load
/// and a test per byte.
pub fn classes(b: u8) -> u8 {
    CLASSES[usize::from(b)]
}

static CLASSES: [u8; 256] = {
    let mut table = [0u8; 256];
    let mut i = 0;
    while i < 256 {
        let b = i as u8;
        let alnum = b.is_ascii_alphanumeric();
        // RFC 3986 unreserved marks, and sub-delims.
        let unreserved = alnum || matches!(b, b'-' | b'.' | b'_' | b'~');
        let sub_delim = matches!(
            b,
            b'!' | b'$' | b'&' | b'\'' | b'(' | b')' | b'*' | b'+' | b',' | b';' | b'='
        );
        let mut class = 0;
        if alnum
            || matches!(
                b,
                b'!' | b'#'
                    | b'$'
                    | b'%'
                    | b'&'
                    | b'\''
                    | b'*'
                    | b'+'
                    | b'-'
                    | b'.'
                    | b'^'
                    | b'_'
                    | b'`'
                    | b'|'
                    | b'~'
            )
        {
            class |= TOKEN;
        }
        if unreserved || sub_delim || matches!(b, b':' | b'/' | b'?' | b'[' | b']' | b'@' | b'%') {
            class |= TARGET;
        }
        if matches!(b, b'\t' | b' '..=b'~' | 0x80..=0xff) {
            class |= TEXT;
        }
        if unreserved || sub_delim || b == b'%' {
            class |= HOST;
        }
        table[i] = class;
        i += 1;
    }
    table
};

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_class_is_its_rfc_set() {
        for b in 0..=255u8 {
            let alnum = b.is_ascii_alphanumeric();
            let has = |class| classes(b) & class != 0;
            assert_eq!(
                has(TOKEN),
                alnum || b"!#$%&'*+-.^_`|~".contains(&b),
                "{b:#x}"
            );
            assert_eq!(
                has(TARGET),
                alnum || b"-._~:/?[]@!$&'()*+,;=%".contains(&b),
                "{b:#x}"
            );
            assert_eq!(
                has(TEXT),
                b == b'\t' || (b' '..=b'~').contains(&b) || b >= 0x80,
                "{b:#x}"
            );
            assert_eq!(
                has(HOST),
                alnum || b"-._~!$&'()*+,;=%".contains(&b),
                "{b:#x}"
            );
        }
    }

    #[test]
    fn tokens() {
        assert!(b"GET".iter().all(|&b| is_token_byte(b)));
        assert!(b"x-a_b.c~".iter().all(|&b| is_token_byte(b)));
        for b in [b' ', b':', b'"', b'(', b'@', 0x7f, 0x80, b'\r'] {
            assert!(!is_token_byte(b), "{b}");
        }
    }
}
