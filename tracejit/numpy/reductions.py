"""Reductions: sum, prod, max, min (primitives over axes, keepdims=False a reshape after
them), mean, var, std (composites), argmax, argmin."""
from __future__ import annotations

import builtins
import math

import numpy as np

from ..errors import ShapeError, user_error
from ..primitives import REDUCE, REGISTRY, is_float
from ..primitives.layout import reshape_p
from ..primitives.reductions import argmax_p, argmin_p
from ..tracing import unsupported
from .elementwise import add, divide, maximum, minimum, multiply, sqrt, subtract
from .elementwise import where as select
from .layout import broadcast_to
from .promotion import asarray, astype, axes_of, drop_axes, is_concrete


def wrap(prim, name: str):
    """np.<name>(x, axis, dtype, keepdims) as the reduction primitive `prim` over axes."""
    np_fn = getattr(np, name)
    try:  # NumPy's reductions without an identity (max, min) reject empty arrays
        np_fn(np.ones(0))
        has_identity = True
    except ValueError:
        has_identity = False

    def fn(x, axis=None, dtype=None, keepdims=False, out=None, initial=None, where=None):
        if out is not None:
            raise unsupported(f"np.{name}(..., out=...)", "return the result instead of "
                              "writing into `out`.")
        if is_concrete(x, where):
            extra = {k: v for k, v in (("dtype", dtype), ("initial", initial), ("where", where))
                     if v is not None}
            return np_fn(x, axis=axis, keepdims=keepdims, **extra)
        x = asarray(x)
        axes = axes_of(axis, x.ndim)
        if not has_identity and initial is None and (where is not None or builtins.any(
                x.shape[a] == 0 for a in axes)):
            raise user_error(ShapeError, f"np.{name}: zero-size array or where= mask, and the "
                             "reduction has no identity.", "pass initial=... (the value of "
                             "an empty or fully masked reduction), or reduce a non-empty array.")
        # NumPy's accumulator dtype: sum/prod of ints and bools widen, max/min keep it
        x = astype(x, dtype if dtype is not None else np_fn(np.ones(1, x.dtype)).dtype)
        if where is not None:  # masked-out elements count as the identity (or `initial`)
            # the identity (sum: 0, prod: 1); max/min have none: `initial` (combined below
            # too, which for them changes nothing)
            fill = np_fn(np.ones(0, x.dtype)).item() if has_identity else initial
            x = select(_mask_like(where, x), x, fill)
        out = prim.bind(x, axes=axes) if axes else x
        if initial is not None:
            combine = _COMBINE.get(name)
            if combine is None:
                raise unsupported(f"np.{name}(..., initial=...)")
            out = combine(out, initial)
        return out if keepdims else drop_axes(out, axes)
    fn.__name__ = fn.__qualname__ = name
    fn.__doc__ = f"Traced np.{name} over `axis` (None, int or tuple), `keepdims`: " \
                 f"primitive `{prim.name}`."
    fn.primitive = prim
    return fn


def _mask_like(where, x):
    """A where= mask as a bool array of x's shape (NumPy broadcasts it to the operand)."""
    shape = np.shape(where) if is_concrete(where) else where.shape
    try:
        ok = np.broadcast_shapes(shape, x.shape) == x.shape
    except ValueError:
        ok = False
    if not ok:
        raise user_error(ShapeError, f"where= mask of shape {tuple(shape)} does not broadcast "
                         f"to the array's shape {x.shape}.", "give a mask of the array's shape "
                         "(or one that broadcasts to it).")
    return broadcast_to(astype(where, bool) if not is_concrete(where)
                        else np.asarray(where, bool), x.shape)


GENERATED = {name: wrap(prim, name) for prim in REGISTRY.values() if prim.kind == REDUCE
             for name in prim.numpy}
globals().update(GENERATED)
sum, prod = GENERATED["sum"], GENERATED["prod"]  # used by the composites below
# how `initial=` joins a reduction's result
_COMBINE = {"sum": add, "prod": multiply, "max": maximum, "amax": maximum, "min": minimum,
            "amin": minimum}


def _count(x, axes) -> int:
    return int(np.prod([x.shape[a] for a in axes], dtype=np.int64))


def _no_out(name: str, out) -> None:
    if out is not None:
        raise unsupported(f"np.{name}(..., out=...)", "return the result instead of writing "
                          "into `out`.")


def _divide_by_count(total, x, axis, keepdims, where, ddof=0):
    """total / (number of elements reduced - ddof): a constant without a mask (NaN when it is
    not positive, as NumPy), else counted from the mask."""
    if where is None:
        n = _count(x, axes_of(axis, x.ndim)) - ddof
        return multiply(total, 1.0 / n if n > 0 else math.nan)
    mask = _mask_like(where, x)
    if is_concrete(mask):
        n = np.sum(mask, axis=axis, keepdims=keepdims) - ddof
        return divide(total, np.where(n > 0, n, np.nan).astype(total.dtype))
    n = sum(astype(mask, total.dtype), axis=axis, keepdims=keepdims)
    return divide(total, n - ddof if ddof else n)


def mean(x, axis=None, dtype=None, out=None, keepdims=False, *, where=None):
    _no_out("mean", out)
    if is_concrete(x, where):
        return np.mean(x, axis=axis, dtype=dtype, keepdims=keepdims,
                       **({"where": where} if where is not None else {}))
    x = asarray(x)
    if dtype is None and not is_float(x.dtype):
        dtype = np.float64
    total = sum(x, axis=axis, dtype=dtype, keepdims=keepdims, where=where)
    return _divide_by_count(total, x, axis, keepdims, where)


def var(x, axis=None, dtype=None, out=None, ddof=0, keepdims=False, *, where=None):
    _no_out("var", out)
    if is_concrete(x, where):
        return np.var(x, axis=axis, dtype=dtype, ddof=ddof, keepdims=keepdims,
                      **({"where": where} if where is not None else {}))
    x = asarray(x)
    centered = subtract(x, mean(x, axis=axis, dtype=dtype, keepdims=True, where=where))
    total = sum(multiply(centered, centered), axis=axis, keepdims=keepdims, where=where)
    return _divide_by_count(total, x, axis, keepdims, where, ddof)


def std(x, axis=None, dtype=None, out=None, ddof=0, keepdims=False, *, where=None):
    _no_out("std", out)
    if is_concrete(x, where):
        return np.std(x, axis=axis, dtype=dtype, ddof=ddof, keepdims=keepdims,
                      **({"where": where} if where is not None else {}))
    return sqrt(var(x, axis=axis, dtype=dtype, ddof=ddof, keepdims=keepdims, where=where))


def _arg_reduction(prim, np_fn):
    def fn(x, axis=None, keepdims=False):
        if is_concrete(x):
            return np_fn(x, axis=axis, keepdims=keepdims)
        if axis is None:
            flat = reshape_p.bind(x, shape=(x.size,))
            out = prim.bind(flat, axes=(0,))
            return reshape_p.bind(out, shape=(1,) * x.ndim if keepdims else ())
        (ax,) = axes_of(axis, x.ndim)
        if x.shape[ax] == 0:
            raise user_error(ShapeError, f"attempt to get {np_fn.__name__} of an empty "
                             "sequence.", "reduce a non-empty axis.")
        out = prim.bind(x, axes=(ax,))
        return out if keepdims else drop_axes(out, (ax,))
    fn.__name__ = np_fn.__name__
    return fn


argmax = _arg_reduction(argmax_p, np.argmax)
argmin = _arg_reduction(argmin_p, np.argmin)


