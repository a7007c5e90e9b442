//! Fuzzing the line parser, in the library and through the whole binary.
//!
//! * `parser_never_panics_and_describe_agrees`: arbitrary bytes and structured near-JSON (random
//!   objects with random field types, deep nesting, huge and odd numbers, escapes, NUL, lone
//!   surrogates, truncation and byte flips) through `abacus::parse::Parser::parse` and `describe`
//!   under several configs. Asserts: no panic; a rejected line leaves `keys` alone and `describe`
//!   refuses it too; an accepted line's `describe` returns exactly `parse`'s key hashes, and each
//!   key's strings hash to that key; the user identity is xxh3 of the user string as an independent
//!   JSON parser (serde_json) reads it; the result does not depend on what the parser saw before;
//!   the engine's parser (single-pass scanner first) gives exactly the answer, keys and strings of
//!   the simd-json-only reference parser, and the scanner settles a good share of the lines.
//! * `binary_on_random_files_exits_0_and_balances`: random files of such lines through the binary:
//!   exit 0, `lines = counted + duplicates + late + rejected`, and exactly the lines the library
//!   rejects are in `rejected/`, with their codes.
//!
//! Budget: `PARSER_CASES` cases (each line through 4 configs × 2 parsers) and `BINARY_CASES` runs of
//! the binary take about 20–30 s together in release mode on a slow 2-core machine; raise them
//! locally (`ABACUS_FUZZ_SCALE=10 cargo test --release --test fuzz_parse`) for a longer hunt.

mod common;

use std::cell::RefCell;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::Command;

use abacus::config::Config;
use abacus::parse::{KeyStrings, Parser, key_hash};
use proptest::prelude::*;
use proptest::test_runner::{
    Config as ProptestConfig, FileFailurePersistence, TestCaseError, TestRunner,
};
use xxhash_rust::xxh3::xxh3_64;

use common::REJECT_CODES;

const PARSER_CASES: u32 = 300_000;
const BINARY_CASES: u32 = 150;

/// Where proptest records failing inputs (replayed first on the next run); relative to the package.
const REGRESSIONS: &str = "tests/corpus/fuzz_parse.proptest-regressions";

fn scale() -> u32 {
    std::env::var("ABACUS_FUZZ_SCALE")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(1)
        .max(1)
}

// ───────────────────────────── configs ─────────────────────────────

const LOOKUP_CSV: &str = "key,value\nm-1,spring\nm-2,spring\nm-3,autumn\nü-4,ünïcode\n";

/// Config texts: the four time formats, a small line limit, a custom time range, dimensions of every
/// kind (raw, email domain, lookup), a dimension on the user field itself, no event id.
fn config_texts() -> Vec<String> {
    let dims = "[[dimensions]]\nname = \"browser\"\nfield = \"b\"\n\n\
                [[dimensions]]\nname = \"provider\"\nfield = \"u\"\nextract = \"email_domain\"\n\n\
                [[dimensions]]\nname = \"campaign\"\nfield = \"m\"\nlookup = \"campaigns.csv\"\n\n\
                [[dimensions]]\nname = \"who\"\nfield = \"u\"\n\n";
    let windows = "[[windows]]\nname = \"h\"\nsize = \"1h\"\n\n[[windows]]\nname = \"d\"\nsize = \"1d\"\nslide = \"6h\"\n";
    vec![
        format!(
            "[fields]\nuser = \"u\"\ntime = \"t\"\nevent_type = \"e\"\nevent_id = \"id\"\n\n\
             [watermark]\ninterval = 50\nsample = 200\nmax_out_of_orderness = \"10m\"\nallowed_lateness = \"30m\"\n\n\
             [dedup]\nttl = \"2h\"\n\n{dims}{windows}"
        ),
        format!(
            "[fields]\nuser = \"u\"\ntime = \"t\"\ntime_format = \"unix_s\"\nevent_type = \"e\"\nevent_id = \"id\"\n\n\
             [limits]\nmax_line_bytes = 120\n\n\
             [watermark]\nstrategy = \"max\"\ninterval = 20\nmax_out_of_orderness = \"1h\"\nallowed_lateness = \"0s\"\n\n{dims}{windows}"
        ),
        format!(
            "[fields]\nuser = \"u\"\ntime = \"t\"\ntime_format = \"unix_ms\"\nevent_type = \"e\"\n\n\
             [limits]\ntime_min = \"2024-01-01T00:00:00Z\"\ntime_max = \"2025-01-01T00:00:00Z\"\n\n{dims}{windows}"
        ),
        format!(
            "[fields]\nuser = \"u\"\ntime = \"t\"\ntime_format = \"rfc3339\"\nevent_type = \"e\"\nevent_id = \"id\"\n\n\
             [watermark]\nallowed_lateness = \"unbounded\"\n\n{dims}{windows}"
        ),
    ]
}

