"""Layers: a learned einsum spec, dense, convolution, pooling, ReLU.

None of these has a backward pass of its own: each forward is einsum specs
and differentiable ops, and :mod:`contractnet.autodiff` derives the rest.
"""
from __future__ import annotations

import copy
from typing import Any, Mapping, Sequence

import numpy as np

import contractnet as cn

from ..arguments import as_flag, floating_dtype, is_int, positive_int
from ..bind import window_key
from ..spec import ELLIPSIS, Spec, SpecError, Window, parse
from ..trace import Traced, value_of
from . import init as initializers
from .module import Module, Params
from ..conv import ConvError, _int_tuple as _conv_int_tuple, _pads as _conv_pads, conv_spec

DType = np.dtype | type | str
RNG = np.random.Generator | int | None


class Einsum(Module):
    """A learned layer given by one spec: data operands (``inputs``) and weights.

    The weight shapes follow from the spec and ``sizes``; the optional bias
    spans the output indices that a weight provides (``k`` in ``"bi,ik->bk"``).
    Integer or boolean input is cast to ``dtype``; floating input computes
    as numpy promotes it with the weights.

    Parameters
    ----------
    spec : str
        Einsum spec with at least two operands; weight terms must be plain
        (no window, ellipsis or repeated index).
    sizes : mapping of str to int
        The size of every weight index.  Sizes of other indices are allowed
        and then checked against the input at each call, except a window's
        outer index, which they set: the first windows that many are read.
    bias : bool
        Add a learned bias, initialised to zero.
    inputs : int or sequence of int
        Positions of the data operands, in increasing order (default 0);
        every other operand is a weight.  The layer takes its inputs in that
        order: a bilinear layer ``"bi,ikj,bj->bk"`` has ``inputs=(0, 2)`` and
        is called as ``layer(x1, x2)``, ``x1`` for ``bi`` and ``x2`` for ``bj``.
    weight_names : sequence of str, optional
        Names of the weights; default ``"weight"`` for one, else
        ``"weight1"``, ``"weight2"``, ... in operand order.
    init : {"glorot", "he"}
        Initialisation scheme (see :func:`contractnet.nn.init.spec_weights`).
    rng : numpy Generator, int or None
        Source of the initial weights.
    dtype : dtype
        Floating dtype of the parameters.

    Raises
    ------
    SpecError
        If the spec is malformed or not a learned layer (see above), a weight
        index appears in no other term (it would only be summed away), an
        output index in no operand (the output would only repeat along it),
        or ``inputs`` leaves no weight operand.
    ValueError
        If ``sizes`` is not a mapping, lacks a weight index or names an index
        the spec does not use, or a size is not a positive integer; if
        ``inputs`` is not distinct operand positions of the spec in
        increasing order (a bool is refused); if ``bias`` is not a bool; if
        ``weight_names`` is not one distinct, non-empty, undotted string per
        weight, other than ``"bias"``; or if ``init`` is unknown,
        ``dtype`` is not floating point, or ``rng`` is not a Generator, a
        non-negative seed or None.
    MemoryBudgetError
        If a parameter would exceed the memory budget.

    Examples
    --------
    >>> import numpy as np, contractnet as cn
    >>> layer = cn.nn.Einsum("bi,ik->bk", sizes={"i": 64, "k": 10}, bias=True, rng=0)
    >>> layer
    Einsum('bi,ik->bk', sizes={'i': 64, 'k': 10}, bias=True)
    >>> {name: p.shape for name, p in layer.parameters().items()}
    {'weight': (64, 10), 'bias': (10,)}
    >>> bilinear = cn.nn.Einsum("bi,ikj,bj->bk", sizes={"i": 3, "k": 4, "j": 5}, inputs=(0, 2))
    >>> bilinear(np.ones((2, 3), np.float32), np.ones((2, 5), np.float32)).shape
    (2, 4)
    """

    def __init__(self, spec: str, sizes: Mapping[str, int], *, bias: bool = False,
                 inputs: int | Sequence[int] = 0, weight_names: Sequence[str] | None = None,
                 init: str = "glorot", rng: RNG = None, dtype: DType = np.float32) -> None:
        super().__init__()
        bias = as_flag(bias, "bias")
        parsed = parse(spec)
        self.inputs = _data_positions(parsed, inputs)
        weight_terms = [t for i, t in enumerate(parsed.inputs) if i not in self.inputs]
        _check_learned_spec(parsed, self.inputs)
        self.spec = str(parsed)
        self.sizes = _check_sizes(parsed, sizes, weight_terms)
        self.weight_names = _weight_names(weight_names, len(weight_terms))
        self.dtype = floating_dtype(dtype)
        # checked before any weight is drawn: a refused layer leaves the generator untouched
        bias_shape, self._bias_view = (_bias_layout(parsed, self.sizes, weight_terms)
                                       if bias else ((), None))
        arrays = initializers.spec_weights(parsed, self.sizes, init,
                                           rng=initializers.as_generator(rng), dtype=self.dtype,
                                           inputs=self.inputs)
        for name, array in zip(self.weight_names, arrays):
            self.add_parameter(name, array)
        if bias:
            self.add_parameter("bias", initializers.zeros(bias_shape, self.dtype))
        weight_idx = {i for t in weight_terms for i in t.indices()}
        self._input_sizes = {k: v for k, v in self.sizes.items() if k not in weight_idx} or None

    def forward(self, params: Params, *xs: Any) -> Any:
        if len(xs) != len(self.inputs):
            raise ValueError(f"{self.spec!r} takes {len(self.inputs)} input(s) (operands "
                             f"{list(self.inputs)}), got {len(xs)}")
        weights = iter(params[name] for name in self.weight_names)
        data = iter([_as_layer_input(x, self.dtype) for x in xs])
        operands = [next(data) if i in self.inputs else next(weights)
                    for i in range(len(self.inputs) + len(self.weight_names))]
        try:
            y = cn.einsum(self.spec, *operands, sizes=self._input_sizes)
        except SpecError as exc:  # say which layer, and which operands are its inputs
            roles = "operand 0 is the input" if self.inputs == (0,) else \
                f"operands {list(self.inputs)} are the inputs"
            raise SpecError(f"{self!r} cannot take input shape(s) "
                            f"{', '.join(str(np.shape(x)) for x in xs)}: {exc.reason} "
                            f"({roles}, the others its weights)", exc.spec,
                            exc.position) from None
        if "bias" not in self._params:
            return y
        b = params["bias"]
        return y + (b if self._bias_view is None else cn.reshape(b, self._bias_view))

    def extra_repr(self) -> str:
        inputs = "" if self.inputs == (0,) else f", inputs={self.inputs}"
        return f"{self.spec!r}, sizes={self.sizes}{inputs}, {learned_repr_end(self)}"


