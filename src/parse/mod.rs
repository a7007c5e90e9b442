//! Parsing one NDJSON line into the few numbers the rest of the pipeline needs.
//!
//! The hot path turns a line into an [`Event`]: 64-bit hashes of the user identity, of the dedup key
//! and of every fan-out key, plus the event time. No strings leave this module on the hot path and
//! nothing is allocated per line. The configured fields are found by the single-pass scanner
//! (`scan.rs`) when it can settle the line, and otherwise by simd-json (whose tape, buffers and
//! scratch copy of the line are reused), which also decides every rejection. When a partition
//! meets a key hash for the first time it calls [`Parser::describe`], which re-parses the original
//! line with the *same* extraction code and returns the key's strings — so the strings and the
//! hashes can never disagree.

use simd_json::prelude::*;
use simd_json::tape::{Tape, Value};
use xxhash_rust::xxh3::{xxh3_64, xxh3_64_with_seed};

use crate::config::{Config, Extract, TimeFormat};
pub mod path;
pub(crate) mod scan;

use crate::timefmt::{Millis, float_to_ms, parse_rfc3339};
use scan::Field;

/// Why a line was rejected. The `Display` text is what lands in `rejected/` and in error messages.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Reject {
    TooLong {
        len: usize,
        limit: usize,
    },
    InvalidUtf8,
    InvalidJson(String),
    NotObject(&'static str),
    MissingUser,
    MissingTime,
    InvalidTime(String),
    TimeOutOfRange(Millis),
    MissingEventType,
    WrongType {
        field: String,
        expected: &'static str,
        found: &'static str,
    },
}

impl Reject {
    /// A short stable code for summaries and the `reason_code` column of `rejected/`.
    pub fn code(&self) -> &'static str {
        match self {
            Reject::TooLong { .. } => "line_too_long",
            Reject::InvalidUtf8 => "invalid_utf8",
            Reject::InvalidJson(_) => "invalid_json",
            Reject::NotObject(_) => "not_an_object",
            Reject::MissingUser => "missing_user",
            Reject::MissingTime => "missing_time",
            Reject::InvalidTime(_) => "invalid_time",
            Reject::TimeOutOfRange(_) => "time_out_of_range",
            Reject::MissingEventType => "missing_event_type",
            Reject::WrongType { .. } => "wrong_type",
        }
    }
}

impl std::fmt::Display for Reject {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Reject::TooLong { len, limit } => write!(
                f,
                "line too long: {len} bytes, the limit is {limit} ([limits] max_line_bytes)"
            ),
            Reject::InvalidUtf8 => write!(f, "invalid utf-8"),
            Reject::InvalidJson(e) => write!(f, "invalid json: {e}"),
            Reject::NotObject(found) => write!(f, "not an object: the line is a JSON {found}"),
            Reject::MissingUser => write!(f, "missing user"),
            Reject::MissingTime => write!(f, "missing time"),
            Reject::InvalidTime(e) => write!(f, "invalid time: {e}"),
            Reject::TimeOutOfRange(t) => write!(
                f,
                "time out of range: {} is outside [limits] time_min..time_max",
                crate::timefmt::format_rfc3339(*t)
            ),
            Reject::MissingEventType => write!(f, "missing event type"),
            Reject::WrongType {
                field,
                expected,
                found,
            } => write!(
                f,
                "wrong type: field `{field}` is {} {found}, expected {expected}",
                if found.starts_with(['a', 'o']) {
                    "an"
                } else {
                    "a"
                }
            ),
        }
    }
}

/// What the pipeline keeps of an accepted line. Key hashes go to a separate buffer (see [`Parser::parse`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Event {
    pub user: u64,
    pub time: Millis,
    /// Hash of (user, event id); `None` when the event has no id.
    pub dedup: Option<u64>,
    /// Bit `i` set: fan-out key `i` is a dimension of the user field itself (e.g. the email
    /// domain of the user's email), so its value is a function of the user, and the panes a user
    /// was seen in are the same for it as for key 0 (the event type's total). Counting reuses
    /// key 0's per-user state for it instead of keeping (and looking up) a copy.
    pub same_as_total: u64,
    /// Bit `i` set: fan-out key `i` is the total key of a metric without a threshold — the key
    /// whose pane sets the `same_as_total` keys after it (of the same metric) reuse.
    pub totals: u64,
    /// The watermark from which the event is late by the attribution rules (docs/SEMANTICS.md,
    /// "Lateness, generalised"), which depend on the filters it matches; `Millis::MAX`: never.
    pub late_at: Millis,
}

/// The strings behind one fan-out key.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct KeyStrings {
    /// Index into `Config::metrics`.
    pub metric: u16,
    /// `None` for a metric with `by_type = false`.
    pub event_type: Option<Box<str>>,
    /// Dimension index into `Config::dimensions`; `None` on the total key.
    pub dimension: Option<u16>,
    pub value: Option<Box<str>>,
}

const TOTAL: u64 = u64::MAX;

/// The duplicate-detection key of (user, event id): the user hash's high 32 bits (which route the
/// user to its partition, so a checkpoint can re-route dedup records to any thread count) and 32
/// bits of a hash of the id seeded with the user.
#[inline]
pub fn dedup_key(user: u64, id: &[u8]) -> u64 {
    (user & 0xFFFF_FFFF_0000_0000) | (xxh3_64_with_seed(id, user) & 0xFFFF_FFFF)
}

