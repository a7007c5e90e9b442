//! `abacus plot`, run as the real binary on the bundled sample: the SVG is read back — its
//! polylines mapped through the data-to-pixel mapping the chart records in `<metadata>` — and the
//! plotted points must be the rows' window starts and unique users (to within a pixel); PNG output
//! decodes; selections that match nothing exit 2 saying what there is. The default chart's SVG and
//! message are snapshotted (`tests/snapshots/plot_*`; regenerate with `UPDATE_SNAPSHOTS=1`).

mod common;

use std::collections::BTreeMap;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;

use std::sync::Arc;

use arrow_array::{ArrayRef, RecordBatch};
use parquet::arrow::ArrowWriter;
use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;

use common::{Row, bin, part_files, read_rows};

fn sample_run() -> &'static PathBuf {
    static DIR: OnceLock<PathBuf> = OnceLock::new();
    DIR.get_or_init(|| {
        let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("plot-sample");
        let _ = fs::remove_dir_all(&dir);
        fs::create_dir_all(&dir).unwrap();
        let data = Path::new(env!("CARGO_MANIFEST_DIR")).join("data");
        let o = Command::new(bin())
            .arg("run")
            .arg(data.join("sample.ndjson.zst"))
            .arg("--config")
            .arg(data.join("abacus.toml"))
            .args(["--out", "out", "-q"])
            .current_dir(&dir)
            .output()
            .unwrap();
        assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
        dir
    })
}

fn plot(args: &[&str]) -> (Option<i32>, String) {
    let o = Command::new(bin())
        .arg("plot")
        .args(args)
        .current_dir(sample_run())
        .output()
        .unwrap();
    (
        o.status.code(),
        String::from_utf8_lossy(&o.stderr).into_owned(),
    )
}

/// The mapping and the series polylines of a chart written by abacus.
struct Svg {
    meta: BTreeMap<String, f64>,
    lines: Vec<Vec<(f64, f64)>>,
}

fn read_svg(path: &Path) -> Svg {
    let text = fs::read_to_string(path).unwrap();
    let meta_text = text
        .split("<metadata id=\"abacus-plot\">")
        .nth(1)
        .and_then(|t| t.split("</metadata>").next())
        .expect("metadata");
    let meta: BTreeMap<String, f64> = meta_text
        .split_whitespace()
        .map(|kv| {
            let (k, v) = kv.split_once('=').unwrap();
            (k.to_string(), v.parse().unwrap())
        })
        .collect();
    let lines = text
        .split("<polyline")
        .skip(1)
        // the series are drawn 2 px wide (axes 1 px), before the legend's samples
        .filter(|p| p.split("/>").next().unwrap().contains("stroke-width=\"2\""))
        .map(|p| {
            let pts = p
                .split("points=\"")
                .nth(1)
                .unwrap()
                .split('"')
                .next()
                .unwrap();
            pts.split_whitespace()
                .map(|xy| {
                    let (x, y) = xy.split_once(',').unwrap();
                    (x.parse().unwrap(), y.parse().unwrap())
                })
                .collect()
        })
        .collect();
    Svg { meta, lines }
}

impl Svg {
    /// A pixel back to (ms, users), and the size of one pixel in each unit.
    #[allow(clippy::type_complexity)]
    fn unmap(&self, (px, py): (f64, f64)) -> ((f64, f64), (f64, f64)) {
        let m = |k: &str| self.meta[k];
        let ms_per_px = (m("x1") - m("x0")) / (m("px1") - m("px0"));
        let users_per_px = (m("y1") - m("y0")) / (m("py1") - m("py0"));
        let t = m("x0") + (px - m("px0")) * ms_per_px;
        let u = m("y0") + (py - m("py0")) * users_per_px;
        ((t, u), (ms_per_px.abs(), users_per_px.abs()))
    }

