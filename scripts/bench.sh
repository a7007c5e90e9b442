#!/usr/bin/env bash
# abacus benchmark: throughput, peak RSS, sliding-window cost, bounded memory, DuckDB cross-check.
#
#   scripts/bench.sh                 # full run (~5-10 min on 2 cores)
#   BENCH_QUICK=1 scripts/bench.sh   # skip the 10M-event file (and the memory-bounded row)
#
# Environment:
#   BENCH_QUICK=1      skip bench-data/10m.ndjson.zst
#   BENCH_REPS=N       repetitions per measurement (default 3; the median is reported)
#   BENCH_NO_DUCKDB=1  skip the DuckDB comparison
#   BENCH_NO_UPDATE=1  do not touch BENCHMARKS.md (print only)
#   PYTHON=python3     interpreter for scripts/compare_duckdb.py (needs scripts/requirements.txt)
#
# Inputs (generated if missing or generated with other options; bench-data/ is git-ignored):
#   bench-data/1m.ndjson.zst   abacus generate --events 1000000  --seed 7 (rate 10 ev/s: ~28 h)
#   bench-data/10m.ndjson.zst  abacus generate --events 10000000 --seed 7 (rate 10 ev/s: ~11.6 days)
#   bench-data/month-1m.ndjson.zst   --events 1000000  --seed 3 --rate 0.4 --users 50000  (~29 days)
#   bench-data/month-10m.ndjson.zst  --events 10000000 --seed 3 --rate 4 --users 500000  (~29 days)
#   bench-data/month-1m-nosize.ndjson.zst  the month-1m file as one zstd frame without content size
# The 1m and 10m files use the same seed, user population and --rate, so they share bench-data/campaigns.csv and
# the 10M file spans 10x the event time of the 1M file: with a bounded watermark its peak RSS
# should stay close to the 1M file's ("memory bounded" row).
#
# Results: printed, and written to BENCHMARKS.md (the block between the BENCH:LATEST markers is
# replaced; one row is appended to the table between the BENCH:HISTORY markers).
set -euo pipefail

cd "$(dirname "$0")/.."
ROOT=$(pwd)
QUICK=${BENCH_QUICK:-0}
REPS=${BENCH_REPS:-3}
PYTHON=${PYTHON:-python3}
DATA=bench-data
BIN=target/release/abacus
SEED=7
RATE=10
WORK=$(mktemp -d "${TMPDIR:-/tmp}/abacus-bench.XXXXXX")
trap 'rm -rf "$WORK"' EXIT
RESULTS=$WORK/results.tsv   # kind name threads wall_s rss_kb lines input_bytes anon_rss_kb rows
: >"$RESULTS"
T0=$(date +%s)
LOAD_START=$(cut -d' ' -f1-3 /proc/loadavg)

log() { printf '[bench %4ss] %s\n' "$(($(date +%s) - T0))" "$*" >&2; }

# ---- build -----------------------------------------------------------------------------------
log "building release binary"
touch src/main.rs   # another crate may have replaced target/release/abacus: force a relink
cargo build --release --quiet
[[ -s $BIN ]] || { echo "bench: $BIN is missing or empty after the build" >&2; exit 1; }

# ---- inputs ----------------------------------------------------------------------------------
mkdir -p "$DATA"
gen() { # gen NAME EVENTS
    # The marker after the options names the generator's output format: a file written by an
    # older generator (without the nested `item` on carts and orders) is written again.
    local out=$DATA/$1.ndjson.zst args="--events $2 --seed $SEED --rate $RATE" mark="generator 2"
    if [[ -s $out && -s $out.args && "$(cat "$out.args")" == "$args $mark" ]]; then
        log "$out exists ($args)"
        return
    fi
    log "generating $out ($args)"
    # shellcheck disable=SC2086
    "$BIN" generate $args --out "$out" --lookup "$DATA/campaigns.csv" >&2
    echo "$args $mark" >"$out.args"
}
gen 1m 1000000
[[ $QUICK == 1 ]] || gen 10m 10000000

