//! Kill it anywhere, resume, get exactly the same results.
//!
//! Every test compares against an uninterrupted run of the same binary on the same input: the rows of
//! all Parquet parts (sorted), the summary's counters and the late side output must be identical.

mod common;

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use common::{Rng, read_rows as rows};

const BIN: &str = env!("CARGO_BIN_EXE_abacus");

struct Fixture {
    _dir: tempfile::TempDir,
    root: PathBuf,
    input: PathBuf,
    config: PathBuf,
}

/// A generated workload (several thousand lines, small batches so there are many batch boundaries).
fn fixture(events: u64) -> Fixture {
    fixture_with(events, "")
}

/// Metrics with thresholds over the generated carts and orders (their nested `item`), beside the
/// plain metric: their per-user window counters must survive a kill too.
const THRESHOLD_METRICS: &str = r#"
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
name = "units3"
filter = "carts"
min_sum = { field = "item.quantity", value = 3 }
dimensions = ["provider"]
by_type = false
"#;

/// Attribution metrics (carts and orders after an email open or click), beside the plain metric:
/// their per-user journeys must survive a kill too, and their anchor-keyed windows fire late.
const ATTRIBUTION_METRICS: &str = r#"
[[filters]]
name = "touches"
where = [{ field = "type", in = ["email_open", "email_click"] }]

[[filters]]
name = "carts"
where = [{ field = "type", in = ["add_to_cart", "order_placed"] }]

[[metrics]]
name = "all"

[[metrics]]
name = "cart_after_touch"
after = "touches"
filter = "carts"
within = "2h"
dimensions = ["campaign"]
windows = ["hourly", "last-24h"]

[[metrics]]
name = "cart_after_touch_any"
after = "touches"
filter = "carts"
within = "1d"
attribution = "any_touch"
window_on = "conversion"
min_count = 2
by_type = false
"#;

/// [`fixture`] with `extra` appended to the config.
fn fixture_with(events: u64, extra: &str) -> Fixture {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().to_path_buf();
    let input = root.join("events.ndjson.zst");
    let out = Command::new(BIN)
        .args([
            "generate",
            "--events",
            &events.to_string(),
            "--seed",
            "11",
            "--rate",
            "0.5",
            "--out",
        ])
        .arg(&input)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let config = root.join("abacus.toml");
    let text = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/data/abacus.toml"))
        .unwrap()
        .replace("interval = 4096", "interval = 512")
        .replace("sample = 10000", "sample = 2000")
        .replace("allowed_lateness = \"6h\"", "allowed_lateness = \"1h\"")
        + extra;
    std::fs::write(&config, text).unwrap();
    Fixture {
        _dir: dir,
        root,
        input,
        config,
    }
}

fn run_args(f: &Fixture, out: &Path, ckpt: &Path, extra: &[&str]) -> Command {
    let mut c = Command::new(BIN);
    c.arg("run")
        .arg(&f.input)
        .arg("--config")
        .arg(&f.config)
        .arg("--out")
        .arg(out)
        .arg("--checkpoint-dir")
        .arg(ckpt)
        .args([
            "--checkpoint-every",
            "1 events",
            "--batch-size",
            "200000",
            "-q",
        ])
        .args(extra);
    c
}

fn summary(dir: &Path) -> serde_json::Value {
    serde_json::from_str(&std::fs::read_to_string(dir.join("_summary.json")).unwrap()).unwrap()
}

/// The late side output: every `late-*.ndjson.zst`, in file order, decompressed and concatenated.
fn late_lines(dir: &Path) -> Vec<u8> {
    let Ok(entries) = std::fs::read_dir(dir.join("_late")) else {
        return Vec::new();
    };
    let mut files: Vec<PathBuf> = entries.map(|e| e.unwrap().path()).collect();
    files.sort();
    files
        .iter()
        .flat_map(|p| zstd::stream::decode_all(std::fs::File::open(p).unwrap()).unwrap())
        .collect()
}

