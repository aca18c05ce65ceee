"""Loops compiled fast (issue 13): a weight's gradient through a scan summed as ONE matmul
after the backward loop (loops._summed_contractions), and the Numba CPU scan loop that
allocates nothing per step and is cached on disk (backends/numba_loops.py)."""
from __future__ import annotations

import os
import re

import numpy as np
import pytest
from helpers import BACKENDS

import tracejit as tj

CUDA = "cuda" if os.environ.get("NUMBA_ENABLE_CUDASIM") == "1" else None
ALL = BACKENDS + ([CUDA] if CUDA else [])
RNG = np.random.default_rng(13)


def euler(h0, W, b, steps=6, reverse=False, checkpoint=False):
    """W11's recurrence: the gradient of W is sum_t outer(d_t, h_t)."""
    def step(h, _):
        return h + 0.1 * np.tanh(W @ h + b), None
    h, _ = tj.scan(step, h0, None, length=steps, reverse=reverse, checkpoint=checkpoint)
    return np.sum(h * h)


def euler_unrolled(h0, W, b, steps=6, reverse=False, checkpoint=False):
    h = h0
    for _ in range(steps):
        h = h + 0.1 * np.tanh(W @ h + b)
    return np.sum(h * h)


def batched(H0, W, xs, U):
    """A state of several columns (a matmul per step, inner dimension 3), a weight applied
    to the xs slices (its gradient's factors: a y's cotangent and an x slice), and U @ c
    with c loop-invariant (no per-step factor: accumulated in the loop as before)."""
    c = np.linspace(0.5, 1.0, U.shape[1])

    def step(H, x):
        H = np.tanh(W @ H + (U @ c)[:, None]) * 0.9
        return H, U @ x
    H, ys = tj.scan(step, H0, xs)
    return np.sum(H ** 2) + np.sum(np.sin(ys))


def batched_unrolled(H0, W, xs, U):
    c = np.linspace(0.5, 1.0, U.shape[1])
    H, ys = H0, []
    for t in range(xs.shape[0]):
        H = np.tanh(W @ H + (U @ c)[:, None]) * 0.9
        ys.append(U @ xs[t])
    return np.sum(H ** 2) + np.sum(np.sin(np.stack(ys)))


def _args(n=5, dtype=np.float64):
    return (RNG.normal(size=n).astype(dtype), (RNG.normal(size=(n, n)) * 0.5).astype(dtype),
            RNG.normal(size=n).astype(dtype))


CASES = [(b, r, c) for b in BACKENDS for r, c in ((False, False), (True, False), (False, True))]


@pytest.mark.parametrize("backend,reverse,checkpoint",  # the CUDA simulator: one case (slow)
                         CASES + ([(CUDA, False, False)] if CUDA else []))
