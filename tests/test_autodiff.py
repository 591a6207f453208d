"""Gradients: the exact linear oracle for contractions, loops and finite
differences for windows and max, and the rules of vjp/grad themselves."""
from __future__ import annotations

import collections
import concurrent.futures

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import contractnet as cn
from contractnet import pair
from failed_specs import FAILED_SPECS
from oracles import (assert_close, distinct_values, einsum_vjp, linear_vjp,
                     max_pool2d_vjp_loop, numeric_grad, pattern_einsum, pool2d_loop,
                     reduce_window_loop)
from strategies import (HARD_CASES, LAYOUTS, Case, conv_cases, einsum_cases, relayout,
                        window_cases, window_group)

RNG_SEED = 7


def _rng(seed=RNG_SEED):
    return np.random.default_rng(seed)


def _check_gradients(case: Case, dtype=np.float64, tol=1e-10) -> None:
    ops = case.operands(dtype)
    out, vjp_fn = cn.vjp(lambda *xs: cn.einsum(case.spec, *xs), *ops)
    assert_close(out, np.einsum(case.spec, *ops), tol, what=f"forward {case.spec}")
    dy = case.cotangent(np.shape(out), dtype)
    grads = vjp_fn(dy)
    assert isinstance(grads, tuple) and len(grads) == len(ops)
    for i, (got, want) in enumerate(zip(grads, einsum_vjp(case.spec, ops, dy))):
        assert np.asarray(got).dtype == dtype
        assert_close(got, want, tol, what=f"gradient of operand {i} of {case.spec} {case.shapes}")


# ------------------------------------------------------------- linear oracle
@given(einsum_cases())
def test_gradients_equal_linear_oracle(case):
    _check_gradients(case)


@pytest.mark.slow
@settings(max_examples=2000)
@given(einsum_cases())
def test_gradients_equal_linear_oracle_many(case):
    _check_gradients(case)


@pytest.mark.parametrize("spec, shapes", HARD_CASES, ids=[s for s, _ in HARD_CASES])
def test_gradients_hard_cases(spec, shapes):
    _check_gradients(Case(spec, shapes, RNG_SEED))


@pytest.mark.parametrize("spec, shapes, note", FAILED_SPECS, ids=[s for s, *_ in FAILED_SPECS])
def test_gradients_failed_specs(spec, shapes, note):
    _check_gradients(Case(spec, shapes, RNG_SEED))


@pytest.mark.parametrize("spec, shapes", [
    ("bnmd,nmdk->bk", ((2, 3, 3, 4), (3, 3, 4, 5))),
    ("bnmd,nr,mr,dr,kr->bk", ((2, 3, 3, 4), (3, 2), (3, 2), (4, 2), (5, 2))),
    ("...ij,...jk->...ik", ((2, 1, 3, 4), (5, 4, 2))),
])
def test_float32_gradients(spec, shapes):
    _check_gradients(Case(spec, shapes, RNG_SEED), np.float32, tol=1e-4)


@given(einsum_cases(), st.lists(st.sampled_from(LAYOUTS), min_size=5, max_size=5))
def test_gradients_with_non_contiguous_operands_and_cotangent(case, layouts):
    ops = [relayout(x, layout) for x, layout in zip(case.operands(), layouts)]
    out, vjp_fn = cn.vjp(lambda *xs: cn.einsum(case.spec, *xs), *ops)
    dy = relayout(case.cotangent(np.shape(out)), layouts[-1])
    for i, (got, want) in enumerate(zip(vjp_fn(dy), einsum_vjp(case.spec, ops, dy))):
        assert_close(got, want, what=f"gradient {i} of {case.spec} {case.shapes} {layouts}")


def test_mixed_precision_gradient_has_the_primal_dtype():
    x32, w64 = np.ones((2, 3), dtype=np.float32), np.ones((3, 4))
    out, vjp_fn = cn.vjp(lambda a, b: cn.einsum("ij,jk->ik", a, b), x32, w64)
    gx, gw = vjp_fn(np.ones_like(out))
    assert gx.dtype == np.float32, f"float32 primal got a {gx.dtype} gradient"
    assert gw.dtype == np.float64


def test_same_array_passed_twice_gets_both_contributions():
    a = _rng().standard_normal((3, 3))
    out, vjp_fn = cn.vjp(lambda x: cn.einsum("ij,jk->ik", x, x), a)
    dy = _rng(1).standard_normal(out.shape)
    (got,) = vjp_fn(dy)
    # product rule: the linear oracle in each position, the other held fixed
    want = sum(einsum_vjp("ij,jk->ik", [a, a], dy))
    assert_close(got, want)


@pytest.mark.parametrize("spec, view", [
    ("bqhd,bkhd->bhqk", lambda a: a.transpose(0, 1, 3, 2)),  # attention's q and k, one memory
    ("ij,jk->ik", lambda a: a.T), ("ij,jk->ik", lambda a: a[::-1]),
    ("bij,bjk->bik", lambda a: a.transpose(0, 2, 1)),
])
def test_two_views_of_one_memory_get_their_own_gradients(spec, view):
    # operands of one shape on one memory in different layouts: a copy made of
    # one in the forward pass must not be served for the other in the backward
    a = _rng().standard_normal((3, 3, 3, 3) if spec.startswith("bq") else
                               (2, 3, 3) if spec.startswith("bij") else (3, 3))
    ops = [a, view(a)]
    out, vjp_fn = cn.vjp(lambda x, y: cn.einsum(spec, x, y), *ops)
    assert_close(out, np.einsum(spec, *ops))
    dy = _rng(1).standard_normal(out.shape)
    for i, (got, want) in enumerate(zip(vjp_fn(dy), einsum_vjp(spec, ops, dy))):
        assert_close(got, want, what=f"gradient {i}")


def test_same_array_three_times():
    a = _rng().standard_normal((4,))
    g = cn.grad(lambda x: cn.einsum("i,i,i->", x, x, x))(a)
    assert_close(g, 3 * a * a)


def test_value_used_twice_accumulates():
    x = _rng().standard_normal((3,))
    g = cn.grad(lambda v: cn.sum(v * v + v))(x)
    assert_close(g, 2 * x + 1)
    g = cn.grad(lambda v: cn.einsum("i->", v) + cn.einsum("i,i->", v, v))(x)
    assert_close(g, 1 + 2 * x)


def test_intermediate_reached_by_paths_of_different_lengths():
    # h feeds the output directly and through two more nodes: its gradient is
    # complete only once both paths are done, whatever order they were built in
    x = _rng().standard_normal((4,))

    def f(v):
        h = cn.tanh(v)
        return cn.sum(h + cn.exp(h * 2.0))
    g = cn.grad(f)(x)
    h = np.tanh(x)
    assert_close(g, (1 + 2 * np.exp(2 * h)) * (1 - h * h))


def test_gradient_is_laid_out_like_its_primal_where_that_is_free():
    x = _rng().standard_normal((6, 4))
    w = np.asfortranarray(_rng(1).standard_normal((4, 3)))
    dy = _rng(2).standard_normal((6, 3))
    _, vjp_fn = cn.vjp(lambda a, b: cn.einsum("bi,ik->bk", a, b), x, w)
    gx, gw = vjp_fn(dy)
    assert gw.flags.f_contiguous and gx.flags.c_contiguous
    assert_close(gw, x.T @ dy)
    assert_close(gx, dy @ w.T)


def test_c_ordered_primal_gets_a_c_ordered_gradient_from_a_tiny_product():
    # once failed: the elementwise-like path forced its own axis order on the result
    x = np.broadcast_to(np.arange(4.0)[None], (4, 4))
    y = np.ones((4, 4))
    assert cn.einsum("ab,ab->ab", x, y).flags.c_contiguous
    _, vjp_fn = cn.vjp(lambda a, b: cn.einsum("ab,ab->ab", a, b), x, y)
    gx, gy = vjp_fn(np.ones((4, 4)))
    assert gy.flags.c_contiguous
    assert_close(gy, x)


