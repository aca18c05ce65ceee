"""Loops and branches that are not unrolled: `scan`, `fori_loop`, `while_loop`, `cond` and
`switch`, with JAX's names, signatures and semantics.

Each is ONE equation whose params hold the traced sub-graphs (traced once, whatever the trip
count): `scan` (body: consts + carry + x slice -> carry + y slice), `while` (cond and body
graphs) and `cond` (one graph per branch, all of the same signature). `fori_loop` is a scan
over the trip count when the bounds are Python ints, else a while loop.

Transformations map over the sub-graphs:
- reverse mode (autodiff.replay/backward): under autodiff a scan runs its forward half
  (`vjp_fwd`): a scan whose body also stacks the residuals its backward pass reads, and only
  those (the body's VJP is built first, cut into the part that reads no cotangent and the
  rest; what crosses the cut is stacked). Its VJP is another scan, in the other direction,
  whose body is the backward part. `checkpoint=True` stores only the loop's inputs per step
  and recomputes the body in the backward pass. Carries and inputs that no gradient reaches
  get no residuals and no backward work. A while loop's VJP is one `while_vjp` equation
  that reruns the loop recording its residuals on a tape, then steps back (while_grad.py).
  A branch's VJP is a branch over the branches' VJPs.
- forward mode and vmap: a loop over the body's JVP graph or batched graph.
Outside any trace, the same equations run at once on the NumPy reference."""
from __future__ import annotations

from collections.abc import Callable

import numpy as np

from . import pytree, while_grad
from .errors import ShapeError, TracejitError, user_error
from .ir import Aval, Eqn, Graph, Literal, Var, eval_graph
from .loop_graphs import (
    LOOP_KIND,
    _as_operand,
    _batch_size,
    _batched_graph,
    _carry_leaves,
    _Fn,
    _leaf_aval,
    _move_batch,
    _outs,
    _retrace_graph,
    _ScanResiduals,
    _trace_body,
    _traced_loop_body,
    _zeros_like_aval,
    loop_body_vjp,
)
from .primitives import defprim, is_float
from .primitives.elementwise import add_p, convert_p, select_p
from .primitives.layout import broadcast_p, reshape_p, transpose_p
from .tracing import Tracer, weakly


def _scan_shape(*avals, body, n_consts, n_carry, length, reverse, checkpoint):
    outs = [o.aval for o in body.outputs]
    return outs[:n_carry] + [Aval((length,) + a.shape, a.dtype) for a in outs[n_carry:]]


def _scan_impl(*args, body, n_consts, n_carry, length, reverse, checkpoint):
    consts, carry = list(args[:n_consts]), list(args[n_consts:n_consts + n_carry])
    xs = args[n_consts + n_carry:]
    ys = [np.empty((length,) + o.aval.shape, o.aval.dtype) for o in body.outputs[n_carry:]]
    for i in range(length):
        t = length - 1 - i if reverse else i
        outs = eval_graph(body, consts + carry + [x[t] for x in xs])
        carry = outs[:n_carry]
        for y, o in zip(ys, outs[n_carry:]):
            y[t] = o
    return [np.asarray(c, o.aval.dtype) for c, o in zip(carry, body.outputs)] + ys


def _scan_vjp_fwd(act, want, *args, body, n_consts, n_carry, length, reverse, checkpoint):
    nc, nk = n_consts, n_carry
    n_in, ny = len(body.inputs), len(body.outputs) - nk
    # residuals: a const or an x slice is read from the loop's own inputs, an invariant is
    # computed once from the consts; the rest (res_s) is stacked per step
    parts = loop_body_vjp(body, act, want, nc, nk, checkpoint)
    joint = parts["joint"]
    fbody = Graph(list(joint.inputs[:n_in]), parts.pop("fwd"),
                  list(joint.outputs[:nk + ny]) + parts["res_s"])
    outs = scan_p.bind(*args, body=fbody, n_consts=nc, n_carry=nk, length=length,
                       reverse=reverse, checkpoint=checkpoint)
    return list(outs[:nk + ny]), _ScanResiduals(
        args=args, stacked=list(outs[nk + ny:]), **parts,
        like=outs[0], params={"n_consts": nc, "n_carry": nk, "length": length,
                              "reverse": reverse, "checkpoint": checkpoint})


