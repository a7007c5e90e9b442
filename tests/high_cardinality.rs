//! High-cardinality shapes (issue "High cardinality"): a month of events and inputs with as many
//! keys as lines. The rows must be identical — values and order, part file by part file — for
//! 1, 2 and 4 threads, and the end-of-input firing, cut into steps to bound its memory, must
//! give the rows in the order one firing of everything would: spec by spec (config order), then
//! window by window.

mod common;

use std::path::PathBuf;
use std::process::Command;

use common::{Scratch, bin, read_rows_in_order, read_summary, run};

/// `abacus generate` into the scratch dir; returns the input path.
fn generate(s: &Scratch, name: &str, args: &[&str]) -> PathBuf {
    let input = s.path(name);
    let o = Command::new(bin())
        .arg("generate")
        .args(args)
        .arg("--out")
        .arg(&input)
        .arg("--lookup")
        .arg(s.path("campaigns.csv"))
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    input
}

/// The bundled config with `lateness` and `extra` (filters, metrics) appended.
fn config(s: &Scratch, lateness: &str, extra: &str) -> PathBuf {
    let text = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/data/abacus.toml"))
        .unwrap()
        .replace(
            "allowed_lateness = \"6h\"",
            &format!("allowed_lateness = \"{lateness}\""),
        );
    s.write("abacus.toml", text + extra)
}

const METRICS: &str = r#"
[[filters]]
name = "opened"
where = [{ field = "type", eq = "email_open" }]

[[filters]]
name = "carts"
where = [{ field = "type", in = ["add_to_cart", "order_placed"] }]

[[metrics]]
name = "all"

[[metrics]]
name = "carts2"
filter = "carts"
min_count = 2
windows = ["daily", "last-24h"]

[[metrics]]
name = "cart_after_open"
after = "opened"
filter = "carts"
within = "2d"
dimensions = ["campaign"]
windows = ["daily"]
"#;

#[track_caller]
fn same_at_every_thread_count(input: &[PathBuf], cfg: &std::path::Path, s: &Scratch) -> usize {
    let mut first: Option<(Vec<common::Row>, serde_json::Value)> = None;
    for threads in [1, 2, 4] {
        let out = s.path(&format!("out-{threads}"));
        let _ = std::fs::remove_dir_all(&out);
        run(input, cfg, &out, threads);
        let rows = read_rows_in_order(&out);
        let mut summary = read_summary(&out);
        for volatile in [
            "threads",
            "elapsed_s",
            "stage_s",
            "events_per_s",
            "peak_state_bytes",
            "counting_state_bytes",
            "input_bytes_per_s",
            "checkpoints",
            "run_id",
            "started_at",
        ] {
            summary.as_object_mut().unwrap().remove(volatile);
        }
        match &first {
            None => first = Some((rows, summary)),
            Some((r1, s1)) => {
                assert_eq!(r1.len(), rows.len(), "row count at {threads} threads");
                let at = r1.iter().zip(&rows).position(|(a, b)| a != b);
                assert!(at.is_none(), "row {at:?} differs at {threads} threads");
                for key in ["lines", "counted", "duplicates", "late", "rejected", "rows"] {
                    assert_eq!(s1[key], summary[key], "{key} at {threads} threads");
                }
            }
        }
    }
    first.map_or(0, |f| f.0.len())
}

#[test]
fn a_month_of_events_gives_identical_rows_in_order_at_1_2_and_4_threads() {
    let s = Scratch::new();
    // ~29 days of event time, few events per key and window, several rows per event.
    let input = generate(
        &s,
        "month.ndjson.zst",
        &[
            "--events", "120000", "--rate", "0.048", "--users", "6000", "--seed", "3",
        ],
    );
    let cfg = config(&s, "6h", METRICS);
    let rows = same_at_every_thread_count(&[input], &cfg, &s);
    assert!(
        rows > 200_000,
        "the month must give several rows per event: {rows}"
    );
}

/// As many dimension values as lines, spread over two days.
fn distinct_values(s: &Scratch, lines: usize) -> PathBuf {
    let t0 = 1_714_521_600_000i64;
    let mut text = String::new();
    for i in 0..lines {
        text.push_str(&format!(
            "{{\"u\":\"user{}\",\"t\":{},\"e\":\"view\",\"d\":\"value-{i}\"}}\n",
            (i * 7919) % 3000,
            t0 + (i as i64) * 172_800_000 / lines as i64
        ));
    }
    s.write("distinct.ndjson", text)
}

fn distinct_config(s: &Scratch, lateness: &str) -> PathBuf {
    s.write(
        "distinct.toml",
        format!(
            "[fields]\nuser = \"u\"\ntime = \"t\"\nevent_type = \"e\"\n\n[watermark]\nallowed_lateness = \"{lateness}\"\n\n[[dimensions]]\nname = \"d\"\nfield = \"d\"\n\n[[windows]]\nname = \"hourly\"\nsize = \"1h\"\n\n[[windows]]\nname = \"last-24h\"\nsize = \"24h\"\nslide = \"1h\"\n\n[[windows]]\nname = \"daily\"\nsize = \"1d\"\n"
        ),
    )
}

#[test]
fn one_key_per_line_gives_identical_rows_in_order_at_1_2_and_4_threads() {
    let s = Scratch::new();
    let input = distinct_values(&s, 30_000);
    for lateness in ["2h", "unbounded"] {
        let cfg = distinct_config(&s, lateness);
        let rows = same_at_every_thread_count(std::slice::from_ref(&input), &cfg, &s);
        // Each line: its own key in 1 hourly, 24 sliding and 1 daily window, plus the totals.
        assert!(rows > 26 * 30_000, "{lateness}: {rows}");
    }
}

#[test]
fn the_stepped_end_of_input_gives_rows_spec_by_spec_then_window_by_window() {
    // With unbounded lateness every row comes out at the end of input, in as many steps as it
    // takes: the order must still be that of one firing — spec in config order, then window start.
    let s = Scratch::new();
    let input = distinct_values(&s, 20_000);
    let cfg = distinct_config(&s, "unbounded");
    let out = s.path("out");
    run(&[input], &cfg, &out, 2);
    let rows = read_rows_in_order(&out);
    let spec = |w: &str| ["hourly", "last-24h", "daily"].iter().position(|x| *x == w);
    let order: Vec<(Option<usize>, i64)> =
        rows.iter().map(|r| (spec(&r.window), r.start_ms)).collect();
    assert!(order.iter().all(|o| o.0.is_some()));
    let first_out_of_order = order.windows(2).position(|w| w[0] > w[1]);
    assert_eq!(first_out_of_order, None, "rows out of (spec, window) order");
    // The steps are real: the sliding spec alone spans more windows than one step.
    let sliding: std::collections::BTreeSet<i64> = rows
        .iter()
        .filter(|r| r.window == "last-24h")
        .map(|r| r.start_ms)
        .collect();
    assert!(sliding.len() > 64, "{} sliding windows", sliding.len());
}
