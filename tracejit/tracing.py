"""Tracing: Tracer objects stand in for arrays and record every operation as an equation.

Python operators, `__array_ufunc__` and `__array_function__` (installed by `tracejit.numpy`)
route plain NumPy calls on a Tracer into `tracejit.numpy`, which binds primitives. Python
control flow runs at trace time; asking a tracer for a concrete value raises an error naming
the user's line.
"""
from __future__ import annotations

import cmath
import contextlib
import math
import sys
import threading
from collections.abc import Callable
from typing import Any

import numpy as np

from . import pytree, randomness
from .errors import (
    TracejitError,
    TracerBoolError,
    UnsupportedError,
    called_function,
    calling_frame,
    in_package,
    public_name,
    user_error,
    user_frame,
    where_of,
)
from .ir import Atom, Aval, Eqn, Graph, Literal, Var
from .primitives.elementwise import convert_p, stop_gradient_p

_STATE = threading.local()  # each thread traces on its own stack


def trace_stack() -> list[Trace]:
    """This thread's stack of traces, innermost last (empty when nothing is being traced)."""
    try:
        return _STATE.stack
    except AttributeError:
        _STATE.stack = []
        return _STATE.stack

# how to do without a concrete value, by what asked for it
_FIXES = {
    "bool": "branch on data with tnp.where(cond, a, b) (or np.where); Python `if`, `while` and "
            "`and`/`or` only work on shapes, dtypes and static arguments.",
    "float": "keep it an array: a 0-d traced value works in arithmetic and NumPy calls "
             "(`w * x[0]`, `np.exp(x[0])`); for a Python number, return the value from the "
             "function and call float() on the result.",
    "int": "for a size or a count use a shape (`x.shape[0]`) or a static argument "
           "(static_argnums=... / static_argnames=...); to convert values use "
           "x.astype(np.int64).",
    "range": "loop bounds must be Python ints: use a shape (`range(x.shape[0])`) or make the "
             "argument static (static_argnums=... / static_argnames=...).",
    "index": "slice bounds and list indices must be Python ints (shapes or static arguments); "
             "for a data-dependent choice use np.where(mask, x, 0).",
    "array": "to build an array from traced values use np.stack([a, b, ...]) (or "
             "np.concatenate); a traced array needs no conversion: use it as it is.",
}


class Trace:
    """Records equations; `level` orders nested traces (grad of grad)."""

    def __init__(self, level: int, liftable: dict | None = None) -> None:
        self.level = level
        self.inputs: list[Var] = []
        self.eqns: list[Eqn] = []
        # tracers of an enclosing trace used here become extra inputs of this graph
        self.captured: dict[int, tuple[Var, Tracer]] = {}
        # arrays the function captured (id -> (array, source), see captures.py) become
        # implicit inputs when they meet a traced value, read again at every call
        self.liftable = liftable or {}
        self.lifted: dict[int, tuple[Var, Any]] = {}

    def new_arg(self, aval: Aval, weak: bool = False) -> Tracer:
        var = Var(aval)
        self.inputs.append(var)
        return Tracer(self, var, weak)

    def lift(self, x: np.ndarray, source: Any) -> Tracer:
        """A captured array as an implicit input of this trace (once per array)."""
        if id(x) not in self.lifted:
            self.lifted[id(x)] = (Var(Aval(x.shape, x.dtype)), source)
        return Tracer(self, self.lifted[id(x)][0])

    def lift_known(self, x: Any) -> Any:
        """`x` as a tracer if it is an array the function captured, else `x` itself."""
        found = self.liftable.get(id(x)) if type(x) is np.ndarray else None
        return self.lift(x, found[1]) if found is not None and found[0] is x else x

    def to_atom(self, x: Any, dtype: np.dtype | None) -> Atom:
        if type(x) is np.ndarray:
            x = self.lift_known(x)
        if isinstance(x, Tracer):
            if x._trace is self:
                return x.atom
            if x._trace not in trace_stack():
                raise user_error(TracejitError, "a traced value escaped the function that "
                                 "produced it (it was stored outside and used later).",
                                 "return values from the traced function instead of storing "
                                 "them in globals or closures.")
            if isinstance(x.atom, Literal):
                return x.atom
            if x.atom.id not in self.captured:
                self.captured[x.atom.id] = (Var(x.aval), x)
            return self.captured[x.atom.id][0]
        if isinstance(x, Literal):
            return x
        if isinstance(x, (bool, int, float)) and dtype is not None:
            return Literal.of(x, dtype)
        return Literal.of(x)

    def bind(self, prim, args, params) -> Any:
        dtype = _scalar_dtype(prim, args)
        atoms = tuple(self.to_atom(a, dtype) for a in args)
        avals = prim.abstract_eval(*[a.aval for a in atoms], **params)
        outs = tuple(Var(a) for a in avals)
        self.eqns.append(Eqn(prim, atoms, dict(params), outs, user_frame()))
        if prim.multiple_results:
            return tuple(Tracer(self, o) for o in outs)
        (out,) = outs
        return Tracer(self, out, _weak_result(prim, args))

    def graph(self, outputs: list[Any]) -> Graph:
        """The graph: inputs are the arguments, then tracers captured from enclosing traces
        (`graph.captured`), then lifted arrays (`graph.lifted`: their sources)."""
        outs = [self.to_atom(o, None) for o in outputs]
        inputs = self.inputs + [v for v, _ in self.captured.values()] + \
            [v for v, _ in self.lifted.values()]
        graph = Graph(inputs, self.eqns, outs)
        graph.captured = [tracer for _, tracer in self.captured.values()]
        graph.lifted = [source for _, source in self.lifted.values()]
        graph.out_weak = [is_weak(o) for o in outputs]
        return graph