def _scan_vjp(gs, r: _ScanResiduals):
    """The backward scan: carries = the cotangents of the wanted carries and the sums of the
    consts' cotangents; xs = stacked residuals, x slices read, cotangents of wanted ys."""
    p = r.params
    nc, nk, length = p["n_consts"], p["n_carry"], p["length"]
    n_in = len(r.joint.inputs) - len(r.wanted)
    seeds = r.joint.inputs[n_in:]
    seed_of = dict(zip(r.wanted, seeds))
    grad_of = dict(zip(r.wrt, r.grads))
    eqns = list(r.bwd)

    def zeros(aval: Aval) -> Var:
        out = Var(aval)
        eqns.append(Eqn(broadcast_p, (Literal.of(0, aval.dtype),), {"shape": aval.shape},
                        (out,)))
        return out

    ct_k = [i for i in range(nk) if i in seed_of]  # wanted carries: a cotangent carry each
    y_seeds = [seed_of[j] for j in r.wanted if j >= nk]
    x_ins = r.res_s + r.res_x + y_seeds  # the backward body's per-step slices
    acc_c = [i for i in range(nc) if grad_of.get(i) is not None]
    summed = _summed_contractions(r, eqns, acc_c, grad_of, ct_k, seed_of, x_ins)
    acc_c = [i for i in acc_c if i not in summed]
    acc_in = [Var(r.joint.inputs[i].aval) for i in acc_c]
    carry_out = []
    for i in ct_k:
        g = grad_of.get(nc + i)
        carry_out.append(g if g is not None else zeros(r.joint.inputs[nc + i].aval))
    for a, i in zip(acc_in, acc_c):
        out = Var(a.aval)
        eqns.append(Eqn(add_p, (a, grad_of[i]), {}, (out,)))
        carry_out.append(out)
    ct_x = [i for i in range(nc + nk, n_in) if grad_of.get(i) is not None]
    # the factors of the summed contractions that are not slices already: stacked as ys
    x_pos = {v.id: k for k, v in enumerate(x_ins)}
    new_ys = list({v.id: v for f in summed.values() for v in f if v.id not in x_pos}.values())
    bbody = Graph(r.res_c + r.res_i + [seed_of[i] for i in ct_k] + acc_in + x_ins,
                  eqns, carry_out + [grad_of[i] for i in ct_x] + new_ys)
    if summed:
        from .passes import dce
        bbody = dce(bbody)  # the per-step products whose sums are taken after the loop
    # the loop's operands in the joint trace
    consts = [r.args[r.pos[v.id]] for v in r.res_c]
    if r.res_i:  # loop invariants the backward pass reads: computed once, here
        consts += eval_graph(r.inv, list(r.args[:nc]),
                             literal=lambda atom: Tracer(r.like._trace, atom))
    init = [gs[i] if gs[i] is not None else _zeros_like_aval(r.like, r.joint.inputs[nc + i].aval)
            for i in ct_k]
    init += [_zeros_like_aval(r.like, a.aval) for a in acc_in]
    xs = r.stacked + [r.args[r.pos[v.id]] for v in r.res_x]
    for j in r.wanted:
        if j >= nk:
            g = gs[j]
            aval = Aval((length,) + r.joint.outputs[j].aval.shape, r.joint.outputs[j].aval.dtype)
            xs.append(g if g is not None else _zeros_like_aval(r.like, aval))
    outs = scan_p.bind(*consts, *init, *xs, body=bbody, n_consts=len(consts),
                       n_carry=len(init), length=length, reverse=not p["reverse"],
                       checkpoint=False)
    cts: list = [None] * len(r.args)
    for k, i in enumerate(ct_k):
        cts[nc + i] = outs[k]
    for k, i in enumerate(acc_c):
        cts[i] = outs[len(ct_k) + k]
    for k, i in enumerate(ct_x):
        cts[i] = outs[len(init) + k]
    stacked = {v.id: xs[k] for v, k in ((v, x_pos[v.id]) for v in x_ins)}
    stacked.update((v.id, outs[len(init) + len(ct_x) + k]) for k, v in enumerate(new_ys))
    for i, (a, b) in summed.items():
        cts[i] = _sum_of_products(stacked[a.id], stacked[b.id])
    return cts


