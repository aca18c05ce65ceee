"""Dispatch: a transformed function's compile cache and call path, and the pipeline a cache
miss runs, in one direction:

    trace (tracing.py) -> vjp_graph (autodiff.py) -> simplify (passes.py)
        -> plan (fusion.py, with the backend's range guard) -> backend.compile(plan)

A cache key is (argument structure, static arguments, dtypes, shapes); a hit goes straight to
the compiled executable. Called with tracers (inside another transformation), a transformed
function inlines its graph into the enclosing trace instead: that is how grad(grad(f)) works.
"""
from __future__ import annotations

import difflib
import functools
import inspect
import threading
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from . import captures, config, errors, fusion, passes, pytree, randomness
from .autodiff import vjp_graph
from .backends import BACKENDS, device_shape_dtype, get_backend, is_device_array, to_host
from .errors import (
    ArgnumsError,
    ArgumentError,
    DeviceError,
    GradientError,
    TracejitError,
    trim_traceback,
    user_error,
)
from .ir import Aval, Graph, Literal, Var, eval_graph
from .primitives import is_float
from .tracing import Tracer, trace, trace_stack

_SCALARS = (bool, int, float, np.generic)
# Python and NumPy scalars (np.float32(0.5)): keyed on their type, as the general path does
_FAST_SCALARS = {t: t for t in (float, int, bool, np.bool_, np.float16, np.float32, np.float64,
                                np.int8, np.int16, np.int32, np.int64, np.uint8, np.uint16,
                                np.uint32, np.uint64)}


def _fast_key(args: tuple) -> tuple:
    """The fast-path cache key of positional arrays and Python scalars: per argument its
    (dtype, shape) or scalar type. KeyError for anything else (the general path)."""
    return tuple([(a.dtype, a.shape) if type(a) is np.ndarray else _FAST_SCALARS[type(a)]
                  for a in args])


# ----- argument handling -----
def _argument_hint(args: tuple, kwargs: dict, static_nums, static_names
                   ) -> tuple[str, str] | None:
    """(what, fix) for an argument that is a list or tuple of Python numbers, or None: likely
    meant as an array, it reaches the function as a container of scalars (a pytree, as in
    JAX) or as None, and NumPy operators then fail on it."""
    named = [(f"argument {i}", a) for i, a in enumerate(args) if i not in static_nums] + \
        [(f"argument {k!r}", a) for k, a in kwargs.items() if k not in static_names]
    for name, a in named:
        if a is None:
            return (f"{name} is None", "pass an array, or mark the argument static "
                    "(static_argnums / static_argnames) if None is a setting")
        if isinstance(a, (list, tuple)) and a and all(
                isinstance(v, (int, float, complex, np.number)) and not isinstance(v, bool)
                for v in a):
            kind = type(a).__name__
            return (f"{name} is a {kind} of {len(a)} numbers, which tracejit (like "
                    f"JAX) passes on as a {kind} of scalars (a pytree), not as an array",
                    "pass np.asarray([...]) for an array (or index the list's elements "
                    "inside the function)")
    return None


def _innermost_user_line(e: BaseException) -> tuple[str, int, str] | None:
    """The user's line an exception was raised at (its innermost frame outside tracejit)."""
    tb, where = e.__traceback__, None
    while tb is not None:
        code = tb.tb_frame.f_code
        if not errors.is_internal(code.co_filename):
            where = (code.co_filename, tb.tb_lineno, code.co_name)
        tb = tb.tb_next
    return where


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


def _static_args(fn: Callable, argnums, argnames, name: str) -> tuple[tuple, frozenset]:
    """(static positions, static keyword names), each completed from the other through the
    signature (as JAX): a static name is also static when passed positionally, and a static
    position when passed by keyword."""
    nums = (argnums,) if isinstance(argnums, int) else argnums
    names = (argnames,) if isinstance(argnames, str) else argnames
    if not isinstance(nums, (tuple, list)) or not isinstance(names, (tuple, list)) or \
            not all(isinstance(i, int) and not isinstance(i, bool) for i in nums) or \
            not all(isinstance(n, str) for n in names):
        raise user_error(ArgnumsError, f"{name}: static_argnums takes ints and static_argnames "
                         f"takes strings, got {argnums!r} and {argnames!r}.",
                         "e.g. static_argnums=1 or static_argnames=('n', 'mode').")
    nums, names = tuple(nums), tuple(names)
    try:
        params = list(inspect.signature(fn).parameters.values())
    except (TypeError, ValueError):  # no signature (a builtin): take them as given
        return nums, frozenset(names)
    positional = [p.name for p in params if p.kind in (p.POSITIONAL_ONLY,
                                                        p.POSITIONAL_OR_KEYWORD)]
    by_name = {p.name: p for p in params}
    for n in names:
        if n not in by_name and not any(p.kind == p.VAR_KEYWORD for p in params):
            raise user_error(ArgnumsError, f"{name}: static_argnames={n!r} names no parameter "
                             f"of the function (it has {', '.join(by_name) or 'none'}).",
                             "name one of its parameters.")
        if n in positional and by_name[n].kind == by_name[n].POSITIONAL_OR_KEYWORD:
            nums += (positional.index(n),)
    names += tuple(positional[i] for i in nums if 0 <= i < len(positional)
                   and by_name[positional[i]].kind == by_name[positional[i]].POSITIONAL_OR_KEYWORD)
    return tuple(sorted(set(nums))), frozenset(names)


