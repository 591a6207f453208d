"""``contractnet explain``: the account of a spec, and its command line."""
from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest

import contractnet as cn
from contractnet.cli import main
from contractnet.explanation import explain


def test_head_explanation_shows_backward_specs_and_the_flatten_equivalent():
    text = explain("bnmd,nmdk->bk", (8, 4, 4, 5), (4, 4, 5, 10))
    assert "d operand 0: bk,nmdk->bnmd" in text
    assert "d operand 1: bnmd,bk->nmdk" in text
    assert "X[b | nmd] @ W[nmd | k]   (8 x 80) @ (80 x 10)" in text
    assert "flatten order of the contracted group: 'nmd'" in text


def test_cn_explain_takes_shapes_as_backward_specs_does():
    text = cn.explain("bi,ikj,bj->bk", (4, 5), (5, 3, 6), (4, 6))
    assert "d operand 1: bi,bk,bj->ikj" in text
    assert cn.backward_specs("bi,ikj,bj->bk", (4, 5), (5, 3, 6), (4, 6))[1] == "bi,bk,bj->ikj"
    with pytest.raises(cn.SpecError, match=r"2 operand\(s\) but 3 shape\(s\)"):
        explain("bi,ik->bk", (2, 3), (3, 4), {"b": 2})  # sizes= is by keyword only


def test_letters_for_ellipsis_and_broadcast_axes_are_told():
    text = explain("...ij,jk->...ik", (2, 3, 4), (4, 5))
    assert "sizes     A=2, i=3, j=4, k=5\n          (A: an axis under '...' or broadcast" in text
    assert "(A, B: axes under '...'" in explain("ij,ij->ij", (2, 1), (1, 3))
    assert "under '...'" not in explain("ij,jk->ik", (2, 3), (3, 4))


def test_the_flatten_order_is_told_only_where_a_flatten_merges_axes():
    text = explain("bk,nmdk->bnmd", (2, 10), (4, 4, 3, 10))  # contracts k alone
    assert "X[b | k] @ W[k | nmd]" in text and "flatten order" not in text


@pytest.mark.parametrize("spec, shapes, product, reorder", [
    ("ij,jk->ik", [(2, 3), (3, 4)], "X[i | j] @ W[j | k]   (2 x 3) @ (3 x 4)", None),
    ("ij,jk->ki", [(2, 3), (3, 4)], "W[k | j] @ X[j | i]   (4 x 3) @ (3 x 2)", None),
    ("jk,ij->ik", [(3, 4), (2, 3)], "W[i | j] @ X[j | k]   (2 x 3) @ (3 x 4)", None),
    ("acj,jk->akc", [(2, 5, 3), (3, 4)], "X[ac | j] @ W[j | k]   (10 x 3) @ (3 x 4)",
     "then its axes 'ack' put in the output's order 'akc'"),
])
def test_the_flatten_equivalent_gives_the_output_in_its_order(spec, shapes, product, reorder):
    text = explain(spec, *shapes)
    assert f"  {product}\n" in text + "\n"
    assert (reorder in text) if reorder else "then its axes" not in text
    # the product as printed, computed with numpy, is the contraction
    x, w = (np.random.default_rng(0).standard_normal(s) for s in shapes)
    if spec == "ij,jk->ki":
        np.testing.assert_allclose(w.T @ x.T, cn.einsum(spec, x, w))
    if spec == "jk,ij->ik":
        np.testing.assert_allclose(w @ x, cn.einsum(spec, x, w))


def test_cp_explanation_shows_the_pairwise_path_and_flops():
    text = explain("bnmd,nr,mr,dr,kr->bk", sizes=dict(b=8, n=3, m=3, d=4, k=5, r=2))
    assert "pairwise path" in text and "FLOPs" in text
    assert "d operand 4: bnmd,nr,mr,dr,bk->kr" in text


def test_windowed_spec_shows_its_scatter_backward():
    text = explain("b(2h+u)(2w+v)c,uvck->bhwk")
    assert "d operand 0: bhwk,uvck->b(2h+u)(2w+v)c" in text
    assert "d operand 1: b(2h+u)(2w+v)c,bhwk->uvck" in text


