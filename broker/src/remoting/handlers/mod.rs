//! One module per request family.

pub(crate) mod admin;
pub(crate) mod msg;
pub(crate) mod route;
pub(crate) mod topic;

use bytes::Bytes;
use quiver_proto::{ErrorCode, Name, encode_body};

use super::Failure;

/// Encodes a response body.
pub(crate) fn reply<T: serde::Serialize>(value: &T) -> Result<Bytes, Failure> {
    Ok(Bytes::from(encode_body(value)))
}

/// Validates a topic name from a request.
pub(crate) fn topic_name(text: &str) -> Result<Name, Failure> {
    Name::new(text)
        .map_err(|reason| Failure::new(ErrorCode::InvalidName, format!("topic {reason}")))
}

/// Runs blocking store work off the async workers.
pub(crate) async fn blocking<T: Send + 'static>(
    work: impl FnOnce() -> Result<T, Failure> + Send + 'static,
) -> Result<T, Failure> {
    tokio::task::spawn_blocking(work)
        .await
        .map_err(|err| Failure::new(ErrorCode::Internal, format!("request task failed: {err}")))?
}
