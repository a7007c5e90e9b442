//! Metrics, filters, field paths and thresholds (docs/SEMANTICS.md "Field paths", "Filters",
//! "Metrics", "Fan-out", "Windows") against the naive reference (tests/common/naive.rs).
//!
//! `many_small_random_metric_streams` runs seeded random configs (filters with every operator on
//! dotted paths, missing fields and wrong types; `min_count` and `min_sum` thresholds; dimension and
//! window subsets; `by_type = false`; sliding windows) over short random streams (nested `props`,
//! rejects, re-deliveries, out-of-order times), each with `--threads` 1, 2 and 4. The other tests
//! check the reference itself on tiny hand-computed inputs, so a bug in it cannot hide.

mod common;

use serde_json::{Number, Value, json};

use common::naive::{
    self, Cfg, Clause, DimCfg, DimKind, FilterCfg, MetricCfg, Op, Strategy, Threshold, TimeFormat,
    WinCfg,
};
use common::refcheck::{
    diff_against_reference, event_line, filter, json_str, parallel_cases, row, small_random_cfg,
};
use common::{ALL, Counts, HOUR, MIN, Rng, Row, Scratch, T0};

// ---------------------------------------------------------------------------------------------
// random configs and inputs

/// Fields that filters and `min_sum` look at: present, absent, nested, through arrays and
/// non-objects, and a top-level key with a literal dot.
const FIELDS: &[&str] = &[
    "e",
    "b",
    "u",
    "n",
    "flag",
    "props",
    "props.color",
    "props.product",
    "props.qty",
    "props.item",
    "props.item.x",
    "props.item.y.z",
    r"props.item\.x",
    r"k\.x",
    "k",
    "k.x",
    "missing",
    "props.missing.deep",
];

fn lit(rng: &mut Rng) -> Value {
    let r = rng.unit();
    if r < 0.5 {
        json!(*rng.pick(&[
            "black",
            "jet black",
            "Black",
            "x",
            "y",
            "chrome",
            "c1",
            "3",
            "1",
            "true",
            "USB Charger",
        ]))
    } else if r < 0.9 {
        Value::Number(num(rng))
    } else {
        json!(rng.chance(0.5))
    }
}

fn num(rng: &mut Rng) -> Number {
    let r = rng.below(9);
    match r {
        0 => Number::from(1),
        1 => Number::from_f64(1.0).unwrap(),
        2 => Number::from(2),
        3 => Number::from(3),
        4 => Number::from_f64(0.5).unwrap(),
        5 => Number::from(-1),
        6 => Number::from(0),
        7 => Number::from_f64(2.0).unwrap(),
        _ => Number::from_f64(1.25).unwrap(),
    }
}

/// A clause that suits its field's values in the generated events (so filters often match some
/// events but not all), or, one time in three, any field with any operator.
fn clause(rng: &mut Rng) -> Clause {
    if rng.chance(0.33) {
        return any_clause(rng);
    }
    let n = |x: f64| Number::from_f64(x).unwrap();
    let i = |x: i64| Number::from(x);
    let (field, op) = match rng.below(22) {
        0 => ("props.color", Op::Eq(json!("black"))),
        1 => ("props.color", Op::Ne(json!("black"))),
        2 => (
            "props.color",
            Op::In(vec![json!("black"), json!("jet black")]),
        ),
        3 => ("props.color", Op::NotIn(vec![json!("black"), json!(1)])),
        4 => ("props.color", Op::Regex("black$".into())),
        5 => ("props.product", Op::Regex("(?i)charger".into())),
        6 => ("props.product", Op::Exists(true)),
        7 => ("props.qty", Op::Ge(i(1))),
        8 => ("props.qty", Op::Gt(n(1.0))),
        9 => ("props.qty", Op::Lt(i(2))),
        10 => ("props.qty", Op::Le(n(1.25))),
        11 => ("props.qty", Op::In(vec![json!(1), json!(3), json!("3")])),
        12 => ("n", Op::NotIn(vec![json!(2)])),
        13 => ("n", Op::Eq(json!(1))),
        14 => ("e", Op::Eq(json!("x"))),
        15 => ("b", Op::Regex("rom".into())),
        16 => ("props.item.x", Op::Exists(true)),
        17 => (r"props.item\.x", Op::Eq(json!("black"))),
        18 => (r"k\.x", Op::In(vec![json!("c1"), json!("black")])),
        19 => ("k.x", Op::Ge(i(3))),
        20 => ("flag", Op::Eq(json!(true))),
        _ => ("props.camp", Op::Ne(json!("c2"))),
    };
    Clause {
        field: field.into(),
        op,
    }
}

/// Any field of [`FIELDS`], any operator, any literal.
fn any_clause(rng: &mut Rng) -> Clause {
    let field = rng.pick(FIELDS).to_string();
    let list = |rng: &mut Rng| -> Vec<Value> {
        (0..rng.range(1, 4))
            .map(|_| {
                if rng.chance(0.6) {
                    json!(*rng.pick(&["black", "jet black", "x", "chrome", "c2", "2"]))
                } else {
                    Value::Number(num(rng))
                }
            })
            .collect()
    };
    let op = match rng.below(10) {
        0 => Op::Eq(lit(rng)),
        1 => Op::Ne(lit(rng)),
        2 => Op::In(list(rng)),
        3 => Op::NotIn(list(rng)),
        4 => Op::Regex(
            rng.pick(&[
                "(?i)charger",
                "^black$",
                "black",
                "^c",
                r"\d",
                "rom",
                "^$",
                ".",
                "(?i)^JET",
            ])
            .to_string(),
        ),
        5 => Op::Lt(num(rng)),
        6 => Op::Le(num(rng)),
        7 => Op::Gt(num(rng)),
        8 => Op::Ge(num(rng)),
        _ => Op::Exists(rng.chance(0.5)),
    };
    Clause { field, op }
}

