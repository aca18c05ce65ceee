"""A whole scan as ONE njit function (Numba CPU): the body's fused kernels (their serial njit
variants) and its BLAS/reshape steps called from a compiled loop, so a step costs no Python.

    @njit
    def body(c0, k0, x0):           # the body plan's driver, compiled: kernels, np.dot ...
        ...
        return (o0, o1)
    @njit
    def loop(length, reverse, c0, k0, x0, y0):
        for i in range(length):
            t = length - 1 - i if reverse else i
            o = body(c0, k0, x0[t])
            k0 = o[0]
            y0[t] = o[1]
        return (k0,)

Values of shape () are carried as arrays of shape (1,), as in numba_cpu's driver. A body
with a step this module does not spell (a gather, a transpose of rank > 2, ...) returns None
from `compiled_scan`: the caller then runs the host loop over the compiled body plan.
"""
from __future__ import annotations

import numpy as np

from .. import fusion
from ..ir import Literal
from ..primitives import CONTRACT


def _step_expr(e, ref) -> str | None:
    """njit source for one plan step, or None when not supported here."""
    out = e.outputs[0].aval
    shape = out.shape or (1,)
    if e.prim.same_order:  # reshape: a view of a contiguous array
        return f"np.ascontiguousarray({ref(e.inputs[0])}).reshape({shape!r})"
    if e.prim.kind == CONTRACT and all(a.aval.ndim == 2 for a in e.inputs):
        a, b = (ref(x) for x in e.inputs)
        return f"np.dot(np.ascontiguousarray({a}), np.ascontiguousarray({b}))"
    if e.prim.name == "transpose" and e.inputs[0].aval.ndim == 2 and \
            e.params["perm"] == (1, 0):
        return f"np.ascontiguousarray({ref(e.inputs[0])}.T)"
    return None


def compiled_scan(eqn, plan: fusion.Plan, backend):
    """The scan `eqn` (its body's plan compiled by numba_cpu) as one njit loop, or None."""
    from numba import njit
    p = eqn.params
    nc, nk = p["n_consts"], p["n_carry"]
    g = plan.graph
    if g.outputs and any(o.aval.dtype == np.bool_ for o in g.outputs):
        return None
    if any(isinstance(it, fusion.Step) and _step_expr(it.eqn, lambda a: "x") is None
           for it in plan.items):
        return None
    kernels = iter([backend.CompiledKernel(it, allow_parallel=False)
                    for it in plan.items if isinstance(it, fusion.Kernel)])
    glb: dict = {"np": np}
    names: dict[int, str] = {}
    args = [f"x{i}" for i in range(len(g.inputs))]
    lines = [f"def body({', '.join(args)}):"]
    for i, v in enumerate(g.inputs):
        names[v.id] = f"x{i}"

    def ref(a) -> str:
        if isinstance(a, Literal):
            key = f"L{len(glb)}"
            glb[key] = np.array(a.val.reshape(1) if a.val.ndim == 0 else a.val)
            return key
        return names[a.id]

    for item in plan.items:
        if isinstance(item, fusion.Step):
            e = item.eqn
            out = e.outputs[0]
            names[out.id] = f"t{out.id}"
            lines.append(f"    t{out.id} = {_step_expr(e, ref)}")
            continue
        ck = next(kernels)
        key = f"K{len(glb)}"
        glb[key] = ck.ser
        for v in item.outputs:
            names[v.id] = f"t{v.id}"
            lines.append(f"    t{v.id} = np.empty({v.aval.shape or (1,)!r}, "
                         f"np.{v.aval.dtype.name})")
        sizes = [str(d) for d in (item.space or (1,))]
        ins = [ref(a) for a in ck.gen.inputs]
        outs = [f"t{v.id}" for v in item.outputs]
        lines.append(f"    {key}({', '.join(sizes + ins + outs)})")
    rets = []
    for o in g.outputs:  # fresh arrays: a carry never aliases a constant or an x slice
        rets.append(f"np.copy({ref(o)})" if isinstance(o, Literal) or o.id in
                    {v.id for v in g.inputs} else ref(o))
    lines.append(f"    return ({', '.join(rets)},)")
    n_in = len(g.inputs)
    nx = n_in - nc - nk
    cs = [f"c{i}" for i in range(nc)]
    ks = [f"k{i}" for i in range(nk)]
    xs = [f"s{i}" for i in range(nx)]
    ys = [f"y{i}" for i in range(len(g.outputs) - nk)]
    x_slices = [f"{x}[t:t + 1]" if v.aval.ndim == 0 else f"{x}[t]"
                for x, v in zip(xs, g.inputs[nc + nk:])]
    lines += ["", f"def loop(length, reverse, {', '.join(cs + ks + xs + ys + ['_'])}):",
              "    for i in range(length):",
              "        t = length - 1 - i if reverse else i",
              f"        o = body({', '.join(cs + ks + x_slices)})"]
    for j, k in enumerate(ks):
        lines.append(f"        {k} = o[{j}]")
    for j, (y, v) in enumerate(zip(ys, g.outputs[nk:])):
        lines.append(f"        {y}[t] = o[{nk + j}]" + ("[0]" if v.aval.ndim == 0 else ""))
    lines.append(f"    return ({', '.join(ks)},)")
    src = "\n".join(lines)
    exec(compile(src, "<tracejit scan>", "exec"), glb)  # noqa: S102  (generated source)
    glb["body"] = njit(error_model="numpy")(glb["body"])
    loop = njit(error_model="numpy")(glb["loop"])
    length, reverse = p["length"], p["reverse"]
    y_avals = [v.aval for v in eqn.outputs[nk:]]
    in_avals = [v.aval for v in g.inputs]

    def run_scan(*args):
        arrs = [np.ascontiguousarray(np.asarray(a, v.dtype).reshape(v.shape or (1,)))
                if i < nc + nk else np.ascontiguousarray(np.asarray(a, v.dtype))
                for i, (a, v) in enumerate(zip(args, in_avals))]
        ys = [np.empty(a.shape, a.dtype) for a in y_avals]
        # xs keep their stacked shape: (length,) + slice shape
        carry = loop(length, reverse, *arrs, *ys, 0)
        return list(carry) + ys
    run_scan.source = src
    return run_scan