def test_complex64_primal_keeps_its_dtype_next_to_float64():
    x = (_rng().standard_normal((3, 4)) + 1j).astype(np.complex64)
    w = _rng(1).standard_normal((4, 2))
    out, vjp_fn = cn.vjp(lambda a, b: cn.einsum("ij,jk->ik", a, b), x, w)
    gx, gw = vjp_fn(np.ones_like(out))
    assert (gx.dtype, gw.dtype) == (np.complex64, np.float64)


def test_cp_backward_copies_no_reconstructed_weight(monkeypatch):
    # the pairwise path rebuilds the full (N, M, D, K) weight from the factors;
    # its gradient is produced in the weight's own layout, so that the
    # transposed contractions reading it next take it as it is
    shapes = [(4, 7, 7, 64), (7, 32), (7, 32), (64, 32), (10, 32)]  # the acceptance CP head
    x, *factors = (_rng(i).standard_normal(s, dtype=np.float32) for i, s in enumerate(shapes))
    dy = _rng(9).standard_normal((4, 10), dtype=np.float32)
    out, vjp_fn = cn.vjp(lambda *o: cn.einsum("bnmd,nr,mr,dr,kr->bk", *o), x, *factors)
    copied, original = [], pair._gemm_operand

    def spy(array, perm, shape, memo):
        matrix = original(array, perm, shape, memo)
        served = memo is not None and any(m is matrix for _, m in memo.copies.values())
        if not served and not np.shares_memory(matrix, array):
            copied.append(array.shape)
        return matrix
    monkeypatch.setattr(pair, "_gemm_operand", spy)
    grads = vjp_fn(dy)
    assert (7, 7, 64, 10) not in copied, copied
    want = np.einsum("bk,nr,mr,dr,kr->bnmd", dy, *factors, dtype=np.float64)
    assert_close(grads[0], want, tol=1e-5 * np.abs(want).max())


def test_chain_of_contractions():
    x, w1, w2 = (_rng(i).standard_normal(s) for i, s in enumerate([(2, 3), (3, 4), (4, 5)]))
    dy = _rng(9).standard_normal((2, 5))
    out, vjp_fn = cn.vjp(lambda a, b, c: cn.einsum("bj,jk->bk", cn.einsum("bi,ij->bj", a, b), c),
                         x, w1, w2)
    grads = vjp_fn(dy)
    full = lambda a, b, c: a @ b @ c  # noqa: E731  (linear in each argument)
    for i, g in enumerate(grads):
        assert_close(g, linear_vjp(full, [x, w1, w2], i, dy), what=f"operand {i}")


# ------------------------------------------------------------- windows
def _check_window_gradients(spec, ops, sizes=None):
    out, vjp_fn = cn.vjp(lambda *xs: cn.einsum(spec, *xs, sizes=sizes), *ops)
    oracle = lambda *xs: pattern_einsum(spec, *xs, sizes=sizes)  # noqa: E731
    assert_close(out, oracle(*ops), what=f"forward {spec}")
    dy = _rng(3).standard_normal(out.shape)
    for i, g in enumerate(vjp_fn(dy)):
        assert_close(g, linear_vjp(oracle, ops, i, dy), what=f"gradient {i} of {spec}")


@pytest.mark.parametrize("spec, shapes, sizes", [
    ("b(h+u)(w+v)c,uvck->bhwk", ((2, 5, 4, 2), (3, 2, 2, 2)), None),
    ("b(2h+u)(2w+v)c,uvck->bhwk", ((1, 6, 7, 2), (3, 2, 2, 2)), None),  # uncovered tail
    ("b(h+2u)(w+2v)c,uvck->bhwk", ((1, 6, 5, 2), (2, 2, 2, 2)), None),
    ("b(3h+2u)c,uck->bhk", ((2, 9, 2), (2, 2, 3)), None),
    ("b(2h+u)(2w+v)c->bhwc", ((2, 5, 5, 2),), {"u": 2, "v": 2}),
    ("bhwuvc->b(h+u)(w+v)c", ((1, 2, 3, 2, 2, 2),), None),
    ("bhwuvc->b(2h+u)(w+2v)c", ((1, 2, 3, 2, 2, 1),), None),
    ("bhwk,uvck->b(2h+u)(w+v)c", ((1, 2, 2, 3), (2, 2, 2, 3)), None),
    ("(h+u),u->h", ((6,), (3,)), None),
])
def test_window_gradients_equal_linear_oracle(spec, shapes, sizes):
    rng = _rng()
    _check_window_gradients(spec, [rng.standard_normal(s) for s in shapes], sizes)


def _check_windowed_gradients(case):
    _check_window_gradients(case.spec, case.operands(), case.size_map)


@given(window_cases())
def test_windowed_gradients_equal_linear_oracle(case):
    _check_windowed_gradients(case)


@pytest.mark.slow
@settings(max_examples=1500)
@given(window_cases())
def test_windowed_gradients_equal_linear_oracle_many(case):
    _check_windowed_gradients(case)


@pytest.mark.parametrize("reduce", ["max", "mean"])
@given(case=window_cases(max_operands=1, output_windows=False))
def test_windowed_max_and_mean_gradients_match_finite_differences(reduce, case):
    x = distinct_values(_rng(case.seed), case.shapes[0])
    sizes = case.size_map
    out, vjp_fn = cn.vjp(lambda a: cn.einsum(case.spec, a, sizes=sizes, reduce=reduce), x)
    dy = _rng(1).standard_normal(np.shape(out))
    numeric = numeric_grad(lambda a: np.sum(dy * reduce_window_loop(case.spec, a, sizes, reduce)),
                           x)
    assert_close(vjp_fn(dy)[0], numeric, tol=1e-6,
                 what=f"{reduce} {case.spec} {case.shapes} sizes={sizes}")


@given(conv_cases())
def test_conv_gradients_property(case):
    rng = _rng(case["seed"])
    s, d = case["stride"], case["dilation"]
    spec = f"b{window_group(s, 'h', d, 'u')}{window_group(s, 'w', d, 'v')}c,uvck->bhwk"
    _check_window_gradients(spec, [rng.standard_normal(case["x"]), rng.standard_normal(case["w"])])


@pytest.mark.parametrize("size, stride, shape", [
    (2, 2, (2, 4, 4, 2)), (2, 2, (1, 5, 5, 2)), (3, 2, (1, 7, 6, 1)),
    (2, 1, (1, 4, 3, 2)),  # overlapping windows: one input feeds several maxima
])
def test_max_pool_gradient(size, stride, shape):
    x = distinct_values(_rng(), shape)
    spec = f"b{window_group(stride, 'h', 1, 'u')}{window_group(stride, 'w', 1, 'v')}c->bhwc"
    out, vjp_fn = cn.vjp(lambda a: cn.einsum(spec, a, sizes={"u": size, "v": size},
                                             reduce="max"), x)
    assert_close(out, pool2d_loop(x, size, stride, "max"))
    dy = _rng(1).standard_normal(out.shape)
    (got,) = vjp_fn(dy)
    want = max_pool2d_vjp_loop(x, size, stride, dy)
    assert_close(got, want)
    numeric = numeric_grad(lambda a: np.sum(dy * pool2d_loop(a, size, stride, "max")), x)
    assert_close(got, numeric, tol=1e-6, what="finite differences")


def test_max_pool_passes_check_grads():
    x = distinct_values(_rng(), (1, 4, 4, 2))
    cn.check_grads(lambda a: cn.einsum("b(2h+u)(2w+v)c->bhwc", a, sizes={"u": 2, "v": 2},
                                       reduce="max"), x)


@pytest.mark.parametrize("size, stride", [(2, 2), (3, 2), (2, 1)])
def test_mean_pool_gradient(size, stride):
    x = _rng().standard_normal((2, 5, 6, 2))
    spec = f"b{window_group(stride, 'h', 1, 'u')}{window_group(stride, 'w', 1, 'v')}c->bhwc"
    out, vjp_fn = cn.vjp(lambda a: cn.einsum(spec, a, sizes={"u": size, "v": size},
                                             reduce="mean"), x)
    dy = _rng(1).standard_normal(out.shape)
    oracle = lambda a: pool2d_loop(a, size, stride, "mean")  # noqa: E731
    assert_close(vjp_fn(dy)[0], linear_vjp(oracle, [x], 0, dy))


