"""Property-based: hypothesis builds random loop programs (tracejit/loops.py, branches.py,
while_grad.py) and checks values and gradients against JAX running the same program (the
oracle; skipped without jax) and against finite differences in float64, on each backend.

A program is a loop over a pytree carry {"h": a vector, "m": a vector, "s": a scalar} whose
body is a random sequence of smooth unary and binary ops, matrix-vector products, reductions
(sum, mean, max) and `stop_gradient` over the carry, the step input and the loop's consts.
The loop is one of: scan (forward or reverse, over xs, with stacked ys), fori_loop with
static or traced bounds, while_loop (a counter against a static or traced bound), a cond
inside a scan, a fori_loop or a while_loop nested in a scan, a fori_loop (a scan) nested in a
while_loop. Trip counts include 0 and 1. The loss may not
read the carry "m" (a carry no gradient reaches). JAX runs the same body through lax.scan,
lax.fori_loop and lax.cond (a while loop as its fori_loop: JAX cannot reverse-differentiate
while_loop). Finite differences run the same program eagerly (NumPy), for programs without
stop_gradient (it is not differentiable as written).

TRACEJIT_LONG=1 runs many more programs (CI runs a few, derandomized).
"""
from __future__ import annotations

import os

import numpy as np
import pytest
from helpers import BACKENDS
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import tracejit as tj

LONG = bool(os.environ.get("TRACEJIT_LONG"))
CUDA = os.environ.get("NUMBA_ENABLE_CUDASIM") == "1"
EXAMPLES = {"interpreter": 600 if LONG else 20, "numba": 60 if LONG else 3,
            "cuda": 30 if LONG else 2}
KINDS = ["scan", "scan_rev", "fori", "fori_traced", "while", "while_traced", "cond_scan",
         "nested", "nested_while", "while_of_scan"]
UNARY = ["tanh", "sin", "cos", "affine", "log_sq1", "square_damped", "stop_gradient"]
BINARY = ["add", "sub", "mul", "div_safe"]
REDUCE = ["sum", "mean", "max"]

try:
    import jax
    import jax.numpy as jnp
    jax.config.update("jax_enable_x64", True)
except ImportError:  # JAX is an optional oracle
    jax = jnp = None


@st.composite
def loop_programs(draw):
    """(kind, d, n, body ops, which value feeds what, loss reads m, seed). Values in a body:
    0 h, 1 m (vectors), 2 s (scalar), 3 x (the step input: an xs slice, or b scaled by the
    step number); an op appends one."""
    kind = draw(st.sampled_from(KINDS))
    d = draw(st.integers(1, 3))
    n = draw(st.sampled_from([0, 1, 2, 3, 5]))
    types = ["v", "v", "s", "v"]
    ops = []
    for _ in range(draw(st.integers(1, 6))):
        op = draw(st.sampled_from(["unary", "unary", "binary", "binary", "matvec", "reduce"]))
        i = draw(st.integers(0, len(types) - 1))
        j = draw(st.integers(0, len(types) - 1))
        if op == "unary":
            ops.append(("unary", draw(st.sampled_from(UNARY)), (i,)))
            types.append(types[i])
        elif op == "binary":
            ops.append(("binary", draw(st.sampled_from(BINARY)), (i, j)))
            types.append("v" if "v" in (types[i], types[j]) else "s")
        elif op == "matvec" and types[i] == "v":
            ops.append(("matvec", "W", (i,)))
            types.append("v")
        elif types[i] == "v":
            ops.append(("reduce", draw(st.sampled_from(REDUCE)), (i,)))
            types.append("s")
        else:
            ops.append(("unary", "tanh", (i,)))
            types.append(types[i])
    vecs = [k for k, t in enumerate(types) if t == "v"]
    scals = [k for k, t in enumerate(types) if t == "s"]
    feeds = {"h": draw(st.sampled_from(vecs[-3:])), "m": draw(st.sampled_from(vecs)),
             "s": draw(st.sampled_from(scals)), "y": draw(st.integers(0, len(types) - 1))}
    return kind, d, n, ops, feeds, draw(st.booleans()), draw(st.integers(0, 2**31 - 1))


