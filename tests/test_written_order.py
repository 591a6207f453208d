"""The order numpy.einsum writes a product in (contractnet.written_order)."""
from __future__ import annotations

import math

import numpy as np
import pytest

from contractnet import pair, written_order
from oracles import assert_close


def _laid_out(shape, memory_order, step=1):
    """A float32 array of ``shape`` whose axes lie in memory in
    ``memory_order`` (axis numbers, outermost first), taking every
    ``step``-th element along the innermost."""
    stored = [shape[i] for i in memory_order]
    stored[-1] *= step
    x = np.arange(math.prod(stored), dtype=np.float32).reshape(stored)[..., ::step]
    return x.transpose(np.argsort(memory_order))


@pytest.mark.parametrize("an, ashape, alaid, bn, bshape, blaid, keep, written", [
    # the larger operand's order innermost, the other's own indices outside it
    ("lo", (5, 32), (0, 1), "op", (32, 4), (1, 0), "lop", "plo"),
    ("lo", (5, 32), (0, 1), "op", (32, 40), (1, 0), "lop", "lpo"),
    # ...where that ends in a run of at least MIN_RUN elements; else keep's order
    ("lo", (5, 6), (0, 1), "op", (6, 40), (1, 0), "lop", "lop"),
    # the larger one's innermost index is strided in the other: the smaller
    # one's run (r, then z, contiguous in both) goes innermost instead
    ("yz", (50, 64), (0, 1), "zr", (64, 32), (0, 1), "zry", "yzr"),
    # ...and so where the larger one is strided along its innermost itself
    ("yz", (50, 64), ((0, 1), 2), "zr", (64, 32), (0, 1), "zry", "yzr"),
    # ...but not when that run is shorter than MIN_RUN (r only: yz holds z, not r):
    # then the larger one's order, whose inner loop (z, 64) is longer than
    # keep's (y, 50), though it reads the smaller one strided
    ("yz", (50, 64), ((0, 1), 2), "zr", (64, 8), (0, 1), "zry", "ryz"),
    ("ij", (48, 256), (1, 0), "ilj", (48, 12, 256), (0, 1, 2), "lji", "ilj"),
    # ...and keep's order where its inner loop is longer (y, 100, against z, 64)
    ("yz", (100, 64), ((0, 1), 2), "zr", (64, 8), (0, 1), "rzy", "rzy"),
    # the caller's order where every operand holding its innermost index reads it
    # contiguously, in a run of MIN_RUN or more: C-ordered operands, C-ordered result
    ("bi", (64, 128), (0, 1), "bj", (64, 96), (0, 1), "bij", "bij"),
    ("ij", (64, 64), (0, 1), "k", (16,), (0,), "ijk", "ijk"),
    # ...and a shorter run (k, 8) gives way to the larger operand's (ij, 4096)...
    ("ij", (64, 64), (0, 1), "k", (8,), (0,), "ijk", "kij"),
    # ...but not in a product of fewer than MIN_REORDERED elements
    ("ij", (20, 30), (0, 1), "k", (8,), (0,), "ijk", "ijk"),
    # a short run (x, 12) in keep's order and none of MIN_RUN in either
    # operand's: the larger operand's, where numpy's inner loop is as long...
    ("yzx", (12, 24, 12), (0, 1, 2), "wx", (12, 12), (0, 1), "zwyx", "wyzx"),
    # ...or longer (y, 24, against w, 4)
    ("yxz", (24, 24, 24), (1, 2, 0), "yw", (24, 4), (0, 1), "yxzw", "wxzy"),
    ("jq", (64, 384), ((0, 1), 2), "qr", (384, 32), (0, 1), "qjr", "qjr"),
])
def test_a_product_in_any_layout_is_written_in_its_operands_order(
        an, ashape, alaid, bn, bshape, blaid, keep, written):
    a, b = (_laid_out(shape, *(laid if isinstance(laid[0], tuple) else (laid,)))
            for shape, laid in ((ashape, alaid), (bshape, blaid)))
    assert written_order.MIN_RUN == 16
    plan = pair.plan_pair(an, a.shape, a.strides, bn, b.shape, b.strides, keep,
                          any_layout=True, itemsizes=(a.itemsize, b.itemsize))
    assert plan.einsum_eq is not None and plan.result_names == written
    got, names = pair.contract_pair(a, an, b, bn, keep, any_layout=True)
    assert names == written and got.flags.c_contiguous
    assert_close(got, np.einsum(f"{an},{bn}->{names}", a, b))
    # asked for no layout, the same product comes back C-ordered in keep's order
    got, names = pair.contract_pair(a, an, b, bn, keep)
    assert names == keep and got.flags.c_contiguous


def test_products_that_sum_keep_the_callers_order_where_no_order_reads_in_order():
    """numpy.einsum loops over summed indices innermost: the inner loop of
    the written order says nothing of theirs.  Strided dot products, e and
    b summed, written in the larger operand's order took 4 times as long."""
    rng = np.random.default_rng(0)
    x = rng.standard_normal((6, 20, 3, 80)).astype(np.float32)[..., ::2]          # b f d e
    a = np.broadcast_to(x.transpose(1, 3, 0, 2)[..., None], (20, 40, 6, 3, 3))   # f e b d h
    b = rng.standard_normal((80, 6, 3)).astype(np.float32)[::-2].transpose(2, 0, 1)  # h e b
    plan = pair.plan_pair("febdh", a.shape, a.strides, "heb", b.shape, b.strides, "edhf",
                          any_layout=True, itemsizes=(a.itemsize, b.itemsize))
    assert plan.strided_dots and plan.result_names == "edhf"
    got, names = pair.contract_pair(a, "febdh", b, "heb", "edhf", any_layout=True)
    assert_close(got, np.einsum(f"febdh,heb->{names}", a, b), tol=1e-4)
