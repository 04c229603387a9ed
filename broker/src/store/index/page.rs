//! Consume-index pages: one redb row holds the index entries of `PAGE_SLOTS` consecutive
//! offsets of a queue, so a dispatcher commit rewrites each touched page once instead of
//! inserting one B-tree row per message, and a pull reads a few rows for hundreds of
//! messages. Pure: no redb, no I/O.
//!
//! ```text
//! header (16 bytes, little endian)
//!  0  u8   version      PAGE_VERSION
//!  1  u8   reserved     0
//!  2  u16  first        slots below this were cut by retention (and are zero)
//!  4  u16  filled       one past the highest slot ever written; the value holds slots [0, filled)
//!  6  u16  reserved     0
//!  8  u64  tag_bits     bit (tag_hash % 64) set for the tag hash of every slot written
//! slot i (24 bytes) at 16 + 24 i: the entry of offset page_no * PAGE_SLOTS + i
//!  0  u64  pos          log position of the record
//!  8  u32  size         record length; 0 = no entry (a repair gap, or cut)
//! 12  u32  tag_hash     message::tag_hash of the record's tag (0 = no tag)
//! 16  u64  stored_ms    broker time
//! ```
//!
//! A record is at least `record::HEADER_BYTES` long, so `size = 0` never names a record.

/// Offsets per page (measured against 256: see docs/store.md).
pub const PAGE_SLOTS: u64 = 64;
/// Header bytes.
pub const PAGE_HEADER_BYTES: usize = 16;
/// Bytes per slot.
pub const SLOT_BYTES: usize = 24;
/// Page format version.
pub const PAGE_VERSION: u8 = 1;
/// Largest encoded page.
pub const PAGE_BYTES_MAX: usize = PAGE_HEADER_BYTES + PAGE_SLOTS as usize * SLOT_BYTES;

const _: () = assert!(
    PAGE_SLOTS <= u16::MAX as u64,
    "slot indexes fit the u16 header fields"
);

/// The page holding `offset`.
pub fn page_no(offset: u64) -> u64 {
    offset / PAGE_SLOTS
}

/// `offset`'s slot in its page.
pub fn slot_idx(offset: u64) -> usize {
    (offset % PAGE_SLOTS) as usize
}

/// The first offset of page `page_no`.
pub fn first_offset(page_no: u64) -> u64 {
    page_no * PAGE_SLOTS
}

/// The bit a tag hash sets in a page's `tag_bits`.
pub fn tag_bit(tag_hash: u32) -> u64 {
    1u64 << (tag_hash % 64)
}

/// One message's consume-index entry.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Slot {
    /// Log position of the record.
    pub pos: u64,
    /// Record length (never 0 for a real entry).
    pub size: u32,
    /// Tag hash, for filtering without reading the log.
    pub tag_hash: u32,
    /// Broker time.
    pub stored_ms: u64,
}

/// Why stored page bytes were refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PageError {
    /// The bytes do not hold a header, or not the slots the header declares.
    #[error("consume page of {len} bytes does not match its header (filled {filled})")]
    BadLength {
        /// Bytes present.
        len: usize,
        /// Declared filled slots.
        filled: usize,
    },
    /// An unknown version or out-of-range header field.
    #[error("consume page header is malformed: {0}")]
    Malformed(&'static str),
}

/// A checked view of stored page bytes.
#[derive(Clone, Copy, Debug)]
pub struct PageView<'a> {
    bytes: &'a [u8],
}

impl<'a> PageView<'a> {
    /// Checks `bytes` (read from the index) before anything uses them.
    pub fn new(bytes: &'a [u8]) -> Result<Self, PageError> {
        if bytes.len() < PAGE_HEADER_BYTES {
            return Err(PageError::BadLength {
                len: bytes.len(),
                filled: 0,
            });
        }
        if bytes[0] != PAGE_VERSION {
            return Err(PageError::Malformed("unknown page version"));
        }
        let view = PageView { bytes };
        let filled = view.filled();
        if filled as u64 > PAGE_SLOTS || view.first() > filled {
            return Err(PageError::Malformed("first or filled out of range"));
        }
        if bytes.len() != PAGE_HEADER_BYTES + filled * SLOT_BYTES {
            return Err(PageError::BadLength {
                len: bytes.len(),
                filled,
            });
        }
        Ok(view)
    }

    /// Slots below this were cut.
    pub fn first(&self) -> usize {
        u16_at(self.bytes, 2) as usize
    }

    /// One past the highest slot written.
    pub fn filled(&self) -> usize {
        u16_at(self.bytes, 4) as usize
    }

    /// The union of `tag_bit` over every slot written.
    pub fn tag_bits(&self) -> u64 {
        u64_at(self.bytes, 8)
    }

