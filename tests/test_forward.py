"""Forward mode and the Jacobians: tj.jvp, tj.vjp, tj.jacfwd, tj.jacrev, tj.hessian.

Oracles: every primitive's JVP rule against central finite differences and against its VJP
(<ct, J t> == <J^T ct, t>), driven by the registry; NumPy-level functions and random
programs against finite differences always and against JAX when it is installed;
forward-over-reverse (the Hessian-vector product) as one fused kernel; jacfwd == jacrev,
symmetric Hessians; stop_gradient under each transformation. Rules are checked on the
interpreter (the graph they build is the same for every backend); compositions run on each
backend.
"""
from __future__ import annotations

import numpy as np
import pytest
from helpers import BACKENDS, assert_same, sample
from hypothesis import given, settings
from hypothesis import strategies as st
from test_primitives import GRAD_CASES, VJP_PARAMS, is_differentiable, make_input

import tracejit as tj
from tracejit.primitives import ANY, INDEX, REGISTRY, SELECT

INTERP = "interpreter"
_convert, _gt = REGISTRY["convert"], REGISTRY["gt"]


def prim_fn(prim, params):
    """prim(*xs) as a float64 function of float64 inputs (bool operands from x > 0)."""
    def f(*xs):
        if prim.name in ("and", "or", "logical_not"):
            xs = [_gt.bind(x, 0.0) for x in xs]
        elif prim.kind == SELECT:
            xs = [_gt.bind(xs[0], 0.0), *xs[1:]]
        out = prim.bind(*xs, **params)
        return out if out.dtype == np.float64 else _convert.bind(out, dtype=np.dtype(np.float64))
    return f


def central_difference(f, xs, ts, h=1e-6):
    """(f(x + h t) - f(x - h t)) / 2h, each leaf's step relative to its magnitude."""
    scale = max([1.0] + [float(np.max(np.abs(x))) for x in xs if np.size(x)])
    h *= scale
    with np.errstate(all="ignore"):
        up = f(*[x + h * t for x, t in zip(xs, ts)])
        down = f(*[x - h * t for x, t in zip(xs, ts)])
    return (np.asarray(up, np.float64) - np.asarray(down, np.float64)) / (2 * h)


def jvp_on(backend, f, xs, ts):
    """tj.jvp of f, compiled for `backend`."""
    return tj.jit(lambda p, t: tj.jvp(f, p, t), backend=backend)(tuple(xs), tuple(ts))


def test_every_primitive_has_jvp_and_batch_rules():
    no_jvp = [n for n, p in REGISTRY.items() if is_differentiable(p) and p.jvp is None]
    assert not no_jvp, f"differentiable primitives without a jvp rule: {no_jvp}"
    no_batch = [n for n, p in REGISTRY.items() if p.batch is None]
    assert not no_batch, f"primitives without a batching rule: {no_batch}"
    assert "custom_vjp_call" in REGISTRY  # the call primitive is held to it too


# ---------------------------------------------------------------------------------------------
# every primitive's JVP: finite differences and transposition against its VJP
# ---------------------------------------------------------------------------------------------
# integer-indexed primitives take int operands the generic sampler cannot draw: their JVPs
# are checked by test_index_jvps below
FLOAT_VJP_PARAMS = [p for p in VJP_PARAMS if REGISTRY[p.values[0]].kind != INDEX]


def test_index_jvps():
    """take / take_along / scatter(add, set) are linear: the JVP is the op on the tangents."""
    x, t = np.arange(6.0).reshape(2, 3), np.linspace(-1, 1, 6).reshape(2, 3)
    idx = np.array([2, 0, 2])
    for f in (lambda x: x[:, idx] ** 2,
              lambda x: np.take_along_axis(x, idx[None, :2], 1) * x[:, :2],
              lambda x: x.at[:, idx].add(x[:, :3] * 2) ** 2,
              lambda x: x.at[0, idx].set(x[1] * 3) * x):
        _, got = tj.jvp(f, (x,), (t,))
        eps = 1e-6
        fj = tj.jit(f, backend="interpreter")  # x.at needs a traced x
        want = (fj(x + eps * t) - fj(x - eps * t)) / (2 * eps)
        np.testing.assert_allclose(got, want, rtol=1e-6, atol=1e-8)


