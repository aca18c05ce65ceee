"""Layout primitives: they move or replicate data without arithmetic. Fusion turns the ones
it can express as an index map (broadcast, unit-dim reshape, transpose, slice, rev) into
indexing inside a loop; the rest materialize."""
from __future__ import annotations

import numpy as np

from ..errors import ShapeError, user_error
from ..ir import Aval
from . import ANY, LAYOUT, defprim


# ----- broadcast (NumPy's broadcast_to) -----
def _broadcast_shape(x: Aval, shape: tuple[int, ...]) -> Aval:
    from .elementwise import broadcast_shapes
    if broadcast_shapes(x.shape, shape, op="broadcast_to") != tuple(shape):
        raise user_error(ShapeError, f"broadcast_to: cannot broadcast {x.shape} to {shape}.",
                         "the target shape must keep every dimension of size > 1.")
    return Aval(tuple(shape), x.dtype)


broadcast_p = defprim("broadcast", LAYOUT, shape=_broadcast_shape,
                      impl=lambda x, shape: np.broadcast_to(x, shape).copy(),
                      vjp=lambda g, out, x, shape: (g,),  # autodiff sums it back (unbroadcast)
                      domain=ANY, params={"shape": (2, 3)})


# ----- reshape -----
def _reshape_shape(x: Aval, shape: tuple[int, ...]) -> Aval:
    if int(np.prod(shape, dtype=np.int64)) != x.size:
        raise user_error(ShapeError, f"reshape: cannot reshape {x.shape} ({x.size} elements) "
                         f"into {tuple(shape)}.", "the new shape must have as many elements.")
    return Aval(tuple(shape), x.dtype)


reshape_p = defprim("reshape", LAYOUT, shape=_reshape_shape,
                    impl=lambda x, shape: np.reshape(x, shape).copy(),
                    vjp=lambda g, out, x, shape: (reshape_p.bind(g, shape=x.shape),),
                    domain=ANY, params={"shape": (-1,)})


# ----- transpose -----
def _transpose_vjp(g, out, x, perm):
    return (transpose_p.bind(g, perm=tuple(int(i) for i in np.argsort(perm))),)


transpose_p = defprim("transpose", LAYOUT,
                      shape=lambda x, perm: Aval(tuple(x.shape[p] for p in perm), x.dtype),
                      impl=lambda x, perm: np.transpose(x, perm).copy(), vjp=_transpose_vjp,
                      domain=ANY, params={"perm": (1, 0)})


# ----- slice (positive strides; negative steps are rev + slice) -----
def _slice_len(start: int, limit: int, stride: int) -> int:
    return max(0, -(-(limit - start) // stride))


def _slice_shape(x: Aval, starts, limits, strides) -> Aval:
    return Aval(tuple(_slice_len(*t) for t in zip(starts, limits, strides)), x.dtype)


def _slice_impl(x, starts, limits, strides):
    return np.asarray(x)[tuple(map(slice, starts, limits, strides))].copy()


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
                  domain=ANY, params={"starts": (0,), "limits": (1,), "strides": (1,)})


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


pad_p = defprim("pad", LAYOUT, shape=_pad_shape, impl=_pad_impl, vjp=_pad_vjp, domain=ANY,
                params={"lo": (0,), "hi": (0,), "interior": (0,)})


# ----- rev (reverse along axes) -----
rev_p = defprim("rev", LAYOUT, shape=lambda x, axes: x,
                impl=lambda x, axes: np.flip(x, axes).copy(),
                vjp=lambda g, out, x, axes: (rev_p.bind(g, axes=axes),), domain=ANY,
                params={"axes": (0,)})


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


concatenate_p = defprim("concatenate", LAYOUT, shape=_concat_shape,
                        impl=lambda *xs, axis: np.concatenate(xs, axis=axis), vjp=_concat_vjp,
                        domain=ANY, params={"axis": 0})
