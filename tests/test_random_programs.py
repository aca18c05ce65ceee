"""Property-based: hypothesis builds random programs and checks tracejit against NumPy running
the same program (forward) and against finite differences in float64 (gradient), on each
backend.

A program is a DAG over 1-3 inputs whose shapes broadcast the NumPy way (size-1 axes,
lower rank). Its nodes are smooth unary and binary ops, reductions (sum, mean, max) over
any axis or all of them with keepdims True and False, `stop_gradient` nodes and `where`
nodes. Every value reaches the loss: the last one through the final reduction, every other
one summed with its own weight, so a wrong gradient on any path shows. Each program is run
on a first call, a cached call with new values, and a call with new shapes.

TRACEJIT_LONG=1 runs thousands of programs (run before resolving an issue that touches
the pipeline; CI runs the derandomized default).
"""
from __future__ import annotations

import os

import numpy as np
import pytest
from helpers import BACKENDS
from hypothesis import given, settings
from hypothesis import strategies as st

import tracejit as tj
import tracejit.numpy as tnp

LONG = bool(os.environ.get("TRACEJIT_LONG"))
EXAMPLES = {"interpreter": 5000 if LONG else 60, "numba": 1500 if LONG else 25,
            "cuda": 300 if LONG else 20}

# ops smooth and finite on all of R (so any composition stays in their domain)
UNARY = {
    "neg": lambda x: -x,
    "tanh": np.tanh,
    "sin": np.sin,
    "cos": lambda x: np.cos(x),
    "arctan": np.arctan,
    "exp_tanh": lambda x: np.exp(np.tanh(x)),
    "log_sq1": lambda x: np.log(x * x + 1),
    "log1p_sq": lambda x: np.log1p(x ** 2),
    "sqrt_sq": lambda x: np.sqrt(x * x + 0.5),
    "sigmoid": lambda x: tnp.sigmoid(x),
    "softplus": lambda x: tnp.softplus(x),
    "square": np.square,
    "affine": lambda x: 0.5 * x + 1.0,
    "recip_sq1": lambda x: 1.0 / (1.0 + x * x),
    "pow_sq1": lambda x: (x * x + 1) ** 0.75,
    "stop_gradient": tj.stop_gradient,
}
BINARY = {
    "add": lambda x, y: x + y,
    "sub": lambda x, y: x - y,
    "mul": lambda x, y: x * y,
    "div_safe": lambda x, y: x / (y * y + 1),
    "hypot_ish": lambda x, y: np.sqrt(x * x + y * y + 0.1),
    "maximum": np.maximum,
    "mean_mix": lambda x, y: (x + y) * 0.5 + np.tanh(x) * y,
}
REDUCE = {"sum": np.sum, "mean": np.mean, "max": np.max}
FINAL = {
    "sum": lambda v: np.sum(v),
    "mean": lambda v: np.mean(v),
    "max": lambda v: np.max(v),
    "logsumexp": lambda v: tnp.logsumexp(v),
}


def _reduced(shape, axis, keepdims):
    axes = range(len(shape)) if axis is None else [axis]
    if keepdims:
        return tuple(1 if i in axes else d for i, d in enumerate(shape))
    return tuple(d for i, d in enumerate(shape) if i not in axes)


def _broadcast(*shapes):
    try:
        return tuple(np.broadcast_shapes(*shapes))
    except ValueError:
        return None