/// Hash of a fan-out key from the event type's hash, the dimension index and the value's hash.
#[inline]
pub fn key_hash(event_type: u64, dimension: u64, value: u64) -> u64 {
    let mut b = [0u8; 24];
    b[..8].copy_from_slice(&event_type.to_le_bytes());
    b[8..16].copy_from_slice(&dimension.to_le_bytes());
    b[16..].copy_from_slice(&value.to_le_bytes());
    xxh3_64(&b)
}

/// Most distinct field names one config can ask for (user, time, type, id and the dimensions).
pub const MAX_FIELDS: usize = 64;
/// Up to this many distinct fields, their values are gathered in a stack array.
const FAST_FIELDS: usize = 16;

/// simd-json's pass over one object level: members named at `level` go to their slots, and
/// members that configured paths go through are descended into. Last occurrence wins (nested
/// values included), as in most JSON readers and as in the scanner.
fn collect_level<'i>(
    obj: &simd_json::tape::Object<'_, 'i>,
    level: &path::Level,
    fields: &mut [Option<Field<'i>>],
) {
    for (k, v) in obj.iter() {
        let Some(i) = level.find(k.as_bytes()) else {
            continue;
        };
        if let Some(child) = level.child(i) {
            for &slot in child.below() {
                fields[slot] = None;
            }
            if let Some(inner) = v.as_object() {
                collect_level(&inner, child, fields);
            }
        }
        fields[level.slot(i)] = Some(field_of(v));
    }
}

/// How one metric turns an accepted event into keys (docs/SEMANTICS.md, "Fan-out").
struct MetricPlan {
    filter: Option<usize>,
    /// Indexes into the parser's dimensions.
    dims: Vec<usize>,
    by_type: bool,
    /// Mixed into every key hash of the metric (0 for the first, so a config without
    /// `[[metrics]]` keeps the key hashes, and so the row order, of earlier versions).
    seed: u64,
    /// Keys of a metric with a threshold keep per-user counters, not pane sets.
    threshold: bool,
    /// What the counting state needs of the metric.
    kind: crate::state::MetricKind,
    /// The slot of `min_sum`'s field.
    sum: Option<usize>,
    /// An attribution metric: its events go to the journeys, not to keys.
    attr: Option<AttrPlan>,
}

/// Attribution metrics with the same anchors and conversions (`after`, `filter`, `within`,
/// dimensions and `min_sum` field) share one journey per user: the bench's last- and any-touch
/// variants of one question then record each open once, not twice.
trait ShareJourneys {
    fn share_journeys(self) -> Self;
}

impl ShareJourneys for Vec<MetricPlan> {
    fn share_journeys(mut self) -> Self {
        let same = |a: &MetricPlan, b: &MetricPlan| match (&a.attr, &b.attr) {
            (Some(x), Some(y)) => {
                (x.after, x.within, a.filter, &a.dims, a.sum)
                    == (y.after, y.within, b.filter, &b.dims, b.sum)
            }
            _ => false,
        };
        for i in 0..self.len() {
            let leader = (0..i)
                .find(|&j| same(&self[j], &self[i]))
                .and_then(|j| self[j].attr.as_ref().map(|a| a.leader));
            if let (Some(l), Some(a)) = (leader, self[i].attr.as_mut()) {
                a.leader = l;
            }
        }
        self
    }
}

/// What the parser needs of an attribution metric: its anchor filter and its late rule.
struct AttrPlan {
    /// Index among the attribution metrics.
    plan: u16,
    /// The plan whose journeys this metric shares (itself when it shares none).
    leader: u16,
    after: usize,
    within: Millis,
    touch: crate::metrics::Touch,
    on: crate::metrics::WindowOn,
    specs: Vec<crate::window::WindowSpec>,
    lateness: Option<Millis>,
}

impl AttrPlan {
    fn late_at(&self, t: Millis, anchor: bool, conv: bool) -> Millis {
        crate::metrics::attribution::late_at(
            (&self.specs, self.within, self.touch, self.on),
            self.lateness,
            t,
            anchor,
            conv,
        )
    }
}

/// The event-type hash of a metric with `by_type = false` (all types share its keys).
const UNTYPED: u64 = 0x5eed_0fa1_17e5;

impl MetricPlan {
    fn all(config: &Config, paths: &mut path::Paths) -> Vec<MetricPlan> {
        let mut attributions = 0u16;
        config
            .metrics
            .iter()
            .enumerate()
            .map(|(m, spec)| MetricPlan {
                attr: spec.attribution.map(|a| {
                    attributions += 1;
                    AttrPlan {
                        plan: attributions - 1,
                        leader: attributions - 1,
                        after: a.after,
                        within: a.within,
                        touch: a.touch,
                        on: a.on,
                        specs: (0..config.windows.specs.len())
                            .filter(|&s| spec.counts_in(s))
                            .map(|s| config.windows.specs[s].clone())
                            .collect(),
                        lateness: config.windows.lateness,
                    }
                }),
                filter: spec.filter,
                dims: spec.dimensions.clone(),
                by_type: spec.by_type,
                seed: if m == 0 {
                    0
                } else {
                    xxh3_64(&(m as u64).to_le_bytes())
                },
                threshold: spec.has_threshold(),
                kind: crate::state::MetricKind {
                    windows: spec.windows,
                    rule: match &spec.threshold {
                        // An attribution metric counts every user with a credited B.
                        crate::metrics::Threshold::None if spec.attribution.is_some() => {
                            Some(crate::metrics::threshold::Rule::Count(1))
                        }
                        crate::metrics::Threshold::None => None,
                        crate::metrics::Threshold::Count(n) => {
                            Some(crate::metrics::threshold::Rule::Count(*n))
                        }
                        crate::metrics::Threshold::Sum { micros, .. } => {
                            Some(crate::metrics::threshold::Rule::Sum(*micros))
                        }
                    },
                },
                sum: match &spec.threshold {
                    crate::metrics::Threshold::Sum { path, .. } => Some(paths.slot(path)),
                    _ => None,
                },
            })
            .collect::<Vec<_>>()
            .share_journeys()
    }

