//! What a function did since the broker started: counters, and a histogram of handler time
//! per message (log-spaced buckets, four per doubling: a percentile is within 19 %).

use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};

use quiver_proto::requests::function::FnCounters;

/// Buckets: four per doubling from 1 µs; the last holds everything past ~2^40 µs.
const BUCKETS: usize = 4 * 40;

/// Counters of one function.
#[derive(Default)]
pub struct FnStats {
    pub handled: AtomicU64,
    pub acked: AtomicU64,
    pub retried: AtomicU64,
    pub dead_lettered: AtomicU64,
    pub traps: AtomicU64,
    pub calls: AtomicU64,
    pub emitted: AtomicU64,
    pub filtered: AtomicU64,
    handler_us: Mutex<Histogram>,
    last_error: Mutex<Option<String>>,
}

/// Counts per bucket.
pub struct Histogram {
    counts: [u64; BUCKETS],
}

impl Default for Histogram {
    fn default() -> Self {
        Histogram {
            counts: [0; BUCKETS],
        }
    }
}

impl Histogram {
    fn bucket(us: u64) -> usize {
        if us <= 1 {
            return 0;
        }
        // 4 × log2(us), from the leading bit and the two bits after it.
        let log2 = 63 - u64::from(us.leading_zeros());
        let frac = if log2 >= 2 {
            (us >> (log2 - 2)) & 3
        } else {
            (us << (2 - log2)) & 3
        };
        ((log2 * 4 + frac) as usize).min(BUCKETS - 1)
    }

    /// The upper bound of bucket `i` (µs).
    fn upper(i: usize) -> u64 {
        let (log2, frac) = ((i / 4) as u32, (i % 4) as u64);
        let base = 1u64 << log2;
        base + base * (frac + 1) / 4
    }

    /// Adds `n` samples of `us`.
    pub fn record(&mut self, us: u64, n: u64) {
        self.counts[Self::bucket(us)] += n;
    }

    /// The `q` quantile (0..=1) in µs; 0 without samples.
    pub fn quantile(&self, q: f64) -> u64 {
        let total: u64 = self.counts.iter().sum();
        if total == 0 {
            return 0;
        }
        let rank = ((total as f64) * q).ceil().max(1.0) as u64;
        let mut seen = 0;
        for (i, count) in self.counts.iter().enumerate() {
            seen += count;
            if seen >= rank {
                return Self::upper(i);
            }
        }
        Self::upper(BUCKETS - 1)
    }
}

impl FnStats {
    /// Adds `n` handled messages that took `us` each.
    pub fn record_handler(&self, us: u64, n: u64) {
        self.handler_us
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .record(us, n);
    }

    /// Handler time per message: 50th and 99th percentiles (µs).
    pub fn handler_percentiles(&self) -> (u64, u64) {
        let h = self.handler_us.lock().unwrap_or_else(|p| p.into_inner());
        (h.quantile(0.5), h.quantile(0.99))
    }

    /// Remembers why a call failed.
    pub fn set_error(&self, why: String) {
        *self.last_error.lock().unwrap_or_else(|p| p.into_inner()) = Some(why);
    }

    /// Why the last call failed.
    pub fn last_error(&self) -> Option<String> {
        self.last_error
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    /// The counters on the wire (`compiles` comes from the catalog).
    pub fn counters(&self, compiles: u64) -> FnCounters {
        let get = |c: &AtomicU64| c.load(Ordering::Relaxed);
        FnCounters {
            handled: get(&self.handled),
            acked: get(&self.acked),
            retried: get(&self.retried),
            dead_lettered: get(&self.dead_lettered),
            traps: get(&self.traps),
            compiles,
            calls: get(&self.calls),
            emitted: get(&self.emitted),
            filtered: get(&self.filtered),
        }
    }
}

/// Adds `n` to a counter.
pub fn add(counter: &AtomicU64, n: u64) {
    counter.fetch_add(n, Ordering::Relaxed);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quantiles_are_within_a_bucket_of_the_truth() {
        let mut h = Histogram::default();
        for us in 1..=1000u64 {
            h.record(us, 1);
        }
        let p50 = h.quantile(0.5);
        let p99 = h.quantile(0.99);
        assert!((500..=600).contains(&p50), "p50 {p50}");
        assert!((990..=1200).contains(&p99), "p99 {p99}");
        assert_eq!(Histogram::default().quantile(0.5), 0);
        h.record(u64::MAX, 1);
        assert!(h.quantile(1.0) > 1 << 39);
    }
}