# The month-long high-cardinality shapes (issue "High cardinality"): a month of event time, many
# keys, few events per key and window, several output rows per event. Each has its own campaigns
# CSV (the generator's lookup depends on its options) and a copy of the default config reading it.
gen_month() { # gen_month NAME EVENTS RATE USERS
    local out=$DATA/$1.ndjson.zst args="--events $2 --seed 3 --rate $3 --users $4" mark="generator 2"
    if [[ ! ( -s $out && -s $out.args && "$(cat "$out.args")" == "$args $mark" ) ]]; then
        log "generating $out ($args)"
        # shellcheck disable=SC2086
        "$BIN" generate $args --out "$out" --lookup "$DATA/campaigns-$1.csv" >&2
        echo "$args $mark" >"$out.args"
        rm -f "$DATA/$1-nosize.ndjson.zst"
    fi
    sed "s/campaigns.csv/campaigns-$1.csv/" data/abacus.toml >"$DATA/abacus-$1.toml"
}
gen_month month-1m 1000000 0.4 50000
[[ $QUICK == 1 ]] || gen_month month-10m 10000000 4 500000
# As other tools write it: one zstd frame without a content size (zstd reading a pipe).
if [[ ! -s $DATA/month-1m-nosize.ndjson.zst ]]; then
    log "writing $DATA/month-1m-nosize.ndjson.zst (one frame, no content size)"
    zstd -q -d -c "$DATA/month-1m.ndjson.zst" | zstd -q -1 -c >"$DATA/month-1m-nosize.ndjson.zst"
fi

# Configs next to the generated CSV: the default config (hourly, daily, last-24h sliding), and
# two for the sliding-window cost: only the 1h window, and 1h + 24h sliding by 1h.
cp data/abacus.toml "$DATA/abacus.toml"
strip_windows() { sed '/^\[\[windows\]\]/,$d' data/abacus.toml; }
{ strip_windows; printf '[[windows]]\nname = "hourly"\nsize = "1h"\n'; } >"$DATA/bench-1h.toml"
{ strip_windows; printf '[[windows]]\nname = "hourly"\nsize = "1h"\n\n'
  printf '[[windows]]\nname = "last-24h"\nsize = "24h"\nslide = "1h"\n'; } >"$DATA/bench-1h-24h.toml"

# The metrics issue's cost target: the default config plus its two threshold metrics on black
# chargers (`bench-metrics.toml`): the plain metric is listed as `all`, so its rows are the default's.
{ cat data/abacus.toml; cat <<'TOML'

[[filters]]
name = "black_charger"
where = [
  { field = "type", eq = "order_placed" },
  { field = "item.color", in = ["black", "jet black"] },
  { field = "item.product", regex = "(?i)charger" },
  { field = "item.quantity", ge = 1 },
]

[[metrics]]
name = "all"

[[metrics]]
name = "black_charger_2plus"
filter = "black_charger"
min_count = 2
windows = ["daily", "last-24h"]

[[metrics]]
name = "black_charger_3units"
filter = "black_charger"
min_sum = { field = "item.quantity", value = 3 }
TOML
} >"$DATA/bench-metrics.toml"

# The attribution issue's cost target: the default config plus the seed question's attribution
# metric (last touch, 5d, daily) and an any-touch variant (`bench-attribution.toml`).
{ cat data/abacus.toml; cat <<'TOML'

[[filters]]
name = "opened"
where = [{ field = "type", eq = "email_open" }]

[[filters]]
name = "black_charger"
where = [
  { field = "type", eq = "order_placed" },
  { field = "item.color", in = ["black", "jet black"] },
  { field = "item.product", regex = "(?i)charger" },
  { field = "item.quantity", ge = 1 },
]

[[metrics]]
name = "all"

[[metrics]]
name = "charger_after_open"
after = "opened"
filter = "black_charger"
within = "5d"
attribution = "last_touch"
dimensions = ["campaign"]
windows = ["daily"]

[[metrics]]
name = "charger_after_open_any"
after = "opened"
filter = "black_charger"
within = "5d"
attribution = "any_touch"
dimensions = ["campaign"]
windows = ["daily"]
TOML
} >"$DATA/bench-attribution.toml"

