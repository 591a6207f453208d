"""Forward execution: numpy.einsum for plain specs, loops for windowed ones."""
from __future__ import annotations

import math
import tracemalloc
import warnings

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import contractnet as cn
from failed_specs import FAILED_SPECS
from oracles import (assert_close, conv2d_loop, distinct_values, einsum_vjp, linear_vjp,
                     numeric_vjp, pattern_einsum, pool2d_loop, reduce_window_loop,
                     scatter2d_loop)
from strategies import (HARD_CASES, LAYOUTS, Case, conv_cases, einsum_cases, relayout,
                        window_cases, window_group)

RNG_SEED = 20240531


def _operands(shapes, seed=RNG_SEED, dtype=np.float64):
    rng = np.random.default_rng(seed)
    return [rng.standard_normal(s).astype(dtype) for s in shapes]


def _check_forward(case: Case) -> None:
    ops = case.operands()
    want = np.einsum(case.spec, *ops)
    got = cn.einsum(case.spec, *ops)
    # like numpy.einsum, a 0-d result may come back as a numpy scalar
    assert isinstance(got, (np.ndarray, np.generic)), type(got)
    assert np.asarray(got).dtype == np.asarray(want).dtype
    assert_close(got, want, what=f"{case.spec} {case.shapes}")


# ------------------------------------------------------------- plain specs
@given(einsum_cases())
def test_forward_matches_numpy(case):
    _check_forward(case)


@pytest.mark.slow
@settings(max_examples=2000)
@given(einsum_cases())
def test_forward_matches_numpy_many(case):
    _check_forward(case)


@pytest.mark.parametrize("spec, shapes", HARD_CASES, ids=[s for s, _ in HARD_CASES])
def test_forward_hard_cases(spec, shapes):
    _check_forward(Case(spec, shapes, RNG_SEED))


@pytest.mark.parametrize("spec, shapes, note", FAILED_SPECS, ids=[s for s, *_ in FAILED_SPECS])
def test_forward_failed_specs(spec, shapes, note):
    _check_forward(Case(spec, shapes, RNG_SEED))


@given(einsum_cases(), st.lists(st.sampled_from(LAYOUTS), min_size=4, max_size=4))
def test_forward_with_non_contiguous_operands(case, layouts):
    ops = [relayout(x, layout) for x, layout in zip(case.operands(), layouts)]
    assert_close(cn.einsum(case.spec, *ops), np.einsum(case.spec, *ops),
                 what=f"{case.spec} {case.shapes} {layouts}")


def test_same_array_as_two_operands():
    a = _operands([(3, 3)])[0]
    assert_close(cn.einsum("ij,jk->ik", a, a), a @ a)
    assert_close(cn.einsum("ij,ij->", a, a), np.sum(a * a))


def test_array_likes_are_accepted():
    assert_close(cn.einsum("ij,jk->ik", [[1.0, 2.0]], [[3.0], [4.0]]), [[11.0]])
    assert_close(cn.einsum(",->", 2.0, 3.0), np.float64(6.0))


@pytest.mark.parametrize("a, b", [(np.float32, np.float64), (np.int64, np.float32),
                                  (np.int32, np.int64)], ids=str)
def test_mixed_dtypes_promote_like_numpy(a, b):
    x, y = np.ones((2, 3), dtype=a), np.ones((3,), dtype=b)
    assert cn.einsum("ij,j->i", x, y).dtype == np.einsum("ij,j->i", x, y).dtype


@pytest.mark.parametrize("spec, dtypes, values", [
    ("i,i,i->", (np.int8, np.int8, np.float64), (100, 2, 1)),      # int8 pair would wrap
    ("i,i,i->", (np.uint8, np.uint8, np.int8), (200, 2, 1)),
    ("i,i,->", (np.float16, np.float16, np.float64), (300, 300, 1e-3)),  # float16 overflow
    ("ij,jk,kl->il", (np.float32, np.float32, np.float64), (1e30, 1e30, 1e-30)),
    ("i,i,i->i", (np.int8, np.uint8, np.float16), (1, 1, 1)),      # promotion order
    ("i,i,i->", (np.bool_, np.bool_, np.int64), (True, True, 3)),
])
def test_three_operands_of_mixed_dtypes_compute_in_their_common_dtype(spec, dtypes, values):
    # numpy sums every product in the common dtype; pair by pair in each pair's own
    # dtype the intermediates would wrap or overflow
    shapes = [(2, 2) if len(t) == 2 else (() if not t else (2,))
              for t in spec.split("->")[0].split(",")]
    ops = [np.full(s, v, dtype=d) for s, v, d in zip(shapes, values, dtypes)]
    want = np.einsum(spec, *ops)
    got = cn.einsum(spec, *ops)
    assert got.dtype == want.dtype
    np.testing.assert_array_equal(got, want)


def test_traced_three_operands_of_mixed_float_dtypes_compute_in_the_common_dtype():
    a = np.full(2, 300, np.float16)
    scale = np.array(1e-3)
    y, vjp_fn = cn.vjp(lambda a, b: cn.einsum("i,i,->", a, b, scale), a, a)
    np.testing.assert_allclose(y, np.einsum("i,i,->", a, a, scale))
    da, db = vjp_fn(np.array(1.0))
    assert da.dtype == db.dtype == np.float16
    np.testing.assert_allclose(da, [0.3, 0.3], rtol=1e-3)


@pytest.mark.parametrize("dtype, values, want", [
    (np.bool_, [[True, False], [True, True]], [0.75]),  # a bool sum would be an "or"
    (np.int8, [[100, 100], [100, 100]], [100.0]),         # an int8 sum would wrap
])
def test_mean_of_integers_or_bools_sums_in_float64(dtype, values, want):
    x = np.array(values, dtype=dtype)
    got = cn.einsum("ij->", x, reduce="mean")
    assert got.dtype == np.float64
    np.testing.assert_allclose(np.atleast_1d(got), want)
    windowed = cn.einsum("b(2h+u)->bh", np.array([[1, 0, 1, 1]], dtype), sizes={"u": 2},
                         reduce="mean")
    np.testing.assert_allclose(windowed, [[0.5, 1.0]])
    np.testing.assert_allclose(cn.einsum("ij,jk->ik", x, x, reduce="mean"),
                               np.einsum("ij,jk->ik", x.astype(float), x.astype(float)) / 2)


def test_integer_operands_compute_like_numpy():
    a = np.arange(6).reshape(2, 3)
    got = cn.einsum("ij,jk->ik", a, a.T)
    np.testing.assert_array_equal(got, np.einsum("ij,jk->ik", a, a.T))


@pytest.mark.parametrize("spec, shapes", [
    ("ij,jk,kl->il", ((3, 4), (4, 5), (5, 2))),
    ("bnmd,nr,mr,dr,kr->bk", ((2, 3, 3, 4), (3, 2), (3, 2), (4, 2), (5, 2))),
    ("i,j,k->ijk", ((2,), (3,), (4,))),
    ("ab,bc,ca->", ((2, 3), (3, 4), (4, 2))),
])
def test_traced_pairwise_path_equals_untraced(spec, shapes):
    """Three or more traced operands run pairwise; the answer must not change."""
    ops = _operands(shapes)
    plain = cn.einsum(spec, *ops)
    traced, _ = cn.vjp(lambda *xs: cn.einsum(spec, *xs), *ops)
    assert_close(traced, plain)
    assert_close(plain, np.einsum(spec, *ops))


# ------------------------------------------------------------- dtype
@pytest.mark.parametrize("spec, shapes", [
    ("ij,jk->ik", ((3, 4), (4, 5))),
    ("bij,bjk->bik", ((3, 9, 8), (3, 8, 10))),
    ("ii->i", ((3, 3),)),
    ("ij->", ((2, 3),)),
    ("bnmd,nr,mr,dr,kr->bk", ((2, 3, 3, 4), (3, 2), (3, 2), (4, 2), (5, 2))),
    ("b(h+u)(w+v)c,uvck->bhwk", ((2, 5, 5, 2), (2, 2, 2, 3))),
    ("bhwuvc->b(h+u)(w+v)c", ((1, 2, 2, 2, 2, 1),)),
    ("i->ij", ((3,),)),
])
def test_float32_stays_float32(spec, shapes):
    ops32 = _operands(shapes, dtype=np.float32)
    sizes = {"j": 2} if spec == "i->ij" else None
    got = cn.einsum(spec, *ops32, sizes=sizes)
    assert got.dtype == np.float32
    ops64 = [o.astype(np.float64) for o in ops32]
    want = (np.repeat(ops64[0][:, None], 2, axis=1) if spec == "i->ij"  # an output-only index
            else pattern_einsum(spec, *ops64, sizes=sizes))
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("reduce", ["sum", "mean", "max"])
def test_float32_pooling_stays_float32(reduce):
    x = _operands([(1, 4, 4, 2)], dtype=np.float32)[0]
    y = cn.einsum("b(2h+u)(2w+v)c->bhwc", x, sizes={"u": 2, "v": 2}, reduce=reduce)
    assert y.dtype == np.float32
    np.testing.assert_allclose(y, pool2d_loop(x.astype(np.float64), 2, 2, reduce), rtol=1e-5)


def test_cached_plans_do_not_leak_dtype_or_layout():
    x, y = _operands([(3, 9, 8), (3, 8, 10)])
    want = np.einsum("bij,bjk->bik", x, y)
    assert_close(cn.einsum("bij,bjk->bik", x, y), want)
    got32 = cn.einsum("bij,bjk->bik", x.astype(np.float32), y.astype(np.float32))
    assert got32.dtype == np.float32
    np.testing.assert_allclose(got32, want, rtol=1e-5, atol=1e-5)
    assert_close(cn.einsum("bij,bjk->bik", relayout(x, "reversed"), np.asfortranarray(y)), want)
    assert cn.einsum("bij,bjk->bik", x, y).dtype == np.float64


# ------------------------------------------------------------- aliasing
@pytest.mark.parametrize("spec", ["ij->ji", "ij->ij", "ij", "ii->i", "...->...", "i...->...i",
                                  "ij->i", "ji"])
def test_result_never_aliases_the_operand(spec):
    a = _operands([(3, 3)])[0]
    before = a.copy()
    out = cn.einsum(spec, a)
    assert not np.shares_memory(out, a)
    out[...] = 0.0  # writing to the result must not touch the operand
    np.testing.assert_array_equal(a, before)


def test_result_never_aliases_under_tracing():
    a = _operands([(3, 3)])[0]
    out, _ = cn.vjp(lambda x: cn.einsum("ij->ji", x), a)
    assert not np.shares_memory(out, a)


# ------------------------------------------------------------- reductions
def test_mean_reduce_on_plain_specs():
    a, b = _operands([(3, 4), (4, 5)])
    assert_close(cn.einsum("ij->i", a, reduce="mean"), a.mean(axis=1))
    assert_close(cn.einsum("ij,jk->ik", a, b, reduce="mean"), a @ b / 4)
    assert_close(cn.einsum("ij->ji", a, reduce="mean"), a.T)


def test_max_reduce_on_plain_specs():
    a = _operands([(3, 4)])[0]
    assert_close(cn.einsum("ij->i", a, reduce="max"), a.max(axis=1))
    assert_close(cn.einsum("ij->", a, reduce="max"), a.max())
    assert_close(cn.einsum("ii->i", a[:3, :3], reduce="max"), np.diag(a[:3, :3]))


@pytest.mark.parametrize("spec, x, sizes", [
    ("ii->i", np.arange(9, dtype=np.int8).reshape(3, 3), None),
    ("(h+u)->hu", np.arange(5, dtype=np.int16), {"u": 3}),
    ("ii->i", np.eye(3, dtype=bool), None),
])
def test_a_mean_of_integers_read_through_a_view_is_a_writeable_array_of_its_own(spec, x, sizes):
    # the operand is cast to float64 first; the diagonal or window of that copy is a
    # read-only view, which must not be the result (nor keep the whole copy alive)
    got = cn.einsum(spec, x, sizes=sizes, reduce="mean")
    want = np.einsum(spec, x.astype(float)) if sizes is None else \
        np.lib.stride_tricks.sliding_window_view(x.astype(float), 3)
    np.testing.assert_array_equal(got, want)
    assert got.dtype == np.float64 and got.flags.writeable and got.base is None


def test_mean_over_an_empty_axis_is_nan_as_numpys():
    x = np.ones((2, 0))
    with warnings.catch_warnings():  # no warning: nan is the answer asked for
        warnings.simplefilter("error")
        got = cn.einsum("ij->i", x, reduce="mean")
    with pytest.warns(RuntimeWarning, match="empty slice"), np.errstate(invalid="ignore"):
        want = x.mean(axis=1)  # numpy's mean of nothing is nan
    np.testing.assert_array_equal(got, want)
    assert np.isnan(got).all() and got.dtype == np.float64


# ------------------------------------------------------------- windows
def _check_windowed(case):
    ops = case.operands()
    want = pattern_einsum(case.spec, *ops, sizes=case.size_map)
    got = cn.einsum(case.spec, *ops, sizes=case.size_map)
    assert_close(got, want, what=f"{case.spec} {case.shapes} sizes={case.size_map}")


@given(window_cases())
def test_windowed_specs_match_index_pattern_oracle(case):
    _check_windowed(case)


@pytest.mark.slow
@settings(max_examples=1500)
@given(window_cases())
def test_windowed_specs_match_index_pattern_oracle_many(case):
    _check_windowed(case)


@pytest.mark.parametrize("reduce", ["max", "mean"])
@given(case=window_cases(max_operands=1, output_windows=False))
def test_windowed_max_and_mean_match_loop(reduce, case):
    x = distinct_values(np.random.default_rng(case.seed), case.shapes[0])
    got = cn.einsum(case.spec, x, sizes=case.size_map, reduce=reduce)
    want = reduce_window_loop(case.spec, x, case.size_map, reduce)
    assert_close(got, want, what=f"{reduce} {case.spec} {case.shapes} sizes={case.size_map}")


def test_window_with_ellipsis_and_broadcasting():
    x, k = _operands([(2, 1, 6), (3, 3)])
    got = cn.einsum("...(h+u),...u->...h", x, k)
    want = pattern_einsum("ab(h+u),bu->abh", np.broadcast_to(x, (2, 3, 6)), k)
    assert_close(got, want)


