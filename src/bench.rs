//! `abacus bench`: the "benchmark hardware" use case. Generates a workload, then times every stage
//! on its own (one thread, data already in memory) and the whole pipeline at 1..N threads, so two
//! machines can be compared with one command. The same stage functions back the divan
//! micro-benchmarks in `benches/`.

use std::path::{Path, PathBuf};
use std::time::Instant;

use serde::Serialize;

use crate::config::Config;
use crate::error::{Error, Result};
use crate::parse::{Event, Parser};
use crate::state::{Fired, PartitionState, partition_of};
use crate::watermark::Watermark;

/// The bundled sample config, with its lookup path pointing at the generated CSV.
pub const CONFIG: &str = include_str!("../data/abacus.toml");

/// A generated workload held in memory: the compressed file's frames and the decoded lines.
pub struct Workload {
    pub dir: PathBuf,
    pub input: PathBuf,
    pub compressed: Vec<u8>,
    pub decoded: Vec<u8>,
    pub config: Config,
}

impl Workload {
    /// Generates `events` lines (seed 7) into `dir` and loads them.
    pub fn generate(dir: &Path, events: u64) -> Result<Workload> {
        let input = dir.join("bench.ndjson.zst");
        let opts = crate::generate::GenerateOptions::new(events, 7, input.clone());
        crate::generate::generate(&opts).map_err(|e| Error::Usage(e.to_string()))?;
        let config_path = dir.join("abacus.toml");
        std::fs::write(&config_path, CONFIG).map_err(|e| Error::output(&config_path, e))?;
        let config = Config::load(&config_path)?;
        let compressed = std::fs::read(&input).map_err(|e| Error::input(&input, e.to_string()))?;
        let decoded = decompress(&compressed);
        Ok(Workload {
            dir: dir.to_path_buf(),
            input,
            compressed,
            decoded,
            config,
        })
    }

    pub fn lines(&self) -> impl Iterator<Item = &[u8]> {
        self.decoded
            .split(|&b| b == b'\n')
            .filter(|l| !l.is_empty())
    }
}

/// Stage: zstd decoding of every frame, one thread, frame by frame as the engine decodes them.
pub fn decompress(compressed: &[u8]) -> Vec<u8> {
    match crate::input::frames(compressed) {
        Some(frames) => {
            let mut out = Vec::new();
            for (a, b) in frames {
                match crate::input::decode_frame(&compressed[a..b]) {
                    Ok(frame) => out.extend_from_slice(&frame),
                    Err(_) => return Vec::new(),
                }
            }
            out
        }
        None => zstd::stream::decode_all(compressed).unwrap_or_default(),
    }
}

/// Stage: line splitting (memchr), returns the number of lines.
pub fn split_lines(decoded: &[u8]) -> usize {
    memchr::memchr_iter(b'\n', decoded).count()
}

/// Stage: parse + field extraction + hashing of every line.
pub fn parse_all(
    w: &Workload,
    events: &mut Vec<(Event, usize, usize)>,
    keys: &mut Vec<u64>,
) -> usize {
    parse_all_with(Parser::new(&w.config), w, events, keys)
}

/// The same with a given parser (the bench also times the simd-json-only reference parser).
pub fn parse_all_with(
    mut parser: Parser,
    w: &Workload,
    events: &mut Vec<(Event, usize, usize)>,
    keys: &mut Vec<u64>,
) -> usize {
    events.clear();
    keys.clear();
    let mut rejected = 0;
    for line in w.lines() {
        let at = keys.len();
        match parser.parse(line, keys) {
            Ok(e) => events.push((e, at, keys.len() - at)),
            Err(_) => rejected += 1,
        }
    }
    rejected
}

/// Stage: routing of parsed events into per-partition buckets.
pub fn route(events: &[(Event, usize, usize)], parts: usize, buckets: &mut [Vec<u32>]) {
    for b in buckets.iter_mut() {
        b.clear();
    }
    for (i, (e, _, _)) in events.iter().enumerate() {
        buckets[partition_of(e.user, parts)].push(i as u32);
    }
}

