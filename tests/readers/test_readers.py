#!/usr/bin/env python3
"""abacus's output directory is a dataset that every reader opens as is (issue #16).

    python3 tests/readers/test_readers.py OUTDIR [OUTDIR ...]

For each OUTDIR (a finished `abacus run --out OUTDIR`, e.g. `make run`'s results/sample) this opens
the directory with the one obvious call of each reader, as the README's "Output" section shows it:

    pandas    pd.read_parquet(OUT)
    pyarrow   pyarrow.dataset.dataset(OUT, format="parquet"), pyarrow.parquet.read_table(OUT)
    polars    pl.scan_parquet(f"{OUT}/*.parquet")   (and pl.read_parquet of the same glob)
    DuckDB    SELECT ... FROM read_parquet('OUT/*.parquet')
    Spark     spark.read.parquet(OUT)   (pyspark in local mode; needs Java 17+)

and checks, against OUT/_summary.json:
  - the schema: column names in order and their exact types in that reader's type system
    (strings, timestamp[ms, UTC], uint64);
  - the row count (`rows`) and the rows of each window spec (`rows_per_window`);
  - that every reader sees the same data: per window spec, the sums of `events` and
    `unique_users` and the first/last window bounds (in epoch milliseconds) agree across readers;
  - that the tumbling/sliding totals add up to `counted`.

Spark runs in local mode (2 threads) bound to 127.0.0.1 (SPARK_LOCAL_IP), with the UI off; it takes
~15 s to start, once for all OUTDIRs.

Also reported, not checked: whether `pl.read_parquet(OUT)` (a bare directory) works with the
installed polars. With polars 2.1 it does not: polars refuses a directory whose files have more than
one extension (`_summary.json`, `_late/*.ndjson.zst` beside the parts) and asks for a glob, which is
why the README (and polars' own docs) use `OUT/*.parquet`.

Plain asserts, no test framework: prints one line per check and a final `N passed, M failed`;
exits 1 if any check failed. Needs tests/readers/requirements.txt.
"""

from __future__ import annotations

import json
import math
import os
import sys
import time
import traceback
from pathlib import Path

COLUMNS = [
    "metric",
    "event_type",
    "dimension",
    "value",
    "window",
    "window_start",
    "window_end",
    "unique_users",
    "events",
]
STRINGS = ["metric", "event_type", "dimension", "value", "window"]
TIMESTAMPS = ["window_start", "window_end"]
COUNTS = ["unique_users", "events"]
# event_type is null for a metric with by_type = false (none in make run's config)
NULLABLE = {"event_type", "dimension", "value"}


class Checks:
    def __init__(self) -> None:
        self.passed = 0
        self.failed = 0

    def run(self, name: str, fn, *args):
        t0 = time.perf_counter()
        try:
            result = fn(*args)
        except Exception:  # an assert or a reader's own error: both are failures
            self.failed += 1
            print(f"FAIL {name}")
            print("    " + traceback.format_exc().rstrip().replace("\n", "\n    "))
            return None
        self.passed += 1
        print(f"ok   {name} ({time.perf_counter() - t0:.2f}s)")
        return result


def ms(x) -> int:
    """Epoch milliseconds of a timestamp from any of the readers (datetime, pandas, numpy)."""
    if hasattr(x, "timestamp"):
        # datetime.datetime (pyarrow, polars, DuckDB) or pandas.Timestamp, tz-aware UTC
        return round(x.timestamp() * 1000)
    raise TypeError(f"not a timestamp: {x!r}")


