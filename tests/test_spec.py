"""Parser: structure, str/parse round trip, numpy's implicit output, errors."""
from __future__ import annotations

import re

import numpy as np
import pytest
from hypothesis import given

from contractnet.spec import (ELLIPSIS, Spec, SpecError, Term, Window, interleaved_spec,
                              parse)
from strategies import einsum_cases

ROUND_TRIP = [
    "ij,jk->ik", "ij,jk", "ii->i", "ii", "i,i->", ",->", "->", "ij->ji", "ij->",
    "...ij,...jk->...ik", "...ij,...jk", "bnmd,nmdk->bk", "bnmd,nr,mr,dr,kr->bk",
    "bi,ikj,bj->bk", "bqd,bkd->bqk", "a...b,b...", "i...->...",
    "b(h+u)(w+v)c,uvck->bhwk", "b(2h+u)(2w+v)c->bhwc", "b(h+2u)c,uck->bhk",
    "b(3h+2u)c,uck->bhk", "bhwuvc->b(h+u)(w+v)c", "i->ij", "i->ii", "ABab,ba",
]


@pytest.mark.parametrize("text", ROUND_TRIP)
def test_str_parses_back_to_an_equal_spec(text):
    spec = parse(text)
    assert parse(str(spec)) == spec
    assert "->" in str(spec)  # str is always explicit
    assert hash(parse(str(spec))) == hash(spec)


@pytest.mark.parametrize("text", ["ij,jk->ik", "b(2h+u)c,uck->bhk", "...ij,...jk->...ik",
                                  "bhwuvc->b(h+u)(w+v)c", "i->ii"])
def test_str_of_explicit_spec_is_the_text(text):
    assert str(parse(text)) == text


def test_spaces_are_ignored():
    assert parse(" i j , j k -> i k ") == parse("ij,jk->ik")
    assert parse("b( 2h + u )c,uck->bhk") == parse("b(2h+u)c,uck->bhk")


def test_structure_of_a_plain_spec():
    spec = parse("bnmd,nmdk->bk")
    assert spec == Spec((Term(tuple("bnmd")), Term(tuple("nmdk"))), Term(tuple("bk")))
    assert spec.indices() == set("bnmdk")


def test_ellipsis_is_one_axis_item():
    spec = parse("...ij,j...->i...")
    assert spec.inputs[0].axes == (ELLIPSIS, "i", "j")
    assert spec.inputs[1].axes == ("j", ELLIPSIS)
    assert spec.output.axes == ("i", ELLIPSIS)
    assert spec.has_ellipsis


@pytest.mark.parametrize("text, window", [
    ("(h+u)", Window("h", "u", 1, 1)),
    ("(2h+u)", Window("h", "u", 2, 1)),
    ("(h+2u)", Window("h", "u", 1, 2)),
    ("(3h+2u)", Window("h", "u", 3, 2)),
    ("(3*h+2*u)", Window("h", "u", 3, 2)),
    ("( 12 * h + 2 * u )", Window("h", "u", 12, 2)),
])
def test_window_group_parses_to_window(text, window):
    spec = parse(f"b{text}c->bhuc")
    assert spec.inputs[0].axes == ("b", window, "c")
    assert spec.inputs[0].windows == (window,)


def test_conv_spec_structure():
    spec = parse("b(2h+u)(w+3v)c,uvck->bhwk")
    assert spec.inputs[0].axes == ("b", Window("h", "u", 2, 1), Window("w", "v", 1, 3), "c")
    assert list(spec.inputs[0].indices()) == list("bhuwvc")
    assert not spec.inputs[0].is_plain


def test_output_window_parses():
    spec = parse("bhwuvc->b(h+u)(w+v)c")
    assert spec.output.axes == ("b", Window("h", "u"), Window("w", "v"), "c")


def test_window_span_and_extent():
    w = Window("h", "u", stride=2, dilation=3)
    assert w.span(4, 2) == 2 * 3 + 3 * 1 + 1
    assert w.outer_extent(10, 2) == 4  # positions 2h+3u <= 9 with u<=1: h<=3
    assert w.outer_extent(10 + 1, 2) == 4  # one uncovered tail position
    assert Window("h", "u").outer_extent(2, 3) <= 0


# ------------------------------------------------------------ implicit output
@pytest.mark.parametrize("text, expected", [
    ("ij,jk", "ik"), ("ba", "ab"), ("ii", ""), ("i,i", ""), ("bA", "Ab"),
    ("ba,AB", "ABab"), ("a...b,b...", "...a"), ("Zz,zA", "AZ"), ("", ""),
])
def test_implicit_output_orders_like_numpy(text, expected):
    assert str(parse(text).output) == expected


