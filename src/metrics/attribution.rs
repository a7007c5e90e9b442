//! The attribution kind: "unique users who did B within T after A", each B credited to an A's
//! dimension values (docs/SEMANTICS.md, "Attribution metrics").
//!
//! Why it is evaluated when a window fires, not when B arrives: which A a B is credited to depends
//! on every A of its lookback, and an A may arrive after its B (out of order, within lateness). So
//! each user keeps a small [`Journey`] — its A's (time and dimension values) and its B's — and a
//! window's counts are computed from it the moment the window fires. By the generalised late rule
//! no event that could still change that window can be counted any more, so the credits computed
//! then are final, and the result is the batch answer whatever the arrival order.
//!
//! Why a calendar: a journey needs looking at only when a window one of its B's may credit fires,
//! or when its oldest A can be forgotten. Each journey is filed under that watermark in a heap, so
//! a firing visits the journeys it concerns, not every user with state. Dimension values and event
//! types are interned per partition (with reference counts), so an A costs a few integers.
//!
//! The counts come out as (key, window, events) credits of one user, which the partition adds to
//! its key lanes like the threshold kind's, so merging, the sink and checkpoints stay generic.

use std::cmp::Reverse;
use std::collections::BinaryHeap;

use hashbrown::HashMap;

use super::threshold::{Rule, windows_of};
use super::{Touch, WindowOn};
use crate::parse::{KeyStrings, key_hash};
use crate::timefmt::Millis;
use crate::window::{WindowSpec, Windows};

/// Most dimensions an attribution metric can have (the rest are ignored; the config allows 64
/// dimensions in all, so this is checked when the config is read).
pub const MAX_DIMS: usize = 16;

/// A dimension value id meaning "this A has no value for the dimension".
pub const ABSENT: u32 = u32::MAX;
/// The dimension of a total key.
pub const TOTAL: u16 = u16::MAX;

/// One attribution metric, as the counting state needs it.
#[derive(Debug, Clone)]
pub struct Plan {
    /// Index into `Config::metrics`.
    pub metric: u16,
    pub within: Millis,
    pub touch: Touch,
    pub on: WindowOn,
    /// The metric's dimensions (indexes into `Config::dimensions`, ascending = config order).
    pub dims: Vec<u16>,
    /// The window specs the metric counts in.
    pub specs: Vec<usize>,
    pub rule: Rule,
    pub by_type: bool,
    /// The metric's event-type hash without the type: its seed (`by_type`), or the whole hash.
    pub type_seed: u64,
    /// The plan whose journeys this one shares (itself when none): plans with the same `after`,
    /// `filter`, `within`, dimensions and `min_sum` field see the same A's and B's.
    pub leader: u16,
}

impl Plan {
    /// The hash standing for event type `raw` in this metric's keys (as the parser's).
    fn type_hash(&self, raw: u64) -> u64 {
        if self.by_type {
            raw ^ self.type_seed
        } else {
            self.type_seed
        }
    }

    /// How much later than other windows this metric's windows fire: `within` when keyed by the
    /// anchor (a B up to `within` after an A can still credit the A's window).
    fn delay(&self) -> Millis {
        match self.on {
            WindowOn::Anchor => self.within,
            WindowOn::Conversion => 0,
        }
    }

    /// The window indexes of `spec` a B at `t` may be credited in: the windows holding its lookback
    /// `[t − within, t − 1]` (anchor), or the windows holding `t` (conversion).
    fn conv_range(&self, spec: &WindowSpec, t: Millis) -> (i64, i64) {
        match self.on {
            WindowOn::Anchor => (
                spec.pane(t.saturating_sub(self.within)) - spec.panes() + 1,
                spec.pane(t.saturating_sub(1)),
            ),
            WindowOn::Conversion => (spec.pane(t) - spec.panes() + 1, spec.pane(t)),
        }
    }

    /// The watermark at which window `k` of `spec` fires for this metric.
    fn fire_at(&self, spec: &WindowSpec, k: i64, lateness: Millis) -> Millis {
        clamp(spec.end(k) as i128 + self.delay() as i128 + lateness as i128)
    }
}

