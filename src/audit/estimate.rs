//! The predicted part of `abacus explain`: runs the real engine on half the sample and on all of it
//! (so the counting state, memory and speed are the engine's own, not a model of it), then
//! extrapolates to the whole input from the file sizes. The model, stated in the report:
//! - lines: the input's bytes ÷ the sample's compression ratio ÷ its mean line length;
//! - counting state: bounded by the events of one *open horizon* (longest window + allowed
//!   lateness + out-of-orderness, or the dedup ttl), linear in them; peak memory: the full sample
//!   run's memory beside its counting state, plus the estimated state;
//! - rows: per window spec, distinct keys per window (measured in the sample's complete windows, or
//!   grown from the sample's span like its distinct keys grew) × windows over the input's span;
//! - time: the full run's batch stages per line × the input's lines, plus its start and finish,
//!   plus the cache misses a state larger than the last-level cache adds (a measured latency).

use std::fmt::Write as _;
use std::path::Path;

use super::explain::ExplainOptions;
use super::sample::SampleStats;
use crate::config::Config;
use crate::error::{Error, Result};
use crate::run::{BATCH_BYTES, CheckpointEvery, RunOptions, run};

/// One engine run on a prefix of the sample.
#[derive(Debug, Clone, Copy, Default)]
pub struct RunPoint {
    pub lines: u64,
    pub counted: u64,
    pub wall_s: f64,
    pub state: f64,
    pub peak: f64,
    pub rows: u64,
    /// Seconds of the batch stages (`stage_s` of the summary).
    pub stages_s: f64,
}

#[derive(Debug, Default)]
pub struct Estimate {
    pub runs: [RunPoint; 2],
    pub total_lines: f64,
    pub total_events: f64,
    pub span_ms: f64,
    pub horizon_ms: i64,
    pub horizon_events: f64,
    pub state_exp: f64,
    pub state: f64,
    pub peak: f64,
    /// Per spec: (name, distinct keys per window, rows per day of event time, rows in all).
    pub rows: Vec<(String, f64, f64, f64)>,
    pub per_line_s: f64,
    pub fixed_s: f64,
    pub time_s: f64,
    pub open_windows: i64,
    pub threads: usize,
    /// The last-level cache and the latency of a miss, for the time estimate.
    pub cache_bytes: f64,
    pub miss_ns: f64,
    pub extra_line_s: f64,
    /// The whole input was the sample: its rows were counted, not estimated.
    pub measured_rows: Option<u64>,
}

fn run_on(opts: &ExplainOptions, dir: &Path, input: &Path) -> Result<RunPoint> {
    let name = input.file_stem().and_then(|n| n.to_str()).unwrap_or("run");
    let ro = RunOptions {
        inputs: vec![input.to_path_buf()],
        config: opts.config.clone(),
        out: dir.join(format!("out-{name}")),
        threads: opts.threads.max(1),
        overwrite: false,
        max_rejected: None,
        skip_corrupt_input: false,
        progress: false,
        checkpoint_dir: None,
        checkpoint_every: CheckpointEvery::default(),
        resume: false,
        batch_bytes: BATCH_BYTES,
        memory_limit: None,
    };
    let s = run(&ro)?;
    Ok(RunPoint {
        lines: s.lines,
        counted: s.counted,
        wall_s: s.wall_s,
        state: s.counting_state_bytes as f64,
        peak: s.peak_state_bytes as f64,
        rows: s.rows,
        stages_s: s.stage_s.values().sum(),
    })
}

/// The first `n` lines of `text`.
fn prefix(text: &[u8], n: u64) -> &[u8] {
    let mut seen = 0;
    for (i, &b) in text.iter().enumerate() {
        if b == b'\n' {
            seen += 1;
            if seen == n {
                return &text[..=i];
            }
        }
    }
    text
}

