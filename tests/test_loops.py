"""Loops and branches that are not unrolled (tracejit/loops.py): scan, fori_loop, while_loop,
cond, switch. Forward values against the same loop in Python, gradients against the unrolled
loop (and finite differences), JAX as an oracle when it is installed; every backend."""
from __future__ import annotations

import os

import numpy as np
import pytest
from helpers import BACKENDS

import tracejit as tj
from tracejit.errors import ShapeError

CUDA = "cuda" if os.environ.get("NUMBA_ENABLE_CUDASIM") == "1" else None
ALL = BACKENDS + ([CUDA] if CUDA else [])
RNG = np.random.default_rng(0)
W = RNG.normal(size=(4, 4)) * 0.4
XS = RNG.normal(size=(5, 4))


def rnn(x, W, xs, reverse=False):
    def body(c, xt):
        h = np.tanh(W @ c["h"] + xt) * c["s"]
        return {"h": h, "s": c["s"] * 0.9}, (np.sum(h), h * 2)
    c, (ys, zs) = tj.scan(body, {"h": x, "s": 1.5}, xs, reverse=reverse)
    return np.sum(c["h"] ** 2) + np.sum(ys * ys) + np.sum(zs[1]) + c["s"]


def rnn_unrolled(x, W, xs, reverse=False):
    h, s, ys, zs = x, 1.5, [], []
    steps = range(xs.shape[0])
    for t in (reversed(steps) if reverse else steps):
        h = np.tanh(W @ h + xs[t]) * s
        s = s * 0.9
        ys.append(np.sum(h))
        zs.append(h * 2)
    if reverse:
        ys, zs = ys[::-1], zs[::-1]
    return np.sum(h ** 2) + np.sum(np.stack(ys) ** 2) + np.sum(zs[1]) + s


@pytest.mark.parametrize("backend", ALL)
@pytest.mark.parametrize("reverse", [False, True])
def test_scan_value_and_grad_match_unrolled(backend, reverse):
    x = RNG.normal(size=4)
    want = rnn_unrolled(x, W, XS, reverse)
    v, g = tj.value_and_grad(rnn, argnums=(0, 1, 2), backend=backend, static_argnums=3)(
        x, W, XS, reverse)
    _, gu = tj.value_and_grad(rnn_unrolled, argnums=(0, 1, 2), backend="interpreter",
                              static_argnums=3)(x, W, XS, reverse)
    np.testing.assert_allclose(v, want, rtol=1e-12)
    for a, b in zip(g, gu):
        np.testing.assert_allclose(a, b, rtol=1e-10, atol=1e-12)


def test_scan_grads_finite_differences_and_eager():
    x = RNG.normal(size=4)
    tj.check_grads(lambda x, W: rnn(x, W, XS), (x, W), backend="interpreter")
    np.testing.assert_allclose(rnn(x, W, XS), rnn_unrolled(x, W, XS))  # outside any trace


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_scan_float32_keeps_dtype(dtype):
    x = np.linspace(-1, 1, 4).astype(dtype)

    def f(x):
        c, ys = tj.scan(lambda c, _: (c * 0.5 + 1.0, c[0]), x, None, length=3)
        return c, ys
    c, ys = tj.jit(f)(x)
    assert c.dtype == dtype and ys.dtype == dtype and ys.shape == (3,)
    np.testing.assert_allclose(c, ((x * 0.5 + 1) * 0.5 + 1) * 0.5 + 1, rtol=1e-6)


@pytest.mark.parametrize("n", [0, 1])
def test_zero_and_one_trip(n):
    x = RNG.normal(size=3)

    def f(x):
        c, ys = tj.scan(lambda c, xt: (np.sin(c) * xt, c), x, np.full((n, 3), 2.0))
        return np.sum(c) + np.sum(ys)
    want = np.sum(np.sin(x) * 2) + np.sum(x) if n else np.sum(x)
    np.testing.assert_allclose(tj.jit(f)(x), want)
    g = tj.grad(f)(x)
    np.testing.assert_allclose(g, 2 * np.cos(x) + 1 if n else np.ones(3), rtol=1e-12)
    np.testing.assert_allclose(tj.fori_loop(0, n, lambda i, c: c + i, 5.0), 5.0)


