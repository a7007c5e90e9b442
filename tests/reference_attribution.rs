//! Attribution metrics ("did B after A, within T", docs/SEMANTICS.md "Attribution metrics")
//! against the naive reference (tests/common/naive.rs).
//!
//! `reference_*` tests check the reference itself: tiny inputs whose rows, counters and late lines
//! are computed by hand in the test, and properties over random journeys (every cell is final when
//! it fires; any touch credits a superset of last/first touch; `window_on = "conversion"` totals do
//! not depend on the attribution). `engine_*` tests run the binary: seeded random configs with
//! attribution metrics over short random journeys, each with `--threads` 1, 2 and 4, rows, summary
//! counters, late and rejected lines compared with the reference (`ABACUS_FUZZ_SCALE=N` runs N times
//! as many cases), and the config errors the contract names.

mod common;

use std::collections::BTreeMap;

use serde_json::{Number, json};

use common::naive::{
    self, Cfg, DimCfg, DimKind, MetricCfg, Op, Strategy, Threshold, TimeFormat, WinCfg,
};
use common::refcheck::{diff_against_reference, event_line, filter, json_str, parallel_cases, row};
use common::{Counts, HOUR, MIN, Rng, Row, Scratch, T0};

// ---------------------------------------------------------------------------------------------
// helpers for the hand-computed cases

/// A config with one dimension `campaign` (field `camp`), the filters `click` (e = click), `buy`
/// (e = buy) and `every` (an empty `where`), the given windows, unbounded lateness, no metrics.
fn base_cfg(windows: &[(&str, &str, Option<&str>)]) -> Cfg {
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
        dims: vec![dimension("campaign", "camp")],
        windows: windows
            .iter()
            .map(|(n, s, sl)| WinCfg {
                name: n.to_string(),
                size: s.to_string(),
                slide: sl.map(|x| x.to_string()),
            })
            .collect(),
        filters: vec![
            filter("click", vec![("e", Op::Eq(json!("click")))]),
            filter("buy", vec![("e", Op::Eq(json!("buy")))]),
            filter("every", vec![]),
        ],
        metrics: vec![],
    }
}

fn dimension(name: &str, field: &str) -> DimCfg {
    DimCfg {
        name: name.into(),
        field: field.into(),
        kind: DimKind::Raw,
    }
}

/// An attribution metric: conversions `buy` after anchors `click`, within `within`, with the
/// attribution (`None` = default) and `window_on` (`None` = default) given.
fn attr(name: &str, within: &str, how: Option<&str>, on: Option<&str>) -> MetricCfg {
    let mut m = MetricCfg::new(name);
    m.filter = Some("buy".into());
    m.after = Some("click".into());
    m.within = Some(within.into());
    m.attribution = how.map(|s| s.into());
    m.window_on = on.map(|s| s.into());
    m
}

