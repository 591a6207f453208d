"""Execute a bound spec on arrays.

Execution has three stages, each one general mechanism:

1. **Read** every operand as a plain term (unique indices): a window becomes
   two axes and a repeated index one diagonal axis, both as strided views of
   the operand (no copy).
2. **Contract** the plain terms to the output's indices: one operand is a
   reduction; two operands go to the pair planner (:mod:`contractnet.pair`),
   which turns a contraction that is a matrix product after grouping axes
   into one BLAS call on reshaped views; three or more run pairwise along
   the path :mod:`contractnet.path` plans.
3. **Write** the result into the output term: a permutation when the output
   is plain, otherwise a strided view of a zeroed output that takes repeated
   indices (diagonals), indices found in no operand (broadcast) and windows
   (scatter-add, one strided add per window offset).

Plans are cached on the bound spec; the engine never edits a Spec.  Zeroed
outputs, strided views, contiguous copies and products go through
:data:`contractnet.backend.backend` (array methods, ufuncs and small helpers
are called directly; see :mod:`contractnet.backend`).
"""
from __future__ import annotations

import itertools
import math
from dataclasses import dataclass
from functools import lru_cache
from typing import Callable, Mapping, NamedTuple, Sequence

import numpy as np

from .backend import backend
from .bind import Bound, bind, bind_array_shapes
from .budget import BUDGET, MemoryBudgetError, check_allocation
from .pair import (WIDER_SUMS, Memo, PairPlan, c_strides, contract_pair, direct_call,
                   lone_indices, plan_pair, run_direct_call, run_gemm, sum_over)
from .path import plan_path
from .spec import Spec, Term, Window, parse

REDUCTIONS = ("sum", "mean", "max")
# the largest element a plan's budget check must allow for (clongdouble's)
MAX_ITEMSIZE = np.dtype(np.clongdouble).itemsize
PER_OFFSET_MIN_ELEMENTS = 1 << 18
# window offsets a one-operand reduction combines slice by slice, at most: each
# costs a ufunc call, and past a few dozen numpy's own reduction is as quick
MAX_REDUCE_OFFSETS = 64


def within_budget(plan: "Plan") -> bool:
    """True when ``plan`` fits the memory budget whatever its dtype (the
    cheap test; :func:`check_budget` gives the exact answer and the error)."""
    return plan.peak_elements * MAX_ITEMSIZE <= BUDGET.get()[0]


def run_direct(plan: "Plan", operands: Sequence[np.ndarray],
               like: np.ndarray | None = None) -> np.ndarray | None:
    """Run a two-operand ``plan`` as one call: its direct GEMM
    (:attr:`Plan.direct_gemm`) on views of C-contiguous ``operands`` (float16
    ones are multiplied as float32 copies, see
    :func:`~contractnet.pair.run_gemm`), or the one GEMM or numpy.einsum
    call resolved for operands laid out as these are
    (:func:`~contractnet.pair.direct_call`, once per layout): the common
    cases of a contraction, forward or backward.

    Returns None, running nothing, when the plan has neither for these
    operands (and ``like``, when given: the layout it asks for the result
    in), when it may not fit the memory budget (the quick test of
    :func:`within_budget`), or when the small operand a call copies first
    would not.  :func:`run_plan` tries it first, then
    :func:`run_general`; the traced forward and backward passes
    (:func:`contractnet.api._record`, the contraction's vjp rule) do the
    same themselves, skipping the ``contract`` primitive's set-up.
    """
    gemm = plan.direct_gemm
    if (gemm is not None and operands[0].flags.c_contiguous and operands[1].flags.c_contiguous
            and (like is None or like.flags.c_contiguous) and within_budget(plan)):
        try:
            return run_gemm(gemm, operands[0], operands[1])
        except MemoryBudgetError as exc:  # a copy for BLAS (of float16 in float32, say)
            raise MemoryBudgetError(f"contraction '{plan.bound.spec}': {exc}") from None
    layouts = plan.direct_layouts
    if layouts is None or not within_budget(plan):
        return None
    a, b = operands
    key = (a.strides, b.strides, a.dtype, b.dtype,
           None if like is None else 0 if like.flags.c_contiguous else like.strides)
    call = layouts.get(key, _UNSEEN)
    if call is _UNSEEN:
        call = _direct_call(plan, a, b, like)
        if len(layouts) < MAX_LAYOUTS:  # threads racing here may keep a few more
            layouts[key] = call
    if call is None or call.copied_bytes > BUDGET.get()[0]:
        return None  # a copy over the budget: the general path reads in place or refuses
    return run_direct_call(call, a, b)


#: Layouts of its operands a plan keeps the direct call (or its absence) of, at most.
MAX_LAYOUTS = 16
_UNSEEN = object()


def _direct_call(plan: "Plan", a: np.ndarray, b: np.ndarray, like: np.ndarray | None):
    """The one call :func:`run_plan` would make for ``a`` and ``b`` (None if
    it makes more), its result in the output's order."""
    target = plan.target
    want = target if plan.output_perm is None else "".join(target[i] for i in plan.output_perm)
    prefer = None if like is None or like.flags.c_contiguous else _preferred_layout(plan, like)
    an, bn = plan.read_names
    return direct_call(a, an, b, bn, target, want, prefer, like is None)


def check_budget(plan: "Plan", itemsize: int, written: object = None) -> None:
    """Raise :class:`MemoryBudgetError` if ``plan`` would allocate too much.

    The message quotes ``written``, the spec as the caller wrote it, when
    given and different from the bound spec (which names the axes under
    ``...`` and the broadcast ones with letters of its own), then the bound
    spec, whose letters the sizes use.
    """
    needed, budget = plan.peak_elements * itemsize, BUDGET.get()[0]
    if needed > budget:
        raise MemoryBudgetError(
            f"contraction {quoted_spec(plan.bound.spec, written)} would allocate an array of "
            f"{needed:,} bytes (sizes {dict(plan.bound.sizes)}), more than the memory budget of "
            f"{budget:,} bytes; check the spec, or raise the budget with "
            f"contractnet.set_memory_budget")


