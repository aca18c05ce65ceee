"""Workload definitions: data, the NumPy-by-hand reference, and every peer's implementation.

Each workload computes a scalar loss AND its gradient in one call. The loss is written once,
against a tiny "ops" namespace (``F.tanh``, ``F.sum``, ``F.stop_gradient``...), and that same
function is handed to JAX, PyTorch (eager and ``torch.compile``), Dr.Jit and tracejit, so the
frameworks are compared on the identical formula rather than on five hand translations that
might drift apart. Only two peers are written by hand: NumPy (forward and hand-derived
backward, the correctness reference) and Numba (the fused loop an expert would write: the
"reference limit" the generated code is measured against).

Peers are imported lazily (inside ``build``), so importing this module does not import JAX,
torch or Dr.Jit, and a missing optional peer only removes its column.
"""

from __future__ import annotations

import functools
import importlib
import importlib.util
import math
import os
import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from types import SimpleNamespace
from typing import Any

import numpy as np

from benchmarks import transform_peers

F32 = np.float32


class NotApplicable(Exception):
    """A peer variant that means nothing for this workload (e.g. libm for a workload with no
    transcendental function, or a preallocated gradient when the gradients are scalars)."""


# ============================================================================================
# Losses, written once against an ops namespace F.
#
# F provides: tanh, sin, exp, log, round, sum(x, axis=None), mean(x), amax(x, axis, keepdims),
# stop_gradient, pick(L, labels) = L[arange(n), labels], rows(E, idx) = E[idx] (W7, W8:
# defined with their data and hand-written peers in workloads_index.py), scan(f, init, xs)
# (W11, W12: workloads_loops.py). Arithmetic and @ are the array type's own operators.


def loss_w1(F, x):
    return F.sum(F.tanh(x) * F.sin(x) + 0.5 * x * x)


def loss_w2(F, w, b, x, y):
    return F.mean((w * x + b - y) ** 2)


def loss_w3(F, L, Y):
    z = L - F.stop_gradient(F.amax(L, 1, True))
    return F.mean(F.log(F.sum(F.exp(z), 1)) - F.sum(Y * z, 1))


def loss_w4(F, x, t):
    return F.sum((x + F.stop_gradient(F.round(x * 4) / 4 - x) - t) ** 2)


def loss_w5(F, W2, X, W1, T):
    h = F.stop_gradient(F.tanh(X @ W1))
    return F.mean((h @ W2 - T) ** 2)


def loss_w9(F, w, x, y):  # one example (a row x of X, a label y = +-1)
    return F.log(1 + F.exp(-y * (x @ w)))


# ============================================================================================
# NumPy by hand: forward plus hand-derived backward. This is the correctness reference for
# every other peer, so it favours clarity; it is still written the way a NumPy user would
# (reuse tanh/exp results, no redundant passes).


def numpy_w1(x):
    t = np.tanh(x)
    s = np.sin(x)
    value = np.sum(t * s + F32(0.5) * x * x)
    grad = (F32(1) - t * t) * s + t * np.cos(x) + x
    return value, (grad,)


def numpy_w2(w, b, x, y):
    r = w * x + b - y
    n = x.size
    value = np.mean(r * r)
    return value, (F32(2.0 / n) * np.sum(r * x), F32(2.0 / n) * np.sum(r))


def numpy_w3(L, Y):
    B = L.shape[0]
    z = L - L.max(axis=1, keepdims=True)
    e = np.exp(z)
    s = e.sum(axis=1, keepdims=True)
    value = np.mean(np.log(s[:, 0]) - np.sum(Y * z, axis=1))
    grad = (e / s - Y) * F32(1.0 / B)
    return value, (grad,)


def numpy_w4(x, t):
    q = np.round(x * F32(4)) / F32(4)
    r = x + (q - x) - t
    return np.sum(r * r), (F32(2) * r,)


def numpy_w5(W2, X, W1, T):
    h = np.tanh(X @ W1)
    d = h @ W2 - T
    value = np.mean(d * d)
    grad = h.T @ (d * F32(2.0 / d.size))
    return value, (grad,)


# ============================================================================================
# Data. Deterministic (seeded); float32 throughout.


def data_w1(n: int):
    rng = np.random.default_rng(1)
    return {"x": rng.standard_normal(n, dtype=F32)}


def data_w2(n: int):
    rng = np.random.default_rng(2)
    x = rng.standard_normal(n, dtype=F32)
    y = (F32(2) * x + F32(1) + F32(0.1) * rng.standard_normal(n, dtype=F32)).astype(F32)
    # w, b are away from the optimum (2, 1) so that dw and db are far from zero: a gradient
    # near zero would be a cancellation test of the summation order, not of the peer.
    return {"w": np.array(0.5, dtype=F32), "b": np.array(-0.3, dtype=F32), "x": x, "y": y}


def data_w3(rows: int, classes: int = 1000):
    rng = np.random.default_rng(3)
    L = F32(3) * rng.standard_normal((rows, classes), dtype=F32)
    labels = rng.integers(0, classes, rows)
    Y = np.zeros((rows, classes), dtype=F32)
    Y[np.arange(rows), labels] = 1
    return {"L": L, "Y": Y}


