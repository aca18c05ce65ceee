"""Branches that are not unrolled: `cond` and `switch` (JAX's names and semantics). One `cond`
equation holds one graph per branch, all of one signature (every branch's consts, then the
operands); only the chosen branch runs. Its VJP is a branch over the branches' VJPs, its JVP a
branch over their JVPs; vmap with a batched index runs every branch and selects per example.
"""
from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np

from . import pytree
from .errors import ShapeError, TracejitError, user_error
from .ir import Graph, Literal, Var, eval_graph
from .loop_graphs import (
    LOOP_KIND,
    _as_operand,
    _batch_size,
    _batched_graph,
    _clip_index,
    _Fn,
    _leaf_aval,
    _outs,
    _retrace_graph,
    _trace_body,
)
from .primitives import defprim, full_on, is_float
from .primitives.elementwise import convert_p, select_p
from .primitives.layout import reshape_p
from .tracing import Tracer, is_weak


def _cond_shape(index, *avals, branches):
    return [o.aval for o in branches[0].outputs]


def _cond_impl(index, *ops, branches):
    i = int(np.clip(np.asarray(index), 0, len(branches) - 1))
    b = branches[i]
    return [np.asarray(o, v.aval.dtype) for o, v in zip(eval_graph(b, list(ops)), b.outputs)]


def _cond_vjp(gs, outs, index, *ops, branches):
    from .autodiff import vjp_graph
    wrt = [i for i, v in enumerate(branches[0].inputs) if is_float(v.aval.dtype)
           and isinstance(ops[i], Tracer) and not isinstance(ops[i].atom, Literal)]
    have = [k for k, g in enumerate(gs) if g is not None]
    if not wrt or not have:
        return [None] * (1 + len(ops))
    bwd = []
    avals = [v.aval for v in branches[0].inputs] + [branches[0].outputs[k].aval for k in have]
    for b in branches:
        sub = Graph(b.inputs, b.eqns, [b.outputs[k] for k in have])
        joint, connected = vjp_graph(sub, wrt, seeds=True)

        def fn(*xs, joint=joint, connected=connected):
            res = eval_graph(joint, xs)[len(have):]
            it = iter(res)
            return [next(it) if c else full_on(xs[0], avals[i].shape, avals[i].dtype, 0)
                    for i, c in zip(wrt, connected)]
        bwd.append(_retrace_graph(fn, avals))
    cts = cond_p.bind(index, *ops, *[gs[k] for k in have], branches=tuple(bwd))
    out = [None] * (1 + len(ops))
    for i, c in zip(wrt, cts):
        out[1 + i] = c
    return out


def _cond_jvp(tangents, index, *ops, branches):
    from .forward import jvp_graph
    ts = tangents[1:]
    flags = [t is not None and is_float(v.aval.dtype) for t, v in zip(ts, branches[0].inputs)]
    js = tuple(jvp_graph(b, flags) for b in branches)
    n = len(branches[0].outputs)
    res = cond_p.bind(index, *ops, *[t for t, f in zip(ts, flags) if f], branches=js)
    tans = [t if is_float(o.aval.dtype) else None
            for t, o in zip(res[n:], branches[0].outputs)]
    return list(res[:n]), tans


def _cond_batch(prim, args, dims, branches):
    size = _batch_size(args, dims)
    index, ops = args[0], args[1:]
    b = [d is not None for d in dims[1:]]
    n = len(branches[0].outputs)
    if dims[0] is None:
        force = [False] * n
        for br in branches:
            force = [x or y for x, y in zip(force, _batched_graph(br, b, size, [False] * n)[1])]
        gs = tuple(_batched_graph(br, b, size, force)[0] for br in branches)
        return list(cond_p.bind(index, *ops, branches=gs)), [0 if f else None for f in force]
    # a batched index: every branch runs, each example picks its own
    idx = _clip_index(index, len(branches))
    results = []
    for br in branches:
        g, _ = _batched_graph(br, b, size, [True] * n)
        results.append(eval_graph(g, list(ops)))
    outs = list(results[0])
    for k in range(1, len(branches)):
        for j, o in enumerate(results[k]):
            m = reshape_p.bind(idx == k, shape=(size,) + (1,) * (o.ndim - 1))
            outs[j] = select_p.bind(m, o, outs[j])
    return outs, [0] * n


