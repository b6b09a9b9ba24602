//! The TOML configuration of spec §3: parsed into the serde mirror [`RawConfig`]
//! (unknown keys are errors), then validated into a [`Config`], which only validation
//! can build and the rest of lbd trusts without re-checking.

mod parse;
mod pools;
mod raw;
#[cfg(feature = "tls")]
mod tls;

use std::fmt;
use std::ops::Deref;
use std::path::Path;

use crate::bounds::{MAX_ATTEMPTS, MAX_HEADERS};
use crate::route::RouteSpec;

pub use pools::{Pool, DEFAULT_POOL};
pub use raw::{
    AdminConfig, Algorithm, BackendConfig, BalancerConfig, CertificateConfig, DnsConfig, HashKey,
    Health, HealthOverrides, Limits, Log, PoolConfig, ProxyVersion, RawConfig, RetryPolicy,
    RouteConfig, ServerConfig, Timeouts, TlsConfig, TlsVersion,
};
#[cfg(feature = "tls")]
pub use tls::{crypto_provider, LoadedCertificate, TlsServer, TLS_BUFFER_LIMIT};

/// A configuration error: what is wrong, naming the key (and line where toml knows it).
#[derive(Debug)]
pub struct ConfigError(String);

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for ConfigError {}

/// A validated configuration: a [`RawConfig`] that passed [`RawConfig::validate`]
/// (backend names filled in, every limit in range, cross-field rules kept, certificate
/// files loaded and matched), with the pools and routes derived from it. Read its
/// sections through `Deref` (`backends`, `balancer` and `health` are the `default`
/// pool's); it cannot be changed or built any other way.
#[derive(Debug, Clone)]
pub struct Config {
    raw: RawConfig,
    /// Every pool: the `default` one of the top-level `[[backend]]`s first when there are
    /// any, then the `[[pool]]` tables in file order. Names are unique.
    pools: Vec<Pool>,
    /// The routes in file order; each `pool` is an index into `pools`.
    routes: Vec<RouteSpec>,
    /// Index in `pools` of the pool named `default`.
    default_pool: Option<usize>,
    /// `[tls]` loaded: the certificates and the rustls configuration built from them.
    #[cfg(feature = "tls")]
    tls_server: Option<TlsServer>,
    /// What `--check` and a start or reload report without refusing the file.
    warnings: Vec<String>,
}

impl Deref for Config {
    type Target = RawConfig;
    fn deref(&self) -> &RawConfig {
        &self.raw
    }
}

impl Config {
    /// What is valid but probably not meant, one line each naming the key (`lbd --check`
    /// prints them, a start or reload logs them): an expired certificate, unmatched
    /// requests answered 404 for want of a default pool, a catch-all route leaving the
    /// default pool nothing, routes to pools without backends, pools no route names.
    pub fn warnings(&self) -> &[String] {
        &self.warnings
    }

    /// The loaded `[tls]` certificates and rustls configuration, when `[tls]` is set.
    #[cfg(feature = "tls")]
    pub fn tls_server(&self) -> Option<&TlsServer> {
        self.tls_server.as_ref()
    }

    /// Reads and validates a file.
    pub fn load(path: &Path) -> Result<Config, ConfigError> {
        let text = std::fs::read_to_string(path)
            .map_err(|e| ConfigError(format!("cannot read {}: {e}", path.display())))?;
        Config::parse(&text)
    }

    /// Parses and validates TOML text.
    pub fn parse(text: &str) -> Result<Config, ConfigError> {
        let raw: RawConfig =
            toml::from_str(text).map_err(|e| ConfigError(e.to_string().trim_end().to_owned()))?;
        raw.validate()
    }

    /// Every pool: `default` (the top-level `[[backend]]`s, `[balancer]` and `[health]`)
    /// first when the file has top-level backends, then the `[[pool]]` tables in file
    /// order.
    pub fn pools(&self) -> &[Pool] {
        &self.pools
    }

    /// The index in [`Config::pools`] of the pool named `default`, which requests that
    /// match no route go to; `None`: they get 404 (reason `no_route`).
    pub fn default_pool(&self) -> Option<usize> {
        self.default_pool
    }

    /// The index in [`Config::pools`] of the pool named `name`.
    pub fn pool_index(&self, name: &str) -> Option<usize> {
        self.pools.iter().position(|p| p.name == name)
    }

    /// The routes in file order, host patterns lower-cased, each `pool` an index into
    /// [`Config::pools`]; the input of `route::RouteTable::new`.
    pub fn routes(&self) -> &[RouteSpec] {
        &self.routes
    }

    /// This configuration for a running lbd whose configuration is `running`: the keys
    /// that need a restart (`server.listen`, `server.workers`, `[admin]`) keep their
    /// running values, with a warning for each one the new file changes.
    pub fn keeping_restart_keys(mut self, running: &Config) -> Config {
        let raw = &mut self.raw;
        if raw.server.listen != running.server.listen {
            log::warn!(
                "reload: server.listen changed to {}; restart to apply",
                raw.server.listen
            );
        }
        if raw.server.workers != running.server.workers {
            log::warn!(
                "reload: server.workers changed to {}; restart to apply",
                raw.server.workers
            );
        }
        if raw.admin.as_ref().map(|a| a.listen) != running.admin.as_ref().map(|a| a.listen) {
            log::warn!("reload: [admin] changed; restart to apply");
        }
        let tls_listen = |c: &RawConfig| c.tls.as_ref().map(|t| t.listen);
        if tls_listen(raw) != tls_listen(running) {
            log::warn!("reload: tls.listen changed (or [tls] added or removed); restart to apply");
        }
        raw.server.listen = running.server.listen;
        raw.server.workers = running.server.workers;
        raw.admin.clone_from(&running.admin);
        if let (Some(new), Some(old)) = (&mut raw.tls, &running.tls) {
            new.listen = old.listen;
        }
        self
    }
}