fn assert_same(reference: &Path, out: &Path) {
    let (a, b) = (summary(reference), summary(out));
    for key in [
        "lines",
        "counted",
        "duplicates",
        "late",
        "rejected",
        "rows",
        "rows_per_window",
        "rejected_by_reason",
    ] {
        assert_eq!(a[key], b[key], "summary `{key}` differs");
    }
    assert_eq!(rows(reference), rows(out), "rows differ");
    assert_eq!(
        late_lines(reference),
        late_lines(out),
        "late side output differs"
    );
    let leftovers: Vec<_> = std::fs::read_dir(out)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.ends_with(".tmp"))
        .collect();
    assert!(leftovers.is_empty(), "temporary files left: {leftovers:?}");
}

fn reference(f: &Fixture) -> PathBuf {
    let out = f.root.join("reference");
    let o = Command::new(BIN)
        .arg("run")
        .arg(&f.input)
        .arg("--config")
        .arg(&f.config)
        .arg("--out")
        .arg(&out)
        .arg("-q")
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let s = summary(&out);
    assert!(
        s["late"].as_u64().unwrap() > 0 && s["duplicates"].as_u64().unwrap() > 0,
        "the workload must exercise late and duplicate events: {s}"
    );
    out
}

fn finish(o: &Output) -> bool {
    let stderr = String::from_utf8_lossy(&o.stderr);
    assert!(!stderr.contains("panicked"), "{stderr}");
    o.status.success()
}

/// How long an uninterrupted checkpointed run takes here, to spread kill points over it.
fn duration_of(f: &Fixture) -> Duration {
    let (out, ck) = (f.root.join("timing"), f.root.join("timing-ck"));
    let t = Instant::now();
    let o = run_args(f, &out, &ck, &[]).output().unwrap();
    assert!(finish(&o), "{}", String::from_utf8_lossy(&o.stderr));
    t.elapsed()
}

/// Starts a run (fresh the first time, then `--resume`), sends `signal` after `delay`, waits.
fn run_and_signal(
    f: &Fixture,
    out: &Path,
    ck: &Path,
    resume: bool,
    delay: Duration,
    signal: &str,
) -> Output {
    let mut cmd = run_args(
        f,
        out,
        ck,
        if resume {
            &["--resume"]
        } else {
            &["--overwrite"]
        },
    );
    let child = cmd
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let pid = child.id().to_string();
    let t = Instant::now();
    let waiter = std::thread::spawn(move || child.wait_with_output().unwrap());
    while t.elapsed() < delay && !waiter.is_finished() {
        std::thread::sleep(Duration::from_millis(2));
    }
    if !waiter.is_finished() {
        let _ = Command::new("kill").args([signal, &pid]).status();
    }
    waiter.join().unwrap()
}

fn kill_and_resume(signal: &str, seed: u64) {
    kill_and_resume_with(signal, seed, &fixture(40_000), 20);
}

/// Kills (or interrupts) runs at seeded random points until `min_kills` landed, then lets it
/// finish and compares with an uninterrupted run; returns that reference's out dir.
fn kill_and_resume_with(signal: &str, seed: u64, f: &Fixture, min_kills: u64) -> PathBuf {
    let reference = reference(f);
    let mut total = duration_of(f);
    let (out, ck) = (f.root.join("out"), f.root.join("ck"));
    let mut rng = Rng(seed);
    let mut resume = false;
    let mut kills = 0;
    let mut interrupted = 0;
    // At least 20 interruptions at seeded random points, then let it finish.
    for attempt in 0.. {
        assert!(attempt < 200, "the run never finished");
        let delay = if kills < min_kills {
            Duration::from_micros(rng.next() % (total.as_micros() as u64).max(1))
        } else {
            Duration::from_secs(600)
        };
        let started = Instant::now();
        let o = run_and_signal(f, &out, &ck, resume, delay, signal);
        let took = started.elapsed();
        let stderr = String::from_utf8_lossy(&o.stderr).into_owned();
        assert!(!stderr.contains("panicked"), "{stderr}");
        let was_fresh = !resume;
        resume = true;
        if o.status.code() == Some(2) && stderr.contains("no usable checkpoint") {
            // The kill landed before the fresh run's first checkpoint: as the message says, start
            // over without --resume.
            assert!(!was_fresh, "{stderr}");
            resume = false;
            continue;
        }
        if o.status.success() {
            if kills >= min_kills {
                break;
            }
            // Finished before the signal: start over with a fresh run to use the next kill point.
            // A fresh run that beat its delay shows how long a run takes now (the first timing
            // may have been taken on a busier machine): draw the next delays from that.
            if was_fresh {
                total = total.min(took);
            }
            resume = false;
            continue;
        }
        kills += 1;
        if signal == "-INT" {
            // Graceful: a final checkpoint, exit code 130 and a line saying how to resume — unless
            // the signal landed before the handler was installed (then the default action killed it).
            if o.status.code() == Some(130) {
                assert!(stderr.contains("--resume"), "{stderr}");
                interrupted += 1;
            }
        }
    }
    if signal == "-INT" {
        assert!(interrupted > 0, "SIGINT never reached the handler");
    }
    assert_same(&reference, &out);
    reference
}

