"""How NumPy calls and Python operators on tracers reach tracejit.numpy.

The `__array_ufunc__` / `__array_function__` tables are generated from the package's
namespace: a function answers to the NumPy function of the same name. Nothing here lists
operations by hand except what NumPy itself pairs differently (a ufunc's `.reduce`, dunder
operators, array methods).
"""
from __future__ import annotations

import builtins
import sys
import types

import numpy as np

from ..errors import public_name
from ..tracing import Tracer, unsupported

# ufunc.reduce is the reduction of the same meaning
_REDUCE_OF = {np.add: "sum", np.multiply: "prod", np.maximum: "max", np.minimum: "min"}
_BINARY_OPS = {"add": "add", "sub": "subtract", "mul": "multiply", "truediv": "divide",
               "pow": "power", "matmul": "matmul", "and": "logical_and", "or": "logical_or",
               "xor": "logical_xor", "floordiv": "floor_divide", "mod": "mod"}
_COMPARE_OPS = {"lt": "less", "le": "less_equal", "gt": "greater", "ge": "greater_equal",
                "eq": "equal", "ne": "not_equal"}
_METHODS = ("sum", "mean", "max", "min", "prod", "var", "std", "argmax", "argmin", "reshape",
            "transpose", "squeeze", "astype", "clip", "ravel", "flatten", "swapaxes", "dot",
            "round")
# ufuncs of other libraries that mean a function of the namespace
_FOREIGN_UFUNCS = {("scipy.special", "expit"): "sigmoid"}


def dispatch_tables(namespace: dict) -> tuple[dict, dict]:
    """({np ufunc: function}, {np function: function}) for the namespace's NumPy names."""
    ufuncs, functions = {}, {}
    for name, fn in namespace.items():
        if isinstance(fn, types.SimpleNamespace):  # a submodule: tnp.linalg -> np.linalg
            sub = getattr(np, name, None)
            functions.update((getattr(sub, k), f) for k, f in vars(fn).items()
                             if callable(getattr(sub, k, None)))
            continue
        target = getattr(np, name, None)
        if callable(target):
            (ufuncs if isinstance(target, np.ufunc) else functions)[target] = fn
    return ufuncs, functions


def install(namespace: dict, by_name: tuple = ()) -> None:
    """Route NumPy's protocols and Python's operators on tracers to `namespace`; ufuncs of
    other libraries named in `by_name` (scipy.special.expit) go to the function of that
    name."""
    ufuncs, functions = dispatch_tables(namespace)

    def apply_ufunc(self, ufunc, method, *inputs, **kwargs):
        if kwargs.get("out") is not None:
            raise unsupported(f"np.{ufunc.__name__}(..., out=...)",
                              "return the result instead of writing into `out`.")
        if method == "at" and "ufunc_at" in namespace:
            return namespace["ufunc_at"](ufunc, *inputs)
        if method == "reduce" and ufunc in _REDUCE_OF:
            return namespace[_REDUCE_OF[ufunc]](inputs[0], axis=kwargs.get("axis", 0),
                                                keepdims=kwargs.get("keepdims", False))
        fn = ufuncs.get(ufunc)
        if fn is None and ufunc.__name__ in by_name and ufunc_module(ufunc) == "scipy.special":
            fn = namespace[ufunc.__name__]
        if fn is None:
            fn = namespace.get(_FOREIGN_UFUNCS.get((ufunc_module(ufunc), ufunc.__name__)))
        if fn is None or method != "__call__" or builtins.any(
                k not in ("dtype", "casting") for k in kwargs):
            module = ufunc_module(ufunc)
            name = {"numpy": "np.", "ufunc": "the ufunc "}.get(module, module + ".") + \
                ufunc.__name__
            raise unsupported(name + ("" if method == "__call__" else f".{method}"))
        out = fn(*inputs)
        return namespace["astype"](out, kwargs["dtype"]) if kwargs.get("dtype") else out

    def apply_function(self, func, types, args, kwargs):
        fn = functions.get(func)
        if fn is None:
            raise unsupported(numpy_name(func))
        return fn(*args, **kwargs)

    Tracer.__array_ufunc__ = apply_ufunc
    Tracer.__array_function__ = apply_function
    for op, name in _BINARY_OPS.items():
        fn = namespace[name]
        setattr(Tracer, f"__{op}__", lambda a, b, fn=fn: fn(a, b))
        setattr(Tracer, f"__r{op}__", lambda a, b, fn=fn: fn(b, a))
    for op, name in _COMPARE_OPS.items():
        setattr(Tracer, f"__{op}__", lambda a, b, fn=namespace[name]: fn(a, b))
    Tracer.__neg__ = lambda a: namespace["negative"](a)
    Tracer.__pos__ = lambda a: a
    Tracer.__abs__ = lambda a: namespace["absolute"](a)
    Tracer.__invert__ = lambda a: namespace["logical_not"](a)
    Tracer.__getitem__ = lambda a, idx: namespace["getitem"](a, idx)
    if "setitem" in namespace:
        Tracer.__setitem__ = lambda a, idx, v: namespace["setitem"](a, idx, v)
        Tracer.at = property(lambda a: namespace["index_at"](a))
    Tracer.T = property(lambda a: namespace["transpose"](a))
    for name in _METHODS:
        fn = namespace[name]
        setattr(Tracer, name, lambda a, *args, fn=fn, **kw: fn(a, *args, **kw))


def numpy_name(func) -> str:
    """np.cumsum, np.fft.fft, np.linalg.norm: the name the user wrote (public submodule kept)."""
    return public_name(func) if getattr(func, "__module__", None) else \
        f"np.{getattr(func, '__name__', func)}"


def ufunc_module(ufunc) -> str:
    """Where a ufunc comes from (ufuncs carry no __module__): 'numpy', 'scipy.special' (found
    among the loaded modules), else 'ufunc'."""
    if getattr(np, ufunc.__name__, None) is ufunc:
        return "numpy"
    for module in ("scipy.special",):
        if getattr(sys.modules.get(module), ufunc.__name__, None) is ufunc:
            return module
    return "ufunc"
