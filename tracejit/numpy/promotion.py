"""Operands, dtypes and axes: NumPy 2's promotion rules (Python scalars weak, NEP 50) and
NumPy's axis arguments."""
from __future__ import annotations

import builtins
import functools
from typing import Any

import numpy as np

from ..errors import ShapeError, user_error
from ..ir import Literal
from ..primitives.elementwise import convert_p
from ..primitives.layout import reshape_p
from ..tracing import Tracer

PY_SCALARS = (bool, int, float)
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


def result_dtype(ufunc, *xs) -> np.dtype:
    """NumPy's output dtype of `ufunc` on these operands (Python scalars weak)."""
    # keyed on the scalar's type: ("py", 1) == ("py", 1.0) == ("py", True) as dict keys,
    # so keying on a probe value let an int scalar reuse a float scalar's cached result
    keys = tuple(("py", type(x)) if isinstance(x, PY_SCALARS) else ("dt", np.dtype(x))
                 for x in map(dtype_of, xs))
    if any(k[0] == "dt" and k[1].kind not in "biuf" for k in keys):  # None, str, object
        names = ", ".join(f"'{type(x).__name__}'" for x in xs)
        raise TypeError(f"unsupported operand type(s) for np.{ufunc.__name__}: {names} "
                        "(tracejit computes on numbers and arrays of them)")
    return _result_dtype_cached(ufunc, keys)


def lift_captured(xs) -> list:
    """Operands with the arrays the traced function captured as tracers (implicit inputs
    read at every call, see captures.py), so a cast of one is traced, not computed once."""
    t = next((x._trace for x in xs if isinstance(x, Tracer)), None)
    return list(xs) if t is None else [t.lift_known(x) for x in xs]


def cast_all(xs, dtype: np.dtype) -> list:
    """Cast operands to `dtype`; Python scalars stay scalars (bind types them)."""
    return [x if isinstance(x, PY_SCALARS) else astype(x, dtype) for x in lift_captured(xs)]


def is_concrete(*xs) -> bool:
    return not builtins.any(isinstance(x, Tracer) for x in xs)


def asarray(x, dtype=None):
    if isinstance(x, Tracer):
        return x if dtype is None else astype(x, dtype)
    return np.asarray(x, dtype=dtype)


array = asarray


def astype(x, dtype):
    dtype = np.dtype(dtype)
    if isinstance(x, Tracer):
        return x if x.dtype == dtype else convert_p.bind(x, dtype=dtype)
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
