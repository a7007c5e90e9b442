//! Duplicate-event detection: one partition's record of (user, event id) keys and when each expires.
//!
//! A key expires once the watermark reaches `max(event time, watermark when first seen) + ttl`. The
//! check is exact at lookup time (an expired record is treated as absent), so pruning only bounds
//! memory and never changes a result; it runs when the watermark has moved a good part of a ttl.

use crate::timefmt::Millis;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Seen {
    /// Recorded and not expired under the current watermark.
    Duplicate,
    /// Not recorded, or recorded but expired.
    New,
}

/// Marks an empty slot. No real expiry is this small: event times are range-checked at parse time.
const EMPTY: Millis = Millis::MIN;
const MIN_BITS: u32 = 10;

/// The records: an open-addressing table (linear probing) of (key, expiry) pairs in one flat array.
/// It holds every event id of a ttl's worth of events (millions), so a lookup is a cache miss;
/// unlike a general-purpose map, its slot is known from the key alone, so the partition
/// [`prefetch`](Dedup::prefetch)es it a few events ahead.
#[derive(Debug)]
pub struct Dedup {
    slots: Vec<(u64, Millis)>,
    bits: u32,
    len: usize,
    ttl: Millis,
    pruned_at: Millis,
}

impl Dedup {
    pub fn new(ttl: Millis) -> Dedup {
        Dedup {
            slots: vec![(0, EMPTY); 1 << MIN_BITS],
            bits: MIN_BITS,
            len: 0,
            ttl,
            pruned_at: Millis::MIN,
        }
    }

    #[inline]
    fn home(&self, key: u64) -> usize {
        (key.wrapping_mul(0x9E37_79B9_7F4A_7C15) >> (64 - self.bits)) as usize
    }

    /// The slot holding `key`, or the empty slot where it would go.
    #[inline]
    fn slot(&self, key: u64) -> usize {
        let mask = self.slots.len() - 1;
        let mut i = self.home(key);
        loop {
            let (k, exp) = self.slots[i];
            if exp == EMPTY || k == key {
                return i;
            }
            i = (i + 1) & mask;
        }
    }

    /// Asks the CPU to start loading the slot of `key`.
    #[inline]
    pub fn prefetch(&self, key: u64) {
        crate::entries::prefetch(self.slots.as_ptr().wrapping_add(self.home(key)));
    }

    #[cfg(test)]
    pub fn check(&self, key: u64, wm: Millis) -> Seen {
        match self.slots[self.slot(key)] {
            (_, exp) if exp != EMPTY && wm < exp => Seen::Duplicate,
            _ => Seen::New,
        }
    }

    /// Checks `key` and, when it is new (or expired) and `record` is set, records it with expiry
    /// `max(t, wm) + ttl` — the check and the record in one probe.
    #[inline]
    pub fn observe(&mut self, key: u64, t: Millis, wm: Millis, record: bool) -> Seen {
        let expiry = t.max(wm).saturating_add(self.ttl);
        let i = self.slot(key);
        let exp = self.slots[i].1;
        if exp != EMPTY && wm < exp {
            return Seen::Duplicate;
        }
        if record {
            self.put(i, key, expiry);
        }
        Seen::New
    }

    /// Records a counted event's key.
    #[cfg(test)]
    pub fn record(&mut self, key: u64, t: Millis, wm: Millis) {
        let i = self.slot(key);
        self.put(i, key, t.max(wm).saturating_add(self.ttl));
    }

    /// Stores (key, expiry) in slot `i` (found by [`slot`](Self::slot)), growing when needed.
    #[inline]
    fn put(&mut self, i: usize, key: u64, expiry: Millis) {
        let expiry = expiry.max(EMPTY + 1);
        if self.slots[i].1 != EMPTY {
            self.slots[i].1 = expiry;
            return;
        }
        self.slots[i] = (key, expiry);
        self.len += 1;
        if self.len * 8 > self.slots.len() * 7 {
            self.rebuild(self.bits + 1, |_| true);
        }
    }