def quoted_spec(bound: object, written: object = None, note: str | None = None) -> str:
    """A spec quoted for a message: as the caller wrote it, then, in
    parentheses, the bound spec it runs as where the two differ (the bound
    one names the axes under ``...`` and the broadcast ones with letters of
    its own, which sizes and pairwise steps use) and ``note``.

    >>> quoted_spec("Aj,jk->Ak", "...j,jk->...k", "operand 0")
    "'...j,jk->...k' (run as 'Aj,jk->Ak'; operand 0)"
    """
    notes = [] if note is None else [note]
    if written is None or str(written) == str(bound):
        text = f"'{bound}'"
    else:
        text, notes = f"'{written}'", [f"run as '{bound}'"] + notes
    return f"{text} ({'; '.join(notes)})" if notes else text


# ------------------------------------------------------------------ reading
def read_view(term: Term, array: np.ndarray, sizes: dict[str, int]) -> tuple[np.ndarray, str]:
    """View ``array`` as a plain term: windows split, repeated indices merged.

    Returns the view and its index names (one letter per axis, all distinct).
    A plain term returns ``array`` itself.
    """
    if term.is_plain:
        return array, "".join(term.axes)
    shape, strides, names = _axis_layout(term, array.strides, sizes)
    return backend.as_strided(array, shape, strides, writeable=False), names


def _axis_layout(term: Term, strides: Sequence[int], sizes: dict[str, int]):
    """Shape, strides and names of a view with one axis per index of ``term``.

    A window ``(s*h+d*u)`` over an axis of stride ``t`` gives ``h`` stride
    ``s*t`` and ``u`` stride ``d*t``; an index met again adds its stride
    (a diagonal).
    """
    dims: dict[str, list[int]] = {}
    for axis, stride in zip(term.axes, strides):
        parts = ([(axis.outer, axis.stride * stride), (axis.inner, axis.dilation * stride)]
                 if isinstance(axis, Window) else [(axis, stride)])
        for name, step in parts:
            if name in dims:
                dims[name][1] += step
            else:
                dims[name] = [sizes[name], step]
    return (tuple(size for size, _ in dims.values()), tuple(step for _, step in dims.values()),
            "".join(dims))


# ------------------------------------------------------------------ writing
def write_output(core: np.ndarray, names: str, term: Term, out_shape, sizes) -> np.ndarray:
    """Place ``core`` (plain, indices ``names``) into the output ``term``."""
    def part(fixed: dict[str, int]):
        return core[_index(names, fixed)], _drop(names, fixed)
    return scatter(part, term, out_shape, sizes, core.dtype)


def _index(names: str, fixed: dict[str, int]) -> tuple:
    """Index fixing ``fixed`` axes; the trailing Ellipsis keeps a full index a view."""
    return _index_of(names, tuple(fixed.items()))


@lru_cache(maxsize=4096)
def _index_of(names: str, fixed: tuple[tuple[str, int], ...]) -> tuple:
    """:func:`_index`, cached: window offsets ask for the same few indices on every call."""
    values = dict(fixed)
    return tuple(values.get(n, slice(None)) for n in names) + (Ellipsis,)


def _drop(names: str, fixed: dict[str, int]) -> str:
    return "".join(n for n in names if n not in fixed) if fixed else names


def scatter(part, term: Term, out_shape, sizes, dtype) -> np.ndarray:
    """Build the output ``term`` from parts, one per window offset.

    ``part(fixed)`` gives the values (and their index names) for one
    assignment of the overlapping output windows' inner indices.  The output is viewed
    once with every index as an axis (windows make that view overlap); fixing
    the inner indices selects a slice whose positions are distinct, and the
    part is added there.  With no output window there is one part, and
    with no repeated index either it fills the output, which is then
    written once rather than zeroed and added to (a broadcast gradient in
    a third of the time); so is an output whose windows tile it (no two
    offsets reach one position, and every position is reached).
    """
    fills = term.is_plain
    # a window whose offsets never collide (stride >= span, as in most pooling)
    # needs no loop: its view is one-to-one, written in one go
    loop = list(dict.fromkeys(w.inner for w in term.windows
                              if w.dilation * (sizes[w.inner] - 1) >= w.stride))
    writes_all = fills or windows_tile(term, sizes, out_shape)  # nothing needs zeros first
    out = (backend.empty if writes_all else backend.zeros)(out_shape, dtype=dtype)
    full, full_names = _output_view(out, term, sizes)
    free = "".join(n for n in full_names if n not in loop)
    first = True
    for values in itertools.product(*(range(sizes[n]) for n in loop)):
        fixed = dict(zip(loop, values))
        part_values, part_names = part(fixed)
        order, new_axes = _alignment(part_names, free)
        aligned = part_values.transpose(order)
        if new_axes:  # size-1 axes where the output broadcasts it (a view, whatever the layout)
            shape = iter(aligned.shape)
            aligned = aligned.reshape([1 if i in new_axes else next(shape)
                                       for i in range(len(free))])
        if fills:
            np.copyto(full, aligned)
        elif first:  # nothing written there yet: a sum would read the fresh zeros first
            # (two page faults); 0 is added all the same, which turns a -0 into +0
            # (a 0 of the output's own type: a bool output takes no int)
            np.add(aligned, dtype.type(0), out=full[_index(full_names, fixed)])
        else:
            full[_index(full_names, fixed)] += aligned
        first = False
        del part_values, aligned  # before the next part is made: one part at a time
    return out


