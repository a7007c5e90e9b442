#!/usr/bin/env python3
"""Tests of the SQL job of scripts/compare_duckdb.py (no abacus binary needed).

    python3 scripts/test_compare_duckdb.py      # prints "N passed, 0 failed"; exit 1 on a failure

Each test writes a tiny hand-written NDJSON input, runs the DuckDB job (`run_job`, the same
statements the `--_worker` path runs) and checks the `result` rows against rows computed by hand
from docs/SEMANTICS.md ("Field paths", "Filters", "Metrics", "Fan-out", "Windows", "Attribution
metrics"). The attribution cases are SQL-only too (the abacus binary need not support them), and
one of them also checks the SQL against a clause-by-clause Python reading on random streams.
"""

from __future__ import annotations

import json
import sys
import tempfile
import tomllib
import traceback
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import compare_duckdb as cd  # noqa: E402

H = 3_600_000  # one hour in ms

BASE = """
[fields]
user = "u"
time = "t"
time_format = "unix_ms"
event_type = "type"

[[dimensions]]
name = "who"
field = "u"

[[dimensions]]
name = "browser"
field = "browser"

[[windows]]
name = "hourly"
size = "1h"

[[windows]]
name = "2h-sliding"
size = "2h"
slide = "1h"
"""


def run(extra_toml: str, events: list, base: str = BASE):
    """The result rows as a set of tuples (metric, event_type, dimension, value, window,
    window_start ms, window_end ms, unique_users, events), and the connection."""
    cfg = tomllib.loads(base + extra_toml)
    with tempfile.TemporaryDirectory() as d:
        path = Path(d) / "in.ndjson"
        path.write_text("".join((e if isinstance(e, str) else json.dumps(e)) + "\n" for e in events))
        con = cd.run_job(cfg, [str(path)], threads=1)
        rows = con.execute("SELECT metric, event_type, dimension, value, \"window\", window_start, "
                           "window_end, unique_users, events FROM result").fetchall()
    return set(rows), con


def ev(user, t=0, typ="x", **kw):
    return {"u": user, "t": t, "type": typ, **kw}


# ---- filters: every operator, missing fields and wrong types -------------------------------------

X_VALUES = {
    "e01": "black", "e02": "Black", "e03": 1, "e04": 1.0, "e05": "1", "e06": True, "e07": None,
    "e08": "<absent>", "e09": {"y": "black"}, "e10": ["black"], "e11": 2.5, "e12": -3,
    "e13": "jet black", "e14": False, "e15": 1234567890123456789,
}
ALL = set(X_VALUES)


def matched(clause: str, values=X_VALUES, field="x") -> set[str]:
    """The users (one event each) whose event matches the single-clause filter."""
    events = [ev(u) if v == "<absent>" else ev(u, **{field: v}) for u, v in values.items()]
    extra = f"""
[[filters]]
name = "f"
where = [ {{ field = {json.dumps(field)}, {clause} }} ]

[[metrics]]
name = "m"
filter = "f"
dimensions = ["who"]
windows = ["hourly"]
by_type = false
"""
    rows, _ = run(extra, events)
    users = {r[3] for r in rows if r[2] == "who"}
    total = [r for r in rows if r[2] is None]
    assert all(r[7] == 1 and r[8] == 1 for r in rows if r[2] == "who")
    assert (total == [] and not users) or (len(total) == 1 and total[0][7] == len(users)
                                            == total[0][8]), (rows, users)
    return users


OPERATOR_CASES = [
    ('eq = "black"', {"e01"}),
    ('eq = "Black"', {"e02"}),
    ('eq = 1', {"e03", "e04"}),          # 1 equals 1.0; the string "1" is another JSON type
    ('eq = 1.0', {"e03", "e04"}),
    ('eq = "1"', {"e05"}),
    ('eq = true', {"e06"}),
    ('eq = false', {"e14"}),
    ('eq = 1234567890123456789', {"e15"}),
    ('eq = 1234567890123456788', set()),   # equal as doubles, not as integers
    ('ne = "black"', ALL - {"e01"}),     # absent and null are `ne` anything
    ('ne = 1', ALL - {"e03", "e04"}),
    ('in = ["black", "jet black", 1]', {"e01", "e13", "e03", "e04"}),
    ('not_in = ["black", "jet black", 1]', ALL - {"e01", "e13", "e03", "e04"}),
    ('in = [2.5, -3]', {"e11", "e12"}),
    ('regex = "(?i)^black$"', {"e01", "e02"}),
    ('regex = "black"', {"e01", "e13"}),  # unanchored; never the object / array holding "black"
    ('regex = "1"', {"e05"}),             # strings only: not the numbers 1, 1.0
    ('regex = "^$"', set()),
    ('lt = 1', {"e12"}),
    ('le = 1', {"e03", "e04", "e12"}),    # not the numeric-looking string "1"
    ('gt = 1', {"e11", "e15"}),
    ('ge = 2.5', {"e11", "e15"}),
    ('gt = 2.4999', {"e11", "e15"}),
    ('lt = -3', set()),
    ('le = -3.0', {"e12"}),
    ('gt = 1234567890123456788', {"e15"}),  # integers against an integer exactly
    ('ge = 1234567890123456790', set()),
    ('exists = true', ALL - {"e07", "e08"}),
    ('exists = false', {"e07", "e08"}),
]


def test_filter_operators():
    for clause, want in OPERATOR_CASES:
        got = matched(clause)
        assert got == want, f"{clause}: got {sorted(got)}, want {sorted(want)}"


def test_filter_all_clauses_and_empty_where():
    events = [ev("a", typ="Ordered Product", color="black", product="USB Charger", quantity=1),
              ev("b", typ="Ordered Product", color="jet black", product="charger", quantity=3),
              ev("c", typ="Ordered Product", color="black", product="Charger", quantity=0),
              ev("d", typ="Viewed Product", color="black", product="charger", quantity=5),
              ev("e", typ="Ordered Product", color="red", product="charger", quantity=5),
              ev("f", typ="Ordered Product", color="black", product="cable", quantity=5),
              ev("g", typ="Ordered Product", color="black", product="charger", quantity="2")]
    extra = """
[[filters]]
name = "black_charger"
where = [
  { field = "type", eq = "Ordered Product" },
  { field = "color", in = ["black", "jet black"] },
  { field = "product", regex = "(?i)charger" },
  { field = "quantity", ge = 1 },
]
[[filters]]
name = "everything"
where = []

[[metrics]]
name = "bc"
filter = "black_charger"
dimensions = ["who"]
windows = ["hourly"]

[[metrics]]
name = "any"
filter = "everything"
dimensions = []
windows = ["hourly"]
by_type = false
"""
    rows, _ = run(extra, events)
    assert {r[3] for r in rows if r[0] == "bc" and r[2] == "who"} == {"a", "b"}, rows
    assert ("bc", "Ordered Product", None, None, "hourly", 0, H, 2, 2) in rows
    assert ("any", None, None, None, "hourly", 0, H, 7, 7) in rows
    assert len([r for r in rows if r[0] == "any"]) == 1


