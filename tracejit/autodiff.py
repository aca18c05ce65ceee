"""Reverse-mode autodiff: forward Graph -> one joint Graph of values and gradients.

The forward equations are replayed into a new trace, then each equation's VJP rule is
called from the last to the first. Rules are written in primitives, so the joint graph is
itself an ordinary graph (and differentiable again). A cotangent that is None is a symbolic
zero: nothing is emitted for it, and an input no cotangent reaches is reported unconnected.

NaN-safe where: a primitive that routes its cotangent to one input or another (select, i.e.
np.where; maximum; minimum) declares per input a mask of where that input's cotangent can be
nonzero (its `masks` field). The mask travels with the cotangent back through elementwise
equations, each of which selects its result with it, so the unselected branch's backward pass
gives exact zeros: no 0 * inf and no 0 * nan from a branch whose value was never used. What
the selected branch really produces (NaN included) still propagates.
"""
from __future__ import annotations

import numpy as np

from . import errors
from .ir import Aval, Graph, Literal, Var, store_outputs
from .primitives import ELEMENTWISE, is_float
from .primitives.elementwise import and_p, or_p, select_p
from .primitives.layout import reshape_p
from .primitives.reductions import reduce_max_p, reduce_sum_p
from .tracing import Tracer, new_trace


def _sum_axes(shape: tuple[int, ...], aval: Aval) -> tuple[int, ...]:
    """Axes of a value of `shape` along which an input of `aval` was broadcast."""
    lead = len(shape) - aval.ndim
    return tuple(range(max(lead, 0))) + tuple(
        lead + i for i, d in enumerate(aval.shape)
        if d == 1 and 0 <= lead + i < len(shape) and shape[lead + i] != 1)


def unbroadcast(ct, aval: Aval):
    """Sum a cotangent over the axes along which its input was broadcast (NumPy rules)."""
    if ct.shape == aval.shape:
        return ct
    axes = _sum_axes(ct.shape, aval)
    out = reduce_sum_p.bind(ct, axes=axes) if axes else ct
    return reshape_p.bind(out, shape=aval.shape) if out.shape != aval.shape else out


def _mask_for(mask, aval: Aval):
    """A bool mask over a broadcast value, as a mask broadcastable to `aval`: true where
    any broadcast copy of the element is true."""
    axes = _sum_axes(mask.shape, aval)
    if axes:
        mask = reduce_max_p.bind(mask, axes=axes)
    lead = mask.ndim - aval.ndim
    return reshape_p.bind(mask, shape=mask.shape[lead:]) if lead > 0 else mask


def _active_vars(graph: Graph, wrt: list[int]) -> set[int]:
    """Ids of float vars that depend on the inputs in `wrt` through differentiable edges."""
    active = {graph.inputs[i].id for i in wrt}
    for eqn in graph.eqns:
        if eqn.prim.vjp is None or eqn.prim.erase_after_autodiff:
            continue
        if any(isinstance(a, Var) and a.id in active for a in eqn.inputs):
            active.update(v.id for v in eqn.outputs if is_float(v.aval.dtype))
    return active


def vjp_graph(graph: Graph, wrt: list[int], seeds: bool = False) -> tuple[Graph, list[bool]]:
    """Joint graph with outputs `graph.outputs + gradients of outputs[0] w.r.t. inputs[wrt]`.

    outputs[0] must be a float scalar (the loss). Returns the graph and, per `wrt` input,
    whether any gradient reaches it; only connected gradients are outputs of the graph.
    With `seeds` (tj.vjp: any outputs), the joint graph takes one more input per output,
    after the graph's own: that output's cotangent, and the gradients are those of
    sum_i <outputs[i], cotangent_i>.
    """
    active = _active_vars(graph, wrt)
    with new_trace() as t:
        # 1. forward: replay every equation, keeping the user's source lines
        args = [t.new_arg(var.aval) for var in graph.inputs]
        seed_args = [t.new_arg(o.aval) for o in graph.outputs] if seeds else None
        outs = graph.outputs if seeds else graph.outputs[:1]
        env, residuals = replay(graph, args, active, reaching(graph, outs))

        def read(atom):
            if isinstance(atom, Literal):
                return Tracer(t, atom)
            v = env[atom.id]
            return v if isinstance(v, Tracer) else Tracer(t, Literal.of(v))

        # 2. backward: cotangents from the loss down to the inputs
        prev = errors.replaying(None)
        try:
            cts = backward(graph, active, read, seed_args, residuals)
        finally:
            errors.replaying(prev)
        grads = [cts.get(graph.inputs[i].id) for i in wrt]
        outs = [read(o) for o in graph.outputs] + [g for g in grads if g is not None]
        joint = t.graph(outs)
    return joint, [g is not None for g in grads]


