//! The serde mirror of the TOML file (spec §3): every section with its defaults, unknown
//! keys refused (`deny_unknown_fields`), values typed by the deserializers in `parse`.
//! Nothing here is checked beyond its type; `super::RawConfig::validate` does that.

use std::net::SocketAddr;
use std::time::Duration;

use serde::Deserialize;

use super::parse::{
    de_address, de_address_as_written, de_duration, de_ip_address, de_opt_duration,
};
use crate::cidr::Cidr;
use crate::grammar::is_token_byte;

/// The configuration as the file states it (or as an embedder builds it), before
/// validation: the serde mirror of spec §3, defaults filled in, unknown keys refused.
/// [`RawConfig::validate`] turns it into the [`Config`] the rest of lbd runs on.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawConfig {
    /// Listener and process-wide limits.
    pub server: ServerConfig,
    /// Every phase's time limit.
    #[serde(default)]
    pub timeouts: Timeouts,
    /// Which algorithm picks a backend.
    #[serde(default)]
    pub balancer: BalancerConfig,
    /// Size limits on requests.
    #[serde(default)]
    pub limits: Limits,
    /// How failed upstream attempts are retried.
    #[serde(default)]
    pub retry: RetryPolicy,
    /// Health probes.
    #[serde(default)]
    pub health: Health,
    /// The origin servers of the pool named `default` (the one requests that match no
    /// route go to); at least one unless `[[route]]`s are configured. After validation:
    /// the `default` pool's backends, also when that pool is a `[[pool]]` table, and
    /// empty when there is no default pool.
    #[serde(rename = "backend", default)]
    pub backends: Vec<BackendConfig>,
    /// The `[[pool]]` tables as written, in file order; [`super::Config::pools`] is the
    /// validated list (with the `default` pool).
    #[serde(rename = "pool", default)]
    pub pool_tables: Vec<PoolConfig>,
    /// The `[[route]]` tables as written, in file order; [`super::Config::routes`] is the
    /// validated list.
    #[serde(rename = "route", default)]
    pub route_tables: Vec<RouteConfig>,
    /// Re-resolution of backend addresses given as names.
    #[serde(default)]
    pub dns: DnsConfig,
    /// Optional admin listener.
    #[serde(default)]
    pub admin: Option<AdminConfig>,
    /// Logging switches.
    #[serde(default)]
    pub log: Log,
    /// HTTPS termination; absent: plain HTTP only.
    #[serde(default)]
    pub tls: Option<TlsConfig>,
}

/// `[tls]` (spec §9).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TlsConfig {
    /// Address every worker's TLS listener binds (with `SO_REUSEPORT`).
    #[serde(deserialize_with = "de_address")]
    pub listen: SocketAddr,
    /// The plain listener answers every request with a 308 to `https://`.
    #[serde(default)]
    pub redirect_http: bool,
    /// The oldest protocol version accepted.
    #[serde(default)]
    pub min_version: TlsVersion,
    /// Connections to the TLS listener start with a PROXY protocol header.
    #[serde(default)]
    pub proxy_protocol: bool,
    /// Certificate chains and keys; the first is the default.
    #[serde(rename = "certificate", default)]
    pub certificates: Vec<CertificateConfig>,
}

/// A TLS protocol version (`"1.2"` or `"1.3"`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Deserialize, Default)]
pub enum TlsVersion {
    /// TLS 1.2.
    #[serde(rename = "1.2")]
    #[default]
    V1_2,
    /// TLS 1.3.
    #[serde(rename = "1.3")]
    V1_3,
}

/// One `[[tls.certificate]]`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CertificateConfig {
    /// PEM file: the leaf certificate first, then intermediates.
    pub cert: std::path::PathBuf,
    /// PEM file: the private key (PKCS#8, PKCS#1 or SEC1).
    pub key: std::path::PathBuf,
}

/// `[server]`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ServerConfig {
    /// Address every worker's listener binds (with `SO_REUSEPORT`).
    #[serde(deserialize_with = "de_address")]
    pub listen: SocketAddr,
    /// Worker threads; 0 in the file is an error, absent means available cores.
    #[serde(default = "default_workers")]
    pub workers: usize,
    /// Open client connections per process; at the limit, accepting pauses.
    #[serde(default = "default_max_connections")]
    pub max_connections: usize,
    /// Connections to this listener start with a PROXY protocol header (spec §11).
    #[serde(default)]
    pub proxy_protocol: bool,
    /// When not empty, only peers inside these blocks may connect (both listeners);
    /// others are closed at once.
    #[serde(default, deserialize_with = "de_cidrs")]
    pub trusted_proxies: Vec<Cidr>,
}

