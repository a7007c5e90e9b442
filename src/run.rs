//! The `run` command: wires source → parse → watermark → partitions → sink, one batch at a time.
//!
//! ```text
//! reader thread ──blocks──▶ main: assemble a batch (≈16 MiB of whole lines)
//!                           ├─ parse pieces in parallel (rayon), each routing its events by user hash
//!                           ├─ watermark pass over accepted events in stream order (sequential, cheap)
//!                           ├─ partitions in parallel: dedup → late check → state update → fire windows
//!                           ├─ merge fired counts across partitions, sort → Arrow batch ─▶ sink thread
//!                           └─ late and rejected lines, in stream order ─▶ side outputs
//! ```
//! Batch boundaries depend only on the input bytes, and every decision depends only on stream order,
//! so rows and files are identical for every thread count.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, mpsc};
use std::time::Instant;

use rayon::prelude::*;

use crate::config::Config;
use crate::error::{Error, Result};
use crate::input::{self, Block, InputFile, SourceMsg};
use crate::outdir::{self, OutDir};
use crate::parse::{Event, KeyStrings, Parser, Reject};
use crate::prefix_hash::PrefixHash;
use crate::sink::{PartWriter, RowsBuilder, SideWriter};
use crate::state::{Fired, Outcome, PartitionState, partition_of};
use crate::summary::Summary;
use crate::timefmt::Millis;
use crate::watermark::Watermark;

/// Decoded bytes per batch. Fixed, so batch boundaries never depend on the thread count.
pub const BATCH_BYTES: usize = 16 << 20;

#[derive(Debug, Clone, Copy, PartialEq)]
pub enum MaxRejected {
    Count(u64),
    Percent(f64),
}

impl std::str::FromStr for MaxRejected {
    type Err = String;
    fn from_str(s: &str) -> std::result::Result<Self, String> {
        let s = s.trim();
        if let Some(p) = s.strip_suffix('%') {
            let v: f64 = p
                .trim()
                .parse()
                .map_err(|_| format!("`{s}` is not a percentage such as 0.5%"))?;
            if !(0.0..=100.0).contains(&v) {
                return Err(format!("`{s}`: a percentage must be between 0% and 100%"));
            }
            Ok(MaxRejected::Percent(v))
        } else {
            s.parse()
                .map(MaxRejected::Count)
                .map_err(|_| format!("`{s}` is neither a count (1000) nor a percentage (0.5%)"))
        }
    }
}

#[derive(Debug, Clone)]
pub struct RunOptions {
    pub inputs: Vec<PathBuf>,
    pub config: PathBuf,
    pub out: PathBuf,
    pub threads: usize,
    pub overwrite: bool,
    pub max_rejected: Option<MaxRejected>,
    pub skip_corrupt_input: bool,
    pub progress: bool,
    /// Where checkpoints go; `None` disables checkpointing (and graceful Ctrl-C).
    pub checkpoint_dir: Option<PathBuf>,
    pub checkpoint_every: CheckpointEvery,
    /// Continue from the newest valid checkpoint in `checkpoint_dir`.
    pub resume: bool,
    /// Decoded bytes per batch (default [`BATCH_BYTES`]). Results do not depend on it.
    pub batch_bytes: usize,
    /// Stop (after a checkpoint, if enabled) once the process holds more than this.
    pub memory_limit: Option<crate::memory::ByteSize>,
}

/// How often to checkpoint: after a wall-clock interval or a number of input lines (checked at batch
/// boundaries), and always at the end.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum CheckpointEvery {
    Seconds(f64),
    Lines(u64),
}

impl Default for CheckpointEvery {
    fn default() -> Self {
        CheckpointEvery::Seconds(60.0)
    }
}

impl std::str::FromStr for CheckpointEvery {
    type Err = String;
    fn from_str(s: &str) -> std::result::Result<Self, String> {
        let s = s.trim();
        if let Some(n) = s.strip_suffix("events").or_else(|| s.strip_suffix("lines")) {
            let n: u64 = n
                .trim()
                .parse()
                .map_err(|_| format!("`{s}` is not a count such as \"1000000 events\""))?;
            return Ok(CheckpointEvery::Lines(n.max(1)));
        }
        if let Ok(n) = s.parse::<u64>() {
            return Ok(CheckpointEvery::Lines(n.max(1)));
        }
        let ms = crate::timefmt::parse_duration(s)?;
        Ok(CheckpointEvery::Seconds((ms as f64 / 1000.0).max(0.001)))
    }
}

/// An accepted event routed to a partition, pointing back at its line and its keys.
#[derive(Debug, Clone, Copy)]
struct Routed {
    event: Event,
    /// Accepted-event index within the piece.
    seq: u32,
    keys_at: u32,
    nkeys: u32,
    line_len: u32,
    line_off: usize,
    /// The event's attribution hits in the bucket's `hits`.
    hits_at: u32,
    nhits: u32,
}

#[derive(Default)]
struct Bucket {
    events: Vec<Routed>,
    keys: Vec<u64>,
    /// Parallel to `keys` when some metric has `min_sum` (else empty): each key's amount.
    amounts: Vec<i64>,
    /// Attribution hits (empty without attribution metrics) and their dimension value hashes.
    hits: Vec<crate::metrics::attribution::Hit>,
    hit_vals: Vec<Option<u64>>,
}

struct Rejected {
    /// Physical line index within the piece.
    line: u64,
    off: usize,
    len: usize,
    reason: Reject,
}

/// One parallel slice of a batch, with its own parser and output buffers (reused across batches).
struct Piece {
    parser: Parser,
    range: (usize, usize),
    buckets: Vec<Bucket>,
    times: Vec<Millis>,
    rejects: Vec<Rejected>,
    lines: u64,
    phys_lines: u64,
    keys: Vec<u64>,
    seq_base: u64,
}

impl Piece {
    fn parse(&mut self, buf: &[u8], parts: usize) {
        for b in &mut self.buckets {
            b.events.clear();
            b.keys.clear();
            b.amounts.clear();
            b.hits.clear();
            b.hit_vals.clear();
        }
        self.times.clear();
        self.rejects.clear();
        self.lines = 0;
        self.phys_lines = 0;
        let (start, end) = self.range;
        let mut pos = start;
        let mut accepted: u32 = 0;
        while pos < end {
            let nl = memchr::memchr(b'\n', &buf[pos..end]).map_or(end, |i| pos + i);
            let line_no = self.phys_lines;
            self.phys_lines += 1;
            let mut line = &buf[pos..nl];
            let off = pos;
            pos = nl + 1;
            if let [rest @ .., b'\r'] = line {
                line = rest;
            }
            if line.trim_ascii().is_empty() {
                continue;
            }
            self.lines += 1;
            self.keys.clear();
            match self.parser.parse(line, &mut self.keys) {
                Ok(event) => {
                    let bucket = &mut self.buckets[partition_of(event.user, parts)];
                    let (hits, vals) = self.parser.hits();
                    let hits_at = bucket.hits.len() as u32;
                    if !hits.is_empty() {
                        let base = bucket.hit_vals.len() as u32;
                        bucket
                            .hits
                            .extend(hits.iter().map(|h| crate::metrics::attribution::Hit {
                                vals_at: h.vals_at + base,
                                ..*h
                            }));
                        bucket.hit_vals.extend_from_slice(vals);
                    }
                    bucket.events.push(Routed {
                        hits_at,
                        nhits: hits.len() as u32,
                        event,
                        seq: accepted,
                        keys_at: bucket.keys.len() as u32,
                        nkeys: self.keys.len() as u32,
                        line_len: line.len() as u32,
                        line_off: off,
                    });
                    bucket.keys.extend_from_slice(&self.keys);
                    bucket.amounts.extend_from_slice(self.parser.amounts());
                    self.times.push(event.time);
                    accepted += 1;
                }
                Err(reason) => self.rejects.push(Rejected {
                    line: line_no,
                    off,
                    len: line.len(),
                    reason,
                }),
            }
        }
    }
}

