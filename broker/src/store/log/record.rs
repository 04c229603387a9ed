//! The commit-log record: one message, framed with its length and a CRC-32C.
//!
//! ```text
//! offset size field
//!  0     4    record_len   whole record, this field included
//!  4     4    crc          CRC-32C of bytes [8, record_len)
//!  8     1    version      RECORD_VERSION
//!  9     1    flags        bit 0: last record of its send batch
//! 10     2    reserved     0
//! 12     4    queue_id
//! 16     8    queue_offset
//! 24    16    msg_id       u128
//! 40     8    born_ms
//! 48     8    stored_ms
//! 56     4    tag_hash     message::tag_hash
//! 60     4    body_crc     CRC-32C of the body
//! 64     4    topic_id
//! 68     2    tag_len
//! 70     2    n_keys
//! 72     2    n_props
//! 74     2    reserved     0
//! 76     4    body_len
//! 80          tag, keys (u16 len + bytes each), properties (u16 len + name, u32 len + value), body
//! ```
//! All integers little endian.

use bytes::{BufMut, Bytes};
use quiver_proto::message::tag_hash;
use quiver_proto::{MessageId, SendMessage};

/// Record format version.
pub const RECORD_VERSION: u8 = 1;
/// Fixed header size.
pub const HEADER_BYTES: usize = 80;
/// Flag: last record of a send batch. Recovery keeps a batch only if this record survived.
pub const FLAG_BATCH_END: u8 = 1;
/// Largest record accepted when reading the log (a 64 MiB message plus metadata); a longer
/// declared length is corruption.
pub const RECORD_BYTES_MAX: usize = 80 << 20;

/// Where a message goes, decided by the writer.
#[derive(Clone, Copy, Debug)]
pub struct Placement {
    /// Topic id.
    pub topic_id: u32,
    /// Queue.
    pub queue_id: u32,
    /// Offset in the queue.
    pub offset: u64,
    /// Broker time (ms).
    pub stored_ms: u64,
    /// Final id.
    pub msg_id: MessageId,
    /// Whether this is the batch's last record.
    pub batch_end: bool,
}

/// Bytes `msg` takes as a record.
pub fn encoded_len(msg: &SendMessage) -> usize {
    HEADER_BYTES
        + msg.tag.as_ref().map_or(0, String::len)
        + msg.keys.iter().map(|k| 2 + k.len()).sum::<usize>()
        + msg
            .properties
            .iter()
            .map(|(k, v)| 6 + k.len() + v.len())
            .sum::<usize>()
        + msg.body.len()
}

/// Appends the record for `msg` to `out`.
pub fn encode(msg: &SendMessage, at: &Placement, out: &mut Vec<u8>) {
    let start = out.len();
    let len = encoded_len(msg);
    let tag = msg.tag.as_deref().unwrap_or("");
    out.reserve(len);
    out.put_u32_le(len as u32);
    out.put_u32_le(0); // CRC, patched below
    out.put_u8(RECORD_VERSION);
    out.put_u8(if at.batch_end { FLAG_BATCH_END } else { 0 });
    out.put_u16_le(0);
    out.put_u32_le(at.queue_id);
    out.put_u64_le(at.offset);
    out.put_u128_le(at.msg_id.0);
    out.put_u64_le(msg.born_ms);
    out.put_u64_le(at.stored_ms);
    out.put_u32_le(tag_hash(msg.tag.as_deref()));
    out.put_u32_le(msg.body_crc);
    out.put_u32_le(at.topic_id);
    out.put_u16_le(tag.len() as u16);
    out.put_u16_le(msg.keys.len() as u16);
    out.put_u16_le(msg.properties.len() as u16);
    out.put_u16_le(0);
    out.put_u32_le(msg.body.len() as u32);
    out.put_slice(tag.as_bytes());
    for key in &msg.keys {
        out.put_u16_le(key.len() as u16);
        out.put_slice(key.as_bytes());
    }
    for (name, value) in &msg.properties {
        out.put_u16_le(name.len() as u16);
        out.put_slice(name.as_bytes());
        out.put_u32_le(value.len() as u32);
        out.put_slice(value.as_bytes());
    }
    out.put_slice(&msg.body);
    assert_eq!(out.len() - start, len, "record length matches encoded_len");
    let crc = crc32c::crc32c(&out[start + 8..]);
    out[start + 4..start + 8].copy_from_slice(&crc.to_le_bytes());
}

/// A decoded record.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Record {
    /// Flags byte.
    pub flags: u8,
    /// Queue.
    pub queue_id: u32,
    /// Offset in the queue.
    pub offset: u64,
    /// Id.
    pub msg_id: MessageId,
    /// Producer time.
    pub born_ms: u64,
    /// Broker time.
    pub stored_ms: u64,
    /// Tag hash.
    pub tag_hash: u32,
    /// Body checksum.
    pub body_crc: u32,
    /// Topic id.
    pub topic_id: u32,
    /// Tag.
    pub tag: Option<String>,
    /// Keys.
    pub keys: Vec<String>,
    /// Properties.
    pub properties: Vec<(String, String)>,
    /// Body.
    pub body: Bytes,
}

impl Record {
    /// Whether this record ends its batch.
    pub fn is_batch_end(&self) -> bool {
        self.flags & FLAG_BATCH_END != 0
    }
}

