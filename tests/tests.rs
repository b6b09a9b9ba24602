//! lbd's integration tests: the real balancer over real loopback sockets, with scripted
//! backends and raw clients. One binary; modules by theme.

mod util;

mod balance;
mod binary;
mod canned;
mod failover;
mod ops;
mod proxy;
