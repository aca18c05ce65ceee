"""W11 and W12: loops that are not unrolled (issue 13), registered into workloads.py's tables.

    W11  Euler integration on a time grid: h <- h + dt_t * tanh(W @ h + b), 1000 steps of
         dt_t = 0.01, h[1024] f32, W[1024x1024]; loss sum(h_T**2); value and grad (h0, W)
    W12  the same with 100,000 steps on a 16-element state (per-step overhead is everything)

    python -m benchmarks --only W11,W12           # the tables, every peer (see README.md)
    python -m benchmarks.workloads_loops [--quick] # W11's first call against the step count
                                                   # (fresh processes, cold and warm disk
                                                   # cache) and grad-of-scan's memory

The loss is written once against the ops namespace F, with F.scan: tj.scan, jax.lax.scan
(under jax.jit), a Python loop for PyTorch eager. torch-compile compiles the STEP function
(torch.compile, inductor) and a Python loop calls it: compiling the loss would unroll the
1000 (100,000) steps. NumPy by hand and the hand-written Numba loop run the forward loop
storing the states, then the backward loop.
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import tracemalloc

import numpy as np

F32 = np.float32
DT = F32(0.01)


def loss_loop(F, h0, W, b, dts):
    def step(h, dt):
        return h + dt * F.tanh(W @ h + b), None
    h, _ = F.scan(step, h0, dts)
    return F.sum(h * h)


def data(n: int, steps: int):
    rng = np.random.default_rng(11)
    return {"h0": rng.standard_normal(n, dtype=F32),
            "W": rng.standard_normal((n, n), dtype=F32) / F32(np.sqrt(n)),
            "b": rng.standard_normal(n, dtype=F32) * F32(0.1),
            "dts": np.full(steps, DT, F32)}


# ---- NumPy by hand ------------------------------------------------------------------------------
def numpy_vg(h0, W, b, dts):
    steps = dts.size
    hs = np.empty((steps + 1, h0.size), F32)
    ts = np.empty((steps, h0.size), F32)
    hs[0] = h0
    for t in range(steps):
        ts[t] = np.tanh(W @ hs[t] + b)
        hs[t + 1] = hs[t] + dts[t] * ts[t]
    h = hs[-1]
    g = F32(2) * h
    gW = np.zeros_like(W)
    for t in range(steps - 1, -1, -1):
        d = g * dts[t] * (F32(1) - ts[t] * ts[t])
        gW += np.outer(d, hs[t])
        g = g + W.T @ d
    return np.sum(h * h), (g, gW)


# ---- hand-written Numba ------------------------------------------------------------------------
def _numba_loop(m, parallel):
    """Forward: rows of W @ h in parallel, the states stored; backward: per row i of W (and of
    a transposed copy WT, made once), gW[i] += d[i] * h_t and (W.T @ d)[i], in parallel."""
    from numba import njit, prange

    tanh = m.tanh

    @njit(parallel=parallel, fastmath=True)
    def run(h0, W, b, dts):
        n, steps = h0.size, dts.size
        hs = np.empty((steps + 1, n), np.float32)
        ts = np.empty((steps, n), np.float32)
        hs[0] = h0
        for t in range(steps):
            dt = dts[t]
            for i in prange(n):
                s = b[i]
                for j in range(n):
                    s += W[i, j] * hs[t, j]
                th = np.float32(tanh(s))
                ts[t, i] = th
                hs[t + 1, i] = hs[t, i] + dt * th
        h = hs[steps]
        value = np.float32(0)
        for i in range(n):
            value += h[i] * h[i]
        WT = np.ascontiguousarray(W.T)
        g = np.float32(2) * h
        gn = np.empty(n, np.float32)
        gW = np.zeros_like(W)
        d = np.empty(n, np.float32)
        for t in range(steps - 1, -1, -1):
            for i in range(n):
                d[i] = g[i] * dts[t] * (np.float32(1) - ts[t, i] * ts[t, i])
            for i in prange(n):
                di = d[i]
                s = g[i]
                for j in range(n):
                    gW[i, j] += di * hs[t, j]
                    s += WT[i, j] * d[j]
                gn[i] = s
            g, gn = gn, g
        return value, g, gW
    return run


def _numba_callable(kernel, d, prealloc):
    h0, Wm, b, dts = d["h0"], d["W"], d["b"], d["dts"]

    def run():
        v, g, gW = kernel(h0, Wm, b, dts)
        return v, (g, gW)
    return run


# ---- PyTorch: torch.compile of the step --------------------------------------------------------
def build_torch_compile_step(wl, d):
    import torch

    from . import workloads as W
    h0, Wt = (torch.from_numpy(d[k].copy()).requires_grad_(True) for k in ("h0", "W"))
    b, dts = torch.from_numpy(d["b"].copy()), torch.from_numpy(d["dts"].copy())
    step = torch.compile(lambda h, dt, Wm, bv: h + dt * torch.tanh(Wm @ h + bv), dynamic=False)

    def call():
        h = h0
        for dt in dts:
            h = step(h, dt, Wt, b)
        value = torch.sum(h * h)
        return value.detach(), torch.autograd.grad(value, [h0, Wt])
    return W.Built(call, lambda out: (float(out[0]), tuple(g.numpy().copy() for g in out[1])),
                   "torch.compile of the step function, called from a Python loop")


def register() -> None:
    """Add W11, W12, their hand Numba loop and peer adaptations to workloads.py's tables."""
    from . import workloads as W  # (this module is imported by workloads.py, at its end)
    for key, title, n, steps, quick_steps in (
            ("W11", "Euler-integrated recurrence (scan)", 1024, 1000, 100),
            ("W12", "long recurrence, small state (scan)", 16, 100_000, 10_000)):
        W.WORKLOADS[key] = W.Workload(
            key, title, f"h <- h + dt*tanh(W@h + b), {steps} steps, h[{n}], W[{n}x{n}]; "
            "sum(h_T**2), grad (h0, W)", ("h0", "W", "b", "dts"), ("h0", "W"), loss_loop,
            numpy_vg, lambda q, n=n, s=steps, qs=quick_steps: data(n, qs if q else s), "W",
            lambda d: d["h0"].size, numba_kernel="loop", funcs=("tanh",))
    W.NUMBA_BUILDERS["loop"] = _numba_loop
    W.NUMBA_CALLABLES["loop"] = _numba_callable
    loops = ("W11", "W12")

    def adapt(name, build):
        peer = W.PEERS[name]
        plain = peer.build

        def adapted(wl, d):
            return build(wl, d) if wl.key in loops else plain(wl, d)
        peer.build = adapted

    def not_applicable(why):
        def build(wl, d):
            raise W.NotApplicable(why)
        return build
    adapt("drjit", not_applicable("no loop primitive wired for Dr.Jit here"))
    adapt("numba-prealloc", not_applicable("the loop allocates its state history per call"))
    adapt("torch-compile", build_torch_compile_step)


