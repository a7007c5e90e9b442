//! The run configuration: a TOML file, validated up front so that a typo fails in a second with the
//! file, line and key, instead of after hours of replay.

use std::path::{Path, PathBuf};

use hashbrown::HashMap;
use serde::Deserialize;
use toml::Spanned;

use crate::error::{Error, Result};
use crate::timefmt::{Millis, parse_duration, parse_rfc3339};
use crate::window::{WindowSpec, Windows};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TimeFormat {
    UnixS,
    UnixMs,
    Rfc3339,
    Auto,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Strategy {
    Median,
    Max,
}

#[derive(Debug, Clone)]
pub struct Fields {
    pub user: String,
    pub time: String,
    pub time_format: TimeFormat,
    pub event_type: String,
    pub event_id: Option<String>,
}

/// A lookup table from two columns of a CSV file; values are interned so the hot path hands out
/// indexes.
#[derive(Debug, Clone, Default)]
pub struct Lookup {
    pub path: PathBuf,
    pub map: HashMap<Box<str>, u32>,
    pub values: Vec<Box<str>>,
}

#[derive(Debug, Clone)]
pub enum Extract {
    /// The field's string as it is.
    Raw,
    /// Lowercased part after the last `@`.
    EmailDomain,
    /// The field's string mapped through a CSV.
    Lookup(Lookup),
}

#[derive(Debug, Clone)]
pub struct Dimension {
    pub name: String,
    pub field: String,
    /// `field` as a path (dotted into nested objects, `\.` for a dot in a key).
    pub path: crate::parse::path::FieldPath,
    pub extract: Extract,
}

#[derive(Debug, Clone)]
pub struct WatermarkConfig {
    pub strategy: Strategy,
    pub sample: usize,
    pub interval: u64,
    pub max_out_of_orderness: Millis,
}

#[derive(Debug, Clone)]
pub struct Limits {
    pub max_line_bytes: usize,
    pub time_min: Millis,
    pub time_max: Millis,
}

#[derive(Debug, Clone)]
pub struct Config {
    pub path: PathBuf,
    pub fields: Fields,
    pub ttl: Millis,
    pub watermark: WatermarkConfig,
    pub limits: Limits,
    pub dimensions: Vec<Dimension>,
    pub windows: Windows,
    /// `[[filters]]`, by index.
    pub filters: Vec<crate::metrics::filter::Filter>,
    /// `[[metrics]]`, or the one implicit metric when there are none (never empty).
    pub metrics: Vec<crate::metrics::MetricSpec>,
    /// Hash of the config text and every lookup file, to refuse resuming under another config.
    pub fingerprint: u64,
}

pub const DEFAULT_MAX_LINE_BYTES: usize = 1 << 20;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawConfig {
    fields: RawFields,
    #[serde(default)]
    dedup: RawDedup,
    #[serde(default)]
    watermark: RawWatermark,
    #[serde(default)]
    limits: RawLimits,
    #[serde(default)]
    dimensions: Vec<RawDimension>,
    #[serde(default)]
    windows: Vec<RawWindow>,
    #[serde(default)]
    filters: Vec<crate::metrics::config::RawFilter>,
    #[serde(default)]
    metrics: Vec<crate::metrics::config::RawMetric>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawFields {
    user: String,
    time: String,
    #[serde(default)]
    time_format: Option<Spanned<String>>,
    event_type: String,
    #[serde(default)]
    event_id: Option<String>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawDedup {
    ttl: Option<Spanned<String>>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawWatermark {
    strategy: Option<Spanned<String>>,
    sample: Option<Spanned<i64>>,
    interval: Option<Spanned<i64>>,
    max_out_of_orderness: Option<Spanned<String>>,
    allowed_lateness: Option<Spanned<String>>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawLimits {
    max_line_bytes: Option<Spanned<i64>>,
    time_min: Option<Spanned<String>>,
    time_max: Option<Spanned<String>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawDimension {
    name: Spanned<String>,
    field: String,
    extract: Option<Spanned<String>>,
    lookup: Option<Spanned<RawLookup>>,
}

/// `lookup = "file.csv"` (first column → second column) or
/// `lookup = { file = "file.csv", key = "message_id", value = "campaign" }` (columns by header name).
#[derive(Clone)]
enum RawLookup {
    File(String),
    Columns(RawLookupColumns),
}

impl<'de> Deserialize<'de> for RawLookup {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> std::result::Result<Self, D::Error> {
        d.deserialize_any(RawLookupVisitor)
    }
}

/// Reads either form, so that a wrong table gets the table's own message (`missing field `value``).
struct RawLookupVisitor;

impl<'de> serde::de::Visitor<'de> for RawLookupVisitor {
    type Value = RawLookup;

    fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
        f.write_str(
            "a CSV file name (\"campaigns.csv\") or a table { file = \"campaigns.csv\", key = \"message_id\", value = \"campaign\" }",
        )
    }

    fn visit_str<E: serde::de::Error>(self, v: &str) -> std::result::Result<RawLookup, E> {
        Ok(RawLookup::File(v.to_string()))
    }

    fn visit_map<A: serde::de::MapAccess<'de>>(
        self,
        map: A,
    ) -> std::result::Result<RawLookup, A::Error> {
        RawLookupColumns::deserialize(serde::de::value::MapAccessDeserializer::new(map))
            .map(RawLookup::Columns)
    }
}

#[derive(Deserialize, Clone)]
#[serde(deny_unknown_fields)]
struct RawLookupColumns {
    file: String,
    key: String,
    value: String,
}

/// Which columns of a lookup CSV map to which.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LookupColumns {
    /// The first column is the key, the second the value, whatever the header says.
    FirstTwo,
    /// Columns chosen by their header names.
    Named { key: String, value: String },
}

impl LookupColumns {
    /// A stable text of the spec, mixed into the config fingerprint.
    fn fingerprint_text(&self) -> String {
        match self {
            LookupColumns::FirstTwo => "first-two".into(),
            LookupColumns::Named { key, value } => format!("named\0{key}\0{value}"),
        }
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawWindow {
    name: Spanned<String>,
    size: Spanned<String>,
    slide: Option<Spanned<String>>,
}

/// Formats `file:line:col: key: message` for a span of the config text.
struct Located<'a> {
    path: &'a Path,
    text: &'a str,
}

impl Located<'_> {
    fn at(&self, span: std::ops::Range<usize>, key: &str, msg: impl std::fmt::Display) -> Error {
        let before = &self.text[..span.start.min(self.text.len())];
        let line = before.matches('\n').count() + 1;
        let col = before.len() - before.rfind('\n').map_or(0, |i| i + 1) + 1;
        Error::Config(format!(
            "{}:{line}:{col}: `{key}`: {msg}",
            self.path.display()
        ))
    }

    fn duration(&self, v: &Spanned<String>, key: &str) -> Result<Millis> {
        parse_duration(v.get_ref()).map_err(|e| self.at(v.span(), key, e))
    }

    fn positive_duration(&self, v: &Spanned<String>, key: &str) -> Result<Millis> {
        let d = self.duration(v, key)?;
        if d <= 0 {
            return Err(self.at(v.span(), key, "must be longer than 0 ms"));
        }
        Ok(d)
    }

    fn instant(&self, v: &Spanned<String>, key: &str) -> Result<Millis> {
        parse_rfc3339(v.get_ref().as_bytes()).ok_or_else(|| {
            self.at(
                v.span(),
                key,
                format!(
                    "`{}` is not an RFC 3339 time such as \"2024-01-01T00:00:00Z\"",
                    v.get_ref()
                ),
            )
        })
    }
}

impl Config {
    pub fn load(path: &Path) -> Result<Config> {
        let text = std::fs::read_to_string(path).map_err(|e| {
            Error::Config(format!(
                "{}: cannot read the config file: {e}",
                path.display()
            ))
        })?;
        Self::parse(path, &text)
    }

    /// Parses config text; `path` locates error messages and relative lookup files.
    pub fn parse(path: &Path, text: &str) -> Result<Config> {
        let raw: RawConfig = toml::from_str(text).map_err(|e| {
            let (line, col) = e.span().map_or((0, 0), |s| {
                let before = &text[..s.start.min(text.len())];
                (
                    before.matches('\n').count() + 1,
                    before.len() - before.rfind('\n').map_or(0, |i| i + 1) + 1,
                )
            });
            Error::Config(format!("{}:{line}:{col}: {}", path.display(), e.message()))
        })?;
        let loc = Located { path, text };
        let mut fingerprint = xxhash_rust::xxh3::xxh3_64(text.as_bytes());

        let time_format = match raw.fields.time_format.as_ref() {
            None => TimeFormat::Auto,
            Some(v) => {
                match v.get_ref().as_str() {
                    "unix_s" => TimeFormat::UnixS,
                    "unix_ms" => TimeFormat::UnixMs,
                    "rfc3339" => TimeFormat::Rfc3339,
                    "auto" => TimeFormat::Auto,
                    other => {
                        return Err(loc.at(v.span(), "fields.time_format", format!("`{other}` is not one of \"unix_s\", \"unix_ms\", \"rfc3339\", \"auto\"")));
                    }
                }
            }
        };
        for (key, v) in [
            ("fields.user", &raw.fields.user),
            ("fields.time", &raw.fields.time),
            ("fields.event_type", &raw.fields.event_type),
        ] {
            if v.is_empty() {
                return Err(Error::Config(format!(
                    "{}: `{key}` must name a JSON field",
                    path.display()
                )));
            }
        }
        let fields = Fields {
            user: raw.fields.user,
            time: raw.fields.time,
            time_format,
            event_type: raw.fields.event_type,
            event_id: raw.fields.event_id.filter(|s| !s.is_empty()),
        };

        let ttl = match &raw.dedup.ttl {
            Some(v) => loc.positive_duration(v, "dedup.ttl")?,
            None => 24 * 3_600_000,
        };

        let w = &raw.watermark;
        let strategy = match &w.strategy {
            None => Strategy::Median,
            Some(v) => match v.get_ref().as_str() {
                "median" => Strategy::Median,
                "max" => Strategy::Max,
                other => {
                    return Err(loc.at(
                        v.span(),
                        "watermark.strategy",
                        format!("`{other}` is not one of \"median\", \"max\""),
                    ));
                }
            },
        };
        let positive =
            |v: &Option<Spanned<i64>>, key: &str, default: i64, max: i64| -> Result<i64> {
                match v {
                    None => Ok(default),
                    Some(v) if (1..=max).contains(v.get_ref()) => Ok(*v.get_ref()),
                    Some(v) => Err(loc.at(v.span(), key, format!("must be between 1 and {max}"))),
                }
            };
        let sample = positive(&w.sample, "watermark.sample", 10_000, 10_000_000)? as usize;
        let interval = positive(&w.interval, "watermark.interval", 4096, 1 << 40)? as u64;
        let max_out_of_orderness = match &w.max_out_of_orderness {
            Some(v) => loc.duration(v, "watermark.max_out_of_orderness")?,
            None => 3_600_000,
        };
        let lateness = match &w.allowed_lateness {
            None => Some(6 * 3_600_000),
            Some(v) if v.get_ref().trim() == "unbounded" => None,
            Some(v) => Some(loc.duration(v, "watermark.allowed_lateness")?),
        };

        let l = &raw.limits;
        let max_line_bytes = positive(
            &l.max_line_bytes,
            "limits.max_line_bytes",
            DEFAULT_MAX_LINE_BYTES as i64,
            1 << 31,
        )? as usize;
        let time_min = match &l.time_min {
            Some(v) => loc.instant(v, "limits.time_min")?,
            None => 0,
        };
        let time_max = match &l.time_max {
            Some(v) => loc.instant(v, "limits.time_max")?,
            None => 4_102_444_800_000, // 2100-01-01T00:00:00Z
        };
        if time_min >= time_max {
            let span = l
                .time_max
                .as_ref()
                .or(l.time_min.as_ref())
                .map_or(0..0, |v| v.span());
            return Err(loc.at(
                span,
                "limits.time_max",
                "must be later than `limits.time_min`",
            ));
        }

        let base = path.parent().unwrap_or(Path::new("."));
        let mut dimensions = Vec::new();
        for (i, d) in raw.dimensions.into_iter().enumerate() {
            let key = format!("dimensions[{i}]");
            if d.name.get_ref().is_empty() || d.field.is_empty() {
                return Err(loc.at(d.name.span(), &key, "`name` and `field` must not be empty"));
            }
            if dimensions
                .iter()
                .any(|x: &Dimension| x.name == *d.name.get_ref())
            {
                return Err(loc.at(
                    d.name.span(),
                    &format!("{key}.name"),
                    format!("the dimension name `{}` is used twice", d.name.get_ref()),
                ));
            }
            let extract = match (&d.extract, &d.lookup) {
                (Some(e), Some(_)) => {
                    return Err(loc.at(e.span(), &key, "give `extract` or `lookup`, not both"));
                }
                (Some(e), None) => match e.get_ref().as_str() {
                    "email_domain" => Extract::EmailDomain,
                    "none" | "raw" => Extract::Raw,
                    other => {
                        return Err(loc.at(
                            e.span(),
                            &format!("{key}.extract"),
                            format!("`{other}` is not one of \"email_domain\", \"raw\""),
                        ));
                    }
                },
                (None, Some(spec)) => {
                    let (lookup, hash) = load_lookup_spec(base, spec)
                        .map_err(|e| loc.at(spec.span(), &format!("{key}.lookup"), e))?;
                    fingerprint =
                        xxhash_rust::xxh3::xxh3_64_with_seed(&hash.to_le_bytes(), fingerprint);
                    Extract::Lookup(lookup)
                }
                (None, None) => Extract::Raw,
            };
            let path = crate::parse::path::FieldPath::parse(&d.field)
                .map_err(|e| loc.at(d.name.span(), &format!("{key}.field"), e))?;
            dimensions.push(Dimension {
                name: d.name.into_inner(),
                field: d.field,
                path,
                extract,
            });
        }
        if dimensions.len() > 60 {
            return Err(Error::Config(format!(
                "{}: at most 60 dimensions are supported",
                path.display()
            )));
        }

        if raw.windows.is_empty() {
            return Err(Error::Config(format!(
                "{}: no `[[windows]]` given; add one, e.g.\n\n[[windows]]\nname = \"hourly\"\nsize = \"1h\"",
                path.display()
            )));
        }
        let mut specs: Vec<WindowSpec> = Vec::new();
        for (i, w) in raw.windows.iter().enumerate() {
            let key = format!("windows[{i}]");
            let name = w.name.get_ref();
            if name.is_empty() || specs.iter().any(|s| s.name == *name) {
                return Err(loc.at(
                    w.name.span(),
                    &format!("{key}.name"),
                    "window names must be unique and not empty",
                ));
            }
            let size = loc.positive_duration(&w.size, &format!("{key}.size"))?;
            let slide = match &w.slide {
                None => size,
                Some(s) => {
                    let slide = loc.positive_duration(s, &format!("{key}.slide"))?;
                    if slide > size {
                        return Err(loc.at(s.span(), &format!("{key}.slide"), format!("the slide ({}) is longer than the size ({}); a sliding window's slide must not exceed its size", s.get_ref(), w.size.get_ref())));
                    }
                    if size % slide != 0 {
                        return Err(loc.at(s.span(), &format!("{key}.slide"), format!("the slide ({}) does not divide the size ({}); choose a slide that divides it evenly", s.get_ref(), w.size.get_ref())));
                    }
                    if size / slide > 4096 {
                        return Err(loc.at(
                            s.span(),
                            &format!("{key}.slide"),
                            "a window may span at most 4096 slides",
                        ));
                    }
                    slide
                }
            };
            specs.push(WindowSpec {
                name: name.clone(),
                size,
                slide,
            });
        }
        if specs.len() > 64 {
            return Err(Error::Config(format!(
                "{}: at most 64 `[[windows]]` are supported",
                path.display()
            )));
        }

        let at = |span: std::ops::Range<usize>, key: &str, msg: String| loc.at(span, key, msg);
        let filters = crate::metrics::config::filters(&raw.filters, &at)?;
        let dim_names: Vec<String> = dimensions.iter().map(|d| d.name.clone()).collect();
        let win_names: Vec<String> = specs.iter().map(|s| s.name.clone()).collect();
        let names = crate::metrics::config::Names {
            dimensions: &dim_names,
            windows: &win_names,
            filters: &filters,
        };
        let mut metrics = crate::metrics::config::metrics(&raw.metrics, &names, &at)?;
        if metrics.is_empty() {
            metrics.push(crate::metrics::MetricSpec::implicit(
                dimensions.len(),
                specs.len(),
            ));
        }

        Ok(Config {
            path: path.to_path_buf(),
            fields,
            ttl,
            watermark: WatermarkConfig {
                strategy,
                sample,
                interval,
                max_out_of_orderness,
            },
            limits: Limits {
                max_line_bytes,
                time_min,
                time_max,
            },
            dimensions,
            windows: Windows { specs, lateness },
            filters,
            metrics,
            fingerprint,
        })
    }
}

/// Loads a dimension's lookup as the config gives it; the hash covers the file's bytes and which
/// columns are used, for the config fingerprint.
fn load_lookup_spec(
    base: &Path,
    spec: &Spanned<RawLookup>,
) -> std::result::Result<(Lookup, u64), String> {
    let (file, columns) = match spec.get_ref() {
        RawLookup::File(f) => (f, LookupColumns::FirstTwo),
        RawLookup::Columns(c) => (
            &c.file,
            LookupColumns::Named {
                key: c.key.clone(),
                value: c.value.clone(),
            },
        ),
    };
    let (lookup, hash) = load_lookup(&base.join(file), &columns)?;
    let spec_hash = xxhash_rust::xxh3::xxh3_64(columns.fingerprint_text().as_bytes());
    Ok((
        lookup,
        xxhash_rust::xxh3::xxh3_64_with_seed(&spec_hash.to_le_bytes(), hash),
    ))
}

/// Reads the key and value columns of a lookup CSV. Returns the table and a hash of the file's
/// bytes. A key listed twice with the same value is accepted; with different values it is an error
/// naming both lines.
pub fn load_lookup(
    path: &Path,
    columns: &LookupColumns,
) -> std::result::Result<(Lookup, u64), String> {
    let bytes = std::fs::read(path)
        .map_err(|e| format!("cannot read the lookup file {}: {e}", path.display()))?;
    let hash = xxhash_rust::xxh3::xxh3_64(&bytes);
    let mut reader = csv::ReaderBuilder::new()
        .has_headers(true)
        .flexible(true)
        .from_reader(bytes.as_slice());
    let headers = reader
        .headers()
        .map_err(|e| format!("{}: {e}", path.display()))?
        .clone();
    let (ki, vi) = lookup_column_indexes(path, &headers, columns)?;
    let mut lookup = Lookup {
        path: path.to_path_buf(),
        ..Lookup::default()
    };
    let mut interned: HashMap<Box<str>, u32> = HashMap::new();
    let mut first_line: HashMap<Box<str>, u64> = HashMap::new();
    let need = ki.max(vi) + 1;
    // Line numbers come from the reader's position, not a record count: a quoted field may span
    // several lines.
    let mut rec = csv::StringRecord::new();
    loop {
        let line = reader.position().line();
        match reader.read_record(&mut rec) {
            Ok(true) => {}
            Ok(false) => break,
            Err(e) => return Err(format!("{}: line {line}: {e}", path.display())),
        }
        let line = rec.position().map_or(line, |p| p.line());
        if rec.len() < need {
            return Err(format!(
                "{}: line {line}: expected at least {need} columns, found {}",
                path.display(),
                rec.len()
            ));
        }
        let (k, v) = (&rec[ki], &rec[vi]);
        if k.is_empty() || v.is_empty() {
            return Err(format!(
                "{}: line {line}: empty key or value",
                path.display()
            ));
        }
        let idx = match interned.get(v) {
            Some(&idx) => idx,
            None => {
                let idx = lookup.values.len() as u32;
                lookup.values.push(v.into());
                interned.insert(v.into(), idx);
                idx
            }
        };
        match lookup.map.get(k) {
            None => {
                lookup.map.insert(k.into(), idx);
                first_line.insert(k.into(), line);
            }
            Some(&old) if old == idx => {}
            Some(&old) => {
                let before = first_line.get(k).copied().unwrap_or(0);
                return Err(format!(
                    "{}: line {line}: the key `{k}` maps to `{v}`, but {}:{before} maps it to `{}`",
                    path.display(),
                    path.display(),
                    lookup.values[old as usize]
                ));
            }
        }
    }
    Ok((lookup, hash))
}

/// The positions of the key and value columns in a lookup CSV's header.
fn lookup_column_indexes(
    path: &Path,
    headers: &csv::StringRecord,
    columns: &LookupColumns,
) -> std::result::Result<(usize, usize), String> {
    let found = || headers.iter().collect::<Vec<_>>().join(",");
    match columns {
        LookupColumns::FirstTwo if headers.len() < 2 => Err(format!(
            "{}: line 1: a lookup CSV needs at least 2 columns (key, then value), found the header `{}`",
            path.display(),
            found()
        )),
        LookupColumns::FirstTwo => Ok((0, 1)),
        LookupColumns::Named { key, value } => {
            let find = |name: &str, what: &str| {
                headers.iter().position(|h| h == name).ok_or_else(|| {
                    format!(
                        "{}: line 1: no column `{name}` (the lookup's {what}); the header is `{}`",
                        path.display(),
                        found()
                    )
                })
            };
            Ok((find(key, "key")?, find(value, "value")?))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lookup_errors_name_the_physical_line_after_a_quoted_newline() {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("l.csv");
        // line 1 header, lines 2-3 one record with a quoted newline, line 4 a duplicate of line 2
        std::fs::write(&p, "key,value\nm1,\"two\nlines\"\nm2,b\nm1,c\n").unwrap();
        let e = load_lookup(&p, &LookupColumns::FirstTwo).unwrap_err();
        assert!(
            e.contains("line 5") && e.contains("`m1` maps to `c`") && e.contains("l.csv:2"),
            "{e}"
        );
        std::fs::write(&p, "key,value\nm1,\"a\nb\"\nm2\n").unwrap();
        let e = load_lookup(&p, &LookupColumns::FirstTwo).unwrap_err();
        assert!(e.contains("line 4"), "{e}");
    }

    fn parse(text: &str) -> Result<Config> {
        Config::parse(Path::new("test.toml"), text)
    }

    const MIN: &str = "[fields]\nuser = \"u\"\ntime = \"t\"\nevent_type = \"e\"\n";

    #[test]
    fn defaults() {
        let c = parse(&format!("{MIN}[[windows]]\nname = \"h\"\nsize = \"1h\"\n")).unwrap();
        assert_eq!(c.fields.time_format, TimeFormat::Auto);
        assert_eq!(c.ttl, 86_400_000);
        assert_eq!(c.watermark.sample, 10_000);
        assert_eq!(c.watermark.max_out_of_orderness, 3_600_000);
        assert_eq!(c.windows.lateness, Some(6 * 3_600_000));
        assert_eq!(c.windows.specs[0].slide, 3_600_000);
    }

    #[test]
    fn errors_name_line_and_key() {
        let e = parse(&format!(
            "{MIN}[[windows]]\nname = \"h\"\nsize = \"1 hour-ish\"\n"
        ))
        .unwrap_err()
        .to_string();
        assert!(e.starts_with("test.toml:7:8: `windows[0].size`"), "{e}");
        let e = parse(&format!(
            "{MIN}[[windows]]\nname = \"h\"\nsize = \"1h\"\nslide = \"25m\"\n"
        ))
        .unwrap_err()
        .to_string();
        assert!(
            e.contains("test.toml:8:9: `windows[0].slide`") && e.contains("does not divide"),
            "{e}"
        );
        let e = parse(&format!(
            "{MIN}[[windows]]\nname = \"h\"\nsize = \"1h\"\nslide = \"2h\"\n"
        ))
        .unwrap_err()
        .to_string();
        assert!(e.contains("is longer than the size"), "{e}");
        let e = parse(&format!("{MIN}colour = 1\n"))
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("test.toml:5:1") && e.contains("unknown field"),
            "{e}"
        );
        let e = parse(MIN).unwrap_err().to_string();
        assert!(e.contains("no `[[windows]]`"), "{e}");
    }

    #[test]
    fn missing_lookup_file() {
        let e = parse(&format!("{MIN}[[dimensions]]\nname = \"c\"\nfield = \"m\"\nlookup = \"nope.csv\"\n[[windows]]\nname = \"h\"\nsize = \"1h\"\n"))
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("`dimensions[0].lookup`") && e.contains("nope.csv"),
            "{e}"
        );
    }
}

#[cfg(test)]
mod lookup_tests {
    use super::*;

    const MIN: &str = "[fields]\nuser = \"u\"\ntime = \"t\"\nevent_type = \"e\"\n";
    const HOURLY: &str = "[[windows]]\nname = \"h\"\nsize = \"1h\"\n";

    /// A config in `dir` with one lookup dimension written as `spec` (the TOML value).
    fn config(dir: &Path, spec: &str) -> Result<Config> {
        let text = format!(
            "{MIN}[[dimensions]]\nname = \"campaign\"\nfield = \"m\"\nlookup = {spec}\n{HOURLY}"
        );
        Config::parse(&dir.join("c.toml"), &text)
    }

    fn table(c: &Config) -> Vec<(String, String)> {
        let Extract::Lookup(l) = &c.dimensions[0].extract else {
            panic!("not a lookup")
        };
        let mut v: Vec<(String, String)> = l
            .map
            .iter()
            .map(|(k, &i)| (k.to_string(), l.values[i as usize].to_string()))
            .collect();
        v.sort();
        v
    }

    fn pairs(xs: &[(&str, &str)]) -> Vec<(String, String)> {
        xs.iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn the_string_form_takes_the_first_two_columns_whatever_the_header() {
        let d = tempfile::tempdir().unwrap();
        std::fs::write(
            d.path().join("l.csv"),
            "message_id,campaign,owner\nm1,spring,ann\nm2,summer,bob\n",
        )
        .unwrap();
        let c = config(d.path(), "\"l.csv\"").unwrap();
        assert_eq!(table(&c), pairs(&[("m1", "spring"), ("m2", "summer")]));
    }

    #[test]
    fn the_table_form_picks_columns_by_name() {
        let d = tempfile::tempdir().unwrap();
        std::fs::write(
            d.path().join("l.csv"),
            "owner,campaign,message_id\nann,spring,m1\nbob,summer,m2\n",
        )
        .unwrap();
        let c = config(
            d.path(),
            "{ file = \"l.csv\", key = \"message_id\", value = \"campaign\" }",
        )
        .unwrap();
        assert_eq!(table(&c), pairs(&[("m1", "spring"), ("m2", "summer")]));
    }

    #[test]
    fn a_missing_named_column_names_the_file_the_column_and_the_header() {
        let d = tempfile::tempdir().unwrap();
        std::fs::write(d.path().join("l.csv"), "id,campaign\nm1,spring\n").unwrap();
        let e = config(
            d.path(),
            "{ file = \"l.csv\", key = \"message_id\", value = \"campaign\" }",
        )
        .unwrap_err()
        .to_string();
        assert!(e.contains("c.toml:8:10: `dimensions[0].lookup`"), "{e}");
        assert!(
            e.contains("l.csv: line 1")
                && e.contains("`message_id`")
                && e.contains("`id,campaign`"),
            "{e}"
        );
    }

    #[test]
    fn duplicate_keys_same_value_ok_different_values_name_both_lines() {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("l.csv");
        std::fs::write(&p, "k,v\nm1,a\nm2,b\nm1,a\n").unwrap();
        let c = config(d.path(), "\"l.csv\"").unwrap();
        assert_eq!(table(&c), pairs(&[("m1", "a"), ("m2", "b")]));
        std::fs::write(&p, "k,v\nm1,a\nm2,b\nm1,c\n").unwrap();
        let e = config(d.path(), "\"l.csv\"").unwrap_err().to_string();
        assert!(
            e.contains("l.csv: line 4: the key `m1` maps to `c`")
                && e.contains("l.csv:2 maps it to `a`"),
            "{e}"
        );
    }

    #[test]
    fn unknown_keys_in_the_table_form_and_one_column_files_are_refused() {
        let d = tempfile::tempdir().unwrap();
        std::fs::write(d.path().join("l.csv"), "key\nm1\n").unwrap();
        let e = config(d.path(), "\"l.csv\"").unwrap_err().to_string();
        assert!(e.contains("at least 2 columns"), "{e}");
        let e = config(d.path(), "{ file = \"l.csv\", key = \"key\" }")
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("c.toml:8") && e.contains("missing field `value`"),
            "{e}"
        );
        let e = config(d.path(), "3").unwrap_err().to_string();
        assert!(
            e.contains("c.toml:8") && e.contains("a CSV file name"),
            "{e}"
        );
    }

    #[test]
    fn the_fingerprint_changes_with_the_lookup_spec() {
        let d = tempfile::tempdir().unwrap();
        std::fs::write(d.path().join("l.csv"), "a,b,c\nm1,x,y\n").unwrap();
        let f = |spec: &str| config(d.path(), spec).unwrap().fingerprint;
        let first = f("\"l.csv\"");
        let ab = f("{ file = \"l.csv\", key = \"a\", value = \"b\" }");
        let ac = f("{ file = \"l.csv\", key = \"a\", value = \"c\" }");
        assert_ne!(first, ab);
        assert_ne!(ab, ac);
        assert_eq!(ab, f("{ file = \"l.csv\", key = \"a\", value = \"b\" }"));
    }
}