/// The earliest watermark at which an event of `t` in the role of a B (`conv`) or an A (`anchor`)
/// of an attribution metric is late, beyond the general rule (docs/SEMANTICS.md, "Lateness,
/// generalised"). `specs` are the metric's window specs. `Millis::MAX`: never by this rule.
pub fn late_at(
    plan: (&[WindowSpec], Millis, Touch, WindowOn),
    lateness: Option<Millis>,
    t: Millis,
    anchor: bool,
    conv: bool,
) -> Millis {
    let (specs, within, touch, on) = plan;
    let Some(l) = lateness else {
        return Millis::MAX;
    };
    if on == WindowOn::Conversion {
        return Millis::MAX;
    }
    let bound = |x: Millis| {
        let e = specs
            .iter()
            .map(|s| s.first_end(x))
            .min()
            .unwrap_or(Millis::MAX);
        clamp(e as i128 + within as i128 + l as i128)
    };
    let mut at = Millis::MAX;
    if conv {
        at = at.min(bound(t.saturating_sub(within)));
    }
    if anchor && touch == Touch::Last {
        at = at.min(bound(t.saturating_sub(within).saturating_add(1)));
    }
    at
}

fn clamp(x: i128) -> Millis {
    x.clamp(i128::from(i64::MIN), i128::from(i64::MAX)) as Millis
}

/// What the parser found of one event for one attribution metric.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Hit {
    /// Index into the partition's plans.
    pub plan: u16,
    /// The metric's `after` filter matches: the event is an A.
    pub anchor: bool,
    /// The metric's `filter` matches: the event is a B.
    pub conv: bool,
    /// The event type's hash (of its text; each metric mixes in its own seed).
    pub type_hash: u64,
    /// The `min_sum` amount (millionths; 0 without `min_sum`).
    pub amount: i64,
    /// Where the metric's dimension value hashes start in the batch's value buffer.
    pub vals_at: u32,
}

/// The strings of an event a journey needs the first time it meets a value: the event type and
/// the plan's dimension values.
pub type Texts = (Box<str>, Vec<Option<Box<str>>>);

/// An event's strings, re-read from its line only when an interner first needs one of them.
struct Lazy<F> {
    make: Option<F>,
    made: Option<Texts>,
}

impl<F: FnOnce() -> Option<Texts>> Lazy<F> {
    fn get(&mut self) -> Option<&mut Texts> {
        if let Some(make) = self.make.take() {
            self.made = make();
        }
        self.made.as_mut()
    }
}

/// Strings with reference counts: the dimension values of live A's, the event types of live B's.
#[derive(Debug, Default)]
struct Interner {
    ids: HashMap<u64, u32>,
    items: Vec<Interned>,
    free: Vec<u32>,
}

#[derive(Debug)]
struct Interned {
    key: u64,
    /// The hash the key hashes are built from (the value's, or the type's).
    hash: u64,
    text: Box<str>,
    refs: u32,
}

impl Interner {
    /// The id of `key`, one more reference to it; `text` is asked for only when it is new.
    fn acquire(&mut self, key: u64, hash: u64, text: impl FnOnce() -> Box<str>) -> u32 {
        let id = match self.ids.get(&key) {
            Some(&id) => id,
            None => {
                let item = Interned {
                    key,
                    hash,
                    text: text(),
                    refs: 0,
                };
                let id = match self.free.pop() {
                    Some(id) => {
                        self.items[id as usize] = item;
                        id
                    }
                    None => {
                        self.items.push(item);
                        (self.items.len() - 1) as u32
                    }
                };
                self.ids.insert(key, id);
                id
            }
        };
        self.items[id as usize].refs += 1;
        id
    }

    fn release(&mut self, id: u32) {
        let item = &mut self.items[id as usize];
        item.refs = item.refs.saturating_sub(1);
        if item.refs == 0 {
            self.ids.remove(&item.key);
            item.text = Box::from("");
            self.free.push(id);
        }
    }

    fn heap_bytes(&self) -> usize {
        self.ids.capacity() * 13
            + self.items.capacity() * std::mem::size_of::<Interned>()
            + self.items.iter().map(|i| i.text.len()).sum::<usize>()
    }
}