/// `{"u":U,"t":T0 + ms,"e":E, ...extra}`.
fn ev_ms(u: &str, ms: i64, e: &str, extra: &str) -> String {
    let extra = if extra.is_empty() {
        String::new()
    } else {
        format!(",{extra}")
    };
    format!(r#"{{"u":"{u}","t":{},"e":"{e}"{extra}}}"#, T0 + ms)
}

/// An event `min` minutes after T0 (2024-05-01T00:00:00Z).
fn ev(u: &str, min: i64, e: &str, extra: &str) -> String {
    ev_ms(u, min * MIN, e, extra)
}

/// A click with campaign `camp`.
fn click(u: &str, min: i64, camp: &str) -> String {
    ev(u, min, "click", &format!(r#""camp":"{camp}""#))
}

fn buy(u: &str, min: i64) -> String {
    ev(u, min, "buy", "")
}

fn input(lines: &[String]) -> Vec<u8> {
    let mut v = Vec::new();
    for l in lines {
        v.extend_from_slice(l.as_bytes());
        v.push(b'\n');
    }
    v
}

/// The reference's outcome on `lines` (none of them may be rejected).
fn outcome(cfg: &Cfg, lines: &[String]) -> naive::Outcome {
    let r = naive::reference(cfg, &[input(lines)]);
    assert_eq!(r.counts.rejected, 0, "{:?}", r.rejected_reasons);
    r
}

fn rows_of(cfg: &Cfg, lines: &[String]) -> Vec<Row> {
    outcome(cfg, lines).rows
}

/// A `buy` row of an attribution metric: the total row (`camp` = None) or a `campaign` row.
fn brow(
    metric: &str,
    camp: Option<&str>,
    window: &str,
    start_min: i64,
    end_min: i64,
    unique_users: u64,
    events: u64,
) -> Row {
    row(
        metric,
        Some("buy"),
        camp.map(|c| ("campaign", c)),
        window,
        start_min,
        end_min,
        unique_users,
        events,
    )
}

fn sorted(mut rows: Vec<Row>) -> Vec<Row> {
    rows.sort();
    rows
}

// ---------------------------------------------------------------------------------------------
// the reference itself, on tiny hand-computed inputs

/// A conversion before its anchor is not counted; a conversion at exactly `t_a + within` is, one
/// millisecond later it is not; a user without any anchor counts nowhere.
#[test]
fn reference_b_before_a_and_the_end_of_within() {
    let mut cfg = base_cfg(&[("h", "1h", None)]);
    for how in ["last_touch", "first_touch", "any_touch"] {
        for on in ["anchor", "conversion"] {
            cfg.metrics = vec![attr("m", "1h", Some(how), Some(on))];
            // a: B at 1:00, A at 1:30 → nothing
            assert_eq!(
                rows_of(&cfg, &[buy("a", 60), click("a", 90, "c1")]),
                vec![],
                "{how} {on}"
            );
            // b: A at 0:00, B at 1:00 = t_a + within → counted; c: B 1 ms later → not; d: B only
            let lines = [
                click("b", 0, "c1"),
                buy("b", 60),
                click("c", 0, "c1"),
                ev_ms("c", HOUR + 1, "buy", ""),
                buy("d", 30),
            ];
            // the credit lands in A's window [0:00, 1:00) or B's [1:00, 2:00)
            let (s, e) = if on == "anchor" { (0, 60) } else { (60, 120) };
            assert_eq!(
                rows_of(&cfg, &lines),
                vec![
                    brow("m", None, "h", s, e, 1, 1),
                    brow("m", Some("c1"), "h", s, e, 1, 1),
                ],
                "{how} {on}"
            );
        }
    }
}

/// Equal times are never "after"; an event that is both an A and a B never follows itself, but
/// follows an earlier one.
#[test]
fn reference_same_time_is_not_after_and_an_event_never_follows_itself() {
    let mut cfg = base_cfg(&[("h", "1h", None)]);
    cfg.metrics = vec![attr("m", "1h", None, None)];
    assert_eq!(rows_of(&cfg, &[click("a", 10, "c1"), buy("a", 10)]), vec![]);
    assert_eq!(rows_of(&cfg, &[buy("a", 10), click("a", 10, "c1")]), vec![]);

    // "again": a buy after a buy (`after` and `filter` both `buy`)
    let mut again = MetricCfg::new("again");
    again.filter = Some("buy".into());
    again.after = Some("buy".into());
    again.within = Some("1h".into());
    cfg.metrics = vec![again.clone()];
    let lines = [
        buy("a", 10),
        buy("a", 20), // follows a's first buy
        buy("b", 30), // alone: never follows itself
        buy("c", 40), // c: two buys at the same time, neither follows the other
        buy("c", 40),
    ];
    assert_eq!(
        rows_of(&cfg, &lines),
        vec![brow("again", None, "h", 0, 60, 1, 1)]
    );

    // no `filter`: every event is a B; `after = "every"`: every event is an A
    let mut any = MetricCfg::new("any");
    any.after = Some("every".into());
    any.within = Some("1h".into());
    any.dimensions = Some(vec![]);
    cfg.metrics = vec![any];
    let lines = [
        ev("a", 10, "view", ""),
        ev("a", 10, "buy", ""), // same time as the view: follows nothing
        ev("a", 15, "view", ""),
        ev("b", 20, "view", ""),
    ];
    assert_eq!(
        rows_of(&cfg, &lines),
        vec![row("any", Some("view"), None, "h", 0, 60, 1, 1)]
    );
}

/// A 1:00 (c1), A 1:30 (c2), B 1:45, B 2:15, within 1h: B 1:45's lookback is both A's, B 2:15's
/// only A 1:30. Windows: hourly `h` and 30-minute `q30`.
#[test]
fn reference_two_anchors_two_conversions() {
    let mut cfg = base_cfg(&[("h", "1h", None), ("q30", "30m", None)]);
    cfg.metrics = vec![
        attr("last", "1h", Some("last_touch"), None),
        attr("default", "1h", None, None),
        attr("first", "1h", Some("first_touch"), None),
        attr("any", "1h", Some("any_touch"), Some("anchor")),
        attr("conv", "1h", None, Some("conversion")),
    ];
    let lines = [
        click("a", 60, "c1"),
        ev("a", 70, "view", r#""camp":"c3""#), // neither A nor B
        click("a", 90, "c2"),
        buy("a", 105),
        buy("a", 135),
        buy("b", 105), // b has no anchor
    ];
    let rows = rows_of(&cfg, &lines);
    let of = |m: &str| -> Vec<Row> { rows.iter().filter(|r| r.metric == m).cloned().collect() };
    // last touch: both B's → A 1:30 (c2), whose windows are h [1:00, 2:00) and q30 [1:30, 2:00)
    let last = |m: &str| {
        sorted(vec![
            brow(m, None, "h", 60, 120, 1, 2),
            brow(m, Some("c2"), "h", 60, 120, 1, 2),
            brow(m, None, "q30", 90, 120, 1, 2),
            brow(m, Some("c2"), "q30", 90, 120, 1, 2),
        ])
    };
    assert_eq!(of("last"), last("last"));
    assert_eq!(of("default"), last("default"), "last_touch is the default");
    // first touch: B 1:45 → A 1:00 (c1: q30 [1:00, 1:30)), B 2:15 → A 1:30 (c2: q30 [1:30, 2:00))
    assert_eq!(
        of("first"),
        sorted(vec![
            brow("first", None, "h", 60, 120, 1, 2),
            brow("first", Some("c1"), "h", 60, 120, 1, 1),
            brow("first", Some("c2"), "h", 60, 120, 1, 1),
            brow("first", None, "q30", 60, 90, 1, 1),
            brow("first", Some("c1"), "q30", 60, 90, 1, 1),
            brow("first", None, "q30", 90, 120, 1, 1),
            brow("first", Some("c2"), "q30", 90, 120, 1, 1),
        ])
    );
    // any touch: B 1:45 → both (once in the total of h [1:00, 2:00)), B 2:15 → A 1:30
    assert_eq!(
        of("any"),
        sorted(vec![
            brow("any", None, "h", 60, 120, 1, 2),
            brow("any", Some("c1"), "h", 60, 120, 1, 1),
            brow("any", Some("c2"), "h", 60, 120, 1, 2),
            brow("any", None, "q30", 60, 90, 1, 1),
            brow("any", Some("c1"), "q30", 60, 90, 1, 1),
            brow("any", None, "q30", 90, 120, 1, 2),
            brow("any", Some("c2"), "q30", 90, 120, 1, 2),
        ])
    );
    // last touch in the conversions' windows: B 1:45 in h [1:00, 2:00) and q30 [1:30, 2:00);
    // B 2:15 in h [2:00, 3:00) and q30 [2:00, 2:30); both credited to c2
    assert_eq!(
        of("conv"),
        sorted(vec![
            brow("conv", None, "h", 60, 120, 1, 1),
            brow("conv", Some("c2"), "h", 60, 120, 1, 1),
            brow("conv", None, "h", 120, 180, 1, 1),
            brow("conv", Some("c2"), "h", 120, 180, 1, 1),
            brow("conv", None, "q30", 90, 120, 1, 1),
            brow("conv", Some("c2"), "q30", 90, 120, 1, 1),
            brow("conv", None, "q30", 120, 150, 1, 1),
            brow("conv", Some("c2"), "q30", 120, 150, 1, 1),
        ])
    );
}

/// An A without the dimension gives the total row only; with any touch, a B credited to an A with
/// the dimension and one without is in the total row once and in the one campaign row.
#[test]
fn reference_anchor_without_the_dimension() {
    let mut cfg = base_cfg(&[("h", "1h", None)]);
    cfg.metrics = vec![
        attr("last", "1h", None, None),
        attr("any", "1h", Some("any_touch"), None),
    ];
    let rows = rows_of(
        &cfg,
        &[
            ev("a", 10, "click", ""),
            ev("a", 12, "click", r#""camp":"""#), // "" is absent
            ev("a", 14, "click", r#""camp":null"#),
            buy("a", 20),
        ],
    );
    assert_eq!(
        rows,
        vec![
            brow("any", None, "h", 0, 60, 1, 1),
            brow("last", None, "h", 0, 60, 1, 1),
        ]
    );
    let rows = rows_of(
        &cfg,
        &[click("b", 5, "c1"), ev("b", 10, "click", ""), buy("b", 20)],
    );
    assert_eq!(
        rows,
        vec![
            brow("any", None, "h", 0, 60, 1, 1),
            brow("any", Some("c1"), "h", 0, 60, 1, 1),
            brow("last", None, "h", 0, 60, 1, 1), // the latest A (0:10) has no campaign
        ]
    );
}

/// A daily window: A at 23:30, B at 00:15 the next day: `anchor` counts it on the A's day,
/// `conversion` on the B's; a B at 00:45 is more than 1h after the A and counts nowhere.
#[test]
fn reference_window_on_across_midnight() {
    let mut cfg = base_cfg(&[("d", "1d", None)]);
    cfg.metrics = vec![
        attr("on_anchor", "1h", None, Some("anchor")),
        attr("on_conversion", "1h", None, Some("conversion")),
    ];
    let day = 24 * 60;
    let rows = rows_of(
        &cfg,
        &[
            click("a", day - 30, "c1"),
            buy("a", day + 15),
            buy("a", day + 45),
        ],
    );
    assert_eq!(
        rows,
        vec![
            brow("on_anchor", None, "d", 0, day, 1, 1),
            brow("on_anchor", Some("c1"), "d", 0, day, 1, 1),
            brow("on_conversion", None, "d", day, 2 * day, 1, 1),
            brow("on_conversion", Some("c1"), "d", day, 2 * day, 1, 1),
        ]
    );
}

/// `min_count = 2` reached only by B's credited to two different A's: last touch qualifies the
/// user in the total row only (one B per campaign); any and first touch credit both B's to c1.
/// `min_sum` sums the B's field over the credited B's of the cell.
#[test]
fn reference_threshold_reached_via_two_anchors() {
    let mut cfg = base_cfg(&[("h", "1h", None)]);
    let with = |mut m: MetricCfg, t: Threshold| {
        m.threshold = Some(t);
        m
    };
    let two = || Threshold::MinCount(2);
    let three = || Threshold::MinSum {
        field: "q".into(),
        value: Number::from(3),
    };
    cfg.metrics = vec![
        with(attr("last2", "1h", None, None), two()),
        with(attr("any2", "1h", Some("any_touch"), None), two()),
        with(attr("first2", "1h", Some("first_touch"), None), two()),
        with(attr("last3", "1h", None, None), three()),
        with(attr("any3", "1h", Some("any_touch"), None), three()),
    ];
    let lines = [
        click("a", 0, "c1"),
        ev("a", 10, "buy", r#""q":1"#), // lookback: c1
        click("a", 20, "c2"),
        ev("a", 30, "buy", r#""q":2"#), // lookback: c1, c2
        click("b", 0, "c1"),
        ev("b", 5, "buy", r#""q":5"#), // lookback: c1
    ];
    let rows = rows_of(&cfg, &lines);
    let of = |m: &str| -> Vec<Row> { rows.iter().filter(|r| r.metric == m).cloned().collect() };
    // last touch: a's B's → c1, c2 (2 in the total, 1 per campaign); b: 1
    assert_eq!(of("last2"), vec![brow("last2", None, "h", 0, 60, 1, 2)]);
    // any touch: a's B's → {c1}, {c1, c2}: 2 in the total and in c1, 1 in c2
    assert_eq!(
        of("any2"),
        vec![
            brow("any2", None, "h", 0, 60, 1, 2),
            brow("any2", Some("c1"), "h", 0, 60, 1, 2),
        ]
    );
    // first touch: both of a's B's → c1
    assert_eq!(
        of("first2"),
        vec![
            brow("first2", None, "h", 0, 60, 1, 2),
            brow("first2", Some("c1"), "h", 0, 60, 1, 2),
        ]
    );
    // min_sum 3, last touch: total a 1+2, b 5; c1: a 1 (no), b 5; c2: a 2 (no)
    assert_eq!(
        of("last3"),
        vec![
            brow("last3", None, "h", 0, 60, 2, 3),
            brow("last3", Some("c1"), "h", 0, 60, 1, 1),
        ]
    );
    // min_sum 3, any touch: c1: a 1+2, b 5; c2: a 2 (no)
    assert_eq!(
        of("any3"),
        vec![
            brow("any3", None, "h", 0, 60, 2, 3),
            brow("any3", Some("c1"), "h", 0, 60, 2, 3),
        ]
    );
}

/// A's at the same time: the smallest tuple of the metric's dimension values wins, value by value,
/// byte order, an absent value before any value.
#[test]
fn reference_ties_go_to_the_smallest_tuple() {
    let mut cfg = base_cfg(&[("h", "1h", None)]);
    cfg.dims = vec![dimension("campaign", "camp"), dimension("src", "src")];
    let mut last = attr("last", "1h", None, None);
    let mut first = attr("first", "1h", Some("first_touch"), None);
    let only_src = |mut m: MetricCfg| {
        m.name += "_src";
        m.dimensions = Some(vec!["src".into()]);
        m
    };
    cfg.metrics = vec![
        last.clone(),
        first.clone(),
        only_src(last.clone()),
        only_src(first.clone()),
    ];
    let a = |camp: Option<&str>, src: Option<&str>, min: i64| {
        let mut extra = Vec::new();
        if let Some(c) = camp {
            extra.push(format!(r#""camp":"{c}""#));
        }
        if let Some(s) = src {
            extra.push(format!(r#""src":"{s}""#));
        }
        ev("u", min, "click", &extra.join(","))
    };
    let b = || buy("u", 20);
    // the rows of one metric: the total and the given (dimension, value) rows, h [0:00, 1:00)
    let want = |m: &str, dims: &[(&str, &str)]| -> Vec<Row> {
        let mut v = vec![row(m, Some("buy"), None, "h", 0, 60, 1, 1)];
        for d in dims {
            v.push(row(m, Some("buy"), Some(*d), "h", 0, 60, 1, 1));
        }
        sorted(v)
    };
    let of = |rows: &[Row], m: &str| -> Vec<Row> {
        rows.iter().filter(|r| r.metric == m).cloned().collect()
    };

    // (c2) vs (c1) at 0:10: c1
    let rows = rows_of(
        &cfg,
        &[a(Some("c2"), None, 10), a(Some("c1"), None, 10), b()],
    );
    assert_eq!(of(&rows, "last"), want("last", &[("campaign", "c1")]));
    assert_eq!(of(&rows, "first"), want("first", &[("campaign", "c1")]));
    assert_eq!(of(&rows, "last_src"), want("last_src", &[]));

    // an A without a campaign at the same time: absent before any value → no campaign row
    let rows = rows_of(
        &cfg,
        &[
            a(Some("c2"), None, 10),
            a(None, Some("s"), 10),
            a(Some("c1"), None, 10),
            b(),
        ],
    );
    assert_eq!(of(&rows, "last"), want("last", &[("src", "s")]));
    // with the metric's dimensions = [src] only: (absent) < (s) → the total row only
    assert_eq!(of(&rows, "last_src"), want("last_src", &[]));

    // (c1, b) vs (c2, a): c1 wins on the first value; over [src] alone (a) < (b)
    let rows = rows_of(
        &cfg,
        &[
            a(Some("c2"), Some("a"), 10),
            a(Some("c1"), Some("b"), 10),
            b(),
        ],
    );
    assert_eq!(
        of(&rows, "last"),
        want("last", &[("campaign", "c1"), ("src", "b")])
    );
    assert_eq!(of(&rows, "last_src"), want("last_src", &[("src", "a")]));
    // (c1, absent) vs (c1, a): the second value decides, absent first
    let rows = rows_of(
        &cfg,
        &[a(Some("c1"), Some("a"), 10), a(Some("c1"), None, 10), b()],
    );
    assert_eq!(of(&rows, "last"), want("last", &[("campaign", "c1")]));

    // byte order: "B" < "a", "c10" < "c9"
    let rows = rows_of(&cfg, &[a(Some("a"), None, 10), a(Some("B"), None, 10), b()]);
    assert_eq!(of(&rows, "last"), want("last", &[("campaign", "B")]));
    let rows = rows_of(
        &cfg,
        &[a(Some("c9"), None, 10), a(Some("c10"), None, 10), b()],
    );
    assert_eq!(of(&rows, "last"), want("last", &[("campaign", "c10")]));

    // first touch: the earliest time first (c1 and c2 at 0:05, c0 at 0:10), then the tuple
    let rows = rows_of(
        &cfg,
        &[
            a(Some("c2"), None, 5),
            a(Some("c0"), None, 10),
            a(Some("c1"), None, 5),
            b(),
        ],
    );
    assert_eq!(of(&rows, "first"), want("first", &[("campaign", "c1")]));
    assert_eq!(of(&rows, "last"), want("last", &[("campaign", "c0")]));

    // with `dimensions = []` the tuple is empty: the total row, whichever A wins
    last.dimensions = Some(vec![]);
    first.dimensions = Some(vec![]);
    cfg.metrics = vec![last, first];
    let rows = rows_of(
        &cfg,
        &[a(Some("c2"), None, 10), a(Some("c1"), None, 10), b()],
    );
    assert_eq!(
        rows,
        sorted(vec![
            brow("first", None, "h", 0, 60, 1, 1),
            brow("last", None, "h", 0, 60, 1, 1),
        ])
    );
}

/// The generalised lateness: with `max` watermark, interval 1, no out-of-orderness, allowed
/// lateness 5m, window `h` (1h), within 30m. After the view at 2:40 the watermark is 2:40.
///
/// Anchor-windowed, last touch (E(x) = the end of x's hour):
/// - buy 2:10: E(1:40) + 30m + 5m = 2:35 ≤ 2:40 → late (the general rule: 3:05, not late);
/// - click c2 2:20: E(1:50:00.001) + 35m = 2:35 → late;
/// - click c3 2:29:59.999: E(2:00:00.000) + 35m = 3:35 → counted;
/// - b's buy 2:29:59.999: E(1:59:59.999) + 35m = 2:35 → late;
/// - buy 2:45: E(2:15) + 35m = 3:35 → counted; the watermark moves to 2:45;
/// - buy 1:50: the general rule, E(1:50) + 5m = 2:05 → late.
///
/// First touch: the click at 2:20 is not late (a first-touch A only has the general rule).
/// `window_on = "conversion"`: only the general rule (the buy at 1:50).
#[test]
fn reference_late_anchor_and_late_conversion() {
    let mut cfg = base_cfg(&[("h", "1h", None)]);
    cfg.strategy = Strategy::Max;
    cfg.interval = 1;
    cfg.max_out_of_orderness = "0s".into();
    cfg.allowed_lateness = "5m".into();
    let mut seen = MetricCfg::new("seen"); // every counted event
    seen.by_type = Some(false);
    seen.dimensions = Some(vec![]);
    let ms = |h: i64, m: i64| h * HOUR + m * MIN;
    let e1 = click("a", 105, "c1");
    let e2 = ev("z", 160, "view", "");
    let e3 = buy("a", 130);
    let e4 = click("a", 140, "c2");
    let e5 = ev_ms("a", ms(2, 30) - 1, "click", r#""camp":"c3""#);
    let e6 = ev_ms("b", ms(2, 30) - 1, "buy", "");
    let e7 = buy("a", 165);
    let e8 = buy("a", 110);
    let lines = [
        e1.clone(),
        e2.clone(),
        e3.clone(),
        e4.clone(),
        e5.clone(),
        e6.clone(),
        e7.clone(),
        e8.clone(),
    ];
    let bytes =
        |ls: &[&String]| -> Vec<Vec<u8>> { ls.iter().map(|l| l.as_bytes().to_vec()).collect() };
    let seen_row =
        |start: i64, end: i64, uu: u64, n: u64| row("seen", None, None, "h", start, end, uu, n);

    // last touch: e3, e4, e6 late by the attribution rules, e8 by the general rule
    cfg.metrics = vec![attr("lt", "30m", None, None), seen.clone()];
    let r = outcome(&cfg, &lines);
    assert_eq!(
        r.counts,
        Counts {
            lines: 8,
            counted: 4,
            duplicates: 0,
            late: 4,
            rejected: 0
        }
    );
    assert_eq!((r.attribution_late, r.anchor_rule_late), (3, 1));
    assert_eq!(r.late_lines, bytes(&[&e3, &e4, &e6, &e8]));
    // e7's lookback [2:15, 2:45): c3 (c2 was late)
    assert_eq!(
        r.rows,
        sorted(vec![
            brow("lt", None, "h", 120, 180, 1, 1),
            brow("lt", Some("c3"), "h", 120, 180, 1, 1),
            seen_row(60, 120, 1, 1),  // e1
            seen_row(120, 180, 2, 3), // e2, e5, e7
        ])
    );

    // first touch: e4 counted
    cfg.metrics = vec![attr("ft", "30m", Some("first_touch"), None), seen.clone()];
    let r = outcome(&cfg, &lines);
    assert_eq!(
        (r.counts.counted, r.counts.late, r.attribution_late),
        (5, 3, 2)
    );
    assert_eq!(r.late_lines, bytes(&[&e3, &e6, &e8]));
    // e7's lookback: c2 at 2:20, c3 at 2:29:59.999 → c2
    assert_eq!(
        r.rows,
        sorted(vec![
            brow("ft", None, "h", 120, 180, 1, 1),
            brow("ft", Some("c2"), "h", 120, 180, 1, 1),
            seen_row(60, 120, 1, 1),
            seen_row(120, 180, 2, 4), // e2, e4, e5, e7
        ])
    );

    // conversion windows: e3, e4, e6 counted
    cfg.metrics = vec![attr("cv", "30m", None, Some("conversion")), seen.clone()];
    let r = outcome(&cfg, &lines);
    assert_eq!(
        (r.counts.counted, r.counts.late, r.attribution_late),
        (7, 1, 0)
    );
    assert_eq!(r.late_lines, bytes(&[&e8]));
    // e3 → c1 (1:45), e6 (b) has no anchor, e7 → c3; both in [2:00, 3:00)
    assert_eq!(
        r.rows,
        sorted(vec![
            brow("cv", None, "h", 120, 180, 1, 2),
            brow("cv", Some("c1"), "h", 120, 180, 1, 1),
            brow("cv", Some("c3"), "h", 120, 180, 1, 1),
            seen_row(60, 120, 1, 1),
            seen_row(120, 180, 3, 6), // a: e3 e4 e5 e7, z: e2, b: e6
        ])
    );

    // both an anchor- and a conversion-windowed metric: the anchor one's rules apply to the line
    cfg.metrics = vec![
        attr("lt", "30m", None, None),
        attr("cv", "30m", None, Some("conversion")),
    ];
    let r = outcome(&cfg, &lines);
    assert_eq!(r.late_lines, bytes(&[&e3, &e4, &e6, &e8]));
    assert_eq!(
        r.rows,
        sorted(vec![
            brow("cv", None, "h", 120, 180, 1, 1),
            brow("cv", Some("c3"), "h", 120, 180, 1, 1),
            brow("lt", None, "h", 120, 180, 1, 1),
            brow("lt", Some("c3"), "h", 120, 180, 1, 1),
        ])
    );

    // unbounded lateness: nothing is late
    cfg.allowed_lateness = "unbounded".into();
    let r = outcome(&cfg, &lines);
    assert_eq!((r.counts.counted, r.counts.late), (8, 0));
}

/// The generalised rules at their edges (same config as above, last touch): an A or a B whose
/// earliest anchor window has ended but has not fired (`wm < end + within + lateness`) is counted;
/// at `wm = end + within + lateness` exactly it is late.
///
/// - click c1 1:45; view 2:20 (wm 2:20);
/// - click c2 2:05: E(1:35:00.001) + 35m = 2:35 > 2:20 → counted (its window [1:00, 2:00) of
///   t − within has ended, not fired);
/// - buy 2:10: E(1:40) + 35m = 2:35 > 2:20 → counted; lookback [1:40, 2:10): c1, c2 → c2;
/// - view 2:35 (wm 2:35); b's click c3 2:00: E(1:30:00.001) + 35m = 2:35 → late; b's buy 2:12:
///   E(1:42) + 35m = 2:35 → late; b's buy 2:30: E(2:00) + 35m = 3:35 → counted, but b's only
///   anchor was late: no credit.
#[test]
fn reference_lateness_rules_at_their_edges() {
    let mut cfg = base_cfg(&[("h", "1h", None)]);
    cfg.strategy = Strategy::Max;
    cfg.interval = 1;
    cfg.max_out_of_orderness = "0s".into();
    cfg.allowed_lateness = "5m".into();
    cfg.metrics = vec![attr("lt", "30m", None, None)];
    let lines = [
        click("a", 105, "c1"),
        ev("z", 140, "view", ""),
        click("a", 125, "c2"),
        buy("a", 130),
        ev("z", 155, "view", ""),
        click("b", 120, "c3"),
        buy("b", 132),
        buy("b", 150),
    ];
    let r = outcome(&cfg, &lines);
    assert_eq!((r.counts.counted, r.counts.late), (6, 2));
    assert_eq!((r.attribution_late, r.anchor_rule_late), (2, 1));
    assert_eq!(
        r.late_lines,
        vec![lines[5].as_bytes().to_vec(), lines[6].as_bytes().to_vec()]
    );
    assert_eq!(
        r.rows,
        vec![
            brow("lt", None, "h", 120, 180, 1, 1),
            brow("lt", Some("c2"), "h", 120, 180, 1, 1),
        ]
    );
}

/// A sliding window: a credit lands in every window of the spec containing the anchor; the B
/// counts once per window.
#[test]
fn reference_sliding_windows_and_by_type_false() {
    let mut cfg = base_cfg(&[("s1h", "1h", Some("30m"))]);
    let mut m = attr("m", "1h", Some("any_touch"), None);
    m.by_type = Some(false);
    m.filter = None; // every event is a B
    cfg.metrics = vec![m];
    // the click at 0:40 is in [0:00, 1:00) and [0:30, 1:30); the view at 0:50 and the buy at
    // 0:55 follow it (the click itself follows nothing)
    let rows = rows_of(
        &cfg,
        &[click("a", 40, "c1"), ev("a", 50, "view", ""), buy("a", 55)],
    );
    let r = |dim: Option<(&str, &str)>, s: i64, e: i64| row("m", None, dim, "s1h", s, e, 1, 2);
    assert_eq!(
        rows,
        sorted(vec![
            r(None, 0, 60),
            r(Some(("campaign", "c1")), 0, 60),
            r(None, 30, 90),
            r(Some(("campaign", "c1")), 30, 90),
        ])
    );
}

/// The TOML the reference writes for the attribution keys.
#[test]
fn reference_attribution_toml_surface() {
    let mut cfg = base_cfg(&[("h", "1h", None)]);
    let mut m = attr("conv", "90m", Some("any_touch"), Some("conversion"));
    m.dimensions = Some(vec!["campaign".into()]);
    m.threshold = Some(Threshold::MinCount(2));
    cfg.metrics = vec![m, MetricCfg::new("plain")];
    let t = cfg.toml();
    let tail = &t[t.find("[[metrics]]").unwrap()..];
    assert_eq!(
        tail,
        r#"[[metrics]]
name = "conv"
filter = "buy"
dimensions = ["campaign"]
min_count = 2
after = "click"
within = "90m"
attribution = "any_touch"
window_on = "conversion"

[[metrics]]
name = "plain"
"#
    );
    let v: toml::Value = toml::from_str(&t).unwrap();
    assert_eq!(v["metrics"][0]["after"].as_str(), Some("click"));
    assert!(v["metrics"][1].get("within").is_none());
}

// ---------------------------------------------------------------------------------------------
// random configs and journeys

fn scale() -> u64 {
    std::env::var("ABACUS_FUZZ_SCALE")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(1)
        .max(1)
}

const WINDOWS: &[(&str, &str, Option<&str>)] = &[
    ("q15", "15m", None),
    ("h", "1h", None),
    ("t20", "20m", None),
    ("s30-10", "30m", Some("10m")),
    ("s2h-30", "2h", Some("30m")),
    ("d", "1d", None),
];

/// Multiples of the window sizes, and not (so `E_m(t − within) + within` differs from `E(t)`).
const WITHIN: &[&str] = &[
    "5m", "7m", "10m", "15m", "25m", "30m", "45m", "1h", "90m", "100m", "2h", "1d",
];

/// A random subset of `names`, in their order.
fn subset(rng: &mut Rng, names: &[String]) -> Vec<String> {
    names.iter().filter(|_| rng.chance(0.5)).cloned().collect()
}

/// A small random config with 1–3 metrics, most of them attribution metrics (every key of the
/// section at random), and a watermark, lateness and TTL that make boundaries happen on short
/// inputs.
fn attribution_random_cfg(rng: &mut Rng) -> Cfg {
    let mut windows: Vec<WinCfg> = Vec::new();
    for _ in 0..rng.range(1, 4) {
        let (name, size, slide) = *rng.pick(WINDOWS);
        if !windows.iter().any(|w| w.name == name) {
            windows.push(WinCfg {
                name: name.into(),
                size: size.into(),
                slide: slide.map(|x| x.into()),
            });
        }
    }
    let mut dims = Vec::new();
    if rng.chance(0.85) {
        dims.push(dimension("campaign", "camp"));
    }
    if rng.chance(0.4) {
        dims.push(dimension("src", "src"));
    }
    if rng.chance(0.15) {
        dims.push(DimCfg {
            name: "provider".into(),
            field: "u".into(),
            kind: DimKind::EmailDomain,
        });
    }
    let filters = vec![
        filter("click", vec![("e", Op::Eq(json!("click")))]),
        filter(
            "touch",
            vec![("e", Op::In(vec![json!("click"), json!("view")]))],
        ),
        filter("buy", vec![("e", Op::Eq(json!("buy")))]),
        filter("every", vec![]),
        filter("big", vec![("q", Op::Ge(Number::from(2)))]),
    ];
    let dim_names: Vec<String> = dims.iter().map(|d| d.name.clone()).collect();
    let win_names: Vec<String> = windows.iter().map(|w| w.name.clone()).collect();
    let mut metrics = Vec::new();
    for i in 0..rng.range(1, 4) {
        let mut m = MetricCfg::new(&format!("m{i}"));
        let attribution = rng.chance(0.85);
        if attribution {
            m.after = Some(
                rng.pick(&["click", "click", "click", "touch", "every", "buy"])
                    .to_string(),
            );
            m.filter = rng
                .pick(&[
                    Some("buy"),
                    Some("buy"),
                    Some("buy"),
                    None,
                    Some("big"),
                    Some("touch"),
                ])
                .map(|s| s.to_string());
            m.within = Some(rng.pick(WITHIN).to_string());
            m.attribution = rng
                .pick(&[
                    None,
                    Some("last_touch"),
                    Some("first_touch"),
                    Some("any_touch"),
                ])
                .map(|s| s.to_string());
            m.window_on = rng
                .pick(&[None, Some("anchor"), Some("conversion")])
                .map(|s| s.to_string());
        } else if rng.chance(0.5) {
            m.filter = Some(rng.pick(&["click", "buy", "big"]).to_string());
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
        m.by_type = *rng.pick(&[None, Some(true), Some(false)]);
        let r = rng.unit();
        m.threshold = if r < 0.5 {
            None
        } else if r < 0.8 {
            Some(Threshold::MinCount(rng.range(1, 4) as u64))
        } else {
            let value = match rng.below(4) {
                0 => Number::from(1),
                1 => Number::from(2),
                2 => Number::from(3),
                _ => Number::from_f64(2.5).unwrap(),
            };
            Some(Threshold::MinSum {
                field: "q".into(),
                value,
            })
        };
        metrics.push(m);
    }
    let mut cfg = Cfg {
        user: "u".into(),
        time: "t".into(),
        time_format: TimeFormat::Auto,
        event_type: "e".into(),
        event_id: if rng.chance(0.85) {
            Some("id".into())
        } else {
            None
        },
        ttl: rng.pick(&["10m", "30m", "1h", "2h", "24h"]).to_string(),
        strategy: if rng.chance(0.5) {
            Strategy::Max
        } else {
            Strategy::Median
        },
        sample: rng.range(1, 9) as usize,
        interval: rng.range(1, 6) as usize,
        max_out_of_orderness: rng.pick(&["0s", "5m", "10m", "30m"]).to_string(),
        allowed_lateness: rng
            .pick(&["0s", "5m", "15m", "1h", "unbounded"])
            .to_string(),
        max_line_bytes: 1024,
        dims,
        windows,
        filters,
        metrics,
    };
    if rng.chance(0.35) {
        tighten(&mut cfg, rng);
    }
    cfg
}

/// Makes the generalised lateness rules bite often: one window spec, a `within` that is not a
/// multiple of its size (so `E_m(t − within) + within` is often earlier than `E(t)`), a watermark
/// that follows the largest time closely, a finite lateness.
fn tighten(cfg: &mut Cfg, rng: &mut Rng) {
    // for a tumbling size S and within = q·S + ρ, a B at ρ' < ρ into its window is late by the B
    // rule a whole S − ρ before the general rule: the band is widest for large S
    let (name, size, slide) =
        *rng.pick(&[WINDOWS[1], WINDOWS[1], WINDOWS[4], WINDOWS[0], WINDOWS[2]]);
    cfg.windows = vec![WinCfg {
        name: name.into(),
        size: size.into(),
        slide: slide.map(|x| x.into()),
    }];
    for m in &mut cfg.metrics {
        m.windows = None;
        if m.after.is_some() {
            m.within = Some(rng.pick(&["7m", "25m", "45m", "50m", "100m"]).to_string());
        }
    }
    cfg.strategy = Strategy::Max;
    cfg.interval = rng.range(1, 3) as usize;
    cfg.max_out_of_orderness = rng.pick(&["0s", "5m"]).to_string();
    cfg.allowed_lateness = rng.pick(&["0s", "5m", "15m"]).to_string();
}

/// A short random stream of journeys: few users, clicks (with campaigns, often several at one
/// time), views, buys (with a quantity `q`), on a 5-minute grid (so `within` boundaries and ties
/// happen) with a few ±1 ms; arrival order: mostly forwards, some events hours in the past or
/// ahead; re-deliveries (duplicates when the config has event ids and the record lives), a few
/// rejected lines; some arrivals just beyond `max_out_of_orderness + allowed_lateness` behind the
/// clock, where the generalised rules bite. Sometimes it starts just before midnight.
fn journeys_input(rng: &mut Rng, cfg: &Cfg) -> Vec<u8> {
    // arrivals this far behind the clock are near the edge of lateness (general or attribution)
    let edge = naive::dur(&cfg.max_out_of_orderness)
        + if cfg.allowed_lateness == "unbounded" {
            0
        } else {
            naive::dur(&cfg.allowed_lateness)
        };
    let all_users = ["a", "b", "c@x.org", "d@Y.org"];
    let n_users = rng.range(1, 5) as usize;
    let n = rng.range(6, 55);
    let mut clock = if rng.chance(0.3) {
        T0 + 22 * HOUR + rng.range(0, 24) * 5 * MIN
    } else {
        T0 + rng.range(0, 24) * 5 * MIN
    };
    let mut lines: Vec<String> = Vec::new();
    for _ in 0..n {
        let r = rng.unit();
        if r < 0.1 && !lines.is_empty() {
            let i = rng.below(lines.len() as u64) as usize;
            lines.push(lines[i].clone()); // a re-delivery
            continue;
        }
        if r < 0.13 {
            lines.push(format!(r#"{{"u":"a","t":{}}}"#, clock)); // rejected: no type
            continue;
        }
        clock += *rng.pick(&[0, 0, MIN, 5 * MIN, 5 * MIN, 10 * MIN, 15 * MIN]);
        let r = rng.unit();
        let t = if r < 0.7 {
            clock
                + *rng.pick(&[
                    0,
                    0,
                    0,
                    -5 * MIN,
                    -10 * MIN,
                    -15 * MIN,
                    -20 * MIN,
                    -30 * MIN,
                    -45 * MIN,
                    -HOUR,
                    5 * MIN,
                ])
        } else if r < 0.78 {
            clock + *rng.pick(&[-1, 1])
        } else if r < 0.93 {
            clock - edge - rng.range(0, 61) * MIN + *rng.pick(&[0, 0, 0, -1, 1])
        } else if r < 0.98 {
            clock - rng.range(1, 5) * HOUR + *rng.pick(&[0, 0, -5 * MIN, 5 * MIN])
        } else {
            // ahead of the clock: the watermark jumps, what follows is late for a while
            clock + rng.range(2, 9) * 5 * MIN
        };
        let user = all_users[rng.below(n_users as u64) as usize];
        let r = rng.unit();
        let e = if r < 0.4 {
            "click"
        } else if r < 0.75 {
            "buy"
        } else {
            "view"
        };
        let mut fields: Vec<(String, String)> = vec![
            ("u".into(), json_str(user, false)),
            ("t".into(), t.to_string()),
            ("e".into(), json_str(e, false)),
        ];
        let r = rng.unit();
        if r < 0.65 {
            fields.push(("id".into(), json_str(&rng.range(1, 13).to_string(), false)));
        } else if r < 0.75 {
            fields.push(("id".into(), rng.range(1, 13).to_string()));
        }
        if e != "buy" || rng.chance(0.2) {
            if rng.chance(0.85) {
                let c = *rng.pick(&[
                    "\"c1\"", "\"c2\"", "\"c2\"", "\"c3\"", "\"C1\"", "\"\"", "null",
                ]);
                fields.push(("camp".into(), c.into()));
            } else if rng.chance(0.05) {
                fields.push(("camp".into(), "5".into())); // rejected when `campaign` is a dimension
            }
        }
        if rng.chance(0.4) {
            fields.push((
                "src".into(),
                json_str(rng.pick::<&str>(&["mail", "ads", "Ads"]), false),
            ));
        }
        if (e == "buy" && rng.chance(0.8)) || rng.chance(0.1) {
            fields.push((
                "q".into(),
                rng.pick(&["1", "2", "3", "0.5", "1.5", "-1", "\"2\""])
                    .to_string(),
            ));
        }
        lines.push(event_line(&mut fields, rng));
    }
    let mut out = Vec::new();
    for l in lines {
        out.extend_from_slice(l.as_bytes());
        out.push(b'\n');
    }
    out
}

/// The generator of random case `seed` (its config, then its input).
fn case(seed: u64) -> (Cfg, Vec<u8>) {
    let mut rng = Rng(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) ^ 0x00A7_781B_0710);
    let cfg = attribution_random_cfg(&mut rng);
    let input = journeys_input(&mut rng, &cfg);
    (cfg, input)
}

/// (metric, event type, dimension, value, window, start, end) → (unique users, events).
type Cells = BTreeMap<
    (
        String,
        Option<String>,
        Option<String>,
        Option<String>,
        String,
        i64,
        i64,
    ),
    (u64, u64),
>;

fn cells(rows: &[Row]) -> Cells {
    rows.iter()
        .map(|r| {
            (
                (
                    r.metric.clone(),
                    r.event_type.clone(),
                    r.dimension.clone(),
                    r.value.clone(),
                    r.window.clone(),
                    r.start_ms,
                    r.end_ms,
                ),
                (r.unique_users, r.events),
            )
        })
        .collect()
}

/// How long after its window's end a cell of metric `m` fires (`None`: unbounded lateness, it
/// fires at the end of the input): `within + allowed_lateness` for an anchor-windowed attribution
/// metric, `allowed_lateness` for every other.
fn fire_delay(cfg: &Cfg, m: &MetricCfg) -> Option<i64> {
    if cfg.allowed_lateness == "unbounded" {
        return None;
    }
    let l = naive::dur(&cfg.allowed_lateness);
    if m.after.is_some() && m.on_anchor() {
        Some(m.within_ms() + l)
    } else {
        Some(l)
    }
}

/// "Every cell is final when it fires": at every move of the watermark, each cell whose window has
/// fired under it holds, over the events counted so far, what it holds at the end (or is absent
/// both times). Returns how many fired cells were compared.
fn check_cells_final_when_fired(cfg: &Cfg, r: &naive::Outcome, what: &str) -> usize {
    let metrics = naive::effective_metrics(cfg);
    let delay: BTreeMap<String, Option<i64>> = metrics
        .iter()
        .map(|m| (m.name.clone(), fire_delay(cfg, m)))
        .collect();
    let fin = cells(&r.rows);
    let mut compared = 0;
    for &(wm, n) in &r.wm_steps {
        let now = cells(&naive::aggregate(cfg, &r.counted[..n]));
        let keys: std::collections::BTreeSet<_> = fin.keys().chain(now.keys()).collect();
        for k in keys {
            let Some(d) = delay[&k.0] else { continue };
            if wm >= k.6 + d {
                compared += 1;
                assert_eq!(
                    now.get(k),
                    fin.get(k),
                    "{what}: cell {k:?} fired at watermark {wm} (after {n} counted events) \
                     but changed later\n{}",
                    cfg.toml()
                );
            }
        }
    }
    compared
}

/// What the random cases exercise, summed.
#[derive(Debug, Default)]
struct Coverage {
    counts: Counts,
    attribution_late: u64,
    anchor_rule_late: u64,
    attribution_rows: u64,
    dimension_rows: u64,
    untyped_rows: u64,
    events_above_users: u64,
    threshold_rows: u64,
    fired_cells: usize,
}

impl Coverage {
    fn add(&mut self, cfg: &Cfg, r: &naive::Outcome) {
        self.counts.lines += r.counts.lines;
        self.counts.counted += r.counts.counted;
        self.counts.duplicates += r.counts.duplicates;
        self.counts.late += r.counts.late;
        self.counts.rejected += r.counts.rejected;
        self.attribution_late += r.attribution_late;
        self.anchor_rule_late += r.anchor_rule_late;
        for row in &r.rows {
            let m = cfg.metrics.iter().find(|m| m.name == row.metric).unwrap();
            if m.after.is_none() {
                continue;
            }
            self.attribution_rows += 1;
            self.dimension_rows += row.dimension.is_some() as u64;
            self.untyped_rows += row.event_type.is_none() as u64;
            self.events_above_users += (row.events > row.unique_users) as u64;
            self.threshold_rows += m.threshold.is_some() as u64;
        }
    }

    fn assert_enough(&self, cases: u64) {
        let c = &self.counts;
        assert!(
            c.late > 2 * cases
                && c.duplicates > cases / 2
                && c.rejected > cases / 2
                && self.attribution_late > cases / 5
                && self.anchor_rule_late > cases / 40
                && self.attribution_rows > 5 * cases
                && self.dimension_rows > 2 * cases
                && self.untyped_rows > cases
                && self.events_above_users > 2 * cases
                && self.threshold_rows > cases,
            "the random cases exercise too little: {self:?}"
        );
    }
}

/// The random cases through the reference alone: every cell is final when it fires (so the
/// generalised lateness rules suffice), and the cases cover what they are meant to.
#[test]
fn reference_cells_are_final_when_they_fire() {
    let cases = 1000 * scale();
    let mut cov = Coverage::default();
    for seed in 0..cases {
        let (cfg, input) = case(seed);
        let r = naive::reference(&cfg, std::slice::from_ref(&input));
        cov.add(&cfg, &r);
        cov.fired_cells += check_cells_final_when_fired(&cfg, &r, &format!("seed {seed}"));
    }
    println!("{cov:?}");
    cov.assert_enough(cases);
    assert!(cov.fired_cells as u64 > 10 * cases, "{cov:?}");
}

/// A hand-made stream where the generalised rules are needed: without them a cell that fired
/// would change. (Checks that the finality check itself can fail.)
#[test]
fn reference_finality_check_detects_a_missing_rule() {
    // the late buy 2:10 of reference_late_anchor_and_late_conversion, counted as if only the
    // general rule applied: its anchor's cell [1:00, 2:00) fired at 2:35
    let mut cfg = base_cfg(&[("h", "1h", None)]);
    cfg.strategy = Strategy::Max;
    cfg.interval = 1;
    cfg.max_out_of_orderness = "0s".into();
    cfg.allowed_lateness = "5m".into();
    cfg.metrics = vec![attr("lt", "30m", None, None)];
    let lines = [
        click("a", 105, "c1"),
        ev("z", 160, "view", ""),
        buy("a", 130),
    ];
    let r = outcome(&cfg, &lines);
    assert_eq!(r.counts.late, 1);
    let mut forged = r.clone();
    forged.counted = naive::split_lines(&[input(&lines)])
        .iter()
        .map(|l| naive::parse_line(&cfg, l).unwrap())
        .collect();
    forged.rows = naive::aggregate(&cfg, &forged.counted);
    assert_eq!(
        forged.rows,
        vec![
            brow("lt", None, "h", 60, 120, 1, 1),
            brow("lt", Some("c1"), "h", 60, 120, 1, 1),
        ]
    );
    let caught = std::panic::catch_unwind(|| check_cells_final_when_fired(&cfg, &forged, "forged"));
    assert!(caught.is_err());
    check_cells_final_when_fired(&cfg, &r, "real");
}

/// On the random cases, per attribution metric: any touch credits a superset of last and first
/// touch (so every cell has at least as many users and events), and with `window_on =
/// "conversion"` the total rows do not depend on the attribution.
#[test]
fn reference_attributions_compare_as_they_must() {
    let (mut strict, mut conv_totals) = (0, 0);
    for seed in 0..500 * scale() {
        let (cfg, input) = case(seed);
        for (i, m) in cfg.metrics.iter().enumerate() {
            if m.after.is_none() {
                continue;
            }
            // the same config with metric i under each attribution: the lateness rules of the
            // other metrics stay; last touch may make more lines late, so compare over the lines
            // the last-touch config counts, with unbounded lateness
            let with = |how: &str| {
                let mut c = cfg.clone();
                c.metrics[i].attribution = Some(how.into());
                c
            };
            let counted = {
                let r = naive::reference(&with("last_touch"), std::slice::from_ref(&input));
                r.counted
            };
            let rows = |how: &str| -> Cells {
                let c = with(how);
                cells(
                    &naive::aggregate(&c, &counted)
                        .into_iter()
                        .filter(|r| r.metric == m.name)
                        .collect::<Vec<_>>(),
                )
            };
            let (any, last, first) = (rows("any_touch"), rows("last_touch"), rows("first_touch"));
            for narrow in [&last, &first] {
                for (k, (uu, n)) in narrow {
                    let (auu, an) = any
                        .get(k)
                        .unwrap_or_else(|| panic!("seed {seed}: {k:?} not under any touch"));
                    assert!(uu <= auu && n <= an, "seed {seed}: {k:?}");
                    if (uu, n) != (auu, an) {
                        strict += 1;
                    }
                }
            }
            if !m.on_anchor() {
                let totals = |c: &Cells| -> Cells {
                    c.iter()
                        .filter(|(k, _)| k.2.is_none())
                        .map(|(k, v)| (k.clone(), *v))
                        .collect()
                };
                assert_eq!(totals(&any), totals(&last), "seed {seed}");
                assert_eq!(totals(&first), totals(&last), "seed {seed}");
                conv_totals += totals(&last).len();
            }
        }
    }
    assert!(strict > 50 && conv_totals > 100, "{strict} {conv_totals}");
}

/// The generator's configs cover every attribution key and value.
#[test]
fn reference_random_configs_cover_the_surface() {
    let mut seen: std::collections::BTreeSet<&str> = Default::default();
    for seed in 0..300 {
        let t = case(seed).0.toml();
        for k in [
            "after = \"click\"",
            "after = \"touch\"",
            "after = \"every\"",
            "after = \"buy\"",
            "attribution = \"last_touch\"",
            "attribution = \"first_touch\"",
            "attribution = \"any_touch\"",
            "window_on = \"anchor\"",
            "window_on = \"conversion\"",
            "within = \"1d\"",
            "within = \"5m\"",
            "min_count = ",
            "min_sum = ",
            "by_type = false",
            "dimensions = []",
            "windows = [",
            "slide = ",
            "allowed_lateness = \"unbounded\"",
            "allowed_lateness = \"0s\"",
            "interval = 1\n",
        ] {
            if t.contains(k) {
                seen.insert(k);
            }
        }
    }
    assert_eq!(seen.len(), 20, "{seen:?}");
}

// ---------------------------------------------------------------------------------------------
// the engine

/// Seeded random attribution configs over short random journeys, each against the reference with
/// `--threads` 1, 2 and 4: rows, summary counters, late lines and reject reasons.
#[test]
fn engine_random_attribution_journeys() {
    const WORKERS: u64 = 2;
    let cases = 200 * scale();
    let s = Scratch::new();
    let base = s.dir.path();
    let one_case = |seed: u64| -> (Cfg, naive::Outcome) {
        let (cfg, input) = case(seed);
        let dir = base.join(format!("case-{seed}"));
        let config = cfg.write(&dir);
        let inp = dir.join("events.ndjson");
        std::fs::write(&inp, &input).unwrap();
        let r = naive::reference(&cfg, std::slice::from_ref(&input));
        let context = || {
            format!(
                "--- config.toml ---\n{}--- events.ndjson ---\n{}",
                cfg.toml(),
                String::from_utf8_lossy(&input)
            )
        };
        for threads in [1, 2, 4] {
            let out_dir = dir.join(format!("out-{threads}"));
            let o = common::run_raw(std::slice::from_ref(&inp), &config, &out_dir, threads);
            assert!(
                o.status.success(),
                "seed {seed}, --threads {threads}: abacus exited with {:?}\nstderr:\n{}\n{}",
                o.status,
                String::from_utf8_lossy(&o.stderr),
                context()
            );
            let out = common::read_output(&out_dir);
            if let Err(e) =
                diff_against_reference(&out, &r, &format!("seed {seed}, --threads {threads}"))
            {
                panic!("{e}\n{}", context());
            }
        }
        let _ = std::fs::remove_dir_all(&dir);
        (cfg, r)
    };
    let mut cov = Coverage::default();
    for (cfg, r) in parallel_cases(cases, WORKERS, one_case) {
        cov.add(&cfg, &r);
    }
    cov.assert_enough(cases);
}

/// The config errors the contract names: `within`, `attribution` and `window_on` without `after`;
/// `after` without `within`; `within` not > 0.
#[test]
fn engine_refuses_invalid_attribution_keys() {
    let base = base_cfg(&[("h", "1h", None)]);
    let mut bad: Vec<(&str, MetricCfg)> = Vec::new();
    let plain = || {
        let mut m = MetricCfg::new("m");
        m.filter = Some("buy".into());
        m
    };
    let mut m = plain();
    m.within = Some("1h".into());
    bad.push(("within without after", m));
    let mut m = plain();
    m.attribution = Some("first_touch".into());
    bad.push(("attribution without after", m));
    let mut m = plain();
    m.window_on = Some("conversion".into());
    bad.push(("window_on without after", m));
    let mut m = plain();
    m.after = Some("click".into());
    bad.push(("after without within", m));
    let mut m = attr("m", "0s", None, None);
    m.within = Some("0s".into());
    bad.push(("within = 0s", m));
    let lines = [click("a", 0, "c1"), buy("a", 10)];
    let s = Scratch::new();
    let inp = s.write("events.ndjson", input(&lines));
    for (what, m) in bad {
        let mut cfg = base.clone();
        cfg.metrics = vec![m];
        let dir = s.path(&what.replace(' ', "_"));
        let config = cfg.write(&dir);
        let o = common::run_raw(std::slice::from_ref(&inp), &config, &dir.join("out"), 1);
        assert!(
            !o.status.success(),
            "{what}: accepted\n{}\nstderr:\n{}",
            cfg.toml(),
            String::from_utf8_lossy(&o.stderr)
        );
        assert!(
            !dir.join("out").join("_SUCCESS").exists(),
            "{what}: _SUCCESS written"
        );
    }
}
