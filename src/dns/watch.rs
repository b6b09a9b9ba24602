//! The resolver thread's pure core: per watched host, the last known addresses, when to
//! resolve it next, and where its failure episode stands. It takes resolution results
//! and `now`; no socket, no clock. Rules (docs/dns.md):
//!
//! - next resolution: `max(min_refresh, min(interval, ttl))` after a success (no TTL:
//!   the interval), `max(min_refresh, interval)` after a failure;
//! - a failure keeps the last known addresses (none at start) and is reported once per
//!   episode; the first success after it is reported once as a recovery;
//! - a change of the address set is reported with what was added and removed.

use std::net::{IpAddr, SocketAddr};
use std::time::{Duration, Instant};

use super::{Answer, DnsError, DnsSettings, DnsUpdate, Service};

/// One watched host name and the ports it is watched with.
#[derive(Debug)]
pub struct Watch {
    /// The host, as configured.
    pub host: String,
    /// Ports, sorted and distinct: one service each.
    pub ports: Vec<u16>,
    /// Last known addresses, sorted and distinct; empty until the first success.
    addrs: Vec<IpAddr>,
    state: State,
    /// When the host is resolved next.
    pub due: Instant,
}

/// The failure rule's state.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    /// Not resolved yet.
    New,
    /// The last resolution succeeded.
    Resolved,
    /// Failing since `since`, `failures` resolutions in a row.
    Failing { since: Instant, failures: u32 },
}

/// What one resolution result did.
#[derive(Debug)]
pub struct Observation {
    /// The address set changed (only ever on a success).
    pub change: Option<Change>,
    /// Where the failure episode stands.
    pub episode: Episode,
}

/// The difference between the old and the new address set.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Change {
    /// Addresses now present that were not.
    pub added: Vec<IpAddr>,
    /// Addresses no longer present.
    pub removed: Vec<IpAddr>,
}

/// The failure episode, for logging once.
#[derive(Debug)]
pub enum Episode {
    /// Resolved, and the previous resolution did too (or this is the first).
    Steady,
    /// The first failure of an episode (`at_start`: the host never resolved yet).
    Failed {
        /// The error.
        error: DnsError,
        /// No resolution has succeeded yet: the host has no members.
        at_start: bool,
    },
    /// A further failure of the running episode: already reported.
    StillFailing,
    /// The first success after an episode of `failures` failures that lasted `lasted`.
    Recovered {
        /// Failed resolutions in the episode.
        failures: u32,
        /// From the first failure to this success.
        lasted: Duration,
    },
}

/// The floor under `min_refresh` itself, so that no setting makes the resolver thread
/// spin on a name with a zero TTL.
pub const MIN_REFRESH_FLOOR: Duration = Duration::from_millis(10);

/// How long after a resolution the next one is due: the TTL when it is sooner than the
/// interval, never sooner than the floor (`min_refresh`, at least [`MIN_REFRESH_FLOOR`]).
pub fn refresh_after(ttl: Option<Duration>, settings: &DnsSettings) -> Duration {
    ttl.map_or(settings.interval, |t| t.min(settings.interval))
        .max(settings.min_refresh)
        .max(MIN_REFRESH_FLOOR)
}

impl Watch {
    /// A host not resolved yet, due at `now`.
    pub fn new(host: String, ports: Vec<u16>, now: Instant) -> Watch {
        Watch {
            host,
            ports,
            addrs: Vec::new(),
            state: State::New,
            due: now,
        }
    }

    /// The last known addresses.
    pub fn addrs(&self) -> &[IpAddr] {
        &self.addrs
    }

    /// Applies one resolution's `result` obtained at `now`, and schedules the next.
    pub fn observe(
        &mut self,
        result: Result<Answer, DnsError>,
        now: Instant,
        settings: &DnsSettings,
    ) -> Observation {
        match result {
            Ok(answer) => {
                self.due = now + refresh_after(answer.ttl, settings);
                let episode = match self.state {
                    State::Failing { since, failures } => Episode::Recovered {
                        failures,
                        lasted: now.saturating_duration_since(since),
                    },
                    State::New | State::Resolved => Episode::Steady,
                };
                self.state = State::Resolved;
                let mut addrs = answer.addrs;
                addrs.sort();
                addrs.dedup();
                let change = diff(&self.addrs, &addrs);
                self.addrs = addrs;
                Observation { change, episode }
            }
            Err(error) => {
                self.due = now + refresh_after(None, settings);
                let episode = match self.state {
                    State::Failing { since, failures } => {
                        self.state = State::Failing {
                            since,
                            failures: failures.saturating_add(1),
                        };
                        Episode::StillFailing
                    }
                    State::New | State::Resolved => {
                        let at_start = self.state == State::New;
                        self.state = State::Failing {
                            since: now,
                            failures: 1,
                        };
                        Episode::Failed { error, at_start }
                    }
                };
                Observation {
                    change: None,
                    episode,
                }
            }
        }
    }