/// serde adapter for a list of CIDR blocks (`"10.0.0.0/8"`, `"::1"`).
fn de_cidrs<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Vec<Cidr>, D::Error> {
    let texts = Vec::<String>::deserialize(d)?;
    texts
        .iter()
        .map(|t| t.parse::<Cidr>().map_err(serde::de::Error::custom))
        .collect()
}

/// `[timeouts]`: every phase of a connection has one.
#[derive(Debug, Clone, Copy, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Timeouts {
    /// From accept (or a keep-alive request's first byte) until the whole head arrived.
    #[serde(deserialize_with = "de_duration")]
    pub client_header: Duration,
    /// Keep-alive idle time between requests.
    #[serde(deserialize_with = "de_duration")]
    pub client_idle: Duration,
    /// Client silent mid-body, or not reading a pending response.
    #[serde(deserialize_with = "de_duration")]
    pub client_io: Duration,
    /// Upstream TCP connect.
    #[serde(deserialize_with = "de_duration")]
    pub connect: Duration,
    /// Waiting for the response head, and between response body reads.
    #[serde(deserialize_with = "de_duration")]
    pub upstream_response: Duration,
    /// A pooled upstream connection is closed after this long idle.
    #[serde(deserialize_with = "de_duration")]
    pub upstream_idle: Duration,
    /// Deadline for in-flight work once shutdown begins (SIGINT/SIGTERM).
    #[serde(deserialize_with = "de_duration")]
    pub shutdown: Duration,
    /// A tunnel (spec §10) with no byte in either direction this long is closed.
    #[serde(deserialize_with = "de_duration")]
    pub tunnel: Duration,
}

impl Default for Timeouts {
    fn default() -> Self {
        Timeouts {
            client_header: Duration::from_secs(10),
            client_idle: Duration::from_secs(60),
            client_io: Duration::from_secs(60),
            connect: Duration::from_secs(2),
            upstream_response: Duration::from_secs(30),
            upstream_idle: Duration::from_secs(60),
            shutdown: Duration::from_secs(30),
            tunnel: Duration::from_secs(3600),
        }
    }
}

/// Balancing algorithms of spec §5.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum Algorithm {
    /// Next eligible backend in turn.
    #[default]
    RoundRobin,
    /// Smooth weighted round-robin (nginx style).
    WeightedRoundRobin,
    /// Fewest in-flight requests relative to weight.
    LeastConnections,
    /// The less loaded of two random eligible backends.
    PowerOfTwo,
    /// Maglev consistent hashing on `hash_key`.
    ConsistentHash,
    /// Maglev consistent hashing on the client address.
    IpHash,
}

impl Algorithm {
    /// The name used in the config file.
    pub fn as_str(self) -> &'static str {
        match self {
            Algorithm::RoundRobin => "round_robin",
            Algorithm::WeightedRoundRobin => "weighted_round_robin",
            Algorithm::LeastConnections => "least_connections",
            Algorithm::PowerOfTwo => "power_of_two",
            Algorithm::ConsistentHash => "consistent_hash",
            Algorithm::IpHash => "ip_hash",
        }
    }
}

/// What `consistent_hash` hashes.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub enum HashKey {
    /// The client's IP address.
    #[default]
    Ip,
    /// The value of this request header (lower-case name).
    Header(String),
}

impl<'de> Deserialize<'de> for HashKey {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let text = String::deserialize(d)?;
        if text == "ip" {
            return Ok(HashKey::Ip);
        }
        match text.strip_prefix("header:") {
            Some(name) if !name.is_empty() && name.bytes().all(is_token_byte) => {
                Ok(HashKey::Header(name.to_ascii_lowercase()))
            }
            _ => Err(serde::de::Error::custom(format!(
                "hash_key {text:?} must be \"ip\" or \"header:NAME\""
            ))),
        }
    }
}

/// `[balancer]`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct BalancerConfig {
    /// The algorithm every worker's pick uses.
    pub algorithm: Algorithm,
    /// Key for `consistent_hash`.
    pub hash_key: HashKey,
    /// Weight ramp for a backend that comes up.
    #[serde(deserialize_with = "de_opt_duration")]
    pub slow_start: Option<Duration>,
}

