"""Numba CPU backend: each fusion Kernel becomes generated Python loop source compiled with
numba.njit; the steps between kernels are NumPy/BLAS calls; a generated driver function runs
them in order with outputs allocated once per call (or once, with reuse_buffers).

Kernel source depends on dtypes, ranks and which dimensions broadcast, never on sizes (they
are arguments), so new sizes reuse compiled kernels. The loops come from the shared generator
(loopgen.py); this module writes the CPU function around them (prange over the outer axis,
accumulators in fixed chunks), with tracejit's vectorizable math (vecmath, `vm.*`) for the
primitives that override their emit for "numba_cpu". Kernel modules live in the disk cache
(kernel_cache.py), so a new process skips compilation.
"""
from __future__ import annotations

import builtins
import hashlib
import re
import sys

import numba
import numpy as np

from .. import config, fusion
from ..ir import Literal, Var
from ..primitives import CONTRACT, REDUCE
from . import blas
from .kernel_cache import TieredKernel, first_call, wait_compiled  # noqa: F401  (api.wait_compiled)
from .loopgen import KernelSource, canonical_names, lesser, scalar_type

# small inputs run serially: a parallel launch costs more than the loop below this size
SERIAL_BELOW = 1 << 15
# accumulators split the parallel loop into at most CHUNKS chunks of at least MIN_CHUNK
# elements, each with its own partial, combined in order after the loop (see source())
CHUNKS = 64
MIN_CHUNK = 4096
# float32 sums add BLOCK elements in float32 vector lanes, then into a float64 partial
# (loopgen.open_blocked): as accurate as NumPy's pairwise sum, at no measurable cost
BLOCK = 1024
# a kernel whose rows end in costly values (tanh of a matvec row) runs ROWS rows' reductions,
# then their values in a loop that vectorizes (CpuKernelSource.second_row_loop)
ROWS = 32
# No 'reassoc' on kernels: it would let LLVM rewrite x*2 - x into x (inf - inf is NaN in
# NumPy). Only the reduction combines (vm.radd / vm.rmul) carry it, which is all the loop
# vectorizer needs to vectorize a sum. Kernels are called from Python or njit code, never
# through a C pointer: no C wrapper (Numba compiles one per function otherwise).
_FLAGS = ("fastmath={'contract'}, error_model='numpy', cache=True, nogil=True, "
          "no_cfunc_wrapper=True")

try:  # tracejit's vectorizable math: branch-free, so LLVM vectorizes loops that call it
    from . import vecmath as _vm
    _HAVE_VM = True
except ImportError:
    _HAVE_VM = False

BACKEND = "numba_cpu"  # the key of this backend's overrides in a primitive's emit_for
# sin/cos arguments beyond these (vecmath's exact range reduction) get NaN from vm.sin/vm.cos:
# api builds the plan from passes.guard_ranges(graph, RANGE_LIMITS), which counts them, and
# gives the unguarded plan as `fallback`: rerun with libm's sin/cos when the count is not 0
RANGE_LIMITS = {"sin": _vm.TRIG_MAX, "cos": _vm.TRIG_MAX} if _HAVE_VM else {}


