"""The pairwise path along which three or more plain terms are contracted.

Each term first sums the indices only it has (:func:`lone_sums`), terms of
the same indices are multiplied (:func:`_multiply_same_indices`), and
opt_einsum's ``"auto"`` path pairs the rest; a term read through a window of
several offsets may take a path of its own (:func:`_window_path`).  Each
intermediate is laid out as the product that reads it next wants
(:func:`_consumer_order`).  :func:`contractnet.engine.run_path` runs the
steps on arrays; for a traced einsum, :func:`contractnet.engine.pairwise_steps`
plans them once as recorded contractions.
"""
from __future__ import annotations

import math
from collections import Counter
from functools import lru_cache

import opt_einsum
from opt_einsum.contract import PathInfo

from .pair import c_strides
from .written_order import MIN_RUN, Laid, contiguous_run


@lru_cache(maxsize=512)
def plan_path(terms: tuple[str, ...], shapes: tuple, target: str,
              window_offsets: tuple[tuple[int, str], ...] = ()):
    """The pairwise path for plain terms (see :func:`contraction_path`).

    Returns ``(steps, largest)``: each step is ``(positions, kept)``: pop the
    operands at ``positions`` (descending) from the current list, contract
    them (or sum the one) keeping the indices ``kept``, append the result.
    ``largest`` is the element count of the largest intermediate.
    """
    steps, _, largest = contraction_path(terms, shapes, target, window_offsets)
    return steps, largest


def contraction_path(terms: tuple[str, ...], shapes: tuple, target: str,
                     window_offsets: tuple[tuple[int, str], ...] = ()
                     ) -> tuple[tuple, PathInfo, int]:
    """The steps of :func:`plan_path`, opt_einsum's account of the pairs (its
    ``PathInfo``: FLOPs, largest intermediate, the equation it planned), and
    the element count of the largest intermediate, the sums' included.

    With three or more terms, each term first sums the indices only it has
    (:func:`lone_sums`), terms of the same indices are multiplied
    (:func:`_multiply_same_indices`; not where a term is read through a
    window of several offsets), and opt_einsum's ``"auto"`` path then pairs
    the results.  The ``PathInfo`` covers that last part alone.
    ``window_offsets`` names the terms read through windows of several
    offsets: each one's position and its offset indices.  opt_einsum counts
    such a term as its full read, every offset an axis, and may keep
    offsets past the product that reads it: an intermediate, and a
    gradient, that can be as large as the window's copy, a cost its FLOP
    count does not see.  Where there is one such term, :func:`_window_path`
    may take a path that sums them in that product instead.
    """
    size = {n: d for t, shape in zip(terms, shapes) for n, d in zip(t, shape)}
    summed = lone_sums(terms, target) if len(terms) > 2 else {}
    steps, current = [], [t for i, t in enumerate(terms) if i not in summed]
    made_by: list = [None] * len(current)
    made_from: list = []  # each step's operands, two for a pair
    for i, kept in summed.items():  # each summed term goes last, in order
        steps.append(((i - len(steps),), kept))
        made_from.append((terms[i],))
        current.append(kept)
        made_by.append(len(steps) - 1)
    largest = max((math.prod(size[n] for n in kept) for kept in summed.values()), default=0)
    if not window_offsets:
        largest = max(largest, _multiply_same_indices(steps, current, made_by, made_from,
                                                      target, size))
    eq = ",".join(current) + "->" + target
    path, info = opt_einsum.contract_path(
        eq, *(tuple(size[n] for n in t) for t in current), shapes=True, optimize="auto")
    if len(window_offsets) == 1 and len(current) > 2:
        (position, offsets), = window_offsets
        order = [i for i in range(len(terms)) if i not in summed] + list(summed)
        path, info = _window_path(path, info, current, target, size, order.index(position),
                                  offsets)
    for positions in path:
        positions = tuple(sorted(positions, reverse=True))
        assert len(positions) <= 2, "opt_einsum paths are pairwise"
        picked = [current.pop(p) for p in positions]
        makers = [made_by.pop(p) for p in positions]
        rest = "".join(current) + target
        kept = _kept(reversed(picked), rest)
        if len(picked) == 2 and makers[0] is not None:
            # the later operand is an intermediate: lay it out as this step reads it
            b, a = picked
            b = _consumer_order(b, a, kept, made_from[makers[0]], size)
            steps[makers[0]] = (steps[makers[0]][0], b)
            picked = [b, a]
            kept = _kept((a, b), rest)
        if not current:  # the last step: written in the target's order, not permuted after
            kept = target
        steps.append((positions, kept))
        made_from.append(tuple(picked))
        current.append(kept)
        made_by.append(len(steps) - 1)
    return tuple(steps), info, max(largest, int(info.largest_intermediate))


