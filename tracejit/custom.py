"""User-defined gradient rules: `custom_vjp`, as in JAX.

    @tj.custom_vjp
    def clip_gradient(x):
        return x
    def fwd(x):
        return x, None                      # (output, residuals for bwd)
    def bwd(res, g):
        return (np.clip(g, -1, 1),)         # one cotangent per argument
    clip_gradient.defvjp(fwd, bwd)

How it works. Called on traced values, the function is traced into a sub-graph and recorded
as ONE equation of the `custom_vjp_call` primitive (kind "call"), whose params carry the
sub-graph and the user's fwd/bwd. Autodiff sees an ordinary primitive: its VJP rule runs
`fwd` and `bwd` on tracers of the joint trace, so the backward pass is written in primitives
like every other rule (and `grad(grad(f))` differentiates through `bwd`). After autodiff,
`passes.inline_calls` replaces the equation by its sub-graph, so fusion and backends never
see it. Called on concrete arrays (outside any transformation), the function just runs.
"""
from __future__ import annotations

import functools
import inspect
from collections.abc import Callable
from typing import Any

import numpy as np

from . import errors, pytree, randomness
from .errors import GradientError, UnsupportedError, user_error
from .ir import Graph, Literal, eval_graph
from .primitives import defprim
from .tracing import Tracer, trace

CALL = "call"


class CallBody:
    """What a `custom_vjp_call` equation carries: the traced sub-graph and the user's rule.

    `graph` is the function on the flat array leaves of its arguments; `treedef` and `leaves`
    (Python scalars kept in place, None where an array goes) rebuild the call's arguments.
    """

    def __init__(self, fn: CustomVJP, graph: Graph, treedef, leaves: list) -> None:
        self.fn, self.graph, self.treedef, self.leaves = fn, graph, treedef, leaves

    def __str__(self) -> str:  # make_ir's listing: `body=name`, the graph indented below
        return self.fn.__name__

    __repr__ = __str__

    def args(self, arrays) -> tuple:
        """The call's positional arguments, with these arrays in the array slots."""
        it = iter(arrays)
        leaves = [next(it) if leaf is None else leaf for leaf in self.leaves]
        return pytree.unflatten(self.treedef, leaves)


def _call_impl(*arrays, body: CallBody):
    return eval_graph(body.graph, arrays)[0]


def _call_vjp(g, out, *arrays, body: CallBody):
    """Cotangents of the call's array inputs: fwd and bwd run on tracers of the joint trace."""
    fn = body.fn
    args = body.args(arrays)
    diff_args = [a for i, a in enumerate(args) if i not in fn.nondiff_argnums]
    static = [args[i] for i in fn.nondiff_argnums]
    # equations of fwd and bwd carry their own lines (not the call's): errors point there
    prev = errors.replaying(None)
    try:
        with randomness.watch(fn.fwd, fn.bwd):
            _, residuals = _check_fwd(fn, fn.fwd(*args))
            cts = fn.bwd(*static, residuals, g)
    finally:
        errors.replaying(prev)
    if not isinstance(cts, (tuple, list)) or len(cts) != len(diff_args):
        raise user_error(GradientError, f"custom_vjp({fn.__name__}): bwd must return a tuple "
                         f"with one cotangent per differentiable argument ({len(diff_args)}), "
                         f"got {_describe(cts)}.",
                         "return e.g. (g_x,) for one argument, (g_x, None) to give no gradient "
                         "to the second.", where=_where(fn.bwd))
    full = list(cts)
    for i in fn.nondiff_argnums:
        full.insert(i, None)
    out_cts = []
    for i, (arg, ct) in enumerate(zip(args, full)):
        leaves, tree = pytree.flatten(arg)
        ct_leaves = [None] * len(leaves) if ct is None else _flat_like(fn, i, ct, tree)
        for k, (leaf, c) in enumerate(zip(leaves, ct_leaves)):
            if _is_array(leaf):
                label = _arg_label(fn, i, tree, k)
                out_cts.append(_as_cotangent(fn, label, c, leaf, g))
    return tuple(out_cts)


def _call_jvp(tangents, out, *arrays, body: CallBody):
    raise user_error(UnsupportedError, f"custom_vjp({body.fn.__name__}): forward-mode "
                     "differentiation (jvp, jacfwd, hessian) of a custom_vjp function is not "
                     "supported (as in JAX): its rule says how to pull cotangents back, not how "
                     "to push tangents forward.",
                     "use reverse mode (tj.grad, tj.vjp, tj.jacrev) through it, or call the "
                     "plain function (without custom_vjp) under forward mode.")


