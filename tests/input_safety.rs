//! The source stage's promises, end to end through the `abacus` binary: an input truncated while it
//! is read is an error naming it (never a SIGBUS) and no summary is written; `-`, `/dev/stdin` and
//! FIFOs are read as streams and give the same results as the file, and checkpoints on them are
//! refused; skippable frames (pzstd files) are skipped anywhere; frames without content size are
//! decoded with bounded memory; damage in a piped zstd stream keeps what decoded before it; and a
//! run never reads its own outputs back as inputs.
//!
//! Every run of the binary asserts its exit code, that it was not killed by a signal, and that
//! neither stream mentions a panic.

mod common;

use std::ffi::{OsStr, OsString};
use std::fs;
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

use common::{balanced_counts as counts, read_rows as rows, read_summary as summary};

/// 2024-05-01T00:00:00Z in seconds.
const T0_S: i64 = 1_714_521_600;

// ───────────────────────────── running the binary ─────────────────────────────

struct Outcome {
    code: i32,
    stderr: String,
    /// Peak resident set size of the process in KiB, as last sampled while it ran.
    peak_rss_kib: u64,
}

fn vm_hwm_kib(pid: u32) -> u64 {
    let Ok(status) = fs::read_to_string(format!("/proc/{pid}/status")) else {
        return 0;
    };
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap_or(0)
}

/// Bytes the process has read so far (`rchar` of /proc/PID/io).
fn rchar(pid: u32) -> u64 {
    fs::read_to_string(format!("/proc/{pid}/io"))
        .ok()
        .and_then(|io| {
            io.lines()
                .find_map(|l| l.strip_prefix("rchar:"))
                .and_then(|v| v.trim().parse().ok())
        })
        .unwrap_or(0)
}

fn spawn(
    args: &[OsString],
    stdin: Option<Vec<u8>>,
) -> (Child, Option<std::thread::JoinHandle<()>>) {
    let mut child = Command::new(env!("CARGO_BIN_EXE_abacus"))
        .args(args)
        .stdin(if stdin.is_some() {
            Stdio::piped()
        } else {
            Stdio::null()
        })
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn abacus");
    let feeder = stdin.map(|bytes| {
        let mut pipe = child.stdin.take().unwrap();
        // Written in pieces, as `cat` would; abacus may stop reading early (then EPIPE is fine).
        std::thread::spawn(move || {
            for piece in bytes.chunks(64 << 10) {
                if pipe.write_all(piece).is_err() {
                    return;
                }
            }
        })
    });
    (child, feeder)
}

/// Waits for `child`, collects its output (without pipe deadlocks), samples its memory, and asserts
/// it neither panicked nor was killed.
fn finish(mut child: Child, args: &[OsString]) -> Outcome {
    let pid = child.id();
    let mut so = child.stdout.take().unwrap();
    let mut se = child.stderr.take().unwrap();
    let t_out = std::thread::spawn(move || {
        let mut v = Vec::new();
        let _ = so.read_to_end(&mut v);
        v
    });
    let t_err = std::thread::spawn(move || {
        let mut v = Vec::new();
        let _ = se.read_to_end(&mut v);
        v
    });
    let deadline = Instant::now() + Duration::from_secs(300);
    let mut peak = 0;
    let status = loop {
        if let Some(s) = child.try_wait().expect("wait for abacus") {
            break s;
        }
        peak = peak.max(vm_hwm_kib(pid));
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!("abacus {args:?} did not finish within 300 s");
        }
        std::thread::sleep(Duration::from_millis(2));
    };
    let stdout = String::from_utf8_lossy(&t_out.join().unwrap()).into_owned();
    let stderr = String::from_utf8_lossy(&t_err.join().unwrap()).into_owned();
    for (name, text) in [("stdout", &stdout), ("stderr", &stderr)] {
        assert!(
            !text.contains("panicked") && !text.contains("RUST_BACKTRACE"),
            "abacus {args:?} panicked ({name}):\n{text}"
        );
    }
    let code = status.code().unwrap_or_else(|| {
        panic!("abacus {args:?} was killed by a signal ({status:?})\nstderr:\n{stderr}")
    });
    Outcome {
        code,
        stderr,
        peak_rss_kib: peak,
    }
}

