//! One partition's counting state: duplicate records, which panes each (key, user) was seen in, and
//! per key the per-window counters. A partition owns every user whose hash routes to it, so nothing
//! here is shared or locked, and unique counts of different partitions simply add up.
//!
//! ## How sliding windows stay cheap
//! Specs with the same `slide` share a *pane group*: panes are `slide` wide, and for each
//! (key, user) a [`PaneSet`] remembers which panes the user was seen in (a 64-pane bitmask anchored at
//! the newest pane, plus an exact overflow set for the rare pane far behind it). When a user shows up
//! in a new pane `p`, the windows that gain a *new* unique user are exactly those containing `p` but
//! no other pane of that user: a contiguous range of window indexes `[lo, hi]`, found from the nearest
//! seen panes before and after `p`. The range is recorded as two counter bumps (`add` at `lo`, `sub`
//! at `hi`), and a window's unique count is the running sum `Σ add − Σ sub` when it fires. So the cost
//! per event does not grow with the number of windows an event belongs to, and repeat events of a user
//! in a pane cost one bit test.

use std::collections::BTreeSet;

use hashbrown::HashMap;

use crate::dedup::{Dedup, Seen};
use crate::entries::EntryTable;
pub use crate::entries::PaneSet;
use crate::error::Result;
use crate::metrics::attribution::{Credit, Hit, Journeys};
use crate::metrics::threshold::{self, Rule, Thresholds};
use crate::parse::{Event, KeyStrings, Parser};
use crate::timefmt::Millis;
use crate::window::Windows;

/// How many events ahead of the one being applied the state they will touch is prefetched:
/// enough to overlap several cache misses, few enough that the lines are still in L1/L2 when the
/// event is applied (4 to 16 measured the same on this workload).
pub const PREFETCH_AHEAD: usize = 8;

/// An event's attribution hits (see `metrics::attribution`), their dimension value hashes, and
/// its line (read only when a journey meets one of its strings for the first time).
#[derive(Debug, Clone, Copy, Default)]
pub struct AttrHits<'e> {
    pub hits: &'e [Hit],
    pub vals: &'e [Option<u64>],
    pub line: &'e [u8],
}

/// What became of an accepted event.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    Counted,
    Duplicate,
    Late,
}

/// Per key, per spec, per window index: events in the pane starting there, and the unique-count
/// range bumps starting (`add`) and ending (`sub`) there. `add_back` counts ranges that start
/// `n − 1` windows *before* this cell (a user new to every window holding this pane, the common
/// case for a sliding window): kept here, in the cell the event updates anyway, instead of in a
/// cell far back that would cost a search and a cache miss.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Cell {
    pub idx: i64,
    pub events: u64,
    pub add: u32,
    pub sub: u32,
    pub add_back: u32,
}

/// One key's counters for one window spec.
///
/// In-order events update the newest cell, so it is kept inline (`tail`, next to the key's other
/// lanes) rather than at the end of the heap-allocated `cells`: the common update touches no
/// memory beyond the key entry. Invariant: every cell in `cells` has a smaller `idx` than `tail`.
#[derive(Debug, Clone)]
pub struct Lane {
    tail: Cell,
    /// Older cells, sorted by `idx`.
    pub cells: Vec<Cell>,
    /// `Σ (add − sub)` of the cells already fired and dropped.
    pub carry: i64,
}

const NO_TAIL: i64 = i64::MIN;

impl Default for Lane {
    fn default() -> Self {
        Lane {
            tail: Cell {
                idx: NO_TAIL,
                ..Cell::default()
            },
            cells: Vec::new(),
            carry: 0,
        }
    }
}

impl Lane {
    /// Finds or inserts the cell for window index `idx`.
    #[inline(always)]
    fn cell(&mut self, idx: i64) -> &mut Cell {
        if self.tail.idx == idx {
            return &mut self.tail;
        }
        self.cell_slow(idx)
    }

    /// [`cell`](Self::cell) when `idx` is not the inline cell's.
    #[inline(never)]
    fn cell_slow(&mut self, idx: i64) -> &mut Cell {
        let newest = if self.tail.idx != NO_TAIL {
            Some(self.tail.idx)
        } else {
            self.cells.last().map(|c| c.idx)
        };
        if newest.is_none_or(|n| idx > n) {
            if self.tail.idx != NO_TAIL {
                self.cells.push(self.tail);
            }
            self.tail = Cell {
                idx,
                ..Cell::default()
            };
            return &mut self.tail;
        }
        cell(&mut self.cells, idx)
    }

    /// Moves the inline cell into `cells`, so `cells` holds everything (before firing).
    fn flush(&mut self) {
        if self.tail.idx != NO_TAIL {
            self.cells.push(self.tail);
            self.tail.idx = NO_TAIL;
        }
    }

    /// No cells: every window of this key and spec has fired.
    #[inline]
    fn is_empty(&self) -> bool {
        self.tail.idx == NO_TAIL && self.cells.is_empty()
    }

    /// Every cell, in order.
    pub fn all(&self) -> impl Iterator<Item = &Cell> {
        self.cells
            .iter()
            .chain((self.tail.idx != NO_TAIL).then_some(&self.tail))
    }
}

/// Lanes of the first few specs live inside the key entry; more specs spill to a vector.
const INLINE_SPECS: usize = 4;

#[derive(Debug)]
pub struct KeyEntry {
    pub hash: u64,
    /// Shared with the rows that carry this key to the sink thread.
    pub strings: std::sync::Arc<KeyStrings>,
    inline: [Lane; INLINE_SPECS],
    more: Vec<Lane>,
    /// (user, key) entries that refer to this key.
    refs: u32,
    /// False once the key has been freed (no open window, no user state); its id is then reused.
    live: bool,
    /// Bit `s`: the key's metric counts in window spec `s`.
    windows: u64,
    /// The key's metric has a threshold: its lanes hold per-window counters (see
    /// `metrics::threshold`), not pane-range bumps.
    rule: Option<Rule>,
}

impl KeyEntry {
    fn new(hash: u64, strings: KeyStrings, nspecs: usize, kind: MetricKind) -> KeyEntry {
        KeyEntry {
            hash,
            strings: std::sync::Arc::new(strings),
            inline: Default::default(),
            more: vec![Lane::default(); nspecs.saturating_sub(INLINE_SPECS)],
            refs: 0,
            live: true,
            windows: kind.windows,
            rule: kind.rule,
        }
    }

    /// No counters left in any lane: every window holding this key has fired.
    fn is_empty(&self) -> bool {
        self.inline.iter().chain(&self.more).all(Lane::is_empty)
    }

    #[inline]
    pub fn lane_mut(&mut self, spec: usize) -> &mut Lane {
        if spec < INLINE_SPECS {
            &mut self.inline[spec]
        } else {
            &mut self.more[spec - INLINE_SPECS]
        }
    }

    pub fn lane(&self, spec: usize) -> &Lane {
        if spec < INLINE_SPECS {
            &self.inline[spec]
        } else {
            &self.more[spec - INLINE_SPECS]
        }
    }
}

/// Overflow panes of (user, key, pane group).
type SpillKey = (u64, u32, u8);

/// A finished (key, window) count of this partition.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Fired {
    pub key: u32,
    /// The key's hash (filled in by `fire`), so merging needs no look-up in the key table.
    pub hash: u64,
    pub spec: u16,
    pub window: i64,
    pub unique: u64,
    pub events: u64,
}

struct Group {
    width: Millis,
    specs: Vec<usize>,
    /// Bit `s` for each spec of `specs`.
    mask: u64,
    /// Per spec of `specs`: its slide in panes of this group. 1, except for a tumbling window
    /// that joined the group of a finer sliding window (a day of hours: 24).
    per: Vec<i64>,
    /// Panes below this belong only to fired windows (the smallest horizon of `specs`, in panes).
    dead_below: i64,
}

