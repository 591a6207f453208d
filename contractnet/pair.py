"""Two-operand contractions as (batched) GEMMs on reshaped views.

:func:`plan_pair` groups the indices of a pair of plain terms into batch,
contracted, left and right, and lays each operand out as a matrix, a view
wherever the operand's memory allows; :func:`contract_pair` runs the plan
with one BLAS call.  Three kinds of product are planned as a
``numpy.einsum`` equation instead: one that sums nothing (an outer
product), a tiny batched vector product, and batched dot products strided
along their sums; and an operand too large to copy is read in place by
it.  A :class:`Memo` carries the operands that had to be copied (im2col of
a window view) from a traced forward pass to its backward pass.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from functools import lru_cache
from typing import Any, Literal, NamedTuple, Sequence

import numpy as np

from .backend import backend
from .blocks import (EINSUM_LETTERS, LONG_SUM, SumBlocks, ascii_equation, fits_einsum, plan_blocks,
                     sum_in_blocks, sum_rows)
from .budget import BUDGET, check_allocation
from .copy_order import copy_layouts
from .written_order import Laid, written_order

MEMO_MAX_BYTES = 1 << 28  # larger copies are not kept for the backward pass


@dataclass(frozen=True, slots=True)
class PairPlan:
    """How to run a two-operand contraction of plain terms as one GEMM."""

    perm_a: tuple[int, ...] | None   # None: already in order
    perm_b: tuple[int, ...] | None
    shape_a: tuple[int, ...]
    shape_b: tuple[int, ...]
    swap_a: bool          # A is laid out (summed, left) and handed to BLAS transposed
    swap_b: bool          # B is laid out (right, summed) likewise
    flip: bool            # compute the transposed product: the result is (batch, right, left)
    result_shape: tuple[int, ...]
    result_names: str
    einsum_eq: str | None  # set for a tiny batched vector product, strided batched dot products,
    #                        or a product summing nothing: numpy.einsum
    strided_dots: bool = False  # einsum_eq's are batched dot products strided along their sums
    sum_blocks: SumBlocks | None = None  # strided dot products of more than LONG_SUM terms each
    #: for einsum_eq: each operand's axis order to copy it into first (None: read as it is)
    einsum_copies: tuple[tuple[int, ...] | None, tuple[int, ...] | None] | None = None


def _memory_order(group: list[str], stride: dict[str, int]) -> list[str]:
    """``group`` outermost-first as laid out in memory (stable for ties)."""
    return sorted(group, key=lambda n: -abs(stride[n]))


def c_strides(shape: Sequence[int], itemsize: int = 8) -> tuple[int, ...]:
    """Byte strides of a C-contiguous array of ``shape``."""
    strides, step = [], itemsize
    for n in reversed(shape):
        strides.append(step)
        step *= max(n, 1)
    return tuple(reversed(strides))


def _innermost(names: str, stride: dict[str, int], size: dict[str, int]) -> str | None:
    """The axis that varies fastest in memory (ignoring length-1 axes)."""
    moving = [n for n in names if size[n] > 1]
    return min(moving, key=lambda n: (abs(stride[n]), -size[n])) if moving else None


@lru_cache(maxsize=2048)
def plan_pair(an: str, ashape: tuple, astrides: tuple, bn: str, bshape: tuple,
              bstrides: tuple, keep: str, prefer: str | None = None,
              any_layout: bool = False,
              itemsizes: tuple[int, int] | None = None) -> PairPlan:
    """Plan ``an,bn->(indices of keep)`` as one (batched) GEMM on reshaped views,
    or as a ``numpy.einsum`` equation (:attr:`PairPlan.einsum_eq`) for a
    product that sums nothing, a tiny batched vector product, or batched dot
    products (a matrix times a vector is a set of them) whose batch index is
    innermost in memory.

    The operands have no index of their own that is not kept (the caller
    sums those first).  The indices are batch (both operands, kept),
    contracted (both, not kept), left (first operand only) and right (second
    only).  Each group is ordered as laid out in memory (the contracted group
    as in the larger operand), and each operand is grouped so that its
    fastest-moving axis stays innermost, BLAS taking it transposed where that
    helps: a C-contiguous operand reshapes for free, and a window view copies
    with unit-stride inner loops.  An operand copied whatever its order
    whose copy would run a slow inner loop (an innermost axis of 2-4
    elements, or one whose elements lie a page apart) is laid out along a
    long, near axis instead; the summed group's order may then change,
    and with it a smaller operand's view become a copy (see
    :mod:`contractnet.copy_order`).

    A product that sums nothing may first copy its operands into the
    result's order (:attr:`PairPlan.einsum_copies`, see
    :func:`result_order_copies`, which reads ``itemsizes``).

    Batched dot products strided along their sums go to numpy.einsum,
    which adds each one's terms one by one; sums of more than
    :data:`LONG_SUM` terms are cut into blocks for it
    (:attr:`PairPlan.sum_blocks`, see :mod:`contractnet.blocks`), to keep
    about a GEMM's digits.

    The result is laid out (batch, left, right), or (batch, right, left) when
    that is nearer ``prefer``, or without it ``keep`` (index names
    outermost-first; the product is then computed transposed, one BLAS call
    as well, and is not transposed after); numpy.einsum writes it
    C-ordered in ``prefer``'s order when given, else in ``keep``'s, or, with
    ``any_layout`` (the caller reads any layout: a forward pass, a step
    inside a path), in the order :mod:`contractnet.written_order` picks,
    which reads the operands' strides in elements (``itemsizes``: a's and
    b's, required with ``any_layout``; without them no operand is copied
    for numpy.einsum).
    """
    size = dict(zip(an, ashape)) | dict(zip(bn, bshape))
    sa, sb = dict(zip(an, astrides)), dict(zip(bn, bstrides))
    a2, b2 = an, bn
    batch = _memory_order([n for n in a2 if n in b2 and n in keep], sa)
    summed = [n for n in a2 if n in b2 and n not in keep]
    summed = _memory_order(summed, sb if math.prod(bshape) > math.prod(ashape) else sa)
    left = _memory_order([n for n in a2 if n not in b2], sa)
    right = _memory_order([n for n in b2 if n not in a2], sb)
    # each operand's fastest axis innermost, BLAS taking A transposed where its
    # own group is innermost and B where its summed group is; an operand copied
    # with a slow inner loop is laid out along a long, near axis instead
    summed, (left, right), (swap_a, own_inner_b) = copy_layouts(
        batch, summed, (left, right), (sa, sb), size,
        (_innermost(a2, sa, size) in left, _innermost(b2, sb, size) not in summed))
    swap_b = not own_inner_b
    bt, m, k, n_ = (math.prod(size[i] for i in g) for g in (batch, left, summed, right))
    wanted = keep if prefer is None else prefer
    flip = _inversions(batch + right + left, wanted) < _inversions(batch + left + right, wanted)
    result = "".join(batch + (right + left if flip else left + right))
    eq = None
    # numpy.einsum, which writes any order, where a GEMM is slow:
    # - products that sum nothing (outer products: a GEMM with inner dimension 1);
    # - tiny batched vector products (m or n is 1, the other at most 2, at most 32
    #   terms each), for which numpy's matmul makes one BLAS call apiece, two to
    #   three times slower than einsum's one loop; a batched GEMM of 2x2 matrices
    #   or larger runs five times faster than einsum's loop;
    # - batched vector products (m or n is 1: dot products) strided along their
    #   sums in both operands (a batch index innermost: "ab,ab->b", "kdu,dk->ku"
    #   with k innermost), whose GEMM copies both operands batch-outermost first,
    #   up to 30 times slower, once there are 16 or more of them and 4096 terms in
    #   all (fewer are faster as GEMMs, or as tiny products); sums of more than
    #   LONG_SUM terms add up in blocks (blocks.py), which take one more of
    #   einsum's letters
    vector = min(m, n_) == 1
    tiny = bt > 1 and vector and max(m, n_) <= 2 and k <= 32
    strided_dots = (bool(summed) and vector and bt >= 16 and bt * m * n_ * k >= 4096
                    and _innermost(a2, sa, size) in batch and _innermost(b2, sb, size) in batch
                    and (k <= LONG_SUM or len(size) < len(EINSUM_LETTERS)))
    blocks = copies = None
    if (not summed or tiny or strided_dots) and fits_einsum(size):
        # in the order asked for, else the caller's own (then no transpose follows),
        # else, with any layout, the one numpy writes fastest
        result = "".join(sorted(result, key=(prefer or keep).index))
        if any_layout and prefer is None:
            result = written_order(result, size,
                                   Laid(a2, sa, math.prod(ashape), itemsizes[0]),
                                   Laid(b2, sb, math.prod(bshape), itemsizes[1]),
                                   sums=bool(summed))
        terms = [a2, b2]
        if not summed and itemsizes is not None:
            copies = result_order_copies(a2, sa, b2, sb, size, itemsizes, result)
            if copies is not None:
                terms = ["".join(t[i] for i in p) if p else t for t, p in zip(terms, copies)]
        eq, flip = ascii_equation(terms, result), False
        if strided_dots:
            blocks = plan_blocks([a2, b2], size, summed, result)
    lead = (bt,) if batch else ()
    perm_a = tuple(a2.index(i) for i in batch + (summed + left if swap_a else left + summed))
    perm_b = tuple(b2.index(i) for i in batch + (right + summed if swap_b else summed + right))
    return PairPlan(None if perm_a == tuple(range(len(a2))) else perm_a,
                    None if perm_b == tuple(range(len(b2))) else perm_b,
                    lead + ((k, m) if swap_a else (m, k)), lead + ((n_, k) if swap_b else (k, n_)),
                    swap_a, swap_b, flip, tuple(size[i] for i in result), result, eq,
                    eq is not None and strided_dots, blocks, copies)


#: The run numpy.einsum's loop must get, in elements, and the product's size, for
#: :func:`result_order_copies` to copy operands into the result's order.
MIN_COPIED_RUN = 16
MIN_COPIED_PRODUCT = 1 << 14


def result_order_copies(an: str, sa: dict, bn: str, sb: dict, size: dict[str, int],
                        itemsizes: tuple[int, int], result: str
                        ) -> tuple[tuple[int, ...] | None, tuple[int, ...] | None] | None:
    """For a product that sums nothing, written in the order ``result``: the
    axis orders into which to copy the operands before numpy.einsum reads
    them (a permutation of an operand's axes, or None to read it as it is),
    or None to read both as they are.

    numpy's loop runs along the result's innermost index, joined with the
    next ones out where every operand holds them alike, and reads an operand
    that holds that index at a stride other than its item size element by
    element.  Copying the operands not laid out in the result's order into
    it (each no more than half the result, as the operands of a large outer
    product are) lets the loop read them in runs; it pays when the loop's
    run is then at least :data:`MIN_COPIED_RUN` elements, and the result at
    least :data:`MIN_COPIED_PRODUCT` (below that the copies' fixed costs
    weigh).
    Over 300 random such products whose innermost index an operand holds
    strided (``benchmarks/outer_copies.py``, two seeds), it copied in 208
    and 198, which then took a median of 0.64 and 0.62 of the time (7 and 4
    more than 1.1 times as long, at worst 1.28 times), all of them together
    about half.
    """
    total = math.prod(size[n] for n in result)
    live = [n for n in result if size[n] > 1]  # axes of length 1 neither help nor hinder
    if total < MIN_COPIED_PRODUCT:
        return None
    last = live[-1]
    laid = ((an, sa, itemsizes[0]), (bn, sb, itemsizes[1]))
    if all(last not in names or stride[last] == item for names, stride, item in laid):
        return None  # read in runs already
    run, held = 1, None
    for n in reversed(live):
        holders = (n in an, n in bn)
        if held is not None and holders != held:
            break
        run, held = run * size[n], holders
    if run < MIN_COPIED_RUN:
        return None
    copies = []
    for names, stride, item in laid:
        order = [n for n in live if n in names]
        expected, in_order = item, True
        for n in reversed(order):  # C order along the result's: strides grow outwards
            in_order = in_order and stride[n] == expected
            expected *= size[n]
        count = math.prod(size[n] for n in names)
        if in_order or 2 * count > total:
            copies.append(None)
        else:
            copies.append(tuple(names.index(n) for n in result if n in names)
                          + tuple(i for i, n in enumerate(names) if n not in result))
    return None if copies == [None, None] else tuple(copies)


def _inversions(order: Sequence[str], prefer: str) -> int:
    """How many pairs of ``order`` appear in the opposite order in ``prefer``."""
    rank = [prefer.index(n) for n in order]
    return sum(r > s for i, r in enumerate(rank) for s in rank[i + 1:])


@lru_cache(maxsize=2048)
def lone_indices(an: str, bn: str, keep: str):
    """Axes of each operand found nowhere else (summed before the GEMM), and
    the names that remain."""
    sum_a = tuple(i for i, n in enumerate(an) if n not in bn and n not in keep)
    sum_b = tuple(i for i, n in enumerate(bn) if n not in an and n not in keep)
    rest_a = "".join(n for i, n in enumerate(an) if i not in sum_a)
    rest_b = "".join(n for i, n in enumerate(bn) if i not in sum_b)
    return sum_a, rest_a, sum_b, rest_b


def contract_pair(a: np.ndarray, an: str, b: np.ndarray, bn: str, keep: str,
                  memo: Memo | None = None, prefer: str | None = None,
                  any_layout: bool = False):
    """Contract two plain operands; returns the result and its index names.

    ``prefer`` asks for a memory layout of the result (index names,
    outermost first), and ``any_layout`` lets the plan choose the order
    numpy.einsum writes fastest (see :func:`plan_pair`).

    With ``memo`` (a :class:`Memo`), a GEMM operand that had to be copied (a window
    view laid out as a matrix: im2col; a C-ordered operand permuted to put
    its batch indices outermost) is recorded there, and one recorded earlier
    for the same memory and layout is reused: a traced forward pass hands
    its memo to its own backward pass, whose kernel gradient reads the input
    through the same window, and whose gradients of attention's queries and
    keys read the keys and the queries in the forward's layout.
    """
    sum_a, rest_a, sum_b, rest_b = lone_indices(an, bn, keep)
    if sum_a or sum_b:  # in the result's dtype: a bool summed as bool would be an "or"
        dtype = np.result_type(a.dtype, b.dtype)
        if sum_a:
            a, an = _summed(a, sum_a, dtype), rest_a
        if sum_b:
            b, bn = _summed(b, sum_b, dtype), rest_b
    plan = plan_pair(an, a.shape, a.strides, bn, b.shape, b.strides, keep, prefer,
                     any_layout, (a.itemsize, b.itemsize))
    if plan.einsum_eq is not None:  # C-ordered in the plan's order
        if a.size == 0 or b.size == 0:  # all zeros; numpy 2.4's einsum writes past an empty
            # outer product's result, corrupting the heap
            return (backend.zeros(plan.result_shape, np.result_type(a.dtype, b.dtype)),
                    plan.result_names)
        if plan.strided_dots:
            return _strided_dots(plan, a, b), plan.result_names
        if plan.einsum_copies is not None:
            a, b = (x if p is None else _copy_in_order(x, p) for x, p in zip((a, b),
                                                                          plan.einsum_copies))
        return backend.einsum(plan.einsum_eq, a, b, order="C"), plan.result_names
    budget = BUDGET.get()[0]
    if ((a.nbytes > budget or b.nbytes > budget) and fits_einsum(an + bn)
            and (_copy_over_budget(a, plan.perm_a, plan.shape_a)
                 or _copy_over_budget(b, plan.perm_b, plan.shape_b))):
        # numpy.einsum reads in place an operand (a broadcast one, say) that a GEMM
        # would copy into more than the memory budget
        eq = ascii_equation([an, bn], plan.result_names)
        return backend.einsum(eq, a, b, order="C"), plan.result_names
    a2 = _blasable(_gemm_operand(a, plan.perm_a, plan.shape_a, memo))
    b2 = _blasable(_gemm_operand(b, plan.perm_b, plan.shape_b, memo))
    return run_gemm(plan, a2, b2), plan.result_names


class DirectCall(NamedTuple):
    """A two-operand contraction resolved for one layout of its operands
    (:func:`direct_call`): one GEMM on views of them, or one numpy.einsum
    call, then ``order`` from its result's indices to the wanted ones.  A
    GEMM operand of at most :data:`SMALL_COPY_BYTES` that BLAS cannot read
    in place is copied first (``copies``, one flag per operand)."""

    pair: PairPlan
    order: tuple[int, ...] | None  # None: the result is in the wanted order
    copies: tuple[bool, bool]
    copied_bytes: int


#: The largest GEMM operand a direct call copies (:class:`DirectCall`), and
#: copies again in the backward pass rather than keep in a memo: a strided
#: operand of 32 KiB copies in about 1.5 us, where serving a kept copy from
#: a memo took about 2.4 us (the lookup's key and owner).
SMALL_COPY_BYTES = 1 << 15


def direct_call(a: np.ndarray, an: str, b: np.ndarray, bn: str, keep: str, want: str,
                prefer: str | None, any_layout: bool) -> DirectCall | None:
    """How :func:`contract_pair` would contract ``a`` and ``b``, as the
    one call it makes for operands laid out as these are (copying a small
    GEMM operand first where it would), with the result transposed to the
    indices ``want`` (a permutation of ``keep``); None where it would do
    more: sum an operand's own indices first, copy an operand larger than
    :data:`SMALL_COPY_BYTES` (which a forward pass keeps for its backward)
    or one for numpy.einsum, add strided dot products up in blocks, fill an
    empty result, or multiply operands of different (or not BLAS) dtypes.
    What it decides depends on the shapes, strides and dtypes alone, so the
    answer holds for any arrays laid out alike (:func:`run_direct_call`
    runs it)."""
    sum_a, _, sum_b, _ = lone_indices(an, bn, keep)
    if (sum_a or sum_b or a.dtype != b.dtype or a.dtype not in BLAS_DTYPES
            or a.size == 0 or b.size == 0):
        return None
    plan = plan_pair(an, a.shape, a.strides, bn, b.shape, b.strides, keep, prefer,
                     any_layout, (a.itemsize, b.itemsize))
    copies = [False, False]
    if plan.einsum_eq is not None:
        if plan.sum_blocks is not None or plan.einsum_copies is not None:
            return None
    else:
        for i, (x, perm, shape) in enumerate(((a, plan.perm_a, plan.shape_a),
                                              (b, plan.perm_b, plan.shape_b))):
            view = _view_as(x if perm is None else x.transpose(perm), shape)
            if view is None or not _blas_reads(view):
                if x.nbytes > SMALL_COPY_BYTES:  # a broadcast one's copy is this large too
                    return None
                copies[i] = True
    order = tuple(plan.result_names.index(n) for n in want)
    copied = (a.nbytes if copies[0] else 0) + (b.nbytes if copies[1] else 0)
    return DirectCall(plan, None if order == tuple(range(len(order))) else order,
                      tuple(copies), copied)


def run_direct_call(call: DirectCall, a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Run ``call`` on operands laid out as those it was resolved for."""
    plan = call.pair
    if plan.einsum_eq is None:
        if plan.perm_a is not None:
            a = a.transpose(plan.perm_a)
        if plan.perm_b is not None:
            b = b.transpose(plan.perm_b)
        copy_a, copy_b = call.copies  # run_direct checked these copies against the budget
        if copy_a:
            a = backend.ascontiguousarray(a)
        if copy_b:
            b = backend.ascontiguousarray(b)
        out = run_gemm(plan, a, b)
    elif plan.strided_dots:
        out = _strided_dots(plan, a, b)
    else:
        out = backend.einsum(plan.einsum_eq, a, b, order="C")
    return out if call.order is None else out.transpose(call.order)


#: numpy rounds a float16 sum to float16 at every term, and its float16 matmul
#: runs without BLAS: these dtypes are contracted in a wider one
#: (:func:`contractnet.engine.summing_dtype`, :func:`_for_blas`).
WIDER_SUMS = {np.dtype(np.float16): np.dtype(np.float32)}


def _strided_dots(plan: PairPlan, a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Batched dot products strided along their sums, by numpy.einsum,
    C-ordered as numpy writes the result anyway (asked for ``order="C"``, it
    takes a loop many times slower here).

    numpy adds each one's terms one by one: up to :data:`LONG_SUM` of them
    stay within a few units in the last place (largest errors of 2.5e-7 to
    5e-7 of the largest result at 64 float32 terms, 4e-16 to 7e-16 at 64
    float64 ones, against about 1e-7 and 2e-16 for a GEMM's), and longer
    sums add up in blocks of at most that many (:mod:`contractnet.blocks`)."""
    if plan.sum_blocks is not None:
        out = sum_in_blocks(plan.sum_blocks, (a, b), plan.result_shape)
    else:
        out = backend.einsum(plan.einsum_eq, a, b)
    return out if out.flags.c_contiguous else backend.ascontiguousarray(out)


def _summed(x: np.ndarray, axes: tuple[int, ...], dtype: np.dtype) -> np.ndarray:
    """``x`` summed over ``axes`` in ``dtype``, checked against the memory
    budget first (a broadcast or a widened dtype can make it outgrow ``x``)."""
    check_allocation([n for i, n in enumerate(x.shape) if i not in axes], dtype,
                     "the sum of an operand over the indices only it has")
    return sum_over(x, axes, dtype)


#: numpy's sums switch to pairwise summation past this many contiguous terms.
PAIRWISE_BLOCK = 128
#: Rows of fewer elements than this are not summed row by row by ndarray.sum.
NARROW_ROWS = 128


def sum_over(x: np.ndarray, axes: tuple[int, ...], dtype: np.dtype) -> np.ndarray:
    """``x`` summed over ``axes`` in ``dtype`` (its result keeps the other axes
    in order).

    By numpy.einsum, in one pass over ``x``: ``ndarray.sum`` reads short or
    scattered axes slowly (a sum over a middle axis of length 10 takes it
    five times as long).  Both add the terms one by one, with two
    exceptions that stay with ``ndarray.sum``:

    - the summed axes are exactly ``x``'s innermost ones and lie
      contiguously: numpy joins them into one run and, over more than
      :data:`PAIRWISE_BLOCK` terms, adds it pairwise, about six times more
      accurately over 12,288 float32 terms;
    - they are the leading axes of a C-contiguous ``x`` whose rows (one
      index of the first axis) hold at least :data:`NARROW_ROWS` elements:
      ``ndarray.sum`` adds whole rows at once, twice as fast as numpy.einsum
      (a bias gradient ``"bhwc->c"`` at (64, 28, 28, 32): 0.16 ms against
      0.35 ms); they are summed one axis at a time, :data:`LONG_SUM` rows at
      a time (:func:`sum_first_axis`).

    Other sums of more than :data:`LONG_SUM` terms add up in blocks
    (:mod:`contractnet.blocks`): over the 50,176 terms of ``"bhwc->c"`` in
    float32, as blocks or by rows, about 1e-7 to 2e-7 of the largest result
    off, where one-by-one sums are 7.5e-6 off.  Axes of length 1 are
    dropped first.
    """
    # (one letter to spare: blocks name one more index)
    if x.size == 0 or x.ndim >= len(EINSUM_LETTERS):
        return x.sum(axis=axes, dtype=dtype)
    route = _sum_route(x.shape, x.strides, x.itemsize, axes)
    if route.ones:  # nothing to add up along those: a view without them
        x = x.squeeze(route.ones)
    if route.kind == "copy":
        return x.astype(dtype)  # a new array, as a sum would be
    if route.kind == "pairwise":
        return x.sum(axis=route.axes, dtype=dtype)
    if route.kind == "rows":
        for _ in route.axes:
            x = sum_first_axis(x, dtype)
        return x
    if route.blocks is not None:
        return sum_in_blocks(route.blocks, (x,), route.shape, dtype)
    return backend.einsum(route.equation, x, dtype=dtype)


def sum_first_axis(x: np.ndarray, dtype: np.dtype) -> np.ndarray:
    """``x`` summed over its first axis.

    By ``ndarray.sum``, :data:`LONG_SUM` rows at a time
    (:func:`~contractnet.blocks.sum_rows`), unless there are more rows than
    that, narrower than :data:`NARROW_ROWS` elements: numpy adds narrow rows
    slowly (100,000 rows of 16 take it 2.0 ms, the blocks of
    :func:`sum_over` 0.47 ms).

    Parameters
    ----------
    x : ndarray
        At least one axis.
    dtype : dtype
        The dtype to sum in (native byte order).

    Returns
    -------
    ndarray
        ``x.shape[1:]``, a new array.
    """
    if len(x) <= LONG_SUM or math.prod(x.shape[1:]) >= NARROW_ROWS:
        return sum_rows(x, dtype)
    return sum_over(x, (0,), dtype)


class _SumRoute(NamedTuple):
    """How :func:`sum_over` sums."""

    # ndarray.sum (twice), numpy.einsum, or a copy (only axes of length 1 summed)
    kind: Literal["pairwise", "rows", "einsum", "copy"]
    ones: tuple[int, ...]       # summed axes of length 1, squeezed out first
    axes: tuple[int, ...]       # the other summed axes, numbered once those are gone
    shape: tuple[int, ...]      # the result's
    equation: str | None = None
    blocks: SumBlocks | None = None


@lru_cache(maxsize=2048)
def _sum_route(shape: tuple, strides: tuple, itemsize: int, axes: tuple) -> _SumRoute:
    """The route of :func:`sum_over` for an operand so laid out."""
    ones = tuple(a for a in axes if shape[a] == 1)
    if ones:
        axes = tuple(a - sum(o < a for o in ones) for a in axes if a not in ones)
        shape, strides = (tuple(v for i, v in enumerate(t) if i not in ones)
                          for t in (shape, strides))
    result = tuple(n for i, n in enumerate(shape) if i not in axes)
    if not axes:
        return _SumRoute("copy", ones, axes, result)
    moving = sorted((i for i, n in enumerate(shape) if n > 1), key=lambda i: abs(strides[i]))
    run, step = 1, itemsize
    for i in moving:  # innermost first: the summed axes numpy joins into one run
        if i not in axes or abs(strides[i]) != step:
            break
        run, step = run * shape[i], step * shape[i]
    if run > PAIRWISE_BLOCK and run == math.prod(shape[i] for i in axes):
        return _SumRoute("pairwise", ones, axes, result)
    if (axes == tuple(range(len(axes))) and math.prod(shape[1:]) >= NARROW_ROWS
            and all(s == c for s, c, n in zip(strides, c_strides(shape, itemsize), shape)
                    if n > 1)):
        return _SumRoute("rows", ones, axes, result)
    letters = EINSUM_LETTERS[:len(shape)]
    summed = [letters[i] for i in axes]
    stride, size = dict(zip(letters, strides)), dict(zip(letters, shape))
    kept = "".join(c for c in letters if c not in summed)
    return _SumRoute("einsum", ones, axes, result, f"{letters}->{kept}",
                     plan_blocks([letters], size, _memory_order(summed, stride), kept))


def _copy_over_budget(x: np.ndarray, perm, shape) -> bool:
    """Whether laying ``x`` out as its GEMM matrix copies it (see
    :func:`_gemm_operand` and :func:`_blasable`), into more than the
    memory budget."""
    budget = BUDGET.get()[0]
    if x.nbytes <= budget and not _is_broadcast(x):
        return False  # a copy is no larger than x itself
    view = _view_as(x if perm is None else x.transpose(perm), shape)
    copies = view is None or not _blas_reads(view)
    return copies and math.prod(x.shape) * x.itemsize > budget


def _is_broadcast(x: np.ndarray) -> bool:
    """Whether ``x`` repeats memory along an axis (a zero stride)."""
    return any(stride == 0 and n > 1 for stride, n in zip(x.strides, x.shape))


def run_gemm(plan: PairPlan, a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Run a plan's one BLAS call on operands already in its permuted order.

    C-contiguous operands with no permutation in the plan qualify as they
    come: their reshapes are views, so this is the BLAS call and nothing
    else.

    Parameters
    ----------
    plan : PairPlan
        From :func:`plan_pair`, with no einsum equation.
    a, b : ndarray
        The operands, permuted as ``plan.perm_a`` and ``plan.perm_b`` say
        (or already reshaped to ``plan.shape_a`` and ``plan.shape_b``), in
        memory BLAS can read.

    Returns
    -------
    ndarray
        The product, indices ``plan.result_names``.
    """
    if a.shape != plan.shape_a:
        a = a.reshape(plan.shape_a)
    if b.shape != plan.shape_b:
        b = b.reshape(plan.shape_b)
    if plan.swap_a:
        a = a.swapaxes(-1, -2)
    if plan.swap_b:
        b = b.swapaxes(-1, -2)
    if plan.flip:
        a, b = b.swapaxes(-1, -2), a.swapaxes(-1, -2)
    if a.dtype is not b.dtype or a.dtype not in BLAS_DTYPES:  # the rare cases, one test
        a, b, dtype = _for_blas(a, b)
        out = backend.matmul(a, b).astype(dtype, copy=False)
    else:
        out = backend.matmul(a, b)
    return out if out.shape == plan.result_shape else out.reshape(plan.result_shape)


#: The dtypes BLAS multiplies as they are (native byte order).
BLAS_DTYPES = frozenset(map(np.dtype, (np.float32, np.float64, np.complex64, np.complex128)))


def _for_blas(a: np.ndarray, b: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.dtype]:
    """Matrix operands not both in one of :data:`BLAS_DTYPES` made ready for
    numpy's matmul, and the dtype of their product: float16 ones cast to
    float32 (numpy's float16 matmul runs without BLAS: 234 ms against 1.8
    ms for the casts and a float32 GEMM at the head's (128, 800) x (800,
    500)), and the copies numpy's matmul would make itself (of an operand in
    the other's wider dtype, or in foreign byte order) checked against the
    memory budget first."""
    dtype = np.result_type(a.dtype, b.dtype)
    wider = WIDER_SUMS.get(dtype)
    if wider is not None:
        for x in (a, b):
            check_allocation(x.shape, wider, f"a {wider} copy of a {x.dtype} matrix operand "
                                             f"(a {dtype} product is computed in {wider})")
        return a.astype(wider), b.astype(wider), dtype
    if a.dtype != b.dtype:
        _check_cast_copy(a, b)
    return _native(a), _native(b), dtype


def _native(x: np.ndarray) -> np.ndarray:
    """``x`` in native byte order: the copy numpy's matmul would otherwise
    make of it itself, checked against the memory budget first."""
    if x.dtype.isnative:
        return x
    check_allocation(x.shape, x.dtype, "a copy of an operand in native byte order (for a "
                                       "matrix product)")
    return x.astype(x.dtype.newbyteorder("="))


def _check_cast_copy(a: np.ndarray, b: np.ndarray) -> None:
    """The copy numpy's matmul makes of an operand in the other's wider dtype
    (an int8 matrix times a float64 one) must fit the memory budget."""
    dtype = np.result_type(a.dtype, b.dtype)
    for which, x in (("left", a), ("right", b)):
        if x.dtype != dtype:
            check_allocation(x.shape, dtype,
                             f"a copy of the {which} matrix operand in {dtype} (for a matrix "
                             "product of mixed dtypes)")


def _copy_in_order(x: np.ndarray, perm: tuple[int, ...]) -> np.ndarray:
    """A C-ordered copy of ``x.transpose(perm)``, checked against the memory budget."""
    check_allocation(x.shape, x.dtype, "a copy of an operand (in the result's order)")
    return backend.ascontiguousarray(x.transpose(perm))


def _gemm_operand(x: np.ndarray, perm, shape, memo: Memo | None) -> np.ndarray:
    """``x`` permuted and grouped into a (batched) matrix: a view when the
    memory allows, else a copy, which ``memo`` records or serves (a window
    view's im2col, a C-ordered operand whose batch index is not outermost:
    attention's keys, read by the forward GEMM and by a gradient's)."""
    permuted = x if perm is None else x.transpose(perm)
    view = _view_as(permuted, shape)
    if view is not None:
        return view
    key = owner = None
    if memo is not None:
        key = (x.__array_interface__["data"][0], x.shape, x.strides, x.dtype.str, perm, shape)
        owner = memory_owner(x)
        hit = memo.copies.get(key)
        if hit is not None and hit[0] is owner:
            return hit[1]
    kind = "a broadcast" if _is_broadcast(x) else "an"  # a copy, as large as x's full shape
    check_allocation(x.shape, x.dtype, f"a copy of {kind} operand (laid out for a matrix "
                                       f"product)")
    matrix = permuted.reshape(shape)
    if key is not None and memo.record and matrix.nbytes <= MEMO_MAX_BYTES:
        memo.copies[key] = (owner, matrix)
    return matrix


def _view_as(x: np.ndarray, shape) -> np.ndarray | None:
    """``x.reshape(shape)`` where that is a view; None, copying nothing,
    where it would be a copy."""
    try:
        return x.reshape(shape, copy=False)  # refuses to copy (numpy >= 2.1)
    except ValueError:
        return None


def memory_owner(array: Any) -> Any:
    """The object that owns ``array``'s memory (the end of its ``.base`` chain):
    two arrays can share memory only if they have the same owner."""
    base = getattr(array, "base", None)
    while base is not None:
        array, base = base, getattr(base, "base", None)
    return array


def view_key(a: np.ndarray) -> tuple:
    """What two arrays share when they are the same elements viewed the same
    way (two objects over one buffer, ``a`` and ``a[...]``, share it): the
    identity of a parameter, for tying names and counting parameters."""
    return a.__array_interface__["data"][0], a.shape, a.strides, a.dtype.str


class Memo:
    """Copied GEMM operands of one traced forward call, kept for its backward.

    Each entry holds the object owning the copied operand's memory, and a
    lookup must find that same owner: the reference keeps the memory alive,
    so its address cannot come back as another array's (a temporary summed
    inside the forward pass, a cotangent).  Only the forward pass records:
    once it returns, :meth:`close` makes the memo read-only for the backward
    pass.
    """

    __slots__ = ("copies", "record", "step_of")

    def __init__(self, step_of: tuple | None = None) -> None:
        self.copies: dict = {}
        self.record = True
        #: the whole spec, bound and as written, when this call is one
        #: pairwise step of it (errors in the backward pass name it)
        self.step_of = step_of

    def close(self) -> None:
        """Stop recording: from now on the memo only serves what it holds."""
        self.record = False


def _blasable(x: np.ndarray) -> np.ndarray:
    """``x`` if BLAS can read its matrices in place (unit stride along rows or
    columns), else a C-contiguous copy: numpy's matmul would otherwise fall
    back to a slow loop that never reaches BLAS."""
    if _blas_reads(x):
        return x
    check_allocation(x.shape, x.dtype, "a copy of an operand (laid out for a matrix product)")
    return backend.ascontiguousarray(x)


def _blas_reads(x: np.ndarray) -> bool:
    """Whether BLAS reads the matrices of ``x`` in place (see :func:`_blasable`).

    A Fortran-ordered stack of matrices does not qualify: its unit stride is
    along the stack, not along a matrix's rows or columns."""
    if x.flags.c_contiguous:
        return True
    (rows, cols), (s_row, s_col), item = x.shape[-2:], x.strides[-2:], x.itemsize
    return (((cols == 1 or s_col == item) and (rows == 1 or s_row >= cols * item))
            or ((rows == 1 or s_row == item) and (cols == 1 or s_col >= rows * item)))
