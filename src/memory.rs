//! What the process really holds in memory, and `--memory-limit`.
//!
//! Why not add up the tables: the counting state is only part of a run's memory — decoded blocks
//! in flight, the batch buffer, parse buckets, Arrow builders and the Parquet writer's row group,
//! allocator slack. An estimate of the state alone understated the peak by 2–13×, which made it
//! useless for capacity planning. So the summary reports the kernel's own figure: the process's
//! **anonymous resident memory** (`RssAnon` in `/proc/self/status`: heap, stacks and anonymous
//! maps, not the binary's pages or the page cache), sampled at every batch boundary, and keeps the
//! engine's estimate of its counting tables beside it.

use crate::error::Error;

/// The process's anonymous resident memory in bytes (Linux); `None` where it cannot be read.
pub fn anon_rss() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    status
        .lines()
        .find_map(|l| l.strip_prefix("RssAnon:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
        .map(|kib| kib * 1024)
}

/// A byte size as written on the command line: `512M`, `8G`, `1.5GiB`, `1000000` (bytes).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ByteSize(pub u64);

impl std::str::FromStr for ByteSize {
    type Err = String;
    fn from_str(s: &str) -> std::result::Result<Self, String> {
        let t = s.trim();
        let split = t
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .unwrap_or(t.len());
        let (num, unit) = t.split_at(split);
        let n: f64 = num
            .parse()
            .map_err(|_| format!("`{s}` is not a size such as 512M or 8G"))?;
        let mult: u64 = match unit.trim().to_ascii_lowercase().as_str() {
            "" | "b" => 1,
            "k" | "kb" | "kib" => 1 << 10,
            "m" | "mb" | "mib" => 1 << 20,
            "g" | "gb" | "gib" => 1 << 30,
            "t" | "tb" | "tib" => 1 << 40,
            other => return Err(format!("`{s}`: unknown unit `{other}` (use K, M, G or T)")),
        };
        let bytes = n * mult as f64;
        if !(bytes >= 1.0 && bytes < u64::MAX as f64) {
            return Err(format!("`{s}`: a memory limit must be at least one byte"));
        }
        Ok(ByteSize(bytes as u64))
    }
}

impl std::fmt::Display for ByteSize {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{:.1} MiB", self.0 as f64 / (1024.0 * 1024.0))
    }
}

/// The error a run stops with when it holds more than `--memory-limit`.
pub fn over_limit(used: u64, limit: ByteSize, checkpointed: bool) -> Error {
    let next = if checkpointed {
        "a checkpoint was taken: resume with --resume and a higher --memory-limit on a machine with more memory"
    } else {
        "nothing was written as a complete result; rerun with a higher --memory-limit (with --checkpoint-dir a stop like this one can be resumed)"
    };
    Error::MemoryLimit(format!(
        "stopped: the run holds {} of memory, more than --memory-limit {limit}; {next}. \
State grows with distinct (user, key) pairs per open window: fewer dimensions or windows, or a shorter allowed_lateness, need less",
        ByteSize(used)
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_parse() {
        assert_eq!("512M".parse::<ByteSize>().unwrap().0, 512 << 20);
        assert_eq!("8G".parse::<ByteSize>().unwrap().0, 8 << 30);
        assert_eq!("1.5GiB".parse::<ByteSize>().unwrap().0, 3 << 29);
        assert_eq!("1000".parse::<ByteSize>().unwrap().0, 1000);
        assert!("".parse::<ByteSize>().is_err());
        assert!("0".parse::<ByteSize>().is_err());
        assert!("5X".parse::<ByteSize>().is_err());
    }

    #[test]
    fn anon_rss_reads_on_linux() {
        if cfg!(target_os = "linux") {
            assert!(anon_rss().is_some_and(|b| b > 0));
        }
    }
}