def test_mean_reduce_gradient_with_two_operands():
    a, b = _rng().standard_normal((3, 4)), _rng(1).standard_normal((4, 2))
    out, vjp_fn = cn.vjp(lambda x, y: cn.einsum("ij,jk->ik", x, y, reduce="mean"), a, b)
    dy = _rng(2).standard_normal(out.shape)
    oracle = lambda x, y: x @ y / 4  # noqa: E731
    for i, g in enumerate(vjp_fn(dy)):
        assert_close(g, linear_vjp(oracle, [a, b], i, dy))


@pytest.mark.parametrize("spec, shapes, count", [
    ("ij,jk->ik", [(3, 40), (40, 2)], 40),   # each cotangent smaller than its gradient
    ("ik,j->ij", [(3, 5), (4,)], 5),         # the second's larger: its gradient is scaled
    ("b(2h+u)c->bhc", [(2, 6, 3)], 2),       # a pool's cotangent, a half of its gradient
])
@pytest.mark.parametrize("dtypes", [(np.float64, np.float64), (np.float32, np.float64)],
                         ids=["float64", "mixed"])
def test_a_means_gradient_is_the_sums_scaled(spec, shapes, count, dtypes):
    # scaled before the transposed contraction where the cotangent is the smaller
    # and has the gradient's dtype, after it otherwise: the same gradient
    sizes = {"u": 2} if "u" in spec else None
    ops = [_rng(i).standard_normal(s).astype(d) for i, (s, d) in enumerate(zip(shapes, dtypes))]
    out, vjp_fn = cn.vjp(lambda *xs: cn.einsum(spec, *xs, sizes=sizes, reduce="mean"), *ops)
    dy = _rng(9).standard_normal(out.shape).astype(out.dtype)
    tol = 1e-10 if out.dtype == np.float64 and ops[0].dtype == np.float64 else 1e-5
    oracle = lambda *xs: pattern_einsum(spec, *xs, sizes=sizes) / count  # noqa: E731
    for i, g in enumerate(vjp_fn(dy)):
        assert g.dtype == ops[i].dtype
        assert_close(g, linear_vjp(oracle, ops, i, dy), tol=tol)


def test_plain_max_reduce_gradient():
    x = distinct_values(_rng(), (3, 4))
    out, vjp_fn = cn.vjp(lambda a: cn.einsum("ij->i", a, reduce="max"), x)
    dy = _rng(1).standard_normal(out.shape)
    want = np.zeros_like(x)
    want[np.arange(3), x.argmax(axis=1)] = dy
    assert_close(vjp_fn(dy)[0], want)


# ------------------------------------------------------------- vjp / grad API
def test_grad_and_value_and_grad_argnums():
    x, w = _rng().standard_normal((2, 3)), _rng(1).standard_normal((3,))
    fn = lambda a, b: cn.sum(cn.einsum("ij,j->i", a, b) ** 2)  # noqa: E731
    value, gx = cn.value_and_grad(fn)(x, w)
    assert_close(value, np.sum((x @ w) ** 2))
    assert_close(gx, 2 * np.outer(x @ w, w))
    gw = cn.grad(fn, argnums=1)(x, w)
    assert_close(gw, 2 * x.T @ (x @ w))
    both = cn.grad(fn, argnums=(0, 1))(x, w)
    assert isinstance(both, tuple) and len(both) == 2
    assert_close(both[0], gx)
    assert_close(both[1], gw)
    value, backwards = cn.value_and_grad(fn, argnums=(1, 0))(x, w)  # in the order asked
    assert [g.shape for g in backwards] == [(3,), (2, 3)]
    assert_close(backwards[0], gw)
    assert_close(backwards[1], gx)


def test_grad_needs_a_scalar_output():
    with pytest.raises(ValueError, match="one output value"):
        cn.grad(lambda a: cn.einsum("ij->i", a))(np.ones((2, 3)))


def test_cotangent_shape_is_checked():
    _, vjp_fn = cn.vjp(lambda a: cn.einsum("ij->i", a), np.ones((2, 3)))
    with pytest.raises(ValueError, match=r"cotangent has shape \(3,\).*\(2,\)"):
        vjp_fn(np.ones(3))


def test_argnums_out_of_range():
    with pytest.raises(ValueError, match=r"argnums 2 is out of range for 1 argument"):
        cn.value_and_grad(lambda x: cn.sum(x), argnums=2)(np.ones(2))


def test_vjp_fn_can_be_reused_and_mutates_nothing():
    ops = [_rng(i).standard_normal(s) for i, s in enumerate([(2, 3), (3, 4), (4, 2)])]
    saved = [x.copy() for x in ops]
    fn = lambda x, y, z: cn.tanh(cn.einsum("ij,jk,kl->il", x, y, z)) * 2 + x @ y @ z  # noqa
    out, vjp_fn = cn.vjp(fn, *ops)
    dy = _rng(5).standard_normal(out.shape)
    dy_saved = dy.copy()
    first, second = vjp_fn(dy), vjp_fn(dy)
    for g1, g2 in zip(first, second):
        np.testing.assert_array_equal(g1, g2)
    np.testing.assert_array_equal(dy, dy_saved)
    for x, x0 in zip(ops, saved):
        np.testing.assert_array_equal(x, x0)


def test_mean_reduce_gradient_with_three_operands():
    ops = [_rng(i).standard_normal(s) for i, s in enumerate([(2, 3), (3, 4), (4, 2)])]
    out, vjp_fn = cn.vjp(lambda *xs: cn.einsum("ij,jk,kl->il", *xs, reduce="mean"), *ops)
    oracle = lambda x, y, z: x @ y @ z / 12  # noqa: E731
    assert_close(out, oracle(*ops))
    dy = _rng(9).standard_normal(out.shape)
    for i, g in enumerate(vjp_fn(dy)):
        assert_close(g, linear_vjp(oracle, ops, i, dy), what=f"operand {i}")


def test_unused_primal_gets_zero_gradient():
    a, b = np.ones((2,)), np.ones((3,))
    _, vjp_fn = cn.vjp(lambda x, y: cn.einsum("i->", x), a, b)
    ga, gb = vjp_fn(np.float64(1.0))
    assert_close(ga, np.ones(2))
    assert_close(gb, np.zeros(3))
    _, vjp_fn = cn.vjp(lambda x: np.ones(2), a)  # output does not depend on the input
    assert_close(vjp_fn(np.ones(2))[0], np.zeros(2))


@pytest.mark.parametrize("dtype", [np.int64, np.int32, np.bool_])
def test_integer_primals_are_refused(dtype):
    x = np.ones(3, dtype=dtype)
    fn = lambda a: cn.einsum("i->", a)  # noqa: E731
    for name, call in (("primal 0", lambda: cn.vjp(fn, x)),
                       ("argument 0", lambda: cn.grad(fn)(x)),
                       ("argument 0", lambda: cn.value_and_grad(fn)(x)),
                       ("primal 0", lambda: cn.check_grads(fn, x))):
        with pytest.raises(cn.DtypeError, match=rf"{name} has dtype {np.dtype(dtype)}.*floating"):
            call()


@pytest.mark.parametrize("call, name", [
    (lambda f: cn.grad(f, argnums=1)(np.ones(3), np.arange(3)), r"argument 1 has"),
    (lambda f: cn.grad(f, argnums=(0, -1))(np.ones(3), np.arange(3)), r"argument 1 has"),
    (lambda f: cn.vjp(f, np.ones(3), np.arange(3)), r"primal 1 has"),
    (lambda f: cn.check_grads(f, np.ones(3), np.arange(3)), r"primal 1 has"),
], ids=["grad", "grad-negative", "vjp", "check_grads"])
def test_an_integer_primal_is_named_by_its_own_position(call, name):
    with pytest.raises(cn.DtypeError, match=name):
        call(lambda a, b: cn.sum(a * b))


