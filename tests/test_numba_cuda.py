"""The CUDA backend against the interpreter: every primitive (forward and VJP), NaN/inf
semantics, random programs, the benchmark workloads, matmul and layout steps, device-array
inputs and outputs, device routing and its errors.

On a machine without a GPU these run on Numba's CUDA simulator (conftest sets
NUMBA_ENABLE_CUDASIM=1 before numba.cuda is imported), with small blocks and tiles so the
one-Python-thread-per-CUDA-thread simulator stays quick; with a GPU they run on it. Every
generated kernel is also compiled for a real GPU (typing and lowering, no device needed) in
a subprocess without the simulator: the simulator runs kernels as Python and would accept
code the CUDA compiler rejects.
"""
from __future__ import annotations

import os
import subprocess
import sys
import textwrap

import numpy as np
import pytest
from helpers import assert_same, sample
from hypothesis import given, settings
from test_primitives import (FORWARD_CASES, GRAD_CASES, NAN_INF_CASES, float_argnums,
                             make_input, prim_cases, prim_loss)
from test_random_programs import EXAMPLES, check_program, programs

import tracejit as tj
import tracejit.numpy as tnp
from benchmarks.workloads import WORKLOADS as BENCHMARKS
from benchmarks.workloads import tracejit_loss
from tracejit.backends import is_device_array, numba_cpu, numba_cuda
from tracejit.errors import DeviceError
from tracejit.primitives import ANY, REGISTRY, SELECT
from tracejit.primitives.linalg import FIRST_ORDER_ONLY

pytestmark = pytest.mark.skipif(not numba_cuda.available(),
                                reason="numba-cuda not installed (pip install tracejit[cuda])")
SIM = numba_cuda.available() and numba_cuda.simulated()
if SIM:  # a few threads per block: several blocks and grid-stride iterations on tiny inputs
    numba_cuda.BLOCK, numba_cuda.MAX_BLOCKS, numba_cuda.TILE = 8, 4, 4
CUDA = "cuda"


@pytest.fixture(autouse=True, scope="module")
def _fast_simulator():
    """The simulator's launcher polls its threads in a busy loop that holds the GIL for a
    whole switch interval (5 ms) at every syncthreads; switching more often makes simulated
    launches several times faster. It also makes a simulator race likely: two threads
    reaching the same `cuda.shared.array` line can each get a private array (a check-then-
    insert without a lock in FakeCUDAShared.array), so allocation is serialized here."""
    if not SIM:
        yield
        return
    import threading

    from numba.cuda.simulator.kernelapi import FakeCUDAShared
    old_interval, old_array, lock = sys.getswitchinterval(), FakeCUDAShared.array, \
        threading.Lock()

    def array(self, shape, dtype, alignment=None):  # the static case tracejit's kernels use
        caller = sys._getframe(1)
        key = (caller.f_code.co_filename, caller.f_lineno)  # as the simulator keys them
        with lock:
            if key not in self._allocations:
                self._allocations[key] = np.empty(shape, dtype)
            return self._allocations[key]
    FakeCUDAShared.array = array
    sys.setswitchinterval(1e-4)
    yield
    sys.setswitchinterval(old_interval)
    FakeCUDAShared.array = old_array


def cuda_module():
    from numba import cuda
    return cuda


def assert_close(got, want, dtype):
    rtol, atol = (2e-5, 1e-6) if dtype == np.float32 else (1e-12, 1e-13)
    for g, w in zip(got if isinstance(got, tuple) else (got,),
                    want if isinstance(want, tuple) else (want,)):
        assert_same(g, w, rtol=rtol, atol=atol)


# ---------------------------------------------------------------------------------------------
# every primitive: forward values and VJPs against the interpreter, float32 and float64
# ---------------------------------------------------------------------------------------------
def cuda_cases(prim):
    """The CPU suite's cases (0-d, size 0, broadcasting, strided and transposed inputs);
    argmax/argmin only over one non-empty axis (NumPy raises otherwise)."""
    if prim.name in ("argmax", "argmin"):
        return [(s, p) for s, p in prim_cases(prim) if len(p["axes"]) == 1
                and 0 not in s[0][0]]
    return prim_cases(prim)


PRIM_CASES = [pytest.param(name, specs, params, id=f"{name}-{i}")
              for name, prim in REGISTRY.items()
              if prim.kind not in ("call", "control") and not prim.erase_after_autodiff
              for i, (specs, params) in enumerate(cuda_cases(prim))]


