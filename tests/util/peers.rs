//! Real third-party peers for the tests that need them: nginx and HAProxy (Debian
//! packages), started from a config written into a scratch directory, stopped on drop.
//! When a tool is missing the test is skipped, unless `LBD_REQUIRE_PEERS` is set (CI
//! installs both and sets it), which turns a missing tool into a failure.

use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use super::wait_until;

/// A running nginx or HAProxy.
pub struct Peer {
    child: Child,
    dir: PathBuf,
}

impl Drop for Peer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// Whether `tool` can run here; panics when it cannot but `LBD_REQUIRE_PEERS` is set.
pub fn available(tool: &str) -> bool {
    let ok = Command::new(tool)
        .arg("-v")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok();
    if !ok {
        assert!(
            std::env::var_os("LBD_REQUIRE_PEERS").is_none(),
            "{tool} is required (LBD_REQUIRE_PEERS)"
        );
        eprintln!("skipping: {tool} is not installed");
    }
    ok
}

/// A free port on 127.0.0.1 (bound, then released).
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn scratch(name: &str) -> PathBuf {
    static N: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
    let n = N.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
    let dir = std::env::temp_dir().join(format!("lbd-{name}-{}-{n}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

fn wait_listening(addr: SocketAddr, child: &mut Child, what: &str) {
    let up = wait_until(Duration::from_secs(10), || {
        TcpStream::connect(addr).is_ok() || matches!(child.try_wait(), Ok(Some(_)))
    });
    assert!(
        up && matches!(child.try_wait(), Ok(None)),
        "{what} did not start on {addr}"
    );
}

/// nginx (one process, in the foreground) with `http` holding the `server { ... }` blocks;
/// `listen` is one of the addresses it serves, waited for.
pub fn nginx(http: &str, listen: SocketAddr) -> Peer {
    let dir = scratch("nginx");
    let conf = format!(
        "daemon off;\nmaster_process off;\nworker_processes 1;\npid {d}/nginx.pid;\n\
         error_log {d}/error.log;\nevents {{ worker_connections 256; }}\n\
         http {{\n access_log off;\n client_body_temp_path {d}/body;\n\
         proxy_temp_path {d}/proxy;\n fastcgi_temp_path {d}/fcgi;\n uwsgi_temp_path {d}/uwsgi;\n\
         scgi_temp_path {d}/scgi;\n{http}\n}}\n",
        d = dir.display()
    );
    std::fs::write(dir.join("nginx.conf"), conf).unwrap();
    let mut child = Command::new("nginx")
        .arg("-p")
        .arg(&dir)
        .arg("-c")
        .arg(dir.join("nginx.conf"))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    wait_listening(listen, &mut child, "nginx");
    Peer { child, dir }
}

/// HAProxy (in the foreground) with `config` (its `global`/`defaults` are added);
/// `listen` is one of its frontends, waited for.
pub fn haproxy(config: &str, listen: SocketAddr) -> Peer {
    let dir = scratch("haproxy");
    let conf = format!(
        "global\n  maxconn 1000\ndefaults\n  timeout connect 5s\n  timeout client 30s\n  \
         timeout server 30s\n{config}\n"
    );
    std::fs::write(dir.join("haproxy.cfg"), conf).unwrap();
    let mut child = Command::new("haproxy")
        .arg("-db")
        .arg("-f")
        .arg(dir.join("haproxy.cfg"))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    wait_listening(listen, &mut child, "haproxy");
    Peer { child, dir }
}

/// Connects to `to` from the loopback address `from` (127.0.0.x), so a test can tell
/// which client a peer or lbd saw.
pub fn connect_from(from: [u8; 4], to: SocketAddr) -> TcpStream {
    let socket = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None).unwrap();
    let local = SocketAddr::from((from, 0));
    socket.bind(&local.into()).unwrap();
    socket.connect(&to.into()).unwrap();
    let stream: TcpStream = socket.into();
    stream.set_read_timeout(Some(super::IO_TIMEOUT)).unwrap();
    stream
}
