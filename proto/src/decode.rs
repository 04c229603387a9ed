//! Bounded decoding: no declared count or length makes a decoder allocate more than a small
//! multiple of the bytes it was given.
//!
//! Two tools, one rule (a count is checked against its named maximum and against the bytes
//! that remain before anything is allocated for it):
//! - [`Reader`], a postcard-compatible cursor for the hand-written decoders of the bodies a
//!   server decodes in bulk (the send batch). Every sequence's count is checked against the
//!   remaining bytes divided by its element's smallest encoding, so capacity is exact and
//!   `n` tiny elements cost at most `n` times their struct size. Bytes a count has promised to
//!   its elements' smallest encodings are not available to counts nested in them, so a count
//!   that lies cannot have its reservation and its elements' contents charged to the same
//!   bytes.
//! - [`seq`] and its named wrappers, `deserialize_with` helpers for every other `Vec` in a
//!   postcard body, with the same checks: [`crate::decode_body`] decodes through [`Tracked`],
//!   which tells them how many bytes remain, and each element type names its smallest
//!   encoding ([`EncodedBytesMin`]).
//!
//! Either way decoding `n` bytes allocates at most [`DECODED_BYTES_PER_BYTE_MAX`] × `n` bytes
//! (plus a few constant allocations): every element's in-memory size is at most that many
//! times its smallest encoding (asserted below for every element type), and string and byte
//! contents cost one byte per byte.

use std::cell::Cell;
use std::fmt;
use std::marker::PhantomData;

use serde::de::{Deserializer, SeqAccess, Visitor};
use serde::{Deserialize, de};

use crate::error::{Limit, WireError};
use crate::message::{KEYS_MAX, PROPERTIES_MAX};
use crate::requests::msg::BATCH_LEN_MAX;

/// Most bytes a decoder allocates per byte of input.
pub const DECODED_BYTES_PER_BYTE_MAX: usize = 25;

/// Most bytes a sequence reserves before its elements arrive when it is decoded outside
/// [`crate::decode_body`] (no remaining-bytes count to check against).
pub const PREALLOC_BYTES_MAX: usize = 64 << 10;

/// The smallest postcard encoding of a sequence element, for the remaining-bytes check.
pub trait EncodedBytesMin {
    /// Bytes of the smallest encoding (every varint 0, every string empty, every option none).
    const ENCODED_BYTES_MIN: usize;
}

/// Asserts, at compile time, that each type's in-memory size is within
/// [`DECODED_BYTES_PER_BYTE_MAX`] of its smallest encoding.
macro_rules! encoded_bytes_min {
    ($($ty:ty = $min:expr;)*) => {
        $(
            impl $crate::decode::EncodedBytesMin for $ty {
                const ENCODED_BYTES_MIN: usize = $min;
            }
            const _: () = assert!(
                size_of::<$ty>() <= $crate::decode::DECODED_BYTES_PER_BYTE_MAX * $min
            );
        )*
    };
}
pub(crate) use encoded_bytes_min;

encoded_bytes_min! {
    String = 1;
    (String, String) = 2;
}

/// A cursor over a postcard encoding: LEB128 varints for integers and lengths, `0`/`1` for
/// `Option`, fields in declaration order.
pub(crate) struct Reader<'a> {
    buf: &'a [u8],
    pos: usize,
    /// Bytes promised to the smallest encodings of elements declared but not yet begun: a
    /// nested count may only spend what is left beyond them, so a lying outer count cannot
    /// charge the same bytes twice (once for its reservation, once for what is nested).
    promised: usize,
}

impl<'a> Reader<'a> {
    pub(crate) fn new(buf: &'a [u8]) -> Self {
        Reader {
            buf,
            pos: 0,
            promised: 0,
        }
    }

    /// Bytes not yet read.
    pub(crate) fn remaining(&self) -> usize {
        self.buf.len() - self.pos
    }

    pub(crate) fn u32(&mut self) -> Result<u32, WireError> {
        // The varint decoder refuses anything over 32 bits, so the cast keeps every bit.
        self.varint(u32::BITS).map(|value| value as u32)
    }