# ----- kernel source -----
class CpuKernelSource(KernelSource):
    """One kernel as a parallel and a serial njit function: prange over the outer axis (or
    over fixed chunks of it when there are accumulators), the shared loops inside."""

    backend = BACKEND
    lanes = True  # prod row reductions in LANES partials (see loopgen.emit_pass)
    block = BLOCK  # float32 sums in blocks (see loopgen.open_blocked)
    interchange = True  # kept axes after the reduced ones inside the row pass (loopgen)

    def usable(self, template) -> bool:
        """Every `vm.<fn>` the template names exists (vecmath may be missing or older)."""
        if not isinstance(template, str):
            return True
        return all(_HAVE_VM and hasattr(_vm, fn) for fn in re.findall(r"\bvm\.(\w+)", template))

    def chunk_step(self, e, acc: str, x: str) -> str:
        """Chunk partials combine in chunk order with the shared template: never reassociated
        (a vectorized combine could differ from the serial variant's running one)."""
        return e.prim.emit.combine.format(acc=acc, x=x)

    def epilogue_blocks(self) -> tuple:
        """(row reductions, row values after them) when the kernel is one pass over each
        row and the values after it call a vecmath function (tanh(W @ h + b)); else None.
        Such a kernel can run its rows in blocks: see second_row_loop."""
        k, row = self.k, []
        if not self.inner or self.tail or self.accs:
            return None
        for e in k.eqns:
            v = e.outputs[0].id
            if k.kinds[v] in ("elem", "row") and self.is_inner[v] and self.level[v] > 0:
                return None  # a second pass over the row
            if k.kinds[v] in ("elem", "row") and not self.is_inner[v]:
                row.append(e)
        reds = [e for e in row if k.kinds[e.outputs[0].id] == "row" and e.prim.kind == REDUCE]
        if not reds or any(self.level[e.outputs[0].id] != 1 for e in reds):
            return None
        later = [e for e in row if self.level[e.outputs[0].id] == 1 and e not in reds]
        costly = any("vm." in t and not re.fullmatch(r"vm\.r(add|max|min|mul)\(.*", t)
                     for e in later if isinstance(t := self.template(
                         e.prim, e.outputs[0].aval.dtype), str))
        return (reds, later) if costly else None

    def second_row_loop(self, later, row_eqns, ind) -> None:
        """Close the loop over a block of rows after its row reductions, keeping their values
        where row_buffers says, and open a second loop over the same rows for the values
        after them (`source` opened the first: `row_block` is its loop line). With no
        reduction inside, LLVM vectorizes the second loop: W11's tanh(W @ h + b) in vecmath
        vectors instead of a scalar tanh per row (1000 steps on one thread: 75 -> 62 ms)."""
        k = self.k
        reds = [e for e in row_eqns if k.kinds[e.outputs[0].id] == "row" and
                e.prim.kind == REDUCE and self.level[e.outputs[0].id] == 1]
        buffers = self.row_buffers(reds, later)
        for e in reds:
            self.lines.append(f"{ind}{buffers[e.outputs[0].id]} = v{e.outputs[0].id}")
        self.lines.append(f"{ind[:-4]}{self.row_block}")
        self.lines.append(f"{ind}i{self.par_axis} = np.uint64(j)")
        for e in reds:
            self.lines.append(f"{ind}v{e.outputs[0].id} = {buffers[e.outputs[0].id]}")
        # row values from before the reductions that the later ones read: computed again
        byout = {e.outputs[0].id: e for e in row_eqns if e not in reds}
        need, stack = set(), [a.id for e in later for a in e.inputs if isinstance(a, Var)]
        while stack:
            v = stack.pop()
            if v in byout and v not in need and byout[v] not in later:
                need.add(v)
                stack += [a.id for a in byout[v].inputs if isinstance(a, Var)]
        self.emit_values([e for e in row_eqns if e.outputs[0].id in need], ind, stores=False)

    def row_buffers(self, reds, later) -> dict:
        """Where each row reduction's value waits for the second loop over a block of rows:
        the element of this row in an output of one value per row of that dtype that only
        the second loop writes (read back before it is written), else rb<id>[j] (an array
        allocated before the loop: Numba compiles np.empty in 0.2 s of a cold first call)."""
        k, out, free = self.k, {}, [e.outputs[0] for e in later
                                    if e.outputs[0].id in self.out_names]
        for e in reds:
            v = e.outputs[0]
            o = next((o for o in free if o.aval.dtype == v.aval.dtype and
                      fusion.footprint(k.amaps[o.id]) == {self.par_axis}), None)
            if o is None:
                out[v.id] = f"rb{v.id}[j]"
                continue
            free.remove(o)
            out[v.id] = f"{self.out_names[o.id]}[{self.index(k.amaps[o.id], o.aval.ndim)}]"
        return out

    def source(self, name: str, parallel: bool) -> str:
        k, self.lines = self.k, []
        sizes = ", ".join(f"n{a}" for a in range(len(self.space)))
        args = [self.in_names[self.key(a)] for a in self.inputs] + list(self.out_names.values())
        self.lines.append(f"def {name}({', '.join([sizes] + args)}):")
        self.hoisted: dict[str, str] = {}
        header = len(self.lines)
        loop = "prange" if parallel else "range"
        ind = "    "
        p = self.par_axis
        # float32 sums over everything that add once per row (in the innermost outer loop)
        # run that loop in blocks (loopgen.open_blocked); those adding inside a pass over the
        # row are blocked in the pass
        row_parts = [f"acc{e.outputs[0].id}" for e in self.accs if self.wide(e) and not
                     fusion.footprint(k.reduce_in[e.outputs[0].id]) & set(self.inner)]
        blocked_at = None  # the blocked loop's body indentation (for close_blocked)
        # the outer loops: the parallel axis, then each other outer axis a value runs along
        # (no loop over a size-1 axis: LLVM's vectorizer took minutes on loops whose body was
        # all invariant)
        used = set().union(*map(fusion.footprint, [*k.amaps.values(), *k.reduce_in.values()]))
        loops = [p] + [ax for ax in self.outer[1:] if ax in used and ax not in self.tail]
        if self.accs:
            # accumulators: fixed slices (chunks) of the parallel axis, each with its own
            # partial (float64 for a float32 sum), combined in chunk order after the loop
            # without reassociation, so results depend on the sizes only, not on the thread
            # count or the variant. At least MIN_CHUNK elements per chunk: a short chunk's
            # loop does not vectorize (W6). The index is unsigned: a signed range(lo, hi)
            # index makes Numba emit negative-index wraparound checks, which stop LLVM
            # vectorizing the loop (3.5x slower).
            # nch = max(1, min(n_p, CHUNKS, total // MIN_CHUNK)), spelled with conditional
            # expressions: Numba compiles min/max of a tuple as functions of their own (0.1 s
            # of a cold first call)
            total = " * ".join(f"n{a}" for a in range(len(self.space)))
            self.lines += [f"{ind}nch = ({total}) // {MIN_CHUNK}",
                           f"{ind}nch = n{p} if n{p} < nch else nch",
                           f"{ind}nch = nch if nch < {CHUNKS} else {CHUNKS}",
                           f"{ind}nch = nch if nch > 1 else 1"]
            for e in self.accs:
                v = e.outputs[0].id
                dt = "np.float64" if self.wide(e) else scalar_type(e.outputs[0].aval.dtype)
                init = "np.float64(0)" if self.wide(e) else self.init(e)
                # the serial variant keeps a running combine instead of an array of partials
                self.lines.append(f"{ind}p{v} = np.empty(nch, {dt})" if parallel else
                                  f"{ind}p{v} = {init}")
            self.lines.append(f"{ind}for c in {loop}(nch):")
            ind += "    "
            for e in self.accs:
                v = e.outputs[0].id
                self.lines.append(f"{ind}w{v} = np.float64(0)" if self.wide(e) else
                                  f"{ind}acc{v} = {self.init(e)}")
            lo, hi = f"c * n{p} // nch", f"(c + 1) * n{p} // nch"
            if row_parts and not loops[1:]:
                blocked_at = ind + "    "
                ind = self.open_blocked(ind, "j", lo, hi, row_parts, idx=f"i{p}")
            else:
                self.lines.append(f"{ind}for j in range({lo}, {hi}):")
                self.lines.append(f"{ind}    i{p} = np.uint64(j)")
                ind += "    "
        elif len(loops) == 1 and (blocks := self.epilogue_blocks()):
            # rows in blocks of ROWS: their reductions, then the values after them in a
            # second loop that vectorizes (second_row_loop)
            end = lesser(f"ib * {ROWS} + {ROWS}", f"n{p}")
            self.row_block = f"for j in range(ib * {ROWS}, {end}):"
            buffers = self.row_buffers(*blocks)
            for e in blocks[0]:
                if buffers[e.outputs[0].id].startswith("rb"):
                    self.lines.append(f"{ind}rb{e.outputs[0].id} = np.empty(n{p}, "
                                      f"{scalar_type(e.outputs[0].aval.dtype)})")
            self.lines.append(f"{ind}for ib in {loop}((n{p} + {ROWS - 1}) // {ROWS}):")
            self.lines.append(f"{ind}    {self.row_block}")
            self.lines.append(f"{ind}        i{p} = np.uint64(j)")
            ind += "        "
        else:
            self.lines.append(f"{ind}for i{p} in {loop}(n{p}):")
            ind += "    "
        # without passes over rows, a value is computed in the loop of its innermost axis, not
        # recomputed (and stored again) in loops it does not run along
        depth = {} if self.inner else {e.outputs[0].id: max(
            [loops.index(a) for a in fusion.footprint(k.amaps[e.outputs[0].id])], default=0)
            for e in k.eqns if k.kinds[e.outputs[0].id] == "elem"}
        for d, ax in enumerate(loops):
            if d and row_parts and ax == loops[-1]:
                blocked_at = ind + "    "
                ind = self.open_blocked(ind, f"j{ax}", "0", f"n{ax}", row_parts, idx=f"i{ax}")
            elif d:
                self.lines.append(f"{ind}for i{ax} in range(n{ax}):")
                ind += "    "
            if depth:
                self.emit_values([e for e in k.eqns if depth.get(e.outputs[0].id) == d], ind)
        if depth:
            self.emit_values(self.accs, ind)
        else:
            self.emit_loops(ind)
        if blocked_at is not None:
            self.close_blocked(blocked_at, row_parts)
        ind = "    "
        for e in self.accs:
            v = e.outputs[0].id
            part = f"w{v}" if self.wide(e) else f"acc{v}"
            if parallel:
                self.lines.append(f"{ind}    p{v}[c] = {part}")
            else:
                self.lines.append(f"{ind}    p{v} = {self.chunk_step(e, f'p{v}', part)}")
        for e in self.accs:
            v = e.outputs[0].id
            # a float32 sum's total is in float64 (w: the type it had inside the loop)
            t, init = (f"w{v}", "np.float64(0)") if self.wide(e) else (f"acc{v}", self.init(e))
            if parallel:
                self.lines.append(f"{ind}{t} = {init}")
                self.lines.append(f"{ind}for c in range(nch):")
                self.lines.append(f"{ind}    {t} = {self.chunk_step(e, t, f'p{v}[c]')}")
            else:
                t = f"p{v}"
            self.lines.append(f"{ind}v{v} = np.float32({t})" if self.wide(e) else
                              f"{ind}v{v} = {t}")
            self.store(e.outputs[0], ind)
        epi = [e for e in k.eqns if k.kinds[e.outputs[0].id] == "epi"]
        self.emit_values(epi, ind)
        self.lines.append(f"{ind}return 0")
        self.lines[header:header] = [f"    s_{n} = {load}" for n, load in self.hoisted.items()]
        return canonical_names("\n".join(self.lines))


