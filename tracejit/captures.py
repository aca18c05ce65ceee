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
    """Where a captured value lives: a closure cell (`holder`), or `holder[key]` of a dict
    (globals, an object's __dict__, a user's dict) or a list/tuple; `name` says where."""
    kind: str  # "cell" | "item"
    holder: Any
    key: Any
    name: str

    def read(self) -> Any:
        """The value now (_MISSING if the name was deleted)."""
        try:
            return self.holder.cell_contents if self.kind == "cell" else self.holder[self.key]
        except (ValueError, KeyError, IndexError):
            return _MISSING


@dataclass
class Scan:
    """Values a function can read: `arrays` (id -> (array, Source)) may be lifted; `guards`
    ((Source, value) pairs) must still hold for a compiled trace to be used."""
    arrays: dict[int, tuple[np.ndarray, Source]] = field(default_factory=dict)
    scalars: list[tuple[Source, Any]] = field(default_factory=list)


_MISSING = object()


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
        source = Source("cell", cell, None, name)
        _record(source.read(), source, out, seen, depth)
    g = fn.__globals__
    for name in sorted(_code_names(code)):
        if name in g:
            _record(g[name], Source("item", g, name, name), out, seen, depth)


def _attributes(obj: Any, method: types.FunctionType, out: Scan, seen: set[int],
                depth: int) -> None:
    """The attributes of `self` that `method`'s code names (self.W, self.scale, ...)."""
    attrs = getattr(obj, "__dict__", None)
    if not isinstance(attrs, dict):
        return
    for name in sorted(_code_names(method.__code__) & set(attrs)):
        _record(attrs[name], Source("item", attrs, name, f"self.{name}"), out, seen, depth)


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
            _record(v, Source("item", value, k, f"{source.name}[{k!r}]"), out, seen, depth,
                    inside=True)
    elif isinstance(value, (list, tuple)) and len(value) <= _MAX_ITEMS:
        for i, v in enumerate(value):
            _record(v, Source("item", value, i, f"{source.name}[{i}]"), out, seen, depth,
                    inside=True)
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

    `lifted`: (Source, dtype, shape) of the arrays the graph takes as implicit inputs;
    `constants`: (Source, array) of arrays the trace used as constants (identity must
    hold); `scalars`: (Source, value) pairs that must still hold. `inputs()` is generated
    straight-line code: it runs on every call of a function with captured values.
    """

    def __init__(self, lifted: list[tuple[Source, np.dtype, tuple]],
                 constants: list[tuple[Source, np.ndarray]],
                 scalars: list[tuple[Source, Any]]) -> None:
        self.lifted, self.constants, self.scalars = lifted, constants, scalars
        self.inputs = self._generate()

    def __bool__(self) -> bool:
        return bool(self.lifted or self.constants or self.scalars)

    def _generate(self) -> Callable[[], list | None]:
        """def inputs(): read every source, check it, return the lifted arrays or None."""
        env: dict[str, Any] = {"ndarray": np.ndarray, "same": _same_scalar}
        lines = ["def inputs():", "    try:", "        pass"]

        def read(src: Source) -> str:
            h = f"h{len(env)}"
            env[h] = src.holder
            if src.kind == "cell":
                return f"{h}.cell_contents"
            k = f"k{len(env)}"
            env[k] = src.key
            return f"{h}[{k}]"

        for src, value in self.scalars:
            v = f"v{len(env)}"
            env[v] = value
            lines.append(f"        if not same({read(src)}, {v}): return None")
        for src, obj in self.constants:
            o = f"o{len(env)}"
            env[o] = obj
            lines.append(f"        if {read(src)} is not {o}: return None")
        outs = []
        for i, (src, dtype, shape) in enumerate(self.lifted):
            d, s = f"d{len(env)}", f"s{len(env) + 1}"
            env[d], env[s] = dtype, shape
            check = (f"        if type(x{i}) is not ndarray or x{i}.shape != {s} or "
                     f"x{i}.dtype != {d}: return None")
            lines += [f"        x{i} = {read(src)}", check]
            outs.append(f"x{i}")
        lines += ["    except (ValueError, KeyError, IndexError):  # a deleted name",
                  "        return None", f"    return [{', '.join(outs)}]"]
        exec(compile("\n".join(lines), "<tracejit captured-value guard>", "exec"), env)  # noqa: S102
        return env["inputs"]


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