def test_an_integer_leaf_is_named_by_its_keys():
    params = {"w": np.ones(3), "b": [np.ones(2), np.arange(2)]}
    loss = lambda p: cn.sum(p["w"]) + cn.sum(p["b"][1])  # noqa: E731
    with pytest.raises(cn.DtypeError, match=r"argument 0\['b'\]\[1\] has dtype int64"):
        cn.grad(loss)(params)
    with pytest.raises(cn.DtypeError, match=r"primal 0\['b'\]\[1\] has dtype int64"):
        cn.vjp(loss, params)


def test_an_integer_primal_inside_the_function_is_not_renamed():
    """grad names its own arguments only: a vjp inside the function keeps its message."""
    inner = lambda x: cn.sum(x) + cn.sum(cn.vjp(cn.sum, np.arange(2))[0])  # noqa: E731
    with pytest.raises(cn.DtypeError, match=r"^primal 0 has dtype int64"):
        cn.grad(inner)(np.ones(2))


def test_vjp_accepts_nested_primals():
    params = {"w": _rng().standard_normal((3, 2)), "b": _rng(1).standard_normal((2,))}
    x = _rng(2).standard_normal((4, 3))
    out, vjp_fn = cn.vjp(lambda p: cn.einsum("ij,jk->ik", x, p["w"]) + p["b"], params)
    dy = _rng(3).standard_normal(out.shape)
    (g,) = vjp_fn(dy)
    assert set(g) == {"w", "b"}
    assert_close(g["w"], x.T @ dy)
    assert_close(g["b"], dy.sum(axis=0))


def test_a_namedtuple_primal_gets_a_namedtuple_of_gradients():
    Params = collections.namedtuple("Params", "w b")
    p = Params(_rng().standard_normal(3), _rng(1).standard_normal(3))
    g = cn.grad(lambda p: cn.sum(p.w * p.b))(p)
    assert type(g) is Params
    assert_close(g.w, p.b)
    assert_close(g.b, p.w)
    cn.check_grads(lambda p: cn.sum(p.w * cn.exp(p.b)), p)


def test_gradients_do_not_alias_the_cotangent_or_each_other():
    a, b = _rng().standard_normal((3, 3)), _rng(1).standard_normal((3, 3))
    dy = _rng(2).standard_normal((3, 3))
    for fn in (lambda x, y: x + y, lambda x, y: cn.einsum("ij->ji", x) + y):
        _, vjp_fn = cn.vjp(fn, a, b)
        ga, gb = vjp_fn(dy)
        assert not np.shares_memory(ga, dy)
        assert not np.shares_memory(gb, dy)
        assert not np.shares_memory(ga, gb)


def test_float32_gradients_through_ops_and_einsum():
    x = _rng().standard_normal((2, 3)).astype(np.float32)
    w = _rng(1).standard_normal((3, 4)).astype(np.float32)
    fn = lambda a, b: cn.mean(cn.tanh(cn.einsum("ij,jk->ik", a, b)) ** 2)  # noqa: E731
    value, (gx, gw) = cn.value_and_grad(fn, argnums=(0, 1))(x, w)
    assert np.asarray(value).dtype == np.float32
    assert gx.dtype == np.float32 and gw.dtype == np.float32
    x64, w64 = x.astype(np.float64), w.astype(np.float64)
    _, (gx64, gw64) = cn.value_and_grad(fn, argnums=(0, 1))(x64, w64)
    np.testing.assert_allclose(gx, gx64, rtol=1e-4, atol=1e-6)
    np.testing.assert_allclose(gw, gw64, rtol=1e-4, atol=1e-6)


def test_a_complex_cotangent_for_a_real_output_is_refused():
    out, vjp_fn = cn.vjp(lambda a: a * 2.0, np.ones(3))
    with pytest.raises(ValueError, match="complex128 but the output is real"):
        vjp_fn(np.full(3, 1j))
    np.testing.assert_array_equal(vjp_fn(np.ones(3, np.float32))[0], np.full(3, 2.0))


def test_vjp_output_is_read_only_where_a_rule_reads_it_again():
    x = np.array([0.0, 1.0])
    for fn in (cn.exp, lambda a: cn.reshape(cn.exp(a), (2, 1))):  # its answer, or a view of it
        out, vjp_fn = cn.vjp(fn, x)
        with pytest.raises(ValueError, match="read-only"):
            out[...] = 0
        np.testing.assert_allclose(vjp_fn(np.ones(out.shape))[0], np.exp(x))
    out, _ = cn.vjp(lambda a: cn.einsum("i,i->i", a, a), x)  # a fresh array no rule reads
    out[...] = 0
    for spec, shape, sizes in (("ij->i", (4, 4), None), ("ij->j", (4, 4), None),
                               ("b(2h+u)c->bhc", (4, 4, 1), {"u": 2})):
        out, _ = cn.vjp(lambda a: cn.einsum(spec, a, sizes=sizes), np.ones(shape))
        out += 1  # a sum's result owns its memory too
    same, _ = cn.vjp(lambda a: a, x)  # the primal itself, as given
    assert same is x and x.flags.writeable


def _rule_cases():
    """One call of every primitive with a vjp rule: ``(primitive, args, kwargs)``."""
    from contractnet import ops
    from contractnet.api import contract
    from contractnet.bind import bind, bind_text
    from contractnet.engine import make_plan
    from contractnet.spec import parse
    a, b = np.array([[0.5, 2.0], [1.5, 0.3]]), np.array([[1.0, 0.2], [0.7, 3.0]])
    plan = make_plan(bind_text("ij,jk->ik", (a.shape, b.shape)), "sum")
    # a windowed max routes its gradient through the maxima it found
    max_plan = make_plan(bind(parse("b(h+u)->bh"), [a.shape], {"u": 2}), "max")
    mean_plan = make_plan(bind_text("ij->j", (a.shape,)), "mean")
    read_plan = make_plan(bind(parse("b(h+u)->bhu"), [a.shape], {"u": 2}), "sum")
    binary = [ops.add, ops.subtract, ops.multiply, ops.divide, ops.maximum, ops.minimum,
              ops.power]
    unary = [ops.negative, ops.exp, ops.log, ops.tanh, ops.sigmoid, ops.relu, ops.absolute,
             ops.sqrt, ops.conj, ops.real, ops.imag, ops.sum, ops.max, ops.min, ops.logsumexp,
             ops.transpose]
    return ([(contract, (plan, None, a, b), {}), (contract, (max_plan, None, a), {}),
             (contract, (mean_plan, None, a), {}), (contract, (read_plan, None, a), {})]
            + [(p, (a, b), {}) for p in binary] + [(p, (a,), {}) for p in unary]
            + [(ops._where, (a > 1, a, b), {}), (ops.reshape, (a, (4,)), {}),
               (ops.pad, (a, 1), {}), (ops.getitem, (a, (slice(None), 0)), {}),
               (ops.astype, (a, np.float32), {}), (ops._concatenate, (0, a, b), {})])


def _differs(rule, n, g, ans, args, kwargs, other) -> bool:
    """Whether ``rule`` gives another gradient (or fails) when told ``other``
    was the answer."""
    want = rule(n, g, ans, *args, **kwargs)
    try:
        got = rule(n, g, other, *args, **kwargs)
    except Exception:
        return True
    return not np.allclose(want, got, equal_nan=True)


