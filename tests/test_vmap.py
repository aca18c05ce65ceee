"""tj.vmap: every primitive's batching rule against a Python loop over the examples (random
in_axes, driven by the registry); in_axes/out_axes forms and their errors; compositions with
jit, grad, value_and_grad, jvp, jacrev, stop_gradient, custom_vjp and vmap itself; per-example
gradients as ONE fused kernel; random programs against jax.vmap when JAX is installed; a few
compositions on the CUDA backend (the simulator without a GPU)."""
from __future__ import annotations

import numpy as np
import pytest
from helpers import BACKENDS, assert_same, sample
from hypothesis import given, settings
from hypothesis import strategies as st
from test_forward import BINARY, UNARY, build, prim_fn, programs
from test_primitives import GRAD_CASES, make_input, prim_cases

import tracejit as tj
from tracejit.primitives import ANY, REGISTRY, SELECT

INTERP = "interpreter"
B = 3


def loop(f, args, axes, out_axis=0):
    """What vmap means: f on each example, results stacked (the oracle)."""
    size = next(np.shape(a)[ax] for a, ax in zip(args, axes) if ax is not None)
    outs = [f(*[a if ax is None else np.take(a, i, axis=ax) for a, ax in zip(args, axes)])
            for i in range(size)]
    if isinstance(outs[0], tuple):
        return tuple(np.stack([o[k] for o in outs], axis=out_axis) for k in range(len(outs[0])))
    return np.stack(outs, axis=out_axis)


def random_batch(makers, rng, size=B):
    """Batched inputs: each `makers[i]()` makes one example of input i; each input is
    mapped (at a random axis, negative half the time) or not, at least one mapped.
    Returns (args, in_axes, the same axes non-negative)."""
    mapped = [bool(rng.integers(2)) for _ in makers]
    mapped[int(rng.integers(len(makers)))] = True
    args, in_axes, np_axes = [], [], []
    for make, m in zip(makers, mapped):
        if not m:
            args.append(make())
            in_axes.append(None)
            np_axes.append(None)
            continue
        examples = [make() for _ in range(size)]
        ax = int(rng.integers(np.ndim(examples[0]) + 1))
        args.append(np.stack(examples, axis=ax))
        np_axes.append(ax)
        in_axes.append(ax - (np.ndim(examples[0]) + 1) if rng.integers(2) else ax)
    return args, tuple(in_axes), np_axes


# ---------------------------------------------------------------------------------------------
# every primitive's batching rule
# ---------------------------------------------------------------------------------------------
def batch_cases(prim):
    if prim.name in ("argmax", "argmin"):
        return [(s, p) for s, p in prim_cases(prim) if len(p["axes"]) == 1 and 0 not in s[0][0]]
    return prim_cases(prim)


BATCH_PARAMS = [pytest.param(name, specs, params, id=f"{name}-{i}")
                for name, prim in REGISTRY.items() if prim.kind not in ("call", "control")
                for i, (specs, params) in enumerate(batch_cases(prim))]
LOGICAL_CASES = {"logical_not": [([((3, 4), "c")], {}), ([((), "c")], {})]}


_KNOWN = set(REGISTRY)


def test_every_primitive_has_batch_cases():
    covered = {p.values[0] for p in BATCH_PARAMS} | set(LOGICAL_CASES)
    # primitives declared when the cases were built (a test file may declare more later)
    missing = {n for n, p in REGISTRY.items() if p.kind not in ("call", "control")
               and n in _KNOWN} - covered
    assert not missing, f"primitives no batching test covers: {missing}"


@pytest.mark.parametrize("name,specs,params", BATCH_PARAMS + [
    pytest.param(n, s, p, id=f"{n}-{i}") for n, cases in LOGICAL_CASES.items()
    for i, (s, p) in enumerate(cases)])
