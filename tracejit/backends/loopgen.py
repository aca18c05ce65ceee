"""The loop-nest generator shared by the Numba backends: one fusion Kernel's values placed in
loops and written as Python source lines.

Where each value is computed (fusion's kinds): `elem` values in the innermost loops; `row`
reductions end a pass over the row's inner axes, so a kernel with row reductions makes one
pass per reduction level (a row is read from memory once and re-read from cache); `acc`
reductions combine across all the loops, and `epi` values follow them. Each value is
emitted with its primitive's template: the backend's override in `emit_for` if it has a
usable one, else the shared `emit`.

    for each row:                                    (outer loops; the CPU's prange)
        pass 0:  v = f(x); r0 = max(r0, v)           r0: a row reduction
        pass 1:  w = exp(v - r0); s1 = s1 + w        v recomputed if cheap, else read back
        pass 2:  o[...] = w / s1                     from an output row it was stashed in
        total = total + ...                          acc: across every row
    loss = log(total)                                epi

Names in the source are the IR's (`v12`, `acc12`), renumbered in order of appearance by
`canonical_names` so the source (the disk cache's key) depends on the kernel's structure.
"""
from __future__ import annotations

import re

import numpy as np

from .. import fusion
from ..ir import Literal, Var
from ..primitives import REDUCE

# max/min/prod row reductions keep this many independent partials (see emit_pass)
LANES = 8


def scalar_type(dtype: np.dtype) -> str:
    """The NumPy scalar type's name in generated source (np.float32, np.bool_)."""
    return "np.bool_" if dtype == np.dtype(bool) else f"np.{dtype.name}"


def literal(val, dtype: np.dtype) -> str:
    """Source text for the scalar `val` of `dtype` (a reduction's identity)."""
    if isinstance(val, float) and np.isinf(val):
        return f"{'-' if val < 0 else ''}{scalar_type(dtype)}(np.inf)"
    return f"{scalar_type(dtype)}({val!r})"


def lesser(a: str, b: str) -> str:
    """min(a, b) of two int expressions as a conditional expression: Numba compiles `min`
    as a function of its own (0.03 s of a cold first call)."""
    return f"{a} if {a} < {b} else {b}"


def iota_axis(val: np.ndarray) -> int | None:
    """The axis along which the array constant `val` is 0, 1, ..., n-1 (n > 1; every other
    axis of size 1), else None."""
    axes = [d for d, n in enumerate(val.shape) if n != 1]
    if len(axes) != 1 or val.size < 2 or val.dtype.kind not in "iuf":
        return None
    flat = val.reshape(-1)
    if flat[0] != 0 or flat[-1] != flat.size - 1:  # most constants stop here
        return None
    return axes[0] if np.array_equal(flat, np.arange(flat.size, dtype=val.dtype)) else None


