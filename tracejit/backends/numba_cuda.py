"""Numba CUDA backend: the fusion plan the CPU backend uses, generated as `numba.cuda.jit`
kernels. Every value stays on the device between kernels; NumPy inputs are copied in once and
results copied out, device inputs (`__cuda_array_interface__`) are used in place.

How each plan item runs on the device:

    Kernel, no inner axes   grid-stride loop over the flattened space, one thread per element
    Kernel with inner axes  one block per row (grid-stride over rows); the block's threads
                            stride over the row, each row reduction ends in a shared-memory
                            tree whose result every thread reads back
    accumulators (acc)      per-thread partial -> block tree -> one partial per block; a second
                            one-block launch combines the partials (deterministic, every kind:
                            sum, prod, and NaN-propagating max/min) and runs the epilogue;
                            a float32 sum's partials are float64 (row sums' too)
    matmul step             cuBLAS through CuPy when installed, else a tiled shared-memory
                            kernel (TILE x TILE threads per block)
    layout steps            a gather kernel per step (transpose, slice, pad, rev, concatenate,
                            broadcast, reshape of strided data); a reshape of contiguous data is
                            a device view; argmax/argmin one thread per output element
    host steps              LAPACK routines (linalg solve, inv, det, cholesky; on_host): the
                            NumPy reference on host copies of the inputs, the result copied
                            back; loops and branches: their body plans launched per step

    thread partials  t0 t1 t2 t3 ... tB      block tree (shared memory)     finish launch
    block 0          a  b  c  d  ...   ──▶   a+b  c+d  ... ──▶ p[0]  ─┐
    block 1          ...               ──▶   ...           ──▶ p[1]  ─┼─▶ acc, epilogue
    ...                                                                ┘

Kernel sources are written to `<cache>/kernels/` like the CPU backend's. Emit templates are
the primitives' own (`math.*` is libdevice on the GPU) or their "numba_cuda" overrides. On
Numba's CUDA simulator (NUMBA_ENABLE_CUDASIM=1) the same source runs as Python with `math`
bound to NumPy's ufuncs, which return inf/NaN where Python's math raises, as the device does.
"""
from __future__ import annotations

import contextlib
import hashlib
import math
import sys
import types
import warnings

import numpy as np

from .. import config, fusion
from ..errors import DeviceError, UnsupportedError, user_error
from ..ir import Literal, Var
from ..primitives import CONTRACT, REDUCE
from . import is_device_array
from .kernel_cache import load
from .loopgen import KernelSource, canonical_names, scalar_type

# threads per block (a power of two); the simulator runs each thread as a Python thread,
# so its tests lower this
BLOCK = 128
# most blocks a grid-stride launch uses (more work means more iterations per thread)
MAX_BLOCKS = 1024
# matmul tile edge: TILE x TILE threads per block
TILE = 16
# kernels live in files under the cache directory, so Numba can cache their machine code
_JIT = "@cuda.jit(cache=True)\n"

BACKEND = "numba_cuda"  # the key of this backend's overrides in a primitive's emit_for


# ----- the device -----
_CUDA = None  # numba.cuda once it was found usable (checked on every call until then)


def _cuda():
    """numba.cuda when a GPU (or the simulator) is usable; else a DeviceError saying why."""
    global _CUDA
    if _CUDA is not None:
        return _CUDA
    try:
        from numba import cuda
    except ImportError as e:
        raise user_error(
            DeviceError, f"device='cuda': numba.cuda cannot be imported ({e}).",
            "install the CUDA extra: pip install 'tracejit[cuda]' (numba-cuda), or use "
            "device='cpu'.") from None
    if not cuda.is_available():
        raise user_error(
            DeviceError, "device='cuda': no CUDA GPU is available (numba-cuda found no "
            "working driver or device).",
            "check the NVIDIA driver (nvidia-smi) and the numba-cuda install, or set "
            "NUMBA_ENABLE_CUDASIM=1 before starting Python to run on Numba's CUDA simulator "
            "(slow; for tests), or use device='cpu'.")
    _CUDA = cuda
    return cuda


def available() -> bool:
    """A GPU or the simulator is usable (numba-cuda installed and a device found)."""
    try:
        _cuda()
    except DeviceError:
        return False
    return True