def learned_repr_end(layer: Module) -> str:
    """How a learned layer's repr ends: whether it has a bias, then its
    dtype unless float32 (the default)."""
    text = f"bias={'bias' in layer._params}"
    return text if layer.dtype == np.float32 else f"{text}, dtype={layer.dtype.name}"


def _as_layer_input(x: Any, dtype: np.dtype) -> Any:
    """``x``, cast to a layer's ``dtype`` if it holds integers or booleans
    (pixels as int64, say), which numpy would otherwise promote the layer's
    float32 to float64 with; a floating input is left as it is."""
    value = x.value if type(x) is Traced else x
    if type(value) is not np.ndarray:
        value = np.asarray(value)
    return cn.astype(x, dtype) if value.dtype.kind in "biu" else x


def _term_start(spec: Spec, operand: int) -> int:
    """Column of operand ``operand``'s term in ``str(spec)``."""
    return sum(len(str(t)) + 1 for t in spec.inputs[:operand])


def _data_positions(spec: Spec, inputs: int | Sequence[int]) -> tuple[int, ...]:
    """Check ``inputs``: operand positions in increasing order (a layer takes
    its inputs in operand order), leaving at least one weight."""
    given = inputs.tolist() if isinstance(inputs, np.ndarray) else inputs  # int or list
    positions = (tuple(given) if isinstance(given, Sequence) and not isinstance(given, str)
                 else (given,) if isinstance(given, (int, np.integer)) else ())
    n = len(spec.inputs)
    if (not positions  # the type of each first: a nested list cannot go into a set
            or not all(isinstance(i, (int, np.integer)) and not isinstance(i, (bool, np.bool_))
                       and 0 <= i < n for i in positions)
            or any(a >= b for a, b in zip(positions, positions[1:]))):
        raise ValueError(f"inputs must be distinct operand positions of '{spec}' "
                         f"(0 to {n - 1}) in increasing order, the order the layer takes "
                         f"its inputs in, got {inputs!r}")
    if len(positions) >= n:
        raise SpecError("a learned layer needs at least one weight term besides its "
                        f"inputs {list(positions)}", str(spec))
    return tuple(int(i) for i in positions)