@given(einsum_cases(max_operands=3))
def test_implicit_output_matches_numpy_on_values(case):
    """Running numpy on str(parse(text)) gives exactly numpy's answer for text."""
    ops = case.operands()
    want = np.einsum(case.spec, *ops)
    got = np.einsum(str(parse(case.spec)), *ops)
    assert got.shape == want.shape
    np.testing.assert_array_equal(got, want)


def test_uppercase_before_lowercase_agrees_with_numpy():
    x = np.arange(6.0).reshape(2, 3)
    np.testing.assert_array_equal(np.einsum(str(parse("bA")), x), np.einsum("bA", x))
    assert np.einsum("bA", x).shape == (3, 2)


# ------------------------------------------------------------------- errors
@pytest.mark.parametrize("text, shown, caret_under", [
    ("ij,\njk->ik", "ij,\\njk->ik", "\\n"),        # a newline would split the quoted line
    ("ij,jk->i\tk", "ij,jk->i\\tk", "\\t"),        # a tab would move the caret
    ("ij,j\u0301k->ik", "ij,j\\u0301k->ik", "\\u0301"),  # a combining mark takes no column
    ("\uff49j,j$->\uff49", "\uff49j,j$->\uff49", "$"),  # a wide letter takes two
])
def test_the_caret_stays_under_its_character_in_the_quoted_spec(text, shown, caret_under):
    with pytest.raises(SpecError) as info:
        parse(text)
    quoted, caret = str(info.value).splitlines()[-2:]
    assert quoted == "  " + shown
    wide = sum(1 for ch in quoted[:caret.index("^")] if ch == "\uff49")  # two columns each
    assert quoted[caret.index("^") - wide:].startswith(caret_under)


def test_an_invalid_character_beyond_ascii_is_named():
    with pytest.raises(SpecError, match=r"invalid character '\\u0301' \(COMBINING ACUTE ACCENT\)"):
        parse("ij,j\u0301k->ik")
    with pytest.raises(SpecError, match=r"invalid character '\u00b2' \(SUPERSCRIPT TWO\)"):
        parse("ij,j\u00b2->ik")


def _caret_column(err: SpecError) -> int:
    """Column of the caret relative to the quoted spec line."""
    lines = str(err).splitlines()
    assert lines[-1].strip() == "^", str(err)
    spec_line, caret_line = lines[-2], lines[-1]
    indent = len(spec_line) - len(spec_line.lstrip())
    return len(caret_line) - 1 - indent


@pytest.mark.parametrize("text, match, column", [
    ("ij,j$->i", r"invalid character '\$'", 4),
    ("ij,j1->i", r"invalid character '1'", 4),
    ("i->i->i", r"only one '->'", 4),
    ("ij-jk", r"stray '-'", 2),
    ("ij>jk", r"stray '>'", 2),
    ("ij,jk-", r"stray '-'", 5),
    ("b(-2h+u)->bh", r"stray '-' in a window group: its strides and dilations are positive", 2),
    ("b(2h-u)->bh", r"stray '-' in a window group", 4),
    ("b(h+uc->b-h", r"stray '-': the output is introduced by '->'", 9),  # the group never closes
    ("i.j->ij", r"'\.' must be part of an ellipsis", 1),
    ("i..->i", r"'\.' must be part of an ellipsis", 1),
    ("......->...", r"at most one ellipsis", 3),
    ("b(h+u c,uc->bh", r"not closed", 1),
    ("b(h+u", r"not closed", 1),
    ("b(h+u+v)c->bc", r"expected '\)' after its second part, found '\+'", 5),
    ("b(h+u v)c->bc", r"expected '\)' after its second part, found 'v'", 6),
    ("b(2h+u 3)c->bc", r"expected '\)' after its second part, found '3'", 7),
    ("(h+u,),u->h", r"expected '\)' after its second part, found ','", 4),
    ("bh+uc->b", r"invalid character '\+'", 2),
    ("bh+u)c->b", r"unbalanced '\)'", 4),
    ("bh)c->b", r"unbalanced '\)'", 2),
    ("b(hu)c->bhuc", r"expected '\+'", 3),
    ("b(h+)c->bhc", r"expected an index letter", 4),
    ("b(+u)c->buc", r"expected an index letter", 2),
    ("b(0h+u)c->bhuc", r"positive integer, got 0", 2),
    ("b(h+0u)c->bhuc", r"positive integer, got 0", 4),
    ("b(99999999999999999999h+u)c->bhuc", r"99999999999999999999 is too large \(at most", 2),
    ("b(h+h)c->bhc", r"index 'h' twice", 1),
    ("b(\u00b2h+u)c->bhuc", r"expected an index letter in window group, found '\u00b2'", 2),
    ("b(\uff12h+u)c->bhuc", r"expected an index letter in window group, found '\uff12'", 2),
    ("ij,j\u00b2->i", r"invalid character '\u00b2'", 4),
    ("i->i,i", r"single term", 4),
])
def test_malformed_spec_raises_with_caret(text, match, column):
    with pytest.raises(SpecError, match=match) as info:
        parse(text)
    err = info.value
    assert text in str(err), "the message quotes the spec"
    assert isinstance(err, ValueError)
    assert _caret_column(err) == column
    assert err.position == column


