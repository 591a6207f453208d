"""The few primitives that are not contractions.

Elementwise arithmetic with numpy broadcasting, a handful of nonlinearities,
reductions and shape operations.  Each is a :class:`~contractnet.trace.Primitive`
whose vjp is one entry of the table in :mod:`contractnet.autodiff`; anything
that can be composed from these (``mean``, ``matmul``, ``sigmoid`` cross-
entropies, layers) is composed and has no rule of its own.

What holds for every op here, said once (each docstring below adds only what
is its own):

* **Operands** are array_like or :class:`~contractnet.trace.Traced`, and
  broadcast as in numpy.  Pass a traced operand by position: the primitives
  (all but ``where``, ``mean``, ``concatenate``, ``stack`` and ``matmul``)
  look for one only there, and refuse one given by keyword with a
  ``TypeError``.
* **Result**: a Traced when an operand is traced; else an ndarray, or a
  numpy scalar where the numpy function behind the op returns one for a 0-d
  result (the arithmetic and elementwise ops, ``sum``, ``mean``, ``max``,
  ``min``, ``getitem`` of one element, ``matmul`` of two vectors, and
  ``reshape`` or ``transpose`` of a numpy scalar).  Where they differ:
  ``sigmoid``, ``where``, ``pad`` and ``astype`` always return an ndarray
  (0-d for a 0-d result), and ``logsumexp`` returns a 0-d array for a
  reduction to 0-d (a numpy scalar only for a 0-d ``a``).
* **axis, keepdims** (the reductions ``sum``, ``mean``, ``max``, ``min``,
  ``logsumexp``): ``axis`` is None (all axes, the default), an int, or a
  tuple or list of ints, negative ones counting from the end (a 0-d integer
  array is an int); ``keepdims=True`` keeps each reduced axis with length 1.
  Any other axis (a bool, a float, an array of one or more dimensions) is
  refused with a ValueError naming the function; one out of range or given
  twice raises numpy's own error (an ``AxisError``, a ValueError).
"""
from __future__ import annotations

import operator
from typing import Any, Callable, Sequence

import numpy as np

from .budget import check_allocation
from .engine import holds_half, mean_scale
from .trace import Traced, primitive, value_of

__all__ = [
    "add", "subtract", "multiply", "divide", "negative", "power", "exp", "log", "tanh",
    "sigmoid", "relu", "maximum", "minimum", "abs", "absolute", "sqrt", "conj", "real", "imag",
    "where", "sum",
    "mean", "max", "min", "logsumexp", "log_softmax", "softmax", "reshape", "transpose", "pad",
    "getitem", "concatenate", "stack", "matmul", "astype",
]

Array = Any  # an ndarray, an array-like, or a Traced


@primitive
def add(a: Array, b: Array) -> np.ndarray:
    """``a + b`` with broadcasting: :func:`numpy.add`, traced."""
    return np.add(a, b)


@primitive
def subtract(a: Array, b: Array) -> np.ndarray:
    """``a - b`` with broadcasting: :func:`numpy.subtract`, traced."""
    return np.subtract(a, b)


@primitive
def multiply(a: Array, b: Array) -> np.ndarray:
    """``a * b`` with broadcasting: :func:`numpy.multiply`, traced."""
    return np.multiply(a, b)


@primitive
def divide(a: Array, b: Array) -> np.ndarray:
    """``a / b`` with broadcasting: :func:`numpy.divide`, traced."""
    return np.divide(a, b)


@primitive
def negative(a: Array) -> np.ndarray:
    """``-a``: :func:`numpy.negative`, traced."""
    return np.negative(a)


@primitive
def power(a: Array, b: Array) -> np.ndarray:
    """``a ** b`` with broadcasting: :func:`numpy.power`, traced.

    The gradient for ``a`` is 0 where ``b`` is 0 (even at ``a == 0``); the
    gradient for ``b``, ``a ** b * log(a)``, is taken as 0 where a real answer
    has ``a <= 0`` (a complex one uses the principal log, 0 at ``a == 0``).
    """
    return np.power(a, b)


@primitive
def exp(a: Array) -> np.ndarray:
    """Elementwise exponential: :func:`numpy.exp`, traced."""
    return np.exp(a)


