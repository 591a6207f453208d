"""Long sums cut into blocks (contractnet/blocks.py): the planned cut, and
the sums against numpy.einsum and exact ones."""
from __future__ import annotations

import math
from fractions import Fraction

import numpy as np
import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st

import contractnet as cn
from contractnet import pair
from contractnet.blocks import LONG_SUM, SumBlocks, plan_blocks, sum_in_blocks, sum_rows
from oracles import assert_close
from strategies import LAYOUTS, relayout


def _operands(shapes, dtype=np.float64):
    rng = np.random.default_rng(0)
    return [rng.standard_normal(s).astype(dtype) for s in shapes]


@pytest.mark.parametrize("terms, size, summed, out, planned", [
    # at most LONG_SUM terms: no blocks
    (["ab"], dict(a=64, b=5), "a", "b", None),
    (["abc", "abc"], dict(a=8, b=8, c=3), "ab", "c", None),
    # one index of 600: blocks of 60 rows (a divisor), none left over; the block
    # index comes first, so it takes the letter a
    (["ab", "ab"], dict(a=600, b=4), "a", "b", SumBlocks("abc,abc->ac", 1, (0, 0), 60, None, 10)),
    # a prime 67: one block of 64 and three rows left over
    (["ab"], dict(a=67, b=4), "a", "b", SumBlocks("abc->ac", 1, (0,), 64, "ab->b", 1)),
    # rows of 20 terms: blocks of three rows (30 divides evenly)
    (["ijb"], dict(i=30, j=20, b=16), "ij", "b", SumBlocks("abcd->ad", 1, (0,), 3, None, 10)),
    # rows of 40: each a block, i and j stay axes of the partial sums
    (["ijkb"], dict(i=3, j=2, k=40, b=8), "ijk", "b",
     SumBlocks("abcd->abd", 2, (), 1, None, 6)),
    # the summed indices as laid out in memory, not as written: a (5) innermost,
    # b cut into rows of 10 (12 would fit, but 10 divides 70)
    (["ab"], dict(a=5, b=70), "ba", "", SumBlocks("abc->b", 1, (1,), 10, None, 7)),
    # a term that repeats an index: no cut
    (["aab"], dict(a=100, b=4), "a", "b", None),
])
def test_the_cut(terms, size, summed, out, planned):
    assert plan_blocks(terms, size, list(summed), out) == planned


@pytest.mark.parametrize("shape, cut", [
    ((30, 20, 16), 3),     # rows of 20 terms: blocks of three of them
    ((5, 3, 70, 16), 35),  # rows of 70 terms: cut into two blocks of 35
    ((5, 3, 67, 16), 64),  # rows of 67: cut into a block of 64, and what is left
    ((3, 2, 40, 32), 1),   # rows of 40 terms: each row a block
])
def test_strided_dot_products_cut_where_they_fit(shape, cut):
    terms = "ijkb"[4 - len(shape):]
    spec = f"{terms},{terms}->b"
    a, b = _operands([shape] * 2)
    plan = pair.plan_pair(terms, a.shape, a.strides, terms, b.shape, b.strides, "b")
    assert plan.sum_blocks.factor == cut
    assert_close(cn.einsum(spec, a, b), np.einsum(spec, a, b), what=spec)
    for dtype in (np.float16, np.complex64):
        x, y = a.astype(dtype), b.astype(dtype)
        got = cn.einsum(spec, x, y)
        assert got.dtype == dtype
        np.testing.assert_allclose(got, np.einsum(spec, x, y, dtype=np.complex128),
                                   rtol=2e-3 if dtype == np.float16 else 1e-5)
    for x, y in ((a * 4).astype(np.int64), (b * 4).astype(np.int64)), (a > 1, b > 1):
        got = cn.einsum(spec, x, y)  # exact sums, and a bool's is an "or"
        assert got.dtype == x.dtype
        np.testing.assert_array_equal(got, np.einsum(spec, x, y))


@pytest.mark.parametrize("x", [np.arange(67.0), np.asfortranarray(np.ones((67, 1))),
                               np.arange(135.0).reshape(5, 27)[:, ::2]])
def test_a_full_sum_cut_into_blocks_is_a_value(x):
    """Sums of all terms, more than LONG_SUM but too few for the pairwise route:
    the blocks' rows past the last whole block add to a 0-d result."""
    spec = "ij->" if x.ndim == 2 else "i->"
    got = cn.einsum(spec, x)
    assert np.ndim(got) == 0 and got == np.einsum(spec, x)