    pub(crate) fn u64(&mut self) -> Result<u64, WireError> {
        self.varint(u64::BITS).map(|value| value as u64)
    }

    pub(crate) fn u128(&mut self) -> Result<u128, WireError> {
        self.varint(u128::BITS)
    }

    /// An `Option` tag: whether a value follows.
    pub(crate) fn option(&mut self) -> Result<bool, WireError> {
        match self.byte()? {
            0 => Ok(false),
            1 => Ok(true),
            other => Err(self.malformed(format!("option tag {other} is neither 0 nor 1"))),
        }
    }

    /// A length-prefixed byte string, borrowed.
    pub(crate) fn bytes(&mut self) -> Result<&'a [u8], WireError> {
        let len = self.length()?;
        self.take(len)
    }

    /// A length-prefixed UTF-8 string of at most `max` bytes, borrowed; the length is checked
    /// before the bytes are looked at.
    pub(crate) fn str_max(&mut self, limit: Limit, max: usize) -> Result<&'a str, WireError> {
        let len = self.length()?;
        if len > max {
            return Err(over_limit(limit, len, max));
        }
        let at = self.pos;
        std::str::from_utf8(self.take(len)?)
            .map_err(|_| self.malformed(format!("the string at byte {at} is not UTF-8")))
    }

    /// A sequence's count: at most `max`, and no more elements than the remaining bytes not
    /// promised to other elements can hold when each takes at least `elem_bytes_min`. The
    /// caller may then reserve exactly, and calls [`Reader::begin`] before each element.
    pub(crate) fn count(
        &mut self,
        limit: Limit,
        max: usize,
        elem_bytes_min: usize,
    ) -> Result<usize, WireError> {
        let n = self.length()?;
        if n > max {
            return Err(over_limit(limit, n, max));
        }
        let remaining = self.remaining().saturating_sub(self.promised);
        let needed = n.saturating_mul(elem_bytes_min);
        if needed > remaining {
            return Err(self.malformed(format!(
                "{limit} is declared as {n}, but each takes at least {elem_bytes_min} bytes \
                 and only {remaining} remain"
            )));
        }
        self.promised += needed;
        Ok(n)
    }

    /// An element of a counted sequence begins: its smallest encoding is no longer promised.
    pub(crate) fn begin(&mut self, elem_bytes_min: usize) {
        self.promised = self.promised.saturating_sub(elem_bytes_min);
    }

    /// Ends the decode: a frame carries exactly one value.
    pub(crate) fn finish(self) -> Result<(), WireError> {
        match self.remaining() {
            0 => Ok(()),
            extra => Err(self.malformed(format!("{extra} trailing bytes after the body"))),
        }
    }

    fn length(&mut self) -> Result<usize, WireError> {
        let len = self.u64()?;
        usize::try_from(len).map_err(|_| self.malformed(format!("length {len} overflows usize")))
    }

    fn take(&mut self, len: usize) -> Result<&'a [u8], WireError> {
        if len > self.remaining() {
            return Err(self.malformed(format!(
                "{len} bytes declared at byte {}, only {} remain",
                self.pos,
                self.remaining()
            )));
        }
        let out = &self.buf[self.pos..self.pos + len];
        self.pos += len;
        Ok(out)
    }

    fn byte(&mut self) -> Result<u8, WireError> {
        let byte = *self
            .buf
            .get(self.pos)
            .ok_or_else(|| self.malformed("the body ends early".to_owned()))?;
        self.pos += 1;
        Ok(byte)
    }

    /// An unsigned LEB128 varint of a `bits`-wide integer, refused exactly where postcard
    /// refuses it: more than `ceil(bits / 7)` bytes, or a last byte with bits beyond `bits`.
    fn varint(&mut self, bits: u32) -> Result<u128, WireError> {
        let bytes_max = bits.div_ceil(7);
        let last_byte_max = (1u8 << (bits % 7)) - 1;
        let mut value = 0u128;
        for byte_idx in 0..bytes_max {
            let byte = self.byte()?;
            value |= u128::from(byte & 0x7f) << (7 * byte_idx);
            if byte & 0x80 == 0 {
                if byte_idx == bytes_max - 1 && byte > last_byte_max {
                    break;
                }
                return Ok(value);
            }
        }
        Err(self.malformed(format!("bad varint for a {bits}-bit integer")))
    }

    fn malformed(&self, reason: String) -> WireError {
        WireError::Body {
            reason: format!("{reason} (at byte {} of {})", self.pos, self.buf.len()),
        }
    }
}