def simulated() -> bool:
    from numba import config as nconfig
    return bool(nconfig.ENABLE_CUDASIM)


def _as_device(cuda, x):
    if simulated() or getattr(x, "__cuda_ndarray__", False):
        return x
    return cuda.as_cuda_array(x)  # CuPy, PyTorch, ...: a view of the same memory


def _grid(n: int, per_block: int = 1) -> int:
    return max(1, min(MAX_BLOCKS, -(-n // per_block)))


def _unravel(flat: str, names: list[str], sizes: list[str], ind: str) -> list[str]:
    """Lines splitting a C-order flat index into one index per axis."""
    if not names:
        return []
    lines = [f"{ind}q = {flat}"]
    for name, size in zip(reversed(names[1:]), reversed(sizes[1:])):
        lines += [f"{ind}{name} = q % {size}", f"{ind}q = q // {size}"]
    return lines + [f"{ind}{names[0]} = q"]


def _tree(sh: str, combine: str, ind: str) -> list[str]:
    """A shared-memory tree over one block: afterwards sh[0] holds the block's result."""
    step = combine.format(acc=f"{sh}[tx]", x=f"{sh}[tx + s]")
    return [f"{ind}cuda.syncthreads()", f"{ind}s = BLOCK // 2", f"{ind}while s > 0:",
            f"{ind}    if tx < s:", f"{ind}        {sh}[tx] = {step}",
            f"{ind}    cuda.syncthreads()", f"{ind}    s //= 2"]


def _module_source(body: str, consts: list[str]) -> str:
    head = ["import math", "import numpy as np", "from numba import cuda", "",
            f"BLOCK = {BLOCK}"] + list(dict.fromkeys(consts))
    return "\n".join(head + ["", "", body, ""])


def _bind_math(module) -> None:
    """On the simulator: `math` answers inf/NaN like the device, not Python's exceptions."""
    if simulated():
        module.math = _SIM_MATH


class _SimMath(types.SimpleNamespace):
    """`math` for the simulator: each name is NumPy's function of that name (NumPy spells
    math.asin arcsin), or math's own where NumPy has none."""

    def __getattr__(self, name: str):
        fn = getattr(np, name, None)
        if fn is None and name.startswith("a"):
            fn = getattr(np, "arc" + name[1:], None)
        if fn is None:
            fn = getattr(math, name)
        setattr(self, name, fn)
        return fn


_SIM_MATH = _SimMath()


@contextlib.contextmanager
def _quiet():
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        yield


def _numba_type(dtype: np.dtype, ndim: int):
    from numba.cuda import types as nt
    from numba.cuda.np.numpy_support import from_dtype
    return nt.Array(from_dtype(dtype), max(ndim, 1), "A")


# ----- fused kernels -----
class _CudaKernelSource(KernelSource):
    """A fusion Kernel as a main launch (loops, block partials) and a finishing launch
    (partials -> accumulators -> epilogue), around the shared generator's loops."""

    backend = BACKEND
    lanes = False  # the CPU's partials for a row prod (Reduce.lanes): threads do that here

    def __init__(self, k: fusion.Kernel) -> None:
        super().__init__(k)
        self.n_shared = 0
        self.partials = {e.outputs[0].id: f"p{e.outputs[0].id}" for e in self.accs}

    # float32 sums (Reduce.wide) keep every partial in float64: a thread's over its
    # grid-stride loop, the block tree, the block partials; the total is rounded once
    def partial_dtype(self, e) -> np.dtype:
        return np.dtype(np.float64) if self.wide(e) else e.outputs[0].aval.dtype

    def init(self, e) -> str:
        return "np.float64(0)" if self.wide(e) else super().init(e)

    def total(self, e, value: str) -> str:
        """A reduction's value from its (float64, for a wide sum) partial."""
        return f"np.float32({value})" if self.wide(e) else value

    def shared(self, dtype: np.dtype) -> str:
        """A new shared array of BLOCK values, declared at the kernel's top."""
        name = f"shm{self.n_shared}"
        self.n_shared += 1
        self.lines.insert(self.header,
                          f"    {name} = cuda.shared.array(BLOCK, {scalar_type(dtype)})")
        return name

    def _row_level(self, var_id: int) -> bool:
        """Computed once per row by every thread of the block (stored by thread 0 only)."""
        return bool(self.inner) and not self.is_inner.get(var_id, True)

    def store(self, var, ind: str) -> None:
        if var.id in self.out_names and self._row_level(var.id):
            ind += "if tx == 0: "
        super().store(var, ind)

    def emit_values(self, eqns, ind: str, stores: bool = True, acc_into: bool = True) -> None:
        for e in eqns:
            out = e.outputs[0]
            kind = self.k.kinds[out.id]
            if kind == "acc":
                per_row = self.inner and not (
                    fusion.footprint(self.k.reduce_in[out.id]) & set(self.inner))
                guard = "if tx == 0: " if per_row else ""  # one contribution per row
                step = self.reduce_step(e, f"acc{out.id}", self.reduce_operand(e))
                self.lines.append(f"{ind}{guard}acc{out.id} = {step}")
                continue
            if kind == "row" and e.prim.kind == REDUCE:
                continue
            self.lines.append(f"{ind}v{out.id} = {self.expr(e)}")
            if stores:
                self.store(out, ind)

    def open_inner(self, ind: str) -> str:
        self.lines.append(f"{ind}for j in range(tx, ninner, BLOCK):")
        ind += "    "
        self.lines += _unravel("j", [f"i{a}" for a in self.inner],
                               [f"n{a}" for a in self.inner], ind)
        return ind

    def finish_row_reduce(self, e, ind: str) -> None:
        v = e.outputs[0].id
        sh = self.shared(self.partial_dtype(e))
        self.lines.append(f"{ind}{sh}[tx] = r{v}")
        self.lines += _tree(sh, self.combine(e.prim), ind)
        self.lines += [f"{ind}v{v} = {self.total(e, f'{sh}[0]')}", f"{ind}cuda.syncthreads()"]

    def _args(self) -> list[str]:
        sizes = [f"n{a}" for a in range(len(self.space))]
        return sizes + [self.in_names[self.key(a)] for a in self.inputs] + \
            list(self.out_names.values()) + list(self.partials.values())

    def main_source(self, name: str) -> str:
        self.lines, self.hoisted = [f"def {name}({', '.join(self._args())}):"], {}
        self.header = 1
        ind = "    "
        outer = [a for a in range(len(self.space)) if a not in self.inner]
        self.lines.append(f"{ind}tx = cuda.threadIdx.x")
        total = " * ".join(f"n{a}" for a in outer) or "1"
        for e in self.accs:
            self.lines.append(f"{ind}acc{e.outputs[0].id} = {self.init(e)}")
        if self.inner:
            self.lines.append(f"{ind}ninner = {' * '.join(f'n{a}' for a in self.inner)}")
            self.lines.append(f"{ind}for t in range(cuda.blockIdx.x, {total}, cuda.gridDim.x):")
        else:
            self.lines.append(f"{ind}for t in range(cuda.grid(1), {total}, cuda.gridsize(1)):")
        self.lines += _unravel("t", [f"i{a}" for a in outer], [f"n{a}" for a in outer],
                               ind + "    ")
        self.emit_loops(ind + "    ")
        for e in self.accs:  # this block's partial
            v = e.outputs[0].id
            sh = self.shared(self.partial_dtype(e))
            self.lines.append(f"{ind}{sh}[tx] = acc{v}")
            self.lines += _tree(sh, self.combine(e.prim), ind)
            self.lines.append(f"{ind}if tx == 0: p{v}[cuda.blockIdx.x] = {sh}[0]")
        self._hoist()
        return "\n".join(self.lines)

    def finish_source(self, name: str) -> str:
        """One block: combine the block partials, store accumulators, run the epilogue."""
        self.lines, self.hoisted = [f"def {name}({', '.join(self._args() + ['nparts'])}):"], {}
        self.header = 1
        ind = "    "
        self.lines.append(f"{ind}tx = cuda.threadIdx.x")
        shs = {}
        for e in self.accs:
            v = e.outputs[0].id
            shs[v] = self.shared(self.partial_dtype(e))
            self.lines += [f"{ind}acc{v} = {self.init(e)}",
                           f"{ind}for c in range(tx, nparts, BLOCK):",
                           f"{ind}    acc{v} = {self.reduce_step(e, f'acc{v}', f'p{v}[c]')}",
                           f"{ind}{shs[v]}[tx] = acc{v}"]
            self.lines += _tree(shs[v], self.combine(e.prim), ind)
        self.lines.append(f"{ind}if tx == 0:")
        ind += "    "
        for e in self.accs:
            self.lines.append(f"{ind}v{e.outputs[0].id} = "
                              f"{self.total(e, f'{shs[e.outputs[0].id]}[0]')}")
            self.store(e.outputs[0], ind)
        epi = [e for e in self.k.eqns if self.k.kinds[e.outputs[0].id] == "epi"]
        self.emit_values(epi, ind)
        self._hoist()
        return "\n".join(self.lines)

    def _hoist(self) -> None:
        self.lines[self.header:self.header] = [f"    s_{n} = {load}"
                                               for n, load in self.hoisted.items()]


class _Module:
    """A generated kernel module: written to the cache directory, imported, math bound."""

    def __init__(self, first: str, body: str, consts: list[str]) -> None:
        digest = hashlib.sha256((body + "\n".join(consts)).encode()).hexdigest()[:16]
        self.name = f"k_{first}_{digest[:8]}"
        self.source = _module_source(body.replace("KERNEL", self.name), consts)
        self.module = load(self.source, "cuda_" + hashlib.sha256(
            self.source.encode()).hexdigest()[:16])
        _bind_math(self.module)

    def fn(self, suffix: str = ""):
        return getattr(self.module, self.name + suffix)


class FusedKernel:
    """One fusion Kernel on the device: main launch, plus a finishing launch for accs."""

    def __init__(self, k: fusion.Kernel) -> None:
        self.k = k
        gen = _CudaKernelSource(k)
        body = gen.main_source("KERNEL_main")
        if gen.accs:
            body += "\n\n\n" + gen.finish_source("KERNEL_fin")
        body = canonical_names(body.replace("def KERNEL_", _JIT + "def KERNEL_"))
        self.mod = _Module(k.eqns[0].prim.name, body, gen.consts)
        self.name, self.source, self.gen = self.mod.name, self.mod.source, gen
        space = k.space or (1,)
        self.sizes = [int(d) for d in space]
        self.block = BLOCK  # the block size the source was generated for (tree reductions)
        outer = int(np.prod([d for a, d in enumerate(space) if a not in k.inner], dtype=np.int64))
        self.grid = _grid(outer) if k.inner else _grid(outer, self.block)

    def __call__(self, cuda, env: dict, alloc) -> None:
        gen = self.gen
        ins = [env[gen.key(a)] for a in gen.inputs]
        outs = [alloc(v) for v in self.k.outputs]
        for v, o in zip(self.k.outputs, outs):
            env[v.id] = o
        parts = [cuda.device_array(self.grid, gen.partial_dtype(e)) for e in gen.accs]
        args = self.sizes + ins + outs + parts
        self.mod.fn("_main")[self.grid, self.block](*args)
        if gen.accs:
            self.mod.fn("_fin")[1, self.block](*args, self.grid)

    def argtypes(self) -> dict:
        """Numba argument types of each launch (to compile without a GPU: check_lowering)."""
        from numba.cuda import types as nt
        gen = self.gen
        arrays = [_numba_type(a.aval.dtype, a.aval.ndim) for a in gen.inputs] + \
            [_numba_type(v.aval.dtype, v.aval.ndim) for v in self.k.outputs] + \
            [_numba_type(gen.partial_dtype(e), 1) for e in gen.accs]
        main = [nt.int64] * len(self.sizes) + arrays
        return {"_main": main, **({"_fin": main + [nt.int64]} if gen.accs else {})}


# ----- steps: matmul and layout -----
def _index(names: list[str]) -> str:
    return ", ".join(names) if names else "0"


def _gather_source(e) -> str:
    """A grid-stride loop over the output's elements around the primitive's gather body."""
    if e.prim.gather is None:
        raise UnsupportedError(f"the CUDA backend has no device kernel for "
                               f"'{e.prim.name}' steps.")
    out = e.outputs[0].aval
    xs = [f"x{k}" for k in range(len(e.inputs))]
    i = [f"i{d}" for d in range(out.ndim)]
    lines = [f"def KERNEL(o, {', '.join(xs)}):",
             "    for t in range(cuda.grid(1), o.size, cuda.gridsize(1)):"]
    lines += _unravel("t", i, [f"o.shape[{d}]" for d in range(out.ndim)], "        ")
    lines += ["        " + line for line in e.prim.gather(e)]
    return "\n".join(lines)


def _matmul_source(e) -> str:
    """Tiled C = A @ B over the last two axes, batch axes broadcast like NumPy; the grid
    strides over tiles and batch entries so any size fits the launch limits."""
    a, b, out = (v.aval for v in (*e.inputs, e.outputs[0]))
    nb = out.ndim - 2
    ob = [f"b{d}" for d in range(nb)]

    def batch(x):  # x's batch index: right-aligned, size-1 axes broadcast
        off = nb - (x.ndim - 2)
        return ["0" if n == 1 else ob[off + d] for d, n in enumerate(x.shape[:-2])]
    ia = _index(batch(a) + ["row", "kk"])
    ib = _index(batch(b) + ["kk", "col"])
    io = _index(ob + ["row", "col"])
    T = scalar_type(out.dtype)
    lines = [
        "def KERNEL(o, x0, x1, nbatch, m, n, k):",
        f"    sa = cuda.shared.array(({TILE}, {TILE}), {T})",
        f"    sb = cuda.shared.array(({TILE}, {TILE}), {T})",
        "    tx = cuda.threadIdx.x", "    ty = cuda.threadIdx.y",
        "    for z in range(cuda.blockIdx.z, nbatch, cuda.gridDim.z):"]
    lines += _unravel("z", ob, [f"o.shape[{d}]" for d in range(nb)], "        ")
    lines += [
        f"        for ti in range(cuda.blockIdx.y, (m + {TILE - 1}) // {TILE}, cuda.gridDim.y):",
        (f"            for tj in range(cuda.blockIdx.x, (n + {TILE - 1}) // {TILE}, "
         "cuda.gridDim.x):"),
        f"                row = ti * {TILE} + ty", f"                col = tj * {TILE} + tx",
        f"                acc = {T}(0)",
        f"                for kt in range(0, k, {TILE}):",
        "                    kk = kt + tx",
        f"                    sa[ty, tx] = x0[{ia}] if row < m and kk < k else {T}(0)",
        "                    kk = kt + ty",
        f"                    sb[ty, tx] = x1[{ib}] if kk < k and col < n else {T}(0)",
        "                    cuda.syncthreads()",
        f"                    for q in range({TILE}):",
        "                        acc += sa[ty, q] * sb[q, tx]",
        "                    cuda.syncthreads()",
        "                if row < m and col < n:",
        f"                    o[{io}] = acc"]
    return "\n".join(lines)


_CUPY: list = []


def _cupy():
    """CuPy if it is installed and a real GPU runs: matmul steps then go to cuBLAS."""
    if not _CUPY:
        try:
            import cupy
            _CUPY.append(None if simulated() else cupy)
        except Exception:  # noqa: BLE001  (not installed, or no usable CUDA for CuPy)
            _CUPY.append(None)
    return _CUPY[0]


class Step:
    """One step equation on the device: a generated gather or matmul kernel, or a view;
    matmul goes to cuBLAS through CuPy when CuPy is installed."""

    def __init__(self, e) -> None:
        self.e = e
        self.name = e.prim.name
        self.matmul = e.prim.kind == CONTRACT
        self.tile = TILE  # the tile edge a matmul source was generated for
        # a reshape is a view of contiguous data; the gather kernel serves strided inputs
        body = _matmul_source(e) if self.matmul else _gather_source(e)
        self.mod = _Module(self.name, body.replace("def KERNEL", _JIT + "def KERNEL", 1), [])
        self.source = self.mod.source

    def __call__(self, cuda, env: dict, alloc) -> None:
        e, out = self.e, self.e.outputs[0]
        xs = [env[a.id if isinstance(a, Var) else ("lit", id(a))] for a in e.inputs]
        if e.prim.host_check is not None:  # e.g. an index bounds check: a kernel can't raise
            e.prim.host_check(*[x.copy_to_host().reshape(a.aval.shape)
                                for x, a in zip(xs, e.inputs)], **e.params)
        if e.prim.same_order and xs[0].is_c_contiguous():
            env[out.id] = xs[0].reshape(out.aval.shape or (1,))
            return
        o = alloc(out)
        env[out.id] = o
        cp = _cupy() if self.matmul else None
        if cp is not None:  # zero-copy views through __cuda_array_interface__, same stream 0
            cp.matmul(cp.asarray(xs[0]), cp.asarray(xs[1]), out=cp.asarray(o))
        elif self.matmul:
            m, n, k = out.aval.shape[-2], out.aval.shape[-1], e.inputs[0].aval.shape[-1]
            nbatch = int(np.prod(out.aval.shape[:-2], dtype=np.int64))
            t = self.tile
            grid = (max(1, min(MAX_BLOCKS, -(-n // t))), max(1, min(MAX_BLOCKS, -(-m // t))),
                    max(1, min(65535, nbatch)))
            self.mod.fn()[grid, (t, t)](o, *xs, nbatch, m, n, k)
        else:
            self.mod.fn()[_grid(out.aval.size, BLOCK), BLOCK](o, *xs)

    def argtypes(self) -> dict:
        from numba.cuda import types as nt
        e = self.e
        arrays = [_numba_type(v.aval.dtype, v.aval.ndim) for v in (e.outputs[0], *e.inputs)]
        return {"": arrays + ([nt.int64] * 4 if self.matmul else [])}


class HostStep:
    """A step with no device kernel, run from the host on host copies of its inputs, results
    copied back: a LAPACK routine (`on_host`: the primitive's NumPy reference) or a loop or
    branch (tracejit/loops.py: its `step` runs the body plans compiled by this backend, once
    per step; carries cross to the host between steps: correct, not yet fast)."""

    def __init__(self, e) -> None:
        self.e, self.name = e, e.prim.name
        if e.prim.step is not None:
            self.run = e.prim.step(e, sys.modules[__name__])
            self.source = f"# {e.prim.name}: body plans compiled per sub-graph"
        else:
            self.run = lambda *xs: [e.prim.impl(*xs, **e.params)]
            self.source = f"# host step: {e.prim.name} (NumPy on host copies)"
        self.mod = types.SimpleNamespace(name=self.name)

    def __call__(self, cuda, env: dict, alloc) -> None:
        e = self.e
        host = [env[a.id if isinstance(a, Var) else ("lit", id(a))].copy_to_host().reshape(
            a.aval.shape) for a in e.inputs]
        for v, o in zip(e.outputs, self.run(*host)):
            env[v.id] = cuda.to_device(np.ascontiguousarray(
                np.asarray(o, v.aval.dtype).reshape(v.aval.shape or (1,))))

    def argtypes(self) -> dict:
        return {}


# ----- the executable -----
class Executable:
    """Runs a plan on the device. NumPy inputs are copied in and results copied out; if any
    input is a device array, results are device arrays (a 0-d result is a 0-d device array,
    as JAX returns a 0-d device Array). Results never alias inputs or each other."""

    fresh_outputs = True  # api: no host-side copy of aliased outputs needed

    def __init__(self, plan: fusion.Plan, reuse_buffers: bool) -> None:
        self.graph, self.items, self.reuse = plan.graph, plan.items, reuse_buffers
        self.ops = [FusedKernel(it) if isinstance(it, fusion.Kernel) else
                    HostStep(it.eqn) if it.eqn.prim.on_host or it.eqn.prim.step is not None
                    else Step(it.eqn)
                    for it in self.items]
        self.buffers: dict[int, object] = {}
        self.consts: dict | None = None  # literal arrays, uploaded on the first call

    def _alloc(self, cuda):
        def alloc(v):
            if self.reuse and v.id in self.buffers:
                return self.buffers[v.id]
            buf = cuda.device_array(v.aval.shape or (1,), v.aval.dtype)
            if self.reuse:
                self.buffers[v.id] = buf
            return buf
        return alloc

    def _upload_consts(self, cuda) -> dict:
        """Array literals read from memory by a kernel or a step, and literal outputs."""
        lits = [a for op in self.ops for a in (op.gen.inputs if isinstance(op, FusedKernel)
                                              else op.e.inputs) if isinstance(a, Literal)]
        lits += [o for o in self.graph.outputs if isinstance(o, Literal)]
        return {("lit", id(a)): cuda.to_device(np.ascontiguousarray(
            np.asarray(a.val, a.aval.dtype).reshape(a.aval.shape or (1,)))) for a in lits}

    def __call__(self, *leaves):
        cuda = _cuda()
        if self.consts is None:
            self.consts = self._upload_consts(cuda)
        env = dict(self.consts)
        on_device = False
        for v, x in zip(self.graph.inputs, leaves):
            if is_device_array(x):
                on_device = True
                x = _as_device(cuda, x)
                env[v.id] = x.reshape(1) if v.aval.ndim == 0 else x
            else:  # a contiguous copy: the caller's array is never touched
                host = np.ascontiguousarray(np.asarray(x, v.aval.dtype).reshape(
                    v.aval.shape or (1,)))
                env[v.id] = cuda.to_device(host)
        alloc = self._alloc(cuda)
        # the simulator's Python-thread kernels warn on inf/NaN arithmetic (a GPU is silent)
        with _quiet() if simulated() else contextlib.nullcontext():
            for op in self.ops:
                op(cuda, env, alloc)
        return self._results(cuda, env, on_device)

    def _results(self, cuda, env: dict, on_device: bool) -> list:
        inputs = {v.id for v in self.graph.inputs}
        views = {it.eqn.outputs[0].id for it in self.items
                 if isinstance(it, fusion.Step) and it.eqn.prim.same_order}
        outs, seen = [], set()
        for o in self.graph.outputs:
            key = o.id if isinstance(o, Var) else ("lit", id(o))
            arr = env[key]
            if on_device:
                if key in inputs or key in views or key in seen or isinstance(o, Literal):
                    arr = self._copy(cuda, arr)
                outs.append(arr.reshape(o.aval.shape))
            else:
                outs.append(arr.copy_to_host().reshape(o.aval.shape))
            seen.add(key)
        return outs

    def device_zeros(self, aval):
        """Zeros on the device (an unconnected gradient when results are device arrays)."""
        return _cuda().to_device(np.zeros(aval.shape, aval.dtype))

    def _copy(self, cuda, arr):
        """A fresh device copy (a strided input too): the identity gather kernel."""
        out = cuda.device_array(arr.shape, arr.dtype)
        if arr.size:
            _copy_kernel(arr.ndim)[_grid(arr.size, BLOCK), BLOCK](out, arr)
        return out

    def explain(self) -> str:
        parts = [fusion.describe(self.items)]
        for op in self.ops:
            parts += [f"--- {op.mod.name} ---", op.source]
        return "\n".join(parts)

    def check_lowering(self, cc=(8, 0)) -> int:
        """Compile every kernel for a real GPU of compute capability `cc` as far as NVVM IR
        (typing and lowering; needs no GPU, only numba-cuda, and not the simulator).
        Returns the number of kernels compiled."""
        from numba.cuda import types as nt
        from numba.cuda.compiler import compile_cuda
        n = 0
        for op in self.ops:
            for suffix, args in op.argtypes().items():
                compile_cuda(op.mod.fn(suffix).py_func, nt.void, tuple(args), cc=cc)
                n += 1
        return n


_COPY_KERNELS: dict[int, object] = {}


def _copy_kernel(ndim: int):
    if ndim not in _COPY_KERNELS:
        i = [f"i{d}" for d in range(ndim)]
        lines = ["def KERNEL(o, x0):",
                 "    for t in range(cuda.grid(1), o.size, cuda.gridsize(1)):"]
        lines += _unravel("t", i, [f"o.shape[{d}]" for d in range(ndim)], "        ")
        lines.append(f"        o[{_index(i)}] = x0[{_index(i)}]")
        mod = _Module("copy", "\n".join(lines).replace("def K", _JIT + "def K", 1), [])
        _COPY_KERNELS[ndim] = mod.fn()
    return _COPY_KERNELS[ndim]


def compile(plan: fusion.Plan, *, fallback: fusion.Plan | None = None,
            reuse_buffers: bool = False, **options) -> Executable:
    """An Executable running `plan` on the device (no RANGE_LIMITS here: `fallback` is None)."""
    _cuda()
    exe = Executable(plan, reuse_buffers)
    if config.DEBUG >= 2:
        print(f"--- fusion plan ---\n{plan.describe()}", file=sys.stderr)
    if config.DEBUG >= 3:
        print(exe.explain(), file=sys.stderr)
    return exe
