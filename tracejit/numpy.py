"""tracejit.numpy: NumPy's functions, recorded as primitives when given traced values.

Each function promotes dtypes the way NumPy 2 does (Python scalars are weak), then binds
primitives. Called on concrete arrays, the same functions run eagerly through the primitives'
NumPy implementations. Composites (mean, var, softmax, logsumexp, ...) are written here with
primitives, so they are differentiated and fused like anything else.
"""
from __future__ import annotations

import builtins
import functools
import math
from typing import Any

import numpy as np

from .errors import ShapeError, user_error
from .ir import Literal
from .primitives import REGISTRY, is_float
from .primitives.contraction import matmul_p
from .primitives.elementwise import convert_p, select_p
from .primitives.layout import (
    broadcast_p,
    concatenate_p,
    reshape_p,
    rev_p,
    slice_p,
    transpose_p,
)
from .primitives.reductions import argmax_p, argmin_p
from .tracing import Tracer, _install_operators, unsupported

P = REGISTRY
_PY_SCALARS = (bool, int, float)


# ----- operands and dtypes -----
def _dtype(x: Any) -> Any:
    """An operand's dtype, or the Python scalar itself (weak, NEP 50)."""
    if isinstance(x, (Tracer, Literal, np.ndarray, np.generic)):
        return x.dtype
    if isinstance(x, _PY_SCALARS):
        return x
    return np.asarray(x).dtype


@functools.lru_cache(maxsize=4096)
def _result_dtype_cached(ufunc, keys: tuple) -> np.dtype:
    probes = [k[1] if k[0] == "py" else np.ones((), k[1]) for k in keys]
    with np.errstate(all="ignore"):
        out = ufunc(*probes)
    return (out[0] if isinstance(out, tuple) else out).dtype


def result_dtype(ufunc, *xs) -> np.dtype:
    """NumPy's output dtype of `ufunc` on these operands (Python scalars weak)."""
    keys = tuple(("py", type(x)(1)) if isinstance(x, _PY_SCALARS) else ("dt", np.dtype(x))
                 for x in map(_dtype, xs))
    return _result_dtype_cached(ufunc, keys)


def _common(xs, dtype: np.dtype) -> list:
    """Cast operands to `dtype`; Python scalars stay scalars (bind types them)."""
    return [x if isinstance(x, _PY_SCALARS) else astype(x, dtype) for x in xs]


def _is_concrete(*xs) -> bool:
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


# ----- elementwise -----
def _unary(prim_name: str, ufunc, float_only: bool = True):
    prim = P[prim_name]

    def fn(x):
        dtype = result_dtype(ufunc, x)
        if _is_concrete(x):
            return ufunc(x)
        return prim.bind(astype(x, dtype) if float_only else x)
    fn.__name__ = ufunc.__name__
    fn.__doc__ = f"Traced np.{ufunc.__name__}: primitive `{prim_name}`."
    return fn


def _binary(prim_name: str, ufunc, compute_in_result: bool = True):
    prim = P[prim_name]

    def fn(x, y):
        if _is_concrete(x, y):
            return ufunc(x, y)
        dtype = result_dtype(ufunc, x, y) if compute_in_result else _input_dtype(x, y)
        return prim.bind(*_common((x, y), dtype))
    fn.__name__ = ufunc.__name__
    fn.__doc__ = f"Traced np.{ufunc.__name__}: primitive `{prim_name}`."
    return fn


def _input_dtype(*xs) -> np.dtype:
    """Dtype operands are compared in (the promotion of their dtypes)."""
    return result_dtype(np.add, *xs) if not builtins.all(
        _dtype(x) == np.dtype(bool) for x in xs) else np.dtype(bool)


