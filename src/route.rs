//! Routing (spec §12): which `[[route]]` a request takes, by its `Host` and path. A
//! [`RouteTable`] is built once per configuration snapshot from the routes in file
//! order; [`RouteTable::lookup`] then only reads tables built here: no allocation, no
//! regex, no lock. A leaf: it imports nothing from lbd, so the configuration validates
//! host patterns with it and the exchange looks routes up with it.
//!
//! Precedence. Every route whose host pattern and path prefix both match the request is
//! a candidate; the best one wins by, in order:
//!
//! 1. host kind: an exact host beats a wildcard beats a route without `host`;
//! 2. between wildcards, the longer (more specific) suffix;
//! 3. the longer `path_prefix`;
//! 4. file order.
//!
//! So a request whose host has exact routes, none of whose prefixes match its path, falls
//! through to the wildcard routes and then to the host-less ones ("tried most specific
//! first"). Host matching ignores ASCII case, a `:port` suffix and one trailing dot;
//! `*.example.com` matches `a.example.com` and `a.b.example.com` but not `example.com`
//! (nginx's meaning). A path prefix is matched byte for byte (case-sensitive, not
//! percent-decoded) on the path before any `?` or `#`; `/v1` also matches `/v1beta`
//! (write `/v1/` to match a segment). An `OPTIONS *` request (asterisk form, about the
//! server as a whole) is matched as the path `/`: it takes its host's catch-all route.

use std::collections::HashMap;
use std::fmt;
use std::hash::{BuildHasherDefault, Hasher};
use std::net::Ipv6Addr;

/// Longest host name (RFC 1035: 253 characters written out). A `Host` longer than this
/// can only take routes without `host`.
pub const MAX_HOST: usize = 253;

/// Longest `path_prefix`.
pub const MAX_PATH_PREFIX: usize = 1024;

/// Marks an entry without a parent (no shorter prefix of it in its set).
const NO_PARENT: u32 = u32::MAX;

/// Which hosts a route applies to. Names are stored lower-case.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum HostPattern {
    /// No `host` key: every request, whatever its `Host` (or none).
    Any,
    /// `api.example.com` (or an IPv6 literal `[::1]`): that host only.
    Exact(String),
    /// `*.example.com`: any host ending in `.example.com`, not `example.com` itself. The
    /// text as written, `*` included.
    Wildcard(String),
}

impl HostPattern {
    /// Parses the `host` of a route: a host name, `*.` and a host name, or a bracketed
    /// IPv6 literal; lower-cased; no port, no trailing dot.
    pub fn parse(text: &str) -> Result<HostPattern, String> {
        let lower = text.to_ascii_lowercase();
        if let Some(name) = lower.strip_prefix("*.") {
            check_name(name)?;
            if name.len() + 2 > MAX_HOST {
                return Err(format!("matches only hosts longer than {MAX_HOST} bytes"));
            }
            return Ok(HostPattern::Wildcard(lower));
        }
        if let Some(inner) = lower.strip_prefix('[') {
            return match inner.strip_suffix(']').map(str::parse::<Ipv6Addr>) {
                Some(Ok(_)) => Ok(HostPattern::Exact(lower)),
                _ => Err(format!(
                    "{text:?} is not an IPv6 literal in brackets (no port: matching ignores it)"
                )),
            };
        }
        check_name(&lower)?;
        Ok(HostPattern::Exact(lower))
    }

    /// The bytes a lower-cased request host is compared with: the name, or for a
    /// wildcard its suffix with the leading dot (`.example.com`).
    fn key(&self) -> Option<&[u8]> {
        match self {
            HostPattern::Any => None,
            HostPattern::Exact(name) => Some(name.as_bytes()),
            HostPattern::Wildcard(pattern) => Some(&pattern.as_bytes()[1..]),
        }
    }
}

impl fmt::Display for HostPattern {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            HostPattern::Any => f.write_str("any host"),
            HostPattern::Exact(s) | HostPattern::Wildcard(s) => f.write_str(s),
        }
    }
}

