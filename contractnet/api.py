"""``cn.einsum`` and ``cn.backward_specs``: the public face of the engine.

``einsum`` validates at the boundary (spec, operands, sizes, reduction),
binds the spec to the operands' shapes and runs it as one recorded
primitive, :data:`contract`.  A spec with three or more operands runs
pairwise along the path :mod:`contractnet.path` plans, each pair a recorded two-operand
contraction, so that its backward pass reuses the forward's intermediates
(an operand with windows or a diagonal enters its first step through its
own term, so that step's backward adds its gradient back through it).
"""
from __future__ import annotations

from typing import Any, Mapping, Sequence

import numpy as np

from .bind import (Bound, bind, bind_array_shapes, bind_text, bound_by_text, check_operand_count,
                   checked_shape)
from . import ops
from .ops import scalar_or_array
from .engine import (REDUCTIONS, Plan, cast_to, check_budget, computed_dtype, make_plan,
                     mean_scale, pairwise_steps, reads_first, run_direct, run_general,
                     run_plan, summing_dtype, within_budget)
from .pair import Memo
from .spec import (Spec, SpecError, as_written, interleaved_spec, parse, subscript_index,
                   subscript_letter)
from .trace import Node, Traced, holds_traced, primitive, traced_list_error
from .transpose import transpose

#: ``dtype.kind`` of the arrays einsum takes: bool, integers, floats, complex.
NUMERIC_KINDS = "biufc"


@primitive
def contract(plan: Plan, memo: Memo | None, *arrays: np.ndarray) -> np.ndarray:
    """Run a planned spec; the result never shares memory with an operand
    and is writeable.

    A traced call may pass a fresh :class:`~contractnet.pair.Memo`, which its
    node keeps, closed, for the backward pass (see
    :func:`contractnet.pair.contract_pair`); an untraced one passes None.
    Only a one-operand spec can come back as a view (a transpose, a window,
    a diagonal), which is copied.
    """
    return _fresh(run_plan(plan, arrays, memo), arrays, memo)


def _fresh(out: np.ndarray, arrays: Sequence[np.ndarray], memo: Memo | None) -> np.ndarray:
    """A plan's result ``out`` as :data:`contract` returns it (sharing no
    memory with ``arrays``, writeable), its forward pass's ``memo`` closed."""
    if memo is not None:
        memo.close()
    # numpy sees no shared memory in an empty view
    if len(arrays) == 1 and (np.may_share_memory(out, arrays[0])
                             or (out.size == 0 and out.base is not None)):
        return out.copy()
    if not out.flags.writeable:
        # a read-only view of a private array: a diagonal or window of an integer
        # operand cast to float64 for a mean (it would also keep that whole copy alive)
        return out.copy()
    return out


def _spec_text(spec: bytes) -> str:
    try:
        return spec.decode("ascii")
    except UnicodeDecodeError:
        raise SpecError(f"a spec given as bytes must be ASCII, got {spec!r}") from None


def _as_spec(spec: str | bytes | Spec) -> Spec:
    if isinstance(spec, bytes):
        spec = _spec_text(spec)
    if isinstance(spec, str):
        return parse(spec)
    if isinstance(spec, Spec):
        return spec
    raise SpecError(f"a spec must be a string, got {type(spec).__name__}")