negative = _unary("neg", np.negative, float_only=False)
exp = _unary("exp", np.exp)
expm1 = _unary("expm1", np.expm1)
log = _unary("log", np.log)
log1p = _unary("log1p", np.log1p)
sin = _unary("sin", np.sin)
cos = _unary("cos", np.cos)
tan = _unary("tan", np.tan)
tanh = _unary("tanh", np.tanh)
sinh = _unary("sinh", np.sinh)
cosh = _unary("cosh", np.cosh)
arctan = _unary("arctan", np.arctan)
arcsin = _unary("arcsin", np.arcsin)
arccos = _unary("arccos", np.arccos)
sqrt = _unary("sqrt", np.sqrt)
abs = absolute = _unary("abs", np.abs, float_only=False)
sign = _unary("sign", np.sign, float_only=False)
floor = _unary("floor", np.floor)
ceil = _unary("ceil", np.ceil)
rint = _unary("round", np.rint)

add = _binary("add", np.add)
subtract = _binary("sub", np.subtract)
multiply = _binary("mul", np.multiply)
divide = true_divide = _binary("div", np.divide)
maximum = _binary("max", np.maximum)
minimum = _binary("min", np.minimum)
less = _binary("lt", np.less, False)
less_equal = _binary("le", np.less_equal, False)
greater = _binary("gt", np.greater, False)
greater_equal = _binary("ge", np.greater_equal, False)
equal = _binary("eq", np.equal, False)
not_equal = _binary("ne", np.not_equal, False)


def _logical(prim_name, ufunc):
    def fn(x, y):
        if _is_concrete(x, y):
            return ufunc(x, y)
        return P[prim_name].bind(*_common((_to_bool(x), _to_bool(y)), np.dtype(bool)))
    fn.__name__ = ufunc.__name__
    return fn


def _to_bool(x):
    if isinstance(x, _PY_SCALARS):
        return builtins.bool(x)
    return x if _dtype(x) == np.dtype(bool) else not_equal(x, 0)


logical_and = _logical("and", np.logical_and)
logical_or = _logical("or", np.logical_or)


def logical_xor(x, y):
    return not_equal(_to_bool(x), _to_bool(y))


def logical_not(x):
    if _is_concrete(x):
        return np.logical_not(x)
    return P["logical_not"].bind(_to_bool(x))


_power_raw = _binary("pow", np.power)


def power(x, y):
    """x ** y. Small constant exponents become multiplications (exact, and fast in loops)."""
    if isinstance(y, _PY_SCALARS) and not isinstance(y, builtins.bool) and isinstance(x, Tracer):
        dtype = result_dtype(np.power, x, y)
        x = astype(x, dtype)
        if y == 1:
            return x
        if y == 2:
            return x * x
        if y == 3:
            return x * x * x
        if y == 0.5 and is_float(dtype):
            return sqrt(x)
        if y == -1 and is_float(dtype):
            return 1 / x
    return _power_raw(x, y)


def square(x):
    return multiply(x, x)


def reciprocal(x):
    return divide(1, x) if _dtype(x) != np.dtype(bool) and is_float(np.dtype(_dtype(x))) \
        else np.reciprocal(x)


def positive(x):
    return x


def floor_divide(x, y):
    if _is_concrete(x, y):
        return np.floor_divide(x, y)
    if not is_float(result_dtype(np.floor_divide, x, y)):
        raise unsupported("integer floor division (//) of traced values")
    return floor(divide(x, y))


def mod(x, y):
    if _is_concrete(x, y):
        return np.mod(x, y)
    return subtract(x, multiply(floor_divide(x, y), y))


remainder = mod


def where(condition, x=None, y=None):
    """np.where(c, x, y) (the three-argument form; the one-argument form has a data-dependent
    shape and cannot be traced)."""
    if x is None or y is None:
        raise unsupported("np.where with one argument (data-dependent shape)",
                          "use the three-argument form np.where(cond, x, y).")
    if _is_concrete(condition, x, y):
        return np.where(condition, x, y)
    dtype = result_dtype(np.add, x, y) if not (
        _dtype(x) == np.dtype(bool) and _dtype(y) == np.dtype(bool)) else np.dtype(bool)
    return select_p.bind(_to_bool(condition), *_common((x, y), dtype))


