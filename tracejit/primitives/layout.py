"""Layout primitives: they move or replicate data without arithmetic. Fusion turns the ones
it can express as an index map inside a loop (broadcast, a reshape that only adds or removes
size-1 dims) into indexing; the rest are steps: a NumPy view or call on the CPU (`view`,
`impl`), a gather kernel on the GPU whose loop body `gather` writes.

A gather body computes one output element `o[i0, i1, ...]` from the inputs `x0, x1, ...`
(arrays with `.shape`); `t` is the output element's flat C-order index."""
from __future__ import annotations

import numpy as np

from ..errors import ShapeError, user_error
from ..ir import Aval
from . import ANY, LAYOUT, LOOP, STEP, defprim


def _ix(names: list[str]) -> str:
    return ", ".join(names) or "0"


def _out(e) -> str:
    return f"o[{_ix([f'i{d}' for d in range(e.outputs[0].aval.ndim)])}]"


def _reads(src):
    """A gather body that reads x0 at `src(eqn)`, one index expression per x0 dimension."""
    return lambda e: [f"{_out(e)} = x0[{_ix(src(e))}]"]


# ----- broadcast (NumPy's broadcast_to) -----
def _broadcast_shape(x: Aval, shape: tuple[int, ...]) -> Aval:
    from .elementwise import broadcast_shapes
    if broadcast_shapes(x.shape, shape, op="broadcast_to") != tuple(shape):
        raise user_error(ShapeError, f"broadcast_to: cannot broadcast {x.shape} to {shape}.",
                         "the target shape must keep every dimension of size > 1.")
    return Aval(tuple(shape), x.dtype)


def _broadcast_src(e) -> list[str]:
    x, out = e.inputs[0].aval, e.outputs[0].aval
    return ["0" if n == 1 else f"i{out.ndim - x.ndim + d}" for d, n in enumerate(x.shape)]


# in a loop, broadcasting is indexing: the emitted value is the operand itself
broadcast_p = defprim("broadcast", LAYOUT, shape=_broadcast_shape,
                      impl=lambda x, shape: np.broadcast_to(x, shape).copy(),
                      vjp=lambda g, out, x, shape: (g,),  # autodiff sums it back (unbroadcast)
                      domain=ANY, emit="{0}", fusion=LOOP, broadcasts=True,
                      cheap=True, view=lambda x, shape: np.broadcast_to(x, shape),
                      gather=_reads(_broadcast_src))


# ----- reshape -----
def _reshape_shape(x: Aval, shape: tuple[int, ...]) -> Aval:
    if int(np.prod(shape, dtype=np.int64)) != x.size:
        raise user_error(ShapeError, f"reshape: cannot reshape {x.shape} ({x.size} elements) "
                         f"into {tuple(shape)}.", "the new shape must have as many elements.")
    return Aval(tuple(shape), x.dtype)


def _reshape_fusion(e) -> str:
    """A loop's indexing when only size-1 dims are added or removed; else a step."""
    def big(shape):
        return [d for d in shape if d != 1]
    return LOOP if big(e.inputs[0].aval.shape) == big(e.outputs[0].aval.shape) else STEP


def _reshape_gather(e) -> list[str]:
    """The same flat index, split over the input's shape."""
    x = e.inputs[0].aval
    src = [f"j{d}" for d in range(x.ndim)]
    lines = []
    if src:
        lines.append("q = t")
        for d in range(x.ndim - 1, 0, -1):
            lines += [f"j{d} = q % x0.shape[{d}]", f"q = q // x0.shape[{d}]"]
        lines.append("j0 = q")
    return lines + [f"{_out(e)} = x0[{_ix(src)}]"]


reshape_p = defprim("reshape", LAYOUT, shape=_reshape_shape,
                    impl=lambda x, shape: np.reshape(x, shape).copy(),
                    vjp=lambda g, out, x, shape: (reshape_p.bind(g, shape=x.shape),),
                    domain=ANY, emit="{0}", fusion=_reshape_fusion,
                    cheap=True, view=lambda x, shape: np.reshape(x, shape), same_order=True,
                    gather=_reshape_gather)


# ----- transpose -----
def _transpose_vjp(g, out, x, perm):
    return (transpose_p.bind(g, perm=tuple(int(i) for i in np.argsort(perm))),)


transpose_p = defprim("transpose", LAYOUT,
                      shape=lambda x, perm: Aval(tuple(x.shape[p] for p in perm), x.dtype),
                      impl=lambda x, perm: np.transpose(x, perm).copy(), vjp=_transpose_vjp,
                      domain=ANY,
                      view=lambda x, perm: np.transpose(x, perm),
                      gather=_reads(lambda e: [f"i{list(e.params['perm']).index(d)}"
                                               for d in range(len(e.params["perm"]))]))


