//! The Quiver broker: a durable commit-log store with redb indexes, the request handlers
//! that serve it over QUIC, and the standalone mode (broker + embedded name server on one
//! endpoint).
//!
//! # Layout
//! - [`core`]: the broker's state and domain operations (send, pull, queries, topics): what
//!   remoting, and later push consumers, functions and replication, call.
//! - [`functions`]: WASM consumer functions run as consumer groups next to the data.
//! - [`store`]: commit log, group-commit writer, dispatcher, indexes, recovery, retention.
//! - [`remoting`]: decode → core → encode, one handler per request code.
//! - [`server`]: binding, the `listening` line and `ports.json`, graceful shutdown.
//! - [`registration`]: register and heartbeat with the name servers; leave on shutdown.
//! - [`repair`]: the repair command (plan, then `--yes` to cut corrupt log bytes to quarantine).
//! - [`config`]: the broker's TOML config with `QUIVER_<SECTION>__<KEY>` overrides.
//! - [`clock`]: the only reader of the wall clock.

pub mod args;
pub mod clock;
pub mod config;
pub mod core;
pub mod functions;
pub mod registration;
pub mod remoting;
pub mod repair;
pub mod server;
pub mod store;