def _check_learned_spec(spec: Spec, inputs: tuple[int, ...]) -> None:
    text = str(spec)
    for i, term in enumerate(spec.inputs):
        if i not in inputs and not term.is_plain:
            raise SpecError(f"weight term '{term}' (operand {i}) must be plain: "
                            "no window, ellipsis or repeated index", text, _term_start(spec, i))
    known = {i for t in spec.inputs for i in t.indices()}
    col = text.index("->") + 2
    for axis in spec.output.axes:  # before a weight's lone index, which such a typo makes
        names = [axis.outer, axis.inner] if isinstance(axis, Window) else [axis]
        for name in names:
            if name != ELLIPSIS and name not in known:
                raise SpecError(f"output index '{name}' appears in no operand: a learned "
                                f"layer's output would only repeat along it (cn.einsum "
                                f"broadcasts along such an index given its size; a layer "
                                f"does not)", text, col)
        col += len(str(axis))
    _check_no_lone_weight_index(spec, inputs)


def _check_no_lone_weight_index(spec: Spec, inputs: tuple[int, ...]) -> None:
    """Refuse a weight index found in no other term: it would only be summed
    away inside that weight, a redundant axis (and usually a typo)."""
    for i, names in spec.lone_indices().items():
        if i in inputs or i == len(spec.inputs):
            continue
        term = spec.inputs[i]
        raise SpecError(f"index '{names[0]}' of weight term '{term}' (operand {i}) appears "
                        "in no other term: the layer would only sum the weight over it; a "
                        "weight index must also be in an input, another weight or the output",
                        str(spec), _term_start(spec, i) + term.axes.index(names[0]))


def _check_sizes(spec: Spec, sizes: Mapping[str, int], weight_terms) -> dict[str, int]:
    if not isinstance(sizes, Mapping):
        raise ValueError(f"sizes must be a mapping of index to size, got {type(sizes).__name__}")
    indices = spec.indices()
    groups = {str(a) for t in (*spec.inputs, spec.output) for a in t.axes if isinstance(a, Window)}
    for name, n in sizes.items():
        if name not in indices and window_key(name) not in groups:  # a group's length passes
            raise ValueError(f"sizes gives index {name!r}, which spec '{spec}' does not use")
        if not is_int(n) or n <= 0:
            raise ValueError(f"size of index {name!r} must be a positive integer, got {n!r}")
    weight_idx = [i for t in weight_terms for i in t.indices()]
    missing = sorted(set(weight_idx) - set(sizes))
    if missing:
        data = {i for i, t in enumerate(spec.inputs) if t not in weight_terms}
        also_data = [m for m in missing if m in spec.output.indices()
                     or any(m in spec.inputs[i].indices() for i in data)]
        hint = (f" ({', '.join(map(repr, also_data))} is also an input's or the output's "
                f"index: is its weight term an input? name the inputs' operands with "
                f"inputs=)" if also_data else "")
        raise ValueError(f"sizes must give every weight index of '{spec}'; missing "
                         f"{missing}{hint}")
    return {name: int(n) for name, n in sizes.items()}  # in the caller's order


