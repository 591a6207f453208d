"""``contractnet explain SPEC``: what a spec means and how it will run.

Shows the parsed operands and the size of every index, the forward
contraction path (opt_einsum's FLOP count and largest intermediate), the
derived backward spec of every operand, and for a two-operand spec that is
one matrix product, the equivalent flatten + matmul.
"""
from __future__ import annotations

import argparse
import math
from typing import Mapping, Sequence

from opt_einsum.helpers import flop_count

from .api import backward_specs, check_max_is_defined, check_reduce
from .arguments import Once, is_int
from .bind import Bound, bind, check_operand_count, checked_sizes, size_hint
from .engine import REDUCTIONS, make_plan
from .path import contraction_path
from .pair import c_strides, plan_pair
from .spec import Spec, SpecError, Window, as_written, parse

DEFAULT_SIZE = 8


def _parse_shape(text: str) -> tuple[int, ...]:
    """``"128x4x4x50"`` or ``"128,4,4,50"`` -> a shape; ``"()"`` or ``""`` -> ()."""
    given = text = text.strip()
    if text.startswith("(") and text.endswith(")"):
        text = text[1:-1].strip()
        if text.endswith(","):  # Python's one-element tuple, "(3,)"
            text = text[:-1]
    if not text:
        return ()
    try:
        if not text.isascii():  # int() reads other scripts' digits ('٣'), as --sizes does not
            raise ValueError
        shape = tuple(int(p) for p in text.replace(",", "x").split("x"))
    except ValueError:  # an empty part too: "2,,3"
        raise ValueError(f"bad shape {given!r}: write it as 128x4x4x50") from None
    if any(n < 0 for n in shape):
        raise ValueError(f"bad shape {given!r}: sizes must be >= 0")
    return shape


def _count(n: int, noun: str) -> str:
    """``n`` and ``noun``, plural unless ``n`` is 1: ``"1 element"``, ``"2,048 elements"``."""
    return f"{n:,} {noun}" if n == 1 else f"{n:,} {noun}s"


def _parse_sizes(text: str | None) -> dict[str, int]:
    """``"b=128,k=10"`` -> ``{"b": 128, "k": 10}``."""
    sizes = {}
    if not (text or "").strip():
        return sizes
    for part in text.split(","):
        name, _, value = part.partition("=")
        digits = value.strip().removeprefix("+")
        # an empty entry ('a=3,,b=2') is refused, not skipped; '²' is a digit to isdigit()
        if not (name.strip() and digits.isascii() and digits.isdigit()):
            raise ValueError(f"bad size {part!r} in --sizes {text!r}: write each as name=N, "
                             "N a non-negative integer, e.g. b=128")
        if name.strip() in sizes:
            raise ValueError(f"index {name.strip()!r} is given two sizes in --sizes {text!r}")
        sizes[name.strip()] = int(digits)
    return sizes


def _default_shapes(spec: Spec, sizes: Mapping[str, int]) -> list[tuple[int, ...]]:
    """Shapes that give every index its size from ``sizes`` or a default."""
    if spec.has_ellipsis:
        raise ValueError("a spec with '...' needs shapes (--shapes on the command line)")
    shapes = []
    for term in spec.inputs:
        shape = []
        for axis in term.axes:
            if isinstance(axis, Window):
                length = _group_length(sizes, axis)
                shape.append(axis.span(sizes.get(axis.outer, DEFAULT_SIZE), sizes[axis.inner])
                             if length is None else length)
            else:
                shape.append(sizes.get(axis, DEFAULT_SIZE))
        shapes.append(tuple(shape))
    return shapes


