"""Large matmul steps on tracejit's own threads (tracejit/backends/blas.py): every operand
layout BLAS can read in place, the values of np.matmul, and the BLAS libraries' thread
counts put back after each product, also when products overlap in several Python threads."""
import threading

import numpy as np
import pytest

import tracejit as tj
from tracejit.backends import blas

pytest.importorskip("scipy")
threadpoolctl = pytest.importorskip("threadpoolctl")


def _layouts(x):
    """x in C order, Fortran order, as a transposed view, a strided view, a view with a
    negative stride (copied before BLAS)."""
    wide = np.zeros((x.shape[0], 2 * x.shape[1]), x.dtype)
    wide[:, ::2] = x
    return {"C": x, "F": np.asfortranarray(x), "T": np.ascontiguousarray(x.T).T,
            "strided": wide[:, ::2], "negative": np.ascontiguousarray(x[::-1])[::-1]}


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("m,k,n", [(1024, 300, 257), (65, 300, 70), (300, 1000, 1),
                                   (1, 1000, 400), (5, 6, 7)])
def test_every_layout_gives_matmul(dtype, m, k, n):
    r = np.random.default_rng(m + k + n)
    a, b = r.standard_normal((m, k)).astype(dtype), r.standard_normal((k, n)).astype(dtype)
    want = a.astype(np.float64) @ b.astype(np.float64)
    tol = 2e-5 if dtype == np.float32 else 1e-12
    for la, A in _layouts(a).items():
        for lb, B in _layouts(b).items():
            before = (A.copy(), B.copy())
            got = blas.matmul(A, B, 2)
            assert got.dtype == dtype and got.shape == (m, n) and got.flags.c_contiguous
            err = np.abs(got - want).max() / max(1.0, np.abs(want).max())
            assert err < tol, (la, lb, err)
            np.testing.assert_array_equal(A, before[0])  # operands untouched
            np.testing.assert_array_equal(B, before[1])


def _blas_threads():
    return [lib.num_threads for lib in
            threadpoolctl.ThreadpoolController().select(user_api="blas").lib_controllers]


def test_blas_thread_counts_are_put_back_after_overlapping_products():
    r = np.random.default_rng(0)
    a, b = r.standard_normal((256, 512)), r.standard_normal((512, 256))
    blas.matmul(a, b, 2)  # loads scipy's BLAS: listed from here on
    before = _blas_threads()
    errors = []

    def work():
        try:
            for _ in range(20):
                np.testing.assert_allclose(blas.matmul(a, b, 2), a @ b, rtol=1e-10)
        except Exception as e:  # pragma: no cover - reported below
            errors.append(e)
    threads = [threading.Thread(target=work) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors
    assert _blas_threads() == before


@pytest.fixture(scope="module")
def products():
    return tj.jit(lambda a, b, c: (a @ b, a.T @ c))


def test_jitted_matmul_steps_run_here_with_transposed_operands(products):
    r = np.random.default_rng(1)
    a = r.standard_normal((300, 200)).astype(np.float32)
    b = r.standard_normal((200, 310)).astype(np.float32)
    c = r.standard_normal((300, 90)).astype(np.float32)
    ab, atc = products(a, b[:, :], c)
    np.testing.assert_allclose(ab, a @ b, rtol=2e-5, atol=2e-4)
    np.testing.assert_allclose(atc, a.T @ c, rtol=2e-5, atol=2e-4)
    exe = products.entry_for(a, b, c).exe
    assert exe.driver_source.count("_threads()") == 2  # both products run on our threads
    small = [x[:20, :20] for x in (a, b, c)]  # too small for OpenBLAS's threads: np.matmul,
    assert "_threads()" not in products.entry_for(*small).exe.driver_source  # decided once


def test_gradient_of_a_matmul_loss_against_finite_differences():
    r = np.random.default_rng(2)
    W = r.standard_normal((80, 70))
    X = r.standard_normal((70, 90))
    tj.check_grads(lambda W, X: np.sum(np.tanh(W @ X) ** 2), (W, X), argnums=(0, 1))
