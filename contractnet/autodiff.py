"""Reverse-mode differentiation: ``vjp``, ``grad``, ``value_and_grad``.

Backward is one loop over the recorded nodes in reverse topological order
(decreasing serial number, see :class:`~contractnet.trace.Node`) applying
local rules from :data:`VJP_RULES`, the single table mapping each primitive
to its vjp.  A contraction's rule is its transposed spec, executed by the
engine; every other rule is a line or two of numpy.
"""
from __future__ import annotations

import heapq
import math
from typing import Any, Callable, Iterable, Sequence

import numpy as np

from . import ops
from .arguments import as_index
from .api import NUMERIC_KINDS, contract
from .bind import Bound, bind
from .budget import MemoryBudgetError, check_allocation
from .engine import (Plan, holds_half, make_plan, passes, quoted_spec, route_to_max,
                     run_direct, run_general, scale_mean, summing_dtype)
from .pair import PAIRWISE_BLOCK, memory_owner, sum_over
from .pytree import flatten_tree, named_leaves, rebuilder
from .trace import Node, Primitive, Traced
from .transpose import transpose

Rule = Callable[..., np.ndarray]


# ------------------------------------------------------------------ rules
def unbroadcast(g: np.ndarray, shape: tuple[int, ...]) -> np.ndarray:
    """Sum ``g`` back to ``shape``, undoing numpy broadcasting.

    Sums of more than :data:`~contractnet.pair.PAIRWISE_BLOCK` terms go to
    :func:`~contractnet.pair.sum_over` (leading axes row by row, others in
    blocks), where ``ndarray.sum`` would add most of their terms one by
    one: over (64, 28, 28, 32) to (1, 1, 1, 32) in float32, 6.8e-6 of the
    largest result off, against 2.0e-7, and 5 times as slow.  Shorter ones
    stay with ``ndarray.sum``, the fewest calls.
    """
    g = np.asarray(g)
    lead = g.ndim - len(shape)
    axes = tuple(range(lead))
    if 1 in shape:
        axes += tuple(lead + i for i, n in enumerate(shape) if n == 1 and g.shape[lead + i] != 1)
    if not axes:
        return g
    dtype = g.dtype if g.dtype.isnative else g.dtype.newbyteorder("=")
    if g.size > PAIRWISE_BLOCK * math.prod(shape):  # terms per result element
        summed = sum_over(g, axes, dtype)
    elif not lead:
        return g.sum(axis=axes, dtype=dtype, keepdims=True)
    else:
        summed = g.sum(axis=axes, dtype=dtype)
    return summed if len(axes) == lead else summed.reshape(shape)


def _contract_vjp(argnum: int, g, ans, plan: Plan, memo, *arrays):
    """The transposed spec of operand ``argnum - 2``, run by the engine
    (reusing the forward pass's copied GEMM operands, ``memo``)."""
    i = argnum - 2
    reduce = plan.reduce
    if reduce == "max":
        return route_to_max(plan.bound, arrays[0], g, ans)
    shape = g.shape if type(g) is np.ndarray else np.shape(g)
    # backward_plan's own cache lookup, inline: this runs once per operand per step
    backward = plan.bound.derived.get((i, shape)) or backward_plan(plan, i, shape)
    like = arrays[i]
    returned = None  # the gradient's dtype, where it is worked out in a wider one
    if reduce == "mean" and holds_half([np.asarray(g), *arrays]):
        dtype = np.result_type(g, *(a for j, a in enumerate(arrays) if j != i))
        wide = summing_dtype(dtype)
        if wide != dtype:  # float16: scaled and summed in float32, rounded once
            g, returned = np.asarray(g).astype(wide), dtype
    # a mean's gradient is the sum's, scaled: the smaller of the cotangent and
    # the gradient is (a pool's cotangent is a quarter of its gradient at 2x2),
    # the cotangent where it has the gradient's dtype (its scale is in its own)
    scale_first = (reduce == "mean" and math.prod(shape) < like.size
                   and np.result_type(g) == like.dtype)
    if scale_first:
        g = scale_mean(g, plan)
    try:
        if len(arrays) == 2:
            operands = (g, arrays[1]) if i == 0 else (arrays[0], g)
        else:
            operands = list(arrays)
            operands[i] = g
        grad = run_direct(backward, operands, like)  # the head's case, one call
        if grad is None:
            grad = run_general(backward, operands, memo, like)
    except MemoryBudgetError as exc:  # name the contraction the gradient belongs to
        where = f"operand {i} of '{plan.bound.spec}'"
        if memo is not None and memo.step_of is not None:
            where = quoted_spec(*memo.step_of, f"operand {i} of its pairwise step "
                                               f"'{plan.bound.spec}'")
        raise MemoryBudgetError(f"the gradient of {where}: {exc}") from None
    if reduce == "mean" and not scale_first:
        grad = scale_mean(grad, plan)
    return grad if returned is None else grad.astype(returned)


