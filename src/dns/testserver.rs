//! A tiny DNS server for the tests: UDP and TCP on one 127.0.0.1 port, answering A and
//! AAAA questions from a table the test changes at run time, built with the same crate.
//! It can set TC on UDP replies, drop UDP queries, send decoy replies (wrong id, wrong
//! question) before the real one, go silent, and stop (its port then refuses).

use std::collections::HashMap;
use std::io::{Read, Write};
use std::net::{IpAddr, SocketAddr, TcpListener, TcpStream, UdpSocket};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

use simple_dns::rdata::{RData, A, AAAA};
use simple_dns::{Name, Packet, PacketFlag, Question, ResourceRecord, CLASS, QTYPE, RCODE, TYPE};

/// Decoy answers: a resolver that accepts a decoy reply shows one of these.
pub const DECOY_WRONG_ID: IpAddr = IpAddr::V4(std::net::Ipv4Addr::new(192, 0, 2, 66));
/// See [`DECOY_WRONG_ID`].
pub const DECOY_WRONG_QUESTION: IpAddr = IpAddr::V4(std::net::Ipv4Addr::new(192, 0, 2, 67));

/// How long the TCP side waits for a client's next query.
const TCP_IDLE: Duration = Duration::from_secs(2);

/// Polls `condition` until it holds or `within` passes; returns whether it held.
pub fn wait_until(within: Duration, mut condition: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + within;
    loop {
        if condition() {
            return true;
        }
        if Instant::now() >= deadline {
            return false;
        }
        thread::sleep(Duration::from_millis(5));
    }
}

#[derive(Default)]
struct State {
    /// Lowercase name without a trailing dot -> records (address, TTL). Absent: NXDOMAIN.
    records: Mutex<HashMap<String, Vec<(IpAddr, u32)>>>,
    truncate_udp: AtomicBool,
    drop_udp: AtomicUsize,
    decoys: AtomicUsize,
    silent: AtomicBool,
    stop: AtomicBool,
    udp_queries: AtomicUsize,
    tcp_queries: AtomicUsize,
}

/// The running server; [`TestDns::stop`] ends it (dropping it leaves the threads).
pub struct TestDns {
    addr: SocketAddr,
    state: Arc<State>,
    threads: Vec<JoinHandle<()>>,
}

impl TestDns {
    /// Starts on 127.0.0.1, one port for UDP and TCP.
    pub fn start() -> TestDns {
        let (udp, tcp) = bind_pair();
        let addr = udp.local_addr().unwrap();
        let state = Arc::new(State::default());
        let threads = vec![
            {
                let state = Arc::clone(&state);
                thread::spawn(move || serve_udp(udp, &state))
            },
            {
                let state = Arc::clone(&state);
                thread::spawn(move || serve_tcp(tcp, &state))
            },
        ];
        TestDns {
            addr,
            state,
            threads,
        }
    }

    /// Where it listens.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// `name` resolves to `records` (address, TTL); an empty list is NODATA.
    pub fn set(&self, name: &str, records: &[(IpAddr, u32)]) {
        self.state
            .records
            .lock()
            .unwrap()
            .insert(key(name), records.to_vec());
    }

    /// `name` no longer exists (NXDOMAIN).
    pub fn remove(&self, name: &str) {
        self.state.records.lock().unwrap().remove(&key(name));
    }

    /// Every UDP reply has TC set and no answers.
    pub fn truncate_udp(&self, on: bool) {
        self.state.truncate_udp.store(on, Ordering::SeqCst);
    }

    /// The next `n` UDP queries get no reply.
    pub fn drop_udp(&self, n: usize) {
        self.state.drop_udp.store(n, Ordering::SeqCst);
    }

    /// The next `n` UDP queries first get a reply with the wrong id and one about another
    /// name, then the real reply.
    pub fn decoys(&self, n: usize) {
        self.state.decoys.store(n, Ordering::SeqCst);
    }

    /// Silent: queries are counted, never answered (a server that is down).
    pub fn silent(&self, on: bool) {
        self.state.silent.store(on, Ordering::SeqCst);
    }

    /// UDP queries received.
    pub fn udp_queries(&self) -> usize {
        self.state.udp_queries.load(Ordering::SeqCst)
    }

    /// TCP queries received.
    pub fn tcp_queries(&self) -> usize {
        self.state.tcp_queries.load(Ordering::SeqCst)
    }

    /// Stops both threads and closes the port.
    pub fn stop(self) {
        self.state.stop.store(true, Ordering::SeqCst);
        // Wake the blocked receive and accept.
        if let Ok(s) = UdpSocket::bind("127.0.0.1:0") {
            let _ = s.send_to(&[], self.addr);
        }
        let _ = TcpStream::connect(self.addr);
        for t in self.threads {
            t.join().unwrap();
        }
    }
}

fn key(name: &str) -> String {
    name.trim_end_matches('.').to_ascii_lowercase()
}

