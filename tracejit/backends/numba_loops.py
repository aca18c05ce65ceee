"""A whole scan as ONE njit function (Numba CPU): the body's fused kernels and its
BLAS/reshape steps called from a compiled loop, so a step costs no Python and allocates
nothing. The module holds the loop twice (kernel_cache.TieredKernel picks one):

    loop_ser  every body kernel's serial variant inlined as statements (`_inlined`: its
              locals renamed, its parameters the loop's names): one function to compile,
              what a first call on a cold cache runs (W11's first call, forward + backward
              loop: the kernels' parfor compiles were 1.5 s of 2.7 s; Numba's own
              inline='always' deep-copied and retyped each kernel, and Numba's reshape
              compiled a subroutine per type: `view` builds the view in place instead)
    loop_par  a kernel over at least numba_cpu.SERIAL_BELOW elements as its parallel variant
              (`P0`, from its own cached module), when the body calls no BLAS (whose spinning
              threads would fight a parallel loop): W11's forward loop, 1024x1024 per step,
              88 -> 44 ms on 2 cores. Only when some kernel is parallel. It compiles in the
              background after the first call and replaces loop_ser when ready; a new
              process finds it in the disk cache and runs it at once.

    from tracejit_k_<digest> import k_mul_.._par as P0     # the body's kernels, cached
    from tracejit_k_<digest> import c1 as K0_c1             # a kernel's module constant
    @njit(cache=True, ...)
    def loop_ser(length, reverse, c0, k0, s0, y0, t3):
        for i in range(length):                 # t3: a scratch buffer (every buffer the
            t = length - 1 - i if reverse else i  # body writes), allocated by the caller
            t5 = y0[t]                          # a y written in place
            for i0_0 in range(16):              # kernel 0's statements, `_0` its locals
                v0_0 = c0[i0_0] * k0[i0_0] + s0[t]
                t3[i0_0] = v0_0 * K0_c1
                t5[i0_0] = v0_0
            n0 = t3                             # carries double-buffered: the new carry's
            t3 = k0                             # buffer swaps with the old one
            k0 = n0
        return (k0,)
    def loop_par(...): the same, calling P0(16, c0, k0, s0[t:t + 1], t3, t5)

The loop is a generated module written to the kernel cache (kernel_cache.load), so Numba's
disk cache holds its machine code: a new process, or the same loop with another trip count
(`length` is an argument), loads it instead of compiling it. Values of shape () are carried
as arrays of shape (1,), as in numba_cpu's driver. A body with a step this module does not
spell (a gather, a transpose of rank > 2, ...) returns None from `compiled_scan`: the caller
then runs the host loop over the compiled body plan.
"""
from __future__ import annotations

import ast
import types as pytypes
from collections import Counter

import numpy as np
from numba import njit, prange, types
from numba.core import cgutils
from numba.core.imputils import impl_ret_borrowed
from numba.extending import intrinsic
from numba.np.arrayobj import make_array, populate_array

from .. import fusion
from ..ir import Aval, Literal
from ..primitives import CONTRACT
from . import kernel_cache
from .numba_cpu import _FLAGS, _c_array

_INLINE = _FLAGS.replace(", cache=True", "")  # a serial kernel, compiled into loop_ser
# loop_par: its kernels are functions of their own, with their flags
_PAR_LOOP = "error_model='numpy', cache=True, nogil=True, no_cfunc_wrapper=True"


@intrinsic
def view(typingctx, a, shape):
    """`a.reshape(shape)` for a C-contiguous `a` (every array in a loop module is one): the
    view's struct built in place. Numba's reshape compiles a subroutine per type, 0.1 s each:
    two reshapes were 0.2 s of W11's 0.7 s forward loop on a cold cache."""
    if not (isinstance(a, types.Array) and a.layout == "C" and
            isinstance(shape, types.BaseTuple) and
            all(isinstance(d, types.Integer) for d in shape)):
        return None  # (Numba's reshape, too, takes contiguous arrays only)
    out = a.copy(ndim=len(shape), layout="C")

    def codegen(context, builder, sig, args):
        src = make_array(sig.args[0])(context, builder, args[0])
        dims = [context.cast(builder, d, t, types.intp)
                for d, t in zip(cgutils.unpack_tuple(builder, args[1]), sig.args[1])]
        strides, step = [], src.itemsize
        for d in reversed(dims):
            strides.insert(0, step)
            step = builder.mul(step, d)
        dst = make_array(sig.return_type)(context, builder)
        populate_array(dst, data=src.data, shape=dims, strides=strides, itemsize=src.itemsize,
                       meminfo=src.meminfo, parent=src.parent)
        return impl_ret_borrowed(context, builder, sig.return_type, dst._getvalue())

    return out(a, shape), codegen


