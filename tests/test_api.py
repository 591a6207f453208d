"""Public API: cn.einsum's boundary checks and cn.backward_specs, including the
adjoint identity <A x, y> = <x, A^T y> with the derived specs run by cn.einsum."""
from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given

from contractnet import SpecError

import contractnet as cn
from oracles import _tokens, assert_close, pattern_einsum
from strategies import HARD_CASES, einsum_cases, window_group

RNG_SEED = 11


def _operands(shapes, seed=RNG_SEED):
    rng = np.random.default_rng(seed)
    return [rng.standard_normal(s) for s in shapes]


# ------------------------------------------------------------- backward_specs
def test_backward_specs_of_the_head():
    assert cn.backward_specs("bnmd,nmdk->bk", (2, 3, 3, 4), (3, 3, 4, 5)) == (
        "bk,nmdk->bnmd", "bnmd,bk->nmdk")


@pytest.mark.parametrize("spec, shapes, expected", [
    ("bqd,bkd->bqk", [(2, 3, 4), (2, 5, 4)], ("bqk,bkd->bqd", "bqd,bqk->bkd")),
    ("bi,ikj,bj->bk", [(2, 3), (3, 4, 5), (2, 5)],
     ("bk,ikj,bj->bi", "bi,bk,bj->ikj", "bi,ikj,bk->bj")),
    ("ij,jk", [(2, 3), (3, 4)], ("ik,jk->ij", "ij,ik->jk")),
    ("ii->i", [(3, 3)], ("i->ii",)),
    ("ij->", [(2, 3)], ("->ij",)),
    ("b(h+u)(w+v)c,uvck->bhwk", [(2, 7, 6, 3), (3, 2, 3, 4)],
     ("bhwk,uvck->b(h+u)(w+v)c", "b(h+u)(w+v)c,bhwk->uvck")),
    ("...ij,...jk->...ik", [(2, 3, 4), (2, 4, 5)], ("...ik,...jk->...ij", "...ij,...ik->...jk")),
])
def test_backward_specs_text(spec, shapes, expected):
    assert cn.backward_specs(spec, *shapes) == expected


def test_backward_specs_wrong_shape_count():
    with pytest.raises(cn.SpecError, match=r"2 operand\(s\) but 1 shape"):
        cn.backward_specs("ij,jk->ik", (2, 3))


@pytest.mark.parametrize("bad, culprit", [((2, -3), "sequence of non-negative"),
                                          ((2, True), "sequence of ints, not bools"),
                                          ((2, 3.5), "sequence of ints")])
def test_backward_specs_refuses_bad_dimensions(bad, culprit):
    with pytest.raises(SpecError, match=f"shape of operand 0 must be a {culprit}"):
        cn.backward_specs("ij,jk->ik", bad, (3, 4))


def test_traced_truth_value_follows_numpy():
    seen = []

    def fn(x):
        seen.append((bool(x[:1]), bool(cn.sum(x))))
        with pytest.raises(ValueError, match="ambiguous"):
            bool(x)
        return cn.sum(x)
    cn.grad(fn)(np.array([0.0, 1.0]))
    assert seen == [(False, True)]


@pytest.mark.parametrize("convert", [float, int, complex], ids=["float", "int", "complex"])
def test_a_traced_value_refuses_to_become_a_python_number_with_a_hint(convert):
    def fn(a):
        with pytest.raises(TypeError, match="cannot become a Python number .* use "
                                            "contractnet's ops; .value is the plain array"):
            convert(cn.sum(a))
        return cn.sum(a)
    cn.grad(fn)(np.ones(3))


def test_a_traced_value_refuses_assignment_with_a_hint():
    def fn(a):
        with pytest.raises(TypeError, match="cannot be changed in place: build a new one"):
            a[0] = 1.0
        return cn.sum(a)
    cn.grad(fn)(np.ones(3))


