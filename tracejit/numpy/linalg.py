"""np.linalg: solve inv det slogdet cholesky (LAPACK steps, primitives/linalg.py) and norm
(vectors and matrices; the 2-norm and nuclear norm from singular values), on stacked matrices
with NumPy's dtypes (float32 stays float32, integers become float64) and NumPy's errors
(LinAlgError for a singular or non-positive-definite matrix, raised when the step runs)."""
from __future__ import annotations

import builtins
from types import SimpleNamespace

import numpy as np

from ..errors import ShapeError, user_error
from ..primitives.linalg import cholesky_p, det_p, inv_p, logdet_p, sign_p, solve_p, svdvals_p
from ..tracing import unsupported
from .elementwise import absolute, power, sqrt
from .layout import reshape, transpose
from .promotion import asarray, astype, axes_of, is_concrete
from .reductions import max as _max
from .reductions import min as _min
from .reductions import sum as _sum

__all__ = ["linalg"]


def _float(x):
    x = asarray(x)
    return x if x.dtype.kind == "f" else astype(x, np.float64)


def solve(a, b):
    """np.linalg.solve: x with a @ x == b; b is a vector (n,) or matrices (..., n, k)."""
    if is_concrete(a, b):
        return np.linalg.solve(a, b)
    a, b = _float(a), _float(b)
    dtype = np.promote_types(a.dtype, b.dtype)
    a, b = astype(a, dtype), astype(b, dtype)
    if a.ndim < 2 or b.ndim == 0:
        raise user_error(ShapeError, f"linalg.solve: a must be (..., n, n) and b (n,) or "
                         f"(..., n, k); got {a.shape} and {b.shape}.",
                         "pass a square matrix and a vector or matrix of right-hand sides.")
    if b.ndim == 1:
        out = solve_p.bind(a, reshape(b, (b.shape[0], 1)))
        return reshape(out, out.shape[:-1])
    return solve_p.bind(a, b)


def inv(a):
    if is_concrete(a):
        return np.linalg.inv(a)
    return inv_p.bind(_float(a))


def det(a):
    if is_concrete(a):
        return np.linalg.det(a)
    return det_p.bind(_float(a))


def slogdet(a):
    """(sign, logabsdet) as NumPy returns them; the gradient flows through logabsdet."""
    if is_concrete(a):
        return np.linalg.slogdet(a)
    a = _float(a)
    return sign_p.bind(a), logdet_p.bind(a)


def cholesky(a, upper=False):
    """Lower L with a == L @ L.T, reading a's lower triangle; upper=True: upper U with
    a == U.T @ U, reading a's upper triangle (as NumPy)."""
    if is_concrete(a):
        return np.linalg.cholesky(a, upper=upper)
    a = _float(a)
    if not upper:
        return cholesky_p.bind(a)
    perm = tuple(range(a.ndim - 2)) + (a.ndim - 1, a.ndim - 2)
    return transpose(cholesky_p.bind(transpose(a, perm)), perm)


def norm(x, ord=None, axis=None, keepdims=False):
    """np.linalg.norm: vectors (ord None/2, 1, inf, -inf, 0, p) and matrices ('fro', 1, -1,
    inf, -inf; 2, -2 and 'nuc' from the singular values, a LAPACK step)."""
    if is_concrete(x):
        return np.linalg.norm(x, ord, axis, keepdims)
    x = asarray(x)
    if x.dtype.kind != "f":
        x = astype(x, np.float64)
    if axis is None and (ord is None or x.ndim == 1):
        axis = tuple(range(x.ndim))
        if ord is None or x.ndim == 1:
            flat = reshape(x, (x.size,))
            out = _vector_norm(flat, ord, 0)
            return reshape(out, (1,) * x.ndim) if keepdims else out
    axes = axes_of(axis if axis is not None else (0, 1), x.ndim)
    if len(axes) == 1:
        return _vector_norm(x, ord, axes[0], keepdims)
    r, c = (axis if axis is not None else (0, 1))
    r, c = r % x.ndim, c % x.ndim
    if ord in (None, "fro"):
        return sqrt(_sum(x * x, axis=(r, c), keepdims=keepdims))
    if ord in (1, -1, np.inf, -np.inf):
        inner, outer = (r, c) if ord in (1, -1) else (c, r)
        s = _sum(absolute(x), axis=inner, keepdims=True)
        out = (_max if ord in (1, np.inf) else _min)(s, axis=outer, keepdims=True)
        return out if keepdims else reshape(out, tuple(
            d for k, d in enumerate(out.shape) if k not in (r, c)))
    if ord in (2, -2, "nuc"):
        s = svdvals_p.bind(transpose(x, tuple(d for d in range(x.ndim) if d not in (r, c))
                                     + (r, c)))
        out = (_max if ord == 2 else _min if ord == -2 else _sum)(s, axis=-1)
        return reshape(out, tuple(1 if k in (r, c) else d for k, d in enumerate(x.shape))) \
            if keepdims else out
    raise unsupported(f"np.linalg.norm(ord={ord!r}) of a matrix",
                      "use ord='fro', 'nuc', 1, -1, 2, -2, inf or -inf.")


def _vector_norm(x, ord, axis, keepdims=False):
    if ord is None or ord == 2:
        return sqrt(_sum(x * x, axis=axis, keepdims=keepdims))
    a = absolute(x)
    if ord == np.inf:
        return _max(a, axis=axis, keepdims=keepdims)
    if ord == -np.inf:
        return _min(a, axis=axis, keepdims=keepdims)
    if ord == 0:
        return _sum(astype(x != 0, x.dtype), axis=axis, keepdims=keepdims)
    if ord == 1:
        return _sum(a, axis=axis, keepdims=keepdims)
    p = builtins.float(ord)
    return power(_sum(power(a, p), axis=axis, keepdims=keepdims), 1 / p)


linalg = SimpleNamespace(norm=norm, solve=solve, inv=inv, det=det, slogdet=slogdet,
                         cholesky=cholesky)