def check_layout(out: Path, summary: dict) -> None:
    assert (out / "_SUCCESS").is_file(), "_SUCCESS missing: the run did not finish with exit 0"
    assert (out / "_SUCCESS").stat().st_size == 0, "_SUCCESS is not empty"
    assert summary.get("complete") is True, f"_summary.json: complete = {summary.get('complete')!r}"
    parts = sorted(p.name for p in out.glob("part-*.parquet"))
    assert parts, "no part-*.parquet"
    assert len(parts) == summary["files"], f"{len(parts)} part files, _summary.json files = {summary['files']}"
    for entry in os.listdir(out):
        # Hive-style readers (pyarrow, pandas, Spark) read every file not starting with _ or .
        assert entry in parts or entry[0] in "_.", f"{entry!r}: neither a part file nor hidden (_ or .)"
    assert sum(summary["rows_per_window"].values()) == summary["rows"], "rows_per_window does not add up to rows"
    manifest = json.loads((out / "_manifest.json").read_text())
    listed = {f["path"] for f in manifest["files"]}
    missing = set(parts) - listed
    assert not missing, f"part files not in _manifest.json: {sorted(missing)}"


def per_window_from_arrow(table) -> dict:
    """window -> (rows, sum events, sum unique_users, min window_start ms, max window_end ms)."""
    import pyarrow as pa

    res = table.group_by("window").aggregate(
        [
            ("window", "count"),
            ("events", "sum"),
            ("unique_users", "sum"),
            ("window_start", "min"),
            ("window_end", "max"),
        ]
    )
    out = {}
    for r in res.to_pylist():
        out[r["window"]] = (
            r["window_count"],
            r["events_sum"],
            r["unique_users_sum"],
            ms(r["window_start_min"]),
            ms(r["window_end_max"]),
        )
    assert isinstance(table.schema.field("events").type, pa.DataType)
    return out


def check_arrow_schema(schema) -> None:
    import pyarrow as pa

    assert schema.names == COLUMNS, f"columns {schema.names}"
    for c in STRINGS:
        # pyarrow maps Parquet's UTF8 to pa.string() (32-bit offsets). abacus writes utf8, not
        # large_utf8 or utf8_view, so accept exactly pa.string(): a change would show up here.
        assert schema.field(c).type == pa.string(), f"{c}: {schema.field(c).type}"
    for c in TIMESTAMPS:
        assert schema.field(c).type == pa.timestamp("ms", tz="UTC"), f"{c}: {schema.field(c).type}"
    for c in COUNTS:
        assert schema.field(c).type == pa.uint64(), f"{c}: {schema.field(c).type}"
    for c in COLUMNS:
        assert schema.field(c).nullable == (c in NULLABLE), f"{c}: nullable = {schema.field(c).nullable}"


def check_pyarrow_dataset(out: Path, summary: dict) -> dict:
    import pyarrow.compute as pc
    import pyarrow.dataset as ds

    dataset = ds.dataset(out, format="parquet")
    names = sorted(Path(f).name for f in dataset.files)
    assert names == sorted(p.name for p in out.glob("part-*.parquet")), f"dataset files {names}"
    check_arrow_schema(dataset.schema)
    assert dataset.count_rows() == summary["rows"], f"{dataset.count_rows()} rows, summary {summary['rows']}"
    for w, n in summary["rows_per_window"].items():
        got = dataset.count_rows(filter=pc.field("window") == w)
        assert got == n, f"window {w}: {got} rows, summary {n}"
    return per_window_from_arrow(dataset.to_table())


def check_pyarrow_read_table(out: Path, summary: dict) -> dict:
    import pyarrow.parquet as pq

    table = pq.read_table(out)
    check_arrow_schema(table.schema)
    assert table.num_rows == summary["rows"], f"{table.num_rows} rows, summary {summary['rows']}"
    per = per_window_from_arrow(table)
    assert {w: v[0] for w, v in per.items()} == summary["rows_per_window"], f"rows per window {per}"
    return per