/// `[limits]`.
#[derive(Debug, Clone, Copy, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Limits {
    /// Request line plus headers; past it 414 (line) or 431.
    pub head_bytes: usize,
    /// Header fields per request; past it 431.
    pub headers: usize,
    /// Request body limit; past it 413. `None`: unlimited.
    pub body_bytes: Option<u64>,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            head_bytes: 16384,
            headers: 100,
            body_bytes: None,
        }
    }
}

/// `[retry]`: the seed's connect-retry policy.
#[derive(Debug, Clone, Copy, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RetryPolicy {
    /// Connect retries on the same backend before it is marked down.
    pub same_backend: u32,
    /// Pause between those retries.
    #[serde(deserialize_with = "de_duration")]
    pub delay: Duration,
    /// Backends tried for one request before 503.
    pub max_attempts: u32,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        RetryPolicy {
            same_backend: 3,
            delay: Duration::from_millis(10),
            max_attempts: 3,
        }
    }
}

/// `[health]`.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Health {
    /// Time between probe rounds.
    #[serde(deserialize_with = "de_duration")]
    pub interval: Duration,
    /// One probe's time limit.
    #[serde(deserialize_with = "de_duration")]
    pub timeout: Duration,
    /// Successes before a down backend is up again.
    pub rise: u32,
    /// Failures before an up backend is down.
    pub fall: u32,
    /// HTTP GET path; `None` means a TCP connect probe.
    pub path: Option<String>,
}

impl Default for Health {
    fn default() -> Self {
        Health {
            interval: Duration::from_secs(2),
            timeout: Duration::from_secs(1),
            rise: 2,
            fall: 3,
            path: None,
        }
    }
}

/// One `[[backend]]` (or `[[pool.backend]]`).
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(from = "BackendFields")]
pub struct BackendConfig {
    /// Where the origin server listens (a name in `host_port` resolved to its first
    /// address when the file was loaded).
    pub address: SocketAddr,
    /// The address as the file wrote it (`"api-1.internal:8080"`, `"10.0.0.7:80"`), so
    /// that a name can be told from an IP literal and resolved again; empty: the text of
    /// `address` (filled in by validation).
    pub host_port: String,
    /// Relative share for weighted algorithms; at least 1.
    pub weight: u32,
    /// Name in logs, metrics and the admin API; empty: the address (filled in by
    /// validation).
    pub name: String,
    /// Each new connection to it starts with a PROXY protocol header of this version
    /// (spec §11); such a connection serves only the client connection it was opened for.
    pub send_proxy: Option<ProxyVersion>,
    /// The host name when the address names a DNS service (spec §12): its members are the
    /// addresses the name resolves to at run time, each a backend `NAME@IP:PORT`, and
    /// `address` is only a placeholder holding the port.
    pub service: Option<String>,
}

/// A PROXY protocol version lbd writes toward a backend (`send_proxy = "v1" | "v2"`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ProxyVersion {
    /// The text header (`PROXY TCP4 ...`).
    V1,
    /// The binary header.
    V2,
}

/// The keys of a `[[backend]]` table as serde reads them; the address parser keeps the
/// text beside the resolved address (one key, two fields), and its errors keep the key's
/// line.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct BackendFields {
    #[serde(deserialize_with = "de_address_as_written")]
    address: (SocketAddr, String, Option<String>),
    #[serde(default = "default_weight")]
    weight: u32,
    #[serde(default)]
    name: String,
    #[serde(default)]
    send_proxy: Option<ProxyVersion>,
}

impl From<BackendFields> for BackendConfig {
    fn from(f: BackendFields) -> BackendConfig {
        BackendConfig {
            address: f.address.0,
            host_port: f.address.1,
            weight: f.weight,
            name: f.name,
            send_proxy: f.send_proxy,
            service: f.address.2,
        }
    }
}

/// One `[[pool]]`: a named set of backends with its own balancer and health settings.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PoolConfig {
    /// Unique; `[A-Za-z0-9_.-]+`. Routes name the pool by it.
    pub name: String,
    /// As `balancer.algorithm` (its default, not the `[balancer]` value, when absent).
    #[serde(default)]
    pub algorithm: Algorithm,
    /// As `balancer.hash_key`.
    #[serde(default)]
    pub hash_key: HashKey,
    /// As `balancer.slow_start`.
    #[serde(default, deserialize_with = "de_opt_duration")]
    pub slow_start: Option<Duration>,
    /// Keys of `[health]` that differ for this pool.
    #[serde(default)]
    pub health: HealthOverrides,
    /// The pool's origin servers (`[[pool.backend]]`); may be empty.
    #[serde(rename = "backend", default)]
    pub backends: Vec<BackendConfig>,
}