def _scalar_dtype(prim, args) -> np.dtype | None:
    """Dtype that Python scalars take in a primitive: the dtype of its array operands."""
    candidates = args[1:] if prim.kind == "select" else args
    for a in candidates:
        if isinstance(a, (Tracer, Literal, np.ndarray, np.generic)):
            return a.dtype
    return None


def is_weak(x: Any) -> bool:
    """Weakly typed (JAX's weak types): a Python scalar, or a tracer that stands for one (a
    loop carry started from a Python scalar, and what is computed from such values alone).
    NumPy's promotion treats it as a Python scalar of its kind (NEP 50: float32 array + weak
    float -> float32); see numpy/promotion.py."""
    if isinstance(x, Tracer):
        return x.weak
    # np.float64 is a float too, but typed (NumPy's and JAX's rule)
    return isinstance(x, (bool, int, float, complex)) and not isinstance(x, np.generic)


def weakly(x: Any, weak: bool = True) -> Any:
    """`x` (a tracer) marked weakly typed or not: the same value, another type flag."""
    if not isinstance(x, Tracer) or x.weak == weak:
        return x
    return Tracer(x._trace, x.atom, weak)


def _weak_result(prim, args) -> bool:
    """An equation's output is weak when its operands are (a select's: the values chosen
    from), one of them a weak tracer; a cast (`astype`) gives a typed value. Promotion casts
    set the flag themselves (promotion.py)."""
    values = args[1:] if prim.kind == "select" else args
    return prim is not convert_p and any(type(a) is Tracer and a.weak for a in values) and \
        all(is_weak(a) for a in values)


@contextlib.contextmanager
def new_trace(liftable: dict | None = None):
    stack = trace_stack()
    trace = Trace(len(stack), liftable)
    stack.append(trace)
    try:
        yield trace
    finally:
        stack.pop()


def is_tracer(x: Any) -> bool:
    return isinstance(x, Tracer)


def trace(fn: Callable, avals: list[Aval], liftable: dict | None = None,
          source: Callable | None = None, weak: list[bool] | None = None) -> tuple[Graph, Any]:
    """Trace `fn(*tracers)` on tracers with these avals: (graph, output treedef).

    `fn` takes flat tracers and returns a pytree; the graph's outputs are its leaves.
    Tracers of enclosing traces it closed over, and the arrays of `liftable` it used
    (captured arrays, see captures.py), become extra inputs after the arguments. `source`
    is the user's function `fn` calls: it may not draw random numbers (randomness.py).
    `weak[i]`: argument i is weakly typed (a loop carry started from a Python scalar);
    `graph.out_weak` says which outputs are.
    """
    weak = weak or [False] * len(avals)
    with randomness.watch(source), new_trace(liftable) as t:
        out = fn(*[t.new_arg(a, w) for a, w in zip(avals, weak, strict=True)])
        out_leaves, out_tree = pytree.flatten(out)
        graph = t.graph(out_leaves)
    return graph, out_tree


def concrete_error(what: str, kind: str = "bool") -> TracerBoolError:
    return user_error(TracerBoolError, f"a traced value was used as {what}; its value is not "
                      "known while tracing.", _FIXES[kind])


def _scalar_error(what: str, kind: str) -> TracejitError:
    """A Python number was asked of a tracer: by float()/int()/an index, by range(), or by a
    math-module function (math.exp(x[0])); each gets its own fix."""
    frame = calling_frame()
    fn = called_function(frame)
    where = where_of(frame)
    owner = getattr(fn, "__self__", None)
    if owner is math or owner is cmath:
        name = fn.__name__
        alt = f"np.{name}" if hasattr(np, name) else "the NumPy function of the same meaning"
        return user_error(TracerBoolError, f"{public_name(fn)}() was given a traced value; "
                          "math functions take Python numbers, which a traced value is not.",
                          f"use {alt}(...) (or tnp.{name}), which traces.", where)
    if fn is range:
        return user_error(TracerBoolError, "range() was given a traced value; its value is not "
                          "known while tracing.", _FIXES["range"], where)
    return user_error(TracerBoolError, f"a traced value was used as {what}; its value is not "
                      "known while tracing.", _FIXES[kind], where)


_ARRAY_MAKERS = ("array", "asarray", "asanyarray", "ascontiguousarray", "asfortranarray")