# ---- field paths --------------------------------------------------------------------------------

PATH_EVENTS = {
    "p1": {"props": {"item": {"color": "black"}}},
    "p2": {"props": {"item": {"color": "red"}}},
    "p3": {"props": {"item": [{"color": "black"}]}},     # never into arrays
    "p4": {"props": "item"},                              # through a non-object
    "p5": '{"props":{"item":{"color":"red","color":"black"}}}',  # the last occurrence wins
    "p6": {"props.item.color": "black"},                  # a top-level key with dots: not the path
    "p7": {"a.b": {"c": "black"}},
    "p8": {"a": {"b": {"c": "black"}}},
    "p9": {"props": {"item": {"color": None}}},           # null = absent
    "p10": {"props": {"item": {"colour": "black"}}},
}


def path_events():
    out = []
    for u, body in PATH_EVENTS.items():
        if isinstance(body, str):
            out.append(body[:-1] + f',"u":"{u}","t":0,"type":"x"}}')
        else:
            out.append(ev(u, **body))
    return out


def path_matched(field: str, clause: str) -> set[str]:
    extra = f"""
[[filters]]
name = "f"
where = [ {{ field = '{field}', {clause} }} ]

[[metrics]]
name = "m"
filter = "f"
dimensions = ["who"]
windows = ["hourly"]
"""
    rows, _ = run(extra, path_events())
    return {r[3] for r in rows if r[2] == "who"}


def test_dotted_paths_in_filters():
    assert path_matched("props.item.color", 'eq = "black"') == {"p1", "p5"}
    assert path_matched("props.item.color", "exists = true") == {"p1", "p2", "p5"}
    assert path_matched("props.item.color", "exists = false") == \
        set(PATH_EVENTS) - {"p1", "p2", "p5"}
    assert path_matched("props.item.color", 'ne = "black"') == set(PATH_EVENTS) - {"p1", "p5"}
    assert path_matched("props.item", "exists = true") == {"p1", "p2", "p3", "p5", "p9", "p10"}
    assert path_matched(r"a\.b.c", 'eq = "black"') == {"p7"}
    assert path_matched("a.b.c", 'eq = "black"') == {"p8"}
    assert path_matched(r"props\.item\.color", 'eq = "black"') == {"p6"}
    assert path_matched("props.item.color", 'regex = "^bl"') == {"p1", "p5"}


def test_field_path_parsing():
    assert cd.field_path("a") == ("a",)
    assert cd.field_path("props.item.color") == ("props", "item", "color")
    assert cd.field_path(r"a\.b.c") == ("a.b", "c")
    try:
        cd.field_path(r"a\b")
    except SystemExit:
        pass
    else:
        raise AssertionError("a backslash before another character must be refused")


def test_dotted_dimension():
    extra = """
[[dimensions]]
name = "color"
field = "props.item.color"
"""
    events = path_events() + [ev("bad", props={"item": {"color": 5}})]  # wrong type: rejected
    rows, con = run(extra, events)
    colors = {(r[3], r[7]) for r in rows if r[2] == "color" and r[4] == "hourly"}
    assert colors == {("black", 2), ("red", 1)}, colors
    lines, accepted = con.execute(
        "SELECT (SELECT count(*) FROM raw), (SELECT count(*) FROM accepted)").fetchone()
    assert (lines, accepted) == (11, 10)
    assert ("all", "x", None, None, "hourly", 0, H, 10, 10) in rows


def test_lookup_key_listed_twice_with_the_same_value():
    # SEMANTICS.md "Parsing": accepted, and the event maps once (its events count is 1, not 2).
    with tempfile.TemporaryDirectory() as d:
        Path(d, "l.csv").write_text("message_id,campaign\nm1,spring\nm1,spring\nm2,fall\n")
        extra = f"""
[[dimensions]]
name = "campaign"
field = "m"
lookup = {json.dumps(str(Path(d, 'l.csv')))}
"""
        rows, _ = run(extra, [ev("a", m="m1"), ev("b", m="m3")])
    assert metric_rows(rows, "all", dimension="campaign") == {("x", "spring", 0, 1, 1)}, rows
    assert metric_rows(rows, "all") == {("x", None, 0, 2, 2)}


# ---- thresholds ---------------------------------------------------------------------------------


def metric_rows(rows, metric, window="hourly", dimension=None):
    return {(r[1], r[3], r[5], r[7], r[8]) for r in rows
            if r[0] == metric and r[4] == window and r[2] == dimension}


def test_min_count_at_n_minus_1_and_n():
    events = [ev("a", 10), ev("a", 20), ev("b", 30), ev("c", 40), ev("c", 50), ev("c", 60),
              ev("d", H + 1), ev("d", 2 * H - 1)]  # d: 2 events in hour 1
    extra = """
[[metrics]]
name = "n2"
min_count = 2
dimensions = []
windows = ["hourly"]
[[metrics]]
name = "n3"
min_count = 3
dimensions = []
windows = ["hourly"]
[[metrics]]
name = "n4"
min_count = 4
dimensions = []
windows = ["hourly"]
[[metrics]]
name = "n1"
min_count = 1
dimensions = []
windows = ["hourly"]
"""
    rows, _ = run(extra, events)
    assert metric_rows(rows, "n2") == {("x", None, 0, 2, 5), ("x", None, H, 1, 2)}
    assert metric_rows(rows, "n3") == {("x", None, 0, 1, 3)}
    assert metric_rows(rows, "n4") == set()
    assert metric_rows(rows, "n1") == {("x", None, 0, 3, 6), ("x", None, H, 1, 2)}
    assert len(rows) == 5


