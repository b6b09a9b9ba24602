//! lbd: a synchronous, thread-per-core HTTP/1.1 load balancer on mio.
//!
//! Start one with [`Server::start`] from a validated [`Config`] (built by
//! [`Config::load`], [`Config::parse`] or [`RawConfig::validate`]); the `lbd` binary is
//! a thin shell over this library. See `docs/architecture.md` for how the pieces fit.
//!
//! ```no_run
//! use lbd::{RawConfig, Server};
//!
//! let backends = ["127.0.0.1:8081".parse()?, "127.0.0.1:8082".parse()?];
//! let mut raw = RawConfig::new("127.0.0.1:8080".parse()?, &backends);
//! raw.server.workers = 2;
//! let server = Server::start(raw.validate()?)?;
//! println!("serving on {}", server.local_addr());
//! server.stop(); // graceful: finishes in-flight requests, then returns
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
#![forbid(unsafe_code)]
#![deny(missing_docs)]

// The embedding API, and what the binary, the benches and the fuzz targets drive.
pub mod backend;
pub mod balance;
pub mod buffer;
pub mod cli;
pub mod config;
pub mod demo;
pub mod http;
// Public for the `proxy_header` fuzz target; wired in by the accept path (issue 12).
pub mod proxy_protocol;
pub mod route;

mod access;
mod admin;
mod bounds;
mod cidr;
mod control;
#[cfg(feature = "dns")]
mod dns;
mod fault;
mod grammar;
mod hash;
mod health;
mod metrics;
mod net;
mod retry;
mod session;
mod snapshot;
mod stats;
mod supervisor;
mod timer;
#[cfg(feature = "tls")]
mod tls;
mod token;
mod upstream;
mod worker;

pub use config::{Config, RawConfig};
pub use snapshot::Snapshot;
pub use stats::Shared;
pub use supervisor::Server;

/// `lbd X.Y.Z`.
pub const VERSION: &str = env!("CARGO_PKG_VERSION");
