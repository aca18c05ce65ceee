"""Linear algebra as library steps: LAPACK (NumPy's np.linalg) on the CPU, the same NumPy
reference on host copies for the device backends (`on_host`). Every primitive works on
stacked matrices (..., n, n) as NumPy does, and raises NumPy's LinAlgError where NumPy does
(a singular matrix in solve/inv, a matrix that is not positive definite in cholesky).

    linalg_solve(a, b)   a (..., n, n), b (..., n, k), batch axes broadcast
    linalg_inv(a)        (..., n, n)
    linalg_det(a)        (..., n, n) -> (...)
    slogdet_sign(a)      (..., n, n) -> (...)   sign of det: piecewise constant (gradient 0)
    slogdet_log(a)       (..., n, n) -> (...)   log|det|
    cholesky(a)          (..., n, n) -> lower L with L L^T = a (NumPy reads a's lower triangle)
    svdvals(a)           (..., m, n) -> (..., min(m, n)) singular values (matrix norms)

VJPs and JVPs are written with these primitives and matmul (d inv = -inv da inv, d log|det|
= tr(a^-1 da), ...), so they run as the same library steps.
"""
from __future__ import annotations

import numpy as np

from ..errors import ShapeError, UnsupportedError, user_error
from ..ir import Aval
from . import ANY, INVERTIBLE, LINALG, SPD, STEP, broadcast_shapes, defprim
from .contraction import matmul_p
from .elementwise import add_p, mul_p, neg_p
from .layout import reshape_p, transpose_p
from .reductions import reduce_sum_p


def _square(x: Aval, op: str) -> None:
    if x.ndim < 2 or x.shape[-1] != x.shape[-2]:
        raise user_error(ShapeError, f"{op}: expected square matrices (..., n, n), got shape "
                         f"{x.shape}.", "pass a square matrix or a stack of them.")


def _matrices(op: str):
    """Shape rule of a matrix -> matrix function."""
    def shape(x: Aval) -> Aval:
        _square(x, op)
        return x
    return shape


def _scalars(op: str):
    """Shape rule of a matrix -> scalar function (det): the batch axes."""
    def shape(x: Aval) -> Aval:
        _square(x, op)
        return Aval(x.shape[:-2], x.dtype)
    return shape


def _solve_shape(a: Aval, b: Aval) -> Aval:
    _square(a, "linalg.solve")
    assert b.ndim >= 2 and a.dtype == b.dtype, (a, b)
    if b.shape[-2] != a.shape[-1]:
        raise user_error(ShapeError, f"linalg.solve: a of shape {a.shape} and b of shape "
                         f"{b.shape} do not align ({a.shape[-1]} != {b.shape[-2]}).",
                         "b must have as many rows as a.")
    batch = broadcast_shapes(a.shape[:-2], b.shape[:-2], op="linalg.solve")
    return Aval(batch + b.shape[-2:], a.dtype)


# ----- helpers for the rules (written in primitives) -----
def swap(x):
    """x with its last two axes swapped (the transpose of each matrix)."""
    perm = tuple(range(x.ndim - 2)) + (x.ndim - 1, x.ndim - 2)
    return transpose_p.bind(x, perm=perm)


def _as_matrix(s):
    """(...) -> (..., 1, 1): a per-matrix scalar that broadcasts against the matrices."""
    return reshape_p.bind(s, shape=tuple(s.shape) + (1, 1))


def _trace_of_product(a, b):
    """tr(a @ b) per matrix, as sum(a^T * b) over the last two axes: shape (...)."""
    s = reduce_sum_p.bind(mul_p.bind(swap(a), b), axes=(a.ndim - 2, a.ndim - 1))
    return reshape_p.bind(s, shape=tuple(s.shape[:-2]))


def _add(*parts):
    parts = [p for p in parts if p is not None]
    return parts[0] if len(parts) == 1 else add_p.bind(*parts)


def _batch_one(prim, args, dims, **params):
    """A function of one stack of matrices: the batch axis is one more stacking axis."""
    return prim.bind(args[0], **params), 0


