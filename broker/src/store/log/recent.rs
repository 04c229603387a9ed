//! The newest log bytes, kept in memory for tailing readers.
//!
//! With direct writes (`O_DIRECT`) the page cache never holds what the writer just wrote, so a
//! consumer reading at the log's end would go to the device for every pull. The writer copies
//! each write here as well; a read whose range lies wholly inside is answered from memory.
//! One ring of a fixed, configured size (`store.tail_cache_bytes`), allocated on first use.

use std::sync::RwLock;

use bytes::Bytes;

/// A ring of the last `cap` bytes written to the log, addressed by log position.
pub struct RecentBytes {
    cap: usize,
    ring: RwLock<Ring>,
}

struct Ring {
    /// `cap` bytes once the first write arrives; the byte at position `p` is at `p % cap`.
    buf: Vec<u8>,
    /// Position just past the newest byte held.
    end: u64,
    /// Bytes held (at most `cap`), ending at `end`.
    len: usize,
}

impl RecentBytes {
    /// A ring of `cap` bytes (0: keep nothing).
    pub fn new(cap: usize) -> Self {
        RecentBytes {
            cap,
            ring: RwLock::new(Ring {
                buf: Vec::new(),
                end: 0,
                len: 0,
            }),
        }
    }

    /// Records that `bytes` were written at `pos`. A write that does not continue the last
    /// one (a new log after recovery, a replica's first copy) starts the ring over.
    pub fn push(&self, pos: u64, bytes: &[u8]) {
        if self.cap == 0 || bytes.is_empty() {
            return;
        }
        let mut ring = self.ring.write().unwrap_or_else(|p| p.into_inner());
        if ring.buf.is_empty() {
            ring.buf = vec![0; self.cap];
        }
        if pos != ring.end {
            ring.len = 0;
        }
        // Only the last `cap` bytes can stay.
        let skip = bytes.len().saturating_sub(self.cap);
        let (pos, bytes) = (pos + skip as u64, &bytes[skip..]);
        let at = (pos % self.cap as u64) as usize;
        let first = bytes.len().min(self.cap - at);
        ring.buf[at..at + first].copy_from_slice(&bytes[..first]);
        ring.buf[..bytes.len() - first].copy_from_slice(&bytes[first..]);
        ring.end = pos + bytes.len() as u64;
        ring.len = (ring.len + skip + bytes.len()).min(self.cap);
    }

    /// The `len` bytes at `pos`, if all of them are held.
    pub fn get(&self, pos: u64, len: usize) -> Option<Bytes> {
        if len == 0 || len > self.cap {
            return None;
        }
        let ring = self.ring.read().unwrap_or_else(|p| p.into_inner());
        let start = ring.end - ring.len as u64;
        if pos < start || pos + len as u64 > ring.end {
            return None;
        }
        let at = (pos % self.cap as u64) as usize;
        let first = len.min(self.cap - at);
        let mut out = Vec::with_capacity(len);
        out.extend_from_slice(&ring.buf[at..at + first]);
        out.extend_from_slice(&ring.buf[..len - first]);
        Some(Bytes::from(out))
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    #[test]
    fn holds_the_last_cap_bytes_across_the_wrap() {
        let recent = RecentBytes::new(8);
        recent.push(100, b"abcde");
        recent.push(105, b"fghij");
        assert_eq!(recent.get(102, 8).as_deref(), Some(&b"cdefghij"[..]));
        assert_eq!(recent.get(101, 2), None, "evicted");
        assert_eq!(recent.get(108, 3), None, "past the end");
        assert_eq!(recent.get(109, 1).as_deref(), Some(&b"j"[..]));
    }

    #[test]
    fn a_gap_starts_over() {
        let recent = RecentBytes::new(16);
        recent.push(0, b"abcd");
        recent.push(10, b"wxyz");
        assert_eq!(recent.get(0, 4), None);
        assert_eq!(recent.get(10, 4).as_deref(), Some(&b"wxyz"[..]));
    }

    #[test]
    fn a_write_longer_than_the_ring_keeps_its_tail() {
        let recent = RecentBytes::new(4);
        recent.push(0, b"ab");
        recent.push(2, b"cdefghij");
        assert_eq!(recent.get(6, 4).as_deref(), Some(&b"ghij"[..]));
        assert_eq!(recent.get(5, 4), None);
    }

    #[test]
    fn zero_capacity_keeps_nothing() {
        let recent = RecentBytes::new(0);
        recent.push(0, b"abc");
        assert_eq!(recent.get(0, 1), None);
    }

    proptest! {
        /// Against a model: the whole log as a Vec, of which the last `cap` bytes are held.
        #[test]
        fn reads_match_the_log(
            cap in 1usize..64,
            writes in proptest::collection::vec(proptest::collection::vec(any::<u8>(), 0..40), 1..20),
            reads in proptest::collection::vec((0usize..400, 0usize..70), 1..20),
        ) {
            let recent = RecentBytes::new(cap);
            let mut log = Vec::new();
            for w in &writes {
                recent.push(log.len() as u64, w);
                log.extend_from_slice(w);
            }
            let held_from = log.len().saturating_sub(cap);
            for (pos, len) in reads {
                let got = recent.get(pos as u64, len);
                if len > 0 && pos >= held_from && pos + len <= log.len() {
                    prop_assert_eq!(got.as_deref(), Some(&log[pos..pos + len]));
                } else {
                    prop_assert_eq!(got, None);
                }
            }
        }
    }
}