def _flatten_equivalent(bound: Bound) -> list[str]:
    """For a two-operand GEMM: which axes each side groups into one."""
    spec = bound.spec
    if len(spec.inputs) != 2 or not all(t.is_plain for t in spec.inputs) \
            or not spec.output.is_plain:
        return []
    (a, b), out = ("".join(t.axes) for t in spec.inputs), "".join(spec.output.axes)
    if any(n not in b + out for n in a) or any(n not in a + out for n in b):
        return []  # an index summed within one operand: not a plain GEMM
    sa, sb = bound.in_shapes
    pair = plan_pair(a, sa, c_strides(sa), b, sb, c_strides(sb), out)
    if pair.einsum_eq is not None or len(pair.shape_a) != 2:
        return []
    left = "".join(n for n in a if n not in b)
    summed = "".join(n for n in a if n in b and n not in out)
    right = "".join(n for n in b if n not in a)
    size = bound.size_map
    m, k, n = (math.prod(size[c] for c in g) for g in (left, summed, right))
    product = (f"X[{left or '-'} | {summed or '-'}] @ W[{summed or '-'} | {right or '-'}]"
               f"   ({m} x {k}) @ ({k} x {n})")
    if out == right + left and left and right:  # the output is the other product's
        product = (f"W[{right} | {summed or '-'}] @ X[{summed or '-'} | {left}]"
                   f"   ({n} x {k}) @ ({k} x {m})")
    lines = ["equivalent flatten + matmul (one GEMM, no copy when the groups are contiguous):",
             f"  {product}"]
    if out not in (left + right, right + left):
        lines.append(f"  then its axes '{left + right}' put in the output's order '{out}'")
    if len(summed) > 1:  # a flatten merges several axes: in which order matters
        lines.append(f"  flatten order of the contracted group: '{summed}' (row-major, as laid "
                     f"out in the first operand); a PyTorch NCHW flatten orders it channels first")
    return lines


def explain(spec: str, *shapes: Sequence[int], sizes: Mapping[str, int] | None = None,
            reduce: str = "sum") -> str:
    """A readable account of ``spec``: indices, sizes, path, backward specs
    (``contractnet explain`` prints it; ``cn.explain`` returns it).

    Where a backward spec's operands do not fix all its sizes (an index only
    the gradient has, a window's outer index sized elsewhere, windows that
    stop short of the operand's axis), it gives the fewest ``sizes=`` that
    run it by hand; an index found in one term only gets a note.

    Parameters
    ----------
    spec : str
    *shapes : one shape per operand, optional
        As :func:`contractnet.backward_specs` takes them.  Without them
        every index gets ``sizes[index]``;
        a window's outer index not given there gets as many positions as
        fit a group length given there (``sizes={"(2h+u)": 9}``); every
        other index a default (8, and 3 for a window's inner index), and
        the account names the defaulted ones.
    sizes : mapping of str to int, optional
        As :func:`contractnet.einsum` takes them, plus group lengths.
    reduce : {"sum", "mean", "max"}
        As :func:`contractnet.einsum` takes it.  For "mean" a line after
        the backward specs gives the 1/N they are each multiplied by; "max"
        has no backward spec (its gradient is a routing), and a line says so.

    Raises
    ------
    SpecError
        As :func:`contractnet.backward_specs` raises it, for a group length
        shorter than its window, and for a ``reduce`` that
        :func:`contractnet.einsum` refuses.
    ValueError
        For a spec with ``...`` and no ``shapes``.
    """
    parsed = parse(spec)
    try:  # quoting the spec as the caller typed it
        check_reduce(parsed, reduce)
        sizes = checked_sizes(parsed, sizes)  # window groups keyed in one spelling
        defaulted: set[str] = set()
        if not shapes:
            shapes, sizes, defaulted = _shapes_from_sizes(parsed, sizes)
        check_operand_count(parsed, len(shapes), "shape(s)")
        bound = bind(parsed, shapes, sizes)
        if reduce == "max":
            check_max_is_defined(bound, parsed)
    except SpecError as exc:
        raise as_written(exc, spec) from None
    lines = [f"spec      {parsed}"]
    for i, (term, shape) in enumerate(zip(parsed.inputs, bound.in_shapes)):
        lines.append(f"operand {i} '{term}'  shape {shape}")
    lines.append(f"output    '{parsed.output}'  shape {bound.out_shape}")
    lines.append("sizes     " + ", ".join(f"{k}={v}" for k, v in bound.sizes))
    own = sorted(bound.spec.indices() - parsed.indices())
    if own:  # the bound spec's names for what the spec leaves unnamed
        lines.append(f"          ({', '.join(own)}: {'axes' if len(own) > 1 else 'an axis'} "
                     f"under '...' or broadcast from size 1, named with letters the spec "
                     f"does not use)")
    if defaulted:
        lines.append(f"          (not given, so taken as defaults: "
                     f"{', '.join(sorted(defaulted))}; give --shapes or --sizes)")
    lines += _lone_index_lines(parsed)
    lines += _path_lines(bound)
    if reduce == "max":
        lines.append("backward  reduce='max' has no backward spec: each output's cotangent goes "
                     "to the first maximum among the elements it was taken from")
        return "\n".join(lines)
    lines.append("backward specs (the output takes the operand's place):")
    for i, text in enumerate(backward_specs(parsed, *shapes, sizes=sizes)):
        lines.append(f"  d operand {i}: {text}")
        lines += _by_hand_lines(bound, i, text)
    if reduce == "mean":
        count = make_plan(bound, "mean").count
        lines.append(f"  each times 1/{count:,} (reduce='mean' averages "
                     f"{_count(count, 'term')} per output element)" if count > 1 else
                     "  (reduce='mean' averages one term per output element here: "
                     "the same as the sum)" if count else
                     "  (reduce='mean' averages no terms here: the result is nan)")
    lines += _flatten_equivalent(bound)
    return "\n".join(lines)


