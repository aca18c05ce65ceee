"""custom_vjp: user gradient rules, inlined away after autodiff; check_grads: the FD oracle."""
from __future__ import annotations

import functools
import os

import numpy as np
import pytest

import tracejit as tj
from helpers import line_of
from tracejit import passes
from tracejit.gradcheck import GradientCheckError

HERE = os.path.abspath(__file__)


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
    assert "= custom_vjp_call " in str(forward) and "body=my_sin\n" in str(forward)
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


def _sum_cotangent_bwd(x, g):
    return (np.sum(g * x),)  # MARK-scalar-cotangent


def test_custom_vjp_cotangent_shape_is_checked_not_broadcast():
    # JAX rejects this rule; broadcasting it gave the gradient [3, 3, 3]
    @tj.custom_vjp
    def f(x):
        return x * 2

    f.defvjp(lambda x: (x * 2, x), _sum_cotangent_bwd)
    with pytest.raises(tj.GradientError) as e:
        tj.grad(lambda x: np.sum(f(x)))(np.ones(3))
    msg = str(e.value)
    assert msg.startswith("custom_vjp(f): the cotangent that bwd rule _sum_cotangent_bwd "
                          "returned for argument 0 (x) has shape (), but the argument has "
                          "shape (3,)."), msg
    assert f'File "{HERE}", line {line_of(HERE, "# MARK-scalar-cotangent")}' in msg, msg
    assert "Fix: " in msg and "np.broadcast_to" in msg
    f.defvjp(lambda x: (x * 2, x), lambda x, g: (np.ones(7),))
    with pytest.raises(tj.GradientError, match=r"shape \(7,\), but the argument has shape "
                                               r"\(3,\)"):
        tj.grad(lambda x: np.sum(f(x)))(np.ones(3))


def test_custom_vjp_cotangent_dtype_is_checked():
    @tj.custom_vjp
    def f(x):
        return x

    f.defvjp(lambda x: (x, None), lambda res, g: (g.astype(np.float64),))  # MARK-dtype-ct
    with pytest.raises(tj.GradientError, match=r"argument 0 \(x\) has dtype float64, but the "
                                               r"argument has dtype float32") as e:
        tj.grad(lambda x: np.sum(f(x)))(np.ones(3, np.float32))
    assert f'File "{HERE}", line {line_of(HERE, "# MARK-dtype-ct")}' in str(e.value)
    assert ".astype(x.dtype)" in str(e.value).splitlines()[-1]
    f.defvjp(lambda x: (x, None), lambda res, g: (2.0 * g,))  # weak scalars keep float32
    assert tj.grad(lambda x: np.sum(f(x)))(np.ones(3, np.float32)).dtype == np.float32


def test_custom_vjp_cotangent_errors_name_the_leaf_of_a_container():
    @tj.custom_vjp
    def f(p):
        return p["w"] * p["b"]

    f.defvjp(lambda p: (f(p), p), lambda p, g: ({"b": np.sum(g * p["w"]), "w": g},))
    params = {"w": np.ones(3), "b": np.ones(3)}
    with pytest.raises(tj.GradientError, match=r"argument 0 \(p\['b'\]\) has shape \(\)"):
        tj.grad(lambda p: np.sum(f(p)))(params)


def test_custom_vjp_scalar_argument_takes_a_python_scalar_cotangent(backend):
    @tj.custom_vjp
    def scale(x, s):
        return x * s

    scale.defvjp(lambda x, s: (x * s, (x, s)), lambda res, g: (g * res[1], 1.0))
    gx, gs = tj.grad(lambda x, s: np.sum(scale(x, s)), argnums=(0, 1),
                     backend=backend)(np.ones(3), 2.0)
    np.testing.assert_allclose(gx, [2.0, 2.0, 2.0])
    assert gs == 1.0
