"""The NumPy reference: evaluates any graph with each primitive's `impl`. It is what every
compiled backend is tested against, never the fast path."""
from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from ..fusion import Plan
from ..ir import Graph, eval_graph


def run_graph(graph: Graph, args: Sequence[Any]) -> list[np.ndarray]:
    """`graph` on concrete arrays: each primitive's NumPy `impl`, via the one `eval_graph`."""
    with np.errstate(all="ignore"):  # inf and nan propagate silently, as in compiled code
        return eval_graph(graph, [np.asarray(a) for a in args])


class Executable:
    """A graph run by the interpreter: the same call signature as compiled executables."""

    def __init__(self, graph: Graph) -> None:
        self.graph = graph

    def __call__(self, *args: Any) -> list[np.ndarray]:
        return run_graph(self.graph, args)


def compile(plan: Plan, **options) -> Executable:
    """The reference needs no kernels: it runs the plan's graph equation by equation."""
    return Executable(plan.graph)