def test_primitive_batch(name, specs, params):
    prim = REGISTRY[name]
    rng = np.random.default_rng(abs(hash((name, str(specs), "vmap"))) % 2**32)
    domain = ANY if prim.kind == SELECT else prim.domain
    f = prim_fn(prim, params)
    args, in_axes, np_axes = random_batch([lambda s=s: example_input(s, domain, rng)
                                           for s in specs], rng)
    got = tj.jit(tj.vmap(f, in_axes=in_axes), backend=INTERP)(*args)
    assert_same(got, loop(f, args, np_axes))


def example_input(spec, domain, rng):
    """One example's input; an index input is its case's indices shuffled, so that batched
    examples read (and scatter to) different places."""
    x = make_input(spec, domain, rng)
    return rng.permutation(x.reshape(-1)).reshape(x.shape) if spec[0] == "idx" else x


@pytest.mark.parametrize("name", sorted(GRAD_CASES))
def test_function_batch(name):
    f, specs = GRAD_CASES[name]
    rng = np.random.default_rng(len(name) + 5)
    args, in_axes, np_axes = random_batch([lambda s=s, d=d: sample(d, s, rng)
                                           for s, d in specs], rng)
    got = tj.jit(tj.vmap(f, in_axes=in_axes), backend=INTERP)(*args)
    np.testing.assert_allclose(got, loop(f, args, np_axes), rtol=1e-12, atol=1e-12)


# (a, b) per-example shapes and which is mapped: every branch of matmul's batching rule
MATMUL_CASES = [((3, 1), (1, 4), (0, 0)), ((1, 5), (5, 1), (0, None)), ((1, 5), (5, 1), (None, 0)),
                ((3, 5), (5, 4), (0, None)), ((2, 3, 5), (5, 4), (0, None)),
                ((3, 5), (5, 1), (None, 0)), ((2, 3, 5), (2, 5, 1), (0, 0)),
                ((3, 5), (5, 4), (None, 0)), ((2, 3, 5), (5, 4), (0, 0)),
                ((3, 5), (2, 5, 4), (0, 0)), ((1, 3, 5), (2, 5, 4), (None, 0))]


@pytest.mark.parametrize("sa,sb,axes", MATMUL_CASES)
def test_matmul_batch_paths(sa, sb, axes, backend):
    rng = np.random.default_rng(7)
    a, b = rng.standard_normal(sa), rng.standard_normal(sb)
    args = [np.stack([x * (1 + k) for k in range(B)]) if ax == 0 else x
            for x, ax in zip((a, b), axes)]
    f = np.matmul
    got = tj.jit(tj.vmap(f, in_axes=axes), backend=backend)(*args)
    np.testing.assert_allclose(got, loop(f, args, axes), rtol=1e-12, atol=1e-12)


# ---------------------------------------------------------------------------------------------
# in_axes, out_axes and their errors
# ---------------------------------------------------------------------------------------------
def test_in_axes_forms_and_out_axes(backend):
    x = np.arange(12.0).reshape(3, 4)
    params = {"w": np.ones(4), "b": np.arange(3.0)}

    def f(p, x, s=1.0):
        return {"y": (x * p["w"] + p["b"]) * s, "c": p["w"].sum()}
    vf = tj.jit(tj.vmap(f, in_axes=({"w": None, "b": 0}, 1), out_axes={"y": -1, "c": None}),
                backend=backend)
    out = vf(params, x.T)  # x mapped along its axis 1
    want = np.stack([x[i] * params["w"] + params["b"][i] for i in range(3)], axis=-1)
    np.testing.assert_allclose(out["y"], want)
    assert float(out["c"]) == 4.0
    # keyword arguments are mapped along axis 0; negative in_axes; a list in_axes
    got = tj.vmap(lambda x, y: x - y, in_axes=[-1, None])(x, np.ones(3), )
    np.testing.assert_allclose(got, (x - 1).T)
    got = tj.vmap(lambda x, *, s: x * s)(x, s=np.arange(3.0))
    np.testing.assert_allclose(got, x * np.arange(3.0)[:, None])
    # an unmapped output with out_axes=0 is broadcast over the batch
    got = tj.vmap(lambda x, y: (x + 1, y * 2), in_axes=(0, None))(x, np.ones(2))
    assert got[1].shape == (3, 2)