def test_every_primitive_is_covered():
    covered = {p.values[0] for p in PRIM_CASES}
    missing = {n for n, p in REGISTRY.items() if p.kind not in ("call", "control")
               and not p.erase_after_autodiff} - covered
    assert not missing, f"primitives the CUDA tests never run: {missing}"


@pytest.mark.parametrize("dtype", [np.float32, np.float64], ids=["f32", "f64"])
@pytest.mark.parametrize("name,specs,params", PRIM_CASES)
def test_primitive_matches_interpreter(name, specs, params, dtype):
    prim = REGISTRY[name]
    rng = np.random.default_rng(abs(hash((name, str(specs)))) % 2**32)
    domain = ANY if prim.kind == SELECT else prim.domain
    args = [make_input(s, domain, rng, dtype) for s in specs]
    if name in ("and", "or", "logical_not"):
        args = [a > 0 for a in args]
    elif prim.kind == SELECT:
        args[0] = args[0] > 0

    def forward(*xs):
        return prim.bind(*xs, **params)
    want = tj.jit(forward, backend="interpreter")(*args)
    got = tj.jit(forward, device=CUDA)(*args)
    assert isinstance(got, (np.ndarray, np.generic)), type(got)
    assert_close(got, want, dtype)
    if prim.vjp is None or name in ("and", "or", "logical_not") or prim.kind == SELECT or \
            name in FIRST_ORDER_ONLY:
        return
    loss = prim_loss(prim, params)
    argnums = float_argnums(args)
    want = tj.value_and_grad(loss, argnums=argnums, backend="interpreter")(*args)
    got = tj.value_and_grad(loss, argnums=argnums, device=CUDA)(*args)
    assert_close(got[0], want[0], dtype)  # a float64 sum of `dtype` values
    assert_close(got[1], want[1], dtype)


def test_select_vjp():
    x, y = np.linspace(-1, 1, 12).reshape(3, 4), np.linspace(2, 3, 4)
    f = lambda x, y: np.sum(np.where(x > 0, x * y, np.sin(y)) * x)  # noqa: E731
    want = tj.value_and_grad(f, argnums=(0, 1), backend="interpreter")(x, y)
    got = tj.value_and_grad(f, argnums=(0, 1), device=CUDA)(x, y)
    assert_close(got[0], want[0], np.float64)
    assert_close(got[1], want[1], np.float64)


@pytest.mark.parametrize("dtype", [np.float32, np.float64], ids=["f32", "f64"])
@pytest.mark.parametrize("name", sorted(FORWARD_CASES))
def test_numpy_functions_match_interpreter(name, dtype):
    """The CPU suite's NumPy-level functions (composites, keepdims reductions over several
    axes, indexing, stacking, argmax, 0-d and size-0 inputs), forward."""
    f, specs = FORWARD_CASES[name]
    rng = np.random.default_rng(len(name) + 7)
    args = [sample(d, s, rng, dtype) for s, d in specs]
    want = tj.jit(f, backend="interpreter")(*args)
    got = tj.jit(f, device=CUDA)(*args)
    for i, (g, w) in enumerate(zip(got if isinstance(got, tuple) else (got,),
                                   want if isinstance(want, tuple) else (want,))):
        if isinstance(w, tuple):  # np.shape
            assert tuple(g) == w
            continue
        try:
            assert_close(g, w, dtype)
        except AssertionError as e:
            raise AssertionError(f"output {i} of {name}: {e}") from None


@pytest.mark.parametrize("name", sorted(GRAD_CASES))
def test_numpy_function_gradients_match_interpreter(name):
    f, specs = GRAD_CASES[name]
    rng = np.random.default_rng(len(name))
    args = [sample(d, s, rng) for s, d in specs]
    argnums = tuple(range(len(args)))
    want = tj.value_and_grad(f, argnums=argnums, backend="interpreter")(*args)
    got = tj.value_and_grad(f, argnums=argnums, device=CUDA)(*args)
    assert_close(got[0], want[0], np.float64)
    assert_close(got[1], want[1], np.float64)


