"""Numba CPU backend: each fusion Kernel becomes generated Python loop source compiled with
numba.njit; the steps between kernels are NumPy/BLAS calls; a generated driver function runs
them in order with outputs allocated once per call (or once, with reuse_buffers).

Kernel source depends on dtypes, ranks and which dimensions broadcast, never on sizes (they
are arguments), so new sizes reuse compiled kernels. Sources are written to
`<cache>/kernels/<hash>.py` so Numba's on-disk cache lets a new process skip compilation.
"""
from __future__ import annotations

import builtins
import hashlib
import importlib.util
import os
import re
import sys
import threading

import numba
import numpy as np
from numba.core.errors import NumbaError

from .. import config, fusion
from ..ir import Literal, Var
from ..primitives import CONTRACT, REDUCE

# small inputs run serially: a parallel launch costs more than the loop below this size
SERIAL_BELOW = 1 << 15
# accumulators split the parallel loop into at most CHUNKS chunks of at least MIN_CHUNK
# elements, each with its own partial, combined in order after the loop (see source())
CHUNKS = 64
MIN_CHUNK = 4096
# max/min/prod row reductions keep this many independent partials (see emit_pass)
LANES = 8
# No 'reassoc' on kernels: it would let LLVM rewrite x*2 - x into x (inf - inf is NaN in
# NumPy). Only the reduction combines (vm.radd / vm.rmul) carry it, which is all the loop
# vectorizer needs to vectorize a sum.
_FLAGS = "fastmath={'contract'}, error_model='numpy', cache=True, nogil=True"

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


def _usable(template) -> bool:
    """A template the generated module can call: every `vm.<fn>` it names exists."""
    if not isinstance(template, str):
        return True
    return all(_HAVE_VM and hasattr(_vm, fn) for fn in re.findall(r"\bvm\.(\w+)", template))


def _T(dtype: np.dtype) -> str:
    return "np.bool_" if dtype == np.dtype(bool) else f"np.{dtype.name}"


def _literal(val, dtype: np.dtype) -> str:
    """Source text for the scalar `val` of `dtype` (a reduction's identity)."""
    if isinstance(val, float) and np.isinf(val):
        return f"{'-' if val < 0 else ''}{_T(dtype)}(np.inf)"
    return f"{_T(dtype)}({val!r})"