def clip(x, a_min=None, a_max=None, min=None, max=None):
    lo = a_min if a_min is not None else min
    hi = a_max if a_max is not None else max
    if lo is not None:
        x = maximum(x, lo)
    if hi is not None:
        x = minimum(x, hi)
    return x


def round(x, decimals=0):
    if decimals == 0:
        return rint(x)
    scale = 10.0 ** decimals
    return rint(x * scale) / scale


around = round


def isnan(x):
    return not_equal(x, x)


def isfinite(x):
    return equal(subtract(x, x), 0)  # inf - inf and nan - nan are nan


def isinf(x):
    return equal(abs(x), np.inf)


def exp2(x):
    return exp(multiply(x, math.log(2.0)))


def log2(x):
    return divide(log(x), math.log(2.0))


def log10(x):
    return divide(log(x), math.log(10.0))


# ----- composites used in ML -----
def sigmoid(x):
    """Logistic function 1 / (1 + exp(-x)), one primitive (`logistic`)."""
    if _is_concrete(x):
        x = np.asarray(x)
        return 1 / (1 + np.exp(-x))
    return P["logistic"].bind(astype(x, result_dtype(np.exp, x)))


def relu(x):
    """max(x, 0) with gradient 0 at x == 0 (as jax.nn.relu)."""
    return where(greater(x, 0), x, 0)


def softplus(x):
    """log(1 + exp(x)), stable for large |x|: max(x, 0) + log1p(exp(-|x|))."""
    return add(maximum(x, 0), log1p(exp(negative(abs(x)))))


def logsumexp(x, axis=None, keepdims=False):
    """log(sum(exp(x))) without overflow: the max is subtracted under stop_gradient."""
    from .api import stop_gradient
    m = max(x, axis=axis, keepdims=True)
    m = stop_gradient(where(isfinite(m), m, 0))
    out = add(log(sum(exp(subtract(x, m)), axis=axis, keepdims=True)), m)
    return out if keepdims else _drop_axes(out, _axes(axis, out.ndim))


def softmax(x, axis=-1):
    """exp(x) / sum(exp(x)) along `axis`, with the max subtracted under stop_gradient."""
    from .api import stop_gradient
    e = exp(subtract(x, stop_gradient(max(x, axis=axis, keepdims=True))))
    return divide(e, sum(e, axis=axis, keepdims=True))


def log_softmax(x, axis=-1):
    return subtract(x, logsumexp(x, axis=axis, keepdims=True))


# ----- reductions -----
def _axes(axis, ndim: int) -> tuple[int, ...]:
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


def _drop_axes(x, axes):
    if not axes:
        return x
    shape = tuple(d for i, d in enumerate(x.shape) if i not in axes)
    return reshape_p.bind(x, shape=shape)


def _reduction(prim_name: str, np_fn, needs_identity: bool = False):
    prim = P[prim_name]

    def fn(x, axis=None, dtype=None, keepdims=False, **kwargs):
        if kwargs.get("out") is not None or kwargs.get("where") is not None or \
                kwargs.get("initial") is not None:
            raise unsupported(f"np.{np_fn.__name__} with out=/where=/initial=")
        if _is_concrete(x):
            return np_fn(x, axis=axis, keepdims=keepdims, **({"dtype": dtype} if dtype else {}))
        x = asarray(x)
        axes = _axes(axis, x.ndim)
        if needs_identity and builtins.any(x.shape[a] == 0 for a in axes):
            raise user_error(ShapeError, f"zero-size array to reduction operation "
                             f"{np_fn.__name__} which has no identity.",
                             "reduce a non-empty array, or use np.where to supply a value.")
        if dtype is not None:
            x = astype(x, dtype)
        elif x.dtype == np.dtype(bool) or (prim_name in ("reduce_sum", "reduce_prod")
                                           and np.issubdtype(x.dtype, np.integer)):
            x = astype(x, np_fn(np.ones(1, x.dtype)).dtype)
        out = prim.bind(x, axes=axes) if axes else x
        return out if keepdims else _drop_axes(out, axes)
    fn.__name__ = np_fn.__name__
    fn.__doc__ = f"Traced np.{np_fn.__name__} over `axis` (None, int or tuple), `keepdims`."
    return fn