def backward_plan(plan: Plan, operand: int, grad_shape: tuple[int, ...]) -> Plan:
    """The plan of operand ``operand``'s transposed spec, bound to the sizes
    the forward spec fixes.  Cached on the forward bound spec, keyed by
    ``(operand, grad_shape)`` (the backward of a sum and of a mean is the same sum)."""
    derived = plan.bound.derived
    key = (operand, grad_shape)
    backward = derived.get(key)
    if backward is None:
        backward = derived[key] = make_plan(_bind_backward(plan.bound, operand, grad_shape),
                                            "sum")
    return backward


def _bind_backward(bound: Bound, operand: int, grad_shape: tuple[int, ...]) -> Bound:
    spec = transpose(bound.spec, operand)
    shapes = list(bound.in_shapes)
    shapes[operand] = grad_shape
    sizes = {k: v for k, v in bound.sizes if k in spec.indices()}
    return bind(spec, shapes, sizes, bound.in_shapes[operand])


def _expand(g, x, axis, keepdims):
    """Bring a reduction's cotangent back to the reduced operand's rank."""
    if keepdims:
        return g
    nd = np.ndim(x)
    if nd == 0:  # numpy reduces a 0-d value over axis 0 or -1 too: nothing to expand
        return np.reshape(g, ())
    axes = set(range(nd)) if axis is None else {int(a) % nd for a in np.atleast_1d(axis)}
    return np.reshape(g, tuple(1 if i in axes else n for i, n in enumerate(np.shape(x))))


def _extremum_rule(argnum, g, ans, x, axis=None, keepdims=False):
    """The vjp of ``max`` and of ``min``: the elements equal to the answer
    share its cotangent."""
    ans, x = _expand(ans, x, axis, keepdims), np.asarray(x)
    hit = x == ans
    if x.dtype.kind in "fc":  # a nan extremum came from the nans: they share its cotangent
        hit |= np.isnan(x) & np.isnan(ans)
    g = _expand(g, x, axis, keepdims)
    # each tie's share, counted in integers (a float16 count stops at 65504), its
    # reciprocal taken in at least float64 (a longdouble's in longdouble) and
    # applied in the cotangent's own real dtype (native byte order: a ufunc's dtype=),
    # or for the integer cotangent of an integer max in the float dtype numpy pairs
    # with it (the cast to integers before the max passes on zeros)
    ties = hit.sum(axis=ops._axis(axis), keepdims=True)
    share = np.finfo(np.result_type(g, np.float16)).dtype
    one = np.ones((), np.longdouble) if share == np.longdouble else 1  # else float64 will do
    return passes(hit, g * (one / ties).astype(share))


def _transpose_rule(argnum, g, ans, x, axes=None):
    if axes is None:
        return np.transpose(g)
    one = as_index(axes)  # a 1-d x's one axis, as numpy takes it: an int
    axes = axes if one is None else (one,)
    return np.transpose(g, np.argsort([a % np.ndim(x) for a in axes]))


def _logsumexp_rule(argnum, g, ans, x, axis=None, keepdims=False):
    return _expand(g, x, axis, keepdims) * np.exp(x - _expand(ans, x, axis, keepdims))


def _getitem_rule(argnum, g, ans, x, index):
    out = np.zeros(np.shape(x), dtype=np.asarray(g).dtype)
    np.add.at(out, index, g)
    return out


def _pad_rule(argnum, g, ans, x, pad_width):
    widths = np.broadcast_to(np.asarray(pad_width), (np.ndim(x), 2))
    return g[tuple(slice(lo, lo + n) for (lo, _), n in zip(widths, np.shape(x)))]