/// A tumbling window whose slide is a multiple of at most this many panes of a sliding window's
/// group shares that group's pane sets: the panes of a whole window (plus lateness) still fit in
/// the 64-pane mask, so nothing spills to the overflow set in the steady state.
const MAX_PANES_PER_SLIDE: i64 = 32;

/// Pane groups: one per distinct slide of the sliding windows, which tumbling windows of the same
/// slide, or of a slide that is a small multiple of it, join; other tumbling windows get their own.
/// One pane set per (user, key, group) then serves every window of the group (e.g. `hourly`,
/// `daily` and `last-24h` share one set of hourly panes).
fn pane_groups(windows: &Windows) -> Vec<Group> {
    let mut groups: Vec<Group> = Vec::new();
    let specs = &windows.specs;
    let sliding = (0..specs.len()).filter(|&i| specs[i].size != specs[i].slide);
    let tumbling = (0..specs.len()).filter(|&i| specs[i].size == specs[i].slide);
    for i in sliding.chain(tumbling) {
        let slide = specs[i].slide;
        let tumbles = specs[i].size == slide;
        let fits = |g: &Group| {
            g.width == slide
                // A tumbling window may also join a group of sliding windows with finer panes.
                || (tumbles
                    && slide % g.width == 0
                    && slide / g.width <= MAX_PANES_PER_SLIDE
                    && g.specs.iter().any(|&s| specs[s].size != specs[s].slide))
        };
        match groups
            .iter_mut()
            .filter(|g| fits(g))
            .max_by_key(|g| g.width)
        {
            Some(g) => {
                g.per.push(slide / g.width);
                g.specs.push(i);
                g.mask |= 1 << i;
            }
            None => groups.push(Group {
                width: slide,
                specs: vec![i],
                mask: 1 << i,
                per: vec![1],
                dead_below: i64::MIN,
            }),
        }
    }
    groups
}

pub struct PartitionState {
    windows: Windows,
    groups: Vec<Group>,
    /// First window index per spec that has not fired.
    horizon: Vec<i64>,
    /// Per spec, the keys whose lane has cells: firing visits only these, not every key (most keys
    /// of a long replay are idle at any moment).
    pending: Vec<Vec<u32>>,
    key_ids: HashMap<u64, u32>,
    pub keys: Vec<KeyEntry>,
    /// Ids of freed keys, reused by the next new keys: the key table is bounded by the keys alive
    /// in open windows, not by every key ever seen in a years-long replay.
    free_keys: Vec<u32>,
    /// Per (user, key): the panes the user was seen in, per pane group.
    table: EntryTable,
    spill: HashMap<SpillKey, BTreeSet<i64>>,
    /// `entries` right after the last prune: pruning again waits until it has grown by half.
    pruned_len: usize,
    pub dedup: Dedup,
    /// Per metric: its windows and threshold (from the parser's config).
    kinds: Vec<MetricKind>,
    /// Per-(user, key) counters of the threshold metrics.
    thresholds: Thresholds,
    /// Per-user A's and B's of the attribution metrics.
    journeys: Journeys,
    /// The last firing's attribution credits (kept to reuse the allocation).
    credits: Vec<Credit>,
    /// Keys allocated since the last `free_idle_keys`.
    allocated: usize,
    /// The end of input has begun (its journeys are credited).
    ended: bool,
    parser: Parser,
}

/// What the state needs to know of a key's metric.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MetricKind {
    pub windows: u64,
    pub rule: Option<Rule>,
}

impl PartitionState {
    pub fn new(windows: &Windows, ttl: Millis, parser: Parser) -> PartitionState {
        let groups = pane_groups(windows);
        let ngroups = groups.len();
        PartitionState {
            kinds: parser.metric_kinds(),
            thresholds: Thresholds::default(),
            journeys: Journeys::new(parser.attribution_plans(windows.specs.len()), windows),
            credits: Vec::new(),
            allocated: 0,
            ended: false,
            windows: windows.clone(),
            groups,
            horizon: vec![i64::MIN; windows.specs.len()],
            pending: vec![Vec::new(); windows.specs.len()],
            key_ids: HashMap::new(),
            keys: Vec::new(),
            free_keys: Vec::new(),
            table: EntryTable::new(ngroups),
            spill: HashMap::new(),
            pruned_len: 0,
            dedup: Dedup::new(ttl),
            parser,
        }
    }

    /// Applies one accepted event seen under watermark `wm`. `keys` are its fan-out key hashes and
    /// `line` its original bytes (only read the first time a key shows up in this partition).
    #[cfg(test)]
    pub fn apply(&mut self, ev: &Event, keys: &[u64], wm: Millis, line: &[u8]) -> Outcome {
        let mut ids = [0u32; crate::parse::MAX_FIELDS];
        let n = keys.len().min(ids.len());
        for (id, &kh) in ids.iter_mut().zip(&keys[..n]) {
            *id = self.key_id(kh, line);
        }
        self.apply_resolved(ev, &keys[..n], &ids[..n], &[], AttrHits::default(), wm)
    }

    #[inline]
    fn key_id(&mut self, kh: u64, line: &[u8]) -> u32 {
        match self.key_ids.get(&kh) {
            Some(&k) => k,
            None => self.learn_keys(kh, line),
        }
    }

    /// Appends the key ids of fan-out key hashes `keys` to `ids`, registering new keys from `line`
    /// (the event's original bytes, read only the first time a key shows up in this partition).
    /// Ids stay valid until the next [`fire`](Self::fire), which may free keys.
    #[inline]
    pub fn resolve(&mut self, keys: &[u64], line: &[u8], ids: &mut Vec<u32>) {
        for &kh in keys {
            let id = self.key_id(kh, line);
            ids.push(id);
        }
    }

    /// [`apply`](Self::apply) with the key ids already [`resolve`](Self::resolve)d. `amounts`
    /// (parallel to `keys`, or empty when no metric has `min_sum`) are the keys' `min_sum` amounts.
    #[inline]
    pub fn apply_resolved(
        &mut self,
        ev: &Event,
        keys: &[u64],
        ids: &[u32],
        amounts: &[i64],
        attr: AttrHits<'_>,
        wm: Millis,
    ) -> Outcome {
        let late = self.windows.is_late(ev.time, wm) || (wm != Millis::MIN && wm >= ev.late_at);
        // Duplicate detection comes first; a late event is not recorded (one map lookup either way).
        if let Some(d) = ev.dedup
            && self.dedup.observe(d, ev.time, wm, !late) == Seen::Duplicate
        {
            return Outcome::Duplicate;
        }
        if late {
            return Outcome::Late;
        }
        self.count(ids, keys, amounts, ev);
        if !attr.hits.is_empty() {
            self.observe_journeys(ev, attr);
        }
        Outcome::Counted
    }

    /// A counted event's part in the attribution metrics: an A or B of the user's journeys.
    #[cold]
    fn observe_journeys(&mut self, ev: &Event, attr: AttrHits<'_>) {
        for hit in attr.hits {
            let nd = self.journeys.plans[hit.plan as usize].dims.len();
            let at = hit.vals_at as usize;
            let vals = attr.vals.get(at..at + nd).unwrap_or(&[]);
            let parser = &mut self.parser;
            self.journeys.observe(ev.user, ev.time, hit, vals, || {
                parser.describe_hit(attr.line, hit.plan)
            });
        }
    }

