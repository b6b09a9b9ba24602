//! Resource attacks (spec §7.6, issue 6), on loopback and bounded in time: slowloris,
//! slow request bodies, clients that never read, thousands of idle keep-alive
//! connections, a connection flood past `max_connections`, and running out of file
//! descriptors. In each, lbd keeps serving a normal client and its memory stays bounded.
//! Throughput and CPU figures are printed (`--nocapture`), never asserted against a clock,
//! except the EMFILE test's CPU budget, which tells a paused accept loop from a spinning one.

use std::io::{BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::os::unix::process::CommandExt;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant};

use crate::binary::Lbd;
use crate::util::*;

/// An lbd config file in front of `backend`; `server` and `timeouts` are extra lines for
/// those sections. Health probes run once at startup only, so a test's load or fd
/// shortage cannot mark the backend down.
fn toml(backend: SocketAddr, server: &str, timeouts: &str) -> String {
    format!(
        "[server]\nlisten = \"127.0.0.1:0\"\nworkers = 2\n{server}\n\
         [timeouts]\n{timeouts}\n\
         [health]\ninterval = \"3600s\"\n\
         [[backend]]\naddress = \"{backend}\"\n"
    )
}

/// CPU time (user + system) the process has used, in seconds.
fn cpu_seconds(pid: u32) -> f64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap();
    // Fields after the parenthesised command name: state is field 3, utime 14, stime 15.
    let fields: Vec<&str> = stat[stat.rfind(')').unwrap() + 2..]
        .split_whitespace()
        .collect();
    let ticks: u64 = fields[11].parse::<u64>().unwrap() + fields[12].parse::<u64>().unwrap();
    // SAFETY: sysconf only reads a system constant.
    let per_second = unsafe { libc::sysconf(libc::_SC_CLK_TCK) } as f64;
    ticks as f64 / per_second
}

/// Raises this process's soft descriptor limit to its hard limit (children such as lbd
/// inherit it) and returns how many connections a test may open: each costs up to two
/// descriptors here and one in lbd.
fn connection_budget(want: usize) -> usize {
    let mut limit = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit/setrlimit only read and write the struct passed.
    unsafe {
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) == 0 && limit.rlim_cur < limit.rlim_max
        {
            limit.rlim_cur = limit.rlim_max;
            libc::setrlimit(libc::RLIMIT_NOFILE, &limit);
            libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit);
        }
    }
    // Other tests run alongside: leave them half.
    let budget = (limit.rlim_cur as usize / 2).saturating_sub(200) / 2;
    if budget < want {
        eprintln!(
            "descriptor limit {}: {budget} connections instead of {want}",
            limit.rlim_cur
        );
    }
    want.min(budget)
}

/// Open descriptors of a process.
fn open_fds(pid: u32) -> usize {
    std::fs::read_dir(format!("/proc/{pid}/fd")).map_or(0, |d| d.count())
}

/// Requests per second of one keep-alive client doing `n` GETs, each answered 200.
fn rate(addr: SocketAddr, n: usize) -> f64 {
    let mut c = Client::connect(addr);
    let started = Instant::now();
    for _ in 0..n {
        let r = c.get("/");
        assert_eq!(r.status, 200, "a normal client was not served");
    }
    n as f64 / started.elapsed().as_secs_f64()
}

fn connect(addr: SocketAddr) -> TcpStream {
    let s = TcpStream::connect(addr).unwrap();
    s.set_nodelay(true).unwrap();
    s.set_read_timeout(Some(IO_TIMEOUT)).unwrap();
    s
}

fn client_from(stream: TcpStream) -> Client {
    Client {
        reader: BufReader::new(stream.try_clone().unwrap()),
        stream,
    }
}

/// Writes `bytes` to every stream one byte per round, a round every `pace`, until
/// `stop` or the bytes run out. Returns the streams; `rounds` counts the bytes each got.
fn trickle(
    mut streams: Vec<TcpStream>,
    bytes: Vec<u8>,
    pace: Duration,
    stop: Arc<AtomicBool>,
    rounds: Arc<AtomicUsize>,
) -> thread::JoinHandle<Vec<TcpStream>> {
    thread::spawn(move || {
        for &b in &bytes {
            if stop.load(Ordering::SeqCst) {
                break;
            }
            for s in &mut streams {
                s.write_all(&[b]).unwrap();
            }
            rounds.fetch_add(1, Ordering::SeqCst);
            // The attacker's pace, not a synchronisation.
            thread::sleep(pace);
        }
        streams
    })
}

