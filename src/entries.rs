//! The (user, key) → pane sets table of one partition.
//!
//! This is the largest and most randomly accessed structure of a run: one entry per (user, key) seen
//! in a window that is still open, millions on a realistic workload, far beyond the CPU caches. So
//! it is a plain open-addressing table with linear probing over one flat array, instead of a
//! general-purpose map:
//! - an entry (user, key id, and one [`PaneSet`] per pane group) sits in one cache-line-aligned
//!   slot, found with a single memory access in the common case;
//! - the slot an entry lives in is a function of (user, key *hash*), which the parse stage already
//!   computed, so the partition can [`prefetch`](EntryTable::prefetch) the slots of the events a
//!   few positions ahead and overlap those cache misses instead of stalling on each in turn.
//!
//! Entries are never removed one by one (that would need tombstones); [`EntryTable::retain`]
//! rebuilds the table with the entries that still matter, which the caller does only when the
//! table has grown by half since the last time, so it costs O(1) amortised per entry.

/// Panes a (key, user) was seen in, for one pane group: the newest pane `hi`, and bit `i` of `mask`
/// for pane `hi − i`. Older panes that still matter live in the partition's overflow set.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[repr(C)]
pub struct PaneSet {
    pub hi: i64,
    pub mask: u64,
}

/// Slot header: `hi` holds the user hash, `mask` these flags and the key id in the low 32 bits.
const OCCUPIED: u64 = 1 << 63;
/// Some pane of this entry (in any group) may be in the overflow set.
const SPILLED: u64 = 1 << 62;

pub struct EntryTable {
    /// Slot `i` is `units[base + i·stride ..][..1 + groups]`: a header unit, then the pane sets.
    units: Vec<PaneSet>,
    /// First unit of slot 0: aligns slots to 64 bytes (the allocation itself is only 16-aligned).
    base: usize,
    stride: usize,
    groups: usize,
    /// log2 of the number of slots.
    bits: u32,
    len: usize,
}

/// A found or inserted entry: its slot, and whether it was just inserted.
#[derive(Debug, Clone, Copy)]
pub struct Found {
    pub slot: usize,
    pub fresh: bool,
}

const MIN_BITS: u32 = 10;

impl EntryTable {
    pub fn new(groups: usize) -> EntryTable {
        let units = 1 + groups;
        // A power of two up to a cache line (4 units of 16 bytes), so slots never straddle lines.
        let stride = if units <= 4 {
            units.next_power_of_two()
        } else {
            units
        };
        let mut t = EntryTable {
            units: Vec::new(),
            base: 0,
            stride,
            groups,
            bits: MIN_BITS,
            len: 0,
        };
        t.allocate(MIN_BITS);
        t
    }

    fn allocate(&mut self, bits: u32) {
        self.bits = bits;
        let slots = 1usize << bits;
        self.units = vec![PaneSet::default(); slots * self.stride + 3];
        let addr = self.units.as_ptr() as usize;
        self.base = ((64 - addr % 64) % 64) / std::mem::size_of::<PaneSet>();
    }

