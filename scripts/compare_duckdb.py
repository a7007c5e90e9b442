#!/usr/bin/env python3
"""Cross-check abacus against an independent DuckDB SQL implementation of the same job.

Usage:
    scripts/compare_duckdb.py INPUT.ndjson.zst [INPUT ...] --config CONFIG.toml
        [--abacus-out DIR] [--threads N] [--abacus BIN] [--show N] [--keep-work]

What it does
------------
1. Reads the abacus TOML config (tomllib) and writes a *modified copy* of it with

       [watermark] allowed_lateness = "unbounded"
       [dedup]     ttl              = "100000d"   (~274 years)

   and every `lookup` path made absolute (so the copy may live in a temporary directory).

   Why: the watermark (the lower median of the last `sample` accepted times, recomputed every
   `interval` accepted events) and the late/firing rules of docs/SEMANTICS.md are inherently
   sequential and awkward to express in SQL. With `allowed_lateness = "unbounded"` nothing fires
   before the end of the input, so no event is late. The watermark still advances and expires
   dedup state at `max(t, wm) + ttl`; with a ttl longer than the whole representable time range
   (1970..2100 = ~130 years) no record ever expires, so a duplicate is simply *any later accepted
   line with the same (user, event id)* -- which is plain SQL (row_number() over the stream
   order). Under this config the SEMANTICS.md result is "an exact batch computation over the input
   minus rejected lines and duplicates", and that is what the SQL computes, independently of the
   engine (it does not look at abacus's late/ or rejected/ outputs).

   What is therefore NOT cross-checked: the watermark, late events and dedup expiry (the
   `[watermark]` and `[dedup] ttl` settings of the original config are overridden), and for
   attribution metrics the "Firing" and "Lateness, generalised" clauses (`end + within +
   allowed_lateness`, the late B's and last-touch A's) and the bounded per-user "State": with
   unbounded lateness nothing fires before the end and nothing is late, so only the batch result
   of "Follows" .. "Counts" is compared.

2. Runs `abacus run` on the inputs with that config under /usr/bin/time -v (wall time, peak RSS).
   An abacus that does not know attribution metrics yet refuses a config with `after` (unknown
   key) and the script stops there; the SQL side of attribution is pinned by the SQL-only hand
   cases of scripts/test_compare_duckdb.py, which need no abacus binary.
3. Runs the DuckDB job in a child process (this script with --_worker) under /usr/bin/time -v:
   read_ndjson with explicit columns (every configured field read as JSON so that its JSON type is
   checked as SEMANTICS.md requires), rejection rules, `time_format` (unix_s / unix_ms / rfc3339 /
   auto), `[limits] time_min/time_max`, dedup by (user, event id text) keeping the first copy in
   stream order, fan-out to the total row + one row per present dimension (email_domain =
   ASCII-lowercased part after the last '@'; CSV lookup join; raw string field), tumbling and
   sliding windows ([k*slide, k*slide+size) for every k with k*slide <= t < k*slide+size), and
   exact count(DISTINCT user) / count(*) per (key, window). The result goes to a Parquet file.
   `[[filters]]` and `[[metrics]]` (docs/SEMANTICS.md "Field paths" .. "Windows"): field paths
   ('.' into nested objects, '\.' a literal dot, never into arrays, JSON null = absent; the last
   occurrence of a nested key wins: macro `jget`), each filter a boolean column over the parsed
   lines (eq/ne/in/not_in by JSON type, integers against integers exactly, other numbers as
   DOUBLE; regex = RE2 `regexp_matches` on strings; lt..ge on numbers only; exists), the fan-out
   per metric (its filter, its dimensions, event type NULL for `by_type = false`), its windows,
   and thresholds: per (key, window, user) count(*) >= min_count, or the sum of the field in
   integer millionths (macro `micros`: the JSON number's decimal text truncated towards zero,
   by digit-string arithmetic, no floating point) >= ceil(value * 1e6); then unique_users =
   qualifying users, events = their events. Without [[metrics]] the one metric is `all`.
   Attribution metrics (`after`; docs/SEMANTICS.md "Attribution metrics", "Follows" .. "Counts"),
   over the counted events: the A's (the `after` filter) with the metric's dimension values
   (lookups LEFT JOINed, a miss = absent), equi-joined to the B's (the metric's `filter`, every
   counted event without one) of the same user on `within`-wide time buckets (an A listed in its
   own bucket and the next) and then t_b - within <= t_a < t_b; last_touch / first_touch keep per
   B (its file and line) the A with the largest / smallest t_a, ties to the smallest tuple of
   dimension values in [[dimensions]] order (bytes, via encode(); NULLS FIRST); any_touch keeps
   every A. Each credit fans out to the total row and one row per dimension present on the
   credited A, event type B's (NULL for by_type = false), window time t_a (window_on = "anchor")
   or t_b ("conversion"); a (key, window) counts DISTINCT B's, so a B reaching it through several
   credits counts once; users qualify with >= min_count (default 1) of them or with the sum of
   the min_sum field over them, read from the B's, as above.
4. Compares the two results row for row (FULL OUTER JOIN on metric, event_type, dimension, value,
   window, window_start, window_end; then unique_users and events), and the summary counters
   (lines, counted, duplicates, late, rejected) with abacus's _summary.json. An abacus output
   without a `metric` column (older than [[metrics]]) is read as metric `all`.

Prints rows compared, mismatches (the first --show of them), wall time and peak RSS of each side
and the speed ratio; exits 1 on any mismatch, 2 on a usage/setup error.

Not modelled in SQL (they do not occur in `abacus generate` output): `[limits] max_line_bytes`
(read_ndjson has no line length), invalid UTF-8, and the distinction between rejection *reasons*
(only the number of rejected lines is compared). Nor is a top-level key that occurs twice in a
line (read_ndjson keeps the first, SEMANTICS.md the last; nested keys are right). RE2 is not Rust's
`regex`: `(?i)` folds non-ASCII letters in both, `\w`/`\d`/`\b` are ASCII in RE2 and Unicode in
Rust. DuckDB's peak RSS includes the Python interpreter
(~30-40 MB) that hosts it.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
import tomllib
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
UNBOUNDED_TTL = "100000d"  # longer than 1970..2100: dedup records never expire

_UNITS_MS = {
    "ms": 1, "msec": 1, "millis": 1, "milliseconds": 1, "millisecond": 1,
    "s": 1000, "sec": 1000, "secs": 1000, "second": 1000, "seconds": 1000,
    "m": 60_000, "min": 60_000, "mins": 60_000, "minute": 60_000, "minutes": 60_000,
    "h": 3_600_000, "hr": 3_600_000, "hrs": 3_600_000, "hour": 3_600_000, "hours": 3_600_000,
    "d": 86_400_000, "day": 86_400_000, "days": 86_400_000,
    "w": 604_800_000, "week": 604_800_000, "weeks": 604_800_000,
}


def duration_ms(text: str) -> int:
    """A humantime-style duration ("1h", "90m", "1d 12h", "24h") in milliseconds."""
    parts = re.findall(r"(\d+)\s*([a-zA-Z]+)", text)
    if not parts or re.sub(r"(\d+)\s*([a-zA-Z]+)|\s", "", text):
        raise ValueError(f"cannot parse duration {text!r}")
    total = 0
    for n, unit in parts:
        if unit not in _UNITS_MS:
            raise ValueError(f"unknown unit {unit!r} in duration {text!r}")
        total += int(n) * _UNITS_MS[unit]
    return total


def rfc3339_ms(text: str) -> int:
    from datetime import datetime

    dt = datetime.fromisoformat(text.replace("Z", "+00:00").replace("z", "+00:00"))
    return int(dt.timestamp() * 1000)


# ---- TOML output (enough for abacus configs: tables of scalars and arrays of tables) ----------


def _toml_key(k: str) -> str:
    return k if re.fullmatch(r"[A-Za-z0-9_-]+", k) else json.dumps(k)


def _toml_scalar(v) -> str:
    """A TOML value: scalars, arrays and inline tables (filters' `where`, `min_sum`)."""
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, (int, float)):
        return repr(v)
    if isinstance(v, str):
        return json.dumps(v)  # a JSON string is a valid TOML basic string
    if isinstance(v, list):
        return "[" + ", ".join(_toml_scalar(x) for x in v) + "]"
    if isinstance(v, dict):
        return "{ " + ", ".join(f"{_toml_key(k)} = {_toml_scalar(x)}" for k, x in v.items()) + " }"
    raise TypeError(f"unsupported TOML value {v!r}")


