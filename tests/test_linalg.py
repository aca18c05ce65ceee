"""np.linalg as library steps (issue 11): solve, inv, det, slogdet, cholesky and the matrix
norms, on single and stacked matrices. Forward against NumPy in float32 and float64 on every
CPU backend, gradients against finite differences (float64), the CUDA backend (the simulator
without a GPU) against the interpreter, JAX's gradients where JAX is installed, and NumPy's
LinAlgError for singular input."""
from __future__ import annotations

import os

import numpy as np
import pytest
from helpers import assert_same

import tracejit as tj

RNG = np.random.default_rng(7)


def _well(shape, spd=False):
    x = RNG.uniform(-1, 1, shape)
    n = shape[-1]
    if spd:
        x = x @ np.swapaxes(x, -1, -2) / n
    return x + 2.0 * np.eye(n)


A, AS = _well((4, 4)), _well((2, 3, 3))
NEG = A[[1, 0, 2, 3]]  # rows swapped: a negative determinant
S, SS = _well((4, 4), spd=True), _well((2, 3, 3), spd=True)
B, V, BS, V3 = RNG.standard_normal((4, 2)), RNG.standard_normal(4), \
    RNG.standard_normal((2, 3, 2)), RNG.standard_normal(3)
M, T = RNG.standard_normal((4, 3)), RNG.standard_normal((2, 3, 5))