def test_reads_answer_names_every_rule_that_reads_its_answer():
    from contractnet import autodiff
    from contractnet.api import contract
    from contractnet.trace import Node
    cases = _rule_cases()
    assert {p for p, _, _ in cases} == set(autodiff.VJP_RULES)
    rng = np.random.default_rng(0)
    for primitive, args, kwargs in cases:
        ans = primitive.fn(*args, **kwargs)
        # vjp protects an output that is a view; one that is an argument itself it could not tell
        assert not any(ans is x for x in args), primitive.name
        g = np.ones(np.shape(ans))
        first = 2 if primitive is contract else 0
        arrays = [n for n in range(first, len(args)) if isinstance(args[n], np.ndarray)
                  and args[n].dtype.kind == "f"]
        shape = np.shape(ans)
        # wrong answers of either sign, and nan: a rule reading only the answer's sign
        # or comparing with it is found out by one of them
        others = [np.full(shape, 7.0), -np.asarray(ans), np.full(shape, np.nan),
                  rng.standard_normal(shape)]
        rule = autodiff.VJP_RULES[primitive]
        with np.errstate(all="ignore"):  # a wrong answer may divide by zero
            reads = any(_differs(rule, n, g, ans, args, kwargs, other)
                        for n in arrays for other in others)
        node = Node(primitive, args, kwargs, [])
        assert autodiff.reads_answer(node) == reads, primitive.name


def test_a_none_leaf_among_the_primals_is_named_as_none():
    with pytest.raises(cn.DtypeError, match=r"argument 0\['n'\] is None"):
        cn.grad(lambda p: cn.sum(p["w"]))({"w": np.ones(2), "n": None})


@pytest.mark.parametrize("result", [None, np.array([None, 1]), "text"])
def test_vjp_refuses_a_function_returning_no_numeric_array(result):
    with pytest.raises(ValueError, match="the function must return"):
        cn.vjp(lambda a: result, np.ones(2))


def test_vjp_refuses_a_traced_result_that_is_not_numeric():
    with pytest.raises(ValueError, match="must return a numeric array, got dtype <U32"):
        cn.vjp(lambda a: cn.astype(a, str), np.ones(2))


@pytest.mark.parametrize("cotangent, named", [
    (np.array([None] * 2), "has dtype object"), (np.array(["a", "b"]), "has dtype <U1"),
    (None, "is None"), (["a"], "has dtype <U1")])
def test_vjp_fn_refuses_a_non_numeric_cotangent(cotangent, named):
    _, vjp_fn = cn.vjp(lambda a: a * 2.0, np.ones(2))
    with pytest.raises(ValueError, match=rf"the cotangent {named}; it must be a numeric "
                                         rf"array shaped like the output \(\(2,\), float64\)"):
        vjp_fn(cotangent)


@pytest.mark.filterwarnings("ignore:Casting complex values to real")  # the cast's, as numpy's
@pytest.mark.parametrize("to_real", [cn.abs, lambda z: cn.astype(z, np.float64)],
                         ids=["abs", "astype"])
def test_a_real_value_made_from_a_complex_one_gets_a_real_cotangent(to_real):
    """r = to_real(z) is real: of r * 1j's complex cotangent only the real part
    reaches r, here 0; before the projection the rule behind r received it whole."""
    z = np.array([0.6 + 0.8j, -1.0 + 2.0j])
    _, vjp_fn = cn.vjp(lambda z: to_real(z) * 1j, z)
    np.testing.assert_array_equal(vjp_fn(np.ones(2, complex))[0], 0)
    cn.check_grads(lambda z: to_real(z) * (1 + 2j) + z, z)


def test_the_phase_of_complex_numbers_passes_the_gradient_check():
    z = np.array([0.6 + 0.8j, -1.0 + 2.0j, 0.3 - 0.1j])
    cn.check_grads(lambda z: z / cn.abs(z), z)
    cn.check_grads(lambda z: cn.sum(cn.abs(z) * z), z)


def test_grad_refuses_a_complex_output():
    z = np.array([1.0, 2.0])
    with pytest.raises(ValueError, match="real-valued"):
        cn.grad(lambda a: cn.einsum("i,i->", a, np.array([1j, 2.0])))(z)


# ------------------------------------ edge cases: nested differentiation, argnums, dtypes
def test_nested_differentiation_is_refused_not_silently_zero():
    x = np.array([1.0, 2.0, 3.0])
    inner = cn.grad(lambda y: cn.sum(y * y * y))
    with pytest.raises(ValueError, match="higher-order"):
        cn.grad(lambda z: cn.sum(inner(z)))(x)


def test_nested_differentiation_through_a_closure_is_refused():
    # the inner grad is taken in y, but its function reads the outer traced x:
    # every path through the inner gradient would be lost
    x = np.array([1.0, 2.0, 3.0])

    def outer(x):
        g = cn.grad(lambda y: cn.sum(x * x * y))(np.ones(3))
        return cn.sum(x * g)
    with pytest.raises(ValueError, match="enclosing vjp/grad.*higher-order"):
        cn.grad(outer)(x)
    made_by_hand = cn.Traced(np.ones(3))
    with pytest.raises(ValueError, match="cn.Traced made by hand"):
        cn.grad(lambda y: cn.sum(y * made_by_hand))(x)


def test_a_value_left_over_from_an_ended_trace_is_refused_by_name():
    leftover = []
    cn.grad(lambda x: (leftover.append(x), cn.sum(x))[1])(np.ones(3))
    with pytest.raises(ValueError, match="left over from a trace that has ended"):
        cn.grad(lambda y: cn.sum(y * leftover[0]))(np.ones(3))
    np.testing.assert_array_equal(cn.grad(lambda y: cn.sum(y * leftover[0].value))(np.ones(3)),
                                  np.ones(3))


def test_a_nested_vjps_output_read_from_the_outer_trace_is_refused_not_a_constant():
    # only the inner output is used: returned as a plain array it would drop
    # the outer trace and give sum(a * a) the gradient a instead of 2a
    x = np.array([1.0, 2.0])
    for inner in (lambda a: (lambda b: a * b), lambda a: (lambda b: a)):
        def outer(a, inner=inner):
            inner_out, _ = cn.vjp(inner(a), np.ones(2))
            return cn.sum(a * inner_out)
        with pytest.raises(ValueError, match="enclosing vjp/grad"):
            cn.grad(outer)(x)

    def in_a_thread(a):  # nested through a worker thread: the same refusal
        with concurrent.futures.ThreadPoolExecutor(1) as pool:
            inner_out = pool.submit(lambda: cn.vjp(lambda b: a * b, np.ones(2))[0]).result()
        return cn.sum(a * inner_out)
    with pytest.raises(ValueError, match="enclosing vjp/grad"):
        cn.grad(in_a_thread)(x)

    def independent(a):  # a nested vjp that reads none of the outer values is fine
        inner_out, inner_vjp = cn.vjp(lambda b: b * b, np.array([3.0, 4.0]))
        return cn.sum(a * inner_out) + cn.sum(a * inner_vjp(np.ones(2))[0])
    np.testing.assert_array_equal(cn.grad(independent)(x), [15.0, 24.0])


def test_a_traced_cotangent_inside_a_differentiated_function_is_refused_not_cut():
    # its plain value would make the pullback's result a constant of the outer
    # trace: the gradient along it would be silently dropped (0, not 2x)
    x = np.array([1.0, 2.0, 3.0])

    def pulled_inside(c):
        _, vjp_fn = cn.vjp(lambda y: y * y, x)
        return cn.sum(vjp_fn(c)[0])
    _, twice = cn.vjp(lambda y: y * 2.0, x)
    for fn in (pulled_inside, lambda c: cn.sum(twice(c)[0] * c)):
        with pytest.raises(ValueError, match="the cotangent is a traced value"):
            cn.grad(fn)(np.ones(3))
    # outside any trace a hand-made Traced is its value, as before
    np.testing.assert_array_equal(twice(cn.Traced(np.ones(3)))[0], [2.0, 2.0, 2.0])
    # inside, its plain value is a constant as asked
    np.testing.assert_array_equal(
        cn.grad(lambda c: cn.sum(twice(c.value)[0] * c))(np.ones(3)), [2.0, 2.0, 2.0])


def test_a_value_of_a_finished_trace_is_a_constant_cotangent_whatever_other_threads_trace():
    import threading
    kept = []
    _, triple = cn.vjp(lambda x: (kept.append(x * 2.0), x * 3.0)[1], np.arange(3.0))
    tracing, done = threading.Event(), threading.Event()

    def trace_meanwhile(x):
        tracing.set()
        done.wait(10)
        return cn.sum(x)
    other = threading.Thread(target=lambda: cn.vjp(trace_meanwhile, np.ones(2)))
    other.start()
    try:
        tracing.wait(10)  # another thread's function is running under vjp
        np.testing.assert_array_equal(triple(kept[0])[0], [0.0, 6.0, 12.0])
    finally:
        done.set()
        other.join()
    np.testing.assert_array_equal(triple(kept[0])[0], [0.0, 6.0, 12.0])