/// `abacus run INPUTS --config CONFIG --out OUT -q [more args]`.
struct Run {
    args: Vec<OsString>,
    stdin: Option<Vec<u8>>,
}

fn run(inputs: &[&Path], config: &Path, out: &Path) -> Run {
    let mut args: Vec<OsString> = vec!["run".into()];
    args.extend(inputs.iter().map(|p| p.as_os_str().to_owned()));
    args.extend([
        "--config".into(),
        config.as_os_str().to_owned(),
        "--out".into(),
        out.as_os_str().to_owned(),
        "-q".into(),
    ]);
    Run { args, stdin: None }
}

impl Run {
    fn arg(mut self, a: impl AsRef<OsStr>) -> Run {
        self.args.push(a.as_ref().to_owned());
        self
    }
    fn threads(self, n: usize) -> Run {
        self.arg("--threads").arg(n.to_string())
    }
    /// Feeds `bytes` on standard input.
    fn stdin(mut self, bytes: &[u8]) -> Run {
        self.stdin = Some(bytes.to_vec());
        self
    }
    fn go(self) -> Outcome {
        let (child, feeder) = spawn(&self.args, self.stdin);
        let o = finish(child, &self.args);
        if let Some(f) = feeder {
            f.join().unwrap();
        }
        o
    }
    /// Runs and asserts exit code 0.
    fn ok(self) -> Outcome {
        let args = self.args.clone();
        let o = self.go();
        assert_eq!(o.code, 0, "abacus {args:?} failed:\n{}", o.stderr);
        o
    }
    /// Runs and asserts exit code `code` and an `error:` message on stderr.
    fn fails(self, code: i32) -> Outcome {
        let args = self.args.clone();
        let o = self.go();
        assert_eq!(
            o.code, code,
            "abacus {args:?}: expected exit code {code}, stderr:\n{}",
            o.stderr
        );
        assert!(
            o.stderr.starts_with("error: "),
            "abacus {args:?}: the failure should be reported as `error: …`, stderr:\n{}",
            o.stderr
        );
        o
    }
}

// ───────────────────────────── reading what a run wrote ─────────────────────────────

fn corrupt_inputs(out: &Path) -> Vec<String> {
    let s = summary(out);
    s.get("corrupt_inputs")
        .and_then(Value::as_array)
        .unwrap_or_else(|| panic!("_summary.json has no array `corrupt_inputs`: {s}"))
        .iter()
        .map(|v| v.as_str().unwrap().to_string())
        .collect()
}

// ───────────────────────────── writing inputs ─────────────────────────────

fn write(dir: &Path, name: &str, bytes: impl AsRef<[u8]>) -> PathBuf {
    let p = dir.join(name);
    if let Some(parent) = p.parent() {
        fs::create_dir_all(parent).unwrap();
    }
    fs::write(&p, bytes).unwrap();
    p
}

/// Fields u/t/e, a `browser` dimension, one hourly window, no lateness.
fn config(dir: &Path) -> PathBuf {
    write(
        dir,
        "abacus.toml",
        "[fields]\nuser = \"u\"\ntime = \"t\"\nevent_type = \"e\"\n\n\
         [watermark]\nallowed_lateness = \"unbounded\"\n\n\
         [[dimensions]]\nname = \"browser\"\nfield = \"b\"\n\n\
         [[windows]]\nname = \"h\"\nsize = \"1h\"\n",
    )
}

/// `n` valid events of many users over a few hours, and every 1000th line broken (rejected).
fn events(n: usize) -> Vec<u8> {
    let mut v = Vec::with_capacity(n * 64);
    for i in 0..n {
        if i % 1000 == 999 {
            v.extend_from_slice(b"{\"u\": broken\n");
            continue;
        }
        let b = ["firefox", "chrome", "safari"][i % 3];
        writeln!(
            v,
            r#"{{"u":"user-{}","t":{},"e":"open","b":"{b}"}}"#,
            (i * 7919) % 50_000,
            T0_S + (i as i64 * 13) % 14_400
        )
        .unwrap();
    }
    v
}

