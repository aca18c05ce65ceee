"""Composites used in ML, written with the functions above so they differentiate and fuse
like anything else: sigmoid, relu, softplus, logsumexp, softmax, log_softmax."""
from __future__ import annotations

import numpy as np

from ..primitives import REGISTRY
from ..tracing import stop_gradient
from .elementwise import absolute, exp, greater, isfinite, log, log1p, maximum, where
from .promotion import axes_of, cast_all, drop_axes, is_concrete, result_dtype
from .reductions import max as _max
from .reductions import sum as _sum


def sigmoid(x):
    """Logistic function 1 / (1 + exp(-x)), one primitive (`logistic`)."""
    if is_concrete(x):
        x = np.asarray(x)
        return 1 / (1 + np.exp(-x))
    return REGISTRY["logistic"].bind(*cast_all((x,), result_dtype(np.exp, x)))


def relu(x):
    """max(x, 0) with gradient 0 at x == 0 (as jax.nn.relu)."""
    return where(greater(x, 0), x, 0)


def softplus(x):
    """log(1 + exp(x)), stable for large |x|: max(x, 0) + log1p(exp(-|x|))."""
    return maximum(x, 0) + log1p(exp(-absolute(x)))


def logsumexp(a, axis=None, b=None, keepdims=False, return_sign=False):
    """log(sum(b * exp(a))) without overflow: the max is subtracted under stop_gradient.
    JAX's and scipy.special's signature: `b` scales each term; with `return_sign`, returns
    (log|sum|, sign(sum)) (else a negative sum gives NaN, as scipy)."""
    m = _max(a, axis=axis, keepdims=True)
    m = stop_gradient(where(isfinite(m), m, 0))
    terms = exp(a - m) if b is None else b * exp(a - m)
    total = _sum(terms, axis=axis, keepdims=True)
    out = log(absolute(total) if return_sign else total) + m
    axes = axes_of(axis, out.ndim)
    if return_sign:
        sign = REGISTRY["sign"].bind(total)
        return (out, sign) if keepdims else (drop_axes(out, axes), drop_axes(sign, axes))
    return out if keepdims else drop_axes(out, axes)


def softmax(x, axis=-1):
    """exp(x) / sum(exp(x)) along `axis`, with the max subtracted under stop_gradient."""
    e = exp(x - stop_gradient(_max(x, axis=axis, keepdims=True)))
    return e / _sum(e, axis=axis, keepdims=True)


def log_softmax(x, axis=-1):
    return x - logsumexp(x, axis=axis, keepdims=True)