/// The interner key of value hash `vh` of dimension `dim`.
fn value_key(dim: u16, vh: u64) -> u64 {
    key_hash(0x0a77_7269_6275_7465, u64::from(dim), vh)
}

#[derive(Debug, Clone, Copy)]
struct Conv {
    t: Millis,
    /// Interned event type.
    ty: u32,
    amount: i64,
}

/// One user's A's and B's of one attribution metric.
#[derive(Debug, Default)]
struct Journey {
    /// A times, ascending; A's at the same time ordered by their dimension tuple.
    anchors: Vec<Millis>,
    /// Per A, the plan's dimension value ids ([`ABSENT`]: none), `dims` per A.
    vals: Vec<u32>,
    /// B's, by time.
    convs: Vec<Conv>,
    /// The watermark at which the journey is next looked at (`Millis::MAX`: at the end of input).
    due: Millis,
}

/// A (key, window) a user qualifies in, with its credited B's.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Credit {
    pub hash: u64,
    pub spec: u16,
    pub window: i64,
    pub events: u64,
    plan: u16,
    ty: u32,
    dim: u16,
    val: u32,
}

/// One partition's journeys of every attribution metric.
#[derive(Debug)]
pub struct Journeys {
    pub plans: Vec<Plan>,
    /// Per plan, its window specs.
    plan_specs: Vec<Vec<WindowSpec>>,
    /// Per leader plan, the plans sharing its journeys (itself first); empty for the others.
    members: Vec<Vec<u16>>,
    windows: Windows,
    users: HashMap<(u64, u16), Journey>,
    calendar: BinaryHeap<Reverse<(Millis, u64, u16)>>,
    values: Interner,
    types: Interner,
    /// Per plan, per spec (all of them): the first window not yet evaluated.
    pub horizon: Vec<Vec<i64>>,
    /// Interned ids released while credits still refer to them (freed by `release_deferred`).
    deferred: Vec<(bool, u32)>,
    /// A's and B's held (for the state estimate without walking every journey).
    anchors: usize,
    convs: usize,
    contributions: Vec<(u16, i64, u16, u32)>,
    sums: Vec<(u16, i64, u16, u32, u32, u64, i64)>,
}

impl Journeys {
    pub fn new(plans: Vec<Plan>, windows: &Windows) -> Journeys {
        let nspecs = windows.specs.len();
        Journeys {
            horizon: vec![vec![i64::MIN; nspecs]; plans.len()],
            members: (0..plans.len())
                .map(|l| {
                    (0..plans.len() as u16)
                        .filter(|&q| plans[q as usize].leader as usize == l)
                        .collect()
                })
                .collect(),
            plan_specs: plans
                .iter()
                .map(|p| p.specs.iter().map(|&s| windows.specs[s].clone()).collect())
                .collect(),
            plans,
            windows: windows.clone(),
            users: HashMap::new(),
            calendar: BinaryHeap::new(),
            values: Interner::default(),
            types: Interner::default(),
            deferred: Vec::new(),
            anchors: 0,
            convs: 0,
            contributions: Vec::new(),
            sums: Vec::new(),
        }
    }

    pub fn is_empty(&self) -> bool {
        self.plans.is_empty()
    }

