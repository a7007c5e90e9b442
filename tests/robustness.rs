//! Hostile input, end to end through the `abacus` binary (and, for the corpus, through the library's
//! parser too).
//!
//! Every reject reason of docs/SEMANTICS.md ("Parsing"), lines that must be skipped or accepted
//! despite looking odd (CRLF, blank, no final newline), over-long lines up to 40 MB, input files that
//! are missing, empty, of the wrong format, truncated or corrupt, broken configs, an output directory
//! that already holds results, and a clean generated workload with garbage sprinkled in that must come
//! out exactly as the clean one.
//!
//! Every run of the binary asserts its exit code and that neither stream mentions a panic; every run
//! that writes `_summary.json` asserts `lines = counted + duplicates + late + rejected`.
//!
//! The hostile-line corpus lives in tests/corpus/lines/ (one line per file, named
//! `<expected>--<case>.line`; regenerate with tests/corpus/make_corpus.py).

mod common;

use std::collections::BTreeMap;
use std::ffi::{OsStr, OsString};
use std::fs;
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

use common::{Counts, REJECT_CODES, Row, read_rows as rows, read_summary as summary};

/// 2024-05-01T00:00:00Z in seconds and milliseconds.
const T0_S: i64 = 1_714_521_600;
const T0: i64 = T0_S * 1000;
const HOUR: i64 = 3_600_000;

// ───────────────────────────── running the binary ─────────────────────────────

