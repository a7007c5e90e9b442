//! A deliberately naive reference implementation of docs/SEMANTICS.md.
//!
//! No cleverness on purpose: lines are split by hand, JSON is parsed with serde_json into a `Value`,
//! RFC 3339 dates are turned into days by counting whole years and months from 1970, the median is
//! taken by sorting a copy of the whole sample every time, every window an event belongs to is found
//! by trying every candidate window index, lateness is decided by checking every containing window,
//! and counts live in a `BTreeMap` per metric from (key, window) to a `BTreeMap` of user strings
//! to (events, sum in millionths). Field paths are walked step by step through `Value` objects,
//! filter regexes are compiled anew for every event, `min_sum` values are truncated by reading the
//! number's decimal text digit by digit. Attribution metrics: each conversion's lookback is found
//! by scanning every counted event for the same user's anchors, and every anchor-windowed metric's
//! lateness rules are checked literally, as `E_m(x)` = the smallest end among the windows tried.
#![allow(dead_code)]

use std::collections::{BTreeMap, HashMap};
use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use serde_json::Value;

use super::Row;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TimeFormat {
    UnixS,
    UnixMs,
    Rfc3339,
    Auto,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Strategy {
    Median,
    Max,
}

#[derive(Debug, Clone)]
pub enum DimKind {
    Raw,
    EmailDomain,
    /// CSV file name (relative to the config) and its table.
    Lookup(String, BTreeMap<String, String>),
}

#[derive(Debug, Clone)]
pub struct DimCfg {
    pub name: String,
    pub field: String,
    pub kind: DimKind,
}

#[derive(Debug, Clone)]
pub struct WinCfg {
    pub name: String,
    pub size: String,
    pub slide: Option<String>,
}

/// A run configuration, rendered to TOML for the binary and read directly by the reference.
/// Durations are kept as the text written to the TOML and parsed by [`dur`].
#[derive(Debug, Clone)]
pub struct Cfg {
    pub user: String,
    pub time: String,
    pub time_format: TimeFormat,
    pub event_type: String,
    pub event_id: Option<String>,
    pub ttl: String,
    pub strategy: Strategy,
    pub sample: usize,
    pub interval: usize,
    pub max_out_of_orderness: String,
    /// A duration or `"unbounded"`.
    pub allowed_lateness: String,
    pub max_line_bytes: usize,
    pub dims: Vec<DimCfg>,
    pub windows: Vec<WinCfg>,
    /// `[[filters]]`.
    pub filters: Vec<FilterCfg>,
    /// `[[metrics]]`; empty = the implicit metric `all` (no `[[metrics]]` written).
    pub metrics: Vec<MetricCfg>,
}

/// One filter operator and its operand(s), exactly as docs/SEMANTICS.md "Filters" lists them.
/// Literals are JSON values: a string, a number or a boolean (`In`/`NotIn`: strings and numbers).
#[derive(Debug, Clone)]
pub enum Op {
    Eq(Value),
    Ne(Value),
    In(Vec<Value>),
    NotIn(Vec<Value>),
    /// Rust `regex` syntax, unanchored search.
    Regex(String),
    Lt(serde_json::Number),
    Le(serde_json::Number),
    Gt(serde_json::Number),
    Ge(serde_json::Number),
    Exists(bool),
}

/// One clause of a filter's `where`: a field path (as written in the TOML, `\.` for a literal dot)
/// and one operator.
#[derive(Debug, Clone)]
pub struct Clause {
    pub field: String,
    pub op: Op,
}

/// `[[filters]]`: an event matches iff every clause holds (an empty `where` matches everything).
#[derive(Debug, Clone)]
pub struct FilterCfg {
    pub name: String,
    pub clauses: Vec<Clause>,
}

/// A metric's optional threshold.
#[derive(Debug, Clone)]
pub enum Threshold {
    /// `min_count = N` (N ≥ 1).
    MinCount(u64),
    /// `min_sum = { field = F, value = V }` (V > 0, an integer or a float as the JSON number says).
    MinSum {
        field: String,
        value: serde_json::Number,
    },
}

/// `[[metrics]]`. `None` = the key is not written (its default applies).
#[derive(Debug, Clone)]
pub struct MetricCfg {
    pub name: String,
    /// A filter's name; `None` = every counted event.
    pub filter: Option<String>,
    /// A subset of `[[dimensions]]` by name; `None` = all, `Some(vec![])` = the total row only.
    pub dimensions: Option<Vec<String>>,
    /// A non-empty subset of `[[windows]]` by name; `None` = all.
    pub windows: Option<Vec<String>>,
    /// `None` = not written (default `true`).
    pub by_type: Option<bool>,
    pub threshold: Option<Threshold>,
    /// Attribution (docs/SEMANTICS.md "Attribution metrics"): the anchor filter's name; `Some`
    /// makes this an attribution metric whose `filter` selects the conversions.
    pub after: Option<String>,
    /// Duration text (`"1h"`); required with `after`.
    pub within: Option<String>,
    /// `"last_touch"` (the default), `"first_touch"` or `"any_touch"`.
    pub attribution: Option<String>,
    /// `"anchor"` (the default) or `"conversion"`.
    pub window_on: Option<String>,
}

impl MetricCfg {
    /// A metric with only a name: every event, dimension and window, by type, no threshold.
    pub fn new(name: &str) -> MetricCfg {
        MetricCfg {
            name: name.into(),
            filter: None,
            dimensions: None,
            windows: None,
            by_type: None,
            threshold: None,
            after: None,
            within: None,
            attribution: None,
            window_on: None,
        }
    }

    /// Whether the metric counts in window spec `name`.
    pub fn counts_in(&self, name: &str) -> bool {
        self.windows
            .as_ref()
            .is_none_or(|ws| ws.iter().any(|w| w == name))
    }

    /// Whether dimension `name` is one of the metric's.
    pub fn has_dim(&self, name: &str) -> bool {
        self.dimensions
            .as_ref()
            .is_none_or(|ds| ds.iter().any(|d| d == name))
    }

    /// `within` in ms (an attribution metric's; panics without one).
    pub fn within_ms(&self) -> i64 {
        dur(self
            .within
            .as_deref()
            .unwrap_or_else(|| panic!("metric {}: `after` without `within`", self.name)))
    }

    /// `attribution` with its default.
    pub fn attribution_or_default(&self) -> &str {
        self.attribution.as_deref().unwrap_or("last_touch")
    }

    /// Whether an attribution metric lands its credits in the anchor's windows (`window_on`
    /// = `"anchor"`, the default) rather than the conversion's.
    pub fn on_anchor(&self) -> bool {
        match self.window_on.as_deref().unwrap_or("anchor") {
            "anchor" => true,
            "conversion" => false,
            other => panic!("metric {}: window_on = {other:?}", self.name),
        }
    }
}

const DEFAULT_TIME_MIN: i64 = 0; // 1970-01-01T00:00:00Z
const DEFAULT_TIME_MAX: i64 = 4_102_444_800_000; // 2100-01-01T00:00:00Z

/// `"15m"`, `"1h"`, `"1d"`, `"0s"`, `"250ms"`: one number and one unit, nothing else.
pub fn dur(s: &str) -> i64 {
    let digits: String = s.chars().take_while(|c| c.is_ascii_digit()).collect();
    let unit = &s[digits.len()..];
    let n: i64 = digits
        .parse()
        .unwrap_or_else(|_| panic!("bad duration {s}"));
    let unit_ms = match unit {
        "ms" => 1,
        "s" => 1000,
        "m" => 60 * 1000,
        "h" => 60 * 60 * 1000,
        "d" => 24 * 60 * 60 * 1000,
        _ => panic!("bad duration unit in {s}"),
    };
    n * unit_ms
}

fn toml_str(s: &str) -> String {
    serde_json::to_string(s).unwrap() // a JSON string of plain ASCII is a valid TOML basic string
}

/// A JSON literal (string, number, boolean) as a TOML value.
fn toml_lit(v: &Value) -> String {
    match v {
        Value::String(s) => toml_str(s),
        Value::Number(n) => n.to_string(), // `3`, `-2`, `1.5`, `3.0`: TOML integers and floats
        Value::Bool(b) => b.to_string(),
        other => panic!("not a filter literal: {other}"),
    }
}

fn toml_str_list(xs: &[String]) -> String {
    let items: Vec<String> = xs.iter().map(|x| toml_str(x)).collect();
    format!("[{}]", items.join(", "))
}

fn toml_clause(c: &Clause) -> String {
    let list = |xs: &[Value]| {
        let items: Vec<String> = xs.iter().map(toml_lit).collect();
        format!("[{}]", items.join(", "))
    };
    let op = match &c.op {
        Op::Eq(x) => format!("eq = {}", toml_lit(x)),
        Op::Ne(x) => format!("ne = {}", toml_lit(x)),
        Op::In(xs) => format!("in = {}", list(xs)),
        Op::NotIn(xs) => format!("not_in = {}", list(xs)),
        Op::Regex(re) => format!("regex = {}", toml_str(re)),
        Op::Lt(n) => format!("lt = {n}"),
        Op::Le(n) => format!("le = {n}"),
        Op::Gt(n) => format!("gt = {n}"),
        Op::Ge(n) => format!("ge = {n}"),
        Op::Exists(b) => format!("exists = {b}"),
    };
    format!("{{ field = {}, {op} }}", toml_str(&c.field))
}

impl Cfg {
    pub fn toml(&self) -> String {
        let mut t = String::new();
        t += "[fields]\n";
        writeln!(t, "user = {}", toml_str(&self.user)).unwrap();
        writeln!(t, "time = {}", toml_str(&self.time)).unwrap();
        let tf = match self.time_format {
            TimeFormat::UnixS => "unix_s",
            TimeFormat::UnixMs => "unix_ms",
            TimeFormat::Rfc3339 => "rfc3339",
            TimeFormat::Auto => "auto",
        };
        writeln!(t, "time_format = {}", toml_str(tf)).unwrap();
        writeln!(t, "event_type = {}", toml_str(&self.event_type)).unwrap();
        if let Some(id) = &self.event_id {
            writeln!(t, "event_id = {}", toml_str(id)).unwrap();
        }
        t += "\n[dedup]\n";
        writeln!(t, "ttl = {}", toml_str(&self.ttl)).unwrap();
        t += "\n[watermark]\n";
        let st = match self.strategy {
            Strategy::Median => "median",
            Strategy::Max => "max",
        };
        writeln!(t, "strategy = {}", toml_str(st)).unwrap();
        writeln!(t, "sample = {}", self.sample).unwrap();
        writeln!(t, "interval = {}", self.interval).unwrap();
        writeln!(
            t,
            "max_out_of_orderness = {}",
            toml_str(&self.max_out_of_orderness)
        )
        .unwrap();
        writeln!(t, "allowed_lateness = {}", toml_str(&self.allowed_lateness)).unwrap();
        t += "\n[limits]\n";
        writeln!(t, "max_line_bytes = {}", self.max_line_bytes).unwrap();
        for d in &self.dims {
            t += "\n[[dimensions]]\n";
            writeln!(t, "name = {}", toml_str(&d.name)).unwrap();
            writeln!(t, "field = {}", toml_str(&d.field)).unwrap();
            match &d.kind {
                DimKind::Raw => {}
                DimKind::EmailDomain => t += "extract = \"email_domain\"\n",
                DimKind::Lookup(file, _) => writeln!(t, "lookup = {}", toml_str(file)).unwrap(),
            }
        }
        for w in &self.windows {
            t += "\n[[windows]]\n";
            writeln!(t, "name = {}", toml_str(&w.name)).unwrap();
            writeln!(t, "size = {}", toml_str(&w.size)).unwrap();
            if let Some(s) = &w.slide {
                writeln!(t, "slide = {}", toml_str(s)).unwrap();
            }
        }
        for f in &self.filters {
            t += "\n[[filters]]\n";
            writeln!(t, "name = {}", toml_str(&f.name)).unwrap();
            if f.clauses.is_empty() {
                t += "where = []\n";
            } else {
                t += "where = [\n";
                for c in &f.clauses {
                    writeln!(t, "  {},", toml_clause(c)).unwrap();
                }
                t += "]\n";
            }
        }
        for m in &self.metrics {
            t += "\n[[metrics]]\n";
            writeln!(t, "name = {}", toml_str(&m.name)).unwrap();
            if let Some(f) = &m.filter {
                writeln!(t, "filter = {}", toml_str(f)).unwrap();
            }
            if let Some(d) = &m.dimensions {
                writeln!(t, "dimensions = {}", toml_str_list(d)).unwrap();
            }
            if let Some(w) = &m.windows {
                writeln!(t, "windows = {}", toml_str_list(w)).unwrap();
            }
            if let Some(b) = m.by_type {
                writeln!(t, "by_type = {b}").unwrap();
            }
            match &m.threshold {
                None => {}
                Some(Threshold::MinCount(n)) => writeln!(t, "min_count = {n}").unwrap(),
                Some(Threshold::MinSum { field, value }) => writeln!(
                    t,
                    "min_sum = {{ field = {}, value = {value} }}",
                    toml_str(field)
                )
                .unwrap(),
            }
            if let Some(a) = &m.after {
                writeln!(t, "after = {}", toml_str(a)).unwrap();
            }
            if let Some(w) = &m.within {
                writeln!(t, "within = {}", toml_str(w)).unwrap();
            }
            if let Some(a) = &m.attribution {
                writeln!(t, "attribution = {}", toml_str(a)).unwrap();
            }
            if let Some(w) = &m.window_on {
                writeln!(t, "window_on = {}", toml_str(w)).unwrap();
            }
        }
        t
    }

    /// Writes `config.toml` and every lookup CSV into `dir`; returns the config's path.
    pub fn write(&self, dir: &Path) -> PathBuf {
        std::fs::create_dir_all(dir).unwrap();
        for d in &self.dims {
            if let DimKind::Lookup(file, table) = &d.kind {
                let mut csv = String::from("key,value\n");
                for (k, v) in table {
                    writeln!(csv, "{k},{v}").unwrap();
                }
                std::fs::write(dir.join(file), csv).unwrap();
            }
        }
        let p = dir.join("config.toml");
        std::fs::write(&p, self.toml()).unwrap();
        p
    }

    fn lateness_ms(&self) -> Option<i64> {
        if self.allowed_lateness == "unbounded" {
            None
        } else {
            Some(dur(&self.allowed_lateness))
        }
    }
}

/// The lines of the input: every file split at `\n` separately (a file's last line needs no `\n`),
/// a trailing `\r` stripped, empty and all-ASCII-whitespace lines dropped.
pub fn split_lines(files: &[Vec<u8>]) -> Vec<Vec<u8>> {
    let mut lines = Vec::new();
    for f in files {
        let mut cur: Vec<u8> = Vec::new();
        let mut pieces: Vec<Vec<u8>> = Vec::new();
        for &b in f {
            if b == b'\n' {
                pieces.push(std::mem::take(&mut cur));
            } else {
                cur.push(b);
            }
        }
        if !cur.is_empty() {
            pieces.push(cur);
        }
        for mut p in pieces {
            if p.last() == Some(&b'\r') {
                p.pop();
            }
            if p.iter().all(|b| b.is_ascii_whitespace()) {
                continue;
            }
            lines.push(p);
        }
    }
    lines
}

/// A parsed, accepted event.
#[derive(Debug, Clone)]
pub struct Ev {
    pub user: String,
    pub t: i64,
    pub event_type: String,
    pub id: Option<String>,
    /// (dimension name, value) for every present dimension.
    pub dims: Vec<(String, String)>,
    /// The whole JSON object, for filters and `min_sum` fields.
    pub json: Value,
}

/// The steps of a field path: split at every `.` not preceded by a backslash; `\.` is a literal
/// dot; a backslash before anything else is refused (a config error, so a panic here).
pub fn path_steps(field: &str) -> Vec<String> {
    let mut steps = vec![String::new()];
    let mut chars = field.chars();
    while let Some(c) = chars.next() {
        match c {
            '\\' => match chars.next() {
                Some('.') => steps.last_mut().unwrap().push('.'),
                other => panic!("field {field:?}: a backslash before {other:?}"),
            },
            '.' => steps.push(String::new()),
            c => steps.last_mut().unwrap().push(c),
        }
    }
    steps
}

/// The value at a field path in an event object, walking one object key per step; `None` (absent)
/// when a step is missing, when it would have to descend into a non-object (an array included),
/// and when the value found is JSON `null`.
pub fn lookup_path<'a>(obj: &'a Value, field: &str) -> Option<&'a Value> {
    let mut cur = obj;
    for step in path_steps(field) {
        match cur {
            Value::Object(m) => match m.get(&step) {
                Some(v) => cur = v,
                None => return None,
            },
            _ => return None,
        }
    }
    if cur.is_null() { None } else { Some(cur) }
}

