"""Binding a Spec to shapes: sizes, ellipsis, broadcast axes, windows, errors."""
from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given

from contractnet import bind as bind_module
from contractnet import einsum as cn_einsum
from contractnet.bind import bind, bind_text, clear_bind_cache
from contractnet.engine import make_plan
from contractnet.spec import ELLIPSIS, SpecError, Window, parse
from strategies import einsum_cases


def test_head_sizes_and_output_shape():
    b = bind(parse("bnmd,nmdk->bk"), [(2, 3, 3, 4), (3, 3, 4, 5)])
    assert b.out_shape == (2, 5)
    assert b.size_map == {"b": 2, "n": 3, "m": 3, "d": 4, "k": 5}
    assert b.in_shapes == ((2, 3, 3, 4), (3, 3, 4, 5))


def test_bound_is_hashable_and_deterministic():
    one = bind(parse("...ij,...jk->...ik"), [(2, 1, 3, 4), (5, 4, 2)])
    two = bind(parse("...ij,...jk->...ik"), [(2, 1, 3, 4), (5, 4, 2)])
    assert one == two and hash(one) == hash(two)


def test_ellipsis_expands_and_broadcast_axis_gets_a_private_index():
    b = bind(parse("...ij,...jk->...ik"), [(2, 1, 3, 4), (5, 4, 2)])
    assert b.out_shape == (2, 5, 3, 2)
    assert not b.spec.has_ellipsis
    first, second = b.spec.inputs
    assert len(first.axes) == 4 and len(second.axes) == 3
    # the size-1 ellipsis axis of operand 0 broadcasts against 5: it is private
    private = first.axes[1]
    assert private not in second.indices() and private not in b.spec.output.indices()
    assert b.size(private) == 1
    assert b.size(second.axes[0]) == 5


def test_labelled_size_one_axis_broadcasts_through_a_private_index():
    b = bind(parse("ij,jk->ik"), [(2, 1), (3, 4)])
    assert b.out_shape == (2, 4)
    axis = b.spec.inputs[0].axes[1]
    assert axis != "j" and axis not in "ijk"
    assert b.size(axis) == 1 and b.size("j") == 3


@given(einsum_cases())
def test_output_shape_matches_numpy(case):
    b = bind(parse(case.spec), case.shapes)
    want = np.einsum(case.spec, *[np.zeros(s) for s in case.shapes]).shape
    assert b.out_shape == want
    assert not b.spec.has_ellipsis
    for term, shape in zip(b.spec.inputs, case.shapes):
        assert len(term.axes) == len(shape)


@pytest.mark.parametrize("spec, shapes, sizes, expected", [
    ("b(h+u)(w+v)c,uvck->bhwk", [(2, 7, 6, 3), (3, 2, 3, 4)], None, (2, 5, 5, 4)),
    ("b(2h+u)(2w+v)c,uvck->bhwk", [(1, 7, 8, 1), (3, 3, 1, 1)], None, (1, 3, 3, 1)),
    ("b(h+2u)(w+2v)c,uvck->bhwk", [(1, 7, 6, 1), (3, 2, 1, 1)], None, (1, 3, 4, 1)),
    ("b(2h+u)(2w+v)c->bhwc", [(1, 5, 4, 2)], {"u": 2, "v": 2}, (1, 2, 2, 2)),
    ("b(3h+u)c->bhc", [(1, 8, 1)], {"u": 2}, (1, 3, 1)),
    ("bhwuvc->b(h+u)(w+v)c", [(1, 2, 3, 2, 2, 1)], None, (1, 3, 4, 1)),
    ("bhuc->b(2h+u)c", [(1, 3, 2, 1)], None, (1, 6, 1)),
    ("hu->(h+u)", [(3, 2)], {"h+u": 6}, (6,)),
    ("i->ij", [(3,)], {"j": 4}, (3, 4)),
])
def test_window_and_output_sizes(spec, shapes, sizes, expected):
    assert bind(parse(spec), shapes, sizes).out_shape == expected


def test_window_extent_is_the_smallest_that_fits():
    b = bind(parse("b(2h+u)c,uck->bhk"), [(1, 8, 1), (3, 1, 1)])
    assert b.size("h") == 3  # 2h+u <= 7 with u <= 2; position 7 stays uncovered
    assert isinstance(b.spec.inputs[0].axes[1], Window)


def test_out_shape_gives_sizes_of_output_only_indices():
    b = bind(parse("i->ij"), [(3,)], out_shape=(3, 5))
    assert b.out_shape == (3, 5)


