//! Client errors.

use quiver_net::NetError;
use quiver_proto::{ErrorCode, WireError};

use crate::queue::MessageQueue;

/// Why a client call failed.
#[derive(Debug, Clone, thiserror::Error)]
#[non_exhaustive]
pub enum ClientError {
    /// Transport failure or an error answer from the server.
    #[error(transparent)]
    Net(#[from] NetError),
    /// A response body did not decode.
    #[error("bad response body: {0}")]
    Decode(#[from] WireError),
    /// The arguments are wrong; the message says how to fix them.
    #[error("{0}")]
    Invalid(String),
    /// A server's answer contradicts the request or itself (a faulty, incompatible or hostile
    /// server); nothing in it was used.
    #[error(
        "inconsistent answer: {0}; the server is faulty or not a compatible Quiver broker: check its version and log"
    )]
    BadAnswer(String),
    /// An ordered send could not reach its key's queue, and was not moved to another queue
    /// (which would break the key's order).
    #[error(
        "ordered send: the key's queue {queue} is unavailable: {cause}; the key is not re-routed, to keep its order: retry later, or opt in to moving with Producer::with_ordered_reroute"
    )]
    OrderedQueueUnavailable {
        /// The key's queue.
        queue: MessageQueue,
        /// Why it could not be used.
        cause: String,
    },
}

impl ClientError {
    /// The server's error code, if the server answered with one.
    pub fn code(&self) -> Option<ErrorCode> {
        match self {
            ClientError::Net(err) => err.code(),
            _ => None,
        }
    }

    /// Whether retrying (possibly elsewhere) may succeed.
    pub fn is_retryable(&self) -> bool {
        matches!(self, ClientError::Net(err) if err.is_retryable())
    }
}