def test_a_traced_value_iterates_over_its_rows_but_not_when_0d():
    np.testing.assert_array_equal(cn.grad(lambda a: sum(a))(np.array([3.0, 4.0])), [1.0, 1.0])
    rows = cn.grad(lambda a: cn.sum(sum(r * k for k, r in enumerate(a))))(np.ones((3, 2)))
    np.testing.assert_array_equal(rows, [[0, 0], [1, 1], [2, 2]])
    # without __iter__, Python would iterate through __getitem__ and stop silently at t[0]
    with pytest.raises(TypeError, match="iteration over a 0-d traced value"):
        cn.grad(lambda a: sum(a) + cn.sum(a))(np.array(3.0))


def _backward_sizes(back: str, shape) -> dict:
    """sizes= for a backward spec: its output term read against the operand shape."""
    out = back.split("->")[1]
    if "..." in out:
        head, tail = out.split("...")
        pairs = list(zip(_tokens(head), shape)) + list(zip(_tokens(tail)[::-1], shape[::-1]))
    else:
        pairs = list(zip(_tokens(out), shape))
    sizes = {}
    for token, n in pairs:
        if isinstance(token, str):
            sizes[token] = n
        else:
            sizes[window_group(*token)[1:-1]] = n
    return sizes


def _check_adjoint(spec, operands, sizes=None, tol=1e-10):
    """<A_i x_i, y> == <x_i, A_i^T y> for every operand i, A_i^T from backward_specs."""
    y = cn.einsum(spec, *operands, sizes=sizes)
    dy = np.random.default_rng(RNG_SEED + 1).standard_normal(np.shape(y))
    backs = cn.backward_specs(spec, *[np.shape(x) for x in operands], sizes=sizes)
    assert len(backs) == len(operands)
    for i, back in enumerate(backs):
        args = list(operands)
        args[i] = dy
        # the forward's sizes= (window sizes) still apply; the output term adds its own
        given = {k: v for k, v in (sizes or {}).items() if k in back}
        given.update(_backward_sizes(back, np.shape(operands[i])))
        adjoint = cn.einsum(back, *args, sizes=given)
        assert np.shape(adjoint) == np.shape(operands[i]), back
        lhs, rhs = np.sum(y * dy), np.sum(operands[i] * adjoint)
        assert abs(lhs - rhs) <= tol * max(1.0, abs(lhs)), f"{spec} operand {i}: {back}"


@given(einsum_cases())
def test_adjoint_identity_property(case):
    _check_adjoint(case.spec, case.operands())


@pytest.mark.parametrize("spec, shapes", HARD_CASES, ids=[s for s, _ in HARD_CASES])
def test_adjoint_identity_hard_cases(spec, shapes):
    _check_adjoint(spec, _operands(shapes))


@pytest.mark.parametrize("spec, shapes, sizes", [
    ("b(h+u)(w+v)c,uvck->bhwk", [(2, 7, 6, 3), (3, 2, 3, 4)], None),
    ("b(2h+u)(2w+v)c,uvck->bhwk", [(2, 8, 6, 3), (3, 2, 3, 4)], None),  # uncovered tail
    ("b(h+2u)(w+2v)c,uvck->bhwk", [(1, 7, 6, 2), (3, 2, 2, 2)], None),
    ("b(2h+u)(2w+v)c->bhwc", [(2, 5, 7, 3)], {"u": 2, "v": 2}),
    ("bhwuvc->b(h+u)(w+v)c", [(1, 2, 3, 2, 2, 2)], None),
    ("bhwk,uvck->b(2h+u)(w+v)c", [(1, 2, 2, 3), (2, 2, 2, 3)], None),
])
def test_adjoint_identity_windows(spec, shapes, sizes):
    _check_adjoint(spec, _operands(shapes), sizes)


# ------------------------------------------------------------- einsum boundary
def test_einsum_accepts_a_parsed_spec():
    a, b = _operands([(2, 3), (3, 4)])
    assert_close(cn.einsum(cn.parse("ij,jk->ik"), a, b), a @ b)


def test_einsum_docstring_pooling_example():
    x = np.arange(5.0).reshape(1, 5, 1)
    got = cn.einsum("b(2h+u)c->bhc", x, sizes={"u": 2}, reduce="max").ravel()
    assert_close(got, [1.0, 3.0])


