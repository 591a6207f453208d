"""Hypothesis strategies: random einsum specs that numpy accepts, with operands.

A case is drawn as text plus shapes, then kept only if ``numpy.einsum``
accepts it, so every example is a spec contractnet must handle exactly as
numpy does.  Letters mix lower and upper case because numpy orders an
implicit output by code point (``'A' < 'a'``).
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from hypothesis import reject
from hypothesis import strategies as st

LETTERS = "abcdeijAB"
MAX_ELEMENTS = 81  # per operand and output: keeps the unit-probe oracle cheap
# An index's size: 2 and 3 as often as 1 (hypothesis draws an integer range's
# bounds often, and a case of size-1 axes only cannot tell the axes apart).
SIZES = st.sampled_from((2, 3, 1))
ONE_IN_FIVE = st.sampled_from((False, False, False, False, True))
ONE_IN_FOUR = st.sampled_from((False, False, False, True))
THREE_IN_FOUR = st.sampled_from((True, True, True, False))


@dataclass(frozen=True)
class Case:
    """A spec, its operand shapes, and a seed for the operand values."""

    spec: str
    shapes: tuple[tuple[int, ...], ...]
    seed: int

    def operands(self, dtype=np.float64) -> list[np.ndarray]:
        rng = np.random.default_rng(self.seed)
        return [rng.standard_normal(s).astype(dtype) for s in self.shapes]

    def cotangent(self, shape, dtype=np.float64) -> np.ndarray:
        rng = np.random.default_rng(self.seed + 1)
        return rng.standard_normal(shape).astype(dtype)


def _numpy_accepts(spec: str, shapes) -> tuple[int, ...] | None:
    """numpy's output shape, or None when numpy refuses the case."""
    try:
        out = np.einsum(spec, *[np.zeros(s) for s in shapes])
    except ValueError:
        return None
    return np.shape(out)


@st.composite
def _term(draw, letters, sizes, ell_shape, use_ellipsis, max_rank, repeats, broadcast):
    """One operand's term text and shape."""
    rank = draw(st.sampled_from(tuple(range(1, max_rank + 1)) + (0,)))  # 0-d: 1 in max_rank+1
    if repeats:
        axes = draw(st.lists(st.sampled_from(letters), min_size=rank, max_size=rank))
    else:
        axes = draw(st.permutations(letters))[:rank]
    # size-1 broadcasting is per letter: numpy wants repeated axes of one operand equal
    # (choices from sampled_from, not integers, which generates its bounds too often)
    ones = {c for c in set(axes) if broadcast and draw(ONE_IN_FIVE)}
    shape = [1 if c in ones else sizes[c] for c in axes]
    text = "".join(axes)
    if use_ellipsis and draw(THREE_IN_FOUR):
        pos = draw(st.integers(0, len(axes)))
        k = draw(st.sampled_from(tuple(range(len(ell_shape), -1, -1))))  # all, fewer, none
        dims = [1 if broadcast and draw(ONE_IN_FOUR) else n
                for n in ell_shape[len(ell_shape) - k:]]
        text = text[:pos] + "..." + text[pos:]
        shape = shape[:pos] + dims + shape[pos:]
    return text, tuple(shape)


@st.composite
def _output(draw, terms):
    """An explicit output: some of the input letters, permuted, maybe with '...'."""
    used = sorted({c for t, _ in terms for c in t if c.isalpha()})
    chosen = draw(st.permutations(used))
    chosen = list(chosen[:draw(st.integers(0, len(used)))])
    if any("..." in t for t, _ in terms):
        chosen.insert(draw(st.integers(0, len(chosen))), "...")
    return "".join(chosen)


@st.composite
def einsum_cases(draw, max_operands: int = 4, max_rank: int = 3, ellipsis: bool = True,
                 repeats: bool = True, broadcast: bool = True, spaces: bool = True) -> Case:
    """A random spec numpy accepts, with shapes that fit it."""
    n_ops = draw(st.integers(1, max_operands))
    letters = draw(st.lists(st.sampled_from(LETTERS), min_size=1, max_size=6, unique=True))
    sizes = {c: draw(SIZES) for c in letters}
    ell_rank = draw(st.sampled_from((2, 1, 0))) if ellipsis else 0
    ell_shape = tuple(draw(SIZES) for _ in range(ell_rank))
    use_ellipsis = ellipsis and draw(st.booleans())
    terms = [draw(_term(letters, sizes, ell_shape, use_ellipsis, max_rank, repeats, broadcast))
             for _ in range(n_ops)]
    lhs = ",".join(t for t, _ in terms)
    spec = lhs if draw(st.booleans()) else lhs + "->" + draw(_output(terms))
    if spaces and draw(st.integers(0, 9)) == 0:
        spec = spec.replace(",", " , ").replace("->", " -> ")
    shapes = tuple(s for _, s in terms)
    out_shape = _numpy_accepts(spec, shapes)
    big = [s for s in shapes + ((out_shape or ()),) if int(np.prod(s)) > MAX_ELEMENTS]
    if out_shape is None or big:
        reject()
    return Case(spec, shapes, draw(st.integers(0, 2**31 - 1)))