/// One zstd frame as a streaming compressor writes it: no content size in the header.
fn zstd_unsized(data: &[u8]) -> Vec<u8> {
    let mut enc = zstd::stream::write::Encoder::new(Vec::new(), 3).unwrap();
    enc.include_contentsize(false).unwrap();
    enc.include_checksum(true).unwrap();
    enc.write_all(data).unwrap();
    enc.finish().unwrap()
}

/// Independent frames with content size of about `chunk` decoded bytes each (`abacus generate`'s layout).
fn zstd_sized_frames(data: &[u8], chunk: usize) -> Vec<u8> {
    let mut z = Vec::new();
    for c in data.chunks(chunk) {
        z.extend(zstd::bulk::compress(c, 3).unwrap());
    }
    z
}

fn skippable(payload: &[u8], variant: u8) -> Vec<u8> {
    let mut v = vec![0x50 | variant, 0x2A, 0x4D, 0x18];
    v.extend((payload.len() as u32).to_le_bytes());
    v.extend(payload);
    v
}

fn mkfifo(path: &Path) {
    let st = Command::new("mkfifo")
        .arg(path)
        .status()
        .expect("run mkfifo");
    assert!(st.success(), "mkfifo {}", path.display());
}

/// Opens the FIFO for writing in a thread (that waits for abacus to open it) and writes `bytes`.
fn feed_fifo(path: &Path, bytes: Vec<u8>) -> std::thread::JoinHandle<()> {
    let path = path.to_path_buf();
    std::thread::spawn(move || {
        let Ok(mut f) = fs::OpenOptions::new().write(true).open(&path) else {
            return;
        };
        for piece in bytes.chunks(64 << 10) {
            if f.write_all(piece).is_err() {
                return;
            }
        }
    })
}

fn tmp() -> tempfile::TempDir {
    tempfile::tempdir().unwrap()
}

fn p(path: &Path) -> String {
    path.display().to_string()
}

// ───────────────────────────── 1. no mmap, no SIGBUS ─────────────────────────────

/// A plain file of about `mb` MB of valid events, written quickly (one block repeated).
fn big_plain(dir: &Path, name: &str, mb: usize) -> PathBuf {
    let block = events(20_000);
    let path = dir.join(name);
    let mut f = std::io::BufWriter::new(fs::File::create(&path).unwrap());
    let mut written = 0;
    while written < mb << 20 {
        f.write_all(&block).unwrap();
        written += block.len();
    }
    f.flush().unwrap();
    path
}

#[test]
fn an_input_truncated_while_read_fails_naming_it_and_writes_no_summary() {
    let d = tmp();
    let cfg = config(d.path());
    // The truncation must land while abacus still reads: if the run was faster, retry bigger.
    for (attempt, mb) in [200usize, 400, 800].into_iter().enumerate() {
        let f = big_plain(d.path(), "big.ndjson", mb);
        let len = fs::metadata(&f).unwrap().len();
        let out = d.path().join(format!("out-{attempt}"));
        let r = run(&[&f], &cfg, &out).threads(1);
        let (mut child, _) = spawn(&r.args, None);
        let pid = child.id();
        let t = Instant::now();
        // Until it reads the file: it has read a little of it, or (a reader that maps the file)
        // mapped it. Never before it opened the file, whose size it then takes as the full size.
        let shown = p(&f);
        while !(rchar(pid) >= 1 << 20
            || fs::read_to_string(format!("/proc/{pid}/maps")).is_ok_and(|m| m.contains(&shown)))
            && t.elapsed() < Duration::from_secs(60)
            && child.try_wait().unwrap().is_none()
        {
            std::thread::sleep(Duration::from_millis(1));
        }
        let early = child.try_wait().unwrap().is_none() && rchar(pid) < len;
        fs::OpenOptions::new()
            .write(true)
            .open(&f)
            .unwrap()
            .set_len(len / 2)
            .unwrap();
        let o = finish(child, &r.args);
        if o.code == 0 && !early {
            // Finished (or nearly) before the truncation: not what this test is about.
            fs::remove_file(&f).unwrap();
            continue;
        }
        assert_eq!(o.code, 1, "stderr:\n{}", o.stderr);
        assert!(o.stderr.starts_with("error: "), "{}", o.stderr);
        assert!(o.stderr.contains(&p(&f)), "names the file: {}", o.stderr);
        assert!(
            o.stderr
                .contains(&format!("shrank from {len} to {} bytes", len / 2)),
            "{}",
            o.stderr
        );
        assert!(o.stderr.contains("truncated or replaced"), "{}", o.stderr);
        assert!(
            !out.join("_summary.json").exists(),
            "no summary for a run over an input that changed under it"
        );
        return;
    }
    panic!("abacus always finished before the input could be truncated");
}

