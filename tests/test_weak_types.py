"""Weak types (JAX's): a loop carry or a branch operand started from a Python scalar promotes
inside the body as a Python scalar would (NEP 50: float32 + weak float -> float32), the loop's
init takes the body's output dtype, and a weak result stays weak after the loop. Dtypes and
values against JAX (in x64 mode, whose defaults are NumPy's), under jit, grad, jvp and vmap;
gradients against finite differences in float64. Also: make_ir prints a checkpoint's body."""
from __future__ import annotations

import os
import types

import numpy as np
import pytest

import tracejit as tj
import tracejit.numpy as tnp
from tracejit.tracing import is_weak

X = np.array([0.5, 1.25, 2.0], np.float32)


def _i32(np_, x):
    return (x[0] > 0).astype(np.int32)  # a typed int32 scalar, 1


def _n(np_, x):
    return np_.sum(x > -10.0).astype(np.int32)  # a traced trip count, 3


# name -> f(L, np_, x): L has fori_loop, scan, while_loop, cond, switch, checkpoint
CASES = {
    "fori_static": lambda L, np_, x: L.fori_loop(0, 3, lambda i, c: c + np_.sum(x), 0.0),
    "fori_traced": lambda L, np_, x: L.fori_loop(0, _n(np_, x),
                                                 lambda i, c: c * 0.5 + np_.sum(x), 0.0),
    "fori_traced_index": lambda L, np_, x: L.fori_loop(0, _n(np_, x), lambda i, c: c + i, 0),
    "while_dict_mixed": lambda L, np_, x: L.while_loop(
        lambda c: c["n"] < 3, lambda c: {"n": c["n"] + 1, "s": c["s"] * 0.5 + x[0] * c["n"],
                                         "t": c["t"] + 1.0}, {"n": 0, "s": 0.0, "t": 0.0}),
    "while": lambda L, np_, x: L.while_loop(lambda c: c < 10.0, lambda c: c + np_.sum(x), 0.0),
    "while_cond_compares_weak": lambda L, np_, x: L.while_loop(
        lambda c: c < x[2] * 3.3, lambda c: c + x[0] * 1.1, 0.1),
    "scan": lambda L, np_, x: L.scan(lambda c, xi: (c * 0.5 + xi, None), 1.0, x)[0],
    "numpy_scalar_init_is_typed": lambda L, np_, x: L.scan(
        lambda c, xi: (c * 0.5 + xi, None), np.float64(1.0), x)[0],
    "scan_reverse_ys": lambda L, np_, x: L.scan(lambda c, xi: (c * xi, c * 2.0), 1.0, x,
                                                reverse=True),
    "scan_ys_typed": lambda L, np_, x: L.scan(lambda c, xi: (c, c * xi), 1.0, x)[1],
    "python_scalars_only": lambda L, np_, x: L.fori_loop(0, 3, lambda i, c: c + 1.5, 0.0),
    "weak_result_meets_f32": lambda L, np_, x: L.fori_loop(0, 3, lambda i, c: c * 1.5,
                                                           0.5) + x,
    "int_carry_py": lambda L, np_, x: L.fori_loop(0, 3, lambda i, c: c + 2, 0),
    "int_carry_i32": lambda L, np_, x: L.fori_loop(0, 3, lambda i, c: c + _i32(np_, x), 0),
    "int_carry_half": lambda L, np_, x: L.fori_loop(0, 3, lambda i, c: c + 0.5, 0),
    "int_carry_sin": lambda L, np_, x: L.scan(lambda c, xi: (np_.sin(c) + xi, None), 1, x)[0],
    "int_carry_index": lambda L, np_, x: L.fori_loop(0, 3, lambda i, c: c + i, 0),
    "f32_carry_index": lambda L, np_, x: L.fori_loop(0, 3, lambda i, c: c + i * 0.5, x[0]),
    "float_carry_i32_weak": lambda L, np_, x: L.fori_loop(
        0, 3, lambda i, c: c + _i32(np_, x), 0.0) + x,
    "bool_carry": lambda L, np_, x: L.fori_loop(0, 3, lambda i, c: c | (x[i] > 1.0), False),
    "pytree_mixed": lambda L, np_, x: L.scan(
        lambda c, xi: ((c[0] + xi, c[1] + 1, c[2] * 2.0), None), (0.0, 0, x[0]), x)[0],
    "nested": lambda L, np_, x: L.fori_loop(
        0, 2, lambda i, c: L.fori_loop(0, 2, lambda j, d: d + x[0], c), 0.0),
    "nested_weak": lambda L, np_, x: L.fori_loop(
        0, 2, lambda i, c: L.fori_loop(0, 2, lambda j, d: d + 1.0, c), 0.0) + x,
    "nested_closure": lambda L, np_, x: L.fori_loop(
        0, 2, lambda i, c: L.fori_loop(0, 2, lambda j, d: d + c, x[0]), 0.25),
    "where": lambda L, np_, x: L.scan(lambda c, xi: (np_.where(xi > 1.0, c, xi), None),
                                      1.0, x)[0],
    "stack": lambda L, np_, x: L.scan(lambda c, xi: (np_.stack([c, xi])[1] + c, None),
                                      1.0, x)[0],
    "maximum": lambda L, np_, x: L.scan(lambda c, xi: (np_.maximum(c, xi), None), 1.0, x)[0],
    "astype_is_typed": lambda L, np_, x: L.scan(
        lambda c, xi: (c.astype(np.float32) * 2.0, None), 1.0, x)[0] + np.float16(1),
    "checkpoint": lambda L, np_, x: L.scan(L.checkpoint(lambda c, xi: (c * 0.5 + xi, None)),
                                           1.0, x)[0],
    "cond_operand": lambda L, np_, x: L.cond(x[0] > 0, lambda a: a + x[1],
                                             lambda a: a * x[1], 1.0),
    "cond_weak_result": lambda L, np_, x: L.cond(x[0] > 0, lambda a: a + 1.0,
                                                 lambda a: a * 2.0, 1.0) + x,
    "switch_operand": lambda L, np_, x: L.switch(_i32(np_, x), [lambda a, b: a + x[1],
                                                                lambda a, b: a * b[2]], 1.0, x),
}

