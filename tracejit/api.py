"""Public transformations: jit, value_and_grad / jit_grad, grad, make_ir, stop_gradient.

A transformed function keeps a cache keyed by (argument structure, dtypes, shapes, static
arguments). A miss traces, differentiates, simplifies and compiles; a hit goes straight to
the compiled executable. Called with tracers (inside another transformation), it inlines its
graph into the enclosing trace instead, which is how grad(grad(f)) works.
"""
from __future__ import annotations

import functools
import threading
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from . import config, passes, pytree
from .autodiff import vjp_graph
from .backends import device_shape_dtype, get_backend, is_device_array, to_host
from .errors import (
    ArgnumsError,
    ArgumentError,
    DeviceError,
    GradientError,
    TracejitError,
    trim_traceback,
    user_error,
)
from .ir import Aval, Graph, Literal, Var
from .primitives import is_float
from .primitives.elementwise import stop_gradient_p
from .tracing import _TRACE_STACK, Tracer, trace

_SCALARS = (bool, int, float, np.generic)
_FAST_SCALARS = {float: float, int: int, bool: bool}


def _fast_key(args: tuple) -> tuple:
    """The fast-path cache key of positional arrays and Python scalars: per argument its
    (dtype, shape) or scalar type. KeyError for anything else (the general path)."""
    return tuple([(a.dtype, a.shape) if type(a) is np.ndarray else _FAST_SCALARS[type(a)]
                  for a in args])


def stop_gradient(x: Any) -> Any:
    """Identity in the forward pass; a constant edge for autodiff (no gradient flows through).

    Like jax.lax.stop_gradient and tf.stop_gradient. Works on pytrees of arrays.

    Example:
        >>> tj.grad(lambda x: np.sum(x * tj.stop_gradient(x)))(np.ones(2))  # d/dx x*c = c
        array([1., 1.])
    """
    return pytree.tree_map(lambda v: stop_gradient_p.bind(v) if isinstance(v, Tracer) else v, x)


# ----- argument handling -----
def _leaf_aval(x: Any, where: str) -> Aval:
    if isinstance(x, np.ndarray):
        return Aval(x.shape, x.dtype)
    if is_device_array(x):
        return Aval(*device_shape_dtype(x))
    if isinstance(x, _SCALARS) or hasattr(x, "__array__"):
        arr = np.asarray(x)
        if arr.dtype.kind in "biuf":
            return Aval(arr.shape, arr.dtype)
    raise user_error(ArgumentError, f"{where}: an argument leaf has type "
                     f"{type(x).__name__}; tracejit functions take arrays, scalars and nested "
                     "tuples/lists/dicts of them.",
                     "pass it as a NumPy array, or mark the argument static with "
                     "static_argnums=... .")


def _normalize_argnums(argnums, name: str) -> tuple[int, ...]:
    nums = (argnums,) if isinstance(argnums, int) else argnums
    if not isinstance(nums, tuple) or not all(isinstance(i, int) and not isinstance(i, bool)
                                              for i in nums) or not nums:
        raise user_error(ArgnumsError, f"{name}: argnums must be an int or a non-empty tuple "
                         f"of ints, got {argnums!r}.", "e.g. argnums=0 or argnums=(0, 2).")
    return nums


class _Entry:
    """One compiled specialization: run it on flat leaves, rebuild the user's outputs."""

    __slots__ = ("exe", "finish", "graph", "run")

    def __init__(self, run: Callable, finish: Callable, graph: Graph, exe: Any) -> None:
        self.run, self.finish, self.graph, self.exe = run, finish, graph, exe


