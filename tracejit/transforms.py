"""The composable transformations behind tj.jvp, tj.vjp, tj.vmap, tj.jacfwd, tj.jacrev and
tj.hessian (api.py holds their public signatures and docs).

Each one works on graphs, like `grad`: it traces the function into a Graph, transforms the
graph (forward.jvp_graph, autodiff.vjp_graph, batching.batch_graph) and replays the result
into the enclosing trace (`dispatch.inline_graph`), so the user's source lines survive and whatever
encloses it (jit, grad, another vmap) sees ordinary primitives. That is why compositions
compile like everything else: `tj.jit(tj.vmap(tj.grad(f)))` hands fusion one graph.

Called on arrays (outside any transformation), a transformation runs compiled: through a
`dispatch.Transformed` in jit mode of its own, cached per function (`Staged` for the ones
that return a function, `_jitted` for jvp and vjp, which are calls).
"""
from __future__ import annotations

import functools
import inspect
import weakref
from collections.abc import Callable
from typing import Any

import numpy as np

from . import captures, pytree
from .autodiff import vjp_graph
from .batching import batch_graph
from .dispatch import Transformed, _leaf_aval, _normalize_argnums, inline_graph
from .errors import (
    ArgnumsError,
    ArgumentError,
    GradientError,
    ShapeError,
    TracejitError,
    trim_traceback,
    user_error,
)
from .forward import jvp_graph
from .ir import Aval, Graph
from .primitives import is_float
from .primitives.layout import broadcast_p, transpose_p
from .tracing import Tracer, trace, trace_stack


# ----- tracing the user's function -----
def _trace(fun: Callable, flat: Callable, avals: list) -> tuple[Graph, Any]:
    """Trace `flat` (which calls `fun`) on these avals. The arrays `fun` captures from its
    closure and globals become inputs of the graph (lifted), as in jit: never constants."""
    return trace(flat, avals, captures.scan(fun).arrays, source=fun)


def _closure(graph: Graph) -> list:
    """What a traced graph's inputs after its arguments stand for: the tracers it captured
    from enclosing traces, then the arrays it lifted (lifted again by the enclosing trace,
    which reads them at every call)."""
    stack = trace_stack()
    return list(graph.captured) + [stack[-1].lift(src.read(), src) if stack else src.read()
                                   for src in graph.lifted]


def _extra(graph: Graph, n_args: int) -> list[bool]:
    """False for each graph input after the first n_args (captured and lifted values)."""
    return [False] * (len(graph.inputs) - n_args)


# ----- leaves -----
def _as_array(x: Any, name: str) -> Any:
    """A leaf as a tracer or a NumPy array (Python and NumPy scalars become 0-d arrays)."""
    if isinstance(x, Tracer):
        return x
    aval = _leaf_aval(x, name)
    return x if isinstance(x, np.ndarray) else np.asarray(x, dtype=aval.dtype)


def _aval(x):
    return x.aval if isinstance(x, Tracer) else _leaf_aval(x, "")


def _moveaxis(x, src: int, dst: int):
    if src == dst:
        return x
    if not isinstance(x, Tracer):
        return np.moveaxis(x, src, dst)
    perm = list(range(x.ndim))
    perm.insert(dst, perm.pop(src))
    return transpose_p.bind(x, perm=tuple(perm))


def _broadcast_front(x, size: int):
    """`x` repeated `size` times along a new first axis."""
    if not isinstance(x, Tracer):
        return np.broadcast_to(x, (size,) + np.shape(x)).copy()
    return broadcast_p.bind(x, shape=(size,) + x.shape)


def _arg_names(fun: Callable) -> list[str]:
    try:
        return list(inspect.signature(fun).parameters)
    except (TypeError, ValueError):
        return []


def _leaf_labels(fun: Callable, args: tuple, kwargs: dict) -> list[str]:
    """'argument 0 (x)', "argument 1 (params['W'])", "keyword argument 'y'": one per leaf of
    (args, kwargs) in flattening order."""
    names = _arg_names(fun)
    out = []
    for i, a in enumerate(args):
        named = f"{names[i]}" if i < len(names) else ""
        for path in pytree.leaf_paths(pytree.flatten(a)[1]):
            out.append(f"argument {i}" + (f" ({named}{path})" if named else path))
    for k in sorted(kwargs, key=repr):
        tree = pytree.flatten(kwargs[k])[1]
        out += [f"keyword argument {k!r}{path}" for path in pytree.leaf_paths(tree)]
    return out


def _is_axis(a) -> bool:
    return a is None or (isinstance(a, (int, np.integer)) and not isinstance(a, bool))


