"""Every primitive is declared once, by one `defprim` call that says everything about it:
its shape/dtype rule, its NumPy reference implementation, its VJP (written in primitives, so
the backward pass is itself traceable), and the scalar expression a backend emits for it.

Kinds: UNARY/BINARY/SELECT are elementwise; REDUCE reduces over `axes` keeping them as size-1
dims (keepdims=False is a reshape after it); LAYOUT moves data; CONTRACT is matmul.
"""
from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from ..ir import Aval, Literal

UNARY, BINARY, SELECT, REDUCE, LAYOUT, CONTRACT = (
    "unary", "binary", "select", "reduce", "layout", "contract")
ELEMENTWISE = (UNARY, BINARY, SELECT)

# where tests sample inputs for a primitive (name -> (low, high) and a rule)
ANY, POSITIVE, UNIT, NONZERO, GE1, SMOOTH = "any", "positive", "unit", "nonzero", "ge1", "smooth"


@dataclass(frozen=True)
class Reduce:
    """How a backend emits a reduction: start value and scalar combine step."""
    init: str      # e.g. "0", "-math.inf"
    combine: str   # e.g. "{acc} + {x}"


@dataclass(eq=False)
class Primitive:
    name: str
    kind: str
    shape: Callable[..., Aval | list[Aval]]
    impl: Callable[..., Any]
    vjp: Callable[..., tuple] | None = None
    emit: str | Reduce | None = None
    numpy: tuple[str, ...] = ()
    domain: str | None = None
    erase_after_autodiff: bool = False
    multiple_results: bool = False
    params: dict = field(default_factory=dict)  # param name -> example value, for tests

    def __repr__(self) -> str:
        return f"<primitive {self.name}>"

    def abstract_eval(self, *avals: Aval, **params) -> list[Aval]:
        out = self.shape(*avals, **params)
        return list(out) if isinstance(out, (list, tuple)) else [out]

    def bind(self, *args, **params):
        """Apply to tracers (records an equation) or to concrete arrays (runs `impl`)."""
        trace = _find_trace(args)
        if trace is not None:
            return trace.bind(self, args, params)
        vals = [a.val if isinstance(a, Literal) else a for a in args]
        return self.impl(*vals, **params)


REGISTRY: dict[str, Primitive] = {}


def defprim(name: str, kind: str, **fields) -> Primitive:
    assert name not in REGISTRY, f"primitive {name} declared twice"
    prim = Primitive(name, kind, **fields)
    REGISTRY[name] = prim
    return prim


def _find_trace(args):
    """The innermost trace among the arguments' tracers (duck-typed: tracers have `_trace`)."""
    best = None
    for a in args:
        t = getattr(a, "_trace", None)
        if t is not None and (best is None or t.level > best.level):
            best = t
    return best


def is_float(dtype: np.dtype) -> bool:
    return np.issubdtype(dtype, np.inexact)


from . import contraction, elementwise, layout, reductions  # noqa: F401  (fill REGISTRY)