    /// The hash standing for the event type in this metric's keys.
    #[inline]
    fn type_hash(&self, et: u64) -> u64 {
        (if self.by_type { et } else { UNTYPED }) ^ self.seed
    }
}

/// A cheap filter before comparing a key with a field name: length, first and last byte.
#[inline]
pub(crate) fn signature(name: &[u8]) -> u64 {
    match name {
        [] => 0,
        [first, .., last] => ((name.len() as u64) << 16) | ((*first as u64) << 8) | *last as u64,
        [only] => (1 << 16) | ((*only as u64) << 8) | *only as u64,
    }
}

/// How one dimension gets its value.
enum DimPlan {
    Raw,
    EmailDomain,
    /// The lookup table and the precomputed hash of each distinct value.
    Lookup(crate::config::Lookup, Vec<u64>),
}

struct DimSlot {
    slot: usize,
    name: String,
    field: String,
    plan: DimPlan,
}

/// A reusable line parser. One per worker thread: it owns its buffers.
pub struct Parser {
    paths: path::Paths,
    user: usize,
    time: usize,
    event_type: usize,
    event_id: Option<usize>,
    time_format: TimeFormat,
    time_min: Millis,
    time_max: Millis,
    max_line_bytes: usize,
    dims: Vec<DimSlot>,
    /// Per filter, its clauses on slots.
    filters: Vec<Vec<(usize, crate::metrics::filter::Op)>>,
    metrics: Vec<MetricPlan>,
    /// Per dimension, the hash of the current event's value (`None`: absent).
    dim_hashes: Vec<Option<u64>>,
    /// The attribution metrics the last parsed event is an A or a B of.
    hits: Vec<crate::metrics::attribution::Hit>,
    /// The hits' dimension value hashes (each hit's `vals_at` points here).
    hit_vals: Vec<Option<u64>>,
    /// Per key of the last parsed event, the amount it adds to a `min_sum` (millionths; 0 for
    /// keys of other metrics). Filled only when some metric has `min_sum`.
    amounts: Vec<i64>,
    scratch: Vec<u8>,
    lower: Vec<u8>,
    /// Finds `\u` escapes (built once: building a searcher per line showed in profiles).
    escape_u: memchr::memmem::Finder<'static>,
    buffers: simd_json::Buffers,
    tape: Option<Tape<'static>>,
    /// Try the single-pass scanner (`scan`) before simd-json.
    fast: bool,
    /// Lines the scanner settled (the rest went to simd-json).
    scanned: u64,
}

impl Parser {
    pub fn new(config: &Config) -> Parser {
        let mut paths = path::Paths::default();
        let f = &config.fields;
        let user = paths.slot(&path::FieldPath::literal(&f.user));
        let time = paths.slot(&path::FieldPath::literal(&f.time));
        let event_type = paths.slot(&path::FieldPath::literal(&f.event_type));
        let event_id = f
            .event_id
            .as_deref()
            .map(|id| paths.slot(&path::FieldPath::literal(id)));
        let dims: Vec<DimSlot> = config
            .dimensions
            .iter()
            .map(|d| DimSlot {
                slot: paths.slot(&d.path),
                name: d.name.clone(),
                field: d.field.clone(),
                plan: match &d.extract {
                    Extract::Raw => DimPlan::Raw,
                    Extract::EmailDomain => DimPlan::EmailDomain,
                    Extract::Lookup(l) => DimPlan::Lookup(
                        l.clone(),
                        l.values.iter().map(|v| xxh3_64(v.as_bytes())).collect(),
                    ),
                },
            })
            .collect();
        let filters = config
            .filters
            .iter()
            .map(|flt| {
                flt.clauses
                    .iter()
                    .map(|c| (paths.slot(&c.path), c.op.clone()))
                    .collect()
            })
            .collect();
        let metrics = MetricPlan::all(config, &mut paths);
        Parser {
            paths,
            user,
            time,
            event_type,
            event_id,
            time_format: f.time_format,
            time_min: config.limits.time_min,
            time_max: config.limits.time_max,
            max_line_bytes: config.limits.max_line_bytes,
            dim_hashes: vec![None; dims.len()],
            dims,
            filters,
            metrics,
            amounts: Vec::new(),
            hits: Vec::new(),
            hit_vals: Vec::new(),
            scratch: Vec::new(),
            escape_u: memchr::memmem::Finder::new(b"\\u"),
            lower: Vec::new(),
            buffers: simd_json::Buffers::new(4096),
            tape: Some(Tape::null().reset()),
            fast: true,
            scanned: 0,
        }
    }

    /// How many lines the single-pass scanner settled without simd-json (tests use it to make
    /// sure the comparison between the two paths is not vacuous).
    #[doc(hidden)]
    pub fn scanned_lines(&self) -> u64 {
        self.scanned
    }

    /// A parser that always uses simd-json, never the single-pass scanner: the reference the
    /// scanner is tested against (`tests/fuzz_parse.rs`) and measured against (`abacus bench`).
    #[doc(hidden)]
    pub fn simd_json_only(config: &Config) -> Parser {
        Parser {
            fast: false,
            ..Parser::new(config)
        }
    }

    /// Number of fan-out keys an event can have at most (total + one per dimension).
    pub fn max_keys(&self) -> usize {
        self.metrics.iter().map(|m| 1 + m.dims.len()).sum()
    }

