//! Production's big lesson: sources whose clocks are hours off must not make everyone else late.
//! On a generated workload where 0.3% of events come from clocks off by up to ±8 h, the default
//! config (median watermark) leaves fewer than 1% of events late; Flink's max-based watermark, on the
//! same input, makes far more late.

use std::path::Path;
use std::process::Command;

const BIN: &str = env!("CARGO_BIN_EXE_abacus");

fn summary(dir: &Path) -> serde_json::Value {
    serde_json::from_str(&std::fs::read_to_string(dir.join("_summary.json")).unwrap()).unwrap()
}

/// Event times of a generated file, read independently of the engine (serde_json, `auto` rule).
fn times(path: &Path) -> Vec<i64> {
    let raw = zstd::stream::decode_all(std::fs::File::open(path).unwrap()).unwrap();
    raw.split(|&b| b == b'\n')
        .filter(|l| !l.is_empty())
        .map(|l| {
            let v: serde_json::Value = serde_json::from_slice(l).unwrap();
            match &v["timestamp"] {
                serde_json::Value::Number(n) => {
                    let x = n.as_f64().unwrap();
                    if x.abs() < 1e11 {
                        (x * 1000.0) as i64
                    } else {
                        x as i64
                    }
                }
                serde_json::Value::String(s) => {
                    // generated RFC 3339 strings are `YYYY-MM-DDTHH:MM:SS.mmmZ`
                    let d: Vec<i64> = s
                        .split(|c: char| !c.is_ascii_digit())
                        .filter(|p| !p.is_empty())
                        .map(|p| p.parse().unwrap())
                        .collect();
                    let (y, m, day) = (d[0], d[1], d[2]);
                    let days = {
                        let y = if m <= 2 { y - 1 } else { y };
                        let era = y.div_euclid(400);
                        let yoe = y - era * 400;
                        let doy = (153 * (if m > 2 { m - 3 } else { m + 9 }) + 2) / 5 + day - 1;
                        era * 146_097 + yoe * 365 + yoe / 4 - yoe / 100 + doy - 719_468
                    };
                    ((days * 24 + d[3]) * 60 + d[4]) * 60_000 + d[5] * 1000 + d[6]
                }
                other => panic!("unexpected timestamp {other}"),
            }
        })
        .collect()
}

#[test]
fn skewed_clocks_leave_fewer_than_one_percent_late_with_the_default_config() {
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("skewed.ndjson.zst");
    let o = Command::new(BIN)
        .args([
            "generate", "--events", "150000", "--seed", "21", "--rate", "5", "--out",
        ])
        .arg(&input)
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));

    // The workload really has ~0.3% of events hours away from their neighbours.
    let t = times(&input);
    let off = (0..t.len())
        .filter(|&i| {
            let lo = i.saturating_sub(50);
            let hi = (i + 50).min(t.len());
            let mut w: Vec<i64> = t[lo..hi].to_vec();
            w.sort_unstable();
            (t[i] - w[w.len() / 2]).abs() > 2 * 3_600_000
        })
        .count();
    let share = off as f64 / t.len() as f64;
    assert!((0.0015..0.006).contains(&share), "skewed share {share}");

    let config = dir.path().join("abacus.toml");
    std::fs::write(
        &config,
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/data/abacus.toml")).unwrap(),
    )
    .unwrap();
    let run = |cfg: &Path, out: &Path| {
        let o = Command::new(BIN)
            .arg("run")
            .arg(&input)
            .arg("--config")
            .arg(cfg)
            .arg("--out")
            .arg(out)
            .arg("-q")
            .output()
            .unwrap();
        assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
        let s = summary(out);
        s["late"].as_f64().unwrap() / s["lines"].as_f64().unwrap()
    };
    let median_late = run(&config, &dir.path().join("median"));
    assert!(
        median_late < 0.01,
        "median watermark: {:.3}% late",
        median_late * 100.0
    );

    let max_config = dir.path().join("max.toml");
    std::fs::write(
        &max_config,
        std::fs::read_to_string(&config)
            .unwrap()
            .replace("strategy = \"median\"", "strategy = \"max\""),
    )
    .unwrap();
    let max_late = run(&max_config, &dir.path().join("max"));
    assert!(
        max_late > 0.05 && max_late > 10.0 * median_late,
        "max watermark: {:.3}% late vs median {:.3}%",
        max_late * 100.0,
        median_late * 100.0
    );
}
