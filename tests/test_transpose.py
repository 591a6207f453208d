"""Transposed specs: pure structure (no arrays) and the shapes they bind to."""
from __future__ import annotations

import pytest
from hypothesis import given

from contractnet.bind import bind
from contractnet.spec import SpecError, parse
from contractnet.transpose import transpose
from strategies import einsum_cases


@pytest.mark.parametrize("spec, operand, expected", [
    ("bnmd,nmdk->bk", 0, "bk,nmdk->bnmd"),
    ("bnmd,nmdk->bk", 1, "bnmd,bk->nmdk"),
    ("bi,ikj,bj->bk", 1, "bi,bk,bj->ikj"),
    ("bqd,bkd->bqk", 1, "bqd,bqk->bkd"),
    ("ij->ji", 0, "ji->ij"),
    ("ij->", 0, "->ij"),
    ("ii->i", 0, "i->ii"),
    (",->", 1, ",->"),
    ("b(h+u)(w+v)c,uvck->bhwk", 0, "bhwk,uvck->b(h+u)(w+v)c"),
    ("b(h+u)(w+v)c,uvck->bhwk", 1, "b(h+u)(w+v)c,bhwk->uvck"),
    ("b(2h+u)(2w+v)c->bhwc", 0, "bhwc->b(2h+u)(2w+v)c"),
])
def test_transposed_spec_text(spec, operand, expected):
    assert str(transpose(parse(spec), operand)) == expected


@pytest.mark.parametrize("operand", [-1, 2])
def test_operand_out_of_range(operand):
    with pytest.raises(SpecError, match=rf"operand {operand} is out of range.* 2 operand"):
        transpose(parse("ij,jk->ik"), operand)


@given(einsum_cases())
def test_transpose_twice_is_identity(case):
    spec = bind(parse(case.spec), case.shapes).spec
    for i in range(len(spec.inputs)):
        assert transpose(transpose(spec, i), i) == spec


@given(einsum_cases())
def test_transposed_spec_binds_to_the_operand_shape(case):
    """The backward spec of operand i produces exactly operand i's shape."""
    bound = bind(parse(case.spec), case.shapes)
    for i, shape in enumerate(bound.in_shapes):
        back = transpose(bound.spec, i)
        shapes = list(bound.in_shapes)
        shapes[i] = bound.out_shape
        assert bind(back, shapes, out_shape=shape).out_shape == shape


def test_transpose_touches_no_arrays():
    # a Spec in, a Spec out: the result is parsed structure, equal to its own text
    back = transpose(parse("bnmd,nmdk->bk"), 0)
    assert parse(str(back)) == back