def _lone_index_lines(spec: Spec) -> list[str]:
    """Notes on indices found in one term only (:meth:`Spec.lone_indices`),
    each a common typo; not for a one-operand spec's inputs, whose summing
    away is what the spec is for."""
    lines = []
    for i, names in spec.lone_indices().items():
        for k in names:
            if i == len(spec.inputs):
                lines.append(f"note      index '{k}' is only in the output: the result is "
                             f"broadcast along it")
            elif len(spec.inputs) > 1:
                lines.append(f"note      index '{k}' is only in operand {i} "
                             f"'{spec.inputs[i]}': it is summed there before anything else")
    return lines


def _by_hand_lines(bound: Bound, operand: int, text: str) -> list[str]:
    """A note giving the ``sizes=`` that run operand ``operand``'s backward
    spec ``text`` by hand to its gradient (the forward's operands with the
    cotangent in that operand's place), where their shapes alone do not:
    for an index only the gradient has (broadcast from size 1, or only in
    the forward operand), a window's outer index the forward sized
    elsewhere, or the length of a window group whose windows stop short of
    the operand's axis.  The fewest such sizes, each as the forward binds it."""
    spec = parse(text)
    shapes = list(bound.in_shapes)
    shapes[operand] = bound.out_shape
    want, forward = tuple(bound.in_shapes[operand]), bound.size_map

    def runs(sizes: dict[str, int]) -> bool:
        try:
            got = bind(spec, shapes, sizes or None)
        except SpecError:
            return False
        return got.out_shape == want and all(forward.get(k, n) == n for k, n in got.sizes)
    if runs({}):
        return []
    letters = {k: forward[k] for k in spec.output.indices() + tuple(
        k for t in spec.inputs for k in t.indices()) if k in forward}
    # the operand's windows at its axes' full lengths (its bound term: '...' spelled out)
    groups = {str(a): n for a, n in zip(bound.spec.inputs[operand].axes, want)
              if isinstance(a, Window)}
    needed = letters if runs(letters) else {**letters, **groups}
    for key in list(needed):  # the fewest: leave out what the operands fix anyway
        fewer = {k: n for k, n in needed.items() if k != key}
        if runs(fewer):
            needed = fewer
    given = ",".join(f"{k}={n}" for k, n in needed.items())  # quoted: ( is special to a shell
    return [f"    (to run it by hand, give sizes {needed}, on the command line "
            f"--sizes '{given}')"]


