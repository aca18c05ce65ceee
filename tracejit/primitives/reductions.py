"""Reductions over `axes`. The output keeps the reduced axes as size-1 dimensions, so the
value broadcasts straight back against the operand (softmax's `x - max(x)`); NumPy's
keepdims=False is a reshape after it. Backends emit them as accumulators; argmax/argmin are
steps (NumPy on the CPU, a gather kernel on the GPU)."""
from __future__ import annotations

import numpy as np

from ..ir import Aval
from . import ANY, LOOP, REDUCE, STEP, Reduce, defprim, is_float
from .elementwise import MAX_EMIT, MIN_EMIT, convert, div_p, eq_p, ne_p, or_p, select


def _reduce_shape(x: Aval, axes: tuple[int, ...]) -> Aval:
    return Aval(tuple(1 if i in axes else d for i, d in enumerate(x.shape)), x.dtype)


def _arg_shape(x: Aval, axes: tuple[int, ...]) -> Aval:
    assert len(axes) == 1, "argmax/argmin reduce one axis"
    return Aval(_reduce_shape(x, axes).shape, np.dtype(np.int64))


def _np_reduce(fn):
    return lambda x, axes: fn(x, axis=axes, keepdims=True)


def _broadcast(g, shape):
    from .layout import broadcast_p
    return broadcast_p.bind(g, shape=shape)


def _sum_vjp(g, out, x, axes):
    return (_broadcast(g, x.shape),)


def _sum_jvp(tangents, out, x, axes):
    return reduce_sum_p.bind(tangents[0], axes=axes)


def _extremum_vjp(g, out, x, axes):
    # ties share the gradient equally among the tied elements (as JAX); a NaN is what max
    # and min select when there is one, and its gradient is NaN (as JAX), 0 elsewhere
    is_nan = ne_p.bind(x, x)
    hit = or_p.bind(eq_p.bind(x, out), is_nan)
    count = reduce_sum_p.bind(convert(hit, x.dtype), axes=axes)
    return (select(hit, select(is_nan, x, div_p.bind(g, count)), 0),)


def _extremum_jvp(tangents, out, x, axes):
    # the mean tangent of the tied elements (the transpose of the VJP); NaN at a NaN
    is_nan = ne_p.bind(x, x)
    hit = or_p.bind(eq_p.bind(x, out), is_nan)
    count = reduce_sum_p.bind(convert(hit, x.dtype), axes=axes)
    picked = select(hit, select(is_nan, x, tangents[0]), 0)
    return div_p.bind(reduce_sum_p.bind(picked, axes=axes), count)


def _prod_partials(x, axes):
    """d prod / d x, exact at zeros: with no zero prod/x; with one zero, the product of the
    others at that entry (0 elsewhere); with more, 0."""
    is_zero = x == 0
    zeros = reduce_sum_p.bind(convert(is_zero, x.dtype), axes=axes)
    safe = select(is_zero, 1, x)
    nonzero_prod = reduce_prod_p.bind(safe, axes=axes)
    one_zero = select(is_zero, select(zeros == 1, nonzero_prod, 0), 0)
    return select(zeros == 0, nonzero_prod / safe, one_zero)


def _prod_vjp(g, out, x, axes):
    return (g * _prod_partials(x, axes),)


def _prod_jvp(tangents, out, x, axes):
    return reduce_sum_p.bind(tangents[0] * _prod_partials(x, axes), axes=axes)


def _lowest(dtype: np.dtype):
    """Where a max starts: -inf, or an integer type's minimum (inf converts to no integer)."""
    if is_float(dtype):
        return -np.inf
    return False if dtype.kind == "b" else int(np.iinfo(dtype).min)


def _highest(dtype: np.dtype):
    if is_float(dtype):
        return np.inf
    return True if dtype.kind == "b" else int(np.iinfo(dtype).max)


# the CPU combines carry 'reassoc' (vm.radd, vm.rmul): LLVM vectorizes a sum by itself;
# max/min combine through llvm.maximum/minimum (vm.rmax, vm.rmin), NaN-exact and vectorized by
# LLVM too (lanes=False); prod keeps independent partials in a row (Reduce.lanes)
reduce_sum_p = defprim("reduce_sum", REDUCE, numpy=("sum",),
                       shape=_reduce_shape, impl=_np_reduce(np.sum),
                       vjp=_sum_vjp, jvp=_sum_jvp,
                       emit=Reduce(lambda dtype: 0, "({acc} + {x})", lanes=False, wide=True),
                       emit_for={"numba_cpu": "vm.radd({acc}, {x})"}, domain=ANY, fusion=LOOP)
reduce_max_p = defprim("reduce_max", REDUCE, numpy=("max", "amax"),
                       shape=_reduce_shape, impl=_np_reduce(np.max),
                       vjp=_extremum_vjp, jvp=_extremum_jvp,
                       emit=Reduce(_lowest, MAX_EMIT.format("{x}", "{acc}"), lanes=False),
                       emit_for={"numba_cpu": "vm.rmax({acc}, {x})"}, domain=ANY, fusion=LOOP)
reduce_min_p = defprim("reduce_min", REDUCE, numpy=("min", "amin"),
                       shape=_reduce_shape, impl=_np_reduce(np.min),
                       vjp=_extremum_vjp, jvp=_extremum_jvp,
                       emit=Reduce(_highest, MIN_EMIT.format("{x}", "{acc}"), lanes=False),
                       emit_for={"numba_cpu": "vm.rmin({acc}, {x})"}, domain=ANY, fusion=LOOP)
reduce_prod_p = defprim("reduce_prod", REDUCE, numpy=("prod",),
                        shape=_reduce_shape, impl=_np_reduce(np.prod),
                        vjp=_prod_vjp, jvp=_prod_jvp,
                        emit=Reduce(lambda dtype: 1, "({acc} * {x})"),
                        emit_for={"numba_cpu": "vm.rmul({acc}, {x})"}, domain=ANY, fusion=LOOP)


def _arg_gather(better: str):
    """GPU step body: the first index of the max (min) along the axis; the first NaN wins,
    as in NumPy."""
    def lines(e) -> list[str]:
        axis, ndim = e.params["axes"][0], e.inputs[0].aval.ndim

        def at(j: str) -> str:
            return ", ".join(j if d == axis else f"i{d}" for d in range(ndim)) or "0"
        o = ", ".join(f"i{d}" for d in range(ndim)) or "0"
        return [f"best = x0[{at('0')}]", "idx = 0", f"for j in range(1, x0.shape[{axis}]):",
                "    if best != best:", "        break", f"    y = x0[{at('j')}]",
                f"    if y {better} best or y != y:", "        best = y", "        idx = j",
                f"o[{o}] = idx"]
    return lines


# forward only: integer outputs carry no gradient
argmax_p = defprim("argmax", REDUCE, shape=_arg_shape,
                   impl=lambda x, axes: np.argmax(x, axis=axes[0], keepdims=True),
                   fusion=STEP, gather=_arg_gather(">"))
argmin_p = defprim("argmin", REDUCE, shape=_arg_shape,
                   impl=lambda x, axes: np.argmin(x, axis=axes[0], keepdims=True),
                   fusion=STEP, gather=_arg_gather("<"))
