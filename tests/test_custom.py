"""custom_vjp: user gradient rules, inlined away after autodiff; check_grads: the FD oracle."""
from __future__ import annotations

import functools

import numpy as np
import pytest

import tracejit as tj
from tracejit import passes
from tracejit.gradcheck import GradientCheckError


@tj.custom_vjp
def clip_gradient(x):
    return x


clip_gradient.defvjp(lambda x: (x, None), lambda res, g: (np.clip(g, -1.0, 1.0),))


@tj.custom_vjp
def my_sin(x):
    return np.sin(x)


my_sin.defvjp(lambda x: (np.sin(x), np.cos(x)), lambda cos_x, g: (g * cos_x,))


def test_custom_vjp_replaces_gradient(backend):
    f = tj.grad(lambda x: np.sum(clip_gradient(x) * np.array([0.5, 3.0, -4.0])), backend=backend)
    np.testing.assert_allclose(f(np.ones(3)), [0.5, 1.0, -1.0])


def test_custom_vjp_residuals_and_second_order(backend):
    x = np.linspace(0.0, 1.0, 5)
    g = tj.grad(lambda x: np.sum(my_sin(x)), backend=backend)
    np.testing.assert_allclose(g(x), np.cos(x))
    # grad of grad differentiates bwd's own primitives: d/dx cos(x) = -sin(x)
    gg = tj.grad(lambda x: np.sum(tj.grad(lambda y: np.sum(my_sin(y)))(x)), backend=backend)
    np.testing.assert_allclose(gg(x), -np.sin(x), atol=1e-12)


def test_custom_vjp_forward_jit_and_eager(backend):
    x = np.linspace(0.0, 1.0, 4)
    np.testing.assert_allclose(tj.jit(lambda x: my_sin(x) * 2, backend=backend)(x),
                               2 * np.sin(x))
    np.testing.assert_allclose(my_sin(x), np.sin(x))


def test_custom_vjp_is_inlined_before_fusion():
    f = lambda x: np.sum(my_sin(x))
    forward = tj.make_ir(f)(np.ones(3))
    assert "custom_vjp_call[body=my_sin]" in str(forward)
    joint = passes.simplify(tj.make_ir(tj.grad(f))(np.ones(3)))
    assert all(e.prim.kind != "call" for e in joint.eqns), str(joint)


def test_custom_vjp_nondiff_argnums_and_two_args(backend):
    @functools.partial(tj.custom_vjp, nondiff_argnums=(2,))
    def scaled_round(x, w, bits):
        s = 2.0 ** bits
        return np.round(x * w * s) / s

    scaled_round.defvjp(lambda x, w, bits: (scaled_round(x, w, bits), (x, w)),
                        lambda bits, res, g: (g * res[1], g * res[0]))
    x, w = np.linspace(0, 1, 4), np.full(4, 2.0)
    gx, gw = tj.grad(lambda x, w: np.sum(scaled_round(x, w, 3)), argnums=(0, 1),
                     backend=backend)(x, w)
    np.testing.assert_allclose(gx, w)
    np.testing.assert_allclose(gw, x)


def test_custom_vjp_bad_bwd_names_the_problem():
    @tj.custom_vjp
    def f(x):
        return x

    f.defvjp(lambda x: (x, None), lambda res, g: g)  # not a tuple
    with pytest.raises(tj.GradientError, match="one cotangent per differentiable argument"):
        tj.grad(lambda x: np.sum(f(x)))(np.ones(2))


def test_custom_vjp_without_rule():
    f = tj.custom_vjp(lambda x: x)
    with pytest.raises(tj.GradientError, match="defvjp"):
        tj.grad(lambda x: np.sum(f(x)))(np.ones(2))


def test_check_grads_passes_on_correct_gradients():
    tj.check_grads(lambda x: np.sum(np.sin(x) ** 2), (np.linspace(0, 1, 5),))
    tj.check_grads(lambda x: np.sum(my_sin(x) * x), (np.linspace(0, 1, 5),))
    params = {"W": np.ones((2, 3)), "b": np.zeros(2)}
    tj.check_grads(lambda p, y: np.sum(np.tanh(p["W"] * y) ** 2) + np.sum(p["b"] ** 3),
                   (params, np.ones(3)), argnums=0)


def test_check_grads_names_argument_and_mismatch():
    params = {"W": np.ones((2, 3)), "b": np.ones(2)}
    loss = lambda p, y: np.sum(np.tanh(p["W"] * y)) + np.sum(tj.stop_gradient(p["b"]) ** 2)
    with pytest.raises(GradientCheckError, match=r"argument 0 \(p\['b'\]\)") as info:
        tj.check_grads(loss, (params, np.ones(3)))
    assert "mismatch" in str(info.value)
    assert isinstance(info.value, AssertionError) and isinstance(info.value, tj.TracejitError)


def test_custom_vjp_cotangent_broadcasts_and_shape_errors_name_bwd():
    @tj.custom_vjp
    def f(x):
        return x * 2

    f.defvjp(lambda x: (x * 2, x), lambda x, g: (np.sum(g * x),))  # a scalar: broadcast
    np.testing.assert_allclose(tj.grad(lambda x: np.sum(f(x)))(np.ones(3)), [3.0, 3.0, 3.0])
    f.defvjp(lambda x: (x * 2, x), lambda x, g: (np.ones(7),))
    with pytest.raises(tj.GradientError, match=r"shape \(7,\).*shape \(3,\)"):
        tj.grad(lambda x: np.sum(f(x)))(np.ones(3))