/// Stage: watermark, dedup, lateness and window state updates (one partition), firing as the
/// watermark advances. Returns the fired counts.
pub fn count_all(w: &Workload, events: &[(Event, usize, usize)], keys: &[u64]) -> Vec<Fired> {
    let cfg = &w.config;
    let mut state = PartitionState::new(&cfg.windows, cfg.ttl, Parser::new(cfg));
    let mut wm = Watermark::new(&cfg.watermark);
    let mut fired = Vec::new();
    let line = b"{}";
    let mut ids = Vec::new();
    // As the engine does: between firings (here: watermark changes), resolve the key ids, then
    // apply the events in order (with prefetching).
    let mut start = 0;
    while start < events.len() {
        let mut end = start;
        let mut wms = Vec::new();
        while end < events.len() {
            wms.push(wm.current());
            end += 1;
            if wm.observe(events[end - 1].0.time) {
                break;
            }
        }
        let chunk = &events[start..end];
        ids.clear();
        let mut at_ids = Vec::with_capacity(chunk.len());
        for (_, at, n) in chunk {
            at_ids.push(ids.len());
            state.resolve(&keys[*at..*at + *n], line, &mut ids);
        }
        let hashes = |j: usize| &keys[chunk[j].1..chunk[j].1 + chunk[j].2];
        let ids_of = |j: usize| &ids[at_ids[j]..at_ids[j] + chunk[j].2];
        state.apply_in_order(
            chunk.len(),
            |j| {
                (
                    &chunk[j].0,
                    hashes(j),
                    ids_of(j),
                    &[][..],
                    Default::default(),
                )
            },
            |j| wms[j],
            |_, _| {},
        );
        state.fire(Some(wm.current()), &mut fired);
        start = end;
    }
    state.fire(None, &mut fired);
    fired
}

/// Stage: Arrow + Parquet encoding of `rows` result rows into a file in `dir`.
pub fn encode_parquet(dir: &Path, rows: usize) -> Result<()> {
    let mut b = crate::sink::RowsBuilder::default();
    let out = crate::outdir::OutDir::create(&dir.join("parquet-stage"), true)?;
    let mut w = crate::sink::PartWriter::new(&out.path, std::sync::Arc::clone(&out.manifest), 0);
    let types = ["email_open", "email_click", "page_view", "order_placed"];
    let dims = [None, Some("provider"), Some("campaign"), Some("browser")];
    for i in 0..rows {
        let dim = dims[i % 4];
        let value = dim.map(|_| format!("value-{}", i % 997));
        b.push(
            crate::sink::RowKey {
                metric: crate::metrics::IMPLICIT,
                event_type: Some(types[i % 4]),
                dimension: dim,
                value: value.as_deref(),
            },
            "hourly",
            (i as i64 / 5000) * 3_600_000,
            (i as i64 / 5000 + 1) * 3_600_000,
            (i % 1000) as u64,
            (i % 3000) as u64,
        );
        if b.len() == 65_536 {
            w.write(&b.finish()?)?;
        }
    }
    w.write(&b.finish()?)?;
    w.close_current()
}

#[derive(Debug, Clone, Serialize)]
pub struct StageResult {
    pub stage: String,
    pub items: u64,
    pub unit: String,
    pub seconds: f64,
    pub per_second: f64,
    /// Events per second this stage alone could sustain on one core.
    pub events_per_second: f64,
}

#[derive(Debug, Clone, Serialize)]
pub struct ScalingResult {
    pub threads: usize,
    pub seconds: f64,
    pub events_per_second: f64,
    pub speedup: f64,
}

#[derive(Debug, Clone, Serialize)]
pub struct BenchReport {
    pub machine: String,
    pub cores: usize,
    pub events: u64,
    pub input_bytes: u64,
    pub stages: Vec<StageResult>,
    pub pipeline: Vec<ScalingResult>,
}

fn time<T>(f: impl FnOnce() -> T) -> (T, f64) {
    let t = Instant::now();
    let r = f();
    (r, t.elapsed().as_secs_f64())
}

fn machine() -> String {
    std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("model name"))
                .and_then(|l| l.split(':').nth(1))
                .map(|m| m.trim().to_string())
        })
        .unwrap_or_else(|| std::env::consts::ARCH.to_string())
}