def test_a_window_group_given_twice_must_agree():
    p = _operands([(3, 2)])[0]
    assert cn.einsum("hu->(2h+u)", p, sizes={"2h+u": 9, "(2*h+u)": 9}).shape == (9,)
    with pytest.raises(cn.SpecError, match=r"window group \(2h\+u\) twice, as '\(2\*h\+u\)': 10 "
                                           r"and as '2h\+u': 9"):
        cn.einsum("hu->(2h+u)", p, sizes={"2h+u": 9, "(2*h+u)": 10})


@pytest.mark.parametrize("key", ["(2h+u)", "2h+u", "2*h+u", " ( 2 * h + 1u ) ", "2h + u"])
def test_sizes_by_window_group_in_any_spelling(key):
    p = _operands([(3, 2)])[0]
    out = cn.einsum("hu->(2*h+u)", p, sizes={key: 9})
    want = np.zeros(9)  # the scatter-add of p[h, u] at 2h+u; positions 6-8 get nothing
    for h in range(3):
        for u in range(2):
            want[2 * h + u] += p[h, u]
    np.testing.assert_array_equal(out, want)
    with pytest.raises(cn.SpecError, match="sizes= names '3h\\+u', which is not an index"):
        cn.einsum("hu->(2*h+u)", p, sizes={"3h+u": 9})


def test_a_repeated_call_with_sizes_is_bound_once_and_checked_whenever_it_differs(monkeypatch):
    from contractnet import bind as binding
    from contractnet.bind import bound_by_text
    x = np.arange(10.0).reshape(1, 10)
    spec = "b(2h+u)->bh"
    first = cn.einsum(spec, x, sizes={"u": 2}, reduce="max")
    assert (spec, (x.shape,), (("u", 2),)) in bound_by_text
    calls = []
    checked = binding.bind
    monkeypatch.setattr(binding, "bind", lambda *a, **k: calls.append(a) or checked(*a, **k))
    np.testing.assert_array_equal(cn.einsum(spec, x, sizes={"u": 2}, reduce="max"), first)
    assert calls == []  # the repeat is read from the cache, not bound (nor checked) again
    cn.einsum(spec, x, sizes={"u": np.int64(2)}, reduce="max")  # not a plain int: checked
    assert len(calls) == 1
    np.testing.assert_array_equal(first, [[1.0, 3.0, 5.0, 7.0, 9.0]])
    for bad, match in [({"u": True}, "must be an int"), ({"u": 2.0}, "must be an int"),
                       ({"u": -1}, "non-negative"), ({"u": 2, "b": 3}, "'b'"),
                       ({"u": np.int64(3)}, None)]:
        if match is None:  # a numpy int takes the checked path, and is right
            assert cn.einsum(spec, x, sizes=bad, reduce="max").shape == (1, 4)
            continue
        before = dict(bound_by_text)
        with pytest.raises(cn.SpecError, match=match):
            cn.einsum(spec, x, sizes=bad, reduce="max")
        assert bound_by_text == before  # nothing kept (2.0 == 2 as a key: a plain int only)


@pytest.mark.parametrize("spec, shapes", [("i->ii", [(3,)]), ("i,i->ii", [(3,), (3,)]),
                                          ("bhu->b(h+u)", [(1, 3, 2)]),
                                          ("bhk,uck->b(2h+u)c", [(1, 3, 4), (2, 5, 4)])])
def test_bool_operands_write_diagonals_and_windows(spec, shapes):
    # numpy's einsum sums booleans with 'or'; written parts are added the same way
    ops = [np.random.default_rng(i).random(shape) < 0.5 for i, shape in enumerate(shapes)]
    got = cn.einsum(spec, *ops, sizes={"h": shapes[0][1]} if "(" in spec else None)
    if "(" in spec:  # the windows' scatter-add, as plain einsum over index patterns
        want = pattern_einsum(spec, *ops) > 0
    else:
        want = np.diag(np.logical_and.reduce(ops))
    assert got.dtype == np.bool_
    np.testing.assert_array_equal(got, want)