def einsum(spec: str | Spec | Any, *operands: Any, sizes: Mapping[str, int] | None = None,
           reduce: str = "sum") -> np.ndarray | Traced:
    """Evaluate an einsum spec; differentiable under :func:`contractnet.vjp`.

    Parameters
    ----------
    spec : str or bytes
        numpy's einsum grammar plus windowed groups ``(s*h+d*u)`` (ASCII
        bytes are read as text, as numpy reads them).  A first
        argument that is not a string starts numpy's interleaved form,
        ``einsum(op0, sublist0, op1, sublist1, ..., [output])``, with integer
        subscripts 0-25 read as ``A``-``Z`` and 26-51 as ``a``-``z``.
    *operands : array_like or Traced
    sizes : mapping, optional
        Sizes of indices no operand fixes: output-only indices, window sizes
        (keyed by integer subscript in the interleaved form, or by letter).
        A size given for an index an operand has must agree with the size
        the operands give it after broadcasting (an axis of size 1 takes
        another operand's size; ``sizes=`` cannot enlarge it).  A key
        naming a window group, such as ``"2h+u"`` (in any spelling the spec
        accepts: ``"(2*h + u)"``), gives the length of that axis; in the
        output it sets how long the written axis is (positions no window
        reaches are 0).
    reduce : {"sum", "mean", "max"}
        How contracted indices are combined; ``"max"`` takes one operand.

    Returns
    -------
    ndarray (a numpy scalar for a 0-d result, as :func:`numpy.einsum`
    returns), or Traced when an operand is traced.

    Raises
    ------
    SpecError
        Malformed spec, wrong operand count, rank or size mismatch.
    MemoryBudgetError
        The result or an intermediate would exceed the memory budget.
    TypeError
        An operand is a list or tuple of traced values (a list primal is
        traced element by element: make it one array with :func:`stack`).

    Examples
    --------
    >>> import numpy as np
    >>> einsum("bnmd,nmdk->bk", np.ones((2, 3, 3, 4)), np.ones((3, 3, 4, 5))).shape
    (2, 5)
    >>> einsum("b(2h+u)c->bhc", np.arange(5.0).reshape(1, 5, 1), sizes={"u": 2},
    ...        reduce="max").ravel()
    array([1., 3.])
    >>> einsum(np.ones((2, 3)), [0, 1], np.ones((3, 4)), [1, 2], [0, 2]).shape
    (2, 4)
    """
    if len(operands) == 2 and type(spec) is str and sizes is None and reduce == "sum":
        # the common call, kept short: two operands, spec text already bound for their
        # shapes (so it is valid); falls through to the full checks otherwise
        a, b = operands
        av = a.value if type(a) is Traced else a
        bv = b.value if type(b) is Traced else b
        if (type(av) is np.ndarray and type(bv) is np.ndarray
                and av.dtype.kind in NUMERIC_KINDS and bv.dtype.kind in NUMERIC_KINDS):
            bound = bound_by_text.get((spec, (av.shape, bv.shape)))
            # make_plan's own cache lookup, inline on this path; a plan that may not
            # fit the budget takes the full path, whose error quotes the spec as written
            plan = None if bound is None else bound.derived.get("sum") or make_plan(bound, "sum")
            if plan is not None and within_budget(plan):
                parents = []  # traced operands: (argument position in contract, value)
                if a is not av:
                    parents.append((2, a))
                if b is not bv:
                    parents.append((3, b))
                if not parents:
                    return scalar_or_array(run_plan(plan, operands))  # nothing to record
                return _record(plan, (av, bv), parents)
    if isinstance(spec, bytes):  # numpy takes ASCII bytes as spec text
        spec = _spec_text(spec)
    elif not isinstance(spec, (str, Spec)) and operands:
        spec, operands, sizes = _from_interleaved((spec,) + operands, sizes)
    parsed = parse(spec) if type(spec) is str else _as_spec(spec)  # checked first (cached)
    try:  # a refusal of the operands quotes the spec as the caller typed it
        check_reduce(parsed, reduce)
        if len(operands) == 1 and isinstance(operands[0], (list, tuple)) and len(parsed.inputs) > 1:
            # before numpy reads the list as one array (or fails to, for unequal shapes)
            raise SpecError(f"spec has {len(parsed.inputs)} operands but one "
                            f"{type(operands[0]).__name__} was given; pass the arrays one by one: "
                            f"cn.einsum(spec, *arrays)", str(parsed))
        values, parents, shapes = list(operands), [], []
        for i, x in enumerate(operands):
            if type(x) is Traced:
                parents.append((i + 2, x))
                values[i] = x.value
                shapes.append(x.value.shape)
                continue
            if type(x) is not np.ndarray:
                x = values[i] = _operand_array(x, i)
            if x.dtype.kind not in NUMERIC_KINDS:
                raise SpecError(f"operand {i} is not a numeric array (dtype {x.dtype})",
                                str(parsed))
            shapes.append(x.shape)
        if type(spec) is str:
            bound = bind_text(spec, tuple(shapes), sizes)  # keyed by the text: no Spec hashing
        else:
            bound = bind_array_shapes(parsed, tuple(shapes), sizes)
        if reduce == "max":
            check_max_is_defined(bound, parsed)
        plan = make_plan(bound, reduce)
        if not within_budget(plan):  # checked here to quote the spec as written
            check_budget(plan, summing_dtype(computed_dtype(plan, values), plan).itemsize, parsed)
        return _run_and_record(plan, operands, values, parents, parsed)
    except SpecError as exc:
        raise as_written(exc, spec) from None


