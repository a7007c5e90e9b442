//! `[[filters]]` and `[[metrics]]`: the TOML surface and its validation.
//!
//! Like the rest of the config, every mistake is refused before any input is read, with the
//! file, line and column of the key: an unknown filter, dimension or window name, an invalid
//! regex, `min_count = 0`, a numeric comparison against a string, a clause with two operators.

use serde::Deserialize;
use toml::Spanned;

use super::filter::{Clause, Filter, Num, Op, Scalar};
use super::{Attribution, MetricSpec, Threshold, Touch, WindowOn};
use crate::error::{Error, Result};
use crate::parse::path::FieldPath;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawFilter {
    name: Spanned<String>,
    #[serde(rename = "where", default)]
    clauses: Vec<Spanned<RawClause>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawClause {
    field: Spanned<String>,
    eq: Option<Spanned<toml::Value>>,
    ne: Option<Spanned<toml::Value>>,
    #[serde(rename = "in")]
    any_of: Option<Spanned<Vec<toml::Value>>>,
    not_in: Option<Spanned<Vec<toml::Value>>>,
    regex: Option<Spanned<String>>,
    lt: Option<Spanned<toml::Value>>,
    le: Option<Spanned<toml::Value>>,
    gt: Option<Spanned<toml::Value>>,
    ge: Option<Spanned<toml::Value>>,
    exists: Option<Spanned<bool>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawMetric {
    name: Spanned<String>,
    filter: Option<Spanned<String>>,
    dimensions: Option<Spanned<Vec<String>>>,
    windows: Option<Spanned<Vec<String>>>,
    by_type: Option<bool>,
    min_count: Option<Spanned<i64>>,
    min_sum: Option<Spanned<RawMinSum>>,
    after: Option<Spanned<String>>,
    within: Option<Spanned<String>>,
    attribution: Option<Spanned<String>>,
    window_on: Option<Spanned<String>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawMinSum {
    field: String,
    value: toml::Value,
}

/// Reports a problem at a span of the config text (`file:line:col: key: message`).
pub(crate) type At<'a> = &'a dyn Fn(std::ops::Range<usize>, &str, String) -> Error;

fn scalar(v: &Spanned<toml::Value>, key: &str, at: At) -> Result<Scalar> {
    match v.get_ref() {
        toml::Value::String(s) => Ok(Scalar::Str(s.clone())),
        toml::Value::Integer(i) => Ok(Scalar::Num(Num::Int(*i))),
        toml::Value::Float(f) => Ok(Scalar::Num(Num::Float(*f))),
        toml::Value::Boolean(b) => Ok(Scalar::Bool(*b)),
        other => Err(at(
            v.span(),
            key,
            format!(
                "must be a string, a number or a boolean, not {}",
                other.type_str()
            ),
        )),
    }
}

fn number(v: &Spanned<toml::Value>, key: &str, at: At) -> Result<Num> {
    match v.get_ref() {
        toml::Value::Integer(i) => Ok(Num::Int(*i)),
        toml::Value::Float(f) if f.is_finite() => Ok(Num::Float(*f)),
        other => Err(at(
            v.span(),
            key,
            format!(
                "a numeric comparison needs a number, not {} (`{other:?}`); to match a text use `eq`, `in` or `regex`",
                other.type_str()
            ),
        )),
    }
}

fn list(v: &Spanned<Vec<toml::Value>>, key: &str, at: At) -> Result<Vec<Scalar>> {
    if v.get_ref().is_empty() {
        return Err(at(
            v.span(),
            key,
            "the list is empty: it would never match".into(),
        ));
    }
    v.get_ref()
        .iter()
        .map(|x| match x {
            toml::Value::String(s) => Ok(Scalar::Str(s.clone())),
            toml::Value::Integer(i) => Ok(Scalar::Num(Num::Int(*i))),
            toml::Value::Float(f) => Ok(Scalar::Num(Num::Float(*f))),
            other => Err(at(
                v.span(),
                key,
                format!(
                    "list items must be strings or numbers, not {}",
                    other.type_str()
                ),
            )),
        })
        .collect()
}

fn clause(raw: &Spanned<RawClause>, key: &str, at: At) -> Result<Clause> {
    let c = raw.get_ref();
    let path = FieldPath::parse(c.field.get_ref())
        .map_err(|e| at(c.field.span(), &format!("{key}.field"), e))?;
    let k = |op: &str| format!("{key}.{op}");
    let mut ops: Vec<Op> = Vec::new();
    if let Some(v) = &c.eq {
        ops.push(Op::Eq(scalar(v, &k("eq"), at)?));
    }
    if let Some(v) = &c.ne {
        ops.push(Op::Ne(scalar(v, &k("ne"), at)?));
    }
    if let Some(v) = &c.any_of {
        ops.push(Op::In(list(v, &k("in"), at)?));
    }
    if let Some(v) = &c.not_in {
        ops.push(Op::NotIn(list(v, &k("not_in"), at)?));
    }
    if let Some(v) = &c.regex {
        let re = regex::Regex::new(v.get_ref())
            .map_err(|e| at(v.span(), &k("regex"), format!("not a valid regex: {e}")))?;
        ops.push(Op::Regex(re));
    }
    for (name, v, make) in [
        ("lt", &c.lt, Op::Lt as fn(Num) -> Op),
        ("le", &c.le, Op::Le),
        ("gt", &c.gt, Op::Gt),
        ("ge", &c.ge, Op::Ge),
    ] {
        if let Some(v) = v {
            ops.push(make(number(v, &k(name), at)?));
        }
    }
    if let Some(v) = &c.exists {
        ops.push(Op::Exists(*v.get_ref()));
    }
    match ops.len() {
        1 => Ok(Clause {
            path,
            op: ops.remove(0),
        }),
        0 => Err(at(
            raw.span(),
            key,
            "a clause needs one operator: eq, ne, in, not_in, regex, lt, le, gt, ge or exists"
                .into(),
        )),
        _ => Err(at(
            raw.span(),
            key,
            "a clause takes exactly one operator; write two clauses (all clauses must hold)".into(),
        )),
    }
}

pub(crate) fn filters(raw: &[RawFilter], at: At) -> Result<Vec<Filter>> {
    let mut out: Vec<Filter> = Vec::new();
    for (i, f) in raw.iter().enumerate() {
        let key = format!("filters[{i}]");
        let name = f.name.get_ref();
        if name.is_empty() || out.iter().any(|x| x.name == *name) {
            return Err(at(
                f.name.span(),
                &format!("{key}.name"),
                "filter names must be unique and not empty".into(),
            ));
        }
        let clauses = f
            .clauses
            .iter()
            .enumerate()
            .map(|(j, c)| clause(c, &format!("{key}.where[{j}]"), at))
            .collect::<Result<Vec<_>>>()?;
        out.push(Filter {
            name: name.clone(),
            clauses,
        });
    }
    if out.len() > 64 {
        return Err(at(
            0..0,
            "filters",
            "at most 64 filters are supported".into(),
        ));
    }
    Ok(out)
}

/// Names of the config's dimensions, windows and filters, to resolve a metric's references.
pub(crate) struct Names<'a> {
    pub dimensions: &'a [String],
    pub windows: &'a [String],
    pub filters: &'a [Filter],
}

fn subset(
    v: &Option<Spanned<Vec<String>>>,
    all: &[String],
    key: &str,
    what: &str,
    at: At,
) -> Result<Vec<usize>> {
    let Some(v) = v else {
        return Ok((0..all.len()).collect());
    };
    let mut out = Vec::new();
    for name in v.get_ref() {
        let i = all.iter().position(|n| n == name).ok_or_else(|| {
            at(
                v.span(),
                key,
                format!(
                    "no {what} named `{name}` (the config has: {})",
                    all.join(", ")
                ),
            )
        })?;
        if out.contains(&i) {
            return Err(at(v.span(), key, format!("`{name}` is listed twice")));
        }
        out.push(i);
    }
    out.sort_unstable();
    Ok(out)
}

fn filter_index(f: &Spanned<String>, names: &Names, key: &str, at: At) -> Result<usize> {
    names
        .filters
        .iter()
        .position(|x| x.name == *f.get_ref())
        .ok_or_else(|| {
            at(
                f.span(),
                key,
                format!("no `[[filters]]` named `{}`", f.get_ref()),
            )
        })
}

/// `after`, `within`, `attribution`, `window_on`: an attribution metric, or none of them.
fn attribution(m: &RawMetric, names: &Names, key: &str, at: At) -> Result<Option<Attribution>> {
    let Some(after) = &m.after else {
        for (name, v) in [
            ("within", &m.within),
            ("attribution", &m.attribution),
            ("window_on", &m.window_on),
        ] {
            if let Some(v) = v {
                return Err(at(
                    v.span(),
                    &format!("{key}.{name}"),
                    "only an attribution metric takes this: add `after = \"FILTER\"` (the anchor events)"
                        .into(),
                ));
            }
        }
        return Ok(None);
    };
    let after_filter = filter_index(after, names, &format!("{key}.after"), at)?;
    let Some(w) = &m.within else {
        return Err(at(
            after.span(),
            &format!("{key}.within"),
            "an attribution metric needs `within` (e.g. `within = \"5d\"`): how long after an anchor a conversion still counts".into(),
        ));
    };
    let within = crate::timefmt::parse_duration(w.get_ref())
        .ok()
        .filter(|&d| d > 0)
        .ok_or_else(|| {
            at(
                w.span(),
                &format!("{key}.within"),
                format!(
                    "`{}` is not a positive duration (e.g. \"90m\", \"5d\")",
                    w.get_ref()
                ),
            )
        })?;
    let touch = match m
        .attribution
        .as_ref()
        .map(|v| (v.get_ref().as_str(), v.span()))
    {
        None | Some(("last_touch", _)) => Touch::Last,
        Some(("first_touch", _)) => Touch::First,
        Some(("any_touch", _)) => Touch::Any,
        Some((other, span)) => {
            return Err(at(
                span,
                &format!("{key}.attribution"),
                format!("`{other}` is not one of last_touch, first_touch, any_touch"),
            ));
        }
    };
    let on = match m
        .window_on
        .as_ref()
        .map(|v| (v.get_ref().as_str(), v.span()))
    {
        None | Some(("anchor", _)) => WindowOn::Anchor,
        Some(("conversion", _)) => WindowOn::Conversion,
        Some((other, span)) => {
            return Err(at(
                span,
                &format!("{key}.window_on"),
                format!("`{other}` is not one of anchor, conversion"),
            ));
        }
    };
    Ok(Some(Attribution {
        after: after_filter,
        within,
        touch,
        on,
    }))
}

fn threshold(m: &RawMetric, key: &str, at: At) -> Result<Threshold> {
    match (&m.min_count, &m.min_sum) {
        (Some(c), Some(_)) => Err(at(
            c.span(),
            key,
            "give `min_count` or `min_sum`, not both".into(),
        )),
        (Some(c), None) => match u32::try_from(*c.get_ref()) {
            Ok(n) if n >= 1 => Ok(Threshold::Count(n)),
            _ => Err(at(
                c.span(),
                &format!("{key}.min_count"),
                "must be a whole number from 1 up (1 counts every user, as without it)".into(),
            )),
        },
        (None, Some(s)) => {
            let raw = s.get_ref();
            let path = FieldPath::parse(&raw.field)
                .map_err(|e| at(s.span(), &format!("{key}.min_sum.field"), e))?;
            let micros = match &raw.value {
                toml::Value::Integer(i) => i.saturating_mul(1_000_000),
                toml::Value::Float(f) => super::decimal_micros(*f, true),
                other => {
                    return Err(at(
                        s.span(),
                        &format!("{key}.min_sum.value"),
                        format!("must be a number, not {}", other.type_str()),
                    ));
                }
            };
            if micros <= 0 {
                return Err(at(
                    s.span(),
                    &format!("{key}.min_sum.value"),
                    "must be above 0 (at least 0.000001)".into(),
                ));
            }
            Ok(Threshold::Sum { path, micros })
        }
        (None, None) => Ok(Threshold::None),
    }
}

pub(crate) fn metrics(raw: &[RawMetric], names: &Names, at: At) -> Result<Vec<MetricSpec>> {
    let mut out: Vec<MetricSpec> = Vec::new();
    for (i, m) in raw.iter().enumerate() {
        let key = format!("metrics[{i}]");
        let name = m.name.get_ref();
        if name.is_empty() || out.iter().any(|x| x.name == *name) {
            return Err(at(
                m.name.span(),
                &format!("{key}.name"),
                "metric names must be unique and not empty".into(),
            ));
        }
        let filter = match &m.filter {
            None => None,
            Some(f) => Some(filter_index(f, names, &format!("{key}.filter"), at)?),
        };
        let dimensions = subset(
            &m.dimensions,
            names.dimensions,
            &format!("{key}.dimensions"),
            "dimension",
            at,
        )?;
        let windows = subset(
            &m.windows,
            names.windows,
            &format!("{key}.windows"),
            "window",
            at,
        )?;
        if windows.is_empty() {
            let span = m.windows.as_ref().map_or(0..0, |w| w.span());
            return Err(at(
                span,
                &format!("{key}.windows"),
                "a metric needs at least one window".into(),
            ));
        }
        let attribution = attribution(m, names, &key, at)?;
        if attribution.is_some() && dimensions.len() > super::attribution::MAX_DIMS {
            let span = m.dimensions.as_ref().map_or(0..0, |d| d.span());
            return Err(at(
                span,
                &format!("{key}.dimensions"),
                format!(
                    "an attribution metric takes at most {} dimensions; list the ones to credit",
                    super::attribution::MAX_DIMS
                ),
            ));
        }
        out.push(MetricSpec {
            name: name.clone(),
            filter,
            dimensions,
            windows: windows.iter().fold(0u64, |m, &w| m | 1 << w),
            by_type: m.by_type.unwrap_or(true),
            threshold: threshold(m, &key, at)?,
            attribution,
        });
    }
    Ok(out)
}