/// Writes the configs and the lookup CSV into `dir`; returns their paths.
fn write_configs(dir: &Path) -> Vec<PathBuf> {
    std::fs::write(dir.join("campaigns.csv"), LOOKUP_CSV).unwrap();
    config_texts()
        .iter()
        .enumerate()
        .map(|(i, t)| {
            let p = dir.join(format!("fuzz{i}.toml"));
            std::fs::write(&p, t).unwrap();
            p
        })
        .collect()
}

fn configs() -> (tempfile::TempDir, Vec<Config>) {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("campaigns.csv"), LOOKUP_CSV).unwrap();
    let configs = config_texts()
        .iter()
        .map(|t| Config::parse(&dir.path().join("fuzz.toml"), t).unwrap())
        .collect();
    (dir, configs)
}

// ───────────────────────────── line strategies ─────────────────────────────

/// A JSON string literal (with quotes) made of ordinary characters and hostile escapes.
fn json_string() -> impl Strategy<Value = Vec<u8>> {
    let piece = prop_oneof![
        6 => any::<char>().prop_map(|c| match c {
            '"' => b"\\\"".to_vec(),
            '\\' => b"\\\\".to_vec(),
            c if (c as u32) < 0x20 => format!("\\u{:04x}", c as u32).into_bytes(),
            c => c.to_string().into_bytes(),
        }),
        3 => "[a-zA-Z0-9@._-]".prop_map(|s| s.into_bytes()),
        1 => prop::sample::select(vec![
            &b"\\n"[..], b"\\\"", b"\\\\", b"\\/", b"\\b", b"\\f", b"\\r", b"\\t", b"\\u0000", b"\\u00e9",
            b"\\ud800", b"\\udbff", b"\\udc00", b"\\ud83d\\ude00", b"\\ud800\\u0041", b"\\ud800\\ud800",
            b"\\uZZZZ", b"\\u12", b"\\x", b"\\", b"\x00", b"\x01", b"\x7f", b"\xff", b"\xc3", b"\xed\xa0\x80",
            b"@", b"@GMail.COM", b"m-1", b"m-3", "ü-4".as_bytes(), b"2024-05-01T00:00:00Z",
        ])
        .prop_map(|s| s.to_vec()),
        1 => rfc3339_ish().prop_map(|s| s.into_bytes()),
    ];
    prop::collection::vec(piece, 0..12).prop_map(|pieces| {
        let mut v = vec![b'"'];
        for p in pieces {
            v.extend(p);
        }
        v.push(b'"');
        v
    })
}

/// Almost RFC 3339: sometimes valid, often off by a field.
fn rfc3339_ish() -> impl Strategy<Value = String> {
    (
        prop_oneof![Just(2024i64), 1960i64..2110, 0i64..10_000],
        0u32..14,
        0u32..33,
        0u32..26,
        0u32..61,
        0u32..62,
        prop::option::of("[0-9]{0,11}"),
        prop::sample::select(vec![
            "Z", "z", "+02:00", "-23:59", "+24:00", "", "+0200", "Zulu",
        ]),
        prop::sample::select(vec!["T", "t", " ", "_"]),
    )
        .prop_map(|(y, mo, d, h, mi, s, frac, off, sep)| {
            let frac = frac.map(|f| format!(".{f}")).unwrap_or_default();
            format!("{y:04}-{mo:02}-{d:02}{sep}{h:02}:{mi:02}:{s:02}{frac}{off}")
        })
}