    /// Per metric, what the counting state needs of it (windows, threshold).
    pub fn metric_kinds(&self) -> Vec<crate::state::MetricKind> {
        self.metrics.iter().map(|m| m.kind).collect()
    }

    /// The attribution metrics, as the counting state needs them.
    pub fn attribution_plans(&self, nspecs: usize) -> Vec<crate::metrics::attribution::Plan> {
        self.metrics
            .iter()
            .enumerate()
            .filter_map(|(mi, m)| {
                let a = m.attr.as_ref()?;
                Some(crate::metrics::attribution::Plan {
                    metric: mi as u16,
                    within: a.within,
                    touch: a.touch,
                    on: a.on,
                    dims: m.dims.iter().map(|&d| d as u16).collect(),
                    specs: (0..nspecs.min(64))
                        .filter(|&s| m.kind.windows >> s & 1 == 1)
                        .collect(),
                    rule: m
                        .kind
                        .rule
                        .unwrap_or(crate::metrics::threshold::Rule::Count(1)),
                    by_type: m.by_type,
                    type_seed: m.type_hash(0) ^ if m.by_type { 0 } else { UNTYPED },
                    leader: a.leader,
                })
            })
            .collect()
    }

    /// The attribution hits of the last successful [`parse`](Self::parse), and their dimension
    /// value hashes.
    pub fn hits(&self) -> (&[crate::metrics::attribution::Hit], &[Option<u64>]) {
        (&self.hits, &self.hit_vals)
    }

    /// The `min_sum` amounts of the keys the last successful [`parse`](Self::parse) appended
    /// (parallel to them); empty when no metric has `min_sum`.
    pub fn amounts(&self) -> &[i64] {
        &self.amounts
    }

    /// Parses a line (without its `\n`). On success the event's fan-out key hashes are appended to
    /// `keys`, metric by metric, each metric's total key first; on rejection `keys` is left as it
    /// was. Every dimension is checked (and may reject the line) whichever metrics use it, so a
    /// line's fate never depends on the metrics.
    pub fn parse(&mut self, line: &[u8], keys: &mut Vec<u64>) -> Result<Event, Reject> {
        let mark = keys.len();
        let sums = self.metrics.iter().any(|m| m.sum.is_some());
        let r = self.with_fields(line, |p, f| {
            let (mut event, et) = p.head(f)?;
            for (i, d) in p.dims.iter().enumerate() {
                p.dim_hashes[i] = match dim_value(d, f[d.slot], &mut p.lower)? {
                    None => None,
                    Some(DimValue::Str(s)) => Some(xxh3_64(s.as_bytes())),
                    Some(DimValue::Lower) => Some(xxh3_64(&p.lower)),
                    Some(DimValue::Interned(_, h)) => Some(h),
                };
            }
            p.amounts.clear();
            p.hits.clear();
            p.hit_vals.clear();
            // Each filter is evaluated at most once per event, however many metrics name it
            // (at most 64 filters: one bit each for "evaluated" and "holds").
            let (mut evaluated, mut held) = (0u64, 0u64);
            let filters = &p.filters;
            let mut holds = |fi: usize| {
                let bit = 1u64 << (fi & 63);
                if evaluated & bit == 0 {
                    evaluated |= bit;
                    if filters[fi].iter().all(|(slot, op)| op.holds(f[*slot])) {
                        held |= bit;
                    }
                }
                held & bit != 0
            };
            for m in &p.metrics {
                if let Some(a) = &m.attr {
                    let conv = m.filter.is_none_or(&mut holds);
                    let anchor = holds(a.after);
                    if conv || anchor {
                        event.late_at = event.late_at.min(a.late_at(event.time, anchor, conv));
                    }
                    // Metrics sharing a leader's journeys add nothing more to them.
                    if (conv || anchor) && a.leader == a.plan {
                        p.hits.push(crate::metrics::attribution::Hit {
                            plan: a.plan,
                            anchor,
                            conv,
                            type_hash: et,
                            amount: m.sum.map_or(0, |slot| micros(f[slot])),
                            vals_at: p.hit_vals.len() as u32,
                        });
                        p.hit_vals.extend(m.dims.iter().map(|&i| p.dim_hashes[i]));
                    }
                    continue;
                }
                if let Some(fi) = m.filter
                    && !holds(fi)
                {
                    continue;
                }
                let t = m.type_hash(et);
                let first = keys.len();
                if !m.threshold && first - mark < 64 {
                    event.totals |= 1 << (first - mark);
                }
                keys.push(key_hash(t, TOTAL, 0));
                for &i in &m.dims {
                    let Some(vh) = p.dim_hashes[i] else { continue };
                    let at = keys.len() - mark;
                    if !m.threshold && p.dims[i].slot == p.user && at < 64 {
                        event.same_as_total |= 1 << at;
                    }
                    keys.push(key_hash(t, i as u64, vh));
                }
                if sums {
                    let amount = m.sum.map_or(0, |slot| micros(f[slot]));
                    p.amounts
                        .resize(p.amounts.len() + keys.len() - first, amount);
                }
            }
            Ok(event)
        });
        match r {
            Ok(Ok(e)) => Ok(e),
            Ok(Err(e)) | Err(e) => {
                keys.truncate(mark);
                self.hits.clear();
                self.hit_vals.clear();
                Err(e)
            }
        }
    }

