"""scipy.special's ufuncs that losses use, traced: `scipy.special.expit(x)` on a traced value
reaches these through `__array_ufunc__` (the protocols route a ufunc of scipy.special by its
name to the function here), and `tnp.expit` etc. name them directly.

    expit logit erf erfc log_ndtr xlogy xlog1py      (ufuncs; scipy need not be imported)

scipy.special.logsumexp / softmax / log_softmax are Python functions, not ufuncs, and use
the array API (not NumPy's protocols) on their input: call tnp.logsumexp / tnp.softmax /
tnp.log_softmax inside traced code.
"""
from __future__ import annotations

import math

import numpy as np

from ..primitives.elementwise import erf_p, erfc_p, logistic_p
from .elementwise import log, log1p, multiply, subtract, where
from .promotion import asarray, astype, is_concrete

__all__ = ["erf", "erfc", "expit", "log_ndtr", "logit", "xlog1py", "xlogy"]
SCIPY_UFUNCS = tuple(__all__)  # routed by name from scipy.special's ufuncs


def _scipy(name):
    import scipy.special
    return getattr(scipy.special, name)


def _float(x):
    x = asarray(x)
    return x if x.dtype.kind == "f" else astype(x, np.float64)


def expit(x):
    if is_concrete(x):
        return _scipy("expit")(x)
    return logistic_p.bind(_float(x))


def logit(p):
    if is_concrete(p):
        return _scipy("logit")(p)
    p = _float(p)
    return log(p / subtract(1, p))


def erf(x):
    if is_concrete(x):
        return _scipy("erf")(x)
    return erf_p.bind(_float(x))


def erfc(x):
    if is_concrete(x):
        return _scipy("erfc")(x)
    return erfc_p.bind(_float(x))


def log_ndtr(x):
    """log of the standard normal CDF: log(erfc(-x/sqrt 2) / 2) (accurate to x ~ -25 in
    float64; an asymptotic series below is a TODO)."""
    if is_concrete(x):
        return _scipy("log_ndtr")(x)
    x = _float(x)
    return subtract(log(erfc(multiply(x, -1 / math.sqrt(2)))), math.log(2))


def xlogy(x, y):
    """x * log(y), 0 where x == 0 (even for y == 0)."""
    if is_concrete(x, y):
        return _scipy("xlogy")(x, y)
    x, y = _float(x), _float(y)
    zero = x == 0
    return where(zero, np.zeros((), x.dtype), multiply(x, log(where(zero, 1, y))))


def xlog1py(x, y):
    if is_concrete(x, y):
        return _scipy("xlog1py")(x, y)
    x, y = _float(x), _float(y)
    zero = x == 0
    return where(zero, np.zeros((), x.dtype), multiply(x, log1p(where(zero, 0, y))))
