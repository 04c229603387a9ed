//! The catalog in `meta.redb`: what the log does not carry. Topics and queue floors now;
//! consumer offsets, groups, subscriptions and function deployments next.

mod topics;

pub use topics::{Catalog, TopicMeta, not_found};
