//! Validation of what spec §12 adds to the file: `[[pool]]`s, `[[route]]`s and the
//! backends of every pool, and the warnings `lbd --check` prints. The top-level
//! `[[backend]]`s, `[balancer]` and `[health]` are the pool named `default`.

use std::collections::HashMap;

use super::{Algorithm, HashKey};
use super::{BackendConfig, BalancerConfig, ConfigError, Health, RawConfig};
use crate::bounds::{MAX_BACKENDS, MAX_POOLS, MAX_ROUTES};
use crate::grammar::is_token_byte;
use crate::route::{check_path_prefix, HostPattern, RouteSpec};

/// The name of the pool of the top-level `[[backend]]`s, which requests that match no
/// route go to.
pub const DEFAULT_POOL: &str = "default";

/// Longest pool name.
const MAX_POOL_NAME: usize = 128;

/// A validated pool: a named set of backends with its balancer and health settings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Pool {
    /// Unique among pools; `[A-Za-z0-9_.-]+`.
    pub name: String,
    /// Its algorithm, hash key and slow start.
    pub balancer: BalancerConfig,
    /// `[health]` with the pool's overrides applied.
    pub health: Health,
    /// Its backends in file order, names and `host_port` filled in; names are unique
    /// across all pools. May be empty (a warning).
    pub backends: Vec<BackendConfig>,
}

/// What validation derives from the pool and route tables.
pub(super) struct Validated {
    pub pools: Vec<Pool>,
    pub routes: Vec<RouteSpec>,
    pub default_pool: Option<usize>,
}

fn err<T>(key: &str, what: &str) -> Result<T, ConfigError> {
    Err(ConfigError(format!("{key}: {what}")))
}

/// Checks the `[health]` keys (or a pool's effective health) under `key`.
pub(super) fn check_health(key: &str, h: &Health) -> Result<(), ConfigError> {
    for (name, value) in [("interval", h.interval), ("timeout", h.timeout)] {
        if value.is_zero() {
            return err(&format!("{key}.{name}"), "must be longer than 0");
        }
    }
    for (name, value) in [("rise", h.rise), ("fall", h.fall)] {
        if value == 0 {
            return err(&format!("{key}.{name}"), "must be at least 1");
        }
    }
    if let Some(path) = &h.path {
        if !path.starts_with('/') || path.bytes().any(|b| b <= b' ' || b == 0x7f) {
            return err(
                &format!("{key}.path"),
                "must start with '/' and contain no spaces or controls",
            );
        }
    }
    Ok(())
}

/// Checks balancer keys under `key` (`balancer`, or `pool[1]` whose keys sit in the
/// pool's table).
pub(super) fn check_balancer(key: &str, b: &BalancerConfig) -> Result<(), ConfigError> {
    if b.hash_key != HashKey::Ip && b.algorithm != Algorithm::ConsistentHash {
        return err(
            &format!("{key}.hash_key"),
            "is only used with algorithm = \"consistent_hash\"",
        );
    }
    Ok(())
}

/// Checks one pool's backends (`key` is `backend` or `pool[1].backend`) and fills in
/// their names and `host_port`.
fn fill_backends(key: &str, backends: &mut [BackendConfig]) -> Result<(), ConfigError> {
    for (i, b) in backends.iter_mut().enumerate() {
        if b.weight == 0 || b.weight > 1000 {
            return err(&format!("{key}[{i}].weight"), "must be between 1 and 1000");
        }
        if b.host_port.is_empty() {
            b.host_port = b.address.to_string();
        }
        if b.name.is_empty() {
            // A service is named as written; its members `NAME@IP:PORT`.
            b.name = match &b.service {
                Some(_) => b.host_port.clone(),
                None => b.address.to_string(),
            };
        }
        if !b
            .name
            .bytes()
            .all(|c| is_token_byte(c) || c == b':' || c == b'[' || c == b']')
        {
            return err(
                &format!("{key}[{i}].name"),
                "may contain only token characters (RFC 9110) and :[]",
            );
        }
    }
    Ok(())
}

