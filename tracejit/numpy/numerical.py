"""The NumPy of numerical code, as composites of primitives (so each is differentiable and
fuses where its primitives do): flip roll tile repeat vstack hstack column_stack diff
diagonal trace diag triu tril pad cumsum cumprod sort argsort nansum nanmean nanmax nanmin
average, and NaN-aware / two-argument math (logaddexp logaddexp2 fmax fmin heaviside).

cumsum/cumprod are one linear_scan step each (a serial pass along the axis; its gradient is
the reverse scan). sort is
take_along(x, argsort(x)): its gradient goes back through the permutation.
"""
from __future__ import annotations

import builtins
import math

import numpy as np

from ..errors import ShapeError, user_error
from ..primitives.indexing import argsort_p, take_along_p
from ..primitives.layout import pad_p, rev_p
from ..primitives.scan import scan_p
from ..tracing import unsupported
from .elementwise import (
    absolute,
    add,
    exp,
    isnan,
    log1p,
    logical_not,
    maximum,
    minimum,
    multiply,
    subtract,
    where,
)
from .indexing import getitem, take
from .layout import broadcast_to, concatenate, reshape, transpose
from .promotion import asarray, astype, axes_of, is_concrete
from .reductions import max as _max
from .reductions import min as _min
from .reductions import sum as _sum

__all__ = ["argsort", "average", "column_stack", "cumprod", "cumsum", "diag", "diagonal",
           "diff", "flip", "fmax", "fmin", "heaviside", "hstack", "logaddexp", "logaddexp2",
           "nanmax", "nanmean", "nanmin", "nansum", "pad", "repeat", "roll", "sort", "tile",
           "trace", "tril", "triu", "vstack"]


def _np(name):
    """Concrete arguments: NumPy's own function."""
    return getattr(np, name)


def _axis(axis, ndim):
    return axes_of(axis, ndim)[0]


def _last_two(x, a1, a2):
    """x with axes a1, a2 moved to the end (in that order)."""
    rest = [d for d in range(x.ndim) if d not in (a1, a2)]
    return transpose(x, tuple(rest + [a1, a2]))


def _slice_along(x, axis, start, stop, step=1):
    index = [slice(None)] * x.ndim
    index[axis] = slice(start, stop, step)
    return getitem(x, tuple(index))


def flip(m, axis=None):
    if is_concrete(m):
        return np.flip(m, axis)
    m = asarray(m)
    return rev_p.bind(m, axes=axes_of(axis, m.ndim)) if m.ndim else m


def roll(a, shift, axis=None):
    if is_concrete(a):
        return np.roll(a, shift, axis)
    a = asarray(a)
    if axis is None:
        return reshape(roll(reshape(a, (a.size,)), shift, 0), a.shape)
    shifts, axes = np.broadcast_arrays(np.atleast_1d(shift), np.atleast_1d(axis))
    for s, ax in zip(shifts.tolist(), axes.tolist()):
        ax = _axis(ax, a.ndim)
        n = a.shape[ax]
        if n == 0 or s % n == 0:
            continue
        s %= n
        a = concatenate([_slice_along(a, ax, n - s, n), _slice_along(a, ax, 0, n - s)], ax)
    return a


def tile(A, reps):
    if is_concrete(A):
        return np.tile(A, reps)
    A = asarray(A)
    reps = (reps,) if isinstance(reps, int) else tuple(reps)
    nd = builtins.max(A.ndim, len(reps))
    shape = (1,) * (nd - A.ndim) + A.shape
    reps = (1,) * (nd - len(reps)) + reps
    x = reshape(A, tuple(v for d in shape for v in (1, d)))
    x = broadcast_to(x, tuple(v for r, d in zip(reps, shape) for v in (r, d)))
    return reshape(x, tuple(r * d for r, d in zip(reps, shape)))


