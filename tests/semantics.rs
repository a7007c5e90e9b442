//! Small hand-written cases for the clauses of docs/SEMANTICS.md, each with its expected rows and
//! counters written out by hand (no reference implementation involved).
//!
//! Times are written relative to `T0` = 2024-05-01T00:00:00Z. With `strategy = "max"`,
//! `interval = 1` and `max_out_of_orderness = "0s"` the watermark an event sees is simply the largest
//! time among the accepted events before it, which keeps the hand computation easy to follow.

mod common;

use common::{
    Counts, DAY, HOUR, MIN, Output, Row, Scratch, T0, assert_rows_eq, dim, ndjson, run_case,
    run_case_raw, run_case_with, sorted, total,
};

const H: i64 = HOUR;

/// `[fields]` with `u`, `t`, `e` (and `id` for dedup).
const FIELDS: &str = "[fields]\nuser = \"u\"\ntime = \"t\"\nevent_type = \"e\"\n";
const FIELDS_ID: &str =
    "[fields]\nuser = \"u\"\ntime = \"t\"\nevent_type = \"e\"\nevent_id = \"id\"\n";
const HOURLY: &str = "\n[[windows]]\nname = \"hourly\"\nsize = \"1h\"\n";
/// The watermark is the largest time so far, updated after every event.
const WM_MAX_EVERY_EVENT: &str =
    "\n[watermark]\nstrategy = \"max\"\ninterval = 1\nmax_out_of_orderness = \"0s\"\n";