@pytest.mark.parametrize("name,specs,params", FLOAT_VJP_PARAMS)
def test_primitive_jvp(name, specs, params):
    prim = REGISTRY[name]
    rng = np.random.default_rng(abs(hash((name, str(specs), "jvp"))) % 2**32)
    domain = ANY if prim.kind == SELECT else prim.domain
    xs = [make_input(s, domain, rng) for s in specs]
    ts = [rng.standard_normal(np.shape(x)) for x in xs]
    f = prim_fn(prim, params)
    out, tan = jvp_on(INTERP, f, xs, ts)
    assert_same(out, f(*xs))
    np.testing.assert_allclose(tan, central_difference(f, xs, ts), rtol=1e-5, atol=1e-6)
    # transposition: <ct, J t> == <J^T ct, t>, with J^T ct from the VJP rule
    ct = rng.standard_normal(np.shape(out))
    cts = tj.jit(lambda p, c: tj.vjp(f, *p)[1](c), backend=INTERP)(tuple(xs), ct)
    lhs = float(np.sum(ct * tan))
    rhs = sum(float(np.sum(c * t)) for c, t in zip(cts, ts))
    assert abs(lhs - rhs) <= 1e-9 * (1 + abs(lhs)), (lhs, rhs)


@pytest.mark.parametrize("name", sorted(GRAD_CASES))
def test_function_jvp(name):
    f, specs = GRAD_CASES[name]
    rng = np.random.default_rng(len(name) + 11)
    xs = [sample(d, s, rng) for s, d in specs]
    ts = [rng.standard_normal(np.shape(x)) for x in xs]
    _, tan = jvp_on(INTERP, f, xs, ts)
    np.testing.assert_allclose(tan, central_difference(f, xs, ts), rtol=1e-5, atol=1e-6)


# ---------------------------------------------------------------------------------------------
# the public API: structures, dtypes, has_aux, compiled on each backend
# ---------------------------------------------------------------------------------------------
W1 = lambda x: np.sum(np.tanh(x) * np.sin(x) + 0.5 * x * x)  # noqa: E731


def w1_hvp(x, v):
    """The Hessian-vector product of W1 by hand: d/dx of its gradient, along v."""
    t, s, c = np.tanh(x), np.sin(x), np.cos(x)
    d2 = -2 * t * (1 - t * t) * s + 2 * (1 - t * t) * c - t * s + 1
    return d2 * v


@pytest.mark.parametrize("dtype", [np.float32, np.float64], ids=["f32", "f64"])
def test_jvp_pytrees_and_dtypes(dtype, backend):
    rng = np.random.default_rng(0)
    p = {"w": rng.standard_normal(3).astype(dtype), "b": dtype(0.5)}
    x = rng.standard_normal((4, 3)).astype(dtype)
    tp = {"w": np.ones(3, dtype), "b": dtype(1.0)}

    def f(params, x):
        y = np.tanh(x @ params["w"] + params["b"])
        return {"y": y, "n": np.sum(y * y)}
    jf = tj.jit(lambda p, x, tp, tx: tj.jvp(f, (p, x), (tp, tx)), backend=backend)
    out, tan = jf(p, x, tp, np.zeros_like(x))
    assert set(out) == set(tan) == {"y", "n"}
    assert tan["y"].dtype == dtype and tan["y"].shape == (4,)
    y = np.tanh(x @ p["w"] + p["b"])
    want = (1 - y * y) * (x @ tp["w"] + 1)
    tol = dict(rtol=1e-5, atol=1e-5) if dtype == np.float32 else dict(rtol=1e-12)
    np.testing.assert_allclose(tan["y"], want, **tol)
    np.testing.assert_allclose(tan["n"], np.sum(2 * y * want), **tol)


def test_jvp_top_level_runs_compiled_and_caches():
    x, v = np.linspace(-1, 1, 7), np.ones(7)
    out, tan = tj.jvp(np.sin, (x,), (v,))
    np.testing.assert_allclose(tan, np.cos(x))
    f = lambda x: np.exp(x) * 2  # noqa: E731
    tj.jvp(f, (x,), (v,))
    tj.jvp(f, (x,), (v,))
    from tracejit.transforms import _JITS
    (run,) = _JITS[f].values()
    assert len(run._cache) == 1  # one compiled specialization, reused


