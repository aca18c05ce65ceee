"""Clean-up passes, each a pure Graph -> Graph rewrite: stop_gradient erasure, algebraic
simplification, gather sinking, common-subexpression elimination and dead-code
elimination."""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .ir import Atom, Aval, Eqn, Graph, Literal, Var
from .primitives import ELEMENTWISE, LAYOUT


def simplify(graph: Graph) -> Graph:
    """The pipeline run before fusion: erase, simplify, CSE, then DCE."""
    return dce(cse(sink_gathers(algebraic(erase_identities(inline_calls(graph))))))


@dataclass
class _Expansion:
    """A `_substitute` decision: emit these equations; the eqn's outputs become `outputs`."""
    eqns: list[Eqn]
    outputs: list[Atom]


def inline_calls(graph: Graph) -> Graph:
    """Replace each "call" equation (e.g. custom_vjp_call, which carries its sub-graph as
    params["body"].graph) by the sub-graph's equations, on fresh variables, recursively."""
    if not any(e.prim.kind == "call" for e in graph.eqns):
        return graph

    def expand(e: Eqn, inputs) -> _Expansion | None:
        if e.prim.kind != "call":
            return None
        body = inline_calls(e.params["body"].graph)
        inner: dict[int, Atom] = {v.id: a for v, a in zip(body.inputs, inputs)}
        eqns = []
        for b in body.eqns:
            ins = tuple(inner.get(a.id, a) if isinstance(a, Var) else a for a in b.inputs)
            outs = tuple(Var(v.aval) for v in b.outputs)
            inner.update((v.id, o) for v, o in zip(b.outputs, outs))
            eqns.append(Eqn(b.prim, ins, b.params, outs, b.where))
        return _Expansion(eqns, [inner.get(o.id, o) if isinstance(o, Var) else o
                                 for o in body.outputs])
    return _substitute(graph, expand)


def _substitute(graph: Graph, decide) -> Graph:
    """Walk equations; `decide(eqn, inputs)` returns an atom to replace the eqn's single
    output with, a tuple of new inputs, an _Expansion, or None to keep the (input-renamed)
    equation."""
    rename: dict[int, Atom] = {}

    def sub(a: Atom) -> Atom:
        return rename.get(a.id, a) if isinstance(a, Var) else a

    eqns = []
    for e in graph.eqns:
        inputs = tuple(map(sub, e.inputs))
        replacement = decide(e, inputs)
        if isinstance(replacement, _Expansion):
            eqns.extend(replacement.eqns)
            rename.update((v.id, o) for v, o in zip(e.outputs, replacement.outputs))
            continue
        if isinstance(replacement, tuple):  # new inputs for the same equation
            inputs, replacement = replacement, None
        if replacement is not None:
            rename[e.outputs[0].id] = replacement
        else:
            eqns.append(Eqn(e.prim, inputs, e.params, e.outputs, e.where)
                        if inputs != e.inputs else e)
    return Graph(graph.inputs, eqns, [sub(o) for o in graph.outputs])


def erase_identities(graph: Graph) -> Graph:
    """stop_gradient (and any primitive marked erase_after_autodiff) becomes its input."""
    return _substitute(graph, lambda e, ins: ins[0] if e.prim.erase_after_autodiff else None)


def _fold(e: Eqn, ins) -> Atom | None:
    """Equations on scalar (or size-1) literals only become a literal."""
    if e.prim.kind in ELEMENTWISE + (LAYOUT,) and ins and all(
            isinstance(a, Literal) and a.aval.size == 1 for a in ins):
        with np.errstate(all="ignore"):
            val = np.asarray(e.prim.impl(*[a.val for a in ins], **e.params))
        out = e.outputs[0].aval
        if val.size == 1:
            return Literal.of(val.astype(out.dtype).reshape(out.shape))
    return None


def _implicit_broadcasts(e: Eqn, ins, producers: dict[int, Eqn]) -> tuple:
    """Elementwise ops broadcast by themselves: feed them the input of a broadcasting
    equation (a primitive declared `broadcasts`), or a size-1 literal as a scalar, when the
    output shape stays the same; so do a primitive's `broadcast_inputs` (a scatter's
    updates), when the rank stays the same."""
    if e.prim.broadcast_inputs:
        ins = list(ins)
        for i in e.prim.broadcast_inputs:
            p = producers.get(ins[i].id) if isinstance(ins[i], Var) else None
            if p is not None and p.prim.broadcasts and p.inputs[0].aval.ndim == ins[i].aval.ndim:
                ins[i] = p.inputs[0]
        return tuple(ins)
    if e.prim.kind not in ELEMENTWISE:
        return ins
    out_shape = e.outputs[0].aval.shape
    ins = list(ins)
    for i, a in enumerate(ins):
        p = producers.get(a.id) if isinstance(a, Var) else None
        src = p.inputs[0] if p is not None and p.prim.broadcasts else a
        if isinstance(src, Literal) and src.aval.size == 1 and src.ndim:
            src = Literal.of(src.val.reshape(()))
        if src is a:
            continue
        shapes = [b.aval.shape for j, b in enumerate(ins) if j != i] + [src.aval.shape]
        if tuple(np.broadcast_shapes(*shapes)) == out_shape:
            ins[i] = src
    return tuple(ins)