class Transformed:
    """A jitted (and possibly differentiated) function with its compile cache."""

    def __init__(self, fn: Callable, *, mode: str, argnums=0, has_aux: bool = False,
                 unconnected: str = "zero", static_argnums=(), backend: str | None = None,
                 device: str = "cpu", reuse_buffers: bool = False) -> None:
        functools.update_wrapper(self, fn)
        self.fn, self.mode, self.has_aux = fn, mode, has_aux
        self.name = f"tracejit.{mode}({getattr(fn, '__name__', 'fn')})"
        if mode != "jit":
            self.argnums = _normalize_argnums(argnums, self.name)
            self.bare_gradient = isinstance(argnums, int)  # int -> bare; tuple -> tuple
        if unconnected not in ("zero", "none"):
            raise ValueError(f"{self.name}: unconnected must be 'zero' or 'none', got "
                             f"{unconnected!r}.")
        self.unconnected = unconnected
        self.static_argnums = (static_argnums,) if isinstance(static_argnums, int) \
            else tuple(static_argnums)
        self.backend, self.device = _backend_for_device(backend, device, self.name)
        self.reuse_buffers = reuse_buffers
        self._cache: dict = {}
        # positional-arrays-only calls: key = per argument (dtype, shape) or scalar type
        self._fast: dict | None = None if self.static_argnums else {}
        self._lock = threading.Lock()

    def __repr__(self) -> str:
        return f"<{self.name}>"

    def __get__(self, obj, objtype=None):  # behave like a function when used as a method
        return self if obj is None else functools.partial(self, obj)

    # --- the call path ---
    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        # fast path: positional arrays and scalars only, already compiled (W6: a 100-element
        # loss's whole call costs a few microseconds, so every dict and tuple here counts)
        if not kwargs and self._fast is not None and not _TRACE_STACK.traces:
            try:
                entry = self._fast.get(_fast_key(args))
            except KeyError:  # a container or another array type: the general path
                entry = None
            if entry is not None:
                return entry.finish(entry.run(*args))
        try:
            if _TRACE_STACK.traces:  # inside another transformation (maybe closing over tracers)
                return self._inline(args, kwargs)
            key, leaves, treedef = self._key(args, kwargs)
            entry = self._cache.get(key)
            if entry is None:
                entry = self._compile(key, args, kwargs, leaves, treedef)
            if self._fast is not None and not kwargs and all(
                    type(a) is np.ndarray or type(a) in _FAST_SCALARS for a in args):
                self._fast[_fast_key(args)] = entry
            return entry.finish(entry.run(*leaves))
        except TracejitError as e:
            raise trim_traceback(e)

    def _key(self, args: tuple, kwargs: dict) -> tuple:
        """(cache key, flat leaves, treedef): the key is structure, static args, dtypes, shapes."""
        statics = tuple(args[i] for i in self.static_argnums) if self.static_argnums else ()
        leaves, treedef = pytree.flatten((self._dynamic(args) if statics else args, kwargs))
        key = (treedef, statics, tuple(
            (leaf.dtype, leaf.shape) if isinstance(leaf, np.ndarray) else
            _other_leaf_key(leaf) for leaf in leaves))
        return key, leaves, treedef

    def entry_for(self, *args: Any, **kwargs: Any) -> _Entry:
        """The compiled specialization for these arguments (compiling it if needed)."""
        self(*args, **kwargs)
        return self._cache[self._key(args, kwargs)[0]]

    def _dynamic(self, args: tuple) -> tuple:
        return tuple(None if i in self.static_argnums else a for i, a in enumerate(args))

    def _compile(self, key, args, kwargs, leaves, treedef) -> _Entry:
        with self._lock:
            entry = self._cache.get(key)
            if entry is None:
                entry = self._build(args, kwargs, leaves, treedef)
                self._cache[key] = entry
        return entry

    def _flat_fn(self, args, treedef):
        """The user's function as a function of flat leaves (static args put back)."""
        def flat(*leaves):
            dyn_args, kwargs = pytree.unflatten(treedef, list(leaves))
            full = tuple(args[i] if i in self.static_argnums else a
                         for i, a in enumerate(dyn_args))
            return self.fn(*full, **kwargs)
        return flat

    def _trace(self, args, leaves, treedef) -> tuple[Graph, Any, list[int]]:
        """Forward graph of the flat function, its output treedef, and the wrt leaf indices
        (the leaves' avals are left in self-free form on the graph as `graph.in_avals`)."""
        avals = [_leaf_aval(x, self.name) if not isinstance(x, Tracer) else x.aval
                 for x in leaves]
        graph, out_tree = trace(self._flat_fn(args, treedef), avals)
        graph.in_avals = avals
        if self.mode == "jit":
            return graph, out_tree, []
        wrt = self._wrt_leaves(args, treedef, avals)
        self._check_loss(graph, out_tree)
        return graph, out_tree, wrt

    def _wrt_leaves(self, args, treedef, avals) -> list[int]:
        n = len(args)
        for i in self.argnums:
            if not -n <= i < n:
                raise user_error(ArgnumsError, f"{self.name}: argnums={i} is out of range for a "
                                 f"call with {n} positional argument(s).",
                                 f"use argnums in [0, {n}), or pass the argument positionally.")
            if i % n in self.static_argnums:
                raise user_error(ArgnumsError, f"{self.name}: argument {i} is both in argnums "
                                 "and in static_argnums.", "differentiate dynamic arguments.")
        arg_trees = treedef[1][0][1]
        offsets = np.cumsum([0] + [pytree.num_leaves(t) for t in arg_trees])
        wrt = []
        for i in self.argnums:
            i %= n
            for j in range(offsets[i], offsets[i + 1]):
                if not is_float(avals[j].dtype):
                    raise user_error(ArgnumsError, f"{self.name}: argument {i} (argnums) has "
                                     f"dtype {avals[j].dtype}; only floating-point inputs can "
                                     "be differentiated.",
                                     "pass a float array, e.g. np.asarray(x, dtype=np.float32),"
                                     " or leave this argument out of argnums.")
                wrt.append(j)
        return wrt

    def _check_loss(self, graph: Graph, out_tree) -> None:
        if self.has_aux and not (out_tree[0] in ("tuple", "list") and len(out_tree[1]) == 2):
            raise user_error(GradientError, f"{self.name}: has_aux=True needs the function to "
                             "return a pair (loss, aux).", "return (loss, aux).")
        if (out_tree[1][0] if self.has_aux else out_tree) != pytree.LEAF:
            raise user_error(GradientError, f"{self.name}: the function must return a scalar "
                             "loss" + (" as the first element of (loss, aux)" if self.has_aux
                                       else "") + ", not a container.",
                             "return one scalar, e.g. np.sum(...) of your outputs.")
        loss = graph.outputs[0].aval
        if loss.shape != () or not is_float(loss.dtype):
            # point at the line that computed the loss, not at the call
            where = next((e.where for e in graph.eqns if e.outputs[0] is graph.outputs[0]),
                         None)
            raise user_error(GradientError, f"{self.name}: gradients need a scalar float loss; "
                             f"the function returned {loss.dtype}{list(loss.shape)}.",
                             "reduce the output to a scalar (np.sum(out) or np.mean(out)), "
                             "or use tracejit.jit for non-scalar outputs.", where)

    def _build(self, args, kwargs, leaves, treedef) -> _Entry:
        graph, out_tree, wrt = self._trace(args, leaves, treedef)
        n_out, avals = len(graph.outputs), graph.in_avals
        connected = []
        if self.mode != "jit":
            graph, connected = vjp_graph(graph, wrt)
        graph = passes.simplify(graph)
        if config.DEBUG:
            print(f"--- {self.name}: joint graph ---\n{graph}")
        backend, device = self._placement(leaves)
        exe = get_backend(backend).compile(
            graph, name=getattr(self.fn, "__name__", "fn"), reuse_buffers=self.reuse_buffers,
            device=device)
        run = _protect_aliases(exe, graph)
        if device == "cpu" and any(is_device_array(x) for x in leaves):
            run = _host_inputs(run)
        on_device = device == "cuda" and any(is_device_array(x) for x in leaves)
        finish = self._finisher(avals, treedef, out_tree, n_out, wrt, connected,
                                zeros=exe.device_zeros if on_device else _host_zeros)
        return _Entry(run, finish, graph, exe)

    def _finisher(self, avals, treedef, out_tree, n_out, wrt, connected, zeros=None):
        """A function from the executable's flat outputs to the user's result structure;
        `zeros(aval)` makes an unconnected gradient (on the device when results are)."""
        zeros = zeros or _host_zeros
        if self.mode == "jit":
            return lambda outs: pytree.unflatten(out_tree, [_scalarize(o) for o in outs])
        arg_trees = treedef[1][0][1]
        grad_avals = [avals[j] for j in wrt]
        grad_slots = []  # per wrt leaf: index into outs, or None when unconnected
        k = n_out
        for c in connected:
            grad_slots.append(k if c else None)
            k += c
        zero = self.unconnected == "zero"
        has_aux, mode, bare = self.has_aux, self.mode, self.bare_gradient
        # per argnum: its structure and its slice of the flat gradients
        parts, pos = [], 0
        for i in self.argnums:
            tree = arg_trees[i % len(arg_trees)]
            m = pytree.num_leaves(tree)
            parts.append((tree, pos, pos + m))
            pos += m

        if not has_aux and out_tree == pytree.LEAF and all(s is not None for s in grad_slots) \
                and all(tree == pytree.LEAF for tree, _, _ in parts):
            return _array_finisher(mode, bare, grad_slots)

        def finish(outs):
            flat = [_scalarize(outs[s]) if s is not None else
                    (zeros(a) if zero else None)
                    for s, a in zip(grad_slots, grad_avals)]
            grads = [pytree.unflatten(tree, flat[a:b]) for tree, a, b in parts]
            g = grads[0] if bare else tuple(grads)
            value = pytree.unflatten(out_tree, [_scalarize(o) for o in outs[:n_out]])
            if mode == "grad":
                return (g, value[1]) if has_aux else g
            return ((value[0], value[1]) if has_aux else value), g
        return finish

    def _placement(self, leaves) -> tuple[str, str]:
        """(backend, device) for a call with these leaves: device='auto' runs on the GPU
        when an input already lives there and CUDA is usable. The choice depends only on
        the leaves' types, which are part of the cache key."""
        if self.device != "auto":
            return self.backend, self.device
        if any(is_device_array(x) for x in leaves) and get_backend("cuda").available():
            return "cuda", "cuda"
        return self.backend, "cpu"

    # --- inside another transformation ---
    def _inline(self, args, kwargs):
        if self.mode == "jit":
            return self.fn(*args, **kwargs)
        leaves, treedef = pytree.flatten((self._dynamic(args), kwargs))
        graph, out_tree, wrt = self._trace(args, leaves, treedef)
        joint, connected = vjp_graph(graph, wrt)
        outs = inline_graph(joint, list(leaves) + list(graph.captured))
        finish = self._finisher(graph.in_avals, treedef, out_tree, len(graph.outputs), wrt,
                                connected)
        return finish(outs)