def dump_toml(cfg: dict) -> str:
    out = []
    for name, value in cfg.items():
        if isinstance(value, dict):
            out.append(f"[{name}]")
            out += [f"{_toml_key(k)} = {_toml_scalar(v)}" for k, v in value.items()]
            out.append("")
        elif isinstance(value, list):
            for item in value:
                out.append(f"[[{name}]]")
                out += [f"{_toml_key(k)} = {_toml_scalar(v)}" for k, v in item.items()]
                out.append("")
        else:
            raise TypeError(f"unsupported top-level key {name}")
    return "\n".join(out)


def unbounded_config(cfg: dict, cfg_dir: Path) -> dict:
    cfg = json.loads(json.dumps(cfg))  # deep copy
    cfg.setdefault("watermark", {})["allowed_lateness"] = "unbounded"
    cfg.setdefault("dedup", {})["ttl"] = UNBOUNDED_TTL
    for d in cfg.get("dimensions", []):
        if "lookup" in d:
            d["lookup"] = str((cfg_dir / d["lookup"]).resolve())
    return cfg


# ---- the SQL job -------------------------------------------------------------------------------


def sql_str(s: str) -> str:
    return "'" + s.replace("'", "''") + "'"


def ident(s: str) -> str:
    return '"' + s.replace('"', '""') + '"'


def field_path(text: str) -> tuple[str, ...]:
    r"""A `field` as its keys: '.' separates keys, '\.' is a literal dot; another '\' is refused."""
    keys, cur, i = [], "", 0
    while i < len(text):
        ch = text[i]
        if ch == "\\":
            if i + 1 < len(text) and text[i + 1] == ".":
                cur += "."
                i += 2
                continue
            raise SystemExit(f"field {text!r}: a backslash may only escape a dot")
        if ch == ".":
            keys.append(cur)
            cur = ""
        else:
            cur += ch
        i += 1
    keys.append(cur)
    return tuple(keys)


def to_micros_literal(v) -> int:
    """The smallest integer number of millionths >= v (so `sum >= v` is `sum_micros >= this`)."""
    from decimal import Decimal
    import math

    return math.ceil(Decimal(str(v)) * 1_000_000)


def parse_metrics(cfg: dict) -> list[dict]:
    """The metrics of SEMANTICS.md "Metrics", normalized; the implicit `all` without [[metrics]]."""
    dim_names = [d["name"] for d in cfg.get("dimensions", [])]
    win_names = [w["name"] for w in cfg.get("windows", [])]
    filters = {}
    for fl in cfg.get("filters", []):
        if fl["name"] in filters:
            raise SystemExit(f"filter {fl['name']!r} defined twice")
        filters[fl["name"]] = fl.get("where", [])
    if "metrics" not in cfg:
        return [dict(name="all", where=None, dims=dim_names, windows=win_names, by_type=True,
                     min_count=None, min_sum=None, after=None)]
    out, seen = [], set()
    for m in cfg["metrics"]:
        name = m["name"]
        if name in seen:
            raise SystemExit(f"metric {name!r} defined twice")
        seen.add(name)
        if "filter" in m and m["filter"] not in filters:
            raise SystemExit(f"metric {name!r}: unknown filter {m['filter']!r}")
        dims = m.get("dimensions", dim_names)
        wins = m.get("windows", win_names)
        if set(dims) - set(dim_names) or set(wins) - set(win_names) or not wins:
            raise SystemExit(f"metric {name!r}: unknown dimension or window, or no window")
        if "min_count" in m and "min_sum" in m:
            raise SystemExit(f"metric {name!r}: at most one threshold")
        mc = m.get("min_count")
        if mc is not None and (isinstance(mc, bool) or not isinstance(mc, int) or mc < 1):
            raise SystemExit(f"metric {name!r}: min_count must be an integer >= 1")
        ms = m.get("min_sum")
        if ms is not None:
            if not isinstance(ms.get("value"), (int, float)) or isinstance(ms["value"], bool) \
                    or not ms["value"] > 0 or not isinstance(ms.get("field"), str):
                raise SystemExit(f"metric {name!r}: min_sum needs a field and a value > 0")
        # Attribution (SEMANTICS.md "Attribution metrics"): `after` names the anchors' filter.
        after = None
        if "after" in m:
            if m["after"] not in filters:
                raise SystemExit(f"metric {name!r}: unknown filter {m['after']!r} in `after`")
            if "within" not in m:
                raise SystemExit(f"metric {name!r}: `after` needs `within`")
            within = duration_ms(m["within"]) if isinstance(m["within"], str) else 0
            if within <= 0:
                raise SystemExit(f"metric {name!r}: `within` must be a duration > 0")
            attribution = m.get("attribution", "last_touch")
            window_on = m.get("window_on", "anchor")
            if attribution not in ("last_touch", "first_touch", "any_touch"):
                raise SystemExit(f"metric {name!r}: unknown attribution {attribution!r}")
            if window_on not in ("anchor", "conversion"):
                raise SystemExit(f"metric {name!r}: unknown window_on {window_on!r}")
            after = dict(where=filters[m["after"]], within=within, attribution=attribution,
                         window_on=window_on)
        elif {"within", "attribution", "window_on"} & set(m):
            raise SystemExit(f"metric {name!r}: within/attribution/window_on need `after`")
        out.append(dict(name=name, where=filters[m["filter"]] if "filter" in m else None,
                        dims=[d for d in dim_names if d in dims],
                        windows=[w for w in win_names if w in wins],
                        by_type=m.get("by_type", True), min_count=mc, min_sum=ms, after=after))
    return out


