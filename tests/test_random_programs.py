"""Property-based: hypothesis builds random expression programs (a DAG of unary/binary ops
over 1-3 inputs of broadcastable shapes; the last value goes through a sum/mean/max/logsumexp
reduction and every other value is summed into the loss with its own weight) and checks
tracejit's forward value against NumPy running the same program, and its gradient against
finite differences in float64, on each backend."""
from __future__ import annotations

import numpy as np
import pytest
from helpers import BACKENDS
from hypothesis import given, settings
from hypothesis import strategies as st

import tracejit as tj
import tracejit.numpy as tnp

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
}
BINARY = {
    "add": lambda x, y: x + y,
    "sub": lambda x, y: x - y,
    "mul": lambda x, y: x * y,
    "div_safe": lambda x, y: x / (y * y + 1),
    "hypot_ish": lambda x, y: np.sqrt(x * x + y * y + 0.1),
    "where_gt": lambda x, y: np.where(x > y + 0.25, x * y, x - y),
    "mean_mix": lambda x, y: (x + y) * 0.5 + np.tanh(x) * y,
}
REDUCTIONS = {
    "sum": lambda v: np.sum(v),
    "mean": lambda v: np.mean(v),
    "max": lambda v: np.max(v),
    "sum_axis_then_max": lambda v: np.max(np.sum(v, axis=0)) if np.ndim(v) else v * 1.0,
    "logsumexp": lambda v: tnp.logsumexp(v),
}


@st.composite
def programs(draw):
    """(n_inputs, input shapes, list of ops as (name, operand indices), reduction, seed)."""
    ndim = draw(st.integers(0, 3))
    full = tuple(draw(st.lists(st.integers(1, 4), min_size=ndim, max_size=ndim)))
    n_in = draw(st.integers(1, 3))
    shapes = []
    for _ in range(n_in):
        drop = draw(st.integers(0, ndim))  # leading dims dropped (NumPy broadcasting)
        dims = [1 if draw(st.booleans()) and d > 1 and draw(st.booleans()) else d
                for d in full[drop:]]
        shapes.append(tuple(dims))
    ops = []
    n_values = n_in
    for _ in range(draw(st.integers(1, 6))):
        if draw(st.booleans()):
            name = draw(st.sampled_from(sorted(UNARY)))
            ops.append((name, (draw(st.integers(0, n_values - 1)),)))
        else:
            name = draw(st.sampled_from(sorted(BINARY)))
            ops.append((name, (draw(st.integers(0, n_values - 1)),
                               draw(st.integers(0, n_values - 1)))))
        n_values += 1
    reduction = draw(st.sampled_from(sorted(REDUCTIONS)))
    seed = draw(st.integers(0, 2**31 - 1))
    return shapes, ops, reduction, seed


def build(ops, reduction):
    """The program as a plain Python function of its inputs (NumPy calls only), so NumPy
    can run it eagerly and tracejit can trace it."""
    def program(*xs):
        values = list(xs)
        for name, idx in ops:
            fn = UNARY.get(name) or BINARY[name]
            values.append(fn(*[values[i] for i in idx]))
        # every value (inputs and intermediates) reaches the loss, each with its own weight,
        # so a wrong gradient on any path shows; the last value goes through `reduction`
        loss = REDUCTIONS[reduction](values[-1])
        for k, v in enumerate(values[:-1]):
            loss = loss + np.sum(v) * (0.5 + 0.25 * k)
        return loss
    return program


def describe(shapes, ops, reduction) -> str:
    return f"inputs {shapes}, ops {ops}, reduction {reduction}"


def check_program(prog_spec, backend):
    shapes, ops, reduction, seed = prog_spec
    rng = np.random.default_rng(seed)
    xs = [rng.uniform(-2, 2, s) for s in shapes]
    program = build(ops, reduction)
    with np.errstate(all="ignore"):
        want = program(*xs)
    got = tj.jit(program, backend=backend)(*xs)
    assert np.shape(got) == () and np.asarray(got).dtype == np.float64
    np.testing.assert_allclose(got, want, rtol=1e-10, atol=1e-12,
                               err_msg=describe(shapes, ops, reduction))
    # float32: same program, the result dtype stays float32
    xs32 = [x.astype(np.float32) for x in xs]
    got32 = tj.jit(program, backend=backend)(*xs32)
    assert np.asarray(got32).dtype == np.float32, describe(shapes, ops, reduction)
    np.testing.assert_allclose(got32, want, rtol=2e-3, atol=2e-3,
                               err_msg=describe(shapes, ops, reduction))
    # value and gradient together, then the gradient against finite differences
    value, grads = tj.value_and_grad(program, argnums=tuple(range(len(xs))),
                                     backend=backend)(*xs)
    np.testing.assert_allclose(value, want, rtol=1e-10, atol=1e-12)
    try:
        tj.check_grads(program, xs, argnums=tuple(range(len(xs))), backend=backend,
                       grads=grads, rtol=1e-5, atol=1e-6)
    except AssertionError as e:
        raise AssertionError(f"{describe(shapes, ops, reduction)}: {e}") from None


@given(programs())
def test_random_program_interpreter(prog_spec):
    check_program(prog_spec, "interpreter")


@pytest.mark.skipif("numba" not in BACKENDS, reason="numba backend not available")
@settings(max_examples=25)  # each example compiles kernels (~0.3-1 s)
@given(programs())
def test_random_program_numba(prog_spec):
    check_program(prog_spec, "numba")


def test_program_builder_matches_hand_written():
    """The harness itself: a known program and gradient. Values: x, y, x*y, tanh(x*y); the
    last is summed, the others enter the loss with weights 0.5, 0.75 and 1.0."""
    prog = build([("mul", (0, 1)), ("tanh", (2,))], "sum")
    x, y = np.array([0.5, -1.0]), np.array([2.0, 0.25])
    t = np.tanh(x * y)
    np.testing.assert_allclose(prog(x, y), np.sum(t) + 0.5 * np.sum(x) + 0.75 * np.sum(y)
                               + 1.0 * np.sum(x * y))
    gx, gy = tj.grad(prog, argnums=(0, 1))(x, y)
    np.testing.assert_allclose(gx, y * (1 - t ** 2) + 0.5 + y)
    np.testing.assert_allclose(gy, x * (1 - t ** 2) + 0.75 + x)