def test_window_size_from_sizes_without_shapes():
    assert "u=2" in explain("b(2h+u)c->bhc", sizes={"u": 2})


@pytest.mark.parametrize("key", ["2h+u", "(2h+u)", "2*h + u", "(2h+1u)", "( 2h + u )"])
def test_a_group_length_is_read_in_any_spelling_einsum_takes(key):
    assert "operand 0 '(2h+u)'  shape (9,)" in explain("(2h+u)->h", sizes={key: 9})
    with pytest.raises(cn.SpecError, match=r"window group \(2h\+u\) twice"):
        explain("(2h+u)->h", sizes={key: 9, "2 * h + 1 * u": 11})


@pytest.mark.parametrize("spec, line", [
    ("b(2h+u)(2w+v)c->bhwc", "sizes     b=8, c=8, h=8, u=3, v=3, w=8"),
    ("i->ij", "output    'ij'  shape (8, 8)"),
    ("bh->b(h+u)", "sizes     b=8, h=8, u=3")])
def test_default_sizes_reach_window_and_output_only_indices(spec, line):
    assert line in explain(spec).splitlines()


@pytest.mark.parametrize("spec, notes", [
    ("bnmd,nmdk->bk", []),
    ("bnme,nmdk->bk", ["note      index 'e' is only in operand 0 'bnme': it is summed there "
                       "before anything else",
                       "note      index 'd' is only in operand 1 'nmdk': it is summed there "
                       "before anything else"]),
    ("bi,ik->bq", ["note      index 'k' is only in operand 1 'ik': it is summed there before "
                   "anything else",
                   "note      index 'q' is only in the output: the result is broadcast "
                   "along it"]),
    ("bi->b", []),  # summing away is what a one-operand spec does
    ("ii,i->i", []),  # a diagonal, not a lone index
    ("b(2h+u)c,uck->bhk", []),  # a window's inner index is in both operands
])
def test_an_index_in_one_term_only_gets_a_note(spec, notes):
    lines = explain(spec).splitlines()
    assert [line for line in lines if line.startswith("note")] == notes


def test_the_path_shown_multiplies_terms_of_the_same_indices_first():
    text = explain("ij,jk,ji->ik", (3, 4), (4, 5), (4, 3))
    assert "  first ij,ji->ji  (terms of the same indices, multiplied)" in text
    assert "  then pairs of jk,ji->ik" in text


def test_the_path_shown_is_planned_after_the_sums_of_lone_indices():
    text = explain("jvoh,jos,hjs->os", (7, 64, 100, 10), (7, 100, 256), (10, 7, 256))
    assert "  first jvoh->jho  (the indices only it has, summed)" in text  # laid out for its GEMM
    assert "  then pairs of jos,hjs,jho->os" in text
    # the pairs' 3,942,400 and the sum's 2 x 448,000 (233 million planned with v)
    assert "FLOPs (opt_einsum count) 4,838,400" in text
    assert "first" not in explain("bi,ij,jk->bk") and "then pairs" not in explain("bi,ij,jk->bk")
    # the largest intermediate counts the sums
    assert "largest intermediate 250,000 elements" in explain(
        "abz,a,b->", (500, 500, 8), (500,), (500,))


def test_the_flops_shown_count_the_steps_before_the_pairs():
    # a sum and a product first: counted as opt_einsum counts any step, and the
    # naive count is the whole spec's, as opt_einsum gives it
    import opt_einsum
    shapes = (8, 8, 1000), (8, 8), (8, 8)
    text = explain("abx,bc,bc->ac", *shapes)
    naive = opt_einsum.contract_path("abx,bc,bc->ac", *shapes, shapes=True)[1].naive_cost
    assert naive == 1_536_000
    assert f"FLOPs (opt_einsum count) {2 * 64_000 + 64 + 2 * 512:,};  naive {naive:,}" in text
    for spec, shapes in (("ab,ab,ab->ab", [(4, 5)] * 3), ("a,b,c->", [(4,), (5,), (6,)])):
        naive = opt_einsum.contract_path(spec, *shapes, shapes=True)[1].naive_cost
        assert f";  naive {naive:,}\n" in explain(spec, *shapes)  # 60 and 240


