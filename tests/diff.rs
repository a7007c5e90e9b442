//! `abacus diff`, run as the real binary on the bundled sample: two runs at different `--threads`
//! are equal, one changed value in a copy of a Parquet file is reported as exactly that row, a CSV
//! "production export" with its own column names matches through `--map` and `--set`, and every
//! input that cannot be compared exits 2 naming the file, column and line. The report text is
//! snapshotted (`tests/snapshots/diff_*.txt`; regenerate with `UPDATE_SNAPSHOTS=1`).

mod common;

use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::{Arc, OnceLock};

use arrow_array::cast::AsArray;
use arrow_array::types::UInt64Type;
use arrow_array::{Array, ArrayRef, RecordBatch, UInt64Array};
use parquet::arrow::ArrowWriter;
use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;

use common::{bin, part_files, read_rows};

/// The sample counted twice, at `--threads 1` (`a`) and `--threads 2` (`b`), once per test process.
fn sample_runs() -> &'static PathBuf {
    static DIR: OnceLock<PathBuf> = OnceLock::new();
    DIR.get_or_init(|| {
        let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("diff-sample");
        let _ = fs::remove_dir_all(&dir);
        fs::create_dir_all(&dir).unwrap();
        let data = Path::new(env!("CARGO_MANIFEST_DIR")).join("data");
        for (out, threads) in [("a", "1"), ("b", "2")] {
            let o = Command::new(bin())
                .arg("run")
                .arg(data.join("sample.ndjson.zst"))
                .arg("--config")
                .arg(data.join("abacus.toml"))
                .args(["--out", out, "--threads", threads, "-q"])
                .current_dir(&dir)
                .output()
                .unwrap();
            assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
        }
        dir
    })
}

struct Diff {
    code: Option<i32>,
    stdout: String,
    stderr: String,
}

fn diff_in(dir: &Path, args: &[&str]) -> Diff {
    let o = Command::new(bin())
        .arg("diff")
        .args(args)
        .current_dir(dir)
        .output()
        .unwrap();
    Diff {
        code: o.status.code(),
        stdout: String::from_utf8_lossy(&o.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&o.stderr).into_owned(),
    }
}

#[test]
fn two_runs_at_different_threads_are_equal() {
    let dir = sample_runs();
    let d = diff_in(dir, &["a", "b"]);
    assert_eq!(d.code, Some(0), "{}{}", d.stdout, d.stderr);
    assert!(d.stdout.contains("result: EQUAL"), "{}", d.stdout);
    common::assert_snapshot("diff_equal.txt", &d.stdout);
    // a glob of part files reads the same
    let d = diff_in(dir, &["a/part-*.parquet", "b"]);
    assert_eq!(d.code, Some(0), "{}{}", d.stdout, d.stderr);
}

/// Copies `from`'s part files to `to`, adding 1 to `unique_users` of the `row`-th row of the first.
/// Returns that row's (event_type, dimension, value, window, window_start ms, old count).
fn copy_with_one_change(
    from: &Path,
    to: &Path,
    row: usize,
) -> (String, Option<String>, Option<String>, String, i64, u64) {
    fs::create_dir_all(to).unwrap();
    let parts = part_files(from);
    for p in &parts[1..] {
        fs::copy(p, to.join(p.file_name().unwrap())).unwrap();
    }
    let reader = ParquetRecordBatchReaderBuilder::try_new(fs::File::open(&parts[0]).unwrap())
        .unwrap()
        .build()
        .unwrap();
    let batches: Vec<RecordBatch> = reader.map(|b| b.unwrap()).collect();
    let schema = batches[0].schema();
    let out = fs::File::create(to.join(parts[0].file_name().unwrap())).unwrap();
    let mut w = ArrowWriter::try_new(out, schema.clone(), None).unwrap();
    let mut seen = None;
    let mut offset = 0;
    for b in &batches {
        let mut cols: Vec<ArrayRef> = b.columns().to_vec();
        if (offset..offset + b.num_rows()).contains(&row) {
            let i = row - offset;
            let idx = schema.index_of("unique_users").unwrap();
            let mut v = cols[idx].as_primitive::<UInt64Type>().values().to_vec();
            let text = |c: &str| {
                let a = b.column_by_name(c).unwrap();
                (!a.is_null(i)).then(|| a.as_string::<i32>().value(i).to_string())
            };
            let start = b.column_by_name("window_start").unwrap();
            let start = start
                .as_primitive::<arrow_array::types::TimestampMillisecondType>()
                .value(i);
            seen = Some((
                text("event_type").unwrap(),
                text("dimension"),
                text("value"),
                text("window").unwrap(),
                start,
                v[i],
            ));
            v[i] += 1;
            cols[idx] = Arc::new(UInt64Array::from(v));
        }
        w.write(&RecordBatch::try_new(schema.clone(), cols).unwrap())
            .unwrap();
        offset += b.num_rows();
    }
    w.close().unwrap();
    seen.expect("row within the first part file")
}