sum = _reduction("reduce_sum", np.sum)
prod = _reduction("reduce_prod", np.prod)
max = amax = _reduction("reduce_max", np.max, needs_identity=True)
min = amin = _reduction("reduce_min", np.min, needs_identity=True)


def _count(x, axes) -> int:
    return int(np.prod([x.shape[a] for a in axes], dtype=np.int64))


def mean(x, axis=None, dtype=None, keepdims=False):
    if _is_concrete(x):
        return np.mean(x, axis=axis, dtype=dtype, keepdims=keepdims)
    if dtype is None and not is_float(x.dtype):
        dtype = np.float64
    total = sum(x, axis=axis, dtype=dtype, keepdims=keepdims)
    n = _count(x, _axes(axis, x.ndim))
    return multiply(total, 1.0 / n if n else math.nan)


def var(x, axis=None, dtype=None, ddof=0, keepdims=False):
    if _is_concrete(x):
        return np.var(x, axis=axis, dtype=dtype, ddof=ddof, keepdims=keepdims)
    centered = subtract(x, mean(x, axis=axis, dtype=dtype, keepdims=True))
    n = _count(x, _axes(axis, x.ndim)) - ddof
    total = sum(multiply(centered, centered), axis=axis, keepdims=keepdims)
    return multiply(total, 1.0 / n if n > 0 else math.nan)


def std(x, axis=None, dtype=None, ddof=0, keepdims=False):
    if _is_concrete(x):
        return np.std(x, axis=axis, dtype=dtype, ddof=ddof, keepdims=keepdims)
    return sqrt(var(x, axis=axis, dtype=dtype, ddof=ddof, keepdims=keepdims))


def _arg_reduction(prim, np_fn):
    def fn(x, axis=None, keepdims=False):
        if _is_concrete(x):
            return np_fn(x, axis=axis, keepdims=keepdims)
        if axis is None:
            flat = reshape(x, -1)
            out = prim.bind(flat, axes=(0,))
            return reshape(out, (1,) * x.ndim if keepdims else ())
        (ax,) = _axes(axis, x.ndim)
        if x.shape[ax] == 0:
            raise user_error(ShapeError, f"attempt to get {np_fn.__name__} of an empty "
                             "sequence.", "reduce a non-empty axis.")
        out = prim.bind(x, axes=(ax,))
        return out if keepdims else _drop_axes(out, (ax,))
    fn.__name__ = np_fn.__name__
    return fn


argmax = _arg_reduction(argmax_p, np.argmax)
argmin = _arg_reduction(argmin_p, np.argmin)


# ----- layout -----
def _shape_arg(shape) -> tuple:
    if len(shape) == 1 and not isinstance(shape[0], (int, np.integer)):
        shape = tuple(shape[0])
    return tuple(int(s) for s in shape)


def reshape(x, *shape, order="C"):
    if order != "C":
        raise unsupported(f"reshape with order={order!r}", "use the default order='C'.")
    shape = _shape_arg(shape)
    if _is_concrete(x):
        return np.reshape(x, shape)
    if shape.count(-1) == 1:
        known = int(np.prod([s for s in shape if s != -1], dtype=np.int64))
        fill = x.size // known if known else 0
        shape = tuple(fill if s == -1 else s for s in shape)
    return x if shape == x.shape else reshape_p.bind(x, shape=shape)


def ravel(x):
    return reshape(x, -1)


flatten = ravel