def _prefix_leaves(prefix, tree, what: str, name: str) -> list:
    """Broadcast an axes spec (an int, None, or a tuple/list/dict prefix of `tree`) to one
    entry per leaf of `tree` (a treedef)."""
    if _is_axis(prefix):
        return [prefix] * pytree.num_leaves(tree)
    kind = tree[0]
    if kind in ("tuple", "list") and isinstance(prefix, (tuple, list)) and \
            len(prefix) == len(tree[1]):
        return [a for p, c in zip(prefix, tree[1]) for a in _prefix_leaves(p, c, what, name)]
    if kind == "dict" and isinstance(prefix, dict) and set(prefix) == set(tree[1]):
        return [a for k, c in zip(tree[1], tree[2]) for a in _prefix_leaves(prefix[k], c, what,
                                                                            name)]
    raise user_error(ArgumentError, f"{name}: {what} specification {prefix!r} is not a tree "
                     "prefix of the value it applies to.",
                     f"give {what} as an int or None for the whole value, or a tuple/list/dict "
                     "with one entry per element of the value's own tuple/list/dict.")


# ----- vmap -----
def vmap_call(fun: Callable, in_axes, out_axes, args: tuple, kwargs: dict, name: str):
    """`vmap(fun, in_axes, out_axes)(*args, **kwargs)` inside a trace (or on arrays)."""
    leaves, treedef = pytree.flatten((args, kwargs))
    axes = _in_axes(in_axes, args, kwargs, treedef, name)
    labels = _leaf_labels(fun, args, kwargs)
    size = _batch_size(leaves, axes, labels, name)
    moved, avals = [], []
    for leaf, ax, label in zip(leaves, axes, labels):
        if ax is None:
            continue
        x = _as_array(leaf, name)
        ax = _normalize_axis(ax, x.ndim, f"{name}: in_axes for {label}")
        moved.append(_moveaxis(x, ax, 0))
        aval = _aval(moved[-1])
        avals.append(Aval(aval.shape[1:], aval.dtype))

    def per_example(*xs):
        it = iter(xs)
        full = [leaf if ax is None else next(it) for leaf, ax in zip(leaves, axes)]
        a, kw = pytree.unflatten(treedef, full)
        return fun(*a, **kw)

    graph, out_tree = _trace(fun, per_example, avals)
    batched, batched_out = batch_graph(graph, [True] * len(avals) + _extra(graph, len(avals)),
                                       size)
    outs = inline_graph(batched, moved + _closure(graph))
    out_ax = _prefix_leaves(out_axes, out_tree, "out_axes", name)
    return pytree.unflatten(out_tree, [
        _place(o, b, ax, size, name) for o, b, ax in zip(outs, batched_out, out_ax)])


def _in_axes(in_axes, args: tuple, kwargs: dict, treedef, name: str) -> list:
    """One axis (or None) per leaf of (args, kwargs); keyword arguments map along axis 0."""
    if isinstance(in_axes, list):
        in_axes = tuple(in_axes)
    if isinstance(in_axes, tuple) and len(in_axes) != len(args):
        raise user_error(ArgumentError, f"{name}: in_axes has {len(in_axes)} entries but "
                         f"the function was called with {len(args)} positional argument(s).",
                         "give one in_axes entry per positional argument (or one int/None for "
                         "all of them).")
    if not (_is_axis(in_axes) or isinstance(in_axes, tuple)):
        raise user_error(ArgumentError, f"{name}: in_axes must be an int, None or a tuple, got "
                         f"{type(in_axes).__name__}.", "e.g. in_axes=0 or in_axes=(0, None).")
    arg_tree, kw_tree = treedef[1]
    return (_prefix_leaves(in_axes, arg_tree, "in_axes", name)
            + _prefix_leaves(0, kw_tree, "in_axes", name))


def _normalize_axis(ax: int, ndim: int, what: str) -> int:
    if not -ndim <= ax < ndim:
        raise user_error(ShapeError, f"{what}: axis {ax} is out of range for a value of rank "
                         f"{ndim}.", "map an existing axis (in [-ndim, ndim)), or use None "
                         "for a value shared by every example.")
    return int(ax) % ndim


