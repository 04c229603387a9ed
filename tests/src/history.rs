//! The history checker (RELIABILITY.md §8.1): what producers attempted and had acknowledged,
//! against what consumers read, per message.
//!
//! A message is named by its body, which the load makes unique (`<producer>-<seq>-…`), so a
//! send that never returned an id (aborted, failed, killed) is still known when it is read.
//! [`History`] records sends (`invoke`, then `ok` with the broker's id, or `fail`); [`Reads`]
//! records what was read at which `(queue, offset)`; [`check`] compares them into a
//! [`Report`]:
//! - **lost**: acknowledged, never read;
//! - **unexpected**: read, never attempted (or read under another id than acknowledged);
//! - **inconsistent offsets**: two different messages read at one `(queue, offset)`;
//! - **order**: for an ordered key, acknowledged messages read out of their send order;
//! - **duplicates** (reported, not a violation): one message read at two positions, which only a
//!   retried indeterminate send should cause; **recovered**: sends that failed or never
//!   returned, read anyway.
//!
//! `History` and `Reads` lock internally so load tasks can share them behind an `Arc`.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::fmt;
use std::sync::{Mutex, MutexGuard};

use bytes::Bytes;
use quiver_client::{MessageId, StoredMessage};

/// Sends as the producers saw them.
#[derive(Default)]
pub struct History {
    sends: Mutex<Sends>,
}

#[derive(Default)]
struct Sends {
    by_body: HashMap<Bytes, Send>,
    /// Counts kept beside the map: load loops ask for them on every wake-up.
    n_acked: usize,
    n_failed: usize,
}

#[derive(Clone, Debug)]
struct Send {
    /// Ordered key and the send's place among that key's sends, when ordered.
    key: Option<(String, u64)>,
    outcome: Outcome,
}

/// How a send ended, as the producer saw it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Outcome {
    /// Not returned (yet): may or may not be stored.
    Pending,
    /// Acknowledged with this id.
    Acked(MessageId),
    /// Returned an error: may or may not be stored (a timeout is indeterminate).
    Failed,
}

impl History {
    /// A new, empty history.
    pub fn new() -> Self {
        Self::default()
    }

    /// A send of `body` begins (unordered).
    pub fn invoke(&self, body: &Bytes) {
        self.invoke_with(body, None);
    }

    /// An ordered send of `body` begins: it is `seq`-th of `key`'s sends; the key's acked
    /// sends must be read in `seq` order.
    pub fn invoke_ordered(&self, body: &Bytes, key: &str, seq: u64) {
        self.invoke_with(body, Some((key.to_owned(), seq)));
    }

    /// The send of `body` was acknowledged with `msg_id`.
    pub fn ok(&self, body: &Bytes, msg_id: MessageId) {
        self.set(body, Outcome::Acked(msg_id));
    }

    /// The send of `body` returned an error.
    pub fn fail(&self, body: &Bytes) {
        self.set(body, Outcome::Failed);
    }

    /// Acknowledged sends so far.
    pub fn acked(&self) -> usize {
        lock(&self.sends).n_acked
    }

    /// Sends that returned an error so far.
    pub fn failed(&self) -> usize {
        lock(&self.sends).n_failed
    }

    fn invoke_with(&self, body: &Bytes, key: Option<(String, u64)>) {
        let previous = lock(&self.sends).by_body.insert(
            body.clone(),
            Send {
                key,
                outcome: Outcome::Pending,
            },
        );
        assert!(
            previous.is_none(),
            "the load sent body {:?} twice: bodies must be unique",
            String::from_utf8_lossy(body)
        );
    }

    fn set(&self, body: &Bytes, outcome: Outcome) {
        let mut sends = lock(&self.sends);
        let send = sends
            .by_body
            .get_mut(body)
            .expect("ok/fail of a send that was never invoked");
        assert_eq!(send.outcome, Outcome::Pending, "a send returned twice");
        send.outcome = outcome;
        match outcome {
            Outcome::Acked(_) => sends.n_acked += 1,
            Outcome::Failed => sends.n_failed += 1,
            Outcome::Pending => {}
        }
    }
}