def windows_tile(term: Term, sizes: dict[str, int], shape: tuple[int, ...]) -> bool:
    """Whether the view of an array of ``shape`` with an axis per index of
    ``term`` reaches each of its positions exactly once: no window's offsets
    collide (stride >= span), so no two sets of index values meet at one
    position, and the view has as many elements as the array.

    >>> from contractnet.spec import parse
    >>> pool = parse("b(2h+u)->bh").inputs[0]
    >>> windows_tile(pool, {"b": 1, "h": 3, "u": 2}, (1, 6)), windows_tile(
    ...     pool, {"b": 1, "h": 3, "u": 2}, (1, 7))
    (True, False)
    """
    return (all(w.dilation * (sizes[w.inner] - 1) < w.stride for w in term.windows)
            and math.prod(sizes[n] for n in _read_names(term)) == math.prod(shape))


def _output_view(out: np.ndarray, term: Term, sizes) -> tuple[np.ndarray, str]:
    """Writable view of ``out`` with one axis per index of the output term
    (a plain term's is ``out`` itself, as :func:`read_view` reads one)."""
    if term.is_plain:
        return out, "".join(term.axes)
    shape, strides, names = _axis_layout(term, out.strides, sizes)
    return backend.as_strided(out, shape, strides), names


@lru_cache(maxsize=1024)
def _alignment(names: str, target: str) -> tuple[tuple[int, ...], tuple[int, ...]]:
    """How to bring axes ``names`` to ``target`` order: a permutation, then
    size-1 axes (broadcast) inserted where ``target`` has indices ``names`` lacks."""
    order = tuple(names.index(n) for n in target if n in names)
    new_axes = tuple(i for i, n in enumerate(target) if n not in names)
    return order, new_axes


# ------------------------------------------------------------------ contracting
def reduce_unary(view: np.ndarray, names: str, target: str, reduce: str) -> np.ndarray:
    """Reduce one plain operand over the indices not in ``target``."""
    axes = tuple(i for i, n in enumerate(names) if n not in target)
    if axes:
        kept = "".join(n for n in names if n in target)
        if reduce == "max":
            view = view.max(axis=axes)
        else:
            # einsum sums in its operand's dtype (numpy's reductions take no byte order)
            dtype = view.dtype if view.dtype.isnative else view.dtype.newbyteorder("=")
            view = sum_over(view, axes, dtype)
        names = kept
    # in target's order; already so, the array itself (a sum's result owning its
    # memory, which vjp leaves writeable), not a view of it
    return view if names == target else view.transpose([names.index(n) for n in target])


def reduce_offsets(view: np.ndarray, names: str, target: str, reduce: str,
                   loop: str) -> np.ndarray:
    """:func:`reduce_unary`, combining the slices of the indices ``loop`` one
    at a time (``np.maximum`` or ``np.add``) before reducing the rest.

    A window view's offset axes are small and scattered in memory, which
    numpy's reductions read slowly; each slice keeps the contiguous axes.
    """
    combine = np.maximum if reduce == "max" else np.add
    acc, owned = None, False  # the first slice is a view of the operand: never written to
    for values in itertools.product(*(range(view.shape[names.index(n)]) for n in loop)):
        part = view[_index(names, dict(zip(loop, values)))]
        if acc is None:
            acc = part
        elif owned:
            combine(acc, part, out=acc)
        else:
            acc, owned = np.asarray(combine(acc, part)), True  # 0-d ufunc results are scalars
    return reduce_unary(acc, "".join(n for n in names if n not in loop), target, reduce)


def run_path(operands: list, names: list[str], target: str, any_layout: bool = False,
             window_offsets: tuple[tuple[int, str], ...] = (), spec: Spec | None = None):
    """Contract plain operands along :func:`~contractnet.path.plan_path`,
    pair by pair (:func:`~contractnet.pair.contract_pair`, each result laid
    out as it likes with ``any_layout``); the result has indices ``target``.
    A traced run follows the same path, each step planned once and recorded
    as an einsum whose vjp is its own transposed spec (:func:`pairwise_steps`).
    ``window_offsets`` as :func:`~contractnet.path.contraction_path` takes it;
    ``spec``, the spec run, names the operands in errors.

    Operands of different dtypes are first cast to their common dtype
    (:func:`cast_to`), as numpy computes the whole sum of products in it:
    contracted pair by pair in their own dtypes, two int8 operands would
    wrap, two bools multiply and add as "and" and "or".  float16 ones are
    cast to float32 (:func:`summing_dtype`): an intermediate sum may pass
    float16's 65504 where the result does not.
    """
    dtype = summing_dtype(np.result_type(*(op.dtype for op in operands)))
    operands = cast_to(operands, dtype, spec=spec)
    shapes = tuple(tuple(op.shape) for op in operands)
    steps, _ = plan_path(tuple(names), shapes, target, window_offsets)
    stack = list(zip(operands, names))
    for positions, kept in steps:
        picked = [stack.pop(p) for p in positions]
        if len(picked) == 1:
            (a, an), = picked
            stack.append((reduce_unary(a, an, kept, "sum"), kept))
        else:
            (b, bn), (a, an) = picked
            stack.append(contract_pair(a, an, b, bn, kept, any_layout=any_layout))
    (result, result_names), = stack
    return reduce_unary(result, result_names, target, "sum")