def _outer_factors(e: Eqn | None):
    """(a, b) when `e` computes a @ b of 2-D per-step values: a matmul, or an outer product
    (inner dimension 1) written as a broadcasting multiply (m, 1) * (1, n)."""
    from .primitives.contraction import matmul_p
    from .primitives.elementwise import mul_p
    if e is None or not all(isinstance(a, Var) and a.aval.ndim == 2 for a in e.inputs):
        return None
    if e.prim is matmul_p:
        return tuple(e.inputs)
    if e.prim is mul_p:
        a, b = e.inputs
        m, n = e.outputs[0].aval.shape
        for x, y in ((a, b), (b, a)):
            if x.aval.shape == (m, 1) and y.aval.shape == (1, n):
                return x, y
    return None


def _summed_contractions(r, eqns, acc_c, grad_of, ct_k, seed_of, x_ins) -> dict:
    """The consts whose per-step cotangent is a contraction of per-step values: a loop's
    weight gradient sum_t d_t h_t^T. Their factors are stacked over the steps (ys of the
    backward scan, or the stacked residuals the forward pass saved) and the sum is ONE matmul
    after the loop (D^T H: BLAS), instead of an m x n accumulator read and written every step.
    Returns {const index: (a, b)}, the per-step factors of a @ b."""
    producer = {v.id: e for e in eqns for v in e.outputs}
    varying = {v.id for v in [seed_of[i] for i in ct_k] + list(x_ins)}
    for e in eqns:
        if any(isinstance(a, Var) and a.id in varying for a in e.inputs):
            varying.update(v.id for v in e.outputs)
    summed = {}
    for i in acc_c:
        f = _outer_factors(producer.get(grad_of[i].id))
        if f and all(v.id in varying for v in f) and f[0].aval.dtype == f[1].aval.dtype:
            summed[i] = f
    if summed and r.params.get("checkpoint"):  # stack no more than the accumulators take
        x_ids = {v.id for v in x_ins}
        extra = sum(v.aval.size * v.aval.dtype.itemsize for f in summed.values() for v in f
                    if v.id not in x_ids) * r.params["length"]
        acc = sum(2 * grad_of[i].aval.size * grad_of[i].aval.dtype.itemsize for i in summed)
        if extra > acc:
            return {}
    return summed


def _sum_of_products(a, b):
    """sum_t a[t] @ b[t] for stacked a (T, m, k) and b (T, k, n): one (m, T*k) @ (T*k, n)."""
    from .primitives.contraction import matmul_p
    t, m, k = a.shape
    n = b.shape[2]
    if k == 1:
        a2 = transpose_p.bind(reshape_p.bind(a, shape=(t, m)), perm=(1, 0))
    else:
        a2 = reshape_p.bind(transpose_p.bind(a, perm=(1, 0, 2)), shape=(m, t * k))
    return matmul_p.bind(a2, reshape_p.bind(b, shape=(t * k, n)))


def _scan_jvp(tangents, *args, body, n_consts, n_carry, length, reverse, checkpoint):
    from .forward import jvp_graph
    nc, nk = n_consts, n_carry
    n_in = len(body.inputs)
    flags = [t is not None and is_float(v.aval.dtype) for t, v in zip(tangents, body.inputs)]
    for i in range(nc, nc + nk):
        flags[i] = is_float(body.inputs[i].aval.dtype)
    j = jvp_graph(body, flags)
    tan_in = dict(zip([i for i, f in enumerate(flags) if f], j.inputs[n_in:]))
    ins = j.inputs[:n_in]
    order = lambda a, b: [ins[i] for i in range(a, b)] + [tan_in[i] for i in range(a, b)
                                                          if i in tan_in]
    n_out = len(body.outputs)
    outs, touts = j.outputs[:n_out], j.outputs[n_out:]
    fk = [i for i in range(nk) if is_float(body.outputs[i].aval.dtype)]
    fy = [i for i in range(nk, n_out) if is_float(body.outputs[i].aval.dtype)]
    jbody = Graph(order(0, nc) + order(nc, nc + nk) + order(nc + nk, n_in), j.eqns,
                  outs[:nk] + [touts[i] for i in fk] + outs[nk:] + [touts[i] for i in fy])

    def tan(i):
        t = tangents[i]
        return t if t is not None else _zeros_like_aval(args[i], _leaf_aval(args[i]))
    consts = list(args[:nc]) + [tangents[i] for i in range(nc) if i in tan_in]
    init = list(args[nc:nc + nk]) + [tan(i) for i in range(nc, nc + nk) if i in tan_in]
    xs = list(args[nc + nk:]) + [tangents[i] for i in range(nc + nk, n_in) if i in tan_in]
    res = scan_p.bind(*consts, *init, *xs, body=jbody, n_consts=len(consts),
                      n_carry=len(init), length=length, reverse=reverse, checkpoint=checkpoint)
    k_out, k_tan = res[:nk], res[nk:nk + len(fk)]
    rest = res[nk + len(fk):]
    ny = n_out - nk
    y_out, y_tan = rest[:ny], rest[ny:]
    tans = [None] * n_out
    for i, tn in zip(fk, k_tan):
        tans[i] = tn
    for i, tn in zip(fy, y_tan):
        tans[i] = tn
    return list(k_out) + list(y_out), tans


