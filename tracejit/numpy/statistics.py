"""np.cov and np.corrcoef as composites: the centred rows times their transpose (a matmul
step), scaled; NumPy's dtypes (float64 unless `dtype`), ddof/bias and weights."""
from __future__ import annotations

import warnings

import numpy as np

from ..errors import ShapeError, user_error
from .contraction import matmul
from .elementwise import clip, multiply, sqrt
from .layout import concatenate, reshape, squeeze, transpose
from .numerical import average, diagonal
from .promotion import asarray, astype, dtype_of, is_concrete
from .reductions import sum as _sum

__all__ = ["corrcoef", "cov"]


def _rows(x, rowvar: bool, dtype):
    x = astype(asarray(x), dtype)
    if x.ndim > 2:
        raise user_error(ShapeError, f"cov: m has {x.ndim} dimensions.",
                         "pass a 1-D or 2-D array (variables in rows, or columns with "
                         "rowvar=False).")
    if x.ndim < 2:
        return reshape(x, (1, x.size))
    return x if rowvar else transpose(x)


def cov(m, y=None, rowvar=True, bias=False, ddof=None, fweights=None, aweights=None, *,
        dtype=None):
    """np.cov: the covariance of the rows of m (and y), optionally weighted."""
    if is_concrete(m, y, fweights, aweights):
        return np.cov(m, y, rowvar, bias, ddof, fweights, aweights, dtype=dtype)
    if dtype is None:
        dtype = np.result_type(dtype_of(m), np.float64) if y is None else \
            np.result_type(dtype_of(m), dtype_of(y), np.float64)
    X = _rows(m, rowvar or np.ndim(m) == 1, dtype)
    if y is not None:
        X = concatenate([X, _rows(y, rowvar or np.ndim(y) == 1, dtype)], axis=0)
    if ddof is None:
        ddof = 0 if bias else 1
    w = None
    for weights in (fweights, aweights):
        if weights is not None:
            weights = astype(asarray(weights), dtype)
            w = weights if w is None else multiply(w, weights)
    avg, w_sum = average(X, axis=1, weights=w, returned=True)
    w_sum = w_sum[0]
    if w is None:
        fact = X.shape[1] - ddof
        if fact <= 0:
            warnings.warn("Degrees of freedom <= 0 for slice", RuntimeWarning, stacklevel=2)
            fact = 0.0
    elif ddof == 0:
        fact = w_sum
    elif aweights is None:
        fact = w_sum - ddof
    else:
        fact = w_sum - ddof * _sum(w * astype(asarray(aweights), dtype)) / w_sum
    X = X - reshape(avg, (X.shape[0], 1))
    c = matmul(X, transpose(X if w is None else X * w)) / fact
    return squeeze(c) if 1 in c.shape else c


def corrcoef(x, y=None, rowvar=True, *, dtype=None):
    """np.corrcoef: cov scaled by the standard deviations, clipped to [-1, 1]."""
    if is_concrete(x, y):
        return np.corrcoef(x, y, rowvar, dtype=dtype)
    c = cov(x, y, rowvar, dtype=dtype)
    if c.ndim == 0:
        return c / c
    s = sqrt(diagonal(c))
    c = c / reshape(s, (-1, 1)) / reshape(s, (1, -1))
    return clip(c, -1, 1)