# ---- measuring -------------------------------------------------------------------------------
# measure KIND NAME INPUT CONFIG THREADS: one abacus run under /usr/bin/time -v, one TSV row.
# Besides the peak RSS of /usr/bin/time, the peak *anonymous* RSS (RssAnon in /proc/PID/status,
# sampled every 0.1 s) is recorded: it is what the process itself holds (abacus reads its input with
# read(), so file pages no longer count, but the binary's own pages still do in the total).
measure() {
    local kind=$1 name=$2 input=$3 config=$4 threads=$5 out=$WORK/out tf=$WORK/time.txt
    local start end wall rss lines tpid apid="" anon=0 k v _
    start=$(date +%s%N)
    /usr/bin/time -v -o "$tf" "$BIN" run "$input" --config "$config" --out "$out" \
        --threads "$threads" --overwrite -q &
    tpid=$!
    while kill -0 "$tpid" 2>/dev/null; do
        if [[ -z $apid ]]; then
            read -r apid _ 2>/dev/null <"/proc/$tpid/task/$tpid/children" || true
        fi
        if [[ -n $apid && -r /proc/$apid/status ]]; then
            while read -r k v _; do
                if [[ $k == RssAnon: ]] && ((v > anon)); then anon=$v; fi
            done 2>/dev/null <"/proc/$apid/status" || true
        fi
        sleep 0.1
    done
    wait "$tpid"
    end=$(date +%s%N)
    wall=$(awk -v a="$start" -v b="$end" 'BEGIN { printf "%.3f", (b - a) / 1e9 }')
    rss=$(awk -F': ' '/Maximum resident set size/ { print $2 }' "$tf")
    read -r lines rows < <("$PYTHON" -c \
        'import json,sys; s=json.load(open(sys.argv[1])); print(s["lines"], s["rows"])' \
        "$out/_summary.json")
    printf '%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n' "$kind" "$name" "$threads" "$wall" "$rss" "$lines" \
        "$(stat -c %s "$input")" "$anon" "$rows" >>"$RESULTS"
    log "$kind $name threads=$threads: ${wall}s, peak RSS $((rss / 1024)) MB (anonymous $((anon / 1024)) MB)"
}

FILES=(1m)
[[ $QUICK == 1 ]] || FILES+=(10m)
for f in "${FILES[@]}"; do
    for threads in 1 2; do
        for _ in $(seq "$REPS"); do
            measure throughput "$f" "$DATA/$f.ndjson.zst" "$DATA/abacus.toml" "$threads"
        done
    done
done
for _ in $(seq "$REPS"); do
    measure sliding 1h "$DATA/1m.ndjson.zst" "$DATA/bench-1h.toml" 2
    measure sliding 1h+24h/1h "$DATA/1m.ndjson.zst" "$DATA/bench-1h-24h.toml" 2
done
# The month-long shapes, 2 threads.
for _ in $(seq "$REPS"); do
    measure month month-1m "$DATA/month-1m.ndjson.zst" "$DATA/abacus-month-1m.toml" 2
    measure month month-1m-nosize "$DATA/month-1m-nosize.ndjson.zst" "$DATA/abacus-month-1m.toml" 2
    [[ $QUICK == 1 ]] || measure month month-10m "$DATA/month-10m.ndjson.zst" \
        "$DATA/abacus-month-10m.toml" 2
done
# Metrics cost: alternating with default runs of the same file, so both see the same machine.
MFILE=10m
[[ $QUICK == 1 ]] && MFILE=1m
for _ in $(seq "$REPS"); do
    measure metrics-default "$MFILE" "$DATA/$MFILE.ndjson.zst" "$DATA/abacus.toml" 2
    measure metrics "$MFILE" "$DATA/$MFILE.ndjson.zst" "$DATA/bench-metrics.toml" 2
    measure attribution "$MFILE" "$DATA/$MFILE.ndjson.zst" "$DATA/bench-attribution.toml" 2
done

