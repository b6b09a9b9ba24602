//! The `lbd` binary itself: command line, config checking, signals, graceful shutdown.

use std::io::{BufRead, BufReader, Write};
use std::net::{SocketAddr, TcpStream};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

use crate::util::*;

const BIN: &str = env!("CARGO_BIN_EXE_lbd");

/// A running `lbd` child process.
pub struct Lbd {
    pub child: Child,
    pub addr: SocketAddr,
    /// The TLS listener's address, when the config has `[tls]` (read by the tls tests
    /// only, which a build without the feature leaves out).
    #[cfg_attr(not(feature = "tls"), allow(dead_code))]
    pub tls_addr: Option<SocketAddr>,
    _dir: TempDir,
}

/// A scratch directory removed on drop.
pub struct TempDir(pub std::path::PathBuf);

impl TempDir {
    pub fn new() -> TempDir {
        static N: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
        let n = N.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        let dir = std::env::temp_dir().join(format!("lbd-test-{}-{n}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        TempDir(dir)
    }

    pub fn write(&self, name: &str, text: &str) -> std::path::PathBuf {
        let path = self.0.join(name);
        std::fs::File::create(&path)
            .unwrap()
            .write_all(text.as_bytes())
            .unwrap();
        path
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

impl Lbd {
    /// Starts `lbd CONFIG` and waits for its "listening" log line.
    pub fn spawn(config: &str) -> Lbd {
        Self::spawn_with(config, |_| {})
    }

    /// [`Lbd::spawn`], with `prepare` adjusting the command first (e.g. resource limits).
    pub fn spawn_with(config: &str, prepare: impl FnOnce(&mut Command)) -> Lbd {
        let dir = TempDir::new();
        let path = dir.write("lbd.toml", config);
        let mut command = Command::new(BIN);
        command
            .arg(&path)
            .env("RUST_LOG", "info")
            .stdout(Stdio::null())
            .stderr(Stdio::piped());
        prepare(&mut command);
        let mut child = command.spawn().unwrap();
        let stderr = child.stderr.take().unwrap();
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                for (key, tls) in [("listening addr=", false), ("listening tls addr=", true)] {
                    if let Some(rest) = line.split(key).nth(1) {
                        let addr = rest.split_whitespace().next().unwrap().to_string();
                        let _ = tx.send((tls, addr));
                    }
                }
            }
        });
        let next = || {
            let (tls, addr) = rx
                .recv_timeout(Duration::from_secs(20))
                .expect("lbd logs its address");
            (tls, addr.parse::<SocketAddr>().unwrap())
        };
        let (_, addr) = next();
        let tls_addr = config.contains("[tls]").then(|| next().1);
        Lbd {
            child,
            addr,
            tls_addr,
            _dir: dir,
        }
    }

    /// Resident set size in KiB.
    pub fn rss_kib(&self) -> u64 {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.child.id()))
            .unwrap_or_default();
        status
            .lines()
            .find_map(|l| l.strip_prefix("VmRSS:"))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
            .unwrap_or(0)
    }

    pub fn signal(&self, signal: i32) {
        unsafe {
            libc::kill(self.child.id() as i32, signal);
        }
    }

    /// Waits for the process to exit; returns its exit code.
    pub fn wait_exit(&mut self, within: Duration) -> Option<i32> {
        let mut code = None;
        wait_until(within, || match self.child.try_wait() {
            Ok(Some(status)) => {
                code = status.code();
                true
            }
            _ => false,
        });
        code
    }
}