// ───────────────────────────── 2. pipes and `-` ─────────────────────────────

#[test]
fn stdin_dev_stdin_and_fifos_give_the_results_of_the_file() {
    let d = tmp();
    let cfg = config(d.path());
    let text = events(150_000);
    assert!(text.len() > 2 * (4 << 20), "several blocks");
    let inputs: [(&str, Vec<u8>); 3] = [
        ("plain.ndjson", text.clone()),
        ("stream.ndjson.zst", zstd_unsized(&text)),
        ("frames.ndjson.zst", zstd_sized_frames(&text, 1 << 20)),
    ];
    for (name, bytes) in inputs {
        let f = write(d.path(), name, &bytes);
        let want_out = d.path().join(format!("{name}-file"));
        run(&[&f], &cfg, &want_out).threads(2).ok();
        let want = counts(&want_out);
        assert_eq!(want.lines, 150_000, "{name}");
        assert_eq!(want.rejected, 150, "{name}");
        let want_rows = rows(&want_out);

        for via in ["-", "/dev/stdin"] {
            let out = d.path().join(format!("{name}-{}", via.replace('/', "_")));
            run(&[Path::new(via)], &cfg, &out)
                .threads(2)
                .stdin(&bytes)
                .ok();
            assert_eq!(counts(&out), want, "{name} via {via}");
            assert!(rows(&out) == want_rows, "{name} via {via}: rows differ");
        }

        let fifo = d.path().join(format!("{name}.fifo"));
        mkfifo(&fifo);
        let writer = feed_fifo(&fifo, bytes.clone());
        let out = d.path().join(format!("{name}-fifo"));
        run(&[&fifo], &cfg, &out).threads(2).ok();
        writer.join().unwrap();
        assert_eq!(counts(&out), want, "{name} via a FIFO");
        assert!(rows(&out) == want_rows, "{name} via a FIFO: rows differ");
    }
}

#[test]
fn a_file_and_stdin_together_and_stdin_only_once() {
    let d = tmp();
    let cfg = config(d.path());
    let text = events(10_000);
    let (a, b) = text.split_at(text.len() / 2 + 17);
    let whole = write(d.path(), "whole.ndjson", &text);
    let first = write(d.path(), "first.ndjson", a);
    let want_out = d.path().join("want");
    run(&[&whole], &cfg, &want_out).ok();
    // The line cut between the two inputs is two broken halves in both runs below.
    let out = d.path().join("out");
    run(&[&first, Path::new("-")], &cfg, &out).stdin(b).ok();
    let both_out = d.path().join("both");
    let second = write(d.path(), "second.ndjson", b);
    run(&[&first, &second], &cfg, &both_out).ok();
    assert_eq!(counts(&out), counts(&both_out));
    assert!(rows(&out) == rows(&both_out));
    assert!(counts(&out).lines > counts(&want_out).lines);

    let o = run(
        &[Path::new("-"), Path::new("-")],
        &cfg,
        &d.path().join("twice"),
    )
    .stdin(b)
    .fails(2);
    assert!(o.stderr.contains("standard input"), "{}", o.stderr);
}

#[test]
fn checkpoints_on_piped_input_are_refused() {
    let d = tmp();
    let cfg = config(d.path());
    let text = events(1000);
    let file = write(d.path(), "a.ndjson", &text);
    let o = run(&[&file, Path::new("-")], &cfg, &d.path().join("out"))
        .arg("--checkpoint-dir")
        .arg(d.path().join("ck"))
        .stdin(&text)
        .fails(2);
    assert!(
        o.stderr
            .contains("--checkpoint-dir cannot be used with piped input (-)"),
        "{}",
        o.stderr
    );
    assert!(
        o.stderr.contains("write the stream to a file first"),
        "{}",
        o.stderr
    );
    assert!(!d.path().join("out").join("_summary.json").exists());

    let fifo = d.path().join("in.fifo");
    mkfifo(&fifo);
    let o = run(&[&fifo], &cfg, &d.path().join("out2"))
        .arg("--checkpoint-dir")
        .arg(d.path().join("ck2"))
        .fails(2);
    assert!(o.stderr.contains(&p(&fifo)), "{}", o.stderr);
}