    /// Records a counted event of `user` at `t` for one metric: an A, a B or both. `vals` are the
    /// plan's dimension value hashes; `texts` gives the event's strings and is called only when one
    /// of them is new to this partition.
    pub fn observe(
        &mut self,
        user: u64,
        t: Millis,
        hit: &Hit,
        vals: &[Option<u64>],
        texts: impl FnOnce() -> Option<Texts>,
    ) {
        let p = hit.plan as usize;
        let plan = &self.plans[p];
        let mut texts = Lazy {
            make: Some(texts),
            made: None,
        };
        let journey = self
            .users
            .entry((user, hit.plan))
            .or_insert_with(|| Journey {
                due: Millis::MAX,
                ..Journey::default()
            });
        // The due time depends only on the first A and the first B: recomputed when either changes.
        let mut first = journey.anchors.is_empty() && journey.convs.is_empty();
        if hit.anchor {
            let nd = plan.dims.len();
            let mut ids = [ABSENT; MAX_DIMS];
            for (i, (v, &d)) in vals.iter().zip(&plan.dims).enumerate().take(MAX_DIMS) {
                if let Some(vh) = v {
                    ids[i] = self.values.acquire(value_key(d, *vh), *vh, || {
                        texts
                            .get()
                            .and_then(|t| t.1.get_mut(i).and_then(Option::take))
                            .unwrap_or_default()
                    });
                }
            }
            let ids = &ids[..nd.min(MAX_DIMS)];
            let values = &self.values;
            // In-order events append; an older one is inserted after the A's before it and the
            // A's of its time with a smaller or equal tuple.
            let pos = if journey.anchors.last().is_none_or(|&a| a < t) {
                journey.anchors.len()
            } else {
                let at = journey.anchors.partition_point(|&a| a < t);
                let end = journey.anchors.partition_point(|&a| a <= t);
                at + (at..end)
                    .position(|j| {
                        tuple_cmp(values, &journey.vals[j * nd..(j + 1) * nd], ids).is_gt()
                    })
                    .unwrap_or(end - at)
            };
            first |= pos == 0;
            if pos == journey.anchors.len() {
                journey.anchors.push(t);
                journey.vals.extend_from_slice(ids);
            } else {
                journey.anchors.insert(pos, t);
                journey.vals.splice(pos * nd..pos * nd, ids.iter().copied());
            }
        }
        if hit.conv {
            let ty = self.types.acquire(hit.type_hash, hit.type_hash, || {
                texts
                    .get()
                    .map(|t| std::mem::take(&mut t.0))
                    .unwrap_or_default()
            });
            let pos = journey.convs.partition_point(|c| c.t <= t);
            first |= pos == 0;
            journey.convs.insert(
                pos,
                Conv {
                    t,
                    ty,
                    amount: hit.amount,
                },
            );
        }
        self.anchors += usize::from(hit.anchor);
        self.convs += usize::from(hit.conv);
        if !first {
            return;
        }
        let due = Schedule {
            windows: &self.windows,
            plans: &self.plans,
            plan_specs: &self.plan_specs,
            horizon: &self.horizon,
            members: &self.members,
        }
        .due(hit.plan, journey);
        if due < journey.due {
            journey.due = due;
            self.calendar.push(Reverse((due, user, hit.plan)));
        }
    }

    /// Evaluates every window that fires under `wm` (all of them when `wm` is `None`: the end of
    /// input) for the journeys it concerns, appending the credits of qualifying users to
    /// `credits`, and forgets what no open window needs. Call [`release_deferred`] once the
    /// credits' strings have been read.
    ///
    /// [`release_deferred`]: Self::release_deferred
    pub fn fire(&mut self, wm: Option<Millis>, credits: &mut Vec<Credit>) {
        let old = self.horizon.clone();
        let lateness = self.windows.lateness;
        for (p, plan) in self.plans.iter().enumerate() {
            for &s in &plan.specs {
                let h = match wm {
                    None => i64::MAX,
                    Some(wm) => {
                        self.windows.specs[s].horizon(wm.saturating_sub(plan.delay()), lateness)
                    }
                };
                self.horizon[p][s] = self.horizon[p][s].max(h);
            }
        }
        let Some(now) = wm else {
            let users = std::mem::take(&mut self.users);
            self.calendar.clear();
            for ((_, p), mut j) in users {
                self.evaluate(p, &mut j, &old, None, credits);
            }
            return;
        };
        while let Some(&Reverse((due, user, p))) = self.calendar.peek() {
            if due > now {
                break;
            }
            self.calendar.pop();
            let Some(mut j) = self.users.remove(&(user, p)) else {
                continue;
            };
            if j.due != due {
                self.users.insert((user, p), j);
                continue;
            }
            self.evaluate(p, &mut j, &old, Some(now), credits);
            if j.anchors.is_empty() && j.convs.is_empty() {
                continue;
            }
            // Everything due under `now` was just done, so the next look is later; the `max`
            // only guards against a loop should that ever not hold.
            j.due = self.due_of(p, &j).max(now + 1);
            if j.due != Millis::MAX {
                self.calendar.push(Reverse((j.due, user, p)));
            }
            self.users.insert((user, p), j);
        }
    }