@pytest.mark.parametrize("spec, shapes, sum_axes", [
    ("...i->i", [(2, 3, 4)], (0, 1)),       # numpy refuses: '...' in the input only
    ("i...,i->i", [(2, 3, 5), (2,)], (1, 2)),
])
def test_an_ellipsis_the_output_lacks_is_summed_and_so_is_its_gradient(spec, shapes, sum_axes):
    rng = np.random.default_rng(0)
    ops = [rng.standard_normal(s) for s in shapes]
    want = ops[0].sum(sum_axes) * (ops[1] if len(ops) > 1 else 1)
    np.testing.assert_allclose(cn.einsum(spec, *ops), want)
    c = rng.standard_normal(want.shape)
    grads = cn.vjp(lambda *xs: cn.einsum(spec, *xs), *ops)[1](c)
    if len(ops) == 1:  # the cotangent broadcast back over the summed axes
        np.testing.assert_allclose(grads[0], np.broadcast_to(c, shapes[0]))
    else:
        np.testing.assert_allclose(grads[0], np.broadcast_to((c * ops[1])[:, None, None],
                                                             shapes[0]))
        np.testing.assert_allclose(grads[1], c * ops[0].sum(sum_axes))


def test_a_window_outer_index_sized_by_another_term_reads_the_first_windows():
    a = np.arange(5.0)
    # the windows that fit: 4; h's other term gives 2, so the first 2 are read
    np.testing.assert_array_equal(cn.einsum("(h+u),h->h", a, np.ones(2), sizes={"u": 2}),
                                  [0 + 1, 1 + 2])
    # a size-1 axis there does not broadcast: one window
    np.testing.assert_array_equal(cn.einsum("(h+u),h->h", a, np.ones(1), sizes={"u": 2}),
                                  [1.0])
    grad, _ = cn.vjp(lambda a, h: cn.einsum("(h+u),h->h", a, h, sizes={"u": 2}),
                     a, np.ones(2))[1](np.array([1.0, 10.0]))
    np.testing.assert_array_equal(grad, [1, 11, 10, 0, 0])  # positions 3, 4: no window


def test_unicode_indices_parse_transpose_and_differentiate():
    x, w = np.random.default_rng(0).standard_normal((2, 3)), np.ones((3, 4))
    assert cn.backward_specs("αβ,βγ->αγ", x.shape, w.shape) == ("αγ,βγ->αβ", "αβ,αγ->βγ")
    np.testing.assert_allclose(cn.einsum("αβ,βγ->αγ", x, w), x @ w)
    dx, dw = cn.vjp(lambda x, w: cn.einsum("αβ,βγ->αγ", x, w), x, w)[1](np.ones((2, 4)))
    np.testing.assert_allclose(dx, np.ones((2, 4)) @ w.T)
    np.testing.assert_allclose(dw, x.T @ np.ones((2, 4)))


@pytest.mark.parametrize("shapes", [[(2, 3), (3, 4)], [(3, 3), (3, 3)]])
def test_a_list_of_arrays_for_several_operands_is_named_as_such(shapes):
    with pytest.raises(cn.SpecError, match=r"spec has 2 operands but one list was given; pass "
                                           r"the arrays one by one"):
        cn.einsum("ij,jk->ik", [np.ones(s) for s in shapes])
    assert cn.einsum("ij->i", [[1.0, 2.0], [3.0, 4.0]]).tolist() == [3.0, 7.0]  # one operand


def _caret_letter(err: cn.SpecError) -> str:
    """The character of the quoted spec that the caret points at."""
    lines = str(err).splitlines()
    assert lines[-1].strip() == "^", str(err)
    return lines[-2][len(lines[-1]) - 1]


def test_size_mismatch_message():
    x, w, k = np.ones((2, 3, 3, 4)), np.ones((3, 3, 4, 10)), np.ones(12)
    with pytest.raises(cn.SpecError, match=r"index 'k' has size 10 in operand 1 but 12 in "
                                           r"operand 2") as info:
        cn.einsum("bnmd,nmdk,k->bk", x, w, k)
    lines = str(info.value).splitlines()
    assert lines[-2].strip() == "bnmd,nmdk,k->bk"
    assert lines[-1] == "  " + " " * 10 + "^"


def test_size_mismatch_caret_with_implicit_output():
    with pytest.raises(cn.SpecError, match=r"index 'j' has size 3 in operand 0 but 4 in "
                                           r"operand 1") as info:
        cn.einsum("ij,jk", np.ones((2, 3)), np.ones((4, 5)))
    assert _caret_letter(info.value) == "j"


