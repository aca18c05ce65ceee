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
from .elementwise import where as where_fn
from .layout import broadcast_to
from .promotion import asarray, astype, axes_of, drop_axes, is_concrete

# np.<reduction>(x, initial=v): the reduction combined with v once
_COMBINE_INITIAL = {"sum": add, "prod": multiply, "max": maximum, "amax": maximum,
                    "min": minimum, "amin": minimum}


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
            raise unsupported(f"np.{name}(..., out=...)", "return the result instead.")
        if is_concrete(x, where):
            extra = {k: v for k, v in (("dtype", dtype), ("initial", initial),
                                       ("where", where)) if v is not None}
            return np_fn(x, axis=axis, keepdims=keepdims, **extra)
        x = asarray(x)
        if where is not None:  # masked-out elements count as the reduction's identity
            if not has_identity and initial is None:
                raise user_error(ShapeError, f"reduction operation '{name}' does not have "
                                 "an identity, so to use a where mask one has to specify "
                                 "'initial'.", f"pass initial=, e.g. np.{name}(x, "
                                 f"where=m, initial={'-' if name in ('max', 'amax') else ''}"
                                 "np.inf).")
            fill = initial if not has_identity else np_fn(np.zeros(0, x.dtype))
            x = where_fn(where, x, np.asarray(fill, x.dtype))
        axes = axes_of(axis, x.ndim)
        if initial is not None:
            result = fn(x, axis=axis, dtype=dtype, keepdims=keepdims)
            return _COMBINE_INITIAL[name](result, initial)
        if not has_identity and builtins.any(x.shape[a] == 0 for a in axes):
            raise user_error(ShapeError, f"zero-size array to reduction operation "
                             f"{name} which has no identity.",
                             "reduce a non-empty array, or use np.where to supply a value.")
        # NumPy's accumulator dtype: sum/prod of ints and bools widen, max/min keep it
        x = astype(x, dtype if dtype is not None else np_fn(np.ones(1, x.dtype)).dtype)
        out = prim.bind(x, axes=axes) if axes else x
        return out if keepdims else drop_axes(out, axes)
    fn.__name__ = fn.__qualname__ = name
    fn.__doc__ = f"Traced np.{name} over `axis` (None, int or tuple), `keepdims`: " \
                 f"primitive `{prim.name}`."
    fn.primitive = prim
    return fn


GENERATED = {name: wrap(prim, name) for prim in REGISTRY.values() if prim.kind == REDUCE
             for name in prim.numpy}
globals().update(GENERATED)
sum, prod = GENERATED["sum"], GENERATED["prod"]  # used by the composites below


def _count(x, axes) -> int:
    return int(np.prod([x.shape[a] for a in axes], dtype=np.int64))


def mean(x, axis=None, dtype=None, keepdims=False, where=None):
    if is_concrete(x, where):
        extra = {} if where is None else {"where": where}
        return np.mean(x, axis=axis, dtype=dtype, keepdims=keepdims, **extra)
    if dtype is None and not is_float(x.dtype):
        dtype = np.float64
    total = sum(x, axis=axis, dtype=dtype, keepdims=keepdims, where=where)
    if where is not None:  # the count of selected elements (NaN where none is)
        ones = where_fn(where, np.ones((), total.dtype), np.zeros((), total.dtype))
        count = sum(broadcast_to(ones, x.shape), axis=axis, keepdims=keepdims)
        return divide(total, count)
    n = _count(x, axes_of(axis, x.ndim))
    return multiply(total, 1.0 / n if n else math.nan)


def var(x, axis=None, dtype=None, ddof=0, keepdims=False):
    if is_concrete(x):
        return np.var(x, axis=axis, dtype=dtype, ddof=ddof, keepdims=keepdims)
    centered = subtract(x, mean(x, axis=axis, dtype=dtype, keepdims=True))
    n = _count(x, axes_of(axis, x.ndim)) - ddof
    total = sum(multiply(centered, centered), axis=axis, keepdims=keepdims)
    return multiply(total, 1.0 / n if n > 0 else math.nan)


def std(x, axis=None, dtype=None, ddof=0, keepdims=False):
    if is_concrete(x):
        return np.std(x, axis=axis, dtype=dtype, ddof=ddof, keepdims=keepdims)
    return sqrt(var(x, axis=axis, dtype=dtype, ddof=ddof, keepdims=keepdims))


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