def data_w4(n: int):
    rng = np.random.default_rng(4)
    x = rng.standard_normal(n, dtype=F32)
    # Keep x*4 off exact .5 ties: NumPy/torch/Dr.Jit round half to even, a libm round() half
    # away from zero; a handful of ties would make a correct peer fail the check.
    frac = x * F32(4) - np.floor(x * F32(4))
    ties = frac == F32(0.5)
    x[ties] = np.nextafter(x[ties], F32(np.inf))
    return {"x": x, "t": rng.standard_normal(n, dtype=F32)}


def data_w9(rows: int, cols: int = 256):
    rng = np.random.default_rng(9)
    return {"w": (rng.standard_normal(cols, dtype=F32) / F32(16)),
            "X": rng.standard_normal((rows, cols), dtype=F32),
            "y": np.where(rng.standard_normal(rows) > 0, F32(1), F32(-1)).astype(F32)}


def data_w10(n: int):
    rng = np.random.default_rng(10)
    return {"x": rng.standard_normal(n, dtype=F32), "v": rng.standard_normal(n, dtype=F32)}


def data_w5(rows: int):
    rng = np.random.default_rng(5)
    return {
        "W2": (rng.standard_normal((256, 10), dtype=F32) / F32(16)),
        "X": rng.standard_normal((rows, 256), dtype=F32),
        "W1": (rng.standard_normal((256, 256), dtype=F32) / F32(16)),
        "T": rng.standard_normal((rows, 10), dtype=F32),
    }


# ============================================================================================
# Workload table.


@dataclass
class Workload:
    key: str
    title: str
    formula: str
    args: tuple[str, ...]
    wrt: tuple[str, ...]
    loss: Callable
    numpy: Callable
    make_data: Callable[[bool], dict]
    copy_arg: str                  # input copied for the bandwidth reference
    n_reduce: Callable[[dict], int]  # elements summed into the loss (sets the value tolerance)
    unit: str = "ms"               # "ms" or "us" for display
    numba_kernel: str = ""         # key into NUMBA_BUILDERS
    funcs: tuple[str, ...] = ()    # transcendentals the hand loop calls (vecmath or libm)
    scalar_grads: bool = False     # gradients are scalars: numba-prealloc is moot
    # what a call computes: "value_and_grad" (value + gradients), or a transformation's one
    # array ("per_example_grad", "hvp"; peers in transform_peers.py)
    transform: str = "value_and_grad"
    loss_args: tuple[str, ...] = ()  # the loss's own arguments when not `args` (W10: x)

    @property
    def is_transform(self) -> bool:
        return self.transform != "value_and_grad"

    @property
    def argnums(self) -> tuple[int, ...]:
        return tuple(self.args.index(a) for a in self.wrt)

    def ordered(self, data: dict) -> list:
        return [data[a] for a in self.args]


N_BIG = 10_000_000


def _size(quick: bool, full: int, small: int) -> int:
    return small if quick else full


WORKLOADS: dict[str, Workload] = {
    "W1": Workload(
        "W1", "elementwise transcendental", "sum(tanh(x)*sin(x) + 0.5*x*x), x[1e7], grad x",
        ("x",), ("x",), loss_w1, numpy_w1,
        lambda q: data_w1(_size(q, N_BIG, 1_000_000)), "x", lambda d: d["x"].size,
        numba_kernel="w1", funcs=("tanh", "sin", "cos")),
    "W2": Workload(
        "W2", "linear regression MSE", "mean((w*x + b - y)**2), x,y[1e7], grad (w, b)",
        ("w", "b", "x", "y"), ("w", "b"), loss_w2, numpy_w2,
        lambda q: data_w2(_size(q, N_BIG, 1_000_000)), "x", lambda d: d["x"].size,
        numba_kernel="w2", scalar_grads=True),
    "W3": Workload(
        "W3", "softmax cross-entropy",
        "z = L - sg(max(L,1)); mean(log(sum(exp(z),1)) - sum(Y*z,1)), L[4096x1000], grad L",
        ("L", "Y"), ("L",), loss_w3, numpy_w3,
        lambda q: data_w3(_size(q, 4096, 1024)), "L", lambda d: d["L"].shape[0],
        numba_kernel="w3", funcs=("exp", "log")),
    "W4": Workload(
        "W4", "straight-through quantization",
        "sum((x + sg(round(x*4)/4 - x) - t)**2), x,t[1e7], grad x",
        ("x", "t"), ("x",), loss_w4, numpy_w4,
        lambda q: data_w4(_size(q, N_BIG, 1_000_000)), "x", lambda d: d["x"].size,
        numba_kernel="w4"),
    "W5": Workload(
        "W5", "frozen-layer MLP",
        "h = sg(tanh(X@W1)); mean((h@W2 - T)**2), X[4096x256] W1[256x256] W2[256x10], grad W2",
        ("W2", "X", "W1", "T"), ("W2",), loss_w5, numpy_w5,
        lambda q: data_w5(_size(q, 4096, 1024)), "X", lambda d: d["T"].size,
        numba_kernel="w5", funcs=("tanh",)),
    "W6": Workload(
        "W6", "W1 at N=100 (dispatch overhead)", "W1 with x[100], grad x",
        ("x",), ("x",), loss_w1, numpy_w1, lambda q: data_w1(100), "x",
        lambda d: d["x"].size, unit="us", numba_kernel="w1", funcs=("tanh", "sin", "cos")),
    "W9": Workload(
        "W9", "per-example gradients (vmap of grad)",
        "d/dw log(1 + exp(-y*(x@w))) per row x of X[16384x256], w[256]; out 16384x256",
        ("w", "X", "y"), ("w",), loss_w9, transform_peers.numpy_w9,
        lambda q: data_w9(_size(q, 16384, 2048)), "X", lambda d: 1, funcs=("exp",),
        transform="per_example_grad"),
    "W10": Workload(
        "W10", "Hessian-vector product of W1 (jvp of grad)",
        "d/dt grad W1(x + t v) at t=0, x,v[1e7]", ("x", "v"), ("x",), loss_w1,
        transform_peers.numpy_w10,
        lambda q: data_w10(_size(q, N_BIG, 1_000_000)), "x", lambda d: 1,
        funcs=("tanh", "sin", "cos"), transform="hvp", loss_args=("x",)),
}
# W7, W8 (gathers and scatters) are added to WORKLOADS, NUMBA_BUILDERS and PEERS by
# workloads_index.py, W11, W12 (loops) by workloads_loops.py, imported at the end of this module



