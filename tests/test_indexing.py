"""Integer-array indexing, functional updates and boolean masks on traced arrays: forward
against NumPy (float32 and float64), gradients against finite differences, on every backend
(the CUDA simulator in test_numba_cuda's style where cheap), bounds errors at the user's line,
determinism of scatter-add with repeated indices."""
from __future__ import annotations

import numpy as np
import pytest
from helpers import assert_same, line_of

import tracejit as tj
from tracejit.errors import OutOfBoundsError, UnsupportedError
from tracejit.tracing import is_tracer

IDX = np.array([0, 3, -1, 3])

# f(x, i): x of shape (5, 6, 7), i = IDX (traced, or a constant in the "const" variant)
GATHERS = {
    "x[i]": lambda x, i: x[i],
    "x[:, i]": lambda x, i: x[:, i],
    "x[i, :, i] (non-adjacent: B first)": lambda x, i: x[i, :, i],
    "x[1:, i, ::2]": lambda x, i: x[1:, i, ::2],
    "x[i[:, None], i] (broadcast)": lambda x, i: x[i[:, None], i],
    "x[..., i]": lambda x, i: x[..., i],
    "x[None, i, 2] (int is advanced)": lambda x, i: x[None, i, 2],
    "x[arange, i] (row gather)": lambda x, i: x[np.arange(4), i],
    "x[i, arange] (row gather)": lambda x, i: x[i, np.arange(6)[:4] + 2],
    "x[-2, i[::-1]]": lambda x, i: x[-2, i[::-1]],
    "x[i, None, i]": lambda x, i: x[i, None, i],
    "x[[0, 2], 1]": lambda x, i: x[[0, 2], 1],
    "x[bool const]": lambda x, i: x[np.array([True, False, True, False, True])],
    "x[i, i, i]": lambda x, i: x[i, i, i],
    "np.take axis": lambda x, i: np.take(x, i, axis=1),
    "np.take flat": lambda x, i: np.take(x, i),
    "np.take_along_axis": lambda x, i: np.take_along_axis(x, i[None, :, None], 1),
    "np.take_along_axis 0": lambda x, i: np.take_along_axis(x, np.abs(IDX)[:, None, None], 0),
}


@pytest.mark.parametrize("dtype", [np.float32, np.float64], ids=["f32", "f64"])
@pytest.mark.parametrize("traced", [True, False], ids=["traced", "const"])
@pytest.mark.parametrize("name", sorted(GATHERS))
def test_gather_forward_and_grad(name, traced, dtype, backend):
    f = GATHERS[name]
    x = np.random.default_rng(1).standard_normal((5, 6, 7)).astype(dtype)
    fn, args = (f, (x, IDX)) if traced else ((lambda x: f(x, IDX)), (x,))
    assert_same(tj.jit(fn, backend=backend)(*args), f(x, IDX))
    if dtype == np.float64:
        w = np.random.default_rng(2).standard_normal(f(x, IDX).shape)
        tj.check_grads(lambda x, *a: np.sum(np.sin(fn(x, *a)) * w), list(args), argnums=(0,),
                       backend=backend)


def _np_update(x, idx, v, mode):
    x = x.copy()
    if mode == "set":
        x[idx] = v
    else:
        {"add": np.add, "multiply": np.multiply, "min": np.minimum,
         "max": np.maximum}[mode].at(x, idx, v)
    return x


UPDATE_INDEXES = {"rows": (IDX, (4, 6)), "cols": ((slice(None), IDX), (5, 4)),
                  "pairs": ((IDX, IDX + 1), (4,)), "slice": ((slice(1, 4), 2), (3,)),
                  "scalar": ((2, -1), ())}


