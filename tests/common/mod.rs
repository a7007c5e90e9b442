//! Shared helpers for the integration tests: run the `abacus` binary, read its Parquet output into
//! plain sorted rows, read `_summary.json` and the `_late/` and `_rejected/` side files.
//!
//! `naive` holds the deliberately simple reference implementation of docs/SEMANTICS.md used by
//! `tests/reference.rs`, `tests/reference_metrics.rs` and `tests/reference_attribution.rs`;
//! `refcheck` the helpers they share (rendering generated events, a small random config, comparing
//! a run with the reference).
#![allow(dead_code)]

pub mod naive;
pub mod refcheck;

use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use arrow_array::cast::AsArray;
use arrow_array::types::{TimestampMillisecondType, UInt64Type};
use arrow_array::{Array, ArrayRef, RecordBatch};
use arrow_schema::DataType;
use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;

pub const SEC: i64 = 1_000;
pub const MIN: i64 = 60 * SEC;
pub const HOUR: i64 = 60 * MIN;
pub const DAY: i64 = 24 * HOUR;
/// 2024-05-01T00:00:00Z in ms.
pub const T0: i64 = 1_714_521_600_000;

/// splitmix64: seeded, so a failing case can be replayed.
pub struct Rng(pub u64);

impl Rng {
    pub fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
    pub fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
    pub fn range(&mut self, lo: i64, hi: i64) -> i64 {
        lo + self.below((hi - lo) as u64) as i64
    }
    pub fn unit(&mut self) -> f64 {
        (self.next() >> 11) as f64 / (1u64 << 53) as f64
    }
    pub fn chance(&mut self, p: f64) -> bool {
        self.unit() < p
    }
    pub fn pick<'a, T>(&mut self, xs: &'a [T]) -> &'a T {
        &xs[self.below(xs.len() as u64) as usize]
    }
}

/// Every reject code of docs/SEMANTICS.md.
pub const REJECT_CODES: [&str; 10] = [
    "invalid_json",
    "not_an_object",
    "missing_user",
    "missing_time",
    "invalid_time",
    "time_out_of_range",
    "missing_event_type",
    "wrong_type",
    "line_too_long",
    "invalid_utf8",
];

/// The implicit metric of a config without `[[metrics]]` (docs/SEMANTICS.md, "Metrics").
pub const ALL: &str = "all";

/// One output row, in the order the columns are written. `Ord` sorts by key then window.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Row {
    pub metric: String,
    /// `None` for a metric with `by_type = false`.
    pub event_type: Option<String>,
    pub dimension: Option<String>,
    pub value: Option<String>,
    pub window: String,
    pub start_ms: i64,
    pub end_ms: i64,
    pub unique_users: u64,
    pub events: u64,
}

/// A total row (dimension and value NULL), for hand-written expectations.
pub fn total(
    event_type: &str,
    window: &str,
    start_ms: i64,
    end_ms: i64,
    unique_users: u64,
    events: u64,
) -> Row {
    Row {
        metric: ALL.into(),
        event_type: Some(event_type.into()),
        dimension: None,
        value: None,
        window: window.into(),
        start_ms,
        end_ms,
        unique_users,
        events,
    }
}

/// A dimension row, for hand-written expectations.
#[allow(clippy::too_many_arguments)]
pub fn dim(
    event_type: &str,
    dimension: &str,
    value: &str,
    window: &str,
    start_ms: i64,
    end_ms: i64,
    unique_users: u64,
    events: u64,
) -> Row {
    Row {
        metric: ALL.into(),
        event_type: Some(event_type.into()),
        dimension: Some(dimension.into()),
        value: Some(value.into()),
        window: window.into(),
        start_ms,
        end_ms,
        unique_users,
        events,
    }
}

impl Row {
    /// The same row in metric `m`.
    pub fn metric(mut self, m: &str) -> Row {
        self.metric = m.into();
        self
    }

    /// The same row without an event type (a metric with `by_type = false`).
    pub fn untyped(mut self) -> Row {
        self.event_type = None;
        self
    }
}

pub fn sorted(mut rows: Vec<Row>) -> Vec<Row> {
    rows.sort();
    rows
}