# ============================================================================================
# Correctness check against NumPy by hand.


def tolerances(wl: Workload, data: dict) -> tuple[float, float, float]:
    """(value rtol, gradient rtol, gradient atol as a fraction of max |reference gradient|).

    Float32 reductions in a different order differ by roughly eps*sqrt(n) relative (random
    walk of rounding errors), so the value tolerance grows with the reduction size, clipped to
    [1e-4, 1e-3]. Gradients are elementwise (a few ulp of tanh/sin/exp approximations) except
    for W2's scalar sums and W5's 4096-long dot products, which the max-relative atol covers.
    """
    n = wl.n_reduce(data)
    rtol_v = min(1e-3, max(1e-4, 3e-7 * math.sqrt(n)))
    return rtol_v, 1e-3, 1e-4


def check(wl: Workload, data: dict, ref, got) -> tuple[bool, str, dict]:
    """Compare a peer's (value, grads) with the reference; returns (ok, message, errors)."""
    rtol_v, rtol_g, atol_g = tolerances(wl, data)
    ref_v, ref_g = ref
    v, g = got
    errs: dict[str, float] = {}
    problems = []
    v, rv = (math.nan, math.nan) if ref_v is None else (float(v), float(ref_v))
    errs["value_rel_err"] = 0.0 if ref_v is None else abs(v - rv) / max(abs(rv), 1e-30)
    if ref_v is not None and (not math.isfinite(v) or errs["value_rel_err"] > rtol_v):
        problems.append(f"value {v:.7g} vs {rv:.7g} (rel {errs['value_rel_err']:.2e} > "
                        f"{rtol_v:.1e})")
    if len(g) != len(ref_g):
        return False, f"expected {len(ref_g)} gradients, got {len(g)}", errs
    for name, gi, ri in zip(wl.wrt, g, ref_g):
        gi = np.asarray(gi, dtype=np.float64)
        ri = np.asarray(ri, dtype=np.float64)
        if gi.shape != ri.shape:
            problems.append(f"grad {name} shape {gi.shape} != {ri.shape}")
            continue
        scale = float(np.max(np.abs(ri))) if ri.size else 0.0
        excess = np.abs(gi - ri) - (rtol_g * np.abs(ri) + atol_g * scale)
        worst = float(np.max(np.abs(gi - ri) / (np.abs(ri) + atol_g * scale + 1e-30)))
        errs[f"grad_{name}_max_rel_err"] = worst
        if not np.all(np.isfinite(gi)) or np.any(excess > 0):
            bad = int(np.sum(~(excess <= 0)))
            problems.append(f"grad {name}: {bad} of {gi.size} elements off (worst rel {worst:.2e})")
    return (not problems), "; ".join(problems), errs


# ============================================================================================
# Peers. Each peer's ``build(wl, data)`` returns a zero-argument callable that computes value
# and gradient once (with any asynchronous work completed before it returns), plus a
# ``to_numpy`` converting that callable's result into (float value, tuple of ndarrays).
# Input conversion to the framework's array type happens in ``build``, outside the timing.


@dataclass
class Built:
    fn: Callable[[], Any]
    to_numpy: Callable[[Any], tuple]
    note: str = ""
    # called after the first call, before steady-state timing: waits for work a peer
    # finishes in the background (tracejit's parallel loops compile while serial ones run)
    settle: Callable[[], None] = lambda: None


