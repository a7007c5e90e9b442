//! What `abacus diff` prints and writes: a summary table per window spec and per metric / event
//! type, the worst differences, the first rows only one side has, a one-line verdict, and
//! (`--out`) every differing row with both sides' values as Parquet.

use std::cmp::Ordering;
use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::Path;
use std::sync::Arc;

use arrow_array::builder::{StringBuilder, TimestampMillisecondBuilder, UInt64Builder};
use arrow_array::{ArrayRef, RecordBatch};
use arrow_schema::{DataType, Field, Schema, TimeUnit};
use parquet::arrow::ArrowWriter;

use super::diff::{
    Compared, DiffOptions, EVENT_TYPE, KEY_COLUMNS, Key, METRIC, Plan, Side, Status, WINDOW,
};
use super::source::Interner;
use crate::error::{Error, Result};
use crate::timefmt::format_rfc3339;

/// `2024-01-01T03:00:00Z` (milliseconds only when there are any).
pub fn fmt_time(ms: i64) -> String {
    let s = format_rfc3339(ms);
    s.strip_suffix(".000Z")
        .map_or(s.clone(), |t| format!("{t}Z"))
}

/// The key's columns that take part, as `name=value` pairs.
pub fn key_text(k: &Key, plan: &Plan, interner: &Interner) -> String {
    let mut parts = Vec::new();
    for (i, c) in KEY_COLUMNS.iter().enumerate() {
        if plan.key_text[i] {
            parts.push(format!(
                "{c}={}",
                interner.name(k.text[i]).unwrap_or("null")
            ));
        }
    }
    if let Some(t) = k.start {
        parts.push(format!("window_start={}", fmt_time(t)));
    }
    if let Some(t) = k.end {
        parts.push(format!("window_end={}", fmt_time(t)));
    }
    format!("({})", parts.join(", "))
}

/// Report order: window, window start, metric, event type, dimension, value, window end.
pub fn key_order(a: &Key, b: &Key, interner: &Interner) -> Ordering {
    let name = |k: &Key, i: usize| interner.name(k.text[i]);
    name(a, WINDOW)
        .cmp(&name(b, WINDOW))
        .then(a.start.cmp(&b.start))
        .then_with(|| {
            (0..WINDOW)
                .map(|i| name(a, i).cmp(&name(b, i)))
                .find(|o| o.is_ne())
                .unwrap_or(Ordering::Equal)
        })
        .then(a.end.cmp(&b.end))
}

/// Rows with aligned columns: the first `left` left-aligned, the others right-aligned.
fn table(header: &[String], rows: &[Vec<String>], left: usize) -> String {
    let mut width: Vec<usize> = header.iter().map(|h| h.chars().count()).collect();
    for r in rows {
        for (w, c) in width.iter_mut().zip(r) {
            *w = (*w).max(c.chars().count());
        }
    }
    let mut out = String::new();
    for r in std::iter::once(header).chain(rows.iter().map(Vec::as_slice)) {
        let cells: Vec<String> = r
            .iter()
            .zip(&width)
            .enumerate()
            .map(|(i, (c, &w))| {
                if i < left {
                    format!("{c:<w$}")
                } else {
                    format!("{c:>w$}")
                }
            })
            .collect();
        let _ = writeln!(out, "  {}", cells.join("  ").trim_end());
    }
    out
}

#[derive(Default, Clone, Copy)]
struct Tally {
    rows: u64,
    equal: u64,
    within: u64,
    different: u64,
    only_expected: u64,
    only_actual: u64,
}

impl Tally {
    fn add(&mut self, s: Status) {
        self.rows += 1;
        match s {
            Status::Equal => self.equal += 1,
            Status::WithinTolerance => self.within += 1,
            Status::Different => self.different += 1,
            Status::OnlyExpected => self.only_expected += 1,
            Status::OnlyActual => self.only_actual += 1,
        }
    }

    fn cells(&self, tolerant: bool) -> Vec<String> {
        let mut v = vec![self.rows, self.equal];
        if tolerant {
            v.push(self.within);
        }
        v.extend([self.different, self.only_expected, self.only_actual]);
        v.into_iter().map(|n| n.to_string()).collect()
    }
}

