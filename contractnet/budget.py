"""The memory budget: the largest array one contraction may allocate.

Every allocation the engine can size in advance is checked against it before
it is made (a result, an intermediate, a copy of an operand laid out for
BLAS), so a spec with a typo in it fails with a message rather than by
exhausting the machine's memory.
"""
from __future__ import annotations

import contextlib
import contextvars
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


#: The process's budget in bytes, read by every thread outside a
#: :func:`memory_budget` block (in a list, so that setting it needs no ``global``).
_PROCESS = [_default_budget()]
#: The budget in force, in bytes, as a one-element list: :data:`_PROCESS` by
#: default; inside a block, a list of its own, in its thread (or asyncio task)
#: only.  Read it as ``BUDGET.get()[0]``.
BUDGET: contextvars.ContextVar[list[int]] = contextvars.ContextVar("memory_budget",
                                                                   default=_PROCESS)


def get_memory_budget() -> int:
    """The largest array (bytes) one contraction may allocate now, here: the
    budget of the innermost :func:`memory_budget` block open in this thread,
    else the process's."""
    return BUDGET.get()[0]


def set_memory_budget(nbytes: int | None) -> int:
    """Set the largest array (bytes) one contraction may allocate.

    Outside any :func:`memory_budget` block this sets the process's budget,
    which every thread outside a block of its own reads; inside one it sets
    that block's (in this thread only), until the block ends.

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
    value, budget = _checked(nbytes), BUDGET.get()
    previous = budget[0]
    if budget is _PROCESS:
        _PROCESS[0] = value
    else:
        # a list of its own, as a task started in the block shares the block's list;
        # dropped when the block ends, which resets the variable to the block's start
        BUDGET.set([value])
    return previous


def _checked(nbytes: int | None) -> int:
    if nbytes is not None and (not is_int(nbytes) or nbytes <= 0):
        raise ValueError(f"memory budget must be a positive integer (bytes), got {nbytes!r}")
    return _default_budget() if nbytes is None else int(nbytes)


@contextlib.contextmanager
def memory_budget(nbytes: int | None) -> Iterator[None]:
    """Limit the bytes one contraction may allocate within a block (a context
    manager: ``with memory_budget(1 << 30): ...``), in the thread (or
    asyncio task) that runs it: other threads keep their own budget, and
    the one before the block is back on leaving, however the block ends.

    Parameters
    ----------
    nbytes : int or None
        As for :func:`set_memory_budget`.

    Raises
    ------
    ValueError
        As :func:`set_memory_budget` does, on entering.
    """
    token = BUDGET.set([_checked(nbytes)])
    try:
        yield
    finally:
        BUDGET.reset(token)


def check_allocation(shape: Sequence[int], dtype, what: str) -> None:
    """Raise :class:`MemoryBudgetError` if an array of ``shape`` and
    ``dtype`` (``what``, for the message) would exceed the memory budget."""
    needed = math.prod(shape) * np.dtype(dtype).itemsize
    budget = BUDGET.get()[0]
    if needed > budget:
        raise MemoryBudgetError(
            f"{what} of shape {tuple(shape)} ({np.dtype(dtype)}), {needed:,} bytes: more "
            f"than the memory budget of {budget:,} bytes (by default half of this "
            f"machine's memory; contractnet.set_memory_budget changes it)")
