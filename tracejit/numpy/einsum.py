"""einsum, tensordot, dot and inner as composites: contractions go to matmul (BLAS), the rest
(diagonals of repeated indices, sums of indices only one operand has, transposes) are
layout and reduction primitives that fuse.

    einsum("ij,jk->ik", a, b)   1. per operand: a repeated index takes the diagonal, an index
                                   no one else needs is summed away
                                2. operands contract pairwise, left to right: batch indices
                                   (in both and the output), contracted ones (in both, not
                                   needed later), free ones -> one batched matmul
                                3. the result is transposed to the requested output order
"""
from __future__ import annotations

import math
import string

import numpy as np

from ..errors import ShapeError, user_error
from .contraction import matmul
from .elementwise import multiply
from .layout import broadcast_to, reshape, transpose
from .numerical import diagonal
from .promotion import asarray, is_concrete, result_dtype
from .promotion import astype as _astype
from .reductions import sum as _sum

__all__ = ["dot", "einsum", "inner", "tensordot"]


def _parse(subscripts: str, ndims: list[int]) -> tuple[list[str], str]:
    """Terms and output, with '...' replaced by letters of their own (right-aligned across
    operands, as NumPy broadcasts them)."""
    subscripts = subscripts.replace(" ", "")
    ins, arrow, out = subscripts.partition("->")
    terms = ins.split(",")
    if len(terms) != len(ndims):
        raise user_error(ShapeError, f"einsum: subscripts {subscripts!r} name "
                         f"{len(terms)} operands, {len(ndims)} given.", "one term per operand.")
    spare = iter(c for c in string.ascii_letters if c not in subscripts)
    extra = [n - len(t.replace("...", "")) for t, n in zip(terms, ndims)]
    ell = "".join(next(spare) for _ in range(max([e for t, e in zip(terms, extra)
                                                    if "..." in t], default=0)))
    terms = [t.replace("...", ell[len(ell) - e:] if e > 0 else "", 1) for t, e in
             zip(terms, extra)]
    if any(len(t) != n or not t.isalpha() and t for t, n in zip(terms, ndims)) or \
            "." in out.replace("...", ""):
        raise user_error(ShapeError, f"einsum: subscripts {subscripts!r} do not match the "
                         f"operands' dimensions {ndims}.", "one letter per axis, or '...'.")
    if not arrow:  # implicit: the broadcast axes, then the letters used once, alphabetically
        joined = "".join(terms)
        out = ell + "".join(sorted(c for c in set(joined) if joined.count(c) == 1
                                   and c not in ell))
    elif "..." in out:
        out = out.replace("...", ell)
    elif ell:
        raise user_error(ShapeError, f"einsum: {subscripts!r}: the output names no '...' for "
                         "the axes '...' stands for in the operands.",
                         "write '...' in the output too (as NumPy requires).")
    return terms, out


def _broadcast_ellipsis(xs: list, terms: list[str], out: str) -> list:
    """Operands broadcast along the letters '...' stands for (size 1 against size n)."""
    sizes: dict[str, int] = {}
    for x, t in zip(xs, terms):
        for c, d in zip(t, x.shape):
            if sizes.get(c, 1) == 1:
                sizes[c] = d
            elif d not in (1, sizes[c]):
                raise user_error(ShapeError, f"einsum: axis {c!r} has sizes {sizes[c]} and "
                                 f"{d} in different operands.", "make the sizes agree.")
    return [broadcast_to(x, tuple(sizes[c] for c in t))
            if any(d != sizes[c] for c, d in zip(t, x.shape)) else x
            for x, t in zip(xs, terms)]


def _reduce_term(x, term: str, keep: set[str]):
    """Diagonals of repeated letters, then sums of letters not in `keep`."""
    while len(set(term)) < len(term):
        c = next(c for c in term if term.count(c) > 1)
        i, j = term.index(c), term.index(c, term.index(c) + 1)
        x = diagonal(x, 0, i, j)  # the diagonal axis goes last
        term = "".join(t for k, t in enumerate(term) if k not in (i, j)) + c
    drop = tuple(k for k, c in enumerate(term) if c not in keep)
    if drop:
        x = _sum(x, axis=drop)
        term = "".join(c for k, c in enumerate(term) if k not in drop)
    return x, term