/// What consumers read, by position.
#[derive(Default)]
pub struct Reads {
    at: Mutex<ReadsAt>,
}

#[derive(Default)]
struct ReadsAt {
    /// `(queue, offset)` → every distinct message read there (id, body).
    by_position: BTreeMap<(String, u64), Vec<(MessageId, Bytes)>>,
    /// Every distinct body read, for a cheap count.
    bodies: HashSet<Bytes>,
}

impl Reads {
    /// Nothing read yet.
    pub fn new() -> Self {
        Self::default()
    }

    /// Everything `read_all`-style reading returned: messages by queue.
    pub fn of<Q: fmt::Display>(queues: impl IntoIterator<Item = (Q, Vec<StoredMessage>)>) -> Self {
        let reads = Reads::new();
        for (queue, msgs) in queues {
            reads.record_all(&queue, &msgs);
        }
        reads
    }

    /// Messages read from `queue` (each carries its offset).
    pub fn record_all(&self, queue: &impl fmt::Display, msgs: &[StoredMessage]) {
        for msg in msgs {
            self.record(queue, msg.offset, msg.msg_id, msg.body.clone());
        }
    }

    /// One message read at `(queue, offset)`. Reading the same message there again (a
    /// consumer re-pulling) is not recorded twice.
    pub fn record(&self, queue: &impl fmt::Display, offset: u64, msg_id: MessageId, body: Bytes) {
        let mut at = lock(&self.at);
        let seen = at
            .by_position
            .entry((queue.to_string(), offset))
            .or_default();
        if !seen.iter().any(|(id, b)| *id == msg_id && *b == body) {
            seen.push((msg_id, body.clone()));
            at.bodies.insert(body);
        }
    }

    /// Distinct messages read so far.
    pub fn messages(&self) -> usize {
        lock(&self.at).bodies.len()
    }
}

/// The verdict of [`check`]. Every list holds examples (at most [`EXAMPLES_MAX`]) beside its
/// full count.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Report {
    /// Sends that returned an id.
    pub acked: usize,
    /// Distinct messages read.
    pub read: usize,
    /// Acknowledged, never read.
    pub lost: Violations,
    /// Read, never attempted, or read under an id other than the one acknowledged.
    pub unexpected: Violations,
    /// Two different messages read at one `(queue, offset)`.
    pub inconsistent_offsets: Violations,
    /// An ordered key's acknowledged sends read out of send order.
    pub order: Violations,
    /// One message read at more than one position (reported, bounded by retries).
    pub duplicates: Violations,
    /// Failed or unreturned sends that were read anyway (reported).
    pub recovered: usize,
}

/// Most examples a [`Violations`] keeps.
pub const EXAMPLES_MAX: usize = 5;

/// A count and a few examples.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Violations {
    /// How many.
    pub count: usize,
    /// The first few, described.
    pub examples: Vec<String>,
}

impl Violations {
    fn add(&mut self, example: impl FnOnce() -> String) {
        self.count += 1;
        if self.examples.len() < EXAMPLES_MAX {
            self.examples.push(example());
        }
    }

    /// True when there are none.
    pub fn is_empty(&self) -> bool {
        self.count == 0
    }
}

impl Report {
    /// Panics naming every violation: lost, unexpected, inconsistent offsets, order.
    /// Duplicates and recoveries are only reported.
    #[track_caller]
    pub fn assert_clean(&self, what: &str) {
        assert!(self.is_clean(), "{what}: {self}");
    }

    /// No lost, unexpected, inconsistent-offset or order violation.
    pub fn is_clean(&self) -> bool {
        self.lost.is_empty()
            && self.unexpected.is_empty()
            && self.inconsistent_offsets.is_empty()
            && self.order.is_empty()
    }
}

