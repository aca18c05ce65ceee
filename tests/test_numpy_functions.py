"""The NumPy (and scipy.special) functions of numerical code, issue 11 item 4: forward
against NumPy in float32 and float64, gradients against finite differences, on every backend,
and the CUDA backend (the simulator without a GPU) against the interpreter."""
from __future__ import annotations

import numpy as np
import pytest
import scipy.special as sp
from helpers import assert_same

import tracejit as tj

RNG = np.random.default_rng(0)
A, B, C = RNG.standard_normal((4, 5)), RNG.standard_normal((5, 3)), RNG.standard_normal((4, 4))
P = RNG.uniform(0.1, 0.9, (4, 5))
NANS = np.where(A > 1, np.nan, A)

# name -> (f, args, differentiable): args are float64 here, cast for the float32 runs
CASES = {
    "flip": (lambda x: np.flip(x, 1) + np.flip(x), (A,), True),
    "roll": (lambda x: np.roll(x, 2, 1) + np.roll(x, -3), (A,), True),
    "tile": (lambda x: np.tile(x, (2, 1, 3)), (A,), True),
    "repeat": (lambda x: (np.repeat(x, 2, axis=0), np.repeat(x, [1, 0, 2, 1, 1], axis=1)),
               (A,), True),
    "stacks": (lambda x: (np.vstack([x, x[:1]]), np.hstack([x, x]),
                          np.column_stack([x[:, 0], x[:, 1:3]])), (A,), True),
    "diff": (lambda x: (np.diff(x, 2, axis=1), np.diff(x, axis=0)), (A,), True),
    "diagonal_trace_diag": (lambda x: (np.diagonal(x, 1), np.trace(x, -1), np.diag(x[0], 1),
                                       np.diag(x, -2), np.diag(x)), (A,), True),
    "triu_tril": (lambda x: (np.triu(x, 1), np.tril(x, -1)), (A,), True),
    "pad": (lambda x: (np.pad(x, ((1, 2), (0, 1))), np.pad(x, 1, mode="edge"),
                       np.pad(x, ((2, 1), (1, 3)), mode="reflect"),
                       np.pad(x, 2, constant_values=1.5)), (A,), True),
    "cumsum_cumprod": (lambda x: (np.cumsum(x, axis=1), np.cumprod(x, axis=0), np.cumsum(x)),
                       (A,), True),
    "sort_argsort": (lambda x: (np.sort(x, axis=0), np.sort(x), np.argsort(x, axis=1)),
                     (A,), True),
    "nan_reductions": (lambda x: (np.nansum(x, axis=0), np.nanmean(x, axis=0),
                                  np.nanmax(x, axis=1), np.nanmin(x)), (NANS,), False),
    "nan_reductions_grad": (lambda x: (np.nansum(x, axis=0), np.nanmean(x),
                                       np.nanmax(x, axis=1), np.nanmin(x)), (A,), True),
    "average": (lambda x: (np.average(x, axis=1, weights=np.arange(1.0, 6.0)),
                           np.average(x)), (A,), True),
    "logaddexp": (lambda x, y: (np.logaddexp(x, y), np.logaddexp2(x, 0.5)), (A, P), True),
    "fmax_fmin": (lambda x, y: (np.fmax(x, y), np.fmin(x, y)), (A, P), True),
    "fmax_nan": (lambda x: (np.fmax(x, np.nan), np.fmin(np.nan, x)), (NANS,), False),
    "heaviside": (lambda x: np.heaviside(x, 0.5), (A,), False),
    "arctan2_hypot_copysign": (lambda x, y: (np.arctan2(x, y), np.hypot(x, y),
                                             np.copysign(x, y - 0.5)), (A, P), True),
    "einsum": (lambda a, b: (np.einsum("ij,jk->ik", a, b), np.einsum("ij,jk", a, b),
                             np.einsum("ij,kj->ik", a, a), np.einsum("i,j->ij", a[0], b[0])),
               (A, B), True),
    "einsum_repeated": (lambda c: (np.einsum("ii", c), np.einsum("ii->i", c),
                                   np.einsum("ij->", c), np.einsum("ij->ji", c)), (C,), True),
    "einsum_three": (lambda a, b: np.einsum("ij,jk,kl->il", a, b, b.T), (A, B), True),
    "tensordot": (lambda a, b: (np.tensordot(a, b, 1), np.tensordot(a, b, axes=([1], [0]))),
                  (A, B), True),
    "dot_inner_nd": (lambda a, b: (np.inner(a, a), np.inner(a, b.T), np.inner(a[0], a),
                                   np.dot(a[None] * 2.0, b), np.dot(a, b[:, 0])), (A, B), True),
    "linalg_norm": (lambda a: (np.linalg.norm(a), np.linalg.norm(a[0], 1),
                               np.linalg.norm(a[0], np.inf), np.linalg.norm(a[0], -np.inf),
                               np.linalg.norm(a[0], 3), np.linalg.norm(a, axis=1),
                               np.linalg.norm(a, "fro"), np.linalg.norm(a, np.inf),
                               np.linalg.norm(a, 1), np.linalg.norm(a, -1),
                               np.linalg.norm(a, axis=0, keepdims=True)), (A,), True),
    "scipy_special": (lambda x, p: (sp.expit(x), sp.logit(p), sp.erf(x), sp.erfc(x),
                                    sp.log_ndtr(x), sp.xlogy(x, p), sp.xlog1py(p, x * x)),
                      (A, P), True),
}