def test_python_values_pass_through_unmapped():
    x = np.arange(6.0).reshape(2, 3)

    def f(x, n, mode):
        return x ** n if mode == "pow" else x * n  # Python control flow on static values
    np.testing.assert_allclose(tj.vmap(f, in_axes=(0, None, None))(x, 3, "pow"), x ** 3)
    np.testing.assert_allclose(tj.vmap(f, in_axes=(0, None, None))(x, 2, "mul"), x * 2)


def test_nested_vmap(backend):
    x, y = np.arange(6.0).reshape(2, 3), np.arange(4.0)
    outer = tj.vmap(tj.vmap(lambda a, b: a * b + np.sin(a), in_axes=(None, 0)), in_axes=(0, None))
    got = tj.jit(outer, backend=backend)(x, y)
    assert got.shape == (2, 4, 3)
    np.testing.assert_allclose(got, x[:, None, :] * y[None, :, None] + np.sin(x)[:, None, :])


def test_vmap_errors():
    x, y = np.ones((3, 2)), np.ones(5)
    with pytest.raises(tj.ShapeError) as e:
        tj.vmap(lambda a, b: a[0] * b)(x, y)
    msg = str(e.value)
    assert "argument 0 (a) has shape (3, 2) and axis 0 is mapped (size 3)" in msg
    assert "argument 1 (b) has shape (5,) and axis 0 is mapped (size 5)" in msg
    assert "test_vmap.py" in msg  # the user's line
    with pytest.raises(tj.ShapeError, match="axis 2 is out of range"):
        tj.vmap(lambda a: a, in_axes=2)(x)
    with pytest.raises(tj.ShapeError, match="out of range for a value of rank 0"):
        tj.vmap(lambda a, n: a * n, in_axes=(0, 0))(x, 2.0)
    with pytest.raises(tj.ArgumentError, match="in_axes has 1 entries"):
        tj.vmap(lambda a, b: a, in_axes=(0,))(x, x)
    with pytest.raises(tj.ArgumentError, match="not a tree prefix"):
        tj.vmap(lambda p: p["w"], in_axes=({"v": 0},))({"w": x})
    with pytest.raises(tj.ArgumentError, match="no argument is mapped"):
        tj.vmap(lambda a: a, in_axes=None)(x)
    with pytest.raises(tj.ArgumentError, match="out_axes is None for an output that differs"):
        tj.vmap(lambda a: a * 2, out_axes=None)(x)


# ---------------------------------------------------------------------------------------------
# compositions
# ---------------------------------------------------------------------------------------------
def logistic(w, x, y):
    """W9's per-example loss: log(1 + exp(-y * (x @ w)))."""
    return np.log(1 + np.exp(-y * (x @ w)))


def logistic_data(n=16, d=5, dtype=np.float64, seed=0):
    rng = np.random.default_rng(seed)
    X = rng.standard_normal((n, d)).astype(dtype)
    y = np.sign(rng.standard_normal(n)).astype(dtype)
    w = (rng.standard_normal(d) / 4).astype(dtype)
    return w, X, y


@pytest.mark.parametrize("dtype", [np.float32, np.float64], ids=["f32", "f64"])
def test_per_example_gradients_equal_a_loop_of_grad(dtype, backend):
    w, X, y = logistic_data(dtype=dtype)
    pg = tj.jit(tj.vmap(tj.grad(logistic), in_axes=(None, 0, 0)), backend=backend)(w, X, y)
    want = np.stack([tj.grad(logistic, backend=backend)(w, X[i], y[i]) for i in range(len(y))])
    assert pg.dtype == dtype and pg.shape == X.shape
    np.testing.assert_allclose(pg, want, rtol=1e-5 if dtype == np.float32 else 1e-12)
    s = -y / (1 + np.exp(y * (X @ w)))  # by hand
    np.testing.assert_allclose(pg, s[:, None] * X, rtol=2e-5 if dtype == np.float32 else 1e-12)


