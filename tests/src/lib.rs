//! End-to-end test support: start real `quiver` processes on loopback (port 0), wait for
//! their `listening` line, talk QUIC + TLS to them, and stop them with their test.
//!
//! # Layout
//! - [`harness`]: [`harness::Server`], a running `quiver standalone` or `quiver-broker`.
//! - [`history`]: the history checker: acknowledged sends against reads (lost, unexpected,
//!   inconsistent offsets, order per key, duplicates).

pub mod harness;
pub mod history;
