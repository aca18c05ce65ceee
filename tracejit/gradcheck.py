"""`check_grads`: compare tracejit's gradients with central finite differences. It is the
one gradient checker: the tests use it too.

For each differentiated argument and each of its array leaves, in a few random directions u:

    <u, grad f(x)>  ≈  (f(x + h u) - f(x - h u)) / (2 h)       (all in float64, f on NumPy)

This is autograd's `check_vjp` / JAX's `check_grads` (order 1, reverse mode). Testing one
leaf at a time costs two evaluations per direction and lets the error name the leaf.
"""
from __future__ import annotations

import inspect
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from . import pytree
from .api import grad
from .errors import TracejitError


class GradientCheckError(TracejitError, AssertionError):
    """tracejit's gradient disagrees with finite differences (an AssertionError, so test
    runners report it as a failed check)."""


def _to_f64(x: Any) -> Any:
    """Float leaves (and Python floats) become float64 arrays; everything else is kept."""
    def leaf(v):
        if isinstance(v, float) or (isinstance(v, (np.ndarray, np.generic))
                                    and np.issubdtype(v.dtype, np.floating)):
            return np.asarray(v, dtype=np.float64)
        return v
    return pytree.tree_map(leaf, x)


def _arg_name(f: Callable, i: int, path: str) -> str:
    """'argument 0 (params['W'])', or 'argument 0' when the parameter has no name."""
    try:
        params = list(inspect.signature(f).parameters)
    except (TypeError, ValueError):
        params = []
    if i < len(params):
        return f"argument {i} ({params[i]}{path})"
    return f"argument {i}{path}"


def _central_difference(f: Callable, args: tuple, i: int, tree, leaves: list, k: int,
                        u: np.ndarray, h: float) -> tuple[float, float, float]:
    """f(x + h u), f(x - h u) and f(x), moving only leaf k of argument i; f runs on NumPy."""
    def at(t: float) -> float:
        moved = list(leaves)
        moved[k] = leaves[k] + t * u
        new = list(args)
        new[i] = pytree.unflatten(tree, moved)
        return float(np.asarray(f(*new)))
    with np.errstate(all="ignore"):
        return at(h), at(-h), at(0.0)


def check_grads(f: Callable, args: Sequence[Any], argnums=0, *, eps: float = 1e-6,
                rtol: float = 1e-5, atol: float = 1e-8, directions: int = 2, seed: int = 0,
                backend: str | None = None, grads: tuple | None = None) -> tuple:
    """Check `tj.grad(f)` against central finite differences of `f` itself, in float64.

    `f` is evaluated directly on NumPy arrays for the differences (as jax.test_util does), so
    the oracle is NumPy, not tracejit; each array leaf is moved along a few random unit
    directions u, and <u, grad f(x)> must match (f(x + h u) - f(x - h u)) / 2h.

    Args:
        f: a function returning a scalar loss, as you would pass to `tj.grad`; it must also
            run on plain NumPy arrays.
        args: the positional arguments (a tuple); float leaves are cast to float64.
        argnums: int or tuple of ints: the arguments whose gradients are checked.
        eps: finite-difference step, relative to the largest magnitude of the leaf.
        rtol, atol: a mismatch is reported when |ad - fd| > atol + rtol * max(|ad|, |fd|)
            plus the rounding error of the difference (1e-14 (|f(x)| + |f(x+hu)|) / h).
        directions: random directions per array leaf.
        seed: seed of the random directions.
        backend: the backend `tj.grad` compiles for ('interpreter', 'numba', 'cuda').
        grads: gradients computed elsewhere (e.g. by a nested transformation) to check
            instead of calling `tj.grad(f)`.

    Returns:
        The checked gradients, a tuple with one entry per `argnums`. Raises
        `GradientCheckError` (a `TracejitError` and an `AssertionError`) naming the argument,
        the leaf and the size of the mismatch.

    Example:
        >>> tj.check_grads(lambda x: np.sum(np.sin(x) ** 2), (np.linspace(0, 1, 5),))
        (array([...]),)
        >>> tj.check_grads(lambda x: np.sum(tj.stop_gradient(x) * x), (np.ones(3),))
        Traceback (most recent call last):
        ...
        tracejit.gradcheck.GradientCheckError: check_grads(<lambda>): the gradient w.r.t. ...
    """
    args = tuple(_to_f64(a) for a in args)
    nums = (argnums,) if isinstance(argnums, int) else tuple(argnums)
    name = getattr(f, "__name__", "fn")
    if grads is None:
        grads = grad(f, argnums=nums, backend=backend)(*args)
    rng = np.random.default_rng(seed)
    for i, g in zip(nums, grads):
        leaves, tree = pytree.flatten(args[i])
        g_leaves, g_tree = pytree.flatten(g)
        where = _arg_name(f, i, "")
        if g_tree != tree:
            raise GradientCheckError(f"check_grads({name}): the gradient w.r.t. {where} has "
                                     f"structure {g_tree}, the argument {tree}.")
        for k, (x, gx, path) in enumerate(zip(leaves, g_leaves, pytree.leaf_paths(tree))):
            if not (isinstance(x, np.ndarray) and np.issubdtype(x.dtype, np.floating)):
                continue
            if np.shape(gx) != x.shape:
                raise GradientCheckError(
                    f"check_grads({name}): the gradient w.r.t. {_arg_name(f, i, path)} has "
                    f"shape {np.shape(gx)}, the argument {x.shape}.")
            h = eps * max(1.0, float(np.max(np.abs(x)))) if x.size else eps
            for d in range(directions):
                u = rng.standard_normal(x.shape)
                u /= max(np.linalg.norm(u), 1e-300)
                fp, fm, f0 = _central_difference(f, args, i, tree, leaves, k, u, h)
                fd = (fp - fm) / (2 * h)
                ad = float(np.sum(u * np.asarray(gx, dtype=np.float64)))
                tol = atol + rtol * max(abs(ad), abs(fd)) + 1e-14 * (abs(f0) + abs(fp)) / h
                if not abs(ad - fd) <= tol:
                    raise GradientCheckError(
                        f"check_grads({name}): the gradient w.r.t. {_arg_name(f, i, path)} "
                        f"does not match finite differences (direction {d + 1} of {directions}).\n"
                        f"  tracejit  <u, grad> = {ad:.10g}\n"
                        f"  finite differences  = {fd:.10g}   (h={h:g})\n"
                        f"  mismatch |ad - fd|  = {abs(ad - fd):.3g} > tolerance {tol:.3g} "
                        f"(rtol={rtol:g}, atol={atol:g}); f(x) = {f0:.10g}\n"
                        "Fix: if you used stop_gradient or custom_vjp here on purpose, this "
                        "is expected; otherwise check the VJP rules involved "
                        "(TRACEJIT_DEBUG=1 prints the joint graph).")
    return grads