/// The counters of `_summary.json` that the contract defines.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Counts {
    pub lines: u64,
    pub counted: u64,
    pub duplicates: u64,
    pub late: u64,
    pub rejected: u64,
}

/// Everything one run produced.
#[derive(Debug, Clone)]
pub struct Output {
    pub out: PathBuf,
    /// All rows of all part files, sorted.
    pub rows: Vec<Row>,
    pub summary: serde_json::Value,
    pub counts: Counts,
    /// The decompressed concatenation of `_late/*.ndjson.zst`, in file-name order.
    pub late: Vec<u8>,
    /// The reason of every record in `_rejected/*.ndjson.zst` (file-name order, then line order),
    /// reduced to the contract's wording by [`reason_code`].
    pub rejected_reasons: Vec<String>,
    pub rejected_records: Vec<serde_json::Value>,
    /// The Arrow schema of every part file.
    pub schemas: Vec<arrow_schema::SchemaRef>,
}

/// The contract's reason (`"wrong type"`) of an engine reason that may add details after a colon
/// (`"wrong type: field `u` is a number"`).
pub fn reason_code(reason: &str) -> &str {
    reason.split_once(':').map_or(reason, |(code, _)| code)
}

pub fn bin() -> &'static str {
    env!("CARGO_BIN_EXE_abacus")
}

/// Runs `abacus run INPUTS --config CONFIG --out OUT --threads N --quiet` and returns the process
/// output; kills it after a minute.
pub fn run_raw(
    inputs: &[PathBuf],
    config: &Path,
    out: &Path,
    threads: usize,
) -> std::process::Output {
    let mut cmd = Command::new(bin());
    cmd.arg("run");
    for i in inputs {
        cmd.arg(i);
    }
    cmd.arg("--config")
        .arg(config)
        .arg("--out")
        .arg(out)
        .arg("--threads")
        .arg(threads.to_string())
        .arg("--quiet");
    cmd.stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut child = cmd.spawn().expect("spawn abacus");
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        match child.try_wait().expect("wait for abacus") {
            Some(_) => break,
            None if Instant::now() > deadline => {
                let _ = child.kill();
                panic!("abacus did not finish within 60 s: {cmd:?}");
            }
            None => std::thread::sleep(Duration::from_millis(5)),
        }
    }
    child.wait_with_output().expect("collect abacus output")
}

/// Runs the binary, asserts exit status 0, and reads everything it wrote.
pub fn run(inputs: &[PathBuf], config: &Path, out: &Path, threads: usize) -> Output {
    let o = run_raw(inputs, config, out, threads);
    assert!(
        o.status.success(),
        "abacus exited with {:?}\nstdout:\n{}\nstderr:\n{}",
        o.status,
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    );
    read_output(out)
}

pub fn read_output(out: &Path) -> Output {
    let rows = read_rows(out);
    let summary = read_summary(out);
    let counts = counts_of(&summary);
    // `rows` and `rows_per_window` agree with the part files
    let rows_key = summary.get("rows").and_then(|v| v.as_u64());
    assert_eq!(
        rows_key,
        Some(rows.len() as u64),
        "_summary.json `rows` vs the rows in the part files: {summary}"
    );
    let mut per_window: std::collections::BTreeMap<String, u64> = Default::default();
    for r in &rows {
        *per_window.entry(r.window.clone()).or_default() += 1;
    }
    let listed: std::collections::BTreeMap<String, u64> = summary
        .get("rows_per_window")
        .and_then(|v| v.as_object())
        .unwrap_or_else(|| panic!("_summary.json has no object `rows_per_window`: {summary}"))
        .iter()
        .map(|(k, v)| {
            (
                k.clone(),
                v.as_u64()
                    .unwrap_or_else(|| panic!("rows_per_window.{k} = {v}")),
            )
        })
        .filter(|(_, n)| *n > 0)
        .collect();
    assert_eq!(
        listed, per_window,
        "_summary.json `rows_per_window` vs the rows in the part files"
    );
    let schemas = part_files(out)
        .iter()
        .map(|p| {
            ParquetRecordBatchReaderBuilder::try_new(fs::File::open(p).unwrap())
                .unwrap()
                .schema()
                .clone()
        })
        .collect();
    let late = read_side(out, "_late");
    let mut rejected_records = Vec::new();
    for line in read_side(out, "_rejected").split(|&b| b == b'\n') {
        if line.is_empty() {
            continue;
        }
        let v: serde_json::Value = serde_json::from_slice(line).unwrap_or_else(|e| {
            panic!(
                "rejected/ record is not JSON ({e}): {}",
                String::from_utf8_lossy(line)
            )
        });
        assert!(v.is_object(), "rejected/ record is not an object: {v}");
        rejected_records.push(v);
    }
    let rejected_reasons = rejected_records
        .iter()
        .map(|v| {
            v.get("reason")
                .and_then(|r| r.as_str())
                .map(|r| reason_code(r).to_string())
                .unwrap_or_else(|| panic!("rejected/ record has no string `reason`: {v}"))
        })
        .collect();
    Output {
        out: out.to_path_buf(),
        rows,
        summary,
        counts,
        late,
        rejected_reasons,
        rejected_records,
        schemas,
    }
}