/// A random subset of `names`, in their order.
fn subset(rng: &mut Rng, names: &[String]) -> Vec<String> {
    names.iter().filter(|_| rng.chance(0.5)).cloned().collect()
}

fn metrics_random_cfg(rng: &mut Rng) -> Cfg {
    let mut cfg = small_random_cfg(rng);
    // dimensions on dotted paths and on a top-level key with a literal dot
    if rng.chance(0.5) {
        cfg.dims.push(DimCfg {
            name: "camp".into(),
            field: "props.camp".into(),
            kind: DimKind::Raw,
        });
    }
    if rng.chance(0.3) {
        cfg.dims.push(DimCfg {
            name: "kx".into(),
            field: r"k\.x".into(),
            kind: DimKind::Raw,
        });
    }
    if rng.chance(0.08) {
        return cfg; // the implicit metric `all`
    }
    for i in 0..rng.range(0, 4) {
        cfg.filters.push(FilterCfg {
            name: format!("f{i}"),
            clauses: (0..*rng.pick(&[0, 1, 1, 1, 2, 2, 3]))
                .map(|_| clause(rng))
                .collect(),
        });
    }
    let dim_names: Vec<String> = cfg.dims.iter().map(|d| d.name.clone()).collect();
    let win_names: Vec<String> = cfg.windows.iter().map(|w| w.name.clone()).collect();
    for i in 0..rng.range(1, 5) {
        let mut m = MetricCfg::new(&format!("m{i}"));
        if !cfg.filters.is_empty() && rng.chance(0.75) {
            m.filter = Some(rng.pick(&cfg.filters).name.clone());
        }
        if rng.chance(0.4) {
            m.dimensions = Some(subset(rng, &dim_names));
        }
        if rng.chance(0.4) {
            let mut w = subset(rng, &win_names);
            if w.is_empty() {
                w.push(rng.pick(&win_names).clone());
            }
            m.windows = Some(w);
        }
        m.by_type = *rng.pick(&[None, Some(true), Some(false), Some(false)]);
        let r = rng.unit();
        m.threshold = if r < 0.3 {
            None
        } else if r < 0.65 {
            Some(Threshold::MinCount(rng.range(1, 5) as u64))
        } else {
            let field = rng
                .pick(&["props.qty", "props.qty", "n", "props.color", "missing"])
                .to_string();
            let value = match rng.below(7) {
                0 => Number::from(1),
                1 => Number::from(2),
                2 => Number::from(3),
                3 => Number::from_f64(2.5).unwrap(),
                4 => Number::from_f64(0.75).unwrap(),
                5 => Number::from_f64(3.0).unwrap(),
                _ => Number::from_f64(0.000002).unwrap(),
            };
            Some(Threshold::MinSum { field, value })
        };
        cfg.metrics.push(m);
    }
    cfg
}

/// Values for `props.qty` / `n`: integers, binary-exact fractions, fractions with digits beyond
/// the 6th (truncated), negatives, exponents, and non-numbers (numeric strings, a boolean, null, an
/// object, an array). Every number here has one value truncated to 6 decimals however it is read
/// (its decimal text, its exact f64 value, or its f64 times 1e6): none sits on or just below a
/// multiple of 1e-6 (`qty_values_truncate_alike_under_every_reading` checks it).
const QTY: &[&str] = &[
    "1",
    "1",
    "2",
    "3",
    "0",
    "1.0",
    "2.0",
    "0.5",
    "1.25",
    "0.75",
    "2.9999999",
    "0.0000015",
    "0.0000009",
    "1.5e0",
    "25E-1",
    "-1",
    "-0.5",
    "\"3\"",
    "\"1\"",
    "true",
    "null",
    "{\"v\":3}",
    "[3]",
];

fn qty(rng: &mut Rng) -> Option<String> {
    Some(rng.pick(QTY).to_string()).filter(|_| rng.chance(0.85))
}

fn props(rng: &mut Rng) -> Option<String> {
    let r = rng.unit();
    if r < 0.12 {
        return None;
    }
    if r < 0.2 {
        return Some(
            rng.pick(&["5", "\"black\"", "null", "[{\"color\":\"black\"}]", "true"])
                .to_string(),
        );
    }
    let mut fields: Vec<(String, String)> = Vec::new();
    if rng.chance(0.8) {
        let c = *rng.pick(&[
            "\"black\"",
            "\"bl\\u0061ck\"", // "black" after unescaping
            "\"jet black\"",
            "\"Black\"",
            "\"white\"",
            "1",
            "true",
            "null",
            "\"\"",
        ]);
        fields.push(("color".into(), c.into()));
    }
    if rng.chance(0.7) {
        let p = *rng.pick(&[
            "\"USB Charger\"",
            "\"charger cable\"",
            "\"phone\"",
            "\"CHARGER\"",
            "7",
            "[\"charger\"]",
        ]);
        fields.push(("product".into(), p.into()));
    }
    if let Some(q) = qty(rng) {
        fields.push(("qty".into(), q));
    }
    if rng.chance(0.6) {
        let i = *rng.pick(&[
            r#"{"x":1,"y":{"z":"deep"}}"#,
            r#"{"x":"chrome","a.b":2}"#,
            r#"{"x":null}"#,
            r#"[{"x":1}]"#,
            r#""item""#,
            r#"{"y":[1,2]}"#,
        ]);
        fields.push(("item".into(), i.into()));
    }
    if rng.chance(0.3) {
        let x = *rng.pick(&["1", "\"black\"", "true", "2.0"]);
        fields.push(("item.x".into(), x.into()));
    }
    if rng.chance(0.6) {
        // a string; rarely a number (rejected when `camp` is a dimension)
        let c = if rng.chance(0.03) {
            "5"
        } else {
            *rng.pick(&["\"c1\"", "\"c2\"", "\"c2\"", "null", "\"\""])
        };
        fields.push(("camp".into(), c.into()));
    }
    if rng.chance(0.05) {
        // a repeated key: the last occurrence wins
        fields.push(("color".into(), "\"jet black\"".into()));
    }
    let parts: Vec<String> = fields
        .iter()
        .map(|(k, v)| format!("{}:{v}", json_str(k, false)))
        .collect();
    Some(format!("{{{}}}", parts.join(",")))
}