def _array_finisher(mode: str, bare: bool, slots: list[int]) -> Callable:
    """The finisher when the loss and every differentiated argument are single arrays (the
    common case), without the pytree work: part of the few-microsecond call path."""
    sc = _scalarize
    if bare:
        s0 = slots[0]
        if mode == "grad":
            return lambda outs: sc(outs[s0])
        return lambda outs: (sc(outs[0]), sc(outs[s0]))
    if mode == "grad":
        return lambda outs: tuple([sc(outs[s]) for s in slots])
    return lambda outs: (sc(outs[0]), tuple([sc(outs[s]) for s in slots]))


def _other_leaf_key(leaf) -> tuple:
    """Cache-key entry of a leaf that is not a NumPy array (scalar or device array)."""
    if is_device_array(leaf):
        return (type(leaf),) + device_shape_dtype(leaf)
    return (type(leaf), np.shape(leaf))


_DEVICES = ("cpu", "cuda", "auto")


def _backend_for_device(backend: str | None, device: str, name: str) -> tuple[str, str]:
    """(backend, device) from the user's options. device='cuda' means the CUDA backend;
    backend='cuda' alone implies device='cuda'; 'auto' picks per call (see _placement)
    between the CUDA backend and the CPU one. A CPU-only backend with device='cuda' or
    'auto' is a contradiction, reported rather than silently ignored."""
    if device not in _DEVICES:
        raise user_error(DeviceError, f"{name}: device={device!r} is not a device.",
                         "use device='cpu' (default), 'cuda' or 'auto'.")
    explicit = backend is not None
    backend = backend or config.DEFAULT_BACKEND
    if backend == "cuda":
        if device == "auto":
            raise user_error(DeviceError, f"{name}: backend='cuda' with device='auto'.",
                             "use device='cuda' (or 'auto' without backend=).")
        return "cuda", "cuda"
    if device == "cpu":
        return backend, "cpu"
    if explicit:
        raise user_error(DeviceError, f"{name}: backend={backend!r} runs on the CPU, but "
                         f"device={device!r} was asked for.",
                         f"drop backend= to let device={device!r} choose the backend, or "
                         "use device='cpu'.")
    return ("cuda" if device == "cuda" else backend), device