    /// Applies `n` events in stream order, each already [`resolve`](Self::resolve)d, prefetching
    /// the state of the event [`PREFETCH_AHEAD`] positions on before applying each one.
    /// `event(j)` gives event `j` with its key hashes, ids and amounts, `wm(j)` the watermark it is seen
    /// under (called once per event, in order), and `outcome(j, …)` receives what became of it.
    #[inline]
    pub fn apply_in_order<'e>(
        &mut self,
        n: usize,
        event: impl Fn(usize) -> (&'e Event, &'e [u64], &'e [u32], &'e [i64], AttrHits<'e>),
        mut wm: impl FnMut(usize) -> Millis,
        mut outcome: impl FnMut(usize, Outcome),
    ) {
        for j in 0..n.min(PREFETCH_AHEAD) {
            let (ev, keys, ids, _, _) = event(j);
            self.prefetch(ev, keys, ids);
        }
        for j in 0..n {
            if j + PREFETCH_AHEAD < n {
                let (ev, keys, ids, _, _) = event(j + PREFETCH_AHEAD);
                self.prefetch(ev, keys, ids);
            }
            let (ev, keys, ids, amounts, attr) = event(j);
            let o = self.apply_resolved(ev, keys, ids, amounts, attr, wm(j));
            outcome(j, o);
        }
    }

    /// Starts loading the state an upcoming event will touch (its dedup record, its (user, key)
    /// entries and its keys' counters), so applying it a few events later does not stall.
    #[inline]
    fn prefetch(&self, ev: &Event, keys: &[u64], ids: &[u32]) {
        if let Some(d) = ev.dedup {
            self.dedup.prefetch(d);
        }
        for (i, &kh) in keys.iter().enumerate() {
            if !shares_total(ev.same_as_total, i) {
                self.table.prefetch(ev.user, kh);
            }
        }
        let lanes = std::mem::offset_of!(KeyEntry, inline);
        let nspecs = self.windows.specs.len().min(INLINE_SPECS);
        for &id in ids {
            let entry = self.keys.as_ptr().wrapping_add(id as usize).cast::<u8>();
            for s in 0..nspecs {
                crate::entries::prefetch(
                    entry.wrapping_add(lanes + s * std::mem::size_of::<Lane>()),
                );
            }
        }
    }

    /// Recomputes each group's `dead_below` after horizons moved.
    fn update_dead_below(&mut self) {
        for g in &mut self.groups {
            g.dead_below = g
                .specs
                .iter()
                .zip(&g.per)
                .map(|(&s, &k)| self.horizon[s].saturating_mul(k))
                .min()
                .unwrap_or(i64::MIN);
        }
    }

    /// Slow path: registers the strings of every key of `line`, returns the id of `wanted`.
    #[cold]
    #[inline(never)]
    fn learn_keys(&mut self, wanted: u64, line: &[u8]) -> u32 {
        let described = self.parser.describe(line).unwrap_or_default();
        let nspecs = self.windows.specs.len();
        let mut found = None;
        for (h, strings) in described.into_iter().chain(std::iter::once((
            wanted,
            // Unreachable in practice: the hashes came from the same parser. Kept so a bug shows as a
            // visible `<unknown key>` row rather than a panic.
            KeyStrings {
                metric: 0,
                event_type: Some("<unknown key>".into()),
                dimension: None,
                value: None,
            },
        ))) {
            if self.key_ids.contains_key(&h) {
                if h == wanted {
                    found = self.key_ids.get(&h).copied();
                }
                continue;
            }
            let id = self.alloc_key(h, strings, nspecs);
            if h == wanted {
                found = Some(id);
            }
        }
        found.unwrap_or(0)
    }

    #[inline]
    fn count(&mut self, ids: &[u32], hashes: &[u64], amounts: &[i64], ev: &Event) {
        let (user, t, same_as_total) = (ev.user, ev.time, ev.same_as_total);
        let keys = &self.keys;
        self.table.reserve(ids.len(), |id| keys[id as usize].hash);
        // The event's pane in each group (a division each: once per event, not per key).
        const GROUPS: usize = 8;
        let mut panes = [0i64; GROUPS];
        for (p, group) in panes.iter_mut().zip(&self.groups) {
            *p = t.div_euclid(group.width);
        }
        // Key 0's pane-set outcome per group, for the keys that share its per-user state.
        let mut total = [None; GROUPS];
        let share = self.groups.len() <= GROUPS;
        for (i, (&key, &kh)) in ids.iter().zip(hashes).enumerate() {
            let (windows, rule) = {
                let e = &self.keys[key as usize];
                (e.windows, e.rule)
            };
            if let Some(rule) = rule {
                let amount = amounts.get(i).copied().unwrap_or(0);
                self.count_threshold(user, key, t, amount, rule, windows);
                continue;
            }
            // A key that shares its metric's total key's pane sets has no entry of its own: it
            // takes that key's outcome (`share` guarantees `total` covers every group).
            let own = if share && shares_total(same_as_total, i) {
                None
            } else {
                let found = self.table.find_or_insert(user, kh, key);
                if found.fresh {
                    self.keys[key as usize].refs += 1;
                }
                Some(found.slot)
            };
            let mut sets = own.map(|slot| self.table.sets_mut(slot));
            let was_spilled = sets.as_ref().is_some_and(|(_, spilled)| *spilled);
            let mut spilled = was_spilled;
            let entry = &mut self.keys[key as usize];
            for (g, group) in self.groups.iter().enumerate() {
                if group.mask & windows == 0 {
                    continue;
                }
                let p = match panes.get(g) {
                    Some(&p) => p,
                    None => t.div_euclid(group.width),
                };
                let neighbours = match sets.as_mut() {
                    None => total[g],
                    Some((sets, _)) => insert_pane(
                        &mut sets[g],
                        &mut spilled,
                        &mut self.spill,
                        (user, key, g as u8),
                        p,
                        group.dead_below,
                    ),
                };
                if i < 64 && ev.totals >> i & 1 == 1 && g < GROUPS {
                    total[g] = neighbours;
                }
                bump(
                    entry,
                    &self.windows,
                    group,
                    &mut self.pending,
                    key,
                    p,
                    neighbours,
                );
            }
            if let Some(slot) = own
                && spilled
                && !was_spilled
            {
                self.table.mark_spilled(slot);
            }
        }
    }

    /// One event of a threshold metric's key: the user's counters in every window of the
    /// metric's specs that contains `t`, and the key's counters where the user qualifies.
    fn count_threshold(
        &mut self,
        user: u64,
        key: u32,
        t: Millis,
        amount: i64,
        rule: Rule,
        mask: u64,
    ) {
        let windows = match self.thresholds.users.entry((user, key)) {
            hashbrown::hash_map::Entry::Occupied(o) => o.into_mut(),
            hashbrown::hash_map::Entry::Vacant(v) => {
                self.keys[key as usize].refs += 1;
                v.insert(Vec::new())
            }
        };
        threshold::forget_fired(windows, &self.horizon);
        let entry = &mut self.keys[key as usize];
        for (s, spec) in self.windows.specs.iter().enumerate() {
            if mask >> s & 1 == 0 {
                continue;
            }
            for k in threshold::windows_of(t, spec.slide, spec.panes()) {
                let d = threshold::add(windows, s as u16, k, amount, rule);
                if d == threshold::Delta::default() {
                    continue;
                }
                let lane = entry.lane_mut(s);
                if lane.is_empty() {
                    self.pending[s].push(key);
                }
                let c = lane.cell(k);
                c.add += d.users;
                c.events += d.events;
            }
        }
    }

