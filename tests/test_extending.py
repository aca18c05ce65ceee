"""Extending tracejit is one declaration per primitive. This file declares a new elementwise
primitive (`cbrt`, answering to np.cbrt) and a new reduction (`nansum`, answering to
np.nansum) with one `defprim` call each, and nothing else: no table, wrapper or backend is
edited. Both then work through NumPy on traced values, under `grad` (checked by
`check_grads`), fused into one W1-style loop on the Numba CPU backend, and on the CUDA
backend (Numba's simulator when there is no GPU). The recipe is in CONTRIBUTING.md.
"""
from __future__ import annotations

import numpy as np
import pytest

import tracejit as tj
import tracejit.numpy as tnp
from tracejit import coverage
from tracejit.ir import Aval
from tracejit.primitives import ANY, LOOP, NONZERO, REDUCE, UNARY, Reduce, defprim

# ----- the two declarations -----
cbrt_p = defprim(
    "cbrt", UNARY, numpy=("cbrt",), shape=lambda x: x, impl=np.cbrt,
    vjp=lambda g, out, x: (g / (3 * out * out),),  # d x^(1/3) = 1 / (3 x^(2/3))
    emit="math.copysign(abs({0}) ** ({T}(1) / {T}(3)), {0})", fusion=LOOP, domain=NONZERO)

nansum_p = defprim(
    "nansum", REDUCE, numpy=("nansum",),
    shape=lambda x, axes: Aval(tuple(1 if i in axes else d for i, d in enumerate(x.shape)),
                               x.dtype),
    impl=lambda x, axes: np.nansum(x, axis=axes, keepdims=True),
    vjp=lambda g, out, x, axes: (np.where(np.isnan(x), 0, np.broadcast_to(g, x.shape)),),
    emit=Reduce(lambda dtype: 0, "({acc} + {x} if {x} == {x} else {acc})"), fusion=LOOP,
    domain=ANY)


# ----- what they give -----
def w1_like(x):
    """W1's shape: one elementwise chain, summed (here by the new reduction)."""
    return np.nansum(np.cbrt(x) * np.sin(x) + 0.5 * x * x)


def test_numpy_names_reach_the_new_primitives():
    x = np.array([-8.0, 1.0, 27.0])
    ir = str(tj.make_ir(lambda x: np.nansum(np.cbrt(x), axis=0) + tnp.nansum(tnp.cbrt(x)))(x))
    assert ir.count("cbrt") == 2 and ir.count("nansum") == 2, ir
    np.testing.assert_allclose(tj.jit(lambda x: np.cbrt(x))(x), [-2.0, 1.0, 3.0])
    np.testing.assert_allclose(tj.jit(lambda x: np.nansum(np.where(x > 0, np.nan, x)))(x), -8.0)


@pytest.mark.parametrize("backend", ["interpreter", "numba"])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_forward_matches_numpy(backend, dtype):
    x = np.linspace(-3, 3, 1001).astype(dtype)
    x[::7] = np.nan
    got = tj.jit(lambda x: (np.cbrt(x), np.nansum(x), np.nansum(x.reshape(7, 143), axis=1)),
                 backend=backend)(x)
    want = (np.cbrt(x), np.nansum(x), np.nansum(x.reshape(7, 143), axis=1))
    for g, w in zip(got, want):
        assert np.asarray(g).dtype == w.dtype
        # a sum's rounding error scales with sum(|x|), not with the (cancelling) total
        tol = (1e-6 if dtype == np.float32 else 1e-14) * np.nansum(np.abs(x))
        np.testing.assert_allclose(g, w, rtol=1e-5 if dtype == np.float32 else 1e-12, atol=tol)


@pytest.mark.parametrize("backend", ["interpreter", "numba"])
def test_gradients_match_finite_differences(backend):
    x = np.random.default_rng(0).uniform(0.5, 2.0, (4, 5)) * np.array([1, -1, 1, -1, 1])
    tj.check_grads(w1_like, (x,), backend=backend)
    tj.check_grads(lambda x: np.sum(np.nansum(np.cbrt(x), axis=1) ** 2), (x,), backend=backend)


def test_w1_style_loss_is_one_numba_kernel():
    x = np.linspace(0.1, 2.0, 100_000)
    plan = tj.make_plan(tj.value_and_grad(w1_like))(x)
    assert len(plan) == 1 and len(plan.kernels) == 1, plan.describe()
    value, g = tj.value_and_grad(w1_like, backend="numba")(x)
    np.testing.assert_allclose(value, w1_like(x), rtol=1e-12)
    want = np.cbrt(x) * np.cos(x) + np.sin(x) / (3 * np.cbrt(x) ** 2) + x
    np.testing.assert_allclose(g, want, rtol=1e-12)


def test_cuda_backend_runs_them():
    from tracejit.backends import numba_cuda
    if not numba_cuda.available():
        pytest.skip("numba-cuda not installed")
    x = np.linspace(0.1, 2.0, 37)
    value, g = tj.value_and_grad(w1_like, device="cuda")(x)
    want_v, want_g = tj.value_and_grad(w1_like, backend="interpreter")(x)
    np.testing.assert_allclose(value, want_v, rtol=1e-12)
    np.testing.assert_allclose(g, want_g, rtol=1e-12)


def test_registry_driven_lists_include_them():
    names = {name for name, _, _ in coverage.table()}
    assert {"cbrt", "nansum"} <= names