pub fn estimate(opts: &ExplainOptions, config: &Config, s: &mut SampleStats) -> Result<Estimate> {
    let mut e = Estimate {
        threads: opts.threads.max(1),
        ..Estimate::default()
    };
    sizes(s, &mut e);
    horizon(config, s, &mut e);
    rows(config, s, &mut e);
    // The engine runs measure the process's memory: free the sample first.
    let dir = tempfile::tempdir().map_err(|e| Error::output(std::env::temp_dir(), e))?;
    let text = std::mem::take(&mut s.text);
    let half = write_input(dir.path(), "half", prefix(&text, (s.lines / 2).max(1)))?;
    let full = write_input(dir.path(), "full", &text)?;
    drop(text);
    s.keyed = Vec::new();
    e.runs = [
        run_on(opts, dir.path(), &half)?,
        run_on(opts, dir.path(), &full)?,
    ];
    state(s, &mut e);
    e.cache_bytes = last_level_cache();
    time(&mut e, s.keys_total as f64 / s.accepted.max(1) as f64);
    if s.whole_input {
        // nothing to extrapolate: the engine counted all of it
        let full = e.runs[1];
        e.state = full.state;
        e.peak = full.peak;
        e.time_s = full.wall_s;
        e.measured_rows = Some(full.rows);
    }
    Ok(e)
}

fn write_input(dir: &Path, name: &str, text: &[u8]) -> Result<std::path::PathBuf> {
    let input = dir.join(format!("{name}.ndjson"));
    std::fs::write(&input, text).map_err(|e| Error::output(&input, e))?;
    Ok(input)
}

fn sizes(s: &SampleStats, e: &mut Estimate) {
    let total_decoded = if s.whole_input {
        s.sample_decoded_bytes as f64
    } else {
        let ratio = s.sample_disk_bytes as f64 / s.sample_decoded_bytes.max(1) as f64;
        s.total_bytes as f64 / ratio.max(1e-9)
    };
    let per_line = s.sample_decoded_bytes as f64 / s.lines.max(1) as f64;
    e.total_lines = total_decoded / per_line.max(1.0);
    e.total_events = e.total_lines * s.accepted as f64 / s.lines.max(1) as f64;
    e.span_ms = e.total_events / s.rate().max(1e-9) * 1000.0;
}

/// How long an event's state lives: the longest window, plus lateness and out-of-orderness (or
/// the dedup ttl, if longer); and the open windows at a time.
fn horizon(config: &Config, s: &SampleStats, e: &mut Estimate) {
    let w = &config.windows;
    let lateness = w.lateness.unwrap_or(e.span_ms as i64);
    let ooo = config.watermark.max_out_of_orderness;
    let longest = w.specs.iter().map(|s| s.size).max().unwrap_or(0);
    let ttl = if config.fields.event_id.is_some() {
        config.ttl
    } else {
        0
    };
    e.horizon_ms = (longest + lateness + ooo).max(ttl + ooo);
    e.horizon_events = (s.rate() * e.horizon_ms as f64 / 1000.0).min(e.total_events);
    e.open_windows = w
        .specs
        .iter()
        .map(|sp| (sp.size + lateness + ooo).div_euclid(sp.slide) + 1)
        .sum();
}

/// The counting state grows linearly with the events of one open horizon (dedup records are one
/// per event; pane entries one per (user, key), an upper bound when users repeat — the two runs'
/// growth is shown, but hash tables grow in powers of two, so two small runs cannot tell the
/// curve); the memory is the full run's memory beside its state, plus the state.
fn state(s: &SampleStats, e: &mut Estimate) {
    let [a, b] = e.runs;
    let (n1, n2) = (a.counted.max(1) as f64, b.counted.max(1) as f64);
    e.state_exp = if b.state > a.state && n2 > n1 {
        (b.state / a.state.max(1.0)).ln() / (n2 / n1).ln()
    } else {
        1.0
    };
    let steady = s.span_ms() as f64 >= e.horizon_ms as f64;
    e.state = if steady {
        b.state
    } else {
        b.state * e.horizon_events / n2
    };
    e.peak = (b.peak - b.state).max(0.0) + e.state;
}

/// Distinct keys per window of `size`: the mean over the sample's complete windows, else grown
/// from the sample's span like the distinct keys grew from its first half to all of it.
fn keys_per_window(s: &SampleStats, size: i64, slide: i64) -> f64 {
    let t0 = s.quantile(0.01);
    let span = s.span_ms();
    if size <= span {
        let mut start = t0.div_euclid(slide) * slide + if t0 % slide == 0 { 0 } else { slide };
        let (mut sum, mut n) = (0usize, 0usize);
        while start + size <= t0 + span && n < 48 {
            sum += s.distinct_keys(start, size);
            n += 1;
            start += slide.max(size / 4);
        }
        if n > 0 {
            return sum as f64 / n as f64;
        }
    }
    let k_all = s.distinct_keys(t0, span) as f64;
    let k_half = s.distinct_keys(t0, span / 2).max(1) as f64;
    let b = (k_all / k_half).log2().clamp(0.0, 1.0);
    k_all * (size as f64 / span as f64).powf(b)
}