    /// Fires every window that the watermark `wm` closes (all of them when `wm` is `None`: the end of
    /// input), appending this partition's counts to `out`, and frees what no open window needs.
    pub fn fire(&mut self, wm: Option<Millis>, out: &mut Vec<Fired>) {
        let mut advanced = false;
        let credited = self.credit_journeys(wm);
        for s in 0..self.windows.specs.len() {
            let h = match wm {
                Some(wm) => self.windows.specs[s].horizon(wm, self.windows.lateness),
                None => i64::MAX,
            };
            let forced = credited >> s.min(63) & 1 == 1;
            advanced |= self.fire_spec(s, h, forced, out);
        }
        // Pruning scans the whole map; doing it only once the map grew by half since the last scan
        // keeps the cost amortised O(1) per entry while memory stays within 1.5× the live set.
        if advanced {
            self.update_dead_below();
        }
        if advanced && self.table.len() >= 4096 + self.pruned_len + self.pruned_len / 2 {
            self.prune_seen();
            self.pruned_len = self.table.len();
        }
        if advanced {
            let mut dropped = Vec::new();
            self.thresholds.sweep(&self.horizon, &mut dropped);
            if !dropped.is_empty() {
                for key in dropped {
                    let k = &mut self.keys[key as usize];
                    k.refs = k.refs.saturating_sub(1);
                }
                self.free_idle_keys();
            }
        }
        if advanced {
            self.dedup.prune(wm.unwrap_or(Millis::MAX));
        }
    }

    /// Fires the windows of spec `s` below index `h` (and, when `forced`, the attribution cells
    /// just added below the horizon); returns whether the horizon moved.
    fn fire_spec(&mut self, s: usize, h: i64, forced: bool, out: &mut Vec<Fired>) -> bool {
        let fired = self.horizon[s];
        if h <= fired && !forced {
            return false;
        }
        let h = h.max(fired);
        self.horizon[s] = h;
        let n = self.windows.specs[s].panes();
        let keys = &mut self.keys;
        self.pending[s].retain(|&key| {
            let entry = &mut keys[key as usize];
            let hash = entry.hash;
            let counted = entry.rule.is_some();
            let lane = entry.lane_mut(s);
            let tail = lane.tail.idx;
            lane.flush();
            let from = out.len();
            if counted {
                emit_counted(&mut lane.cells, h, key, s as u16, out);
            } else {
                emit(
                    &mut lane.cells,
                    &mut lane.carry,
                    n,
                    fired,
                    h,
                    key,
                    s as u16,
                    out,
                );
            }
            for f in &mut out[from..] {
                f.hash = hash;
            }
            // The newest cell goes back inline if it is still open: the next in-order event
            // of this key then touches no heap memory.
            if tail != NO_TAIL
                && let Some(&last) = lane.cells.last()
                && last.idx == tail
            {
                lane.cells.pop();
                lane.tail = last;
            }
            !lane.is_empty()
        });
        h > fired
    }

    /// The end of input, one step: every window still open is final, and this fires those of
    /// spec `s` below index `h`. Firing the end in ascending steps, spec by spec, gives the rows in
    /// the order one [`fire`](Self::fire)`(None)` would, but holds only one step's rows at a time
    /// (a high-cardinality input's open windows can hold tens of millions of rows). Call
    /// [`begin_end`](Self::begin_end) first; [`fire`](Self::fire)`(None)` afterwards fires
    /// anything left and frees the state.
    pub fn fire_end_step(&mut self, s: usize, h: i64, out: &mut Vec<Fired>) {
        self.fire_spec(s, h, false, out);
    }

    /// The end of input begins: the attribution journeys are credited to every window (the cells
    /// then wait in their lanes for [`fire_end_step`](Self::fire_end_step)).
    pub fn begin_end(&mut self) {
        if !self.ended {
            self.ended = true;
            self.credit_journeys(None);
        }
    }

    /// The window indexes of spec `s` that may still hold counts: `None` when none do.
    pub fn open_windows(&self, s: usize) -> Option<(i64, i64)> {
        let n = self.windows.specs[s].panes();
        let mut range: Option<(i64, i64)> = None;
        for &key in &self.pending[s] {
            let lane = self.keys[key as usize].lane(s);
            for c in lane.all() {
                let (lo, hi) = range.get_or_insert((c.idx, c.idx));
                *lo = (*lo).min(c.idx - (n - 1));
                *hi = (*hi).max(c.idx);
            }
        }
        range.map(|(lo, hi)| (lo.max(self.horizon[s]), hi))
    }

    /// Adds the attribution credits of the windows `wm` closes to their keys' counters (which the
    /// firing then emits like a threshold metric's); returns a bit per spec that got credits.
    fn credit_journeys(&mut self, wm: Option<Millis>) -> u64 {
        if self.journeys.is_empty() {
            return 0;
        }
        let mut credits = std::mem::take(&mut self.credits);
        credits.clear();
        self.journeys.fire(wm, &mut credits);
        let mut specs = 0u64;
        for c in &credits {
            let key = match self.key_ids.get(&c.hash) {
                Some(&k) => k,
                None => {
                    self.allocated += 1;
                    let strings = self.journeys.key_strings(c);
                    let nspecs = self.windows.specs.len();
                    self.alloc_key(c.hash, strings, nspecs)
                }
            };
            let lane = self.keys[key as usize].lane_mut(c.spec as usize);
            if lane.is_empty() {
                self.pending[c.spec as usize].push(key);
            }
            let cell = lane.cell(c.window);
            cell.add += 1;
            cell.events += c.events;
            specs |= 1 << u32::from(c.spec).min(63);
        }
        self.journeys.release_deferred();
        self.credits = credits;
        // Attribution keys hold no per-user references: they are free once fired. Freeing scans
        // every key, so it waits until the table grew by half.
        if self.allocated > 4096 + self.live_keys() / 2 {
            self.allocated = 0;
            self.free_idle_keys();
        }
        specs
    }

    /// Drops the (user, key) entries whose panes all belong to fired windows only.
    fn prune_seen(&mut self) {
        let dead_below: Vec<i64> = self.groups.iter().map(|g| g.dead_below).collect();
        let keys = &mut self.keys;
        let mut dropped: Vec<u32> = Vec::new();
        self.table.retain(
            |_, key, sets| {
                let alive = sets.iter().zip(&dead_below).any(|(set, &d)| set.hi >= d);
                if !alive {
                    dropped.push(key);
                }
                alive
            },
            |id| keys[id as usize].hash,
        );
        for key in dropped {
            let k = &mut keys[key as usize];
            k.refs = k.refs.saturating_sub(1);
        }
        // Overflow panes of dropped entries are all dead, so this also forgets them.
        self.spill.retain(|(_, _, g), panes| {
            let d = dead_below[*g as usize];
            panes.retain(|&q| q >= d);
            !panes.is_empty()
        });
        self.free_idle_keys();
    }

    /// Frees the keys no user refers to and with no open window; their ids are reused.
    fn free_idle_keys(&mut self) {
        for (id, k) in self.keys.iter_mut().enumerate() {
            if k.live && k.refs == 0 && k.is_empty() {
                k.live = false;
                self.key_ids.remove(&k.hash);
                self.free_keys.push(id as u32);
            }
        }
    }

    /// Keys currently in use (for tests and the summary's state estimate).
    pub fn live_keys(&self) -> usize {
        self.keys.len() - self.free_keys.len()
    }

    /// Approximate heap bytes held by this partition's state.
    pub fn heap_bytes(&self) -> usize {
        let cells: usize = self
            .keys
            .iter()
            .map(|k| {
                (0..self.windows.specs.len())
                    .map(|s| k.lane(s).cells.capacity())
                    .sum::<usize>()
            })
            .sum();
        self.table.heap_bytes()
            + self.key_ids.capacity() * 13
            + self.keys.capacity() * std::mem::size_of::<KeyEntry>()
            + cells * std::mem::size_of::<Cell>()
            + self
                .spill
                .values()
                .map(|s| s.len() * 16 + 64)
                .sum::<usize>()
            + self.dedup.heap_bytes()
            + self.thresholds.heap_bytes()
            + self.journeys.heap_bytes()
    }

    pub fn dimension_name(&self, i: u16) -> &str {
        self.parser.dimension_name(i)
    }
}

/// Whether fan-out key `i` of an event shares key 0's per-user pane sets (see
/// [`Event::same_as_total`]).
#[inline]
fn shares_total(same_as_total: u64, i: usize) -> bool {
    i > 0 && i < 64 && (same_as_total >> i) & 1 == 1
}

