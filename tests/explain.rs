//! `abacus explain`, run as the real binary: the config in plain words and the sample's measured
//! section are snapshotted on the bundled sample (`tests/snapshots/explain_*.txt`; regenerate with
//! `UPDATE_SNAPSHOTS=1`); the estimates of a sample that is the whole input are the engine's own
//! numbers; the traps (a dimension that grows with the input, times out of range, most lines
//! rejected) are warned about; bad configs and inputs fail with the documented exit codes.

mod common;

use std::fs;
use std::path::Path;
use std::process::Command;

use common::{Scratch, bin};

fn explain(dir: &Path, args: &[&str]) -> (Option<i32>, String, String) {
    let o = Command::new(bin())
        .arg("explain")
        .args(args)
        .current_dir(dir)
        .output()
        .unwrap();
    (
        o.status.code(),
        String::from_utf8_lossy(&o.stdout).into_owned(),
        String::from_utf8_lossy(&o.stderr).into_owned(),
    )
}

fn repo() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

#[test]
fn the_config_in_plain_words() {
    let (code, out, err) = explain(repo(), &["--config", "data/abacus.toml"]);
    assert_eq!(code, Some(0), "{err}");
    for f in [
        "`email`: its distinct values are counted",
        "campaign  from `message_id`, looked up in data/campaigns.csv",
        "at most 4",
        "last-24h  sliding 24h every 1h: 24 windows per event",
        "windows per event: 26",
        "pane groups (2",
        "slide 1h: hourly, last-24h",
    ] {
        assert!(out.contains(f), "missing {f:?} in\n{out}");
    }
    common::assert_snapshot("explain_config.txt", &out);
}

#[test]
fn the_bundled_sample_measured_and_estimated() {
    let (code, out, err) = explain(
        repo(),
        &[
            "--config",
            "data/abacus.toml",
            "data/sample.ndjson.zst",
            "--threads",
            "2",
        ],
    );
    assert_eq!(code, Some(0), "{err}");
    // the sample's section is deterministic; the engine's (times, memory) is not
    let start = out.find("\nsample:").expect("a sample section");
    let end = out
        .find("\nengine on the sample")
        .expect("an engine section");
    common::assert_snapshot("explain_sample.txt", &out[start..end]);
    assert!(
        out.contains("sample: the first 100000 lines (the whole input)"),
        "{out}"
    );
    // the whole input was sampled: the rows are those of a real run
    let rows: u64 = common::read_summary(&run_sample())["rows"]
        .as_u64()
        .unwrap();
    assert!(out.contains("measured: the sample is all of it"), "{out}");
    let want = format!("output rows     {} k", (rows as f64 / 1e3).round());
    assert!(out.contains(&want), "missing {want:?} in\n{out}");
    for f in [
        "counting state",
        "peak memory",
        "run time",
        "rows per day of event time",
        "keys per window",
    ] {
        assert!(out.contains(f), "missing {f:?} in\n{out}");
    }
    assert!(!out.contains("warnings:"), "{out}");
}

fn run_sample() -> std::path::PathBuf {
    let out = std::path::PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("explain-sample");
    let _ = fs::remove_dir_all(&out);
    let o = common::run_raw(
        &[repo().join("data/sample.ndjson.zst")],
        &repo().join("data/abacus.toml"),
        &out,
        2,
    );
    assert!(o.status.success());
    out
}

const CONFIG: &str = "[fields]\nuser = \"u\"\ntime = \"t\"\nevent_type = \"e\"\n\n[[dimensions]]\nname = \"ip\"\nfield = \"ip\"\n\n[[windows]]\nname = \"hourly\"\nsize = \"1h\"\n";

