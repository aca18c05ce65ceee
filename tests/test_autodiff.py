"""Reverse-mode autodiff: nested gradients, pytrees, has_aux, argnums, unconnected inputs,
tie/kink conventions (JAX's) and symbolic zeros."""
from __future__ import annotations

import math

import numpy as np
import pytest

import tracejit as tj
import tracejit.numpy as tnp
from tracejit import passes
from tracejit.autodiff import vjp_graph
from tracejit.ir import Var, check_graph

# ----- grad(grad(f)) against analytic second derivatives -----
SECOND_DERIVATIVES = {
    "sin": (lambda x: np.sin(x), lambda x: -math.sin(x)),
    "exp_x2": (lambda x: np.exp(x * x), lambda x: (2 + 4 * x * x) * math.exp(x * x)),
    "x3": (lambda x: x ** 3, lambda x: 6 * x),
    "pow_2_5": (lambda x: x ** 2.5, lambda x: 2.5 * 1.5 * x ** 0.5),
    "log": (lambda x: np.log(x), lambda x: -1 / x ** 2),
    "tanh": (lambda x: np.tanh(x), lambda x: -2 * math.tanh(x) * (1 - math.tanh(x) ** 2)),
    "sigmoid": (lambda x: tnp.sigmoid(x),
                lambda x: (s := 1 / (1 + math.exp(-x))) * (1 - s) * (1 - 2 * s)),
    "recip": (lambda x: 1 / x, lambda x: 2 / x ** 3),
    "sqrt": (lambda x: np.sqrt(x), lambda x: -0.25 * x ** -1.5),
    "x_sin_x": (lambda x: x * np.sin(x), lambda x: 2 * math.cos(x) - x * math.sin(x)),
    "arctan": (lambda x: np.arctan(x), lambda x: -2 * x / (1 + x * x) ** 2),
    "softplus": (lambda x: tnp.softplus(x),
                 lambda x: (s := 1 / (1 + math.exp(-x))) * (1 - s)),
}


@pytest.mark.parametrize("name", sorted(SECOND_DERIVATIVES))
@pytest.mark.parametrize("x", [0.7, 1.3])
def test_grad_of_grad_scalar(name, x, backend):
    f, d2 = SECOND_DERIVATIVES[name]
    gg = tj.grad(tj.grad(f, backend=backend), backend=backend)
    got = gg(x)
    assert np.shape(got) == ()
    np.testing.assert_allclose(got, d2(x), rtol=1e-10)


def test_grad_of_grad_of_grad():
    f = lambda x: x ** 4  # noqa: E731
    assert tj.grad(tj.grad(tj.grad(f)))(2.0) == pytest.approx(24 * 2.0)


def test_grad_of_grad_array_sum(backend):
    # d/dx sum(grad(sum(x^3))) = sum of 6x: elementwise second derivative
    x = np.array([0.5, -1.0, 2.0])
    h = tj.grad(lambda x: np.sum(tj.grad(lambda y: np.sum(y ** 3))(x) * x), backend=backend)(x)
    np.testing.assert_allclose(h, 9 * x ** 2)  # d/dx (3x^2 * x) = 9x^2


def test_hessian_vector_product_vs_finite_differences(backend):
    w = np.array([0.3, -0.2, 0.5])

    def f(x):
        return np.sum(np.tanh(x) * np.exp(x[::-1] * 0.5)) + np.prod(x)

    def hvp(x):
        return np.sum(tj.grad(f)(x) * w)
    x = np.array([0.4, -0.7, 1.1])
    got = tj.grad(hvp, backend=backend)(x)
    eps = 1e-5
    g = tj.grad(f)
    fd = (g(x + eps * w) - g(x - eps * w)) / (2 * eps)
    np.testing.assert_allclose(got, fd, rtol=1e-7, atol=1e-9)


def test_nested_grad_closure_over_outer_traced_value(backend):
    # f(x) = d/dy [x * y^2] at y = x  = 2 x^2;  f'(x) = 4x
    def f(x):
        return tj.grad(lambda y: x * y ** 2)(x)
    assert tj.grad(f, backend=backend)(3.0) == pytest.approx(12.0)


def test_nested_grad_concrete_args_closure_over_outer_tracer(backend):
    # the closed-over value used only inside the inner function: g(x) = d/dy sin(x*y) at y=1
    # = x cos(x);  g'(x) = cos(x) - x sin(x)
    g = lambda x: tj.grad(lambda y: np.sin(x * y))(1.0)  # noqa: E731
    np.testing.assert_allclose(tj.grad(g, backend=backend)(0.8),
                               math.cos(0.8) - 0.8 * math.sin(0.8), rtol=1e-12)