fn json_number() -> impl Strategy<Value = Vec<u8>> {
    prop_oneof![
        any::<i64>().prop_map(|i| i.to_string()),
        any::<u64>().prop_map(|i| i.to_string()),
        any::<f64>().prop_map(|f| format!("{f:?}")), // NaN, inf and exponents included
        (0i64..5_000_000_000).prop_map(|s| s.to_string()),
        (0i64..5_000_000_000_000).prop_map(|ms| ms.to_string()),
        (-1e12f64..5e12).prop_map(|x| format!("{x}")),
        prop::sample::select(vec![
            "1e400",
            "-1e400",
            "1e-400",
            "123456789012345678901234567890",
            "-123456789012345678901234567890",
            "18446744073709551616",
            "-9223372036854775809",
            "9223372036854775807",
            "-9223372036854775808",
            "99999999999",
            "100000000000",
            "-0",
            "-0.0",
            "0e0",
            "1E+2",
            "01",
            "1.",
            ".1",
            "-",
            "+1",
            "0x10",
            "1714521600",
            "1714521600.999",
            "1714521600123",
            "4102444799999",
            "4102444800000",
            "1.7976931348623157e308",
            "5e-324",
        ])
        .prop_map(|s| s.to_string()),
    ]
    .prop_map(|s| s.into_bytes())
}

fn json_leaf() -> impl Strategy<Value = Vec<u8>> {
    prop_oneof![
        1 => prop::sample::select(vec![&b"null"[..], b"true", b"false", b"[]", b"{}", b"nul", b"tru"]).prop_map(|s| s.to_vec()),
        3 => json_number(),
        4 => json_string(),
    ]
}

fn json_value() -> impl Strategy<Value = Vec<u8>> {
    json_leaf().prop_recursive(4, 48, 6, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..6).prop_map(|items| {
                let mut v = vec![b'['];
                v.extend(items.join(&b","[..]));
                v.push(b']');
                v
            }),
            prop::collection::vec((json_key(), inner), 0..6).prop_map(|fields| object(&fields)),
        ]
    })
}

fn json_key() -> impl Strategy<Value = Vec<u8>> {
    prop_oneof![
        4 => prop::sample::select(vec!["u", "t", "e", "id", "b", "m", "x", "", "\\u0075", "U", "t "])
            .prop_map(|k| format!("\"{k}\"").into_bytes()),
        1 => json_string(),
    ]
}

fn object(fields: &[(Vec<u8>, Vec<u8>)]) -> Vec<u8> {
    let mut v = vec![b'{'];
    for (i, (k, val)) in fields.iter().enumerate() {
        if i > 0 {
            v.push(b',');
        }
        v.extend(k);
        v.push(b':');
        v.extend(val);
    }
    v.push(b'}');
    v
}

/// A plausible event: the configured fields with values of every type (mostly the right one).
fn event_object() -> impl Strategy<Value = Vec<u8>> {
    let user = prop_oneof![
        6 => json_string(),
        1 => json_value(),
        1 => Just(b"\"\"".to_vec()),
    ];
    let time = prop_oneof![
        3 => json_number(),
        2 => rfc3339_ish().prop_map(|s| format!("\"{s}\"").into_bytes()),
        1 => (0i64..5_000_000_000).prop_map(|s| format!("\"{s}\"").into_bytes()),
        1 => json_value(),
    ];
    let etype = prop_oneof![
        5 => prop::sample::select(vec!["open", "click", "ünï", "a b"]).prop_map(|s| format!("\"{s}\"").into_bytes()),
        2 => json_string(),
        1 => json_value(),
    ];
    let id = prop_oneof![
        3 => json_string(),
        3 => any::<i64>().prop_map(|i| i.to_string().into_bytes()),
        1 => json_value(),
    ];
    let dim = || {
        prop_oneof![
            4 => json_string(),
            1 => prop::sample::select(vec!["\"m-1\"", "\"m-3\"", "\"ü-4\"", "null", "\"\""]).prop_map(|s| s.as_bytes().to_vec()),
            1 => json_value(),
        ]
    };
    (
        prop::option::weighted(0.95, user),
        prop::option::weighted(0.95, time),
        prop::option::weighted(0.95, etype),
        prop::option::of(id),
        prop::option::of(dim()),
        prop::option::of(dim()),
        prop::collection::vec((json_key(), json_value()), 0..3),
        any::<prop::sample::Index>(),
    )
        .prop_map(|(u, t, e, id, b, m, extra, at)| {
            let mut fields: Vec<(Vec<u8>, Vec<u8>)> = Vec::new();
            for (k, v) in [("u", u), ("t", t), ("e", e), ("id", id), ("b", b), ("m", m)] {
                if let Some(v) = v {
                    fields.push((format!("\"{k}\"").into_bytes(), v));
                }
            }
            // extra (possibly duplicate) keys somewhere in the object
            for f in extra {
                let i = at.index(fields.len() + 1);
                fields.insert(i, f);
            }
            object(&fields)
        })
}

