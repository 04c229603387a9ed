//! A function's log: a bounded ring of its lines (what the guest logged or printed, and the
//! host's own lines about it), numbered so `quiver fn logs --follow` reads on from where it
//! was, with a watch to wait for the next line.

use std::collections::VecDeque;
use std::sync::Mutex;

use quiver_proto::requests::function::FnLogLine;
use tokio::sync::watch;

/// The ring.
pub struct FnLog {
    lines: Mutex<Ring>,
    /// The newest sequence number.
    newest: watch::Sender<u64>,
}

struct Ring {
    lines: VecDeque<FnLogLine>,
    capacity: usize,
    next_seq: u64,
    /// Lines pushed out of the ring, or over a call's limit.
    dropped: u64,
}

impl FnLog {
    /// A ring of `capacity` lines.
    pub fn new(capacity: usize) -> Self {
        FnLog {
            lines: Mutex::new(Ring {
                lines: VecDeque::with_capacity(capacity.min(1024)),
                capacity: capacity.max(1),
                next_seq: 1,
                dropped: 0,
            }),
            newest: watch::channel(0).0,
        }
    }

    fn ring(&self) -> std::sync::MutexGuard<'_, Ring> {
        self.lines.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Adds lines (`(level, text)`) of one call of `version`, and counts `dropped` more.
    pub fn push<'a>(
        &self,
        version: u32,
        time_ms: u64,
        lines: impl IntoIterator<Item = (&'a str, String)>,
        dropped: u64,
    ) {
        let newest = {
            let mut ring = self.ring();
            ring.dropped += dropped;
            for (level, text) in lines {
                if ring.lines.len() == ring.capacity {
                    ring.lines.pop_front();
                    ring.dropped += 1;
                }
                let seq = ring.next_seq;
                ring.next_seq += 1;
                ring.lines.push_back(FnLogLine {
                    seq,
                    time_ms,
                    level: level.to_owned(),
                    text,
                    version,
                });
            }
            ring.next_seq - 1
        };
        self.newest.send_replace(newest);
    }

    /// Up to `max` lines after `after`, and how many lines were dropped in all.
    pub fn read(&self, after: u64, max: usize) -> (Vec<FnLogLine>, u64) {
        let ring = self.ring();
        let lines = ring
            .lines
            .iter()
            .filter(|l| l.seq > after)
            .take(max)
            .cloned()
            .collect();
        (lines, ring.dropped)
    }

    /// A watch of the newest sequence number.
    pub fn watch(&self) -> watch::Receiver<u64> {
        self.newest.subscribe()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_ring_keeps_the_newest_lines_and_counts_the_rest() {
        let log = FnLog::new(3);
        log.push(1, 5, (0..5).map(|i| ("info", format!("line {i}"))), 2);
        let (lines, dropped) = log.read(0, 10);
        let texts: Vec<&str> = lines.iter().map(|l| l.text.as_str()).collect();
        assert_eq!(texts, ["line 2", "line 3", "line 4"]);
        assert_eq!(lines[0].seq, 3);
        assert_eq!(dropped, 4);
        let (after, _) = log.read(4, 10);
        assert_eq!(after.len(), 1);
        assert_eq!(*log.watch().borrow(), 5);
    }
}
