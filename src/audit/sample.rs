//! The measured part of `abacus explain`: reads the first lines of the input with the engine's own
//! parser ([`crate::parse::Parser`]) and records what a run's cost depends on — how many lines are
//! rejected and why, the event times (span, rate, outliers), distinct users, fan-out per dimension
//! and how fast each dimension's distinct values grow, the distinct keys per span of event time
//! (for rows per window), and how long decoding and parsing took on one core.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::io::{BufRead, BufReader, Read};
use std::path::PathBuf;
use std::time::Instant;

use hashbrown::HashSet;

use super::report::fmt_time as format_rfc3339;
use crate::config::Config;
use crate::error::{Error, Result};
use crate::input::{self, Format};
use crate::parse::Parser;

/// What the sample showed.
#[derive(Debug, Default)]
pub struct SampleStats {
    pub files: Vec<(PathBuf, u64)>,
    pub total_bytes: u64,
    /// Compressed (on disk) and decoded bytes of the sampled lines.
    pub sample_disk_bytes: u64,
    pub sample_decoded_bytes: u64,
    pub lines: u64,
    pub accepted: u64,
    pub rejected: BTreeMap<&'static str, u64>,
    pub times: Vec<i64>,
    pub users: usize,
    pub keys_total: u64,
    /// Per dimension: events with a value, distinct values in the first half and in all.
    pub dim_events: Vec<u64>,
    pub dim_values_half: Vec<usize>,
    pub dim_values: Vec<usize>,
    /// (time, key hashes) of accepted events, for distinct keys per span.
    pub keyed: Vec<(i64, Vec<u64>)>,
    pub decode_s: f64,
    pub parse_s: f64,
    /// The sampled lines, for the engine runs (taken by `estimate`).
    pub text: Vec<u8>,
    /// Every input was read to its end within the sample.
    pub whole_input: bool,
}

/// Counts bytes read through it (the compressed bytes a decoder consumed).
struct Counting<R> {
    inner: R,
    n: u64,
}

impl<R: Read> Read for Counting<R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let k = self.inner.read(buf)?;
        self.n += k as u64;
        Ok(k)
    }
}

/// Reads up to `limit` non-empty lines from the inputs, in order.
fn read_lines(inputs: &[PathBuf], limit: usize, s: &mut SampleStats) -> Result<()> {
    let paths = input::expand(inputs, &[])?;
    let files = input::open_all(&paths)?;
    s.files = files.iter().map(|f| (f.path.clone(), f.size)).collect();
    s.total_bytes = files.iter().map(|f| f.size).sum();
    let started = Instant::now();
    s.whole_input = true;
    for f in &files {
        if s.lines as usize >= limit {
            s.whole_input = false;
            break;
        }
        let file: Box<dyn Read> = if f.path.as_os_str() == "-" {
            Box::new(std::io::stdin())
        } else {
            Box::new(
                std::fs::File::open(&f.path).map_err(|e| Error::input(&f.path, e.to_string()))?,
            )
        };
        let mut counted = Counting { inner: file, n: 0 };
        let zstd = match f.format {
            Format::Empty => continue,
            Format::Plain => false,
            Format::Zstd => true,
            // a stream (stdin, a pipe): recognised from its first bytes
            Format::Unknown => {
                let mut head = BufReader::new(&mut counted);
                let first = head
                    .fill_buf()
                    .map_err(|e| Error::input(&f.path, e.to_string()))?;
                let zstd = input::sniff(&f.path, first)? == Format::Zstd;
                let at_end = read_one(head, zstd, limit, s, &f.path)?;
                s.whole_input &= at_end;
                s.sample_disk_bytes += counted.n;
                continue;
            }
        };
        let at_end = read_one(BufReader::new(&mut counted), zstd, limit, s, &f.path)?;
        s.whole_input &= at_end;
        s.sample_disk_bytes += counted.n;
    }
    s.decode_s = started.elapsed().as_secs_f64();
    Ok(())
}