def _cond_step(eqn, backend):
    from .dispatch import lower
    from .passes import simplify
    runs = []
    for g in eqn.params["branches"]:
        plan, fallback = lower(simplify(g), backend)
        exe = backend.compile(plan, fallback=fallback)
        runs.append(getattr(exe, "run", exe))
    n = len(runs)

    def run_cond(index, *ops):
        i = min(max(int(np.asarray(index).reshape(())), 0), n - 1)
        return [np.asarray(o) for o in runs[i](*ops)]
    return run_cond


cond_p = defprim("cond", LOOP_KIND, shape=_cond_shape, impl=_cond_impl, vjp=_cond_vjp,
                 jvp=_cond_jvp, batch=_cond_batch, multiple_results=True, step=_cond_step)


def switch(index, branches: Sequence[Callable], *operands):
    """`branches[clip(index, 0, len(branches) - 1)](*operands)` (like jax.lax.switch): every
    branch is traced, only the chosen one runs. All must return the same structure, shapes
    and dtypes."""
    branches = list(branches)
    if not branches:
        raise user_error(TracejitError, "switch: branches is empty.", "pass a list of "
                         "functions.")
    leaves, tree = pytree.flatten(operands)
    avals = [_leaf_aval(x) for x in leaves]
    weak = [is_weak(x) for x in leaves]  # a Python scalar operand is weakly typed (JAX)
    traced = []
    for k, br in enumerate(branches):
        g, out_tree, consts = _trace_body(
            _Fn(br, lambda *ts, br=br: br(*pytree.unflatten(tree, list(ts)))), avals, weak)
        traced.append((g, out_tree, consts))
    g0, t0, _ = traced[0]
    for k, (g, t, _) in enumerate(traced[1:], 1):
        if t != t0 or [o.aval for o in g.outputs] != [o.aval for o in g0.outputs]:
            a = [str(o.aval) for o in g0.outputs]
            b = [str(o.aval) for o in g.outputs]
            raise user_error(ShapeError, f"switch/cond: branch {k} returns {b} (structure "
                             f"{t}) but branch 0 returns {a} (structure {t0}); every branch "
                             "must return the same structure, shapes and dtypes.",
                             "make the branches return values of the same shapes and dtypes "
                             "(cast with .astype, broadcast with np.broadcast_to).")
    # one signature for all: every branch's consts, then the operands
    all_consts = [c for _, _, cs in traced for c in cs]
    graphs, start = [], 0
    for g, _, cs in traced:
        n = len(cs)
        before = [Var(_leaf_aval(c)) for c in all_consts[:start]]
        after = [Var(_leaf_aval(c)) for c in all_consts[start + n:]]
        graphs.append(Graph(before + g.inputs[:n] + after + g.inputs[n:], g.eqns, g.outputs))
        start += n
    idx = index
    if isinstance(idx, Tracer):
        idx = _clip_index(idx, len(branches))
    else:
        idx = np.int32(min(max(int(np.asarray(idx)), 0), len(branches) - 1))
    outs = cond_p.bind(idx, *all_consts, *[_as_operand(x, a) for x, a in zip(leaves, avals)],
                       branches=tuple(graphs))
    # a result is weakly typed where every branch returns it weak
    return pytree.unflatten(t0, _outs(outs, [all(w) for w in zip(*[g.out_weak
                                                                   for g, _, _ in traced])]))


def cond(pred, true_fun: Callable, false_fun: Callable, *operands):
    """`true_fun(*operands) if pred else false_fun(*operands)` (like jax.lax.cond)."""
    if isinstance(pred, Tracer):
        if pred.shape != ():
            raise user_error(ShapeError, f"cond: pred must be a scalar; got shape "
                             f"{tuple(pred.shape)}.", "reduce it (np.any / np.all), or use "
                             "np.where for an elementwise choice.")
        index = convert_p.bind(pred != 0 if pred.dtype != np.bool_ else pred,
                               dtype=np.dtype(np.int32))
    else:
        index = np.int32(bool(np.asarray(pred)))
    return switch(index, [false_fun, true_fun], *operands)