@pytest.mark.parametrize("stride, dilation, x_shape, w_shape", [
    (1, 1, (2, 7, 6, 3), (3, 2, 3, 4)),
    (2, 1, (2, 7, 8, 3), (3, 3, 3, 2)),
    (1, 2, (1, 7, 6, 2), (3, 2, 2, 2)),
    (2, 2, (1, 9, 9, 1), (2, 3, 1, 2)),
    (3, 1, (1, 8, 7, 2), (2, 2, 2, 1)),   # positions 6, 7 / 6 never covered
    (2, 1, (1, 4, 4, 1), (4, 4, 1, 1)),   # window as large as the input
])
def test_conv_matches_loop(stride, dilation, x_shape, w_shape):
    x, w = _operands([x_shape, w_shape])
    group_h = window_group(stride, "h", dilation, "u")
    group_w = window_group(stride, "w", dilation, "v")
    spec = f"b{group_h}{group_w}c,uvck->bhwk"
    want = conv2d_loop(x, w, stride, dilation)
    assert_close(cn.einsum(spec, x, w), want, what=spec)
    assert_close(pattern_einsum(spec, x, w), want, what="pattern oracle")


@given(conv_cases())
def test_conv_matches_loop_property(case):
    x, w = _operands([case["x"], case["w"]], seed=case["seed"])
    s, d = case["stride"], case["dilation"]
    spec = f"b{window_group(s, 'h', d, 'u')}{window_group(s, 'w', d, 'v')}c,uvck->bhwk"
    assert_close(cn.einsum(spec, x, w), conv2d_loop(x, w, s, d), what=spec)


@pytest.mark.parametrize("reduce", ["sum", "mean", "max"])
@pytest.mark.parametrize("size, stride, shape", [
    (2, 2, (2, 4, 6, 3)),
    (2, 2, (2, 5, 7, 3)),   # odd sizes: last row and column uncovered
    (3, 2, (1, 7, 8, 2)),
    (2, 1, (1, 3, 4, 2)),   # overlapping windows
    (3, 3, (1, 6, 7, 1)),
])
def test_pooling_matches_loop(reduce, size, stride, shape):
    x = distinct_values(np.random.default_rng(RNG_SEED), shape)
    spec = f"b{window_group(stride, 'h', 1, 'u')}{window_group(stride, 'w', 1, 'v')}c->bhwc"
    got = cn.einsum(spec, x, sizes={"u": size, "v": size}, reduce=reduce)
    assert_close(got, pool2d_loop(x, size, stride, reduce), what=f"{reduce} {spec}")


def test_one_dimensional_window_with_negative_values_max():
    x = -np.abs(_operands([(1, 7, 1)])[0]) - 1.0  # all negative: max is not zero padding
    got = cn.einsum("b(2h+u)c->bhc", x, sizes={"u": 3}, reduce="max")
    want = np.array([[[x[0, 0:3, 0].max()], [x[0, 2:5, 0].max()], [x[0, 4:7, 0].max()]]])
    assert_close(got, want)


@pytest.mark.parametrize("stride, dilation", [(1, 1), (2, 1), (1, 2), (2, 3)])
def test_output_window_scatter_adds(stride, dilation):
    p = _operands([(2, 3, 2, 2, 3, 2)])[0]
    gh, gw = window_group(stride, "h", dilation, "u"), window_group(stride, "w", dilation, "v")
    spec = f"bhwuvc->b{gh}{gw}c"
    want = scatter2d_loop(p, stride, dilation)
    assert_close(cn.einsum(spec, p), want, what=spec)
    assert_close(pattern_einsum(spec, p), want, what="pattern oracle")


def test_output_window_longer_than_its_span():
    p = _operands([(3, 2)])[0]
    got = cn.einsum("hu->(2h+u)", p, sizes={"2h+u": 8})
    want = np.zeros(8)
    for h in range(3):
        for u in range(2):
            want[2 * h + u] += p[h, u]
    assert_close(got, want)


def test_transposed_conv_is_a_scatter_with_a_kernel():
    dy, w = _operands([(1, 3, 2, 2), (2, 3, 3, 2)])
    got = cn.einsum("bhwk,uvck->b(2h+u)(w+v)c", dy, w)
    assert_close(got, pattern_einsum("bhwk,uvck->b(2h+u)(w+v)c", dy, w))


# ------------------------------------------------------------- output-only indices
def test_output_index_in_no_operand_broadcasts():
    x = _operands([(3,)])[0]
    assert_close(cn.einsum("i->ij", x, sizes={"j": 4}), np.repeat(x[:, None], 4, axis=1))


def test_repeated_output_index_writes_a_diagonal():
    x = _operands([(3,)])[0]
    assert_close(cn.einsum("i->ii", x), np.diag(x))


# ------------------------------------------------------------- memory budget
def _huge_operands():
    one = np.ones(10**4)
    return one, one.copy(), one.copy()


@pytest.mark.parametrize("traced", [False, True])
@pytest.mark.parametrize("spec, shapes, sizes", [
    ("bhwc->c", [(2, 2, 2, 1)], None),
    ("b(2h+u)(2w+v)c->bhwc", [(1, 4, 4, 1)], {"u": 2, "v": 2}),
    ("ij,j->i", [(3, 4), (4,)], None),
    ("ij,j,j->i", [(3, 4), (4,), (4,)], None),
])
def test_a_float16_mean_sums_in_float32_as_numpys_mean(spec, shapes, sizes, traced):
    # every sum passes float16's largest, 65504; the means do not
    operands = [np.full(s, 30000 if i == 0 else 1, np.float16) for i, s in enumerate(shapes)]
    fn = lambda *ops: cn.einsum(spec, *ops, sizes=sizes, reduce="mean")  # noqa: E731
    if traced:
        out, vjp_fn = cn.vjp(fn, *operands)
        grads = vjp_fn(np.ones_like(out))
        # d mean / d operand 0 = the other operands (all 1) / the count
        count = np.prod(shapes[0]) // np.size(out)
        assert grads[0].dtype == np.float16
        np.testing.assert_allclose(grads[0], np.full(shapes[0], 1 / count), rtol=1e-3)
        assert all(g.dtype == np.float16 and np.isfinite(g).all() for g in grads)
    else:
        out = fn(*operands)
    assert out.dtype == np.float16
    np.testing.assert_array_equal(out, np.full(np.shape(out), 30000, np.float16))


@pytest.mark.parametrize("traced", [False, True])
@pytest.mark.parametrize("spec, shapes, fills, dtypes", [
    # a lone index summed before the product: 100 x 1000 passes 65504
    ("ij,j->j", [(100, 2), (2,)], (1000, 0.01), (np.float16, np.float16)),
    ("ij,j->", [(100, 2), (2,)], (1000, 0.01), (np.float16, np.float16)),
    # an intermediate of a path: 100 x 30 x 30 passes it, the result does not
    ("ij,jk,kl->il", [(1, 100), (100, 1), (1, 1)], (30, 30, 0.01),
     (np.float16, np.float16, np.float16)),
    ("ij,jk,kl->il", [(3, 40), (40, 5), (5, 2)], (-7, 200, 0.001),
     (np.int8, np.uint8, np.float16)),
    # a windowed product (a float16 conv) and a plain GEMM
    ("b(h+u)c,uck->bhk", [(2, 300, 1), (3, 1, 2)], (300, 1), (np.float16, np.float16)),
    ("ij,jk->ik", [(4, 300), (300, 3)], (30, 0.1), (np.float16, np.float16)),
])
def test_float16_contractions_add_up_in_float32_and_round_once(spec, shapes, fills, dtypes,
                                                                traced):
    operands = [np.full(s, f, d) for s, f, d in zip(shapes, fills, dtypes)]
    exact = np.einsum(spec.replace("(h+u)", "hu"),
                      *(np.lib.stride_tricks.sliding_window_view(x, 3, axis=1)
                        .transpose(0, 1, 3, 2) if "(h+u)" in spec and i == 0 else x
                        for i, x in enumerate(o.astype(np.float64) for o in operands)))
    fn = lambda *ops: cn.einsum(spec, *ops)  # noqa: E731
    out = cn.vjp(fn, *[o.astype(np.float16) for o in operands])[0] if traced else fn(*operands)
    assert out.dtype == np.float16
    assert np.isfinite(out).all()
    np.testing.assert_array_equal(out, exact.astype(np.float16))  # rounded once


def test_a_float16_gradient_adds_up_in_float32():
    a = np.full((100, 2), 1000, np.float16)
    out, vjp_fn = cn.vjp(lambda b: cn.einsum("ij,j->", a, b), np.full(2, 0.001, np.float16))
    assert out.dtype == np.float16 and abs(float(out) - 200) <= 0.2
    grad, = vjp_fn(np.float16(0.01))
    assert grad.dtype == np.float16
    np.testing.assert_allclose(grad, [1000, 1000], rtol=1e-3)  # 100 x 1000 x 0.01


@pytest.mark.parametrize("spec, shapes", [("ij->j", [(3, 199)]), ("ij,jk->ik", [(5, 7), (7, 199)]),
                                          ("b(h+u)c->bhc", [(1, 201, 1)])])
def test_a_float16_mean_gradient_is_scaled_in_float32_and_rounded_once(spec, shapes):
    rng = np.random.default_rng(0)
    xs = [rng.standard_normal(s).astype(np.float16) for s in shapes]
    sizes = {"u": 3} if "(" in spec else None
    fn = lambda *ops: cn.einsum(spec, *ops, sizes=sizes, reduce="mean")  # noqa: E731
    out, vjp_fn = cn.vjp(fn, *xs)
    c = (rng.standard_normal(out.shape) * 3).astype(np.float16)
    wide = [x.astype(np.float64) for x in xs]
    exact = cn.vjp(fn, *wide)[1](c.astype(np.float64))
    for got, want in zip(vjp_fn(c), exact):
        # the float64 answer rounded to float16, but for the rare element whose
        # float32 sum falls on the other side of a float16 rounding boundary (1 ulp);
        # rounded twice, scaled in float16, a quarter to a third of them were off
        want = want.astype(np.float16)
        assert got.dtype == np.float16
        ulps = np.abs(got.astype(np.float64) - want) / np.spacing(np.abs(want))
        assert ulps.max() <= 1 and np.count_nonzero(got != want) <= 0.02 * got.size


def test_a_float16_product_that_adds_nothing_up_is_not_widened():
    # an outer product, a broadcast, a diagonal, a transpose: one rounding in
    # float16 already, so no float32 copies that the budget must hold
    a, m = np.ones(2000, np.float16), np.ones((2000, 2000), np.float16)  # m: 8 MB
    with cn.memory_budget(10_000_000):
        assert cn.einsum("i,j->ij", a, a).dtype == np.float16
        assert cn.einsum("i->ij", a, sizes={"j": 2000}).shape == (2000, 2000)
        np.testing.assert_array_equal(cn.einsum("ii->i", m), a)
        assert cn.einsum("ij->ji", m).dtype == np.float16
        with pytest.raises(cn.MemoryBudgetError,  # a sum is widened: its copy is counted
                           match=r"a copy of operand 0 of 'ij->' in float32 .* 16,000,000"):
            cn.einsum("ij->", m)


def test_a_float16_refusal_names_the_contraction():
    h = np.ones((100, 20_000), np.float16)
    with cn.memory_budget(5_000_000), pytest.raises(
            cn.MemoryBudgetError, match=r"contraction 'ij,jk->ik': a float32 copy of a float16 "
                                        r"matrix operand"):
        cn.einsum("ij,jk->ik", h, np.ones((20_000, 3), np.float16))
    v = np.ones(100_000, np.float16)
    with pytest.raises(cn.MemoryBudgetError,  # the spec as written: its float32 sums count
                       match=r"contraction '\.\.\.,\.\.\.->\.\.\.' \(run as"):
        cn.einsum("...,...->...", v[:, None], v[None, :])


def test_a_longdouble_mean_scale_is_worked_out_in_longdouble():
    for dtype in (np.longdouble, np.clongdouble):
        x = np.ones(3, dtype)
        assert cn.mean(x) == 1 and cn.einsum("i->", x, reduce="mean") == 1
        assert engine.mean_scale(3, dtype) == np.ones((), dtype) / 3
    third = np.ones((), np.longdouble) / 3  # each tie's share
    np.testing.assert_array_equal(cn.grad(lambda x: cn.max(x))(np.ones(3, np.longdouble)),
                                  np.full(3, third))


def test_a_float16_mean_with_a_float32_operand_is_float32():
    out = cn.einsum("i,i->", np.full(4, 30000, np.float16), np.ones(4, np.float32),
                    reduce="mean")
    assert out.dtype == np.float32 and out == 30000


def test_get_memory_budget_reads_what_set_memory_budget_sets():
    previous = cn.set_memory_budget(12345)
    try:
        assert cn.get_memory_budget() == 12345
        with cn.memory_budget(999):
            assert cn.get_memory_budget() == 999
        assert cn.get_memory_budget() == 12345
    finally:
        cn.set_memory_budget(previous)


def test_set_memory_budget_inside_a_block_lasts_until_the_block_ends():
    previous = cn.set_memory_budget(12345)
    try:
        with cn.memory_budget(999):
            assert cn.set_memory_budget(555) == 999
            assert cn.get_memory_budget() == 555
        assert cn.get_memory_budget() == 12345
    finally:
        cn.set_memory_budget(previous)


def test_a_memory_budget_block_limits_its_own_thread_only():
    # two blocks that end in the other order than they began, in two threads:
    # each thread sees its own limit, and the process's is untouched by both
    import threading
    process = cn.get_memory_budget()
    seen, errors = {}, []
    a_in, b_in, a_out = threading.Event(), threading.Event(), threading.Event()
    ones = [np.ones(100)] * 2  # an outer product of 80,000 bytes

    def block_a():
        with cn.memory_budget(1000):
            a_in.set()
            b_in.wait()
            seen["a"] = cn.get_memory_budget()
            with pytest.raises(cn.MemoryBudgetError):
                cn.einsum("i,j->ij", *ones)
        a_out.set()

    def block_b():
        a_in.wait()
        with cn.memory_budget(2000):
            b_in.set()
            a_out.wait()
            seen["b"] = cn.get_memory_budget()
        seen["b after"] = cn.get_memory_budget()

    def run(fn):
        try:
            fn()
        except BaseException as exc:  # noqa: BLE001  (reported by the main thread)
            errors.append(exc)
            a_in.set(), b_in.set(), a_out.set()
    threads = [threading.Thread(target=run, args=(fn,)) for fn in (block_a, block_b)]
    for t in threads:
        t.start()
    a_in.wait()
    assert cn.get_memory_budget() == process  # this thread is in no block
    assert cn.einsum("i,j->ij", *ones).shape == (100, 100)
    for t in threads:
        t.join()
    assert not errors, errors
    assert seen == {"a": 1000, "b": 2000, "b after": process}
    assert cn.get_memory_budget() == process


