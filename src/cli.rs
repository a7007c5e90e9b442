//! Command-line definitions. `--help` is the user's first manual, so it explains, with examples.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};

use crate::run::{CheckpointEvery, MaxRejected};

#[derive(Debug, Parser)]
#[command(
    name = "abacus",
    version,
    about = "Exact unique-user counts in event-time windows, replayed from NDJSON event logs",
    long_about = "abacus replays event logs (NDJSON, plain or zstd-compressed) and counts, exactly, how many \
distinct users did each event type in each event-time window — in total and per dimension value \
(\"how many unique individuals opened emails from campaign X between 3:00 and 4:00?\"). \
Results are Parquet; late and rejected lines go to side files, so no event is lost silently.",
    after_help = "Examples:\n  abacus generate --events 1000000 --seed 7 --out bench-data/1m.ndjson.zst\n  abacus run bench-data/1m.ndjson.zst --config data/abacus.toml --out results/\n  abacus run logs/ 'more/*.jsonl.zst' --config prod.toml --out out/ --threads 8 --overwrite"
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Count unique users per event type, dimension value and window; write Parquet.
    Run(RunArgs),
    /// Write a realistic synthetic event log (zstd NDJSON) and its campaign lookup CSV.
    Generate(GenerateArgs),
    /// Benchmark this machine: every stage alone, then the whole pipeline at 1..N threads.
    Bench(BenchArgs),
    /// Compare two result sets (a production export, an abacus run): exit 0 equal, 1 not.
    Diff(DiffArgs),
    /// Draw unique users over time from results (SVG or PNG).
    Plot(PlotArgs),
    /// Say what a config does; with input, estimate a run's memory, rows and time from a sample.
    Explain(ExplainArgs),
}

#[derive(Debug, Args)]
#[command(
    after_help = "With input, the first --sample lines are parsed with the engine's parser, then counted by the \
engine itself (half of them, then all), and the results are extrapolated to the whole input from the \
file sizes: lines, counting state, peak memory, output rows, run time. The report states the model.

Examples:
  abacus explain --config data/abacus.toml
  abacus explain --config data/abacus.toml data/sample.ndjson.zst
  abacus explain --config prod.toml logs/ --sample 1000000 --threads 8"
)]
pub struct ExplainArgs {
    /// The TOML config to explain.
    #[arg(long, short, value_name = "FILE")]
    pub config: PathBuf,

    /// Inputs to sample (files, directories or globs, as for `run`); none: only the config.
    #[arg(value_name = "INPUT")]
    pub inputs: Vec<PathBuf>,

    /// Lines read from the start of the input.
    #[arg(long, value_name = "N", default_value_t = 100_000)]
    pub sample: usize,

    /// Threads of the engine runs on the sample, and of the estimated run (default: all cores).
    #[arg(long, short = 'j', value_name = "N")]
    pub threads: Option<usize>,
}

#[derive(Debug, Args)]
#[command(
    after_help = "Default: the total rows (all users) of the busiest event type in the first window spec. \
Times on the x axis are UTC window starts.

Examples:
  abacus plot results/sample -o chart.svg
  abacus plot results/sample --event-type email_open --dimension campaign --top 5 -o top.png
  abacus plot results/sample --window daily --dimension provider --value gmail.com -o gmail.svg"
)]
pub struct PlotArgs {
    /// Results to plot: an abacus out dir, or Parquet files (a path or a glob).
    #[arg(value_name = "OUT")]
    pub source: String,

    /// The picture to write: .svg or .png.
    #[arg(long, short, value_name = "FILE", default_value = "chart.svg")]
    pub output: PathBuf,

    /// The metric to plot (when the results have a `metric` column; default: the first).
    #[arg(long, value_name = "NAME")]
    pub metric: Option<String>,

    /// The event type (default: the one with the most events).
    #[arg(long, value_name = "TYPE")]
    pub event_type: Option<String>,

    /// The window spec, by name (default: the first in the config).
    #[arg(long, value_name = "NAME")]
    pub window: Option<String>,

    /// Plot per value of this dimension instead of all users (with --value, or the --top values).
    #[arg(long, value_name = "NAME")]
    pub dimension: Option<String>,