def repeat(a, repeats, axis=None):
    if is_concrete(a):
        return np.repeat(a, repeats, axis)
    a = asarray(a)
    if axis is None:
        a, axis = reshape(a, (a.size,)), 0
    axis = _axis(axis, a.ndim)
    if isinstance(repeats, (int, np.integer)):
        x = reshape(a, a.shape[:axis + 1] + (1,) + a.shape[axis + 1:])
        x = broadcast_to(x, a.shape[:axis + 1] + (int(repeats),) + a.shape[axis + 1:])
        return reshape(x, a.shape[:axis] + (a.shape[axis] * int(repeats),) + a.shape[axis + 1:])
    return take(a, np.repeat(np.arange(a.shape[axis]), repeats), axis=axis)


def _atleast(x, n):
    x = asarray(x)
    if x.ndim >= n:
        return x
    return reshape(x, (1,) * (n - x.ndim) + x.shape) if n == 2 or x.ndim == 0 else x


def vstack(tup):
    return concatenate([_atleast(x, 2) for x in tup], 0)


def hstack(tup):
    xs = [asarray(x) for x in tup]
    xs = [reshape(x, (1,)) if x.ndim == 0 else x for x in xs]
    return concatenate(xs, 0 if xs[0].ndim == 1 else 1)


def column_stack(tup):
    xs = [asarray(x) for x in tup]
    return concatenate([reshape(x, (x.size, 1)) if x.ndim < 2 else x for x in xs], 1)


def diff(a, n=1, axis=-1):
    if is_concrete(a):
        return np.diff(a, n, axis)
    a = asarray(a)
    axis = _axis(axis, a.ndim)
    for _ in range(n):
        m = a.shape[axis]
        a = subtract(_slice_along(a, axis, 1, m), _slice_along(a, axis, 0, builtins.max(m - 1, 0)))
    return a


def diagonal(a, offset=0, axis1=0, axis2=1):
    if is_concrete(a):
        return np.diagonal(a, offset, axis1, axis2)
    a = asarray(a)
    a1, a2 = _axis(axis1, a.ndim), _axis(axis2, a.ndim)
    x = _last_two(a, a1, a2)
    n, m = x.shape[-2], x.shape[-1]
    k = builtins.max(0, builtins.min(n - builtins.max(0, -offset), m - builtins.max(0, offset)))
    rows = np.arange(k) + builtins.max(0, -offset)
    cols = np.arange(k) + builtins.max(0, offset)
    return getitem(x, (Ellipsis, rows, cols))


def trace(a, offset=0, axis1=0, axis2=1, dtype=None):
    if is_concrete(a):
        return np.trace(a, offset, axis1, axis2, dtype)
    return _sum(diagonal(a, offset, axis1, axis2), axis=-1, dtype=dtype)


def diag(v, k=0):
    if is_concrete(v):
        return np.diag(v, k)
    v = asarray(v)
    if v.ndim == 2:
        return diagonal(v, k)
    if v.ndim != 1:
        raise user_error(ShapeError, "diag: input must be 1-d or 2-d.", "pass a vector or "
                         "a matrix.")
    n = v.shape[0] + builtins.abs(k)
    r, c = np.indices((n, n))
    mask = (c - r) == k
    pos = np.where(mask, r if k >= 0 else c, 0).clip(0, builtins.max(v.shape[0] - 1, 0))
    return where(mask, take(v, pos), np.zeros((), v.dtype)) if v.shape[0] else \
        broadcast_to(np.zeros((), v.dtype), (n, n))


def _tri(m, k, lower):
    if is_concrete(m):
        return (np.tril if lower else np.triu)(m, k)
    m = asarray(m)
    n1, n2 = m.shape[-2:]
    mask = np.tri(n1, n2, k, dtype=bool) if lower else ~np.tri(n1, n2, k - 1, dtype=bool)
    return where(mask, m, np.zeros((), m.dtype))


def triu(m, k=0):
    return _tri(m, k, lower=False)


def tril(m, k=0):
    return _tri(m, k, lower=True)