    /// Number of entries.
    pub fn len(&self) -> usize {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Heap bytes held.
    pub fn heap_bytes(&self) -> usize {
        self.units.capacity() * std::mem::size_of::<PaneSet>()
    }

    #[inline]
    fn home(&self, user: u64, key_hash: u64) -> usize {
        // Both inputs are already well-mixed 64-bit hashes; one multiply spreads their combination.
        let h = (user ^ key_hash.rotate_left(23)).wrapping_mul(0x9E37_79B9_7F4A_7C15);
        (h >> (64 - self.bits)) as usize
    }

    #[inline]
    fn unit(&self, slot: usize) -> usize {
        self.base + slot * self.stride
    }

    /// Asks the CPU to start loading the slot where (user, key) lives or would be inserted.
    #[inline]
    pub fn prefetch(&self, user: u64, key_hash: u64) {
        let at = self.unit(self.home(user, key_hash));
        prefetch(self.units.as_ptr().wrapping_add(at));
    }

    /// Finds the entry of (user, key id), inserting an empty one (all pane sets empty) if absent.
    #[inline]
    /// The caller [`reserve`](Self::reserve)s room first.
    pub fn find_or_insert(&mut self, user: u64, key_hash: u64, key: u32) -> Found {
        debug_assert!((self.len + 1) * 8 <= (7usize << self.bits));
        let mask = (1usize << self.bits) - 1;
        let mut slot = self.home(user, key_hash);
        loop {
            let at = self.unit(slot);
            let h = self.units[at];
            if h.mask & OCCUPIED == 0 {
                self.units[at] = PaneSet {
                    hi: user as i64,
                    mask: OCCUPIED | key as u64,
                };
                self.len += 1;
                return Found { slot, fresh: true };
            }
            if h.hi as u64 == user && h.mask as u32 == key {
                return Found { slot, fresh: false };
            }
            slot = (slot + 1) & mask;
        }
    }

    /// The pane sets of an entry, one per group, and its "spilled" flag.
    #[inline]
    pub fn sets_mut(&mut self, slot: usize) -> (&mut [PaneSet], bool) {
        let at = self.unit(slot);
        let spilled = self.units[at].mask & SPILLED != 0;
        (&mut self.units[at + 1..at + 1 + self.groups], spilled)
    }

    #[inline]
    pub fn mark_spilled(&mut self, slot: usize) {
        let at = self.unit(slot);
        self.units[at].mask |= SPILLED;
    }

    /// Every entry: (user, key id, spilled, pane sets).
    pub fn iter(&self) -> impl Iterator<Item = (u64, u32, bool, &[PaneSet])> + '_ {
        (0..1usize << self.bits).filter_map(move |slot| {
            let at = self.unit(slot);
            let h = self.units[at];
            (h.mask & OCCUPIED != 0).then(|| {
                (
                    h.hi as u64,
                    h.mask as u32,
                    h.mask & SPILLED != 0,
                    &self.units[at + 1..at + 1 + self.groups],
                )
            })
        })
    }

    /// Inserts a restored entry (checkpoint resume). Returns false if it was already present.
    pub fn insert(
        &mut self,
        user: u64,
        key_hash: u64,
        key: u32,
        spilled: bool,
        sets: &[PaneSet],
        hash_of: impl Fn(u32) -> u64,
    ) -> bool {
        self.reserve(1, hash_of);
        let f = self.find_or_insert(user, key_hash, key);
        let at = self.unit(f.slot);
        if spilled {
            self.units[at].mask |= SPILLED;
        }
        self.units[at + 1..at + 1 + self.groups].copy_from_slice(&sets[..self.groups]);
        f.fresh
    }

    /// Keeps the entries for which `keep(user, key id, pane sets)` holds, deleting the others in
    /// place (backward-shift deletion: no tombstones, and no new allocation whose pages would all
    /// fault in again). `hash_of` gives an entry's key hash: its home slot depends on it.
    pub fn retain(
        &mut self,
        mut keep: impl FnMut(u64, u32, &[PaneSet]) -> bool,
        hash_of: impl Fn(u32) -> u64,
    ) {
        let n = 1usize << self.bits;
        let mask = n - 1;
        let g = self.groups;
        let occupied = |t: &EntryTable, slot: usize| t.units[t.unit(slot)].mask & OCCUPIED != 0;
        // Scanning from an empty slot means no run of occupied slots wraps around the scan's start,
        // and every entry a deletion shifts back lands at or after the scan position.
        let Some(start) = (0..n).find(|&slot| !occupied(self, slot)) else {
            return;
        };
        let mut step = 1;
        while step < n {
            let i = (start + step) & mask;
            let at = self.unit(i);
            let h = self.units[at];
            if h.mask & OCCUPIED == 0
                || keep(h.hi as u64, h.mask as u32, &self.units[at + 1..at + 1 + g])
            {
                step += 1;
                continue;
            }
            let mut hole = i;
            let mut j = (i + 1) & mask;
            while occupied(self, j) {
                let hj = self.units[self.unit(j)];
                let home = self.home(hj.hi as u64, hash_of(hj.mask as u32));
                if (j.wrapping_sub(hole) & mask) <= (j.wrapping_sub(home) & mask) {
                    let (from, to) = (self.unit(j), self.unit(hole));
                    self.units.copy_within(from..from + 1 + g, to);
                    hole = j;
                }
                j = (j + 1) & mask;
            }
            let to = self.unit(hole);
            self.units[to..to + 1 + g].fill(PaneSet::default());
            self.len -= 1;
            // Slot i now holds a shifted entry (or nothing): look at it again.
        }
        // Shrink once mostly empty; otherwise keep the memory for the entries to come.
        if self.bits > MIN_BITS && self.len * 16 < n {
            let mut bits = MIN_BITS;
            while (self.len * 3 / 2 + 1) * 8 > (7usize << bits) {
                bits += 1;
            }
            self.rehash(bits, &hash_of);
        }
    }