def _operand_array(x: Any, operand: int) -> np.ndarray:
    """Array-like operand ``x`` as an array; a list or tuple of traced
    values (a list primal is a container, traced element by element) is
    refused by its operand number."""
    try:
        return np.asarray(x)
    except TypeError:
        if holds_traced(x):
            raise traced_list_error(f"operand {operand}", x) from None
        raise


def check_max_is_defined(bound: Bound, spec: Spec) -> None:
    """Refuse a max over nothing (a reduced index of size 0), as ``np.max``
    does, naming the empty indices as ``spec``, the spec as written, has them."""
    out = set(bound.spec.output.indices())
    empty = [k for k, n in bound.sizes if n == 0 and k not in out]
    if empty:
        written = spec.indices()
        names = [repr(k) if k in written else "an axis under '...'" for k in empty]
        raise SpecError(f"reduce='max' over {', '.join(dict.fromkeys(names))} of size 0: "
                        f"the max of no elements is undefined", str(spec))


def _run_and_record(plan: Plan, operands: Sequence, values: list[np.ndarray],
                    parents: list[tuple[int, Traced]], written: Spec):
    """Run ``plan`` on ``values``, the operands as arrays; with traced
    operands (``parents``), record the run.  A spec of three or more operands
    is recorded pairwise (see :func:`_contract_pairwise`); ``written``, the
    spec as the caller wrote it, names it in its backward pass's errors."""
    if not parents:
        return scalar_or_array(contract.fn(plan, None, *values))  # nothing to record
    if len(values) > 2:
        return _contract_pairwise(plan, [x if type(x) is Traced else v
                                         for x, v in zip(operands, values)], written)
    return _record(plan, tuple(values), parents)


def _record(plan: Plan, values: tuple, parents: list[tuple[int, Traced]],
            memo: Memo | None = None) -> Traced:
    """Run one or two operands and record the run as one :data:`contract` node.

    This is what calling the primitive records, built here because the
    traced operands are already known: ``parents`` holds their argument
    positions in ``contract(plan, memo, *values)`` and themselves.  The node
    keeps ``memo`` where given (a pairwise step's, naming the whole spec in
    errors), closed after it records the copies its backward pass can
    reuse; else such a :class:`~contractnet.pair.Memo` of its own, or None
    where it kept no copy (always so when the plan ran as one direct call,
    :func:`~contractnet.engine.run_direct`).
    """
    out = run_direct(plan, values)  # the head's case, without contract's set-up
    own = memo is None
    if out is None:
        if own:
            memo = Memo()
        out = _fresh(run_general(plan, values, memo), values, memo)
        if own and not memo.copies:  # nothing copied: nothing for the backward pass to reuse
            memo = None
    elif not own:
        memo.close()
    return Traced(out, Node(contract, (plan, memo) + values, NO_KEYWORDS, parents))


#: The keyword arguments of every recorded contraction: none.  One dict shared
#: by all their nodes (read as ``**node.kwargs``, never written).
NO_KEYWORDS: dict = {}