def test_value_and_grad_inside_grad(backend):
    def f(x):
        v, g = tj.value_and_grad(lambda y: np.sum(np.sin(y) * x))(x)
        return v + np.sum(g)  # sum(sin(x) x) + sum(cos(x) x)
    x = np.array([0.1, 0.9])
    tj.check_grads(f, [x], argnums=(0,), backend=backend)


# ----- pytrees -----
def test_pytree_arguments_and_gradients(backend):
    params = {"w": np.array([[1.0, 2.0], [3.0, 4.0]]), "b": [np.array([0.5, -0.5]), 2.0],
              "nested": ({"c": np.array(3.0)},)}

    def loss(p, x):
        h = np.tanh(x @ p["w"] + p["b"][0]) * p["b"][1]
        return np.sum(h ** 2) * p["nested"][0]["c"]
    x = np.array([[0.1, -0.2], [0.3, 0.4], [0.0, 1.0]])
    g = tj.grad(loss, backend=backend)(params, x)
    assert isinstance(g, dict) and set(g) == {"w", "b", "nested"}
    assert isinstance(g["b"], list) and len(g["b"]) == 2
    assert isinstance(g["nested"], tuple) and isinstance(g["nested"][0], dict)
    assert g["w"].shape == (2, 2) and g["b"][0].shape == (2,) and np.shape(g["b"][1]) == ()
    tj.check_grads(loss, [params, x], argnums=(0, 1), backend=backend)


def test_pytree_tuple_and_list_args(backend):
    f = lambda t, lst: np.sum(t[0] * t[1]) + lst[0] * lst[1]  # noqa: E731
    a, b = np.array([1.0, 2.0]), np.array([3.0, 4.0])
    gt, gl = tj.grad(f, argnums=(0, 1), backend=backend)((a, b), [2.0, 5.0])
    assert isinstance(gt, tuple) and isinstance(gl, list)
    np.testing.assert_array_equal(gt[0], b)
    np.testing.assert_array_equal(gt[1], a)
    assert gl == [5.0, 2.0]


def test_pytree_output_value(backend):
    def f(x):
        return np.sum(x ** 2), {"mean": np.mean(x), "parts": [x * 2, np.max(x)]}
    (value, aux), g = tj.value_and_grad(f, has_aux=True, backend=backend)(np.array([1.0, 3.0]))
    assert value == 10.0 and aux["mean"] == 2.0 and aux["parts"][1] == 3.0
    np.testing.assert_array_equal(aux["parts"][0], [2.0, 6.0])
    np.testing.assert_array_equal(g, [2.0, 6.0])


# ----- has_aux -----
def test_has_aux_value_and_grad(backend):
    f = lambda x, y: (np.sum(x * y), x + y)  # noqa: E731
    x, y = np.array([1.0, 2.0]), np.array([3.0, 5.0])
    (value, aux), g = tj.value_and_grad(f, has_aux=True, backend=backend)(x, y)
    assert value == 13.0
    np.testing.assert_array_equal(aux, x + y)
    np.testing.assert_array_equal(g, y)
    (value2, aux2), g2 = tj.jit_grad(f, has_aux=True, argnums=(0, 1), backend=backend)(x, y)
    assert value2 == 13.0 and isinstance(g2, tuple)
    np.testing.assert_array_equal(g2[1], x)


def test_has_aux_grad(backend):
    f = lambda x: (np.sum(np.sin(x)), {"x2": x * 2})  # noqa: E731
    x = np.array([0.0, 1.0])
    g, aux = tj.grad(f, has_aux=True, backend=backend)(x)
    np.testing.assert_allclose(g, np.cos(x))
    np.testing.assert_array_equal(aux["x2"], x * 2)


def test_has_aux_decorator_form(backend):
    @tj.jit_grad(has_aux=True, argnums=1, backend=backend)
    def loss(w, x):
        return np.sum((w * x) ** 2), np.mean(x)
    (value, aux), g = loss(2.0, np.array([1.0, 2.0]))
    assert value == 20.0 and aux == 1.5
    np.testing.assert_array_equal(g, [8.0, 16.0])


# ----- argnums -----
def _f3(a, b, c):
    return np.sum(a * b + np.sin(c))


ARGS3 = (np.array([1.0, 2.0]), np.array([3.0, 4.0]), np.array([0.5, 0.25]))


@pytest.mark.parametrize("argnums,expected", [
    (0, "b"), (1, "a"), (2, "cos"), (-1, "cos"), (-3, "b"),
    ((0,), ("b",)), ((1,), ("a",)), ((0, 2), ("b", "cos")), ((2, 0), ("cos", "b")),
    ((-1, 1), ("cos", "a")), ((0, 1, 2), ("b", "a", "cos"))])
