"""Large matrix products on tracejit's own threads (the Numba CPU driver's matmul steps).

OpenBLAS wakes its own threads for a large product and leaves them spinning for about 0.1 s
(2**28 cycles) after it returns. A Numba parallel kernel that starts in that window shares
its cores with them: on 2 cores, 1000 steps of a parallel 1024x1024 matvec took 98-118 ms
right after a two-thread 1024x1000x1024 GEMM and 28-34 ms after a one-thread one (W11's
forward loop follows the previous call's weight-gradient GEMM). So a product big enough for
OpenBLAS to thread runs here instead: Numba's threads, the ones the kernels use, each call
single-threaded BLAS (sgemm/dgemm from scipy.linalg.cython_blas, what Numba's np.dot calls)
on a block of the result's rows, while every BLAS library is held at one thread
(threadpoolctl). Nothing is left spinning, and the product is as fast as OpenBLAS's own
threading (1024x1000x1024 float32 on 2 cores: 11.0 ms against 11.3 ms).

BLAS is column-major, so it computes the transposed problem out.T = b.T @ a.T on the same
memory: an operand with unit stride along its last axis is passed as is ('N'), one with unit
stride along its first axis as transposed ('T'), with its other stride as the leading
dimension; anything else is copied. Without scipy or threadpoolctl (`ready()` is False),
`matmul` is np.matmul.
"""
from __future__ import annotations

import threading

import numpy as np
from llvmlite import ir
from numba import njit, prange, types
from numba.core import cgutils
from numba.extending import intrinsic

# m*n*k from which OpenBLAS threads a GEMM (64**3: SMP_THRESHOLD_MIN * GEMM_MULTITHREAD_
# THRESHOLD); smaller products stay single-threaded there and cost little either way
THREADED_FROM = 1 << 18
_SYMBOLS = {np.dtype(np.float32): "tracejit_sgemm", np.dtype(np.float64): "tracejit_dgemm"}
_BLAS: list = []  # [threadpoolctl controllers of the BLAS libraries], once loaded
_HELD = {"calls": 0, "threads": []}  # products running now; BLAS thread counts before them
_LOCK = threading.Lock()


def ready() -> bool:
    """Whether large products run here (scipy and threadpoolctl are installed)."""
    return _load()


def _load() -> bool:
    """Register sgemm/dgemm under our symbol names (cached machine code links to them by
    name in every process) and find the BLAS libraries' thread controls: False when scipy or
    threadpoolctl is missing."""
    with _LOCK:
        if not _BLAS:
            _BLAS.append(_controllers())
        return _BLAS[0] is not None


def _controllers():
    try:
        import llvmlite.binding as llb
        from numba.extending import get_cython_function_address
        from threadpoolctl import ThreadpoolController
        for dtype, symbol in _SYMBOLS.items():
            name = "sgemm" if dtype == np.float32 else "dgemm"
            llb.add_symbol(symbol, get_cython_function_address("scipy.linalg.cython_blas",
                                                               name))
        return ThreadpoolController().select(user_api="blas").lib_controllers
    except ImportError:
        return None


@intrinsic
def _gemm(typingctx, double, ta, tb, m, n, k, a, lda, b, ldb, c, ldc):
    """Fortran sgemm (dgemm if `double`): c = op(a) @ op(b), column-major, on the addresses
    a, b, c (integers: one compiled function serves every layout and both dtypes); ta/tb
    are ord('N') or ord('T')."""
    sig = types.void(double, ta, tb, m, n, k, a, lda, b, ldb, c, ldc)

    def codegen(context, builder, sig, args):
        double, ta, tb, m, n, k, a, lda, b, ldb, c, ldc = args
        i8, i32 = ir.IntType(8), ir.IntType(32)

        def slot(val, ty):  # Fortran takes every argument by reference
            return cgutils.alloca_once_value(builder, val if val.type == ty else
                                             builder.trunc(val, ty))

        def call(fp, symbol):
            p = fp.as_pointer()
            fnty = ir.FunctionType(ir.VoidType(), [i8.as_pointer()] * 2 + [i32.as_pointer()] * 3
                                   + [p, p, i32.as_pointer(), p, i32.as_pointer(), p, p,
                                      i32.as_pointer()])
            fn = cgutils.get_or_insert_function(builder.module, fnty, symbol)
            one, zero = (cgutils.alloca_once_value(builder, ir.Constant(fp, v)) for v in (1, 0))
            builder.call(fn, [slot(ta, i8), slot(tb, i8), slot(m, i32), slot(n, i32),
                              slot(k, i32), one, builder.inttoptr(a, p), slot(lda, i32),
                              builder.inttoptr(b, p), slot(ldb, i32), zero,
                              builder.inttoptr(c, p), slot(ldc, i32)])
        with builder.if_else(builder.icmp_signed("!=", double, double.type(0))) as (d, f):
            with d:
                call(ir.DoubleType(), _SYMBOLS[np.dtype(np.float64)])
            with f:
                call(ir.FloatType(), _SYMBOLS[np.dtype(np.float32)])
        return context.get_dummy_value()
    return sig, codegen


