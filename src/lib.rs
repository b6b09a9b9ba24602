//! lbd: a synchronous, thread-per-core HTTP/1.1 load balancer on mio.
//!
//! Start one with [`Server::start`] from a [`Config`]; the `lbd` binary is a thin shell
//! over this library. See `docs/architecture.md` for how the pieces fit.

pub mod access;
pub mod admin;
pub mod backend;
pub mod balance;
pub mod bounds;
pub mod buffer;
pub mod cli;
pub mod config;
pub mod control;
pub mod demo;
pub mod fault;
pub mod grammar;
pub mod hash;
pub mod health;
pub mod http;
pub mod metrics;
pub mod net;
pub mod retry;
pub mod session;
pub mod snapshot;
pub mod stats;
pub mod supervisor;
pub mod timer;
pub mod token;
pub mod upstream;
pub mod worker;

pub use config::Config;
pub use supervisor::Server;

/// `lbd X.Y.Z`.
pub const VERSION: &str = env!("CARGO_PKG_VERSION");