// ───────────────────────────── 3. skippable frames (pzstd) ─────────────────────────────

#[test]
fn skippable_frames_first_between_and_last_are_skipped() {
    let d = tmp();
    let cfg = config(d.path());
    let text = events(60_000);
    let plain = write(d.path(), "plain.ndjson", &text);
    let want_out = d.path().join("want");
    run(&[&plain], &cfg, &want_out).ok();
    let want = counts(&want_out);
    let want_rows = rows(&want_out);

    let (a, b) = text.split_at(text.len() / 3);
    for (tag, frame) in [
        ("sized", zstd_sized_frames as fn(&[u8], usize) -> Vec<u8>),
        ("unsized", |data: &[u8], _| zstd_unsized(data)),
    ] {
        let mut z = skippable(&[0, 0, 0, 0], 0);
        z.extend(frame(a, 1 << 20));
        z.extend(skippable(&[0xAB; 5000], 7));
        z.extend(frame(b, 1 << 20));
        z.extend(skippable(b"", 0xF));
        let f = write(d.path(), &format!("{tag}.ndjson.zst"), &z);
        let out = d.path().join(format!("out-{tag}"));
        run(&[&f], &cfg, &out).ok();
        assert_eq!(counts(&out), want, "{tag}");
        assert!(rows(&out) == want_rows, "{tag}: rows differ");
        let out = d.path().join(format!("out-{tag}-stdin"));
        run(&[Path::new("-")], &cfg, &out).stdin(&z).ok();
        assert_eq!(counts(&out), want, "{tag} via stdin");
    }

    // A real pzstd file, where the tool is installed (not required).
    if Command::new("pzstd").arg("--version").output().is_ok() {
        let z = d.path().join("real.ndjson.zst");
        let st = Command::new("pzstd")
            .args(["-q", "-p", "2", "-o"])
            .arg(&z)
            .arg(&plain)
            .status()
            .unwrap();
        assert!(st.success());
        let out = d.path().join("out-pzstd");
        run(&[&z], &cfg, &out).ok();
        assert_eq!(counts(&out), want, "pzstd");
    }
}

// ───────────────────────────── 4. bounded memory ─────────────────────────────

#[test]
fn frames_without_content_size_decode_with_bounded_memory() {
    let d = tmp();
    let cfg = config(d.path());
    // Repetitive lines: 64 MB decoded per frame compresses to very little.
    let line_block: Vec<u8> = (0..1000)
        .flat_map(|i| {
            format!(
                "{{\"u\":\"user-{}\",\"t\":{},\"e\":\"open\",\"b\":\"firefox\"}}\n",
                i % 100,
                T0_S + i % 3600
            )
            .into_bytes()
        })
        .collect();
    let frame_text = line_block.repeat((64 << 20) / line_block.len());
    let one = zstd_unsized(&frame_text);
    let z = one.repeat(3);
    assert!(z.len() < 16 << 20);
    let f = write(d.path(), "cat.ndjson.zst", &z);
    let plain = d.path().join("plain.ndjson");
    {
        let mut w = std::io::BufWriter::new(fs::File::create(&plain).unwrap());
        for _ in 0..3 {
            w.write_all(&frame_text).unwrap();
        }
    }
    let plain_out = d.path().join("plain-out");
    let plain_mb = run(&[&plain], &cfg, &plain_out)
        .threads(2)
        .ok()
        .peak_rss_kib
        >> 10;
    let out = d.path().join("out");
    let peak_mb = run(&[&f], &cfg, &out).threads(2).ok().peak_rss_kib >> 10;
    let frame_mb = frame_text.len() as u64 >> 20;
    // Decoding may cost a few blocks more than reading the plain file (~15 MB here), never a
    // decoded frame: decoding each frame whole (the old way) cost 300 MB more.
    assert!(
        peak_mb < plain_mb + 48,
        "peak RSS {peak_mb} MB, {plain_mb} MB for the plain input, for frames of {frame_mb} MB decoded each: \
frames without content size are not decoded in bounded blocks"
    );
    assert_eq!(counts(&out), counts(&plain_out));
    assert!(rows(&out) == rows(&plain_out));
}