def check_pandas(out: Path, summary: dict) -> dict:
    import pandas as pd

    df = pd.read_parquet(out)
    assert list(df.columns) == COLUMNS, f"columns {list(df.columns)}"
    major = int(pd.__version__.split(".")[0])
    for c in STRINGS:
        # pandas 3 reads strings as its default string dtype `str` (StringDtype with NaN as the
        # missing value); pandas 2 as `object`. Anything else (e.g. categorical) is a change.
        expected = "str" if major >= 3 else "object"
        assert str(df[c].dtype) == expected, f"{c}: {df[c].dtype} (pandas {pd.__version__})"
    for c in TIMESTAMPS:
        # pandas >= 2 keeps the unit: datetime64[ms, UTC], no conversion to ns.
        assert str(df[c].dtype) == "datetime64[ms, UTC]", f"{c}: {df[c].dtype}"
    for c in COUNTS:
        assert str(df[c].dtype) == "uint64", f"{c}: {df[c].dtype}"
    assert len(df) == summary["rows"], f"{len(df)} rows, summary {summary['rows']}"
    assert df["event_type"].notna().all() and df["window"].notna().all()
    assert set(df["metric"]) == {"all"}, "a config without [[metrics]] has the one metric `all`"
    g = df.groupby("window").agg(
        rows=("window", "size"),
        events=("events", "sum"),
        users=("unique_users", "sum"),
        start=("window_start", "min"),
        end=("window_end", "max"),
    )
    per = {
        w: (int(r.rows), int(r.events), int(r.users), ms(r.start), ms(r.end)) for w, r in g.iterrows()
    }
    assert {w: v[0] for w, v in per.items()} == summary["rows_per_window"], f"rows per window {per}"
    return per


def polars_per_window(lf) -> dict:
    import polars as pl

    res = (
        lf.group_by("window")
        .agg(
            pl.len().alias("rows"),
            pl.col("events").sum(),
            pl.col("unique_users").sum(),
            pl.col("window_start").min(),
            pl.col("window_end").max(),
        )
        .collect()
    )
    return {
        r["window"]: (r["rows"], r["events"], r["unique_users"], ms(r["window_start"]), ms(r["window_end"]))
        for r in res.iter_rows(named=True)
    }


def check_polars_schema(schema) -> None:
    import polars as pl

    assert list(schema.names()) == COLUMNS, f"columns {schema.names()}"
    for c in STRINGS:
        # polars has one string type, pl.String (Arrow string_view inside); it is what
        # Parquet UTF8 maps to.
        assert schema[c] == pl.String, f"{c}: {schema[c]}"
    for c in TIMESTAMPS:
        assert schema[c] == pl.Datetime("ms", "UTC"), f"{c}: {schema[c]}"
    for c in COUNTS:
        assert schema[c] == pl.UInt64, f"{c}: {schema[c]}"


def check_polars_scan(out: Path, summary: dict) -> dict:
    import polars as pl

    lf = pl.scan_parquet(f"{out}/*.parquet")
    check_polars_schema(lf.collect_schema())
    n = lf.select(pl.len()).collect().item()
    assert n == summary["rows"], f"{n} rows, summary {summary['rows']}"
    per = polars_per_window(lf)
    assert {w: v[0] for w, v in per.items()} == summary["rows_per_window"], f"rows per window {per}"
    return per


def check_polars_read(out: Path, summary: dict) -> None:
    import polars as pl

    df = pl.read_parquet(f"{out}/*.parquet")
    check_polars_schema(df.schema)
    assert df.height == summary["rows"], f"{df.height} rows, summary {summary['rows']}"


def report_polars_directory(out: Path) -> None:
    """Informational: does pl.read_parquet(OUT) (no glob) read the directory?"""
    import polars as pl

    try:
        n = pl.read_parquet(out).height
        print(f"info polars {pl.__version__}: pl.read_parquet({str(out)!r}) on the bare directory reads {n} rows")
    except Exception as e:  # expected with polars 2.x: mixed extensions in the directory
        msg = str(e).splitlines()[0]
        print(f"info polars {pl.__version__}: pl.read_parquet({str(out)!r}) on the bare directory fails "
              f"({type(e).__name__}: {msg[:160]}); use the glob {str(out)!r}/*.parquet")