fn check_pool_name(key: &str, name: &str) -> Result<(), ConfigError> {
    if name.is_empty() || name.len() > MAX_POOL_NAME {
        return err(key, &format!("must be 1 to {MAX_POOL_NAME} bytes"));
    }
    if !name
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || b"_.-".contains(&b))
    {
        return err(
            key,
            &format!("{name:?} may contain only letters, digits, '_', '.' and '-'"),
        );
    }
    if name == "none" {
        // Metrics label answers made before any pool was chosen `pool="none"`.
        return err(
            key,
            "\"none\" is reserved (the metrics' pool label for unrouted answers)",
        );
    }
    Ok(())
}

/// Validates backends, pools and routes of `raw`, fills in backend names, and leaves
/// `raw.backends`, `raw.balancer` and `raw.health` describing the `default` pool (when
/// that pool is a `[[pool]]` table, its settings are copied there).
pub(super) fn validate(raw: &mut RawConfig) -> Result<Validated, ConfigError> {
    let top_level = !raw.backends.is_empty();
    if raw.pool_tables.len() > MAX_POOLS {
        return err("pool", &format!("at most {MAX_POOLS} [[pool]] tables"));
    }
    if raw.route_tables.len() > MAX_ROUTES {
        return err("route", &format!("at most {MAX_ROUTES} [[route]] tables"));
    }
    let total = raw
        .pool_tables
        .iter()
        .map(|p| p.backends.len())
        .sum::<usize>();
    if raw.backends.len() + total > MAX_BACKENDS {
        return err(
            "backend",
            &format!("at most {MAX_BACKENDS} backends in all"),
        );
    }

    let mut pools = Vec::with_capacity(raw.pool_tables.len() + 1);
    if top_level {
        fill_backends("backend", &mut raw.backends)?;
        pools.push(Pool {
            name: DEFAULT_POOL.to_owned(),
            balancer: raw.balancer.clone(),
            health: raw.health.clone(),
            backends: raw.backends.clone(),
        });
    }
    for (p, table) in raw.pool_tables.iter_mut().enumerate() {
        let key = format!("pool[{p}]");
        check_pool_name(&format!("{key}.name"), &table.name)?;
        if table.name == DEFAULT_POOL && top_level {
            return err(
                &format!("{key}.name"),
                "\"default\" is the pool of the top-level [[backend]]s; \
                 use one or the other",
            );
        }
        if pools.iter().any(|o: &Pool| o.name == table.name) {
            return err(
                &format!("{key}.name"),
                &format!("duplicate pool name {:?}", table.name),
            );
        }
        let balancer = table.balancer();
        check_balancer(&key, &balancer)?;
        let health = table.health.apply(&raw.health);
        check_health(&format!("{key}.health"), &health)?;
        fill_backends(&format!("{key}.backend"), &mut table.backends)?;
        pools.push(Pool {
            name: table.name.clone(),
            balancer,
            health,
            backends: table.backends.clone(),
        });
    }
    check_backend_names(raw)?;

    let default_pool = pools.iter().position(|p| p.name == DEFAULT_POOL);
    if default_pool.is_none() && raw.route_tables.is_empty() {
        return err(
            "backend",
            "at least one [[backend]] is required (or [[route]]s to [[pool]]s)",
        );
    }
    if let (false, Some(d)) = (top_level, default_pool) {
        raw.backends = pools[d].backends.clone();
        raw.balancer = pools[d].balancer.clone();
        raw.health = pools[d].health.clone();
    }
    let routes = routes(raw, &pools)?;
    Ok(Validated {
        pools,
        routes,
        default_pool,
    })
}

