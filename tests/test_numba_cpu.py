"""The Numba CPU backend's promises: compiled once across sizes, cached on disk for a new
process, a corrupted cache rebuilt, correct under concurrent first calls, buffers reused."""
import os
import subprocess
import sys
import textwrap
import threading

import numpy as np
import pytest

import tracejit as tj
from benchmarks.workloads import WORKLOADS, tracejit_loss
from tracejit.backends import kernel_cache

# the benchmark workloads' losses, defined once in benchmarks/workloads.py
w1, w3, w5 = (tracejit_loss(WORKLOADS[key])[0] for key in ("W1", "W3", "W5"))
ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def test_new_sizes_compile_nothing_new():
    f = tj.jit_grad(w1)
    f(np.ones(1000, np.float32))
    before = set(kernel_cache.MODULES)
    value, g = f(np.linspace(-1, 1, 2000, dtype=np.float32))
    assert set(kernel_cache.MODULES) == before
    ref_v, ref_g = tj.jit_grad(w1, backend="interpreter")(np.linspace(-1, 1, 2000,
                                                                      dtype=np.float32))
    np.testing.assert_allclose(g, ref_g, rtol=1e-5, atol=1e-6)


def test_kernel_source_has_no_sizes():
    f = tj.jit_grad(w1)
    report = tj.explain(f)(np.ones(12345, np.float32))
    kernel_part = report.split("--- k_")[1]
    assert "12345" not in kernel_part and "prange" in kernel_part


def _run_child(cache_dir, code):
    env = dict(os.environ, TRACEJIT_CACHE_DIR=str(cache_dir), NUMBA_DEBUG_CACHE="1",
               PYTHONPATH=os.pathsep.join([ROOT, os.environ.get("PYTHONPATH", "")]))
    return subprocess.run([sys.executable, "-c", textwrap.dedent(code)], env=env,
                          capture_output=True, text=True, timeout=300)


CHILD = """
    import numpy as np, tracejit as tj
    from benchmarks.workloads import WORKLOADS, tracejit_loss
    f = tj.jit_grad(tracejit_loss(WORKLOADS["W1"])[0])
    v, g = f(np.linspace(-1, 1, 100, dtype=np.float32))
    print("VALUE", repr(float(v)), "GRAD", repr(float(g @ np.linspace(0, 1, 100))))
"""


def _printed(out) -> tuple[float, float]:
    """The (value, gradient projection) a CHILD printed."""
    words = out.stdout.split("VALUE")[1].split()
    return float(words[0]), float(words[2])


def _expected() -> tuple[float, float]:
    """What CHILD must print: W1's value and gradient by the interpreter (float32)."""
    v, g = tj.jit_grad(w1, backend="interpreter")(np.linspace(-1, 1, 100, dtype=np.float32))
    return float(v), float(g @ np.linspace(0, 1, 100))


def test_disk_cache_is_used_by_a_new_process(tmp_path):
    first = _run_child(tmp_path, CHILD)
    assert first.returncode == 0, first.stderr
    second = _run_child(tmp_path, CHILD)
    assert second.returncode == 0, second.stderr
    assert "data loaded from" in second.stdout + second.stderr  # Numba read the cache
    assert _printed(first) == _printed(second)  # the cached code computes the same bits
    np.testing.assert_allclose(_printed(first), _expected(), rtol=1e-5)


def test_corrupted_cache_is_rebuilt(tmp_path):
    first = _run_child(tmp_path, CHILD)
    assert first.returncode == 0, first.stderr
    cache = tmp_path / "kernels" / "__pycache__"
    files = [p for p in cache.iterdir() if p.suffix in (".nbc", ".nbi")]
    assert files
    for p in files:
        p.write_bytes(b"garbage" * 10)
    for p in (tmp_path / "kernels").glob("*.py"):  # a truncated kernel source too
        p.write_text(p.read_text()[:40])
    again = _run_child(tmp_path, CHILD)
    assert again.returncode == 0, again.stderr
    assert _printed(again) == _printed(first)  # rebuilt, not a garbage result
    np.testing.assert_allclose(_printed(again), _expected(), rtol=1e-5)