@pytest.mark.parametrize("dtype", [np.float32, np.float64], ids=["f32", "f64"])
@pytest.mark.parametrize("name", sorted(NAN_INF_CASES))
def test_nan_inf_like_numpy(name, dtype):
    f, xs, ys = NAN_INF_CASES[name]
    x, y = np.asarray(xs, dtype), np.asarray(ys, dtype)
    with np.errstate(all="ignore"):
        want = f(x, y)
    got = tj.jit(f, device=CUDA)(x, y)
    for i, (g, w) in enumerate(zip(got, want)):
        try:
            assert_same(g, w, rtol=2e-6 if dtype == np.float32 else 1e-12)
        except AssertionError as e:
            raise AssertionError(f"output {i} of {name}: {e}") from None


def test_integer_and_bool_inputs():
    i, b = np.arange(-3, 9), np.arange(12) % 3 == 0
    f = lambda i, b: (i * 2 + 1, np.where(b, i, -i), np.sum(i), np.max(i), b & (i > 0),  # noqa: E731
                      np.sum(b.astype(np.int32)), i.reshape(3, 4).T,
                      np.min(i.reshape(3, 4), axis=1), np.max(b))
    for g, w in zip(tj.jit(f, device=CUDA)(i, b), tj.jit(f, backend="interpreter")(i, b)):
        assert_same(g, w)


def test_round_half_even_and_signed_zero():
    x = np.array([-2.5, -1.5, -0.5, -0.3, 0.5, 1.5, 2.5, 1e300, np.nan, -np.inf, 3.7])
    got = tj.jit(lambda v: (np.rint(v), np.floor(v), np.ceil(v)), device=CUDA)(x)
    with np.errstate(all="ignore"):
        for g, w in zip(got, (np.rint(x), np.floor(x), np.ceil(x))):
            assert_same(g, w)
            assert np.array_equal(np.signbit(g), np.signbit(w))


# ---------------------------------------------------------------------------------------------
# random programs (the hypothesis suite), workloads, matmul
# ---------------------------------------------------------------------------------------------
@settings(max_examples=EXAMPLES["cuda"] if SIM else 2 * EXAMPLES["cuda"])  # TRACEJIT_LONG
@given(programs())
def test_random_program_cuda(prog_spec):
    check_program(prog_spec, "cuda")


def test_size1_max_after_row_max():
    """The random-program regression (test_random_programs.test_compile_failure_regression) on
    the device: a max over a size-1 axis of a row value is a copy, not a row reduction."""
    def f(v0):
        e = lambda v: np.exp(np.tanh(v))  # noqa: E731
        v5 = np.max(v0, axis=0, keepdims=True)
        return np.sum(v0 + v0) + np.sum(e(v0)) + np.sum(np.max(e(v5), axis=0, keepdims=True))
    x = np.random.default_rng(0).uniform(-1.5, 1.5, (2, 2, 1))
    got = tj.value_and_grad(f, device=CUDA)(x)
    want = tj.value_and_grad(f, backend="interpreter")(x)
    assert_close(got, want, np.float64)


def test_float32_sums_carry_float64_partials():
    """A thread's partial over its grid-stride loop, the block tree and the block partials
    of a float32 sum are float64: the total is within 1 ulp of the float64 sum (float32
    partials were 100s of ulps off on 0.1 repeated); row sums likewise."""
    n = 24_000 if SIM else 10_000_000
    x = np.full(n, 0.1, np.float32)
    rows = x.reshape(4, -1)
    got = tj.jit(lambda x: np.sum(x), device=CUDA)(x)
    got_rows = tj.jit(lambda r: np.sum(r, axis=1), device=CUDA)(rows)
    assert got.dtype == got_rows.dtype == np.float32
    for g, want in ((got, np.sum(x.astype(np.float64))),
                    (got_rows, np.sum(rows.astype(np.float64), axis=1))):
        assert np.all(np.abs(g - want) <= np.spacing(np.float32(want)))


# the benchmark workloads' losses, defined once in benchmarks/workloads.py
w1, w2, w3, w4 = (tracejit_loss(BENCHMARKS[f"W{i}"])[0] for i in range(1, 5))


def _workloads(n: int, rows: int, classes: int):
    """key -> (loss, args, argnums) for W1-W5, with data of the test's sizes."""
    rng = np.random.default_rng(0)
    f32 = lambda *s: rng.standard_normal(s).astype(np.float32)  # noqa: E731
    Y = np.eye(classes, dtype=np.float32)[rng.integers(0, classes, rows)]
    args = {"W1": (f32(n),), "W2": (np.float32(0.5), np.float32(-0.3), f32(n), f32(n)),
            "W3": (3 * f32(rows, classes), Y), "W4": (f32(n), f32(n)),
            "W5": (f32(6, 3), f32(rows, 5), f32(5, 6), f32(rows, 3))}
    out = {}
    for key, a in args.items():
        loss, argnums = tracejit_loss(BENCHMARKS[key])
        out[key] = (loss, a, argnums)
    return out