@pytest.mark.parametrize("mode", ["set", "add", "multiply", "min", "max"])
@pytest.mark.parametrize("where", sorted(UPDATE_INDEXES))
def test_at_updates(where, mode, backend):
    index, vshape = UPDATE_INDEXES[where]
    rng = np.random.default_rng(3)
    x, v = rng.standard_normal((5, 6)), rng.standard_normal(vshape)

    def f(x, v):
        if is_tracer(x):
            return getattr(x.at[index], mode)(v)
        return _np_update(x, index, v, mode)
    assert_same(tj.jit(f, backend=backend)(x, v), f(x, v))
    w = rng.standard_normal((5, 6))
    tj.check_grads(lambda x, v: np.sum(np.sin(f(x, v)) * w), [x, v], argnums=(0, 1),
                   backend=backend)


def test_at_get_and_broadcast_value(backend):
    x = np.arange(12.0).reshape(3, 4)
    f = tj.jit(lambda x: (x.at[1].get(), x.at[:, IDX[:2]].set(7.0), x.at[0].add(np.ones(4))),
               backend=backend)
    got = f(x)
    y = x.copy()
    y[:, IDX[:2]] = 7.0
    assert_same(got[0], x[1])
    assert_same(got[1], y)
    assert_same(got[2], x + np.array([1.0, 0, 0])[:, None])


def test_setitem_and_add_at_leave_the_callers_array(backend):
    rng = np.random.default_rng(4)
    x, v = rng.standard_normal((5, 6)), rng.standard_normal((4, 6))

    def g(x, v, i):
        x[i] = v
        x[1, 2] += 3.0
        x[:, 0] *= 2.0
        x[i] += 1.0  # once per distinct index, as NumPy
        np.add.at(x, i, v)  # once per index
        return x
    want = g(x.copy(), v, IDX)
    keep = x.copy()
    assert_same(tj.jit(g, backend=backend)(x, v, IDX), want)
    assert np.array_equal(x, keep)
    tj.check_grads(lambda x, v, i: np.sum(np.sin(g(x + 0.0, v, i))), [x, v, IDX],
                   argnums=(0, 1), backend=backend)


def test_set_last_write_wins_and_gradient(backend):
    x, v = np.zeros(4), np.array([1.0, 2.0, 3.0])
    idx = np.array([1, 1, 1])
    val, (gx, gv) = tj.value_and_grad(lambda x, v, i: np.sum(x.at[i].set(v) * np.arange(4.0)),
                                      argnums=(0, 1), backend=backend)(x, v, idx)
    assert val == 3.0
    assert_same(gx, np.array([0.0, 0.0, 2.0, 3.0]))
    assert_same(gv, np.array([0.0, 0.0, 1.0]))  # only the write that is kept


def test_gather_of_nested_elementwise_values(backend):
    """A gather of an elementwise result of elementwise results reads the innermost operands
    at the gathered positions (passes.sink_gathers, more than one level deep)."""
    idx = np.array([0, 2, 2])

    def f(x):
        return np.sum(np.tanh(np.sin(x) * 2)[idx] * x[:3])
    x = np.linspace(0.1, 1, 4)
    assert_same(tj.jit(f, backend=backend)(x), f(x))
    tj.check_grads(f, (x,), backend=backend)


def test_masks(backend):
    rng = np.random.default_rng(5)
    x = rng.standard_normal((4, 5))
    x[:, 0] = np.abs(x[:, 0])  # every row and column has a selected element
    x[0] = np.abs(x[0])
    m = x > 0

    def h(x, m):
        y = x * 1.0
        y[m] = 0.5
        return (np.sum(y * y) + np.sum(x, where=m) + np.mean(x, where=m)
                + np.max(x, where=m, initial=-np.inf)
                + np.min(x, axis=0, where=m, initial=9.0).sum()
                + np.sum(np.exp(x), axis=1, where=m, initial=2.0).sum() + x.sum(initial=1.5))
    assert_same(tj.jit(h, backend=backend)(x, m), np.asarray(h(x.copy(), m)))
    tj.check_grads(h, [x, m], argnums=(0,), backend=backend)
    mean_rows = tj.jit(lambda x, m: np.mean(x, axis=1, where=m), backend=backend)(x, m)
    assert_same(mean_rows, np.mean(x, axis=1, where=m))


