"""The engine's seam to an array library, for the calls numpy does not
dispatch on its arguments' type.

Creating arrays, strided views and the contractions themselves (``matmul``,
``einsum``) go through :data:`backend`.  Everything else the engine does is
an array method (``reshape``, ``transpose``, ``sum``, ``max``) or a numpy
ufunc (``add``, ``maximum``, ``multiply``), called directly: a library that
implements numpy's array protocols serves those itself.  Swapping this
object is the first step to running on another library, not all of it.
"""
from __future__ import annotations

import numpy as np


class NumpyBackend:
    """The numpy functions the engine calls through the seam."""

    zeros = staticmethod(np.zeros)
    matmul = staticmethod(np.matmul)
    einsum = staticmethod(np.einsum)
    as_strided = staticmethod(np.lib.stride_tricks.as_strided)
    expand_dims = staticmethod(np.expand_dims)
    ascontiguousarray = staticmethod(np.ascontiguousarray)


backend = NumpyBackend()