def pad(array, pad_width, mode="constant", constant_values=0):
    if is_concrete(array):
        return np.pad(array, pad_width, mode=mode, constant_values=constant_values) \
            if mode == "constant" else np.pad(array, pad_width, mode=mode)
    x = asarray(array)
    widths = np.broadcast_to(np.asarray(pad_width, dtype=np.int64).reshape(-1, 2)
                             if np.ndim(pad_width) else np.asarray(pad_width),
                             (x.ndim, 2)).tolist()
    if mode == "constant":
        lo, hi = tuple(w[0] for w in widths), tuple(w[1] for w in widths)
        out = pad_p.bind(x, lo=lo, hi=hi, interior=(0,) * x.ndim)
        if np.any(np.asarray(constant_values) != 0):
            inside = np.zeros(out.shape, bool)
            inside[tuple(slice(a, a + n) for (a, _), n in zip(widths, x.shape))] = True
            out = where(inside, out, np.asarray(constant_values, x.dtype))
        return out
    if mode not in ("edge", "reflect"):
        raise unsupported(f"np.pad(mode={mode!r})", "use mode='constant', 'edge' or "
                          "'reflect'.")
    for ax, (lo, hi) in enumerate(widths):
        n = x.shape[ax]
        if mode == "reflect" and (lo >= n or hi >= n):
            raise unsupported("np.pad(mode='reflect') wider than the axis - 1")
        parts = []
        if lo:
            parts.append(repeat(_slice_along(x, ax, 0, 1), lo, ax) if mode == "edge" else
                         _slice_along(x, ax, lo, 0, -1))
        parts.append(x)
        if hi:
            parts.append(repeat(_slice_along(x, ax, n - 1, n), hi, ax) if mode == "edge" else
                         _slice_along(x, ax, n - 2, n - 2 - hi, -1))
        x = concatenate(parts, ax) if len(parts) > 1 else x
    return x


def _scan(a, axis, dtype, np_fn):
    if is_concrete(a):
        return np_fn(a, axis=axis, dtype=dtype)
    a = asarray(a)
    if axis is None:
        a, axis = reshape(a, (a.size,)), 0
    axis = _axis(axis, a.ndim)
    if dtype is not None or a.dtype.kind in "biu":
        a = astype(a, dtype if dtype is not None else np_fn(np.ones(1, a.dtype)).dtype)
    return a, axis


def cumsum(a, axis=None, dtype=None):
    """One serial scan pass (primitives/scan.py): h[i] = h[i-1] + a[i]."""
    x = _scan(a, axis, dtype, np.cumsum)
    if not isinstance(x, tuple):
        return x
    a, axis = x
    return scan_p.bind(np.ones((), a.dtype), a, axis=axis, reverse=False)


def cumprod(a, axis=None, dtype=None):
    """One serial scan pass: h[i] = a[i] * h[i-1], h[0] = a[0]."""
    x = _scan(a, axis, dtype, np.cumprod)
    if not isinstance(x, tuple):
        return x
    a, axis = x
    first = np.arange(a.shape[axis]).reshape((-1,) + (1,) * (a.ndim - axis - 1)) == 0
    return scan_p.bind(a, where(first, a, 0), axis=axis, reverse=False)


def argsort(a, axis=-1, kind=None, order=None, stable=None):
    if is_concrete(a):
        return np.argsort(a, axis=axis, kind=kind or "stable")
    a = asarray(a)
    if axis is None:
        a, axis = reshape(a, (a.size,)), 0
    return argsort_p.bind(a, axis=_axis(axis, a.ndim))


def sort(a, axis=-1, kind=None, order=None, stable=None):
    """np.sort: the gradient flows back through the sorting permutation."""
    if is_concrete(a):
        return np.sort(a, axis=axis, kind=kind)
    a = asarray(a)
    if axis is None:
        a, axis = reshape(a, (a.size,)), 0
    axis = _axis(axis, a.ndim)
    return take_along_p.bind(a, argsort_p.bind(a, axis=axis), axis=axis)


# ----- NaN-aware reductions -----
def _nan_fill(a, value):
    return where(isnan(a), np.asarray(value, a.dtype), a)


