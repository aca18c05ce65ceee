"""Tracing: Tracer objects stand in for arrays and record every operation as an equation.

Python operators, `__array_ufunc__` and `__array_function__` route plain NumPy calls on a
Tracer into `tracejit.numpy`, which binds primitives. Python control flow runs at trace time;
asking a tracer for a concrete value raises an error naming the user's line.
"""
from __future__ import annotations

import contextlib
import threading
from collections.abc import Callable
from typing import Any

import numpy as np

from . import pytree
from .errors import TracejitError, TracerBoolError, UnsupportedError, user_error, user_frame
from .ir import Atom, Aval, Eqn, Graph, Literal, Var


class _TraceStack(threading.local):
    """The traces active in this thread, innermost last. One per thread: while a thread
    traces (a first call, under a compile lock), another thread's call of a compiled
    function must not look like a call inside a trace (it would return tracers)."""

    def __init__(self) -> None:
        self.traces: list[Trace] = []


_TRACE_STACK = _TraceStack()

_CONCRETE_FIX = ("branch on data with tnp.where(cond, a, b) (or np.where); Python `if`, "
                 "`float()` and `int()` only work on shapes, dtypes and static arguments.")


class Trace:
    """Records equations; `level` orders nested traces (grad of grad)."""

    def __init__(self, level: int) -> None:
        self.level = level
        self.inputs: list[Var] = []
        self.eqns: list[Eqn] = []
        # tracers of an enclosing trace used here become extra inputs of this graph
        self.captured: dict[int, tuple[Var, Tracer]] = {}
        self.where_override: tuple[str, int, str] | None = None

    def new_arg(self, aval: Aval) -> Tracer:
        var = Var(aval)
        self.inputs.append(var)
        return Tracer(self, var)

    def to_atom(self, x: Any, dtype: np.dtype | None) -> Atom:
        if isinstance(x, Tracer):
            if x._trace is self:
                return x.atom
            if x._trace not in _TRACE_STACK.traces:
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
        where = self.where_override or user_frame()
        self.eqns.append(Eqn(prim, atoms, dict(params), outs, where))
        tracers = [Tracer(self, v) for v in outs]
        return tracers if prim.multiple_results else tracers[0]

    def graph(self, outputs: list[Any]) -> Graph:
        outs = [self.to_atom(o, None) for o in outputs]
        inputs = self.inputs + [v for v, _ in self.captured.values()]
        return Graph(inputs, self.eqns, outs)


def _scalar_dtype(prim, args) -> np.dtype | None:
    """Dtype that Python scalars take in a primitive: the dtype of its array operands."""
    candidates = args[1:] if prim.kind == "select" else args
    for a in candidates:
        if isinstance(a, (Tracer, Literal, np.ndarray, np.generic)):
            return a.dtype
    return None


@contextlib.contextmanager
def new_trace():
    stack = _TRACE_STACK.traces
    trace = Trace(len(stack))
    stack.append(trace)
    try:
        yield trace
    finally:
        stack.pop()


def is_tracer(x: Any) -> bool:
    return isinstance(x, Tracer)


def trace(fn: Callable, avals: list[Aval]) -> tuple[Graph, Any]:
    """Trace `fn(*tracers)` on tracers with these avals: (graph, output treedef).

    `fn` takes flat tracers and returns a pytree; the graph's outputs are its leaves, and
    tracers of enclosing traces it closed over become extra inputs after the arguments.
    """
    with new_trace() as t:
        out = fn(*[t.new_arg(a) for a in avals])
        out_leaves, out_tree = pytree.flatten(out)
        graph = t.graph(out_leaves)
        graph.captured = [tracer for _, tracer in t.captured.values()]
    return graph, out_tree


def concrete_error(what: str) -> TracerBoolError:
    return user_error(TracerBoolError, f"a traced value was used as {what}; its value is not "
                      "known while tracing.", _CONCRETE_FIX)


class Tracer:
    """An array under tracing: an atom of the trace's graph, with NumPy-like methods."""

    __slots__ = ("_trace", "atom")
    __array_priority__ = 1000

    def __init__(self, trace: Trace, atom: Atom) -> None:
        self._trace = trace
        self.atom = atom

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
        return f"Tracer<{self.aval}>"

    def __iter__(self):
        return (self[i] for i in range(len(self)))

    # --- concrete values are not available ---
    def __bool__(self):
        raise concrete_error("a Python bool (an `if`, `while`, `and`/`or` or `bool()`)")

    def __float__(self):
        raise concrete_error("a Python float (`float()`)")

    def __int__(self):
        raise concrete_error("a Python int (`int()`)")

    def __index__(self):
        raise concrete_error("an index (`range()`, a slice bound or list index)")

    def __complex__(self):
        raise concrete_error("a Python complex")

    def __array__(self, dtype=None, copy=None):
        raise concrete_error("a concrete NumPy array (np.asarray/np.array or a NumPy function "
                             "tracejit does not know)")

    __hash__ = object.__hash__

    # --- NumPy protocols ---
    def __array_ufunc__(self, ufunc, method, *inputs, **kwargs):
        from . import numpy as tnp
        return tnp.apply_ufunc(ufunc, method, inputs, kwargs)

    def __array_function__(self, func, types, args, kwargs):
        from . import numpy as tnp
        return tnp.apply_function(func, args, kwargs)


def _install_operators() -> None:
    """Python operators on tracers call the tracejit.numpy function of the same meaning."""
    from . import numpy as tnp
    binary = {"add": tnp.add, "sub": tnp.subtract, "mul": tnp.multiply,
              "truediv": tnp.divide, "pow": tnp.power, "matmul": tnp.matmul,
              "and": tnp.logical_and, "or": tnp.logical_or, "xor": tnp.logical_xor,
              "floordiv": tnp.floor_divide, "mod": tnp.mod}
    for name, fn in binary.items():
        setattr(Tracer, f"__{name}__", lambda a, b, fn=fn: fn(a, b))
        setattr(Tracer, f"__r{name}__", lambda a, b, fn=fn: fn(b, a))
    compare = {"lt": tnp.less, "le": tnp.less_equal, "gt": tnp.greater,
               "ge": tnp.greater_equal, "eq": tnp.equal, "ne": tnp.not_equal}
    for name, fn in compare.items():
        setattr(Tracer, f"__{name}__", lambda a, b, fn=fn: fn(a, b))
    Tracer.__neg__ = lambda a: tnp.negative(a)
    Tracer.__pos__ = lambda a: a
    Tracer.__abs__ = lambda a: tnp.abs(a)
    Tracer.__invert__ = lambda a: tnp.logical_not(a)
    Tracer.__getitem__ = lambda a, idx: tnp.getitem(a, idx)
    Tracer.T = property(lambda a: tnp.transpose(a))
    for name in ("sum", "mean", "max", "min", "prod", "var", "std", "argmax", "argmin",
                 "reshape", "transpose", "squeeze", "astype", "clip", "ravel", "flatten",
                 "swapaxes", "dot", "round"):
        fn = getattr(tnp, name)
        setattr(Tracer, name, lambda a, *args, fn=fn, **kw: fn(a, *args, **kw))


def unsupported(name: str, fix: str | None = None) -> UnsupportedError:
    return user_error(UnsupportedError, f"{name} is not supported inside a tracejit function.",
                      fix or "express it with supported operations (README: 'Supported "
                      "operations') or compute it outside the traced function and pass the "
                      "result in as an argument.")