@st.composite
def programs(draw):
    """(input shapes, ops, final reduction, seed); an op is (kind, name, operand indices,
    params). Shapes are drawn from one full shape with leading axes dropped and some axes 1."""
    ndim = draw(st.integers(0, 3))
    full = tuple(draw(st.lists(st.integers(1, 4), min_size=ndim, max_size=ndim)))
    shapes = []
    for _ in range(draw(st.integers(1, 3))):
        drop = draw(st.integers(0, ndim))  # leading dims dropped (NumPy broadcasting)
        shapes.append(tuple(1 if d > 1 and draw(st.integers(0, 3)) == 0 else d
                            for d in full[drop:]))
    values, ops = list(shapes), []
    for _ in range(draw(st.integers(1, 7))):
        kind = draw(st.sampled_from(["unary", "binary", "binary", "reduce", "where"]))
        i = draw(st.integers(0, len(values) - 1))
        j = draw(st.integers(0, len(values) - 1))
        k = draw(st.integers(0, len(values) - 1))
        if kind == "binary" and _broadcast(values[i], values[j]) is not None:
            ops.append(("binary", draw(st.sampled_from(sorted(BINARY))), (i, j), {}))
            values.append(_broadcast(values[i], values[j]))
        elif kind == "where" and _broadcast(values[i], values[j], values[k]) is not None:
            ops.append(("where", "where", (i, j, k), {}))
            values.append(_broadcast(values[i], values[j], values[k]))
        elif kind == "reduce" and values[i]:
            axis = draw(st.sampled_from([None, *range(-len(values[i]), len(values[i]))]))
            keepdims = draw(st.booleans())
            ops.append(("reduce", draw(st.sampled_from(sorted(REDUCE))), (i,),
                        {"axis": axis, "keepdims": keepdims}))
            values.append(_reduced(values[i], None if axis is None else axis % len(values[i]),
                                   keepdims))
        else:
            ops.append(("unary", draw(st.sampled_from(sorted(UNARY))), (i,), {}))
            values.append(values[i])
    return shapes, ops, draw(st.sampled_from(sorted(FINAL))), draw(st.integers(0, 2**31 - 1))


def build(ops, final, frozen=None):
    """The program as a plain Python function of its inputs (NumPy calls only), so NumPy can
    run it eagerly and tracejit can trace it. With `frozen` (a list), stop_gradient nodes
    return the values recorded in it: the program NumPy differentiates for the check."""
    def program(*xs):
        values, sg = list(xs), 0
        for kind, name, idx, params in ops:
            args = [values[i] for i in idx]
            if kind == "unary" and name == "stop_gradient" and frozen is not None:
                if len(frozen) <= sg:
                    frozen.append(np.asarray(args[0], dtype=np.float64))
                out = frozen[sg]
                sg += 1
            elif kind == "unary":
                out = UNARY[name](*args)
            elif kind == "binary":
                out = BINARY[name](*args)
            elif kind == "where":
                out = np.where(args[0] > args[1] + 0.25, args[1], args[2])
            else:
                out = REDUCE[name](args[0], **params)
            values.append(out)
        # every value reaches the loss, each with its own weight; the last one through
        # the final reduction
        loss = FINAL[final](values[-1])
        for k, v in enumerate(values[:-1]):
            loss = loss + np.sum(v) * (0.5 + 0.25 * k)
        return loss
    return program


def describe(shapes, ops, final) -> str:
    return f"inputs {shapes}, ops {ops}, final {final}"


def _grown(shapes):
    """The same program's inputs with every axis longer than 1 one longer (a new shape)."""
    return [tuple(d + 1 if d > 1 else d for d in s) for s in shapes]


def _check_values(f, program, xs, msg, rtol=1e-10):
    with np.errstate(all="ignore"):
        want = program(*xs)
    got = f(*xs)
    assert np.shape(got) == () and np.asarray(got).dtype == np.asarray(want).dtype, msg
    np.testing.assert_allclose(got, want, rtol=rtol, atol=rtol, err_msg=msg)


def check_program(prog_spec, backend):
    shapes, ops, final, seed = prog_spec
    msg = describe(shapes, ops, final)
    rng = np.random.default_rng(seed)
    program = build(ops, final)
    f = tj.jit(program, backend=backend)
    # first call, a cached call with new values, a call with new shapes
    for s in (shapes, shapes, _grown(shapes)):
        _check_values(f, program, [rng.uniform(-2, 2, x) for x in s], msg)
    # float32: same program, the result dtype stays float32
    xs32 = [rng.uniform(-2, 2, s).astype(np.float32) for s in shapes]
    got32 = tj.jit(program, backend=backend)(*xs32)
    assert np.asarray(got32).dtype == np.float32, msg
    with np.errstate(all="ignore"):
        want32 = program(*xs32)  # NumPy in float32 too: `where` and max select the same
    np.testing.assert_allclose(got32, want32, rtol=2e-3, atol=2e-3, err_msg=msg)
    # value and gradient, first and cached call, against finite differences of the program
    # with its stop_gradient values held constant
    vg = tj.value_and_grad(program, argnums=tuple(range(len(shapes))), backend=backend)
    for _ in range(2):
        xs = [rng.uniform(-2, 2, s) for s in shapes]
        value, grads = vg(*xs)
        np.testing.assert_allclose(value, program(*xs), rtol=1e-10, atol=1e-10, err_msg=msg)
        frozen: list = []
        held = build(ops, final, frozen)
        held(*xs)  # records the stop_gradient values at xs
        try:
            tj.check_grads(held, xs, argnums=tuple(range(len(xs))), backend=backend,
                           grads=grads, rtol=1e-5, atol=1e-6)
        except AssertionError as e:
            raise AssertionError(f"{msg}: {e}") from None