fn rows(config: &Config, s: &SampleStats, e: &mut Estimate) {
    for sp in &config.windows.specs {
        let k = keys_per_window(s, sp.size, sp.slide);
        let per_day = k * 86_400_000.0 / sp.slide as f64;
        let windows = e.span_ms / sp.slide as f64 + (sp.size / sp.slide - 1) as f64;
        e.rows
            .push((sp.name.clone(), k, per_day, k * windows.max(1.0)));
    }
}

/// The full run's batch stages (parse, order, count, merge) per line × the input's lines, plus
/// what the run spent outside them (start, the final flush of every window's rows) — and the cache
/// misses the sample did not pay: the sample's counting state fits in the last-level cache far
/// more than the whole run's will, and every event makes `keys + 2` (user, dedup) random accesses
/// into it, each missing with probability `1 − cache / state` at the cost of a random read
/// measured on this machine (independent reads, overlapped as the engine's prefetched ones
/// are); the counting stage runs on every thread at once.
fn time(e: &mut Estimate, keys_per_event: f64) {
    let b = e.runs[1];
    let miss = |state: f64| (1.0 - e.cache_bytes / state.max(1.0)).max(0.0);
    e.miss_ns = miss_latency_ns();
    let extra =
        (keys_per_event + 2.0) * (miss(e.state) - miss(b.state)).max(0.0) * e.miss_ns * 1e-9
            / e.threads.max(1) as f64;
    e.extra_line_s = extra * b.counted as f64 / b.lines.max(1) as f64;
    e.per_line_s = b.stages_s / b.lines.max(1) as f64 + e.extra_line_s;
    e.fixed_s = (b.wall_s - b.stages_s).max(0.0);
    e.time_s = e.fixed_s + e.per_line_s * e.total_lines;
}

/// The size of the largest CPU cache (Linux sysfs; 32 MiB elsewhere).
fn last_level_cache() -> f64 {
    let mut best = 0.0f64;
    for i in 0..8 {
        let p = format!("/sys/devices/system/cpu/cpu0/cache/index{i}/size");
        let Ok(t) = std::fs::read_to_string(p) else {
            continue;
        };
        let t = t.trim();
        let (num, mult) = match t.strip_suffix('K') {
            Some(n) => (n, 1024.0),
            None => match t.strip_suffix('M') {
                Some(n) => (n, 1_048_576.0),
                None => (t, 1.0),
            },
        };
        if let Ok(n) = num.parse::<f64>() {
            best = best.max(n * mult);
        }
    }
    if best > 0.0 { best } else { 32.0 * 1_048_576.0 }
}

/// Nanoseconds per random read of a 128 MiB table when the reads do not depend on each other — a
/// cache and TLB miss each, overlapped as the engine's prefetching (`state::PREFETCH_AHEAD`)
/// overlaps its own.
fn miss_latency_ns() -> f64 {
    const N: usize = 32 << 20;
    let table: Vec<u32> = (0..N as u32)
        .map(|i| i.wrapping_mul(2_654_435_761))
        .collect();
    let steps = 4_000_000u32;
    let mut x: u64 = 0x9E37_79B9_7F4A_7C15;
    let mut sum = 0u32;
    let started = std::time::Instant::now();
    for _ in 0..steps {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        sum = sum.wrapping_add(table[(x % N as u64) as usize]);
    }
    let ns = started.elapsed().as_secs_f64() * 1e9 / steps as f64;
    std::hint::black_box(sum);
    ns
}

fn mib(b: f64) -> String {
    if b < 10.0 * 1_048_576.0 {
        format!("{:.0} KiB", b / 1024.0)
    } else {
        format!("{:.0} MiB", b / 1_048_576.0)
    }
}

fn count(x: f64) -> String {
    match x {
        x if x >= 1e9 => format!("{:.2} G", x / 1e9),
        x if x >= 1e6 => format!("{:.2} M", x / 1e6),
        x if x >= 1e4 => format!("{:.0} k", x / 1e3),
        x => format!("{x:.0}"),
    }
}