impl fmt::Display for Report {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} acked, {} read: {} lost, {} unexpected, {} inconsistent offsets, {} order \
             violations, {} duplicates, {} recovered",
            self.acked,
            self.read,
            self.lost.count,
            self.unexpected.count,
            self.inconsistent_offsets.count,
            self.order.count,
            self.duplicates.count,
            self.recovered
        )?;
        for (name, list) in [
            ("lost", &self.lost),
            ("unexpected", &self.unexpected),
            ("inconsistent offset", &self.inconsistent_offsets),
            ("order", &self.order),
            ("duplicate", &self.duplicates),
        ] {
            for example in &list.examples {
                write!(f, "\n  {name}: {example}")?;
            }
        }
        Ok(())
    }
}

/// Compares what was sent with what was read.
pub fn check(history: &History, reads: &Reads) -> Report {
    let sends = lock(&history.sends);
    let sends_acked = sends.n_acked;
    let sends = &sends.by_body;
    let at = lock(&reads.at);
    let at = &at.by_position;
    let mut report = Report {
        acked: sends_acked,
        ..Report::default()
    };
    // Where each body was read, in (queue, offset) order.
    let mut positions: HashMap<&Bytes, Vec<(&str, u64)>> = HashMap::new();
    for ((queue, offset), seen) in at.iter() {
        if seen.len() > 1 {
            report.inconsistent_offsets.add(|| {
                let ids: Vec<String> = seen.iter().map(|(id, _)| id.to_string()).collect();
                format!("{queue} offset {offset}: {}", ids.join(", "))
            });
        }
        for (msg_id, body) in seen {
            positions.entry(body).or_default().push((queue, *offset));
            match sends.get(body).map(|send| send.outcome) {
                None => report
                    .unexpected
                    .add(|| format!("{msg_id} at {queue} offset {offset}: never attempted")),
                Some(Outcome::Acked(acked_id)) if acked_id != *msg_id => {
                    report.unexpected.add(|| {
                        format!("{msg_id} at {queue} offset {offset}: acknowledged as {acked_id}")
                    });
                }
                Some(_) => {}
            }
        }
    }
    report.read = positions.len();
    for (body, send) in sends.iter() {
        let read_at = positions.get(body);
        match (send.outcome, read_at) {
            (Outcome::Acked(msg_id), None) => report.lost.add(|| msg_id.to_string()),
            (Outcome::Pending | Outcome::Failed, Some(_)) => report.recovered += 1,
            _ => {}
        }
        if let Some(read_at) = read_at
            && read_at.len() > 1
        {
            report
                .duplicates
                .add(|| format!("{:?} read at {read_at:?}", String::from_utf8_lossy(body)));
        }
    }
    check_order(sends, &positions, &mut report);
    report
}

/// For each ordered key, its acknowledged sends' first reads, in (queue, offset) order, must
/// come in send order.
fn check_order(
    sends: &HashMap<Bytes, Send>,
    positions: &HashMap<&Bytes, Vec<(&str, u64)>>,
    report: &mut Report,
) {
    // Per key: (where its first read was, its send seq).
    type Position<'a> = (&'a str, u64);
    let mut by_key: HashMap<&str, Vec<(Position<'_>, u64)>> = HashMap::new();
    for (body, send) in sends {
        if let (Some((key, seq)), Outcome::Acked(_), Some(read_at)) =
            (&send.key, send.outcome, positions.get(body))
        {
            by_key.entry(key).or_default().push((read_at[0], *seq));
        }
    }
    for (key, mut reads) in by_key {
        reads.sort_unstable();
        for pair in reads.windows(2) {
            let ((at_a, seq_a), (at_b, seq_b)) = (pair[0], pair[1]);
            if seq_a > seq_b {
                report.order.add(|| {
                    format!(
                        "key {key}: send {seq_a} read at {at_a:?} before send {seq_b} at {at_b:?}"
                    )
                });
            }
        }
    }
}

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

#[cfg(test)]
mod tests;