@primitive
def log(a: Array) -> np.ndarray:
    """Elementwise natural logarithm: :func:`numpy.log`, traced."""
    return np.log(a)


@primitive
def tanh(a: Array) -> np.ndarray:
    """Elementwise hyperbolic tangent: :func:`numpy.tanh`, traced."""
    return np.tanh(a)


@primitive
def sigmoid(a: Array) -> np.ndarray:
    """Elementwise logistic function ``1 / (1 + exp(-a))``, traced.

    Without overflow and to full relative precision on both sides of 0 (far
    below 0 it is ``exp(a) / (1 + exp(a))``, not 1 minus a number near 1); a
    complex ``a`` splits on the sign of its real part.  The result is in
    ``a``'s dtype when it is floating or complex, else (bools, integers) float64.
    """
    a = np.asarray(a)
    if a.dtype.kind not in "fc":
        a = a.astype(np.float64)
    upper = np.real(a) >= 0
    small = np.exp(np.where(upper, -a, a))  # |exp| <= 1: never overflows
    big = 1 / (1 + small)
    return np.where(upper, big, small * big)


@primitive
def relu(a: Array) -> np.ndarray:
    """Elementwise ``max(a, 0)``: ``numpy.maximum(a, 0)``, traced.

    The gradient passes where ``a > 0`` only (it is 0 at 0).
    """
    return np.maximum(a, 0)


@primitive
def maximum(a: Array, b: Array) -> np.ndarray:
    """Elementwise maximum with broadcasting: :func:`numpy.maximum`, traced.

    On ties the gradient goes to ``a``, and to whichever operand has the nan
    that numpy's maximum returns.
    """
    return np.maximum(a, b)


@primitive
def minimum(a: Array, b: Array) -> np.ndarray:
    """Elementwise minimum with broadcasting: :func:`numpy.minimum`, traced.

    On ties the gradient goes to ``a``, and to whichever operand has the nan
    that numpy's minimum returns.
    """
    return np.minimum(a, b)


@primitive
def absolute(a: Array) -> np.ndarray:
    """Elementwise ``|a|``: :func:`numpy.absolute` (also ``cn.abs``), traced.

    Its gradient is ``sign(a)`` (0 at 0), and for a complex ``a`` the
    cotangent times ``conj(a) / |a|`` (jax's convention).
    """
    return np.absolute(a)


abs = absolute  # numpy's short name (cn.abs), as np.abs is np.absolute


@primitive
def conj(a: Array) -> np.ndarray:
    """Elementwise complex conjugate: :func:`numpy.conjugate`, traced.

    Not holomorphic: its vjp conjugates the cotangent (jax's convention).
    A real ``a`` is returned as a copy.
    """
    return np.conjugate(a)


@primitive
def real(a: Array) -> np.ndarray:
    """The real part: :func:`numpy.real`, traced, as a new array (numpy's is
    a view of ``a``).  Its vjp passes the cotangent on as the real part."""
    return scalar_or_array(np.asarray(a).real.copy())


@primitive
def imag(a: Array) -> np.ndarray:
    """The imaginary part: :func:`numpy.imag`, traced, as a new array (zeros
    for a real ``a``).  Its vjp passes the cotangent ``g`` on as ``-1j * g``
    (jax's convention: ``real(vjp(g) * v) == g * imag(v)``)."""
    return scalar_or_array(np.asarray(a).imag.copy())


def scalar_or_array(x: np.ndarray) -> np.ndarray | np.generic:
    """A 0-d result as the numpy scalar numpy returns (its ufuncs, its
    einsum); others as they are."""
    return x[()] if x.ndim == 0 else x


@primitive
def sqrt(a: Array) -> np.ndarray:
    """Elementwise square root: :func:`numpy.sqrt`, traced.

    The principal root for a complex ``a``; the gradient at 0 is infinite
    (nan where the cotangent there is 0).
    """
    return np.sqrt(a)


@primitive
def _where(cond: Array, a: Array, b: Array) -> np.ndarray:
    return np.where(cond, a, b)


def where(cond: Array, a: Array, b: Array) -> np.ndarray | Traced:
    """``a`` where ``cond`` holds, else ``b``: :func:`numpy.where`, traced.

    ``cond`` is not differentiated: a traced ``cond`` is read as its value, and
    the result is a Traced only when ``a`` or ``b`` is traced.

    Parameters
    ----------
    cond : array_like or Traced
        Read as bool (nonzero is true); broadcasts with ``a`` and ``b``.
    """
    cond = cond.value if isinstance(cond, Traced) else np.asarray(cond, dtype=bool)
    return _where(cond, a, b)