def _call_batch(prim, arrays, dims, body: CallBody):
    """vmap of a custom_vjp function: a custom_vjp function of the whole batch, whose
    function, fwd and bwd are the user's, vmapped (fwd's residuals batched along axis 0)."""
    from .api import vmap
    from .primitives.layout import broadcast_p
    fn = body.fn
    size = next(a.shape[0] for a, d in zip(arrays, dims) if d is not None)
    arrays = [a if d is not None else broadcast_p.bind(a, shape=(size,) + a.shape)
              for a, d in zip(arrays, dims)]
    # per positional argument: axis 0 for its arrays, None for the Python values kept
    in_axes = pytree.unflatten(body.treedef, [0 if leaf is None else None
                                              for leaf in body.leaves])
    batched = CustomVJP(vmap(fn.fn, in_axes=in_axes), nondiff_argnums=fn.nondiff_argnums)
    batched.__name__ = fn.__name__
    static = (None,) * len(fn.nondiff_argnums)
    batched.defvjp(vmap(fn.fwd, in_axes=in_axes, out_axes=0),
                   vmap(fn.bwd, in_axes=static + (0, 0), out_axes=0))
    return batched(*body.args(arrays)), 0


custom_vjp_call_p = defprim("custom_vjp_call", CALL,
                            shape=lambda *avals, body: body.graph.outputs[0].aval,
                            impl=_call_impl, vjp=_call_vjp, jvp=_call_jvp, batch=_call_batch)


def _is_array(x: Any) -> bool:
    return isinstance(x, (Tracer, np.ndarray, np.generic))


def _describe(x: Any) -> str:
    return f"{type(x).__name__} of length {len(x)}" if isinstance(x, (tuple, list)) \
        else type(x).__name__


def _where(fn: Callable):
    code = getattr(fn, "__code__", None)
    return (code.co_filename, code.co_firstlineno, code.co_name) if code else None


def _flat_like(fn: CustomVJP, i: int, ct: Any, tree) -> list:
    leaves, ct_tree = pytree.flatten(ct)
    if ct_tree != tree and not (tree == pytree.LEAF):
        raise user_error(GradientError, f"custom_vjp({fn.__name__}): bwd's cotangent for "
                         f"argument {i} has a different structure from the argument.",
                         "return the cotangent in the same tuple/list/dict structure as the "
                         "argument.", where=_where(fn.bwd))
    return leaves


def _arg_label(fn: CustomVJP, i: int, tree, k: int) -> str:
    """'argument 0 (x)', or 'argument 1 (params['W'])' for a leaf of a container."""
    try:
        name = list(inspect.signature(fn.fn).parameters)[i]
    except (TypeError, ValueError, IndexError):
        name = f"arg{i}"
    return f"argument {i} ({name}{_leaf_path(tree, k)})"


def _leaf_path(tree, k: int) -> str:
    """The index path of leaf k in a treedef: '', "['W']", '[1][0]'."""
    if tree == pytree.LEAF:
        return ""
    keys = tree[1] if tree[0] == "dict" else range(len(tree[1]))
    for key, child in zip(keys, tree[-1]):
        n = pytree.num_leaves(child)
        if k < n:
            return f"[{key!r}]" + _leaf_path(child, k)
        k -= n
    return ""


def _as_cotangent(fn: CustomVJP, label: str, ct: Any, primal: Any, g: Tracer):
    """A cotangent as a tracer, checked against its argument: the same shape and dtype (a
    Python scalar takes the argument's dtype), as JAX checks. None stays None."""
    if ct is None or not np.issubdtype(primal.dtype, np.inexact):
        return None
    weak = isinstance(ct, (bool, int, float))
    shape = tuple(ct.shape) if isinstance(ct, Tracer) else np.shape(ct)
    dtype = None if weak else (ct.dtype if isinstance(ct, Tracer) else np.asarray(ct).dtype)
    problem = None
    if shape != tuple(primal.shape):
        problem = f"has shape {shape}, but the argument has shape {tuple(primal.shape)}"
    elif dtype is not None and dtype != primal.dtype:
        problem = f"has dtype {dtype}, but the argument has dtype {primal.dtype}"
    if problem:
        raise user_error(GradientError, f"custom_vjp({fn.__name__}): the cotangent that bwd "
                         f"rule {getattr(fn.bwd, '__name__', 'bwd')} returned for {label} "
                         f"{problem}.", "return one cotangent per argument with the "
                         "argument's shape and dtype (reduce or broadcast it yourself, e.g. "
                         "np.broadcast_to(g_x, x.shape); cast with .astype(x.dtype)).",
                         where=_line_of(ct) or _where(fn.bwd))
    if not isinstance(ct, Tracer):
        ct = Tracer(g._trace, Literal.of(np.asarray(ct, dtype=primal.dtype)))
    return ct


def _line_of(ct: Any):
    """The user's line that computed a traced cotangent (in bwd), if it is an equation's."""
    if isinstance(ct, Tracer):
        return next((e.where for e in reversed(ct._trace.eqns) if e.outputs[0] is ct.atom),
                    None)
    return None