    /// The credits of journey `j` (of leader plan `leader`) for every plan sharing it, in the
    /// windows from `old` (the horizons before this firing) up to each plan's horizon, then drops
    /// the B's whose windows have all fired and the A's no B can be credited to any more.
    fn evaluate(
        &mut self,
        leader: u16,
        j: &mut Journey,
        old: &[Vec<i64>],
        now: Option<Millis>,
        credits: &mut Vec<Credit>,
    ) {
        for i in 0..self.members[leader as usize].len() {
            let p = self.members[leader as usize][i];
            self.credit(p, j, &old[p as usize], credits);
        }
        self.prune(leader, j, now);
    }

    /// Plan `p`'s credits of journey `j` in the windows `[lo, horizon)` of each of its specs.
    fn credit(&mut self, p: u16, j: &Journey, lo: &[i64], credits: &mut Vec<Credit>) {
        let plan = &self.plans[p as usize];
        let hi = &self.horizon[p as usize];
        let specs = &self.windows.specs;
        let nd = plan.dims.len();
        self.sums.clear();
        for b in &j.convs {
            let in_range = |s: usize| {
                let (a, z) = plan.conv_range(&specs[s], b.t);
                a < hi[s] && z >= lo[s]
            };
            if !plan.specs.iter().any(|&s| in_range(s)) {
                continue;
            }
            let from = j
                .anchors
                .partition_point(|&a| a < b.t.saturating_sub(plan.within));
            let to = j.anchors.partition_point(|&a| a < b.t);
            if from >= to {
                continue;
            }
            let credited = match plan.touch {
                Touch::First => from..from + 1,
                Touch::Last => {
                    let last = j.anchors[to - 1];
                    let first_of_last = j.anchors[from..to].partition_point(|&a| a < last) + from;
                    first_of_last..first_of_last + 1
                }
                Touch::Any => from..to,
            };
            self.contributions.clear();
            for a in credited {
                let t = match plan.on {
                    WindowOn::Anchor => j.anchors[a],
                    WindowOn::Conversion => b.t,
                };
                for &s in &plan.specs {
                    let spec = &specs[s];
                    for k in windows_of(t, spec.slide, spec.panes()) {
                        if k < lo[s] || k >= hi[s] {
                            continue;
                        }
                        self.contributions.push((s as u16, k, TOTAL, ABSENT));
                        for (i, &d) in plan.dims.iter().enumerate() {
                            let v = j.vals[a * nd + i];
                            if v != ABSENT {
                                self.contributions.push((s as u16, k, d, v));
                            }
                        }
                    }
                }
            }
            self.contributions.sort_unstable();
            self.contributions.dedup();
            // Without `by_type` every B's type is the same key part: one group for all of them.
            let ty = if plan.by_type { b.ty } else { ABSENT };
            for &(s, k, d, v) in &self.contributions {
                self.sums.push((s, k, d, v, ty, 1, b.amount));
            }
        }
        self.sums
            .sort_unstable_by_key(|x| (x.0, x.1, x.2, x.3, x.4));
        let mut i = 0;
        while i < self.sums.len() {
            let (s, k, d, v, ty, mut n, mut sum) = self.sums[i];
            i += 1;
            while let Some(x) = self
                .sums
                .get(i)
                .filter(|x| (x.0, x.1, x.2, x.3, x.4) == (s, k, d, v, ty))
            {
                n += x.5;
                sum = sum.saturating_add(x.6);
                i += 1;
            }
            if plan.rule.met(u32::try_from(n).unwrap_or(u32::MAX), sum) {
                let th = match ty {
                    ABSENT => plan.type_seed,
                    ty => plan.type_hash(self.types.items[ty as usize].hash),
                };
                let hash = if d == TOTAL {
                    key_hash(th, u64::MAX, 0)
                } else {
                    key_hash(th, u64::from(d), self.values.items[v as usize].hash)
                };
                credits.push(Credit {
                    hash,
                    spec: s,
                    window: k,
                    events: n,
                    plan: p,
                    ty,
                    dim: d,
                    val: v,
                });
            }
        }
    }

