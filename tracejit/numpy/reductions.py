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
from .elementwise import multiply, sqrt, subtract
from .promotion import asarray, astype, axes_of, drop_axes, is_concrete


def wrap(prim, name: str):
    """np.<name>(x, axis, dtype, keepdims) as the reduction primitive `prim` over axes."""
    np_fn = getattr(np, name)
    try:  # NumPy's reductions without an identity (max, min) reject empty arrays
        np_fn(np.ones(0))
        has_identity = True
    except ValueError:
        has_identity = False

    def fn(x, axis=None, dtype=None, keepdims=False, **kwargs):
        if kwargs.get("out") is not None or kwargs.get("where") is not None or \
                kwargs.get("initial") is not None:
            raise unsupported(f"np.{name} with out=/where=/initial=")
        if is_concrete(x):
            return np_fn(x, axis=axis, keepdims=keepdims, **({"dtype": dtype} if dtype else {}))
        x = asarray(x)
        axes = axes_of(axis, x.ndim)
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


def mean(x, axis=None, dtype=None, keepdims=False):
    if is_concrete(x):
        return np.mean(x, axis=axis, dtype=dtype, keepdims=keepdims)
    if dtype is None and not is_float(x.dtype):
        dtype = np.float64
    total = sum(x, axis=axis, dtype=dtype, keepdims=keepdims)
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