@pytest.mark.parametrize("spec, shapes, sizes", [
    ("b(2h+u)(2w+v)c,uvck->bhwk", [(2, 8, 9, 3), (3, 3, 3, 4)], None),  # windows stop short
    ("b(h+u),h->b", [(2, 8), (5,)], {"u": 2}),        # the outer index sized by another operand
    ("b(2h+u)c,uck,h->bk", [(2, 9, 3), (3, 3, 4), (2,)], None),
    ("bhk,uck->b(h+u)c", [(2, 5, 4), (3, 3, 4)], {"h+u": 9}),  # an output window, longer
    ("(h+2u),u->(h+2u)", [(3,), (1,)], {"(h+2u)": 4}),  # one group, two lengths in a gradient
    ("(3w+v)wh(3h+u)b,uvv->(3w+v)j(3h+u)b", [(11, 1, 4, 12, 1), (1, 1, 1)],
     {"j": 3, "3w+v": 7}),
    ("ij,j->ij", [(3, 1), (4,)], None),                # a broadcast axis: a private letter
    ("b...(2h+u)->b...h", [(2, 4, 20, 8)], {"u": 3}),  # '...' before the window
    ("bnmd,nmdk->bk", [(2, 3, 3, 4), (3, 3, 4, 5)], None),
])
def test_every_backward_spec_runs_by_hand_with_the_sizes_explain_gives(spec, shapes, sizes):
    # the printed spec, run with cn.einsum on the forward's operands with the
    # cotangent in the operand's place and the note's sizes, is the vjp's gradient
    import ast
    rng = np.random.default_rng(0)
    operands = [rng.standard_normal(s) for s in shapes]
    out, vjp_fn = cn.vjp(lambda *xs: cn.einsum(spec, *xs, sizes=sizes), *operands)
    cotangent = rng.standard_normal(np.shape(out))
    grads = vjp_fn(cotangent)
    lines = explain(spec, *shapes, sizes=sizes).splitlines()
    for i, text in enumerate(cn.backward_specs(spec, *shapes, sizes=sizes)):
        after = (lines + [""])[lines.index(f"  d operand {i}: {text}") + 1]
        by_hand = {}
        if "to run it by hand" in after:
            by_hand = ast.literal_eval(after[after.index("{"):after.index("}") + 1])
        reads = list(operands)
        reads[i] = cotangent
        np.testing.assert_allclose(cn.einsum(text, *reads, sizes=by_hand or None), grads[i],
                                   rtol=1e-12, atol=1e-12, err_msg=f"{spec}: operand {i}")


def test_naive_flops_are_shown_where_a_path_can_beat_them():
    assert "naive" not in explain("bi,ik->bk") and "naive" not in explain("b(h+u)c->bhc")
    assert "naive" in explain("bi,ij,jk->bk")


def test_defaulted_sizes_are_named():
    lines = explain("bi,ik->bk", sizes={"b": 2, "i": 3}).splitlines()
    assert "          (not given, so taken as defaults: k; give --shapes or --sizes)" in lines
    assert "defaults" not in explain("bi,ik->bk", (2, 3), (3, 4))


