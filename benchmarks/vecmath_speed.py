"""Vectorization proof and timings for tracejit.backends.vecmath vs math.* in prange loops.

Run: python benchmarks/vecmath_speed.py [--n 10000000] [--reps 20]
Prints median wall times (ms) over --reps runs after warm-up, writing into preallocated
output, and whether the LLVM IR / asm of each kernel contains vector float instructions.
"""
import argparse
import importlib.util
import math
import pathlib
import re
import sys
import time

import numba
import numpy as np
from numba import prange

try:
    from tracejit.backends import vecmath as vm
except ImportError:  # tracejit itself does not import: load the vecmath package by path
    _p = pathlib.Path(__file__).resolve().parents[1] / "tracejit" / "backends" / "vecmath"
    _spec = importlib.util.spec_from_file_location("tracejit_vecmath", _p / "__init__.py",
                                                   submodule_search_locations=[str(_p)])
    vm = importlib.util.module_from_spec(_spec)
    sys.modules["tracejit_vecmath"] = vm  # its modules import each other relatively
    _spec.loader.exec_module(vm)

_jit = numba.njit(parallel=True, fastmath={"reassoc", "contract"})


@_jit
def w1_math(x, g):
    acc = np.float32(0.0)
    for i in prange(x.shape[0]):
        xi = x[i]
        t = math.tanh(xi)
        s = math.sin(xi)
        acc += t * s + np.float32(0.5) * xi * xi
        g[i] = (np.float32(1.0) - t * t) * s + t * math.cos(xi) + xi
    return acc


@_jit
def w1_vm(x, g):
    acc = np.float32(0.0)
    for i in prange(x.shape[0]):
        xi = x[i]
        t = vm.tanh(xi)
        s = vm.sin(xi)
        acc += t * s + np.float32(0.5) * xi * xi
        g[i] = (np.float32(1.0) - t * t) * s + t * vm.cos(xi) + xi
    return acc


def _unary_loop(f):
    @_jit
    def loop(x, out):
        for i in prange(x.shape[0]):
            out[i] = f(x[i])
    return loop


def _binary_loop(f):
    @_jit
    def loop(x, y, out):
        for i in prange(x.shape[0]):
            out[i] = f(x[i], y[i])
    return loop


def _median_ms(fn, args, reps):
    fn(*args)
    fn(*args)
    ts = []
    for _ in range(reps):
        t0 = time.perf_counter()
        fn(*args)
        ts.append(time.perf_counter() - t0)
    return 1e3 * float(np.median(ts))


def _vector_evidence(fn):
    """Widest '<N x float|double>' in the IR and whether the asm uses ymm/zmm registers."""
    ir = "\n".join(fn.inspect_llvm().values())
    asm = "\n".join(fn.inspect_asm().values())
    widths = [int(w) for w in re.findall(r"<(\d+) x (?:float|double)>", ir)]
    regs = sorted(set(re.findall(r"%([yz]mm)\d+", asm)))
    return (max(widths) if widths else 1), ",".join(regs) or "none"


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--n", type=int, default=10_000_000)
    ap.add_argument("--reps", type=int, default=20)
    args = ap.parse_args()
    rng = np.random.default_rng(0)
    print(f"numba {numba.__version__}, threads {numba.get_num_threads()}, n={args.n}")

    x32 = rng.uniform(-3, 3, args.n).astype(np.float32)
    g = np.empty_like(x32)
    print("\nW1 value+grad, float32, preallocated gradient")
    for name, fn in [("math.*", w1_math), ("vm.*", w1_vm)]:
        ms = _median_ms(fn, (x32, g), args.reps)
        width, regs = _vector_evidence(fn)
        print(f"  {name:7s} {ms:8.2f} ms   IR vector width {width:2d}   asm regs {regs}")
    ms = _median_ms(lambda a: w1_vm(a, np.empty_like(a)), (x32,), args.reps)
    print(f"  vm.* incl. allocating the gradient: {ms:.2f} ms")
    ref_g = np.empty_like(g)
    v_math, v_vm = w1_math(x32, ref_g), w1_vm(x32, g)
    print(f"  value math {v_math:.6g} vm {v_vm:.6g}; grad max |diff| "
          f"{np.max(np.abs(ref_g - g)):.3g}")

    domains = {"log": (1e-3, 1e3), "log1p": (-0.9, 1e3), "sqrt": (0, 1e3), "pow": (1e-3, 10)}
    print("\nsingle function loops (ms), float32 / float64")
    for name in ["exp", "expm1", "log", "log1p", "tanh", "sin", "cos", "sigmoid", "softplus",
                 "sqrt", "pow", "maximum", "minimum"]:
        f_vm = getattr(vm, name)
        f_math = {"exp": math.exp, "expm1": math.expm1, "log": math.log, "log1p": math.log1p,
                  "tanh": math.tanh, "sin": math.sin, "cos": math.cos, "sqrt": math.sqrt,
                  "pow": math.pow, "maximum": max, "minimum": min}.get(name)
        binary = name in ("pow", "maximum", "minimum")
        lo, hi = domains.get(name, (-10, 10))
        row = f"  {name:9s}"
        for dt in (np.float32, np.float64):
            x = rng.uniform(lo, hi, args.n).astype(dt)
            ins = (x, rng.uniform(-3, 3, args.n).astype(dt)) if binary else (x,)
            out = np.empty_like(x)
            cells = []
            for f in (f_math, f_vm):
                if f is None:
                    cells.append("     -")
                    continue
                loop = (_binary_loop if binary else _unary_loop)(f)
                ms = _median_ms(loop, (*ins, out), args.reps)
                width, _ = _vector_evidence(loop)
                cells.append(f"{ms:6.2f} (<{width}>)")
            row += f"  {dt.__name__}: math {cells[0]} vm {cells[1]}"
        print(row)


if __name__ == "__main__":
    main()
