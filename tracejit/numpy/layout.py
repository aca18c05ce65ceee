"""Layout: reshape, transpose, expand/squeeze, broadcast_to, *_like, concatenate, stack."""
from __future__ import annotations

import builtins

import numpy as np

from ..errors import ShapeError, user_error
from ..ir import Literal
from ..primitives.layout import broadcast_p, concatenate_p, reshape_p, transpose_p
from ..tracing import Tracer, unsupported
from .promotion import (
    PY_SCALARS,
    asarray,
    astype,
    axes_of,
    common_dtype,
    drop_axes,
    is_concrete,
    lift_captured,
)


def _shape_arg(shape) -> tuple:
    if len(shape) == 1 and not isinstance(shape[0], (int, np.integer)):
        shape = tuple(shape[0])
    return tuple(int(s) for s in shape)


def reshape(x, *shape, order="C"):
    if order != "C":
        raise unsupported(f"reshape with order={order!r}", "use the default order='C'.")
    shape = _shape_arg(shape)
    if is_concrete(x):
        return np.reshape(x, shape)
    if shape.count(-1) == 1:
        known = int(np.prod([s for s in shape if s != -1], dtype=np.int64))
        fill = x.size // known if known else 0
        shape = tuple(fill if s == -1 else s for s in shape)
    return x if shape == x.shape else reshape_p.bind(x, shape=shape)


def ravel(x):
    return reshape(x, -1)


flatten = ravel


def transpose(x, *axes):
    if is_concrete(x):
        return np.transpose(x, *axes)
    perm = _shape_arg(axes) if axes and axes != (None,) else tuple(reversed(range(x.ndim)))
    perm = tuple(p % builtins.max(x.ndim, 1) for p in perm)
    if sorted(perm) != list(range(x.ndim)):
        raise user_error(ShapeError, f"transpose: axes {axes} don't match an array of "
                         f"dimension {x.ndim}.", "give a permutation of range(ndim).")
    return x if perm == tuple(range(x.ndim)) else transpose_p.bind(x, perm=perm)


def swapaxes(x, axis1, axis2):
    perm = list(range(np.ndim(x) if is_concrete(x) else x.ndim))
    perm[axis1], perm[axis2] = perm[axis2], perm[axis1]
    return transpose(x, perm)


def expand_dims(x, axis):
    if is_concrete(x):
        return np.expand_dims(x, axis)
    axes = (axis,) if isinstance(axis, (int, np.integer)) else tuple(axis)
    ndim = x.ndim + len(axes)
    axes = {a % ndim for a in axes}
    it = iter(x.shape)
    return reshape(x, tuple(1 if i in axes else next(it) for i in range(ndim)))


def squeeze(x, axis=None):
    if is_concrete(x):
        return np.squeeze(x, axis)
    if axis is None:
        axes = tuple(i for i, d in enumerate(x.shape) if d == 1)
    else:
        axes = axes_of(axis, x.ndim)
        if builtins.any(x.shape[a] != 1 for a in axes):
            raise user_error(ShapeError, f"cannot squeeze axis {axis} of shape {x.shape}: "
                             "its size is not 1.", "squeeze only axes of size 1.")
    return drop_axes(x, axes)


def broadcast_to(x, shape):
    shape = tuple(shape) if not isinstance(shape, (int, np.integer)) else (int(shape),)
    if is_concrete(x):
        return np.broadcast_to(x, shape)
    if isinstance(x, PY_SCALARS):
        x = Literal.of(x)
    return x if tuple(x.shape) == shape else broadcast_p.bind(x, shape=shape)


def copy(x, order="K"):
    """np.copy: traced values are never modified in place, so a tracer is its own copy."""
    return x if isinstance(x, Tracer) else np.copy(x, order=order)


def zeros_like(x, dtype=None):
    return full_like(x, 0, dtype)


def ones_like(x, dtype=None):
    return full_like(x, 1, dtype)


def full_like(x, fill_value, dtype=None):
    if is_concrete(x):
        return np.full_like(x, fill_value, dtype=dtype)
    const = Literal.of(fill_value, dtype or x.dtype)
    return broadcast_p.bind(Tracer(x._trace, const), shape=x.shape)


def concatenate(arrays, axis=0):
    arrays = list(arrays)
    if is_concrete(*arrays):
        return np.concatenate(arrays, axis=axis)
    arrays = lift_captured(arrays)
    dtype = common_dtype(*arrays)  # any number of arrays
    arrays = [asarray(a) if isinstance(a, Tracer) else Literal.of(a, dtype) for a in arrays]
    arrays = [astype(a, dtype) for a in arrays]
    ndim = arrays[0].ndim
    if ndim == 0:
        raise user_error(ShapeError, "zero-dimensional arrays cannot be concatenated.",
                         "use stack, or reshape the scalars to (1,).")
    (ax,) = axes_of(axis, ndim)
    tracer = next(a for a in arrays if isinstance(a, Tracer))
    return concatenate_p.bind(*[a if isinstance(a, Tracer) else Tracer(tracer._trace, a)
                                for a in arrays], axis=ax)


def stack(arrays, axis=0):
    arrays = list(arrays)
    if is_concrete(*arrays):
        return np.stack(arrays, axis=axis)
    shapes = {tuple(np.shape(a)) if not isinstance(a, Tracer) else a.shape for a in arrays}
    if len(shapes) != 1:
        raise user_error(ShapeError, f"stack: all arrays must have the same shape, got "
                         f"{sorted(shapes)}.", "reshape or broadcast them to one shape.")
    return concatenate([expand_dims(asarray(a), axis) for a in arrays], axis=axis)




def shape(x):
    return x.shape if isinstance(x, Tracer) else np.shape(x)


def ndim(x):
    return x.ndim if isinstance(x, Tracer) else np.ndim(x)


def size(x):
    return x.size if isinstance(x, Tracer) else np.size(x)