# ------------------------------------------------------------------- errors
def _caret_column(err: SpecError) -> int:
    lines = str(err).splitlines()
    assert lines[-1].strip() == "^", str(err)
    indent = len(lines[-2]) - len(lines[-2].lstrip())
    return len(lines[-1]) - 1 - indent


def test_wrong_operand_count():
    with pytest.raises(SpecError, match=r"2 operand\(s\) but 3 array\(s\)"):
        bind(parse("ij,jk->ik"), [(2, 3), (3, 4), (4,)])
    with pytest.raises(SpecError, match=r"2 operand\(s\) but 1 array\(s\)"):
        bind(parse("ij,jk->ik"), [(2, 3)])


def test_rank_mismatch_names_operand_and_term():
    with pytest.raises(SpecError, match=r"operand 1 has rank 3 .*term 'nmdk' needs rank 4") as e:
        bind(parse("bnmd,nmdk->bk"), [(2, 3, 3, 4), (3, 3, 4)])
    assert "bnmd,nmdk->bk" in str(e.value)
    assert _caret_column(e.value) == 5


@pytest.mark.parametrize("spec, shapes, column", [
    ("bi,ik->bkj", [(2, 3), (3, 2)], 9),       # under the unsized 'j'
    ("bi,ik->jbk", [(2, 3), (3, 2)], 7),
    ("i->i(h+u)", [(3,)], 4),                  # under the window that lacks a size
    ("...i->j...i", [(2, 3)], 6),              # written with '...': the output's start
])
def test_an_unsized_output_index_gets_the_caret(spec, shapes, column):
    with pytest.raises(SpecError, match="appears in no operand") as e:
        bind(parse(spec), shapes)
    assert _caret_column(e.value) == column


def test_rank_too_small_for_ellipsis_term():
    with pytest.raises(SpecError, match=r"operand 0 has rank 1 .*'\.\.\.ij' needs rank at least 2"):
        bind(parse("...ij->...i"), [(3,)])


def test_size_mismatch_names_index_sizes_and_operands():
    with pytest.raises(SpecError, match=r"index 'k' has size 10 in operand 1 but 12 in operand 2"
                       ) as e:
        bind(parse("bnmd,nmdk,k->bk"), [(2, 3, 3, 4), (3, 3, 4, 10), (12,)])
    assert _caret_column(e.value) == 10
    assert "bnmd,nmdk,k->bk" in str(e.value)


def test_size_mismatch_within_one_operand():
    with pytest.raises(SpecError, match=r"index 'i' has size 2 on axis 0 of operand 0 but 3 on "
                                        r"its axis 1"):
        bind(parse("ii->i"), [(2, 3)])


def test_size_conflicts_with_sizes_argument():
    with pytest.raises(SpecError, match=r"index 'j' has size 3 in operand 0 but sizes= gives 4"):
        bind(parse("ij->i"), [(2, 3)], {"j": 4})


def test_a_size_given_agrees_with_an_axis_that_broadcasts_from_one():
    bound = bind(parse("ab,ab->ab"), [(2, 1), (2, 3)], {"b": 3})
    assert bound.out_shape == (2, 3)
    with pytest.raises(SpecError, match=r"index 'b' has size 3 in operand 1 but sizes= gives 1"):
        bind(parse("ab,ab->ab"), [(2, 1), (2, 3)], {"b": 1})
    # the operands give 'b' size 1: sizes= cannot make it larger
    with pytest.raises(SpecError, match=r"index 'b' has size 1 in operand 0 but sizes= gives 3"):
        bind(parse("ab->ab"), [(2, 1)], {"b": 3})


@pytest.mark.parametrize("key", ["2h+u", "(2h+u)"])
def test_a_size_given_for_an_input_window_must_match_its_axis(key):
    with pytest.raises(SpecError, match=r"window \(2h\+u\) length 99, but that axis of "
                                        r"operand 0 has length 5"):
        bind(parse("b(2h+u)c->bhc"), [(1, 5, 1)], {"u": 2, key: 99})
    assert bind(parse("b(2h+u)c->bhc"), [(1, 5, 1)], {"u": 2, key: 5}).out_shape == (1, 2, 1)
    # the same group in the output: the size is the output axis's
    assert bind(parse("b(h+u)->b(h+u)"), [(1, 5)], {"u": 2, key.replace("2h", "h"): 7}
                ).out_shape == (1, 7)


