"""Public API: caching, static args, kwargs, scalars, memory safety (no aliasing, no
mutation of the caller's arrays), dtypes of gradients, pytree outputs, array methods."""
from __future__ import annotations

import numpy as np
import pytest

import tracejit as tj


# ----- caching: one trace per key -----
def test_second_call_does_not_retrace(backend):
    calls = []

    def f(x, y):
        calls.append(1)  # a side effect: runs only while tracing
        return np.sum(x * y)
    g = tj.value_and_grad(f, backend=backend)
    x, y = np.ones(3), np.arange(3.0)
    v1, g1 = g(x, y)
    v2, g2 = g(x + 1, y)  # same key: shapes and dtypes
    assert len(calls) == 1
    assert v1 == 3.0 and v2 == 6.0
    np.testing.assert_array_equal(g2, y)
    g(np.ones(4), np.ones(4))  # new shape -> new trace
    assert len(calls) == 2
    g(np.ones(4, np.float32), np.ones(4, np.float32))  # new dtype -> new trace
    assert len(calls) == 3
    g(np.ones((2, 2)), np.ones((2, 2)))  # new rank
    assert len(calls) == 4
    g(np.ones(4), np.ones(4))
    g(x, y)
    assert len(calls) == 4


def test_cache_key_includes_pytree_structure(backend):
    calls = []

    def f(t):
        calls.append(1)
        return sum(np.sum(v) for v in (t.values() if isinstance(t, dict) else t))
    j = tj.jit(f, backend=backend)
    assert j((np.ones(2), np.ones(2))) == 4.0
    assert j([np.ones(2), np.ones(2)]) == 4.0
    assert j({"a": np.ones(2), "b": np.ones(2)}) == 4.0
    assert j({"a": np.ones(2), "c": np.ones(2)}) == 4.0
    assert len(calls) == 4
    j((np.full(2, 2.0), np.ones(2)))
    assert len(calls) == 4


def test_jit_caching_and_new_values(backend):
    calls = []

    @tj.jit(backend=backend)
    def f(x):
        calls.append(1)
        return np.tanh(x) * 2
    for k in range(3):
        np.testing.assert_allclose(f(np.full(3, float(k))), np.tanh(np.full(3, float(k))) * 2)
    assert len(calls) == 1


def test_static_argnums(backend):
    calls = []

    def f(x, n, mode):
        calls.append((n, mode))
        y = x ** n
        if mode == "sum":  # Python control flow on a static argument is fine
            return np.sum(y)
        return np.mean(y)
    g = tj.value_and_grad(f, static_argnums=(1, 2), backend=backend)
    x = np.array([1.0, 2.0])
    v, gx = g(x, 2, "sum")
    assert v == 5.0
    np.testing.assert_array_equal(gx, [2.0, 4.0])
    v, gx = g(x, 3, "mean")
    assert v == 4.5
    np.testing.assert_array_equal(gx, [1.5, 6.0])
    g(x * 2, 3, "mean")
    assert calls == [(2, "sum"), (3, "mean")]
    j = tj.jit(lambda x, k: x[:k], static_argnums=1, backend=backend)
    np.testing.assert_array_equal(j(np.arange(5.0), 2), [0.0, 1.0])
    np.testing.assert_array_equal(j(np.arange(5.0), 3), [0.0, 1.0, 2.0])


def test_kwargs(backend):
    def f(x, scale=1.0, *, shift=0.0):
        return np.sum(x * scale + shift)
    x = np.array([1.0, 2.0])
    g = tj.value_and_grad(f, backend=backend)
    assert g(x)[0] == 3.0
    v, gx = g(x, scale=2.0, shift=1.0)
    assert v == 8.0
    np.testing.assert_array_equal(gx, [2.0, 2.0])
    assert tj.jit(f, backend=backend)(x, shift=np.array([1.0, 1.0])) == 5.0