# ------------------------------------------------------------------ plans
@dataclass(frozen=True, slots=True)
class Plan:
    """A bound spec made ready to run: read names, target, cost."""

    bound: Bound
    reduce: str
    read_names: tuple[str, ...]
    target: str          # the output's indices found in some operand, in order
    count: int           # elements reduced into each output element (for mean)
    peak_elements: int   # largest array the run allocates
    needs_view: tuple[bool, ...]          # operands read through a strided view
    any_view: bool
    plain_output: bool                    # the output is a permutation of target
    output_perm: tuple[int, ...] | None   # that permutation; None when it is the identity
    scatter_per_offset: bool              # two operands and an output window, contracted
                                          # once per window offset (see _scatter_pair)
    contiguous_gemm: "PairPlan | None"    # the GEMM of two C-contiguous plain operands
    gemm_perm: tuple[int, ...] | None     # from that GEMM's result to ``target``
    direct_gemm: "PairPlan | None"        # that GEMM when its result is the output as is
    direct_layouts: dict | None           # the one call (or None) run_direct resolved for
                                          # each layout of the operands seen; None when a
                                          # plan is run otherwise (see run_direct)
    offset_loop: str                      # reduced window offsets of a one-operand spec,
                                          # combined slice by slice (see reduce_offsets)
    route_per_offset: bool                # max's vjp may go offset by offset too
    disjoint_windows: bool                # no two window offsets reach one input position
    window_offsets: tuple[tuple[int, str], ...]  # operands read through windows of
                                                 # several offsets: position, offsets
    input_tiled: bool                     # one operand, its windows reaching each of its
                                          # positions once (see windows_tile)
    widens_half: bool                     # the run adds terms up (a reduced index, an
                                          # output window, a path of three or more) and
                                          # is no max: float16 is summed in float32


def _memory_names(term: Term, array: np.ndarray) -> str:
    """The indices of plain ``term`` ordered as ``array`` lays them out
    (outermost first; length-1 axes last, their stride means nothing)."""
    axes = term.axes
    order = sorted(range(len(axes)),
                   key=lambda i: (array.shape[i] <= 1, -abs(array.strides[i])))
    return "".join(axes[i] for i in order)


def _read_names(term: Term) -> str:
    names: list[str] = []
    for name in term.indices():
        if name not in names:
            names.append(name)
    return "".join(names)


def make_plan(bound: Bound, reduce: str) -> Plan:
    """Plan the execution of ``bound`` (cached on the bound spec)."""
    plan = bound.derived.get(reduce)
    if plan is None:
        plan = bound.derived[reduce] = _make_plan(bound, reduce)
    return plan


def _make_plan(bound: Bound, reduce: str) -> Plan:
    spec, sizes = bound.spec, bound.size_map
    reads = tuple(_read_names(t) for t in spec.inputs)
    present = set("".join(reads))
    target = "".join(n for n in _read_names(spec.output) if n in present)
    count = math.prod(sizes[n] for n in present - set(target))
    loop = _offset_loop(spec, reads, target, sizes)
    inner = {w.inner for w in spec.output.windows}
    # per offset: one GEMM each, no pre-scatter result; pays off once that result is big
    per_offset = (len(reads) == 2 and reduce == "sum" and bool(inner)
                  and all(any(n in r for r in reads) for n in inner)
                  and math.prod(sizes[n] for n in target) >= PER_OFFSET_MIN_ELEMENTS)
    # the result before the output is written: per offset, one offset's part of it
    result = math.prod(sizes[n] for n in target if not (per_offset and n in inner))
    peak = max(math.prod(bound.out_shape), result,
               _window_copy_elements(spec, reads, target, loop, sizes))
    # a window of one offset reads no more than its operand: it counts as plain
    window_offsets = tuple(
        (i, offsets) for i, t in enumerate(spec.inputs)
        if (offsets := "".join(dict.fromkeys(w.inner for w in t.windows
                                             if sizes[w.inner] > 1))))
    if len(reads) > 2:
        shapes = tuple(tuple(sizes[n] for n in r) for r in reads)
        peak = max(peak, plan_path(reads, shapes, target, window_offsets)[1])
    needs_view = tuple(not t.is_plain for t in spec.inputs)
    out = spec.output
    plain = out.is_plain and sorted(out.axes) == sorted(target)
    perm = tuple(target.index(a) for a in out.axes) if plain else None
    perm = None if perm == tuple(range(len(target))) else perm
    pair, pair_perm = (None, None) if per_offset else _contiguous_gemm(
        bound, reads, target, needs_view, reduce)
    windows = [w for t in spec.inputs for w in t.windows]
    disjoint = all(w.dilation * (sizes[w.inner] - 1) < w.stride for w in windows)
    # every reduced index an offset, and fixing them reaches each input position
    # once (a window kept in the output must not overlap itself)
    route = (bool(loop) and len(loop) + len(target) == len(reads[0])
             and all(w.inner in loop or w.dilation * (sizes[w.inner] - 1) < w.stride
                     for w in windows))
    direct = pair if (pair is not None and pair_perm is None and plain and perm is None
                      and reduce == "sum") else None
    tiled = len(reads) == 1 and windows_tile(spec.inputs[0], sizes, bound.in_shapes[0])
    adds = bool(present - set(target)) or bool(spec.output.windows) or len(reads) > 2
    widens_half = adds and reduce != "max"
    # operands in each layout but that of the direct GEMM get their one call (if any)
    layouts = ({} if len(reads) == 2 and reduce == "sum" and plain and not any(needs_view)
               and not per_offset else None)
    return Plan(bound, reduce, reads, target, count, peak, needs_view, any(needs_view), plain,
                perm, per_offset, pair, pair_perm, direct, layouts, loop, route, disjoint,
                window_offsets, tiled, widens_half)


def _window_copy_elements(spec, reads: tuple[str, ...], target: str, loop: str,
                          sizes) -> int:
    """The largest array a windowed operand costs.

    A window read by a product is copied into a matrix (im2col) once the
    indices no other term has are summed out of its strided view (as
    :func:`~contractnet.pair.contract_pair` does first): the copy holds the
    indices it shares.  A window reduced alone stays a strided view, its
    offsets (when few, ``loop``) combined into an array of its other axes.
    """
    if len(reads) == 1:
        return math.prod(sizes[n] for n in reads[0] if n not in loop) if loop else 0
    copies = [0]
    for i, (names, term) in enumerate(zip(reads, spec.inputs)):
        if term.windows:
            shared = target + "".join(r for j, r in enumerate(reads) if j != i)
            copies.append(math.prod(sizes[n] for n in names if n in shared))
    return max(copies)