impl RawConfig {
    /// Checks every value and cross-field rule, fills derived defaults (backend names),
    /// derives the pools and routes, and returns the configuration lbd can run; the
    /// error names the key.
    pub fn validate(mut self) -> Result<Config, ConfigError> {
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
        pools::check_health("health", &self.health)?;
        pools::check_balancer("balancer", &self.balancer)?;
        if self.dns.interval.is_zero() {
            return err("dns.interval", "must be longer than 0");
        }
        let t = &self.timeouts;
        let all = [
            ("client_header", t.client_header),
            ("client_idle", t.client_idle),
            ("client_io", t.client_io),
            ("connect", t.connect),
            ("upstream_response", t.upstream_response),
            ("upstream_idle", t.upstream_idle),
            ("tunnel", t.tunnel),
        ];
        for (key, value) in all {
            if value.is_zero() {
                return err(&format!("timeouts.{key}"), "must be longer than 0");
            }
        }
        let pools::Validated {
            pools,
            routes,
            default_pool,
        } = pools::validate(&mut self)?;
        #[cfg_attr(not(feature = "tls"), allow(unused_mut))]
        let mut warnings = pools::warnings(&pools, &routes, default_pool);
        #[cfg(feature = "tls")]
        let tls_server = self.load_tls(&mut warnings)?;
        #[cfg(not(feature = "tls"))]
        if self.tls.is_some() {
            return err("tls", "this lbd was built without the `tls` feature");
        }
        Ok(Config {
            raw: self,
            pools,
            routes,
            default_pool,
            #[cfg(feature = "tls")]
            tls_server,
            warnings,
        })
    }

    /// Loads every `[[tls.certificate]]` (an expired one is a warning naming it) and
    /// builds the rustls configuration.
    #[cfg(feature = "tls")]
    fn load_tls(&self, warnings: &mut Vec<String>) -> Result<Option<TlsServer>, ConfigError> {
        let Some(tls) = &self.tls else {
            return Ok(None);
        };
        if tls.certificates.is_empty() {
            return Err(ConfigError(
                "tls.certificate: at least one [[tls.certificate]] is required".into(),
            ));
        }
        let now = std::time::SystemTime::now();
        let mut loaded = Vec::with_capacity(tls.certificates.len());
        for (i, c) in tls.certificates.iter().enumerate() {
            let cert = tls::load(&c.cert, &c.key)
                .map_err(|e| ConfigError(format!("tls.certificate[{i}]: {e}")))?;
            if cert.not_after.is_some_and(|t| t < now) {
                warnings.push(format!(
                    "tls.certificate[{i}]: {} has expired",
                    c.cert.display()
                ));
            }
            loaded.push(cert);
        }
        let server = tls::server_config(&loaded, tls.min_version)
            .map_err(|e| ConfigError(format!("tls: {e}")))?;
        Ok(Some(TlsServer {
            server,
            certificates: loaded,
        }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

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

    /// A file written before pools and routes is one pool named `default` whose
    /// backends, balancer and health are the top-level ones, as they always were.
    #[test]
    fn a_file_without_pools_is_the_default_pool() {
        let c = Config::parse(FULL).unwrap();
        assert_eq!(c.pools().len(), 1);
        assert_eq!(c.default_pool(), Some(0));
        let pool = &c.pools()[0];
        assert_eq!(pool.name, DEFAULT_POOL);
        assert_eq!(pool.backends, c.backends);
        assert_eq!(pool.balancer, c.balancer);
        assert_eq!(pool.health, c.health);
        assert!(c.routes().is_empty());
        assert!(c.warnings().is_empty());
        let b = &c.backends;
        let got: Vec<_> = b
            .iter()
            .map(|b| {
                (
                    b.name.as_str(),
                    b.host_port.as_str(),
                    b.address.port(),
                    b.weight,
                )
            })
            .collect();
        assert_eq!(
            got,
            [
                ("b1", "127.0.0.1:8081", 8081, 1),
                ("127.0.0.1:8082", "127.0.0.1:8082", 8082, 1)
            ]
        );
        assert_eq!(c.balancer, BalancerConfig::default());
        assert_eq!(
            c.health,
            Health {
                path: Some("/healthz".into()),
                ..Health::default()
            }
        );
        // The same as a configuration built in code.
        let addrs = [
            "127.0.0.1:8081".parse().unwrap(),
            "127.0.0.1:8082".parse().unwrap(),
        ];
        let mut raw = RawConfig::new("127.0.0.1:8080".parse().unwrap(), &addrs);
        raw.backends[0].name = "b1".into();
        let built = raw.validate().unwrap();
        assert_eq!(built.backends, c.backends);
        assert_eq!(built.pools()[0].backends, pool.backends);
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
