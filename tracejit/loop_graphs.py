"""Sub-graph machinery shared by the loops (loops.py) and branches (branches.py): tracing a
body into a self-contained graph with its consts, checking carries, a body's joint VJP graph
and the cut of it into a forward part and a backward part (which values cross the cut are
the residuals a loop stores per step), batching a body."""
from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np

from . import pytree
from .errors import ShapeError, TracejitError, user_error
from .ir import Aval, Graph, Literal, Var, eval_graph
from .primitives import full_on, is_float
from .primitives.elementwise import convert_p
from .primitives.layout import broadcast_p, transpose_p
from .tracing import Tracer, is_weak, new_trace, trace, trace_stack, weakly

LOOP_KIND = "control"


def _leaf_aval(x) -> Aval:
    if isinstance(x, Tracer):
        return x.aval
    return Literal.of(x).aval


def _trace_body(fn: Callable, avals: list[Aval], weak: list[bool] | None = None
                ) -> tuple[Graph, Any, list]:
    """Trace `fn` (flat tracers -> pytree): (graph, output treedef, consts). The graph's
    inputs are the consts first (tracers it closed over, captured arrays), then `avals`
    (weakly typed where `weak` says: tracing.is_weak); `graph.out_weak` says which outputs
    are weakly typed."""
    stack = trace_stack()
    liftable = stack[-1].liftable if stack else None
    graph, out_tree = trace(fn, avals, liftable, source=getattr(fn, "fn", fn), weak=weak)
    n = len(avals)
    consts = list(graph.captured)
    if graph.lifted:
        outer = stack[-1]
        consts += [outer.lift(src.read(), src) for src in graph.lifted]
    body = Graph(graph.inputs[n:] + graph.inputs[:n], graph.eqns, graph.outputs,
                 out_weak=graph.out_weak)
    return body, out_tree, consts


def _retrace_graph(fn: Callable, avals: list[Aval]) -> Graph:
    """A self-contained graph of `fn` (flat tracers -> flat list) built from other graphs."""
    graph, _ = trace(lambda *xs: list(fn(*xs)), avals)
    assert not graph.captured and not graph.lifted
    return graph


def _zeros_like_aval(like, aval: Aval):
    return full_on(like, aval.shape, aval.dtype, 0)


def _describe_leaf(what: str, path: str) -> str:
    return f"{what}{path}" if path else what


def _check_carry(name: str, tree_in, tree_out, avals_in, avals_out, what: str = "carry"):
    """The body must return a carry of the same structure, shapes and dtypes."""
    if tree_in != tree_out:
        raise user_error(TracejitError, f"{name}: the body function must return a {what} of "
                         "the same structure as its input; got a different tuple/list/dict "
                         "structure.", f"return the {what} in the same structure as the "
                         "initial value.")
    for path, a, b in zip(pytree.leaf_paths(tree_in), avals_in, avals_out):
        if a != b:
            raise user_error(ShapeError, f"{name}: the {_describe_leaf(what, path)} has "
                             f"shape/dtype {a} going into the body but {b} coming out; a loop"
                             " carry must keep its shape and dtype.",
                             f"make the body return {_describe_leaf(what, path)} as {a} (cast"
                             " with .astype(...), broadcast with np.broadcast_to), or start the"
                             " loop from a value of the body's output type.")


def _carry_leaves(init) -> tuple[list, Any, list[Aval], list[bool]]:
    """(leaves, treedef, avals, weak): a leaf that is a Python scalar (or a weakly typed
    tracer, the carry of an enclosing loop) is weakly typed (tracing.is_weak)."""
    leaves, tree = pytree.flatten(init)
    avals = [_leaf_aval(x) for x in leaves]
    return leaves, tree, avals, [is_weak(x) for x in leaves]


def _traced_loop_body(name, fn, tree, avals, weak, extra_avals=()):
    """Trace a loop body whose first outputs are the carry, then check the carry. Inside
    the body a weakly typed carry promotes as a Python scalar (c + float32 -> float32); a
    weak carry the body returns with another dtype starts from the promotion of the two,
    no longer weak, and the body is traced again (JAX's _promote_weak_typed_inputs), until
    no carry changes. Returns (body, output treedef, consts, carry avals, which carries
    are weak going in); `body.out_weak`: which outputs are."""
    from .numpy.promotion import join_dtypes
    avals, weak, n = list(avals), list(weak), len(avals)
    while True:
        body, out_tree, consts = _trace_body(fn, avals + list(extra_avals),
                                             weak + [False] * len(extra_avals))
        outs = [v.aval for v in body.outputs[:n]]
        changed = [i for i in range(n) if weak[i] and outs[i].dtype != avals[i].dtype and
                   outs[i].shape == avals[i].shape]
        if not changed:
            break
        for i in changed:  # each pass makes one weak carry typed: this ends
            dtype = join_dtypes((avals[i].dtype, True), (outs[i].dtype, body.out_weak[i]))
            avals[i], weak[i] = Aval(avals[i].shape, dtype), False
    carry_tree = out_tree[1][0] if fn.splits else out_tree
    _check_carry(name, tree, carry_tree, avals, outs)
    return body, out_tree, consts, avals, weak


