"""Conv-to-FC heads: from a channels-last activation ``(B, N, M, D)`` to ``K`` outputs.

============  ==============================  ===========================
head          spec                            weights
============  ==============================  ===========================
ContractHead  ``bnmd,nmdk->bk``               ``(N, M, D, K)``
FlattenDense  flatten, then ``bi,ik->bk``     ``(N*M*D, K)``
CPHead        ``bnmd,nr,mr,dr,kr->bk``        four rank-``r`` factors
TuckerHead    ``bnmd,np,mq,ds,pqsk->bk``      three factors and a core
============  ==============================  ===========================

ContractHead and FlattenDense compute the same function when the flat
weight is :func:`~contractnet.nn.flat_weight` of the contraction weight; the
factorised heads are ContractHead with a low-rank weight
(:meth:`full_weight`), contracted along opt_einsum's path.  Whether that
path forms the full weight depends on the shapes and ranks: at the digits
and CP acceptance shapes the CP head's path rebuilds it from the factors;
the Tucker head's does not at the digits shape (ranks (3, 3, 8)), but does
at the CP acceptance shape with ranks (7, 7, 32) (``contractnet explain``
shows a path and its largest intermediate).

Every head is built as ``Head(in_shape, classes, [its own arguments,] *,
bias=True, init="glorot", rng=None, dtype=np.float32)`` (FlattenDense's own
``layout`` is keyword-only), maps ``(B, N, M, D)`` to ``(B, K)``, and
shares these parameters and constructor errors; each head's docstring
lists only its own.

Parameters
----------
in_shape : (N, M, D)
    Channels-last activation shape (without the batch).
classes : int
    Number of outputs ``K``.
bias : bool
    Add a learned bias of shape ``(K,)``, initialised to zero.
init : {"glorot", "he"}
    Initialisation scheme (see :func:`contractnet.nn.init.spec_weights`).
    A head with one weight draws it by the scheme; the factorised heads
    draw each factor normal, so that the effective weight gets the
    scheme's variance.
rng : numpy Generator, int or None
    Source of the initial weights (an int seeds a new Generator).
dtype : dtype
    Floating dtype of the parameters.

Raises
------
ValueError
    If ``in_shape`` is not three positive integers, ``classes`` is not a
    positive integer, ``bias`` is not a bool, ``init`` is unknown, ``dtype``
    is not floating point, or ``rng`` is not a Generator, a non-negative seed
    or None.
MemoryBudgetError
    If a parameter would exceed the memory budget.
"""
from __future__ import annotations

from typing import Any, Sequence

import numpy as np

import contractnet as cn

from ..trace import Traced
from ..arguments import positive_int
from .layers import DType, RNG, Einsum, learned_repr_end
from .module import Module, Params
from .weights import check_in_shape, check_layout, contraction_weight, flatten_activation


def check_input(head: Module, x: Any) -> None:
    """Raise ValueError unless ``x`` is ``(B, *head.in_shape)``."""
    shape = x.shape if isinstance(x, Traced) else np.shape(x)
    if len(shape) != 4 or tuple(shape[1:]) != head.in_shape:
        dims = ", ".join(str(n) for n in head.in_shape)
        raise ValueError(f"{type(head).__name__} expects input (B, {dims}), "
                         f"got shape {tuple(shape)}")


class _Head(Einsum):
    """An Einsum from ``(B, N, M, D)`` to ``(B, K)``, with its full weight on demand."""

    full_spec = "nmdk->nmdk"

    def __init__(self, spec: str, in_shape: Sequence[int], classes: int, ranks: dict[str, int],
                 weight_names: Sequence[str], *, bias: bool, init: str, rng: RNG,
                 dtype: DType) -> None:
        self.in_shape = check_in_shape(in_shape)
        self.classes = positive_int(classes, "classes")
        n, m, d = self.in_shape
        sizes = {"n": n, "m": m, "d": d, "k": self.classes, **ranks}
        super().__init__(spec, sizes, bias=bias, weight_names=weight_names, init=init,
                         rng=rng, dtype=dtype)

    def forward(self, params: Params, x: Any) -> Any:
        check_input(self, x)
        return super().forward(params, x)

    def full_weight(self, params: Params | None = None) -> np.ndarray:
        """The equivalent ``(N, M, D, K)`` contraction weight (as an ndarray)."""
        params = self.parameters() if params is None else params
        return cn.einsum(self.full_spec, *(params[name] for name in self.weight_names))

    def extra_repr(self) -> str:
        return (f"{self.in_shape}, {self.classes}{self._rank_repr()}, spec={self.spec!r}, "
                f"{learned_repr_end(self)}")

    def _rank_repr(self) -> str:
        return ""