_OPS = ("eq", "ne", "in", "not_in", "regex", "lt", "le", "gt", "ge", "exists")
_INTS = "('BIGINT','UBIGINT')"
_NUMS = "('BIGINT','UBIGINT','DOUBLE')"


def _num_lit(x) -> str:
    if isinstance(x, bool) or not isinstance(x, (int, float)):
        raise SystemExit(f"filter: {x!r} is not a number")
    return f"{int(x)}::HUGEINT" if isinstance(x, int) else f"{sql_str(repr(float(x)))}::DOUBLE"


def _jt(v: str) -> str:
    return f"nullif(json_type({v}), 'NULL')"


def _eq_sql(v: str, x) -> str:
    """eq: same JSON type and equal (strings byte for byte, numbers numerically, booleans)."""
    if isinstance(x, bool):
        return f"({_jt(v)} = 'BOOLEAN' AND {v}::VARCHAR = {sql_str('true' if x else 'false')})"
    if isinstance(x, str):
        return f"({_jt(v)} = 'VARCHAR' AND ({v} ->> '$') = {sql_str(x)})"
    return _cmp_sql(v, "=", x)


def _cmp_sql(v: str, op: str, n) -> str:
    """A number `op` n; integers against an integer exactly (HUGEINT), else as DOUBLE."""
    lit = _num_lit(n)
    if isinstance(n, int):
        return (f"(CASE WHEN {_jt(v)} IN {_INTS} THEN try_cast({v}::VARCHAR AS HUGEINT) {op} {lit} "
                f"WHEN {_jt(v)} = 'DOUBLE' THEN try_cast({v}::VARCHAR AS DOUBLE) {op} {lit}::DOUBLE "
                f"ELSE false END)")
    return (f"(CASE WHEN {_jt(v)} IN {_NUMS} THEN try_cast({v}::VARCHAR AS DOUBLE) {op} {lit} "
            f"ELSE false END)")


def clause_sql(v: str, clause: dict) -> str:
    """One `where` clause on the JSON value v (SQL NULL = absent; JSON null counts as absent)."""
    ops = [k for k in clause if k != "field"]
    if len(ops) != 1 or ops[0] not in _OPS:
        raise SystemExit(f"filter clause {clause!r}: exactly one operator of {', '.join(_OPS)}")
    op, x = ops[0], clause[ops[0]]
    if op == "eq":
        e = _eq_sql(v, x)
    elif op == "ne":
        e = f"NOT coalesce({_eq_sql(v, x)}, false)"
    elif op in ("in", "not_in"):
        if not isinstance(x, list) or not x:
            raise SystemExit(f"filter clause {clause!r}: `{op}` needs a non-empty list")
        e = "(" + " OR ".join(f"coalesce({_eq_sql(v, y)}, false)" for y in x) + ")"
        if op == "not_in":
            e = f"NOT {e}"
    elif op == "regex":
        e = f"({_jt(v)} = 'VARCHAR' AND regexp_matches({v} ->> '$', {sql_str(x)}))"
    elif op == "exists":
        if not isinstance(x, bool):
            raise SystemExit(f"filter clause {clause!r}: exists is true or false")
        e = f"({_jt(v)} IS {'NOT ' if x else ''}NULL)"
    else:
        e = _cmp_sql(v, {"lt": "<", "le": "<=", "gt": ">", "ge": ">="}[op], x)
    return f"coalesce({e}, false)"