struct Partition {
    state: PartitionState,
    counted: u64,
    duplicates: u64,
    late: Vec<(u64, usize, u32)>,
    fired: Vec<Fired>,
    /// The strings of the keys in `fired`, one shared reference per key and batch.
    strings: Vec<Arc<KeyStrings>>,
    /// Parallel to `fired`: the row's key as an index into `strings`.
    local: Vec<u32>,
    /// Per key id: (batch stamp, index into `strings`), valid when the stamp is `stamp`.
    slots: Vec<(u32, u32)>,
    stamp: u32,
    /// Heap bytes of `state` after the last firing (measured here, in parallel: it walks every key).
    heap: usize,
    /// Key ids of the bucket being applied, parallel to its key hashes.
    ids: Vec<u32>,
    /// Scratch for sorting `fired`.
    sorted: Vec<Fired>,
}

/// Sorts one partition's fired rows into output order, (spec, window, key hash). A firing closes
/// a short range of windows per spec, so the rows are first distributed by (spec, window) — a
/// counting sort over that range, two linear passes — and only each window's rows are compared,
/// by hash alone: on the month-long workload the comparison sort of whole tuples was ~8% of all
/// CPU time. Each key fires once per window, so every order of equal keys is the same order.
fn sort_fired(rows: &mut Vec<Fired>, scratch: &mut Vec<Fired>) {
    const MAX_BUCKETS: i64 = 1 << 16;
    let by_tuple =
        |rows: &mut Vec<Fired>| rows.sort_unstable_by_key(|f| (f.spec, f.window, f.hash));
    if rows.len() < 256 {
        return by_tuple(rows);
    }
    let nspecs = rows.iter().map(|f| f.spec as usize + 1).max().unwrap_or(0);
    let (mut lo, mut hi) = (vec![i64::MAX; nspecs], vec![i64::MIN; nspecs]);
    for f in rows.iter() {
        let s = f.spec as usize;
        lo[s] = lo[s].min(f.window);
        hi[s] = hi[s].max(f.window);
    }
    let mut base = vec![0i64; nspecs];
    let mut buckets = 0i64;
    for s in 0..nspecs {
        base[s] = buckets;
        if lo[s] <= hi[s] {
            buckets = buckets.saturating_add(hi[s].saturating_sub(lo[s]).saturating_add(1));
        }
        if buckets > MAX_BUCKETS {
            return by_tuple(rows);
        }
    }
    let slot = |f: &Fired| (base[f.spec as usize] + (f.window - lo[f.spec as usize])) as usize;
    let mut start = vec![0usize; buckets as usize + 1];
    for f in rows.iter() {
        start[slot(f) + 1] += 1;
    }
    for i in 1..start.len() {
        start[i] += start[i - 1];
    }
    scratch.clear();
    scratch.resize(rows.len(), rows[0]);
    let mut next = start.clone();
    for f in rows.iter() {
        let i = slot(f);
        scratch[next[i]] = *f;
        next[i] += 1;
    }
    for w in start.windows(2) {
        if w[1] - w[0] > 1 {
            scratch[w[0]..w[1]].sort_unstable_by_key(|f| f.hash);
        }
    }
    std::mem::swap(rows, scratch);
}

impl Partition {
    fn process(
        &mut self,
        index: usize,
        pieces: &[Piece],
        points: &[(u64, Millis)],
        buf: &[u8],
        wm_end: Millis,
    ) {
        self.late.clear();
        self.fired.clear();
        let mut pi = 0;
        for pc in pieces {
            let bucket = &pc.buckets[index];
            let keys_of = |r: &Routed| r.keys_at as usize..(r.keys_at + r.nkeys) as usize;
            // Key ids first (a small, hot map), so the prefetches can reach the keys' counters.
            self.ids.clear();
            for r in &bucket.events {
                let line = &buf[r.line_off..r.line_off + r.line_len as usize];
                self.state
                    .resolve(&bucket.keys[keys_of(r)], line, &mut self.ids);
            }
            let ids = &self.ids;
            let seq = |j: usize| pc.seq_base + bucket.events[j].seq as u64;
            self.state.apply_in_order(
                bucket.events.len(),
                |j| {
                    let r = &bucket.events[j];
                    let amounts = bucket.amounts.get(keys_of(r)).unwrap_or(&[]);
                    let hits = r.hits_at as usize..(r.hits_at + r.nhits) as usize;
                    let attr = crate::state::AttrHits {
                        hits: &bucket.hits[hits],
                        vals: &bucket.hit_vals,
                        line: &buf[r.line_off..r.line_off + r.line_len as usize],
                    };
                    (
                        &r.event,
                        &bucket.keys[keys_of(r)],
                        &ids[keys_of(r)],
                        amounts,
                        attr,
                    )
                },
                |j| {
                    while pi + 1 < points.len() && points[pi + 1].0 <= seq(j) {
                        pi += 1;
                    }
                    points[pi].1
                },
                |j, outcome| match outcome {
                    Outcome::Counted => self.counted += 1,
                    Outcome::Duplicate => self.duplicates += 1,
                    Outcome::Late => {
                        let r = &bucket.events[j];
                        self.late.push((seq(j), r.line_off, r.line_len));
                    }
                },
            );
        }
        self.fire(Some(wm_end));
    }

    /// Fires the windows the watermark closed and readies the rows for the main thread's merge:
    /// sorted in output order (spec, window, key hash), so merging the partitions is a linear
    /// merge of sorted runs, and with their key strings collected here, in parallel.
    fn fire(&mut self, watermark: Option<Millis>) {
        self.collect(|state, out| state.fire(watermark, out));
    }

    /// One step of the end of input: the open windows of spec `s` below index `h` fire.
    fn fire_end_step(&mut self, s: usize, h: i64) {
        self.collect(|state, out| state.fire_end_step(s, h, out));
    }

    /// Runs `fire` on the state and readies its rows as [`fire`](Self::fire) describes.
    fn collect(&mut self, fire: impl FnOnce(&mut PartitionState, &mut Vec<Fired>)) {
        self.fired.clear();
        fire(&mut self.state, &mut self.fired);
        sort_fired(&mut self.fired, &mut self.sorted);
        self.strings.clear();
        self.local.clear();
        self.stamp = self.stamp.wrapping_add(1);
        if self.stamp == 0 {
            // The stamp wrapped: forget every old slot rather than trust one from 2^32 batches ago.
            self.slots.iter_mut().for_each(|s| *s = (0, 0));
            self.stamp = 1;
        }
        for f in &self.fired {
            let k = f.key as usize;
            if k >= self.slots.len() {
                self.slots.resize(k + 1, (0, 0));
            }
            if self.slots[k].0 != self.stamp {
                self.slots[k] = (self.stamp, self.strings.len() as u32);
                self.strings.push(Arc::clone(&self.state.keys[k].strings));
            }
            self.local.push(self.slots[k].1);
        }
        self.heap = self.state.heap_bytes();
    }
}

