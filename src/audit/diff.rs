//! `abacus diff EXPECTED ACTUAL`: compares two result sets row by row, so that reproducing a
//! production count offline ends in a yes or no (exit 0 or 1) and a list of what differs, without
//! SQL. Each side is read by [`super::source`]; a production export's columns are renamed with
//! `--map`, a column it lacks is filled with `--set`. Rows are matched on the key columns both
//! sides have (metric, event_type, dimension, value, window, window_start, window_end) and compared
//! on `unique_users`, and on `events` when both sides have it.

use std::path::PathBuf;

use hashbrown::{HashMap, HashSet};

use super::report;
use super::source::{Column, Interner, Role, Source, load};
use super::tolerance::Tolerance;
use crate::error::{Error, Result};

/// The text key columns, in key order.
pub const KEY_COLUMNS: [&str; 5] = ["metric", "event_type", "dimension", "value", "window"];
pub const DIMENSION: usize = 2;
pub const VALUE: usize = 3;
pub const WINDOW: usize = 4;
pub const METRIC: usize = 0;
pub const EVENT_TYPE: usize = 1;

/// Every column a side may have, with the role it is read in.
pub const COLUMNS: [(&str, Role); 9] = [
    ("metric", Role::Key),
    ("event_type", Role::Key),
    ("dimension", Role::Key),
    ("value", Role::Key),
    ("window", Role::Key),
    ("window_start", Role::Time),
    ("window_end", Role::Time),
    ("unique_users", Role::Count),
    ("events", Role::Count),
];

#[derive(Debug, Clone, Default)]
pub struct DiffOptions {
    pub expected: String,
    pub actual: String,
    /// `(a side's column, abacus column)`: usually EXPECTED's (an export's names), applied to
    /// whichever side has that column.
    pub map: Vec<(String, String)>,
    /// `(abacus key column, value)` for a side without that column.
    pub set: Vec<(String, String)>,
    pub tolerance: Tolerance,
    /// Where to write every differing row (Parquet).
    pub out: Option<PathBuf>,
    /// Rows shown per list of worst differences.
    pub top: usize,
}

/// The outcome: the report for stdout, and whether the sides are equal within the tolerance
/// (the CLI exits 0 or 1 on it).
#[derive(Debug)]
pub struct DiffReport {
    pub text: String,
    pub equal: bool,
}

/// A row's identity: interned key texts (null when a side has no such column or the cell is
/// empty), then the window bounds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Key {
    pub text: [Option<u32>; 5],
    pub start: Option<i64>,
    pub end: Option<i64>,
}

/// Which columns take part, decided from what both sides have.
#[derive(Debug, Clone, Default)]
pub struct Plan {
    pub key_text: [bool; 5],
    pub start: bool,
    pub end: bool,
    pub events: bool,
    /// Columns only one side has, left out (for the report).
    pub ignored: Vec<String>,
    /// Key columns filled by `--set` on one side: (column, side 0 expected / 1 actual).
    pub filled: Vec<(usize, usize)>,
}

