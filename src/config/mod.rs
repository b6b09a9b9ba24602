//! The TOML configuration of spec §3: parsed with serde (unknown keys are errors), then
//! validated into a typed [`Config`] that the rest of lbd trusts without re-checking.

mod parse;

use std::fmt;
use std::net::SocketAddr;
use std::path::Path;
use std::time::Duration;

use serde::Deserialize;

use crate::bounds::{MAX_ATTEMPTS, MAX_HEADERS};
use crate::grammar::is_token_byte;

pub use parse::{address, duration};
use parse::{de_address, de_duration, de_opt_duration};

/// A configuration error: what is wrong, naming the key (and line where toml knows it).
#[derive(Debug)]
pub struct ConfigError(String);

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for ConfigError {}

/// The whole validated configuration.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// Listener and process-wide limits.
    pub server: Server,
    /// Every phase's time limit.
    #[serde(default)]
    pub timeouts: Timeouts,
    /// Which algorithm picks a backend.
    #[serde(default)]
    pub balancer: Balancer,
    /// Size limits on requests.
    #[serde(default)]
    pub limits: Limits,
    /// How failed upstream attempts are retried.
    #[serde(default)]
    pub retry: RetryPolicy,
    /// Health probes.
    #[serde(default)]
    pub health: Health,
    /// The origin servers; at least one.
    #[serde(rename = "backend", default)]
    pub backends: Vec<BackendConfig>,
    /// Optional admin listener.
    #[serde(default)]
    pub admin: Option<Admin>,
    /// Logging switches.
    #[serde(default)]
    pub log: Log,
}

/// `[server]`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Server {
    /// Address every worker's listener binds (with `SO_REUSEPORT`).
    #[serde(deserialize_with = "de_address")]
    pub listen: SocketAddr,
    /// Worker threads; 0 in the file is an error, absent means available cores.
    #[serde(default = "default_workers")]
    pub workers: usize,
    /// Open client connections per process; at the limit, accepting pauses.
    #[serde(default = "default_max_connections")]
    pub max_connections: usize,
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
    /// Drain deadline on SIGINT/SIGTERM.
    #[serde(deserialize_with = "de_duration")]
    pub shutdown: Duration,
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
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Balancer {
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
#[derive(Debug, Clone, Deserialize)]
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

/// One `[[backend]]`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BackendConfig {
    /// Where the origin server listens.
    #[serde(deserialize_with = "de_address")]
    pub address: SocketAddr,
    /// Relative share for weighted algorithms; at least 1.
    #[serde(default = "default_weight")]
    pub weight: u32,
    /// Name in logs, metrics and the admin API; defaults to the resolved address.
    #[serde(default)]
    pub name: String,
}

/// `[admin]`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Admin {
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

impl Config {
    /// Reads and validates a file.
    pub fn load(path: &Path) -> Result<Config, ConfigError> {
        let text = std::fs::read_to_string(path)
            .map_err(|e| ConfigError(format!("cannot read {}: {e}", path.display())))?;
        Config::parse(&text)
    }

    /// Parses and validates TOML text.
    pub fn parse(text: &str) -> Result<Config, ConfigError> {
        let mut config: Config =
            toml::from_str(text).map_err(|e| ConfigError(e.to_string().trim_end().to_owned()))?;
        config.validate()?;
        Ok(config)
    }

    /// A config for `listen` in front of `backends`, everything else default. Handy for
    /// embedding and tests; call [`Config::validate`] after changing fields.
    pub fn new(listen: SocketAddr, backends: &[SocketAddr]) -> Config {
        let mut config = Config {
            server: Server {
                listen,
                workers: default_workers(),
                max_connections: default_max_connections(),
            },
            timeouts: Timeouts::default(),
            balancer: Balancer::default(),
            limits: Limits::default(),
            retry: RetryPolicy::default(),
            health: Health::default(),
            backends: backends
                .iter()
                .map(|&address| BackendConfig {
                    address,
                    weight: 1,
                    name: String::new(),
                })
                .collect(),
            admin: None,
            log: Log::default(),
        };
        for b in &mut config.backends {
            b.name = b.address.to_string();
        }
        config
    }

    /// This configuration for a running lbd whose configuration is `running`: the keys
    /// that need a restart (`server.listen`, `server.workers`, `[admin]`) keep their
    /// running values, with a warning for each one the new file changes.
    pub fn keeping_restart_keys(mut self, running: &Config) -> Config {
        if self.server.listen != running.server.listen {
            log::warn!(
                "reload: server.listen changed to {}; restart to apply",
                self.server.listen
            );
        }
        if self.server.workers != running.server.workers {
            log::warn!(
                "reload: server.workers changed to {}; restart to apply",
                self.server.workers
            );
        }
        if self.admin.as_ref().map(|a| a.listen) != running.admin.as_ref().map(|a| a.listen) {
            log::warn!("reload: [admin] changed; restart to apply");
        }
        self.server.listen = running.server.listen;
        self.server.workers = running.server.workers;
        self
    }