def nansum(a, axis=None, dtype=None, keepdims=False):
    if is_concrete(a):
        return np.nansum(a, axis=axis, dtype=dtype, keepdims=keepdims)
    return _sum(_nan_fill(asarray(a), 0), axis=axis, dtype=dtype, keepdims=keepdims)


def nanmean(a, axis=None, dtype=None, keepdims=False):
    if is_concrete(a):
        return np.nanmean(a, axis=axis, dtype=dtype, keepdims=keepdims)
    a = asarray(a)
    count = _sum(astype(logical_not(isnan(a)), a.dtype), axis=axis, keepdims=keepdims)
    return nansum(a, axis=axis, dtype=dtype, keepdims=keepdims) / count


def _nan_extremum(a, axis, keepdims, reduce, fill, np_fn):
    if is_concrete(a):
        return np_fn(a, axis=axis, keepdims=keepdims)
    a = asarray(a)
    out = reduce(_nan_fill(a, fill), axis=axis, keepdims=keepdims)
    all_nan = _min(astype(isnan(a), a.dtype), axis=axis, keepdims=keepdims)
    return where(all_nan > 0, np.asarray(np.nan, a.dtype), out)


def nanmax(a, axis=None, keepdims=False):
    return _nan_extremum(a, axis, keepdims, _max, -np.inf, np.nanmax)


def nanmin(a, axis=None, keepdims=False):
    return _nan_extremum(a, axis, keepdims, _min, np.inf, np.nanmin)


def average(a, axis=None, weights=None, returned=False, keepdims=False):
    if is_concrete(a, weights):
        return np.average(a, axis=axis, weights=weights, returned=returned, keepdims=keepdims)
    a = asarray(a)
    if weights is None:
        total = _sum(a, axis=axis, keepdims=keepdims)
        wsum = np.asarray(a.size / total.size if total.size else 0, total.dtype)
    else:
        w = asarray(weights)
        if w.ndim == 1 and a.ndim > 1:
            ax = _axis(axis, a.ndim)
            w = reshape(w, (1,) * ax + w.shape + (1,) * (a.ndim - ax - 1))
        total = _sum(multiply(a, w), axis=axis, keepdims=keepdims)
        wsum = _sum(broadcast_to(w, a.shape) if w.shape != a.shape else w, axis=axis,
                    keepdims=keepdims)
    avg = total / wsum
    return (avg, broadcast_to(wsum, np.shape(avg))) if returned else avg


# ----- two-argument math -----
def logaddexp(x1, x2):
    """log(exp(x1) + exp(x2)) without overflow; -inf and +inf as NumPy."""
    if is_concrete(x1, x2):
        return np.logaddexp(x1, x2)
    m = maximum(x1, x2)
    d = subtract(x1, x2)
    safe = where(isnan(d), d, absolute(where(d == d, d, 0)))
    out = add(m, log1p(exp(-safe)))
    return where(x1 == x2, add(m, math.log(2)), out)


def logaddexp2(x1, x2):
    if is_concrete(x1, x2):
        return np.logaddexp2(x1, x2)
    ln2 = math.log(2)

    def scaled(x):  # a Python scalar stays one (weak: it must not make the result float64)
        return x * ln2 if isinstance(x, (int, float)) else multiply(x, ln2)
    return multiply(logaddexp(scaled(x1), scaled(x2)), 1 / ln2)


def fmax(x1, x2):
    """maximum that ignores a NaN operand (NaN only when both are)."""
    if is_concrete(x1, x2):
        return np.fmax(x1, x2)
    return where(isnan(x2), x1, where(isnan(x1), x2, maximum(x1, x2)))


def fmin(x1, x2):
    if is_concrete(x1, x2):
        return np.fmin(x1, x2)
    return where(isnan(x2), x1, where(isnan(x1), x2, minimum(x1, x2)))


def heaviside(x1, x2):
    if is_concrete(x1, x2):
        return np.heaviside(x1, x2)
    x1 = asarray(x1)
    one = np.ones((), x1.dtype)
    step = where(x1 > 0, one, where(x1 < 0, np.zeros((), x1.dtype), x2))
    return where(isnan(x1), x1, step)

