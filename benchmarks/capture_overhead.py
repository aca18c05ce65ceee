"""Per-call cost of captured values: W6 (W1's value + gradient at N=100, float32) with k
captured arrays and k captured float32 scalars.

    python -m benchmarks.capture_overhead [--captures 0,1,2,4,8] [--rounds 7]

Captured arrays are implicit inputs read at every call and captured scalars are guarded
(README: "Captured values are read at every call"); both cost something per call. Each
variant adds `sum(c_i * x) * s_i` for its captures. The table gives the median per-call
time over rounds (interleaved, so a drifting machine favours no variant): with captures,
the extra over k = 0 per captured value (an array and a scalar count as two), the same work
with the values made inside the function (constants: `captured - constant` is what
capturing costs), and the values passed as arguments. CPU time of this process (all
threads), as the main runner's `--cpu-time`, so other processes' load counts less.
"""
from __future__ import annotations

import argparse
import statistics
import time

import numpy as np

import tracejit as tj

from .workloads import data_w1


def values(k: int) -> tuple[list, list]:
    rng = np.random.default_rng(k)
    return ([rng.standard_normal(100).astype(np.float32) for _ in range(k)],
            [np.float32((i + 1) / 8) for i in range(k)])


def loss_of(x, arrays, floats):
    total = np.sum(np.tanh(x) * np.sin(x) + np.float32(0.5) * x * x)
    for c, s in zip(arrays, floats):
        total = total + np.sum(c * x) * s
    return total


def captured(k: int):
    """W1 plus k captured arrays and k captured scalars (closure cells), called as f(x)."""
    arrays, floats = values(k)
    f = tj.jit_grad(lambda x: loss_of(x, arrays, floats))
    return lambda x: f(x)


def constant(k: int):
    """The same work with values made inside the function (constants of the trace, nothing
    captured or passed): what the captured variant costs beyond the kernel work."""
    def loss(x):
        arrays = [np.linspace(-1, 1 + i, 100, dtype=np.float32) for i in range(k)]
        return loss_of(x, arrays, [np.float32((i + 1) / 8) for i in range(k)])
    return tj.jit_grad(loss)


def passed(k: int):
    """The same values passed as arguments, called as f(x, *arrays, *floats): the same
    kernel work, without captures."""
    arrays, floats = values(k)
    f = tj.jit_grad(lambda x, *v: loss_of(x, v[:k], v[k:]))
    return lambda x: f(x, *arrays, *floats)


def per_call_us(fn, x, calls: int) -> float:
    t0 = time.process_time()
    for _ in range(calls):
        fn(x)
    return (time.process_time() - t0) / calls * 1e6


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--captures", default="0,1,2,4,8")
    ap.add_argument("--rounds", type=int, default=7)
    ap.add_argument("--calls", type=int, default=20000)
    args = ap.parse_args(argv)
    ks = [int(k) for k in args.captures.split(",")]
    x = data_w1(100)["x"]
    makers = {"captured": captured, "constant": constant, "passed": passed}
    variants = [(k, how) for k in ks for how in makers]
    fns = {(k, how): makers[how](k) for k, how in variants}
    for fn in fns.values():  # compile, then warm
        per_call_us(fn, x, 100)
    times: dict[tuple, list[float]] = {v: [] for v in variants}
    for r in range(args.rounds):
        for v in (variants if r % 2 == 0 else variants[::-1]):
            times[v].append(per_call_us(fns[v], x, args.calls))
    med = {v: statistics.median(t) for v, t in times.items()}
    base = med[(ks[0], "captured")]
    print(f"W6 per call with k captured arrays + k captured float32 scalars, and with the same "
          f"values passed as arguments\n(CPU time, median of {args.rounds} rounds x "
          f"{args.calls} calls; 'per value' counts an array and a scalar as two)")
    print(f"{'k':>3s} {'captured us':>12s} {'extra/value':>12s} {'constant us':>12s} "
          f"{'captured-constant /value':>25s} {'passed us':>10s}")
    for k in ks:
        c, b, p = (med[(k, how)] for how in ("captured", "constant", "passed"))
        per = f"{(c - base) / (2 * k):12.3f}" if k else f"{'-':>12s}"
        over = f"{(c - b) / (2 * k):25.3f}" if k else f"{'-':>25s}"
        print(f"{k:3d} {c:12.2f} {per} {b:12.2f} {over} {p:10.2f}")


if __name__ == "__main__":
    main()