/// Records one event of a key in pane `p` for the specs of one pane group: the event count, and,
/// when the pane was new for the (user, key), the range of windows that gained a unique user.
#[inline]
fn bump(
    entry: &mut KeyEntry,
    windows: &Windows,
    group: &Group,
    pending: &mut [Vec<u32>],
    key: u32,
    p: i64,
    neighbours: Option<(Option<i64>, Option<i64>)>,
) {
    for (&s, &k) in group.specs.iter().zip(&group.per) {
        if entry.windows >> s & 1 == 0 {
            continue;
        }
        let lane = entry.lane_mut(s);
        if lane.is_empty() {
            pending[s].push(key);
        }
        if k != 1 {
            // A tumbling window of `k` panes: the user is new to window `j` unless the nearest
            // seen panes before or after `p` lie in it too (panes forgotten as dead lie in fired
            // windows, never in `j`: the event would be late).
            let j = p.div_euclid(k);
            let here = lane.cell(j);
            here.events += 1;
            if let Some((pred, succ)) = neighbours
                && pred.is_none_or(|a| a.div_euclid(k) != j)
                && succ.is_none_or(|b| b.div_euclid(k) != j)
            {
                here.add += 1;
                here.sub += 1;
            }
            continue;
        }
        let n = windows.specs[s].panes();
        let here = lane.cell(p);
        here.events += 1;
        if let Some((pred, succ)) = neighbours {
            let lo = match pred {
                Some(a) => (p - n + 1).max(a + 1),
                None => p - n + 1,
            };
            let hi = match succ {
                Some(b) => p.min(b - n),
                None => p,
            };
            // In order, the range ends at `p` itself (and for tumbling windows starts there too):
            // those bumps land in the cell just updated.
            if lo <= hi {
                if hi == p {
                    here.sub += 1;
                    if lo == p {
                        here.add += 1;
                    } else if lo == p - n + 1 {
                        here.add_back += 1;
                    } else {
                        lane.cell(lo).add += 1;
                    }
                } else {
                    lane.cell(lo).add += 1;
                    lane.cell(hi).sub += 1;
                }
            }
        }
    }
}

/// Finds or inserts the cell for window index `idx` (cells stay sorted; updates are near the end).
#[inline]
fn cell(cells: &mut Vec<Cell>, idx: i64) -> &mut Cell {
    let pos = match cells.last() {
        Some(c) if c.idx < idx => cells.len(),
        Some(c) if c.idx == idx => cells.len() - 1,
        Some(c) => {
            // A busy key has a cell for every open window, so cells are usually dense: guess the
            // position from the distance to the newest cell before falling back to a search.
            let back = c.idx.abs_diff(idx);
            match (cells.len() as u64 - 1).checked_sub(back) {
                Some(g) if cells[g as usize].idx == idx => g as usize,
                _ => cells.partition_point(|c| c.idx < idx),
            }
        }
        None => 0,
    };
    if pos == cells.len() || cells[pos].idx != idx {
        cells.insert(
            pos,
            Cell {
                idx,
                ..Cell::default()
            },
        );
    }
    &mut cells[pos]
}

/// Records pane `p` in `set`. Returns `None` if it was already there, else the nearest seen panes
/// before and after it (`None` where there is none that can matter). Panes below `dead_below` belong
/// only to fired windows and may be forgotten. `spilled` says whether the overflow set may hold
/// panes of this (user, key) (in any group); it is set when a pane moves there.
#[inline]
fn insert_pane(
    set: &mut PaneSet,
    spilled: &mut bool,
    spill: &mut HashMap<SpillKey, BTreeSet<i64>>,
    spill_key: SpillKey,
    p: i64,
    dead_below: i64,
) -> Option<(Option<i64>, Option<i64>)> {
    if set.mask == 0 {
        *set = PaneSet { hi: p, mask: 1 };
        return Some((spilled_pred(spill, spill_key, *spilled, p), None));
    }
    if p > set.hi {
        let shift = p - set.hi;
        let leaving = if shift >= 64 {
            set.mask
        } else {
            set.mask & !(u64::MAX >> shift)
        };
        let mut bits = leaving;
        while bits != 0 {
            let i = bits.trailing_zeros() as i64;
            bits &= bits - 1;
            let q = set.hi - i;
            if q >= dead_below {
                spill.entry(spill_key).or_default().insert(q);
                *spilled = true;
            }
        }
        set.mask = if shift >= 64 { 0 } else { set.mask << shift };
        set.mask |= 1;
        set.hi = p;
        let above = set.mask & !1;
        let pred = if above != 0 {
            Some(p - above.trailing_zeros() as i64)
        } else {
            spilled_pred(spill, spill_key, *spilled, p)
        };
        return Some((pred, None));
    }
    let i = set.hi - p;
    if i < 64 {
        let bit = 1u64 << i;
        if set.mask & bit != 0 {
            return None;
        }
        set.mask |= bit;
        let older = if i == 63 { 0 } else { set.mask >> (i + 1) };
        let pred = if older != 0 {
            Some(p - 1 - older.trailing_zeros() as i64)
        } else {
            spilled_pred(spill, spill_key, *spilled, p)
        };
        let newer = set.mask & (bit - 1);
        let succ = if newer != 0 {
            Some(set.hi - (63 - newer.leading_zeros() as i64))
        } else {
            None
        };
        return Some((pred, succ));
    }
    // Far behind the newest pane: the exact overflow set.
    let panes = spill.entry(spill_key).or_default();
    if !panes.insert(p) {
        return None;
    }
    *spilled = true;
    let pred = panes.range(..p).next_back().copied();
    let succ = panes
        .range(p + 1..)
        .next()
        .copied()
        .or(Some(set.hi - (63 - set.mask.leading_zeros() as i64)));
    Some((pred, succ))
}

/// The newest overflow pane before `p` of a (user, key, group), if its entry has spilled at all.
#[inline]
fn spilled_pred(
    spill: &HashMap<SpillKey, BTreeSet<i64>>,
    spill_key: SpillKey,
    spilled: bool,
    p: i64,
) -> Option<i64> {
    if !spilled {
        return None;
    }
    spill
        .get(&spill_key)
        .and_then(|s| s.range(..p).next_back().copied())
}

/// Emits the windows below `h` of a threshold key's lane, whose cells are per window (`add`:
/// qualifying users, `events`: their events), then drops them. A cell may hold events without
/// users: after a resume the restored counters sit in one partition while the users (whose
/// later events add here) sit in theirs; the merge adds them up, and a window with no qualifying
/// user at all never had a cell.
fn emit_counted(cells: &mut Vec<Cell>, h: i64, key: u32, spec: u16, out: &mut Vec<Fired>) {
    let keep = cells.partition_point(|c| c.idx < h);
    for c in cells.drain(..keep).filter(|c| c.add > 0 || c.events > 0) {
        out.push(Fired {
            key,
            hash: 0,
            spec,
            window: c.idx,
            unique: u64::from(c.add),
            events: c.events,
        });
    }
}

