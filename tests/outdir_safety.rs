//! The output directory is abacus's own (issue: never destroy data, never report a wrong result as
//! success). Each test is one way an unlucky user lost data or got a wrong result with exit 0:
//! `--overwrite` deleting files abacus did not write, two runs into one `--out`, a `--resume` into
//! another or emptied out dir, a kill during the `--overwrite` cleanup, a full disk.

mod common;

use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use common::{Scratch, bin, read_rows};

fn abacus(args: &[&std::ffi::OsStr]) -> Output {
    Command::new(bin())
        .args(args)
        .stdin(Stdio::null())
        .output()
        .expect("spawn abacus")
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

/// `abacus run INPUT -c CONFIG -o OUT -q EXTRA...`
fn run(input: &Path, config: &Path, out: &Path, extra: &[&str]) -> Output {
    let mut args: Vec<&std::ffi::OsStr> = vec![
        "run".as_ref(),
        input.as_os_str(),
        "--config".as_ref(),
        config.as_os_str(),
        "--out".as_ref(),
        out.as_os_str(),
        "-q".as_ref(),
    ];
    args.extend(extra.iter().map(|s| std::ffi::OsStr::new(*s)));
    abacus(&args)
}

fn code(o: &Output) -> i32 {
    o.status
        .code()
        .unwrap_or_else(|| panic!("killed by a signal: {:?}\n{}", o.status, stderr(o)))
}

const CONFIG: &str = r#"
[fields]
user = "u"
time = "t"
event_type = "e"
[[dimensions]]
name = "d"
field = "d"
[[windows]]
name = "h"
size = "1h"
"#;

fn lines(n: usize, seed: usize) -> String {
    (0..n)
        .map(|i| {
            format!(
                "{{\"u\":\"u{}\",\"t\":{},\"e\":\"open\",\"d\":\"x{}\"}}\n",
                (i * 7 + seed) % 101,
                1_714_521_600 + (i as i64) * 13,
                i % 5
            )
        })
        .collect()
}

/// Every file below `dir` but the lock (which each run rewrites with its pid), relative, with a
/// hash of its bytes.
fn snapshot(dir: &Path) -> Vec<(PathBuf, u64)> {
    files(dir)
        .into_iter()
        .filter(|(p, _)| p != Path::new(".abacus.lock"))
        .map(|(p, b)| (p, xxhash_rust::xxh3::xxh3_64(&b)))
        .collect()
}

/// Every file below `dir`, relative, with its bytes.
fn files(dir: &Path) -> Vec<(PathBuf, Vec<u8>)> {
    fn walk(root: &Path, d: &Path, out: &mut Vec<(PathBuf, Vec<u8>)>) {
        for e in fs::read_dir(d).unwrap() {
            let p = e.unwrap().path();
            if p.is_dir() {
                walk(root, &p, out);
            } else {
                out.push((
                    p.strip_prefix(root).unwrap().to_path_buf(),
                    fs::read(&p).unwrap(),
                ));
            }
        }
    }
    let mut v = Vec::new();
    walk(dir, dir, &mut v);
    v.sort();
    v
}

#[test]
fn overwrite_never_deletes_files_abacus_did_not_write() {
    // The issue's reproduction: an input directory used as --out, with a user's notes in late/.
    let s = Scratch::new();
    let cfg = s.write("c.toml", CONFIG);
    let d = s.path("d");
    s.write("d/part-00000-a.ndjson", lines(200, 1));
    s.write("d/late/notes.txt", "x");
    let before = snapshot(&d);
    let o = run(&d, &cfg, &d, &["--overwrite"]);
    assert_eq!(code(&o), 2, "{}", stderr(&o));
    assert_eq!(snapshot(&d), before, "nothing in d/ was touched");
    // The same out dir with the input elsewhere: the out dir check itself refuses, naming the
    // files in the way, and does not call them results.
    let elsewhere = s.write("elsewhere.ndjson", lines(200, 1));
    let o = run(&elsewhere, &cfg, &d, &["--overwrite"]);
    assert_eq!(code(&o), 2, "{}", stderr(&o));
    assert!(
        stderr(&o).contains("no abacus run wrote") && stderr(&o).contains("part-00000-a.ndjson"),
        "the message names what is in the way: {}",
        stderr(&o)
    );
    assert!(
        !stderr(&o).contains("holds the results"),
        "not called results: {}",
        stderr(&o)
    );
    assert_eq!(snapshot(&d), before, "nothing in d/ was touched");

    // A real earlier result plus one file of the user's: --overwrite refuses too, naming it.
    let inp = s.write("in.ndjson", lines(200, 2));
    let out = s.path("out");
    assert_eq!(code(&run(&inp, &cfg, &out, &[])), 0);
    s.write("out/my-notes.md", "mine");
    let o = run(&inp, &cfg, &out, &["--overwrite"]);
    assert_eq!(code(&o), 2, "{}", stderr(&o));
    assert!(stderr(&o).contains("my-notes.md"), "{}", stderr(&o));
    assert!(out.join("_SUCCESS").exists() && out.join("part-00000.parquet").exists());
    fs::remove_file(out.join("my-notes.md")).unwrap();
    // Only abacus's own files: replaced.
    let o = run(&inp, &cfg, &out, &["--overwrite"]);
    assert_eq!(code(&o), 0, "{}", stderr(&o));
}

#[test]
fn a_second_run_into_the_same_out_dir_is_refused_while_the_first_runs() {
    let s = Scratch::new();
    let cfg = s.write("c.toml", CONFIG);
    // Big enough that the first run takes a while on one thread.
    let big = s.write("big.ndjson", lines(1_500_000, 3));
    let small = s.write("small.ndjson", lines(100, 4));
    let out = s.path("out");
    let mut first = Command::new(bin())
        .args([
            "run".as_ref(),
            big.as_os_str(),
            "-c".as_ref(),
            cfg.as_os_str(),
        ])
        .args([
            "-o".as_ref(),
            out.as_os_str(),
            "-q".as_ref(),
            "-j".as_ref(),
            "1".as_ref(),
        ])
        .stdin(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // Wait until the first run holds the lock (we cannot take it ourselves).
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        if let Ok(f) = fs::File::open(out.join(".abacus.lock"))
            && matches!(f.try_lock(), Err(fs::TryLockError::WouldBlock))
        {
            break;
        }
        assert!(
            first.try_wait().unwrap().is_none(),
            "the first run ended too soon"
        );
        assert!(
            Instant::now() < deadline,
            "the first run never took the lock"
        );
        std::thread::sleep(Duration::from_millis(2));
    }
    let o = run(&small, &cfg, &out, &["--overwrite"]);
    let still_running = first.try_wait().unwrap().is_none();
    assert_eq!(code(&o), 2, "{}", stderr(&o));
    assert!(
        stderr(&o).contains("in use by another abacus run")
            && stderr(&o).contains(&format!("pid {}", first.id())),
        "names the holder: {}",
        stderr(&o)
    );
    assert!(
        still_running,
        "the refusal came while the first run was still going"
    );
    let status = first.wait().unwrap();
    assert!(status.success());
    let s1 = common::read_summary(&out);
    assert_eq!(s1["lines"], 1_500_000, "the first run's summary is its own");
    assert_eq!(s1["counted"], 1_500_000);
}

/// A run with checkpoints, killed by a failpoint after some rows were written.
fn interrupted(s: &Scratch, input: &Path, cfg: &Path, out: &Path, ckpt: &Path) {
    let o = Command::new(bin())
        .args([
            "run".as_ref(),
            input.as_os_str(),
            "-c".as_ref(),
            cfg.as_os_str(),
        ])
        .args([
            "-o".as_ref(),
            out.as_os_str(),
            "--checkpoint-dir".as_ref(),
            ckpt.as_os_str(),
        ])
        .args([
            "--checkpoint-every",
            "1 events",
            "--batch-size",
            "20000",
            "-q",
        ])
        .env("ABACUS_FAILPOINT", "rows:3")
        .stdin(Stdio::null())
        .output()
        .unwrap();
    assert!(!o.status.success(), "the failpoint stopped the run");
    let _ = s;
}

fn resume(input: &Path, cfg: &Path, out: &Path, ckpt: &Path) -> Output {
    let ck = ckpt.as_os_str();
    run(
        input,
        cfg,
        out,
        &["--checkpoint-dir", ck.to_str().unwrap(), "--resume"],
    )
}

#[test]
fn resume_refuses_an_out_dir_that_is_not_the_interrupted_runs() {
    let s = Scratch::new();
    let cfg = s.write("c.toml", CONFIG);
    let inp = s.write("in.ndjson", lines(20_000, 5));
    let reference = s.path("reference");
    assert_eq!(code(&run(&inp, &cfg, &reference, &[])), 0);

    let (out, ckpt) = (s.path("out"), s.path("ckpt"));
    interrupted(&s, &inp, &cfg, &out, &ckpt);
    let resumable = snapshot(&out);

    // Another, never written out dir; an emptied one; a deleted one: refused, exit 2, untouched.
    for (name, prepare) in [
        ("other", Box::new(|_: &Path| {}) as Box<dyn Fn(&Path)>),
        (
            "emptied",
            Box::new(|p: &Path| {
                copy_dir(&out, p);
                for (rel, _) in files(p) {
                    fs::remove_file(p.join(rel)).unwrap();
                }
            }),
        ),
        ("deleted", Box::new(|_: &Path| {})),
    ] {
        let dir = s.path(name);
        prepare(&dir);
        let before = dir.exists().then(|| snapshot(&dir));
        let o = resume(&inp, &cfg, &dir, &ckpt);
        assert_eq!(code(&o), 2, "{name}: {}", stderr(&o));
        assert!(
            stderr(&o).contains("cannot resume"),
            "{name}: {}",
            stderr(&o)
        );
        assert!(
            !dir.join("_summary.json").exists(),
            "{name}: no summary claiming rows"
        );
        if let Some(before) = before {
            assert_eq!(snapshot(&dir), before, "{name}: untouched");
        }
    }

    // A committed part file deleted or changed: refused.
    let parts = common::part_files(&out);
    assert!(
        !parts.is_empty(),
        "the interrupted run committed a part file"
    );
    let damaged = s.path("damaged");
    copy_dir(&out, &damaged);
    let victim = damaged.join(parts[0].file_name().unwrap());
    let mut bytes = fs::read(&victim).unwrap();
    bytes[10] ^= 1;
    fs::write(&victim, bytes).unwrap();
    let o = resume(&inp, &cfg, &damaged, &ckpt);
    assert_eq!(code(&o), 2, "{}", stderr(&o));
    assert!(
        stderr(&o).contains("changed since the checkpoint"),
        "{}",
        stderr(&o)
    );

    // A second run that shared the checkpoint dir took it over: the first run's out is refused.
    let (taken_out, _) = (s.path("second"), ());
    assert_eq!(snapshot(&out), resumable);
    let copy = s.path("first-copy");
    copy_dir(&out, &copy);
    let ck = ckpt.to_str().unwrap();
    assert_eq!(
        code(&run(&inp, &cfg, &taken_out, &["--checkpoint-dir", ck])),
        0
    );
    let o = resume(&inp, &cfg, &copy, &ckpt);
    assert_eq!(code(&o), 2, "{}", stderr(&o));
    assert!(stderr(&o).contains("another run"), "{}", stderr(&o));

    // The real out dir still resumes to the uninterrupted result.
    let (out2, ckpt2) = (s.path("out2"), s.path("ckpt2"));
    interrupted(&s, &inp, &cfg, &out2, &ckpt2);
    let o = resume(&inp, &cfg, &out2, &ckpt2);
    assert_eq!(code(&o), 0, "{}", stderr(&o));
    assert_eq!(read_rows(&out2), read_rows(&reference));
    assert!(out2.join("_SUCCESS").exists());
}

fn copy_dir(from: &Path, to: &Path) {
    for (rel, bytes) in files(from) {
        let p = to.join(rel);
        fs::create_dir_all(p.parent().unwrap()).unwrap();
        fs::write(p, bytes).unwrap();
    }
}

#[test]
fn no_usable_checkpoint_is_a_refused_resume_exit_2() {
    let s = Scratch::new();
    let cfg = s.write("c.toml", CONFIG);
    let inp = s.write("in.ndjson", lines(100, 6));
    fs::create_dir_all(s.path("ckpt")).unwrap();
    let o = resume(&inp, &cfg, &s.path("out"), &s.path("ckpt"));
    assert_eq!(code(&o), 2, "{}", stderr(&o));
    assert!(
        stderr(&o).contains("no usable checkpoint"),
        "{}",
        stderr(&o)
    );
}

#[test]
fn a_kill_during_the_overwrite_cleanup_leaves_no_complete_looking_result() {
    let s = Scratch::new();
    let cfg = s.write("c.toml", CONFIG);
    let inp = s.write("in.ndjson", lines(20_000, 7));
    let out = s.path("out");
    // Several part files (every checkpoint closes one) and a rejected/ file.
    let ck = s.path("ckpt");
    let ck = ck.to_str().unwrap();
    let first = run(
        &inp,
        &cfg,
        &out,
        &[
            "--checkpoint-dir",
            ck,
            "--checkpoint-every",
            "1 events",
            "--batch-size",
            "20000",
        ],
    );
    assert_eq!(code(&first), 0, "{}", stderr(&first));
    assert!(common::part_files(&out).len() >= 3);
    for n in 1..4 {
        let o = Command::new(bin())
            .args([
                "run".as_ref(),
                inp.as_os_str(),
                "-c".as_ref(),
                cfg.as_os_str(),
            ])
            .args([
                "-o".as_ref(),
                out.as_os_str(),
                "--overwrite".as_ref(),
                "-q".as_ref(),
            ])
            .env("ABACUS_FAILPOINT", format!("overwrite-delete:{n}"))
            .stdin(Stdio::null())
            .output()
            .unwrap();
        assert!(!o.status.success(), "the failpoint killed the cleanup");
        assert!(
            !out.join("_summary.json").exists() && !out.join("_SUCCESS").exists(),
            "kill at deletion {n}: a summary or _SUCCESS over a partial set of parts"
        );
        // And the directory is still abacus's own: a plain --overwrite finishes the job.
        let o = run(&inp, &cfg, &out, &["--overwrite"]);
        assert_eq!(code(&o), 0, "{}", stderr(&o));
        assert!(out.join("_SUCCESS").exists());
    }
}

#[test]
fn a_full_disk_fails_with_one_clear_message_and_no_marker() {
    // A small tmpfs is the only honest full disk; it needs root (CI and the dev machines run as
    // root). Where mounting is not allowed the test says so and checks nothing.
    let s = Scratch::new();
    let mnt = s.path("full");
    fs::create_dir_all(&mnt).unwrap();
    let mounted = Command::new("mount")
        .args(["-t", "tmpfs", "-o", "size=300k", "tmpfs"])
        .arg(&mnt)
        .output()
        .is_ok_and(|o| o.status.success());
    if !mounted {
        eprintln!("SKIPPED: cannot mount a tmpfs here (not root?)");
        return;
    }
    let sample = Path::new(env!("CARGO_MANIFEST_DIR")).join("data/sample.ndjson.zst");
    let cfg = Path::new(env!("CARGO_MANIFEST_DIR")).join("data/abacus.toml");
    let out = mnt.join("o");
    let o = run(&sample, &cfg, &out, &[]);
    let err = stderr(&o);
    let marker = out.join("_SUCCESS").exists() || out.join("_summary.json").exists();
    let _ = Command::new("umount").arg(&mnt).status();
    assert!(!marker, "no _SUCCESS or _summary.json after a failed write");
    assert_eq!(code(&o), 1, "{err}");
    assert_eq!(err.matches("No space left on device").count(), 1, "{err}");
    assert!(
        err.contains(&out.display().to_string()),
        "names the file: {err}"
    );
}

/// Sets `path`'s modification time back to `mtime` (an in-place edit that hides itself).
fn set_mtime(path: &Path, mtime: std::time::SystemTime) {
    fs::File::options()
        .write(true)
        .open(path)
        .unwrap()
        .set_modified(mtime)
        .unwrap();
}

/// Overwrites one byte in place (same size, same inode).
fn poke(path: &Path, at: u64, byte: u8) {
    use std::os::unix::fs::FileExt;
    fs::File::options()
        .write(true)
        .open(path)
        .unwrap()
        .write_all_at(&[byte], at)
        .unwrap();
}

#[test]
fn an_input_changed_in_place_between_a_kill_and_the_resume_is_refused() {
    let s = Scratch::new();
    let cfg = s.write("c.toml", CONFIG);
    let text = lines(20_000, 8);
    let inp = s.write("in.ndjson", &text);
    let size = text.len() as u64;
    // A byte outside the 16 sampled 4 KiB blocks (0, (size-4096)/15, …) and before the resume
    // point: only the checksum of the consumed bytes can see it. Digits of a time, same length.
    let at = 6_000 + text[6_000..].find("\"t\":").unwrap() as u64 + 5;
    assert!(at < (size - 4096) / 15, "outside the sampled blocks");
    let original = text.as_bytes()[at as usize];
    let changed = if original == b'9' { b'8' } else { original + 1 };

    // (a) mtime left as the edit set it: the identity check sees it before anything is read.
    let (out, ckpt) = (s.path("out-a"), s.path("ckpt-a"));
    interrupted(&s, &inp, &cfg, &out, &ckpt);
    let before = snapshot(&out);
    poke(&inp, at, changed);
    let o = resume(&inp, &cfg, &out, &ckpt);
    assert_eq!(code(&o), 2, "{}", stderr(&o));
    assert!(
        stderr(&o).contains("changed since the checkpoint"),
        "{}",
        stderr(&o)
    );
    assert!(stderr(&o).contains("modification time"), "{}", stderr(&o));
    assert_eq!(snapshot(&out), before, "nothing touched");
    poke(&inp, at, original);

    // (b) the edit hides itself (mtime restored, same size and inode): the resume re-reads the
    // prefix and its checksum differs.
    let (out, ckpt) = (s.path("out-b"), s.path("ckpt-b"));
    interrupted(&s, &inp, &cfg, &out, &ckpt);
    let mtime = fs::metadata(&inp).unwrap().modified().unwrap();
    poke(&inp, at, changed);
    set_mtime(&inp, mtime);
    let o = resume(&inp, &cfg, &out, &ckpt);
    assert_eq!(code(&o), 2, "{}", stderr(&o));
    assert!(
        stderr(&o).contains("changed since the checkpoint")
            && stderr(&o).contains("decoded bytes differ"),
        "{}",
        stderr(&o)
    );
    assert!(!out.join("_SUCCESS").exists() && !out.join("_summary.json").exists());
    // Put the byte back: the same out dir still resumes, to the uninterrupted result.
    poke(&inp, at, original);
    set_mtime(&inp, mtime);
    let o = resume(&inp, &cfg, &out, &ckpt);
    assert_eq!(code(&o), 0, "{}", stderr(&o));
    let reference = s.path("reference");
    assert_eq!(code(&run(&inp, &cfg, &reference, &[])), 0);
    assert_eq!(read_rows(&out), read_rows(&reference));
}