    /// Re-inserts the records `keep` accepts into a table of `2^bits` slots.
    fn rebuild(&mut self, bits: u32, mut keep: impl FnMut(Millis) -> bool) {
        let old = std::mem::replace(&mut self.slots, vec![(0, EMPTY); 1 << bits]);
        self.bits = bits;
        self.len = 0;
        let mask = self.slots.len() - 1;
        for (k, exp) in old {
            if exp == EMPTY || !keep(exp) {
                continue;
            }
            let mut i = self.home(k);
            while self.slots[i].1 != EMPTY {
                i = (i + 1) & mask;
            }
            self.slots[i] = (k, exp);
            self.len += 1;
        }
    }

    /// Drops expired records when the watermark moved at least an eighth of the ttl since last time.
    pub fn prune(&mut self, wm: Millis) {
        if wm == Millis::MIN
            || (self.pruned_at != Millis::MIN && wm.saturating_sub(self.pruned_at) < self.ttl / 8)
        {
            return;
        }
        self.pruned_at = wm;
        self.remove_expired(wm);
        // Shrink once mostly empty (a burst of ids has expired); otherwise keep the memory: a
        // steady stream refills it, and reallocating would fault every page in again.
        if self.bits > MIN_BITS && self.len * 16 < self.slots.len() {
            let mut bits = MIN_BITS;
            while self.len * 16 > (7usize << bits) {
                bits += 1;
            }
            self.rebuild(bits, |_| true);
        }
    }

    /// Deletes every record with `expiry ≤ wm` in place (backward-shift deletion, so no tombstones).
    fn remove_expired(&mut self, wm: Millis) {
        let n = self.slots.len();
        let mask = n - 1;
        // Scanning from an empty slot means no run of occupied slots wraps around the scan's start,
        // and every record a deletion shifts back lands at or after the scan position.
        let Some(start) = self.slots.iter().position(|s| s.1 == EMPTY) else {
            return;
        };
        let mut step = 1;
        while step < n {
            let i = (start + step) & mask;
            let exp = self.slots[i].1;
            if exp == EMPTY || wm < exp {
                step += 1;
                continue;
            }
            // Delete slot i: pull back each later record of the run whose home allows it.
            let mut hole = i;
            let mut j = (i + 1) & mask;
            while self.slots[j].1 != EMPTY {
                let home = self.home(self.slots[j].0);
                if (j.wrapping_sub(hole) & mask) <= (j.wrapping_sub(home) & mask) {
                    self.slots[hole] = self.slots[j];
                    hole = j;
                }
                j = (j + 1) & mask;
            }
            self.slots[hole] = (0, EMPTY);
            self.len -= 1;
            // Slot i now holds a shifted record (or nothing): look at it again.
        }
    }

    pub fn len(&self) -> usize {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Approximate heap bytes, for the summary's `peak_state_bytes`.
    pub fn heap_bytes(&self) -> usize {
        self.slots.capacity() * std::mem::size_of::<(u64, Millis)>()
    }

    pub fn entries(&self) -> impl Iterator<Item = (u64, Millis)> + '_ {
        self.slots.iter().copied().filter(|s| s.1 != EMPTY)
    }

    pub fn insert_raw(&mut self, key: u64, expiry: Millis) {
        let i = self.slot(key);
        self.put(i, key, expiry);
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

    proptest::proptest! {
        /// Same answers as a plain map with the same expiry rule, through growth and prunes, with
        /// keys that share their high bits (as a partition's keys do) or collide in the home slot.
        #[test]
        fn behaves_like_a_map(ops in proptest::collection::vec((0u64..1500, 0i64..1000, 0i64..20, proptest::bool::ANY), 1..6000)) {
            let mut d = Dedup::new(100);
            let mut model: std::collections::HashMap<u64, Millis> = std::collections::HashMap::new();
            let mut wm = 0;
            for (i, (k, t, step, record)) in ops.into_iter().enumerate() {
                let key = (7u64 << 32) | (k << 20);
                wm += step;
                let want = match model.get(&key) {
                    Some(&exp) if wm < exp => Seen::Duplicate,
                    _ => Seen::New,
                };
                if want == Seen::New && record {
                    model.insert(key, t.max(wm) + 100);
                }
                proptest::prop_assert_eq!(d.observe(key, t, wm, record), want);
                if i % 97 == 0 {
                    d.prune(wm);
                }
            }
            for (&k, &exp) in &model {
                let want = if wm < exp { Seen::Duplicate } else { Seen::New };
                proptest::prop_assert_eq!(d.check(k, wm), want);
            }
        }
    }
}