def _multiply_same_indices(steps: list, current: list[str], made_by: list, made_from: list,
                           target: str, size: dict[str, int]) -> int:
    """Append to ``steps`` the products of the terms in ``current`` that
    have the same indices (:func:`_same_indices`), until none are left or
    two terms are; the path's lists are updated as :func:`contraction_path`
    keeps them.  Returns the largest product's element count.

    Such a product is no larger than either term, and a path that pairs the
    two later reads one term where this one reads two, none of its
    intermediates gaining an index.  opt_einsum's paths may miss it:
    ``"daba,d,ced->ce"`` (d=64, c=96, e=64, float64) becomes
    ``"d,ced,d->ce"`` once ``daba`` sums what only it has, and opt_einsum's
    ``"auto"`` path then scaled ``ced`` by one ``d`` (393,216 products,
    where ``d`` times ``d`` takes 64): 3.1 times as long as numpy.einsum's
    greedy path, forward+backward 6.8 ms instead of 0.57 ms.
    """
    largest = 0
    while len(current) > 2 and (pair := _same_indices(current)) is not None:
        positions = tuple(sorted(pair, reverse=True))
        picked = [current.pop(p) for p in positions]
        for p in positions:
            made_by.pop(p)
        kept = _kept(reversed(picked), "".join(current) + target)
        steps.append((positions, kept))
        made_from.append(tuple(picked))
        current.append(kept)
        made_by.append(len(steps) - 1)
        largest = max(largest, math.prod(size[n] for n in kept))
    return largest


def _same_indices(terms: list[str]) -> tuple[int, int] | None:
    """The positions of the first two terms with the same indices, or None.

    >>> _same_indices(["d", "ced", "d"]), _same_indices(["ij", "jk"])
    ((0, 2), None)
    """
    seen: dict[frozenset, int] = {}
    for i, t in enumerate(terms):
        j = seen.setdefault(frozenset(t), i)
        if j != i:
            return j, i
    return None


def _kept(terms, rest: str) -> str:
    """The indices of ``terms`` that ``rest`` (the other terms and the
    target) still needs: what contracting ``terms`` keeps, in order."""
    return "".join(dict.fromkeys(n for t in terms for n in t if n in rest))


def _window_path(path: list, info: PathInfo, terms: list[str], target: str,
                 size: dict[str, int], x: int, offsets: str) -> tuple[list, PathInfo]:
    """opt_einsum's ``path`` for ``terms`` (and its ``info``), or the path
    that reads window term ``x`` in one product (:func:`_one_window_step`).

    The second is taken where the first keeps any of the window's
    ``offsets`` past the product that reads ``x``, in an intermediate larger
    than the read divided by its offsets (at stride 1, about the operand
    the window slides over), and where it costs no more FLOPs and has no
    larger intermediate.
    """
    kept = _read_product(path, terms, target, x)
    volume = lambda names: math.prod(size[n] for n in names)  # noqa: E731
    if not set(offsets) & set(kept) or volume(kept) * volume(offsets) <= volume(terms[x]):
        return path, info
    read_once = _one_window_step(terms, target, size, x)
    if read_once is None:
        return path, info
    _, once = opt_einsum.contract_path(",".join(terms) + "->" + target,
                                       *(tuple(size[n] for n in t) for t in terms),
                                       shapes=True, optimize=read_once)
    cheaper = (once.opt_cost <= info.opt_cost
               and once.largest_intermediate <= info.largest_intermediate)
    return (read_once, once) if cheaper else (path, info)


def _read_product(path, terms: list[str], target: str, x: int) -> str:
    """The indices kept by the product of ``path`` (opt_einsum's form) that
    takes term ``x``."""
    current = [(i, t) for i, t in enumerate(terms)]
    for positions in path:
        picked = [current[p] for p in positions]
        for p in sorted(positions, reverse=True):
            current.pop(p)
        rest = "".join(t for _, t in current) + target
        kept = _kept((t for _, t in picked), rest)
        if any(i == x for i, _ in picked):
            return kept
        current.append((None, kept))
    return terms[x]


