#!/usr/bin/env python3
"""Peak memory of one `abacus run`, measured from outside (BENCHMARKS.md, "Memory").

    python3 scripts/peak_memory.py BIN INPUT CONFIG [--threads N] [-- EXTRA_ARGS...]

Samples the process's RssAnon (anonymous resident memory) and VmHWM (peak total RSS) from
/proc/PID/status every 5 ms, then prints one JSON object: wall seconds, the sampled peak RssAnon,
VmHWM, and the run's own `peak_state_bytes` / `counting_state_bytes` from `_summary.json`, with
the ratio sampled / reported (the summary's figure must be within 1.5x of the sampled one).
"""
import json, subprocess, sys, tempfile, time, argparse, os

ap = argparse.ArgumentParser()
ap.add_argument("bin"); ap.add_argument("input"); ap.add_argument("config")
ap.add_argument("--threads", default="2")
ap.add_argument("extra", nargs="*")
a = ap.parse_args()

def status(pid):
    out = {}
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                k, _, v = line.partition(":")
                if k in ("RssAnon", "VmHWM"):
                    out[k] = int(v.split()[0]) * 1024
    except OSError:
        pass
    return out

with tempfile.TemporaryDirectory() as d:
    out = os.path.join(d, "out")
    t0 = time.time()
    p = subprocess.Popen([a.bin, "run", a.input, "-c", a.config, "-o", out, "-q", "-j", a.threads] + a.extra)
    anon = hwm = 0
    while p.poll() is None:
        s = status(p.pid)
        anon = max(anon, s.get("RssAnon", 0)); hwm = max(hwm, s.get("VmHWM", 0))
        time.sleep(0.005)
    wall = time.time() - t0
    summary = json.load(open(os.path.join(out, "_summary.json"))) if p.returncode == 0 else {}
    rep = summary.get("peak_state_bytes", 0)
    print(json.dumps({
        "input": os.path.basename(a.input), "exit": p.returncode, "wall_s": round(wall, 2),
        "sampled_peak_anon_mib": round(anon / 2**20, 1), "vm_hwm_mib": round(hwm / 2**20, 1),
        "peak_state_mib": round(rep / 2**20, 1),
        "counting_state_mib": round(summary.get("counting_state_bytes", 0) / 2**20, 1),
        "sampled_over_reported": round(anon / rep, 2) if rep else None,
        "lines": summary.get("lines"), "rows": summary.get("rows"),
    }))