    /// The entry in slot `idx`, if there is one.
    pub fn slot(&self, idx: usize) -> Option<Slot> {
        if idx < self.first() || idx >= self.filled() {
            return None;
        }
        let at = PAGE_HEADER_BYTES + idx * SLOT_BYTES;
        let slot = Slot {
            pos: u64_at(self.bytes, at),
            size: u32_at(self.bytes, at + 8),
            tag_hash: u32_at(self.bytes, at + 12),
            stored_ms: u64_at(self.bytes, at + 16),
        };
        (slot.size != 0).then_some(slot)
    }

    /// `(slot index, entry)` of every entry from slot `from` on, in order.
    pub fn entries_from(&self, from: usize) -> impl Iterator<Item = (usize, Slot)> + '_ {
        (from.max(self.first())..self.filled()).filter_map(|idx| Some((idx, self.slot(idx)?)))
    }
}

/// A page being built or changed, encoded in place.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PageBuf {
    bytes: Vec<u8>,
}

impl Default for PageBuf {
    fn default() -> Self {
        let mut bytes = vec![0u8; PAGE_HEADER_BYTES];
        bytes[0] = PAGE_VERSION;
        PageBuf { bytes }
    }
}

impl PageBuf {
    /// A copy of a stored page, to change.
    pub fn from_view(view: PageView<'_>) -> Self {
        PageBuf {
            bytes: view.bytes.to_vec(),
        }
    }

    /// The encoded page.
    pub fn as_bytes(&self) -> &[u8] {
        &self.bytes
    }

    /// A view of this page.
    pub fn view(&self) -> PageView<'_> {
        PageView { bytes: &self.bytes }
    }

    /// Writes `slot` at `idx` (below `PAGE_SLOTS`, not below `first`).
    pub fn put(&mut self, idx: usize, slot: Slot) {
        assert!(idx < PAGE_SLOTS as usize, "slot {idx} is outside the page");
        assert!(slot.size != 0, "a slot entry names a record");
        assert!(
            idx >= self.view().first(),
            "slot {idx} was cut by retention"
        );
        let filled = self.view().filled();
        if idx >= filled {
            self.bytes
                .resize(PAGE_HEADER_BYTES + (idx + 1) * SLOT_BYTES, 0);
            set_u16(&mut self.bytes, 4, (idx + 1) as u16);
        }
        let at = PAGE_HEADER_BYTES + idx * SLOT_BYTES;
        self.bytes[at..at + 8].copy_from_slice(&slot.pos.to_le_bytes());
        self.bytes[at + 8..at + 12].copy_from_slice(&slot.size.to_le_bytes());
        self.bytes[at + 12..at + 16].copy_from_slice(&slot.tag_hash.to_le_bytes());
        self.bytes[at + 16..at + 24].copy_from_slice(&slot.stored_ms.to_le_bytes());
        let bits = self.view().tag_bits() | tag_bit(slot.tag_hash);
        self.bytes[8..16].copy_from_slice(&bits.to_le_bytes());
    }

    /// Cuts every slot below `idx` (retention): they read as absent from then on.
    pub fn cut_below(&mut self, idx: usize) {
        let view = self.view();
        let (first, filled) = (view.first(), view.filled());
        let idx = idx.min(PAGE_SLOTS as usize);
        if idx <= first {
            return;
        }
        let zero_to = idx.min(filled);
        self.bytes
            [PAGE_HEADER_BYTES + first * SLOT_BYTES..PAGE_HEADER_BYTES + zero_to * SLOT_BYTES]
            .fill(0);
        if idx > filled {
            self.bytes.resize(PAGE_HEADER_BYTES + idx * SLOT_BYTES, 0);
            set_u16(&mut self.bytes, 4, idx as u16);
        }
        set_u16(&mut self.bytes, 2, idx as u16);
    }
}

fn u16_at(bytes: &[u8], at: usize) -> u16 {
    u16::from_le_bytes([bytes[at], bytes[at + 1]])
}

fn u32_at(bytes: &[u8], at: usize) -> u32 {
    let mut out = [0u8; 4];
    out.copy_from_slice(&bytes[at..at + 4]);
    u32::from_le_bytes(out)
}

fn u64_at(bytes: &[u8], at: usize) -> u64 {
    let mut out = [0u8; 8];
    out.copy_from_slice(&bytes[at..at + 8]);
    u64::from_le_bytes(out)
}

fn set_u16(bytes: &mut [u8], at: usize, value: u16) {
    bytes[at..at + 2].copy_from_slice(&value.to_le_bytes());
}

#[cfg(test)]
mod tests;