@pytest.mark.parametrize("reduce", [cn.max, cn.min])
@pytest.mark.parametrize("dtype", [np.int64, np.int8, np.uint16, bool])
def test_an_integer_max_or_min_passes_a_zero_gradient_like_every_integer_step(reduce, dtype):
    x = np.array([[1.5, 2.5, 2.7], [0.2, 0.9, 0.1]])
    for axis in (None, 1):
        grad = cn.grad(lambda a: cn.sum(cn.astype(reduce(cn.astype(a, dtype), axis=axis),
                                                  np.float64)))(x)
        assert grad.dtype == np.float64
        np.testing.assert_array_equal(grad, np.zeros_like(x))


def test_traced_equality_compares_values():
    x = np.array([0.0, 1.0, 2.0])
    value, grad = cn.value_and_grad(lambda x: cn.sum(cn.where(x == 1, 10 * x, x)))(x)
    assert value == 12.0
    np.testing.assert_array_equal(grad, [1.0, 10.0, 1.0])
    value, grad = cn.value_and_grad(lambda x: cn.sum(cn.where(x != 1, x, 0 * x)))(x)
    np.testing.assert_array_equal(grad, [1.0, 0.0, 1.0])


def test_transpose_with_negative_axes_differentiates():
    x = np.arange(24.0).reshape(2, 3, 4)
    out, vjp_fn = cn.vjp(lambda x: cn.transpose(x, (-1, 0, 1)), x)
    dy = np.arange(24.0).reshape(out.shape)
    np.testing.assert_array_equal(vjp_fn(dy)[0], np.transpose(dy, (1, 2, 0)))


@pytest.mark.parametrize("argnums, match", [((1, 1), "twice"), ((1, -1), "twice"),
                                            (True, "int"), ("0", "int"), ((), "int")])
def test_bad_argnums_are_refused(argnums, match):
    x = np.ones(3)
    with pytest.raises(ValueError, match=match):
        cn.value_and_grad(lambda a, b: cn.sum(a * b), argnums=argnums)(x, x)


def test_numpy_integer_argnums_is_accepted():
    x, y = np.ones(3), np.arange(3.0)
    np.testing.assert_array_equal(cn.grad(lambda a, b: cn.sum(a * b), np.int64(1))(x, y), x)
    np.testing.assert_array_equal(cn.grad(lambda a, b: cn.sum(a * b), np.array(1))(x, y), x)
    gx, gy = cn.grad(lambda a, b: cn.sum(a * b), range(2))(x, y)  # a range is a sequence
    np.testing.assert_array_equal(gx, y)
    np.testing.assert_array_equal(gy, x)


def test_max_pool_gradient_of_an_empty_batch():
    out, vjp_fn = cn.vjp(lambda x: cn.max_pool2d(x, 2), np.ones((0, 4, 4, 1)))
    assert vjp_fn(np.ones(out.shape))[0].shape == (0, 4, 4, 1)


def test_returning_a_tuple_is_a_clear_error():
    with pytest.raises(ValueError, match="one array"):
        cn.vjp(lambda x: (x, x), np.ones(2))


def test_real_primal_gets_a_real_gradient_from_a_complex_output():
    x = np.array([1.0, 2.0])
    _, vjp_fn = cn.vjp(lambda x: x * (1 + 2j), x)
    g = vjp_fn(np.ones(2, dtype=complex))[0]
    assert g.dtype == np.float64
    np.testing.assert_array_equal(g, [1.0, 1.0])
    assert g.flags.c_contiguous and g.flags.writeable and g.base is None  # its own array


@pytest.mark.parametrize("fn", [lambda s, v: cn.einsum(",i->i", s, v), lambda s, v: s * v,
                                lambda s, v: cn.einsum("i->", v) * s],
                         ids=["einsum", "multiply", "sum-times"])
def test_a_real_0d_primal_next_to_complex_values_gets_a_0d_real_gradient(fn):
    s, v = np.array(2.0), np.array([1 + 2j, 3 - 1j])
    _, vjp_fn = cn.vjp(fn, s, v)
    g_s, g_v = vjp_fn(np.ones(2, complex) if fn(s, v).ndim else np.array(1 + 0j))
    oracle = np.vdot(np.ones(2), v).real  # d/ds of Re(sum(s * v)) for a real s
    assert g_s.shape == () and g_s.dtype == np.float64
    np.testing.assert_allclose(g_s, oracle, rtol=1e-15)
    assert g_v.shape == (2,)


def test_a_real_0d_primal_scaling_complex_values_passes_the_gradient_check():
    v = np.array([0.6 + 0.8j, -1.0 + 2.0j])
    g = cn.grad(lambda s: cn.sum(cn.abs(s * v)))(np.array(1.5))
    assert g.shape == ()
    np.testing.assert_allclose(g, np.sum(np.abs(v)), rtol=1e-15)  # |s v| = s |v| for s > 0
    cn.check_grads(lambda s: cn.sum(cn.abs(s * v)), np.array(1.5))


# ------------------------------------------------------------- forward copies reused backward
def test_kernel_gradient_reuses_the_forward_im2col_and_stays_exact():
    rng = np.random.default_rng(7)
    x, w = rng.standard_normal((2, 6, 5, 3)), rng.standard_normal((3, 2, 3, 4))
    spec = "b(h+u)(w+v)c,uvck->bhwk"
    out, vjp_fn = cn.vjp(lambda a, b: cn.einsum(spec, a, b), x, w)
    for seed in (1, 2):  # several cotangents: nothing of one may leak into the next
        dy = np.random.default_rng(seed).standard_normal(out.shape)
        dx, dw = vjp_fn(dy)
        # against the pattern oracle (numpy's einsum with 0/1 window patterns)
        np.testing.assert_allclose(dw, pattern_einsum("b(h+u)(w+v)c,bhwk->uvck", x, dy,
                                                      sizes={"u": 3, "v": 2}), atol=1e-12)
        np.testing.assert_allclose(dx, pattern_einsum("bhwk,uvck->b(h+u)(w+v)c", dy, w),
                                   atol=1e-12)


def test_a_gradient_reuses_the_forward_copy_of_a_c_ordered_operand(monkeypatch):
    """Attention's scores: the forward GEMM copies q and k into (b, h, ., d);
    the gradient of q reads k in that layout again, and that of k, q: the
    forward's memo serves both, and the gradients stay exact."""
    spec = "bqhd,bkhd->bhqk"  # operands past SMALL_COPY_BYTES, which are copied anew
    q, k = _rng(3).standard_normal((4, 24, 6, 16)), _rng(4).standard_normal((4, 30, 6, 16))
    copied = []  # the shapes of the operands the GEMMs copy
    check = pair.check_allocation
    monkeypatch.setattr(pair, "check_allocation",
                        lambda shape, *args: copied.append(shape) or check(shape, *args))
    out, vjp_fn = cn.vjp(lambda a, b: cn.einsum(spec, a, b), q, k)
    assert sorted(copied) == [q.shape, k.shape]
    for seed in (5, 6):  # twice: the memo serves every call of vjp_fn
        copied.clear()
        dy = _rng(seed).standard_normal(out.shape)
        dq, dk = vjp_fn(dy)
        assert_close(dq, np.einsum("bhqk,bkhd->bqhd", dy, k))
        assert_close(dk, np.einsum("bhqk,bqhd->bkhd", dy, q))
        assert q.shape not in copied and k.shape not in copied, copied


@pytest.mark.parametrize("permuted, d, memo", [(False, 64, False), (True, 64, True),
                                               (True, 8, False)])