def batch_stacked(*core: int):
    """Batching rule of a function of stacks whose inputs have `core[i]` trailing axes of
    their own (2 for a matrix, 1 for a vector): the examples' stacking axes are lined up
    behind the batch axis with size-1 axes, then broadcast as NumPy does."""
    def rule(prim, args, dims, **params):
        stack = max(a.ndim - (d is not None) - c for a, d, c in zip(args, dims, core))
        args = [reshape_p.bind(a, shape=a.shape[:1] + (1,) * (stack + c + 1 - a.ndim) +
                               a.shape[1:]) if d is not None else a
                for a, d, c in zip(args, dims, core)]
        return prim.bind(*args, **params), 0
    return rule


# ----- solve -----
def _solve_vjp(g, out, a, b):
    gb = solve_p.bind(swap(a), g)
    return neg_p.bind(matmul_p.bind(gb, swap(out))), gb


def _solve_jvp(tangents, out, a, b):
    ta, tb = tangents
    rhs = _add(tb, None if ta is None else neg_p.bind(matmul_p.bind(ta, out)))
    return solve_p.bind(a, rhs)


solve_p = defprim("linalg_solve", LINALG, shape=_solve_shape, impl=np.linalg.solve,
                  vjp=_solve_vjp, jvp=_solve_jvp, batch=batch_stacked(2, 2), domain=INVERTIBLE,
                  fusion=STEP, on_host=True)


# ----- inv -----
def _inv_vjp(g, out, a):
    return (neg_p.bind(matmul_p.bind(matmul_p.bind(swap(out), g), swap(out))),)


def _inv_jvp(tangents, out, a):
    return neg_p.bind(matmul_p.bind(matmul_p.bind(out, tangents[0]), out))


inv_p = defprim("linalg_inv", LINALG, shape=_matrices("linalg.inv"), impl=np.linalg.inv,
                vjp=_inv_vjp, jvp=_inv_jvp, batch=_batch_one, domain=INVERTIBLE, fusion=STEP,
                on_host=True)


# ----- det, slogdet -----
# d det = det tr(a^-1 da): the gradient is det a^-T (at a singular matrix inv raises
# LinAlgError: the gradient there is the adjugate, not computed)
def _det_vjp(g, out, a):
    return (mul_p.bind(_as_matrix(mul_p.bind(g, out)), swap(inv_p.bind(a))),)


def _det_jvp(tangents, out, a):
    return mul_p.bind(out, _trace_of_product(inv_p.bind(a), tangents[0]))


det_p = defprim("linalg_det", LINALG, shape=_scalars("linalg.det"), impl=np.linalg.det,
                vjp=_det_vjp, jvp=_det_jvp, batch=_batch_one, domain=INVERTIBLE, fusion=STEP,
                on_host=True)

sign_p = defprim("slogdet_sign", LINALG, shape=_scalars("linalg.slogdet"),
                 impl=lambda a: np.linalg.slogdet(a)[0], vjp=lambda g, out, a: (None,),
                 jvp=lambda tangents, out, a: None, batch=_batch_one, domain=INVERTIBLE,
                 fusion=STEP, on_host=True)


def _logdet_vjp(g, out, a):
    return (mul_p.bind(_as_matrix(g), swap(inv_p.bind(a))),)


logdet_p = defprim("slogdet_log", LINALG, shape=_scalars("linalg.slogdet"),
                   impl=lambda a: np.linalg.slogdet(a)[1], vjp=_logdet_vjp,
                   jvp=lambda tangents, out, a: _trace_of_product(inv_p.bind(a), tangents[0]),
                   batch=_batch_one, domain=INVERTIBLE, fusion=STEP, on_host=True)


# ----- cholesky -----
# NumPy reads only the lower triangle of a: the function differentiated is
# chol(tril(a) + tril(a, -1)^T), so a's upper triangle gets a zero gradient.
def _masks(x):
    """(lower triangle with the diagonal, strictly lower, Phi: lower with half diagonal)."""
    n = x.shape[-1]
    lower = np.tril(np.ones((n, n), x.dtype))
    strict = np.tril(np.ones((n, n), x.dtype), -1)
    return lower, strict, lower - 0.5 * np.eye(n, dtype=x.dtype)


def _lower_solve_both(L, x):
    """L^-1 x L^-T."""
    y = solve_p.bind(L, x)
    return swap(solve_p.bind(L, swap(y)))


def _cholesky_jvp(tangents, out, a):
    """dL = L Phi(L^-1 da L^-T), da the symmetric matrix NumPy reads from the tangent."""
    lower, strict, phi = _masks(out)
    t = tangents[0]
    sym = _add(mul_p.bind(t, lower), swap(mul_p.bind(t, strict)))
    return matmul_p.bind(out, mul_p.bind(_lower_solve_both(out, sym), phi))


