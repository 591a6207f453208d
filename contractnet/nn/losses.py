"""Losses composed from differentiable ops (no backward of their own), and accuracy."""
from __future__ import annotations

import math
from typing import Any

import numpy as np

import contractnet as cn
from ..trace import Traced, array_or_traced


def check_labels(labels: Any, logits_shape: tuple[int, ...], what: str) -> np.ndarray:
    """``labels`` as an array, checked against logits of ``logits_shape``.

    Raises
    ------
    ValueError
        Unless the logits are ``(B, K)`` with ``B >= 1`` (``what``, the
        caller, has no value for an empty batch) and ``labels`` holds ``B``
        integers in ``[0, K)`` (not a traced value: labels are not
        differentiated).
    """
    if isinstance(labels, Traced):
        raise ValueError("labels must be an integer array, got a traced value (are the "
                         "logits and the labels swapped?)")
    labels = np.asarray(labels)
    if len(logits_shape) != 2:
        raise ValueError(f"logits must be 2-d (B, K), got shape {tuple(logits_shape)}")
    b, k = logits_shape
    if b == 0:
        raise ValueError(f"{what} needs at least one example, got logits of shape "
                         f"{tuple(logits_shape)}")
    if labels.shape == (b, k) and labels.ndim == 2:  # one-hot (or soft) rows
        raise ValueError(f"labels must be {b} class numbers, got a ({b}, {k}) array, one-hot "
                         f"rows it seems; pass labels.argmax(axis=1)")
    if not np.issubdtype(labels.dtype, np.integer):
        raise ValueError(f"labels must be integers (class numbers), got dtype {labels.dtype}")
    if labels.shape != (b,):
        raise ValueError(f"labels must have shape ({b},) to match logits {tuple(logits_shape)}, "
                         f"got {labels.shape}")
    if labels.min() < 0 or labels.max() >= k:
        raise ValueError(f"labels must lie in [0, {k}), got values in "
                         f"[{labels.min()}, {labels.max()}]")
    return labels


def softmax_cross_entropy(logits: Any, labels: Any) -> Any:
    """Mean softmax cross-entropy of ``(B, K)`` logits against integer labels.

    ``mean_b( logsumexp_k(logits[b]) - logits[b, labels[b]] )``, the label's
    logit picked by indexing: a ``-inf`` logit (a masked class) elsewhere
    in the row adds nothing, where a product with a one-hot would give nan.

    Parameters
    ----------
    logits : ndarray or Traced, shape (B, K)
    labels : integer ndarray, shape (B,)

    Returns
    -------
    0-d ndarray or Traced, dtype of ``logits``

    Raises
    ------
    ValueError
        If labels are not integers, have the wrong shape, or fall outside
        ``[0, K)``, or the batch is empty (its mean would be nan).

    Examples
    --------
    >>> import numpy as np, contractnet as cn
    >>> loss = cn.nn.softmax_cross_entropy(np.zeros((2, 4), np.float32), np.array([0, 3]))
    >>> round(float(loss), 4) == round(float(np.log(4)), 4)
    True
    """
    logits = array_or_traced(logits)
    labels = check_labels(labels, tuple(logits.shape), "softmax_cross_entropy")
    picked = logits[np.arange(len(labels)), labels]
    return cn.mean(cn.logsumexp(logits, axis=1) - picked)


def mse(prediction: Any, target: Any) -> Any:
    """Mean squared error ``mean(|prediction - target|**2)`` over all elements
    (for complex operands the squared magnitude, so the loss is real).

    Parameters
    ----------
    prediction, target : array_like or Traced
        Of one shape (no broadcasting).

    Returns
    -------
    numpy scalar, or 0-d Traced when an operand is traced
        In the operands' dtype as numpy promotes it (float64 for integers;
        the real dtype of that width for complex ones).

    Raises
    ------
    ValueError
        If the shapes differ, or hold no element.

    Examples
    --------
    >>> import numpy as np, contractnet as cn
    >>> float(cn.nn.mse(np.array([1.0, 2.0]), np.array([0.0, 0.0])))
    2.5
    """
    prediction, target = array_or_traced(prediction), array_or_traced(target)
    target_shape = tuple(target.shape)
    if tuple(prediction.shape) != target_shape:
        raise ValueError(f"mse: prediction shape {tuple(prediction.shape)} differs from "
                         f"target shape {target_shape}")
    if not math.prod(target_shape):  # its mean would be nan
        raise ValueError(f"mse needs at least one element, got shape {target_shape}")
    if prediction.dtype.kind in "biu" and target.dtype.kind in "biu":
        # in float64, as numpy.mean computes on integers: an integer difference or
        # square wraps around (uint8: 0 - 20 is 236)
        prediction, target = cn.astype(prediction, np.float64), cn.astype(target, np.float64)
    diff = prediction - target
    if diff.dtype.kind == "c":  # diff * diff would be complex, not a distance
        diff = cn.abs(diff)
    return cn.mean(diff * diff)


def accuracy(logits: np.ndarray, labels: np.ndarray) -> float:
    """Fraction of rows whose largest logit is at the label.

    A row holding a nan (a diverged model) counts as wrong: ``np.argmax``
    would pick the nan's position as if it were a prediction.

    Parameters
    ----------
    logits : ndarray or Traced, shape (B, K)
        A traced value is read as its value (no gradient).
    labels : integer ndarray, shape (B,)
        Class numbers in ``[0, K)``.

    Returns
    -------
    float
        In ``[0, 1]``.

    Raises
    ------
    ValueError
        As :func:`softmax_cross_entropy` does for its logits and labels.

    Examples
    --------
    >>> import numpy as np, contractnet as cn
    >>> cn.nn.accuracy(np.array([[0.1, 0.9], [0.8, 0.2]]), np.array([1, 1]))
    0.5
    """
    logits = np.asarray(getattr(logits, "value", logits))
    labels = check_labels(labels, logits.shape, "accuracy")
    right = np.argmax(logits, axis=1) == labels
    if logits.dtype.kind in "fc":
        right &= ~np.isnan(logits).any(axis=1)
    return float(np.mean(right))