#[test]
fn one_changed_value_is_reported_as_exactly_that_row() {
    let dir = sample_runs();
    let (et, dim, value, window, start, old) =
        copy_with_one_change(&dir.join("a"), &dir.join("c"), 1234);
    let d = diff_in(dir, &["a", "c", "--out", "diff.parquet"]);
    assert_eq!(d.code, Some(1), "{}{}", d.stdout, d.stderr);
    common::assert_snapshot("diff_one_changed.txt", &d.stdout);
    assert!(
        d.stdout
            .contains("result: NOT EQUAL: 1 different, 0 only in expected, 0 only in actual"),
        "{}",
        d.stdout
    );
    let line = d
        .stdout
        .lines()
        .find(|l| l.contains(&format!(" {old} ")) && l.contains(&format!(" {} ", old + 1)))
        .unwrap_or_else(|| panic!("no line with {old} and {}:\n{}", old + 1, d.stdout));
    assert!(
        line.contains(&et) && line.contains(&window) && line.contains("+1"),
        "{line}"
    );
    if let Some(v) = &value {
        assert!(
            line.contains(v.as_str()) && line.contains(dim.as_deref().unwrap()),
            "{line}"
        );
    }
    // --out holds exactly that row, with both values
    let f = fs::File::open(dir.join("diff.parquet")).unwrap();
    let batches: Vec<RecordBatch> = ParquetRecordBatchReaderBuilder::try_new(f)
        .unwrap()
        .build()
        .unwrap()
        .map(|b| b.unwrap())
        .collect();
    assert_eq!(batches.iter().map(|b| b.num_rows()).sum::<usize>(), 1);
    let b = &batches[0];
    let u = |c: &str| {
        b.column_by_name(c)
            .unwrap()
            .as_primitive::<UInt64Type>()
            .value(0)
    };
    assert_eq!(
        (u("expected_unique_users"), u("actual_unique_users")),
        (old, old + 1)
    );
    assert_eq!(
        b.column_by_name("event_type")
            .unwrap()
            .as_string::<i32>()
            .value(0),
        et
    );
    assert_eq!(
        b.column_by_name("status")
            .unwrap()
            .as_string::<i32>()
            .value(0),
        "different"
    );
    let ts = b.column_by_name("window_start").unwrap();
    assert_eq!(
        ts.as_primitive::<arrow_array::types::TimestampMillisecondType>()
            .value(0),
        start
    );
    // within a tolerance of 1 it is equal again
    let d = diff_in(dir, &["a", "c", "--tolerance", "1"]);
    assert_eq!(d.code, Some(0), "{}{}", d.stdout, d.stderr);
    assert!(d.stdout.contains("1 within the tolerance"), "{}", d.stdout);
}

/// Writes what a production system would export: hourly `email_open` users per campaign, plus the
/// total rows with an empty campaign, as `hour,campaign_id,count` (hour without a zone).
fn production_export(out: &Path, path: &Path, bump: Option<usize>) -> usize {
    let mut text = String::from("hour,campaign_id,count\n");
    let rows: Vec<_> = read_rows(out)
        .into_iter()
        .filter(|r| r.window == "hourly" && r.event_type.as_deref() == Some("email_open"))
        .filter(|r| r.dimension.is_none() || r.dimension.as_deref() == Some("campaign"))
        .collect();
    for (i, r) in rows.iter().enumerate() {
        let hour = chrono_free_time(r.start_ms);
        let n = r.unique_users + u64::from(bump == Some(i)) * 2;
        text += &format!("{hour},{},{n}\n", r.value.as_deref().unwrap_or(""));
    }
    fs::write(path, text).unwrap();
    rows.len()
}

