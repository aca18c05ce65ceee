"""Accuracy, special values, vectorization and cross-module caching of backends.vecmath."""
import itertools
import os
import re
import subprocess
import sys
import textwrap

import numba
import numpy as np
import pytest

from tracejit.backends import vecmath as vm

F32, F64 = np.float32, np.float64

# Max error in ulps asserted per function: (float32 vs float64 NumPy, float64 vs mpmath).
# Slightly above what the module docstring reports as measured, so the tests are not flaky
# while still catching any real regression (a wrong constant costs thousands of ulps).
ULP_BOUND = {
    "exp": (1.0, 1.5), "expm1": (1.5, 2.0), "log": (1.0, 1.0), "log1p": (1.5, 1.5),
    "tanh": (2.5, 2.5), "sin": (2.5, 1.0), "cos": (2.5, 1.0), "sigmoid": (2.5, 2.0),
    "softplus": (2.0, 2.0),
}
TRIG_MAX = {F32: 4095 * np.pi / 2, F64: 2.0 ** 19 * np.pi / 2}

_rng = np.random.default_rng(1234)


def _logspace(dt, lo, hi, n, signed=True):
    x = 2.0 ** _rng.uniform(lo, hi, n)
    if signed:
        x *= _rng.choice([-1.0, 1.0], n)
    return x.astype(dt)


def _inputs(name, dt, n):
    """Dense samples across magnitudes plus the edges where each function is delicate."""
    tiny = np.finfo(dt).smallest_subnormal
    emin, emax = (-149, 128) if dt is F32 else (-1074, 1024)
    parts = [_logspace(dt, emin, 4, n), _rng.uniform(-1, 1, n).astype(dt),
             np.array([tiny, -tiny, np.finfo(dt).tiny, 1e-8, -1e-8], dt)]
    if name in ("log", "log1p"):
        parts = [np.abs(_logspace(dt, emin, emax, n)), _rng.uniform(0.5, 2, n).astype(dt),
                 np.array([tiny, np.finfo(dt).max, 1.0, np.nextafter(dt(1), dt(2))], dt)]
        if name == "log1p":
            parts += [_rng.uniform(-1, 0, n).astype(dt), _logspace(dt, emin, -10, n),
                      np.array([np.nextafter(dt(-1), dt(0))], dt)]
    elif name in ("sin", "cos"):
        t = TRIG_MAX[dt]
        q = np.round(_rng.uniform(-t, t, n) * 2 / np.pi)
        near = (q * (np.pi / 2)).astype(dt)
        parts += [_rng.uniform(-t, t, n).astype(dt), near,
                  np.nextafter(near, dt(np.inf)), _logspace(dt, -10, np.log2(t) - 0.01, n)]
        parts = [p[np.abs(p) < t] for p in parts]
    else:
        over = np.log(np.finfo(dt).max)
        under = np.log(np.finfo(dt).smallest_subnormal)
        lo, hi = {"tanh": (-25, 25), "expm1": (-50, over)}.get(name, (under - 5, over + 5))
        parts += [_rng.uniform(lo, hi, n).astype(dt),
                  np.linspace(over - 1, over + 0.01, 64).astype(dt),   # overflow edge
                  np.linspace(under - 2, under + 30, 64).astype(dt)]   # subnormal results
    x = np.concatenate(parts)
    return x[np.isfinite(x)]


def _ulps(got, hi, lo, dt):
    """|got - (hi + lo)| in ulps of the true value, ulp floored at the subnormal spacing."""
    ref = hi.astype(dt)
    spacing = np.spacing(np.abs(ref)).astype(F64)
    with np.errstate(all="ignore"):
        err = np.abs((got.astype(F64) - hi) - lo) / spacing
    ok = np.isfinite(hi) & np.isfinite(ref)
    # where the exact result overflows dt, the only right answer is inf
    over = ~np.isfinite(ref) & np.isfinite(hi)
    assert np.all(got[over] == ref[over])
    return err[ok]


def _ref64(name, x):
    """float64 reference from NumPy for the float32 tests (itself ~0.5 ulp of float64)."""
    x = x.astype(F64)
    with np.errstate(all="ignore"):
        if name == "sigmoid":
            e = np.exp(-np.abs(x))
            return np.where(x >= 0, 1 / (1 + e), e / (1 + e))
        if name == "softplus":
            return np.logaddexp(0.0, x)
        return getattr(np, name)(x)