/// A slow attacker's pace: a byte per connection every 50 ms.
const PACE: Duration = Duration::from_millis(50);

#[test]
fn slowloris_does_not_starve_a_normal_client() {
    let slow = connection_budget(1000);
    let backend = TestBackend::named("ok");
    let lbd = Lbd::spawn(&toml(backend.addr, "", "client_header = \"60s\""));
    let pid = lbd.child.id();
    let before = rate(lbd.addr, 2000);
    let (rss0, cpu0) = (lbd.rss_kib(), cpu_seconds(pid));
    let streams: Vec<TcpStream> = (0..slow).map(|_| connect(lbd.addr)).collect();
    let mut head = b"GET / HTTP/1.1\r\nHost: a\r\nX-Slow: ".to_vec();
    head.resize(8000, b'a');
    let (stop, rounds) = (Arc::new(AtomicBool::new(false)), Arc::default());
    let attack = trickle(
        streams,
        head.clone(),
        PACE,
        stop.clone(),
        Arc::clone(&rounds),
    );
    // Measure while every slow connection has a partial head in lbd.
    assert!(wait_until(IO_TIMEOUT, || rounds.load(Ordering::SeqCst) >= 20));
    let during = rate(lbd.addr, 2000);
    let (rss1, cpu1) = (lbd.rss_kib(), cpu_seconds(pid));
    stop.store(true, Ordering::SeqCst);
    let streams = attack.join().unwrap();
    let trickled = rounds.load(Ordering::SeqCst);
    eprintln!(
        "slowloris: {slow} connections trickling heads ({trickled} bytes each so far); normal \
         client {before:.0} req/s before, {during:.0} req/s during (ratio {:.2}); lbd RSS \
         +{} KiB, CPU {:.2} s",
        during / before,
        rss1.saturating_sub(rss0),
        cpu1 - cpu0
    );
    // The slow heads were kept, not dropped: completing some of them gets answers.
    for s in streams.into_iter().step_by(slow.div_ceil(20)) {
        let mut c = client_from(s);
        c.send(&head[trickled..]);
        c.send(b"\r\n\r\n");
        assert_eq!(c.response(false).status, 200);
    }
}

#[test]
fn slow_request_bodies_do_not_block_others() {
    const SLOW: usize = 200;
    const LEN: usize = 30;
    let backend = TestBackend::start(|req| Reply::text(&req.body.len().to_string()));
    let lbd = Lbd::spawn(&toml(backend.addr, "", ""));
    let before = rate(lbd.addr, 2000);
    let streams: Vec<TcpStream> = (0..SLOW)
        .map(|_| {
            let mut s = connect(lbd.addr);
            let head = format!("POST / HTTP/1.1\r\nHost: a\r\nContent-Length: {LEN}\r\n\r\n");
            s.write_all(head.as_bytes()).unwrap();
            s
        })
        .collect();
    let (stop, rounds) = (Arc::new(AtomicBool::new(false)), Arc::default());
    let attack = trickle(streams, vec![b'x'; LEN], PACE, stop, Arc::clone(&rounds));
    assert!(wait_until(IO_TIMEOUT, || rounds.load(Ordering::SeqCst) >= 3));
    let during = rate(lbd.addr, 2000);
    let streams = attack.join().unwrap();
    eprintln!(
        "slow bodies: {SLOW} bodies of {LEN} bytes a byte at a time; normal client \
         {before:.0} req/s before, {during:.0} req/s during (ratio {:.2})",
        during / before
    );
    // Every slow body arrived whole.
    for s in streams {
        let r = client_from(s).response(false);
        assert_eq!((r.status, r.text()), (200, LEN.to_string()));
    }
}