def test_size_mismatch_with_ellipsis_points_at_the_index():
    with pytest.raises(cn.SpecError, match=r"index 'k' has size 4 in operand 0 but 5 in "
                                           r"operand 1") as info:
        cn.einsum("...k,k...->...", np.ones((2, 4)), np.ones((5, 2)))
    assert _caret_letter(info.value) == "k"


def test_rank_mismatch_message():
    with pytest.raises(cn.SpecError, match=r"operand 1 has rank 3 .*'nmdk' needs rank 4"):
        cn.einsum("bnmd,nmdk->bk", np.ones((2, 3, 3, 4)), np.ones((3, 3, 4)))


@pytest.mark.parametrize("n", [1, 3])
def test_operand_count_message(n):
    with pytest.raises(cn.SpecError, match=rf"2 operand\(s\) but {n} array\(s\)"):
        cn.einsum("ij,jk->ik", *[np.ones((2, 2))] * n)


def test_output_index_without_sizes():
    with pytest.raises(cn.SpecError, match=r"output index 'j' appears in no operand.*"
                                           r"sizes=\{'j': n\}"):
        cn.einsum("i->ij", np.ones(3))


def test_window_that_does_not_fit():
    with pytest.raises(cn.SpecError, match=r"window \(h\+u\) with 'u'=5 does not fit axis of "
                                           r"length 3 in operand 0") as info:
        cn.einsum("b(h+u)c,uck->bhk", np.ones((1, 3, 1)), np.ones((5, 1, 1)))
    assert _caret_letter(info.value) == "("


def test_window_inner_size_missing():
    with pytest.raises(cn.SpecError, match=r"window index 'u'.*sizes=\{'u': n\}"):
        cn.einsum("b(2h+u)c->bhc", np.ones((1, 4, 1)))


@pytest.mark.parametrize("text, match", [
    ("ij,j$->i", r"invalid character '\$'"),
    ("i->i->i", r"only one '->'"),
    ("ij-jk", r"stray '-'"),
    ("b(h+u", r"not closed"),
    ("b(0h+u)c->bhc", r"positive integer, got 0"),
    ("i.j->ij", r"'\.' must be part of an ellipsis"),
])
def test_malformed_spec_through_einsum(text, match):
    with pytest.raises(cn.SpecError, match=match) as info:
        cn.einsum(text, np.ones((2, 2)), np.ones((2, 2)))
    assert text in str(info.value)


@pytest.mark.parametrize("spec", [["ij"], 3, None])
def test_spec_must_be_a_string(spec):
    with pytest.raises(cn.SpecError, match="must be a string"):
        cn.einsum(spec)


@pytest.mark.parametrize("spec", [["ij"], 3, None])
def test_a_non_string_spec_is_read_as_the_interleaved_form(spec):
    with pytest.raises(cn.SpecError, match=r"the first argument is not a spec string, .* "
                                            r"where operand 0's sublist <ndarray> has subscript"):
        cn.einsum(spec, np.ones((2, 2)))


def test_parse_refuses_a_list_with_spec_error():
    with pytest.raises(cn.SpecError, match="must be a string"):
        cn.parse(["ij"])


def test_reduce_must_be_known():
    with pytest.raises(cn.SpecError, match=r"reduce must be one of 'sum', 'mean', 'max', "
                                           r"got 'min'"):
        cn.einsum("ij->i", np.ones((2, 2)), reduce="min")


def test_max_reduce_takes_one_operand():
    with pytest.raises(cn.SpecError, match=r"reduce='max' takes one operand, got 2"):
        cn.einsum("ij,jk->ik", np.ones((2, 2)), np.ones((2, 2)), reduce="max")


def test_max_over_an_empty_index_is_refused_like_numpys():
    with pytest.raises(cn.SpecError, match=r"reduce='max' over 'j' of size 0"):
        cn.einsum("ij->i", np.ones((2, 0)), reduce="max")
    assert cn.einsum("ij->j", np.ones((2, 0)), reduce="max").shape == (0,)