def _from_interleaved(args: tuple, sizes: Mapping | None):
    """numpy's interleaved form ``op0, sublist0, ..., [output]`` as spec text,
    operands, and ``sizes`` keyed by the letters of integer subscripts."""
    operands, sublists = args[0::2], args[1::2]
    output = None
    if len(args) % 2:
        operands, output = operands[:-1], args[-1]
    named = [(f"operand {i}'s sublist", s) for i, s in enumerate(sublists)]
    for what, sublist in named + [("the output sublist", output)]:
        if type(sublist) is Traced:  # an operand where a sublist goes (it iterates, even
            # as no subscripts at all when empty)
            raise SpecError(f"{what} is a traced value, not integers and Ellipsis, in numpy's "
                            f"interleaved form (operand, sublist, ..., [output sublist]); "
                            f"was the spec string left out?")
    text = interleaved_spec(sublists, output)
    if isinstance(sizes, Mapping):
        keyed, given = {}, {}
        for key, value in sizes.items():
            letter = _size_key(key)
            if letter in keyed and keyed[letter] != value:  # 1 and "B", say
                raise SpecError(f"sizes= gives index {letter!r} twice, as {given[letter]!r}: "
                                f"{keyed[letter]!r} and as {key!r}: {value!r}", text)
            keyed[letter], given[letter] = value, key
        sizes = keyed
    return text, operands, sizes


def _size_key(key: object) -> object:
    """A ``sizes`` key of the interleaved form: an integer subscript (a numpy
    integer too, not a bool) as its letter; anything else as given."""
    n = subscript_index(key)
    return subscript_letter(n) if n is not None and 0 <= n < 52 else key


def check_reduce(spec: Spec, reduce: str) -> None:
    """Refuse (:class:`SpecError`) an unknown ``reduce``, a max of several
    operands, and a mean or max written into an output window."""
    text = str(spec)
    if reduce not in REDUCTIONS:
        raise SpecError(f"reduce must be one of {', '.join(map(repr, REDUCTIONS))}, "
                        f"got {reduce!r}", text)
    if reduce == "sum":
        return
    if reduce == "max" and len(spec.inputs) != 1:
        raise SpecError(f"reduce='max' takes one operand, got {len(spec.inputs)}", text)
    if spec.output.windows:
        raise SpecError(f"reduce={reduce!r} cannot write an output window (overlapping "
                        f"positions are summed); use reduce='sum'", text, text.index("->") + 2)


def _contract_pairwise(plan: Plan, operands: Sequence, written: Spec):
    """Run a 3+ operand spec pairwise along its path, each step recorded as
    one :data:`contract` node; ``written`` is the spec as the caller wrote
    it (errors name it).  The steps' plans are made once per plan
    (:func:`~contractnet.engine.pairwise_steps`).

    An operand whose term is not plain (windows, a diagonal) enters its
    first step through that term, unless it must be cast to the operands'
    common dtype and its read has fewer elements (a diagonal, windows with
    gaps): that read is then made first, and cast.  The caller has checked
    ``plan`` against the memory budget (:func:`einsum` does, naming the spec
    as written).
    """
    bound = plan.bound
    step_of = (bound.spec, written)  # quoted only in an error message
    returned = np.result_type(*(x.dtype for x in operands))
    dtype = summing_dtype(returned)  # float16 adds up in float32, rounded once at the end
    read_first = reads_first(plan, operands, dtype) if any(
        x.dtype != dtype for x in operands) else ()
    steps = pairwise_steps(plan, read_first)
    values = [x if read is None else _record_step(read, (x,), step_of)
              for x, read in zip(operands, steps.reads)]
    # numpy computes the whole sum of products in the common dtype: contracted
    # pair by pair in their own dtypes, two int8 operands would wrap
    stack = cast_to(values, dtype, ops.astype, spec=bound.spec)
    for positions, step in steps.steps:
        picked = [stack.pop(p) for p in positions]  # descending: the later operand first
        stack.append(picked[0] if step is None else _record_step(step, picked[::-1], step_of))
    core, = stack
    if steps.output is not None:
        core = _record_step(steps.output, (core,), step_of)
    if plan.reduce == "mean" and plan.count != 1:  # traced: scaled by a recorded op
        core = core * mean_scale(plan.count, core.dtype)
    return core if dtype == returned else ops.astype(core, returned)