def _one_window_step(terms: list[str], target: str, size: dict[str, int], x: int
                     ) -> list[tuple[int, ...]] | None:
    """A path (opt_einsum's form) in which window term ``x`` takes part in
    one product, which sums all its indices the target lacks: a convolution's
    single GEMM over the window's copy.

    The terms that share those indices are contracted first, among
    themselves (a kernel, or the part of one they make), then ``x`` with
    their result, then the rest, each part along opt_einsum's ``"auto"``
    path.  None when no other term shares the indices ``x`` sums.
    """
    summed = set(terms[x]) - set(target)
    kernel = [j for j, t in enumerate(terms) if j != x and summed & set(t)]
    if not kernel:
        return None
    ids, path, fresh = list(range(len(terms))), [], len(terms)
    names = dict(enumerate(terms))

    def take(picked: list[int]) -> int:
        """Contract the terms ``picked`` (by id); the id of their result."""
        nonlocal fresh
        positions = tuple(ids.index(i) for i in picked)
        path.append(positions)
        for p in sorted(positions, reverse=True):
            ids.pop(p)
        rest = "".join(names[i] for i in ids) + target
        names[fresh] = _kept((names[i] for i in picked), rest)
        ids.append(fresh)
        fresh += 1
        return fresh - 1

    def along_auto(group: list[int], keep: str) -> int:
        """Contract ``group`` into one term along opt_einsum's path."""
        if len(group) == 1:
            return group[0]
        eq = ",".join(names[i] for i in group) + "->" + keep
        sub, _ = opt_einsum.contract_path(
            eq, *(tuple(size[n] for n in names[i]) for i in group), shapes=True,
            optimize="auto")
        group = list(group)
        for positions in sub:
            picked = [group[p] for p in positions]
            for p in sorted(positions, reverse=True):
                group.pop(p)
            group.append(take(picked))
        return group[0]

    outside = "".join(names[i] for i in ids if i not in kernel) + target
    keep = _kept((terms[j] for j in kernel), outside)
    made = take([x, along_auto(kernel, keep)])
    along_auto([i for i in ids if i != made] + [made], target)
    return path


def lone_sums(terms: tuple[str, ...], target: str) -> dict[int, str]:
    """The terms that have indices no other term (nor the target) has, by
    position, each with the indices it keeps once it has summed those.

    The pairs would sum them first anyway, but opt_einsum, planning with
    them, counts them in every product their term enters, and can pick a
    path tens of times costlier: ``"jvoh,jos,hjs->os"`` at v=64, j=7,
    o=100, s=256, h=10 costs 233 million operations along its path, and 4
    million once ``v`` is summed.

    >>> lone_sums(("jvoh", "jos", "hjs"), "os")
    {0: 'joh'}
    """
    seen = Counter(n for t in terms for n in set(t))
    kept = {i: "".join(n for n in t if seen[n] > 1 or n in target) for i, t in enumerate(terms)}
    return {i: k for i, k in kept.items() if k != terms[i]}


def _consumer_order(b: str, a: str, kept: str, made_from: tuple[str, ...],
                    size: dict[str, int]) -> str:
    """Order intermediate ``b`` for the pair ``a, b -> kept`` so that its
    GEMM operand reshapes without a copy: batch indices in ``a``'s order,
    then its contracted indices in ``a``'s order and its own, either way
    round.

    Contracted first, unless the product that writes ``b`` (of the terms
    ``made_from``, taken to be C-ordered: inputs mostly are, and where one
    is not, the choice costs speed, not correctness) would write that order in a
    run shorter than :data:`~contractnet.written_order.MIN_RUN` elements
    and own-first in one at least that long: numpy.einsum writes a
    short-run order in an operand's order instead
    (:func:`~contractnet.written_order.written_order`), which can split the
    contracted group and make the GEMM copy ``b``.  (``"bi,bj,ijk->bk"`` at
    b=128, i=j=32, k=16 float32 wrote ``b`` as ``jbi`` for ``ijb``: its
    forward took 1.6 times as long as its two steps by hand, 1.2 with
    ``bij``, and forward+backward 3.1 times as long as with ``bij``.)

    >>> _consumer_order("bij", "ijk", "bk", ("bi", "bj"), {"b": 128, "i": 32, "j": 32})
    'bij'
    >>> _consumer_order("ijb", "ijk", "bk", ("ib", "jb"), {"b": 128, "i": 32, "j": 32})
    'ijb'
    """
    shared = [n for n in a if n in b]
    batch = [n for n in shared if n in kept]
    summed = [n for n in shared if n not in kept]
    own = [n for n in b if n not in a]
    orders = ["".join(batch + summed + own), "".join(batch + own + summed)]
    if len(made_from) != 2:
        return orders[0]
    shapes = [[size[n] for n in t] for t in made_from]
    laid = [Laid(t, dict(zip(t, c_strides(shape, 1))), math.prod(shape), 1)
            for t, shape in zip(made_from, shapes)]
    runs = [contiguous_run(order, laid, size) for order in orders]
    return orders[1] if runs[0] < MIN_RUN <= runs[1] else orders[0]