def test_a_memory_budget_block_limits_its_own_asyncio_task_only():
    import asyncio
    process = cn.get_memory_budget()

    async def limited(n, seen, mine, theirs):
        # each reads its budget once both are inside their blocks, and leaves
        # only once the other has read
        with cn.memory_budget(n):
            mine["in"].set()
            await theirs["in"].wait()
            seen[n] = cn.get_memory_budget()
            mine["read"].set()
            await theirs["read"].wait()

    async def both():
        seen = {}
        a, b = ({"in": asyncio.Event(), "read": asyncio.Event()} for _ in range(2))
        await asyncio.gather(limited(1000, seen, a, b), limited(2000, seen, b, a))
        return seen, cn.get_memory_budget()
    seen, after = asyncio.run(both())
    assert seen == {1000: 1000, 2000: 2000} and after == process

    async def child_sets_its_own():  # a task started in a block: set_memory_budget there
        cn.set_memory_budget(5000)   # is its own, not the block's
        return cn.get_memory_budget()

    async def block_with_a_child():
        with cn.memory_budget(1000):
            inside = await asyncio.create_task(child_sets_its_own())
            return inside, cn.get_memory_budget()
    assert asyncio.run(block_with_a_child()) == (5000, 1000)
    assert cn.get_memory_budget() == process


def test_memory_budget_refuses_huge_outer_product():
    with pytest.raises(cn.MemoryBudgetError, match=r"i,j,k->ijk"):
        cn.einsum("i,j,k->ijk", *_huge_operands())


@pytest.mark.parametrize("spec, bound", [("...,...->...", "AC,DB->AB"),
                                         ("ij,ij->ij", "iA,Bj->ij")])
def test_memory_budget_error_quotes_the_spec_as_written(spec, bound):
    v = np.ones(100_000)
    with pytest.raises(cn.MemoryBudgetError) as info:
        cn.einsum(spec, v[:, None], v[None, :])
    assert f"contraction '{spec}' (run as '{bound}') would allocate" in str(info.value)
    w = np.ones(1000)  # bound once within the budget: the repeat takes einsum's short path
    cn.einsum(spec, w[:, None], w[None, :])
    with cn.memory_budget(1000), pytest.raises(cn.MemoryBudgetError) as info:
        cn.einsum(spec, w[:, None], w[None, :])
    assert f"contraction '{spec}' (run as '{bound}') would allocate" in str(info.value)


def test_memory_budget_context_is_restored():
    ones = [np.ones(100)] * 2
    with cn.memory_budget(1000):
        with pytest.raises(cn.MemoryBudgetError):
            cn.einsum("i,j->ij", *ones)
    assert cn.einsum("i,j->ij", *ones).shape == (100, 100)


def test_set_memory_budget_rejects_bad_values_and_returns_previous():
    previous = cn.set_memory_budget(10**6)
    try:
        with pytest.raises(ValueError, match="positive"):
            cn.set_memory_budget(-5)
        with pytest.raises(ValueError, match="positive"):
            cn.set_memory_budget(True)
        with pytest.raises(ValueError, match=r"positive integer \(bytes\), got 1000000000.0"):
            cn.set_memory_budget(1e9)
        assert cn.set_memory_budget(10**7) == 10**6
    finally:
        cn.set_memory_budget(previous)


def _peak_bytes_while_refused(fn) -> int:
    """The most memory ``fn`` holds at once before it is refused, once its
    spec is bound and planned (a refused call first: a cache's dict may grow
    by tens of kB as it binds)."""
    with pytest.raises(cn.MemoryBudgetError):
        fn()
    tracemalloc.start()
    try:
        tracemalloc.reset_peak()
        base = tracemalloc.get_traced_memory()[0]
        with pytest.raises(cn.MemoryBudgetError):
            fn()
        return tracemalloc.get_traced_memory()[1] - base
    finally:
        tracemalloc.stop()


def _peak_bytes(fn):
    """``fn()`` and the most memory held at once while it ran, in bytes."""
    tracemalloc.start()
    try:
        tracemalloc.reset_peak()
        base = tracemalloc.get_traced_memory()[0]
        out = fn()
        return out, tracemalloc.get_traced_memory()[1] - base
    finally:
        tracemalloc.stop()