def test_non_numeric_operand():
    with pytest.raises(cn.SpecError, match=r"operand 1 is not a numeric array"):
        cn.einsum("i,i->", np.ones(2), np.array(["a", "b"]))


def test_spec_error_is_a_value_error():
    assert issubclass(cn.SpecError, ValueError)
    assert issubclass(cn.MemoryBudgetError, ValueError)


def test_failed_call_changes_nothing():
    a = np.arange(6.0).reshape(2, 3)
    before = a.copy()
    with pytest.raises(cn.SpecError):
        cn.einsum("ij,jk->ik", a, a)
    np.testing.assert_array_equal(a, before)
    assert_close(cn.einsum("ij,kj->ik", a, a), a @ a.T)  # nothing cached from the failure


# ------------------------------------ edge cases: windows, sizes, interleaved form
@pytest.mark.parametrize("reduce", ["max", "mean"])
def test_non_sum_reduction_into_an_output_window_is_refused(reduce):
    with pytest.raises(SpecError, match="output window"):
        cn.einsum("hu->(h+u)", np.ones((3, 2)), reduce=reduce)


@pytest.mark.parametrize("sizes, match", [({"k": 2.0}, "must be an int"), ({"k": True}, "int"),
                                          (3, "mapping"), ([("k", 2)], "mapping"),
                                          ({"k": -1}, "non-negative")])
def test_bad_sizes_are_refused_every_time(sizes, match):
    for _ in range(2):  # the second call would hit the bind cache
        with pytest.raises(SpecError, match=match):
            cn.einsum("ab->abk", np.ones((2, 2)), sizes=sizes)
    assert cn.einsum("ab->abk", np.ones((2, 2)), sizes={"k": 2}).shape == (2, 2, 2)


def test_a_window_of_size_zero_is_refused():
    with pytest.raises(SpecError, match="at least one position"):
        cn.einsum("(h+u)->h", np.arange(5.0), sizes={"u": 0})


def test_sizes_must_agree_with_an_operand_that_has_the_index():
    with pytest.raises(SpecError, match="sizes= gives 4"):
        cn.einsum("ij->i", np.ones((3, 1)), sizes={"j": 4})


def test_ellipsis_mismatch_is_reported_as_an_ellipsis_axis():
    with pytest.raises(SpecError, match=r"an axis under '\.\.\.' has size 3 in operand 0 but 4"):
        cn.einsum("...i,...i->...i", np.ones((3, 2)), np.ones((4, 2)))


def test_transpose_is_the_array_operation():
    a = np.arange(6.0).reshape(2, 3)
    np.testing.assert_array_equal(cn.transpose(a), a.T)


@pytest.mark.parametrize("sizes", [[], 0, ()])
def test_falsy_non_mapping_sizes_are_refused(sizes):
    with pytest.raises(SpecError, match="mapping"):
        cn.einsum("ij->i", np.ones((2, 3)), sizes=sizes)


# ------------------------------------------------------------------ numpy's interleaved form
def _as_sublists(spec: str, operands) -> list:
    """``spec`` rewritten in numpy's interleaved form, operands in place."""
    def subscripts(term: str) -> list:
        out = []
        for part in term.split("..."):
            out += [ord(c) - ord("A") if c.isupper() else ord(c) - ord("a") + 26 for c in part]
            out.append(Ellipsis)
        return out[:-1]
    lhs, arrow, rhs = spec.replace(" ", "").partition("->")
    args = [x for term, op in zip(lhs.split(","), operands) for x in (op, subscripts(term))]
    return args + ([subscripts(rhs)] if arrow else [])