@st.composite
def conv_cases(draw):
    """A 2-D windowed conv: shapes, stride and dilation that leave >= 1 output."""
    stride, dilation = draw(st.integers(1, 3)), draw(st.integers(1, 2))
    kh, kw = draw(st.integers(1, 3)), draw(st.integers(1, 3))
    ho, wo = draw(st.integers(1, 3)), draw(st.integers(1, 3))
    # extra positions the window never reaches (uncovered tail)
    eh, ew = draw(st.integers(0, stride - 1)), draw(st.integers(0, stride - 1))
    h = stride * (ho - 1) + dilation * (kh - 1) + 1 + eh
    w = stride * (wo - 1) + dilation * (kw - 1) + 1 + ew
    b, c, k = draw(st.integers(1, 2)), draw(st.integers(1, 2)), draw(st.integers(1, 2))
    return dict(x=(b, h, w, c), w=(kh, kw, c, k), stride=stride, dilation=dilation,
                seed=draw(st.integers(0, 2**31 - 1)))


def window_group(stride: int, outer: str, dilation: int, inner: str) -> str:
    """Text of a window group, e.g. ``window_group(2, 'h', 1, 'u') == '(2h+u)'``."""
    s = "" if stride == 1 else str(stride)
    d = "" if dilation == 1 else str(dilation)
    return f"({s}{outer}+{d}{inner})"


# Hand-written hard cases: (spec, shapes). Every one is accepted by numpy.
HARD_CASES: list[tuple[str, tuple[tuple[int, ...], ...]]] = [
    ("ij,jk->ik", ((2, 3), (3, 4))),
    ("ij,jk", ((2, 3), (3, 4))),
    ("ij,j->i", ((2, 3), (3,))),
    ("ij,jk->i", ((2, 3), (3, 4))),            # k only in one operand, summed
    ("ij,kl->il", ((2, 3), (4, 5))),            # j and k each only in one operand
    ("ii->i", ((3, 3),)),
    ("ii", ((3, 3),)),
    ("iij->ji", ((2, 2, 3),)),
    ("iji->ij", ((2, 3, 2),)),
    ("i,i->", ((4,), (4,))),
    ("i,i", ((4,), (4,))),
    ("i,i->i", ((4,), (4,))),
    ("i,j->ij", ((2,), (3,))),
    ("...ij,...jk->...ik", ((2, 1, 3, 4), (5, 4, 2))),
    ("...ij,...jk", ((2, 1, 3, 4), (5, 4, 2))),
    ("...ij,...jk->...ik", ((2, 3, 4), (2, 4, 5))),
    ("i...,i...->i...", ((2, 1), (1, 3))),
    ("a...b,b...", ((2, 3, 4), (4,))),
    ("...,...->...", ((2, 1), (1, 3))),
    (",->", ((), ())),
    (",", ((), ())),
    ("i,->i", ((3,), ())),
    ("->", ((),)),
    ("bnmd,nmdk->bk", ((2, 3, 3, 4), (3, 3, 4, 5))),
    ("bnmd,nr,mr,dr,kr->bk", ((2, 3, 3, 4), (3, 2), (3, 2), (4, 2), (5, 2))),
    ("bnmd,np,mq,ds,pqsk->bk", ((2, 3, 3, 2), (3, 2), (3, 2), (2, 2), (2, 2, 2, 4))),
    ("bi,ikj,bj->bk", ((2, 3), (3, 4, 5), (2, 5))),
    ("bqd,bkd->bqk", ((2, 3, 4), (2, 5, 4))),
    ("ij->ji", ((2, 3),)),
    ("ij->", ((2, 3),)),
    ("ij->j", ((2, 3),)),
    ("ijk->kji", ((1, 2, 3),)),
    ("ij,ij->", ((1, 3), (2, 1))),              # labelled size-1 broadcasting
    ("ij,jk->ik", ((2, 1), (3, 4))),
    ("ij,ij->ij", ((1, 3), (2, 1))),
    ("ab,ab->ab", ((1, 1), (3, 3))),
    ("i,i", ((3,), (1,))),
    ("bA,Ab", ((2, 3), (3, 2))),
    ("ba,AB", ((2, 3), (4, 5))),
    ("ij,jk->ik", ((2, 0), (0, 3))),            # empty contraction: zeros
    ("i j , j k -> i k", ((2, 3), (3, 4))),
    ("bij,bjk->bik", ((2, 2, 2), (2, 2, 2))),   # tiny batched product
    ("bij,bjk->bik", ((3, 9, 8), (3, 8, 10))),  # batched product big enough for GEMM
    ("ij,jk,kl->il", ((3, 4), (4, 5), (5, 2))),
    ("ab,bc,cd,de->ae", ((2, 3), (3, 2), (2, 3), (3, 2))),
]


