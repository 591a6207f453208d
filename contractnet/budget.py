"""The memory budget: the largest array one contraction may allocate.

Every allocation the engine can size in advance is checked against it before
it is made (a result, an intermediate, a copy of an operand laid out for
BLAS), so a spec with a typo in it fails with a message rather than by
exhausting the machine's memory.
"""
from __future__ import annotations

import contextlib
import math
import os
from typing import Iterator, Sequence

import numpy as np

from .arguments import is_int


class MemoryBudgetError(ValueError):
    """A contraction would allocate more than the memory budget allows."""


def _default_budget() -> int:
    try:
        total = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (ValueError, OSError, AttributeError):
        total = 8 << 30
    return total // 2


#: The budget in bytes, in a list so that every module reads the current value.
BUDGET = [_default_budget()]


def get_memory_budget() -> int:
    """The largest array (bytes) one contraction may allocate now."""
    return BUDGET[0]


def set_memory_budget(nbytes: int | None) -> int:
    """Set the largest array (bytes) one contraction may allocate.

    Parameters
    ----------
    nbytes : int or None
        A positive number of bytes; ``None`` restores the default, half of
        physical memory.

    Returns
    -------
    int
        The previous budget.

    Raises
    ------
    ValueError
        If ``nbytes`` is not a positive int (a bool, a float or 0 included).
    """
    if nbytes is not None and (not is_int(nbytes) or nbytes <= 0):
        raise ValueError(f"memory budget must be a positive number of bytes, got {nbytes!r}")
    previous = BUDGET[0]
    BUDGET[0] = _default_budget() if nbytes is None else int(nbytes)
    return previous


@contextlib.contextmanager
def memory_budget(nbytes: int | None) -> Iterator[None]:
    """Temporarily limit the bytes one contraction may allocate (a context
    manager: ``with memory_budget(1 << 30): ...``); the budget before it is
    restored on leaving, however the block ends.

    Parameters
    ----------
    nbytes : int or None
        As for :func:`set_memory_budget`.

    Raises
    ------
    ValueError
        As :func:`set_memory_budget` does, on entering.
    """
    previous = set_memory_budget(nbytes)
    try:
        yield
    finally:
        BUDGET[0] = previous


def check_allocation(shape: Sequence[int], dtype, what: str) -> None:
    """Raise :class:`MemoryBudgetError` if an array of ``shape`` and
    ``dtype`` (``what``, for the message) would exceed the memory budget."""
    needed = math.prod(shape) * np.dtype(dtype).itemsize
    if needed > BUDGET[0]:
        raise MemoryBudgetError(
            f"{what} of shape {tuple(shape)} ({np.dtype(dtype)}), {needed:,} bytes: more "
            f"than the memory budget of {BUDGET[0]:,} bytes (by default half of this "
            f"machine's memory; contractnet.set_memory_budget changes it)")