/// Numeric comparison of two JSON numbers: exact as integers when both are integers, else as f64.
fn num_cmp(a: &serde_json::Number, b: &serde_json::Number) -> Option<std::cmp::Ordering> {
    let int = |n: &serde_json::Number| -> Option<i128> {
        n.as_i64()
            .map(|i| i as i128)
            .or_else(|| n.as_u64().map(|u| u as i128))
    };
    match (int(a), int(b)) {
        (Some(x), Some(y)) => Some(x.cmp(&y)),
        _ => a.as_f64()?.partial_cmp(&b.as_f64()?),
    }
}

/// `eq`: the same JSON type and equal (strings byte for byte, numbers numerically, booleans alike).
fn json_eq(v: Option<&Value>, x: &Value) -> bool {
    match (v, x) {
        (Some(Value::String(a)), Value::String(b)) => a == b,
        (Some(Value::Number(a)), Value::Number(b)) => {
            num_cmp(a, b) == Some(std::cmp::Ordering::Equal)
        }
        (Some(Value::Bool(a)), Value::Bool(b)) => a == b,
        _ => false,
    }
}

/// Whether one clause holds for an event object.
pub fn clause_holds(c: &Clause, obj: &Value) -> bool {
    use std::cmp::Ordering::*;
    let v = lookup_path(obj, &c.field);
    let num = |n: &serde_json::Number, ok: &[std::cmp::Ordering]| match v {
        Some(Value::Number(x)) => num_cmp(x, n).is_some_and(|o| ok.contains(&o)),
        _ => false,
    };
    match &c.op {
        Op::Eq(x) => json_eq(v, x),
        Op::Ne(x) => !json_eq(v, x),
        Op::In(xs) => xs.iter().any(|x| json_eq(v, x)),
        Op::NotIn(xs) => !xs.iter().any(|x| json_eq(v, x)),
        Op::Regex(re) => match v {
            Some(Value::String(s)) => regex::Regex::new(re)
                .unwrap_or_else(|e| panic!("bad regex {re:?}: {e}"))
                .is_match(s),
            _ => false,
        },
        Op::Lt(n) => num(n, &[Less]),
        Op::Le(n) => num(n, &[Less, Equal]),
        Op::Gt(n) => num(n, &[Greater]),
        Op::Ge(n) => num(n, &[Greater, Equal]),
        Op::Exists(b) => v.is_some() == *b,
    }
}

