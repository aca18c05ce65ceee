"""Elementwise functions. A wrapper for every NumPy name a primitive answers to (its `numpy=`
field) is generated here from the registry; the composites below are written with them.

A generated wrapper computes NumPy's result dtype (Python scalars weak), casts its operands to
it (comparisons compare in their operands' common dtype) and binds the primitive; on
concrete operands it is the NumPy ufunc itself.
"""
from __future__ import annotations

import builtins
import math

import numpy as np

from ..primitives import BINARY, REGISTRY, UNARY, is_float
from ..primitives.elementwise import select_p
from ..tracing import Tracer, unsupported, weakly
from .promotion import (
    PY_SCALARS,
    astype,
    cast_all,
    dtype_of,
    input_dtype,
    is_concrete,
    result_dtype,
)


def _unary(prim, ufunc):
    def fn(x):
        if is_concrete(x):
            return ufunc(x)
        return prim.bind(weakly(astype(x, result_dtype(ufunc, x)), x.weak))  # weak: weak
    return fn


def _binary(prim, ufunc):
    def fn(x, y):
        if is_concrete(x, y):
            return ufunc(x, y)
        dtype = result_dtype(ufunc, x, y)
        if dtype == np.dtype(bool):  # a comparison: in the operands' common dtype
            dtype = input_dtype(x, y)
        return prim.bind(*cast_all((x, y), dtype))
    return fn


def wrap(prim, name: str):
    """np.<name> as the unary or binary primitive `prim`."""
    fn = (_unary if prim.kind == UNARY else _binary)(prim, getattr(np, name))
    fn.__name__ = fn.__qualname__ = name
    fn.__doc__ = f"Traced np.{name}: primitive `{prim.name}`."
    fn.primitive = prim
    return fn


# the composites below replace a generated wrapper of the same name where both exist
GENERATED = {name: wrap(prim, name) for prim in REGISTRY.values()
             if prim.kind in (UNARY, BINARY) for name in prim.numpy}
globals().update(GENERATED)
_W = GENERATED
# integer // and % (their primitives have no NumPy names: the float forms are compositions)
_INTEGER = {"floor_divide": wrap(REGISTRY["floordiv"], "floor_divide"),
            "remainder": wrap(REGISTRY["rem"], "remainder")}


def _to_bool(x):
    if isinstance(x, PY_SCALARS):
        return builtins.bool(x)
    return x if dtype_of(x) == np.dtype(bool) else _W["not_equal"](x, 0)


def _logical(prim, ufunc):
    """Logical ops take bool operands: anything else is compared with 0 first, as NumPy."""
    def fn(*xs):
        if is_concrete(*xs):
            return ufunc(*xs)
        return prim.bind(*cast_all([_to_bool(x) for x in xs], np.dtype(bool)))
    fn.__name__ = fn.__qualname__ = ufunc.__name__
    fn.__doc__ = f"Traced np.{ufunc.__name__}: primitive `{prim.name}` on bool operands."
    fn.primitive = prim
    return fn


logical_and = _logical(REGISTRY["and"], np.logical_and)
logical_or = _logical(REGISTRY["or"], np.logical_or)
logical_not = _logical(REGISTRY["logical_not"], np.logical_not)


def logical_xor(x, y):
    return _W["not_equal"](_to_bool(x), _to_bool(y))


def power(x, y):
    """x ** y. Small constant exponents become multiplications (exact, and fast in loops)."""
    if isinstance(y, PY_SCALARS) and not isinstance(y, builtins.bool) and isinstance(x, Tracer):
        dtype = result_dtype(np.power, x, y)
        (x, _) = cast_all((x, y), dtype)
        if y == 1:
            return x
        if y == 2:
            return x * x
        if y == 3:
            return x * x * x
        if y == 0.5 and is_float(dtype):
            return _W["sqrt"](x)
        if y == -1 and is_float(dtype):
            return 1 / x
    return _W["power"](x, y)


def square(x):
    return x * x


def reciprocal(x):
    return 1 / x if dtype_of(x) != np.dtype(bool) and is_float(np.dtype(dtype_of(x))) \
        else np.reciprocal(x)


def positive(x):
    return x


def floor_divide(x, y):
    if is_concrete(x, y):
        return np.floor_divide(x, y)
    if not is_float(result_dtype(np.floor_divide, x, y)):
        return _INTEGER["floor_divide"](x, y)
    return _W["floor"](_W["divide"](x, y))


def mod(x, y):
    if is_concrete(x, y):
        return np.mod(x, y)
    if not is_float(result_dtype(np.mod, x, y)):
        return _INTEGER["remainder"](x, y)
    return _W["subtract"](x, _W["multiply"](floor_divide(x, y), y))


remainder = mod


def where(condition, x=None, y=None):
    """np.where(c, x, y) (the three-argument form; the one-argument form has a data-dependent
    shape and cannot be traced)."""
    if x is None or y is None:
        raise unsupported("np.where with one argument (data-dependent shape)",
                          "use the three-argument form np.where(cond, x, y).")
    if is_concrete(condition, x, y):
        return np.where(condition, x, y)
    dtype = input_dtype(x, y)
    return select_p.bind(_to_bool(condition), *cast_all((x, y), dtype))


def clip(x, a_min=None, a_max=None, min=None, max=None):
    lo = a_min if a_min is not None else min
    hi = a_max if a_max is not None else max
    if lo is not None:
        x = _W["maximum"](x, lo)
    if hi is not None:
        x = _W["minimum"](x, hi)
    return x


def round(x, decimals=0):
    if decimals == 0:
        return _W["rint"](x)
    scale = 10.0 ** decimals
    return _W["rint"](x * scale) / scale


around = round


def isnan(x):
    return _W["not_equal"](x, x)


def isfinite(x):
    return _W["equal"](_W["subtract"](x, x), 0)  # inf - inf and nan - nan are nan


def isinf(x):
    return _W["equal"](_W["absolute"](x), np.inf)


def exp2(x):
    return _W["exp"](_W["multiply"](x, math.log(2.0)))


def log2(x):
    return _W["divide"](_W["log"](x), math.log(2.0))


def log10(x):
    return _W["divide"](_W["log"](x), math.log(10.0))
