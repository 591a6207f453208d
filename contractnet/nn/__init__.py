"""Layers built from einsum specs, losses, initialisation and weight conversion.

Every learned layer is a spec (:class:`Einsum`); none has a hand-written
backward.  Modules compute with a parameter dict they are handed, so a
training step is a plain function of that dict::

    >>> import numpy as np, contractnet as cn
    >>> model = cn.nn.Sequential(cn.nn.ContractHead((2, 2, 3), 4, rng=0))
    >>> params = model.parameters()
    >>> opt = cn.optim.SGD(params, lr=0.1)
    >>> x, y = np.ones((5, 2, 2, 3), np.float32), np.array([0, 1, 2, 3, 0])
    >>> def loss_fn(params, x, y):
    ...     return cn.nn.softmax_cross_entropy(model.apply(params, x), y)
    >>> loss, grads = cn.nn.loss_and_grads(loss_fn, params, x, y)
    >>> opt.step(grads)                      # in place: model sees the new weights
    >>> bool(loss_fn(params, x, y) < loss)
    True
"""
from . import init, losses
from .heads import ContractHead, CPHead, FlattenDense, TuckerHead
from .layers import AvgPool2d, Conv2d, Dense, Einsum, MaxPool2d, ReLU
from .losses import accuracy, mse, softmax_cross_entropy
from .module import Module, Sequential, loss_and_grads
from .serialization import load_parameters, save_parameters
from .weights import contraction_weight, flat_weight, flatten_activation

__all__ = [
    "Module", "Sequential", "Einsum", "Dense", "Conv2d", "MaxPool2d", "AvgPool2d", "ReLU",
    "ContractHead", "FlattenDense", "CPHead", "TuckerHead",
    "losses", "init", "softmax_cross_entropy", "mse", "accuracy", "loss_and_grads",
    "flat_weight", "contraction_weight", "flatten_activation",
    "save_parameters", "load_parameters",
]