def test_jvp_has_aux_integer_inputs_and_closure(backend):
    c = np.array([2.0, 3.0])

    def f(x, n):
        return x * c * n, {"n2": n * 2}
    out, tan, aux = tj.jit(lambda x, t: tj.jvp(f, (x, 3), (t, 0), has_aux=True),
                           backend=backend)(np.ones(2), np.ones(2))
    np.testing.assert_allclose(tan, c * 3)  # the closed-over c and the int n are constants
    assert int(aux["n2"]) == 6


def test_jvp_errors():
    x = np.ones(3)
    with pytest.raises(tj.ArgumentError, match="tuples or lists"):
        tj.jvp(np.sin, x, x)
    with pytest.raises(tj.ShapeError, match=r"tangent leaf 0 has shape \(2,\)"):
        tj.jvp(np.sin, (x,), (np.ones(2),))
    with pytest.raises(tj.ArgumentError, match="dtype float32 but its primal has dtype float64"):
        tj.jvp(np.sin, (x,), (np.ones(3, np.float32),))
    with pytest.raises(tj.ArgumentError, match="different structures"):
        tj.jvp(lambda a, b: a + b[0], (x, (x,)), (x, x))


def test_forward_over_reverse_hvp_is_one_kernel(backend):
    hvp = lambda x, v: tj.jvp(tj.grad(W1), (x,), (v,))[1]  # noqa: E731
    x = np.linspace(-2, 2, 101)
    v = np.cos(np.arange(101.0))
    np.testing.assert_allclose(tj.jit(hvp, backend=backend)(x, v), w1_hvp(x, v), rtol=1e-10)
    x32, v32 = x.astype(np.float32), v.astype(np.float32)
    got = tj.jit(hvp, backend=backend)(x32, v32)
    assert got.dtype == np.float32
    np.testing.assert_allclose(got, w1_hvp(x, v), rtol=1e-4, atol=1e-5)
    plan = tj.make_plan(tj.jit(hvp))(x32, v32)
    assert (len(plan.kernels), len(plan.steps)) == (1, 0), plan.describe()
    # it reads x and v and nothing else: autodiff's seed stays a broadcast scalar, not an
    # array of ones computed while inlining and read from memory
    assert len(plan.kernels[0].inputs) == 2, plan.kernels[0].inputs


def test_inlined_graphs_keep_constants_symbolic():
    x = np.linspace(-1, 1, 5)
    for f in (lambda x: tj.grad(W1)(x) * 2, lambda x: tj.jvp(tj.grad(W1), (x,), (x,))[1],
              lambda x: tj.vmap(tj.grad(W1))(x[None])):
        assert "const" not in str(tj.make_ir(f)(x)), tj.make_ir(f)(x)


def test_reverse_over_forward_and_forward_over_forward(backend):
    x, v = np.linspace(-1, 1, 9), np.linspace(0.5, 1.5, 9)
    # grad of <grad f, v> computed by forward mode: the HVP again
    g = tj.grad(lambda x: np.sum(tj.jvp(W1, (x,), (v,))[1]), backend=backend)(x)
    np.testing.assert_allclose(g, w1_hvp(x, v), rtol=1e-10)
    # the second derivative of sin along v twice: -sin(x) v v
    d2 = tj.jit(lambda x: tj.jvp(lambda y: tj.jvp(np.sin, (y,), (v,))[1], (x,), (v,))[1],
                backend=backend)(x)
    np.testing.assert_allclose(d2, -np.sin(x) * v * v, rtol=1e-12)


def test_vjp_non_scalar_outputs_and_structure(backend):
    x = np.linspace(0.5, 1.5, 4)

    def f(x, n):
        return {"a": x * x, "b": np.sum(np.sin(x)) * n}
    out, vjp_fn = tj.vjp(f, x, 3)
    np.testing.assert_allclose(out["a"], x * x)
    gx, gn = vjp_fn({"a": np.ones(4), "b": 2.0})
    np.testing.assert_allclose(gx, 2 * x + 6 * np.cos(x))
    assert gn == 0  # an integer primal gets a zero cotangent
    jf = tj.jit(lambda x, ct: tj.vjp(lambda y: np.exp(y) * y, x)[1](ct), backend=backend)
    (g,) = jf(x, np.full(4, 0.5))
    np.testing.assert_allclose(g, 0.5 * np.exp(x) * (1 + x))
    with pytest.raises(tj.ShapeError, match="cotangent leaf 0 has shape"):
        tj.vjp(np.sin, x)[1](np.ones(3))


