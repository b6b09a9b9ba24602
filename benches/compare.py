#!/usr/bin/env python3
"""lbd against nginx, HAProxy and a tokio/hyper proxy, on one machine, in one run.

Started by `bash benches/compare.sh` (which installs the tools and passes its arguments
here). Builds lbd and the hyper proxy in release mode, starts two nginx backends, then
for every round starts each proxy in turn and drives it with wrk through every scenario.
Afterwards: syscalls per request (strace -c), user-space instructions per request
(callgrind), and RSS per idle keep-alive connection. Writes the figures between the
`compare` markers of docs/benchmarks.md and the chart docs/benchmarks-proxies.svg; raw
results go to target/bench-compare/results.json.

With --tls (issue 11) it runs only the TLS comparison instead: every proxy terminates TLS
with one worker and the same ECDSA P-256 certificate (made for the run), pinned as below,
through the scenarios tls-ka-c64 (keep-alive over https), tls-close-c64 (`Connection:
close`: a new connection and a full handshake per request) and tls-idle (RSS per idle TLS
connection), and rewrites the `tls` markers of docs/benchmarks.md; raw results go to
target/bench-compare/results-tls.json. wrk (OpenSSL) offers each new connection the
session of the previous one (SSL_clear keeps it), so a server that allows resumption
would resume nearly every tls-close handshake; the run preloads a small shim into wrk
that drops the session, checks on a probe nginx that no handshake was resumed, and stops
if one was (--tls-resumption measures with wrk as it is).

With --tunnel (issue 12) it runs only the tunnel comparison instead: WebSocket traffic
through lbd, nginx and HAProxy, each with one worker, to the same WebSocket server
(benches/ws_peer.rs, tungstenite), pinned as below: the proxy alone on CPU 0, the
WebSocket client and server on CPU 1. Scenarios move 64 KiB binary messages one way (up:
client to server, down: server to client) over 1 or 8 connections; figures are MiB/s
and the proxy's CPU time per MiB. Rewrites the `tunnel` markers of docs/benchmarks.md;
raw results go to target/bench-compare/results-tunnel.json.

Fairness on a 2-core machine: in the headline (1 thread) group the proxy and the backends
run on CPU 0 and wrk on CPU 1 (taskset), so CPU 0 is the bottleneck and a proxy's
efficiency decides its throughput. Proxies alternate within each round (A B C A B C ...);
every figure is reported as the median over rounds and, per round, as a ratio to nginx
in the same round. CPU time per request (utime + stime of the proxy's processes over the
measured window / requests) survives noise from other work on the machine.
"""

import argparse
import datetime
import http.client
import json
import math
import os
import platform
import re
import resource
import selectors
import shutil
import signal
import socket
import ssl
import statistics
import subprocess
import sys
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
HOST = "127.0.0.1"
PROXY_PORT = 18080
BACKEND_PORTS = (18081, 18082)
# HAProxy wants 2 descriptors per connection up front (maxsock = 2 × maxconn + 14) and
# refuses to start above the hard `ulimit -n`; 9900 fits the common 20000.
HAPROXY_MAXCONN = 9900
BODY_SMALL = "Hello, world!"  # 13 bytes
BODY_LARGE_BYTES = 64 * 1024
CLK_TCK = os.sysconf("SC_CLK_TCK")

# name, wrk connections, extra headers, path
SCENARIOS = [
    ("ka-c8", 8, [], "/"),
    ("ka-c64", 64, [], "/"),
    ("ka-c256", 256, [], "/"),
    ("close-c64", 64, ["Connection: close"], "/"),
    ("64k-c64", 64, [], "/64k"),
]
SCENARIO_TEXT = {
    "ka-c8": "keep-alive, 8 connections",
    "ka-c64": "keep-alive, 64 connections",
    "ka-c256": "keep-alive, 256 connections",
    "close-c64": "`Connection: close`, 64 connections",
    "64k-c64": "64 KiB responses, keep-alive, 64 connections",
}
# TLS (--tls): the proxies listen for TLS on TLS_PORT (lbd keeps its required plain
# listener on PROXY_PORT, unused); the backends stay plain HTTP. TLS_PROBE_PORT is the
# resumption probe's own nginx.
TLS_PORT = 18443
TLS_PROBE_PORT = 18444
# The name in wrk's https URLs, and so its SNI (OpenSSL sends the URL's host, an IP
# literal included, which rustls logs as illegal once per handshake). It must resolve to
# HOST; wrk skips addresses that refuse the connection (::1).
TLS_NAME = "localhost"
TLS_SCENARIOS = [
    ("tls-ka-c64", 64, [], "/"),
    ("tls-close-c64", 64, ["Connection: close"], "/"),
]
TLS_IDLE = "tls-idle"
TLS_SCENARIO_TEXT = {
    "tls-ka-c64": "keep-alive over TLS, 64 connections (64 handshakes, then requests only)",
    "tls-close-c64": "`Connection: close` over TLS, 64 connections: every request is a new "
    "TCP connection and a full handshake, so req/s = handshakes/s",
    "tls-idle": "RSS per idle TLS connection (handshake done, one request served)",
}
# Preloaded into wrk: OpenSSL's SSL_clear keeps the SSL's session, and wrk reuses one SSL
# per connection slot (ssl_close: SSL_shutdown + SSL_clear), so each reconnect would offer
# the previous session. Dropping it first makes every handshake a full one. Symbols are
# looked up at call time, so programs without libssl (taskset) load it harmlessly.
NO_SESSION_SHIM_C = r"""
#define _GNU_SOURCE
#include <dlfcn.h>
#include <stddef.h>

int SSL_clear(void *ssl) {
    static int (*real_clear)(void *);
    static int (*set_session)(void *, void *);
    if (!real_clear) {
        real_clear = (int (*)(void *))dlsym(RTLD_NEXT, "SSL_clear");
        set_session = (int (*)(void *, void *))dlsym(RTLD_DEFAULT, "SSL_set_session");
    }
    if (set_session)
        set_session(ssl, NULL);
    return real_clear(ssl);
}
"""
# Tunnels (--tunnel): each proxy (one worker) in front of one benches/ws_peer.rs server
# on BACKEND_PORTS[0]; the client sends or receives TUNNEL_MESSAGE-byte binary messages.
# The hyper proxy does not relay upgrades, so it is not in this comparison.
TUNNEL_KINDS = ["lbd", "nginx", "haproxy"]
TUNNEL_MESSAGE = 64 * 1024
# name, connections, direction
TUNNEL_SCENARIOS = [
    ("ws-up-c1", 1, "up"),
    ("ws-down-c1", 1, "down"),
    ("ws-up-c8", 8, "up"),
    ("ws-down-c8", 8, "down"),
]
TUNNEL_SCENARIO_TEXT = {
    "ws-up-c1": "one WebSocket, 64 KiB messages client → server",
    "ws-down-c1": "one WebSocket, 64 KiB messages server → client",
    "ws-up-c8": "8 WebSockets at once, client → server",
    "ws-down-c8": "8 WebSockets at once, server → client",
}
PROXY_KINDS = ["lbd", "nginx", "haproxy", "hyper"]
COLORS = {
    "lbd": "#d9480f",
    "nginx": "#2b8a3e",
    "haproxy": "#1864ab",
    "hyper": "#862e9c",
    "direct": "#868e96",
}

# wrk keeps running for its whole -d even after a thread stops, so the script also leaves
# a marker file; the driver then interrupts wrk, which prints its statistics.
STOP_LUA = """
local n = 0
local limit = tonumber(os.getenv("LBD_BENCH_REQUESTS") or "10000")
local marker = os.getenv("LBD_BENCH_MARKER")
function response(status, headers, body)
  n = n + 1
  if n == limit then
    if marker then
      local f = io.open(marker, "w")
      f:write(tostring(n))
      f:close()
    end
    wrk.thread:stop()
  end
end
"""


def log(msg):
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


def run(cmd, **kw):
    return subprocess.run(cmd, check=True, text=True, capture_output=True, **kw).stdout


def raise_nofile():
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    want = hard if hard == resource.RLIM_INFINITY else hard
    resource.setrlimit(resource.RLIMIT_NOFILE, (want, hard))
    return resource.getrlimit(resource.RLIMIT_NOFILE)[0]


# ---------------------------------------------------------------------------------------
# Processes


def all_pids(root_pid):
    """root_pid and its descendants (nginx workers); threads are counted by /proc/PID."""
    children = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            stat = Path(f"/proc/{entry}/stat").read_text()
        except OSError:
            continue
        ppid = int(stat.rsplit(")", 1)[1].split()[1])
        children.setdefault(ppid, []).append(int(entry))
    out, todo = [], [root_pid]
    while todo:
        pid = todo.pop()
        out.append(pid)
        todo.extend(children.get(pid, []))
    return out


def cpu_ticks(pids):
    """(utime, stime) summed over processes; /proc/PID/stat counts all their threads."""
    user = system = 0
    for pid in pids:
        try:
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        user += int(fields[11])
        system += int(fields[12])
    return user, system


def rss_kib(pids):
    total = 0
    for pid in pids:
        try:
            for line in Path(f"/proc/{pid}/status").read_text().splitlines():
                if line.startswith("VmRSS:"):
                    total += int(line.split()[1])
        except OSError:
            continue
    return total


def cpu_times():
    """Per-CPU (busy, total) jiffies from /proc/stat."""
    out = {}
    for line in Path("/proc/stat").read_text().splitlines():
        m = re.match(r"cpu(\d+) (.*)", line)
        if m:
            v = [int(x) for x in m.group(2).split()]
            idle = v[3] + v[4]
            out[int(m.group(1))] = (sum(v[:8]) - idle, sum(v[:8]))
    return out


def busy_percent(before, after):
    out = {}
    for cpu in after:
        db = after[cpu][0] - before[cpu][0]
        dt = after[cpu][1] - before[cpu][1]
        out[cpu] = round(100.0 * db / dt, 1) if dt else 0.0
    return out


class Proc:
    """A process this script started, in its own session so it can be stopped whole."""

    def __init__(self, name, cmd, work, cpus=None, env=None):
        self.name = name
        prefix = ["taskset", "-c", cpus] if cpus else []
        self.log_path = work / f"{name}.log"
        self.log = open(self.log_path, "w")
        self.popen = subprocess.Popen(
            prefix + cmd,
            stdout=self.log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
            env=env,
            cwd=work,
        )

    @property
    def pid(self):
        return self.popen.pid

    def pids(self):
        return all_pids(self.pid)

    def stop(self, sig=signal.SIGTERM, wait=10):
        if self.popen.poll() is None:
            try:
                os.killpg(self.pid, sig)
            except ProcessLookupError:
                pass
            try:
                self.popen.wait(wait)
            except subprocess.TimeoutExpired:
                os.killpg(self.pid, signal.SIGKILL)
                self.popen.wait()
        self.log.close()


def ensure_free(port):
    """Fails if something listens on `port`: with SO_REUSEPORT a leftover listener would
    silently take a share of the connections."""
    s = socket.socket()
    s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # TIME_WAIT is fine
    try:
        s.bind((HOST, port))
    except OSError as e:
        raise RuntimeError(f"{HOST}:{port} is in use ({e}); see `ss -ltnp`") from e
    finally:
        s.close()


def client_tls_context():
    """The test certificate is self-signed: no verification, as wrk."""
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    return ctx