/// The summary table grouped by `group` (a label per key).
fn summary(
    title: &str,
    compared: &[Compared],
    tolerant: bool,
    group: impl Fn(&Key) -> String,
) -> String {
    let mut groups: BTreeMap<String, Tally> = BTreeMap::new();
    let mut total = Tally::default();
    for c in compared {
        groups.entry(group(&c.key)).or_default().add(c.status);
        total.add(c.status);
    }
    let mut header = vec![title.to_string(), "rows".into(), "equal".into()];
    if tolerant {
        header.push("within tolerance".into());
    }
    header.extend(["different", "only in expected", "only in actual"].map(String::from));
    let n_groups = groups.len();
    let (shown, rest) = fold_groups(groups);
    let mut rows: Vec<Vec<String>> = shown
        .iter()
        .map(|(g, t)| {
            std::iter::once(g.clone())
                .chain(t.cells(tolerant))
                .collect()
        })
        .collect();
    if let Some((n, t)) = rest {
        rows.push(
            std::iter::once(format!("({n} more, all equal)"))
                .chain(t.cells(tolerant))
                .collect(),
        );
    }
    if n_groups > 1 {
        rows.push(
            std::iter::once("all".to_string())
                .chain(total.cells(tolerant))
                .collect(),
        );
    }
    table(&header, &rows, 1)
}

/// Groups by label, with their tallies.
type Groups = Vec<(String, Tally)>;

/// Groups shown one per line: all when there are few; else those with differences, topped up with
/// the largest to [`SHOWN_GROUPS`], and the others (all equal) summed on one line.
fn fold_groups(groups: BTreeMap<String, Tally>) -> (Groups, Option<(usize, Tally)>) {
    if groups.len() <= SHOWN_GROUPS {
        return (groups.into_iter().collect(), None);
    }
    let equal = |t: &Tally| t.rows == t.equal + t.within;
    let mut by_size: Vec<(String, Tally)> = groups.into_iter().collect();
    by_size.sort_by(|a, b| {
        (equal(&a.1), b.1.rows)
            .cmp(&(equal(&b.1), a.1.rows))
            .then(a.0.cmp(&b.0))
    });
    let keep = by_size
        .iter()
        .filter(|(_, t)| !equal(t))
        .count()
        .max(SHOWN_GROUPS);
    let rest: Vec<(String, Tally)> = by_size.split_off(keep.min(by_size.len()));
    by_size.sort_by(|a, b| a.0.cmp(&b.0));
    if rest.is_empty() {
        return (by_size, None);
    }
    let mut sum = Tally::default();
    for (_, t) in &rest {
        sum.rows += t.rows;
        sum.equal += t.equal;
        sum.within += t.within;
    }
    (by_size, Some((rest.len(), sum)))
}

/// Groups listed one per line before the rest are folded.
const SHOWN_GROUPS: usize = 12;

pub fn render(
    opts: &DiffOptions,
    sides: &[Side; 2],
    plan: &Plan,
    compared: &[Compared],
    interner: &Interner,
) -> String {
    let mut out = header(opts, sides, plan);
    let tolerant = !opts.tolerance.is_exact();
    let name = |k: &Key, i: usize| interner.name(k.text[i]).unwrap_or("null").to_string();
    out.push('\n');
    out += &summary("window", compared, tolerant, |k| {
        if plan.key_text[WINDOW] {
            name(k, WINDOW)
        } else {
            "(no window column)".into()
        }
    });
    out.push('\n');
    let (title, with_metric) = if plan.key_text[METRIC] {
        ("metric / event type", true)
    } else {
        ("event type", false)
    };
    out += &summary(title, compared, tolerant, |k| {
        let et = if plan.key_text[EVENT_TYPE] {
            name(k, EVENT_TYPE)
        } else {
            "(no event_type column)".into()
        };
        if with_metric {
            format!("{} / {et}", name(k, METRIC))
        } else {
            et
        }
    });
    out += &worst(compared, plan, interner, opts.top);
    for (status, what) in [
        (Status::OnlyExpected, "only in EXPECTED"),
        (Status::OnlyActual, "only in ACTUAL"),
    ] {
        out += &only_in(compared, plan, interner, opts.top, status, what);
    }
    out += &verdict(compared);
    out
}

