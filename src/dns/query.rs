//! lbd's own query loop: one resolution of a name against a configured server, blocking,
//! on the resolver thread only (never on a worker). The A and AAAA queries go out
//! together on one UDP socket; a truncated reply is asked again over TCP; the system
//! resolver (`getaddrinfo` through std) is the fallback when no server is configured.

use std::collections::hash_map::RandomState;
use std::hash::BuildHasher;
use std::io::{self, Read, Write};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr, TcpStream, ToSocketAddrs, UdpSocket};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use super::wire::{self, Family, QueryName, Reply};
use super::{Answer, DnsError};

/// Largest UDP reply read. lbd sends no EDNS option, so servers keep UDP replies within
/// 512 bytes (RFC 1035 §4.2.1); the margin costs nothing.
const UDP_BUFFER: usize = 4096;

/// One question in flight: its id, its bytes, and what came back.
struct Pending {
    family: Family,
    id: u16,
    message: Vec<u8>,
    /// `None` until a reply to this question arrives.
    reply: Option<Reply>,
}

/// Resolves `name` to its A and AAAA addresses by asking `resolver`.
///
/// 1. Both queries are sent over one connected UDP socket (random source port, random
///    ids); each attempt waits up to `timeout` for the replies still missing.
/// 2. A packet that is not the reply to one of the questions (other id, other question,
///    not a response, malformed) is ignored and the wait goes on.
/// 3. Questions without a reply are sent again (same id, so a late reply still counts),
///    up to `attempts` times in all; a refused port (ICMP unreachable) ends an attempt
///    at once.
/// 4. A reply with TC set is asked again over TCP (2-byte length prefix), once, within
///    `timeout`.
///
/// Ok holds at least one address. NXDOMAIN is [`DnsError::NxDomain`], a name without
/// A/AAAA records [`DnsError::NoAddresses`]: an empty answer is always an error, so the
/// caller's "a failure keeps the last members" covers it. Any question left without a
/// usable answer fails the whole resolution, so a lost AAAA reply never drops the v6
/// members for one round.
pub fn resolve(
    resolver: SocketAddr,
    name: &str,
    timeout: Duration,
    attempts: u32,
) -> Result<Answer, DnsError> {
    if let Ok(ip) = name.parse::<IpAddr>() {
        return Ok(Answer::literal(ip));
    }
    let qname = QueryName::new(name)?;
    let mut pending: Vec<Pending> = [Family::V4, Family::V6]
        .into_iter()
        .map(|family| {
            let id = random_id();
            Pending {
                family,
                id,
                message: wire::encode_query(id, &qname, family),
                reply: None,
            }
        })
        .collect();
    // Two questions: the ids must differ or one reply would answer both checks.
    if pending[0].id == pending[1].id {
        pending[1].id ^= 1;
        pending[1].message = wire::encode_query(pending[1].id, &qname, Family::V6);
    }

    let socket = udp_socket(resolver)?;
    let mut last_error = DnsError::Timeout;
    for _ in 0..attempts.max(1) {
        for p in pending.iter().filter(|p| p.reply.is_none()) {
            if let Err(e) = socket.send(&p.message) {
                last_error = DnsError::Io(e);
            }
        }
        if let Err(e) = receive(&socket, &qname, &mut pending, Instant::now() + timeout) {
            last_error = e;
        }
        if pending.iter().all(|p| p.reply.is_some()) {
            break;
        }
    }
    if pending.iter().any(|p| p.reply.is_none()) {
        return Err(last_error);
    }

    for p in pending.iter_mut() {
        if p.reply == Some(Reply::Truncated) {
            p.reply = Some(tcp_query(resolver, &qname, p, timeout)?);
        }
    }
    combine(pending.into_iter().filter_map(|p| p.reply))
}

