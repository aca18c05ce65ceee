"""Reverse-mode autodiff: forward Graph -> one joint Graph of values and gradients.

The forward equations are replayed into a new trace, then each equation's VJP rule is
called from the last to the first. Rules are written in primitives, so the joint graph is
itself an ordinary graph (and differentiable again). A cotangent that is None is a symbolic
zero: nothing is emitted for it, and an input no cotangent reaches is reported unconnected.
"""
from __future__ import annotations

import numpy as np

from . import errors
from .ir import Aval, Graph, Literal, Var, eval_graph
from .primitives import is_float
from .primitives.layout import reshape_p
from .primitives.reductions import reduce_sum_p
from .tracing import Tracer, new_trace


def unbroadcast(ct, aval: Aval):
    """Sum a cotangent over the axes along which its input was broadcast (NumPy rules)."""
    if ct.shape == aval.shape:
        return ct
    lead = ct.ndim - aval.ndim
    axes = tuple(range(lead)) + tuple(lead + i for i, d in enumerate(aval.shape)
                                      if d == 1 and ct.shape[lead + i] != 1)
    out = reduce_sum_p.bind(ct, axes=axes) if axes else ct
    return reshape_p.bind(out, shape=aval.shape) if out.shape != aval.shape else out


def _active_vars(graph: Graph, wrt: list[int]) -> set[int]:
    """Ids of float vars that depend on the inputs in `wrt` through differentiable edges."""
    active = {graph.inputs[i].id for i in wrt}
    for eqn in graph.eqns:
        if eqn.prim.vjp is None or eqn.prim.erase_after_autodiff:
            continue
        if any(isinstance(a, Var) and a.id in active for a in eqn.inputs):
            active.update(v.id for v in eqn.outputs if is_float(v.aval.dtype))
    return active


def vjp_graph(graph: Graph, wrt: list[int]) -> tuple[Graph, list[bool]]:
    """Joint graph with outputs `graph.outputs + gradients of outputs[0] w.r.t. inputs[wrt]`.

    outputs[0] must be a float scalar (the loss). Returns the graph and, per `wrt` input,
    whether any gradient reaches it; only connected gradients are outputs of the graph.
    """
    active = _active_vars(graph, wrt)
    with new_trace() as t:
        # 1. forward: replay every equation, keeping the user's source lines
        args = [t.new_arg(var.aval) for var in graph.inputs]
        env = dict(zip((v.id for v in graph.inputs), args))
        forward = eval_graph(Graph(graph.inputs, graph.eqns, [o for e in graph.eqns
                                                               for o in e.outputs]), args)
        env.update(zip((o.id for e in graph.eqns for o in e.outputs), forward))

        def read(atom):
            if isinstance(atom, Literal):
                return Tracer(t, atom)
            v = env[atom.id]
            return v if isinstance(v, Tracer) else Tracer(t, Literal.of(v))

        # 2. backward: cotangents from the loss down to the inputs
        prev = errors.replaying(None)
        try:
            cts = _backward(graph, active, read)
        finally:
            errors.replaying(prev)
        grads = [cts.get(graph.inputs[i].id) for i in wrt]
        outs = [read(o) for o in graph.outputs] + [g for g in grads if g is not None]
        joint = t.graph(outs)
    return joint, [g is not None for g in grads]


def _backward(graph: Graph, active: set[int], read) -> dict[int, Tracer]:
    """Cotangents of the active vars, walking the equations from the loss back."""
    loss = graph.outputs[0]
    cts: dict[int, Tracer] = {}
    if isinstance(loss, Var) and loss.id in active:
        cts[loss.id] = read(Literal.of(1, loss.aval.dtype))
    for eqn in reversed(graph.eqns):
        if eqn.outputs[0].id not in cts:
            continue
        errors.replaying(eqn.where)
        g = cts.pop(eqn.outputs[0].id)
        in_cts = eqn.prim.vjp(g, read(eqn.outputs[0]), *map(read, eqn.inputs), **eqn.params)
        for atom, ct in zip(eqn.inputs, in_cts):
            if ct is None or isinstance(atom, Literal) or atom.id not in active:
                continue
            ct = unbroadcast(ct, atom.aval)
            prev = cts.get(atom.id)
            cts[atom.id] = ct if prev is None else prev + ct
    return cts


def zeros_for(aval: Aval) -> np.ndarray:
    return np.zeros(aval.shape, aval.dtype)