@primitive
def sum(a: Array, axis: int | Sequence[int] | None = None, keepdims: bool = False) -> np.ndarray:
    """Sum over ``axis`` (all axes by default): :func:`numpy.sum`, traced.

    As numpy sums: in the dtype of a floating ``a``, and bools and integers
    in at least the platform integer (a sum of bools counts them, int8 does
    not wrap at 127).
    """
    return np.sum(np.asarray(a), axis=_axis(axis, "sum"), keepdims=keepdims)


def mean(a: Array, axis: int | Sequence[int] | None = None,
         keepdims: bool = False) -> np.ndarray | Traced:
    """Mean over ``axis`` (all axes by default), keeping a floating dtype.

    As in :func:`numpy.mean`, integers and bools average in float64, and
    float16 is summed in float32 (a float16 sum past 65504 would overflow
    where the mean does not) and returned in float16.  The mean of no
    elements is nan (without numpy's warning).  Composed of :func:`sum` and
    :func:`multiply`.
    """
    _axis(axis, "mean")  # refused by its own name, not by sum's
    dtype = a.dtype if isinstance(a, Traced) else np.asarray(a).dtype
    if dtype.kind in "biu":
        a = astype(a, np.float64)  # (a traced integer comes from cn.astype)
    elif dtype == np.float16:
        out = astype(mean(astype(a, np.float32), axis, keepdims), np.float16)
        return out if isinstance(out, Traced) or out.ndim else out[()]  # numpy's scalar
    shape = a.shape if isinstance(a, Traced) else np.shape(a)
    total = sum(a, axis, keepdims)  # first: numpy checks the axes (an AxisError)
    if axis is not None and not shape:  # numpy.mean refuses any axis of a 0-d value
        raise np.exceptions.AxisError(int(np.atleast_1d(axis)[0]), 0)
    axes = range(len(shape)) if axis is None else np.atleast_1d(axis)
    count = int(np.prod([shape[i] for i in axes]))
    return multiply(total, mean_scale(count, total.dtype))


@primitive
def max(a: Array, axis: int | Sequence[int] | None = None, keepdims: bool = False) -> np.ndarray:
    """Maximum over ``axis`` (all axes by default): :func:`numpy.max`, traced.

    The gradient is shared equally among ties (among the nans, for a nan
    maximum).

    Raises
    ------
    ValueError
        numpy's own for the maximum of no elements (a reduced axis of
        length 0), besides the shared ``axis`` errors.
    """
    return np.max(a, axis=_axis(axis, "max"), keepdims=keepdims)


@primitive
def min(a: Array, axis: int | Sequence[int] | None = None, keepdims: bool = False) -> np.ndarray:
    """Minimum over ``axis`` (all axes by default): :func:`numpy.min`, traced.

    The gradient is shared equally among ties (among the nans, for a nan
    minimum).

    Raises
    ------
    ValueError
        numpy's own for the minimum of no elements (a reduced axis of
        length 0), besides the shared ``axis`` errors.
    """
    return np.min(a, axis=_axis(axis, "min"), keepdims=keepdims)


@primitive
def logsumexp(a: Array, axis: int | Sequence[int] | None = None,
              keepdims: bool = False) -> np.ndarray:
    """``log(sum(exp(a), axis))`` computed without overflow, traced.

    The largest element is subtracted before ``exp`` (where it is finite).
    The gradient is ``exp(a - logsumexp(a))``, the softmax over ``axis``.
    Integers and bools are reduced in float64, as :func:`mean` reduces them
    (numpy's ``exp`` would give int8 float16); float16 is summed in float32,
    also as :func:`mean` sums it, and returned in float16.

    Raises
    ------
    ValueError
        As :func:`max`: numpy's own for no elements (a reduced axis of
        length 0), besides the shared ``axis`` errors.
    """
    a = np.asarray(a)
    if a.dtype.kind in "biu":
        a = a.astype(np.float64)
    top = np.max(a, axis=_axis(axis, "logsumexp"), keepdims=True)
    top = np.where(np.isfinite(top), top, np.zeros_like(top))
    # float16 sums in float32, as mean does: past 65504 terms of up to 1 a float16 sum is inf
    half = holds_half([a])
    with np.errstate(divide="ignore"):  # all -inf: the log of 0 is -inf, the answer
        out = np.log(np.sum(np.exp(a - top), axis=_axis(axis), keepdims=True,
                            dtype=np.float32 if half else None)) + top
    if half:
        out = out.astype(np.float16)
    return out if keepdims else np.squeeze(out, axis=_axis(axis))