@dataclass
class Peer:
    name: str
    description: str
    requires: tuple[str, ...]
    build: Callable[[Workload, dict], Built]
    default: bool = True
    threads: Callable[[], str] = field(default=lambda: "")

    def missing(self) -> list[str]:
        return [m for m in self.requires if importlib.util.find_spec(m) is None]


def _np_tuple(out) -> tuple:
    v, g = out
    return None if v is None else float(v), tuple(np.array(gi, copy=True) for gi in g)


# ---- NumPy by hand -------------------------------------------------------------------------


def build_numpy(wl: Workload, data: dict) -> Built:
    args = wl.ordered(data)
    return Built(lambda: wl.numpy(*args), _np_tuple)


# ---- Numba: hand-written fused loops -------------------------------------------------------
#
# Variants (the peer names): numba-libm uses math.* (scalar libm calls: LLVM cannot vectorize
# the loop), numba-fused uses tracejit's vectorizable vecmath module, numba-prealloc is
# numba-fused writing into a gradient buffer allocated once, numba-serial is numba-fused
# without parallel=True. All loops are one pass: read each input once, write the gradient
# once, accumulate the loss in float64 (fastmath lets LLVM vectorize that reduction).

_ZERO, _HALF, _ONE, _TWO, _FOUR, _QUARTER = (F32(v) for v in (0, 0.5, 1, 2, 4, 0.25))

_VECMATH_CACHE: list = []
_MATH_FUNCS = ("tanh", "sin", "cos", "exp", "log")


def _load_vecmath():
    """Import tracejit's vecmath; if the package itself does not import (work in progress
    elsewhere), load the file on its own. Returns (module or None, reason)."""
    try:
        return importlib.import_module("tracejit.backends.vecmath"), ""
    except Exception as exc:  # noqa: BLE001 - any failure means "fall back to libm"
        reason = f"{type(exc).__name__}: {exc}"
    path = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))),
                        "tracejit", "backends", "vecmath")
    if os.path.exists(path):
        try:
            spec = importlib.util.spec_from_file_location(
                "_bench_vecmath", os.path.join(path, "__init__.py"),
                submodule_search_locations=[path])
            vm = importlib.util.module_from_spec(spec)
            sys.modules["_bench_vecmath"] = vm
            spec.loader.exec_module(vm)
            return vm, "vecmath loaded from file (package import failed)"
        except Exception as exc:  # noqa: BLE001
            reason = f"{type(exc).__name__}: {exc}"
    return None, f"vecmath unavailable ({reason[:60]})"


def vecmath_module():
    """(tanh/sin/cos/exp/log namespace, names that fell back to math, reason) for the
    "fused" Numba loops.

    Each function comes from tracejit's vectorizable vecmath module when it has it, else
    from ``math`` (a scalar libm call that keeps LLVM from vectorizing the loop); the note
    names any fallback so the table never silently reports a libm loop as a vecmath one.
    """
    if _VECMATH_CACHE:
        return _VECMATH_CACHE[0]
    vm, reason = _load_vecmath()
    funcs, fallback = {}, []
    for name in _MATH_FUNCS:
        f = getattr(vm, name, None) if vm is not None else None
        if f is None:
            f = getattr(math, name)
            fallback.append(name)
        funcs[name] = f
    result = (SimpleNamespace(**funcs), tuple(fallback), reason)
    _VECMATH_CACHE.append(result)
    return result


def _numba_w1(m, parallel):
    from numba import njit, prange

    tanh, sin, cos = m.tanh, m.sin, m.cos

    @njit(parallel=parallel, fastmath=True)
    def core(x, g):
        acc = 0.0
        for i in prange(x.shape[0]):
            xi = x[i]
            t = tanh(xi)
            s = sin(xi)
            acc += t * s + _HALF * xi * xi
            g[i] = (_ONE - t * t) * s + t * cos(xi) + xi
        return acc

    return core


def _numba_w2(m, parallel):
    from numba import njit, prange

    @njit(parallel=parallel, fastmath=True)
    def core(w, b, x, y):
        s2 = 0.0
        sx = 0.0
        s1 = 0.0
        for i in prange(x.shape[0]):
            xi = x[i]
            r = w * xi + b - y[i]
            s2 += r * r
            sx += r * xi
            s1 += r
        n = x.shape[0]
        return s2 / n, 2.0 * sx / n, 2.0 * s1 / n

    return core


def _numba_w3(m, parallel):
    """Row loop: per row max, then exp (stored into the gradient row) and its sum, then the
    gradient and the label term in a last pass over the row, which is still in L1/L2."""
    from numba import njit, prange

    exp, log = m.exp, m.log

    @njit(parallel=parallel, fastmath=True)
    def core(L, Y, G):
        B, C = L.shape
        scale = F32(1.0 / B)
        total = 0.0
        for r in prange(B):
            Lr = L[r]
            Yr = Y[r]
            Gr = G[r]
            mx = Lr[0]
            for j in range(1, C):
                mx = max(mx, Lr[j])
            s = _ZERO
            for j in range(C):
                e = exp(Lr[j] - mx)
                Gr[j] = e
                s += e
            inv = _ONE / s
            yz = _ZERO
            for j in range(C):
                yz += Yr[j] * (Lr[j] - mx)
                Gr[j] = (Gr[j] * inv - Yr[j]) * scale
            total += log(s) - yz
        return total / B

    return core


