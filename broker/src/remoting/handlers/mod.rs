//! One module per request family: decode, call the core, encode.

pub(crate) mod admin;
pub(crate) mod function;
pub(crate) mod group;
pub(crate) mod msg;
pub(crate) mod route;
pub(crate) mod topic;

use bytes::Bytes;
use quiver_net::Failure;
use quiver_proto::{ErrorCode, Name, encode_body};

/// Encodes a response body.
pub(crate) fn reply<T: serde::Serialize>(value: &T) -> Result<Bytes, Failure> {
    Ok(Bytes::from(encode_body(value)))
}

/// Validates the name of a topic a request creates, changes or sends to: a user name.
pub(crate) fn topic_name(text: &str) -> Result<Name, Failure> {
    Name::new(text)
        .map_err(|reason| Failure::new(ErrorCode::InvalidName, format!("topic {reason}")))
}

/// Validates the name of a topic a request reads: a user name, or a group's retry or
/// dead-letter topic.
pub(crate) fn readable_topic(text: &str) -> Result<Name, Failure> {
    Name::readable(text)
        .map_err(|reason| Failure::new(ErrorCode::InvalidName, format!("topic {reason}")))
}