def test_a_window_stopping_short_of_its_axis_says_how_to_run_the_gradient_by_hand():
    text = explain("b(2h+u)(2w+v)c,uvck->bhwk", (2, 8, 9, 3), (3, 3, 3, 4))
    note = "    (to run it by hand, give sizes {'(2h+u)': 8}, on the command line " \
           "--sizes '(2h+u)=8')"
    assert text.splitlines()[text.splitlines().index(
        "  d operand 0: bhwk,uvck->b(2h+u)(2w+v)c") + 1] == note
    full = explain("b(2h+u)(2w+v)c,uvck->bhwk", (2, 9, 9, 3), (3, 3, 3, 4)).splitlines()
    assert full[full.index("  d operand 0: bhwk,uvck->b(2h+u)(2w+v)c") + 1].startswith("  d ")
    # '...' before the window: the window's own axis length
    assert "give sizes {'u': 3, '(2h+u)': 8}" in explain("b...(2h+u)->b...h", (2, 4, 20, 8),
                                                         sizes={"u": 3})
    assert "give sizes {'u': 3, '(2h+u)': 8}" in explain("b...(2h+u)->b...h", (2, 8),
                                                         sizes={"u": 3})
    # the note's sizes run the printed spec to the gradient
    rng = np.random.default_rng(0)
    x, w = rng.standard_normal((2, 8, 9, 3)), rng.standard_normal((3, 3, 3, 4))
    spec = "b(2h+u)(2w+v)c,uvck->bhwk"
    y, vjp_fn = cn.vjp(lambda x, w: cn.einsum(spec, x, w), x, w)
    dy = rng.standard_normal(y.shape)
    by_hand = cn.einsum(cn.backward_specs(spec, x.shape, w.shape)[0], dy, w,
                        sizes={"(2h+u)": 8})
    np.testing.assert_allclose(by_hand, vjp_fn(dy)[0], rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("spec, outer", [("b(2h+u)c->bhc", "b(2h+u)c"),
                                         ("bhc->b(2h+u)c", "bhc")])
def test_a_window_length_in_sizes_sets_its_outer_index(spec, outer):
    """With no shapes, a group length given in sizes gives h as many positions
    as fit it (4 in 9 at stride 2 and width 2), not the default 8."""
    text = explain(spec, sizes={"u": 2, "(2h+u)": 9})
    assert "sizes     b=8, c=8, h=4, u=2" in text
    assert "taken as defaults: b, c;" in text
    shape = "(8, 9, 8)" if outer == "b(2h+u)c" else "(8, 4, 8)"
    assert f"operand 0 '{outer}'  shape {shape}" in text


def test_a_window_length_sets_an_output_only_outer_index_and_the_fewest_positions_win():
    text = explain("bc,uck->b(h+u)k", sizes={"(h+u)": 12})
    assert "h=10" in text and "defaults: b, c, k, u;" in text
    text = explain("b(h+u)c,b(h+v)c->bhuv", sizes={"(h+u)": 10, "(h+v)": 12})
    assert "sizes     b=8, c=8, h=8, u=3, v=3" in text  # 8 positions fit both lengths


@pytest.mark.parametrize("spec, sizes, line", [
    ("b(h+u)c,b(u+v)c->b", {"(h+u)": 10, "(u+v)": 6}, "b=8, c=8, h=8, u=3, v=3"),
    ("b(u+v)c,b(h+u)c->b", {"(h+u)": 10, "(u+v)": 6}, "b=8, c=8, h=8, u=3, v=3"),
    ("b(h+u),b(u+h)->b", {"(h+u)": 10, "(u+h)": 10}, "b=8, h=3, u=3")])
def test_an_index_that_is_also_a_windows_inner_index_keeps_its_size(spec, sizes, line):
    """Deriving it would change other windows' spans after they were reckoned
    (u=4 from (u+v)=6 would make (h+u) span 11 of its 10)."""
    assert f"sizes     {line}\n" in explain(spec, sizes=sizes)


@pytest.mark.parametrize("length, message", [(2.5, r"must be an int, got 2.5"),
                                             (-3, r"must be a non-negative int, got -3")])
def test_a_group_length_that_is_no_length_is_refused_as_bind_refuses_it(length, message):
    with pytest.raises(cn.SpecError, match=message):
        explain("b(2h+u)c,uck->bhk", sizes={"(2h+u)": length})


def test_a_window_length_shorter_than_its_window_is_refused():
    with pytest.raises(cn.SpecError, match=r"window \(h\+u\) with 'u'=3 does not fit the "
                                           r"length 2 sizes= gives it\n"
                                           r"  b\(h\+u\)c,uck->bhk\n   \^"):  # the caret
        explain("b(h+u)c,uck->bhk", sizes={"(h+u)": 2})


def test_a_shape_count_that_differs_from_the_operand_count_is_named(capsys):
    assert main(["explain", "ab,bc->ac", "--shapes", "2x3"]) == 2
    assert "spec has 2 operand(s) but 1 shape(s) were given" in capsys.readouterr().err


def test_cli_names_its_option_where_a_size_disagrees(capsys):
    assert main(["explain", "ij,jk->ik", "--shapes", "3x4", "4x5", "--sizes", "j=7"]) == 2
    assert "index 'j' has size 4 in operand 0 but --sizes gives 7" in capsys.readouterr().err


def test_cli_reads_python_tuples_as_shapes(capsys):
    assert main(["explain", "i,ij->j", "--shapes", "(3,)", "(3, 4)"]) == 0
    assert "operand 0 'i'  shape (3,)" in capsys.readouterr().out


def test_cli_reads_a_spec_that_starts_like_an_option(capsys):
    assert main(["explain", "->", "--shapes", "()"]) == 0
    out = capsys.readouterr().out
    assert "operand 0 ''  shape ()" in out and "d operand 0: ->" in out


def test_cli_without_a_command_is_a_usage_error(capsys):
    with pytest.raises(SystemExit) as exit_info:
        main([])
    assert exit_info.value.code == 2
    captured = capsys.readouterr()
    assert "a command is required: bench, explain, train" in captured.err and not captured.out


def test_cli_prints_its_version(capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(["--version"])
    assert exit_info.value.code == 0
    assert capsys.readouterr().out == f"contractnet {cn.__version__}\n"


def test_cli_prints_the_explanation(capsys):
    assert main(["explain", "ij,jk->ik", "--shapes", "2x3", "3x4"]) == 0
    assert "d operand 0: ik,jk->ij" in capsys.readouterr().out


@pytest.mark.parametrize("argv", [["--shapes", "2x3", "3x4"],
                                  ["--shapes", "2x3", "3x4", "ij,jk->ik"]])
def test_a_missing_spec_says_where_it_goes(argv, capsys):
    # --shapes takes every value after it, a spec written there too
    assert main(["explain", *argv]) == 2
    assert "a spec is required, before --shapes" in capsys.readouterr().err


def test_the_usage_puts_the_spec_first_and_required(capsys):
    with pytest.raises(SystemExit):
        main(["explain", "--help"])
    assert "usage: contractnet explain [-h] spec [--shapes" in capsys.readouterr().out


def test_one_element_or_term_is_not_plural():
    text = explain("i->", (1,), sizes={}, reduce="mean")
    assert "averages one term per output element here: the same as the sum" in text
    assert "each times 1/2 (reduce='mean' averages 2 terms" in explain("i->", (2,), reduce="mean")
    assert "largest intermediate 1 element\n" in text + "\n"


@pytest.mark.parametrize("argv, match", [
    (["explain", "ij,j(k->ik"], "not closed"),
    (["explain", "ij,jk->ik", "--shapes", "2x3", "4x5"], "index 'j' has size 3"),
    (["explain", "ij,jk->ik", "--shapes", "2xq", "3x4"], "bad shape"),
    (["explain", "ij,jk->ik", "--shapes", "2x\u0663", "3x4"], "bad shape"),  # an Arabic 3
    (["explain", "ij,jk->ik", "--sizes", "i=two"], "bad size 'i=two' in --sizes"),
    (["explain", "bi,io->bo", "--sizes", "b=-1"], "bad size 'b=-1' in --sizes"),
    (["explain", "ij,jk->ik", "--sizes", "z=3"], "--sizes names 'z', which is not an index"),
    (["explain", "bi,io->bo", "--sizes", "b=\u00b2"], "bad size 'b=\u00b2' in --sizes"),
    (["explain", "ij,jk->ik", "--shapes", "2,,3", "3x4"], "bad shape '2,,3'"),
    (["explain", "ij,jk->ik", "--shapes", "(2,,)", "3x4"], "bad shape '(2,,)'"),
    (["explain", "ij,jk->ik", "--sizes", "i=2,i=3"], "index 'i' is given two sizes"),
    (["explain", "ij,jk->ik", "--sizes", "i=3,,k=2"], "bad size '' in --sizes 'i=3,,k=2'"),
    (["explain", "ij,jk->ik", "--sizes", "=3"], "bad size '=3' in --sizes"),
])
def test_cli_errors_are_one_clean_message(argv, match, capsys):
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert match in err and "Traceback" not in err


@pytest.mark.parametrize("command, option, value", [
    ("explain", "--shapes", "2x3"), ("explain", "--sizes", "i=2"), ("explain", "--reduce", "max"),
    ("train", "--epochs", "1"), ("train", "--head", "cp"), ("train", "--ranks", "1 1 1"),
    ("bench", "--repeat", "3"), ("bench", "--dtype", "float64")])
def test_an_option_given_twice_is_refused(command, option, value, capsys):
    # an option with a default too: argparse alone keeps the last value silently
    first = {"explain": ["explain", "i->i"], "train": ["train", "digits"], "bench": ["bench"]}
    values = value.split()
    with pytest.raises(SystemExit) as exit_info:
        main([*first[command], option, *values, option, *values])
    assert exit_info.value.code == 2
    assert f"{option} was given twice" in capsys.readouterr().err


@pytest.mark.parametrize("shapes", [["-2x3", "3x4"], ["2x3", "-3x4"]])
def test_a_negative_shape_in_shapes_gets_the_size_error(shapes, capsys):
    # argparse would read "-2x3" as an option and say --shapes lacks a value
    assert main(["explain", "ij,jk->ik", "--shapes", *shapes]) == 2
    negative = next(s for s in shapes if s.startswith("-"))
    assert f"bad shape '{negative}': sizes must be >= 0" in capsys.readouterr().err


def test_python_dash_m_is_the_same_command():
    done = subprocess.run([sys.executable, "-m", "contractnet", "explain", "i,i->"],
                          capture_output=True, text=True, check=True)
    assert "d operand 1: i,->i" in done.stdout


def test_a_mean_scales_its_backward_specs_and_a_max_has_none():
    spec, shapes = "b(2h+u)(2w+v)c->bhwc", [(2, 4, 4, 3)]
    mean = explain(spec, *shapes, sizes={"u": 2, "v": 2}, reduce="mean")
    assert "d operand 0: bhwc->b(2h+u)(2w+v)c" in mean
    assert "  each times 1/4 (reduce='mean' averages 4 terms per output element)" in mean
    x = np.random.default_rng(0).standard_normal(shapes[0])
    _, vjp_fn = cn.vjp(lambda x: cn.einsum(spec, x, sizes={"u": 2, "v": 2}, reduce="mean"), x)
    g = np.ones((2, 2, 2, 3))
    np.testing.assert_allclose(vjp_fn(g)[0], cn.einsum("bhwc->b(2h+u)(2w+v)c", g,
                                                       sizes={"u": 2, "v": 2}) / 4)
    most = explain(spec, *shapes, sizes={"u": 2, "v": 2}, reduce="max")
    assert "reduce='max' has no backward spec" in most and "d operand" not in most


@pytest.mark.parametrize("argv, message", [
    (["ab,bc->ac", "--reduce", "max"], "reduce='max' takes one operand, got 2"),
    (["ij->", "--shapes", "0x3", "--reduce", "max"],  # as einsum refuses it
     "reduce='max' over 'i' of size 0: the max of no elements is undefined"),
    (["ab,bc,cd->adz", "--shapes", "2x3", "3x4", "4x5"],
     "output index 'z' appears in no operand; give its size with --sizes z=N"),
])
def test_cli_errors_speak_in_options(capsys, argv, message):
    assert main(["explain", *argv]) == 2
    assert message in capsys.readouterr().err
