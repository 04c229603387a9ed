//! The Quiver name server: which brokers serve which queues of which topic.
//!
//! The route table is pure data (no I/O), so the standalone mode embeds it in the broker
//! process and the name-server process (a later issue) wraps it with remoting and liveness.
//!
//! # Layout
//! - [`route_table`]: brokers and topic → queues per broker, answering `route.get`.

pub mod route_table;

pub use route_table::RouteTable;