/// Backend names are unique across all pools.
fn check_backend_names(raw: &RawConfig) -> Result<(), ConfigError> {
    let lists = std::iter::once(("backend".to_owned(), &raw.backends)).chain(
        raw.pool_tables
            .iter()
            .enumerate()
            .map(|(p, t)| (format!("pool[{p}].backend"), &t.backends)),
    );
    let mut seen: HashMap<&str, String> = HashMap::new();
    for (key, backends) in lists {
        for (i, b) in backends.iter().enumerate() {
            let here = format!("{key}[{i}]");
            if let Some(first) = seen.insert(&b.name, here.clone()) {
                return err(
                    &format!("{here}.name"),
                    &format!("duplicate name {:?} (also {first})", b.name),
                );
            }
        }
    }
    Ok(())
}

/// The validated routes, in file order.
fn routes(raw: &RawConfig, pools: &[Pool]) -> Result<Vec<RouteSpec>, ConfigError> {
    let mut routes: Vec<RouteSpec> = Vec::with_capacity(raw.route_tables.len());
    let mut seen: HashMap<(HostPattern, &str), usize> = HashMap::new();
    for (r, table) in raw.route_tables.iter().enumerate() {
        let key = format!("route[{r}]");
        let host = match &table.host {
            None => HostPattern::Any,
            Some(text) => HostPattern::parse(text)
                .or_else(|e| err(&format!("{key}.host"), &format!("{text:?}: {e}")))?,
        };
        check_path_prefix(&table.path_prefix).or_else(|e| {
            err(
                &format!("{key}.path_prefix"),
                &format!("{:?} {e}", table.path_prefix),
            )
        })?;
        let Some(pool) = pools.iter().position(|p| p.name == table.pool) else {
            let hint = if table.pool == DEFAULT_POOL {
                " (there are no top-level [[backend]]s)"
            } else {
                ""
            };
            return err(
                &format!("{key}.pool"),
                &format!("unknown pool {:?}{hint}", table.pool),
            );
        };
        if let Some(first) = seen.insert((host.clone(), &table.path_prefix), r) {
            return err(
                &key,
                &format!(
                    "same host ({host}) and path_prefix ({:?}) as route[{first}]; \
                     it could never match",
                    table.path_prefix
                ),
            );
        }
        routes.push(RouteSpec {
            host,
            path_prefix: table.path_prefix.clone(),
            pool,
        });
    }
    Ok(routes)
}