/// Whether an event object matches a filter: every clause holds.
pub fn filter_matches(f: &FilterCfg, obj: &Value) -> bool {
    f.clauses.iter().all(|c| clause_holds(c, obj))
}

/// A decimal text `[-]digits[.digits]` as (numerator, 10^fraction digits).
fn decimal(text: &str) -> (i128, i128) {
    let (neg, body) = match text.strip_prefix('-') {
        Some(b) => (true, b),
        None => (false, text),
    };
    assert!(
        !body.contains(['e', 'E']),
        "a number written with an exponent: {text}"
    );
    let (int, frac) = body.split_once('.').unwrap_or((body, ""));
    let mut n: i128 = 0;
    let mut scale: i128 = 1;
    for c in int.chars().chain(frac.chars()) {
        n = n * 10 + c.to_digit(10).unwrap_or_else(|| panic!("number {text}")) as i128;
    }
    for _ in frac.chars() {
        scale *= 10;
    }
    (if neg { -n } else { n }, scale)
}

/// The decimal text of a JSON number: integers as they are, floats by Rust's shortest
/// round-trip rendering of the f64 (never with an exponent).
fn number_text(n: &serde_json::Number) -> String {
    if n.is_i64() || n.is_u64() {
        n.to_string()
    } else {
        format!("{}", n.as_f64().unwrap())
    }
}

