"""Low-rank heads for ``contractnet bench heads``: full, CP and Tucker on one activation.

The full head ``"bnmd,nmdk->bk"`` has ``N*M*D*K`` weights.  A CP head of
rank ``r`` factors the weight into one matrix per index,
``"bnmd,nr,mr,dr,kr->bk"``; a Tucker (tensor-regression) head projects each
activation mode and keeps a small core, ``"bnmd,np,mq,ds,pqsk->bk"``, here with
``(p, q, s) = (min(N, r), min(M, r), min(D, r))`` for rank ``r``.  FLOPs are
those of the contraction path opt_einsum chooses; the backward FLOPs add the
paths of every operand's transposed spec.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import opt_einsum

from .bench_methods import HEAD_SPEC, Problem, random_array
from .bench_presets import HeadShape

CP_SPEC = "bnmd,nr,mr,dr,kr->bk"
TUCKER_SPEC = "bnmd,np,mq,ds,pqsk->bk"


@dataclass(frozen=True)
class LowRankHead:
    """One head: a key for tables, its spec and the shapes of its weights."""

    key: str
    spec: str
    weight_shapes: tuple[tuple[int, ...], ...]

    @property
    def params(self) -> int:
        """Number of weights."""
        return sum(math.prod(s) for s in self.weight_shapes)


def lowrank_heads(shape: HeadShape, ranks: list[int]) -> list[LowRankHead]:
    """The full head, then a CP and a Tucker head for every rank.

    Raises
    ------
    ValueError
        If a rank is not a positive integer.

    Examples
    --------
    >>> [h.key for h in lowrank_heads(HeadShape(2, 3, 3, 4, 5), [2])]
    ['full', 'cp-r2', 'tucker-r2']
    """
    bad = [r for r in ranks if r < 1]
    if bad:
        raise ValueError(f"--ranks must be positive integers, got {bad[0]}")
    n, m, d, k = shape.N, shape.M, shape.D, shape.K
    heads = [LowRankHead("full", HEAD_SPEC, ((n, m, d, k),))]
    for r in dict.fromkeys(ranks):  # a rank given twice is measured once
        heads.append(LowRankHead(f"cp-r{r}", CP_SPEC, ((n, r), (m, r), (d, r), (k, r))))
        p, q, s = min(n, r), min(m, r), min(d, r)
        heads.append(LowRankHead(f"tucker-r{r}", TUCKER_SPEC,
                                 ((n, p), (m, q), (d, s), (p, q, s, k))))
    return heads


def gradient_spec(spec: str, operand: int) -> str:
    """The plain transposed spec: ``operand`` and the output swap places.

    Written independently of the library's own transposition so that it can
    check it.

    >>> gradient_spec("bnmd,nr,mr,dr,kr->bk", 2)
    'bnmd,nr,bk,dr,kr->mr'
    """
    inputs, output = spec.split("->")
    terms = inputs.split(",")
    wanted = terms[operand]
    terms[operand] = output
    return ",".join(terms) + "->" + wanted


def _shapes_of(spec: str, sizes: dict[str, int]) -> list[tuple[int, ...]]:
    inputs = spec.split("->")[0].split(",")
    return [tuple(sizes[c] for c in term) for term in inputs]


def path_flops(spec: str, sizes: dict[str, int], backward: bool = False) -> int:
    """FLOPs of opt_einsum's chosen path; with ``backward``, plus every operand's gradient.

    >>> path_flops("ij,jk->ik", {"i": 2, "j": 3, "k": 4})
    48
    """
    total = int(opt_einsum.contract_path(spec, *_shapes_of(spec, sizes), shapes=True)[1].opt_cost)
    if backward:
        for operand in range(len(spec.split("->")[0].split(","))):
            grad = gradient_spec(spec, operand)
            total += int(opt_einsum.contract_path(grad, *_shapes_of(grad, sizes),
                                                  shapes=True)[1].opt_cost)
    return total


def index_sizes(head: LowRankHead, shape: HeadShape) -> dict[str, int]:
    """Every index of the head's spec with its size."""
    sizes = {"b": shape.B, "n": shape.N, "m": shape.M, "d": shape.D, "k": shape.K}
    terms = head.spec.split("->")[0].split(",")[1:]
    for term, dims in zip(terms, head.weight_shapes):
        sizes.update(zip(term, dims))
    return sizes


def lowrank_problem(head: LowRankHead, x: np.ndarray, dy: np.ndarray, seed: int = 0) -> Problem:
    """The shared activation and cotangent with random weights for ``head``.

    Factors are scaled so that outputs stay of order one in float32.
    """
    rng = np.random.default_rng(seed)
    weights = tuple(random_array(rng, s, x.dtype, (math.prod(s[:-1]) or 1) ** -0.5)
                    for s in head.weight_shapes)
    n, m, d = x.shape[1:]
    return Problem((x,) + weights, dy, HeadShape(x.shape[0], n, m, d, dy.shape[1]))


def reference_answer(spec: str, problem: Problem, backward: bool) -> tuple[np.ndarray, ...]:
    """The head's output (and gradients) by opt_einsum, the oracle for contractnet's."""
    out = opt_einsum.contract(spec, *problem.operands)
    if not backward:
        return (out,)
    grads = []
    for operand in range(len(problem.operands)):
        others = list(problem.operands)
        others[operand] = problem.dy
        grads.append(opt_einsum.contract(gradient_spec(spec, operand), *others))
    return (out,) + tuple(grads)
