"""tracejit.numpy beyond one primitive per name: reductions with where=/initial=, and
stack/concatenate of many traced arrays (forward against NumPy, gradients against finite
differences)."""
from __future__ import annotations

import warnings

import numpy as np
import pytest

import tracejit as tj
from helpers import assert_same

X = np.array([[1.0, -2.0, 3.0, 0.5], [4.0, 5.0, -6.0, -0.25], [-1.0, -2.0, -3.0, -4.0]])


@pytest.mark.parametrize("axis,keepdims", [(None, False), (0, False), (1, True), ((0, 1), False)])
@pytest.mark.parametrize("name", ["mean", "sum", "prod", "var", "std"])
def test_reduction_where_traced_mask(name, axis, keepdims, backend):
    np_fn = getattr(np, name)
    f = tj.jit(lambda x: np_fn(x, axis=axis, keepdims=keepdims, where=x > 0), backend=backend)
    with np.errstate(all="ignore"), warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the last row is fully masked: NaN there, as NumPy
        want = np_fn(X, axis=axis, keepdims=keepdims, where=X > 0)
    assert_same(f(X), want)


def test_mean_where_concrete_mask_and_method(backend):
    m = np.array([True, False, True, True])  # broadcast along the rows, as NumPy does
    assert_same(tj.jit(lambda x: np.mean(x, axis=1, where=m), backend=backend)(X),
                np.mean(X, axis=1, where=m))
    assert_same(tj.jit(lambda x: x.mean(where=m), backend=backend)(X), X.mean(where=m))
    assert_same(tj.jit(lambda x: np.var(x, where=m, ddof=1), backend=backend)(X),
                np.var(X, where=m, ddof=1))


def test_mean_where_gradient(backend):
    g = tj.grad(lambda x: np.mean(x * x, where=x > 0), backend=backend)(X)
    np.testing.assert_allclose(g, np.where(X > 0, 2 * X / np.sum(X > 0), 0.0))
    tj.check_grads(lambda x: np.sum(np.std(np.sin(x), axis=1, where=X[0] > 0)), (X,))


def test_max_where_needs_initial(backend):
    f = tj.jit(lambda x: np.max(x, axis=0, where=x < 0, initial=-10.0), backend=backend)
    assert_same(f(X), np.max(X, axis=0, where=X < 0, initial=-10.0))
    assert_same(tj.jit(lambda x: np.min(x, initial=-5.0), backend=backend)(X),
                np.min(X, initial=-5.0))
    with pytest.raises(tj.ShapeError, match="initial="):
        tj.jit(lambda x: np.max(x, where=x < 0), backend=backend)(X)


def test_where_mask_that_does_not_broadcast():
    with pytest.raises(tj.ShapeError, match=r"where= mask of shape \(3,\)"):
        tj.jit(lambda x: np.mean(x, where=np.ones(3, bool)))(X)


@pytest.mark.parametrize("n", [4, 6])
@pytest.mark.parametrize("how", ["stack", "concatenate"])
def test_stack_concatenate_many_traced_arrays(n, how, backend):
    rng = np.random.default_rng(n)
    xs = [rng.standard_normal(3) for _ in range(n)]
    weights = rng.standard_normal(3 * n)

    def join(*parts):
        out = getattr(np, how)([p * (i + 1) for i, p in enumerate(parts)])
        return out.reshape(-1) if how == "stack" else out

    assert_same(tj.jit(join, backend=backend)(*xs), join(*xs))
    loss = lambda *parts: np.sum(np.tanh(join(*parts)) * weights)
    grads = tj.grad(loss, argnums=tuple(range(n)), backend=backend)(*xs)
    for i, g in enumerate(grads):
        t = np.tanh(xs[i] * (i + 1))
        np.testing.assert_allclose(g, (1 - t * t) * (i + 1) * weights[3 * i:3 * i + 3])
    tj.check_grads(loss, tuple(xs), argnums=tuple(range(n)))


def test_integer_floor_divide_and_remainder(backend):
    """Integer // and % as NumPy: the floor, the divisor's sign, 0 where the divisor is 0
    (indices wrapped with `i % n` inside a traced function); float ones stay differentiable."""
    a, b = np.array([7, -7, 7, -7, 5, 3]), np.array([2, 2, -2, -2, 0, 5])

    def f(a, b, x):
        return a // b, a % b, np.floor_divide(a, 3), np.mod(a, -3), 7 // b, x[a % 4]
    x = np.arange(4.0)
    got = tj.jit(f, backend=backend)(a, b, x)
    with np.errstate(divide="ignore"):
        want = f(a, b, x)
    for g, w in zip(got, want):
        assert g.dtype == w.dtype
        np.testing.assert_array_equal(g, w)
    x = np.linspace(-2.9, 3.1, 5)
    g = tj.grad(lambda x: np.sum(x % 1.5 * x + x // 2), backend=backend)(x)
    np.testing.assert_allclose(g, x % 1.5 + x)  # d(x mod c)/dx = 1, d(x // 2)/dx = 0