def test_a_head_keeps_a_memo_only_when_its_forward_pass_may_copy(permuted, d, memo):
    # C-contiguous operands run as one GEMM on views: nothing copied, no memo;
    # an activation whose (n, m, d) axes do not merge is copied for the GEMM,
    # and the memo that keeps such copies for the backward pass is there, for
    # one of more than pair.SMALL_COPY_BYTES; a smaller one is copied anew
    swapped = _rng().standard_normal((16, 3, 3, d)).transpose(0, 2, 1, 3)  # n, m swapped
    x = swapped if permuted else np.ascontiguousarray(swapped)
    assert (x.nbytes > pair.SMALL_COPY_BYTES) == (d == 64)
    w, dy = _rng(1).standard_normal((3, 3, d, 10)), _rng(2).standard_normal((16, 10))
    out, vjp_fn = cn.vjp(lambda a, b: cn.einsum("bnmd,nmdk->bk", a, b), x, w)
    (result,) = [c.cell_contents for c in vjp_fn.__closure__
                 if isinstance(c.cell_contents, cn.trace.Traced)]
    assert (result.node.args[1] is not None) == memo  # contract(plan, memo, *arrays)
    dx, dw = vjp_fn(dy)
    assert_close(out, np.einsum("bnmd,nmdk->bk", x, w))
    assert_close(dw, np.einsum("bnmd,bk->nmdk", x, dy))
    assert_close(dx, np.einsum("bk,nmdk->bnmd", dy, w))


def test_a_head_under_a_tight_budget_keeps_no_memo_either():
    # float32 needs a quarter of the bytes the budget's quick test assumes (complex128):
    # under a budget between the two the head still runs as one GEMM and copies nothing
    x = _rng().standard_normal((8, 3, 3, 16)).astype(np.float32)
    w = _rng(1).standard_normal((3, 3, 16, 10)).astype(np.float32)
    head = lambda a, b: cn.einsum("bnmd,nmdk->bk", a, b)  # noqa: E731
    cn.vjp(head, x, w)  # bound and planned: the next call takes einsum's short path
    with cn.memory_budget(8 * 10 * 8):  # float32 needs 320 bytes, the quick test 1,280
        out, vjp_fn = cn.vjp(head, x, w)
    (result,) = [c.cell_contents for c in vjp_fn.__closure__
                 if isinstance(c.cell_contents, cn.trace.Traced)]
    assert result.node.args[1] is None  # contract(plan, memo, *arrays)
    assert_close(out, np.einsum("bnmd,nmdk->bk", x, w), tol=1e-4)


def test_cotangents_through_windows_are_never_memoized():
    # the backward of a transposed convolution reads the cotangent through a window;
    # a second cotangent (possibly at the same address) must not see the first one's copy
    rng = np.random.default_rng(3)
    y, w = rng.standard_normal((2, 3, 3, 4)), rng.standard_normal((2, 2, 3, 4))
    out, vjp_fn = cn.vjp(lambda a, b: cn.einsum("bhwk,uvck->b(h+u)(w+v)c", a, b), y, w)
    for seed in range(4):
        g = np.random.default_rng(seed).standard_normal(out.shape)
        dy, dw = vjp_fn(g)
        np.testing.assert_allclose(dy, pattern_einsum("b(h+u)(w+v)c,uvck->bhwk", g, w),
                                   atol=1e-12)
        np.testing.assert_allclose(dw, pattern_einsum("bhwk,b(h+u)(w+v)c->uvck", y, g,
                                                      sizes={"u": 2, "v": 2}), atol=1e-12)
        del g


def test_forward_temporaries_are_never_served_to_the_backward_pass():
    # once failed: an operand summed inside the forward pass (a temporary) was
    # memoized by address; a transposed cotangent allocated at that freed address
    # was then answered with the temporary's copy
    rng = np.random.default_rng(0)
    n = 8
    a = rng.standard_normal((n,) * 4).transpose(2, 1, 3, 0)  # j is found only in a
    b = rng.standard_normal((n,) * 3).transpose(1, 2, 0)
    for _ in range(20):
        y, vjp_fn = cn.vjp(lambda a, b: cn.einsum("jmip,lkm->lpi", a, b), a, b)
        g = np.empty((n,) * 3).transpose(1, 2, 0)
        g[...] = rng.standard_normal(g.shape)
        da, db = vjp_fn(g)
        np.testing.assert_allclose(da, np.einsum("lpi,lkm,j->jmip", g, b, np.ones(n)),
                                   atol=1e-12)
        np.testing.assert_allclose(db, np.einsum("jmip,lpi,k->lkm", a, g, np.ones(n)),
                                   atol=1e-12)
        del y, vjp_fn, g, da, db


def test_traced_cannot_be_subclassed():
    # tracing finds traced arguments by exact type
    with pytest.raises(TypeError, match="subclassed"):
        type("MyTraced", (cn.trace.Traced,), {})


def test_vjp_mixes_plain_arrays_with_other_primals():
    x = _rng().standard_normal((2, 3))
    scale = np.float64(1.5)  # a numpy scalar: a leaf, but not an ndarray
    out, vjp_fn = cn.vjp(lambda x, s: cn.einsum("ij,->ij", x, s), x, scale)
    dy = _rng(2).standard_normal(out.shape)
    gx, gs = vjp_fn(dy)
    assert_close(gx, 1.5 * dy)
    assert gs.shape == () and np.isclose(gs, np.sum(x * dy))
    with pytest.raises(cn.autodiff.DtypeError, match="primal 1"):
        cn.vjp(lambda x, w: cn.einsum("ij,jk->ik", x, w), x, np.ones((3, 2), dtype=np.int64))


def test_vjp_takes_a_nested_primal_after_a_plain_array():
    x, w = _rng().standard_normal((2, 3)), _rng(1).standard_normal((3, 4))
    out, vjp_fn = cn.vjp(lambda x, p: cn.einsum("ij,jk->ik", x, p["w"]), x, {"w": w})
    dy = _rng(2).standard_normal(out.shape)
    gx, gp = vjp_fn(dy)
    assert set(gp) == {"w"}
    assert_close(gx, dy @ w.T)
    assert_close(gp["w"], x.T @ dy)


def test_a_primitive_reads_as_the_function_it_wraps():
    """help() and doctest's search of contractnet.ops find the function's own name and module."""
    assert cn.exp.__module__ == "contractnet.ops" and cn.exp.__name__ == "exp"
    assert cn.astype.__doc__ and ">>>" in cn.astype.__doc__


def test_a_window_over_an_empty_axis_has_an_empty_gradient():
    """The gradient spec writes the window (2h+u) for h of size 0: its span
    was negative, and the pullback of this valid forward call failed with
    numpy's 'negative dimensions are not allowed'."""
    x, h = np.ones((2, 0)), np.ones((2, 0))
    y, vjp_fn = cn.vjp(lambda a, b: cn.einsum("b(2h+u),bh->b", a, b, sizes={"u": 1}), x, h)
    np.testing.assert_array_equal(y, np.zeros(2))
    dx, dh = vjp_fn(np.ones(2))
    assert dx.shape == (2, 0) and dh.shape == (2, 0)


def test_a_traced_windowed_read_is_copied_once():
    """A pairwise run's first step with a windowed operand reads it through
    a view, which that step's GEMM copies once (im2col) and keeps for the
    backward pass.  A copied read would double the traced forward's peak."""
    import tracemalloc
    rng = np.random.default_rng(0)
    x = rng.standard_normal((8, 14, 14, 8), dtype=np.float32)
    factors = [rng.standard_normal(s, dtype=np.float32) for s in ((3, 4), (3, 4), (8, 4), (16, 4))]

    def cp_conv(x, *fs):
        return cn.einsum("b(h+u)(w+v)c,ur,vr,cr,kr->bhwk", x, *fs)

    peaks = []
    for call in (lambda: cp_conv(x, *factors), lambda: cn.vjp(cp_conv, x, *factors)):
        call()
        tracemalloc.start()
        try:
            call()
            peaks.append(tracemalloc.get_traced_memory()[1])
        finally:
            tracemalloc.stop()
    untraced, traced = peaks
    assert traced < 1.5 * untraced, (untraced, traced)
    cn.check_grads(cp_conv, x[:2, :6, :6].astype(np.float64), *factors, trials=1)


