//! Metrics: what is counted for which events, in which windows, and when a user counts.
//!
//! A metric ([`MetricSpec`]) selects the counted events its filter matches, fans each out to its
//! own keys (its dimensions, with or without the event type) and counts them in its own windows.
//! Two kinds of per-(key, window) state exist, and each key belongs to one metric, so one kind:
//! - **unique** (no threshold): every user seen counts — the pane sets and range bumps of
//!   `state`, O(1) per event whatever the number of windows;
//! - **threshold** (`min_count`, `min_sum`): a user counts once its events (or the sum of a field
//!   over them) in the window reach the threshold — per (user, key) counters per open window
//!   (`threshold`), evaluated over the window's whole span.
//!
//! Both emit the same `(key, window, unique_users, events)` counts, which simply add up across
//! partitions (users are disjoint), so the merge, the sink and the checkpoints stay generic.
//! A config without `[[metrics]]` gets one implicit metric named [`IMPLICIT`]: every event, every
//! dimension and window, by event type, no threshold — exactly the counting of earlier versions.

pub(crate) mod config;
pub mod filter;
pub mod threshold;

use crate::parse::path::FieldPath;

/// The name of the implicit metric of a config without `[[metrics]]`.
pub const IMPLICIT: &str = "all";

/// When a user counts in a (key, window).
#[derive(Debug, Clone, PartialEq)]
pub enum Threshold {
    /// Every user seen.
    None,
    /// At least this many of the metric's events of the key in the window.
    Count(u32),
    /// The sum of a field over those events (in millionths) reaches `micros`.
    Sum { path: FieldPath, micros: i64 },
}

#[derive(Debug, Clone)]
pub struct MetricSpec {
    pub name: String,
    /// Index into `Config::filters`; `None`: every counted event.
    pub filter: Option<usize>,
    /// Indexes into `Config::dimensions`, ascending.
    pub dimensions: Vec<usize>,
    /// Bit `s` set: the metric counts in window spec `s`.
    pub windows: u64,
    /// Group by event type (`false`: the event type column is null and all types share keys).
    pub by_type: bool,
    pub threshold: Threshold,
}

impl MetricSpec {
    /// The implicit metric of a config without `[[metrics]]`.
    pub fn implicit(dimensions: usize, windows: usize) -> MetricSpec {
        MetricSpec {
            name: IMPLICIT.to_string(),
            filter: None,
            dimensions: (0..dimensions).collect(),
            windows: (0..windows).fold(0u64, |m, w| m | 1 << w),
            by_type: true,
            threshold: Threshold::None,
        }
    }

    pub fn counts_in(&self, spec: usize) -> bool {
        spec < 64 && self.windows >> spec & 1 == 1
    }

    pub fn has_threshold(&self) -> bool {
        self.threshold != Threshold::None
    }
}

/// A number in millionths, truncated towards zero (saturating): sums of these are exact, so the
/// order of the events never changes whether a user reaches `min_sum`.
pub fn to_micros(x: f64) -> i64 {
    let m = (x * 1e6).trunc();
    if m.is_nan() { 0 } else { m as i64 }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn micros_truncate_towards_zero() {
        assert_eq!(to_micros(3.0), 3_000_000);
        assert_eq!(to_micros(0.1234567), 123_456);
        assert_eq!(to_micros(-0.1234567), -123_456);
        assert_eq!(to_micros(f64::NAN), 0);
        assert_eq!(to_micros(1e300), i64::MAX);
    }
}