def _numba_w4(m, parallel):
    from numba import njit, prange

    @njit(parallel=parallel, fastmath=True)
    def core(x, t, g):
        acc = 0.0
        for i in prange(x.shape[0]):
            xi = x[i]
            q = np.rint(xi * _FOUR) * _QUARTER
            r = xi + (q - xi) - t[i]
            acc += r * r
            g[i] = _TWO * r
        return acc

    return core


def _numba_w5(m, parallel):
    """Two fused elementwise loops around BLAS: tanh in place after X@W1, then the residual
    (loss and scaled dL/dP in one pass) after h@W2. The matmuls stay in OpenBLAS via np.dot."""
    from numba import njit, prange

    tanh = m.tanh

    @njit(parallel=parallel, fastmath=True)
    def tanh_inplace(a):
        f = a.reshape(-1)
        for i in prange(f.shape[0]):
            f[i] = tanh(f[i])

    @njit(parallel=parallel, fastmath=True)
    def resid(P, T, D):
        p = P.reshape(-1)
        t = T.reshape(-1)
        d = D.reshape(-1)
        n = p.shape[0]
        scale = F32(2.0 / n)
        acc = 0.0
        for i in prange(n):
            di = p[i] - t[i]
            acc += di * di
            d[i] = di * scale
        return acc / n

    return tanh_inplace, resid


NUMBA_CALLABLES: dict = {}  # key -> (kernel, data, prealloc) -> callable (workloads_index)
NUMBA_BUILDERS = {"w1": _numba_w1, "w2": _numba_w2, "w3": _numba_w3, "w4": _numba_w4,
                  "w5": _numba_w5}


def build_numba(variant: str) -> Callable[[Workload, dict], Built]:
    """Builder for one Numba variant: 'libm', 'fused', 'prealloc' or 'serial'.

    Kernels are compiled anew for each build (fresh dispatchers), so each variant's first-call
    time includes its own compilation rather than reusing a sibling's.
    """

    def build(wl: Workload, data: dict) -> Built:
        if wl.is_transform:
                return transform_peers.build_numba(variant, wl, data, vecmath_module, Built)
        if variant == "libm" and not wl.funcs:
            raise NotApplicable("no transcendental: identical to numba-fused")
        if variant == "prealloc" and wl.scalar_grads:
            raise NotApplicable("scalar gradients: nothing to preallocate")
        if variant == "libm":
            m, note = math, "math." + "/".join(wl.funcs) + " (libm)"
        else:
            m, fallback, reason = vecmath_module()
            used_fb = [f for f in wl.funcs if f in fallback]
            note = ("vecmath." + "/".join(f for f in wl.funcs if f not in fallback)
                    if len(used_fb) < len(wl.funcs) else "")
            if used_fb:
                note += (", " if note else "") + "math." + "/".join(used_fb) + " (libm: " + (
                    reason or "not in vecmath yet") + ")"
        parallel = variant != "serial"
        prealloc = variant == "prealloc"
        kernel = NUMBA_BUILDERS[wl.numba_kernel](m, parallel)
        fn = _numba_callable(wl.numba_kernel, kernel, data, prealloc)
        return Built(fn, _np_tuple, note)

    return build


def _numba_callable(key: str, kernel, d: dict, prealloc: bool) -> Callable[[], Any]:
    from numba import njit

    if key in NUMBA_CALLABLES:
        return NUMBA_CALLABLES[key](kernel, d, prealloc)
    if key == "w1" or key == "w4":
        ins = (d["x"],) if key == "w1" else (d["x"], d["t"])
        if prealloc:
            g = np.empty_like(d["x"])
            return lambda: (kernel(*ins, g), (g,))

        # Allocation inside the compiled function: one dispatcher call per step.
        if key == "w1":
            @njit
            def run1(x):
                g = np.empty_like(x)
                return kernel(x, g), (g,)
        else:
            @njit
            def run1(x, t):
                g = np.empty_like(x)
                return kernel(x, t, g), (g,)
        return lambda: run1(*ins)
    if key == "w2":
        w, b, x, y = F32(d["w"]), F32(d["b"]), d["x"], d["y"]

        def run2():
            v, dw, db = kernel(w, b, x, y)
            return v, (dw, db)
        return run2
    if key == "w3":
        L, Y = d["L"], d["Y"]
        if prealloc:
            G = np.empty_like(L)
            return lambda: (kernel(L, Y, G), (G,))

        @njit
        def run3(L, Y):
            G = np.empty_like(L)
            return kernel(L, Y, G), (G,)
        return lambda: run3(L, Y)
    if key == "w5":
        tanh_inplace, resid = kernel
        W2, X, W1, T = d["W2"], d["X"], d["W1"], d["T"]
        if prealloc:
            A = np.empty((X.shape[0], W1.shape[1]), F32)
            P = np.empty((X.shape[0], W2.shape[1]), F32)
            D = np.empty_like(P)
            G = np.empty_like(W2)

            def run5p():
                np.dot(X, W1, out=A)
                tanh_inplace(A)
                np.dot(A, W2, out=P)
                v = resid(P, T, D)
                np.dot(A.T, D, out=G)
                return v, (G,)
            return run5p

        def run5():
            A = np.dot(X, W1)
            tanh_inplace(A)
            P = np.dot(A, W2)
            D = np.empty_like(P)
            v = resid(P, T, D)
            return v, (np.dot(A.T, D),)
        return run5
    raise KeyError(key)