def _host_inputs(run: Callable) -> Callable:
    """device='cpu' given GPU arrays: copy them to the host first (as JAX transfers)."""
    def run_on_host(*leaves):
        return run(*[to_host(x) if is_device_array(x) else x for x in leaves])
    return run_on_host


def _host_zeros(aval: Aval):
    return np.zeros(aval.shape, aval.dtype)[()]


def _scalarize(x):
    return x[()] if isinstance(x, np.ndarray) and x.ndim == 0 else x


def _protect_aliases(exe, graph: Graph) -> Callable:
    """Outputs that are inputs, constants or repeated get copied: results never share memory
    with the caller's arrays, each other, or tracejit's constants."""
    if getattr(exe, "fresh_outputs", False):  # the backend copies aliases itself (on device)
        return exe
    seen, copy = set(), []
    inputs = {v.id for v in graph.inputs}
    for i, o in enumerate(graph.outputs):
        key = o.id if isinstance(o, Var) else ("lit", id(o))
        if isinstance(o, Literal) or o.id in inputs or key in seen:
            copy.append(i)
        seen.add(key)
    if not copy:  # compiled executables expose their driver: one call frame less
        return getattr(exe, "run", exe)

    def run(*leaves):
        outs = list(exe(*leaves))
        for i in copy:
            outs[i] = np.array(outs[i], copy=True)
        return outs
    return run