def _offset_loop(spec, reads: tuple[str, ...], target: str, sizes) -> str:
    """The reduced window offsets of a one-operand spec (pooling), in read
    order, when there are few enough to combine slice by slice."""
    if len(reads) != 1:
        return ""
    inner = {w.inner for w in spec.inputs[0].windows}
    loop = "".join(n for n in reads[0] if n in inner and n not in target)
    return loop if math.prod(sizes[n] for n in loop) <= MAX_REDUCE_OFFSETS else ""


def _contiguous_gemm(bound: Bound, reads, target: str, needs_view, reduce: str):
    """The pair plan of a two-operand spec whose operands arrive C-contiguous.

    Such operands' layout follows from their shapes, so the plan is made once
    here rather than per call; :func:`run_plan` uses it when both operands
    are C-contiguous (the common case) and :func:`contract_pair` otherwise.
    Returns ``(PairPlan, permutation to target)`` or ``(None, None)``.
    """
    if len(reads) != 2 or any(needs_view) or reduce == "max":
        return None, None
    (an, bn), (ashape, bshape) = reads, bound.in_shapes
    sum_a, _, sum_b, _ = lone_indices(an, bn, target)
    if sum_a or sum_b:
        return None, None
    pair = plan_pair(an, ashape, c_strides(ashape), bn, bshape, c_strides(bshape), target)
    if pair.einsum_eq is not None or pair.perm_a is not None or pair.perm_b is not None:
        return None, None  # a product for numpy.einsum, or an operand that needs a copy
    perm = tuple(pair.result_names.index(n) for n in target)
    return pair, None if perm == tuple(range(len(target))) else perm


def _scatter_pair(views, plan: Plan) -> np.ndarray:
    """A two-operand spec with an output window, contracted per window offset.

    Each offset is one GEMM written straight into its strided slice of the
    output, so the (often large) result before scattering never exists.
    """
    (a, b), (an, bn) = views, plan.read_names
    bound = plan.bound

    def part(fixed: dict[str, int]):
        return contract_pair(a[_index(an, fixed)], _drop(an, fixed),
                             b[_index(bn, fixed)], _drop(bn, fixed), _drop(plan.target, fixed))
    dtype = np.result_type(a, b)
    return scatter(part, bound.spec.output, bound.out_shape, bound.size_map, dtype)


#: Elements from which :func:`passes` multiplies a finite cotangent by its mask.
MASK_PRODUCT_MIN = 4096


def passes(where: np.ndarray, g: np.ndarray) -> np.ndarray:
    """``g`` where the boolean ``where`` holds, else +0: the vjp of a selection.

    A cotangent with an infinite or nan element is selected (``numpy.where``),
    not multiplied by the mask: inf or nan times the mask's 0 is nan where the
    gradient is 0 (``sqrt``'s cotangent at 0 is inf).  A finite one of
    :data:`MASK_PRODUCT_MIN` elements or more is multiplied by the mask, then
    added to 0, which turns the -0 of a negative element times 0 into the +0
    a selection writes: ``numpy.where`` branches on every element, and on a
    random mask of 1.6 million float32 elements takes about 5.8 ms where
    the product, its sum and the finiteness test take 0.6 ms (below about
    2,000 elements the test's fixed cost makes the product slower).
    """
    g = np.asarray(g)
    if (max(g.size, np.size(where)) >= MASK_PRODUCT_MIN and g.dtype.kind in "fc"
            and all_finite(g)):
        out = g * where
        out += 0
        return out
    return np.where(where, g, 0)


def all_finite(g: np.ndarray) -> bool:
    """Whether every element of the float or complex ``g`` is finite, found
    without a mask as large as ``g`` (a new array of a million elements or
    more costs page faults first): their sum is finite only if they all are.
    A finite sum too large for the dtype reads as not finite, which sends
    the caller the slower, selecting way."""
    wider = WIDER_SUMS.get(g.dtype)  # float16's range ends at 65504
    with np.errstate(over="ignore", invalid="ignore"):
        return bool(np.isfinite(np.sum(g, dtype=wider)))


def route_to_max(bound: Bound, x: np.ndarray, g: np.ndarray,
                 ans: np.ndarray | None = None) -> np.ndarray:
    """The vjp of a ``reduce="max"`` spec: each output's cotangent goes to the
    element its max selected (the first, on ties), scattered back through
    the input term (windows add up where they overlap).  ``ans``, the
    forward result, saves recomputing the max."""
    plan = make_plan(bound, "max")
    sizes = bound.size_map
    view, names = read_view(bound.spec.inputs[0], x, sizes)
    g_view, g_names = read_view(bound.spec.output, np.asarray(g), sizes)
    g_core = reduce_unary(g_view, g_names, plan.target, "sum")
    if plan.route_per_offset:
        return _route_per_offset(plan, view, names, x, g_core, ans)
    order = plan.target + "".join(n for n in names if n not in plan.target)
    block = view.transpose([names.index(n) for n in order])
    check_allocation(block.shape, np.result_type(x.dtype, g.dtype),
                     f"the gradient of max '{bound.spec}' routed over its window view")
    kept = len(plan.target)
    flat = block.reshape(block.shape[:kept] + (math.prod(block.shape[kept:]),))
    chosen = flat.argmax(axis=-1)[..., None] == np.arange(flat.shape[-1])
    routed = passes(chosen, g_core[..., None]).reshape(block.shape)
    return write_output(routed, order, bound.spec.inputs[0], x.shape, sizes)