def _power_rule(argnum, g, ans, a, b):
    # a list or tuple operand is read as numpy reads it (b + 1 would extend a list)
    a, b = (np.asarray(x) if isinstance(x, (list, tuple)) else x for x in (a, b))
    if argnum == 0:  # b * a**(b-1), and 0 where b == 0 (a**0 is constant, even at a == 0)
        zero = np.equal(b, 0)  # there the exponent b-1 becomes 0: an integer a**-1 raises
        # a Python number stays one: as a numpy array it could promote the gradient
        safe = (b + 1 if zero else b) if isinstance(b, (int, float, complex)) else \
            np.where(zero, b + 1, b)
        with np.errstate(divide="ignore", invalid="ignore"):  # 0**-1 is inf, as it should be
            local = b * np.power(a, safe - 1)
        return unbroadcast(g * local, np.shape(a))
    # a**b * log(a), the log in the answer's dtype: complex (the principal branch) for a
    # complex answer; for a real one only where a > 0 (elsewhere a**b is not
    # real-differentiable in b, and the gradient is taken as 0)
    dtype = np.asarray(ans).dtype
    defined = np.not_equal(a, 0) if dtype.kind == "c" else np.greater(a, 0)
    log_a = np.log(np.where(defined, a, 1).astype(dtype, copy=False))
    local = np.where(defined, ans, 0) * log_a  # 0 where not defined, where ans may be inf
    # g masked too: an infinite cotangent (sqrt's at 0) times local's 0 would warn
    return unbroadcast(passes(defined, g) * local, np.shape(b))


def _cast_back(g, dtype: np.dtype) -> np.ndarray:
    """A cotangent in the dtype of the value it belongs to, as a new array (a
    real value's is real: the real part of a complex one)."""
    g = np.asarray(g)
    return (g.real if g.dtype.kind == "c" and dtype.kind != "c" else g).astype(dtype)


def _picks_left(a, b, prefers=np.greater_equal) -> np.ndarray:
    """Where ``maximum(a, b)`` is ``a`` (``minimum``'s, with ``prefers=np.less_equal``):
    ties, and a nan in ``a`` (numpy returns the first nan), go to ``a``; a nan
    only in ``b`` to ``b``."""
    a, b = np.asarray(a), np.asarray(b)
    left = prefers(a, b)
    if a.dtype.kind in "fc":
        left |= np.isnan(a)
    return left


def _absolute_rule(argnum, g, ans, a):
    a = np.asarray(a)
    if a.dtype.kind != "c":
        return g * np.sign(a)
    with np.errstate(divide="ignore", invalid="ignore"):
        direction = np.where(a == 0, 0, np.conj(a) / np.absolute(a))
    return g * direction


def _sqrt_rule(argnum, g, ans, a):
    with np.errstate(divide="ignore", invalid="ignore"):  # at 0: inf (nan where g is 0)
        return g / (2 * ans)


def _concatenate_rule(argnum, g, ans, axis, *arrays):
    """Operand ``argnum - 1``'s slice of the cotangent."""
    i = argnum - 1
    shapes = [np.shape(x) for x in arrays]
    if axis is None:  # numpy flattened the operands first
        start = sum(math.prod(s) for s in shapes[:i])
        return np.reshape(g[start:start + math.prod(shapes[i])], shapes[i])
    axis %= len(shapes[i])
    start = sum(s[axis] for s in shapes[:i])
    return g[(slice(None),) * axis + (slice(start, start + shapes[i][axis]),)]


def _sides(left: Callable, right: Callable) -> Rule:
    """A rule for a binary broadcasting op from its two local derivatives."""
    def rule(argnum, g, ans, a, b):
        local = (left if argnum == 0 else right)(g, ans, a, b)
        return unbroadcast(local, np.shape(a if argnum == 0 else b))
    return rule


def _always(node: Node) -> bool:
    return True


def _reads_its_answer(rule: Rule, when: Callable[[Node], bool] = _always) -> Rule:
    """Mark ``rule`` as reading its primitive's answer (``ans``), at the
    nodes where ``when`` holds; :func:`reads_answer` asks."""
    rule.reads_answer = when
    return rule