/// What is valid but probably not meant, in file order.
pub(super) fn warnings(
    pools: &[Pool],
    routes: &[RouteSpec],
    default_pool: Option<usize>,
) -> Vec<String> {
    let mut out = Vec::new();
    let catch_all = routes
        .iter()
        .position(|r| r.host == HostPattern::Any && r.path_prefix == "/");
    match (default_pool, catch_all) {
        _ if routes.is_empty() => {}
        (None, None) => out.push(
            "no default pool (no top-level [[backend]]): requests that match no route \
             get 404 (reason no_route)"
                .to_owned(),
        ),
        (Some(_), Some(r)) => out.push(format!(
            "route[{r}] (any host, path_prefix \"/\") matches every request: the default \
             pool gets none"
        )),
        _ => {}
    }
    for (r, route) in routes.iter().enumerate() {
        let pool = &pools[route.pool];
        if pool.backends.is_empty() {
            out.push(format!(
                "route[{r}].pool: pool {:?} has no backends; its requests get 503",
                pool.name
            ));
        }
    }
    for (p, pool) in pools.iter().enumerate() {
        if Some(p) != default_pool && !routes.iter().any(|r| r.pool == p) {
            out.push(format!(
                "pool {:?}: no route names it; it gets no requests",
                pool.name
            ));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;
    use crate::config::Config;

    const BASE: &str = "[server]\nlisten = \"127.0.0.1:0\"\n";

    const POOLS: &str = r#"
[server]
listen = "127.0.0.1:0"

[balancer]
algorithm = "ip_hash"

[health]
interval = "5s"
path = "/up"

[[backend]]
address = "127.0.0.1:8081"

[[pool]]
name = "api"
algorithm = "consistent_hash"
hash_key = "header:X-User"
slow_start = "10s"
health = { path = "/healthz", rise = 5 }
[[pool.backend]]
address = "localhost:9001"
name = "api-1"
[[pool.backend]]
address = "127.0.0.1:9002"
weight = 3

[[pool]]
name = "static.v2"
[pool.health]
timeout = "250ms"
[[pool.backend]]
address = "[::1]:9003"

[[route]]
host = "API.example.com"
path_prefix = "/v1/"
pool = "api"

[[route]]
host = "*.example.com"
pool = "static.v2"

[[route]]
path_prefix = "/assets/"
pool = "static.v2"

[[route]]
host = "api.example.com"
pool = "default"

[dns]
interval = "10s"
resolver = "127.0.0.53:53"
"#;

    #[test]
    fn pools_routes_and_dns_parse() {
        let c = Config::parse(POOLS).unwrap();
        let names: Vec<_> = c.pools().iter().map(|p| p.name.as_str()).collect();
        assert_eq!(names, ["default", "api", "static.v2"]);
        assert_eq!(c.default_pool(), Some(0));
        assert_eq!(c.pool_index("static.v2"), Some(2));
        assert_eq!(c.pool_index("nope"), None);

        let default = &c.pools()[0];
        assert_eq!(default.balancer.algorithm, Algorithm::IpHash);
        assert_eq!(default.health.path.as_deref(), Some("/up"));
        assert_eq!(default.backends, c.backends);

        let api = &c.pools()[1];
        assert_eq!(api.balancer.algorithm, Algorithm::ConsistentHash);
        assert_eq!(api.balancer.hash_key, HashKey::Header("x-user".into()));
        assert_eq!(api.balancer.slow_start, Some(Duration::from_secs(10)));
        // [health] with the pool's overrides applied.
        assert_eq!(api.health.path.as_deref(), Some("/healthz"));
        assert_eq!(api.health.rise, 5);
        assert_eq!(api.health.interval, Duration::from_secs(5));
        assert_eq!(api.health.fall, 3);
        assert_eq!(api.backends[0].name, "api-1");
        assert_eq!(api.backends[0].host_port, "localhost:9001");
        assert_eq!(api.backends[0].address.port(), 9001);
        assert_eq!(api.backends[1].name, "127.0.0.1:9002");
        assert_eq!(api.backends[1].weight, 3);

        let statics = &c.pools()[2];
        assert_eq!(statics.balancer, BalancerConfig::default());
        assert_eq!(statics.health.timeout, Duration::from_millis(250));
        assert_eq!(statics.health.path.as_deref(), Some("/up"));
        assert_eq!(statics.backends[0].name, "[::1]:9003");

        let routes: Vec<_> = c
            .routes()
            .iter()
            .map(|r| (r.host.to_string(), r.path_prefix.as_str(), r.pool))
            .collect();
        assert_eq!(
            routes,
            [
                ("api.example.com".to_owned(), "/v1/", 1),
                ("*.example.com".to_owned(), "/", 2),
                ("any host".to_owned(), "/assets/", 2),
                ("api.example.com".to_owned(), "/", 0),
            ]
        );
        assert_eq!(c.dns.interval, Duration::from_secs(10));
        assert_eq!(c.dns.resolver, Some("127.0.0.53:53".parse().unwrap()));
        assert!(c.warnings().is_empty(), "{:?}", c.warnings());
    }

    /// `[[pool]] name = "default"` instead of top-level backends: `config.backends`,
    /// `balancer` and `health` describe it.
    #[test]
    fn default_pool_as_a_table() {
        let text = format!(
            "{BASE}[health]\nrise = 4\n[[pool]]\nname = \"x\"\n[[pool]]\nname = \"default\"\n\
             algorithm = \"least_connections\"\nhealth = {{ fall = 7 }}\n\
             [[pool.backend]]\naddress = \"127.0.0.1:1\"\n\
             [[route]]\nhost = \"x.org\"\npool = \"x\"\n"
        );
        let c = Config::parse(&text).unwrap();
        assert_eq!(c.default_pool(), Some(1));
        assert_eq!(c.backends, c.pools()[1].backends);
        assert_eq!(c.balancer.algorithm, Algorithm::LeastConnections);
        assert_eq!((c.health.rise, c.health.fall), (4, 7));
        assert_eq!(
            c.warnings(),
            ["route[0].pool: pool \"x\" has no backends; its requests get 503"]
        );
    }

    #[test]
    fn dns_defaults() {
        let c = Config::parse(&format!("{BASE}[[backend]]\naddress = \"127.0.0.1:1\"\n")).unwrap();
        assert_eq!(c.dns.interval, Duration::from_secs(30));
        assert_eq!(c.dns.resolver, None);
    }

    /// Each broken file must fail, and the message must name the offending key.
    #[test]
    fn errors_name_the_key() {
        let one = "[[backend]]\naddress = \"127.0.0.1:1\"\n";
        let pool = |body: &str| format!("{BASE}[[pool]]\nname = \"p\"\n{body}");
        let route = |body: &str| format!("{BASE}{one}[[route]]\n{body}");
        let table: Vec<(String, &str)> = vec![
            // [[pool]]
            (
                format!("{BASE}{one}[[pool]]\nalgorithm = \"round_robin\"\n"),
                "name",
            ),
            (
                format!("{BASE}{one}[[pool]]\nname = \"a b\"\n"),
                "pool[0].name",
            ),
            (
                format!("{BASE}{one}[[pool]]\nname = \"\"\n"),
                "pool[0].name",
            ),
            (
                format!("{BASE}{one}[[pool]]\nname = \"a/b\"\n"),
                "pool[0].name",
            ),
            (
                format!("{BASE}{one}[[pool]]\nname = \"default\"\n"),
                "pool[0].name",
            ),
            (
                format!("{BASE}{one}[[pool]]\nname = \"none\"\n"),
                "pool[0].name",
            ),
            (
                format!("{BASE}{one}[[pool]]\nname = \"a\"\n[[pool]]\nname = \"a\"\n"),
                "pool[1].name",
            ),
            (pool("colour = 1\n"), "colour"),
            (pool("algorithm = \"random\"\n"), "algorithm"),
            (pool("hash_key = \"header:X\"\n"), "pool[0].hash_key"),
            (pool("slow_start = \"soon\"\n"), "slow_start"),
            (pool("health = { rise = 0 }\n"), "pool[0].health.rise"),
            (pool("health = { fall = 0 }\n"), "pool[0].health.fall"),
            (
                pool("health = { interval = \"0s\" }\n"),
                "pool[0].health.interval",
            ),
            (
                pool("health = { timeout = \"0ms\" }\n"),
                "pool[0].health.timeout",
            ),
            (pool("health = { path = \"up\" }\n"), "pool[0].health.path"),
            (pool("health = { paht = \"/up\" }\n"), "paht"),
            (
                pool("[[pool.backend]]\naddress = \"127.0.0.1:1\"\nweight = 0\n"),
                "pool[0].backend[0].weight",
            ),
            (
                pool("[[pool.backend]]\naddress = \"127.0.0.1:1\"\nname = \"a b\"\n"),
                "pool[0].backend[0].name",
            ),
            (pool("[[pool.backend]]\naddress = \"nowhere\"\n"), "address"),
            (
                pool("[[pool.backend]]\nadress = \"127.0.0.1:1\"\n"),
                "adress",
            ),
            // backend names are unique across pools
            (
                format!(
                    "{BASE}{one}[[pool]]\nname = \"p\"\n{}",
                    one.replace("[[", "[[pool.")
                ),
                "pool[0].backend[0].name",
            ),
            // [[route]]
            (route("host = \"a.org\"\n"), "pool"),
            (route("pool = \"nope\"\n"), "route[0].pool"),
            (
                format!("{BASE}[[pool]]\nname = \"p\"\n[[route]]\npool = \"default\"\n"),
                "route[0].pool",
            ),
            (
                route("pool = \"default\"\nhost = \"a.org:80\"\n"),
                "route[0].host",
            ),
            (
                route("pool = \"default\"\nhost = \"a.*.org\"\n"),
                "route[0].host",
            ),
            (route("pool = \"default\"\nhost = \"\"\n"), "route[0].host"),
            (
                route("pool = \"default\"\npath_prefix = \"v1\"\n"),
                "route[0].path_prefix",
            ),
            (
                route("pool = \"default\"\npath_prefix = \"/a?b\"\n"),
                "route[0].path_prefix",
            ),
            (route("pool = \"default\"\nmethod = \"GET\"\n"), "method"),
            (
                format!(
                    "{BASE}{one}[[route]]\nhost = \"A.org\"\npool = \"default\"\n\
                     [[route]]\nhost = \"a.org\"\npath_prefix = \"/\"\npool = \"default\"\n"
                ),
                "route[1]",
            ),
            (
                format!(
                    "{BASE}{one}[[route]]\npool = \"default\"\n\
                     [[route]]\npath_prefix = \"/\"\npool = \"default\"\n"
                ),
                "route[1]",
            ),
            // [dns]
            (
                format!("{BASE}{one}[dns]\ninterval = \"0s\"\n"),
                "dns.interval",
            ),
            (format!("{BASE}{one}[dns]\ninterval = \"30\"\n"), "interval"),
            (
                format!("{BASE}{one}[dns]\nresolver = \"localhost:53\"\n"),
                "resolver",
            ),
            (
                format!("{BASE}{one}[dns]\nresolver = \"127.0.0.1\"\n"),
                "resolver",
            ),
            (
                format!("{BASE}{one}[dns]\nresolver = \"127.0.0.1:0\"\n"),
                "resolver",
            ),
            (
                format!("{BASE}{one}[dns]\nresolvers = \"127.0.0.1:53\"\n"),
                "resolvers",
            ),
            // no default pool and no route: nothing could be served
            (
                format!(
                    "{BASE}[[pool]]\nname = \"p\"\n{}",
                    one.replace("[[", "[[pool.")
                ),
                "backend: at least one",
            ),
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
    fn warnings() {
        let one = "[[backend]]\naddress = \"127.0.0.1:1\"\n";
        let pool = "[[pool]]\nname = \"p\"\n[[pool.backend]]\naddress = \"127.0.0.1:2\"\n";
        let empty = "[[pool]]\nname = \"e\"\n";
        let table: Vec<(String, Vec<&str>)> = vec![
            (format!("{BASE}{one}"), vec![]),
            (
                format!("{BASE}{pool}[[route]]\nhost = \"a.org\"\npool = \"p\"\n"),
                vec![
                    "no default pool (no top-level [[backend]]): requests that match no \
                      route get 404 (reason no_route)",
                ],
            ),
            // a catch-all route serves every request: no 404, no warning
            (format!("{BASE}{pool}[[route]]\npool = \"p\"\n"), vec![]),
            (
                format!("{BASE}{one}{pool}[[route]]\npath_prefix = \"/\"\npool = \"p\"\n"),
                vec![
                    "route[0] (any host, path_prefix \"/\") matches every request: the \
                      default pool gets none",
                ],
            ),
            (
                format!("{BASE}{one}{empty}[[route]]\nhost = \"a.org\"\npool = \"e\"\n"),
                vec!["route[0].pool: pool \"e\" has no backends; its requests get 503"],
            ),
            (
                format!("{BASE}{one}{pool}"),
                vec!["pool \"p\": no route names it; it gets no requests"],
            ),
        ];
        for (text, want) in table {
            let c = Config::parse(&text).unwrap();
            assert_eq!(c.warnings(), want, "{text}");
        }
    }
}