def _module_source(body_par: str, body_ser: str, consts: list[str]) -> str:
    head = ["import math", "import numpy as np", "from numba import njit, prange"]
    if _HAVE_VM:
        head.append("from tracejit.backends import vecmath as vm")
    par = body_par.replace("def ", f"@njit(parallel=True, {_FLAGS})\ndef ", 1)
    ser = body_ser.replace("def ", f"@njit({_FLAGS})\ndef ", 1)
    return "\n".join(head + list(dict.fromkeys(consts)) + ["", "", par, "", "", ser, ""])


class CompiledKernel(TieredKernel):
    """A fusion Kernel's module: its parallel and serial variants, generated, written to the
    disk cache and loaded (see kernel_cache.TieredKernel for how a call picks one)."""

    def __init__(self, kernel: fusion.Kernel, allow_parallel: bool = True,
                 exact: frozenset = frozenset()) -> None:
        gen = CpuKernelSource(kernel, exact)
        first = kernel.eqns[0].prim.name
        body = gen.source("KERNEL", parallel=True)
        serial = gen.source("KERNEL", parallel=False)
        consts = gen.consts  # both variants name the same constants
        digest = hashlib.sha256((body + "\n".join(consts)).encode()).hexdigest()[:16]
        name = f"k_{first}_{digest[:8]}"
        body = body.replace("def KERNEL(", f"def {name}_par(", 1)
        serial = serial.replace("def KERNEL(", f"def {name}_ser(", 1)
        self.kernel, self.gen, self.serial_source = kernel, gen, serial
        parallel = allow_parallel and int(np.prod(kernel.space, dtype=np.int64)) >= SERIAL_BELOW
        super().__init__(name, _module_source(body, serial, consts), parallel)


