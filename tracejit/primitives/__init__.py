"""Every primitive is declared once, by one `defprim` call that says everything about it:
its shape/dtype rule, its NumPy reference implementation, its VJP (written in primitives, so
the backward pass is itself traceable), its JVP (forward mode, also in primitives) and its
batching rule (vmap), and what the backends need: the scalar expression
emitted for it (`emit`, with per-backend overrides in `emit_for`), how fusion treats it
(`fusion`), whether a later pass recomputes it rather than stash it (`cheap`), a no-copy
NumPy form for CPU steps (`view`) and a gather loop body for GPU steps (`gather`).

Kinds: UNARY/BINARY/SELECT are elementwise; REDUCE reduces over `axes` keeping them as size-1
dims (keepdims=False is a reshape after it); LAYOUT moves data; CONTRACT is matmul; INDEX reads
or updates at integer index arrays (gathers and scatters: an operand, its indices, maybe
updates); LINALG is a LAPACK routine over the last two axes of stacked matrices (solve,
inv, det, cholesky); SCAN is a recurrence along one axis (cumsum, cumprod).
"""
from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from ..errors import ShapeError, user_error
from ..ir import Aval, Literal

UNARY, BINARY, SELECT, REDUCE, LAYOUT, CONTRACT, INDEX, LINALG, SCAN = (
    "unary", "binary", "select", "reduce", "layout", "contract", "index", "linalg", "scan")
ELEMENTWISE = (UNARY, BINARY, SELECT)

# where tests sample inputs for a primitive (name -> (low, high) and a rule)
ANY, POSITIVE, UNIT, NONZERO, GE1, SMOOTH = "any", "positive", "unit", "nonzero", "ge1", "smooth"
# square matrices in the last two axes: well conditioned; symmetric positive definite
INVERTIBLE, SPD = "invertible", "spd"


# how fusion treats an equation: "loop" joins a loop nest (elementwise work, reductions as
# accumulators, broadcasting as indexing); "step" runs on its own (BLAS, a NumPy call, a
# gather kernel)
LOOP, STEP = "loop", "step"


@dataclass(frozen=True)
class Reduce:
    """How a backend emits a reduction: the start value for a dtype and the combine step.
    `lanes`: a CPU row reduction keeps LANES independent partials (loopgen.emit_pass);
    False where LLVM vectorizes the combine itself (sums, and max/min through llvm.maximum).
    `wide`: float32 partials are carried in float64 (a sum, whose float32 rounding error grows
    with its length; a max is exact)."""
    identity: Callable[[np.dtype], Any]  # e.g. lambda dtype: 0; a Python scalar
    combine: str                         # e.g. "({acc} + {x})"
    lanes: bool = True
    wide: bool = False