def _batch_size(leaves, axes, labels, name: str) -> int:
    sizes = []
    for leaf, ax, label in zip(leaves, axes, labels):
        if ax is None:
            continue
        shape = _aval(_as_array(leaf, name)).shape
        ax = _normalize_axis(ax, len(shape), f"{name}: in_axes for {label} (shape {shape})")
        sizes.append((label, shape, ax, shape[ax]))
    if not sizes:
        raise user_error(ArgumentError, f"{name}: no argument is mapped (in_axes is None for "
                         "all of them).", "map at least one argument (an int in in_axes).")
    if len({s for *_, s in sizes}) > 1:
        lines = "\n".join(f"  {label} has shape {shape} and axis {ax} is mapped (size {s})"
                          for label, shape, ax, s in sizes)
        raise user_error(ShapeError, f"{name}: the mapped axes have different sizes:\n{lines}",
                         "map axes of one size (the batch), or use in_axes=None for arguments "
                         "that are the same for every example.")
    return sizes[0][3]


def _place(x, batched: bool, axis, size: int, name: str):
    """An output with its batch axis where out_axes says (broadcast when unbatched)."""
    if axis is None:
        if batched:
            raise user_error(ArgumentError, f"{name}: out_axes is None for an output that "
                             "differs between examples.",
                             "give that output an out_axes int, or return only values that "
                             "are the same for every example where out_axes is None.")
        return x
    if not batched:
        x = _broadcast_front(_as_array(x, name), size)
    return _moveaxis(x, 0, _normalize_axis(axis, np.ndim(x) if not isinstance(x, Tracer)
                                            else x.ndim, f"{name}: out_axes"))


# ----- jvp -----
def jvp_call(fun: Callable, primals, tangents, has_aux: bool, name: str):
    """`jvp(fun, primals, tangents)` inside a trace: (out, tangent_out[, aux])."""
    p_leaves, p_tree = pytree.flatten(tuple(primals))
    p_leaves = [_as_array(x, name) for x in p_leaves]
    t_leaves = _check_tangents(p_leaves, p_tree, tangents, name)
    graph, out_tree = _trace(fun, lambda *xs: fun(*pytree.unflatten(p_tree, list(xs))),
                             [_aval(x) for x in p_leaves])
    n_main, main_tree, aux_tree = _split_aux(out_tree, has_aux, name)
    n = len(graph.outputs)
    joint = jvp_graph(graph, [True] * len(p_leaves) + _extra(graph, len(p_leaves)))
    outs = inline_graph(joint, p_leaves + _closure(graph) + t_leaves)
    primal_out = pytree.unflatten(main_tree, outs[:n_main])
    tangent_out = pytree.unflatten(main_tree, outs[n:n + n_main])
    if not has_aux:
        return primal_out, tangent_out
    return primal_out, tangent_out, pytree.unflatten(aux_tree, outs[n_main:n])


def _check_tangents(p_leaves, p_tree, tangents, name: str) -> list:
    """Tangent leaves matching the primals' structure, shapes and float dtypes."""
    t_leaves, t_tree = pytree.flatten(tuple(tangents))
    if t_tree != p_tree:
        raise user_error(ArgumentError, f"{name}: primals and tangents have different "
                         f"structures ({len(t_leaves)} tangent leaves for {len(p_leaves)} "
                         "primal leaves).", "give one tangent per primal, in the same "
                         "tuple/list/dict structure.")
    return [_like(t, _aval(p), f"tangent leaf {i}", "its primal", name)
            for i, (p, t) in enumerate(zip(p_leaves, t_leaves))]


def _like(x, want, what: str, whose: str, name: str):
    """`x` (a tangent or cotangent) checked against `want`: the same shape, and for floats
    the same dtype (a Python or 0-d scalar is cast)."""
    x = _as_array(x, name)
    a = _aval(x)
    if a.shape != want.shape:
        raise user_error(ShapeError, f"{name}: {what} has shape {a.shape} but {whose} has "
                         f"shape {want.shape}.", f"give each {what.split()[0]} the shape of "
                         f"{whose}.")
    if a.dtype == want.dtype or not is_float(want.dtype):
        return x
    if not isinstance(x, Tracer) and x.ndim == 0 and a.dtype.kind in "biuf":
        return x.astype(want.dtype)
    raise user_error(ArgumentError, f"{name}: {what} has dtype {a.dtype} but {whose} has "
                     f"dtype {want.dtype}.", f"give it {whose}'s dtype, e.g. "
                     f"v.astype(np.{want.dtype.name}).")


def _split_aux(out_tree, has_aux: bool, name: str) -> tuple:
    """(number of main output leaves, main treedef, aux treedef or None)."""
    if not has_aux:
        return pytree.num_leaves(out_tree), out_tree, None
    if not (out_tree[0] in ("tuple", "list") and len(out_tree[1]) == 2):
        raise user_error(GradientError, f"{name}: has_aux=True needs the function to return a "
                         "pair (output, aux).", "return (output, aux).")
    main, aux = out_tree[1]
    return pytree.num_leaves(main), main, aux


