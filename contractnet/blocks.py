"""numpy.einsum's equations, and its long sums added up in blocks.

numpy.einsum names indices with 52 ASCII letters only
(:func:`ascii_equation` renames a product's indices to them).  It adds the
terms of each sum one by one in the operands' dtype, so its rounding error
grows with the number of terms: over 50,000 float32 terms it keeps about
five of seven digits, where a GEMM's blocked sums keep nearly all.  A sum
of more than :data:`LONG_SUM` terms is therefore cut into blocks of at most
that many: one einsum call writes every block's partial sum (the outer
summed indices become axes of its result), and the partial sums are added
:data:`LONG_SUM` at a time, in as many rounds as needed.  No value then
passes through more than :data:`LONG_SUM` additions in a round, which keeps
the error at about a GEMM's, at about einsum's speed: every block
but a last, partial one adds more than half of :data:`LONG_SUM` terms, so
the partial sums are few next to the terms.

:func:`plan_blocks` decides the cut from index names and sizes (so plans can
be cached); :func:`sum_in_blocks` runs it.  :func:`sum_rows` sums a first
axis the same way with ``ndarray.sum``, which adds wide rows faster.
"""
from __future__ import annotations

import math
from typing import Iterable, NamedTuple, Sequence

import numpy as np

from .backend import backend
from .budget import check_allocation

#: The most terms numpy.einsum adds one by one into a value: sums of up to
#: this many stay within a few units in the last place of the exact sum.
LONG_SUM = 64
#: The index names numpy.einsum takes.
EINSUM_LETTERS = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ"


def ascii_equation(terms: Sequence[str], out: str) -> str:
    """numpy.einsum only takes ASCII letters; rename the indices in order."""
    names = list(dict.fromkeys("".join(terms) + out))
    assert fits_einsum(names), "larger products are kept off numpy.einsum"
    table = {n: EINSUM_LETTERS[i] for i, n in enumerate(names)}
    tr = lambda t: "".join(table[c] for c in t)  # noqa: E731
    return ",".join(tr(t) for t in terms) + "->" + tr(out)


def fits_einsum(names: Iterable[str]) -> bool:
    """Whether numpy.einsum can name these indices (it has 52 letters)."""
    return len(set(names)) <= len(EINSUM_LETTERS)


class SumBlocks(NamedTuple):
    """How to cut an einsum's long sums into blocks of at most :data:`LONG_SUM` terms."""

    equation: str       # the partial sums: their block axes first, then the result's
    kept: int           # how many block axes lead the partial sums
    axes: tuple         # per operand, its axis cut into (blocks, factor); () if none is
    factor: int         # how many rows of the cut axis one block takes
    tail: str | None    # the partial sums of the rows past the last whole block, if any
    parts: int          # partial sums per result element in the larger of the two calls