/// What one event adds to a `min_sum`, in millionths: a number truncated towards zero to 6 decimal
/// places (of its decimal value); an absent or non-number field adds 0.
pub fn millionths(v: Option<&Value>) -> i128 {
    match v {
        Some(Value::Number(n)) => {
            let (num, scale) = decimal(&number_text(n));
            // num / scale * 1e6, truncated towards zero (Rust's `/` on integers truncates so);
            // a negative value adds 0 (SEMANTICS.md: sums only grow)
            (num * 1_000_000 / scale).max(0)
        }
        _ => 0,
    }
}

/// Whether a sum of millionths is ≥ V (exactly: `sum / 1e6 ≥ V`).
pub fn sum_reaches(sum_millionths: i128, v: &serde_json::Number) -> bool {
    let (num, scale) = decimal(&number_text(v));
    sum_millionths * scale >= num * 1_000_000
}

fn is_leap(y: i64) -> bool {
    (y % 4 == 0 && y % 100 != 0) || y % 400 == 0
}

fn month_days(y: i64, m: i64) -> i64 {
    match m {
        1 | 3 | 5 | 7 | 8 | 10 | 12 => 31,
        4 | 6 | 9 | 11 => 30,
        2 => {
            if is_leap(y) {
                29
            } else {
                28
            }
        }
        _ => panic!("month {m}"),
    }
}

/// Days from 1970-01-01 to y-m-d, by counting whole years and months one by one.
pub fn days_since_epoch(y: i64, m: i64, d: i64) -> i64 {
    let mut days = 0;
    if y >= 1970 {
        for yy in 1970..y {
            days += if is_leap(yy) { 366 } else { 365 };
        }
    } else {
        for yy in y..1970 {
            days -= if is_leap(yy) { 366 } else { 365 };
        }
    }
    for mm in 1..m {
        days += month_days(y, mm);
    }
    days + d - 1
}

