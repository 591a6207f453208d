"""scikit-learn's bundled digits as channels-last images, and seeded batching.

The digits (1797 grey 8x8 images of 0-9, pixel values 0..16) ship inside
scikit-learn, so loading them needs no network.  Install with the ``data``
extra: ``pip install 'contractnet[data]'``.
"""
from __future__ import annotations

import math
from typing import Iterator, NamedTuple

import numpy as np

from .arguments import floating_dtype, non_negative_int, positive_int


class Split(NamedTuple):
    """A train/test split: images ``(B, H, W, C)`` and integer labels ``(B,)``."""

    x_train: np.ndarray
    y_train: np.ndarray
    x_test: np.ndarray
    y_test: np.ndarray


def load_digits(test_fraction: float = 0.2, seed: int = 0,
                dtype: np.dtype | type | str = np.float32) -> Split:
    """The digits as ``(B, 8, 8, 1)`` images in ``[0, 1]`` with a seeded split.

    The split is a permutation drawn from ``np.random.default_rng(seed)``:
    the same seed always gives the same split.

    Parameters
    ----------
    test_fraction : float
        Share of the 1797 samples held out, in ``(0, 1)``.
    seed : int
        Seed of the split.
    dtype : floating dtype
        dtype of the images (labels are int64).

    Returns
    -------
    Split
        ``x_train, y_train, x_test, y_test``.

    Raises
    ------
    ImportError
        If scikit-learn is missing (install ``contractnet[data]``).
    ValueError
        If ``test_fraction`` is not a number in ``(0, 1)`` or leaves one of
        the sets empty, ``seed`` is not a non-negative integer, or ``dtype``
        is not floating.

    Examples
    --------
    >>> d = load_digits()
    >>> d.x_train.shape, d.x_test.shape, d.x_train.dtype
    ((1438, 8, 8, 1), (359, 8, 8, 1), dtype('float32'))
    """
    try:
        fraction = float(test_fraction)
    except (TypeError, ValueError):
        fraction = math.nan  # refused just below, by name
    if isinstance(test_fraction, (bool, str)) or not 0.0 < fraction < 1.0:
        raise ValueError(f"test_fraction must be a number in (0, 1), got {test_fraction!r}")
    non_negative_int(seed, "seed")
    dt = floating_dtype(dtype)
    try:
        from sklearn.datasets import load_digits as sklearn_digits
    except ImportError as exc:
        raise ImportError("load_digits needs scikit-learn; install it with "
                          "pip install 'contractnet[data]'") from exc
    bunch = sklearn_digits()
    # pixel values are 0..16: dividing in the target dtype keeps them exact
    images = bunch.images.astype(dt)[..., None] / dt.type(16)
    labels = bunch.target.astype(np.int64)
    order = np.random.default_rng(seed).permutation(len(labels))
    n_test = int(round(len(labels) * fraction))
    if not 0 < n_test < len(labels):
        raise ValueError(f"test_fraction {test_fraction} leaves {n_test} of the {len(labels)} "
                         f"samples for testing: both the training and the test set need some")
    test, train = order[:n_test], order[n_test:]
    return Split(images[train], labels[train], images[test], labels[test])


def batches(x: np.ndarray, y: np.ndarray, batch_size: int, *, shuffle: bool = True,
            rng: np.random.Generator | int | None = None,
            drop_last: bool = False) -> Iterator[tuple[np.ndarray, np.ndarray]]:
    """Yield ``(x_batch, y_batch)`` pairs covering the data once.

    Parameters
    ----------
    x, y : ndarray
        Inputs and targets with the same first dimension.
    batch_size : int
        Rows per batch (the last batch may be smaller unless ``drop_last``).
    shuffle : bool
        Visit the rows in a random order drawn from ``rng``.
    rng : numpy Generator, int seed or None
        Pass one Generator across epochs for a new, reproducible order each epoch.
    drop_last : bool
        Skip a final partial batch.

    Raises
    ------
    ValueError
        If the lengths differ or ``batch_size`` is not a positive int.

    Examples
    --------
    >>> x, y = np.arange(5), np.arange(5)
    >>> [b.tolist() for b, _ in batches(x, y, 2, shuffle=False)]
    [[0, 1], [2, 3], [4]]
    """
    if len(x) != len(y):
        raise ValueError(f"x has {len(x)} rows but y has {len(y)}")
    positive_int(batch_size, "batch_size")
    if shuffle:
        gen = rng if isinstance(rng, np.random.Generator) else np.random.default_rng(rng)
        order = gen.permutation(len(x))
    else:
        order = np.arange(len(x))
    stop = len(x) - len(x) % batch_size if drop_last else len(x)
    # checks above run at the call, not at the first next()
    return ((x[order[i:i + batch_size]], y[order[i:i + batch_size]])
            for i in range(0, stop, batch_size))
