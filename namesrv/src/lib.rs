//! The Quiver name server: which brokers serve which queues of which topic, and which
//! brokers are alive.
//!
//! Name servers share nothing: every broker registers with every one of them and
//! heartbeats; a restarted name server rebuilds its state from the next heartbeats.
//!
//! # Layout
//! - [`route_table`]: brokers and topic → queues per broker (pure data; the standalone
//!   embeds it).
//! - [`registry`]: registrations, heartbeats and expiry as a sans-IO state machine.
//! - [`service`]: the request handlers over QUIC and the expiry driver.

pub mod registry;
pub mod route_table;
pub mod service;

pub use registry::Registry;
pub use route_table::RouteTable;