def _step_code(e, ref, out: str) -> str | None:
    """njit source for one plan step writing or naming `out`, or None when not supported."""
    x = [ref(a) for a in e.inputs]
    if e.prim.same_order:  # reshape: a view of a contiguous array
        return f"{out} = view({x[0]}, {e.outputs[0].aval.shape or (1,)!r})"
    if e.prim.kind == CONTRACT and all(a.aval.ndim == 2 for a in e.inputs):
        return f"np.dot({x[0]}, {x[1]}, {out})"
    if e.prim.name == "transpose" and e.inputs[0].aval.ndim == 2 and \
            e.params["perm"] == (1, 0):
        m, n = e.inputs[0].aval.shape  # loops: Numba compiles `out[:, :] = x.T` in seconds
        return "\n".join([f"for p in range({m}):", f"    for q in range({n}):",
                          f"        {out}[q, p] = {x[0]}[p, q]"])
    return None


def _copy(dst: str, src: str, size: int, tag: str) -> str:
    """Copy the C-contiguous array `src` into `dst` (same size): a loop, which Numba compiles
    in a tenth of a second where `dst[...] = src` takes seconds. `tag` names its views."""
    return "\n".join([f"d{tag} = view({dst}, ({size},))", f"s{tag} = view({src}, ({size},))",
                      f"for q in range({size}):", f"    d{tag}[q] = s{tag}[q]"])


def _inlined(ck, j: int, args: list[str], head: list[str]) -> str | None:
    """The serial kernel `ck` as statements of loop_ser: its parameters assigned `args`, its
    locals renamed `<name>_<j>`, its module's constants imported as `K<j>_<name>` (added to
    `head`), or None when it returns before its end. Numba's inline='always' deep-copies and
    retypes the callee's IR: 0.1 s of W11's forward loop on a cold cache."""
    fn = ast.parse(ck.serial_source).body[0]
    *stmts, last = fn.body
    if not isinstance(last, ast.Return) or any(isinstance(n, ast.Return)
                                               for st in stmts for n in ast.walk(st)):
        return None
    params = [a.arg for a in fn.args.args]
    stored = {n.id for st in stmts for n in ast.walk(st)
              if isinstance(n, ast.Name) and isinstance(n.ctx, ast.Store)}
    # a parameter given a name or a number, never assigned, is that name or number: no
    # array variable of its own (each one costs its reference counting in Numba's lowering)
    same = {p: a for p, a in zip(params, args) if p not in stored and
            (a.isidentifier() or a.isdigit())}
    local = set(params) | stored
    names = vars(ck.module)
    for n in (n for st in stmts for n in ast.walk(st) if isinstance(n, ast.Name)):
        if n.id in same:
            n.id = same[n.id]
        elif n.id in local:
            n.id = f"{n.id}_{j}"
        elif isinstance(names.get(n.id), pytypes.ModuleType):  # np, math, vm
            line = f"import {names[n.id].__name__} as {n.id}"
            if line not in head:
                head.insert(0, line)
        elif n.id in names:  # a constant of the kernel's module
            line = f"from {ck.module.__name__} import {n.id} as K{j}_{n.id}"
            if line not in head:
                head.append(line)
            n.id = f"K{j}_{n.id}"
    return "\n".join([f"{p}_{j} = {a}" for p, a in zip(params, args) if p not in same] +
                      [ast.unparse(st) for st in stmts])


def _writes_buffer(item) -> bool:
    """Whether a plan item writes its outputs into buffers it is given (not a view)."""
    return isinstance(item, fusion.Kernel) or not item.eqn.prim.same_order