def test_boolean_mask_read_error_names_line_and_fix():
    x = np.ones((3, 4))
    with pytest.raises(UnsupportedError) as e:
        tj.jit(lambda x: x[x > 0])(x)  # mask-read
    msg = str(e.value)
    assert f"line {line_of(__file__, '# mask-read')}" in msg
    assert "np.where(mask, x, 0)" in msg and "np.sum(x, where=mask)" in msg
    with pytest.raises(Exception, match="initial"):
        tj.jit(lambda x: np.max(x, where=x > 0))(x)


def test_out_of_bounds_raise_index_error(backend):
    x = np.ones((5, 6))
    f = tj.jit(lambda x, i: x[:, i], backend=backend)  # oob-traced
    assert_same(f(x, np.array([-6, 5])), x[:, [-6, 5]])
    for bad in ([0, 6], [-7]):
        with pytest.raises(IndexError) as e:
            f(x, np.array(bad))
        assert "out of bounds for axis 1 with size 6" in str(e.value)
        assert f"line {line_of(__file__, '# oob-traced')}" in str(e.value)
    with pytest.raises(OutOfBoundsError, match="index 7 is out of bounds"):
        tj.jit(lambda x: x[np.array([0, 7])], backend=backend)(x)
    with pytest.raises(IndexError):
        tj.jit(lambda x, i: x.at[i].add(1.0), backend=backend)(x, np.array([5]))
    with pytest.raises(IndexError, match="integer"):
        tj.jit(lambda x, i: x[i], backend=backend)(x, np.array([0.0]))