def transpose(x, *axes):
    if _is_concrete(x):
        return np.transpose(x, *axes)
    perm = _shape_arg(axes) if axes and axes != (None,) else tuple(reversed(range(x.ndim)))
    perm = tuple(p % builtins.max(x.ndim, 1) for p in perm)
    if sorted(perm) != list(range(x.ndim)):
        raise user_error(ShapeError, f"transpose: axes {axes} don't match an array of "
                         f"dimension {x.ndim}.", "give a permutation of range(ndim).")
    return x if perm == tuple(range(x.ndim)) else transpose_p.bind(x, perm=perm)


def swapaxes(x, axis1, axis2):
    perm = list(range(np.ndim(x) if _is_concrete(x) else x.ndim))
    perm[axis1], perm[axis2] = perm[axis2], perm[axis1]
    return transpose(x, perm)


def expand_dims(x, axis):
    if _is_concrete(x):
        return np.expand_dims(x, axis)
    axes = (axis,) if isinstance(axis, (int, np.integer)) else tuple(axis)
    ndim = x.ndim + len(axes)
    axes = {a % ndim for a in axes}
    it = iter(x.shape)
    return reshape(x, tuple(1 if i in axes else next(it) for i in range(ndim)))


def squeeze(x, axis=None):
    if _is_concrete(x):
        return np.squeeze(x, axis)
    if axis is None:
        axes = tuple(i for i, d in enumerate(x.shape) if d == 1)
    else:
        axes = _axes(axis, x.ndim)
        if builtins.any(x.shape[a] != 1 for a in axes):
            raise user_error(ShapeError, f"cannot squeeze axis {axis} of shape {x.shape}: "
                             "its size is not 1.", "squeeze only axes of size 1.")
    return _drop_axes(x, axes)


def broadcast_to(x, shape):
    shape = tuple(shape) if not isinstance(shape, (int, np.integer)) else (int(shape),)
    if _is_concrete(x):
        return np.broadcast_to(x, shape)
    if isinstance(x, _PY_SCALARS):
        x = Literal.of(x)
    return x if tuple(x.shape) == shape else broadcast_p.bind(x, shape=shape)


def zeros_like(x, dtype=None):
    return full_like(x, 0, dtype)


def ones_like(x, dtype=None):
    return full_like(x, 1, dtype)


def full_like(x, fill_value, dtype=None):
    if _is_concrete(x):
        return np.full_like(x, fill_value, dtype=dtype)
    const = Literal.of(fill_value, dtype or x.dtype)
    return broadcast_p.bind(Tracer(x._trace, const), shape=x.shape)


def concatenate(arrays, axis=0):
    arrays = list(arrays)
    if _is_concrete(*arrays):
        return np.concatenate(arrays, axis=axis)
    dtype = result_dtype(np.add, *arrays) if len(arrays) > 1 else _dtype(arrays[0])
    arrays = [asarray(a) if isinstance(a, Tracer) else Literal.of(a, dtype) for a in arrays]
    arrays = [astype(a, dtype) for a in arrays]
    ndim = arrays[0].ndim
    if ndim == 0:
        raise user_error(ShapeError, "zero-dimensional arrays cannot be concatenated.",
                         "use stack, or reshape the scalars to (1,).")
    (ax,) = _axes(axis, ndim)
    tracer = next(a for a in arrays if isinstance(a, Tracer))
    return concatenate_p.bind(*[a if isinstance(a, Tracer) else Tracer(tracer._trace, a)
                                for a in arrays], axis=ax)


def stack(arrays, axis=0):
    arrays = list(arrays)
    if _is_concrete(*arrays):
        return np.stack(arrays, axis=axis)
    shapes = {tuple(np.shape(a)) if not isinstance(a, Tracer) else a.shape for a in arrays}
    if len(shapes) != 1:
        raise user_error(ShapeError, f"stack: all arrays must have the same shape, got "
                         f"{sorted(shapes)}.", "reshape or broadcast them to one shape.")
    return concatenate([expand_dims(asarray(a), axis) for a in arrays], axis=axis)


