//! The DNS messages lbd sends and the replies it accepts, as a pure core over bytes: no
//! socket, no clock. `simple-dns` does the wire format; this file decides what a reply
//! means for one question (ours or not, truncated, an error, which records count).

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use simple_dns::{header_buffer, Name, Packet, PacketFlag, Question, CLASS, QCLASS, QTYPE};
use simple_dns::{rdata::RData, RCODE, TYPE};

use super::DnsError;

/// CNAME links followed from the question's name before giving up on the chain; real
/// chains are one or two links long.
pub const MAX_CNAME_CHAIN: usize = 8;

/// The two record types lbd asks for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Family {
    /// A records (IPv4).
    V4,
    /// AAAA records (IPv6).
    V6,
}

impl Family {
    fn record_type(self) -> TYPE {
        match self {
            Family::V4 => TYPE::A,
            Family::V6 => TYPE::AAAA,
        }
    }
}

/// A validated name to ask about.
#[derive(Debug, Clone)]
pub struct QueryName {
    /// The name as given; [`Name::new`] accepted it and it has at least one label.
    text: String,
}

impl QueryName {
    /// Checks `name` (label and name lengths, escapes; a trailing dot is allowed).
    pub fn new(name: &str) -> Result<QueryName, DnsError> {
        match Name::new(name) {
            Ok(parsed) if !parsed.get_labels().is_empty() => Ok(QueryName {
                text: name.to_owned(),
            }),
            _ => Err(DnsError::InvalidName),
        }
    }

    /// The name as given.
    pub fn as_str(&self) -> &str {
        &self.text
    }

    fn name(&self) -> Name<'_> {
        // Cannot fail: `new` checked the same text.
        Name::new(&self.text).unwrap_or_else(|_| Name::new_unchecked(&self.text))
    }
}

/// The query for `name`'s records of `family`, recursion desired, no EDNS (so a server
/// keeps UDP replies within 512 bytes and sets TC past that).
pub fn encode_query(id: u16, name: &QueryName, family: Family) -> Vec<u8> {
    let mut packet = Packet::new_query(id);
    packet.set_flags(PacketFlag::RECURSION_DESIRED);
    packet.questions.push(Question::new(
        name.name(),
        QTYPE::TYPE(family.record_type()),
        QCLASS::CLASS(CLASS::IN),
        false,
    ));
    // Writing into a Vec cannot fail, and `name` is valid; an empty message would be
    // ignored by the server and end as a timeout.
    packet.build_bytes_vec().unwrap_or_default()
}

/// What a reply to our question says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Reply {
    /// NOERROR: the addresses of `family` the answer holds for the name (possibly none:
    /// NODATA), and the smallest TTL, in seconds, of the records used (`None` when none).
    Records {
        /// Addresses, in answer order, duplicates removed.
        addrs: Vec<IpAddr>,
        /// Minimum TTL of the address and CNAME records that led to them.
        ttl: Option<u32>,
    },
    /// NXDOMAIN: the name does not exist.
    NxDomain,
    /// The TC bit: the answer did not fit a UDP message; ask again over TCP.
    Truncated,
    /// Another RCODE (SERVFAIL, REFUSED, ...).
    Failure(u16),
}

/// Why a packet is not a reply to our question: on UDP it is ignored and the wait goes on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Ignored {
    /// Not a DNS message.
    Malformed,
    /// Another query's id.
    WrongId,
    /// The QR bit is clear.
    NotAResponse,
    /// Not exactly our question (name, type, class).
    WrongQuestion,
}

impl Ignored {
    /// One word for logs.
    pub fn as_str(self) -> &'static str {
        match self {
            Ignored::Malformed => "malformed",
            Ignored::WrongId => "wrong_id",
            Ignored::NotAResponse => "not_a_response",
            Ignored::WrongQuestion => "wrong_question",
        }
    }
}

