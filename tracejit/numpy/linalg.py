"""np.linalg: solve inv det slogdet cholesky (LAPACK steps, primitives/linalg.py) and norm
(einsum.py), on stacked matrices with NumPy's dtypes (float32 stays float32, integers become
float64) and NumPy's errors (LinAlgError for a singular or non-positive-definite matrix, raised
when the step runs)."""
from __future__ import annotations

from types import SimpleNamespace

import numpy as np

from ..errors import ShapeError, user_error
from ..primitives.linalg import cholesky_p, det_p, inv_p, logdet_p, sign_p, solve_p
from .einsum import norm
from .layout import reshape, transpose
from .promotion import asarray, astype, is_concrete

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


linalg = SimpleNamespace(norm=norm, solve=solve, inv=inv, det=det, slogdet=slogdet,
                         cholesky=cholesky)