@pytest.mark.parametrize("name", sorted(ULP_BOUND))
def test_float32_accuracy(name):
    x = _inputs(name, F32, 20000)
    got = getattr(vm, name)(x)
    assert got.dtype == F32
    ref = _ref64(name, x)
    err = _ulps(got, ref, np.zeros_like(ref), F32)
    bound = ULP_BOUND[name][0]
    assert err.max() <= bound, (name, err.max(), x[np.argmax(err)])


@pytest.mark.parametrize("name", sorted(ULP_BOUND))
def test_float64_accuracy_vs_mpmath(name):
    mpmath = pytest.importorskip("mpmath")
    mpmath.mp.prec = 160
    f = {"sigmoid": lambda v: 1 / (1 + mpmath.exp(-v)),
         "softplus": lambda v: mpmath.log1p(mpmath.exp(v))}.get(name) or getattr(mpmath, name)
    x = _inputs(name, F64, 400)
    got = getattr(vm, name)(x)
    exact = [f(mpmath.mpf(float(v))) for v in x]
    hi = np.array([float(v) for v in exact])
    lo = np.array([float(v - mpmath.mpf(h)) if np.isfinite(h) else 0.0
                   for v, h in zip(exact, hi)])
    err = _ulps(got, hi, lo, F64)
    assert err.max() <= ULP_BOUND[name][1], (name, err.max(), x[np.argmax(err)])


def test_pow_accuracy():
    x32 = (2.0 ** _rng.uniform(-30, 30, 20000)).astype(F32)
    y32 = _rng.uniform(-4, 4, 20000).astype(F32)
    ref = np.power(x32.astype(F64), y32.astype(F64))
    err = _ulps(vm.pow(x32, y32), ref, np.zeros_like(ref), F32)
    assert err.max() <= 1.0
    mpmath = pytest.importorskip("mpmath")
    mpmath.mp.prec = 160
    x = 2.0 ** _rng.uniform(-20, 20, 400)
    y = _rng.uniform(-30, 30, 400)
    got = vm.pow(x, y)
    exact = [mpmath.power(mpmath.mpf(a), mpmath.mpf(b)) for a, b in zip(x, y)]
    hi = np.array([float(v) for v in exact])
    lo = np.array([float(v - mpmath.mpf(h)) for v, h in zip(exact, hi)])
    assert _ulps(got, hi, lo, F64).max() <= 1.5


# ---------------------------------------------------------------------------------------
# special values
# ---------------------------------------------------------------------------------------

SPECIALS = [np.nan, np.inf, -np.inf, 0.0, -0.0, 1.0, -1.0]
NUMPY = {"exp": np.exp, "expm1": np.expm1, "log": np.log, "log1p": np.log1p, "tanh": np.tanh,
         "sin": np.sin, "cos": np.cos, "sqrt": np.sqrt, "softplus": lambda x: np.logaddexp(0, x),
         "sigmoid": lambda x: 1 / (1 + np.exp(-x))}


def _same(a, b):
    """Bitwise-ish equality: NaN == NaN and the sign of zero must match."""
    return (np.isnan(a) & np.isnan(b)) | ((a == b) & (np.signbit(a) == np.signbit(b)))


@pytest.mark.parametrize("dt", [F32, F64])
@pytest.mark.parametrize("name", sorted(NUMPY))
def test_special_values(name, dt):
    extra = {"log": [-1e-30, 1e-45], "log1p": [-1.0, -2.0], "exp": [1000.0, -1000.0, 88.8],
             "expm1": [1000.0, -1000.0], "tanh": [30.0, -30.0], "sigmoid": [1000.0, -1000.0],
             "softplus": [1000.0, -1000.0], "sin": [1e-30, -1e-30]}.get(name, [])
    x = np.array(SPECIALS + extra, dt)
    with np.errstate(all="ignore"):
        want = NUMPY[name](x).astype(dt)
        got = getattr(vm, name)(x)
    assert np.all(_same(got, want) | (np.abs(got - want) <= np.spacing(np.abs(want)))), (
        list(zip(x, got, want)))
    # zeros and infinities exactly, sign of zero included
    exact = ~np.isfinite(want) | (want == 0)
    assert np.all(_same(got[exact], want[exact])), list(zip(x[exact], got[exact], want[exact]))


