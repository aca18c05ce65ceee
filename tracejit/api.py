"""Public transformations: jit, value_and_grad / jit_grad, grad, make_ir, make_plan,
explain, stop_gradient, wait_compiled. Each returns (or inspects) a `dispatch.Transformed`,
which holds the compile cache and runs the pipeline; see dispatch.py.
"""
from __future__ import annotations

import sys
from collections.abc import Callable

from . import passes, pytree
from .dispatch import Transformed
from .fusion import Plan
from .ir import Graph
from .tracing import stop_gradient  # noqa: F401  (public: tj.stop_gradient)


# ----- public constructors -----
def _decorator(mode: str, fn: Callable | None, options: dict):
    if fn is None:
        return lambda f: Transformed(f, mode=mode, **options)
    if not callable(fn):
        raise TypeError(f"tracejit.{mode}: expected a function, got {type(fn).__name__}. "
                        f"Fix: use @tracejit.{mode} or @tracejit.{mode}(argnums=...).")
    return Transformed(fn, mode=mode, **options)


def jit(fn: Callable | None = None, *, static_argnums=(), static_argnames=(),
        backend: str | None = None, device: str = "cpu", reuse_buffers: bool = False):
    """Compile `fn` (forward only) into fused kernels.

    Args:
        fn: a function of arrays, scalars and pytrees of them, written with NumPy calls.
        static_argnums: int or tuple of ints: positions of arguments that are Python values
            (a size, a flag, a mode string), passed to `fn` as they are instead of being
            traced. Python control flow may use them (`range(n)`, `if mode == "train"`); they
            must be hashable, and each new value compiles again (they are part of the cache
            key). Arrays do not belong here: a changed array is not seen by the cache.
        static_argnames: str or tuple of strs: the same for keyword arguments (as JAX). A
            name also makes its position static, and a static position is also static when
            passed by keyword.
        backend: "numba" (default), "interpreter" (the NumPy reference) or "cuda".
        device: "cpu" (default); "cuda" runs on the GPU (numba-cuda): NumPy inputs are
            copied in and results copied out, device arrays (`__cuda_array_interface__`)
            are used in place and results stay on the device; "auto" uses the GPU when an
            input is already there and CUDA is usable, else the CPU. Given GPU arrays,
            device="cpu" copies them to the host.
        reuse_buffers: return outputs in buffers reused (overwritten) by the next call.

    Returns:
        A function with `fn`'s signature that runs the compiled code.

    Example:
        >>> f = tj.jit(lambda x: np.tanh(x) * 2)
        >>> f(np.zeros(3))
        array([0., 0., 0.])
        >>> head = tj.jit(lambda x, n: x[:n], static_argnames="n")
        >>> head(np.arange(5.0), n=2)     # a new n compiles again
        array([0., 1.])
    """
    return _decorator("jit", fn, dict(static_argnums=static_argnums,
                                      static_argnames=static_argnames, backend=backend,
                                      device=device, reuse_buffers=reuse_buffers))


def value_and_grad(fn: Callable | None = None, *, argnums=0, has_aux: bool = False,
                   unconnected: str = "zero", static_argnums=(), static_argnames=(),
                   backend: str | None = None, device: str = "cpu",
                   reuse_buffers: bool = False):
    """Compile a function returning `(value, gradient)` of the scalar loss `fn`.

    Args:
        fn: returns a float scalar (or `(scalar, aux)` with has_aux=True).
        argnums: int -> the gradient is a bare array (pytree); tuple -> a tuple of them.
        has_aux: `fn` returns `(loss, aux)`; the result is then `((loss, aux), grads)`.
        unconnected: "zero" (default): inputs no gradient reaches get zeros; "none": None
            (like TensorFlow's UnconnectedGradients.NONE).
        static_argnums, static_argnames, backend, device, reuse_buffers: as in `jit`
            (a static argument cannot be in argnums).

    Returns:
        A function returning `(value, grads)`, or `((value, aux), grads)`.

    Example:
        >>> vg = tj.value_and_grad(lambda w, x: np.sum((w * x) ** 2))
        >>> vg(2.0, np.ones(3))
        (12.0, 24.0)
    """
    return _decorator("value_and_grad", fn, dict(
        argnums=argnums, has_aux=has_aux, unconnected=unconnected,
        static_argnums=static_argnums, static_argnames=static_argnames, backend=backend,
        device=device, reuse_buffers=reuse_buffers))