/// RFC 3339 as SEMANTICS.md describes it; `None` when it is not one.
pub fn parse_rfc3339(s: &str) -> Option<i64> {
    let b = s.as_bytes();
    let num = |r: std::ops::Range<usize>| -> Option<i64> {
        let part = b.get(r)?;
        if part.is_empty() || !part.iter().all(|c| c.is_ascii_digit()) {
            return None;
        }
        std::str::from_utf8(part).ok()?.parse().ok()
    };
    if b.len() < 20 || b[4] != b'-' || b[7] != b'-' || b[13] != b':' || b[16] != b':' {
        return None;
    }
    if !(b[10] == b'T' || b[10] == b't' || b[10] == b' ') {
        return None;
    }
    let (y, mo, d, h, mi, sec) = (
        num(0..4)?,
        num(5..7)?,
        num(8..10)?,
        num(11..13)?,
        num(14..16)?,
        num(17..19)?,
    );
    if !(1..=12).contains(&mo) || d < 1 || d > month_days(y, mo) || h > 23 || mi > 59 || sec > 59 {
        return None;
    }
    let mut rest = &s[19..];
    let mut frac_ms = 0i64;
    if let Some(r) = rest.strip_prefix('.') {
        let n = r.chars().take_while(|c| c.is_ascii_digit()).count();
        if n == 0 || n > 9 {
            return None;
        }
        let mut three: String = r[..n].chars().take(3).collect();
        while three.len() < 3 {
            three.push('0');
        }
        frac_ms = three.parse().unwrap();
        rest = &r[n..];
    }
    let offset_min = if rest == "Z" || rest == "z" {
        0
    } else {
        let rb = rest.as_bytes();
        if rb.len() != 6 || rb[3] != b':' || !(rb[0] == b'+' || rb[0] == b'-') {
            return None;
        }
        let oh: i64 = rest[1..3].parse().ok()?;
        let om: i64 = rest[4..6].parse().ok()?;
        if !rest[1..3].bytes().all(|c| c.is_ascii_digit())
            || !rest[4..6].bytes().all(|c| c.is_ascii_digit())
        {
            return None;
        }
        if rb[0] == b'-' {
            -(oh * 60 + om)
        } else {
            oh * 60 + om
        }
    };
    let local_secs = days_since_epoch(y, mo, d) * 86_400 + h * 3600 + mi * 60 + sec;
    Some((local_secs - offset_min * 60) * 1000 + frac_ms)
}

/// Time from a JSON number by the `auto` rule (or forced seconds / milliseconds).
fn number_time(n: &serde_json::Number, unit: Option<i64>) -> Option<i64> {
    if let Some(i) = n.as_i64() {
        let scale = match unit {
            Some(u) => u,
            None => {
                if i.abs() < 100_000_000_000 {
                    1000
                } else {
                    1
                }
            }
        };
        return i.checked_mul(scale);
    }
    if n.as_u64().is_some() {
        return None; // beyond i64: far outside any time range
    }
    let x = n.as_f64()?;
    let scale = match unit {
        Some(u) => u as f64,
        None => {
            if x.abs() < 1e11 {
                1000.0
            } else {
                1.0
            }
        }
    };
    Some((x * scale).floor() as i64)
}

/// Parses one line into an event or a reject reason, checking in the order SEMANTICS.md gives.
pub fn parse_line(cfg: &Cfg, line: &[u8]) -> Result<Ev, &'static str> {
    if line.len() > cfg.max_line_bytes {
        return Err("line too long");
    }
    let text = std::str::from_utf8(line).map_err(|_| "invalid utf-8")?;
    let v: Value = serde_json::from_str(text).map_err(|_| "invalid json")?;
    let obj = v.as_object().ok_or("not an object")?;

    let user = match obj.get(&cfg.user) {
        None | Some(Value::Null) => return Err("missing user"),
        Some(Value::String(s)) if s.is_empty() => return Err("missing user"),
        Some(Value::String(s)) => s.clone(),
        Some(_) => return Err("wrong type"),
    };

    let t = match obj.get(&cfg.time) {
        None | Some(Value::Null) => return Err("missing time"),
        Some(tv) => {
            let parsed = match (cfg.time_format, tv) {
                (TimeFormat::UnixS, Value::Number(n)) => number_time(n, Some(1000)),
                (TimeFormat::UnixMs, Value::Number(n)) => number_time(n, Some(1)),
                (TimeFormat::Rfc3339, Value::String(s)) => parse_rfc3339(s),
                (TimeFormat::Auto, Value::Number(n)) => number_time(n, None),
                (TimeFormat::Auto, Value::String(s)) => {
                    let digits = s.strip_prefix('-').unwrap_or(s);
                    if !digits.is_empty() && digits.bytes().all(|c| c.is_ascii_digit()) {
                        let n: i64 = s.parse().map_err(|_| "invalid time")?;
                        number_time(&serde_json::Number::from(n), None)
                    } else {
                        parse_rfc3339(s)
                    }
                }
                _ => None,
            };
            parsed.ok_or("invalid time")?
        }
    };
    if !(DEFAULT_TIME_MIN..DEFAULT_TIME_MAX).contains(&t) {
        return Err("time out of range");
    }

    let event_type = match obj.get(&cfg.event_type) {
        None | Some(Value::Null) => return Err("missing event type"),
        Some(Value::String(s)) if s.is_empty() => return Err("missing event type"),
        Some(Value::String(s)) => s.clone(),
        Some(_) => return Err("wrong type"),
    };

    let id = match &cfg.event_id {
        None => None,
        Some(f) => match obj.get(f) {
            None | Some(Value::Null) => None,
            Some(Value::String(s)) => Some(s.clone()),
            Some(Value::Number(n)) if n.is_i64() || n.is_u64() => Some(n.to_string()),
            Some(_) => return Err("wrong type"),
        },
    };

    let mut dims = Vec::new();
    for d in &cfg.dims {
        let s = match lookup_path(&v, &d.field) {
            None => continue,
            Some(Value::String(s)) if s.is_empty() => continue,
            Some(Value::String(s)) => s.clone(),
            Some(_) => return Err("wrong type"),
        };
        let value = match &d.kind {
            DimKind::Raw => Some(s),
            DimKind::EmailDomain => match s.rfind('@') {
                Some(i) if i + 1 < s.len() => Some(s[i + 1..].to_ascii_lowercase()),
                _ => None,
            },
            DimKind::Lookup(_, table) => table.get(&s).cloned(),
        };
        if let Some(value) = value {
            dims.push((d.name.clone(), value));
        }
    }

    Ok(Ev {
        user,
        t,
        event_type,
        id,
        dims,
        json: v.clone(),
    })
}

