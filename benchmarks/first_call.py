"""First call of W1 (value + gradient, x float32[1e7]) in fresh processes.

    python -m benchmarks.first_call [--runs 3]

Each run starts two new Python processes on one new, empty TRACEJIT_CACHE_DIR: the first
compiles every kernel ("cold"), the second finds them in Numba's on-disk cache ("warm").
Each process reports `import tracejit` (which loads Numba and its CPU target, once per
process) and the first call (trace, fuse, generate, compile or load, run) separately.
Medians over the runs are printed; the in-process runner (`python -m benchmarks`) cannot show
the warm case, since there every process is already warm or every cache is fresh.
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile

import numpy as np

CHILD = r"""
import json, time
t0 = time.perf_counter()
import numpy as np
import tracejit as tj
t1 = time.perf_counter()
from benchmarks.workloads import WORKLOADS, data_w1, tracejit_loss

w1, _ = tracejit_loss(WORKLOADS["W1"])  # the benchmark's own W1
x = data_w1(10_000_000)["x"]
f = tj.jit_grad(w1)
t2 = time.perf_counter()
f(x)
t3 = time.perf_counter()
print(json.dumps({"import_s": t1 - t0, "first_call_s": t3 - t2}))
"""


REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _child(cache: str) -> dict:
    env = dict(os.environ, TRACEJIT_CACHE_DIR=cache)
    out = subprocess.run([sys.executable, "-c", CHILD], env=env, capture_output=True,
                         text=True, check=True, cwd=REPO)
    return json.loads(out.stdout.strip().splitlines()[-1])


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--runs", type=int, default=3)
    args = ap.parse_args(argv)
    rows = {"cold": [], "warm": []}
    for _ in range(args.runs):
        with tempfile.TemporaryDirectory(prefix="tracejit-first-") as cache:
            rows["cold"].append(_child(cache))
            rows["warm"].append(_child(cache))
    print(f"W1 first call, fresh process, median of {args.runs} runs")
    print(f"  {'cache':<6}{'import tracejit':>18}{'first call':>14}")
    for name, recs in rows.items():
        imp = np.median([r["import_s"] for r in recs])
        first = np.median([r["first_call_s"] for r in recs])
        print(f"  {name:<6}{imp:>16.3f} s{first:>12.3f} s")


if __name__ == "__main__":
    main()