def wait_http(port, path="/", timeout=20.0, proc=None, tls=False):
    deadline = time.time() + timeout
    last = None
    while time.time() < deadline:
        if proc is not None and proc.popen.poll() is not None:
            raise RuntimeError(f"{proc.name} exited: see {proc.log_path}")
        try:
            if tls:
                conn = http.client.HTTPSConnection(
                    HOST, port, timeout=2, context=client_tls_context()
                )
            else:
                conn = http.client.HTTPConnection(HOST, port, timeout=2)
            conn.request("GET", path)
            resp = conn.getresponse()
            resp.read()
            conn.close()
            if resp.status == 200:
                return
            last = f"status {resp.status}"
        except OSError as e:
            last = e
        time.sleep(0.1)
    raise RuntimeError(f"port {port} not answering: {last}")


# ---------------------------------------------------------------------------------------
# Configurations


def nginx_backend_conf(work):
    (work / "www").mkdir(exist_ok=True)
    (work / "www" / "64k").write_bytes(b"x" * BODY_LARGE_BYTES)
    servers = "".join(
        f"""
    server {{
        listen {HOST}:{port} reuseport backlog=4096;
        location = /64k {{ root {work / 'www'}; }}
        location / {{ return 200 "{BODY_SMALL}"; }}
    }}"""
        for port in BACKEND_PORTS
    )
    return f"""
user root;
worker_processes 1;
pid {work}/backend-nginx.pid;
error_log {work}/backend-nginx.error.log warn;
worker_rlimit_nofile 20000;
events {{ worker_connections 16000; }}
http {{
    access_log off;
    default_type text/plain;
    sendfile on;
    tcp_nodelay on;
    keepalive_requests 1000000000;
    keepalive_timeout 300s;
    client_body_temp_path {work}/tmp-body;
    proxy_temp_path {work}/tmp-proxy;
    {servers}
}}
"""


def nginx_proxy_conf(work, workers, master=True, tls=None):
    """tls: (cert, key) paths to listen with TLS on TLS_PORT instead of PROXY_PORT.
    nginx 1.22's default ssl_protocols lack TLSv1.3, so they are set; the session cache
    (`none`: no server-side cache) and tickets (on) stay at nginx's defaults."""
    upstream = "\n".join(f"        server {HOST}:{p};" for p in BACKEND_PORTS)
    listen = f"listen {HOST}:{PROXY_PORT} reuseport backlog=4096;"
    proto = "http"
    if tls:
        listen = f"""listen {HOST}:{TLS_PORT} ssl reuseport backlog=4096;
        ssl_certificate {tls[0]};
        ssl_certificate_key {tls[1]};
        ssl_protocols TLSv1.2 TLSv1.3;"""
        proto = "https"
    return f"""
user root;
worker_processes {workers};
master_process {'on' if master else 'off'};
pid {work}/proxy-nginx.pid;
error_log {work}/proxy-nginx.error.log warn;
worker_rlimit_nofile 20000;
events {{ worker_connections 16000; }}
http {{
    access_log off;
    tcp_nodelay on;
    keepalive_requests 1000000000;
    keepalive_timeout 300s;
    client_body_temp_path {work}/tmp-body;
    proxy_temp_path {work}/tmp-proxy;
    upstream backends {{
{upstream}
        keepalive 512;
        keepalive_requests 1000000000;
        keepalive_timeout 300s;
    }}
    server {{
        {listen}
        location / {{
            proxy_pass http://backends;
            proxy_http_version 1.1;
            proxy_set_header Connection "";
            proxy_set_header Host $http_host;
            proxy_set_header X-Forwarded-For $proxy_add_x_forwarded_for;
            proxy_set_header X-Forwarded-Proto {proto};
            proxy_buffer_size 16k;
            proxy_buffers 16 16k;
            proxy_max_temp_file_size 0;
        }}
    }}
}}
"""


def haproxy_conf(threads, tls_pem=None):
    """tls_pem: certificate + key in one file, to bind with TLS on TLS_PORT instead; TLS
    session cache (tune.ssl.cachesize 20000) and tickets stay at HAProxy's defaults."""
    bind = f"bind {HOST}:{PROXY_PORT}"
    proto = "http"
    if tls_pem:
        bind = f"bind {HOST}:{TLS_PORT} ssl crt {tls_pem} alpn http/1.1"
        proto = "https"
    servers = "\n".join(
        f"    server b{i + 1} {HOST}:{p}" for i, p in enumerate(BACKEND_PORTS)
    )
    return f"""
global
    nbthread {threads}
    maxconn {HAPROXY_MAXCONN}

defaults
    mode http
    timeout connect 2s
    timeout client 60s
    timeout server 30s
    timeout http-keep-alive 60s
    option http-keep-alive
    option forwardfor
    http-reuse always

frontend fe
    {bind}
    http-request set-header X-Forwarded-Proto {proto}
    default_backend be

backend be
    balance roundrobin
{servers}
"""


def lbd_conf(workers, extra="", tls=None):
    """tls: (cert, key) paths for a [tls] listener on TLS_PORT (the plain one stays)."""
    backends = "".join(f'\n[[backend]]\naddress = "{HOST}:{p}"\n' for p in BACKEND_PORTS)
    tls_table = ""
    if tls:
        tls_table = f"""
[tls]
listen = "{HOST}:{TLS_PORT}"

[[tls.certificate]]
cert = "{tls[0]}"
key = "{tls[1]}"
"""
    return f"""
[server]
listen = "{HOST}:{PROXY_PORT}"
workers = {workers}
max_connections = 20000
{extra}
{tls_table}
{backends}"""


class Setup:
    def __init__(self, work, lbd_bin, hyper_bin, lbd_extra="", ws_peer=None):
        self.lbd_extra = lbd_extra
        self.ws_peer = ws_peer
        self.work = work
        self.lbd_bin = lbd_bin
        self.hyper_bin = hyper_bin
        self.tls_files = None
        for d in ("tmp-body", "tmp-proxy"):
            (work / d).mkdir(exist_ok=True)

    def make_certificate(self):
        """One self-signed ECDSA P-256 certificate for every proxy of the run: cert and key
        (PKCS#8) for lbd, nginx and hyper, both in one PEM for HAProxy."""
        cert, key = self.work / "tls-cert.pem", self.work / "tls-key.pem"
        run([
            "openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256",
            "-nodes", "-keyout", str(key), "-out", str(cert), "-days", "7",
            "-subj", "/CN=localhost", "-addext", "subjectAltName=DNS:localhost,IP:127.0.0.1",
        ])
        pem = self.work / "tls-haproxy.pem"
        pem.write_text(cert.read_text() + key.read_text())
        self.tls_files = (str(cert), str(key), str(pem))

    def write(self, name, text):
        path = self.work / name
        path.write_text(text)
        return str(path)

    def proxy_cmd(self, kind, threads, callgrind=False, tls=False):
        pair = self.tls_files[:2] if tls else None
        suffix = "-tls" if tls else ""
        if kind == "lbd":
            conf = self.write(
                f"lbd-{threads}{suffix}.toml", lbd_conf(threads, self.lbd_extra, tls=pair)
            )
            return [str(self.lbd_bin), conf], {"RUST_LOG": "warn"}
        if kind == "nginx":
            conf = self.write(
                f"nginx-proxy-{threads}{'-single' if callgrind else ''}{suffix}.conf",
                nginx_proxy_conf(self.work, threads, master=not callgrind, tls=pair),
            )
            return ["nginx", "-e", "stderr", "-c", conf, "-g", "daemon off;"], {}
        if kind == "haproxy":
            conf = self.write(
                f"haproxy-{threads}{suffix}.cfg",
                haproxy_conf(threads, tls_pem=self.tls_files[2] if tls else None),
            )
            return ["haproxy", "-db", "-f", conf], {}
        if kind == "hyper":
            backends = [f"{HOST}:{p}" for p in BACKEND_PORTS]
            if tls:
                cmd = [str(self.hyper_bin), "--tls", *pair, f"{HOST}:{TLS_PORT}", str(threads)]
                return cmd + backends, {}
            return [str(self.hyper_bin), f"{HOST}:{PROXY_PORT}", str(threads)] + backends, {}
        raise ValueError(kind)

    def start_proxy(self, kind, threads, cpus, callgrind_out=None, tls=False):
        cmd, extra_env = self.proxy_cmd(
            kind, threads, callgrind=callgrind_out is not None, tls=tls
        )
        if callgrind_out is not None:
            cmd = [
                "valgrind",
                "--tool=callgrind",
                f"--callgrind-out-file={callgrind_out}",
                "--instr-atstart=no",
                "--separate-threads=no",
            ] + cmd
        env = dict(os.environ, **extra_env)
        ensure_free(PROXY_PORT)
        if tls:
            ensure_free(TLS_PORT)
        proc = Proc(f"{kind}-{threads}{'-tls' if tls else ''}", cmd, self.work, cpus=cpus, env=env)
        wait_http(
            TLS_PORT if tls else PROXY_PORT,
            proc=proc,
            timeout=60 if callgrind_out else 20,
            tls=tls,
        )
        return proc

    def start_backends(self, cpus):
        conf = self.write("nginx-backend.conf", nginx_backend_conf(self.work))
        for port in BACKEND_PORTS:
            ensure_free(port)
        proc = Proc(
            "backend-nginx",
            ["nginx", "-e", "stderr", "-c", conf, "-g", "daemon off;"],
            self.work,
            cpus=cpus,
        )
        for port in BACKEND_PORTS:
            wait_http(port, proc=proc)
            wait_http(port, "/64k", proc=proc)
        return proc


# ---------------------------------------------------------------------------------------
# wrk


def to_ms(text):
    m = re.match(r"([\d.]+)(us|ms|s|m)$", text)
    value, unit = float(m.group(1)), m.group(2)
    return value * {"us": 0.001, "ms": 1.0, "s": 1000.0, "m": 60000.0}[unit]


def parse_wrk(out):
    res = {"requests": 0, "rps": 0.0, "p50_ms": None, "p99_ms": None, "errors": 0}
    m = re.search(r"(\d+) requests in", out)
    if m:
        res["requests"] = int(m.group(1))
    m = re.search(r"Requests/sec:\s+([\d.]+)", out)
    if m:
        res["rps"] = float(m.group(1))
    for pct, key in (("50", "p50_ms"), ("99", "p99_ms")):
        m = re.search(rf"^\s+{pct}%\s+(\S+)", out, re.M)
        if m:
            res[key] = to_ms(m.group(1))
    m = re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", out)
    if m:
        res["errors"] += sum(int(x) for x in m.groups())
    m = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    if m:
        res["errors"] += int(m.group(1))
    return res


def wrk_cmd(port, conns, headers, path, duration, cpus, script=None, latency=True, scheme="http"):
    cmd = ["taskset", "-c", cpus] if cpus else []
    cmd += ["wrk", "-t1", f"-c{conns}", f"-d{duration}s", "--timeout", "5s"]
    if latency:
        cmd.append("--latency")
    for h in headers:
        cmd += ["-H", h]
    if script:
        cmd += ["-s", str(script)]
    cmd.append(f"{scheme}://{TLS_NAME if scheme == 'https' else HOST}:{port}{path}")
    return cmd


def wrk_fixed(work, port, conns, requests, cpus, limit_s=300, path="/", headers=()):
    """wrk until `requests` responses arrived (one thread): returns wrk's parsed output."""
    script = work / "stop.lua"
    script.write_text(STOP_LUA)
    marker = work / "stop.marker"
    marker.unlink(missing_ok=True)
    env = dict(os.environ, LBD_BENCH_REQUESTS=str(requests), LBD_BENCH_MARKER=str(marker))
    proc = subprocess.Popen(
        wrk_cmd(port, conns, list(headers), path, limit_s, cpus, script=script, latency=False),
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
        env=env,
    )
    deadline = time.time() + limit_s
    while not marker.exists() and proc.poll() is None and time.time() < deadline:
        time.sleep(0.05)
    if proc.poll() is None:
        proc.send_signal(signal.SIGINT)
    out = proc.communicate(timeout=30)[0]
    return parse_wrk(out)