    /// Drops the B's whose windows all fired for every plan sharing the journey, and the A's that
    /// no B, present or still to come, can have in its lookback (everything at the end of input,
    /// `now = None`).
    fn prune(&mut self, leader: u16, j: &mut Journey, now: Option<Millis>) {
        let members = &self.members[leader as usize];
        let specs = &self.windows.specs;
        let fired = |b: &Conv| {
            members.iter().all(|&q| {
                let plan = &self.plans[q as usize];
                let hi = &self.horizon[q as usize];
                plan.specs
                    .iter()
                    .all(|&s| plan.conv_range(&specs[s], b.t).1 < hi[s])
            })
        };
        let done = j
            .convs
            .iter()
            .take_while(|b| now.is_none() || fired(b))
            .count();
        self.convs -= done;
        for b in j.convs.drain(..done) {
            self.deferred.push((true, b.ty));
        }
        let first_b = j.convs.first().map(|b| b.t);
        let within = self.plans[leader as usize].within;
        let nd = self.plans[leader as usize].dims.len();
        let forget = j
            .anchors
            .iter()
            .take_while(|&&a| match now {
                None => true,
                Some(now) => {
                    first_b.is_none_or(|b| a < b.saturating_sub(within))
                        && members.iter().all(|&q| {
                            let q = q as usize;
                            now >= anchor_free_at(
                                &self.windows,
                                &self.plans[q],
                                &self.plan_specs[q],
                                a,
                            )
                        })
                }
            })
            .count();
        self.anchors -= forget;
        j.anchors.drain(..forget);
        for v in j.vals.drain(..forget * nd) {
            if v != ABSENT {
                self.deferred.push((false, v));
            }
        }
    }

    fn due_of(&self, leader: u16, j: &Journey) -> Millis {
        self.schedule().due(leader, j)
    }

    fn schedule(&self) -> Schedule<'_> {
        Schedule {
            windows: &self.windows,
            plans: &self.plans,
            plan_specs: &self.plan_specs,
            horizon: &self.horizon,
            members: &self.members,
        }
    }

    /// Releases the strings of the A's and B's dropped by the last [`fire`](Self::fire).
    pub fn release_deferred(&mut self) {
        for (ty, id) in self.deferred.drain(..) {
            if ty {
                self.types.release(id);
            } else {
                self.values.release(id);
            }
        }
    }

    /// The strings of a credit's key (valid until [`release_deferred`](Self::release_deferred)).
    pub fn key_strings(&self, c: &Credit) -> KeyStrings {
        let plan = &self.plans[c.plan as usize];
        KeyStrings {
            metric: plan.metric,
            event_type: plan
                .by_type
                .then(|| self.types.items[c.ty as usize].text.clone()),
            dimension: (c.dim != TOTAL).then_some(c.dim),
            value: (c.dim != TOTAL).then(|| self.values.items[c.val as usize].text.clone()),
        }
    }

    /// Journeys currently held (tests, the state estimate).
    pub fn len(&self) -> usize {
        self.users.len()
    }

    pub fn heap_bytes(&self) -> usize {
        // Estimated from the counts (walking every journey per batch showed in profiles): each
        // vector's capacity is at most twice its length.
        let nd: usize = self.plans.iter().map(|p| p.dims.len()).max().unwrap_or(0);
        self.users.capacity() * (16 + std::mem::size_of::<Journey>() + 1)
            + self.anchors * (8 + 4 * nd) * 3 / 2
            + self.convs * std::mem::size_of::<Conv>() * 3 / 2
            + self.calendar.capacity() * 24
            + self.values.heap_bytes()
            + self.types.heap_bytes()
    }
}

/// Compares two A's dimension tuples: value by value, absent first, then byte order.
fn tuple_cmp(values: &Interner, a: &[u32], b: &[u32]) -> std::cmp::Ordering {
    for (&x, &y) in a.iter().zip(b) {
        let o = match (x, y) {
            (ABSENT, ABSENT) => std::cmp::Ordering::Equal,
            (ABSENT, _) => std::cmp::Ordering::Less,
            (_, ABSENT) => std::cmp::Ordering::Greater,
            (x, y) => values.items[x as usize]
                .text
                .as_bytes()
                .cmp(values.items[y as usize].text.as_bytes()),
        };
        if o.is_ne() {
            return o;
        }
    }
    std::cmp::Ordering::Equal
}

