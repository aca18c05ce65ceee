"""What a transformed function accepts: static_argnames (and static_argnums), None and
containers as arguments, float16 arrays; compiled code raises no NumPy RuntimeWarnings."""
from __future__ import annotations

import warnings

import numpy as np
import pytest

import tracejit as tj


# ----- static arguments -----
def _head_sum(x, n, *, mode="sum"):
    out = sum(x[i] for i in range(n))  # Python control flow on static values
    return out if mode == "sum" else -out


def test_static_argnames_keyword_and_positional(backend):
    f = tj.jit(_head_sum, static_argnames=("n", "mode"), backend=backend)
    x = np.arange(5.0)
    assert f(x, n=2) == 1.0
    assert f(x, 3) == 3.0  # a static name is also static when passed positionally
    assert f(x, n=3, mode="neg") == -3.0
    assert len(f._cache) == 3  # one compile per static value


def test_static_argnums_also_static_by_keyword(backend):
    g = tj.grad(_head_sum, static_argnums=1, static_argnames="mode", backend=backend)
    np.testing.assert_array_equal(g(np.arange(4.0), n=2, mode="neg"), [-1, -1, 0, 0])
    np.testing.assert_array_equal(g(np.arange(4.0), 3), [1, 1, 1, 0])


@pytest.mark.parametrize("transform", ["jit", "grad", "value_and_grad", "jit_grad"])
def test_static_argnames_on_every_transformation(transform):
    f = getattr(tj, transform)(_head_sum, static_argnames="n")
    out = f(np.arange(3.0), n=2)
    assert out is not None
    assert tj.make_ir(_head_sum, static_argnames="n")(np.arange(3.0), n=2) is not None


def test_static_argnames_unknown_name():
    with pytest.raises(tj.ArgnumsError, match="names no parameter"):
        tj.jit(_head_sum, static_argnames="m")
    with pytest.raises(tj.ArgnumsError, match="static_argnames takes strings"):
        tj.jit(_head_sum, static_argnames=1)


def test_static_argument_must_be_hashable():
    f = tj.jit(lambda x, shape: np.reshape(x, shape), static_argnames="shape")
    assert f(np.arange(4.0), shape=(2, 2)).shape == (2, 2)
    with pytest.raises(tj.ArgumentError, match=r"static argument 'shape' \(a list\)"):
        f(np.arange(4.0), shape=[2, 2])


# ----- None and containers -----
def test_none_argument_is_an_empty_argument(backend):
    def f(x, noise):
        return np.sum(x * x) if noise is None else np.sum(x * noise)
    x = np.array([1.0, 2.0])
    assert tj.jit(f, backend=backend)(x, None) == 5.0
    np.testing.assert_array_equal(tj.grad(f, backend=backend)(x, None), 2 * x)
    _, (_, gn) = tj.value_and_grad(f, argnums=(0, 1), backend=backend)(x, np.ones(2))
    np.testing.assert_array_equal(gn, x)


def test_list_of_arrays_is_a_container(backend):
    f = tj.grad(lambda ws: np.sum(ws[0] * ws[1]), backend=backend)
    g = f([np.array([1.0, 2.0]), np.array([3.0, 4.0])])
    assert isinstance(g, list)
    np.testing.assert_array_equal(g[0], [3.0, 4.0])


# ----- float16 -----
@pytest.mark.parametrize("shape", [(), (5,), (3, 4)])
def test_float16_in_float16_out(shape, backend):
    x = (np.arange(int(np.prod(shape))).reshape(shape) / 7 - 0.3).astype(np.float16)
    y = tj.jit(lambda x: np.exp(x) * 2 + x, backend=backend)(x)
    assert y.dtype == np.float16 and np.shape(y) == shape
    np.testing.assert_allclose(y, np.exp(x) * 2 + x, rtol=2e-3)
    value, g = tj.value_and_grad(lambda x: np.sum(np.tanh(x) * x), backend=backend)(x)
    assert value.dtype == np.float16 and g.dtype == np.float16
    x32 = x.astype(np.float32)
    t = np.tanh(x32)
    np.testing.assert_allclose(g, (1 - t * t) * x32 + t, rtol=2e-3, atol=1e-3)


def test_float16_mixed_with_float32_promotes_as_numpy(backend):
    x16, w32 = np.ones(3, np.float16), np.float32(2.0)
    y = tj.jit(lambda x, w: x * w, backend=backend)(x16, w32)
    assert y.dtype == (x16 * w32).dtype == np.float32
    y = tj.jit(lambda x: x, backend=backend)(x16)
    assert y.dtype == np.float16 and y is not x16


# ----- floating-point warnings -----
def test_compiled_code_raises_no_numpy_fp_warnings(backend):
    # inf * 0 in a matmul: NumPy warns "invalid value encountered in matmul"; the compiled
    # code, whose warning would point at tracejit's driver, does not
    a = np.array([[np.inf, 1.0], [2.0, 3.0]])
    b = np.array([[0.0, 1.0], [1.0, 0.0]])
    f = tj.jit(lambda a, b: np.log(a @ b - 10.0), backend=backend)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        out = f(a, b)
    assert np.isnan(out[0, 0])