def test_argnums_combinations(argnums, expected, backend):
    a, b, c = ARGS3
    values = {"a": a, "b": b, "cos": np.cos(c)}
    g = tj.grad(_f3, argnums=argnums, backend=backend)(a, b, c)
    if isinstance(argnums, int):
        assert isinstance(g, np.ndarray)
        np.testing.assert_allclose(g, values[expected])
    else:
        assert isinstance(g, tuple) and len(g) == len(expected)
        for gi, e in zip(g, expected):
            np.testing.assert_allclose(gi, values[e])
    v, g2 = tj.value_and_grad(_f3, argnums=argnums, backend=backend)(a, b, c)
    assert v == pytest.approx(_f3(a, b, c))
    assert type(g2) is type(g)


def test_argnums_with_kwargs_and_static(backend):
    def f(x, n, scale=1.0):
        return np.sum(x ** n) * scale
    g = tj.grad(f, static_argnums=1, backend=backend)(np.array([1.0, 2.0]), 3, scale=2.0)
    np.testing.assert_allclose(g, 2 * 3 * np.array([1.0, 4.0]))


# ----- unconnected inputs -----
def test_unconnected_zero_and_none(backend):
    f = lambda x, y, n: np.sum(x * 2.0) + 0 * n  # noqa: E731   (n connected via 0*n)
    x, y = np.ones((2, 3), np.float32), np.ones(4)
    gx, gy, gn = tj.grad(f, argnums=(0, 1, 2), backend=backend)(x, y, 1.0)
    assert gy.shape == (4,) and gy.dtype == np.float64 and not gy.any()
    assert gx.dtype == np.float32
    gx, gy, gn = tj.grad(f, argnums=(0, 1, 2), unconnected="none", backend=backend)(x, y, 1.0)
    assert gy is None and gn == 0.0
    np.testing.assert_array_equal(gx, np.full((2, 3), 2.0, np.float32))


def test_unconnected_none_in_pytree(backend):
    f = lambda p: np.sum(p["used"] ** 2)  # noqa: E731
    p = {"used": np.array([1.0, 2.0]), "unused": np.array([3.0])}
    g = tj.grad(f, unconnected="none", backend=backend)(p)
    assert g["unused"] is None
    np.testing.assert_array_equal(g["used"], [2.0, 4.0])
    g0 = tj.grad(f, backend=backend)(p)
    np.testing.assert_array_equal(g0["unused"], [0.0])


def test_unconnected_through_integer_path(backend):
    # x reaches the loss only through argmax (integer) and comparisons: no gradient
    f = lambda x, y: np.sum(y * (x > 0)) + np.argmax(x) * 1.0  # noqa: E731
    gx, gy = tj.grad(f, argnums=(0, 1), unconnected="none", backend=backend)(
        np.array([1.0, -1.0]), np.array([2.0, 3.0]))
    assert gx is None
    np.testing.assert_array_equal(gy, [1.0, 0.0])


# ----- ties and kinks follow JAX -----
def test_max_reduction_ties_share_equally(backend):
    x = np.array([1.0, 3.0, 3.0, 2.0, 3.0])
    g = tj.grad(lambda x: np.max(x), backend=backend)(x)
    np.testing.assert_allclose(g, [0, 1 / 3, 1 / 3, 0, 1 / 3])
    g = tj.grad(lambda x: np.sum(np.min(x, axis=1) * np.array([1.0, 2.0])), backend=backend)(
        np.array([[0.0, 0.0, 5.0], [1.0, 2.0, 3.0]]))
    np.testing.assert_allclose(g, [[0.5, 0.5, 0.0], [2.0, 0.0, 0.0]])


def test_maximum_minimum_tie_half_each(backend):
    g = tj.grad(lambda x, y: np.maximum(x, y), argnums=(0, 1), backend=backend)(2.0, 2.0)
    assert g == (0.5, 0.5)
    g = tj.grad(lambda x, y: np.minimum(x, y), argnums=(0, 1), backend=backend)(2.0, 2.0)
    assert g == (0.5, 0.5)
    g = tj.grad(lambda x, y: np.maximum(x, y), argnums=(0, 1), backend=backend)(3.0, 2.0)
    assert g == (1.0, 0.0)


def test_abs_and_relu_at_zero(backend):
    assert tj.grad(lambda x: np.abs(x), backend=backend)(0.0) == 0.0
    assert tj.grad(lambda x: tnp.relu(x), backend=backend)(0.0) == 0.0
    g = tj.grad(lambda x: np.sum(tnp.relu(x)), backend=backend)(np.array([-1.0, 0.0, 2.0]))
    np.testing.assert_array_equal(g, [0.0, 0.0, 1.0])
    g = tj.grad(lambda x: np.sum(np.abs(x)), backend=backend)(np.array([-1.0, 0.0, 2.0]))
    np.testing.assert_array_equal(g, [-1.0, 0.0, 1.0])