@settings(max_examples=EXAMPLES["interpreter"])
@given(programs())
def test_random_program_interpreter(prog_spec):
    check_program(prog_spec, "interpreter")


@pytest.mark.skipif("numba" not in BACKENDS, reason="numba backend not available")
@settings(max_examples=EXAMPLES["numba"])  # each example compiles kernels (~0.3-1 s)
@given(programs())
def test_random_program_numba(prog_spec):
    check_program(prog_spec, "numba")


def test_program_builder_matches_hand_written():
    """The harness itself: a known program and gradient. Values: x, y, x*y, tanh(x*y); the
    last is summed, the others enter the loss with weights 0.5, 0.75 and 1.0."""
    prog = build([("binary", "mul", (0, 1), {}), ("unary", "tanh", (2,), {})], "sum")
    x, y = np.array([0.5, -1.0]), np.array([2.0, 0.25])
    t = np.tanh(x * y)
    np.testing.assert_allclose(prog(x, y), np.sum(t) + 0.5 * np.sum(x) + 0.75 * np.sum(y)
                               + 1.0 * np.sum(x * y))
    gx, gy = tj.grad(prog, argnums=(0, 1))(x, y)
    np.testing.assert_allclose(gx, y * (1 - t ** 2) + 0.5 + y)
    np.testing.assert_allclose(gy, x * (1 - t ** 2) + 0.75 + x)


def test_stop_gradient_node_is_held_constant_by_the_oracle():
    """stop_gradient(x * x): the gradient of sum(sg) is 0, of the weighted x it is 0.5."""
    ops = [("binary", "mul", (0, 0), {}), ("unary", "stop_gradient", (1,), {})]
    prog = build(ops, "sum")
    x = np.array([1.0, -2.0])
    g = tj.grad(prog)(x)
    np.testing.assert_allclose(g, 0.5 + 0.75 * 2 * x)
    frozen: list = []
    held = build(ops, "sum", frozen)
    held(x)
    tj.check_grads(held, (x,), grads=(g,))


def test_compile_failure_regression():
    """A program the random tests missed: a row max over a size-1 axis after a max whose
    operand is a broadcast of an earlier max ("Variable 'v9' is not defined")."""
    def f(v0, v1, v2):
        def e(v):
            return np.exp(np.tanh(v))
        v3 = v0 + v0
        v4 = v0 + v0
        v6 = v0 + v0
        v7 = v0 + v0
        v5 = np.max(v0, axis=0, keepdims=True)
        v10 = np.max(e(v5), axis=0, keepdims=True)
        return (np.sum(v3) + np.sum(v4) + np.sum(v6) + np.sum(v7)
                + np.sum(e(v0)) + np.sum(v10))

    r = np.random.default_rng(0)
    for dtype in (np.float64, np.float32):
        args = [r.uniform(-1.5, 1.5, size=s).astype(dtype)
                for s in [(2, 2, 1), (1, 1, 1), (1, 1, 1)]]
        v, (g,) = tj.jit_grad(argnums=(0,))(f)(*args)
        want_v, (want_g,) = tj.value_and_grad(f, argnums=(0,), backend="interpreter")(*args)
        tol = 1e-5 if dtype == np.float32 else 1e-12
        np.testing.assert_allclose(v, want_v, rtol=tol)
        np.testing.assert_allclose(g, want_g, rtol=tol, atol=tol)
