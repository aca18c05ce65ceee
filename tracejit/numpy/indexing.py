"""Indexing of traced arrays, NumPy's rules: basic (ints, slices of any step, None, Ellipsis)
and advanced (integer arrays, traced or constant, any broadcastable shapes, negative
indices, mixed with slices; constant boolean masks), plus np.take and np.take_along_axis.

How an index becomes primitives:

    x[i, :, j]  1. basic part first: None inserts a size-1 axis, slices slice; the array
                   positions keep their whole axis (y)
                2. each index array is checked once (constant: now, at trace time; traced:
                   one index_check step per call) and its negatives wrapped
                3. the arrays broadcast to one shape B; one array: take along its axis;
                   several: their axes flattened into one and the flat index composed
                4. B sits where the arrays were if they are adjacent, else first (NumPy)

A row gather `L[np.arange(n), labels]` (an arange over one axis, one other index array)
becomes take_along, which fuses into the row loop. A traced boolean mask has a
data-dependent shape and raises with the equivalents that have a static one.
"""
from __future__ import annotations

import builtins

import numpy as np

from ..errors import OutOfBoundsError, ShapeError, UnsupportedError, user_error, user_frame
from ..primitives.indexing import check_bounds, index_check_p, take_along_p, take_p
from ..primitives.layout import broadcast_p, rev_p, slice_p
from ..tracing import Tracer, unsupported
from .layout import reshape, transpose
from .promotion import asarray, astype

__all__ = ["getitem", "take", "take_along_axis"]

_MASK_FIX = ("a boolean mask selects a data-dependent number of elements; keep the shape "
             "static with np.where(mask, x, 0), or reduce with np.sum(x, where=mask).")


def _basic(x, index: tuple):
    """Ints, slices, None; Ellipsis already expanded and every axis named."""
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
                raise user_error(OutOfBoundsError, f"index {i} is out of bounds for axis "
                                 f"{dim} with size {n}.", f"use an index in [-{n}, {n}).")
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


def _normalize(index, ndim: int) -> tuple:
    """A tuple naming every axis: Ellipsis expanded, constant boolean masks turned into their
    nonzero() index arrays (a traced mask raises)."""
    if not isinstance(index, tuple):
        index = (index,)
    out = []
    for i in index:
        if isinstance(i, list):
            i = np.asarray(i)
        if isinstance(i, (bool, np.bool_)) or (isinstance(i, (np.ndarray, Tracer)) and
                                               i.dtype == np.dtype(bool)):
            if isinstance(i, Tracer):
                raise user_error(UnsupportedError, "indexing with a traced boolean mask "
                                 "(x[mask]) is not supported inside a tracejit function.",
                                 _MASK_FIX)
            out.extend(np.nonzero(np.asarray(i)))
            continue
        if not (i is None or i is Ellipsis or isinstance(i, (int, np.integer, slice, Tracer,
                                                                np.ndarray))):
            raise unsupported(f"indexing with {type(i).__name__}",
                              "index with ints, slices, None, ..., or integer arrays.")
        out.append(i)
    n_real = builtins.sum(1 for i in out if i is not None and i is not Ellipsis)
    if n_real > ndim:
        raise user_error(ShapeError, f"too many indices for an array of dimension {ndim}.",
                         "index at most ndim axes.")
    ells = [k for k, i in enumerate(out) if i is Ellipsis]
    if len(ells) > 1:
        raise user_error(ShapeError, "an index can only have a single ellipsis ('...').",
                         "use one '...'.")
    fill = (slice(None),) * (ndim - n_real)
    if ells:
        k = ells[0]
        return tuple(out[:k]) + fill + tuple(out[k + 1:])
    return tuple(out) + fill


def checked(idx, size: int, axis: int):
    """An index array (or int) as int64 in [0, size): constant ones are checked now (the
    error names the user's line), traced ones by one index_check per call."""
    if isinstance(idx, Tracer):
        if not np.issubdtype(idx.dtype, np.integer):
            raise user_error(OutOfBoundsError, f"arrays used as indices must be of integer "
                             f"type, not {idx.dtype}.", "cast the index with .astype(int).")
        return index_check_p.bind(astype(idx, np.int64), size=size, axis=axis,
                                  where=user_frame())
    arr = np.asarray(idx)
    if not np.issubdtype(arr.dtype, np.integer):
        raise user_error(OutOfBoundsError, f"arrays used as indices must be of integer type, "
                         f"not {arr.dtype}.", "cast the index with .astype(int).")
    try:
        check_bounds(arr, size, axis)
    except OutOfBoundsError as e:
        raise user_error(OutOfBoundsError, str(e).split("\n")[0] + ".",
                         f"use indices in [-{size}, {size}).") from None
    return np.where(arr < 0, arr + size, arr).astype(np.int64)


def _bshape(arrays) -> tuple:
    return tuple(np.broadcast_shapes(*[np.shape(a) for a in arrays]))