def _record_step(plan: Plan, values: Sequence, step_of: tuple) -> np.ndarray | Traced:
    """Run one step of a pairwise run on ``values`` (traced or not) and
    record it when any is traced; its node keeps a
    :class:`~contractnet.pair.Memo` holding ``step_of``, the whole spec bound
    and as written, which its backward pass's errors name."""
    arrays = tuple(v.value if type(v) is Traced else v for v in values)
    parents = [(i, v) for i, v in enumerate(values, 2) if type(v) is Traced]
    if not parents:
        return contract.fn(plan, None, *arrays)
    return _record(plan, arrays, parents, Memo(step_of))


def backward_specs(spec: str | Spec, *shapes: Sequence[int],
                   sizes: Mapping[str, int] | None = None) -> tuple[str, ...]:
    """The derived backward spec of every operand, as text.

    Parameters
    ----------
    spec : str
    *shapes : one shape per operand
        Always required.  They resolve ``...`` and size-1 broadcasting; in
        a spec with neither, the backward specs do not depend on them, and
        they are only checked against the spec.
    sizes : mapping, optional
        As for :func:`einsum`.

    Returns
    -------
    tuple of str
        Operand ``i``'s backward spec: the output's term takes the place of
        operand ``i`` and operand ``i``'s term becomes the output.  Where an
        axis broadcasts from size 1 (or ``...`` cannot stay), the specs show
        the bound form: ``...`` spelled out and a broadcast axis under a
        fresh private letter of size 1.  To run a spec by hand, give the
        sizes its operands' shapes do not fix: such a private letter's, an
        index only the gradient has, a window's outer index the forward
        sized from another operand, and, for a window written into the
        output (which has as many positions as its windows reach) where the
        forward operand's axis is longer (a stride leaving its last
        positions unread, whose gradient is zero), that axis's length keyed
        by the group, ``sizes={"2h+u": 8}``.  :func:`contractnet.explain`
        gives the fewest for each spec; the forward's own ``sizes=`` may
        not fit (a group's length there is the forward's axis).

    Raises
    ------
    SpecError
        For a malformed spec, a shape count other than the operand count, a
        shape that is not a sequence of non-negative ints, or sizes that do
        not fit the spec (as :func:`einsum` raises them).

    Examples
    --------
    >>> backward_specs("bnmd,nmdk->bk", (2, 3, 3, 4), (3, 3, 4, 5))
    ('bk,nmdk->bnmd', 'bnmd,bk->nmdk')
    """
    parsed = _as_spec(spec)
    try:  # quoting the spec as the caller typed it
        check_operand_count(parsed, len(shapes), "shape(s)")
        shapes = tuple(checked_shape(s, f"the shape of operand {i}", str(parsed))
                       for i, s in enumerate(shapes))
        bound = bind(parsed, shapes, sizes)
    except SpecError as exc:
        raise as_written(exc, spec) from None
    source = parsed if _ellipsis_transposes_exactly(parsed, bound) else bound.spec
    return tuple(str(transpose(source, i)) for i in range(len(parsed.inputs)))


def _ellipsis_transposes_exactly(parsed: Spec, bound: Bound) -> bool:
    """True when ``...`` can stay in the backward specs: every operand with an
    ellipsis covers all its axes, the output keeps them, nothing broadcasts."""
    if not parsed.has_ellipsis or not parsed.output.has_ellipsis:
        return False
    counts = {len(shape) - len(term.axes) + 1
              for term, shape in zip(parsed.inputs, bound.in_shapes) if term.has_ellipsis}
    extra = bound.spec.indices() - parsed.indices()
    return len(counts) == 1 and len(extra) == counts.pop()
