"""Convert between the contraction weight ``(N, M, D, K)`` and a flat ``(N*M*D, K)`` one.

A flatten+matmul head fuses ``n, m, d`` into one row index in the order its
framework flattens activations:

========  ===============================  ===================
layout    activation before flattening     row order of weight
========  ===============================  ===================
"NHWC"    ``(B, N, M, D)`` (Keras, ours)   ``n, m, d``
"NCHW"    ``(B, D, N, M)`` (PyTorch)       ``d, n, m``
========  ===============================  ===================

With matching layouts, ``flatten_activation(x, layout) @ flat_weight(W, layout)``
equals ``einsum("bnmd,nmdk->bk", x, W)``.  (A PyTorch ``nn.Linear`` stores the
transpose, ``(K, N*M*D)``.)
"""
from __future__ import annotations

from typing import Any, Sequence

import numpy as np

import contractnet as cn
from ..arguments import is_int
from ..trace import array_or_traced

# The activation axes (0: n, 1: m, 2: d) in the order a layout flattens them.
LAYOUTS: dict[str, tuple[int, int, int]] = {"NHWC": (0, 1, 2), "NCHW": (2, 0, 1)}


def check_layout(layout: str) -> tuple[int, int, int]:
    if not isinstance(layout, str) or layout not in LAYOUTS:
        raise ValueError(f"unknown layout {layout!r}; choose one of {sorted(LAYOUTS)}")
    return LAYOUTS[layout]


def check_in_shape(in_shape: Sequence[int]) -> tuple[int, int, int]:
    shape = (tuple(in_shape) if isinstance(in_shape, (Sequence, np.ndarray))
             and not isinstance(in_shape, str) and np.ndim(in_shape) == 1 else ())
    if len(shape) != 3 or not all(is_int(n) and n > 0 for n in shape):
        raise ValueError(f"in_shape must be three positive ints (N, M, D), got {in_shape!r}")
    return tuple(int(n) for n in shape)  # type: ignore[return-value]


def flat_weight(w: np.ndarray, layout: str = "NHWC") -> np.ndarray:
    """The ``(N*M*D, K)`` weight of a flatten+matmul head equal to ``"bnmd,nmdk->bk"``.

    Parameters
    ----------
    w : ndarray, shape (N, M, D, K)
        Contraction weight.
    layout : {"NHWC", "NCHW"}
        Flatten order of the framework the flat weight is for.

    Returns
    -------
    ndarray, shape (N*M*D, K)
        A new contiguous array, same dtype.

    Raises
    ------
    ValueError
        If ``w`` is not 4-d or the layout is unknown.

    Examples
    --------
    >>> import numpy as np
    >>> from contractnet.nn import flat_weight
    >>> w = np.arange(2 * 1 * 3 * 1).reshape(2, 1, 3, 1)      # n=2, m=1, d=3
    >>> flat_weight(w, "NHWC").ravel().tolist()                 # n, m, d order
    [0, 1, 2, 3, 4, 5]
    >>> flat_weight(w, "NCHW").ravel().tolist()                 # d, n, m order
    [0, 3, 1, 4, 2, 5]
    """
    order = check_layout(layout)
    w = np.asarray(w)
    if w.ndim != 4:
        raise ValueError(f"contraction weight must be 4-d (N, M, D, K), got shape {w.shape}")
    return w.transpose(order + (3,)).copy().reshape(-1, w.shape[3])  # never a view of w


def contraction_weight(w_flat: np.ndarray, in_shape: Sequence[int],
                       layout: str = "NHWC") -> np.ndarray:
    """The ``(N, M, D, K)`` weight of ``"bnmd,nmdk->bk"`` equal to a flat head.

    The inverse of :func:`flat_weight`.

    Parameters
    ----------
    w_flat : ndarray, shape (N*M*D, K)
    in_shape : (N, M, D)
        Channels-last shape of the activation.
    layout : {"NHWC", "NCHW"}
        Flatten order the flat weight was trained with.

    Returns
    -------
    ndarray, shape (N, M, D, K)
        A new contiguous array, same dtype.

    Raises
    ------
    ValueError
        If ``in_shape`` is not three positive integers, ``w_flat`` is not
        2-d with ``N*M*D`` rows, or the layout is unknown.

    Examples
    --------
    >>> import numpy as np
    >>> from contractnet.nn import contraction_weight, flatten_activation
    >>> rng = np.random.default_rng(0)
    >>> w_flat = rng.standard_normal((2 * 1 * 3, 4)).astype(np.float32)  # K=4
    >>> w = contraction_weight(w_flat, (2, 1, 3), "NCHW")
    >>> w.shape, w.dtype
    ((2, 1, 3, 4), dtype('float32'))
    >>> x = rng.standard_normal((5, 2, 1, 3)).astype(np.float32)
    >>> np.allclose(np.einsum("bnmd,nmdk->bk", x, w),
    ...             flatten_activation(x, "NCHW") @ w_flat)
    True
    """
    order, shape = check_layout(layout), check_in_shape(in_shape)
    w_flat = np.asarray(w_flat)
    if w_flat.ndim != 2 or w_flat.shape[0] != np.prod(shape):
        raise ValueError(f"flat weight must have shape ({int(np.prod(shape))}, K) for "
                         f"in_shape {shape}, got {w_flat.shape}")
    w = w_flat.reshape(tuple(shape[a] for a in order) + (w_flat.shape[1],))
    inverse = tuple(int(a) for a in np.argsort(order))
    return w.transpose(inverse + (3,)).copy()  # never a view of w_flat


def flatten_activation(x: Any, layout: str = "NHWC") -> Any:
    """Flatten a channels-last ``(B, N, M, D)`` activation as a framework with ``layout`` would.

    Works on ndarrays and traced values (it is a transpose and a reshape).

    Parameters
    ----------
    x : array_like or Traced, shape (B, N, M, D)
    layout : {"NHWC", "NCHW"}
        ``"NHWC"`` flattens ``n, m, d`` in that order (a reshape alone);
        ``"NCHW"`` puts ``d`` first, as PyTorch flattens ``(B, D, N, M)``.

    Returns
    -------
    ndarray or Traced, shape (B, N*M*D)
        Possibly a view of ``x``, as numpy's reshape gives one.

    Raises
    ------
    ValueError
        If ``x`` is not 4-d or the layout is unknown.

    Examples
    --------
    >>> import numpy as np
    >>> from contractnet.nn import flatten_activation
    >>> x = np.arange(6).reshape(1, 2, 1, 3)                    # n=2, m=1, d=3
    >>> flatten_activation(x, "NCHW").tolist()
    [[0, 3, 1, 4, 2, 5]]
    """
    order = check_layout(layout)
    x = array_or_traced(x)
    if len(x.shape) != 4:
        raise ValueError(f"activation must be 4-d (B, N, M, D), got shape {tuple(x.shape)}")
    b, rest = x.shape[0], tuple(x.shape[1:])
    if layout != "NHWC":
        x = cn.transpose(x, (0,) + tuple(1 + a for a in order))
    return cn.reshape(x, (b, int(np.prod(rest))))
