//! The resolver thread: one `std::thread` that resolves the watched names when they are
//! due (blocking, one at a time), applies the failure rule, and hands every member change
//! to the caller's callback. It sleeps on its channel until the next name is due, so a
//! reload or a shutdown wakes it at once; a resolution in progress finishes first (at most
//! `attempts × timeout`, plus `timeout` for a TCP fallback).

use std::io;
use std::thread::JoinHandle;
use std::time::Instant;

use crossbeam_channel::{Receiver, RecvTimeoutError, Sender};

use super::watch::{Episode, Watches};
use super::{lookup, DnsSettings, DnsUpdate};

/// Sent to the resolver thread by its [`Resolver`] handle.
#[derive(Debug)]
enum DnsMsg {
    /// New settings and watched names (a reload).
    Reload {
        settings: DnsSettings,
        names: Vec<(String, u16)>,
    },
    /// Finish the resolution in progress, if any, and exit.
    Shutdown,
}

/// The handle of a running resolver thread. Dropping it also stops the thread (its
/// channel closes), without waiting for it; [`Resolver::stop`] waits.
#[derive(Debug)]
pub struct Resolver {
    tx: Sender<DnsMsg>,
    thread: JoinHandle<()>,
}

impl Resolver {
    /// Starts the thread `lbd-dns`, watching `names` (host, port) with `settings`. Every
    /// name is resolved at once; `out` receives each [`DnsUpdate`], on the resolver
    /// thread, so it should only hand the update on (a channel, a mailbox). A name that
    /// does not resolve at start has no members and no update until it resolves.
    pub fn spawn<F>(
        settings: DnsSettings,
        names: Vec<(String, u16)>,
        out: F,
    ) -> io::Result<Resolver>
    where
        F: FnMut(DnsUpdate) + Send + 'static,
    {
        let (tx, rx) = crossbeam_channel::unbounded();
        let state = ResolverThread {
            watches: Watches::new(&names, Instant::now()),
            settings,
            rx,
            out,
        };
        let thread = std::thread::Builder::new()
            .name("lbd-dns".into())
            .spawn(move || state.run())?;
        Ok(Resolver { tx, thread })
    }

    /// Replaces the settings and the watched names (a reload). Names watched before keep
    /// their members and schedule, and nothing is sent for their services; a new port of
    /// a known name is announced at once with its members; new names are resolved at
    /// once; names dropped are forgotten silently. False when the thread is gone.
    pub fn reload(&self, settings: DnsSettings, names: Vec<(String, u16)>) -> bool {
        self.tx.send(DnsMsg::Reload { settings, names }).is_ok()
    }

    /// Stops the thread and waits for it.
    pub fn stop(self) {
        let _ = self.tx.send(DnsMsg::Shutdown);
        if self.thread.join().is_err() {
            log::error!("dns resolver thread panicked");
        }
    }
}

/// The thread's state.
struct ResolverThread<F> {
    settings: DnsSettings,
    watches: Watches,
    rx: Receiver<DnsMsg>,
    out: F,
}

impl<F: FnMut(DnsUpdate)> ResolverThread<F> {
    fn run(mut self) {
        loop {
            // Handle messages between resolutions, so a shutdown waits for one at most.
            loop {
                match self.rx.try_recv() {
                    Ok(msg) => {
                        if !self.handle(msg) {
                            return;
                        }
                    }
                    Err(crossbeam_channel::TryRecvError::Empty) => break,
                    Err(crossbeam_channel::TryRecvError::Disconnected) => return,
                }
            }
            if let Some(i) = self.watches.due(Instant::now()) {
                self.refresh(i);
                continue;
            }
            let received = match self.watches.next_due() {
                Some(due) => self.rx.recv_deadline(due),
                None => self.rx.recv().map_err(|_| RecvTimeoutError::Disconnected),
            };
            match received {
                Ok(msg) => {
                    if !self.handle(msg) {
                        return;
                    }
                }
                Err(RecvTimeoutError::Timeout) => {}
                // The handle was dropped: nobody can stop us or read our updates.
                Err(RecvTimeoutError::Disconnected) => return,
            }
        }
    }

    /// Returns false on shutdown.
    fn handle(&mut self, msg: DnsMsg) -> bool {
        match msg {
            DnsMsg::Shutdown => false,
            DnsMsg::Reload { settings, names } => {
                let now = Instant::now();
                if settings != self.settings {
                    self.watches
                        .cap_due(super::watch::refresh_after(None, &settings), now);
                    self.settings = settings;
                }
                for update in self.watches.replace(&names, now) {
                    log_update(&update);
                    (self.out)(update);
                }
                true
            }
        }
    }