/// A short random stream on a 5-minute grid (± 1 ms), like tests/reference.rs's, with nested
/// `props`, a key `k.x` with a literal dot, a key `k` holding an object, numbers and booleans.
fn metrics_random_input(rng: &mut Rng) -> Vec<u8> {
    let n = rng.range(5, 71);
    let mut clock = T0 + rng.range(0, 12) * 5 * MIN;
    let mut lines: Vec<String> = Vec::new();
    for _ in 0..n {
        let r = rng.unit();
        if r < 0.12 && !lines.is_empty() {
            let i = rng.below(lines.len() as u64) as usize;
            lines.push(lines[i].clone()); // a re-delivery
            continue;
        }
        if r < 0.15 {
            lines.push(format!(r#"{{"u":"a","t":{}}}"#, clock + 10 * HOUR)); // rejected: no type
            continue;
        }
        clock += *rng.pick(&[0, MIN, 5 * MIN, 5 * MIN, 10 * MIN]);
        let r = rng.unit();
        let t = if r < 0.8 {
            clock
                + *rng.pick(&[
                    0,
                    0,
                    -5 * MIN,
                    -10 * MIN,
                    -15 * MIN,
                    -30 * MIN,
                    -HOUR,
                    5 * MIN,
                    -1,
                    1,
                ])
        } else if r < 0.92 {
            clock - rng.range(2, 5) * HOUR
        } else {
            clock + rng.range(1, 4) * HOUR
        };
        let mut fields: Vec<(String, String)> = vec![
            (
                "u".into(),
                json_str(rng.pick::<&str>(&["a", "b", "c@X.org", "d@x.ORG"]), false),
            ),
            ("t".into(), format!("{t}")),
            ("e".into(), json_str(rng.pick::<&str>(&["x", "y"]), false)),
        ];
        let r = rng.unit();
        if r < 0.6 {
            fields.push((
                "id".into(),
                json_str(&format!("{}", rng.range(1, 9)), false),
            ));
        } else if r < 0.7 {
            fields.push(("id".into(), format!("{}", rng.range(1, 9))));
        }
        if rng.chance(0.5) {
            fields.push((
                "b".into(),
                json_str(rng.pick::<&str>(&["chrome", "firefox"]), false),
            ));
        }
        if let Some(p) = props(rng) {
            fields.push(("props".into(), p));
        }
        if rng.chance(0.4) {
            let k = *rng.pick(&["\"x\"", "\"black\"", "\"c1\"", "null"]);
            fields.push(("k.x".into(), k.into()));
        }
        if rng.chance(0.3) {
            let k = *rng.pick(&[r#"{"x":"black"}"#, r#"{"x":3}"#, "\"k\""]);
            fields.push(("k".into(), k.into()));
        }
        if let Some(q) = qty(rng).filter(|_| rng.chance(0.5)) {
            fields.push(("n".into(), q));
        }
        if rng.chance(0.3) {
            fields.push((
                "flag".into(),
                rng.pick(&["true", "false", "\"true\""]).to_string(),
            ));
        }
        let line = event_line(&mut fields, rng);
        // the key `k.x` sometimes written with an escape: keys compare after unescaping
        let line = if rng.chance(0.3) {
            line.replacen(r#""k.x":"#, r#""k\u002ex":"#, 1)
        } else {
            line
        };
        lines.push(line);
    }
    let mut out = Vec::new();
    for l in lines {
        out.extend_from_slice(l.as_bytes());
        out.push(b'\n');
    }
    out
}

// ---------------------------------------------------------------------------------------------
// the random test

/// The generator of random case `seed` (its config, then its input).
fn case_rng(seed: u64) -> Rng {
    Rng(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) ^ 0x0005_EED0_F3E7)
}

/// Hundreds of short random streams and metric configs, each against the reference with
/// `--threads` 1, 2 and 4.
#[test]
fn many_small_random_metric_streams() {
    const CASES: u64 = 200;
    const WORKERS: u64 = 3;
    let s = Scratch::new();
    let base = s.dir.path();
    let one_case = |seed: u64| -> (Counts, Vec<Row>) {
        let mut rng = case_rng(seed);
        let cfg = metrics_random_cfg(&mut rng);
        let input = metrics_random_input(&mut rng);
        let dir = base.join(format!("case-{seed}"));
        let config = cfg.write(&dir);
        let inp = dir.join("events.ndjson");
        std::fs::write(&inp, &input).unwrap();
        let r = naive::reference(&cfg, std::slice::from_ref(&input));
        for threads in [1, 2, 4] {
            let out = common::run(
                std::slice::from_ref(&inp),
                &config,
                &dir.join(format!("out-{threads}")),
                threads,
            );
            if let Err(e) =
                diff_against_reference(&out, &r, &format!("seed {seed}, --threads {threads}"))
            {
                panic!(
                    "{e}\n--- config.toml ---\n{}--- events.ndjson ---\n{}",
                    cfg.toml(),
                    String::from_utf8_lossy(&input)
                );
            }
        }
        (r.counts, r.rows)
    };
    let mut totals = Counts::default();
    let mut rows: Vec<Row> = Vec::new();
    for (c, r) in parallel_cases(CASES, WORKERS, one_case) {
        totals.lines += c.lines;
        totals.counted += c.counted;
        totals.duplicates += c.duplicates;
        totals.late += c.late;
        totals.rejected += c.rejected;
        rows.extend(r);
    }
    assert!(
        totals.late > 50 && totals.duplicates > 50 && totals.rejected > 40,
        "{totals:?}"
    );
    // the cases exercise what they are for
    assert!(rows.iter().any(|r| r.metric == ALL));
    assert!(rows.iter().any(|r| r.event_type.is_none()));
    assert!(rows.iter().any(|r| r.dimension.as_deref() == Some("camp")));
    assert!(rows.iter().any(|r| r.dimension.as_deref() == Some("kx")));
    assert!(rows.iter().any(|r| r.events > r.unique_users));
}

/// The random cases, through the reference alone: a threshold or a filter only ever removes users
/// and events from a (key, window) (and does so often), `min_count = 1` and an empty `where` change
/// nothing, `by_type = false` rows add up the typed ones' events, and every metric's rows are those
/// of a config with that metric alone.
#[test]
fn reference_invariants_on_random_streams() {
    use std::collections::BTreeMap;
    type K = (
        Option<String>,
        Option<String>,
        Option<String>,
        String,
        i64,
        i64,
    );
    let key = |r: &Row| -> K {
        (
            r.event_type.clone(),
            r.dimension.clone(),
            r.value.clone(),
            r.window.clone(),
            r.start_ms,
            r.end_ms,
        )
    };
    let by_key = |rows: &[Row], metric: &str| -> BTreeMap<K, (u64, u64)> {
        rows.iter()
            .filter(|r| r.metric == metric)
            .map(|r| (key(r), (r.unique_users, r.events)))
            .collect()
    };
    let (mut bites, mut drops, mut filtered, mut cases_with_rejects) = (0, 0, 0, 0);
    // filters matching no event, some, all
    let mut filter_kinds = [0; 3];
    for seed in 0..200u64 {
        let mut rng = case_rng(seed);
        let cfg = metrics_random_cfg(&mut rng);
        let input = metrics_random_input(&mut rng);
        let r = naive::reference(&cfg, std::slice::from_ref(&input));
        if r.counts.rejected > 0 {
            cases_with_rejects += 1;
        }
        let events: Vec<naive::Ev> = naive::split_lines(std::slice::from_ref(&input))
            .iter()
            .filter_map(|l| naive::parse_line(&cfg, l).ok())
            .collect();
        for f in &cfg.filters {
            let n = events
                .iter()
                .filter(|e| naive::filter_matches(f, &e.json))
                .count();
            filter_kinds[if n == 0 {
                0
            } else if n < events.len() {
                1
            } else {
                2
            }] += 1;
        }
        for m in &cfg.metrics {
            let alone = |m: MetricCfg| {
                let mut c = cfg.clone();
                c.metrics = vec![m];
                naive::reference(&c, std::slice::from_ref(&input)).rows
            };
            let mine = by_key(&r.rows, &m.name);
            assert_eq!(by_key(&alone(m.clone()), &m.name), mine, "seed {seed}");
            let mut plain = m.clone();
            plain.threshold = None;
            let plain_rows = by_key(&alone(plain.clone()), &m.name);
            for (k, (uu, ev)) in &mine {
                let (puu, pev) = plain_rows
                    .get(k)
                    .unwrap_or_else(|| panic!("seed {seed}: {k:?} only with a threshold"));
                assert!(uu <= puu && ev <= pev && uu <= ev, "seed {seed} {k:?}");
                if m.threshold.is_some() && (uu, ev) != (puu, pev) {
                    bites += 1;
                }
            }
            if m.threshold.is_some() {
                drops += plain_rows.keys().filter(|k| !mine.contains_key(*k)).count();
            }
            let mut one = plain.clone();
            one.threshold = Some(Threshold::MinCount(1));
            assert_eq!(by_key(&alone(one), &m.name), plain_rows, "seed {seed}");
            let mut unfiltered = plain.clone();
            unfiltered.filter = None;
            let all_rows = by_key(&alone(unfiltered), &m.name);
            for (k, (uu, ev)) in &plain_rows {
                let (auu, aev) = all_rows[k];
                assert!(*uu <= auu && *ev <= aev, "seed {seed} {k:?}");
                if (*uu, *ev) != (auu, aev) {
                    filtered += 1;
                }
            }
            if m.by_type == Some(false) {
                let mut typed = plain.clone();
                typed.by_type = Some(true);
                let mut sums: BTreeMap<K, u64> = BTreeMap::new();
                for (mut k, (_, ev)) in by_key(&alone(typed), &m.name) {
                    k.0 = None;
                    *sums.entry(k).or_default() += ev;
                }
                let untyped: BTreeMap<K, u64> = plain_rows
                    .iter()
                    .map(|(k, (_, ev))| (k.clone(), *ev))
                    .collect();
                assert_eq!(sums, untyped, "seed {seed}");
            }
        }
        // an empty `where` matches everything
        let mut c = cfg.clone();
        for f in &mut c.filters {
            f.clauses.clear();
        }
        let mut c2 = c.clone();
        for m in &mut c2.metrics {
            m.filter = None;
        }
        assert_eq!(
            naive::reference(&c, std::slice::from_ref(&input)).rows,
            naive::reference(&c2, std::slice::from_ref(&input)).rows,
            "seed {seed}"
        );
    }
    assert!(
        bites > 100
            && drops > 100
            && filtered > 100
            && cases_with_rejects > 40
            && filter_kinds.iter().all(|&n| n > 30),
        "thresholds change {bites} rows and drop {drops}, filters change {filtered}, \
         {cases_with_rejects} cases reject, filters matching none/some/all: {filter_kinds:?}"
    );
}

/// The generator's configs cover every operator, both thresholds and every optional key, and its
/// events cover the shapes the filters are meant to meet.
#[test]
fn random_configs_cover_the_surface() {
    let mut seen: std::collections::BTreeSet<&str> = Default::default();
    let mut rng = Rng(1);
    for _ in 0..300 {
        let cfg = metrics_random_cfg(&mut rng);
        let t = cfg.toml();
        for k in [
            "eq = ",
            "ne = ",
            "in = ",
            "not_in = ",
            "regex = ",
            "lt = ",
            "le = ",
            "gt = ",
            "ge = ",
            "exists = ",
            "min_count = ",
            "min_sum = ",
            "by_type = false",
            "by_type = true",
            "dimensions = []",
            "windows = [",
            "filter = ",
            "where = []",
            "slide = ",
            "props.item\\\\.x",
        ] {
            if t.contains(k) {
                seen.insert(k);
            }
        }
    }
    assert_eq!(seen.len(), 20, "{seen:?}");
    // the config text parses as TOML with the keys where they belong
    let cfg = metrics_random_cfg(&mut Rng(7));
    let v: toml::Value = toml::from_str(&cfg.toml()).unwrap();
    assert!(v.get("fields").is_some());
}

// ---------------------------------------------------------------------------------------------
// the reference itself, on tiny hand-computed inputs

fn tiny_cfg(windows: &[(&str, &str, Option<&str>)]) -> Cfg {
    Cfg {
        user: "u".into(),
        time: "t".into(),
        time_format: TimeFormat::Auto,
        event_type: "e".into(),
        event_id: None,
        ttl: "24h".into(),
        strategy: Strategy::Median,
        sample: 100,
        interval: 1000,
        max_out_of_orderness: "1h".into(),
        allowed_lateness: "unbounded".into(),
        max_line_bytes: 4096,
        dims: vec![],
        windows: windows
            .iter()
            .map(|(n, s, sl)| WinCfg {
                name: n.to_string(),
                size: s.to_string(),
                slide: sl.map(|x| x.to_string()),
            })
            .collect(),
        filters: vec![],
        metrics: vec![],
    }
}

/// `{"u":U,"t":T0+min minutes,"e":E, ...extra}`.
fn ev(u: &str, min: i64, e: &str, extra: &str) -> String {
    let extra = if extra.is_empty() {
        String::new()
    } else {
        format!(",{extra}")
    };
    format!(r#"{{"u":"{u}","t":{},"e":"{e}"{extra}}}"#, T0 + min * MIN)
}

fn reference_rows(cfg: &Cfg, lines: &[String]) -> Vec<Row> {
    let mut input = Vec::new();
    for l in lines {
        input.extend_from_slice(l.as_bytes());
        input.push(b'\n');
    }
    let r = naive::reference(cfg, &[input]);
    assert_eq!(r.counts.rejected, 0, "{:?}", r.rejected_reasons);
    r.rows
}

fn metric(name: &str, f: impl FnOnce(&mut MetricCfg)) -> MetricCfg {
    let mut m = MetricCfg::new(name);
    f(&mut m);
    m
}

fn ints(xs: &[i64]) -> Vec<Value> {
    xs.iter().map(|&x| json!(x)).collect()
}

#[test]
fn no_metrics_is_the_implicit_metric_all() {
    let cfg = tiny_cfg(&[("h", "1h", None)]);
    let rows = reference_rows(&cfg, &[ev("a", 5, "x", ""), ev("a", 6, "x", "")]);
    assert_eq!(rows, vec![row(ALL, Some("x"), None, "h", 0, 60, 1, 2)]);
}

/// A user reaches `min_count = 2` in a sliding window only by events in two different panes; a
/// tumbling window of the pane size never sees both.
#[test]
fn min_count_across_two_panes_of_a_sliding_window() {
    let mut cfg = tiny_cfg(&[("s30", "30m", Some("10m")), ("p10", "10m", None)]);
    cfg.metrics = vec![metric("two", |m| {
        m.threshold = Some(Threshold::MinCount(2))
    })];
    let rows = reference_rows(
        &cfg,
        &[
            ev("a", 5, "x", ""),
            ev("a", 15, "x", ""),
            ev("b", 15, "x", ""),
        ],
    );
    // a: windows [-20,10) [-10,20) [0,30) hold 5; [-10,20) [0,30) [10,40) hold 15
    assert_eq!(
        rows,
        vec![
            row("two", Some("x"), None, "s30", -10, 20, 1, 2),
            row("two", Some("x"), None, "s30", 0, 30, 1, 2),
        ]
    );
    // min_count = 1 is the same as no threshold
    cfg.metrics[0].threshold = Some(Threshold::MinCount(1));
    let with_one = reference_rows(
        &cfg,
        &[
            ev("a", 5, "x", ""),
            ev("a", 15, "x", ""),
            ev("b", 15, "x", ""),
        ],
    );
    cfg.metrics[0].threshold = None;
    let without = reference_rows(
        &cfg,
        &[
            ev("a", 5, "x", ""),
            ev("a", 15, "x", ""),
            ev("b", 15, "x", ""),
        ],
    );
    assert_eq!(with_one, without);
    assert!(without.contains(&row("two", Some("x"), None, "s30", 0, 30, 2, 3)));
    assert!(without.contains(&row("two", Some("x"), None, "p10", 10, 20, 2, 2)));
}

/// `min_sum`: a numeric string adds 0, each value is truncated to 6 decimals before adding, the
/// events of qualifying users only are counted.
#[test]
fn min_sum_truncates_and_ignores_non_numbers() {
    let mut cfg = tiny_cfg(&[("h", "1h", None)]);
    cfg.metrics = vec![metric("three", |m| {
        m.threshold = Some(Threshold::MinSum {
            field: "q".into(),
            value: Number::from(3),
        })
    })];
    let lines = [
        ev("a", 1, "x", r#""q":"3""#), // a string: adds 0
        ev("a", 2, "x", r#""q":1"#),
        ev("b", 3, "x", r#""q":2"#),
        ev("b", 4, "x", r#""q":1.5"#), // b: 3.5
        ev("b", 5, "x", ""),           // absent: adds 0, still one of b's events
        ev("c", 6, "x", r#""q":2.9999999"#),
        ev("c", 7, "x", r#""q":0.0000009"#), // c: 2.999999 + 0 (a float sum would be 3.0000008)
        ev("d", 8, "x", r#""q":true"#),
        ev("d", 9, "x", r#""q":{"v":9}"#),
        ev("d", 10, "x", r#""q":3.0"#), // d: exactly 3
        ev("e", 11, "x", r#""q":4"#),
        ev("e", 12, "x", r#""q":-1.5"#), // e: 4 + 0 (a negative adds 0: sums only grow)
    ];
    let rows = reference_rows(&cfg, &lines);
    // b (3 events), d (3), e (2)
    assert_eq!(rows, vec![row("three", Some("x"), None, "h", 0, 60, 3, 8)]);

    assert_eq!(naive::millionths(Some(&json!(2.9999999))), 2_999_999);
    assert_eq!(
        naive::millionths(Some(&json!(-1.0000019))),
        0,
        "a negative adds 0"
    );
    assert_eq!(naive::millionths(Some(&json!(0.0000015))), 1);
    assert_eq!(naive::millionths(Some(&json!(12))), 12_000_000);
    assert_eq!(naive::millionths(Some(&json!("3"))), 0);
    assert_eq!(naive::millionths(None), 0);
    assert!(naive::sum_reaches(
        2_500_000,
        &Number::from_f64(2.5).unwrap()
    ));
    assert!(!naive::sum_reaches(
        2_499_999,
        &Number::from_f64(2.5).unwrap()
    ));
    // V with more than 6 decimals: a sum of 2 millionths is ≥ 0.0000015, 1 is not
    assert!(naive::sum_reaches(2, &Number::from_f64(0.0000015).unwrap()));
    assert!(!naive::sum_reaches(
        1,
        &Number::from_f64(0.0000015).unwrap()
    ));

    // a sliding window's span is the whole window: 2 + 1 in two panes
    let mut cfg = tiny_cfg(&[("s2h", "2h", Some("1h"))]);
    cfg.metrics = vec![metric("three", |m| {
        m.threshold = Some(Threshold::MinSum {
            field: "q".into(),
            value: Number::from(3),
        })
    })];
    let rows = reference_rows(
        &cfg,
        &[ev("a", 10, "x", r#""q":2"#), ev("a", 70, "x", r#""q":1"#)],
    );
    assert_eq!(
        rows,
        vec![row("three", Some("x"), None, "s2h", 0, 120, 1, 2)]
    );
}

/// The generator's `min_sum` values truncate to the same millionths under every reading of
/// "truncated towards zero to 6 decimal places": the number's decimal text (the reference's), its
/// exact binary value, and its f64 multiplied by 1e6 then truncated.
#[test]
fn qty_values_truncate_alike_under_every_reading() {
    for text in QTY {
        let v: Value = serde_json::from_str(text).unwrap();
        let Value::Number(n) = &v else { continue };
        let reference = naive::millionths(Some(&v));
        let f = n.as_f64().unwrap();
        // (a negative value adds 0 under every reading)
        assert_eq!(
            ((f * 1e6).trunc() as i128).max(0),
            reference,
            "{text}: f64 × 1e6"
        );
        // the exact value of the f64: mantissa × 2^exp, times 1e6, truncated towards zero
        let bits = f.to_bits();
        let neg = bits >> 63 == 1;
        let exp = ((bits >> 52) & 0x7ff) as i64;
        let frac = (bits & ((1 << 52) - 1)) as i128;
        let (m, e) = if exp == 0 {
            (frac, -1074)
        } else {
            (frac | (1 << 52), exp - 1075)
        };
        let scaled = m * 1_000_000;
        let mag = if e >= 0 { scaled << e } else { scaled >> -e };
        assert_eq!(
            (if neg { -mag } else { mag }).max(0),
            reference,
            "{text}: exact value"
        );
    }
    assert_eq!(naive::millionths(Some(&json!(2.5))), 2_500_000);
}

/// `ne` on an absent field holds (and on null, a non-object on the way, another type); `eq`
/// needs the same JSON type.
#[test]
fn ne_holds_on_absent_and_eq_needs_the_same_type() {
    let mut cfg = tiny_cfg(&[("h", "1h", None)]);
    cfg.filters = vec![
        filter("not_black", vec![("props.color", Op::Ne(json!("black")))]),
        filter("one", vec![("props.n", Op::Eq(json!(1)))]),
        filter("yes", vec![("props.flag", Op::Eq(json!(true)))]),
    ];
    cfg.metrics = vec![
        metric("not_black", |m| m.filter = Some("not_black".into())),
        metric("one", |m| m.filter = Some("one".into())),
        metric("yes", |m| m.filter = Some("yes".into())),
    ];
    let lines = [
        ev(
            "a",
            1,
            "x",
            r#""props":{"color":"black","n":1.0,"flag":true}"#,
        ),
        ev("b", 1, "x", r#""props":{"n":"1","flag":"true"}"#), // color absent
        ev("c", 1, "x", r#""props":5"#),
        ev("d", 1, "x", r#""props":{"color":null,"n":1,"flag":1}"#),
        ev("e", 1, "x", r#""props":{"color":"Black","n":true}"#),
        ev("f", 1, "x", r#""props":{"color":1,"n":[1]}"#),
        ev("g", 1, "x", ""),
        ev("h", 1, "x", r#""props":[{"color":"black"}]"#),
    ];
    let rows = reference_rows(&cfg, &lines);
    assert_eq!(
        rows,
        vec![
            row("not_black", Some("x"), None, "h", 0, 60, 7, 7),
            row("one", Some("x"), None, "h", 0, 60, 2, 2), // a (1.0) and d (1)
            row("yes", Some("x"), None, "h", 0, 60, 1, 1), // a
        ]
    );
}

/// Every operator on one event, through dotted paths, an escaped dot, arrays and non-objects.
#[test]
fn operators_and_field_paths() {
    let e: Value = serde_json::from_str(
        r#"{"u":"a","t":1,"e":"x","a.b":"top","k":{"x":"nested"},"k.x":"dotted",
            "props":{"color":"jet black","qty":2,"f":1.5,"s":"3","list":[{"x":1}],
                     "item":{"x":null,"y":{"z":"deep"},"a.b":7},"dup":1,"dup":2}}"#,
    )
    .unwrap();
    let holds = |field: &str, op: Op| {
        naive::clause_holds(
            &Clause {
                field: field.into(),
                op,
            },
            &e,
        )
    };
    // paths
    assert_eq!(naive::lookup_path(&e, "k.x"), Some(&json!("nested")));
    assert_eq!(naive::lookup_path(&e, r"k\.x"), Some(&json!("dotted")));
    assert_eq!(naive::lookup_path(&e, r"a\.b"), Some(&json!("top")));
    assert_eq!(naive::lookup_path(&e, "a.b"), None);
    assert_eq!(
        naive::lookup_path(&e, "props.item.y.z"),
        Some(&json!("deep"))
    );
    assert_eq!(naive::lookup_path(&e, r"props.item.a\.b"), Some(&json!(7)));
    assert_eq!(naive::lookup_path(&e, "props.item.x"), None); // null is absent
    assert_eq!(naive::lookup_path(&e, "props.list.x"), None); // never into arrays
    assert_eq!(naive::lookup_path(&e, "props.list.0"), None);
    assert_eq!(naive::lookup_path(&e, "props.qty.x"), None); // through a non-object
    assert_eq!(naive::lookup_path(&e, "props.dup"), Some(&json!(2))); // the last one wins
    assert_eq!(naive::path_steps(r"a\.b.c"), vec!["a.b", "c"]);
    // eq / ne
    assert!(holds("props.qty", Op::Eq(json!(2.0))));
    assert!(!holds("props.s", Op::Eq(json!(3))));
    assert!(holds("props.s", Op::Eq(json!("3"))));
    assert!(holds("props.s", Op::Ne(json!(3))));
    assert!(holds("missing", Op::Ne(json!("x"))));
    assert!(!holds("props.item", Op::Eq(json!("x"))));
    // in / not_in
    assert!(holds(
        "props.color",
        Op::In(vec![json!("black"), json!("jet black")])
    ));
    assert!(holds("props.qty", Op::In(ints(&[5, 2]))));
    assert!(!holds("props.s", Op::In(ints(&[3]))));
    assert!(holds("props.s", Op::NotIn(ints(&[3]))));
    assert!(holds("missing", Op::NotIn(vec![json!("x")])));
    assert!(!holds("props.color", Op::NotIn(vec![json!("jet black")])));
    // regex: unanchored; non-strings never match
    assert!(holds("props.color", Op::Regex("black".into())));
    assert!(holds("props.color", Op::Regex("(?i)^JET".into())));
    assert!(!holds("props.color", Op::Regex("^black".into())));
    assert!(!holds("props.qty", Op::Regex("2".into())));
    assert!(!holds("missing", Op::Regex("".into())));
    assert!(holds("props.s", Op::Regex(r"^\d$".into())));
    // comparisons: numbers only
    let n = |x: f64| Number::from_f64(x).unwrap();
    assert!(holds("props.qty", Op::Ge(Number::from(2))));
    assert!(holds("props.qty", Op::Le(n(2.0))));
    assert!(!holds("props.qty", Op::Lt(Number::from(2))));
    assert!(holds("props.f", Op::Gt(Number::from(1))));
    assert!(holds("props.f", Op::Lt(Number::from(2))));
    assert!(!holds("props.s", Op::Gt(Number::from(1)))); // "3" is not a number
    assert!(!holds("missing", Op::Lt(Number::from(100))));
    // exists
    assert!(holds("props.item", Op::Exists(true)));
    assert!(holds("props.item.x", Op::Exists(false)));
    assert!(holds("props.list.x", Op::Exists(false)));
    assert!(!holds("props.list", Op::Exists(false)));
    // an empty filter matches everything; clauses AND
    let f = |clauses: Vec<(&str, Op)>| naive::filter_matches(&filter("f", clauses), &e);
    assert!(f(vec![]));
    assert!(f(vec![
        ("props.qty", Op::Ge(Number::from(1))),
        ("k.x", Op::Eq(json!("nested")))
    ]));
    assert!(!f(vec![
        ("props.qty", Op::Ge(Number::from(1))),
        ("k.x", Op::Eq(json!("dotted")))
    ]));
}

/// `by_type = false` merges the types; a metric's dimension and window subsets; dimensions on
/// dotted paths; a filter on the raw event.
#[test]
fn by_type_false_and_subsets() {
    let mut cfg = tiny_cfg(&[("h", "1h", None), ("d", "1d", None)]);
    cfg.dims = vec![
        DimCfg {
            name: "camp".into(),
            field: "p.camp".into(),
            kind: DimKind::Raw,
        },
        DimCfg {
            name: "b".into(),
            field: "b".into(),
            kind: DimKind::Raw,
        },
    ];
    cfg.filters = vec![filter("big", vec![("p.q", Op::Ge(Number::from(2)))])];
    cfg.metrics = vec![
        metric("untyped", |m| {
            m.by_type = Some(false);
            m.dimensions = Some(vec!["camp".into()]);
            m.windows = Some(vec!["h".into()]);
        }),
        metric("big", |m| {
            m.filter = Some("big".into());
            m.dimensions = Some(vec![]);
            m.windows = Some(vec!["d".into()]);
            m.by_type = Some(true);
        }),
    ];
    let lines = [
        ev("a", 1, "x", r#""p":{"camp":"c1","q":2},"b":"chrome""#),
        ev("a", 2, "y", r#""p":{"camp":"c1","q":1}"#),
        ev("b", 3, "y", r#""p":{"q":3},"b":"chrome""#),
        ev("c", 70, "x", r#""p":"c1""#),
    ];
    let rows = reference_rows(&cfg, &lines);
    let mut want = vec![
        row("untyped", None, None, "h", 0, 60, 2, 3),
        row("untyped", None, Some(("camp", "c1")), "h", 0, 60, 1, 2),
        row("untyped", None, None, "h", 60, 120, 1, 1),
        row("big", Some("x"), None, "d", 0, 1440, 1, 1),
        row("big", Some("y"), None, "d", 0, 1440, 1, 1),
    ];
    want.sort();
    assert_eq!(rows, want);

    // a dimension on a dotted path is still a dimension: another JSON type there is rejected
    let mut input = Vec::new();
    input.extend_from_slice(ev("a", 1, "x", r#""p":{"camp":5}"#).as_bytes());
    input.push(b'\n');
    input.extend_from_slice(ev("a", 1, "x", r#""p":[{"camp":5}]"#).as_bytes());
    input.push(b'\n');
    let r = naive::reference(&cfg, &[input]);
    assert_eq!(r.rejected_reasons, vec!["wrong type"]);
    assert_eq!(r.counts.counted, 1);
}

/// Lateness is shared by all metrics and looks at every window spec: an event is late when a window
/// of a spec that no metric counts in has fired; a filter that no event passes moves nothing.
#[test]
fn lateness_ignores_the_metrics_window_subsets() {
    let mut cfg = tiny_cfg(&[("q10", "10m", None), ("d", "1d", None)]);
    cfg.strategy = Strategy::Max;
    cfg.interval = 1;
    cfg.max_out_of_orderness = "0s".into();
    cfg.allowed_lateness = "0s".into();
    cfg.filters = vec![filter("none", vec![("missing", Op::Exists(true))])];
    cfg.metrics = vec![
        metric("daily", |m| m.windows = Some(vec!["d".into()])),
        metric("nothing", |m| m.filter = Some("none".into())),
    ];
    let mut input = Vec::new();
    for l in [
        ev("a", 30, "x", ""),
        ev("b", 5, "x", ""),
        ev("c", 31, "x", ""),
    ] {
        input.extend_from_slice(l.as_bytes());
        input.push(b'\n');
    }
    let r = naive::reference(&cfg, &[input]);
    assert_eq!(r.counts.late, 1); // b: [0, 10) fired once the watermark reached 30m
    assert_eq!(r.counts.counted, 2);
    assert_eq!(
        r.rows,
        vec![row("daily", Some("x"), None, "d", 0, 1440, 2, 2)]
    );
}

/// The TOML the reference writes for the metrics surface.
#[test]
fn metrics_toml_surface() {
    let mut cfg = tiny_cfg(&[("hourly", "1h", None)]);
    cfg.filters = vec![filter(
        "black_charger",
        vec![
            ("type", Op::Eq(json!("Ordered Product"))),
            ("color", Op::In(vec![json!("black"), json!("jet black")])),
            ("product", Op::Regex("(?i)charger".into())),
            ("quantity", Op::Ge(Number::from(1))),
            (r"props.item\.x", Op::Exists(true)),
        ],
    )];
    cfg.metrics = vec![
        metric("two_plus", |m| {
            m.filter = Some("black_charger".into());
            m.threshold = Some(Threshold::MinCount(2));
        }),
        metric("three_units", |m| {
            m.filter = Some("black_charger".into());
            m.dimensions = Some(vec![]);
            m.windows = Some(vec!["hourly".into()]);
            m.by_type = Some(false);
            m.threshold = Some(Threshold::MinSum {
                field: "quantity".into(),
                value: Number::from_f64(2.5).unwrap(),
            });
        }),
    ];
    let t = cfg.toml();
    let tail = &t[t.find("[[filters]]").unwrap()..];
    assert_eq!(
        tail,
        r#"[[filters]]
name = "black_charger"
where = [
  { field = "type", eq = "Ordered Product" },
  { field = "color", in = ["black", "jet black"] },
  { field = "product", regex = "(?i)charger" },
  { field = "quantity", ge = 1 },
  { field = "props.item\\.x", exists = true },
]

[[metrics]]
name = "two_plus"
filter = "black_charger"
min_count = 2

[[metrics]]
name = "three_units"
filter = "black_charger"
dimensions = []
windows = ["hourly"]
by_type = false
min_sum = { field = "quantity", value = 2.5 }
"#
    );
    let v: toml::Value = toml::from_str(&t).unwrap();
    assert_eq!(
        v["filters"][0]["where"][4]["field"].as_str(),
        Some(r"props.item\.x")
    );
}
