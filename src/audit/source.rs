//! Reading one side of a `diff` (or the rows of a `plot`): an abacus out dir, Parquet files (a path
//! or a glob) or a CSV file. Only the columns asked for are read, each in the role it plays — a key
//! (text, interned in an [`Interner`] shared by both sides so keys compare as integers), a time
//! (timestamp, unix seconds or milliseconds, RFC 3339 text) or a count — whatever its physical type.
//! Every row remembers its file and CSV line or Parquet row, so errors can say where.

use std::fs::File;
use std::io::Read;
use std::path::{Path, PathBuf};

use arrow_array::cast::AsArray;
use arrow_array::types::{
    Float32Type, Float64Type, Int32Type, Int64Type, TimestampMicrosecondType,
    TimestampMillisecondType, TimestampNanosecondType, TimestampSecondType, UInt32Type, UInt64Type,
};
use arrow_array::{Array, ArrayRef};
use arrow_schema::{DataType, TimeUnit};
use hashbrown::HashMap;
use parquet::arrow::ProjectionMask;
use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;

use crate::error::{Error, Result};

/// What a column is read as.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    /// Text; an empty text is null.
    Key,
    /// A point in time, in ms.
    Time,
    /// A non-negative count.
    Count,
}

/// Strings of key columns, numbered; shared by both sides of a diff.
#[derive(Debug, Default)]
pub struct Interner {
    ids: HashMap<String, u32>,
    names: Vec<String>,
}

impl Interner {
    /// The id of a text; `None` for the empty text (an export's missing dimension).
    pub fn intern(&mut self, s: &str) -> Option<u32> {
        if s.is_empty() {
            return None;
        }
        if let Some(&id) = self.ids.get(s) {
            return Some(id);
        }
        let id = self.names.len() as u32;
        self.names.push(s.to_string());
        self.ids.insert(s.to_string(), id);
        Some(id)
    }

    pub fn name(&self, id: Option<u32>) -> Option<&str> {
        id.and_then(|i| self.names.get(i as usize))
            .map(String::as_str)
    }
}

#[derive(Debug, Clone)]
pub enum Column {
    Key(Vec<Option<u32>>),
    Time(Vec<i64>),
    Count(Vec<u64>),
}

/// One side, read.
#[derive(Debug)]
pub struct Source {
    /// What the user wrote (a path or a glob).
    pub label: String,
    pub files: Vec<PathBuf>,
    pub csv: bool,
    /// Every column name of the (first) file, for messages.
    pub names: Vec<String>,
    /// The columns asked for that exist, by the name they were asked by.
    pub columns: Vec<(String, Column)>,
    /// Per row: (index into `files`, 1-based CSV line or Parquet row).
    pub origin: Vec<(u32, u64)>,
}

impl Source {
    pub fn column(&self, name: &str) -> Option<&Column> {
        self.columns.iter().find(|(n, _)| n == name).map(|(_, c)| c)
    }

    pub fn has(&self, name: &str) -> bool {
        self.names.iter().any(|n| n == name)
    }

    pub fn len(&self) -> usize {
        self.origin.len()
    }

    pub fn is_empty(&self) -> bool {
        self.origin.is_empty()
    }

    /// `file:LINE` for a CSV, `file row N` for Parquet.
    pub fn at(&self, row: usize) -> String {
        let (f, pos) = self.origin.get(row).copied().unwrap_or((0, 0));
        let file = self
            .files
            .get(f as usize)
            .map_or(String::new(), |p| p.display().to_string());
        if self.csv {
            format!("{file}:{pos}")
        } else {
            format!("{file} row {pos}")
        }
    }

    /// "CSV" or "Parquet, N files", for the report.
    pub fn kind(&self) -> String {
        match (self.csv, self.files.len()) {
            (true, _) => "CSV".into(),
            (false, 1) => "Parquet".into(),
            (false, n) => format!("Parquet, {n} files"),
        }
    }
}

/// Reads `spec` (an out dir, a Parquet file or glob, a CSV file), keeping the `wanted` columns that
/// exist (name, role).
pub fn load(spec: &str, wanted: &[(String, Role)], interner: &mut Interner) -> Result<Source> {
    let (files, csv) = resolve(spec)?;
    let mut src = Source {
        label: spec.to_string(),
        files: files.clone(),
        csv,
        names: Vec::new(),
        columns: Vec::new(),
        origin: Vec::new(),
    };
    for (i, f) in files.iter().enumerate() {
        if csv {
            read_csv(f, wanted, interner, &mut src)?;
        } else {
            read_parquet(f, i as u32, wanted, interner, &mut src)?;
        }
    }
    Ok(src)
}