def test_weight_gradient_matches_unrolled(backend, reverse, checkpoint):
    args = _args()
    kw = {"reverse": reverse, "checkpoint": checkpoint}
    v, g = tj.value_and_grad(lambda *a: euler(*a, **kw), argnums=(0, 1, 2),
                             backend=backend)(*args)
    vu, gu = tj.value_and_grad(euler_unrolled, argnums=(0, 1, 2),
                               backend="interpreter")(*args)
    np.testing.assert_allclose(v, vu, rtol=1e-12)
    for a, b in zip(g, gu):
        np.testing.assert_allclose(a, b, rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("backend", ALL)
def test_matmul_factors_ys_and_invariant_factor(backend):
    H0, W = RNG.normal(size=(4, 3)), RNG.normal(size=(4, 4)) * 0.5
    xs, U = RNG.normal(size=(5, 2)), RNG.normal(size=(4, 2))
    g = tj.grad(batched, argnums=(0, 1, 2, 3), backend=backend)(H0, W, xs, U)
    gu = tj.grad(batched_unrolled, argnums=(0, 1, 2, 3), backend="interpreter")(H0, W, xs, U)
    for a, b in zip(g, gu):
        np.testing.assert_allclose(a, b, rtol=1e-10, atol=1e-12)


def test_weight_gradient_finite_differences_and_float32():
    args = _args(4)
    tj.check_grads(euler, args, backend="interpreter")
    tj.check_grads(batched, (RNG.normal(size=(3, 2)), RNG.normal(size=(3, 3)) * 0.5,
                             RNG.normal(size=(4, 2)), RNG.normal(size=(3, 2))),
                   backend="interpreter")
    a32 = _args(8, np.float32)
    g = tj.grad(euler, argnums=(0, 1), backend="numba")(*a32)
    gu = tj.grad(euler_unrolled, argnums=(0, 1), backend="interpreter")(*_args_like(a32))
    for x, y in zip(g, gu):
        assert x.dtype == np.float32
        np.testing.assert_allclose(x, y, rtol=2e-4, atol=1e-5)


def _args_like(args):
    return tuple(a.astype(np.float64) for a in args)


def test_zero_steps():
    args = _args()
    g = tj.grad(lambda *a: euler(*a, steps=0), argnums=(1,), backend="numba")(*args)[0]
    np.testing.assert_array_equal(g, np.zeros_like(args[1]))


def test_backward_loop_has_no_per_step_outer_product():
    """The weight gradient is one matmul after the backward scan; the scan carries only the
    state's cotangent (no n x n accumulator)."""
    n = 5
    graph = tj.make_ir(tj.grad(euler, argnums=(0, 1)))(*_args(n))
    scans = [e for e in graph.eqns if e.prim.name == "scan"]
    back = scans[-1]
    assert back.params["reverse"] and back.params["n_carry"] == 1
    body = back.params["body"]
    assert all(o.aval.shape != (n, n) for e in body.eqns for o in e.outputs)
    after = graph.eqns[graph.eqns.index(back) + 1:]
    assert any(e.prim.name == "matmul" and e.outputs[0].aval.shape == (n, n) for e in after)


def test_numba_loop_allocates_nothing_per_step_and_is_cached():
    """The generated loop allocates its buffers before the loop, writes ys in place, and is
    the same (disk-cached) module at any trip count."""
    from tracejit.backends import get_backend
    from tracejit.backends.numba_loops import compiled_scan
    from tracejit.dispatch import lower
    from tracejit.passes import simplify
    be = get_backend("numba")
    runs = []
    for steps in (3, 7):
        graph = tj.make_ir(tj.grad(lambda h, W, b, s=steps: euler(h, W, b, s),
                                   argnums=(0, 1)))(*_args())
        for eqn in [e for e in graph.eqns if e.prim.name == "scan"]:
            plan, _ = lower(simplify(eqn.params["body"]), be)
            run = compiled_scan(eqn, plan, be)
            assert run is not None
            loop = run.source.split("for i in range(length):")[1]
            assert "np.empty" not in loop and "np.copy" not in loop, run.source
            assert "cache=True" in run.source and "length" not in run.source.split(
                "def loop")[0]
            runs.append(run.source)
    assert runs[:2] == runs[2:]  # another trip count: the same module
    # the loop never writes the caller's arrays: the carries are its own buffers
    x = _args()
    keep = [a.copy() for a in x]
    tj.grad(euler, argnums=(0, 1), backend="numba")(*x)
    for a, b in zip(x, keep):
        np.testing.assert_array_equal(a, b)


def test_numba_loop_runs_large_kernels_in_parallel():
    """A body kernel over at least SERIAL_BELOW elements is the kernel's parallel variant
    inside loop_par (small ones, and bodies that call BLAS, stay serial: no loop_par). A first
    call runs loop_ser (the serial kernels' statements inlined: fast to compile); loop_par
    compiles in the background after it and takes over: the same numbers, to the bit."""
    from tracejit.backends import get_backend, kernel_cache
    from tracejit.backends.numba_cpu import SERIAL_BELOW
    from tracejit.backends.numba_loops import compiled_scan
    from tracejit.dispatch import lower
    from tracejit.passes import simplify
    be = get_backend("numba")
    n = 256
    assert n * n >= SERIAL_BELOW > 16 * 16
    rng = np.random.default_rng(3)
    for size in (n, 16):
        h = rng.standard_normal(size)
        W = rng.standard_normal((size, size)) / size
        b = rng.standard_normal(size)
        graph = tj.make_ir(lambda h, W, b: euler(h, W, b, 4))(h, W, b)
        eqn = next(e for e in graph.eqns if e.prim.name == "scan")
        plan, _ = lower(simplify(eqn.params["body"]), be)
        run = compiled_scan(eqn, plan, be)
        ser = run.source.split("def loop_ser")[1].split("def loop_par")[0]
        assert "S0(" not in ser and re.search(r"\bv\d+_0 = ", ser), run.source  # inlined
        # parameters given a name or a size are that name or size, not variables of their own
        assert not re.search(r"\b[no]\d+_0 = ", ser), run.source  # sizes, outputs
        assert ("_par as P0" in run.source) == ("def loop_par" in run.source) == (size == n)
        args = [np.asarray(a, v.aval.dtype) for a, v in zip([W, b, h], eqn.inputs)]
        want = eqn.prim.impl(*args, **eqn.params)
        with kernel_cache.first_call():  # parallel variants compile after it
            first = run(*args)
            assert run.loop.fn is run.loop.ser
        kernel_cache.wait_compiled()
        assert run.loop.fn is (run.loop.par if size == n else run.loop.ser)
        later = run(*args)
        for a, b2, c in zip(first, later, want):
            np.testing.assert_array_equal(a, b2)
            np.testing.assert_allclose(np.reshape(a, np.shape(c)), c, rtol=1e-12)
        got = tj.jit(lambda h, W, b: euler(h, W, b, 4), backend="numba")(h, W, b)
        want = tj.jit(lambda h, W, b: euler(h, W, b, 4), backend="interpreter")(h, W, b)
        np.testing.assert_allclose(got, want, rtol=1e-12)


_WARM_PROCESS = """
import numpy as np
import tracejit as tj
from test_loops_perf import _tiered_scan
from tracejit.backends import kernel_cache
run, args = _tiered_scan(256)
with kernel_cache.first_call():
    run(*args)
print(run.loop.fn is run.loop.par, len(kernel_cache._TIER_UPS))
"""


def _tiered_scan(n):
    """W11's forward scan at size n, as numba_loops compiles it, and its arguments."""
    from tracejit.backends import get_backend
    from tracejit.backends.numba_loops import compiled_scan
    from tracejit.dispatch import lower
    from tracejit.passes import simplify
    be = get_backend("numba")
    h, W, b = np.linspace(-1, 1, n), np.eye(n) * 0.5, np.full(n, 0.1)
    graph = tj.make_ir(lambda h, W, b: euler(h, W, b, 4))(h, W, b)
    eqn = next(e for e in graph.eqns if e.prim.name == "scan")
    plan, _ = lower(simplify(eqn.params["body"]), be)
    return compiled_scan(eqn, plan, be), [W, b, h]


def test_numba_loop_in_a_new_process_loads_the_parallel_loop():
    """Once loop_par is compiled (in the background, written to the disk cache), a new
    process's first call runs it at once: nothing compiles, nothing left in the background."""
    import subprocess
    import sys

    from tracejit.backends import kernel_cache
    run, args = _tiered_scan(256)
    assert "def loop_par" in run.source
    run(*args)
    kernel_cache.wait_compiled()
    assert run.loop.fn is run.loop.par
    here = os.path.dirname(os.path.abspath(__file__))
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([os.path.dirname(here), here]))
    out = subprocess.run([sys.executable, "-c", _WARM_PROCESS], capture_output=True,
                         text=True, env=env, timeout=300, check=False)
    assert out.stdout.split() == ["True", "0"], out.stdout + out.stderr