def test_a_pairwise_backward_writes_a_window_back_without_its_full_gradient():
    """A windowed operand enters its first pairwise step through its own
    term, so that step's transposed spec adds the gradient back window offset
    by offset.  Read first into a view of every offset, as it once was, its
    backward built that view's whole gradient (9 times the input here) and
    took 2.5 times as long as now."""
    import tracemalloc
    rng = np.random.default_rng(0)
    x = rng.standard_normal((8, 32, 32, 32), dtype=np.float32)
    factors = [rng.standard_normal(s, dtype=np.float32) for s in ((3, 4), (3, 4), (32, 4), (16, 4))]
    out, vjp_fn = cn.vjp(lambda x, *fs: cn.einsum("b(h+u)(w+v)c,ur,vr,cr,kr->bhwk", x, *fs),
                         x, *factors)
    dy = rng.standard_normal(out.shape, dtype=np.float32)
    tracemalloc.start()
    try:
        dx, *_ = vjp_fn(dy)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    window_gradient = 9 * x.nbytes
    assert peak < window_gradient / 2, (peak, window_gradient)
    kernel = np.einsum("ur,vr,cr,kr->uvck", *factors)
    _, conv_vjp = cn.vjp(lambda x: cn.einsum("b(h+u)(w+v)c,uvck->bhwk", x, kernel), x)
    np.testing.assert_allclose(dx, conv_vjp(dy)[0], rtol=1e-4, atol=1e-4)


def test_a_traced_pairwise_run_plans_its_steps_once(monkeypatch):
    """A second traced call of a spec of three or more operands plans only
    the whole spec (einsum's own lookup), none of its steps again."""
    from contractnet import api, engine
    rng = np.random.default_rng(0)
    x, y, z, u = (rng.standard_normal(s) for s in [(3, 4), (4, 5), (5, 6), (6, 2)])
    spec = "ab,bc,cd,de->ea"

    def f(x, y, z):
        return cn.sum(cn.einsum(spec, x, y, z, u) ** 2)
    first = cn.grad(f, argnums=(0, 1, 2))(x, y, z)
    planned = []
    for module in (api, engine):
        def counting(bound, reduce, real=module.make_plan):
            planned.append(bound)
            return real(bound, reduce)
        monkeypatch.setattr(module, "make_plan", counting)
    again = cn.grad(f, argnums=(0, 1, 2))(x, y, z)
    assert [str(b.spec) for b in planned] == [spec]
    for a, b in zip(first, again):
        np.testing.assert_array_equal(a, b)
    twice_out = 2 * np.einsum(spec, x, y, z, u)
    assert_close(again[0], np.einsum("ea,bc,cd,de->ab", twice_out, y, z, u))


def test_a_pairwise_run_casts_a_diagonal_as_read_not_whole():
    """An operand cast to the common dtype is cast as the path reads it
    where that read is smaller than the operand (a diagonal): cast whole,
    the (100, 100) float32 operand's float64 copy would pass the budget."""
    rng = np.random.default_rng(0)
    x = rng.standard_normal((100, 100)).astype(np.float32)
    y, z = rng.standard_normal(100), rng.standard_normal(100)
    with cn.memory_budget(40_000):
        out, vjp_fn = cn.vjp(lambda x, y, z: cn.einsum("ii,i,i->", x, y, z), x, y, z)
        dx, dy, dz = vjp_fn(np.float64(1.0))
    assert_close(out, np.einsum("ii,i,i->", x.astype(np.float64), y, z))
    assert dx.dtype == np.float32
    assert_close(dx, np.diag(y * z).astype(np.float32), tol=1e-6)
    assert_close(dy, np.diag(x).astype(np.float64) * z)


def test_memory_budget_counts_the_zero_gradient_of_an_unused_primal():
    unused = np.broadcast_to(1.0, (1000, 1000))  # 8 bytes; its gradient, 8 MB
    _, vjp_fn = cn.vjp(lambda x, y: cn.sum(y), unused, np.ones(3))
    with cn.memory_budget(1 << 20):
        with pytest.raises(cn.MemoryBudgetError, match="the zero gradient of an unused primal"):
            vjp_fn(np.float64(1.0))
    dx, dy = vjp_fn(np.float64(1.0))
    assert not dx.any() and dx.shape == (1000, 1000) and np.all(dy == 1.0)


@pytest.mark.parametrize("argnums", [[np.array([0])], np.array([0]), [True], [0.0]])
def test_argnums_that_are_no_ints_are_a_value_error(argnums):
    with pytest.raises(ValueError, match="argnums must be an int or a tuple, list or range "
                                         "of ints"):
        cn.grad(lambda x: cn.sum(x), argnums=argnums)(np.ones(2))


def test_gradients_at_the_edges_of_their_rules():
    # power's exponent gradient where the base is negative: 0, as the log is not real
    g = cn.grad(lambda b: cn.sum(cn.power(np.array([-2.0, 3.0]), b)))(np.array([2.0, 2.0]))
    assert_close(g, [0.0, 9.0 * np.log(3.0)])
    # abs of a complex zero: 0, not nan
    np.testing.assert_allclose(cn.grad(lambda z: cn.sum(cn.abs(z)))(np.array([0j, 3 + 4j])),
                               [0, 0.6 - 0.8j], rtol=1e-14)
    # relu at 0: 0
    assert_close(cn.grad(lambda x: cn.sum(cn.relu(x)))(np.array([-1.0, 0.0, 2.0])), [0, 0, 1])


def test_a_gradient_through_a_broadcast_sum_is_a_writable_array():
    g = cn.grad(lambda x: cn.sum(cn.sum(x, axis=0) * 2.0))(np.ones((2, 3)))
    assert g.flags.writeable
    assert_close(g, np.full((2, 3), 2.0))


def test_a_real_primal_through_complex_values_raises_no_complex_warning():
    import warnings
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        g = cn.grad(lambda x: cn.sum(cn.abs(cn.astype(x, np.complex128) * (1 + 2j))))(
            np.array([1.0, -2.0]))
    assert g.dtype == np.float64
    assert_close(g, np.sqrt(5.0) * np.array([1.0, -1.0]))


def test_the_identity_function_passes_its_cotangent_through():
    (g,) = cn.vjp(lambda x: x, np.arange(3.0))[1](np.array([1.0, 2.0, 3.0]))
    assert_close(g, [1.0, 2.0, 3.0])


@pytest.mark.parametrize("xshape, bshape", [
    ((64, 28, 28, 32), (1, 1, 1, 32)),  # leading axes held at size 1
    ((100000, 16), (16,)),              # many narrow rows: by numpy.einsum
    ((4096, 512), (512,)),              # wide rows: by ndarray.sum, 64 at a time
    ((64, 32, 28, 28), (1, 32, 1, 1)),  # a channel axis between summed ones
    ((20, 700, 3), (20, 1, 3)),         # one middle axis
])
def test_a_broadcast_operands_gradient_keeps_a_gemms_digits(xshape, bshape):
    """ndarray.sum adds the terms of a broadcast axis one by one: the first
    two gradients were 6.8e-6 and 1.0e-5 of their largest element off in
    float32, the third 2.4e-6, the last 8.7e-7; summed in blocks, they are
    below 4e-7."""
    rng = np.random.default_rng(0)
    x, g = (rng.random(xshape).astype(np.float32) for _ in range(2))
    b = rng.random(bshape).astype(np.float32)
    _, vjp_fn = cn.vjp(lambda x, b: x + b, x, b)
    dx, db = vjp_fn(g)
    lead = len(xshape) - len(bshape)
    axes = tuple(range(lead)) + tuple(lead + i for i, n in enumerate(bshape) if n == 1)
    exact = g.astype(np.float64).sum(axis=axes).reshape(bshape)
    assert db.dtype == np.float32 and db.shape == bshape and dx.dtype == np.float32
    assert np.abs(db - exact).max() <= 4e-7 * np.abs(exact).max()
