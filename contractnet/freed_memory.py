"""Keeping freed memory in the process, so that new arrays reuse it.

numpy takes each array's memory from the C library's ``malloc``.  glibc's
``malloc`` serves a block of 128 KiB or more (a threshold it raises, up to
32 MiB, as such blocks are freed) with fresh pages from the kernel, and
hands memory freed at the top of its heap back past a similar threshold.
Either way the next array of that size starts on pages the kernel has not
mapped yet, and writing it takes one page fault per 4 KiB page.  A training
step makes and frees arrays of a few MiB dozens of times, in sizes that
keep moving those thresholds: in the MNIST-sized CNN's training step of
``benchmarks/freed_memory.py``, about 6,000 faults each time (9 with the
memory kept), and the step took 37-39 ms where it took 24-28 ms kept.
Layers timed alone, which fault nothing either way, ran up to 1.8 times
slower in processes that kept freed memory, so measure before keeping it.

:func:`keep_freed_memory` sets glibc's thresholds once for the whole
process, as a training script or the ``contractnet train`` command may
choose to; importing contractnet changes nothing.
"""
from __future__ import annotations

import ctypes
import ctypes.util
import platform

from .arguments import is_int

#: ``mallopt`` parameters (glibc's malloc.h).
M_TRIM_THRESHOLD = -1
M_MMAP_THRESHOLD = -3

#: The largest threshold glibc takes for serving a block from its heap
#: rather than from fresh pages (on a 64-bit machine).
MAX_HEAP_BLOCK = 32 << 20


def keep_freed_memory(nbytes: int = 256 << 20) -> bool:
    """Have glibc's ``malloc`` keep up to ``nbytes`` of freed memory in the
    process and serve blocks of up to 32 MiB (or ``nbytes``, if less) from
    it, so that arrays made and freed over and over (a training loop)
    reuse pages already mapped instead of faulting on fresh ones.

    It applies to the whole process, to every library's allocations, and
    cannot be undone: glibc's own adaptive thresholds stay off from then
    on.  The process keeps up to ``nbytes`` of freed memory mapped, so its
    resident size stays near its peak.

    Parameters
    ----------
    nbytes : int
        Bytes of freed memory kept (256 MiB by default); a positive int.

    Returns
    -------
    bool
        True where the thresholds were set (Linux with glibc); False where
        the C library is another one, and nothing was changed.

    Raises
    ------
    ValueError
        If ``nbytes`` is not a positive int (a bool, a float or 0 included).

    Examples
    --------
    At the top of a training script, before the arrays it will reuse:

    >>> import contractnet as cn
    >>> cn.keep_freed_memory()  # doctest: +SKIP
    True
    """
    if not is_int(nbytes) or nbytes <= 0:
        raise ValueError(f"nbytes must be a positive number of bytes, got {nbytes!r}")
    libc = _glibc()
    if libc is None:
        return False
    # a threshold past the top of an int is refused: glibc reads both as int
    trim = min(int(nbytes), 2**31 - 1)
    return bool(libc.mallopt(M_MMAP_THRESHOLD, min(trim, MAX_HEAP_BLOCK))
                and libc.mallopt(M_TRIM_THRESHOLD, trim))


def _glibc() -> ctypes.CDLL | None:
    """The process's C library where it is glibc, else None."""
    if platform.system() != "Linux" or platform.libc_ver()[0] != "glibc":
        return None
    name = ctypes.util.find_library("c") or "libc.so.6"
    try:
        libc = ctypes.CDLL(name)
    except OSError:
        return None
    return libc if hasattr(libc, "mallopt") else None