fn usage(msg: String) -> Error {
    Error::Usage(msg)
}

/// The files of a side and whether they are CSV.
fn resolve(spec: &str) -> Result<(Vec<PathBuf>, bool)> {
    let path = Path::new(spec);
    let files: Vec<PathBuf> = if path.is_dir() {
        let mut v: Vec<PathBuf> = std::fs::read_dir(path)
            .map_err(|e| usage(format!("{spec}: cannot read the directory: {e}")))?
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| {
                p.file_name()
                    .and_then(|n| n.to_str())
                    .is_some_and(|n| n.starts_with("part-") && n.ends_with(".parquet"))
            })
            .collect();
        v.sort();
        if v.is_empty() {
            return Err(usage(format!(
                "{spec}: no part-*.parquet inside: not an abacus out dir (or a run that wrote no rows)"
            )));
        }
        v
    } else if path.exists() {
        vec![path.to_path_buf()]
    } else if spec.contains(['*', '?', '[']) {
        let mut v: Vec<PathBuf> = glob::glob(spec)
            .map_err(|e| usage(format!("{spec}: not a valid glob pattern: {e}")))?
            .filter_map(|p| p.ok())
            .filter(|p| p.is_file())
            .collect();
        v.sort();
        if v.is_empty() {
            return Err(usage(format!("{spec}: the pattern matches no file")));
        }
        v
    } else {
        return Err(usage(format!("{spec}: no such file or directory")));
    };
    let csv = !is_parquet(&files[0])?;
    for f in &files[1..] {
        if is_parquet(f)? == csv {
            return Err(usage(format!(
                "{spec}: mixes Parquet and CSV files ({} and {})",
                files[0].display(),
                f.display()
            )));
        }
    }
    Ok((files, csv))
}

fn is_parquet(path: &Path) -> Result<bool> {
    let mut magic = [0u8; 4];
    let mut f =
        File::open(path).map_err(|e| usage(format!("{}: cannot open: {e}", path.display())))?;
    let n = f
        .read(&mut magic)
        .map_err(|e| usage(format!("{}: cannot read: {e}", path.display())))?;
    Ok(n == 4 && &magic == b"PAR1")
}

fn read_csv(
    path: &Path,
    wanted: &[(String, Role)],
    interner: &mut Interner,
    src: &mut Source,
) -> Result<()> {
    let file =
        File::open(path).map_err(|e| usage(format!("{}: cannot open: {e}", path.display())))?;
    let mut reader = csv::ReaderBuilder::new()
        .has_headers(true)
        .from_reader(file);
    let headers = reader
        .headers()
        .map_err(|e| usage(format!("{}:1: {e}", path.display())))?
        .clone();
    src.names = headers.iter().map(str::to_string).collect();
    let picked: Vec<(usize, String, Role)> = wanted
        .iter()
        .filter_map(|(n, r)| {
            headers
                .iter()
                .position(|h| h == n)
                .map(|i| (i, n.clone(), *r))
        })
        .collect();
    src.columns = picked
        .iter()
        .map(|(_, n, r)| (n.clone(), empty(*r)))
        .collect();
    let mut rec = csv::StringRecord::new();
    loop {
        let line = reader.position().line();
        match reader.read_record(&mut rec) {
            Ok(true) => {}
            Ok(false) => break,
            Err(e) => return Err(usage(format!("{}:{line}: {e}", path.display()))),
        }
        let line = rec.position().map_or(line, |p| p.line());
        for (k, (i, name, _)) in picked.iter().enumerate() {
            let text = rec.get(*i).unwrap_or("");
            push_text(&mut src.columns[k].1, text, interner)
                .map_err(|e| usage(format!("{}:{line}: column `{name}`: {e}", path.display())))?;
        }
        src.origin.push((0, line));
    }
    Ok(())
}

fn empty(role: Role) -> Column {
    match role {
        Role::Key => Column::Key(Vec::new()),
        Role::Time => Column::Time(Vec::new()),
        Role::Count => Column::Count(Vec::new()),
    }
}

fn push_text(
    col: &mut Column,
    text: &str,
    interner: &mut Interner,
) -> std::result::Result<(), String> {
    match col {
        Column::Key(v) => v.push(interner.intern(text)),
        Column::Time(v) => v.push(parse_time_text(text)?),
        Column::Count(v) => v.push(parse_count_text(text)?),
    }
    Ok(())
}