/// Every window (spec name, start, end) of every spec that contains `t`, found by trying every
/// window index from well before `t` to well after it.
pub fn windows_containing(cfg: &Cfg, t: i64) -> Vec<(String, i64, i64)> {
    let mut out = Vec::new();
    for w in &cfg.windows {
        let size = dur(&w.size);
        let slide = w.slide.as_deref().map(dur).unwrap_or(size);
        let first = t.div_euclid(slide) - size / slide - 2;
        let last = t.div_euclid(slide) + 2;
        for k in first..=last {
            let (start, end) = (k * slide, k * slide + size);
            if start <= t && t < end {
                out.push((w.name.clone(), start, end));
            }
        }
    }
    out
}

/// The metrics a config computes: its `[[metrics]]`, or the implicit metric `all`.
pub fn effective_metrics(cfg: &Cfg) -> Vec<MetricCfg> {
    if cfg.metrics.is_empty() {
        vec![MetricCfg::new(super::ALL)]
    } else {
        cfg.metrics.clone()
    }
}

/// Exact batch computation: for every metric, every event its filter matches, in every window of
/// the metric's specs containing it, in the total key and every present dimension of the metric;
/// per (key, window) a map user → (events, sum in millionths), then the threshold decides which
/// users qualify.
pub fn aggregate(cfg: &Cfg, events: &[Ev]) -> Vec<Row> {
    // (event type, dimension, value, window, start, end)
    type Key = (
        Option<String>,
        Option<String>,
        Option<String>,
        String,
        i64,
        i64,
    );
    let mut rows: Vec<Row> = Vec::new();
    for m in effective_metrics(cfg) {
        if m.after.is_some() {
            rows.extend(attribution_rows(cfg, &m, events));
            continue;
        }
        let filter = m.filter.as_ref().map(|name| {
            cfg.filters
                .iter()
                .find(|f| &f.name == name)
                .unwrap_or_else(|| panic!("metric {}: no filter {name}", m.name))
        });
        let mut acc: BTreeMap<Key, BTreeMap<String, (u64, i128)>> = BTreeMap::new();
        for ev in events {
            if let Some(f) = filter
                && !filter_matches(f, &ev.json)
            {
                continue;
            }
            let t = if m.by_type.unwrap_or(true) {
                Some(ev.event_type.clone())
            } else {
                None
            };
            let add = match &m.threshold {
                Some(Threshold::MinSum { field, .. }) => millionths(lookup_path(&ev.json, field)),
                _ => 0,
            };
            let mut keys: Vec<(Option<String>, Option<String>)> = vec![(None, None)];
            for (name, value) in &ev.dims {
                if m.dimensions.as_ref().is_none_or(|ds| ds.contains(name)) {
                    keys.push((Some(name.clone()), Some(value.clone())));
                }
            }
            for (wname, start, end) in windows_containing(cfg, ev.t) {
                if !m.windows.as_ref().is_none_or(|ws| ws.contains(&wname)) {
                    continue;
                }
                for (dn, dv) in &keys {
                    let users = acc
                        .entry((t.clone(), dn.clone(), dv.clone(), wname.clone(), start, end))
                        .or_default();
                    let u = users.entry(ev.user.clone()).or_insert((0, 0));
                    u.0 += 1;
                    u.1 += add;
                }
            }
        }
        for ((event_type, dimension, value, window, start_ms, end_ms), users) in acc {
            let mut unique_users = 0;
            let mut n_events = 0;
            for (count, sum) in users.values() {
                let qualifies = match &m.threshold {
                    None => true,
                    Some(Threshold::MinCount(n)) => count >= n,
                    Some(Threshold::MinSum { value, .. }) => sum_reaches(*sum, value),
                };
                if qualifies {
                    unique_users += 1;
                    n_events += count;
                }
            }
            if unique_users >= 1 {
                rows.push(Row {
                    metric: m.name.clone(),
                    event_type,
                    dimension,
                    value,
                    window,
                    start_ms,
                    end_ms,
                    unique_users,
                    events: n_events,
                });
            }
        }
    }
    rows.sort();
    rows
}

/// The filter named `name`.
pub fn find_filter<'a>(cfg: &'a Cfg, name: &str) -> &'a FilterCfg {
    cfg.filters
        .iter()
        .find(|f| f.name == name)
        .unwrap_or_else(|| panic!("no filter {name}"))
}

/// Whether an event is one of the metric's: its `filter` matches (no `filter`: every event). For
/// an attribution metric: whether the event is a conversion B.
pub fn is_metric_event(cfg: &Cfg, m: &MetricCfg, ev: &Ev) -> bool {
    match &m.filter {
        None => true,
        Some(name) => filter_matches(find_filter(cfg, name), &ev.json),
    }
}