# ---- DuckDB comparison ----------------------------------------------------------------------
DUCK_LOG=$WORK/duckdb.txt
DUCK_STATUS=skipped
if [[ ${BENCH_NO_DUCKDB:-0} != 1 ]]; then
    if "$PYTHON" -c 'import duckdb' 2>/dev/null; then
        log "DuckDB comparison on $DATA/1m.ndjson.zst (threads 2)"
        if "$PYTHON" scripts/compare_duckdb.py "$DATA/1m.ndjson.zst" --config "$DATA/abacus.toml" \
            --threads 2 | tee "$DUCK_LOG"; then
            DUCK_STATUS=match
        else
            DUCK_STATUS=MISMATCH
        fi
        log "DuckDB comparison on $DATA/month-1m.ndjson.zst (threads 2)"
        if ! "$PYTHON" scripts/compare_duckdb.py "$DATA/month-1m.ndjson.zst" \
            --config "$DATA/abacus-month-1m.toml" --threads 2 | tee "$WORK/duckdb-month.txt"; then
            DUCK_STATUS=MISMATCH
        fi
        log "DuckDB comparison of the metrics config on $DATA/1m.ndjson.zst (threads 2)"
        if ! "$PYTHON" scripts/compare_duckdb.py "$DATA/1m.ndjson.zst" \
            --config "$DATA/bench-metrics.toml" --threads 2 | tee "$WORK/duckdb-metrics.txt"; then
            DUCK_STATUS=MISMATCH
        fi
    else
        log "duckdb is not installed ($PYTHON -m pip install -r scripts/requirements.txt): skipped"
    fi
fi

# ---- report ----------------------------------------------------------------------------------
log "writing report"
CPU=$(awk -F': ' '/^model name/ { print $2; exit }' /proc/cpuinfo)
MEM=$(awk '/^MemTotal/ { printf "%.0f GiB", $2 / 1048576 }' /proc/meminfo)
COMMIT=$(git rev-parse --short HEAD 2>/dev/null || echo unknown)
if [[ -n "$(git status --porcelain -- src Cargo.toml Cargo.lock 2>/dev/null)" ]]; then
    COMMIT="$COMMIT+dirty"
fi
export RESULTS DUCK_LOG DUCK_STATUS CPU MEM COMMIT REPS QUICK ROOT
export NPROC=$(nproc) DATE=$(date -u +%Y-%m-%dT%H:%MZ) CMD="${BENCH_QUICK:+BENCH_QUICK=$BENCH_QUICK }scripts/bench.sh"
export NO_UPDATE=${BENCH_NO_UPDATE:-0} ELAPSED=$(($(date +%s) - T0))
export LOADAVG="$LOAD_START at the start, $(cut -d' ' -f1-3 /proc/loadavg) at the end"
"$PYTHON" - <<'PY'
import os, re, statistics
from collections import defaultdict
from pathlib import Path

env = os.environ
runs = defaultdict(list)
for line in Path(env["RESULTS"]).read_text().splitlines():
    kind, name, threads, wall, rss, lines, size, anon, rows = line.split("\t")
    runs[(kind, name, int(threads))].append((float(wall), int(rss), int(lines), int(size), int(anon),
                                             int(rows)))

def med(key):
    r = runs[key]
    if not r:
        return None
    wall = statistics.median(x[0] for x in r)
    rss = statistics.median(x[1] for x in r)
    anon = statistics.median(x[4] for x in r)
    return dict(wall=wall, rss_mb=rss / 1024, anon_mb=anon / 1024, lines=r[0][2], mb=r[0][3] / 1e6,
                evs=r[0][2] / wall, mbs=r[0][3] / 1e6 / wall, n=len(r), rows=r[0][5],
                rows_s=r[0][5] / wall,
                walls=", ".join(f"{x[0]:.2f}" for x in r))

machine = f"{env['NPROC']} × {env['CPU']}, {env['MEM']}"
out = [f"Run {env['DATE']}, commit `{env['COMMIT']}`, machine: {machine}; "
       f"load average (1/5/15 min) {env['LOADAVG']}.",
       f"Command: `{env['CMD']}` ({env['ELAPSED']} s in all; medians of {env['REPS']} runs).", "",
       "| input | threads | lines | input MB (zstd) | median wall s (all runs) | M events/s | MB/s (zstd) | peak RSS MB | peak anon RSS MB |",
       "|---|---:|---:|---:|---|---:|---:|---:|---:|"]
