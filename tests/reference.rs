//! The binary against a deliberately naive reference implementation (tests/common/naive.rs), on
//! generated data with everything the contract has to handle: skewed users, mixed-case email
//! domains, lookup misses and absent fields, jittered and badly-clocked event times, re-deliveries
//! near and far, mixed time formats, rejected and blank lines, `\r\n` line ends.
//!
//! Every run is repeated with `--threads 1`, `2` and `4`; all must equal the reference exactly.

mod common;

use std::collections::BTreeMap;
use std::path::PathBuf;

use common::naive::{self, Cfg, DimCfg, DimKind, Strategy, TimeFormat, WinCfg};
use common::refcheck::{
    assert_matches_reference, diff_against_reference, event_line, json_str, parallel_cases,
    rfc3339, show, small_random_cfg,
};
use common::{Counts, DAY, HOUR, MIN, Output, Rng, SEC, Scratch, assert_rows_eq};

// ---------------------------------------------------------------------------------------------
// a small deterministic generator

#[derive(Clone, Copy)]
struct GenOpts {
    seed: u64,
    events: usize,
    /// probability of an event from a clock hours ahead
    hours_ahead: f64,
    /// how far ahead such clocks are, in ms (upper bound)
    hours_ahead_max: i64,
    /// probability of an event from a clock years ahead
    years_ahead: f64,
}

impl Default for GenOpts {
    fn default() -> Self {
        GenOpts {
            seed: 42,
            events: 15_000,
            hours_ahead: 0.01,
            hours_ahead_max: 9 * HOUR,
            years_ahead: 0.0015,
        }
    }
}

const DOMAINS: &[&str] = &[
    "gmail.com",
    "Gmail.COM",
    "GMAIL.com",
    "yahoo.com",
    "Yahoo.Com",
    "outlook.com",
    "proton.me",
    "Example.ORG",
    "mail.example.org",
];

/// The user string of user `i` and whether it has a non-ASCII character (written escaped or not).
fn user_name(i: u64) -> String {
    if i % 37 == 5 {
        format!("anon-{i}") // no `@`: no provider
    } else if i % 53 == 7 {
        format!("weird{i}@") // nothing after `@`: no provider
    } else if i % 41 == 3 {
        format!("a@b{i}@Corp.Example.COM") // the last `@` counts
    } else if i % 61 == 11 {
        format!("josé{i}@Proton.ME")
    } else if i.is_multiple_of(29) {
        format!("User{i}@{}", DOMAINS[(i as usize * 7) % DOMAINS.len()])
    } else {
        format!("user{i}@{}", DOMAINS[(i as usize * 7) % DOMAINS.len()])
    }
}

/// Renders `t` in one of the formats `auto` accepts; the reference parses it back on its own.
fn time_value(t: i64, rng: &mut Rng) -> String {
    let r = rng.unit();
    if r < 0.38 {
        format!("{t}") // ms integer
    } else if r < 0.58 {
        format!("{}", t / 1000) // seconds integer
    } else if r < 0.63 {
        // seconds with an exactly representable fraction
        format!("{}.{}", t / 1000, rng.pick(&["0", "25", "5", "75", "250"]))
    } else if r < 0.66 {
        format!("{t}.0") // ms as a float
    } else if r < 0.84 {
        json_str(&rfc3339(t, 0, 'T', "Z", 3, rng), false)
    } else if r < 0.90 {
        let off = *rng.pick(&[120i64, -300, 330, -570, 0, 60]);
        let digits = *rng.pick(&[0usize, 1, 2, 3, 6, 9]);
        json_str(&rfc3339(t, off, 'T', "Z", digits, rng), false)
    } else if r < 0.95 {
        let sep = *rng.pick(&['t', ' ', 'T']);
        let z = *rng.pick(&["z", "Z"]);
        json_str(&rfc3339(t, 0, sep, z, 3, rng), false)
    } else if rng.chance(0.5) {
        json_str(&format!("{}", t / 1000), false) // seconds as a digit string
    } else {
        json_str(&format!("{t}"), false) // ms as a digit string
    }
}

