"""Operands, dtypes and axes: NumPy 2's promotion rules (Python scalars weak, NEP 50) and
NumPy's axis arguments.

Weak types (JAX's): a weakly typed tracer (tracing.is_weak: a loop carry started from a
Python scalar, and what is computed from such values alone) promotes here as a Python scalar
of its kind would: a weak float carry + a float32 array is float32, + a Python float is
float64 (NumPy's default, as for two Python floats). This module is the one place where
operand dtypes are decided; what it casts stays weak where the typed operands alone would
not have given the result's dtype (int32 + weak float -> weak float64, as JAX)."""
from __future__ import annotations

import builtins
import functools
from typing import Any

import numpy as np

from ..errors import ShapeError, user_error
from ..ir import Literal
from ..primitives.elementwise import convert_p
from ..primitives.layout import reshape_p
from ..tracing import Tracer, weakly

PY_SCALARS = (bool, int, float)
_WEAK_KIND = {"b": bool, "i": int, "u": int, "f": float}  # a weak tracer promotes as these
# what tracejit.numpy exports from here (the rest are helpers of this package)
__all__ = ["array", "asarray", "astype"]


def dtype_of(x: Any) -> Any:
    """An operand's dtype, or the Python scalar itself (weak, NEP 50)."""
    if isinstance(x, (Tracer, Literal, np.ndarray, np.generic)):
        return x.dtype
    if isinstance(x, PY_SCALARS):
        return x
    return np.asarray(x).dtype


@functools.lru_cache(maxsize=4096)
def _result_dtype_cached(ufunc, keys: tuple) -> np.dtype:
    probes = [k[1](1) if k[0] == "py" else np.ones((), k[1]) for k in keys]
    with np.errstate(all="ignore"):
        out = ufunc(*probes)
    return (out[0] if isinstance(out, tuple) else out).dtype


def _key(x: Any) -> tuple:
    """What promotion sees of an operand: ("py", its type) for a Python scalar or a weak
    tracer (weak, NEP 50), ("dt", its dtype) for a typed one."""
    if isinstance(x, Tracer):
        kind = x.dtype.kind
        return ("py", _WEAK_KIND[kind]) if x.weak and kind in _WEAK_KIND else ("dt", x.dtype)
    d = dtype_of(x)
    return ("py", type(d)) if isinstance(d, PY_SCALARS) else ("dt", np.dtype(d))


def _keys(xs, what: str) -> tuple:
    # keyed on the scalar's type: ("py", 1) == ("py", 1.0) == ("py", True) as dict keys,
    # so keying on a probe value let an int scalar reuse a float scalar's cached result
    keys = tuple(map(_key, xs))
    if any(k[0] == "dt" and k[1].kind not in "biuf" for k in keys):  # None, str, object
        names = ", ".join(f"'{type(x).__name__}'" for x in xs)
        raise TypeError(f"unsupported operand type(s) for {what}: {names} "
                        "(tracejit computes on numbers and arrays of them)")
    return keys


def result_dtype(ufunc, *xs) -> np.dtype:
    """NumPy's output dtype of `ufunc` on these operands (Python scalars and weak tracers
    weak)."""
    return _result_dtype_cached(ufunc, _keys(xs, f"np.{ufunc.__name__}"))


def common_dtype(*xs) -> np.dtype:
    """np.result_type of any number of operands (Python scalars and weak tracers weak)."""
    return np.result_type(*[k[1](0) if k[0] == "py" else k[1] for k in _keys(xs, "arrays")])


def join_dtypes(*types: tuple[np.dtype, bool]) -> np.dtype:
    """The promoted dtype of values of these (dtype, weakly typed) types."""
    return np.result_type(*[_WEAK_KIND[d.kind](0) if weak and d.kind in _WEAK_KIND else d
                            for d, weak in types])


def promoted_weak(xs, dtype: np.dtype) -> bool:
    """Whether operands promoted to `dtype` are weak (JAX's rule): a weak tracer is among
    them and the typed operands alone do not give `dtype` (weak float + int32 -> weak)."""
    if not any(isinstance(x, Tracer) and x.weak for x in xs):
        return False
    typed = [k[1] for k in map(_key, xs) if k[0] == "dt"]
    return not typed or np.result_type(*typed) != dtype


def lift_captured(xs) -> list:
    """Operands with the arrays the traced function captured as tracers (implicit inputs
    read at every call, see captures.py), so a cast of one is traced, not computed once."""
    t = next((x._trace for x in xs if isinstance(x, Tracer)), None)
    return list(xs) if t is None else [t.lift_known(x) for x in xs]


def cast_all(xs, dtype: np.dtype) -> list:
    """Cast operands to `dtype`; Python scalars stay scalars (bind types them). The casts
    are weakly typed when the promotion is (promoted_weak), so the result is."""
    out = [x if isinstance(x, PY_SCALARS) else astype(x, dtype) for x in lift_captured(xs)]
    return [weakly(x) for x in out] if promoted_weak(xs, dtype) else out  # astype: typed


def is_concrete(*xs) -> bool:
    return not builtins.any(isinstance(x, Tracer) for x in xs)


def asarray(x, dtype=None):
    if isinstance(x, Tracer):
        return x if dtype is None else astype(x, dtype)
    return np.asarray(x, dtype=dtype)


array = asarray


def astype(x, dtype):
    dtype = np.dtype(dtype)
    if isinstance(x, Tracer):  # a typed value, as JAX's astype of a weakly typed one
        return weakly(x, False) if x.dtype == dtype else convert_p.bind(x, dtype=dtype)
    if isinstance(x, Literal):
        return x if x.dtype == dtype else Literal.of(x.val.astype(dtype))
    return np.asarray(x).astype(dtype)


def axes_of(axis, ndim: int) -> tuple[int, ...]:
    if axis is None:
        return tuple(range(ndim))
    axes = (axis,) if isinstance(axis, (int, np.integer)) else tuple(axis)
    out = []
    for a in axes:
        if not -ndim <= a < builtins.max(ndim, 1):
            raise user_error(ShapeError, f"axis {a} is out of bounds for an array of "
                             f"dimension {ndim}.", f"use an axis in [-{ndim}, {ndim}).")
        out.append(int(a) % builtins.max(ndim, 1))
    if len(set(out)) != len(out):
        raise user_error(ShapeError, f"repeated axis in {axis}.", "name each axis once.")
    return tuple(sorted(out))


def drop_axes(x, axes):
    if not axes:
        return x
    shape = tuple(d for i, d in enumerate(x.shape) if i not in axes)
    return reshape_p.bind(x, shape=shape)


def input_dtype(*xs) -> np.dtype:
    """Dtype operands are compared in (the promotion of their dtypes)."""
    return result_dtype(np.add, *xs) if not builtins.all(
        dtype_of(x) == np.dtype(bool) for x in xs) else np.dtype(bool)
