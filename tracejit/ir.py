"""The IR: a Graph is a list of equations in SSA order over typed variables.

Printed one equation per line, JAX style: `c:f32[n] = mul a b`.
"""
from __future__ import annotations

import itertools
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from . import errors

_SHORT = {"float32": "f32", "float64": "f64", "float16": "f16", "int64": "i64", "int32": "i32",
          "int16": "i16", "int8": "i8", "uint8": "u8", "bool": "bool", "uint32": "u32",
          "uint64": "u64", "uint16": "u16"}


@dataclass(frozen=True, slots=True)
class Aval:
    """Abstract value: what is known about an array at trace time."""
    shape: tuple[int, ...]
    dtype: np.dtype

    @property
    def ndim(self) -> int:
        return len(self.shape)

    @property
    def size(self) -> int:
        return int(np.prod(self.shape, dtype=np.int64))

    def __str__(self) -> str:
        name = _SHORT.get(self.dtype.name, self.dtype.name)
        return f"{name}[{','.join(map(str, self.shape))}]"


def aval_of(x: Any) -> Aval:
    arr = np.asarray(x)
    return Aval(tuple(arr.shape), arr.dtype)


_ids = itertools.count()


@dataclass(frozen=True, slots=True, eq=False)
class Var:
    """An SSA variable; identity is the object itself."""
    aval: Aval
    id: int = field(default_factory=lambda: next(_ids))


@dataclass(frozen=True, slots=True, eq=False)
class Literal:
    """A constant operand: a scalar, or an array captured from the user's closure."""
    val: np.ndarray
    aval: Aval

    @staticmethod
    def of(value: Any, dtype: Any = None) -> Literal:
        arr = np.asarray(value, dtype=dtype)
        if arr.ndim:  # an array constant is copied so later changes by the caller don't leak in
            arr = arr.copy()
            arr.flags.writeable = False
        return Literal(arr, Aval(tuple(arr.shape), arr.dtype))

    @property
    def is_scalar(self) -> bool:
        return self.val.ndim == 0

    shape = property(lambda self: self.aval.shape)
    dtype = property(lambda self: self.aval.dtype)
    ndim = property(lambda self: self.aval.ndim)


Atom = Var | Literal


@dataclass(frozen=True, slots=True, eq=False)
class Eqn:
    """outputs = prim[params](*inputs); `where` is the user's (file, line, function)."""
    prim: Any  # tracejit.primitives.Primitive
    inputs: tuple[Atom, ...]
    params: dict
    outputs: tuple[Var, ...]
    where: tuple[str, int, str] | None = None


@dataclass(eq=False)
class Graph:
    inputs: list[Var]
    eqns: list[Eqn]
    outputs: list[Atom]
    # tracers of an enclosing trace that the last inputs stand for (nested transformations)
    captured: list = field(default_factory=list)
    # sources of the captured arrays that the inputs after `captured` stand for
    lifted: list = field(default_factory=list)
    in_avals: list = field(default_factory=list)
    # which outputs were weakly typed when traced (tracing.is_weak: a loop keeps a carry
    # started from a Python scalar weak while its body does)
    out_weak: list = field(default_factory=list)

    def __str__(self) -> str:
        return pretty(self)


class _Namer:
    """Short readable names a, b, ..., z, ba, bb, ... in order of first appearance."""

    def __init__(self) -> None:
        self.names: dict[int, str] = {}

    def __call__(self, atom: Atom) -> str:
        if isinstance(atom, Literal):
            if atom.is_scalar:
                return f"{atom.val.item()!r}:{str(atom.aval).split('[')[0]}"
            return f"const{atom.aval}"
        if atom.id not in self.names:
            n, s = len(self.names), ""
            while True:
                s = chr(ord("a") + n % 26) + s
                n //= 26
                if n == 0:
                    break
            self.names[atom.id] = s
        return self.names[atom.id]


def _fmt_param(v: Any) -> str:
    if isinstance(v, np.dtype):
        return v.name
    return str(v).replace(" ", "")


