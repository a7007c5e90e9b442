//! Snapshot tests of the command line's user-facing text: `--help` is the first manual, so a change
//! to it should be a deliberate one. Regenerate with `UPDATE_SNAPSHOTS=1 cargo test --release --test cli`.

use std::path::PathBuf;
use std::process::Command;

const BIN: &str = env!("CARGO_BIN_EXE_abacus");

fn snapshot(name: &str, args: &[&str]) {
    let out = Command::new(BIN)
        .args(args)
        .env("COLUMNS", "100")
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8(out.stdout).unwrap();
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/snapshots")
        .join(format!("{name}.txt"));
    if std::env::var_os("UPDATE_SNAPSHOTS").is_some() {
        std::fs::write(&path, &text).unwrap();
        return;
    }
    let expected = std::fs::read_to_string(&path).unwrap_or_else(|_| {
        panic!(
            "missing snapshot {}; run with UPDATE_SNAPSHOTS=1",
            path.display()
        )
    });
    assert_eq!(
        text,
        expected,
        "`abacus {}` changed; if on purpose, run with UPDATE_SNAPSHOTS=1",
        args.join(" ")
    );
}

#[test]
fn top_level_help() {
    snapshot("help", &["--help"]);
}

#[test]
fn run_help() {
    snapshot("run_help", &["run", "--help"]);
}

#[test]
fn generate_help() {
    snapshot("generate_help", &["generate", "--help"]);
}

#[test]
fn bench_help() {
    snapshot("bench_help", &["bench", "--help"]);
}

#[test]
fn diff_help() {
    snapshot("diff_help", &["diff", "--help"]);
}

#[test]
fn plot_help() {
    snapshot("plot_help", &["plot", "--help"]);
}

#[test]
fn explain_help() {
    snapshot("explain_help", &["explain", "--help"]);
}

#[test]
fn usage_errors_exit_2_and_say_what_to_do() {
    let out = Command::new(BIN)
        .args(["run", "x.ndjson"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("--config") && err.contains("--out"), "{err}");

    let out = Command::new(BIN)
        .args([
            "run", "x.ndjson", "--config", "c.toml", "--out", "o", "--resume",
        ])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("--checkpoint-dir"));
}