    /// The slow path of attribution metric `plan`: the event type and the metric's dimension
    /// values of `line` as strings (the same extraction as [`parse`](Self::parse)).
    pub fn describe_hit(
        &mut self,
        line: &[u8],
        plan: u16,
    ) -> Option<crate::metrics::attribution::Texts> {
        let r = self.with_fields(line, |p, f| {
            let et: Box<str> = match f[p.event_type] {
                Some(Field::Str(s)) => s.into(),
                _ => Box::from(""),
            };
            let m = p
                .metrics
                .iter()
                .find(|m| m.attr.as_ref().is_some_and(|a| a.plan == plan))?;
            let mut values = Vec::with_capacity(m.dims.len());
            for &i in &m.dims {
                let d = &p.dims[i];
                values.push(match dim_value(d, f[d.slot], &mut p.lower).ok()? {
                    None => None,
                    Some(DimValue::Str(s)) => Some(Box::from(s)),
                    Some(DimValue::Lower) => Some(String::from_utf8_lossy(&p.lower).into()),
                    Some(DimValue::Interned(idx, _)) => match &d.plan {
                        DimPlan::Lookup(l, _) => Some(l.values[idx as usize].clone()),
                        _ => Some(Box::from("")),
                    },
                });
            }
            Some((et, values))
        });
        r.ok().flatten()
    }

    /// The slow path: the key hashes of a line with their strings, in the order [`Parser::parse`]
    /// emits them. `None` if the line does not parse (it did before, so that cannot happen).
    pub fn describe(&mut self, line: &[u8]) -> Option<Vec<(u64, KeyStrings)>> {
        let r = self.with_fields(line, |p, f| {
            let (_, et) = p.head(f)?;
            let et_str: Box<str> = match f[p.event_type] {
                Some(Field::Str(s)) => s.into(),
                _ => Box::from(""),
            };
            let mut values: Vec<Option<(u64, Box<str>)>> = Vec::with_capacity(p.dims.len());
            for d in &p.dims {
                values.push(match dim_value(d, f[d.slot], &mut p.lower)? {
                    None => None,
                    Some(DimValue::Str(s)) => Some((xxh3_64(s.as_bytes()), s.into())),
                    Some(DimValue::Lower) => {
                        Some((xxh3_64(&p.lower), String::from_utf8_lossy(&p.lower).into()))
                    }
                    Some(DimValue::Interned(idx, h)) => match &d.plan {
                        DimPlan::Lookup(l, _) => Some((h, l.values[idx as usize].clone())),
                        _ => Some((h, Box::from(""))),
                    },
                });
            }
            let mut out = Vec::new();
            for (mi, m) in p.metrics.iter().enumerate() {
                if m.attr.is_some() {
                    continue;
                }
                if let Some(fi) = m.filter
                    && !p.filters[fi].iter().all(|(slot, op)| op.holds(f[*slot]))
                {
                    continue;
                }
                let t = m.type_hash(et);
                let strings = |dimension: Option<u16>, value: Option<Box<str>>| KeyStrings {
                    metric: mi as u16,
                    event_type: m.by_type.then(|| et_str.clone()),
                    dimension,
                    value,
                };
                out.push((key_hash(t, TOTAL, 0), strings(None, None)));
                for &i in &m.dims {
                    if let Some((vh, v)) = &values[i] {
                        out.push((
                            key_hash(t, i as u64, *vh),
                            strings(Some(i as u16), Some(v.clone())),
                        ));
                    }
                }
            }
            Ok::<_, Reject>(out)
        });
        match r {
            Ok(Ok(v)) => Some(v),
            _ => None,
        }
    }

    /// Dimension names, by index.
    pub fn dimension_name(&self, i: u16) -> &str {
        self.dims.get(i as usize).map_or("", |d| d.name.as_str())
    }