@pytest.mark.parametrize("args_of", [
    lambda a, b, s: (a, [0, 1], b, [1, 2], [0, 2]),
    lambda a, b, s: (a, [0, 1], b, [1, 2]),                       # implicit output
    lambda a, b, s: (a, [30, 1], b, [1, 2]),                      # 'e' after 'C'
    lambda a, b, s: (a, (0, 1), b, np.array([1, 2])),             # tuple, int array
    lambda a, b, s: (a, [np.int64(0), 1], b, [1, 2], [2, 0]),
    lambda a, b, s: (a, [Ellipsis, 1], b, [1, 2], [2, Ellipsis]),
    lambda a, b, s: (s, [], a, [0, 1], [1]),                      # a 0-d operand
    lambda a, b, s: (a, [0, 0], [0]),                             # a diagonal
    lambda a, b, s: (a, range(2), b, range(1, 3)),                # any iterable
    lambda a, b, s: (s, np.array([]), a, [0, 1]),                 # a float empty array
    lambda a, b, s: (a, [0, 1], [Ellipsis]),                      # '...' standing for nothing
])
def test_interleaved_form_matches_numpy(args_of):
    rng = np.random.default_rng(0)
    a, b = rng.standard_normal((3, 3)), rng.standard_normal((3, 4))
    args = args_of(a, b, np.float64(2.5))
    np.testing.assert_allclose(cn.einsum(*args), np.einsum(*args), rtol=1e-12, atol=1e-12)


@given(einsum_cases())
def test_interleaved_form_property(case):
    operands = case.operands()
    args = _as_sublists(case.spec, operands)
    np.testing.assert_allclose(cn.einsum(*args), np.einsum(case.spec, *operands),
                               rtol=1e-10, atol=1e-10)


def test_interleaved_form_is_differentiable():
    rng = np.random.default_rng(1)
    x, w = rng.standard_normal((2, 3, 3, 4)), rng.standard_normal((3, 3, 4, 5))
    dy = rng.standard_normal((2, 5))
    _, by_text = cn.vjp(lambda x, w: cn.einsum("bnmd,nmdk->bk", x, w), x, w)
    _, by_lists = cn.vjp(lambda x, w: cn.einsum(x, [1, 13, 12, 3], w, [13, 12, 3, 10],
                                                [1, 10]), x, w)
    for got, want in zip(by_lists(dy), by_text(dy)):
        np.testing.assert_allclose(got, want, rtol=1e-12)


@pytest.mark.parametrize("args, match", [
    ((np.ones(2), [52]), r"operand 0's sublist \[52\] has subscript 52: .*\[0, 52\)"),
    ((np.ones(2), [-1]), r"subscript -1"),
    ((np.ones(2), [1.0]), r"subscript 1\.0"),
    ((np.ones(2), [True]), r"subscript True"),
    ((np.ones(2), np.array([0.0])), r"subscript np.float64\(0.0\)"),
    ((np.ones(2), [0], np.ones(2), "a"), r"operand 1's sublist 'a' is not a sequence"),
    ((np.ones((2, 2)), [0, 1], np.ones((2, 2))), r"the output sublist \(the last of an odd"),
    ((np.ones((2, 3)), [0, 1], np.ones((2, 3)), [1, 2]), r"index 'B' has size 3"),
])
def test_interleaved_form_errors_name_the_culprit(args, match):
    with pytest.raises(cn.SpecError, match=match):
        cn.einsum(*args)


@pytest.mark.parametrize("value", [np.array(2.0), np.arange(3.0), np.zeros(0)],
                         ids=["0d", "1d", "empty"])
def test_a_traced_value_where_a_sublist_goes_is_refused_by_name(value):
    # the spec string left out; an empty one would otherwise read as no subscripts
    with pytest.raises(SpecError, match="operand 0's sublist is a traced value, not integers "
                                        "and Ellipsis, in numpy's interleaved form"):
        cn.grad(lambda a: cn.sum(cn.einsum(np.ones(3), a)) + cn.sum(a))(value)
    with pytest.raises(SpecError, match="the output sublist is a traced value"):
        cn.grad(lambda a: cn.sum(cn.einsum(np.ones(3), [0], a)) + cn.sum(a))(value)


