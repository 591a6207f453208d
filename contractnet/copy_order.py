"""The order in which a GEMM operand that must be copied is laid out.

:func:`contractnet.pair.plan_pair` lays each operand of a pair out as a
(batched) matrix: its batch indices, then its own indices (those the other
operand lacks) and the summed ones, the group holding the operand's
fastest axis innermost, each group in memory order (the summed group, which
both operands share, in the larger operand's).  An operand that is
not a view of that matrix is copied into it, and numpy's copy runs one
inner loop along the innermost axis.  Where that axis holds 2-4 elements
and the copy cannot join it with the next axis out, the loop covers a few
elements at a time, and the copy costs several times one that runs along
a long axis, even a strided one (:func:`short_inner_loop`); where its
elements lie a page or more apart, every read lands on another page
(:func:`slow_inner_loop`).  In either case the plan then
lays the operand out along a long axis whose elements lie near each other
(:func:`copies_fast_along`): the same group's, moved innermost
(:func:`fast_last`), or the other group's, that group going innermost
instead (:func:`copy_layout`).  A group is reordered the same way
whether it holds the operand's own indices or summed ones
(:func:`copy_layouts`), so a backward pass, in which an operand's own
indices are summed, mostly lays it out as its forward pass did and reuses
the forward pass's copy of it.

``benchmarks/copy_order.py`` times these layouts against the ones asked for.
"""
from __future__ import annotations

import math
from typing import Sequence

#: An innermost axis of at most this many elements makes a short inner loop.
SHORT_AXIS = 4
#: An axis of at least this many elements makes a long inner loop ...
LONG_AXIS = 16
#: ... where its elements lie less than this many bytes (a page) apart.
NEAR = 4096


def last_moving(group: Sequence[str], size: dict[str, int]) -> str | None:
    """The innermost index of ``group`` longer than 1, if any.

    >>> last_moving("abc", {"a": 4, "b": 7, "c": 1})
    'b'
    """
    return next((n for n in reversed(group) if size[n] > 1), None)


def merges(group: Sequence[str], stride: dict[str, int], size: dict[str, int]) -> bool:
    """Whether the axes of ``group``, in this order, join into one axis of
    a view: each (longer than 1) nested in the next one out.

    >>> merges("ab", {"a": 24, "b": 8}, {"a": 20, "b": 3})
    True
    >>> merges("ab", {"a": 40, "b": 8}, {"a": 20, "b": 3})
    False
    """
    moving = [n for n in group if size[n] > 1]
    return all(stride[outer] == stride[inner] * size[inner]
               for outer, inner in zip(moving, moving[1:]))


def slow_inner_loop(group: Sequence[str], stride: dict[str, int], size: dict[str, int],
                    rest: Sequence[Sequence[str]] = ()) -> bool:
    """Whether an operand laid out as a GEMM matrix with ``group`` innermost,
    in this order, and its other groups ``rest`` outside it (innermost
    first), is copied with a slow inner loop: a short one
    (:func:`short_inner_loop`), or one along an axis whose elements lie a
    page or more (:data:`NEAR` bytes) apart, each read on another page
    than the last.

    ``group`` is the one holding the operand's fastest axis (or the one
    innermost when that axis is a batch axis), so where its innermost axis
    lies that far apart, no axis of the matrix has unit stride and the
    operand is copied whatever its order; unless the operand is broadcast
    (its "fastest" axis a stride-0 one), which counts as slow only for a
    short loop.

    Parameters
    ----------
    group : sequence of str
        The innermost group's indices, outermost first.
    stride, size : dict
        The operand's strides in bytes and its indices' sizes.
    rest : sequence of sequences of str
        The operand's other groups, innermost first.

    Returns
    -------
    bool

    Examples
    --------
    >>> slow_inner_loop("ab", {"a": 8192, "b": 4096}, {"a": 20, "b": 20})
    True
    """
    last = last_moving(group, size)
    if last is None:
        return False
    broadcast = any(stride[n] == 0 and size[n] > 1 for names in (group, *rest) for n in names)
    return ((abs(stride[last]) >= NEAR and not broadcast)
            or short_inner_loop(group, stride, size, rest))


def short_inner_loop(group: Sequence[str], stride: dict[str, int], size: dict[str, int],
                     rest: Sequence[Sequence[str]] = ()) -> bool:
    """Whether an operand laid out as a GEMM matrix with ``group`` innermost,
    in this order, and its other groups ``rest`` outside it (innermost
    first), is copied with an inner loop of at most :data:`SHORT_AXIS`
    elements.

    That is so where the group's innermost axis is that short (and not
    broadcast), numpy's copy cannot join it with the next axis out into
    one loop (it is not nested in that axis), and the operand is copied
    whatever its order: the axis has a next one out in its own group (the
    group then cannot be one axis of a view), or another group cannot be
    one axis of a view.

    Such a copy costs several times one along a long axis: a float32
    (512, 4, 8, 17, 3) view whose 3-axis is not nested in its 17-axis (its
    8-axis, taken from 16 with a step of 2, lies between them in memory)
    copied in 1.29 ms with its 3-axis innermost and in 0.37 ms with its
    17-axis.

    Parameters
    ----------
    group, stride, size, rest
        As for :func:`slow_inner_loop`.

    Returns
    -------
    bool

    Examples
    --------
    >>> short_inner_loop("ab", {"a": 40, "b": 8}, {"a": 20, "b": 3})
    True
    >>> short_inner_loop("ab", {"a": 24, "b": 8}, {"a": 20, "b": 3})  # nested
    False
    """
    moving = [n for n in group if size[n] > 1]
    if not moving or size[moving[-1]] > SHORT_AXIS or stride[moving[-1]] == 0:
        return False
    if len(moving) > 1:
        return not merges(moving[-2:], stride, size)
    next_out = next((last for last in (last_moving(other, size) for other in rest)
                     if last is not None), None)
    if next_out is not None and merges([next_out, moving[-1]], stride, size):
        return False
    return not all(merges(other, stride, size) for other in rest)


