"""tracejit against another checkout of itself (a previous commit), in one run.

    git worktree add --detach ../baseline <commit>
    python benchmarks/compare_commits.py ../baseline              # W1-W6, 3 rounds
    python benchmarks/compare_commits.py ../baseline --only W1,W6 --rounds 5

Each round runs every workload once per checkout, alternating which goes first, in fresh
processes (`python -m benchmarks --only Wk --peers tracejit` from that checkout, so its own
tracejit and workloads are used, each with its own kernel cache). The table gives each
side's median over rounds of the runner's median per call, and the ratio this/baseline:
interleaving keeps a drifting machine from favouring either side.
"""
from __future__ import annotations

import argparse
import os
import re
import statistics
import subprocess
import sys
import tempfile

HERE = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
_LINE = re.compile(r"^\s+tracejit\s+([0-9.]+)\s+(us|ms)\b")


def run_once(checkout: str, workload: str, cache: str, repeats: int, quick: bool) -> float:
    """The runner's median per call (ms; us for W6) of tracejit on `workload`."""
    cmd = [sys.executable, "-m", "benchmarks", "--only", workload, "--peers", "tracejit",
           "--no-save", "--repeats", str(repeats)] + (["--quick"] if quick else [])
    env = dict(os.environ, TRACEJIT_CACHE_DIR=cache, PYTHONPATH=checkout)
    out = subprocess.run(cmd, cwd=checkout, env=env, capture_output=True, text=True,
                         check=True).stdout
    start = out.index(f"[{workload}]")
    for line in out[start:].splitlines()[1:]:
        m = _LINE.match(line)
        if m:
            return float(m.group(1))
    raise RuntimeError(f"no tracejit timing for {workload} in:\n{out}")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("baseline", help="path of the other checkout (e.g. a git worktree)")
    ap.add_argument("--only", default="W1,W2,W3,W4,W5,W6")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--repeats", type=int, default=15, help="timed batches per process")
    ap.add_argument("--quick", action="store_true", help="the runner's reduced sizes")
    args = ap.parse_args(argv)
    sides = {"baseline": os.path.abspath(args.baseline), "this": HERE}
    caches = {s: tempfile.mkdtemp(prefix=f"tracejit-compare-{s}-") for s in sides}
    times: dict[tuple[str, str], list[float]] = {}
    workloads = args.only.split(",")
    for r in range(args.rounds):
        for w in workloads:
            order = list(sides) if r % 2 == 0 else list(reversed(sides))
            for side in order:
                t = run_once(sides[side], w, caches[side], args.repeats, args.quick)
                times.setdefault((w, side), []).append(t)
                print(f"round {r + 1} {w} {side:8s} {t:.4g}", file=sys.stderr, flush=True)
    print(f"{'workload':8s} {'baseline':>10s} {'this':>10s} {'this/baseline':>14s}   "
          f"(median of {args.rounds} rounds; ms, W6 in us)")
    for w in workloads:
        b, t = (statistics.median(times[(w, s)]) for s in ("baseline", "this"))
        print(f"{w:8s} {b:10.4g} {t:10.4g} {t / b:14.3f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
