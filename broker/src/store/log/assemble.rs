//! The writer's batch assembler: gives each message of a send its queue offset, id and
//! broker time, encodes its record at its log position and makes its index entries. Pure:
//! no I/O, so it is unit-tested on its own; the writer's I/O loop (`writer.rs`) writes what
//! it assembled, syncs and acknowledges.

use std::collections::HashMap;

use quiver_proto::{MessageId, SendMessage};

use crate::store::Appended;
use crate::store::index::dispatcher::IndexEntry;
use crate::store::log::record::{self, Placement};

/// Next offset of every queue the writer has seen, and the ids it hands out.
#[derive(Debug, Default)]
pub struct Assembler {
    /// `(topic_id, queue_id)` → next offset.
    next_offsets: HashMap<(u32, u32), u64>,
    ids: IdGen,
}

impl Assembler {
    /// Starts from each queue's next offset after recovery.
    pub fn new(next_offsets: HashMap<(u32, u32), u64>) -> Self {
        Assembler {
            next_offsets,
            ids: IdGen::default(),
        }
    }

    /// Appends the records of one send (topic `topic_id`, queue `queue_id`) to `out`, whose
    /// first byte sits at log position `out_pos`; pushes their index entries to `entries`.
    /// The last record carries the batch-end flag, so recovery keeps the send whole or not
    /// at all.
    pub fn place(
        &mut self,
        (topic_id, queue_id): (u32, u32),
        messages: &[SendMessage],
        stored_ms: u64,
        (out, out_pos): (&mut Vec<u8>, u64),
        entries: &mut Vec<IndexEntry>,
    ) -> Appended {
        assert!(!messages.is_empty(), "a send holds at least one message");
        let key = (topic_id, queue_id);
        let first_offset = self.next_offsets.get(&key).copied().unwrap_or(0);
        let last_idx = messages.len() - 1;
        let mut msg_ids = Vec::with_capacity(messages.len());
        for (msg_idx, msg) in messages.iter().enumerate() {
            let msg_id = msg.msg_id.unwrap_or_else(|| self.ids.next(stored_ms));
            let at = Placement {
                topic_id,
                queue_id,
                offset: first_offset + msg_idx as u64,
                stored_ms,
                msg_id,
                batch_end: msg_idx == last_idx,
            };
            let start = out.len();
            record::encode(msg, &at, out);
            entries.push(IndexEntry {
                topic_id,
                queue_id,
                offset: at.offset,
                pos: out_pos + start as u64,
                size: (out.len() - start) as u32,
                tag_hash: quiver_proto::message::tag_hash(msg.tag.as_deref()),
                stored_ms,
                msg_id,
                keys: msg.keys.clone(),
                timer: crate::store::index::timers::timer_of(&msg.properties),
            });
            msg_ids.push(msg_id);
        }
        self.next_offsets
            .insert(key, first_offset + messages.len() as u64);
        Appended {
            queue_id,
            first_offset,
            msg_ids,
        }
    }
}

/// The ids the writer assigns: UUIDv7 (RFC 9562) with the broker time in the top 48 bits
/// and, in the 74 random bits, a 32-bit nonce drawn once per writer and a 42-bit sequence.
/// Unique across brokers and restarts (the nonce) and within a writer (the sequence),
/// time-ordered, and free of the system call a fresh random draw per id costs (it was half
/// of the assembler's time per message).
#[derive(Debug)]
struct IdGen {
    nonce: u32,
    seq: u64,
}

impl Default for IdGen {
    fn default() -> Self {
        IdGen {
            nonce: uuid::Uuid::now_v7().as_u128() as u32,
            seq: 0,
        }
    }
}

impl IdGen {
    const SEQ_BITS: u32 = 42;

    fn next(&mut self, now_ms: u64) -> MessageId {
        let seq = self.seq;
        self.seq = (self.seq + 1) & ((1 << Self::SEQ_BITS) - 1);
        let random = (u128::from(self.nonce) << Self::SEQ_BITS) | u128::from(seq);
        let (rand_a, rand_b) = ((random >> 62) & 0xfff, random & ((1 << 62) - 1));
        let ms = u128::from(now_ms) & 0xffff_ffff_ffff;
        MessageId((ms << 80) | (0x7 << 76) | (rand_a << 64) | (0b10 << 62) | rand_b)
    }
}

#[cfg(test)]
mod tests;
