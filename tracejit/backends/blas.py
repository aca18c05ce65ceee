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
dimension; anything else is copied. No scipy or no threadpoolctl: `matmul` is None and the
driver calls np.matmul.
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
def _gemm(typingctx, ta, tb, m, n, k, a, a_off, lda, b, b_off, ldb, c, c_off, ldc):
    """Fortran ?gemm: c = op(a) @ op(b), column-major, from element offsets into three
    arrays of one float dtype; ta/tb are ord('N') or ord('T')."""
    dtype = a.dtype
    symbol = _SYMBOLS[np.dtype(str(dtype))]
    sig = types.void(ta, tb, m, n, k, a, a_off, lda, b, b_off, ldb, c, c_off, ldc)

    def codegen(context, builder, sig, args):
        ta, tb, m, n, k, a, a_off, lda, b, b_off, ldb, c, c_off, ldc = args
        arrays = sig.args[5], sig.args[8], sig.args[11]
        i8, i32, fp = ir.IntType(8), ir.IntType(32), context.get_value_type(dtype)

        def slot(val, ty):  # Fortran takes every argument by reference
            return cgutils.alloca_once_value(builder, val if val.type == ty else
                                             builder.trunc(val, ty))

        def data(arr, aty, off):
            return builder.gep(context.make_array(aty)(context, builder, arr).data, [off])

        ptr = [data(x, t, o) for x, t, o in zip((a, b, c), arrays, (a_off, b_off, c_off))]
        fnty = ir.FunctionType(ir.VoidType(), [i8.as_pointer()] * 2 +
                               [i32.as_pointer()] * 3 + [fp.as_pointer()] * 2 +
                               [i32.as_pointer(), fp.as_pointer(), i32.as_pointer()] +
                               [fp.as_pointer()] * 2 + [i32.as_pointer()])
        fn = cgutils.get_or_insert_function(builder.module, fnty, symbol)
        one, zero = (cgutils.alloca_once_value(builder, ir.Constant(fp, v)) for v in (1, 0))
        builder.call(fn, [slot(ta, i8), slot(tb, i8), slot(m, i32), slot(n, i32),
                          slot(k, i32), one, ptr[0], slot(lda, i32), ptr[1], slot(ldb, i32),
                          zero, ptr[2], slot(ldc, i32)])
        return context.get_dummy_value()
    return sig, codegen


@njit(parallel=True, nogil=True, cache=True)
def _rows(a, ta, lda, sa, b, tb, ldb, out, ldo, blocks):
    """out = a @ b, one block of out's rows per thread: out.T[:, rows] = b.T @ a.T[:, rows]
    in BLAS's column-major terms. `sa` is a's stride along its rows (in elements)."""
    m, k, n = a.shape[0], a.shape[1], b.shape[1]
    for blk in prange(blocks):
        lo, hi = blk * m // blocks, (blk + 1) * m // blocks
        if hi > lo:
            _gemm(tb, ta, n, hi - lo, k, b, 0, ldb, a, lo * sa, lda, out, lo * ldo, ldo)
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
    try:
        _rows(a, ta, lda, sa, b, tb, ldb, out, n, blocks)
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