# ---- first call against the step count; memory of grad-of-scan ----------------------------------
CHILD = r"""
import json, sys, time
t0 = time.perf_counter()
import numpy as np
import tracejit as tj
t1 = time.perf_counter()
from benchmarks.workloads_loops import data, loss_loop
from benchmarks.workloads import _tracejit_ops
n, steps = int(sys.argv[1]), int(sys.argv[2])
d = data(n, steps)
args = (d["h0"], d["W"], d["b"], d["dts"])
F = _tracejit_ops(tj)
f = tj.jit_grad(lambda h0, W, b, dts: loss_loop(F, h0, W, b, dts), argnums=(0, 1))
t2, c2 = time.perf_counter(), time.thread_time()
f(*args)
t3, c3 = time.perf_counter(), time.thread_time()
f(*args)
t4 = time.perf_counter()
print(json.dumps({"import_s": t1 - t0, "first_call_s": t3 - t2, "first_call_cpu_s": c3 - c2,
                  "second_call_s": t4 - t3}))
"""


def first_calls(n: int, steps_list, runs: int = 1) -> list[dict]:
    """W11's first call in fresh processes: per step count, on a new empty cache ("cold":
    every kernel and loop compiled) and again on that cache ("warm": loaded from disk)."""
    repo = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    rows = []
    for steps in steps_list:
        for _ in range(runs):
            with tempfile.TemporaryDirectory(prefix="tracejit-loops-") as cache:
                env = dict(os.environ, TRACEJIT_CACHE_DIR=cache)
                for kind in ("cold", "warm"):
                    out = subprocess.run([sys.executable, "-c", CHILD, str(n), str(steps)],
                                         env=env, capture_output=True, text=True, check=True,
                                         cwd=repo)
                    rec = json.loads(out.stdout.strip().splitlines()[-1])
                    rows.append(dict(rec, steps=steps, cache=kind))
    return rows


def residual_bytes(vg, args) -> int:
    """Bytes of the per-step values grad-of-scan stores (the forward scan's stacked outputs)."""
    import tracejit as tj
    graph = tj.make_ir(vg)(*args)
    for e in graph.eqns:
        if e.prim.name == "scan":  # the first scan is the forward one
            return sum(v.aval.size * v.aval.dtype.itemsize
                       for v in e.outputs[e.params["n_carry"]:])
    return 0


def memory(n: int, steps: int, checkpoint: bool) -> tuple[int, int]:
    """(tracemalloc peak of a steady value-and-grad call, residual bytes)."""
    import tracejit as tj
    d = data(n, steps)
    args = (d["h0"], d["W"], d["b"], d["dts"])

    def loss(h0, W, b, dts):
        def step(h, dt):
            return h + dt * np.tanh(W @ h + b), None
        h, _ = tj.scan(step, h0, dts, checkpoint=checkpoint)
        return np.sum(h * h)
    vg = tj.jit_grad(loss, argnums=(0, 1))
    vg(*args)
    tj.wait_compiled()  # the loops' parallel variants (a compile's memory is not the loop's)
    tracemalloc.start()
    vg(*args)
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    return peak, residual_bytes(tj.grad(loss, argnums=(0, 1)), args)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--quick", action="store_true", help="steps 10, 100 only")
    ap.add_argument("--runs", type=int, default=1)
    a = ap.parse_args()
    steps_list = (10, 100) if a.quick else (10, 100, 1000)
    print("W11 first call (h[1024], value + grad), fresh process per row")
    print(f"{'steps':>7}{'cache':>7}{'import s':>10}{'first call s':>14}{'(its CPU s)':>12}"
          f"{'second call s':>15}")
    for r in first_calls(1024, steps_list, a.runs):
        print(f"{r['steps']:>7}{r['cache']:>7}{r['import_s']:>10.2f}{r['first_call_s']:>14.2f}"
              f"{r['first_call_cpu_s']:>12.2f}{r['second_call_s']:>15.3f}")
    for ck in (False, True):
        peak, res = memory(1024, steps_list[-1], ck)
        print(f"grad-of-scan W11 ({steps_list[-1]} steps) checkpoint={ck}: peak traced memory "
              f"{peak / 2**20:.1f} MiB, stacked residuals {res / 2**20:.1f} MiB")


if __name__ == "__main__":
    main()
