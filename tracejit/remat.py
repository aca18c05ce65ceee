"""`tj.checkpoint` (alias `tj.remat`), as jax.checkpoint: under reverse mode a function's
intermediate values are not kept for the backward pass but recomputed there from its inputs.

    body = tj.checkpoint(lambda c, x: (np.tanh(W @ c + x), None))
    c, _ = tj.scan(body, c0, xs)           # grad stores each step's inputs, nothing more

How it works. Called on traced values, the function is traced into a sub-graph and recorded
as ONE `checkpoint` equation (kind "call", like custom_vjp_call: `passes.inline_calls`
replaces it by its sub-graph after autodiff, so fusion and backends never see it). Its VJP
is another `checkpoint` equation, of the sub-graph's VJP, whose operands are the function's
inputs and the output cotangents: it recomputes inside whatever forward values it needs.
So no intermediate value of the function crosses from the forward pass to the backward
pass, only its inputs: around a loop body (scan, while_loop, fori_loop) the loop stores
per step only the inputs the body's backward part reads. Its JVP and batching rules are
`checkpoint` equations of the sub-graph's JVP and batched graph.

Outside a loop the forward and the recomputation end up in one fused program, where CSE
may share them: `prevent_cse` is accepted for JAX's signature, and a loop body's backward
part is its own graph, where nothing is shared with the forward pass. `policy` (JAX's
checkpoint policies: which values to save) is not supported: everything is recomputed.
"""
from __future__ import annotations

import functools
from collections.abc import Callable

import numpy as np

from . import pytree
from .errors import ArgnumsError, UnsupportedError, user_error
from .ir import Graph, Var, eval_graph
from .loop_graphs import (
    _batch_size,
    _batched_graph,
    _Fn,
    _leaf_aval,
    _outs,
    _trace_body,
    body_vjp,
)
from .primitives import defprim, is_float
from .tracing import Tracer, is_weak


class Body:
    """What a `checkpoint` equation carries: the traced function (inlined after autodiff)."""

    def __init__(self, graph: Graph, name: str) -> None:
        self.graph, self.name = graph, name

    def __str__(self) -> str:  # make_ir's listing: `body=name`, the graph indented below
        return self.name

    __repr__ = __str__


class _Saved:
    """What the forward half keeps for the backward half: the inputs, nothing computed."""

    def __init__(self, **kw) -> None:
        self.__dict__.update(kw)


def _shape(*avals, body, prevent_cse):
    return [o.aval for o in body.graph.outputs]


def _impl(*args, body, prevent_cse):
    return [np.asarray(o, v.aval.dtype) for o, v in zip(eval_graph(body.graph, args),
                                                        body.graph.outputs)]


def _vjp_fwd(act, want, *args, body, prevent_cse):
    outs = checkpoint_p.bind(*args, body=body, prevent_cse=prevent_cse)
    return list(outs), _Saved(args=args, act=act, body=body, prevent_cse=prevent_cse)


def _vjp(gs, r: _Saved):
    """One `checkpoint` equation of the function's VJP, reading only the inputs it needs."""
    from .passes import dce
    graph = r.body.graph
    wrt = [i for i, (a, v) in enumerate(zip(r.act, graph.inputs)) if a and is_float(v.aval.dtype)]
    wanted = [k for k, g in enumerate(gs) if g is not None]
    cts: list = [None] * len(r.args)
    if not wrt or not wanted:
        return cts
    joint, grads = body_vjp(graph, wrt, wanted)
    outs = [g for g in grads if g is not None]
    if not outs:
        return cts
    pruned = dce(Graph(joint.inputs, joint.eqns, outs))
    read = {a.id for e in pruned.eqns for a in e.inputs if isinstance(a, Var)}
    read |= {o.id for o in outs if isinstance(o, Var)}
    keep = [k for k, v in enumerate(joint.inputs) if v.id in read]
    operands = list(r.args) + [gs[k] for k in wanted]
    got = checkpoint_p.bind(*[operands[k] for k in keep],
                            body=Body(Graph([joint.inputs[k] for k in keep], pruned.eqns, outs),
                                      f"{r.body.name}_vjp"), prevent_cse=r.prevent_cse)
    it = iter(got)
    for i, g in zip(wrt, grads):
        if g is not None:
            cts[i] = next(it)
    return cts