# ----- kernel source -----
class _KernelSource:
    """Generates one kernel's function source (a parallel and a serial variant)."""

    backend = BACKEND
    lanes = True  # max/min/prod row reductions in LANES partials (see emit_pass)

    def __init__(self, k: fusion.Kernel, exact: frozenset = frozenset()) -> None:
        self.k, self.exact = k, exact  # primitives emitted with their shared template
        self.inputs = k.inputs
        self.in_names = {self._key(a): f"a{i}" for i, a in enumerate(self.inputs)}
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

    @staticmethod
    def _key(a):
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

    def const(self, lit: Literal) -> str:
        val = lit.val.item()
        if lit.dtype == np.dtype(bool):
            return repr(bool(val))
        if isinstance(val, float) and not np.isfinite(val):
            val = f"np.{'nan' if np.isnan(val) else ('inf' if val > 0 else '-np.inf')}"
            val = val.replace("np.-np.inf", "-np.inf")
        name = f"c{len(self.consts)}"
        self.consts.append(f"{name} = {_T(lit.dtype)}({val})")
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
        amap = tuple(None if d == 1 else out_amap[off + i] for i, d in enumerate(shape))
        name = self.in_names[self._key(a)]
        if all(ax is None for ax in amap):  # loop-invariant: load once, before the loops
            self.hoisted[name] = f"{name}[{self.index(amap, len(shape))}]"
            return f"s_{name}"
        return f"{name}[{self.index(amap, len(shape))}]"

    def expr(self, e) -> str:
        out = e.outputs[0]
        amap = self.k.amaps[out.id]
        args = [self.operand(a, amap) for a in e.inputs]
        if e.prim.kind == REDUCE:  # over size-1 dims only: a copy
            return args[0]
        params = {k: (v.name if isinstance(v, np.dtype) else v) for k, v in e.params.items()}
        return self.template(e.prim, out.aval.dtype).format(*args, T=_T(out.aval.dtype),
                                                            **params)

    def override(self, prim):
        """This backend's override of `prim`'s emit (a Reduce's combine), if it can use it."""
        if prim.name in self.exact:
            return None
        t = prim.emit_for.get(self.backend)
        return t if t is not None and _usable(t) else None

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
        return _literal(e.prim.emit.identity(dt), dt)

    # --- body ---
    def emit_values(self, eqns, ind: str, stores: bool = True, acc_into: bool = True) -> None:
        for e in eqns:
            out = e.outputs[0]
            kind = self.k.kinds[out.id]
            if kind == "acc":
                if acc_into:
                    x = self.reduce_operand(e)
                    self.lines.append(
                        f"{ind}acc{out.id} = {self.reduce_step(e, f'acc{out.id}', x)}")
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
            reds = [e for e in row_eqns if e.prim.kind == REDUCE and
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
            self.emit_values([e for e in rows if not (k.kinds[e.outputs[0].id] == "row"
                                                      and e.prim.kind == REDUCE)], ind)
            self.emit_values(accs_at.get(("row", p), []), ind)
            if p == n_pass:
                break
            reds, stored, accs, roots = passes[p]
            loaded = frozenset(v for v, (_, made, last) in stash.items() if made < p <= last)
            body = self.closure(roots, loaded)
            self.emit_pass(p, reds, stored, accs, body, stash, loaded, ind)

    def emit_pass(self, p, reds, stored, accs, body, stash, loaded, ind) -> None:
        """One pass over the row. Max/min/prod reductions keep LANES partials along the last
        inner axis: a NaN-exact max cannot be reordered by LLVM, but LANES independent chains
        vectorize (5x faster on a 1000-wide row max)."""
        k = self.k
        laned = [r for r in reds if r.prim.emit.lanes] if self.lanes else []
        for r in reds:
            self.lines.append(f"{ind}r{r.outputs[0].id} = {self.init(r)}")
        for r in laned:
            self.lines.append(f"{ind}q{r.outputs[0].id} = np.full({LANES}, {self.init(r)}, "
                              f"{_T(r.outputs[0].aval.dtype)})")
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
        else:
            body_lines(self.open_inner(ind), lane=False)
        for r in laned:
            v = r.outputs[0].id
            self.lines.append(f"{ind}for l in range({LANES}):")
            self.lines.append(f"{ind}    r{v} = {self.reduce_step(r, f'r{v}', f'q{v}[l]')}")

    def open_inner(self, ind: str) -> str:
        """Open the loops over one row's inner axes; returns the body's indentation."""
        for ax in self.inner:
            self.lines.append(f"{ind}for i{ax} in range(n{ax}):")
            ind += "    "
        return ind

    def finish_row_reduce(self, e, ind: str) -> None:
        """A row reduction's value once its pass is over (a GPU generator combines the
        threads of a block here)."""
        self.lines.append(f"{ind}v{e.outputs[0].id} = r{e.outputs[0].id}")

    def _producer(self, a):
        if isinstance(a, Var):
            for e in self.k.eqns:
                if e.outputs[0] is a and self.is_inner.get(a.id) and self.k.kinds[a.id] == "elem":
                    return e
        return None

    def source(self, name: str, parallel: bool) -> str:
        k, self.lines = self.k, []
        sizes = ", ".join(f"n{a}" for a in range(len(self.space)))
        args = [self.in_names[self._key(a)] for a in self.inputs] + list(self.out_names.values())
        self.lines.append(f"def {name}({', '.join([sizes] + args)}):")
        self.hoisted: dict[str, str] = {}
        header = len(self.lines)
        loop = "prange" if parallel else "range"
        ind = "    "
        p = self.par_axis
        if self.accs:
            # accumulators: fixed slices (chunks) of the parallel axis, each with its own
            # partial, combined in chunk order after the loop, so results depend on the sizes
            # only, not on the thread count or the variant. At least MIN_CHUNK elements per
            # chunk: a short chunk's loop does not vectorize (W6). The index is unsigned: a
            # signed range(lo, hi) index makes Numba emit negative-index wraparound checks,
            # which stop LLVM vectorizing the loop (3.5x slower).
            total = " * ".join(f"n{a}" for a in range(len(self.space)))
            self.lines.append(f"{ind}nch = max(1, min(n{p}, {CHUNKS}, ({total}) // {MIN_CHUNK}))")
            for e in self.accs:
                v, dt = e.outputs[0].id, _T(e.outputs[0].aval.dtype)
                # the serial variant keeps a running combine instead of an array of partials
                self.lines.append(f"{ind}p{v} = np.empty(nch, {dt})" if parallel else
                                  f"{ind}p{v} = {self.init(e)}")
            self.lines.append(f"{ind}for c in {loop}(nch):")
            ind += "    "
            for e in self.accs:
                self.lines.append(f"{ind}acc{e.outputs[0].id} = {self.init(e)}")
            self.lines.append(f"{ind}for j in range(c * n{p} // nch, (c + 1) * n{p} // nch):")
            self.lines.append(f"{ind}    i{p} = np.uint64(j)")
        else:
            self.lines.append(f"{ind}for i{p} in {loop}(n{p}):")
        ind += "    "
        for ax in self.outer[1:]:
            self.lines.append(f"{ind}for i{ax} in range(n{ax}):")
            ind += "    "
        self.emit_loops(ind)
        ind = "    "
        for e in self.accs:
            v = e.outputs[0].id
            if parallel:
                self.lines.append(f"{ind}    p{v}[c] = acc{v}")
            else:
                self.lines.append(f"{ind}    p{v} = {self.reduce_step(e, f'p{v}', f'acc{v}')}")
        for e in self.accs:
            v = e.outputs[0].id
            if parallel:
                self.lines.append(f"{ind}acc{v} = {self.init(e)}")
                self.lines.append(f"{ind}for c in range(nch):")
                self.lines.append(f"{ind}    acc{v} = {self.reduce_step(e, f'acc{v}', f'p{v}[c]')}")
                self.lines.append(f"{ind}v{v} = acc{v}")
            else:
                self.lines.append(f"{ind}v{v} = p{v}")
            self.store(e.outputs[0], ind)
        epi = [e for e in k.eqns if k.kinds[e.outputs[0].id] == "epi"]
        self.emit_values(epi, ind)
        self.lines.append(f"{ind}return 0")
        self.lines[header:header] = [f"    s_{n} = {load}" for n, load in self.hoisted.items()]
        return _canonical_names("\n".join(self.lines))


def _canonical_names(source: str) -> str:
    """Renumber value names (v12, acc12, p12, r12) in order of appearance: the source then
    depends on the kernel's structure only, not on the ids of one trace, so a retrace (a new
    size) finds the kernel already compiled."""
    numbers: dict[str, str] = {}

    def rename(m):
        return m.group(1) + numbers.setdefault(m.group(2), str(len(numbers)))
    return re.sub(r"\b(v|acc|p|q|r)(\d+)\b", rename, source)


# ----- compile and cache -----
_lock = threading.RLock()
_compiled: dict[str, object] = {}


def _module_source(body_par: str, body_ser: str, consts: list[str]) -> str:
    head = ["import math", "import numpy as np", "from numba import njit, prange"]
    if _HAVE_VM:
        head.append("from tracejit.backends import vecmath as vm")
    consts = list(dict.fromkeys(consts))
    return "\n".join(head + consts + ["", "", body_par.replace("def ", f"@njit(parallel=True, {_FLAGS})\ndef ", 1),
                                      "", "", body_ser.replace("def ", f"@njit({_FLAGS})\ndef ", 1), ""])


def _load(source: str, digest: str):
    """Import the kernel module from the cache directory, writing it first if needed."""
    mod_name = f"tracejit_k_{digest}"
    if mod_name in _compiled:
        return _compiled[mod_name]
    folder = os.path.join(config.CACHE_DIR, "kernels")
    path = os.path.join(folder, f"{mod_name}.py")
    try:
        os.makedirs(folder, exist_ok=True)
        existing = None
        if os.path.exists(path):
            with open(path) as f:
                existing = f.read()
        if existing != source:  # absent, or corrupted: (re)write atomically
            tmp = f"{path}.{os.getpid()}.{threading.get_ident()}.tmp"
            with open(tmp, "w") as f:
                f.write(source)
            os.replace(tmp, path)
    except OSError:  # unwritable cache: fall back to a private temporary directory
        import tempfile
        folder = tempfile.mkdtemp(prefix="tracejit-")
        path = os.path.join(folder, f"{mod_name}.py")
        with open(path, "w") as f:
            f.write(source)
    spec = importlib.util.spec_from_file_location(mod_name, path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[mod_name] = module  # Numba's disk cache re-imports it by name
    spec.loader.exec_module(module)
    _compiled[mod_name] = module
    return module


def _clear_numba_cache(module) -> None:
    folder = os.path.join(os.path.dirname(module.__file__), "__pycache__")
    stem = os.path.splitext(os.path.basename(module.__file__))[0]
    if os.path.isdir(folder):
        for f in os.listdir(folder):
            if f.startswith(stem) and (f.endswith(".nbi") or f.endswith(".nbc")):
                try:
                    os.remove(os.path.join(folder, f))
                except OSError:
                    pass


class CompiledKernel:
    """A kernel's serial and parallel variants. The first call picks one (serial first when
    the parallel one is not cached, which then compiles in the background) and recovers
    from a broken disk cache."""

    def __init__(self, kernel: fusion.Kernel, allow_parallel: bool = True,
                 exact: frozenset = frozenset()) -> None:
        gen = _KernelSource(kernel, exact)
        first = kernel.eqns[0].prim.name
        body = gen.source("KERNEL", parallel=True)
        serial = gen.source("KERNEL", parallel=False)
        consts = gen.consts  # both variants name the same constants
        digest = hashlib.sha256((body + "\n".join(consts)).encode()).hexdigest()[:16]
        self.name = f"k_{first}_{digest[:8]}"
        body = body.replace("def KERNEL(", f"def {self.name}_par(", 1)
        serial = serial.replace("def KERNEL(", f"def {self.name}_ser(", 1)
        self.source = _module_source(body, serial, consts)
        self.digest = hashlib.sha256(self.source.encode()).hexdigest()[:16]
        self.kernel, self.gen = kernel, gen
        self.parallel = allow_parallel and int(np.prod(kernel.space,
                                                       dtype=np.int64)) >= SERIAL_BELOW
        with _lock:
            module = _load(self.source, self.digest)
        self.module = module
        self.ser = getattr(module, f"{self.name}_ser")
        self.par = getattr(module, f"{self.name}_par") if self.parallel else None
        self.fn = self.ser
        self.ok = False
        self.slot = None  # (globals, name) of a driver calling this kernel
        self.tier_up: threading.Thread | None = None

    def __call__(self, *args):
        if self.ok:
            return self.fn(*args)
        with _lock:
            if self.ok:
                return self.fn(*args)
            if self.par is not None and _load_cached(self.par, args):
                self.fn = self.par  # a warm disk cache: the parallel variant at once
            try:
                out = self.fn(*args)
            except NumbaError:
                raise  # a code-generation bug, not a cache problem: never hide it
            except Exception:  # a corrupted or stale disk-cache entry: drop it, rebuild once
                _clear_numba_cache(self.module)
                self.fn = numba.njit(fastmath={"contract"}, error_model="numpy", nogil=True,
                                     parallel=self.fn is self.par)(self.fn.py_func)
                out = self.fn(*args)
            self.ok = True
            self._use(self.fn)
            if self.par is not None and self.fn is not self.par:
                # tiered compilation: the first call ran the serial loop (compiled in about
                # 60% of the parallel one's time); the parallel variant compiles in the
                # background and replaces it when ready
                sig = self.ser.signatures[0]
                self.tier_up = threading.Thread(target=self._compile_parallel, args=(sig,),
                                                name=f"tracejit compile {self.name}")
                _TIER_UPS.add(self.tier_up)
                self.tier_up.start()
        return out

    def _use(self, fn) -> None:
        self.fn = fn
        if self.slot is not None:  # the driver calls the dispatcher directly
            self.slot[0][self.slot[1]] = fn

    def _compile_parallel(self, sig) -> None:
        try:
            self.par.compile(sig)
            self._use(self.par)
        except Exception:  # noqa: BLE001  (the serial loop stays: correct, only slower)
            pass
        finally:
            _TIER_UPS.discard(threading.current_thread())


_TIER_UPS: set = set()  # background compiles of parallel variants in flight


def wait_compiled() -> None:
    """Block until every background compile of a parallel kernel variant has finished."""
    for t in list(_TIER_UPS):
        t.join()


def _load_cached(dispatcher, args) -> bool:
    """Load `dispatcher`'s compiled code for these arguments from Numba's disk cache, if it is
    there; False (and nothing compiled) otherwise."""
    try:
        sig = tuple(numba.typeof(a) for a in args)
        cres = dispatcher._cache.load_overload(sig, dispatcher.targetctx)
        if cres is None:
            return False
        dispatcher.targetctx.insert_user_function(cres.entry_point, cres.fndesc,
                                                  [cres.library])
        dispatcher.add_overload(cres)
        return True
    except Exception:  # noqa: BLE001  (Numba internals moved, or a broken entry: compile)
        return False


# ----- driver -----


class Executable:
    """Runs a plan: steps and kernels in order, on flat input arrays."""

    def __init__(self, plan: fusion.Plan, reuse_buffers: bool,
                 exact: frozenset = frozenset(), rerun=None) -> None:
        self.graph, self.items = plan.graph, plan.items
        self.rerun = rerun  # if set, the last output is guard_ranges' count: rerun when > 0
        # a Numba parallel region right after an OpenBLAS call fights its threads (measured on
        # W5: 16 ms parallel vs 3.0 ms serial), so plans that call BLAS run serial loops
        blas = any(isinstance(it, fusion.Step) and it.eqn.prim.kind == CONTRACT
                   for it in self.items)
        self.kernels = [CompiledKernel(it, allow_parallel=not blas, exact=exact)
                        for it in self.items if isinstance(it, fusion.Kernel)]
        self.reuse = reuse_buffers
        self.buffers: dict[int, np.ndarray] = {}
        self.run = self._make_driver()

    def _make_driver(self):
        """Straight-line Python for one call: fewer lookups on the hot path."""
        g = self.graph
        glb = {"np": np, "_asarray": np.asarray, "_empty": np.empty, "_buf": self.buffers}
        lines = [f"def run({', '.join(f'x{i}' for i in range(len(g.inputs)))}):"]
        names: dict[int, str] = {}
        for i, v in enumerate(g.inputs):
            names[v.id] = f"x{i}"
            lines.append(f"    x{i} = _asarray(x{i}, np.{v.aval.dtype.name})")
        views = set()  # values that may alias an input: copied if returned

        def ref(a):
            if isinstance(a, Literal):
                key = f"L{len(glb)}"
                glb[key] = a.val.reshape(1) if a.val.ndim == 0 else a.val
                return key
            return names[a.id]

        kernels = iter(self.kernels)
        for item in self.items:
            if isinstance(item, fusion.Step):
                e = item.eqn
                key = f"S{len(glb)}"
                out = e.outputs[0]
                if e.prim.view is not None:  # no copy: the result may alias its input
                    glb[key] = e.prim.view
                    views.add(out.id)
                else:
                    glb[key] = e.prim.impl
                args = [ref(a) if not (isinstance(a, Var) and a.aval.ndim == 0) else
                        f"{ref(a)}.reshape(())" for a in e.inputs]
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
            for a in ck.gen.inputs:
                r = ref(a)
                ins.append(f"{r}.reshape(1)" if a.aval.ndim == 0 and isinstance(a, Var) else r)
            outs = [f"t{v.id}" for v in item.outputs]
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
            lines.append(f"        return _rerun({', '.join(f'x{i}' for i in range(len(g.inputs)))})")
        lines.append(f"    return [{', '.join(rets)}]")
        src = "\n".join(lines)
        self.driver_source = src
        exec(builtins.compile(src, f"<tracejit driver {id(self)}>", "exec"), glb)
        return glb["run"]

    def __call__(self, *args):
        return self.run(*args)

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
