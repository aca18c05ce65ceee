"""Captured values: what a traced function reads from closures, globals and `self`.

A compiled function must never use yesterday's data. Before tracing, `scan(fn)` finds the
values `fn` can read without taking them as arguments: its closure cells, the globals its
code names, the attributes of `self` for a bound method or callable object, one level into
dicts, lists and tuples found there, and the same for the plain functions it refers to.

- An array among them that meets a traced value is *lifted*: it becomes an implicit input of
  the graph, read again from where it came from at every call. In-place edits and
  rebinding (`X = next_batch`) are both seen; a new dtype or shape traces again.
- Every other value found is *guarded*: a Python scalar (or string) by value, an array by
  identity. A call whose guard fails traces again (as torch.compile guards do).

What cannot be seen: an array reached by another route (an attribute of an attribute, a
module other than the function's own globals) is a constant of the trace, and in-place
edits of an array used only in NumPy computations that involve no traced value (computed
once, while tracing) are not noticed.
"""
from __future__ import annotations

import functools
import math
import types
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np

_SCALARS = (bool, int, float, complex, str, np.generic)
_MAX_ITEMS = 64  # containers larger than this are not looked into
_MAX_DEPTH = 3   # functions calling functions calling functions


@dataclass(eq=False)
class Source:
    """Where a captured value lives: `read()` gives its value now; `name` says where."""
    read: Callable[[], Any]
    name: str


@dataclass
class Scan:
    """Values a function can read: `arrays` (id -> (array, Source)) may be lifted; `guards`
    ((Source, value) pairs) must still hold for a compiled trace to be used."""
    arrays: dict[int, tuple[np.ndarray, Source]] = field(default_factory=dict)
    scalars: list[tuple[Source, Any]] = field(default_factory=list)


_MISSING = object()


def _cell_reader(cell) -> Callable[[], Any]:
    def read():
        try:
            return cell.cell_contents
        except ValueError:  # an empty cell (the name was deleted)
            return _MISSING
    return read


def _code_names(code: types.CodeType) -> set[str]:
    """Global names a code object (and the code objects nested in it) may read."""
    names = set(code.co_names)
    for const in code.co_consts:
        if isinstance(const, types.CodeType):
            names |= _code_names(const)
    return names


def scan(fn: Callable) -> Scan:
    """The captured values of `fn` (see the module docstring)."""
    out = Scan()
    _visit(fn, out, set(), _MAX_DEPTH)
    return out


def _visit(fn: Any, out: Scan, seen: set[int], depth: int) -> None:
    if id(fn) in seen or depth < 0:
        return
    seen.add(id(fn))
    if isinstance(fn, functools.partial):
        _visit(fn.func, out, seen, depth)
        return
    if isinstance(fn, types.MethodType):
        _attributes(fn.__self__, fn.__func__, out, seen, depth)
        fn = fn.__func__
    elif not isinstance(fn, types.FunctionType) and isinstance(
            getattr(type(fn), "__call__", None), types.FunctionType):  # noqa: B004
        call = type(fn).__call__  # a callable object: its __call__ and attributes
        _attributes(fn, call, out, seen, depth)
        fn = call
    inner = getattr(fn, "fn", None)  # a tracejit-transformed function: look at its function
    if isinstance(inner, types.FunctionType) and not isinstance(fn, types.FunctionType):
        fn = inner
    if not isinstance(fn, types.FunctionType):
        return
    code = fn.__code__
    for name, cell in zip(code.co_freevars, fn.__closure__ or ()):
        read = _cell_reader(cell)
        _record(read(), Source(read, name), out, seen, depth)
    g = fn.__globals__
    for name in sorted(_code_names(code)):
        if name in g:
            _record(g[name], Source(lambda g=g, name=name: g.get(name, _MISSING), name),
                    out, seen, depth)


def _attributes(obj: Any, method: types.FunctionType, out: Scan, seen: set[int],
                depth: int) -> None:
    """The attributes of `self` that `method`'s code names (self.W, self.scale, ...)."""
    attrs = getattr(obj, "__dict__", None)
    if not isinstance(attrs, dict):
        return
    for name in sorted(_code_names(method.__code__) & set(attrs)):
        _record(attrs[name], Source(lambda a=attrs, n=name: a.get(n, _MISSING),
                                    f"self.{name}"), out, seen, depth)


def _record(value: Any, source: Source, out: Scan, seen: set[int], depth: int,
            inside: bool = False) -> None:
    if type(value) is np.ndarray:
        out.arrays.setdefault(id(value), (value, source))
    elif isinstance(value, _SCALARS):
        out.scalars.append((source, value))
    elif inside:
        return
    elif isinstance(value, dict) and len(value) <= _MAX_ITEMS:
        for k, v in list(value.items()):
            _record(v, Source(lambda c=value, k=k: c.get(k, _MISSING), f"{source.name}[{k!r}]"),
                    out, seen, depth, inside=True)
    elif isinstance(value, (list, tuple)) and len(value) <= _MAX_ITEMS:
        for i, v in enumerate(value):
            _record(v, Source(lambda c=value, i=i: c[i] if i < len(c) else _MISSING,
                              f"{source.name}[{i}]"), out, seen, depth, inside=True)
    elif isinstance(value, (types.FunctionType, types.MethodType, functools.partial)):
        _visit(value, out, seen, depth - 1)


def _same_scalar(a: Any, b: Any) -> bool:
    if type(a) is not type(b):
        return False
    if isinstance(a, (float, np.floating)) and math.isnan(a):
        return math.isnan(b)
    return bool(a == b)


class Guard:
    """Reads a compiled trace's implicit inputs at call time, or says the trace is stale.

    `lifted`: the Sources of the arrays the graph takes as implicit inputs, with the dtype
    and shape it was traced for; `constants`: Sources of arrays the trace used as constants
    (identity must hold); `scalars`: (Source, value) pairs that must still hold.
    """

    __slots__ = ("constants", "lifted", "scalars")

    def __init__(self, lifted: list[tuple[Source, np.dtype, tuple]],
                 constants: list[tuple[Source, np.ndarray]],
                 scalars: list[tuple[Source, Any]]) -> None:
        self.lifted, self.constants, self.scalars = lifted, constants, scalars

    def __bool__(self) -> bool:
        return bool(self.lifted or self.constants or self.scalars)

    def inputs(self) -> list | None:
        """The implicit inputs now, or None if a guard fails (trace again)."""
        for source, value in self.scalars:
            if not _same_scalar(source.read(), value):
                return None
        for source, obj in self.constants:
            if source.read() is not obj:
                return None
        arrays = []
        for source, dtype, shape in self.lifted:
            x = source.read()
            if type(x) is not np.ndarray or x.dtype != dtype or x.shape != shape:
                return None
            arrays.append(x)
        return arrays


def guard_for(found: Scan, lifted: list[Source]) -> Guard:
    """The guard of a trace that lifted `lifted` (in input order) out of what `scan` found."""
    arrays = {id(src): (arr, src) for arr, src in found.arrays.values()}
    lifted_ids = {id(s) for s in lifted}
    lifted_specs = []
    for src in lifted:
        arr, _ = arrays.get(id(src), (None, src))
        x = src.read() if arr is None else arr
        lifted_specs.append((src, x.dtype, x.shape))
    constants = [(src, arr) for arr, src in found.arrays.values() if id(src) not in lifted_ids]
    return Guard(lifted_specs, constants, list(found.scalars))