# ----- indexing -----
def getitem(x, index):
    """Basic indexing: ints, slices (any step), None and Ellipsis."""
    if not isinstance(index, tuple):
        index = (index,)
    for i in index:
        if not (i is None or i is Ellipsis or isinstance(i, (int, np.integer, slice))):
            raise unsupported(f"indexing with {type(i).__name__}",
                              "use basic indexing (ints, slices, None, ...); for a "
                              "data-dependent choice use np.where(mask, x, 0).")
    n_real = builtins.sum(1 for i in index if i is not None and i is not Ellipsis)
    if n_real > x.ndim:
        raise user_error(ShapeError, f"too many indices for an array of dimension {x.ndim}.",
                         "index at most ndim axes.")
    if Ellipsis in index:
        k = index.index(Ellipsis)
        index = index[:k] + (slice(None),) * (x.ndim - n_real) + index[k + 1:]
    else:
        index = index + (slice(None),) * (x.ndim - n_real)
    starts, limits, strides, flips, out_shape, dim = [], [], [], [], [], 0
    for i in index:
        if i is None:
            out_shape.append(1)
            continue
        n = x.shape[dim]
        if isinstance(i, slice):
            start, stop, step = i.indices(n)
            count = len(range(start, stop, step))
            if step < 0:
                flips.append(dim)
                start, step = n - 1 - start, -step
            out_shape.append(count)
        else:
            if not -n <= i < n:
                raise user_error(ShapeError, f"index {i} is out of bounds for axis {dim} with "
                                 f"size {n}.", f"use an index in [-{n}, {n}).")
            start, step, count = int(i) % n, 1, 1
        starts.append(start)
        strides.append(step)
        limits.append(start + (count - 1) * step + 1 if count else start)
        dim += 1
    out = rev_p.bind(x, axes=tuple(flips)) if flips else x
    if (tuple(starts), tuple(limits)) != ((0,) * x.ndim, x.shape) or builtins.any(
            s != 1 for s in strides):
        out = slice_p.bind(out, starts=tuple(starts), limits=tuple(limits), strides=tuple(strides))
    return reshape(out, tuple(out_shape))


# ----- contraction -----
def matmul(a, b):
    if _is_concrete(a, b):
        return np.matmul(a, b)
    a, b = (asarray(v) if isinstance(v, Tracer) else np.asarray(v) for v in (a, b))
    if a.ndim == 0 or b.ndim == 0:
        raise user_error(ShapeError, "matmul: operands must not be scalars.",
                         "use * for scalar multiplication.")
    dtype = result_dtype(np.multiply, a, b)  # np.matmul cannot be probed with 0-d arrays
    a, b = _common((a, b), dtype)
    a2 = reshape(a, (1,) + a.shape) if a.ndim == 1 else a
    b2 = reshape(b, b.shape + (1,)) if b.ndim == 1 else b
    out = matmul_p.bind(a2, b2)
    if a.ndim == 1:
        out = squeeze(out, -2)
    if b.ndim == 1:
        out = squeeze(out, -1)
    return out


def dot(a, b):
    if _is_concrete(a, b):
        return np.dot(a, b)
    if np.ndim(a) == 0 or np.ndim(b) == 0:
        return multiply(a, b)
    if np.ndim(a) > 2 or np.ndim(b) > 2:
        raise unsupported("np.dot on arrays with more than 2 dimensions", "use np.matmul / @.")
    return matmul(a, b)


def _ndim(x):
    return x.ndim if isinstance(x, Tracer) else np.ndim(x)


def outer(a, b):
    return multiply(reshape(a, (-1, 1)), reshape(b, (1, -1)))


def inner(a, b):
    if _ndim(a) == 1 and _ndim(b) == 1:
        return matmul(a, b)
    raise unsupported("np.inner on arrays with more than 1 dimension", "use np.matmul / @.")