/// Emits every window `fired ≤ k < h` of one key and spec that holds events (windows below `fired`
/// were emitted before), then drops the cells below `h`.
#[allow(clippy::too_many_arguments)]
fn emit(
    cells: &mut Vec<Cell>,
    carry: &mut i64,
    n: i64,
    fired: i64,
    h: i64,
    key: u32,
    spec: u16,
    out: &mut Vec<Fired>,
) {
    // Window k holds panes k ..= k+n−1, so a cell at `idx` matters to windows below `h` when
    // idx − (n − 1) < h — even if idx ≥ h itself (it arrived before those windows fired).
    if cells.first().is_none_or(|c| c.idx - (n - 1) >= h) {
        return;
    }
    let mut run = *carry; // Σ of the bumps at windows < k
    let mut ri = 0; // next cell whose add/sub (at its idx) is not yet folded into `run`
    let mut rb = 0; // next cell whose add_back (at idx − n + 1) is not yet folded into `run`
    let (mut a, mut b, mut sum) = (0usize, 0usize, 0u64); // cells with idx in [k, k+n−1], their events
    let mut next_k = fired;
    for j in 0..cells.len() {
        let c = cells[j];
        if c.events == 0 {
            continue;
        }
        let from = (c.idx - n + 1).max(next_k);
        let to = c.idx.min(h - 1);
        let mut k = from;
        while k <= to {
            while ri < cells.len() && cells[ri].idx < k {
                run += cells[ri].add as i64 - cells[ri].sub as i64;
                ri += 1;
            }
            while rb < cells.len() && cells[rb].idx - (n - 1) < k {
                run += cells[rb].add_back as i64;
                rb += 1;
            }
            let unique =
                run + if ri < cells.len() && cells[ri].idx == k {
                    cells[ri].add as i64
                } else {
                    0
                } + if rb < cells.len() && cells[rb].idx - (n - 1) == k {
                    cells[rb].add_back as i64
                } else {
                    0
                };
            while b < cells.len() && cells[b].idx < k + n {
                sum += cells[b].events;
                b += 1;
            }
            while a < b && cells[a].idx < k {
                sum -= cells[a].events;
                a += 1;
            }
            out.push(Fired {
                key,
                hash: 0,
                spec,
                window: k,
                unique: unique.max(0) as u64,
                events: sum,
            });
            k += 1;
        }
        next_k = next_k.max(to + 1);
        if c.idx >= h {
            break;
        }
    }
    let keep = cells.partition_point(|c| c.idx < h);
    for c in &cells[..keep] {
        *carry += c.add as i64 - c.sub as i64 + c.add_back as i64;
    }
    cells.drain(..keep);
}

/// Which of `parts` partitions owns a user: its whole state lives there. Uses the hash's high 32
/// bits (hashbrown uses the low ones inside each partition's maps; dedup keys keep the same bits).
#[inline]
pub fn partition_of(user: u64, parts: usize) -> usize {
    ((user >> 32) % parts as u64) as usize
}

impl PartitionState {
    fn ensure_key(&mut self, hash: u64, strings: &KeyStrings) -> u32 {
        if let Some(&id) = self.key_ids.get(&hash) {
            return id;
        }
        let nspecs = self.windows.specs.len();
        self.alloc_key(hash, strings.clone(), nspecs)
    }

    /// A new key entry, in a freed slot when there is one. Freed slots are only reused while
    /// events are applied, after the previous batch's fired rows have been read.
    fn alloc_key(&mut self, hash: u64, strings: KeyStrings, nspecs: usize) -> u32 {
        let kind = self
            .kinds
            .get(strings.metric as usize)
            .copied()
            .unwrap_or(MetricKind {
                windows: u64::MAX,
                rule: None,
            });
        let entry = KeyEntry::new(hash, strings, nspecs, kind);
        let id = match self.free_keys.pop() {
            Some(id) => {
                self.keys[id as usize] = entry;
                id
            }
            None => {
                self.keys.push(entry);
                (self.keys.len() - 1) as u32
            }
        };
        self.key_ids.insert(hash, id);
        id
    }
}

fn put_key_strings(w: &mut crate::checkpoint::Writer, s: &KeyStrings) {
    w.u32(u32::from(s.metric));
    match &s.event_type {
        Some(t) => {
            w.u8(1);
            w.str(t);
        }
        None => w.u8(0),
    }
    w.u32(s.dimension.map_or(u32::MAX, u32::from));
    match &s.value {
        Some(v) => {
            w.u8(1);
            w.str(v);
        }
        None => w.u8(0),
    }
}

fn get_key_strings(r: &mut crate::checkpoint::Reader) -> Result<KeyStrings> {
    let damaged = || crate::Error::Checkpoint("the checkpoint payload is damaged".into());
    let metric = u16::try_from(r.u32()?).map_err(|_| damaged())?;
    let event_type = if r.u8()? == 1 {
        Some(r.string()?.into())
    } else {
        None
    };
    let dimension =
        match r.u32()? {
            u32::MAX => None,
            d => Some(u16::try_from(d).map_err(|_| {
                crate::Error::Checkpoint("the checkpoint payload is damaged".into())
            })?),
        };
    let value = if r.u8()? == 1 {
        Some(r.string()?.into())
    } else {
        None
    };
    Ok(KeyStrings {
        metric,
        event_type,
        dimension,
        value,
    })
}

/// Writes the counting state of all partitions in a form that does not depend on how many there are:
/// per-key counters are summed (they only ever add up across partitions), per-user state is keyed by
/// user hash and key hash, so a resume may use another `--threads`.
pub fn encode_partitions<'a>(
    parts: impl Iterator<Item = &'a PartitionState> + Clone,
    w: &mut crate::checkpoint::Writer,
) {
    let Some(first) = parts.clone().next() else {
        return;
    };
    let nspecs = first.windows.specs.len();
    let ngroups = first.groups.len();
    w.u64(nspecs as u64);
    w.u64(ngroups as u64);
    for &h in &first.horizon {
        w.i64(h);
    }
    // Keys, merged by hash.
    // Per key hash: its strings, and per spec the summed carry and cells.
    type Merged<'a> = (&'a KeyStrings, Vec<i64>, Vec<Vec<Cell>>);
    let mut merged: HashMap<u64, Merged> = HashMap::new();
    for p in parts.clone() {
        for k in p.keys.iter().filter(|k| k.live) {
            let e = merged
                .entry(k.hash)
                .or_insert_with(|| (&*k.strings, vec![0; nspecs], vec![Vec::new(); nspecs]));
            for s in 0..nspecs {
                e.1[s] += k.lane(s).carry;
                for c in k.lane(s).all() {
                    let cell = cell(&mut e.2[s], c.idx);
                    cell.events += c.events;
                    cell.add += c.add;
                    cell.sub += c.sub;
                    cell.add_back += c.add_back;
                }
            }
        }
    }
    let mut keys: Vec<_> = merged.into_iter().collect();
    keys.sort_unstable_by_key(|k| k.0);
    w.u64(keys.len() as u64);
    for (hash, (strings, carry, cells)) in &keys {
        w.u64(*hash);
        put_key_strings(w, strings);
        for s in 0..nspecs {
            w.i64(carry[s]);
            w.u64(cells[s].len() as u64);
            for c in &cells[s] {
                w.i64(c.idx);
                w.u64(c.events);
                w.u32(c.add);
                w.u32(c.sub);
                w.u32(c.add_back);
            }
        }
    }
    // (user, key) pane sets.
    let entries: usize = parts.clone().map(|p| p.table.len()).sum();
    w.u64(entries as u64);
    for p in parts.clone() {
        for (user, key, spilled, sets) in p.table.iter() {
            w.u64(user);
            w.u64(p.keys[key as usize].hash);
            w.u8(spilled as u8);
            for set in sets {
                w.i64(set.hi);
                w.u64(set.mask);
            }
        }
    }
    let spills: usize = parts.clone().map(|p| p.spill.len()).sum();
    w.u64(spills as u64);
    for p in parts.clone() {
        for ((user, key, g), panes) in &p.spill {
            w.u64(*user);
            w.u64(p.keys[*key as usize].hash);
            w.u8(*g);
            w.u64(panes.len() as u64);
            for &q in panes {
                w.i64(q);
            }
        }
    }
    let thresholds: usize = parts.clone().map(|p| p.thresholds.users.len()).sum();
    w.u64(thresholds as u64);
    for p in parts.clone() {
        for (&(user, key), windows) in &p.thresholds.users {
            w.u64(user);
            w.u64(p.keys[key as usize].hash);
            w.u64(windows.len() as u64);
            for uw in windows {
                w.u32(u32::from(uw.spec));
                w.i64(uw.idx);
                w.u32(uw.events);
                w.i64(uw.sum);
                w.u8(uw.qualified as u8);
            }
        }
    }
    let dedups: usize = parts.clone().map(|p| p.dedup.len()).sum();
    w.u64(dedups as u64);
    for p in parts.clone() {
        for (k, exp) in p.dedup.entries() {
            w.u64(k);
            w.i64(exp);
        }
    }
    // Attribution journeys: the plans' horizons (the same in every partition), then per user.
    w.u64(first.journeys.horizon.len() as u64);
    for hs in &first.journeys.horizon {
        for &h in hs {
            w.i64(h);
        }
    }
    w.u64(parts.clone().map(|p| p.journeys.len()).sum::<usize>() as u64);
    for p in parts {
        p.journeys.encode(w);
    }
}