# ----- driver -----
def _c_array(aval):
    """The Numba type of a C-contiguous array of aval (shape () carried as (1,))."""
    return numba.types.Array(numba.from_dtype(aval.dtype), max(aval.ndim, 1), "C")


def _product(e) -> str | None:
    """How a matmul step runs: "ours" (blas.matmul on Numba's threads: 2-D float operands,
    big enough for OpenBLAS to thread, scipy and threadpoolctl there), "single" (2-D float,
    too small for OpenBLAS's threads: np.matmul), None (np.matmul, which OpenBLAS may
    thread: its threads then spin into the next parallel kernel). Shapes are static, so the
    driver decides once, not per call."""
    if not (e.prim.kind == CONTRACT and all(a.aval.ndim == 2 for a in e.inputs) and
            e.inputs[0].aval.dtype in (np.float32, np.float64)):
        return None
    (m, k), n = e.inputs[0].aval.shape, e.inputs[1].aval.shape[1]
    if m * n * k < blas.THREADED_FROM:
        return "single"
    return "ours" if blas.ready() else None


def serial_step(e):
    """A step whose primitive gives its own loop body (`serial`: a scatter in index order,
    parallel when the body has a prange): its njit function, from the disk cache."""
    from . import kernel_cache
    args = ", ".join(f"x{k}" for k in range(len(e.inputs)))
    lines = e.prim.serial(e)
    body = "\n".join("    " + line for line in lines)
    flags = ("parallel=True, " if any("prange(" in line for line in lines) else "") + _FLAGS
    source = "\n".join(["import math", "import numpy as np", "from numba import njit, prange",
                        "", f"@njit({flags})", f"def step(o, nth, {args}):", body,
                        "    return 0", ""])
    digest = hashlib.sha256(source.encode()).hexdigest()[:16]
    return kernel_cache.load(source, digest).step


