"""Reverse mode through `while_loop` (beyond JAX), in O(n) work for a loop of n steps.

The trip count n, and with it the number of per-step residuals, is known only at run time,
while every IR value has a static shape. So the residuals never become IR values: they live
inside ONE `while_vjp` equation, the loop's VJP, which
  1. runs the loop again from its inputs, with the forward part of the body's VJP (the
     same cut as scan's: `body_vjp` and `split_joint` in loop_graphs.py): the body's new
     carry plus the residuals its backward part reads, only those. Each step pushes its
     residuals onto a tape that grows by doubling;
  2. runs the backward part for j = n-1 .. 0, reading step j's residuals from the tape;
     its carries are the cotangents of the wanted carries and the sums of the cotangents
     of the body's consts (loop invariants the backward part reads are computed once).
The forward loop under autodiff stays the plain loop (loops.py: `_while_vjp_fwd`, which
stores nothing). Work: 2n forward body evaluations and n backward ones; memory: n times the
residuals a step's backward part reads, held only while the `while_vjp` equation runs. A
carry no gradient reaches, or a value under `stop_gradient`, gets no residual and no work.

Forward mode of it (jvp of a gradient: Hessian-vector products) is the same two loops over
the sub-graphs' JVPs: the tape also holds the residuals' tangents. vmap of it (per-example
gradients) batches the three sub-graphs: when examples stop at different steps, all step
while any runs, each step records which examples ran, and the backward part leaves the
others' cotangents as they are. Reverse mode OF it (grad of grad) goes through its expansion
in plain `while` loops, which recompute the carry of step j from the initial one (n^2/2 body
evaluations: correct, not fast)."""
from __future__ import annotations

import numpy as np

from .ir import Aval, Eqn, Graph, Literal, Var, eval_graph
from .loop_graphs import (
    LOOP_KIND,
    _batch_size,
    _batched_graph,
    _leaf_aval,
    _retrace_graph,
    _zeros_like_aval,
    body_vjp,
    loop_body_vjp,
)
from .primitives import REGISTRY, defprim, is_float
from .primitives.elementwise import add_p, select_p
from .primitives.layout import broadcast_p, reshape_p
from .primitives.reductions import reduce_max_p
from .tracing import Tracer


def backward(gs, r):
    """The cotangents of a while equation's inputs (r: what `_while_vjp_fwd` kept): one
    `while_vjp` equation."""
    body, nc, nb = r.body, r.n_cond, r.n_body
    nk, n_in = len(body.outputs), len(body.inputs)
    # residuals: a body const is read from the loop's operands, an invariant (of the consts
    # alone) is computed once, here; the rest (res_s) is pushed on the tape at each step
    p = loop_body_vjp(body, r.act[nc:], r.want, nb, nk)
    joint, grads, wrt, bwd, pos = p["joint"], p["grads"], p["wrt"], p["bwd"], p["pos"]
    res_c, res_i, res_s = p["res_c"], p["res_i"], p["res_s"]
    ct_k = p["wanted"]  # the wanted carries: a cotangent carry each
    fgraph = Graph(list(joint.inputs[:n_in]), p["fwd"], list(joint.outputs[:nk]) + res_s)
    seed_of = dict(zip(ct_k, joint.inputs[n_in:]))
    grad_of = dict(zip(wrt, grads))
    eqns = list(bwd)

    def zeros(aval: Aval) -> Var:
        out = Var(aval)
        eqns.append(Eqn(broadcast_p, (Literal.of(0, aval.dtype),), {"shape": aval.shape},
                        (out,)))
        return out
    acc_c = [i for i in range(nb) if grad_of.get(i) is not None]
    acc_in = [Var(joint.inputs[i].aval) for i in acc_c]
    outs = [grad_of[nb + i] if grad_of.get(nb + i) is not None else
            zeros(body.inputs[nb + i].aval) for i in ct_k]
    for a, i in zip(acc_in, acc_c):
        outs.append(Var(a.aval))
        eqns.append(Eqn(add_p, (a, grad_of[i]), {}, (outs[-1],)))
    bgraph = Graph(res_c + res_i + [seed_of[i] for i in ct_k] + acc_in + res_s, eqns, outs)
    args = list(r.args)
    fgraph, cond, keep = _needed_carries(fgraph, r.cond, nc, nb, nk)
    bk = [args[nc + pos[v.id]] for v in res_c]
    if res_i:
        bk += eval_graph(p["inv"], args[nc:nc + nb],
                         literal=lambda atom: Tracer(r.like._trace, atom))
    state = [gs[i] if gs[i] is not None else _zeros_like_aval(r.like, body.outputs[i].aval)
             for i in ct_k]
    state += [_zeros_like_aval(r.like, a.aval) for a in acc_in]
    ops = args[:nc + nb] + [args[nc + nb + k] for k in keep]
    got = while_vjp_p.bind(*ops, *bk, *state, cond=cond, fwd=fgraph, bwd=bgraph, n_cond=nc,
                           n_body=nb, n_carry=len(keep), n_bwd=len(bk))
    cts: list = [None] * len(args)
    for k, i in enumerate(ct_k):
        cts[nc + nb + i] = got[k]
    for k, i in enumerate(acc_c):
        cts[nc + i] = got[len(ct_k) + k]
    return cts


