"""Fusion: partition a simplified joint graph into kernels (loop nests) and library steps.
`plan(graph)` is the only place that decides kernel boundaries; every backend compiles the
Plan it returns.

A Kernel is a loop nest over an iteration `space`. Every value computed in it is placed in
that space by an axis map (`amaps[var id]`: per dimension of the value, the space axis it
runs along, or None for a size-1 dimension), so broadcasting is indexing, never a copy.
Values come in four kinds:

    elem  computed inside the loops (forward and backward alike: multi-output fusion)
    row   a reduction over the kernel's `inner` axes (a row softmax's max and sum): the
          kernel becomes outer loops over rows with one pass over the row per reduction
          level, so a row is read from memory once and re-read from cache
    acc   a reduction over everything: an accumulator, final only after the loops
    epi   scalar work on accumulators after the loops (mean's 1/n, the loss's log)

A kernel boundary comes only from a true dependence: loop work that needs an accumulator's
final value, a reduction that does not fit the loop nest, or a library step (matmul goes to
BLAS, but a matrix-vector product is a multiply and a sum in loops; transposes, slices and
copies to NumPy) whose input the open kernel computes.

    x ─┬─ tanh ─ mul ─┬─ add ── reduce_sum(acc) ── epi ─▶ loss
       └─ sin ────────┘        grad ops (elem) ───────────▶ dx       one kernel, one pass
"""
from __future__ import annotations

from dataclasses import dataclass, field, replace

from .ir import Eqn, Graph, Literal, Var
from .primitives import CONTRACT, ELEMENTWISE, LAYOUT, REDUCE

AxisMap = tuple  # tuple[int | None, ...]


@dataclass(eq=False)
class Kernel:
    space: tuple[int, ...]
    inner: tuple[int, ...] = ()          # axes reduced by `row` reductions
    eqns: list[Eqn] = field(default_factory=list)
    amaps: dict[int, AxisMap] = field(default_factory=dict)
    kinds: dict[int, str] = field(default_factory=dict)
    outputs: list[Var] = field(default_factory=list)  # values stored to memory
    reduce_in: dict[int, AxisMap] = field(default_factory=dict)  # reduction out -> operand map

    @property
    def inputs(self) -> list:
        """Operands read from memory: vars from outside the kernel and array literals."""
        seen, out = set(), []
        for e in self.eqns:
            for a in e.inputs:
                key = a.id if isinstance(a, Var) else id(a)
                if key in seen or (isinstance(a, Var) and a.id in self.kinds) or (
                        isinstance(a, Literal) and a.is_scalar):
                    continue
                seen.add(key)
                out.append(a)
        return out

    def describe(self) -> str:
        ops = " ".join(e.prim.name for e in self.eqns)
        shape = ",".join(map(str, self.space))
        inner = f" inner axes {self.inner}" if self.inner else ""
        return f"kernel over [{shape}]{inner}: {ops}"


@dataclass(eq=False)
class Step:
    """One equation run outside the loops: matmul (BLAS) or a layout change (NumPy)."""
    eqn: Eqn

    def describe(self) -> str:
        return f"step: {self.eqn.prim.name}"


class _Reject(Exception):
    """The equation cannot join this kernel."""


def is_view_reshape(e: Eqn) -> bool:
    """Loop work that keeps the element order (a reshape that only adds or removes size-1
    dims): inside a kernel it relabels axes; of a value in memory it is a free NumPy view."""
    return e.prim.same_order and e.prim.fuses(e)


def _default_map(shape: tuple[int, ...], space: tuple[int, ...]) -> AxisMap:
    """Place a value computed from memory alone: right-aligned against the space (NumPy
    style) when that fits, else its dims in order on space axes of the same sizes (a row
    value of keepdims=False, shape (n,) in an (n, m) space). Either placement is checked by
    every in-kernel consumer, whose axis maps follow NumPy's rules: a wrong one is rejected
    as a conflict, never computed."""
    off = len(space) - len(shape)
    if off >= 0 and all(d == 1 or space[off + k] == d for k, d in enumerate(shape)):
        return tuple(None if d == 1 else off + k for k, d in enumerate(shape))
    out, axis = [], 0
    for d in shape:
        if d == 1:
            out.append(None)
            continue
        while axis < len(space) and space[axis] != d:
            axis += 1
        if axis == len(space):
            raise _Reject
        out.append(axis)
        axis += 1
    return tuple(out)


def footprint(amap: AxisMap) -> set[int]:
    return {a for a in amap if a is not None}