def _activity(body: Graph, act: list[bool], first: int, n: int) -> list[bool]:
    """Per body input: active (depends on a differentiated input), with the carries
    (inputs first..first+n, outputs 0..n) closed under iteration."""
    from .autodiff import _active_vars
    act = list(act)
    while True:
        flags = [a and is_float(v.aval.dtype) for a, v in zip(act, body.inputs)]
        active = _active_vars(body, [i for i, a in enumerate(flags) if a])
        new = [act[first + i] or (isinstance(o, Var) and o.id in active)
               for i, o in enumerate(body.outputs[:n])]
        if new == act[first:first + n]:
            return flags
        act[first:first + n] = new


def _wanted_carries(body: Graph, want: list[bool], active: list[bool], first: int,
                    n: int) -> list[bool]:
    """Per body output: whether its cotangent can be nonzero, with the carries closed under
    iteration (a carry whose input feeds a wanted output is wanted)."""
    from .autodiff import reaching
    want = list(want)
    while True:
        reach = reaching(body, [o for o, w in zip(body.outputs, want) if w])
        new = [want[i] or (active[first + i] and body.inputs[first + i].id in reach)
               for i in range(n)]
        if new == want[:n]:
            return want
        want[:n] = new


def body_vjp(body: Graph, wrt: list[int], wanted: list[int]) -> tuple[Graph, list]:
    """The joint graph of a body: inputs body.inputs + one cotangent per wanted output;
    outputs body.outputs + the cotangents of inputs `wrt` (None where none reaches)."""
    from .autodiff import _active_vars, backward, reaching, replay
    with new_trace() as t:
        args = [t.new_arg(v.aval) for v in body.inputs]
        seeds = [t.new_arg(body.outputs[i].aval) for i in wanted]
        sub = Graph(body.inputs, body.eqns, [body.outputs[i] for i in wanted])
        active = _active_vars(body, wrt)
        env, residuals = replay(body, args, active, reaching(body, sub.outputs))

        def read(atom):
            if isinstance(atom, Literal):
                return Tracer(t, atom)
            v = env[atom.id]
            return v if isinstance(v, Tracer) else Tracer(t, Literal.of(v))
        cts = backward(sub, active, read, seeds, residuals)
        grads = [cts.get(body.inputs[i].id) for i in wrt]
        joint = t.graph([read(o) for o in body.outputs] + [g for g in grads if g is not None])
    it = iter(joint.outputs[len(body.outputs):])
    return joint, [next(it) if g is not None else None for g in grads]


def split_joint(joint: Graph, n_primal: int, grads: list, checkpoint: bool, n_consts: int):
    """Cut a body's joint graph: (forward eqns, backward eqns, residual vars, invariant ids).
    The forward part reads no cotangent; residuals are the forward values the backward part
    reads (with `checkpoint`: only the primal inputs, the rest is recomputed). Values of the
    consts alone (loop invariants: a transposed weight matrix) are residuals computed once,
    outside the loop, never per step."""
    seeded = {v.id for v in joint.inputs[n_primal:]}
    invariant = {v.id for v in joint.inputs[:n_consts]}
    fwd, bwd = [], []
    for e in joint.eqns:
        ins = {a.id for a in e.inputs if isinstance(a, Var)}
        if ins & seeded:
            seeded.update(v.id for v in e.outputs)
            bwd.append(e)
        elif ins <= invariant:
            invariant.update(v.id for v in e.outputs)
            fwd.append(e)
        else:  # forward work (in checkpoint mode recomputed in the backward pass too)
            fwd.append(e)
            if checkpoint:
                bwd.append(e)
    need = {g.id for g in grads if isinstance(g, Var)}
    kept = []
    for e in reversed(bwd):
        if any(v.id in need for v in e.outputs):
            kept.append(e)
            need.update(a.id for a in e.inputs if isinstance(a, Var))
    defined = {v.id for e in kept for v in e.outputs} | {v.id for v in joint.inputs[n_primal:]}
    by_id = {v.id: v for v in joint.inputs}
    by_id.update((v.id, v) for e in joint.eqns for v in e.outputs)
    residuals = [by_id[i] for i in sorted(need - defined)]
    return fwd, kept[::-1], residuals, invariant


