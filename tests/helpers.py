"""Shared test helpers: backends to run against, input sampling by domain, comparison with
NumPy. Gradients are checked with the public `tj.check_grads` (the one checker)."""
from __future__ import annotations

import importlib.util
import os

import numpy as np

from tracejit.primitives import ANY, GE1, INVERTIBLE, NONZERO, POSITIVE, SMOOTH, SPD, UNIT

BACKENDS = ["interpreter"]
if importlib.util.find_spec("tracejit.backends.numba_cpu") is not None:
    BACKENDS.append("numba")


def sample(domain: str | None, shape, rng: np.random.Generator, dtype=np.float64) -> np.ndarray:
    """Random values of `shape` where a primitive of this `domain` is smooth and finite."""
    shape = tuple(shape)
    if domain in (ANY, None):
        x = rng.uniform(-2.0, 2.0, shape)
    elif domain == SMOOTH:
        x = rng.uniform(-1.5, 1.5, shape)
    elif domain == POSITIVE:
        x = rng.uniform(0.5, 2.0, shape)
    elif domain == UNIT:
        x = rng.uniform(-0.8, 0.8, shape)
    elif domain == NONZERO:
        x = rng.uniform(0.5, 2.0, shape) * rng.choice([-1.0, 1.0], shape)
    elif domain == GE1:
        x = rng.uniform(1.5, 3.0, shape)
    elif domain in (INVERTIBLE, SPD):  # square matrices (..., n, n): well conditioned
        x = rng.uniform(-1.0, 1.0, shape)
        n = shape[-1] if len(shape) >= 2 else 0
        if domain == SPD:
            x = x @ np.swapaxes(x, -1, -2) / max(n, 1)
        x = x + 2.0 * np.eye(n) if len(shape) >= 2 and shape[-2] == n else x
    else:
        raise AssertionError(f"unknown domain {domain!r}")
    return np.asarray(x, dtype=dtype)


def line_of(path: str, marker: str) -> int:
    """1-based number of the only line of `path` that ends with the comment `marker`."""
    with open(path) as fh:
        hits = [n for n, line in enumerate(fh, 1) if line.rstrip().endswith(marker)]
    assert len(hits) == 1, f"marker {marker!r} found on lines {hits} of {path}"
    return hits[0]


def assert_same(got, want, dtype_too: bool = True, rtol=None, atol=None):
    """Compare a tracejit result to NumPy's: dtype, shape, values (NaN == NaN)."""
    got, want = np.asarray(got), np.asarray(want)
    if dtype_too:
        assert got.dtype == want.dtype, f"dtype {got.dtype} != NumPy's {want.dtype}"
    assert got.shape == want.shape, f"shape {got.shape} != NumPy's {want.shape}"
    if rtol is None:
        rtol = 2e-5 if want.dtype == np.float32 else 1e-12
    if atol is None:
        atol = 1e-6 if want.dtype == np.float32 else 1e-13
    if np.issubdtype(want.dtype, np.inexact):
        np.testing.assert_allclose(got, want, rtol=rtol, atol=atol, equal_nan=True)
    else:
        np.testing.assert_array_equal(got, want)


CI = bool(os.environ.get("CI"))
