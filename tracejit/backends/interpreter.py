"""The NumPy reference: evaluates any graph with each primitive's `impl`. It is what every
compiled backend is tested against, never the fast path."""
from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from ..ir import Graph, Literal


def eval_graph(graph: Graph, args: Sequence[Any]) -> list[np.ndarray]:
    env: dict[int, Any] = {v.id: np.asarray(a) for v, a in zip(graph.inputs, args)}

    def read(atom):
        return atom.val if isinstance(atom, Literal) else env[atom.id]

    with np.errstate(all="ignore"):  # inf and nan propagate silently, as in compiled code
        for eqn in graph.eqns:
            outs = eqn.prim.impl(*map(read, eqn.inputs), **eqn.params)
            outs = outs if eqn.prim.multiple_results else [outs]
            for var, val in zip(eqn.outputs, outs):
                env[var.id] = np.asarray(val, dtype=var.aval.dtype).reshape(var.aval.shape)
    return [read(o) for o in graph.outputs]


class Executable:
    """A graph run by the interpreter: the same call signature as compiled executables."""

    def __init__(self, graph: Graph) -> None:
        self.graph = graph

    def __call__(self, *args: Any) -> list[np.ndarray]:
        return eval_graph(self.graph, args)


def compile(graph: Graph, **options) -> Executable:
    return Executable(graph)