impl Drop for Lbd {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn run(args: &[&str]) -> (i32, String, String) {
    let out = Command::new(BIN).args(args).output().unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn version_help_and_bad_arguments() {
    let (code, out, _) = run(&["--version"]);
    assert_eq!(
        (code, out.trim()),
        (0, format!("lbd {}", env!("CARGO_PKG_VERSION")).as_str())
    );
    let (code, out, _) = run(&["--help"]);
    assert_eq!(code, 0);
    assert!(out.contains("--check"));
    let (code, _, err) = run(&["--nope"]);
    assert_ne!(code, 0);
    assert!(err.contains("usage"));
}

#[test]
fn check_reports_ok_or_the_key() {
    let dir = TempDir::new();
    let good = dir.write(
        "good.toml",
        "[server]\nlisten = \"127.0.0.1:0\"\n[[backend]]\naddress = \"127.0.0.1:9\"\n",
    );
    let (code, out, _) = run(&["--check", good.to_str().unwrap()]);
    assert_eq!((code, out.trim()), (0, "config ok"));
    let bad = dir.write(
        "bad.toml",
        "[server]\nlisten = \"127.0.0.1:0\"\n[timeouts]\nconect = \"2s\"\n[[backend]]\naddress = \"127.0.0.1:9\"\n",
    );
    let (code, _, err) = run(&["--check", bad.to_str().unwrap()]);
    assert_eq!(code, 1);
    assert!(err.contains("conect") && err.contains("line 4"), "{err}");
    let (code, _, err) = run(&["--check", "/nonexistent/lbd.toml"]);
    assert_eq!(code, 1);
    assert!(err.contains("cannot read"), "{err}");
}

#[test]
fn sigterm_lets_an_in_flight_response_finish() {
    let backend = TestBackend::start(|req| {
        if req.target == "/slow" {
            Reply::Custom(Box::new(|s: &mut TcpStream| {
                let _ = s.write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 9\r\n\r\nslow");
                std::thread::sleep(Duration::from_millis(700));
                let _ = s.write_all(b" done");
            }))
        } else {
            Reply::text("ok")
        }
    });
    let mut lbd = Lbd::spawn(&format!(
        "[server]\nlisten = \"127.0.0.1:0\"\nworkers = 2\n[[backend]]\naddress = \"{}\"\n",
        backend.addr
    ));
    let mut idle = Client::connect(lbd.addr);
    assert_eq!(idle.get("/").text(), "ok");
    let mut c = Client::connect(lbd.addr);
    c.send(b"GET /slow HTTP/1.1\r\nHost: t\r\n\r\n");
    assert!(wait_until(Duration::from_secs(10), || backend
        .request_count()
        == 2));
    lbd.signal(libc::SIGTERM);
    // The idle keep-alive connection is closed; the listener stops accepting.
    assert!(idle.is_closed_by_peer());
    assert!(wait_until(Duration::from_secs(10), || TcpStream::connect(
        lbd.addr
    )
    .is_err()));
    // The in-flight response completes, then the connection closes.
    let r = c.response(false);
    assert_eq!(r.text(), "slow done");
    assert!(c.is_closed_by_peer());
    assert_eq!(lbd.wait_exit(Duration::from_secs(10)), Some(0));
}

#[test]
fn library_shutdown_drains_then_returns() {
    let backend = TestBackend::named("ok");
    let mut cfg = config(&[backend.addr]);
    // Its own loopback address: a port freed here cannot be taken by another test's
    // listener on 127.0.0.1 before the check below.
    cfg.server.listen = "127.0.0.2:0".parse().unwrap();
    let server = start(cfg);
    let addr = server.local_addr();
    assert_eq!(Client::connect(addr).get("/").text(), "ok");
    server.stop();
    assert!(TcpStream::connect(addr).is_err());
}

/// `lbd --demo` prints its admin URL and serves the status page and `/metrics` there.
/// It binds the fixed demo ports (8080-8082, 9090): busy ports fail this test.
#[test]
fn demo_serves_the_admin_page() {
    let mut child = Command::new(BIN)
        .arg("--demo")
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let stdout = child.stdout.take().unwrap();
    // Killed and reaped on drop, also when an assertion fails.
    let _lbd = Lbd {
        child,
        addr: ([127, 0, 0, 1], 8080).into(),
        tls_addr: None,
        _dir: TempDir::new(),
    };
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            if line.contains("admin page") {
                let _ = tx.send(line);
            }
        }
    });
    let line = rx
        .recv_timeout(Duration::from_secs(20))
        .expect("the demo prints its admin URL");
    assert!(
        line.contains("http://127.0.0.1:9090/") && line.contains("/metrics"),
        "{line}"
    );
    let admin: SocketAddr = ([127, 0, 0, 1], 9090).into();
    assert!(
        wait_until(Duration::from_secs(20), || TcpStream::connect(admin)
            .is_ok()),
        "the admin listener does not accept"
    );
    let (status, page) = crate::ops::admin(admin, "GET", "/");
    assert_eq!(status, 200);
    for name in ["<td>127.0.0.1:8081</td>", "<td>127.0.0.1:8082</td>"] {
        assert!(page.contains(name), "missing {name} in\n{page}");
    }
    let (status, metrics) = crate::ops::admin(admin, "GET", "/metrics");
    assert_eq!(status, 200);
    assert!(metrics.contains("lbd_build_info{version="), "{metrics}");
}