/// Checks a lower-cased host name: dot-separated labels of letters, digits, `-` and `_`,
/// each 1 to 63 bytes, at most [`MAX_HOST`] in all.
fn check_name(name: &str) -> Result<(), String> {
    if name.is_empty() {
        return Err("is empty".to_owned());
    }
    if name.contains(':') {
        return Err(format!(
            "{name:?} has a port (matching ignores it; give the host alone) \
             or is an IPv6 address without brackets"
        ));
    }
    if name.contains('*') {
        return Err(format!(
            "{name:?}: a wildcard is only \"*.\" at the start of a name"
        ));
    }
    if name.ends_with('.') {
        return Err(format!("{name:?} ends with a dot"));
    }
    if name.len() > MAX_HOST {
        return Err(format!("is longer than {MAX_HOST} bytes"));
    }
    for label in name.split('.') {
        if label.is_empty() || label.len() > 63 {
            return Err(format!(
                "{name:?} has an empty label or one longer than 63 bytes"
            ));
        }
        if !label
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
        {
            return Err(format!(
                "{name:?} may contain only letters, digits, '-', '_' and dots \
                 (internationalised names in punycode, xn--...)"
            ));
        }
    }
    Ok(())
}

/// Checks a route's `path_prefix`: starts with `/`, printable ASCII without `?` or `#`
/// (a request path is matched before its query, and percent-encodes other bytes), at
/// most [`MAX_PATH_PREFIX`] bytes.
pub fn check_path_prefix(prefix: &str) -> Result<(), String> {
    if !prefix.starts_with('/') {
        return Err("must start with '/'".to_owned());
    }
    if prefix.len() > MAX_PATH_PREFIX {
        return Err(format!("is longer than {MAX_PATH_PREFIX} bytes"));
    }
    if !prefix
        .bytes()
        .all(|b| b.is_ascii_graphic() && b != b'?' && b != b'#')
    {
        return Err("must be printable ASCII without spaces, '?' or '#' \
                    (percent-encode other bytes as requests do)"
            .to_owned());
    }
    Ok(())
}

/// One route as the table needs it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RouteSpec {
    /// Which hosts it applies to.
    pub host: HostPattern,
    /// The start of the paths it applies to; starts with `/` (see [`check_path_prefix`]).
    pub path_prefix: String,
    /// The index of the pool its requests go to (carried for the caller; the table does
    /// not read it).
    pub pool: usize,
}

/// The routes of one snapshot, arranged for [`RouteTable::lookup`]. Built once; never
/// changed.
#[derive(Debug, Default)]
pub struct RouteTable {
    /// Exact hosts (lower-case) to their prefix sets.
    exact: HashMap<Box<[u8]>, Prefixes, WordHash>,
    /// Wildcard suffixes with their leading dot (`.example.com`) to their prefix sets.
    wildcard: HashMap<Box<[u8]>, Prefixes, WordHash>,
    /// Lengths of the keys of `exact`, so most misses skip hashing.
    exact_lengths: LengthSet,
    /// Lengths of the keys of `wildcard`.
    wildcard_lengths: LengthSet,
    /// The routes without `host`.
    any: Prefixes,
    /// Every prefix set's entries, each set a contiguous run sorted by prefix bytes.
    entries: Vec<Entry>,
    /// The prefixes' bytes, which entries point into.
    bytes: Vec<u8>,
    /// Number of routes the table was built from.
    routes: usize,
}

/// A run of `RouteTable::entries`: the prefixes of one host pattern.
#[derive(Debug, Clone, Copy, Default)]
struct Prefixes {
    start: u32,
    len: u32,
}

/// One path prefix of a set.
#[derive(Debug, Clone, Copy)]
struct Entry {
    /// The prefix is `bytes[start..start + len]`.
    start: u32,
    len: u32,
    /// The route (index in file order); the first one in file order when several routes
    /// have the same host pattern and prefix.
    route: u32,
    /// Index within the set of the longest other prefix in the set that is a prefix of
    /// this one, or [`NO_PARENT`]; always an earlier entry (a prefix sorts first).
    parent: u32,
}