def _route_per_offset(plan: Plan, view: np.ndarray, names: str, x: np.ndarray,
                      g_core: np.ndarray, ans: np.ndarray | None) -> np.ndarray:
    """:func:`route_to_max` when every reduced index is a window offset: the
    offsets are visited in order and each takes the maxima no earlier offset
    took, so ties go to the first, as ``argmax`` would send them."""
    loop, term, sizes = plan.offset_loop, plan.bound.spec.inputs[0], plan.bound.size_map
    kept = "".join(n for n in names if n not in loop)  # the target's indices, in read order
    to_kept = [plan.target.index(n) for n in kept]
    if ans is not None and plan.plain_output:
        top = np.asarray(ans).transpose(np.argsort(plan.output_perm or range(len(kept))))
    else:
        top = reduce_offsets(view, names, plan.target, "max", loop)
    top, g_kept = top.transpose(to_kept), g_core.transpose(to_kept)
    nan = top.dtype.kind in "fc" and bool(np.isnan(top).any())  # argmax picks the first nan
    check_allocation(x.shape, g_core.dtype, f"the gradient of max '{plan.bound.spec}'")
    # a finite cotangent times the hit mask is the cotangent or a zero, written
    # straight into the gradient where nothing was written yet (a sum would first
    # read the fresh zeros there, which page-faults twice), else added; numpy's
    # masked ufuncs (where=) are five to ten times slower.  Where the windows tile
    # the input, those products write every position: the gradient needs no zeros
    # first (a non-finite cotangent is selected, written at the hits only).  The
    # masks and the product reuse buffers: new ones would page-fault each time
    finite, shares = all_finite(g_kept), None
    writes_all = finite and plan.input_tiled
    out = (backend.empty if writes_all else backend.zeros)(x.shape, dtype=g_core.dtype)
    full, full_names = _output_view(out, term, sizes)
    if writes_all and plan.disjoint_windows and not nan:
        # every window holds its max; held once in each (no ties: as many hits as
        # windows), all offsets are routed in one pass in memory order, not one each
        at_max = [1 if n in loop else size for n, size in zip(names, view.shape)]
        hits = view == top.reshape(at_max)
        if np.count_nonzero(hits) == top.size:
            np.multiply(g_kept.reshape(at_max), hits, out=full)
            out += 0  # a -0 (a negative cotangent times False) as +0
            return out
    for k, (fixed, hit) in enumerate(_first_hits(view, names, top, loop, sizes, nan)):
        dest = full[_index(full_names, fixed)]
        if finite and (k == 0 or plan.disjoint_windows):
            np.multiply(g_kept, hit, out=dest)
        elif finite:
            if shares is None:
                shares = backend.empty(np.broadcast_shapes(g_kept.shape, hit.shape), dest.dtype)
            np.add(dest, np.multiply(g_kept, hit, out=shares), out=dest)
        # selected, not multiplied: an infinite cotangent times False would be nan
        elif plan.disjoint_windows:  # each input position gets one offset's value at most
            np.copyto(dest, g_kept, where=hit)
        else:
            np.add(dest, g_kept, out=dest, where=hit)
    out += 0  # a -0 (a negative cotangent times False) as +0, in one contiguous pass
    return out


def _first_hits(view: np.ndarray, names: str, top: np.ndarray, loop: str,
                sizes: dict[str, int], nan: bool):
    """For each assignment of the window offsets ``loop``, in order: the
    assignment and the mask of the maxima ``top`` its slice of ``view``
    holds that no earlier one took (with ``nan``, a nan takes a nan
    maximum).  The masks live in two buffers reused from one assignment to
    the next: read each before asking for the next."""
    offsets = list(itertools.product(*(range(sizes[n]) for n in loop)))
    taken = hit = None
    for k, values in enumerate(offsets):
        fixed = dict(zip(loop, values))
        if taken is not None and k == len(offsets) - 1:
            # the max is in the window: the rest is here
            hit = np.asarray(~taken) if hit is None else np.logical_not(taken, out=hit)
        else:
            part = view[_index(names, fixed)]
            # an array even when 0-d, to write into
            hit = np.asarray(part == top) if hit is None else np.equal(part, top, out=hit)
            if nan:
                hit |= np.isnan(part) & np.isnan(top)
            if taken is not None:
                np.greater(hit, taken, out=hit)  # hit and not taken
        yield fixed, hit
        if taken is None:
            taken, hit = hit, None  # the next offset's mask is a buffer of its own
        elif k < len(offsets) - 1:
            taken |= hit


def cast_to(operands: Sequence, dtype: np.dtype, cast: Callable | None = None,
            spec: Spec | None = None) -> list:
    """``operands`` in ``dtype``: each one in another dtype is cast, a new
    array checked against the memory budget first (a broadcast view becomes
    a full copy), by ``cast(operand, dtype)`` (default ``operand.astype``).
    Errors name the operands by position, of ``spec`` where given."""
    out = list(operands)
    for i, op in enumerate(out):
        if op.dtype != dtype:
            of = "" if spec is None else f" of '{spec}'"
            check_allocation(op.shape, dtype, f"a copy of operand {i}{of} in {dtype}")
            out[i] = op.astype(dtype) if cast is None else cast(op, dtype)
    return out


def computed_dtype(plan: Plan, operands: Sequence) -> np.dtype:
    """The dtype ``plan`` returns: numpy's common dtype of the operands, or
    float64 for a mean of integers or bools (as numpy's mean)."""
    dtype = np.result_type(*(op.dtype for op in operands))
    return np.dtype(np.float64) if plan.reduce == "mean" and dtype.kind in "biu" else dtype


def holds_half(arrays: Sequence[np.ndarray]) -> bool:
    """Whether a float16 array is among ``arrays`` (either byte order)."""
    for a in arrays:
        if a.dtype.char == "e":
            return True
    return False