/// Why a record did not decode: at the log's tail this means a torn write.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RecordError {
    /// Fewer bytes than the header or the declared length.
    #[error("record truncated: need {need} bytes, have {have}")]
    Truncated {
        /// Bytes needed.
        need: usize,
        /// Bytes present.
        have: usize,
    },
    /// Length field out of range.
    #[error("record length {0} out of range")]
    BadLength(usize),
    /// Checksum mismatch.
    #[error("record checksum mismatch")]
    BadCrc,
    /// Unknown version or malformed fields.
    #[error("malformed record: {0}")]
    Malformed(&'static str),
}

/// Reads the declared length of the record starting at `buf`.
pub fn peek_len(buf: &[u8]) -> Result<usize, RecordError> {
    if buf.len() < 4 {
        return Err(RecordError::Truncated {
            need: 4,
            have: buf.len(),
        });
    }
    let len = u32::from_le_bytes(buf[0..4].try_into().expect("4 bytes")) as usize;
    if !(HEADER_BYTES..=RECORD_BYTES_MAX).contains(&len) {
        return Err(RecordError::BadLength(len));
    }
    Ok(len)
}

/// The broker time in the header of the record starting at `buf` (unchecked: for the oldest
/// record of a segment, to date what retention removed).
pub fn peek_stored_ms(buf: &[u8]) -> Option<u64> {
    let bytes = buf.get(48..56)?;
    Some(u64::from_le_bytes(bytes.try_into().ok()?))
}

/// Decodes the record at the start of `buf`, checking its CRC. Returns the record and its
/// length. Never panics, whatever the bytes.
pub fn decode(buf: &Bytes) -> Result<(Record, usize), RecordError> {
    let len = peek_len(buf)?;
    if buf.len() < len {
        return Err(RecordError::Truncated {
            need: len,
            have: buf.len(),
        });
    }
    let crc = u32::from_le_bytes(buf[4..8].try_into().expect("4 bytes"));
    if crc32c::crc32c(&buf[8..len]) != crc {
        return Err(RecordError::BadCrc);
    }
    if buf[8] != RECORD_VERSION {
        return Err(RecordError::Malformed("unknown record version"));
    }
    let mut cur = Cursor {
        buf: &buf[..len],
        pos: 9,
    };
    let flags = cur.u8()?;
    cur.u16()?;
    let queue_id = cur.u32()?;
    let offset = cur.u64()?;
    let msg_id = MessageId(u128::from(cur.u64()?) | (u128::from(cur.u64()?) << 64));
    let born_ms = cur.u64()?;
    let stored_ms = cur.u64()?;
    let tag_hash = cur.u32()?;
    let body_crc = cur.u32()?;
    let topic_id = cur.u32()?;
    let tag_len = cur.u16()? as usize;
    let n_keys = cur.u16()? as usize;
    let n_props = cur.u16()? as usize;
    cur.u16()?;
    let body_len = cur.u32()? as usize;
    let tag = cur.text(tag_len)?;
    let tag = (!tag.is_empty()).then_some(tag);
    let mut keys = Vec::with_capacity(n_keys.min(64));
    for _ in 0..n_keys {
        let key_len = cur.u16()? as usize;
        keys.push(cur.text(key_len)?);
    }
    let mut properties = Vec::with_capacity(n_props.min(64));
    for _ in 0..n_props {
        let name_len = cur.u16()? as usize;
        let name = cur.text(name_len)?;
        let value_len = cur.u32()? as usize;
        properties.push((name, cur.text(value_len)?));
    }
    if cur.pos + body_len != len {
        return Err(RecordError::Malformed(
            "body length does not match record length",
        ));
    }
    let body = buf.slice(cur.pos..len);
    Ok((
        Record {
            flags,
            queue_id,
            offset,
            msg_id,
            born_ms,
            stored_ms,
            tag_hash,
            body_crc,
            topic_id,
            tag,
            keys,
            properties,
            body,
        },
        len,
    ))
}

struct Cursor<'a> {
    buf: &'a [u8],
    pos: usize,
}

impl Cursor<'_> {
    fn take(&mut self, n: usize) -> Result<&[u8], RecordError> {
        let end = self
            .pos
            .checked_add(n)
            .filter(|end| *end <= self.buf.len())
            .ok_or(RecordError::Malformed("field runs past the record"))?;
        let bytes = &self.buf[self.pos..end];
        self.pos = end;
        Ok(bytes)
    }
    fn u8(&mut self) -> Result<u8, RecordError> {
        Ok(self.take(1)?[0])
    }
    fn u16(&mut self) -> Result<u16, RecordError> {
        Ok(u16::from_le_bytes(
            self.take(2)?.try_into().expect("2 bytes"),
        ))
    }
    fn u32(&mut self) -> Result<u32, RecordError> {
        Ok(u32::from_le_bytes(
            self.take(4)?.try_into().expect("4 bytes"),
        ))
    }
    fn u64(&mut self) -> Result<u64, RecordError> {
        Ok(u64::from_le_bytes(
            self.take(8)?.try_into().expect("8 bytes"),
        ))
    }
    fn text(&mut self, n: usize) -> Result<String, RecordError> {
        String::from_utf8(self.take(n)?.to_vec())
            .map_err(|_| RecordError::Malformed("invalid UTF-8"))
    }
}

#[cfg(test)]
mod tests;