def check_duckdb(out: Path, summary: dict) -> dict:
    import duckdb

    con = duckdb.connect()
    src = f"read_parquet('{out}/*.parquet')"
    desc = con.execute(f"DESCRIBE SELECT * FROM {src}").fetchall()
    types = {name: typ for name, typ, *_ in desc}
    assert [d[0] for d in desc] == COLUMNS, f"columns {[d[0] for d in desc]}"
    for c in STRINGS:
        assert types[c] == "VARCHAR", f"{c}: {types[c]}"
    for c in TIMESTAMPS:
        # DuckDB's timestamp with a time zone (Parquet's isAdjustedToUTC); it stores microseconds,
        # so the ms unit is not visible here: the cross-reader check compares the values.
        assert types[c] == "TIMESTAMP WITH TIME ZONE", f"{c}: {types[c]}"
    for c in COUNTS:
        assert types[c] == "UBIGINT", f"{c}: {types[c]}"
    (n,) = con.execute(f"SELECT count(*) FROM {src}").fetchone()
    assert n == summary["rows"], f"{n} rows, summary {summary['rows']}"
    (bad,) = con.execute(f"SELECT count(*) FROM {src} WHERE (dimension IS NULL) <> (value IS NULL)").fetchone()
    assert bad == 0, f"{bad} rows with only one of dimension/value null"
    rows = con.execute(
        f"""SELECT "window", count(*), sum(events), sum(unique_users),
                   epoch_ms(min(window_start)), epoch_ms(max(window_end))
            FROM {src} GROUP BY ALL"""
    ).fetchall()
    per = {r[0]: tuple(int(x) for x in r[1:]) for r in rows}
    assert {w: v[0] for w, v in per.items()} == summary["rows_per_window"], f"rows per window {per}"
    return per


_SPARK = None


def spark_session():
    """One local Spark session for every OUTDIR (starting one takes ~10 s), on loopback only."""
    global _SPARK
    if _SPARK is None:
        os.environ.setdefault("SPARK_LOCAL_IP", "127.0.0.1")
        from pyspark.sql import SparkSession

        _SPARK = (
            SparkSession.builder.master("local[2]")
            .appName("abacus-readers")
            .config("spark.ui.enabled", "false")
            .config("spark.ui.showConsoleProgress", "false")
            .config("spark.sql.session.timeZone", "UTC")
            .getOrCreate()
        )
        _SPARK.sparkContext.setLogLevel("ERROR")
    return _SPARK


def check_spark(out: Path, summary: dict) -> dict:
    from pyspark.sql import types as T

    spark = spark_session()
    df = spark.read.parquet(str(out))
    # Spark skips files starting with _ or . (so _late/, _summary.json, .abacus.lock), reads the parts.
    files = sorted(Path(f).name for f in df.inputFiles())
    assert files == sorted(p.name for p in out.glob("part-*.parquet")), f"Spark reads {files}"
    fields = {f.name: f.dataType for f in df.schema.fields}
    assert list(fields) == COLUMNS, f"columns {list(fields)}"
    for c in STRINGS:
        assert fields[c] == T.StringType(), f"{c}: {fields[c]}"
    for c in TIMESTAMPS:
        # TimestampType is Spark's instant (UTC-adjusted) timestamp, microseconds inside; a Parquet
        # timestamp without isAdjustedToUTC would come as TimestampNTZType.
        assert fields[c] == T.TimestampType(), f"{c}: {fields[c]}"
    for c in COUNTS:
        # Spark has no unsigned integers: Parquet UINT_64 is read as decimal(20,0), exactly.
        assert fields[c] == T.DecimalType(20, 0), f"{c}: {fields[c]}"
    n = df.count()
    assert n == summary["rows"], f"{n} rows, summary {summary['rows']}"
    df.createOrReplaceTempView("abacus_rows")
    rows = spark.sql(
        """SELECT `window`, count(*), sum(events), sum(unique_users),
                  unix_millis(min(window_start)), unix_millis(max(window_end))
           FROM abacus_rows GROUP BY `window`"""
    ).collect()
    per = {r[0]: tuple(int(x) for x in r[1:]) for r in rows}
    assert {w: v[0] for w, v in per.items()} == summary["rows_per_window"], f"rows per window {per}"
    return per