def test_numba_loop_carries_that_alias():
    """Carries the body swaps, duplicates or leaves unchanged, ys that are a carry or a
    constant: each carry keeps its own buffer (the loop copies where it cannot swap)."""
    from tracejit.backends import get_backend
    from tracejit.backends.numba_loops import compiled_scan
    from tracejit.dispatch import lower
    from tracejit.passes import simplify

    def f(a, b, xs):
        def body(c, x):
            a, b, k, _ = c
            h = np.tanh(a * x)
            return (b, h, k, h * 2.0), (a, np.float64(3.0), np.sum(h))
        return tj.scan(body, (a, b, np.float64(1.5), b), xs)
    a, b, xs = RNG.normal(size=3), RNG.normal(size=3), RNG.normal(size=(4, 3))
    graph = tj.make_ir(f)(a, b, xs)
    (eqn,) = [e for e in graph.eqns if e.prim.name == "scan"]
    be = get_backend("numba")
    plan, _ = lower(simplify(eqn.params["body"]), be)
    run = compiled_scan(eqn, plan, be)
    assert run is not None
    args = [a, b, 1.5, b, xs]
    args = [np.asarray(x, v.aval.dtype) for x, v in zip(args, eqn.inputs)]
    want = eqn.prim.impl(*args, **eqn.params)
    got = run(*args)
    for x, y in zip(got, want):
        np.testing.assert_allclose(np.reshape(x, np.shape(y)), y, rtol=1e-12)


