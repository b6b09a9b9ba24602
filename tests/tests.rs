//! lbd's integration tests: the real balancer over real loopback sockets, with scripted
//! backends and raw clients. One binary; modules by theme.

mod util;

mod attacks;
mod balance;
mod binary;
mod canned;
mod failover;
mod hardening;
mod ops;
mod pools;
mod proxy;
mod proxy_protocol;
#[cfg(feature = "tls")]
mod tls;
mod tunnel;
