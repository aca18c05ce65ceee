"""tracejit.numpy: NumPy's functions, recorded as primitives when given traced values.

Each function promotes dtypes the way NumPy 2 does (Python scalars are weak), then binds
primitives; on concrete arrays it is NumPy's own function. The namespace is assembled from
the modules below, and the wrappers of primitives are generated from the registry:

    promotion    dtypes, operands and axes (NumPy 2 promotion, NEP 50 weak scalars)
    elementwise  one generated wrapper per `numpy=` name of a primitive, and composites
    reductions   sum prod max min mean var std argmax argmin
    layout       reshape transpose squeeze broadcast_to concatenate stack ...
    indexing     x[...]: basic and integer-array indexing; take, take_along_axis
    updates      x.at[idx].set/add/multiply/min/max, x[idx] = v, np.add.at
    contraction  matmul dot outer inner
    ml           sigmoid relu softplus logsumexp softmax log_softmax
    numerical    flip roll tile pad cumsum sort diff diagonal nansum average logaddexp ...
    special      scipy.special's expit logit erf erfc log_ndtr xlogy xlog1py
    einsum       einsum tensordot
    statistics   cov corrcoef
    selection    choose
    linalg       linalg.solve inv det slogdet cholesky (LAPACK steps) and linalg.norm
    protocols    __array_ufunc__ / __array_function__ tables and operators on tracers

A plain NumPy call on a tracer reaches the function of the same name here.
"""
from __future__ import annotations

from ..primitives import BINARY, REDUCE, UNARY, on_register
from . import (
    contraction,
    einsum,
    elementwise,
    indexing,
    layout,
    linalg,
    ml,
    numerical,
    promotion,
    protocols,
    reductions,
    selection,
    special,
    statistics,
    updates,
)

MODULES = (elementwise, reductions, layout, indexing, updates, contraction, ml, numerical,
           special, einsum, linalg, statistics, selection)


def _public(module) -> dict:
    """The functions a module defines (or lists in __all__), by name."""
    names = getattr(module, "__all__", None)
    if names is not None:
        return {n: getattr(module, n) for n in names}
    return {n: v for n, v in vars(module).items() if not n.startswith("_") and callable(v)
            and getattr(v, "__module__", None) == module.__name__ and n not in _HELPERS}


_HELPERS = {"wrap"}  # the modules' wrapper factories, not NumPy functions


NAMESPACE: dict = {}
for _m in (promotion, *MODULES):
    NAMESPACE.update(_public(_m))
globals().update(NAMESPACE)
protocols.install(NAMESPACE, by_name=special.SCIPY_UFUNCS)
special.install_scipy_hook()
__all__ = sorted(NAMESPACE)  # noqa: PLE0605  (generated)
_WRAP = {UNARY: elementwise.wrap, BINARY: elementwise.wrap, REDUCE: reductions.wrap}


def _add_primitive(prim) -> None:
    """A primitive declared after import (a user's, or a test's) gets its wrappers too."""
    wrap = _WRAP.get(prim.kind)
    for name in prim.numpy if wrap else ():
        NAMESPACE[name] = globals()[name] = wrap(prim, name)
        if name not in __all__:
            __all__.append(name)
    if prim.numpy:
        protocols.install(NAMESPACE, by_name=special.SCIPY_UFUNCS)


on_register(_add_primitive)