@pytest.mark.parametrize("run, budget", [
    # per offset, the 18.9 MB result before the scatter never exists
    (lambda: cn.conv_transpose2d(np.ones((1, 64, 64, 1)), np.ones((3, 3, 64, 1))), 12_000_000),
    # the window offsets are summed out of the view first: no 16 MB im2col copy
    (lambda: cn.einsum("(h+u)c,c->h", np.ones((10049, 4)), np.ones(4), sizes={"u": 50}),
     2_000_000),
])
def test_the_budget_counts_the_arrays_a_windowed_contraction_makes_not_more(run, budget):
    expected = run()
    with cn.memory_budget(budget):
        out, peak = _peak_bytes(run)
    np.testing.assert_array_equal(out, expected)
    assert peak < budget
    with cn.memory_budget(peak // 4), pytest.raises(cn.MemoryBudgetError):
        run()  # well under what it needs: refused


@pytest.mark.parametrize("a, b, reduce", [
    (np.ones((1000, 10), np.complex64), np.ones((10, 1000)), "sum"),   # complex128 result
    (np.ones((3000, 10), np.int8), np.ones((10, 3000), np.uint8), "sum"),  # int16 result
    (np.ones((1000, 2), np.int8), np.ones((2, 5000), np.int8), "mean"),  # float64 result
])
def test_memory_budget_counts_the_result_dtype_not_the_operands(a, b, reduce):
    with cn.memory_budget(a.shape[0] * b.shape[1] * np.result_type(a, b).itemsize - 1
                          if reduce == "sum" else a.shape[0] * b.shape[1] * 8 - 1):
        with pytest.raises(cn.MemoryBudgetError):
            cn.einsum("ij,jk->ik", a, b, reduce=reduce)


@pytest.mark.parametrize("spec, dtype, reduce", [("ij->i", np.int8, "mean"),
                                                  ("ij,j,->i", np.int8, "sum")])
def test_memory_budget_counts_the_cast_of_an_operand(spec, dtype, reduce):
    x = np.broadcast_to(np.ones((1, 1), dtype), (2000, 1000))  # one byte, 16 MB in float64
    others = [np.ones(1000), np.array(2.0)][:spec.count(",")]
    with cn.memory_budget(10**7):
        assert _peak_bytes_while_refused(lambda: cn.einsum(spec, x, *others, reduce=reduce)) \
            < 10**6


@pytest.mark.parametrize("traced", [False, True])
def test_memory_budget_counts_the_cast_of_a_matrix_operand(traced):
    # numpy's matmul would cast the int8 matrix to a 16 MB float64 copy
    a = np.ones((4000, 500), np.int8)
    b = np.ones((500, 2))
    if traced:
        run = lambda: cn.vjp(lambda b: cn.einsum("ij,jk->ik", a, b), b)  # noqa: E731
    else:
        run = lambda: cn.einsum("ij,jk->ik", a, b)  # noqa: E731
    with cn.memory_budget(10**7):
        with pytest.raises(cn.MemoryBudgetError, match="left matrix operand in float64"):
            run()
        assert _peak_bytes_while_refused(run) < 10**6
    np.testing.assert_array_equal(cn.einsum("ij,jk->ik", a, b), np.full((4000, 2), 500.0))


def test_a_broadcast_batch_axis_is_no_copy_and_no_refusal():
    a = np.broadcast_to(np.ones((1, 50, 50)), (20000, 50, 50))  # 20 KB, 400 MB logically
    b = np.ones((20000, 50, 1))
    with cn.memory_budget(10**8):
        np.testing.assert_allclose(cn.einsum("bij,bjk->bik", a, b), np.full((20000, 50, 1), 50.0))


@pytest.mark.parametrize("spec, want", [("ij,jk->ik", np.full((4000, 2), 1000.0)),
                                        ("αβ,βγ->αγ", np.full((4000, 2), 1000.0)),  # not ASCII
                                        ("ij,ij->", 4e6), ("ij,ij->i", np.full(4000, 1000.0))])
def test_a_broadcast_operand_too_large_to_copy_is_read_in_place(spec, want):
    """A matrix product would copy the broadcast (32 MB); past the budget,
    numpy's einsum reads it where it is instead."""
    a = np.broadcast_to(np.ones((1, 1)), (4000, 1000))  # 8 bytes, 32 MB as a matrix
    b = np.ones((1000, 2)) if "k" in spec or "γ" in spec else a
    tracemalloc.start()
    try:
        with cn.memory_budget(10**7):
            got = cn.einsum(spec, a, b)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 10**6
    np.testing.assert_allclose(got, want)


def test_a_broadcast_operand_too_large_to_copy_still_gets_its_gradients():
    a = np.broadcast_to(np.ones((1, 1)), (4000, 1000))
    b = np.ones((1000, 2))
    with cn.memory_budget(10**7):
        out, vjp_fn = cn.vjp(lambda b: cn.einsum("ij,jk->ik", a, b), b)
        (db,) = vjp_fn(np.ones((4000, 2)))
    np.testing.assert_allclose(db, np.full((1000, 2), 4000.0))
    np.testing.assert_allclose(out, np.full((4000, 2), 1000.0))


def test_memory_budget_counts_the_sum_over_an_index_one_operand_has():
    """Summed first, an index only one operand has can make an array larger
    than the operand: from a broadcast, or in a wider dtype."""
    c = np.ones((1000, 1000))
    with cn.memory_budget(2 << 20):
        for a in (np.ones((1, 1000, 1000), np.int8),  # 1 MB, summed into float64: 8 MB
                  np.broadcast_to(1.0, (2, 1000, 1000))):  # 8 bytes, summed: 8 MB
            assert _peak_bytes_while_refused(lambda: cn.einsum("xij,ij->i", a, c)) < 10**5
            with pytest.raises(cn.MemoryBudgetError, match="the sum of an operand over the "
                                                           "indices only it has"):
                cn.einsum("xij,ij->i", a, c)


def test_an_operand_a_gemm_would_copy_past_the_budget_is_read_in_place():
    x, e = np.ones((100, 100, 100)), np.ones(100)  # 'c' and 'b' cannot be one group: a copy
    with cn.memory_budget(10**6):  # x is 8 MB; numpy.einsum reads it where it is
        tracemalloc.start()
        try:
            got = cn.einsum("ceb,e->cb", x, e)
            peak = tracemalloc.get_traced_memory()[1]
        finally:
            tracemalloc.stop()
    assert peak < 2 * 10**5  # the 80 kB result and no copy
    np.testing.assert_allclose(got, np.full((100, 100), 100.0))
    a = np.ones((2000, 60))[:, ::-1]  # reversed: a GEMM would copy it
    with cn.memory_budget(60_000):
        np.testing.assert_allclose(cn.einsum("wi,wi->w", a, np.ones((2000, 60))), 60.0)


def test_an_operand_in_foreign_byte_order_is_copied_for_blas_only_within_the_budget():
    # numpy's matmul would byte-swap it itself, unbudgeted
    x, v = np.ones((1000, 8, 40), ">f8"), np.ones((1000, 40), ">f8")
    with cn.memory_budget(10**6), pytest.raises(cn.MemoryBudgetError, match="native byte"):
        cn.einsum("bij,bj->bi", x, v)
    got = cn.einsum("bij,bj->bi", x, v)
    assert got.dtype == np.float64
    np.testing.assert_array_equal(got, np.full((1000, 8), 40.0))


@pytest.mark.parametrize("reduce", ["sum", "mean", "max"])
def test_a_window_reduced_alone_is_not_counted_as_a_copy(reduce):
    x = np.ones((4, 200, 16))  # the window view has twice the result's 51,200 bytes
    with cn.memory_budget(60_000):
        out = cn.einsum("b(2h+u)c->bhc", x, sizes={"u": 2}, reduce=reduce)
    np.testing.assert_allclose(out, np.full((4, 100, 16), 1.0 if reduce != "sum" else 2.0))


@pytest.mark.parametrize("reduce", ["sum", "mean", "max"])
def test_a_window_of_many_offsets_reduced_alone_is_not_counted_as_a_copy(reduce):
    x = np.ones((4, 2000, 16))  # 100 offsets: numpy reduces the strided view in place
    with cn.memory_budget(4 << 20):  # the view would be 97 MB; the result is 1 MB
        out = cn.einsum("b(h+u)c->bhc", x, sizes={"u": 100}, reduce=reduce)
    np.testing.assert_array_equal(out, np.full((4, 1901, 16), 100.0 if reduce == "sum" else 1.0))


def test_the_gradient_of_a_max_over_many_offsets_counts_its_routing():
    x = np.random.default_rng(0).standard_normal((4, 2000, 16))
    fn = lambda a: cn.einsum("b(h+u)c->bhc", a, sizes={"u": 100}, reduce="max")  # noqa: E731
    with cn.memory_budget(8 << 20):
        y, vjp_fn = cn.vjp(fn, x)
        with pytest.raises(cn.MemoryBudgetError,
                           match=r"gradient of max 'b\(h\+u\)c->bhc' routed over its window"):
            vjp_fn(np.ones_like(y))


def test_the_gradient_of_a_max_over_few_offsets_counts_its_input_sized_result():
    """Up to 64 offsets the max's gradient is routed one offset at a time into
    an array of the input's size, which the budget must see too."""
    x = np.random.default_rng(0).standard_normal((1, 64, 64, 4)).astype(np.float32)
    y, vjp_fn = cn.vjp(lambda a: cn.max_pool2d(a, 2), x)
    with cn.memory_budget(16384):  # the gradient is 65,536 bytes
        with pytest.raises(cn.MemoryBudgetError, match=r"gradient of max 'b\(2h\+u\)"):
            vjp_fn(np.ones_like(y))
    grad = vjp_fn(np.ones_like(y))[0]  # within the default budget: one 1 per 2x2 window
    assert set(np.unique(grad)) <= {0.0, 1.0} and grad.sum() == y.size


@pytest.mark.parametrize("reduce", ["sum", "mean", "max"])
@pytest.mark.parametrize("spec, sizes", [("a(h+u)c->a", {"u": 2}), ("a(2h+u)c->ah", {"u": 2}),
                                         ("a(h+u)(c+v)->a", {"u": 2, "v": 2})])
def test_the_array_a_windowed_reduction_combines_its_offsets_in_is_counted(spec, sizes, reduce):
    x = np.ones((2, 200, 250))  # the offsets combine into an array of about x's size
    with cn.memory_budget(40_000):
        assert _peak_bytes_while_refused(
            lambda: cn.einsum(spec, x, sizes=sizes, reduce=reduce)) < 40_000


def test_memory_budget_raises_before_allocating():
    small = (np.ones(1000), np.ones(1000), np.ones(10**4))
    with cn.memory_budget(10**8):
        peak = _peak_bytes_while_refused(lambda: cn.einsum("i,j,k->ijk", *small))
    assert peak < 10**6, f"allocated {peak} bytes before refusing"


def test_memory_budget_raises_before_allocating_when_traced():
    small = (np.ones(1000), np.ones(1000), np.ones(10**4))
    with cn.memory_budget(10**8):
        peak = _peak_bytes_while_refused(
            lambda: cn.vjp(lambda *xs: cn.einsum("i,j,k->ijk", *xs), *small))
    assert peak < 10**6, f"allocated {peak} bytes before refusing"


@pytest.mark.parametrize("traced", [False, True])
def test_memory_budget_holds_for_a_head_already_run_within_it(traced):
    # a head's later calls take einsum's short path (cached plan, one GEMM): the
    # budget is checked there too, and on the backward GEMMs a smaller budget
    # set between the forward and backward passes refuses
    x, w = np.ones((64, 4, 4, 8)), np.ones((4, 4, 8, 100))
    head = lambda a, b: cn.einsum("bnmd,nmdk->bk", a, b)  # noqa: E731
    run = (lambda: cn.vjp(head, x, w)[0]) if traced else (lambda: head(x, w))
    assert run().shape == (64, 100)  # binds and plans the spec for these shapes
    with cn.memory_budget(64 * 100 * 8 - 1):  # the output needs 64 * 100 float64s
        with pytest.raises(cn.MemoryBudgetError, match="bnmd,nmdk->bk"):
            run()
    out, vjp_fn = cn.vjp(head, x, w)
    with cn.memory_budget(70_000):  # bytes enough for dx (8,192 float64s), not dW (12,800)
        with pytest.raises(cn.MemoryBudgetError):
            vjp_fn(np.ones_like(out))


def test_a_gradient_over_the_budget_names_the_forward_spec_and_its_transpose():
    out, vjp_fn = cn.vjp(lambda a: cn.einsum("ij->", a), np.ones((1000, 1000)))
    with cn.memory_budget(100_000), pytest.raises(cn.MemoryBudgetError) as info:
        vjp_fn(np.ones_like(out))
    message = str(info.value)
    assert message.startswith("the gradient of operand 0 of 'ij->': contraction '->ij'")
    assert "8,000,000 bytes" in message


@pytest.mark.parametrize("spec, shapes, budget, message, values", [
    # three operands run pairwise: the step that fails is 'kl->k', whose gradient
    # broadcasts back to (3, 1000); the message names the spec the caller wrote first
    ("ij,jk,kl->", [(1000, 2), (2, 3), (3, 1000)], 20_000,
     "the gradient of 'ij,jk,kl->' (operand 0 of its pairwise step 'kl->k'): "
     "contraction 'k->kl' would allocate an array of 24,000 bytes", (3000, 10**6, 2000)),
    # '...' is run as a letter of its own: the message gives the spec the caller
    # wrote, then the bound one its pairwise step's letters come from
    ("...j,jk,kl->...l", [(30, 40), (40, 50), (50, 30)], 9_000,
     "the gradient of '...j,jk,kl->...l' (run as 'Aj,jk,kl->Al'; operand 0 of its "
     "pairwise step 'Aj,jl->Al'): contraction 'Al,jl->Aj' would allocate", (1500, 900, 1200)),
])
def test_a_gradient_over_the_budget_in_a_pairwise_step_names_the_whole_spec(spec, shapes, budget,
                                                                            message, values):
    operands = [np.ones(s) for s in shapes]
    out, vjp_fn = cn.vjp(lambda *xs: cn.einsum(spec, *xs), *operands)
    with cn.memory_budget(budget), pytest.raises(cn.MemoryBudgetError) as info:
        vjp_fn(np.ones_like(out))
    assert str(info.value).startswith(message)
    assert all(np.array_equal(g, np.full_like(x, v))  # and nothing was left half done
               for g, x, v in zip(vjp_fn(np.ones_like(out)), operands, values))


def test_a_cached_spec_still_refuses_non_numeric_operands():
    a, b = np.ones((2, 3)), np.ones((3, 4))
    cn.einsum("ij,jk->ik", a, b)  # bound for these shapes: later calls take the short path
    with pytest.raises(cn.SpecError, match="operand 1 is not a numeric array"):
        cn.einsum("ij,jk->ik", a, np.full((3, 4), "x"))
    with pytest.raises(cn.SpecError, match="operand 0 is not a numeric array"):
        cn.einsum("ij,jk->ik", np.empty((2, 3), dtype=object), cn.trace.Traced(b))


# ------------------------------------------------------------- planner cases
# Each fast path of the engine is checked against the general route.
from contractnet import engine, pair, path  # noqa: E402
from contractnet.blocks import LONG_SUM  # noqa: E402
from contractnet.bind import bind, bind_text, clear_bind_cache  # noqa: E402
from contractnet.explanation import explain  # noqa: E402
from contractnet.spec import parse  # noqa: E402


@pytest.mark.parametrize("spec, shapes", [
    ("bhwk,uvck->b(h+u)(w+v)c", [(2, 4, 5, 3), (2, 3, 2, 3)]),
    ("bhwk,uvck->b(2h+u)(w+2v)c", [(2, 3, 4, 3), (3, 2, 2, 3)]),
    ("bk,uk->b(2h+u)", [(2, 3), (3, 3)]),
])
def test_per_offset_scatter_equals_scatter_of_the_whole_result(spec, shapes, monkeypatch):
    monkeypatch.setattr(engine, "PER_OFFSET_MIN_ELEMENTS", 0)  # take the fast path at any size
    clear_bind_cache()
    ops = _operands(shapes)
    sizes = {"h": 3} if "h" not in spec.split(",")[0] else None
    bound = bind(parse(spec), shapes, sizes)
    plan = engine.make_plan(bound, "sum")
    assert plan.scatter_per_offset
    (a, an), (b, bn) = zip(ops, plan.read_names)
    core, names = pair.contract_pair(a, an, b, bn, plan.target)
    whole = engine.write_output(core, names, bound.spec.output, bound.out_shape,
                                bound.size_map)
    assert_close(engine.execute(bound, ops), whole, what=spec)
    clear_bind_cache()


@pytest.mark.parametrize("layout", ["C", "F", "strided"])
@pytest.mark.parametrize("spec", ["bnmd,nmdk->bk", "bk,nmdk->bnmd", "bnmd,bk->nmdk",
                                  "bij,bjk->bik", "ij,kj->ik", "ji,jk->ik"])
def test_pair_planner_matches_numpy_for_any_memory_layout(spec, layout):
    lhs, out = spec.split("->")
    sizes = dict(zip("bnmdkij", (3, 2, 4, 5, 6, 3, 4)))
    shapes = [tuple(sizes[c] for c in t) for t in lhs.split(",")]
    ops = _operands(shapes)
    if layout == "F":
        ops = [np.asfortranarray(o) for o in ops]
    elif layout == "strided":
        ops = [np.repeat(o, 2, axis=-1)[..., ::2] for o in ops]
    got, names = pair.contract_pair(ops[0], lhs.split(",")[0], ops[1], lhs.split(",")[1], out)
    want = np.einsum(f"{lhs}->{names}", *ops)
    assert_close(got, want, what=f"{spec} {layout}")


def test_head_and_its_transposes_reshape_without_copies():
    x, w, dy = _operands([(4, 2, 3, 5), (2, 3, 5, 6), (4, 6)], dtype=np.float32)
    for a, an, b, bn, keep in [(x, "bnmd", w, "nmdk", "bk"), (dy, "bk", w, "nmdk", "bnmd"),
                               (x, "bnmd", dy, "bk", "nmdk")]:
        plan = pair.plan_pair(an, a.shape, a.strides, bn, b.shape, b.strides, keep)
        a2 = a if plan.perm_a is None else a.transpose(plan.perm_a)
        b2 = b if plan.perm_b is None else b.transpose(plan.perm_b)
        assert np.shares_memory(a2.reshape(plan.shape_a), a), keep
        assert np.shares_memory(b2.reshape(plan.shape_b), b), keep


@pytest.mark.parametrize("spec, prefer, layout", [
    ("ij,jk->ik", "ki", "ki"),          # one GEMM, computed transposed
    ("ij,jk->ik", "ik", "ik"),          # already as preferred
    ("bij,bjk->bik", "bki", "bki"),     # batched GEMMs
    ("bi,bj->bij", "jbi", "jbi"),       # tiny batched products: numpy.einsum, any order
    ("nkj,mdj->nkmd", "mdnk", "mdnk"),  # groups keep their operand's order...
    ("nkj,mdj->nkmd", "knmd", "nkmd"),  # ...so this is the nearest to k, n, m, d
    ("nk,md->nkmd", "knmd", "knmd"),    # an outer product: numpy.einsum, any order
])
def test_pair_planner_lays_the_result_out_as_preferred(spec, prefer, layout):
    lhs, out = spec.split("->")
    (an, bn), sizes = lhs.split(","), dict(zip("bijkmnd", (2, 9, 10, 11, 2, 3, 4)))
    a, b = _operands([tuple(sizes[c] for c in t) for t in (an, bn)])
    got, names = pair.contract_pair(a, an, b, bn, out, prefer=prefer)
    assert names == layout and got.flags.c_contiguous, (names, got.strides)
    assert_close(got, np.einsum(f"{lhs}->{names}", a, b), what=spec)


@pytest.mark.parametrize("an, bn, keep", [
    ("bi", "bj", "bij"),      # an outer product per batch element
    ("ib", "jb", "bij"),      # the same, operands batch-last
    ("ib", "jb", "jbi"),      # in the caller's order, whatever it is
    ("bj", "bjk", "bk"),      # a tiny batched vector product
    ("bj", "kjb", "kb"),      # the same, operands batch-last
])
def test_a_numpy_einsum_pair_is_written_c_ordered_in_the_callers_order(an, bn, keep):
    sizes = dict(zip("bijk", (3, 4, 5, 2)))
    a, b = _operands([tuple(sizes[c] for c in t) for t in (an, bn)])
    assert pair.plan_pair(an, a.shape, a.strides, bn, b.shape, b.strides, keep).einsum_eq
    got, names = pair.contract_pair(a, an, b, bn, keep)
    assert names == keep and got.flags.c_contiguous, (names, got.strides)
    assert_close(got, np.einsum(f"{an},{bn}->{keep}", a, b), what=keep)


@pytest.mark.parametrize("an, bn, keep, sizes, layouts, copied", [
    # a gradient's outer product in its primal's order: v strided in the result's
    ("vA", "eA", "Aev", {"v": 24, "A": 768, "e": 50}, ("contiguous",) * 2, (True, True)),
    ("kldn", "lwk", "wkldn", {"k": 16, "l": 96, "d": 6, "n": 10, "w": 10},
     ("fortran", "contiguous"), (True, True)),
    ("ab", "c", "acb", {"a": 64, "b": 32, "c": 40}, ("fortran", "reversed"), (True, True)),
    ("ab", "c", "acb", {"a": 64, "b": 32, "c": 40}, ("strided", "contiguous"), (True, False)),
    ("ab", "c", "abc", {"a": 64, "b": 32, "c": 40}, ("fortran", "contiguous"), None),  # c inner
    ("ab", "c", "acb", {"a": 64, "b": 32, "c": 40}, ("contiguous",) * 2, None),  # read in runs
    ("ab", "c", "abc", {"a": 8, "b": 32, "c": 40}, ("fortran", "contiguous"), None),  # small
    ("ab", "c", "acb", {"a": 64, "b": 8, "c": 64}, ("fortran", "contiguous"), None),  # run 8
    ("ab", "bc", "cab", {"a": 64, "b": 64, "c": 8}, ("fortran", "contiguous"), (True, True)),
    ("ab", "b", "ab", {"a": 64, "b": 256}, ("fortran", "contiguous"), None),  # a: all of it
])
def test_an_outer_product_copies_operands_read_strided_into_the_results_order(
        an, bn, keep, sizes, layouts, copied):
    a, b = (relayout(np.random.default_rng(i).standard_normal([sizes[n] for n in t]), lay)
            for i, (t, lay) in enumerate(zip((an, bn), layouts)))
    plan = pair.plan_pair(an, a.shape, a.strides, bn, b.shape, b.strides, keep, keep,
                          itemsizes=(a.itemsize, b.itemsize))
    got_copies = None if plan.einsum_copies is None else \
        tuple(p is not None for p in plan.einsum_copies)
    assert got_copies == copied
    for names, perm in zip((an, bn), plan.einsum_copies or ()):
        if perm is not None:  # the copy's axes in the result's order
            assert [names[i] for i in perm] == [n for n in keep if n in names]
    got, names = pair.contract_pair(a, an, b, bn, keep, prefer=keep)
    assert names == keep and got.flags.c_contiguous
    np.testing.assert_array_equal(got, np.einsum(f"{an},{bn}->{keep}", a, b))  # one product each


@pytest.mark.parametrize("spec, shapes", [
    ("bnmd,nmdk->bk", [(3, 2, 2, 4), (2, 2, 4, 5)]),
    ("bk,nmdk->bnmd", [(3, 5), (2, 2, 4, 5)]),
    ("bnmd,bk->nmdk", [(3, 2, 2, 4), (3, 5)]),
    ("bij,bjk->bki", [(2, 8, 8), (2, 8, 9)]),   # result transposed to the output
    ("ij,j->i", [(3, 4), (4,)]),
    ("i,i->", [(4,), (4,)]),
])
def test_contiguous_gemm_fast_path_matches_the_general_pair_path(spec, shapes):
    bound = bind(parse(spec), shapes)
    plan = engine.make_plan(bound, "sum")
    assert plan.contiguous_gemm is not None, spec
    ops = _operands(shapes)
    core, names = pair.contract_pair(ops[0], plan.read_names[0], ops[1], plan.read_names[1],
                                     plan.target)
    general = np.einsum(f"{names}->{spec.split('->')[1]}", core)
    assert_close(engine.execute(bound, ops), general, what=spec)
    assert_close(engine.execute(bound, ops), np.einsum(spec, *ops), what=spec)


@pytest.mark.parametrize("spec, shapes, reduce, direct", [
    ("bnmd,nmdk->bk", [(3, 2, 2, 4), (2, 2, 4, 5)], "sum", True),
    ("bk,nmdk->bnmd", [(3, 5), (2, 2, 4, 5)], "sum", True),
    ("bnmd,bk->nmdk", [(3, 2, 2, 4), (3, 5)], "sum", True),
    ("bij,bjk->bki", [(2, 8, 8), (2, 8, 9)], "sum", True),    # computed transposed
    ("bij,bjk->kbi", [(2, 8, 8), (2, 8, 9)], "sum", False),   # the result needs a transpose
    ("bnmd,nmdk->bk", [(3, 2, 2, 4), (2, 2, 4, 5)], "mean", False),  # and a scale
])
def test_direct_gemm_is_planned_only_when_the_product_is_the_output(spec, shapes, reduce,
                                                                      direct):
    bound = bind(parse(spec), shapes)
    plan = engine.make_plan(bound, reduce)
    assert (plan.direct_gemm is not None) == direct, spec
    ops = _operands(shapes)
    want = np.einsum(spec, *ops) / (plan.count if reduce == "mean" else 1)
    assert_close(engine.execute(bound, ops, reduce), want, what=spec)


def test_direct_gemm_steps_aside_for_a_layout_request_or_strided_operands():
    bound = bind(parse("bk,nmdk->bnmd"), [(3, 5), (2, 2, 4, 5)])
    g, w = _operands([(3, 5), (2, 2, 4, 5)])
    like = np.asfortranarray(np.zeros((3, 2, 2, 4)))
    got = engine.execute(bound, (g, w), "sum", None, like)
    assert got.strides[0] == got.itemsize  # b innermost, as in ``like``: not the direct GEMM
    assert_close(got, np.einsum("bk,nmdk->bnmd", g, w))
    strided_w = np.asfortranarray(w)
    assert_close(engine.execute(bound, (g, strided_w)), np.einsum("bk,nmdk->bnmd", g, w))


def test_an_operand_laid_out_otherwise_gets_the_one_call_its_layout_resolves():
    """A transposed operand is read in place by one GEMM, resolved once for
    its layout and kept on the plan; one BLAS cannot read (every other
    column) is copied first where small, else (like mixed dtypes and an
    index only one operand has) gets no direct call, kept as such, and runs
    the general way."""
    clear_bind_cache()  # no layout's call resolved before
    a, b = _operands([(6, 11), (11, 13)])
    bound = bind(parse("ij,jk->ik"), [(6, 11), (11, 13)])
    plan = engine.make_plan(bound, "sum")
    bt = np.ascontiguousarray(b.T).T  # b, transposed in memory
    got = engine.run_direct(plan, (a, bt))
    assert_close(got, a @ b)
    calls = [c for k, c in plan.direct_layouts.items() if k[1] == bt.strides]
    assert len(calls) == 1 and calls[0].pair.einsum_eq is None  # one GEMM
    assert calls[0].copies == (False, False)
    assert engine.run_direct(plan, (a, bt)) is not None and len(plan.direct_layouts) == 1
    skipping = np.zeros((11, 26))[:, ::2]
    skipping[...] = b
    assert_close(engine.run_direct(plan, (a, skipping)), a @ b)
    assert plan.direct_layouts[(a.strides, skipping.strides, a.dtype, a.dtype, None)].copies \
        == (False, True)
    assert engine.run_direct(plan, (a, bt.astype(np.float32))) is None
    assert_close(engine.run_plan(plan, (a, bt.astype(np.float32))), a @ b.astype(np.float32))
    assert len(plan.direct_layouts) == 3 and list(plan.direct_layouts.values())[2] is None
    summing = engine.make_plan(bind(parse("ij,jk->k"), [(6, 11), (11, 13)]), "sum")
    assert engine.run_direct(summing, (a, bt)) is None
    assert_close(engine.run_plan(summing, (a, bt)), (a @ b).sum(0))


DIRECT_SPECS = [("ij,jk->ik", [(5, 6), (6, 7)]), ("ij,jk->ki", [(5, 6), (6, 7)]),
                ("bij,bjk->bik", [(3, 4, 5), (3, 5, 2)]),
                ("bnmd,nmdk->bk", [(4, 2, 3, 5), (2, 3, 5, 6)]),
                ("bk,nmdk->bnmd", [(4, 6), (2, 3, 5, 6)]), ("ab,cb->acb", [(4, 5), (3, 5)]),
                ("abc,bc->ac", [(4, 30, 5), (30, 5)]), ("i,j->ji", [(5,), (7,)])]


@pytest.mark.parametrize("spec, shapes", DIRECT_SPECS)
@pytest.mark.parametrize("dtype", [np.float32, np.float64, np.complex128])
def test_a_direct_call_gives_what_the_general_path_gives(spec, shapes, dtype):
    """For every pair of layouts, and with and without a layout asked for,
    the one call resolved for them (where there is one) returns the general
    path's answer, dtype and memory layout."""
    plan = engine.make_plan(bind(parse(spec), shapes), "sum")
    rng = np.random.default_rng(7)
    base = [rng.standard_normal(s).astype(dtype) for s in shapes]
    out_shape = plan.bound.out_shape
    likes = [None, np.empty(out_shape, dtype), relayout(np.empty(out_shape, dtype), "fortran")]
    direct = 0
    for la in LAYOUTS:
        for lb in LAYOUTS:
            ops = (relayout(base[0], la), relayout(base[1], lb))
            for like in likes:
                got = engine.run_direct(plan, ops, like)
                if got is None:
                    continue
                direct += 1
                want = engine.run_general(plan, ops, None, like)
                assert got.dtype == want.dtype and got.strides == want.strides, (la, lb)
                tol = 1e-5 if dtype == np.float32 else 1e-12
                np.testing.assert_allclose(got, want, rtol=tol, atol=tol, err_msg=f"{la} {lb}")
                assert not np.shares_memory(got, ops[0]) and not np.shares_memory(got, ops[1])
    assert direct > 0


def test_a_direct_call_leaves_a_copy_over_the_budget_to_the_general_path():
    """There numpy.einsum reads the operand in place (the product fits)."""
    a, b = _operands([(1, 200), (200, 2)])
    plan = engine.make_plan(bind(parse("ij,jk->ik"), [(1, 200), (200, 2)]), "sum")
    skipping = np.zeros((200, 4))[:, ::2]
    skipping[...] = b
    assert_close(engine.run_direct(plan, (a, skipping)), a @ b)  # a copy, resolved
    with cn.memory_budget(skipping.nbytes - 1):  # the product's 2 elements fit, the copy not
        assert engine.within_budget(plan) and engine.run_direct(plan, (a, skipping)) is None
        assert_close(engine.run_plan(plan, (a, skipping)), a @ b)


def test_a_direct_call_copies_only_a_small_operand():
    """A copy of more than SMALL_COPY_BYTES is left to the general path,
    where a forward pass's memo keeps it for the backward pass."""
    rows = pair.SMALL_COPY_BYTES // (8 * 8) + 1  # an (rows, 8) float64 operand just past it
    a, b = _operands([(5, rows), (rows, 8)])
    plan = engine.make_plan(bind(parse("ij,jk->ik"), [(5, rows), (rows, 8)]), "sum")
    skipping = np.zeros((rows, 16))[:, ::2]
    skipping[...] = b
    assert skipping.nbytes > pair.SMALL_COPY_BYTES
    assert engine.run_direct(plan, (a, skipping)) is None
    assert_close(engine.run_plan(plan, (a, skipping)), a @ b)


def test_a_plan_keeps_the_calls_of_a_bounded_number_of_layouts():
    clear_bind_cache()
    a, b = _operands([(6, 12), (12, 17)])
    plan = engine.make_plan(bind(parse("ij,jk->ik"), [(6, 12), (12, 17)]), "sum")
    for step in range(1, engine.MAX_LAYOUTS + 4):  # b's rows every step-th element apart
        spaced = np.zeros((12, 17 * step))[:, ::step]
        spaced[...] = b
        assert_close(engine.run_plan(plan, (a, spaced)), a @ b)
    assert len(plan.direct_layouts) == engine.MAX_LAYOUTS


def test_a_traced_forward_pass_closes_its_memo():
    x, w = _operands([(2, 6, 3), (3, 3, 4)])
    out, vjp_fn = cn.vjp(lambda a, b: cn.einsum("b(h+u)c,uck->bhk", a, b), x, w)
    (memo,) = {id(m): m for m in _memos(out, vjp_fn)}.values()
    assert not memo.record and len(memo.copies) == 1  # the im2col of the window view
    vjp_fn(np.ones_like(out))
    vjp_fn(np.ones_like(out))
    assert len(memo.copies) == 1  # a backward pass reads it, never adds to it


def _memos(out, vjp_fn):
    """The memos held by the graph behind ``vjp_fn``."""
    cells = [c.cell_contents for c in vjp_fn.__closure__]
    roots = [c for c in cells if isinstance(c, cn.trace.Traced)]
    # a contract node's arguments are (plan, memo, *arrays)
    return [r.node.args[1] for r in roots if r.node is not None]


def test_lone_bool_axis_is_summed_as_a_count_when_the_result_is_not_bool():
    # once failed: the bool operand's own axis was summed as bool (an "or")
    a = np.arange(4, dtype=np.int32).reshape(2, 2) - 3
    b = np.array([[True, True], [True, False]])
    assert cn.einsum("ij,jk->", a, b) == np.einsum("ij,jk->", a, b) == -10
    assert cn.einsum("ij,jk->", b, b) == np.einsum("ij,jk->", b, b)
    # run pairwise, two bool operands meet first: they must count, not "or"
    c = np.ones((2, 2), dtype=np.int32)
    assert cn.einsum("ij,jk,kl->", b, b, c) == np.einsum("ij,jk,kl->", b, b, c)


def test_fully_fixed_output_window_is_written_not_copied():
    # once failed: with every output index fixed by the offset loop, indexing the
    # output view gave a scalar copy and the write was lost
    got = cn.einsum("->(b+c)(c+b)b", np.float64(1.5), sizes={"b": 1, "c": 1})
    np.testing.assert_array_equal(got, np.full((1, 1, 1), 1.5))


def test_windowed_max_with_another_reduced_index_routes_ties_to_the_first():
    # "c" is reduced too: ties are broken over (u, c) in that order, as np.argmax
    # over the flattened window would break them
    x = np.random.default_rng(5).integers(0, 2, (2, 7, 3)).astype(np.float64)
    out, vjp_fn = cn.vjp(lambda x: cn.einsum("b(2h+u)c->bh", x, sizes={"u": 3},
                                             reduce="max"), x)
    dy = np.random.default_rng(6).standard_normal(out.shape)
    want = np.zeros_like(x)
    for b in range(2):
        for h in range(3):
            block = x[b, 2 * h:2 * h + 3, :]
            u, c = np.unravel_index(np.argmax(block), block.shape)
            want[b, 2 * h + u, c] += dy[b, h]
            assert out[b, h] == block.max()
    np.testing.assert_allclose(vjp_fn(dy)[0], want, rtol=1e-12)


@pytest.mark.parametrize("reduce", ["sum", "mean", "max"])
def test_windowed_reduction_slice_by_slice_matches_numpy(reduce):
    # pooling-like specs combine their window offsets slice by slice
    x = np.random.default_rng(7).standard_normal((2, 6, 5, 3)).astype(np.float32)
    got = cn.einsum("b(h+u)(w+2v)c->bhwc", x, sizes={"u": 2, "v": 2}, reduce=reduce)
    windows = np.stack([x[:, u:u + 5, 2 * v:2 * v + 3, :] for u in range(2) for v in range(2)])
    want = {"sum": windows.sum(0), "mean": windows.mean(0), "max": windows.max(0)}[reduce]
    assert got.dtype == np.float32
    np.testing.assert_allclose(got, want, rtol=1e-6)


def test_windowed_sum_of_bools_is_numpys_bool_sum():
    # numpy's einsum sums bools as bools (a logical or); a window sums the same way
    x = np.random.default_rng(8).random((1, 5, 2)) < 0.5
    got = cn.einsum("b(h+u)c->bhc", x, sizes={"u": 2})
    windows = np.stack([x[:, 0:4], x[:, 1:5]], axis=2)  # (b, h, u, c)
    np.testing.assert_array_equal(got, np.einsum("bhuc->bhc", windows))


@pytest.mark.parametrize("spec, sizes, shape", [
    ("b(2h+u)(2w+v)c->bhwc", {"u": 2, "v": 2}, (2, 6, 5, 3)),      # pooling
    ("b(h+u)(w+2v)c->bchw", {"u": 3, "v": 2}, (1, 6, 7, 2)),       # overlapping, permuted
    ("(h+u)(2w+v)->huw", {"u": 2, "v": 2}, (3, 2)),                # an overlapping offset kept
    ("(h+u)(w+3v)->uhw", {"u": 2, "v": 2}, (4, 5)),
    ("b(3h+3u)c->bhu", {"u": 2}, (2, 9, 2)),
])
def test_max_routed_per_offset_matches_the_general_route(spec, sizes, shape, monkeypatch):
    # ties everywhere; MAX_REDUCE_OFFSETS = 0 turns the per-offset paths off
    x = np.random.default_rng(9).integers(0, 2, shape).astype(np.float64)

    def grad():
        clear_bind_cache()
        out, vjp_fn = cn.vjp(lambda x: cn.einsum(spec, x, sizes=sizes, reduce="max"), x)
        return out, vjp_fn(np.arange(1.0, out.size + 1).reshape(out.shape))[0]
    fast = grad()
    monkeypatch.setattr(engine, "MAX_REDUCE_OFFSETS", 0)
    general = grad()
    clear_bind_cache()
    for got, want in zip(fast, general):
        np.testing.assert_array_equal(got, want)


@pytest.mark.parametrize("spec, sizes, shape", [
    ("b(2h+u)(2w+v)c->bhwc", {"u": 2, "v": 2}, (2, 6, 5, 3)),      # disjoint windows
    ("b(2h+u)(2w+v)c->bhwc", {"u": 2, "v": 2}, (2, 6, 4, 3)),      # ...tiling the input
    ("b(h+u)(w+2v)c->bchw", {"u": 3, "v": 2}, (1, 6, 7, 2)),       # overlapping ones
], ids=["disjoint", "tiling", "overlapping"])
@pytest.mark.parametrize("infinite", [False, True], ids=["finite", "an-inf"])
@pytest.mark.parametrize("ties", [True, False], ids=["ties", "distinct"])
def test_max_routed_per_offset_sends_negative_cotangents_as_the_general_route(
        spec, sizes, shape, infinite, ties, monkeypatch):
    # a finite cotangent is multiplied by the hit mask: the zeros it leaves must
    # still be +0, as the general route's selection writes them, and an infinite
    # one must not turn the others into nan (both routes compared bit for bit);
    # distinct values with a finite one over tiling windows take the one-pass route
    rng = np.random.default_rng(10)
    x = (rng.integers(0, 3, shape) if ties else rng.permutation(math.prod(shape)).reshape(shape))
    x = x.astype(np.float64)

    def grad():
        clear_bind_cache()
        out, vjp_fn = cn.vjp(lambda x: cn.einsum(spec, x, sizes=sizes, reduce="max"), x)
        cot = -np.arange(0.0, out.size).reshape(out.shape)  # its first is -0
        if infinite:
            cot.flat[1] = -np.inf
        return vjp_fn(cot)[0]
    fast = grad()
    monkeypatch.setattr(engine, "MAX_REDUCE_OFFSETS", 0)
    general = grad()
    clear_bind_cache()
    np.testing.assert_array_equal(fast, general)
    np.testing.assert_array_equal(np.signbit(fast), np.signbit(general))
    assert (np.signbit(fast) == (fast < 0)).all()  # no -0


@pytest.mark.parametrize("spec, sizes, shape, tiled", [
    pytest.param("b(2h+u)(2w+v)c->bhwc", {"u": 2, "v": 2}, (2, 6, 4, 3), True, id="2x2-on-6x4"),
    pytest.param("b(3h+u)(w+v)->bhw", {"u": 3, "v": 1}, (2, 9, 5), True, id="3x1-on-9x5"),
    pytest.param("b(2h+u)(2w+v)c->bhwc", {"u": 2, "v": 2}, (2, 6, 5, 3), False,
                 id="2x2-on-6x5"),   # column 4 unread
    pytest.param("b(3h+u)(3w+v)->bhw", {"u": 2, "v": 2}, (1, 9, 9), False,
                 id="2x2-stride-3"),  # gaps between the windows
    pytest.param("b(h+u)(w+2v)c->bchw", {"u": 3, "v": 2}, (1, 6, 7, 2), False,
                 id="overlapping"),
])
@pytest.mark.parametrize("reduce", ["max", "mean"])
def test_a_windowed_gradient_is_written_at_every_position(
        spec, sizes, shape, tiled, reduce, monkeypatch):
    # the gradient (max's routed per offset, mean's scattered) starts
    # uninitialised only where the windows tile the input; fresh memory
    # here is full of nan, so a position left unwritten shows
    x = distinct_values(np.random.default_rng(3), shape)
    fresh = []

    def dirty(shape, dtype=float, **kwargs):
        fresh.append(tuple(shape))
        return np.full(shape, np.nan, dtype=dtype)
    monkeypatch.setattr(engine.backend, "empty", dirty)
    clear_bind_cache()
    out, vjp_fn = cn.vjp(lambda x: cn.einsum(spec, x, sizes=sizes, reduce=reduce), x)
    cot = np.random.default_rng(4).standard_normal(out.shape)
    (got,) = vjp_fn(cot)
    clear_bind_cache()
    # distinct values: max is linear near x, as the mean is everywhere
    window = lambda a: reduce_window_loop(spec, a, sizes, reduce)  # noqa: E731
    want = (numeric_vjp(window, [x], cot)[0] if reduce == "max"
            else linear_vjp(window, [x], 0, cot))
    assert not np.isnan(got).any()
    assert_close(got, want, tol=1e-6)
    assert (shape in fresh) == tiled  # the gradient itself was left uninitialised


@pytest.mark.parametrize("spec", ["ij->j", "ij->", "ii->", "ij->i", "ij,k->k", "ij,ij->i",
                                  "ij,j,k->k"])
def test_big_endian_operands_run_as_numpy_runs_them(spec):
    """numpy's reductions refuse a byte order in their dtype; einsum does not."""
    rng = np.random.default_rng(0)
    shapes = {"i": 3, "j": 3, "k": 2}
    operands = [rng.standard_normal([shapes[n] for n in term]).astype(">f8")
                for term in spec.split("->")[0].split(",")]
    np.testing.assert_allclose(cn.einsum(spec, *operands), np.einsum(spec, *operands))
    argnums = tuple(range(len(operands)))
    loss = lambda *ops: cn.sum(cn.einsum(spec, *ops))  # noqa: E731
    grads = cn.grad(loss, argnums=argnums)(*operands)
    native = cn.grad(loss, argnums=argnums)(*[x.astype("<f8") for x in operands])
    for g, want, x in zip(grads, native, operands):
        assert g.dtype == x.dtype and g.shape == x.shape
        np.testing.assert_allclose(g, want, rtol=1e-14)


def test_more_axes_than_numpy_einsum_has_letters():
    """A tiny batched product over 54 axes (numpy.einsum names 52) runs as a GEMM."""
    shape = (2,) * 4 + (1,) * 50
    rng = np.random.default_rng(0)
    x, y = rng.standard_normal(shape), rng.standard_normal(shape)
    out, vjp_fn = cn.vjp(lambda a, b: cn.einsum("...,...->...", a, b), x, y)
    np.testing.assert_allclose(out, x * y)
    dx, dy = vjp_fn(np.ones(shape))
    np.testing.assert_allclose(dx, y)
    np.testing.assert_allclose(dy, x)


@pytest.mark.parametrize("spec, shapes, want", [
    ("i,j->ij", [(3,), (0,)], (3, 0)), ("i,j->ij", [(0,), (3,)], (0, 3)),
    ("Abc,,cd->bdAc", [(2, 3, 2), (), (2, 0)], (3, 0, 2, 2)),
    ("bi,bj->bij", [(2, 3), (2, 0)], (2, 3, 0)),
])
def test_an_empty_outer_product_never_reaches_numpy_einsum(spec, shapes, want, monkeypatch):
    # numpy 2.4's einsum writes past the end of an empty outer product's result
    # (so numpy.einsum is not the oracle here either)
    def refuse(*args, **kwargs):
        raise AssertionError(f"numpy.einsum called with {args[0]!r}")
    operands = [np.ones(s, np.float32) for s in shapes]
    monkeypatch.setattr(pair.backend, "einsum", refuse)
    got = cn.einsum(spec, *operands)
    assert got.shape == want and got.dtype == np.float32
    y, vjp_fn = cn.vjp(lambda *ops: cn.einsum(spec, *ops), *operands)
    grads = vjp_fn(np.ones(y.shape))
    for g, x in zip(grads, operands):
        np.testing.assert_array_equal(g, np.zeros(x.shape))


@pytest.mark.parametrize("spec, shape", [("ij->ji", (0, 3)), ("ii->i", (0, 0)), ("a->a", (0,))])
def test_an_empty_one_operand_result_is_its_own_writable_array(spec, shape):
    x = np.ones(shape)
    x.flags.writeable = False
    out = cn.einsum(spec, x)
    assert out is not x and (out.base is None or out.base.size == 0 and out.base is not x)
    assert out.flags.writeable


@pytest.mark.parametrize("an, bn, keep, shapes, einsum", [
    # the sums run down the columns: one strided dot product per column
    ("ab", "ab", "b", [(600, 40)] * 2, True),
    ("ijb", "ijb", "b", [(30, 20, 16)] * 2, True),
    ("bhwc", "bhwc", "c", [(4, 12, 12, 16)] * 2, True),
    ("ab", "ab", "b", [(600, 12)] * 2, False),    # fewer than 16: faster as a batched GEMM
    ("ab", "ab", "a", [(40, 600)] * 2, False),    # each row's sum is contiguous: a batched GEMM
    ("ab", "ba", "b", [(600, 40), (40, 600)], False),  # one operand's sums are contiguous
    ("ab", "ab", "b", [(64, 4096)] * 2, True),    # short sums, but many
    ("ab", "ab", "b", [(40, 16)] * 2, False),     # few terms in all: a tiny product
])
def test_batched_dot_products_go_where_they_run_fast(an, bn, keep, shapes, einsum):
    """Each sum is 512 long or more, past the tiny products that go to
    numpy.einsum whatever their layout."""
    a, b = (x.astype(np.float32) for x in _operands(shapes))
    plan = pair.plan_pair(an, a.shape, a.strides, bn, b.shape, b.strides, keep)
    assert plan.strided_dots == einsum
    # sums of more than LONG_SUM terms add up in blocks
    terms = math.prod(a.shape) // math.prod(plan.result_shape)
    assert (plan.sum_blocks is not None) == (einsum and terms > LONG_SUM)
    # whatever the dtype
    wide = [x.astype(np.float64) for x in (a, b)]
    assert pair.plan_pair(an, wide[0].shape, wide[0].strides, bn, wide[1].shape,
                          wide[1].strides, keep).strided_dots == einsum
    got, names = pair.contract_pair(a, an, b, bn, keep)
    assert names == keep and got.flags.c_contiguous and got.dtype == np.float32
    want = np.einsum(f"{an},{bn}->{names}", a.astype(np.float64), b.astype(np.float64))
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-4)