// ───────────────────────────── 5. damage in a piped stream ─────────────────────────────

#[test]
fn a_truncated_zstd_stream_on_stdin_keeps_what_decoded_and_fails() {
    let d = tmp();
    let cfg = config(d.path());
    let text = events(150_000);
    let z = zstd_unsized(&text);
    let cut = z.len() / 2;
    let out = d.path().join("out");
    let o = run(&[Path::new("-")], &cfg, &out).stdin(&z[..cut]).fails(1);
    assert!(o.stderr.contains("--skip-corrupt-input"), "{}", o.stderr);
    let corrupt = corrupt_inputs(&out);
    assert_eq!(corrupt.len(), 1);
    assert!(
        corrupt[0].starts_with(&format!("-: at byte {cut}")),
        "{corrupt:?}"
    );
    assert!(corrupt[0].contains("truncated"), "{corrupt:?}");
    // everything that decodes before the cut is counted
    let mut dec = zstd::stream::read::Decoder::new(&z[..cut]).unwrap();
    let mut recovered = Vec::new();
    let mut buf = vec![0u8; 4096];
    while let Ok(n) = dec.read(&mut buf) {
        if n == 0 {
            break;
        }
        recovered.extend_from_slice(&buf[..n]);
    }
    let whole_lines = recovered.iter().filter(|&&b| b == b'\n').count() as u64;
    let c = counts(&out);
    assert!(
        c.lines >= whole_lines,
        "{c:?} < {whole_lines} lines decodable"
    );
    assert!(c.lines <= whole_lines + 1, "{c:?}");

    let out2 = d.path().join("out2");
    run(&[Path::new("-")], &cfg, &out2)
        .stdin(&z[..cut])
        .arg("--skip-corrupt-input")
        .ok();
    assert_eq!(counts(&out2), c);
}

// ───────────────────────────── 7. outputs never become inputs ─────────────────────────────

/// The `*.ndjson.zst` side files (rejected and late lines) a run wrote under `out`.
fn side_files(out: &Path) -> Vec<PathBuf> {
    let mut found = Vec::new();
    let mut dirs = vec![out.to_path_buf()];
    while let Some(dir) = dirs.pop() {
        for e in fs::read_dir(&dir).unwrap() {
            let path = e.unwrap().path();
            if path.is_dir() {
                dirs.push(path);
            } else if p(&path).ends_with(".ndjson.zst") {
                found.push(path);
            }
        }
    }
    found.sort();
    found
}

#[test]
fn a_run_never_reads_its_own_outputs_back() {
    let d = tmp();
    let cfg = config(d.path());
    let data = d.path().join("data");
    write(&data, "a.ndjson", events(20_000));
    write(&data, "sub/b.ndjson.zst", zstd_unsized(&events(5_000)));
    let out = data.join("out");
    let ck = data.join("ck");
    let first = run(&[&data], &cfg, &out).arg("--checkpoint-dir").arg(&ck);
    first.ok();
    let c1 = counts(&out);
    assert!(c1.rejected > 0, "the first run writes rejected/ side files");
    let rows1 = rows(&out);
    let side = side_files(&out);
    assert!(!side.is_empty(), "side files in {}", p(&out));

    // The same run again: the side files in data/out are not inputs.
    run(&[&data], &cfg, &out)
        .arg("--checkpoint-dir")
        .arg(&ck)
        .arg("--overwrite")
        .ok();
    assert_eq!(counts(&out), c1);
    assert!(rows(&out) == rows1);
    assert_eq!(summary(&out)["input_files"], 2, "{}", summary(&out));

    // Naming one of them, or a glob that matches them, is refused.
    let o = run(&[&side[0]], &cfg, &out).arg("--overwrite").fails(2);
    assert!(
        o.stderr.contains("lies inside --out/--checkpoint-dir") && o.stderr.contains(&p(&side[0])),
        "{}",
        o.stderr
    );
    let glob = PathBuf::from(format!("{}/out/*/*.ndjson.zst", p(&data)));
    run(&[&glob], &cfg, &out).arg("--overwrite").fails(2);
}