def build_job(cfg: dict, inputs: list[str]) -> list[str]:
    """The SQL statements of the job; the last one leaves the result in table `result`."""
    f = cfg["fields"]
    fmt = f.get("time_format", "auto")
    limits = cfg.get("limits", {})
    tmin = rfc3339_ms(limits["time_min"]) if "time_min" in limits else 0
    tmax = rfc3339_ms(limits["time_max"]) if "time_max" in limits else 4_102_444_800_000
    dims = cfg.get("dimensions", [])
    wins = cfg.get("windows", [])

    # Every JSON field the job needs, read once, as JSON (keeps the JSON type for validation).
    fields = [f["user"], f["time"], f["event_type"]]
    if f.get("event_id"):
        fields.append(f["event_id"])
    metrics = parse_metrics(cfg)
    # Field paths (SEMANTICS.md "Field paths") of dimensions, used filters and min_sum fields;
    # their top-level keys are read as columns, deeper keys looked up with jget (last key wins).
    used_filters = list(dict.fromkeys(
        json.dumps(w) for m in metrics
        for w in (m["where"], m["after"]["where"] if m["after"] else None) if w is not None))
    flt_keys = used_filters
    used_filters = [json.loads(w) for w in used_filters]

    def flt(where) -> str:  # a filter's boolean column in `counted` (no filter: every event)
        return "true" if where is None else f"flt{flt_keys.index(json.dumps(where))}"
    sum_fields = list(dict.fromkeys(m["min_sum"]["field"] for m in metrics if m["min_sum"]))
    paths = [field_path(d["field"]) for d in dims]
    paths += [field_path(c["field"]) for w in used_filters for c in w]
    paths += [field_path(x) for x in sum_fields]
    fields += [pth[0] for pth in paths]
    fields = list(dict.fromkeys(fields))
    col = {name: f"c{i}" for i, name in enumerate(fields)}

    def pe(field: str) -> str:  # the JSON value at a field path (SQL NULL when absent)
        keys = field_path(field)
        expr = col[keys[0]]
        for k in keys[1:]:
            expr = f"jget({expr}, {sql_str(k)})"
        return expr
    columns = "{" + ", ".join(f"{sql_str(n)}: 'JSON'" for n in fields) + "}"
    select_cols = ", ".join(f"{ident(n)} AS {col[n]}" for n in fields)
    reads = " UNION ALL ".join(
        f"SELECT {i} AS file_no, ordinality AS line_no, {select_cols} "
        f"FROM read_ndjson({sql_str(p)}, columns={columns}, ignore_errors=true, "
        f"maximum_object_size=1048576) WITH ORDINALITY"
        for i, p in enumerate(inputs)
    )

    def jt(c):  # JSON type, NULL for an absent field or JSON null
        return f"nullif(json_type({c}), 'NULL')"

    t = col[f["time"]]
    num_s = f"(CASE WHEN {jt(t)} IN ('BIGINT','UBIGINT') THEN try_cast({t} AS HUGEINT) * 1000 " \
            f"ELSE floor(try_cast({t} AS DOUBLE) * 1000) END)"
    num_ms = f"(CASE WHEN {jt(t)} IN ('BIGINT','UBIGINT') THEN try_cast({t} AS HUGEINT) " \
             f"ELSE floor(try_cast({t} AS DOUBLE)) END)"
    num_auto = f"(CASE WHEN abs(try_cast({t} AS DOUBLE)) < 1e11 THEN {num_s} ELSE {num_ms} END)"
    ts = f"({t} ->> '$')"
    rfc = f"rfc3339_ms({ts})"
    digits_auto = (f"(CASE WHEN abs(try_cast({ts} AS HUGEINT)) < 100000000000 "
                   f"THEN try_cast({ts} AS HUGEINT) * 1000 ELSE try_cast({ts} AS HUGEINT) END)")
    is_num = f"{jt(t)} IN ('BIGINT','UBIGINT','DOUBLE')"
    is_str = f"{jt(t)} = 'VARCHAR'"
    time_expr = {
        "unix_s": f"CASE WHEN {is_num} THEN {num_s} END",
        "unix_ms": f"CASE WHEN {is_num} THEN {num_ms} END",
        "rfc3339": f"CASE WHEN {is_str} THEN {rfc} END",
        "auto": f"CASE WHEN {is_num} THEN {num_auto} "
                f"WHEN {is_str} AND regexp_full_match({ts}, '-?[0-9]{{1,18}}') THEN {digits_auto} "
                f"WHEN {is_str} THEN {rfc} END",
    }[fmt]

    u, et = col[f["user"]], col[f["event_type"]]
    idc = col.get(f.get("event_id")) if f.get("event_id") else None
    id_text = (f"CASE {jt(idc)} WHEN 'VARCHAR' THEN {idc} ->> '$' "
               f"WHEN 'BIGINT' THEN {idc}::VARCHAR WHEN 'UBIGINT' THEN {idc}::VARCHAR END"
               if idc else "NULL::VARCHAR")
    id_ok = f"({jt(idc)} IS NULL OR {jt(idc)} IN ('VARCHAR','BIGINT','UBIGINT'))" if idc else "true"
    dim_ok = " AND ".join(
        f"({jt(pe(d['field']))} IS NULL OR {jt(pe(d['field']))} = 'VARCHAR')" for d in dims
    ) or "true"
    extra = [f"CASE WHEN {jt(pe(d['field']))} = 'VARCHAR' THEN nullif({pe(d['field'])} ->> '$', '') "
             f"END AS d{i}" for i, d in enumerate(dims)]
    # Filters are evaluated on every parsed line; only counted events use the result.
    extra += [(" AND ".join(clause_sql(pe(c["field"]), c) for c in w) or "true") + f" AS flt{j}"
              for j, w in enumerate(used_filters)]
    extra += [f"CASE WHEN {jt(pe(x))} IN ('BIGINT','UBIGINT','DOUBLE') "
              f"THEN greatest(coalesce(micros({pe(x)}::VARCHAR), 0), 0) ELSE 0 END::HUGEINT AS amt{j}"
              for j, x in enumerate(sum_fields)]
    dim_raw = "".join(", " + e for e in extra)

    stmts = [
        # The value of key k in JSON object o, the last occurrence winning (json_extract would
        # take the first); NULL for a missing key and for a non-object (an array included).
        """CREATE OR REPLACE MACRO jget(o, k) AS json_extract(o, '$.*')[
            len(json_keys(o)) + 1 - list_position(list_reverse(json_keys(o)), k)]""",
        # A JSON number's text in millionths, truncated towards zero, exactly (digit strings).
        r"""CREATE OR REPLACE MACRO micros_parts(s) AS regexp_extract(s,
            '^(-?)([0-9]+)(?:\.([0-9]+))?(?:[eE]([+-]?[0-9]+))?$', ['sign', 'int', 'frac', 'exp'])""",
        """CREATE OR REPLACE MACRO micros_digits(d, sh) AS CASE WHEN d = '' THEN 0::HUGEINT
            WHEN sh >= 0 THEN try_cast(d || repeat('0', sh) AS HUGEINT)
            WHEN length(d) + sh <= 0 THEN 0::HUGEINT
            ELSE try_cast(left(d, length(d) + sh) AS HUGEINT) END""",
        """CREATE OR REPLACE MACRO micros_of(m) AS CASE WHEN m.int <> '' THEN
            (CASE WHEN m.sign = '-' THEN -1 ELSE 1 END) * micros_digits(ltrim(m.int || m.frac, '0'),
                coalesce(try_cast(nullif(m.exp, '') AS INT), 0) - length(m.frac) + 6) END""",
        "CREATE OR REPLACE MACRO micros(s) AS micros_of(micros_parts(s))",
        # Exact floor division for BIGINTs (DuckDB's // and % truncate towards zero).
        "CREATE OR REPLACE MACRO fdiv(a, b) AS (a - (((a % b) + b) % b)) // b",
        # RFC 3339 per SEMANTICS.md: T/t/space, Z/z or +-HH:MM required, <= 9 fraction digits
        # (truncated to ms), a leap second folds into the next second.
        r"""CREATE OR REPLACE MACRO rfc3339_parts(s) AS regexp_extract(s,
            '^([0-9]{4})-([0-9]{2})-([0-9]{2})[Tt ]([0-9]{2}):([0-9]{2}):([0-9]{2})(\.[0-9]{1,9})?([Zz]|[+-][0-9]{2}:[0-9]{2})$',
            ['y','mo','d','h','mi','sec','frac','off'])""",
        r"""CREATE OR REPLACE MACRO rfc3339_fields(m) AS CASE
          WHEN m.y <> '' AND try_cast(m.h AS INT) <= 23 AND try_cast(m.mi AS INT) <= 59
               AND try_cast(m.sec AS INT) <= 60
               AND (m.off IN ('Z', 'z') OR (try_cast(m.off[2:3] AS INT) <= 23
                                           AND try_cast(m.off[5:6] AS INT) <= 59))
          THEN (date_diff('day', DATE '1970-01-01', try_cast(m.y || '-' || m.mo || '-' || m.d AS DATE))::BIGINT * 86400
                + try_cast(m.h AS BIGINT) * 3600 + try_cast(m.mi AS BIGINT) * 60 + try_cast(m.sec AS BIGINT)
                - CASE WHEN m.off IN ('Z', 'z') THEN 0
                       ELSE (CASE WHEN m.off[1] = '-' THEN -1 ELSE 1 END)
                            * (try_cast(m.off[2:3] AS BIGINT) * 60 + try_cast(m.off[5:6] AS BIGINT)) END * 60) * 1000
               + coalesce(try_cast(rpad(m.frac[2:4], 3, '0') AS BIGINT), 0)
          END""",
        "CREATE OR REPLACE MACRO rfc3339_ms(s) AS rfc3339_fields(rfc3339_parts(s))",
        f"CREATE OR REPLACE TEMP TABLE raw AS {reads}",
        f"""CREATE OR REPLACE TEMP TABLE parsed AS
            SELECT file_no, line_no,
                   CASE WHEN {jt(u)} = 'VARCHAR' THEN nullif({u} ->> '$', '') END AS usr,
                   CASE WHEN {jt(et)} = 'VARCHAR' THEN nullif({et} ->> '$', '') END AS etype,
                   try_cast({time_expr} AS BIGINT) AS t,
                   {id_text} AS id_text,
                   {id_ok} AND {dim_ok} AS types_ok
                   {dim_raw}
            FROM raw""",
        f"""CREATE OR REPLACE TEMP TABLE accepted AS
            SELECT * EXCLUDE (types_ok) FROM parsed
            WHERE usr IS NOT NULL AND t IS NOT NULL AND t >= {tmin} AND t < {tmax}
              AND etype IS NOT NULL AND types_ok""",
        # Dedup: the first copy of a (user, event id) in stream order counts; no expiry (see top).
        """CREATE OR REPLACE TEMP TABLE counted AS
            SELECT * FROM accepted
            QUALIFY id_text IS NULL
                 OR row_number() OVER (PARTITION BY usr, id_text ORDER BY file_no, line_no) = 1""",
    ]

    # Fan-out (SEMANTICS.md "Fan-out"), per metric: its events (filter), the total row + one row
    # per present dimension of the metric; event type NULL for by_type = false; the min_sum amount.
    lookups, dim_value = [], {}
    for i, d in enumerate(dims):
        if d.get("extract") == "email_domain":
            dim_value[d["name"]] = (
                f"nullif(translate(regexp_extract(d{i}, '@([^@]*)$', 1), "
                f"'ABCDEFGHIJKLMNOPQRSTUVWXYZ', 'abcdefghijklmnopqrstuvwxyz'), '')", None)
        elif d.get("extract") not in (None, "raw"):
            raise SystemExit(f"unsupported extract {d.get('extract')!r}")
        elif "lookup" in d:
            lk = f"lookup{i}"  # DISTINCT: a key listed twice with the same value maps once
            lookups.append(
                f"CREATE OR REPLACE TEMP TABLE {lk} AS SELECT DISTINCT key, value FROM read_csv("
                f"{sql_str(d['lookup'])}, header=true, columns={{'key':'VARCHAR','value':'VARCHAR'}}, "
                f"quote='\"', auto_detect=false)")
            dim_value[d["name"]] = (f"l{i}.value", f"{lk} l{i} ON l{i}.key = counted.d{i}")
        else:
            dim_value[d["name"]] = (f"d{i}", None)
    any_sum = any(m["min_sum"] for m in metrics)
    fan = []
    att = [mi for mi, m in enumerate(metrics) if m["after"]]
    for mi, m in enumerate(metrics):
        if m["after"]:
            continue
        cond = [flt(m["where"])]
        et_expr = "etype" if m["by_type"] else "NULL::VARCHAR"
        amt = (f", amt{sum_fields.index(m['min_sum']['field'])} AS amount" if m["min_sum"] else
               ", NULL::HUGEINT AS amount") if any_sum else ""
        head = f"SELECT {mi} AS metric_no, usr, t, {et_expr} AS etype"
        fan.append(f"{head}, NULL::VARCHAR AS dimension, NULL::VARCHAR AS value{amt} "
                   f"FROM counted WHERE {' AND '.join(cond)}")
        for dn in m["dims"]:
            v, join = dim_value[dn]
            if join:
                fan.append(f"{head}, {sql_str(dn)}, {v}{amt} FROM counted JOIN {join} "
                           f"WHERE {' AND '.join(cond)}")
            else:
                fan.append(f"{head}, {sql_str(dn)}, {v} AS v{amt} FROM counted "
                           f"WHERE {' AND '.join(cond + ['v IS NOT NULL'])}")
    stmts += lookups
    if not fan:  # attribution metrics only: an empty `keyed` of the same shape
        fan.append("SELECT -1 AS metric_no, usr, t, etype, NULL::VARCHAR AS dimension, "
                   "NULL::VARCHAR AS value" + (", NULL::HUGEINT AS amount" if any_sum else "")
                   + " FROM counted WHERE false")
    stmts.append("CREATE OR REPLACE TEMP TABLE keyed AS " + "\nUNION ALL ".join(fan))

    # Attribution metrics (SEMANTICS.md "Attribution metrics"), per metric over `counted` (dedup
    # and rejection done):
    #   anchors{mi}: the A's (the `after` filter) with the metric's dimension values (lookups
    #     LEFT JOINed: a miss is an absent value), each listed in two `within`-wide buckets, its
    #     own and the next, so that an equi-join on (user, bucket of t_b) finds every A with
    #     t_b - within <= t_a < t_b (such a t_a lies in t_b's bucket or the one before);
    #   credits{mi}: the (B, credited A) pairs: B = the metric's `filter` (every event without
    #     one); follows = t_b - within <= t_a < t_b (t_a < t_b <= t_a + within; equal times
    #     never, so an event that is both A and B never credits itself); last_touch keeps per B
    #     the A with the largest t_a, first_touch the smallest, ties to the smallest tuple of
    #     dimension values in [[dimensions]] order (bytes, absent first); any_touch keeps all.
    #     The window time tw is t_a (window_on = "anchor") or t_b ("conversion"); the event type
    #     and the min_sum amount are B's; bid identifies B (its file and line).
    #   akeyed: the fan-out of the credits: the total row, and (d, v) for each credit to an A
    #     whose d is v. The same B reaching one (key, window) through several credits counts
    #     once there (the DISTINCT on bid in the window step below).
    afan = []
    for mi in att:
        m, a = metrics[mi], metrics[mi]["after"]
        w_ms = a["within"]
        dvals = [dim_value[dn] for dn in m["dims"]]
        joins = "".join(f" LEFT JOIN {j}" for _, j in dvals if j)
        acols = "".join(f", {v} AS a{j}" for j, (v, _) in enumerate(dvals))
        stmts.append(f"""CREATE OR REPLACE TEMP TABLE anchors{mi} AS
            SELECT usr, t AS ta{acols}, fdiv(t, {w_ms}) + o.o AS bucket
            FROM counted{joins} CROSS JOIN (VALUES (0), (1)) o(o)
            WHERE {flt(a["where"])}""")
        et_expr = "etype" if m["by_type"] else "NULL::VARCHAR"
        amt = (f"amt{sum_fields.index(m['min_sum']['field'])}" if m["min_sum"]
               else "NULL::HUGEINT")
        pick = ""
        if a["attribution"] != "any_touch":
            order = ["a.ta DESC" if a["attribution"] == "last_touch" else "a.ta ASC"]
            order += [f"encode(a.a{j}) ASC NULLS FIRST" for j in range(len(dvals))]
            pick = f"QUALIFY row_number() OVER (PARTITION BY b.bid ORDER BY {', '.join(order)}) = 1"
        tw = "a.ta" if a["window_on"] == "anchor" else "b.tb"
        stmts.append(f"""CREATE OR REPLACE TEMP TABLE credits{mi} AS
            SELECT b.bid, b.usr, b.etype, b.amount, {tw} AS tw
                   {''.join(f', a.a{j}' for j in range(len(dvals)))}
            FROM (SELECT (file_no::BIGINT << 40) + line_no AS bid, usr, t AS tb,
                         {et_expr} AS etype, {amt} AS amount, fdiv(t, {w_ms}) AS bucket
                  FROM counted WHERE {flt(m["where"])}) b
            JOIN anchors{mi} a ON a.usr = b.usr AND a.bucket = b.bucket
                              AND b.tb - {w_ms} <= a.ta AND a.ta < b.tb
            {pick}""")
        head = f"SELECT {mi} AS metric_no, usr, tw AS t, etype"
        tail = f", amount, bid FROM credits{mi}" if any_sum else f", bid FROM credits{mi}"
        afan.append(f"{head}, NULL::VARCHAR AS dimension, NULL::VARCHAR AS value{tail}")
        afan += [f"{head}, {sql_str(dn)}, a{j}{tail} WHERE a{j} IS NOT NULL"
                 for j, dn in enumerate(m["dims"])]
    if att:
        stmts.append("CREATE OR REPLACE TEMP TABLE akeyed AS " + "\nUNION ALL ".join(afan))

    # Dictionary-encode keys and users (integer GROUP BYs are ~2.5x faster than string ones).
    stmts += [
        """CREATE OR REPLACE TEMP TABLE keys AS
            SELECT row_number() OVER () AS key_id, * FROM
            (SELECT DISTINCT metric_no, etype, dimension, value FROM keyed""" +
        (" UNION SELECT metric_no, etype, dimension, value FROM akeyed" if att else "") + """)""",
        """CREATE OR REPLACE TEMP TABLE users AS
            SELECT row_number() OVER () AS user_id, usr FROM (SELECT DISTINCT usr FROM keyed""" +
        (" UNION SELECT usr FROM akeyed" if att else "") + """)""",
        f"""CREATE OR REPLACE TEMP TABLE ev AS
            SELECT k.key_id, k.metric_no, u.user_id, keyed.t{', keyed.amount' if any_sum else ''}
            FROM keyed
            JOIN keys k ON k.metric_no = keyed.metric_no
                       AND k.etype IS NOT DISTINCT FROM keyed.etype
                       AND k.dimension IS NOT DISTINCT FROM keyed.dimension
                       AND k.value IS NOT DISTINCT FROM keyed.value
            JOIN users u ON u.usr = keyed.usr""",
    ]
    if att:
        stmts.append(f"""CREATE OR REPLACE TEMP TABLE aev AS
            SELECT k.key_id, k.metric_no, u.user_id, akeyed.bid, akeyed.t{', akeyed.amount' if any_sum else ''}
            FROM akeyed
            JOIN keys k ON k.metric_no = akeyed.metric_no
                       AND k.etype IS NOT DISTINCT FROM akeyed.etype
                       AND k.dimension IS NOT DISTINCT FROM akeyed.dimension
                       AND k.value IS NOT DISTINCT FROM akeyed.value
            JOIN users u ON u.usr = akeyed.usr""")
    # Windows: an event at t belongs to the windows [k*slide, k*slide + size) with
    # k*slide <= t < k*slide + size, i.e. k in [fdiv(t, slide) - size/slide + 1, fdiv(t, slide)].
    # A metric counts in its own windows only. Without a threshold: count(DISTINCT user), count(*).
    # With one: per (key, window, user) the count / the sum of millionths over the whole window
    # (every pane of a sliding one), then the qualifying users and their events.
    # Attribution metrics: the credited B's of a (key, window) are the DISTINCT B's (bid) whose
    # credits put them there (window time t_a or t_b); a user qualifies with >= min_count
    # (default 1) of them or a sum of their (B's) amounts >= the min_sum value.
    def qualifies(mis: list[int]) -> str:
        return "CASE metric_no " + " ".join(
            f"WHEN {mi} THEN " + (
                f"s >= {to_micros_literal(metrics[mi]['min_sum']['value'])}" if metrics[mi]["min_sum"]
                else f"n >= {metrics[mi]['min_count'] or 1}") for mi in mis) + " END"

    per_spec = []
    for w in wins:
        size = duration_ms(w["size"])
        slide = duration_ms(w.get("slide", w["size"]))
        n = size // slide
        if size % slide or n < 1:
            raise SystemExit(f"window {w['name']}: slide must divide size")
        window_k = (f"fdiv(t, {slide}) AS k" if n == 1 else
                    f"unnest(range(fdiv(t, {slide}) - {n - 1}, fdiv(t, {slide}) + 1)) AS k")
        plain = [mi for mi, m in enumerate(metrics) if w["name"] in m["windows"]
                 and not m["min_count"] and not m["min_sum"] and not m["after"]]
        thresh = [mi for mi, m in enumerate(metrics) if w["name"] in m["windows"]
                  and (m["min_count"] or m["min_sum"]) and not m["after"]]
        attw = [mi for mi in att if w["name"] in metrics[mi]["windows"]]
        bounds = f"""{sql_str(w['name'])} AS "window", k * {slide} AS window_start,
                   k * {slide} + {size} AS window_end"""
        if plain:
            where = "" if len(plain) == len(metrics) else \
                f" WHERE metric_no IN ({', '.join(map(str, plain))})"
            per_spec.append(f"""
            SELECT key_id, {bounds},
                   count(DISTINCT user_id)::UBIGINT AS unique_users, count(*)::UBIGINT AS events
            FROM (SELECT key_id, user_id, {window_k} FROM ev{where})
            GROUP BY key_id, k""")
        amount = "amount" if any_sum else "NULL::HUGEINT AS amount"
        if thresh:
            per_spec.append(f"""
            SELECT key_id, {bounds},
                   count(*)::UBIGINT AS unique_users, sum(n)::UBIGINT AS events
            FROM (SELECT key_id, k, count(*) AS n, coalesce(sum(amount), 0) AS s
                  FROM (SELECT key_id, metric_no, user_id, {amount}, {window_k} FROM ev
                        WHERE metric_no IN ({', '.join(map(str, thresh))}))
                  GROUP BY key_id, metric_no, k, user_id
                  HAVING {qualifies(thresh)})
            GROUP BY key_id, k""")
        if attw:
            per_spec.append(f"""
            SELECT key_id, {bounds},
                   count(*)::UBIGINT AS unique_users, sum(n)::UBIGINT AS events
            FROM (SELECT key_id, k, count(*) AS n, coalesce(sum(amount), 0) AS s
                  FROM (SELECT DISTINCT key_id, metric_no, user_id, bid, amount, k
                        FROM (SELECT key_id, metric_no, user_id, bid, {amount}, {window_k} FROM aev
                              WHERE metric_no IN ({', '.join(map(str, attw))})))
                  GROUP BY key_id, metric_no, k, user_id
                  HAVING {qualifies(attw)})
            GROUP BY key_id, k""")
    names = ", ".join(f"({mi}, {sql_str(m['name'])})" for mi, m in enumerate(metrics))
    stmts.append("CREATE OR REPLACE TEMP TABLE counts AS " + "\nUNION ALL ".join(per_spec))
    stmts.append(f"""CREATE OR REPLACE TEMP TABLE result AS
        SELECT mn.metric, keys.etype AS event_type, keys.dimension, keys.value, c."window",
               c.window_start, c.window_end, c.unique_users, c.events
        FROM counts c JOIN keys USING (key_id)
        JOIN (VALUES {names}) mn(metric_no, metric) ON mn.metric_no = keys.metric_no""")
    return stmts


