"""Contraction: matmul over the last two axes with NumPy batch broadcasting. Backends hand it
to BLAS; 1-D operands are reshaped to 2-D by tracejit.numpy before binding."""
from __future__ import annotations

import numpy as np

from ..errors import ShapeError, user_error
from ..ir import Aval
from . import ANY, CONTRACT, STEP, defprim
from .elementwise import broadcast_shapes


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
    from .layout import transpose_p
    perm = tuple(range(x.ndim - 2)) + (x.ndim - 1, x.ndim - 2)
    return transpose_p.bind(x, perm=perm)


def _matmul_vjp(g, out, a, b):
    return matmul_p.bind(g, _swap_last(b)), matmul_p.bind(_swap_last(a), g)


matmul_p = defprim("matmul", CONTRACT, shape=_matmul_shape, impl=np.matmul, vjp=_matmul_vjp,
                   numpy=("matmul",), domain=ANY, fusion=STEP)