fn header(opts: &DiffOptions, sides: &[Side; 2], plan: &Plan) -> String {
    let mut out = String::new();
    for (name, s) in [("EXPECTED", &sides[0]), ("ACTUAL", &sides[1])] {
        let _ = writeln!(
            out,
            "{name:<9} {} ({}): {} rows",
            s.src.label,
            s.src.kind(),
            s.src.len()
        );
    }
    let mut key: Vec<&str> = KEY_COLUMNS
        .iter()
        .enumerate()
        .filter(|(i, _)| plan.key_text[*i])
        .map(|(_, c)| *c)
        .collect();
    if plan.start {
        key.push("window_start");
    }
    if plan.end {
        key.push("window_end");
    }
    let _ = writeln!(out, "key:      {}", key.join(", "));
    let counts = if plan.events {
        "unique_users, events"
    } else {
        "unique_users"
    };
    let _ = writeln!(out, "compared: {counts} (tolerance: {})", opts.tolerance);
    if !plan.ignored.is_empty() {
        let _ = writeln!(out, "left out: {}", plan.ignored.join(", "));
    }
    for (i, name) in [(0, "EXPECTED"), (1, "ACTUAL")] {
        let n = sides[i].in_scope.iter().filter(|s| !**s).count();
        if n > 0 {
            let set: Vec<String> = opts.set.iter().map(|(c, v)| format!("{c}={v}")).collect();
            let _ = writeln!(
                out,
                "out of scope: {n} {name} rows (other values than the other side's in a column set by --set {})",
                set.join(",")
            );
        }
    }
    out
}

fn key_cells(k: &Key, plan: &Plan, interner: &Interner) -> Vec<String> {
    let mut v: Vec<String> = (0..KEY_COLUMNS.len())
        .filter(|&i| plan.key_text[i])
        .map(|i| interner.name(k.text[i]).unwrap_or("").to_string())
        .collect();
    if plan.start {
        v.push(k.start.map(fmt_time).unwrap_or_default());
    }
    v
}

fn key_header(plan: &Plan) -> Vec<String> {
    let mut v: Vec<String> = KEY_COLUMNS
        .iter()
        .enumerate()
        .filter(|(i, _)| plan.key_text[*i])
        .map(|(_, c)| c.to_string())
        .collect();
    if plan.start {
        v.push("window_start".into());
    }
    v
}

fn rel(e: u64, a: u64) -> f64 {
    a.abs_diff(e) as f64 / (e.max(1)) as f64
}

/// A key both sides have, with (unique_users, events) of each.
type Matched<'a> = (&'a Compared, (u64, u64), (u64, u64));

fn worst(compared: &[Compared], plan: &Plan, interner: &Interner, top: usize) -> String {
    let mut rows: Vec<Matched> = compared
        .iter()
        .filter_map(|c| Some((c, c.expected?, c.actual?)))
        .filter(|(_, e, a)| e != a)
        .collect();
    if rows.is_empty() {
        return String::new();
    }
    let mut header = key_header(plan);
    let left = header.len();
    header.extend(["expected", "actual", "diff", "rel"].map(String::from));
    if plan.events {
        header.extend(["events expected", "events actual"].map(String::from));
    }
    let line = |(c, e, a): &Matched| {
        let mut v = key_cells(&c.key, plan, interner);
        let d = a.0 as i128 - e.0 as i128;
        v.extend([
            e.0.to_string(),
            a.0.to_string(),
            format!("{d:+}"),
            format!("{:.2}%", rel(e.0, a.0) * 100.0),
        ]);
        if plan.events {
            v.extend([e.1.to_string(), a.1.to_string()]);
        }
        v
    };
    let mut out = String::new();
    rows.sort_by(|x, y| {
        (y.2.0.abs_diff(y.1.0), y.2.1.abs_diff(y.1.1))
            .cmp(&(x.2.0.abs_diff(x.1.0), x.2.1.abs_diff(x.1.1)))
    });
    let _ = writeln!(
        out,
        "\nworst differences, absolute (rows that differ: {}):",
        rows.len()
    );
    out += &table(
        &header,
        &rows.iter().take(top).map(line).collect::<Vec<_>>(),
        left,
    );
    rows.sort_by(|x, y| rel(y.1.0, y.2.0).total_cmp(&rel(x.1.0, x.2.0)));
    let _ = writeln!(out, "\nworst differences, relative:");
    out += &table(
        &header,
        &rows.iter().take(top).map(line).collect::<Vec<_>>(),
        left,
    );
    out
}

fn only_in(
    compared: &[Compared],
    plan: &Plan,
    interner: &Interner,
    top: usize,
    status: Status,
    what: &str,
) -> String {
    let rows: Vec<&Compared> = compared.iter().filter(|c| c.status == status).collect();
    if rows.is_empty() {
        return String::new();
    }
    let mut header = key_header(plan);
    let left = header.len();
    header.push("unique_users".into());
    if plan.events {
        header.push("events".into());
    }
    let lines: Vec<Vec<String>> = rows
        .iter()
        .take(top)
        .map(|c| {
            let mut v = key_cells(&c.key, plan, interner);
            let (u, e) = c.expected.or(c.actual).unwrap_or_default();
            v.push(u.to_string());
            if plan.events {
                v.push(e.to_string());
            }
            v
        })
        .collect();
    format!(
        "\n{what} (first {} of {}):\n{}",
        lines.len(),
        rows.len(),
        table(&header, &lines, left)
    )
}

