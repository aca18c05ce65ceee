"""Batching (vmap): Graph of one example -> Graph of a batch of examples.

The equations are replayed into a new trace. Each value is either batched, with the batch
as its first axis, or unbatched (the same for every example: a captured value, a constant,
or anything computed from those alone). An equation whose inputs are all unbatched is
replayed as it is; otherwise its primitive's batching rule (the `batch` field of its
`defprim`) computes the batched output. The rules are written in primitives, so the result
is an ordinary graph: elementwise work stays elementwise (a batch axis in front is one more
loop), a reduction over an example's axes becomes a row reduction, and fusion compiles a
batched per-example gradient as one loop nest, like any other graph.

The batch axis is always in front inside the graph; `vmap`'s in_axes and out_axes move it
at the boundary (transforms.py).
"""
from __future__ import annotations

from . import errors
from .errors import UnsupportedError, user_error
from .ir import Aval, Graph, Literal
from .tracing import Tracer, new_trace


def batch_graph(graph: Graph, batched: list[bool], size: int) -> tuple[Graph, list[bool]]:
    """The graph of `size` examples: an input marked in `batched` gets a leading axis of
    `size`. Returns the graph and, per output, whether it is batched (its first axis)."""
    with new_trace() as t:
        env: dict[int, tuple] = {}
        for v, b in zip(graph.inputs, batched):
            aval = Aval((size,) + v.aval.shape, v.aval.dtype) if b else v.aval
            env[v.id] = (t.new_arg(aval), 0 if b else None)

        def read(atom) -> tuple:
            if isinstance(atom, Literal):
                return Tracer(t, atom), None
            return env[atom.id]

        prev = errors.replaying(None)
        try:
            for eqn in graph.eqns:
                errors.replaying(eqn.where)
                xs, dims = zip(*map(read, eqn.inputs)) if eqn.inputs else ((), ())
                if eqn.prim.multiple_results:  # a loop: its rule batches all its outputs
                    if all(d is None for d in dims):
                        outs, out_dims = eqn.prim.bind(*xs, **eqn.params), [None] * len(eqn.outputs)
                    else:
                        outs, out_dims = eqn.prim.batch(eqn.prim, xs, dims, **eqn.params)
                    for var, out, d in zip(eqn.outputs, outs, out_dims):
                        env[var.id] = (out, d)
                    continue
                (var,) = eqn.outputs
                if all(d is None for d in dims):
                    env[var.id] = (eqn.prim.bind(*xs, **eqn.params), None)
                    continue
                env[var.id] = _apply_rule(eqn, xs, dims, size)
        finally:
            errors.replaying(prev)
        outs = [read(o) for o in graph.outputs]
        return t.graph([x for x, _ in outs]), [d is not None for _, d in outs]


def _apply_rule(eqn, xs, dims, size: int) -> tuple:
    prim = eqn.prim
    if prim.batch is None:
        raise user_error(UnsupportedError, f"vmap: the primitive '{prim.name}' has no "
                         "batching rule.", "declare one in its defprim (batch=, see "
                         "CONTRIBUTING.md), or loop over the examples in Python.", eqn.where)
    out, dim = prim.batch(prim, xs, dims, **eqn.params)
    example = eqn.outputs[0].aval
    want = example if dim is None else Aval((size,) + example.shape, example.dtype)
    assert out.aval == want, f"{prim.name}: batching rule gave {out.aval}, expected {want}"
    return out, dim