# more elements than BLOCK * MAX_BLOCKS threads, rows longer than a block, more rows than
# blocks: every grid-stride loop takes several turns
WORKLOADS = _workloads(150, 7, 37) if SIM else _workloads(100_003, 517, 1000)


@pytest.mark.parametrize("key", sorted(WORKLOADS))
def test_workload(key):
    f, args, argnums = WORKLOADS[key]
    want = tj.value_and_grad(f, argnums=argnums, backend="interpreter")(*args)
    got = tj.value_and_grad(f, argnums=argnums, device=CUDA)(*args)
    tol = dict(rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(got[0], want[0], **tol)
    for g, w in zip(got[1] if isinstance(argnums, tuple) else (got[1],),
                    want[1] if isinstance(argnums, tuple) else (want[1],)):
        np.testing.assert_allclose(g, w, **tol)


def test_row_kernel_is_one_fused_kernel():
    """W3 (softmax cross-entropy, value and gradient) is one fused kernel: a main launch
    with block-per-row reductions and one finishing launch for the mean."""
    f, args, _ = WORKLOADS["W3"]
    exe = tj.value_and_grad(f, device=CUDA).entry_for(*args).exe
    assert len(exe.ops) == 1 and exe.ops[0].k.inner == (1,)
    src = exe.explain()
    assert "cuda.blockIdx.x" in src and "cuda.syncthreads()" in src and "_fin(" in src


MATMULS = [((5, 9), (9, 6)), ((2, 3, 4), (4, 5)), ((2, 1, 3, 5), (4, 5, 2)), ((3, 0), (0, 2)),
           ((1, 4), (4, 1)), ((9, 4), (4, 9))]


@pytest.mark.parametrize("dtype", [np.float32, np.float64], ids=["f32", "f64"])
@pytest.mark.parametrize("sa,sb", MATMULS)
def test_matmul(sa, sb, dtype):
    rng = np.random.default_rng(1)
    a, b = sample(ANY, sa, rng, dtype), sample(ANY, sb, rng, dtype)
    f = lambda a, b: np.sum(np.tanh(a @ b) * 0.5)  # noqa: E731
    want = tj.value_and_grad(f, argnums=(0, 1), backend="interpreter")(a, b)
    got = tj.value_and_grad(f, argnums=(0, 1), device=CUDA)(a, b)
    assert_close(got[0], want[0], dtype)
    assert_close(got[1], want[1], dtype)
    assert_close(tj.jit(lambda a, b: a @ b, device=CUDA)(a, b), a @ b, dtype)


# ---------------------------------------------------------------------------------------------
# inputs and outputs: NumPy in -> NumPy out, device in -> device out, nothing aliased
# ---------------------------------------------------------------------------------------------
def test_numpy_inputs_give_numpy_outputs_and_stay_untouched():
    x = np.linspace(-1, 1, 20).reshape(4, 5)[:, ::2]  # non-contiguous
    before = x.copy()
    v, g = tj.value_and_grad(w1, device=CUDA)(x)
    assert isinstance(v, float) and isinstance(g, np.ndarray)
    np.testing.assert_array_equal(x, before)
    want = tj.value_and_grad(w1, backend="interpreter")(x)
    assert_close((v, g), want, np.float64)


def test_device_inputs_give_device_outputs():
    cuda = cuda_module()
    x = np.linspace(-1, 1, 30, dtype=np.float32)
    dx = cuda.to_device(x)
    v, g = tj.value_and_grad(w1, device=CUDA)(dx)
    assert is_device_array(v) and is_device_array(g)
    assert v.shape == () and g.shape == (30,)
    want = tj.value_and_grad(w1, backend="interpreter")(x)
    assert_close((v.copy_to_host(), g.copy_to_host()), want, np.float32)
    np.testing.assert_array_equal(dx.copy_to_host(), x)  # the input is never written


def test_unconnected_gradient_of_device_inputs_is_a_device_zero():
    cuda = cuda_module()
    gx, gy = tj.grad(lambda x, y: np.sum(x * 2.0), argnums=(0, 1), device=CUDA)(
        cuda.to_device(np.ones(3)), cuda.to_device(np.ones(2)))
    assert is_device_array(gx) and is_device_array(gy)
    np.testing.assert_array_equal(gy.copy_to_host(), np.zeros(2))


def test_device_inputs_strided_and_returned_unchanged():
    cuda = cuda_module()
    base = np.arange(24.0).reshape(4, 6)
    d = cuda.to_device(base)[:, ::2]  # a strided device view
    same, flat, twice = tj.jit(lambda a: (a, a.reshape(-1), a.T * 2.0), device=CUDA)(d)
    np.testing.assert_array_equal(same.copy_to_host(), base[:, ::2])
    np.testing.assert_array_equal(flat.copy_to_host(), base[:, ::2].reshape(-1))
    np.testing.assert_array_equal(twice.copy_to_host(), base[:, ::2].T * 2)
    same[0, 0] = -1.0  # a returned input is a copy, not the caller's memory
    assert d.copy_to_host()[0, 0] == 0.0


def test_reuse_buffers_and_second_call():
    f = tj.jit_grad(w1, device=CUDA, reuse_buffers=True)
    x = np.linspace(-1, 1, 17)
    first = f(x)[1].copy()
    second = f(x * 2)[1]
    assert_close(first, tj.grad(w1, backend="interpreter")(x), np.float64)
    assert_close(second, tj.grad(w1, backend="interpreter")(x * 2), np.float64)


# ---------------------------------------------------------------------------------------------
# device= routing and its errors
# ---------------------------------------------------------------------------------------------
def test_auto_follows_the_inputs():
    cuda = cuda_module()
    f = tj.value_and_grad(w1, device="auto")
    x = np.linspace(-1, 1, 10)
    assert type(f.entry_for(x).exe).__module__ == numba_cpu.__name__
    assert isinstance(f.entry_for(cuda.to_device(x)).exe, numba_cuda.Executable)
    _, g = f(cuda.to_device(x))
    assert is_device_array(g)
    assert_close(g.copy_to_host(), tj.grad(w1, backend="interpreter")(x), np.float64)


def test_cpu_device_copies_device_inputs_to_host():
    cuda = cuda_module()
    x = np.linspace(-1, 1, 10, dtype=np.float32)
    _, g = tj.value_and_grad(w1)(cuda.to_device(x))
    assert isinstance(g, np.ndarray)
    assert_close(g, tj.grad(w1, backend="interpreter")(x), np.float32)


def test_device_dtypes_and_shapes_are_part_of_the_key():
    cuda = cuda_module()
    f = tj.jit(lambda x: x * 2, device=CUDA)
    a = f(cuda.to_device(np.ones(3, np.float32)))
    b = f(cuda.to_device(np.ones(3, np.float64)))
    c = f(cuda.to_device(np.ones((2, 2), np.float64)))
    assert (a.dtype, b.dtype, c.shape) == (np.float32, np.float64, (2, 2))


def test_bad_device_and_conflicting_backend():
    with pytest.raises(DeviceError, match="device='gpu' is not a device"):
        tj.jit(w1, device="gpu")
    with pytest.raises(DeviceError, match="runs on the CPU"):
        tj.grad(w1, device="cuda", backend="interpreter")


def _child(code: str, **env_changes) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if k != "NUMBA_ENABLE_CUDASIM"}
    env.update(env_changes)
    env["PYTHONPATH"] = os.pathsep.join([os.path.dirname(os.path.dirname(__file__)),
                                         os.path.dirname(__file__), env.get("PYTHONPATH", "")])
    return subprocess.run([sys.executable, "-c", textwrap.dedent(code)], env=env,
                          capture_output=True, text=True, timeout=300, check=False)