def _sub_graphs(v: Any) -> list[tuple[str, Graph]] | None:
    """A param's sub-graphs as (what follows the param's name, graph): a Graph (a loop's
    body: `body=`), a tuple of them (`branches[0]=`, ...), or a call's body (checkpoint,
    custom_vjp: its `graph`, `body=fn_name`); None for any other param."""
    if isinstance(v, Graph):
        return [("=", v)]
    if isinstance(v, tuple) and v and all(isinstance(b, Graph) for b in v):
        return [(f"[{i}]=", b) for i, b in enumerate(v)]
    if isinstance(getattr(v, "graph", None), Graph):
        return [(f"={v}", v.graph)]
    return None


def pretty(graph: Graph, name: _Namer | None = None, indent: str = "") -> str:
    """The listing; the sub-graphs of a loop, a branch or a call (checkpoint) print
    indented under its equation."""
    name = name or _Namer()
    ins = " ".join(f"{name(v)}:{v.aval}" for v in graph.inputs)
    lines = [f"{indent}{{ lambda {ins} ."]
    for e in graph.eqns:
        outs = " ".join(f"{name(v)}:{v.aval}" for v in e.outputs)
        subs = {k: g for k, g in ((k, _sub_graphs(v)) for k, v in e.params.items()) if g}
        params = ",".join(f"{k}={_fmt_param(v)}" for k, v in e.params.items()
                          if k not in subs)
        args = " ".join(name(a) for a in e.inputs)
        lines.append(f"{indent}    {outs} = {e.prim.name}{f'[{params}]' if params else ''} "
                     f"{args}")
        for k, graphs in subs.items():
            for label, g in graphs:
                lines.append(f"{indent}      {k}{label}")
                lines.append(pretty(g, name, indent + "        "))
    lines.append(f"{indent}  in ( {', '.join(name(v) for v in graph.outputs)} ) }}")
    return "\n".join(lines)


def check_graph(graph: Graph) -> None:
    """Assert SSA order and that every equation's outputs match its shape rule."""
    defined = {v.id for v in graph.inputs}
    for e in graph.eqns:
        for a in e.inputs:
            assert isinstance(a, Literal) or a.id in defined, f"{e.prim.name}: use before def"
        expected = e.prim.abstract_eval(*[a.aval for a in e.inputs], **e.params)
        got = [v.aval for v in e.outputs]
        assert expected == got, f"{e.prim.name}: avals {got} != rule {expected}"
        defined.update(v.id for v in e.outputs)
    for v in graph.outputs:
        assert isinstance(v, Literal) or v.id in defined, "output not defined"


def eval_graph(graph: Graph, args: Sequence[Any], literal=None) -> list[Any]:
    """Replay `graph` on `args` through each primitive's `bind`: concrete arrays run the NumPy
    reference (the interpreter), tracers record equations (autodiff, inlining, custom rules).
    Equations recorded on the way keep the user's source line of the one replayed.

    `literal(atom)`, when given, is what a literal operand becomes: inlining into a trace
    passes one that makes it a tracer of that trace, so an equation of constants alone (a
    broadcast of autodiff's seed 1.0) is recorded (a broadcast is indexing in a loop) rather
    than computed here into an array constant that a kernel would read from memory."""
    env: dict[int, Any] = {v.id: a for v, a in zip(graph.inputs, args)}

    def read(atom: Atom) -> Any:
        if isinstance(atom, Literal):
            return atom.val if literal is None else literal(atom)
        return env[atom.id]

    outer = errors.replaying(None)
    try:
        for eqn in graph.eqns:
            errors.replaying(eqn.where or outer)
            store_outputs(env, eqn, eqn.prim.bind(*map(read, eqn.inputs), **eqn.params))
    finally:
        errors.replaying(outer)
    return [read(o) for o in graph.outputs]


def store_outputs(env: dict, eqn, out) -> None:
    """Bind `eqn`'s result(s) to its output variables in `env`; a concrete value takes the
    variable's dtype and shape (NumPy may return a scalar or another dtype)."""
    outs = out if eqn.prim.multiple_results else (out,)
    for var, value in zip(eqn.outputs, outs, strict=True):
        if isinstance(value, (np.ndarray, np.generic, bool, int, float)):
            value = np.asarray(value, dtype=var.aval.dtype).reshape(var.aval.shape)
        env[var.id] = value