struct Outcome {
    code: i32,
    stderr: String,
    /// Peak resident set size of the process in KiB, as last sampled while it ran (Linux; else 0).
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

/// Runs the binary with `args`, collects its output (without pipe deadlocks), samples its memory,
/// and asserts it neither panicked nor was killed.
fn exec(args: &[OsString]) -> Outcome {
    let mut child = Command::new(env!("CARGO_BIN_EXE_abacus"))
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn abacus");
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
    Run { args }
}

impl Run {
    fn arg(mut self, a: impl AsRef<OsStr>) -> Run {
        self.args.push(a.as_ref().to_owned());
        self
    }
    fn threads(self, n: usize) -> Run {
        self.arg("--threads").arg(n.to_string())
    }
    fn go(self) -> Outcome {
        exec(&self.args)
    }
    /// Runs and asserts exit code 0.
    fn ok(self) -> Outcome {
        let args = self.args.clone();
        let o = self.go();
        assert_eq!(o.code, 0, "abacus {args:?} failed:\n{}", o.stderr);
        o
    }
    /// Runs and asserts exit code `code` and a one-line `error:` message on stderr.
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

/// The summary's buckets; asserts `lines = counted + duplicates + late + rejected` and that
/// `rejected_by_reason` adds up to `rejected`.
fn counts(out: &Path) -> Counts {
    let s = summary(out);
    let c = common::balanced_counts(out);
    let by_reason: u64 = reasons(out).values().sum();
    assert_eq!(
        by_reason, c.rejected,
        "rejected_by_reason does not add up to rejected: {s}"
    );
    c
}

fn reasons(out: &Path) -> BTreeMap<String, u64> {
    let s = summary(out);
    s.get("rejected_by_reason")
        .and_then(Value::as_object)
        .unwrap_or_else(|| panic!("_summary.json has no object `rejected_by_reason`: {s}"))
        .iter()
        .map(|(k, v)| (k.clone(), v.as_u64().unwrap()))
        .collect()
}

fn string_list(out: &Path, key: &str) -> Vec<String> {
    let s = summary(out);
    s.get(key)
        .and_then(Value::as_array)
        .unwrap_or_else(|| panic!("_summary.json has no array `{key}`: {s}"))
        .iter()
        .map(|v| v.as_str().unwrap().to_string())
        .collect()
}

/// Decompressed concatenation of `OUT/<sub>/*.ndjson.zst`, in name order (empty if absent).
fn side(out: &Path, sub: &str) -> Vec<u8> {
    let Ok(rd) = fs::read_dir(out.join(sub)) else {
        return Vec::new();
    };
    let mut files: Vec<PathBuf> = rd
        .map(|e| e.unwrap().path())
        .filter(|p| p.to_string_lossy().ends_with(".ndjson.zst"))
        .collect();
    files.sort();
    let mut all = Vec::new();
    for f in files {
        let bytes = fs::read(&f).unwrap();
        let mut d = zstd::stream::decode_all(bytes.as_slice())
            .unwrap_or_else(|e| panic!("{}: not zstd: {e}", f.display()));
        all.append(&mut d);
    }
    all
}

/// One record of `rejected/`.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Rej {
    file: String,
    line: u64,
    offset: u64,
    code: String,
    reason: String,
    raw: String,
}

fn rejected(out: &Path) -> Vec<Rej> {
    let mut v = Vec::new();
    for line in side(out, "_rejected").split(|&b| b == b'\n') {
        if line.is_empty() {
            continue;
        }
        let r: Value = serde_json::from_slice(line).unwrap_or_else(|e| {
            panic!(
                "rejected/ record is not JSON ({e}): {}",
                String::from_utf8_lossy(line)
            )
        });
        let s = |k: &str| {
            r.get(k)
                .and_then(Value::as_str)
                .unwrap_or_else(|| panic!("rejected/ record without string `{k}`: {r}"))
                .to_string()
        };
        let n = |k: &str| {
            r.get(k)
                .and_then(Value::as_u64)
                .unwrap_or_else(|| panic!("rejected/ record without unsigned `{k}`: {r}"))
        };
        let rec = Rej {
            file: s("file"),
            line: n("line"),
            offset: n("offset"),
            code: s("code"),
            reason: s("reason"),
            raw: s("raw"),
        };
        assert!(
            REJECT_CODES.contains(&rec.code.as_str()),
            "unknown code in {r}"
        );
        assert!(rec.line >= 1, "line numbers are 1-based: {r}");
        v.push(rec);
    }
    v
}

/// A hand-written expected row.
fn row(
    et: &str,
    dim: Option<(&str, &str)>,
    window: &str,
    start: i64,
    end: i64,
    u: u64,
    e: u64,
) -> Row {
    Row {
        metric: common::ALL.into(),
        event_type: Some(et.into()),
        dimension: dim.map(|d| d.0.to_string()),
        value: dim.map(|d| d.1.to_string()),
        window: window.into(),
        start_ms: start,
        end_ms: end,
        unique_users: u,
        events: e,
    }
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

/// The default test config: fields u/t/e/id, dimensions `browser` (raw `b`) and `provider` (email
/// domain of `u`), one hourly window, no lateness (nothing is late), plus `extra` TOML.
fn config_text(extra: &str) -> String {
    format!(
        "[fields]\nuser = \"u\"\ntime = \"t\"\nevent_type = \"e\"\nevent_id = \"id\"\n\n\
         [watermark]\nallowed_lateness = \"unbounded\"\n\n{extra}\n\
         [[dimensions]]\nname = \"browser\"\nfield = \"b\"\n\n\
         [[dimensions]]\nname = \"provider\"\nfield = \"u\"\nextract = \"email_domain\"\n\n\
         [[windows]]\nname = \"h\"\nsize = \"1h\"\n"
    )
}

fn config(dir: &Path, extra: &str) -> PathBuf {
    write(dir, "abacus.toml", config_text(extra))
}

/// A valid event line: user, time in seconds, event type.
fn ev(u: &str, t_s: i64, e: &str) -> String {
    format!(r#"{{"u":"{u}","t":{t_s},"e":"{e}"}}"#)
}

fn zstd_single(data: &[u8]) -> Vec<u8> {
    let mut enc = zstd::stream::write::Encoder::new(Vec::new(), 3).unwrap();
    enc.include_checksum(true).unwrap();
    enc.write_all(data).unwrap();
    enc.finish().unwrap()
}

/// Independent zstd frames of `chunk` decoded bytes each, cut anywhere (lines span frames).
fn zstd_frames(data: &[u8], chunk: usize) -> (Vec<u8>, Vec<usize>) {
    let mut z = Vec::new();
    let mut starts = Vec::new();
    for c in data.chunks(chunk) {
        starts.push(z.len());
        z.extend(zstd_single(c));
    }
    (z, starts)
}

/// What the engine should see in `content`: every non-blank line with its 1-based physical line
/// number, decoded byte offset and bytes (one trailing `\r` stripped).
fn split_lines(content: &[u8]) -> Vec<(u64, u64, &[u8])> {
    let mut v = Vec::new();
    let mut off = 0usize;
    for (i, mut line) in content.split(|&b| b == b'\n').enumerate() {
        let start = off;
        off += line.len() + 1;
        if let [rest @ .., b'\r'] = line {
            line = rest;
        }
        if line.trim_ascii().is_empty() {
            continue;
        }
        v.push((i as u64 + 1, start as u64, line));
    }
    v
}

fn lossy(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

fn tmp() -> tempfile::TempDir {
    tempfile::tempdir().unwrap()
}

fn p(path: &Path) -> String {
    path.display().to_string()
}

// ───────────────────────────── every reject reason ─────────────────────────────

enum Expect {
    Ok,
    Skip,
    /// Reject code and fragments the reason must contain.
    Rej(&'static str, &'static [&'static str]),
}

#[test]
fn every_reject_reason_with_code_reason_line_offset_and_raw() {
    use Expect::*;
    let d = tmp();
    let cfg = config(d.path(), "");
    let t = T0_S;
    let e: Vec<(Vec<u8>, Expect)> = vec![
        (
            format!(
                r#"{{"u":"alice@Example.com","t":{},"e":"open","b":"firefox"}}"#,
                t + 1
            )
            .into(),
            Ok,
        ),
        (b"not json".to_vec(), Rej("invalid_json", &["invalid json"])),
        (
            format!(r#"{{"u":"a","t":{t}"#).into(),
            Rej("invalid_json", &["invalid json"]),
        ),
        (
            format!(r#"{{"u":"a","t":{t},"e":"open"}} trailing"#).into(),
            Rej("invalid_json", &["invalid json"]),
        ),
        (
            b"{'u':'a'}".to_vec(),
            Rej("invalid_json", &["invalid json"]),
        ),
        (b"".to_vec(), Skip),
        (
            b"[1,2,3]".to_vec(),
            Rej("not_an_object", &["not an object", "JSON array"]),
        ),
        (
            b"42".to_vec(),
            Rej("not_an_object", &["not an object", "JSON number"]),
        ),
        (
            b"\"just a string\"".to_vec(),
            Rej("not_an_object", &["not an object", "JSON string"]),
        ),
        (
            b"true".to_vec(),
            Rej("not_an_object", &["not an object", "JSON boolean"]),
        ),
        (
            b"null".to_vec(),
            Rej("not_an_object", &["not an object", "JSON null"]),
        ),
        (
            format!(
                r#"{{"u":"bob@example.com","t":{},"e":"open","b":null,"id":"x"}}"#,
                t + 2
            )
            .into(),
            Ok,
        ),
        (
            format!(r#"{{"t":{t},"e":"open"}}"#).into(),
            Rej("missing_user", &["missing user"]),
        ),
        (
            format!(r#"{{"u":null,"t":{t},"e":"open"}}"#).into(),
            Rej("missing_user", &["missing user"]),
        ),
        (
            format!(r#"{{"u":"","t":{t},"e":"open"}}"#).into(),
            Rej("missing_user", &["missing user"]),
        ),
        (
            format!(r#"{{"u":5,"t":{t},"e":"open"}}"#).into(),
            Rej(
                "wrong_type",
                &["wrong type", "field `u` is a number", "expected a string"],
            ),
        ),
        (
            format!(r#"{{"u":true,"t":{t},"e":"open"}}"#).into(),
            Rej("wrong_type", &["field `u`", "boolean"]),
        ),
        (
            format!(r#"{{"u":["a"],"t":{t},"e":"open"}}"#).into(),
            Rej("wrong_type", &["field `u`", "array"]),
        ),
        (b"  \t ".to_vec(), Skip),
        (
            br#"{"u":"a","e":"open"}"#.to_vec(),
            Rej("missing_time", &["missing time"]),
        ),
        (
            br#"{"u":"a","t":null,"e":"open"}"#.to_vec(),
            Rej("missing_time", &["missing time"]),
        ),
        (
            br#"{"u":"a","t":"yesterday","e":"open"}"#.to_vec(),
            Rej("invalid_time", &["invalid time", "`yesterday`", "RFC 3339"]),
        ),
        (
            br#"{"u":"a","t":true,"e":"open"}"#.to_vec(),
            Rej("invalid_time", &["invalid time", "field `t`", "boolean"]),
        ),
        (
            br#"{"u":"a","t":"2024-02-30T00:00:00Z","e":"open"}"#.to_vec(),
            Rej("invalid_time", &["invalid time", "2024-02-30"]),
        ),
        (
            br#"{"u":"a","t":"2024-05-01T00:00:00","e":"open"}"#.to_vec(),
            Rej("invalid_time", &["invalid time"]),
        ),
        (
            br#"{"u":"a","t":-1,"e":"open"}"#.to_vec(),
            Rej(
                "time_out_of_range",
                &[
                    "time out of range",
                    "1969-12-31T23:59:59.000Z",
                    "time_min..time_max",
                ],
            ),
        ),
        (
            br#"{"u":"a","t":"1969-12-31T23:59:59.999Z","e":"open"}"#.to_vec(),
            Rej("time_out_of_range", &["1969-12-31T23:59:59.999Z"]),
        ),
        (
            br#"{"u":"a","t":4102444800,"e":"open"}"#.to_vec(),
            Rej("time_out_of_range", &["2100-01-01T00:00:00.000Z"]),
        ),
        (
            br#"{"u":"a","t":"2100-01-01T00:00:00Z","e":"open"}"#.to_vec(),
            Rej("time_out_of_range", &["2100-01-01T00:00:00.000Z"]),
        ),
        (
            format!(
                r#"{{"u":"caf\u00e9@x.org","t":{},"e":"open","b":""}}"#,
                t + 3
            )
            .into(),
            Ok,
        ),
        (
            format!(r#"{{"u":"a","t":{t}}}"#).into(),
            Rej("missing_event_type", &["missing event type"]),
        ),
        (
            format!(r#"{{"u":"a","t":{t},"e":null}}"#).into(),
            Rej("missing_event_type", &["missing event type"]),
        ),
        (
            format!(r#"{{"u":"a","t":{t},"e":""}}"#).into(),
            Rej("missing_event_type", &["missing event type"]),
        ),
        (
            format!(r#"{{"u":"a","t":{t},"e":7}}"#).into(),
            Rej(
                "wrong_type",
                &["field `e` is a number", "expected a string"],
            ),
        ),
        (
            format!(r#"{{"u":"a","t":{t},"e":"open","id":1.5}}"#).into(),
            Rej(
                "wrong_type",
                &["field `id` is a number", "a string or an integer"],
            ),
        ),
        (
            format!(r#"{{"u":"a","t":{t},"e":"open","id":[1]}}"#).into(),
            Rej("wrong_type", &["field `id`", "array"]),
        ),
        (
            format!(r#"{{"u":"a","t":{t},"e":"open","b":3}}"#).into(),
            Rej(
                "wrong_type",
                &["wrong type", "field `b` is a number", "expected a string"],
            ),
        ),
        (
            format!(r#"{{"u":"a","t":{t},"e":"open","b":{{"x":1}}}}"#).into(),
            Rej("wrong_type", &["field `b`", "object"]),
        ),
        (
            format!(r#"{{"u":"a","t":{t},"e":"open","b":true}}"#).into(),
            Rej("wrong_type", &["field `b`", "boolean"]),
        ),
        (
            r#"{"u":"café@x.org","t":"2024-05-01T00:30:00Z","e":"open"}"#
                .as_bytes()
                .to_vec(),
            Ok,
        ),
        (
            [
                &br#"{"u":"a"#[..],
                b"\xff\xfe",
                format!(r#"","t":{t},"e":"open"}}"#).as_bytes(),
            ]
            .concat(),
            Rej("invalid_utf8", &["invalid utf-8"]),
        ),
        (
            b"\xc3\x28".to_vec(),
            Rej("invalid_utf8", &["invalid utf-8"]),
        ),
        (
            b"{\"u\":\"\xed\xa0\x80\",\"t\":1714521600,\"e\":\"open\"}".to_vec(),
            Rej("invalid_utf8", &["invalid utf-8"]),
        ),
        // binary junk without NUL bytes (those are tested apart: in a file's first 4 KiB they make
        // the whole file count as binary)
        (
            b"\x01\x02\x7f\x80\xfe\xff junk \x1b[0m".to_vec(),
            Rej("invalid_utf8", &["invalid utf-8"]),
        ),
        (
            b"\x01\x02\x03\x1b[31m".to_vec(),
            Rej("invalid_json", &["invalid json"]),
        ),
        (
            format!(
                r#"{{"u":"bob@example.com","t":{},"e":"click","id":7,"b":"chrome"}}"#,
                T0 + 5000
            )
            .into(),
            Ok,
        ),
        (br#"{"u":"carol","t":0,"e":"open"}"#.to_vec(), Ok),
        (
            br#"{"u":"dave@X.org","t":4102444799,"e":"open"}"#.to_vec(),
            Ok,
        ),
        // the documented order of the checks: UTF-8, JSON, object, user, time, event type, id, dimensions
        (
            b"{\"u\":\"\xff".to_vec(),
            Rej("invalid_utf8", &["invalid utf-8"]),
        ),
        (
            b"[\"\xff\"]".to_vec(),
            Rej("invalid_utf8", &["invalid utf-8"]),
        ),
        (
            br#"[{"t":"x"}]"#.to_vec(),
            Rej("not_an_object", &["JSON array"]),
        ),
        (
            br#"{"t":"bad","e":5}"#.to_vec(),
            Rej("missing_user", &["missing user"]),
        ),
        (
            br#"{"u":"a","t":"bad","e":5}"#.to_vec(),
            Rej("invalid_time", &["`bad`"]),
        ),
        (
            format!(r#"{{"u":"a","t":{t},"id":[1],"b":5}}"#).into(),
            Rej("missing_event_type", &["missing event type"]),
        ),
        (
            format!(r#"{{"u":"a","t":{t},"e":"x","id":[1],"b":5}}"#).into(),
            Rej("wrong_type", &["field `id`"]),
        ),
    ];
    let mut content = Vec::new();
    let mut offsets = Vec::new();
    for (line, _) in &e {
        offsets.push(content.len() as u64);
        content.extend_from_slice(line);
        content.push(b'\n');
    }
    let input = write(d.path(), "events.ndjson", &content);
    let out = d.path().join("out");
    run(&[&input], &cfg, &out).threads(2).ok();

    let want_rejects: Vec<(usize, &'static str, &'static [&'static str])> = e
        .iter()
        .enumerate()
        .filter_map(|(i, (_, x))| match x {
            Rej(c, f) => Some((i, *c, *f)),
            _ => None,
        })
        .collect();
    let n_ok = e.iter().filter(|x| matches!(x.1, Ok)).count() as u64;
    let c = counts(&out);
    assert_eq!(
        c,
        Counts {
            lines: n_ok + want_rejects.len() as u64,
            counted: n_ok,
            duplicates: 0,
            late: 0,
            rejected: want_rejects.len() as u64
        }
    );
    let mut by_code: BTreeMap<String, u64> = BTreeMap::new();
    for (_, code, _) in &want_rejects {
        *by_code.entry(code.to_string()).or_default() += 1;
    }
    assert_eq!(reasons(&out), by_code);

    let got = rejected(&out);
    assert_eq!(got.len(), want_rejects.len());
    for (r, (i, code, frags)) in got.iter().zip(&want_rejects) {
        let what = format!("line {} ({:?}): {r:?}", i + 1, lossy(&e[*i].0));
        assert_eq!(r.file, p(&input), "{what}");
        assert_eq!(r.line, *i as u64 + 1, "{what}");
        assert_eq!(r.offset, offsets[*i], "{what}");
        assert_eq!(r.code, *code, "{what}");
        assert_eq!(r.raw, lossy(&e[*i].0), "{what}");
        for f in *frags {
            assert!(r.reason.contains(f), "reason should mention {f:?}: {what}");
        }
    }

    // The accepted lines, by hand. `caf\u00e9` and `café` are one user; `dave@X.org` → `x.org`.
    let h = |k: i64| (k * HOUR, (k + 1) * HOUR);
    let (a, b) = h(T0 / HOUR);
    let (y0, y1) = h(0);
    let (z0, z1) = h(4_102_444_799_000 / HOUR);
    let want = vec![
        row("click", None, "h", a, b, 1, 1),
        row("click", Some(("browser", "chrome")), "h", a, b, 1, 1),
        row("click", Some(("provider", "example.com")), "h", a, b, 1, 1),
        row("open", None, "h", y0, y1, 1, 1),
        row("open", None, "h", a, b, 3, 4),
        row("open", Some(("browser", "firefox")), "h", a, b, 1, 1),
        row("open", Some(("provider", "example.com")), "h", a, b, 2, 2),
        row("open", Some(("provider", "x.org")), "h", a, b, 1, 2),
        row("open", None, "h", z0, z1, 1, 1),
        row("open", Some(("provider", "x.org")), "h", z0, z1, 1, 1),
    ];
    let mut want = want;
    want.sort();
    assert_eq!(rows(&out), want);
    assert!(side(&out, "_late").is_empty());
}

// ───────────────────────────── line length ─────────────────────────────

/// A valid event padded with an extra field to exactly `len` bytes.
fn padded_event(user: &str, t_s: i64, len: usize) -> Vec<u8> {
    let base = format!(r#"{{"u":"{user}","t":{t_s},"e":"open","pad":""}}"#);
    assert!(base.len() <= len);
    let line = format!(
        r#"{{"u":"{user}","t":{t_s},"e":"open","pad":"{}"}}"#,
        "p".repeat(len - base.len())
    );
    assert_eq!(line.len(), len);
    line.into_bytes()
}

#[test]
fn lines_longer_than_max_line_bytes_are_rejected() {
    let d = tmp();
    let cfg = config(d.path(), "[limits]\nmax_line_bytes = 300\n");
    let junk301: Vec<u8> = (0..301)
        .map(|i| if i % 2 == 0 { 0xff } else { b'x' })
        .collect();
    let lines: Vec<Vec<u8>> = vec![
        padded_event("exactly300", T0_S, 300),
        [padded_event("exactly300-crlf", T0_S, 300), b"\r".to_vec()].concat(), // the \r is not part of the line
        padded_event("over-by-one", T0_S, 301),
        junk301.clone(), // length is checked before UTF-8
        padded_event("five-thousand", T0_S, 5000),
        ev("after", T0_S, "open").into_bytes(),
    ];
    let content: Vec<u8> = lines
        .iter()
        .flat_map(|l| [l.as_slice(), b"\n"].concat())
        .collect();
    let input = write(d.path(), "long.ndjson", &content);
    let out = d.path().join("out");
    run(&[&input], &cfg, &out).ok();
    assert_eq!(
        counts(&out),
        Counts {
            lines: 6,
            counted: 3,
            duplicates: 0,
            late: 0,
            rejected: 3
        }
    );
    assert_eq!(
        reasons(&out),
        BTreeMap::from([("line_too_long".to_string(), 3)])
    );
    let r = rejected(&out);
    let offset = |i: usize| lines[..i].iter().map(|l| l.len() as u64 + 1).sum::<u64>();
    for (rec, (i, len)) in r.iter().zip([(2usize, 301usize), (3, 301), (4, 5000)]) {
        assert_eq!((rec.line, rec.offset), (i as u64 + 1, offset(i)), "{rec:?}");
        assert_eq!(rec.code, "line_too_long");
        assert_eq!(
            rec.reason,
            format!("line too long: {len} bytes, the limit is 300 ([limits] max_line_bytes)")
        );
        assert_eq!(rec.raw, lossy(&lines[i]));
    }
    let (a, b) = (T0, T0 + HOUR);
    assert_eq!(rows(&out), vec![row("open", None, "h", a, b, 3, 3)]);
}

#[test]
fn a_40_mb_line_under_the_default_limit_is_rejected_without_crashing() {
    let d = tmp();
    let cfg = config(d.path(), "");
    let mut content = Vec::new();
    content.extend(ev("first", T0_S, "open").bytes());
    content.push(b'\n');
    let big_at = content.len() as u64;
    content.extend(br#"{"u":""#);
    content.resize(content.len() + (40 << 20), b'x');
    content.extend(format!(r#"","t":{T0_S},"e":"open"}}"#).bytes());
    content.push(b'\n');
    content.extend(ev("third", T0_S, "open").bytes());
    content.push(b'\n');
    let bad_at = content.len() as u64;
    content.extend(b"{oops}\n");
    let big_len = (40 << 20) + 6 + format!(r#"","t":{T0_S},"e":"open"}}"#).len();
    let input = write(d.path(), "big.ndjson", &content);
    drop(content);
    let out = d.path().join("out");
    let o = run(&[&input], &cfg, &out).threads(2).ok();
    assert_eq!(
        counts(&out),
        Counts {
            lines: 4,
            counted: 2,
            duplicates: 0,
            late: 0,
            rejected: 2
        }
    );
    let r = rejected(&out);
    assert_eq!(r.len(), 2);
    assert_eq!(
        (r[0].line, r[0].offset, r[0].code.as_str()),
        (2, big_at, "line_too_long")
    );
    assert_eq!(
        r[0].reason,
        format!("line too long: {big_len} bytes, the limit is 1048576 ([limits] max_line_bytes)")
    );
    assert!(r[0].raw.starts_with(r#"{"u":"xxxxxxxx"#));
    assert_eq!(
        (r[1].line, r[1].offset, r[1].code.as_str()),
        (4, bad_at, "invalid_json")
    );
    assert_eq!(
        rows(&out),
        vec![row("open", None, "h", T0, T0 + HOUR, 2, 2)]
    );
    if cfg!(target_os = "linux") {
        // The line itself is 40 MiB; a few copies of it are fine, an unbounded blow-up is not.
        assert!(
            o.peak_rss_kib < 512 * 1024,
            "peak RSS {} MiB for a 40 MiB line",
            o.peak_rss_kib / 1024
        );
    }
}

// ───────────────────────────── binary junk ─────────────────────────────

#[test]
fn binary_junk_lines_are_rejected_and_a_binary_file_is_refused() {
    let d = tmp();
    let cfg = config(d.path(), "");
    let mut content = Vec::new();
    for i in 0..200 {
        content.extend(ev(&format!("before{i}"), T0_S + i, "open").bytes());
        content.push(b'\n');
    }
    assert!(
        content.len() > 4096,
        "junk must come after the first 4 KiB the format sniffer reads"
    );
    let junk_start = content.len();
    content.extend(b"\x00\x00\x00\x00\n");
    content.extend(b"PK\x03\x04\x00\x00\x08\x00junk\n");
    content.extend(b"\x7fELF\x02\x01\x01\x00\x00\x00\n");
    let random = fs::read(corpus_dir().join("random.bin")).unwrap();
    content.extend(&random);
    content.push(b'\n');
    let junk_end = content.len();
    for i in 0..200 {
        content.extend(ev(&format!("after{i}"), T0_S + i, "open").bytes());
        content.push(b'\n');
    }
    let input = write(d.path(), "junk.ndjson", &content);
    let out = d.path().join("out");
    run(&[&input], &cfg, &out).ok();
    let want: Vec<(u64, u64, String)> = split_lines(&content)
        .into_iter()
        .filter(|(_, off, _)| (*off as usize) >= junk_start && (*off as usize) < junk_end)
        .map(|(l, o, b)| (l, o, lossy(b)))
        .collect();
    assert!(want.len() >= 4);
    let c = counts(&out);
    assert_eq!(
        c,
        Counts {
            lines: 400 + want.len() as u64,
            counted: 400,
            duplicates: 0,
            late: 0,
            rejected: want.len() as u64
        }
    );
    let got: Vec<(u64, u64, String)> = rejected(&out)
        .into_iter()
        .map(|r| (r.line, r.offset, r.raw))
        .collect();
    assert_eq!(got, want);
    assert_eq!(
        rows(&out),
        vec![row("open", None, "h", T0, T0 + HOUR, 400, 400)]
    );

    // A file that is binary from the start is refused by name, not parsed line by line.
    let bin = corpus_dir().join("random.bin");
    let o = run(&[&bin], &cfg, &d.path().join("out2")).fails(1);
    assert!(
        o.stderr.contains(&p(&bin)) && o.stderr.contains("binary"),
        "{}",
        o.stderr
    );
}

// ───────────────────────────── line endings, blank lines ─────────────────────────────

#[test]
fn crlf_blank_lines_and_missing_final_newline() {
    let d = tmp();
    let cfg = config(d.path(), "");
    // CRLF everywhere, blank and whitespace-only lines (skipped, not counted), last line without newline
    let a = [
        ev("a1", T0_S, "open"),
        "\r\n".into(),
        "\r\n".into(),
        "\n".into(),
        "   \t  \n".into(),
        " \x0c \r\n".into(),
        ev("a2", T0_S + 1, "open"),
        "\r\n".into(),
        "not json\r\n".into(),
        ev("a3", T0_S + 2, "open"),
    ]
    .concat();
    // Its last line has no newline and is garbage; the next file's first line must not be glued to it.
    let b = [ev("b1", T0_S, "open"), "\n".into(), "{\"u\":\"b2\"".into()].concat();
    let c = [ev("c1", T0_S, "open"), "\n\n\n".into(), "\r".into()].concat();
    let only_blank = "\n\r\n   \n\t\n";
    let fa = write(d.path(), "a.ndjson", &a);
    let fb = write(d.path(), "b.ndjson", &b);
    let fc = write(d.path(), "c.ndjson", &c);
    let fblank = write(d.path(), "blank.ndjson", only_blank);
    let out = d.path().join("out");
    run(&[&fa, &fb, &fblank, &fc], &cfg, &out).ok();
    assert_eq!(
        counts(&out),
        Counts {
            lines: 7,
            counted: 5,
            duplicates: 0,
            late: 0,
            rejected: 2
        }
    );
    let r = rejected(&out);
    let a_bad = a.find("not json").unwrap() as u64;
    let b_bad = b.find("{\"u\":\"b2\"").unwrap() as u64;
    assert_eq!(
        r.iter()
            .map(|r| (
                r.file.clone(),
                r.line,
                r.offset,
                r.raw.clone(),
                r.code.clone()
            ))
            .collect::<Vec<_>>(),
        vec![
            (p(&fa), 7, a_bad, "not json".into(), "invalid_json".into()),
            (
                p(&fb),
                2,
                b_bad,
                "{\"u\":\"b2\"".into(),
                "invalid_json".into()
            ),
        ]
    );
    assert_eq!(
        rows(&out),
        vec![row("open", None, "h", T0, T0 + HOUR, 5, 5)]
    );

    // A file of blank lines only: nothing read, nothing written, exit 0.
    let out2 = d.path().join("out2");
    run(&[&fblank], &cfg, &out2).ok();
    assert_eq!(counts(&out2), Counts::default());
    assert!(rows(&out2).is_empty());
}

// ───────────────────────────── rejected/ positions ─────────────────────────────

/// Content with good lines (`{"u":…`) and junk lines (never starting with `{"u"`) mixed, CRLF and
/// blank lines sprinkled in; `seed` varies it.
fn mixed_content(n: usize, seed: u64) -> Vec<u8> {
    let mut s = seed
        .wrapping_mul(6364136223846793005)
        .wrapping_add(1442695040888963407);
    let mut next = move || {
        s = s
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        s >> 33
    };
    let junk: [&[u8]; 8] = [
        b"#junk",
        b"[1,2]",
        b"{\"x\":1}",
        b"{\"t\":1714521600,\"u\":5}",
        b"\xff\xfe\xfd",
        b"{\"e\":\"open\",\"u\":null}",
        b"\"str\"",
        b"{\"t\":",
    ];
    let mut v = Vec::new();
    for i in 0..n {
        let r = next();
        match r % 97 {
            0..=2 => {
                v.extend_from_slice(junk[(r / 97) as usize % junk.len()]);
                v.extend(format!(" {i}").bytes()); // make every junk line distinct
            }
            3 => v.extend(b"   "),
            4 => {}
            _ => v.extend(
                ev(
                    &format!("user{}", r % 5000),
                    T0_S + (i as i64 % 7200),
                    "open",
                )
                .bytes(),
            ),
        }
        if r % 5 == 0 {
            v.push(b'\r');
        }
        v.push(b'\n');
    }
    v
}

/// The rejected records the engine must write for `files` (label, decoded content), in order.
fn expected_rejects(files: &[(String, &[u8])]) -> Vec<(String, u64, u64, String)> {
    let mut v = Vec::new();
    for (label, content) in files {
        for (line, off, bytes) in split_lines(content) {
            if !bytes.starts_with(b"{\"u\"") {
                v.push((label.clone(), line, off, lossy(bytes)));
            }
        }
    }
    v
}

fn got_rejects(out: &Path) -> Vec<(String, u64, u64, String)> {
    rejected(out)
        .into_iter()
        .map(|r| (r.file, r.line, r.offset, r.raw))
        .collect()
}

#[test]
fn rejected_positions_across_files_and_inside_zstd() {
    let d = tmp();
    let cfg = config(d.path(), "");
    let a = mixed_content(3000, 1);
    let b = mixed_content(3000, 2);
    let c = mixed_content(3000, 3);
    let mut e = mixed_content(500, 4);
    e.extend(b"last line junk, no newline");
    let fa = write(d.path(), "a.ndjson", &a);
    let fb = write(d.path(), "b.ndjson.zst", zstd_single(&b));
    // frames cut every 1000 decoded bytes: lines straddle frames
    let fc = write(d.path(), "c.ndjson.zst", zstd_frames(&c, 1000).0);
    let fe = write(d.path(), "e.jsonl", &e);
    let want = expected_rejects(&[(p(&fa), &a), (p(&fb), &b), (p(&fc), &c), (p(&fe), &e)]);
    assert!(want.len() > 100);
    let total_lines: usize = [&a, &b, &c, &e].iter().map(|x| split_lines(x).len()).sum();
    // default batches with 1 and 3 threads, then tiny batches (down to one byte: every line is cut)
    for (threads, batch) in [
        (1, None),
        (3, None),
        (2, Some(1)),
        (2, Some(100)),
        (2, Some(4096)),
    ] {
        let out = d.path().join(format!("out{threads}-{batch:?}"));
        let mut r = run(&[&fa, &fb, &fc, &fe], &cfg, &out).threads(threads);
        if let Some(b) = batch {
            r = r.arg("--batch-size").arg(b.to_string());
        }
        r.ok();
        let cn = counts(&out);
        assert_eq!(cn.lines, total_lines as u64);
        assert_eq!(cn.rejected, want.len() as u64);
        assert_eq!(
            got_rejects(&out),
            want,
            "threads = {threads}, --batch-size {batch:?}"
        );
        assert!(
            rows(&out) == rows(&d.path().join("out1-None")),
            "--batch-size {batch:?}: rows differ"
        );
    }
    // The good lines alone give the same rows: rejected lines take part in nothing.
    let good: Vec<u8> = [&a, &b, &c, &e]
        .iter()
        .flat_map(|x| split_lines(x))
        .filter(|(_, _, l)| l.starts_with(b"{\"u\""))
        .flat_map(|(_, _, l)| [l, b"\n"].concat())
        .collect();
    let fg = write(d.path(), "good.ndjson", &good);
    let out_g = d.path().join("out-good");
    run(&[&fg], &cfg, &out_g).ok();
    assert_eq!(rows(&d.path().join("out1-None")), rows(&out_g));
}

#[test]
fn rejected_positions_across_batch_and_block_boundaries() {
    // > 16 MiB decoded (the batch size) and > 4 MiB (the block size), plain and zstd, one and several
    // frames: line numbers and offsets must not drift at any boundary.
    let d = tmp();
    let cfg = config(d.path(), "");
    let content = mixed_content(500_000, 9);
    assert!(content.len() > 17 << 20, "{} bytes", content.len());
    let plain = write(d.path(), "big.ndjson", &content);
    let single = write(d.path(), "big1.ndjson.zst", zstd_single(&content));
    let multi = write(
        d.path(),
        "bigm.ndjson.zst",
        zstd_frames(&content, (1 << 20) + 7).0,
    );
    let lines = split_lines(&content).len() as u64;
    let mut rows_first = None;
    for (f, threads) in [(&plain, 1), (&plain, 2), (&single, 2), (&multi, 2)] {
        let out = d.path().join(format!(
            "out-{}-{threads}",
            f.file_name().unwrap().to_string_lossy()
        ));
        run(&[f], &cfg, &out).threads(threads).ok();
        let want = expected_rejects(&[(p(f), &content)]);
        let cn = counts(&out);
        assert_eq!(
            (cn.lines, cn.rejected),
            (lines, want.len() as u64),
            "{}",
            f.display()
        );
        assert_eq!(got_rejects(&out), want, "{} threads {threads}", f.display());
        let r = rows(&out);
        match &rows_first {
            None => rows_first = Some(r),
            Some(first) => assert!(first == &r, "{}: rows differ", f.display()),
        }
    }
}

// ───────────────────────────── --max-rejected ─────────────────────────────

/// 20 lines, 6 of them rejected.
fn twenty_lines_six_bad(dir: &Path) -> PathBuf {
    let mut s = String::new();
    for i in 0..20 {
        if i % 3 == 1 && i < 18 {
            s += &format!("bad line {i}\n");
        } else {
            s += &ev(&format!("u{i}"), T0_S + i, "open");
            s += "\n";
        }
    }
    write(dir, "twenty.ndjson", s)
}

#[test]
fn max_rejected_count_and_percentage() {
    let d = tmp();
    let cfg = config(d.path(), "");
    let input = twenty_lines_six_bad(d.path());
    let out = |n: &str| d.path().join(n);

    let o = run(&[&input], &cfg, &out("o5"))
        .arg("--max-rejected")
        .arg("5")
        .fails(3);
    assert!(
        o.stderr
            .contains("6 lines rejected, more than --max-rejected 5"),
        "{}",
        o.stderr
    );
    assert!(
        o.stderr.contains("rejected-00000.ndjson.zst"),
        "the message says where the lines are: {}",
        o.stderr
    );

    run(&[&input], &cfg, &out("o6"))
        .arg("--max-rejected")
        .arg("6")
        .ok();
    assert_eq!(counts(&out("o6")).rejected, 6);

    run(&[&input], &cfg, &out("p50"))
        .arg("--max-rejected")
        .arg("50%")
        .ok();
    assert_eq!(
        counts(&out("p50")),
        Counts {
            lines: 20,
            counted: 14,
            duplicates: 0,
            late: 0,
            rejected: 6
        }
    );
    assert_eq!(rejected(&out("p50")).len(), 6);

    let o = run(&[&input], &cfg, &out("p25"))
        .arg("--max-rejected")
        .arg("25%")
        .fails(3);
    assert!(
        o.stderr
            .contains("6 of 20 lines rejected (30.000%), more than --max-rejected 25%"),
        "{}",
        o.stderr
    );
    // the file the message names exists (it used to name the next, never written, file)
    let named = out("p25")
        .join("_rejected")
        .join("rejected-00000.ndjson.zst");
    assert!(
        o.stderr.contains(&p(&named)) && named.is_file(),
        "{}",
        o.stderr
    );
    // a percentage is only known at the end: the results and the side file are complete
    assert_eq!(counts(&out("p25")).rejected, 6);
    assert_eq!(rejected(&out("p25")).len(), 6);

    run(&[&input], &cfg, &out("p30"))
        .arg("--max-rejected")
        .arg("30%")
        .ok();

    for bad in ["abc", "150%", "-1", "x%"] {
        let o = run(&[&input], &cfg, &out("bad"))
            .arg(format!("--max-rejected={bad}"))
            .go();
        assert_eq!(o.code, 2, "--max-rejected {bad}: {}", o.stderr);
        assert!(o.stderr.contains("--max-rejected"), "{}", o.stderr);
    }
}

#[test]
fn max_rejected_count_leaves_the_file_it_names() {
    let d = tmp();
    let cfg = config(d.path(), "");
    let input = twenty_lines_six_bad(d.path());
    let out = d.path().join("out");
    let o = run(&[&input], &cfg, &out)
        .arg("--max-rejected")
        .arg("5")
        .fails(3);
    let named = out.join("_rejected").join("rejected-00000.ndjson.zst");
    assert!(o.stderr.contains(&p(&named)), "{}", o.stderr);
    assert!(
        named.is_file(),
        "{} does not exist; the message points at it",
        named.display()
    );
    assert_eq!(rejected(&out).len(), 6);
}

fn corpus_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests")
        .join("corpus")
}

// ───────────────────────────── input files that are missing, empty or not NDJSON ─────────────────────────────

#[test]
fn missing_input_file_fails_naming_it_before_writing_anything() {
    let d = tmp();
    let cfg = config(d.path(), "");
    let good = write(d.path(), "good.ndjson", ev("a", T0_S, "open") + "\n");
    let missing = d.path().join("no-such-file.ndjson");
    let out = d.path().join("out");
    let o = run(&[&good, &missing], &cfg, &out).fails(1);
    assert!(o.stderr.contains(&p(&missing)), "{}", o.stderr);
    assert!(o.stderr.contains("no such file"), "{}", o.stderr);
    assert!(
        !out.join("_summary.json").exists(),
        "inputs are checked before any work starts"
    );
}

#[test]
fn directory_without_inputs_and_glob_matching_nothing() {
    let d = tmp();
    let cfg = config(d.path(), "");
    let dir = d.path().join("logs");
    write(&dir, "README.txt", "not an input");
    write(&dir, "sub/data.csv", "a,b\n");
    let o = run(&[&dir], &cfg, &d.path().join("o1")).fails(1);
    assert!(
        o.stderr.contains(&p(&dir)) && o.stderr.contains("holds no"),
        "{}",
        o.stderr
    );

    let pattern = d.path().join("nothing-here-*.ndjson.zst");
    let o = run(&[&pattern], &cfg, &d.path().join("o2")).fails(1);
    assert!(
        o.stderr.contains(&p(&pattern)) && o.stderr.contains("matches no file"),
        "{}",
        o.stderr
    );

    // … and the positive controls: a directory (recursive, other files ignored) and a glob.
    write(&dir, "a.ndjson", ev("a", T0_S, "open") + "\n");
    write(
        &dir,
        "sub/b.jsonl.zst",
        zstd_single((ev("b", T0_S, "open") + "\n").as_bytes()),
    );
    let out = d.path().join("o3");
    run(&[&dir], &cfg, &out).ok();
    assert_eq!(counts(&out).counted, 2);
    let glob = dir.join("*.ndjson");
    let out = d.path().join("o4");
    run(&[&glob], &cfg, &out).ok();
    assert_eq!(counts(&out).counted, 1);
}

#[test]
fn empty_files_warn_and_succeed() {
    let d = tmp();
    let cfg = config(d.path(), "");
    let empty = write(d.path(), "empty.ndjson", "");
    let empty_zst = write(d.path(), "empty.ndjson.zst", "");
    let zst_of_nothing = write(d.path(), "nothing.ndjson.zst", zstd_single(b""));
    let good = write(d.path(), "good.ndjson", ev("a", T0_S, "open") + "\n");
    let out = d.path().join("out");
    run(&[&empty], &cfg, &out).ok();
    assert_eq!(counts(&out), Counts::default());
    assert_eq!(
        string_list(&out, "warnings"),
        vec![format!("{}: the file is empty", p(&empty))]
    );
    assert!(rows(&out).is_empty());

    let out = d.path().join("out2");
    run(&[&empty, &good, &empty_zst, &zst_of_nothing], &cfg, &out).ok();
    assert_eq!(
        counts(&out),
        Counts {
            lines: 1,
            counted: 1,
            ..Counts::default()
        }
    );
    let w = string_list(&out, "warnings");
    assert!(
        w.contains(&format!("{}: the file is empty", p(&empty))),
        "{w:?}"
    );
    assert!(
        w.contains(&format!("{}: the file is empty", p(&empty_zst))),
        "{w:?}"
    );
    assert!(string_list(&out, "corrupt_inputs").is_empty());
    assert_eq!(
        rows(&out),
        vec![row("open", None, "h", T0, T0 + HOUR, 1, 1)]
    );
}

#[test]
fn wrong_formats_are_refused_by_name() {
    let d = tmp();
    let cfg = config(d.path(), "");
    // gzip (a real one, from the corpus), under a misleading name too
    let gz = corpus_dir().join("events.ndjson.gz");
    let o = run(&[&gz], &cfg, &d.path().join("o1")).fails(1);
    assert!(
        o.stderr.contains(&p(&gz)) && o.stderr.contains("gzip"),
        "{}",
        o.stderr
    );
    let disguised = write(d.path(), "really-plain.ndjson", fs::read(&gz).unwrap());
    let o = run(&[&disguised], &cfg, &d.path().join("o2")).fails(1);
    assert!(
        o.stderr.contains(&p(&disguised)) && o.stderr.contains("gzip"),
        "{}",
        o.stderr
    );

    // Parquet: abacus's own output fed back by mistake
    let input = write(d.path(), "in.ndjson", ev("a", T0_S, "open") + "\n");
    let out = d.path().join("results");
    run(&[&input], &cfg, &out).ok();
    let part = out.join("part-00000.parquet");
    assert!(part.is_file());
    let o = run(&[&part], &cfg, &d.path().join("o3")).fails(1);
    assert!(
        o.stderr.contains(&p(&part)) && o.stderr.contains("Parquet"),
        "{}",
        o.stderr
    );
    let o = run(&[&input, &part], &cfg, &d.path().join("o4")).fails(1);
    assert!(o.stderr.contains("Parquet"), "{}", o.stderr);
    assert!(!d.path().join("o4").join("_summary.json").exists());

    for (name, magic, word) in [
        ("x.zip", &b"PK\x03\x04\x14\x00\x00\x00"[..], "zip"),
        ("x.bz2", b"BZh91AY&SY", "bzip2"),
        ("x.xz", b"\xfd7zXZ\x00\x00", "xz"),
        ("x.lz4", b"\x04\x22\x4d\x18\x64\x40", "lz4"),
    ] {
        let f = write(d.path(), name, [magic, b"rest of the file"].concat());
        let o = run(&[&f], &cfg, &d.path().join("o5")).fails(1);
        assert!(
            o.stderr.contains(&p(&f)) && o.stderr.contains(word),
            "{name}: {}",
            o.stderr
        );
    }
}

// ───────────────────────────── truncated and corrupt zstd ─────────────────────────────

/// `n` valid lines: distinct users, ascending times (one hour-window per 36 000 lines).
fn valid_lines(n: usize) -> Vec<u8> {
    (0..n)
        .flat_map(|i| (ev(&format!("user-{i}"), T0_S + i as i64 / 10, "open") + "\n").into_bytes())
        .collect()
}

/// What a zstd decoder recovers from `data` before it fails, reading 4 KiB at a time.
fn decodable_prefix(data: &[u8]) -> Vec<u8> {
    let mut dec = zstd::stream::read::Decoder::new(data).unwrap();
    let mut out = Vec::new();
    let mut buf = vec![0u8; 4096];
    loop {
        match dec.read(&mut buf) {
            Ok(0) | Err(_) => return out,
            Ok(n) => out.extend_from_slice(&buf[..n]),
        }
    }
}

/// Checks a run over a damaged file of `valid_lines`: what was counted is exactly a prefix of the
/// lines, at least every whole line in `recoverable` (what a decoder gets back), and the partial
/// last line, if any, is the only rejected one. Returns the rows, which must equal a run over the
/// prefix alone.
fn check_prefix_counted(
    d: &Path,
    cfg: &Path,
    out: &Path,
    all: &[u8],
    recoverable: &[u8],
    tag: &str,
) {
    let whole = recoverable.iter().filter(|&&b| b == b'\n').count() as u64;
    let c = counts(out);
    assert!(
        c.counted >= whole,
        "{tag}: only {} lines counted, but the {} whole lines before the damage decode fine",
        c.counted,
        whole
    );
    assert!(c.rejected <= 1, "{tag}: {c:?}");
    assert_eq!((c.duplicates, c.late), (0, 0), "{tag}");
    let prefix: Vec<u8> = split_lines(all)
        .into_iter()
        .take(c.counted as usize)
        .flat_map(|(_, _, l)| [l, b"\n"].concat())
        .collect();
    let f = write(d, &format!("prefix-{tag}.ndjson"), &prefix);
    let ref_out = d.join(format!("prefix-out-{tag}"));
    run(&[&f], cfg, &ref_out).ok();
    assert!(
        rows(out) == rows(&ref_out),
        "{tag}: rows differ from a run over the counted prefix"
    );
    for r in rejected(out) {
        assert!(
            all[r.offset as usize..].starts_with(r.raw.as_bytes()),
            "{tag}: {r:?}"
        );
    }
}

#[test]
fn truncated_zstd_fails_with_file_and_offset_unless_skipped() {
    let d = tmp();
    let cfg = config(d.path(), "");
    let all = valid_lines(150_000);
    let z = zstd_single(&all);
    let cut = z.len() / 2;
    let f = write(d.path(), "truncated.ndjson.zst", &z[..cut]);
    let next = write(
        d.path(),
        "next.ndjson",
        ev("after-the-truncated-file", T0_S, "open") + "\n",
    );
    let recoverable = decodable_prefix(&z[..cut]);
    assert!(recoverable.len() > all.len() / 4);

    let out = d.path().join("out");
    let o = run(&[&f], &cfg, &out).fails(1);
    assert!(o.stderr.contains(&p(&f)), "{}", o.stderr);
    assert!(o.stderr.contains(&format!("at byte {cut}")), "{}", o.stderr);
    assert!(o.stderr.contains("truncated"), "{}", o.stderr);
    assert!(
        o.stderr.contains("--skip-corrupt-input"),
        "the message names the way out: {}",
        o.stderr
    );
    let corrupt = string_list(&out, "corrupt_inputs");
    assert_eq!(corrupt.len(), 1);
    assert!(
        corrupt[0].starts_with(&format!("{}: at byte {cut}", p(&f))),
        "{corrupt:?}"
    );
    check_prefix_counted(d.path(), &cfg, &out, &all, &recoverable, "truncated");

    let out2 = d.path().join("out2");
    run(&[&f, &next], &cfg, &out2)
        .arg("--skip-corrupt-input")
        .ok();
    assert_eq!(string_list(&out2, "corrupt_inputs"), corrupt);
    let (c1, c2) = (counts(&out), counts(&out2));
    assert_eq!(
        c2.counted,
        c1.counted + 1,
        "the file after the truncated one is read too"
    );
    assert_eq!(c2.rejected, c1.rejected);
}

#[test]
fn corrupt_byte_in_single_frame_zstd() {
    let d = tmp();
    let cfg = config(d.path(), "");
    let all = valid_lines(150_000);
    let mut z = zstd_single(&all);
    let at = z.len() / 2;
    z[at] ^= 0xff;
    let f = write(d.path(), "corrupt.ndjson.zst", &z);
    let recoverable = decodable_prefix(&z);
    assert!(
        recoverable.len() > all.len() / 4,
        "the corruption must be detected midway"
    );
    assert!(recoverable.len() < all.len());

    let out = d.path().join("out");
    let o = run(&[&f], &cfg, &out).fails(1);
    assert!(
        o.stderr.contains(&p(&f)) && o.stderr.contains("corrupt"),
        "{}",
        o.stderr
    );
    let corrupt = string_list(&out, "corrupt_inputs");
    assert_eq!(corrupt.len(), 1);
    let byte: u64 = corrupt[0]
        .strip_prefix(&format!("{}: at byte ", p(&f)))
        .and_then(|s| s.split(':').next())
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("no `at byte N` in {corrupt:?}"));
    assert!(
        byte > 0 && byte as usize + (128 << 10) >= at && byte as usize <= z.len(),
        "the reported offset {byte} should be near the corrupt byte {at}"
    );
    check_prefix_counted(d.path(), &cfg, &out, &all, &recoverable, "corrupt");

    let out2 = d.path().join("out2");
    run(&[&f], &cfg, &out2).arg("--skip-corrupt-input").ok();
    assert_eq!(string_list(&out2, "corrupt_inputs"), corrupt);
    assert_eq!(counts(&out2), counts(&out));
}

#[test]
fn corrupt_byte_in_multi_frame_zstd() {
    // The layout `abacus generate` writes: independent frames of whole lines.
    let d = tmp();
    let cfg = config(d.path(), "");
    let all = valid_lines(100_000);
    let lines: Vec<&[u8]> = all.split_inclusive(|&b| b == b'\n').collect();
    let mut z = Vec::new();
    let mut frame_starts = Vec::new();
    for chunk in lines.chunks(8192) {
        frame_starts.push(z.len());
        z.extend(zstd_single(&chunk.concat()));
    }
    assert!(frame_starts.len() >= 10);
    let bad_frame = 5;
    let at = (frame_starts[bad_frame] + frame_starts[bad_frame + 1]) / 2;
    z[at] ^= 0xff;
    let f = write(d.path(), "corrupt.ndjson.zst", &z);
    let next = write(
        d.path(),
        "next.ndjson",
        ev("after-the-corrupt-file", T0_S, "open") + "\n",
    );

    let out = d.path().join("out");
    let o = run(&[&f, &next], &cfg, &out).fails(1);
    let start = frame_starts[bad_frame];
    assert!(
        o.stderr.contains(&p(&f)) && o.stderr.contains(&format!("at byte {start}")),
        "{}",
        o.stderr
    );
    let corrupt = string_list(&out, "corrupt_inputs");
    assert_eq!(corrupt.len(), 1);
    assert!(
        corrupt[0].starts_with(&format!("{}: at byte {start}", p(&f))),
        "{corrupt:?}"
    );
    // every line of the frames before the corrupt one, and the next file
    let before = (bad_frame * 8192) as u64;
    assert_eq!(
        counts(&out),
        Counts {
            lines: before + 1,
            counted: before + 1,
            ..Counts::default()
        }
    );

    let out2 = d.path().join("out2");
    run(&[&f, &next], &cfg, &out2)
        .arg("--skip-corrupt-input")
        .ok();
    assert_eq!(string_list(&out2, "corrupt_inputs"), corrupt);
    assert_eq!(counts(&out2), counts(&out));
    assert_eq!(rows(&out2), rows(&out));
}

// ───────────────────────────── config faults ─────────────────────────────

/// 1-based line of the first occurrence of `needle` in `text`.
fn line_of(text: &str, needle: &str) -> usize {
    let at = text
        .find(needle)
        .unwrap_or_else(|| panic!("{needle:?} not in config"));
    text[..at].matches('\n').count() + 1
}

#[test]
fn config_faults_exit_2_with_file_and_line() {
    let d = tmp();
    let input = write(d.path(), "in.ndjson", ev("a", T0_S, "open") + "\n");
    write(d.path(), "bad-row.csv", "key,value\nm-1,a\nm-2\n");
    write(d.path(), "bad-header.csv", "key\nm-1\n");
    write(d.path(), "empty-value.csv", "key,value\nm-1,a\nm-2,\n");
    write(d.path(), "dup-key.csv", "key,value\nm-1,a\nm-1,b\n");
    let base = config_text("");
    let lookup = |file: &str| {
        base.replace(
        "[[windows]]",
        &format!("[[dimensions]]\nname = \"campaign\"\nfield = \"m\"\nlookup = \"{file}\"\n\n[[windows]]"),
    )
    };
    // (config text, the text whose line the message must name, fragments)
    let cases: Vec<(String, &str, Vec<&str>)> = vec![
        (base.replace("[watermark]", "colour = 1\n[watermark]"), "colour", vec!["unknown field `colour`"]),
        (base.replace("event_id = \"id\"", "event_id = \"id\"\nusr = \"u\""), "usr", vec!["unknown field `usr`"]),
        (base.replace("size = \"1h\"", "size = \"1 hour-ish\""), "1 hour-ish", vec!["`windows[0].size`", "not a duration"]),
        (base.replace("size = \"1h\"", "size = \"0s\""), "0s", vec!["`windows[0].size`", "longer than 0"]),
        (base.replace("size = \"1h\"", "size = \"1h\"\nslide = \"25m\""), "25m", vec!["`windows[0].slide`", "does not divide"]),
        (base.replace("size = \"1h\"", "size = \"1h\"\nslide = \"2h\""), "2h", vec!["`windows[0].slide`", "longer than the size"]),
        (base.replace("allowed_lateness = \"unbounded\"", "allowed_lateness = \"forever\""), "forever", vec!["`watermark.allowed_lateness`"]),
        (base.replace("event_id = \"id\"", "event_id = \"id\"\ntime_format = \"iso\""), "iso", vec!["`fields.time_format`"]),
        (base.replace("[watermark]", "[limits]\nmax_line_bytes = 0\n\n[watermark]"), "max_line_bytes", vec!["`limits.max_line_bytes`"]),
        (base.replace("[watermark]", "[limits]\ntime_min = \"2030-01-01T00:00:00Z\"\ntime_max = \"2020-01-01T00:00:00Z\"\n\n[watermark]"), "time_max", vec!["`limits.time_max`"]),
        (base.replace("[watermark]", "[limits]\ntime_min = \"last tuesday\"\n\n[watermark]"), "last tuesday", vec!["`limits.time_min`"]),
        (lookup("no-such.csv"), "no-such.csv", vec!["`dimensions[2].lookup`", "no-such.csv"]),
        (lookup("bad-row.csv"), "bad-row.csv", vec!["`dimensions[2].lookup`", "bad-row.csv: line 3"]),
        (lookup("bad-header.csv"), "bad-header.csv", vec!["bad-header.csv: line 1", "at least 2 columns"]),
        (lookup("empty-value.csv"), "empty-value.csv", vec!["empty-value.csv: line 3", "empty"]),
        (lookup("dup-key.csv"), "dup-key.csv", vec!["dup-key.csv: line 3", "m-1", "dup-key.csv:2"]),
        ("this is [not toml".into(), "this", vec![]),
    ];
    for (i, (text, needle, frags)) in cases.iter().enumerate() {
        let cfg = write(d.path(), &format!("c{i}.toml"), text);
        let out = d.path().join(format!("out{i}"));
        let o = run(&[&input], &cfg, &out).fails(2);
        let at = format!("{}:{}:", p(&cfg), line_of(text, needle));
        assert!(
            o.stderr.contains(&at),
            "case {i}: the message should start with {at}\n{}",
            o.stderr
        );
        for f in frags {
            assert!(
                o.stderr.contains(f),
                "case {i}: missing {f:?} in\n{}",
                o.stderr
            );
        }
        assert!(
            !out.exists(),
            "case {i}: a config error must leave no output behind"
        );
    }

    // no line to point at, but the file is named
    let no_windows = write(
        d.path(),
        "nw.toml",
        "[fields]\nuser = \"u\"\ntime = \"t\"\nevent_type = \"e\"\n",
    );
    let o = run(&[&input], &no_windows, &d.path().join("o-nw")).fails(2);
    assert!(
        o.stderr.contains(&p(&no_windows)) && o.stderr.contains("[[windows]]"),
        "{}",
        o.stderr
    );
    let missing = d.path().join("missing.toml");
    let o = run(&[&input], &missing, &d.path().join("o-m")).fails(2);
    assert!(o.stderr.contains(&p(&missing)), "{}", o.stderr);
}

// ───────────────────────────── the output directory ─────────────────────────────

#[test]
fn out_dir_holding_results_needs_overwrite() {
    let d = tmp();
    let cfg = config(d.path(), "");
    let first = write(d.path(), "first.ndjson", ev("a", T0_S, "open") + "\nbad\n");
    let second = write(d.path(), "second.ndjson", ev("b", T0_S, "click") + "\n");
    let out = d.path().join("out");
    run(&[&first], &cfg, &out).ok();
    let before = fs::read(out.join("_summary.json")).unwrap();

    let o = run(&[&second], &cfg, &out).fails(2);
    assert!(
        o.stderr.contains(&p(&out)) && o.stderr.contains("results of an earlier abacus run"),
        "{}",
        o.stderr
    );
    assert!(o.stderr.contains("--overwrite"), "{}", o.stderr);
    assert_eq!(
        fs::read(out.join("_summary.json")).unwrap(),
        before,
        "the old results are untouched"
    );

    // --overwrite replaces every file of the earlier run (its _rejected/ too)
    run(&[&second], &cfg, &out).arg("--overwrite").ok();
    assert!(
        !out.join("_rejected").exists(),
        "the old _rejected/ is gone: this run rejected nothing"
    );
    assert_eq!(
        counts(&out),
        Counts {
            lines: 1,
            counted: 1,
            ..Counts::default()
        }
    );
    assert_eq!(
        rows(&out),
        vec![row("click", None, "h", T0, T0 + HOUR, 1, 1)]
    );

    // a file abacus did not write makes both refuse, naming it, and stays
    write(&out, "notes.txt", "mine");
    write(&out, "part-00099.parquet", "not abacus's");
    for extra in [None, Some("--overwrite")] {
        let mut r = run(&[&second], &cfg, &out);
        if let Some(a) = extra {
            r = r.arg(a);
        }
        let o = r.fails(2);
        assert!(
            o.stderr.contains("notes.txt") && o.stderr.contains("part-00099.parquet"),
            "{}",
            o.stderr
        );
    }
    assert_eq!(fs::read_to_string(out.join("notes.txt")).unwrap(), "mine");
    assert!(out.join("part-00099.parquet").exists());

    // a directory with unrelated files only is refused too: the out dir is abacus's own
    let other = d.path().join("other");
    write(&other, "keep.txt", "x");
    let o = run(&[&first], &cfg, &other).fails(2);
    assert!(o.stderr.contains("keep.txt"), "{}", o.stderr);
    assert!(other.join("keep.txt").exists());

    // --out naming a file
    let file = write(d.path(), "a-file", "x");
    let o = run(&[&first], &cfg, &file).fails(2);
    assert!(o.stderr.contains("not a directory"), "{}", o.stderr);
}

// ───────────────────────────── garbage sprinkled into a clean workload ─────────────────────────────

/// Hostile lines for the generator's schema (email / timestamp / type / id / message_id / browser),
/// built around `clean` (the real line they are inserted before, without its newline), with the code
/// each must be rejected with. Several carry far-future times: if a rejected line moved the watermark,
/// every later event would turn late.
fn garbage_for(kind: usize, clean: &[u8]) -> (Vec<u8>, &'static str) {
    let s = std::str::from_utf8(clean).unwrap();
    match kind % 24 {
        0 => (b"not json at all".to_vec(), "invalid_json"),
        1 => (br#"{"email":"x@y.com","timestamp":4102444799,"type":"open","browser":5}"#.to_vec(), "wrong_type"),
        2 => (br#"{"email":"x@y.com","timestamp":4102444799000,"type":"open","message_id":["m-1-1"]}"#.to_vec(), "wrong_type"),
        3 => (b"[1,2,3]".to_vec(), "not_an_object"),
        4 => (b"\"a string\"".to_vec(), "not_an_object"),
        5 => (b"42".to_vec(), "not_an_object"),
        6 => (br#"{"timestamp":4102444799,"type":"open"}"#.to_vec(), "missing_user"),
        7 => (br#"{"email":null,"timestamp":4102444799,"type":"open"}"#.to_vec(), "missing_user"),
        8 => (br#"{"email":"","timestamp":1704067200,"type":"open"}"#.to_vec(), "missing_user"),
        9 => (br#"{"email":17,"timestamp":4102444799,"type":"open"}"#.to_vec(), "wrong_type"),
        10 => (br#"{"email":"a@b.c","type":"open"}"#.to_vec(), "missing_time"),
        11 => (br#"{"email":"a@b.c","timestamp":"soon","type":"open"}"#.to_vec(), "invalid_time"),
        12 => (br#"{"email":"a@b.c","timestamp":4102444800,"type":"open"}"#.to_vec(), "time_out_of_range"),
        13 => (br#"{"email":"a@b.c","timestamp":-1,"type":"open"}"#.to_vec(), "time_out_of_range"),
        14 => (br#"{"email":"a@b.c","timestamp":4102444799}"#.to_vec(), "missing_event_type"),
        15 => (br#"{"email":"a@b.c","timestamp":4102444799,"type":"open","id":1.5}"#.to_vec(), "wrong_type"),
        16 => (b"{\"email\":\"\xff\xfe\",\"timestamp\":4102444799,\"type\":\"open\"}".to_vec(), "invalid_utf8"),
        17 => (b"\x00\x01\x02\xff\x00junk".to_vec(), "invalid_utf8"),
        18 => (clean[..clean.len() / 2].to_vec(), "invalid_json"), // a line cut short
        19 => (s.replacen("\"email\"", "\"e-mail\"", 1).into_bytes(), "missing_user"),
        20 => ([clean, b" }"].concat(), "invalid_json"),
        21 => (s.replacen("\"type\":\"", "\"type\":7,\"x\":\"", 1).into_bytes(), "wrong_type"),
        22 => (s.replacen("\"timestamp\":", "\"timestamp\":\"nope\",\"was\":", 1).into_bytes(), "invalid_time"),
        _ => (b"\x1b[31mERROR\x1b[0m connection reset".to_vec(), "invalid_json"),
    }
}

#[test]
fn garbage_sprinkled_into_a_generated_workload_changes_nothing() {
    let d = tmp();
    let dir = d.path().join("gen");
    fs::create_dir_all(&dir).unwrap();
    let clean_zst = dir.join("events.ndjson.zst");
    let o = exec(&[
        "generate".into(),
        "--events".into(),
        "20000".into(),
        "--seed".into(),
        "3".into(),
        "--out".into(),
        clean_zst.as_os_str().to_owned(),
    ]);
    assert_eq!(o.code, 0, "{}", o.stderr);
    assert!(dir.join("campaigns.csv").is_file());
    let cfg = dir.join("abacus.toml");
    let cfg_text =
        fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("data/abacus.toml")).unwrap();
    assert!(cfg_text.contains("lookup = \"campaigns.csv\""));
    fs::write(&cfg, cfg_text).unwrap();

    let clean = zstd::stream::decode_all(fs::read(&clean_zst).unwrap().as_slice()).unwrap();
    let clean_lines: Vec<&[u8]> = clean
        .split(|&b| b == b'\n')
        .filter(|l| !l.is_empty())
        .collect();
    assert_eq!(clean_lines.len(), 20_000);
    for l in &clean_lines {
        assert!(
            l.starts_with(b"{") && l.windows(8).any(|w| w == b"\"email\":"),
            "{}",
            lossy(l)
        );
    }

    // ~1% garbage, every kind many times, one over-long line, garbage first and last (no newline).
    let mut rng = 0x9e3779b97f4a7c15u64;
    let mut next = move || {
        rng ^= rng << 13;
        rng ^= rng >> 7;
        rng ^= rng << 17;
        rng
    };
    let mut mixed = Vec::new();
    let mut garbage: Vec<(Vec<u8>, &'static str, u64, u64)> = Vec::new(); // bytes, code, line, offset
    let mut kind = 0;
    let mut push_garbage = |mixed: &mut Vec<u8>, g: Vec<u8>, code: &'static str, newline: bool| {
        let line = mixed.iter().filter(|&&b| b == b'\n').count() as u64 + 1;
        garbage.push((g.clone(), code, line, mixed.len() as u64));
        mixed.extend(g);
        if newline {
            mixed.push(b'\n');
        }
    };
    push_garbage(
        &mut mixed,
        b"{\"truncated\":".to_vec(),
        "invalid_json",
        true,
    );
    for (i, l) in clean_lines.iter().enumerate() {
        if i == 10_000 {
            let big = format!(
                r#"{{"email":"big@x.com","timestamp":1704067200,"type":"open","pad":"{}"}}"#,
                "x".repeat(3 << 19)
            );
            push_garbage(&mut mixed, big.into_bytes(), "line_too_long", true);
        }
        if next() % 100 == 0 && i > 50 {
            let (g, code) = garbage_for(kind, l);
            kind += 1;
            push_garbage(&mut mixed, g, code, true);
        }
        mixed.extend_from_slice(l);
        mixed.push(b'\n');
    }
    push_garbage(
        &mut mixed,
        b"{\"email\":\"last@x.com\",\"timestamp\":4102444799,\"type\":".to_vec(),
        "invalid_json",
        false,
    );
    assert!(kind >= 150, "only {kind} garbage lines");
    let n_garbage = garbage.len() as u64;

    let mixed_plain = write(d.path(), "mixed.ndjson", &mixed);
    let mixed_zst = write(d.path(), "mixed.ndjson.zst", zstd_frames(&mixed, 1 << 20).0);
    let out_clean = d.path().join("out-clean");
    run(&[&clean_zst], &cfg, &out_clean).threads(2).ok();
    let c_clean = counts(&out_clean);
    assert_eq!(c_clean.lines, 20_000);
    assert_eq!(c_clean.rejected, 0);
    let rows_clean = rows(&out_clean);
    assert!(rows_clean.len() > 1000);
    let late_clean = side(&out_clean, "_late");

    for (input, threads) in [(&mixed_plain, 2), (&mixed_zst, 1)] {
        let out = d.path().join(format!(
            "out-{}",
            input.file_name().unwrap().to_string_lossy()
        ));
        run(&[input], &cfg, &out).threads(threads).ok();
        let c = counts(&out);
        assert_eq!(
            c,
            Counts {
                lines: c_clean.lines + n_garbage,
                rejected: n_garbage,
                ..c_clean
            },
            "{}",
            input.display()
        );
        assert!(
            rows(&out) == rows_clean,
            "{}: the rows differ from the clean run",
            input.display()
        );
        assert!(
            side(&out, "_late") == late_clean,
            "{}: late/ differs",
            input.display()
        );
        assert_eq!(summary(&out)["watermark"], summary(&out_clean)["watermark"]);
        let got = rejected(&out);
        assert_eq!(got.len(), garbage.len());
        for (r, (g, code, line, offset)) in got.iter().zip(&garbage) {
            assert_eq!(r.raw, lossy(g), "{}", input.display());
            assert_eq!(
                (r.code.as_str(), r.line, r.offset),
                (*code, *line, *offset),
                "{}: {}",
                input.display(),
                lossy(g)
            );
            assert_eq!(r.file, p(input));
        }
    }
}

// ───────────────────────────── the hostile-line corpus ─────────────────────────────

/// (expectation, case name, bytes) of every tests/corpus/lines/*.line, sorted by file name.
fn corpus() -> Vec<(String, String, Vec<u8>)> {
    let mut v: Vec<(String, String, Vec<u8>)> = fs::read_dir(corpus_dir().join("lines"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|x| x == "line"))
        .map(|p| {
            let stem = p.file_stem().unwrap().to_string_lossy().into_owned();
            let (expect, name) = stem
                .split_once("--")
                .unwrap_or_else(|| panic!("bad corpus name {stem}"));
            assert!(
                ["accept", "skip", "any"].contains(&expect) || REJECT_CODES.contains(&expect),
                "{stem}: unknown expectation {expect}"
            );
            (expect.to_string(), name.to_string(), fs::read(&p).unwrap())
        })
        .collect();
    v.sort();
    assert!(v.len() >= 100, "the corpus has only {} lines", v.len());
    v
}

fn corpus_config() -> abacus::config::Config {
    abacus::config::Config::load(&corpus_dir().join("corpus.toml")).unwrap()
}

/// The engine's view of one physical line: one trailing `\r` stripped; `None` when blank.
fn engine_line(raw: &[u8]) -> Option<&[u8]> {
    let line = raw.strip_suffix(b"\r").unwrap_or(raw);
    (!line.trim_ascii().is_empty()).then_some(line)
}

#[test]
fn corpus_lines_through_the_parser() {
    let cfg = corpus_config();
    let mut parser = abacus::parse::Parser::new(&cfg);
    let mut seen: BTreeMap<String, usize> = BTreeMap::new();
    for (expect, name, bytes) in corpus() {
        let what = format!("{expect}--{name}: {:?}", lossy(&bytes));
        *seen.entry(expect.clone()).or_default() += 1;
        let Some(line) = engine_line(&bytes) else {
            assert!(
                expect == "skip" || expect == "any",
                "{what}: blank, so skipped by the engine"
            );
            continue;
        };
        assert_ne!(expect, "skip", "{what}: not blank");
        let mut keys = vec![42];
        match parser.parse(line, &mut keys) {
            Ok(event) => {
                assert!(
                    expect == "accept" || expect == "any",
                    "{what}: accepted, {event:?}"
                );
                assert!(keys.len() >= 2 && keys[0] == 42, "{what}: {keys:?}");
                let d = parser
                    .describe(line)
                    .unwrap_or_else(|| panic!("{what}: describe refuses an accepted line"));
                assert_eq!(
                    d.iter().map(|k| k.0).collect::<Vec<_>>(),
                    keys[1..],
                    "{what}: describe vs parse"
                );
                assert_eq!(d[0].1.dimension, None, "{what}: the total key comes first");
                assert!(
                    d[0].1.event_type.as_deref().is_some_and(|t| !t.is_empty()),
                    "{what}"
                );
                assert!(event.time >= 0 && event.time < 4_102_444_800_000, "{what}");
            }
            Err(reason) => {
                assert!(
                    expect == reason.code() || expect == "any",
                    "{what}: rejected as {} ({reason})",
                    reason.code()
                );
                assert_eq!(keys, vec![42], "{what}: a rejected line leaves no keys");
                assert!(
                    parser.describe(line).is_none(),
                    "{what}: describe accepts a rejected line"
                );
                assert!(!reason.to_string().is_empty());
            }
        }
    }
    for c in ["accept", "skip", "any"].iter().chain(REJECT_CODES.iter()) {
        assert!(
            seen.get(*c).copied().unwrap_or(0) > 0,
            "the corpus has no {c} case: {seen:?}"
        );
    }
}

#[test]
fn corpus_through_the_binary_agrees_with_the_library() {
    let cfg = corpus_config();
    let mut parser = abacus::parse::Parser::new(&cfg);
    let corpus = corpus();
    let mut content = Vec::new();
    for (_, _, bytes) in &corpus {
        content.extend_from_slice(bytes);
        content.push(b'\n');
    }
    // zstd, so that NUL bytes near the start do not make the file look binary
    let d = tmp();
    let input = write(d.path(), "corpus.ndjson.zst", zstd_single(&content));
    let mut want = Vec::new();
    let mut accepted = 0;
    for (line, off, bytes) in split_lines(&content) {
        match parser.parse(bytes, &mut Vec::new()) {
            Ok(_) => accepted += 1,
            Err(r) => want.push((line, off, r.code().to_string(), lossy(bytes))),
        }
    }
    for threads in [1, 2] {
        let out = d.path().join(format!("out{threads}"));
        run(&[&input], &corpus_dir().join("corpus.toml"), &out)
            .threads(threads)
            .ok();
        let c = counts(&out);
        assert_eq!(c.lines, split_lines(&content).len() as u64);
        assert_eq!((c.counted + c.duplicates, c.late), (accepted, 0));
        let got: Vec<_> = rejected(&out)
            .into_iter()
            .map(|r| (r.line, r.offset, r.code, r.raw))
            .collect();
        assert_eq!(got, want);
        assert!(rejected(&out).iter().all(|r| r.file == p(&input)));
    }
}

// ───────────────────────────── valid JSON the parser cannot represent ─────────────────────────────

#[test]
fn big_integers_in_unread_fields_do_not_reject_the_event() {
    let cfg = corpus_config();
    let mut parser = abacus::parse::Parser::new(&cfg);
    let line =
        br#"{"u":"a@x.com","t":1714521600,"e":"open","trace_id":123456789012345678901234567890}"#;
    assert!(
        parser.parse(line, &mut Vec::new()).is_ok(),
        "{:?}",
        parser.parse(line, &mut Vec::new())
    );
    // in the time field it is a time out of range, not a JSON syntax error
    let line = br#"{"u":"a@x.com","t":123456789012345678901234567890,"e":"open"}"#;
    assert_eq!(
        parser.parse(line, &mut Vec::new()).unwrap_err().code(),
        "time_out_of_range"
    );
}

#[test]
fn lone_surrogate_escapes_are_not_silently_rewritten() {
    let cfg = corpus_config();
    let mut parser = abacus::parse::Parser::new(&cfg);
    let id = |p: &mut abacus::parse::Parser, u: &str| {
        p.parse(
            format!(r#"{{"u":"{u}","t":1714521600,"e":"open"}}"#).as_bytes(),
            &mut Vec::new(),
        )
        .map(|e| e.user)
    };
    let (a, b, nul) = (
        id(&mut parser, r"\ud800"),
        id(&mut parser, r"\udbff"),
        id(&mut parser, r"\u0000"),
    );
    // Either reject lone surrogates (they have no UTF-8 form) or keep them apart; never merge them.
    if let (Ok(a), Ok(b), Ok(nul)) = (&a, &b, &nul) {
        assert!(
            a != b && a != nul,
            "\\ud800, \\udbff and \\u0000 are one user"
        );
    }
    if let Err(r) = &a {
        assert_eq!(r.code(), "invalid_json");
    }
}