@pytest.mark.parametrize("backend", BACKENDS)
def test_fori_loop_static_and_traced_bounds(backend):
    x = RNG.normal(size=4)

    def f(x):
        return np.sum(tj.fori_loop(1, 5, lambda i, c: np.sin(W @ c) * i, x))

    def fu(x):
        for i in range(1, 5):
            x = np.sin(W @ x) * i
        return np.sum(x)
    np.testing.assert_allclose(tj.jit(f, backend=backend)(x), fu(x), rtol=1e-12)
    np.testing.assert_allclose(tj.grad(f, backend=backend)(x), tj.grad(fu)(x), rtol=1e-10)
    g = tj.jit(lambda x, n: tj.fori_loop(0, n, lambda i, c: c * 2.0 + i, x), backend=backend)
    np.testing.assert_allclose(g(x, 3), ((x * 2) * 2 + 1) * 2 + 2)


def test_nested_loops_and_cond_inside_scan():
    x = RNG.normal(size=4)

    def f(x, W):
        def outer(c, xt):
            inner = tj.fori_loop(0, 3, lambda i, h: np.tanh(W @ h) + xt, c)
            c = tj.cond(np.sum(inner) > 0, lambda a: a * 2.0, lambda a: np.sin(a), inner)
            return c, np.sum(c)
        c, ys = tj.scan(outer, x, XS)
        return np.sum(c ** 2) + np.sum(ys)

    def fu(x, W):
        c, s = x, 0.0
        for t in range(XS.shape[0]):
            h = c
            for _ in range(3):
                h = np.tanh(W @ h) + XS[t]
            c = h * 2.0 if np.sum(h) > 0 else np.sin(h)
            s = s + np.sum(c)
        return np.sum(c ** 2) + s
    np.testing.assert_allclose(tj.jit(f)(x, W), fu(x, W), rtol=1e-12)
    g = tj.grad(f, argnums=(0, 1), backend="interpreter")(x, W)
    eps = 1e-6
    fd = np.array([(fu(x + eps * e, W) - fu(x - eps * e, W)) / (2 * eps) for e in np.eye(4)])
    np.testing.assert_allclose(g[0], fd, rtol=1e-5, atol=1e-7)
    tj.check_grads(f, (x, W), backend="interpreter")


def test_checkpoint_gives_the_same_gradient():
    x = RNG.normal(size=4)

    def f(x, ck):
        c, _ = tj.scan(lambda c, xt: (np.tanh(W @ c + xt) * np.cos(c), None), x, XS,
                       checkpoint=ck)
        return np.sum(c)
    g = tj.grad(f, static_argnums=1)
    np.testing.assert_allclose(g(x, True), g(x, False), rtol=1e-12)


def _stacked_bytes(plan) -> int:
    """Bytes of scan outputs beyond the carries that a grad plan stores."""
    total = 0
    for e in plan.graph.eqns:
        if e.prim.name == "scan":
            nk = e.params["n_carry"]
            total += sum(v.aval.size * v.aval.dtype.itemsize for v in e.outputs[nk:])
    return total


def test_residuals_only_for_what_the_backward_pass_reads():
    a0, b0 = RNG.normal(size=64), RNG.normal(size=64)

    def linear(a, b):  # da/da0 is constant: nothing to store; b never reaches a's cotangent
        (a, b), _ = tj.scan(lambda c, _: ((c[0] * 2.0 + tj.stop_gradient(c[1]),
                                           np.sin(c[1])), None), (a, b), None, length=50)
        return np.sum(a)
    plan = tj.make_plan(tj.grad(linear))(a0, b0)
    assert _stacked_bytes(plan) == 0, plan.graph
    np.testing.assert_allclose(tj.grad(linear)(a0, b0), np.full(64, 2.0 ** 50))

    def reads_sin(a, b):  # one residual per step: sin(b_t) (b itself gets no gradient)
        (a, b), _ = tj.scan(lambda c, _: ((c[0] * np.sin(c[1]), c[1] * 0.5), None), (a, b),
                            None, length=50)
        return np.sum(a)
    plan = tj.make_plan(tj.grad(reads_sin))(a0, b0)
    assert _stacked_bytes(plan) == 50 * 64 * 8, plan.graph


