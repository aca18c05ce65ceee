"""W7 and W8: gathers and scatters (issue 11), registered into workloads.py's tables.

    W7  softmax cross-entropy with integer labels: z = L - sg(max(L, 1));
        mean(logsumexp(z, 1) - z[arange(n), labels]), L[4096x1000] f32, labels int64, grad L
        (W3 with the one-hot matrix replaced by the label of each row)
    W8  embedding bag: sum((E[idx].sum(1) @ w - y)**2), E[100000x64] f32, idx[16384x20]
        int64, grad E (a scatter-add with repeated indices: deterministic peers only differ
        in speed)

The loss is written once against the ops namespace F (F.pick, F.rows); NumPy by hand and a
hand-written Numba loop are the references, as for W1-W6. torch-ce is PyTorch's own
F.cross_entropy (W7 only).
"""
from __future__ import annotations

import math

import numpy as np

from . import workloads as W

F32 = np.float32


def loss_w7(F, L, labels):
    z = L - F.stop_gradient(F.amax(L, 1, True))
    return F.mean(F.log(F.sum(F.exp(z), 1)) - F.pick(z, labels))


def loss_w8(F, E, idx, w, y):
    return F.sum((F.sum(F.rows(E, idx), 1) @ w - y) ** 2)


def numpy_w7(L, labels):
    B = L.shape[0]
    z = L - L.max(axis=1, keepdims=True)
    e = np.exp(z)
    s = e.sum(axis=1, keepdims=True)
    rows = np.arange(B)
    value = np.mean(np.log(s[:, 0]) - z[rows, labels])
    grad = e / s
    grad[rows, labels] -= F32(1)
    return value, (grad * F32(1.0 / B),)


def numpy_w8(E, idx, w, y):
    h = E[idx].sum(axis=1)
    r = h @ w - y
    gh = (F32(2) * r)[:, None] * w[None, :]
    grad = np.zeros_like(E)
    np.add.at(grad, idx.reshape(-1), np.repeat(gh, idx.shape[1], axis=0))
    return np.sum(r * r), (grad,)


def data_w7(rows: int, classes: int = 1000):
    rng = np.random.default_rng(7)
    return {"L": F32(3) * rng.standard_normal((rows, classes), dtype=F32),
            "labels": rng.integers(0, classes, rows)}


def data_w8(rows: int, vocab: int = 100_000, dim: int = 64, bag: int = 20):
    rng = np.random.default_rng(8)
    return {"E": rng.standard_normal((vocab, dim), dtype=F32) / F32(8),
            "idx": rng.integers(0, vocab, (rows, bag)),
            "w": rng.standard_normal(dim, dtype=F32) / F32(8),
            "y": rng.standard_normal(rows, dtype=F32)}


# ---- hand-written Numba ----------------------------------------------------------------------
def _numba_w7(m, parallel):
    """W3's row loop with the label read instead of a one-hot row."""
    from numba import njit, prange

    exp, log = m.exp, m.log

    @njit(parallel=parallel, fastmath=True)
    def core(L, labels, G):
        B, C = L.shape
        scale = F32(1.0 / B)
        total = 0.0
        for r in prange(B):
            Lr = L[r]
            Gr = G[r]
            mx = Lr[0]
            for j in range(1, C):
                mx = max(mx, Lr[j])
            s = F32(0)
            for j in range(C):
                e = exp(Lr[j] - mx)
                Gr[j] = e
                s += e
            inv = F32(1) / s
            for j in range(C):
                Gr[j] = Gr[j] * inv * scale
            lab = labels[r]
            Gr[lab] -= scale
            total += log(s) - (Lr[lab] - mx)
        return total / B

    return core


def _numba_w8(m, parallel):
    """Forward: one prange loop over bags (gather, sum, dot, residual); backward: the
    scatter-add in index order (serial: deterministic, as tracejit's)."""
    from numba import njit, prange

    @njit(parallel=parallel, fastmath=True)
    def forward(E, idx, w, y, R):
        B, K = idx.shape
        D = E.shape[1]
        total = 0.0
        for b in prange(B):
            h = np.zeros(D, np.float32)
            for k in range(K):
                row = E[idx[b, k]]
                for d in range(D):
                    h[d] += row[d]
            r = F32(0)
            for d in range(D):
                r += h[d] * w[d]
            r -= y[b]
            R[b] = F32(2) * r
            total += r * r
        return total

    @njit(fastmath=True)
    def backward(idx, w, R, G):
        B, K = idx.shape
        D = G.shape[1]
        G[:] = 0
        for b in range(B):
            for k in range(K):
                g = G[idx[b, k]]
                for d in range(D):
                    g[d] += R[b] * w[d]

    return forward, backward


def _fresh_w7(kernel, L, labels):
    G = np.empty_like(L)
    return kernel(L, labels, G), (G,)


def _callable_w7_fresh(kernel, d, prealloc):
    L, labels = d["L"], d["labels"]
    if prealloc:
        G = np.empty_like(L)
        return lambda: (kernel(L, labels, G), (G,))
    return lambda: _fresh_w7(kernel, L, labels)


def _callable_w8(kernel, d, prealloc):
    forward, backward = kernel
    E, idx, w, y = d["E"], d["idx"], d["w"], d["y"]
    R = np.empty(idx.shape[0], F32)
    G = np.empty_like(E) if prealloc else None

    def run():
        g = G if G is not None else np.empty_like(E)
        v = forward(E, idx, w, y, R)
        backward(idx, w, R, g)
        return v, (g,)
    return run


# ---- torch F.cross_entropy -------------------------------------------------------------------
def build_torch_ce(wl, data) -> W.Built:
    if wl.key != "W7":
        raise W.NotApplicable("F.cross_entropy is W7's loss only")
    import torch
    import torch.nn.functional as tf

    L = torch.from_numpy(np.array(data["L"], copy=True)).requires_grad_(True)
    labels = torch.from_numpy(data["labels"])

    def call():
        value = tf.cross_entropy(L, labels)
        (g,) = torch.autograd.grad(value, [L])
        return value.detach(), (g,)
    return W.Built(call, lambda out: (float(out[0]), (out[1][0].numpy().copy(),)))


def register() -> None:
    """Add W7, W8, their Numba kernels and the torch-ce peer to workloads.py's tables."""
    W.WORKLOADS["W7"] = W.Workload(
        "W7", "cross-entropy, integer labels",
        "z = L - sg(max(L,1)); mean(log(sum(exp(z),1)) - z[arange(n), labels]), "
        "L[4096x1000], grad L", ("L", "labels"), ("L",), loss_w7, numpy_w7,
        lambda q: data_w7(4096 if not q else 1024), "L", lambda d: d["L"].shape[0],
        numba_kernel="w7", funcs=("exp", "log"))
    W.WORKLOADS["W8"] = W.Workload(
        "W8", "embedding bag (scatter-add)",
        "sum((E[idx].sum(1) @ w - y)**2), E[100000x64], idx[16384x20], grad E",
        ("E", "idx", "w", "y"), ("E",), loss_w8, numpy_w8,
        lambda q: data_w8(16384 if not q else 2048), "E",
        lambda d: d["y"].size * int(math.sqrt(d["idx"].shape[1])), numba_kernel="w8")
    W.NUMBA_BUILDERS.update(w7=_numba_w7, w8=_numba_w8)
    W.NUMBA_CALLABLES.update(w7=_callable_w7_fresh, w8=_callable_w8)
    W.PEERS["torch-ce"] = W.Peer("torch-ce", "PyTorch eager F.cross_entropy (W7 only)",
                                 ("torch",), build_torch_ce, threads=W._torch_threads)