    /// Asserts the `i`-th polyline plots `rows`: a point at each row's window start with its
    /// unique users, in time order, and 0 at every other point (windows without a row).
    #[track_caller]
    fn assert_line(&self, i: usize, rows: &[&Row]) {
        let line = &self.lines[i];
        assert!(line.len() >= rows.len(), "points of line {i}");
        let mut pending = rows.iter().peekable();
        let mut last_t = f64::MIN;
        for p in line {
            let ((t, u), (dt, du)) = self.unmap(*p);
            assert!(t > last_t, "line {i}: x not increasing at {t}");
            last_t = t;
            match pending.peek() {
                Some(r) if (t - r.start_ms as f64).abs() <= dt => {
                    assert!(
                        (u - r.unique_users as f64).abs() <= du,
                        "line {i}: y {u} vs {} ({r:?})",
                        r.unique_users
                    );
                    pending.next();
                }
                _ => assert!(
                    u.abs() <= du,
                    "line {i}: a point without a row at {t} is {u}, not 0"
                ),
            }
        }
        assert!(
            pending.peek().is_none(),
            "line {i}: rows not plotted: {:?}",
            pending.collect::<Vec<_>>()
        );
    }
}

fn by_start<'a>(rows: impl Iterator<Item = &'a Row>) -> Vec<&'a Row> {
    let mut v: Vec<&Row> = rows.collect();
    v.sort_by_key(|r| r.start_ms);
    v
}

#[test]
fn the_default_chart_plots_the_busiest_event_types_totals_in_the_first_window() {
    let dir = sample_run();
    let rows = read_rows(&dir.join("out"));
    // the first window spec of data/abacus.toml; the event type with the most events there
    let mut events: BTreeMap<&str, u64> = BTreeMap::new();
    for r in rows
        .iter()
        .filter(|r| r.window == "hourly" && r.dimension.is_none())
    {
        *events
            .entry(r.event_type.as_deref().unwrap_or(""))
            .or_default() += r.events;
    }
    let busiest = events
        .iter()
        .max_by_key(|(_, n)| **n)
        .map(|(e, _)| *e)
        .unwrap();
    let (code, msg) = plot(&["out", "-o", "default.svg"]);
    assert_eq!(code, Some(0), "{msg}");
    assert!(
        msg.contains(&format!(
            "Unique users: metric all, {busiest}, hourly windows (all users)"
        )),
        "{msg}"
    );
    let svg = read_svg(&dir.join("default.svg"));
    assert_eq!(svg.meta["series"], 1.0);
    let want = by_start(rows.iter().filter(|r| {
        r.window == "hourly" && r.event_type.as_deref() == Some(busiest) && r.dimension.is_none()
    }));
    svg.assert_line(0, &want);
    let text = fs::read_to_string(dir.join("default.svg")).unwrap();
    assert!(text.contains("window start (UTC)") && text.contains("unique users"));
    common::assert_snapshot("plot_default.svg", &text);
    common::assert_snapshot("plot_default_message.txt", &msg);
}

#[test]
fn top_values_of_a_dimension_one_line_each_with_a_legend() {
    let dir = sample_run();
    let rows = read_rows(&dir.join("out"));
    let of = |r: &&Row| {
        r.window == "daily"
            && r.event_type.as_deref() == Some("email_open")
            && r.dimension.as_deref() == Some("campaign")
    };
    let mut users: BTreeMap<&str, u64> = BTreeMap::new();
    for r in rows.iter().filter(of) {
        *users.entry(r.value.as_deref().unwrap()).or_default() += r.unique_users;
    }
    let mut top: Vec<(&str, u64)> = users.into_iter().collect();
    top.sort_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(b.0)));
    let args = [
        "out",
        "--event-type",
        "email_open",
        "--window",
        "daily",
        "--dimension",
        "campaign",
        "--top",
        "3",
        "-o",
        "top.svg",
    ];
    let (code, msg) = plot(&args);
    assert_eq!(code, Some(0), "{msg}");
    let svg = read_svg(&dir.join("top.svg"));
    assert_eq!(svg.meta["series"], 3.0);
    let text = fs::read_to_string(dir.join("top.svg")).unwrap();
    for (i, (value, _)) in top.iter().take(3).enumerate() {
        svg.assert_line(
            i,
            &by_start(
                rows.iter()
                    .filter(of)
                    .filter(|r| r.value.as_deref() == Some(value)),
            ),
        );
        assert!(text.contains(value), "legend lacks {value}");
    }
    // one value
    let v = top[1].0;
    let (code, msg) = plot(&[
        "out",
        "--event-type",
        "email_open",
        "--dimension",
        "campaign",
        "--value",
        v,
        "-o",
        "one.svg",
    ]);
    assert_eq!(code, Some(0), "{msg}");
    assert!(msg.contains(&format!("campaign = {v}")), "{msg}");
    let svg = read_svg(&dir.join("one.svg"));
    let hourly = |r: &&Row| {
        r.window == "hourly"
            && r.event_type.as_deref() == Some("email_open")
            && r.value.as_deref() == Some(v)
    };
    svg.assert_line(0, &by_start(rows.iter().filter(hourly)));
}