def measure(proxy_pids, backend_pids, port, scenario, args, cpus_wrk, scheme="http", env=None):
    name, conns, headers, path = scenario
    subprocess.run(
        wrk_cmd(port, conns, headers, path, args.warmup, cpus_wrk, latency=False, scheme=scheme),
        capture_output=True,
        env=env,
    )
    rss_samples = []

    def sample_rss():
        time.sleep(args.duration / 2)
        rss_samples.append(rss_kib(proxy_pids))

    sampler = threading.Thread(target=sample_rss)
    t0, c0, b0 = cpu_ticks(proxy_pids), cpu_times(), cpu_ticks(backend_pids)
    sampler.start()
    out = subprocess.run(
        wrk_cmd(port, conns, headers, path, args.duration, cpus_wrk, scheme=scheme),
        capture_output=True,
        text=True,
        env=env,
    ).stdout
    t1, c1, b1 = cpu_ticks(proxy_pids), cpu_times(), cpu_ticks(backend_pids)
    sampler.join()
    res = parse_wrk(out)
    res["scenario"] = name
    res["proxy_user_s"] = (t1[0] - t0[0]) / CLK_TCK
    res["proxy_sys_s"] = (t1[1] - t0[1]) / CLK_TCK
    res["proxy_cpu_s"] = res["proxy_user_s"] + res["proxy_sys_s"]
    res["backend_cpu_s"] = (sum(b1) - sum(b0)) / CLK_TCK
    per_req = 1e6 / res["requests"] if res["requests"] and proxy_pids else None
    res["cpu_us_per_req"] = per_req and res["proxy_cpu_s"] * per_req
    res["user_us_per_req"] = per_req and res["proxy_user_s"] * per_req
    res["sys_us_per_req"] = per_req and res["proxy_sys_s"] * per_req
    res["busy"] = busy_percent(c0, c1)
    res["rss_kib"] = rss_samples[0] if rss_samples and proxy_pids else None
    return res


# ---------------------------------------------------------------------------------------
# Phases


def throughput_phase(setup, args, threads, pinned):
    """Every proxy (and, pinned, direct) through every scenario, alternating per round."""
    cpus_srv, cpus_wrk = ("0", "1") if pinned else (None, None)
    backends = setup.start_backends(cpus_srv)
    kinds = [k for k in PROXY_KINDS if k in args.proxies]
    if pinned and "direct" in args.proxies:
        kinds.append("direct")
    results = []
    try:
        for rnd in range(args.rounds):
            for kind in kinds:
                label = f"{kind}-{threads}t"
                log(f"round {rnd + 1}/{args.rounds}: {label}")
                proc = None
                if kind == "direct":
                    pids, port = [], BACKEND_PORTS[0]
                else:
                    proc = setup.start_proxy(kind, threads, cpus_srv)
                    pids, port = proc.pids(), PROXY_PORT
                try:
                    for sc in SCENARIOS:
                        if sc[0] not in args.scenarios:
                            continue
                        r = measure(pids, backends.pids(), port, sc, args, cpus_wrk)
                        r.update(proxy=kind, threads=threads, round=rnd, pinned=pinned)
                        results.append(r)
                        log(
                            f"  {sc[0]:10} {r['rps']:9.0f} req/s  "
                            f"cpu {r['cpu_us_per_req'] or 0:6.2f} us/req  "
                            f"p99 {r['p99_ms']} ms  err {r['errors']}  busy {r['busy']}"
                        )
                finally:
                    if proc:
                        proc.stop()
    finally:
        backends.stop()
    return results


def strace_phase(setup, args, path="/", close=False):
    """Syscalls per request: strace -c -f over a fixed count of requests: keep-alive, or
    (`close`) one connection per request (`Connection: close`, the close-c64 scenario)."""
    backends = setup.start_backends("0")
    out = {}
    name = "close" if close else "64k" if path == "/64k" else "ka"
    headers = ["Connection: close"] if close else []
    try:
        for kind in [k for k in PROXY_KINDS if k in args.proxies]:
            proc = setup.start_proxy(kind, 1, "0")
            try:
                subprocess.run(
                    wrk_cmd(PROXY_PORT, 64, headers, path, 1, "1", latency=False),
                    capture_output=True,
                )
                trace = setup.work / f"strace-{name}-{kind}.txt"
                cmd = ["strace", "-c", "-f", "-o", str(trace)]
                for pid in proc.pids():
                    cmd += ["-p", str(pid)]
                tracer = subprocess.Popen(cmd, stderr=subprocess.DEVNULL)
                time.sleep(1.0)
                requests = wrk_fixed(
                    setup.work, PROXY_PORT, 64, args.requests, "1", path=path, headers=headers
                )["requests"]
                tracer.send_signal(signal.SIGINT)
                tracer.wait(30)
                calls = parse_strace(trace.read_text())
                total = sum(calls.values())
                out[kind] = {
                    "requests": requests,
                    "per_request": round(total / requests, 2) if requests else None,
                    "calls": {k: round(v / requests, 3) for k, v in calls.items()},
                }
                log(f"strace {name} {kind}: {out[kind]['per_request']} syscalls/request")
            finally:
                proc.stop()
    finally:
        backends.stop()
    return out


def parse_strace(text):
    calls = {}
    for line in text.splitlines():
        parts = line.split()
        # % time, seconds, usecs/call, calls, [errors], syscall
        if len(parts) >= 5 and re.match(r"^[\d.]+$", parts[0]) and parts[-1] != "total":
            try:
                calls[parts[-1]] = int(parts[3])
            except ValueError:
                continue
    return dict(sorted(calls.items(), key=lambda kv: -kv[1]))


def callgrind_phase(setup, args):
    """User-space instructions per keep-alive request under callgrind."""
    backends = setup.start_backends("0")
    out = {}
    kinds = [k for k in PROXY_KINDS if k in args.proxies and k in args.callgrind]
    try:
        for kind in kinds:
            cg_out = setup.work / f"callgrind-{kind}.out"
            for stale in setup.work.glob(f"callgrind-{kind}.out*"):
                stale.unlink()
            proc = setup.start_proxy(kind, 1, "0", callgrind_out=cg_out)
            try:
                # Warm the pools outside the measurement, then count a fixed run.
                subprocess.run(
                    wrk_cmd(PROXY_PORT, 64, [], "/", 1, "1", latency=False),
                    capture_output=True,
                )
                run(["callgrind_control", "--instr=on", str(proc.pid)])
                requests = wrk_fixed(
                    setup.work, PROXY_PORT, 64, args.callgrind_requests, "1"
                )["requests"]
                run(["callgrind_control", "--dump", str(proc.pid)])
            finally:
                proc.stop(signal.SIGINT if kind == "lbd" else signal.SIGTERM, wait=60)
            # The first dump (".1") is the one --dump asked for; the file without a
            # suffix is written at exit and holds the shutdown.
            dump = setup.work / f"callgrind-{kind}.out.1"
            total = callgrind_total(dump)
            top = callgrind_top(dump, 15) if dump else []
            out[kind] = {
                "requests": requests,
                "instructions": total,
                "per_request": round(total / requests) if requests else None,
                "top": [
                    (name, round(ir / requests), pct) for name, ir, pct in top if requests
                ],
                "dump": str(dump),
            }
            log(f"callgrind {kind}: {out[kind]['per_request']} instructions/request")
    finally:
        backends.stop()
    return out


def callgrind_total(path):
    """Instructions counted in one dump file."""
    try:
        text = path.read_text(errors="replace")
    except OSError:
        return 0
    m = re.search(r"^summary:\s+(\d+)", text, re.M) or re.search(r"^totals:\s+(\d+)", text, re.M)
    return int(m.group(1)) if m else 0


def callgrind_top(path, n):
    """The n functions with the most own instructions, inlined copies summed by name."""
    out = subprocess.run(
        ["callgrind_annotate", "--inclusive=no", "--auto=no", str(path)],
        capture_output=True,
        text=True,
    ).stdout
    total, by_name = 0, {}
    for line in out.splitlines():
        m = re.match(r"^\s*([\d,]+)\s+\(\s*([\d.]+)%\)\s+(.*)$", line)
        if not m:
            continue
        ir = int(m.group(1).replace(",", ""))
        if "PROGRAM TOTALS" in line:
            total = ir
            continue
        name = shorten(re.sub(r"\s*\[[^\]]*\]$", "", m.group(3)))
        by_name[name] = by_name.get(name, 0) + ir
    top = sorted(by_name.items(), key=lambda kv: -kv[1])[:n]
    return [(name, ir, 100.0 * ir / total if total else 0.0) for name, ir in top]


def shorten(name):
    name = name.split(":", 1)[1] if re.match(r"^[^ ]*\.(rs|c|S):", name) else name
    name = re.sub(r"::h[0-9a-f]{16}$", "", name)
    return name[:90]


def memory_phase(setup, args):
    """RSS per idle keep-alive client connection: RSS with N idle connections (each has
    served one request) minus RSS before, over N."""
    backends = setup.start_backends("0")
    out = {}
    try:
        for kind in [k for k in PROXY_KINDS if k in args.proxies]:
            proc = setup.start_proxy(kind, 1, "0")
            try:
                subprocess.run(
                    wrk_cmd(PROXY_PORT, 64, [], "/", 1, "1", latency=False),
                    capture_output=True,
                )
                time.sleep(0.5)
                before = rss_kib(proc.pids())
                n = args.idle
                if kind == "haproxy":
                    n = min(n, HAPROXY_MAXCONN - 100)
                socks, failed = open_idle(n, proc)
                time.sleep(1.0)
                after = rss_kib(proc.pids())
                for s in socks:
                    s.close()
                held = len(socks)
                out[kind] = {
                    "connections": held,
                    "failed": failed,
                    "rss_before_kib": before,
                    "rss_after_kib": after,
                    "per_conn_bytes": round((after - before) * 1024 / held) if held else None,
                }
                log(f"memory {kind}: {out[kind]}")
            finally:
                proc.stop()
    finally:
        backends.stop()
    return out


def open_idle(n, proc, batch=64):
    request = f"GET / HTTP/1.1\r\nHost: {HOST}:{PROXY_PORT}\r\n\r\n".encode()
    socks, failed = [], 0
    sel = selectors.DefaultSelector()
    for start in range(0, n, batch):
        pending = {}
        for _ in range(min(batch, n - start)):
            s = socket.socket()
            try:
                s.settimeout(5)
                s.connect((HOST, PROXY_PORT))
                s.sendall(request)
                s.setblocking(False)
            except OSError:
                failed += 1
                s.close()
                continue
            pending[s] = b""
            sel.register(s, selectors.EVENT_READ)
        deadline = time.time() + 10
        while pending and time.time() < deadline:
            for key, _ in sel.select(timeout=1):
                s = key.fileobj
                try:
                    data = s.recv(4096)
                except BlockingIOError:
                    continue
                except OSError:
                    data = b""
                pending[s] += data
                if not data or pending[s].endswith(BODY_SMALL.encode()):
                    sel.unregister(s)
                    if data:
                        socks.append(s)
                    else:
                        failed += 1
                        s.close()
                    del pending[s]
        for s in pending:
            sel.unregister(s)
            failed += 1
            s.close()
    sel.close()
    return socks, failed


# ---------------------------------------------------------------------------------------
# TLS (--tls)


def build_no_session_shim(work):
    src, lib = work / "wrk-no-session.c", work / "wrk-no-session.so"
    src.write_text(NO_SESSION_SHIM_C)
    run(["cc", "-shared", "-fPIC", "-O2", "-o", str(lib), str(src), "-ldl"])
    return lib