def _weight_names(names: Sequence[str] | None, count: int) -> tuple[str, ...]:
    if names is None:
        return ("weight",) if count == 1 else tuple(f"weight{i}" for i in range(1, count + 1))
    names = tuple(names) if isinstance(names, (list, tuple)) else (names,)
    if (len(names) != count or not all(isinstance(n, str) and n and "." not in n for n in names)
            or len(set(names)) != count or "bias" in names):
        raise ValueError(f"weight_names must be {count} distinct names (non-empty strings "
                         f"without '.') other than 'bias', got {names!r}")
    return names


def _bias_layout(spec: Spec, sizes: Mapping[str, int], weight_terms
                 ) -> tuple[tuple[int, ...], tuple[int, ...] | None]:
    """Bias shape, and the shape to view it as before adding (None: broadcasts as is)."""
    weight_idx = {i for t in weight_terms for i in t.indices()}
    axes = spec.output.axes
    hits = [j for j, a in enumerate(axes) if isinstance(a, str) and a in weight_idx]
    shape = tuple(sizes[axes[j]] for j in hits)
    if len({axes[j] for j in hits}) != len(hits):
        raise SpecError("a learned layer's output may not repeat a weight index", str(spec))
    if hits == list(range(len(axes) - len(hits), len(axes))):
        return shape, None
    if spec.output.has_ellipsis:
        raise SpecError("with '...' in the output, the weight indices must come last "
                        "(the bias broadcasts from the right)", str(spec))
    view = tuple(sizes[a] if j in hits else 1 for j, a in enumerate(axes))
    return shape, view


class Dense(Einsum):
    """Fully connected layer, ``"bi,ik->bk"`` plus bias: ``(B, I)`` to ``(B, K)``.

    Parameters
    ----------
    in_features, out_features : int
        ``I`` and ``K``; the weight is ``(I, K)``.
    bias : bool
        Add a learned bias of shape ``(K,)``, initialised to zero.
    init : {"glorot", "he"}
        Initialisation scheme.
    rng : numpy Generator, int or None
        Source of the initial weights (an int seeds a new Generator).
    dtype : dtype
        Floating dtype of the parameters.

    Raises
    ------
    ValueError
        If ``in_features`` or ``out_features`` is not a positive integer,
        ``init`` is unknown, ``dtype`` is not floating point, or ``rng`` is not
        a Generator, a non-negative seed or None.
    MemoryBudgetError
        If a parameter would exceed the memory budget.

    Examples
    --------
    >>> import numpy as np, contractnet as cn
    >>> layer = cn.nn.Dense(4, 3, rng=0)
    >>> layer
    Dense(4, 3, spec='bi,ik->bk', bias=True)
    >>> layer(np.ones((2, 4), np.float32)).shape
    (2, 3)
    """

    def __init__(self, in_features: int, out_features: int, *, bias: bool = True,
                 init: str = "glorot", rng: RNG = None, dtype: DType = np.float32) -> None:
        self.in_features = positive_int(in_features, "in_features")
        self.out_features = positive_int(out_features, "out_features")
        super().__init__("bi,ik->bk", {"i": self.in_features, "k": self.out_features},
                         bias=bias, init=init, rng=rng, dtype=dtype)

    def extra_repr(self) -> str:
        return (f"{self.in_features}, {self.out_features}, spec={self.spec!r}, "
                f"{learned_repr_end(self)}")


def pair(value: Any, name: str, minimum: int = 1, owner: str = "layer") -> tuple[int, int]:
    """``value`` as a pair of ints ``>= minimum``, checked as ``cn.conv2d`` checks
    its own arguments (a ``ValueError`` naming ``owner`` and ``name``)."""
    return _conv_int_tuple(value, 2, owner, name, least=minimum)


