#!/usr/bin/env python3
"""Every example in README.md runs (issue #16): extract the fenced code blocks and run them.

    python3 scripts/readme_examples.py               # run README.md's examples (part of `make test`)
    python3 scripts/readme_examples.py --self-test   # check that a broken example fails this script
    python3 scripts/readme_examples.py --list        # show what would run, run nothing
    python3 scripts/readme_examples.py -v            # also show the output of blocks that pass
    python3 scripts/readme_examples.py --readme FILE [--only LINE[,LINE...]]

What runs, decided by the fence's info string (its first word):
  sh       run with `bash -euo pipefail` (one process per block; any failing command fails it)
  python   run with `python3`, each block standalone (its own process, no shared state)
  sql      run through the duckdb Python module: the block is split into statements by DuckDB
           itself (`extract_statements`), each executed in order on one in-memory connection
  text, console, toml, json, csv
           not run (a usage synopsis, output, a file format)
  anything else, or no info string
           an error: every block must say whether it runs, so a new ```bash or ``` block cannot
           slip in unchecked.

The one exception inside runnable blocks: a line of an `sh` block that is exactly `make test` or
`make bench` (ignoring whitespace and a trailing `# comment`) is not run and is reported as skipped
— `make test` runs this script, and `make bench` takes minutes. Nothing else is skipped.

Every block runs with cwd = the repository root, target/release first on PATH (so `abacus` is
the release build) and SPARK_LOCAL_IP=127.0.0.1 (so a Spark example listens on loopback only), after `make run` has written results/sample (run here first if
results/sample/_SUCCESS is missing). Examples write only under results/ (git-ignored).

A failing block fails the script (exit 1): the report names the README line of the block's
opening fence and shows the block and its output. The last line is `N passed, M failed`
(blocks run; skipped lines are listed, not counted).

--self-test makes a copy of the README with one runnable block of each language broken (a
command on a missing file, a read of a missing directory, a query of a missing column, a failing
first line of a shell block) and asserts that this script, run on the copy, exits 1 naming that
block's line, and exits 0 on the same block unbroken; it also checks the skip rule and that an
unknown info string is refused.
"""

from __future__ import annotations

import argparse
import os
import re
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
RUN = {"sh", "python", "sql"}
NOT_RUN = {"text", "console", "toml", "json", "csv"}
SKIP_LINE = re.compile(r"^\s*make\s+(test|bench)\s*(#.*)?$")
TIMEOUT_S = 300
FENCE = re.compile(r"^(?P<indent> {0,3})(?P<fence>`{3,}|~{3,})(?P<info>.*)$")


@dataclass
class Block:
    line: int  # 1-based line of the opening fence
    lang: str  # first word of the info string ("" if none)
    code: str


def extract(text: str) -> list[Block]:
    """Fenced code blocks (CommonMark: ``` or ~~~, closed by a fence of the same kind at least as
    long), in order."""
    blocks = []
    lines = text.split("\n")
    i = 0
    while i < len(lines):
        m = FENCE.match(lines[i])
        if not m:
            i += 1
            continue
        fence = m.group("fence")
        info = m.group("info").strip()
        start = i + 1
        body = []
        i += 1
        while i < len(lines):
            close = lines[i].strip()
            if close.startswith(fence[0] * len(fence)) and set(close) == {fence[0]}:
                break
            body.append(lines[i])
            i += 1
        blocks.append(Block(start, info.split()[0] if info else "", "\n".join(body) + "\n"))
        i += 1
    return blocks


def shell_script(code: str) -> tuple[str, list[str]]:
    """The block with the skipped lines replaced by `:` (line numbers unchanged), and those lines."""
    out, skipped = [], []
    for ln in code.split("\n"):
        if SKIP_LINE.match(ln):
            skipped.append(ln.strip())
            out.append(": # skipped by scripts/readme_examples.py: " + ln.strip())
        else:
            out.append(ln)
    return "\n".join(out), skipped


SQL_RUNNER = r"""
import sys, duckdb
con = duckdb.connect()
sql = open(sys.argv[1]).read()
for stmt in con.extract_statements(sql):
    res = con.execute(stmt.query)
    if res.description is None:
        continue
    rows = res.fetchall()
    print("\t".join(d[0] for d in res.description))
    for r in rows[:20]:
        print("\t".join("NULL" if v is None else str(v) for v in r))
    if len(rows) > 20:
        print(f"... {len(rows)} rows")
"""


def env() -> dict:
    e = dict(os.environ)
    e["PATH"] = f"{ROOT / 'target' / 'release'}{os.pathsep}{e.get('PATH', '')}"
    e.setdefault("PYTHONUNBUFFERED", "1")
    e.setdefault("SPARK_LOCAL_IP", "127.0.0.1")
    return e