def _contract(a, ta: str, b, tb: str, keep: set[str]):
    """One batched matmul: (batch, free a, summed) @ (batch, summed, free b)."""
    sizes = dict(zip(ta, a.shape)) | dict(zip(tb, b.shape))
    batch = [c for c in ta if c in tb and c in keep]
    summed = [c for c in ta if c in tb and c not in keep]
    fa = [c for c in ta if c not in tb]
    fb = [c for c in tb if c not in ta]

    def arrange(x, t, order, shape):
        x = transpose(x, tuple(t.index(c) for c in order)) if list(t) != order else x
        return reshape(x, shape)

    def n(cs):
        return int(math.prod(sizes[c] for c in cs))
    A = arrange(a, ta, batch + fa + summed, (n(batch), n(fa), n(summed)))
    B = arrange(b, tb, batch + summed + fb, (n(batch), n(summed), n(fb)))
    out = matmul(A, B)
    return reshape(out, tuple(sizes[c] for c in batch + fa + fb)), "".join(batch + fa + fb)


def einsum(subscripts, *operands, optimize=False, dtype=None):
    """np.einsum with explicit or implicit output, repeated indices (traces, diagonals) and
    '...' for broadcast axes."""
    if is_concrete(*operands):
        return np.einsum(subscripts, *operands, optimize=optimize)
    xs = [asarray(x) for x in operands]
    dt = np.dtype(dtype) if dtype is not None else (
        result_dtype(np.multiply, *xs) if len(xs) > 1 else xs[0].dtype)
    xs = [_astype(x, dt) for x in xs]
    terms, out = _parse(subscripts, [x.ndim for x in xs])
    xs = _broadcast_ellipsis(xs, terms, out)
    for k in range(len(xs)):
        later = set(out) | set("".join(t for j, t in enumerate(terms) if j != k))
        xs[k], terms[k] = _reduce_term(xs[k], terms[k], later)
    acc, ta = xs[0], terms[0]
    for k in range(1, len(xs)):
        keep = set(out) | set("".join(terms[k + 1:]))
        acc, ta = _contract(acc, ta, xs[k], terms[k], keep)
        acc, ta = _reduce_term(acc, ta, keep)
    acc, ta = _reduce_term(acc, ta, set(out))
    return transpose(acc, tuple(ta.index(c) for c in out)) if ta != out else acc


def tensordot(a, b, axes=2):
    if is_concrete(a, b):
        return np.tensordot(a, b, axes)
    a, b = asarray(a), asarray(b)
    if isinstance(axes, (int, np.integer)):
        axes = (list(range(a.ndim - axes, a.ndim)), list(range(axes)))
    ia, ib = ([axes[0]] if np.ndim(axes[0]) == 0 else list(axes[0]),
              [axes[1]] if np.ndim(axes[1]) == 0 else list(axes[1]))
    ia, ib = [i % a.ndim for i in ia], [i % b.ndim for i in ib]
    letters = iter("abcdefghijklmnopqrstuvwxyz")
    ta = [next(letters) for _ in range(a.ndim)]
    tb = [next(letters) for _ in range(b.ndim)]
    for i, j in zip(ia, ib):
        tb[j] = ta[i]
    out = [c for k, c in enumerate(ta) if k not in ia] + \
        [c for k, c in enumerate(tb) if k not in ib]
    return einsum(f"{''.join(ta)},{''.join(tb)}->{''.join(out)}", a, b)


def dot(a, b):
    """NumPy's dot: a product for a scalar, matmul up to 2-D, else the sum over a's last
    axis and b's second-to-last (b's last when b is 1-D)."""
    if is_concrete(a, b):
        return np.dot(a, b)
    if np.ndim(a) == 0 or np.ndim(b) == 0:
        return multiply(a, b)
    if np.ndim(a) <= 2 and np.ndim(b) <= 2:
        return matmul(a, b)
    return tensordot(a, b, ([-1], [-2 if np.ndim(b) > 1 else -1]))


def inner(a, b):
    """NumPy's inner: the sum over both operands' last axes (a product for a scalar)."""
    if is_concrete(a, b):
        return np.inner(a, b)
    if np.ndim(a) == 0 or np.ndim(b) == 0:
        return multiply(a, b)
    return tensordot(a, b, ([-1], [-1]))
