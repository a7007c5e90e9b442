//! `abacus explain --config C [INPUT...]`: what a config does, in plain words, and — given input —
//! what a run will cost before starting one that may take hours: the sample's fan-out, rejects,
//! event rate and users ([`super::sample`]), the counting state and speed measured by running the
//! engine on the sample, and their extrapolation to the whole input ([`super::estimate`]).

use std::fmt::Write as _;
use std::path::PathBuf;

use super::report::fmt_time as format_rfc3339;
use crate::config::{Config, Extract, Strategy, TimeFormat};
use crate::error::Result;

#[derive(Debug, Clone)]
pub struct ExplainOptions {
    pub config: PathBuf,
    pub inputs: Vec<PathBuf>,
    /// Lines read from the start of the input.
    pub sample: usize,
    pub threads: usize,
}

/// Explains the config and, with inputs, the sample and the estimates.
pub fn explain(opts: &ExplainOptions) -> Result<String> {
    let config = Config::load(&opts.config)?;
    let mut out = describe(&config);
    if !opts.inputs.is_empty() {
        let mut stats = super::sample::measure(&config, &opts.inputs, opts.sample)?;
        out.push('\n');
        out += &super::sample::report(&config, &stats);
        let est = super::estimate::estimate(opts, &config, &mut stats)?;
        out.push('\n');
        out += &super::estimate::report(&config, &stats, &est);
    }
    Ok(out)
}

/// Durations as a config would write them: `90s`, `15m`, `1h`, `24h`, `7d`.
pub fn dur(ms: i64) -> String {
    const H: i64 = 3_600_000;
    match ms {
        ms if ms >= 7 * 24 * H && ms % (24 * H) == 0 => format!("{}d", ms / (24 * H)),
        ms if ms >= H && ms % H == 0 => format!("{}h", ms / H),
        ms if ms >= 60_000 && ms % 60_000 == 0 => format!("{}m", ms / 60_000),
        ms if ms % 1000 == 0 => format!("{}s", ms / 1000),
        ms => format!("{ms}ms"),
    }
}

/// Windows a single event belongs to: `size / slide` per spec.
pub fn windows_per_event(config: &Config) -> i64 {
    config.windows.specs.iter().map(|s| s.size / s.slide).sum()
}

/// The resolved config in plain words.
pub fn describe(config: &Config) -> String {
    let mut out = String::new();
    let f = &config.fields;
    let _ = writeln!(out, "config {}", config.path.display());
    let _ = writeln!(out, "\nfields");
    let _ = writeln!(
        out,
        "  user        `{}`: its distinct values are counted",
        f.user
    );
    let tf = match f.time_format {
        TimeFormat::UnixS => "unix seconds",
        TimeFormat::UnixMs => "unix milliseconds",
        TimeFormat::Rfc3339 => "RFC 3339 text",
        TimeFormat::Auto => {
            "auto: a number is seconds below 1e11, else ms; a string is RFC 3339 or digits"
        }
    };
    let _ = writeln!(out, "  time        `{}` ({tf})", f.time);
    let _ = writeln!(out, "  event type  `{}`", f.event_type);
    match &f.event_id {
        Some(id) => {
            let _ = writeln!(
                out,
                "  event id    `{id}`: an event whose (user, id) was seen in the last {} is a duplicate",
                dur(config.ttl)
            );
        }
        None => {
            let _ = writeln!(out, "  event id    none: no duplicate removal");
        }
    }
    let l = &config.limits;
    let _ = writeln!(
        out,
        "\ncounted: every valid event ({} [[filters]] select among them); rejected: lines over {} bytes, times outside [{}, {})",
        config.filters.len(),
        l.max_line_bytes,
        format_rfc3339(l.time_min),
        format_rfc3339(l.time_max)
    );
    out += &describe_metrics(config, &f.user);
    out += &describe_dimensions(config);
    out += &describe_windows(config);
    out
}