def test_vjp_has_aux_and_copies_primals():
    x = np.ones(3)
    out, vjp_fn, aux = tj.vjp(lambda x: (x * 2, np.sum(x)), x, has_aux=True)
    assert float(aux) == 3.0
    x[:] = 5.0  # a later change by the caller does not leak into vjp_fn
    (g,) = vjp_fn(np.ones(3))
    np.testing.assert_allclose(g, 2.0)


def test_grad_of_non_scalar_points_at_jacrev():
    with pytest.raises(tj.GradientError, match="tracejit.jacrev.*tracejit.vjp"):
        tj.grad(lambda x: x * 2)(np.ones(3))


# ---------------------------------------------------------------------------------------------
# Jacobians and Hessians
# ---------------------------------------------------------------------------------------------
def jac_fn(x, A):
    return {"lin": A @ x, "nl": np.tanh(x) * x[0]}


def jac_by_hand(x, A):
    nl = np.diag(np.tanh(x) * 0 + (1 - np.tanh(x) ** 2) * x[0])
    nl[:, 0] += np.tanh(x)
    return {"lin": A, "nl": nl}


@pytest.mark.parametrize("jac", ["jacfwd", "jacrev"])
def test_jacobians(jac, backend):
    rng = np.random.default_rng(2)
    x, A = rng.standard_normal(3), rng.standard_normal((2, 3))
    J = tj.jit(getattr(tj, jac)(jac_fn), backend=backend)(x, A)
    want = jac_by_hand(x, A)
    for k in want:
        np.testing.assert_allclose(J[k], want[k], rtol=1e-12, atol=1e-14)
    # argnums tuple: a tuple per output leaf; shapes are output shape + input shape
    J2 = getattr(tj, jac)(jac_fn, argnums=(0, 1))(x, A)
    assert J2["lin"][1].shape == (2, 2, 3) and J2["nl"][1].shape == (3, 2, 3)
    np.testing.assert_allclose(J2["lin"][1][1, 1], x)


def test_jacfwd_equals_jacrev_on_pytrees_and_aux():
    rng = np.random.default_rng(3)
    params = {"W": rng.standard_normal((3, 4)), "b": rng.standard_normal(3)}
    x = rng.standard_normal(4)

    def f(p, x):
        h = np.tanh(p["W"] @ x + p["b"])
        return [h, np.sum(h ** 2)], h.max()
    Jf, aux_f = tj.jacfwd(f, has_aux=True)(params, x)
    Jr, aux_r = tj.jacrev(f, has_aux=True)(params, x)
    assert Jf[0]["W"].shape == (3, 3, 4) and Jf[1]["b"].shape == (3,)
    for a, b in zip(*(pytree_leaves(J) for J in (Jf, Jr))):
        np.testing.assert_allclose(a, b, rtol=1e-12, atol=1e-14)
    assert float(aux_f) == float(aux_r)


def pytree_leaves(tree):
    from tracejit import pytree
    return pytree.flatten(tree)[0]


@pytest.mark.parametrize("dtype", [np.float32, np.float64], ids=["f32", "f64"])
def test_hessian_symmetric_and_correct(dtype, backend):
    x = np.linspace(-1, 1, 5).astype(dtype)
    H = tj.jit(tj.hessian(W1), backend=backend)(x)
    assert H.shape == (5, 5) and H.dtype == dtype
    np.testing.assert_allclose(H, H.T, rtol=0, atol=1e-6 if dtype == np.float32 else 1e-14)
    np.testing.assert_allclose(np.diag(H), w1_hvp(x.astype(np.float64), 1.0),
                               rtol=1e-5 if dtype == np.float32 else 1e-12)
    np.testing.assert_allclose(H - np.diag(np.diag(H)), 0, atol=1e-6)
    # a coupled function: the Hessian of 0.5 x^T A x is (A + A^T) / 2
    A = np.arange(9.0).reshape(3, 3)
    Hq = tj.hessian(lambda v: 0.5 * v @ (A @ v))(np.ones(3))
    np.testing.assert_allclose(Hq, (A + A.T) / 2, rtol=1e-12)


def test_jacobian_errors():
    with pytest.raises(tj.ArgnumsError, match="only floating-point"):
        tj.jacfwd(lambda n: n * 2.0)(np.arange(3))
    with pytest.raises(tj.ArgnumsError, match="out of range"):
        tj.jacrev(lambda x: x, argnums=2)(np.ones(2))
    with pytest.raises(tj.GradientError, match="float arrays for jacrev"):
        tj.jacrev(lambda x: (x > 0))(np.ones(2))


