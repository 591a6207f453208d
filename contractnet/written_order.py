"""The order in which numpy.einsum writes a product the pair planner hands it.

Where the caller reads any layout (a forward pass, a step inside a path),
:func:`contractnet.pair.plan_pair` lets the order of a product that
``numpy.einsum`` computes be chosen: :func:`written_order` picks one that
numpy's loop writes fast, reading each operand's strides
(:class:`Laid`).  ``benchmarks/written_order.py`` times its last two rules.
"""
from __future__ import annotations

import math
from typing import NamedTuple, Sequence


#: An inner run of fewer elements than this does not pay for numpy.einsum's
#: loop set-up (see :func:`written_order`).
MIN_RUN = 16

#: A product of fewer elements than this, which the caller's order reads in
#: order in a short run, keeps that order (see :func:`written_order`).
MIN_REORDERED = 16384


class Laid(NamedTuple):
    """An operand as :func:`written_order` reads it."""

    names: str
    stride: dict    # bytes, by index name
    count: int      # elements
    itemsize: int


def written_order(keep: str, size: dict[str, int], a: Laid, b: Laid,
                  sums: bool = False) -> str:
    """The order, outermost first, in which numpy.einsum writes the indices
    ``keep`` of the product of ``a`` and ``b`` fast.

    numpy's loop is fastest where, along its innermost index, every operand
    either lacks that index or holds it contiguously, and the result is
    written in order; it joins such indices into one longer run (an
    operand holding an index at stride 0, a broadcast, breaks it).  So the
    order is ``keep``'s own where its innermost index is read so (the
    product of C-ordered operands numpy.einsum would write C-ordered stays
    C-ordered): in any run where the product sums over some indices
    (``sums``: numpy loops over those innermost) or has fewer than
    :data:`MIN_REORDERED` elements (another order gains it little, and its
    order carries into the steps of a path that read it: in two of 229
    random three-operand specs, a reordered small first step made the
    next one 1.7 and 2.2 times slower), else in a run of at least
    :data:`MIN_RUN` elements.  Else one operand's order in memory,
    innermost, under the other operand's own indices in theirs, the larger
    operand's first, where that ends in such a run (:func:`contiguous_run`)
    of at least :data:`MIN_RUN` elements.  Else, for a product that sums
    nothing, the larger operand's order where numpy's unbuffered inner
    loop along it (:func:`inner_loop`) covers at least as many elements as
    along ``keep``'s, where ``keep``'s reads every operand in order in a
    shorter run, or, where it does not, at least :data:`MIN_RUN` elements
    and more than along ``keep``'s.  Else ``keep``'s.  Broadcast axes count
    as outermost in an operand's memory order.

    That last step reads the larger operand (in elements) in order and the
    smaller one strided.  ``benchmarks/written_order.py`` times the last
    two steps over random products that sum nothing.  Of 500 that no order
    reads in order, the last step took 124 and wrote them in a median of
    0.44 of the time in ``keep``'s order (up to 1.9 times as long, in 4);
    the larger operand's order would have taken up to 6.1 times as long on
    the others.  (numpy buffers some strided loops, of operands of mixed
    dtypes or merging into four or more axes, which lengthens them; the
    step still paid on such products, but with mixed dtypes it was up to
    2.7 times slower in 2 of 53.)  Of 500 that ``keep``'s order reads in
    order in a run of 2 to 15 elements, another order (an operand's with a
    run of :data:`MIN_RUN`, or the larger operand's) was taken for 486 (484
    with another seed) and written in a median of 0.43 (0.41) of the time,
    more than 1.1 times as long in 2 (up to 1.14 and 2.1 times); on the 14
    (16) left in ``keep``'s order, the larger operand's would have taken a
    median 0.71 (1.39) of the time, up to 2.7 (3.1) times as long.

    Parameters
    ----------
    keep : str
        The result's indices, in the caller's order.
    size : dict
        Every index's size.
    a, b : Laid
        The operands.
    sums : bool
        Whether the product sums over some indices.

    Returns
    -------
    str
        ``keep``'s indices, outermost first.

    Examples
    --------
    A transposed matrix times a C-ordered stack of them, written in the
    stack's order:

    >>> ij = Laid("ij", {"i": 8, "j": 384}, 48 * 256, 8)
    >>> ilj = Laid("ilj", {"i": 24576, "l": 2048, "j": 8}, 48 * 12 * 256, 8)
    >>> written_order("lji", {"i": 48, "l": 12, "j": 256}, ij, ilj)
    'ilj'
    """
    keep_run = contiguous_run(keep, (a, b), size)
    # numpy loops over a product's sums innermost: there keep's order needs no
    # long run; nor where the product is small (its order carries into later steps)
    min_keep_run = (MIN_RUN if not sums and math.prod(size[n] for n in keep) >= MIN_REORDERED
                    else 2)
    if keep_run >= min_keep_run:
        return keep
    big, small = (a, b) if a.count >= b.count else (b, a)
    larger = inner_order(big, small, keep)
    for order in (larger, inner_order(small, big, keep)):
        if contiguous_run(order, (a, b), size) >= MIN_RUN:
            return order
    if sums:
        return keep
    keep_loop = inner_loop(keep, (a, b), size)
    needed = keep_loop if keep_run > 1 else max(MIN_RUN, keep_loop + 1)
    return larger if inner_loop(larger, (a, b), size) >= needed else keep