/// Where the stream stands: the next batch starts at this file, decoded offset and line number.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Position {
    pub file: usize,
    pub offset: u64,
    pub line: u64,
}

/// One result row on its way to the sink thread, which turns rows into Arrow columns.
struct OutRow {
    spec: u16,
    window: i64,
    /// Index into the message's key strings.
    key: u32,
    unique: u64,
    events: u64,
}

/// Messages to the Parquet writer thread.
enum SinkMsg {
    /// A batch's rows, and the strings of the keys they refer to: one shared reference per key
    /// and batch rather than per row (the reference counts would bounce between the two threads'
    /// caches on every row).
    Rows(Vec<OutRow>, Vec<Arc<crate::parse::KeyStrings>>),
    /// Commit the open part file and report (next part index, part files committed so far).
    Flush(mpsc::SyncSender<Result<(usize, u64)>>),
}

struct Engine<'a> {
    config: &'a Config,
    outdir: &'a OutDir,
    files: &'a [InputFile],
    out: PathBuf,
    pool: rayon::ThreadPool,
    pieces: Vec<Piece>,
    parts: Vec<Partition>,
    watermark: Watermark,
    summary: Summary,
    late: SideWriter,
    rejected: SideWriter,
    sink: Option<mpsc::SyncSender<SinkMsg>>,
    max_rejected: Option<MaxRejected>,
    /// What identifies each input's contents (with checkpoints only: stored in each one).
    identities: Vec<input::FileIdentity>,
    /// (file index, checksum of that file's decoded bytes consumed by the batches so far).
    consumed: (usize, PrefixHash),
    memory_limit: Option<crate::memory::ByteSize>,
    /// The process's memory after the last batch (see `memory`).
    memory: u64,
    progress: Option<indicatif::ProgressBar>,
    done_bytes: u64,
    checkpoints: Option<Checkpoints>,
}

/// Checkpointing state of a run.
struct Checkpoints {
    dir: PathBuf,
    every: CheckpointEvery,
    fingerprint: u64,
    seq: u64,
    last_at: Instant,
    last_lines: u64,
    interrupted: Arc<AtomicBool>,
    /// Checkpoints written by this process, the time spent writing them, the largest file.
    written: u64,
    seconds: f64,
    bytes: u64,
}

impl Engine<'_> {
    /// Runs one batch: `buf` holds whole lines of file `pos.file` starting at `pos`. Returns the
    /// number of physical lines it held (as the parse pieces counted them).
    fn batch(&mut self, buf: &[u8], pos: Position) -> Result<u64> {
        let nparts = self.parts.len();
        // Split into pieces at line boundaries.
        let n = self.pieces.len();
        let mut start = 0;
        for (i, pc) in self.pieces.iter_mut().enumerate() {
            let target = if i + 1 == n {
                buf.len()
            } else {
                (buf.len() * (i + 1) / n).max(start)
            };
            let end = if target >= buf.len() {
                buf.len()
            } else {
                memchr::memchr(b'\n', &buf[target..]).map_or(buf.len(), |j| target + j + 1)
            };
            pc.range = (start, end);
            start = end;
        }
        let t0 = Instant::now();
        if self.consumed.0 != pos.file {
            self.consumed = (pos.file, PrefixHash::default());
        }
        let (pieces, consumed) = (&mut self.pieces, &mut self.consumed.1);
        self.pool.install(|| {
            // The checksum of the file's bytes so far (checked on --resume) runs beside the parse.
            rayon::join(
                || pieces.par_iter_mut().for_each(|pc| pc.parse(buf, nparts)),
                || consumed.update(buf),
            )
        });
        let t1 = Instant::now();

        // Stream order: watermark points, counters, rejected lines.
        let mut points = vec![(0u64, self.watermark.current())];
        let mut seq = 0u64;
        let mut line = pos.line;
        for pc in &mut self.pieces {
            pc.seq_base = seq;
            for &t in &pc.times {
                seq += 1;
                if self.watermark.observe(t) {
                    points.push((seq, self.watermark.current()));
                }
            }
            self.summary.lines += pc.lines;
            for r in &pc.rejects {
                self.summary.rejected += 1;
                *self
                    .summary
                    .rejected_by_reason
                    .entry(r.reason.code().to_string())
                    .or_default() += 1;
                let record = serde_json::json!({
                    "file": self.files[pos.file].path.display().to_string(),
                    "line": line + r.line,
                    "offset": pos.offset + r.off as u64,
                    "reason": r.reason.to_string(),
                    "code": r.reason.code(),
                    "raw": String::from_utf8_lossy(&buf[r.off..r.off + r.len]),
                });
                self.rejected.line(record.to_string().as_bytes())?;
            }
            line += pc.phys_lines;
        }
        let wm_end = self.watermark.current();
        let t2 = Instant::now();

        let pieces = &self.pieces;
        self.pool.install(|| {
            self.parts
                .par_iter_mut()
                .enumerate()
                .for_each(|(i, p)| p.process(i, pieces, &points, buf, wm_end));
        });
        let t3 = Instant::now();

        let mut late: Vec<(u64, usize, u32)> = Vec::new();
        for p in &mut self.parts {
            late.append(&mut p.late);
        }
        late.sort_unstable_by_key(|l| l.0);
        for (_, off, len) in late {
            self.late.line(&buf[off..off + len as usize])?;
        }
        self.emit_fired()?;
        self.check_rejected(false)?;
        let state = self.parts.iter().map(|p| p.heap).sum::<usize>() as u64;
        self.memory = crate::memory::anon_rss().unwrap_or(state);
        let s = &mut self.summary;
        s.counting_state_bytes = s.counting_state_bytes.max(state);
        s.peak_state_bytes = s.peak_state_bytes.max(self.memory);
        let t4 = Instant::now();
        for (stage, d) in [
            ("parse", t1 - t0),
            ("order", t2 - t1),
            ("count", t3 - t2),
            ("merge", t4 - t3),
        ] {
            *self.summary.stage_s.entry(stage.to_string()).or_default() += d.as_secs_f64();
        }
        Ok(line - pos.line)
    }

    /// Merges the partitions' fired counts (each sorted by its worker) into output order and
    /// hands them to the sink. Within a window, rows are ordered by key hash: stable across runs
    /// and thread counts.
    fn emit_fired(&mut self) -> Result<()> {
        let total: usize = self.parts.iter().map(|p| p.fired.len()).sum();
        if total == 0 {
            return Ok(());
        }
        // The message's key strings: every partition's, one after the other.
        let mut strings = Vec::new();
        let mut offsets = Vec::with_capacity(self.parts.len());
        for p in &mut self.parts {
            offsets.push(strings.len() as u32);
            strings.append(&mut p.strings);
        }
        let mut per_window = vec![0u64; self.config.windows.specs.len()];
        let mut out = Vec::with_capacity(total);
        // A linear merge of the sorted runs: one run per worker thread, so scanning the heads
        // for the smallest is cheaper than a heap.
        let mut heads = vec![0usize; self.parts.len()];
        let order = |f: &Fired| (f.spec, f.window, f.hash);
        loop {
            let mut min: Option<(u16, i64, u64)> = None;
            for (p, &h) in self.parts.iter().zip(&heads) {
                if let Some(f) = p.fired.get(h)
                    && min.is_none_or(|m| order(f) < m)
                {
                    min = Some(order(f));
                }
            }
            let Some((spec, window, hash)) = min else {
                break;
            };
            // Partitions hold disjoint users, so counts of the same (window, key) add up.
            let (mut unique, mut events, mut key) = (0, 0, None);
            for ((p, h), offset) in self.parts.iter().zip(&mut heads).zip(&offsets) {
                while let Some(f) = p.fired.get(*h).filter(|f| order(f) == (spec, window, hash)) {
                    unique += f.unique;
                    events += f.events;
                    key.get_or_insert(offset + p.local[*h]);
                    *h += 1;
                }
            }
            out.push(OutRow {
                spec,
                window,
                key: key.unwrap_or_default(),
                unique,
                events,
            });
            per_window[spec as usize] += 1;
        }
        self.summary.rows += out.len() as u64;
        for (spec, n) in self.config.windows.specs.iter().zip(per_window) {
            if n > 0 {
                *self
                    .summary
                    .rows_per_window
                    .entry(spec.name.clone())
                    .or_default() += n;
            }
        }
        if let Some(tx) = &self.sink {
            crate::failpoint::hit("rows");
            if tx.send(SinkMsg::Rows(out, strings)).is_err() {
                return Err(Error::Output {
                    path: self.out.clone(),
                    source: std::io::Error::other("the Parquet writer stopped"),
                });
            }
        }
        Ok(())
    }

    fn check_rejected(&self, at_end: bool) -> Result<()> {
        let s = &self.summary;
        let exceeded = match self.max_rejected {
            None => None,
            Some(MaxRejected::Count(n)) if s.rejected > n => Some(format!(
                "{} lines rejected, more than --max-rejected {n}",
                s.rejected
            )),
            Some(MaxRejected::Percent(p))
                if (at_end || s.lines >= 100_000)
                    && s.lines > 0
                    && 100.0 * s.rejected as f64 / s.lines as f64 > p =>
            {
                Some(format!(
                    "{} of {} lines rejected ({:.3}%), more than --max-rejected {p}%",
                    s.rejected,
                    s.lines,
                    100.0 * s.rejected as f64 / s.lines as f64
                ))
            }
            Some(_) => None,
        };
        match exceeded {
            Some(msg) => Err(Error::InputProblems(format!(
                "{msg}; stopped. The rejected lines and their reasons are in {}",
                self.rejected.written_path().display()
            ))),
            None => Ok(()),
        }
    }
}

