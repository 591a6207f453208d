"""Convolution and pooling as windowed einsum specs (channels last).

Each function here is a thin layer over one spec: it checks its arguments,
pads with :func:`contractnet.pad`, writes stride and dilation into the spec
text as window coefficients, and calls :func:`contractnet.einsum`.  The
gradients are not written here: they are the transposed specs that autodiff
derives (a window in an input becomes a scatter-add window in the output).

=======================  ===================================================
function                 spec (2-D, stride S,T and dilation D,E shown)
=======================  ===================================================
conv2d                   ``b(Sh+Du)(Tw+Ev)c,uvck->bhwk``
conv2d, groups=g         ``b(Sh+Du)(Tw+Ev)gc,uvcgk->bhwgk`` on reshaped views
conv2d, depthwise        ``b(Sh+Du)(Tw+Ev)c,uvc->bhwc`` (groups=C, K=C)
conv_transpose2d         ``bhwk,uvck->b(Sh+Du)(Tw+Ev)c``, then cropped
max_pool2d, avg_pool2d   ``b(Sh+u)(Tw+v)c->bhwc`` with reduce "max"/"mean"
=======================  ===================================================

:func:`conv_spec` returns the text for any of the convolution forms.

Padding follows PyTorch for ``int``, a pair, and ``"valid"``; a pair of
pairs gives ``(before, after)`` per spatial axis.  ``"same"`` follows
TensorFlow for every stride: the output length is ``ceil(input / stride)``
and an odd total padding puts the extra element at the end.
"""
from __future__ import annotations

from functools import lru_cache
from typing import Sequence, Union

import numpy as np

from .api import einsum
from .autodiff import Traced
from .ops import pad, reshape
from .spec import MAX_COEFFICIENT, SpecError, Window

__all__ = ["ConvError", "conv1d", "conv2d", "conv3d", "conv_transpose2d",
           "max_pool2d", "avg_pool2d"]

IntOrTuple = Union[int, Sequence[int]]
Padding = Union[str, int, Sequence[int], Sequence[Sequence[int]]]
Array = Union[np.ndarray, Traced]

# Index letters per number of spatial axes: (outer, inner) of each window.
_LETTERS = {1: ("h", "u"), 2: ("hw", "uv"), 3: ("dhw", "tuv")}


class ConvError(SpecError):
    """Arguments of a convolution or pooling call that do not fit together."""


# ------------------------------------------------------------------ argument checks
def _operand(a, fn: str, name: str, rank: int) -> Array:
    """``a`` as an array (or Traced) of the given rank."""
    if not isinstance(a, Traced):
        a = np.asarray(a)
    if a.ndim != rank:
        raise ConvError(f"{fn}: {name} must have rank {rank}, got shape {tuple(a.shape)}")
    return a


def _int_tuple(value: IntOrTuple, n: int, fn: str, name: str, least: int = 1) -> tuple[int, ...]:
    """An int or a sequence of ``n`` ints, each ``>= least``, as a tuple.

    >>> _int_tuple(2, 2, "conv2d", "stride")
    (2, 2)
    """
    items = (value,) * n if _is_int(value) else value
    if not isinstance(items, (tuple, list)) or len(items) != n \
            or not all(_is_int(v) for v in items):
        raise ConvError(f"{fn}: {name} must be an int or {n} ints, got {value!r}")
    if any(v < least for v in items):
        raise ConvError(f"{fn}: {name} must be >= {least}, got {value!r}")
    if any(v > MAX_COEFFICIENT for v in items):  # as a window's stride, numpy's strides overflow
        raise ConvError(f"{fn}: {name} must be at most {MAX_COEFFICIENT}, got {value!r}")
    return tuple(int(v) for v in items)


def _is_int(value) -> bool:
    return type(value) is int or (  # the common case first: this runs on every call
        isinstance(value, (int, np.integer)) and not isinstance(value, bool))