def _broadcast(a, shape):
    if np.shape(a) == shape:
        return a
    if isinstance(a, Tracer):
        return broadcast_p.bind(a, shape=shape)
    return np.broadcast_to(a, shape)


def _arange_axis(a, n: int, shape: tuple) -> int | None:
    """The axis of `shape` along which constant `a` is arange(n) (broadcast), else None."""
    if isinstance(a, Tracer) or len(shape) != 1 or shape[0] != n:
        return None
    return 0 if np.array_equal(np.broadcast_to(a, shape), np.arange(n)) else None


def advanced(y, dims: list[int], arrays: list):
    """y indexed at `dims` by the (checked) index arrays, NumPy's layout of the result."""
    shape = _bshape(arrays)
    adjacent = dims == list(range(dims[0], dims[0] + len(dims)))
    if len(dims) == 1:
        return take_p.bind(y, arrays[0], axis=dims[0])
    if len(dims) == 2 and adjacent:
        row = _row_gather(y, dims, arrays, shape)
        if row is not None:
            return row
    arrays = [_broadcast(a, shape) for a in arrays]
    if not adjacent:
        rest = [d for d in range(y.ndim) if d not in dims]
        y = transpose(y, tuple(dims) + tuple(rest))
        dims = list(range(len(dims)))
    at = dims[0]
    sizes = [y.shape[d] for d in dims]
    flat = None
    for a, stride in zip(arrays, np.cumprod([1] + sizes[::-1])[-2::-1]):
        term = a * int(stride) if stride != 1 else a
        flat = term if flat is None else flat + term
    y = reshape(y, y.shape[:at] + (int(np.prod(sizes)),) + y.shape[at + len(dims):])
    return take_p.bind(y, flat, axis=at)


def _row_gather(y, dims, arrays, shape):
    """y[arange(n), labels] on adjacent axes (a, a+1) (or (labels, arange)): a take_along,
    which fuses into the loop over rows."""
    a = dims[0]
    for k in (0, 1):
        if _arange_axis(arrays[k], y.shape[dims[k]], shape) is None:
            continue
        other = arrays[1 - k]
        along = dims[1 - k]
        n = shape[0]
        idx_shape = [1] * y.ndim
        idx_shape[dims[k]] = n
        idx = reshape(_broadcast(other, shape), tuple(idx_shape))
        out = take_along_p.bind(y, idx, axis=along)
        # the result's B axis is the arange's; drop the gathered (size-1) axis
        return reshape(out, y.shape[:a] + (n,) + y.shape[a + 2:])
    return None


def getitem(x, index):
    """x[index] on a traced array, as NumPy: basic and advanced (integer-array) indexing."""
    x = asarray(x)
    index = _normalize(index, x.ndim)
    if not builtins.any(isinstance(i, (Tracer, np.ndarray)) for i in index):
        return _basic(x, index)
    # 1. the basic part: None -> new axis, slices; arrays (and ints) keep their whole axis
    basic, positions, arrays, ydim, xdim = [], [], [], 0, 0
    for i in index:
        if i is None:
            basic.append(None)
            ydim += 1
            continue
        if isinstance(i, slice):
            basic.append(i)
        else:
            basic.append(slice(None))
            positions.append((ydim, xdim, i))
        ydim += 1
        xdim += 1
    y = _basic(x, tuple(basic))
    # 2. check each index array once
    dims = [d for d, _, _ in positions]
    arrays = [checked(i, x.shape[xd], xd) for _, xd, i in positions]
    try:
        _bshape(arrays)
    except ValueError:
        raise user_error(ShapeError, "shape mismatch: indexing arrays could not be broadcast "
                         f"together with shapes {[np.shape(a) for a in arrays]}.",
                         "give the index arrays broadcastable shapes.") from None
    return advanced(y, dims, arrays)


def take(a, indices, axis=None, mode=None):
    """np.take: elements of `a` at `indices` along `axis` (None: of the flattened array)."""
    if mode not in (None, "raise"):
        raise unsupported(f"np.take(mode={mode!r})", "use mode='raise' (the default).")
    a = asarray(a)
    if axis is None:
        a, axis = reshape(a, (a.size,)), 0
    axis = int(axis) % builtins.max(a.ndim, 1)
    return take_p.bind(a, checked(indices, a.shape[axis], axis), axis=axis)


def take_along_axis(arr, indices, axis):
    """np.take_along_axis: per position along the other axes, the elements at `indices`."""
    arr = asarray(arr)
    if axis is None:
        arr, axis = reshape(arr, (arr.size,)), 0
    axis = int(axis) % arr.ndim
    if np.ndim(indices) != arr.ndim:
        raise user_error(ShapeError, "`indices` and `arr` must have the same number of "
                         "dimensions.", "add axes to the index, e.g. labels[:, None].")
    return take_along_p.bind(arr, checked(indices, arr.shape[axis], axis), axis=axis)