def _tuple(out):
    return out if isinstance(out, tuple) else (out,)


@pytest.mark.parametrize("dtype", [np.float32, np.float64], ids=["f32", "f64"])
@pytest.mark.parametrize("name", sorted(CASES))
def test_forward_matches_numpy(name, dtype, backend):
    f, args, _ = CASES[name]
    args = [a.astype(dtype) for a in args]
    with np.errstate(all="ignore"):
        want = _tuple(f(*args))
    got = _tuple(tj.jit(f, backend=backend)(*args))
    for g, w in zip(got, want):
        assert_same(g, w, rtol=1e-4 if dtype == np.float32 else 1e-10,
                    atol=1e-5 if dtype == np.float32 else 1e-12)


def _loss(f):
    def loss(*xs):
        return sum(np.sum(np.sin(o) * np.arange(1, o.size + 1).reshape(o.shape))
                   for o in _tuple(f(*xs)) if np.dtype(o.dtype).kind == "f")
    return loss


@pytest.mark.parametrize("name", sorted(n for n, c in CASES.items() if c[2]))
def test_gradient_matches_finite_differences(name, backend):
    f, args, _ = CASES[name]
    tj.check_grads(_loss(f), list(args), argnums=tuple(range(len(args))), backend=backend)


@pytest.mark.parametrize("name", ["pad", "cumsum_cumprod", "sort_argsort", "einsum_repeated",
                                  "linalg_norm", "scipy_special", "roll", "diagonal_trace_diag"])
def test_cuda_matches_interpreter(name):
    f, args, _ = CASES[name]
    want = tj.value_and_grad(_loss(f), backend="interpreter")(*args)
    got = tj.value_and_grad(_loss(f), device="cuda")(*args)
    assert_same(got[0], want[0])
    assert_same(got[1], want[1])


def test_unsupported_matrix_norm_names_the_alternatives():
    with pytest.raises(tj.UnsupportedError, match="'fro', 'nuc'"):
        tj.jit(lambda a: np.linalg.norm(a, 3))(A)


def test_coverage_table_is_current_and_complete():
    """COVERAGE.md is what `python -m tracejit.coverage --markdown` writes, and the README's
    list what `--readme` writes; every name has a probe that traces (no '?') except where
    noted."""
    import os
    import subprocess
    import sys
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    path = os.path.join(root, "COVERAGE.md")
    # a fresh process: other tests declare primitives of their own (test_extending)
    text = subprocess.run([sys.executable, "-c", "from tracejit import coverage; "
                           "print(coverage.markdown_table(), end='')"], cwd=root, check=True,
                          capture_output=True, text=True).stdout
    with open(path) as fh:
        assert fh.read() == text, "run `python -m tracejit.coverage --markdown COVERAGE.md`"
    section = subprocess.run([sys.executable, "-c", "from tracejit import coverage; "
                              "print(coverage.readme_section(), end='')"], cwd=root,
                             check=True, capture_output=True, text=True).stdout
    with open(os.path.join(root, "README.md")) as fh:
        assert section in fh.read(), "run `python -m tracejit.coverage --readme README.md`"
    unknown = [line for line in text.splitlines() if line.endswith("| ? | ? |")]
    assert not unknown, unknown
