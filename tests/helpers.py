"""Shared test helpers: backends to run against, input sampling by domain, and `check_vjp`
(gradients against central finite differences in float64, in one random direction, as
autograd's and JAX's `check_vjp`)."""
from __future__ import annotations

import importlib.util
import os

import numpy as np

import tracejit as tj
from tracejit import pytree
from tracejit.primitives import ANY, GE1, NONZERO, POSITIVE, SMOOTH, UNIT

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
    else:
        raise AssertionError(f"unknown domain {domain!r}")
    return np.asarray(x, dtype=dtype)


def _as_f64(x):
    if isinstance(x, (float, int)) and not isinstance(x, bool):
        return float(x)
    arr = np.asarray(x)
    return arr.astype(np.float64) if np.issubdtype(arr.dtype, np.floating) else x


def _vdot(a, b) -> float:
    return float(np.sum(np.asarray(a, np.float64) * np.asarray(b, np.float64)))


def check_vjp(f, args, argnums=0, backend: str = "interpreter", *, eps: float = 1e-6,
              rtol: float = 1e-5, atol: float = 1e-7, seed: int = 0, grads=None):
    """Assert <u, grad f> == (f(x + h u) - f(x - h u)) / 2h in float64 for a random u.

    `f` must run on plain NumPy arrays too (it is evaluated eagerly for the differences, so
    the oracle is NumPy, not tracejit). `argnums` is an int or a tuple; arguments may be
    pytrees. Returns the gradients tracejit computed. `grads` may be passed in precomputed
    (e.g. from a nested transformation)."""
    nums = (argnums,) if isinstance(argnums, int) else tuple(argnums)
    args = [pytree.tree_map(_as_f64, a) for a in args]
    if grads is None:
        grads = tj.grad(f, argnums=nums, backend=backend)(*args)
    assert isinstance(grads, tuple) and len(grads) == len(nums), \
        f"grad(argnums={nums}) returned {type(grads).__name__} of length " \
        f"{len(grads) if isinstance(grads, tuple) else '?'}"
    rng = np.random.default_rng(seed)
    directions, analytic = [], 0.0
    for i, g in zip(nums, grads):
        leaves, tree = pytree.flatten(args[i])
        g_leaves, g_tree = pytree.flatten(g)
        assert g_tree == tree, f"gradient of argument {i} has structure {g_tree}, expected {tree}"
        us = []
        for x, gx in zip(leaves, g_leaves):
            assert np.shape(gx) == np.shape(x), \
                f"gradient of argument {i} has shape {np.shape(gx)}, input {np.shape(x)}"
            assert np.all(np.isfinite(gx)), f"non-finite gradient for argument {i}: {gx}"
            u = rng.standard_normal(np.shape(x))
            us.append(u)
            analytic += _vdot(u, gx)
        directions.append((i, us, tree))

    with np.errstate(all="ignore"):
        # one common step: the relative step of the largest argument
        scale = max([1.0] + [float(np.max(np.abs(x))) for i, _, _ in directions
                             for x in pytree.flatten(args[i])[0] if np.size(x)])
        h = eps * scale
        plus = _shift_all(args, directions, h)
        minus = _shift_all(args, directions, -h)
        fp, fm = float(np.asarray(f(*plus))), float(np.asarray(f(*minus)))
    numeric = (fp - fm) / (2 * h)
    f0 = float(np.asarray(f(*args)))
    # truncation error is O(h^2); rounding error of the difference is ~1e-16 |f| / h
    tol = atol + rtol * max(abs(numeric), abs(analytic)) + 1e-14 * (abs(f0) + abs(fp)) / h
    assert abs(numeric - analytic) <= tol, (
        f"VJP check failed ({backend}): <u, grad> = {analytic!r} but finite differences give "
        f"{numeric!r} (|diff| {abs(numeric - analytic):.3g} > tol {tol:.3g}); f(x) = {f0!r}, "
        f"argnums={nums}, shapes={[np.shape(a) for a in pytree.flatten(args)[0]]}")
    return grads


def _shift_all(args, directions, h):
    new = list(args)
    for i, us, tree in directions:
        leaves, _ = pytree.flatten(args[i])
        new[i] = pytree.unflatten(tree, [np.asarray(x, np.float64) + h * u
                                         for x, u in zip(leaves, us)])
    return new


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