@dataclass(eq=False)
class Primitive:
    name: str
    kind: str
    shape: Callable[..., Aval | list[Aval]]
    impl: Callable[..., Any]
    vjp: Callable[..., tuple] | None = None
    # forward mode: (tangents, out, *inputs, **params) -> the output's tangent, or None for
    # a zero tangent; tangents[i] is None where input i's tangent is zero. Written in
    # primitives like `vjp` (forward.py), so jvp(grad(f)) and grad(jvp(f)) both work.
    # Elementwise primitives and reductions get their kind's rule unless they declare one
    jvp: Callable[..., Any] | None = None
    # vmap: (prim, args, dims, **params) -> (out, out_dim). dims[i] is 0 (args[i] carries
    # the batch as its first axis) or None (the same value for every example); out_dim
    # likewise. Called only when some dim is 0 (batching.py). Elementwise primitives and
    # reductions get their kind's rule unless they declare one
    batch: Callable[..., tuple] | None = None
    # scalar template shared by the Numba backends ({0}, {1}: operands; {T}: the output's
    # scalar type; params by name), a function of the output dtype giving one, or a Reduce
    emit: str | Reduce | Callable[[np.dtype], str] | None = None
    # per-backend overrides of `emit` (of a Reduce's combine), keyed by backend module name
    emit_for: dict[str, str | Callable[[np.dtype], str]] = field(default_factory=dict)
    numpy: tuple[str, ...] = ()
    domain: str | None = None
    erase_after_autodiff: bool = False
    # per input, where its cotangent can be nonzero ((g, out, *inputs) -> bool arrays or
    # None): autodiff keeps cotangents exact zeros outside (NaN-safe where; see autodiff.py)
    masks: Callable[..., tuple] | None = None
    # algebraic simplification: (inputs, output aval, producer) -> an atom equal to the
    # output, or None; producer(atom) is the equation that computed an input (or None)
    rewrite: Callable[..., Any] | None = None
    # the output is the input broadcast to a shape: an elementwise consumer may read the
    # input instead (implicit broadcasting, passes.algebraic)
    broadcasts: bool = False
    fusion: str | Callable[[Any], str] = STEP   # LOOP, STEP, or eqn -> LOOP | STEP
    cheap: bool = False     # cheaper to recompute in a later pass over a row than to stash
    view: Callable[..., Any] | None = None  # no-copy impl (the result may alias the input)
    # the output holds the input's elements in the same C order, only the shape differs
    # (reshape): a contiguous input needs no copy, and inside a loop only size-1 dims move
    same_order: bool = False
    # GPU step: lines computing o[i0, ...] from inputs x0, x1, ... (t: the flat index of o)
    gather: Callable[[Any], list[str]] | None = None
    # a check on host copies of the inputs before a device step runs (an index bounds check
    # that raises IndexError: a GPU kernel cannot raise)
    host_check: Callable[..., Any] | None = None
    # a fused loop reads operand 0 (in memory) at a computed index (take, take_along):
    # (eqn, operand 0's name, index_at, output index names) -> the scalar expression, where
    # index_at(axis map) is operand 1's expression placed on those loop axes
    load: Callable[..., str] | None = None
    # input positions that may be given any shape (of the same rank) broadcastable to the one
    # the rule expects (passes feed them a broadcast's source: a scatter's updates)
    broadcast_inputs: tuple[int, ...] = ()
    # CPU step: the body of `def step(o, nth, x0, x1, ...)` filling o (a scatter in index
    # order; a `prange` over at most `nth`, the thread count, slabs of o that each chunk
    # owns runs it in parallel), compiled with Numba instead of running `impl`
    serial: Callable[[Any], list[str]] | None = None
    # a device backend runs this step's `impl` on host copies of its inputs and copies the
    # result back (LAPACK routines: the reference, where no device kernel exists)
    on_host: bool = False
    # loops and branches (tracejit/loops.py): the equation has one output per result (bind
    # returns a tuple) and its params hold sub-graphs
    multiple_results: bool = False
    # reverse mode in two halves: (active_in, wanted_out, *inputs, **params) -> (outputs,
    # residuals) replaces the forward equation under autodiff (a loop that also stacks what
    # its backward pass reads); `vjp` is then (cotangents of the outputs, residuals) -> the
    # inputs' cotangents
    vjp_fwd: Callable[..., tuple] | None = None
    # a step the backend compiles through this hook: (eqn, backend module) -> a function of
    # the input arrays returning the list of outputs (a loop over the body's compiled plan)
    step: Callable[..., Callable] | None = None

    def __repr__(self) -> str:
        return f"<primitive {self.name}>"

    def fuses(self, eqn) -> bool:
        """Whether fusion puts `eqn` (an equation of this primitive) in a loop nest."""
        how = self.fusion(eqn) if callable(self.fusion) else self.fusion
        return how == LOOP

    def abstract_eval(self, *avals: Aval, **params) -> list[Aval]:
        out = self.shape(*avals, **params)
        return list(out) if isinstance(out, (list, tuple)) else [out]

    def bind(self, *args, **params):
        """Apply to tracers (records an equation) or to concrete arrays (runs `impl`)."""
        trace = _find_trace(args)
        if trace is not None:
            return trace.bind(self, args, params)
        vals = [a.val if isinstance(a, Literal) else a for a in args]
        return self.impl(*vals, **params)


REGISTRY: dict[str, Primitive] = {}


_LISTENERS: list[Callable[[Primitive], None]] = []


def defprim(name: str, kind: str, **fields) -> Primitive:
    """Declare a primitive: everything about it, in one call (see Primitive's fields)."""
    assert name not in REGISTRY, f"primitive {name} declared twice"
    prim = Primitive(name, kind, **_kind_rules(kind, fields))
    REGISTRY[name] = prim
    for listener in _LISTENERS:
        listener(prim)
    return prim


def on_register(listener: Callable[[Primitive], None]) -> None:
    """Call `listener(prim)` for each primitive declared from now on (tracejit.numpy
    generates the wrappers of a primitive declared after import this way)."""
    _LISTENERS.append(listener)


def _find_trace(args):
    """The innermost trace among the arguments' tracers (duck-typed: tracers have `_trace`)."""
    best = None
    for a in args:
        t = getattr(a, "_trace", None)
        if t is not None and (best is None or t.level > best.level):
            best = t
    return best