impl Engine<'_> {
    /// Commits every open output file and writes a checkpoint that resumes at `next`.
    fn checkpoint(&mut self, next: Position, complete: bool) -> Result<()> {
        if self.checkpoints.is_none() {
            return Ok(());
        }
        let started = Instant::now();
        let (ack_tx, ack_rx) = mpsc::sync_channel(1);
        let (next_part, parts_committed) = match &self.sink {
            Some(tx) if tx.send(SinkMsg::Flush(ack_tx)).is_ok() => {
                ack_rx.recv().map_err(|_| Error::Output {
                    path: self.out.clone(),
                    source: std::io::Error::other("the Parquet writer stopped"),
                })??
            }
            _ => {
                return Err(Error::Output {
                    path: self.out.clone(),
                    source: std::io::Error::other("the Parquet writer stopped"),
                });
            }
        };
        self.late.finish()?;
        self.rejected.finish()?;

        let mut w = crate::checkpoint::Writer::default();
        // Which run, the files it had committed (checked against --out before a resume) and the
        // checksum of the bytes consumed of the file it resumes in (checked as they are re-read).
        w.str(&self.outdir.manifest.run_id());
        outdir::encode_entries(&self.outdir.manifest.committed_files(), &mut w);
        encode_identities(&self.identities, &mut w);
        let prefix = match (next.offset, &self.consumed) {
            (0, _) => PrefixHash::default(),
            (n, (file, h)) if *file == next.file && h.len == n => h.clone(),
            _ => {
                return Err(Error::Checkpoint(format!(
                    "internal error: the consumed-bytes checksum is not at the checkpoint position ({next:?}); please report this"
                )));
            }
        };
        prefix.encode(&mut w);
        w.u64(next.file as u64);
        w.u64(next.offset);
        w.u64(next.line);
        let (count, current, max_seen, sample) = self.watermark.snapshot();
        w.u64(count);
        w.i64(current);
        w.i64(max_seen);
        w.u64(sample.len() as u64);
        for t in sample {
            w.i64(t);
        }
        let mut summary = self.summary.clone();
        summary.counted = self.parts.iter().map(|p| p.counted).sum();
        summary.duplicates = self.parts.iter().map(|p| p.duplicates).sum();
        summary.late = self.late.lines;
        summary.files = parts_committed;
        w.bytes(
            serde_json::to_string(&summary)
                .unwrap_or_default()
                .as_bytes(),
        );
        w.u64(next_part as u64);
        w.u64(self.late.index);
        w.u64(self.late.lines);
        w.u64(self.rejected.index);
        w.u64(self.rejected.lines);
        crate::state::encode_partitions(self.parts.iter().map(|p| &p.state), &mut w);

        let ck = self
            .checkpoints
            .as_mut()
            .ok_or_else(|| Error::Checkpoint("checkpointing is off".into()))?;
        ck.seq += 1;
        let path = crate::checkpoint::write(&ck.dir, ck.seq, ck.fingerprint, complete, &w.buf)?;
        let size = std::fs::metadata(&path).map_or(0, |m| m.len());
        ck.last_at = Instant::now();
        ck.last_lines = self.summary.lines;
        ck.written += 1;
        ck.seconds += started.elapsed().as_secs_f64();
        ck.bytes = ck.bytes.max(size);
        Ok(())
    }

    /// After a batch: checkpoint when due, and stop (after a checkpoint) when a signal asked to.
    /// Also stops, after a checkpoint when enabled, once the process holds more than
    /// `--memory-limit` (checked here, between batches: one batch's growth can overshoot it).
    fn after_batch(&mut self, next: Position) -> Result<()> {
        let over = self.memory_limit.filter(|l| self.memory > l.0);
        let Some(ck) = self.checkpoints.as_ref() else {
            return match over {
                Some(limit) => Err(crate::memory::over_limit(self.memory, limit, false)),
                None => Ok(()),
            };
        };
        let interrupted = ck.interrupted.load(Ordering::Relaxed);
        let due = match ck.every {
            CheckpointEvery::Seconds(s) => ck.last_at.elapsed().as_secs_f64() >= s,
            CheckpointEvery::Lines(n) => self.summary.lines - ck.last_lines >= n,
        };
        if due || interrupted || over.is_some() {
            self.checkpoint(next, false)?;
        }
        if let Some(limit) = over {
            return Err(crate::memory::over_limit(self.memory, limit, true));
        }
        if interrupted {
            let file = self.files.get(next.file).map_or_else(
                || "the end of input".to_string(),
                |f| format!("{} line {}", f.path.display(), next.line),
            );
            return Err(Error::Interrupted(format!(
                "interrupted; a checkpoint was taken at {file}. Resume with the same command and --resume"
            )));
        }
        Ok(())
    }

    /// Restores the state saved by [`Engine::checkpoint`]; returns where to continue reading.
    fn restore(&mut self, payload: &[u8]) -> Result<(Position, usize)> {
        let mut r = crate::checkpoint::Reader::new(payload);
        let identity = checkpoint_identity(&mut r)?;
        let next = Position {
            file: r.u64()? as usize,
            offset: r.u64()?,
            line: r.u64()?,
        };
        self.consumed = (next.file, identity.prefix);
        let count = r.u64()?;
        let current = r.i64()?;
        let max_seen = r.i64()?;
        let n = r.len(8)?;
        let mut sample = Vec::with_capacity(n);
        for _ in 0..n {
            sample.push(r.i64()?);
        }
        self.watermark.restore(count, current, max_seen, sample);
        let summary: Summary = serde_json::from_slice(r.bytes()?)
            .map_err(|e| Error::Checkpoint(format!("the checkpoint's summary is damaged: {e}")))?;
        let next_part = r.u64()? as usize;
        self.late.index = r.u64()?;
        self.late.lines = r.u64()?;
        self.rejected.index = r.u64()?;
        self.rejected.lines = r.u64()?;
        let mut states: Vec<PartitionState> = self
            .parts
            .iter_mut()
            .map(|p| {
                std::mem::replace(
                    &mut p.state,
                    PartitionState::new(
                        &self.config.windows,
                        self.config.ttl,
                        Parser::new(self.config),
                    ),
                )
            })
            .collect();
        crate::state::decode_partitions(&mut states, &mut r)?;
        for (p, st) in self.parts.iter_mut().zip(states) {
            p.state = st;
        }
        if let Some(p) = self.parts.first_mut() {
            p.counted = summary.counted;
            p.duplicates = summary.duplicates;
        }
        let keep = (
            self.summary.threads,
            self.summary.input_files,
            self.summary.input_bytes,
        );
        self.summary = summary;
        (
            self.summary.threads,
            self.summary.input_files,
            self.summary.input_bytes,
        ) = keep;
        self.summary
            .warnings
            .retain(|w| !w.contains("falling back"));
        Ok((next, next_part))
    }
}