/// Reads one input, decoding zstd; true when it ended before `limit` lines.
fn read_one(
    r: impl BufRead,
    zstd: bool,
    limit: usize,
    s: &mut SampleStats,
    path: &std::path::Path,
) -> Result<bool> {
    if zstd {
        let dec = zstd::stream::read::Decoder::with_buffer(r)
            .map_err(|e| Error::input(path, e.to_string()))?;
        take_lines(BufReader::new(dec), limit, s, path)
    } else {
        take_lines(r, limit, s, path)
    }
}

/// Appends lines to `s.text` until `limit`; true when the reader ended first.
fn take_lines(
    mut r: impl BufRead,
    limit: usize,
    s: &mut SampleStats,
    path: &std::path::Path,
) -> Result<bool> {
    let mut line = Vec::new();
    while (s.lines as usize) < limit {
        line.clear();
        let n = r
            .read_until(b'\n', &mut line)
            .map_err(|e| Error::input(path, e.to_string()))?;
        if n == 0 {
            return Ok(true);
        }
        s.sample_decoded_bytes += n as u64;
        let body = line.strip_suffix(b"\n").unwrap_or(&line);
        let body = body.strip_suffix(b"\r").unwrap_or(body);
        if body.iter().all(|b| b.is_ascii_whitespace()) {
            continue;
        }
        s.text.extend_from_slice(body);
        s.text.push(b'\n');
        s.lines += 1;
    }
    let mut probe = [0u8; 1];
    Ok(r.read(&mut probe)
        .map_err(|e| Error::input(path, e.to_string()))?
        == 0)
}

pub fn measure(config: &Config, inputs: &[PathBuf], limit: usize) -> Result<SampleStats> {
    let mut s = SampleStats::default();
    read_lines(inputs, limit.max(1), &mut s)?;
    if s.lines == 0 {
        return Err(Error::Usage("the input has no lines to sample".into()));
    }
    let mut parser = Parser::new(config);
    let mut keys = Vec::new();
    let mut users = HashSet::new();
    let started = Instant::now();
    for line in s.text.split(|&b| b == b'\n').filter(|l| !l.is_empty()) {
        keys.clear();
        match parser.parse(line, &mut keys) {
            Ok(ev) => {
                s.accepted += 1;
                s.times.push(ev.time);
                users.insert(ev.user);
                s.keys_total += keys.len() as u64;
                s.keyed.push((ev.time, keys.clone()));
            }
            Err(r) => *s.rejected.entry(r.code()).or_default() += 1,
        }
    }
    s.parse_s = started.elapsed().as_secs_f64();
    s.users = users.len();
    dimension_values(config, &mut parser, &mut s);
    s.times.sort_unstable();
    Ok(s)
}

/// Per dimension: events with a value, and distinct values in the first half and in the whole sample.
fn dimension_values(config: &Config, parser: &mut Parser, s: &mut SampleStats) {
    let n = config.dimensions.len();
    let mut seen: Vec<HashSet<Box<str>>> = vec![HashSet::new(); n];
    s.dim_events = vec![0; n];
    s.dim_values_half = vec![0; n];
    let half = s.accepted / 2;
    let mut accepted = 0u64;
    for line in s.text.split(|&b| b == b'\n').filter(|l| !l.is_empty()) {
        let Some(described) = parser.describe(line) else {
            continue;
        };
        accepted += 1;
        for (_, k) in described {
            if let (Some(d), Some(v)) = (k.dimension, k.value) {
                s.dim_events[d as usize] += 1;
                seen[d as usize].insert(v);
            }
        }
        if accepted == half {
            s.dim_values_half = seen.iter().map(|x| x.len()).collect();
        }
    }
    s.dim_values = seen.iter().map(|x| x.len()).collect();
}

impl SampleStats {
    /// The time at quantile `q` of the accepted events.
    pub fn quantile(&self, q: f64) -> i64 {
        if self.times.is_empty() {
            return 0;
        }
        let i = ((self.times.len() - 1) as f64 * q).round() as usize;
        self.times[i]
    }

    /// The middle 98% of event times, in ms (at least 1 s).
    pub fn span_ms(&self) -> i64 {
        (self.quantile(0.99) - self.quantile(0.01)).max(1000)
    }