    /// Checks cross-field rules and fills derived defaults (backend names).
    pub fn validate(&mut self) -> Result<(), ConfigError> {
        let err = |key: &str, what: &str| Err(ConfigError(format!("{key}: {what}")));
        if self.server.workers == 0 || self.server.workers > 1024 {
            return err("server.workers", "must be between 1 and 1024");
        }
        if self.server.max_connections == 0 {
            return err("server.max_connections", "must be at least 1");
        }
        if self.limits.head_bytes < 256 || self.limits.head_bytes > 1 << 20 {
            return err("limits.head_bytes", "must be between 256 and 1048576");
        }
        if self.limits.headers == 0 || self.limits.headers > MAX_HEADERS {
            return err(
                "limits.headers",
                &format!("must be between 1 and {MAX_HEADERS}"),
            );
        }
        if self.retry.max_attempts == 0 || self.retry.max_attempts as usize > MAX_ATTEMPTS {
            return err(
                "retry.max_attempts",
                &format!("must be between 1 and {MAX_ATTEMPTS}"),
            );
        }
        if self.retry.same_backend > 100 {
            return err("retry.same_backend", "must be at most 100");
        }
        if self.health.rise == 0 || self.health.fall == 0 {
            return err("health.rise/health.fall", "must be at least 1");
        }
        if self.health.interval.is_zero() || self.health.timeout.is_zero() {
            return err("health.interval/health.timeout", "must be longer than 0");
        }
        if let Some(path) = &self.health.path {
            if !path.starts_with('/') || path.bytes().any(|b| b <= b' ' || b == 0x7f) {
                return err(
                    "health.path",
                    "must start with '/' and contain no spaces or controls",
                );
            }
        }
        if self.balancer.hash_key != HashKey::Ip
            && self.balancer.algorithm != Algorithm::ConsistentHash
        {
            return err(
                "balancer.hash_key",
                "is only used with algorithm = \"consistent_hash\"",
            );
        }
        let t = &self.timeouts;
        let all = [
            ("client_header", t.client_header),
            ("client_idle", t.client_idle),
            ("client_io", t.client_io),
            ("connect", t.connect),
            ("upstream_response", t.upstream_response),
            ("upstream_idle", t.upstream_idle),
        ];
        for (key, value) in all {
            if value.is_zero() {
                return err(&format!("timeouts.{key}"), "must be longer than 0");
            }
        }
        if self.backends.is_empty() {
            return err("backend", "at least one [[backend]] is required");
        }
        if self.backends.len() > 10_000 {
            return err("backend", "at most 10000 backends");
        }
        for (i, b) in self.backends.iter_mut().enumerate() {
            if b.weight == 0 || b.weight > 1000 {
                return err(
                    &format!("backend[{i}].weight"),
                    "must be between 1 and 1000",
                );
            }
            if b.name.is_empty() {
                b.name = b.address.to_string();
            }
            if !b
                .name
                .bytes()
                .all(|c| is_token_byte(c) || c == b':' || c == b'[' || c == b']')
            {
                return err(
                    &format!("backend[{i}].name"),
                    "may contain only token characters (RFC 9110) and :[]",
                );
            }
        }
        for (i, b) in self.backends.iter().enumerate() {
            if self.backends[..i].iter().any(|o| o.name == b.name) {
                return err(
                    &format!("backend[{i}].name"),
                    &format!("duplicate name {:?}", b.name),
                );
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const FULL: &str = r#"
[server]
listen = "127.0.0.1:8080"
workers = 2
max_connections = 100

[timeouts]
client_header = "10s"
client_idle = "60s"
client_io = "60s"
connect = "2s"
upstream_response = "30s"
upstream_idle = "60s"
shutdown = "30s"

[balancer]
algorithm = "round_robin"

[limits]
head_bytes = 16384
headers = 100
body_bytes = 104857600

[retry]
same_backend = 3
delay = "10ms"
max_attempts = 3

[health]
interval = "2s"
timeout = "1s"
rise = 2
fall = 3
path = "/healthz"

[[backend]]
address = "127.0.0.1:8081"
weight = 1
name = "b1"

[[backend]]
address = "127.0.0.1:8082"

[admin]
listen = "127.0.0.1:9090"

[log]
access = false
"#;

    #[test]
    fn full_example_parses() {
        let c = Config::parse(FULL).unwrap();
        assert_eq!(c.server.workers, 2);
        assert_eq!(c.backends.len(), 2);
        assert_eq!(c.backends[0].name, "b1");
        assert_eq!(c.backends[1].name, "127.0.0.1:8082");
        assert_eq!(c.retry.delay, Duration::from_millis(10));
        assert_eq!(c.limits.body_bytes, Some(104857600));
        assert_eq!(c.health.path.as_deref(), Some("/healthz"));
    }

    #[test]
    fn minimal_uses_defaults() {
        let c = Config::parse(
            "[server]\nlisten = \"127.0.0.1:0\"\n[[backend]]\naddress = \"127.0.0.1:1\"\n",
        )
        .unwrap();
        assert_eq!(c.timeouts.client_header, Duration::from_secs(10));
        assert_eq!(c.limits.head_bytes, 16384);
        assert_eq!(c.retry.max_attempts, 3);
        assert!(c.admin.is_none());
    }

    /// Each broken file must fail, and the message must name the offending key.
    #[test]
    fn errors_name_the_key() {
        let base = "[server]\nlisten = \"127.0.0.1:0\"\n";
        let one = "[[backend]]\naddress = \"127.0.0.1:1\"\n";
        let table: Vec<(String, &str)> = vec![
            (format!("{base}{one}[server2]\n"), "server2"),
            (format!("{base}lisen = 1\n{one}"), "lisen"),
            (
                format!("{base}{one}[timeouts]\nconnect = \"2\"\n"),
                "connect",
            ),
            (
                format!("{base}{one}[timeouts]\nconnect = \"2 parsecs\"\n"),
                "connect",
            ),
            (
                format!("{base}{one}[timeouts]\nconnect = \"0s\"\n"),
                "timeouts.connect",
            ),
            (base.to_string(), "backend"),
            (
                format!("{base}[[backend]]\naddress = \"nowhere\"\n"),
                "address",
            ),
            (
                format!("{base}[[backend]]\naddress = \"127.0.0.1:1\"\nweight = 0\n"),
                "weight",
            ),
            (format!("{base}{one}{one}"), "duplicate"),
            (format!("{base}workers = 0\n{one}"), "server.workers"),
            (
                format!("{base}{one}[balancer]\nalgorithm = \"random\"\n"),
                "algorithm",
            ),
            (
                format!("{base}{one}[balancer]\nhash_key = \"cookie\"\n"),
                "hash_key",
            ),
            (
                format!("{base}{one}[health]\npath = \"healthz\"\n"),
                "health.path",
            ),
            ("[server]\n".to_string(), "listen"),
        ];
        for (text, key) in table {
            let e = Config::parse(&text).expect_err(&text).to_string();
            assert!(
                e.contains(key),
                "error for {text:?} should name {key:?}: {e}"
            );
        }
    }

    #[test]
    fn every_algorithm_is_accepted() {
        let base = "[server]\nlisten = \"127.0.0.1:0\"\n[[backend]]\naddress = \"127.0.0.1:1\"\n";
        let table = [
            ("round_robin", Algorithm::RoundRobin),
            ("weighted_round_robin", Algorithm::WeightedRoundRobin),
            ("least_connections", Algorithm::LeastConnections),
            ("power_of_two", Algorithm::PowerOfTwo),
            ("consistent_hash", Algorithm::ConsistentHash),
            ("ip_hash", Algorithm::IpHash),
        ];
        for (name, want) in table {
            let text = format!("{base}[balancer]\nalgorithm = \"{name}\"\nslow_start = \"30s\"\n");
            let c = Config::parse(&text).unwrap();
            assert_eq!(c.balancer.algorithm, want);
            assert_eq!(c.balancer.slow_start, Some(Duration::from_secs(30)));
        }
        let text = format!(
            "{base}[balancer]\nalgorithm = \"consistent_hash\"\nhash_key = \"header:X-User\"\n"
        );
        let c = Config::parse(&text).unwrap();
        assert_eq!(c.balancer.hash_key, HashKey::Header("x-user".into()));
        let text =
            format!("{base}[balancer]\nalgorithm = \"ip_hash\"\nhash_key = \"header:X-User\"\n");
        let e = Config::parse(&text).unwrap_err().to_string();
        assert!(e.contains("balancer.hash_key"), "{e}");
    }

    #[test]
    fn toml_errors_carry_the_line() {
        let text = "[server]\nlisten = \"127.0.0.1:0\"\n[[backend]]\naddress = \"x:1:2\"\n";
        let e = Config::parse(text).unwrap_err().to_string();
        assert!(e.contains("line 4"), "{e}");
    }
}