def _reads(graph: Graph, outs) -> set[int]:
    """Ids of the vars `outs` depend on in `graph`."""
    need = {o.id for o in outs if isinstance(o, Var)}
    for e in reversed(graph.eqns):
        if any(v.id in need for v in e.outputs):
            need.update(a.id for a in e.inputs if isinstance(a, Var))
    return need


def _needed_carries(fgraph: Graph, cond: Graph, nc: int, nb: int, nk: int):
    """The recording loop carries only what its predicate, the residuals and those carries
    read (a carry kept for the primal result alone is not recomputed): (fwd, cond, kept)."""
    keep = {k for k in range(nk) if cond.inputs[nc + k].id in _reads(cond, cond.outputs)}
    carry_in = fgraph.inputs[nb:]
    while True:
        need = _reads(fgraph, [fgraph.outputs[k] for k in keep] + fgraph.outputs[nk:])
        new = keep | {k for k, v in enumerate(carry_in) if v.id in need}
        if new == keep:
            break
        keep = new
    from .passes import dce
    kept = sorted(keep)
    fgraph = dce(Graph(fgraph.inputs[:nb] + [carry_in[k] for k in kept], fgraph.eqns,
                       [fgraph.outputs[k] for k in kept] + fgraph.outputs[nk:]))
    cond = Graph(cond.inputs[:nc] + [cond.inputs[nc + k] for k in kept], cond.eqns,
                 cond.outputs)
    return fgraph, cond, kept


class _Tape:
    """Per-step residuals, one buffer per residual, grown by doubling."""

    def __init__(self, avals: list[Aval]) -> None:
        self.avals, self.n = avals, 0
        self.bufs = [np.empty((4,) + a.shape, a.dtype) for a in avals]

    def push(self, values) -> None:
        if self.bufs and self.n == len(self.bufs[0]):
            self.bufs = [np.concatenate([b, np.empty_like(b)]) for b in self.bufs]
        for b, v, a in zip(self.bufs, values, self.avals):
            b[self.n] = np.reshape(v, a.shape)
        self.n += 1

    def __getitem__(self, j: int) -> list:
        return [b[j] for b in self.bufs]


def _run(cond, fwd, bwd, args, p, avals):
    """Both loops on concrete arrays: `cond`, `fwd` and `bwd` run one step each."""
    nc, nb, nk, nw = p["n_cond"], p["n_body"], p["n_carry"], p["n_bwd"]
    cc, bc = list(args[:nc]), list(args[nc:nc + nb])
    carry = list(args[nc + nb:nc + nb + nk])
    bk, state = list(args[nc + nb + nk:nc + nb + nk + nw]), list(args[nc + nb + nk + nw:])
    tape = _Tape(avals)
    while bool(np.asarray(cond(*cc, *carry)[0]).reshape(())):
        outs = fwd(*bc, *carry)
        carry = list(outs[:nk])
        tape.push(outs[nk:])
    for j in range(tape.n - 1, -1, -1):
        state = list(bwd(*bk, *state, *tape[j]))
    return state