def resumption_probe(setup, shim):
    """Resumed handshakes among wrk's `Connection: close` requests to a probe nginx that
    allows resumption (tickets and a session cache) and logs $ssl_session_reused: once
    with wrk as it is, once with the shim preloaded. 1 s each, 4 connections."""
    cert, key, _ = setup.tls_files
    log_path = setup.work / "tls-probe-access.log"
    conf = setup.write(
        "nginx-tls-probe.conf",
        f"""
user root;
worker_processes 1;
pid {setup.work}/tls-probe-nginx.pid;
error_log {setup.work}/tls-probe-nginx.error.log warn;
events {{ worker_connections 1024; }}
http {{
    log_format reused '$ssl_protocol $ssl_session_reused';
    access_log {log_path} reused;
    client_body_temp_path {setup.work}/tmp-body;
    proxy_temp_path {setup.work}/tmp-proxy;
    server {{
        listen {HOST}:{TLS_PROBE_PORT} ssl;
        ssl_certificate {cert};
        ssl_certificate_key {key};
        ssl_protocols TLSv1.2 TLSv1.3;
        ssl_session_cache shared:probe:1m;
        ssl_session_tickets on;
        location / {{ return 200 "{BODY_SMALL}"; }}
    }}
}}
""",
    )
    ensure_free(TLS_PROBE_PORT)
    proc = Proc(
        "tls-probe-nginx", ["nginx", "-e", "stderr", "-c", conf, "-g", "daemon off;"], setup.work
    )
    out = {}
    try:
        wait_http(TLS_PROBE_PORT, proc=proc, tls=True)
        for label, env in (("wrk", None), ("wrk_shim", dict(os.environ, LD_PRELOAD=str(shim)))):
            log_path.write_text("")
            subprocess.run(
                wrk_cmd(TLS_PROBE_PORT, 4, ["Connection: close"], "/", 1, None,
                        latency=False, scheme="https"),
                capture_output=True,
                env=env,
            )
            lines = log_path.read_text().split("\n")
            lines = [line.split() for line in lines if line.strip()]
            out[label] = {
                "handshakes": len(lines),
                "resumed": sum(1 for v in lines if v[-1] == "r"),
                "protocols": sorted({v[0] for v in lines}),
            }
    finally:
        proc.stop()
    log(f"resumption probe: {out}")
    return out


def tls_params(port):
    """What `openssl s_client` (the library wrk uses, its defaults) negotiates."""
    proc = subprocess.run(
        ["openssl", "s_client", "-connect", f"{HOST}:{port}", "-servername", TLS_NAME, "-brief"],
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=10,
    )
    text = proc.stdout + proc.stderr
    out = {}
    for key, pattern in (
        ("protocol", r"Protocol version:\s*(\S+)"),
        ("cipher", r"Ciphersuite:\s*(\S+)"),
        ("signature", r"(?:Peer signature type|Signature type):\s*(\S+)"),
        ("group", r"(?:Server Temp Key|Negotiated TLS1\.3 group):\s*([^,\n]+)"),
    ):
        m = re.search(pattern, text)
        out[key] = m.group(1).strip() if m else None
    return out


def tls_phase(setup, args):
    """Every proxy, one worker, TLS on TLS_PORT, pinned like the headline group, through
    the TLS wrk scenarios, alternating per round; then RSS per idle TLS connection."""
    addrs = {ai[4][0] for ai in socket.getaddrinfo(TLS_NAME, TLS_PORT, type=socket.SOCK_STREAM)}
    if HOST not in addrs:
        raise SystemExit(f"{TLS_NAME} resolves to {sorted(addrs)}, not {HOST}: see /etc/hosts")
    setup.make_certificate()
    shim = build_no_session_shim(setup.work)
    probe = resumption_probe(setup, shim)
    wrk_env = None
    if not args.tls_resumption:
        if probe["wrk_shim"]["resumed"] or not probe["wrk_shim"]["handshakes"]:
            raise SystemExit(
                f"the no-session shim did not stop wrk resuming sessions ({probe}); "
                "is this wrk linked statically with OpenSSL? --tls-resumption measures as is"
            )
        wrk_env = dict(os.environ, LD_PRELOAD=str(shim))
    kinds = [k for k in PROXY_KINDS if k in args.proxies]
    scenarios = [sc for sc in TLS_SCENARIOS if sc[0] in args.scenarios]
    results, params = [], {}
    backends = setup.start_backends("0")
    try:
        for rnd in range(args.rounds if scenarios else 0):
            for kind in kinds:
                log(f"round {rnd + 1}/{args.rounds}: {kind}-1t-tls")
                proc = setup.start_proxy(kind, 1, "0", tls=True)
                try:
                    if kind not in params:
                        params[kind] = tls_params(TLS_PORT)
                        log(f"  negotiated {params[kind]}")
                    for sc in scenarios:
                        r = measure(
                            proc.pids(), backends.pids(), TLS_PORT, sc, args, "1",
                            scheme="https", env=wrk_env,
                        )
                        r.update(proxy=kind, threads=1, round=rnd, pinned=True, tls=True)
                        results.append(r)
                        log(
                            f"  {sc[0]:14} {r['rps']:9.0f} req/s  "
                            f"cpu {r['cpu_us_per_req'] or 0:6.2f} us/req  "
                            f"p99 {r['p99_ms']} ms  err {r['errors']}  busy {r['busy']}"
                        )
                finally:
                    proc.stop()
    finally:
        backends.stop()
    memory = tls_memory_phase(setup, args, kinds, params) if TLS_IDLE in args.scenarios else {}
    return {"results": results, "params": params, "probe": probe, "memory": memory}


def tls_memory_phase(setup, args, kinds, params):
    """RSS per idle TLS connection: RSS with N idle TLS connections (each completed a full
    handshake and one request) minus RSS before, over N."""
    backends = setup.start_backends("0")
    out = {}
    try:
        for kind in kinds:
            proc = setup.start_proxy(kind, 1, "0", tls=True)
            try:
                if kind not in params:
                    params[kind] = tls_params(TLS_PORT)
                subprocess.run(
                    wrk_cmd(TLS_PORT, 64, [], "/", 1, "1", latency=False, scheme="https"),
                    capture_output=True,
                )
                time.sleep(0.5)
                before = rss_kib(proc.pids())
                n = args.tls_idle
                if kind == "haproxy":
                    n = min(n, HAPROXY_MAXCONN - 100)
                socks, failed = open_idle_tls(n)
                time.sleep(1.0)
                after = rss_kib(proc.pids())
                for s in socks:
                    s.close()
                held = len(socks)
                out[kind] = {
                    "connections": held,
                    "failed": failed,
                    "rss_before_kib": before,
                    "rss_after_kib": after,
                    "per_conn_bytes": round((after - before) * 1024 / held) if held else None,
                }
                log(f"tls memory {kind}: {out[kind]}")
            finally:
                proc.stop()
    finally:
        backends.stop()
    return out


def open_idle_tls(n):
    """n TLS connections, one after another: handshake, one keep-alive request, read the
    whole response, keep the connection open. A new session each (nothing resumed)."""
    ctx = client_tls_context()
    request = f"GET / HTTP/1.1\r\nHost: {HOST}:{TLS_PORT}\r\n\r\n".encode()
    socks, failed = [], 0
    for _ in range(n):
        raw = None
        try:
            raw = socket.create_connection((HOST, TLS_PORT), timeout=5)
            s = ctx.wrap_socket(raw, server_hostname=TLS_NAME)
            s.sendall(request)
            data = b""
            while not data.endswith(BODY_SMALL.encode()):
                chunk = s.recv(4096)
                if not chunk:
                    raise OSError("closed")
                data += chunk
        except OSError:
            failed += 1
            if raw is not None:
                raw.close()
            continue
        socks.append(s)
    return socks, failed


# ---------------------------------------------------------------------------------------
# Reporting


def med(values):
    values = [v for v in values if v is not None]
    return statistics.median(values) if values else None


def summarize(results):
    """(proxy, threads, scenario) -> medians, and per-round ratios to nginx."""
    by_key = {}
    for r in results:
        by_key.setdefault((r["proxy"], r["threads"], r["scenario"]), []).append(r)
    nginx = {
        (r["threads"], r["scenario"], r["round"]): r for r in results if r["proxy"] == "nginx"
    }
    hyper = {
        (r["threads"], r["scenario"], r["round"]): r for r in results if r["proxy"] == "hyper"
    }
    summary = {}
    for (proxy, threads, sc), rows in by_key.items():

        def ratios(ref, field):
            out = []
            for r in sorted(rows, key=lambda r: r["round"]):
                base = ref.get((threads, sc, r["round"]))
                if base and base.get(field) and r.get(field) is not None:
                    out.append(r[field] / base[field])
                else:
                    out.append(None)
            return out

        s = {
            "rps": med(r["rps"] for r in rows),
            "p50_ms": med(r["p50_ms"] for r in rows),
            "p99_ms": med(r["p99_ms"] for r in rows),
            "errors": sum(r["errors"] for r in rows),
            "cpu_us": med(r["cpu_us_per_req"] for r in rows),
            "user_us": med(r.get("user_us_per_req") for r in rows),
            "sys_us": med(r.get("sys_us_per_req") for r in rows),
            "rss_kib": med(r["rss_kib"] for r in rows),
            "busy0": med(r["busy"].get(0, r["busy"].get("0")) for r in rows),
            "busy1": med(r["busy"].get(1, r["busy"].get("1")) for r in rows),
            "rps_vs_nginx_rounds": ratios(nginx, "rps"),
            "cpu_vs_nginx_rounds": ratios(nginx, "cpu_us_per_req"),
            "rps_vs_hyper_rounds": ratios(hyper, "rps"),
        }
        s["rps_vs_nginx"] = med(s["rps_vs_nginx_rounds"])
        s["cpu_vs_nginx"] = med(s["cpu_vs_nginx_rounds"])
        s["rps_vs_hyper"] = med(s["rps_vs_hyper_rounds"])
        summary[(proxy, threads, sc)] = s
    return summary


def fmt(v, spec="{:.0f}", none="–"):
    return none if v is None else spec.format(v)


def fmt_rounds(values, spec="{:.2f}"):
    return " / ".join(fmt(v, spec) for v in values)