#[test]
fn clients_that_never_read_keep_memory_bounded() {
    const READERS: usize = 20;
    const LEN: usize = 64 << 20;
    let written = Arc::new(AtomicUsize::new(0));
    let streaming = Arc::new(AtomicUsize::new(0));
    let backend = {
        let (written, streaming) = (written.clone(), streaming.clone());
        TestBackend::start(move |req| {
            if req.target != "/big" {
                return Reply::text("ok");
            }
            let (written, streaming) = (written.clone(), streaming.clone());
            streaming.fetch_add(1, Ordering::SeqCst);
            Reply::Custom(Box::new(move |s: &mut TcpStream| {
                let head = format!("HTTP/1.1 200 OK\r\nContent-Length: {LEN}\r\n\r\n");
                let block = vec![b'z'; 64 * 1024];
                if s.write_all(head.as_bytes()).is_ok() {
                    let mut sent = 0;
                    // Ends when lbd closes the upstream connection.
                    while sent < LEN && s.write_all(&block).is_ok() {
                        sent += block.len();
                        written.fetch_add(block.len(), Ordering::SeqCst);
                    }
                }
                streaming.fetch_sub(1, Ordering::SeqCst);
            }))
        })
    };
    // client_io bounds how long a client may leave a response unread.
    let lbd = Lbd::spawn(&toml(backend.addr, "", "client_io = \"1s\""));
    rate(lbd.addr, 50);
    let rss0 = lbd.rss_kib();
    let mut stalled: Vec<Client> = (0..READERS)
        .map(|_| {
            let mut c = Client::connect(lbd.addr);
            c.send(b"GET /big HTTP/1.1\r\nHost: a\r\n\r\n");
            c
        })
        .collect();
    assert!(wait_until(IO_TIMEOUT, || streaming.load(Ordering::SeqCst) == READERS));
    let during = rate(lbd.addr, 100);
    // Until lbd gives up on the stalled clients and closes their upstreams, the backends
    // push as much as they can; lbd's memory must not follow.
    let mut peak = rss0;
    assert!(
        wait_until(IO_TIMEOUT, || {
            peak = peak.max(lbd.rss_kib());
            streaming.load(Ordering::SeqCst) == 0
        }),
        "stalled clients were never closed"
    );
    let pushed = written.load(Ordering::SeqCst);
    eprintln!(
        "never-reading clients: {READERS} responses of {} MiB unread; backends pushed {} KiB \
         in all; lbd RSS {rss0} KiB -> peak {peak} KiB; normal client {during:.0} req/s",
        LEN >> 20,
        pushed >> 10
    );
    assert!(
        peak < rss0 + 24 * 1024,
        "RSS grew from {rss0} KiB to {peak} KiB"
    );
    // Each stalled client sees its response cut short, not completed.
    for c in &mut stalled {
        let mut got = Vec::new();
        let _ = c.reader.read_to_end(&mut got);
        assert!(got.len() < LEN, "a stalled client got the whole response");
    }
    assert_eq!(Client::connect(lbd.addr).get("/").text(), "ok");
}

#[test]
fn thousands_of_idle_keep_alive_connections() {
    let idle_count = connection_budget(2000);
    let backend = TestBackend::named("ok");
    let lbd = Lbd::spawn(&toml(backend.addr, "", ""));
    rate(lbd.addr, 50);
    let rss0 = lbd.rss_kib();
    let mut idle: Vec<Client> = (0..idle_count)
        .map(|_| {
            let mut c = Client::connect(lbd.addr);
            assert_eq!(c.get("/").status, 200);
            c
        })
        .collect();
    let rss1 = lbd.rss_kib();
    let per_connection = rss1.saturating_sub(rss0) * 1024 / idle_count as u64;
    let during = rate(lbd.addr, 200);
    eprintln!(
        "idle keep-alive: {idle_count} connections; lbd RSS {rss0} KiB -> {rss1} KiB \
         ({per_connection} bytes each); normal client {during:.0} req/s"
    );
    // An idle connection holds no buffers (four would be 64 KiB).
    assert!(
        per_connection < 8 * 1024,
        "{per_connection} bytes per idle connection"
    );
    // They are still usable.
    for c in idle.iter_mut().step_by(20) {
        assert_eq!(c.get("/").text(), "ok");
    }
}