/// The watermark from which no B still to come can have an A of time `t` in its lookback: every
/// B of the metric up to `t + within` is late by then.
fn anchor_free_at(windows: &Windows, plan: &Plan, specs: &[WindowSpec], t: Millis) -> Millis {
    let Some(l) = windows.lateness else {
        return Millis::MAX;
    };
    let last_b = t.saturating_add(plan.within);
    let general = clamp(windows.earliest_end(last_b) as i128 + l as i128);
    general.min(late_at(
        (specs, plan.within, plan.touch, plan.on),
        Some(l),
        last_b,
        false,
        true,
    ))
}

/// What deciding a journey's due time needs (borrowed field by field, so it can be built while
/// a journey is borrowed from the map).
struct Schedule<'a> {
    windows: &'a Windows,
    plans: &'a [Plan],
    plan_specs: &'a [Vec<WindowSpec>],
    horizon: &'a [Vec<i64>],
    members: &'a [Vec<u16>],
}

impl Schedule<'_> {
    /// When journey `j` of leader plan `leader` next needs looking at: when the next window its
    /// first B may be credited in fires for any plan sharing it, or when every plan lets its first
    /// A be forgotten (if no B holds it).
    fn due(&self, leader: u16, j: &Journey) -> Millis {
        let members = &self.members[leader as usize];
        let conv = members
            .iter()
            .map(|&q| {
                conv_due(
                    self.windows,
                    &self.plans[q as usize],
                    &self.horizon[q as usize],
                    j,
                )
            })
            .min()
            .unwrap_or(Millis::MAX);
        let anchor = members
            .iter()
            .map(|&q| {
                let q = q as usize;
                anchor_due(self.windows, &self.plans[q], &self.plan_specs[q], j)
            })
            .max()
            .unwrap_or(Millis::MAX);
        conv.min(anchor)
    }
}

/// When the next window journey `j`'s first B may be credited in fires for `plan`.
fn conv_due(windows: &Windows, plan: &Plan, horizon: &[i64], j: &Journey) -> Millis {
    let (Some(l), Some(b)) = (windows.lateness, j.convs.first()) else {
        return Millis::MAX;
    };
    let mut due = Millis::MAX;
    for &s in &plan.specs {
        let spec = &windows.specs[s];
        let (lo, hi) = plan.conv_range(spec, b.t);
        let k = lo.max(horizon[s]);
        if k <= hi {
            due = due.min(plan.fire_at(spec, k, l));
        }
    }
    due
}

/// When `plan` lets journey `j`'s first A be forgotten (`Millis::MAX` while a B holds it).
fn anchor_due(windows: &Windows, plan: &Plan, specs: &[WindowSpec], j: &Journey) -> Millis {
    let (Some(_), Some(&a)) = (windows.lateness, j.anchors.first()) else {
        return Millis::MAX;
    };
    let held = j
        .convs
        .first()
        .is_some_and(|b| a >= b.t.saturating_sub(plan.within));
    if held {
        Millis::MAX
    } else {
        anchor_free_at(windows, plan, specs, a)
    }
}

impl Journeys {
    /// Writes this partition's journeys (strings inline, so any partition can read them back).
    pub fn encode(&self, w: &mut crate::checkpoint::Writer) {
        for (&(user, p), j) in &self.users {
            w.u64(user);
            w.u32(u32::from(p));
            let nd = self.plans[p as usize].dims.len();
            w.u64(j.anchors.len() as u64);
            for (i, &t) in j.anchors.iter().enumerate() {
                w.i64(t);
                for &v in &j.vals[i * nd..(i + 1) * nd] {
                    if v == ABSENT {
                        w.u8(0);
                    } else {
                        let item = &self.values.items[v as usize];
                        w.u8(1);
                        w.u64(item.hash);
                        w.str(&item.text);
                    }
                }
            }
            w.u64(j.convs.len() as u64);
            for b in &j.convs {
                let item = &self.types.items[b.ty as usize];
                w.i64(b.t);
                w.u64(item.hash);
                w.str(&item.text);
                w.i64(b.amount);
            }
        }
    }