def _scan_batch(prim, args, dims, body, n_consts, n_carry, length, reverse, checkpoint):
    nc, nk = n_consts, n_carry
    size = _batch_size(args, dims)
    b = [d is not None for d in dims]
    while True:
        g, out_b = _batched_graph(body, b, size, [False] * len(body.outputs))
        new = [x or y for x, y in zip(b[nc:nc + nk], out_b[:nk])]
        if new == b[nc:nc + nk]:
            break
        b[nc:nc + nk] = new
    g, out_b = _batched_graph(body, b, size, b[nc:nc + nk] + [False] * (len(body.outputs) - nk))
    args = list(args)
    for i in range(nc, nc + nk):
        if b[i] and dims[i] is None:
            args[i] = broadcast_p.bind(args[i], shape=(size,) + tuple(args[i].shape))
    for i in range(nc + nk, len(args)):
        if b[i]:
            args[i] = _move_batch(args[i], 0, 1)
    outs = scan_p.bind(*args, body=g, n_consts=nc, n_carry=nk, length=length,
                       reverse=reverse, checkpoint=checkpoint)
    outs = list(outs)
    for i in range(nk, len(outs)):
        if out_b[i]:
            outs[i] = _move_batch(outs[i], 1, 0)
    return outs, [0 if x else None for x in out_b]


def _loop_step(eqn, backend):
    """A compiled backend's loop: the body's plan compiled by that backend, run per step."""
    from .dispatch import lower
    from .passes import simplify
    p = eqn.params
    graphs = {k: v for k, v in p.items() if isinstance(v, Graph)}
    exes, plans = {}, {}
    for k, g in graphs.items():
        simple = simplify(g)
        plans[k], fallback = lower(simple, backend)
        exes[k] = backend.compile(plans[k], fallback=fallback)
    if eqn.prim is scan_p:
        host = _scan_runner(eqn, exes["body"])
        if backend.__name__.endswith("numba_cpu") and fallback is None:
            from .backends.numba_loops import compiled_scan
            return _first_that_runs(compiled_scan(eqn, plans["body"], backend), host)
        return host
    return _while_runner(eqn, exes["cond"], exes["body"])


def _first_that_runs(compiled, host):
    """The compiled loop if it compiles (Numba types it at its first call), else the host
    loop, from then on."""
    if compiled is None:
        return host
    chosen = []

    def run(*args):
        if chosen:
            return chosen[0](*args)
        try:
            out = compiled(*args)
            chosen.append(compiled)
        except Exception:  # noqa: BLE001  (a body Numba cannot type as one loop: host loop)
            chosen.append(host)
            out = host(*args)
        return out
    run.compile_ahead = getattr(compiled, "compile_ahead", [])
    return run


def _scan_runner(eqn, body):
    p = eqn.params
    nc, nk, length, reverse = p["n_consts"], p["n_carry"], p["length"], p["reverse"]
    ys_avals = [v.aval for v in eqn.outputs[nk:]]
    run = getattr(body, "run", body)

    def run_scan(*args):
        consts, carry = list(args[:nc]), list(args[nc:nc + nk])
        xs = args[nc + nk:]
        ys = [np.empty(a.shape, a.dtype) for a in ys_avals]
        for i in range(length):
            t = length - 1 - i if reverse else i
            outs = run(*consts, *carry, *[x[t] for x in xs])
            carry = outs[:nk]
            for y, o in zip(ys, outs[nk:]):
                y[t] = o
        return [np.asarray(c) for c in carry] + ys
    return run_scan