def reaching(graph: Graph, outs: list) -> set[int]:
    """Ids of the vars that `outs` depend on through differentiable edges (the values whose
    cotangent can be nonzero)."""
    reach = {o.id for o in outs if isinstance(o, Var)}
    for eqn in reversed(graph.eqns):
        if eqn.prim.vjp is None or eqn.prim.erase_after_autodiff:
            continue
        if any(v.id in reach for v in eqn.outputs):
            reach.update(a.id for a in eqn.inputs if isinstance(a, Var))
    return reach


def replay(graph: Graph, args: list, active: set[int], reach: set[int]) -> tuple[dict, dict]:
    """The forward pass on tracers `args`: (values by var id, residuals by equation id).
    An equation whose primitive splits its VJP (`vjp_fwd`, a loop) and that has active
    inputs and wanted outputs runs its forward half instead, which keeps residuals."""
    env: dict[int, object] = {v.id: a for v, a in zip(graph.inputs, args)}
    residuals: dict[int, object] = {}
    outer = errors.replaying(None)
    try:
        for eqn in graph.eqns:
            errors.replaying(eqn.where or outer)
            vals = [a.val if isinstance(a, Literal) else env[a.id] for a in eqn.inputs]
            act = [isinstance(a, Var) and a.id in active for a in eqn.inputs]
            want = [v.id in active and v.id in reach for v in eqn.outputs]
            if eqn.prim.vjp_fwd is not None and any(act) and any(want):
                outs, residuals[id(eqn)] = eqn.prim.vjp_fwd(act, want, *vals, **eqn.params)
                store_outputs(env, eqn, outs)  # (vjp_fwd belongs to multi-result loops)
            else:
                store_outputs(env, eqn, eqn.prim.bind(*vals, **eqn.params))
    finally:
        errors.replaying(outer)
    return env, residuals


def backward(graph: Graph, active: set[int], read, seeds=None, residuals=None
             ) -> dict[int, Tracer]:
    """Cotangents of the active vars, walking the equations from the loss (or from every
    output, given `seeds`) back. `masks[id]` (when present) is where a cotangent can be
    nonzero; it is exactly zero elsewhere. `residuals` are replay's."""
    cts: dict[int, Tracer] = {}
    masks: dict[int, Tracer] = {}
    outs = graph.outputs if seeds else graph.outputs[:1]
    for out, seed in zip(outs, seeds or [None]):
        if isinstance(out, Var) and out.id in active:
            seed = read(Literal.of(1, out.aval.dtype)) if seed is None else seed
            _accumulate(cts, masks, out, seed, None)
    for eqn in reversed(graph.eqns):
        if not any(v.id in cts for v in eqn.outputs):
            continue
        errors.replaying(eqn.where)
        if eqn.prim.multiple_results:  # a loop: cotangents of all its outputs (None: zero)
            gs = [cts.pop(v.id, None) for v in eqn.outputs]
            for v in eqn.outputs:
                masks.pop(v.id, None)
            g_mask = None
            if residuals is not None and id(eqn) in residuals:
                in_cts = eqn.prim.vjp(gs, residuals[id(eqn)])
            else:
                in_cts = eqn.prim.vjp(gs, [read(v) for v in eqn.outputs],
                                      *map(read, eqn.inputs), **eqn.params)
            declared = [None] * len(in_cts)
        else:
            out = eqn.outputs[0].id
            g, g_mask = cts.pop(out), masks.pop(out, None)
            args = (g, read(eqn.outputs[0]), *map(read, eqn.inputs))
            in_cts = eqn.prim.vjp(*args, **eqn.params)
            declared = eqn.prim.masks(*args) if eqn.prim.masks else [None] * len(in_cts)
        elementwise = eqn.prim.kind in ELEMENTWISE
        for atom, ct, own in zip(eqn.inputs, in_cts, declared):
            if ct is None or isinstance(atom, Literal) or atom.id not in active:
                continue
            mask = own
            if elementwise and g_mask is not None:
                ct = select_p.bind(g_mask, ct, 0)  # the masked-out lanes are exact zeros
                mask = g_mask if mask is None else and_p.bind(g_mask, mask)
            _accumulate(cts, masks, atom, unbroadcast(ct, atom.aval),
                        None if mask is None else _mask_for(mask, atom.aval))
    return cts


def _accumulate(cts: dict, masks: dict, atom: Var, ct, mask) -> None:
    """Add a cotangent contribution; the sum is masked only if every term is."""
    if atom.id not in cts:
        cts[atom.id] = ct
        if mask is not None:
            masks[atom.id] = mask
        return
    cts[atom.id] = cts[atom.id] + ct
    prev = masks.pop(atom.id, None)
    if prev is not None and mask is not None:
        masks[atom.id] = or_p.bind(prev, mask)


def zeros_for(aval: Aval) -> np.ndarray:
    return np.zeros(aval.shape, aval.dtype)