    /// Reads one journey written by [`encode`](Self::encode) (its user already read).
    pub fn decode(
        &mut self,
        user: u64,
        r: &mut crate::checkpoint::Reader,
    ) -> crate::error::Result<()> {
        let damaged =
            || crate::Error::Checkpoint("the checkpoint payload is damaged (a journey)".into());
        let p = u16::try_from(r.u32()?).map_err(|_| damaged())?;
        let nd = self.plans.get(p as usize).ok_or_else(damaged)?.dims.len();
        let mut j = Journey {
            due: Millis::MAX,
            ..Journey::default()
        };
        let na = r.len(8)?;
        for _ in 0..na {
            j.anchors.push(r.i64()?);
            for i in 0..nd {
                j.vals.push(if r.u8()? == 0 {
                    ABSENT
                } else {
                    let hash = r.u64()?;
                    let text: Box<str> = r.string()?.into();
                    let d = self.plans[p as usize].dims[i];
                    self.values.acquire(value_key(d, hash), hash, || text)
                });
            }
        }
        let nb = r.len(24)?;
        for _ in 0..nb {
            let t = r.i64()?;
            let hash = r.u64()?;
            let text: Box<str> = r.string()?.into();
            let amount = r.i64()?;
            let ty = self.types.acquire(hash, hash, || text);
            j.convs.push(Conv { t, ty, amount });
        }
        self.anchors += j.anchors.len();
        self.convs += j.convs.len();
        j.due = self.due_of(p, &j);
        if j.due != Millis::MAX {
            self.calendar.push(Reverse((j.due, user, p)));
        }
        if self.users.insert((user, p), j).is_some() {
            return Err(damaged());
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const HOUR: Millis = 3_600_000;
    const DAY: Millis = 24 * HOUR;

    fn windows() -> Windows {
        Windows {
            specs: vec![WindowSpec {
                name: "daily".into(),
                size: DAY,
                slide: DAY,
            }],
            lateness: Some(HOUR),
        }
    }

    fn plan(touch: Touch, on: WindowOn) -> Plan {
        Plan {
            metric: 0,
            within: DAY,
            touch,
            on,
            dims: vec![],
            specs: vec![0],
            rule: Rule::Count(1),
            by_type: true,
            type_seed: 0,
            leader: 0,
        }
    }

    /// 100 days of one user opening every hour and buying every 6 hours: the journey must hold
    /// only what `within`, lateness and the open windows need, however long the replay.
    #[test]
    fn state_is_bounded_by_within_and_open_windows_not_by_the_replay() {
        for (touch, on) in [
            (Touch::Last, WindowOn::Anchor),
            (Touch::Any, WindowOn::Conversion),
        ] {
            let mut j = Journeys::new(vec![plan(touch, on)], &windows());
            let mut credits = Vec::new();
            let (mut most_anchors, mut most_convs) = (0, 0);
            for day in 0..100 {
                for h in 0..24 {
                    let hit = Hit {
                        plan: 0,
                        anchor: true,
                        conv: h % 6 == 3,
                        type_hash: 7,
                        amount: 0,
                        vals_at: 0,
                    };
                    j.observe(1, day * DAY + h * HOUR, &hit, &[], || {
                        Some(("buy".into(), Vec::new()))
                    });
                }
                j.fire(Some(day * DAY + 23 * HOUR), &mut credits);
                j.release_deferred();
                most_anchors = most_anchors.max(j.anchors);
                most_convs = most_convs.max(j.convs);
            }
            // within 1 day + lateness 1 hour + the open day: a few days' worth, never 100.
            assert!(
                most_anchors <= 4 * 24,
                "{touch:?} {on:?}: {most_anchors} anchors held"
            );
            assert!(
                most_convs <= 4 * 4,
                "{touch:?} {on:?}: {most_convs} conversions held"
            );
            // Every day fired before the end credits its B's (4 a day): the firing happened.
            let days: std::collections::BTreeSet<i64> = credits.iter().map(|c| c.window).collect();
            assert!(
                days.len() >= 95,
                "{touch:?} {on:?}: {} days credited",
                days.len()
            );
            j.fire(None, &mut credits);
            j.release_deferred();
            assert_eq!(
                (j.len(), j.anchors, j.convs),
                (0, 0, 0),
                "all freed at the end"
            );
        }
    }
}
