"""The engine's seam to an array library, for the calls numpy does not
dispatch on its arguments' type.

The functions listed on :class:`NumpyBackend` go through :data:`backend`:
new outputs (zeroed or not), strided views, contiguous copies and the contractions
themselves (``matmul``, ``einsum``).  Everything else the engine does is an
array method (``reshape``, ``transpose``, ``sum``, ``max``), a numpy ufunc
(``add``, ``maximum``, ``multiply``) or a small helper (``asarray``,
``arange``), called directly: a library that implements numpy's array
protocols serves the first two itself.  Swapping this object is the first
step to running on another library, not all of it.
"""
from __future__ import annotations

import numpy as np


class NumpyBackend:
    """The numpy functions the engine calls through the seam."""

    zeros = staticmethod(np.zeros)
    empty = staticmethod(np.empty)
    matmul = staticmethod(np.matmul)
    einsum = staticmethod(np.einsum)
    as_strided = staticmethod(np.lib.stride_tricks.as_strided)
    ascontiguousarray = staticmethod(np.ascontiguousarray)


backend = NumpyBackend()