def inline_graph(graph: Graph, args: Sequence[Any]) -> list[Any]:
    """Replay `graph` on tracers of the current trace (nested transformations)."""
    env = {v.id: a for v, a in zip(graph.inputs, args)}
    trace = _TRACE_STACK.traces[-1]

    def read(atom):
        return Tracer(trace, atom) if isinstance(atom, Literal) else env[atom.id]

    for eqn in graph.eqns:
        trace.where_override = eqn.where
        out = eqn.prim.bind(*map(read, eqn.inputs), **eqn.params)
        for var, val in zip(eqn.outputs, out if eqn.prim.multiple_results else [out]):
            env[var.id] = val
    trace.where_override = None
    return [read(o) for o in graph.outputs]


# ----- public constructors -----
def _decorator(mode: str, fn: Callable | None, options: dict):
    if fn is None:
        return lambda f: Transformed(f, mode=mode, **options)
    if not callable(fn):
        raise TypeError(f"tracejit.{mode}: expected a function, got {type(fn).__name__}. "
                        f"Fix: use @tracejit.{mode} or @tracejit.{mode}(argnums=...).")
    return Transformed(fn, mode=mode, **options)


def jit(fn: Callable | None = None, *, static_argnums=(), backend: str | None = None,
        device: str = "cpu", reuse_buffers: bool = False):
    """Compile `fn` (forward only) into fused kernels.

    Args:
        fn: a function of arrays, scalars and pytrees of them, written with NumPy calls.
        static_argnums: positions of arguments that are Python values (part of the cache key).
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
    """
    return _decorator("jit", fn, dict(static_argnums=static_argnums, backend=backend,
                                      device=device, reuse_buffers=reuse_buffers))