class ContractHead(_Head):
    """The conv-to-FC head as one contraction, ``"bnmd,nmdk->bk"`` plus bias.

    Its one weight, ``"weight"``, is ``(N, M, D, K)``.  Its gradients are
    ``"bk,nmdk->bnmd"`` (input) and ``"bnmd,bk->nmdk"`` (weight), derived by
    the engine.  A call on input other than ``(B, N, M, D)`` raises
    ``ValueError``.

    Parameters
    ----------
    in_shape, classes, bias, init, rng, dtype
        As every head takes them (see :mod:`contractnet.nn.heads`); ContractHead
        has no arguments of its own.

    Raises
    ------
    ValueError, MemoryBudgetError
        As every head raises them (see :mod:`contractnet.nn.heads`).

    Examples
    --------
    >>> import numpy as np, contractnet as cn
    >>> head = cn.nn.ContractHead((4, 4, 16), 10, rng=0)
    >>> head
    ContractHead((4, 4, 16), 10, spec='bnmd,nmdk->bk', bias=True)
    >>> head(np.ones((2, 4, 4, 16), np.float32)).shape
    (2, 10)
    """

    def __init__(self, in_shape: Sequence[int], classes: int, *, bias: bool = True,
                 init: str = "glorot", rng: RNG = None, dtype: DType = np.float32) -> None:
        super().__init__("bnmd,nmdk->bk", in_shape, classes, {}, ("weight",), bias=bias,
                         init=init, rng=rng, dtype=dtype)


class CPHead(_Head):
    """Rank-``r`` CP head, ``"bnmd,nr,mr,dr,kr->bk"`` plus bias.

    The weight ``W[n,m,d,k] = sum_r A[n,r] B[m,r] C[d,r] E[k,r]`` has
    ``r*(N+M+D+K)`` parameters instead of ``N*M*D*K``: the factors
    ``"factor_n"`` ``(N, r)``, ``"factor_m"`` ``(M, r)``, ``"factor_d"``
    ``(D, r)`` and ``"factor_k"`` ``(K, r)``.
    A call on input other than ``(B, N, M, D)`` raises ``ValueError``.

    Parameters
    ----------
    in_shape, classes, bias, init, rng, dtype
        As every head takes them (see :mod:`contractnet.nn.heads`).
    rank : int
        The CP rank ``r``.

    Raises
    ------
    ValueError, MemoryBudgetError
        As every head raises them (see :mod:`contractnet.nn.heads`); and ValueError
        if ``rank`` is not a positive integer.

    Examples
    --------
    >>> import contractnet as cn
    >>> head = cn.nn.CPHead((4, 4, 16), 10, rank=8, rng=0)
    >>> head.num_parameters()
    282
    """

    full_spec = "nr,mr,dr,kr->nmdk"

    def __init__(self, in_shape: Sequence[int], classes: int, rank: int, *, bias: bool = True,
                 init: str = "glorot", rng: RNG = None, dtype: DType = np.float32) -> None:
        self.rank = positive_int(rank, "rank")
        super().__init__("bnmd,nr,mr,dr,kr->bk", in_shape, classes, {"r": self.rank},
                         ("factor_n", "factor_m", "factor_d", "factor_k"), bias=bias,
                         init=init, rng=rng, dtype=dtype)

    def _rank_repr(self) -> str:
        return f", rank={self.rank}"