def _residual_avals(fwd: Graph, nk: int) -> list[Aval]:
    return [o.aval for o in fwd.outputs[nk:]]


def _shape(*avals, cond, fwd, bwd, n_cond, n_body, n_carry, n_bwd):
    return [o.aval for o in bwd.outputs]


def _impl(*args, cond, fwd, bwd, n_cond, n_body, n_carry, n_bwd):
    p = {"n_cond": n_cond, "n_body": n_body, "n_carry": n_carry, "n_bwd": n_bwd}
    state = _run(lambda *xs: eval_graph(cond, xs), lambda *xs: eval_graph(fwd, xs),
                 lambda *xs: eval_graph(bwd, xs), args, p, _residual_avals(fwd, n_carry))
    return [np.asarray(s, o.aval.dtype) for s, o in zip(state, bwd.outputs)]


def _step(eqn, backend):
    """A compiled backend's `while_vjp`: the three sub-graphs compiled by that backend,
    the two loops on the host."""
    from .dispatch import lower
    from .passes import simplify
    p = eqn.params
    runs = {}
    for k in ("cond", "fwd", "bwd"):
        plan, fallback = lower(simplify(p[k]), backend)
        exe = backend.compile(plan, fallback=fallback)
        runs[k] = getattr(exe, "run", exe)
    avals = _residual_avals(p["fwd"], p["n_carry"])

    def run_while_vjp(*args):
        return [np.asarray(s) for s in _run(runs["cond"], runs["fwd"], runs["bwd"], args, p,
                                            avals)]
    return run_while_vjp


# ----- transformations of a while_vjp equation: through its expansion in plain loops -----
def _loop(cond_consts, cond_fn, body_consts, body_fn, init) -> list:
    """A `while` equation (loops.py's primitive, found by name: no import cycle) of
    `cond_fn(consts, carry)` and `body_fn(consts, carry)` over flat lists."""
    nc, nb = len(cond_consts), len(body_consts)
    avals = [_leaf_aval(x) for x in list(cond_consts) + list(body_consts) + list(init)]
    cond = _retrace_graph(lambda *xs: [cond_fn(xs[:nc], list(xs[nc:]))],
                          avals[:nc] + avals[nc + nb:])
    body = _retrace_graph(lambda *xs: body_fn(xs[:nb], list(xs[nb:])), avals[nc:])
    return list(REGISTRY["while"].bind(*cond_consts, *body_consts, *init, cond=cond,
                                       body=body, n_cond=nc, n_body=nb))


def _recompute(args, cond, fwd, bwd, n_cond, n_body, n_carry, n_bwd):
    """The same results from `while` loops only: count the steps, then for j = n-1 .. 0
    recompute the carry of step j from the initial one and apply the backward part."""
    nc, nb, nk, nw = n_cond, n_body, n_carry, n_bwd
    cc, bc = list(args[:nc]), list(args[nc:nc + nb])
    init = list(args[nc + nb:nc + nb + nk])
    bk, state = list(args[nc + nb + nk:nc + nb + nk + nw]), list(args[nc + nb + nk + nw:])
    i0 = np.int32(0)

    def step(consts, c):  # consts: the body's; c: the step number, then the carry
        return [c[0] + np.int32(1)] + eval_graph(fwd, list(consts) + c[1:])[:nk]
    n = _loop(cc, lambda k, c: eval_graph(cond, list(k) + c[1:])[0], bc, step, [i0] + init)[0]

    def back(k, c):  # k: the body's consts, the initial carry, bk; c: j, then the state
        kb, k0, kw = list(k[:nb]), list(k[nb:nb + nk]), list(k[nb + nk:])
        j = c[0] - np.int32(1)
        carry = _loop([j], lambda k, s: s[0] < k[0], kb, step, [i0] + k0)[1:]
        res = eval_graph(fwd, kb + carry)[nk:]
        return [j] + eval_graph(bwd, kw + c[1:] + res)
    return _loop([], lambda k, c: c[0] > 0, bc + init + bk, back, [n] + state)[1:]