impl PoolConfig {
    /// The pool's balancer keys as a `[balancer]` section.
    pub fn balancer(&self) -> BalancerConfig {
        BalancerConfig {
            algorithm: self.algorithm,
            hash_key: self.hash_key.clone(),
            slow_start: self.slow_start,
        }
    }
}

/// A pool's `health = { ... }`: each key present replaces that key of `[health]`.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HealthOverrides {
    /// Replaces `health.interval`.
    #[serde(default, deserialize_with = "de_opt_duration")]
    pub interval: Option<Duration>,
    /// Replaces `health.timeout`.
    #[serde(default, deserialize_with = "de_opt_duration")]
    pub timeout: Option<Duration>,
    /// Replaces `health.rise`.
    pub rise: Option<u32>,
    /// Replaces `health.fall`.
    pub fall: Option<u32>,
    /// Replaces `health.path` (an HTTP check; an override cannot go back to TCP).
    pub path: Option<String>,
}

impl HealthOverrides {
    /// `base` with these overrides applied.
    pub fn apply(&self, base: &Health) -> Health {
        Health {
            interval: self.interval.unwrap_or(base.interval),
            timeout: self.timeout.unwrap_or(base.timeout),
            rise: self.rise.unwrap_or(base.rise),
            fall: self.fall.unwrap_or(base.fall),
            path: self.path.clone().or_else(|| base.path.clone()),
        }
    }
}

/// One `[[route]]`: which requests go to which pool.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RouteConfig {
    /// `"api.example.com"` or `"*.example.com"`; absent: any host.
    pub host: Option<String>,
    /// Matched against the start of the path; default `"/"`.
    #[serde(default = "default_path_prefix")]
    pub path_prefix: String,
    /// The name of the pool matching requests go to.
    pub pool: String,
}

/// `[dns]`.
#[derive(Debug, Clone, Copy, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct DnsConfig {
    /// How often backend names are resolved again (sooner when a record's TTL says so).
    #[serde(deserialize_with = "de_duration")]
    pub interval: Duration,
    /// The DNS server lbd queries itself (`IP:PORT`); `None`: the system resolver.
    #[serde(deserialize_with = "de_ip_address")]
    pub resolver: Option<SocketAddr>,
}

impl Default for DnsConfig {
    fn default() -> Self {
        DnsConfig {
            interval: Duration::from_secs(30),
            resolver: None,
        }
    }
}

/// `[admin]`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AdminConfig {
    /// Admin listener address.
    #[serde(deserialize_with = "de_address")]
    pub listen: SocketAddr,
}

/// `[log]`.
#[derive(Debug, Clone, Copy, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Log {
    /// One access-log line per exchange on stdout.
    pub access: bool,
}

fn default_workers() -> usize {
    std::thread::available_parallelism().map_or(1, |n| n.get())
}

fn default_max_connections() -> usize {
    10_000
}

fn default_weight() -> u32 {
    1
}

fn default_path_prefix() -> String {
    "/".to_owned()
}

impl RawConfig {
    /// A configuration for `listen` in front of `backends`, everything else default:
    /// the start of an embedder's (or a test's) configuration; change fields, then
    /// [`RawConfig::validate`].
    pub fn new(listen: SocketAddr, backends: &[SocketAddr]) -> RawConfig {
        RawConfig {
            server: ServerConfig {
                listen,
                workers: default_workers(),
                max_connections: default_max_connections(),
                proxy_protocol: false,
                trusted_proxies: Vec::new(),
            },
            timeouts: Timeouts::default(),
            balancer: BalancerConfig::default(),
            limits: Limits::default(),
            retry: RetryPolicy::default(),
            health: Health::default(),
            backends: backends
                .iter()
                .map(|&address| BackendConfig {
                    address,
                    host_port: String::new(),
                    weight: 1,
                    name: String::new(),
                    send_proxy: None,
                    service: None,
                })
                .collect(),
            pool_tables: Vec::new(),
            route_tables: Vec::new(),
            dns: DnsConfig::default(),
            admin: None,
            log: Log::default(),
            tls: None,
        }
    }
}