    /// Finds the values of the configured fields and hands them to `f`: by the single-pass
    /// scanner when it can settle the line, otherwise by simd-json on the reused tape (which also
    /// decides every rejection).
    fn with_fields<R>(
        &mut self,
        line: &[u8],
        f: impl FnOnce(&mut Self, &[Option<Field<'_>>]) -> R,
    ) -> Result<R, Reject> {
        if line.len() > self.max_line_bytes {
            return Err(Reject::TooLong {
                len: line.len(),
                limit: self.max_line_bytes,
            });
        }
        let n = self.paths.len();
        if self.fast && n <= FAST_FIELDS {
            let mut fields: [Option<Field<'_>>; FAST_FIELDS] = [None; FAST_FIELDS];
            if scan::fields(line, self.paths.root(), &mut fields[..n]).is_some() {
                self.scanned += 1;
                return Ok(f(self, &fields[..n]));
            }
        }
        let mut scratch = std::mem::take(&mut self.scratch);
        scratch.clear();
        scratch.extend_from_slice(line);
        let mut tape = self
            .tape
            .take()
            .unwrap_or_else(|| Tape::null().reset())
            .reset();
        let result = match simd_json::fill_tape(&mut scratch, &mut self.buffers, &mut tape) {
            Err(e) => {
                if std::str::from_utf8(line).is_err() {
                    Err(Reject::InvalidUtf8)
                } else {
                    Err(Reject::InvalidJson(json_error_text(&e)))
                }
            }
            Ok(()) if self.escape_u.find(line).is_some() && lone_surrogate(line).is_some() => {
                let at = lone_surrogate(line).unwrap_or(0);
                Err(Reject::InvalidJson(format!(
                    "lone UTF-16 surrogate escape at byte {at} (it has no UTF-8 form)"
                )))
            }
            Ok(()) => {
                let root = tape.as_value();
                match root.as_object() {
                    None => Err(Reject::NotObject(field_of(root).type_name())),
                    Some(obj) => {
                        if n <= FAST_FIELDS {
                            // The common case: a small array on the stack, nothing to clear beyond it.
                            let mut fields: [Option<Field<'_>>; FAST_FIELDS] = [None; FAST_FIELDS];
                            self.collect_fields(&obj, &mut fields[..n]);
                            Ok(f(self, &fields[..n]))
                        } else {
                            let mut fields: Vec<Option<Field<'_>>> = vec![None; n];
                            self.collect_fields(&obj, &mut fields);
                            Ok(f(self, &fields))
                        }
                    }
                }
            }
        };
        self.tape = Some(tape.reset());
        self.scratch = scratch;
        result
    }

    /// One pass over the object's keys; a cheap signature (length, first and last byte) rules out
    /// most key/name pairs before any byte comparison. Last occurrence wins, as in most JSON readers.
    #[inline]
    fn collect_fields<'t, 'i>(
        &self,
        obj: &simd_json::tape::Object<'t, 'i>,
        fields: &mut [Option<Field<'i>>],
    ) {
        collect_level(obj, self.paths.root(), fields);
    }

    /// User, time, event type and dedup key; returns the event and the event type's hash.
    fn head(&self, f: &[Option<Field<'_>>]) -> Result<(Event, u64), Reject> {
        let user = match f[self.user] {
            None | Some(Field::Null) => return Err(Reject::MissingUser),
            Some(Field::Str(s)) => s,
            Some(t) => return Err(self.wrong(self.user, "a string", t)),
        };
        if user.is_empty() {
            return Err(Reject::MissingUser);
        }
        let time = self.time(f[self.time])?;
        let et = match f[self.event_type] {
            None | Some(Field::Null) => return Err(Reject::MissingEventType),
            Some(Field::Str(s)) => s,
            Some(t) => return Err(self.wrong(self.event_type, "a string", t)),
        };
        if et.is_empty() {
            return Err(Reject::MissingEventType);
        }
        let user_hash = xxh3_64(user.as_bytes());
        let dedup = match self.event_id.and_then(|i| f[i]) {
            None | Some(Field::Null) => None,
            Some(Field::Str(s)) => Some(dedup_key(user_hash, s.as_bytes())),
            Some(Field::Int(i)) => Some(dedup_key(user_hash, i.to_string().as_bytes())),
            Some(Field::UInt(u)) => Some(dedup_key(user_hash, u.to_string().as_bytes())),
            Some(t) => {
                return Err(self.wrong(self.event_id.unwrap_or(0), "a string or an integer", t));
            }
        };
        Ok((
            Event {
                user: user_hash,
                time,
                dedup,
                same_as_total: 0,
                totals: 0,
                late_at: Millis::MAX,
            },
            xxh3_64(et.as_bytes()),
        ))
    }

    fn time(&self, v: Option<Field<'_>>) -> Result<Millis, Reject> {
        let Some(v) = v else {
            return Err(Reject::MissingTime);
        };
        let number = |scale_s: bool| -> Result<Millis, Reject> {
            let scale = if scale_s { 1000 } else { 1 };
            // Numbers too large for milliseconds are far outside any time range, not malformed.
            if let Some(i) = v.as_i64() {
                return i.checked_mul(scale).ok_or(Reject::TimeOutOfRange(if i < 0 {
                    i64::MIN
                } else {
                    i64::MAX
                }));
            }
            let x = v.as_f64().unwrap_or(f64::NAN);
            if x.is_nan() {
                return Err(Reject::InvalidTime(format!("{x} is not a usable number")));
            }
            Ok(float_to_ms(x, scale as f64).unwrap_or(if x < 0.0 { i64::MIN } else { i64::MAX }))
        };
        let is_number = matches!(v, Field::Int(_) | Field::UInt(_) | Field::Float(_));
        let t = match (self.time_format, v) {
            (_, Field::Null) => return Err(Reject::MissingTime),
            (TimeFormat::UnixS, _) if is_number => number(true)?,
            (TimeFormat::UnixMs, _) if is_number => number(false)?,
            (TimeFormat::Auto, _) if is_number => {
                let x = v.as_f64().unwrap_or(f64::NAN);
                number(x.abs() < 1e11)?
            }
            (TimeFormat::Rfc3339, Field::Str(s)) => {
                parse_rfc3339(s.as_bytes()).ok_or_else(|| {
                    Reject::InvalidTime(format!("`{}` is not an RFC 3339 time", clip(s)))
                })?
            }
            (TimeFormat::Auto, Field::Str(s)) => {
                let digits = s.strip_prefix('-').unwrap_or(s);
                if !digits.is_empty()
                    && digits.len() <= 18
                    && digits.bytes().all(|b| b.is_ascii_digit())
                {
                    let i: i64 = s.parse().map_err(|_| {
                        Reject::InvalidTime(format!("`{}` is not a number", clip(s)))
                    })?;
                    if (i as f64).abs() < 1e11 { i * 1000 } else { i }
                } else {
                    parse_rfc3339(s.as_bytes()).ok_or_else(|| {
                        Reject::InvalidTime(format!(
                            "`{}` is neither a number nor an RFC 3339 time",
                            clip(s)
                        ))
                    })?
                }
            }
            (fmt, t) => {
                let expected = match fmt {
                    TimeFormat::Rfc3339 => "an RFC 3339 string (time_format = \"rfc3339\")",
                    TimeFormat::Auto => "a number or an RFC 3339 string",
                    _ => "a number (time_format = \"unix_s\"/\"unix_ms\")",
                };
                return Err(Reject::InvalidTime(format!(
                    "field `{}` is a {}, expected {expected}",
                    self.paths.name(self.time),
                    t.type_name()
                )));
            }
        };
        if t < self.time_min || t >= self.time_max {
            return Err(Reject::TimeOutOfRange(t));
        }
        Ok(t)
    }

    fn wrong(&self, slot: usize, expected: &'static str, found: Field<'_>) -> Reject {
        Reject::WrongType {
            field: self.paths.name(slot),
            expected,
            found: found.type_name(),
        }
    }
}

/// A `min_sum` amount in millionths: a non-negative number's value, 0 for anything else (a
/// negative value too: sums only grow, so whether a user qualifies never depends on event order).
fn micros(v: Option<Field<'_>>) -> i64 {
    let m = match v {
        Some(Field::Int(i)) => i.saturating_mul(1_000_000),
        Some(f @ (Field::UInt(_) | Field::Float(_))) => {
            crate::metrics::to_micros(f.as_f64().unwrap_or(0.0))
        }
        _ => 0,
    };
    m.max(0)
}

enum DimValue<'a> {
    Str(&'a str),
    /// The value is in the parser's `lower` buffer.
    Lower,
    /// A lookup value: its index and precomputed hash.
    Interned(u32, u64),
}

fn dim_value<'a>(
    d: &DimSlot,
    v: Option<Field<'a>>,
    lower: &mut Vec<u8>,
) -> Result<Option<DimValue<'a>>, Reject> {
    let s = match v {
        None | Some(Field::Null) => return Ok(None),
        Some(Field::Str(s)) => s,
        Some(t) => {
            return Err(Reject::WrongType {
                field: d.field.clone(),
                expected: "a string",
                found: t.type_name(),
            });
        }
    };
    if s.is_empty() {
        return Ok(None);
    }
    Ok(match &d.plan {
        DimPlan::Raw => Some(DimValue::Str(s)),
        DimPlan::EmailDomain => match s.rfind('@') {
            Some(at) if at + 1 < s.len() => {
                lower.clear();
                lower.extend(s.as_bytes()[at + 1..].iter().map(u8::to_ascii_lowercase));
                Some(DimValue::Lower)
            }
            _ => None,
        },
        DimPlan::Lookup(l, hashes) => l
            .map
            .get(s)
            .map(|&idx| DimValue::Interned(idx, hashes[idx as usize])),
    })
}

/// simd-json's view of a value, reduced to what the extraction code looks at.
fn field_of<'i>(v: Value<'_, 'i>) -> Field<'i> {
    match v.value_type() {
        simd_json::ValueType::Null => Field::Null,
        simd_json::ValueType::Bool => Field::Bool(v.as_bool().unwrap_or(false)),
        simd_json::ValueType::String => Field::Str(v.into_string().unwrap_or_default()),
        simd_json::ValueType::Array => Field::Array,
        simd_json::ValueType::Object => Field::Object,
        simd_json::ValueType::F64 => Field::Float(v.cast_f64().unwrap_or(f64::NAN)),
        _ => match (v.as_i64(), v.as_u64()) {
            (Some(i), _) => Field::Int(i),
            (None, Some(u)) => Field::UInt(u),
            (None, None) => Field::Float(v.cast_f64().unwrap_or(f64::NAN)),
        },
    }
}

/// simd-json decodes a lone UTF-16 surrogate escape (`"\ud800"`) to U+0000 instead of failing,
/// which would merge distinct strings; such an escape has no UTF-8 form, so the line is invalid.
/// Returns the byte offset of the first lone surrogate escape.
fn lone_surrogate(line: &[u8]) -> Option<usize> {
    let hex = |at: usize| -> Option<u32> {
        let h = line.get(at..at + 4)?;
        u32::from_str_radix(std::str::from_utf8(h).ok()?, 16).ok()
    };
    let mut next_free = 0;
    for i in memchr::memmem::find_iter(line, b"\\u") {
        if i < next_free {
            continue;
        }
        // An escape only if an odd number of backslashes ends at `i` ("\\u" is a backslash and a u).
        let backslashes = line[..=i].iter().rev().take_while(|&&b| b == b'\\').count();
        if backslashes % 2 == 0 {
            continue;
        }
        let Some(v) = hex(i + 2) else { continue };
        match v {
            0xD800..=0xDBFF => {
                let low = (line.get(i + 6..i + 8) == Some(b"\\u"))
                    .then(|| hex(i + 8))
                    .flatten();
                match low {
                    Some(0xDC00..=0xDFFF) => next_free = i + 12,
                    _ => return Some(i),
                }
            }
            0xDC00..=0xDFFF => return Some(i),
            _ => {}
        }
    }
    None
}

fn clip(s: &str) -> &str {
    match s.char_indices().nth(64) {
        Some((i, _)) => &s[..i],
        None => s,
    }
}

fn json_error_text(e: &simd_json::Error) -> String {
    // simd-json's messages carry an index and the character; keep them, they help find the spot.
    e.to_string()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::Path;

    fn config(extra: &str) -> Config {
        let text = format!(
            "[fields]\nuser = \"email\"\ntime = \"ts\"\nevent_type = \"type\"\nevent_id = \"id\"\n{extra}\n[[dimensions]]\nname = \"provider\"\nfield = \"email\"\nextract = \"email_domain\"\n[[dimensions]]\nname = \"browser\"\nfield = \"browser\"\n[[windows]]\nname = \"h\"\nsize = \"1h\"\n"
        );
        Config::parse(Path::new("t.toml"), &text).unwrap()
    }

    #[test]
    fn parses_and_fans_out() {
        let mut p = Parser::new(&config(""));
        let mut keys = Vec::new();
        let e = p.parse(br#"{"email":"A@GMail.com","ts":1704067200123,"type":"open","id":"x1","browser":"chrome"}"#, &mut keys).unwrap();
        assert_eq!(e.time, 1_704_067_200_123);
        assert_eq!(e.user, xxh3_64(b"A@GMail.com"));
        assert_eq!(e.dedup, Some(dedup_key(e.user, b"x1")));
        assert_eq!(e.dedup.unwrap() >> 32, e.user >> 32);
        assert_eq!(keys.len(), 3);
        let d = p.describe(br#"{"email":"A@GMail.com","ts":1704067200123,"type":"open","id":"x1","browser":"chrome"}"#).unwrap();
        assert_eq!(d.iter().map(|x| x.0).collect::<Vec<_>>(), keys);
        assert_eq!(d[1].1.value.as_deref(), Some("gmail.com"));
        assert_eq!(d[2].1.value.as_deref(), Some("chrome"));
        // same domain in another case → same key
        let mut k2 = Vec::new();
        p.parse(
            br#"{"email":"b@gmail.COM","ts":1704067200,"type":"open"}"#,
            &mut k2,
        )
        .unwrap();
        assert_eq!(k2[1], keys[1]);
    }

    #[test]
    fn time_formats() {
        let mut p = Parser::new(&config(""));
        let mut k = Vec::new();
        let t = |p: &mut Parser, ts: &str| {
            p.parse(
                format!(r#"{{"email":"a@b","type":"x","ts":{ts}}}"#).as_bytes(),
                &mut Vec::new(),
            )
            .map(|e| e.time)
        };
        assert_eq!(t(&mut p, "1704067200"), Ok(1_704_067_200_000));
        assert_eq!(t(&mut p, "1704067200.5"), Ok(1_704_067_200_500));
        assert_eq!(t(&mut p, "1704067200123"), Ok(1_704_067_200_123));
        assert_eq!(t(&mut p, "\"2024-01-01T00:00:00Z\""), Ok(1_704_067_200_000));
        assert_eq!(t(&mut p, "\"1704067200\""), Ok(1_704_067_200_000));
        assert!(matches!(
            t(&mut p, "\"yesterday\""),
            Err(Reject::InvalidTime(_))
        ));
        assert!(matches!(t(&mut p, "true"), Err(Reject::InvalidTime(_))));
        assert_eq!(t(&mut p, "null"), Err(Reject::MissingTime));
        assert_eq!(t(&mut p, "-5"), Err(Reject::TimeOutOfRange(-5000)));
        assert!(p.parse(br#"{"email":"a@b","type":"x"}"#, &mut k).is_err());
    }

    #[test]
    fn rejections() {
        let mut p = Parser::new(&config("[limits]\nmax_line_bytes = 200"));
        let mut keys = vec![7];
        let mut r = |line: &[u8]| p.parse(line, &mut keys).unwrap_err();
        assert_eq!(r(b"[1,2]"), Reject::NotObject("array"));
        assert!(matches!(r(b"{\"email\":"), Reject::InvalidJson(_)));
        assert_eq!(r(b"{\"email\":\"\xff\"}"), Reject::InvalidUtf8);
        assert_eq!(r(br#"{"ts":1,"type":"x"}"#), Reject::MissingUser);
        assert_eq!(r(br#"{"email":"","ts":1,"type":"x"}"#), Reject::MissingUser);
        assert_eq!(
            r(br#"{"email":5,"ts":1704067200,"type":"x"}"#),
            Reject::WrongType {
                field: "email".into(),
                expected: "a string",
                found: "number"
            }
        );
        assert_eq!(
            r(br#"{"email":"a","ts":1704067200}"#),
            Reject::MissingEventType
        );
        assert_eq!(
            r(br#"{"email":"a","ts":1704067200,"type":"x","browser":3}"#),
            Reject::WrongType {
                field: "browser".into(),
                expected: "a string",
                found: "number"
            }
        );
        assert_eq!(
            r(br#"{"email":"a","ts":1704067200,"type":"x","id":[1]}"#),
            Reject::WrongType {
                field: "id".into(),
                expected: "a string or an integer",
                found: "array"
            }
        );
        assert!(matches!(
            r(&[b' '; 201]),
            Reject::TooLong {
                len: 201,
                limit: 200
            }
        ));
        assert_eq!(keys, vec![7], "rejected lines leave no keys behind");
    }

    #[test]
    fn lone_surrogates_are_found() {
        assert_eq!(lone_surrogate(br#"{"u":"\ud800"}"#), Some(6));
        assert_eq!(lone_surrogate(br#"{"u":"\udc00x"}"#), Some(6));
        assert_eq!(lone_surrogate(br#"{"u":"\ud83d\ude00"}"#), None);
        assert_eq!(
            lone_surrogate(br#"{"u":"\\ud800"}"#),
            None,
            "an escaped backslash, then text"
        );
        assert_eq!(lone_surrogate(br#"{"u":"\u00e9"}"#), None);
        assert_eq!(lone_surrogate(br#"{"u":"\ud83d\u0041"}"#), Some(6));
    }

    #[test]
    fn absent_dimensions_give_no_key() {
        let mut p = Parser::new(&config(""));
        let mut keys = Vec::new();
        p.parse(
            br#"{"email":"nodomain","ts":1704067200,"type":"x","browser":null}"#,
            &mut keys,
        )
        .unwrap();
        assert_eq!(keys.len(), 1);
        keys.clear();
        p.parse(
            br#"{"email":"a@","ts":1704067200,"type":"x","browser":""}"#,
            &mut keys,
        )
        .unwrap();
        assert_eq!(keys.len(), 1);
    }
}