/// Restores what [`encode_partitions`] wrote into freshly created partitions.
pub fn decode_partitions(
    parts: &mut [PartitionState],
    r: &mut crate::checkpoint::Reader,
) -> Result<()> {
    let mismatch = || {
        crate::Error::Checkpoint("the checkpoint's window layout does not match the config".into())
    };
    let n = parts.len();
    let Some(first) = parts.first() else {
        return Ok(());
    };
    let nspecs = first.windows.specs.len();
    let ngroups = first.groups.len();
    if r.u64()? as usize != nspecs || r.u64()? as usize != ngroups {
        return Err(mismatch());
    }
    let mut horizon = Vec::with_capacity(nspecs);
    for _ in 0..nspecs {
        horizon.push(r.i64()?);
    }
    for p in parts.iter_mut() {
        p.horizon.clone_from(&horizon);
        p.update_dead_below();
    }
    // All summed counters go to partition 0; the others learn a key's strings when they need them.
    let nkeys = r.len(8)?;
    let mut strings_of: HashMap<u64, KeyStrings> = HashMap::with_capacity(nkeys);
    for _ in 0..nkeys {
        let hash = r.u64()?;
        let strings = get_key_strings(r)?;
        let id = parts[0].ensure_key(hash, &strings);
        for s in 0..nspecs {
            let carry = r.i64()?;
            let ncells = r.len(28)?;
            let mut cells = Vec::with_capacity(ncells);
            for _ in 0..ncells {
                cells.push(Cell {
                    idx: r.i64()?,
                    events: r.u64()?,
                    add: r.u32()?,
                    sub: r.u32()?,
                    add_back: r.u32()?,
                });
            }
            let lane = parts[0].keys[id as usize].lane_mut(s);
            *lane = Lane {
                carry,
                cells,
                ..Lane::default()
            };
            if !lane.is_empty() {
                parts[0].pending[s].push(id);
            }
        }
        strings_of.insert(hash, strings);
    }
    let key_in =
        |p: &mut PartitionState, hash: u64, strings_of: &HashMap<u64, KeyStrings>| -> Result<u32> {
            let s = strings_of.get(&hash).ok_or_else(|| {
                crate::Error::Checkpoint("the checkpoint payload is damaged (unknown key)".into())
            })?;
            Ok(p.ensure_key(hash, s))
        };
    let entries = r.len(17 + 16 * ngroups)?;
    let mut sets = vec![PaneSet::default(); ngroups];
    for _ in 0..entries {
        let user = r.u64()?;
        let hash = r.u64()?;
        let spilled = r.u8()? != 0;
        for set in &mut sets {
            *set = PaneSet {
                hi: r.i64()?,
                mask: r.u64()?,
            };
        }
        let p = &mut parts[partition_of(user, n)];
        let key = key_in(p, hash, &strings_of)?;
        let keys = &p.keys;
        if !p
            .table
            .insert(user, hash, key, spilled, &sets, |id| keys[id as usize].hash)
        {
            return Err(crate::Error::Checkpoint(
                "the checkpoint payload is damaged (a user entry appears twice)".into(),
            ));
        }
        p.keys[key as usize].refs += 1;
    }
    let spills = r.len(25)?;
    for _ in 0..spills {
        let user = r.u64()?;
        let hash = r.u64()?;
        let g = r.u8()?;
        let np = r.len(8)?;
        let p = &mut parts[partition_of(user, n)];
        let key = key_in(p, hash, &strings_of)?;
        let set = p.spill.entry((user, key, g)).or_default();
        for _ in 0..np {
            set.insert(r.i64()?);
        }
    }
    let thresholds = r.len(24)?;
    for _ in 0..thresholds {
        let user = r.u64()?;
        let hash = r.u64()?;
        let nw = r.len(25)?;
        let mut windows = Vec::with_capacity(nw);
        for _ in 0..nw {
            windows.push(threshold::UserWindow {
                spec: u16::try_from(r.u32()?).map_err(|_| mismatch())?,
                idx: r.i64()?,
                events: r.u32()?,
                sum: r.i64()?,
                qualified: r.u8()? != 0,
            });
        }
        let p = &mut parts[partition_of(user, n)];
        let key = key_in(p, hash, &strings_of)?;
        if p.thresholds.users.insert((user, key), windows).is_some() {
            return Err(crate::Error::Checkpoint(
                "the checkpoint payload is damaged (a user entry appears twice)".into(),
            ));
        }
        p.keys[key as usize].refs += 1;
    }
    let dedups = r.len(16)?;
    for _ in 0..dedups {
        let k = r.u64()?;
        let exp = r.i64()?;
        parts[partition_of(k, n)].dedup.insert_raw(k, exp);
    }
    if r.u64()? as usize != first_plans(parts) {
        return Err(mismatch());
    }
    let mut horizons = vec![vec![0i64; nspecs]; first_plans(parts)];
    for hs in &mut horizons {
        for h in hs.iter_mut() {
            *h = r.i64()?;
        }
    }
    for p in parts.iter_mut() {
        p.journeys.horizon.clone_from(&horizons);
    }
    let journeys = r.len(20)?;
    for _ in 0..journeys {
        let user = r.u64()?;
        parts[partition_of(user, n)].journeys.decode(user, r)?;
    }
    Ok(())
}