TJ = types.SimpleNamespace(fori_loop=tj.fori_loop, scan=tj.scan, while_loop=tj.while_loop,
                           cond=tj.cond, switch=tj.switch, checkpoint=tj.checkpoint)


@pytest.fixture(scope="module")
def jax_x64():
    """(lax-like namespace, jax.numpy, jax) in x64 mode: JAX's defaults are then NumPy's."""
    jax = pytest.importorskip("jax")
    lax = jax.lax
    ns = types.SimpleNamespace(fori_loop=lax.fori_loop, scan=lax.scan,
                               while_loop=lax.while_loop, cond=lax.cond, switch=lax.switch,
                               checkpoint=jax.checkpoint)
    return ns, jax.numpy, jax


def _flatten(tree):
    if isinstance(tree, dict):
        return _flatten([tree[k] for k in sorted(tree)])
    if isinstance(tree, (tuple, list)):
        return [leaf for t in tree for leaf in _flatten(t)]
    return [] if tree is None else [tree]


def _assert_like_jax(got, want):
    got, want = _flatten(got), _flatten(want)
    assert len(got) == len(want)
    for g, w in zip(got, want):
        g, w = np.asarray(g), np.asarray(w)
        if w.dtype.names == ("float0",):  # JAX's tangent of an int: tracejit's is zeros
            assert not np.any(g)
            continue
        assert g.dtype == w.dtype, f"dtype {g.dtype} != JAX's {w.dtype}"
        tol = 1e-5 if w.dtype in (np.float32, np.float16) else 1e-12
        np.testing.assert_allclose(g.astype(np.float64), w.astype(np.float64), rtol=tol)


@pytest.mark.parametrize("name", sorted(CASES))
def test_weak_carry_dtype_and_value_like_jax(name, jax_x64):
    L, jnp, jax = jax_x64
    f = CASES[name]
    got = tj.jit(lambda x: f(TJ, tnp, x), backend="interpreter")(X)
    with jax.enable_x64(True):
        want = jax.jit(lambda x: f(L, jnp, x))(X)
        _assert_like_jax(got, want)


# the examples of the issue, against JAX's default mode (x64 disabled)
@pytest.mark.parametrize("name", ["fori_static", "scan", "fori_traced", "while",
                                  "checkpoint", "cond_operand", "nested"])
def test_float32_like_jax_default_mode(name, jax_x64):
    L, jnp, jax = jax_x64
    f = CASES[name]
    got = tj.jit(lambda x: f(TJ, tnp, x), backend="interpreter")(X)
    want = jax.jit(lambda x: f(L, jnp, x))(X)
    assert np.asarray(got).dtype == np.float32 == want.dtype


@pytest.mark.parametrize("name", ["scan", "fori_static", "while", "cond_operand",
                                  "checkpoint", "pytree_mixed", "int_carry_sin"])
def test_eager_loops_promote_as_under_jit(name):
    """Called on NumPy arrays (no jit) a loop still traces its body: the same dtypes."""
    f = CASES[name]
    want = tj.jit(lambda x: f(TJ, tnp, x), backend="interpreter")(X)
    _assert_like_jax(f(TJ, np, X), want)


