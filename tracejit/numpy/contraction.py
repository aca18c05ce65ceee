"""Contraction: matmul (the `matmul` primitive, BLAS in the backends) and outer (np.dot and
np.inner of any rank are tensordots: numpy/einsum.py)."""
from __future__ import annotations

import numpy as np

from ..errors import ShapeError, user_error
from ..primitives.contraction import matmul_p
from ..tracing import Tracer
from .elementwise import multiply
from .layout import reshape, squeeze
from .promotion import asarray, cast_all, is_concrete, result_dtype


def matmul(a, b):
    if is_concrete(a, b):
        return np.matmul(a, b)
    a, b = (asarray(v) if isinstance(v, Tracer) else np.asarray(v) for v in (a, b))
    if a.ndim == 0 or b.ndim == 0:
        raise user_error(ShapeError, "matmul: operands must not be scalars.",
                         "use * for scalar multiplication.")
    dtype = result_dtype(np.multiply, a, b)  # np.matmul cannot be probed with 0-d arrays
    a, b = cast_all((a, b), dtype)
    a2 = reshape(a, (1,) + a.shape) if a.ndim == 1 else a
    b2 = reshape(b, b.shape + (1,)) if b.ndim == 1 else b
    out = matmul_p.bind(a2, b2)
    if a.ndim == 1:
        out = squeeze(out, -2)
    if b.ndim == 1:
        out = squeeze(out, -1)
    return out


def outer(a, b):
    return multiply(reshape(a, (-1, 1)), reshape(b, (1, -1)))