# name -> (f(m, *args) with m the NumPy-like module, args); all differentiable
CASES = {
    "solve": (lambda m, a, b, v: (m.linalg.solve(a, b), m.linalg.solve(a, v)), (A, B, V)),
    "solve_batched": (lambda m, a, b: (m.linalg.solve(a, b), m.linalg.solve(a, b[0]),
                                       m.linalg.solve(a[0], b)), (AS, BS)),
    "solve_vector_batched": (lambda m, a, v: m.linalg.solve(a, v), (AS, V3)),
    "inv": (lambda m, a, s: (m.linalg.inv(a), m.linalg.inv(s)), (A, AS)),
    "det": (lambda m, a, s: (m.linalg.det(a), m.linalg.det(s)), (NEG, AS)),
    "slogdet": (lambda m, a, s: (*m.linalg.slogdet(a), *m.linalg.slogdet(s)), (NEG, AS)),
    "cholesky": (lambda m, s, ss: (m.linalg.cholesky(s), m.linalg.cholesky(ss),
                                   m.linalg.cholesky(s, upper=True)), (S, SS)),
    "matrix_norms": (lambda m, a, t: (m.linalg.norm(a, 2), m.linalg.norm(a, "nuc"),
                                      m.linalg.norm(a, -2), m.linalg.norm(t, 2, axis=(0, 2)),
                                      m.linalg.norm(t, "nuc", axis=(2, 1), keepdims=True)),
                     (M, T)),
    # a Gaussian log-likelihood: log det and a solve in one loss
    "gaussian_nll": (lambda m, s, b: 0.5 * m.linalg.slogdet(s)[1] + 0.5 * m.sum(
        b * m.linalg.solve(s, b)), (S, B)),
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
    f, args = CASES[name]
    args = [a.astype(dtype) for a in args]
    want = _tuple(f(np, *args))
    got = _tuple(tj.jit(lambda *xs: f(np, *xs), backend=backend)(*args))
    for g, w in zip(got, want):
        assert_same(g, w, rtol=1e-4 if dtype == np.float32 else 1e-10,
                    atol=1e-5 if dtype == np.float32 else 1e-12)


@pytest.mark.parametrize("name", sorted(CASES))
def test_gradient_matches_finite_differences(name, backend):
    f, args = CASES[name]
    tj.check_grads(_loss(f), list(args), argnums=tuple(range(len(args))), backend=backend)


# the simulator runs a matmul's tiled kernel thread by thread: a gradient where few
# matmuls are needed, values of the rest (host steps: LAPACK on copies, see numba_cuda.py)
@pytest.mark.parametrize("name,grad", [("slogdet", True), ("solve_batched", False),
                                       ("cholesky", False), ("matrix_norms", False)])
def test_cuda_matches_interpreter(name, grad):
    f, args = CASES[name]
    if not grad:
        want = _tuple(tj.jit(lambda *xs: f(np, *xs), backend="interpreter")(*args))
        got = _tuple(tj.jit(lambda *xs: f(np, *xs), device="cuda")(*args))
        for g, w in zip(got, want):
            assert_same(g, w)
        return
    want = tj.value_and_grad(_loss(f), argnums=0, backend="interpreter")(*args)
    got = tj.value_and_grad(_loss(f), argnums=0, device="cuda")(*args)
    assert_same(got[0], want[0])
    assert_same(got[1], want[1])


def test_jvp_vmap_and_second_order():
    """Forward mode, vmap over stacked systems, and grad of grad (Hessian-vector)."""
    t = RNG.standard_normal(A.shape)
    f = _loss(CASES["gaussian_nll"][0])
    _, tan = tj.jvp(lambda a: f(a, B), (S,), (t,))
    eps = 1e-6
    fd = (f(S + eps * t, B) - f(S - eps * t, B)) / (2 * eps)
    np.testing.assert_allclose(tan, fd, rtol=1e-6)
    got = tj.vmap(lambda a, b: np.linalg.solve(a, b))(AS, BS)
    assert_same(got, np.linalg.solve(AS, BS))
    hvp = tj.jvp(tj.grad(lambda a: np.linalg.slogdet(a)[1]), (A,), (t,))[1]
    want = -np.linalg.inv(A).T @ t.T @ np.linalg.inv(A).T  # d(A^-T) = -A^-T dA^T A^-T
    np.testing.assert_allclose(hvp, want, rtol=1e-10, atol=1e-12)


# JAX as a second oracle: every case with TRACEJIT_LONG=1, a few in CI (time)
JAX_CASES = sorted(CASES) if os.environ.get("TRACEJIT_LONG") else \
    ["cholesky", "matrix_norms", "slogdet", "solve_batched"]


@pytest.mark.parametrize("name", JAX_CASES)
def test_gradient_matches_jax(name):
    jax = pytest.importorskip("jax")
    jax.config.update("jax_enable_x64", True)
    import jax.numpy as jnp
    f, args = CASES[name]
    argnums = tuple(range(len(args)))
    got = tj.grad(_loss(f), argnums=argnums)(*args)
    want = jax.grad(_loss(f, jnp), argnums=argnums)(*args)
    for g, w in zip(got, want):
        w = np.asarray(w)
        if name == "cholesky":
            # JAX differentiates chol((a + a^T) / 2), NumPy reads one triangle: the same
            # derivative along symmetric directions
            g, w = g + np.swapaxes(g, -1, -2), w + np.swapaxes(w, -1, -2)
        np.testing.assert_allclose(g, w, rtol=1e-9, atol=1e-11)


@pytest.mark.parametrize("backend_or_device", ["interpreter", "numba", "cuda"])
def test_singular_matrix_raises_linalg_error(backend_or_device):
    kw = {"device": "cuda"} if backend_or_device == "cuda" else {"backend": backend_or_device}
    singular = np.ones((3, 3))
    with pytest.raises(np.linalg.LinAlgError):
        tj.jit(lambda a: np.linalg.inv(a) * 2, **kw)(singular)
    with pytest.raises(np.linalg.LinAlgError):
        tj.jit(lambda a: np.linalg.solve(a, a[0]) * 2, **kw)(singular)
    with pytest.raises(np.linalg.LinAlgError):
        tj.jit(lambda a: np.linalg.cholesky(-a) * 2, **kw)(S)
    # det and slogdet of a singular matrix are NumPy's 0 and (0, -inf), not an error
    d, (s, ld) = tj.jit(lambda a: (np.linalg.det(a), np.linalg.slogdet(a)), **kw)(singular)
    assert d == 0 and s == 0 and ld == -np.inf


def test_singular_value_norms_are_first_order_only():
    with pytest.raises(tj.UnsupportedError, match="second derivatives through singular"):
        tj.hessian(lambda a: np.linalg.norm(a, "nuc"))(M)
    with pytest.raises(tj.UnsupportedError, match="second derivatives through singular"):
        tj.jvp(tj.grad(lambda a: np.linalg.norm(a, 2)), (M,), (M,))


def test_shape_errors_name_the_function():
    with pytest.raises(tj.ShapeError, match="linalg.inv: expected square"):
        tj.jit(lambda a: np.linalg.inv(a))(M)
    with pytest.raises(tj.ShapeError, match="linalg.solve"):
        tj.jit(lambda a, b: np.linalg.solve(a, b))(A, V3)


def test_integer_input_is_float64_like_numpy():
    x = np.array([[2, 1], [1, 3]])
    got = tj.jit(lambda a: (np.linalg.inv(a), np.linalg.det(a)))(x)
    assert_same(got[0], np.linalg.inv(x))
    assert_same(got[1], np.linalg.det(x))