class TuckerHead(_Head):
    """Tucker (tensor-regression) head, ``"bnmd,np,mq,ds,pqsk->bk"`` plus bias.

    Factors ``"factor_n"`` ``(N, p)``, ``"factor_m"`` ``(M, q)`` and
    ``"factor_d"`` ``(D, s)`` project the activation to a ``(p, q, s)`` core,
    which the ``"core"`` weight ``(p, q, s, K)`` maps to the outputs.
    A call on input other than ``(B, N, M, D)`` raises ``ValueError``.

    Parameters
    ----------
    in_shape, classes, bias, init, rng, dtype
        As every head takes them (see :mod:`contractnet.nn.heads`).
    ranks : (p, q, s)
        Three positive ints: the core's shape.

    Raises
    ------
    ValueError, MemoryBudgetError
        As every head raises them (see :mod:`contractnet.nn.heads`); and ValueError
        if ``ranks`` is not three positive integers.

    Examples
    --------
    >>> import contractnet as cn
    >>> head = cn.nn.TuckerHead((4, 4, 16), 10, ranks=(2, 2, 8), rng=0)
    >>> sorted(head.parameters())
    ['bias', 'core', 'factor_d', 'factor_m', 'factor_n']
    """

    full_spec = "np,mq,ds,pqsk->nmdk"

    def __init__(self, in_shape: Sequence[int], classes: int, ranks: Sequence[int], *,
                 bias: bool = True, init: str = "glorot", rng: RNG = None,
                 dtype: DType = np.float32) -> None:
        given = ranks
        ranks = tuple(ranks) if isinstance(ranks, (tuple, list)) or np.ndim(ranks) else (ranks,)
        if len(ranks) != 3:
            raise ValueError(f"ranks must be three positive ints (p, q, s), got {given!r}")
        self.ranks = tuple(positive_int(r, f"ranks[{i}] ({'pqs'[i]})") for i, r in enumerate(ranks))
        p, q, s = self.ranks
        super().__init__("bnmd,np,mq,ds,pqsk->bk", in_shape, classes, {"p": p, "q": q, "s": s},
                         ("factor_n", "factor_m", "factor_d", "core"), bias=bias,
                         init=init, rng=rng, dtype=dtype)

    def _rank_repr(self) -> str:
        return f", ranks={self.ranks}"


class FlattenDense(Einsum):
    """The flatten+matmul baseline: flatten ``(B, N, M, D)`` in ``layout`` order, then matmul.

    With ``layout="NHWC"`` the flatten is a free reshape; ``"NCHW"`` first
    moves channels forward, as a PyTorch model's flatten does.  The weight
    ``"weight"`` ``(N*M*D, K)`` relates to ContractHead's by
    :func:`~contractnet.nn.flat_weight` / :func:`~contractnet.nn.contraction_weight`.
    Seeded alike, FlattenDense("NHWC") and ContractHead draw the same weights.
    A call on input other than ``(B, N, M, D)`` raises ``ValueError``.

    Parameters
    ----------
    in_shape, classes, bias, init, rng, dtype
        As every head takes them (see :mod:`contractnet.nn.heads`).
    layout : {"NHWC", "NCHW"}
        Flatten order (see :func:`~contractnet.nn.flatten_activation`).

    Raises
    ------
    ValueError, MemoryBudgetError
        As every head raises them (see :mod:`contractnet.nn.heads`); and ValueError
        if ``layout`` is unknown.

    Examples
    --------
    >>> import numpy as np, contractnet as cn
    >>> x = np.random.default_rng(1).random((2, 4, 4, 16), dtype=np.float32)
    >>> a, b = cn.nn.ContractHead((4, 4, 16), 10, rng=0), cn.nn.FlattenDense((4, 4, 16), 10, rng=0)
    >>> np.allclose(a(x), b(x), atol=1e-6)
    True
    """

    def __init__(self, in_shape: Sequence[int], classes: int, *, layout: str = "NHWC",
                 bias: bool = True, init: str = "glorot", rng: RNG = None,
                 dtype: DType = np.float32) -> None:
        check_layout(layout)
        self.layout = layout
        self.in_shape = check_in_shape(in_shape)
        self.classes = positive_int(classes, "classes")
        n, m, d = self.in_shape
        super().__init__("bi,ik->bk", {"i": n * m * d, "k": self.classes}, bias=bias, init=init,
                         rng=rng, dtype=dtype)

    def forward(self, params: Params, x: Any) -> Any:
        check_input(self, x)
        return super().forward(params, flatten_activation(x, self.layout))

    def full_weight(self, params: Params | None = None) -> np.ndarray:
        """The equivalent ``(N, M, D, K)`` contraction weight."""
        params = self.parameters() if params is None else params
        return contraction_weight(params["weight"], self.in_shape, self.layout)

    def extra_repr(self) -> str:
        return (f"{self.in_shape}, {self.classes}, layout={self.layout!r}, "
                f"spec={self.spec!r}, {learned_repr_end(self)}")