def same_padding(length: int, kernel: int, stride: int, dilation: int) -> tuple[int, int]:
    """TensorFlow's ``"same"`` padding of one axis: output ``ceil(length / stride)``.

    The extra element of an odd total goes at the end.

    >>> same_padding(5, 3, 2, 1)
    (1, 1)
    >>> same_padding(4, 2, 1, 1)
    (0, 1)
    """
    out = -(-length // stride)
    total = max((out - 1) * stride + dilation * (kernel - 1) + 1 - length, 0)
    return total // 2, total - total // 2


def _pads(padding: Padding, n: int, lengths, kernel, stride, dilation, fn: str):
    """Resolve ``padding`` to ``n`` pairs ``(before, after)``."""
    if isinstance(padding, str):
        if padding == "valid":
            return ((0, 0),) * n
        if padding == "same":
            return tuple(same_padding(*a) for a in zip(lengths, kernel, stride, dilation))
        raise _padding_error(fn, n, padding)
    if isinstance(padding, (tuple, list)) and padding and all(
            isinstance(p, (tuple, list)) for p in padding):
        pairs = tuple(_int_tuple(p, 2, fn, "each padding pair", least=0) for p in padding)
        if len(pairs) != n:
            raise ConvError(f"{fn}: padding needs {n} (before, after) pairs, got {padding!r}")
        return pairs
    if not (_is_int(padding) or isinstance(padding, (tuple, list)) and len(padding) == n):
        raise _padding_error(fn, n, padding)
    return tuple((p, p) for p in _int_tuple(padding, n, fn, "padding", least=0))


def _padding_error(fn: str, n: int, padding) -> ConvError:
    pairs = "(" + ", ".join(["(1, 2)"] * n) + ("," if n == 1 else "") + ")"
    return ConvError(f"{fn}: padding must be an int, {n} int(s), {n} (before, after) "
                     f"pair(s) such as {pairs}, 'valid' or 'same'; got {padding!r}")


def _check_nonempty(fn: str, sizes, what: str = "kernel") -> None:
    """Refuse sizes (a kernel's, or an input's height x width) with a 0 among them."""
    if not all(sizes):
        raise ConvError(f"{fn}: {what} {_x(sizes)} has a size-0 axis; each of its axes "
                        f"needs at least one position")


def _check_fits(fn: str, lengths, pads, kernel, dilation, what: str = "kernel") -> None:
    """Refuse a window that is empty or spans more than the padded input."""
    _check_nonempty(fn, kernel, what)
    padded = tuple(n + a + b for n, (a, b) in zip(lengths, pads))
    spans = tuple(d * (k - 1) + 1 for k, d in zip(kernel, dilation))
    if any(s > p for s, p in zip(spans, padded)):
        dilated = f" with dilation {dilation}" if any(d != 1 for d in dilation) else ""
        where = (f"padded input is {_x(padded)} (input {_x(lengths)}, padding {pads})"
                 if any(a or b for a, b in pads) else f"input is {_x(lengths)}")
        raise ConvError(f"{fn}: {what} {_x(kernel)}{dilated} spans {_x(spans)} but the {where}")


def _x(sizes) -> str:
    return "x".join(str(s) for s in sizes)


# ------------------------------------------------------------------ specs
def _windows(n: int, stride, dilation) -> str:
    outer, inner = _LETTERS[n]
    return "".join(str(Window(o, i, s, d)) for o, i, s, d in zip(outer, inner, stride, dilation))


def conv_spec(n: int = 2, stride: IntOrTuple = 1, dilation: IntOrTuple = 1,
              form: str = "dense") -> str:
    """The einsum spec of an ``n``-D convolution.

    Parameters
    ----------
    n : int
        Number of spatial axes (1, 2 or 3).
    stride, dilation : int or tuple of n ints
    form : {"dense", "grouped", "depthwise"}
        ``"grouped"`` adds a group index ``g`` to the input channels and to
        the kernel; ``"depthwise"`` is one filter per channel.

    Returns
    -------
    str

    Examples
    --------
    >>> conv_spec(2, stride=2)
    'b(2h+u)(2w+v)c,uvck->bhwk'
    >>> conv_spec(1, dilation=3, form="depthwise")
    'b(h+3u)c,uc->bhc'
    """
    if not _is_int(n) or n not in _LETTERS:  # 2.0 and True hash as 2 and 1 do
        raise ConvError(f"convolutions have 1, 2 or 3 spatial axes, got {n!r}")
    if form not in _FORMS:
        raise ConvError(f"conv_spec: form must be one of {sorted(_FORMS)}, got {form!r}")
    stride = _int_tuple(stride, n, "conv_spec", "stride")
    dilation = _int_tuple(dilation, n, "conv_spec", "dilation")
    return _spec_text(n, stride, dilation, form)


_FORMS = {"dense": "b{win}c,{inner}ck->b{outer}k",
          "grouped": "b{win}gc,{inner}cgk->b{outer}gk",
          "depthwise": "b{win}c,{inner}c->b{outer}c"}


@lru_cache(maxsize=256)
def _spec_text(n: int, stride: tuple[int, ...], dilation: tuple[int, ...], form: str) -> str:
    outer, inner = _LETTERS[n]
    return _FORMS[form].format(win=_windows(n, stride, dilation), inner=inner, outer=outer)


# ------------------------------------------------------------------ convolution
def _check_channels(fn: str, x, w, groups: int) -> None:
    if not _is_int(groups) or groups < 1:
        raise ConvError(f"{fn}: groups must be a positive int, got {groups!r}")
    c, (c_per_group, k) = x.shape[-1], w.shape[-2:]
    if c % groups or k % groups:
        raise ConvError(f"{fn}: groups={groups} must divide the input channels ({c}) "
                        f"and the output channels ({k})")
    if c_per_group * groups != c:
        raise ConvError(f"{fn}: input has {c} channels (its last axis: channels last), "
                        f"so with groups={groups} the kernel needs {c // groups} input "
                        f"channels (axis -2), but its shape is {tuple(w.shape)}")


def _conv(x, w, n: int, stride, padding, dilation, groups, fn: str) -> Array:
    """The shared body of conv1d/2d/3d: check, pad, reshape, one einsum."""
    x = _operand(x, fn, "input x (batch, *spatial, channels)", n + 2)
    w = _operand(w, fn, "kernel w (*kernel, in_channels, out_channels)", n + 2)
    _check_channels(fn, x, w, groups)
    stride = _int_tuple(stride, n, fn, "stride")
    dilation = _int_tuple(dilation, n, fn, "dilation")
    lengths, kernel = tuple(x.shape[1:-1]), tuple(w.shape[:-2])
    pads = _pads(padding, n, lengths, kernel, stride, dilation, fn)
    _check_fits(fn, lengths, pads, kernel, dilation)
    if any(a or b for a, b in pads):
        x = pad(x, ((0, 0),) + pads + ((0, 0),))
    c, k = x.shape[-1], w.shape[-1]
    if groups == 1:
        return einsum(_spec_text(n, stride, dilation, "dense"), x, w)
    if groups == c == k:
        w = reshape(w, kernel + (c,))
        return einsum(_spec_text(n, stride, dilation, "depthwise"), x, w)
    x = reshape(x, tuple(x.shape[:-1]) + (groups, c // groups))
    w = reshape(w, kernel + (c // groups, groups, k // groups))
    y = einsum(_spec_text(n, stride, dilation, "grouped"), x, w)
    return reshape(y, tuple(y.shape[:-2]) + (k,))


_CONV_DOC = """{n}-D cross-correlation, channels last: one windowed einsum spec.

    ``y[b, {o}, k] = sum x_padded[b, {pos}, c] w[{i}, c, k]``, the spec
    ``{spec}`` with stride and dilation written into its window coefficients.

    Parameters
    ----------
    x : array or Traced, shape (B, {dims}, C)
    w : array or Traced, shape ({kdims}, C // groups, K)
    stride, dilation : int or {n} ints, each >= 1
    padding : int, {n} ints, {n} (before, after) pairs, "valid" or "same"
        Zero padding.  ``"same"`` gives output length ``ceil(L / stride)``
        (TensorFlow's rule, for any stride; an odd total pads the end more).
    groups : int
        Split channels into ``groups`` independent convolutions; both C and K
        must be divisible.  The output channels of group ``j`` are
        ``j*K/groups ... (j+1)*K/groups - 1`` (PyTorch's order).
        ``groups == C == K`` is a depthwise convolution.

    Returns
    -------
    array or Traced, shape (B, {odims}, K)

    Raises
    ------
    ConvError
        Wrong ranks, channel mismatch, groups not dividing the channels,
        stride or dilation < 1, bad padding, kernel larger than the padded
        input.  ``ConvError`` is a ``SpecError`` and so a ``ValueError``.

    Examples
    --------
    {example}
    """


def conv1d(x: Array, w: Array, stride: IntOrTuple = 1, padding: Padding = 0,
           dilation: IntOrTuple = 1, groups: int = 1) -> Array:
    return _conv(x, w, 1, stride, padding, dilation, groups, "conv1d")


def conv2d(x: Array, w: Array, stride: IntOrTuple = 1, padding: Padding = 0,
           dilation: IntOrTuple = 1, groups: int = 1) -> Array:
    return _conv(x, w, 2, stride, padding, dilation, groups, "conv2d")


def conv3d(x: Array, w: Array, stride: IntOrTuple = 1, padding: Padding = 0,
           dilation: IntOrTuple = 1, groups: int = 1) -> Array:
    return _conv(x, w, 3, stride, padding, dilation, groups, "conv3d")


conv1d.__doc__ = _CONV_DOC.format(
    n=1, o="h", pos="S*h + D*u", i="u", spec=conv_spec(1), dims="L", kdims="KL", odims="Lo",
    example=">>> import numpy as np, contractnet as cn\n"
            "    >>> cn.conv1d(np.ones((1, 5, 2)), "
            "np.ones((3, 2, 4)), padding='same').shape\n    (1, 5, 4)")
conv2d.__doc__ = _CONV_DOC.format(
    n=2, o="h, w", pos="S*h + D*u, T*w + E*v", i="u, v", spec=conv_spec(2), dims="H, W",
    kdims="KH, KW", odims="Ho, Wo",
    example=">>> import numpy as np, contractnet as cn\n"
            "    >>> cn.conv2d(np.ones((2, 8, 8, 3)), "
            "np.ones((3, 3, 3, 4)), stride=2).shape\n    (2, 3, 3, 4)")
conv3d.__doc__ = _CONV_DOC.format(
    n=3, o="d, h, w", pos="R*d + A*t, S*h + D*u, T*w + E*v", i="t, u, v", spec=conv_spec(3),
    dims="D, H, W", kdims="KD, KH, KW", odims="Do, Ho, Wo",
    example=">>> import numpy as np, contractnet as cn\n"
            "    >>> cn.conv3d(np.ones((1, 4, 4, 4, 1)), "
            "np.ones((2, 2, 2, 1, 3))).shape\n    (1, 3, 3, 3, 3)")


# ------------------------------------------------------------------ transposed convolution
def _transpose_pads(padding: Padding, lengths, kernel, stride, dilation, output_padding):
    """Crop ``(before, after)`` per axis and the full scatter length of each axis."""
    fn, n = "conv_transpose2d", len(lengths)
    spans = [s * (h - 1) + d * (k - 1) + 1
             for h, k, s, d in zip(lengths, kernel, stride, dilation)]
    if isinstance(padding, str) and padding == "same":
        if any(output_padding):
            raise ConvError(f"{fn}: output_padding must be 0 with padding='same', "
                            f"got {output_padding}")
        wanted = [h * s for h, s in zip(lengths, stride)]
        pads = tuple(same_padding(*a) for a in zip(wanted, kernel, stride, dilation))
        # ceil(wanted / S) == L, so the scatter spans at most wanted + padding
        return pads, [n + a + b for n, (a, b) in zip(wanted, pads)]
    pads = _pads(padding, n, lengths, kernel, stride, dilation, fn)
    for op, s, d in zip(output_padding, stride, dilation):
        if op >= max(s, d):
            raise ConvError(f"{fn}: output_padding {output_padding} must be smaller "
                            f"than stride {stride} or dilation {dilation} on each axis")
    full = [sp + op for sp, op in zip(spans, output_padding)]
    if any(a + b >= f for (a, b), f in zip(pads, full)):
        raise ConvError(f"{fn}: padding {pads} crops all of the transposed output "
                        f"{_x(full)} (input {_x(lengths)}, kernel {_x(kernel)})")
    return pads, full


def conv_transpose2d(y: Array, w: Array, stride: IntOrTuple = 1, padding: Padding = 0,
                     dilation: IntOrTuple = 1, output_padding: IntOrTuple = 0) -> Array:
    """Transposed 2-D convolution: the adjoint of :func:`conv2d` in its input.

    ``conv_transpose2d(dy, w, s, p, d, r)`` is the gradient of
    ``conv2d(x, w, s, p, d)`` with respect to ``x`` for the *same* kernel
    ``w``: it scatter-adds with the output-window spec
    ``bhwk,uvck->b(Sh+Du)(Tw+Ev)c``, then crops the padding.  The output
    length per axis is PyTorch's ``(L-1)*S - before - after + D*(KH-1) + 1 + r``;
    ``r`` (output_padding, ``< max(S, D)``) restores the rows a strided
    conv2d dropped, so pick ``r = (H + pads - D*(KH-1) - 1) % S``.

    Parameters
    ----------
    y : array or Traced, shape (B, Ho, Wo, K)
    w : array or Traced, shape (KH, KW, C, K)
        The kernel of the forward conv2d; PyTorch's ``conv_transpose2d``
        weight ``(K, C, KH, KW)`` is ``w.transpose(3, 2, 0, 1)``.
    stride, dilation : int or pair, each >= 1
    padding : int, pair, two (before, after) pairs, "valid" or "same"
        Cropped from the scattered output.  ``"same"`` gives output
        ``(Ho*S, Wo*S)``, the adjoint of a 'same' conv2d of that size.
    output_padding : int or pair
        Extra rows/columns at the end, each ``< max(stride, dilation)``.

    Returns
    -------
    array or Traced, shape (B, H, W, C)

    Raises
    ------
    ConvError
        Wrong ranks, K of ``y`` and ``w`` differ, an empty kernel or input
        height or width, bad stride, dilation, padding or output_padding, or
        padding that crops everything.

    Examples
    --------
    >>> import numpy as np, contractnet as cn
    >>> cn.conv_transpose2d(np.ones((1, 3, 3, 4)), np.ones((3, 3, 2, 4)), stride=2).shape
    (1, 7, 7, 2)
    """
    fn = "conv_transpose2d"
    y = _operand(y, fn, "input y (batch, height, width, channels)", 4)
    w = _operand(w, fn, "kernel w (KH, KW, C, K)", 4)
    if y.shape[-1] != w.shape[-1]:
        raise ConvError(f"{fn}: input has {y.shape[-1]} channels but the kernel "
                        f"{tuple(w.shape)} maps to K={w.shape[-1]} (last axis)")
    stride, dilation = (_int_tuple(v, 2, fn, name) for v, name in
                        ((stride, "stride"), (dilation, "dilation")))
    output_padding = _int_tuple(output_padding, 2, fn, "output_padding", least=0)
    lengths, kernel = tuple(y.shape[1:3]), tuple(w.shape[:2])
    _check_nonempty(fn, kernel)
    _check_nonempty(fn, lengths, "input y's height x width")
    pads, full = _transpose_pads(padding, lengths, kernel, stride, dilation, output_padding)
    out = Window("h", "u", stride[0], dilation[0]), Window("w", "v", stride[1], dilation[1])
    z = einsum(f"bhwk,uvck->b{out[0]}{out[1]}c", y, w,
               sizes={str(o): f for o, f in zip(out, full)})
    if any(a or b for a, b in pads):
        z = z[:, pads[0][0]:full[0] - pads[0][1], pads[1][0]:full[1] - pads[1][1], :]
    return z


# ------------------------------------------------------------------ pooling
def _pool(x, size: IntOrTuple, stride, reduce: str, fn: str) -> Array:
    x = _operand(x, fn, "input x (batch, height, width, channels)", 4)
    size = _int_tuple(size, 2, fn, "size")
    stride = size if stride is None else _int_tuple(stride, 2, fn, "stride")
    _check_fits(fn, tuple(x.shape[1:3]), ((0, 0), (0, 0)), size, (1, 1), what="window")
    spec = f"b{_windows(2, stride, (1, 1))}c->bhwc"
    return einsum(spec, x, sizes={"u": size[0], "v": size[1]}, reduce=reduce)


_POOL_DOC = """2-D {kind} pooling, channels last: ``b(Sh+u)(Tw+v)c->bhwc``, reduce="{reduce}".

    Parameters
    ----------
    x : array or Traced, shape (B, H, W, C)
    size : int or pair
        Window height and width.
    stride : int or pair, optional
        Defaults to ``size`` (non-overlapping windows).  Trailing rows and
        columns that no full window covers are ignored (no padding).

    Returns
    -------
    array or Traced, shape (B, (H - KH) // S + 1, (W - KW) // T + 1, C)

    Raises
    ------
    ConvError
        Rank not 4, size or stride < 1, window larger than the input.

    Examples
    --------
    >>> import numpy as np, contractnet as cn
    >>> x = np.arange(16.0).reshape(1, 4, 4, 1)
    >>> cn.{name}(x, 2)[0, :, :, 0]
    {result}
    """


def max_pool2d(x: Array, size: IntOrTuple, stride: IntOrTuple | None = None) -> Array:
    return _pool(x, size, stride, "max", "max_pool2d")


def avg_pool2d(x: Array, size: IntOrTuple, stride: IntOrTuple | None = None) -> Array:
    return _pool(x, size, stride, "mean", "avg_pool2d")


max_pool2d.__doc__ = _POOL_DOC.format(
    kind="max", reduce="max", name="max_pool2d",
    result="array([[ 5.,  7.],\n           [13., 15.]])")
avg_pool2d.__doc__ = _POOL_DOC.format(
    kind="average", reduce="mean", name="avg_pool2d",
    result="array([[ 2.5,  4.5],\n           [10.5, 12.5]])")
