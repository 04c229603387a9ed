//! One module per subcommand.

pub mod bench;
pub mod certs;
pub mod cluster;
pub mod consume;
pub mod dlq;
pub mod function;
pub mod group;
pub mod pull;
pub mod query;
pub mod send;
pub mod standalone;
pub mod stats;
pub mod topic;