    /// Resolves watch `i` and reports what changed.
    fn refresh(&mut self, i: usize) {
        let host = self.watches.get_mut(i).host.clone();
        let result = lookup(&self.settings, &host);
        let watch = self.watches.get_mut(i);
        let observation = watch.observe(result, Instant::now(), &self.settings);
        match observation.episode {
            Episode::Steady | Episode::StillFailing => {}
            Episode::Failed {
                error,
                at_start: true,
            } => log::warn!("dns name={host} unresolved error=\"{error}\" members=0"),
            Episode::Failed {
                error,
                at_start: false,
            } => log::warn!(
                "dns name={host} resolution failed error=\"{error}\" members_kept={}",
                watch.addrs().len()
            ),
            Episode::Recovered { failures, lasted } => log::info!(
                "dns name={host} resolves again failures={failures} after={:.1}s",
                lasted.as_secs_f64()
            ),
        }
        let Some(change) = observation.change else {
            return;
        };
        for &port in &watch.ports {
            let update = watch.update(port, &change);
            log_update(&update);
            (self.out)(update);
        }
    }
}

/// Every member change is logged once, here.
fn log_update(update: &DnsUpdate) {
    let list = |addrs: &[std::net::SocketAddr]| {
        addrs
            .iter()
            .map(|a| a.to_string())
            .collect::<Vec<_>>()
            .join(",")
    };
    log::info!(
        "dns service={} members={} added={} removed={}",
        update.service,
        list(&update.members),
        list(&update.added),
        list(&update.removed)
    );
}

#[cfg(test)]
mod tests {
    use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
    use std::time::Duration;

    use crossbeam_channel::Receiver;

    use super::*;
    use crate::dns::testserver::{wait_until, TestDns};
    use crate::dns::Service;

    /// Longest wait for anything the resolver should do.
    const WITHIN: Duration = Duration::from_secs(5);

    fn v4(last: u8) -> IpAddr {
        IpAddr::V4(Ipv4Addr::new(10, 0, 0, last))
    }

    fn settings(dns: &TestDns, interval: Duration) -> DnsSettings {
        DnsSettings {
            interval,
            resolver: Some(dns.addr()),
            // Long enough that a loaded machine does not fail a resolution by accident
            // (a failure waits the whole interval); the tests that expect timeouts set
            // their own.
            timeout: Duration::from_secs(1),
            attempts: 2,
            min_refresh: Duration::from_millis(50),
        }
    }

    fn spawn(settings: DnsSettings, names: &[(&str, u16)]) -> (Resolver, Receiver<DnsUpdate>) {
        let (tx, rx) = crossbeam_channel::unbounded();
        let names = names.iter().map(|&(h, p)| (h.to_owned(), p)).collect();
        let resolver = Resolver::spawn(settings, names, move |u| {
            let _ = tx.send(u);
        })
        .unwrap();
        (resolver, rx)
    }

    fn next(rx: &Receiver<DnsUpdate>) -> DnsUpdate {
        rx.recv_timeout(WITHIN).expect("an update")
    }

    fn at(ip: IpAddr, port: u16) -> SocketAddr {
        SocketAddr::new(ip, port)
    }

    #[test]
    fn announces_the_members_of_each_service() {
        let dns = TestDns::start();
        let v6 = IpAddr::V6(Ipv6Addr::new(0x2001, 0xdb8, 0, 0, 0, 0, 0, 7));
        dns.set("api.test", &[(v4(7), 60), (v6, 60)]);
        let s = DnsSettings {
            timeout: WITHIN, // no resend: the query count below stays exact
            ..settings(&dns, Duration::from_secs(60))
        };
        let (resolver, rx) = spawn(s, &[("api.test", 8080), ("api.test", 9090)]);
        let mut updates = [next(&rx), next(&rx)];
        updates.sort_by_key(|u| u.service.port);
        for (u, port) in updates.iter().zip([8080, 9090]) {
            assert_eq!(u.service, Service::new("api.test", port));
            assert_eq!(u.members, vec![at(v4(7), port), at(v6, port)]);
            assert_eq!(u.added, u.members);
            assert!(u.removed.is_empty());
        }
        assert_eq!(dns.udp_queries(), 2, "one resolution for both ports");
        resolver.stop();
        dns.stop();
    }

    #[test]
    fn ttl_expiry_refreshes_before_the_interval() {
        let dns = TestDns::start();
        dns.set("svc.test", &[(v4(1), 1)]);
        // The interval alone would not look again within the test.
        let (resolver, rx) = spawn(
            settings(&dns, Duration::from_secs(3600)),
            &[("svc.test", 80)],
        );
        assert_eq!(next(&rx).members, vec![at(v4(1), 80)]);
        dns.set("svc.test", &[(v4(2), 1)]);
        let u = next(&rx);
        assert_eq!(u.members, vec![at(v4(2), 80)]);
        assert_eq!(u.added, vec![at(v4(2), 80)]);
        assert_eq!(u.removed, vec![at(v4(1), 80)]);
        resolver.stop();
        dns.stop();
    }

