"""Optimizers that update a parameter dict in place.

An optimizer is built on the dict of live arrays (``module.parameters()``)
and each :meth:`Optimizer.step` takes a dict of gradients with the same
names and updates those arrays **in place**, so every holder of the arrays
(the module included) sees the new values.  Parameter dtypes never change:
gradients are cast to each parameter's dtype and hyper-parameters are Python
floats, which numpy applies without upcasting.

The update rules follow PyTorch's ``torch.optim.SGD`` and ``Adam`` (L2
weight decay added to the gradient).
"""
from __future__ import annotations

import math
from typing import Mapping

import numpy as np
from numpy.lib.array_utils import byte_bounds

from .arguments import as_flag, finite_in, real_number
from .pair import view_key

__all__ = ["Optimizer", "SGD", "Adam", "NonFiniteGradientError"]


class NonFiniteGradientError(ValueError):
    """A gradient holds a nan or an infinity: the step is refused."""


class Optimizer:
    """Base class: checks the parameters and gradients, then updates each array.

    Parameters
    ----------
    params : mapping of str to ndarray
        Floating arrays to update in place (keep references to them).  Names
        that hold the same array (a layer used twice, as in
        ``Sequential(layer, ReLU(), layer)``) are one tied parameter: their
        gradients are summed and it is updated once per step.

    Raises
    ------
    ValueError
        If ``params`` is empty, holds something other than floating,
        writeable ndarrays, or holds arrays that overlap in memory without
        being the same array (two slices of one buffer that share elements).
    """

    #: The settings :meth:`__repr__` shows, by attribute name.
    _shown: tuple[str, ...] = ()

    def __init__(self, params: Mapping[str, np.ndarray]) -> None:
        if not isinstance(params, Mapping) or not params:
            got = "" if isinstance(params, Mapping) else f", got {type(params).__name__}"
            if hasattr(params, "parameters"):  # a module
                got += "; pass its .parameters()"
            raise ValueError(f"an optimizer needs a non-empty dict of name -> ndarray{got}")
        for name, p in params.items():
            if not isinstance(p, np.ndarray) or not np.issubdtype(p.dtype, np.floating):
                raise ValueError(f"parameter {name!r} must be a floating ndarray, "
                                 f"got {type(p).__name__} {getattr(p, 'dtype', '')}")
            if not p.flags.writeable:
                raise ValueError(f"parameter {name!r} is read-only; it cannot be updated in place")
        self.params = dict(params)
        #: Each name that holds an array an earlier name holds: that name.
        self.tied = _tied_names(self.params)
        self.state: dict[str, dict[str, np.ndarray]] = {
            name: {} for name in self.params if name not in self.tied}
        self.steps = 0

    def step(self, grads: Mapping[str, np.ndarray]) -> None:
        """Update every parameter in place from ``grads``; all checks come first.

        Raises
        ------
        ValueError
            If ``grads`` is not a mapping, a name is missing or unexpected, a
            gradient's shape differs from its parameter's or is not real
            (complex, object, string, time), or a parameter has become
            read-only; no parameter is changed then.
        NonFiniteGradientError
            A ``ValueError``: a gradient (summed, for a tied parameter) holds
            a nan or an infinity in its parameter's dtype, as a diverged loss
            gives; one step on it would leave the parameter, and Adam's
            moments, nan for good.  No parameter is changed.
        """
        with np.errstate(over="ignore", invalid="ignore"):  # an inf is refused below, by name
            checked = self._tied_sums(self._check_grads(grads))
        self._refuse_non_finite(checked)
        self.steps += 1
        for name, g in checked.items():
            self._update(name, self.params[name], g)

    def _check_finite_in_dtypes(self, **rates: float) -> None:
        """Refuse a rate that overflows a parameter's dtype (``lr=1e5`` in
        float16): every update would write an infinity or a nan."""
        for dtype, name in {p.dtype: n for n, p in reversed(self.params.items())}.items():
            bad = [(k, v) for k, v in rates.items() if not finite_in(v, dtype)]
            if bad:
                key, value = bad[0]
                raise ValueError(f"{key}={value:g} is not finite in {dtype} (parameter "
                                 f"{name!r}): every update would write an infinity or a "
                                 f"nan; give a {key} below {float(np.finfo(dtype).max):g}")

    def _refuse_zero_in_dtypes(self, key: str, value: float, consequence: str) -> None:
        """Refuse a positive rate that rounds to 0 in a parameter's dtype
        (``lr=1e-50`` in float32), saying what that would do."""
        for name, p in self.params.items():
            if p.dtype.type(value) == 0:
                raise ValueError(f"{key}={value:g} is 0 in {p.dtype} (parameter {name!r}): "
                                 f"{consequence}")

    def _tied_sums(self, checked: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        """The gradients by parameter: a tied parameter's is its names' sum."""
        for name, owner in self.tied.items():
            checked[owner] = checked[owner] + checked.pop(name)
        return checked

    def _refuse_non_finite(self, checked: Mapping[str, np.ndarray]) -> None:
        """Raise :class:`NonFiniteGradientError` for the first gradient, as it
        would be applied, that holds a nan or an infinity."""
        for name, g in checked.items():
            if not np.isfinite(g).all():
                names = [name] + [n for n, owner in self.tied.items() if owner == name]
                which = (f"gradient {name!r}" if len(names) == 1 else
                         f"the summed gradient of tied {', '.join(map(repr, names))}")
                raise NonFiniteGradientError(
                    f"{which} holds {_non_finite(g)} in the parameter's dtype "
                    f"{self.params[name].dtype}; no parameter was updated")

    def _check_grads(self, grads: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
        if not isinstance(grads, Mapping):
            raise ValueError(f"gradients must be a dict of name -> array like the "
                             f"parameters, got {type(grads).__name__}")
        missing = [n for n in self.params if n not in grads]
        unexpected = [n for n in grads if n not in self.params]
        if missing or unexpected:
            raise ValueError(f"gradients do not match the parameters: missing {missing}, "
                             f"unexpected {unexpected}")
        checked = {}
        for name, p in self.params.items():
            try:
                g = np.asarray(getattr(grads[name], "value", grads[name]))
            except (ValueError, TypeError) as error:  # a ragged list, say
                raise ValueError(f"gradient {name!r} is not an array: {error}") from None
            if g.dtype.kind not in "biuf":  # complex, objects, strings, times: no real step
                raise ValueError(f"gradient {name!r} has dtype {g.dtype}; a parameter of "
                                 f"dtype {p.dtype} needs a real-valued gradient")
            if g.shape != p.shape:
                raise ValueError(f"gradient {name!r} has shape {g.shape} "
                                 f"but the parameter has {p.shape}")
            if not p.flags.writeable:
                raise ValueError(f"parameter {name!r} has become read-only; it cannot be "
                                 f"updated in place")
            checked[name] = g.astype(p.dtype, copy=False)  # a float64 1e300 is inf here
        return checked

    def _update(self, name: str, p: np.ndarray, g: np.ndarray) -> None:
        raise NotImplementedError

    def __repr__(self) -> str:
        settings = "".join(f", {name}={getattr(self, name)!r}" for name in self._shown)
        count = len(self.params) - len(self.tied)  # a tied parameter's names count once
        return f"{type(self).__name__}({count} parameter(s){settings})"


def _non_finite(g: np.ndarray) -> str:
    """What is not finite in ``g``, counted: ``"2 nan and 1 infinite value(s)"``."""
    nans = int(np.isnan(g).sum())
    infs = int(np.isinf(g).sum())
    return " and ".join(f"{n} {what}" for n, what in ((nans, "nan"), (infs, "infinite"))
                        if n) + " value(s)"


def _tied_names(params: Mapping[str, np.ndarray]) -> dict[str, str]:
    """Each name whose array is an earlier name's (the same memory, laid out
    the same way), mapped to the first name holding it.  Arrays that only
    partly overlap are refused: no update of one could be right for the other."""
    tied: dict[str, str] = {}
    first_of: dict[tuple, str] = {}  # each distinct view of memory: its first name
    for name, p in params.items():
        key = view_key(p)
        if p.size and key in first_of:
            tied[name] = first_of[key]
        else:
            first_of.setdefault(key, name)
    distinct = {name: p for name, p in params.items() if name not in tied}
    for first, second in _meeting_ranges(distinct):
        if np.shares_memory(distinct[first], distinct[second]):  # not interleaved or apart
            raise ValueError(f"parameters {first!r} and {second!r} overlap in memory without "
                             f"being the same array; an update of one would change the other")
    return tied


def _meeting_ranges(params: Mapping[str, np.ndarray]) -> list[tuple[str, str]]:
    """The pairs of names whose arrays' byte ranges meet (arrays from one buffer,
    whatever objects own them), found by one sweep over the ranges in order."""
    ranges = [(*byte_bounds(p), name) for name, p in params.items() if p.size]
    ranges.sort(key=lambda r: r[:2])  # names need not be comparable
    pairs, open_ranges = [], []
    for low, high, name in ranges:
        open_ranges = [(h, n) for h, n in open_ranges if h > low]
        pairs.extend((n, name) for _, n in open_ranges)
        open_ranges.append((high, name))
    return pairs


def _check_rate(value: float, name: str, low: float, high: float = math.inf,
                open_low: bool = False) -> float:
    value = real_number(value, name)
    if not (low < value if open_low else low <= value) or not value < high:
        interval = f"{'(' if open_low else '['}{low}, {high})"
        raise ValueError(f"{name} must lie in {interval}, got {value}")
    return value


class SGD(Optimizer):
    """Stochastic gradient descent with optional momentum and weight decay.

    ``g += weight_decay * p``; with momentum ``v = momentum * v + g`` (``v = g``
    on the first step) and ``g = v`` (or ``g + momentum * v`` when
    ``nesterov``); then ``p -= lr * g``.

    Parameters
    ----------
    params : mapping of str to ndarray
        As for :class:`Optimizer`.
    lr : float
        Learning rate, > 0.
    momentum : float
        In ``[0, 1)``; 0 (the default) takes plain gradient steps.
    weight_decay : float
        L2 penalty, >= 0, added to the gradient.
    nesterov : bool
        Nesterov momentum (needs ``momentum > 0``).

    Raises
    ------
    ValueError
        For ``params`` as :class:`Optimizer` says, a rate that is not a real
        number in its range, an ``lr`` or ``weight_decay`` that is infinite
        in a parameter's dtype, an ``lr`` that rounds to 0 in one,
        ``nesterov`` that is not a bool, or ``nesterov`` without momentum.

    Examples
    --------
    >>> import numpy as np
    >>> p = {"w": np.array([1.0, 2.0])}
    >>> opt = SGD(p, lr=0.5, momentum=0.9)
    >>> opt.step({"w": np.array([1.0, 1.0])}); p["w"].tolist()
    [0.5, 1.5]
    >>> opt.step({"w": np.array([1.0, 1.0])}); p["w"].round(6).tolist()  # v = 1.9
    [-0.45, 0.55]
    """

    _shown = ("lr", "momentum", "weight_decay", "nesterov")

    def __init__(self, params: Mapping[str, np.ndarray], lr: float, momentum: float = 0.0,
                 weight_decay: float = 0.0, nesterov: bool = False) -> None:
        super().__init__(params)
        self.lr = _check_rate(lr, "lr", 0.0, open_low=True)
        self.momentum = _check_rate(momentum, "momentum", 0.0, 1.0)
        self.weight_decay = _check_rate(weight_decay, "weight_decay", 0.0)
        self.nesterov = as_flag(nesterov, "nesterov")
        if self.nesterov and self.momentum == 0.0:
            raise ValueError("nesterov needs a momentum > 0")
        self._check_finite_in_dtypes(lr=self.lr, weight_decay=self.weight_decay)
        self._refuse_zero_in_dtypes("lr", self.lr, "no step would change it")

    def _update(self, name: str, p: np.ndarray, g: np.ndarray) -> None:
        if self.weight_decay:
            g = g + self.weight_decay * p
        if self.momentum:
            v = self.state[name].get("velocity")
            if v is None:
                # an array even where g is a numpy scalar (a 0-d parameter with weight
                # decay, or tied), so that the in-place updates below stick
                v = self.state[name]["velocity"] = np.array(g, dtype=p.dtype)
            else:
                v *= self.momentum
                v += g
            g = g + self.momentum * v if self.nesterov else v
        p -= self.lr * g


class Adam(Optimizer):
    """Adam (Kingma & Ba) with bias correction, as in ``torch.optim.Adam``.

    ``m = b1 m + (1-b1) g``, ``v = b2 v + (1-b2) g**2``, then
    ``p -= lr / (1 - b1**t) * m / (sqrt(v / (1 - b2**t)) + eps)``.  Both
    moments are kept in the parameter's dtype; ``(1-b2) g**2`` is computed
    as ``((1-b2) g) g``, as PyTorch's ``addcmul`` does, so a gradient
    past the square root of the dtype's largest value (256 in float16,
    about 1.8e19 in float32) does not overflow it.

    Parameters
    ----------
    params : mapping of str to ndarray
        As for :class:`Optimizer`.
    lr : float
        Learning rate, > 0 (default 1e-3).
    betas : pair of float
        Decay rates ``(b1, b2)`` of the two moments, each in ``[0, 1)``.
    eps : float
        Added to the denominator, > 0, and not 0 in any parameter's dtype
        (the default 1e-8 is 0 in float16).
    weight_decay : float
        L2 penalty, >= 0, added to the gradient.

    Raises
    ------
    ValueError
        For ``params`` as :class:`Optimizer` says, or a rate that is not a
        real number in its range (``betas`` not a pair included), an
        ``lr`` or ``eps`` that rounds to 0 in a parameter's dtype, or an
        ``lr``, ``eps`` or ``weight_decay`` that is infinite in one.

    Examples
    --------
    >>> import numpy as np
    >>> p = {"w": np.array([1.0, -1.0])}
    >>> Adam(p, lr=0.1).step({"w": np.array([3.0, -0.5])}); p["w"].round(6).tolist()
    [0.9, -0.9]
    """

    _shown = ("lr", "betas", "eps", "weight_decay")

    def __init__(self, params: Mapping[str, np.ndarray], lr: float = 1e-3,
                 betas: tuple[float, float] = (0.9, 0.999), eps: float = 1e-8,
                 weight_decay: float = 0.0) -> None:
        super().__init__(params)
        self.lr = _check_rate(lr, "lr", 0.0, open_low=True)
        if not isinstance(betas, (tuple, list)) or len(betas) != 2:
            raise ValueError(f"betas must be a pair (b1, b2), got {betas!r}")
        self.betas = (_check_rate(betas[0], "betas[0]", 0.0, 1.0),
                      _check_rate(betas[1], "betas[1]", 0.0, 1.0))
        self.eps = _check_rate(eps, "eps", 0.0, open_low=True)
        self.weight_decay = _check_rate(weight_decay, "weight_decay", 0.0)
        self._check_finite_in_dtypes(lr=self.lr, eps=self.eps, weight_decay=self.weight_decay)
        self._refuse_zero_in_dtypes("lr", self.lr, "no step would change it")
        self._refuse_zero_in_dtypes(  # 0 / (0 + eps) would be 0 / 0
            "eps", self.eps, "a zero gradient would step it to nan; give an eps the dtype "
                             "holds (1e-4 is usual for float16)")

    def _update(self, name: str, p: np.ndarray, g: np.ndarray) -> None:
        b1, b2 = self.betas
        if self.weight_decay:
            g = g + self.weight_decay * p
        state = self.state[name]
        if not state:
            state["m"], state["v"] = np.zeros_like(p), np.zeros_like(p)
        m, v = state["m"], state["v"]
        m *= b1
        m += (1.0 - b1) * g
        v *= b2
        v += ((1.0 - b2) * g) * g  # scaled first: g * g overflows from sqrt(max) up
        denom = np.sqrt(v)
        denom *= 1.0 / math.sqrt(1.0 - b2 ** self.steps)
        denom += self.eps
        p -= (self.lr / (1.0 - b1 ** self.steps)) * m / denom
