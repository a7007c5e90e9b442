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

pub mod attribution;
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
    /// `after = …`: an attribution metric (see `attribution`).
    pub attribution: Option<Attribution>,
}

/// Which anchors a conversion is credited to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Touch {
    Last,
    First,
    Any,
}

/// Whose time picks the window of a credit.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WindowOn {
    Anchor,
    Conversion,
}

/// "B after A, within T": the metric's `filter` selects the conversions B, `after` the anchors A.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Attribution {
    /// Index into `Config::filters`.
    pub after: usize,
    pub within: crate::timefmt::Millis,
    pub touch: Touch,
    pub on: WindowOn,
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
            attribution: None,
        }
    }

    pub fn counts_in(&self, spec: usize) -> bool {
        spec < 64 && self.windows >> spec & 1 == 1
    }

    pub fn has_threshold(&self) -> bool {
        self.threshold != Threshold::None
    }
}

/// A number in millionths, from its shortest decimal text (the digits that parse back to the
/// same `f64`, which for a JSON number is its text unless it has more than 17 significant digits):
/// truncated towards zero after the 6th decimal, or rounded up with `ceil` (for the threshold `V`,
/// so that `sum ≥ V` is exact). Saturating. Going through the text, not `x · 1e6` in floating
/// point, keeps `8.2` at 8 200 000 (`8.2 · 1e6` is 8 199 999.999…).
pub fn decimal_micros(x: f64, ceil: bool) -> i64 {
    if !x.is_finite() {
        return 0;
    }
    let text = format!("{}", x.abs());
    let (int, frac) = text.split_once('.').unwrap_or((&text, ""));
    let mut micros: i128 = 0;
    for d in int.bytes() {
        micros = (micros * 10 + i128::from(d - b'0')).min(i128::from(i64::MAX));
    }
    let mut six = frac
        .as_bytes()
        .iter()
        .take(6)
        .map(|d| i128::from(d - b'0'))
        .collect::<Vec<_>>();
    six.resize(6, 0);
    micros = micros * 1_000_000 + six.iter().fold(0, |a, &d| a * 10 + d);
    let rest = frac.len() > 6 && frac.as_bytes()[6..].iter().any(|&d| d != b'0');
    if ceil && rest && x > 0.0 {
        micros += 1;
    }
    let signed = if x < 0.0 { -micros } else { micros };
    signed.clamp(i128::from(i64::MIN), i128::from(i64::MAX)) as i64
}

/// A field's number in millionths, truncated towards zero (see [`decimal_micros`]).
pub fn to_micros(x: f64) -> i64 {
    decimal_micros(x, false)
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
        assert_eq!(to_micros(8.2), 8_200_000, "not 8.2 * 1e6 in floating point");
        assert_eq!(to_micros(0.29), 290_000);
        assert_eq!(decimal_micros(16.4, true), 16_400_000);
        assert_eq!(decimal_micros(0.0000015, true), 2);
        assert_eq!(decimal_micros(0.0000015, false), 1);
    }
}