    /// The update of the service on `port` for `change` (the addresses now are the
    /// current ones).
    pub fn update(&self, port: u16, change: &Change) -> DnsUpdate {
        let at = |ips: &[IpAddr]| -> Vec<SocketAddr> {
            ips.iter().map(|&ip| SocketAddr::new(ip, port)).collect()
        };
        DnsUpdate {
            service: Service::new(self.host.clone(), port),
            members: at(&self.addrs),
            added: at(&change.added),
            removed: at(&change.removed),
        }
    }
}

/// `None` when `old == new` (both sorted).
fn diff(old: &[IpAddr], new: &[IpAddr]) -> Option<Change> {
    if old == new {
        return None;
    }
    Some(Change {
        added: new.iter().filter(|a| !old.contains(a)).copied().collect(),
        removed: old.iter().filter(|a| !new.contains(a)).copied().collect(),
    })
}

/// Every watched host.
#[derive(Debug, Default)]
pub struct Watches {
    list: Vec<Watch>,
}

impl Watches {
    /// Watches `names` (host, port), all due at `now`. A host given with several ports is
    /// resolved once.
    pub fn new(names: &[(String, u16)], now: Instant) -> Watches {
        let mut watches = Watches::default();
        watches.replace(names, now);
        watches
    }

    /// Watches `names` from now on (a reload). A host watched before keeps its addresses,
    /// episode and schedule, so nothing is reported for its services that stay; a port
    /// new on such a host gets an update with the current members at once (returned).
    /// New hosts are due at `now`; hosts no longer named are forgotten without an update
    /// (their services are gone from the configuration).
    pub fn replace(&mut self, names: &[(String, u16)], now: Instant) -> Vec<DnsUpdate> {
        let mut grouped: Vec<(&str, Vec<u16>)> = Vec::new();
        for (host, port) in names {
            match grouped.iter_mut().find(|(h, _)| h == host) {
                Some((_, ports)) => ports.push(*port),
                None => grouped.push((host, vec![*port])),
            }
        }
        let mut old = std::mem::take(&mut self.list);
        let mut announce = Vec::new();
        for (host, mut ports) in grouped {
            ports.sort_unstable();
            ports.dedup();
            let watch = match old.iter().position(|w| w.host == host) {
                Some(i) => {
                    let mut w = old.swap_remove(i);
                    if !w.addrs.is_empty() {
                        let everyone = Change {
                            added: w.addrs.clone(),
                            removed: Vec::new(),
                        };
                        for &port in ports.iter().filter(|p| !w.ports.contains(p)) {
                            announce.push(w.update(port, &everyone));
                        }
                    }
                    w.ports = ports;
                    w
                }
                None => Watch::new(host.to_owned(), ports, now),
            };
            self.list.push(watch);
        }
        announce
    }

    /// The earliest due watch at `now`, if any is due.
    pub fn due(&self, now: Instant) -> Option<usize> {
        self.list
            .iter()
            .enumerate()
            .filter(|(_, w)| w.due <= now)
            .min_by_key(|(_, w)| w.due)
            .map(|(i, _)| i)
    }

    /// When the next watch is due; `None` when nothing is watched.
    pub fn next_due(&self) -> Option<Instant> {
        self.list.iter().map(|w| w.due).min()
    }

    /// Brings every schedule within `period` of `now` (settings with a shorter interval
    /// took effect).
    pub fn cap_due(&mut self, period: Duration, now: Instant) {
        for w in &mut self.list {
            w.due = w.due.min(now + period);
        }
    }

    /// Watch `i`.
    pub fn get_mut(&mut self, i: usize) -> &mut Watch {
        &mut self.list[i]
    }

    /// Every watch.
    #[cfg(test)]
    pub fn iter(&self) -> impl Iterator<Item = &Watch> {
        self.list.iter()
    }
}

#[cfg(test)]
mod tests {
    use std::net::Ipv4Addr;

    use super::*;

    fn ip(last: u8) -> IpAddr {
        IpAddr::V4(Ipv4Addr::new(10, 0, 0, last))
    }

    fn settings() -> DnsSettings {
        DnsSettings {
            interval: Duration::from_secs(30),
            min_refresh: Duration::from_secs(1),
            ..DnsSettings::default()
        }
    }

    fn ok(ips: &[IpAddr], ttl: Option<u64>) -> Result<Answer, DnsError> {
        Ok(Answer {
            addrs: ips.to_vec(),
            ttl: ttl.map(Duration::from_secs),
        })
    }

    #[test]
    fn schedule_follows_ttl_within_floor_and_interval() {
        let s = settings();
        let secs = Duration::from_secs;
        for (ttl, want) in [
            (None, secs(30)),            // no TTL: the interval
            (Some(secs(5)), secs(5)),    // sooner TTL wins
            (Some(secs(300)), secs(30)), // never later than the interval
            (Some(secs(0)), secs(1)),    // never sooner than the floor
        ] {
            assert_eq!(refresh_after(ttl, &s), want, "ttl {ttl:?}");
        }
        let no_floor = DnsSettings {
            min_refresh: Duration::ZERO,
            ..s.clone()
        };
        assert_eq!(refresh_after(Some(secs(0)), &no_floor), MIN_REFRESH_FLOOR);
        let now = Instant::now();
        let mut w = Watch::new("svc".into(), vec![80], now);
        w.observe(ok(&[ip(1)], Some(5)), now, &s);
        assert_eq!(w.due, now + secs(5));
        w.observe(Err(DnsError::Timeout), now, &s);
        assert_eq!(w.due, now + secs(30), "a failure waits the interval");
    }