/// postcard's slice flavour, plus one thing: when postcard asks how many bytes remain (it does
/// so exactly when a sequence begins), the answer is also left for the sequence's visitor.
pub(crate) struct Tracked<'de> {
    buf: &'de [u8],
    pos: usize,
}

impl<'de> Tracked<'de> {
    pub(crate) fn new(buf: &'de [u8]) -> Self {
        REMAINING.with(|remaining| remaining.set(None));
        PROMISED.with(|promised| promised.set(0));
        Tracked { buf, pos: 0 }
    }
}

impl Drop for Tracked<'_> {
    fn drop(&mut self) {
        REMAINING.with(|remaining| remaining.set(None));
        PROMISED.with(|promised| promised.set(0));
    }
}

impl<'de> postcard::de_flavors::Flavor<'de> for Tracked<'de> {
    type Remainder = &'de [u8];
    type Source = &'de [u8];

    fn pop(&mut self) -> postcard::Result<u8> {
        let byte = *self
            .buf
            .get(self.pos)
            .ok_or(postcard::Error::DeserializeUnexpectedEnd)?;
        self.pos += 1;
        Ok(byte)
    }

    fn size_hint(&self) -> Option<usize> {
        let remaining = self.buf.len() - self.pos;
        REMAINING.with(|cell| cell.set(Some(remaining)));
        Some(remaining)
    }

    fn try_take_n(&mut self, ct: usize) -> postcard::Result<&'de [u8]> {
        if ct > self.buf.len() - self.pos {
            return Err(postcard::Error::DeserializeUnexpectedEnd);
        }
        let out = &self.buf[self.pos..self.pos + ct];
        self.pos += ct;
        Ok(out)
    }

    fn finalize(self) -> postcard::Result<&'de [u8]> {
        Ok(&self.buf[self.pos..])
    }
}

/// The error for a count or length over its limit.
pub(crate) fn over_limit(limit: Limit, len: usize, max: usize) -> WireError {
    WireError::OverLimit {
        limit,
        len: len as u64,
        max: max as u64,
    }
}

/// A `Vec` of at most `MAX` elements (`#[serde(deserialize_with = "crate::decode::seq::<_, _,
/// MAX>")]`).
pub(crate) fn seq<'de, D, T, const MAX: usize>(deserializer: D) -> Result<Vec<T>, D::Error>
where
    D: Deserializer<'de>,
    T: Deserialize<'de> + EncodedBytesMin,
{
    bounded(deserializer, Limit::SeqLen, MAX)
}

/// The messages of a send batch: at most [`BATCH_LEN_MAX`].
pub(crate) fn batch<'de, D, T>(deserializer: D) -> Result<Vec<T>, D::Error>
where
    D: Deserializer<'de>,
    T: Deserialize<'de> + EncodedBytesMin,
{
    bounded(deserializer, Limit::BatchLen, BATCH_LEN_MAX)
}

/// A message's keys: at most [`KEYS_MAX`].
pub(crate) fn keys<'de, D, T>(deserializer: D) -> Result<Vec<T>, D::Error>
where
    D: Deserializer<'de>,
    T: Deserialize<'de> + EncodedBytesMin,
{
    bounded(deserializer, Limit::KeysPerMsg, KEYS_MAX)
}

/// A message's properties: at most [`PROPERTIES_MAX`].
pub(crate) fn properties<'de, D, T>(deserializer: D) -> Result<Vec<T>, D::Error>
where
    D: Deserializer<'de>,
    T: Deserialize<'de> + EncodedBytesMin,
{
    bounded(deserializer, Limit::PropertiesPerMsg, PROPERTIES_MAX)
}