    /// The one value of --dimension to plot.
    #[arg(
        long,
        value_name = "VALUE",
        requires = "dimension",
        conflicts_with = "top"
    )]
    pub value: Option<String>,

    /// Plot the N values of --dimension with the most users, one line each, with a legend
    /// (default 5).
    #[arg(long, value_name = "N", requires = "dimension")]
    pub top: Option<usize>,

    /// Picture width in pixels.
    #[arg(long, default_value_t = 1000)]
    pub width: u32,

    /// Picture height in pixels.
    #[arg(long, default_value_t = 500)]
    pub height: u32,
}

#[derive(Debug, Args)]
#[command(
    after_help = "Each side: an abacus out dir, a Parquet file or glob ('exports/*.parquet'), or a CSV file \
with a header. Rows are matched on the key columns both sides have (metric, event_type, dimension, value, \
window, window_start, window_end) and compared on unique_users, and on events when both have it. Times may be \
timestamps, unix seconds (or ms) or RFC 3339 text (no zone = UTC); in key columns an empty text is null, and \
a row without a value is a total row. A key column filled by --set also restricts the other side to the \
rows with that value.

Exit codes: 0 equal (within --tolerance), 1 not equal (the report says what differs), 2 usage error or an \
input that cannot be compared (missing column, a key twice, an unparsable time, no rows).

Examples:
  abacus diff results/run-a results/run-b
  abacus diff prod-export.csv results/sample \\
      --map hour=window_start,campaign_id=value,count=unique_users \\
      --set event_type=email_open,dimension=campaign,window=hourly --tolerance 0.5%
  abacus diff 'prod/*.parquet' results/ --tolerance 3 --out diff.parquet"
)]
pub struct DiffArgs {
    /// The reference result set (e.g. what production reported).
    #[arg(value_name = "EXPECTED")]
    pub expected: String,

    /// The result set to check (e.g. an abacus out dir).
    #[arg(value_name = "ACTUAL")]
    pub actual: String,

    /// Read a side's columns under abacus's names (an export's, on whichever side it is):
    /// COL=ABACUS_COL, comma-separated or repeated (hour=window_start,campaign_id=value,count=unique_users).
    #[arg(long, value_name = "COL=ABACUS_COL,...", value_delimiter = ',')]
    pub map: Vec<String>,

    /// Fill a key column a side lacks: window=hourly, event_type=email_open, dimension=campaign,
    /// metric=NAME; comma-separated or repeated.
    #[arg(long, value_name = "COL=VALUE,...", value_delimiter = ',')]
    pub set: Vec<String>,

    /// How far counts may differ and still be equal: a count (3) or a share of the expected
    /// count (0.5%). Default: exact.
    #[arg(long, value_name = "N|P%", default_value = "0")]
    pub tolerance: crate::audit::Tolerance,

    /// Write every differing row, with both sides' values, to this Parquet file.
    #[arg(long, value_name = "FILE")]
    pub out: Option<PathBuf>,

    /// Rows shown in each list of the report (worst differences, rows only one side has).
    #[arg(long, value_name = "N", default_value_t = 10)]
    pub top: usize,
}

#[derive(Debug, Args)]
pub struct BenchArgs {
    /// Events in the generated workload.
    #[arg(long, default_value_t = 1_000_000)]
    pub events: u64,

    /// Largest thread count for the scaling curve (1, 2, 4, … up to it; default: all cores).
    #[arg(long, short = 'j', value_name = "N")]
    pub threads: Option<usize>,

    /// Print the report as JSON instead of a table.
    #[arg(long)]
    pub json: bool,

    /// Working directory for the generated data (default: a temporary directory, removed after).
    #[arg(long, value_name = "DIR")]
    pub dir: Option<PathBuf>,
}

