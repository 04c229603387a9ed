//! The catalog in `meta.redb`: what the log does not carry. Topics, queue floors, consumer
//! groups and their committed offsets; function deployments next.

mod groups;
mod topics;

pub use groups::{GroupSettings, OffsetRow};
pub use topics::{Catalog, TopicMeta, not_found};