def _while_shape(*avals, cond, body, n_cond, n_body):
    return [o.aval for o in body.outputs]


def _while_impl(*args, cond, body, n_cond, n_body):
    cc, bc = list(args[:n_cond]), list(args[n_cond:n_cond + n_body])
    carry = list(args[n_cond + n_body:])
    while bool(eval_graph(cond, cc + carry)[0]):
        carry = eval_graph(body, bc + carry)
    return [np.asarray(c, o.aval.dtype) for c, o in zip(carry, body.outputs)]


def _while_vjp_fwd(act, want, *args, cond, body, n_cond, n_body):
    """Reverse mode through a while loop (beyond JAX; while_grad.py): the loop runs as it
    is; its VJP is one `while_vjp` equation that runs it again recording the residuals each
    step's backward part reads, then steps back over them (O(n) for n steps)."""
    outs = while_p.bind(*args, cond=cond, body=body, n_cond=n_cond, n_body=n_body)
    return list(outs), _ScanResiduals(args=args, act=act, want=want, like=outs[0], cond=cond,
                                      body=body, n_cond=n_cond, n_body=n_body)


def _while_vjp(gs, r):
    return while_grad.backward(gs, r)


def _while_jvp(tangents, *args, cond, body, n_cond, n_body):
    from .forward import jvp_graph
    nb0 = n_cond
    nk = len(body.outputs)
    n_in = len(body.inputs)
    bargs = list(args[nb0:])
    btans = list(tangents[nb0:])
    flags = [t is not None and is_float(v.aval.dtype) for t, v in zip(btans, body.inputs)]
    for i in range(n_body, n_in):
        flags[i] = is_float(body.inputs[i].aval.dtype)
    j = jvp_graph(body, flags)
    tan_in = dict(zip([i for i, f in enumerate(flags) if f], j.inputs[n_in:]))
    ins = j.inputs[:n_in]
    fk = [i for i in range(nk) if flags[n_body + i]]
    jbody = Graph(ins[:n_body] + [tan_in[i] for i in range(n_body) if i in tan_in] +
                  ins[n_body:] + [tan_in[n_body + i] for i in fk],
                  j.eqns, j.outputs[:nk] + [j.outputs[nk + i] for i in fk])
    extra = [Var(body.inputs[n_body + i].aval) for i in fk]
    jcond = Graph(cond.inputs + extra, cond.eqns, cond.outputs)
    bconsts = bargs[:n_body] + [btans[i] for i in range(n_body) if i in tan_in]
    carry = bargs[n_body:] + [btans[n_body + i] if btans[n_body + i] is not None else
                              _zeros_like_aval(bargs[n_body + i], _leaf_aval(bargs[n_body + i]))
                              for i in fk]
    res = while_p.bind(*args[:n_cond], *bconsts, *carry, cond=jcond, body=jbody,
                       n_cond=n_cond, n_body=len(bconsts))
    tans = [None] * nk
    for k, i in enumerate(fk):
        tans[i] = res[nk + k]
    return list(res[:nk]), tans


def _while_batch(prim, args, dims, cond, body, n_cond, n_body):
    size = _batch_size(args, dims)
    nk = len(body.outputs)
    b = [d is not None for d in dims]
    bc, bb, bk = b[:n_cond], b[n_cond:n_cond + n_body], b[n_cond + n_body:]
    while True:
        _, out_b = _batched_graph(body, bb + bk, size, [False] * nk)
        new = [x or y for x, y in zip(bk, out_b)]
        if new == bk:
            break
        bk = new
    _, pred_b = _batched_graph(cond, bc + bk, size, [False])
    if pred_b[0]:  # examples stop at different steps: step all while any runs, keep done ones
        bk = [True] * nk
    g, _ = _batched_graph(body, bb + bk, size, bk)
    c, _ = _batched_graph(cond, bc + bk, size, [False])
    args = list(args)
    for i in range(nk):
        k = n_cond + n_body + i
        if bk[i] and dims[k] is None:
            args[k] = broadcast_p.bind(args[k], shape=(size,) + tuple(args[k].shape))
    if not pred_b[0]:
        outs = while_p.bind(*args, cond=c, body=g, n_cond=n_cond, n_body=n_body)
        return list(outs), [0 if x else None for x in bk]
    cavals = [v.aval for v in c.inputs]
    any_cond = _retrace_graph(lambda *xs: [_any(eval_graph(c, xs)[0])], cavals)
    nb = len(g.inputs) - nk

    def step(*xs):
        ccs, bcs, carry = xs[:n_cond], xs[n_cond:n_cond + nb], xs[n_cond + nb:]
        pred = eval_graph(c, list(ccs) + list(carry))[0]
        new = eval_graph(g, list(bcs) + list(carry))
        return [select_p.bind(reshape_p.bind(pred, shape=(size,) + (1,) * (o.ndim - 1)), o, old)
                for o, old in zip(new, carry)]
    sbody = _retrace_graph(step, cavals[:n_cond] + [v.aval for v in g.inputs])
    outs = while_p.bind(*args[:n_cond], *args[:n_cond], *args[n_cond:], cond=any_cond,
                        body=sbody, n_cond=n_cond, n_body=n_cond + n_body)
    return list(outs), [0] * nk