def test_scatter_add_is_deterministic_with_repeated_indices():
    """Same bits whatever the thread count: the scatter-add applies updates in index order."""
    import numba
    rng = np.random.default_rng(6)
    E = rng.standard_normal((50, 8)).astype(np.float32)
    idx = rng.integers(0, 50, (4000, 5))
    f = tj.grad(lambda E, i: np.sum(np.sin(E[i].sum(1))))
    results = []
    for threads in (1, 2, numba.config.NUMBA_NUM_THREADS):
        numba.set_num_threads(threads)
        results.append(f(E, idx))
    numba.set_num_threads(numba.config.NUMBA_NUM_THREADS)
    assert all(np.array_equal(r, results[0]) for r in results)
    ref = np.zeros_like(E)
    np.add.at(ref, idx, np.cos(E[idx].sum(1))[:, None, :] * np.ones((1, 5, 1), np.float32))
    assert_same(results[0], ref, rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("name", ["x[i]", "x[i, :, i] (non-adjacent: B first)",
                                  "x[arange, i] (row gather)", "np.take_along_axis",
                                  "x[i[:, None], i] (broadcast)"])
def test_cuda_gather_and_update_match_interpreter(name):
    """The CUDA backend (the simulator without a GPU): gathers, scatters (owner computes)."""
    f = GATHERS[name]
    x = np.random.default_rng(7).standard_normal((5, 6, 7))

    def loss(x, i):
        y = f(x, i)
        return np.sum(np.sin(y)) + np.sum(x.at[i].add(1.0) ** 2) + np.sum(x.at[i, 1].max(0.3))
    want = tj.value_and_grad(loss, backend="interpreter")(x, IDX)
    got = tj.value_and_grad(loss, device="cuda")(x, IDX)
    assert_same(got[0], want[0])
    assert_same(got[1], want[1])
    with pytest.raises(IndexError, match="out of bounds"):
        tj.jit(f, device="cuda")(x, np.array([0, 9, 0, 0]))


def test_w7_row_gather_is_one_loop_nest():
    """Cross-entropy with integer labels (W7) fuses like W3 with one-hot labels: one kernel;
    the only steps are the labels' bounds check and a free reshape of them."""
    from benchmarks.workloads import WORKLOADS, tracejit_loss
    from benchmarks.workloads_index import data_w7
    wl = WORKLOADS["W7"]
    f, argnums = tracejit_loss(wl)
    args = wl.ordered(data_w7(16, 10))
    plan = tj.make_plan(tj.value_and_grad(f, argnums=argnums))(*args)
    assert len(plan.kernels) == 1, plan.describe()
    assert [s.eqn.prim.name for s in plan.steps] == ["index_check", "reshape"]
    value, grad = tj.value_and_grad(f, argnums=argnums)(*args)
    ref_value, (ref_grad,) = wl.numpy(*args)
    assert_same(value, np.asarray(ref_value, np.float32), rtol=1e-5)
    assert_same(grad, ref_grad, rtol=1e-4, atol=1e-6)


def _iotas(L, labels):
    """A one-hot compare `labels[:, None] == np.arange(n)` and aranges along either axis."""
    n, m = L.shape
    onehot = labels[:, None] == np.arange(m)
    cols, rows = np.arange(m, dtype=L.dtype), np.arange(n, dtype=L.dtype)[:, None]
    return np.sum(np.where(onehot, L, 0) * cols + L * rows, 1)


@pytest.mark.parametrize("dtype", [np.float32, np.float64], ids=["f32", "f64"])
def test_iota_constants_are_the_loop_index(dtype, backend):
    """An array constant that counts 0, 1, ... along one axis is read as the loop index (no
    load, no kernel input): the same values and gradients."""
    rng = np.random.default_rng(9)
    L, labels = rng.standard_normal((7, 5)).astype(dtype), rng.integers(0, 5, 7)
    assert_same(tj.jit(_iotas, backend=backend)(L, labels), _iotas(L, labels))
    if dtype == np.float64:
        tj.check_grads(lambda L: np.sum(np.sin(_iotas(L, labels))), (L,), backend=backend)
    if backend == "numba":
        src = tj.explain(tj.jit(_iotas))(L, labels)
        assert "np.int64(i1)" in src and f"np.{np.dtype(dtype).name}(i0)" in src, src
        assert "K" in src and " L" not in src.split("--- driver ---")[1].split("---")[0]


def test_cuda_iota_constants_are_the_loop_index():
    rng = np.random.default_rng(10)
    L, labels = rng.standard_normal((7, 5)), rng.integers(0, 5, 7)
    def f(L, labels):
        return np.sum(np.cos(_iotas(L, labels)))
    want = tj.value_and_grad(f, backend="interpreter")(L, labels)
    got = tj.value_and_grad(f, device="cuda")(L, labels)
    assert_same(got[0], want[0])
    assert_same(got[1], want[1])


W8_THREADS_CHILD = """
import hashlib, sys
import numba, numpy as np
import tracejit as tj
from benchmarks.workloads import WORKLOADS, tracejit_loss
from benchmarks.workloads_index import data_w8
wl = WORKLOADS["W8"]
f, argnums = tracejit_loss(wl)
args = wl.ordered(data_w8(4096, vocab=2000))  # ~41 repeats per row of E; 8 scatter slabs
g = tj.jit_grad(f, argnums=argnums)
ref_value, (ref_grad,) = wl.numpy(*args)
for threads in (1, 2, 8):
    numba.set_num_threads(threads)
    value, grad = g(*args)
    assert np.allclose(grad, ref_grad, rtol=1e-3, atol=1e-4)
    print(threads, hashlib.sha256(np.float32(value).tobytes() + grad.tobytes()).hexdigest())
"""


def test_w8_gradient_same_bits_across_thread_counts():
    """W8 (embedding bag, repeated indices): value and grad E bit-identical with 1, 2 and 8
    threads (a child process started with NUMBA_NUM_THREADS=8: the parallel gather and the
    scatter's owner-computes slabs both split the work by the thread count)."""
    import os
    import subprocess
    import sys
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    env = dict(os.environ, NUMBA_NUM_THREADS="8",
               PYTHONPATH=os.pathsep.join([root, os.environ.get("PYTHONPATH", "")]))
    proc = subprocess.run([sys.executable, "-c", W8_THREADS_CHILD], capture_output=True,
                          text=True, env=env, cwd=root, timeout=600, check=False)
    assert proc.returncode == 0, proc.stderr[-3000:]
    digests = dict(line.split() for line in proc.stdout.split("\n") if line.strip())
    assert sorted(digests) == ["1", "2", "8"], proc.stdout
    assert len(set(digests.values())) == 1, digests