def _jvp(tangents, *args, body, prevent_cse):
    from .forward import jvp_graph
    graph = body.graph
    flags = [t is not None and is_float(v.aval.dtype) for t, v in zip(tangents, graph.inputs)]
    outs = checkpoint_p.bind(*args, *[t for t, f in zip(tangents, flags) if f],
                             body=Body(jvp_graph(graph, flags), f"{body.name}_jvp"),
                             prevent_cse=prevent_cse)
    n = len(graph.outputs)
    return list(outs[:n]), [t if is_float(o.aval.dtype) else None
                            for t, o in zip(outs[n:], graph.outputs)]


def _batch(prim, args, dims, body, prevent_cse):
    n = len(body.graph.outputs)
    g, out_b = _batched_graph(body.graph, [d is not None for d in dims], _batch_size(args, dims),
                              [False] * n)
    outs = checkpoint_p.bind(*args, body=Body(g, body.name), prevent_cse=prevent_cse)
    return list(outs), [0 if b else None for b in out_b]


checkpoint_p = defprim("checkpoint", "call", shape=_shape, impl=_impl, vjp=_vjp,
                       vjp_fwd=_vjp_fwd, jvp=_jvp, batch=_batch, multiple_results=True)


def checkpoint(fun: Callable, *, prevent_cse: bool = True, policy=None,
               static_argnums: int | tuple[int, ...] = ()) -> Callable:
    """`fun`, whose intermediate values reverse mode recomputes in the backward pass from
    its inputs instead of storing them (like jax.checkpoint / jax.remat). Around a loop body
    (`tj.scan(tj.checkpoint(body), ...)`) the loop stores only each step's inputs.

    `static_argnums`: arguments that are Python values (not traced). `policy` must be None
    (everything is recomputed); `prevent_cse` is accepted for JAX's signature."""
    if policy is not None:
        raise user_error(UnsupportedError, "checkpoint: policy= (which intermediate values "
                         "to save) is not supported; every value is recomputed.",
                         "leave policy=None, or split the function and checkpoint only the "
                         "part whose values should be recomputed.")
    static = (static_argnums,) if isinstance(static_argnums, int) else tuple(static_argnums)
    name = getattr(fun, "__name__", "fn")

    @functools.wraps(fun)
    def wrapped(*args, **kwargs):
        if any(i >= len(args) or i < -len(args) for i in static):
            raise user_error(ArgnumsError, f"checkpoint({name}): static_argnums={static} "
                             f"but the call has {len(args)} positional arguments.",
                             "pass the static arguments positionally.")
        fixed = {i % len(args) for i in static}
        dyn = [a for i, a in enumerate(args) if i not in fixed]
        leaves, tree = pytree.flatten((dyn, kwargs))
        if not any(isinstance(x, Tracer) for x in leaves):  # on arrays: just run it
            return fun(*args, **kwargs)
        arrays = [k for k, x in enumerate(leaves) if isinstance(x, (Tracer, np.ndarray))]

        def flat(*xs):
            filled = list(leaves)
            for k, x in zip(arrays, xs):
                filled[k] = x
            d, kw = pytree.unflatten(tree, filled)
            it = iter(d)
            return fun(*[a if i in fixed else next(it) for i, a in enumerate(args)], **kw)
        avals = [_leaf_aval(leaves[k]) for k in arrays]
        graph, out_tree, consts = _trace_body(_Fn(fun, flat), avals,
                                              [is_weak(leaves[k]) for k in arrays])
        outs = checkpoint_p.bind(*consts, *[leaves[k] for k in arrays],
                                 body=Body(graph, name), prevent_cse=bool(prevent_cse))
        return pytree.unflatten(out_tree, _outs(outs, graph.out_weak))
    return wrapped


remat = checkpoint