def _hashable(v: Any) -> bool:
    try:
        hash(v)
    except TypeError:
        return False
    return True


class _Entry:
    """One compiled specialization: run it on flat leaves (and the captured arrays its
    `guard` reads, if any), rebuild the user's outputs."""

    __slots__ = ("exe", "finish", "graph", "guard", "run")

    def __init__(self, run: Callable, finish: Callable, graph: Graph, exe: Any,
                 guard: captures.Guard | None = None) -> None:
        self.run, self.finish, self.graph, self.exe = run, finish, graph, exe
        self.guard = guard


class Transformed:
    """A jitted (and possibly differentiated) function with its compile cache."""

    def __init__(self, fn: Callable, *, mode: str, argnums=0, has_aux: bool = False,
                 unconnected: str = "zero", static_argnums=(), static_argnames=(),
                 backend: str | None = None, device: str = "cpu",
                 reuse_buffers: bool = False) -> None:
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
        self.static_argnums, self.static_argnames = _static_args(
            fn, static_argnums, static_argnames, self.name)
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
        stack = trace_stack()
        if not kwargs and self._fast is not None and not stack:
            try:
                entry = self._fast.get(_fast_key(args))
            except KeyError:  # a container or another array type: the general path
                entry = None
            if entry is not None:
                if entry.guard is None:
                    return entry.finish(entry.run(*args))
                captured = entry.guard.inputs()
                if captured is not None:
                    return entry.finish(entry.run(*args, *captured))
        try:
            if stack:  # inside another transformation (maybe closing over its tracers)
                return self._inline(args, kwargs)
            key, leaves, treedef = self._key(args, kwargs)
            entry, captured = self._cache.get(key), []
            if entry is not None and entry.guard is not None:
                captured = entry.guard.inputs()
            first = entry is None or captured is None  # new, or a captured value changed
            if first:
                entry, captured = self._compile(key, args, kwargs, leaves, treedef, entry)
            if self._fast is not None and not kwargs and all(
                    type(a) is np.ndarray or type(a) in _FAST_SCALARS for a in args):
                self._fast[_fast_key(args)] = entry
            if first and hasattr(entry.exe, "first_call"):  # a backend's compiles wait for it
                with entry.exe.first_call():
                    return entry.finish(entry.run(*leaves, *captured))
            return entry.finish(entry.run(*leaves, *captured))
        except TracejitError as e:
            raise trim_traceback(e)

    def _key(self, args: tuple, kwargs: dict) -> tuple:
        """(cache key, flat leaves, treedef): the key is structure, static args, dtypes, shapes."""
        dyn_args, dyn_kwargs, statics = self._split(args, kwargs)
        leaves, treedef = pytree.flatten((dyn_args, dyn_kwargs))
        key = (treedef, statics, tuple(
            (leaf.dtype, leaf.shape) if isinstance(leaf, np.ndarray) else
            _other_leaf_key(leaf) for leaf in leaves))
        return key, leaves, treedef

    def entry_for(self, *args: Any, **kwargs: Any) -> _Entry:
        """The compiled specialization for these arguments (compiling it if needed)."""
        self(*args, **kwargs)
        return self._cache[self._key(args, kwargs)[0]]

    def _split(self, args: tuple, kwargs: dict) -> tuple[tuple, dict, tuple]:
        """(dynamic args, dynamic kwargs, static values): static positions become None, static
        keywords leave the kwargs; the static values are part of the cache key."""
        if not self.static_argnums and not self.static_argnames:
            return args, kwargs, ()
        nums, names = self.static_argnums, self.static_argnames
        dyn = tuple(None if i in nums else a for i, a in enumerate(args))
        statics = (tuple((i, args[i]) for i in nums if i < len(args)),
                   tuple(sorted((k, v) for k, v in kwargs.items() if k in names)))
        try:
            hash(statics)
        except TypeError:
            bad = next(f"{k if isinstance(k, int) else repr(k)} (a {type(v).__name__})"
                       for k, v in statics[0] + statics[1] if not _hashable(v))
            raise user_error(ArgumentError, f"{self.name}: static argument {bad} is not "
                             "hashable; static arguments are part of the compile-cache key.",
                             "pass a hashable value (a tuple instead of a list or array), or "
                             "make it a dynamic argument.") from None
        return dyn, {k: v for k, v in kwargs.items() if k not in names}, statics

    def _compile(self, key, args, kwargs, leaves, treedef, stale=None) -> tuple[_Entry, list]:
        """The entry for `key`, built unless another thread did (`stale`: the entry whose
        guard failed), and the captured arrays to call it with."""
        with self._lock:
            for _ in range(3):  # a captured value may change while we trace: once more
                entry = self._cache.get(key)
                if entry is None or entry is stale:
                    entry = self._build(args, kwargs, leaves, treedef)
                    self._cache[key] = entry
                captured = entry.guard.inputs() if entry.guard is not None else []
                if captured is not None:
                    return entry, captured
                stale = entry
        raise RuntimeError(f"{self.name}: a captured value keeps changing while tracing.")

    def _flat_fn(self, args, kwargs, treedef):
        """The user's function as a function of flat leaves (static args put back)."""
        static_kwargs = {k: v for k, v in kwargs.items() if k in self.static_argnames}

        def flat(*leaves):
            dyn_args, dyn_kwargs = pytree.unflatten(treedef, list(leaves))
            full = tuple(args[i] if i in self.static_argnums else a
                         for i, a in enumerate(dyn_args))
            return self.fn(*full, **dyn_kwargs, **static_kwargs)
        return flat

    def _trace(self, args, kwargs, leaves, treedef, found: captures.Scan | None = None
               ) -> tuple[Graph, Any, list[int]]:
        """Forward graph of the flat function, its output treedef, and the wrt leaf indices
        (the leaves' avals are left in self-free form on the graph as `graph.in_avals`)."""
        avals = [_leaf_aval(x, self.name) if not isinstance(x, Tracer) else x.aval
                 for x in leaves]
        found = found if found is not None else captures.scan(self.fn)
        try:
            graph, out_tree = trace(self._flat_fn(args, kwargs, treedef), avals, found.arrays,
                                    source=self.fn)
        except (TypeError, AttributeError) as e:
            if isinstance(e, TracejitError) or (hint := _argument_hint(
                    args, kwargs, self.static_argnums, self.static_argnames)) is None:
                raise
            raise user_error(ArgumentError, f"{self.name}: {hint[0]}; the function failed "
                             f"on it with {type(e).__name__}: {e}", hint[1],
                             _innermost_user_line(e)) from e
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
            if arg_trees[i] == ("none",):
                raise user_error(ArgnumsError, f"{self.name}: argument {i} (argnums) is None; "
                                 "there is nothing to differentiate.", "pass an array for it, "
                                 "or leave it out of argnums (None is fine elsewhere: an empty "
                                 "argument).")
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
        loss_tree = out_tree[1][0] if self.has_aux else out_tree
        if loss_tree == ("none",):
            raise user_error(GradientError, f"{self.name}: the function returned None" +
                             (" as its loss" if self.has_aux else "") + "; gradients need a "
                             "scalar float loss.", "return the loss (is a `return` missing?).")
        if loss_tree != pytree.LEAF:
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
                             "reduce the output to a scalar (np.sum(out) or np.mean(out)); for "
                             "the derivatives of a non-scalar output use tracejit.jacrev (the "
                             "Jacobian) or tracejit.vjp (products with a cotangent).", where)

    def _joint(self, args, kwargs, leaves, treedef, found: captures.Scan):
        """Trace, differentiate and simplify: (joint graph, output treedef, wrt leaves,
        connected flags, number of forward outputs, input avals, lifted-array sources)."""
        graph, out_tree, wrt = self._trace(args, kwargs, leaves, treedef, found)
        n_out, avals, lifted = len(graph.outputs), graph.in_avals, graph.lifted
        connected = []
        if self.mode != "jit":
            graph, connected = vjp_graph(graph, wrt)
        graph = passes.simplify(graph)
        if config.DEBUG:
            print(f"--- {self.name}: joint graph ---\n{graph}")
        return graph, out_tree, wrt, connected, n_out, avals, lifted

    def plan_for(self, *args: Any, **kwargs: Any) -> fusion.Plan:
        """The fusion plan a call with these arguments compiles (nothing is compiled)."""
        leaves, treedef = pytree.flatten(self._split(args, kwargs)[:2])
        graph = self._joint(args, kwargs, leaves, treedef, captures.scan(self.fn))[0]
        backend = get_backend(self._placement(leaves)[0])
        return lower(passes.float16_as_float32(graph)[0], backend)[0]

    def _build(self, args, kwargs, leaves, treedef) -> _Entry:
        found = captures.scan(self.fn)
        graph, out_tree, wrt, connected, n_out, avals, lifted = self._joint(
            args, kwargs, leaves, treedef, found)
        backend, device = self._placement(leaves)
        be = get_backend(backend)
        graph, half = passes.float16_as_float32(graph)
        if half and any(is_device_array(x) for x in leaves):
            raise user_error(ArgumentError, f"{self.name}: float16 with device arrays is not "
                             "supported.", "convert the float16 inputs to float32 "
                             "(x.astype(np.float32)) first.")
        plan, fallback = lower(graph, be)
        exe = be.compile(plan, fallback=fallback, name=getattr(self.fn, "__name__", "fn"),
                         reuse_buffers=self.reuse_buffers, device=device)
        run = _protect_aliases(exe, graph)
        if device == "cpu" and (backend == "interpreter" or any(
                step.eqn.prim.view is None for step in plan.steps)):
            run = _without_fp_warnings(run)
        if half:
            run = _float16_boundary(run, *half)
        if device == "cpu" and any(is_device_array(x) for x in leaves):
            run = _host_inputs(run)
        on_device = device == "cuda" and any(is_device_array(x) for x in leaves)
        finish = self._finisher(avals, treedef, out_tree, n_out, wrt, connected,
                                zeros=exe.device_zeros if on_device else _host_zeros)
        guard = captures.guard_for(found, lifted)
        return _Entry(run, finish, graph, exe, guard if guard else None)

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
            with randomness.watch(self.fn):
                return self.fn(*args, **kwargs)
        leaves, treedef = pytree.flatten(self._split(args, kwargs)[:2])
        graph, out_tree, wrt = self._trace(args, kwargs, leaves, treedef)
        joint, connected = vjp_graph(graph, wrt)
        outer = trace_stack()[-1]  # the enclosing trace lifts the arrays this one captured
        lifted = [outer.lift(source.read(), source) for source in graph.lifted]
        outs = inline_graph(joint, list(leaves) + list(graph.captured) + lifted)
        finish = self._finisher(graph.in_avals, treedef, out_tree, len(graph.outputs), wrt,
                                connected)
        return finish(outs)