def jit_grad(fn: Callable | None = None, **options):
    """Decorator form of `value_and_grad`: `@tj.jit_grad` or `@tj.jit_grad(argnums=1)`.

    Example:
        >>> @tj.jit_grad
        ... def loss(w, x, y):
        ...     return np.mean((w * x - y) ** 2)
        >>> value, g = loss(2.0, np.ones(4), np.zeros(4))
    """
    return value_and_grad(fn, **options)


def grad(fn: Callable | None = None, *, argnums=0, has_aux: bool = False,
         unconnected: str = "zero", static_argnums=(), static_argnames=(),
         backend: str | None = None, device: str = "cpu", reuse_buffers: bool = False):
    """Compile the gradient of the scalar function `fn` (with has_aux: `(grads, aux)`).

    Same options as `value_and_grad`. Nested use (`grad(grad(f))`) differentiates the
    gradient's own graph.

    Example:
        >>> tj.grad(lambda x: np.sum(np.sin(x)))(np.zeros(2))
        array([1., 1.])
    """
    return _decorator("grad", fn, dict(
        argnums=argnums, has_aux=has_aux, unconnected=unconnected,
        static_argnums=static_argnums, static_argnames=static_argnames, backend=backend,
        device=device, reuse_buffers=reuse_buffers))


def wait_compiled() -> None:
    """Wait until kernels compiling in the background are ready.

    A kernel's first call on a large input runs its serial loop, whose compile is faster,
    while the multi-threaded loop compiles in a background thread and takes over when ready
    (about a second later; calls keep running meanwhile). Call this before timing steady-state
    speed, as you would `block_until_ready` in JAX.
    """
    backend = sys.modules.get("tracejit.backends.numba_cpu")
    if backend is not None:
        backend.wait_compiled()


def make_ir(fn: Callable, *, static_argnums=(), static_argnames=()):
    """Return a function that traces `fn` on the given arguments and returns its Graph.

    `make_ir(f)(x)` is the forward IR; `make_ir(tj.grad(f))(x)` the joint forward+backward IR
    (before clean-up passes, with stop_gradient still visible).

    Example:
        >>> print(tj.make_ir(lambda x: np.sum(np.exp(x)))(np.ones(3, np.float32)))
        { lambda a:f32[3] .
            b:f32[3] = exp a
            c:f32[1] = reduce_sum[axes=(0,)] b
            d:f32[] = reshape[shape=()] c
          in ( d ) }
    """
    t = Transformed(fn, mode="jit", static_argnums=static_argnums,
                    static_argnames=static_argnames, backend="interpreter")

    def traced(*args, **kwargs) -> Graph:
        leaves, treedef = pytree.flatten(t._split(args, kwargs)[:2])
        graph, _, _ = t._trace(args, kwargs, leaves, treedef)
        return passes.dce(graph)
    return traced


def make_plan(fn: Callable):
    """Return a function that runs `fn`'s pipeline for the given arguments up to the fusion
    plan (trace, autodiff, clean-up passes, fusion) and returns the `Plan` the backend would
    compile, without compiling it. `fn` is a tracejit-transformed function, or a plain one
    (then jitted). `len(plan.kernels)` counts the loop nests; `plan.describe()` prints it.

    Example:
        >>> plan = tj.make_plan(tj.value_and_grad(lambda x: np.sum(np.tanh(x) ** 2)))(x)
        >>> len(plan.kernels)   # value and gradient in one pass
        1
    """
    t = fn if isinstance(fn, Transformed) else Transformed(fn, mode="jit")

    def planned(*args, **kwargs) -> Plan:
        return t.plan_for(*args, **kwargs)
    return planned


def explain(fn: Callable):
    """Return a function that compiles `fn` (a tracejit-transformed function, or a plain one,
    then jitted) for the given arguments and returns a report: the joint IR after clean-up,
    the fusion plan, the driver and every kernel's generated source.

    Example:
        >>> print(tj.explain(tj.jit_grad(loss))(w, x, y))
    """
    t = fn if isinstance(fn, Transformed) else Transformed(fn, mode="jit")

    def report(*args, **kwargs) -> str:
        entry = t.entry_for(*args, **kwargs)
        parts = [f"=== {t.name}: joint IR ===", str(entry.graph)]
        if hasattr(entry.exe, "explain"):
            parts += ["=== fusion plan and generated code ===", entry.exe.explain()]
        return "\n".join(parts)
    return report