/// RFC 3339 (a time without a zone is UTC), or a number of unix seconds or milliseconds.
pub fn parse_time_text(text: &str) -> std::result::Result<i64, String> {
    let t = text.trim();
    if let Ok(n) = t.parse::<i64>() {
        return Ok(number_to_ms(n));
    }
    if let Some(ms) = crate::timefmt::parse_rfc3339(t.as_bytes()) {
        return Ok(ms);
    }
    if t.len() >= 19
        && let Some(ms) = crate::timefmt::parse_rfc3339(format!("{t}Z").as_bytes())
    {
        return Ok(ms);
    }
    Err(format!(
        "`{text}` is not a time (RFC 3339 such as 2024-01-01T03:00:00Z, or unix seconds)"
    ))
}

/// Unix seconds, or milliseconds when |n| ≥ 1e11 (the config's `auto` rule).
fn number_to_ms(n: i64) -> i64 {
    if n.unsigned_abs() < 100_000_000_000 {
        n.saturating_mul(1000)
    } else {
        n
    }
}

fn parse_count_text(text: &str) -> std::result::Result<u64, String> {
    let t = text.trim();
    if let Ok(n) = t.parse::<u64>() {
        return Ok(n);
    }
    match t.parse::<f64>() {
        Ok(x) => float_count(x),
        Err(_) => Err(format!("`{text}` is not a count")),
    }
}

/// A count written as a float (`12.0`, or `12.4` from an approximate source: rounded).
fn float_count(x: f64) -> std::result::Result<u64, String> {
    if (0.0..1.8e19).contains(&x) {
        Ok(x.round() as u64)
    } else {
        Err(format!("`{x}` is not a count"))
    }
}

fn read_parquet(
    path: &Path,
    file_idx: u32,
    wanted: &[(String, Role)],
    interner: &mut Interner,
    src: &mut Source,
) -> Result<()> {
    let bad =
        |e: &dyn std::fmt::Display| usage(format!("{}: cannot read Parquet: {e}", path.display()));
    let file =
        File::open(path).map_err(|e| usage(format!("{}: cannot open: {e}", path.display())))?;
    let builder = ParquetRecordBatchReaderBuilder::try_new(file).map_err(|e| bad(&e))?;
    let names: Vec<String> = builder
        .schema()
        .fields()
        .iter()
        .map(|f| f.name().clone())
        .collect();
    if file_idx == 0 {
        src.names = names.clone();
        src.columns = wanted
            .iter()
            .filter(|(n, _)| names.contains(n))
            .map(|(n, r)| (n.clone(), empty(*r)))
            .collect();
    }
    let mut indexes = Vec::new();
    for (n, _) in &src.columns {
        let i = names.iter().position(|x| x == n).ok_or_else(|| {
            usage(format!(
                "{}: no column `{n}`, which {} has",
                path.display(),
                src.files[0].display()
            ))
        })?;
        indexes.push(i);
    }
    let mask = ProjectionMask::roots(builder.parquet_schema(), indexes);
    let reader = builder.with_projection(mask).build().map_err(|e| bad(&e))?;
    let mut row: u64 = 0;
    for batch in reader {
        let batch = batch.map_err(|e| bad(&e))?;
        for (name, col) in src.columns.iter_mut() {
            let arr = batch
                .column_by_name(name)
                .ok_or_else(|| bad(&format!("no column `{name}`")))?;
            push_array(col, arr, interner).map_err(|(i, e)| {
                usage(format!(
                    "{} row {}: column `{name}`: {e}",
                    path.display(),
                    row + i as u64 + 1
                ))
            })?;
        }
        src.origin
            .extend((0..batch.num_rows() as u64).map(|i| (file_idx, row + i + 1)));
        row += batch.num_rows() as u64;
    }
    Ok(())
}

/// A cell of an Arrow array, before it is read in a role.
enum Cell<'a> {
    Null,
    Text(&'a str),
    Int(i64),
    UInt(u64),
    Float(f64),
    /// Already milliseconds (a timestamp column).
    Ms(i64),
}

fn push_array(
    col: &mut Column,
    arr: &ArrayRef,
    interner: &mut Interner,
) -> std::result::Result<(), (usize, String)> {
    for i in 0..arr.len() {
        let cell = cell(arr, i).map_err(|e| (i, e))?;
        match &mut *col {
            Column::Key(v) => v.push(key_cell(cell, interner)),
            Column::Time(v) => v.push(time_cell(cell).map_err(|e| (i, e))?),
            Column::Count(v) => v.push(count_cell(cell).map_err(|e| (i, e))?),
        }
    }
    Ok(())
}

