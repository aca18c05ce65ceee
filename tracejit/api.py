"""Public transformations: jit, value_and_grad / jit_grad, grad, make_ir, make_plan,
explain, stop_gradient, wait_compiled. Each returns (or inspects) a `dispatch.Transformed`,
which holds the compile cache and runs the pipeline; see dispatch.py. The composable
transformations jvp, vjp, vmap, jacfwd, jacrev and hessian (JAX's names and semantics) are
at the end; their machinery is in transforms.py.
"""
from __future__ import annotations

import sys
from collections.abc import Callable

from . import passes, pytree, transforms
from .dispatch import Transformed
from .errors import ArgumentError, GradientError, TracejitError, trim_traceback, user_error
from .fusion import Plan
from .ir import Graph
from .tracing import (
    stop_gradient,  # noqa: F401  (public: tj.stop_gradient)
    trace_stack,
)


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


# ----- composable transformations (JAX's names, signatures and semantics) -----
def _fname(fun: Callable) -> str:
    return getattr(fun, "__name__", type(fun).__name__)


def _check_callable(fun, api: str) -> None:
    if not callable(fun):
        raise TypeError(f"tracejit.{api}: expected a function, got {type(fun).__name__}. "
                        f"Fix: pass the function itself, e.g. tracejit.{api}(f).")


def jvp(fun: Callable, primals, tangents, has_aux: bool = False):
    """Forward mode: the value of `fun` at `primals` and its directional derivative along
    `tangents` (a Jacobian-vector product), as jax.jvp.

    Args:
        fun: a function of arrays (and pytrees of them).
        primals: a tuple (or list) of the positional arguments.
        tangents: a tuple (or list) with one tangent per primal, in the same structure, of
            the same shapes and (for float primals) dtypes. Integer primals take any tangent
            of their shape; it is ignored.
        has_aux: `fun` returns `(output, aux)`; aux is returned as is, not differentiated.

    Returns:
        `(primal_out, tangent_out)`, or `(primal_out, tangent_out, aux)`. Values `fun`
        closes over and `stop_gradient` outputs carry zero tangents.

    Called on arrays it runs compiled (cached per `fun`); inside jit, grad, vmap or another
    jvp it records into the enclosing graph, so `tj.jvp(tj.grad(f), (x,), (v,))[1]` (a
    Hessian-vector product) compiles to the same fused loops as `f`'s gradient.

    Example:
        >>> tj.jvp(np.sin, (np.zeros(2),), (np.ones(2),))
        (array([0., 0.]), array([1., 1.]))
    """
    _check_callable(fun, "jvp")
    name = f"tracejit.jvp({_fname(fun)})"
    if not isinstance(primals, (tuple, list)) or not isinstance(tangents, (tuple, list)):
        raise trim_traceback(user_error(
            ArgumentError, f"{name}: primals and tangents must be tuples or lists, got "
            f"{type(primals).__name__} and {type(tangents).__name__}.",
            "pass the arguments as tuples: tj.jvp(f, (x,), (v,))."))
    if len(primals) != len(tangents):
        raise trim_traceback(user_error(
            ArgumentError, f"{name}: {len(primals)} primal(s) but {len(tangents)} "
            "tangent(s).", "give one tangent per positional argument."))
    if trace_stack():
        try:
            return transforms.jvp_call(fun, primals, tangents, has_aux, name)
        except TracejitError as e:
            raise trim_traceback(e)
    run = transforms.jitted(fun, ("jvp", has_aux), lambda: lambda p, t: transforms.jvp_call(
        fun, p, t, has_aux, name), name)
    return run(tuple(primals), tuple(tangents))


def vjp(fun: Callable, *primals, has_aux: bool = False):
    """Reverse mode for any output: the value of `fun` at `primals` and a function that
    pulls a cotangent of the output back to the inputs, as jax.vjp.

    Args:
        fun: a function of arrays (and pytrees of them); its output may be any pytree of
            arrays of any shape.
        *primals: the positional arguments.
        has_aux: `fun` returns `(output, aux)`; aux is returned as is, not differentiated.

    Returns:
        `(out, vjp_fn)`, or `(out, vjp_fn, aux)`. `vjp_fn(cotangent)` takes a cotangent of
        `out`'s structure, shapes and dtypes and returns a tuple with one cotangent per
        primal (zeros for integer primals and for inputs the output does not depend on).

    Called on arrays, `out` and each `vjp_fn` call run compiled (vjp_fn recomputes the
    forward values it needs inside its fused loops rather than storing them).

    Example:
        >>> out, vjp_fn = tj.vjp(lambda x: x * x, np.arange(3.0))
        >>> vjp_fn(np.ones(3))
        (array([0., 2., 4.]),)
    """
    _check_callable(fun, "vjp")
    name = f"tracejit.vjp({_fname(fun)})"
    if trace_stack():
        try:
            return transforms.vjp_call(fun, primals, has_aux, name)
        except TracejitError as e:
            raise trim_traceback(e)
    out = transforms.jitted(fun, ("fwd",), lambda: lambda *p: fun(*p), name)(*primals)
    if has_aux and not (isinstance(out, (tuple, list)) and len(out) == 2):
        raise trim_traceback(user_error(
            GradientError, f"{name}: has_aux=True needs the function to return a pair "
            "(output, aux).", "return (output, aux)."))
    saved = pytree.tree_map(lambda x: x.copy() if hasattr(x, "copy") else x, primals)
    backward = transforms.jitted(fun, ("vjp", has_aux), lambda: lambda p, ct: (
        transforms.vjp_call(fun, p, has_aux, name)[1](ct)), name)

    def vjp_fn(cotangent):
        return backward(saved, cotangent)
    return (out[0], vjp_fn, out[1]) if has_aux else (out, vjp_fn)