fn sorted_dir(dir: &Path, keep: impl Fn(&str) -> bool) -> Vec<PathBuf> {
    let Ok(rd) = fs::read_dir(dir) else {
        return Vec::new();
    };
    let mut v: Vec<PathBuf> = rd
        .map(|e| e.unwrap().path())
        .filter(|p| p.is_file() && p.file_name().and_then(|n| n.to_str()).is_some_and(&keep))
        .collect();
    v.sort();
    v
}

/// The part files of an output directory, in name order.
pub fn part_files(out: &Path) -> Vec<PathBuf> {
    sorted_dir(out, |n| n.starts_with("part-") && n.ends_with(".parquet"))
}

/// Decompressed concatenation of `OUT/<sub>/*.ndjson.zst` (empty when the folder is absent).
pub fn read_side(out: &Path, sub: &str) -> Vec<u8> {
    let mut all = Vec::new();
    for f in sorted_dir(&out.join(sub), |n| n.ends_with(".ndjson.zst")) {
        let bytes = fs::read(&f).unwrap();
        let mut d = zstd::stream::decode_all(bytes.as_slice())
            .unwrap_or_else(|e| panic!("{}: not zstd: {e}", f.display()));
        all.append(&mut d);
    }
    all
}

pub fn read_summary(out: &Path) -> serde_json::Value {
    let p = out.join("_summary.json");
    let text = fs::read_to_string(&p).unwrap_or_else(|e| panic!("{}: {e}", p.display()));
    serde_json::from_str(&text)
        .unwrap_or_else(|e| panic!("{}: not JSON ({e}): {text}", p.display()))
}

/// The buckets of `OUT/_summary.json`; asserts `lines = counted + duplicates + late + rejected`.
pub fn balanced_counts(out: &Path) -> Counts {
    let c = counts_of(&read_summary(out));
    assert_eq!(
        c.lines,
        c.counted + c.duplicates + c.late + c.rejected,
        "lines = counted + duplicates + late + rejected does not hold: {c:?}"
    );
    c
}

pub fn counts_of(summary: &serde_json::Value) -> Counts {
    let get = |k: &str| {
        summary
            .get(k)
            .and_then(|v| v.as_u64())
            .unwrap_or_else(|| panic!("_summary.json has no unsigned integer `{k}`: {summary}"))
    };
    Counts {
        lines: get("lines"),
        counted: get("counted"),
        duplicates: get("duplicates"),
        late: get("late"),
        rejected: get("rejected"),
    }
}

fn string_column(batch: &RecordBatch, name: &str) -> Vec<Option<String>> {
    let col: &ArrayRef = batch
        .column_by_name(name)
        .unwrap_or_else(|| panic!("no column `{name}`"));
    let get = |i: usize| -> Option<String> {
        if col.is_null(i) {
            return None;
        }
        Some(match col.data_type() {
            DataType::Utf8 => col.as_string::<i32>().value(i).to_string(),
            DataType::LargeUtf8 => col.as_string::<i64>().value(i).to_string(),
            other => panic!("column `{name}` has type {other:?}, expected Utf8"),
        })
    };
    (0..col.len()).map(get).collect()
}