# ----- vjp -----
def vjp_call(fun: Callable, primals: tuple, has_aux: bool, name: str):
    """`vjp(fun, *primals)` inside a trace: (out, vjp_fn[, aux])."""
    leaves, tree = pytree.flatten(tuple(primals))
    leaves = [_as_array(x, name) for x in leaves]
    avals = [_aval(x) for x in leaves]
    graph, out_tree = _trace(fun, lambda *xs: fun(*pytree.unflatten(tree, list(xs))), avals)
    n_main, main_tree, aux_tree = _split_aux(out_tree, has_aux, name)
    closure = _closure(graph)
    outs = inline_graph(graph, leaves + closure)
    out = pytree.unflatten(main_tree, outs[:n_main])
    main = Graph(graph.inputs, graph.eqns, graph.outputs[:n_main])
    wrt = [i for i, a in enumerate(avals) if is_float(a.dtype)]

    def vjp_fn(cotangent):
        ct_leaves = _check_cotangents(main, main_tree, cotangent, name)
        joint, connected = vjp_graph(main, wrt, seeds=True)
        res = iter(inline_graph(joint, leaves + closure + ct_leaves)[n_main:])
        grads = {j: next(res) for j, c in zip(wrt, connected) if c}
        flat = [grads[j] if j in grads else np.zeros(a.shape, a.dtype)
                for j, a in enumerate(avals)]
        return pytree.unflatten(tree, flat)  # a tuple: one cotangent per primal

    if has_aux:
        return out, vjp_fn, pytree.unflatten(aux_tree, outs[n_main:])
    return out, vjp_fn


def _check_cotangents(graph: Graph, out_tree, cotangent, name: str) -> list:
    leaves, tree = pytree.flatten(cotangent)
    if tree != out_tree:
        raise user_error(ArgumentError, f"{name}: the cotangent's structure does not match the "
                         "function's output.", "give vjp_fn one cotangent per output, in the "
                         "output's tuple/list/dict structure.")
    return [_like(ct, o.aval, f"cotangent leaf {i}", "the output", name)
            for i, (ct, o) in enumerate(zip(leaves, graph.outputs))]


# ----- Jacobians -----
def _diff_args(fun, argnums, args, kwargs, name: str):
    """(differentiated args, fun of those args alone) for jacfwd/jacrev."""
    nums = _normalize_argnums(argnums, name)
    n = len(args)
    for i in nums:
        if not -n <= i < n:
            raise user_error(ArgnumsError, f"{name}: argnums={i} is out of range for a call "
                             f"with {n} positional argument(s).", f"use argnums in [0, {n}).")
    nums = tuple(i % n for i in nums)
    dyn = tuple(pytree.tree_map(lambda x: _as_array(x, name), args[i]) for i in nums)
    for i, d in zip(nums, dyn):
        for leaf in pytree.flatten(d)[0]:
            if not is_float(_aval(leaf).dtype):
                raise user_error(ArgnumsError, f"{name}: argument {i} (argnums) has dtype "
                                 f"{_aval(leaf).dtype}; only floating-point inputs can be "
                                 "differentiated.", "pass a float array, or leave this "
                                 "argument out of argnums.")

    def partial(*d):
        full = list(args)
        for i, v in zip(nums, d):
            full[i] = v
        return fun(*full, **kwargs)
    return dyn, partial


def _basis(leaves, n: int) -> list:
    """Rows of the n x n identity, split and shaped like the leaves: (n, *leaf.shape) each."""
    out, off = [], 0
    for leaf in leaves:
        a = _aval(leaf)
        out.append(np.eye(n, dtype=a.dtype)[:, off:off + a.size].reshape((n,) + a.shape))
        off += a.size
    return out


def _blocks(rows, r_avals, c_avals, rows_first: bool) -> list[list]:
    """Jacobian blocks: blocks[i][j] of shape r_avals[i].shape + c_avals[j].shape, cut from
    `rows` (per column leaf (n, *shape) when rows_first, else per row leaf (*shape, n))."""
    from . import numpy as tnp
    blocks = [[None] * len(c_avals) for _ in r_avals]
    r_off = 0
    for i, ra in enumerate(r_avals):
        c_off = 0
        for j, ca in enumerate(c_avals):
            if rows_first:  # rows[j]: (n_rows, *col shape)
                piece = rows[j][r_off:r_off + ra.size]
            else:           # rows[i]: (*row shape, n_cols)
                piece = rows[i][..., c_off:c_off + ca.size]
            blocks[i][j] = tnp.reshape(piece, ra.shape + ca.shape)
            c_off += ca.size
        r_off += ra.size
    return blocks


