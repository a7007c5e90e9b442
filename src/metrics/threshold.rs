//! The threshold kind: "unique users with at least two such events" (`min_count`) or "with a
//! quantity summing to at least three" (`min_sum`), per (key, window), over the window's whole span.
//!
//! Why per-window counters per (user, key): whether a user counts depends on *all* of its events
//! in the window, so the pane-set trick of the unique kind (a user is new to a window once) does
//! not apply. Each (user, key) keeps, for each of its open windows, its event count and sum; the
//! moment a user crosses the threshold in a window, the key's counters of that window gain one
//! user and every event the user had there, and each later event of that user there adds one
//! event. The key's counters live in the same per-spec lanes as the unique kind's, indexed by
//! *window*, so firing just reads them off. The result depends only on which events fall in the
//! window — never on their order or on how users are spread over partitions — and the counters of
//! different partitions add up. State lives only while the window is open: entries of fired
//! windows are dropped as users are touched, and in an amortised sweep.

use hashbrown::HashMap;

use crate::timefmt::Millis;

/// When a user qualifies.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Rule {
    Count(u32),
    /// The sum, in millionths.
    Sum(i64),
}

impl Rule {
    #[inline]
    pub(crate) fn met(self, events: u32, sum: i64) -> bool {
        match self {
            Rule::Count(n) => events >= n,
            Rule::Sum(v) => sum >= v,
        }
    }
}

/// One (user, key)'s counters in one open window.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct UserWindow {
    pub spec: u16,
    pub idx: i64,
    pub events: u32,
    pub sum: i64,
    pub qualified: bool,
}

/// What one event changes in a key's window counters.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Delta {
    /// Users that qualify from now on (0 or 1).
    pub users: u32,
    /// Events that count from now on.
    pub events: u64,
}

/// Records one event (adding `amount` ≥ 0 to the sum) in window `idx` of `spec`. Counts and sums
/// only grow, so a user that qualified stays qualified and the answer is order-independent.
#[inline]
pub fn add(windows: &mut Vec<UserWindow>, spec: u16, idx: i64, amount: i64, rule: Rule) -> Delta {
    let w = match windows.iter().position(|w| w.spec == spec && w.idx == idx) {
        Some(i) => &mut windows[i],
        None => {
            windows.push(UserWindow {
                spec,
                idx,
                events: 0,
                sum: 0,
                qualified: false,
            });
            let last = windows.len() - 1;
            &mut windows[last]
        }
    };
    w.events = w.events.saturating_add(1);
    w.sum = w.sum.saturating_add(amount);
    if w.qualified {
        Delta {
            users: 0,
            events: 1,
        }
    } else if rule.met(w.events, w.sum) {
        w.qualified = true;
        Delta {
            users: 1,
            events: u64::from(w.events),
        }
    } else {
        Delta::default()
    }
}

/// Drops the windows that fired (`horizon[spec]` is the first window not fired).
#[inline]
pub fn forget_fired(windows: &mut Vec<UserWindow>, horizon: &[i64]) {
    windows.retain(|w| w.idx >= horizon[w.spec as usize]);
}

/// The per-(user, key) counters of one partition's threshold metrics.
#[derive(Debug, Default)]
pub struct Thresholds {
    pub users: HashMap<(u64, u32), Vec<UserWindow>>,
    /// `users.len()` after the last sweep: the next waits until it has grown by half.
    swept_len: usize,
}

impl Thresholds {
    /// Sweeps out every fired window when the table grew by half since the last sweep (amortised
    /// O(1) per entry); returns the keys of the entries dropped (their references end).
    pub fn sweep(&mut self, horizon: &[i64], dropped: &mut Vec<u32>) {
        if self.users.len() < 4096 + self.swept_len + self.swept_len / 2 {
            return;
        }
        self.users.retain(|&(_, key), windows| {
            forget_fired(windows, horizon);
            let keep = !windows.is_empty();
            if !keep {
                dropped.push(key);
            }
            keep
        });
        self.swept_len = self.users.len();
    }

    pub fn heap_bytes(&self) -> usize {
        self.users.capacity() * 48
            + self
                .users
                .values()
                .map(|v| v.capacity() * std::mem::size_of::<UserWindow>())
                .sum::<usize>()
    }
}

/// The windows of a spec of `slide` and `panes` panes that contain `t`: `[p − panes + 1, p]`.
#[inline]
pub fn windows_of(t: Millis, slide: Millis, panes: i64) -> std::ops::RangeInclusive<i64> {
    let p = t.div_euclid(slide);
    p - panes + 1..=p
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_user_counts_from_the_nth_event_with_all_its_events() {
        let mut w = Vec::new();
        let rule = Rule::Count(3);
        assert_eq!(add(&mut w, 0, 7, 0, rule), Delta::default());
        assert_eq!(add(&mut w, 0, 7, 0, rule), Delta::default());
        assert_eq!(
            add(&mut w, 0, 7, 0, rule),
            Delta {
                users: 1,
                events: 3
            }
        );
        assert_eq!(
            add(&mut w, 0, 7, 0, rule),
            Delta {
                users: 0,
                events: 1
            }
        );
        assert_eq!(
            add(&mut w, 0, 8, 0, rule),
            Delta::default(),
            "another window"
        );
        assert_eq!(add(&mut w, 1, 7, 0, rule), Delta::default(), "another spec");
        forget_fired(&mut w, &[8, 0]);
        assert_eq!(w.len(), 2);
    }

    #[test]
    fn sums_qualify_once() {
        let mut w = Vec::new();
        let rule = Rule::Sum(3_000_000);
        assert_eq!(add(&mut w, 0, 1, 2_500_000, rule), Delta::default());
        assert_eq!(add(&mut w, 0, 1, 0, rule), Delta::default());
        assert_eq!(
            add(&mut w, 0, 1, 500_000, rule),
            Delta {
                users: 1,
                events: 3
            }
        );
        assert_eq!(
            add(&mut w, 0, 1, 0, rule),
            Delta {
                users: 0,
                events: 1
            }
        );
    }

    #[test]
    fn windows_containing_a_time() {
        assert_eq!(windows_of(90, 10, 3), 7..=9);
        assert_eq!(windows_of(-1, 10, 1), -1..=-1);
    }
}