def table(summary, threads, kinds, scenarios=SCENARIOS):
    lines = [
        "| scenario | proxy | req/s | ×nginx | p50 ms | p99 ms | errors "
        "| CPU µs/req | user + sys | ×nginx | RSS MiB | CPU0 % | CPU1 % |",
        "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for sc, *_ in scenarios:
        for kind in kinds:
            s = summary.get((kind, threads, sc))
            if not s:
                continue
            name = f"**{kind}**" if kind == "lbd" else kind
            split = "–"
            if s["user_us"] is not None and s["sys_us"] is not None:
                split = f"{s['user_us']:.1f} + {s['sys_us']:.1f}"
            lines.append(
                f"| {sc} | {name} | {fmt(s['rps'])} | {fmt(s['rps_vs_nginx'], '{:.2f}')} "
                f"| {fmt(s['p50_ms'], '{:.2f}')} | {fmt(s['p99_ms'], '{:.2f}')} "
                f"| {s['errors']} | {fmt(s['cpu_us'], '{:.1f}')} "
                f"| {split} | {fmt(s['cpu_vs_nginx'], '{:.2f}')} "
                f"| {fmt(s['rss_kib'] and s['rss_kib'] / 1024, '{:.1f}')} "
                f"| {fmt(s['busy0'])} | {fmt(s['busy1'])} |"
            )
    return "\n".join(lines)


def verdict(ok):
    if ok is None:
        return "not measured"
    return "**met**" if ok else "**not met**"


def targets(summary, strace, callgrind, strace_close=None):
    rows = []
    s = summary.get(("lbd", 1, "ka-c64"))
    if s:
        cpu = s["cpu_vs_nginx"]
        rps = s["rps_vs_nginx"]
        rows.append(
            (
                "keep-alive c64: lbd CPU µs/req ≤ 0.85 × nginx (1 thread)",
                f"{fmt(cpu, '{:.2f}')} × (rounds {fmt_rounds(s['cpu_vs_nginx_rounds'])})",
                verdict(cpu is not None and cpu <= 0.85),
            )
        )
        rows.append(
            (
                "keep-alive c64: lbd req/s ≥ nginx (1 thread)",
                f"{fmt(rps, '{:.2f}')} × (rounds {fmt_rounds(s['rps_vs_nginx_rounds'])})",
                verdict(rps is not None and rps >= 1.0),
            )
        )
    for threads in (1, 2):
        for sc, *_ in SCENARIOS:
            s = summary.get(("lbd", threads, sc))
            if not s or s["rps_vs_hyper"] is None:
                continue
            rows.append(
                (
                    f"{sc}: lbd req/s ≥ hyper ({threads} thread{'s' if threads > 1 else ''})",
                    f"{fmt(s['rps_vs_hyper'], '{:.2f}')} × "
                    f"(rounds {fmt_rounds(s['rps_vs_hyper_rounds'])})",
                    verdict(s["rps_vs_hyper"] >= 1.0),
                )
            )
    if "lbd" in strace and "nginx" in strace:
        a, b = strace["lbd"]["per_request"], strace["nginx"]["per_request"]
        rows.append(
            (
                "syscalls per keep-alive request ≤ nginx (floor 4)",
                f"lbd {a}, nginx {b}",
                verdict(a is not None and b is not None and a <= b),
            )
        )
    if "lbd" in callgrind and "nginx" in callgrind:
        a, b = callgrind["lbd"]["per_request"], callgrind["nginx"]["per_request"]
        rows.append(
            (
                "user-space instructions per request ≤ nginx",
                f"lbd {fmt(a, '{:,}')}, nginx {fmt(b, '{:,}')}",
                verdict(a is not None and b is not None and a <= b),
            )
        )
    rows += churn_targets(summary, strace_close or {}, callgrind)
    lines = ["| figure (medians of per-round ratios) | measured | |", "|---|---|---|"]
    lines += [f"| {a} | {b} | {c} |" for a, b, c in rows]
    return "\n".join(lines)


def churn_targets(summary, strace_close, callgrind):
    """Issue 14's goals: connection churn and keep-alive work."""
    rows = []
    s = summary.get(("lbd", 1, "close-c64"))
    if s:
        cpu = s["cpu_vs_nginx"]
        rows.append(
            (
                "close-c64: lbd CPU µs/req ≤ 0.85 × nginx (1 thread)",
                f"{fmt(cpu, '{:.2f}')} × (rounds {fmt_rounds(s['cpu_vs_nginx_rounds'])})",
                verdict(cpu is not None and cpu <= 0.85),
            )
        )
    if "lbd" in strace_close:
        n = strace_close["lbd"]["per_request"]
        rows.append(
            (
                "close-c64: syscalls per request ≤ 8.0",
                f"lbd {n}" + (f", nginx {strace_close['nginx']['per_request']}" if "nginx" in strace_close else ""),
                verdict(n is not None and n <= 8.0),
            )
        )
    if "lbd" in callgrind:
        n = callgrind["lbd"]["per_request"]
        rows.append(
            (
                "user-space instructions per keep-alive request ≤ 10,000",
                f"lbd {fmt(n, '{:,}')}",
                verdict(n is not None and n <= 10_000),
            )
        )
    return rows


def rounds_table(summary, threads, kinds, scenarios=SCENARIOS):
    lines = [
        "| scenario | proxy | req/s ÷ nginx, per round | CPU/req ÷ nginx, per round |",
        "|---|---|---|---|",
    ]
    for sc, *_ in scenarios:
        for kind in kinds:
            s = summary.get((kind, threads, sc))
            if not s or kind == "nginx":
                continue
            lines.append(
                f"| {sc} | {kind} | {fmt_rounds(s['rps_vs_nginx_rounds'])} "
                f"| {fmt_rounds(s['cpu_vs_nginx_rounds'])} |"
            )
    return "\n".join(lines)


def strace_table(strace):
    names = set()
    for v in strace.values():
        names.update(k for k, n in v["calls"].items() if n >= 0.05)
    names = sorted(names, key=lambda n: (-max(v["calls"].get(n, 0) for v in strace.values()), n))
    kinds = list(strace)
    lines = [
        "| syscall | " + " | ".join(kinds) + " |",
        "|---|" + "---:|" * len(kinds),
        "| **total per request** | "
        + " | ".join(f"**{strace[k]['per_request']}**" for k in kinds)
        + " |",
    ]
    for n in names:
        lines.append(
            f"| `{n}` | " + " | ".join(fmt(strace[k]["calls"].get(n), "{:.2f}") for k in kinds) + " |"
        )
    return "\n".join(lines)


def callgrind_section(callgrind):
    lines = ["| proxy | requests | instructions | per request |", "|---|---:|---:|---:|"]
    for kind, v in callgrind.items():
        lines.append(
            f"| {kind} | {v['requests']} | {v['instructions']:,} | {fmt(v['per_request'], '{:,}')} |"
        )
    for kind, v in callgrind.items():
        if not v["top"]:
            continue
        lines += [
            "",
            f"Top functions of {kind} by own instructions, per request:",
            "",
            "| function | Ir/request | share |",
            "|---|---:|---:|",
        ]
        lines += [f"| `{n}` | {ir:,} | {pct:.1f}% |" for n, ir, pct in v["top"]]
    return "\n".join(lines)


def memory_table(memory):
    lines = [
        "| proxy | idle connections | RSS before | RSS with them | per connection |",
        "|---|---:|---:|---:|---:|",
    ]
    for kind, v in memory.items():
        per = v["per_conn_bytes"]
        lines.append(
            f"| {kind} | {v['connections']} (failed {v['failed']}) "
            f"| {v['rss_before_kib'] / 1024:.1f} MiB | {v['rss_after_kib'] / 1024:.1f} MiB "
            f"| {fmt(per and per / 1024, '{:.2f}')} KiB |"
        )
    return "\n".join(lines)


def nice_step(x):
    """The smallest 1, 2, 2.5 or 5 × 10^k at least x: round axis ticks."""
    exp = 10 ** math.floor(math.log10(x))
    return next(m * exp for m in (1, 2, 2.5, 5, 10) if m * exp >= x)


def svg_chart(summary, kinds):
    """Two panels of grouped bars (1 thread, pinned): req/s and proxy CPU µs/request."""
    scen = [s[0] for s in SCENARIOS if any((k, 1, s[0]) in summary for k in kinds)]
    width, panel_h, top, left, right = 960, 300, 40, 70, 20
    height = top + 2 * (panel_h + 70) + 30
    group_w = (width - left - right) / max(len(scen), 1)
    bar_w = group_w * 0.8 / max(len(kinds), 1)
    parts = [
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" '
        f'viewBox="0 0 {width} {height}" font-family="sans-serif" font-size="12">',
        f'<rect width="{width}" height="{height}" fill="white"/>',
        f'<text x="{left}" y="22" font-size="15" font-weight="bold">lbd vs nginx, HAProxy, '
        "tokio/hyper: one worker, proxy + backends on CPU 0, wrk on CPU 1 (medians)</text>",
    ]
    panels = [("req/s (higher is better)", "rps", "{:.0f}"), ("proxy CPU µs per request (lower is better)", "cpu_us", "{:.1f}")]
    for i, (title, field, spec) in enumerate(panels):
        y0 = top + i * (panel_h + 70) + 20
        vals = [
            summary[(k, 1, s)][field]
            for k in kinds
            for s in scen
            if (k, 1, s) in summary and summary[(k, 1, s)][field]
        ]
        step = nice_step(max(vals) / 4 if vals else 1)
        vmax = step * math.ceil(max(vals) / step) if vals else 1
        parts.append(f'<text x="{left}" y="{y0 - 6}" font-weight="bold">{title}</text>')
        ticks = int(round(vmax / step))
        for t in range(ticks + 1):
            v = step * t
            y = y0 + panel_h - panel_h * v / vmax
            parts.append(
                f'<line x1="{left}" x2="{width - right}" y1="{y:.1f}" y2="{y:.1f}" '
                'stroke="#dee2e6"/>'
            )
            parts.append(
                f'<text x="{left - 6}" y="{y + 4:.1f}" text-anchor="end" fill="#495057">'
                f"{v:g}</text>"
            )
        for gi, sc in enumerate(scen):
            gx = left + gi * group_w + group_w * 0.1
            for ki, kind in enumerate(kinds):
                s = summary.get((kind, 1, sc))
                if not s or not s[field]:
                    continue
                h = panel_h * s[field] / vmax
                x = gx + ki * bar_w
                y = y0 + panel_h - h
                parts.append(
                    f'<rect x="{x:.1f}" y="{y:.1f}" width="{bar_w * 0.9:.1f}" height="{h:.1f}" '
                    f'fill="{COLORS[kind]}"><title>{kind} {sc}: {spec.format(s[field])}</title></rect>'
                )
            parts.append(
                f'<text x="{gx + group_w * 0.4:.1f}" y="{y0 + panel_h + 16}" text-anchor="middle">{sc}</text>'
            )
    lx = left
    for kind in kinds:
        parts.append(f'<rect x="{lx}" y="{height - 22}" width="12" height="12" fill="{COLORS[kind]}"/>')
        parts.append(f'<text x="{lx + 16}" y="{height - 12}">{kind}</text>')
        lx += 100
    parts.append("</svg>")
    return "\n".join(parts) + "\n"


def machine():
    model = "unknown"
    for line in run(["lscpu"]).splitlines():
        if line.startswith("Model name:"):
            model = line.split(":", 1)[1].strip()
    versions = {
        "nginx": subprocess.run(["nginx", "-v"], capture_output=True, text=True).stderr.strip(),
        "haproxy": run(["haproxy", "-v"]).splitlines()[0],
        "wrk": subprocess.run(["wrk", "-v"], capture_output=True, text=True).stdout.splitlines()[0].split(" [")[0]
        if shutil.which("wrk")
        else "wrk not installed",
        "rustc": run(["rustc", "--version"]).strip(),
    }
    rev = subprocess.run(
        ["git", "describe", "--always", "--dirty"], cwd=ROOT, capture_output=True, text=True
    ).stdout.strip()
    return {
        "commit": rev or "unknown",
        "nproc": run(["nproc"]).strip(),
        "model": model,
        "kernel": platform.release(),
        "versions": versions,
    }


def report(data, args):
    summary = summarize(data["results"])
    m = data["machine"]
    kinds1 = [k for k in PROXY_KINDS + ["direct"] if any(key[0] == k and key[1] == 1 for key in summary)]
    kinds2 = [k for k in PROXY_KINDS if any(key[0] == k and key[1] == 2 for key in summary)]
    a = data["args"]
    out = [
        "<!-- compare:begin (generated by benches/compare.py; edits here are overwritten) -->",
        "",
        f"Run: {data['date']}. Machine: {m['nproc']} CPUs ({m['model']}), Linux {m['kernel']}; "
        + ", ".join(m["versions"].values())
        + f". lbd at `{m.get('commit', 'unknown')}`.",
        "",
        f"Command: `{data['command']}` ({a['rounds']} rounds, {a['warmup']} s warm-up + "
        f"{a['duration']} s measured per scenario, `wrk -t1 --latency`, strace over "
        f"{a['requests']} requests, callgrind over {a['callgrind_requests']} requests, "
        f"{a['idle']} idle connections). Raw results: `target/bench-compare/results.json`; "
        "configurations: `target/bench-compare/*.{toml,conf,cfg}`.",
        "",
        "Scenarios: " + "; ".join(f"`{k}` {v}" for k, v in SCENARIO_TEXT.items()) + ". "
        f"Backends: one nginx worker serving `127.0.0.1:{BACKEND_PORTS[0]}` and "
        f"`:{BACKEND_PORTS[1]}` (`return 200` with a 13-byte body; `/64k` a 64 KiB file). "
        "Every proxy round-robins over both with pooled keep-alive upstream connections. "
        "`direct` is wrk against one backend: the ceiling.",
        "",
        "![req/s and CPU per request, one worker](benchmarks-proxies.svg)",
        "",
        "### The issue's figures",
        "",
        targets(
            summary,
            data.get("strace", {}),
            data.get("callgrind", {}),
            data.get("strace_close", {}),
        ),
        "",
        "### One worker: proxy and backends pinned to CPU 0, wrk to CPU 1",
        "",
        "Medians over rounds; ×nginx is the median of the per-round ratios to nginx. CPU µs/req is "
        "the proxy's own utime + stime (all its processes and threads) over the measured window "
        "divided by the requests wrk completed. CPU0 % / CPU1 % is how busy each CPU was "
        "(all processes on the machine, /proc/stat).",
        "",
        table(summary, 1, kinds1),
        "",
        "Per-round ratios to nginx (one worker):",
        "",
        rounds_table(summary, 1, kinds1),
    ]
    if kinds2:
        out += [
            "",
            "### Two workers/threads, unpinned (proxy, backends and wrk share both CPUs)",
            "",
            table(summary, 2, kinds2),
            "",
            rounds_table(summary, 2, kinds2),
        ]
    if data.get("strace"):
        out += [
            "",
            "### Syscalls per keep-alive request",
            "",
            f"`strace -c -f` attached to every process and thread of the proxy (one worker, "
            f"pinned) while wrk sends {a['requests']} keep-alive requests over 64 connections; "
            "calls ÷ requests. strace slows the proxy, so epoll batching is somewhat lower than "
            "at full speed.",
            "",
            strace_table(data["strace"]),
        ]
    if data.get("strace_64k"):
        out += [
            "",
            "The same for 64 KiB responses (`/64k`, keep-alive, 64 connections):",
            "",
            strace_table(data["strace_64k"]),
        ]
    if data.get("strace_close"):
        out += [
            "",
            "The same with a new connection per request (`Connection: close`, 64 "
            "connections: the close-c64 scenario):",
            "",
            strace_table(data["strace_close"]),
        ]
    if data.get("callgrind"):
        out += [
            "",
            "### User-space instructions per request",
            "",
            "`valgrind --tool=callgrind --instr-atstart=no`, one worker (nginx with "
            "`master_process off`), warmed up with 1 s of wrk, then `callgrind_control "
            f"--instr=on`, {a['callgrind_requests']} keep-alive requests over 64 connections, "
            "`callgrind_control --dump`. Counts user-space instructions of the proxy process "
            "including libc, not the kernel. nginx's binary is stripped, so its functions "
            "show as addresses.",
            "",
            callgrind_section(data["callgrind"]),
        ]
    if data.get("memory"):
        out += [
            "",
            "### Memory per idle keep-alive connection",
            "",
            f"One worker. {a['idle']} client connections each send one request, read the "
            "response and stay open; per connection = (RSS with them − RSS before) ÷ "
            "connections. Kernel socket buffers are not in RSS.",
            "",
            memory_table(data["memory"]),
        ]
    out += ["", "<!-- compare:end -->"]
    return "\n".join(out) + "\n", svg_chart(summary, kinds1)


def write_docs(markdown, svg):
    doc = ROOT / "docs" / "benchmarks.md"
    text = doc.read_text()
    begin = text.find("<!-- compare:begin")
    end = text.find("<!-- compare:end -->")
    if begin >= 0 and end >= 0:
        text = text[:begin] + markdown + text[end + len("<!-- compare:end -->\n"):]
    else:
        text = text.rstrip("\n") + "\n\n## proxies\n\n" + markdown
    doc.write_text(text)
    (ROOT / "docs" / "benchmarks-proxies.svg").write_text(svg)
    log(f"wrote {doc} and docs/benchmarks-proxies.svg")


def tls_versions():
    """The TLS libraries: OpenSSL as run (nginx, HAProxy, wrk, the probes) and the Rust
    crates from Cargo.lock (lbd; hyper through tokio-rustls)."""
    out = {"openssl": run(["openssl", "version"]).strip()}
    lock = (ROOT / "Cargo.lock").read_text()
    for name in ("rustls", "ring", "tokio-rustls"):
        m = re.search(rf'name = "{re.escape(name)}"\nversion = "([^"]+)"', lock)
        out[name] = f"{name} {m.group(1)}" if m else f"{name} ?"
    return out


def tls_targets(summary, memory):
    rows = []
    for sc, goal, factor in (
        ("tls-ka-c64", "tls-ka-c64: lbd req/s ≥ 1.2 × nginx", 1.2),
        ("tls-close-c64", "tls-close-c64: lbd handshakes/s ≥ nginx", 1.0),
    ):
        s = summary.get(("lbd", 1, sc))
        if not s:
            rows.append((goal, "not measured", verdict(None)))
            continue
        rps = s["rps_vs_nginx"]
        measured = (
            f"{fmt(rps, '{:.2f}')} × (rounds {fmt_rounds(s['rps_vs_nginx_rounds'])}); "
            f"CPU/req {fmt(s['cpu_vs_nginx'], '{:.2f}')} × nginx"
        )
        ok = rps is not None and rps >= factor
        nginx = summary.get(("nginx", 1, sc)) or {}
        if client_bound(s) and client_bound(nginx) and s["cpu_vs_nginx"]:
            # wrk used all of its CPU against both: req/s is the client's ceiling, not
            # the proxy's, so the proxy's capacity (requests per second of its own CPU)
            # decides.
            capacity = 1 / s["cpu_vs_nginx"]
            measured += (
                f". Client-bound: wrk at {fmt(s['busy1'])} % of CPU 1 against lbd and "
                f"{fmt(nginx['busy1'])} % against nginx, so req/s is wrk's ceiling; "
                f"capacity (handshakes per second of the proxy's own CPU) "
                f"{fmt(capacity, '{:.2f}')} × nginx"
            )
            ok = capacity >= factor
        rows.append((goal, measured, verdict(ok)))
    if memory:
        per = ", ".join(
            f"{kind} {fmt(v['per_conn_bytes'] and v['per_conn_bytes'] / 1024, '{:.2f}')}"
            for kind, v in memory.items()
        )
        rows.append(("tls-idle: RSS per idle TLS connection (KiB), no goal", per, "measured"))
    lines = ["| figure (medians of per-round ratios) | measured | |", "|---|---|---|"]
    lines += [f"| {a} | {b} | {c} |" for a, b, c in rows]
    return "\n".join(lines)


def client_bound(s):
    """wrk (alone on CPU 1) had no CPU left: the figure is the client's ceiling."""
    return bool(s) and s.get("busy1") is not None and s["busy1"] >= 95


def tls_proxy_table(summary, memory, kinds):
    """One row per proxy: the figures the issue asks for."""
    lines = [
        "| proxy | tls-ka-c64 req/s | ×nginx | CPU µs/req | tls-close-c64 handshakes/s "
        "| ×nginx | CPU µs/handshake | handshakes per CPU-second | idle TLS conn KiB |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for kind in kinds:
        ka = summary.get((kind, 1, "tls-ka-c64")) or {}
        cl = summary.get((kind, 1, "tls-close-c64")) or {}
        mem = memory.get(kind, {}).get("per_conn_bytes")
        name = f"**{kind}**" if kind == "lbd" else kind
        lines.append(
            f"| {name} | {fmt(ka.get('rps'))} | {fmt(ka.get('rps_vs_nginx'), '{:.2f}')} "
            f"| {fmt(ka.get('cpu_us'), '{:.1f}')} | {fmt(cl.get('rps'))} "
            f"| {fmt(cl.get('rps_vs_nginx'), '{:.2f}')} | {fmt(cl.get('cpu_us'), '{:.1f}')} "
            f"| {fmt(cl.get('cpu_us') and 1e6 / cl['cpu_us'])} "
            f"| {fmt(mem and mem / 1024, '{:.2f}')} |"
        )
    return "\n".join(lines)


def tls_params_table(params):
    lines = [
        "| proxy | protocol | cipher suite | key exchange | server signature |",
        "|---|---|---|---|---|",
    ]
    for kind, v in params.items():
        lines.append(
            f"| {kind} | {fmt(v.get('protocol'), '{}')} | {fmt(v.get('cipher'), '{}')} "
            f"| {fmt(v.get('group'), '{}')} | {fmt(v.get('signature'), '{}')} |"
        )
    return "\n".join(lines)


def tls_report(data):
    tls = data["tls"]
    summary = summarize(tls["results"])
    kinds = [k for k in PROXY_KINDS if k in tls["params"] or k in tls["memory"]]
    m, a = data["machine"], data["args"]
    probe = tls["probe"]
    if a.get("tls_resumption"):
        handshakes = (
            "wrk ran as it is (`--tls-resumption`): each reconnect offers the previous "
            "session, and a proxy resumes it where its defaults allow, so tls-close-c64 "
            "mixes full and resumed handshakes."
        )
    else:
        handshakes = (
            "Every tls-close-c64 handshake is a full one: wrk (OpenSSL) would offer each "
            "new connection the session of the previous one, so wrk ran with a preloaded "
            "shim that drops it (`NO_SESSION_SHIM_C` in compare.py)."
        )
    shim = probe.get("wrk_shim", {})
    plain = probe.get("wrk", {})
    out = [
        "<!-- tls:begin (generated by benches/compare.py --tls; edits here are overwritten) -->",
        "",
        f"Run: {data['date']}. Machine: {m['nproc']} CPUs ({m['model']}), Linux {m['kernel']}; "
        + ", ".join(m["versions"].values())
        + "; "
        + ", ".join(data.get("tls_versions", {}).values())
        + f". lbd at `{m.get('commit', 'unknown')}`.",
        "",
        f"Command: `{data['command']}` ({a['rounds']} rounds, {a['warmup']} s warm-up + "
        f"{a['duration']} s measured per scenario, `wrk -t1 --latency` over https, "
        f"{a['tls_idle']} idle TLS connections). Raw results: "
        "`target/bench-compare/results-tls.json`; configurations: "
        "`target/bench-compare/*-tls.{toml,conf,cfg}`.",
        "",
        "Scenarios: " + "; ".join(f"`{k}` {v}" for k, v in TLS_SCENARIO_TEXT.items()) + ". "
        + handshakes
        + f" Resumption probe (wrk, `Connection: close`, against an nginx with tickets and a "
        f"session cache): as it is, {plain.get('resumed')} of {plain.get('handshakes')} "
        f"handshakes resumed; with the shim, {shim.get('resumed')} of {shim.get('handshakes')}.",
        "",
        "Negotiated (`openssl s_client`, the library and defaults wrk uses):",
        "",
        tls_params_table(tls["params"]),
        "",
        "### The issue's figures (TLS)",
        "",
        tls_targets(summary, tls["memory"]),
        "",
        "### Per proxy (one worker, proxy and backends on CPU 0, wrk on CPU 1; medians)",
        "",
        tls_proxy_table(summary, tls["memory"], kinds),
    ]
    if tls["results"]:
        out += [
            "",
            "All figures: ×nginx is the median of the per-round ratios to nginx; CPU µs/req "
            "is the proxy's own utime + stime over the measured window ÷ requests (in "
            "tls-close-c64, one request per handshake).",
            "",
            table(summary, 1, kinds, TLS_SCENARIOS),
            "",
            rounds_table(summary, 1, kinds, TLS_SCENARIOS),
        ]
    if tls["memory"]:
        out += [
            "",
            "### Memory per idle TLS connection",
            "",
            f"One worker. {a['tls_idle']} TLS connections, one after another, each completes "
            "a full handshake, sends one request, reads the response and stays open; per "
            "connection = (RSS with them − RSS before) ÷ connections. Kernel socket buffers "
            "are not in RSS.",
            "",
            memory_table(tls["memory"]),
        ]
    out += ["", "<!-- tls:end -->"]
    return "\n".join(out) + "\n"


def write_tls_docs(markdown):
    doc = ROOT / "docs" / "benchmarks.md"
    text = doc.read_text()
    begin = text.find("<!-- tls:begin")
    end = text.find("<!-- tls:end -->")
    if begin >= 0 and end >= 0:
        text = text[:begin] + markdown + text[end + len("<!-- tls:end -->\n"):]
    else:
        text = text.rstrip("\n") + "\n\n## TLS (issue 11)\n\n" + markdown
    doc.write_text(text)
    log(f"wrote the TLS section of {doc}")


# ---------------------------------------------------------------------------------------
# Tunnels (--tunnel, issue 12)


def nginx_tunnel_conf(work):
    """WebSocket proxying as nginx documents it: HTTP/1.1 upstream, Upgrade and
    Connection passed on; proxy_buffer_size 64k (the buffer each upgraded direction
    uses; the default, one page, would handicap it against lbd's 64 KiB) and
    proxy_buffers to match (nginx insists they hold two of them)."""
    return f"""
user root;
worker_processes 1;
pid {work}/proxy-nginx.pid;
error_log {work}/proxy-nginx.error.log warn;
worker_rlimit_nofile 20000;
events {{ worker_connections 16000; }}
http {{
    access_log off;
    tcp_nodelay on;
    client_body_temp_path {work}/tmp-body;
    proxy_temp_path {work}/tmp-proxy;
    upstream ws {{
        server {HOST}:{BACKEND_PORTS[0]};
    }}
    server {{
        listen {HOST}:{PROXY_PORT} reuseport backlog=4096;
        location / {{
            proxy_pass http://ws;
            proxy_http_version 1.1;
            proxy_set_header Upgrade $http_upgrade;
            proxy_set_header Connection "upgrade";
            proxy_set_header Host $http_host;
            proxy_read_timeout 3600s;
            proxy_send_timeout 3600s;
            proxy_buffer_size 64k;
            proxy_buffers 4 64k;
        }}
    }}
}}
"""


def haproxy_tunnel_conf():
    """HTTP mode: HAProxy relays upgrades natively; `timeout tunnel` once switched."""
    return f"""
global
    nbthread 1
    maxconn {HAPROXY_MAXCONN}

defaults
    mode http
    timeout connect 2s
    timeout client 60s
    timeout server 60s
    timeout tunnel 1h

frontend fe
    bind {HOST}:{PROXY_PORT}
    default_backend be

backend be
    server ws1 {HOST}:{BACKEND_PORTS[0]}
"""


def lbd_tunnel_conf(extra=""):
    return f"""
[server]
listen = "{HOST}:{PROXY_PORT}"
workers = 1
{extra}

[[backend]]
address = "{HOST}:{BACKEND_PORTS[0]}"
"""


def ws_client_cmd(ws_peer, port, conns, seconds, direction):
    return [
        "taskset", "-c", "1", str(ws_peer), "client", f"{HOST}:{port}", str(conns),
        str(seconds), str(TUNNEL_MESSAGE), direction,
    ]


def wait_ws(ws_peer, port, proc=None, timeout=20.0):
    """Until a WebSocket opens and carries bytes through `port`."""
    deadline = time.time() + timeout
    last = None
    while time.time() < deadline:
        if proc is not None and proc.popen.poll() is not None:
            raise RuntimeError(f"{proc.name} exited: see {proc.log_path}")
        out = subprocess.run(
            ws_client_cmd(ws_peer, port, 1, 0.05, "up"), capture_output=True, text=True,
            timeout=30,
        )
        if out.returncode == 0:
            return
        last = out.stderr.strip() or out.stdout.strip()
        time.sleep(0.1)
    raise RuntimeError(f"no WebSocket through port {port}: {last}")


def start_tunnel_proxy(setup, kind, ws_peer):
    if kind == "lbd":
        cmd = [str(setup.lbd_bin), setup.write("lbd-tunnel.toml", lbd_tunnel_conf(setup.lbd_extra))]
        env = dict(os.environ, RUST_LOG="warn")
    elif kind == "nginx":
        conf = setup.write("nginx-tunnel.conf", nginx_tunnel_conf(setup.work))
        cmd, env = ["nginx", "-e", "stderr", "-c", conf, "-g", "daemon off;"], None
    elif kind == "haproxy":
        cmd, env = ["haproxy", "-db", "-f", setup.write("haproxy-tunnel.cfg", haproxy_tunnel_conf())], None
    else:
        raise ValueError(kind)
    ensure_free(PROXY_PORT)
    proc = Proc(f"{kind}-tunnel", cmd, setup.work, cpus="0", env=env)
    wait_ws(ws_peer, PROXY_PORT, proc=proc)
    return proc


def tunnel_measure(ws_peer, proxy_pids, port, scenario, args):
    name, conns, direction = scenario
    if args.warmup > 0:
        subprocess.run(
            ws_client_cmd(ws_peer, port, conns, args.warmup, direction), capture_output=True,
            timeout=args.warmup + 60,
        )
    t0, c0 = cpu_ticks(proxy_pids), cpu_times()
    out = subprocess.run(
        ws_client_cmd(ws_peer, port, conns, args.duration, direction), capture_output=True,
        text=True, timeout=args.duration + 60,
    )
    t1, c1 = cpu_ticks(proxy_pids), cpu_times()
    lines = out.stdout.strip().splitlines()
    res = json.loads(lines[-1]) if lines else {"bytes": 0, "seconds": 0, "mib_s": 0, "errors": conns}
    if out.returncode != 0:
        log(f"  ws_peer client failed: {out.stderr.strip()}")
    res["scenario"] = name
    res["proxy_user_s"] = (t1[0] - t0[0]) / CLK_TCK
    res["proxy_sys_s"] = (t1[1] - t0[1]) / CLK_TCK
    res["proxy_cpu_s"] = res["proxy_user_s"] + res["proxy_sys_s"]
    mib = res["bytes"] / (1 << 20)
    res["cpu_ms_per_mib"] = res["proxy_cpu_s"] * 1000 / mib if mib and proxy_pids else None
    res["busy"] = busy_percent(c0, c1)
    res["rss_kib"] = rss_kib(proxy_pids) if proxy_pids else None
    return res


def tunnel_phase(setup, args):
    """Every proxy, one worker on CPU 0, the ws_peer server and client on CPU 1, through
    every tunnel scenario, alternating per round."""
    kinds = [k for k in TUNNEL_KINDS if k in args.proxies]
    if "direct" in args.proxies:
        kinds.append("direct")
    scenarios = [sc for sc in TUNNEL_SCENARIOS if sc[0] in args.scenarios]
    ensure_free(BACKEND_PORTS[0])
    server = Proc(
        "ws-peer-server", [str(setup.ws_peer), "server", f"{HOST}:{BACKEND_PORTS[0]}"],
        setup.work, cpus="1",
    )
    results = []
    try:
        wait_ws(setup.ws_peer, BACKEND_PORTS[0], proc=server)
        for rnd in range(args.rounds):
            for kind in kinds:
                log(f"round {rnd + 1}/{args.rounds}: {kind}-1t-tunnel")
                proc = None
                if kind == "direct":
                    pids, port = [], BACKEND_PORTS[0]
                else:
                    proc = start_tunnel_proxy(setup, kind, setup.ws_peer)
                    pids, port = proc.pids(), PROXY_PORT
                try:
                    for sc in scenarios:
                        r = tunnel_measure(setup.ws_peer, pids, port, sc, args)
                        r.update(proxy=kind, threads=1, round=rnd, pinned=True, tunnel=True)
                        results.append(r)
                        log(
                            f"  {sc[0]:11} {r['mib_s']:8.1f} MiB/s  "
                            f"cpu {r['cpu_ms_per_mib'] or 0:6.3f} ms/MiB  "
                            f"err {r['errors']}  busy {r['busy']}"
                        )
                finally:
                    if proc:
                        proc.stop()
    finally:
        server.stop()
    return {"results": results}


def summarize_tunnel(results):
    """(proxy, scenario) -> medians, and medians of per-round ratios to nginx."""
    by_key = {}
    for r in results:
        by_key.setdefault((r["proxy"], r["scenario"]), []).append(r)
    nginx = {(r["scenario"], r["round"]): r for r in results if r["proxy"] == "nginx"}
    summary = {}
    for (proxy, sc), rows in by_key.items():

        def ratio(field):
            out = []
            for r in rows:
                base = nginx.get((sc, r["round"]))
                if base and base.get(field) and r.get(field) is not None:
                    out.append(r[field] / base[field])
            return med(out)

        summary[(proxy, sc)] = {
            "mib_s": med(r["mib_s"] for r in rows),
            "cpu_ms": med(r["cpu_ms_per_mib"] for r in rows),
            "errors": sum(r["errors"] for r in rows),
            "rss_kib": med(r["rss_kib"] for r in rows),
            "busy0": med(r["busy"].get(0, r["busy"].get("0")) for r in rows),
            "busy1": med(r["busy"].get(1, r["busy"].get("1")) for r in rows),
            "mib_vs_nginx": ratio("mib_s"),
            "cpu_vs_nginx": ratio("cpu_ms_per_mib"),
            "mib_rounds": [r["mib_s"] for r in sorted(rows, key=lambda r: r["round"])],
        }
    return summary


def tunnel_report(data):
    tunnel = data["tunnel"]
    summary = summarize_tunnel(tunnel["results"])
    kinds = [k for k in TUNNEL_KINDS + ["direct"] if any(key[0] == k for key in summary)]
    m, a = data["machine"], data["args"]
    lines = [
        "<!-- tunnel:begin (generated by benches/compare.py --tunnel; edits here are overwritten) -->",
        "",
        f"Run: {data['date']}. Machine: {m['nproc']} CPUs ({m['model']}), Linux {m['kernel']}; "
        + ", ".join(v for k, v in m["versions"].items() if k != "wrk")
        + f". lbd at `{m.get('commit', 'unknown')}`.",
        "",
        f"Command: `{data['command']}` ({a['rounds']} rounds, {a['warmup']} s warm-up + "
        f"{a['duration']} s measured per scenario, {TUNNEL_MESSAGE // 1024} KiB binary "
        "messages). Raw results: `target/bench-compare/results-tunnel.json`; configurations: "
        "`target/bench-compare/*-tunnel.{toml,conf,cfg}`.",
        "",
        "Scenarios: " + "; ".join(f"`{k}` {v}" for k, v in TUNNEL_SCENARIO_TEXT.items()) + ".",
        "",
        "| scenario | proxy | MiB/s | ×nginx | CPU ms/MiB | ×nginx | errors | RSS MiB "
        "| CPU0 % | CPU1 % | MiB/s per round |",
        "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---|",
    ]
    for sc, *_ in TUNNEL_SCENARIOS:
        for kind in kinds:
            s = summary.get((kind, sc))
            if not s:
                continue
            name = f"**{kind}**" if kind == "lbd" else kind
            lines.append(
                f"| {sc} | {name} | {fmt(s['mib_s'], '{:.0f}')} "
                f"| {fmt(s['mib_vs_nginx'], '{:.2f}')} | {fmt(s['cpu_ms'], '{:.3f}')} "
                f"| {fmt(s['cpu_vs_nginx'], '{:.2f}')} | {s['errors']} "
                f"| {fmt(s['rss_kib'] and s['rss_kib'] / 1024, '{:.1f}')} "
                f"| {fmt(s['busy0'])} | {fmt(s['busy1'])} "
                f"| {fmt_rounds(s['mib_rounds'], '{:.0f}')} |"
            )
    lines += [
        "",
        "CPU ms/MiB is the proxy's own utime + stime over the measured window ÷ MiB moved "
        "(what the client counted arriving, or what the server confirmed receiving). "
        "`direct` is the client talking to the server without a proxy: the peers' own "
        "ceiling. CPU1 near 100 % means the peers (masking, unmasking, one thread per "
        "connection) limited MiB/s; CPU ms/MiB still compares the proxies.",
        "",
        "<!-- tunnel:end -->",
    ]
    return "\n".join(lines) + "\n"


def write_tunnel_docs(markdown):
    doc = ROOT / "docs" / "benchmarks.md"
    text = doc.read_text()
    begin = text.find("<!-- tunnel:begin")
    end = text.find("<!-- tunnel:end -->")
    if begin >= 0 and end >= 0:
        text = text[:begin] + markdown + text[end + len("<!-- tunnel:end -->\n"):]
    else:
        text = text.rstrip("\n") + "\n\n## Tunnels (issue 12)\n\n" + markdown
    doc.write_text(text)
    log(f"wrote the tunnel section of {doc}")


# ---------------------------------------------------------------------------------------


def build():
    log("building lbd, the hyper proxy and the WebSocket peer (release)")
    lbd = hyper = ws_peer = None
    for cmd in (
        # The release build with symbols kept (Cargo.toml's `profiling` profile), so
        # callgrind names lbd's functions; the code is the shipped release code.
        ["cargo", "build", "--profile", "profiling", "--bin", "lbd", "--message-format=json"],
        ["cargo", "build", "--release", "--bench", "hyper_proxy", "--message-format=json"],
        ["cargo", "build", "--release", "--bench", "ws_peer", "--message-format=json"],
    ):
        proc = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True)
        if proc.returncode != 0:
            sys.stderr.write(proc.stderr)
            raise SystemExit("build failed")
        for line in proc.stdout.splitlines():
            msg = json.loads(line)
            if msg.get("reason") == "compiler-artifact" and msg.get("executable"):
                # Building a bench also builds the release `lbd` binary (for
                # CARGO_BIN_EXE_lbd); only the profiling build's counts.
                if msg["target"]["name"] == "lbd" and "profiling" in cmd:
                    lbd = Path(msg["executable"])
                elif msg["target"]["name"] == "hyper_proxy":
                    hyper = Path(msg["executable"])
                elif msg["target"]["name"] == "ws_peer":
                    ws_peer = Path(msg["executable"])
    return lbd, hyper, ws_peer


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--duration", type=int, default=5, help="measured seconds per scenario")
    p.add_argument("--warmup", type=int, default=1, help="warm-up seconds per scenario")
    p.add_argument("--requests", type=int, default=20000, help="requests under strace")
    p.add_argument("--callgrind-requests", type=int, default=10000)
    p.add_argument("--idle", type=int, default=10000, help="idle connections for RSS")
    p.add_argument("--proxies", default="lbd,nginx,haproxy,hyper,direct")
    p.add_argument(
        "--scenarios",
        default=None,
        help="comma-separated; default every plain scenario: "
        + ",".join(s[0] for s in SCENARIOS)
        + "; with --tls a subset of "
        + ",".join([s[0] for s in TLS_SCENARIOS] + [TLS_IDLE])
        + " (naming only TLS scenarios implies --tls); with --tunnel a subset of "
        + ",".join(s[0] for s in TUNNEL_SCENARIOS)
        + " (naming only those implies --tunnel)",
    )
    p.add_argument(
        "--tls",
        action="store_true",
        help="run only the TLS comparison (issue 11): one worker each, TLS scenarios, "
        "rewrites the `tls` section of docs/benchmarks.md; --phases does not apply",
    )
    p.add_argument(
        "--tls-idle", type=int, default=2000, help="idle TLS connections for RSS (tls-idle)"
    )
    p.add_argument(
        "--tunnel",
        action="store_true",
        help="run only the tunnel comparison (issue 12): WebSocket traffic through lbd, "
        "nginx and HAProxy (and direct), one worker each, scenarios "
        + ",".join(s[0] for s in TUNNEL_SCENARIOS)
        + "; rewrites the `tunnel` section of docs/benchmarks.md; --phases does not apply",
    )
    p.add_argument(
        "--tls-resumption",
        action="store_true",
        help="run wrk as it is, so tls-close-c64 reconnects offer the previous session "
        "(default: a preloaded shim makes every handshake a full one)",
    )
    p.add_argument("--callgrind", default="lbd,nginx,haproxy,hyper", help="proxies to run under callgrind")
    p.add_argument("--phases", default="one,two,strace,callgrind,memory")
    p.add_argument("--no-docs", action="store_true", help="do not rewrite docs/")
    p.add_argument(
        "--lbd-extra",
        default="",
        metavar="TOML",
        help="extra TOML for lbd's configuration, e.g. $'[limits]\\nhead_bytes = 65536'",
    )
    p.add_argument(
        "--report",
        metavar="RESULTS_JSON",
        help="measure nothing: re-render the docs from a results.json of an earlier run",
    )
    args = p.parse_args()
    if args.report:
        data = json.loads(Path(args.report).read_text())
        for kind, v in data.get("callgrind", {}).items():
            if Path(v.get("dump", "")).exists():
                v["top"] = [
                    (name, round(ir / v["requests"]), pct)
                    for name, ir, pct in callgrind_top(Path(v["dump"]), 15)
                ]
        if data.get("tunnel") is not None:
            for r in data["tunnel"]["results"]:
                r["busy"] = {int(k): v for k, v in r["busy"].items()}
            markdown = tunnel_report(data)
            print(markdown)
            if not args.no_docs:
                write_tunnel_docs(markdown)
            return
        if data.get("tls") is not None:
            for r in data["tls"]["results"]:
                r["busy"] = {int(k): v for k, v in r["busy"].items()}
            markdown = tls_report(data)
            print(markdown)
            if not args.no_docs:
                write_tls_docs(markdown)
            return
        for r in data["results"]:
            r["busy"] = {int(k): v for k, v in r["busy"].items()}
        markdown, svg = report(data, args)
        print(markdown)
        if not args.no_docs:
            write_docs(markdown, svg)
        return
    args.proxies = args.proxies.split(",")
    tls_names = [s[0] for s in TLS_SCENARIOS] + [TLS_IDLE]
    tunnel_names = [s[0] for s in TUNNEL_SCENARIOS]
    if args.tls and args.tunnel:
        raise SystemExit("--tls and --tunnel are separate runs")
    if args.scenarios is None:
        args.scenarios = (
            tls_names if args.tls else tunnel_names if args.tunnel else [s[0] for s in SCENARIOS]
        )
    else:
        args.scenarios = args.scenarios.split(",")
        named_tls = [s for s in args.scenarios if s in tls_names]
        if named_tls and len(named_tls) < len(args.scenarios):
            raise SystemExit("TLS scenarios run on their own (--tls), not with plain ones")
        named_tunnel = [s for s in args.scenarios if s in tunnel_names]
        if named_tunnel and len(named_tunnel) < len(args.scenarios):
            raise SystemExit("tunnel scenarios run on their own (--tunnel), not with others")
        args.tls = args.tls or bool(named_tls)
        args.tunnel = args.tunnel or bool(named_tunnel)
    known = tls_names if args.tls else tunnel_names if args.tunnel else [s[0] for s in SCENARIOS]
    unknown = [s for s in args.scenarios if s not in known]
    if unknown:
        raise SystemExit(f"unknown scenario(s) {','.join(unknown)}; known: {','.join(known)}")
    args.callgrind = args.callgrind.split(",")
    phases = args.phases.split(",")

    # A SIGTERM ends the run through the `finally` blocks that stop every process.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(1))
    nofile = raise_nofile()
    if not args.tls and not args.tunnel and nofile < args.idle + 100:
        raise SystemExit(f"ulimit -n is {nofile}: too low for --idle {args.idle}")
    if args.tls and nofile < args.tls_idle + 100:
        raise SystemExit(f"ulimit -n is {nofile}: too low for --tls-idle {args.tls_idle}")
    if os.cpu_count() < 2:
        raise SystemExit("needs at least 2 CPUs (proxy on CPU 0, wrk on CPU 1)")
    tools = ["nginx", "haproxy", "taskset"]
    if args.tls:
        tools += ["wrk", "openssl", "cc"]
    elif not args.tunnel:
        tools += ["wrk", "strace", "valgrind"]
    for tool in tools:
        if not shutil.which(tool):
            raise SystemExit(f"{tool} not found: run benches/compare.sh, which installs it")

    lbd_bin, hyper_bin, ws_peer = build()
    work = ROOT / "target" / "bench-compare"
    work.mkdir(parents=True, exist_ok=True)
    setup = Setup(work, lbd_bin, hyper_bin, args.lbd_extra, ws_peer=ws_peer)
    started = time.time()
    data = {
        "date": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
        "command": " ".join(["bash benches/compare.sh"] + sys.argv[1:]),
        "machine": machine(),
        "args": vars(args),
        "results": [],
    }
    if args.tunnel:
        data["tunnel"] = tunnel_phase(setup, args)
        data["elapsed_s"] = round(time.time() - started)
        (work / "results-tunnel.json").write_text(json.dumps(data, indent=1))
        markdown = tunnel_report(data)
        print(markdown)
        if not args.no_docs:
            write_tunnel_docs(markdown)
        log(f"done in {data['elapsed_s']} s")
        return
    if args.tls:
        data["tls_versions"] = tls_versions()
        data["tls"] = tls_phase(setup, args)
        data["elapsed_s"] = round(time.time() - started)
        (work / "results-tls.json").write_text(json.dumps(data, indent=1))
        markdown = tls_report(data)
        print(markdown)
        if not args.no_docs:
            write_tls_docs(markdown)
        log(f"done in {data['elapsed_s']} s")
        return
    if "one" in phases:
        data["results"] += throughput_phase(setup, args, 1, pinned=True)
    if "two" in phases:
        data["results"] += throughput_phase(setup, args, 2, pinned=False)
    if "strace" in phases:
        data["strace"] = strace_phase(setup, args)
        data["strace_64k"] = strace_phase(setup, args, path="/64k")
        data["strace_close"] = strace_phase(setup, args, close=True)
    if "callgrind" in phases:
        data["callgrind"] = callgrind_phase(setup, args)
    if "memory" in phases:
        data["memory"] = memory_phase(setup, args)
    data["elapsed_s"] = round(time.time() - started)
    (work / "results.json").write_text(json.dumps(data, indent=1))
    markdown, svg = report(data, args)
    print(markdown)
    if not args.no_docs:
        write_docs(markdown, svg)
    log(f"done in {data['elapsed_s']} s")


if __name__ == "__main__":
    main()
