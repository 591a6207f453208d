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
    rank = draw(st.integers(0, max_rank))
    if repeats:
        axes = draw(st.lists(st.sampled_from(letters), min_size=rank, max_size=rank))
    else:
        axes = draw(st.lists(st.sampled_from(letters), min_size=0,
                             max_size=min(rank, len(letters)), unique=True))
    # size-1 broadcasting is per letter: numpy wants repeated axes of one operand equal
    ones = {c for c in set(axes) if broadcast and draw(st.integers(0, 4)) == 0}
    shape = [1 if c in ones else sizes[c] for c in axes]
    text = "".join(axes)
    if use_ellipsis and draw(st.booleans()):
        pos = draw(st.integers(0, len(axes)))
        k = draw(st.integers(0, len(ell_shape)))
        dims = [1 if broadcast and draw(st.integers(0, 3)) == 0 else n
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
    sizes = {c: draw(st.integers(1, 3)) for c in letters}
    ell_shape = tuple(draw(st.lists(st.integers(1, 3), max_size=2))) if ellipsis else ()
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
