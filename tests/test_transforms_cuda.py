"""The new transformations on the CUDA backend (on Numba's CUDA simulator when there is no
GPU; tiny sizes): forward-over-reverse, per-example gradients, a Hessian, a vmapped
custom_vjp and per-example gathers and scatters, each against the interpreter."""
from __future__ import annotations

import numpy as np
import pytest
from test_numba_cuda import _fast_simulator  # noqa: F401  (autouse fixture)
from test_vmap import clip_gradient, logistic, logistic_data, w1_loss

import tracejit as tj
from tracejit.backends import numba_cuda

pytestmark = pytest.mark.skipif(not numba_cuda.available(),
                                reason="numba-cuda not installed (pip install tracejit[cuda])")

CASES = {
    "hvp": (lambda x, v: tj.jvp(tj.grad(w1_loss), (x,), (v,))[1],
            lambda dt: (np.linspace(-2, 2, 37).astype(dt), np.cos(np.arange(37.0)).astype(dt))),
    "per_example_grad": (tj.vmap(tj.grad(logistic), in_axes=(None, 0, 0)),
                         lambda dt: logistic_data(9, 5, dt)),
    "hessian": (tj.hessian(lambda x: np.sum(np.tanh(x) * x[0])),
                lambda dt: (np.linspace(-1, 1, 4).astype(dt),)),
    "vmap_custom_vjp": (tj.vmap(tj.grad(lambda x, lo: np.sum(clip_gradient(x, lo) * 3.0))),
                        lambda dt: (np.ones((5, 3), dt), -np.linspace(0.5, 4, 5).astype(dt))),
    # per-example gathers and scatters: each example's own indices
    "vmap_grad_gather": (tj.vmap(tj.grad(lambda x, i: np.sum(np.tanh(x[i]) * x[:2]))),
                         lambda dt: (np.linspace(-1, 1, 12).reshape(3, 4).astype(dt),
                                     np.array([[0, 3], [2, 2], [1, -1]]))),
    "vmap_scatter": (tj.vmap(lambda x, i, v: x.at[i].add(v * x[0]), in_axes=(0, 0, None)),
                     lambda dt: (np.linspace(-1, 1, 12).reshape(3, 4).astype(dt),
                                 np.array([[0, 3, 3], [2, 2, 1], [1, -1, 0]]),
                                 np.arange(3.0).astype(dt))),
}


@pytest.mark.parametrize("dtype", [np.float32, np.float64], ids=["f32", "f64"])
@pytest.mark.parametrize("name", sorted(CASES))
def test_transformation_on_cuda_matches_interpreter(name, dtype):
    fn, make = CASES[name]
    args = make(dtype)
    want = tj.jit(fn, backend="interpreter")(*args)
    got = tj.jit(fn, device="cuda")(*args)
    assert np.asarray(got).dtype == dtype
    tol = dict(rtol=2e-5, atol=1e-6) if dtype == np.float32 else dict(rtol=1e-12, atol=1e-13)
    np.testing.assert_allclose(got, want, **tol)