def run_job(cfg: dict, inputs: list[str], threads: int | None = None):
    """Runs the SQL job on a fresh DuckDB connection and returns it (tables raw, accepted, counted,
    result). `cfg` is a parsed config whose lookup paths are absolute (or relative to the cwd)."""
    import duckdb

    con = duckdb.connect()
    if threads:
        con.execute(f"SET threads = {int(threads)}")
    con.execute("SET preserve_insertion_order = true")
    for stmt in build_job(cfg, [str(Path(p).resolve()) for p in inputs]):
        t0 = time.perf_counter()
        con.execute(stmt)
        if os.environ.get("COMPARE_DUCKDB_PROFILE"):
            print(f"{time.perf_counter() - t0:7.2f} s  {' '.join(stmt.split())[:70]}", file=sys.stderr)
    return con


def worker(args) -> int:
    """Runs the SQL job (in its own process so that its RSS and time are its own)."""
    import duckdb

    cfg = tomllib.loads(Path(args.config).read_text())
    for d in cfg.get("dimensions", []):  # lookups are relative to the config file
        if "lookup" in d:
            d["lookup"] = str((Path(args.config).resolve().parent / d["lookup"]).resolve())
    start = time.perf_counter()
    con = run_job(cfg, args.inputs, args.threads)
    lines, accepted, counted, rows = con.execute(
        "SELECT (SELECT count(*) FROM raw), (SELECT count(*) FROM accepted), "
        "(SELECT count(*) FROM counted), (SELECT count(*) FROM result)").fetchone()
    query_s = time.perf_counter() - start
    con.execute(f"COPY result TO {sql_str(args._worker)} (FORMAT parquet)")
    json.dump({"lines": lines, "counted": counted, "duplicates": accepted - counted, "late": 0,
               "rejected": lines - accepted, "rows": rows, "query_s": query_s,
               "threads": con.execute("SELECT current_setting('threads')").fetchone()[0],
               "duckdb": duckdb.__version__},
              sys.stdout)
    return 0