def test_while_loop_forward_jvp_vmap_and_grad():
    x = RNG.normal(size=3)

    def f(x):
        _, c = tj.while_loop(lambda c: c[0] < 7, lambda c: (c[0] + 1, c[1] * 1.1), (0, x))
        return np.sum(c)
    np.testing.assert_allclose(tj.jit(f)(x), np.sum(x) * 1.1 ** 7, rtol=1e-12)
    _, t = tj.jvp(f, (x,), (np.ones(3),))
    np.testing.assert_allclose(t, 3 * 1.1 ** 7, rtol=1e-12)
    np.testing.assert_allclose(tj.grad(f)(x), np.full(3, 1.1 ** 7), rtol=1e-12)

    def g(x, M):  # gradients against the unrolled loop (beyond JAX: reverse mode)
        return np.sum(tj.while_loop(lambda c: c[0] < 4, lambda c: (c[0] + 1, np.sin(M @ c[1])),
                                    (0, x))[1] ** 2)

    def gu(x, M):
        for _ in range(4):
            x = np.sin(M @ x)
        return np.sum(x ** 2)
    M = RNG.normal(size=(3, 3))
    for a, b in zip(tj.grad(g, argnums=(0, 1), backend="interpreter")(x, M),
                    tj.grad(gu, argnums=(0, 1))(x, M)):
        np.testing.assert_allclose(a, b, rtol=1e-10)
    tj.check_grads(g, (x, M), backend="interpreter")
    h = tj.grad(lambda x, n: np.sum(tj.fori_loop(0, n, lambda i, c: np.sin(c), x)))
    np.testing.assert_allclose(h(x, 2), np.cos(np.sin(x)) * np.cos(x), rtol=1e-12)

    def steps(x):  # a batched predicate: each example stops on its own
        return tj.while_loop(lambda c: np.sum(c[1] ** 2) > 0.1,
                             lambda c: (c[0] + 1, c[1] * 0.5), (0, x))[0]
    xs = RNG.normal(size=(6, 3))
    np.testing.assert_array_equal(ref(tj.vmap(steps))(xs), [steps(r) for r in xs])


@pytest.mark.parametrize("backend", ALL)
def test_cond_switch_values_grads_and_vmap(backend):
    x = RNG.normal(size=3)
    branches = [lambda a: np.sin(a), lambda a: a ** 2, lambda a: np.exp(a) * 0.5]

    def f(i, x):
        return np.sum(tj.switch(i, branches, x))
    for i in (-1, 0, 1, 2, 5):
        k = min(max(i, 0), 2)
        np.testing.assert_allclose(tj.jit(f, backend=backend)(i, x), np.sum(branches[k](x)))
        g = tj.grad(f, argnums=1, backend=backend)(i, x)
        np.testing.assert_allclose(g, [np.cos(x), 2 * x, np.exp(x) * 0.5][k], rtol=1e-12)
    xs = RNG.normal(size=(4, 3))
    got = tj.vmap(lambda x: tj.cond(np.sum(x) > 0, lambda a: a * 2, lambda a: -a, x))(xs)
    np.testing.assert_allclose(got, [r * 2 if r.sum() > 0 else -r for r in xs])


def ref(f):  # transformations composed on the NumPy reference (the Numba path is tested above)
    return tj.jit(f, backend="interpreter")


def test_vmap_and_jvp_of_scan():
    xs = RNG.normal(size=(3, 4))
    got = ref(tj.vmap(lambda x: rnn(x, W, XS)))(xs)
    np.testing.assert_allclose(got, [rnn_unrolled(r, W, XS) for r in xs], rtol=1e-12)
    x, v = xs[0], xs[1]
    _, t = ref(lambda x, v: tj.jvp(lambda x: rnn(x, W, XS), (x,), (v,)))(x, v)
    _, tu = tj.jvp(lambda x: rnn_unrolled(x, W, XS), (x,), (v,))
    np.testing.assert_allclose(t, tu, rtol=1e-10)
    h = ref(tj.hessian(lambda x: rnn(x, W, XS)))(x)
    np.testing.assert_allclose(h, tj.hessian(lambda x: rnn_unrolled(x, W, XS))(x), rtol=1e-8,
                               atol=1e-10)


