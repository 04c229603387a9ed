//! Client errors.

use quiver_net::NetError;
use quiver_proto::{ErrorCode, WireError};

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