def test_per_example_value_and_grad_with_aux(backend):
    w, X, y = logistic_data()
    vg = tj.vmap(tj.value_and_grad(lambda w, x, y: (logistic(w, x, y), x.sum()), has_aux=True,
                                   argnums=(0, 1)), in_axes=(None, 0, 0))
    (value, aux), (gw, gx) = tj.jit(vg, backend=backend)(w, X, y)
    np.testing.assert_allclose(value, logistic(w, X, y))
    np.testing.assert_allclose(aux, X.sum(axis=1))
    np.testing.assert_allclose(gx, -y[:, None] * w / (1 + np.exp(y * (X @ w)))[:, None])
    assert gw.shape == X.shape


def test_grad_through_vmap_and_vmap_of_jit(backend):
    w, X, y = logistic_data()
    full = tj.grad(lambda w: np.mean(tj.vmap(logistic, in_axes=(None, 0, 0))(w, X, y)),
                   backend=backend)(w)
    loop_mean = np.mean([tj.grad(logistic)(w, X[i], y[i]) for i in range(len(y))], axis=0)
    np.testing.assert_allclose(full, loop_mean, rtol=1e-12)
    jitted = tj.jit(lambda x: np.tanh(x) * 2)
    np.testing.assert_allclose(tj.vmap(jitted)(X), np.tanh(X) * 2)


def test_vmap_with_jvp_and_jacobians(backend):
    x = np.linspace(-1, 1, 12).reshape(4, 3)
    f = lambda v: np.sin(v) * v[0]  # noqa: E731
    # per-example JVPs along each example's own tangent, and jvp of a vmapped function
    tan = tj.jit(tj.vmap(lambda p, t: tj.jvp(f, (p,), (t,))[1]), backend=backend)(x, x * 2)
    tan2 = tj.jvp(tj.vmap(f), (x,), (x * 2,))[1]
    want = np.stack([np.cos(r) * r[0] * 2 * r + np.sin(r) * 2 * r[0] for r in x])
    np.testing.assert_allclose(tan, want, rtol=1e-12)
    np.testing.assert_allclose(tan2, want, rtol=1e-12)
    # per-example Jacobians and Hessians
    J = tj.jit(tj.vmap(tj.jacrev(f)), backend=backend)(x)
    np.testing.assert_allclose(J, np.stack([tj.jacfwd(f)(r) for r in x]), rtol=1e-12)
    H = tj.vmap(tj.hessian(lambda v: np.sum(v ** 3)))(x)
    np.testing.assert_allclose(H, np.stack([np.diag(6 * r) for r in x]), rtol=1e-12)


def test_stop_gradient_under_vmap(backend):
    x = np.linspace(0.5, 2.0, 8).reshape(4, 2)
    g = tj.jit(tj.vmap(tj.grad(lambda v: np.sum(v * v * tj.stop_gradient(v)))),
               backend=backend)(x)
    np.testing.assert_allclose(g, 2 * x * x)  # not 3 x^2
    np.testing.assert_allclose(tj.vmap(tj.stop_gradient)(x), x)


@tj.custom_vjp
def clip_gradient(x, lo):
    return x


clip_gradient.defvjp(lambda x, lo: (x, lo), lambda lo, g: (np.clip(g, lo, -lo), None))


def test_custom_vjp_under_vmap_batches_fwd_and_bwd(backend):
    x = np.linspace(-1, 1, 8).reshape(4, 2)
    w = np.array([0.5, 3.0])
    lo = np.array([-1.0, -0.25, -2.0, -1.0])  # a per-example residual

    def loss(x, lo):
        return np.sum(clip_gradient(x, lo) * w)
    g = tj.jit(tj.vmap(tj.grad(loss)), backend=backend)(x, lo)
    np.testing.assert_allclose(g, np.clip(w[None, :], lo[:, None], -lo[:, None]))
    # grad of a vmapped custom_vjp function, and its forward value
    g2 = tj.grad(lambda x: np.sum(tj.vmap(clip_gradient)(x, lo) * w), backend=backend)(x)
    np.testing.assert_allclose(g2, g)
    np.testing.assert_allclose(tj.vmap(clip_gradient, in_axes=(0, None))(x, -1.0), x)