class KernelSource:
    """Places one fusion Kernel's values in loops and writes their lines; a backend's
    subclass writes the function around them (CPU: prange over rows or chunks; CUDA: a
    grid-stride launch) and names itself in `backend` (its key in a primitive's emit_for)."""

    backend = ""
    lanes = False  # max/min/prod row reductions in LANES partials (see emit_pass)
    # float32 sums (Reduce.wide) add into a float32 partial for at most `block` iterations of
    # their innermost loop, then into a float64 partial w<id> (see open_blocked); 0: no blocks
    block = 0
    direct = False  # in a laned pass: float32 sums go straight into float64 (see emit_pass)
    # kept axes after the reduced ones loop inside the pass over the row (see _tail)
    interchange = False
    # a block of rows' loop line, if the backend splits rows (its second_row_loop); else None
    row_block = None

    def __init__(self, k: fusion.Kernel, exact: frozenset = frozenset()) -> None:
        self.k, self.exact = k, exact  # primitives emitted with their shared template
        # array constants counting 0, 1, ... along one axis (the iota of a one-hot compare
        # `labels[:, None] == np.arange(n)`, a gather's VJP): the loop index, not a load
        loaded = {self.key(e.inputs[0]) for e in k.eqns if e.prim.load is not None}
        self.iotas = {self.key(a): ax for a in k.inputs if isinstance(a, Literal) and
                      self.key(a) not in loaded and (ax := iota_axis(a.val)) is not None}
        self.inputs = [a for a in k.inputs if self.key(a) not in self.iotas]
        self.in_names = {self.key(a): f"a{i}" for i, a in enumerate(self.inputs)}
        self.out_names = {v.id: f"o{i}" for i, v in enumerate(k.outputs)}
        self.consts: list[str] = []
        self.lines: list[str] = []
        space = k.space or (1,)
        self.space = space
        self.inner = list(k.inner)
        outer = [a for a in range(len(space)) if a not in self.inner]
        big = [a for a in outer if space[a] != 1]
        self.par_axis = big[0] if big else outer[0]
        self.outer = [self.par_axis] + [a for a in outer if a != self.par_axis]
        self.accs = [e for e in k.eqns if k.kinds.get(e.outputs[0].id) == "acc"]
        self._levels()
        self.tail = self._tail() if self.interchange else []
        # while a pass is emitted: loads that do not run along `hoist_axes` (its loops), to
        # be read once before them (see operand)
        self.hoist_to, self.hoist_axes = None, set()

    @staticmethod
    def key(a):
        """The name of an operand read from memory (a var, or an array literal)."""
        return a.id if isinstance(a, Var) else ("lit", id(a))

    # which pass of the row loop computes each value (row reductions end a pass)
    def _levels(self) -> None:
        k, inner = self.k, set(self.k.inner)
        self.is_inner, self.level = {}, {}
        for e in k.eqns:
            out = e.outputs[0].id
            kind = k.kinds[out]
            if kind in ("acc", "epi"):
                continue
            deps = [self.level[a.id] for a in e.inputs if isinstance(a, Var) and a.id in self.level]
            lvl = max(deps, default=0)
            if kind == "row" and e.prim.kind == REDUCE:
                lvl += 1  # available after the pass that reduces its operand
            self.level[out] = lvl
            self.is_inner[out] = bool(fusion.footprint(k.amaps[out]) & inner)

    def _tail(self) -> list:
        """Kept axes after the reduced ones (d in E[idx].sum(1) over (bag, k, d)) that the
        pass over the row loops over inside the reduction loop, with the row reductions'
        partials in arrays along them: the innermost loop then runs along the contiguous
        axis, vectorizes, and reads each gathered row once (looped outside the reduction,
        every element re-reads its index and the k-loop strides across rows: 4x slower).
        [] unless the kernel makes one pass over the row and every value, reduction operand
        and row accumulator runs along all of the tail or none of it."""
        k = self.k
        if not self.inner:
            return []
        tail = [a for a in self.outer if a > max(self.inner) and a != self.par_axis and
                self.space[a] != 1]
        maps = [*k.amaps.values(), *k.reduce_in.values()]
        tail = [a for a in tail if any(a in fusion.footprint(m) for m in maps)]
        if not tail:
            return []
        t = set(tail)
        for m in maps:
            if fusion.footprint(m) & t not in (set(), t):
                return []
        for e in k.eqns:
            v = e.outputs[0].id
            kind = k.kinds[v]
            if kind in ("elem", "row") and self.is_inner[v] and self.level[v] > 0:
                return []  # a second pass over the row
            if kind == "elem" and not self.is_inner[v] and self.level[v] == 0 and \
                    fusion.footprint(k.amaps[v]) & t:
                return []  # row work before the pass that runs along the tail
            if kind == "acc" and fusion.footprint(k.reduce_in[v]) & t and not (
                    fusion.footprint(k.reduce_in[v]) & set(self.inner)) and \
                    self._acc_level(e) == 0:
                return []
        return tail

    def _acc_level(self, e) -> int:
        a = e.inputs[0]
        return self.level.get(a.id, 0) if isinstance(a, Var) else 0

    def const(self, lit: Literal) -> str:
        val = lit.val.item()
        if lit.dtype == np.dtype(bool):
            return repr(bool(val))
        if isinstance(val, float) and not np.isfinite(val):
            val = f"np.{'nan' if np.isnan(val) else ('inf' if val > 0 else '-np.inf')}"
            val = val.replace("np.-np.inf", "-np.inf")
        name = f"c{len(self.consts)}"
        self.consts.append(f"{name} = {scalar_type(lit.dtype)}({val})")
        return name

    def index(self, amap, ndim: int) -> str:
        if ndim == 0:
            return "0"
        return ", ".join(f"i{ax}" if ax is not None else "0" for ax in amap)

    def operand(self, a, out_amap) -> str:
        """Expression for one operand of an equation whose output has axis map out_amap."""
        if isinstance(a, Literal) and a.is_scalar:
            return self.const(a)
        if isinstance(a, Var) and a.id in self.k.kinds:
            return f"v{a.id}"
        shape = a.aval.shape
        off = len(out_amap) - len(shape)
        if self.key(a) in self.iotas:
            return f"{scalar_type(a.aval.dtype)}(i{out_amap[off + self.iotas[self.key(a)]]})"
        amap = tuple(None if d == 1 else out_amap[off + i] for i, d in enumerate(shape))
        name = self.in_names[self.key(a)]
        if all(ax is None for ax in amap):  # loop-invariant: load once, before the loops
            self.hoisted[name] = f"{name}[{self.index(amap, len(shape))}]"
            return f"s_{name}"
        load = f"{name}[{self.index(amap, len(shape))}]"
        if self.hoist_to is not None and not fusion.footprint(amap) & self.hoist_axes:
            # invariant in the loops being emitted (a row's label, a gather's index): one
            # load before them, which LLVM cannot do itself when the loops store to memory
            if load not in self.hoist_to:  # names unique in the function: one type each
                self.hoist_to[load] = f"h{self.n_hoisted}"
                self.n_hoisted += 1
            return self.hoist_to[load]
        return load

    def expr(self, e) -> str:
        out = e.outputs[0]
        amap = self.k.amaps[out.id]
        if e.prim.load is not None:  # operand 0 (in memory) read at a loaded index
            x = e.inputs[0]
            out_ix = [f"i{ax}" if ax is not None else "0" for ax in amap]
            return e.prim.load(e, self.in_names[self.key(x)],
                               lambda sub: self.operand(e.inputs[1], tuple(sub)), out_ix)
        args = [self.operand(a, amap) for a in e.inputs]
        if e.prim.kind == REDUCE:  # over size-1 dims only: a copy
            return args[0]
        params = {k: (v.name if isinstance(v, np.dtype) else v) for k, v in e.params.items()}
        return self.template(e.prim, out.aval.dtype).format(*args, T=scalar_type(out.aval.dtype),
                                                            **params)

    def usable(self, template) -> bool:
        """Whether the generated module can run `template` (a backend may lack a library)."""
        return True

    def override(self, prim):
        """This backend's override of `prim`'s emit (a Reduce's combine), if it can use it."""
        if prim.name in self.exact:
            return None
        t = prim.emit_for.get(self.backend)
        return t if t is not None and self.usable(t) else None

    def template(self, prim, dtype: np.dtype) -> str:
        """The emit template for `prim` in this backend: its override, else the shared one."""
        t = self.override(prim) or prim.emit
        return t(dtype) if callable(t) else t

    def combine(self, prim) -> str:
        """A reduction's combine step in this backend."""
        return self.override(prim) or prim.emit.combine

    def store(self, var, ind: str) -> None:
        if var.id in self.out_names:
            amap = self.k.amaps[var.id]
            self.lines.append(f"{ind}{self.out_names[var.id]}[{self.index(amap, var.aval.ndim)}]"
                              f" = v{var.id}")

    def reduce_operand(self, e) -> str:
        return self.operand(e.inputs[0], self.k.reduce_in[e.outputs[0].id])

    def reduce_step(self, e, acc: str, x: str) -> str:
        return self.combine(e.prim).format(acc=acc, x=x)

    def init(self, e) -> str:
        """A reduction's start value (integer max/min start at the type's limits)."""
        dt = e.outputs[0].aval.dtype
        return literal(e.prim.emit.identity(dt), dt)

    def wide(self, e) -> bool:
        """A float32 sum whose partials are carried in float64 (Reduce.wide)."""
        return e.prim.emit.wide and e.outputs[0].aval.dtype == np.float32

    def open_blocked(self, ind: str, var: str, lo: str, hi: str, parts: list,
                     idx: str) -> str:
        """`for var in range(lo, hi)` in blocks of `block` elements, `idx` = np.uint64(var)
        (a signed index makes Numba check for negative indices, which stops LLVM
        vectorizing). Each block starts the float32 partials `parts` (acc12, r12) at 0;
        close_blocked adds them into their float64 partials (w12) after it. A block still
        sums in float32 vector lanes (AVX-512: 64 lanes, so 16 elements per lane in a block
        of 1024); the float64 partials make a long float32 sum as accurate as a pairwise one.
        Blocks are fixed: results depend on the sizes only."""
        bk = f"bk{var}"
        self.lines.append(f"{ind}for {bk} in range({lo}, {hi}, {self.block}):")
        for part in parts:
            self.lines.append(f"{ind}    {part} = np.float32(0)")
        end = lesser(f"{bk} + {self.block}", hi)
        self.lines.append(f"{ind}    for {var} in range({bk}, {end}):")
        self.lines.append(f"{ind}        {idx} = np.uint64({var})")
        return ind + "        "

    def close_blocked(self, ind: str, parts: list) -> None:
        """After a block (`ind`: the block loop's body): the float32 partials into float64."""
        for part in parts:
            w = re.sub(r"^[a-z]+", "w", part)
            self.lines.append(f"{ind}{w} = {w} + np.float64({part})")

    # --- body ---
    def emit_values(self, eqns, ind: str, stores: bool = True, acc_into: bool = True) -> None:
        for e in eqns:
            out = e.outputs[0]
            kind = self.k.kinds[out.id]
            if kind == "acc":
                if acc_into:
                    x = self.reduce_operand(e)
                    acc = f"acc{out.id}"
                    if self.direct and self.block and self.wide(e):  # see emit_pass
                        acc, x = f"w{out.id}", f"np.float64({x})"
                    self.lines.append(f"{ind}{acc} = {self.reduce_step(e, acc, x)}")
                continue
            if kind == "row" and e.prim.kind == REDUCE:
                continue  # finalized after its pass
            self.lines.append(f"{ind}v{out.id} = {self.expr(e)}")
            if stores:
                self.store(out, ind)

    def closure(self, roots: list, loaded: frozenset = frozenset()) -> list:
        """Inner equations needed to compute `roots` in a pass (recomputed, not stored);
        values in `loaded` are read back from a stash, so their inputs are not needed."""
        need, k = set(), self.k
        byout = {e.outputs[0].id: e for e in k.eqns}
        root_ids = {r.outputs[0].id for r in roots}
        stack = list(root_ids)
        while stack:
            v = stack.pop()
            if v in need:
                continue
            need.add(v)
            e = byout[v]
            if (k.kinds[v] == "row" and e.prim.kind == REDUCE and v not in root_ids) or \
                    v in loaded:
                continue
            for a in e.inputs:
                if isinstance(a, Var) and a.id in byout and self.is_inner.get(a.id) and \
                        k.kinds[a.id] != "row":
                    stack.append(a.id)
        return [e for e in k.eqns if e.outputs[0].id in need and self.is_inner.get(
            e.outputs[0].id) and k.kinds[e.outputs[0].id] == "elem"]

    def _stashes(self, passes: list) -> dict:
        """Costly row values that a later pass would recompute, mapped to a kernel output of
        the same layout that is written only in a later pass: the earlier pass stores the
        value there and later passes read it back from cache (a row softmax keeps exp(z) in
        the gradient row instead of computing exp twice)."""
        k, stash, used = self.k, {}, set()
        raw = [set(e.outputs[0].id for e in self.closure(roots)) for _, _, _, roots in passes]
        for p, body in enumerate(raw):
            for e in reversed([e for e in k.eqns if e.outputs[0].id in body]):
                v = e.outputs[0]
                if e.prim.cheap or v.id in stash or v.id in self.out_names:
                    continue
                for o in k.outputs:
                    lo = self.level.get(o.id)
                    if (o.id in used or lo is None or lo <= p or not self.is_inner.get(o.id)
                            or k.amaps[o.id] != k.amaps[v.id] or o.aval.dtype != v.aval.dtype
                            or o.aval.shape != v.aval.shape):
                        continue
                    if any(v.id in raw[q] for q in range(p + 1, lo + 1)):
                        stash[v.id] = (o, p, lo)
                        used.add(o.id)
                        break
        return stash

    def emit_loops(self, ind: str) -> None:
        self.n_hoisted = 0
        if self.tail:
            self.emit_tail_loops(ind)
            return
        k = self.k
        loop_eqns = [e for e in k.eqns if k.kinds[e.outputs[0].id] in ("elem", "row")]
        row_eqns = [e for e in loop_eqns if not self.is_inner[e.outputs[0].id]]
        inner_eqns = [e for e in loop_eqns if self.is_inner[e.outputs[0].id]]
        n_pass = max([self.level[e.outputs[0].id] + 1 for e in inner_eqns] +
                     [self.level[e.outputs[0].id] for e in row_eqns if e.prim.kind == REDUCE
                      and k.kinds[e.outputs[0].id] == "row"], default=0)
        accs_at = {}  # accumulators placed with the pass (or row level) of their operand
        for e in self.accs:
            a = e.inputs[0]
            inner = bool(fusion.footprint(k.reduce_in[e.outputs[0].id]) & set(self.inner))
            lvl = self.level.get(a.id, 0) if isinstance(a, Var) else 0
            accs_at.setdefault(("inner" if inner else "row", lvl), []).append(e)
        passes = []  # per pass over the row: (reductions, stored values, accumulators, roots)
        for p in range(n_pass):
            # row reductions only: a reduction over size-1 axes is a copy (kind elem)
            reds = [e for e in row_eqns if e.prim.kind == REDUCE and
                    k.kinds[e.outputs[0].id] == "row" and
                    self.level[e.outputs[0].id] == p + 1]
            stored = [e for e in inner_eqns if self.level[e.outputs[0].id] == p and
                      e.outputs[0].id in self.out_names]
            accs = accs_at.get(("inner", p), [])
            roots = [r for r in stored] + [self._producer(r.inputs[0]) for r in reds + accs
                                           if self._producer(r.inputs[0]) is not None]
            passes.append((reds, stored, accs, roots))
        stash = self._stashes(passes)
        for p in range(n_pass + 1):
            rows = [e for e in row_eqns if self.level[e.outputs[0].id] == p]
            for e in rows:
                if k.kinds[e.outputs[0].id] == "row" and e.prim.kind == REDUCE:
                    self.finish_row_reduce(e, ind)
                    self.store(e.outputs[0], ind)
            later = [e for e in rows if not (k.kinds[e.outputs[0].id] == "row"
                                             and e.prim.kind == REDUCE)]
            if p == n_pass and self.row_block is not None:
                self.second_row_loop(later, row_eqns, ind)
            self.emit_values(later, ind)
            self.emit_values(accs_at.get(("row", p), []), ind)
            if p == n_pass:
                break
            reds, stored, accs, roots = passes[p]
            loaded = frozenset(v for v, (_, made, last) in stash.items() if made < p <= last)
            body = self.closure(roots, loaded)
            self.emit_pass(p, reds, stored, accs, body, stash, loaded, ind)

    def emit_pass(self, p, reds, stored, accs, body, stash, loaded, ind) -> None:
        """One pass over the row. Reductions with Reduce.lanes (a CPU row prod) keep LANES
        independent partials along the last inner axis (Numba runs no SLP vectorizer: they
        are scalar chains, independent for the CPU's pipelines); max/min and sums vectorize
        through their combines (vm.rmax, vm.radd)."""
        k = self.k
        self.hoist_to, self.hoist_axes, at = {}, set(self.inner), len(self.lines)
        laned = [r for r in reds if r.prim.emit.lanes] if self.lanes else []
        # float32 sums of this pass: in blocks (open_blocked), or straight into their float64
        # partial in a laned pass (its lane loop does not vectorize a float32 running sum)
        wide = [f"r{r.outputs[0].id}" for r in reds if self.wide(r)] + \
            [f"acc{e.outputs[0].id}" for e in accs if self.wide(e)] if self.block else []
        parts = [] if laned else wide
        self.direct = bool(laned)
        for r in reds:
            if f"r{r.outputs[0].id}" in wide:
                self.lines.append(f"{ind}w{r.outputs[0].id} = np.float64(0)")
            else:
                self.lines.append(f"{ind}r{r.outputs[0].id} = {self.init(r)}")
        for r in laned:
            self.lines.append(f"{ind}q{r.outputs[0].id} = np.full({LANES}, {self.init(r)}, "
                              f"{scalar_type(r.outputs[0].aval.dtype)})")
        last = self.inner[-1]
        stored_ids = {e.outputs[0].id for e in stored}

        def body_lines(jnd, lane):
            for e in body:
                v = e.outputs[0]
                if v.id in loaded:
                    o = stash[v.id][0]
                    self.lines.append(f"{jnd}v{v.id} = {self.out_names[o.id]}"
                                      f"[{self.index(k.amaps[o.id], o.aval.ndim)}]")
                    continue
                self.lines.append(f"{jnd}v{v.id} = {self.expr(e)}")
                if v.id in stored_ids:
                    self.store(v, jnd)
                if v.id in stash and stash[v.id][1] == p:
                    o = stash[v.id][0]
                    self.lines.append(f"{jnd}{self.out_names[o.id]}"
                                      f"[{self.index(k.amaps[o.id], o.aval.ndim)}] = v{v.id}")
            for r in reds:
                x = self.reduce_operand(r)
                acc = f"q{r.outputs[0].id}[l]" if lane and r in laned else f"r{r.outputs[0].id}"
                if self.direct and acc in wide:
                    acc, x = f"w{r.outputs[0].id}", f"np.float64({x})"
                self.lines.append(f"{jnd}{acc} = {self.reduce_step(r, acc, x)}")
            self.emit_values(accs, jnd, stores=False)
            if not body and not reds and not accs:
                self.lines.append(f"{jnd}pass")

        if laned:
            jnd = ind
            for ax in self.inner[:-1]:
                self.lines.append(f"{jnd}for i{ax} in range(n{ax}):")
                jnd += "    "
            self.lines.append(f"{jnd}for b in range(0, n{last} - {LANES - 1}, {LANES}):")
            self.lines.append(f"{jnd}    for l in range({LANES}):")
            self.lines.append(f"{jnd}        i{last} = np.uint64(b + l)")
            body_lines(jnd + "        ", lane=True)
            self.lines.append(f"{jnd}for i{last} in range(n{last} - n{last} % {LANES}, "
                              f"n{last}):")
            body_lines(jnd + "    ", lane=False)
            self.direct = False
        elif parts:
            jnd = ind
            for ax in self.inner[:-1]:
                self.lines.append(f"{jnd}for i{ax} in range(n{ax}):")
                jnd += "    "
            body_lines(self.open_blocked(jnd, f"j{last}", "0", f"n{last}", parts,
                                         idx=f"i{last}"), lane=False)
            self.close_blocked(jnd + "    ", parts)
        else:
            body_lines(self.open_inner(ind), lane=False)
        for r in laned:
            v = r.outputs[0].id
            self.lines.append(f"{ind}for l in range({LANES}):")
            self.lines.append(f"{ind}    r{v} = {self.reduce_step(r, f'r{v}', f'q{v}[l]')}")
        self.lines[at:at] = [f"{ind}{h} = {load}" for load, h in self.hoist_to.items()]
        self.hoist_to = None

    def open_tail(self, ind: str) -> str:
        """Open the tail loops (unsigned indices: see open_blocked); returns the body's
        indentation."""
        for ax in self.tail:
            self.lines.append(f"{ind}for j{ax} in range(n{ax}):")
            self.lines.append(f"{ind}    i{ax} = np.uint64(j{ax})")
            ind += "    "
        return ind

    def emit_tail_loops(self, ind: str) -> None:
        """The row's one pass with the tail inside (see _tail):

            r = np.zeros(nd)                      partials along the tail
            for k in range(nk):                   the reduced axes (float32 sums in blocks)
                h0 = idx[b, k]                    work and loads that do not run along d
                for d in range(nd):
                    r[d] = r[d] + E[h0, d]        the tail: contiguous, vectorized
            for d in range(nd):
                v = r[d]; out[b, d] = v           the row's values after the pass
        """
        k, t = self.k, set(self.tail)

        def on_tail(e) -> bool:
            v = e.outputs[0].id
            m = k.reduce_in[v] if k.kinds[v] == "acc" else k.amaps[v]
            return bool(fusion.footprint(m) & t)
        loop_eqns = [e for e in k.eqns if k.kinds[e.outputs[0].id] in ("elem", "row")]
        rows = [e for e in loop_eqns if not self.is_inner[e.outputs[0].id]]
        reds = [e for e in rows if e.prim.kind == REDUCE and k.kinds[e.outputs[0].id] == "row"]
        rows = [e for e in rows if e not in reds]
        inner_accs = [e for e in self.accs if fusion.footprint(
            k.reduce_in[e.outputs[0].id]) & set(self.inner)]
        row_accs = [e for e in self.accs if e not in inner_accs]
        # 1. row work before the pass (none of it runs along the tail)
        self.emit_values([e for e in rows if self.level[e.outputs[0].id] == 0], ind)
        self.emit_values([e for e in row_accs if self._acc_level(e) == 0], ind)
        # 2. the pass: partials, then the reduced axes' loops around the tail loops
        stored = [e for e in loop_eqns if self.is_inner[e.outputs[0].id] and
                  e.outputs[0].id in self.out_names]
        roots = stored + [self._producer(r.inputs[0]) for r in reds + inner_accs
                          if self._producer(r.inputs[0]) is not None]
        body = self.closure(roots)
        shape = f"({', '.join(f'n{a}' for a in self.tail)},)"
        wide = [r for r in reds if self.block and self.wide(r)] + \
            [e for e in inner_accs if self.block and self.wide(e)]
        for r in reds:
            v, dt = r.outputs[0].id, scalar_type(r.outputs[0].aval.dtype)
            if r in wide:
                self.lines.append(f"{ind}w{v} = np.zeros({shape}, np.float64)" if on_tail(r)
                                  else f"{ind}w{v} = np.float64(0)")
            elif on_tail(r):
                self.lines.append(f"{ind}r{v} = np.full({shape}, {self.init(r)}, {dt})")
            else:
                self.lines.append(f"{ind}r{v} = {self.init(r)}")
        jnd = ind
        for ax in self.inner[:-1]:
            self.lines.append(f"{jnd}for i{ax} in range(n{ax}):")
            jnd += "    "
        last = self.inner[-1]
        if wide:  # float32 sums in blocks along the last reduced axis (see open_blocked)
            self.lines.append(f"{jnd}for bk{last} in range(0, n{last}, {self.block}):")
            cnd = jnd + "    "
            for e in wide:
                zero = f"np.zeros({shape}, np.float32)" if e in reds and on_tail(e) else \
                    "np.float32(0)"
                self.lines.append(f"{cnd}{self.partial(e)} = {zero}")
            end = lesser(f"bk{last} + {self.block}", f"n{last}")
            self.lines.append(f"{cnd}for j{last} in range(bk{last}, {end}):")
            jnd = cnd + "    "
        else:
            self.lines.append(f"{jnd}for j{last} in range(n{last}):")
            jnd += "    "
        self.lines.append(f"{jnd}i{last} = np.uint64(j{last})")
        self.hoist_to, self.hoist_axes = {}, t
        at = len(self.lines)
        self.emit_tail_body([e for e in body if not on_tail(e)],
                            [r for r in reds if not on_tail(r)],
                            [e for e in inner_accs if not on_tail(e)], stored, jnd)
        tnd = self.open_tail(jnd)
        self.emit_tail_body([e for e in body if on_tail(e)], [r for r in reds if on_tail(r)],
                            [e for e in inner_accs if on_tail(e)], stored, tnd, tail=True)
        self.lines[at:at] = [f"{jnd}{h} = {load}" for load, h in self.hoist_to.items()]
        self.hoist_to = None
        for e in wide:  # the block's float32 partials into the float64 ones
            part, w = self.partial(e), f"w{e.outputs[0].id}"
            if e in reds and on_tail(e):
                c, ix = self.open_tail(cnd), ", ".join(f"i{a}" for a in self.tail)
                self.lines.append(f"{c}{w}[{ix}] = {w}[{ix}] + np.float64({part}[{ix}])")
            else:
                self.lines.append(f"{cnd}{w} = {w} + np.float64({part})")
        # 3. the row's values after the pass: those off the tail, then the tail loops
        after = [e for e in rows if self.level[e.outputs[0].id] == 1]
        accs = [e for e in row_accs if self._acc_level(e) == 1]
        self.finish_tail([r for r in reds if not on_tail(r)], wide, ind)
        self.emit_values([e for e in after if not on_tail(e)], ind)
        self.emit_values([e for e in accs if not on_tail(e)], ind)
        if any(map(on_tail, reds + after + accs)):
            tnd = self.open_tail(ind)
            self.finish_tail([r for r in reds if on_tail(r)], wide, tnd, tail=True)
            self.emit_values([e for e in after if on_tail(e)], tnd)
            self.emit_values([e for e in accs if on_tail(e)], tnd)

    def partial(self, e) -> str:
        """The float32 block partial of a wide sum (reduction r12, accumulator acc12)."""
        v = e.outputs[0].id
        return f"acc{v}" if self.k.kinds[v] == "acc" else f"r{v}"

    def emit_tail_body(self, body, reds, accs, stored, ind: str, tail: bool = False) -> None:
        """One part of the pass's body: values (stored if outputs), reductions into their
        partials (indexed along the tail when `tail`), accumulators."""
        ix = ", ".join(f"i{a}" for a in self.tail)
        stored_ids = {e.outputs[0].id for e in stored}
        for e in body:
            v = e.outputs[0]
            self.lines.append(f"{ind}v{v.id} = {self.expr(e)}")
            if v.id in stored_ids:
                self.store(v, ind)
        for r in reds:
            acc = f"r{r.outputs[0].id}" + (f"[{ix}]" if tail else "")
            x = self.reduce_operand(r)
            self.lines.append(f"{ind}{acc} = {self.reduce_step(r, acc, x)}")
        self.emit_values(accs, ind, stores=False)
        if tail and not (body or reds or accs):
            self.lines.append(f"{ind}pass")

    def finish_tail(self, reds, wide, ind: str, tail: bool = False) -> None:
        """Row reductions' values once the pass is over (read along the tail if `tail`)."""
        ix = f"[{', '.join(f'i{a}' for a in self.tail)}]" if tail else ""
        for r in reds:
            v = r.outputs[0].id
            self.lines.append(f"{ind}v{v} = np.float32(w{v}{ix})" if r in wide else
                              f"{ind}v{v} = r{v}{ix}")
            self.store(r.outputs[0], ind)

    def open_inner(self, ind: str) -> str:
        """Open the loops over one row's inner axes (unsigned indices: see open_blocked);
        returns the body's indentation."""
        for ax in self.inner:
            self.lines.append(f"{ind}for j{ax} in range(n{ax}):")
            self.lines.append(f"{ind}    i{ax} = np.uint64(j{ax})")
            ind += "    "
        return ind

    def finish_row_reduce(self, e, ind: str) -> None:
        """A row reduction's value once its pass is over (a GPU generator combines the
        threads of a block here)."""
        v = e.outputs[0].id
        self.lines.append(f"{ind}v{v} = np.float32(w{v})" if self.block and self.wide(e) else
                          f"{ind}v{v} = r{v}")

    def _producer(self, a):
        if isinstance(a, Var):
            for e in self.k.eqns:
                if e.outputs[0] is a and self.is_inner.get(a.id) and self.k.kinds[a.id] == "elem":
                    return e
        return None


def canonical_names(source: str) -> str:
    """Renumber value names (v12, acc12, p12, q12, rb12, r12, w12) in order of appearance: the
    source then depends on the kernel's structure only, not on the ids of one trace, so a
    retrace (a new size) finds the kernel already compiled."""
    numbers: dict[str, str] = {}

    def rename(m):
        return m.group(1) + numbers.setdefault(m.group(2), str(len(numbers)))
    return re.sub(r"\b(v|acc|p|q|rb|r|w)(\d+)\b", rename, source)