/// A UDP socket and a TCP listener on the same free port (bounded tries: another test
/// may hold the TCP side of the port the kernel gave the UDP socket).
fn bind_pair() -> (UdpSocket, TcpListener) {
    for _ in 0..50 {
        let udp = UdpSocket::bind("127.0.0.1:0").unwrap();
        if let Ok(tcp) = TcpListener::bind(udp.local_addr().unwrap()) {
            return (udp, tcp);
        }
    }
    panic!("no free port for UDP and TCP");
}

fn serve_udp(socket: UdpSocket, state: &State) {
    let mut buf = [0u8; 4096];
    loop {
        let Ok((n, from)) = socket.recv_from(&mut buf) else {
            continue;
        };
        if state.stop.load(Ordering::SeqCst) {
            return;
        }
        state.udp_queries.fetch_add(1, Ordering::SeqCst);
        if state.silent.load(Ordering::SeqCst) || take_one(&state.drop_udp) {
            continue;
        }
        let query = &buf[..n];
        if take_one(&state.decoys) {
            for decoy in [Decoy::WrongId, Decoy::WrongQuestion] {
                if let Some(reply) = answer(state, query, Some(decoy), false) {
                    let _ = socket.send_to(&reply, from);
                }
            }
        }
        let truncate = state.truncate_udp.load(Ordering::SeqCst);
        if let Some(reply) = answer(state, query, None, truncate) {
            let _ = socket.send_to(&reply, from);
        }
    }
}

/// Decrements `n` if positive; true if it did.
fn take_one(n: &AtomicUsize) -> bool {
    n.fetch_update(Ordering::SeqCst, Ordering::SeqCst, |v| v.checked_sub(1))
        .is_ok()
}

fn serve_tcp(listener: TcpListener, state: &State) {
    for stream in listener.incoming() {
        if state.stop.load(Ordering::SeqCst) {
            return;
        }
        let Ok(mut stream) = stream else {
            continue;
        };
        if state.silent.load(Ordering::SeqCst) {
            continue; // dropped: closed at once
        }
        let _ = stream.set_read_timeout(Some(TCP_IDLE));
        // One connection at a time, queries until the client closes.
        loop {
            let mut len = [0u8; 2];
            if stream.read_exact(&mut len).is_err() {
                break;
            }
            let mut query = vec![0u8; usize::from(u16::from_be_bytes(len))];
            if stream.read_exact(&mut query).is_err() {
                break;
            }
            state.tcp_queries.fetch_add(1, Ordering::SeqCst);
            let Some(reply) = answer(state, &query, None, false) else {
                break;
            };
            let mut framed = (reply.len() as u16).to_be_bytes().to_vec();
            framed.extend_from_slice(&reply);
            if stream.write_all(&framed).is_err() {
                break;
            }
        }
    }
}

#[derive(Clone, Copy)]
enum Decoy {
    WrongId,
    WrongQuestion,
}

/// The reply to `query` from the table, or a decoy; `truncate`: TC set, no answers.
fn answer(state: &State, query: &[u8], decoy: Option<Decoy>, truncate: bool) -> Option<Vec<u8>> {
    let q = Packet::parse(query).ok()?;
    let question = q.questions.first()?.clone();
    let mut id = q.id();
    let mut reply_question = question.clone();
    let mut records: Option<Vec<(IpAddr, u32)>> = state
        .records
        .lock()
        .unwrap()
        .get(&key(&question.qname.to_string()))
        .cloned();
    match decoy {
        None => {}
        Some(Decoy::WrongId) => {
            id ^= 0x5a5a;
            records = Some(vec![(DECOY_WRONG_ID, 1)]);
        }
        Some(Decoy::WrongQuestion) => {
            reply_question = Question::new(
                Name::new_unchecked("decoy.invalid"),
                question.qtype,
                question.qclass,
                false,
            );
            records = Some(vec![(DECOY_WRONG_QUESTION, 1)]);
        }
    }
    let mut reply = Packet::new_reply(id);
    reply.questions.push(reply_question.clone());
    if truncate {
        reply.set_flags(PacketFlag::TRUNCATION);
        return reply.build_bytes_vec().ok();
    }
    match records {
        None => *reply.rcode_mut() = RCODE::NameError,
        Some(records) => {
            for (ip, ttl) in records {
                let rdata = match (ip, question.qtype) {
                    (IpAddr::V4(v4), QTYPE::TYPE(TYPE::A)) => RData::A(A::from(v4)),
                    (IpAddr::V6(v6), QTYPE::TYPE(TYPE::AAAA)) => RData::AAAA(AAAA::from(v6)),
                    _ => continue,
                };
                reply.answers.push(ResourceRecord::new(
                    reply_question.qname.clone(),
                    CLASS::IN,
                    ttl,
                    rdata,
                ));
            }
        }
    }
    reply.build_bytes_vec().ok()
}