class Executable:
    """Runs a plan: steps and kernels in order, on flat input arrays."""

    def __init__(self, plan: fusion.Plan, reuse_buffers: bool,
                 exact: frozenset = frozenset(), rerun=None) -> None:
        self.graph, self.items = plan.graph, plan.items
        self.rerun = rerun  # if set, the last output is guard_ranges' count: rerun when > 0
        # a Numba parallel region right after an OpenBLAS call fights its threads (measured on
        # W5: 16 ms parallel vs 3.0 ms serial), so plans with a product that OpenBLAS would
        # thread run serial loops; products on our threads (blas.py) leave none spinning
        spins = any(isinstance(it, fusion.Step) and it.eqn.prim.kind == CONTRACT and
                    _product(it.eqn) is None for it in self.items)
        self.kernels = [CompiledKernel(it, allow_parallel=not spins, exact=exact)
                        for it in self.items if isinstance(it, fusion.Kernel)]
        self.reuse = reuse_buffers
        self.buffers: dict[int, np.ndarray] = {}
        self.run = self._make_driver()

    def _make_driver(self):
        """Straight-line Python for one call: fewer lookups on the hot path."""
        g = self.graph
        from numba import get_num_threads
        glb = {"np": np, "_asarray": np.asarray, "_empty": np.empty, "_buf": self.buffers,
               "_threads": get_num_threads}
        lines = [f"def run({', '.join(f'x{i}' for i in range(len(g.inputs)))}):"]
        names: dict[int, str] = {}
        for i, v in enumerate(g.inputs):
            names[v.id] = f"x{i}"
            lines.append(f"    x{i} = _asarray(x{i}, np.{v.aval.dtype.name})")
        views = set()  # values that may alias an input: copied if returned
        # each name's expected Numba type (C-contiguous arrays; None where not known), so the
        # first call's kernel compiles can be shared out before it runs (ahead.py)
        typed = {f"x{i}": _c_array(v.aval) for i, v in enumerate(g.inputs)}
        self.ahead = []

        def ref(a, steady=False):
            if isinstance(a, Literal):
                key = f"L{len(glb)}"
                glb[key] = a.val.reshape(1) if a.val.ndim == 0 else a.val
                if steady and a.val.size > 1 and (a.val == a.val.flat[0]).all():
                    # one value repeated (a scatter's zeros): a zero-stride view, read from
                    # one cache line instead of a copy of its size
                    glb[key] = np.broadcast_to(a.val.flat[0], a.val.shape)
                typed[key] = numba.typeof(glb[key])
                return key
            return names[a.id]

        kernels = iter(self.kernels)
        for item in self.items:
            if isinstance(item, fusion.Step) and item.eqn.prim.serial is not None:
                e, out = item.eqn, item.eqn.outputs[0]
                key = f"S{len(glb)}"
                glb[key] = serial_step(e)
                args = [f"{ref(a)}.reshape(1)" if a.aval.ndim == 0 else ref(a, steady=True)
                        for a in e.inputs]
                names[out.id] = f"t{out.id}"
                typed[f"t{out.id}"] = _c_array(out.aval)
                lines.append(f"    t{out.id} = _empty({out.aval.shape or (1,)!r}, "
                             f"np.{out.aval.dtype.name})")
                lines.append(f"    {key}(t{out.id}, _threads(), {', '.join(args)})")
                continue
            if isinstance(item, fusion.Step) and item.eqn.prim.step is not None:
                e = item.eqn  # a loop or a branch: its body plans, compiled by this backend
                key = f"S{len(glb)}"
                glb[key] = e.prim.step(e, sys.modules[__name__])
                self.ahead += getattr(glb[key], "compile_ahead", [])
                args = [ref(a) if not (isinstance(a, Var) and a.aval.ndim == 0) else
                        f"{ref(a)}.reshape(())" for a in e.inputs]
                outs = [f"t{v.id}" for v in e.outputs]
                lines.append(f"    {', '.join(outs)}, = {key}({', '.join(args)})")
                for v in e.outputs:
                    names[v.id] = f"t{v.id}"
                    typed[f"t{v.id}"] = _c_array(v.aval)  # fresh arrays (a guess)
                    lines.append(f"    t{v.id} = _asarray(t{v.id}, np.{v.aval.dtype.name})"
                                 f".reshape({v.aval.shape or (1,)!r})")
                continue
            if isinstance(item, fusion.Step):
                e = item.eqn
                key = f"S{len(glb)}"
                out = e.outputs[0]
                if e.prim.view is not None:  # no copy: the result may alias its input
                    glb[key] = e.prim.view
                    views.add(out.id)
                else:
                    glb[key] = e.prim.impl
                    typed[f"t{out.id}"] = _c_array(out.aval)  # a fresh array (a guess)
                args = [ref(a) if not (isinstance(a, Var) and a.aval.ndim == 0) else
                        f"{ref(a)}.reshape(())" for a in e.inputs]
                if _product(e) == "ours":
                    glb[key] = blas.matmul
                    args.append("_threads()")
                params = "".join(f", {k}={v!r}" for k, v in e.params.items()
                                 if not isinstance(v, np.dtype))
                params += "".join(f", {k}=np.dtype('{v.str}')" for k, v in e.params.items()
                                  if isinstance(v, np.dtype))
                names[out.id] = f"t{out.id}"
                shape = out.aval.shape or (1,)
                lines.append(f"    t{out.id} = _asarray({key}({', '.join(args)}{params}))"
                             f".reshape({shape!r})")
                continue
            ck = next(kernels)
            key = f"K{len(glb)}"
            glb[key] = ck
            ck.slot = (glb, key)
            for v in item.outputs:
                names[v.id] = f"t{v.id}"
                typed[f"t{v.id}"] = _c_array(v.aval)
                shape = v.aval.shape or (1,)
                dt = f"np.{v.aval.dtype.name}"
                if self.reuse:
                    lines.append(f"    t{v.id} = _buf.get({v.id})")
                    lines.append(f"    if t{v.id} is None: t{v.id} = _buf[{v.id}] = "
                                 f"_empty({shape!r}, {dt})")
                else:
                    lines.append(f"    t{v.id} = _empty({shape!r}, {dt})")
            sizes = [str(d) for d in (item.space or (1,))]
            ins = []
            sig = [numba.int64] * len(sizes)
            for a in ck.gen.inputs:
                r = ref(a)
                ins.append(f"{r}.reshape(1)" if a.aval.ndim == 0 and isinstance(a, Var) else r)
                sig.append(_c_array(a.aval) if a.aval.ndim == 0 and isinstance(a, Var)
                           else typed.get(r))
            outs = [f"t{v.id}" for v in item.outputs]
            sig += [typed[o] for o in outs]
            if None not in sig:
                self.ahead.append((ck, tuple(sig)))
            lines.append(f"    {key}({', '.join(sizes + ins + outs)})")
        rets = []
        for o in g.outputs[:-1] if self.rerun else g.outputs:
            if isinstance(o, Literal):
                rets.append(f"np.array({ref(o)}).reshape({o.aval.shape!r})")
                continue
            r = ref(o)
            if o.id in views or any(o is v for v in g.inputs):
                r = f"np.array({r}, copy=True)"
            if o.aval.ndim == 0:  # a 0-d result is returned as a NumPy scalar
                r = f"{r}[0]" if r.startswith("t") else f"{r}.reshape(())[()]"
            rets.append(r)
        if self.rerun:
            glb["_rerun"] = self.rerun
            lines.append(f"    if {ref(g.outputs[-1])}[0]:")
            xs = ", ".join(f"x{i}" for i in range(len(g.inputs)))
            lines.append(f"        return _rerun({xs})")
        lines.append(f"    return [{', '.join(rets)}]")
        src = "\n".join(lines)
        self.driver_source = src
        exec(builtins.compile(src, f"<tracejit driver {id(self)}>", "exec"), glb)
        return glb["run"]

    def __call__(self, *args):
        return self.run(*args)

    def first_call(self):
        """The context of this executable's first call: its kernels' tiered compiles wait,
        and the ones it needs compile in parallel where they can (ahead.py)."""
        return first_call(self.ahead)

    def explain(self) -> str:
        parts = [fusion.describe(self.items), "--- driver ---", self.driver_source]
        for ck in self.kernels:
            parts += [f"--- {ck.name} ---", ck.source]
        return "\n".join(parts)


