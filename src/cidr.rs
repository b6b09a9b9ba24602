//! CIDR blocks (`10.0.0.0/8`, `::1/128`, a bare address) for `[server] trusted_proxies`
//! (spec §11): the peers allowed to send a PROXY protocol header. A small leaf: parsing and
//! matching, no config or socket type.

use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::str::FromStr;

/// A block of addresses: a network address and a prefix length.
///
/// Invariants: `prefix_len` is at most 32 for IPv4 and 128 for IPv6; the bits of `network`
/// past `prefix_len` are zero.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Cidr {
    network: IpAddr,
    prefix_len: u8,
}

impl Cidr {
    /// The block's first address.
    pub fn network(&self) -> IpAddr {
        self.network
    }

    /// How many leading bits an address shares with the network to be inside.
    pub fn prefix_len(&self) -> u8 {
        self.prefix_len
    }

    /// Whether `ip` is inside the block. An IPv4-mapped IPv6 address (`::ffff:a.b.c.d`,
    /// what a dual-stack socket reports for an IPv4 peer) matches IPv4 blocks as its IPv4
    /// address, and an IPv4 address matches IPv6 blocks as its mapped form.
    pub fn contains(&self, ip: IpAddr) -> bool {
        match (self.network, ip) {
            (IpAddr::V4(net), IpAddr::V4(ip)) => self.contains_v4(net, ip),
            (IpAddr::V4(net), IpAddr::V6(ip)) => ip
                .to_ipv4_mapped()
                .is_some_and(|ip| self.contains_v4(net, ip)),
            (IpAddr::V6(net), IpAddr::V6(ip)) => self.contains_v6(net, ip),
            (IpAddr::V6(net), IpAddr::V4(ip)) => self.contains_v6(net, ip.to_ipv6_mapped()),
        }
    }

    fn contains_v4(&self, net: Ipv4Addr, ip: Ipv4Addr) -> bool {
        u32::from(ip) & mask_v4(self.prefix_len) == u32::from(net)
    }

    fn contains_v6(&self, net: Ipv6Addr, ip: Ipv6Addr) -> bool {
        u128::from(ip) & mask_v6(self.prefix_len) == u128::from(net)
    }
}

/// The netmask of an IPv4 prefix length (at most 32).
fn mask_v4(len: u8) -> u32 {
    u32::MAX.checked_shl(32 - u32::from(len)).unwrap_or(0)
}

/// The netmask of an IPv6 prefix length (at most 128).
fn mask_v6(len: u8) -> u128 {
    u128::MAX.checked_shl(128 - u32::from(len)).unwrap_or(0)
}

impl FromStr for Cidr {
    type Err = CidrError;

    /// `ADDRESS/LEN` (LEN: decimal digits, no sign or leading zero, at most 32 or 128) or a
    /// bare `ADDRESS` (a block of one: /32 or /128). Bits set past LEN are refused rather
    /// than cleared: `10.0.0.1/8` is more likely a typo than a wish to trust all of 10/8.
    fn from_str(text: &str) -> Result<Cidr, CidrError> {
        let error = |reason| CidrError {
            text: text.to_owned(),
            reason,
        };
        let (address, len) = match text.split_once('/') {
            Some((address, len)) => (address, Some(len)),
            None => (text, None),
        };
        let network: IpAddr = address
            .parse()
            .map_err(|_| error("not an IPv4 or IPv6 address"))?;
        let max = if network.is_ipv4() { 32 } else { 128 };
        let prefix_len = match len {
            None => max,
            Some(len) => {
                let digits = !len.is_empty()
                    && len.len() <= 3
                    && len.bytes().all(|b| b.is_ascii_digit())
                    && !(len.len() > 1 && len.starts_with('0'));
                match len.parse::<u8>() {
                    Ok(n) if digits && n <= max => n,
                    _ if network.is_ipv4() => {
                        return Err(error("prefix length is not a number from 0 to 32"))
                    }
                    _ => return Err(error("prefix length is not a number from 0 to 128")),
                }
            }
        };
        let cidr = Cidr {
            network,
            prefix_len,
        };
        let host_bits = match network {
            IpAddr::V4(net) => u32::from(net) & !mask_v4(prefix_len) != 0,
            IpAddr::V6(net) => u128::from(net) & !mask_v6(prefix_len) != 0,
        };
        if host_bits {
            return Err(error("address has bits set past the prefix length"));
        }
        Ok(cidr)
    }
}

impl fmt::Display for Cidr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.network, self.prefix_len)
    }
}