def algebraic(graph: Graph) -> Graph:
    """Constant folding, implicit broadcasting, and each primitive's own `rewrite` rule
    (x*1, 1*x, x/1, x-0 -> x; neg(neg x) -> x; x+0 is kept: it turns -0.0 into +0.0)."""
    producers: dict[int, Eqn] = {}  # output id -> the (input-renamed) equation computing it

    def rule(e: Eqn, ins):
        ins = _implicit_broadcasts(e, ins, producers)
        out = _fold(e, ins)
        if out is None and e.prim.rewrite is not None:
            out = e.prim.rewrite(ins, e.outputs[0].aval, lambda a: producers.get(a.id)
                                 if isinstance(a, Var) else None)
        if out is None and len(e.outputs) == 1:
            producers[e.outputs[0].id] = Eqn(e.prim, ins, e.params, e.outputs, e.where)
        return out or ins
    return _substitute(graph, rule)


def sink_gathers(graph: Graph, depth: int = 4) -> Graph:
    """A loop-fused gather (a primitive with `load`: take_along) of an elementwise result
    reads the operands instead: take_along(z - m, idx) -> take_along(z, idx) - m when m is
    constant along the axis. The loop nest then reads the gathered elements from memory
    (`L[i, labels[i]]`) rather than needing the whole `z` computed first, so the row gather
    of cross-entropy joins the row loop. Up to `depth` elementwise levels are recomputed at
    the gathered positions only."""
    producer: dict[int, Eqn] = {}
    rename: dict[int, Atom] = {}
    eqns: list[Eqn] = []

    def sub(a: Atom) -> Atom:
        return rename.get(a.id, a) if isinstance(a, Var) else a

    for e in graph.eqns:
        ins = tuple(map(sub, e.inputs))
        if ins != e.inputs:
            e = Eqn(e.prim, ins, e.params, e.outputs, e.where)
        if e.prim.load is not None:
            made: list[Eqn] = []
            out = _sunk(e, ins[0], producer, made, depth)
            if out is not None:
                eqns.extend(made)
                rename[e.outputs[0].id] = out
                continue
        eqns.append(e)
        producer.update((v.id, e) for v in e.outputs)
    return Graph(graph.inputs, eqns, [sub(o) for o in graph.outputs])


def _sunk(e: Eqn, x: Atom, producer: dict, made: list, depth: int) -> Var | None:
    """The gather `e` applied to x's elementwise producer's operands (equations appended to
    `made`), or None where that does not apply."""
    from .primitives.layout import reshape_p
    p = producer.get(x.id) if isinstance(x, Var) else None
    idx = e.inputs[1]
    if p is None or p.prim.kind not in ELEMENTWISE or len(p.outputs) != 1 or depth == 0 or \
            not x.aval.ndim == idx.aval.ndim == e.outputs[0].aval.ndim:
        return None  # (only a rank-keeping gather: each output element reads one place)
    axis, r = e.params["axis"], x.aval.ndim
    new_ins = []
    for a in p.inputs:
        d = axis - (r - a.aval.ndim)
        if d < 0 or a.aval.shape[d] == 1:  # constant along the axis: used as it is
            new_ins.append(a)
            continue
        if a.aval.ndim < r:
            shape = (1,) * (r - a.aval.ndim) + a.aval.shape
            (aval,) = reshape_p.abstract_eval(a.aval, shape=shape)
            made.append(Eqn(reshape_p, (a,), {"shape": shape}, (Var(aval),), e.where))
            a = made[-1].outputs[0]
        (aval,) = e.prim.abstract_eval(a.aval, idx.aval, **e.params)
        g = Eqn(e.prim, (a, idx), e.params, (Var(aval),), e.where)
        inner = _sunk(g, a, producer, made, depth - 1)
        if inner is None:
            made.append(g)
            inner = g.outputs[0]
        new_ins.append(inner)
    try:
        (aval,) = p.prim.abstract_eval(*[a.aval for a in new_ins], **p.params)
    except Exception:  # noqa: BLE001  (operands that no longer broadcast: keep the gather)
        return None
    if aval != e.outputs[0].aval:
        return None
    made.append(Eqn(p.prim, tuple(new_ins), p.params, (Var(aval),), e.where))
    return made[-1].outputs[0]


def _key(a: Atom):
    if isinstance(a, Var):
        return a.id
    if a.is_scalar:
        return ("lit", a.val.item(), a.aval.dtype.str, a.val.tobytes())
    return ("const", id(a))