/// One side after reading: a key and counts per row, and whether the row is in scope.
#[derive(Debug)]
pub struct Side {
    pub src: Source,
    pub keys: Vec<Key>,
    pub users: Vec<u64>,
    pub events: Vec<u64>,
    pub in_scope: Vec<bool>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Status {
    Equal,
    WithinTolerance,
    Different,
    OnlyExpected,
    OnlyActual,
}

/// A compared key: the counts of each side that has it.
#[derive(Debug, Clone)]
pub struct Compared {
    pub key: Key,
    /// (unique_users, events) — events 0 when not compared.
    pub expected: Option<(u64, u64)>,
    pub actual: Option<(u64, u64)>,
    pub status: Status,
}

pub fn diff(opts: &DiffOptions) -> Result<DiffReport> {
    validate(opts)?;
    let mut interner = Interner::default();
    let e_src = load_side(&opts.expected, &opts.map, &mut interner)?;
    let a_src = load_side(&opts.actual, &opts.map, &mut interner)?;
    check_columns(opts, &e_src, &a_src)?;
    let plan = plan(opts, &e_src, &a_src);
    let set = set_values(opts, &mut interner);
    let mut sides = [
        build_side(e_src, &plan, &set, 0),
        build_side(a_src, &plan, &set, 1),
    ];
    restrict_scope(&mut sides, &plan);
    let compared = compare(&sides, &plan, opts.tolerance, &interner)?;
    let equal = compared
        .iter()
        .all(|c| matches!(c.status, Status::Equal | Status::WithinTolerance));
    if let Some(out) = &opts.out {
        report::write_parquet(out, &compared, &plan, &interner)?;
    }
    let text = report::render(opts, &sides, &plan, &compared, &interner);
    Ok(DiffReport { text, equal })
}

/// Parses `a=b` items of `--map` or `--set`.
pub fn parse_pairs(items: &[String], flag: &str) -> Result<Vec<(String, String)>> {
    items
        .iter()
        .filter(|s| !s.trim().is_empty())
        .map(|s| match s.split_once('=') {
            Some((a, b)) if !a.trim().is_empty() => {
                Ok((a.trim().to_string(), b.trim().to_string()))
            }
            _ => Err(Error::Usage(format!(
                "{flag} `{s}`: write NAME=VALUE, e.g. {flag} {}",
                if flag == "--map" {
                    "hour=window_start"
                } else {
                    "window=hourly"
                }
            ))),
        })
        .collect()
}

fn validate(opts: &DiffOptions) -> Result<()> {
    let names: Vec<&str> = COLUMNS.iter().map(|(n, _)| *n).collect();
    let mut targets = HashSet::new();
    for (from, to) in &opts.map {
        if !names.contains(&to.as_str()) {
            return Err(Error::Usage(format!(
                "--map {from}={to}: `{to}` is not an abacus column; one of: {}",
                names.join(", ")
            )));
        }
        if !targets.insert(to.as_str()) {
            return Err(Error::Usage(format!(
                "--map: two columns are mapped to `{to}`"
            )));
        }
    }
    for (col, _) in &opts.set {
        if !KEY_COLUMNS.contains(&col.as_str()) {
            return Err(Error::Usage(format!(
                "--set {col}=…: only a key column can be set: one of {}",
                KEY_COLUMNS.join(", ")
            )));
        }
    }
    Ok(())
}

/// Reads a side, asking for each abacus column under its own name and under the name `--map` gives
/// it; a mapped column the side has is then read as the abacus column (shadowing one of that name).
fn load_side(spec: &str, map: &[(String, String)], interner: &mut Interner) -> Result<Source> {
    let mut wanted: Vec<(String, Role)> =
        COLUMNS.iter().map(|(c, r)| (c.to_string(), *r)).collect();
    for (from, to) in map {
        if let Some((_, role)) = COLUMNS.iter().find(|(c, _)| c == to) {
            wanted.push((from.clone(), *role));
        }
    }
    let mut src = load(spec, &wanted, interner)?;
    if src.is_empty() {
        return Err(Error::Usage(format!("{spec}: no rows to compare")));
    }
    for (from, to) in map {
        if src.column(from).is_some() {
            src.columns.retain(|(n, _)| n != to);
            if let Some((name, _)) = src.columns.iter_mut().find(|(n, _)| n == from) {
                *name = to.clone();
            }
        }
    }
    Ok(src)
}

/// Every `--map` column exists on a side, and both sides have a count.
fn check_columns(opts: &DiffOptions, e: &Source, a: &Source) -> Result<()> {
    for (from, to) in &opts.map {
        if !e.has(from) && !a.has(from) {
            return Err(Error::Usage(format!(
                "{}: no column `{from}` (given in --map {from}={to}); its columns are: {} (and {}'s: {})",
                e.files[0].display(),
                e.names.join(", "),
                a.files[0].display(),
                a.names.join(", ")
            )));
        }
    }
    for src in [e, a] {
        if src.column("unique_users").is_none() {
            return Err(Error::Usage(format!(
                "{}: no column `unique_users`; map the count column with --map COLUMN=unique_users (its columns are: {})",
                src.files[0].display(),
                src.names.join(", ")
            )));
        }
    }
    Ok(())
}

fn has(src: &Source, col: &str) -> bool {
    src.column(col).is_some()
}

/// Which columns are compared: a key column both sides have (or get from `--set`); a column only
/// one side has is left out on both.
fn plan(opts: &DiffOptions, e: &Source, a: &Source) -> Plan {
    let mut p = Plan::default();
    let set = |c: &str| opts.set.iter().any(|(n, _)| n == c);
    for (i, c) in KEY_COLUMNS.iter().enumerate() {
        let (he, ha) = (has(e, c), has(a, c));
        match (he || set(c), ha || set(c)) {
            (true, true) => {
                p.key_text[i] = true;
                if !he && ha {
                    p.filled.push((i, 0));
                } else if he && !ha {
                    p.filled.push((i, 1));
                }
            }
            (false, false) => {}
            (true, false) => p.ignored.push(format!("{c} (only in EXPECTED)")),
            (false, true) => p.ignored.push(format!("{c} (only in ACTUAL)")),
        }
    }
    p.start = has(e, "window_start") && has(a, "window_start");
    p.end = has(e, "window_end") && has(a, "window_end");
    p.events = has(e, "events") && has(a, "events");
    for c in ["window_start", "window_end", "events"] {
        if has(e, c) != has(a, c) {
            let side = if has(e, c) { "EXPECTED" } else { "ACTUAL" };
            p.ignored.push(format!("{c} (only in {side})"));
        }
    }
    p
}

fn set_values(opts: &DiffOptions, interner: &mut Interner) -> [Option<Option<u32>>; 5] {
    let mut v = [None; 5];
    for (c, value) in &opts.set {
        if let Some(i) = KEY_COLUMNS.iter().position(|k| k == c) {
            v[i] = Some(interner.intern(value));
        }
    }
    v
}

fn build_side(src: Source, plan: &Plan, set: &[Option<Option<u32>>; 5], side: usize) -> Side {
    let n = src.len();
    let mut keys = vec![
        Key {
            text: [None; 5],
            start: None,
            end: None
        };
        n
    ];
    for (i, c) in KEY_COLUMNS.iter().enumerate() {
        if !plan.key_text[i] {
            continue;
        }
        let filled = plan.filled.contains(&(i, side));
        match (src.column(c), filled) {
            (Some(Column::Key(v)), false) => {
                keys.iter_mut().zip(v).for_each(|(k, x)| k.text[i] = *x)
            }
            _ => keys.iter_mut().for_each(|k| k.text[i] = set[i].flatten()),
        }
    }
    for (on, c) in [(plan.start, "window_start"), (plan.end, "window_end")] {
        if let (true, Some(Column::Time(v))) = (on, src.column(c)) {
            for (k, &t) in keys.iter_mut().zip(v) {
                if c == "window_start" {
                    k.start = Some(t);
                } else {
                    k.end = Some(t);
                }
            }
        }
    }
    if plan.key_text[VALUE] {
        // A row without a value is a total row: its dimension is null too, whatever an export
        // (or `--set dimension=…`) put there.
        for k in keys.iter_mut().filter(|k| k.text[VALUE].is_none()) {
            k.text[DIMENSION] = None;
        }
    }
    let counts = |c: &str| match src.column(c) {
        Some(Column::Count(v)) => v.clone(),
        _ => vec![0; n],
    };
    let users = counts("unique_users");
    let events = if plan.events {
        counts("events")
    } else {
        vec![0; n]
    };
    Side {
        src,
        keys,
        users,
        events,
        in_scope: vec![true; n],
    }
}

/// A column filled by `--set` on one side restricts the other side to the values it then has: an
/// export of hourly `email_open` rows is compared with abacus's hourly `email_open` rows only.
fn restrict_scope(sides: &mut [Side; 2], plan: &Plan) {
    for &(col, filled_side) in &plan.filled {
        let allowed: HashSet<Option<u32>> = sides[filled_side]
            .keys
            .iter()
            .map(|k| k.text[col])
            .collect();
        let other = &mut sides[1 - filled_side];
        for (k, s) in other.keys.iter().zip(other.in_scope.iter_mut()) {
            *s &= allowed.contains(&k.text[col]);
        }
    }
}

/// Rows of a side by key; a key twice is an error naming both rows.
fn index(side: &Side, name: &str, plan: &Plan, interner: &Interner) -> Result<HashMap<Key, usize>> {
    let mut map = HashMap::with_capacity(side.keys.len());
    for (i, k) in side.keys.iter().enumerate() {
        if !side.in_scope[i] {
            continue;
        }
        if let Some(&j) = map.get(k) {
            let left_out: Vec<&str> = plan
                .ignored
                .iter()
                .map(String::as_str)
                .filter(|c| !c.starts_with("events") && !c.starts_with("window_end"))
                .collect();
            let hint = if left_out.is_empty() {
                String::new()
            } else {
                format!(
                    " (left out of the key because only one side has them: {}; --set can fill a key column)",
                    left_out.join(", ")
                )
            };
            return Err(Error::Usage(format!(
                "{name} {}: the key {} appears twice: {} and {}{hint}",
                side.src.label,
                report::key_text(k, plan, interner),
                side.src.at(j),
                side.src.at(i)
            )));
        }
        map.insert(*k, i);
    }
    Ok(map)
}

fn compare(
    sides: &[Side; 2],
    plan: &Plan,
    tol: Tolerance,
    interner: &Interner,
) -> Result<Vec<Compared>> {
    let e_idx = index(&sides[0], "EXPECTED", plan, interner)?;
    let a_idx = index(&sides[1], "ACTUAL", plan, interner)?;
    let counts = |s: &Side, i: usize| (s.users[i], s.events[i]);
    let mut out = Vec::with_capacity(e_idx.len().max(a_idx.len()));
    for (k, &i) in &e_idx {
        let e = counts(&sides[0], i);
        let a = a_idx.get(k).map(|&j| counts(&sides[1], j));
        let status = match a {
            None => Status::OnlyExpected,
            Some(a) if a == e => Status::Equal,
            Some(a) if tol.accepts(e.0, a.0) && tol.accepts(e.1, a.1) => Status::WithinTolerance,
            Some(_) => Status::Different,
        };
        out.push(Compared {
            key: *k,
            expected: Some(e),
            actual: a,
            status,
        });
    }
    for (k, &j) in &a_idx {
        if !e_idx.contains_key(k) {
            out.push(Compared {
                key: *k,
                expected: None,
                actual: Some(counts(&sides[1], j)),
                status: Status::OnlyActual,
            });
        }
    }
    out.sort_by(|x, y| report::key_order(&x.key, &y.key, interner));
    Ok(out)
}