@pytest.mark.skipif(not SIM, reason="a GPU is present: CUDA is available")
def test_cuda_without_gpu_or_simulator_is_a_device_error():
    out = _child("""
        import numpy as np, tracejit as tj
        try:
            tj.jit(lambda x: x * 2, device="cuda")(np.ones(3))
        except tj.errors.DeviceError as e:
            print("DEVICE ERROR:", e)
    """)
    assert "DEVICE ERROR" in out.stdout, out.stderr
    assert "no CUDA GPU" in out.stdout and "NUMBA_ENABLE_CUDASIM=1" in out.stdout
    assert "test_numba_cuda" not in out.stdout  # the user's line, not tracejit's


def test_cuda_without_numba_cuda_is_a_device_error():
    out = _child("""
        import sys
        sys.modules["numba.cuda"] = None  # as if numba-cuda were not installed
        import numpy as np, tracejit as tj
        try:
            tj.grad(lambda x: np.sum(x * x), device="cuda")(np.ones(3))
        except tj.errors.DeviceError as e:
            print("DEVICE ERROR:", e)
    """)
    assert "DEVICE ERROR" in out.stdout, out.stderr
    assert "cannot be imported" in out.stdout and "tracejit[cuda]" in out.stdout


# ---------------------------------------------------------------------------------------------
# the generated code is real device code
# ---------------------------------------------------------------------------------------------
LOWERING = """
    import numpy as np, tracejit as tj, tracejit.numpy as tnp
    from tracejit import fusion
    from tracejit.backends import numba_cuda
    from test_numba_cuda import w1, w2, w3, w4, ALL_ELEMENTWISE
    L = np.ones((5, 7), np.float32)
    x = np.ones(6, np.float32)
    cases = [
        (tj.value_and_grad(w1), (x,)),
        (tj.value_and_grad(w2, argnums=(0, 1)), (np.float32(1), np.float32(2), x, x)),
        (tj.value_and_grad(w3), (L, L)), (tj.value_and_grad(w4), (x, x)),
        (tj.value_and_grad(lambda a, b: np.sum((a @ b) ** 2), argnums=(0, 1)), (L, L.T[None])),
        (tj.value_and_grad(lambda v: np.prod(v) + np.max(v) - np.min(v) +
                           np.sum(v[::2, 1:] * np.concatenate([v, v], 1)[::2, ::-1][:, :6])), (L,)),
        (tj.value_and_grad(lambda v: np.sum(np.cumsum(v, 1) * np.cumprod(v, 0))), (L,)),
        (tj.jit(lambda i: (np.max(i), np.min(i.reshape(2, 3), axis=1), i * 2)),
         (np.arange(6),)),
        (tj.jit(lambda v: (v.T, np.argmax(v, 1), np.argmin(v, 0), v.astype(np.int32),
                           np.broadcast_to(v[:, :1], (2, 5, 7)))), (L,)),
    ] + [(tj.jit(ALL_ELEMENTWISE), (L.astype(d), L.astype(d))) for d in (np.float32, np.float64)]
    n = 0
    for t, args in cases:
        g = t.__class__(t.fn, mode=t.mode, backend="interpreter",
                        **({"argnums": t.argnums} if t.mode != "jit" else {}))
        graph = g.entry_for(*args).graph
        n += numba_cuda.Executable(fusion.plan(graph), False).check_lowering()
    print("LOWERED", n)
"""