def test_python_scalar_and_0d_arguments(backend):
    f = lambda x, y: x * y + np.sin(x)  # noqa: E731
    v, g = tj.value_and_grad(f, argnums=(0, 1), backend=backend)(2.0, 3.0)
    assert v == pytest.approx(6 + np.sin(2.0))
    assert isinstance(g, tuple) and np.shape(g[0]) == () and np.shape(g[1]) == ()
    assert g == pytest.approx((3 + np.cos(2.0), 2.0))
    v, g = tj.value_and_grad(f, backend=backend)(np.array(2.0), np.float64(3.0))
    assert np.shape(v) == () and np.shape(g) == ()
    assert g == pytest.approx(3 + np.cos(2.0))
    # an int argument not in argnums is fine
    assert tj.grad(lambda x, n: x * n, backend=backend)(2.0, 3) == 3.0


# ----- memory safety -----
def test_gradient_does_not_share_memory_with_inputs(backend):
    x, y = np.array([1.0, 2.0, 3.0]), np.array([4.0, 5.0, 6.0])
    gx, gy = tj.grad(lambda x, y: np.sum(x * y), argnums=(0, 1), backend=backend)(x, y)
    np.testing.assert_array_equal(gx, y)
    np.testing.assert_array_equal(gy, x)
    for g in (gx, gy):
        for a in (x, y):
            assert not np.shares_memory(g, a)
    assert not np.shares_memory(gx, gy)


@pytest.mark.parametrize("fn", [
    lambda x: x, lambda x: x * 1.0, lambda x: x + 0.0, lambda x: tj.stop_gradient(x),
    lambda x: x.reshape(-1).reshape(x.shape), lambda x: x.T.T, lambda x: x[...],
    lambda x: np.broadcast_to(x, x.shape)], ids=["id", "mul1", "add0", "stop", "reshape2",
                                                 "TT", "ellipsis", "broadcast_same"])
def test_outputs_never_alias_inputs(fn, backend):
    x = np.arange(6.0).reshape(2, 3)
    out = tj.jit(fn, backend=backend)(x)
    np.testing.assert_array_equal(out, x)
    assert not np.shares_memory(out, x)
    out[...] = -1  # writing into the result must not touch the input
    np.testing.assert_array_equal(x, np.arange(6.0).reshape(2, 3))
    g = tj.grad(lambda x: np.sum(fn(x) * x), backend=backend)(x)
    assert not np.shares_memory(g, x)


def test_value_and_grad_outputs_distinct(backend):
    # the gradient of sum(x) is the constant ones; two calls must not hand out one buffer
    f = tj.grad(lambda x: np.sum(x), backend=backend)
    g1 = f(np.ones(3))
    g2 = f(np.ones(3))
    assert not np.shares_memory(g1, g2)
    g1[0] = 5.0
    np.testing.assert_array_equal(f(np.ones(3)), np.ones(3))
    vg = tj.value_and_grad(lambda x: (np.sum(x), x), has_aux=True, backend=backend)
    (v, aux), g = vg(np.ones(2))
    assert not np.shares_memory(aux, g)


def test_callers_arrays_not_modified(backend):
    rng = np.random.default_rng(0)
    x = rng.standard_normal((4, 6))
    xs = [x, x[:, ::2], x.T, np.asfortranarray(x)]
    ro = x.copy()
    ro.flags.writeable = False
    xs.append(ro)
    params = {"w": rng.standard_normal((6,)), "b": [rng.standard_normal(())]}

    def loss(x, p):
        h = np.tanh(x[..., :3] * 2) if x.shape[-1] >= 3 else x
        return np.sum(h ** 2) + np.sum(p["w"] ** 2) + p["b"][0] ** 2
    g = tj.value_and_grad(loss, argnums=(0, 1), backend=backend)
    for a in xs:
        before = a.copy()
        p_before = {"w": params["w"].copy(), "b": [params["b"][0].copy()]}
        v, (ga, gp) = g(a, params)
        v2, _ = g(a, params)  # cached path
        np.testing.assert_array_equal(a, before)
        np.testing.assert_array_equal(params["w"], p_before["w"])
        np.testing.assert_array_equal(params["b"][0], p_before["b"][0])
        assert v == v2
        assert not np.shares_memory(ga, a)
        assert not np.shares_memory(gp["w"], params["w"])
        assert ga.shape == a.shape
    assert not ro.flags.writeable