def _expansion(params) -> Graph:
    cond, fwd, bwd = params["cond"], params["fwd"], params["bwd"]
    nw, ns = params["n_bwd"], len(params["bwd"].outputs)
    avals = [v.aval for v in cond.inputs[:params["n_cond"]] + fwd.inputs +
             bwd.inputs[:nw + ns]]
    return _retrace_graph(lambda *xs: _recompute(xs, **params), avals)


def _paired_jvp(graph: Graph, groups: list[tuple[int, list[bool]]]) -> tuple[Graph, list]:
    """The JVP of a sub-graph whose inputs come in consecutive groups (size, which get a
    tangent), each group followed by its tangents: (graph, per output: has a tangent)."""
    from .forward import jvp_graph
    flags = [f for _, fl in groups for f in fl]
    j = jvp_graph(graph, flags)
    n_in = len(graph.inputs)
    tan = dict(zip([i for i, f in enumerate(flags) if f], j.inputs[n_in:]))
    ins, start = [], 0
    for size, _ in groups:
        ins += j.inputs[start:start + size] + [tan[i] for i in range(start, start + size)
                                                 if i in tan]
        start += size
    return Graph(ins, j.eqns, j.outputs), [is_float(o.aval.dtype) for o in graph.outputs]


def _jvp(tangents, *args, cond, fwd, bwd, n_cond, n_body, n_carry, n_bwd):
    """Forward mode through both loops: the recording loop carries tangents and records the
    residuals' tangents too; the backward loop carries the state's tangents."""
    nc, nb, nk, nw = n_cond, n_body, n_carry, n_bwd
    ns = len(bwd.outputs)
    nr = len(fwd.outputs) - nk

    def has(i, v):
        return tangents[i] is not None and is_float(v.aval.dtype)
    fb = [has(nc + i, v) for i, v in enumerate(fwd.inputs[:nb])]
    fk = [is_float(v.aval.dtype) for v in fwd.inputs[nb:]]
    jf, _ = _paired_jvp(fwd, [(nb, fb), (nk, fk)])
    n_out = len(fwd.outputs)
    fr = [is_float(o.aval.dtype) for o in fwd.outputs[nk:]]
    touts = jf.outputs[n_out:]
    fgraph = Graph(jf.inputs, jf.eqns, jf.outputs[:nk] + [t for t, f in zip(touts, fk) if f] +
                   jf.outputs[nk:n_out] + [t for t, f in zip(touts[nk:], fr) if f])
    first = nc + nb + nk
    fw = [has(first + i, v) for i, v in enumerate(bwd.inputs[:nw])]
    jb, _ = _paired_jvp(bwd, [(nw, fw), (ns, [True] * ns), (nr, fr)])
    bgraph = Graph(jb.inputs, jb.eqns, jb.outputs)
    tk = [Var(v.aval) for v, f in zip(fwd.inputs[nb:], fk) if f]
    cgraph = Graph(list(cond.inputs) + tk, cond.eqns, cond.outputs)

    def tan(i):
        t = tangents[i]
        return t if t is not None else _zeros_like_aval(args[i], _leaf_aval(args[i]))
    ops = list(args[:nc + nb]) + [tangents[nc + i] for i, f in enumerate(fb) if f]
    ops += list(args[nc + nb:first]) + [tan(nc + nb + i) for i, f in enumerate(fk) if f]
    ops += list(args[first:first + nw]) + [tangents[first + i] for i, f in enumerate(fw) if f]
    ops += list(args[first + nw:]) + [tan(first + nw + i) for i in range(ns)]
    outs = while_vjp_p.bind(*ops, cond=cgraph, fwd=fgraph, bwd=bgraph, n_cond=nc,
                            n_body=nb + sum(fb), n_carry=nk + sum(fk), n_bwd=nw + sum(fw))
    return list(outs[:ns]), list(outs[ns:])