# ----- slice (positive strides; negative steps are rev + slice) -----
def _slice_len(start: int, limit: int, stride: int) -> int:
    return max(0, -(-(limit - start) // stride))


def _slice_shape(x: Aval, starts, limits, strides) -> Aval:
    return Aval(tuple(_slice_len(*t) for t in zip(starts, limits, strides)), x.dtype)


def _slice_view(x, starts, limits, strides):
    return x[tuple(map(slice, starts, limits, strides))]


def _slice_impl(x, starts, limits, strides):
    return _slice_view(np.asarray(x), starts, limits, strides).copy()


def _slice_vjp(g, out, x, starts, limits, strides):
    lo, hi = [], []
    for n, start, stride, m in zip(x.shape, starts, strides, out.shape):
        if m == 0:
            lo.append(0)
            hi.append(n)
        else:
            lo.append(start)
            hi.append(n - (start + (m - 1) * stride + 1))
    return (pad_p.bind(g, lo=tuple(lo), hi=tuple(hi), interior=tuple(s - 1 for s in strides)),)


slice_p = defprim("slice", LAYOUT, shape=_slice_shape, impl=_slice_impl, vjp=_slice_vjp,
                  domain=ANY,
                  view=_slice_view, gather=_reads(lambda e: [
                      f"{s} + {st} * i{d}" for d, (s, st) in enumerate(
                          zip(e.params["starts"], e.params["strides"]))]))


# ----- pad with zeros (lo/hi >= 0; `interior` zeros between elements) -----
def _pad_shape(x: Aval, lo, hi, interior) -> Aval:
    return Aval(tuple(lo_ + hi_ + (d + (d - 1) * i if d else 0)
                      for d, lo_, hi_, i in zip(x.shape, lo, hi, interior)), x.dtype)


def _pad_index(shape, lo, interior):
    return tuple(slice(l_, l_ + (d - 1) * (i + 1) + 1 if d else l_, i + 1)
                 for d, l_, i in zip(shape, lo, interior))


def _pad_impl(x, lo, hi, interior):
    x = np.asarray(x)
    out = np.zeros(_pad_shape(Aval(x.shape, x.dtype), lo, hi, interior).shape, x.dtype)
    out[_pad_index(x.shape, lo, interior)] = x
    return out


def _pad_vjp(g, out, x, lo, hi, interior):
    idx = _pad_index(x.shape, lo, interior)
    return (slice_p.bind(g, starts=tuple(s.start for s in idx), limits=tuple(s.stop for s in idx),
                         strides=tuple(s.step for s in idx)),)


def _pad_gather(e) -> list[str]:
    lines, p, o = ["ok = True"], e.params, _out(e)
    for d, (lo, inner) in enumerate(zip(p["lo"], p["interior"])):
        lines += [f"j{d} = i{d} - {lo}",
                  (f"if j{d} < 0 or j{d} % {inner + 1} != 0 or j{d} // {inner + 1} >= "
                   f"x0.shape[{d}]:"), "    ok = False"]
    src = [f"j{d} // {inner + 1}" for d, inner in enumerate(p["interior"])]
    return lines + ["if ok:", f"    {o} = x0[{_ix(src)}]", "else:", f"    {o} = 0"]


pad_p = defprim("pad", LAYOUT, shape=_pad_shape, impl=_pad_impl, vjp=_pad_vjp, domain=ANY,
                gather=_pad_gather)


# ----- rev (reverse along axes) -----
rev_p = defprim("rev", LAYOUT, shape=lambda x, axes: x,
                impl=lambda x, axes: np.flip(x, axes).copy(),
                vjp=lambda g, out, x, axes: (rev_p.bind(g, axes=axes),), domain=ANY,
                view=lambda x, axes: np.flip(x, axes),
                gather=_reads(lambda e: [
                    f"x0.shape[{d}] - 1 - i{d}" if d in e.params["axes"] else f"i{d}"
                    for d in range(e.inputs[0].aval.ndim)]))


# ----- concatenate -----
def _concat_shape(*xs: Aval, axis: int) -> Aval:
    first = xs[0]
    for x in xs[1:]:
        if x.ndim != first.ndim or any(a != b for i, (a, b) in enumerate(zip(x.shape, first.shape))
                                       if i != axis):
            raise user_error(ShapeError, f"concatenate: shapes {[tuple(x.shape) for x in xs]} "
                             f"differ outside axis {axis}.",
                             "all arrays must have the same shape except along the axis.")
    total = sum(x.shape[axis] for x in xs)
    return Aval(first.shape[:axis] + (total,) + first.shape[axis + 1:], first.dtype)


def _concat_vjp(g, out, *xs, axis):
    cts, offset = [], 0
    for x in xs:
        starts = tuple(offset if i == axis else 0 for i in range(x.ndim))
        limits = tuple(offset + x.shape[axis] if i == axis else d for i, d in enumerate(out.shape))
        cts.append(slice_p.bind(g, starts=starts, limits=limits, strides=(1,) * x.ndim))
        offset += x.shape[axis]
    return tuple(cts)


def _concat_gather(e) -> list[str]:
    """Walk the inputs along the axis until the index falls inside one."""
    n, axis, ndim, o = len(e.inputs), e.params["axis"], e.outputs[0].aval.ndim, _out(e)
    lines, ind = [f"a = i{axis}"], ""
    for k in range(n):
        src = _ix([("a" if d == axis else f"i{d}") for d in range(ndim)])
        if k == n - 1:
            lines.append(f"{ind}{o} = x{k}[{src}]")
            break
        lines += [f"{ind}if a < x{k}.shape[{axis}]:", f"{ind}    {o} = x{k}[{src}]",
                  f"{ind}else:", f"{ind}    a -= x{k}.shape[{axis}]"]
        ind += "    "
    return lines


concatenate_p = defprim("concatenate", LAYOUT, shape=_concat_shape,
                        impl=lambda *xs, axis: np.concatenate(xs, axis=axis), vjp=_concat_vjp,
                        domain=ANY, gather=_concat_gather)