def _array_error() -> TracejitError:
    """np.asarray/np.array of a tracer, or a library function (scipy, ...) that converts its
    argument to a NumPy array: named, with a traced alternative."""
    by_tracejit = in_package(sys._getframe(2))  # converting an operand: a list of tracers
    frame = calling_frame()
    fn = called_function(frame)
    where = where_of(frame)
    name = getattr(fn, "__name__", "")
    if fn is not None and getattr(np, name, None) is fn and name in _ARRAY_MAKERS:
        return user_error(TracerBoolError, f"np.{name}() was given a traced value; it makes a "
                          "concrete NumPy array, whose values are not known while tracing.",
                          _FIXES["array"], where)
    if by_tracejit or isinstance(fn, np.ufunc) or getattr(np, name, None) is fn is not None:
        # NumPy itself hands tracers to tracejit: only a list/tuple of them gets here
        return user_error(TracerBoolError, "a list or tuple of traced values was used as an "
                          "array; tracejit does not turn sequences of traced values into arrays "
                          "(a list argument is traced as a container of separate values).",
                          "pass an array instead of a list (np.asarray([...]) before the "
                          "call), or build the array with np.stack([...]).", where)
    if fn is not None and callable(fn) and getattr(fn, "__module__", None) != "builtins":
        tnp = sys.modules.get("tracejit.numpy")
        alt = f"use tnp.{name} (import tracejit.numpy as tnp), which traces, or " \
            if name in getattr(tnp, "NAMESPACE", {}) else "express it with NumPy functions " \
            "tracejit supports (README: 'Supported operations'), or "
        return user_error(UnsupportedError, f"{public_name(fn)} is not supported inside a "
                          "tracejit function: it converts its argument to a NumPy array, whose "
                          "values are not known while tracing.", alt + "compute it outside the "
                          "traced function and pass the result in as an argument.", where)
    return user_error(TracerBoolError, "a traced value was used as a concrete NumPy array (by "
                      "np.asarray/np.array or a function tracejit does not trace); its values "
                      "are not known while tracing.", _FIXES["array"], where)


class Tracer:
    """An array under tracing: an atom of the trace's graph, with NumPy-like methods."""

    __slots__ = ("_trace", "atom", "weak")
    __array_priority__ = 1000

    def __init__(self, trace: Trace, atom: Atom, weak: bool = False) -> None:
        self._trace = trace
        self.atom = atom
        self.weak = weak  # weakly typed: promotes as a Python scalar would (is_weak)

    # --- what is known at trace time ---
    aval = property(lambda self: self.atom.aval)
    shape = property(lambda self: self.atom.aval.shape)
    dtype = property(lambda self: self.atom.aval.dtype)
    ndim = property(lambda self: self.atom.aval.ndim)
    size = property(lambda self: self.atom.aval.size)

    def __len__(self) -> int:
        if not self.shape:
            raise TypeError("len() of a 0-d traced array")
        return self.shape[0]

    def __repr__(self) -> str:
        return f"Tracer<{self.aval}{', weak' if self.weak else ''}>"

    def __iter__(self):
        return (self[i] for i in range(len(self)))

    # --- concrete values are not available ---
    def __bool__(self):
        raise concrete_error("a Python bool (an `if`, `while`, `and`/`or` or `bool()`)")

    def __float__(self):
        raise _scalar_error("a Python float (`float()`)", "float")

    def __int__(self):
        raise _scalar_error("a Python int (`int()`)", "int")

    def __index__(self):
        raise _scalar_error("an index (a slice bound or a list index)", "index")

    def __complex__(self):
        raise _scalar_error("a Python complex (`complex()`)", "float")

    def item(self, *args):
        raise concrete_error("a Python scalar (`.item()`)", "float")

    def tolist(self):
        raise concrete_error("a Python list (`.tolist()`)", "float")

    def __array__(self, dtype=None, copy=None):
        raise _array_error()

    def copy(self, order="K"):
        """A copy: traced values are never modified in place, so the value itself."""
        return self

    __hash__ = object.__hash__

    # NumPy's protocols and Python's arithmetic operators are installed by tracejit.numpy
    # (numpy/protocols.py), which routes them to the function of the same meaning


def stop_gradient(x: Any) -> Any:
    """Identity in the forward pass; a constant edge for autodiff (no gradient flows through).

    Like jax.lax.stop_gradient and tf.stop_gradient. Works on pytrees of arrays.

    Example:
        >>> tj.grad(lambda x: np.sum(x * tj.stop_gradient(x)))(np.ones(2))  # d/dx x*c = c
        array([1., 1.])
    """
    return pytree.tree_map(lambda v: stop_gradient_p.bind(v) if isinstance(v, Tracer) else v, x)


def unsupported(name: str, fix: str | None = None) -> UnsupportedError:
    return user_error(UnsupportedError, f"{name} is not supported inside a tracejit function.",
                      fix or "express it with supported operations (README: 'Supported "
                      "operations') or compute it outside the traced function and pass the "
                      "result in as an argument.")
