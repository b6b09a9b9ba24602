//! Deserializers for the value types the TOML file spells as strings: durations with a
//! unit (`"250ms"`, `"2s"`, `"1m"`) and socket addresses (`"host:port"`, or an IP literal
//! `"IP:PORT"` where no name may be resolved).
//!
//! They run inside serde, so a bad value is reported by `toml` with its key and line.

use std::net::{SocketAddr, ToSocketAddrs};
use std::time::Duration;

use serde::de::{Deserialize, Deserializer, Error};

/// Parses `"250ms"`, `"2s"`, `"1m"`, `"1h"` (a whole number and a unit, no spaces).
pub(super) fn duration(text: &str) -> Result<Duration, String> {
    let split = text
        .find(|c: char| !c.is_ascii_digit())
        .ok_or_else(|| format!("duration {text:?} needs a unit (ms, s, m or h)"))?;
    let (digits, unit) = text.split_at(split);
    if digits.is_empty() {
        return Err(format!("duration {text:?} must start with a number"));
    }
    let n: u64 = digits
        .parse()
        .map_err(|_| format!("duration {text:?} is too large"))?;
    let millis = match unit {
        "ms" => Some(n),
        "s" => n.checked_mul(1_000),
        "m" => n.checked_mul(60_000),
        "h" => n.checked_mul(3_600_000),
        _ => {
            return Err(format!(
                "duration {text:?} has unknown unit {unit:?}; use ms, s, m or h"
            ))
        }
    };
    millis
        .map(Duration::from_millis)
        .ok_or_else(|| format!("duration {text:?} is too large"))
}

/// Resolves `"host:port"` to its first socket address.
pub(super) fn address(text: &str) -> Result<SocketAddr, String> {
    if let Ok(addr) = text.parse::<SocketAddr>() {
        return Ok(addr);
    }
    if !text.contains(':') {
        return Err(format!("address {text:?} must be host:port"));
    }
    text.to_socket_addrs()
        .map_err(|e| format!("address {text:?} does not resolve: {e}"))?
        .next()
        .ok_or_else(|| format!("address {text:?} resolves to nothing"))
}

/// Parses `"IP:PORT"` without resolving anything: an IP literal (IPv6 in brackets) and a
/// port other than 0.
pub(super) fn ip_address(text: &str) -> Result<SocketAddr, String> {
    match text.parse::<SocketAddr>() {
        Ok(addr) if addr.port() != 0 => Ok(addr),
        Ok(_) => Err(format!("address {text:?} needs a port other than 0")),
        Err(_) => Err(format!(
            "address {text:?} must be IP:PORT (an IP literal, IPv6 in brackets; no name)"
        )),
    }
}

/// serde adapter for a required duration.
pub(super) fn de_duration<'de, D: Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
    let text = String::deserialize(d)?;
    duration(&text).map_err(D::Error::custom)
}

/// serde adapter for an optional duration.
pub(super) fn de_opt_duration<'de, D: Deserializer<'de>>(
    d: D,
) -> Result<Option<Duration>, D::Error> {
    let text = String::deserialize(d)?;
    duration(&text).map(Some).map_err(D::Error::custom)
}

/// serde adapter for a socket address.
pub(super) fn de_address<'de, D: Deserializer<'de>>(d: D) -> Result<SocketAddr, D::Error> {
    let text = String::deserialize(d)?;
    address(&text).map_err(D::Error::custom)
}

/// serde adapter for a socket address that also keeps the text as written.
pub(super) fn de_address_as_written<'de, D: Deserializer<'de>>(
    d: D,
) -> Result<(SocketAddr, String, Option<String>), D::Error> {
    let text = String::deserialize(d)?;
    let (addr, service) = backend_address(&text).map_err(D::Error::custom)?;
    Ok((addr, text, service))
}

/// A backend's `"host:port"`: an IP literal is the address itself. With DNS discovery
/// (feature `dns`) a name is a service, resolved at run time and never here: the result
/// is `0.0.0.0:port` (a placeholder no connection uses) and the name. Without it, the
/// name is resolved now to its first address, as `address` does.
fn backend_address(text: &str) -> Result<(SocketAddr, Option<String>), String> {
    if let Ok(addr) = text.parse::<SocketAddr>() {
        return Ok((addr, None));
    }
    #[cfg(feature = "dns")]
    {
        let (host, port) = text
            .rsplit_once(':')
            .ok_or_else(|| format!("address {text:?} must be host:port"))?;
        let port: u16 = port
            .parse()
            .ok()
            .filter(|&p| p != 0)
            .ok_or_else(|| format!("address {text:?} needs a port between 1 and 65535"))?;
        let valid = !host.is_empty()
            && host.len() <= 253
            && host.split('.').all(|label| {
                !label.is_empty()
                    && label.len() <= 63
                    && label
                        .bytes()
                        .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
            });
        if !valid {
            return Err(format!("address {text:?}: {host:?} is not a host name"));
        }
        Ok((
            SocketAddr::from(([0, 0, 0, 0], port)),
            Some(host.to_ascii_lowercase()),
        ))
    }
    #[cfg(not(feature = "dns"))]
    {
        address(text).map(|addr| (addr, None))
    }
}

/// serde adapter for an optional IP-literal socket address.
pub(super) fn de_ip_address<'de, D: Deserializer<'de>>(
    d: D,
) -> Result<Option<SocketAddr>, D::Error> {
    let text = String::deserialize(d)?;
    ip_address(&text).map(Some).map_err(D::Error::custom)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations() {
        let table: &[(&str, Option<u64>)] = &[
            ("250ms", Some(250)),
            ("2s", Some(2_000)),
            ("1m", Some(60_000)),
            ("1h", Some(3_600_000)),
            ("0s", Some(0)),
            ("2", None),
            ("s", None),
            ("-1s", None),
            ("+1s", None),
            ("1.5s", None),
            ("1 s", None),
            ("1d", None),
            ("99999999999999999999s", None),
        ];
        for (text, want) in table {
            let got = duration(text).ok().map(|d| d.as_millis() as u64);
            assert_eq!(got, *want, "{text}");
        }
    }

    #[test]
    fn addresses() {
        assert_eq!(address("127.0.0.1:80").unwrap().port(), 80);
        assert_eq!(address("localhost:81").unwrap().port(), 81);
        assert!(address("127.0.0.1").is_err());
        assert!(address("127.0.0.1:99999").is_err());
    }

    #[test]
    fn ip_addresses() {
        assert_eq!(ip_address("127.0.0.1:53").unwrap().port(), 53);
        assert_eq!(ip_address("[::1]:5353").unwrap().port(), 5353);
        for bad in ["localhost:53", "127.0.0.1", "127.0.0.1:0", "::1:53", ""] {
            assert!(ip_address(bad).is_err(), "{bad}");
        }
    }
}