def loop_source(plan: fusion.Plan, n_consts: int, n_carry: int,
                kernels: list) -> tuple[str, list] | None:
    """The module source of the scan loop over `plan` (the body's plan) and the (shape, dtype)
    of each scratch buffer it takes after the ys, or None."""
    g = plan.graph
    nc, nk = n_consts, n_carry
    if any(isinstance(it, fusion.Step) and _step_code(it.eqn, lambda a: "x", "o") is None
           for it in plan.items):
        return None
    parallel = any(ck.parallel for ck in kernels)
    head = ["import numpy as np", "from numba import njit",
            "from tracejit.backends.numba_loops import view", ""]
    for j, ck in enumerate(kernels):
        head.append(f"from {ck.module.__name__} import {ck.name}_ser as _S{j}")
        if ck.parallel:
            head.append(f"from {ck.module.__name__} import {ck.name}_par as P{j}")
        elif parallel:
            head.append(f"P{j} = _S{j}")
    names: dict[int, str] = {}
    n_in = len(g.inputs)
    cs = [f"c{i}" for i in range(nc)]
    ks = [f"k{i}" for i in range(nk)]
    xs = [f"s{i}" for i in range(n_in - nc - nk)]
    ys = [f"y{i}" for i in range(len(g.outputs) - nk)]
    for v, name in zip(g.inputs, cs + ks):
        names[v.id] = name
    for v, s in zip(g.inputs[nc + nk:], xs):  # x slices: views of the stacked xs
        names[v.id] = f"{s}[t:t + 1]" if v.aval.ndim == 0 else f"{s}[t]"
    literals: dict[bytes, str] = {}

    def ref(a) -> str:
        if isinstance(a, Literal):
            val = np.ascontiguousarray(a.val.reshape(a.val.shape or (1,)))
            key = (val.dtype.str, val.shape, val.tobytes())
            if key not in literals:
                literals[key] = name = f"L{len(literals)}"
                head.append(f"{name} = np.frombuffer(bytes.fromhex('{val.tobytes().hex()}'), "
                            f"np.{val.dtype.name}).reshape({val.shape!r})")
            return literals[key]
        return names[a.id]

    # where each buffer an item writes lives: a y written once -> that y's slice, in place; a
    # carry written once -> a scratch buffer swapped with the carry after each step; anything
    # else -> a scratch buffer, copied where it goes out
    uses = Counter(o.id for o in g.outputs if not isinstance(o, Literal))
    y_of = {o.id: j for j, o in enumerate(g.outputs[nk:])
            if not isinstance(o, Literal) and uses[o.id] == 1}
    scratch, body, in_place, kit = [], [], set(), iter(range(len(kernels)))
    for item in plan.items:
        outs = item.outputs if isinstance(item, fusion.Kernel) else item.eqn.outputs
        for v in outs:  # numbered in order (not by Var id): the same body, the same source
            names[v.id] = buf = f"t{len(names)}"
            if not _writes_buffer(item):
                continue
            if v.id in y_of:
                y = ys[y_of[v.id]]
                body.append(f"{buf} = {y}[t:t + 1]" if v.aval.ndim == 0 else f"{buf} = {y}[t]")
                in_place.add(v.id)
            else:
                scratch.append((buf, v.aval.shape or (1,), v.aval.dtype))
        if isinstance(item, fusion.Step):
            body.append(_step_code(item.eqn, ref, names[outs[0].id]))
            continue
        j = next(kit)
        sizes = [str(d) for d in (item.space or (1,))]
        args = sizes + [ref(a) for a in kernels[j].gen.inputs] + [names[v.id] for v in outs]
        inlined = _inlined(kernels[j], j, args, head)
        if inlined is None:  # Numba inlines it (slower to compile)
            head.append(f"S{j} = njit(inline='always', {_INLINE})(_S{j}.py_func)")
            inlined = f"S{j}({', '.join(args)})"
        body.append((inlined, f"P{j}({', '.join(args)})"))  # (loop_ser's, loop_par's)
    for o, y in zip(g.outputs[nk:], ys):
        if isinstance(o, Literal) or o.id not in in_place:
            body.append(_copy(f"{y}[t:t + 1]" if o.aval.ndim == 0 else f"{y}[t]", ref(o),
                              o.aval.size, y))
    buffers = {buf for buf, _, _ in scratch}
    new, back = [], []
    for j, (o, k) in enumerate(zip(g.outputs[:nk], ks)):
        r = ref(o)
        if o is g.inputs[nc + j]:
            new.append(f"n{j} = {k}")  # an unchanged carry
        elif not isinstance(o, Literal) and uses[o.id] == 1 and r in buffers:
            new.append(f"n{j} = {r}")  # double-buffered: the old carry is the next scratch
            back.append(f"{r} = {k}")
        else:
            new.append(f"n{j} = np.empty({o.aval.shape or (1,)!r}, np.{o.aval.dtype.name})\n"
                       + _copy(f"n{j}", r, o.aval.size, f"n{j}"))
    body += new + back + [f"{k} = n{j}" for j, k in enumerate(ks)]
    rets = "".join(f"{k}, " for k in ks)
    args = cs + ks + xs + ys + [buf for buf, _, _ in scratch]
    lines = list(head)
    for variant, flags in (("ser", _FLAGS), ("par", _PAR_LOOP)):
        if variant == "par" and not parallel:
            break
        lines += ["", "", f"@njit({flags})",
                  f"def loop_{variant}(length, reverse, {', '.join(args)}):"]
        lines += ["    for i in range(length):",
                  "        t = length - 1 - i if reverse else i"]
        lines += [f"        {line}" for s in body
                  for line in (s if isinstance(s, str) else s[variant == "par"]).split("\n")]
        lines += [f"    return ({rets})"]
    return "\n".join(lines + [""]), [(shape, dt) for _, shape, dt in scratch]