/// Whether an event is an anchor A of an attribution metric: its `after` filter matches.
pub fn is_anchor(cfg: &Cfg, m: &MetricCfg, ev: &Ev) -> bool {
    let name = m.after.as_ref().expect("an attribution metric");
    filter_matches(find_filter(cfg, name), &ev.json)
}

/// The tuple of an event's values of the metric's dimensions, in `[[dimensions]]` order (`None` =
/// absent). `Vec<Option<String>>` compares value by value, `None` before any value, strings byte
/// by byte: exactly the tie order of docs/SEMANTICS.md "Credit".
pub fn dim_tuple(cfg: &Cfg, m: &MetricCfg, ev: &Ev) -> Vec<Option<String>> {
    cfg.dims
        .iter()
        .filter(|d| m.has_dim(&d.name))
        .map(|d| {
            ev.dims
                .iter()
                .find(|(name, _)| name == &d.name)
                .map(|(_, v)| v.clone())
        })
        .collect()
}

/// The A's a conversion `events[b]` is credited to (indices into `events`), by scanning every event:
/// the lookback is the same user's A's with `t_b − within ≤ t_a < t_b`; last/first touch take the
/// latest/earliest, ties broken by the smallest dimension tuple; any touch takes them all. Empty
/// when the lookback is.
pub fn credits(cfg: &Cfg, m: &MetricCfg, events: &[Ev], b: usize) -> Vec<usize> {
    let within = m.within_ms();
    let tb = events[b].t;
    let lookback: Vec<usize> = (0..events.len())
        .filter(|&a| {
            events[a].user == events[b].user
                && is_anchor(cfg, m, &events[a])
                && tb - within <= events[a].t
                && events[a].t < tb
        })
        .collect();
    if lookback.is_empty() {
        return vec![];
    }
    // (time, tuple) of each A; the winner is the smallest or largest time, then the smallest tuple
    let key = |a: usize| (events[a].t, dim_tuple(cfg, m, &events[a]));
    match m.attribution_or_default() {
        "any_touch" => lookback,
        "last_touch" => {
            let latest = lookback.iter().map(|&a| events[a].t).max().unwrap();
            let best = lookback
                .iter()
                .copied()
                .filter(|&a| events[a].t == latest)
                .min_by_key(|&a| key(a))
                .unwrap();
            vec![best]
        }
        "first_touch" => {
            let earliest = lookback.iter().map(|&a| events[a].t).min().unwrap();
            let best = lookback
                .iter()
                .copied()
                .filter(|&a| events[a].t == earliest)
                .min_by_key(|&a| key(a))
                .unwrap();
            vec![best]
        }
        other => panic!("metric {}: attribution = {other:?}", m.name),
    }
}

/// An attribution metric's rows over the counted `events` (docs/SEMANTICS.md "Attribution
/// metrics"): every B's credits, the windows each credit lands in (the anchor's or the
/// conversion's), the set of (key, window) cells the B contributes to (each once), then per cell
/// the users' credited B's and the threshold.
pub fn attribution_rows(cfg: &Cfg, m: &MetricCfg, events: &[Ev]) -> Vec<Row> {
    type Cell = (
        Option<String>,
        Option<String>,
        Option<String>,
        String,
        i64,
        i64,
    );
    // cell → user → the indices of the user's credited B's
    let mut acc: BTreeMap<Cell, BTreeMap<String, std::collections::BTreeSet<usize>>> =
        BTreeMap::new();
    for b in 0..events.len() {
        if !is_metric_event(cfg, m, &events[b]) {
            continue;
        }
        let t = if m.by_type.unwrap_or(true) {
            Some(events[b].event_type.clone())
        } else {
            None
        };
        let mut cells: std::collections::BTreeSet<Cell> = Default::default();
        for a in credits(cfg, m, events, b) {
            let at = if m.on_anchor() {
                events[a].t
            } else {
                events[b].t
            };
            for (wname, start, end) in windows_containing(cfg, at) {
                if !m.counts_in(&wname) {
                    continue;
                }
                cells.insert((t.clone(), None, None, wname.clone(), start, end));
                for (dn, dv) in &events[a].dims {
                    if m.has_dim(dn) {
                        cells.insert((
                            t.clone(),
                            Some(dn.clone()),
                            Some(dv.clone()),
                            wname.clone(),
                            start,
                            end,
                        ));
                    }
                }
            }
        }
        for c in cells {
            acc.entry(c)
                .or_default()
                .entry(events[b].user.clone())
                .or_default()
                .insert(b);
        }
    }
    let mut rows = Vec::new();
    for ((event_type, dimension, value, window, start_ms, end_ms), users) in acc {
        let mut unique_users = 0;
        let mut n_events = 0;
        for bs in users.values() {
            let count = bs.len() as u64;
            let qualifies = match &m.threshold {
                None => true,
                Some(Threshold::MinCount(n)) => count >= *n,
                Some(Threshold::MinSum { field, value }) => {
                    let sum: i128 = bs
                        .iter()
                        .map(|&b| millionths(lookup_path(&events[b].json, field)))
                        .sum();
                    sum_reaches(sum, value)
                }
            };
            if qualifies {
                unique_users += 1;
                n_events += count;
            }
        }
        if unique_users >= 1 {
            rows.push(Row {
                metric: m.name.clone(),
                event_type,
                dimension,
                value,
                window,
                start_ms,
                end_ms,
                unique_users,
                events: n_events,
            });
        }
    }
    rows
}

/// `E_m(x)`: the earliest end among the windows of the metric's specs that contain `x`.
pub fn earliest_end(cfg: &Cfg, m: &MetricCfg, x: i64) -> i64 {
    windows_containing(cfg, x)
        .into_iter()
        .filter(|(name, _, _)| m.counts_in(name))
        .map(|(_, _, end)| end)
        .min()
        .unwrap_or_else(|| panic!("metric {}: no window contains {x}", m.name))
}