def test_non_string_spec_is_refused():
    with pytest.raises(SpecError, match="must be a string"):
        parse(["ij"])


def test_error_message_layout():
    with pytest.raises(SpecError) as info:
        parse("ij,j$->i")
    lines = str(info.value).splitlines()
    assert lines[1] == "  ij,j$->i"
    assert lines[2] == "  " + " " * 4 + "^"
    assert re.search(r"invalid character", lines[0])


@pytest.mark.parametrize("sublists, output, text", [
    ([[0, 1], [1, 2]], [0, 2], "AB,BC->AC"),
    ([[25, 26, 51]], None, "Zaz"),
    ([(Ellipsis, 3)], [3, Ellipsis], "...D->D..."),
    ([[]], None, ""),
    ([[]], [], "->"),
    ([range(3)], [Ellipsis], "ABC->..."),
])
def test_interleaved_spec_text(sublists, output, text):
    assert interleaved_spec(sublists, output) == text
    parse(text)  # what it writes parses


@pytest.mark.parametrize("sublist, match", [
    ([52], r"subscript 52"), ([-3], r"subscript -3"), (["a"], r"subscript 'a'"),
    ([False], r"subscript False"), ("ab", r"'ab' is not a sequence"),
    (7, r"7 is not a sequence"),
])
def test_interleaved_spec_refuses_bad_subscripts(sublist, match):
    with pytest.raises(SpecError, match=match):
        interleaved_spec([sublist])


def test_a_0d_array_is_no_sublist():
    with pytest.raises(SpecError, match=r"sublist array\(0\) is not a sequence of integers"):
        interleaved_spec([np.array(0)])  # it iterates no more than a number does


def test_any_iterable_numpy_takes_is_a_sublist():
    assert interleaved_spec([range(2), np.array([1, 2])]) == "AB,BC"
    assert interleaved_spec([(i for i in (0, 1)), map(int, "12")], iter([0, 2])) == "AB,BC->AC"
    assert interleaved_spec([{0: 0, 1: 0}.keys()]) == "AB"


def test_a_repeated_index_is_not_an_index_one_operand_has_alone():
    # a diagonal "ii" is read as one axis of two; explain's notes rest on this
    assert parse("ii,j->j").lone_indices() == {}
    assert parse("iij,k->k").lone_indices() == {0: ("j",)}


def test_the_largest_accepted_window_coefficient():
    assert parse("(2147483647h+u)->hu").inputs[0].axes[0].stride == 2147483647


def test_a_pickled_spec_hashes_as_a_fresh_one_in_another_process():
    # string hashes differ between processes: a hash cached before pickling
    # must not travel, or the loaded spec misses every cache keyed by specs
    import os
    import pickle
    import subprocess
    import sys
    spec = parse("bnmd,nmdk->bk")
    hash(spec), hash(spec.inputs[0])  # cached now
    code = ("import pickle, sys; from contractnet import parse; "
            "s = pickle.loads(bytes.fromhex(sys.argv[1])); f = parse('bnmd,nmdk->bk'); "
            "print(s == f, hash(s) == hash(f), hash(s.inputs[0]) == hash(f.inputs[0]), "
            "s in {f})")
    env = {**os.environ, "PYTHONHASHSEED": "12345"}
    out = subprocess.run([sys.executable, "-c", code, pickle.dumps(spec).hex()],
                         capture_output=True, text=True, check=True, env=env)
    assert out.stdout.split() == ["True"] * 4