/// Resolves `name` with the system resolver (std's `ToSocketAddrs`, `getaddrinfo`):
/// `/etc/hosts`, `/etc/resolv.conf` and the rest of the host's setup. It gives no TTL;
/// the caller falls back to its interval.
pub fn resolve_system(name: &str) -> Result<Answer, DnsError> {
    if let Ok(ip) = name.parse::<IpAddr>() {
        return Ok(Answer::literal(ip));
    }
    QueryName::new(name)?;
    let mut addrs: Vec<IpAddr> = (name, 0u16)
        .to_socket_addrs()
        .map_err(DnsError::Io)?
        .map(|sa| sa.ip())
        .collect();
    addrs.sort();
    addrs.dedup();
    if addrs.is_empty() {
        return Err(DnsError::NoAddresses);
    }
    Ok(Answer { addrs, ttl: None })
}

/// A UDP socket of `resolver`'s family on a kernel-chosen port, connected to it so the
/// kernel drops datagrams from anyone else and reports a refused port.
fn udp_socket(resolver: SocketAddr) -> Result<UdpSocket, DnsError> {
    let local: SocketAddr = match resolver {
        SocketAddr::V4(_) => (Ipv4Addr::UNSPECIFIED, 0).into(),
        SocketAddr::V6(_) => (Ipv6Addr::UNSPECIFIED, 0).into(),
    };
    let socket = UdpSocket::bind(local).map_err(DnsError::Io)?;
    socket.connect(resolver).map_err(DnsError::Io)?;
    Ok(socket)
}

/// Reads datagrams until every question has a reply or `deadline` passes. Err ends the
/// attempt early (a refused port, a socket error); the caller may try again.
fn receive(
    socket: &UdpSocket,
    qname: &QueryName,
    pending: &mut [Pending],
    deadline: Instant,
) -> Result<(), DnsError> {
    let mut buf = [0u8; UDP_BUFFER];
    // Bounded by `deadline`: every pass either returns or waits for time to pass.
    while pending.iter().any(|p| p.reply.is_none()) {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Err(DnsError::Timeout);
        }
        socket.set_read_timeout(Some(left)).map_err(DnsError::Io)?;
        let n = match socket.recv(&mut buf) {
            Ok(n) => n,
            // The read timeout: this attempt is over.
            Err(e)
                if matches!(
                    e.kind(),
                    io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
                ) =>
            {
                return Err(DnsError::Timeout)
            }
            // A signal: read again.
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            // ICMP port unreachable (nothing listens there), or another socket error.
            Err(e) => return Err(DnsError::Io(e)),
        };
        let packet = &buf[..n];
        let mut matched = false;
        for p in pending.iter_mut().filter(|p| p.reply.is_none()) {
            match wire::decode_reply(packet, p.id, qname, p.family) {
                Ok(reply) => {
                    p.reply = Some(reply);
                    matched = true;
                    break;
                }
                Err(_) => continue,
            }
        }
        if !matched {
            log::debug!("dns name={} ignored a packet bytes={n}", qname.as_str());
        }
    }
    Ok(())
}

/// Asks `p`'s question again over TCP, within `timeout`.
fn tcp_query(
    resolver: SocketAddr,
    qname: &QueryName,
    p: &Pending,
    timeout: Duration,
) -> Result<Reply, DnsError> {
    let deadline = Instant::now() + timeout;
    let mut stream = TcpStream::connect_timeout(&resolver, timeout).map_err(DnsError::Io)?;
    let _ = stream.set_nodelay(true);
    // Queries are a few hundred bytes at most: a name is at most 255.
    let len = u16::try_from(p.message.len()).map_err(|_| DnsError::InvalidName)?;
    let mut framed = Vec::with_capacity(2 + p.message.len());
    framed.extend_from_slice(&len.to_be_bytes());
    framed.extend_from_slice(&p.message);
    stream
        .set_write_timeout(Some(remaining(deadline)?))
        .map_err(DnsError::Io)?;
    stream.write_all(&framed).map_err(DnsError::Io)?;
    let mut len = [0u8; 2];
    read_exact_by(&mut stream, &mut len, deadline)?;
    let mut reply = vec![0u8; usize::from(u16::from_be_bytes(len))];
    read_exact_by(&mut stream, &mut reply, deadline)?;
    match wire::decode_reply(&reply, p.id, qname, p.family) {
        Ok(Reply::Truncated) => Err(DnsError::BadReply("truncated over tcp")),
        Ok(reply) => Ok(reply),
        Err(ignored) => Err(DnsError::BadReply(ignored.as_str())),
    }
}