def make_body(ops, feeds, L, sg):
    """The step as a function (carry, x, W) -> (carry, y) on library L (numpy or jax.numpy);
    every new carry is bounded (tanh) so long loops stay finite."""
    unary = {"tanh": L.tanh, "sin": L.sin, "cos": L.cos, "affine": lambda a: 0.5 * a + 0.25,
             "log_sq1": lambda a: L.log(a * a + 1.0),
             "square_damped": lambda a: a * a * 0.3, "stop_gradient": sg}
    binary = {"add": lambda a, b: a + b, "sub": lambda a, b: a - b, "mul": lambda a, b: a * b,
              "div_safe": lambda a, b: a / (b * b + 1.0)}
    reduce = {"sum": L.sum, "mean": L.mean, "max": L.max}

    def body(c, x, W):
        vals = [c["h"], c["m"], c["s"], x]
        for kind, name, idx in ops:
            args = [vals[i] for i in idx]
            if kind == "unary":
                vals.append(unary[name](*args))
            elif kind == "binary":
                vals.append(binary[name](*args))
            elif kind == "matvec":
                vals.append(W @ args[0])
            else:
                vals.append(reduce[name](args[0]))
        new = {"h": 0.8 * L.tanh(vals[feeds["h"]]) + 0.2 * c["h"],
               "m": 0.5 * c["m"] + 0.5 * L.sin(vals[feeds["m"]]),
               "s": 0.5 * c["s"] + 0.5 * L.tanh(vals[feeds["s"]])}
        return new, L.sum(vals[feeds["y"]] * 1.0)
    return body


def make_loss(spec, lib):
    """loss(h0, W, xs, n) for tracejit (lib "tj": n may be traced) or JAX (n static)."""
    kind, _, _, ops, feeds, reads_m, _ = spec
    if lib == "tj":
        L, sg, loops = np, tj.stop_gradient, tj
        cond_fn = tj.cond
    else:
        L, sg, loops = jnp, jax.lax.stop_gradient, jax.lax
        cond_fn = jax.lax.cond
    body = make_body(ops, feeds, L, sg)

    def loss(h0, W, xs, n):
        # (s from a Python 0.5 would stay float64 in a float32 body: tracejit's weak-typed
        # carry takes the body's dtype, and the body mixes it in as float64; JAX gives f32)
        init = {"h": h0, "m": L.cos(h0), "s": L.asarray(0.5, h0.dtype)}
        ys = None
        if kind in ("scan", "scan_rev", "cond_scan", "nested", "nested_while"):
            def step(c, x):
                if kind == "cond_scan":
                    return cond_fn(c["s"] > 0.1, lambda a: body(a[0], a[1], W),
                                   lambda a: body(a[0], L.sin(a[1]), W.T), (c, x))
                if kind == "nested" or (kind == "nested_while" and lib == "jax"):
                    c = loops.fori_loop(0, 2, lambda i, c: body(c, x * 0.5, W)[0], c)
                elif kind == "nested_while":
                    c = loops.while_loop(lambda ic: ic[0] < 2, lambda ic: (
                        ic[0] + 1, body(ic[1], x * 0.5, W)[0]), (0, c))[1]
                return body(c, x, W)
            c, ys = loops.scan(step, init, xs, reverse=kind == "scan_rev")
        else:
            b = xs[0] if xs.shape[0] else L.zeros(h0.shape)

            def fstep(i, c):
                if kind == "while_of_scan":
                    c = loops.fori_loop(0, 2, lambda j, c: body(c, b * 0.3, W)[0], c)
                return body(c, b * (i * 0.1 + 0.5).astype(b.dtype), W)[0]
            if lib == "jax" or kind in ("fori", "fori_traced"):
                c = loops.fori_loop(0, n, fstep, init)
            else:  # a while loop with a counter (JAX: its fori_loop, above)
                c = loops.while_loop(lambda ic: ic[0] < n, lambda ic: (
                    ic[0] + 1, fstep(ic[0], ic[1])), (0, init))[1]
        out = L.sum(c["h"] ** 2) + c["s"] + (L.sum(c["m"]) if reads_m else 0.0)
        return out + (L.sum(ys * 0.7) if ys is not None else 0.0)
    return loss