#[derive(Debug, Args)]
#[command(
    after_help = "Exit codes: 0 success, 1 runtime or input failure, 2 usage or config error, \
3 finished but --max-rejected was exceeded, 130 interrupted (a checkpoint was taken: run again with --resume).\n\nOutputs in --out: part-NNNNN.parquet (results), _summary.json, \
_late/ (late events' original lines), _rejected/ (rejected lines with file, line, offset and reason), _manifest.json (what abacus wrote), _SUCCESS (written last, on success)."
)]
pub struct RunArgs {
    /// Input files, directories (every *.ndjson[.zst] / *.jsonl[.zst] inside, sorted) or glob
    /// patterns. Read in the order given, as one stream. zstd is recognised by its magic bytes.
    #[arg(required = true, value_name = "INPUT")]
    pub inputs: Vec<PathBuf>,

    /// The TOML config: field names, dimensions, windows, watermark (see data/abacus.toml).
    #[arg(long, short, value_name = "FILE")]
    pub config: PathBuf,

    /// Directory for the results; created if missing.
    #[arg(long, short, value_name = "DIR")]
    pub out: PathBuf,

    /// Worker threads (default: all cores). Results are identical for every value.
    #[arg(long, short = 'j', value_name = "N")]
    pub threads: Option<usize>,

    /// Replace results already in --out.
    #[arg(long)]
    pub overwrite: bool,

    /// Stop with exit code 3 once more lines than this are rejected: a count (1000) or a share of
    /// the lines read (0.5%). Default: no limit.
    #[arg(long, value_name = "N|P%")]
    pub max_rejected: Option<MaxRejected>,

    /// Accept a zstd input that is truncated or corrupt: count what decodes, warn, exit 0.
    #[arg(long)]
    pub skip_corrupt_input: bool,

    /// Take checkpoints in DIR so an interrupted run can be resumed with --resume. With it, Ctrl-C
    /// (SIGINT/SIGTERM) takes a final checkpoint and exits with code 130.
    #[arg(long, value_name = "DIR")]
    pub checkpoint_dir: Option<PathBuf>,

    /// How often to checkpoint: a duration ("60s", the default; "5m") or a number of input lines
    /// ("1000000 events"). Always also at the end.
    #[arg(long, value_name = "DURATION|N events", requires = "checkpoint_dir")]
    pub checkpoint_every: Option<CheckpointEvery>,

    /// Continue from the newest valid checkpoint in --checkpoint-dir (same inputs, config and --out).
    /// Output written after that checkpoint is discarded and rewritten, so every row appears once.
    #[arg(long, requires = "checkpoint_dir")]
    pub resume: bool,

    /// Stop once the process holds more memory than this (512M, 8G): checked between batches
    /// against the process's resident anonymous memory; with --checkpoint-dir a checkpoint is
    /// taken first, so the run can be resumed on a larger machine. Default: no limit.
    #[arg(long, value_name = "SIZE")]
    pub memory_limit: Option<crate::memory::ByteSize>,

    /// Decoded input bytes per batch (advanced). Checkpoints and window firing happen at batch
    /// boundaries; results are identical for every value.
    #[arg(long, value_name = "BYTES", default_value_t = crate::run::BATCH_BYTES, hide_short_help = true)]
    pub batch_size: usize,

    /// No progress bar and no summary table (for scripts; errors still go to stderr).
    #[arg(long, short)]
    pub quiet: bool,
}

#[derive(Debug, Args)]
pub struct GenerateArgs {
    /// Event lines to write (re-delivered duplicates included).
    #[arg(long, value_name = "N")]
    pub events: u64,

    /// Seed: the same seed and options give a byte-identical file.
    #[arg(long, default_value_t = 1)]
    pub seed: u64,

    /// Output file (.ndjson.zst), written in independent ~4 MiB zstd frames.
    #[arg(long, short, value_name = "FILE")]
    pub out: PathBuf,

    /// Where to write the campaigns lookup CSV (default: campaigns.csv beside --out).
    #[arg(long, value_name = "FILE")]
    pub lookup: Option<PathBuf>,

    /// Size of the user population.
    #[arg(long, default_value_t = 100_000)]
    pub users: u64,

    /// Mean events per second of event time: the file spans events / rate seconds.
    #[arg(long, default_value_t = 10.0)]
    pub rate: f64,

    /// Event time of the first event (RFC 3339).
    #[arg(long, default_value = "2024-01-01T00:00:00Z")]
    pub start: String,
}