def _check_fwd(fn: CustomVJP, res: Any) -> tuple:
    if not isinstance(res, (tuple, list)) or len(res) != 2:
        raise user_error(GradientError, f"custom_vjp({fn.__name__}): fwd must return a pair "
                         f"(output, residuals), got {_describe(res)}.",
                         "return (out, residuals); residuals can be any pytree of arrays, or "
                         "None.", where=_where(fn.fwd))
    return res[0], res[1]


class CustomVJP:
    """A function with a user-defined VJP; see `custom_vjp`."""

    def __init__(self, fn: Callable, nondiff_argnums: tuple[int, ...] = ()) -> None:
        functools.update_wrapper(self, fn)
        self.fn = fn
        self.__name__ = getattr(fn, "__name__", "fn")
        self.nondiff_argnums = tuple(sorted(nondiff_argnums))
        self.fwd: Callable | None = None
        self.bwd: Callable | None = None

    def __repr__(self) -> str:
        return f"<tracejit.custom_vjp({self.__name__})>"

    def defvjp(self, fwd: Callable, bwd: Callable) -> None:
        """Set the rule. `fwd(*args) -> (out, residuals)`; `bwd(residuals, g) -> tuple` of
        one cotangent per argument (None for "no gradient"), in the argument's shape."""
        self.fwd, self.bwd = fwd, bwd

    def __call__(self, *args: Any) -> Any:
        if self.fwd is None:
            raise user_error(GradientError, f"custom_vjp({self.__name__}) was called before "
                             "its rule was set.", f"call {self.__name__}.defvjp(fwd, bwd) "
                             "after defining the function.")
        leaves, treedef = pytree.flatten(args)
        if not any(isinstance(x, Tracer) for x in leaves):
            return self.fn(*args)  # concrete call: nothing to differentiate
        for i in self.nondiff_argnums:
            if any(isinstance(x, Tracer) for x in pytree.flatten(args[i])[0]):
                raise user_error(UnsupportedError, f"custom_vjp({self.__name__}): argument {i}"
                                 " is in nondiff_argnums but is a traced value.",
                                 "pass traced values as ordinary (differentiable) arguments "
                                 "and return None as their cotangent.")
        arrays = [np.asarray(x) if isinstance(x, np.generic) else x
                  for x in leaves if _is_array(x)]
        kept = [None if _is_array(x) else x for x in leaves]
        body = CallBody(self, None, treedef, kept)
        graph, out_tree = trace(lambda *xs: self.fn(*body.args(xs)),
                                [a.aval if isinstance(a, Tracer) else Literal.of(a).aval
                                 for a in arrays], source=self.fn)
        self._check_body(graph, out_tree)
        body.graph = graph
        return custom_vjp_call_p.bind(*arrays, body=body)

    def _check_body(self, graph: Graph, out_tree) -> None:
        if out_tree != pytree.LEAF:
            raise user_error(UnsupportedError, f"custom_vjp({self.__name__}): the function "
                             "returned a container; tracejit's custom_vjp supports one array "
                             "output.", "split it into one custom_vjp function per output.")
        if graph.captured:
            raise user_error(UnsupportedError, f"custom_vjp({self.__name__}): the function "
                             "closes over a traced value (a tracer from the enclosing "
                             "function).", "pass that value in as an argument instead.")


def custom_vjp(fn: Callable | None = None, *, nondiff_argnums=()) -> Any:
    """Give `fn` a user-defined reverse-mode gradient (like jax.custom_vjp).

    Args:
        fn: a function of arrays (and pytrees of them) returning ONE array.
        nondiff_argnums: positions of Python-value arguments (e.g. a number of bits) that get
            no cotangent; they are passed to `bwd` first, as in JAX: `bwd(*nondiff, res, g)`.
            (Plain Python scalars in other positions are also treated as constants.)

    Returns:
        A `CustomVJP` wrapper; set its rule with `.defvjp(fwd, bwd)`, where
        `fwd(*args) -> (out, residuals)` and `bwd(residuals, g) -> (ct_arg0, ct_arg1, ...)`,
        one cotangent per argument, `None` meaning no gradient. `fwd` and `bwd` are traced
        like the rest of your code: write them with NumPy calls on their arguments.

    Example (straight-through rounding: round forward, identity backward):
        >>> @tj.custom_vjp
        ... def round_ste(x):
        ...     return np.round(x)
        >>> round_ste.defvjp(lambda x: (np.round(x), None), lambda res, g: (g,))
        >>> tj.grad(lambda x: np.sum(round_ste(x) * 3.0))(np.array([0.2, 1.7]))
        array([3., 3.])
    """
    nondiff = (nondiff_argnums,) if isinstance(nondiff_argnums, int) else tuple(nondiff_argnums)
    if fn is None:
        return lambda f: CustomVJP(f, nondiff)
    return CustomVJP(fn, nondiff)
