//! The fixed frame header.
//!
//! ```text
//! offset size field
//!  0     2    magic      0x51 0x56 ("QV")
//!  2     1    version    VERSION
//!  3     1    flags      bit 0 response, bit 1 oneway
//!  4     2    code       request code (little endian), echoed in the response
//!  6     2    status     ErrorCode (0 in requests)
//!  8     8    request_id chosen by the client, echoed in the response
//! 16     4    body_len   little endian, at most FRAME_BODY_BYTES_MAX
//! ```

use bytes::{BufMut, Bytes, BytesMut};

use crate::{ErrorCode, WireError};

/// Frame magic bytes.
pub const MAGIC: [u8; 2] = *b"QV";
/// The frame version this crate speaks.
pub const VERSION: u8 = 1;
/// Size of the fixed header.
pub const HEADER_BYTES: usize = 20;
/// Largest body a frame may carry: a full batch of maximum-size messages plus envelope.
pub const FRAME_BODY_BYTES_MAX: usize = 64 << 20;
/// Largest whole frame.
pub const FRAME_BYTES_MAX: usize = HEADER_BYTES + FRAME_BODY_BYTES_MAX;

/// Flag: the frame is a response.
pub const FLAG_RESPONSE: u8 = 1;
/// Flag: the request expects no response.
pub const FLAG_ONEWAY: u8 = 2;
const FLAGS_KNOWN: u8 = FLAG_RESPONSE | FLAG_ONEWAY;

/// The decoded fixed header.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FrameHeader {
    /// Protocol version of the sender.
    pub version: u8,
    /// Flag bits, see `FLAG_*`.
    pub flags: u8,
    /// The raw request code (may be unknown to this build).
    pub code: u16,
    /// Response status; 0 in requests.
    pub status: u16,
    /// Client-chosen id, echoed in the response.
    pub request_id: u64,
    /// Length of the body that follows.
    pub body_len: u32,
}

impl FrameHeader {
    /// Writes the header.
    pub fn encode(&self, out: &mut BytesMut) {
        out.put_slice(&MAGIC);
        out.put_u8(self.version);
        out.put_u8(self.flags);
        out.put_u16_le(self.code);
        out.put_u16_le(self.status);
        out.put_u64_le(self.request_id);
        out.put_u32_le(self.body_len);
    }

    /// Reads a header. `Incomplete` means: read more bytes.
    pub fn decode(buf: &[u8]) -> Result<Self, WireError> {
        if buf.len() < HEADER_BYTES {
            return Err(WireError::Incomplete {
                need: HEADER_BYTES,
                have: buf.len(),
            });
        }
        if buf[0..2] != MAGIC {
            return Err(WireError::BadMagic {
                found: [buf[0], buf[1]],
            });
        }
        let version = buf[2];
        if version != VERSION {
            return Err(WireError::UnsupportedVersion {
                version,
                supported: VERSION,
            });
        }
        let flags = buf[3];
        if flags & !FLAGS_KNOWN != 0 {
            return Err(WireError::UnknownFlags { flags });
        }
        let header = FrameHeader {
            version,
            flags,
            code: u16::from_le_bytes([buf[4], buf[5]]),
            status: u16::from_le_bytes([buf[6], buf[7]]),
            request_id: u64::from_le_bytes(buf[8..16].try_into().expect("8-byte slice")),
            body_len: u32::from_le_bytes(buf[16..20].try_into().expect("4-byte slice")),
        };
        if header.body_len as usize > FRAME_BODY_BYTES_MAX {
            return Err(WireError::TooLarge {
                len: header.body_len as u64,
                max: FRAME_BODY_BYTES_MAX as u64,
            });
        }
        Ok(header)
    }

    /// True when the response flag is set.
    pub fn is_response(&self) -> bool {
        self.flags & FLAG_RESPONSE != 0
    }

    /// True when the oneway flag is set.
    pub fn is_oneway(&self) -> bool {
        self.flags & FLAG_ONEWAY != 0
    }
}

/// A whole frame: header plus body.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Frame {
    /// The header; `body_len` always equals `body.len()`.
    pub header: FrameHeader,
    /// The body bytes.
    pub body: Bytes,
}

impl Frame {
    /// A request frame.
    pub fn request(code: u16, request_id: u64, oneway: bool, body: Bytes) -> Self {
        Self::new(
            if oneway { FLAG_ONEWAY } else { 0 },
            code,
            0,
            request_id,
            body,
        )
    }

    /// A response frame answering `request`.
    pub fn response(request: &FrameHeader, status: ErrorCode, body: Bytes) -> Self {
        Self::new(
            FLAG_RESPONSE,
            request.code,
            status as u16,
            request.request_id,
            body,
        )
    }

    fn new(flags: u8, code: u16, status: u16, request_id: u64, body: Bytes) -> Self {
        assert!(
            body.len() <= FRAME_BODY_BYTES_MAX,
            "frame body over the maximum"
        );
        Frame {
            header: FrameHeader {
                version: VERSION,
                flags,
                code,
                status,
                request_id,
                body_len: body.len() as u32,
            },
            body,
        }
    }

    /// Encoded size.
    pub fn encoded_size(&self) -> usize {
        HEADER_BYTES + self.body.len()
    }

    /// Appends the frame to `out`.
    pub fn encode(&self, out: &mut BytesMut) {
        debug_assert_eq!(self.header.body_len as usize, self.body.len());
        out.reserve(self.encoded_size());
        self.header.encode(out);
        out.put_slice(&self.body);
    }

    /// The frame as a header buffer and the (shared, uncopied) body, for vectored writes.
    pub fn to_parts(&self) -> [Bytes; 2] {
        let mut header = BytesMut::with_capacity(HEADER_BYTES);
        self.header.encode(&mut header);
        [header.freeze(), self.body.clone()]
    }

    /// The frame as one buffer.
    pub fn to_bytes(&self) -> Bytes {
        let mut out = BytesMut::with_capacity(self.encoded_size());
        self.encode(&mut out);
        out.freeze()
    }

    /// Decodes one frame from the front of `buf`, returning it and the bytes consumed.
    pub fn decode(buf: &Bytes) -> Result<(Self, usize), WireError> {
        let header = FrameHeader::decode(buf)?;
        let total = HEADER_BYTES + header.body_len as usize;
        if buf.len() < total {
            return Err(WireError::Incomplete {
                need: total,
                have: buf.len(),
            });
        }
        let body = buf.slice(HEADER_BYTES..total);
        Ok((Frame { header, body }, total))
    }

    /// Decodes a buffer that must hold exactly one frame (one QUIC stream).
    pub fn decode_exact(buf: &Bytes) -> Result<Self, WireError> {
        let (frame, used) = Self::decode(buf)?;
        if used != buf.len() {
            return Err(WireError::TrailingBytes {
                extra: buf.len() - used,
            });
        }
        Ok(frame)
    }
}

#[cfg(test)]
mod tests;