def _with_default_sizes(spec: Spec, sizes: Mapping[str, int]) -> dict[str, int]:
    """``sizes`` completed where no shape can tell: 3 for a window's inner
    index, :data:`DEFAULT_SIZE` for any other index only the output has."""
    inner = {w.inner for t in (*spec.inputs, spec.output) for w in t.windows}
    in_inputs = {n for t in spec.inputs for n in t.indices()}
    output_only = set(spec.output.indices()) - in_inputs
    return {**{n: DEFAULT_SIZE for n in output_only}, **{n: 3 for n in inner}, **sizes}


def _shapes_from_sizes(spec: Spec, sizes: dict[str, int]
                       ) -> tuple[list[tuple[int, ...]], dict[str, int], set[str]]:
    """Shapes for ``spec`` from the sizes given and defaults; the sizes to
    bind them with (those no input axis carries by itself); the indices
    defaulted."""
    given = set(sizes)
    sizes = _with_default_sizes(spec, sizes)
    derived = _outer_sizes_from_lengths(spec, sizes, given)
    sizes.update(derived)
    shapes = _default_shapes(spec, sizes)
    plain = _plain_input_letters(spec)
    return (shapes, {k: v for k, v in sizes.items() if k not in plain},
            spec.indices() - given - set(derived))


def _group_length(sizes: Mapping[str, int], window: Window) -> int | None:
    """The length ``sizes`` (from :func:`~contractnet.bind.checked_sizes`)
    gives window group ``window``, or None."""
    return sizes.get(str(window))


def _outer_sizes_from_lengths(spec: Spec, sizes: Mapping[str, int],
                              given: set[str]) -> dict[str, int]:
    """The outer index of each window whose group length ``sizes`` gives and
    whose own size is not ``given``: as many positions as fit that length
    (the fewest, where several windows share the index).  An index that is
    also a window's inner index keeps its size: other windows' spans are
    reckoned with it.

    Raises
    ------
    SpecError
        If a given length is shorter than its window.
    """
    derived: dict[str, int] = {}
    windows = [w for term in (*spec.inputs, spec.output) for w in term.windows]
    inner = {w.inner for w in windows}
    for window in windows:
        length = _group_length(sizes, window)
        if (length is None or not is_int(length) or length < 0  # bind refuses those
                or window.outer in given or window.outer in inner):
            continue
        fit = window.outer_extent(length, sizes[window.inner])
        if fit < 1:  # bind's words, for the length sizes= gives
            text = str(spec)
            raise SpecError(f"window {window} with '{window.inner}'={sizes[window.inner]} "
                            f"does not fit the length {length} sizes= gives it", text,
                            text.index(str(window)))
        derived[window.outer] = min(fit, derived.get(window.outer, fit))
    return derived


def _plain_input_letters(spec: Spec) -> set[str]:
    """Indices some input axis carries by itself (their sizes come from shapes)."""
    return {a for t in spec.inputs for a in t.axes if isinstance(a, str)}