/// The directories a run writes, opened and locked, and the checkpoint it resumes from.
struct Opened {
    out: OutDir,
    /// Held for the run's life so no second run shares the checkpoint directory.
    _checkpoint_lock: Option<outdir::DirLock>,
    loaded: Option<crate::checkpoint::Loaded>,
    warnings: Vec<String>,
    /// Resuming a run that had finished: its summary, nothing left to do.
    finished: Option<Summary>,
}

/// Locks `--checkpoint-dir` and `--out`. A fresh run starts an empty out dir (or replaces an
/// earlier run's files with `--overwrite`); a resume is checked completely — the checkpoint's
/// config and inputs, and that `--out` holds exactly the files it had committed — before anything
/// in the out dir is touched.
fn open_dirs(
    opts: &RunOptions,
    fingerprint: u64,
    files: &[InputFile],
    identities: &[input::FileIdentity],
) -> Result<Opened> {
    let checkpoint_lock = match &opts.checkpoint_dir {
        Some(dir) => {
            if !opts.resume {
                std::fs::create_dir_all(dir).map_err(|e| Error::output(dir, e))?;
            }
            if !dir.is_dir() {
                return Err(Error::Resume(format!(
                    "--checkpoint-dir {} does not exist; run without --resume to start over",
                    dir.display()
                )));
            }
            Some(outdir::DirLock::acquire(dir, "--checkpoint-dir")?)
        }
        None => None,
    };
    if !opts.resume {
        let fresh = OutDir::prepare(&opts.out, opts.overwrite)?;
        if let Some(dir) = &opts.checkpoint_dir {
            for (_, old) in crate::checkpoint::list(dir)? {
                std::fs::remove_file(&old).map_err(|e| Error::output(&old, e))?;
            }
            crate::checkpoint::clean_tmp(dir);
        }
        let out = fresh.start()?;
        return Ok(Opened {
            out,
            _checkpoint_lock: checkpoint_lock,
            loaded: None,
            warnings: Vec::new(),
            finished: None,
        });
    }
    let dir = opts.checkpoint_dir.as_ref().ok_or_else(|| {
        Error::Usage(
            "--resume needs --checkpoint-dir DIR (the one the interrupted run used)".into(),
        )
    })?;
    let (found, warnings) = crate::checkpoint::newest(dir)?;
    let found = found.ok_or_else(|| {
        Error::Resume(format!(
            "no usable checkpoint in {}{}; run without --resume to start over",
            dir.display(),
            if warnings.is_empty() {
                String::new()
            } else {
                format!(" ({})", warnings.join("; "))
            }
        ))
    })?;
    if found.fingerprint != fingerprint {
        return Err(Error::Resume(format!(
            "cannot resume: {} was taken with another config or input list (the files, their order or their sizes differ). \
Resume with exactly the same inputs and config, or run without --resume (and --overwrite) to start over",
            found.path.display()
        )));
    }
    let id = checkpoint_identity(&mut crate::checkpoint::Reader::new(&found.payload))?;
    check_identities(files, identities, &id.inputs)?;
    let out = OutDir::resume(&opts.out, &id.run_id, &id.committed, found.complete)?;
    crate::checkpoint::clean_tmp(dir);
    let finished = if found.complete {
        out.finished_summary()
    } else {
        None
    };
    Ok(Opened {
        out,
        _checkpoint_lock: checkpoint_lock,
        loaded: Some(found),
        warnings,
        finished,
    })
}

/// What a checkpoint payload starts with (see [`Engine::checkpoint`]): checked before a resume
/// touches anything.
struct CheckpointIdentity {
    run_id: String,
    committed: Vec<outdir::Entry>,
    /// Per input file, what identifies its contents (size, mtime, inode, sampled blocks).
    inputs: Vec<input::FileIdentity>,
    /// Checksum of the decoded bytes of the resume file before the resume position.
    prefix: PrefixHash,
}

fn checkpoint_identity(r: &mut crate::checkpoint::Reader) -> Result<CheckpointIdentity> {
    Ok(CheckpointIdentity {
        run_id: r.string()?,
        committed: outdir::decode_entries(r)?,
        inputs: decode_identities(r)?,
        prefix: PrefixHash::decode(r)?,
    })
}

fn encode_identities(ids: &[input::FileIdentity], w: &mut crate::checkpoint::Writer) {
    w.u64(ids.len() as u64);
    for id in ids {
        w.u64(id.size);
        w.u64((id.mtime_ns >> 64) as u64);
        w.u64(id.mtime_ns as u64);
        w.u64(id.inode);
        w.u64(id.device);
        w.u64(id.sample);
    }
}

fn decode_identities(r: &mut crate::checkpoint::Reader) -> Result<Vec<input::FileIdentity>> {
    let n = r.len(48)?;
    (0..n)
        .map(|_| {
            Ok(input::FileIdentity {
                size: r.u64()?,
                mtime_ns: ((r.u64()? as i128) << 64) | r.u64()? as i128,
                inode: r.u64()?,
                device: r.u64()?,
                sample: r.u64()?,
            })
        })
        .collect()
}