def cse(graph: Graph) -> Graph:
    """Equations with the same primitive, params and inputs compute the same value once."""
    seen: dict[tuple, Var] = {}

    def rule(e: Eqn, ins):
        key = (e.prim.name, tuple(map(_key, ins)), tuple(sorted(
            (k, repr(v)) for k, v in e.params.items())))
        if len(e.outputs) != 1:  # a loop: kept as it is
            return None
        if key in seen:
            return seen[key]
        seen[key] = e.outputs[0]
        return None
    return _substitute(graph, rule)


def dce(graph: Graph) -> Graph:
    """Drop equations none of whose outputs reach the graph's outputs."""
    live = {o.id for o in graph.outputs if isinstance(o, Var)}
    kept = []
    for e in reversed(graph.eqns):
        if any(v.id in live for v in e.outputs):
            kept.append(e)
            live.update(a.id for a in e.inputs if isinstance(a, Var))
    return Graph(graph.inputs, kept[::-1], graph.outputs)


def guard_ranges(graph: Graph, limits: dict[str, dict]) -> Graph | None:
    """`graph` with one more output: how many arguments of the primitives named in `limits`
    lie where a backend's fast version of them is not exact (|x| >= limits[name][dtype]).

    A backend declares the ranges (vecmath's sin/cos reduce arguments exactly only below
    TRIG_MAX); the count is one more accumulator in the loop that already reads the argument,
    and when it is not zero the backend reruns the call with the exact version. Counted in
    the argument's float type (an int64 count halved W1's speed). None if nothing is guarded.
    """
    from .primitives.elementwise import abs_p, add_p, convert_p, ge_p
    from .primitives.layout import reshape_p
    from .primitives.reductions import reduce_sum_p
    args: dict[int, tuple] = {}  # argument id -> (argument, its limit)
    for e in graph.eqns:
        x = e.inputs[0] if e.inputs else None
        if isinstance(x, Var) and x.aval.dtype in limits.get(e.prim.name, ()):
            args.setdefault(x.id, (x, limits[e.prim.name][x.aval.dtype]))
    if not args:
        return None
    eqns = list(graph.eqns)

    def bind(prim, *inputs, **params) -> Var:
        (aval,) = prim.abstract_eval(*[a.aval for a in inputs], **params)
        out = Var(aval)
        eqns.append(Eqn(prim, inputs, params, (out,)))
        return out

    counts = []
    for x, limit in args.values():
        beyond = bind(ge_p, bind(abs_p, x), Literal.of(limit, x.aval.dtype))
        count = bind(convert_p, beyond, dtype=x.aval.dtype)
        if x.aval.ndim:
            count = bind(reshape_p, bind(reduce_sum_p, count, axes=tuple(range(x.aval.ndim))),
                         shape=())
        counts.append(count)
    dtype = np.result_type(*[c.aval.dtype for c in counts])
    total = None
    for count in counts:
        if count.aval.dtype != dtype:
            count = bind(convert_p, count, dtype=dtype)
        total = count if total is None else bind(add_p, total, count)
    return simplify(Graph(graph.inputs, eqns, graph.outputs + [total]))


_F16, _F32 = np.dtype(np.float16), np.dtype(np.float32)


def float16_as_float32(graph: Graph) -> tuple[Graph, tuple[list, list] | None]:
    """float16 is computed in float32 (no backend has float16 loops; NumPy's own float16
    ufuncs also compute in float32): the same graph with float32 wherever it had float16,
    and the positions of the float16 inputs and outputs (to convert at the call boundary),
    or (graph, None) when there is no float16."""
    if all(a.aval.dtype != _F16 for e in graph.eqns for a in e.inputs + e.outputs) and \
            all(a.aval.dtype != _F16 for a in graph.inputs + graph.outputs):
        return graph, None
    new: dict[int, Var] = {}

    def widen(a):
        if isinstance(a, Literal):
            return Literal.of(a.val.astype(_F32)) if a.dtype == _F16 else a
        if a.id not in new:
            new[a.id] = Var(Aval(a.aval.shape, _F32)) if a.aval.dtype == _F16 else a
        return new[a.id]

    inputs = [widen(v) for v in graph.inputs]
    eqns = [Eqn(e.prim, tuple(map(widen, e.inputs)),
                {k: (_F32 if isinstance(v, np.dtype) and v == _F16 else v)
                 for k, v in e.params.items()}, tuple(map(widen, e.outputs)), e.where)
            for e in graph.eqns]
    out = Graph(inputs, eqns, [widen(o) for o in graph.outputs], graph.captured,
                graph.lifted, graph.in_avals)
    half_in = [i for i, v in enumerate(graph.inputs) if v.aval.dtype == _F16]
    half_out = [i for i, o in enumerate(graph.outputs) if o.aval.dtype == _F16]
    return out, (half_in, half_out)