def run_block(block: Block, tmp: Path) -> tuple[bool, str, list[str]]:
    """Runs one block; returns (ok, output, skipped lines)."""
    skipped: list[str] = []
    name = f"README-line-{block.line}"
    if block.lang == "sh":
        script, skipped = shell_script(block.code)
        path = tmp / f"{name}.sh"
        path.write_text(script)
        cmd = ["bash", "-euo", "pipefail", str(path)]
    elif block.lang == "python":
        path = tmp / f"{name}.py"
        path.write_text(block.code)
        cmd = [sys.executable, str(path)]
    elif block.lang == "sql":
        path = tmp / f"{name}.sql"
        path.write_text(block.code)
        runner = tmp / "sql_runner.py"
        runner.write_text(SQL_RUNNER)
        cmd = [sys.executable, str(runner), str(path)]
    else:
        raise ValueError(block.lang)
    try:
        p = subprocess.run(cmd, cwd=ROOT, env=env(), stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                           stderr=subprocess.STDOUT, text=True, timeout=TIMEOUT_S)
    except subprocess.TimeoutExpired as e:
        out = e.stdout if isinstance(e.stdout, str) else (e.stdout or b"").decode(errors="replace")
        return False, out + f"\n(timed out after {TIMEOUT_S}s)", skipped
    out = p.stdout
    if p.returncode != 0:
        out += f"\n(exit code {p.returncode})"
    return p.returncode == 0, out, skipped


def indent(s: str, prefix: str = "    | ") -> str:
    return "\n".join(prefix + ln for ln in s.rstrip("\n").split("\n"))


def check_langs(blocks: list[Block], readme_name: str) -> list[str]:
    errors = []
    for b in blocks:
        if b.lang not in RUN | NOT_RUN:
            errors.append(f"{readme_name}:{b.line}: code block with info string {b.lang!r}: use one of "
                          f"{sorted(RUN)} (run in CI) or {sorted(NOT_RUN)} (not run)")
    return errors


def ensure_sample() -> None:
    if not (ROOT / "results" / "sample" / "_SUCCESS").is_file():
        print("results/sample/_SUCCESS missing: running `make run` first", flush=True)
        subprocess.run(["make", "run"], cwd=ROOT, check=True, stdin=subprocess.DEVNULL)
    if not (ROOT / "target" / "release" / "abacus").is_file():
        sys.exit("target/release/abacus missing: run `make run` (or `cargo build --release`) first")


def run_readme(readme: Path, only: set[int] | None, list_only: bool = False, verbose: bool = False) -> int:
    blocks = extract(readme.read_text())
    name = readme.name if readme.parent == ROOT else str(readme)
    errors = check_langs(blocks, name)
    for e in errors:
        print("FAIL " + e)
    todo = [b for b in blocks if b.lang in RUN and (only is None or b.line in only)]
    if only is not None and not todo:
        print(f"FAIL {name}: no runnable block at line(s) {sorted(only)}")
        errors.append("no block")
    if list_only:
        for b in blocks:
            what = "run" if b.lang in RUN else "not run" if b.lang in NOT_RUN else "ERROR"
            extra = ""
            if b.lang == "sh":
                _, sk = shell_script(b.code)
                extra = "".join(f"; skips `{s}`" for s in sk)
            print(f"{name}:{b.line}: {b.lang or '(none)'}: {what}{extra}")
        return 1 if errors else 0
    ensure_sample()
    passed, failed = 0, len(errors)
    t0 = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="readme-examples.") as tmp:
        for b in todo:
            t = time.perf_counter()
            ok, out, skipped = run_block(b, Path(tmp))
            for s in skipped:
                print(f"skip {name}:{b.line}: `{s}` (make test / make bench are never run from here)")
            if ok:
                passed += 1
                print(f"ok   {name}:{b.line}: {b.lang} block ({time.perf_counter() - t:.1f}s)", flush=True)
                if verbose:
                    print(indent(out or "(no output)"), flush=True)
            else:
                failed += 1
                print(f"FAIL {name}:{b.line}: {b.lang} block failed ({time.perf_counter() - t:.1f}s)")
                print("  the block:")
                print(indent(b.code))
                print("  its output:")
                print(indent(out or "(no output)"))
                sys.stdout.flush()
    print(f"({time.perf_counter() - t0:.1f}s)")
    print(f"{passed} passed, {failed} failed")
    return 1 if failed else 0


