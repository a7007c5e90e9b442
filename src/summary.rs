//! The run summary: the four buckets every line lands in, what was written, and how fast. It is
//! written to `OUT/_summary.json` and printed as a short table.

use std::collections::BTreeMap;
use std::path::Path;

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};

#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct Summary {
    /// True when every input was read to its end; false when the run stopped early
    /// (`--max-rejected` exceeded mid-way). `_SUCCESS` is written only beside a complete summary
    /// of a run that exits 0.
    #[serde(default)]
    pub complete: bool,
    /// Non-empty input lines read.
    pub lines: u64,
    pub counted: u64,
    pub duplicates: u64,
    pub late: u64,
    pub rejected: u64,
    pub rejected_by_reason: BTreeMap<String, u64>,
    /// Result rows written, in `files` Parquet files.
    pub rows: u64,
    pub files: u64,
    pub rows_per_window: BTreeMap<String, u64>,
    pub input_files: u64,
    pub input_bytes: u64,
    pub threads: usize,
    /// The final watermark (RFC 3339), if it ever moved.
    pub watermark: Option<String>,
    pub wall_s: f64,
    pub events_per_s: f64,
    /// Peak anonymous resident memory of the process (Linux `RssAnon`: heap, stacks, anonymous
    /// maps — the counting state plus every buffer), sampled at each batch boundary. Elsewhere:
    /// the counting-state estimate below.
    pub peak_state_bytes: u64,
    /// Peak of the engine's estimate of its counting tables (dedup records, keys, pane sets): the
    /// part that grows with distinct users and keys per open window.
    #[serde(default)]
    pub counting_state_bytes: u64,
    /// Checkpoints written by this process (the final one included) and the seconds spent on them.
    #[serde(default)]
    pub checkpoints: u64,
    #[serde(default)]
    pub checkpoint_s: f64,
    /// Size on disk of the largest checkpoint written (zstd-compressed).
    #[serde(default)]
    pub checkpoint_max_bytes: u64,
    /// Wall seconds of the main thread in each batch phase: `parse` (parallel), `order` (watermark
    /// and rejected lines, sequential), `count` (partitions, parallel), `merge` (fired rows and late
    /// lines, sequential). Decoding and Parquet encoding run beside them on their own threads.
    #[serde(default)]
    pub stage_s: BTreeMap<String, f64>,
    /// Input files that did not decode to their end: `path: reason`.
    pub corrupt_inputs: Vec<String>,
    pub warnings: Vec<String>,
}

impl Summary {
    /// `lines = counted + duplicates + late + rejected`: checked at the end of every run.
    pub fn balanced(&self) -> bool {
        self.lines == self.counted + self.duplicates + self.late + self.rejected
    }

    /// Writes `DIR/_summary.json` atomically, listed in the directory's manifest.
    pub fn write(&self, dir: &Path, manifest: &crate::outdir::Manifest) -> Result<()> {
        let path = dir.join(crate::outdir::SUMMARY);
        let text = serde_json::to_string_pretty(self)
            .map_err(|e| Error::output(&path, std::io::Error::other(e)))?;
        manifest.intend(&path)?;
        crate::outdir::write_atomic(&path, (text + "\n").as_bytes())?;
        manifest.committed(&path)
    }

    /// The table printed at the end of a run.
    pub fn table(&self, out: &Path) -> String {
        let pct = |n: u64| {
            if self.lines == 0 {
                0.0
            } else {
                100.0 * n as f64 / self.lines as f64
            }
        };
        let mut s = String::new();
        s += &format!("  lines read      {:>14}\n", self.lines);
        s += &format!(
            "  counted         {:>14}  {:>6.2}%\n",
            self.counted,
            pct(self.counted)
        );
        s += &format!(
            "  duplicates      {:>14}  {:>6.2}%\n",
            self.duplicates,
            pct(self.duplicates)
        );
        s += &format!(
            "  late            {:>14}  {:>6.2}%{}\n",
            self.late,
            pct(self.late),
            if self.late > 0 { "  → _late/" } else { "" }
        );
        s += &format!(
            "  rejected        {:>14}  {:>6.2}%{}\n",
            self.rejected,
            pct(self.rejected),
            if self.rejected > 0 {
                "  → _rejected/"
            } else {
                ""
            }
        );
        for (reason, n) in &self.rejected_by_reason {
            s += &format!("    {reason:<22}{n:>10}\n");
        }
        s += &format!(
            "  rows written    {:>14}  in {} file(s) under {}\n",
            self.rows,
            self.files,
            out.display()
        );
        for (w, n) in &self.rows_per_window {
            s += &format!("    {w:<22}{n:>10}\n");
        }
        s += &format!(
            "  time            {:>13.2}s  {:.0} events/s on {} thread(s), peak memory {:.1} MiB (counting state {:.1} MiB)\n",
            self.wall_s,
            self.events_per_s,
            self.threads,
            self.peak_state_bytes as f64 / (1024.0 * 1024.0),
            self.counting_state_bytes as f64 / (1024.0 * 1024.0)
        );
        for w in self.warnings.iter().chain(&self.corrupt_inputs) {
            s += &format!("  warning: {w}\n");
        }
        s
    }
}