def is_const(a: Any, value: float) -> bool:
    """`a` is a scalar literal equal to `value` (for rewrite rules)."""
    return isinstance(a, Literal) and a.is_scalar and a.val == value


def keep_if(x: Any, out: Aval, other: Any, unit: float) -> Any:
    """`x` when `other` is the constant `unit` and `x` already has the output's aval: the
    x*1, x/1, x-0 rewrites."""
    return x if is_const(other, unit) and getattr(x, "aval", None) == out and \
        not isinstance(x, Literal) else None


def full_on(like, shape: tuple[int, ...], dtype: np.dtype, value=0):
    """`value` in `shape`, recorded on the trace of the tracer `like` (a broadcast scalar: no
    memory is read); a NumPy array when `like` is concrete. For rules that need zeros/ones."""
    from .layout import broadcast_p
    trace = _find_trace([like])
    if trace is None:
        return np.full(shape, value, dtype)
    return trace.bind(broadcast_p, (Literal.of(value, dtype),), {"shape": tuple(shape)})


# ----- the rules a kind shares: defprim fills them in where a primitive declares none -----
def jvp_from_vjp(vjp):
    """An elementwise primitive's JVP from its VJP: its Jacobian is diagonal (symmetric), so
    the tangent is the sum over inputs of the VJP applied to that input's tangent."""
    def jvp(tangents, out, *xs, **params):
        from .elementwise import add_p
        total = None
        for i, t in enumerate(tangents):
            ct = None if t is None else vjp(t, out, *xs, **params)[i]
            if ct is not None:
                total = ct if total is None else add_p.bind(total, ct)
        return total
    return jvp


def jvp_of_reduction(vjp):
    """A reduction's JVP from its VJP (g broadcast times d out / d x): the sum over the
    reduced axes of the tangent times the VJP of ones."""
    def jvp(tangents, out, x, axes):
        from .elementwise import mul_p
        from .reductions import reduce_sum_p
        partials = vjp(full_on(out, out.shape, out.dtype, 1), out, x, axes)[0]
        return reduce_sum_p.bind(mul_p.bind(tangents[0], partials), axes=axes)
    return jvp


def batch_elementwise(prim, args, dims, **params):
    """Elementwise ops batch by broadcasting: each batched operand keeps its batch axis in
    front, with size-1 axes after it up to the example's rank, so NumPy's right-aligned
    broadcasting lines the examples up (unbatched operands broadcast over the batch)."""
    from .layout import reshape_p
    rank = max(a.ndim - (d is not None) for a, d in zip(args, dims))
    args = [reshape_p.bind(a, shape=a.shape[:1] + (1,) * (rank + 1 - a.ndim) + a.shape[1:])
            if d is not None and a.ndim < rank + 1 else a for a, d in zip(args, dims)]
    return prim.bind(*args, **params), 0


def batch_reduce(prim, args, dims, axes):
    """A reduction over an example's axes: the same axes, one up behind the batch axis."""
    return prim.bind(args[0], axes=tuple(a + 1 for a in axes)), 0


def _kind_rules(kind: str, fields: dict) -> dict:
    """`fields` with the kind's JVP and batching rules where none is declared: elementwise
    (JVP from the VJP, batching by broadcasting) and reductions over `axes`."""
    fields = dict(fields)
    vjp = fields.get("vjp")
    if kind in ELEMENTWISE:
        if vjp is not None:
            fields.setdefault("jvp", jvp_from_vjp(vjp))
        fields.setdefault("batch", batch_elementwise)
    elif kind == REDUCE:
        if vjp is not None:
            fields.setdefault("jvp", jvp_of_reduction(vjp))
        fields.setdefault("batch", batch_reduce)
    return fields


def is_float(dtype: np.dtype) -> bool:
    return np.issubdtype(dtype, np.inexact)


def broadcast_shapes(*shapes: tuple[int, ...], op: str = "") -> tuple[int, ...]:
    """NumPy's broadcast of `shapes`, or a ShapeError naming `op` and the user's line."""
    try:
        return tuple(np.broadcast_shapes(*shapes))
    except ValueError:
        shown = " and ".join(str(tuple(s)) for s in shapes)
        raise user_error(
            ShapeError, f"{op}: shapes {shown} cannot be broadcast together.",
            "make the shapes compatible (NumPy broadcasting: trailing dimensions must be equal "
            "or 1), e.g. with reshape, expand_dims or x[:, None].") from None


from . import (  # noqa: F401  (fill REGISTRY)
    contraction,
    elementwise,
    indexing,
    layout,
    linalg,
    reductions,
    scan,
)