def test_benchmark_w11_loss_matches_numpy_by_hand():
    """The runner's W11/W12 loss (benchmarks/workloads_loops.py, F.scan) on small data: value
    and gradients of tracejit equal NumPy by hand."""
    from benchmarks.workloads import WORKLOADS, tracejit_loss
    from benchmarks.workloads_loops import data
    wl = WORKLOADS["W11"]
    f, argnums = tracejit_loss(wl)
    d = data(8, 5)
    v, g = tj.jit_grad(f, argnums=argnums)(*wl.ordered(d))
    rv, rg = wl.numpy(*wl.ordered(d))
    np.testing.assert_allclose(v, rv, rtol=1e-5)
    for a, b in zip(g, rg):
        np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-6)


def test_per_step_vector_is_stored_once_per_step():
    """The backward body's d_t (a y of the loop, stacked for the weight gradient) is computed
    by a kernel over its own n elements, not recomputed and stored again in each row of the
    matrix-vector kernel that reads it (fusion._try_grow keeps stored values unwidened)."""
    from tracejit.backends import get_backend
    from tracejit.dispatch import lower
    from tracejit.passes import simplify
    n = 6
    graph = tj.make_ir(tj.grad(euler, argnums=(0, 1)))(*_args(n))
    back = [e for e in graph.eqns if e.prim.name == "scan"][-1]
    body = back.params["body"]
    plan, _ = lower(simplify(body), get_backend("numba"))
    ys = {o.id for o in plan.graph.outputs[back.params["n_carry"]:]}
    (k,) = [it for it in plan.kernels if any(v.id in ys for v in it.outputs)]
    assert int(np.prod(k.space)) == n, plan.describe()


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_transposed_loop_constant_is_copied_in_tiles(dtype):
    """The backward loop's W.T (a large transposed constant) is made C-ordered by a parallel
    tiled copy; sizes that are not multiples of the tile, and the gradient it feeds."""
    from tracejit.backends.numba_loops import _contiguous
    rng = np.random.default_rng(4)
    for shape in ((300, 257), (64, 1024), (1030, 70)):
        W = rng.standard_normal(shape).astype(dtype)
        got = _contiguous(W.T)
        assert got.flags.c_contiguous and got.dtype == dtype
        np.testing.assert_array_equal(got, W.T)
    n = 260  # n * n >= 65536: the tiled copy
    h, b = rng.standard_normal(n).astype(dtype), rng.standard_normal(n).astype(dtype)
    W = (rng.standard_normal((n, n)) / n).astype(dtype)
    args = (h, W, b)
    got = tj.grad(lambda h, W, b: np.sum(euler(h, W, b, 3) ** 2), argnums=(0, 1))(*args)
    want = tj.grad(lambda h, W, b: np.sum(euler(h, W, b, 3) ** 2), argnums=(0, 1),
                   backend="interpreter")(*args)
    for g, w in zip(got, want):
        tol = 2e-5 if dtype == np.float32 else 1e-11
        np.testing.assert_allclose(g, w, rtol=tol, atol=tol * np.abs(w).max())


def test_loop_module_helpers():
    """`view` (a loop module's reshape) is NumPy's reshape of a C-contiguous array, a view;
    other layouts are a typing error, as for Numba's reshape. `_inlined` declines a kernel
    that returns before its end."""
    from numba import njit
    from numba.core.errors import TypingError
    from tracejit.backends.numba_loops import _inlined, view

    @njit
    def views(a):
        return view(a, (3, 4)), view(a[2:8], (2, np.int32(3))), view(a[4:5], (1, 1, 1))

    a = np.arange(12.0)
    wants = (a.reshape(3, 4), a[2:8].reshape(2, 3), a[4:5].reshape(1, 1, 1))
    for got, want in zip(views(a), wants):
        np.testing.assert_array_equal(got, want)
        assert got.flags.c_contiguous and np.shares_memory(got, a)
    got = views(a)[0]
    got[1, 0] = -1.0  # a view: writes reach the array
    assert a[4] == -1.0
    with pytest.raises(TypingError):
        njit(lambda b: view(b[:, 1:], (4,)))(np.zeros((4, 2)))

    class Early:
        serial_source = "def k(n0, a0):\n    if n0 == 0:\n        return 0\n    return 0\n"
        module = np
    assert _inlined(Early, 0, ["3", "x"], []) is None
