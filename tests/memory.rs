//! Honest memory accounting and `--memory-limit`: `peak_state_bytes` is what the process really
//! held (within 1.5× of its peak anonymous RSS, sampled from outside), and a run over its limit
//! stops with a clear message — after a checkpoint it can be resumed from, to the same result.

mod common;

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use common::{Scratch, bin, read_rows, read_summary};

fn generated(s: &Scratch, events: u64) -> (PathBuf, PathBuf) {
    let input = s.path("events.ndjson.zst");
    let o = Command::new(bin())
        .args([
            "generate",
            "--events",
            &events.to_string(),
            "--seed",
            "5",
            "--out",
        ])
        .arg(&input)
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let cfg =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/data/abacus.toml")).unwrap();
    (input, s.write("abacus.toml", cfg))
}

fn rss_anon_kib(pid: u32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    status
        .lines()
        .find_map(|l| l.strip_prefix("RssAnon:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
}

/// Runs `abacus run` and samples its anonymous RSS every millisecond; returns (exit code,
/// stderr, peak RssAnon in bytes).
fn run_sampled(input: &Path, cfg: &Path, out: &Path, extra: &[&str]) -> (i32, String, u64) {
    let mut child = Command::new(bin())
        .arg("run")
        .arg(input)
        .arg("-c")
        .arg(cfg)
        .arg("-o")
        .arg(out)
        .args(["-q", "-j", "2"])
        .args(extra)
        .stdin(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut peak = 0;
    let status = loop {
        if let Some(s) = child.try_wait().unwrap() {
            break s;
        }
        peak = peak.max(rss_anon_kib(child.id()).unwrap_or(0));
        std::thread::sleep(Duration::from_millis(1));
    };
    let mut err = String::new();
    use std::io::Read;
    child
        .stderr
        .take()
        .unwrap()
        .read_to_string(&mut err)
        .unwrap();
    (
        status.code().expect("not killed by a signal"),
        err,
        peak * 1024,
    )
}

#[test]
fn peak_state_bytes_is_within_1_5x_of_the_peak_anonymous_rss() {
    if !cfg!(target_os = "linux") {
        return;
    }
    let s = Scratch::new();
    let (input, cfg) = generated(&s, 400_000);
    let out = s.path("out");
    let (code, err, sampled) = run_sampled(&input, &cfg, &out, &[]);
    assert_eq!(code, 0, "{err}");
    let summary = read_summary(&out);
    let reported = summary["peak_state_bytes"].as_u64().unwrap();
    let state = summary["counting_state_bytes"].as_u64().unwrap();
    let ratio = sampled as f64 / reported as f64;
    assert!(
        (1.0 / 1.5..=1.5).contains(&ratio),
        "peak_state_bytes {reported} vs sampled peak RssAnon {sampled}: ratio {ratio:.2}"
    );
    assert!(
        state > 0 && state <= reported,
        "counting state {state} ≤ process {reported}"
    );
}

#[test]
fn memory_limit_stops_after_a_checkpoint_and_the_resume_gives_the_same_rows() {
    let s = Scratch::new();
    let (input, cfg) = generated(&s, 400_000);
    let reference = s.path("reference");
    let (code, err, _) = run_sampled(&input, &cfg, &reference, &[]);
    assert_eq!(code, 0, "{err}");

    // Without checkpoints: exit 1, a clear message, nothing that looks complete.
    let out = s.path("limited");
    let small = ["--memory-limit", "40M", "--batch-size", "1000000"];
    let (code, err, _) = run_sampled(&input, &cfg, &out, &small);
    assert_eq!(code, 1, "{err}");
    assert!(err.contains("more than --memory-limit 40.0 MiB"), "{err}");
    assert!(!out.join("_SUCCESS").exists() && !out.join("_summary.json").exists());

    // With checkpoints: the stop leaves a checkpoint; resuming without the limit finishes.
    let (out, ckpt) = (s.path("ck-out"), s.path("ckpt"));
    let ck = ckpt.to_str().unwrap();
    let mut args = small.to_vec();
    args.extend(["--checkpoint-dir", ck]);
    let (code, err, _) = run_sampled(&input, &cfg, &out, &args);
    assert_eq!(code, 1, "{err}");
    assert!(err.contains("a checkpoint was taken"), "{err}");
    let (code, err, _) = run_sampled(&input, &cfg, &out, &["--checkpoint-dir", ck, "--resume"]);
    assert_eq!(code, 0, "{err}");
    assert_eq!(read_rows(&out), read_rows(&reference));
    let (a, b) = (read_summary(&out), read_summary(&reference));
    for k in ["lines", "counted", "duplicates", "late", "rejected", "rows"] {
        assert_eq!(a[k], b[k], "{k}");
    }
}