def _exact_dots(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """``"ab,ab->b"`` summed exactly, then rounded to float64."""
    return np.array([float(sum(Fraction(x) * Fraction(y) for x, y in zip(col_a, col_b)))
                     for col_a, col_b in zip(a.T.tolist(), b.T.tolist())])


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("k", [LONG_SUM, LONG_SUM + 1, 3000])
def test_long_sums_stay_within_a_few_units_in_the_last_place(k, dtype):
    """Up to LONG_SUM terms numpy.einsum's one-by-one sums stay within a few
    units in the last place; longer ones add up in blocks of at most that
    many, which keeps them so (numpy.einsum's own sums of 3000 positive
    terms lose more)."""
    rng = np.random.default_rng(k)
    columns = max(16, -(-4096 // k))  # as many as make a strided product
    a, b = (rng.random((k, columns)).astype(dtype) for _ in range(2))
    plan = pair.plan_pair("ab", a.shape, a.strides, "ab", b.shape, b.strides, "b")
    assert plan.strided_dots and (plan.sum_blocks is None) == (k <= LONG_SUM)
    exact = _exact_dots(a, b)
    bound = 4 * np.finfo(dtype).eps * np.abs(exact).max()
    got = cn.einsum("ab,ab->b", a, b)
    assert got.dtype == dtype and np.abs(got - exact).max() <= bound
    if k == 3000:
        assert np.abs(np.einsum("ab,ab->b", a, b) - exact).max() > bound


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_partial_sums_laid_out_innermost_add_up_by_einsum_and_keep_their_digits(
        dtype, monkeypatch):
    """A sum over the first axis of a transposed array, 100 terms (too few
    for ndarray.sum's pairwise sums): the cut axis is innermost in memory,
    and so is the partial sums' block axis, which numpy.einsum adds up (not
    ndarray.sum, slow along it); the sum stays within a few units in the
    last place of the exact one."""
    rng = np.random.default_rng(5)
    x = rng.random((6, 7, 100)).astype(dtype).T  # (100, 7, 6), the 100 innermost
    rows = []
    monkeypatch.setattr("contractnet.blocks.sum_rows",
                        lambda parts, dtype: rows.append(parts.shape) or parts.sum(0))
    got = pair.sum_over(x, (0,), x.dtype)
    assert rows == []  # the parts were added up by numpy.einsum
    exact = np.array([[float(sum(map(Fraction, x[:, i, j].tolist()))) for j in range(6)]
                      for i in range(7)])
    assert got.shape == (7, 6) and got.dtype == dtype
    assert np.abs(got - exact).max() <= 4 * np.finfo(dtype).eps * np.abs(exact).max()
    rows_first = np.ascontiguousarray(x)  # the cut axis outermost: parts summed as rows
    assert_close(pair.sum_over(rows_first, (0,), x.dtype), got, tol=1e-4)
    assert rows


@settings(max_examples=300, deadline=None)
@given(st.data())
def test_any_sums_cut_into_blocks_add_up_to_numpys(data):
    """Any sizes, summed axes, order of the sums, layout and operand count:
    the blocks' sums equal numpy.einsum's (and sum_over's, ndarray.sum's)."""
    ndim = data.draw(st.integers(1, 4), label="ndim")
    shape = tuple(data.draw(st.lists(st.integers(1, 70), min_size=ndim, max_size=ndim)))
    assume(math.prod(shape) <= 40_000)
    axes = tuple(sorted(data.draw(st.lists(st.integers(0, ndim - 1), min_size=1, unique=True))))
    x = relayout(np.random.default_rng(0).standard_normal(shape),
                 data.draw(st.sampled_from(LAYOUTS)))
    letters = "abcd"[:ndim]
    kept = "".join(c for i, c in enumerate(letters) if i not in axes)
    summed = data.draw(st.permutations([letters[i] for i in axes]))
    terms = [letters] * data.draw(st.integers(1, 2))
    blocks = plan_blocks(terms, dict(zip(letters, shape)), summed, kept)
    want = np.einsum(",".join(terms) + "->" + kept, *[x] * len(terms))
    if blocks is not None:
        got = sum_in_blocks(blocks, [x] * len(terms), want.shape)
        assert got.shape == want.shape and got.dtype == want.dtype
        assert_close(got, want, what=f"{terms}->{kept} {shape}")
    assert_close(pair.sum_over(x, axes, x.dtype), x.sum(axis=axes), what=f"sum {axes}")


def test_the_partial_sums_count_against_the_budget():
    x = np.ones((640, 1000))  # 64-term blocks down the columns: 10 partial sums each
    blocks = plan_blocks(["ab"], dict(a=640, b=1000), "a", "b")
    assert blocks.parts == 10
    with cn.memory_budget(60_000):  # the result fits (8 kB), its partial sums do not
        with pytest.raises(cn.MemoryBudgetError, match="partial sums"):
            sum_in_blocks(blocks, (x,), (1000,))
    np.testing.assert_array_equal(sum_in_blocks(blocks, (x,), (1000,)), np.full(1000, 640.0))


@pytest.mark.parametrize("shape", [(0, 3), (1, 5), (64, 7), (65, 7), (200, 3, 4), (4097, 2),
                                   (9000,)])
@pytest.mark.parametrize("layout", ["contiguous", "reversed", "strided", "fortran"])
def test_rows_summed_in_blocks_match_numpy(shape, layout):
    """Any number of rows (a partial last block, several rounds), any layout."""
    x = relayout(np.random.default_rng(0).standard_normal(shape), layout)
    got = sum_rows(x, np.dtype(np.float64))
    assert got.shape == shape[1:] and got.dtype == np.float64
    assert_close(got, x.sum(axis=0), what=f"{shape} {layout}")


def test_rows_summed_in_blocks_keep_a_gemms_digits():
    """ndarray.sum over the first axis adds row after row: 4,096 rows of 512
    float32 terms come out 2.7e-6 of the largest sum off; in blocks, 4e-7."""
    x = np.random.default_rng(0).random((4096, 512)).astype(np.float32)
    exact = x.astype(np.float64).sum(axis=0)
    got = sum_rows(x, np.dtype(np.float32))
    assert got.dtype == np.float32
    assert np.abs(got - exact).max() <= 4e-7 * exact.max()
    assert np.abs(x.sum(axis=0) - exact).max() > 1e-6 * exact.max()
