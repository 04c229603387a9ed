//! The durable-position gate: every acknowledgement waits here until the log is durable up
//! to the end of its send. What "durable" means is one rule over the log's positions: today
//! "written to the OS" (async flush) or "fdatasynced" (sync flush); replication adds "and
//! the replica has it" as one more position, and nothing else in the write path changes.
//! Pure: no I/O.

use std::collections::VecDeque;

use crate::store::config::FlushMode;

/// How far the log has got.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Positions {
    /// End of what was handed to the OS (`pwrite` returned).
    pub written: u64,
    /// End of what `fdatasync` made durable.
    pub synced: u64,
}

/// Which position an acknowledgement waits for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AckRule {
    /// Async flush: the bytes reached the OS (they survive `kill -9`, not power loss).
    Written,
    /// Sync flush: the bytes were fdatasynced.
    Synced,
}

impl AckRule {
    /// The rule of a flush mode.
    pub fn of(flush: FlushMode) -> Self {
        match flush {
            FlushMode::Sync => AckRule::Synced,
            FlushMode::Async => AckRule::Written,
        }
    }

    /// Up to where an acknowledgement may go out.
    pub fn durable_upto(self, positions: &Positions) -> u64 {
        match self {
            AckRule::Written => positions.written,
            AckRule::Synced => positions.synced,
        }
    }
}

/// Acknowledgements held until their send's end is durable, in log order.
#[derive(Debug)]
pub struct AckGate<T> {
    rule: AckRule,
    held: VecDeque<(u64, T)>,
}

impl<T> AckGate<T> {
    /// An empty gate with `rule`.
    pub fn new(rule: AckRule) -> Self {
        AckGate {
            rule,
            held: VecDeque::new(),
        }
    }

    /// Holds `ack` until the log is durable up to `end`; ends come in log order.
    pub fn hold(&mut self, end: u64, ack: T) {
        if let Some((last, _)) = self.held.back() {
            assert!(*last <= end, "acknowledgements are held in log order");
        }
        self.held.push_back((end, ack));
    }

    /// The acknowledgements whose ends are durable at `positions`, oldest first.
    pub fn release(&mut self, positions: &Positions) -> Vec<T> {
        let durable = self.rule.durable_upto(positions);
        let ready = self
            .held
            .iter()
            .take_while(|(end, _)| *end <= durable)
            .count();
        self.held.drain(..ready).map(|(_, ack)| ack).collect()
    }

    /// Up to where acknowledgements may go out at `positions`.
    pub fn durable_upto(&self, positions: &Positions) -> u64 {
        self.rule.durable_upto(positions)
    }

    /// Every held acknowledgement (to fail them: the log is fenced).
    pub fn drain(&mut self) -> Vec<T> {
        self.held.drain(..).map(|(_, ack)| ack).collect()
    }

    /// How many are held.
    pub fn len(&self) -> usize {
        self.held.len()
    }

    /// Whether none are held.
    pub fn is_empty(&self) -> bool {
        self.held.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sync_acks_wait_for_the_sync_and_async_acks_for_the_write() {
        let mut sync = AckGate::new(AckRule::of(FlushMode::Sync));
        let mut written = AckGate::new(AckRule::of(FlushMode::Async));
        for gate in [&mut sync, &mut written] {
            gate.hold(100, "a");
            gate.hold(250, "b");
            gate.hold(400, "c");
        }
        let after_write = Positions {
            written: 300,
            synced: 0,
        };
        assert!(sync.release(&after_write).is_empty(), "nothing synced yet");
        assert_eq!(written.release(&after_write), vec!["a", "b"]);
        let after_sync = Positions {
            written: 400,
            synced: 250,
        };
        assert_eq!(sync.release(&after_sync), vec!["a", "b"]);
        assert_eq!(sync.len(), 1);
        assert_eq!(written.release(&after_sync), vec!["c"]);
        assert!(written.is_empty());
        assert_eq!(sync.drain(), vec!["c"]);
    }

    #[test]
    #[should_panic(expected = "log order")]
    fn acks_out_of_log_order_are_a_bug() {
        let mut gate = AckGate::new(AckRule::Synced);
        gate.hold(10, ());
        gate.hold(5, ());
    }
}
