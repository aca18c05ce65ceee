"""Forward-mode autodiff: Graph -> a Graph of primals and tangents (JVP).

The equations are replayed into a new trace, and after each one its primitive's JVP rule
(the `jvp` field of its `defprim`) turns the tangents of its inputs into the tangent of its
output. Rules are written in primitives, so the result is an ordinary graph: it fuses like
any other, and reverse mode can differentiate it again (and forward mode can run over a
reverse-mode graph: `jvp(grad(f))`, the cheap Hessian-vector product).

A tangent that is None is a symbolic zero: nothing is emitted for it, an equation none of
whose inputs carries a tangent gets no tangent equations, and only the graph's outputs are
filled with zeros. Integer and bool values carry no tangent (JAX's float0). stop_gradient's
rule gives a zero tangent, as in JAX.
"""
from __future__ import annotations

from . import errors
from .errors import GradientError, user_error
from .ir import Aval, Graph, Literal
from .primitives import is_float
from .primitives.elementwise import convert_p
from .primitives.layout import broadcast_p
from .tracing import Tracer, new_trace


def jvp_graph(graph: Graph, tangent_in: list[bool]) -> Graph:
    """The JVP of `graph`: inputs `graph.inputs + [a tangent per input with tangent_in]`,
    outputs `graph.outputs + [the tangent of each output]` (zeros where none reaches it).
    """
    with new_trace() as t:
        primals = [t.new_arg(v.aval) for v in graph.inputs]
        # (an integer input's tangent is an input too, and ignored: it carries none)
        tangents = [t.new_arg(v.aval) if want else None
                    for v, want in zip(graph.inputs, tangent_in)]
        tangents = [tan if is_float(v.aval.dtype) else None
                    for v, tan in zip(graph.inputs, tangents)]
        env: dict[int, tuple] = {v.id: (p, tan) for v, p, tan in
                                 zip(graph.inputs, primals, tangents)}

        def read(atom) -> tuple:
            if isinstance(atom, Literal):
                return Tracer(t, atom), None
            return env[atom.id]

        prev = errors.replaying(None)
        try:
            for eqn in graph.eqns:
                errors.replaying(eqn.where)
                xs, ts = zip(*map(read, eqn.inputs)) if eqn.inputs else ((), ())
                if eqn.prim.multiple_results:  # a loop: its rule gives outputs and tangents
                    if any(x is not None for x in ts):
                        outs, tans = eqn.prim.jvp(tuple(ts), *xs, **eqn.params)
                    else:
                        outs, tans = eqn.prim.bind(*xs, **eqn.params), [None] * len(eqn.outputs)
                    for var, out, tan in zip(eqn.outputs, outs, tans):
                        env[var.id] = (out, tan if is_float(var.aval.dtype) else None)
                    continue
                out = eqn.prim.bind(*xs, **eqn.params)
                (var,) = eqn.outputs
                tan = None
                if any(x is not None for x in ts) and is_float(var.aval.dtype):
                    tan = _tangent(eqn, ts, out, xs)
                env[var.id] = (out, tan)
        finally:
            errors.replaying(prev)
        outs = [read(o) for o in graph.outputs]
        return t.graph([p for p, _ in outs] +
                       [tan if tan is not None else zeros(t, p.aval) for p, tan in outs])


def _tangent(eqn, ts, out, xs):
    """The output tangent of one equation from its rule, in the output's shape and dtype."""
    prim = eqn.prim
    if prim.jvp is None:
        if prim.vjp is None:  # e.g. argmax: no derivative, and its output is no float
            return None
        raise user_error(GradientError, f"forward-mode differentiation (jvp) of the "
                         f"primitive '{prim.name}' is not implemented.",
                         "declare a jvp rule in its defprim (see CONTRIBUTING.md), or use "
                         "reverse mode (tj.grad, tj.vjp, tj.jacrev).", eqn.where)
    tan = prim.jvp(tuple(ts), out, *xs, **eqn.params)
    if tan is None:
        return None
    aval = eqn.outputs[0].aval
    if tan.dtype != aval.dtype:
        tan = convert_p.bind(tan, dtype=aval.dtype)
    if tan.shape != aval.shape:  # an input's tangent that the op broadcasts
        tan = broadcast_p.bind(tan, shape=aval.shape)
    return tan


def zeros(t, aval: Aval) -> Tracer:
    """A zero tangent of `aval` on trace `t` (a broadcast scalar: nothing read)."""
    zero = Tracer(t, Literal.of(0, aval.dtype))
    return broadcast_p.bind(zero, shape=aval.shape) if aval.shape else zero