/// Whether an accepted event is late under the watermark `wm` it sees (`None` = −∞), with
/// allowed lateness `lateness` (`None` = unbounded): the rule of "Late events and firing" (some
/// window of any spec containing `t` has fired), or one of the generalised rules of "Attribution
/// metrics" for a `window_on = "anchor"` metric. Returns (late, late by the general rule, late by
/// the rule for possible B's).
pub fn lateness_of(
    cfg: &Cfg,
    ev: &Ev,
    wm: Option<i64>,
    lateness: Option<i64>,
) -> (bool, bool, bool) {
    let (Some(l), Some(w)) = (lateness, wm) else {
        return (false, false, false);
    };
    let general = windows_containing(cfg, ev.t)
        .iter()
        .any(|(_, _, end)| w >= end + l);
    let mut late = general;
    let mut by_b_rule = false;
    for m in effective_metrics(cfg) {
        if m.after.is_none() || !m.on_anchor() {
            continue;
        }
        let within = m.within_ms();
        if is_metric_event(cfg, &m, ev) && w >= earliest_end(cfg, &m, ev.t - within) + within + l {
            late = true;
            by_b_rule = true;
        }
        if m.attribution_or_default() == "last_touch"
            && is_anchor(cfg, &m, ev)
            && w >= earliest_end(cfg, &m, ev.t - within + 1) + within + l
        {
            late = true;
        }
    }
    (late, general, by_b_rule)
}

/// What the reference computed.
#[derive(Debug, Clone, Default)]
pub struct Outcome {
    pub rows: Vec<Row>,
    pub counts: super::Counts,
    /// Late lines, in stream order.
    pub late_lines: Vec<Vec<u8>>,
    /// Reject reasons, in stream order.
    pub rejected_reasons: Vec<&'static str>,
    /// Counted events whose dedup key had been recorded before and had expired.
    pub recounted: u64,
    /// Duplicates that would have been late had they not been duplicates.
    pub late_duplicates: u64,
    /// Late events that only the generalised rules of attribution metrics made late.
    pub attribution_late: u64,
    /// Of those, the ones only the rule for last-touch anchors made late.
    pub anchor_rule_late: u64,
    /// The counted events, in stream order.
    pub counted: Vec<Ev>,
    /// Every move of the watermark: (the new `wm`, how many events had been counted by then).
    pub wm_steps: Vec<(i64, usize)>,
}

/// Runs the whole contract over the (decompressed) input files, in order.
pub fn reference(cfg: &Cfg, files: &[Vec<u8>]) -> Outcome {
    let lateness = cfg.lateness_ms();
    let ttl = dur(&cfg.ttl);
    let ooo = dur(&cfg.max_out_of_orderness);

    let mut out = Outcome::default();
    let mut counted: Vec<Ev> = Vec::new();
    // the watermark: None = −∞
    let mut wm: Option<i64> = None;
    // times of all accepted events so far, in stream order
    let mut times: Vec<i64> = Vec::new();
    // dedup records: (user, id) → expiry
    let mut records: HashMap<(String, String), i64> = HashMap::new();

    for line in split_lines(files) {
        out.counts.lines += 1;
        let ev = match parse_line(cfg, &line) {
            Err(reason) => {
                out.counts.rejected += 1;
                out.rejected_reasons.push(reason);
                continue;
            }
            Ok(ev) => ev,
        };
        let g = times.len();

        // is it late under the watermark it sees? check every window that contains it, and the
        // rules of the anchor-windowed attribution metrics
        let (late, late_by_general_rule, late_by_b_rule) = lateness_of(cfg, &ev, wm, lateness);
        let key = ev.id.clone().map(|id| (ev.user.clone(), id));
        let recorded = key.as_ref().and_then(|k| records.get(k).copied());
        let duplicate = match (recorded, wm) {
            (Some(expiry), None) => {
                let _ = expiry;
                true // −∞ < anything
            }
            (Some(expiry), Some(w)) => w < expiry,
            (None, _) => false,
        };
        if duplicate {
            out.counts.duplicates += 1;
            if late {
                out.late_duplicates += 1;
            }
        } else if late {
            out.counts.late += 1;
            if !late_by_general_rule {
                out.attribution_late += 1;
                if !late_by_b_rule {
                    out.anchor_rule_late += 1;
                }
            }
            out.late_lines.push(line.clone());
        } else {
            if let Some(k) = key {
                let base = match wm {
                    Some(w) => ev.t.max(w),
                    None => ev.t,
                };
                if recorded.is_some() {
                    out.recounted += 1;
                }
                records.insert(k, base + ttl);
            }
            out.counts.counted += 1;
            counted.push(ev.clone());
        }

        // the watermark moves after accepted event g when (g + 1) % interval == 0
        times.push(ev.t);
        if (g + 1).is_multiple_of(cfg.interval) {
            let candidate = match cfg.strategy {
                Strategy::Median => {
                    let from = times.len().saturating_sub(cfg.sample);
                    let mut s: Vec<i64> = times[from..].to_vec();
                    s.sort();
                    s[(s.len() - 1) / 2] - ooo
                }
                Strategy::Max => *times.iter().max().unwrap() - ooo,
            };
            let new = match wm {
                Some(w) => w.max(candidate),
                None => candidate,
            };
            if wm != Some(new) {
                out.wm_steps.push((new, counted.len()));
            }
            wm = Some(new);
        }
    }
    out.rows = aggregate(cfg, &counted);
    out.counted = counted;
    out
}