@pytest.mark.parametrize("dt", [F32, F64])
def test_overflow_underflow(dt):
    over = dt(np.log(np.finfo(dt).max))
    big = np.nextafter(over, dt(np.inf))
    assert vm.exp(big) == np.inf and vm.expm1(big) == np.inf
    assert np.isfinite(vm.exp(np.nextafter(over, dt(0))))
    sub = np.log(np.finfo(dt).tiny) - 3          # result is subnormal
    assert 0 < vm.exp(dt(sub)) < np.finfo(dt).tiny
    assert vm.exp(dt(sub)) == pytest.approx(np.exp(F64(dt(sub))), rel=1e-3)
    assert vm.exp(dt(np.log(np.finfo(dt).smallest_subnormal) - 1)) == 0
    assert vm.expm1(dt(-1000)) == -1 and vm.sigmoid(dt(-1000)) == 0


@pytest.mark.parametrize("dt", [F32, F64])
def test_pow_special_values(dt):
    vals = [-np.inf, -3.0, -2.0, -1.5, -1.0, -0.5, -0.0, 0.0, 0.5, 1.0, 1.5, 2.0, 3.0,
            np.inf, np.nan, 1e30, -1e30, 1e-40]
    x, y = (np.array(v, dt) for v in zip(*itertools.product(vals, vals)))
    with np.errstate(all="ignore"):
        want = np.power(x, y)
        got = vm.pow(x, y)
    close = np.abs(got - want) <= np.spacing(np.abs(want))
    assert np.all(_same(got, want) | close), [t for t in zip(x, y, got, want) if not
                                              (_same(*t[2:]) or abs(t[2] - t[3]) <= 1e-6)]


@pytest.mark.parametrize("dt", [F32, F64])
def test_maximum_minimum(dt):
    a = np.array([np.nan, 1, np.nan, -0.0, 0.0, 2, -np.inf, np.inf], dt)
    b = np.array([1, np.nan, np.nan, 0.0, -0.0, 3, 5, 5], dt)
    assert np.all(_same(vm.maximum(a, b), np.maximum(a, b)))
    assert np.all(_same(vm.minimum(a, b), np.minimum(a, b)))


@numba.njit(fastmath={"contract"}, error_model="numpy")
def _row_max_min(x):
    hi, lo = x.dtype.type(-np.inf), x.dtype.type(np.inf)
    for i in range(x.shape[0]):
        hi = vm.rmax(hi, x[i])
        lo = vm.rmin(lo, x[i])
    return hi, lo


@pytest.mark.parametrize("dt", [F32, F64])
def test_reduction_max_min_are_nan_exact_and_vectorize(dt):
    """vm.rmax/rmin (llvm.maximum/minimum) vectorize as a reduction with no fast-math flag
    in the caller, and keep NumPy's NaN rule."""
    x = np.random.default_rng(0).standard_normal(1001).astype(dt)
    assert _row_max_min(x) == (x.max(), x.min())
    for k in (0, 500, 1000):
        y = x.copy()
        y[k] = np.nan
        assert all(np.isnan(_row_max_min(y)))
    z = np.array([-0.0, 0.0, -0.0], dt)  # a tie of zeros: max +0, min -0
    assert [np.signbit(v) for v in _row_max_min(z)] == [False, True]
    llvm_ir = _row_max_min.inspect_llvm(_row_max_min.signatures[-1])
    assert re.search(r"llvm\.maximum\.v\d+f(32|64)", llvm_ir), "not vectorized"
    assert vm.rmax(np.int64(3), np.int64(-4)) == 3 and vm.rmin(3, -4) == -4


def test_sin_cos_large_arguments_are_nan():
    """Beyond TRIG_MAX the reduction is not exact (documented): NaN, never a wrong number."""
    for dt in (F32, F64):
        x = _logspace(dt, np.log2(TRIG_MAX[dt]) + 1e-3, 100, 1000)
        for f in (vm.sin, vm.cos):
            assert np.all(np.isnan(f(x)))
            assert np.isnan(f(dt(np.inf))) and np.isnan(f(dt(-np.inf)))
            assert not np.isnan(f(dt(TRIG_MAX[dt] * 0.999)))


# ---------------------------------------------------------------------------------------
# compilation: dtype specialization, vectorization, caching from another module
# ---------------------------------------------------------------------------------------

@numba.njit(fastmath={"reassoc", "contract"})
def _w1_loop(x, out):
    for i in range(x.shape[0]):
        t = vm.tanh(x[i])
        out[i] = t * vm.sin(x[i]) + vm.exp(x[i]) + vm.log1p(vm.sigmoid(x[i]))


