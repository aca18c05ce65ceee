"""Reverse mode through while_loop (tracejit/while_grad.py: the residuals each step's backward
part reads, recorded on a tape, O(n) work) and tj.checkpoint / tj.remat (tracejit/remat.py):
gradients against the unrolled loop and finite differences, on every backend."""
from __future__ import annotations

import os

import numpy as np
import pytest
from helpers import BACKENDS

import tracejit as tj
from tracejit.primitives.elementwise import sin_p

CUDA = "cuda" if os.environ.get("NUMBA_ENABLE_CUDASIM") == "1" else None
ALL = BACKENDS + ([CUDA] if CUDA else [])
RNG = np.random.default_rng(3)
M = RNG.normal(size=(3, 3)) * 0.6


def solver(x, M, n):
    """A pytree carry: a step counter, a state, a scale no gradient reaches the state from."""
    def body(c):
        h = np.tanh(M @ c["h"] + 0.1) * c["s"]
        return {"i": c["i"] + 1, "h": h, "s": c["s"] * 0.9, "k": c["k"] * 2.0}
    c = tj.while_loop(lambda c: c["i"] < n, body, {"i": 0, "h": x, "s": 1.2, "k": 1.0})
    return np.sum(c["h"] ** 2) + c["s"]


def solver_unrolled(x, M, n):
    h, s = x, 1.2
    for _ in range(n):
        h = np.tanh(M @ h + 0.1) * s
        s = s * 0.9
    return np.sum(h ** 2) + s


@pytest.mark.parametrize("backend", ALL)
def test_while_grads_match_unrolled(backend):
    x = RNG.normal(size=3)
    f = tj.value_and_grad(solver, argnums=(0, 1), backend=backend)
    for n in (0, 1, 7):
        v, g = f(x, M, n)
        vu, gu = tj.value_and_grad(solver_unrolled, argnums=(0, 1), static_argnums=2)(
            x, M, n)
        np.testing.assert_allclose(v, vu, rtol=1e-12)
        for a, b in zip(g, gu):
            np.testing.assert_allclose(a, b, rtol=1e-10, atol=1e-12)
    # float32, and a traced trip count (fori_loop with traced bounds is a while loop)
    h = tj.grad(lambda x, n: np.sum(tj.fori_loop(0, n, lambda i, c: np.sin(c) * 1.5, x)),
                backend=backend)
    x32 = x.astype(np.float32)
    np.testing.assert_allclose(h(x32, 2), 2.25 * np.cos(1.5 * np.sin(x32)) * np.cos(x32),
                               rtol=1e-5)


def test_while_grads_finite_differences_and_eager():
    x = RNG.normal(size=3)
    tj.check_grads(lambda x, M: solver(x, M, 5), (x, M), backend="interpreter")
    np.testing.assert_allclose(solver(x, M, 5), solver_unrolled(x, M, 5))


def test_while_grad_is_linear_in_the_trip_count(monkeypatch):
    """2n forward body evaluations (the loop, then its rerun recording residuals), none in
    the backward part (sin's derivative is cos): O(n), not the n^2/2 of recomputing."""
    calls = []
    impl = sin_p.impl
    monkeypatch.setattr(sin_p, "impl", lambda x: calls.append(1) or impl(x))
    x = RNG.normal(size=3)

    def f(x, n):
        return np.sum(tj.while_loop(lambda c: c[0] < n, lambda c: (c[0] + 1, np.sin(c[1]) * 1.1),
                                    (0, x))[1])
    g = tj.grad(f, backend="interpreter")
    for n in (10, 40):
        calls.clear()
        got = g(x, n)
        assert len(calls) == 2 * n
        want, c = np.ones(3), x
        cs = []
        for _ in range(n):
            cs.append(c)
            c = np.sin(c) * 1.1
        for c in reversed(cs):
            want = want * np.cos(c) * 1.1
        np.testing.assert_allclose(got, want, rtol=1e-12)
    calls.clear()  # vmap of it (per-example gradients): batched steps, still 2n
    tj.jit(tj.vmap(tj.grad(f), in_axes=(0, None)), static_argnums=1, backend="interpreter")(
        np.stack([x, -x]), 10)
    assert len(calls) <= 2 * 10  # (the primal loop is dead code here: 10)
    hvp = tj.jit(lambda x, v, n: tj.jvp(lambda x: tj.grad(f)(x, n), (x,), (v,))[1],
                 static_argnums=2, backend="interpreter")
    for n in (10, 40):  # forward mode over both loops (Hessian-vector products): O(n) too
        calls.clear()
        hvp(x, x, n)
        assert len(calls) <= 4 * n
    ir = tj.make_ir(tj.grad(f))(x, 5)
    (e,) = [e for e in ir.eqns if e.prim.name == "while_vjp"]
    assert all(s.prim.name != "while" for k in ("fwd", "bwd") for s in e.params[k].eqns)