#[test]
fn sigkill_anywhere_then_resume_gives_identical_results() {
    kill_and_resume("-KILL", 0xABAC05);
}

#[test]
fn sigkill_with_threshold_metrics_then_resume_gives_identical_results() {
    let f = fixture_with(30_000, THRESHOLD_METRICS);
    let reference = rows(&kill_and_resume_with("-KILL", 0x7123, &f, 10));
    for m in ["carts2", "units3"] {
        assert!(
            reference.iter().any(|r| r.metric == m),
            "the workload must give {m} rows"
        );
    }
}

#[test]
fn sigkill_with_attribution_metrics_then_resume_gives_identical_results() {
    let f = fixture_with(30_000, ATTRIBUTION_METRICS);
    let reference = rows(&kill_and_resume_with("-KILL", 0xa77, &f, 10));
    for m in ["cart_after_touch", "cart_after_touch_any"] {
        assert!(
            reference.iter().any(|r| r.metric == m),
            "the workload must give {m} rows"
        );
    }
}

#[test]
fn sigint_takes_a_checkpoint_and_resume_gives_identical_results() {
    kill_and_resume("-INT", 0x51617);
}

/// Crashes injected inside a checkpoint write and inside a Parquet file write (between writing the
/// temporary file and its rename), at several hit counts each.
#[test]
fn crash_during_checkpoint_or_output_write() {
    let f = fixture(30_000);
    let reference = reference(&f);
    for point in [
        "checkpoint-write:3",
        "checkpoint-write:9",
        "part-write:1",
        "part-write:3",
        "rows:2",
    ] {
        let (out, ck) = (
            f.root.join(format!("out-{point}")),
            f.root.join(format!("ck-{point}")),
        );
        let o = run_args(&f, &out, &ck, &[])
            .env("ABACUS_FAILPOINT", point)
            .output()
            .unwrap();
        assert!(
            !o.status.success(),
            "{point}: the failpoint was never reached"
        );
        let o = run_args(&f, &out, &ck, &["--resume"]).output().unwrap();
        assert!(
            finish(&o),
            "{point}: {}",
            String::from_utf8_lossy(&o.stderr)
        );
        assert_same(&reference, &out);
    }
}

fn interrupted_run(f: &Fixture, name: &str) -> (PathBuf, PathBuf) {
    let (out, ck) = (
        f.root.join(format!("out-{name}")),
        f.root.join(format!("ck-{name}")),
    );
    let o = run_args(f, &out, &ck, &[])
        .env("ABACUS_FAILPOINT", "rows:4")
        .output()
        .unwrap();
    assert!(!o.status.success());
    (out, ck)
}

fn newest_checkpoint(ck: &Path) -> PathBuf {
    let mut files: Vec<PathBuf> = std::fs::read_dir(ck)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "bin"))
        .collect();
    files.sort();
    assert_eq!(files.len(), 2, "two checkpoints are kept");
    files.pop().unwrap()
}

#[test]
fn corrupt_newest_checkpoint_falls_back_to_the_previous_one() {
    let f = fixture(30_000);
    let reference = reference(&f);
    for damage in ["flip", "truncate"] {
        let (out, ck) = interrupted_run(&f, damage);
        let newest = newest_checkpoint(&ck);
        let mut bytes = std::fs::read(&newest).unwrap();
        if damage == "flip" {
            let i = bytes.len() * 2 / 3;
            bytes[i] ^= 0x5A;
        } else {
            bytes.truncate(bytes.len() / 2);
        }
        std::fs::write(&newest, bytes).unwrap();
        let o = run_args(&f, &out, &ck, &["--resume"]).output().unwrap();
        assert!(
            finish(&o),
            "{damage}: {}",
            String::from_utf8_lossy(&o.stderr)
        );
        let warnings = summary(&out)["warnings"].to_string();
        assert!(
            warnings.contains("falling back to the previous checkpoint"),
            "{damage}: {warnings}"
        );
        assert_same(&reference, &out);
    }
}

