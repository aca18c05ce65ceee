"""W11 and W12: loops that are not unrolled (issue 13).

    W11  Euler-integrated recurrence h <- h + dt * tanh(W @ h + b), 1000 steps, h[1024] f32,
         W[1024x1024]; loss sum(h_T**2); value and grad w.r.t. (h0, W)
    W12  the same recurrence with 100,000 steps on a 16-element state (per-step overhead)

Peers: tracejit (tj.scan under value_and_grad), JAX (lax.scan under jit), PyTorch eager,
NumPy by hand (forward loop storing the states, backward loop), hand-written Numba (the same
two loops in njit). torch.compile is not run: it unrolls a Python loop of 1000 steps.

Run: python -m benchmarks.workloads_loops [--quick]   (prints the tables; one process, one
run, so the ratios are comparable). These workloads are not yet in the `python -m benchmarks`
runner's tables (its losses are written against an ops namespace without a loop op).
"""
from __future__ import annotations

import argparse
import time
import tracemalloc

import numpy as np

F32 = np.float32
DT = F32(0.01)


def data(n: int, steps: int):
    rng = np.random.default_rng(11)
    return {"h0": rng.standard_normal(n, dtype=F32),
            "W": rng.standard_normal((n, n), dtype=F32) / F32(np.sqrt(n)),
            "b": rng.standard_normal(n, dtype=F32) * F32(0.1), "steps": steps}


# ---- tracejit ---------------------------------------------------------------------------------
def tracejit_loss(steps: int, checkpoint: bool = False):
    import tracejit as tj

    def loss(h0, W, b):
        def step(h, _):
            return h + DT * np.tanh(W @ h + b), None
        h, _ = tj.scan(step, h0, None, length=steps, checkpoint=checkpoint)
        return np.sum(h * h)
    return tj.value_and_grad(loss, argnums=(0, 1))


# ---- NumPy by hand ------------------------------------------------------------------------------
def numpy_vg(h0, W, b, steps):
    hs = np.empty((steps + 1, h0.size), F32)
    ts = np.empty((steps, h0.size), F32)
    hs[0] = h0
    for t in range(steps):
        ts[t] = np.tanh(W @ hs[t] + b)
        hs[t + 1] = hs[t] + DT * ts[t]
    h = hs[-1]
    g = F32(2) * h
    gW = np.zeros_like(W)
    for t in range(steps - 1, -1, -1):
        d = g * DT * (F32(1) - ts[t] * ts[t])
        gW += np.outer(d, hs[t])
        g = g + W.T @ d
    return np.sum(h * h), (g, gW)


# ---- hand-written Numba ------------------------------------------------------------------------
_NUMBA = []


def numba_vg():
    if _NUMBA:
        return _NUMBA[0]
    from numba import njit

    @njit(fastmath=True)
    def run(h0, W, b, steps):
        n = h0.size
        hs = np.empty((steps + 1, n), np.float32)
        ts = np.empty((steps, n), np.float32)
        hs[0] = h0
        for t in range(steps):
            for i in range(n):
                s = b[i]
                for j in range(n):
                    s += W[i, j] * hs[t, j]
                ts[t, i] = np.tanh(s)
                hs[t + 1, i] = hs[t, i] + np.float32(0.01) * ts[t, i]
        g = np.float32(2) * hs[steps]
        gW = np.zeros_like(W)
        d = np.empty(n, np.float32)
        for t in range(steps - 1, -1, -1):
            for i in range(n):
                d[i] = g[i] * np.float32(0.01) * (np.float32(1) - ts[t, i] * ts[t, i])
            for i in range(n):
                for j in range(n):
                    gW[i, j] += d[i] * hs[t, j]
            for j in range(n):
                s = np.float32(0)
                for i in range(n):
                    s += W[i, j] * d[i]
                g[j] += s
        h = hs[steps]
        return np.sum(h * h), g, gW
    _NUMBA.append(run)
    return run


# ---- JAX, PyTorch ---------------------------------------------------------------------------
def jax_vg(steps):
    import jax
    import jax.numpy as jnp

    def loss(h0, W, b):
        def step(h, _):
            return h + DT * jnp.tanh(W @ h + b), None
        h, _ = jax.lax.scan(step, h0, None, length=steps)
        return jnp.sum(h * h)
    f = jax.jit(jax.value_and_grad(loss, argnums=(0, 1)))
    return lambda h0, W, b: jax.block_until_ready(f(h0, W, b))