def _cholesky_vjp(g, out, a):
    """G = L^-T Phi(L^T g) L^-1 is the gradient in a symmetric da; onto the lower triangle
    NumPy reads: diag(G) on the diagonal, G + G^T below it."""
    _, strict, phi = _masks(out)
    lt = swap(out)
    inner = mul_p.bind(matmul_p.bind(lt, g), phi)
    G = swap(solve_p.bind(lt, swap(solve_p.bind(lt, inner))))
    diag = mul_p.bind(G, np.eye(out.shape[-1], dtype=out.dtype))
    return (_add(mul_p.bind(_add(G, swap(G)), strict), diag),)


cholesky_p = defprim("cholesky", LINALG, shape=_matrices("linalg.cholesky"),
                     impl=np.linalg.cholesky, vjp=_cholesky_vjp, jvp=_cholesky_jvp,
                     batch=_batch_one, domain=SPD, fusion=STEP, on_host=True)


# ----- singular values: the matrix 2-norm (largest), -2 (smallest), nuclear (sum) -----
#     svdvals(a)      (..., m, n) -> (..., k), k = min(m, n), descending (LAPACK gesdd)
#     svd_vjp(a, g)   U diag(g) V^T of a's thin SVD: svdvals' VJP       (..., m, n)
#     svd_jvp(a, t)   diag(U^T t V): svdvals' JVP                       (..., k)
# exact where the singular values are distinct (U, V are then unique up to signs, which
# cancel); the two rule primitives are first order only: differentiating them raises
def _svdvals_shape(a: Aval) -> Aval:
    if a.ndim < 2:
        raise user_error(ShapeError, f"svd: expected matrices (..., m, n), got shape "
                         f"{a.shape}.", "pass a 2-D array or a stack of them.")
    return Aval(a.shape[:-2] + (min(a.shape[-2:]),), a.dtype)


def _svd_vjp_shape(a: Aval, g: Aval) -> Aval:
    batch = broadcast_shapes(a.shape[:-2], g.shape[:-1], op="svd")
    return Aval(batch + a.shape[-2:], a.dtype)


def _svd_jvp_shape(a: Aval, t: Aval) -> Aval:
    batch = broadcast_shapes(a.shape[:-2], t.shape[:-2], op="svd")
    return Aval(batch + (min(a.shape[-2:]),), a.dtype)


def _svd_vjp_impl(a, g):
    u, _, vt = np.linalg.svd(a, full_matrices=False)
    return np.matmul(u * np.asarray(g)[..., None, :], vt)


def _svd_jvp_impl(a, t):
    u, _, vt = np.linalg.svd(a, full_matrices=False)
    return np.sum(u * np.matmul(t, np.swapaxes(vt, -1, -2)), axis=-2)


def _first_order_only(*args, **params):
    raise user_error(UnsupportedError, "second derivatives through singular values "
                     "(np.linalg.norm(x, 2), -2 or 'nuc' of a matrix) are not implemented.",
                     "differentiate these norms once, or use ord='fro'.")


svd_vjp_p = defprim("svd_vjp", LINALG, shape=_svd_vjp_shape, impl=_svd_vjp_impl,
                    vjp=_first_order_only, jvp=_first_order_only, batch=batch_stacked(2, 1),
                    domain=ANY, fusion=STEP, on_host=True)
svd_jvp_p = defprim("svd_jvp", LINALG, shape=_svd_jvp_shape, impl=_svd_jvp_impl,
                    vjp=_first_order_only, jvp=_first_order_only, batch=batch_stacked(2, 2),
                    domain=ANY, fusion=STEP, on_host=True)
svdvals_p = defprim("svdvals", LINALG, shape=_svdvals_shape,
                    impl=lambda a: np.linalg.svd(a, compute_uv=False),
                    vjp=lambda g, out, a: (svd_vjp_p.bind(a, g),),
                    jvp=lambda tangents, out, a: svd_jvp_p.bind(a, tangents[0]),
                    batch=_batch_one, domain=ANY, fusion=STEP, on_host=True)
# primitives whose own derivative raises (the registry tests check them first order only)
FIRST_ORDER_ONLY = ("svd_vjp", "svd_jvp")