/// `2024-01-01 03:00:00` from ms, via the binary-independent civil calendar.
fn chrono_free_time(ms: i64) -> String {
    let days = ms.div_euclid(86_400_000);
    let secs = ms.rem_euclid(86_400_000) / 1000;
    let (y, m, d) = civil(days);
    format!(
        "{y:04}-{m:02}-{d:02} {:02}:{:02}:{:02}",
        secs / 3600,
        secs / 60 % 60,
        secs % 60
    )
}

fn civil(z: i64) -> (i64, i64, i64) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    (yoe + era * 400 + i64::from(m <= 2), m, d)
}

const MAP: &str = "hour=window_start,campaign_id=value,count=unique_users";
const SET: &str = "event_type=email_open,dimension=campaign,window=hourly";

#[test]
fn a_csv_production_export_matches_through_map_and_set() {
    let dir = sample_runs();
    let n = production_export(&dir.join("a"), &dir.join("export.csv"), None);
    assert!(n > 100, "{n}");
    let d = diff_in(dir, &["export.csv", "a", "--map", MAP, "--set", SET]);
    assert_eq!(d.code, Some(0), "{}{}", d.stdout, d.stderr);
    common::assert_snapshot("diff_csv_export.txt", &d.stdout);
    assert!(
        d.stdout
            .contains(&format!("result: EQUAL: all {n} rows match")),
        "{}",
        d.stdout
    );

    production_export(&dir.join("a"), &dir.join("export2.csv"), Some(5));
    let d = diff_in(dir, &["export2.csv", "a", "--map", MAP, "--set", SET]);
    assert_eq!(d.code, Some(1), "{}{}", d.stdout, d.stderr);
    assert!(d.stdout.contains("1 different"), "{}", d.stdout);
    for tol in ["2", "50%"] {
        let d = diff_in(
            dir,
            &[
                "export2.csv",
                "a",
                "--map",
                MAP,
                "--set",
                SET,
                "--tolerance",
                tol,
            ],
        );
        assert_eq!(
            d.code,
            Some(0),
            "--tolerance {tol}: {}{}",
            d.stdout,
            d.stderr
        );
    }
    let d = diff_in(
        dir,
        &[
            "export2.csv",
            "a",
            "--map",
            MAP,
            "--set",
            SET,
            "--tolerance",
            "1",
        ],
    );
    assert_eq!(d.code, Some(1), "{}{}", d.stdout, d.stderr);
}

#[track_caller]
fn fails_with(d: Diff, fragments: &[&str]) {
    assert_eq!(d.code, Some(2), "{}{}", d.stdout, d.stderr);
    for f in fragments {
        assert!(d.stderr.contains(f), "missing {f:?} in:\n{}", d.stderr);
    }
}