/// A well-formed event with valid-looking values in every time representation, so that many lines
/// are accepted and `describe` is exercised; escapes and odd-but-legal values included.
fn plausible_event() -> impl Strategy<Value = Vec<u8>> {
    let text = || {
        prop::collection::vec(
            prop_oneof![
                8 => "[a-zA-Z0-9._-]{1,6}".prop_map(|s| s.into_bytes()),
                1 => prop::sample::select(vec![
                    &b"@"[..], b"@GMail.COM", b"@x.org", b"\\u00e9", b"\\ud83d\\ude00", b"\\\"", b"\\\\", b"\\/",
                    b"\\u0000", "\u{e9}".as_bytes(), "\u{1F600}".as_bytes(), b" ",
                ])
                .prop_map(|s| s.to_vec()),
            ],
            1..6,
        )
        .prop_map(|p| [&b"\""[..], &p.concat(), b"\""].concat())
    };
    let t_ms = 1_704_067_200_000i64..1_735_689_600_000; // 2024
    let time = prop_oneof![
        t_ms.clone().prop_map(|ms| (ms / 1000).to_string()),
        t_ms.clone().prop_map(|ms| ms.to_string()),
        t_ms.clone()
            .prop_map(|ms| format!("{}.{:03}", ms / 1000, ms % 1000)),
        t_ms.clone()
            .prop_map(|ms| format!("\"{}\"", abacus::timefmt::format_rfc3339(ms))),
        t_ms.clone().prop_map(|ms| format!("\"{}\"", ms / 1000)),
        (t_ms, prop::sample::select(vec!["+02:00", "-05:30", "z"])).prop_map(|(ms, off)| {
            format!(
                "\"{}{off}\"",
                abacus::timefmt::format_rfc3339(ms).trim_end_matches('Z')
            )
        }),
    ]
    .prop_map(|s| s.into_bytes());
    let etype = prop_oneof![
        4 => prop::sample::select(vec!["\"open\"", "\"click\"", "\"\\u00fcn\"", "\"ünï\""]).prop_map(|s| s.as_bytes().to_vec()),
        1 => text(),
    ];
    let id = prop_oneof![
        text(),
        any::<i64>().prop_map(|i| i.to_string().into_bytes()),
        Just(b"null".to_vec())
    ];
    let campaign = prop_oneof![
        prop::sample::select(vec![
            "\"m-1\"",
            "\"m-2\"",
            "\"m-3\"",
            "\"\\u00fc-4\"",
            "\"ü-4\"",
            "\"m-9\"",
            "\"\"",
            "null"
        ])
        .prop_map(|s| s.as_bytes().to_vec()),
    ];
    (
        text(),
        time,
        etype,
        prop::option::of(id),
        prop::option::of(prop_oneof![
            text(),
            Just(b"\"\"".to_vec()),
            Just(b"null".to_vec())
        ]),
        prop::option::of(campaign),
        prop::option::of((json_key(), json_value())),
        any::<bool>(),
    )
        .prop_map(|(u, t, e, id, b, m, extra, reorder)| {
            let mut fields: Vec<(Vec<u8>, Vec<u8>)> = vec![
                (b"\"u\"".to_vec(), u),
                (b"\"t\"".to_vec(), t),
                (b"\"e\"".to_vec(), e),
            ];
            for (k, v) in [("id", id), ("b", b), ("m", m)] {
                if let Some(v) = v {
                    fields.push((format!("\"{k}\"").into_bytes(), v));
                }
            }
            if let Some(x) = extra {
                fields.insert(0, x);
            }
            if reorder {
                fields.reverse();
            }
            object(&fields)
        })
}