@pytest.mark.parametrize("an, bn, keep, shapes, einsum", [
    ("bj", "bjk", "bk", [(1000, 2), (1000, 2, 2)], True),       # vector products, 2 terms
    ("bij", "bj", "bi", [(1000, 2, 8), (1000, 8)], True),       # 2 rows of 8 terms
    ("bi", "bi", "b", [(1000, 32)] * 2, True),                  # dot products of 32 terms
    ("bi", "bi", "b", [(512, 256)] * 2, False),                 # of 256 terms: a batched GEMM
    ("bij", "bj", "bi", [(1000, 8, 2), (1000, 2)], False),      # 8 rows: a batched GEMM
    ("bij", "bjk", "bik", [(1000, 2, 2), (1000, 2, 2)], False),  # 2x2 matrices: batched GEMM
    ("bij", "bjk", "bik", [(256, 4, 8), (256, 8, 4)], False),
    ("ijs", "jsl", "isl", [(6, 3, 1000), (3, 1000, 16)], False),  # batch innermost in one
])
def test_only_tiny_batched_vector_products_leave_the_gemm(an, bn, keep, shapes, einsum):
    """numpy's matmul makes one BLAS call per vector product, slow for tiny
    ones; a batched product of matrices, however small, it runs in one
    loop several times faster than numpy.einsum's."""
    a, b = _operands(shapes)
    plan = pair.plan_pair(an, a.shape, a.strides, bn, b.shape, b.strides, keep)
    assert (plan.einsum_eq is not None) == einsum
    got, names = pair.contract_pair(a, an, b, bn, keep)
    assert_close(got, np.einsum(f"{an},{bn}->{names}", a, b), what=f"{an},{bn}")