#[test]
fn connection_flood_past_max_connections_pauses_accept() {
    const MAX: usize = 40;
    let backend = TestBackend::named("ok");
    let mut cfg = config(&[backend.addr]);
    cfg.server.max_connections = MAX;
    let server = start(cfg);
    let addr = server.local_addr();
    let shared = server.shared();
    let open = || shared.open_connections.load(Ordering::Relaxed);
    let hogs: Vec<TcpStream> = (0..MAX).map(|_| connect(addr)).collect();
    assert!(wait_until(IO_TIMEOUT, || open() == MAX));
    // The flood: the kernel completes these handshakes, lbd must not take them.
    let flood: Vec<TcpStream> = (0..20).map(|_| connect(addr)).collect();
    let mut waiting = Client::connect(addr);
    waiting.send(b"GET / HTTP/1.1\r\nHost: a\r\n\r\n");
    assert!(
        !wait_until(Duration::from_millis(300), || open() > MAX),
        "more than max_connections sessions"
    );
    // Slots free up: the queued connections are accepted and served.
    drop(hogs);
    let r = waiting.response(false);
    assert_eq!(r.status, 200);
    for s in flood.into_iter().step_by(4) {
        assert_eq!(client_from(s).get("/").text(), "ok");
    }
    assert!(open() <= MAX);
}

#[test]
fn running_out_of_descriptors_does_not_spin_the_accept_loop() {
    const NOFILE: u64 = 64;
    let backend = TestBackend::named("ok");
    // Fast probes that would need ages to bring a backend back: a probe that failed for
    // lack of a local descriptor must not count against the backend.
    let config = toml(backend.addr, "", "upstream_idle = \"1ms\"").replace(
        "interval = \"3600s\"",
        "interval = \"50ms\"\ntimeout = \"50ms\"\nfall = 2\nrise = 10000",
    );
    let lbd = Lbd::spawn_with(&config, |cmd| {
        // SAFETY: only setrlimit runs between fork and exec (async-signal-safe).
        unsafe {
            cmd.pre_exec(|| {
                let limit = libc::rlimit {
                    rlim_cur: NOFILE,
                    rlim_max: NOFILE,
                };
                if libc::setrlimit(libc::RLIMIT_NOFILE, &limit) != 0 {
                    return Err(std::io::Error::last_os_error());
                }
                Ok(())
            });
        }
    });
    let pid = lbd.child.id();
    // One connection lbd has surely accepted (it was answered; its upstream leaves the
    // pool at once) ...
    let mut first = Client::connect(lbd.addr);
    assert_eq!(first.get("/").text(), "ok");
    // ... then idle connections until lbd runs out of descriptors; more wait in the
    // backlog.
    let hogs: Vec<TcpStream> = (0..2 * NOFILE).map(|_| connect(lbd.addr)).collect();
    assert!(
        wait_until(IO_TIMEOUT, || open_fds(pid) as u64 >= NOFILE - 2),
        "lbd has {} descriptors",
        open_fds(pid)
    );
    let mut waiting = Client::connect(lbd.addr);
    waiting.send(b"GET / HTTP/1.1\r\nHost: a\r\n\r\n");
    // A measurement window, not a synchronisation: accept keeps failing with EMFILE all
    // along. A spinning accept loop burns a whole core; a paused one next to nothing.
    let window = Duration::from_secs(1);
    let cpu0 = cpu_seconds(pid);
    thread::sleep(window);
    let cpu = cpu_seconds(pid) - cpu0;
    eprintln!(
        "EMFILE: RLIMIT_NOFILE {NOFILE}, {} descriptors open; lbd CPU {cpu:.2} s over {:.1} s",
        open_fds(pid),
        window.as_secs_f64()
    );
    assert!(
        cpu < 0.3 * window.as_secs_f64(),
        "accept loop spins: {cpu:.2} s CPU"
    );
    // A request on an accepted connection cannot get an upstream socket: lbd answers
    // 503, and does not blame the backend (regression: it was marked down, so every
    // request failed until the next health round).
    assert_eq!(first.get("/").status, 503);
    // Descriptors come back: the waiting client is accepted and served.
    drop(hogs);
    drop(first);
    let r = waiting.response(false);
    assert_eq!(r.status, 200);
    assert_eq!(Client::connect(lbd.addr).get("/").text(), "ok");
}