def value_and_grad(fn: Callable | None = None, *, argnums=0, has_aux: bool = False,
                   unconnected: str = "zero", static_argnums=(), backend: str | None = None,
                   device: str = "cpu", reuse_buffers: bool = False):
    """Compile a function returning `(value, gradient)` of the scalar loss `fn`.

    Args:
        fn: returns a float scalar (or `(scalar, aux)` with has_aux=True).
        argnums: int -> the gradient is a bare array (pytree); tuple -> a tuple of them.
        has_aux: `fn` returns `(loss, aux)`; the result is then `((loss, aux), grads)`.
        unconnected: "zero" (default): inputs no gradient reaches get zeros; "none": None
            (like TensorFlow's UnconnectedGradients.NONE).
        static_argnums, backend, device, reuse_buffers: as in `jit`.

    Returns:
        A function returning `(value, grads)`, or `((value, aux), grads)`.

    Example:
        >>> vg = tj.value_and_grad(lambda w, x: np.sum((w * x) ** 2))
        >>> vg(2.0, np.ones(3))
        (12.0, 24.0)
    """
    return _decorator("value_and_grad", fn, dict(
        argnums=argnums, has_aux=has_aux, unconnected=unconnected,
        static_argnums=static_argnums, backend=backend, device=device,
        reuse_buffers=reuse_buffers))


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
         unconnected: str = "zero", static_argnums=(), backend: str | None = None,
         device: str = "cpu", reuse_buffers: bool = False):
    """Compile the gradient of the scalar function `fn` (with has_aux: `(grads, aux)`).

    Same options as `value_and_grad`. Nested use (`grad(grad(f))`) differentiates the
    gradient's own graph.

    Example:
        >>> tj.grad(lambda x: np.sum(np.sin(x)))(np.zeros(2))
        array([1., 1.])
    """
    return _decorator("grad", fn, dict(
        argnums=argnums, has_aux=has_aux, unconnected=unconnected,
        static_argnums=static_argnums, backend=backend, device=device,
        reuse_buffers=reuse_buffers))


def wait_compiled() -> None:
    """Wait until kernels compiling in the background are ready.

    A kernel's first call on a large input runs its serial loop, whose compile is faster,
    while the multi-threaded loop compiles in a background thread and takes over when ready
    (about a second later; calls keep running meanwhile). Call this before timing steady-state
    speed, as you would `block_until_ready` in JAX.
    """
    import sys
    backend = sys.modules.get("tracejit.backends.numba_cpu")
    if backend is not None:
        backend.wait_compiled()


def make_ir(fn: Callable, *, static_argnums=()):
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
    static = (static_argnums,) if isinstance(static_argnums, int) else tuple(static_argnums)
    t = Transformed(fn, mode="jit", static_argnums=static, backend="interpreter")

    def traced(*args, **kwargs) -> Graph:
        leaves, treedef = pytree.flatten((t._dynamic(args), kwargs))
        graph, _, _ = t._trace(args, leaves, treedef)
        return passes.dce(graph)
    return traced


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