def test_threads_compiling_and_calling_concurrently():
    f = tj.jit_grad(lambda x: np.sum(np.exp(np.sin(x)) * x))
    xs = [np.linspace(-2, 2, 500 + 37 * i) for i in range(8)]
    refs = [tj.jit_grad(lambda x: np.sum(np.exp(np.sin(x)) * x), backend="interpreter")(x)
            for x in xs]
    results, errors = [None] * 8, []

    def work(i):
        try:
            for _ in range(5):
                results[i] = f(xs[i])
        except Exception as e:  # noqa: BLE001  (reported below)
            errors.append(e)

    threads = [threading.Thread(target=work, args=(i,)) for i in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors, errors
    for (v, g), (rv, rg) in zip(results, refs):
        np.testing.assert_allclose(v, rv, rtol=1e-10)
        np.testing.assert_allclose(g, rg, rtol=1e-10)


def test_reuse_buffers_returns_the_same_arrays():
    f = tj.jit_grad(w1, reuse_buffers=True)
    x = np.linspace(-1, 1, 300, dtype=np.float32)
    _, g1 = f(x)
    _, g2 = f(x * 2)
    assert g1 is g2  # overwritten in place: the opt-in contract
    np.testing.assert_allclose(g2, tj.jit_grad(w1)(x * 2)[1], rtol=1e-6)


@pytest.mark.parametrize("n", [10, 1 << 16])  # serial and parallel variants
def test_serial_and_parallel_variants_agree(n):
    x = np.linspace(-3, 3, n)
    v, g = tj.jit_grad(w1)(x)
    rv, rg = tj.jit_grad(w1, backend="interpreter")(x)
    np.testing.assert_allclose(v, rv, rtol=1e-10)
    np.testing.assert_allclose(g, rg, rtol=1e-10, atol=1e-14)


def test_nan_and_inf_propagate_in_compiled_code():
    f = tj.jit(lambda a, b: (a / b, np.maximum(a, b), np.log(a)))
    a = np.array([1.0, np.nan, -1.0, 0.0])
    b = np.array([0.0, 0.0, 0.0, 0.0])
    got = f(a, b)
    with np.errstate(all="ignore"):
        want = (a / b, np.maximum(a, b), np.log(a))
    for x, y in zip(got, want):
        np.testing.assert_array_equal(x, y)


def test_plans_whose_products_openblas_threads_run_serial_loops():
    # a Numba parallel region right after OpenBLAS fights its threads (W5: 16 ms vs 3.0 ms);
    # a batched product goes to NumPy's matmul (OpenBLAS threads): that plan's loops are serial
    r = np.random.default_rng(0)
    A, B = r.standard_normal((4, 256, 128)), r.standard_normal((4, 128, 64))
    exe = tj.jit_grad(lambda A, B: np.sum(np.tanh(A @ B) ** 2)).entry_for(A, B).exe
    assert exe.kernels and not any(k.parallel for k in exe.kernels)
    big = tj.jit_grad(w1).entry_for(np.ones(1 << 16)).exe
    assert all(k.parallel for k in big.kernels)  # without BLAS, large loops stay parallel


def test_plans_whose_products_run_on_our_threads_keep_parallel_loops():
    # 2-D float products run on Numba's threads (backends/blas.py): nothing spins after them
    from tracejit.backends import blas
    if not blas.ready():
        pytest.skip("scipy or threadpoolctl missing: products stay with NumPy")
    r = np.random.default_rng(0)
    args = [r.standard_normal(s) for s in [(256, 10), (1024, 256), (256, 256), (1024, 10)]]
    exe = tj.jit_grad(w5).entry_for(*args).exe
    assert any(k.parallel for k in exe.kernels)  # tanh(X @ W1) over 1024 x 256
    for got, want in zip(tj.jit_grad(w5)(*args), tj.jit_grad(w5, backend="interpreter")(*args)):
        np.testing.assert_allclose(got, want, rtol=1e-10)


@pytest.mark.parametrize("cols", [1, 7, 8, 13, 64])  # below, at and around LANES
def test_row_reductions_keep_nan_and_order_across_lanes(cols):
    r = np.random.default_rng(cols)
    L = r.standard_normal((5, cols))
    L[1, cols // 2] = np.nan     # NaN anywhere in a row poisons that row, as in NumPy
    L[2, cols - 1] = np.inf
    L[3, :] = -np.inf
    f = tj.jit(lambda a: (np.max(a, axis=1), np.min(a, axis=1), np.prod(a, axis=1),
                          np.max(a * 2, axis=1) - np.sum(a, axis=1)))
    with np.errstate(all="ignore"):
        want = (L.max(1), L.min(1), L.prod(1), (L * 2).max(1) - L.sum(1))
    for got, ref in zip(f(L), want):
        np.testing.assert_allclose(got, ref, rtol=1e-12)


def test_row_value_stashed_in_the_output_row_is_read_back_not_recomputed():
    r = np.random.default_rng(1)
    L, Y = r.standard_normal((6, 37)), np.eye(37)[r.integers(0, 37, 6)]
    exe = tj.jit_grad(w3).entry_for(L, Y).exe
    src = exe.kernels[0].source
    assert src.count("vm.exp(") == 2  # once per variant: the last pass reads exp(z) back
    for got, want in zip(tj.jit_grad(w3)(L, Y),
                         tj.jit_grad(w3, backend="interpreter")(L, Y)):
        np.testing.assert_allclose(got, want, rtol=1e-12)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_costly_row_values_after_row_reductions_run_in_blocks(dtype):
    # tanh(W @ h + 2b) per row: a block of rows' sums in one loop, their tanh in a second
    # loop that vectorizes (CpuKernelSource.second_row_loop); 70 rows: not a multiple of the block;
    # 2b is computed before the sums and again in the second loop; two sums in one pass
    r = np.random.default_rng(3)
    W, V = (r.standard_normal((70, 33)).astype(dtype) for _ in range(2))
    h, b = r.standard_normal(33).astype(dtype), r.standard_normal(70).astype(dtype)

    def f(W, V, h, b):
        return np.tanh(W @ h + b * 2) * b + np.exp(V @ h * 0.1)
    exe = tj.jit(f).entry_for(W, V, h, b).exe
    src = exe.kernels[0].source
    assert src.count("for ib in ") == 2 and src.count("vm.tanh(") == 2
    # per variant, one sum waits in the output's row (read back before it is written), the
    # other in a buffer; a single sum needs no buffer (no np.empty to compile)
    assert src.count("= np.empty(n0") == 2
    single = tj.jit(lambda W, h, b: np.tanh(W @ h + b)).entry_for(W, h, b).exe
    assert "for ib in " in single.kernels[0].source
    assert "np.empty" not in single.kernels[0].source
    tol = 2e-6 if dtype == np.float32 else 1e-13
    np.testing.assert_allclose(tj.jit(f)(W, V, h, b), tj.jit(f, backend="interpreter")(
        W, V, h, b), rtol=tol, atol=tol)
    if dtype == np.float64:
        tj.check_grads(lambda W, V, h, b: np.sum(f(W, V, h, b) ** 2), (W, V, h, b),
                       argnums=(0, 1, 2, 3))


def test_multiple_inner_axes_and_row_prod_gradient():
    r = np.random.default_rng(2)
    x = r.uniform(0.5, 1.5, (3, 4, 11))
    f = lambda a: np.sum(np.prod(a, axis=(1, 2)) * np.max(a, axis=(1, 2)))
    for got, want in zip(tj.jit_grad(f)(x), tj.jit_grad(f, backend="interpreter")(x)):
        np.testing.assert_allclose(got, want, rtol=1e-10)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_sin_cos_beyond_the_fast_range_fall_back_to_libm(dtype):
    f = lambda x: np.sum(np.sin(x) * np.cos(2 * x))
    small = np.linspace(-3, 3, 50).astype(dtype)
    big = np.array([1.0, 1e4, 3e7, -1e30, np.nan, np.inf], dtype)
    g = tj.jit_grad(f)
    for x in (small, big, small):  # fast path, exact rerun, fast path again
        got, want = g(x), tj.jit_grad(f, backend="interpreter")(x)
        np.testing.assert_allclose(got[0], want[0], rtol=1e-5, atol=1e-5)
        np.testing.assert_allclose(got[1], want[1], rtol=1e-5, atol=1e-6)
    assert g.entry_for(big).exe.rerun.exe is not None  # the libm plan, built on need


def test_range_guard_is_one_more_accumulator_in_the_same_kernel():
    # W1 calls sin: the count of arguments beyond vecmath's range joins W1's one kernel
    exe = tj.jit_grad(w1).entry_for(np.linspace(-3, 3, 50, dtype=np.float32)).exe
    assert len(exe.kernels) == 1 and exe.rerun is not None and exe.rerun.exe is None
    assert "    if t" in exe.driver_source and "return _rerun(x0)" in exe.driver_source


def test_no_reassociation_outside_reductions():
    # with 'reassoc' on every instruction LLVM would fold x*2 - x into x (inf - inf is NaN)
    # and (x + 1e20) - 1e20 into x
    f = tj.jit(lambda x: (x * 2 - x, (x + 1e20) - 1e20))
    x = np.array([np.inf, -np.inf, 1.0])
    with np.errstate(invalid="ignore"):
        for got, want in zip(f(x), (x * 2 - x, (x + 1e20) - 1e20)):
            np.testing.assert_array_equal(got, want)


TIER_CHILD = """
    import numpy as np, tracejit as tj
    from benchmarks.workloads import WORKLOADS, tracejit_loss
    f = tj.jit_grad(tracejit_loss(WORKLOADS["W1"])[0])
    x = np.linspace(-1, 1, 1 << 16, dtype=np.float32)
    v1, g1 = f(x)
    k = f.entry_for(x).exe.kernels[0]
    print("FIRST", "parallel" if k.fn is k.par else "serial")
    tj.wait_compiled()
    v2, g2 = f(x)
    print("THEN", "parallel" if k.fn is k.par else "serial")
    assert abs(v1 - v2) <= 1e-6 * abs(v1) and np.allclose(g1, g2, rtol=1e-6, atol=1e-7)
"""


def test_tiered_compile_serial_first_then_parallel_and_cached(tmp_path):
    # a cold cache: the first call runs the serial loop while the parallel one compiles;
    # a new process with the cache warm loads the parallel loop for its first call
    cold = _run_child(tmp_path, TIER_CHILD)
    assert cold.returncode == 0, cold.stderr
    assert "FIRST serial" in cold.stdout and "THEN parallel" in cold.stdout
    warm = _run_child(tmp_path, TIER_CHILD)
    assert warm.returncode == 0, warm.stderr
    assert "FIRST parallel" in warm.stdout and "THEN parallel" in warm.stdout


def test_integer_and_bool_max_min():
    i = np.arange(12).reshape(3, 4) - 5
    b = np.array([[True, False], [False, False]])
    f = lambda i, b: (np.max(i), np.min(i, axis=1), np.maximum(i, 2), np.max(b, axis=1),
                      np.min(b))
    for got, want in zip(tj.jit(f)(i, b), tj.jit(f, backend="interpreter")(i, b)):
        np.testing.assert_array_equal(got, want)


def _ulps(got, want) -> float:
    """|got - want| in float32 ulps of want (want: the float64 result)."""
    want = np.asarray(want, np.float64)
    return float(np.max(np.abs(np.asarray(got, np.float64) - want) /
                        np.spacing(np.abs(want).astype(np.float32))))


N_ACC = 3_000_017
C = np.full(N_ACC, 0.1, np.float32)  # a constant: float32 running sums drift the most
ALT = (0.1 + 0.01 * (-1) ** np.arange(N_ACC)).astype(np.float32)
FLOAT32_SUMS = {
    "sum": (lambda x: np.sum(x), (C,)),
    "mean": (lambda x: np.mean(x), (C,)),
    "var": (lambda x: np.var(x), (ALT,)),
    "dot": (lambda x, y: np.sum(x * y), (C, np.ones(N_ACC, np.float32))),
    "row sums": (lambda x: np.sum(x, axis=1), (C.reshape(1, -1)[:, :3_000_000]
                                               .reshape(3, -1),)),
    # the sum (the first result) is checked: its pass over the row also takes the max
    "row sums in a max pass": (lambda x: (np.sum(x, axis=1), np.max(x, axis=1)),
                               (C[:3_000_000].reshape(3, -1),)),
    "sum in a row pass": (lambda x: np.sum(x * x) + np.sum(np.max(x, axis=1)),
                          (C[:3_000_000].reshape(3, -1),)),
    "value of a gradient call": (lambda x: tj.value_and_grad(lambda x: np.sum(x * x))(x)[0],
                                 (C,)),
}


@pytest.mark.parametrize("name", sorted(FLOAT32_SUMS))
def test_float32_sums_are_as_accurate_as_pairwise(name):
    """float32 sums add blocks of float32 lanes into float64 partials: within 2 ulps of the
    float64 result, as NumPy's pairwise sum (a float32 partial per chunk was 68 ulps off
    on 3e6 elements of 0.1, a float32 row sum 3 ulps on rows of 1e6)."""
    f, args = FLOAT32_SUMS[name]
    got = tj.jit(f)(*args) if name != "value of a gradient call" else f(*args)
    want = FLOAT32_SUMS[name][0](*[a.astype(np.float64) for a in args]) \
        if name != "value of a gradient call" else np.sum(C.astype(np.float64) ** 2)
    if isinstance(got, tuple):
        got, want = got[0], want[0]
    assert np.asarray(got).dtype == np.float32
    # mean and var multiply by a float32 1/n afterwards: two more roundings
    assert _ulps(got, want) <= (4 if name in ("mean", "var") else 2)


def test_float32_sum_results_do_not_depend_on_threads_or_variant():
    """The chunks and blocks are fixed by the size: the serial variant, the parallel one
    and any thread count give the same bits."""
    import numba
    f = lambda x, y: (np.sum(x * y), np.mean(np.tanh(x)), np.sum(x, axis=1))
    rng = np.random.default_rng(3)
    x, y = (rng.standard_normal((4, 250_001)).astype(np.float32) for _ in range(2))
    g = tj.jit(f)
    first = g(x, y)
    exe = g.entry_for(x, y).exe
    tj.wait_compiled()
    assert all(k.fn is k.par for k in exe.kernels)
    results = [first]
    threads = numba.get_num_threads()
    try:
        for t in range(1, threads + 1):
            numba.set_num_threads(t)
            results.append(g(x, y))
    finally:
        numba.set_num_threads(threads)
    for r in results[1:]:
        for a, b in zip(r, results[0]):
            np.testing.assert_array_equal(a, b)


HANG_CHILD = """
    import numpy as np, tracejit as tj
    def f(x, s):
        e = np.exp(np.tanh(x))
        w = np.where(e > s + 0.25, s, e)
        return np.sum(np.cos(w)) + np.sum(1.0 / (1.0 + x * x)) * 0.5 + np.sum(e) * 0.75 + s
    x, s = np.random.default_rng(0).uniform(-2, 2, (1, 3)), np.float64(0.3)
    v, (gx, gs) = tj.value_and_grad(f, argnums=(0, 1))(x, s)
    w, (wx, ws) = tj.value_and_grad(f, argnums=(0, 1), backend="interpreter")(x, s)
    assert np.allclose(v, w, rtol=1e-12) and np.allclose(gx, wx, rtol=1e-12)
    assert np.allclose(gs, ws, rtol=1e-12)
    print("OK")
"""


def test_kernel_over_a_size1_axis_compiles_quickly(tmp_path):
    """Found by the long random-program run: inputs of shape (1, 3) made a loop over the
    size-1 axis whose body was all invariant, and LLVM's loop vectorizer spent minutes on
    it (a hang). Now no loop runs over an axis no value runs along."""
    out = _run_child(tmp_path, HANG_CHILD)  # a fresh cache: the kernels compile
    assert out.returncode == 0 and "OK" in out.stdout, out.stderr


def test_values_are_computed_in_the_loop_of_their_axes():
    """A value that runs along the outer axis only (tanh of an (n, 1) input) is computed
    once per row, before the loop over the other axis, not once per element."""
    f = lambda x, y: np.sum(np.cos(np.tanh(x) * y))  # noqa: E731
    x = np.linspace(-1, 1, 6).reshape(6, 1)
    y = np.linspace(0, 2, 24).reshape(6, 4)
    g = tj.value_and_grad(f, argnums=(0, 1))
    src = tj.explain(g)(x, y)
    kernel = src[src.index("_ser("):]
    assert kernel.index("vm.tanh(a0[i0, 0])") < kernel.index("for j1 in range(n1)")
    src1 = tj.explain(g)(x.reshape(1, 6), y.reshape(4, 6)[:1])
    body = src1[src1.index("_ser("):]
    assert "for i0 in range(n0)" not in body and "for j0 in range(n0)" not in body
    want = tj.value_and_grad(f, argnums=(0, 1), backend="interpreter")(x, y)
    got = g(x, y)
    np.testing.assert_allclose(got[0], want[0], rtol=1e-12)
    for a, b in zip(got[1], want[1]):
        np.testing.assert_allclose(a, b, rtol=1e-12, atol=1e-14)