/// Damage to a line: none (mostly), a cut, an inserted or flipped byte, deep nesting, CR/whitespace.
fn mutate(line: Vec<u8>) -> impl Strategy<Value = Vec<u8>> {
    let n = line.len();
    prop_oneof![
        6 => Just(line.clone()),
        1 => (0..=n).prop_map({ let l = line.clone(); move |i| l[..i].to_vec() }),
        1 => (0..=n, any::<u8>()).prop_map({ let l = line.clone(); move |(i, b)| {
            let mut v = l.clone();
            v.insert(i, b);
            v
        }}),
        1 => (0..n.max(1), any::<u8>()).prop_map({ let l = line.clone(); move |(i, b)| {
            let mut v = l.clone();
            if i < v.len() { v[i] ^= b | 1; }
            v
        }}),
        1 => (1usize..3000, any::<bool>()).prop_map({ let l = line.clone(); move |(depth, close)| {
            let mut v = b"[".repeat(depth);
            v.extend(&l);
            if close { v.extend(b"]".repeat(depth)); }
            v
        }}),
        1 => prop::sample::select(vec![&b" "[..], b"\t", b"\r", b" \r", b"\x0b", b"\x0c"]).prop_map({ let l = line.clone(); move |ws| {
            let mut v = ws.to_vec();
            v.extend(&l);
            v.extend(ws);
            v
        }}),
    ]
}

/// Any line: arbitrary bytes, near-JSON values, plausible events, all possibly damaged. No `\n`.
fn any_line() -> impl Strategy<Value = Vec<u8>> {
    prop_oneof![
        2 => prop::collection::vec(any::<u8>(), 0..200),
        1 => prop::collection::vec(prop::sample::select(b"{}[]\":,0123456789.-+eEtrufalsn \\u\t\r\x00\xff".to_vec()), 0..120),
        2 => json_value().prop_flat_map(mutate),
        4 => event_object().prop_flat_map(mutate),
        6 => plausible_event(),
        2 => plausible_event().prop_flat_map(mutate),
    ]
    .prop_map(|mut l| {
        l.retain(|&b| b != b'\n');
        l
    })
}

// ───────────────────────────── the parser property ─────────────────────────────

/// The engine's view of a physical line: one trailing `\r` stripped; `None` when blank (skipped).
fn engine_line(raw: &[u8]) -> Option<&[u8]> {
    let line = raw.strip_suffix(b"\r").unwrap_or(raw);
    (!line.trim_ascii().is_empty()).then_some(line)
}

const DIRT: &[u8] = br#"{"u":"dirty@DIRT.example","t":"2024-05-01T00:00:00.123456789+02:00","e":"dirt","id":"d","b":"dirt-browser","m":"m-3","x":[[[[{"y":"\u00e9\ud83d\ude00"}]]]],"z":"zzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzz"}"#;

/// The parsers one config's lines go through: the engine's (fast scanner, then simd-json), the
/// same with other lines parsed in between, and the simd-json-only reference.
struct Parsers {
    warm: Parser,
    dirty: Parser,
    reference: Parser,
}

impl Parsers {
    fn new(cfg: &Config) -> Parsers {
        Parsers {
            warm: Parser::new(cfg),
            dirty: Parser::new(cfg),
            reference: Parser::simd_json_only(cfg),
        }
    }
}