/// Reads `bytes` as the reply to query `id` about `name`'s `family` records.
pub fn decode_reply(
    bytes: &[u8],
    id: u16,
    name: &QueryName,
    family: Family,
) -> Result<Reply, Ignored> {
    if header_buffer::id(bytes).map_err(|_| Ignored::Malformed)? != id {
        return Err(Ignored::WrongId);
    }
    if !header_buffer::has_flags(bytes, PacketFlag::RESPONSE).map_err(|_| Ignored::Malformed)? {
        return Err(Ignored::NotAResponse);
    }
    // Before a full parse: a truncated message may end in the middle of a record.
    if header_buffer::has_flags(bytes, PacketFlag::TRUNCATION).map_err(|_| Ignored::Malformed)? {
        return Ok(Reply::Truncated);
    }
    let packet = Packet::parse(bytes).map_err(|_| Ignored::Malformed)?;
    let qname = name.name();
    let ours = match packet.questions.as_slice() {
        [q] => {
            q.qname == qname // ignores ASCII case
                && q.qtype == QTYPE::TYPE(family.record_type())
                && q.qclass == QCLASS::CLASS(CLASS::IN)
        }
        _ => false,
    };
    if !ours {
        return Err(Ignored::WrongQuestion);
    }
    match packet.rcode() {
        RCODE::NoError => Ok(records(&packet, qname, family)),
        RCODE::NameError => Ok(Reply::NxDomain),
        other => Ok(Reply::Failure(other as u16)),
    }
}

/// The `family` addresses of `qname`, following CNAMEs in the answer section (at most
/// [`MAX_CNAME_CHAIN`] links); records about other names are ignored.
fn records<'a>(packet: &Packet<'a>, qname: Name<'a>, family: Family) -> Reply {
    let answers = &packet.answers;
    let mut owners = vec![qname];
    let mut ttl: Option<u32> = None;
    for _ in 0..MAX_CNAME_CHAIN {
        let link = answers.iter().find_map(|rr| match &rr.rdata {
            RData::CNAME(target)
                if rr.class == CLASS::IN
                    && owners.contains(&rr.name)
                    && !owners.contains(&target.0) =>
            {
                Some((target.0.clone(), rr.ttl))
            }
            _ => None,
        });
        let Some((target, link_ttl)) = link else {
            break;
        };
        owners.push(target);
        ttl = Some(ttl.map_or(link_ttl, |t| t.min(link_ttl)));
    }
    let mut addrs = Vec::new();
    let mut addr_ttl: Option<u32> = None;
    for rr in answers {
        if rr.class != CLASS::IN || !owners.contains(&rr.name) {
            continue;
        }
        let addr = match (&rr.rdata, family) {
            (RData::A(a), Family::V4) => IpAddr::V4(Ipv4Addr::from(a.address)),
            (RData::AAAA(a), Family::V6) => IpAddr::V6(Ipv6Addr::from(a.address)),
            _ => continue,
        };
        if !addrs.contains(&addr) {
            addrs.push(addr);
        }
        addr_ttl = Some(addr_ttl.map_or(rr.ttl, |t| t.min(rr.ttl)));
    }
    // The chain's TTLs count only when it led to addresses.
    let ttl = addr_ttl.map(|t| ttl.map_or(t, |c| c.min(t)));
    Reply::Records { addrs, ttl }
}

#[cfg(test)]
mod tests {
    use simple_dns::rdata::{A, AAAA, CNAME};
    use simple_dns::ResourceRecord;

    use super::*;

    fn name(s: &str) -> QueryName {
        QueryName::new(s).unwrap()
    }

    /// A reply to `id` about `qname`/`qtype` with `answers`.
    fn reply(
        id: u16,
        qname: &'static str,
        family: Family,
        answers: Vec<ResourceRecord<'static>>,
    ) -> Vec<u8> {
        let mut p = Packet::new_reply(id);
        p.questions.push(Question::new(
            Name::new_unchecked(qname),
            QTYPE::TYPE(family.record_type()),
            QCLASS::CLASS(CLASS::IN),
            false,
        ));
        p.answers = answers;
        p.build_bytes_vec().unwrap()
    }

    fn a(owner: &'static str, ip: [u8; 4], ttl: u32) -> ResourceRecord<'static> {
        let rdata = RData::A(A::from(Ipv4Addr::from(ip)));
        ResourceRecord::new(Name::new_unchecked(owner), CLASS::IN, ttl, rdata)
    }

    fn cname(owner: &'static str, target: &'static str, ttl: u32) -> ResourceRecord<'static> {
        let rdata = RData::CNAME(CNAME(Name::new_unchecked(target)));
        ResourceRecord::new(Name::new_unchecked(owner), CLASS::IN, ttl, rdata)
    }

    #[test]
    fn query_round_trips_through_the_crate() {
        let bytes = encode_query(0x1234, &name("api.internal."), Family::V6);
        let p = Packet::parse(&bytes).unwrap();
        assert_eq!(p.id(), 0x1234);
        assert!(p.has_flags(PacketFlag::RECURSION_DESIRED));
        assert!(!p.has_flags(PacketFlag::RESPONSE));
        assert_eq!(p.questions.len(), 1);
        assert_eq!(p.questions[0].qname.to_string(), "api.internal");
        assert_eq!(p.questions[0].qtype, QTYPE::TYPE(TYPE::AAAA));
    }