def _residuals(f, *args):
    """The avals a while_vjp equation records per step."""
    (e,) = [e for e in tj.make_ir(tj.grad(f))(*args).eqns if e.prim.name == "while_vjp"]
    return [o.aval for o in e.params["fwd"].outputs[e.params["n_carry"]:]]


def test_while_residuals_only_for_what_the_backward_pass_reads():
    a0, b0 = RNG.normal(size=8), RNG.normal(size=8)

    def linear(a, b):  # da/da0 is constant: nothing to record; b never reaches a's cotangent
        _, a, b = tj.while_loop(lambda c: c[0] < 20, lambda c: (
            c[0] + 1, c[1] * 2.0 + tj.stop_gradient(c[2]), np.sin(c[2])), (0, a, b))
        return np.sum(a)
    assert _residuals(linear, a0, b0) == []
    (e,) = [e for e in tj.make_ir(tj.grad(linear))(a0, b0).eqns if e.prim.name == "while_vjp"]
    assert e.params["n_carry"] == 1  # its recording loop only counts the steps
    np.testing.assert_allclose(tj.grad(linear)(a0, b0), np.full(8, 2.0 ** 20))

    def reads_sin(a, b):  # one residual per step: sin(b_t) (b itself gets no gradient)
        _, a, b = tj.while_loop(lambda c: c[0] < 20, lambda c: (
            c[0] + 1, c[1] * np.sin(c[2]), c[2] * 0.5), (0, a, b))
        return np.sum(a)
    assert [str(a) for a in _residuals(reads_sin, a0, b0)] == ["f64[8]"]


def test_while_grad_under_other_transformations():
    """jvp/vmap of a gradient, grad of grad: through the plain-loop expansion."""
    x = RNG.normal(size=3)

    def f(x):
        return np.sum(tj.while_loop(lambda c: c[0] < 3, lambda c: (c[0] + 1, np.sin(c[1]) * c[1]),
                                    (0, x))[1])

    def fu(x):
        for _ in range(3):
            x = np.sin(x) * x
        return np.sum(x)

    def ref(f):
        return tj.jit(f, backend="interpreter")
    np.testing.assert_allclose(ref(tj.hessian(f))(x), tj.hessian(fu)(x), rtol=1e-9)
    v = RNG.normal(size=3)
    hv = ref(lambda x, v: tj.jvp(tj.grad(f), (x,), (v,))[1])(x, v)
    np.testing.assert_allclose(hv, tj.hessian(fu)(x) @ v, rtol=1e-9)
    xs = RNG.normal(size=(4, 3))
    np.testing.assert_allclose(ref(tj.vmap(tj.grad(f)))(xs), [tj.grad(fu)(r) for r in xs],
                               rtol=1e-10)
    def stops(x):  # examples stop at different steps: vmap steps all while any runs
        return np.sum(tj.while_loop(lambda c: np.sum(c[1] ** 2) > 0.05, lambda c: (
            c[0] + 1, np.sin(M @ c[1]) * 0.7), (0, x))[1])
    for be in BACKENDS:  # (the CUDA simulator runs while_vjp in test_while_grads_match_unrolled)
        np.testing.assert_allclose(tj.jit(tj.vmap(tj.grad(stops)), backend=be)(xs),
                                   [tj.grad(stops)(r) for r in xs], rtol=1e-12)
    tj.check_grads(stops, (xs[0],), backend="interpreter")
    d2 = tj.grad(lambda s: tj.grad(lambda s: f(x * s))(s), backend="interpreter")(1.3)
    np.testing.assert_allclose(d2, tj.grad(lambda s: tj.grad(lambda s: fu(x * s))(s))(1.3),
                               rtol=1e-9)


# ----- tj.checkpoint / tj.remat -----
W = RNG.normal(size=(4, 4)) * 0.4
XS = RNG.normal(size=(6, 4))