#[test]
fn inputs_that_cannot_be_compared_exit_2_naming_file_column_and_line() {
    let dir = sample_runs();
    let w = |name: &str, text: &str| fs::write(dir.join(name), text).unwrap();
    w(
        "e-ok.csv",
        "hour,campaign_id,count\n2024-01-01 03:00:00,spring_sale_1,5\n",
    );
    // a mapped column that does not exist
    fails_with(
        diff_in(
            dir,
            &[
                "e-ok.csv",
                "a",
                "--map",
                "hr=window_start,count=unique_users",
            ],
        ),
        &["e-ok.csv", "no column `hr`", "hour, campaign_id, count"],
    );
    // a key twice (CSV lines 2 and 4)
    w(
        "e-dup.csv",
        "hour,campaign_id,count\n2024-01-01 03:00:00,c1,5\n2024-01-01 03:00:00,c2,5\n2024-01-01 03:00:00,c1,6\n",
    );
    fails_with(
        diff_in(dir, &["e-dup.csv", "a", "--map", MAP, "--set", SET]),
        &[
            "e-dup.csv",
            "appears twice",
            "e-dup.csv:2",
            "e-dup.csv:4",
            "value=c1",
        ],
    );
    // an unparsable time
    w(
        "e-time.csv",
        "hour,campaign_id,count\n2024-01-01 03:00:00,c1,5\nsoon,c2,5\n",
    );
    fails_with(
        diff_in(dir, &["e-time.csv", "a", "--map", MAP, "--set", SET]),
        &["e-time.csv:3", "column `hour`", "`soon` is not a time"],
    );
    // a bad count
    w(
        "e-count.csv",
        "hour,campaign_id,count\n2024-01-01 03:00:00,c1,many\n",
    );
    fails_with(
        diff_in(dir, &["e-count.csv", "a", "--map", MAP, "--set", SET]),
        &["e-count.csv:2", "column `count`"],
    );
    // bad tolerances
    for bad in ["abc", "-3", "1.5", "150%"] {
        let arg = format!("--tolerance={bad}");
        fails_with(
            diff_in(dir, &["a", "b", &arg]),
            &["--tolerance", &format!("`{bad}`")],
        );
    }
    // empty inputs: a header only, an empty dir, a glob matching nothing, no such file
    w("e-empty.csv", "hour,campaign_id,count\n");
    fails_with(
        diff_in(dir, &["e-empty.csv", "a", "--map", MAP, "--set", SET]),
        &["e-empty.csv", "no rows"],
    );
    fs::create_dir_all(dir.join("empty-dir")).unwrap();
    fails_with(
        diff_in(dir, &["empty-dir", "a"]),
        &["empty-dir", "no part-*.parquet"],
    );
    fails_with(
        diff_in(dir, &["nothing/*.parquet", "a"]),
        &["nothing/*.parquet", "matches no file"],
    );
    fails_with(
        diff_in(dir, &["nope.csv", "a"]),
        &["nope.csv", "no such file"],
    );
    // no count column, a bad --map / --set
    fails_with(
        diff_in(dir, &["e-ok.csv", "a"]),
        &["e-ok.csv", "no column `unique_users`", "--map"],
    );
    fails_with(
        diff_in(dir, &["a", "b", "--map", "x=users"]),
        &["`users` is not an abacus column"],
    );
    fails_with(
        diff_in(dir, &["a", "b", "--set", "window_start=3"]),
        &["only a key column"],
    );
    fails_with(
        diff_in(dir, &["a", "b", "--set", "window"]),
        &["NAME=VALUE"],
    );
}

#[test]
fn a_column_only_one_side_has_is_left_out_and_metric_can_be_set() {
    let dir = sample_runs();
    // an export without the metric column abacus writes: left out unless --set fills it
    w_metric(dir);
    let d = diff_in(dir, &["e-nometric.csv", "a", "--map", MAP, "--set", SET]);
    assert_eq!(d.code, Some(0), "{}{}", d.stdout, d.stderr);
    assert!(
        d.stdout.contains("left out: metric (only in ACTUAL)"),
        "{}",
        d.stdout
    );
    let set = format!("{SET},metric=all");
    let d = diff_in(dir, &["e-nometric.csv", "a", "--map", MAP, "--set", &set]);
    assert_eq!(d.code, Some(0), "{}{}", d.stdout, d.stderr);
    assert!(
        d.stdout.contains("key:      metric, event_type"),
        "{}",
        d.stdout
    );
    let set = format!("{SET},metric=other");
    let d = diff_in(dir, &["e-nometric.csv", "a", "--map", MAP, "--set", &set]);
    assert_eq!(d.code, Some(1), "{}{}", d.stdout, d.stderr);
    // an export that has it: compared as a key
    let d = diff_in(dir, &["e-metric.csv", "a", "--map", MAP, "--set", SET]);
    assert_eq!(d.code, Some(0), "{}{}", d.stdout, d.stderr);
    assert!(
        d.stdout.contains("key:      metric, event_type"),
        "{}",
        d.stdout
    );
}