def test_min_count_per_key_and_by_type():
    # a: one event of each type; by type, a reaches 2 in no key; with by_type = false it does.
    events = [ev("a", 10, "x", browser="c"), ev("a", 20, "y", browser="c"),
              ev("b", 30, "x", browser="c"), ev("b", 40, "x", browser="f")]
    extra = """
[[metrics]]
name = "typed"
min_count = 2
dimensions = ["browser"]
windows = ["hourly"]
[[metrics]]
name = "untyped"
min_count = 2
dimensions = ["browser"]
windows = ["hourly"]
by_type = false
"""
    rows, _ = run(extra, events)
    assert metric_rows(rows, "typed") == {("x", None, 0, 1, 2)}  # b's two x events
    assert metric_rows(rows, "typed", dimension="browser") == set()  # b: c once, f once
    assert metric_rows(rows, "untyped") == {(None, None, 0, 2, 4)}
    assert metric_rows(rows, "untyped", dimension="browser") == {(None, "c", 0, 1, 2)}
    assert len(rows) == 3


def test_min_sum_exact_millionths():
    events = [
        ev("A", q=1), ev("A", q=2),                               # 3 >= 3
        ev("B", q=2.9999999), ev("B", q="5"),                     # 2.999999 + 0 (a string)
        ev("C", q=1.5), ev("C", q=1.5),                           # 3
        ev("D", q=True), ev("D", q=None), ev("D"), ev("D", q=3),  # 0 + 0 + 0 + 3; 4 events
        ev("E", q=2.9999995), ev("E", q=0.0000005),               # 2.999999 + 0 (a float sum: 3.0)
        ev("F", q=-1), ev("F", q=4),                              # 3
        '{"u":"G","t":0,"type":"x","q":3e0}',                     # 3
        *[ev("H", q=0.3) for _ in range(10)],                     # 10 x 0.3 = 3 (floats: 2.9999...)
        ev("I", q=-2.0000009), ev("I", q=5.0000009),              # -2.000000 + 5.000000 = 3
        ev("J", q={"v": 3}), ev("J", q=[3]), ev("J", q=2.999999),  # non-numbers add 0
    ]
    extra = """
[[metrics]]
name = "s3"
min_sum = { field = "q", value = 3 }
dimensions = []
windows = ["hourly"]
[[metrics]]
name = "s2.5"
min_sum = { field = "q", value = 2.5 }
dimensions = []
windows = ["hourly"]
"""
    rows, _ = run(extra, events)
    # qualifying A 2, C 2, D 4, F 2, G 1, H 10, I 2 events
    assert metric_rows(rows, "s3") == {("x", None, 0, 7, 23)}, metric_rows(rows, "s3")
    # and B 2, E 2, J 3 too
    assert metric_rows(rows, "s2.5") == {("x", None, 0, 10, 30)}, metric_rows(rows, "s2.5")


def test_min_sum_fraction_threshold_and_nested_field():
    events = [ev("a", o={"amt": 0.000001}),
              ev("b", o={"amt": 0.000001}), ev("b", o={"amt": 0.000001}),
              ev("c", o={"amt": 0.0000019}), ev("c", o={"amt": "0.5"})]
    extra = """
[[metrics]]
name = "tiny"
min_sum = { field = "o.amt", value = 0.0000015 }
dimensions = []
windows = ["hourly"]
"""
    rows, _ = run(extra, events)
    assert metric_rows(rows, "tiny") == {("x", None, 0, 1, 2)}, rows  # b: 2 millionths