fn check_line(cfg: &Config, p: &mut Parsers, line: &[u8]) -> Result<(), TestCaseError> {
    let Parsers {
        warm,
        dirty,
        reference,
    } = p;
    let mut keys = vec![7u64];
    let r = warm.parse(line, &mut keys);
    // the same answer from a parser whose buffers just held something else
    let mut dkeys = vec![7u64];
    let _ = dirty.parse(DIRT, &mut Vec::new());
    let rd = dirty.parse(line, &mut dkeys);
    prop_assert_eq!(&r, &rd, "the result depends on the parser's history");
    prop_assert_eq!(&keys, &dkeys);
    // the single-pass scanner answers exactly as simd-json alone does
    let mut rkeys = vec![7u64];
    let rr = reference.parse(line, &mut rkeys);
    prop_assert_eq!(&r, &rr, "the fast path and simd-json disagree");
    prop_assert_eq!(&keys, &rkeys);
    prop_assert_eq!(warm.describe(line), reference.describe(line));
    if line.len() > cfg.limits.max_line_bytes {
        prop_assert!(
            matches!(&r, Err(e) if e.code() == "line_too_long"),
            "{:?}",
            r
        );
    }
    match r {
        Err(reason) => {
            prop_assert_eq!(keys, vec![7u64], "a rejected line leaves the keys alone");
            prop_assert!(REJECT_CODES.contains(&reason.code()));
            prop_assert!(!reason.to_string().is_empty());
            prop_assert!(
                warm.describe(line).is_none(),
                "describe accepts a line parse rejects ({})",
                reason
            );
        }
        Ok(event) => {
            prop_assert!(event.time >= cfg.limits.time_min && event.time < cfg.limits.time_max);
            let got = &keys[1..];
            prop_assert!(!got.is_empty() && got.len() <= 1 + cfg.dimensions.len());
            let d = warm.describe(line);
            prop_assert!(d.is_some(), "describe refuses an accepted line");
            let d = d.unwrap();
            let hashes: Vec<u64> = d.iter().map(|k| k.0).collect();
            prop_assert_eq!(
                &hashes[..],
                got,
                "describe's key hashes differ from parse's"
            );
            let first_type = d[0].1.event_type.as_deref().unwrap_or("");
            let et = xxh3_64(first_type.as_bytes());
            for (
                i,
                (
                    h,
                    KeyStrings {
                        metric,
                        event_type,
                        dimension,
                        value,
                    },
                ),
            ) in d.iter().enumerate()
            {
                prop_assert_eq!(*metric, 0, "a config without [[metrics]] has one metric");
                prop_assert!(event_type.as_deref().is_some_and(|t| !t.is_empty()));
                prop_assert_eq!(event_type, &d[0].1.event_type);
                match (i, dimension, value) {
                    (0, None, None) => prop_assert_eq!(*h, key_hash(et, u64::MAX, 0)),
                    (i, Some(dim), Some(v)) if i > 0 => {
                        prop_assert!(!v.is_empty(), "an empty dimension value is no value");
                        prop_assert!((*dim as usize) < cfg.dimensions.len());
                        prop_assert_eq!(
                            *h,
                            key_hash(et, *dim as u64, xxh3_64(v.as_bytes())),
                            "key {} ≠ hash of its strings",
                            i
                        );
                    }
                    _ => prop_assert!(
                        false,
                        "key {} has the wrong shape: {:?} {:?}",
                        i,
                        dimension,
                        value
                    ),
                }
            }
            // an independent JSON reader agrees on the user and the event type
            if let Ok(serde_json::Value::Object(m)) =
                serde_json::from_slice::<serde_json::Value>(line)
            {
                if let Some(serde_json::Value::String(u)) = m.get(&cfg.fields.user) {
                    prop_assert_eq!(
                        event.user,
                        xxh3_64(u.as_bytes()),
                        "user identity ≠ xxh3 of {:?}",
                        u
                    );
                }
                if let Some(serde_json::Value::String(e)) = m.get(&cfg.fields.event_type) {
                    prop_assert_eq!(first_type, e.as_str());
                }
            }
        }
    }
    Ok(())
}

#[test]
fn parser_never_panics_and_describe_agrees() {
    let (_dir, configs) = configs();
    let parsers = RefCell::new(configs.iter().map(Parsers::new).collect::<Vec<_>>());
    let mut runner = TestRunner::new(ProptestConfig {
        cases: PARSER_CASES * scale(),
        max_shrink_iters: 4096,
        failure_persistence: Some(Box::new(FileFailurePersistence::Direct(REGRESSIONS))),
        ..ProptestConfig::default()
    });
    let stats = RefCell::new([0u64; 2]);
    runner
        .run(&any_line(), |line| {
            let mut ps = parsers.borrow_mut();
            for (cfg, p) in configs.iter().zip(ps.iter_mut()) {
                let Some(l) = engine_line(&line) else {
                    continue;
                };
                check_line(cfg, p, l)?;
                let ok = p.warm.parse(l, &mut Vec::new()).is_ok();
                stats.borrow_mut()[ok as usize] += 1;
            }
            Ok(())
        })
        .unwrap();
    let [rejected, accepted] = *stats.borrow();
    let scanned: u64 = parsers
        .borrow()
        .iter()
        .map(|p| p.warm.scanned_lines())
        .sum();
    eprintln!(
        "parser fuzz: {accepted} accepted, {rejected} rejected (line × config); \
         the scanner settled {scanned} parses"
    );
    assert!(
        scanned > accepted,
        "the scanner settled too few lines for the comparison with simd-json to mean much"
    );
    assert!(
        accepted > rejected / 10,
        "too few accepted lines for describe to be exercised: {accepted}"
    );
}