@pytest.mark.parametrize("sizes, match", [
    ({"q": 2}, r"sizes= names 'q', which is not an index"),
    ({"j": -1}, r"sizes\['j'\]"),
    ({"j": 2.5}, r"sizes\['j'\] must be an int"),
])
def test_bad_sizes_argument(sizes, match):
    with pytest.raises(SpecError, match=match):
        bind(parse("i->ij"), [(3,)], sizes)


@pytest.mark.parametrize("key", ["h+u),(x+y", "h+u)(x+y", "(h+u),(x+y)"])
def test_a_key_of_two_groups_names_no_window(key):
    # it parses as two terms, or as one term of two axes: not the group (h+u)
    with pytest.raises(SpecError, match=r"sizes= names .*, which is not an index"):
        bind(parse("h->(h+u)"), [(3,)], {"u": 2, key: 6})
    assert bind(parse("h->(h+u)"), [(3,)], {"u": 2, "h+u": 6}).out_shape == (6,)


def test_output_index_in_no_operand_needs_sizes():
    with pytest.raises(SpecError, match=r"output index 'j' appears in no operand.*sizes="):
        bind(parse("i->ij"), [(3,)])


def test_window_that_does_not_fit():
    with pytest.raises(SpecError, match=r"window \(h\+u\) with 'u'=5 does not fit axis of "
                                        r"length 3 in operand 0") as e:
        bind(parse("b(h+u)c,uck->bhk"), [(1, 3, 1), (5, 1, 1)])
    assert _caret_column(e.value) == 1


def test_window_without_inner_size():
    with pytest.raises(SpecError, match=r"window index 'u' .*no size.*sizes="):
        bind(parse("b(2h+u)c->bhc"), [(1, 4, 1)])


def test_a_window_written_offset_first_gets_a_hint():
    # '(u+2h)': u is taken for the outer index, h for the offset, which has no size
    with pytest.raises(SpecError, match=r"window index 'h' in \(u\+2h\) has no size: .* \(or, if "
                                        r"'u' is the offset within the window, write the outer "
                                        r"index first: \(2h\+u\)\)"):
        bind(parse("b(u+2h)c,uck->bhk"), [(1, 9, 2), (3, 2, 4)])
    with pytest.raises(SpecError) as info:  # no other operand sizes 'u': no hint
        bind(parse("b(2h+u)c,ck->bhk"), [(1, 9, 2), (2, 4)])
    assert "offset within" not in str(info.value)


def test_window_with_fixed_outer_size_that_does_not_fit():
    with pytest.raises(SpecError, match=r"window \(h\+u\) spans 6 positions"):
        bind(parse("b(h+u)c,uc,bh->b"), [(1, 5, 1), (2, 1), (1, 5)])


def test_an_empty_output_window_is_refused_as_an_input_window_is():
    with pytest.raises(SpecError, match=r"output window \(h\+u\) has size 'u'=0; a window "
                                        r"holds at least one position"):
        bind(parse("hk->(h+u)k"), [(2, 3)], {"u": 0})
    with pytest.raises(SpecError, match=r"window \(h\+u\) has size 'u'=0"):
        bind(parse("(h+u)k->hk"), [(1, 3)], {"u": 0})


def test_a_window_with_no_position_spans_nothing():
    assert Window("h", "u", 3, 1).span(0, 2) == 0
    assert bind(parse("hk,uk->(3h+u)"), [(0, 2), (2, 2)]).out_shape == (0,)
    assert bind(parse("b(2h+u),bh->b"), [(2, 0), (2, 0)], {"u": 1}).out_shape == (2,)


def test_a_requested_output_window_length_of_0_is_kept():
    """A length 0 asked for (as a backward pass asks for its operand's shape)
    is not 'no length given': sizes= would have made this window 5 long."""
    spec = parse("hk,uk->(3h+u)")
    assert bind(spec, [(0, 2), (2, 2)], {"(3h+u)": 5}).out_shape == (5,)
    assert bind(spec, [(0, 2), (2, 2)], {"(3h+u)": 5}, (0,)).out_shape == (0,)


def test_repeated_ellipsis_letters_do_not_collide_with_user_letters():
    # fresh letters for '...' start with uppercase: the spec already uses 'A'
    b = bind(parse("A...,...->A..."), [(2, 3), (3,)])
    assert b.out_shape == (2, 3)
    assert len(set(b.spec.inputs[0].axes)) == 2


def test_bind_does_not_touch_ellipsis_of_spec():
    spec = parse("...ij,...jk->...ik")
    bind(spec, [(2, 1, 3, 4), (5, 4, 2)])
    assert spec.inputs[0].axes[0] == ELLIPSIS


