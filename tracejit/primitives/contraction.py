"""Contraction: matmul over the last two axes with NumPy batch broadcasting. Backends hand it
to BLAS; 1-D operands are reshaped to 2-D by tracejit.numpy before binding."""
from __future__ import annotations

import numpy as np

from ..errors import ShapeError, user_error
from ..ir import Aval
from . import ANY, CONTRACT, STEP, batch_elementwise, broadcast_shapes, defprim
from .elementwise import add_p, mul_p
from .layout import reshape_p, transpose_p
from .reductions import reduce_sum_p


def _matmul_shape(a: Aval, b: Aval) -> Aval:
    assert a.ndim >= 2 and b.ndim >= 2, "matmul operands are at least 2-D here"
    assert a.dtype == b.dtype, f"matmul: operand dtypes differ ({a.dtype}, {b.dtype})"
    if a.shape[-1] != b.shape[-2]:
        raise user_error(ShapeError, f"matmul: shapes {a.shape} and {b.shape} do not align: "
                         f"{a.shape[-1]} (last axis of the first) != {b.shape[-2]} "
                         "(second-to-last axis of the second).",
                         "transpose one operand (x.T) or fix the inner dimensions.")
    batch = broadcast_shapes(a.shape[:-2], b.shape[:-2], op="matmul")
    return Aval(batch + (a.shape[-2], b.shape[-1]), a.dtype)


def _swap_last(x):
    perm = tuple(range(x.ndim - 2)) + (x.ndim - 1, x.ndim - 2)
    return transpose_p.bind(x, perm=perm)


def _product(a, b):
    """a @ b; over a size-1 axis (the outer product in the gradient of a matrix-vector
    product) a broadcast multiply, which fuses into loops instead of a BLAS call."""
    if a.shape[-1] == 1:
        return mul_p.bind(a, b)
    return matmul_p.bind(a, b)


def _matmul_vjp(g, out, a, b):
    return _product(g, _swap_last(b)), _product(_swap_last(a), g)


def _matmul_jvp(tangents, out, a, b):
    ta, tb = tangents
    parts = [matmul_p.bind(ta, b) if ta is not None else None,
             matmul_p.bind(a, tb) if tb is not None else None]
    parts = [p for p in parts if p is not None]
    return parts[0] if len(parts) == 1 else add_p.bind(*parts)


def _matmul_batch(prim, args, dims):
    """Per example (..., n, k) @ (..., k, m). What is a loop and what is BLAS:

        k == 1            outer product: an elementwise multiply (fuses)
        n == m == 1       dot product: multiply and sum over k (a row reduction: fuses)
        a batched, b 2-D  the examples' rows stacked into one (B*..*n, k) @ (k, m) (BLAS)
        a 2-D, m == 1     the examples' vectors as rows: (B*.., k) @ a.T (BLAS)
        both, m == 1      multiply and sum over k
        else              a broadcasting batched matmul
    """
    (a, b), (da, db) = args, dims
    sa, sb = (x.shape[d is not None:] for x, d in zip(args, dims))
    n, k, m = sa[-2], sa[-1], sb[-1]
    size = a.shape[0] if da is not None else b.shape[0]
    if k == 1:
        return batch_elementwise(mul_p, args, dims)
    if m == 1 and (n == 1 or (da is not None and db is not None)):
        bt = reshape_p.bind(b, shape=b.shape[:-2] + (1, k))
        prod, _ = batch_elementwise(mul_p, (a, bt), dims)
        return reduce_sum_p.bind(prod, axes=(prod.ndim - 1,)), 0
    if db is None and len(sb) == 2:
        count = int(np.prod((size,) + sa[:-1], dtype=np.int64))
        rows = matmul_p.bind(reshape_p.bind(a, shape=(count, k)), b)
        return reshape_p.bind(rows, shape=(size,) + sa[:-1] + (m,)), 0
    if da is None and len(sa) == 2 and m == 1:
        count = int(np.prod((size,) + sb[:-2], dtype=np.int64))
        rows = matmul_p.bind(reshape_p.bind(b, shape=(count, k)), _swap_last(a))
        return reshape_p.bind(rows, shape=(size,) + sb[:-2] + (n, 1)), 0
    rank = max(len(sa), len(sb))
    a, b = (reshape_p.bind(x, shape=x.shape[:1] + (1,) * (rank + 1 - x.ndim) + x.shape[1:])
            if d is not None and x.ndim < rank + 1 else x for x, d in zip(args, dims))
    return matmul_p.bind(a, b), 0


matmul_p = defprim("matmul", CONTRACT, shape=_matmul_shape, impl=np.matmul, vjp=_matmul_vjp,
                   jvp=_matmul_jvp, batch=_matmul_batch, numpy=("matmul",), domain=ANY,
                   fusion=STEP)
