//! The one non-cryptographic hash lbd uses for balancing keys (a header value, a client
//! address, a backend name in the Maglev table). A leaf, so the parser that extracts a
//! key and the balancer that uses it share it without importing each other.

use std::net::IpAddr;

/// 64-bit FNV-1a: fast and allocation-free.
pub fn fnv1a(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325, |h, &b| {
        (h ^ u64::from(b)).wrapping_mul(0x100_0000_01b3)
    })
}

/// The balancing key of a client address (`ip_hash`, `consistent_hash` on `ip`).
pub fn ip(addr: IpAddr) -> u64 {
    match addr {
        IpAddr::V4(v4) => fnv1a(&v4.octets()),
        IpAddr::V6(v6) => fnv1a(&v6.octets()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn known_values() {
        // Reference values of the FNV-1a 64-bit test suite.
        assert_eq!(fnv1a(b""), 0xcbf2_9ce4_8422_2325);
        assert_eq!(fnv1a(b"a"), 0xaf63_dc4c_8601_ec8c);
        assert_ne!(ip([10, 0, 0, 1].into()), ip([10, 0, 0, 2].into()));
    }
}
