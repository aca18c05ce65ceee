"""Indexing of traced arrays: x[...] with ints, slices (any step), None and Ellipsis."""
from __future__ import annotations

import builtins

import numpy as np

from ..errors import ShapeError, user_error
from ..primitives.layout import rev_p, slice_p
from ..tracing import unsupported
from .layout import reshape


def getitem(x, index):
    """Basic indexing: ints, slices (any step), None and Ellipsis."""
    if not isinstance(index, tuple):
        index = (index,)
    for i in index:
        if not (i is None or i is Ellipsis or isinstance(i, (int, np.integer, slice))):
            raise unsupported(f"indexing with {type(i).__name__}",
                              "use basic indexing (ints, slices, None, ...); for a "
                              "data-dependent choice use np.where(mask, x, 0).")
    n_real = builtins.sum(1 for i in index if i is not None and i is not Ellipsis)
    if n_real > x.ndim:
        raise user_error(ShapeError, f"too many indices for an array of dimension {x.ndim}.",
                         "index at most ndim axes.")
    if Ellipsis in index:
        k = index.index(Ellipsis)
        index = index[:k] + (slice(None),) * (x.ndim - n_real) + index[k + 1:]
    else:
        index = index + (slice(None),) * (x.ndim - n_real)
    starts, limits, strides, flips, out_shape, dim = [], [], [], [], [], 0
    for i in index:
        if i is None:
            out_shape.append(1)
            continue
        n = x.shape[dim]
        if isinstance(i, slice):
            start, stop, step = i.indices(n)
            count = len(range(start, stop, step))
            if step < 0:
                flips.append(dim)
                start, step = n - 1 - start, -step
            out_shape.append(count)
        else:
            if not -n <= i < n:
                raise user_error(ShapeError, f"index {i} is out of bounds for axis {dim} with "
                                 f"size {n}.", f"use an index in [-{n}, {n}).")
            start, step, count = int(i) % n, 1, 1
        starts.append(start)
        strides.append(step)
        limits.append(start + (count - 1) * step + 1 if count else start)
        dim += 1
    out = rev_p.bind(x, axes=tuple(flips)) if flips else x
    if (tuple(starts), tuple(limits)) != ((0,) * x.ndim, x.shape) or builtins.any(
            s != 1 for s in strides):
        out = slice_p.bind(out, starts=tuple(starts), limits=tuple(limits), strides=tuple(strides))
    return reshape(out, tuple(out_shape))