def test_float32_stays_float32_and_vectorizes():
    x = np.linspace(-3, 3, 1000).astype(F32)
    out = np.empty_like(x)
    _w1_loop(x, out)
    llvm_ir = _w1_loop.inspect_llvm(_w1_loop.signatures[0])
    body = next(d for d in llvm_ir.split("define")[1:] if "_w1_loop" in d.split("(")[0])
    # float32 work must not be done in double (fpext/fptrunc would halve the vector width)
    assert "fpext" not in body and " double " not in body
    assert re.search(r"<(4|8|16) x float>", body), "loop was not vectorized"
    with np.errstate(all="ignore"):
        xd = x.astype(F64)
        ref = np.tanh(xd) * np.sin(xd) + np.exp(xd) + np.log1p(1 / (1 + np.exp(-xd)))
    np.testing.assert_allclose(out, ref, rtol=1e-6)


_CALLER = textwrap.dedent("""
    import numba, numpy as np
    from numba import prange
    from tracejit.backends import vecmath as vm

    @numba.njit(parallel=True, fastmath={'reassoc', 'contract'}, cache=True)
    def kernel(x, y, g):
        acc = x.dtype.type(0)
        for i in prange(x.shape[0]):
            t = vm.tanh(x[i])
            s = vm.sin(x[i])
            acc += t * s + vm.maximum(x[i], y[i]) + vm.pow(vm.exp(y[i]), x[i])
            g[i] = (1 - t * t) * s + t * vm.cos(x[i]) + vm.softplus(x[i])
        return acc
""")

_DRIVER = textwrap.dedent("""
    import sys, numpy as np
    sys.path.insert(0, sys.argv[1])
    import vm_caller
    for dt in (np.float32, np.float64):
        x = np.linspace(-4, 4, 1001).astype(dt)
        y = np.linspace(-1, 1, 1001).astype(dt)
        g = np.empty_like(x)
        acc = vm_caller.kernel(x, y, g)
        xd, yd = x.astype(np.float64), y.astype(np.float64)
        t, s = np.tanh(xd), np.sin(xd)
        ref_acc = np.sum(t * s + np.maximum(xd, yd) + np.exp(yd) ** xd)
        ref_g = (1 - t * t) * s + t * np.cos(xd) + np.logaddexp(0, xd)
        np.testing.assert_allclose(g, ref_g, rtol=1e-5, atol=1e-6)
        np.testing.assert_allclose(acc, ref_acc, rtol=1e-4)
    print("hits", sum(vm_caller.kernel.stats.cache_hits.values()))
""")


def test_cached_parallel_caller_in_another_module(tmp_path):
    (tmp_path / "vm_caller.py").write_text(_CALLER)
    (tmp_path / "driver.py").write_text(_DRIVER)
    env = dict(os.environ, NUMBA_CACHE_DIR=str(tmp_path / "cache"))
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    env["PYTHONPATH"] = root + os.pathsep + env.get("PYTHONPATH", "")
    runs = [subprocess.run([sys.executable, str(tmp_path / "driver.py"), str(tmp_path)],
                           env=env, capture_output=True, text=True, timeout=300)
            for _ in range(2)]
    for r in runs:
        assert r.returncode == 0, r.stderr[-3000:]
    assert runs[0].stdout.split()[-1] == "0"
    assert runs[1].stdout.split()[-1] == "2", "second process did not load from the cache"


def test_entries_are_compiled_once_and_loaded_from_disk(tmp_path, monkeypatch):
    """An entry's optimized bitcode is saved under its key and loaded by the next process
    (here: the same process with its memory cleared); a damaged file is compiled again."""
    from tracejit.backends.vecmath import precompiled
    monkeypatch.setattr(precompiled, "_folders", lambda: [str(tmp_path / "vm")])
    monkeypatch.setattr(precompiled, "_BITCODE", {})
    x = np.linspace(-2, 2, 50).astype(F32)

    def fresh():  # a new caller each time: its lowering asks for the entry again
        return numba.njit(lambda x: [vm.expm1(v) for v in x])

    np.testing.assert_allclose(fresh()(x), np.expm1(x), rtol=2e-7)
    (path,) = (tmp_path / "vm").iterdir()
    key = path.name[3:-3]
    saved = path.read_bytes()
    monkeypatch.setattr(precompiled, "_BITCODE", {})
    assert precompiled._bitcode(key, lambda: pytest.fail("compiled again")) == saved
    np.testing.assert_allclose(fresh()(x), np.expm1(x), rtol=2e-7)
    path.write_bytes(saved[:len(saved) // 2])  # a truncated file
    monkeypatch.setattr(precompiled, "_BITCODE", {})
    assert precompiled._bitcode(key, lambda: saved) == saved
    assert path.read_bytes() == saved