/// Bit set of lengths 0..=255.
#[derive(Debug, Clone, Copy, Default)]
struct LengthSet([u64; 4]);

impl LengthSet {
    fn insert(&mut self, n: usize) {
        if n < 256 {
            self.0[n / 64] |= 1 << (n % 64);
        }
    }

    fn contains(&self, n: usize) -> bool {
        n < 256 && self.0[n / 64] & (1 << (n % 64)) != 0
    }
}

impl RouteTable {
    /// Arranges `specs` (in file order; the answer of [`RouteTable::lookup`] is an index
    /// into it). Allocates; meant for building a snapshot.
    pub fn new(specs: &[RouteSpec]) -> RouteTable {
        let mut table = RouteTable {
            routes: specs.len(),
            ..RouteTable::default()
        };
        // Group route indexes by host pattern, keeping the first-seen order of groups.
        let mut groups: Vec<(&HostPattern, Vec<usize>)> = Vec::new();
        let mut group_of: HashMap<&HostPattern, usize> = HashMap::new();
        for (i, spec) in specs.iter().enumerate() {
            let g = *group_of.entry(&spec.host).or_insert_with(|| {
                groups.push((&spec.host, Vec::new()));
                groups.len() - 1
            });
            groups[g].1.push(i);
        }
        for (host, routes) in groups {
            let set = table.add_set(specs, routes);
            match host.key() {
                None => table.any = set,
                Some(key) if matches!(host, HostPattern::Exact(_)) => {
                    table.exact_lengths.insert(key.len());
                    table.exact.insert(key.into(), set);
                }
                Some(key) => {
                    table.wildcard_lengths.insert(key.len());
                    table.wildcard.insert(key.into(), set);
                }
            }
        }
        table
    }

    /// Appends the prefix set of `routes` (indexes into `specs`, ascending).
    fn add_set(&mut self, specs: &[RouteSpec], mut routes: Vec<usize>) -> Prefixes {
        // Sorted by prefix, then file order; then only the first of equal prefixes stays.
        routes.sort_by(|&a, &b| {
            (specs[a].path_prefix.as_bytes(), a).cmp(&(specs[b].path_prefix.as_bytes(), b))
        });
        routes.dedup_by(|later, first| specs[*later].path_prefix == specs[*first].path_prefix);
        let start = self.entries.len();
        // Sorted order is the depth-first order of the prefixes' trie: the stack holds
        // the chain of prefixes of the current one.
        let mut chain: Vec<usize> = Vec::new();
        for (k, &route) in routes.iter().enumerate() {
            let prefix = specs[route].path_prefix.as_bytes();
            while let Some(&top) = chain.last() {
                if prefix.starts_with(self.prefix(&self.entries[start + top])) {
                    break;
                }
                chain.pop();
            }
            self.entries.push(Entry {
                start: self.bytes.len() as u32,
                len: prefix.len() as u32,
                route: route as u32,
                parent: chain.last().map_or(NO_PARENT, |&p| p as u32),
            });
            self.bytes.extend_from_slice(prefix);
            chain.push(k);
        }
        Prefixes {
            start: start as u32,
            len: routes.len() as u32,
        }
    }

    /// Number of routes the table was built from.
    pub fn len(&self) -> usize {
        self.routes
    }

    /// True when it was built from no route (every lookup is `None`).
    pub fn is_empty(&self) -> bool {
        self.routes == 0
    }