/// Refuses a resume when an input is not the file the interrupted run read: another size,
/// modification time, inode or device, or other bytes in the 16 sampled blocks.
fn check_identities(
    files: &[InputFile],
    now: &[input::FileIdentity],
    then: &[input::FileIdentity],
) -> Result<()> {
    for ((f, a), b) in files.iter().zip(now).zip(then) {
        let what = if a.size != b.size {
            "its size"
        } else if a.sample != b.sample {
            "its content (sampled blocks)"
        } else if a.mtime_ns != b.mtime_ns {
            "its modification time"
        } else if (a.inode, a.device) != (b.inode, b.device) {
            "its inode (it was replaced or copied)"
        } else {
            continue;
        };
        return Err(Error::Resume(format!(
            "cannot resume: {} changed since the checkpoint ({what} differs); the result would match neither version. \
Run without --resume (and with --overwrite) to start over",
            f.path.display()
        )));
    }
    Ok(())
}

/// Identifies a run: the config (with its lookup files) and the input list with sizes.
fn fingerprint(config: &Config, files: &[InputFile]) -> u64 {
    let mut text = format!(
        "abacus checkpoint v{}\n{:x}\n",
        crate::checkpoint::VERSION,
        config.fingerprint
    );
    for f in files {
        let path = std::fs::canonicalize(&f.path).unwrap_or_else(|_| f.path.clone());
        text += &format!("{}\t{}\n", path.display(), f.size);
    }
    xxhash_rust::xxh3::xxh3_64(text.as_bytes())
}