def inner_order(inner: Laid, outer: Laid, keep: str) -> str:
    """The indices in ``keep``, ``inner``'s innermost as laid out in its
    memory, ``outer``'s own outside them as laid out in its.

    >>> inner_order(Laid("ab", {"a": 8, "b": 80}, 100, 8), Laid("bc", {"b": 40, "c": 8}, 50, 8),
    ...             "abc")
    'cba'
    """
    laid_in, laid_out = kept_in_memory_order(inner, keep), kept_in_memory_order(outer, keep)
    return "".join([n for n in laid_out if n not in laid_in] + laid_in)


def kept_in_memory_order(operand: Laid, keep: str) -> list[str]:
    """The indices of ``operand`` in ``keep``, outermost first as laid out
    in memory (as :func:`contractnet.pair._memory_order`), broadcast ones
    outermost."""
    stride = operand.stride
    return [n for n in sorted(operand.names, key=lambda n: (stride[n] != 0, -abs(stride[n])))
            if n in keep]


def contiguous_run(order: str, operands: Sequence[Laid], size: dict) -> int:
    """How many elements the innermost indices of ``order`` span as one run
    that each operand either lacks throughout or holds contiguously
    throughout, so that numpy.einsum's innermost loop joins them into one
    and reads every operand in order."""
    run, steps, holders = 1, [op.itemsize for op in operands], None
    for n in reversed(order):
        if size[n] == 1:
            continue
        held = [i for i, op in enumerate(operands) if n in op.names]
        if (holders is not None and held != holders) or any(
                operands[i].stride[n] != steps[i] for i in held):
            break
        holders = held
        run *= size[n]
        for i in held:
            steps[i] *= size[n]
    return run


def inner_loop(order: str, operands: Sequence[Laid], size: dict) -> int:
    """How many elements numpy.einsum's inner loop covers writing the
    result C-ordered in ``order``: its innermost index, at whatever
    strides the operands hold it, joined with the next ones out while
    every operand's stride nests (an operand lacking an index holds it at
    stride 0 throughout).

    Every other element of a (10, 100) float64 matrix: its rows join into
    one loop of 500, read at a stride of two elements, which
    :func:`contiguous_run` does not count.

    >>> x = Laid("ij", {"i": 800, "j": 16}, 500, 8)
    >>> inner_loop("ij", (x,), {"i": 10, "j": 50}), contiguous_run("ij", (x,), {"i": 10, "j": 50})
    (500, 1)
    """
    run, steps = 1, None
    for n in reversed(order):
        if size[n] == 1:
            continue
        strides = [op.stride.get(n, 0) for op in operands]
        if steps is not None and strides != steps:
            break
        run *= size[n]
        steps = [stride * size[n] for stride in strides]
    return run