# ---- JAX -----------------------------------------------------------------------------------


def _jax_ops(jnp, jax):
    return SimpleNamespace(
        tanh=jnp.tanh, sin=jnp.sin, exp=jnp.exp, log=jnp.log, round=jnp.round,
        sum=lambda x, axis=None: jnp.sum(x, axis=axis), mean=jnp.mean,
        amax=lambda x, axis, keepdims: jnp.max(x, axis=axis, keepdims=keepdims),
        stop_gradient=jax.lax.stop_gradient,
        pick=lambda L, labels: L[jnp.arange(L.shape[0]), labels], rows=lambda E, idx: E[idx],
        scan=jax.lax.scan)


def build_jax(wl: Workload, data: dict) -> Built:
    import jax
    import jax.numpy as jnp

    F = _jax_ops(jnp, jax)
    args = [jax.device_put(a) for a in wl.ordered(data)]
    if wl.is_transform:
        tfn = transform_peers.jax_fn(wl, F, jax)
        return Built(lambda: jax.block_until_ready(tfn(*args)),
                     lambda out: (None, (np.asarray(out),)))
    fn = jax.jit(jax.value_and_grad(functools.partial(wl.loss, F), argnums=wl.argnums))

    def call():
        return jax.block_until_ready(fn(*args))

    return Built(call, lambda out: (float(out[0]), tuple(np.asarray(g) for g in out[1])))


# ---- PyTorch -------------------------------------------------------------------------------


def _torch_ops(torch):
    return SimpleNamespace(
        tanh=torch.tanh, sin=torch.sin, exp=torch.exp, log=torch.log, round=torch.round,
        sum=lambda x, axis=None: torch.sum(x) if axis is None else torch.sum(x, dim=axis),
        mean=torch.mean,
        amax=lambda x, axis, keepdims: torch.amax(x, dim=axis, keepdim=keepdims),
        stop_gradient=lambda x: x.detach(),
        pick=lambda L, labels: L[torch.arange(L.shape[0]), labels], rows=lambda E, idx: E[idx],
        scan=_python_scan)


def _python_scan(f, init, xs):
    """scan as a Python loop (PyTorch eager): the final carry; no stacked ys (W11/W12)."""
    c = init
    for x in xs:
        c, _ = f(c, x)
    return c, None


def _build_torch(wl: Workload, data: dict, compiled: bool) -> Built:
    import torch

    F = _torch_ops(torch)
    # np.array(copy=True) keeps 0-d inputs (W2's w, b) 0-d; ascontiguousarray would not.
    args = [torch.from_numpy(np.array(a, copy=True, order="C")) for a in wl.ordered(data)]
    if wl.is_transform:
        tfn = transform_peers.torch_fn(wl, F, torch, compiled)
        return Built(lambda: tfn(*args), lambda out: (None, (out.detach().numpy().copy(),)))
    wrt = [args[i].requires_grad_(True) for i in wl.argnums]
    loss = functools.partial(wl.loss, F)
    if compiled:
        # dynamic=False: W1 and W6 share the loss function; without it dynamo would switch to a
        # dynamic-shape kernel on the second size it sees, which is not what a user with a
        # fixed shape gets. Forward and backward are both compiled (AOTAutograd).
        loss = torch.compile(loss, dynamic=False)

    def call():
        value = loss(*args)
        grads = torch.autograd.grad(value, wrt)
        return value.detach(), grads

    def to_numpy(out):
        return float(out[0]), tuple(g.detach().numpy().copy() for g in out[1])

    return Built(call, to_numpy)


def build_torch(wl: Workload, data: dict) -> Built:
    return _build_torch(wl, data, compiled=False)


def build_torch_compile(wl: Workload, data: dict) -> Built:
    return _build_torch(wl, data, compiled=True)


# ---- Dr.Jit (LLVM backend with AD) ---------------------------------------------------------


# workloads whose 1-D arrays enter a tensor matmul (TensorXf @ Float is not defined): they
# are passed as 1-D TensorXf instead of flat Float arrays
DRJIT_TENSOR_VECTORS = {"W8"}