def warm_up() -> None:
    """Load Numba's CPU target registries now: what the first kernel compile or cache load
    of a process would otherwise do (most of a warm-cache first call)."""
    from numba.core.registry import cpu_target
    cpu_target.target_context.refresh()


class _ExactRerun:
    """The unguarded plan with the shared (libm) templates for RANGE_LIMITS' primitives, which
    a guarded driver calls when an argument was beyond the fast range; compiled on first need."""

    def __init__(self, plan: fusion.Plan, reuse_buffers: bool) -> None:
        self.plan, self.reuse, self.exe = plan, reuse_buffers, None

    def __call__(self, *args):
        if self.exe is None:
            self.exe = Executable(self.plan, self.reuse, exact=frozenset(RANGE_LIMITS))
        return self.exe.run(*args)


def compile(plan: fusion.Plan, *, fallback: fusion.Plan | None = None,
            reuse_buffers: bool = False, **options) -> Executable:
    """An Executable for `plan`. With `fallback`, the plan's last output counts arguments
    beyond RANGE_LIMITS (passes.guard_ranges): when it is not zero, the call reruns as
    `fallback` with the exact templates."""
    exe = Executable(plan, reuse_buffers,
                     rerun=_ExactRerun(fallback, reuse_buffers) if fallback else None)
    if config.DEBUG >= 2:
        print(f"--- fusion plan ---\n{plan.describe()}", file=sys.stderr)
    if config.DEBUG >= 3:
        print(exe.explain(), file=sys.stderr)
    return exe