def _path_lines(bound: Bound) -> list[str]:
    plan = make_plan(bound, "sum")
    size = bound.size_map
    terms = plan.read_names
    shapes = [tuple(size[n] for n in t) for t in terms]
    eq = ",".join(terms) + "->" + plan.target
    lines = [f"forward   {eq}  (operands read through views: windows split, diagonals taken)"
             if any(plan.needs_view) else f"forward   {eq}"]
    steps, info, largest = contraction_path(tuple(terms), tuple(shapes), plan.target,
                                            plan.window_offsets)
    cost = int(info.opt_cost)  # opt_einsum's pairs; the steps before them are added
    if info.eq != eq:
        first, stack, first_cost = _first_steps(terms, steps[:len(steps) - len(info.path)],
                                                size)
        lines += first + [f"  then pairs of {','.join(stack)}->{plan.target}"]
        cost += first_cost
    flops = f"  FLOPs (opt_einsum count) {cost:,}"
    if len(terms) > 2:  # all terms at once, counted as opt_einsum counts a naive cost
        indices = set("".join(terms))
        shared = sum(len(set(t)) for t in terms) > len(indices)  # an index in two terms
        flops += f";  naive {flop_count(indices, shared, len(terms), size):,}"
    lines += [flops, f"  largest intermediate {_count(largest, 'element')}"]
    if len(terms) > 2:
        lines.append(f"  pairwise path {info.path}")
    return lines


def _first_steps(terms: Sequence[str], steps, size: Mapping[str, int]
                 ) -> tuple[list[str], list[str], int]:
    """Lines for the steps a path takes before opt_einsum's pairs (a term's
    sum over the indices only it has, a product of terms of the same
    indices), the terms those pairs then read, each intermediate's indices
    in the order it is laid out in, and the steps' FLOPs as opt_einsum
    counts them."""
    stack, lines, cost = list(terms), [], 0
    for positions, kept in steps:
        picked = [stack.pop(p) for p in positions]
        why = ("the indices only it has, summed" if len(picked) == 1
               else "terms of the same indices, multiplied")
        lines.append(f"  first {','.join(reversed(picked))}->{kept}  ({why})")
        stack.append(kept)
        indices = set("".join(picked))
        cost += flop_count(indices, bool(indices - set(kept)), len(picked), size)
    return lines, stack, cost


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The ``explain`` subcommand's arguments."""
    # the usage argparse would write shows the spec optional, and last
    parser.usage = ("contractnet explain [-h] spec [--shapes SHAPE [SHAPE ...]] "
                    "[--sizes NAME=N,...] [--reduce {sum,mean,max}]")
    parser.add_argument("spec", nargs="?",  # required; run() says where it goes if missing
                        help='einsum spec (required, before --shapes), e.g. "bnmd,nmdk->bk"')
    parser.add_argument("--shapes", nargs="+", metavar="SHAPE", action=Once,
                        help="one shape per operand, e.g. 128x4x4x50 4x4x50x500 (without "
                             "shapes, an index not in --sizes has size 8, a window's "
                             "inner index 3)")
    parser.add_argument("--sizes", metavar="NAME=N,...", action=Once,
                        help="index sizes, e.g. b=128,k=10 (window sizes, output-only indices)")
    parser.add_argument("--reduce", action=Once, choices=REDUCTIONS, default="sum",
                        help="how contracted indices combine, as cn.einsum's reduce= "
                             "(default: sum)")


def run(args: argparse.Namespace) -> int:
    """Print the explanation; bad specs raise ``SpecError`` (a ``ValueError``)."""
    if args.spec is None:  # argparse's own error would not say where it goes
        raise ValueError("a spec is required, before --shapes (which takes every value "
                         "after it): contractnet explain \"bnmd,nmdk->bk\" --shapes "
                         "128x4x4x50 4x4x50x500")
    shapes = [] if args.shapes is None else [_parse_shape(s) for s in args.shapes]
    try:
        print(explain(args.spec, *shapes, sizes=_parse_sizes(args.sizes), reduce=args.reduce))
    except SpecError as exc:
        # the hint to give a size, and the option named, as this command takes them
        if exc.unsized is not None:
            reason = exc.reason.replace(size_hint(exc.unsized),
                                        size_hint(exc.unsized, option=True))
        elif "sizes= " in exc.reason:  # "sizes= names 'z'", "... but sizes= gives 7"
            reason = exc.reason.replace("sizes= ", "--sizes ")
        else:
            raise
        raise SpecError(reason, exc.spec, exc.position, exc.unsized) from None
    return 0