# ---------------------------------------------------------------------------------------------
# stop_gradient, custom_vjp
# ---------------------------------------------------------------------------------------------
def test_stop_gradient_stops_tangents_in_every_forward_transformation(backend):
    x, v = np.array([1.0, 2.0, 3.0]), np.array([1.0, -1.0, 0.5])
    f = lambda x: x * x * tj.stop_gradient(x)  # noqa: E731
    _, tan = jvp_on(backend, f, [x], [v])
    np.testing.assert_allclose(tan, 2 * x * x * v)  # not 3 x^2 v
    np.testing.assert_allclose(tj.jit(tj.jacfwd(f), backend=backend)(x), np.diag(2 * x * x))
    np.testing.assert_allclose(tj.jit(tj.jacrev(f), backend=backend)(x), np.diag(2 * x * x))
    H = tj.jit(tj.hessian(lambda x: np.sum(f(x))), backend=backend)(x)
    np.testing.assert_allclose(H, np.diag(2 * x))  # not 6x
    (g,) = tj.vjp(f, x)[1](v)
    np.testing.assert_allclose(g, 2 * x * x * v)
    # only its output's tangent is cut: the same value elsewhere keeps its tangent
    _, tan = jvp_on(backend, lambda x: tj.stop_gradient(x) + x, [x], [v])
    np.testing.assert_allclose(tan, v)


@tj.custom_vjp
def _clipped(x):
    return np.sin(x)


_clipped.defvjp(lambda x: (np.sin(x), np.cos(x)), lambda c, g: (np.clip(g * c, -0.5, 0.5),))


def test_custom_vjp_under_forward_mode_is_a_clear_error():
    x = np.ones(3)
    with pytest.raises(tj.UnsupportedError, match=r"custom_vjp\(_clipped\): forward-mode"):
        tj.jvp(lambda x: _clipped(x) * 2, (x,), (x,))
    with pytest.raises(tj.UnsupportedError, match="forward-mode"):
        tj.hessian(lambda x: np.sum(_clipped(x)))(x)
    # reverse mode through it is fine, and forward mode where no tangent reaches it
    np.testing.assert_allclose(tj.jacrev(_clipped)(np.zeros(2)), 0.5 * np.eye(2))
    c = np.full(3, 2.0)
    _, tan = tj.jvp(lambda x: x * _clipped(c), (x,), (x,))
    np.testing.assert_allclose(tan, np.sin(c))


# ---------------------------------------------------------------------------------------------
# random programs: finite differences always, JAX when installed
# ---------------------------------------------------------------------------------------------
UNARY = {
    "neg": lambda xp, x: -x, "tanh": lambda xp, x: xp.tanh(x), "sin": lambda xp, x: xp.sin(x),
    "exp_tanh": lambda xp, x: xp.exp(xp.tanh(x)), "log1p_sq": lambda xp, x: xp.log1p(x * x),
    "sqrt_sq": lambda xp, x: xp.sqrt(x * x + 0.5), "square": lambda xp, x: x * x,
    "recip_sq1": lambda xp, x: 1.0 / (1.0 + x * x), "pow_sq1": lambda xp, x: (x * x + 1) ** 0.75,
    "sum_last": lambda xp, x: xp.sum(x, axis=-1, keepdims=True) if x.ndim else x,
    "max_first": lambda xp, x: xp.max(x, axis=0) if x.ndim else x,
    "transpose": lambda xp, x: (x.T * 2.0).T,  # exercises transpose, keeps the shape
}
BINARY = {
    "add": lambda xp, x, y: x + y, "sub": lambda xp, x, y: x - y, "mul": lambda xp, x, y: x * y,
    "div_safe": lambda xp, x, y: x / (y * y + 1),
    "where_gt": lambda xp, x, y: xp.where(x > y + 0.25, x * y, x - y),
    "maximum": lambda xp, x, y: xp.maximum(x, y + 0.125),
}