    /// Accepted events per second of event time, over the middle 98%.
    pub fn rate(&self) -> f64 {
        self.accepted as f64 * 0.98 / (self.span_ms() as f64 / 1000.0)
    }

    /// Distinct keys of the events whose time is in `[from, from + len)`.
    pub fn distinct_keys(&self, from: i64, len: i64) -> usize {
        let mut set = HashSet::new();
        for (t, keys) in &self.keyed {
            if *t >= from && *t < from + len {
                set.extend(keys.iter().copied());
            }
        }
        set.len()
    }

    pub fn rejected_total(&self) -> u64 {
        self.rejected.values().sum()
    }
}

fn pct(n: u64, of: u64) -> String {
    format!("{:.2}%", 100.0 * n as f64 / of.max(1) as f64)
}

/// The sample's section of the report.
pub fn report(config: &Config, s: &SampleStats) -> String {
    let mut out = String::new();
    let whole = if s.whole_input {
        " (the whole input)"
    } else {
        ""
    };
    let _ = writeln!(
        out,
        "sample: the first {} lines{whole}, {:.1} MB decoded from {:.1} MB on disk",
        s.lines,
        s.sample_decoded_bytes as f64 / 1e6,
        s.sample_disk_bytes as f64 / 1e6
    );
    let rej = s.rejected_total();
    let reasons: Vec<String> = s
        .rejected
        .iter()
        .map(|(c, n)| format!("{c} {}", pct(*n, s.lines)))
        .collect();
    let why = if reasons.is_empty() {
        String::new()
    } else {
        format!(": {}", reasons.join(", "))
    };
    let _ = writeln!(
        out,
        "  rejected      {} of the lines{why}",
        pct(rej, s.lines)
    );
    if s.accepted > 0 {
        let _ = writeln!(
            out,
            "  event time    {} .. {} (middle 98%; all: {} .. {})",
            format_rfc3339(s.quantile(0.01)),
            format_rfc3339(s.quantile(0.99)),
            format_rfc3339(s.quantile(0.0)),
            format_rfc3339(s.quantile(1.0))
        );
        let _ = writeln!(
            out,
            "  event rate    {:.2} events per second of event time",
            s.rate()
        );
        let _ = writeln!(
            out,
            "  users         {} distinct in {} accepted events",
            s.users, s.accepted
        );
    }
    let _ = writeln!(
        out,
        "  fan-out       {:.2} keys per accepted event:",
        s.keys_total as f64 / s.accepted.max(1) as f64
    );
    let _ = writeln!(out, "    {:<12} 1.00 (the total key)", "total");
    for (i, d) in config.dimensions.iter().enumerate() {
        let per = s.dim_events[i] as f64 / s.accepted.max(1) as f64;
        let _ = writeln!(
            out,
            "    {:<12} {per:.2} ({} distinct values; {} in the first half of the sample)",
            d.name, s.dim_values[i], s.dim_values_half[i]
        );
    }
    out
}

/// Obvious traps, one line each.
pub fn warnings(config: &Config, s: &SampleStats) -> Vec<String> {
    let mut w = Vec::new();
    for (i, d) in config.dimensions.iter().enumerate() {
        let (half, all) = (s.dim_values_half[i], s.dim_values[i]);
        // a dimension whose values keep appearing: the second half added ~as many as the first
        if all > 1000 && half > 0 && (all - half) as f64 > 0.6 * half as f64 {
            w.push(format!("dimension `{}` has {all} distinct values and the second half of the sample added {} new ones: its values grow with the input (an id or an ip?); every value is a key, and every key a row per window", d.name, all - half));
        }
    }
    let out_of_range = s.rejected.get("time_out_of_range").copied().unwrap_or(0);
    if out_of_range * 2 > s.lines {
        w.push(format!("{} of the lines have a time outside [limits] time_min..time_max: is `fields.time` the right field, `time_format` right ({}), the limits right?", pct(out_of_range, s.lines), config.fields.time));
    }
    let rej = s.rejected_total();
    if rej * 2 > s.lines {
        w.push(format!(
            "most lines ({}) would be rejected: check the field names in [fields]",
            pct(rej, s.lines)
        ));
    }
    w
}