    /// The route (index into the specs the table was built from) a request with this
    /// `Host` value (`host`, port and case as the client sent them; empty when there is
    /// none) and request target `path` (origin form, query included; empty and `*` mean
    /// `/`) takes, or `None` when no route matches. Allocation-free; its loops are bounded by
    /// the host's length and the nesting of prefixes.
    pub fn lookup(&self, host: &[u8], path: &[u8]) -> Option<usize> {
        if self.routes == 0 {
            return None;
        }
        let path = path_only(path);
        let mut buf = [0u8; MAX_HOST];
        if let Some(host) = host_name(host, &mut buf) {
            if self.exact_lengths.contains(host.len()) {
                if let Some(route) = self.exact.get(host).and_then(|&s| self.longest(s, path)) {
                    return Some(route);
                }
            }
            if !self.wildcard.is_empty() {
                // Suffixes at each dot after the first byte, longest first.
                for (i, _) in host.iter().enumerate().skip(1).filter(|(_, &b)| b == b'.') {
                    let suffix = &host[i..];
                    if !self.wildcard_lengths.contains(suffix.len()) {
                        continue;
                    }
                    let set = self.wildcard.get(suffix);
                    if let Some(route) = set.and_then(|&s| self.longest(s, path)) {
                        return Some(route);
                    }
                }
            }
        }
        self.longest(self.any, path)
    }

    /// The route of the longest prefix in `set` that `path` starts with.
    fn longest(&self, set: Prefixes, path: &[u8]) -> Option<usize> {
        let entries = &self.entries[set.start as usize..(set.start + set.len) as usize];
        // Every prefix of `path` in the set sorts at or before `path`, hence at or before
        // the last entry that does, and is therefore a prefix of that entry too: the
        // answer is that entry or one of its parents, the longest one no longer than what
        // it has in common with `path`.
        let after = entries.partition_point(|e| self.prefix(e) <= path);
        let mut entry = entries.get(after.checked_sub(1)?)?;
        let common = common_len(self.prefix(entry), path);
        // Bounded by the set's size: each step goes to a strictly shorter prefix.
        loop {
            if entry.len as usize <= common {
                return Some(entry.route as usize);
            }
            entry = entries.get(entry.parent as usize)?;
        }
    }

    fn prefix(&self, e: &Entry) -> &[u8] {
        &self.bytes[e.start as usize..(e.start + e.len) as usize]
    }
}

/// The path of a request target: up to the first `?` or `#`; `/` for an empty target
/// (an absolute-form target without a path, `http://host`, which means `/`) and for the
/// asterisk form (`OPTIONS *`, which asks about the server: its host's routes of `/`).
fn path_only(target: &[u8]) -> &[u8] {
    if target.is_empty() || target == b"*" {
        return b"/";
    }
    match target.iter().position(|&b| b == b'?' || b == b'#') {
        Some(end) => &target[..end],
        None => target,
    }
}

/// The host of a `Host` value, lower-cased into `buf`: surrounding whitespace, a `:port`
/// and one trailing dot removed; an IPv6 literal keeps its brackets. `None` when empty or
/// longer than [`MAX_HOST`] (no host route can match it).
fn host_name<'b>(value: &[u8], buf: &'b mut [u8; MAX_HOST]) -> Option<&'b [u8]> {
    let value = value.trim_ascii();
    let end = if value.first() == Some(&b'[') {
        value
            .iter()
            .position(|&b| b == b']')
            .map_or(value.len(), |i| i + 1)
    } else {
        value.iter().position(|&b| b == b':').unwrap_or(value.len())
    };
    let mut host = &value[..end];
    if let Some(stripped) = host.strip_suffix(b".") {
        host = stripped;
    }
    if host.is_empty() || host.len() > MAX_HOST {
        return None;
    }
    let out = &mut buf[..host.len()];
    for (o, &b) in out.iter_mut().zip(host) {
        *o = b.to_ascii_lowercase();
    }
    Some(out)
}

/// Length of the common start of `a` and `b`.
fn common_len(a: &[u8], b: &[u8]) -> usize {
    a.iter().zip(b).take_while(|(x, y)| x == y).count()
}

/// The hash of the host maps: word-at-a-time multiply-rotate (as rustc's FxHash). Not
/// resistant to chosen keys, and need not be: only the configuration inserts keys; a
/// request's host is only looked up.
type WordHash = BuildHasherDefault<WordHasher>;

/// State of [`WordHash`].
#[derive(Debug, Default)]
struct WordHasher(u64);

impl WordHasher {
    fn add(&mut self, word: u64) {
        self.0 = (self.0.rotate_left(5) ^ word).wrapping_mul(0x517c_c1b7_2722_0a95);
    }
}

