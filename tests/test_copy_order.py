"""How a GEMM operand that must be copied is laid out (contractnet.copy_order)."""
from __future__ import annotations

import numpy as np
import pytest

import contractnet as cn
from contractnet import copy_order, pair
from contractnet.budget import check_allocation
from oracles import assert_close, einsum_vjp

RNG_SEED = 20261127


def _plan_order(names: str, perm) -> str:
    """An operand's index names in the order a pair plan lays it out."""
    return names if perm is None else "".join(names[i] for i in perm)


def _short_axis_cases():
    """Operands whose innermost axis holds 2-4 elements, as (a, an, b, bn,
    keep, a's layout, b's layout) with the layouts a plan should pick."""
    rng = np.random.default_rng(RNG_SEED)
    # b's own axes (b, h) are innermost in its matrix; h (3) is contiguous, but
    # u is sliced, so h is not nested in b and b is copied whatever the order
    duk = rng.standard_normal((4, 8, 64))
    dkbuh = rng.standard_normal((4, 64, 17, 16, 3))[:, :, :, ::2]
    # a's own axes (i, b) are innermost in its matrix; b (2) is contiguous
    bjhip = rng.standard_normal((5, 4, 40, 7, 2)).transpose(4, 1, 3, 2, 0)
    hkjp = rng.standard_normal((7, 8, 4, 5))
    bkij = rng.standard_normal((2, 8, 40, 4))
    # nested: (i, p) is one contiguous run, laid out as a view
    kip, kj = rng.standard_normal((32, 64, 3)), rng.standard_normal((32, 16))
    # broadcast along its innermost axis: a copy reads it as fast either way
    kip_broadcast = np.broadcast_to(rng.standard_normal((32, 64, 1)), (32, 64, 3))
    # i's elements lie 4320 bytes apart (every read a page away from the
    # last), so a's summed k (180, contiguous but for p) goes innermost ...
    ikp, kj_long = rng.standard_normal((32, 180, 3)), rng.standard_normal((180, 16))
    # ... unless it is short too
    ikp_short_k, kj_short = ikp[:, :8], rng.standard_normal((8, 16))
    # b's summed (d, g) would go innermost, g (4) contiguous and d not nested:
    # its own c (50) goes innermost instead
    gduxy = rng.standard_normal((4, 7, 40, 12, 2))
    ducg = rng.standard_normal((7, 40, 50, 4))
    # every other pixel of an RGB image: a's summed c (3) is its group's only
    # axis, nested in nothing, but (b, h, w) is not one axis of a view
    bhwc, ck = rng.standard_normal((8, 32, 32, 3))[:, ::2, ::2], rng.standard_normal((3, 8))
    # p and q both hold 17, but p's elements lie 6528 bytes apart: q goes innermost
    pkqr, kj_tie = rng.standard_normal((17, 4, 68, 3))[:, :, ::4], rng.standard_normal((4, 6))
    # b, the larger, has its summed (f, d) innermost, d (2) not nested in f:
    # a (a view) holds more than a quarter of b's elements, so b's own e goes
    # innermost; a smaller a is copied with the summed group reordered
    ifd, fed = rng.standard_normal((96, 64, 2)), rng.standard_normal((64, 128, 2))
    ifd_small = rng.standard_normal((16, 64, 2))
    ifd_strided = rng.standard_normal((96, 128, 2))[:, ::2]   # copied whatever its order
    # a's fastest axis is its batch index q (4 of 12 padded), so its summed h,
    # innermost, lies 6144 bytes apart: its own b (96 bytes apart) goes innermost
    hbq, wqh = rng.standard_normal((160, 64, 12))[:, :, :4], rng.standard_normal((17, 4, 160))
    return [
        (duk, "duk", dkbuh, "dkbuh", "khb", "kdu", "kduhb"),   # was kdubh
        (bjhip, "bjhip", hkjp, "hkjp", "bkij", "jphbi", "jkph"),  # was jphib
        # the shared summed group (i, b) follows the smaller operand, which
        # holds i innermost: (b, i), as the forward pass above laid a out
        (bjhip, "bjhip", bkij, "bkij", "hkjp", "jphbi", "jbik"),  # was jphib, jibk
        (kip, "kip", kj, "kj", "ipj", "kip", "kj"),
        (kip_broadcast, "kip", kj, "kj", "ipj", "kip", "kj"),
        (ikp, "ikp", kj_long, "kj", "ipj", "ipk", "kj"),   # was kip
        (ikp_short_k, "ikp", kj_short, "kj", "ipj", "kip", "kj"),
        (gduxy, "gduxy", ducg, "ducg", "yuxc", "udgxy", "udgc"),  # was udgxy, ucdg
        (bhwc, "bhwc", ck, "ck", "bhwk", "cbhw", "ck"),           # was bhwc
        (pkqr, "pkqr", kj_tie, "kj", "pqrj", "kprq", "kj"),       # was kpqr
        (ifd, "ifd", fed, "fed", "ei", "ifd", "fde"),             # was ifd, efd
        (ifd_small, "ifd", fed, "fed", "ei", "idf", "edf"),       # was ifd, efd
        (ifd_strided, "ifd", fed, "fed", "ei", "idf", "edf"),     # was ifd, efd
        (hbq, "hbq", wqh, "wqh", "wbq", "qhb", "qwh"),            # was qbh
    ]