def rnn(ck):
    def body(c, xt):
        h = np.tanh(W @ c["h"] + xt) * np.cos(c["h"])
        return {"h": h, "s": c["s"] * 0.9}, np.sum(h * c["s"])
    if ck:
        body = tj.checkpoint(body)

    def f(x, xs):
        c, ys = tj.scan(body, {"h": x, "s": 1.5}, xs)
        return np.sum(c["h"] ** 2) + np.sum(ys ** 2)
    return f


def _stacked_bytes(plan) -> int:
    """Bytes of scan outputs beyond the carries that a grad plan stores."""
    return sum(v.aval.size * v.aval.dtype.itemsize for e in plan.graph.eqns
               if e.prim.name == "scan" for v in e.outputs[e.params["n_carry"]:])


@pytest.mark.parametrize("backend", BACKENDS)  # (inlined before any backend sees it)
def test_checkpointed_scan_body_same_grads_fewer_residuals(backend):
    x = RNG.normal(size=4)
    g = tj.grad(rnn(True), argnums=(0, 1), backend=backend)(x, XS)
    for a, b in zip(g, tj.grad(rnn(False), argnums=(0, 1), backend="interpreter")(x, XS)):
        np.testing.assert_allclose(a, b, rtol=1e-10, atol=1e-13)
    if backend == "interpreter":
        plain = _stacked_bytes(tj.make_plan(tj.grad(rnn(False)))(x, XS))
        # per step only the body's inputs (the carries h and s), and the forward scan's ys
        kept = _stacked_bytes(tj.make_plan(tj.grad(rnn(True)))(x, XS))
        assert kept < plain and kept == 6 * (4 + 1 + 1) * 8, (kept, plain)


def test_checkpoint_function_transformations_and_errors():
    x, y = RNG.normal(size=3), RNG.normal(size=3)

    def f(a, n, scale=1.0):  # a pytree in and out, a static argument, a keyword argument
        u = np.sin(a["x"] * a["y"]) ** n
        return {"u": u * scale, "v": np.exp(a["y"])}
    ck = tj.checkpoint(f, static_argnums=1)
    assert tj.remat is tj.checkpoint

    def loss(f):
        return lambda x, y: np.sum(f({"x": x, "y": y}, 2, scale=3.0)["u"]) + np.sum(
            f({"x": x, "y": y}, 2)["v"])
    np.testing.assert_allclose(ck({"x": x, "y": y}, 2)["u"], f({"x": x, "y": y}, 2)["u"])
    for a, b in zip(tj.grad(loss(ck), argnums=(0, 1))(x, y),
                    tj.grad(loss(f), argnums=(0, 1))(x, y)):
        np.testing.assert_allclose(a, b, rtol=1e-12)
    tj.check_grads(loss(ck), (x, y), backend="interpreter")

    def ref(f):
        return tj.jit(f, backend="interpreter")
    np.testing.assert_allclose(ref(tj.hessian(loss(ck)))(x, y), tj.hessian(loss(f))(x, y),
                               rtol=1e-10)
    t = ref(lambda x, y: tj.jvp(loss(ck), (x, y), (y, x))[1])(x, y)
    np.testing.assert_allclose(t, tj.jvp(loss(f), (x, y), (y, x))[1], rtol=1e-12)
    xs = RNG.normal(size=(5, 3))
    np.testing.assert_allclose(ref(tj.vmap(tj.grad(loss(ck)), in_axes=(0, None)))(xs, y),
                               [tj.grad(loss(f))(r, y) for r in xs], rtol=1e-12)
    with pytest.raises(tj.UnsupportedError, match="policy"):
        tj.checkpoint(f, policy=lambda *a: True)


def test_checkpoint_in_a_while_body_records_its_inputs_only():
    x = RNG.normal(size=4)

    def f(ck):
        def body(c):
            return c[0] + 1, np.tanh(W @ c[1]) * np.cos(c[1]) + np.sin(c[1])
        body = tj.checkpoint(body) if ck else body
        return lambda x: np.sum(tj.while_loop(lambda c: c[0] < 5, body, (0, x))[1])
    np.testing.assert_allclose(tj.grad(f(True))(x), tj.grad(f(False))(x), rtol=1e-12)
    assert [str(a) for a in _residuals(f(True), x)] == ["f64[4]"]
    assert len(_residuals(f(False), x)) > 1