# ---------------------------------------------------------------------------------------------
# compiled as one pass: kernel counts
# ---------------------------------------------------------------------------------------------
def w1_loss(x):
    return np.sum(np.tanh(x) * np.sin(x) + 0.5 * x * x)


def kernels_and_steps(fn, *args):
    plan = tj.make_plan(fn)(*args)
    return len(plan.kernels), sorted({s.eqn.prim.name for s in plan.steps}), plan


@pytest.mark.parametrize("dtype", [np.float32, np.float64], ids=["f32", "f64"])
def test_per_example_gradients_are_one_kernel(dtype):
    # W9: the per-example dot product is a row reduction, the gradient a second pass over
    # the row (in cache); the only steps are free reshapes of the inputs (NumPy views)
    w, X, y = logistic_data(64, 8, dtype)
    n, steps, plan = kernels_and_steps(tj.jit(tj.vmap(tj.grad(logistic), in_axes=(None, 0, 0))),
                                       w, X, y)
    assert (n, steps) == (1, ["reshape"]), plan.describe()
    assert plan.kernels[0].inner == (2,)
    # a map-reduce loss per example (W1 per row) and a shared weight vector
    n, steps, plan = kernels_and_steps(tj.jit(tj.vmap(tj.grad(w1_loss))), X)
    assert (n, steps) == (1, []), plan.describe()
    n, steps, plan = kernels_and_steps(
        tj.vmap(tj.grad(lambda w, x: np.sum(np.tanh(w * x))), in_axes=(None, 0)), w, X)
    assert (n, steps) == (1, []), plan.describe()
    # value and gradient per example: still one pass
    n, steps, plan = kernels_and_steps(
        tj.vmap(tj.value_and_grad(logistic), in_axes=(None, 0, 0)), w, X, y)
    assert (n, steps) == (1, ["reshape"]), plan.describe()


# ---------------------------------------------------------------------------------------------
# random programs with random in_axes: a Python loop always, jax.vmap when installed
# ---------------------------------------------------------------------------------------------
def check_vmap_program(spec, backend, dtype=np.float64, jax_too=False):
    shapes, ops, seed = spec
    rng = np.random.default_rng(seed)
    args, in_axes, np_axes = random_batch(
        [lambda s=s: rng.uniform(-2, 2, s).astype(dtype) for s in shapes], rng)
    program = build(ops, np)
    got = tj.jit(tj.vmap(program, in_axes=in_axes), backend=backend)(*args)
    want = loop(program, args, np_axes)
    tol = dict(rtol=1e-10, atol=1e-12) if dtype == np.float64 else dict(rtol=2e-4, atol=2e-4)
    for g, w in zip(got, want):
        np.testing.assert_allclose(g, w, **tol, err_msg=f"{shapes} {ops} {in_axes}")
    # per-example gradients of the total against a loop of grad
    total = lambda *v: program(*v)[1]  # noqa: E731
    argnums = tuple(i for i, ax in enumerate(in_axes) if ax is not None)
    pg = tj.jit(tj.vmap(tj.grad(total, argnums=argnums), in_axes=in_axes),
                backend=backend)(*args)
    want_g = loop(lambda *v: tj.grad(total, argnums=argnums, backend=INTERP)(*v), args, np_axes)
    for g, w in zip(pg, want_g):
        np.testing.assert_allclose(g, w, **tol)
    if jax_too:
        import jax
        import jax.numpy as jnp
        jout = jax.vmap(build(ops, jnp), in_axes=in_axes)(*args)
        for g, w in zip(got, jout):
            np.testing.assert_allclose(g, np.asarray(w), **tol)


@settings(max_examples=30)
@given(programs())
def test_random_program_vmap_interpreter(spec):
    check_vmap_program(spec, INTERP)