@pytest.mark.parametrize("case", _short_axis_cases(),
                         ids=["own-right", "own-left", "summed", "nested", "broadcast",
                              "summed-inner", "far-own", "own-inner", "one-axis", "tie",
                              "smaller-view", "smaller-quarter", "smaller-copied", "far"])
def test_a_copied_operand_runs_its_copy_along_a_long_axis(case):
    """A GEMM operand copied with a short innermost axis (of 2-4 elements)
    runs numpy's copy a few elements per inner loop, several times slower
    than along a long axis: its own axes, or the summed ones, are ordered
    so that the copy's inner loop runs along their longest, or the other
    group goes innermost.  An operand read as a view, broadcast along its
    short axis, or with no long axis whose elements lie less than a page
    apart, keeps its layout."""
    a, an, b, bn, keep, a_laid, b_laid = case
    plan = pair.plan_pair(an, a.shape, a.strides, bn, b.shape, b.strides, keep)
    assert plan.einsum_eq is None
    assert (_plan_order(an, plan.perm_a), _plan_order(bn, plan.perm_b)) == (a_laid, b_laid)
    got, names = pair.contract_pair(a, an, b, bn, keep)
    assert_close(got, np.einsum(f"{an},{bn}->{names}", a, b), what=f"{an},{bn}->{keep}")


def test_a_gradient_lays_a_copied_operand_out_as_its_forward_pass_did():
    """So that the backward pass reuses the forward pass's copy (a Memo):
    ``bjhip`` times ``hkjp`` gives ``bkij``, whose product with ``bjhip``
    is the gradient of ``hkjp``."""
    (a, an, b, bn, keep, *_), (_, _, grad, gn, wrt, *_) = _short_axis_cases()[1:3]
    forward = pair.plan_pair(an, a.shape, a.strides, bn, b.shape, b.strides, keep)
    backward = pair.plan_pair(an, a.shape, a.strides, gn, grad.shape, grad.strides, wrt)
    assert forward.perm_a is not None
    assert (forward.perm_a, forward.shape_a) == (backward.perm_a, backward.shape_a)


