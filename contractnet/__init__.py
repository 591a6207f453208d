"""contractnet: neural-network layers as einsum specs.

Every linear layer is an einsum spec and every backward pass is derived from
the spec as a transposed contraction::

    >>> import contractnet as cn
    >>> cn.backward_specs("bnmd,nmdk->bk", (2, 3, 3, 4), (3, 3, 4, 5))
    ('bk,nmdk->bnmd', 'bnmd,bk->nmdk')
"""
from .spec import SpecError, Spec, Term, Window, parse
from .budget import MemoryBudgetError, get_memory_budget, memory_budget, set_memory_budget
from .freed_memory import keep_freed_memory
from .autodiff import DtypeError, vjp, grad, value_and_grad
from .gradcheck import check_grads
from .api import einsum, backward_specs
from .explanation import explain
from .trace import Traced
from .ops import *  # noqa: F401,F403  (elementwise, reductions, shape ops)
from .ops import __all__ as _ops_all
from .conv import *  # noqa: F401,F403  (conv1d/2d/3d, pooling, conv_transpose2d)
from .conv import __all__ as _conv_all
from . import data, nn, optim  # noqa: E402

__version__ = "0.1.0"

__all__ = [
    "SpecError", "MemoryBudgetError", "DtypeError", "Spec", "Term", "Window", "parse",
    "einsum", "backward_specs", "explain", "vjp", "grad", "value_and_grad", "check_grads", "Traced",
    "get_memory_budget", "memory_budget", "set_memory_budget", "keep_freed_memory", "nn",
    "optim", "data",
] + list(_ops_all) + list(_conv_all)