#[test]
fn describe_agrees_on_fixed_hostile_values() {
    // Hand-picked cases the strategies may hit rarely.
    let (_dir, configs) = configs();
    let lines: Vec<&[u8]> = vec![
        br#"{"u":"a@B.COM","t":1714521600,"e":"open","b":"x","m":"m-1"}"#,
        br#"{"u":"a@","t":1714521600,"e":"open","b":"","m":"nope"}"#,
        br#"{"u":"\u0041@\u00C9.org","t":"2024-05-01T00:00:00Z","e":"\u00e9","m":"\u00fc-4"}"#,
        br#"{"u":"x","t":1714521600,"e":"e","u":"y","e":"f","b":1,"b":"ok"}"#,
        b"{\"u\":\"\xc3\xa9@\xc3\x89.org\",\"t\":1714521600,\"e\":\"open\"}",
        br#"{"u":"a@b","t":"1714521600","e":"open","id":18446744073709551615}"#,
        br#"{"u":"a@b","t":1714521600.9999999,"e":"open","id":-1}"#,
    ];
    for cfg in &configs {
        let mut p = Parsers::new(cfg);
        for l in &lines {
            check_line(cfg, &mut p, l)
                .unwrap_or_else(|e| panic!("{}: {e}", String::from_utf8_lossy(l)));
        }
    }
}

// ───────────────────────────── the binary on random files ─────────────────────────────

/// A file of lines: mostly plausible events in a narrow time range (so windows fire and some lines
/// are late or duplicates), the rest anything.
fn file_lines() -> impl Strategy<Value = Vec<Vec<u8>>> {
    let good = (
        0u32..300,
        0i64..40_000,
        0u32..4,
        prop::option::of(0u32..50),
        0u32..3,
    )
        .prop_map(|(u, dt, e, id, repr)| {
            let id = id.map(|i| format!(",\"id\":\"{i}\"")).unwrap_or_default();
            let ms = 1_714_521_600_000 + dt * 1000;
            let t = match repr {
                0 => format!("\"{}\"", abacus::timefmt::format_rfc3339(ms)),
                1 => (ms / 1000).to_string(),
                _ => ms.to_string(),
            };
            format!(
                r#"{{"u":"user{u}@d{}.com","t":{t},"e":"{}","b":"b{}","m":"m-{}"{id}}}"#,
                u % 7,
                ["open", "click", "send", "ünï"][e as usize],
                u % 3,
                u % 5,
            )
            .into_bytes()
        });
    prop::collection::vec(
        prop_oneof![3 => good, 2 => any_line(), 1 => Just(Vec::new())],
        0..600,
    )
}