def log_softmax(a: Array, axis: int | Sequence[int] | None = -1) -> np.ndarray | Traced:
    """Log-probabilities over ``axis`` (the last by default), traced.

    ``s - logsumexp(s, axis)`` with ``s = a - max(a, axis)``, the max a
    constant (a shift leaves the result and its gradient as they are;
    where it is not finite, 0): then the log-sum lies between 0 and the log
    of the count, and rounding it costs no more than the result's own
    rounding, where ``a - logsumexp(a)`` would lose it next to large logits
    (float16 ``[1000, 1000]`` would give ``-0.5`` each, not ``log(0.5)``).
    Integers and bools come out float64, as :func:`logsumexp` makes them;
    a row of only ``-inf`` gives nan.

    >>> import numpy as np, contractnet as cn
    >>> np.exp(cn.log_softmax(np.array([0.0, 0.0]))).tolist()
    [0.5, 0.5]
    """
    value = np.asarray(value_of(a))
    if value.dtype.kind in "biu":  # a bool can be no shift's operand
        a, value = astype(a, np.float64), value.astype(np.float64)
    top = np.max(value, axis=_axis(axis, "log_softmax"), keepdims=True)
    shifted = subtract(a, np.where(np.isfinite(top), top, 0).astype(top.dtype, copy=False))
    return subtract(shifted, logsumexp(shifted, axis, keepdims=True))


def softmax(a: Array, axis: int | Sequence[int] | None = -1) -> np.ndarray | Traced:
    """Probabilities over ``axis`` (the last by default): ``exp(log_softmax(a,
    axis))``, traced, without overflow (attention's weights over its keys:
    ``cn.softmax(scores, axis=-1)``)."""
    return exp(log_softmax(a, axis))


@primitive
def reshape(a: Array, shape: int | Sequence[int]) -> np.ndarray:
    """``a`` in a new shape: :func:`numpy.reshape`, traced.

    The result is a view of ``a`` unless numpy needs a copy.

    Parameters
    ----------
    shape : int or sequence of int
        The new shape, of as many elements; one entry may be -1.
    """
    return np.reshape(a, shape)


@primitive
def transpose(a: Array, axes: Sequence[int] | None = None) -> np.ndarray:
    """Permute the axes (reverse them by default): :func:`numpy.transpose`, traced.

    The result is a view, as numpy's.

    Parameters
    ----------
    axes : sequence of int, optional
        A permutation of the axes; negative ones count from the end.
    """
    return np.transpose(a, axes)


@primitive
def pad(a: Array, pad_width: int | Sequence[int] | Sequence[Sequence[int]]) -> np.ndarray:
    """Zero padding: :func:`numpy.pad` with zeros, traced.

    The result is a new array in ``a``'s dtype.

    Parameters
    ----------
    pad_width : int, (before, after), or one (before, after) pair per axis
        Integer widths ``>= 0`` that broadcast to ``(a.ndim, 2)``, as
        :func:`numpy.pad` reads them.

    Raises
    ------
    ValueError
        For widths that are not integers or are negative, or a ``pad_width``
        that does not fit ``a``.
    MemoryBudgetError
        When the padded array would exceed the memory budget.

    Examples
    --------
    >>> import numpy as np, contractnet as cn
    >>> cn.pad(np.ones((1, 2)), ((0, 0), (1, 0)))
    array([[0., 1., 1.]])
    """
    a = np.asarray(a)
    given = np.asarray(pad_width)
    if given.dtype.kind not in "iu" or given.size == 0:  # numpy.pad refuses 1.5, not we alone
        raise ValueError(f"pad widths must be integers, got {pad_width!r}")
    try:
        widths = np.broadcast_to(given, (a.ndim, 2)).tolist()
    except ValueError:
        raise ValueError(f"pad widths {given.tolist()} do not fit an array of "
                         f"{a.ndim} dimension(s): give one (before, after) pair per axis, "
                         f"one pair for all, or one width") from None
    if any(lo < 0 or hi < 0 for lo, hi in widths):
        raise ValueError(f"pad widths must be >= 0, got {given.tolist()}")
    shape = [n + lo + hi for n, (lo, hi) in zip(a.shape, widths)]
    check_allocation(shape, a.dtype, "the padded array")
    # zeros and one slice assignment: np.pad's general machinery costs ~10x more on small arrays
    out = np.zeros(shape, dtype=a.dtype)
    out[tuple(slice(lo, lo + n) for n, (lo, _) in zip(a.shape, widths))] = a
    return out