/// The limit a serde helper refused last on this thread, for [`crate::decode_body`]: postcard's
/// `Error::custom` drops its message, and the error should still name the limit.
pub(crate) fn take_refusal() -> Option<WireError> {
    REFUSAL.with(Cell::take)
}

thread_local! {
    static REFUSAL: Cell<Option<WireError>> = const { Cell::new(None) };
    /// Bytes remaining when the current sequence began; `None` outside [`Tracked`].
    static REMAINING: Cell<Option<usize>> = const { Cell::new(None) };
    /// As [`Reader`]'s `promised`: bytes owed to elements declared but not yet begun.
    static PROMISED: Cell<usize> = const { Cell::new(0) };
}

fn bounded<'de, D, T>(deserializer: D, limit: Limit, max: usize) -> Result<Vec<T>, D::Error>
where
    D: Deserializer<'de>,
    T: Deserialize<'de> + EncodedBytesMin,
{
    deserializer.deserialize_seq(Bounded {
        limit,
        max,
        elem: PhantomData,
    })
}

struct Bounded<T> {
    limit: Limit,
    max: usize,
    elem: PhantomData<T>,
}

impl<T> Bounded<T> {
    /// Without [`Tracked`]: at most [`PREALLOC_BYTES_MAX`] reserved, then grown as elements
    /// arrive, never past the maximum.
    fn collect_untracked<'de, A>(
        &self,
        declared: Option<usize>,
        mut seq: A,
    ) -> Result<Vec<T>, A::Error>
    where
        A: SeqAccess<'de>,
        T: Deserialize<'de>,
    {
        let declared = declared.unwrap_or(0);
        if declared > self.max {
            return Err(refuse(over_limit(self.limit, declared, self.max)));
        }
        let mut out = Vec::with_capacity(declared.min(PREALLOC_BYTES_MAX / size_of::<T>().max(1)));
        while let Some(elem) = seq.next_element()? {
            if out.len() == self.max {
                return Err(refuse(over_limit(self.limit, out.len() + 1, self.max)));
            }
            out.push(elem);
        }
        Ok(out)
    }
}

fn refuse<E: de::Error>(err: WireError) -> E {
    let text = err.to_string();
    REFUSAL.with(|refusal| refusal.set(Some(err)));
    E::custom(text)
}

impl<'de, T: Deserialize<'de> + EncodedBytesMin> Visitor<'de> for Bounded<T> {
    type Value = Vec<T>;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "a sequence of at most {} elements", self.max)
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Vec<T>, A::Error> {
        // postcard's hint is the declared count, or None when more elements are declared than
        // bytes remain. Asking for it is also what leaves the remaining bytes in REMAINING.
        let declared = seq.size_hint();
        let Some(remaining) = REMAINING.with(Cell::take) else {
            // Not decoding through Tracked: no remaining-bytes count to trust.
            return self.collect_untracked(declared, seq);
        };
        let promised = PROMISED.with(Cell::get);
        let available = remaining.saturating_sub(promised);
        let elem_min = T::ENCODED_BYTES_MIN;
        let n = match declared {
            Some(n) if n > self.max => return Err(refuse(over_limit(self.limit, n, self.max))),
            Some(n) if n.saturating_mul(elem_min) <= available => n,
            _ => {
                let declared = declared.map_or_else(|| "more".to_owned(), |n| n.to_string());
                return Err(refuse(WireError::Body {
                    reason: format!(
                        "{} is declared as {declared}, but each takes at least {elem_min} bytes \
                         and only {available} remain",
                        self.limit,
                    ),
                }));
            }
        };
        PROMISED.with(|cell| cell.set(promised + n * elem_min));
        let mut out = Vec::with_capacity(n);
        for _ in 0..n {
            PROMISED.with(|cell| cell.set(cell.get().saturating_sub(elem_min)));
            match seq.next_element()? {
                Some(elem) => out.push(elem),
                None => break,
            }
        }
        Ok(out)
    }
}