/// Fills `buf` from `stream`, failing with [`DnsError::Timeout`] past `deadline`.
fn read_exact_by(
    stream: &mut TcpStream,
    buf: &mut [u8],
    deadline: Instant,
) -> Result<(), DnsError> {
    let mut filled = 0;
    // Bounded by `deadline` (each read waits at most the time left) and by `buf`'s length.
    while filled < buf.len() {
        stream
            .set_read_timeout(Some(remaining(deadline)?))
            .map_err(DnsError::Io)?;
        match stream.read(&mut buf[filled..]) {
            Ok(0) => return Err(DnsError::BadReply("tcp closed mid-reply")),
            Ok(n) => filled += n,
            Err(e)
                if matches!(
                    e.kind(),
                    io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
                ) =>
            {
                return Err(DnsError::Timeout)
            }
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(DnsError::Io(e)),
        }
    }
    Ok(())
}

fn remaining(deadline: Instant) -> Result<Duration, DnsError> {
    let left = deadline.saturating_duration_since(Instant::now());
    if left.is_zero() {
        Err(DnsError::Timeout)
    } else {
        Ok(left)
    }
}

/// One answer from the replies to both questions (every reply present, none truncated).
fn combine(replies: impl Iterator<Item = Reply>) -> Result<Answer, DnsError> {
    let mut addrs = Vec::new();
    let mut ttl: Option<u32> = None;
    let mut nxdomain = false;
    for reply in replies {
        match reply {
            Reply::Records {
                addrs: found,
                ttl: t,
            } => {
                addrs.extend(found);
                if let Some(t) = t {
                    ttl = Some(ttl.map_or(t, |m| m.min(t)));
                }
            }
            Reply::NxDomain => nxdomain = true,
            Reply::Failure(rcode) => return Err(DnsError::Server(rcode)),
            Reply::Truncated => return Err(DnsError::BadReply("truncated")),
        }
    }
    addrs.sort();
    addrs.dedup();
    match (addrs.is_empty(), nxdomain) {
        (true, true) => Err(DnsError::NxDomain),
        (true, false) => Err(DnsError::NoAddresses),
        (false, _) => Ok(Answer {
            addrs,
            ttl: ttl.map(|t| Duration::from_secs(u64::from(t))),
        }),
    }
}

/// A fresh query id. Not cryptographic: std's hasher with fresh random keys over a
/// counter, which an off-path sender cannot predict; with the kernel's random source port
/// that is what a stub resolver offers.
fn random_id() -> u16 {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    // Relaxed: only uniqueness of the value matters, no other memory is ordered by it.
    let n = COUNTER.fetch_add(1, Ordering::Relaxed);
    RandomState::new().hash_one(n) as u16
}

#[cfg(test)]
mod tests {
    use std::net::{Ipv4Addr, Ipv6Addr};

    use super::*;
    use crate::dns::testserver::{wait_until, TestDns, DECOY_WRONG_ID, DECOY_WRONG_QUESTION};

    /// Generous: a test that gets its replies returns at once, whatever this is.
    const TIMEOUT: Duration = Duration::from_secs(2);

    fn v4(last: u8) -> IpAddr {
        IpAddr::V4(Ipv4Addr::new(10, 0, 0, last))
    }

    fn v6(last: u16) -> IpAddr {
        IpAddr::V6(Ipv6Addr::new(0x2001, 0xdb8, 0, 0, 0, 0, 0, last))
    }

    #[test]
    fn resolves_a_and_aaaa_with_the_minimum_ttl() {
        let dns = TestDns::start();
        dns.set("svc.test", &[(v4(2), 30), (v4(1), 20), (v6(1), 7)]);
        let answer = resolve(dns.addr(), "SVC.test.", TIMEOUT, 2).unwrap();
        assert_eq!(answer.addrs, vec![v4(1), v4(2), v6(1)]);
        assert_eq!(answer.ttl, Some(Duration::from_secs(7)));
        assert_eq!(dns.udp_queries(), 2, "one A and one AAAA query");
        dns.stop();
    }

