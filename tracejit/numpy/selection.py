"""np.choose as a chain of selects (one fused loop): choices[a[i]][i], all broadcast."""
from __future__ import annotations

import numpy as np

from ..errors import user_error, user_frame
from ..primitives.indexing import index_check_p
from .elementwise import clip, equal, less, mod, where
from .promotion import asarray, astype, is_concrete

__all__ = ["choose"]


def choose(a, choices, out=None, mode="raise"):
    """np.choose; mode 'raise' checks the indices once per call (an index out of [0, n)
    raises NumPy's ValueError), 'wrap' and 'clip' as NumPy."""
    choices = list(choices)
    if is_concrete(a, *choices):
        return np.choose(a, choices, out=out, mode=mode)
    if out is not None:
        raise user_error(TypeError, "np.choose(..., out=...) on traced values.",
                         "return the result instead of writing into `out`.")
    n = len(choices)
    if is_concrete(a):
        a = np.asarray(a)
        if mode == "raise" and a.size and (a.min() < 0 or a.max() >= n):
            raise user_error(ValueError, "np.choose: invalid entry in choice array.",
                             f"indices must lie in [0, {n}) (or use mode='wrap' / 'clip').")
    idx = astype(asarray(a), np.int64)
    if mode == "wrap":
        idx = mod(idx, n)
    elif mode == "clip":
        idx = clip(idx, 0, n - 1)
    elif not is_concrete(a):  # negatives are errors too: moved out of range first
        idx = index_check_p.bind(where(less(idx, 0), n, idx), size=n, axis=0,
                                 where=user_frame(), choice=True)
    out = choices[n - 1] if n > 1 else where(equal(idx, 0), choices[0], choices[0])
    for k in range(n - 2, -1, -1):
        out = where(equal(idx, k), choices[k], out)
    return out