fn verdict(compared: &[Compared]) -> String {
    let mut t = Tally::default();
    compared.iter().for_each(|c| t.add(c.status));
    if t.different + t.only_expected + t.only_actual == 0 {
        let within = if t.within > 0 {
            format!(" ({} within the tolerance)", t.within)
        } else {
            String::new()
        };
        format!("\nresult: EQUAL: all {} rows match{within}\n", t.rows)
    } else {
        format!(
            "\nresult: NOT EQUAL: {} different, {} only in expected, {} only in actual (of {} rows)\n",
            t.different, t.only_expected, t.only_actual, t.rows
        )
    }
}

/// Writes every row that is not equal within the tolerance, with both sides' values.
pub fn write_parquet(
    path: &Path,
    compared: &[Compared],
    plan: &Plan,
    interner: &Interner,
) -> Result<()> {
    let batch = diff_batch(compared, plan, interner).map_err(|e| parquet_err(path, e))?;
    let dir = path
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    let tmp = tempfile::NamedTempFile::new_in(dir).map_err(|e| Error::output(path, e))?;
    let file = tmp.reopen().map_err(|e| Error::output(path, e))?;
    let mut w =
        ArrowWriter::try_new(file, batch.schema(), None).map_err(|e| parquet_err(path, e))?;
    w.write(&batch).map_err(|e| parquet_err(path, e))?;
    w.close().map_err(|e| parquet_err(path, e))?;
    tmp.persist(path)
        .map_err(|e| Error::output(path, e.error))?;
    Ok(())
}

fn parquet_err(path: &Path, e: impl std::fmt::Display) -> Error {
    Error::Parquet {
        path: path.to_path_buf(),
        reason: e.to_string(),
    }
}

fn diff_batch(
    compared: &[Compared],
    plan: &Plan,
    interner: &Interner,
) -> std::result::Result<RecordBatch, arrow_schema::ArrowError> {
    let rows: Vec<&Compared> = compared
        .iter()
        .filter(|c| !matches!(c.status, Status::Equal | Status::WithinTolerance))
        .collect();
    let ts = DataType::Timestamp(TimeUnit::Millisecond, Some("UTC".into()));
    let mut fields: Vec<Field> = KEY_COLUMNS
        .iter()
        .map(|c| Field::new(*c, DataType::Utf8, true))
        .collect();
    fields.extend([
        Field::new("window_start", ts.clone(), true),
        Field::new("window_end", ts, true),
        Field::new("status", DataType::Utf8, false),
    ]);
    for c in [
        "expected_unique_users",
        "actual_unique_users",
        "expected_events",
        "actual_events",
    ] {
        fields.push(Field::new(c, DataType::UInt64, true));
    }
    let mut cols: Vec<ArrayRef> = Vec::new();
    for i in 0..KEY_COLUMNS.len() {
        let mut b = StringBuilder::new();
        rows.iter()
            .for_each(|c| b.append_option(interner.name(c.key.text[i])));
        cols.push(Arc::new(b.finish()));
    }
    for get in [|k: &Key| k.start, |k: &Key| k.end] {
        let mut b = TimestampMillisecondBuilder::new().with_timezone("UTC");
        rows.iter().for_each(|c| b.append_option(get(&c.key)));
        cols.push(Arc::new(b.finish()));
    }
    let mut b = StringBuilder::new();
    for c in &rows {
        b.append_value(match c.status {
            Status::OnlyExpected => "only_in_expected",
            Status::OnlyActual => "only_in_actual",
            _ => "different",
        });
    }
    cols.push(Arc::new(b.finish()));
    type Pick = fn(&Compared) -> Option<(u64, u64)>;
    let sides: [Pick; 2] = [|c| c.expected, |c| c.actual];
    for (events, side) in [
        (false, sides[0]),
        (false, sides[1]),
        (true, sides[0]),
        (true, sides[1]),
    ] {
        let mut b = UInt64Builder::new();
        for c in &rows {
            b.append_option(
                side(c)
                    .filter(|_| !events || plan.events)
                    .map(|(u, e)| if events { e } else { u }),
            );
        }
        cols.push(Arc::new(b.finish()));
    }
    RecordBatch::try_new(Arc::new(Schema::new(fields)), cols)
}