def _any(pred):
    from .primitives.reductions import reduce_max_p
    return reshape_p.bind(reduce_max_p.bind(pred, axes=(0,)), shape=())


def _while_runner(eqn, cond, body):
    p = eqn.params
    nc, nb = p["n_cond"], p["n_body"]
    crun, brun = getattr(cond, "run", cond), getattr(body, "run", body)

    def run_while(*args):
        cc, bc = list(args[:nc]), list(args[nc:nc + nb])
        carry = list(args[nc + nb:])
        while bool(crun(*cc, *carry)[0]):
            carry = brun(*bc, *carry)
        return [np.asarray(c) for c in carry]
    return run_while


scan_p = defprim("scan", LOOP_KIND, shape=_scan_shape, impl=_scan_impl, vjp=_scan_vjp,
                 vjp_fwd=_scan_vjp_fwd, jvp=_scan_jvp, batch=_scan_batch,
                 multiple_results=True, step=_loop_step)


while_p = defprim("while", LOOP_KIND, shape=_while_shape, impl=_while_impl, vjp=_while_vjp,
                  vjp_fwd=_while_vjp_fwd, jvp=_while_jvp, batch=_while_batch,
                  multiple_results=True, step=_loop_step)


def scan(f: Callable, init, xs=None, length: int | None = None, reverse: bool = False,
         *, checkpoint: bool = False):
    """Loop `f(carry, x) -> (carry, y)` over the leading axis of `xs` (like jax.lax.scan).

    Returns `(final carry, stacked ys)`. `carry`, `xs` and `ys` are pytrees of arrays; the
    carry keeps its structure, shapes and dtypes. `reverse=True` runs from the last slice.
    The body is traced once, whatever the length. Under `grad`, the values the backward pass
    reads are stored per step; `checkpoint=True` stores only each step's carry (and reads
    `xs`) and recomputes the body in the backward pass: less memory, one more forward pass.
    """
    c_leaves, c_tree, c_avals, weak = _carry_leaves(init)
    x_leaves, x_tree = pytree.flatten(xs)
    x_avals = [_leaf_aval(x) for x in x_leaves]
    lengths = {a.shape[0] for a in x_avals if a.ndim}
    if any(a.ndim == 0 for a in x_avals):
        raise user_error(ShapeError, "scan: every leaf of xs must have a leading axis to scan "
                         "over; got a 0-d value.", "pass arrays of shape (length, ...).")
    if length is not None:
        lengths.add(int(length))
    if len(lengths) != 1:
        raise user_error(ShapeError, "scan: " + (
            "give xs or length= (the number of steps)." if not lengths else
            f"the leading axes of xs (and length=) disagree: {sorted(lengths)}."),
            "pass xs whose leaves all have the same leading axis, or length=n with xs=None.")
    n = lengths.pop()
    nk = len(c_leaves)

    def flat(*ts):
        carry = pytree.unflatten(c_tree, list(ts[:nk]))
        x = pytree.unflatten(x_tree, list(ts[nk:]))
        out = f(carry, x)
        if not isinstance(out, (tuple, list)) or len(out) != 2:
            raise user_error(TracejitError, "scan: the body function must return a pair "
                             "(carry, y).", "return (new_carry, y); y may be None.")
        return tuple(out)
    fn = _Fn(f, flat, splits=True)
    slice_avals = [Aval(a.shape[1:], a.dtype) for a in x_avals]
    body, out_tree, consts, c_avals, _ = _traced_loop_body("scan", fn, c_tree, c_avals, weak,
                                                           slice_avals)
    y_tree = out_tree[1][1]
    init_vals = [_as_operand(x, a) for x, a in zip(c_leaves, c_avals)]
    outs = scan_p.bind(*consts, *init_vals, *[_as_operand(x, a) for x, a in
                                              zip(x_leaves, x_avals)],
                       body=body, n_consts=len(consts), n_carry=nk, length=n,
                       reverse=bool(reverse), checkpoint=bool(checkpoint))
    outs = _outs(outs, body.out_weak)
    return pytree.unflatten(c_tree, outs[:nk]), pytree.unflatten(y_tree, outs[nk:])