@pytest.mark.parametrize("spec, x_first", [("c,adc->ad", False), ("adc,c->ad", True)])
def test_a_backward_pass_reuses_the_forward_pass_copy_of_an_operand(spec, x_first,
                                                                    monkeypatch):
    """x's own group (a, d) is laid out (d, a) forward, d (3) being short;
    the gradient of w sums over (a, d), innermost in x, the larger operand,
    and lays them out the same way, so x is copied once (x being larger than
    pair.SMALL_COPY_BYTES, which are copied anew)."""
    rng = np.random.default_rng(RNG_SEED)
    w = rng.standard_normal(120)[::2]
    x = rng.standard_normal((60, 60, 5))[:, :, :3].transpose(1, 2, 0)   # a, d, c
    copies = []

    def recording(shape, dtype, what):
        copies.append(tuple(shape))
        return check_allocation(shape, dtype, what)

    monkeypatch.setattr(pair, "check_allocation", recording)
    operands = (x, w) if x_first else (w, x)
    out, backward = cn.vjp(lambda *ops: cn.einsum(spec, *ops), *operands)
    grads = backward(np.ones(out.shape))
    assert copies.count(x.shape) == 1
    for got, want in zip(grads, einsum_vjp(spec, operands, np.ones(out.shape))):
        assert_close(got, want)


@pytest.mark.parametrize("group, strides, sizes, rest, short", [
    ("ab", (40, 8), (20, 3), (), True),        # b not nested in a
    ("ab", (24, 8), (20, 3), (), False),       # nested: one axis of a view
    ("ab", (48, 8), (20, 5), (), False),       # b holds 5
    ("ab", (40, 0), (20, 3), (), False),       # b broadcast
    ("ab", (40, 8), (20, 1), (), False),       # b is length 1: a alone, 20 long
    # b is its group's only axis: the next one out is the other group's y
    ("b", (8,), (3,), (("xy", (1920, 48), (4, 20)),), True),   # (x, y) is no view
    ("b", (8,), (3,), (("xy", (960, 48), (4, 20)),), False),   # it is
    ("b", (8,), (3,), (("xy", (960, 24), (4, 20)),), False),   # b nested in y
])
def test_a_short_inner_loop_is_one_of_at_most_four_elements_copied_anyway(
        group, strides, sizes, rest, short):
    stride, size = dict(zip(group, strides)), dict(zip(group, sizes))
    others = []
    for names, other_strides, other_sizes in rest:
        stride |= dict(zip(names, other_strides))
        size |= dict(zip(names, other_sizes))
        others.append(names)
    assert copy_order.short_inner_loop(group, stride, size, others) == short
    # a short loop is a slow one
    assert copy_order.slow_inner_loop(group, stride, size, others) >= short


@pytest.mark.parametrize("strides, rest, slow", [
    ((8192, 4096), (), True),            # b's elements a page apart
    ((-8192, -4096), (), True),          # read backwards
    ((8192, 4000), (), False),
    ((8192, 4096), (("x", 0),), False),  # broadcast along x: maybe a view
])
def test_a_slow_inner_loop_is_also_one_along_an_axis_a_page_apart(strides, rest, slow):
    stride, size = dict(zip("ab", strides)), {"a": 20, "b": 20}
    for name, other in rest:
        stride[name], size[name] = other, 4
    others = [name for name, _ in rest]
    assert copy_order.slow_inner_loop("ab", stride, size, (others,)) == slow


@pytest.mark.parametrize("strides, sizes, moved", [
    ((4000, 96, 8), (17, 17, 3), "acb"),     # a and b as long: b, the nearer
    ((8000, 96, 8), (32, 17, 3), "acb"),     # a is longer, but a page away
    ((8000, 4096, 8), (32, 17, 3), None),    # no axis near enough
    ((400, 96, 8), (15, 8, 3), None),        # no axis long enough
])
def test_a_copy_runs_fastest_along_its_longest_near_axis(strides, sizes, moved):
    stride, size = dict(zip("abc", strides)), dict(zip("abc", sizes))
    got = copy_order.fast_last(list("abc"), stride, size)
    assert (None if got is None else "".join(got)) == moved