fn ts_column(batch: &RecordBatch, name: &str) -> Vec<i64> {
    let col = batch
        .column_by_name(name)
        .unwrap_or_else(|| panic!("no column `{name}`"));
    assert!(
        matches!(
            col.data_type(),
            DataType::Timestamp(arrow_schema::TimeUnit::Millisecond, _)
        ),
        "column `{name}` has type {:?}",
        col.data_type()
    );
    assert_eq!(col.null_count(), 0, "column `{name}` has nulls");
    col.as_primitive::<TimestampMillisecondType>()
        .values()
        .to_vec()
}

fn u64_column(batch: &RecordBatch, name: &str) -> Vec<u64> {
    let col = batch
        .column_by_name(name)
        .unwrap_or_else(|| panic!("no column `{name}`"));
    assert_eq!(col.data_type(), &DataType::UInt64, "column `{name}`");
    assert_eq!(col.null_count(), 0, "column `{name}` has nulls");
    col.as_primitive::<UInt64Type>().values().to_vec()
}

/// All rows of all `part-*.parquet` files, sorted.
pub fn read_rows(out: &Path) -> Vec<Row> {
    let mut rows = read_rows_in_order(out);
    rows.sort();
    rows
}

/// Every row of the part files in file order (part file by part file, row by row).
pub fn read_rows_in_order(out: &Path) -> Vec<Row> {
    let mut rows = Vec::new();
    for f in part_files(out) {
        let file = fs::File::open(&f).unwrap();
        let reader = ParquetRecordBatchReaderBuilder::try_new(file)
            .unwrap_or_else(|e| panic!("{}: {e}", f.display()))
            .build()
            .unwrap();
        for batch in reader {
            let batch = batch.unwrap();
            let metric = string_column(&batch, "metric");
            let et = string_column(&batch, "event_type");
            let dimension = string_column(&batch, "dimension");
            let value = string_column(&batch, "value");
            let window = string_column(&batch, "window");
            let start = ts_column(&batch, "window_start");
            let end = ts_column(&batch, "window_end");
            let uu = u64_column(&batch, "unique_users");
            let ev = u64_column(&batch, "events");
            for i in 0..batch.num_rows() {
                rows.push(Row {
                    metric: metric[i].clone().expect("metric is null"),
                    event_type: et[i].clone(),
                    dimension: dimension[i].clone(),
                    value: value[i].clone(),
                    window: window[i].clone().expect("window is null"),
                    start_ms: start[i],
                    end_ms: end[i],
                    unique_users: uu[i],
                    events: ev[i],
                });
            }
        }
    }
    rows
}

/// Asserts two row sets are equal, printing a readable diff (first differences) when they are not.
#[track_caller]
pub fn assert_rows_eq(actual: &[Row], expected: &[Row], what: &str) {
    if actual == expected {
        return;
    }
    use std::collections::BTreeSet;
    let a: BTreeSet<&Row> = actual.iter().collect();
    let e: BTreeSet<&Row> = expected.iter().collect();
    let missing: Vec<&&Row> = e.difference(&a).take(15).collect();
    let extra: Vec<&&Row> = a.difference(&e).take(15).collect();
    let mut msg = format!(
        "{what}: rows differ: {} actual vs {} expected ({} missing, {} unexpected)\n",
        actual.len(),
        expected.len(),
        e.difference(&a).count(),
        a.difference(&e).count()
    );
    if actual.len() < 40 && expected.len() < 40 {
        msg += &format!(
            "actual:\n{}\nexpected:\n{}\n",
            fmt_rows(actual),
            fmt_rows(expected)
        );
    } else {
        msg += "first missing:\n";
        for r in missing {
            msg += &format!("  {r:?}\n");
        }
        msg += "first unexpected:\n";
        for r in extra {
            msg += &format!("  {r:?}\n");
        }
    }
    if a.len() != actual.len() {
        msg += "(the actual rows contain the same (key, window) more than once)\n";
    }
    panic!("{msg}");
}