#[test]
fn png_output_decodes() {
    let dir = sample_run();
    let (code, msg) = plot(&[
        "out",
        "-o",
        "chart.png",
        "--width",
        "640",
        "--height",
        "320",
    ]);
    assert_eq!(code, Some(0), "{msg}");
    let decoder = png::Decoder::new(fs::File::open(dir.join("chart.png")).unwrap());
    let reader = decoder.read_info().unwrap();
    assert_eq!((reader.info().width, reader.info().height), (640, 320));
}

#[test]
fn selections_that_match_nothing_exit_2_and_say_what_there_is() {
    let cases: [(&[&str], &[&str]); 7] = [
        (
            &["out", "--event-type", "nope"],
            &["no rows with event_type `nope`", "email_open"],
        ),
        (
            &["out", "--window", "weekly"],
            &["no rows with window `weekly`", "hourly", "daily"],
        ),
        (
            &["out", "--dimension", "colour"],
            &["no rows with dimension `colour`", "campaign"],
        ),
        (
            &["out", "--dimension", "campaign", "--value", "nope"],
            &["campaign = `nope`"],
        ),
        (
            &["out", "--metric", "m"],
            &["no rows with metric `m`; there are: all"],
        ),
        (
            &["out", "-o", "chart.gif"],
            &["chart.gif", ".svg or a .png"],
        ),
        (&["no-such-dir"], &["no-such-dir"]),
    ];
    for (args, frags) in cases {
        let (code, msg) = plot(args);
        assert_eq!(code, Some(2), "{args:?}: {msg}");
        for f in frags {
            assert!(msg.contains(f), "{args:?}: missing {f:?} in {msg}");
        }
    }
    let (code, msg) = plot(&["out", "--value", "x"]);
    assert_eq!(code, Some(2), "{msg}");
    assert!(msg.contains("--dimension"), "{msg}");
}

/// Copies `from`'s part files to `to` with every row's `metric` column set to `metric`, as a
/// config naming its one metric so writes.
fn copy_with_metric(from: &Path, to: &Path, metric: &str) {
    fs::create_dir_all(to).unwrap();
    for p in part_files(from) {
        let reader = ParquetRecordBatchReaderBuilder::try_new(fs::File::open(&p).unwrap())
            .unwrap()
            .build()
            .unwrap();
        let mut w: Option<ArrowWriter<fs::File>> = None;
        for b in reader {
            let b = b.unwrap();
            let m: ArrayRef = Arc::new(arrow_array::StringArray::from(vec![metric; b.num_rows()]));
            let schema = b.schema();
            let i = schema.index_of("metric").unwrap();
            let mut cols = b.columns().to_vec();
            cols[i] = m;
            let batch = RecordBatch::try_new(schema.clone(), cols).unwrap();
            let out = w.get_or_insert_with(|| {
                ArrowWriter::try_new(
                    fs::File::create(to.join(p.file_name().unwrap())).unwrap(),
                    schema,
                    None,
                )
                .unwrap()
            });
            out.write(&batch).unwrap();
        }
        w.unwrap().close().unwrap();
    }
}

#[test]
fn a_metric_column_selects_with_metric() {
    let dir = sample_run();
    copy_with_metric(&dir.join("out"), &dir.join("with-metric"), "users");
    let (code, msg) = plot(&["with-metric", "-o", "metric.svg"]);
    assert_eq!(code, Some(0), "{msg}");
    assert!(msg.contains("Unique users: metric users, "), "{msg}");
    let (code, msg) = plot(&["with-metric", "--metric", "users", "-o", "metric.svg"]);
    assert_eq!(code, Some(0), "{msg}");
    let (code, msg) = plot(&["with-metric", "--metric", "clicks", "-o", "metric.svg"]);
    assert_eq!(code, Some(2), "{msg}");
    assert!(
        msg.contains("no rows with metric `clicks`; there are: users"),
        "{msg}"
    );
}