/// Each metric in one line: what it selects, its keys, windows and threshold.
fn describe_metrics(config: &Config, user: &str) -> String {
    use crate::metrics::Threshold;
    let mut out = String::new();
    let implicit = config.metrics.len() == 1 && config.metrics[0].name == crate::metrics::IMPLICIT;
    let _ = writeln!(
        out,
        "metrics: {}{}, unique `{user}` (and events) per key and window",
        config.metrics.len(),
        if implicit {
            " (the implicit `all`)"
        } else {
            ""
        }
    );
    for m in &config.metrics {
        let mut filter = m
            .filter
            .and_then(|i| config.filters.get(i))
            .map_or("every counted event".to_string(), |f| {
                format!("filter `{}` ({} clauses)", f.name, f.clauses.len())
            });
        if let Some(a) = &m.attribution {
            use crate::metrics::{Touch, WindowOn};
            let after = config.filters.get(a.after).map_or("?", |f| f.name.as_str());
            filter = format!(
                "{filter} within {} after filter `{after}`, credited to {} (windows of the {})",
                humantime::format_duration(
                    std::time::Duration::from_millis(a.within.max(0) as u64)
                ),
                match a.touch {
                    Touch::Last => "the last anchor",
                    Touch::First => "the first anchor",
                    Touch::Any => "every anchor",
                },
                match a.on {
                    WindowOn::Anchor => "anchor's time; they fire `within` later",
                    WindowOn::Conversion => "conversion's time",
                }
            );
        }
        let dims: Vec<&str> = m
            .dimensions
            .iter()
            .map(|&d| config.dimensions[d].name.as_str())
            .collect();
        let windows: Vec<&str> = (0..config.windows.specs.len())
            .filter(|&s| m.counts_in(s))
            .map(|s| config.windows.specs[s].name.as_str())
            .collect();
        let threshold = match &m.threshold {
            Threshold::None => "every user seen".to_string(),
            Threshold::Count(n) => format!("users with at least {n} events"),
            Threshold::Sum { path, micros } => {
                format!(
                    "users whose `{path}` sums to at least {}",
                    *micros as f64 / 1e6
                )
            }
        };
        let _ = writeln!(
            out,
            "  {}: {filter}; {}{}; windows {}; {threshold}",
            m.name,
            if m.by_type {
                "by event type, "
            } else {
                "all types together, "
            },
            if dims.is_empty() {
                "the total only".to_string()
            } else {
                format!("dimensions {}", dims.join(", "))
            },
            windows.join(", ")
        );
    }
    out
}

fn describe_dimensions(config: &Config) -> String {
    let mut out = String::new();
    let n = config.dimensions.len();
    let _ = writeln!(out, "\ndimensions ({n})");
    let width = config
        .dimensions
        .iter()
        .map(|d| d.name.len())
        .max()
        .unwrap_or(0);
    for d in &config.dimensions {
        let how = match &d.extract {
            Extract::Raw => "as it is".to_string(),
            Extract::EmailDomain => "the lowercased part after the last `@`".to_string(),
            Extract::Lookup(l) => format!(
                "looked up in {} ({} keys → {} values; a miss = no value)",
                l.path.display(),
                l.map.len(),
                l.values.len()
            ),
        };
        let _ = writeln!(out, "  {:<width$}  from `{}`, {how}", d.name, d.field);
    }
    let _ = writeln!(
        out,
        "keys per event: per metric its filter matches, 1 total + 1 per dimension of the metric that has a value = at most {}",
        config
            .metrics
            .iter()
            .map(|m| 1 + m.dimensions.len())
            .sum::<usize>()
    );
    out
}

fn describe_windows(config: &Config) -> String {
    let mut out = String::new();
    let w = &config.windows;
    let _ = writeln!(out, "\nwindows ({})", w.specs.len());
    let width = w.specs.iter().map(|s| s.name.len()).max().unwrap_or(0);
    for s in &w.specs {
        let kind = if s.size == s.slide {
            format!("tumbling {}", dur(s.size))
        } else {
            format!("sliding {} every {}", dur(s.size), dur(s.slide))
        };
        let per = s.size / s.slide;
        let _ = writeln!(
            out,
            "  {:<width$}  {kind}: {per} window{} per event",
            s.name,
            if per == 1 { "" } else { "s" }
        );
    }
    let wpe = windows_per_event(config);
    let keys = config.dimensions.len() as i64 + 1;
    let _ = writeln!(
        out,
        "windows per event: {wpe}; (key, window) pairs per event: at most {}",
        wpe * keys
    );
    let mut groups: Vec<(i64, Vec<&str>)> = Vec::new();
    for s in &w.specs {
        match groups.iter_mut().find(|(slide, _)| *slide == s.slide) {
            Some((_, names)) => names.push(&s.name),
            None => groups.push((s.slide, vec![&s.name])),
        }
    }
    let g: Vec<String> = groups
        .iter()
        .map(|(slide, names)| format!("slide {}: {}", dur(*slide), names.join(", ")))
        .collect();
    let _ = writeln!(
        out,
        "pane groups ({}; a user's panes are remembered once per group): {}",
        groups.len(),
        g.join("; ")
    );
    let wm = &config.watermark;
    let strategy = match wm.strategy {
        Strategy::Median => format!(
            "lower median of the last {} accepted events' times",
            wm.sample
        ),
        Strategy::Max => "maximum event time".to_string(),
    };
    let _ = writeln!(
        out,
        "watermark: {strategy} − {}, every {} events",
        dur(wm.max_out_of_orderness),
        wm.interval
    );
    match w.lateness {
        Some(l) => {
            let _ = writeln!(
                out,
                "windows stay open {} after their end; later events are late (written to _late/)",
                dur(l)
            );
        }
        None => {
            let _ = writeln!(
                out,
                "windows stay open until the input ends (allowed_lateness = \"unbounded\")"
            );
        }
    }
    out
}