def test_errors_name_the_carry_leaf():
    with pytest.raises(ShapeError, match=r"carry\['b'\].*f64\[3\].*f64\[1,3\]"):
        tj.jit(lambda x: tj.scan(lambda c, _: ({"a": c["a"], "b": c["b"][None]}, None),
                                 {"a": x, "b": x}, None, length=2))(np.ones(3))
    with pytest.raises(ShapeError, match="carry"):
        tj.jit(lambda x: tj.fori_loop(0, 3, lambda i, c: c.astype(np.float32), x))(np.ones(3))
    with pytest.raises(ShapeError, match="branch 1"):
        tj.jit(lambda x: tj.cond(x[0] > 0, lambda a: a, lambda a: a[:2], x))(np.ones(3))


def test_make_ir_shows_one_loop_with_its_body():
    ir = str(tj.make_ir(lambda x: rnn(x, W, XS))(np.ones(4)))
    assert ir.count("= scan[") == 1 and "body=" in ir and "tanh" in ir
    assert ir.count("tanh") == 1  # traced once, not per step


def test_against_jax_random_bodies():
    jax = pytest.importorskip("jax")
    jax.config.update("jax_enable_x64", True)
    jnp = jax.numpy
    rng = np.random.default_rng(1)
    unary = [(np.sin, jnp.sin), (np.tanh, jnp.tanh), (lambda a: a * a, lambda a: a * a),
             (np.cos, jnp.cos)]
    for trial in range(4):
        ops = [unary[k] for k in rng.integers(0, len(unary), 3)]
        M = rng.normal(size=(3, 3)) * 0.5

        def make(lib, ops=ops, M=M, rev=bool(trial % 2)):
            k = 0 if lib is np else 1

            def body(c, xt):
                h = c[0]
                for op in ops:
                    h = op[k](h) + xt
                return (M @ h * c[1], c[1] * 0.9), h[0]

            def loss(x, xs):
                if lib is np:
                    c, ys = tj.scan(body, (x, 1.0), xs, reverse=rev)
                else:
                    c, ys = jax.lax.scan(body, (x, 1.0), xs, reverse=rev)
                return lib.sum(c[0]) + lib.sum(ys ** 2)
            return loss
        x0, xs0 = rng.normal(size=3), rng.normal(size=(4, 3))
        g = tj.grad(make(np), argnums=(0, 1), backend="interpreter")(x0, xs0)
        gj = jax.grad(make(jnp), argnums=(0, 1))(x0, xs0)
        for a, b in zip(g, gj):
            np.testing.assert_allclose(a, np.asarray(b), rtol=1e-9, atol=1e-12)


def test_numba_scan_is_one_compiled_loop():
    """The Numba CPU backend runs a scan as one njit function (no Python per step), with the
    same numbers as the host loop over the compiled body."""
    from tracejit.backends import get_backend
    from tracejit.backends.numba_loops import compiled_scan
    from tracejit.dispatch import lower
    from tracejit.loops import _loop_step
    from tracejit.passes import simplify
    x = RNG.normal(size=4)
    graph = tj.make_ir(lambda x: rnn(x, W, XS))(x)
    (eqn,) = [e for e in graph.eqns if e.prim.name == "scan"]
    be = get_backend("numba")
    plan, _ = lower(simplify(eqn.params["body"]), be)
    run = compiled_scan(eqn, plan, be)
    assert run is not None and "for i in range(length)" in run.source
    args = [W, x, 1.5, XS]
    args = [np.asarray(a, v.aval.dtype) for a, v in zip(args, eqn.inputs)]
    want = eqn.prim.impl(*args, **eqn.params)
    for got in (run(*args), _loop_step(eqn, be)(*args)):
        for a, b in zip(got, want):
            np.testing.assert_allclose(np.reshape(a, np.shape(b)), b, rtol=1e-12)