fn ev(u: &str, t: i64, e: &str) -> String {
    format!(r#"{{"u":"{u}","t":{t},"e":"{e}"}}"#)
}

fn evi(u: &str, t: i64, e: &str, id: &str) -> String {
    format!(r#"{{"u":"{u}","t":{t},"e":"{e}","id":"{id}"}}"#)
}

fn lines(ls: &[String]) -> Vec<u8> {
    ndjson(&ls.iter().map(|s| s.as_str()).collect::<Vec<_>>())
}

fn counts(lines: u64, counted: u64, duplicates: u64, late: u64, rejected: u64) -> Counts {
    Counts {
        lines,
        counted,
        duplicates,
        late,
        rejected,
    }
}

#[track_caller]
fn check(out: &Output, expected_rows: Vec<Row>, expected: Counts) {
    assert_rows_eq(&out.rows, &sorted(expected_rows), "rows");
    assert_eq!(out.counts, expected, "summary counters");
}

// ---------------------------------------------------------------------------------------------
// windows

#[test]
fn tumbling_window_edges() {
    let cfg = format!("{FIELDS}{HOURLY}");
    let input = lines(&[
        ev("a", T0, "x"),         // exactly at the start
        ev("b", T0 + H - 1, "x"), // last ms of [T0, T0+1h)
        ev("c", T0 + H, "x"),     // exactly at the end: the next window
        ev("d", T0 + 2 * H - 1, "x"),
    ]);
    let out = run_case(&cfg, &input);
    check(
        &out,
        vec![
            total("x", "hourly", T0, T0 + H, 2, 2),
            total("x", "hourly", T0 + H, T0 + 2 * H, 2, 2),
        ],
        counts(4, 4, 0, 0, 0),
    );
}

#[test]
fn windows_align_to_the_epoch() {
    let cfg = format!(
        "{FIELDS}\n[[windows]]\nname = \"daily\"\nsize = \"1d\"\n\n[[windows]]\nname = \"two-h\"\nsize = \"2h\"\n\n[[windows]]\nname = \"seven-min\"\nsize = \"7m\"\n\n[[windows]]\nname = \"90m\"\nsize = \"90m\"\n"
    );
    let input = lines(&[
        ev("a", T0 + 13 * H + 30 * MIN, "x"),
        ev("b", T0 - 1, "x"), // 2024-04-30T23:59:59.999Z
        ev("c", T0 + H, "x"),
    ]);
    let out = run_case(&cfg, &input);
    check(
        &out,
        vec![
            // days start at UTC midnight
            total("x", "daily", T0 - DAY, T0, 1, 1),
            total("x", "daily", T0, T0 + DAY, 2, 2),
            // 2h windows start at even UTC hours
            total("x", "two-h", T0 - 2 * H, T0, 1, 1),
            total("x", "two-h", T0, T0 + 2 * H, 1, 1),
            total("x", "two-h", T0 + 12 * H, T0 + 14 * H, 1, 1),
            // 7m windows are aligned to the epoch, not to midnight: T0 is 2 min into its window
            total("x", "seven-min", T0 - 2 * MIN, T0 + 5 * MIN, 1, 1),
            total("x", "seven-min", T0 + 54 * MIN, T0 + 61 * MIN, 1, 1),
            total("x", "seven-min", T0 + 810 * MIN, T0 + 817 * MIN, 1, 1), // a starts exactly at T0+13h30m
            // a day is 16 × 90m
            total("x", "90m", T0 - 90 * MIN, T0, 1, 1),
            total("x", "90m", T0, T0 + 90 * MIN, 1, 1),
            total("x", "90m", T0 + 810 * MIN, T0 + 900 * MIN, 1, 1),
        ],
        counts(3, 3, 0, 0, 0),
    );
}

#[test]
fn sliding_windows() {
    let cfg = format!(
        "{FIELDS}\n[[windows]]\nname = \"3h\"\nsize = \"3h\"\nslide = \"1h\"\n\n[[windows]]\nname = \"tumbling\"\nsize = \"1h\"\nslide = \"1h\"\n"
    );
    let input = lines(&[
        ev("a", T0 + 2 * H + 30 * MIN, "x"), // in the 3h windows starting 00:00, 01:00, 02:00
        ev("b", T0 + 3 * H, "x"),            // in the 3h windows starting 01:00, 02:00, 03:00
    ]);
    let out = run_case(&cfg, &input);
    check(
        &out,
        vec![
            total("x", "3h", T0, T0 + 3 * H, 1, 1),
            total("x", "3h", T0 + H, T0 + 4 * H, 2, 2),
            total("x", "3h", T0 + 2 * H, T0 + 5 * H, 2, 2),
            total("x", "3h", T0 + 3 * H, T0 + 6 * H, 1, 1),
            // slide == size is tumbling
            total("x", "tumbling", T0 + 2 * H, T0 + 3 * H, 1, 1),
            total("x", "tumbling", T0 + 3 * H, T0 + 4 * H, 1, 1),
        ],
        counts(2, 2, 0, 0, 0),
    );
}

#[test]
fn sliding_24h_by_1h_has_24_windows() {
    let cfg =
        format!("{FIELDS}\n[[windows]]\nname = \"last-24h\"\nsize = \"24h\"\nslide = \"1h\"\n");
    let out = run_case(&cfg, &lines(&[ev("a", T0 + 2 * H + 30 * MIN, "x")]));
    // windows starting T0-21h, T0-20h, …, T0+2h
    let expected: Vec<Row> = (0..24)
        .map(|k| {
            total(
                "x",
                "last-24h",
                T0 - 21 * H + k * H,
                T0 + 3 * H + k * H,
                1,
                1,
            )
        })
        .collect();
    check(&out, expected, counts(1, 1, 0, 0, 0));
}

// ---------------------------------------------------------------------------------------------
// counting and keys

#[test]
fn unique_users_versus_events() {
    let cfg = format!("{FIELDS}{HOURLY}");
    let input = ndjson(&[
        &ev("a", T0, "open"),
        &ev("a", T0 + MIN, "open"),
        &ev("a", T0 + 2 * MIN, "open"),
        &ev("b", T0 + 3 * MIN, "open"),
        &ev("a", T0 + 4 * MIN, "click"),
        // the identity is the unescaped string: "jos\u00e9" is "josé"; "José" is another user
        r#"{"u":"josé","t":1714521600000,"e":"view"}"#,
        r#"{"u":"jos\u00e9","t":1714521600001,"e":"view"}"#,
        r#"{"u":"José","t":1714521600002,"e":"view"}"#,
    ]);
    let out = run_case(&cfg, &input);
    check(
        &out,
        vec![
            total("open", "hourly", T0, T0 + H, 2, 4),
            total("click", "hourly", T0, T0 + H, 1, 1),
            total("view", "hourly", T0, T0 + H, 2, 3),
        ],
        counts(8, 8, 0, 0, 0),
    );
}

const CAMPAIGNS_CSV: &str = "key,value\nm1,camp-A\nm2,camp-A\nm3,camp-B\nm4,camp-C\n";
const DIMS: &str = "\n[[dimensions]]\nname = \"provider\"\nfield = \"u\"\nextract = \"email_domain\"\n\n[[dimensions]]\nname = \"campaign\"\nfield = \"m\"\nlookup = \"campaigns.csv\"\n\n[[dimensions]]\nname = \"browser\"\nfield = \"b\"\n";

#[test]
fn fan_out_to_total_and_each_present_dimension() {
    let cfg = format!("{FIELDS}{DIMS}{HOURLY}");
    let input = ndjson(&[
        r#"{"u":"a@X.com","t":1714521600000,"e":"open","b":"chrome","m":"m1"}"#,
        r#"{"u":"b@x.COM","t":1714521600000,"e":"open","b":"firefox","m":"m2"}"#,
        r#"{"u":"a@X.com","t":1714521600000,"e":"open","b":"chrome","m":"m9"}"#, // lookup miss
        r#"{"u":"c@y.org","t":1714521600000,"e":"open","m":""}"#,                // no b; empty m
        r#"{"u":"d@y.org","t":1714521600000,"e":"open","b":null,"m":null}"#,     // nulls
        r#"{"u":"noat","t":1714521600000,"e":"open","b":"","m":"m3"}"#, // no provider; empty b
        r#"{"u":"trail@","t":1714521600000,"e":"open","b":"chrome"}"#,  // nothing after @
        r#"{"u":"x@a@Y.ORG","t":1714521600000,"e":"open"}"#,            // the last @ counts
    ]);
    let out = run_case_with(&cfg, &input, &[("campaigns.csv", CAMPAIGNS_CSV)]);
    let w = |d: &str, v: &str, uu: u64, n: u64| dim("open", d, v, "hourly", T0, T0 + H, uu, n);
    check(
        &out,
        vec![
            total("open", "hourly", T0, T0 + H, 7, 8),
            w("provider", "x.com", 2, 3),
            w("provider", "y.org", 3, 3),
            w("browser", "chrome", 2, 3),
            w("browser", "firefox", 1, 1),
            w("campaign", "camp-A", 2, 2),
            w("campaign", "camp-B", 1, 1),
        ],
        counts(8, 8, 0, 0, 0),
    );
}

#[test]
fn email_domain_is_ascii_lowercased() {
    let cfg = format!(
        "{FIELDS}\n[[dimensions]]\nname = \"provider\"\nfield = \"u\"\nextract = \"email_domain\"\n{HOURLY}"
    );
    let input = ndjson(&[
        r#"{"u":"A@Gmail.COM","t":1714521600000,"e":"x"}"#,
        r#"{"u":"b@gmail.com","t":1714521600000,"e":"x"}"#,
        r#"{"u":"c@GMAIL.com","t":1714521600000,"e":"x"}"#,
        r#"{"u":"A@gmail.com","t":1714521600000,"e":"x"}"#, // another user than A@Gmail.COM
        r#"{"u":"d@ÉCOLE.Fr","t":1714521600000,"e":"x"}"#,  // only ASCII letters are lowercased
    ]);
    let out = run_case(&cfg, &input);
    check(
        &out,
        vec![
            total("x", "hourly", T0, T0 + H, 5, 5),
            dim("x", "provider", "gmail.com", "hourly", T0, T0 + H, 4, 4),
            dim("x", "provider", "École.fr", "hourly", T0, T0 + H, 1, 1),
        ],
        counts(5, 5, 0, 0, 0),
    );
}

// ---------------------------------------------------------------------------------------------
// duplicates

#[test]
fn duplicate_ttl_boundary() {
    let cfg = format!(
        "{FIELDS_ID}\n[dedup]\nttl = \"1h\"\n{WM_MAX_EVERY_EVENT}allowed_lateness = \"unbounded\"\n{HOURLY}"
    );
    let input = ndjson(&[
        // (wm this event sees) → outcome
        &evi("u", T0, "x", "1"),             // −∞: counted; expiry T0+1h
        &evi("v", T0 + H - 1, "x", "x"),     // T0: counted
        &evi("u", T0, "x", "1"),             // T0+1h−1 < expiry: duplicate
        &evi("v", T0 + H, "x", "y"),         // counted
        &evi("u", T0, "x", "1"), // T0+1h = expiry: counted again; expiry max(T0, T0+1h)+1h = T0+2h
        &evi("u", T0, "x", "1"), // T0+1h: duplicate
        &evi("w", T0 + 2 * H - 1, "x", "z"), // counted
        &evi("u", T0, "x", "1"), // T0+2h−1: duplicate
        &evi("w", T0 + 2 * H, "x", "z2"), // counted
        &evi("u", T0, "x", "1"), // T0+2h: counted again
        &evi("v", T0, "x", "1"), // another user, same id: counted
        &ev("q", T0 + 2 * H, "x"), // no id: never a duplicate
        &ev("q", T0 + 2 * H, "x"),
        r#"{"u":"r","t":1714528800000,"e":"x","id":null}"#, // id null: never a duplicate
        r#"{"u":"r","t":1714528800000,"e":"x","id":null}"#,
    ]);
    let out = run_case(&cfg, &input);
    check(
        &out,
        vec![
            total("x", "hourly", T0, T0 + H, 2, 5), // u ×3 (1st, 5th, 10th line), v ×2
            total("x", "hourly", T0 + H, T0 + 2 * H, 2, 2), // v, w
            total("x", "hourly", T0 + 2 * H, T0 + 3 * H, 3, 5), // w, q ×2, r ×2
        ],
        counts(15, 12, 3, 0, 0),
    );
}

#[test]
fn integer_ids_are_ids() {
    let cfg = format!("{FIELDS_ID}{HOURLY}");
    let input = ndjson(&[
        r#"{"u":"a","t":1714521600000,"e":"x","id":17}"#,
        r#"{"u":"a","t":1714521600000,"e":"x","id":17}"#,
        r#"{"u":"a","t":1714521600000,"e":"x","id":18}"#,
    ]);
    let out = run_case(&cfg, &input);
    check(
        &out,
        vec![total("x", "hourly", T0, T0 + H, 1, 2)],
        counts(3, 2, 1, 0, 0),
    );
}

#[test]
fn no_event_id_field_means_no_dedup() {
    let cfg = format!("{FIELDS}{HOURLY}");
    let line = r#"{"u":"a","t":1714521600000,"e":"x","id":"same"}"#;
    let out = run_case(&cfg, &ndjson(&[line, line, line]));
    check(
        &out,
        vec![total("x", "hourly", T0, T0 + H, 1, 3)],
        counts(3, 3, 0, 0, 0),
    );
}

#[test]
fn duplicate_check_comes_before_lateness_and_late_events_are_not_recorded() {
    let cfg = format!(
        "{FIELDS_ID}\n[dedup]\nttl = \"24h\"\n{WM_MAX_EVERY_EVENT}allowed_lateness = \"0s\"\n{HOURLY}"
    );
    let l4 = evi("w", T0 + 30 * MIN, "x", "3");
    let input = ndjson(&[
        &evi("u", T0, "x", "1"),         // counted; expiry T0+24h
        &evi("v", T0 + 3 * H, "x", "2"), // counted
        &evi("u", T0, "x", "1"),         // would be late, but the record is live: duplicate
        &l4,                             // late (wm T0+3h ≥ T0+1h): not recorded
        &l4,                             // late again, not a duplicate
        &ev("x", T0 + 3 * H + 1, "x"),
    ]);
    let out = run_case(&cfg, &input);
    check(
        &out,
        vec![
            total("x", "hourly", T0, T0 + H, 1, 1),
            total("x", "hourly", T0 + 3 * H, T0 + 4 * H, 2, 2),
        ],
        counts(6, 3, 1, 2, 0),
    );
    assert_eq!(String::from_utf8_lossy(&out.late), format!("{l4}\n{l4}\n"));
}

#[test]
fn historical_redelivery_is_caught() {
    // expiry = max(event time, wm when first seen) + ttl: a years-old event's copies arriving close
    // together are duplicates, although its own time + ttl passed long ago
    let cfg = format!(
        "{FIELDS_ID}\n[dedup]\nttl = \"24h\"\n{WM_MAX_EVERY_EVENT}allowed_lateness = \"unbounded\"\n{HOURLY}"
    );
    let old = r#"{"u":"old","t":"2019-05-01T12:00:00Z","e":"x","id":"9"}"#;
    let input = ndjson(&[
        &evi("a", T0, "x", "1"),
        &evi("b", T0 + H, "x", "2"),
        old, // wm T0+1h: counted; expiry T0+1h+24h
        &evi("c", T0 + H, "x", "3"),
        old, // wm T0+1h: duplicate
    ]);
    let out = run_case(&cfg, &input);
    const OLD: i64 = 1_556_712_000_000; // 2019-05-01T12:00:00Z
    check(
        &out,
        vec![
            total("x", "hourly", OLD, OLD + H, 1, 1),
            total("x", "hourly", T0, T0 + H, 1, 1),
            total("x", "hourly", T0 + H, T0 + 2 * H, 2, 2),
        ],
        counts(5, 4, 1, 0, 0),
    );
}

// ---------------------------------------------------------------------------------------------
// lateness

#[test]
fn lateness_boundary() {
    let cfg = format!("{FIELDS}{WM_MAX_EVERY_EVENT}allowed_lateness = \"30m\"\n{HOURLY}");
    let late = ev("d", T0 + 20 * MIN, "x");
    let input = ndjson(&[
        &ev("a", T0 + H + 30 * MIN - 1, "x"),
        &ev("b", T0 + 10 * MIN, "x"), // wm = T0+1h30m−1 = end + lateness − 1 ms: not late
        &ev("c", T0 + H + 30 * MIN, "x"),
        &late,                 // wm = T0+1h30m = end + lateness: late
        &ev("e", T0 + H, "x"), // its window [T0+1h, T0+2h) is open
    ]);
    let out = run_case(&cfg, &input);
    check(
        &out,
        vec![
            total("x", "hourly", T0, T0 + H, 1, 1),
            total("x", "hourly", T0 + H, T0 + 2 * H, 3, 3),
        ],
        counts(5, 4, 0, 1, 0),
    );
    assert_eq!(String::from_utf8_lossy(&out.late), format!("{late}\n"));
}

#[test]
fn lateness_uses_the_earliest_end_of_any_containing_window() {
    let cfg = format!(
        "{FIELDS}{WM_MAX_EVERY_EVENT}allowed_lateness = \"15m\"\n\n[[windows]]\nname = \"q15\"\nsize = \"15m\"\n\n[[windows]]\nname = \"hourly\"\nsize = \"1h\"\n\n[[windows]]\nname = \"3h\"\nsize = \"3h\"\nslide = \"1h\"\n"
    );
    let b = ev("b", T0 + H + 40 * MIN, "x");
    let g = ev("g", T0 + H + 59 * MIN, "x");
    let input = ndjson(&[
        &ev("a", T0 + 2 * H, "x"),
        // E = end of q15 [1h30m, 1h45m) = T0+1h45m; wm T0+2h ≥ E+15m: late — although the hourly
        // window [1h, 2h) has not fired and that q15 window never held an event
        &b,
        &ev("c", T0 + H + 45 * MIN, "x"), // E = T0+2h: not late
        &ev("d", T0 + 2 * H + 15 * MIN - 1, "x"),
        &ev("e", T0 + H + 50 * MIN, "x"), // E+15m = T0+2h15m > wm = T0+2h15m−1: not late
        &ev("f", T0 + 2 * H + 15 * MIN, "x"),
        &g, // E+15m = T0+2h15m = wm: late
    ]);
    let out = run_case(&cfg, &input);
    check(
        &out,
        vec![
            total("x", "q15", T0 + H + 45 * MIN, T0 + 2 * H, 2, 2), // c, e
            total("x", "q15", T0 + 2 * H, T0 + 2 * H + 15 * MIN, 2, 2), // a, d
            total(
                "x",
                "q15",
                T0 + 2 * H + 15 * MIN,
                T0 + 2 * H + 30 * MIN,
                1,
                1,
            ), // f
            total("x", "hourly", T0 + H, T0 + 2 * H, 2, 2),         // c, e
            total("x", "hourly", T0 + 2 * H, T0 + 3 * H, 3, 3),     // a, d, f
            total("x", "3h", T0 - H, T0 + 2 * H, 2, 2),             // c, e
            total("x", "3h", T0, T0 + 3 * H, 5, 5),
            total("x", "3h", T0 + H, T0 + 4 * H, 5, 5),
            total("x", "3h", T0 + 2 * H, T0 + 5 * H, 3, 3), // a, d, f
        ],
        counts(7, 5, 0, 2, 0),
    );
    assert_eq!(String::from_utf8_lossy(&out.late), format!("{b}\n{g}\n"));
}

#[test]
fn sliding_window_lateness_uses_its_first_window() {
    let cfg = format!(
        "{FIELDS}{WM_MAX_EVERY_EVENT}allowed_lateness = \"0s\"\n\n[[windows]]\nname = \"3h\"\nsize = \"3h\"\nslide = \"1h\"\n"
    );
    let input = lines(&[
        ev("a", T0 + 3 * H - 1, "x"),
        ev("b", T0 + 2 * H + 30 * MIN, "x"), // first window [T0, T0+3h): wm T0+3h−1: not late
        ev("c", T0 + 3 * H, "x"),
        ev("d", T0 + 2 * H + 30 * MIN, "x"), // wm T0+3h: late
    ]);
    let out = run_case(&cfg, &input);
    check(
        &out,
        vec![
            total("x", "3h", T0, T0 + 3 * H, 2, 2),
            total("x", "3h", T0 + H, T0 + 4 * H, 3, 3),
            total("x", "3h", T0 + 2 * H, T0 + 5 * H, 3, 3),
            total("x", "3h", T0 + 3 * H, T0 + 6 * H, 1, 1),
        ],
        counts(4, 3, 0, 1, 0),
    );
}

// ---------------------------------------------------------------------------------------------
// the watermark

/// Minutes after T0: 0..=5, then one event from a clock 8 h fast, then 6..=9.
fn fast_clock_input() -> Vec<u8> {
    let mut ls = Vec::new();
    for m in 0..=5 {
        ls.push(ev(if m % 2 == 0 { "a" } else { "b" }, T0 + m * MIN, "x"));
    }
    ls.push(ev("c", T0 + 8 * H + 5 * MIN, "x"));
    for m in 6..=9 {
        ls.push(ev(if m % 2 == 0 { "a" } else { "b" }, T0 + m * MIN, "x"));
    }
    lines(&ls)
}

#[test]
fn median_watermark_shrugs_off_one_fast_clock() {
    let cfg = format!(
        "{FIELDS}\n[watermark]\nstrategy = \"median\"\nsample = 5\ninterval = 1\nmax_out_of_orderness = \"10m\"\nallowed_lateness = \"0s\"\n{HOURLY}"
    );
    let out = run_case(&cfg, &fast_clock_input());
    check(
        &out,
        vec![
            total("x", "hourly", T0, T0 + H, 2, 10),
            total("x", "hourly", T0 + 8 * H, T0 + 9 * H, 1, 1),
        ],
        counts(11, 11, 0, 0, 0),
    );
    assert!(out.late.is_empty());
}

#[test]
fn max_watermark_follows_one_fast_clock() {
    let cfg = format!(
        "{FIELDS}\n[watermark]\nstrategy = \"max\"\nsample = 5\ninterval = 1\nmax_out_of_orderness = \"10m\"\nallowed_lateness = \"0s\"\n{HOURLY}"
    );
    let out = run_case(&cfg, &fast_clock_input());
    // after the fast event wm = T0+8h5m−10m: minutes 6..9 are late
    check(
        &out,
        vec![
            total("x", "hourly", T0, T0 + H, 2, 6),
            total("x", "hourly", T0 + 8 * H, T0 + 9 * H, 1, 1),
        ],
        counts(11, 7, 0, 4, 0),
    );
    let expected: Vec<String> = (6..=9)
        .map(|m| ev(if m % 2 == 0 { "a" } else { "b" }, T0 + m * MIN, "x"))
        .collect();
    assert_eq!(out.late, lines(&expected));
}

fn wm_cfg(strategy: &str, sample: u32, interval: u32, ooo: &str) -> String {
    format!(
        "{FIELDS}\n[watermark]\nstrategy = \"{strategy}\"\nsample = {sample}\ninterval = {interval}\nmax_out_of_orderness = \"{ooo}\"\nallowed_lateness = \"0s\"\n{HOURLY}"
    )
}

#[test]
fn median_is_the_lower_median_and_the_watermark_never_goes_back() {
    // sample 2, interval 2: after the 2nd event wm = lower median of {5h, 1h} = 1h (not 5h)
    let input = lines(&[
        ev("u0", T0 + 5 * H, "x"),
        ev("u1", T0 + H, "x"),
        ev("u2", T0 + H + 30 * MIN, "x"), // wm 1h, E 2h: not late (the upper median, 5h, would make it late)
        ev("u3", T0 + 30 * MIN, "x"),     // wm 1h = E: late
        // after u3 the candidate is the lower median of {1h30m, 30m} = 30m, but wm stays 1h
        ev("u4", T0 + 50 * MIN, "x"), // wm 1h = E: late
    ]);
    let out = run_case(&wm_cfg("median", 2, 2, "0s"), &input);
    check(
        &out,
        vec![
            total("x", "hourly", T0 + H, T0 + 2 * H, 2, 2),
            total("x", "hourly", T0 + 5 * H, T0 + 6 * H, 1, 1),
        ],
        counts(5, 3, 0, 2, 0),
    );
}

#[test]
fn watermark_moves_only_every_interval_events() {
    // interval 3: the watermark is first computed after the 3rd event
    let input = lines(&[
        ev("u0", T0 + 3 * H, "x"),
        ev("u1", T0 + 3 * H, "x"),
        ev("u2", T0 + H + 30 * MIN, "x"), // wm still −∞: not late (it would be under wm = 3h)
        ev("u3", T0 + 2 * H + 30 * MIN, "x"), // wm = median{3h, 3h, 1h30m} = 3h = E: late
        ev("u4", T0 + H + 59 * MIN, "x"), // late
    ]);
    let out = run_case(&wm_cfg("median", 10, 3, "0s"), &input);
    check(
        &out,
        vec![
            total("x", "hourly", T0 + H, T0 + 2 * H, 1, 1),
            total("x", "hourly", T0 + 3 * H, T0 + 4 * H, 2, 2),
        ],
        counts(5, 3, 0, 2, 0),
    );
}

#[test]
fn median_sample_is_the_last_n_accepted_events() {
    // sample 2, interval 1: after u3 the sample is {5h, 5h}, so wm = 5h (all history would give 20m)
    let input = lines(&[
        ev("u0", T0 + 10 * MIN, "x"),
        ev("u1", T0 + 20 * MIN, "x"),
        ev("u2", T0 + 5 * H, "x"),
        ev("u3", T0 + 5 * H, "x"),
        ev("u4", T0 + 40 * MIN, "x"), // late
    ]);
    let out = run_case(&wm_cfg("median", 2, 1, "0s"), &input);
    check(
        &out,
        vec![
            total("x", "hourly", T0, T0 + H, 2, 2),
            total("x", "hourly", T0 + 5 * H, T0 + 6 * H, 2, 2),
        ],
        counts(5, 4, 0, 1, 0),
    );
}

#[test]
fn max_out_of_orderness_is_subtracted() {
    let input = lines(&[
        ev("u0", T0 + 2 * H, "x"),    // wm → 2h − 30m = 1h30m
        ev("u1", T0 + 59 * MIN, "x"), // E = 1h ≤ wm: late
        ev("u2", T0 + H, "x"),        // E = 2h > wm: not late
    ]);
    let out = run_case(&wm_cfg("max", 10, 1, "30m"), &input);
    check(
        &out,
        vec![
            total("x", "hourly", T0 + H, T0 + 2 * H, 1, 1),
            total("x", "hourly", T0 + 2 * H, T0 + 3 * H, 1, 1),
        ],
        counts(3, 2, 0, 1, 0),
    );
}

#[test]
fn duplicates_and_late_events_still_move_the_watermark() {
    // the watermark depends on every accepted event's time, counted or not
    let cfg = format!(
        "{FIELDS_ID}\n[watermark]\nstrategy = \"median\"\nsample = 3\ninterval = 3\nmax_out_of_orderness = \"0s\"\nallowed_lateness = \"0s\"\n{HOURLY}"
    );
    let input = lines(&[
        evi("a", T0 + 5 * H, "x", "1"),
        evi("a", T0 + 5 * H, "x", "1"), // duplicate, its time still counts
        evi("b", T0 + 10 * MIN, "x", "2"),
        // wm = median{5h, 5h, 10m} = 5h
        evi("c", T0 + 4 * H, "x", "3"), // late
        evi("c", T0 + 4 * H, "x", "3"), // late again
        evi("d", T0 + 4 * H, "x", "4"), // late
        // wm = max(5h, median{4h, 4h, 4h}) = 5h
        evi("e", T0 + 5 * H + 1, "x", "5"),
    ]);
    let out = run_case(&cfg, &input);
    check(
        &out,
        vec![
            total("x", "hourly", T0, T0 + H, 1, 1),
            total("x", "hourly", T0 + 5 * H, T0 + 6 * H, 2, 2),
        ],
        counts(7, 3, 1, 3, 0),
    );
}

#[test]
fn unbounded_lateness_makes_nothing_late() {
    let cfg = format!("{FIELDS}{WM_MAX_EVERY_EVENT}allowed_lateness = \"unbounded\"\n{HOURLY}");
    let input = lines(&[
        ev("a", T0 + 100 * DAY, "x"),
        ev("b", T0, "x"),
        ev("c", 0, "x"),
    ]);
    let out = run_case(&cfg, &input);
    check(
        &out,
        vec![
            total("x", "hourly", 0, H, 1, 1),
            total("x", "hourly", T0, T0 + H, 1, 1),
            total("x", "hourly", T0 + 100 * DAY, T0 + 100 * DAY + H, 1, 1),
        ],
        counts(3, 3, 0, 0, 0),
    );
}

// ---------------------------------------------------------------------------------------------
// side files

#[test]
fn late_line_is_written_byte_for_byte() {
    let cfg = format!("{FIELDS}{WM_MAX_EVERY_EVENT}allowed_lateness = \"0s\"\n{HOURLY}");
    // odd spacing, key order, escapes, raw UTF-8 and a nested value: all kept as they are
    let odd = "  {\"e\" : \"x\",   \"t\":\"2024-05-01T00:10:00.000+00:00\" ,\"extra\":{\"k\":[1, 2 ,3.50], \"s\":\"\\u00e9\\n\\\"\"},\"u\":\"jos\\u00e9 ñ\"}\t ";
    let crlf = "{\"u\":\"b\",\"t\":1714522200000,\"e\":\"x\"}";
    let mut input = Vec::new();
    input.extend_from_slice(ev("a", T0 + 2 * H, "x").as_bytes());
    input.push(b'\n');
    input.extend_from_slice(odd.as_bytes());
    input.push(b'\n');
    input.extend_from_slice(crlf.as_bytes());
    input.extend_from_slice(b"\r\n"); // the line ends before `\r\n`
    let out = run_case(&cfg, &input);
    check(
        &out,
        vec![total("x", "hourly", T0 + 2 * H, T0 + 3 * H, 1, 1)],
        counts(3, 1, 0, 2, 0),
    );
    let expected = format!("{odd}\n{crlf}\n");
    assert_eq!(
        out.late,
        expected.as_bytes(),
        "late/ must hold the original lines byte for byte:\n got: {:?}\nwant: {:?}",
        String::from_utf8_lossy(&out.late),
        expected
    );
}

#[test]
fn rejected_lines_reasons_and_no_influence() {
    let cfg = format!(
        "{FIELDS_ID}{WM_MAX_EVERY_EVENT}allowed_lateness = \"0s\"\n\n[limits]\nmax_line_bytes = 200\n\n[[dimensions]]\nname = \"browser\"\nfield = \"b\"\n{HOURLY}"
    );
    let t = T0;
    let far = T0 + 10 * H;
    // a valid line of exactly 200 bytes
    let mut exact = format!(r#"{{"u":"d","t":{},"e":"x","pad":""}}"#, T0 + 5 * MIN);
    let pad = "p".repeat(200 - exact.len());
    exact = format!(r#"{{"u":"d","t":{},"e":"x","pad":"{pad}"}}"#, T0 + 5 * MIN);
    assert_eq!(exact.len(), 200);
    let too_long = format!(r#"{{"u":"d","t":{},"e":"x","pad":"{pad}q"}}"#, T0 + 5 * MIN);
    assert_eq!(too_long.len(), 201);

    let rows: Vec<(Vec<u8>, Option<&str>)> = vec![
        (evi("a", t, "x", "1").into(), None), // counted; wm → T0
        // none of these may move the watermark (their times are 10 h ahead) or record an id
        (
            format!(r#"{{"u":"z","t":{far},"e":""}}"#).into(),
            Some("missing event type"),
        ),
        (
            format!(r#"{{"u":"b","t":{far},"e":"x","b":5}}"#).into(),
            Some("wrong type"),
        ),
        (
            format!(
                r#"{{"u":"b","t":{},"e":"x","id":"7","b":true}}"#,
                T0 + 30 * MIN
            )
            .into(),
            Some("wrong type"),
        ),
        (
            format!(r#"{{"u":"b","t":{},"e":"x","id":"7"}}"#, T0 + 30 * MIN).into(),
            None,
        ), // not a duplicate
        (b"not json".to_vec(), Some("invalid json")),
        (
            format!(r#"{{"u":"b","t":{far},"e":"x""#).into(),
            Some("invalid json"),
        ),
        (b"[1,2]".to_vec(), Some("not an object")),
        (b"\"str\"".to_vec(), Some("not an object")),
        (
            format!(r#"{{"t":{far},"e":"x"}}"#).into(),
            Some("missing user"),
        ),
        (
            format!(r#"{{"u":null,"t":{far},"e":"x"}}"#).into(),
            Some("missing user"),
        ),
        (
            format!(r#"{{"u":"","t":{far},"e":"x"}}"#).into(),
            Some("missing user"),
        ),
        (
            format!(r#"{{"u":5,"t":{far},"e":"x"}}"#).into(),
            Some("wrong type"),
        ),
        (br#"{"u":"c","e":"x"}"#.to_vec(), Some("missing time")),
        (
            br#"{"u":"c","t":null,"e":"x"}"#.to_vec(),
            Some("missing time"),
        ),
        (
            br#"{"u":"c","t":"soon","e":"x"}"#.to_vec(),
            Some("invalid time"),
        ),
        (
            br#"{"u":"c","t":[1],"e":"x"}"#.to_vec(),
            Some("invalid time"),
        ),
        (
            br#"{"u":"c","t":-1,"e":"x"}"#.to_vec(),
            Some("time out of range"),
        ),
        (
            br#"{"u":"c","t":"2100-01-01T00:00:00Z","e":"x"}"#.to_vec(),
            Some("time out of range"),
        ),
        (
            format!(r#"{{"u":"c","t":{far},"e":7}}"#).into(),
            Some("wrong type"),
        ),
        (
            format!(r#"{{"u":"c","t":{far}}}"#).into(),
            Some("missing event type"),
        ),
        (
            format!(r#"{{"u":"c","t":{far},"e":null}}"#).into(),
            Some("missing event type"),
        ),
        (
            format!(r#"{{"u":"c","t":{far},"e":"x","id":true}}"#).into(),
            Some("wrong type"),
        ),
        (
            format!(r#"{{"u":"c","t":{far},"e":"x","id":1.5}}"#).into(),
            Some("wrong type"),
        ),
        (
            [&b"{\"u\":\"c\xff\",\"t\":1714521600000,\"e\":\"x\"}"[..]].concat(),
            Some("invalid utf-8"),
        ),
        (exact.clone().into(), None),
        (too_long.clone().into(), Some("line too long")),
        // several problems: the first in the order length, UTF-8, JSON, object, user, time, type, id
        (
            [too_long.as_bytes(), b"\xff"].concat(),
            Some("line too long"),
        ),
        (b"[\xff".to_vec(), Some("invalid utf-8")),
        (br#"{"t":"bad","e":3}"#.to_vec(), Some("missing user")),
        (br#"{"u":"c","t":"bad"}"#.to_vec(), Some("invalid time")),
        (
            format!(r#"{{"u":"c","t":{far},"id":true}}"#).into(),
            Some("missing event type"),
        ),
        // still under wm = T0+30m: not late
        (ev("e", T0 + 20 * MIN, "x").into(), None),
    ];
    let mut input = Vec::new();
    for (l, _) in &rows {
        input.extend_from_slice(l);
        input.push(b'\n');
    }
    let out = run_case(&cfg, &input);
    let n = rows.len() as u64;
    let rejected = rows.iter().filter(|r| r.1.is_some()).count() as u64;
    check(
        &out,
        vec![total("x", "hourly", T0, T0 + H, 4, 4)],
        counts(n, n - rejected, 0, 0, rejected),
    );
    let mut want: Vec<&str> = rows.iter().filter_map(|r| r.1).collect();
    want.sort();
    let mut got: Vec<String> = out.rejected_reasons.clone();
    got.sort();
    assert_eq!(got, want, "reasons in rejected/");
}

#[test]
fn rejected_records_locate_the_line() {
    // each record names the file, the 1-based line in it, the byte offset of the line in the
    // (decompressed) file, the reason, and the raw line
    let cfg = format!("{FIELDS}{HOURLY}");
    let s = Scratch::new();
    let config = s.write("config.toml", &cfg);
    let ok_a = ev("a", T0, "x");
    let f1 = format!("{ok_a}\n\nnot json\n");
    let ok_b = ev("b", T0, "x");
    let f2 = format!("[1]\r\n{ok_b}\n{{\"u\":7,\"t\":1,\"e\":\"x\"}}");
    let files = vec![
        s.write("one.ndjson", &f1),
        s.write_zst("two.ndjson.zst", f2.as_bytes()),
    ];
    let out = s.run(&files, &config, 2);
    check(
        &out,
        vec![total("x", "hourly", T0, T0 + H, 2, 2)],
        counts(5, 2, 0, 0, 3),
    );
    let mut got: Vec<(String, u64, u64, String, String)> = out
        .rejected_records
        .iter()
        .map(|r| {
            let file = r["file"]
                .as_str()
                .unwrap_or_else(|| panic!("no `file`: {r}"));
            let name = std::path::Path::new(file)
                .file_name()
                .unwrap()
                .to_string_lossy()
                .into_owned();
            (
                name,
                r["line"]
                    .as_u64()
                    .unwrap_or_else(|| panic!("no `line`: {r}")),
                r["offset"]
                    .as_u64()
                    .unwrap_or_else(|| panic!("no `offset`: {r}")),
                common::reason_code(r["reason"].as_str().unwrap()).to_string(),
                r["raw"]
                    .as_str()
                    .unwrap_or_else(|| panic!("no `raw`: {r}"))
                    .to_string(),
            )
        })
        .collect();
    got.sort();
    let b_len = ok_b.len() as u64;
    let want = vec![
        (
            "one.ndjson".to_string(),
            3,
            ok_a.len() as u64 + 2,
            "invalid json".to_string(),
            "not json".to_string(),
        ),
        (
            "two.ndjson.zst".to_string(),
            1,
            0,
            "not an object".to_string(),
            "[1]".to_string(),
        ),
        (
            "two.ndjson.zst".to_string(),
            3,
            5 + b_len + 1,
            "wrong type".to_string(),
            r#"{"u":7,"t":1,"e":"x"}"#.to_string(),
        ),
    ];
    assert_eq!(got, want);
}

#[test]
fn blank_lines_crlf_and_files_read_as_one_stream() {
    let cfg = format!("{FIELDS}{HOURLY}");
    let s = Scratch::new();
    let config = s.write("config.toml", &cfg);
    // blank and whitespace-only lines are not lines; `\r\n` ends a line; the file's last line has
    // no newline and is still a line of its own
    let mut f1 = Vec::new();
    f1.extend_from_slice(ev("a", T0, "x").as_bytes());
    f1.extend_from_slice(b"\r\n\n   \n\t \n\r\n");
    f1.extend_from_slice(format!("  {}  ", ev("b", T0 + MIN, "x")).as_bytes());
    let f2 = format!("\n{}\n\n", ev("c", T0 + 2 * MIN, "y"));
    let f3 = ev("d", T0 + 3 * MIN, "y");
    let files = vec![
        s.write("b.ndjson", &f1),
        s.write_zst("a.ndjson.zst", f2.as_bytes()),
        s.write("c.jsonl", f3.as_bytes()),
    ];
    for threads in [1, 2] {
        let out = s.run(&files, &config, threads);
        check(
            &out,
            vec![
                total("x", "hourly", T0, T0 + H, 2, 2),
                total("y", "hourly", T0, T0 + H, 2, 2),
            ],
            counts(4, 4, 0, 0, 0),
        );
    }
}

// ---------------------------------------------------------------------------------------------
// time formats

fn time_cfg(format: &str) -> String {
    format!(
        "[fields]\nuser = \"u\"\ntime = \"t\"\ntime_format = \"{format}\"\nevent_type = \"e\"\n\n[[windows]]\nname = \"ms\"\nsize = \"1ms\"\n"
    )
}

/// One line per time value, each from another user; a 1 ms window per distinct time.
fn time_lines(values: &[&str]) -> Vec<u8> {
    let ls: Vec<String> = values
        .iter()
        .enumerate()
        .map(|(i, v)| format!(r#"{{"u":"u{i}","t":{v},"e":"x"}}"#))
        .collect();
    lines(&ls)
}

fn ms_row(t: i64, n: u64) -> Row {
    total("x", "ms", t, t + 1, n, n)
}

#[test]
fn time_format_auto() {
    let input = time_lines(&[
        "1714521600",                          // seconds → T0
        "1714521600.5",                        // T0+500
        "1714521600123",                       // ≥ 1e11: ms → T0+123
        "1714521600123.9",                     // ms, fraction truncated → T0+123
        "\"1714521600\"",                      // digits in a string: seconds → T0
        "\"1714521600007\"",                   // ms → T0+7
        "\"2024-05-01T00:00:00.999999999Z\"",  // T0+999
        "\"2024-05-01 02:00:00.250+02:00\"",   // T0+250
        "\"2024-04-30t23:00:00.0019-01:00\"",  // T0+1
        "\"2024-05-01T00:00:00z\"",            // T0
        "100000000000",                        // exactly 1e11: ms (1973)
        "99999999999",                         // < 1e11: seconds → year 5138: out of range
        "0",                                   // time_min is inclusive
        "4102444799999",                       // the last ms before 2100
        "4102444800",                          // seconds: 2100-01-01 → out of range
        "\"2024-05-01T00:00:00\"",             // no offset: invalid
        "-1",                                  // before 1970: out of range
        "\"2024-05-01T05:30:00.5+05:30\"",     // T0+500
        "1714521600.0019",                     // T0+1
        "\"2024-02-29T12:00:00Z\"",            // a leap day
        "\"2023-02-29T12:00:00Z\"",            // not a day: invalid
        "\"-5\"",                              // digits: −5 s: out of range
        "true",                                // invalid
        "\"2024-05-01T00:00:00.1234567890Z\"", // 10 fraction digits: invalid
    ]);
    let out = run_case(&time_cfg("auto"), &input);
    check(
        &out,
        vec![
            ms_row(0, 1),
            ms_row(100_000_000_000, 1),
            ms_row(1_709_208_000_000, 1),
            ms_row(T0, 3),
            ms_row(T0 + 1, 2),
            ms_row(T0 + 7, 1),
            ms_row(T0 + 123, 2),
            ms_row(T0 + 250, 1),
            ms_row(T0 + 500, 2),
            ms_row(T0 + 999, 1),
            ms_row(4_102_444_799_999, 1),
        ],
        counts(24, 16, 0, 0, 8),
    );
    let mut got = out.rejected_reasons.clone();
    got.sort();
    assert_eq!(
        got,
        vec![
            "invalid time",
            "invalid time",
            "invalid time",
            "invalid time",
            "time out of range",
            "time out of range",
            "time out of range",
            "time out of range",
        ]
    );
}

#[test]
fn time_format_unix_s() {
    let input = time_lines(&[
        "1714521600",
        "1714521600.25",
        "\"1714521600\"",
        "1714521600123",
        "100",
        "\"2024-05-01T00:00:00Z\"",
    ]);
    let out = run_case(&time_cfg("unix_s"), &input);
    check(
        &out,
        vec![ms_row(100_000, 1), ms_row(T0, 1), ms_row(T0 + 250, 1)],
        counts(6, 3, 0, 0, 3),
    );
    let mut got = out.rejected_reasons.clone();
    got.sort();
    assert_eq!(
        got,
        vec!["invalid time", "invalid time", "time out of range"]
    );
}

#[test]
fn time_format_unix_ms() {
    let input = time_lines(&[
        "1714521600000",
        "1714521600",
        "1714521600000.75",
        "\"1714521600000\"",
    ]);
    let out = run_case(&time_cfg("unix_ms"), &input);
    check(
        &out,
        vec![ms_row(1_714_521_600, 1), ms_row(T0, 2)],
        counts(4, 3, 0, 0, 1),
    );
    assert_eq!(out.rejected_reasons, vec!["invalid time"]);
}

#[test]
fn time_format_rfc3339() {
    let input = time_lines(&[
        "\"2024-05-01T00:00:00Z\"",
        "\"2024-05-01T00:00:00.001+00:00\"",
        "1714521600",
        "\"1714521600\"",
    ]);
    let out = run_case(&time_cfg("rfc3339"), &input);
    check(
        &out,
        vec![ms_row(T0, 1), ms_row(T0 + 1, 1)],
        counts(4, 2, 0, 0, 2),
    );
    assert_eq!(out.rejected_reasons, vec!["invalid time", "invalid time"]);
}

#[test]
fn time_limits_and_times_before_1970() {
    // with a time_min before 1970, negative times are valid: windows are aligned to the epoch for
    // negative k too, and fractions are truncated towards −∞
    let cfg = "[fields]\nuser = \"u\"\ntime = \"t\"\nevent_type = \"e\"\n\n[limits]\ntime_min = \"1969-12-31T00:00:00Z\"\ntime_max = \"2024-06-01T00:00:00Z\"\n\n[[windows]]\nname = \"ms\"\nsize = \"1ms\"\n\n[[windows]]\nname = \"hourly\"\nsize = \"1h\"\n";
    let input = time_lines(&[
        "-1",                           // seconds: −1000 ms
        "-0.0005",                      // −0.5 ms → −1 ms
        "-1.5",                         // −1500 ms
        "\"-2\"",                       // −2000 ms
        "\"1969-12-31T23:30:00Z\"",     // −30 min
        "\"1969-12-31T00:00:00Z\"",     // time_min itself: in range
        "\"1969-12-30T23:59:59.999Z\"", // before time_min
        "\"2024-06-01T00:00:00Z\"",     // time_max: out of range
        "\"2024-05-31T23:59:59.999Z\"", // the last ms in range
    ]);
    let out = run_case(cfg, &input);
    const JUNE: i64 = 1_717_200_000_000; // 2024-06-01T00:00:00Z
    check(
        &out,
        vec![
            ms_row(-DAY, 1),
            ms_row(-30 * MIN, 1),
            ms_row(-2000, 1),
            ms_row(-1500, 1),
            ms_row(-1000, 1),
            ms_row(-1, 1),
            ms_row(JUNE - 1, 1),
            total("x", "hourly", -DAY, -DAY + H, 1, 1),
            total("x", "hourly", -H, 0, 5, 5),
            total("x", "hourly", JUNE - H, JUNE, 1, 1),
        ],
        counts(9, 7, 0, 0, 2),
    );
    assert_eq!(
        out.rejected_reasons,
        vec!["time out of range", "time out of range"]
    );
}

#[test]
fn watermark_defaults() {
    // defaults: interval 4096, sample 10000, max_out_of_orderness 1h, allowed_lateness 6h, ttl 24h
    let cfg = format!("{FIELDS_ID}{HOURLY}");
    let mut ls: Vec<String> = (0..4095)
        .map(|i| evi("bulk", T0 + 10 * H, "x", &format!("b{i}")))
        .collect();
    ls.push(ev("p", T0 + 2 * H + 30 * MIN, "x")); // g = 4095: wm still −∞
    // now wm = median of 4096 times (T0+10h) − 1h = T0+9h
    ls.push(ev("q", T0 + 2 * H + 30 * MIN, "x")); // E+6h = T0+9h: late
    ls.push(ev("r", T0 + 3 * H, "x")); // E+6h = T0+10h: not late
    ls.push(ls[0].clone()); // expiry T0+10h+24h: duplicate
    let out = run_case(&cfg, &lines(&ls));
    check(
        &out,
        vec![
            total("x", "hourly", T0 + 2 * H, T0 + 3 * H, 1, 1),
            total("x", "hourly", T0 + 3 * H, T0 + 4 * H, 1, 1),
            total("x", "hourly", T0 + 10 * H, T0 + 11 * H, 1, 4095),
        ],
        counts(4099, 4097, 1, 1, 0),
    );
}

// ---------------------------------------------------------------------------------------------
// configuration errors and the output format

#[test]
fn slide_must_divide_size() {
    let cfg = format!("{FIELDS}\n[[windows]]\nname = \"w\"\nsize = \"1h\"\nslide = \"25m\"\n");
    let (o, _s) = run_case_raw(&cfg, &ndjson(&[&ev("a", T0, "x")]), &[]);
    assert!(
        !o.status.success(),
        "a slide that does not divide the size must be refused"
    );
}

#[test]
fn lookup_with_an_empty_value_is_an_error_at_load_time() {
    let cfg = format!(
        "{FIELDS}\n[[dimensions]]\nname = \"campaign\"\nfield = \"m\"\nlookup = \"c.csv\"\n{HOURLY}"
    );
    let (o, _s) = run_case_raw(
        &cfg,
        &ndjson(&[&ev("a", T0, "x")]),
        &[("c.csv", "key,value\nm1,A\nm2,\n")],
    );
    assert!(
        !o.status.success(),
        "an empty value in a lookup CSV must be refused"
    );
    let (o, _s) = run_case_raw(
        &cfg,
        &ndjson(&[&ev("a", T0, "x")]),
        &[("c.csv", "key,value\nm1,A\n")],
    );
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
}

#[test]
fn output_schema_and_summary_keys() {
    use arrow_schema::{DataType, TimeUnit};
    let cfg = format!("{FIELDS}\n[[dimensions]]\nname = \"browser\"\nfield = \"b\"\n{HOURLY}");
    let out = run_case(
        &cfg,
        &ndjson(&[r#"{"u":"a","t":1714521600000,"e":"x","b":"chrome"}"#]),
    );
    check(
        &out,
        vec![
            total("x", "hourly", T0, T0 + H, 1, 1),
            dim("x", "browser", "chrome", "hourly", T0, T0 + H, 1, 1),
        ],
        counts(1, 1, 0, 0, 0),
    );
    assert!(!out.schemas.is_empty());
    for schema in &out.schemas {
        let ts = DataType::Timestamp(TimeUnit::Millisecond, Some("UTC".into()));
        let want: Vec<(&str, DataType)> = vec![
            ("metric", DataType::Utf8),
            ("event_type", DataType::Utf8),
            ("dimension", DataType::Utf8),
            ("value", DataType::Utf8),
            ("window", DataType::Utf8),
            ("window_start", ts.clone()),
            ("window_end", ts),
            ("unique_users", DataType::UInt64),
            ("events", DataType::UInt64),
        ];
        assert_eq!(schema.fields().len(), want.len(), "{schema:?}");
        for (f, (name, ty)) in schema.fields().iter().zip(want) {
            assert_eq!(f.name(), name);
            assert_eq!(f.data_type(), &ty, "type of {name}");
        }
        // the total row has NULL dimension and value; a by_type = false metric NULL event_type
        assert!(!schema.field_with_name("metric").unwrap().is_nullable());
        assert!(schema.field_with_name("event_type").unwrap().is_nullable());
        assert!(schema.field_with_name("dimension").unwrap().is_nullable());
        assert!(schema.field_with_name("value").unwrap().is_nullable());
    }
    for k in [
        "lines",
        "counted",
        "duplicates",
        "late",
        "rejected",
        "rows",
        "files",
        "rows_per_window",
    ] {
        assert!(
            out.summary.get(k).is_some(),
            "_summary.json lacks `{k}`: {}",
            out.summary
        );
    }
    assert_eq!(out.summary["rows"].as_u64(), Some(2));
}

#[test]
fn the_out_dir_shows_readers_only_rows() {
    // Output: everything that is not a part file starts with `_` or `.`; _SUCCESS after exit 0.
    let cfg = format!("{FIELDS}\n{HOURLY}");
    let input = ndjson(&[
        r#"{"u":"a","t":1714521600000,"e":"x"}"#,
        "not json",
        r#"{"u":"a","t":1714600000000,"e":"x"}"#,
        r#"{"u":"b","t":1714521600001,"e":"x"}"#,
    ]);
    let s = common::Scratch::new();
    let cfg = s.write("c.toml", format!("{cfg}\n[watermark]\ninterval = 1\nsample = 1\nallowed_lateness = \"0s\"\nmax_out_of_orderness = \"0s\"\n"));
    let inp = s.write("in.ndjson", input);
    let out = s.run(&[inp], &cfg, 1);
    assert_eq!(out.counts, counts(4, 2, 0, 1, 1), "one late, one rejected");
    let mut names: Vec<String> = std::fs::read_dir(&out.out)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    for n in &names {
        assert!(
            (n.starts_with("part-") && n.ends_with(".parquet"))
                || n.starts_with('_')
                || n.starts_with('.'),
            "{n} in the out dir would be read as data: {names:?}"
        );
    }
    for want in [
        "_SUCCESS",
        "_late",
        "_manifest.json",
        "_rejected",
        "_summary.json",
    ] {
        assert!(names.iter().any(|n| n == want), "no {want}: {names:?}");
    }
}

// ---------------------------------------------------------------------------------------------
// filters, metrics and thresholds (docs/SEMANTICS.md "Field paths", "Filters", "Metrics")

/// One event of user `u` at `t` (ms) of type `e`, with extra members `more` (raw JSON text).
fn evx(u: &str, t: i64, e: &str, more: &str) -> String {
    format!(r#"{{"u":"{u}","t":{t},"e":"{e}"{more}}}"#)
}

/// A config with the `[[filters]]`/`[[metrics]]` block `metrics`, hourly windows (and `extra`).
fn metrics_cfg(dims: &str, metrics: &str) -> String {
    format!("{FIELDS}{dims}{HOURLY}{metrics}")
}

fn m_total(metric: &str, et: &str, start: i64, u: u64, e: u64) -> Row {
    total(et, "hourly", start, start + H, u, e).metric(metric)
}

#[test]
fn each_filter_operator_on_types_and_missing_fields() {
    // One metric per operator; each user's event matches or not as written beside it.
    let ops = [
        ("eq_s", r#"{ field = "c", eq = "black" }"#),
        ("eq_n", r#"{ field = "q", eq = 2 }"#),
        ("eq_b", r#"{ field = "b", eq = true }"#),
        ("ne", r#"{ field = "c", ne = "black" }"#),
        ("in", r#"{ field = "c", in = ["black", "jet black"] }"#),
        (
            "not_in",
            r#"{ field = "c", not_in = ["black", "jet black"] }"#,
        ),
        ("regex", r#"{ field = "p", regex = "(?i)charger" }"#),
        ("lt", r#"{ field = "q", lt = 2 }"#),
        ("le", r#"{ field = "q", le = 2 }"#),
        ("gt", r#"{ field = "q", gt = 2 }"#),
        ("ge", r#"{ field = "q", ge = 2 }"#),
        ("exists", r#"{ field = "c", exists = true }"#),
        ("absent", r#"{ field = "c", exists = false }"#),
    ];
    let mut block = String::new();
    for (name, clause) in ops {
        block += &format!(
            "\n[[filters]]\nname = \"{name}\"\nwhere = [{clause}]\n[[metrics]]\nname = \"{name}\"\nfilter = \"{name}\"\n"
        );
    }
    let input = lines(&[
        evx(
            "a",
            T0,
            "x",
            r#","c":"black","q":2,"b":true,"p":"iPhone Charger""#,
        ),
        evx("b", T0, "x", r#","c":"jet black","q":2.0,"p":"cable""#),
        evx("c", T0, "x", r#","c":"red","q":"2","b":"true""#), // a string 2, a string true
        evx("d", T0, "x", r#","q":3,"c":null"#),               // c null = absent
        evx("e", T0, "x", r#","c":5,"q":1.5,"p":["charger"]"#), // c a number, p an array
    ]);
    let out = run_case(&metrics_cfg("", &block), &input);
    let want = |m: &str, users: u64| m_total(m, "x", T0, users, users);
    check(
        &out,
        vec![
            want("eq_s", 1),   // a
            want("eq_n", 2),   // a (2), b (2.0); not c ("2")
            want("eq_b", 1),   // a; not c ("true")
            want("ne", 4),     // b, c, d (absent), e (a number)
            want("in", 2),     // a, b
            want("not_in", 3), // c, d, e
            want("regex", 1),  // a; not e (an array)
            want("lt", 1),     // e (1.5); not c ("2")
            want("le", 3),     // a, b, e
            want("gt", 1),     // d
            want("ge", 3),     // a, b, d
            want("exists", 4), // a, b, c, e
            want("absent", 1), // d (null)
        ],
        counts(5, 5, 0, 0, 0),
    );
}

#[test]
fn dotted_paths_for_filters_and_dimensions() {
    let dims = "\n[[dimensions]]\nname = \"color\"\nfield = \"item.color\"\n[[dimensions]]\nname = \"dotted\"\nfield = 'a\\.b'\n";
    let block = r#"
[[filters]]
name = "deep"
where = [{ field = "item.spec.size", ge = 10 }]
[[metrics]]
name = "deep"
filter = "deep"
dimensions = ["color"]
"#;
    let input = lines(&[
        evx(
            "a",
            T0,
            "x",
            r#","item":{"color":"black","spec":{"size":10}},"a.b":"v""#,
        ),
        evx("b", T0, "x", r#","item":{"color":"red","spec":{"size":9}}"#),
        evx(
            "c",
            T0,
            "x",
            r#","item":[{"color":"blue","spec":{"size":99}}]"#,
        ), // never into arrays
        evx(
            "d",
            T0,
            "x",
            r#","item":{"spec":{"size":50}},"item":{"color":"white"}"#,
        ), // last wins
        evx(
            "e",
            T0,
            "x",
            r#","item":{"color":"black","spec":{"size":12}},"a":{"b":"nested"}"#,
        ),
    ]);
    let out = run_case(&metrics_cfg(dims, block), &input);
    check(
        &out,
        vec![
            m_total("deep", "x", T0, 2, 2), // a, e
            dim("x", "color", "black", "hourly", T0, T0 + H, 2, 2).metric("deep"),
        ],
        counts(5, 5, 0, 0, 0),
    );
    // The dimension with an escaped dot reads the top-level key "a.b", not a → b.
    let plain = metrics_cfg(dims, "");
    let out = run_case(&plain, &input);
    let dotted: Vec<&Row> = out
        .rows
        .iter()
        .filter(|r| r.dimension.as_deref() == Some("dotted"))
        .collect();
    assert_eq!(dotted.len(), 1, "{dotted:?}");
    assert_eq!(dotted[0].value.as_deref(), Some("v"));
    assert_eq!(dotted[0].unique_users, 1);
}

#[test]
fn min_count_at_n_minus_one_and_n() {
    let block = "\n[[metrics]]\nname = \"two\"\nmin_count = 2\n";
    let input = lines(&[
        ev("a", T0, "buy"),
        ev("a", T0 + 10 * MIN, "buy"), // a: 2 in the hour → counts, with both events
        ev("b", T0 + 20 * MIN, "buy"), // b: 1 → does not
        ev("c", T0 + 30 * MIN, "buy"),
        ev("c", T0 + 40 * MIN, "buy"),
        ev("c", T0 + 50 * MIN, "buy"), // c: 3 → counts with 3
        ev("b", T0 + H, "buy"),        // the next hour: b 1 → no row at all
    ]);
    let out = run_case(&metrics_cfg("", block), &input);
    check(
        &out,
        vec![m_total("two", "buy", T0, 2, 5)],
        counts(7, 7, 0, 0, 0),
    );
}

#[test]
fn min_sum_with_fractions_and_non_numeric_values() {
    let block = r#"
[[metrics]]
name = "units"
min_sum = { field = "q", value = 3 }
"#;
    let input = lines(&[
        evx("a", T0, "buy", r#","q":1.5"#),
        evx("a", T0 + MIN, "buy", r#","q":1.5"#), // a: 3.0 → counts
        evx("b", T0, "buy", r#","q":2"#),
        evx("b", T0 + MIN, "buy", r#","q":"5""#), // a string adds 0
        evx("b", T0 + 2 * MIN, "buy", r#","q":-4"#), // a negative adds 0
        evx("b", T0 + 3 * MIN, "buy", ""),        // absent adds 0: b 2 → no
        evx("c", T0, "buy", r#","q":2.9999999"#), // truncated to 2.999999 …
        evx("c", T0 + MIN, "buy", r#","q":0.000001"#), // … + 0.000001 = 3.000000 → counts
    ]);
    let out = run_case(&metrics_cfg("", block), &input);
    check(
        &out,
        vec![m_total("units", "buy", T0, 2, 4)],
        counts(8, 8, 0, 0, 0),
    );
}

#[test]
fn a_sliding_window_where_the_user_reaches_n_only_across_two_panes() {
    let cfg = format!(
        "{FIELDS}\n[[windows]]\nname = \"2h\"\nsize = \"2h\"\nslide = \"1h\"\n\n[[metrics]]\nname = \"two\"\nmin_count = 2\n"
    );
    // a: one event in [T0, T0+1h) and one in [T0+1h, T0+2h): only window [T0, T0+2h) holds both.
    let input = lines(&[ev("a", T0 + 30 * MIN, "x"), ev("a", T0 + 90 * MIN, "x")]);
    let out = run_case(&cfg, &input);
    check(
        &out,
        vec![total("x", "2h", T0, T0 + 2 * H, 1, 2).metric("two")],
        counts(2, 2, 0, 0, 0),
    );
}

#[test]
fn metric_subsets_and_by_type_false() {
    let dims = "\n[[dimensions]]\nname = \"d\"\nfield = \"d\"\n[[dimensions]]\nname = \"f\"\nfield = \"f\"\n";
    let block = r#"
[[windows]]
name = "daily"
size = "1d"
[[metrics]]
name = "typed_daily_d"
dimensions = ["d"]
windows = ["daily"]
[[metrics]]
name = "untyped_total"
dimensions = []
windows = ["hourly"]
by_type = false
"#;
    let input = lines(&[
        evx("a", T0, "x", r#","d":"1","f":"z""#),
        evx("b", T0 + MIN, "y", r#","d":"1","f":"z""#),
        evx("a", T0 + 2 * H, "y", r#","d":"2""#),
    ]);
    let out = run_case(&metrics_cfg(dims, block), &input);
    let day = |et: &str, d: Option<&str>, u, e| {
        let r = match d {
            None => total(et, "daily", T0, T0 + DAY, u, e),
            Some(v) => dim(et, "d", v, "daily", T0, T0 + DAY, u, e),
        };
        r.metric("typed_daily_d")
    };
    check(
        &out,
        vec![
            day("x", None, 1, 1),
            day("x", Some("1"), 1, 1),
            day("y", None, 2, 2),
            day("y", Some("1"), 1, 1),
            day("y", Some("2"), 1, 1),
            m_total("untyped_total", "x", T0, 2, 2).untyped(),
            m_total("untyped_total", "x", T0 + 2 * H, 1, 1).untyped(),
        ],
        counts(3, 3, 0, 0, 0),
    );
}

#[test]
fn bad_metric_configs_are_refused_with_file_line_and_column() {
    let cases = [
        (
            "[[metrics]]\nname = \"m\"\nfilter = \"nope\"\n",
            "no `[[filters]]` named `nope`",
        ),
        (
            "[[metrics]]\nname = \"m\"\ndimensions = [\"nope\"]\n",
            "no dimension named `nope`",
        ),
        (
            "[[metrics]]\nname = \"m\"\nwindows = [\"weekly\"]\n",
            "no window named `weekly`",
        ),
        ("[[metrics]]\nname = \"m\"\nmin_count = 0\n", "min_count"),
        (
            "[[metrics]]\nname = \"m\"\nmin_count = 2\nmin_sum = { field = \"q\", value = 1 }\n",
            "not both",
        ),
        (
            "[[metrics]]\nname = \"m\"\nmin_sum = { field = \"q\", value = 0 }\n",
            "above 0",
        ),
        (
            "[[metrics]]\nname = \"m\"\n[[metrics]]\nname = \"m\"\n",
            "unique",
        ),
        (
            "[[filters]]\nname = \"f\"\nwhere = [{ field = \"x\", regex = \"(\" }]\n",
            "not a valid regex",
        ),
        (
            "[[filters]]\nname = \"f\"\nwhere = [{ field = \"x\", ge = \"1\" }]\n",
            "needs a number",
        ),
        (
            "[[filters]]\nname = \"f\"\nwhere = [{ field = \"x\" }]\n",
            "needs one operator",
        ),
        (
            "[[filters]]\nname = \"f\"\nwhere = [{ field = \"x\", eq = 1, ne = 2 }]\n",
            "exactly one operator",
        ),
        (
            "[[filters]]\nname = \"f\"\nwhere = [{ field = \"a..b\", exists = true }]\n",
            "not a field path",
        ),
        (
            "[[filters]]\nname = \"f\"\nwhere = [{ field = \"x\", in = [] }]\n",
            "empty",
        ),
    ];
    for (block, want) in cases {
        let cfg = format!("{FIELDS}{HOURLY}{block}");
        let (o, _s) = run_case_raw(&cfg, &lines(&[ev("a", T0, "x")]), &[]);
        let err = String::from_utf8_lossy(&o.stderr);
        assert_eq!(o.status.code(), Some(2), "{block}: {err}");
        assert!(err.contains(want), "{block}: wanted `{want}` in: {err}");
        assert!(
            err.contains("config.toml:"),
            "{block}: names the file: {err}"
        );
    }
}

// ---------------------------------------------------------------------------------------------
// attribution metrics ("did B after A, within T")

const DAILY: &str = "\n[[windows]]\nname = \"daily\"\nsize = \"1d\"\n";

/// Campaign `c` on the anchors; `open` events are the A's, `buy` events the B's; daily windows;
/// the watermark is the largest time so far; `lateness` is `allowed_lateness`; `keys` are the
/// attribution metric `m`'s keys beyond `after`, `filter` and `name`.
fn attr_cfg(keys: &str, lateness: &str) -> String {
    format!(
        "{FIELDS}{WM_MAX_EVERY_EVENT}allowed_lateness = \"{lateness}\"\n\n[[dimensions]]\nname = \"campaign\"\nfield = \"c\"\n{DAILY}\n[[filters]]\nname = \"opened\"\nwhere = [{{ field = \"e\", eq = \"open\" }}]\n\n[[filters]]\nname = \"bought\"\nwhere = [{{ field = \"e\", eq = \"buy\" }}]\n\n[[metrics]]\nname = \"m\"\nafter = \"opened\"\nfilter = \"bought\"\n{keys}\n"
    )
}

fn open(u: &str, t: i64, c: &str) -> String {
    if c.is_empty() {
        ev(u, t, "open")
    } else {
        evx(u, t, "open", &format!(r#","c":"{c}""#))
    }
}

fn a_total(day: i64, u: u64, e: u64) -> Row {
    total("buy", "daily", day, day + DAY, u, e).metric("m")
}

fn a_dim(value: &str, day: i64, u: u64, e: u64) -> Row {
    dim("buy", "campaign", value, "daily", day, day + DAY, u, e).metric("m")
}

#[test]
fn attribution_needs_b_strictly_after_a_and_within() {
    let cfg = attr_cfg("within = \"1h\"", "unbounded");
    let input = lines(&[
        ev("a", T0 + H, "buy"), // a: B before its A → not counted
        open("a", T0 + 2 * H, "X"),
        open("b", T0 + 3 * H, "X"),
        ev("b", T0 + 3 * H, "buy"), // b: at the same time → not after
        open("c", T0 + 4 * H, "X"),
        ev("c", T0 + 5 * H, "buy"), // c: exactly `within` later → counts
        open("d", T0 + 6 * H, "X"),
        ev("d", T0 + 7 * H + 1, "buy"), // d: 1 ms past `within` → not counted
    ]);
    let out = run_case(&cfg, &input);
    check(
        &out,
        vec![a_total(T0, 1, 1), a_dim("X", T0, 1, 1)],
        counts(8, 8, 0, 0, 0),
    );
}

#[test]
fn an_event_that_is_both_a_and_b_never_follows_itself() {
    // One filter for both roles: every event is an A and a B.
    let cfg = attr_cfg("within = \"1h\"", "unbounded")
        .replace("filter = \"bought\"", "filter = \"opened\"");
    let input = lines(&[
        open("a", T0, "X"),
        open("b", T0, "X"),
        open("b", T0 + MIN, "Y"),
    ]);
    let out = run_case(&cfg, &input);
    // a: its only event follows nothing. b: the second open follows the first (credited to X).
    let rows = vec![
        total("open", "daily", T0, T0 + DAY, 1, 1).metric("m"),
        dim("open", "campaign", "X", "daily", T0, T0 + DAY, 1, 1).metric("m"),
    ];
    check(&out, rows, counts(3, 3, 0, 0, 0));
}

/// A 1:00 (X), A 1:30 (Y), B 1:45, B 2:15, `within = "1h"`.
fn two_anchors_two_conversions() -> Vec<u8> {
    lines(&[
        open("a", T0 + H, "X"),
        open("a", T0 + 90 * MIN, "Y"),
        ev("a", T0 + 105 * MIN, "buy"),
        ev("a", T0 + 135 * MIN, "buy"),
    ])
}

#[test]
fn last_first_and_any_touch_credit() {
    let input = two_anchors_two_conversions();
    let run = |mode: &str| {
        run_case(
            &attr_cfg(
                &format!("within = \"1h\"\nattribution = \"{mode}\""),
                "unbounded",
            ),
            &input,
        )
    };
    // last: B 1:45 → Y (1:30), B 2:15 → Y (its lookback [1:15, 2:15) holds Y only).
    check(
        &run("last_touch"),
        vec![a_total(T0, 1, 2), a_dim("Y", T0, 1, 2)],
        counts(4, 4, 0, 0, 0),
    );
    // first: B 1:45 → X (1:00), B 2:15 → Y.
    check(
        &run("first_touch"),
        vec![
            a_total(T0, 1, 2),
            a_dim("X", T0, 1, 1),
            a_dim("Y", T0, 1, 1),
        ],
        counts(4, 4, 0, 0, 0),
    );
    // any: B 1:45 → X and Y, B 2:15 → Y; the total row counts each B once.
    check(
        &run("any_touch"),
        vec![
            a_total(T0, 1, 2),
            a_dim("X", T0, 1, 1),
            a_dim("Y", T0, 1, 2),
        ],
        counts(4, 4, 0, 0, 0),
    );
    // The default is last touch.
    let default = run_case(&attr_cfg("within = \"1h\"", "unbounded"), &input);
    assert_eq!(default.rows, run("last_touch").rows);
}

#[test]
fn an_anchor_without_the_dimension_credits_the_total_row_only() {
    let cfg = attr_cfg("within = \"1h\"", "unbounded");
    let input = lines(&[open("a", T0, ""), ev("a", T0 + MIN, "buy")]);
    check(
        &run_case(&cfg, &input),
        vec![a_total(T0, 1, 1)],
        counts(2, 2, 0, 0, 0),
    );
}

#[test]
fn ties_between_anchors_at_one_time_go_to_the_smallest_tuple() {
    for mode in ["last_touch", "first_touch"] {
        let cfg = attr_cfg(
            &format!("within = \"1h\"\nattribution = \"{mode}\""),
            "unbounded",
        );
        // b < c in byte order, and an absent value comes before any value.
        let abc = lines(&[
            open("a", T0, "c"),
            open("a", T0, "b"),
            ev("a", T0 + MIN, "buy"),
            open("z", T0, "b"),
            open("z", T0, ""),
            ev("z", T0 + MIN, "buy"),
        ]);
        check(
            &run_case(&cfg, &abc),
            vec![a_total(T0, 2, 2), a_dim("b", T0, 1, 1)],
            counts(6, 6, 0, 0, 0),
        );
    }
}

#[test]
fn window_on_anchor_or_conversion_across_midnight() {
    // A at 23:30 on day 0, B at 00:30 on day 1.
    let input = lines(&[open("a", T0 - 30 * MIN, "X"), ev("a", T0 + 30 * MIN, "buy")]);
    let day0 = T0 - DAY;
    let anchor = run_case(&attr_cfg("within = \"1h\"", "unbounded"), &input);
    check(
        &anchor,
        vec![a_total(day0, 1, 1), a_dim("X", day0, 1, 1)],
        counts(2, 2, 0, 0, 0),
    );
    let conv = run_case(
        &attr_cfg("within = \"1h\"\nwindow_on = \"conversion\"", "unbounded"),
        &input,
    );
    check(
        &conv,
        vec![a_total(T0, 1, 1), a_dim("X", T0, 1, 1)],
        counts(2, 2, 0, 0, 0),
    );
}

#[test]
fn a_b_is_credited_to_the_previous_days_anchor_window() {
    // "Read yesterday": A at 10:00 on day 0, B at 09:00 on day 1, within 1d, finite lateness:
    // the day-0 cell must stay open until the B can no longer arrive.
    let cfg = attr_cfg("within = \"1d\"", "1h");
    let input = lines(&[
        open("a", T0 + 10 * H, "X"),
        ev("b", T0 + 20 * H, "other"),
        ev("a", T0 + DAY + 9 * H, "buy"),
        ev("b", T0 + 3 * DAY, "other"), // moves the watermark past every firing
    ]);
    check(
        &run_case(&cfg, &input),
        vec![a_total(T0, 1, 1), a_dim("X", T0, 1, 1)],
        counts(4, 4, 0, 0, 0),
    );
}

#[test]
fn an_anchor_after_its_conversion_within_lateness_gives_the_in_order_rows() {
    let cfg = attr_cfg("within = \"1h\"", "2h");
    let in_order = lines(&[
        open("a", T0 + H, "X"),
        open("a", T0 + 90 * MIN, "Y"),
        ev("a", T0 + 105 * MIN, "buy"),
        ev("b", T0 + 2 * H, "other"),
        ev("b", T0 + 3 * DAY, "other"),
    ]);
    // The same events, but Y's open arrives after the B and after the watermark passed both.
    let shuffled = lines(&[
        open("a", T0 + H, "X"),
        ev("a", T0 + 105 * MIN, "buy"),
        ev("b", T0 + 2 * H, "other"),
        open("a", T0 + 90 * MIN, "Y"),
        ev("b", T0 + 3 * DAY, "other"),
    ]);
    let a = run_case(&cfg, &in_order);
    let b = run_case(&cfg, &shuffled);
    check(
        &a,
        vec![a_total(T0, 1, 1), a_dim("Y", T0, 1, 1)],
        counts(5, 5, 0, 0, 0),
    );
    assert_eq!(a.rows, b.rows);
    assert_eq!(a.counts, b.counts);
}

#[test]
fn a_late_anchor_counts_nowhere_and_credits_nothing() {
    // allowed_lateness 1h, within 1h, daily windows. An A at 00:30 on day 1 is late (last touch)
    // from wm ≥ E(23:30:00.001 day 0) + 1h + 1h = 02:00 on day 1.
    let cfg = attr_cfg("within = \"1h\"", "1h");
    let input = lines(&[
        ev("b", T0 + DAY + 2 * H, "other"),  // wm = 02:00 day 1
        open("a", T0 + DAY + 30 * MIN, "X"), // late
        ev("a", T0 + DAY + 2 * H + MIN, "buy"),
    ]);
    let out = run_case(&cfg, &input);
    check(&out, vec![], counts(3, 2, 0, 1, 0));
    // One millisecond less of watermark and the A is on time; its B, exactly `within` later, counts.
    let input = lines(&[
        ev("b", T0 + DAY + 2 * H - 1, "other"),
        open("a", T0 + DAY + 30 * MIN, "X"),
        ev("a", T0 + DAY + 90 * MIN, "buy"),
    ]);
    let day1 = T0 + DAY;
    check(
        &run_case(&cfg, &input),
        vec![a_total(day1, 1, 1), a_dim("X", day1, 1, 1)],
        counts(3, 3, 0, 0, 0),
    );
}

#[test]
fn a_possible_b_is_late_sooner_than_other_events() {
    // A B at 00:30 on day 1 could be credited to an A at 23:30 on day 0, whose cell fires at
    // wm ≥ 00:00 + within 1h + lateness 1h = 02:00 on day 1: from then the B is late, while any
    // other event at 00:30 stays on time until the day-1 window's own end + 1h.
    let cfg = attr_cfg("within = \"1h\"", "1h").replace(
        "[[metrics]]\nname = \"m\"",
        "[[metrics]]\nname = \"plain\"\n\n[[metrics]]\nname = \"m\"",
    );
    let input = lines(&[
        open("a", T0 + DAY - 20 * MIN, "X"),
        ev("b", T0 + DAY + 2 * H, "other"),  // wm = 02:00 day 1
        ev("a", T0 + DAY + 30 * MIN, "buy"), // late: a possible B
        ev("c", T0 + DAY + 30 * MIN, "x"),   // on time: not a B of any attribution metric
    ]);
    let out = run_case(&cfg, &input);
    let day0 = T0;
    let day1 = T0 + DAY;
    let plain = |et: &str, day: i64, c: Option<&str>| match c {
        None => total(et, "daily", day, day + DAY, 1, 1).metric("plain"),
        Some(v) => dim(et, "campaign", v, "daily", day, day + DAY, 1, 1).metric("plain"),
    };
    check(
        &out,
        vec![
            plain("open", day0, None),
            plain("open", day0, Some("X")),
            plain("other", day1, None),
            plain("x", day1, None),
        ],
        counts(4, 3, 0, 1, 0),
    );
    // A first-touch A at 00:30 is not late under the same watermark: it can only change its
    // own window's cell.
    let cfg = attr_cfg("within = \"1h\"\nattribution = \"first_touch\"", "1h");
    let input = lines(&[
        ev("b", T0 + DAY + 2 * H, "other"),
        open("a", T0 + DAY + 30 * MIN, "X"), // on time
        ev("a", T0 + DAY + 80 * MIN, "buy"), // on time (lookback from 00:20), credited to X
        ev("a", T0 + DAY + 50 * MIN, "buy"), // late: a possible B whose lookback reaches day 0
    ]);
    check(
        &run_case(&cfg, &input),
        vec![a_total(day1, 1, 1), a_dim("X", day1, 1, 1)],
        counts(4, 3, 0, 1, 0),
    );
}

#[test]
fn a_threshold_reached_only_via_two_anchors() {
    // A 1:00 (X), B 1:20, A 1:30 (Y), B 1:50; min_count = 2.
    let input = lines(&[
        open("a", T0 + H, "X"),
        ev("a", T0 + 80 * MIN, "buy"),
        open("a", T0 + 90 * MIN, "Y"),
        ev("a", T0 + 110 * MIN, "buy"),
    ]);
    let run = |mode: &str| {
        run_case(
            &attr_cfg(
                &format!("within = \"1h\"\nattribution = \"{mode}\"\nmin_count = 2"),
                "unbounded",
            ),
            &input,
        )
    };
    // last touch: B 1:20 → X, B 1:50 → Y: one each, so only the total row reaches 2.
    check(
        &run("last_touch"),
        vec![a_total(T0, 1, 2)],
        counts(4, 4, 0, 0, 0),
    );
    // any touch: B 1:50 is credited to X as well, so X reaches 2.
    check(
        &run("any_touch"),
        vec![a_total(T0, 1, 2), a_dim("X", T0, 1, 2)],
        counts(4, 4, 0, 0, 0),
    );
}

#[test]
fn attribution_config_mistakes_are_refused() {
    let base = attr_cfg("within = \"1h\"", "unbounded");
    let cases = [
        (base.replace("within = \"1h\"\n", ""), "needs `within`"),
        (
            base.replace("within = \"1h\"", "within = \"0s\""),
            "positive duration",
        ),
        (
            base.replace("after = \"opened\"", "after = \"nope\""),
            "no `[[filters]]` named `nope`",
        ),
        (
            base.replace(
                "within = \"1h\"",
                "within = \"1h\"\nattribution = \"middle\"",
            ),
            "last_touch, first_touch, any_touch",
        ),
        (
            base.replace("within = \"1h\"", "within = \"1h\"\nwindow_on = \"noon\""),
            "anchor, conversion",
        ),
        (
            base.replace("after = \"opened\"\n", ""),
            "only an attribution metric",
        ),
    ];
    for (cfg, want) in cases {
        let (o, _s) = run_case_raw(&cfg, &lines(&[ev("a", T0, "x")]), &[]);
        let err = String::from_utf8_lossy(&o.stderr);
        assert_eq!(o.status.code(), Some(2), "{cfg}: {err}");
        assert!(err.contains(want), "wanted `{want}` in: {err}");
    }
}

#[test]
fn metrics_sharing_their_anchors_count_as_each_alone() {
    // `m` and `n` differ only in attribution, window_on and by_type, so they share one journey
    // per user; each must give exactly the rows it gives alone.
    let alone = |keys: &str| attr_cfg(keys, "1h");
    let both = attr_cfg("within = \"1h\"", "1h")
        + "\n[[metrics]]\nname = \"n\"\nafter = \"opened\"\nfilter = \"bought\"\nwithin = \"1h\"\nattribution = \"any_touch\"\nwindow_on = \"conversion\"\nby_type = false\n";
    let input = lines(&[
        open("a", T0 + H, "X"),
        open("a", T0 + 90 * MIN, "Y"),
        ev("a", T0 + 105 * MIN, "buy"),
        ev("a", T0 + 135 * MIN, "buy"),
        open("b", T0 + DAY - 20 * MIN, "X"),
        ev("b", T0 + DAY + 10 * MIN, "buy"),
        ev("z", T0 + 3 * DAY, "other"),
    ]);
    let together = run_case(&both, &input);
    let m = run_case(&alone("within = \"1h\""), &input);
    let n = run_case(
        &alone("within = \"1h\"\nattribution = \"any_touch\"\nwindow_on = \"conversion\"\nby_type = false")
            .replace("name = \"m\"", "name = \"n\""),
        &input,
    );
    let of = |out: &Output, name: &str| -> Vec<Row> {
        out.rows
            .iter()
            .filter(|r| r.metric == name)
            .cloned()
            .collect()
    };
    assert!(!of(&m, "m").is_empty() && !of(&n, "n").is_empty());
    assert_eq!(of(&together, "m"), of(&m, "m"));
    assert_eq!(of(&together, "n"), of(&n, "n"));
    assert_eq!(together.counts, m.counts);
}
