//! DNS discovery (spec §12): a backend whose host is a name is a *service* whose members
//! are the addresses the name resolves to. One resolver thread ([`resolver::Resolver`]) re-resolves
//! every watched name each `interval`, or sooner when the records' TTL says so, and
//! reports a service only when its member set changes ([`DnsUpdate`]). Resolution blocks
//! that thread, never a worker. With `resolver` set, lbd asks that server itself
//! ([`resolve`]: UDP, A and AAAA, TTLs, TCP on truncation); unset, the system resolver
//! ([`resolve_system`]). `docs/dns.md` describes the rules.
//!
//! Layers: `wire` (the messages, pure, over `simple-dns`), `query` (the blocking query
//! loop), `watch` (per name: members, schedule, failure episodes; pure), `resolver` (the
//! thread). Built with the cargo feature `dns` (on by default).

mod query;
pub mod resolver;
mod watch;
mod wire;

#[cfg(test)]
#[allow(dead_code)] // shared with tests/util (`#[path]`): each side uses part of it
mod testserver;

use std::fmt;
use std::io;
use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

pub use query::{resolve, resolve_system};

/// How the resolver thread resolves names.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DnsSettings {
    /// Every name is resolved again at least this often (`[dns] interval`).
    pub interval: Duration,
    /// The server lbd queries itself (`[dns] resolver`); `None`: the system resolver.
    pub resolver: Option<SocketAddr>,
    /// How long one query attempt waits for its reply (and the TCP fallback as a whole).
    pub timeout: Duration,
    /// Tries per query before the resolution fails; 0 counts as 1.
    pub attempts: u32,
    /// The floor: a name is never resolved again sooner than this after its last
    /// resolution, whatever a (zero or tiny) TTL says.
    pub min_refresh: Duration,
}

impl DnsSettings {
    /// Default `interval` (spec §12).
    pub const DEFAULT_INTERVAL: Duration = Duration::from_secs(30);
    /// Default `timeout` of one attempt.
    pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(2);
    /// Default `attempts`.
    pub const DEFAULT_ATTEMPTS: u32 = 3;
    /// Default `min_refresh`.
    pub const DEFAULT_MIN_REFRESH: Duration = Duration::from_secs(1);

    /// Settings with the default timeout, attempts and floor.
    pub fn new(interval: Duration, resolver: Option<SocketAddr>) -> DnsSettings {
        DnsSettings {
            interval,
            resolver,
            timeout: Self::DEFAULT_TIMEOUT,
            attempts: Self::DEFAULT_ATTEMPTS,
            min_refresh: Self::DEFAULT_MIN_REFRESH,
        }
    }
}

impl Default for DnsSettings {
    fn default() -> DnsSettings {
        DnsSettings::new(Self::DEFAULT_INTERVAL, None)
    }
}

/// One successful resolution.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Answer {
    /// The addresses, sorted, distinct, never empty.
    pub addrs: Vec<IpAddr>,
    /// The smallest TTL of the records used; `None` when the source gives none (the
    /// system resolver, an IP literal): the interval applies.
    pub ttl: Option<Duration>,
}

impl Answer {
    fn literal(ip: IpAddr) -> Answer {
        Answer {
            addrs: vec![ip],
            ttl: None,
        }
    }
}

/// Why a resolution failed. Every variant means "no answer this time": the caller keeps
/// the last known members.
#[derive(Debug)]
pub enum DnsError {
    /// The name is not a valid DNS name.
    InvalidName,
    /// No reply within `timeout` on any of the `attempts`.
    Timeout,
    /// NXDOMAIN: the server says the name does not exist.
    NxDomain,
    /// The name exists but has no A or AAAA records (NODATA).
    NoAddresses,
    /// The server answered with another error RCODE (2 SERVFAIL, 5 REFUSED, ...).
    Server(u16),
    /// A TCP reply that is not the answer to the question.
    BadReply(&'static str),
    /// A socket error (for example a refused port), or the system resolver's error.
    Io(io::Error),
}

impl fmt::Display for DnsError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            DnsError::InvalidName => f.write_str("invalid name"),
            DnsError::Timeout => f.write_str("timed out"),
            DnsError::NxDomain => f.write_str("no such name (NXDOMAIN)"),
            DnsError::NoAddresses => f.write_str("no A or AAAA records"),
            DnsError::Server(rcode) => write!(f, "server error rcode={rcode}"),
            DnsError::BadReply(why) => write!(f, "bad reply: {why}"),
            DnsError::Io(e) => write!(f, "{e}"),
        }
    }
}

impl std::error::Error for DnsError {}

/// Resolves `host` as `settings` say: with the configured server, else the system
/// resolver.
pub fn lookup(settings: &DnsSettings, host: &str) -> Result<Answer, DnsError> {
    match settings.resolver {
        Some(server) => resolve(server, host, settings.timeout, settings.attempts),
        None => resolve_system(host),
    }
}

/// A watched name with the port its members serve on: one backend address of the
/// configuration, such as `api-1.internal:8080`.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Service {
    /// The host name, as configured.
    pub host: String,
    /// The port every member serves on.
    pub port: u16,
}

impl Service {
    /// The service `host:port`.
    pub fn new(host: impl Into<String>, port: u16) -> Service {
        Service {
            host: host.into(),
            port,
        }
    }
}

impl fmt::Display for Service {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.host, self.port)
    }
}

/// A service's member set changed. Sent only on a change: never for a name that failed
/// to resolve (its members stay), nor for one that resolved to the same set.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DnsUpdate {
    /// Which service.
    pub service: Service,
    /// Every member now, sorted; `added` and `removed` are the difference to the set the
    /// previous update for this service said (empty before the first).
    pub members: Vec<SocketAddr>,
    /// New members (start them under slow start).
    pub added: Vec<SocketAddr>,
    /// Vanished members (drain them).
    pub removed: Vec<SocketAddr>,
}