    #[test]
    fn changes_are_reported_only_when_the_set_differs() {
        let s = settings();
        let now = Instant::now();
        let mut w = Watch::new("svc".into(), vec![80], now);
        let o = w.observe(ok(&[ip(2), ip(1)], None), now, &s);
        assert!(matches!(o.episode, Episode::Steady));
        let change = o.change.unwrap();
        assert_eq!(change.added, vec![ip(1), ip(2)]);
        assert!(change.removed.is_empty());
        let update = w.update(80, &change);
        assert_eq!(update.service, Service::new("svc", 80));
        assert_eq!(
            update.members,
            vec![SocketAddr::new(ip(1), 80), SocketAddr::new(ip(2), 80)]
        );
        // Same set, other order: nothing.
        assert!(w
            .observe(ok(&[ip(1), ip(2)], None), now, &s)
            .change
            .is_none());
        let change = w
            .observe(ok(&[ip(2), ip(3)], None), now, &s)
            .change
            .unwrap();
        assert_eq!(change.added, vec![ip(3)]);
        assert_eq!(change.removed, vec![ip(1)]);
    }

    #[test]
    fn failures_keep_members_and_are_reported_once_per_episode() {
        let s = settings();
        let t0 = Instant::now();
        let mut w = Watch::new("svc".into(), vec![80], t0);
        w.observe(ok(&[ip(1)], None), t0, &s);
        let o = w.observe(Err(DnsError::Timeout), t0 + Duration::from_secs(1), &s);
        assert!(o.change.is_none());
        assert!(matches!(
            o.episode,
            Episode::Failed {
                at_start: false,
                ..
            }
        ));
        for _ in 0..3 {
            let o = w.observe(Err(DnsError::NxDomain), t0 + Duration::from_secs(2), &s);
            assert!(o.change.is_none());
            assert!(matches!(o.episode, Episode::StillFailing));
        }
        assert_eq!(w.addrs(), &[ip(1)], "members kept");
        let o = w.observe(ok(&[ip(1)], None), t0 + Duration::from_secs(5), &s);
        assert!(o.change.is_none(), "same members after the episode");
        match o.episode {
            Episode::Recovered { failures, lasted } => {
                assert_eq!(failures, 4);
                assert_eq!(lasted, Duration::from_secs(4));
            }
            other => panic!("{other:?}"),
        }
        let o = w.observe(ok(&[ip(1)], None), t0 + Duration::from_secs(6), &s);
        assert!(matches!(o.episode, Episode::Steady));
    }

    #[test]
    fn unresolvable_at_start_has_no_members() {
        let s = settings();
        let now = Instant::now();
        let mut w = Watch::new("svc".into(), vec![80], now);
        let o = w.observe(Err(DnsError::NxDomain), now, &s);
        assert!(o.change.is_none());
        assert!(matches!(o.episode, Episode::Failed { at_start: true, .. }));
        assert!(w.addrs().is_empty());
        let o = w.observe(ok(&[ip(1)], None), now, &s);
        assert_eq!(o.change.unwrap().added, vec![ip(1)]);
        assert!(matches!(o.episode, Episode::Recovered { failures: 1, .. }));
    }

    #[test]
    fn replace_keeps_known_hosts_and_announces_their_new_ports() {
        let s = settings();
        let t0 = Instant::now();
        let names = |list: &[(&str, u16)]| -> Vec<(String, u16)> {
            list.iter().map(|&(h, p)| (h.to_owned(), p)).collect()
        };
        let mut ws = Watches::new(&names(&[("a", 80), ("b", 80), ("a", 81), ("a", 80)]), t0);
        assert_eq!(ws.iter().count(), 2, "one watch per host");
        assert_eq!(ws.iter().next().unwrap().ports, vec![80, 81]);
        let i = ws.due(t0).unwrap();
        let host = ws.get_mut(i).host.clone();
        ws.get_mut(i).observe(ok(&[ip(1)], None), t0, &s);
        let later = t0 + Duration::from_secs(1);

        let updates = ws.replace(&names(&[(&host, 80), (&host, 90), ("c", 80)]), later);
        assert_eq!(updates.len(), 1, "{updates:?}");
        assert_eq!(updates[0].service, Service::new(host.clone(), 90));
        assert_eq!(updates[0].added, vec![SocketAddr::new(ip(1), 90)]);
        let kept = ws.iter().find(|w| w.host == host).unwrap();
        assert_eq!(kept.addrs(), &[ip(1)]);
        assert_eq!(kept.due, t0 + s.interval, "schedule kept");
        assert!(ws.iter().any(|w| w.host == "c" && w.due == later));
        assert_eq!(ws.iter().count(), 2, "the dropped host is forgotten");
        assert_eq!(ws.next_due(), Some(later));
    }
}