def test_a_fortran_ordered_stack_of_matrices_is_copied_before_blas(monkeypatch):
    """Its unit stride runs along the stack, so numpy's matmul could not hand
    its matrices to BLAS and would take its own loop, many times slower."""
    a = np.asfortranarray(_operands([(40, 8, 12)])[0])
    b = _operands([(40, 12, 6)], seed=1)[0]
    assert not pair._blas_reads(a) and pair._blas_reads(np.asfortranarray(a[0]))
    matmul = pair.backend.matmul

    def blas_only(x, y, *args, **kwargs):
        for m in (x, y):
            rows, cols = m.strides[-2:]
            assert m.itemsize in (rows, cols), f"matmul given strides {m.strides}"
        return matmul(x, y, *args, **kwargs)
    monkeypatch.setattr(pair.backend, "matmul", blas_only)
    assert_close(cn.einsum("bij,bjk->bik", a, b), np.einsum("bij,bjk->bik", a, b))


@pytest.mark.parametrize("spec, shapes, axes", [
    ("kdu,dk->ku", [(48, 32, 384), (48, 384)], (2, 0, 1)),  # k innermost in both
    ("yimc,ic->mcy", [(5, 48, 10, 256), (48, 256)], None),
    ("ab,ab->b", [(600, 40)] * 2, None),
])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_batched_vector_products_strided_along_their_sums(spec, shapes, axes, dtype):
    """They go to numpy.einsum, which reads them in place; a GEMM would
    first copy both operands batch-outermost."""
    (an, bn), keep = spec.split("->")[0].split(","), spec.split("->")[1]
    a, b = _operands(shapes, dtype=dtype)
    if axes is not None:
        a = a.transpose(axes)
    plan = pair.plan_pair(an, a.shape, a.strides, bn, b.shape, b.strides, keep)
    assert plan.strided_dots
    got = cn.einsum(spec, a, b)
    assert got.dtype == dtype
    want = np.einsum(spec, a.astype(np.float64), b.astype(np.float64))
    np.testing.assert_allclose(got, want, rtol=1e-5 if dtype == np.float32 else 1e-12,
                               atol=1e-5 * np.abs(want).max())


@pytest.mark.parametrize("layout", sorted(LAYOUTS))
@pytest.mark.parametrize("spec", ["bhwc->c", "abcd->abd", "bij->b", "bij->j", "bij,b->b",
                                  "ijk,k->k", "ij->"])
def test_sums_over_an_operands_axes_match_numpy_in_every_layout(spec, layout):
    terms = spec.split("->")[0].split(",")
    sizes = dict(zip("abcdhijkw", (3, 5, 7, 2, 4, 6, 5, 3, 4)))
    operands = [relayout(x, layout) for x in
                _operands([tuple(sizes[c] for c in t) for t in terms])]
    assert_close(cn.einsum(spec, *operands), np.einsum(spec, *operands), what=spec)


def test_long_contiguous_float32_sums_stay_pairwise():
    """ndarray.sum adds a long run of contiguous terms pairwise; numpy.einsum
    would lose about ten times as many digits (4e-7 of the sum here)."""
    x = np.random.default_rng(0).random((4, 100_000)).astype(np.float32)
    exact = x.astype(np.float64).sum(axis=1)
    for spec in ("ij->i", "ij,i->i"):
        got = cn.einsum(spec, x, np.ones(4, np.float32)) if "," in spec else cn.einsum(spec, x)
        assert np.max(np.abs(got - exact)) <= 1e-7 * np.max(exact), spec