class _Builder:
    """Places equations of one kernel in its space; raises _Reject when one can't join."""

    def __init__(self, space, inner=(), eqns=(), amaps=None, kinds=None, reduce_in=None):
        self.k = Kernel(tuple(space), tuple(inner), list(eqns), dict(amaps or {}),
                        dict(kinds or {}), reduce_in=dict(reduce_in or {}))

    def copy(self) -> _Builder:
        k = self.k
        return _Builder(k.space, k.inner, k.eqns, k.amaps, k.kinds, k.reduce_in)

    def operand_map(self, a) -> AxisMap | None:
        """The axis map of an operand computed in this kernel; None for one from memory."""
        if isinstance(a, Var) and a.id in self.k.amaps:
            return self.k.amaps[a.id]
        return None

    def add(self, e: Eqn) -> None:
        k = self.k
        in_kinds = {k.kinds[a.id] for a in e.inputs if isinstance(a, Var) and a.id in k.kinds}
        out = e.outputs[0]
        if in_kinds & {"acc", "epi"}:
            if out.aval.size != 1 or in_kinds - {"acc", "epi"} or not (
                    e.prim.kind in ELEMENTWISE or is_view_reshape(e)):
                raise _Reject  # needs an accumulator's final value inside the loops
            k.eqns.append(e)
            k.amaps[out.id] = (None,) * out.aval.ndim
            k.kinds[out.id] = "epi"
            return
        if e.prim.load is not None and any(self.operand_map(a) is not None
                                           for a in e.inputs):
            raise _Reject  # a gather reads its operands at any index: from memory only
        if is_view_reshape(e):
            src = e.inputs[0]
            if not (isinstance(src, Var) and src.id in k.amaps):
                raise _Reject  # a view of memory is a free NumPy reshape, not loop work
            axes = iter(a for a, d in zip(k.amaps[src.id], src.aval.shape) if d != 1)
            k.amaps[out.id] = tuple(None if d == 1 else next(axes) for d in out.aval.shape)
            k.kinds[out.id] = k.kinds[src.id]
        elif e.prim.kind == REDUCE:
            self._add_reduce(e)
        else:
            k.amaps[out.id] = self._elementwise_map(e)
            k.kinds[out.id] = "elem"
        empty = {a for a, d in enumerate(k.space) if d == 0}
        if empty and k.kinds[out.id] == "elem" and not footprint(k.amaps[out.id]) >= empty:
            raise _Reject  # a loop over an empty axis would never compute it
        k.eqns.append(e)

    def _elementwise_map(self, e: Eqn) -> AxisMap:
        shape = e.outputs[0].aval.shape
        r = len(shape)
        out: list = [None] * r
        for a in e.inputs:
            m = self.operand_map(a)
            if m is None:
                continue
            off = r - len(m)
            for d, ax in enumerate(m):
                if ax is not None:
                    if out[off + d] not in (None, ax):
                        raise _Reject
                    out[off + d] = ax
        default = _default_map(shape, self.k.space) if any(
            d != 1 and out[i] is None for i, d in enumerate(shape)) else None
        for i, d in enumerate(shape):
            if d != 1 and out[i] is None:
                out[i] = default[i]
            if out[i] is not None and self.k.space[out[i]] != d:
                raise _Reject
        if len(footprint(out)) != sum(1 for ax in out if ax is not None):
            raise _Reject
        return tuple(out)

    def _add_reduce(self, e: Eqn) -> None:
        k = self.k
        x, out = e.inputs[0], e.outputs[0]
        m = self.operand_map(x)
        if m is None:
            m = _default_map(x.aval.shape, k.space)
        axes = e.params["axes"]
        reduced = {m[d] for d in axes if m[d] is not None}
        out_map = tuple(None if d in axes else ax for d, ax in enumerate(m))
        k.amaps[out.id] = out_map
        k.reduce_in[out.id] = m
        if not reduced:  # only size-1 dims: a copy
            k.kinds[out.id] = "elem"
            return
        nontrivial = {a for a, d in enumerate(k.space) if d != 1}
        if not footprint(out_map):
            # accumulator: the operand must vary over every loop it runs in, else it would
            # be added up once per iteration of a loop it does not depend on
            if not footprint(m) >= nontrivial - set(k.inner):
                raise _Reject
            k.kinds[out.id] = "acc"
            return
        if k.inner and reduced != set(k.inner):
            raise _Reject
        if not k.inner:
            k.inner = tuple(sorted(reduced))
        k.kinds[out.id] = "row"


def _new_builder(e: Eqn) -> _Builder:
    shape = e.inputs[0].aval.shape if e.prim.kind == REDUCE else e.outputs[0].aval.shape
    b = _Builder(shape)
    b.add(e)
    return b


def _try_grow(b: _Builder, e: Eqn, stored: frozenset = frozenset()) -> _Builder | None:
    """An elementwise-only kernel may widen its space to one its space fits in: a broadcast
    of it (row work that feeds full-size work, e.g. g/s then g/s * e), or one with its dims
    in order on axes of the same sizes (vmap: per-example scalars (B,) feeding per-example
    vectors (B, n)). Re-adding its equations checks every placement. Not when it computes a
    value of `stored` (the graph's outputs): widened, it would store each element once per
    point of the new axes (a loop body's per-step vector in a matrix-vector kernel)."""
    k = b.k
    if k.inner or any(v != "elem" for v in k.kinds.values()) or e.prim.kind not in ELEMENTWISE:
        return None
    if any(o.id in stored for x in k.eqns for o in x.outputs):
        return None
    shape = e.outputs[0].aval.shape
    if shape == k.space:
        return None
    try:
        _default_map(k.space, shape)
    except _Reject:
        return None
    grown = _Builder(shape)
    try:
        for old in k.eqns + [e]:
            grown.add(old)
    except _Reject:
        return None
    return grown


