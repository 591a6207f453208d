"""The one seam between the engine and an array library.

Every array call that allocates or contracts goes through :data:`backend`;
running the engine on another library means swapping this object.
"""
from __future__ import annotations

import numpy as np


class NumpyBackend:
    """The array calls the engine makes; swap this object to run elsewhere."""

    zeros = staticmethod(np.zeros)
    matmul = staticmethod(np.matmul)
    einsum = staticmethod(np.einsum)
    as_strided = staticmethod(np.lib.stride_tricks.as_strided)
    expand_dims = staticmethod(np.expand_dims)
    ascontiguousarray = staticmethod(np.ascontiguousarray)


backend = NumpyBackend()
