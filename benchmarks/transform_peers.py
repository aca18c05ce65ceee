"""Peers of the transformation workloads (W9, W10): every peer computes one array per call
instead of value + gradient, through its own composable transformations where it has them.

    W9   per-example gradients of logistic regression, d/dw log(1 + exp(-y (x . w))) for
         each row x of X: JAX jit(vmap(grad)), torch.func.vmap(grad) (eager and
         torch.compile of it), tracejit jit(vmap(grad)), NumPy and Numba by hand
    W10  Hessian-vector product of W1 (forward over reverse): JAX jit(jvp(grad)),
         torch.func.jvp(grad) (eager and compiled), tracejit jit(jvp(grad)), by hand

The builders keep the conventions of workloads.py: inputs converted in `build`, a callable
that finishes its work before returning, and `to_numpy` giving (None, (array,)): no value to
check, the array checked like a gradient. The loss functions are the same ones the other
workloads hand to every framework (written once against the ops namespace F).
"""
from __future__ import annotations

import functools

import numpy as np

F32 = np.float32


def _np_one(out) -> tuple:
    return None, (np.array(out, copy=True),)


# ---- NumPy by hand -------------------------------------------------------------------------
def numpy_w9(w, X, y):
    s = -y / (F32(1) + np.exp(y * (X @ w)))
    return None, (s[:, None] * X,)


def numpy_w10(x, v):
    t, s, c = np.tanh(x), np.sin(x), np.cos(x)
    u = F32(1) - t * t
    return None, (((F32(-2) * t * u - t) * s + F32(2) * u * c + F32(1)) * v,)


# ---- Numba by hand: one pass ---------------------------------------------------------------
def _numba_w9(m, parallel):
    from numba import njit, prange
    exp = m.exp

    @njit(parallel=parallel, fastmath=True)
    def core(w, X, y, G):
        for i in prange(X.shape[0]):
            z = F32(0)
            for j in range(X.shape[1]):
                z += X[i, j] * w[j]
            s = -y[i] / (F32(1) + exp(y[i] * z))
            for j in range(X.shape[1]):
                G[i, j] = s * X[i, j]
    return core


def _numba_w10(m, parallel):
    from numba import njit, prange
    tanh, sin, cos = m.tanh, m.sin, m.cos

    @njit(parallel=parallel, fastmath=True)
    def core(x, v, h):
        for i in prange(x.shape[0]):
            t, s, c = tanh(x[i]), sin(x[i]), cos(x[i])
            u = F32(1) - t * t
            h[i] = ((F32(-2) * t * u - t) * s + F32(2) * u * c + F32(1)) * v[i]
    return core


def build_numba(variant: str, wl, data: dict, vecmath_module, built_cls):
    import math

    from numba import njit
    if variant == "libm":
        m, note = math, "math." + "/".join(wl.funcs) + " (libm)"
    else:
        m, fallback, reason = vecmath_module()
        note = "vecmath." + "/".join(wl.funcs)
        if any(f in fallback for f in wl.funcs):
            note += f" (some libm: {reason or 'not in vecmath'})"
    core = {"W9": _numba_w9, "W10": _numba_w10}[wl.key](m, variant != "serial")
    args = wl.ordered(data)
    like = args[1] if wl.key == "W9" else args[0]
    if variant == "prealloc":
        out = np.empty_like(like)
        return built_cls(lambda: (core(*args, out), out)[1], _np_one, note)

    @njit
    def run(*a):
        out = np.empty_like(a[1] if len(a) == 3 else a[0])
        core(*a, out)
        return out
    return built_cls(lambda: run(*args), _np_one, note)


# ---- JAX -----------------------------------------------------------------------------------
def jax_fn(wl, F, jax):
    loss = functools.partial(wl.loss, F)
    if wl.key == "W9":
        return jax.jit(jax.vmap(jax.grad(loss), in_axes=(None, 0, 0)))
    return jax.jit(lambda x, v: jax.jvp(jax.grad(loss), (x,), (v,))[1])


# ---- PyTorch: torch.func -------------------------------------------------------------------
def torch_fn(wl, F, torch, compiled: bool):
    from torch import func
    loss = functools.partial(wl.loss, F)
    if wl.key == "W9":
        fn = func.vmap(func.grad(loss), in_dims=(None, 0, 0))
    else:
        def fn(x, v):
            return func.jvp(func.grad(loss), (x,), (v,))[1]
    return torch.compile(fn, dynamic=False) if compiled else fn


# ---- tracejit ------------------------------------------------------------------------------
def tracejit_fn(wl, tj, f, **options):
    if wl.key == "W9":
        return tj.jit(tj.vmap(tj.grad(f), in_axes=(None, 0, 0)), **options)
    return tj.jit(lambda x, v: tj.jvp(tj.grad(f), (x,), (v,))[1], **options)