def _assemble(blocks, out_tree, dyn, argnums) -> Any:
    """JAX's Jacobian structure: the output's tree, each leaf the argument's tree (a tuple
    of them for a tuple argnums) of blocks."""
    arg_tree = pytree.flatten(dyn[0] if isinstance(argnums, int) else dyn)[1]
    return pytree.unflatten(out_tree, [pytree.unflatten(arg_tree, row) for row in blocks])


def jacrev_call(fun, argnums, has_aux: bool, args, kwargs, name: str):
    """Reverse mode: one VJP per output element, batched (vmap over the basis)."""
    dyn, partial = _diff_args(fun, argnums, args, kwargs, name)
    res = vjp_call(partial, dyn, has_aux, name)
    out, pullback = res[0], res[1]
    y_leaves, y_tree = pytree.flatten(out)
    for y in y_leaves:
        if not is_float(_aval(y).dtype):
            raise user_error(GradientError, f"{name}: the function's outputs must be float "
                             f"arrays for jacrev, got {_aval(y).dtype}.",
                             "return float values (x.astype(np.float64)), or use jacfwd.")
    m = sum(_aval(y).size for y in y_leaves)
    cts = vmap_call(pullback, 0, 0, (pytree.unflatten(y_tree, _basis(y_leaves, m)),), {}, name)
    x_leaves = pytree.flatten(dyn)[0]
    blocks = _blocks(pytree.flatten(cts)[0], [_aval(y) for y in y_leaves],
                     [_aval(x) for x in x_leaves], rows_first=True)
    jac = _assemble(blocks, y_tree, dyn, argnums)
    return (jac, res[2]) if has_aux else jac


def jacfwd_call(fun, argnums, has_aux: bool, args, kwargs, name: str):
    """Forward mode: one JVP per input element, batched (vmap over the basis)."""
    dyn, partial = _diff_args(fun, argnums, args, kwargs, name)
    x_leaves, x_tree = pytree.flatten(dyn)
    n = sum(_aval(x).size for x in x_leaves)

    def pushforward(tangents):
        res = jvp_call(partial, dyn, tangents, has_aux, name)
        return (res[1], res[2]) if has_aux else res[1]

    basis = pytree.unflatten(x_tree, _basis(x_leaves, n))
    res = vmap_call(pushforward, 0, (-1, None) if has_aux else -1, (basis,), {}, name)
    t_out = res[0] if has_aux else res
    t_leaves, y_tree = pytree.flatten(t_out)
    y_avals = [Aval(_aval(t).shape[:-1], _aval(t).dtype) for t in t_leaves]
    blocks = _blocks(t_leaves, y_avals, [_aval(x) for x in x_leaves], rows_first=False)
    jac = _assemble(blocks, y_tree, dyn, argnums)
    return (jac, res[1]) if has_aux else jac


# ----- running: inline under a trace, compiled on arrays -----
def _is_static(a: Any) -> bool:
    """Python ints, bools, strings and None stay Python values (as JAX's vmap passes them)."""
    return a is None or isinstance(a, (bool, int, str))


class Staged:
    """A function made by vmap, jacfwd, jacrev or hessian. Inside another transformation it
    records its graph into the enclosing trace; called on arrays it runs compiled (a jit of
    itself, cached by which positional arguments are static Python values)."""

    def __init__(self, fn: Callable, name: str, impl: Callable) -> None:
        functools.update_wrapper(self, fn)
        self.name, self._impl = name, impl
        self._jits: dict[tuple, Transformed] = {}

    def __repr__(self) -> str:
        return f"<tracejit.{self.name}>"

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        if trace_stack():
            try:
                return self._impl(*args, **kwargs)
            except TracejitError as e:
                raise trim_traceback(e)
        static = tuple(i for i, a in enumerate(args) if _is_static(a))
        jitted = self._jits.get(static)
        if jitted is None:
            impl = self._impl
            run = functools.wraps(self)(lambda *a, **k: impl(*a, **k))
            run.__name__ = self.name
            jitted = self._jits[static] = Transformed(run, mode="jit", static_argnums=static)
        return jitted(*args, **kwargs)


_JITS: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()


def jitted(fun: Callable, key: tuple, build: Callable[[], Callable], name: str) -> Transformed:
    """The compiled form of a call-style transformation of `fun` (jvp, vjp), cached per
    function while it lives."""
    try:
        per_fun = _JITS.setdefault(fun, {})
    except TypeError:  # not weakly referenceable: compile per call
        per_fun = {}
    t = per_fun.get(key)
    if t is None:
        run = build()
        run.__name__ = name
        t = per_fun[key] = Transformed(run, mode="jit")
    return t
