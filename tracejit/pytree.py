"""Flatten nested tuples, lists and dicts into leaves, and build them back.

The treedef is hashable so it can be part of a compiled function's cache key.
"""
from __future__ import annotations

from collections.abc import Callable
from typing import Any

# a treedef is a nested tuple: ("leaf",), ("none",), ("tuple", children), ("list", children),
# ("dict", keys, children)
Treedef = tuple

LEAF: Treedef = ("leaf",)


def flatten(tree: Any) -> tuple[list[Any], Treedef]:
    """Leaves of `tree` in order, and its structure."""
    leaves: list[Any] = []
    return leaves, _flatten(tree, leaves)


def _flatten(tree: Any, leaves: list[Any]) -> Treedef:
    t = type(tree)
    if t is tuple or t is list:
        return (t.__name__, tuple(_flatten(c, leaves) for c in tree))
    if t is dict:
        keys = tuple(sorted(tree, key=repr))
        return ("dict", keys, tuple(_flatten(tree[k], leaves) for k in keys))
    if tree is None:
        return ("none",)
    leaves.append(tree)
    return LEAF


def unflatten(treedef: Treedef, leaves: list[Any]) -> Any:
    """Inverse of `flatten`."""
    it = iter(leaves)
    return _unflatten(treedef, it)


def _unflatten(treedef: Treedef, it) -> Any:
    kind = treedef[0]
    if kind == "leaf":
        return next(it)
    if kind == "none":
        return None
    if kind == "dict":
        return {k: _unflatten(c, it) for k, c in zip(treedef[1], treedef[2])}
    children = [_unflatten(c, it) for c in treedef[1]]
    return tuple(children) if kind == "tuple" else children


def num_leaves(treedef: Treedef) -> int:
    kind = treedef[0]
    if kind == "leaf":
        return 1
    if kind == "none":
        return 0
    return sum(num_leaves(c) for c in treedef[-1])


def tree_map(fn: Callable[[Any], Any], tree: Any) -> Any:
    leaves, treedef = flatten(tree)
    return unflatten(treedef, [fn(x) for x in leaves])


def leaf_paths(tree) -> list[str]:
    """Readable paths of a treedef's leaves, for messages: '', '[0]', "['W']", ..."""
    kind = tree[0]
    if kind == "leaf":
        return [""]
    if kind == "none":
        return []
    keys = tree[1] if kind == "dict" else range(len(tree[1]))
    return [f"[{k!r}]" + p for k, child in zip(keys, tree[-1]) for p in leaf_paths(child)]