def test_closed_over_array_is_captured_by_value(backend):
    w = np.array([1.0, 2.0])
    f = tj.jit(lambda x: x * w, backend=backend)
    np.testing.assert_array_equal(f(np.ones(2)), [1.0, 2.0])
    w_before = w.copy()
    np.testing.assert_array_equal(w, w_before)


# ----- dtypes -----
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_gradient_dtype_follows_input(dtype, backend):
    x = np.linspace(-1, 1, 5).astype(dtype)
    v, g = tj.value_and_grad(lambda x: np.sum(np.exp(x) * 2.5), backend=backend)(x)
    assert g.dtype == dtype and np.asarray(v).dtype == dtype
    np.testing.assert_allclose(g, 2.5 * np.exp(x), rtol=1e-6)


def test_mixed_dtypes_promote_like_numpy(backend):
    f = tj.jit(lambda a, b: a * b, backend=backend)
    assert f(np.ones(2, np.float32), np.ones(2, np.float64)).dtype == np.float64
    assert f(np.ones(2, np.float32), np.ones(2, np.int32)).dtype == np.float64
    assert f(np.ones(2, np.int32), np.ones(2, np.int32)).dtype == np.int32
    g32, g64 = tj.grad(lambda a, b: np.sum(a * b), argnums=(0, 1), backend=backend)(
        np.ones(2, np.float32), np.ones(2, np.float64))
    assert g32.dtype == np.float32 and g64.dtype == np.float64


# ----- outputs -----
def test_jit_multiple_and_pytree_outputs(backend):
    def f(x, y):
        return x + y, {"prod": x * y, "stats": [np.sum(x), np.max(y)]}, (x - y,)
    x, y = np.array([1.0, 2.0]), np.array([3.0, 5.0])
    a, d, (c,) = tj.jit(f, backend=backend)(x, y)
    np.testing.assert_array_equal(a, x + y)
    np.testing.assert_array_equal(d["prod"], x * y)
    assert d["stats"][0] == 3.0 and d["stats"][1] == 5.0
    assert isinstance(d["stats"], list)
    np.testing.assert_array_equal(c, x - y)


def test_jit_returns_constant_and_input(backend):
    out = tj.jit(lambda x: (x, 2.0, np.ones(2)), backend=backend)(np.zeros(3))
    np.testing.assert_array_equal(out[0], np.zeros(3))
    assert out[1] == 2.0
    np.testing.assert_array_equal(out[2], np.ones(2))


def test_array_methods(backend):
    x = np.arange(12.0).reshape(3, 4)
    f = lambda x: (x.sum(), x.sum(axis=0), x.T, x.reshape(4, 3), x.reshape((2, 6)),  # noqa
                   x.astype(np.float32), x.mean(), x.max(axis=1), x.min(), x.prod(axis=0),
                   x.std(), x.var(axis=1), x.argmax(), x.argmin(axis=0), x.transpose(),
                   x.squeeze(), x.ravel(), x.clip(2, 5), x.round(), x.dot(np.ones(4)),
                   x.shape, x.ndim, x.size, x.dtype)
    got, want = tj.jit(f, backend=backend)(x), f(x)
    for i, (g, w) in enumerate(zip(got, want)):
        if isinstance(w, (tuple, int, np.dtype)):
            assert g == w, i
        else:
            assert np.asarray(g).dtype == np.asarray(w).dtype, i
            np.testing.assert_allclose(g, w, err_msg=str(i))
    g = tj.grad(lambda x: x.T.reshape(-1).sum() + x.astype(np.float64).mean(),
                backend=backend)(x)
    np.testing.assert_allclose(g, np.full((3, 4), 1 + 1 / 12))


