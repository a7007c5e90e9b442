//! `abacus plot OUT`: unique users over time as a picture (SVG or PNG), so a trend or a hole in the
//! data is seen without a notebook. It selects rows of one metric, event type and window spec —
//! the total rows, one dimension value, or the top N values of a dimension — and draws one line
//! per series with [`plotters`]. Text is laid out with a font bundled in the binary
//! (`assets/fonts`, DejaVu Sans Mono), so no system font is needed. The SVG carries the chart's
//! data-to-pixel mapping in a `<metadata>` element, so a test can read the points back.

use std::path::{Path, PathBuf};

use hashbrown::HashMap;
use plotters::prelude::*;
use plotters::style::FontStyle;

use super::source::{Column, Interner, Role, Source, load};
use crate::error::{Error, Result};
use crate::timefmt::format_rfc3339;

/// DejaVu Sans Mono (Bitstream Vera license, see `assets/fonts/LICENSE`).
static FONT: &[u8] = include_bytes!("../../assets/fonts/DejaVuSansMono.ttf");

#[derive(Debug, Clone, Default)]
pub struct PlotOptions {
    /// An out dir, Parquet file or glob.
    pub source: String,
    pub metric: Option<String>,
    pub event_type: Option<String>,
    pub window: Option<String>,
    pub dimension: Option<String>,
    pub value: Option<String>,
    /// With `dimension` and no `value`: the N values with most users (default 5).
    pub top: Option<usize>,
    pub output: PathBuf,
    pub size: (u32, u32),
}

/// One line: a label and (window start ms, unique users) by time.
#[derive(Debug, Clone)]
pub struct Series {
    pub label: String,
    pub points: Vec<(i64, u64)>,
}

/// What was drawn.
#[derive(Debug, Clone)]
pub struct Chart {
    pub title: String,
    pub series: Vec<Series>,
}

/// The rows of a source, with the interned key columns the selection needs.
struct Rows {
    src: Source,
    interner: Interner,
}

impl Rows {
    fn key(&self, col: &str, i: usize) -> Option<&str> {
        match self.src.column(col) {
            Some(Column::Key(v)) => self.interner.name(v[i]),
            _ => None,
        }
    }

    fn count(&self, col: &str, i: usize) -> u64 {
        match self.src.column(col) {
            Some(Column::Count(v)) => v[i],
            _ => 0,
        }
    }

    fn start(&self, i: usize) -> i64 {
        match self.src.column("window_start") {
            Some(Column::Time(v)) => v[i],
            _ => 0,
        }
    }

    /// Distinct values of a key column among `rows`, in first-seen order.
    fn distinct(&self, col: &str, rows: &[usize]) -> Vec<String> {
        let mut seen = Vec::new();
        for &i in rows {
            if let Some(v) = self.key(col, i)
                && !seen.iter().any(|s: &String| s == v)
            {
                seen.push(v.to_string());
            }
        }
        seen
    }
}

pub fn plot(opts: &PlotOptions) -> Result<Chart> {
    // The result columns `diff` reads, but the end of a window (the chart's x is its start).
    let wanted: Vec<(String, Role)> = super::diff::COLUMNS
        .iter()
        .filter(|(c, _)| *c != "window_end")
        .map(|(c, r)| (c.to_string(), *r))
        .collect();
    let mut interner = Interner::default();
    let src = load(&opts.source, &wanted, &mut interner)?;
    for c in ["event_type", "window", "window_start", "unique_users"] {
        if src.column(c).is_none() {
            return Err(Error::Usage(format!(
                "{}: no column `{c}`: not abacus results (its columns are: {})",
                opts.source,
                src.names.join(", ")
            )));
        }
    }
    let rows = Rows { src, interner };
    let chart = select(&rows, opts)?;
    write(&chart, &opts.output, opts.size)?;
    Ok(chart)
}

