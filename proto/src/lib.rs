//! The Quiver wire protocol, sans-IO: frame header, request codes, stable error codes, the
//! message model and every request and response body. No tokio, no quinn: everything here is
//! a pure function of bytes, so it is fuzzable and unit-tested in memory.
//!
//! # Wire format
//!
//! One QUIC bidirectional stream carries one request: the client writes one frame and finishes
//! its send side; the server answers with one frame (none for a oneway request) and finishes.
//! A frame is a fixed 20-byte [`FrameHeader`] followed by `body_len` bytes of body.
//! Bodies are [postcard](https://postcard.jamesmunns.com) encodings of the structs in
//! [`requests`]; postcard writes no field names, so a struct only changes by appending fields
//! behind a bump of [`frame::VERSION`], and enum variants are never reordered.
//! A response carries the request's code and id and a [`ErrorCode`] status: `Ok` means the
//! body is the response struct, anything else means the body is an [`ErrorBody`].
//!
//! # Layout
//! - [`frame`]: the fixed header and whole-frame encode/decode, with every length checked
//!   against a named maximum before anything is allocated.
//! - [`codes`]: the request-code table (one code, one dotted name, one handler).
//! - [`error`]: [`WireError`] for undecodable bytes, [`ErrorCode`] for stable response codes.
//! - [`message`]: message ids, names, the message model and its checksums.
//! - [`decode`]: bounded decoding: every declared count is checked against its named maximum
//!   and the remaining bytes before anything is allocated for it.
//! - [`requests`]: request and response bodies, one module per family.
#![warn(missing_docs, unreachable_pub)]

pub mod codes;
pub mod decode;
pub mod error;
pub mod frame;
pub mod message;
pub mod requests;

pub use codes::{Access, RequestCode};
pub use error::{ErrorBody, ErrorCode, Limit, WireError};
pub use frame::{Frame, FrameHeader};
pub use message::{MessageId, Name, SendMessage, StoredMessage};

/// The QUIC ALPN protocol id of this wire version.
pub const ALPN: &[u8] = b"quiver/1";

/// Encodes a body with postcard.
pub fn encode_body<T: serde::Serialize>(value: &T) -> Vec<u8> {
    // Serialising into a Vec cannot fail for our types: they contain no maps with non-string
    // keys and no custom serialisers that return errors.
    postcard::to_stdvec(value).expect("postcard serialisation into a Vec is infallible")
}

/// [`encode_body`] into a buffer of `capacity` bytes up front: a large body (a pull answer)
/// is then written once, instead of being copied through every doubling of a growing `Vec`.
pub fn encode_body_sized<T: serde::Serialize>(value: &T, capacity: usize) -> Vec<u8> {
    postcard::to_extend(value, Vec::with_capacity(capacity))
        .expect("postcard serialisation into a Vec is infallible")
}

/// Decodes a body with postcard; trailing bytes are an error, so a frame carries exactly one
/// value.
pub fn decode_body<'a, T: serde::Deserialize<'a>>(body: &'a [u8]) -> Result<T, WireError> {
    // A refusal left by an earlier decode that did not come through here must not be
    // reported for this one.
    let _ = decode::take_refusal();
    let failed = |err: postcard::Error| {
        decode::take_refusal().unwrap_or_else(|| WireError::Body {
            reason: err.to_string(),
        })
    };
    let mut deserializer = postcard::Deserializer::from_flavor(decode::Tracked::new(body));
    let value = T::deserialize(&mut deserializer).map_err(failed)?;
    let rest = deserializer.finalize().map_err(failed)?;
    if !rest.is_empty() {
        return Err(WireError::Body {
            reason: format!("{} trailing bytes after the body", rest.len()),
        });
    }
    Ok(value)
}
