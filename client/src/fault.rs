//! Latency fault tolerance (RocketMQ's `MQFaultStrategy`), sans-IO: a broker that failed or
//! answered slowly is avoided for a back-off that grows with its latency, then tried again.
//! Time is passed in, so tests drive it without clocks.

use std::collections::HashMap;
use std::time::{Duration, Instant};

/// Latency thresholds (ms) and the back-off each earns, as fractions of the failure back-off
/// (RocketMQ: 550 ms → 30 s, 1 s → 60 s, 2 s → 120 s, 3 s → 180 s, 15 s → 600 s, with a 30 s
/// failure back-off).
const LATENCY_STEPS_MS: [u64; 7] = [50, 100, 550, 1_000, 2_000, 3_000, 15_000];
const BACKOFF_FACTORS: [f64; 7] = [0.0, 0.0, 1.0, 2.0, 4.0, 6.0, 20.0];

/// Per-broker counters, for tests and metrics.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct BrokerCounters {
    /// Sends attempted on the broker.
    pub attempts: u64,
    /// Attempts that failed.
    pub failures: u64,
    /// Times the broker was skipped because it was backing off.
    pub avoided: u64,
}

#[derive(Clone, Copy, Debug, Default)]
struct Item {
    not_before: Option<Instant>,
    counters: BrokerCounters,
}

/// Which brokers to avoid, and for how long.
#[derive(Debug)]
pub struct FaultTolerance {
    failure_backoff: Duration,
    items: HashMap<String, Item>,
}

impl FaultTolerance {
    /// Failures back off for `failure_backoff` (30 s by default); slow answers for a multiple
    /// of it that grows with their latency.
    pub fn new(failure_backoff: Duration) -> Self {
        FaultTolerance {
            failure_backoff,
            items: HashMap::new(),
        }
    }

    /// Whether `broker` may be tried at `now`.
    pub fn is_available(&self, broker: &str, now: Instant) -> bool {
        self.items
            .get(broker)
            .and_then(|item| item.not_before)
            .is_none_or(|not_before| now >= not_before)
    }

    /// Records that `broker` was skipped.
    pub fn note_avoided(&mut self, broker: &str) {
        self.items
            .entry(broker.to_owned())
            .or_default()
            .counters
            .avoided += 1;
    }

    /// Records an attempt on `broker`. An attempt on a broker that was backing off is a
    /// probe: the broker stays avoided by everyone else until the probe's outcome is known,
    /// so a broker that is still down gets one attempt per back-off period, not one per sender.
    pub fn note_attempt(&mut self, broker: &str, now: Instant) {
        let backoff = self.failure_backoff;
        let item = self.items.entry(broker.to_owned()).or_default();
        item.counters.attempts += 1;
        if item.not_before.is_some() {
            item.not_before = Some(now + backoff);
        }
    }

    /// Records how an attempt ended: a failure backs off for the failure back-off, a slow
    /// success for the back-off its latency earns.
    pub fn note_outcome(&mut self, broker: &str, latency: Duration, failed: bool, now: Instant) {
        let item = self.items.entry(broker.to_owned()).or_default();
        let backoff = if failed {
            item.counters.failures += 1;
            self.failure_backoff
        } else {
            let latency_ms = latency.as_millis() as u64;
            let step = LATENCY_STEPS_MS
                .iter()
                .rposition(|step| latency_ms >= *step);
            step.map_or(Duration::ZERO, |step| {
                self.failure_backoff.mul_f64(BACKOFF_FACTORS[step])
            })
        };
        item.not_before = (!backoff.is_zero()).then(|| now + backoff);
    }

    /// Counters of every broker seen.
    pub fn counters(&self) -> HashMap<String, BrokerCounters> {
        self.items
            .iter()
            .map(|(name, item)| (name.clone(), item.counters))
            .collect()
    }
}

#[cfg(test)]
mod tests;
