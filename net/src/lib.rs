//! Quiver's transport: QUIC endpoints (quinn + rustls, TLS 1.3 only, ALPN `quiver/1`, 0-RTT
//! off), the cluster's TLS material, and framed RPC with one bidirectional stream per request.
//!
//! # Layout
//! - [`tls`]: make and load the cluster CA and node/client certificates; rustls configs;
//!   peer identity (name and role) from a client certificate.
//! - [`endpoint`]: quinn endpoints with explicit transport limits.
//! - [`limits`]: connection cap, request-byte budgets, shutdown drain deadline.
//! - [`envelope`]: the request envelope every server shares (unknown code, access check,
//!   error frame, oneway) and [`envelope::Failure`], the one handler error type.
//! - [`server`]: the accept loop that feeds request frames to a [`server::Service`].
//! - [`client`]: [`client::RpcClient`], a reconnecting connection that sends requests.
//!
//! **Invariant:** this is the only crate that names quinn or rustls.

pub mod client;
pub mod endpoint;
pub mod envelope;
pub mod limits;
pub mod process;
pub mod server;
pub mod tls;

pub use client::{NetError, RpcClient};
pub use envelope::Failure;
pub use server::{Peer, Service};
pub use tls::{Identity, Role};