def _drjit_ops(dr):
    return SimpleNamespace(
        tanh=dr.tanh, sin=dr.sin, exp=dr.exp, log=dr.log, round=dr.round,
        sum=lambda x, axis=None: dr.sum(x) if axis is None else dr.sum(x, axis=axis),
        mean=dr.mean,
        amax=lambda x, axis, keepdims: dr.max(x, axis=axis, keepdims=keepdims),
        stop_gradient=dr.detach, pick=functools.partial(_drjit_pick, dr),
        rows=functools.partial(_drjit_rows, dr))


def _drjit_pick(dr, L, labels):
    """L[arange(n), labels] for a TensorXf L and a TensorXu of labels: one dr.gather."""
    from drjit.llvm.ad import Float, TensorXf, UInt32
    n, c = L.shape
    flat = dr.arange(UInt32, n) * c + labels.array
    return TensorXf(dr.gather(Float, L.array, flat), (n,))


def _drjit_rows(dr, E, idx):
    """E[idx] (rows of a TensorXf E; idx a TensorXu of any shape): one dr.gather."""
    from drjit.llvm.ad import Float, TensorXf, UInt32
    d = E.shape[1]
    k = dr.width(idx.array)
    flat = dr.repeat(idx.array * d, d) + dr.tile(dr.arange(UInt32, d), k)
    return TensorXf(dr.gather(Float, E.array, flat), tuple(idx.shape) + (d,))


def build_drjit(wl: Workload, data: dict) -> Built:
    if wl.is_transform:
        raise NotApplicable("no vmap / forward-over-reverse transformation to compare")
    import drjit as dr
    from drjit.llvm.ad import Float, TensorXf, TensorXu

    F = _drjit_ops(dr)

    def convert(a):
        a = np.asarray(a)
        if a.dtype.kind in "iu":  # indices (W7's labels, W8's rows): a UInt32 tensor
            return TensorXu(a.astype(np.uint32))
        if a.ndim == 1 and wl.key not in DRJIT_TENSOR_VECTORS:
            return Float(a)
        if a.ndim == 0:
            return Float(float(a))
        return TensorXf(a)

    base = [convert(a) for a in wl.ordered(data)]
    dr.eval(*base)
    loss = functools.partial(wl.loss, F)

    def call():
        # Fresh AD leaves each call (cheap: they share the evaluated storage), so gradients
        # never accumulate across calls.
        args = list(base)
        for i in wl.argnums:
            args[i] = dr.detach(base[i])
            dr.enable_grad(args[i])
        value = loss(*args)
        dr.backward(value)
        grads = [dr.grad(args[i]) for i in wl.argnums]
        dr.eval(value, *grads)
        dr.sync_thread()
        return value, grads

    def to_numpy(out):
        value, grads = out
        gs = []
        for i, g in zip(wl.argnums, grads):
            arr = np.array(g, copy=True).astype(F32)
            gs.append(arr.reshape(np.shape(data[wl.args[i]])))
        return float(np.asarray(value).reshape(-1)[0]), tuple(gs)

    return Built(call, to_numpy, "h@W2 via Dr.Jit tensor matmul" if wl.key == "W5" else "")


# ---- tracejit ------------------------------------------------------------------------------


def _tracejit_ops(tj):
    # Plain NumPy calls: tracejit traces them on its tracer arrays.
    return SimpleNamespace(
        tanh=np.tanh, sin=np.sin, exp=np.exp, log=np.log, round=np.round,
        sum=lambda x, axis=None: np.sum(x, axis=axis), mean=np.mean,
        amax=lambda x, axis, keepdims: np.max(x, axis=axis, keepdims=keepdims),
        stop_gradient=tj.stop_gradient,
        pick=lambda L, labels: L[np.arange(L.shape[0]), labels], rows=lambda E, idx: E[idx],
        scan=tj.scan)


def tracejit_loss(wl: Workload):
    """(loss, argnums): the workload's loss as a plain function of its arguments (with their
    own names), written with NumPy calls that tracejit traces, and the argnums to
    differentiate. The tests take W1-W6 from here, so they are defined once."""
    import tracejit as tj

    F = _tracejit_ops(tj)
    # A real def with the workload's own parameter names (tracejit may inspect signatures).
    names = wl.loss_args or wl.args
    src = (f"def {wl.key.lower()}_{'_'.join(names)}({', '.join(names)}):\n"
           f"    return _loss(_F, {', '.join(names)})\n")
    ns: dict = {"_loss": wl.loss, "_F": F}
    exec(src, ns)  # noqa: S102 - fixed template, no user input
    f = next(v for k, v in ns.items() if k.startswith(wl.key.lower()))
    return f, (wl.argnums[0] if len(wl.argnums) == 1 else wl.argnums)