impl Hasher for WordHasher {
    fn write(&mut self, bytes: &[u8]) {
        let mut words = bytes.chunks_exact(8);
        for word in &mut words {
            let mut w = [0u8; 8];
            w.copy_from_slice(word);
            self.add(u64::from_le_bytes(w));
        }
        let rest = words.remainder();
        if !rest.is_empty() {
            let mut w = [0u8; 8];
            w[..rest.len()].copy_from_slice(rest);
            self.add(u64::from_le_bytes(w));
        }
    }

    fn write_usize(&mut self, n: usize) {
        self.add(n as u64);
    }

    fn finish(&self) -> u64 {
        self.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn spec(host: Option<&str>, path_prefix: &str) -> RouteSpec {
        RouteSpec {
            host: host.map_or(HostPattern::Any, |h| HostPattern::parse(h).unwrap()),
            path_prefix: path_prefix.to_owned(),
            pool: 0,
        }
    }

    /// The precedence of spec §12 by brute force: every matching route, the best by
    /// (host kind, wildcard length, prefix length, file order).
    fn reference(specs: &[RouteSpec], host: &[u8], path: &[u8]) -> Option<usize> {
        let path = path_only(path);
        let mut buf = [0u8; MAX_HOST];
        let host = host_name(host, &mut buf).map(<[u8]>::to_vec);
        let rank = |s: &RouteSpec| -> Option<(u8, usize)> {
            match (&s.host, &host) {
                (HostPattern::Any, _) => Some((0, 0)),
                (HostPattern::Exact(name), Some(h)) if name.as_bytes() == h => Some((2, 0)),
                (HostPattern::Wildcard(w), Some(h)) => {
                    let suffix = &w.as_bytes()[1..];
                    (h.len() > suffix.len() && h.ends_with(suffix)).then_some((1, suffix.len()))
                }
                _ => None,
            }
        };
        specs
            .iter()
            .enumerate()
            .filter(|(_, s)| path.starts_with(s.path_prefix.as_bytes()))
            .filter_map(|(i, s)| rank(s).map(|(kind, len)| (kind, len, s.path_prefix.len(), i)))
            .max_by_key(|&(kind, len, prefix, i)| (kind, len, prefix, std::cmp::Reverse(i)))
            .map(|(_, _, _, i)| i)
    }

    fn table() -> Vec<RouteSpec> {
        vec![
            spec(Some("api.example.com"), "/"),         // 0
            spec(Some("api.example.com"), "/v1/"),      // 1
            spec(Some("*.example.com"), "/"),           // 2
            spec(Some("*.example.com"), "/static/"),    // 3
            spec(Some("*.B.example.com"), "/"),         // 4
            spec(None, "/v1/"),                         // 5
            spec(None, "/"),                            // 6
            spec(Some("[::1]"), "/"),                   // 7
            spec(Some("example.com"), "/admin/"),       // 8
            spec(Some("example.com"), "/admin/users/"), // 9
            spec(None, "/v1/"),                         // 10: same as 5, later in the file
            spec(Some("Example.COM"), "/admin"),        // 11
        ]
    }

    /// Host exact / wildcard / none × prefixes × port and case in Host × query strings.
    #[test]
    fn precedence() {
        let specs = table();
        let t = RouteTable::new(&specs);
        let cases: &[(&str, &str, Option<usize>)] = &[
            // exact host, longest prefix
            ("api.example.com", "/", Some(0)),
            ("api.example.com", "/v1/users", Some(1)),
            ("api.example.com", "/v2", Some(0)),
            ("api.example.com", "/V1/users", Some(0)),
            // port, case, whitespace, trailing dot in Host
            ("API.Example.COM:8080", "/v1/users", Some(1)),
            ("api.example.com:443", "/v1/", Some(1)),
            (" api.example.com ", "/v1/", Some(1)),
            ("api.example.com.", "/v1/", Some(1)),
            // the query (and a fragment) are not part of the path
            ("api.example.com", "/v1/users?x=1", Some(1)),
            ("api.example.com", "/v1?next=/v1/", Some(0)),
            ("api.example.com", "/v1#/v1/", Some(0)),
            // wildcard: one label or more, not the bare name; beats host-less prefixes
            ("www.example.com", "/static/a.css", Some(3)),
            ("WWW.example.com:80", "/static/?v=2", Some(3)),
            ("www.example.com", "/v1/users", Some(2)),
            ("x.api.example.com", "/v1/", Some(2)),
            // the longest wildcard wins before the longest prefix
            ("a.b.example.com", "/static/x", Some(4)),
            ("b.example.com", "/static/x", Some(3)),
            // exact host whose prefixes do not match: falls through to host-less
            ("example.com", "/v1/", Some(5)),
            ("example.com", "/", Some(6)),
            ("example.com", "/admin/users/7", Some(9)),
            ("example.com", "/admin/x", Some(8)),
            ("example.com", "/administrator", Some(11)),
            ("example.com:8080", "/admin?x", Some(11)),
            // no host route matches
            ("other.org", "/", Some(6)),
            ("other.org", "/v1/x?y", Some(5)),
            ("", "/v1/", Some(5)),
            ("example.com.evil.org", "/", Some(6)),
            ("evilexample.com", "/static/", Some(6)),
            // IPv6 literals
            ("[::1]:8080", "/", Some(7)),
            ("[::1]", "/x", Some(7)),
            ("[::2]:8080", "/", Some(6)),
            ("::1", "/", Some(6)),
            // empty: the path of "http://host", which is "/"
            ("api.example.com", "", Some(0)),
            ("example.com", "", Some(6)),
            // OPTIONS *: the host's routes of "/"
            ("api.example.com", "*", Some(0)),
            ("example.com:80", "*", Some(6)),
            ("", "*", Some(6)),
            // nothing else that does not start with '/' matches
            ("api.example.com", "*?", None),
            ("api.example.com", "x/", None),
        ];
        for &(host, path, want) in cases {
            let got = t.lookup(host.as_bytes(), path.as_bytes());
            assert_eq!(got, want, "Host {host:?} path {path:?}");
            assert_eq!(
                reference(&specs, host.as_bytes(), path.as_bytes()),
                want,
                "reference for Host {host:?} path {path:?}"
            );
        }
    }

    #[test]
    fn no_match_without_a_catch_all() {
        let specs = vec![
            spec(Some("api.example.com"), "/v1/"),
            spec(Some("*.example.com"), "/"),
            spec(None, "/static/"),
        ];
        let t = RouteTable::new(&specs);
        assert_eq!(t.lookup(b"api.example.com", b"/v2/"), Some(1));
        assert_eq!(t.lookup(b"example.com", b"/v1/"), None);
        assert_eq!(t.lookup(b"other.org", b"/static"), None);
        assert_eq!(t.lookup(b"other.org", b"/static/a"), Some(2));
        assert_eq!(t.lookup(b"a.example.com", b"*"), Some(1));
        assert_eq!(t.lookup(b"api.example.com", b"*"), Some(1), "falls through");
        assert_eq!(t.lookup(b"other.org", b"*"), None);
        let empty = RouteTable::new(&[]);
        assert!(empty.is_empty());
        assert_eq!(empty.lookup(b"a", b"/"), None);
        assert_eq!(t.len(), 3);
    }

    /// Identical host and prefix (refused by validation): the first in file order wins.
    #[test]
    fn file_order_breaks_ties() {
        let specs = vec![spec(None, "/a"), spec(Some("x.org"), "/"), spec(None, "/a")];
        let t = RouteTable::new(&specs);
        assert_eq!(t.lookup(b"y.org", b"/a/b"), Some(0));
        assert_eq!(t.lookup(b"X.org", b"/a/b"), Some(1));
    }

    /// Deeply nested prefixes: the parent chain finds the longest one that matches.
    #[test]
    fn nested_prefixes() {
        let prefixes = ["/", "/a", "/a/b", "/a/b/c", "/a/bc", "/a/c", "/b"];
        let specs: Vec<_> = prefixes.iter().map(|p| spec(None, p)).collect();
        let t = RouteTable::new(&specs);
        let cases = [
            ("/a/b/c/d", 3),
            ("/a/b/d", 2),
            ("/a/bcd", 4),
            ("/a/bb", 2),
            ("/a/d", 1),
            ("/ab", 1),
            ("/a", 1),
            ("/c", 0),
            ("/b/", 6),
            ("/", 0),
        ];
        for (path, want) in cases {
            assert_eq!(t.lookup(b"h", path.as_bytes()), Some(want), "{path}");
        }
    }

    #[test]
    fn host_patterns() {
        let ok = [
            (
                "API.Example.com",
                HostPattern::Exact("api.example.com".into()),
            ),
            (
                "*.Example.com",
                HostPattern::Wildcard("*.example.com".into()),
            ),
            ("*.com", HostPattern::Wildcard("*.com".into())),
            ("localhost", HostPattern::Exact("localhost".into())),
            ("10.0.0.1", HostPattern::Exact("10.0.0.1".into())),
            (
                "my_svc-1.internal",
                HostPattern::Exact("my_svc-1.internal".into()),
            ),
            ("[::1]", HostPattern::Exact("[::1]".into())),
            ("[FE80::1]", HostPattern::Exact("[fe80::1]".into())),
        ];
        for (text, want) in ok {
            assert_eq!(HostPattern::parse(text), Ok(want), "{text}");
        }
        let long = format!("{}.com", "a".repeat(64));
        let too_long = ["a"; 128].join(".");
        let wide = format!("*.{}", ["a"; 127].join("."));
        let bad = [
            "", "*", "*.", "a.*.com", "*a.com", "a.com:80", "::1", "[::1]:80", "[x]", "a..b",
            ".a.com", "a.com.", "a b.com", "é.com", &long, &too_long, &wide,
        ];
        for text in bad {
            assert!(HostPattern::parse(text).is_err(), "{text:?}");
        }
    }

    #[test]
    fn path_prefixes() {
        for ok in ["/", "/v1/", "/a%20b", "/~user"] {
            assert!(check_path_prefix(ok).is_ok(), "{ok}");
        }
        let long = format!("/{}", "a".repeat(MAX_PATH_PREFIX));
        for bad in ["", "v1", "/a b", "/a?b", "/a#b", "/é", "/\x7f", &long] {
            assert!(check_path_prefix(bad).is_err(), "{bad:?}");
        }
    }

    fn arb_host() -> impl Strategy<Value = String> {
        prop::sample::select(vec![
            "a.example.com",
            "b.a.example.com",
            "example.com",
            "x.org",
            "c.b.a.example.com",
        ])
        .prop_map(str::to_owned)
    }

    fn arb_pattern() -> impl Strategy<Value = Option<String>> {
        prop_oneof![
            Just(None),
            arb_host().prop_map(Some),
            arb_host().prop_map(|h| Some(format!("*.{h}"))),
            Just(Some("*.com".to_owned())),
        ]
    }

    fn arb_path() -> impl Strategy<Value = String> {
        "/[ab/]{0,6}"
    }

    proptest! {
        /// The table agrees with the brute-force precedence on random routes and requests.
        #[test]
        fn agrees_with_brute_force(
            routes in prop::collection::vec((arb_pattern(), arb_path()), 0..24),
            requests in prop::collection::vec(
                (arb_host(), prop::sample::select(vec!["", ":80", "."]), arb_path(), "(\\?[ab/]{0,3})?"),
                1..24,
            ),
        ) {
            let specs: Vec<_> = routes.iter().map(|(h, p)| spec(h.as_deref(), p)).collect();
            let t = RouteTable::new(&specs);
            for (host, port, path, query) in &requests {
                let host = format!("{}{port}", host.to_uppercase());
                let target = format!("{path}{query}");
                prop_assert_eq!(
                    t.lookup(host.as_bytes(), target.as_bytes()),
                    reference(&specs, host.as_bytes(), target.as_bytes()),
                    "Host {:?} target {:?}", host, target
                );
            }
        }
    }
}