pub fn run(opts: &RunOptions) -> Result<Summary> {
    let started = Instant::now();
    let config = Config::load(&opts.config)?;
    // abacus's own outputs are never read back as inputs.
    let mut outputs = vec![opts.out.clone()];
    outputs.extend(opts.checkpoint_dir.iter().cloned());
    let paths = input::expand(&opts.inputs, &outputs)?;
    let files = input::open_all(&paths)?;
    if opts.checkpoint_dir.is_some()
        && let Some(pipe) = files.iter().find(|f| f.is_stream())
    {
        return Err(Error::Usage(format!(
            "--checkpoint-dir cannot be used with piped input ({}): a pipe cannot be re-read on --resume; \
write the stream to a file first, or run without checkpoints",
            pipe.path.display()
        )));
    }
    let threads = opts.threads.max(1);
    let fingerprint = fingerprint(&config, &files);
    let identities: Vec<input::FileIdentity> = match opts.checkpoint_dir {
        Some(_) => files
            .iter()
            .map(|f| input::identity(&f.path))
            .collect::<Result<_>>()?,
        None => Vec::new(),
    };

    let opened = open_dirs(opts, fingerprint, &files, &identities)?;
    if let Some(summary) = opened.finished {
        return Ok(summary);
    }
    let outdir = &opened.out;
    let loaded = opened.loaded;
    let resume_warnings = opened.warnings;
    let pool = rayon::ThreadPoolBuilder::new()
        .num_threads(threads)
        .thread_name(|i| format!("abacus-{i}"))
        .build()
        .map_err(|e| Error::Usage(format!("cannot start {threads} threads: {e}")))?;

    let total_bytes: u64 = files.iter().map(|f| f.size).sum();
    let mut summary = Summary {
        input_files: files.len() as u64,
        input_bytes: total_bytes,
        threads,
        ..Summary::default()
    };
    for f in &files {
        if f.format == input::Format::Empty {
            summary
                .warnings
                .push(format!("{}: the file is empty", f.path.display()));
        }
    }

    let progress = opts.progress.then(|| {
        let bar = indicatif::ProgressBar::with_draw_target(
            Some(total_bytes),
            indicatif::ProgressDrawTarget::stderr_with_hz(4),
        );
        bar.set_style(
            indicatif::ProgressStyle::with_template(
                "{spinner} [{elapsed_precise}] {wide_bar} {bytes}/{total_bytes} {msg} ETA {eta}",
            )
            .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar()),
        );
        bar
    });

    let interrupted = Arc::new(AtomicBool::new(false));
    if opts.checkpoint_dir.is_some() {
        for sig in [signal_hook::consts::SIGINT, signal_hook::consts::SIGTERM] {
            // A second signal while the first is being handled ends the process at once.
            let _ = signal_hook::flag::register_conditional_shutdown(
                sig,
                130,
                Arc::clone(&interrupted),
            );
            let _ = signal_hook::flag::register(sig, Arc::clone(&interrupted));
        }
    }

    let npieces = (threads * 2).max(2);
    let mut engine = Engine {
        config: &config,
        outdir,
        files: &files,
        out: opts.out.clone(),
        pieces: (0..npieces)
            .map(|_| Piece {
                parser: Parser::new(&config),
                range: (0, 0),
                buckets: (0..threads).map(|_| Bucket::default()).collect(),
                times: Vec::new(),
                rejects: Vec::new(),
                lines: 0,
                phys_lines: 0,
                keys: Vec::new(),
                seq_base: 0,
            })
            .collect(),
        parts: (0..threads)
            .map(|_| Partition {
                state: PartitionState::new(&config.windows, config.ttl, Parser::new(&config)),
                counted: 0,
                duplicates: 0,
                late: Vec::new(),
                fired: Vec::new(),
                strings: Vec::new(),
                local: Vec::new(),
                slots: Vec::new(),
                stamp: 0,
                heap: 0,
                ids: Vec::new(),
                sorted: Vec::new(),
            })
            .collect(),
        pool,
        watermark: Watermark::new(&config.watermark),
        summary,
        late: SideWriter::new(
            opts.out.join(outdir::LATE_DIR),
            Arc::clone(&outdir.manifest),
            "late",
        ),
        rejected: SideWriter::new(
            opts.out.join(outdir::REJECTED_DIR),
            Arc::clone(&outdir.manifest),
            "rejected",
        ),
        sink: None,
        max_rejected: opts.max_rejected,
        identities,
        consumed: (0, PrefixHash::default()),
        memory_limit: opts.memory_limit,
        memory: 0,
        progress,
        done_bytes: 0,
        checkpoints: opts.checkpoint_dir.as_ref().map(|dir| Checkpoints {
            dir: dir.clone(),
            every: opts.checkpoint_every,
            fingerprint,
            seq: 0,
            last_at: Instant::now(),
            last_lines: 0,
            interrupted: Arc::clone(&interrupted),
            written: 0,
            seconds: 0.0,
            bytes: 0,
        }),
    };

    let mut start = Position {
        file: 0,
        offset: 0,
        line: 1,
    };
    let mut first_part = 0;
    if let Some(found) = &loaded {
        let (next, next_part) = engine.restore(&found.payload)?;
        start = next;
        first_part = next_part;
        engine
            .summary
            .warnings
            .extend(resume_warnings.iter().cloned());
        if let (Some(ck), Some(seq)) = (
            engine.checkpoints.as_mut(),
            crate::checkpoint::list(
                &found
                    .path
                    .parent()
                    .map(Path::to_path_buf)
                    .unwrap_or_default(),
            )?
            .first(),
        ) {
            ck.seq = seq.0;
        }
        engine.done_bytes = files[..start.file.min(files.len())]
            .iter()
            .map(|f| f.size)
            .sum();
    }
    let parts_before = engine.summary.files;

    // Sink thread: Parquet encoding overlaps the counting of the next batch.
    let (sink_tx, sink_rx) = mpsc::sync_channel::<SinkMsg>(2);
    let out_dir = opts.out.clone();
    let manifest = Arc::clone(&outdir.manifest);
    let specs = config.windows.specs.clone();
    let dims: Vec<String> = config.dimensions.iter().map(|d| d.name.clone()).collect();
    let metrics: Vec<String> = config.metrics.iter().map(|m| m.name.clone()).collect();
    let sink_thread = std::thread::Builder::new()
        .name("abacus-sink".into())
        .spawn(move || -> Result<u64> {
            let mut w = PartWriter::new(&out_dir, manifest, first_part);
            // Arrow columns are built here, off the main thread, from the shared key strings.
            // Batches of at most 64 Ki rows: the Arrow builders of a whole firing of a
            // high-cardinality input would hold gigabytes.
            let encode =
                |rows: &[OutRow], keys: &[Arc<KeyStrings>], w: &mut PartWriter| -> Result<()> {
                    // Each key's strings, copied once into one local buffer: rows visit the keys in
                    // hash order, and reading the strings through the shared keys row by row missed
                    // the cache on nearly every row (the partition threads allocated and last
                    // touched them).
                    let mut text = String::new();
                    let mut span = |s: &str| {
                        text.push_str(s);
                        text.len() - s.len()..text.len()
                    };
                    let local: Vec<_> = keys
                        .iter()
                        .map(|k| {
                            let metric = metrics.get(k.metric as usize).map_or("", String::as_str);
                            let dim = k.dimension.map(|d| dims[d as usize].as_str());
                            let et = k.event_type.as_deref().map(&mut span);
                            (metric, et, dim, k.value.as_deref().map(&mut span))
                        })
                        .collect();
                    for chunk in rows.chunks(1 << 16) {
                        let mut b = RowsBuilder::with_capacity(chunk.len());
                        for r in chunk {
                            let spec = &specs[r.spec as usize];
                            let (metric, event_type, dim, value) = &local[r.key as usize];
                            b.push(
                                crate::sink::RowKey {
                                    metric,
                                    event_type: event_type.clone().map(|t| &text[t]),
                                    dimension: *dim,
                                    value: value.clone().map(|v| &text[v]),
                                },
                                &spec.name,
                                spec.start(r.window),
                                spec.end(r.window),
                                r.unique,
                                r.events,
                            );
                        }
                        w.write(&b.finish()?)?;
                    }
                    Ok(())
                };
            let mut failed: Option<Error> = None;
            for msg in sink_rx {
                match msg {
                    SinkMsg::Rows(rows, keys) => {
                        if failed.is_none() {
                            failed = encode(&rows, &keys, &mut w).err();
                        }
                    }
                    SinkMsg::Flush(ack) => {
                        let r = match failed.take() {
                            Some(e) => Err(e),
                            None => w
                                .close_current()
                                .map(|_| (w.next_index(), parts_before + w.files.len() as u64)),
                        };
                        let _ = ack.send(r);
                    }
                }
            }
            if let Some(e) = failed {
                return Err(e);
            }
            w.close_current()?;
            Ok(parts_before + w.files.len() as u64)
        })
        .map_err(|e| Error::output(&opts.out, e))?;
    engine.sink = Some(sink_tx);

    if loaded.is_none() && engine.checkpoints.is_some() {
        // A first checkpoint before any work, so even a run killed at once can be resumed.
        engine.checkpoint(start, false)?;
    }
    let result = drive(&mut engine, opts, start).and_then(|()| {
        // The final checkpoint marks the run complete: a later --resume only reports the summary.
        let end = Position {
            file: files.len(),
            offset: 0,
            line: 1,
        };
        if engine.checkpoints.is_some() {
            engine.checkpoint(end, true)
        } else {
            Ok(())
        }
    });
    // Always close the sink thread so a failure does not leave it waiting.
    engine.sink = None;
    let files_written = match sink_thread.join() {
        Ok(r) => r,
        Err(_) => Err(Error::Output {
            path: opts.out.clone(),
            source: std::io::Error::other("the Parquet writer thread panicked"),
        }),
    };
    if let Some(bar) = &engine.progress {
        bar.finish_and_clear();
    }
    // Side outputs are committed even when the run stops early (--max-rejected), so the file the
    // error message points at exists.
    let sides = engine.late.finish().and_then(|_| engine.rejected.finish());
    if let Err(e) = result {
        if let (Error::InputProblems(_), Ok(files)) = (&e, &files_written) {
            let mut partial = engine.summary.clone();
            partial.counted = engine.parts.iter().map(|p| p.counted).sum();
            partial.duplicates = engine.parts.iter().map(|p| p.duplicates).sum();
            partial.late = engine.late.lines;
            partial.files = *files;
            partial.wall_s = started.elapsed().as_secs_f64();
            partial.warnings.push(e.to_string());
            let _ = partial.write(&opts.out, &outdir.manifest);
        }
        return Err(e);
    }
    sides?;
    let files_written = files_written?;

    let mut summary = engine.summary.clone();
    summary.counted = engine.parts.iter().map(|p| p.counted).sum();
    summary.duplicates = engine.parts.iter().map(|p| p.duplicates).sum();
    summary.late = engine.late.lines;
    summary.files = files_written;
    let wm = engine.watermark.current();
    summary.watermark = (wm != Millis::MIN).then(|| crate::timefmt::format_rfc3339(wm));
    summary.wall_s = started.elapsed().as_secs_f64();
    summary.events_per_s = if summary.wall_s > 0.0 {
        summary.lines as f64 / summary.wall_s
    } else {
        0.0
    };
    if let Some(ck) = &engine.checkpoints {
        summary.checkpoints = ck.written;
        summary.checkpoint_s = ck.seconds;
        summary.checkpoint_max_bytes = ck.bytes;
    }
    if !summary.balanced() {
        return Err(Error::Output {
            path: opts.out.clone(),
            source: std::io::Error::other(format!(
                "internal error: lines ({}) ≠ counted ({}) + duplicates ({}) + late ({}) + rejected ({}); please report this",
                summary.lines, summary.counted, summary.duplicates, summary.late, summary.rejected
            )),
        });
    }
    summary.complete = true;
    summary.write(&opts.out, &outdir.manifest)?;
    engine.summary = summary.clone();
    engine.check_rejected(true)?;
    if !summary.corrupt_inputs.is_empty() && !opts.skip_corrupt_input {
        return Err(Error::Input {
            path: PathBuf::from(summary.corrupt_inputs[0].clone()),
            reason: format!(
                "{} input file(s) did not decode to their end; everything before the failure was counted and the results were written. Pass --skip-corrupt-input to accept this",
                summary.corrupt_inputs.len()
            ),
        });
    }
    // Last of all: the marker that this directory is a complete, successful result.
    outdir.mark_success()?;
    Ok(summary)
}

