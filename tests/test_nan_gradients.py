"""NaN semantics of gradients.

NaN-safe where: the unselected branch of np.where / np.maximum / np.minimum contributes exact
zeros to the gradient, even where its backward pass would compute 0 * inf or 0 * nan (JAX and
PyTorch return NaN there; the "double where" trick is not needed). What the selected branch
really produces still propagates. Max/min reductions over a NaN give a NaN gradient at the
NaN, as in JAX.
"""
from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

import tracejit as tj
import tracejit.numpy as tnp

X = np.array([-2.0, -0.5, 0.0, 0.25, 1.0, 4.0])


def finite_grad(f, x, backend):
    g = tj.grad(f, backend=backend)(x)
    assert np.all(np.isfinite(g)), g
    return g


def test_where_sqrt_is_the_selected_branch_gradient(backend):
    g = finite_grad(lambda x: np.sum(np.where(x > 0, np.sqrt(x), 0.0)), X, backend)
    with np.errstate(all="ignore"):
        want = np.where(X > 0, 0.5 / np.sqrt(X), 0.0)
    np.testing.assert_allclose(g, want)


@pytest.mark.parametrize("name,f,dfdx", [
    ("log", lambda x: np.where(x > 0, np.log(x), x), lambda x: np.where(x > 0, 1 / x, 1.0)),
    ("div", lambda x: np.where(x != 0, 1 / x, 0.0), lambda x: np.where(x != 0, -1 / x**2, 0)),
    ("arcsin", lambda x: np.where(np.abs(x) < 1, np.arcsin(x), 2 * x),
     lambda x: np.where(np.abs(x) < 1, 1 / np.sqrt(1 - x * x), 2.0)),
    ("chain", lambda x: np.where(x > 0.1, np.log(np.sqrt(x) * np.log1p(x)) / x, 0.0),
     None),
    ("nested", lambda x: np.where(x > 0, np.where(x < 1, np.log(1 - x), -x), np.sqrt(-x)),
     lambda x: np.where(x > 0, np.where(x < 1, -1 / (1 - x), -1.0), -0.5 / np.sqrt(-x))),
    ("maximum", lambda x: np.sqrt(np.maximum(x, 0.5)), lambda x: np.where(
        x > 0.5, 0.5 / np.sqrt(x), 0.0)),
    ("minimum", lambda x: np.log(-np.minimum(x, -0.1)), lambda x: np.where(x < -0.1, 1 / x, 0)),
    ("relu", lambda x: np.log1p(tnp.relu(x)) * np.sqrt(tnp.relu(x) + 1e-3),
     None),
])
def test_masked_domains_give_finite_gradients(name, f, dfdx, backend):
    x = np.concatenate([X, [-1.0, 1.0]]) + 1e-3  # off the kinks and branch points
    g = finite_grad(lambda v: np.sum(f(v)), x, backend)
    if dfdx is not None:
        with np.errstate(all="ignore"):
            np.testing.assert_allclose(g, dfdx(x), rtol=1e-12)
    else:
        pos = x > 0.2
        tj.check_grads(lambda v: np.sum(f(v)), (x[pos],), backend=backend)


def test_selected_branch_nan_still_propagates(backend):
    # x = 0.5: the selected branch is sqrt(x - 1) = NaN; its gradient is NaN too
    x = np.array([0.5, 2.0, -1.0])
    g = tj.grad(lambda x: np.sum(np.where(x > 0, np.sqrt(x - 1), 0.0)), backend=backend)(x)
    assert np.isnan(g[0]) and np.isfinite(g[1]) and g[2] == 0.0
    # and an inf cotangent that the selected branch produces is kept (sqrt'(0) = inf)
    g = tj.grad(lambda x: np.sum(np.sqrt(np.maximum(x, 0.0))), backend=backend)(X)
    assert np.isinf(g[2]) and g[0] == 0.0


def test_masked_gradient_matches_jax_where_both_finite(backend):
    # where both branches are finite the result is the ordinary gradient
    x = np.linspace(0.5, 2.0, 7)
    f = lambda v: np.sum(np.where(v > 1.2, np.log(v) * v, np.sin(v) ** 2))  # noqa: E731
    tj.check_grads(f, (x,), backend=backend)


@pytest.mark.parametrize("reduce", [np.max, np.min])
def test_max_min_of_nan_has_nan_gradient(reduce, backend):
    x = np.array([1.0, np.nan, 3.0, 3.0])
    g = tj.grad(lambda x: reduce(x), backend=backend)(x)
    assert np.isnan(g[1]) and np.all(g[[0, 2, 3]] == 0), g
    rows = np.array([[1.0, 5.0], [np.nan, 2.0]])
    g = tj.grad(lambda x: np.sum(reduce(x, axis=1)), backend=backend)(rows)
    np.testing.assert_array_equal(np.isnan(g), [[False, False], [True, False]])
    assert g[1, 1] == 0 and g[0, 1 if reduce is np.max else 0] == 1


# ----- property: masked gradient == the gradient with the unselected branch constant -----
# branches with a restricted domain (NaN/inf outside it) and safe ones
BRANCHES = {
    "sqrt": (np.sqrt, 1.0), "log": (np.log, 1.0), "recip": (lambda v: 1.0 / v, 1.0),
    "arcsin": (np.arcsin, 0.0), "log1p": (np.log1p, 0.0), "tanh": (np.tanh, 0.0),
    "sq": (lambda v: v * v, 0.0), "exp": (np.exp, 0.0),
}
CONDS = {
    "gt": lambda v, t: v > t, "lt": lambda v, t: v < t, "abs_lt": lambda v, t: np.abs(v) < t,
}


@st.composite
def where_programs(draw):
    a, b = draw(st.sampled_from(sorted(BRANCHES))), draw(st.sampled_from(sorted(BRANCHES)))
    cond, t = draw(st.sampled_from(sorted(CONDS))), draw(st.sampled_from([-0.5, 0.0, 0.5, 1.0]))
    post = draw(st.sampled_from(["none", "sin", "mul", "maximum"]))
    xs = draw(st.lists(st.sampled_from([-2.0, -0.9, -0.3, 0.0, 0.2, 0.7, 1.5, 3.0]),
                       min_size=3, max_size=8))
    return a, b, cond, t, post, np.array(xs) + 1e-3


def _program(a, b, cond, t, post, mask=None):
    """where(cond(x), A(x), B(x)), then a post op; with `mask` (a constant), each branch
    sees a constant in its domain where it is not selected: its gradient there is 0."""
    fa, safe_a = BRANCHES[a]
    fb, safe_b = BRANCHES[b]

    def f(x):
        c = CONDS[cond](x, t) if mask is None else mask
        xa = x if mask is None else np.where(mask, x, safe_a)
        xb = x if mask is None else np.where(mask, safe_b, x)
        y = np.where(c, fa(xa), fb(xb))
        if post == "sin":
            y = np.sin(y)
        elif post == "mul":
            y = y * x
        elif post == "maximum":
            y = np.maximum(y, 0.25 * x)
        return np.sum(y)
    return f


@given(where_programs())
def test_where_gradient_equals_constant_unselected_branch(spec):
    a, b, cond, t, post, x = spec
    mask = CONDS[cond](x, t)
    with np.errstate(all="ignore"):
        g = tj.grad(_program(a, b, cond, t, post), backend="interpreter")(x)
        want = tj.grad(_program(a, b, cond, t, post, mask=mask), backend="interpreter")(x)
    np.testing.assert_allclose(g, want, rtol=1e-12, equal_nan=True,
                               err_msg=f"where({cond} {t}, {a}, {b}) then {post} at {x}")