for f in ("1m", "10m"):
    for t in (1, 2):
        m = med(("throughput", f, t))
        if m:
            out.append(f"| {f}.ndjson.zst | {t} | {m['lines']:,} | {m['mb']:.1f} | {m['wall']:.2f} ({m['walls']}) "
                       f"| {m['evs'] / 1e6:.3f} | {m['mbs']:.1f} | {m['rss_mb']:.0f} | {m['anon_mb']:.0f} |")
out.append("")
month_duck = {}
mlog = Path(env["DUCK_LOG"]).with_name("duckdb-month.txt")
if mlog.exists():
    mm = re.search(r"speed ratio \(duckdb wall / abacus wall\): ([0-9.]+)x", mlog.read_text())
    ok = "MATCH" in mlog.read_text()
    if mm:
        month_duck["month-1m"] = f"{mm.group(1)}x ({'match' if ok else 'MISMATCH'})"
mrows = [(n, med(("month", n, 2))) for n in ("month-1m", "month-1m-nosize", "month-10m")]
if any(m for _, m in mrows):
    out += ["**Month-long high-cardinality shapes** (2 threads, `generate --seed 3` with `--rate 0.4 "
            "--users 50000` for 1M and `--rate 4 --users 500000` for 10M; `-nosize`: the same file as "
            "one zstd frame without a content size):", "",
            "| input | lines | output rows | rows per event | median wall s (all runs) | M events/s "
            "| M rows/s | peak RSS MB | DuckDB wall / abacus wall |",
            "|---|---:|---:|---:|---|---:|---:|---:|---|"]
    for n, m in mrows:
        if m:
            out.append(f"| {n}.ndjson.zst | {m['lines']:,} | {m['rows']:,} | {m['rows'] / m['lines']:.2f} "
                       f"| {m['wall']:.2f} ({m['walls']}) | {m['evs'] / 1e6:.3f} | {m['rows_s'] / 1e6:.2f} "
                       f"| {m['rss_mb']:.0f} | {month_duck.get(n, 'n/a')} |")
    out.append("")
a, b = med(("sliding", "1h", 2)), med(("sliding", "1h+24h/1h", 2))
sliding = f"{b['wall'] / a['wall']:.2f}x" if a and b else "n/a"
if a and b:
    out.append(f"**Sliding cost** (1m, 2 threads): windows `1h` only {a['wall']:.2f} s ({a['walls']}), "
               f"{a['rss_mb']:.0f} MB; `1h` + `24h` sliding by `1h` {b['wall']:.2f} s ({b['walls']}), "
               f"{b['rss_mb']:.0f} MB: **{sliding}** the time, {b['rss_mb'] / a['rss_mb']:.2f}x the RSS.")
for f in ("1m", "10m"):
    d, m, a = med(("metrics-default", f, 2)), med(("metrics", f, 2)), med(("attribution", f, 2))
    if d and a:
        out.append("")
        out.append(f"**Attribution cost** ({f}, 2 threads, alternating runs): default config {d['wall']:.2f} s "
                   f"({d['walls']}); plus `charger_after_open` (last touch, 5d) and its any-touch variant "
                   f"(`bench-data/bench-attribution.toml`) {a['wall']:.2f} s ({a['walls']}): "
                   f"**{a['wall'] / d['wall']:.2f}x** the time, peak RSS {d['rss_mb']:.0f} → {a['rss_mb']:.0f} MB.")
    if d and m:
        out.append("")
        out.append(f"**Metrics cost** ({f}, 2 threads, alternating runs): default config {d['wall']:.2f} s "
                   f"({d['walls']}); plus `black_charger_2plus` and `black_charger_3units` "
                   f"(`bench-data/bench-metrics.toml`) {m['wall']:.2f} s ({m['walls']}): "
                   f"**{m['wall'] / d['wall']:.2f}x** the time, peak RSS {d['rss_mb']:.0f} → {m['rss_mb']:.0f} MB.")
