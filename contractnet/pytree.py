"""Nested dicts, lists and tuples of arrays (pytrees): the primals of
``vjp`` and ``grad`` and their gradients, taken apart into leaves and put
back together in the same structure.
"""
from __future__ import annotations

import collections
from typing import Any, Callable


def flatten_tree(tree: Any) -> tuple[list, Callable[[list], Any]]:
    """Leaves of nested dicts/lists/tuples and a function rebuilding the tree.

    Examples
    --------
    >>> leaves, rebuild = flatten_tree({"w": 1, "b": [2, 3]})
    >>> leaves, rebuild([4, 5, 6])
    ([1, 2, 3], {'w': 4, 'b': [5, 6]})
    """
    if isinstance(tree, dict):
        keys = list(tree)
        parts = [flatten_tree(tree[k]) for k in keys]
        make = lambda out: _refilled(tree, keys, out)  # noqa: E731
    elif isinstance(tree, (list, tuple)):
        parts = [flatten_tree(t) for t in tree]
        kind = type(tree)
        make = (lambda out: kind(*out)) if hasattr(kind, "_fields") else kind  # a namedtuple
    else:
        return [tree], _only_leaf
    return [leaf for leaves, _ in parts for leaf in leaves], rebuilder(parts, make)


def _refilled(tree: dict, keys: list, values: list) -> dict:
    """``tree``'s keys with new values: an ``OrderedDict`` or a ``defaultdict``
    (with its factory) as itself, any other dict as a plain dict (a subclass's
    constructor may take other arguments)."""
    pairs = zip(keys, values)
    if type(tree) is collections.OrderedDict:
        return collections.OrderedDict(pairs)
    if type(tree) is collections.defaultdict:
        return collections.defaultdict(tree.default_factory, pairs)
    return dict(pairs)


def rebuilder(parts: list, make: Callable[[list], Any]) -> Callable[[list], Any]:
    """Rebuild a container from leaves: each part, a ``(leaves, rebuild)``
    pair, takes its share in order, and ``make`` assembles the results."""
    counts = [len(leaves) for leaves, _ in parts]

    def rebuild(leaves: list):
        out, start = [], 0
        for (_, build), n in zip(parts, counts):
            out.append(build(leaves[start:start + n]))
            start += n
        return make(out)
    return rebuild


def _only_leaf(leaves: list) -> Any:
    return leaves[0]


def named_leaves(tree: Any, name: str) -> list[tuple[str, Any]]:
    """Each leaf of ``tree`` in :func:`flatten_tree`'s order, named by ``name``
    followed by the keys and positions leading to it."""
    if isinstance(tree, dict):
        return [pair for k in tree for pair in named_leaves(tree[k], f"{name}[{k!r}]")]
    if isinstance(tree, (list, tuple)):
        return [pair for i, t in enumerate(tree) for pair in named_leaves(t, f"{name}[{i}]")]
    return [(name, tree)]
