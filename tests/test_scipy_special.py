"""scipy.special on traced values (issue 11): the Python functions logsumexp / softmax /
log_softmax (wrapped in scipy.special by tracejit), and the ufuncs (expit logit erf erfc
log_ndtr xlogy xlog1py, through __array_ufunc__). Forward against scipy in float32 and float64
on every CPU backend, gradients against finite differences, the CUDA backend (the simulator
without a GPU) against the interpreter, and JAX's jax.scipy.special where installed."""
from __future__ import annotations

import os
import subprocess
import sys

import numpy as np
import pytest
import scipy.special as sp
from helpers import assert_same

import tracejit as tj

RNG = np.random.default_rng(3)
X, W = RNG.standard_normal((4, 5)) * 3, RNG.uniform(0.1, 2, (4, 5))
P = RNG.uniform(0.1, 0.9, (4, 5))

# name -> (f(s, *args) with s the scipy.special-like module, args)
CASES = {
    "logsumexp": (lambda s, x: (s.logsumexp(x), s.logsumexp(x, axis=1),
                                s.logsumexp(x, axis=0, keepdims=True)), (X,)),
    "logsumexp_b_sign": (lambda s, x, w: (s.logsumexp(x, axis=1, b=w),
                                          *s.logsumexp(x, axis=0, b=w - 1.0,
                                                       return_sign=True)), (X, W)),
    "softmax": (lambda s, x: (s.softmax(x), s.softmax(x, axis=0), s.softmax(x, axis=-1)), (X,)),
    "log_softmax": (lambda s, x: (s.log_softmax(x), s.log_softmax(x, axis=1)), (X,)),
    "ufuncs": (lambda s, x, p: (s.expit(x), s.logit(p), s.erf(x), s.erfc(x), s.log_ndtr(x),
                                s.xlogy(p, x * x + 0.1), s.xlog1py(x, p)), (X, P)),
}


def _tuple(out):
    return out if isinstance(out, tuple) else (out,)


def _loss(f, m=np, s=sp):
    def loss(*xs):
        total = 0.0
        for o in _tuple(f(s, *xs)):
            total = total + m.sum(m.sin(o) * m.arange(1, o.size + 1).reshape(o.shape))
        return total
    return loss


@pytest.mark.parametrize("dtype", [np.float32, np.float64], ids=["f32", "f64"])
@pytest.mark.parametrize("name", sorted(CASES))
def test_forward_matches_scipy(name, dtype, backend):
    f, args = CASES[name]
    args = [a.astype(dtype) for a in args]
    want = _tuple(f(sp, *args))
    got = _tuple(tj.jit(lambda *xs: f(sp, *xs), backend=backend)(*args))
    for g, w in zip(got, want):
        assert_same(g, w, dtype_too=dtype == np.float64 or name != "ufuncs",
                    rtol=1e-5 if dtype == np.float32 else 1e-12,
                    atol=1e-5 if dtype == np.float32 else 1e-12)


@pytest.mark.parametrize("name", sorted(CASES))
def test_gradient_matches_finite_differences(name, backend):
    f, args = CASES[name]
    tj.check_grads(_loss(f), list(args), argnums=tuple(range(len(args))), backend=backend)


@pytest.mark.parametrize("name", ["logsumexp_b_sign"])
def test_cuda_matches_interpreter(name):
    f, args = CASES[name]
    want = tj.value_and_grad(_loss(f), backend="interpreter")(*args)
    got = tj.value_and_grad(_loss(f), device="cuda")(*args)
    assert_same(got[0], want[0])
    assert_same(got[1], want[1])


# JAX as a second oracle: every case with TRACEJIT_LONG=1, a few in CI (time)
JAX_CASES = sorted(CASES) if os.environ.get("TRACEJIT_LONG") else \
    ["log_softmax", "logsumexp_b_sign", "softmax"]


@pytest.mark.parametrize("name", JAX_CASES)
def test_gradient_matches_jax(name):
    jax = pytest.importorskip("jax")
    jax.config.update("jax_enable_x64", True)
    import jax.numpy as jnp
    import jax.scipy.special as jsp
    from jax.nn import log_softmax, softmax

    class JaxSpecial:  # jax.nn's softmax defaults to axis=-1, scipy's to None
        def __getattr__(self, name):
            return getattr(jsp, name)
        softmax = staticmethod(lambda x, axis=None: softmax(x, axis=axis))
        log_softmax = staticmethod(lambda x, axis=None: log_softmax(x, axis=axis))
    f, args = CASES[name]
    argnums = tuple(range(len(args)))
    got = tj.grad(_loss(f), argnums=argnums)(*args)
    want = jax.grad(_loss(f, jnp, JaxSpecial()), argnums=argnums)(*args)
    for g, w in zip(got, want):
        np.testing.assert_allclose(g, np.asarray(w), rtol=1e-9, atol=1e-10)


def test_scipy_functions_are_wrapped_whatever_the_import_order():
    """scipy.special imported before tracejit, after it, or names imported from it after
    tracejit: each reaches tracejit on traced values; plain arrays still get scipy's."""
    code = ("import numpy as np\n{first}\n{second}\n"
            "x = np.linspace(-2, 2, 6).reshape(2, 3)\n"
            "got = tj.jit(lambda x: logsumexp(x, axis=1) + sp.softmax(x)[:, 0])(x)\n"
            "want = sp.logsumexp(x, axis=1) + sp.softmax(x)[:, 0]\n"
            "assert np.allclose(got, want), (got, want)\n"
            "assert type(sp.logsumexp(x)) is np.float64\n")
    orders = [("import scipy.special as sp", "import tracejit as tj"),
              ("import tracejit as tj", "import scipy.special as sp")]
    for first, second in orders:
        src = code.format(first=first, second=second + "\nfrom scipy.special import logsumexp")
        subprocess.run([sys.executable, "-c", src], check=True)
