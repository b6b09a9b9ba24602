#!/usr/bin/env bash
# lbd against nginx, HAProxy and a tokio/hyper proxy: one command, see docs/benchmarks.md.
#
#   bash benches/compare.sh            # full run (~15 min), rewrites docs/benchmarks.md
#   bash benches/compare.sh --tls      # the TLS comparison (issue 11) only, ~3 min
#   bash benches/compare.sh --tunnel   # WebSocket tunnels (issue 12) only, ~6 min
#   bash benches/compare.sh --help     # options: rounds, durations, subsets, --no-docs
#
# Needs 2+ CPUs, python3, nginx, haproxy, wrk, strace, valgrind and taskset (--tls: also
# openssl and a C compiler; --tunnel: only nginx, haproxy and taskset). As root on Debian/Ubuntu the missing ones are installed with
# apt-get; otherwise it says what to run.
set -euo pipefail
cd "$(dirname "$0")/.."

# The tunnel comparison (--tunnel, or its scenario names) drives its own WebSocket
# client (benches/ws_peer.rs): no wrk, strace or valgrind.
tools=(nginx haproxy wrk strace valgrind)
case " $* " in
    *" --tunnel "* | *ws-up-c* | *ws-down-c*) tools=(nginx haproxy) ;;
esac
need=()
for tool in "${tools[@]}"; do
    command -v "$tool" >/dev/null 2>&1 || need+=("$tool")
done
command -v taskset >/dev/null 2>&1 || need+=(util-linux)
# The TLS comparison (--tls, or TLS scenario names) also makes a certificate and builds
# a small shim for wrk.
case " $* " in
    *" --tls "* | *tls-ka-c64* | *tls-close-c64* | *tls-idle*)
        command -v openssl >/dev/null 2>&1 || need+=(openssl)
        command -v cc >/dev/null 2>&1 || need+=(gcc)
        ;;
esac
if ((${#need[@]})); then
    if [[ $(id -u) -eq 0 ]] && command -v apt-get >/dev/null 2>&1; then
        echo "installing: ${need[*]}" >&2
        apt-get update -qq
        DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${need[@]}" >/dev/null
    else
        echo "missing: ${need[*]}" >&2
        echo "install them, e.g.: sudo apt-get install -y ${need[*]}" >&2
        exit 1
    fi
fi
command -v python3 >/dev/null 2>&1 || { echo "python3 (3.8+) is required" >&2; exit 1; }

# 10,000 idle client connections (memory figure) need file descriptors; the proxies
# started by the driver inherit the limit.
ulimit -n "$(ulimit -Hn)" 2>/dev/null || true
exec python3 benches/compare.py "$@"
