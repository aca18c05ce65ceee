"""np.cov, np.corrcoef, np.choose and np.einsum with '...' (issue 11): forward against NumPy
in float32 and float64 on every CPU backend, gradients against finite differences (float64),
the CUDA backend (the simulator without a GPU) against the interpreter, JAX where installed."""
from __future__ import annotations

import os

import numpy as np
import pytest
from helpers import assert_same

import tracejit as tj

RNG = np.random.default_rng(11)
X, Y = RNG.standard_normal((3, 6)), RNG.standard_normal((3, 6))
AW, FW = RNG.uniform(0.5, 2.0, 6), np.array([1, 2, 1, 3, 1, 2])
IDX = np.array([[0, 2, 1, 1, 0, 2], [2, 2, 0, 1, 1, 0], [1, 0, 0, 2, 2, 1]])
T3, T4, M = RNG.standard_normal((2, 3, 4)), RNG.standard_normal((2, 1, 4, 5)), \
    RNG.standard_normal((3, 3))

# name -> (f(m, *args) with m the NumPy-like module, args, argnums of float args)
CASES = {
    "cov": (lambda m, x, y: (m.cov(x), m.cov(x, y), m.cov(x, rowvar=False),
                             m.cov(x[0], bias=True), m.cov(x, ddof=0)), (X, Y), (0, 1)),
    "cov_weights": (lambda m, x, w: (m.cov(x, fweights=FW, aweights=w),
                                     m.cov(x, aweights=w, ddof=0), m.cov(x, aweights=w)),
                    (X, AW), (0, 1)),
    "corrcoef": (lambda m, x, y: (m.corrcoef(x), m.corrcoef(x[0], y[1]),
                                  m.corrcoef(x, y, rowvar=False)), (X, Y), (0, 1)),
    "choose": (lambda m, x, y: (m.choose(IDX, [x, y, x * y]),
                                m.choose(IDX[0], [x[0], 2.0, y], mode="wrap"),
                                m.choose(IDX - 1, [x, y], mode="clip")), (X, Y), (0, 1)),
    "choose_traced_index": (lambda m, x, y, i: m.choose(i, [x, y, 0.5 * x]), (X, Y, IDX),
                            (0, 1)),
    "einsum_ellipsis": (lambda m, a, b: (m.einsum("...j,jk", a, b[0, 0]),
                                         m.einsum("i...->...", a),
                                         m.einsum("...ij,...jk->...ik", a, b),
                                         m.einsum("...ii->...i", a[..., :3]),
                                         m.einsum("bi...,bj...->...ij", a, a),
                                         m.einsum("...", a)), (T3, T4), (0, 1)),
}


def _tuple(out):
    return out if isinstance(out, tuple) else (out,)


def _loss(f, m=np):
    def loss(*xs):
        total = 0.0
        for o in _tuple(f(m, *xs)):
            total = total + m.sum(m.sin(o) * m.arange(1, o.size + 1).reshape(o.shape))
        return total
    return loss


@pytest.mark.parametrize("dtype", [np.float32, np.float64], ids=["f32", "f64"])
@pytest.mark.parametrize("name", sorted(CASES))
def test_forward_matches_numpy(name, dtype, backend):
    f, args, _ = CASES[name]
    args = [a.astype(dtype) if a.dtype.kind == "f" else a for a in args]
    want = _tuple(f(np, *args))
    got = _tuple(tj.jit(lambda *xs: f(np, *xs), backend=backend)(*args))
    for g, w in zip(got, want):
        assert_same(g, w, rtol=1e-4 if dtype == np.float32 else 1e-10,
                    atol=1e-5 if dtype == np.float32 else 1e-12)


@pytest.mark.parametrize("name", sorted(CASES))
def test_gradient_matches_finite_differences(name, backend):
    f, args, argnums = CASES[name]
    tj.check_grads(_loss(f), list(args), argnums=argnums, backend=backend)


# the simulator runs a matmul's tiled kernel thread by thread: gradients only where no
# matmul is needed, values of the rest
@pytest.mark.parametrize("name,grad", [("choose", True), ("choose_traced_index", True),
                                       ("cov_weights", False), ("einsum_ellipsis", False)])
def test_cuda_matches_interpreter(name, grad):
    f, args, argnums = CASES[name]
    if not grad:
        want = _tuple(tj.jit(lambda *xs: f(np, *xs), backend="interpreter")(*args))
        got = _tuple(tj.jit(lambda *xs: f(np, *xs), device="cuda")(*args))
        for g, w in zip(got, want):
            assert_same(g, w)
        return
    want = tj.value_and_grad(_loss(f), argnums=argnums, backend="interpreter")(*args)
    got = tj.value_and_grad(_loss(f), argnums=argnums, device="cuda")(*args)
    assert_same(got[0], want[0])
    for g, w in zip(got[1], want[1]):
        assert_same(g, w)


# JAX as a second oracle: every case with TRACEJIT_LONG=1, a few in CI (time)
JAX_CASES = sorted(CASES) if os.environ.get("TRACEJIT_LONG") else \
    ["choose", "corrcoef", "cov_weights", "einsum_ellipsis"]


@pytest.mark.parametrize("name", JAX_CASES)
def test_gradient_matches_jax(name):
    jax = pytest.importorskip("jax")
    jax.config.update("jax_enable_x64", True)
    import jax.numpy as jnp
    f, args, argnums = CASES[name]
    got = tj.grad(_loss(f), argnums=argnums)(*args)
    want = jax.grad(_loss(f, jnp), argnums=argnums)(*args)
    for g, w in zip(got, want):
        np.testing.assert_allclose(g, np.asarray(w), rtol=1e-9, atol=1e-11)


def test_choose_out_of_range_raises():
    assert issubclass(tj.ChoiceError, ValueError)  # NumPy's error type, tracejit's subclass
    with pytest.raises(ValueError, match="invalid entry"):
        tj.jit(lambda x: np.choose(IDX + 1, [x, x, x]))(X)
    with pytest.raises(tj.ChoiceError, match="invalid entry"):  # traced: checked once per call
        tj.jit(lambda x, i: np.choose(i, [x, x]))(X, IDX)
    with pytest.raises(tj.ChoiceError, match="invalid entry"):  # negatives too, as in NumPy
        tj.jit(lambda x, i: np.choose(i, [x, x, x]))(X, -IDX)
    with pytest.raises(tj.ChoiceError, match="invalid entry"):  # the CUDA backend's host check
        tj.jit(lambda x, i: np.choose(i, [x, x]), device="cuda")(X, IDX)


def test_einsum_ellipsis_errors_like_numpy():
    with pytest.raises(tj.ShapeError, match=r"'\.\.\.'"):
        tj.jit(lambda a: np.einsum("ij...->", a))(T3)
    with pytest.raises(tj.ShapeError, match="sizes"):
        tj.jit(lambda a, b: np.einsum("...ij,...jk", a, b))(T3, RNG.standard_normal((3, 4, 2)))