def reads_answer(node: Node) -> bool:
    """Whether ``node``'s vjp rule reads the node's answer (the rules marked
    by :func:`_reads_its_answer` in :data:`VJP_RULES`)."""
    when = getattr(VJP_RULES.get(node.primitive), "reads_answer", None)
    return when is not None and when(node)


VJP_RULES: dict[Primitive, Rule] = {
    contract: _reads_its_answer(_contract_vjp, when=lambda node: node.args[0].reduce == "max"),
    ops.add: _sides(lambda g, y, a, b: g, lambda g, y, a, b: g),
    ops.subtract: _sides(lambda g, y, a, b: g, lambda g, y, a, b: -g),
    ops.multiply: _sides(lambda g, y, a, b: g * b, lambda g, y, a, b: g * a),
    ops.divide: _reads_its_answer(_sides(lambda g, y, a, b: g / b,
                                         lambda g, y, a, b: -g * y / b)),
    ops.maximum: _sides(lambda g, y, a, b: passes(_picks_left(a, b), g),
                        lambda g, y, a, b: passes(~_picks_left(a, b), g)),
    ops.minimum: _sides(lambda g, y, a, b: passes(_picks_left(a, b, np.less_equal), g),
                        lambda g, y, a, b: passes(~_picks_left(a, b, np.less_equal), g)),
    ops.absolute: _absolute_rule,
    ops.sqrt: _reads_its_answer(_sqrt_rule),
    ops.conj: lambda n, g, y, a: np.conjugate(g),
    ops.real: lambda n, g, y, a: g,
    ops.imag: lambda n, g, y, a: -1j * np.asarray(g),
    ops._concatenate: _concatenate_rule,
    ops._where: lambda n, g, y, c, a, b: unbroadcast(
        passes(np.asarray(c, dtype=bool) if n == 1 else ~np.asarray(c, dtype=bool), g),
        np.shape(a if n == 1 else b)),
    ops.power: _reads_its_answer(_power_rule),
    ops.negative: lambda n, g, y, a: -g,
    ops.exp: _reads_its_answer(lambda n, g, y, a: g * y),
    ops.log: lambda n, g, y, a: g / a,
    ops.tanh: _reads_its_answer(lambda n, g, y, a: g * (1 - y * y)),
    ops.sigmoid: _reads_its_answer(lambda n, g, y, a: g * y * (1 - y)),
    ops.relu: lambda n, g, y, a: passes(np.asarray(a) > 0, g),
    ops.sum: lambda n, g, y, x, axis=None, keepdims=False: np.broadcast_to(
        _expand(g, x, axis, keepdims), np.shape(x)),
    ops.max: _reads_its_answer(_extremum_rule),
    ops.min: _reads_its_answer(_extremum_rule),
    ops.logsumexp: _reads_its_answer(_logsumexp_rule),
    ops.reshape: lambda n, g, y, x, shape: np.reshape(g, np.shape(x)),
    ops.transpose: _transpose_rule,
    ops.pad: _pad_rule,
    ops.astype: lambda n, g, y, a, dtype: (
        _cast_back(g, np.asarray(a).dtype) if np.dtype(dtype).kind in "fc"
        else np.zeros(np.shape(a), np.asarray(a).dtype)),  # integers carry no gradient
    ops.getitem: _getitem_rule,
}