@njit(parallel=True, nogil=True, cache=True)
def _rows(double, m, n, k, a, ta, lda, sa, b, tb, ldb, out, item, blocks):
    """out = a @ b (addresses; `item` bytes per element), one block of out's rows per
    thread: out.T[:, rows] = b.T @ a.T[:, rows] in BLAS's column-major terms. `sa` is a's
    stride from one row to the next, in elements."""
    for blk in prange(blocks):
        lo, hi = blk * m // blocks, (blk + 1) * m // blocks
        if hi > lo:
            _gemm(double, tb, ta, n, hi - lo, k, b, ldb, a + lo * sa * item, lda,
                  out + lo * n * item, n)
    return 0


def _operand(x: np.ndarray, rows: int, cols: int):
    """(x or a copy, BLAS trans flag, leading dimension) for the column-major view of x.T."""
    s0, s1 = (s // x.itemsize for s in x.strides)
    if (s1 == 1 or cols == 1) and s0 >= max(1, cols) and x.strides[0] % x.itemsize == 0:
        return x, ord("N"), max(s0, cols, 1)
    if (s0 == 1 or rows == 1) and s1 >= max(1, rows) and x.strides[1] % x.itemsize == 0:
        return x, ord("T"), max(s1, rows, 1)
    x = np.ascontiguousarray(x)
    return x, ord("N"), max(cols, 1)


def matmul(a: np.ndarray, b: np.ndarray, threads: int) -> np.ndarray:
    """a @ b for 2-D float32/float64 operands of one dtype, on `threads` of Numba's threads
    with one BLAS thread each; np.matmul for anything else or small."""
    m, k = a.shape
    n = b.shape[1]
    if m * n * k < THREADED_FROM or a.dtype != b.dtype or a.dtype not in _SYMBOLS or \
            max(m, n, k) >= 1 << 31 or not _load():
        return np.matmul(a, b)
    a, ta, lda = _operand(a, m, k)
    b, tb, ldb = _operand(b, k, n)
    sa = 1 if ta == ord("T") else lda  # a's stride from one row to the next
    out = np.empty((m, n), a.dtype)
    blocks = max(1, min(threads, m, m * n * k // THREADED_FROM))
    _hold()
    try:  # the arrays stay referenced here while BLAS reads their addresses
        _rows(a.dtype == np.float64, m, n, k, a.ctypes.data, ta, lda, sa, b.ctypes.data, tb,
              ldb, out.ctypes.data, a.itemsize, blocks)
    finally:
        _release()
    return out


def _hold() -> None:
    """One BLAS thread while a product runs (counted: products in other Python threads
    overlap, and the counts before the first are the ones put back after the last)."""
    with _LOCK:
        if _HELD["calls"] == 0:
            _HELD["threads"] = [lib.num_threads for lib in _BLAS[0]]
            for lib in _BLAS[0]:
                lib.set_num_threads(1)
        _HELD["calls"] += 1


def _release() -> None:
    with _LOCK:
        _HELD["calls"] -= 1
        if _HELD["calls"] == 0:
            for lib, t in zip(_BLAS[0], _HELD["threads"]):
                lib.set_num_threads(t)