    #[test]
    fn invalid_names_are_refused() {
        assert!(matches!(QueryName::new(""), Err(DnsError::InvalidName)));
        assert!(matches!(QueryName::new("."), Err(DnsError::InvalidName)));
        let long_label = "a".repeat(64);
        assert!(matches!(
            QueryName::new(&long_label),
            Err(DnsError::InvalidName)
        ));
    }

    #[test]
    fn addresses_and_minimum_ttl() {
        let bytes = reply(
            7,
            "svc.test",
            Family::V4,
            vec![
                a("svc.test", [10, 0, 0, 1], 30),
                a("SVC.test", [10, 0, 0, 2], 5), // names compare without case
                a("svc.test", [10, 0, 0, 1], 30), // duplicate
                a("other.test", [10, 9, 9, 9], 1), // another owner: not used
            ],
        );
        let got = decode_reply(&bytes, 7, &name("svc.test"), Family::V4).unwrap();
        let want: Vec<IpAddr> = vec![[10, 0, 0, 1].into(), [10, 0, 0, 2].into()];
        assert_eq!(
            got,
            Reply::Records {
                addrs: want,
                ttl: Some(5)
            }
        );
    }

    #[test]
    fn cname_chain_is_followed_and_its_ttl_counts() {
        let bytes = reply(
            9,
            "www.test",
            Family::V4,
            vec![
                cname("www.test", "lb.test", 3),
                cname("lb.test", "www.test", 1), // loop back: not followed again
                a("lb.test", [192, 0, 2, 10], 60),
            ],
        );
        let got = decode_reply(&bytes, 9, &name("www.test"), Family::V4).unwrap();
        assert_eq!(
            got,
            Reply::Records {
                addrs: vec![[192, 0, 2, 10].into()],
                ttl: Some(3)
            }
        );
    }

    #[test]
    fn records_of_the_other_family_are_not_used() {
        let aaaa = ResourceRecord::new(
            Name::new_unchecked("svc.test"),
            CLASS::IN,
            9,
            RData::AAAA(AAAA::from(Ipv6Addr::LOCALHOST)),
        );
        let bytes = reply(1, "svc.test", Family::V4, vec![aaaa]);
        let got = decode_reply(&bytes, 1, &name("svc.test"), Family::V4).unwrap();
        assert_eq!(
            got,
            Reply::Records {
                addrs: vec![],
                ttl: None
            }
        );
    }

    #[test]
    fn foreign_packets_are_ignored() {
        let q = name("svc.test");
        let good = reply(5, "svc.test", Family::V4, vec![]);
        assert_eq!(
            decode_reply(&good, 6, &q, Family::V4),
            Err(Ignored::WrongId)
        );
        assert_eq!(
            decode_reply(&good, 5, &q, Family::V6),
            Err(Ignored::WrongQuestion)
        );
        let other = reply(5, "evil.test", Family::V4, vec![]);
        assert_eq!(
            decode_reply(&other, 5, &q, Family::V4),
            Err(Ignored::WrongQuestion)
        );
        let query = encode_query(5, &q, Family::V4);
        assert_eq!(
            decode_reply(&query, 5, &q, Family::V4),
            Err(Ignored::NotAResponse)
        );
        assert_eq!(
            decode_reply(&good[..good.len() - 3], 5, &q, Family::V4),
            Err(Ignored::Malformed)
        );
        assert_eq!(
            decode_reply(&[0, 5], 5, &q, Family::V4),
            Err(Ignored::Malformed)
        );
    }

    #[test]
    fn truncation_and_rcodes() {
        let q = name("svc.test");
        let plain = reply(3, "svc.test", Family::V4, vec![]);
        let mut p = Packet::parse(&plain).unwrap();
        p.set_flags(PacketFlag::TRUNCATION);
        let mut truncated = p.build_bytes_vec().unwrap();
        truncated.truncate(14); // cut inside the question: still read as truncated
        assert_eq!(
            decode_reply(&truncated, 3, &q, Family::V4),
            Ok(Reply::Truncated)
        );
        for (rcode, want) in [
            (RCODE::NameError, Reply::NxDomain),
            (RCODE::ServerFailure, Reply::Failure(2)),
            (RCODE::Refused, Reply::Failure(5)),
        ] {
            let mut p = Packet::parse(&plain).unwrap();
            *p.rcode_mut() = rcode;
            let bytes = p.build_bytes_vec().unwrap();
            assert_eq!(decode_reply(&bytes, 3, &q, Family::V4), Ok(want));
        }
    }
}