def test_clip_gradient_at_bounds(backend):
    # inside: 1; outside: 0; exactly at a bound: maximum/minimum ties -> 0.5
    g = tj.grad(lambda x: np.sum(np.clip(x, -1.0, 1.0)), backend=backend)(
        np.array([-2.0, -1.0, 0.0, 1.0, 2.0]))
    np.testing.assert_array_equal(g, [0.0, 0.5, 1.0, 0.5, 0.0])


def test_reduce_prod_with_zeros(backend):
    f = tj.grad(lambda x: np.prod(x), backend=backend)
    np.testing.assert_array_equal(f(np.array([2.0, 3.0, 4.0])), [12.0, 8.0, 6.0])
    np.testing.assert_array_equal(f(np.array([2.0, 0.0, 4.0])), [0.0, 8.0, 0.0])
    np.testing.assert_array_equal(f(np.array([0.0, 3.0, 0.0])), [0.0, 0.0, 0.0])
    g = tj.grad(lambda x: np.sum(np.prod(x, axis=1)), backend=backend)(
        np.array([[1.0, 0.0, 5.0], [0.0, 0.0, 2.0], [2.0, 3.0, 4.0]]))
    np.testing.assert_array_equal(g, [[0, 5, 0], [0, 0, 0], [12, 8, 6]])


def test_pow_zero_base_gradient_finite(backend):
    gx, gy = tj.grad(lambda x, y: np.sum(x ** y), argnums=(0, 1), backend=backend)(
        np.array([0.0, 2.0]), np.array([2.0, 3.0]))
    np.testing.assert_array_equal(gx, [0.0, 12.0])
    np.testing.assert_allclose(gy, [0.0, 8 * np.log(2.0)])


# ----- symbolic zeros -----
def test_symbolic_zeros_no_equations_for_unreached_input():
    f = lambda x, y: np.sum(np.exp(x) * 2.0)  # noqa: E731
    x, y = np.ones(3), np.ones((4, 4))
    graph = tj.make_ir(f)(x, y)
    joint, connected = vjp_graph(graph, [0, 1])
    assert connected == [True, False]
    check_graph(joint)
    assert len(joint.outputs) == 2  # loss and the one connected gradient
    y_var = joint.inputs[1]
    assert not any(isinstance(a, Var) and a.id == y_var.id for e in joint.eqns
                   for a in e.inputs)
    # nothing of y's shape is ever built (no broadcast zeros, no loop of zeros)
    assert not any(v.aval.shape == (4, 4) for e in joint.eqns for v in e.outputs)


def test_symbolic_zeros_in_make_ir_of_grad():
    f = lambda x, y: np.sum(x * x)  # noqa: E731
    ir = passes.simplify(tj.make_ir(tj.grad(f, argnums=(0, 1)))(np.ones(3), np.ones((5, 7))))
    y_id = ir.inputs[1].id
    assert not any(isinstance(a, Var) and a.id == y_id for e in ir.eqns for a in e.inputs)
    assert not any(v.aval.shape == (5, 7) for e in ir.eqns for v in e.outputs)


def test_symbolic_zeros_through_stop_gradient_branch():
    def f(x, y):
        return np.sum(x * tj.stop_gradient(np.exp(y)))
    graph = tj.make_ir(f)(np.ones(3), np.ones(3))
    joint, connected = vjp_graph(graph, [0, 1])
    assert connected == [True, False]
    joint = passes.simplify(joint)
    # the backward pass is one multiply by exp(y); there is no gradient path into exp(y)
    names = [e.prim.name for e in joint.eqns]
    assert names.count("exp") == 1
    assert "stop_gradient" not in names


def test_fanout_accumulates(backend):
    # x used many times: cotangents are summed
    f = lambda x: np.sum(x * x + x * np.sin(x) + x)  # noqa: E731
    x = np.array([0.3, -1.2])
    np.testing.assert_allclose(tj.grad(f, backend=backend)(x),
                               2 * x + np.sin(x) + x * np.cos(x) + 1)


def test_grad_through_constant_closure(backend):
    w = np.array([1.0, -2.0, 0.5])
    c = 3.0
    f = lambda x: np.sum(w * x ** 2) * c  # noqa: E731
    np.testing.assert_allclose(tj.grad(f, backend=backend)(np.ones(3)), 2 * w * c)