@pytest.mark.parametrize("shape, axes, layout, kind", [
    ((64, 28, 28, 32), (0, 1, 2), "contiguous", "rows"),     # a bias gradient: rows of 25,088
    ((100000, 16), (0,), "contiguous", "einsum"),            # narrow rows: numpy adds them slowly
    ((3, 200, 10), (0, 1), "contiguous", "rows"),            # then 200 narrow rows: by einsum
    ((64, 28, 28, 32), (0, 1, 2), "reversed", "einsum"),     # rows laid out backwards
    ((64, 28, 28, 32), (0, 1, 2), "fortran", "pairwise"),    # the summed axes innermost
    ((64, 28, 28, 32), (1, 2), "contiguous", "einsum"),      # not leading
    ((64, 128, 96), (1, 2), "contiguous", "pairwise"),       # one contiguous run at the end
])
def test_sums_of_one_operand_take_the_route_its_layout_reads_fastest(shape, axes, layout, kind):
    x = relayout(np.random.default_rng(0).random(shape).astype(np.float32), layout)
    assert pair._sum_route(x.shape, x.strides, x.itemsize, axes).kind == kind
    exact = x.astype(np.float64).sum(axis=axes)
    got = pair.sum_over(x, axes, x.dtype)
    assert got.dtype == np.float32 and got.shape == exact.shape
    assert np.abs(got - exact).max() <= 4e-7 * np.abs(exact).max()


def test_summed_axes_of_length_one_are_dropped_not_summed(monkeypatch):
    """Summing one along the row route would copy the whole operand."""
    lengths = []
    sum_rows = pair.sum_rows

    def spy(x, dtype):
        lengths.append(len(x))
        return sum_rows(x, dtype)
    monkeypatch.setattr(pair, "sum_rows", spy)
    x = np.random.default_rng(0).random((1, 1, 300, 200))
    assert_close(pair.sum_over(x, (0, 1, 2), x.dtype), x.sum(axis=(0, 1, 2)))
    assert lengths == [300]
    only_ones = pair.sum_over(x, (0, 1), x.dtype)
    assert only_ones.shape == (300, 200) and not np.shares_memory(only_ones, x)


def test_a_long_sum_over_a_broadcast_axis_adds_up_in_blocks():
    """A stride-0 axis is no contiguous run for numpy's pairwise sums: they
    would add its 100,000 terms one by one (9998.557 for 10000)."""
    x = np.broadcast_to(np.float32(0.1), (100_000, 7))
    exact = 100_000 * np.float64(np.float32(0.1))
    np.testing.assert_allclose(cn.einsum("ij->j", x), exact, rtol=2e-7)


def test_sums_off_the_innermost_axis_go_to_numpy_einsum(monkeypatch):
    """One pass, several times faster than ndarray.sum over scattered axes."""
    calls = []
    einsum = pair.backend.einsum

    def spy(eq, *args, **kwargs):
        calls.append(eq)
        return einsum(eq, *args, **kwargs)
    monkeypatch.setattr(pair.backend, "einsum", spy)
    x = _operands([(2, 5, 6, 3)], dtype=np.float32)[0]
    assert_close(pair.sum_over(x, (0, 1, 2), np.dtype(np.float32)), x.sum(axis=(0, 1, 2)))
    assert calls == ["abcd->d"]
    pair.sum_over(x, (3,), np.dtype(np.float32))  # 3 contiguous terms: as pairwise sums add them
    assert calls[-1] == "abcd->abc"
    # more than LONG_SUM terms: one call for the partial sums of blocks of 60
    pair.sum_over(np.concatenate([x, x]), (0, 1, 2), np.dtype(np.float32))
    assert calls[-1] == "abcde->ae"


@pytest.mark.parametrize("spec, shape", [("bhwc->c", (64, 28, 28, 32)), ("nc->c", (20000, 16)),
                                         ("ij,i->i", (16, 20000)), ("ijk->j", (100000, 5, 3))])
def test_long_sums_other_than_one_innermost_run_add_up_in_blocks(spec, shape):
    """A bias gradient's sum: numpy.einsum and ndarray.sum add its terms one
    by one (7.5e-6 of the largest result off at the first shape, in float32),
    blocks of at most LONG_SUM terms keep about a GEMM's digits.  So do sums
    over the innermost axis and an outer one ("ijk->j": ndarray.sum adds
    pairwise along k only, 3.3e-6 off)."""
    x = np.random.default_rng(0).random(shape).astype(np.float32)
    if "," in spec:
        x = np.asfortranarray(x)  # the sums along j run across rows
    operands = (x, np.ones(shape[0], np.float32)) if "," in spec else (x,)
    exact = np.einsum(spec, *(o.astype(np.float64) for o in operands))
    got = cn.einsum(spec, *operands)
    assert got.dtype == np.float32
    assert np.max(np.abs(got - exact)) <= 2e-7 * np.max(np.abs(exact))
    assert np.max(np.abs(np.einsum(spec, *operands) - exact)) > 1e-6 * np.max(np.abs(exact))


@pytest.mark.parametrize("spec, sizes, sums", [
    ("jvoh,jos,hjs->os", dict(v=64, j=7, o=100, s=256, h=10), [((0,), "joh")]),
    ("abz,bc,cd->ad", dict(a=20, b=10, c=10, d=5, z=30), [((0,), "ab")]),
    ("zab,bc,cy->a", dict(a=4, b=5, c=6, y=3, z=2), [((0,), "ab"), ((1,), "c")]),
])
def test_an_index_only_one_operand_has_is_summed_before_the_path_is_planned(
        spec, sizes, sums):
    """Planned with it, opt_einsum counted it in every product: 230 million
    operations along the path of the first spec, against 4 million."""
    lhs, target = spec.split("->")
    terms = tuple(lhs.split(","))
    shapes = tuple(tuple(sizes[n] for n in t) for t in terms)
    steps, largest = path.plan_path(terms, shapes, target)
    # each sum keeps the term's other indices (in the order the next step reads them)
    assert [(p, set(kept)) for p, kept in steps[:len(sums)]] == [(p, set(k)) for p, k in sums]
    if spec.startswith("jvoh"):
        assert largest <= 100 * 256 * 7
    small = {n: min(d, 4) for n, d in sizes.items()}
    operands = _operands([tuple(small[n] for n in t) for t in terms])
    assert_close(cn.einsum(spec, *operands), np.einsum(spec, *operands), what=spec)
    cotangent = _operands([tuple(small[n] for n in target)], seed=5)[0]
    _, vjp_fn = cn.vjp(lambda *ops: cn.einsum(spec, *ops), *operands)
    for got, want in zip(vjp_fn(cotangent), einsum_vjp(spec, operands, cotangent)):
        assert_close(got, want, what=spec)


def _path_kept(spec: str, shapes) -> list[str]:
    """The indices each step of ``spec``'s planned path keeps."""
    plan = engine.make_plan(bind_text(spec, tuple(shapes)), "sum")
    sizes = plan.bound.size_map
    read_shapes = tuple(tuple(sizes[n] for n in t) for t in plan.read_names)
    steps, _ = path.plan_path(plan.read_names, read_shapes, plan.target, plan.window_offsets)
    return [kept for _, kept in steps]


CP_CONV = "b(h+u)(w+v)c,ur,vr,cr,kr->bhwk"


@pytest.mark.parametrize("shapes, auto, planned", [
    # opt_einsum's path sums c first and keeps the offsets u, v next to h, w:
    # an intermediate (and gradient) 4 / 32 of the window's read, and 9 * 4 / 32
    # times the read over its offsets
    (((8, 32, 32, 32), (3, 4), (3, 4), (32, 4), (16, 4)),
     ["bhuwvr", "ruv", "rbhw", "bhwk"], ["ruv", "uvcr", "rbhw", "bhwk"]),
    # one offset: the window is x itself, opt_einsum's path stays
    (((8, 32, 32, 32), (1, 4), (1, 4), (32, 4), (16, 4)),
     ["bhuwvr", "ruv", "uvrk", "bhwk"], ["bhuwvr", "ruv", "uvrk", "bhwk"]),
    # the kept offsets make a product smaller than x (9 * 2 < 64): opt_einsum's path stays
    (((8, 32, 32, 64), (3, 2), (3, 2), (64, 2), (16, 2)),
     ["bhuwvr", "ruv", "rbhw", "bhwk"], ["bhuwvr", "ruv", "rbhw", "bhwk"]),
])
def test_a_window_is_read_by_one_product_that_sums_its_offsets(shapes, auto, planned):
    """Where opt_einsum's path would keep a window's offsets past the product
    that reads it, the plan takes the path that contracts the terms sharing
    the window's summed indices first (part of the kernel) and sums them all
    in one product, at no more FLOPs."""
    plan = engine.make_plan(bind_text(CP_CONV, shapes), "sum")
    sizes = plan.bound.size_map
    read_shapes = tuple(tuple(sizes[n] for n in t) for t in plan.read_names)
    assert plan.window_offsets == (((0, "uv"),) if shapes[1][0] > 1 else ())
    steps, _ = path.plan_path(plan.read_names, read_shapes, plan.target)
    assert [kept for _, kept in steps] == auto
    assert _path_kept(CP_CONV, shapes) == planned
    _, auto_info, _ = path.contraction_path(plan.read_names, read_shapes, plan.target)
    _, info, _ = path.contraction_path(plan.read_names, read_shapes, plan.target,
                                         plan.window_offsets)
    assert info.opt_cost <= auto_info.opt_cost
    assert f"pairwise path {info.path}" in explain(CP_CONV, *shapes)


def test_the_one_product_path_is_refused_where_it_costs_more_flops():
    """A Tucker kernel's core shares no index with the input: its factors,
    contracted first, make a kernel part of u*v*c*p*q*s elements whose
    product with the window costs 52 times the FLOPs of opt_einsum's path."""
    spec = "b(h+u)(w+v)c,up,vq,cs,pqsk->bhwk"
    shapes = ((8, 16, 16, 64), (3, 8), (3, 8), (64, 8), (8, 8, 8, 16))
    plan = engine.make_plan(bind_text(spec, shapes), "sum")
    sizes = plan.bound.size_map
    read_shapes = tuple(tuple(sizes[n] for n in t) for t in plan.read_names)
    offsets_kept = path._read_product(path.contraction_path(
        plan.read_names, read_shapes, plan.target)[1].path, list(plan.read_names),
        plan.target, 0)
    assert set("uv") & set(offsets_kept)  # the rule looks at this path ...
    once = path._one_window_step(list(plan.read_names), plan.target, sizes, 0)
    _, auto_info, _ = path.contraction_path(plan.read_names, read_shapes, plan.target)
    eq = ",".join(plan.read_names) + "->" + plan.target
    cost = path.opt_einsum.contract_path(eq, *read_shapes, shapes=True, optimize=once)[1].opt_cost
    assert cost > 2 * auto_info.opt_cost  # ... and finds the one-product path dearer
    assert _path_kept(spec, shapes) == [kept for _, kept in path.plan_path(
        plan.read_names, read_shapes, plan.target)[0]]


@pytest.mark.parametrize("shapes", [
    ((2, 6, 6, 2), (3, 2), (3, 2), (2, 2), (3, 2)),   # opt_einsum's path keeps v
    ((2, 6, 6, 16), (3, 4), (3, 4), (16, 4), (5, 4)),  # ... keeps u and v
])
def test_the_one_product_path_gives_the_values_and_gradients(shapes):
    plan = engine.make_plan(bind_text(CP_CONV, shapes), "sum")
    read_shapes = tuple(tuple(plan.bound.size_map[n] for n in t) for t in plan.read_names)
    assert _path_kept(CP_CONV, shapes) != [kept for _, kept in path.plan_path(
        plan.read_names, read_shapes, plan.target)[0]]  # the one-product path is taken
    operands = _operands(shapes)
    exact = conv2d_loop(operands[0], np.einsum("ur,vr,cr,kr->uvck", *operands[1:]))
    assert_close(cn.einsum(CP_CONV, *operands), exact)
    cotangent = _operands([exact.shape], seed=3)[0]
    _, vjp_fn = cn.vjp(lambda *ops: cn.einsum(CP_CONV, *ops), *operands)
    _, conv_vjp = cn.vjp(lambda x, *fs: cn.einsum(
        "b(h+u)(w+v)c,uvck->bhwk", x, cn.einsum("ur,vr,cr,kr->uvck", *fs)), *operands)
    for got, want in zip(vjp_fn(cotangent), conv_vjp(cotangent)):
        assert_close(got, want)


def test_the_one_product_path_is_refused_where_its_intermediate_is_larger():
    """Fewer FLOPs, but a larger intermediate: the plan's peak, and so the
    memory budget it must fit, would grow."""
    spec = "b(2h+u)c,su,u,ku,ckr->bhk"
    operands = _operands([(2, 12, 16), (2, 2), (2,), (16, 2), (16, 16, 4)])
    with cn.memory_budget(3072):
        got = cn.einsum(spec, *operands)
    x = np.lib.stride_tricks.sliding_window_view(operands[0], 2, axis=1)[:, ::2]
    assert_close(got, np.einsum("bhcu,su,u,ku,ckr->bhk", x, *operands[1:]))


def test_the_last_pairwise_step_writes_the_target_order():
    """Kept in its operands' order, the last product's result was then copied
    into the output's order by a step of its own.  Now the product names the
    target's order and comes back in its own layout (a transposed view where
    its GEMM writes another order), as a two-operand spec does."""
    assert _path_kept("bnmd,nr,mr,dr,kr->bk", ((4, 2, 3, 5), (2, 6), (3, 6), (5, 6),
                                              (7, 6)))[-1] == "bk"
    assert _path_kept(CP_CONV, ((8, 32, 32, 32), (3, 4), (3, 4), (32, 4), (16, 4)))[-1] == "bhwk"


@pytest.mark.parametrize("spec, shape, sizes, forward, backward", [
    ("bij->b", (3, 4, 5), None, lambda x: x.sum(axis=(1, 2)),
     lambda g: np.broadcast_to(g[:, None, None], (3, 4, 5))),
    ("bj->bij", (3, 5), {"i": 4}, lambda x: np.broadcast_to(x[:, None], (3, 4, 5)),
     lambda g: g.sum(axis=1)),
    ("ij->jki", (2, 3), {"k": 4}, lambda x: np.broadcast_to(x.T[:, None], (3, 4, 2)),
     lambda g: g.sum(axis=1).T),
])
def test_an_output_every_element_of_which_is_written_is_not_zeroed_first(
        spec, shape, sizes, forward, backward, monkeypatch):
    """A broadcast gradient (or output) is written once, not zeroed and
    added to; an output with a diagonal still starts from zeros."""
    def refuse(*args, **kwargs):
        raise AssertionError("zeroed")
    x = _operands([shape])[0]
    y, vjp_fn = cn.vjp(lambda a: cn.einsum(spec, a, sizes=sizes), x)
    g = _operands([y.shape], seed=3)[0]
    monkeypatch.setattr(engine.backend, "zeros", refuse)
    assert_close(cn.einsum(spec, x, sizes=sizes), forward(x))
    assert_close(vjp_fn(g)[0], backward(g))
    with pytest.raises(AssertionError, match="zeroed"):
        cn.einsum("i->ii", np.ones(3))