def _build_tracejit(wl: Workload, data: dict, **options) -> Built:
    import tracejit as tj

    f, argnums = tracejit_loss(wl)
    args = wl.ordered(data)
    if wl.is_transform:
        tfn = transform_peers.tracejit_fn(wl, tj, f, **options)
        return Built(lambda: tfn(*args), lambda out: (None, (np.array(out, copy=True),)),
                     settle=tj.wait_compiled)
    g = tj.jit_grad(f, argnums=argnums, **options)
    single = len(wl.argnums) == 1

    def call():
        return g(*args)

    def to_numpy(out):
        value, grads = out
        grads = (grads,) if single else tuple(grads)
        return float(np.asarray(value)), tuple(np.array(gi, copy=True) for gi in grads)

    return Built(call, to_numpy, settle=tj.wait_compiled)


def build_tracejit(wl: Workload, data: dict) -> Built:
    return _build_tracejit(wl, data)


def build_tracejit_reuse(wl: Workload, data: dict) -> Built:
    return _build_tracejit(wl, data, reuse_buffers=True)


def build_tracejit_interp(wl: Workload, data: dict) -> Built:
    return _build_tracejit(wl, data, backend="interpreter")


# ---- Thread reporting ----------------------------------------------------------------------


def _numba_threads() -> str:
    import numba

    try:
        layer = numba.threading_layer()
    except ValueError:
        layer = "not yet initialised"
    return f"numba {numba.get_num_threads()} threads ({layer}); OpenBLAS for np.dot"


def _torch_threads() -> str:
    import torch

    return f"torch intra-op {torch.get_num_threads()}, inter-op {torch.get_num_interop_threads()}"


def _jax_threads() -> str:
    return "XLA CPU default (Eigen pool over all cores); XLA_FLAGS=" + os.environ.get(
        "XLA_FLAGS", "")


def _drjit_threads() -> str:
    import drjit as dr

    return f"drjit pool {dr.thread_count()} threads"


PEERS: dict[str, Peer] = {p.name: p for p in [
    Peer("numpy", "NumPy, forward + hand-derived backward (the reference)", (), build_numpy,
         threads=lambda: "NumPy ufuncs single-threaded; OpenBLAS for @"),
    Peer("numba-libm", "hand-written Numba prange loop, math.* (libm)", ("numba",),
         build_numba("libm"), threads=_numba_threads),
    Peer("numba-fused", "hand-written Numba prange loop, tracejit vecmath", ("numba",),
         build_numba("fused"), threads=_numba_threads),
    Peer("numba-prealloc", "numba-fused writing into a preallocated gradient", ("numba",),
         build_numba("prealloc"), threads=_numba_threads),
    Peer("numba-serial", "numba-fused without parallel=True", ("numba",),
         build_numba("serial"), threads=lambda: "1 thread (serial loop); OpenBLAS for np.dot"),
    Peer("jax", "jax.jit(jax.value_and_grad(f))", ("jax", "jaxlib"), build_jax,
         threads=_jax_threads),
    Peer("torch", "PyTorch eager + torch.autograd.grad", ("torch",), build_torch,
         threads=_torch_threads),
    Peer("torch-compile", "torch.compile(f) (inductor, fwd+bwd) + autograd.grad", ("torch",),
         build_torch_compile, threads=_torch_threads),
    Peer("drjit", "Dr.Jit LLVM backend, drjit.llvm.ad + dr.backward", ("drjit",), build_drjit,
         threads=_drjit_threads),
    Peer("tracejit", "tj.jit_grad(f) (Numba backend)", ("tracejit",), build_tracejit,
         threads=_numba_threads),
    Peer("tracejit-reuse", "tj.jit_grad(f, reuse_buffers=True)", ("tracejit",),
         build_tracejit_reuse, threads=_numba_threads),
    Peer("tracejit-interp", "tj.jit_grad(f, backend='interpreter') (NumPy reference)",
         ("tracejit",), build_tracejit_interp, default=False),
]}

# The two columns every other peer is compared with.
RATIO_REFERENCES = ("tracejit", "numba-fused")


def configure_threads(peer_names, n: int) -> dict[str, str]:
    """Give every selected peer the machine's n cores, before any of them runs.

    Numba and Dr.Jit take the count explicitly; torch intra-op is set to n; XLA and OpenBLAS
    default to all cores, which is n here (recorded, not forced, so the numbers are what a
    user gets by default).
    """
    out: dict[str, str] = {}
    names = set(peer_names)
    if names & {"numba-libm", "numba-fused", "numba-prealloc", "numba-serial", "tracejit",
                "tracejit-reuse"}:
        import numba

        numba.set_num_threads(min(n, numba.config.NUMBA_NUM_THREADS))
    if names & {"torch", "torch-compile"} and importlib.util.find_spec("torch"):
        import torch

        torch.set_num_threads(n)
    if "drjit" in names and importlib.util.find_spec("drjit"):
        import drjit as dr

        dr.set_thread_count(n)
    for name in peer_names:
        peer = PEERS[name]
        if peer.missing():
            continue
        try:
            out[name] = peer.threads()
        except Exception as exc:  # noqa: BLE001 - informational only
            out[name] = f"? ({type(exc).__name__})"
    return out


from .workloads_index import register as _register_index  # noqa: E402
from .workloads_loops import register as _register_loops  # noqa: E402

_register_index()
_register_loops()