fn drive(engine: &mut Engine, opts: &RunOptions, start: Position) -> Result<()> {
    let (tx, rx) = mpsc::sync_channel::<SourceMsg>(4);
    let files = engine.files.to_vec();
    let parallel_frames = engine.pool.current_num_threads() * 2;
    let reader_pool = rayon::ThreadPoolBuilder::new()
        .num_threads(engine.pool.current_num_threads())
        .thread_name(|i| format!("abacus-decode-{i}"))
        .build()
        .map_err(|e| Error::Usage(format!("cannot start decoder threads: {e}")))?;
    let skip_to = (start.file, start.offset);
    // A resume inside a file re-reads its prefix and checks it is what the checkpoint consumed.
    let prefix = (start.offset > 0).then(|| engine.consumed.1.clone());
    let reader = std::thread::Builder::new()
        .name("abacus-reader".into())
        .spawn(move || {
            reader_pool
                .install(|| input::read_all(&files, parallel_frames, skip_to, prefix.as_ref(), &tx))
        })
        .map_err(|e| Error::output(&opts.out, e))?;

    let batch_bytes = opts.batch_bytes.max(1);
    let mut buf: Vec<u8> = Vec::new();
    let mut pos = start;
    let mut started = false;
    let result = (|| -> Result<()> {
        for msg in rx.iter() {
            match msg {
                SourceMsg::Block(Block {
                    file,
                    offset,
                    data,
                    consumed,
                    last,
                }) => {
                    if !started || file != pos.file {
                        if started && !buf.is_empty() {
                            engine.batch(&buf, pos)?;
                            buf.clear();
                        }
                        if started && file != pos.file {
                            engine.done_bytes += engine.files[pos.file].size;
                        }
                        let line = if file == start.file && !started {
                            start.line
                        } else {
                            1
                        };
                        pos = Position { file, offset, line };
                        started = true;
                    }
                    if buf.is_empty() {
                        pos.offset = offset;
                    }
                    buf.extend_from_slice(&data);
                    // Cut batches of about `batch_bytes` at line ends; a file's tail is its last batch.
                    let mut at = 0;
                    loop {
                        let rest = &buf[at..];
                        let cut = if rest.len() >= batch_bytes {
                            memchr::memchr(b'\n', &rest[batch_bytes - 1..]).map(|i| batch_bytes + i)
                        } else {
                            None
                        };
                        let end = match cut {
                            Some(c) => c,
                            None if last && !rest.is_empty() => rest.len(),
                            None => break,
                        };
                        let lines = engine.batch(&buf[at..at + end], pos)?;
                        at += end;
                        pos.offset += end as u64;
                        pos.line += lines;
                        let file_done = last && at == buf.len();
                        engine.after_batch(if file_done {
                            Position {
                                file: file + 1,
                                offset: 0,
                                line: 1,
                            }
                        } else {
                            pos
                        })?;
                        if file_done {
                            break;
                        }
                    }
                    // Keep the partial last line; the buffer's capacity is reused.
                    buf.drain(..at);
                    if let Some(bar) = &engine.progress {
                        bar.set_position(engine.done_bytes + consumed);
                        let secs = bar.elapsed().as_secs_f64().max(1e-3);
                        let rej = if engine.summary.rejected > 0 {
                            format!(", {} rejected", engine.summary.rejected)
                        } else {
                            String::new()
                        };
                        bar.set_message(format!(
                            "{:.2} M lines/s{rej}",
                            engine.summary.lines as f64 / secs / 1e6
                        ));
                    }
                }
                SourceMsg::Corrupt {
                    file,
                    offset,
                    reason,
                } => {
                    if file == pos.file && !buf.is_empty() {
                        engine.batch(&buf, pos)?;
                        buf.clear();
                    }
                    let msg = format!(
                        "{}: at byte {offset}: {reason}",
                        engine.files[file].path.display()
                    );
                    if let Some(bar) = &engine.progress {
                        bar.println(format!("warning: {msg}"));
                    }
                    engine.summary.corrupt_inputs.push(msg);
                    engine.after_batch(Position {
                        file: file + 1,
                        offset: 0,
                        line: 1,
                    })?;
                }
            }
        }
        Ok(())
    })();
    drop(rx);
    let read = reader.join().map_err(|_| Error::Output {
        path: opts.out.clone(),
        source: std::io::Error::other("the reader thread panicked"),
    })?;
    result?;
    // A reader that failed (an input shrank, could not be read, or changed since the checkpoint)
    // means the input is not complete: stop before the end-of-input firing and the summary.
    read?;
    if !buf.is_empty() {
        engine.batch(&buf, pos)?;
        buf.clear();
    }
    fire_end(engine)
}

/// Most steps the end-of-input firing of one window spec is cut into.
const END_STEPS: i128 = 64;

/// End of input: every window still open fires (partitions in parallel) — spec by spec, in at
/// most [`END_STEPS`] ascending ranges of window indexes, each merged and handed to the sink
/// before the next fires. The rows and their order are those of one firing of everything, but
/// only one step's rows are held at a time: with a million live keys the open windows hold tens
/// of millions of rows, which as one batch peaked at 4 GB.
fn fire_end(engine: &mut Engine) -> Result<()> {
    let pool = &engine.pool;
    let parts = &mut engine.parts;
    pool.install(|| parts.par_iter_mut().for_each(|p| p.state.begin_end()));
    for s in 0..engine.config.windows.specs.len() {
        let range = engine
            .parts
            .iter()
            .filter_map(|p| p.state.open_windows(s))
            .reduce(|a, b| (a.0.min(b.0), a.1.max(b.1)));
        let Some((lo, hi)) = range else {
            continue;
        };
        let span = i128::from(hi) - i128::from(lo) + 1;
        let step = ((span + END_STEPS - 1) / END_STEPS).max(1);
        let mut bound = i128::from(lo);
        while bound <= i128::from(hi) {
            bound += step;
            let h = bound.min(i128::from(i64::MAX)) as i64;
            let parts = &mut engine.parts;
            engine
                .pool
                .install(|| parts.par_iter_mut().for_each(|p| p.fire_end_step(s, h)));
            engine.emit_fired()?;
        }
    }
    let parts = &mut engine.parts;
    engine
        .pool
        .install(|| parts.par_iter_mut().for_each(|p| p.fire(None)));
    engine.emit_fired()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fired(spec: u16, window: i64, hash: u64) -> Fired {
        Fired {
            key: hash as u32,
            hash,
            spec,
            window,
            unique: 1,
            events: 1,
        }
    }

    proptest::proptest! {
        /// The bucketed sort gives the order of the plain tuple sort (rows unique per
        /// (spec, window, hash), as fired rows are), also for window ranges too wide to bucket.
        #[test]
        fn sort_fired_is_the_tuple_sort(
            rows in proptest::collection::btree_set((0u16..4, -3i64..40, 0u64..50), 0..600),
            far in proptest::bool::ANY,
        ) {
            let mut rows: Vec<Fired> = rows
                .into_iter()
                .map(|(s, w, h)| fired(s, if far && s == 3 { w * 1_000_000 } else { w }, h))
                .rev()
                .collect();
            let mut expected = rows.clone();
            expected.sort_unstable_by_key(|f| (f.spec, f.window, f.hash));
            let mut scratch = Vec::new();
            sort_fired(&mut rows, &mut scratch);
            proptest::prop_assert_eq!(rows, expected);
        }
    }
}