def _is_static_int(x) -> bool:
    return isinstance(x, (int, np.integer)) and not isinstance(x, bool)


def fori_loop(lower, upper, body_fun: Callable, init_val):
    """`val = body_fun(i, val)` for i in range(lower, upper) (like jax.lax.fori_loop).

    With Python-int bounds it is a scan over upper - lower steps (differentiable in reverse
    mode); with traced bounds a while loop."""
    if _is_static_int(lower) and _is_static_int(upper):
        n = max(int(upper) - int(lower), 0)
        # Python-int bounds: the index is weakly typed (a float32 carry + i stays float32)
        weak = isinstance(lower, int) and isinstance(upper, int)

        def step(carry, _):
            i, val = carry
            return (i + np.int32(1), body_fun(weakly(i, weak), val)), None
        (_, val), _ = scan(step, (np.int32(lower), init_val), None, length=n)
        return val
    dtype = np.result_type(*[getattr(b, "dtype", np.int32) for b in (lower, upper)])

    def cond_fun(carry):
        return carry[0] < carry[1]

    def body(carry):
        i, hi, val = carry
        return i + dtype.type(1), hi, body_fun(i, val)
    lo = lower if isinstance(lower, Tracer) else np.asarray(lower, dtype)
    hi = upper if isinstance(upper, Tracer) else np.asarray(upper, dtype)
    if isinstance(lo, Tracer) and lo.dtype != dtype:
        lo = convert_p.bind(lo, dtype=dtype)
    if isinstance(hi, Tracer) and hi.dtype != dtype:
        hi = convert_p.bind(hi, dtype=dtype)
    return while_loop(cond_fun, body, (lo, hi, init_val))[2]


def while_loop(cond_fun: Callable, body_fun: Callable, init_val):
    """`while cond_fun(val): val = body_fun(val)` (like jax.lax.while_loop). Forward mode,
    vmap and, beyond JAX, reverse mode work through it: under `grad` the loop's VJP runs it
    again, recording the residuals each step's backward part reads (only those), then steps
    back over them (tracejit/while_grad.py)."""
    c_leaves, c_tree, c_avals, weak = _carry_leaves(init_val)
    bfn = _Fn(body_fun, lambda *ts: body_fun(pytree.unflatten(c_tree, list(ts))))
    body, _, bconsts, c_avals, weak = _traced_loop_body("while_loop", bfn, c_tree, c_avals,
                                                        weak)
    cond, p_tree, cconsts = _trace_body(
        _Fn(cond_fun, lambda *ts: cond_fun(pytree.unflatten(c_tree, list(ts)))), c_avals, weak)
    if p_tree != pytree.LEAF or cond.outputs[0].aval.shape != () or \
            cond.outputs[0].aval.dtype != np.bool_:
        got = cond.outputs[0].aval if p_tree == pytree.LEAF else "a container"
        raise user_error(ShapeError, "while_loop: cond_fun must return"
                         f" a boolean scalar; got {got}.",
                         "return a 0-d boolean, e.g. `return carry[0] < n` or np.any(...).")
    outs = while_p.bind(*cconsts, *bconsts, *[_as_operand(x, a) for x, a in
                                              zip(c_leaves, c_avals)],
                        cond=cond, body=body, n_cond=len(cconsts), n_body=len(bconsts))
    return pytree.unflatten(c_tree, _outs(outs, body.out_weak))