def lower(graph: Graph, backend) -> tuple[fusion.Plan, fusion.Plan | None]:
    """(plan, fallback) of a simplified joint graph for a backend module. A backend whose
    fast code is exact only in a range declares it (RANGE_LIMITS): the plan then counts
    arguments beyond it, and the backend reruns the unguarded fallback when any are."""
    limits = getattr(backend, "RANGE_LIMITS", None)
    guarded = passes.guard_ranges(graph, limits) if limits else None
    if guarded is None:
        return fusion.plan(graph), None
    return fusion.plan(guarded), fusion.plan(graph)


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
    if backend not in BACKENDS:
        close = difflib.get_close_matches(str(backend), list(BACKENDS), n=1)
        raise user_error(DeviceError, f"{name}: backend={backend!r}" + (
            "" if explicit else " (from TRACEJIT_BACKEND)") + " is not a tracejit backend.",
            (f"did you mean backend={close[0]!r}? " if close else "") + "Backends: 'numba' "
            "(the default; also 'cpu'), 'interpreter' (the NumPy reference), 'cuda'.")
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


_F16, _F32 = np.dtype(np.float16), np.dtype(np.float32)


def _float16_boundary(run: Callable, half_in: list[int], half_out: list[int]) -> Callable:
    """Inputs that are float16 go in as float32; float16 results come back as float16."""
    def run_float16(*leaves):
        leaves = list(leaves)
        for i in half_in:
            leaves[i] = np.asarray(leaves[i], _F32)
        outs = list(run(*leaves))
        for i in half_out:
            outs[i] = outs[i].astype(_F16)
        return outs
    return run_float16


def _without_fp_warnings(run: Callable) -> Callable:
    """NumPy steps (BLAS, the interpreter) run without NumPy's floating-point RuntimeWarnings:
    the fused loops emit none, and a warning from compiled code points at tracejit's driver,
    not at the user's line."""
    def run_quietly(*leaves):
        with np.errstate(all="ignore"):
            return run(*leaves)
    return run_quietly


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
    """Replay `graph` on tracers of the current trace (nested transformations). Its
    constants stay constants of the trace: an equation of literals alone is recorded, not
    computed into an array constant (see eval_graph)."""
    outer = trace_stack()[-1]
    return eval_graph(graph, args, literal=lambda atom: Tracer(outer, atom))