def torch_vg(h0, W, b, steps):
    import torch
    h0t = torch.from_numpy(h0.copy()).requires_grad_(True)
    Wt = torch.from_numpy(W.copy()).requires_grad_(True)
    bt = torch.from_numpy(b)
    h = h0t
    for _ in range(steps):
        h = h + float(DT) * torch.tanh(Wt @ h + bt)
    v = torch.sum(h * h)
    g = torch.autograd.grad(v, [h0t, Wt])
    return v.detach(), g


# ---- measuring ---------------------------------------------------------------------------------
def best(fn, repeat: int = 3) -> float:
    times = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return min(times)


def residual_bytes(vg, args) -> int:
    """Bytes of the per-step values grad-of-scan stores (the forward scan's stacked outputs)."""
    import tracejit as tj
    plan = tj.make_plan(vg)(*args)
    total = 0
    for e in plan.graph.eqns:
        if e.prim.name == "scan" and len(e.outputs) > e.params["n_carry"]:
            total += sum(v.aval.size * v.aval.dtype.itemsize
                         for v in e.outputs[e.params["n_carry"]:])
            break  # the first scan is the forward one
    return total


def run_workload(name: str, n: int, steps: int, peers: list[str], repeat: int) -> None:
    d = data(n, steps)
    args = (d["h0"], d["W"], d["b"])
    ref_v, (ref_g, ref_gW) = numpy_vg(*args, steps)
    print(f"\n{name}: h[{n}] f32, {steps} steps, value + grad (h0, W)")
    print(f"{'peer':<16}{'time (ms)':>12}{'vs tracejit':>14}  check")
    rows = {}
    vg = tracejit_loss(steps)
    t0 = time.perf_counter()
    out = vg(*args)
    first = time.perf_counter() - t0
    rows["tracejit"] = (best(lambda: vg(*args), repeat), out)
    peer_fns = {
        "numpy-by-hand": lambda: numpy_vg(*args, steps),
        "numba-hand": lambda: numba_vg()(*args, steps),
    }
    if "jax" in peers:
        try:
            jf = jax_vg(steps)
            jf(*args)
            peer_fns["jax-scan-jit"] = lambda: jf(*args)
        except ImportError:
            pass
    if "torch" in peers and steps <= 10_000:
        peer_fns["torch-eager"] = lambda: torch_vg(*args, steps)
    for k, fn in peer_fns.items():
        out_k = fn()  # warm-up (compiles)
        rows[k] = (best(fn, repeat), out_k)
    base = rows["tracejit"][0]
    for k, (t, o) in rows.items():
        if k == "numba-hand":
            v, g, gW = o
        else:
            v, (g, gW) = o
        g, gW = np.asarray(g), np.asarray(gW)
        err = max(abs(float(v) - float(ref_v)) / abs(float(ref_v)),
                  float(np.max(np.abs(g - ref_g)) / np.max(np.abs(ref_g))),
                  float(np.max(np.abs(gW - ref_gW)) / np.max(np.abs(ref_gW))))
        print(f"{k:<16}{t * 1e3:>12.2f}{t / base:>13.2f}x  max rel err {err:.1e}")
    print(f"tracejit first call (trace + compile + run): {first:.2f} s")
    return first


def first_call(steps: int, n: int = 1024) -> float:
    """A fresh function's first call (trace, autodiff, compile, run), in this process."""
    d = data(n, steps)
    vg = tracejit_loss(steps)
    t0 = time.perf_counter()
    vg(d["h0"], d["W"], d["b"])
    return time.perf_counter() - t0


def memory(steps: int, n: int, checkpoint: bool) -> tuple[int, int]:
    d = data(n, steps)
    args = (d["h0"], d["W"], d["b"])
    vg = tracejit_loss(steps, checkpoint)
    vg(*args)
    tracemalloc.start()
    vg(*args)
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    return peak, residual_bytes(vg, args)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--peers", default="jax,torch")
    ap.add_argument("--only", default="W11,W12")
    a = ap.parse_args()
    peers = a.peers.split(",")
    steps11 = 100 if a.quick else 1000
    steps12 = 10_000 if a.quick else 100_000
    if "W11" in a.only:
        run_workload("W11", 1024, steps11, peers, 2)
        for s in (10, steps11):
            print(f"first call, W11 at {s} steps (fresh function): {first_call(s):.2f} s")
    if "W12" in a.only:
        run_workload("W12", 16, steps12, [p for p in peers if p != "torch"], 2)
    for ck in (False, True):
        peak, res = memory(steps11, 1024, ck)
        print(f"grad-of-scan W11 checkpoint={ck}: peak traced memory {peak / 2**20:.1f} MiB, "
              f"stacked residuals {res / 2**20:.1f} MiB")


if __name__ == "__main__":
    main()