@dataclass(frozen=True)
class WindowCase:
    """A windowed spec, its operand shapes, the sizes= it needs, a seed."""

    spec: str
    shapes: tuple[tuple[int, ...], ...]
    sizes: tuple[tuple[str, int], ...]
    seed: int

    @property
    def size_map(self) -> dict[str, int]:
        return dict(self.sizes)

    def operands(self) -> list[np.ndarray]:
        rng = np.random.default_rng(self.seed)
        return [rng.standard_normal(s) for s in self.shapes]


@st.composite
def _window_axis(draw, letters, sizes):
    """A window group and an axis length whose outer extent is exactly sizes[outer]."""
    outer, inner = draw(st.lists(st.sampled_from(letters), min_size=2, max_size=2, unique=True))
    stride, dilation = draw(st.integers(1, 3)), draw(st.integers(1, 2))
    span = stride * (sizes[outer] - 1) + dilation * (sizes[inner] - 1) + 1
    # a tail shorter than the stride is never covered and does not change the extent
    return window_group(stride, outer, dilation, inner), span + draw(st.integers(0, stride - 1)), \
        outer, inner


@st.composite
def window_cases(draw, max_operands: int = 3, output_windows: bool = True) -> WindowCase:
    """Random specs with windowed groups (no ellipsis), for the index-pattern oracle."""
    letters = draw(st.lists(st.sampled_from("bchkuvw"), min_size=2, max_size=5, unique=True))
    sizes = {c: draw(st.integers(1, 3)) for c in letters}
    terms, shapes, inners, used = [], [], set(), []
    for _ in range(draw(st.integers(1, max_operands))):
        text, shape = "", []
        for _ in range(draw(st.integers(0, 3))):
            if draw(st.booleans()):
                group, length, outer, inner = draw(_window_axis(letters, sizes))
                text, inners = text + group, inners | {inner}
                shape.append(length)
                used += [outer, inner]
            else:
                c = draw(st.sampled_from(letters))
                text += c
                shape.append(sizes[c])
                used.append(c)
        terms.append(text)
        shapes.append(tuple(shape))
    if not inners:
        reject()
    names = list(dict.fromkeys(used))
    out = list(draw(st.permutations(names)))[:draw(st.integers(0, len(names)))]
    if output_windows and len(names) >= 2 and draw(st.integers(0, 3)) == 0:
        group, _, _, _ = draw(_window_axis(names, sizes))
        out.insert(draw(st.integers(0, len(out))), group)
    spec = ",".join(terms) + "->" + "".join(out)
    if any(int(np.prod(s)) > MAX_ELEMENTS for s in shapes):
        reject()
    given = tuple(sorted((c, sizes[c]) for c in inners))
    return WindowCase(spec, tuple(shapes), given, draw(st.integers(0, 2**31 - 1)))


LAYOUTS = ("contiguous", "reversed", "strided", "fortran", "broadcast")


def relayout(x: np.ndarray, layout: str) -> np.ndarray:
    """``x`` in another memory layout (a view where possible).

    ``reversed`` has negative strides, ``strided`` skips every other element,
    ``fortran`` is column-major, and ``broadcast`` is a read-only zero-stride
    view repeating ``x[0]`` along the first axis (so its values differ from
    ``x``: compute oracles from the returned array).
    """
    x = np.asarray(x)
    if x.ndim == 0 or layout == "contiguous":
        return x
    everything = tuple(slice(None, None, -1) for _ in x.shape)
    if layout == "reversed":
        return np.ascontiguousarray(x[everything])[everything]
    if layout == "strided":
        big = np.zeros(tuple(2 * n for n in x.shape), dtype=x.dtype)
        every_other = tuple(slice(None, None, 2) for _ in x.shape)
        big[every_other] = x
        return big[every_other]
    if layout == "fortran":
        return np.asfortranarray(x)
    return np.broadcast_to(x[:1], x.shape)
