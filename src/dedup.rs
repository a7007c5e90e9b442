//! Duplicate-event detection: one partition's record of (user, event id) keys and when each expires.
//!
//! A key expires once the watermark reaches `max(event time, watermark when first seen) + ttl`. The
//! check is exact at lookup time (an expired record is treated as absent), so pruning only bounds
//! memory and never changes a result; it runs when the watermark has moved a good part of a ttl.

use hashbrown::HashMap;

use crate::timefmt::Millis;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Seen {
    /// Recorded and not expired under the current watermark.
    Duplicate,
    /// Not recorded, or recorded but expired.
    New,
}

#[derive(Debug, Default)]
pub struct Dedup {
    expiry: HashMap<u64, Millis>,
    ttl: Millis,
    pruned_at: Millis,
}

impl Dedup {
    pub fn new(ttl: Millis) -> Dedup {
        Dedup {
            expiry: HashMap::new(),
            ttl,
            pruned_at: Millis::MIN,
        }
    }

    #[inline]
    pub fn check(&self, key: u64, wm: Millis) -> Seen {
        match self.expiry.get(&key) {
            Some(&exp) if wm < exp => Seen::Duplicate,
            _ => Seen::New,
        }
    }

    /// Checks `key` and, when it is new (or expired) and `record` is set, records it with expiry
    /// `max(t, wm) + ttl` — the check and the record in one map lookup.
    #[inline]
    pub fn observe(&mut self, key: u64, t: Millis, wm: Millis, record: bool) -> Seen {
        let expiry = t.max(wm).saturating_add(self.ttl);
        match self.expiry.entry(key) {
            hashbrown::hash_map::Entry::Occupied(e) if wm < *e.get() => Seen::Duplicate,
            hashbrown::hash_map::Entry::Occupied(mut e) => {
                if record {
                    e.insert(expiry);
                }
                Seen::New
            }
            hashbrown::hash_map::Entry::Vacant(v) => {
                if record {
                    v.insert(expiry);
                }
                Seen::New
            }
        }
    }

    /// Records a counted event's key.
    #[inline]
    pub fn record(&mut self, key: u64, t: Millis, wm: Millis) {
        self.expiry.insert(key, t.max(wm).saturating_add(self.ttl));
    }

    /// Drops expired records when the watermark moved at least an eighth of the ttl since last time.
    pub fn prune(&mut self, wm: Millis) {
        if wm == Millis::MIN
            || (self.pruned_at != Millis::MIN && wm.saturating_sub(self.pruned_at) < self.ttl / 8)
        {
            return;
        }
        self.pruned_at = wm;
        self.expiry.retain(|_, exp| wm < *exp);
    }

    pub fn len(&self) -> usize {
        self.expiry.len()
    }

    pub fn is_empty(&self) -> bool {
        self.expiry.is_empty()
    }

    /// Approximate heap bytes, for the summary's `peak_state_bytes`.
    pub fn heap_bytes(&self) -> usize {
        self.expiry.capacity() * (std::mem::size_of::<(u64, Millis)>() + 1)
    }

    pub fn entries(&self) -> impl Iterator<Item = (u64, Millis)> + '_ {
        self.expiry.iter().map(|(k, v)| (*k, *v))
    }

    pub fn insert_raw(&mut self, key: u64, expiry: Millis) {
        self.expiry.insert(key, expiry);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ttl_boundary() {
        let mut d = Dedup::new(100);
        assert_eq!(d.check(1, 0), Seen::New);
        d.record(1, 50, 10); // expiry = max(50, 10) + 100 = 150
        assert_eq!(d.check(1, 149), Seen::Duplicate);
        assert_eq!(d.check(1, 150), Seen::New);
    }

    #[test]
    fn historical_event_uses_the_watermark() {
        let mut d = Dedup::new(100);
        d.record(7, -1_000_000, 5_000); // years old: expiry = wm + ttl
        assert_eq!(d.check(7, 5_099), Seen::Duplicate);
        assert_eq!(d.check(7, 5_100), Seen::New);
    }

    #[test]
    fn observe_checks_then_records_only_when_asked() {
        let mut d = Dedup::new(100);
        assert_eq!(d.observe(1, 50, 10, false), Seen::New);
        assert_eq!(d.check(1, 10), Seen::New, "a late event is not recorded");
        assert_eq!(d.observe(1, 50, 10, true), Seen::New);
        assert_eq!(d.observe(1, 50, 149, true), Seen::Duplicate);
        assert_eq!(
            d.observe(1, 50, 150, true),
            Seen::New,
            "expired: recorded again"
        );
        assert_eq!(d.check(1, 249), Seen::Duplicate);
    }

    #[test]
    fn prune_keeps_live_records() {
        let mut d = Dedup::new(80);
        d.record(1, 0, Millis::MIN);
        d.record(2, 100, Millis::MIN);
        d.prune(90);
        assert_eq!(d.len(), 1);
        assert_eq!(d.check(2, 90), Seen::Duplicate);
    }
}