# ------------------------------------------------------------------ backprop
def backprop(root: Traced, cotangent: np.ndarray) -> dict[int, np.ndarray]:
    """Gradients of the leaves under ``root`` (values with no node), keyed by ``id``.

    Nodes are visited in decreasing serial order (see :class:`~contractnet.trace.Node`),
    so every value's gradient is complete, all its consumers done, when its
    node passes it on to its parents.
    """
    if root.node is None:
        return {id(root): cotangent}
    grads: dict[int, np.ndarray] = {}
    pending: list[tuple[int, Traced]] = []  # a heap of the values whose nodes wait
    value, g = root, cotangent
    while True:
        node = value.node
        rule = VJP_RULES.get(node.primitive)
        if rule is None:
            raise NotImplementedError(f"no vjp rule for primitive {node.primitive.name}")
        ans, args, kwargs = value.value, node.args, node.kwargs
        for argnum, parent in node.parents:
            contribution = rule(argnum, g, ans, *args, **kwargs)
            if type(contribution) is not np.ndarray:
                contribution = np.asarray(contribution)
            if contribution.dtype.kind == "c" and parent.value.dtype.kind != "c":
                # a real value's cotangent is real: the rules before it may be
                # complex-linear (abs, a cast from complex), so project it here
                # (into an array of its own, not a strided view of the complex one;
                # copy keeps a 0-d gradient 0-d, where ascontiguousarray would not)
                contribution = contribution.real.copy()
            key = id(parent)
            previous = grads.get(key)
            if previous is None:
                grads[key] = contribution
                if parent.node is not None:  # first seen: its node waits for its turn
                    heapq.heappush(pending, (-parent.node.serial, parent))
            else:
                grads[key] = previous + contribution
        if not pending:
            return grads
        value = heapq.heappop(pending)[1]
        g = grads.pop(id(value))


# ------------------------------------------------------------------ primals
def _traced_leaves(primals: tuple) -> tuple[list[Traced], Callable[[list], tuple]]:
    """Every leaf of the (possibly nested) primals, checked and traced, and a
    function rebuilding the tuple of primals from such leaves."""
    parts = [flatten_tree(p) for p in primals]
    try:
        leaves = [Traced(_as_primal(leaf, f"primal {i}", traced_ok=False))
                  for i, (flat, _) in enumerate(parts) for leaf in flat]
    except DtypeError:
        refuse_non_float((f"primal {i}", p) for i, p in enumerate(primals))  # names the leaf
        raise
    return leaves, rebuilder(parts, tuple)


class DtypeError(TypeError, ValueError):
    """A primal that cannot be differentiated (integer, boolean, object)."""


def _as_primal(x: Any, name: str, traced_ok: bool = True) -> np.ndarray:
    """Primal ``x`` (called ``name`` in errors) as a floating-point array."""
    if isinstance(x, Traced):
        if not traced_ok:
            raise ValueError("vjp was called on traced values: differentiating a function "
                             "that itself differentiates (higher-order gradients) is not "
                             "supported")
        x = x.value
    if x is None:
        raise DtypeError(f"{name} is None: only floating-point (or complex) arrays can be "
                         f"differentiated")
    array = np.asarray(x)
    if array.dtype.kind not in "fc":
        raise DtypeError(f"{name} has dtype {array.dtype}: only floating-point "
                         f"(or complex) inputs can be differentiated; cast it, "
                         f"e.g. x.astype(np.float64)")
    return array


def refuse_non_float(named: Iterable[tuple[str, Any]]) -> None:
    """Check that every leaf of the ``(name, tree)`` pairs can be differentiated.

    Parameters
    ----------
    named : iterable of (str, pytree)
        Each argument under the name its errors give it (``"primal 0"``).

    Raises
    ------
    DtypeError
        For the first leaf that is not floating point, named with the keys
        and positions leading to it (``primal 0['b'][1]``).
    """
    for name, tree in named:
        for leaf_name, leaf in named_leaves(tree, name):
            _as_primal(leaf, leaf_name)