def loop_body_vjp(body: Graph, act: list, want: list, n_consts: int, n_carry: int,
                  checkpoint: bool = False) -> dict:
    """A loop body's VJP cut for a loop (scan and while alike; body inputs: consts, carries,
    x slices). Gradients go to the active inputs (a carry only where its cotangent is
    wanted); the residuals are sorted by where the loop finds them: `res_c` a const (the
    loop's operand at `pos`), `res_i` an invariant of the consts alone (computed once, by the
    graph `inv`), `res_x` an x slice, `res_s` stored per step. Keys: joint, grads, wrt,
    wanted, fwd, bwd, pos, res_c, res_i, res_x, res_s, inv."""
    from .autodiff import _active_vars
    nc, nk, n_in = n_consts, n_carry, len(body.inputs)
    active = _activity(body, list(act), nc, nk)
    act_vars = _active_vars(body, [i for i, a in enumerate(active) if a])
    want_out = [w and isinstance(o, Var) and o.id in act_vars
                for w, o in zip(want, body.outputs)]
    want_out = _wanted_carries(body, want_out, active, nc, nk)
    wrt = [i for i in range(n_in)
           if active[i] and not (nc <= i < nc + nk and not want_out[i - nc])]
    wanted = [i for i, w in enumerate(want_out) if w]
    joint, grads = body_vjp(body, wrt, wanted)
    fwd, bwd, res, invariant = split_joint(joint, n_in, [g for g in grads if g is not None],
                                           checkpoint, nc)
    pos = {v.id: i for i, v in enumerate(joint.inputs[:n_in])}
    res_c = [r for r in res if pos.get(r.id, nc) < nc]
    res_i = [r for r in res if r.id in invariant and r.id not in pos]
    res_x = [r for r in res if pos.get(r.id, -1) >= nc + nk]
    res_s = [r for r in res if r not in res_c and r not in res_x and r not in res_i]
    inv = Graph(list(joint.inputs[:nc]),
                [e for e in fwd if all(v.id in invariant for v in e.outputs)], res_i)
    return {"joint": joint, "grads": grads, "wrt": wrt, "wanted": wanted, "fwd": fwd,
            "bwd": bwd, "pos": pos, "res_c": res_c, "res_i": res_i, "res_x": res_x,
            "res_s": res_s, "inv": inv}


class _ScanResiduals:
    """What a scan's forward half hands its backward half."""

    def __init__(self, **kw) -> None:
        self.__dict__.update(kw)


def _move_batch(x, src: int, dst: int):
    perm = list(range(x.ndim))
    perm.insert(dst, perm.pop(src))
    return transpose_p.bind(x, perm=tuple(perm))


def _batched_graph(graph: Graph, batched: list[bool], size: int, force: list[bool]):
    """batch_graph, with the outputs marked in `force` batched even where the body leaves
    them unbatched (a loop carry that must keep one shape)."""
    from .batching import batch_graph
    g, out_b = batch_graph(graph, batched, size)
    if all(b or not f for b, f in zip(out_b, force)):
        return g, out_b

    def fn(*xs):
        outs = eval_graph(g, xs)
        return [broadcast_p.bind(o, shape=(size,) + tuple(o.shape)) if f and not b else o
                for o, b, f in zip(outs, out_b, force)]
    return _retrace_graph(fn, [v.aval for v in g.inputs]), [
        b or f for b, f in zip(out_b, force)]


def _batch_size(args, dims) -> int:
    return next(a.shape[d] for a, d in zip(args, dims) if d is not None)


def _clip_index(index, n: int):
    from .primitives.elementwise import max_p, min_p
    i = convert_p.bind(index, dtype=np.dtype(np.int32)) if index.dtype != np.int32 else index
    return min_p.bind(max_p.bind(i, 0), n - 1)


class _Fn:
    """A user function as a function of flat tracers (for tracing); `splits`: it returns a
    pair (carry, y) of which the carry comes first in the flat outputs."""

    def __init__(self, fn, wrap, splits=False) -> None:
        self.fn, self.wrap, self.splits = fn, wrap, splits
        self.__name__ = getattr(fn, "__name__", "fn")
        self.__code__ = getattr(fn, "__code__", None)

    def __call__(self, *xs):
        return self.wrap(*xs)


def _as_operand(x, aval: Aval):
    if isinstance(x, Tracer):  # a weakly typed one may have been promoted (a nested loop's)
        return x if x.dtype == aval.dtype else convert_p.bind(x, dtype=aval.dtype)
    return np.asarray(x, aval.dtype)


def _out(o):
    return o[()] if isinstance(o, np.ndarray) and o.ndim == 0 else o


def _outs(outs, weak: list[bool]) -> list:
    """A loop's or a branch's results, weakly typed where `weak` says: a tracer marked so;
    under a trace, a concrete scalar (a loop of constants) as a Python scalar, weak too."""
    return [weakly(o, w) if isinstance(o, Tracer) else
            o.item() if w and np.ndim(o) == 0 and trace_stack() else _out(o)
            for o, w in zip(outs, weak, strict=True)]