@pytest.mark.skipif("numba" not in BACKENDS, reason="numba backend not available")
@settings(max_examples=3)  # each example compiles kernels
@given(programs())
def test_random_program_vmap_numba(spec):
    check_vmap_program(spec, "numba", np.float32)


@settings(max_examples=10)  # JAX compiles each example's ops
@given(programs(max_inputs=2))
def test_random_program_vmap_against_jax(spec):
    jax = pytest.importorskip("jax")
    jax.config.update("jax_enable_x64", True)
    check_vmap_program(spec, INTERP, jax_too=True)


@settings(max_examples=6)  # JAX compiles each example
@given(st.sampled_from(sorted(UNARY)), st.sampled_from(sorted(BINARY)), st.integers(0, 2**20))
def test_vmap_grad_against_jax(unary, binary, seed):
    jax = pytest.importorskip("jax")
    jax.config.update("jax_enable_x64", True)
    import jax.numpy as jnp

    def loss(xp, w, x):
        h = BINARY[binary](xp, UNARY[unary](xp, x * w), w)
        return xp.sum(h * h) + xp.sum(xp.tanh(x @ w))
    rng = np.random.default_rng(seed)
    w, X = rng.standard_normal(4), rng.standard_normal((5, 4))
    got = tj.vmap(tj.grad(lambda w, x: loss(np, w, x)), in_axes=(None, 0))(w, X)
    want = jax.jit(jax.vmap(jax.grad(lambda w, x: loss(jnp, w, x)), in_axes=(None, 0)))(w, X)
    np.testing.assert_allclose(got, np.asarray(want), rtol=1e-10, atol=1e-12)


def test_a_new_primitive_gets_its_kinds_rules():
    """cbrt and nansum (declared in test_extending.py with one defprim each, no jvp= or
    batch=) get the elementwise and reduction rules: forward mode and vmap work."""
    from test_extending import w1_like
    x = np.random.default_rng(1).uniform(0.5, 2.0, (3, 4))
    v = np.ones_like(x)
    _, tan = tj.jvp(w1_like, (x,), (v,))
    np.testing.assert_allclose(tan, np.sum(tj.grad(w1_like)(x) * v), rtol=1e-12)
    got = tj.vmap(tj.grad(w1_like))(x)
    np.testing.assert_allclose(got, np.stack([tj.grad(w1_like)(r) for r in x]), rtol=1e-12)


# ---------------------------------------------------------------------------------------------
# integer indexing under vmap: per-example gathers and scatters
# ---------------------------------------------------------------------------------------------
def _set(x, i, v):
    x = x.copy() if isinstance(x, np.ndarray) else x
    x[i] = v
    return x


def _add_at(x, i, v):
    if isinstance(x, np.ndarray):
        x = x.copy()
        np.add.at(x, i, v)
        return x
    return x.at[i].add(v)


# name: (f, per-example shapes of x and v, index shape and bound); the index is an int64
# argument (batched or not), repeats and negative entries included
INDEX_FUNCTIONS = {
    "x[i]": (lambda x, i, v: x[i] * v[0], (4, 3), (3,), (5,), 4),
    "x[:, i]": (lambda x, i, v: x[:, i] + v[:, None, None], (3, 4), (3,), (2, 2), 4),
    "x[i, i]": (lambda x, i, v: x[i, i] * v, (4, 4), (5,), (5,), 4),
    "take_axis1": (lambda x, i, v: np.take(x, i, axis=1) * v[0], (2, 5), (3,), (3,), 5),
    "take_along": (lambda x, i, v: np.take_along_axis(x, np.where(i < 0, i + 4, i)[:, None], 1)
                   * v[:, None], (3, 4), (3,), (3,), 4),
    "sort": (lambda x, i, v: np.sort(x, axis=-1)[:, :2] * x[i[0]][:2], (3, 4), (3,), (2,), 3),
    "set": (lambda x, i, v: _set(x, i, v[:, None]), (5, 2), (4,), (4,), 5),
    "set_cols": (lambda x, i, v: _set(x, (slice(None), i), v), (2, 5), (3,), (3,), 5),
    "add_at": (_add_at, (5,), (6,), (6,), 5),
    "at_max": (lambda x, i, v: x.at[i].max(v) if not isinstance(x, np.ndarray) else
               _ufunc_at(np.maximum, x, i, v), (5,), (4,), (4,), 5),
    "at_mul": (lambda x, i, v: x.at[:, i].multiply(v) if not isinstance(x, np.ndarray) else
               _ufunc_at(np.multiply, x, (slice(None), i), v), (2, 4), (3,), (3,), 4),
}