def summing_dtype(dtype: np.dtype, plan: Plan | None = None) -> np.dtype:
    """The dtype a contraction returning ``dtype`` is computed in: float32
    for float16 (:data:`~contractnet.pair.WIDER_SUMS`), whose sums (a lone
    index summed before a product, an intermediate of a path) overflow past
    65504 where the result need not, and round at every term; its own for
    the others, and for a ``plan`` that adds nothing up (a product, a
    transpose, a diagonal: one rounding either way) or takes a max."""
    if plan is not None and not plan.widens_half:
        return dtype
    return WIDER_SUMS.get(dtype, dtype)


def scale_mean(array: np.ndarray, plan: Plan) -> np.ndarray:
    """``array`` divided by the number of elements each output averages
    (``reduce="mean"``); the forward pass and its transpose both scale so."""
    if plan.reduce != "mean" or plan.count == 1:
        return array
    return array * mean_scale(plan.count, array.dtype)


def mean_scale(count: int, dtype) -> np.ndarray:
    """``1 / count`` in ``dtype`` (a 0-d array), rounded once from a
    reciprocal worked out in at least float64 (a longdouble one in
    longdouble); a mean over nothing is nan, as in numpy."""
    dtype = np.dtype(dtype) if np.dtype(dtype).kind in "fc" else np.dtype(np.float64)
    if count == 0:
        return np.asarray(np.nan, dtype=dtype)
    if dtype.type in (np.longdouble, np.clongdouble):  # wider than a Python float
        return np.ones((), dtype) / count
    return np.asarray(1 / count, dtype=dtype)


def _read_views(plan: Plan, arrays: Sequence[np.ndarray]) -> Sequence[np.ndarray]:
    """The operands as plain terms (windows and diagonals read as views)."""
    if not plan.any_view:
        return arrays
    bound = plan.bound
    return [read_view(t, a, bound.size_map)[0] if v else a
            for t, a, v in zip(bound.spec.inputs, arrays, plan.needs_view)]


def _preferred_layout(plan: Plan, like: np.ndarray | None) -> str | None:
    """The index order, outermost first, in which ``like`` asks for the
    output; None when C order will do (or the output term is not plain)."""
    if like is None or not plan.plain_output or like.flags.c_contiguous:
        return None
    return _memory_names(plan.bound.spec.output, like)


def _contract(plan: Plan, views: Sequence[np.ndarray], memo: Memo | None,
              prefer: str | None, any_layout: bool) -> np.ndarray:
    """The contraction of ``plan`` on plain views, indices ``plan.target``;
    ``prefer`` and ``any_layout`` as :func:`contract_pair` takes them (a
    path of three or more operands takes ``any_layout`` at every step, and
    ignores ``prefer``)."""
    names = plan.read_names
    if len(views) == 1:
        if plan.offset_loop:
            return reduce_offsets(views[0], names[0], plan.target, plan.reduce,
                                  plan.offset_loop)
        return reduce_unary(views[0], names[0], plan.target, plan.reduce)
    if len(views) == 2:
        core, got = contract_pair(views[0], names[0], views[1], names[1], plan.target, memo,
                                  prefer, any_layout=any_layout)
        return core if got == plan.target else reduce_unary(core, got, plan.target, "sum")
    return run_path(views, list(names), plan.target, any_layout, plan.window_offsets,
                    plan.bound.spec)


# ------------------------------------------------------------------ pairwise steps
def reads_first(plan: Plan, operands: Sequence, dtype: np.dtype) -> tuple[bool, ...]:
    """Which operands of a pairwise run (:func:`pairwise_steps`) are read
    through their terms before they are cast to ``dtype``: those not plain
    and not in it, whose read is the smaller.  Empty when there are none
    (one key for the steps of every such run)."""
    bound = plan.bound
    sizes = bound.size_map
    flags = tuple(not _enters_plain(term, names) and x.dtype != dtype
                  and math.prod(sizes[n] for n in names) < math.prod(shape)
                  for term, names, x, shape in zip(bound.spec.inputs, plan.read_names, operands,
                                                   bound.in_shapes))
    return flags if any(flags) else ()


def _enters_plain(term, names: str) -> bool:
    """Whether an operand's term reads it as it is: ``names`` axis by axis."""
    return term.is_plain and "".join(term.axes) == names


class PairwiseSteps(NamedTuple):
    """The recorded steps of a spec of three or more operands run pairwise,
    each one's plan made once (:func:`pairwise_steps`).

    The operands, read first where ``reads`` has a plan and then cast to
    their common dtype, start a stack; each step pops the values at
    ``positions`` (descending) and pushes its plan's result onto the stack
    (or, with no plan, the one value popped); ``output``, where given,
    writes the last value into the output's term.
    """

    reads: tuple[Plan | None, ...]
    steps: tuple[tuple[tuple[int, ...], Plan | None], ...]
    output: Plan | None


def pairwise_steps(plan: Plan, read_first: tuple[bool, ...] = ()) -> PairwiseSteps:
    """The steps of ``plan``'s pairwise run, along the path
    :func:`~contractnet.path.plan_path` gives (the one the engine runs
    untraced), cached on the bound spec; ``read_first`` flags the operands
    read through their terms first (none when empty).

    An operand whose term is not plain and is not read first is held whole:
    it enters the step that first contracts it through its own term, and
    that step's transposed spec writes the gradient back through the term
    (a large window offset by offset, see :func:`~contractnet.engine.run_plan`).
    Read first, as a view of its path names, its backward pass would build
    the gradient of that view in full and then add it back into the
    operand: for a window, an array as many times the operand's size as the
    window has offsets.
    """
    key = ("pairwise", read_first)
    derived = plan.bound.derived
    steps = derived.get(key)
    if steps is None:
        steps = derived[key] = _plan_pairwise_steps(plan, read_first)
    return steps