fn reject_line(clock: i64, rng: &mut Rng) -> Vec<u8> {
    let ahead = clock + 10 * HOUR; // would move a watermark if it were (wrongly) accepted
    let kind = rng.below(20);
    let l = match kind {
        0 => format!(r#"{{"email":"x@y.com","timestamp":{ahead},"type":"open""#),
        1 => rng
            .pick(&["[1,2,3]", "\"hello\"", "42", "null", "true"])
            .to_string(),
        2 => format!(r#"{{"timestamp":{ahead},"type":"open","id":"r1"}}"#),
        3 => format!(r#"{{"email":null,"timestamp":{ahead},"type":"open"}}"#),
        4 => format!(r#"{{"email":"","timestamp":{ahead},"type":"open"}}"#),
        5 => format!(r#"{{"email":17,"timestamp":{ahead},"type":"open"}}"#),
        6 => r#"{"email":"a@b.com","type":"open"}"#.to_string(),
        7 => r#"{"email":"a@b.com","timestamp":null,"type":"open"}"#.to_string(),
        8 => format!(
            r#"{{"email":"a@b.com","timestamp":{},"type":"open"}}"#,
            rng.pick(&[
                "\"yesterday\"",
                "true",
                "\"2024-05-01T00:00:00\"",
                "\"2024-02-30T00:00:00Z\"",
                "{}",
                "\"\""
            ])
        ),
        9 => format!(
            r#"{{"email":"a@b.com","timestamp":{},"type":"open"}}"#,
            rng.pick(&[
                "\"1969-12-31T23:59:59Z\"",
                "4102444800",
                "\"2100-01-01T00:00:00Z\"",
                "-5",
                "\"-5\"",
                "99999999999"
            ])
        ),
        10 => format!(r#"{{"email":"a@b.com","timestamp":{ahead}}}"#),
        11 => format!(r#"{{"email":"a@b.com","timestamp":{ahead},"type":""}}"#),
        12 => format!(r#"{{"email":"a@b.com","timestamp":{ahead},"type":3}}"#),
        13 => format!(
            r#"{{"email":"a@b.com","timestamp":{ahead},"type":"open","id":{}}}"#,
            rng.pick(&["true", "{\"x\":1}", "1.5", "[1]"])
        ),
        14 => format!(r#"{{"email":"a@b.com","timestamp":{ahead},"type":"open","browser":12}}"#),
        15 => format!(
            r#"{{"email":"a@b.com","timestamp":{ahead},"type":"open","message_id":["m1"]}}"#
        ),
        16 => {
            let mut v = br#"{"email":"bad"#.to_vec();
            v.push(0xff);
            v.extend_from_slice(
                format!(r#"@x.com","timestamp":{ahead},"type":"open"}}"#).as_bytes(),
            );
            return v;
        }
        17 => format!(
            r#"{{"email":"a@b.com","timestamp":{ahead},"type":"open","pad":"{}"}}"#,
            "x".repeat(3000)
        ),
        // several faults at once: the first in the documented order wins
        18 => r#"{"timestamp":"nope","type":5}"#.to_string(),
        _ => {
            let mut v = br#"{"email":"bad"#.to_vec();
            v.push(0xfe);
            v.extend_from_slice(format!(r#"","pad":"{}"}}"#, "y".repeat(2100)).as_bytes());
            return v;
        }
    };
    l.into_bytes()
}

/// The generated input: one byte string, lines ended by `\n` or (sometimes) `\r\n`.
fn generate(o: GenOpts) -> Vec<u8> {
    let mut rng = Rng(o.seed);
    let mut lines: Vec<Vec<u8>> = Vec::new();
    let mut emitted: Vec<Vec<u8>> = Vec::new(); // valid event lines, for re-delivery
    let mut pending: Vec<(usize, Vec<u8>)> = Vec::new(); // (emit at lines.len(), line)
    let start = naive::parse_rfc3339("2024-04-30T18:37:12.345Z").unwrap();
    let mut clock = start;
    let types: &[(&str, f64)] = &[
        ("send", 0.40),
        ("open", 0.30),
        ("click", 0.20),
        ("bounce", 0.07),
        ("unsubscribe", 0.03),
    ];

    for serial in 0..o.events as u64 {
        clock += rng.range(0, 20 * SEC);

        // event time: mostly the clock with minutes of jitter, sometimes clocks off by hours or years
        let r = rng.unit();
        let mut years_off = false;
        let t = if r < 0.80 {
            clock + rng.range(-5 * MIN, 2 * MIN)
        } else if r < 0.92 {
            clock - rng.range(5 * MIN, 40 * MIN)
        } else if r < 0.96 {
            clock - rng.range(40 * MIN, 3 * HOUR)
        } else if r < 0.98 {
            clock - rng.range(3 * HOUR, 9 * HOUR)
        } else if r < 0.98 + o.hours_ahead {
            clock + rng.range(10 * MIN, o.hours_ahead_max)
        } else if r < 0.98 + o.hours_ahead + 0.003 {
            years_off = true;
            clock - rng.range(1, 6) * 365 * DAY - rng.range(0, DAY)
        } else if r < 0.98 + o.hours_ahead + 0.003 + o.years_ahead {
            years_off = true;
            clock + rng.range(1, 4) * 365 * DAY + rng.range(0, DAY)
        } else {
            clock
        };

        // a skewed user
        let u = (400.0 * rng.unit().powi(3)) as u64;
        let name = user_name(u);
        let mut fields: Vec<(String, String)> = Vec::new();
        fields.push(("email".into(), json_str(&name, rng.chance(0.5))));
        fields.push(("timestamp".into(), time_value(t, &mut rng)));
        let x = rng.unit();
        let mut acc = 0.0;
        let mut ty = "send";
        for (name, p) in types {
            acc += p;
            if x < acc {
                ty = name;
                break;
            }
        }
        fields.push(("type".into(), json_str(ty, false)));
        let r = rng.unit();
        if r < 0.7 {
            fields.push(("id".into(), json_str(&format!("e{serial:x}"), false)));
        } else if r < 0.9 {
            fields.push(("id".into(), format!("{}", 1_000_000 + serial)));
        } else if r < 0.95 {
            fields.push(("id".into(), "null".into()));
        }
        let r = rng.unit();
        if r < 0.85 {
            let k = (50.0 * rng.unit().powi(2)) as u64;
            fields.push(("message_id".into(), json_str(&format!("m{k}"), false)));
        } else if r < 0.90 {
            fields.push(("message_id".into(), "null".into()));
        } else if r < 0.93 {
            fields.push(("message_id".into(), "\"\"".into()));
        }
        let r = rng.unit();
        if r < 0.70 {
            fields.push((
                "browser".into(),
                json_str(
                    rng.pick::<&str>(&["chrome", "firefox", "safari", "edge", "Chrome"]),
                    false,
                ),
            ));
        } else if r < 0.75 {
            fields.push(("browser".into(), "null".into()));
        } else if r < 0.78 {
            fields.push(("browser".into(), "\"\"".into()));
        }
        if rng.chance(0.1) {
            fields.push(("geo".into(), r#"{"c":"DE","n":[1,2.5,null]}"#.into()));
        }
        if rng.chance(0.1) {
            fields.push((
                "ua".into(),
                json_str("Mozilla/5.0 (X11; \"quoted\") \\ back", false),
            ));
        }

        // sometimes a rejected twin (same user and id, a dimension of the wrong type) comes first:
        // rejected lines are not seen by duplicate detection
        if rng.chance(0.003) {
            let mut twin = fields.clone();
            twin.push(("browser".into(), "12".into()));
            twin.retain(|(k, v)| k != "browser" || v == "12");
            lines.push(event_line(&mut twin, &mut rng).into_bytes());
        }

        let line = event_line(&mut fields, &mut rng).into_bytes();
        lines.push(line.clone());
        emitted.push(line.clone());

        // a years-old (or years-ahead) event is often re-delivered a few lines later
        if years_off && rng.chance(0.6) {
            pending.push((lines.len() + rng.range(0, 4) as usize, line.clone()));
        }
        // re-deliveries: near (one of the last 30) and far (anything before)
        if rng.chance(0.02) {
            let n = emitted.len();
            let i = n - 1 - rng.below(n.min(30) as u64) as usize;
            lines.push(emitted[i].clone());
        }
        if rng.chance(0.006) {
            let i = rng.below(emitted.len() as u64) as usize;
            lines.push(emitted[i].clone());
        }
        pending.retain(|(at, l)| {
            if *at <= lines.len() {
                lines.push(l.clone());
                false
            } else {
                true
            }
        });
        if rng.chance(0.006) {
            lines.push(reject_line(clock, &mut rng));
        }
        if rng.chance(0.003) {
            lines.push(rng.pick(&["", "   ", "\t \t", " "]).as_bytes().to_vec());
        }
    }
    for (_, l) in pending {
        lines.push(l);
    }

    let mut out = Vec::new();
    for l in lines {
        out.extend_from_slice(&l);
        if rng.chance(0.02) {
            out.push(b'\r');
        }
        out.push(b'\n');
    }
    out
}

// ---------------------------------------------------------------------------------------------
// configs

fn campaigns() -> BTreeMap<String, String> {
    // m0..m39 are known (several share a campaign), m40..m49 are misses
    (0..40)
        .map(|k| (format!("m{k}"), format!("camp-{}", k % 9)))
        .collect()
}

fn base_cfg() -> Cfg {
    Cfg {
        user: "email".into(),
        time: "timestamp".into(),
        time_format: TimeFormat::Auto,
        event_type: "type".into(),
        event_id: Some("id".into()),
        ttl: "2h".into(),
        strategy: Strategy::Median,
        sample: 500,
        interval: 128,
        max_out_of_orderness: "10m".into(),
        allowed_lateness: "15m".into(),
        max_line_bytes: 2048,
        dims: vec![
            DimCfg {
                name: "provider".into(),
                field: "email".into(),
                kind: DimKind::EmailDomain,
            },
            DimCfg {
                name: "campaign".into(),
                field: "message_id".into(),
                kind: DimKind::Lookup("campaigns.csv".into(), campaigns()),
            },
            DimCfg {
                name: "browser".into(),
                field: "browser".into(),
                kind: DimKind::Raw,
            },
        ],
        windows: vec![
            WinCfg {
                name: "q15".into(),
                size: "15m".into(),
                slide: None,
            },
            WinCfg {
                name: "hourly".into(),
                size: "1h".into(),
                slide: None,
            },
            WinCfg {
                name: "h3".into(),
                size: "3h".into(),
                slide: Some("1h".into()),
            },
            WinCfg {
                name: "daily".into(),
                size: "1d".into(),
                slide: None,
            },
            WinCfg {
                name: "last-24h".into(),
                size: "24h".into(),
                slide: Some("1h".into()),
            },
        ],
        filters: vec![],
        metrics: vec![],
    }
}

// ---------------------------------------------------------------------------------------------
// checks

/// Writes the input, runs the reference and the binary with 1, 2 and 4 threads, compares.
fn check(cfg: &Cfg, input: &[u8]) -> (naive::Outcome, Vec<Output>) {
    let s = Scratch::new();
    let config = cfg.write(s.dir.path());
    let inp = s.write("events.ndjson", input);
    let r = naive::reference(cfg, &[input.to_vec()]);
    let c = r.counts;
    assert_eq!(c.lines, c.counted + c.duplicates + c.late + c.rejected);
    assert!(
        c.counted > 1000 && c.duplicates > 20 && c.rejected > 20,
        "the data must exercise everything: {c:?}"
    );
    let mut outs = Vec::new();
    for threads in [1, 2, 4] {
        let out = s.run(std::slice::from_ref(&inp), &config, threads);
        assert_matches_reference(&out, &r, &format!("--threads {threads}"));
        outs.push(out);
    }
    (r, outs)
}

// ---------------------------------------------------------------------------------------------
// tests

#[test]
fn median_watermark_tumbling_and_sliding_windows() {
    let cfg = base_cfg();
    let input = generate(GenOpts::default());
    let (r, _) = check(&cfg, &input);
    assert!(
        r.counts.late > 50,
        "lateness must really happen: {:?}",
        r.counts
    );
    assert!(
        r.late_duplicates > 0,
        "some duplicates must arrive after their windows fired"
    );
    // every dimension and both kinds of windows produce rows
    for d in ["provider", "campaign", "browser"] {
        assert!(
            r.rows.iter().any(|x| x.dimension.as_deref() == Some(d)),
            "{d}"
        );
    }
    assert!(
        r.rows
            .iter()
            .any(|x| x.value.as_deref() == Some("gmail.com"))
    );
    assert!(
        !r.rows
            .iter()
            .any(|x| x.value.as_deref() == Some("Gmail.COM"))
    );
}

#[test]
fn max_watermark() {
    let mut cfg = base_cfg();
    cfg.strategy = Strategy::Max;
    cfg.max_out_of_orderness = "20m".into();
    cfg.allowed_lateness = "30m".into();
    cfg.interval = 64;
    // a "max" watermark jumps to the latest clock: keep clocks ahead rare and only slightly ahead
    let input = generate(GenOpts {
        seed: 7,
        hours_ahead: 0.0007,
        hours_ahead_max: 2 * HOUR,
        years_ahead: 0.0,
        ..GenOpts::default()
    });
    let (r, _) = check(&cfg, &input);
    assert!(
        r.counts.late > 50,
        "lateness must really happen: {:?}",
        r.counts
    );
    assert!(
        r.counts.counted > r.counts.late * 3,
        "most events count: {:?}",
        r.counts
    );
}

#[test]
fn unbounded_lateness() {
    let mut cfg = base_cfg();
    cfg.allowed_lateness = "unbounded".into();
    cfg.ttl = "6h".into();
    cfg.windows.truncate(4); // without last-24h: more data stays fast
    let input = generate(GenOpts {
        seed: 1234,
        ..GenOpts::default()
    });
    let (r, outs) = check(&cfg, &input);
    assert_eq!(r.counts.late, 0);
    assert!(
        r.recounted > 0,
        "some re-deliveries must come after their dedup record expired"
    );
    for o in &outs {
        assert!(o.late.is_empty());
    }
    // years-old events are counted in their own windows
    assert!(
        r.rows
            .iter()
            .any(|x| x.start_ms < naive::parse_rfc3339("2024-01-01T00:00:00Z").unwrap())
    );
}

#[test]
fn median_watermark_small_sample_every_event() {
    // a tiny sample and interval 1: the watermark follows the stream closely
    let mut cfg = base_cfg();
    cfg.sample = 31;
    cfg.interval = 1;
    cfg.max_out_of_orderness = "0s".into();
    cfg.allowed_lateness = "5m".into();
    cfg.ttl = "30m".into();
    cfg.windows = vec![
        WinCfg {
            name: "m10".into(),
            size: "10m".into(),
            slide: None,
        },
        WinCfg {
            name: "h2-30m".into(),
            size: "2h".into(),
            slide: Some("30m".into()),
        },
    ];
    let input = generate(GenOpts {
        seed: 99,
        events: 8000,
        ..GenOpts::default()
    });
    let (r, _) = check(&cfg, &input);
    assert!(r.counts.late > 100, "{:?}", r.counts);
}

/// rows == plain batch computation over (input − rejected − duplicates − the lines in late/), with
/// a TTL so long that duplicate detection is "first copy wins".
#[test]
fn batch_invariant_over_late_side_file() {
    let mut cfg = base_cfg();
    cfg.ttl = "36500d".into();
    let input = generate(GenOpts {
        seed: 555,
        ..GenOpts::default()
    });
    let s = Scratch::new();
    let config = cfg.write(s.dir.path());
    let inp = s.write("events.ndjson", &input);
    for threads in [1, 4] {
        let out = s.run(std::slice::from_ref(&inp), &config, threads);
        let late: Vec<&[u8]> = {
            let mut v: Vec<&[u8]> = out.late.split(|&b| b == b'\n').collect();
            assert_eq!(v.pop(), Some(&b""[..]), "late/ must end with a newline");
            v
        };
        assert!(late.len() > 50, "lateness must really happen");
        assert_eq!(late.len() as u64, out.counts.late);

        // the late lines are a subsequence of the input's lines, in stream order
        let lines = naive::split_lines(std::slice::from_ref(&input));
        let mut is_late = vec![false; lines.len()];
        let mut p = 0;
        for (i, l) in lines.iter().enumerate() {
            if p < late.len() && l.as_slice() == late[p] {
                is_late[i] = true;
                p += 1;
            }
        }
        assert_eq!(
            p,
            late.len(),
            "late/ line {p} is not an input line in stream order: {}",
            show(late.get(p).copied().unwrap_or(b""))
        );

        // plain batch: parse, drop rejected and late, keep the first copy of every (user, id)
        let mut seen = std::collections::HashSet::new();
        let mut events = Vec::new();
        let mut rejected = 0;
        let mut accepted = 0;
        for (i, l) in lines.iter().enumerate() {
            let Ok(ev) = naive::parse_line(&cfg, l) else {
                rejected += 1;
                continue;
            };
            accepted += 1;
            if is_late[i] {
                continue;
            }
            if let Some(id) = &ev.id
                && !seen.insert((ev.user.clone(), id.clone()))
            {
                continue;
            }
            events.push(ev);
        }
        let rows = naive::aggregate(&cfg, &events);
        assert_rows_eq(
            &out.rows,
            &rows,
            &format!("--threads {threads}: batch over input minus late/ minus duplicates"),
        );
        assert_eq!(out.counts.lines, lines.len() as u64);
        assert_eq!(out.counts.rejected, rejected);
        assert_eq!(out.counts.counted, events.len() as u64);
        assert_eq!(
            out.counts.duplicates,
            accepted - events.len() as u64 - late.len() as u64
        );
    }
}

/// Several input files, plain and zstd (one of two frames), `.ndjson` and `.jsonl`, an empty one
/// and a folder, given in an order that is not the alphabetical one, are read as one stream in the
/// given order.
#[test]
fn several_files_are_one_stream_in_the_given_order() {
    let cfg = base_cfg();
    let input = generate(GenOpts {
        seed: 77,
        events: 10_000,
        ..GenOpts::default()
    });
    // cut at line boundaries into 5 pieces
    let nl: Vec<usize> = input
        .iter()
        .enumerate()
        .filter(|(_, b)| **b == b'\n')
        .map(|(i, _)| i + 1)
        .collect();
    let cuts = [
        0,
        nl[nl.len() / 7],
        nl[nl.len() / 3],
        nl[nl.len() / 2],
        nl[nl.len() * 4 / 5],
        input.len(),
    ];
    let piece = |i: usize| &input[cuts[i]..cuts[i + 1]];

    let s = Scratch::new();
    let config = cfg.write(s.dir.path());
    let mut last = piece(4).to_vec();
    assert_eq!(last.pop(), Some(b'\n'));
    if last.last() == Some(&b'\r') {
        last.pop();
    } // the last file's last line has no newline
    let files: Vec<PathBuf> = vec![
        s.write("in/z-first.ndjson", piece(0)),
        {
            // two zstd frames, the first ending in the middle of a line
            let p = piece(1);
            let mid = p.len() / 2;
            let mut z = zstd::stream::encode_all(&p[..mid], 3).unwrap();
            z.extend(zstd::stream::encode_all(&p[mid..], 1).unwrap());
            s.write("in/c-second.ndjson.zst", z)
        },
        s.write("in/empty.ndjson", b""),
        {
            s.write("in/dir-third/only.jsonl", piece(2));
            s.path("in/dir-third")
        },
        s.write_zst("in/a-fourth.jsonl.zst", piece(3)),
        s.write("in/b-fifth.jsonl", &last),
    ];
    let r = naive::reference(&cfg, std::slice::from_ref(&input));
    assert!(r.counts.late > 0 && r.counts.duplicates > 0);
    // the order matters: read alphabetically, the same files give another result
    let alphabetical = [
        piece(3).to_vec(),
        last.clone(),
        piece(1).to_vec(),
        piece(2).to_vec(),
        piece(0).to_vec(),
    ];
    let r_alpha = naive::reference(&cfg, &alphabetical);
    assert!(r_alpha.late_lines != r.late_lines && r_alpha.rows != r.rows);
    for threads in [1, 2, 4] {
        let out = s.run(&files, &config, threads);
        assert_matches_reference(&out, &r, &format!("5 files, --threads {threads}"));
    }
    // and the same as the single file
    let single = s.write("single.ndjson", &input);
    let out = s.run(&[single], &config, 2);
    assert_matches_reference(&out, &r, "one file");
}

/// A short random stream on a 5-minute grid (± 1 ms), so that watermark, lateness and TTL
/// boundaries are hit exactly and often.
fn small_random_input(rng: &mut Rng) -> Vec<u8> {
    let n = rng.range(5, 61);
    let mut clock = common::T0 + rng.range(0, 12) * 5 * MIN;
    let mut lines: Vec<String> = Vec::new();
    for _ in 0..n {
        let r = rng.unit();
        if r < 0.15 && !lines.is_empty() {
            let i = rng.below(lines.len() as u64) as usize;
            lines.push(lines[i].clone()); // a re-delivery
            continue;
        }
        if r < 0.18 {
            lines.push(format!(r#"{{"u":"a","t":{}}}"#, clock + 10 * HOUR)); // rejected: no type
            continue;
        }
        clock += *rng.pick(&[0, MIN, 5 * MIN, 5 * MIN, 10 * MIN]);
        let r = rng.unit();
        let t = if r < 0.75 {
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
        } else if r < 0.9 {
            clock - rng.range(2, 5) * HOUR
        } else {
            clock + rng.range(1, 4) * HOUR
        };
        let t = t.max(0);
        let mut fields: Vec<(String, String)> = vec![
            (
                "u".into(),
                json_str(rng.pick::<&str>(&["a", "b", "c@X.org", "d@x.ORG"]), false),
            ),
            (
                "t".into(),
                if rng.chance(0.8) {
                    format!("{t}")
                } else {
                    json_str(&rfc3339(t, 0, 'T', "Z", 3, rng), false)
                },
            ),
            ("e".into(), json_str(rng.pick::<&str>(&["x", "y"]), false)),
        ];
        let r = rng.unit();
        if r < 0.6 {
            fields.push((
                "id".into(),
                json_str(&format!("{}", rng.range(1, 7)), false),
            ));
        } else if r < 0.7 {
            fields.push(("id".into(), format!("{}", rng.range(1, 7))));
        }
        if rng.chance(0.5) {
            fields.push((
                "b".into(),
                json_str(rng.pick::<&str>(&["chrome", "firefox"]), false),
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

/// Hundreds of short random streams and configs, each against the reference.
#[test]
fn many_small_random_streams() {
    const CASES: u64 = 160;
    const WORKERS: u64 = 3;
    let s = Scratch::new();
    let base = s.dir.path();
    let one_case = |seed: u64| -> Counts {
        let mut rng = Rng(seed.wrapping_mul(0x2545_F491_4F6C_DD1D) ^ 0xABCD);
        let cfg = small_random_cfg(&mut rng);
        let input = small_random_input(&mut rng);
        let dir = base.join(format!("case-{seed}"));
        let config = cfg.write(&dir);
        let inp = dir.join("events.ndjson");
        std::fs::write(&inp, &input).unwrap();
        let r = naive::reference(&cfg, std::slice::from_ref(&input));
        let threads = 1 + (seed % 4) as usize;
        let out = common::run(&[inp], &config, &dir.join("out"), threads);
        if let Err(e) =
            diff_against_reference(&out, &r, &format!("seed {seed}, --threads {threads}"))
        {
            panic!(
                "{e}\n--- config.toml ---\n{}--- events.ndjson ---\n{}",
                cfg.toml(),
                String::from_utf8_lossy(&input)
            );
        }
        r.counts
    };
    let mut totals = Counts::default();
    for c in parallel_cases(CASES, WORKERS, one_case) {
        totals.lines += c.lines;
        totals.counted += c.counted;
        totals.duplicates += c.duplicates;
        totals.late += c.late;
        totals.rejected += c.rejected;
    }
    assert!(
        totals.late > 150 && totals.duplicates > 150 && totals.rejected > 40,
        "{totals:?}"
    );
}

/// Sanity checks of the reference itself, so a mistake in it is not mistaken for an engine bug.
#[test]
fn reference_self_check() {
    assert_eq!(naive::parse_rfc3339("1970-01-01T00:00:00Z"), Some(0));
    assert_eq!(
        naive::parse_rfc3339("2024-05-01T00:00:00Z"),
        Some(common::T0)
    );
    assert_eq!(
        naive::parse_rfc3339("2024-05-01 02:00:00.250+02:00"),
        Some(common::T0 + 250)
    );
    assert_eq!(
        naive::parse_rfc3339("2024-04-30t23:00:00.0019-01:00"),
        Some(common::T0 + 1)
    );
    assert_eq!(
        naive::parse_rfc3339("2100-01-01T00:00:00Z"),
        Some(4_102_444_800_000)
    );
    assert_eq!(
        naive::parse_rfc3339("2024-02-29T00:00:00Z"),
        Some(1_709_164_800_000)
    );
    assert_eq!(naive::parse_rfc3339("2023-02-29T00:00:00Z"), None);
    let mut rng = Rng(3);
    for t in [
        0,
        1,
        common::T0 - 1,
        common::T0,
        1_709_164_800_000 - 1,
        4_102_444_799_999,
    ] {
        for off in [0, 120, -570] {
            if t + off * MIN < 0 {
                continue;
            }
            assert_eq!(
                naive::parse_rfc3339(&rfc3339(t, off, 'T', "Z", 3, &mut rng)),
                Some(t),
                "{t} {off}"
            );
        }
    }
    let cfg = base_cfg();
    let w = naive::windows_containing(&cfg, common::T0 + 2 * HOUR + 30 * MIN);
    let h3: Vec<_> = w
        .iter()
        .filter(|x| x.0 == "h3")
        .map(|x| x.1 - common::T0)
        .collect();
    assert_eq!(h3, vec![0, HOUR, 2 * HOUR]);
    assert_eq!(w.iter().filter(|x| x.0 == "last-24h").count(), 24);
    assert_eq!(
        w.iter()
            .filter(|x| x.0 == "daily")
            .map(|x| (x.1, x.2))
            .collect::<Vec<_>>(),
        vec![(common::T0, common::T0 + DAY)]
    );
    let ok = |l: &str| naive::parse_line(&cfg, l.as_bytes());
    let e = ok(r#"{"email":"A@b@Gmail.COM","timestamp":"1714521600","type":"x","id":7,"message_id":"m40","browser":""}"#).unwrap();
    assert_eq!((e.t, e.id.as_deref()), (common::T0, Some("7")));
    assert_eq!(
        e.dims,
        vec![("provider".to_string(), "gmail.com".to_string())]
    );
    assert_eq!(
        ok(r#"{"email":"a","timestamp":1714521600.25,"type":"x"}"#)
            .unwrap()
            .t,
        common::T0 + 250
    );
    assert_eq!(
        ok(r#"{"email":"a","timestamp":100000000000,"type":"x"}"#)
            .unwrap()
            .t,
        100_000_000_000
    );
    assert_eq!(
        ok(r#"{"email":"a","timestamp":99999999999,"type":"x"}"#).unwrap_err(),
        "time out of range"
    );
    assert_eq!(
        ok(r#"{"timestamp":"x","type":5}"#).unwrap_err(),
        "missing user"
    );
    // the generator's data parse as the reference expects
    let input = generate(GenOpts {
        events: 2000,
        ..GenOpts::default()
    });
    let r = naive::reference(&cfg, &[input]);
    let _: Counts = r.counts;
    assert!(
        r.counts.rejected > 0 && r.counts.duplicates > 0,
        "{:?}",
        r.counts
    );
}