def _batch(prim, args, dims, cond, fwd, bwd, n_cond, n_body, n_carry, n_bwd):
    """vmap of a while loop's gradient: the same two loops over batched sub-graphs. A
    batched predicate (examples stop at different steps) steps all while any runs; each
    step records which examples ran, and the backward part leaves the others' cotangents
    as they are."""
    nc, nb, nk, nw = n_cond, n_body, n_carry, n_bwd
    size = _batch_size(args, dims)
    b = [d is not None for d in dims]
    bc, bb, bk = b[:nc], b[nc:nc + nb], b[nc + nb:nc + nb + nk]
    bw, bs = b[nc + nb + nk:nc + nb + nk + nw], b[nc + nb + nk + nw:]
    nout = len(fwd.outputs)
    while True:  # carries batched by the body, closed under iteration
        new = [x or y for x, y in zip(bk, _batched_graph(fwd, bb + bk, size, [False] * nout)[1])]
        if new == bk:
            break
        bk = new
    masked = _batched_graph(cond, bc + bk, size, [False])[1][0]
    if masked:
        bk = [True] * nk
    fg, fb = _batched_graph(fwd, bb + bk, size, bk + [False] * (nout - nk))
    rb = fb[nk:]
    while True:  # the backward part's state, likewise
        new = [x or y for x, y in zip(bs, _batched_graph(bwd, bw + bs + rb, size,
                                                          [False] * len(bs))[1])]
        if new == bs:
            break
        bs = new
    if masked:
        bs = [True] * len(bs)
    bg, _ = _batched_graph(bwd, bw + bs + rb, size, bs)
    cg, _ = _batched_graph(cond, bc + bk, size, [False])
    args = list(args)
    first = nc + nb
    for k, forced in [(first + i, x) for i, x in enumerate(bk)] + [
            (first + nk + nw + i, x) for i, x in enumerate(bs)]:
        if forced and dims[k] is None:
            args[k] = broadcast_p.bind(args[k], shape=(size,) + tuple(args[k].shape))
    if not masked:
        outs = while_vjp_p.bind(*args, cond=cg, fwd=fg, bwd=bg, n_cond=nc, n_body=nb,
                                n_carry=nk, n_bwd=nw)
        return list(outs), [0 if x else None for x in bs]

    def keep(pred, new, old):  # new where the example ran this step, else old
        return [select_p.bind(reshape_p.bind(pred, shape=(size,) + (1,) * (o.ndim - 1)), o, p)
                for o, p in zip(new, old)]

    def fstep(*xs):  # cond consts, body consts, carry -> carry, residuals, who ran
        carry = list(xs[nc + nb:])
        pred = eval_graph(cg, list(xs[:nc]) + carry)[0]
        outs = eval_graph(fg, list(xs[nc:]))
        return keep(pred, outs[:nk], carry) + list(outs[nk:]) + [pred]

    def bstep(*xs):  # bwd consts, state, residuals, who ran -> state
        state = list(xs[nw:nw + len(bs)])
        return keep(xs[-1], eval_graph(bg, list(xs[:-1])), state)
    cavals = [v.aval for v in cg.inputs]
    any_cond = _retrace_graph(lambda *xs: [reshape_p.bind(reduce_max_p.bind(
        eval_graph(cg, xs)[0], axes=(0,)), shape=())], cavals)
    fg2 = _retrace_graph(fstep, cavals[:nc] + [v.aval for v in fg.inputs])
    bg2 = _retrace_graph(bstep, [v.aval for v in bg.inputs] + [Aval((size,), np.dtype(bool))])
    outs = while_vjp_p.bind(*args[:nc], *args[:nc], *args[nc:], cond=any_cond, fwd=fg2,
                            bwd=bg2, n_cond=nc, n_body=nc + nb, n_carry=nk, n_bwd=nw)
    return list(outs), [0] * len(bs)


def _vjp(gs, outs, *args, **params):
    g = _expansion(params)
    wrt = [i for i, v in enumerate(g.inputs) if is_float(v.aval.dtype)]
    wanted = [k for k, x in enumerate(gs) if x is not None]
    joint, grads = body_vjp(g, wrt, wanted)
    res = iter(eval_graph(joint, list(args) + [gs[k] for k in wanted])[len(g.outputs):])
    cts: list = [None] * len(args)
    for i, gr in zip(wrt, grads):
        if gr is not None:
            cts[i] = next(res)
    return cts


while_vjp_p = defprim("while_vjp", LOOP_KIND, shape=_shape, impl=_impl, vjp=_vjp, jvp=_jvp,
                      batch=_batch, multiple_results=True, step=_step)
