"""scipy.special's ufuncs that losses use, traced: `scipy.special.expit(x)` on a traced value
reaches these through `__array_ufunc__` (the protocols route a ufunc of scipy.special by its
name to the function here), and `tnp.expit` etc. name them directly.

    expit logit erf erfc log_ndtr xlogy xlog1py      (ufuncs; scipy need not be imported)

scipy.special.logsumexp / softmax / log_softmax are Python functions, not ufuncs: they
convert their input with np.asarray (the array API), which a tracer cannot answer. tracejit
wraps them in the scipy.special module (`patch_scipy_special`, when scipy.special is imported,
before or after tracejit): the wrapper calls tracejit.numpy's function (scipy's signature and
defaults) when an argument is traced, scipy's own otherwise. A name bound by `from
scipy.special import logsumexp` before `import tracejit` keeps scipy's function: use
`tnp.logsumexp` or `scipy.special.logsumexp` there.
"""
from __future__ import annotations

import functools
import importlib.abc
import math
import sys

import numpy as np

from ..primitives.elementwise import erf_p, erfc_p, logistic_p
from ..tracing import Tracer
from . import ml
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


# ----- scipy.special's Python functions on traced values -----
def _softmax(x, axis=None):
    return ml.softmax(x, axis=axis)


def _log_softmax(x, axis=None):
    return ml.log_softmax(x, axis=axis)


# scipy's name -> tracejit's function with scipy's signature and defaults (axis=None)
SCIPY_FUNCTIONS = {"logsumexp": ml.logsumexp, "softmax": _softmax, "log_softmax": _log_softmax}


def _traced(args, kwargs) -> bool:
    return any(isinstance(a, Tracer) for a in (*args, *kwargs.values()))


def patch_scipy_special(module) -> None:
    """Wrap SCIPY_FUNCTIONS in `module` (scipy.special): traced arguments go to tracejit."""
    for name, ours in SCIPY_FUNCTIONS.items():
        theirs = getattr(module, name, None)
        if theirs is None or getattr(theirs, "__tracejit__", False):
            continue

        @functools.wraps(theirs)
        def wrapper(*args, _ours=ours, _theirs=theirs, **kwargs):
            return (_ours if _traced(args, kwargs) else _theirs)(*args, **kwargs)
        wrapper.__tracejit__ = True
        setattr(module, name, wrapper)


class _PatchOnImport(importlib.abc.MetaPathFinder):
    """Patches scipy.special right after it is first imported (importing it ourselves would
    cost a third of a second on every `import tracejit`)."""

    def find_spec(self, fullname, path, target=None):
        if fullname != "scipy.special":
            return None
        for finder in sys.meta_path:
            if finder is self or not hasattr(finder, "find_spec"):
                continue
            spec = finder.find_spec(fullname, path, target)
            if spec is not None and spec.loader is not None:
                run = spec.loader.exec_module

                def exec_module(module, _run=run):
                    _run(module)
                    patch_scipy_special(module)
                spec.loader.exec_module = exec_module
                return spec
        return None


def install_scipy_hook() -> None:
    if "scipy.special" in sys.modules:
        patch_scipy_special(sys.modules["scipy.special"])
    elif not any(isinstance(f, _PatchOnImport) for f in sys.meta_path):
        sys.meta_path.insert(0, _PatchOnImport())