def _ufunc_at(ufunc, x, i, v):
    x = x.copy()
    ufunc.at(x, i, v)
    return x


def _index_args(name, rng):
    """Batched examples of (x, i, v): each mapped or not at random (i mapped at least half
    the time), with per-example random indices."""
    _, xs, vs, ishape, bound = INDEX_FUNCTIONS[name]
    makers = [lambda: rng.standard_normal(xs),
              lambda: rng.integers(-bound, bound, ishape),
              lambda: rng.uniform(0.5, 2, vs)]
    return random_batch(makers, rng)


@pytest.mark.parametrize("name", sorted(INDEX_FUNCTIONS))
def test_vmap_of_integer_indexing(name, backend):
    f = INDEX_FUNCTIONS[name][0]
    rng = np.random.default_rng(len(name))
    for _ in range(3):
        args, in_axes, np_axes = _index_args(name, rng)
        got = tj.jit(tj.vmap(f, in_axes=in_axes), backend=backend)(*args)
        np.testing.assert_allclose(got, loop(f, args, np_axes), rtol=1e-12, err_msg=in_axes)


@pytest.mark.parametrize("name", ["x[i]", "x[:, i]", "take_along", "set", "add_at", "at_max"])
def test_per_example_gradients_through_indexing(name, backend):
    """vmap(grad) of a loss that gathers (or scatters) with each example's own indices
    equals a Python loop of grad."""
    f = INDEX_FUNCTIONS[name][0]
    rng = np.random.default_rng(len(name) + 1)
    args, in_axes, np_axes = _index_args(name, rng)

    def loss(x, i, v):
        return np.sum(np.tanh(f(x, i, v)) * 1.5)
    pg = tj.jit(tj.vmap(tj.grad(loss, argnums=(0, 2)), in_axes=in_axes), backend=backend)(*args)
    want = loop(lambda x, i, v: tj.grad(loss, argnums=(0, 2), backend=INTERP)(x, i, v),
                args, np_axes)
    for g, w in zip(pg, want):
        np.testing.assert_allclose(g, w, rtol=1e-11, atol=1e-12)


def test_per_example_cross_entropy_with_labels(backend):
    """The W7 loss per example (one row of logits, its own label) under vmap(grad)."""
    def ce(logits, label):
        z = logits - tj.stop_gradient(np.max(logits))
        return np.log(np.sum(np.exp(z))) - z[label]
    rng = np.random.default_rng(3)
    L, labels = rng.standard_normal((6, 5)).astype(np.float32), rng.integers(0, 5, 6)
    g = tj.jit(tj.vmap(tj.grad(ce)), backend=backend)(L, labels)
    p = np.exp(L - L.max(1, keepdims=True))
    p /= p.sum(1, keepdims=True)
    p[np.arange(6), labels] -= 1
    assert g.dtype == np.float32
    np.testing.assert_allclose(g, p, rtol=1e-5, atol=1e-6)
    # one label per example: the gather and its gradient are selects in the row loop (as W7)
    n, steps, plan = kernels_and_steps(tj.vmap(tj.grad(ce)), L, labels)
    assert (n, steps) == (1, ["index_check", "reshape"]), plan.describe()


def test_vmap_of_an_out_of_bounds_index_raises():
    idx = np.array([[0, 1], [2, 3]])  # the second example's 3 is out of bounds for 3 rows
    with pytest.raises(IndexError, match="index 3 is out of bounds"):
        tj.vmap(lambda x, i: x[i])(np.ones((2, 3)), idx)
