"""Functional updates of traced arrays: `x.at[idx].set(v)` (and add, multiply, min, max,
get: JAX's names and semantics), `x[idx] = v` and `x[idx] += v`, `np.add.at(x, idx, v)`.

The traced value is never modified in place: an update makes a new value (as if `x` were
copied first) and `x[idx] = v` rebinds the tracer `x` to it; the caller's array is never
touched. Which indices are valid follows NumPy (basic and advanced indexing, negative
indices, IndexError out of bounds).

How: the flat positions `x[idx]` would read, an index array of the indexed shape (a constant
when the index is constant), then one `scatter` into the flattened `x`. Repeated indices:
`add`, `multiply`, `min`, `max` combine every update, in index order (np.add.at's
semantics); `set` keeps the last write, as NumPy does for `x[idx] = v` (so `x[idx] += v`
adds once per distinct index, as in NumPy). The gradient follows the same rule.
A traced boolean mask with a scalar value, `x[mask] = v`, is np.where(mask, v, x).
"""
from __future__ import annotations

import numpy as np

from ..errors import OutOfBoundsError, UnsupportedError, user_error
from ..ir import Literal
from ..primitives.indexing import scatter_p
from ..tracing import Tracer, unsupported
from .elementwise import where
from .indexing import getitem
from .layout import broadcast_to, reshape
from .promotion import asarray, astype

__all__ = ["index_at", "setitem", "ufunc_at"]

_UFUNC_MODES = {np.add: "add", np.multiply: "mul", np.minimum: "min", np.maximum: "max"}


def _has_tracer(index) -> bool:
    items = index if isinstance(index, tuple) else (index,)
    return any(isinstance(i, Tracer) for i in items)


def _positions(x, index):
    """Flat positions of the elements x[index] reads (int64, the indexed shape)."""
    flat = np.arange(x.size, dtype=np.int64).reshape(x.shape)
    if not _has_tracer(index):
        try:
            return flat[index]
        except IndexError as e:
            raise user_error(OutOfBoundsError, f"{e}.", "use indices inside the array's "
                             "shape (negative ones count from the end).") from None
    return getitem(Tracer(x._trace, Literal.of(flat)), index)


def _traced_mask(x, index):
    """The mask of `x[mask] = v` when the index is one traced boolean array."""
    if isinstance(index, Tracer) and index.dtype == np.dtype(bool):
        return index
    return None


def update(x, index, v, mode: str):
    """`x` with `v` combined at `x[index]` by `mode` (set, add, mul, min, max)."""
    x = asarray(x)
    mask = _traced_mask(x, index)
    if mask is not None:
        if np.ndim(v) != 0 or mode != "set":
            raise user_error(UnsupportedError, "x[mask] = v with a traced boolean mask needs "
                             "a scalar v (other shapes depend on how many are true).",
                             "write np.where(mask, v, x) with v broadcastable to x.")
        m = reshape(mask, mask.shape + (1,) * (x.ndim - mask.ndim))
        return where(m, astype(asarray(v), x.dtype) if isinstance(v, Tracer) else v, x)
    pos = _positions(x, index)
    v = astype(asarray(v) if isinstance(v, Tracer) else np.asarray(v), x.dtype)
    if np.shape(v) != np.shape(pos):
        v = broadcast_to(_squeeze_lead(v, np.ndim(pos)), np.shape(pos))
    xf = reshape(x, (x.size,))
    out = scatter_p.bind(xf, reshape(pos, (pos.size,)), reshape(v, (pos.size,)), axis=0,
                         mode=mode)
    return reshape(out, x.shape)


def _squeeze_lead(v, ndim: int):
    """NumPy lets a value carry extra leading size-1 axes (x[0] = v[None])."""
    while np.ndim(v) > ndim and np.shape(v)[0] == 1:
        v = reshape(v, np.shape(v)[1:])
    return v


def setitem(x, index, v) -> None:
    """`x[index] = v` on a tracer: `x` is rebound to the updated value (NumPy's result)."""
    new = update(x, index, v, "set")
    x._trace, x.atom = new._trace, new.atom


def ufunc_at(ufunc, x, index, v=None) -> None:
    """np.add.at(x, index, v) (also multiply, minimum, maximum) on a traced `x`."""
    mode = _UFUNC_MODES.get(ufunc)
    if mode is None or v is None:
        raise unsupported(f"np.{ufunc.__name__}.at", "use np.add.at, np.multiply.at, "
                          "np.minimum.at or np.maximum.at (or x.at[idx].add(v)).")
    if not isinstance(x, Tracer):
        raise unsupported(f"np.{ufunc.__name__}.at on a NumPy array with traced values",
                          "update a traced array: x.at[idx].add(v) returns the result.")
    setattr_new = update(x, index, v, mode)
    x._trace, x.atom = setattr_new._trace, setattr_new.atom


class _IndexedUpdate:
    """`x.at[index]`: its methods return the updated array (JAX's API)."""

    def __init__(self, x, index) -> None:
        self.x, self.index = x, index

    def get(self):
        return getitem(self.x, self.index)

    def set(self, v):
        return update(self.x, self.index, v, "set")

    def add(self, v):
        return update(self.x, self.index, v, "add")

    def multiply(self, v):
        return update(self.x, self.index, v, "mul")

    mul = multiply

    def min(self, v):
        return update(self.x, self.index, v, "min")

    def max(self, v):
        return update(self.x, self.index, v, "max")


class _At:
    def __init__(self, x) -> None:
        self.x = x

    def __getitem__(self, index) -> _IndexedUpdate:
        return _IndexedUpdate(self.x, index)


def index_at(x) -> _At:
    """`x.at`: x.at[idx].set(v), .add(v), .multiply(v), .min(v), .max(v), .get()."""
    return _At(x)