fn first_plans(parts: &[PartitionState]) -> usize {
    parts.first().map_or(0, |p| p.journeys.plans.len())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeMap;

    /// The obvious way: every window index of every pane, a set of users per window.
    fn naive(events: &[(u64, i64)], n: i64) -> BTreeMap<i64, (u64, u64)> {
        let mut users: BTreeMap<i64, std::collections::BTreeSet<u64>> = BTreeMap::new();
        let mut counts: BTreeMap<i64, (u64, u64)> = BTreeMap::new();
        for &(u, p) in events {
            for k in p - n + 1..=p {
                users.entry(k).or_default().insert(u);
                counts.entry(k).or_default().1 += 1;
            }
        }
        for (k, s) in users {
            counts.get_mut(&k).unwrap().0 = s.len() as u64;
        }
        counts
    }

    /// Drives `insert_pane` + cells the way `count` does, for one key and one spec.
    fn engine(events: &[(u64, i64)], n: i64, fire_every: usize) -> BTreeMap<i64, (u64, u64)> {
        let mut sets: HashMap<u64, (PaneSet, bool)> = HashMap::new();
        let mut spill = HashMap::new();
        let mut cells = Vec::new();
        let mut carry = 0;
        let mut fired = i64::MIN;
        let mut out = Vec::new();
        for (i, &(u, p)) in events.iter().enumerate() {
            let (set, spilled) = sets.entry(u).or_default();
            if let Some((pred, succ)) =
                insert_pane(set, spilled, &mut spill, (u, 0, 0), p, i64::MIN)
            {
                let lo = pred.map_or(p - n + 1, |a| (p - n + 1).max(a + 1));
                let hi = succ.map_or(p, |b| p.min(b - n));
                if lo <= hi {
                    // As `bump` does: a range from p − n + 1 to p is kept in p's cell.
                    if hi == p && lo == p - n + 1 && lo != p {
                        cell(&mut cells, p).add_back += 1;
                    } else {
                        cell(&mut cells, lo).add += 1;
                    }
                    cell(&mut cells, hi).sub += 1;
                }
            }
            cell(&mut cells, p).events += 1;
            if fire_every > 0 && i % fire_every == 0 {
                // fire only windows that no later event can touch
                let min_later = events[i + 1..]
                    .iter()
                    .map(|e| e.1)
                    .min()
                    .unwrap_or(i64::MAX);
                let h = min_later.saturating_sub(n - 1);
                if h > fired {
                    emit(&mut cells, &mut carry, n, fired, h, 0, 0, &mut out);
                    fired = h;
                }
            }
        }
        emit(&mut cells, &mut carry, n, fired, i64::MAX, 0, 0, &mut out);
        let mut m = BTreeMap::new();
        for f in out {
            assert!(
                m.insert(f.window, (f.unique, f.events)).is_none(),
                "window {} emitted twice",
                f.window
            );
        }
        m
    }

    #[test]
    fn sliding_small_case() {
        // n = 3: user 1 in panes 0 and 2, user 2 in pane 1
        let ev = [(1, 0), (2, 1), (1, 2)];
        assert_eq!(engine(&ev, 3, 0), naive(&ev, 3));
        let m = engine(&ev, 3, 0);
        assert_eq!(m[&0], (2, 3)); // window 0 = panes 0..2
        assert_eq!(m[&2], (1, 1)); // panes 2..4: only user 1
    }

    /// A state for windows `s` (3h sliding by 1h) and `d` (1d tumbling), which share one group
    /// of hourly panes, with no allowed lateness; and an `apply` for `{"u":…,"t":hour,"e":"x"}`.
    fn merged_group_state() -> (
        PartitionState,
        impl FnMut(&mut PartitionState, &str, i64, i64),
    ) {
        let cfg = crate::config::Config::parse(
            std::path::Path::new("t.toml"),
            "[fields]\nuser = \"u\"\ntime = \"t\"\nevent_type = \"e\"\n[watermark]\nallowed_lateness = \"0s\"\n[[windows]]\nname = \"s\"\nsize = \"3h\"\nslide = \"1h\"\n[[windows]]\nname = \"d\"\nsize = \"1d\"\n",
        )
        .unwrap();
        let state = PartitionState::new(&cfg.windows, cfg.ttl, Parser::new(&cfg));
        assert_eq!(
            state.groups.len(),
            1,
            "the daily window joins the hourly panes"
        );
        assert_eq!(state.groups[0].per, vec![1, 24]);
        let mut parser = Parser::new(&cfg);
        let apply = move |state: &mut PartitionState, user: &str, hour: i64, wm: i64| {
            let line = format!(r#"{{"u":"{user}","t":{},"e":"x"}}"#, hour * HOUR);
            let mut keys = Vec::new();
            let ev = parser.parse(line.as_bytes(), &mut keys).unwrap();
            assert_eq!(
                state.apply(&ev, &keys, wm, line.as_bytes()),
                Outcome::Counted
            );
        };
        (state, apply)
    }

    const HOUR: i64 = 3_600_000;

    /// Unique users of the daily window `day` in `fired`.
    fn daily_unique(fired: &[Fired], day: i64) -> u64 {
        fired
            .iter()
            .filter(|f| f.spec == 1 && f.window == day)
            .map(|f| f.unique)
            .sum()
    }

    #[test]
    fn pruning_keeps_panes_an_open_tumbling_window_of_the_group_needs() {
        let day0 = 19_723 * 24; // 2024-01-01, in hours
        let (mut state, mut apply) = merged_group_state();
        let mut fired = Vec::new();
        apply(&mut state, "a", day0 + 1, i64::MIN);
        // The sliding windows holding 01:00 fire; the day does not.
        let wm = (day0 + 6) * HOUR;
        state.fire(Some(wm), &mut fired);
        state.prune_seen();
        apply(&mut state, "a", day0 + 10, wm);
        state.fire(None, &mut fired);
        assert_eq!(daily_unique(&fired, day0 / 24), 1, "{fired:?}");
    }

    #[test]
    fn panes_far_behind_the_newest_spill_while_an_open_tumbling_window_needs_them() {
        let day0 = 19_723 * 24;
        let (mut state, mut apply) = merged_group_state();
        let mut fired = Vec::new();
        apply(&mut state, "a", day0, i64::MIN);
        let wm = (day0 + 6) * HOUR;
        state.fire(Some(wm), &mut fired);
        // 70 panes ahead: pane 0 leaves the 64-pane mask, but day 0 is still open.
        apply(&mut state, "a", day0 + 70, wm);
        apply(&mut state, "a", day0 + 12, wm);
        state.fire(None, &mut fired);
        assert_eq!(daily_unique(&fired, day0 / 24), 1, "{fired:?}");
        assert_eq!(daily_unique(&fired, day0 / 24 + 2), 1, "{fired:?}");
    }

    #[test]
    fn keys_are_freed_once_their_windows_fired_and_reused() {
        let cfg = crate::config::Config::parse(
            std::path::Path::new("t.toml"),
            "[fields]\nuser = \"u\"\ntime = \"t\"\nevent_type = \"e\"\n[watermark]\nallowed_lateness = \"0s\"\n[[windows]]\nname = \"h\"\nsize = \"1h\"\n",
        )
        .unwrap();
        let mut parser = Parser::new(&cfg);
        let mut state = PartitionState::new(&cfg.windows, cfg.ttl, Parser::new(&cfg));
        let mut fired = Vec::new();
        let mut apply = |state: &mut PartitionState, line: &str, wm: i64| {
            let mut keys = Vec::new();
            let ev = parser.parse(line.as_bytes(), &mut keys).unwrap();
            assert_eq!(
                state.apply(&ev, &keys, wm, line.as_bytes()),
                Outcome::Counted
            );
        };
        apply(
            &mut state,
            r#"{"u":"a","t":1704067200000,"e":"open"}"#,
            i64::MIN,
        );
        apply(
            &mut state,
            r#"{"u":"b","t":1704067200000,"e":"click"}"#,
            i64::MIN,
        );
        assert_eq!(state.live_keys(), 2);
        state.fire(Some(1_704_067_200_000 + 2 * 3_600_000), &mut fired);
        assert_eq!(fired.len(), 2);
        state.prune_seen();
        assert_eq!(
            state.live_keys(),
            0,
            "no open window and no user state: both keys are freed"
        );
        // the fired rows of this batch can still be read
        assert_eq!(
            state.keys[fired[0].key as usize]
                .strings
                .event_type
                .as_deref(),
            Some("open")
        );
        apply(
            &mut state,
            r#"{"u":"c","t":1704078000000,"e":"view"}"#,
            1_704_067_200_000 + 2 * 3_600_000,
        );
        assert_eq!(state.keys.len(), 2, "a freed slot was reused");
        assert_eq!(state.live_keys(), 1);
    }

    proptest::proptest! {
        #[test]
        fn matches_naive(ev in proptest::collection::vec((0u64..6, 0i64..200), 1..120), n in 1i64..30, fire_every in 0usize..7) {
            proptest::prop_assert_eq!(engine(&ev, n, fire_every), naive(&ev, n));
        }

        #[test]
        fn matches_naive_with_far_panes(ev in proptest::collection::vec((0u64..3, 0i64..400), 1..60), n in 1i64..40) {
            proptest::prop_assert_eq!(engine(&ev, n, 0), naive(&ev, n));
        }
    }
}