def vjp(fn: Callable, *primals: Any) -> tuple[Any, Callable]:
    """Evaluate ``fn(*primals)`` and return its vector-Jacobian product.

    Parameters
    ----------
    fn : callable
        Built from contractnet operations; returns one array.
    *primals : arrays, or nested dicts/lists/tuples of arrays
        Floating-point inputs; integer inputs are refused.

    Returns
    -------
    out : ndarray
        ``fn(*primals)``; read-only (copy it to change it) when a recorded
        step may read its memory again: when the last step's rule reads
        its answer (:func:`reads_answer`), or when it is a view.  An array
        primal that ``fn`` returns as it is (``lambda x: x``) comes back as
        that array itself, as calling ``fn`` gives it.
    vjp_fn : callable
        ``vjp_fn(cotangent)`` returns a tuple with one gradient per primal,
        each shaped (and nested) like its primal, with its dtype, and laid
        out in memory like it where that costs nothing.  Do not change a
        primal in place before calling ``vjp_fn``: operands the forward pass
        copied keep their old values, the others are read as they are then.
        It raises ``ValueError`` for a cotangent of the wrong shape, a
        non-numeric one, or a complex one for a real output, for a
        cotangent computed from the primals of a function still being
        differentiated (its plain value would cut that trace; a traced
        value of a finished trace is read as its value), and when the
        gradient reaches a traced value that is not one of these primals
        (a :class:`Traced` made by hand).

    Raises
    ------
    DtypeError
        A primal is not floating point (a ``TypeError`` and a ``ValueError``).
    ValueError
        When ``fn`` returns None, a tuple, list or dict, or a non-numeric
        array; when the primals are traced values, or ``fn``'s result was
        computed from a value an enclosing ``vjp`` or ``grad`` traces (this
        ``vjp`` runs inside a function being differentiated and would cut
        that trace: higher-order gradients are not supported).

    Notes
    -----
    Complex values follow ``jax.vjp``'s convention: a holomorphic step
    multiplies the cotangent by its derivative, not by the conjugate, and a
    real value computed from complex ones (``cn.abs(z)``) passes on its real
    cotangent.  The gradient of a real loss of complex ``z`` is therefore
    the conjugate of PyTorch's ``z.grad``; conjugate it for a descent step.

    Examples
    --------
    >>> import numpy as np, contractnet as cn
    >>> x, w = np.ones((2, 3, 3, 4)), np.ones((3, 3, 4, 5))
    >>> y, vjp_fn = cn.vjp(lambda x, w: cn.einsum("bnmd,nmdk->bk", x, w), x, w)
    >>> dx, dw = vjp_fn(np.ones_like(y))
    >>> dx.shape, dw.shape
    ((2, 3, 3, 4), (3, 3, 4, 5))
    """
    leaves, rebuild = [], tuple
    for x in primals:  # the common case: floating-point arrays, nothing nested
        if type(x) is not np.ndarray or x.dtype.kind not in "fc":
            leaves, rebuild = _traced_leaves(primals)
            break
        leaves.append(Traced(x))
    key = id(leaves)
    OPEN_TRACES[key] = leaves  # setting and deleting a key are atomic: no lock needed
    try:
        result = fn(*rebuild(leaves))
    finally:
        del OPEN_TRACES[key]
    if type(result) is Traced:
        if OPEN_TRACES:  # another vjp is running its function: this one may read its values
            _refuse_outer_values(result, leaves)
        out, node = result.value, result.node
    elif result is None or isinstance(result, (tuple, list, dict)):
        raise ValueError(f"the function must return one array, got {type(result).__name__}")
    else:
        out, node = np.asarray(result), None
    if out.dtype.kind not in NUMERIC_KINDS:  # strings, objects, a cast to either
        raise ValueError(f"the function must return a numeric array, got dtype {out.dtype}")
    # no primitive returns an argument itself: an answer owning its memory is new
    if node is not None and (out.base is not None or reads_answer(node)):
        out = out.view()  # a recorded step may read this memory again: the caller
        out.flags.writeable = False  # gets a read-only view of it

    def vjp_fn(cotangent: Any) -> tuple:
        if cotangent is None:
            raise ValueError(f"the cotangent is None; it must be a numeric array shaped like "
                             f"the output ({out.shape}, {out.dtype})")
        if isinstance(cotangent, Traced):
            if OPEN_TRACES and _reads_open_traces(cotangent):  # its value would cut them
                raise ValueError(TRACED_COTANGENT)
            cotangent = cotangent.value
        cot = cotangent
        if type(cot) is not np.ndarray:
            cot = np.asarray(cot)
        if cot.shape != out.shape or cot.dtype != out.dtype:
            cot = _checked_cotangent(cot, out)
        grads = backprop(result, cot) if isinstance(result, Traced) else {}
        # gradients must not share memory with these, nor with one another
        # (plain loops here: a comprehension costs a function object per call)
        owned = {id(memory_owner(cot))}
        for leaf in leaves:
            owned.add(id(memory_owner(leaf.value)))
        out_grads = []
        for leaf in leaves:
            out_grads.append(_leaf_grad(grads, leaf, owned))  # takes its entry from grads
        if grads:  # what is left came from traced values that are not these primals
            raise ValueError(NESTED_TRACE)
        return rebuild(out_grads)
    return out, vjp_fn