@primitive
def getitem(a: Array, index: Any) -> np.ndarray:
    """``a[index]``: numpy's basic, integer-array and boolean indexing, traced.

    The result is a view for basic indexing, as numpy's.  An element that
    ``index`` picks more than once gets the sum of its cotangents.

    Parameters
    ----------
    index : int, slice, Ellipsis, None, int or bool array, or a tuple of these
    """
    return np.asarray(a)[index]


@primitive
def _concatenate(axis: int | None, *arrays: Array) -> np.ndarray:
    return np.concatenate(arrays, axis=axis)


def concatenate(arrays: Sequence[Array], axis: int | None = 0) -> np.ndarray | Traced:
    """Join ``arrays`` along an existing ``axis`` (flattened first when
    ``axis`` is None), as :func:`numpy.concatenate`; each gradient is its
    operand's slice of the cotangent.

    Parameters
    ----------
    arrays : sequence of array_like or Traced
        A list, tuple or other sequence; plain and traced arrays may mix.
    axis : int or None

    Raises
    ------
    ValueError
        For one array rather than a sequence of them (numpy would iterate
        over its rows) or any other non-sequence (a generator), an empty
        sequence, a non-integer ``axis`` or one out of range, and shapes
        that do not join.
    """
    _check_sequence(arrays, "concatenate")
    return _concatenate(None if axis is None else _axis_number(axis, "concatenate"), *arrays)


def stack(arrays: Sequence[Array], axis: int = 0) -> np.ndarray | Traced:
    """Join ``arrays``, all of one shape, along a new ``axis``, as
    :func:`numpy.stack`.

    Parameters
    ----------
    arrays : sequence of array_like or Traced
        A list, tuple or other sequence; plain and traced arrays may mix.
    axis : int
        Position of the new axis in the result.

    Raises
    ------
    ValueError
        For one array rather than a sequence of them or any other non-sequence
        (a generator), an empty sequence, a non-integer ``axis`` or one out of
        range, and arrays of different shapes (naming the first that differs).
    """
    _check_sequence(arrays, "stack")
    axis = _axis_number(axis, "stack")
    shapes = [np.shape(value_of(a)) for a in arrays]
    for i, shape in enumerate(shapes):
        if shape != shapes[0]:
            raise ValueError(f"stack needs arrays of one shape: array 0 has {shapes[0]}, "
                             f"array {i} has {shape}")
    return concatenate([reshape(a, np.expand_dims(value_of(a), axis).shape)
                        for a in arrays], axis)


def _check_sequence(arrays, what: str) -> None:
    """Refuse anything but a sequence of arrays (an array, a traced value)."""
    if isinstance(arrays, (Traced, np.ndarray)) or not isinstance(arrays, Sequence):
        raise ValueError(f"{what} takes a sequence of arrays, got {type(arrays).__name__}")


@primitive
def astype(a: Array, dtype: np.dtype | type | str) -> np.ndarray:
    """``a`` cast to ``dtype`` (a new array): :meth:`numpy.ndarray.astype`, traced.

    The gradient is cast back to ``a``'s dtype (the real part for a real
    ``a``); a cast to a dtype that is neither floating nor complex passes
    a zero gradient.

    Parameters
    ----------
    dtype : dtype, type or str
        Anything :class:`numpy.dtype` reads.

    Examples
    --------
    >>> import numpy as np, contractnet as cn
    >>> cn.grad(lambda x: cn.sum(cn.astype(x, np.float64) ** 2))(np.ones(2, np.float32))
    array([2., 2.], dtype=float32)
    """
    return np.asarray(a).astype(dtype)