def inputs(spec, dtype=np.float64):
    kind, d, n, *_, seed = spec
    rng = np.random.default_rng(seed)
    h0 = rng.uniform(-1, 1, d)
    W = rng.uniform(-1, 1, (d, d)) * 0.7
    xs = rng.uniform(-1, 1, (n if kind.startswith(("scan", "cond", "nested")) else 1, d))
    return [np.asarray(a, dtype) for a in (h0, W, xs)]


def _tj_fn(spec, backend, what=tj.value_and_grad):
    """tracejit's value_and_grad of the program: n a static argument, or a traced one."""
    loss = make_loss(spec, "tj")
    traced = spec[0] in ("fori_traced", "while_traced")
    f = what(loss, argnums=(0, 1, 2), backend=backend, **({} if traced else
                                                          {"static_argnums": 3}))
    return lambda *xs: f(*xs, spec[2])


def check_program(spec, backend):
    msg = f"program {spec}"
    xs = inputs(spec)
    v, g = _tj_fn(spec, backend)(*xs)
    if jax is not None:
        jloss = make_loss(spec, "jax")
        vj, gj = jax.value_and_grad(lambda *a: jloss(*a, spec[2]), argnums=(0, 1, 2))(*xs)
        np.testing.assert_allclose(v, float(vj), rtol=1e-10, atol=1e-12, err_msg=msg)
        for a, b in zip(g, gj):
            np.testing.assert_allclose(a, np.asarray(b), rtol=1e-9, atol=1e-11, err_msg=msg)
    if backend != "interpreter":  # the reference: the same program on the interpreter
        vi, gi = _tj_fn(spec, "interpreter")(*xs)
        np.testing.assert_allclose(v, vi, rtol=1e-10, atol=1e-12, err_msg=msg)
        for a, b in zip(g, gi):
            np.testing.assert_allclose(a, b, rtol=1e-9, atol=1e-11, err_msg=msg)
        return
    if not any(name == "stop_gradient" for _, name, _ in spec[3]):
        loss = make_loss(spec, "tj")
        tj.check_grads(lambda *a: loss(*a, spec[2]), xs, argnums=(0, 1, 2), grads=g,
                       rtol=1e-5, atol=1e-7)
    # float32: the same program stays float32, close to float64
    v32, g32 = _tj_fn(spec, backend)(*inputs(spec, np.float32))
    assert np.asarray(v32).dtype == np.float32 and all(a.dtype == np.float32 for a in g32), msg
    np.testing.assert_allclose(v32, v, rtol=2e-4, atol=2e-4, err_msg=msg)
    for a, b in zip(g32, g):
        np.testing.assert_allclose(a, b, rtol=2e-3, atol=2e-3, err_msg=msg)


SETTINGS = {"deadline": None, "suppress_health_check": [HealthCheck.too_slow]}


@settings(max_examples=EXAMPLES["interpreter"], **SETTINGS)
@given(loop_programs())
def test_random_loops_interpreter(spec):
    check_program(spec, "interpreter")


@pytest.mark.skipif("numba" not in BACKENDS, reason="numba backend not available")
@settings(max_examples=EXAMPLES["numba"], **SETTINGS)
@given(loop_programs())
def test_random_loops_numba(spec):
    check_program(spec, "numba")


@pytest.mark.skipif(not CUDA, reason="set NUMBA_ENABLE_CUDASIM=1 (the CUDA simulator)")
@settings(max_examples=EXAMPLES["cuda"], **SETTINGS)
@given(loop_programs())
def test_random_loops_cuda(spec):
    check_program(spec, "cuda")


def test_every_loop_kind_once():
    """Each kind of loop, with a fixed body using every op kind, on the interpreter (so a
    kind hypothesis happens not to draw in CI is still checked)."""
    ops = [("matvec", "W", (0,)), ("binary", "mul", (4, 3)), ("reduce", "sum", (5,)),
           ("unary", "stop_gradient", (1,)), ("binary", "add", (5, 6)),
           ("unary", "sin", (8,))]
    feeds = {"h": 9, "m": 7, "s": 6, "y": 9}
    for kind in KINDS:
        for n in (0, 3):
            check_program((kind, 3, n, ops, feeds, kind != "scan", 7 + n), "interpreter")