def _pads_anything(padding: Any) -> bool:
    """Whether ``padding`` pads the input at all; refuses padding ``cn.conv2d``
    would refuse, now rather than at the first call (its own check, so the
    two accept exactly the same forms)."""
    if isinstance(padding, str) and padding == "same":
        return True
    return any(map(any, _conv_pads(padding, 2, (1, 1), (1, 1), (1, 1), (1, 1), "Conv2d")))


class Conv2d(Module):
    """2-D convolution, channels last: ``x (B,H,W,C)``, weight ``(KH,KW,C/groups,K)``.

    Calls :func:`contractnet.conv2d`, whose spec is
    ``"b(h+u)(w+v)c,uvck->bhwk"`` (with stride and dilation in the window).
    ``init="he"`` (the default) draws with fan-in ``KH*KW*C/groups``;
    ``init="glorot"`` with that fan-in and fan-out ``KH*KW*K``, as Keras and
    PyTorch count a convolution's fans.  Integer or boolean input is cast to
    ``dtype``, as for :class:`Einsum`.

    Parameters
    ----------
    in_channels, out_channels : int
        ``C`` and ``K``.
    kernel_size : int or pair
        ``(KH, KW)``, each >= 1.
    stride, dilation : int or pair, each >= 1
    padding : int, pair, two (before, after) pairs, "valid" or "same"
        As :func:`contractnet.conv2d` takes it; checked here.
    groups : int
        Independent channel groups, as in :func:`contractnet.conv2d`.
    bias : bool
        Add a learned bias of shape ``(K,)``, initialised to zero.
    init : {"he", "glorot"}
        Initialisation scheme.
    rng : numpy Generator, int or None
        Source of the initial weights (an int seeds a new Generator).
    dtype : dtype
        Floating dtype of the parameters.

    Raises
    ------
    ConvError
        If ``kernel_size``, ``stride``, ``dilation`` or ``padding`` is not
        one of the forms above (a ``ConvError`` is a ``ValueError``).
    ValueError
        If a channel count or ``groups`` is not a positive integer, ``groups``
        does not divide both channel counts, ``bias`` is not a bool, ``init``
        is unknown, ``dtype`` is not floating point, or ``rng`` is not a
        Generator, a non-negative seed or None.
    MemoryBudgetError
        If a parameter would exceed the memory budget.

    Examples
    --------
    >>> import numpy as np, contractnet as cn
    >>> conv = cn.nn.Conv2d(1, 16, 3, padding="same", rng=0)
    >>> conv
    Conv2d(1, 16, kernel_size=(3, 3), padding='same', spec='b(h+u)(w+v)c,uvck->bhwk', bias=True)
    """

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int | Sequence[int], *,
                 stride: int | Sequence[int] = 1, padding: Any = 0,
                 dilation: int | Sequence[int] = 1, groups: int = 1, bias: bool = True,
                 init: str = "he", rng: RNG = None, dtype: DType = np.float32) -> None:
        super().__init__()
        self.in_channels = positive_int(in_channels, "in_channels")
        self.out_channels = positive_int(out_channels, "out_channels")
        self.kernel_size = pair(kernel_size, "kernel_size", owner="Conv2d")
        self.stride = pair(stride, "stride", owner="Conv2d")
        self.dilation = pair(dilation, "dilation", owner="Conv2d")
        # a copy, so that a list the caller changes later changes nothing here
        self.padding, self.groups = copy.deepcopy(padding), positive_int(groups, "groups")
        bias = as_flag(bias, "bias")
        self._pads = _pads_anything(self.padding)
        if self.in_channels % self.groups or self.out_channels % self.groups:
            raise ValueError(f"groups={self.groups} must divide in_channels={self.in_channels} "
                             f"and out_channels={self.out_channels}")
        shape = self.kernel_size + (self.in_channels // self.groups, self.out_channels)
        rng, self.dtype = initializers.as_generator(rng), floating_dtype(dtype)
        # KH*KW*C/groups inputs reach an output; the fan-out is KH*KW*K whatever the
        # groups, as PyTorch counts it (and nn.init.spec_fans counts a window)
        window = shape[0] * shape[1]
        fan_in, fan_out = window * shape[2], window * shape[3]
        if init == "he":
            w = initializers.he_normal(shape, fan_in, rng=rng, dtype=self.dtype)
        elif init == "glorot":
            w = initializers.glorot_uniform(shape, fan_in, fan_out, rng=rng, dtype=self.dtype)
        else:
            raise ValueError(f"unknown init scheme {init!r}; choose one of {initializers.SCHEMES}")
        self.add_parameter("weight", w)
        if bias:
            self.add_parameter("bias", initializers.zeros((self.out_channels,), self.dtype))
        self._call_args = {"stride": self.stride, "padding": self.padding,
                           "dilation": self.dilation, "groups": self.groups}
        form = ("dense" if self.groups == 1 else "depthwise"
                if self.groups == self.in_channels == self.out_channels else "grouped")
        self.spec = conv_spec(2, self.stride, self.dilation, form)  # the one conv2d runs

    def forward(self, params: Params, x: Any) -> Any:
        x = _as_layer_input(x, self.dtype)
        shape = np.shape(value_of(x))
        if len(shape) == 4 and shape[-1] != self.in_channels:  # conv2d would blame the kernel
            raise ConvError(f"{type(self).__name__}({self.in_channels}, {self.out_channels}, "
                            f"...) takes inputs of {self.in_channels} channel(s) on the last "
                            f"axis (B, H, W, C), got shape {shape}")
        y = cn.conv2d(x, params["weight"], **self._call_args)
        return y + params["bias"] if "bias" in self._params else y

    def extra_repr(self) -> str:
        text = f"{self.in_channels}, {self.out_channels}, kernel_size={self.kernel_size}"
        shown = {"stride": self.stride != (1, 1), "padding": self._pads,
                 "dilation": self.dilation != (1, 1), "groups": self.groups != 1}
        for name, show in shown.items():
            if show:
                text += f", {name}={getattr(self, name)!r}"
        return text + f", spec={self.spec!r}, {learned_repr_end(self)}"


class _Pool2d(Module):
    reduce = "sum"

    def __init__(self, size: int | Sequence[int],
                 stride: int | Sequence[int] | None = None) -> None:
        super().__init__()
        owner = type(self).__name__
        self.size = pair(size, "size", owner=owner)
        self.stride = self.size if stride is None else pair(stride, "stride", owner=owner)
        sh, sw = self.stride
        self.spec = f"b{Window('h', 'u', sh)}{Window('w', 'v', sw)}c->bhwc"

    def extra_repr(self) -> str:
        stride = "" if self.stride == self.size else f", stride={self.stride}"
        return f"{self.size}{stride}, spec={self.spec!r}, reduce={self.reduce!r}"


class MaxPool2d(_Pool2d):
    """Max pooling, channels last, via :func:`contractnet.max_pool2d`.

    Parameters
    ----------
    size : int or pair
        Window height and width.
    stride : int or pair, optional
        Defaults to ``size`` (non-overlapping windows).

    Raises
    ------
    ConvError
        If ``size`` or ``stride`` is not an int or two ints, each >= 1 (a
        ``ConvError`` is a ``ValueError``).

    Examples
    --------
    >>> import contractnet as cn
    >>> cn.nn.MaxPool2d(2)
    MaxPool2d((2, 2), spec='b(2h+u)(2w+v)c->bhwc', reduce='max')
    """

    reduce = "max"

    def forward(self, params: Params, x: Any) -> Any:
        return cn.max_pool2d(x, self.size, stride=self.stride)


class AvgPool2d(_Pool2d):
    """Average pooling, channels last, via :func:`contractnet.avg_pool2d`;
    parameters and errors as :class:`MaxPool2d`'s."""

    reduce = "mean"

    def forward(self, params: Params, x: Any) -> Any:
        return cn.avg_pool2d(x, self.size, stride=self.stride)


class ReLU(Module):
    """``max(x, 0)`` elementwise."""

    def forward(self, params: Params, x: Any) -> Any:
        return cn.relu(x)