#[test]
fn binary_on_random_files_exits_0_and_balances() {
    let dir = tempfile::tempdir().unwrap();
    let cfg_paths = write_configs(dir.path());
    let configs: Vec<Config> = cfg_paths.iter().map(|p| Config::load(p).unwrap()).collect();
    let counter = RefCell::new(0u32);
    let totals = RefCell::new([0u64; 4]); // counted, duplicates, late, rejected
    let mut runner = TestRunner::new(ProptestConfig {
        cases: BINARY_CASES * scale(),
        max_shrink_iters: 64,
        failure_persistence: Some(Box::new(FileFailurePersistence::Direct(REGRESSIONS))),
        ..ProptestConfig::default()
    });
    runner
        .run(
            &(
                file_lines(),
                0usize..4,
                1usize..4,
                any::<bool>(),
                any::<bool>(),
            ),
            |(lines, ci, threads, crlf, final_newline)| {
                let n = {
                    let mut c = counter.borrow_mut();
                    *c += 1;
                    *c
                };
                let mut content = Vec::new();
                for (i, l) in lines.iter().enumerate() {
                    content.extend(l);
                    if i + 1 < lines.len() || final_newline {
                        content.extend(if crlf { &b"\r\n"[..] } else { b"\n" });
                    }
                }
                // zstd, so that NUL bytes near the start do not make the file look binary
                let input = dir.path().join(format!("in{n}.ndjson.zst"));
                let mut enc = zstd::stream::write::Encoder::new(Vec::new(), 1).unwrap();
                enc.write_all(&content).unwrap();
                std::fs::write(&input, enc.finish().unwrap()).unwrap();
                let out = dir.path().join(format!("out{n}"));
                let o = Command::new(env!("CARGO_BIN_EXE_abacus"))
                    .arg("run")
                    .arg(&input)
                    .arg("--config")
                    .arg(&cfg_paths[ci])
                    .arg("--out")
                    .arg(&out)
                    .arg("--threads")
                    .arg(threads.to_string())
                    .arg("-q")
                    .output()
                    .unwrap();
                let stderr = String::from_utf8_lossy(&o.stderr);
                prop_assert!(!stderr.contains("panicked"), "{}", stderr);
                prop_assert_eq!(o.status.code(), Some(0), "{}", stderr);

                // what the library says about every line
                let mut parser = Parser::new(&configs[ci]);
                let (mut nlines, mut accepted) = (0u64, 0u64);
                let mut want = Vec::new();
                let mut off = 0u64;
                for (i, raw) in content.split(|&b| b == b'\n').enumerate() {
                    let start = off;
                    off += raw.len() as u64 + 1;
                    let Some(l) = engine_line(raw) else { continue };
                    nlines += 1;
                    match parser.parse(l, &mut Vec::new()) {
                        Ok(_) => accepted += 1,
                        Err(r) => want.push((
                            i as u64 + 1,
                            start,
                            r.code().to_string(),
                            String::from_utf8_lossy(l).into_owned(),
                        )),
                    }
                }
                let s: serde_json::Value = serde_json::from_str(
                    &std::fs::read_to_string(out.join("_summary.json")).unwrap(),
                )
                .unwrap();
                let g = |k: &str| s[k].as_u64().unwrap();
                prop_assert_eq!(g("lines"), nlines);
                prop_assert_eq!(
                    g("lines"),
                    g("counted") + g("duplicates") + g("late") + g("rejected")
                );
                prop_assert_eq!(g("counted") + g("duplicates") + g("late"), accepted);
                prop_assert_eq!(g("rejected"), want.len() as u64);
                let mut got = Vec::new();
                if let Ok(rd) = std::fs::read_dir(out.join("_rejected")) {
                    let mut files: Vec<PathBuf> = rd.map(|e| e.unwrap().path()).collect();
                    files.sort();
                    for f in files {
                        let bytes = zstd::stream::decode_all(std::fs::read(&f).unwrap().as_slice())
                            .unwrap();
                        for rec in bytes.split(|&b| b == b'\n').filter(|l| !l.is_empty()) {
                            let v: serde_json::Value = serde_json::from_slice(rec).unwrap();
                            got.push((
                                v["line"].as_u64().unwrap(),
                                v["offset"].as_u64().unwrap(),
                                v["code"].as_str().unwrap().to_string(),
                                v["raw"].as_str().unwrap().to_string(),
                            ));
                        }
                    }
                }
                prop_assert_eq!(got, want);
                for (t, k) in totals.borrow_mut().iter_mut().zip([
                    "counted",
                    "duplicates",
                    "late",
                    "rejected",
                ]) {
                    *t += g(k);
                }
                let _ = std::fs::remove_dir_all(&out);
                let _ = std::fs::remove_file(&input);
                Ok(())
            },
        )
        .unwrap();
    let t = *totals.borrow();
    eprintln!(
        "binary fuzz: counted {}, duplicates {}, late {}, rejected {}",
        t[0], t[1], t[2], t[3]
    );
    assert!(
        t.iter().all(|&n| n > 0),
        "every bucket should be exercised: {t:?}"
    );
}