# ---- measuring ---------------------------------------------------------------------------------


def timed(cmd: list[str], **kw) -> tuple[subprocess.CompletedProcess, float, int]:
    """Runs cmd under /usr/bin/time -v; returns (process, wall seconds, peak RSS in KiB)."""
    with tempfile.NamedTemporaryFile("r", suffix=".time") as tf:
        start = time.perf_counter()
        p = subprocess.run(["/usr/bin/time", "-v", "-o", tf.name, *cmd], text=True,
                           capture_output=True, **kw)
        wall = time.perf_counter() - start
        m = re.search(r"Maximum resident set size \(kbytes\): (\d+)", tf.read())
    return p, wall, int(m.group(1)) if m else -1


def find_abacus(explicit: str | None) -> str:
    if explicit:
        return explicit
    b = REPO / "target" / "release" / "abacus"
    if b.is_file() and os.access(b, os.X_OK) and b.stat().st_size > 0:
        return str(b)
    found = shutil.which("abacus")
    if not found:
        raise SystemExit("no abacus binary: run `cargo build --release` or pass --abacus")
    return found


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("inputs", nargs="+", metavar="INPUT")
    ap.add_argument("--config", required=True)
    ap.add_argument("--abacus-out", help="abacus output directory (default: a temporary one)")
    ap.add_argument("--threads", type=int, help="threads for both abacus and DuckDB")
    ap.add_argument("--abacus", help="abacus binary (default: target/release/abacus)")
    ap.add_argument("--show", type=int, default=10, help="mismatches to print")
    ap.add_argument("--keep-work", action="store_true", help="keep the work directory")
    ap.add_argument("--_worker", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args._worker:
        return worker(args)

    import duckdb

    cfg_path = Path(args.config).resolve()
    cfg = unbounded_config(tomllib.loads(cfg_path.read_text()), cfg_path.parent)
    work = Path(tempfile.mkdtemp(prefix="abacus-duckdb-"))
    try:
        mod_cfg = work / "abacus-unbounded.toml"
        mod_cfg.write_text(f"# {cfg_path} with unbounded lateness and no dedup expiry\n"
                           + dump_toml(cfg))
        out_dir = Path(args.abacus_out).resolve() if args.abacus_out else work / "abacus-out"
        inputs = [str(Path(p).resolve()) for p in args.inputs]
        in_bytes = sum(os.path.getsize(p) for p in inputs)
        print("compare_duckdb: abacus vs an independent DuckDB SQL implementation")
        print(f"  inputs: {' '.join(args.inputs)} ({in_bytes / 1e6:.1f} MB compressed)")
        print(f"  config: {args.config}, run with allowed_lateness = \"unbounded\", "
              f"ttl = \"{UNBOUNDED_TTL}\" (nothing late, dedup never expires;")
        print("          watermark/lateness/ttl expiry are NOT cross-checked)")

        # abacus
        cmd = [find_abacus(args.abacus), "run", *inputs, "--config", str(mod_cfg), "--out",
               str(out_dir), "--overwrite", "-q"]
        if args.threads:
            cmd += ["--threads", str(args.threads)]
        p, ab_wall, ab_rss = timed(cmd)
        if p.returncode != 0:
            print(p.stdout, p.stderr, file=sys.stderr)
            raise SystemExit(f"abacus failed with exit code {p.returncode}")
        ab_sum = json.loads((out_dir / "_summary.json").read_text())

        # DuckDB, in a child process
        duck_parquet = work / "duckdb.parquet"
        cmd = [sys.executable, str(Path(__file__).resolve()), *inputs, "--config", str(mod_cfg),
               "--_worker", str(duck_parquet)]
        if args.threads:
            cmd += ["--threads", str(args.threads)]
        p, dk_wall, dk_rss = timed(cmd)
        if p.returncode != 0:
            print(p.stdout, p.stderr, file=sys.stderr)
            raise SystemExit(f"DuckDB job failed with exit code {p.returncode}")
        dk_sum = json.loads(p.stdout)

        # Compare
        con = duckdb.connect()
        ab_glob = sql_str(str(out_dir / '*.parquet'))
        ab_cols = {r[0] for r in con.execute(
            f"DESCRIBE SELECT * FROM read_parquet({ab_glob})").fetchall()}
        # An abacus without the metric column (older than [[metrics]]) wrote the implicit `all`.
        ab_metric = "metric" if "metric" in ab_cols else "'all' AS metric"
        con.execute(f"""CREATE TEMP TABLE a AS SELECT {ab_metric}, event_type, dimension, value, "window",
                          epoch_ms(window_start) AS ws, epoch_ms(window_end) AS we,
                          unique_users::UBIGINT AS uu, events::UBIGINT AS ev
                        FROM read_parquet({ab_glob})""")
        con.execute(f"""CREATE TEMP TABLE d AS SELECT metric, event_type, dimension, value, "window",
                          window_start AS ws, window_end AS we, unique_users AS uu, events AS ev
                        FROM read_parquet({sql_str(str(duck_parquet))})""")
        key = ["metric", "event_type", "dimension", "value", "window", "ws", "we"]
        on = " AND ".join(f'a."{k}" IS NOT DISTINCT FROM d."{k}"' for k in key)
        sel = ", ".join(f'coalesce(a."{k}", d."{k}") AS "{k}"' for k in key)
        con.execute(f"""CREATE TEMP TABLE j AS SELECT {sel}, a.uu AS a_uu, d.uu AS d_uu,
                          a.ev AS a_ev, d.ev AS d_ev, a.metric IS NOT NULL AS in_a,
                          d.metric IS NOT NULL AS in_d
                        FROM a FULL OUTER JOIN d ON {on}""")
        n_a, n_d, n_j = con.execute(
            "SELECT (SELECT count(*) FROM a), (SELECT count(*) FROM d), (SELECT count(*) FROM j)"
        ).fetchone()
        dup_a = con.execute("SELECT count(*) - count(DISTINCT (metric, event_type, dimension, value, "
                            "\"window\", ws, we)) FROM a").fetchone()[0]
        bad = con.execute("""SELECT count(*) FILTER (WHERE NOT in_d), count(*) FILTER (WHERE NOT in_a),
                               count(*) FILTER (WHERE in_a AND in_d AND (a_uu <> d_uu OR a_ev <> d_ev))
                             FROM j""").fetchone()
        mism = sum(bad) + dup_a
        print(f"\nrows: abacus {n_a}, duckdb {n_d}, compared (full outer join) {n_j}")
        print(f"mismatches: {mism} (only in abacus {bad[0]}, only in duckdb {bad[1]}, "
              f"different counts {bad[2]}, duplicate keys in abacus {dup_a})")
        if mism:
            rows = con.execute(f"""SELECT metric, event_type, dimension, value, "window",
                                     epoch_ms(ws)::VARCHAR, a_uu, d_uu, a_ev, d_ev FROM j
                                   WHERE NOT in_a OR NOT in_d OR a_uu <> d_uu OR a_ev <> d_ev
                                   ORDER BY ws, metric, event_type, dimension NULLS FIRST, value, "window"
                                   LIMIT {args.show}""").fetchall()
            print("  metric | event_type | dimension | value | window | window_start | "
                  "unique_users abacus/duckdb | events abacus/duckdb")
            for r in rows:
                print(f"  {r[0]} | {r[1]} | {r[2]} | {r[3]} | {r[4]} | {r[5]} | {r[6]}/{r[7]} | "
                      f"{r[8]}/{r[9]}")

        counters = ["lines", "counted", "duplicates", "late", "rejected"]
        print("\nsummary     " + " ".join(f"{c:>11}" for c in counters))
        print("  abacus    " + " ".join(f"{ab_sum.get(c, '?'):>11}" for c in counters))
        print("  duckdb    " + " ".join(f"{dk_sum[c]:>11}" for c in counters))
        counter_bad = [c for c in counters if ab_sum.get(c) != dk_sum[c]]
        if counter_bad:
            print(f"  counter mismatch: {', '.join(counter_bad)}")

        lines = ab_sum.get("lines", dk_sum["lines"])
        print(f"\n{'':8}{'wall s':>9}{'peak RSS MB':>13}{'M events/s':>12}   threads")
        print(f"{'abacus':8}{ab_wall:9.2f}{ab_rss / 1024:13.0f}{lines / ab_wall / 1e6:12.3f}"
              f"   {ab_sum.get('threads')}")
        print(f"{'duckdb':8}{dk_wall:9.2f}{dk_rss / 1024:13.0f}{lines / dk_wall / 1e6:12.3f}"
              f"   {dk_sum['threads']} (DuckDB {dk_sum['duckdb']}; query alone "
              f"{dk_sum['query_s']:.2f} s; RSS includes Python)")
        print(f"speed ratio (duckdb wall / abacus wall): {dk_wall / ab_wall:.2f}x")
        ok = mism == 0 and not counter_bad
        print("RESULT: " + ("MATCH" if ok else "MISMATCH"))
        return 0 if ok else 1
    finally:
        if args.keep_work:
            print(f"work directory kept: {work}")
        else:
            shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