m1, m10 = med(("throughput", "1m", 2)), med(("throughput", "10m", 2))
if m1 and m10:
    out.append("")
    out.append(f"**Memory bounded** (same `--rate`, so 10m spans 10x the event time; 2 threads, default config): "
               f"peak RSS 1m {m1['rss_mb']:.0f} MB, 10m {m10['rss_mb']:.0f} MB: **{m10['rss_mb'] / m1['rss_mb']:.2f}x**; "
               f"peak anonymous RSS (without the memory-mapped input's page cache) 1m {m1['anon_mb']:.0f} MB, "
               f"10m {m10['anon_mb']:.0f} MB: **{m10['anon_mb'] / m1['anon_mb']:.2f}x**.")
duck = "n/a"
if env["DUCK_STATUS"] != "skipped":
    text = Path(env["DUCK_LOG"]).read_text()
    out += ["", f"**DuckDB cross-check** (1m, 2 threads, `allowed_lateness = \"unbounded\"`, no dedup expiry): "
                f"**{env['DUCK_STATUS']}**", "", "```", text.strip(), "```"]
    mtext = Path(env["DUCK_LOG"]).with_name("duckdb-metrics.txt")
    if mtext.exists():
        out += ["", "DuckDB cross-check of the metrics config (`bench-metrics.toml`, same input):", "",
                "```", mtext.read_text().strip(), "```"]
    m = re.search(r"speed ratio \(duckdb wall / abacus wall\): ([0-9.]+)x", text)
    duck = f"{m.group(1)}x ({env['DUCK_STATUS']})" if m else env["DUCK_STATUS"]
latest = "\n".join(out)
print("\n" + latest + "\n")

def cell(f, t, k, fmt):
    m = med(("throughput", f, t))
    return fmt.format(m[k] / 1e6 if k == "evs" else m[k]) if m else "n/a"

row = (f"| {env['DATE']} | `{env['COMMIT']}` | {env['NPROC']} × {env['CPU']} | "
       f"{cell('1m', 1, 'evs', '{:.3f}')} | {cell('1m', 2, 'evs', '{:.3f}')} | {cell('10m', 2, 'evs', '{:.3f}')} | "
       f"{cell('1m', 2, 'rss_mb', '{:.0f}')} / {cell('1m', 2, 'anon_mb', '{:.0f}')} | "
       f"{cell('10m', 2, 'rss_mb', '{:.0f}')} / {cell('10m', 2, 'anon_mb', '{:.0f}')} | {sliding} | {duck} |")
if env["NO_UPDATE"] == "1":
    raise SystemExit(0)

path = Path(env["ROOT"]) / "BENCHMARKS.md"
doc = path.read_text() if path.exists() else "# abacus benchmarks\n"
L0, L1 = "<!-- BENCH:LATEST -->", "<!-- /BENCH:LATEST -->"
H0, H1 = "<!-- BENCH:HISTORY -->", "<!-- /BENCH:HISTORY -->"
if L0 not in doc:
    doc += f"\n## Latest run (written by scripts/bench.sh)\n\n{L0}\n{L1}\n"
if H0 not in doc:
    doc += (f"\n## History (one row per scripts/bench.sh run)\n\n{H0}\n"
            "| date (UTC) | commit | machine | 1m 1 thr M ev/s | 1m 2 thr M ev/s | 10m 2 thr M ev/s "
            "| RSS / anon 1m MB | RSS / anon 10m MB | sliding cost | DuckDB wall / abacus wall |\n"
            "|---|---|---|---:|---:|---:|---:|---:|---:|---|\n" + f"{H1}\n")
i, j = doc.index(L0) + len(L0), doc.index(L1)
doc = doc[:i] + "\n" + latest + "\n" + doc[j:]
j = doc.index(H1)
doc = doc[:j] + row + "\n" + doc[j:]
path.write_text(doc)
print(f"updated {path}")
PY
log "done"
[[ $DUCK_STATUS != MISMATCH ]]