def check_agree(per_reader: dict, summary: dict) -> None:
    names = list(per_reader)
    ref_name = names[0]
    ref = per_reader[ref_name]
    for name in names[1:]:
        assert per_reader[name] == ref, f"{name} sees {per_reader[name]}, {ref_name} sees {ref}"
    assert {w: v[0] for w, v in ref.items()} == summary["rows_per_window"]


def check_totals(out: Path, summary: dict) -> None:
    """Every counted event adds 1 to `events` on its total row (dimension NULL) in each of the
    size/slide windows of a spec that contain it: per spec, sum(events) on total rows equals
    counted * size/slide. size = window_end - window_start; slide = the gcd of the gaps between
    window starts (exact for any spec with two windows one slide apart)."""
    import duckdb

    con = duckdb.connect()
    src = f"read_parquet('{out}/*.parquet')"
    specs = con.execute(
        f"""SELECT "window", min(epoch_ms(window_end) - epoch_ms(window_start)),
                   max(epoch_ms(window_end) - epoch_ms(window_start)),
                   list(DISTINCT epoch_ms(window_start)),
                   sum(events) FILTER (WHERE dimension IS NULL)
            FROM {src} GROUP BY ALL"""
    ).fetchall()
    for w, size_min, size_max, starts, total in specs:
        assert size_min == size_max, f"{w}: windows of different lengths"
        starts = sorted(starts)
        slide = 0
        for a, b in zip(starts, starts[1:]):
            slide = math.gcd(slide, b - a)
        slide = slide or size_min
        if slide > size_min:  # tumbling windows with gaps between them
            slide = size_min
        assert size_min % slide == 0, f"{w}: size {size_min} ms not a multiple of slide {slide} ms"
        expected = summary["counted"] * (size_min // slide)
        assert total == expected, f"{w}: total events {total}, counted x size/slide = {expected}"


def main(argv: list[str]) -> int:
    if len(argv) < 2 or argv[1] in ("-h", "--help"):
        print(__doc__)
        return 2
    checks = Checks()
    t0 = time.perf_counter()
    for arg in argv[1:]:
        out = Path(arg)
        summary_path = out / "_summary.json"
        if not summary_path.is_file():
            print(f"FAIL {out}: no _summary.json (run `make run` first)")
            checks.failed += 1
            continue
        summary = json.loads(summary_path.read_text())
        print(f"== {out}: {summary['rows']} rows in {summary['files']} part file(s), "
              f"rows_per_window {summary['rows_per_window']}")
        per = {}
        checks.run(f"{out}: layout (_SUCCESS, hidden side outputs, manifest)", check_layout, out, summary)
        per["pyarrow.dataset"] = checks.run(f"{out}: pyarrow.dataset.dataset(OUT, format='parquet')",
                                            check_pyarrow_dataset, out, summary)
        per["pyarrow.parquet"] = checks.run(f"{out}: pyarrow.parquet.read_table(OUT)",
                                            check_pyarrow_read_table, out, summary)
        per["pandas"] = checks.run(f"{out}: pd.read_parquet(OUT)", check_pandas, out, summary)
        per["polars"] = checks.run(f"{out}: pl.scan_parquet('OUT/*.parquet')", check_polars_scan, out, summary)
        checks.run(f"{out}: pl.read_parquet('OUT/*.parquet')", check_polars_read, out, summary)
        per["duckdb"] = checks.run(f"{out}: duckdb read_parquet('OUT/*.parquet')", check_duckdb, out, summary)
        per["spark"] = checks.run(f"{out}: spark.read.parquet(OUT)", check_spark, out, summary)
        ok = {k: v for k, v in per.items() if v is not None}
        if len(ok) >= 2:
            checks.run(f"{out}: the readers agree ({', '.join(ok)})", check_agree, ok, summary)
        checks.run(f"{out}: total rows add up to counted x size/slide", check_totals, out, summary)
        try:
            report_polars_directory(out)
        except ImportError:
            pass
    if _SPARK is not None:
        _SPARK.stop()
    print(f"({time.perf_counter() - t0:.1f}s)")
    print(f"{checks.passed} passed, {checks.failed} failed")
    return 1 if checks.failed else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