def test_spec_text_binds_to_the_same_bound_as_the_parsed_spec():
    shapes = ((2, 3, 3, 4), (3, 3, 4, 5))
    by_text = bind_text("bnmd,nmdk->bk", shapes)
    assert by_text is bind_text("bnmd,nmdk->bk", shapes)  # served from the text cache
    assert by_text == bind(parse("bnmd,nmdk->bk"), shapes)
    assert bind_text("bnmd,nmdk->bk", ((1, 3, 3, 4), (3, 3, 4, 5))).out_shape == (1, 5)


def test_spec_text_that_fails_to_bind_leaves_no_cache_entry():
    with pytest.raises(SpecError, match="operand"):
        bind_text("ij,jk->ik", ((2, 3),))
    assert ("ij,jk->ik", ((2, 3),)) not in bind_module.bound_by_text


def test_clearing_the_bind_cache_drops_derived_plans():
    shapes = ((2, 3), (3, 4))
    bound = bind_text("ij,jk->ik", shapes)
    plan = make_plan(bound, "sum")
    assert make_plan(bound, "sum") is plan  # kept on the bound spec
    clear_bind_cache()
    fresh = bind_text("ij,jk->ik", shapes)
    assert fresh is not bound and fresh == bound
    assert make_plan(fresh, "sum") is not plan


@pytest.mark.parametrize("size", [np.array(3.0), np.array([3]), 3.0, True])
def test_a_size_that_is_no_int_is_a_spec_error(size):
    with pytest.raises(SpecError, match=r"sizes\['z'\] must be an int"):
        cn_einsum("ij->ijz", np.ones((2, 3)), sizes={"z": size})


@pytest.mark.parametrize("size", [np.array(3), np.int16(3)])
def test_a_size_may_be_a_numpy_integer(size):
    assert cn_einsum("ij->ijz", np.ones((2, 3)), sizes={"z": size}).shape == (2, 3, 3)


def test_an_output_past_numpy_s_axis_limit_is_a_spec_error():
    letters = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMN"
    greek = "".join(chr(0x3B1 + i) for i in range(40))
    a = np.ones((1,) * 40)
    with pytest.raises(SpecError, match="the output would have 80 axes; a numpy array holds "
                                        "at most 64"):
        cn_einsum(f"{letters},{greek}->{letters}{greek}", a, a)


def test_a_repeated_index_of_size_one_does_not_broadcast_against_its_partner():
    # numpy refuses it too: "ii" of shape (1, 3) is no diagonal
    with pytest.raises(SpecError, match="repeated in operand 0 with sizes"):
        cn_einsum("ii,i->i", np.ones((1, 3)), np.arange(3.0))


def test_windows_sharing_an_outer_index_read_only_positions_both_hold():
    x, y = np.arange(5.0), np.arange(6.0)
    got = cn_einsum("(h+u),(h+u)->h", x, y, sizes={"u": 2})
    np.testing.assert_allclose(got, sum(x[u:u + 4] * y[u:u + 4] for u in range(2)))


def test_an_output_window_one_short_of_its_span_is_refused():
    with pytest.raises(SpecError, match="needs length >= 4, got 3"):
        cn_einsum("hk,uk->(h+u)", np.ones((3, 2)), np.ones((2, 2)), sizes={"h+u": 3})


@pytest.mark.parametrize("spec, sizes, out_shape, message", [
    ("i->ii", None, (3, 4), "'i' has size 3 but the requested output shape has 4"),
    ("i->iq", {"q": 2}, (3, 5), "'q' has size 2 but the requested output shape has 5"),
])
def test_a_requested_output_shape_that_disagrees_is_refused(spec, sizes, out_shape, message):
    with pytest.raises(SpecError, match=message):
        bind(parse(spec), [(3,)], sizes=sizes, out_shape=out_shape)


def test_an_operand_of_64_axes_binds():
    assert cn_einsum("...->...", np.ones((1,) * 64)).shape == (1,) * 64


@pytest.mark.parametrize("shape, message", [((2.5, 3), "must be a sequence of ints"),
                                            ((True, 3), "not bools")])
def test_a_shape_of_non_integers_is_refused(shape, message):
    with pytest.raises(SpecError, match=message):
        bind(parse("ij->ij"), [shape])


def test_the_cache_of_bound_spec_texts_stays_bounded():
    clear_bind_cache()
    for n in range(bind_module._BOUND_BY_TEXT_MAX + 10):
        bind_text("i->i", ((n + 1,),))
    assert 0 < len(bind_module.bound_by_text) <= bind_module._BOUND_BY_TEXT_MAX
    clear_bind_cache()