BREAK = {
    # (what is appended/prepended, where) per language: each is a realistic mistake.
    "sh": [("abacus run data/no-such-input.ndjson.zst --config data/abacus.toml --out results/selftest\n", "end"),
           ("false\n", "start")],
    "python": [('import pandas as pd\npd.read_parquet("results/no-such-dir")\n', "end")],
    "sql": [("SELECT no_such_column FROM read_parquet('results/sample/*.parquet');\n", "end")],
}


def self_test() -> int:
    """Asserts that breaking any one kind of example makes this script fail, naming the block."""
    readme = ROOT / "README.md"
    text = readme.read_text()
    lines = text.split("\n")
    blocks = extract(text)
    me = [sys.executable, str(Path(__file__).resolve())]
    passed = failed = 0

    def expect(desc: str, cond: bool, output: str = "") -> None:
        nonlocal passed, failed
        if cond:
            passed += 1
            print(f"ok   self-test: {desc}")
        else:
            failed += 1
            print(f"FAIL self-test: {desc}")
            if output:
                print(indent(output))

    # The parser sees what a Markdown renderer sees.
    sample = "a\n```sh\necho 1\n```\n\n~~~python\nprint(2)\n~~~\n````text\n```sh\nnot a fence\n```\n````\n"
    got = [(b.line, b.lang, b.code) for b in extract(sample)]
    expect("fences parsed (``` and ~~~, nested longer fence)",
           got == [(2, "sh", "echo 1\n"), (6, "python", "print(2)\n"), (9, "text", "```sh\nnot a fence\n```\n")],
           repr(got))
    # The skip rule: only exact `make test` / `make bench` lines.
    script, skipped = shell_script("make run\nmake test   # all\n  make bench\nmake test-x\necho make test\n")
    expect("skip rule: exactly `make test` / `make bench` lines",
           skipped == ["make test   # all", "make bench"] and "make test-x" in script and "echo make test" in script
           and script.split("\n")[0] == "make run", repr((script, skipped)))
    expect("README has sh, python and sql blocks", {"sh", "python", "sql"} <= {b.lang for b in blocks})

    with tempfile.TemporaryDirectory(prefix="readme-selftest.") as tmp:
        # An unknown info string is refused.
        bad = Path(tmp) / "README-unknown.md"
        bad.write_text(text + "\n```bash\necho hi\n```\n")
        p = subprocess.run(me + ["--readme", str(bad), "--list"], cwd=ROOT, capture_output=True, text=True)
        expect("a ```bash block is refused (exit 1)", p.returncode == 1 and "'bash'" in p.stdout, p.stdout + p.stderr)

        for lang, breaks in BREAK.items():
            block = next(b for b in blocks if b.lang == lang)
            for snippet, where in breaks:
                # The block's body spans lines block.line+1 .. (closing fence - 1), 1-based.
                body_first = block.line  # 0-based index of the first body line
                body_end = block.line + block.code.count("\n")  # 0-based index of the closing fence
                broken = list(lines)
                at = body_end if where == "end" else body_first
                broken[at:at] = snippet.rstrip("\n").split("\n")
                path = Path(tmp) / f"README-broken-{lang}-{where}.md"
                path.write_text("\n".join(broken))
                p = subprocess.run(me + ["--readme", str(path), "--only", str(block.line)], cwd=ROOT,
                                   capture_output=True, text=True, timeout=2 * TIMEOUT_S)
                out = p.stdout + p.stderr
                expect(f"{lang} block at README.md:{block.line} broken at its {where} "
                       f"({snippet.strip().splitlines()[-1][:50]}): exit 1, line named",
                       p.returncode == 1 and f"FAIL {path}:{block.line}:" in out and "0 passed, 1 failed" in out,
                       out)
            p = subprocess.run(me + ["--only", str(block.line)], cwd=ROOT, capture_output=True, text=True,
                               timeout=2 * TIMEOUT_S)
            expect(f"{lang} block at README.md:{block.line} unbroken: exit 0", p.returncode == 0,
                   p.stdout + p.stderr)
    print(f"{passed} passed, {failed} failed")
    return 1 if failed else 0


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--readme", type=Path, default=ROOT / "README.md")
    ap.add_argument("--only", help="run only the blocks whose opening fence is at these lines (comma-separated)")
    ap.add_argument("--list", action="store_true", help="list the blocks and what would be done; run nothing")
    ap.add_argument("-v", "--verbose", action="store_true", help="show the output of blocks that pass too")
    ap.add_argument("--self-test", action="store_true", help="check that a broken example fails this script")
    args = ap.parse_args()
    if args.self_test:
        return self_test()
    only = {int(x) for x in args.only.split(",")} if args.only else None
    return run_readme(args.readme.resolve(), only, args.list, args.verbose)


if __name__ == "__main__":
    sys.exit(main())