def matmul(a: Array, b: Array) -> np.ndarray | Traced:
    """``a @ b`` with numpy's rules, as an einsum (so no rule of its own).

    Parameters
    ----------
    a, b : array_like or Traced
        Each at least 1-d.  As in :func:`numpy.matmul`, a 1-d operand is a
        vector, and the axes before the last two broadcast.

    Raises
    ------
    ValueError
        If an operand is 0-d.
    SpecError
        From :func:`contractnet.einsum`: the contracted sizes differ, the
        leading axes do not broadcast, or an operand is not numeric.

    Examples
    --------
    >>> import numpy as np, contractnet as cn
    >>> cn.matmul(np.ones((4, 2, 3)), np.ones((3, 5))).shape
    (4, 2, 5)
    """
    from .api import einsum
    da, db = len(np.shape(value_of(a))), len(np.shape(value_of(b)))
    if da == 0 or db == 0:
        raise ValueError("matmul: operands must have at least one dimension")
    left = "...ij" if da > 1 else "j"
    right = "...jk" if db > 1 else "j"
    out = ("...i" if da > 1 else "...") + ("k" if db > 1 else "")
    if da == 1 and db == 1:
        out = ""
    elif da == 1:
        right, out = "...jk", "...k"
    elif db == 1:
        left, out = "...ij", "...i"
    return einsum(f"{left},{right}->{out}", a, b)


def _untraced(ufunc: np.ufunc) -> Callable:
    """``ufunc`` on plain values (a comparison answers with a plain array)."""
    return lambda a, b: ufunc(value_of(a), value_of(b))


#: The ufuncs behind Python's operators, as the operations that trace them;
#: :meth:`Traced.__array_ufunc__` reads it (``ndarray + Traced`` calls ``np.add``).
OPERATOR_UFUNCS: dict[np.ufunc, Callable] = {
    np.add: add, np.subtract: subtract, np.multiply: multiply,
    np.true_divide: divide, np.power: power, np.matmul: matmul,
    np.negative: negative, np.positive: lambda a: a, np.absolute: absolute,
    np.conjugate: conj,
    **{compare: _untraced(compare) for compare in (
        np.equal, np.not_equal, np.less, np.less_equal, np.greater, np.greater_equal)},
}
#: numpy functions (and ufunc methods) whose contractnet equivalent is named otherwise.
CN_EQUIVALENTS = {"absolute": "abs", "true_divide": "divide", "add.reduce": "sum",
                  "maximum.reduce": "max", "minimum.reduce": "min", "amax": "max",
                  "amin": "min", "dot": "matmul", "inner": "einsum", "tensordot": "einsum",
                  "squeeze": "reshape", "ravel": "reshape"}
#: What to write instead of a numpy function (or array method) that has no
#: contractnet function of its own but a short composition.
CN_COMPOSITIONS = {
    "square": "x * x", "clip": "cn.minimum(cn.maximum(x, low), high)",
    "expand_dims": "x[None] or cn.reshape", "log1p": "cn.log(1 + x)", "expm1": "cn.exp(x) - 1",
    "var": "cn.mean((x - cn.mean(x, axis, keepdims=True)) ** 2, axis)",
    "std": "cn.sqrt(cn.mean((x - cn.mean(x, axis, keepdims=True)) ** 2, axis))",
    "norm": "cn.sqrt(cn.sum(cn.abs(x) ** 2, axis))",
    "copy": "x itself (a traced value is never changed in place)",
    "cumsum": "cn.einsum with a triangular mask, 'i,ij->j'",
}


def _axis_number(axis, what: str) -> int:
    """``axis`` as an int; a bool, a float or any other non-integer is
    refused with a ValueError naming ``what``."""
    if not isinstance(axis, bool):
        try:
            return operator.index(axis)
        except TypeError:  # a float, or an array that is not one integer
            pass
    raise ValueError(f"{what}: axis must be an integer, got {axis!r}")


def _axis(axis, what: str = "reduction"):
    """A reduction's ``axis``: None, one integer, or a tuple of integers."""
    if axis is None:
        return None
    if isinstance(axis, (tuple, list)):
        return tuple(_axis_number(i, what) for i in axis)
    return _axis_number(axis, what)