#: The traced primals of each :func:`vjp` call running its function, in any
#: thread, keyed by the identity of their list.  When another is open as one
#: ends, its result may read values that one traces (a nested call, in this
#: thread or one it started): its graph is walked (:func:`_refuse_outer_values`),
#: which raises only for such values.
OPEN_TRACES: dict[int, list[Traced]] = {}


def _graph_leaves(root: Traced) -> list[Traced]:
    """The traced values with no node that ``root`` was computed from
    (primals, or a :class:`Traced` made by hand); ``root`` itself if it has none."""
    leaves, seen, stack = [], {id(root)}, [root]
    while stack:
        value = stack.pop()
        if value.node is None:
            leaves.append(value)
            continue
        for _, parent in value.node.parents:
            if id(parent) not in seen:
                seen.add(id(parent))
                stack.append(parent)
    return leaves


def _refuse_outer_values(root: Traced, leaves: list[Traced]) -> None:
    """Raise if ``root`` was computed from a traced value that is not one of
    ``leaves``: a nested :func:`vjp` would otherwise return it as a constant,
    silently cutting the enclosing trace."""
    primals = {id(leaf) for leaf in leaves}
    if any(id(value) not in primals for value in _graph_leaves(root)):
        raise ValueError(NESTED_TRACE)


def _reads_open_traces(value: Traced) -> bool:
    """Whether ``value`` was computed from a primal of a :func:`vjp` still
    running its function (in any thread): a value of a finished trace, or a
    :class:`Traced` made by hand, is a constant now."""
    open_primals = {id(leaf) for leaves in list(OPEN_TRACES.values()) for leaf in leaves}
    return any(id(leaf) in open_primals for leaf in _graph_leaves(value))


def _checked_cotangent(cot: np.ndarray, out: np.ndarray) -> np.ndarray:
    """``cot`` as the cotangent of ``out``: numeric, of its shape, real if it
    is real, in the dtype both promote to."""
    if cot.dtype.kind not in NUMERIC_KINDS:
        raise ValueError(f"the cotangent has dtype {cot.dtype}; it must be a numeric array "
                         f"shaped like the output ({out.shape}, {out.dtype})")
    if cot.shape != out.shape:
        raise ValueError(f"the cotangent has shape {cot.shape} but the output has "
                         f"shape {out.shape}")
    if cot.dtype.kind == "c" and out.dtype.kind != "c":
        raise ValueError(f"the cotangent has dtype {cot.dtype} but the output is real "
                         f"({out.dtype}): its imaginary part would be lost; pass "
                         f"a real cotangent")
    return cot.astype(np.result_type(cot.dtype, out.dtype), copy=False)


#: Why a traced cotangent is refused while a function is being differentiated.
TRACED_COTANGENT = (
    "the cotangent is a traced value, inside a function being differentiated by vjp/grad: "
    "differentiating through a gradient (higher-order gradients) is not supported, and "
    "its plain value would silently cut that trace; pass a plain array (its .value) to "
    "treat it as a constant")

#: Why a gradient reached a traced value that is not a primal of its vjp.
NESTED_TRACE = (
    "the function reads a traced value that is none of its primals: one traced by an "
    "enclosing vjp/grad (a closure over it: differentiating through a gradient, higher-order "
    "gradients, is not supported), one left over from a trace that has ended, or a cn.Traced "
    "made by hand; pass such a value as a plain array (its .value)")


def _leaf_grad(grads: dict, leaf: Traced, owned: set[int]) -> np.ndarray:
    """The gradient of ``leaf`` (its entry, taken out of ``grads``) as an
    array the caller owns outright.

    Read-only views (broadcasts, windows) and arrays whose memory belongs to
    the cotangent, a primal or another gradient are copied.
    """
    value, g = leaf.value, grads.pop(id(leaf), None)
    if g is None:  # fn does not read this primal (a broadcast one may be large)
        check_allocation(value.shape, value.dtype, "the zero gradient of an unused primal")
        g = np.zeros_like(value)
    elif type(g) is not np.ndarray:
        g = np.asarray(g)
    if g.shape != value.shape:
        g = np.broadcast_to(g, value.shape)
    if g.dtype != value.dtype:
        g = _cast_back(g, value.dtype)  # a gradient has its primal's dtype (a copy)
        owner = id(g)
    else:
        owner = id(memory_owner(g))
        if owner in owned or not g.flags.writeable:
            g = np.array(g, copy=True)
            owner = id(g)
    owned.add(owner)
    return g