pub fn report(config: &Config, s: &SampleStats, e: &Estimate) -> String {
    let mut out = String::new();
    let [a, b] = e.runs;
    let _ = writeln!(
        out,
        "engine on the sample ({} threads): {} / {} lines in {:.2} / {:.2} s; counting state {} / {}; memory {} / {}; rows {} / {}",
        e.threads,
        a.lines,
        b.lines,
        a.wall_s,
        b.wall_s,
        mib(a.state),
        mib(b.state),
        mib(a.peak),
        mib(b.peak),
        a.rows,
        b.rows
    );
    let _ = writeln!(
        out,
        "  counting state  {:.0} bytes per user, {:.0} per event (from half the sample to all it grew like events^{:.2}; estimated as linear in events)",
        b.state / s.users.max(1) as f64,
        b.state / b.counted.max(1) as f64,
        e.state_exp
    );
    let _ = writeln!(
        out,
        "  per open window {} ({} windows open at a time: window + lateness + out-of-orderness, per spec)",
        mib(e.state / e.open_windows.max(1) as f64),
        e.open_windows
    );
    let per_line = |x: f64| format!("{:.2} µs", x / s.lines.max(1) as f64 * 1e6);
    let _ = writeln!(
        out,
        "  per line        decode {}, parse {} (one core); the engine's batch stages {:.2} µs ({} threads), plus {:.2} s to start and finish",
        per_line(s.decode_s),
        per_line(s.parse_s),
        (e.per_line_s - e.extra_line_s) * 1e6,
        e.threads,
        e.fixed_s
    );
    let _ = writeln!(
        out,
        "  at full size    + {:.2} µs per line of cache misses ({} state vs a {} cache; {:.0} ns per miss, measured)",
        e.extra_line_s * 1e6,
        mib(e.state),
        mib(e.cache_bytes),
        e.miss_ns
    );
    let _ = writeln!(out, "  output rows per day of event time:");
    for (name, k, per_day, _) in &e.rows {
        let _ = writeln!(
            out,
            "    {name:<12} {} ({} keys per window)",
            count(*per_day),
            count(*k)
        );
    }
    out += &whole_input(config, s, e);
    out
}

/// The estimates for the whole input, and the warnings.
fn whole_input(config: &Config, s: &SampleStats, e: &Estimate) -> String {
    let mut out = String::new();
    let total_bytes: u64 = s.files.iter().map(|f| f.1).sum();
    if total_bytes == 0 && !s.whole_input {
        let _ = writeln!(
            out,
            "\nwhole input: its size is not known (standard input or a pipe), so nothing is extrapolated"
        );
        out += &warnings_text(config, s);
        return out;
    }
    let how = if s.whole_input {
        "measured: the sample is all of it"
    } else {
        "estimated"
    };
    let _ = writeln!(
        out,
        "\nwhole input ({} files, {:.1} MB), {how}:",
        s.files.len(),
        total_bytes as f64 / 1e6
    );
    let _ = writeln!(
        out,
        "  lines           {} ({} events counted or deduplicated), {:.1} days of event time",
        count(e.total_lines),
        count(e.total_events),
        e.span_ms / 86_400_000.0
    );
    let _ = writeln!(
        out,
        "  open horizon    {} of event time = {} events",
        super::explain::dur(e.horizon_ms),
        count(e.horizon_events)
    );
    let _ = writeln!(out, "  counting state  {}", mib(e.state));
    let _ = writeln!(
        out,
        "  peak memory     {} (resident, anonymous)",
        mib(e.peak)
    );
    let rows: f64 = e.rows.iter().map(|r| r.3).sum();
    let rows = e.measured_rows.map_or(rows, |r| r as f64);
    let _ = writeln!(out, "  output rows     {}", count(rows));
    let load = std::fs::read_to_string("/proc/loadavg")
        .ok()
        .and_then(|t| t.split_whitespace().next().map(str::to_string))
        .map_or(String::new(), |l| {
            format!(
                "; load average {l} on {} cores: the sample was timed under it",
                std::thread::available_parallelism().map_or(1, |n| n.get())
            )
        });
    let _ = writeln!(
        out,
        "  run time        {:.1} s on this machine ({} threads{load})",
        e.time_s, e.threads
    );
    out += &warnings_text(config, s);
    out
}

fn warnings_text(config: &Config, s: &SampleStats) -> String {
    let mut out = String::new();
    let warnings = super::sample::warnings(config, s);
    if !warnings.is_empty() {
        let _ = writeln!(out, "\nwarnings:");
        for w in warnings {
            let _ = writeln!(out, "  - {w}");
        }
    }
    out
}