    /// Makes room for `additional` more entries (call before [`find_or_insert`](Self::find_or_insert)).
    /// `hash_of` gives an entry's key hash: its home slot depends on it and it is not stored.
    #[inline]
    pub fn reserve(&mut self, additional: usize, hash_of: impl Fn(u32) -> u64) {
        if (self.len + additional) * 8 > (7usize << self.bits) {
            self.grow(additional, hash_of);
        }
    }

    #[cold]
    #[inline(never)]
    fn grow(&mut self, additional: usize, hash_of: impl Fn(u32) -> u64) {
        let mut bits = self.bits + 1;
        while (self.len + additional) * 8 > (7usize << bits) {
            bits += 1;
        }
        self.rehash(bits, &hash_of);
    }

    /// Moves every entry into a new table of `2^bits` slots.
    fn rehash(&mut self, bits: u32, hash_of: &impl Fn(u32) -> u64) {
        let old = std::mem::take(&mut self.units);
        let (old_base, old_bits) = (self.base, self.bits);
        let (stride, groups) = (self.stride, self.groups);
        self.allocate(bits);
        self.len = 0;
        for slot in 0..1usize << old_bits {
            let at = old_base + slot * stride;
            if old[at].mask & OCCUPIED != 0 {
                self.move_in(&old[at..at + 1 + groups], hash_of);
            }
        }
    }

    fn move_in(&mut self, entry: &[PaneSet], hash_of: &impl Fn(u32) -> u64) {
        let h = entry[0];
        let user = h.hi as u64;
        let mask = (1usize << self.bits) - 1;
        let mut slot = self.home(user, hash_of(h.mask as u32));
        loop {
            let at = self.unit(slot);
            if self.units[at].mask & OCCUPIED == 0 {
                self.units[at..at + entry.len()].copy_from_slice(entry);
                self.len += 1;
                return;
            }
            slot = (slot + 1) & mask;
        }
    }
}