def test_sliding_window_spans_its_panes():
    # a: one event in hour 0 and one in hour 1; b: two events in hour 1.
    events = [ev("a", H // 2, q=2), ev("a", H + H // 2, q=2), ev("b", H + 1, q=3),
              ev("b", H + 2, q=3)]
    extra = """
[[metrics]]
name = "two"
min_count = 2
dimensions = []
[[metrics]]
name = "sum"
min_sum = { field = "q", value = 4 }
dimensions = []
windows = ["2h-sliding"]
"""
    rows, _ = run(extra, events)
    assert metric_rows(rows, "two") == {("x", None, H, 1, 2)}  # hourly: only b, in hour 1
    assert metric_rows(rows, "two", "2h-sliding") == {("x", None, 0, 2, 4), ("x", None, H, 1, 2)}
    # a sums 2 + 2 = 4 in [0, 2h) only (2 in [-1h, 1h) and in [1h, 3h));
    # b: 3 + 3 = 6 in [0, 2h) and [1h, 3h)
    assert metric_rows(rows, "sum", "2h-sliding") == {("x", None, 0, 2, 4), ("x", None, H, 1, 2)}
    assert metric_rows(rows, "sum") == set()  # not in its windows


def test_no_threshold_sliding_and_negative_times():
    events = [ev("a", -1), ev("a", 0), ev("b", H), ev("z", -2 * H - 1)]  # z: before time_min
    limits = '[limits]\ntime_min = "1969-12-31T22:00:00Z"\n'
    rows, con = run(limits, events)  # the implicit metric `all`
    assert con.execute("SELECT count(*) FROM accepted").fetchone()[0] == 3
    assert metric_rows(rows, "all") == {("x", None, -H, 1, 1), ("x", None, 0, 1, 1),
                                        ("x", None, H, 1, 1)}
    assert metric_rows(rows, "all", "2h-sliding") == {
        ("x", None, -2 * H, 1, 1), ("x", None, -H, 1, 2), ("x", None, 0, 2, 2),
        ("x", None, H, 1, 1)}


# ---- metrics: subsets, by_type, the implicit metric ---------------------------------------------


def test_implicit_metric_all():
    events = [ev("a", 0, "x", browser="c"), ev("b", 1, "y"), ev("a", 2, "x", browser="")]
    rows, _ = run("", events)
    assert {r[0] for r in rows} == {"all"}
    assert metric_rows(rows, "all") == {("x", None, 0, 1, 2), ("y", None, 0, 1, 1)}
    assert metric_rows(rows, "all", dimension="browser") == {("x", "c", 0, 1, 1)}
    assert metric_rows(rows, "all", dimension="who") == {("x", "a", 0, 1, 2), ("y", "b", 0, 1, 1)}
    assert {r[4] for r in rows} == {"hourly", "2h-sliding"}


def test_dimension_and_window_subsets():
    events = [ev("a", 0, "x", browser="c"), ev("b", 1, "y", browser="f")]
    extra = """
[[metrics]]
name = "by_browser"
dimensions = ["browser"]
windows = ["hourly"]
[[metrics]]
name = "total_only"
dimensions = []
windows = ["2h-sliding"]
by_type = false
[[metrics]]
name = "defaults"
"""
    rows, _ = run(extra, events)
    assert {r for r in rows if r[0] == "by_browser"} == {
        ("by_browser", "x", None, None, "hourly", 0, H, 1, 1),
        ("by_browser", "y", None, None, "hourly", 0, H, 1, 1),
        ("by_browser", "x", "browser", "c", "hourly", 0, H, 1, 1),
        ("by_browser", "y", "browser", "f", "hourly", 0, H, 1, 1)}
    assert {r for r in rows if r[0] == "total_only"} == {
        ("total_only", None, None, None, "2h-sliding", -H, H, 2, 2),
        ("total_only", None, None, None, "2h-sliding", 0, 2 * H, 2, 2)}
    d = {r for r in rows if r[0] == "defaults"}
    assert {r[2] for r in d} == {None, "who", "browser"} and {r[4] for r in d} == \
        {"hourly", "2h-sliding"} and len(d) == 2 * 3 * 3  # 2 types x (total, who, browser) x 3 windows
    assert "all" not in {r[0] for r in rows}


def test_filter_applies_after_dedup_and_rejection():
    base = BASE.replace('event_type = "type"', 'event_type = "type"\nevent_id = "id"')
    events = [ev("a", 0, id=1, ok=False), ev("a", 1, id=1, ok=True),  # the 2nd is a duplicate
              ev("b", 2, id=2, ok=True), {"u": "c", "t": "x", "type": "x", "ok": True},  # rejected
              ev("d", 3, ok=True)]
    extra = """
[[filters]]
name = "ok"
where = [ { field = "ok", eq = true } ]
[[metrics]]
name = "m"
filter = "ok"
dimensions = ["who"]
windows = ["hourly"]
"""
    rows, _ = run(extra, events, base)
    assert metric_rows(rows, "m", dimension="who") == {("x", "b", 0, 1, 1), ("x", "d", 0, 1, 1)}


def test_micros_macro():
    import duckdb

    con = duckdb.connect()
    for stmt in cd.build_job(tomllib.loads(BASE), ["/dev/null"])[:6]:
        if "MACRO" in stmt:
            con.execute(stmt)
    cases = {"0": 0, "123": 123_000_000, "0.000001": 1, "1e-7": 0, "-2.9999999": -2_999_999,
             "1.5E+3": 1_500_000_000, "1e21": 10 ** 27, "-0.0": 0, "253.36": 253_360_000,
             "0.1234569999": 123_456, "8.2": 8_200_000, "4.35": 4_350_000,
             "12345678901234567890": 12345678901234567890 * 10 ** 6}
    for text, want in cases.items():
        got = con.execute("SELECT micros(?)", [text]).fetchone()[0]
        assert got == want, (text, got, want)


def test_config_round_trip():
    text = BASE + """
[[filters]]
name = "black_charger"
where = [
  { field = "type", eq = "Ordered Product" },
  { field = 'a\\.b', in = ["black", "jet black", 1, 2.5] },
  { field = "product", regex = "(?i)charger" },
  { field = "quantity", ge = 1 },
  { field = "gone", exists = false },
]
[[metrics]]
name = "m"
filter = "black_charger"
dimensions = []
windows = ["hourly"]
by_type = false
min_sum = { field = "quantity", value = 3.5 }
"""
    cfg = tomllib.loads(text)
    again = tomllib.loads(cd.dump_toml(cfg))
    assert again == cfg, (again, cfg)
    assert cfg["filters"][0]["where"][1]["field"] == "a\\.b"


def test_bad_metrics_refused():
    for extra in ['[[metrics]]\nname = "m"\nfilter = "nope"\n',
                  '[[metrics]]\nname = "m"\ndimensions = ["nope"]\n',
                  '[[metrics]]\nname = "m"\nwindows = []\n',
                  '[[metrics]]\nname = "m"\nmin_count = 0\n',
                  '[[metrics]]\nname = "m"\nmin_sum = { field = "q", value = 0 }\n',
                  '[[metrics]]\nname = "m"\nmin_count = 2\nmin_sum = { field = "q", value = 1 }\n',
                  '[[metrics]]\nname = "m"\n[[metrics]]\nname = "m"\n']:
        try:
            cd.parse_metrics(tomllib.loads(BASE + extra))
        except SystemExit:
            continue
        raise AssertionError(f"accepted: {extra!r}")


# ---- attribution metrics ("did B after A, within T") -------------------------------------------

MIN = 60_000  # one minute in ms
D = 86_400_000  # one day in ms

ATT_BASE = """
[fields]
user = "u"
time = "t"
time_format = "unix_ms"
event_type = "type"
event_id = "id"

[[dimensions]]
name = "campaign"
field = "c"

[[dimensions]]
name = "medium"
field = "md"

[[windows]]
name = "hourly"
size = "1h"

[[windows]]
name = "daily"
size = "1d"

[[windows]]
name = "2h-sliding"
size = "2h"
slide = "1h"

[[filters]]
name = "touch"
where = [ { field = "type", eq = "touch" } ]

[[filters]]
name = "buy"
where = [ { field = "type", in = ["buy", "refund"] } ]
"""


def att(metric: str, events: list, extra: str = "", windows='["hourly"]'):
    """Rows of one attribution metric `m` (filter buy, after touch) as a set of (event_type,
    dimension, value, window, window_start, unique_users, events); `metric` adds keys to it."""
    toml = f"""{extra}
[[metrics]]
name = "m"
filter = "buy"
after = "touch"
windows = {windows}
{metric}
"""
    rows, _ = run(toml, events, ATT_BASE)
    return {(r[1], r[2], r[3], r[4], r[5], r[7], r[8]) for r in rows if r[0] == "m"}


def touch(user, t, **kw):
    return ev(user, t, "touch", **kw)


def buy(user, t, **kw):
    return ev(user, t, "buy", **kw)


def test_attribution_b_before_a_and_at_the_same_time():
    for mode in ("last_touch", "first_touch", "any_touch"):
        for wo in ("anchor", "conversion"):
            keys = f'within = "1h"\nattribution = "{mode}"\nwindow_on = "{wo}"'
            # B before A (1:00, 1:30): B follows nothing, nothing is counted anywhere.
            assert att(keys, [buy("a", 60 * MIN), touch("a", 90 * MIN, c="c1")]) == set()
            # A and B at the same time: equal times are never "after".
            assert att(keys, [touch("a", 60 * MIN, c="c1"), buy("a", 60 * MIN)]) == set()
            # another user's A credits nothing
            assert att(keys, [touch("a", 60 * MIN, c="c1"), buy("b", 70 * MIN)]) == set()


def test_attribution_within_bounds():
    # t_a < t_b <= t_a + within: a B exactly `within` after A counts, one ms later it does not.
    keys = 'within = "1h"'
    assert att(keys, [touch("a", 10 * MIN, c="c1"), buy("a", 70 * MIN)]) == {
        ("buy", None, None, "hourly", 0, 1, 1), ("buy", "campaign", "c1", "hourly", 0, 1, 1)}
    assert att(keys, [touch("a", 10 * MIN, c="c1"), buy("a", 70 * MIN + 1)]) == set()
    # `within` is not bucket-aligned: lookback [t_b - 90m, t_b) straddles two 90m buckets.
    keys = 'within = "90m"\nwindow_on = "conversion"'
    evs = [touch("a", 80 * MIN, c="c1"), buy("a", 170 * MIN), buy("a", 170 * MIN + 1),
           touch("b", 89 * MIN, c="c2"), buy("b", 91 * MIN)]
    assert att(keys, evs, windows='["daily"]') == {
        ("buy", None, None, "daily", 0, 2, 2), ("buy", "campaign", "c1", "daily", 0, 1, 1),
        ("buy", "campaign", "c2", "daily", 0, 1, 1)}


def test_attribution_modes_two_anchors_two_conversions():
    # A 1:00 (c1), A 1:30 (c2), B 1:45, B 2:15, within 1h. Lookbacks: B1 [0:45, 1:45) = {A1, A2};
    # B2 [1:15, 2:15) = {A2}.
    evs = [touch("a", 60 * MIN, c="c1"), touch("a", 90 * MIN, c="c2"), buy("a", 105 * MIN),
           buy("a", 135 * MIN)]
    h1, h2 = H, 2 * H
    # last_touch: B1 -> A2, B2 -> A2; both land in A2's hour [1h, 2h).
    assert att('within = "1h"', evs) == {
        ("buy", None, None, "hourly", h1, 1, 2), ("buy", "campaign", "c2", "hourly", h1, 1, 2)}
    # first_touch: B1 -> A1, B2 -> A2 (the only A of its lookback).
    assert att('within = "1h"\nattribution = "first_touch"', evs) == {
        ("buy", None, None, "hourly", h1, 1, 2), ("buy", "campaign", "c1", "hourly", h1, 1, 1),
        ("buy", "campaign", "c2", "hourly", h1, 1, 1)}
    # any_touch: B1 -> A1 and A2, B2 -> A2: B1 once in the total row, in both campaigns' rows.
    assert att('within = "1h"\nattribution = "any_touch"', evs) == {
        ("buy", None, None, "hourly", h1, 1, 2), ("buy", "campaign", "c1", "hourly", h1, 1, 1),
        ("buy", "campaign", "c2", "hourly", h1, 1, 2)}
    # window_on = "conversion": each B in its own hour (1:45 -> [1h, 2h), 2:15 -> [2h, 3h)).
    assert att('within = "1h"\nwindow_on = "conversion"', evs) == {
        ("buy", None, None, "hourly", h1, 1, 1), ("buy", "campaign", "c2", "hourly", h1, 1, 1),
        ("buy", None, None, "hourly", h2, 1, 1), ("buy", "campaign", "c2", "hourly", h2, 1, 1)}
    assert att('within = "1h"\nwindow_on = "conversion"\nattribution = "first_touch"', evs) == {
        ("buy", None, None, "hourly", h1, 1, 1), ("buy", "campaign", "c1", "hourly", h1, 1, 1),
        ("buy", None, None, "hourly", h2, 1, 1), ("buy", "campaign", "c2", "hourly", h2, 1, 1)}
    assert att('within = "1h"\nwindow_on = "conversion"\nattribution = "any_touch"', evs) == {
        ("buy", None, None, "hourly", h1, 1, 1), ("buy", "campaign", "c1", "hourly", h1, 1, 1),
        ("buy", "campaign", "c2", "hourly", h1, 1, 1),
        ("buy", None, None, "hourly", h2, 1, 1), ("buy", "campaign", "c2", "hourly", h2, 1, 1)}
    # within 30m: B1's lookback [1:15, 1:45) = {A2}, B2's [1:45, 2:15) is empty.
    assert att('within = "30m"\nattribution = "any_touch"', evs) == {
        ("buy", None, None, "hourly", h1, 1, 1), ("buy", "campaign", "c2", "hourly", h1, 1, 1)}


def test_attribution_anchor_without_the_dimension():
    # The credited A has no campaign: the total row only (last_touch does not fall back to the
    # earlier A that has one); any_touch credits both, so c1 gets a row too.
    evs = [touch("a", 60 * MIN, c="c1", md="mail"), touch("a", 80 * MIN, md="push"),
           buy("a", 90 * MIN, c="c9")]  # B's own campaign is never used
    assert att('within = "1h"', evs) == {
        ("buy", None, None, "hourly", H, 1, 1), ("buy", "medium", "push", "hourly", H, 1, 1)}
    assert att('within = "1h"\nattribution = "any_touch"', evs) == {
        ("buy", None, None, "hourly", H, 1, 1), ("buy", "campaign", "c1", "hourly", H, 1, 1),
        ("buy", "medium", "mail", "hourly", H, 1, 1), ("buy", "medium", "push", "hourly", H, 1, 1)}
    # an A with no dimension at all still credits the total row; dimensions = [] is total only
    assert att('within = "1h"\nattribution = "first_touch"', evs[1:]) == {
        ("buy", None, None, "hourly", H, 1, 1), ("buy", "medium", "push", "hourly", H, 1, 1)}
    assert att('within = "1h"\ndimensions = []', evs) == {("buy", None, None, "hourly", H, 1, 1)}


def test_attribution_anchor_vs_conversion_across_midnight():
    # A at 23:30 on day 1, B at 00:15 on day 2 (within 1h): "read yesterday".
    evs = [touch("a", 2 * D - 30 * MIN, c="c1"), buy("a", 2 * D + 15 * MIN)]
    assert att('within = "1h"', evs, windows='["daily", "hourly"]') == {
        ("buy", None, None, "daily", D, 1, 1), ("buy", "campaign", "c1", "daily", D, 1, 1),
        ("buy", None, None, "hourly", 2 * D - H, 1, 1),
        ("buy", "campaign", "c1", "hourly", 2 * D - H, 1, 1)}
    assert att('within = "1h"\nwindow_on = "conversion"', evs, windows='["daily", "hourly"]') == {
        ("buy", None, None, "daily", 2 * D, 1, 1), ("buy", "campaign", "c1", "daily", 2 * D, 1, 1),
        ("buy", None, None, "hourly", 2 * D, 1, 1),
        ("buy", "campaign", "c1", "hourly", 2 * D, 1, 1)}


def test_attribution_threshold_via_two_campaigns():
    # A1 0:00 (c1), B1 0:10, A2 0:20 (c2), B2 0:30, within 1h: the user has 2 credited B's in
    # hour 0. last_touch: B1 -> c1, B2 -> c2: min_count = 2 only in the total row; any_touch:
    # B1 -> c1, B2 -> c1 and c2: c1 reaches 2 as well.
    evs = [touch("a", 0, c="c1", amt=100), buy("a", 10 * MIN, amt=5),
           touch("a", 20 * MIN, c="c2", amt=100), buy("a", 30 * MIN, amt=5),
           touch("z", 0, c="c1"), buy("z", 10 * MIN, amt=9)]  # z: one B, qualifies nowhere
    assert att('within = "1h"\nmin_count = 2', evs) == {("buy", None, None, "hourly", 0, 1, 2)}
    assert att('within = "1h"\nmin_count = 2\nattribution = "any_touch"', evs) == {
        ("buy", None, None, "hourly", 0, 1, 2), ("buy", "campaign", "c1", "hourly", 0, 1, 2)}
    # min_sum reads the amount from the B's (5 + 5), never from the A's (100 each).
    s = 'within = "1h"\nmin_sum = { field = "amt", value = 10 }'
    assert att(s, evs) == {("buy", None, None, "hourly", 0, 1, 2)}
    assert att(s + '\nattribution = "any_touch"', evs) == {
        ("buy", None, None, "hourly", 0, 1, 2), ("buy", "campaign", "c1", "hourly", 0, 1, 2)}
    assert att('within = "1h"\nmin_sum = { field = "amt", value = 10.000001 }', evs) == set()
    # first_touch: B1 -> c1, B2 -> c1 (A1 is still in B2's lookback): c1 reaches 2.
    assert att('within = "1h"\nmin_count = 2\nattribution = "first_touch"', evs) == {
        ("buy", None, None, "hourly", 0, 1, 2), ("buy", "campaign", "c1", "hourly", 0, 1, 2)}
    # without a threshold every credited B counts: z is a second user
    assert att('within = "1h"', evs) == {
        ("buy", None, None, "hourly", 0, 2, 3), ("buy", "campaign", "c1", "hourly", 0, 2, 2),
        ("buy", "campaign", "c2", "hourly", 0, 1, 1)}


def test_attribution_ties_on_the_dimension_tuple():
    # Each user in its own hour; every A of a user at one time, B 10 minutes later.
    def case(hour, user, *anchors):
        t = hour * H
        return [touch(user, t, **a) for a in anchors] + [buy(user, t + 10 * MIN)]
    evs = (case(0, "u0", {"c": "b"}, {"c": "a"})                          # -> (a, -)
           + case(1, "u1", {"c": "a", "md": "y"}, {"c": "a", "md": "x"})  # -> (a, x)
           + case(2, "u2", {"c": "a", "md": "a"}, {"md": "z"})            # -> (-, z): absent first
           + case(3, "u3", {"c": "a"}, {"c": "B"})                        # -> (B): bytes, 'B' < 'a'
           + case(4, "u4", {"c": "é"}, {"c": "z"})                        # -> (z): 0x7a < 0xc3
           + case(5, "u5", {"c": "a", "md": "a"}, {"c": "a"})             # -> (a, -)
           + case(6, "u6", {"c": "b", "md": "a"}, {"c": "a", "md": "b"}))  # -> (a, b): campaign first
    want = {(0, "campaign", "a"), (1, "campaign", "a"), (1, "medium", "x"), (2, "medium", "z"),
            (3, "campaign", "B"), (4, "campaign", "z"), (5, "campaign", "a"),
            (6, "campaign", "a"), (6, "medium", "b")}
    want = {("buy", d, v, "hourly", h * H, 1, 1) for h, d, v in want} | \
        {("buy", None, None, "hourly", h * H, 1, 1) for h in range(7)}
    for mode in ("last_touch", "first_touch"):
        assert att(f'within = "1h"\nattribution = "{mode}"', evs) == want, mode
        # the metric listing its dimensions in another order: still [[dimensions]] order
        assert att(f'within = "1h"\nattribution = "{mode}"\ndimensions = ["medium", "campaign"]',
                   evs) == want, mode
    # a metric with only `medium`: the tuple is (medium) alone (hour 2: a < z; hour 5: the A
    # without a medium wins, so no medium row)
    got = att('within = "1h"\ndimensions = ["medium"]', evs)
    assert {(r[4] // H, r[2]) for r in got if r[1] == "medium"} == \
        {(1, "x"), (2, "a"), (6, "a")}, got
    # the tie is only among the A's at the latest (last_touch) / earliest (first_touch) time
    evs = [touch("a", 50 * MIN, c="a"), touch("a", 60 * MIN, c="c"), touch("a", 60 * MIN, c="b"),
           touch("a", 65 * MIN, c="e"), touch("a", 65 * MIN, c="d"), buy("a", 70 * MIN)]
    assert att('within = "1h"\nwindow_on = "conversion"', evs) == {
        ("buy", None, None, "hourly", H, 1, 1), ("buy", "campaign", "d", "hourly", H, 1, 1)}
    assert att('within = "1h"\nwindow_on = "conversion"\nattribution = "first_touch"', evs) == {
        ("buy", None, None, "hourly", H, 1, 1), ("buy", "campaign", "a", "hourly", H, 1, 1)}
    # within 15m: the lookback [0:55, 1:10) drops the 0:50 A, so first_touch takes (1:00, b)
    assert att('within = "15m"\nwindow_on = "conversion"\nattribution = "first_touch"', evs) == {
        ("buy", None, None, "hourly", H, 1, 1), ("buy", "campaign", "b", "hourly", H, 1, 1)}


def test_attribution_any_touch_distinct_windows():
    # Two A's of one campaign in one window: B counts once there.
    evs = [touch("a", 60 * MIN, c="c1"), touch("a", 70 * MIN, c="c1"), buy("a", 80 * MIN)]
    assert att('within = "1h"\nattribution = "any_touch"', evs) == {
        ("buy", None, None, "hourly", H, 1, 1), ("buy", "campaign", "c1", "hourly", H, 1, 1)}
    # A's at 0:50 and 1:10 (c1), B at 1:20: anchor windows of the credits are hour 0 and hour 1;
    # in the 2h sliding spec [-1h,1h), [0,2h), [1h,3h): [0,2h) holds both credits, B counts once.
    evs = [touch("a", 50 * MIN, c="c1"), touch("a", 70 * MIN, c="c1", md="m"), buy("a", 80 * MIN)]
    got = att('within = "1h"\nattribution = "any_touch"', evs, windows='["hourly", "2h-sliding"]')
    rows = lambda ws, win, md: {("buy", None, None, win, ws, 1, 1),  # noqa: E731
                                ("buy", "campaign", "c1", win, ws, 1, 1)} | \
        ({("buy", "medium", "m", win, ws, 1, 1)} if md else set())
    assert got == rows(0, "hourly", False) | rows(H, "hourly", True) \
        | rows(-H, "2h-sliding", False) | rows(0, "2h-sliding", True) | rows(H, "2h-sliding", True), got
    # window_on = "conversion": one window per spec, whatever the number of credits
    got = att('within = "1h"\nattribution = "any_touch"\nwindow_on = "conversion"', evs,
              windows='["hourly", "2h-sliding"]')
    assert got == rows(H, "hourly", True) | rows(0, "2h-sliding", True) | rows(H, "2h-sliding", True)


def test_attribution_by_type_is_the_conversions_type():
    evs = [touch("a", 60 * MIN, c="c1"), buy("a", 70 * MIN), ev("a", 75 * MIN, "refund"),
           touch("b", 60 * MIN, c="c1"), ev("b", 80 * MIN, "refund")]
    assert att('within = "1h"', evs) == {
        ("buy", None, None, "hourly", H, 1, 1), ("buy", "campaign", "c1", "hourly", H, 1, 1),
        ("refund", None, None, "hourly", H, 2, 2), ("refund", "campaign", "c1", "hourly", H, 2, 2)}
    assert att('within = "1h"\nby_type = false', evs) == {
        (None, None, None, "hourly", H, 2, 3), (None, "campaign", "c1", "hourly", H, 2, 3)}


def test_attribution_event_both_anchor_and_conversion():
    # No `filter`: every counted event is a B, the touches included; an event never follows
    # itself, so the first touch is not counted and the second is credited to the first.
    toml = """
[[metrics]]
name = "m"
after = "touch"
within = "1h"
windows = ["hourly"]
dimensions = ["campaign"]
"""
    evs = [touch("a", 0, c="c1"), touch("a", 10 * MIN, c="c2"), ev("a", 20 * MIN, "view")]
    rows, _ = run(toml, evs, ATT_BASE)
    assert rows == {("m", "touch", None, None, "hourly", 0, H, 1, 1),
                    ("m", "touch", "campaign", "c1", "hourly", 0, H, 1, 1),
                    ("m", "view", None, None, "hourly", 0, H, 1, 1),
                    ("m", "view", "campaign", "c2", "hourly", 0, H, 1, 1)}, rows


def test_attribution_after_dedup_and_rejection():
    evs = [touch("a", 3 * H, c="c1", id="t1"),
           touch("a", 60 * MIN, c="c2", id="t1"),   # a duplicate (same user, id): no A at 1:00
           touch("a", 61 * MIN, c=5),               # rejected (wrong type): no A at 1:01
           buy("a", 90 * MIN, id="b1"), buy("a", 95 * MIN, id="b1"),  # the 2nd is a duplicate
           touch("b", 60 * MIN, c="c3"), buy("b", 90 * MIN, id="b1")]  # b's b1 is its own
    assert att('within = "1h"', evs) == {
        ("buy", None, None, "hourly", H, 1, 1), ("buy", "campaign", "c3", "hourly", H, 1, 1)}


def test_attribution_lookup_dimension_on_the_anchor():
    # A lookup miss on the credited A is an absent value (the A still credits the total row).
    with tempfile.TemporaryDirectory() as d:
        Path(d, "l.csv").write_text("message_id,campaign\nm1,spring\nm2,fall\n")
        extra = f"""
[[dimensions]]
name = "camp"
field = "mid"
lookup = {json.dumps(str(Path(d, 'l.csv')))}
"""
        evs = [touch("a", 60 * MIN, mid="m2"), touch("a", 60 * MIN, mid="m1"), buy("a", 70 * MIN),
               touch("b", 60 * MIN, mid="m1"), touch("b", 65 * MIN, mid="m9"), buy("b", 70 * MIN)]
        got = att('within = "1h"\ndimensions = ["camp"]', evs, extra)
        assert got == {("buy", None, None, "hourly", H, 2, 2),
                       ("buy", "camp", "fall", "hourly", H, 1, 1)}, got  # a: 'fall' < 'spring'
        got = att('within = "1h"\ndimensions = ["camp"]\nattribution = "any_touch"', evs, extra)
        assert got == {("buy", None, None, "hourly", H, 2, 2),
                       ("buy", "camp", "fall", "hourly", H, 1, 1),
                       ("buy", "camp", "spring", "hourly", H, 2, 2)}, got


def test_attribution_with_other_metrics():
    # Attribution metrics next to a plain and a threshold metric: each computed as on its own.
    toml = """
[[metrics]]
name = "plain"
dimensions = ["campaign"]
windows = ["hourly"]
[[metrics]]
name = "twice"
min_count = 2
dimensions = []
windows = ["hourly"]
[[metrics]]
name = "last"
filter = "buy"
after = "touch"
within = "1h"
windows = ["hourly"]
dimensions = ["campaign"]
[[metrics]]
name = "any"
filter = "buy"
after = "touch"
within = "1h"
attribution = "any_touch"
windows = ["daily"]
by_type = false
dimensions = ["campaign"]
"""
    evs = [touch("a", 0, c="c1"), touch("a", 10 * MIN, c="c2"), buy("a", 20 * MIN)]
    rows, _ = run(toml, evs, ATT_BASE)
    assert rows == {
        ("plain", "touch", None, None, "hourly", 0, H, 1, 2),
        ("plain", "touch", "campaign", "c1", "hourly", 0, H, 1, 1),
        ("plain", "touch", "campaign", "c2", "hourly", 0, H, 1, 1),
        ("plain", "buy", None, None, "hourly", 0, H, 1, 1),
        ("twice", "touch", None, None, "hourly", 0, H, 1, 2),
        ("last", "buy", None, None, "hourly", 0, H, 1, 1),
        ("last", "buy", "campaign", "c2", "hourly", 0, H, 1, 1),
        ("any", None, None, None, "daily", 0, D, 1, 1),
        ("any", None, "campaign", "c1", "daily", 0, D, 1, 1),
        ("any", None, "campaign", "c2", "daily", 0, D, 1, 1)}, rows


def brute_attribution(events, within, mode, window_on, dims, specs, min_count=1, sum_min=None):
    """SEMANTICS.md "Attribution metrics" clause by clause in plain Python (A = type touch, B =
    buy/refund; raw dimension fields; integer amounts `amt`): {(type, dim, value, window,
    start): (unique_users, events)}."""
    field = {"campaign": "c", "medium": "md"}
    order = [d for d in ("campaign", "medium") if d in dims]  # [[dimensions]] order
    def val(e, d):
        v = e.get(field[d])
        return v if isinstance(v, str) and v != "" else None
    def tup(a):  # absent before any value; values by their UTF-8 bytes
        return tuple((0, b"") if val(a, d) is None else (1, val(a, d).encode()) for d in order)
    def windows(t):
        for name, size, slide in specs:
            for k in range(t // slide - size // slide + 1, t // slide + 1):
                yield name, k * slide
    cells = {}
    for bi, b in enumerate(events):
        if b["type"] not in ("buy", "refund"):
            continue
        look = [a for a in events if a["u"] == b["u"] and a["type"] == "touch"
                and b["t"] - within <= a["t"] < b["t"]]
        if not look:
            continue
        if mode != "any_touch":
            ta = (max if mode == "last_touch" else min)(a["t"] for a in look)
            look = [min((a for a in look if a["t"] == ta), key=tup)]
        for a in look:
            for w in windows(a["t"] if window_on == "anchor" else b["t"]):
                keys = [(None, None)] + [(d, val(a, d)) for d in dims if val(a, d) is not None]
                for d, v in keys:
                    cells.setdefault((b["type"], d, v) + w, {})[bi] = b
    out = {}
    for k, bs in cells.items():
        per = {}
        for b in bs.values():
            n, s = per.get(b["u"], (0, 0))
            per[b["u"]] = (n + 1, s + max(b.get("amt", 0), 0))
        q = [n for n, s in per.values() if (s >= sum_min if sum_min else n >= min_count)]
        if q:
            out[k] = (len(q), sum(q))
    return out


def test_attribution_random_against_brute_force():
    # Dense random streams (few users, times on a 5-minute grid, values with ties, absent and
    # non-ASCII values) against the brute-force reading above, every mode and threshold.
    import random

    rnd = random.Random(7)
    specs = [("hourly", H, H), ("2h-sliding", 2 * H, H)]
    for trial in range(6):
        events = []
        for _ in range(120):
            e = {"u": rnd.choice("abcd"), "t": rnd.randrange(0, 48) * 5 * MIN,
                 "type": rnd.choice(["touch", "touch", "buy", "refund", "view"]),
                 "amt": rnd.choice([0, 1, 2, 5, -3])}
            for f in ("c", "md"):
                v = rnd.choice([None, "", "x", "y", "Y", "é", "z"])
                if v is not None:
                    e[f] = v
            events.append(e)
        for mode in ("last_touch", "first_touch", "any_touch"):
            for wo in ("anchor", "conversion"):
                for thr, mc, sm in (("", 1, None), ("min_count = 2", 2, None),
                                    ("min_sum = { field = \"amt\", value = 6 }", 1, 6)):
                    within = rnd.choice([15, 30, 45, 60])
                    dims = rnd.choice([["campaign", "medium"], ["medium"], []])
                    keys = (f'within = "{within}m"\nattribution = "{mode}"\nwindow_on = "{wo}"\n'
                            f"dimensions = {json.dumps(dims)}\n{thr}")
                    got = att(keys, events, windows='["hourly", "2h-sliding"]')
                    got = {r[:5]: r[5:] for r in got}
                    want = brute_attribution(events, within * MIN, mode, wo, dims, specs, mc, sm)
                    assert got == want, (trial, keys, set(got.items()) ^ set(want.items()))


def test_bad_attribution_metrics_refused():
    head = '[[metrics]]\nname = "m"\nfilter = "buy"\n'
    for extra in [head + 'after = "touch"\n',                          # no within
                  head + 'after = "nope"\nwithin = "1h"\n',            # unknown filter
                  head + 'after = "touch"\nwithin = "0s"\n',
                  head + 'after = "touch"\nwithin = 3600\n',
                  head + 'after = "touch"\nwithin = "1h"\nattribution = "linear"\n',
                  head + 'after = "touch"\nwithin = "1h"\nwindow_on = "both"\n',
                  head + 'within = "1h"\n',                             # without `after`
                  head + 'attribution = "any_touch"\n',
                  head + 'window_on = "conversion"\n']:
        try:
            cd.parse_metrics(tomllib.loads(ATT_BASE + extra))
        except SystemExit:
            continue
        raise AssertionError(f"accepted: {extra!r}")


def main() -> int:
    tests = [(n, f) for n, f in globals().items() if n.startswith("test_") and callable(f)]
    passed = failed = 0
    for name, fn in tests:
        try:
            fn()
            passed += 1
        except (Exception, SystemExit):  # a config refused by the SQL job is a failure too
            failed += 1
            print(f"FAIL {name}")
            traceback.print_exc()
    print(f"{passed} passed, {failed} failed")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