    #[test]
    fn nxdomain_and_nodata_are_distinct_errors() {
        let dns = TestDns::start();
        dns.set("empty.test", &[]);
        let e = resolve(dns.addr(), "missing.test", TIMEOUT, 2).unwrap_err();
        assert!(matches!(e, DnsError::NxDomain), "{e}");
        let e = resolve(dns.addr(), "empty.test", TIMEOUT, 2).unwrap_err();
        assert!(matches!(e, DnsError::NoAddresses), "{e}");
        let e = resolve(dns.addr(), "bad..name\\", TIMEOUT, 2).unwrap_err();
        assert!(matches!(e, DnsError::InvalidName), "{e}");
        dns.stop();
    }

    #[test]
    fn truncated_udp_reply_is_asked_again_over_tcp() {
        let dns = TestDns::start();
        dns.set("big.test", &[(v4(1), 60), (v6(1), 60)]);
        dns.truncate_udp(true);
        let answer = resolve(dns.addr(), "big.test", TIMEOUT, 2).unwrap();
        assert_eq!(answer.addrs, vec![v4(1), v6(1)]);
        assert_eq!(dns.tcp_queries(), 2, "both questions went over TCP");
        dns.stop();
    }

    #[test]
    fn a_dropped_query_is_sent_again() {
        let dns = TestDns::start();
        dns.set("svc.test", &[(v4(1), 60)]);
        dns.drop_udp(1);
        let answer = resolve(dns.addr(), "svc.test", Duration::from_millis(200), 3).unwrap();
        assert_eq!(answer.addrs, vec![v4(1)]);
        assert!(dns.udp_queries() >= 3, "two queries, one of them again");
        dns.stop();
    }

    #[test]
    fn replies_with_another_id_or_question_are_ignored() {
        let dns = TestDns::start();
        dns.set("svc.test", &[(v4(1), 60)]);
        dns.decoys(2); // both queries get both decoys first
        let answer = resolve(dns.addr(), "svc.test", TIMEOUT, 1).unwrap();
        assert_eq!(answer.addrs, vec![v4(1)]);
        assert!(!answer.addrs.contains(&DECOY_WRONG_ID));
        assert!(!answer.addrs.contains(&DECOY_WRONG_QUESTION));
        dns.stop();
    }

    #[test]
    fn silent_server_times_out_after_every_attempt() {
        let dns = TestDns::start();
        dns.set("svc.test", &[(v4(1), 60)]);
        dns.silent(true);
        let e = resolve(dns.addr(), "svc.test", Duration::from_millis(100), 3).unwrap_err();
        assert!(matches!(e, DnsError::Timeout), "{e}");
        // Two questions, three attempts each (the server may count the last ones late).
        assert!(wait_until(Duration::from_secs(5), || dns.udp_queries() == 6));
        dns.stop();
    }

    #[test]
    fn stopped_server_fails() {
        let dns = TestDns::start();
        let addr = dns.addr();
        dns.stop();
        // The closed port is refused (ICMP), or at worst silent: an error either way.
        assert!(resolve(addr, "svc.test", Duration::from_millis(100), 2).is_err());
    }

    #[test]
    fn ip_literals_need_no_query() {
        let ip: IpAddr = "192.0.2.1".parse().unwrap();
        let unused: SocketAddr = "127.0.0.1:9".parse().unwrap();
        assert_eq!(
            resolve(unused, "192.0.2.1", TIMEOUT, 1).unwrap().addrs,
            vec![ip]
        );
        assert_eq!(resolve_system("192.0.2.1").unwrap().addrs, vec![ip]);
    }

    #[test]
    fn system_resolver_reads_the_hosts_file() {
        let answer = resolve_system("localhost").unwrap();
        assert!(answer.addrs.iter().all(|ip| ip.is_loopback()), "{answer:?}");
        assert_eq!(answer.ttl, None);
    }
}
