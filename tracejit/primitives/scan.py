"""Scans: the first-order linear recurrence along one axis, one serial pass.

    linear_scan(a, b, axis, reverse)    h[0] = b[0],  h[i] = a[i] * h[i-1] + b[i]
                                        (reverse: from the last index down)

    cumsum(x)  = linear_scan(1, x)                       a is a scalar or b's shape
    cumprod(x) = linear_scan(x, [x[0], 0, 0, ...])       (a[0] is never read: no 0 * inf)

Its VJP is the same recurrence run the other way, so every derivative is a scan too:
lam[i] = g[i] + a[i+1] lam[i+1] (reverse), grad b = lam, grad a[i] = lam[i] h[i-1]. The CPU
runs it as one compiled serial loop (`serial`), a GPU thread per output element walks its
prefix (`gather`), the interpreter loops over the axis with NumPy.
"""
from __future__ import annotations

import numpy as np

from ..ir import Aval
from . import ANY, SCAN, STEP, defprim
from .elementwise import add_p, mul_p
from .layout import broadcast_p, pad_p, reshape_p, slice_p


def _shape(a: Aval, b: Aval, axis: int, reverse: bool) -> Aval:
    assert a.shape in ((), b.shape) and a.dtype == b.dtype, (a, b)
    return b


def _impl(a, b, axis, reverse):
    a, b = np.asarray(a), np.asarray(b)
    out = np.empty(b.shape, b.dtype)
    h = None
    for k in range(b.shape[axis] - 1, -1, -1) if reverse else range(b.shape[axis]):
        at = (slice(None),) * axis + (k,)
        h = b[at] if h is None else (a if a.ndim == 0 else a[at]) * h + b[at]
        out[at] = h
    return out


def _shift(x, axis: int, reverse: bool):
    """h[i-1] at i (h[i+1] when reverse), a zero entering at the first position."""
    n, nd = x.shape[axis], x.ndim
    if n == 0:
        return x
    starts, limits, lo, hi = [0] * nd, list(x.shape), [0] * nd, [0] * nd
    if reverse:
        starts[axis], hi[axis] = 1, 1
    else:
        limits[axis], lo[axis] = n - 1, 1
    part = slice_p.bind(x, starts=tuple(starts), limits=tuple(limits), strides=(1,) * nd)
    return pad_p.bind(part, lo=tuple(lo), hi=tuple(hi), interior=(0,) * nd)


def _vjp(g, out, a, b, axis, reverse):
    # lam[i] = g[i] + a[i+1] lam[i+1]: the coefficient of the reverse scan at i is a[i+1]
    coef = a if a.ndim == 0 else _shift(a, axis, not reverse)
    lam = scan_p.bind(coef, g, axis=axis, reverse=not reverse)
    return mul_p.bind(lam, _shift(out, axis, reverse)), lam


def _jvp(tangents, out, a, b, axis, reverse):
    ta, tb = tangents
    parts = [p for p in (None if ta is None else mul_p.bind(ta, _shift(out, axis, reverse)),
                         tb) if p is not None]
    rhs = parts[0] if len(parts) == 1 else add_p.bind(*parts)
    if rhs.shape != out.shape:  # the tangent of a scalar a alone
        rhs = broadcast_p.bind(rhs, shape=out.shape)
    return scan_p.bind(a, rhs, axis=axis, reverse=reverse)


def _batch(prim, args, dims, axis, reverse):
    """The batch axis leads: scan along axis + 1; an unbatched operand is broadcast."""
    (a, b), (da, db) = args, dims
    size = (a if da is not None else b).shape[0]
    if db is None:
        b = broadcast_p.bind(b, shape=(size,) + tuple(b.shape))
    if da is None and a.ndim:  # the same a for every example
        a = broadcast_p.bind(a, shape=b.shape)
    elif da is not None and a.shape != b.shape:  # an example's a is a scalar
        a = broadcast_p.bind(reshape_p.bind(a, shape=(size,) + (1,) * (b.ndim - 1)),
                             shape=b.shape)
    return prim.bind(a, b, axis=axis + 1, reverse=reverse), 0


def _ix(names) -> str:
    return ", ".join(names) or "0"


def _walk(e, at: str, steps: str) -> list[str]:
    """Loop lines: h over the positions `steps` (a range) along the axis, k the position."""
    nd, axis = e.inputs[1].aval.ndim, e.params["axis"]
    scalar = e.inputs[0].aval.ndim == 0
    idx = _ix([f"i{d}" if d != axis else "k" for d in range(nd)])
    a = "x0[0]" if scalar else f"x0[{idx}]"
    return [f"h = x1[{at}]", f"for k in {steps}:", f"    h = {a} * h + x1[{idx}]"]


def _serial(e) -> list[str]:
    """CPU: the axes before `axis` outside, then the scan, then the axes after it innermost
    (o[.., k, ..] from o[.., k -+ 1, ..]: memory is walked in order)."""
    shape, axis = e.inputs[1].aval.shape, e.params["axis"]
    n, nd = shape[axis], len(shape)
    if n == 0:
        return ["pass"]
    first, prev, steps = (n - 1, "k + 1", f"range({n - 2}, -1, -1)") if \
        e.params["reverse"] else (0, "k - 1", f"range(1, {n})")
    lines, ind = [], ""
    for d in range(axis):
        lines.append(f"{ind}for i{d} in range({shape[d]}):")
        ind += "    "

    def inner(ind):  # the loops over the axes after `axis`; returns the body's indent
        for d in range(axis + 1, nd):
            lines.append(f"{ind}for i{d} in range({shape[d]}):")
            ind += "    "
        return ind

    def at(k):
        return _ix([f"i{d}" if d != axis else k for d in range(nd)])
    a = "x0[0]" if e.inputs[0].aval.ndim == 0 else f"x0[{at('k')}]"
    body = inner(ind)
    lines.append(f"{body}o[{at(str(first))}] = x1[{at(str(first))}]")
    lines.append(f"{ind}for k in {steps}:")
    body = inner(ind + "    ")
    lines.append(f"{body}o[{at('k')}] = {a} * o[{at(prev)}] + x1[{at('k')}]")
    return lines


def _gather(e) -> list[str]:
    """GPU: the thread of output position i walks the recurrence from the first position."""
    shape, axis = e.inputs[1].aval.shape, e.params["axis"]
    nd, n = len(shape), shape[axis]
    first, steps = (n - 1, f"range({n - 2}, i{axis} - 1, -1)") if e.params["reverse"] else \
        (0, f"range(1, i{axis} + 1)")
    at = _ix([f"i{d}" if d != axis else str(first) for d in range(nd)])
    return _walk(e, at, steps) + [f"o[{_ix([f'i{d}' for d in range(nd)])}] = h"]


scan_p = defprim("linear_scan", SCAN, shape=_shape, impl=_impl, vjp=_vjp, jvp=_jvp,
                 batch=_batch, domain=ANY, fusion=STEP, serial=_serial, gather=_gather)