def ALL_ELEMENTWISE(x, y):
    """Every elementwise primitive in one kernel (lowered once per dtype)."""
    p, u = np.abs(x) + 0.5, np.tanh(x) * 0.5
    return (-x + np.exp(x) + np.expm1(x) + np.log(p) + np.log1p(p) + np.sin(x) + np.cos(x)
            + np.tan(u) + np.tanh(x) + np.sinh(x) + np.cosh(x) + np.arctan(x) + np.arcsin(u)
            + np.arccos(u) + np.sqrt(p) + np.abs(x) + tnp.sigmoid(x) + np.sign(x)
            + np.floor(x) + np.ceil(x) + np.rint(x) + x * y - x / p + p ** y
            + np.maximum(x, y) - np.minimum(x, y) + np.where(x > y, x, y),
            ~(x < y) & (x <= y) | (x >= y) ^ (x == y), x != y, x.astype(np.int64),
            (x > 0).astype(x.dtype))


def test_kernels_compile_for_a_real_gpu():
    out = _child(LOWERING)
    assert out.returncode == 0, out.stderr[-3000:]
    assert int(out.stdout.split("LOWERED")[1]) >= 20


def test_matmul_uses_cublas_only_with_cupy_on_a_real_gpu():
    from tracejit.backends import numba_cuda
    try:
        import cupy  # noqa: F401
        have_cupy = True
    except Exception:  # noqa: BLE001
        have_cupy = False
    expect_cublas = have_cupy and not numba_cuda.simulated()
    assert (numba_cuda._cupy() is not None) == expect_cublas