def vmap(fun: Callable, in_axes=0, out_axes=0):
    """Vectorize `fun` over a batch axis of its arguments, as jax.vmap.

    Args:
        fun: a function written for one example.
        in_axes: per positional argument, the axis of the batch (an int, negative allowed)
            or None (the argument is the same for every example): an int or None for all
            arguments, or a tuple with one entry per positional argument, each an int, None
            or a tuple/list/dict prefix of that argument's pytree. Keyword arguments are
            mapped along axis 0.
        out_axes: where the batch axis goes in each output: an int, or None for an output
            that is the same for every example; or a pytree prefix of the output.

    Returns:
        The batched function. Called on arrays it runs compiled, as one graph: elementwise
        work and reductions over an example stay in fused loop nests, so
        `tj.vmap(tj.grad(loss), in_axes=(None, 0, 0))` (per-example gradients) of a
        map-reduce loss is one pass over the data. Inside jit, grad, jvp or another vmap it
        records into the enclosing graph. Python ints, bools and strings passed positionally
        stay Python values (give them in_axes None).

    Example:
        >>> tj.vmap(lambda x, w: np.sum(x * w), in_axes=(0, None))(np.ones((4, 3)), np.ones(3))
        array([3., 3., 3., 3.])
    """
    _check_callable(fun, "vmap")
    name = f"vmap({_fname(fun)})"
    return transforms.Staged(fun, name, lambda *a, **k: transforms.vmap_call(
        fun, in_axes, out_axes, a, k, name))


def jacfwd(fun: Callable, argnums=0, has_aux: bool = False):
    """The Jacobian of `fun` by forward mode (one JVP per input element, batched), as
    jax.jacfwd: efficient for few inputs and many outputs.

    Args:
        fun: a function of arrays; the differentiated arguments must be float.
        argnums: int or tuple of ints: which positional arguments to differentiate.
        has_aux: `fun` returns `(output, aux)`; the result is then `(jacobian, aux)`.

    Returns:
        A function returning the Jacobian: the output's pytree, each leaf replaced by the
        argument's pytree (a tuple over argnums for a tuple) of arrays of shape
        `output.shape + input.shape`.

    Example:
        >>> tj.jacfwd(lambda x: x ** 2)(np.arange(3.0))
        array([[0., 0., 0.],
               [0., 2., 0.],
               [0., 0., 4.]])
    """
    _check_callable(fun, "jacfwd")
    name = f"jacfwd({_fname(fun)})"
    return transforms.Staged(fun, name, lambda *a, **k: transforms.jacfwd_call(
        fun, argnums, has_aux, a, k, name))


def jacrev(fun: Callable, argnums=0, has_aux: bool = False):
    """The Jacobian of `fun` by reverse mode (one VJP per output element, batched), as
    jax.jacrev: efficient for many inputs and few outputs. Same arguments and result
    structure as `jacfwd`; the outputs must be float.

    Example:
        >>> tj.jacrev(lambda x: np.array([x[0] * x[1], np.sin(x[0])]))(np.array([0.0, 2.0]))
        array([[2., 0.],
               [1., 0.]])
    """
    _check_callable(fun, "jacrev")
    name = f"jacrev({_fname(fun)})"
    return transforms.Staged(fun, name, lambda *a, **k: transforms.jacrev_call(
        fun, argnums, has_aux, a, k, name))


def hessian(fun: Callable, argnums=0, has_aux: bool = False):
    """The Hessian of the scalar function `fun`: `jacfwd(jacrev(fun))`, as jax.hessian.
    For a product with a vector only, `tj.jvp(tj.grad(fun), (x,), (v,))[1]` is one pass.

    Returns:
        A function returning an array of shape `x.shape + x.shape` (pytrees as in jacfwd:
        nested twice).

    Example:
        >>> tj.hessian(lambda x: np.sum(x ** 3))(np.array([1.0, 2.0]))
        array([[ 6.,  0.],
               [ 0., 12.]])
    """
    _check_callable(fun, "hessian")
    inner = jacrev(fun, argnums=argnums, has_aux=has_aux)
    name = f"hessian({_fname(fun)})"
    return transforms.Staged(fun, name, lambda *a, **k: transforms.jacfwd_call(
        inner, argnums, has_aux, a, k, name))