/// Narrows `rows` to those whose `col` is `want`, or to the default `pick` when `want` is absent.
fn narrow(
    rows: &Rows,
    idx: Vec<usize>,
    col: &str,
    want: Option<&str>,
    pick: impl Fn(&Rows, &[usize]) -> Option<String>,
) -> Result<(Vec<usize>, Option<String>)> {
    if rows.src.column(col).is_none() {
        if let Some(w) = want {
            return Err(Error::Usage(format!(
                "{}: no column `{col}` to select `{w}` in",
                rows.src.label
            )));
        }
        return Ok((idx, None));
    }
    let chosen = match want {
        Some(w) => w.to_string(),
        None => match pick(rows, &idx) {
            Some(p) => p,
            None => return Ok((idx, None)),
        },
    };
    let kept: Vec<usize> = idx
        .iter()
        .copied()
        .filter(|&i| rows.key(col, i) == Some(chosen.as_str()))
        .collect();
    if kept.is_empty() {
        let mut have = rows.distinct(col, &idx);
        have.truncate(20);
        return Err(Error::Usage(format!(
            "{}: no rows with {col} `{chosen}`; there are: {}",
            rows.src.label,
            have.join(", ")
        )));
    }
    Ok((kept, Some(chosen)))
}

/// The event type with the most events (or users) on the total rows.
fn busiest(rows: &Rows, idx: &[usize]) -> Option<String> {
    let by = if rows.src.column("events").is_some() {
        "events"
    } else {
        "unique_users"
    };
    let mut sum: HashMap<&str, u64> = HashMap::new();
    for &i in idx.iter().filter(|&&i| rows.key("value", i).is_none()) {
        if let Some(et) = rows.key("event_type", i) {
            *sum.entry(et).or_default() += rows.count(by, i);
        }
    }
    sum.into_iter()
        .max_by(|a, b| a.1.cmp(&b.1).then(b.0.cmp(a.0)))
        .map(|(et, _)| et.to_string())
}

fn select(rows: &Rows, opts: &PlotOptions) -> Result<Chart> {
    let all: Vec<usize> = (0..rows.src.len()).collect();
    let first =
        |col: &'static str| move |r: &Rows, idx: &[usize]| r.distinct(col, idx).into_iter().next();
    let (idx, metric) = narrow(rows, all, "metric", opts.metric.as_deref(), first("metric"))?;
    // Rows are written by window spec in config order: the first row's window is the first spec.
    let (idx, window) = narrow(rows, idx, "window", opts.window.as_deref(), first("window"))?;
    let grid = window_grid(rows, &idx);
    let (idx, event_type) = narrow(rows, idx, "event_type", opts.event_type.as_deref(), busiest)?;
    let what = [
        metric.map(|m| format!("metric {m}")),
        event_type,
        window.map(|w| format!("{w} windows")),
    ];
    let what: Vec<String> = what.into_iter().flatten().collect();
    let mut series = match &opts.dimension {
        None => vec![series(
            rows,
            &idx,
            |r, i| r.key("value", i).is_none(),
            "all users".into(),
        )],
        Some(d) => dimension_series(rows, &idx, d, opts)?,
    };
    fill_zeros(&mut series, &grid);
    let scope = match (&opts.dimension, &opts.value) {
        (None, _) => "all users".to_string(),
        (Some(d), Some(v)) => format!("{d} = {v}"),
        (Some(d), None) => format!("top {} {d} values", series.len()),
    };
    if series.iter().all(|s| s.points.is_empty()) {
        return Err(Error::Usage(format!(
            "{}: no rows for {} ({scope})",
            rows.src.label,
            what.join(", ")
        )));
    }
    Ok(Chart {
        title: format!("Unique users: {} ({scope})", what.join(", ")),
        series,
    })
}

/// The slide of one spec, as the smallest gap between its window starts (`None`: a single start).
fn window_grid(rows: &Rows, idx: &[usize]) -> Option<i64> {
    let mut starts: Vec<i64> = idx.iter().map(|&i| rows.start(i)).collect();
    starts.sort_unstable();
    starts.dedup();
    starts.windows(2).map(|w| w[1] - w[0]).min()
}

/// A window without a row had no events of that key: 0 users, drawn as such (not bridged), every
/// slide across the chart's time range (unless that is more than 20,000 points).
fn fill_zeros(series: &mut [Series], slide: &Option<i64>) {
    let Some(slide) = *slide else {
        return;
    };
    let all = series.iter().flat_map(|s| s.points.iter().map(|p| p.0));
    let (Some(first), Some(last)) = (all.clone().min(), all.max()) else {
        return;
    };
    if (last - first) / slide > 20_000 {
        return;
    }
    for s in series.iter_mut().filter(|s| !s.points.is_empty()) {
        let have: HashMap<i64, u64> = s.points.iter().copied().collect();
        s.points = (0..=(last - first) / slide)
            .map(|k| first + k * slide)
            .map(|t| (t, have.get(&t).copied().unwrap_or(0)))
            .collect();
        // rows off the grid (starts that are not whole slides apart) are kept as they are
        for (t, u) in have {
            if (t - first).rem_euclid(slide) != 0 {
                s.points.push((t, u));
            }
        }
        s.points.sort_unstable();
    }
}