def _plan_pairwise_steps(plan: Plan, read_first: tuple[bool, ...]) -> PairwiseSteps:
    """:func:`pairwise_steps`, uncached: the path run on index names alone."""
    whole = plan.bound
    spec, sizes = whole.spec, whole.size_map

    def step_plan(text: str, shapes: tuple, names: str, plain: bool,
                  out_shape: tuple[int, ...] | None = None) -> Plan:
        # a term held whole has sizes its shape does not tell (a window's offsets)
        parsed = parse(text)
        bound = (bind_array_shapes(parsed, shapes) if plain and out_shape is None
                 else bind(parsed, shapes, _only(sizes, names), out_shape))
        return make_plan(bound, "sum")

    def shape_of(names: str) -> tuple[int, ...]:
        return tuple(sizes[n] for n in names)

    reads, stack = [], []  # the stack holds (names, term it enters with, shape)
    for term, names, shape, first in zip(spec.inputs, plan.read_names, whole.in_shapes,
                                         read_first or [False] * len(spec.inputs)):
        if first:
            reads.append(step_plan(f"{term}->{names}", (shape,), names, False))
            stack.append((names, names, shape_of(names)))
        else:  # held whole where its term is not plain
            reads.append(None)
            stack.append((names, names if _enters_plain(term, names) else str(term), shape))
    path, _ = plan_path(plan.read_names, tuple(map(shape_of, plan.read_names)), plan.target,
                        plan.window_offsets)
    steps = []
    for positions, kept in path + (((0,), plan.target),):  # last: reduced to the target
        picked = [stack.pop(p) for p in positions]
        if len(picked) == 1:
            (names, term, shape), = picked
            plain = term == names
            steps.append((positions, None if plain and names == kept else
                          step_plan(f"{term}->{kept}", (shape,), names, plain)))
        else:
            (bn, bt, bshape), (an, at, ashape) = picked
            steps.append((positions, step_plan(f"{at},{bt}->{kept}", (ashape, bshape), an + bn,
                                               at == an and bt == bn)))
        stack.append((kept, kept, shape_of(kept)))
    output = None
    if str(spec.output) != plan.target:
        output = step_plan(f"{plan.target}->{spec.output}", (shape_of(plan.target),),
                           spec.output.indices(), False, whole.out_shape)
    return PairwiseSteps(tuple(reads), tuple(steps), output)


def _only(sizes: Mapping[str, int], names) -> dict[str, int]:
    names = set(names)
    return {k: v for k, v in sizes.items() if k in names}


# ------------------------------------------------------------------ execute
def execute(bound: Bound, arrays: Sequence[np.ndarray], reduce: str = "sum",
            memo: Memo | None = None, like: np.ndarray | None = None) -> np.ndarray:
    """Run a bound spec on arrays (already checked against its shapes):
    :func:`run_plan` of its cached plan (see there)."""
    return run_plan(make_plan(bound, reduce), arrays, memo, like)


def run_plan(plan: Plan, arrays: Sequence[np.ndarray], memo: Memo | None = None,
             like: np.ndarray | None = None) -> np.ndarray:
    """Run a plan on arrays (already checked against its bound spec's shapes).

    The result may be a view of an operand (e.g. a pure transpose); the
    public :func:`contractnet.einsum` copies in that case.  ``memo`` is
    passed to :func:`contract_pair` (copied GEMM operands shared between a
    forward pass and its backward pass).  ``like``, an array of the output's
    shape, asks for a result laid out in memory as it is where that is free
    (a backward pass gives each gradient its primal's layout, which the
    transposed contractions reading it next expect).  Without ``like`` (a
    forward pass), a product that numpy.einsum computes is written in the
    caller's order where numpy reads that order well, else in the order
    its operands lie in memory (see :func:`~contractnet.pair.plan_pair`),
    and so may come back non-contiguous.
    """
    out = run_direct(plan, arrays, like)  # the common case: one call
    return run_general(plan, arrays, memo, like) if out is None else out


def run_general(plan: Plan, arrays: Sequence[np.ndarray], memo: Memo | None = None,
                like: np.ndarray | None = None) -> np.ndarray:
    """:func:`run_plan` for the arrays :func:`run_direct` did not run: any
    plan, any layout (a caller that tried :func:`run_direct` itself calls
    this, not trying it twice)."""
    if plan.widens_half and holds_half(arrays):  # cheap, before result_type
        dtype = computed_dtype(plan, arrays)
        summing = summing_dtype(dtype)  # the plan's own tests just passed
        if summing != dtype:  # float16, added up in float32 and rounded once (with no memo:
            # copies of these casts could serve no backward pass, which casts anew)
            if not within_budget(plan):  # refused before the copies are made
                check_budget(plan, summing.itemsize)
            wide = cast_to(arrays, summing, spec=plan.bound.spec)
            return run_plan(plan, wide, None, like).astype(dtype)
    if not within_budget(plan):  # the cheap test first: most plans are small
        check_budget(plan, computed_dtype(plan, arrays).itemsize)
    if plan.reduce == "mean":  # a mean of integers or bools sums in float64
        arrays = cast_to(arrays, computed_dtype(plan, arrays), spec=plan.bound.spec)
    gemm = plan.contiguous_gemm
    prefer = None if like is None or like.flags.c_contiguous else _preferred_layout(plan, like)
    if (gemm is not None and prefer is None
            and arrays[0].flags.c_contiguous and arrays[1].flags.c_contiguous):
        core = run_gemm(gemm, arrays[0], arrays[1])  # the common case, planned in advance
        if plan.gemm_perm is not None:
            core = core.transpose(plan.gemm_perm)
    elif plan.scatter_per_offset:
        return _scatter_pair(_read_views(plan, arrays), plan)
    else:
        core = _contract(plan, _read_views(plan, arrays), memo, prefer, like is None)
    if plan.reduce == "mean":
        core = scale_mean(core, plan)
    if plan.plain_output:
        return core if plan.output_perm is None else core.transpose(plan.output_perm)
    bound = plan.bound
    return write_output(core, plan.target, bound.spec.output, bound.out_shape, bound.size_map)