def plan_blocks(terms: Sequence[str], size: dict, summed: Sequence[str],
                out: str) -> SumBlocks | None:
    """Plan the blocks of the contraction ``terms -> out``.

    The innermost summed indices whose sizes multiply to at most
    :data:`LONG_SUM` make up one block; the next index out is cut into rows
    of as many of those as fit (unless only one fits; down to half as many
    where that divides it evenly, which saves the call for the rows left
    over), and the summed indices outside it stay axes of the partial sums.

    Parameters
    ----------
    terms : sequence of str
        Each operand's index names, none repeated within a term.
    size : dict
        Each index's size, the same in every operand holding it.
    summed : sequence of str
        The summed indices, outermost first as laid out in memory.
    out : str
        The result's indices.

    Returns
    -------
    SumBlocks or None
        None when each sum has at most :data:`LONG_SUM` terms, or where the
        cut cannot be made: a term repeats an index or lacks the cut one, or
        numpy.einsum's letters run out.

    Examples
    --------
    Sums over ``h`` and ``w``, 30 x 28 terms each: a block takes two rows of
    ``h`` (56 terms), so ``h`` is cut into 15 blocks of 2, none left over:

    >>> blocks = plan_blocks(["bhw"], {"b": 20, "h": 30, "w": 28}, "hw", "b")
    >>> blocks.equation, blocks.factor, blocks.tail, blocks.parts
    ('abcd->ba', 2, None, 15)
    """
    if math.prod(size[n] for n in summed) <= LONG_SUM:
        return None
    inner, i = 1, len(summed)
    while size[summed[i - 1]] * inner <= LONG_SUM:
        i -= 1
        inner *= size[summed[i]]
    outer, cut, fit = "".join(summed[:i - 1]), summed[i - 1], LONG_SUM // inner
    factor = next((f for f in range(fit, fit // 2, -1) if size[cut] % f == 0), fit)
    if any(len(t) != len(set(t)) for t in terms):
        return None
    if factor < 2:  # the cut index's every row is a block already
        outer += cut
        return SumBlocks(ascii_equation(terms, outer + out), len(outer), (), 1, None,
                         math.prod(size[n] for n in outer))
    names = set("".join(terms) + out)
    block = next(chr(c) for c in range(0x100, 0x200) if chr(c) not in names)
    if not fits_einsum(names | {block}) or any(cut not in t for t in terms):
        return None
    whole, rows = divmod(size[cut], factor)
    cut_terms = [t.replace(cut, block + cut) for t in terms]
    return SumBlocks(ascii_equation(cut_terms, outer + block + out), len(outer) + 1,
                     tuple(t.index(cut) for t in terms), factor,
                     ascii_equation(terms, outer + out) if rows else None,
                     math.prod(size[n] for n in outer) * whole)


def sum_in_blocks(blocks: SumBlocks, operands: Sequence[np.ndarray], shape: tuple,
                  dtype=None) -> np.ndarray:
    """Run the contraction ``blocks`` was planned for.

    Parameters
    ----------
    blocks : SumBlocks
        From :func:`plan_blocks`.
    operands : sequence of ndarray
        Laid out as planned for (the cut index at one size in each).
    shape : tuple of int
        The result's shape.
    dtype : dtype, optional
        The dtype to sum in (default: the operands' common dtype).

    Returns
    -------
    ndarray
        The result, a new array (0-d for a sum of everything).

    Raises
    ------
    MemoryBudgetError
        If the largest call's partial sums would exceed the memory budget.
    """
    dtype = np.result_type(*operands) if dtype is None else np.dtype(dtype)
    check_allocation((blocks.parts,) + tuple(shape), dtype,
                     "the partial sums of a long sum cut into blocks")
    if not blocks.axes:
        return _add_up(backend.einsum(blocks.equation, *operands, dtype=dtype), blocks.kept)
    cut = operands[0].shape[blocks.axes[0]]
    assert all(x.shape[axis] == cut for x, axis in zip(operands, blocks.axes)), \
        "the cut index has one size in every operand"
    whole = cut - cut % blocks.factor
    total = _add_up(backend.einsum(blocks.equation, *(
        _cut(x, axis, whole, blocks.factor) for x, axis in zip(operands, blocks.axes)),
        dtype=dtype), blocks.kept)
    if blocks.tail is not None:
        rest = backend.einsum(blocks.tail, *(
            x[(slice(None),) * axis + (slice(whole, None),)]
            for x, axis in zip(operands, blocks.axes)), dtype=dtype)
        np.add(total, _add_up(rest, blocks.kept - 1), out=total)
    return total


def _cut(x: np.ndarray, axis: int, whole: int, factor: int) -> np.ndarray:
    """``x``'s first ``whole`` rows along ``axis`` as (blocks, ``factor``): a view."""
    rows = x if whole == x.shape[axis] else x[(slice(None),) * axis + (slice(0, whole),)]
    return rows.reshape(x.shape[:axis] + (whole // factor, factor) + x.shape[axis + 1:])


def _add_up(parts: np.ndarray, kept: int) -> np.ndarray:
    """``parts`` summed over its ``kept`` leading axes; a full sum is a 0-d
    array, not a scalar.

    numpy.einsum writes the partial sums in its operands' memory order, so
    their leading axis lies innermost where the cut axis does in an operand.
    ``ndarray.sum`` adds along such an axis slowly, one short run per result
    element: up to :data:`LONG_SUM` parts laid out so are added by
    numpy.einsum, in one pass (2 parts over a (12, 48, 5) float32 result: 15
    us against 43 us); others row by row (:func:`sum_rows`).
    """
    if kept == 0:
        return parts
    parts = parts.reshape((math.prod(parts.shape[:kept]),) + parts.shape[kept:])
    if (parts.ndim > 1 and len(parts) <= LONG_SUM
            and abs(parts.strides[0]) < max(abs(s) for s in parts.strides[1:])):
        return backend.einsum("a...->...", parts)
    return np.asarray(sum_rows(parts, parts.dtype))


def sum_rows(x: np.ndarray, dtype: np.dtype) -> np.ndarray:
    """Sum ``x`` over its first axis, :data:`LONG_SUM` rows at a time, by
    ``ndarray.sum``.

    For a C-contiguous ``x`` with wide rows, ``ndarray.sum`` adds whole rows
    at once, faster than numpy.einsum, but one after another: this keeps its
    speed and about a GEMM's digits (over 4,096 rows of 512 uniform float32
    terms, 3.4e-7 of the largest result off, where one sum is 2.7e-6 off).
    Cutting the first axis into (blocks, rows) is a view whatever ``x``'s
    layout.

    Parameters
    ----------
    x : ndarray
        At least one axis.
    dtype : dtype
        The dtype to sum in.

    Returns
    -------
    ndarray
        ``x.shape[1:]`` (a numpy scalar when ``x`` is 1-D, as ``ndarray.sum``
        gives).

    Raises
    ------
    MemoryBudgetError
        If the first round's partial sums would exceed the memory budget.
    """
    if len(x) > LONG_SUM:
        check_allocation((len(x) // LONG_SUM,) + x.shape[1:], dtype,
                         "the partial sums of rows summed in blocks")
    while len(x) > LONG_SUM:
        whole = len(x) - len(x) % LONG_SUM
        parts = x[:whole].reshape((whole // LONG_SUM, LONG_SUM) + x.shape[1:]).sum(
            axis=1, dtype=dtype)
        if whole < len(x):  # the rows past the last whole block join the last block
            parts[-1] += x[whole:].sum(axis=0, dtype=dtype)
        x = parts
    return x.sum(axis=0, dtype=dtype)