def value_and_grad(fn: Callable, argnums: int | Sequence[int] = 0) -> Callable:
    """``fn`` returning ``(fn(*args), gradient)`` for a scalar-valued ``fn``.

    The gradient is for ``args[argnums]`` (a tuple of gradients when
    ``argnums`` is a tuple); other arguments are held constant.

    Parameters
    ----------
    fn : callable
        Built from contractnet operations; returns one real value (any
        shape with one element).
    argnums : int, or tuple, list or range of int
        Which positional arguments to differentiate (negative counts from
        the end); each a floating-point array or a nested dict/list/tuple
        of them.

    Returns
    -------
    callable
        Taking ``fn``'s arguments (keywords are passed through) and
        returning ``(value, gradient)``, the gradient shaped like its
        argument.

    Raises
    ------
    ValueError
        When ``argnums`` is not an int or a non-empty sequence of ints; and,
        from the returned function, when an ``argnums`` entry is out of
        range or repeated, or ``fn``'s output has more than one element or
        is complex.
    DtypeError
        From the returned function, for an argument that is not floating
        point, named by its position (``argument 1['b']``).

    Examples
    --------
    >>> import numpy as np, contractnet as cn
    >>> value, g = cn.value_and_grad(lambda x: cn.sum(x * x))(np.array([1.0, 2.0]))
    >>> float(value), g.tolist()
    (5.0, [2.0, 4.0])
    """
    single, nums = _check_argnums(argnums)

    def wrapped(*args: Any, **kwargs: Any):
        for n in nums:
            if not -len(args) <= n < len(args):
                raise ValueError(f"argnums {n} is out of range for {len(args)} argument(s)")
        if len({n % len(args) for n in nums}) != len(nums):
            raise ValueError(f"argnums {nums} names an argument twice")

        def inner(*diff):
            full = list(args)
            for n, d in zip(nums, diff):
                full[n] = d
            return fn(*full, **kwargs)
        try:
            out, vjp_fn = vjp(inner, *(args[n] for n in nums))
        except DtypeError:  # name the argument by its own number, not its place among primals
            refuse_non_float((f"argument {n % len(args)}", args[n]) for n in nums)
            raise  # none of them: the error came from inside fn
        if np.size(out) != 1:
            raise ValueError(f"grad needs a function with one output value, got shape "
                             f"{np.shape(out)}; use vjp for non-scalar outputs")
        if np.iscomplexobj(out):
            raise ValueError(f"grad needs a real-valued function, got a {out.dtype} output; "
                             f"use vjp with a cotangent for complex outputs")
        grads = vjp_fn(np.ones_like(out))
        return out, (grads[0] if single else grads)
    return wrapped


def _check_argnums(argnums) -> tuple[bool, tuple[int, ...]]:
    """``(single, positions)`` from an int (a 0-d integer array too) or a
    tuple, list or range of ints (not bools)."""
    single = as_index(argnums)
    if single is not None:
        return True, (single,)
    positions = (tuple(as_index(n) for n in argnums)
                 if isinstance(argnums, (tuple, list, range)) else ())
    if not positions or None in positions:
        raise ValueError(f"argnums must be an int or a tuple, list or range of ints, "
                         f"got {argnums!r}")
    return False, positions


def grad(fn: Callable, argnums: int | Sequence[int] = 0) -> Callable:
    """The gradient of a scalar-valued ``fn`` with respect to ``args[argnums]``.

    :func:`value_and_grad` without the value: same parameters, same errors.

    Examples
    --------
    >>> import numpy as np, contractnet as cn
    >>> cn.grad(lambda x: cn.einsum("i,i->", x, x))(np.array([1.0, 2.0]))
    array([2., 4.])
    """
    value_and_grad_fn = value_and_grad(fn, argnums)
    return lambda *args, **kwargs: value_and_grad_fn(*args, **kwargs)[1]