/// Runs every stage once and the whole pipeline at each thread count in `threads`.
pub fn run_bench(dir: &Path, events: u64, threads: &[usize]) -> Result<BenchReport> {
    let w = Workload::generate(dir, events)?;
    let n = events as f64;
    let mut stages = Vec::new();
    let mut stage = |name: &str, items: u64, unit: &str, seconds: f64| {
        let s = seconds.max(1e-9);
        stages.push(StageResult {
            stage: name.into(),
            items,
            unit: unit.into(),
            seconds,
            per_second: items as f64 / s,
            events_per_second: n / s,
        });
    };
    let (decoded, s) = time(|| decompress(&w.compressed));
    stage("decompress (zstd)", decoded.len() as u64, "bytes", s);
    let (lines, s) = time(|| split_lines(&w.decoded));
    stage("line split", lines as u64, "lines", s);
    let mut parsed = Vec::new();
    let mut keys = Vec::new();
    let simd_only = Parser::simd_json_only(&w.config);
    let (_, s) = time(|| parse_all_with(simd_only, &w, &mut parsed, &mut keys));
    stage("parse, simd-json only", parsed.len() as u64, "events", s);
    let (_, s) = time(|| parse_all(&w, &mut parsed, &mut keys));
    stage("parse + extract + hash", parsed.len() as u64, "events", s);
    let mut buckets = vec![Vec::new(); 16];
    let (_, s) = time(|| route(&parsed, 16, &mut buckets));
    stage("route by user hash", parsed.len() as u64, "events", s);
    let (fired, s) = time(|| count_all(&w, &parsed, &keys));
    stage("dedup + windows + fire", parsed.len() as u64, "events", s);
    let parquet_dir = dir.join("parquet");
    std::fs::create_dir_all(&parquet_dir).map_err(|e| Error::output(&parquet_dir, e))?;
    let rows = fired.len();
    let (r, s) = time(|| encode_parquet(&parquet_dir, rows));
    r?;
    stage("Parquet encode", rows as u64, "rows", s);

    let mut pipeline: Vec<ScalingResult> = Vec::new();
    for &t in threads {
        let out = dir.join(format!("out-{t}"));
        let opts = crate::run::RunOptions {
            inputs: vec![w.input.clone()],
            config: w.dir.join("abacus.toml"),
            out,
            threads: t,
            overwrite: true,
            max_rejected: None,
            skip_corrupt_input: false,
            progress: false,
            checkpoint_dir: None,
            checkpoint_every: crate::run::CheckpointEvery::default(),
            resume: false,
            batch_bytes: crate::run::BATCH_BYTES,
            memory_limit: None,
        };
        let (summary, s) = time(|| crate::run::run(&opts));
        let summary = summary?;
        let base = pipeline.first().map_or(s, |b| b.seconds);
        pipeline.push(ScalingResult {
            threads: t,
            seconds: s,
            events_per_second: summary.lines as f64 / s,
            speedup: base / s,
        });
    }
    Ok(BenchReport {
        machine: machine(),
        cores: std::thread::available_parallelism().map_or(1, |n| n.get()),
        events,
        input_bytes: w.compressed.len() as u64,
        stages,
        pipeline,
    })
}

impl BenchReport {
    pub fn table(&self) -> String {
        let mut s = format!(
            "abacus bench: {} events ({:.1} MiB zstd) on {} ({} cores)\n\nstage (one thread, in memory)       items/s            events/s\n",
            self.events,
            self.input_bytes as f64 / 1048576.0,
            self.machine,
            self.cores
        );
        for st in &self.stages {
            s += &format!(
                "  {:<30} {:>10.2} M {:<6} {:>10.2} M\n",
                st.stage,
                st.per_second / 1e6,
                st.unit,
                st.events_per_second / 1e6
            );
        }
        s += "\nwhole pipeline (file → Parquet)\n  threads   seconds   M events/s   speedup\n";
        for p in &self.pipeline {
            s += &format!(
                "  {:>7} {:>9.2} {:>12.3} {:>9.2}x\n",
                p.threads,
                p.seconds,
                p.events_per_second / 1e6,
                p.speedup
            );
        }
        s
    }
}