fn series(
    rows: &Rows,
    idx: &[usize],
    keep: impl Fn(&Rows, usize) -> bool,
    label: String,
) -> Series {
    let mut points: Vec<(i64, u64)> = idx
        .iter()
        .filter(|&&i| keep(rows, i))
        .map(|&i| (rows.start(i), rows.count("unique_users", i)))
        .collect();
    points.sort();
    Series { label, points }
}

fn dimension_series(
    rows: &Rows,
    idx: &[usize],
    dim: &str,
    opts: &PlotOptions,
) -> Result<Vec<Series>> {
    let in_dim: Vec<usize> = idx
        .iter()
        .copied()
        .filter(|&i| rows.key("dimension", i) == Some(dim))
        .collect();
    if in_dim.is_empty() {
        let have = rows.distinct("dimension", idx);
        return Err(Error::Usage(format!(
            "{}: no rows with dimension `{dim}` for this selection; there are: {}",
            rows.src.label,
            have.join(", ")
        )));
    }
    let values: Vec<String> = match &opts.value {
        Some(v) => vec![v.clone()],
        None => top_values(rows, &in_dim, opts.top.unwrap_or(5)),
    };
    let out: Vec<Series> = values
        .iter()
        .map(|v| {
            series(
                rows,
                &in_dim,
                |r, i| r.key("value", i) == Some(v.as_str()),
                v.clone(),
            )
        })
        .collect();
    if out.iter().all(|s| s.points.is_empty()) {
        let mut have = rows.distinct("value", &in_dim);
        have.truncate(20);
        return Err(Error::Usage(format!(
            "{}: no rows with {dim} = `{}`; there are e.g.: {}",
            rows.src.label,
            values.join(", "),
            have.join(", ")
        )));
    }
    Ok(out)
}

/// The `n` values with the most users summed over the windows (ties by name).
fn top_values(rows: &Rows, idx: &[usize], n: usize) -> Vec<String> {
    let mut sum: HashMap<&str, u64> = HashMap::new();
    for &i in idx {
        if let Some(v) = rows.key("value", i) {
            *sum.entry(v).or_default() += rows.count("unique_users", i);
        }
    }
    let mut v: Vec<(&str, u64)> = sum.into_iter().collect();
    v.sort_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(b.0)));
    v.into_iter()
        .take(n.max(1))
        .map(|(s, _)| s.to_string())
        .collect()
}

/// Writes SVG or PNG by the output's extension.
fn write(chart: &Chart, path: &Path, size: (u32, u32)) -> Result<()> {
    // A second registration (a second plot in one process) replaces the same bytes: harmless.
    let _ = plotters::style::register_font("sans-serif", FontStyle::Normal, FONT);
    let ext = path
        .extension()
        .and_then(|e| e.to_str())
        .map(str::to_ascii_lowercase);
    match ext.as_deref() {
        Some("svg") => {
            let mut svg = String::new();
            let mapping = {
                let root = SVGBackend::with_string(&mut svg, size).into_drawing_area();
                draw(&root, chart).map_err(|e| draw_err(path, e))?
            };
            let svg = svg.replacen(
                '>',
                &format!(">\n<metadata id=\"abacus-plot\">{mapping}</metadata>"),
                1,
            );
            std::fs::write(path, svg).map_err(|e| Error::output(path, e))
        }
        Some("png") => {
            let mut buf = vec![0u8; size.0 as usize * size.1 as usize * 3];
            {
                let root = BitMapBackend::with_buffer(&mut buf, size).into_drawing_area();
                draw(&root, chart).map_err(|e| draw_err(path, e))?;
            }
            write_png(path, &buf, size)
        }
        _ => Err(Error::Usage(format!(
            "-o {}: write a .svg or a .png file",
            path.display()
        ))),
    }
}

fn draw_err(path: &Path, e: impl std::fmt::Display) -> Error {
    Error::output(
        path,
        std::io::Error::other(format!("drawing the chart: {e}")),
    )
}