def test_weak_tracers_inside_the_body():
    seen = {}

    def body(c, xi):
        if not seen:  # the first trace; the second has the carry promoted to float32
            seen["c"], seen["py"] = is_weak(c), is_weak(c * 2.0)
            seen["typed"] = is_weak(c + xi)
            seen["cast"] = is_weak(c.astype(np.float64))
            seen["int_half"] = is_weak(xi.astype(np.int32) + c)  # weak float64
        return c + xi, None
    tj.make_ir(lambda x: tj.scan(body, 1.0, x))(X)
    assert seen == {"c": True, "py": True, "typed": False, "cast": False, "int_half": True}


def test_typed_carry_stays_typed():
    def body(c, xi):
        assert not is_weak(c)
        return c * 2.0 + xi, None
    out = tj.jit(lambda x: tj.scan(body, np.float32(1.0), x)[0], backend="interpreter")(X)
    assert out.dtype == np.float32


def test_weak_carry_mismatch_still_names_the_leaf():
    with pytest.raises(tj.ShapeError, match=r"carry\[1\]"):
        tj.jit(lambda x: tj.scan(lambda c, xi: ((c[0], c[1].astype(np.int32)), None),
                                 (0.0, 0.5), x)[0], backend="interpreter")(X)


# grad / jvp / vmap: the dtypes JAX gives (x64 mode)
TRANSFORMED = ["scan", "fori_static", "checkpoint", "cond_operand", "pytree_mixed",
               "nested_closure", "f32_carry_index"]


def _loss(f, L, np_):
    return lambda x: sum(np_.sum(v.astype(np.float32) if v.dtype.kind in "iub" else v)
                         for v in _flatten(f(L, np_, x)) if v.dtype.kind == "f")


@pytest.mark.parametrize("name", TRANSFORMED)
def test_grad_jvp_vmap_dtypes_like_jax(name, jax_x64):
    L, jnp, jax = jax_x64
    f = CASES[name]
    xs = np.stack([X, X[::-1]])
    with jax.enable_x64(True):
        g_want = jax.grad(_loss(f, L, jnp))(X)
        t_want = jax.jvp(lambda x: f(L, jnp, x), (X,), (X,))[1]
        v_want = jax.vmap(lambda x: f(L, jnp, x))(xs)
    g = tj.grad(_loss(f, TJ, tnp), backend="interpreter")(X)
    _assert_like_jax(g, g_want)
    _assert_like_jax(tj.jvp(lambda x: f(TJ, tnp, x), (X,), (X,))[1], t_want)
    _assert_like_jax(tj.vmap(lambda x: f(TJ, tnp, x))(xs), v_want)


@pytest.mark.parametrize("name", ["scan", "fori_traced", "while_dict_mixed", "checkpoint",
                                  "cond_operand", "nested_closure", "pytree_mixed",
                                  "switch_operand"])
def test_gradients_finite_differences_float64(name):
    f = CASES[name]
    tj.check_grads(_loss(f, TJ, np), (X.astype(np.float64),))


# the CUDA simulator too, when the run asks for it (as tests/test_loops.py)
COMPILED = ["numba"] + (["cuda"] if os.environ.get("NUMBA_ENABLE_CUDASIM") == "1" else [])


@pytest.mark.parametrize("backend", COMPILED)
def test_compiled_like_interpreter(backend):
    """One compiled function with weak carries in a scan, a fori_loop and a cond."""
    pytest.importorskip("numba")

    def f(x):
        return CASES["scan"](TJ, tnp, x) + CASES["fori_traced"](TJ, tnp, x) + \
            CASES["cond_operand"](TJ, tnp, x)
    got = tj.jit(f, backend=backend)(X)
    want = tj.jit(f, backend="interpreter")(X)
    assert got.dtype == want.dtype == np.float32
    np.testing.assert_allclose(got, want, rtol=1e-6)


def test_make_ir_prints_checkpoint_body():
    def step(c, xi):
        return c * 0.5 + np.sin(xi), None
    ir = str(tj.make_ir(lambda x: tj.scan(tj.checkpoint(step), 1.0, x)[0])(X))
    lines = ir.splitlines()
    at = next(i for i, s in enumerate(lines) if "= checkpoint[" in s)
    assert "body" not in lines[at] and lines[at + 1].strip() == "body=step"
    indent = len(lines[at]) - len(lines[at].lstrip())
    sub = lines[at + 2:at + 7]
    assert sub[0].strip().startswith("{ lambda") and "sin" in " ".join(sub)
    assert all(len(s) - len(s.lstrip()) > indent for s in sub)
    # its VJP is a checkpoint too, with the body's VJP printed under it
    joint = str(tj.make_ir(tj.grad(lambda x: tj.scan(tj.checkpoint(step), 1.0, x)[0]))(X))
    assert "body=step_vjp" in joint and "cos" in joint