@st.composite
def programs(draw, max_inputs=3):
    """(input shapes, ops as (name, operand indices), seed): a DAG over broadcastable shapes
    whose outputs are the last value and the sum of every value (so each one matters)."""
    ndim = draw(st.integers(0, 2))
    full = tuple(draw(st.lists(st.integers(2, 4), min_size=ndim, max_size=ndim)))
    shapes = [tuple(1 if draw(st.booleans()) and draw(st.booleans()) else d
                    for d in full[draw(st.integers(0, ndim)):])
              for _ in range(draw(st.integers(1, max_inputs)))]
    ops, n = [], len(shapes)
    for _ in range(draw(st.integers(1, 5))):
        if draw(st.booleans()):
            ops.append((draw(st.sampled_from(sorted(UNARY))), (draw(st.integers(0, n - 1)),)))
        else:
            ops.append((draw(st.sampled_from(sorted(BINARY))),
                        (draw(st.integers(0, n - 1)), draw(st.integers(0, n - 1)))))
        n += 1
    return shapes, ops, draw(st.integers(0, 2**31 - 1))


def build(ops, xp):
    def program(*xs):
        values = list(xs)
        for name, idx in ops:
            fn = UNARY.get(name) or BINARY[name]
            values.append(fn(xp, *[values[i] for i in idx]))
        total = sum(xp.sum(v) * (0.5 + 0.25 * k) for k, v in enumerate(values))
        return values[-1], total
    return program


def check_jvp_program(spec, backend, dtype=np.float64):
    shapes, ops, seed = spec
    rng = np.random.default_rng(seed)
    xs = [rng.uniform(-2, 2, s).astype(dtype) for s in shapes]
    ts = [rng.standard_normal(s).astype(dtype) for s in shapes]
    program = build(ops, np)
    (out, total), (tan, ttotal) = jvp_on(backend, program, xs, ts)
    x64 = [x.astype(np.float64) for x in xs]
    t64 = [t.astype(np.float64) for t in ts]
    tol = dict(rtol=1e-5, atol=1e-6) if dtype == np.float64 else dict(rtol=2e-2, atol=2e-2)
    for k, got in enumerate((tan, ttotal)):
        want = central_difference(lambda *v: program(*v)[k], x64, t64)
        np.testing.assert_allclose(got, want, **tol, err_msg=f"{shapes} {ops}")
    return xs, ts, (out, total), (tan, ttotal)


@settings(max_examples=30)
@given(programs())
def test_random_program_jvp_interpreter(spec):
    check_jvp_program(spec, INTERP)


@pytest.mark.skipif("numba" not in BACKENDS, reason="numba backend not available")
@settings(max_examples=3)  # each example compiles kernels
@given(programs())
def test_random_program_jvp_numba(spec):
    check_jvp_program(spec, "numba")
    check_jvp_program(spec, "numba", np.float32)


@settings(max_examples=8)  # JAX compiles each example's ops
@given(programs(max_inputs=2))
def test_random_program_jvp_against_jax(spec):
    jax = pytest.importorskip("jax")
    jax.config.update("jax_enable_x64", True)
    import jax.numpy as jnp
    xs, ts, out, tan = check_jvp_program(spec, INTERP)
    want_out, want_tan = jax.jvp(build(spec[1], jnp), tuple(xs), tuple(ts))
    for g, w in zip(out + tan, want_out + want_tan):
        np.testing.assert_allclose(g, np.asarray(w), rtol=1e-10, atol=1e-12)
    # the Jacobian w.r.t. the first input, both ways, against jax.jacfwd
    f0 = lambda x: build(spec[1], np)(x, *xs[1:])[0]  # noqa: E731
    j0 = lambda x: build(spec[1], jnp)(x, *xs[1:])[0]  # noqa: E731
    want = np.asarray(jax.jacfwd(j0)(xs[0]))
    np.testing.assert_allclose(tj.jacfwd(f0)(xs[0]), want, rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(tj.jacrev(f0)(xs[0]), want, rtol=1e-10, atol=1e-12)


def test_hessian_against_jax():
    jax = pytest.importorskip("jax")
    jax.config.update("jax_enable_x64", True)
    import jax.numpy as jnp

    def f(xp, x, y):
        return xp.sum(xp.tanh(x[:, None] * y) ** 2) + xp.sum(xp.exp(-x * x) * y[:3])
    x, y = np.linspace(-1, 1, 3), np.linspace(0.5, 2, 4)
    got = tj.hessian(lambda x, y: f(np, x, y), argnums=(0, 1))(x, y)
    want = jax.jit(jax.hessian(lambda x, y: f(jnp, x, y), argnums=(0, 1)))(x, y)
    for i in range(2):
        for j in range(2):
            np.testing.assert_allclose(got[i][j], np.asarray(want[i][j]), rtol=1e-10,
                                       atol=1e-12)
