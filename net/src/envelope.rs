//! The request envelope every server shares: an unknown code gets its error, the access
//! policy is checked before the handler runs, a handler's [`Failure`] becomes an error frame
//! with its stable code, and a oneway request gets no answer.

use std::future::Future;

use bytes::Bytes;
use quiver_proto::{ErrorCode, Frame, RequestCode, WireError};
use tracing::{Instrument, debug};

use crate::server::{AccessPolicy, Peer, error_frame};

/// A failed request: its stable code and a message that says what to fix. The one handler
/// error type of every server.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Failure {
    /// Stable code.
    pub code: ErrorCode,
    /// What to fix.
    pub message: String,
}

impl Failure {
    /// A failure with `code`.
    pub fn new(code: ErrorCode, message: impl Into<String>) -> Self {
        Failure {
            code,
            message: message.into(),
        }
    }
}

impl From<WireError> for Failure {
    fn from(err: WireError) -> Self {
        Failure::new(
            err.code(),
            format!("{err}: the request body does not match its code"),
        )
    }
}

/// Answers `request` with what `handle(code, body)` returns, inside the shared envelope.
pub async fn answer<F, Fut>(
    policy: AccessPolicy,
    peer: &Peer,
    request: Frame,
    handle: F,
) -> Option<Frame>
where
    F: FnOnce(RequestCode, Bytes) -> Fut,
    Fut: Future<Output = Result<Bytes, Failure>>,
{
    let header = request.header;
    let oneway = header.is_oneway();
    let Some(code) = RequestCode::from_u16(header.code) else {
        let err = WireError::UnknownCode { code: header.code };
        return (!oneway).then(|| {
            error_frame(
                &header,
                err.code(),
                format!("{err}: upgrade the client or check the request"),
            )
        });
    };
    let result = match policy.denied(code, peer) {
        Some(reason) => Err(Failure::new(ErrorCode::PermissionDenied, reason)),
        None => {
            let span =
                tracing::debug_span!("request", code = code.name(), req_id = header.request_id);
            handle(code, request.body).instrument(span).await
        }
    };
    if oneway {
        if let Err(failure) = &result {
            debug!(code = code.name(), status = %failure.code, "oneway request failed");
        }
        return None;
    }
    Some(match result {
        Ok(body) => Frame::response(&header, ErrorCode::Ok, body),
        Err(failure) => error_frame(&header, failure.code, failure.message),
    })
}