def compiled_scan(eqn, plan: fusion.Plan, backend):
    """The scan `eqn` (its body's plan compiled by numba_cpu) as one njit loop, or None."""
    p = eqn.params
    nc, nk = p["n_consts"], p["n_carry"]
    g = plan.graph
    if g.outputs and any(o.aval.dtype == np.bool_ for o in g.outputs):
        return None
    if any(isinstance(it, fusion.Step) and _step_code(it.eqn, lambda a: "x", "o") is None
           for it in plan.items):
        return None
    blas = any(isinstance(it, fusion.Step) and it.eqn.prim.kind == CONTRACT
               for it in plan.items)
    kernels = [backend.CompiledKernel(it, allow_parallel=not blas)
               for it in plan.items if isinstance(it, fusion.Kernel)]
    made = loop_source(plan, nc, nk, kernels)
    if made is None:
        return None
    src, scratch = made
    loop = kernel_cache.TieredKernel("loop", src, any(ck.parallel for ck in kernels))
    length, reverse = p["length"], p["reverse"]
    y_avals = [v.aval for v in eqn.outputs[nk:]]
    in_avals = [v.aval for v in g.inputs]

    def run_scan(*args):
        # the carries are copied: their buffers are the loop's double buffers
        arrs = [np.ascontiguousarray(np.asarray(a, v.dtype)) if i >= nc + nk else  # xs
                np.array(np.asarray(a, v.dtype).reshape(v.shape or (1,)), copy=True) if nc <= i
                else _contiguous(np.asarray(a, v.dtype).reshape(v.shape or (1,)))
                for i, (a, v) in enumerate(zip(args, in_avals))]
        ys = [np.empty(a.shape, a.dtype) for a in y_avals]
        carry = loop(length, reverse, *arrs, *ys, *[np.empty(s, dt) for s, dt in scratch])
        return list(carry) + ys
    run_scan.source, run_scan.loop = src, loop
    # the loop's signature, as run_scan calls it (the xs stacked), for ahead.py
    arrays = [v.aval for v in eqn.inputs] + y_avals + [Aval(s, dt) for s, dt in scratch]
    run_scan.compile_ahead = [(loop, (types.int64, types.boolean) +
                               tuple(_c_array(a) for a in arrays))]
    return run_scan


def _contiguous(x: np.ndarray) -> np.ndarray:
    """x in C order for the loop: a large transposed matrix (the backward loop's W.T) is
    copied in parallel tiles (4 MiB float32 on 2 cores: NumPy's strided copy 4.2 ms)."""
    if x.ndim == 2 and x.size >= 1 << 16 and x.flags.f_contiguous and \
            not x.flags.c_contiguous:
        out = np.empty(x.shape, x.dtype)
        _transpose(x.T, out)
        return out
    return np.ascontiguousarray(x)


@njit(parallel=True, nogil=True, cache=True)
def _transpose(src, dst):
    """dst = src.T, both C order, in 8 x 8 tiles, strips of 8 rows of dst in parallel (on one
    thread 1.0 ms for 1024 x 1024 float32; 3.3 ms in 64 x 64 tiles)."""
    m, n = src.shape
    for strip in prange((n + 7) // 8):
        j0 = strip * 8
        for i0 in range(0, m, 8):
            for j in range(j0, min(j0 + 8, n)):
                for i in range(i0, min(i0 + 8, m)):
                    dst[j, i] = src[i, j]