pub fn fmt_rows(rows: &[Row]) -> String {
    rows.iter()
        .map(|r| format!("  {r:?}"))
        .collect::<Vec<_>>()
        .join("\n")
}

/// A scratch directory with a config, inputs and an output folder.
pub struct Scratch {
    pub dir: tempfile::TempDir,
    n_out: std::cell::Cell<usize>,
}

impl Scratch {
    pub fn new() -> Scratch {
        Scratch {
            dir: tempfile::tempdir().unwrap(),
            n_out: std::cell::Cell::new(0),
        }
    }

    pub fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    pub fn write(&self, name: &str, bytes: impl AsRef<[u8]>) -> PathBuf {
        let p = self.path(name);
        if let Some(parent) = p.parent() {
            fs::create_dir_all(parent).unwrap();
        }
        fs::write(&p, bytes).unwrap();
        p
    }

    pub fn write_zst(&self, name: &str, bytes: impl AsRef<[u8]>) -> PathBuf {
        let z = zstd::stream::encode_all(bytes.as_ref(), 3).unwrap();
        self.write(name, z)
    }

    /// A fresh, not yet existing output folder.
    pub fn fresh_out(&self) -> PathBuf {
        let n = self.n_out.get();
        self.n_out.set(n + 1);
        self.path(&format!("out-{n}"))
    }

    pub fn run(&self, inputs: &[PathBuf], config: &Path, threads: usize) -> Output {
        run(inputs, config, &self.fresh_out(), threads)
    }
}

/// Runs one small case (config text, one input file) with `--threads 1` and `--threads 3`, asserts
/// both runs wrote the same rows, counters and late lines, and returns the first.
pub fn run_case(config: &str, input: &[u8]) -> Output {
    run_case_with(config, input, &[])
}

/// Like [`run_case`], with extra files (e.g. lookup CSVs) written next to the config first.
pub fn run_case_with(config: &str, input: &[u8], extra: &[(&str, &str)]) -> Output {
    let s = Scratch::new();
    for (name, text) in extra {
        s.write(name, text);
    }
    let cfg = s.write("config.toml", config);
    let inp = s.write("events.ndjson", input);
    let a = s.run(std::slice::from_ref(&inp), &cfg, 1);
    let b = s.run(std::slice::from_ref(&inp), &cfg, 3);
    assert_rows_eq(&b.rows, &a.rows, "--threads 3 vs --threads 1");
    assert_eq!(b.counts, a.counts, "--threads 3 vs --threads 1: counters");
    assert_eq!(b.late, a.late, "--threads 3 vs --threads 1: late lines");
    // keep the scratch folder alive only as long as needed: everything is read into memory
    a
}

/// Writes a config and input, runs once, and returns the raw process output (for error cases).
pub fn run_case_raw(
    config: &str,
    input: &[u8],
    extra: &[(&str, &str)],
) -> (std::process::Output, Scratch) {
    let s = Scratch::new();
    for (name, text) in extra {
        s.write(name, text);
    }
    let cfg = s.write("config.toml", config);
    let inp = s.write("events.ndjson", input);
    let out = s.fresh_out();
    let o = run_raw(&[inp], &cfg, &out, 1);
    (o, s)
}

/// Compares `text` with `tests/snapshots/FILE`; with `UPDATE_SNAPSHOTS=1` set, writes it instead.
#[track_caller]
pub fn assert_snapshot(file: &str, text: &str) {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/snapshots")
        .join(file);
    if std::env::var_os("UPDATE_SNAPSHOTS").is_some() {
        fs::write(&path, text).unwrap();
        return;
    }
    let expected = fs::read_to_string(&path).unwrap_or_else(|_| {
        panic!(
            "missing snapshot {}; run with UPDATE_SNAPSHOTS=1",
            path.display()
        )
    });
    assert_eq!(
        text, expected,
        "{file} changed; if on purpose, run with UPDATE_SNAPSHOTS=1"
    );
}

/// `lines` as bytes: each string plus `\n`.
pub fn ndjson(lines: &[&str]) -> Vec<u8> {
    let mut v = Vec::new();
    for l in lines {
        v.extend_from_slice(l.as_bytes());
        v.push(b'\n');
    }
    v
}