/// Asks the CPU to start loading the cache line at `p`: a hint that never faults, whatever `p` is.
#[inline]
pub fn prefetch<T>(p: *const T) {
    #[cfg(target_arch = "x86_64")]
    // SAFETY: prefetching is a hint; it never faults, even on an invalid address.
    #[allow(unused_unsafe)]
    unsafe {
        core::arch::x86_64::_mm_prefetch(p.cast::<i8>(), core::arch::x86_64::_MM_HINT_T0);
    }
    #[cfg(not(target_arch = "x86_64"))]
    let _ = p;
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    /// Key hashes are derived from ids in these tests; real ones come from the parser.
    fn hash_of(id: u32) -> u64 {
        xxhash_rust::xxh3::xxh3_64(&id.to_le_bytes())
    }

    #[derive(Debug, Clone)]
    enum Op {
        /// Find or insert (user, key), then set group 0's pane set to (hi, mask).
        Touch(u64, u32, i64, u64),
        /// Keep the entries whose group-0 `hi` is at least this.
        Retain(i64),
    }

    fn op() -> impl proptest::strategy::Strategy<Value = Op> {
        use proptest::prelude::*;
        prop_oneof![
            20 => (0u64..300, 0u32..40, -50i64..50, any::<u64>()).prop_map(|(u, k, h, m)| Op::Touch(u, k, h, m)),
            1 => (-50i64..50).prop_map(Op::Retain),
        ]
    }

    proptest::proptest! {
        /// The table behaves like a map from (user, key) to pane sets through growth and rebuilds,
        /// including users whose hashes collide in the home-slot bits.
        #[test]
        fn behaves_like_a_map(ops in proptest::collection::vec(op(), 1..3000), groups in 1usize..4, spread in proptest::bool::ANY) {
            let mut t = EntryTable::new(groups);
            let mut model: HashMap<(u64, u32), PaneSet> = HashMap::new();
            for op in ops {
                match op {
                    Op::Touch(u, k, hi, mask) => {
                        // Without `spread`, users differ only in low bits: long probe chains.
                        let user = if spread { hash_of(u as u32 + 1000) } else { u };
                        t.reserve(1, hash_of);
                        let f = t.find_or_insert(user, hash_of(k), k);
                        proptest::prop_assert_eq!(f.fresh, !model.contains_key(&(user, k)));
                        let (sets, _) = t.sets_mut(f.slot);
                        proptest::prop_assert_eq!(sets.len(), groups);
                        if f.fresh {
                            proptest::prop_assert!(sets.iter().all(|s| *s == PaneSet::default()));
                        } else {
                            proptest::prop_assert_eq!(sets[0], model[&(user, k)]);
                        }
                        sets[0] = PaneSet { hi, mask };
                        model.insert((user, k), sets[0]);
                    }
                    Op::Retain(min) => {
                        t.retain(|_, _, sets| sets[0].hi >= min, hash_of);
                        model.retain(|_, s| s.hi >= min);
                    }
                }
                proptest::prop_assert_eq!(t.len(), model.len());
            }
            let mut seen: Vec<(u64, u32, PaneSet)> = t.iter().map(|(u, k, _, s)| (u, k, s[0])).collect();
            seen.sort_by_key(|e| (e.0, e.1));
            let mut want: Vec<(u64, u32, PaneSet)> = model.iter().map(|(&(u, k), &s)| (u, k, s)).collect();
            want.sort_by_key(|e| (e.0, e.1));
            proptest::prop_assert_eq!(seen, want);
        }
    }

    #[test]
    fn slots_never_straddle_cache_lines() {
        for groups in 1..=3 {
            let t = EntryTable::new(groups);
            for slot in 0..64 {
                let addr = t.units.as_ptr().wrapping_add(t.unit(slot)) as usize;
                let bytes = (1 + groups) * std::mem::size_of::<PaneSet>();
                assert!(addr % 64 + bytes <= 64, "groups = {groups}, slot {slot}");
            }
        }
    }

    #[test]
    fn spilled_flag_and_restore() {
        let mut t = EntryTable::new(2);
        let sets = [PaneSet { hi: 3, mask: 5 }, PaneSet { hi: 1, mask: 1 }];
        assert!(t.insert(7, hash_of(1), 1, true, &sets, hash_of));
        assert!(
            !t.insert(7, hash_of(1), 1, true, &sets, hash_of),
            "second insert is refused"
        );
        t.reserve(1, hash_of);
        let f = t.find_or_insert(7, hash_of(1), 1);
        assert!(!f.fresh);
        let (got, spilled) = t.sets_mut(f.slot);
        assert_eq!(got, &sets[..]);
        assert!(spilled);
        let f2 = {
            t.reserve(1, hash_of);
            t.find_or_insert(8, hash_of(1), 1)
        };
        assert!(!t.sets_mut(f2.slot).1);
        t.mark_spilled(f2.slot);
        assert!(t.sets_mut(f2.slot).1);
    }
}