fn write_png(path: &Path, rgb: &[u8], (w, h): (u32, u32)) -> Result<()> {
    let file = std::fs::File::create(path).map_err(|e| Error::output(path, e))?;
    let mut enc = png::Encoder::new(std::io::BufWriter::new(file), w, h);
    enc.set_color(png::ColorType::Rgb);
    enc.set_depth(png::BitDepth::Eight);
    enc.set_compression(png::Compression::Best);
    let png_err = |e: png::EncodingError| Error::output(path, std::io::Error::other(e.to_string()));
    let mut writer = enc.write_header().map_err(png_err)?;
    writer.write_image_data(rgb).map_err(png_err)?;
    writer.finish().map_err(png_err)
}

/// The x axis in hours (or days, for charts over more than 4 days) since the midnight before the
/// first point, so that plotters' round tick values fall on whole hours (days).
#[derive(Clone, Copy)]
struct TimeAxis {
    base: i64,
    unit: i64,
}

impl TimeAxis {
    fn new(x0: i64, x1: i64) -> TimeAxis {
        let day = 86_400_000;
        let unit = if x1 - x0 > 4 * day { day } else { 3_600_000 };
        TimeAxis {
            base: x0.div_euclid(day) * day,
            unit,
        }
    }

    fn to_x(self, ms: i64) -> f64 {
        (ms - self.base) as f64 / self.unit as f64
    }

    /// `2024-01-03` for a day axis, `01-03 14:00` for an hour axis.
    fn label(self, x: f64) -> String {
        let ms = self.base + (x * self.unit as f64).round() as i64;
        let t = format_rfc3339(ms);
        if self.unit >= 86_400_000 {
            t[..10].to_string()
        } else {
            format!("{} {}", &t[5..10], &t[11..16])
        }
    }
}

/// Draws the chart; returns the data-to-pixel mapping (`x0 px0 x1 px1 y0 py0 y1 py1`, as
/// `key=value` pairs) for the SVG's metadata.
fn draw<DB: DrawingBackend>(
    root: &DrawingArea<DB, plotters::coord::Shift>,
    chart: &Chart,
) -> std::result::Result<String, DrawingAreaErrorKind<DB::ErrorType>> {
    root.fill(&WHITE)?;
    let points = chart.series.iter().flat_map(|s| s.points.iter());
    let (x0, x1) = points
        .clone()
        .fold((i64::MAX, i64::MIN), |(a, b), p| (a.min(p.0), b.max(p.0)));
    let x1 = x1.max(x0 + 1);
    let ymax = points.map(|p| p.1).max().unwrap_or(0);
    let y1 = (ymax + ymax / 10).max(1);
    let axis = TimeAxis::new(x0, x1);
    let mut ctx = ChartBuilder::on(root)
        .caption(&chart.title, ("sans-serif", 18))
        .margin(14)
        .x_label_area_size(44)
        .y_label_area_size(64)
        .build_cartesian_2d(axis.to_x(x0)..axis.to_x(x1), 0u64..y1)?;
    ctx.configure_mesh()
        .x_labels(8)
        .y_labels(8)
        .x_label_formatter(&|x| axis.label(*x))
        .x_desc("window start (UTC)")
        .y_desc("unique users")
        .label_style(("sans-serif", 12))
        .draw()?;
    for (i, s) in chart.series.iter().enumerate() {
        let color = Palette99::pick(i).to_rgba().stroke_width(2);
        let line = s.points.iter().map(|&(t, u)| (axis.to_x(t), u));
        ctx.draw_series(LineSeries::new(line, color))?
            .label(s.label.clone())
            .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 18, y)], color));
    }
    if chart.series.len() > 1 {
        ctx.configure_series_labels()
            .background_style(WHITE.mix(0.85))
            .border_style(BLACK)
            .label_font(("sans-serif", 12))
            .position(SeriesLabelPosition::UpperRight)
            .draw()?;
    }
    let (px0, py0) = ctx.backend_coord(&(axis.to_x(x0), 0));
    let (px1, py1) = ctx.backend_coord(&(axis.to_x(x1), y1));
    root.present()?;
    Ok(format!(
        "x0={x0} px0={px0} x1={x1} px1={px1} y0=0 py0={py0} y1={y1} py1={py1} series={}",
        chart.series.len()
    ))
}
