"""stop_gradient behaves as tf.stop_gradient / jax.lax.stop_gradient: identity forward, a
constant edge for autodiff, erased from the graph after autodiff. Cases from the TensorFlow
documentation and tutorials (issue 2, section 7), with exact expected numbers."""
from __future__ import annotations

import numpy as np
import pytest

import tracejit as tj
import tracejit.numpy as tnp
from tracejit import passes


def test_stop_gradient_on_loss_path_gives_zero_grads(backend):
    # z = x*y + 3; loss = sum((stop_gradient(z) - 5)**2): nothing reaches x or y
    def loss(x, y):
        z = x * y + 3
        return np.sum((tj.stop_gradient(z) - 5) ** 2)
    x, y = np.array([1.0, 2.0]), np.array([3.0, 4.0])
    value, (gx, gy) = tj.value_and_grad(loss, argnums=(0, 1), backend=backend)(x, y)
    assert value == (6 - 5) ** 2 + (11 - 5) ** 2
    np.testing.assert_array_equal(gx, np.zeros(2))
    np.testing.assert_array_equal(gy, np.zeros(2))
    assert gx.shape == x.shape and gx.dtype == x.dtype


def test_stop_gradient_on_loss_path_unconnected_none(backend):
    def loss(x, y):
        return np.sum((tj.stop_gradient(x * y + 3) - 5) ** 2)
    gx, gy = tj.grad(loss, argnums=(0, 1), unconnected="none", backend=backend)(
        np.array([1.0, 2.0]), np.array([3.0, 4.0]))
    assert gx is None and gy is None


def test_stop_gradient_product_with_constant_edge(backend):
    # a = 3*w1; b = stop_gradient(a)*w2 -> db/dw1 = 0, db/dw2 = a = 6 at w1 = w2 = 2
    def b(w1, w2):
        a = 3 * w1
        return tj.stop_gradient(a) * w2
    value, grads = tj.value_and_grad(b, argnums=(0, 1), backend=backend)(2.0, 2.0)
    assert value == 12.0
    assert grads == (0.0, 6.0)
    g1, g2 = tj.grad(b, argnums=(0, 1), unconnected="none", backend=backend)(2.0, 2.0)
    assert g1 is None and g2 == 6.0


def test_stop_gradient_of_sum_plus_sum(backend):
    # stop_gradient(a + b) + (a + b): only the second term carries gradient -> (1, 1)
    f = lambda a, b: tj.stop_gradient(a + b) + (a + b)  # noqa: E731
    value, grads = tj.value_and_grad(f, argnums=(0, 1), backend=backend)(2.0, 3.0)
    assert value == 10.0
    assert grads == (1.0, 1.0)


def test_straight_through_estimator(backend):
    # x + stop_gradient(round(x) - x): forward is round(x), gradient is the identity's
    x = np.array([-1.7, -0.2, 0.4, 1.5, 2.6, 3.49])
    w = np.array([1.0, -2.0, 3.0, 0.5, 4.0, -1.0])

    def f(x):
        return x + tj.stop_gradient(np.round(x) - x)
    np.testing.assert_array_equal(tj.jit(f, backend=backend)(x), np.round(x))
    g = tj.grad(lambda x: np.sum(w * f(x)), backend=backend)(x)
    np.testing.assert_array_equal(g, w)
    # without stop_gradient, round has zero gradient (JAX's convention)
    g_plain = tj.grad(lambda x: np.sum(w * np.round(x)), backend=backend)(x)
    np.testing.assert_array_equal(g_plain, np.zeros_like(x))


def _softmax_stable(x):
    e = np.exp(x - tj.stop_gradient(np.max(x)))
    return e / np.sum(e)


def _softmax_naive(x):
    e = np.exp(x)
    return e / np.sum(e)


def test_stable_softmax_gradient_equals_plain_softmax(backend):
    x = np.array([0.5, -1.0, 2.0, 0.1])
    w = np.array([1.0, 2.0, -3.0, 0.5])
    g_stable = tj.grad(lambda x: np.sum(w * _softmax_stable(x)), backend=backend)(x)
    g_naive = tj.grad(lambda x: np.sum(w * _softmax_naive(x)), backend=backend)(x)
    np.testing.assert_allclose(g_stable, g_naive, rtol=1e-12, atol=1e-15)
    # and the analytic Jacobian-vector product: s * (w - <s, w>)
    s = np.exp(x) / np.sum(np.exp(x))
    np.testing.assert_allclose(g_stable, s * (w - s @ w), rtol=1e-12)
    tj.check_grads(lambda x: np.sum(w * _softmax_stable(x)), [x], argnums=(0,), backend=backend)


