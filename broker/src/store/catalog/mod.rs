//! The catalog in `meta.redb`: what the log does not carry. Topics, queue floors, consumer
//! groups and their committed offsets, function deployments with their modules.

mod functions;
mod groups;
mod topics;

pub use functions::{FnRecord, FnVersion, Upload};
pub use groups::{GroupSettings, OffsetRow};
pub use topics::{Catalog, TopicMeta, not_found};
