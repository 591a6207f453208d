"""Derive backward specs: the transposed contraction of one operand.

einsum is linear in each operand, so the gradient with respect to operand
``i`` is the same contraction with the roles of operand ``i`` and the output
swapped::

    y = "bnmd,nmdk->bk"(x, W)
    dx = "bk,nmdk->bnmd"(dy, W)        dW = "bnmd,bk->nmdk"(x, dy)

Everything that makes this exact in the hard cases lives in the spec
language, not here: an index found only in operand ``i`` becomes an output
index found in no input (the gradient broadcasts along it), a repeated index
becomes a repeated output index (the gradient writes a diagonal), a window
becomes an output window (the gradient scatters and adds), and an axis that
broadcast from size 1 was given a private index by binding, so it becomes a
size-1 broadcast output index (summed back).  This module is pure: it touches
no arrays.
"""
from __future__ import annotations

from .spec import Spec, SpecError


def transpose(spec: Spec, operand: int) -> Spec:
    """The backward spec of ``operand``: the output and ``operand`` swap places.

    Parameters
    ----------
    spec : Spec
        A concrete spec (see :func:`contractnet.bind.bind`); a spec with
        ``...`` transposes exactly only if no ellipsis axis broadcasts.
    operand : int
        0-based operand number.

    Returns
    -------
    Spec
        The cotangent of the forward output takes the place of operand
        ``operand``; the other operands keep theirs.

    Examples
    --------
    >>> from contractnet.spec import parse
    >>> str(transpose(parse("bnmd,nmdk->bk"), 0))
    'bk,nmdk->bnmd'
    >>> str(transpose(parse("bnmd,nmdk->bk"), 1))
    'bnmd,bk->nmdk'
    """
    n = len(spec.inputs)
    if not 0 <= operand < n:
        raise SpecError(f"operand {operand} is out of range for a spec with {n} operand(s)",
                        str(spec))
    inputs = spec.inputs[:operand] + (spec.output,) + spec.inputs[operand + 1:]
    return Spec(inputs, spec.inputs[operand])
