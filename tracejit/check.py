"""`check_grads`: compare tracejit's gradients with central finite differences.

For each differentiated argument and each of its array leaves, in a few random directions u:

    <u, grad f(x)>  ≈  (f(x + eps u) - f(x - eps u)) / (2 eps)       (all in float64)

This is autograd's `check_vjp` / JAX's `check_grads` (order 1, reverse mode). Testing one
leaf at a time costs two evaluations per direction and lets the error name the leaf.
"""
from __future__ import annotations

import inspect
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from . import pytree
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


def _leaf_paths(tree) -> list[str]:
    """Readable paths of a treedef's leaves: '', '[0]', "['W']", ..."""
    kind = tree[0]
    if kind == "leaf":
        return [""]
    if kind == "none":
        return []
    keys = tree[1] if kind == "dict" else range(len(tree[1]))
    return [f"[{k!r}]" + p for k, child in zip(keys, tree[-1]) for p in _leaf_paths(child)]


def _central_difference(value: Callable, args: tuple, i: int, tree, leaves: list, k: int,
                        u: np.ndarray, eps: float) -> float:
    """(f(x + eps u) - f(x - eps u)) / (2 eps), moving only leaf k of argument i."""
    def at(t: float) -> float:
        moved = list(leaves)
        moved[k] = leaves[k] + t * u
        new = list(args)
        new[i] = pytree.unflatten(tree, moved)
        return float(value(*new))
    return (at(eps) - at(-eps)) / (2 * eps)


def check_grads(f: Callable, args: Sequence[Any], argnums=0, *, eps: float = 1e-6,
                rtol: float = 1e-5, atol: float = 1e-8, directions: int = 2,
                seed: int = 0) -> None:
    """Check `tj.grad(f)` against central finite differences, in float64.

    Args:
        f: a function returning a scalar loss, as you would pass to `tj.grad`.
        args: the positional arguments (a tuple); float leaves are cast to float64.
        argnums: int or tuple of ints: the arguments whose gradients are checked.
        eps: finite-difference step (relative to the direction's unit norm).
        rtol, atol: a mismatch is reported when
            |ad - fd| > atol + rtol * max(|ad|, |fd|, ||u|| ||grad||).
        directions: random directions per array leaf.
        seed: seed of the random directions.

    Returns:
        None. Raises `GradientCheckError` (a `TracejitError` and an `AssertionError`) naming
        the argument, the leaf and the size of the mismatch.

    Example:
        >>> tj.check_grads(lambda x: np.sum(np.sin(x) ** 2), (np.linspace(0, 1, 5),))
        >>> tj.check_grads(lambda x: np.sum(tj.stop_gradient(x) * x), (np.ones(3),))
        Traceback (most recent call last):
        ...
        tracejit.check.GradientCheckError: check_grads(<lambda>): the gradient w.r.t. argument 0 ...
    """
    from .api import grad, jit  # api imports nothing from here; avoid an import cycle anyway
    args = tuple(_to_f64(a) for a in args)
    nums = (argnums,) if isinstance(argnums, int) else tuple(argnums)
    name = getattr(f, "__name__", "fn")
    value = jit(f)
    grads = grad(f, argnums=nums)(*args)
    rng = np.random.default_rng(seed)
    for i, g in zip(nums, grads):
        leaves, tree = pytree.flatten(args[i])
        g_leaves = pytree.flatten(g)[0]
        for k, (x, gx, path) in enumerate(zip(leaves, g_leaves, _leaf_paths(tree))):
            if not (isinstance(x, np.ndarray) and np.issubdtype(x.dtype, np.floating)):
                continue
            for d in range(directions):
                u = rng.standard_normal(x.shape)
                u /= max(np.linalg.norm(u), 1e-300)

                fd = _central_difference(value, args, i, tree, leaves, k, u, eps)
                ad = float(np.sum(u * np.asarray(gx, dtype=np.float64)))
                scale = max(abs(ad), abs(fd), float(np.linalg.norm(gx)))
                if not abs(ad - fd) <= atol + rtol * scale:
                    raise GradientCheckError(
                        f"check_grads({name}): the gradient w.r.t. {_arg_name(f, i, path)} "
                        f"does not match finite differences (direction {d + 1} of {directions}).\n"
                        f"  tracejit  <u, grad> = {ad:.10g}\n"
                        f"  finite differences  = {fd:.10g}   (eps={eps:g})\n"
                        f"  mismatch |ad - fd|  = {abs(ad - fd):.3g}, relative "
                        f"{abs(ad - fd) / max(scale, 1e-300):.3g} (rtol={rtol:g}, "
                        f"atol={atol:g})\n"
                        "Fix: if you used stop_gradient or custom_vjp here on purpose, this "
                        "is expected; otherwise check the VJP rules involved "
                        "(TRACEJIT_DEBUG=1 prints the joint graph).")