/// Everything in the out and checkpoint dirs: names, sizes and modification times (but the lock
/// file, which each run rewrites with its pid to name itself to a second run).
fn listing(dirs: &[&Path]) -> Vec<(PathBuf, u64, std::time::SystemTime)> {
    let mut out = Vec::new();
    for d in dirs {
        for e in walk(d).into_iter().filter(|e| !e.ends_with(".abacus.lock")) {
            let m = std::fs::metadata(&e).unwrap();
            out.push((e, m.len(), m.modified().unwrap()));
        }
    }
    out.sort();
    out
}

fn walk(d: &Path) -> Vec<PathBuf> {
    let mut v = Vec::new();
    for e in std::fs::read_dir(d).unwrap() {
        let p = e.unwrap().path();
        if p.is_dir() {
            v.extend(walk(&p));
        } else {
            v.push(p);
        }
    }
    v
}

#[test]
fn resume_with_another_config_or_input_list_is_refused_and_writes_nothing() {
    let f = fixture(20_000);
    let (out, ck) = interrupted_run(&f, "refuse");
    let before = listing(&[&out, &ck]);

    let other_config = f.root.join("other.toml");
    std::fs::write(
        &other_config,
        std::fs::read_to_string(&f.config)
            .unwrap()
            .replace("allowed_lateness = \"1h\"", "allowed_lateness = \"2h\""),
    )
    .unwrap();
    let o = Command::new(BIN)
        .arg("run")
        .arg(&f.input)
        .arg("--config")
        .arg(&other_config)
        .arg("--out")
        .arg(&out)
        .arg("--checkpoint-dir")
        .arg(&ck)
        .args(["--resume", "-q"])
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&o.stderr);
    assert!(
        stderr.contains("cannot resume") && stderr.contains("another config or input list"),
        "{stderr}"
    );

    let second = f.root.join("second.ndjson");
    std::fs::write(
        &second,
        "{\"email\":\"a@b.c\",\"timestamp\":1704067200000,\"type\":\"x\"}\n",
    )
    .unwrap();
    let o = Command::new(BIN)
        .arg("run")
        .arg(&f.input)
        .arg(&second)
        .arg("--config")
        .arg(&f.config)
        .arg("--out")
        .arg(&out)
        .arg("--checkpoint-dir")
        .arg(&ck)
        .args(["--resume", "-q"])
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&o.stderr).contains("cannot resume"));
    assert_eq!(
        before,
        listing(&[&out, &ck]),
        "a refused resume must not touch anything"
    );
}

#[test]
fn resume_after_completion_reports_and_changes_nothing() {
    let f = fixture(10_000);
    let (out, ck) = (f.root.join("done"), f.root.join("done-ck"));
    let o = run_args(&f, &out, &ck, &[]).output().unwrap();
    assert!(finish(&o));
    let before = listing(&[&out]);
    let o = run_args(&f, &out, &ck, &["--resume"]).output().unwrap();
    assert!(finish(&o), "{}", String::from_utf8_lossy(&o.stderr));
    assert_eq!(before, listing(&[&out]));
}

#[test]
fn resume_with_other_thread_count_gives_identical_results() {
    let f = fixture(30_000);
    let reference = reference(&f);
    let (out, ck) = (f.root.join("threads"), f.root.join("threads-ck"));
    let o = run_args(&f, &out, &ck, &["--threads", "3"])
        .env("ABACUS_FAILPOINT", "rows:3")
        .output()
        .unwrap();
    assert!(!o.status.success());
    let o = run_args(&f, &out, &ck, &["--resume", "--threads", "1"])
        .output()
        .unwrap();
    assert!(finish(&o), "{}", String::from_utf8_lossy(&o.stderr));
    assert_same(&reference, &out);
}