# ----- NumPy protocol dispatch -----
_UFUNCS = {np.add: add, np.subtract: subtract, np.multiply: multiply, np.divide: divide,
           np.negative: negative, np.positive: positive, np.power: power, np.square: square,
           np.sqrt: sqrt, np.reciprocal: reciprocal, np.exp: exp, np.expm1: expm1,
           np.log: log, np.log1p: log1p, np.sin: sin, np.cos: cos, np.tan: tan, np.tanh: tanh,
           np.sinh: sinh, np.cosh: cosh, np.arctan: arctan, np.arcsin: arcsin,
           np.arccos: arccos, np.absolute: abs, np.sign: sign, np.floor: floor, np.ceil: ceil,
           np.rint: rint, np.maximum: maximum, np.minimum: minimum, np.less: less,
           np.less_equal: less_equal, np.greater: greater, np.greater_equal: greater_equal,
           np.equal: equal, np.not_equal: not_equal, np.logical_and: logical_and,
           np.logical_or: logical_or, np.logical_xor: logical_xor, np.logical_not: logical_not,
           np.isnan: isnan, np.isfinite: isfinite, np.isinf: isinf, np.exp2: exp2,
           np.log2: log2, np.log10: log10, np.floor_divide: floor_divide, np.mod: mod,
           np.matmul: matmul}
_REDUCE_UFUNCS = {np.add: sum, np.multiply: prod, np.maximum: max, np.minimum: min}


def apply_ufunc(ufunc, method, inputs, kwargs):
    if kwargs.get("out") is not None:
        raise unsupported(f"np.{ufunc.__name__}(..., out=...)",
                          "return the result instead of writing into `out`.")
    if method == "reduce" and ufunc in _REDUCE_UFUNCS:
        return _REDUCE_UFUNCS[ufunc](inputs[0], axis=kwargs.get("axis", 0),
                                     keepdims=kwargs.get("keepdims", False))
    fn = _UFUNCS.get(ufunc)
    if fn is None or method != "__call__" or builtins.any(
            k not in ("dtype", "casting") for k in kwargs):
        name = f"np.{ufunc.__name__}" + ("" if method == "__call__" else f".{method}")
        raise unsupported(name)
    out = fn(*inputs)
    return astype(out, kwargs["dtype"]) if kwargs.get("dtype") else out


_FUNCTIONS = {np.sum: sum, np.mean: mean, np.max: max, np.amax: max, np.min: min,
              np.amin: min, np.prod: prod, np.var: var, np.std: std, np.argmax: argmax,
              np.argmin: argmin, np.reshape: reshape, np.transpose: transpose,
              np.expand_dims: expand_dims, np.squeeze: squeeze, np.broadcast_to: broadcast_to,
              np.concatenate: concatenate, np.stack: stack, np.where: where, np.clip: clip,
              np.dot: dot, np.round: round, np.around: round, np.zeros_like: zeros_like,
              np.ones_like: ones_like, np.full_like: full_like, np.ravel: ravel,
              np.swapaxes: swapaxes, np.outer: outer, np.inner: inner, np.asarray: asarray,
              np.array: asarray, np.shape: lambda x: x.shape, np.ndim: _ndim,
              np.size: lambda x: x.size, np.isnan: isnan, np.isfinite: isfinite,
              np.matmul: matmul}


def apply_function(func, args, kwargs):
    fn = _FUNCTIONS.get(func)
    if fn is None:
        raise unsupported(_numpy_name(func))
    return fn(*args, **kwargs)


def _numpy_name(func) -> str:
    """np.cumsum, np.fft.fft, np.linalg.norm: the name the user wrote (public submodule kept)."""
    name = getattr(func, "__name__", str(func))
    parts = (getattr(func, "__module__", None) or "numpy").split(".")
    sub = [p for p in parts[1:2] if not p.startswith("_")]
    return ".".join(["np", *sub, name])


_install_operators()