def copies_fast_along(name: str, stride: dict[str, int], size: dict[str, int]) -> bool:
    """Whether a copy's inner loop runs fast along axis ``name``: it holds at
    least :data:`LONG_AXIS` elements, less than :data:`NEAR` bytes apart
    (farther apart, each read lands on another page than the last).

    >>> copies_fast_along("a", {"a": 96}, {"a": 17}), copies_fast_along("a", {"a": 8000}, {"a": 17})
    (True, False)
    """
    return size[name] >= LONG_AXIS and abs(stride[name]) < NEAR


def fast_last(group: Sequence[str], stride: dict[str, int],
              size: dict[str, int]) -> list[str] | None:
    """``group`` with its longest axis that a copy runs fast along
    (:func:`copies_fast_along`; the nearer of two as long) moved innermost,
    the others in order; None where it has no such axis.

    >>> fast_last(["a", "b", "c"], {"a": 8000, "b": 96, "c": 8}, {"a": 32, "b": 17, "c": 3})
    ['a', 'c', 'b']
    """
    fast = [n for n in group if copies_fast_along(n, stride, size)]
    if not fast:
        return None
    best = max(fast, key=lambda n: (size[n], -abs(stride[n])))
    return [n for n in group if n != best] + [best]


def copy_layout(own: list[str], summed: list[str], stride: dict[str, int],
                size: dict[str, int], own_inner: bool,
                batch: Sequence[str] = ()) -> tuple[list[str], bool]:
    """An operand's own group of indices, and whether it goes innermost in
    the operand's GEMM matrix (else the summed group does), changed where
    the layout asked for would copy the operand with a slow inner loop
    (:func:`slow_inner_loop`).

    The own group goes innermost, in memory order if a copy runs fast
    along its innermost axis (:func:`copies_fast_along`), else with such
    an axis moved innermost (:func:`fast_last`); else the summed group
    does, where a copy runs fast along its innermost axis; else the layout
    stays as asked.  (The summed group is shared with the other operand:
    its order is the caller's to choose.)

    Parameters
    ----------
    own, summed : list of str
        The operand's own indices and the summed ones, each in its order.
    stride, size : dict
        The operand's strides in bytes, and every index's size.
    own_inner : bool
        Whether the layout asked for has the own group innermost.
    batch : sequence of str
        The operand's batch indices, outermost.

    Returns
    -------
    own : list of str
        The own group, perhaps reordered.
    own_inner : bool
        Whether it goes innermost.
    """
    inner, outer = (own, summed) if own_inner else (summed, own)
    if not slow_inner_loop(inner, stride, size, (outer, batch)):
        return own, own_inner
    last = last_moving(own, size)
    if last is not None and copies_fast_along(last, stride, size):
        return own, True
    reordered = fast_last(own, stride, size)
    if reordered is not None:
        return reordered, True
    last = last_moving(summed, size)
    if own_inner and last is not None and copies_fast_along(last, stride, size):
        return own, False
    return own, own_inner


def copy_layouts(batch: list[str], summed: list[str], own: tuple[list[str], list[str]],
                 stride: tuple[dict, dict], size: dict[str, int],
                 own_inner: tuple[bool, bool]) -> tuple[list[str], list, list]:
    """Both operands' layouts for their copies.

    Where the larger operand has the summed group innermost with a slow
    inner loop (:func:`slow_inner_loop`), that group first takes its longest near axis innermost
    (:func:`fast_last`), as an operand's own group would: a backward pass
    that holds the same operand with those indices as its own then lays
    it out as the forward pass did, and reuses its copy.  The summed
    group's order is shared, so this happens only where the smaller
    operand is copied anyway or holds at most a quarter of the larger's
    elements (a view of it then becomes a copy).  Then each operand takes
    a layout of its own (:func:`copy_layout`).

    Parameters
    ----------
    batch, summed : list of str
        The batch and summed indices, in the order planned.
    own, stride, own_inner : pairs
        Each operand's own indices, strides in bytes, and whether its
        layout asked for has its own group innermost.
    size : dict
        Every index's size.

    Returns
    -------
    summed : list of str
        The summed group, perhaps reordered.
    own, own_inner : lists
        Each operand's own group and whether it goes innermost.
    """
    own, own_inner = list(own), list(own_inner)
    count = [math.prod(size[n] for n in batch + summed + group) for group in own]
    big = 0 if count[0] >= count[1] else 1
    small = 1 - big
    if not own_inner[big] and slow_inner_loop(summed, stride[big], size, (own[big], batch)):
        reordered = fast_last(summed, stride[big], size)
        copied = not all(merges(group, stride[small], size)
                         for group in (batch, own[small], summed))
        if reordered is not None and (copied or 4 * count[small] <= count[big]):
            summed = reordered
    for i in (big, small):
        own[i], own_inner[i] = copy_layout(own[i], summed, stride[i], size, own_inner[i], batch)
    return summed, own, own_inner