def test_interleaved_form_sizes_by_subscript():
    x = np.arange(6.0).reshape(2, 3)
    by_int = cn.einsum(x, [0, 1], [0, 1, 2], sizes={2: 4})
    by_letter = cn.einsum(x, [0, 1], [0, 1, 2], sizes={"C": 4})
    by_numpy_int = cn.einsum(x, [0, 1], [0, 1, 2], sizes={np.int64(2): 4})
    np.testing.assert_array_equal(by_int, np.broadcast_to(x[..., None], (2, 3, 4)))
    np.testing.assert_array_equal(by_letter, by_int)
    np.testing.assert_array_equal(by_numpy_int, by_int)
    with pytest.raises(SpecError, match="True"):  # a bool is no subscript, as numpy's sublists
        cn.einsum(x, [0, 1], [0, 1, 2], sizes={True: 4})
    for sizes in ({2: 4, "C": 5}, {"C": 5, 2: 4}):  # one index twice: neither may win silently
        with pytest.raises(SpecError, match="sizes= gives index 'C' twice, as "):
            cn.einsum(x, [0, 1], [0, 1, 2], sizes=sizes)
    np.testing.assert_array_equal(cn.einsum(x, [0, 1], [0, 1, 2], sizes={2: 4, "C": 4}), by_int)


def test_output_ellipsis_with_no_input_ellipsis_stands_for_no_axes():
    x = np.arange(6.0).reshape(2, 3)
    assert cn.einsum("ab->...", x) == np.einsum("ab->...", x)
    np.testing.assert_array_equal(cn.einsum("ab->...b", x), np.einsum("ab->...b", x))
    np.testing.assert_array_equal(cn.grad(lambda x: cn.einsum("ab->...", x))(x), np.ones((2, 3)))


@pytest.mark.parametrize("spec, shapes", [("ij->", [(2, 3)]), ("i,i->", [(3,), (3,)]),
                                          (",->", [(), ()]), ("i,i,i->", [(3,)] * 3),
                                          ("ii->", [(2, 2)]), ("->", [()]), ("i->i", [(3,)])],
                         ids=lambda v: v if isinstance(v, str) else None)
def test_a_0d_result_is_a_numpy_scalar_as_in_numpy(spec, shapes):
    """Whichever path runs the spec (a reduction, a GEMM, opt_einsum)."""
    operands = [np.ones(s) for s in shapes]
    got, want = cn.einsum(spec, *operands), np.einsum(spec, *operands)
    assert type(got) is type(want)
    np.testing.assert_array_equal(got, want)


def test_a_spec_given_as_ascii_bytes_reads_as_text():
    a, b = np.arange(6.0).reshape(2, 3), np.arange(12.0).reshape(3, 4)
    np.testing.assert_array_equal(cn.einsum(b"ij,jk", a, b), np.einsum(b"ij,jk", a, b))
    with pytest.raises(SpecError, match="a spec given as bytes must be ASCII"):
        cn.einsum(b"ij\xff", a)


def test_a_list_primal_reaching_einsum_is_refused_by_operand_number():
    with pytest.raises(TypeError, match=r"^operand 0 is a list of traced values, not an array; "
                                        r"make it one with cn\.stack \(a list given as a "
                                        r"primal is traced element by element\)$"):
        cn.vjp(lambda x: cn.einsum("ij->", x), [[1.0, 2.0]])


@pytest.mark.parametrize("call, quoted, under", [
    # spaces kept, the caret under the same character
    (lambda: cn.einsum(" ij , jk -> ik", np.ones((2, 3)), np.ones((4, 5))),
     "   ij , jk -> ik", "jk -> ik"),
    (lambda: cn.backward_specs("i j , j k -> i k", (2, 3), (4, 5)),
     "  i j , j k -> i k", "j k -> i k"),
    (lambda: cn.explain("ij , jk", (2, 3), (4, 5)), "  ij , jk", "jk"),
    # nothing to point at: the spec as typed, an implicit output left implicit
    (lambda: cn.einsum("ij,jk", np.ones((2, 3))), "  ij,jk", None),
    # a window spelled otherwise than it prints: the spec as it is read
    (lambda: cn.einsum("b(2*h+u)c,ck->bhk", np.ones((2, 9, 3)), np.ones((4, 5)),
                       sizes={"u": 3}), "  b(2h+u)c,ck->bhk", "ck->bhk"),
])
def test_a_refusal_quotes_the_spec_as_typed(call, quoted, under):
    with pytest.raises(SpecError) as info:
        call()
    lines = str(info.value).splitlines()
    if under is None:
        assert lines[-1] == quoted
        return
    assert lines[-2] == quoted
    assert lines[-2][lines[-1].index("^"):].startswith(under)