#[test]
fn traps_are_warned_about() {
    let s = Scratch::new();
    let cfg = s.write("c.toml", CONFIG);
    // every event from another ip: the dimension grows with the input
    let mut text = String::new();
    for i in 0..4000 {
        text += &format!(
            "{{\"u\":\"u{}\",\"t\":{},\"e\":\"open\",\"ip\":\"10.0.{}.{}\"}}\n",
            i % 97,
            1_714_521_600 + i,
            i / 256,
            i % 256
        );
    }
    s.write("ips.ndjson", &text);
    let (code, out, err) = explain(
        s.dir.path(),
        &["--config", cfg.to_str().unwrap(), "ips.ndjson"],
    );
    assert_eq!(code, Some(0), "{err}");
    assert!(
        out.contains("dimension `ip` has 4000 distinct values")
            && out.contains("grow with the input"),
        "{out}"
    );
    // times in the year 2200 and garbage: out of range, most lines rejected
    let mut text = String::new();
    for i in 0..300 {
        text += &format!("{{\"u\":\"u{i}\",\"t\":7258118400,\"e\":\"open\"}}\n");
    }
    text += "not json\n{\"u\":\"a\",\"t\":1714521600,\"e\":\"open\"}\n";
    s.write("bad.ndjson", &text);
    let (code, out, err) = explain(
        s.dir.path(),
        &["--config", cfg.to_str().unwrap(), "bad.ndjson"],
    );
    assert_eq!(code, Some(0), "{err}");
    assert!(out.contains("time_out_of_range 99.34%"), "{out}");
    assert!(
        out.contains("have a time outside [limits]")
            && out.contains("most lines (99.67%) would be rejected"),
        "{out}"
    );
}

#[test]
fn errors_exit_with_the_documented_codes() {
    let s = Scratch::new();
    let cfg = s.write("c.toml", CONFIG);
    let cfg = cfg.to_str().unwrap();
    // a config error: 2, with file:line:column
    let bad = s.write(
        "bad.toml",
        CONFIG.replace("size = \"1h\"", "size = \"1 hour-ish\""),
    );
    let (code, _, err) = explain(s.dir.path(), &["--config", bad.to_str().unwrap()]);
    assert_eq!(code, Some(2), "{err}");
    assert!(
        err.contains("bad.toml:12:8") && err.contains("`windows[0].size`"),
        "{err}"
    );
    // a missing input: 1, naming it
    let (code, _, err) = explain(s.dir.path(), &["--config", cfg, "nope.ndjson"]);
    assert_eq!(code, Some(1), "{err}");
    assert!(err.contains("nope.ndjson"), "{err}");
    // an empty input: 2
    s.write("empty.ndjson", "");
    let (code, _, err) = explain(s.dir.path(), &["--config", cfg, "empty.ndjson"]);
    assert_eq!(code, Some(2), "{err}");
    assert!(err.contains("no lines to sample"), "{err}");
    // a Parquet file: refused by name
    s.write("x.parquet", b"PAR1xxxx");
    let (code, _, err) = explain(s.dir.path(), &["--config", cfg, "x.parquet"]);
    assert_eq!(code, Some(1), "{err}");
    assert!(err.contains("Parquet"), "{err}");
    // no --config: 2
    let (code, _, err) = explain(s.dir.path(), &[]);
    assert_eq!(code, Some(2), "{err}");
}

/// Standard input can be sampled; with its size unknown nothing is extrapolated.
#[test]
fn standard_input_is_sampled_without_extrapolating() {
    use std::io::Write;
    use std::process::Stdio;
    let mut child = Command::new(bin())
        .args([
            "explain",
            "--config",
            "data/abacus.toml",
            "-",
            "--sample",
            "5000",
        ])
        .current_dir(repo())
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let bytes = fs::read(repo().join("data/sample.ndjson.zst")).unwrap();
    let mut stdin = child.stdin.take().unwrap();
    // explain stops reading after the sample: a broken pipe here is expected
    let _ = stdin.write_all(&bytes);
    drop(stdin);
    let o = child.wait_with_output().unwrap();
    let out = String::from_utf8_lossy(&o.stdout);
    assert_eq!(
        o.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&o.stderr)
    );
    assert!(out.contains("sample: the first 5000 lines"), "{out}");
    assert!(out.contains("its size is not known"), "{out}");
}