@dataclass(eq=False)
class Plan:
    """How to compute `graph`: kernels and steps in execution order. It reads as the list of
    its items (len, index, iterate, unpack)."""
    graph: Graph
    items: list[Kernel | Step]

    def describe(self) -> str:
        return describe(self.items)

    @property
    def kernels(self) -> list[Kernel]:
        """The loop nests, in order."""
        return [it for it in self.items if isinstance(it, Kernel)]

    @property
    def steps(self) -> list[Step]:
        """The library steps (BLAS, NumPy), in order."""
        return [it for it in self.items if isinstance(it, Step)]

    def __iter__(self):
        return iter(self.items)

    def __len__(self) -> int:
        return len(self.items)

    def __getitem__(self, i):
        return self.items[i]


def _bind(prim, inputs, where, **params) -> tuple[Eqn, Var]:
    (aval,) = prim.abstract_eval(*[a.aval for a in inputs], **params)
    out = Var(aval)
    return Eqn(prim, tuple(inputs), params, (out,), where), out


def matvec_as_loops(graph: Graph) -> Graph:
    """A matrix-vector product A @ v ((..., n, k) @ (k, 1)) becomes a multiply and a sum over
    k: loop work that fuses with what computes A or uses the product. A memory-bound product
    gains nothing from BLAS, and a BLAS call in a plan makes the CPU backend run its loops
    serially (OpenBLAS threads spin after a call and fight a parallel loop). Not when A is a
    transpose (x.T @ g reads x along columns: BLAS does that better than a loop)."""
    from .primitives.elementwise import mul_p
    from .primitives.layout import reshape_p
    from .primitives.reductions import reduce_sum_p
    made = {o.id: e for e in graph.eqns for o in e.outputs}
    eqns: list[Eqn] = []
    for e in graph.eqns:
        a, b = e.inputs if e.prim.kind == CONTRACT else (None, None)
        src = made.get(a.id) if isinstance(a, Var) else None
        if a is None or b.aval.ndim != 2 or b.aval.shape[1] != 1 or \
                a.aval.dtype.kind != "f" or (src is not None and src.prim.kind == LAYOUT
                                             and not src.prim.same_order):
            eqns.append(e)
            continue
        row, vt = _bind(reshape_p, [b], e.where, shape=(1, b.aval.shape[0]))
        prod, p = _bind(mul_p, [a, vt], e.where)
        total = Eqn(reduce_sum_p, (p,), {"axes": (p.aval.ndim - 1,)}, e.outputs, e.where)
        eqns += [row, prod, total]
    return graph if len(eqns) == len(graph.eqns) else replace(graph, eqns=eqns)


def plan(graph: Graph) -> Plan:
    """Kernels and steps in execution order; each kernel's `outputs` are the values it
    stores (used by a later kernel or step, or returned)."""
    graph = matvec_as_loops(graph)
    items: list[Kernel | Step] = []
    current: _Builder | None = None
    stored = frozenset(o.id for o in graph.outputs if isinstance(o, Var))

    def produced_by_current(e: Eqn) -> bool:
        return current is not None and any(
            isinstance(a, Var) and a.id in current.k.kinds for a in e.inputs)

    for e in graph.eqns:
        if e.prim.fuses(e) and current is not None:
            trial = current.copy()
            try:
                trial.add(e)
                current = trial
                continue
            except _Reject:
                grown = _try_grow(current, e, stored)
                if grown is not None:
                    current = grown
                    continue
        if e.prim.fuses(e) and not is_view_reshape(e):
            if current is not None:
                items.append(current.k)
            current = _new_builder(e)
            continue
        # a step (library call, or a free reshape of memory) runs before the open kernel
        # unless it needs that kernel's values
        if produced_by_current(e):
            items.append(current.k)
            current = None
        items.append(Step(e))
    if current is not None:
        items.append(current.k)
    _mark_outputs(items, graph)
    return Plan(graph, items)


def _mark_outputs(items: list[Kernel | Step], graph: Graph) -> None:
    needed = {o.id for o in graph.outputs if isinstance(o, Var)}
    for item in reversed(items):
        eqns = [item.eqn] if isinstance(item, Step) else item.eqns
        if isinstance(item, Kernel):
            item.outputs = [v for e in item.eqns for v in e.outputs if v.id in needed]
            inside = {v.id for e in item.eqns for v in e.outputs}
            needed -= inside
        for e in eqns:
            needed.update(a.id for a in e.inputs if isinstance(a, Var))


def describe(items: list[Kernel | Step]) -> str:
    return "\n".join(f"[{i}] {item.describe()}" for i, item in enumerate(items))