/// A key: text as it is, numbers as their decimal text (a `campaign_id` may be an integer).
fn key_cell(cell: Cell<'_>, interner: &mut Interner) -> Option<u32> {
    match cell {
        Cell::Null => None,
        Cell::Text(s) => interner.intern(s),
        Cell::Int(n) | Cell::Ms(n) => interner.intern(&n.to_string()),
        Cell::UInt(n) => interner.intern(&n.to_string()),
        Cell::Float(x) => interner.intern(&x.to_string()),
    }
}

fn time_cell(cell: Cell<'_>) -> std::result::Result<i64, String> {
    match cell {
        Cell::Null => Err("null".to_string()),
        Cell::Ms(ms) => Ok(ms),
        Cell::Int(n) => Ok(number_to_ms(n)),
        Cell::UInt(n) => Ok(number_to_ms(n.min(i64::MAX as u64) as i64)),
        Cell::Text(s) => parse_time_text(s),
        Cell::Float(x) => Err(format!("`{x}` is not a time (a float)")),
    }
}

fn count_cell(cell: Cell<'_>) -> std::result::Result<u64, String> {
    match cell {
        Cell::Null => Err("null".to_string()),
        Cell::UInt(n) => Ok(n),
        Cell::Int(n) if n >= 0 => Ok(n as u64),
        Cell::Int(n) | Cell::Ms(n) => Err(format!("`{n}` is not a count")),
        Cell::Float(x) => float_count(x),
        Cell::Text(s) => parse_count_text(s),
    }
}

fn cell(arr: &ArrayRef, i: usize) -> std::result::Result<Cell<'_>, String> {
    if arr.is_null(i) {
        return Ok(Cell::Null);
    }
    Ok(match arr.data_type() {
        DataType::Utf8 => Cell::Text(arr.as_string::<i32>().value(i)),
        DataType::LargeUtf8 => Cell::Text(arr.as_string::<i64>().value(i)),
        DataType::Utf8View => Cell::Text(arr.as_string_view().value(i)),
        DataType::Int64 => Cell::Int(arr.as_primitive::<Int64Type>().value(i)),
        DataType::Int32 => Cell::Int(arr.as_primitive::<Int32Type>().value(i) as i64),
        DataType::UInt64 => Cell::UInt(arr.as_primitive::<UInt64Type>().value(i)),
        DataType::UInt32 => Cell::UInt(arr.as_primitive::<UInt32Type>().value(i) as u64),
        DataType::Float64 => Cell::Float(arr.as_primitive::<Float64Type>().value(i)),
        DataType::Float32 => Cell::Float(arr.as_primitive::<Float32Type>().value(i) as f64),
        DataType::Timestamp(unit, _) => Cell::Ms(timestamp_ms(arr, *unit, i)),
        other => return Err(format!("unsupported type {other}")),
    })
}

fn timestamp_ms(arr: &ArrayRef, unit: TimeUnit, i: usize) -> i64 {
    match unit {
        TimeUnit::Second => arr
            .as_primitive::<TimestampSecondType>()
            .value(i)
            .saturating_mul(1000),
        TimeUnit::Millisecond => arr.as_primitive::<TimestampMillisecondType>().value(i),
        TimeUnit::Microsecond => arr
            .as_primitive::<TimestampMicrosecondType>()
            .value(i)
            .div_euclid(1000),
        TimeUnit::Nanosecond => arr
            .as_primitive::<TimestampNanosecondType>()
            .value(i)
            .div_euclid(1_000_000),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn times_as_text_seconds_or_ms() {
        assert_eq!(
            parse_time_text("2024-01-01T03:00:00Z"),
            Ok(1_704_078_000_000)
        );
        assert_eq!(
            parse_time_text("2024-01-01 03:00:00"),
            Ok(1_704_078_000_000)
        );
        assert_eq!(parse_time_text("1704078000"), Ok(1_704_078_000_000));
        assert_eq!(parse_time_text("1704078000000"), Ok(1_704_078_000_000));
        assert!(parse_time_text("yesterday").is_err());
    }

    #[test]
    fn counts_may_be_floats_and_empty_keys_are_null() {
        assert_eq!(parse_count_text("12"), Ok(12));
        assert_eq!(parse_count_text("12.0"), Ok(12));
        assert!(parse_count_text("-1").is_err() && parse_count_text("").is_err());
        let mut i = Interner::default();
        assert_eq!(i.intern(""), None);
        let a = i.intern("a");
        assert_eq!(i.intern("a"), a);
        assert_eq!(i.name(a), Some("a"));
    }
}