def test_decorator_forms(backend):
    @tj.jit_grad(backend=backend)
    def loss(w, x, y):
        return np.mean((w * x - y) ** 2)
    x, y = np.array([1.0, 2.0, 3.0]), np.array([2.0, 4.0, 6.5])
    value, g = loss(2.0, x, y)
    assert value == pytest.approx(0.25 / 3)
    assert g == pytest.approx(np.mean(2 * (2.0 * x - y) * x))

    @tj.jit_grad(argnums=1, unconnected="none", backend=backend)
    def h(a, b, c):
        return np.sum(a * b)
    _, gb = h(np.ones(2), np.ones(2), np.ones(2))
    np.testing.assert_array_equal(gb, np.ones(2))


def test_make_ir_prints_forward_and_joint():
    f = lambda x: np.sum(np.exp(x))  # noqa: E731
    fwd = tj.make_ir(f)(np.ones(3, np.float32))
    text = str(fwd)
    assert "exp" in text and "reduce_sum" in text and "f32[3]" in text
    joint = str(tj.make_ir(tj.grad(f))(np.ones(3, np.float32)))
    assert joint.count("exp") >= 1 and "mul" in joint


def test_transformed_used_as_method(backend):
    class Model:
        scale = 3.0

        @tj.jit(backend=backend)
        def forward(self, x):
            return x * self.scale
    # `self` is not an array: it must be made static or the call fails with a clear error
    with pytest.raises(tj.ArgumentError):
        Model().forward(np.ones(2))


def test_positional_fast_path_keeps_dtypes_shapes_and_scalar_types_apart(backend):
    # the fast cache key (per argument: dtype and shape, or the scalar's type) must not let
    # one specialization answer a call with another dtype, shape or scalar type. Python
    # scalars are arguments like np.asarray(w): float -> float64, int -> int64, bool -> bool
    g = tj.value_and_grad(lambda w, x: np.sum(w * x * x), argnums=1, backend=backend)
    cases = [(2.0, np.ones(3, np.float32)), (2, np.ones(3, np.float32)),
             (True, np.ones(3, np.float32)), (2.0, np.ones(3)), (2.0, np.ones(4, np.float32)),
             (np.float32(2.0), np.ones(3, np.float32)), (2.0, np.ones((3, 1), np.float32))]
    for _ in range(2):  # the second round is served by the fast path
        for w, x in cases:
            value, grad = g(w, x)
            want = np.sum(np.asarray(w) * x * x)
            assert np.asarray(value).dtype == want.dtype and value == want
            # a gradient has its input's dtype, as in JAX
            assert grad.shape == x.shape and grad.dtype == x.dtype
            np.testing.assert_array_equal(grad, (2 * np.asarray(w) * x).astype(x.dtype))


def test_trace_in_another_thread_does_not_look_nested(backend):
    # the trace stack is per thread: while one thread traces (a first call), another
    # thread's calls of compiled functions run them, rather than inlining into that trace
    # and returning tracers (found by tracejit.dask's threaded scheduler)
    import threading
    started, release = threading.Event(), threading.Event()

    def slow(x):
        started.set()
        release.wait(10)  # holds the trace open
        return np.sum(x * x)
    g = tj.value_and_grad(lambda x: np.sum(x * x), backend=backend)
    h = tj.value_and_grad(lambda p: np.sum(p["x"] * p["x"]), backend=backend)
    g(np.ones(3))
    h({"x": np.ones(3)})
    worker = threading.Thread(target=tj.value_and_grad(slow, backend=backend),
                              args=(np.ones(3),))
    worker.start()
    try:
        assert started.wait(10)
        v1, g1 = g(np.ones(3))  # the fast path
        v2, g2 = h({"x": np.full(3, 2.0)})  # the general path (a pytree argument)
    finally:
        release.set()
        worker.join()
    assert v1 == 3.0 and v2 == 12.0 and isinstance(g1, np.ndarray)
    np.testing.assert_array_equal(g2["x"], np.full(3, 4.0))
