//! Helpers shared by the tests against the naive reference (tests/reference.rs,
//! tests/reference_metrics.rs, tests/reference_attribution.rs): JSON and RFC 3339 rendering for generated inputs, and the
//! comparison of one run of the binary with the reference's outcome.
#![allow(dead_code)]

use super::naive::{self, Cfg, DimCfg, DimKind, Strategy, TimeFormat, WinCfg};
use super::{DAY, HOUR, MIN, Output, Rng, SEC, assert_rows_eq};

/// A JSON string literal; non-ASCII characters are written as `\uXXXX` when `escape`.
pub fn json_str(s: &str, escape: bool) -> String {
    let mut out = String::from("\"");
    for c in s.chars() {
        match c {
            '"' => out += "\\\"",
            '\\' => out += "\\\\",
            c if (c as u32) < 0x20 => out += &format!("\\u{:04x}", c as u32),
            c if escape && !c.is_ascii() => {
                let mut buf = [0u16; 2];
                for u in c.encode_utf16(&mut buf) {
                    out += &format!("\\u{:04x}", u);
                }
            }
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

/// (year, month, day, hour, minute, second, ms) of a time ≥ 1970, by subtracting whole years and months.
pub fn civil(ms: i64) -> (i64, i64, i64, i64, i64, i64, i64) {
    assert!(ms >= 0);
    let mut days = ms / DAY;
    let rem = ms % DAY;
    let mut y = 1970;
    loop {
        let len = if naive::days_since_epoch(y + 1, 1, 1) - naive::days_since_epoch(y, 1, 1) == 366
        {
            366
        } else {
            365
        };
        if days < len {
            break;
        }
        days -= len;
        y += 1;
    }
    let mut m = 1;
    loop {
        let len = naive::days_since_epoch(
            if m == 12 { y + 1 } else { y },
            if m == 12 { 1 } else { m + 1 },
            1,
        ) - naive::days_since_epoch(y, m, 1);
        if days < len {
            break;
        }
        days -= len;
        m += 1;
    }
    (
        y,
        m,
        days + 1,
        rem / HOUR,
        rem / MIN % 60,
        rem / SEC % 60,
        rem % SEC,
    )
}

/// An RFC 3339 rendering of `t` with a UTC offset (minutes), separator, `Z` letter and fraction digits.
pub fn rfc3339(
    t: i64,
    offset_min: i64,
    sep: char,
    z: &str,
    frac_digits: usize,
    rng: &mut Rng,
) -> String {
    let local = t + offset_min * MIN;
    let (y, mo, d, h, mi, s, ms) = civil(local);
    let mut out = format!("{y:04}-{mo:02}-{d:02}{sep}{h:02}:{mi:02}:{s:02}");
    if frac_digits > 0 {
        let mut frac = format!("{ms:03}");
        while frac.len() < frac_digits {
            frac.push(char::from(b'0' + rng.below(10) as u8)); // digits beyond ms are truncated away
        }
        frac.truncate(frac_digits);
        out += ".";
        out += &frac;
    }
    if offset_min == 0 && !z.is_empty() {
        out += z;
    } else {
        let sign = if offset_min < 0 { '-' } else { '+' };
        let a = offset_min.abs();
        out += &format!("{sign}{:02}:{:02}", a / 60, a % 60);
    }
    out
}

/// A valid event line: fields in a shuffled order, with varied spacing and some noise fields.
pub fn event_line(fields: &mut [(String, String)], rng: &mut Rng) -> String {
    for i in (1..fields.len()).rev() {
        let j = rng.below(i as u64 + 1) as usize;
        fields.swap(i, j);
    }
    let spacing = *rng.pick(&["", " "]);
    let parts: Vec<String> = fields
        .iter()
        .map(|(k, v)| format!("{}:{spacing}{v}", json_str(k, false)))
        .collect();
    format!("{{{}}}", parts.join(&format!(",{spacing}")))
}

pub fn joined(lines: &[Vec<u8>]) -> Vec<u8> {
    let mut v = Vec::new();
    for l in lines {
        v.extend_from_slice(l);
        v.push(b'\n');
    }
    v
}

pub fn show(bytes: &[u8]) -> String {
    let s = String::from_utf8_lossy(bytes);
    if s.len() > 3000 {
        format!("{}… ({} bytes)", &s[..3000], bytes.len())
    } else {
        s.into_owned()
    }
}

/// Compares one run of the binary with the reference in every observable way; `Err` says how
/// they differ.
pub fn diff_against_reference(out: &Output, r: &naive::Outcome, what: &str) -> Result<(), String> {
    if out.rows != r.rows {
        return Err(
            std::panic::catch_unwind(|| assert_rows_eq(&out.rows, &r.rows, what))
                .err()
                .and_then(|e| e.downcast_ref::<String>().cloned())
                .unwrap_or_else(|| format!("{what}: rows differ")),
        );
    }
    if out.counts != r.counts {
        return Err(format!(
            "{what}: summary counters (engine vs reference):\n  {:?}\n  {:?}",
            out.counts, r.counts
        ));
    }
    let expected_late = joined(&r.late_lines);
    if out.late != expected_late {
        // find the first differing line for a readable message
        let a: Vec<&[u8]> = out.late.split(|&b| b == b'\n').collect();
        let e: Vec<&[u8]> = expected_late.split(|&b| b == b'\n').collect();
        let i = a
            .iter()
            .zip(&e)
            .position(|(x, y)| x != y)
            .unwrap_or(a.len().min(e.len()));
        return Err(format!(
            "{what}: late/ differs from the reference's late lines ({} vs {} lines); first difference at line {i}:\nengine:    {}\nreference: {}",
            a.len() - 1,
            e.len() - 1,
            a.get(i).map_or("<none>".into(), |l| show(l)),
            e.get(i).map_or("<none>".into(), |l| show(l)),
        ));
    }
    let mut got: Vec<String> = out.rejected_reasons.clone();
    let mut want: Vec<String> = r.rejected_reasons.iter().map(|r| r.to_string()).collect();
    got.sort();
    want.sort();
    if got != want {
        return Err(format!(
            "{what}: reasons in rejected/:\n  engine:    {got:?}\n  reference: {want:?}"
        ));
    }
    Ok(())
}

pub fn assert_matches_reference(out: &Output, r: &naive::Outcome, what: &str) {
    if let Err(e) = diff_against_reference(out, r, what) {
        panic!("{e}");
    }
}

/// A small random config (no filters, no metrics): 1–3 window specs, tumbling and sliding, dimensions
/// `browser` (field `b`) and `provider` (email domain of `u`) or not, and a watermark, lateness and
/// TTL that make boundaries happen on short streams.
pub fn small_random_cfg(rng: &mut Rng) -> Cfg {
    let mut windows: Vec<WinCfg> = Vec::new();
    let all: &[(&str, &str, Option<&str>)] = &[
        ("q15", "15m", None),
        ("h", "1h", None),
        ("t20", "20m", None),
        ("s30-10", "30m", Some("10m")),
        ("s2h-30", "2h", Some("30m")),
        ("d", "1d", None),
    ];
    for _ in 0..rng.range(1, 4) {
        let (name, size, slide) = *rng.pick(all);
        if !windows.iter().any(|w| w.name == name) {
            windows.push(WinCfg {
                name: name.into(),
                size: size.into(),
                slide: slide.map(|x| x.into()),
            });
        }
    }
    let mut dims = Vec::new();
    if rng.chance(0.5) {
        dims.push(DimCfg {
            name: "browser".into(),
            field: "b".into(),
            kind: DimKind::Raw,
        });
    }
    if rng.chance(0.3) {
        dims.push(DimCfg {
            name: "provider".into(),
            field: "u".into(),
            kind: DimKind::EmailDomain,
        });
    }
    Cfg {
        user: "u".into(),
        time: "t".into(),
        time_format: TimeFormat::Auto,
        event_type: "e".into(),
        event_id: if rng.chance(0.85) {
            Some("id".into())
        } else {
            None
        },
        ttl: rng
            .pick(&["1m", "10m", "30m", "1h", "2h", "24h"])
            .to_string(),
        strategy: if rng.chance(0.5) {
            Strategy::Max
        } else {
            Strategy::Median
        },
        sample: rng.range(1, 9) as usize,
        interval: rng.range(1, 6) as usize,
        max_out_of_orderness: rng.pick(&["0s", "5m", "10m", "30m"]).to_string(),
        allowed_lateness: rng
            .pick(&["0s", "5m", "15m", "1h", "unbounded"])
            .to_string(),
        max_line_bytes: 1024,
        dims,
        windows,
        filters: vec![],
        metrics: vec![],
    }
}

/// A row of metric `metric`, window `window` from `start_min` to `end_min` minutes after T0.
#[allow(clippy::too_many_arguments)]
pub fn row(
    metric: &str,
    event_type: Option<&str>,
    dim: Option<(&str, &str)>,
    window: &str,
    start_min: i64,
    end_min: i64,
    unique_users: u64,
    events: u64,
) -> super::Row {
    super::Row {
        metric: metric.into(),
        event_type: event_type.map(|s| s.into()),
        dimension: dim.map(|d| d.0.into()),
        value: dim.map(|d| d.1.into()),
        window: window.into(),
        start_ms: super::T0 + start_min * MIN,
        end_ms: super::T0 + end_min * MIN,
        unique_users,
        events,
    }
}

/// A `[[filters]]` entry of `clauses` (field, operator).
pub fn filter(name: &str, clauses: Vec<(&str, naive::Op)>) -> naive::FilterCfg {
    naive::FilterCfg {
        name: name.into(),
        clauses: clauses
            .into_iter()
            .map(|(f, op)| naive::Clause {
                field: f.into(),
                op,
            })
            .collect(),
    }
}

/// Runs `one_case(i)` for every case `0..cases` on `workers` threads (worker `w` takes cases
/// `w, w + workers, …`) and returns the results, worker by worker.
pub fn parallel_cases<T: Send>(
    cases: u64,
    workers: u64,
    one_case: impl Fn(u64) -> T + Sync,
) -> Vec<T> {
    std::thread::scope(|scope| {
        let handles: Vec<_> = (0..workers)
            .map(|w| {
                let one_case = &one_case;
                scope.spawn(move || {
                    (w..cases)
                        .step_by(workers as usize)
                        .map(one_case)
                        .collect::<Vec<_>>()
                })
            })
            .collect();
        handles
            .into_iter()
            .flat_map(|h| h.join().unwrap())
            .collect()
    })
}