    #[test]
    fn the_interval_refreshes_when_the_ttl_is_long() {
        let dns = TestDns::start();
        dns.set("svc.test", &[(v4(1), 86_400)]);
        let (resolver, rx) = spawn(
            settings(&dns, Duration::from_millis(200)),
            &[("svc.test", 80)],
        );
        assert_eq!(next(&rx).members, vec![at(v4(1), 80)]);
        dns.set("svc.test", &[(v4(1), 86_400), (v4(2), 86_400)]);
        let u = next(&rx);
        assert_eq!(u.added, vec![at(v4(2), 80)]);
        assert!(u.removed.is_empty());
        resolver.stop();
        dns.stop();
    }

    #[test]
    fn updates_only_on_change() {
        let dns = TestDns::start();
        dns.set("svc.test", &[(v4(1), 86_400)]);
        let (resolver, rx) = spawn(
            settings(&dns, Duration::from_millis(60)),
            &[("svc.test", 80)],
        );
        next(&rx);
        // Five more resolutions of the same records (two queries each).
        assert!(wait_until(WITHIN, || dns.udp_queries() >= 12));
        assert_eq!(rx.try_iter().count(), 0, "no update without a change");
        resolver.stop();
        dns.stop();
    }

    #[test]
    fn a_server_down_keeps_the_members_until_it_answers_again() {
        let dns = TestDns::start();
        dns.set("svc.test", &[(v4(1), 86_400)]);
        let s = DnsSettings {
            timeout: Duration::from_millis(100), // silence is the point here
            ..settings(&dns, Duration::from_millis(100))
        };
        let (resolver, rx) = spawn(s, &[("svc.test", 80)]);
        assert_eq!(next(&rx).members, vec![at(v4(1), 80)]);
        dns.silent(true);
        let before = dns.udp_queries();
        // Two failed resolutions: two questions × two attempts each.
        assert!(wait_until(WITHIN, || dns.udp_queries() >= before + 8));
        assert_eq!(rx.try_iter().count(), 0, "a failure removes no member");
        dns.set("svc.test", &[(v4(2), 86_400)]);
        dns.silent(false);
        let u = next(&rx);
        assert_eq!(
            u.removed,
            vec![at(v4(1), 80)],
            "the kept members were the reference"
        );
        assert_eq!(u.added, vec![at(v4(2), 80)]);
        resolver.stop();
        dns.stop();
    }

    #[test]
    fn a_name_unresolvable_at_start_gets_members_when_it_appears() {
        let dns = TestDns::start();
        let (resolver, rx) = spawn(
            settings(&dns, Duration::from_millis(100)),
            &[("late.test", 80)],
        );
        // Two resolutions answered NXDOMAIN: no update, no error.
        assert!(wait_until(WITHIN, || dns.udp_queries() >= 4));
        assert_eq!(rx.try_iter().count(), 0);
        dns.set("late.test", &[(v4(3), 60)]);
        let u = next(&rx);
        assert_eq!(u.members, vec![at(v4(3), 80)]);
        assert_eq!(u.added, u.members);
        resolver.stop();
        dns.stop();
    }

    #[test]
    fn reload_replaces_the_watched_names() {
        let dns = TestDns::start();
        dns.set("a.test", &[(v4(1), 86_400)]);
        dns.set("b.test", &[(v4(2), 86_400)]);
        let s = settings(&dns, Duration::from_secs(3600));
        let (resolver, rx) = spawn(s.clone(), &[("a.test", 80)]);
        assert_eq!(next(&rx).service, Service::new("a.test", 80));
        let names = [("a.test", 80), ("a.test", 81), ("b.test", 80)];
        assert!(resolver.reload(s, names.iter().map(|&(h, p)| (h.into(), p)).collect()));
        let mut got = [next(&rx), next(&rx)];
        got.sort_by(|x, y| x.service.cmp(&y.service));
        assert_eq!(got[0].service, Service::new("a.test", 81));
        assert_eq!(got[0].members, vec![at(v4(1), 81)]);
        assert_eq!(got[1].service, Service::new("b.test", 80));
        assert_eq!(got[1].members, vec![at(v4(2), 80)]);
        resolver.stop();
        assert_eq!(
            rx.try_iter().count(),
            0,
            "a.test:80 was not announced again"
        );
        dns.stop();
    }
}