/// A text that is not a CIDR block; says which text and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CidrError {
    text: String,
    reason: &'static str,
}

impl fmt::Display for CidrError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "invalid CIDR block {:?}: {}", self.text, self.reason)
    }
}

impl std::error::Error for CidrError {}

#[cfg(test)]
mod tests {
    use super::*;

    fn cidr(text: &str) -> Cidr {
        text.parse().unwrap_or_else(|e| panic!("{e}"))
    }

    fn ip(text: &str) -> IpAddr {
        text.parse().expect("test address")
    }

    #[test]
    fn parses_blocks_and_bare_addresses() {
        let table = [
            ("10.0.0.0/8", "10.0.0.0/8"),
            ("127.0.0.1/32", "127.0.0.1/32"),
            ("127.0.0.1", "127.0.0.1/32"),
            ("0.0.0.0/0", "0.0.0.0/0"),
            ("::1/128", "::1/128"),
            ("::1", "::1/128"),
            ("2001:db8::/32", "2001:db8::/32"),
            ("2001:DB8::/32", "2001:db8::/32"),
            ("::/0", "::/0"),
            ("::ffff:10.0.0.0/104", "::ffff:10.0.0.0/104"),
        ];
        for (text, shown) in table {
            assert_eq!(cidr(text).to_string(), shown, "{text}");
        }
        assert_eq!(cidr("10.0.0.0/8").prefix_len(), 8);
        assert_eq!(cidr("10.0.0.0/8").network(), ip("10.0.0.0"));
    }

    #[test]
    fn refuses_and_names_the_text() {
        let table = [
            ("", "not an IPv4 or IPv6 address"),
            ("10.0.0.0/", "0 to 32"),
            ("10.0.0.0/33", "0 to 32"),
            ("10.0.0.0/+8", "0 to 32"),
            ("10.0.0.0/08", "0 to 32"),
            ("10.0.0.0/ 8", "0 to 32"),
            ("10.0.0.0/8/8", "0 to 32"),
            ("10.0.0.0/-1", "0 to 32"),
            ("::/129", "0 to 128"),
            ("::/0128", "0 to 128"),
            ("10.0.0.1/8", "bits set past"),
            ("2001:db8::1/32", "bits set past"),
            ("10.0.0/8", "not an IPv4"),
            ("010.0.0.0/8", "not an IPv4"),
            ("localhost", "not an IPv4"),
            (" 10.0.0.0/8", "not an IPv4"),
            ("[::1]/128", "not an IPv4"),
            ("fe80::1%eth0/128", "not an IPv4"),
        ];
        for (text, reason) in table {
            let error = text.parse::<Cidr>().expect_err(text).to_string();
            assert!(error.contains(&format!("{text:?}")), "{error}");
            assert!(error.contains(reason), "{error}");
        }
    }

    #[test]
    fn contains() {
        let table = [
            ("10.0.0.0/8", "10.0.0.0", true),
            ("10.0.0.0/8", "10.255.255.255", true),
            ("10.0.0.0/8", "11.0.0.0", false),
            ("10.0.0.0/8", "9.255.255.255", false),
            ("10.0.0.0/8", "::ffff:10.1.2.3", true),
            ("10.0.0.0/8", "::ffff:11.1.2.3", false),
            ("10.0.0.0/8", "::a01:203", false),
            ("10.0.0.0/8", "::1", false),
            ("127.0.0.1/32", "127.0.0.1", true),
            ("127.0.0.1/32", "127.0.0.2", false),
            ("0.0.0.0/0", "203.0.113.9", true),
            ("0.0.0.0/0", "::ffff:203.0.113.9", true),
            ("0.0.0.0/0", "2001:db8::1", false),
            ("192.168.1.128/25", "192.168.1.200", true),
            ("192.168.1.128/25", "192.168.1.127", false),
            ("::1/128", "::1", true),
            ("::1/128", "::2", false),
            ("::1/128", "127.0.0.1", false),
            ("2001:db8::/32", "2001:db8:ffff::1", true),
            ("2001:db8::/32", "2001:db9::1", false),
            ("::/0", "2001:db8::1", true),
            ("::/0", "10.0.0.1", true),
            ("::ffff:10.0.0.0/104", "10.2.3.4", true),
            ("::ffff:10.0.0.0/104", "11.2.3.4", false),
        ];
        for (block, address, inside) in table {
            assert_eq!(
                cidr(block).contains(ip(address)),
                inside,
                "{block} {address}"
            );
        }
    }
}