def test_stable_softmax_large_logits(backend):
    x = np.array([1000.0, 1001.0, 999.0, 3000.0, 2999.0])
    w = np.array([1.0, 2.0, -3.0, 0.5, 4.0])
    with np.errstate(all="ignore"):
        value, g = tj.value_and_grad(lambda x: np.sum(w * _softmax_stable(x)),
                                     backend=backend)(x)
        naive = tj.value_and_grad(lambda x: np.sum(w * _softmax_naive(x)), backend=backend)(x)
    shifted = x - x.max()
    s = np.exp(shifted) / np.sum(np.exp(shifted))
    assert np.isfinite(value) and np.all(np.isfinite(g))
    np.testing.assert_allclose(value, s @ w, rtol=1e-12)
    np.testing.assert_allclose(g, s * (w - s @ w), rtol=1e-9, atol=1e-300)
    # the naive softmax overflows: exp(3000) = inf, inf/inf = nan
    assert np.isnan(naive[0]) and np.isnan(naive[1]).any()


def test_stable_softmax_large_logits_float32(backend):
    x = np.array([1000.0, 1001.0, 999.0], np.float32)
    g = tj.grad(lambda x: _softmax_stable(x)[1], backend=backend)(x)
    s = np.exp(x - x.max()) / np.sum(np.exp(x - x.max()))
    assert g.dtype == np.float32 and np.all(np.isfinite(g))
    np.testing.assert_allclose(g, s[1] * (np.eye(3)[1] - s), rtol=1e-5, atol=1e-7)


def test_gate_with_data_dependent_mix(backend):
    # d*x + (1-d)*stop_gradient(x): forward is x, gradient w.r.t. x is d, w.r.t. d is x - x = 0
    def f(x, d):
        return np.sum(d * x + (1 - d) * tj.stop_gradient(x))
    x = np.array([1.0, -2.0, 3.0])
    for d in (np.array([1.0, 0.0, 0.25]), np.array([0.0, 0.0, 0.0]), np.ones(3)):
        value, (gx, gd) = tj.value_and_grad(f, argnums=(0, 1), backend=backend)(x, d)
        assert value == pytest.approx(np.sum(x))
        np.testing.assert_allclose(gx, d)
        np.testing.assert_allclose(gd, x - x)
    # a scalar gate broadcasts; its gradient is summed back to ()
    gx, gd = tj.grad(f, argnums=(0, 1), backend=backend)(x, 0.3)
    np.testing.assert_allclose(gx, np.full(3, 0.3))
    assert np.shape(gd) == () and gd == 0.0


def test_stop_gradient_is_identity_forward_and_pytree():
    tree = {"a": np.arange(3.0), "b": (np.ones(2), 2.0)}
    out = tj.stop_gradient(tree)
    np.testing.assert_array_equal(out["a"], tree["a"])
    f = tj.jit(lambda t: tj.stop_gradient(t))
    got = f(tree)
    np.testing.assert_array_equal(got["b"][0], np.ones(2))
    assert float(got["b"][1]) == 2.0
    g = tj.grad(lambda t: np.sum(t["a"] * tj.stop_gradient(t)["a"]))(tree)
    np.testing.assert_array_equal(g["a"], tree["a"])
    np.testing.assert_array_equal(g["b"][0], np.zeros(2))


def test_stop_gradient_second_order():
    # d/dx [x^2 * stop_gradient(x)] = 2x * x; d2/dx2 = 2 * stop(x) = 2x (not 6x)
    f = lambda x: x ** 2 * tj.stop_gradient(x)  # noqa: E731
    assert tj.grad(f)(3.0) == 18.0
    assert tj.grad(tj.grad(f))(3.0) == 6.0
    # stop_gradient of a gradient: the outer gradient ignores it
    h = lambda x: tj.stop_gradient(tj.grad(lambda y: y ** 3)(x)) * x  # noqa: E731
    assert tj.grad(h)(2.0) == 12.0


def test_stop_gradient_in_joint_ir_then_erased():
    def loss(x):
        return np.sum(x - tj.stop_gradient(np.max(x)))
    x = np.ones(3)
    forward = tj.make_ir(loss)(x)
    assert "stop_gradient" in str(forward)
    joint = tj.make_ir(tj.value_and_grad(loss))(x)
    assert "stop_gradient" in str(joint)
    simplified = passes.simplify(joint)
    assert "stop_gradient" not in str(simplified)
    assert all(e.prim.name != "stop_gradient" for e in simplified.eqns)
    # and erasing it does not change the values
    from tracejit.backends.interpreter import run_graph as eval_graph
    for a, b in zip(eval_graph(joint, [x]), eval_graph(simplified, [x])):
        np.testing.assert_array_equal(a, b)


def test_logsumexp_uses_stop_gradient_and_is_stable(backend):
    x = np.array([1000.0, 1000.0, -1000.0])
    value, g = tj.value_and_grad(lambda x: tnp.logsumexp(x), backend=backend)(x)
    np.testing.assert_allclose(value, 1000.0 + np.log(2.0), rtol=1e-14)
    np.testing.assert_allclose(g, [0.5, 0.5, 0.0], atol=1e-300)
