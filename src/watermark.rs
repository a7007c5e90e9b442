//! The event-time watermark: the stream position's belief about how far event time has progressed.
//!
//! Production's lesson: sources whose clocks are hours off must not drag everyone else's events into
//! lateness. The default `median` strategy follows the median time of the last `sample` accepted
//! events, which a few skewed clocks cannot move; `max` is Flink's bounded out-of-orderness. Both are
//! recomputed every `interval` accepted events, so the watermark is a pure function of the stream —
//! never of threads, batching or wall-clock time.

use crate::config::{Strategy, WatermarkConfig};
use crate::timefmt::Millis;

#[derive(Debug, Clone)]
pub struct Watermark {
    strategy: Strategy,
    interval: u64,
    out_of_orderness: Millis,
    /// Ring of the last `sample` accepted times (only filled for the median strategy).
    ring: Vec<Millis>,
    capacity: usize,
    next: usize,
    max_seen: Millis,
    /// Accepted events observed so far.
    count: u64,
    current: Millis,
    scratch: Vec<Millis>,
}

impl Watermark {
    pub fn new(cfg: &WatermarkConfig) -> Watermark {
        let capacity = match cfg.strategy {
            Strategy::Median => cfg.sample,
            Strategy::Max => 0,
        };
        Watermark {
            strategy: cfg.strategy,
            interval: cfg.interval,
            out_of_orderness: cfg.max_out_of_orderness,
            ring: Vec::with_capacity(capacity),
            capacity,
            next: 0,
            max_seen: Millis::MIN,
            count: 0,
            current: Millis::MIN,
            scratch: Vec::with_capacity(capacity),
        }
    }

    /// The watermark the next event sees. `i64::MIN` until the first update.
    #[inline]
    pub fn current(&self) -> Millis {
        self.current
    }

    /// Accepted events observed so far.
    pub fn count(&self) -> u64 {
        self.count
    }

    /// Feeds the next accepted event's time. Returns true when the watermark advanced.
    #[inline]
    pub fn observe(&mut self, t: Millis) -> bool {
        match self.strategy {
            Strategy::Median => {
                if self.ring.len() < self.capacity {
                    self.ring.push(t);
                } else {
                    self.ring[self.next] = t;
                }
                self.next += 1;
                if self.next == self.capacity {
                    self.next = 0;
                }
            }
            Strategy::Max => self.max_seen = self.max_seen.max(t),
        }
        self.count += 1;
        if !self.count.is_multiple_of(self.interval) {
            return false;
        }
        let base = match self.strategy {
            Strategy::Median => {
                self.scratch.clear();
                self.scratch.extend_from_slice(&self.ring);
                let mid = (self.scratch.len() - 1) / 2;
                *self.scratch.select_nth_unstable(mid).1
            }
            Strategy::Max => self.max_seen,
        };
        let candidate = base.saturating_sub(self.out_of_orderness);
        if candidate > self.current {
            self.current = candidate;
            true
        } else {
            false
        }
    }

    /// The state a checkpoint needs: (count, current, max_seen, the sample in arrival order).
    pub fn snapshot(&self) -> (u64, Millis, Millis, Vec<Millis>) {
        let mut sample = Vec::with_capacity(self.ring.len());
        if self.ring.len() == self.capacity {
            sample.extend_from_slice(&self.ring[self.next..]);
            sample.extend_from_slice(&self.ring[..self.next]);
        } else {
            sample.extend_from_slice(&self.ring);
        }
        (self.count, self.current, self.max_seen, sample)
    }

    /// Rebuilds the state saved by [`Watermark::snapshot`].
    pub fn restore(&mut self, count: u64, current: Millis, max_seen: Millis, sample: Vec<Millis>) {
        self.count = count;
        self.current = current;
        self.max_seen = max_seen;
        self.ring = sample;
        self.ring.truncate(self.capacity);
        self.next = if self.ring.len() == self.capacity {
            0
        } else {
            self.ring.len()
        };
        if self.capacity > 0 && self.next == self.capacity {
            self.next = 0;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cfg(strategy: Strategy, sample: usize, interval: u64, ooo: Millis) -> WatermarkConfig {
        WatermarkConfig {
            strategy,
            sample,
            interval,
            max_out_of_orderness: ooo,
        }
    }

    #[test]
    fn updates_only_every_interval() {
        let mut w = Watermark::new(&cfg(Strategy::Max, 0, 3, 10));
        assert!(!w.observe(100));
        assert!(!w.observe(200));
        assert_eq!(w.current(), i64::MIN);
        assert!(w.observe(150));
        assert_eq!(w.current(), 190);
        w.observe(1000);
        w.observe(1000);
        w.observe(1000);
        assert_eq!(w.current(), 990);
    }

    #[test]
    fn median_ignores_a_skewed_clock() {
        let mut w = Watermark::new(&cfg(Strategy::Median, 5, 5, 0));
        for t in [10, 11, 8 * 3_600_000, 12, 13] {
            w.observe(t);
        }
        // sorted: 10 11 12 13 8h → lower median index 2 = 12
        assert_eq!(w.current(), 12);
        let mut m = Watermark::new(&cfg(Strategy::Max, 5, 5, 0));
        for t in [10, 11, 8 * 3_600_000, 12, 13] {
            m.observe(t);
        }
        assert_eq!(m.current(), 8 * 3_600_000);
    }

    #[test]
    fn lower_median_of_even_sample_and_monotone() {
        let mut w = Watermark::new(&cfg(Strategy::Median, 4, 4, 1));
        for t in [40, 10, 30, 20] {
            w.observe(t);
        }
        assert_eq!(w.current(), 19); // sorted 10 20 30 40, index 1
        for t in [0, 0, 0, 0] {
            w.observe(t);
        }
        assert_eq!(w.current(), 19, "never goes back");
    }

    #[test]
    fn snapshot_round_trip() {
        let c = cfg(Strategy::Median, 3, 2, 0);
        let mut a = Watermark::new(&c);
        for t in [5, 1, 9, 7, 3] {
            a.observe(t);
        }
        let (count, cur, max, sample) = a.snapshot();
        let mut b = Watermark::new(&c);
        b.restore(count, cur, max, sample);
        for t in [2, 8, 6, 4] {
            assert_eq!(a.observe(t), b.observe(t));
            assert_eq!(a.current(), b.current());
        }
    }
}