fn w_metric(dir: &Path) {
    production_export(&dir.join("a"), &dir.join("e-nometric.csv"), None);
    let text = fs::read_to_string(dir.join("e-nometric.csv")).unwrap();
    let mut out = String::new();
    for (i, l) in text.lines().enumerate() {
        out += &if i == 0 {
            format!("metric,{l}\n")
        } else {
            format!("all,{l}\n")
        };
    }
    fs::write(dir.join("e-metric.csv"), out).unwrap();
}

/// The README's walkthrough: the committed production export matches a run of the bundled sample.
#[test]
fn the_committed_production_export_matches_the_sample() {
    let dir = sample_runs();
    let export = Path::new(env!("CARGO_MANIFEST_DIR")).join("data/prod-export.csv");
    let d = diff_in(
        dir,
        &[export.to_str().unwrap(), "a", "--map", MAP, "--set", SET],
    );
    assert_eq!(d.code, Some(0), "{}{}", d.stdout, d.stderr);
    assert!(
        d.stdout.contains("result: EQUAL: all 650 rows match"),
        "{}",
        d.stdout
    );
}

/// `--map` renames the columns of whichever side has them: the export may be either side.
#[test]
fn the_export_may_be_either_side() {
    let dir = sample_runs();
    production_export(&dir.join("a"), &dir.join("export-r.csv"), None);
    let d = diff_in(dir, &["a", "export-r.csv", "--map", MAP, "--set", SET]);
    assert_eq!(d.code, Some(0), "{}{}", d.stdout, d.stderr);
    assert!(
        d.stdout.contains("result: EQUAL: all 650 rows match"),
        "{}",
        d.stdout
    );
}

/// Copies `from`'s part files to `to` without the `metric` column, as abacus wrote before a
/// config could name metrics (and as other tools' Parquet exports look).
pub fn copy_without_metric(from: &Path, to: &Path) {
    fs::create_dir_all(to).unwrap();
    for p in part_files(from) {
        let reader = ParquetRecordBatchReaderBuilder::try_new(fs::File::open(&p).unwrap())
            .unwrap()
            .build()
            .unwrap();
        let mut w: Option<ArrowWriter<fs::File>> = None;
        for b in reader {
            let mut b = b.unwrap();
            let i = b.schema().index_of("metric").unwrap();
            b.remove_column(i);
            let schema = b.schema();
            let out = w.get_or_insert_with(|| {
                ArrowWriter::try_new(
                    fs::File::create(to.join(p.file_name().unwrap())).unwrap(),
                    schema,
                    None,
                )
                .unwrap()
            });
            out.write(&b).unwrap();
        }
        w.unwrap().close().unwrap();
    }
}

#[test]
fn a_metric_column_on_one_parquet_side() {
    let dir = sample_runs();
    copy_without_metric(&dir.join("a"), &dir.join("m"));
    // only one side has it: left out on both
    let d = diff_in(dir, &["m", "b"]);
    assert_eq!(d.code, Some(0), "{}{}", d.stdout, d.stderr);
    assert!(
        d.stdout.contains("left out: metric (only in ACTUAL)"),
        "{}",
        d.stdout
    );
    // --set fills it on the side without; the summary then groups by metric / event type
    let d = diff_in(dir, &["m", "b", "--set", "metric=all"]);
    assert_eq!(d.code, Some(0), "{}{}", d.stdout, d.stderr);
    assert!(
        d.stdout.contains("key:      metric, event_type")
            && d.stdout.contains("metric / event type"),
        "{}",
        d.stdout
    );
    assert!(d.stdout.contains("all / email_open"), "{}", d.stdout);
    // both sides have it: compared
    let d = diff_in(dir, &["b", "a"]);
    assert_eq!(d.code, Some(0), "{}{}", d.stdout, d.stderr);
    assert!(
        d.stdout.contains("key:      metric, event_type"),
        "{}",
        d.stdout
    );
    let d = diff_in(dir, &["m", "b", "--set", "metric=other"]);
    assert_eq!(d.code, Some(1), "{}{}", d.stdout, d.stderr);
}