def test_long_strided_dot_products_keep_a_gemms_digits():
    """numpy.einsum adds their terms one by one: in float32 that keeps about
    five of seven digits over 50,000 terms (relative error 6e-6), where a
    GEMM's error is about 5e-7; added up in blocks, they keep the GEMM's.
    float16 ones sum in float32 (numpy's own are 2% off)."""
    rng = np.random.default_rng(0)
    x, g = (v.astype(np.float32) for v in rng.standard_normal((2, 50000, 32)))
    exact = np.einsum("ab,ab->b", x.astype(np.float64), g.astype(np.float64))
    gemm = np.matmul(x.T[:, None, :].copy(), g.T[:, :, None].copy())[:, 0, 0]
    scale = np.max(np.abs(exact))
    got = cn.einsum("ab,ab->b", x, g)
    assert got.dtype == np.float32 and got.flags.c_contiguous
    assert np.max(np.abs(got - exact)) <= max(np.max(np.abs(gemm - exact)), 2e-7 * scale)
    assert np.max(np.abs(np.einsum("ab,ab->b", x, g) - exact)) > 4e-6 * scale
    half = cn.einsum("ab,ab->b", x.astype(np.float16), g.astype(np.float16))
    exact = np.einsum("ab,ab->b", x.astype(np.float16).astype(np.float64),
                      g.astype(np.float16).astype(np.float64))
    assert half.dtype == np.float16 and np.max(np.abs(half - exact)) <= 2e-3 * scale


def test_a_backward_pass_reuses_no_copy_of_an_earlier_cotangent():
    # the memo serves the forward pass's copies only: a cotangent changed in
    # place between two backward passes is read afresh
    rng = np.random.default_rng(0)
    x, w = rng.standard_normal((2, 8, 3)), rng.standard_normal((3, 3, 4))
    _, vjp_fn = cn.vjp(lambda a, b: cn.einsum("b(h+u)c,uck->bhk", a, b), x, w)
    g = rng.standard_normal((2, 13, 4))[:, :12:2]  # strided: copied for BLAS
    first = [d.copy() for d in vjp_fn(g)]
    g *= 2
    for again, once in zip(vjp_fn(g), first):
        assert_close(again, 2 * once)


def test_an_operand_blas_reads_in_place_is_not_copied_under_a_tight_budget():
    a = np.ones((4, 10, 50))[::2]  # every other matrix: each still BLAS-readable
    with cn.memory_budget(1000):
        got = cn.einsum("bij,bjk->bik", a, np.ones((2, 50, 2)))
    assert_close(got, np.full((2, 10, 2), 50.0))


@pytest.mark.parametrize("any_layout", [False, True])
def test_strided_dot_products_come_back_c_ordered(any_layout):
    """In the caller's order, or with any layout, in the operands' order."""
    x = np.random.default_rng(0).standard_normal((600, 8, 4)).astype(np.float32)
    assert pair.plan_pair("abc", x.shape, x.strides, "abc", x.shape, x.strides,
                          "cb").strided_dots
    got, names = pair.contract_pair(x, "abc", x, "abc", "cb", any_layout=any_layout)
    assert names == ("bc" if any_layout else "cb") and got.flags.c_contiguous
    assert_close(got, np.einsum(f"abc,abc->{names}", x, x), tol=1e-3)


def _outer_with_transposed_operand():
    """Operands of ``"lo,op->lop"``; the second is transposed in memory."""
    a, b = _operands([(5, 6), (4, 6)], dtype=np.float32)
    return a, b.T


def test_a_gradient_of_a_c_ordered_primal_is_c_ordered_from_a_numpy_product():
    a, b = _outer_with_transposed_operand()
    c = np.ascontiguousarray(np.einsum("lo,op->lop", a, b))
    dy = _operands([(4, 6, 5)], seed=1, dtype=np.float32)[0]
    # "pol,op->lop" (c's gradient) sums nothing: numpy.einsum writes it, asked for C
    _, vjp_fn = cn.vjp(lambda x, y, z: cn.einsum("lo,op,lop->pol", x, y, z), a, b, c)
    ga, gb, gc = vjp_fn(dy)
    assert gc.flags.c_contiguous
    assert_close(gc, np.einsum("pol,lo,op->lop", dy, a, b), tol=1e-5)
    assert_close(gb, np.einsum("pol,lo,lop->op", dy, a, c), tol=1e-5)


@pytest.mark.parametrize("spec", ["lo,op->lop", "lo,op,lop->pol"])
def test_a_forward_pass_takes_any_layout_and_a_gradient_its_primals(spec, monkeypatch):
    """Every step of a forward pass, the last included, takes any layout;
    a gradient asks for its primal's."""
    clear_bind_cache()  # no layout's call resolved before, and none kept (MAX_LAYOUTS)
    a, b = _operands([(7, 3), (9, 3)], dtype=np.float32)
    b = b.T
    operands = [a, b, np.einsum("lo,op->lop", a, b)][:spec.count(",") + 1]
    asked = []
    real_pair, real_call = engine.contract_pair, engine.direct_call

    def recording_pair(*args, any_layout=False, **kwargs):
        asked.append(any_layout)
        return real_pair(*args, any_layout=any_layout, **kwargs)

    def recording_call(*args):
        asked.append(args[-1])  # any_layout
        return real_call(*args)

    monkeypatch.setattr(engine, "contract_pair", recording_pair)
    monkeypatch.setattr(engine, "direct_call", recording_call)
    monkeypatch.setattr(engine, "MAX_LAYOUTS", 0)
    got = cn.einsum(spec, *operands)
    assert asked and all(asked), asked
    assert_close(got, np.einsum(spec, *operands))
    asked.clear()
    bound = bind(parse(spec), [x.shape for x in operands])
    engine.execute(bound, operands, like=np.empty(got.shape, got.dtype))
    assert asked and not asked[-1], asked


def test_a_budget_exactly_the_outputs_size_is_enough():
    with cn.memory_budget(128):  # 4 x 4 float64
        assert cn.einsum("i,j->ij", np.ones(4), np.ones(4)).shape == (4, 4)
    with cn.memory_budget(127), pytest.raises(cn.MemoryBudgetError):
        cn.einsum("i,j->ij", np.ones(4), np.ones(4))


def test_the_budget_counts_a_paths_intermediates():
    a = np.ones((100, 100))
    with cn.memory_budget(50_000), pytest.raises(cn.MemoryBudgetError, match="80,000 bytes"):
        cn.einsum("ab,bc,ac->", a, a, a)  # an output of 8 bytes, an intermediate of 80 kB


@pytest.mark.parametrize("x", [np.ones((2, 200), np.int8),
                               np.array([[True, True], [False, False]])])
def test_sums_keep_numpys_dtype_and_its_wrapping(x):
    got, want = cn.einsum("ij->i", x), np.einsum("ij->i", x)
    assert got.dtype == want.dtype
    np.testing.assert_array_equal(got, want)


def test_max_gradient_with_a_broadcast_output_index():
    x = np.random.default_rng(0).standard_normal(9)
    _, vjp_fn = cn.vjp(lambda a: cn.einsum("(2h+u)->hz", a, sizes={"u": 2, "z": 3},
                                           reduce="max"), x)
    (g,) = vjp_fn(np.ones((4, 3)))
    want = np.zeros(9)
    for h in range(4):
        want[2 * h + np.argmax(x[2 * h:2 * h + 2])] += 3
    assert_close(g, want)


def test_the_budget_counts_the_sums_of_lone_indices_before_a_path():
    x, ones = np.random.default_rng(0).standard_normal((500, 500, 8)), np.ones(500)
    with cn.memory_budget(1_000_000), pytest.raises(cn.MemoryBudgetError, match="2,000,000"):
        cn.einsum("abz,a,b->", x, ones, ones)  # the sum over z: 2 MB
    huge = np.broadcast_to(np.ones(8), (100_000, 100_000, 8))  # its sum over z: 80 GB
    with cn.memory_budget(1 << 30), pytest.raises(cn.MemoryBudgetError):
        cn.einsum("abz,a,b->", huge, np.ones(100_000), np.ones(100_000))
    assert path.plan_path(("abz", "a", "b"), ((500, 500, 8), (500,), (500,)), "")[1] == 250_000


def test_the_partial_and_wider_sums_of_strided_dot_products_count_against_the_budget():
    a = np.ones((100, 20_000), np.float32)  # 100-term sums down the columns: two blocks
    with cn.memory_budget(100_000):  # the float32 result fits (80 kB), its partial sums do not
        with pytest.raises(cn.MemoryBudgetError, match="partial sums"):
            cn.einsum("ab,ab->b", a, a)
    np.testing.assert_array_equal(cn.einsum("ab,ab->b", a, a), np.full(20_000, 100.0))
    h = np.ones((30, 20_000), np.float16)  # float16 sums in float32
    with cn.memory_budget(60_000):  # the float16 result fits (40 kB), its float32 sums do not
        with pytest.raises(cn.MemoryBudgetError, match="would allocate an array of 80,000"):
            cn.einsum("ab,ab->b", h, h)


@pytest.mark.parametrize("values, finite", [
    ([1.0, -2.0, 3e38, 3e38], False),  # finite, but their sum overflows: read as not finite
    ([1.0, -2.0, np.inf, 0.0], False),
    ([np.inf, -np.inf, 1.0, 0.0], False),
    ([np.nan, 1.0, 1.0, 1.0], False),
    ([1.0, -2.0, 3.0, -0.0], True),
])
def test_a_selection_multiplies_by_its_mask_only_a_cotangent_found_finite(values, finite):
    g = np.resize(np.array(values, dtype=np.float32), 2 * engine.MASK_PRODUCT_MIN)
    where = np.arange(g.size) % 3 == 0
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # an overflowing test sum warns nothing
        assert engine.all_finite(g) is finite
        got = engine.passes(where, g)
    want = np.where(where, g, 0)
    np.testing.assert_array_equal(got, want)
    assert got.dtype == np.float32 and not np.signbit(got[~where]).any()


def test_a_scattered_output_writes_plus_zero_where_numpy_adds_into_zeros():
    # the first part is written, not added into fresh zeros, yet a -0 still becomes +0
    # (as 0 + -0 is): on a diagonal output and in a window's gradient
    diagonal = cn.einsum("i->ii", np.array([-0.0, 1.0, -0.0]))
    assert not np.signbit(diagonal).any()
    _, vjp_fn = cn.vjp(lambda a: cn.einsum("(i+k)->ik", a, sizes={"k": 2}), np.ones(3))
    grad = vjp_fn(np.full((2, 2), -0.0))[0]
    assert not np.signbit(grad).any()


@pytest.mark.parametrize("spec, shapes, first", [
    # the outer product writes b innermost in a run of 1 (both operands hold b
    # outermost): the next GEMM takes it as (b, ij), written in a run of 32
    ("bi,bj,ijk->bk", [(128, 32), (128, 32), (32, 32, 16)], "bij"),
    # here the contracted-first order is written in a long run: kept
    ("ib,jb,ijk->bk", [(32, 128), (32, 128), (32, 32, 16)], "ijb"),
])
def test_a_path_intermediate_is_written_as_its_gemm_reads_it_without_a_copy(spec, shapes,
                                                                             first):
    terms, target = spec.split("->")[0].split(","), spec.split("->")[1]
    steps, _ = path.plan_path(tuple(terms), tuple(map(tuple, shapes)), target)
    assert [kept for _, kept in steps] == [first, target]
    x, y, w = _operands(shapes, dtype=np.float32)
    made, names = pair.contract_pair(x, terms[0], y, terms[1], first, any_layout=True)
    assert names == first and made.flags.c_contiguous  # numpy.einsum wrote the order asked
    gemm = pair.plan_pair(terms[2], w.shape, w.strides, names, made.shape, made.strides,
                          target, None, True, (4, 4))
    assert gemm.einsum_eq is None and gemm.perm_a is None and gemm.perm_b is None  # no copy
    assert gemm.result_names == target  # computed in the target's order: no transpose after
    x, y, w = _operands(shapes)
    assert_close(cn.einsum(spec, x, y, w), np.einsum(spec, x, y, w), tol=1e-9, what=spec)


@pytest.mark.parametrize("spec, shapes, first", [
    # opt_einsum's own path scales ced by one d first: 393,216 products, not 64
    ("d,ced,d->ce", [(64,), (96, 64, 64), (64,)], ((2, 0), "d")),
    # the same index set in another order; the pair's product keeps what
    # the rest reads
    ("ij,jk,ji->ik", [(3, 4), (4, 5), (4, 3)], ((2, 0), "ij")),
    # indices nobody else reads are summed in that product
    ("ab,c,ba->c", [(3, 4), (5,), (4, 3)], ((2, 0), "")),
])
def test_terms_of_the_same_indices_are_multiplied_first(spec, shapes, first):
    terms, target = spec.split("->")[0].split(","), spec.split("->")[1]
    steps, _ = path.plan_path(tuple(terms), tuple(map(tuple, shapes)), target)
    assert steps[0][0] == first[0] and set(steps[0][1]) == set(first[1])
    small = [tuple(min(n, 5) for n in shape) for shape in shapes]  # for the exact oracle
    ops = _operands(small)
    out = cn.einsum(spec, *ops)
    assert_close(out, np.einsum(spec, *ops), tol=1e-9, what=spec)
    cotangent = _operands([out.shape], seed=9)[0]
    grads = cn.vjp(lambda *xs: cn.einsum(spec, *xs), *ops)[1](cotangent)
    for got, want in zip(grads, einsum_vjp(spec, ops, cotangent)):
        assert_close(got, want, tol=1e-9, what=spec)


@pytest.mark.parametrize("spec", ["ij,ij,jk->ik", "ij,ji,jk->ik"])
def test_a_product_of_terms_of_the_same_indices_counts_against_the_budget(spec):
    """Broadcast operands hold little memory; their product is a full (3000,
    3000) array, which the plan's budget check must see before allocating."""
    a = np.broadcast_to(np.ones((1, 1)), (3000, 3000))
    with cn.memory_budget(8_000_000):
        with pytest.raises(cn.MemoryBudgetError, match="72,000,000 bytes"):
            cn.einsum(spec, a, a, np.ones((3000, 2)))
