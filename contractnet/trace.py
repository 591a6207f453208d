"""Tracing: values that remember how they were computed.

A :class:`Traced` wraps an ndarray and the :class:`Node` that produced it.
A :class:`Primitive` runs its function on plain values and, when any
argument is traced, records a node; :mod:`contractnet.autodiff` walks the
nodes backwards with one table of vjp rules.
"""
from __future__ import annotations

import functools
import itertools
from typing import Any, Callable, Iterator

import numpy as np

from .pytree import flatten_tree


class Node:
    """One recorded primitive call: the function, its plain arguments, the
    traced arguments it depends on as ``(position, Traced)`` pairs, and a
    serial number.  Serials increase with every call, so a node's parents
    always have smaller ones: visiting nodes in decreasing serial order is a
    reverse topological order."""

    __slots__ = ("primitive", "args", "kwargs", "parents", "serial")

    def __init__(self, primitive: "Primitive", args: tuple, kwargs: dict, parents: list):
        self.primitive = primitive
        self.args = args
        self.kwargs = kwargs
        self.parents = parents
        self.serial = next(_serials)

    def __repr__(self) -> str:
        return f"<node {self.serial}: {self.primitive.name}>"


_serials = itertools.count()


class Primitive:
    """A function whose vjp is one entry of the rule table.

    Calling it with traced arguments records a :class:`Node`; with plain
    arguments it is the plain function.
    """

    def __init__(self, fn: Callable, name: str | None = None):
        self.fn = fn
        self.name = name or fn.__name__
        # read as the function it wraps (help(), doctest's search of its module)
        functools.update_wrapper(self, fn)

    def __repr__(self) -> str:
        return f"<primitive {self.name}>"

    def __reduce__(self) -> str:
        # pickled, and copied, as the module attribute it is: a copy would be no
        # key of the rule table (autodiff.VJP_RULES) and have no vjp
        return self.__qualname__

    def __call__(self, *args: Any, **kwargs: Any):
        parents = values = None
        i = 0
        for a in args:
            if type(a) is Traced:  # Traced is final: no subclass to look for
                if parents is None:
                    parents, values = [], list(args)
                parents.append((i, a))
                values[i] = a.value
            i += 1
        for name, v in kwargs.items():  # usually none
            if type(v) is Traced:
                raise TypeError(f"cn.{self.name}: pass the traced value {name}= by position; "
                                f"keyword arguments are not traced")
        if parents is None:
            try:
                return self.fn(*args, **kwargs)
            except TypeError:  # a list of traced values, which numpy cannot read
                held = next((a for a in args if holds_traced(a)), None)
                if held is not None:
                    raise traced_list_error(f"cn.{self.name}: an argument", held) from None
                raise
        values = tuple(values)
        return Traced(self.fn(*values, **kwargs), Node(self, values, kwargs, parents))


def holds_traced(x: Any) -> bool:
    """Whether ``x`` is a list or tuple (nested or not) holding traced values."""
    return isinstance(x, (list, tuple)) and any(type(v) is Traced for v in flatten_tree(x)[0])


def traced_list_error(what: str, held: list | tuple) -> TypeError:
    """The error for ``what``, a list or tuple of traced values given where an
    array was wanted (a list primal is traced element by element)."""
    return TypeError(f"{what} is a {type(held).__name__} of traced values, not an array; "
                     f"make it one with cn.stack (a list given as a primal is traced element "
                     f"by element)")


def primitive(fn: Callable) -> Primitive:
    """Decorator: make ``fn`` a :class:`Primitive`."""
    return Primitive(fn)


class Traced:
    """An array value recorded for differentiation.

    Supports the usual operators (``+ - * / ** @``, unary ``-``, ``abs()``,
    ``[]``, ``.T``), with an ndarray or a numpy scalar on either side, the
    methods ``reshape``, ``transpose``, ``sum``, ``mean``, ``max``, ``min``,
    ``astype``, ``ravel``, ``flatten`` and ``squeeze``, and
    ``.shape``/``.dtype``/``.ndim``; ``.value`` is the ndarray.  numpy's
    functions and other ufuncs do not trace: they raise a ``TypeError``
    naming contractnet's own.
    """

    __slots__ = ("value", "node")

    def __init__(self, value: Any, node: Node | None = None):
        self.value = value if type(value) is np.ndarray else np.asarray(value)
        self.node = node

    def __init_subclass__(cls, **kwargs: Any):
        raise TypeError("Traced cannot be subclassed (tracing tests its exact type)")

    def __repr__(self) -> str:
        return f"Traced({self.value!r})"

    shape = property(lambda self: self.value.shape)
    dtype = property(lambda self: self.value.dtype)
    ndim = property(lambda self: self.value.ndim)
    size = property(lambda self: self.value.size)
    T = property(lambda self: ops.transpose(self))

    def __len__(self) -> int:
        return len(self.value)

    def __iter__(self) -> Iterator["Traced"]:
        """The traced rows ``self[0], self[1], ...``; a 0-d value is refused, as
        numpy refuses it (iterating through ``__getitem__`` would end silently)."""
        if self.value.ndim == 0:
            raise TypeError("iteration over a 0-d traced value")
        return (self[i] for i in range(len(self.value)))

    def __bool__(self) -> bool:
        return bool(self.value)  # numpy's rule: one element, else ambiguous

    def __array__(self, dtype=None, copy=None):
        raise TypeError("a traced value cannot become a numpy array: inside a function "
                        "being differentiated use contractnet's ops; .value is the plain "
                        "array (which stops tracing)")

    def _to_python(self, *args: Any) -> Any:
        raise TypeError("a traced value cannot become a Python number (float(), int(), "
                        "the math module): inside a function being differentiated use "
                        "contractnet's ops; .value is the plain array (which stops tracing)")

    __float__ = __int__ = __complex__ = _to_python

    def __setitem__(self, index: Any, value: Any) -> None:
        raise TypeError("a traced value cannot be changed in place: build a new one "
                        "(cn.where, cn.concatenate, cn.pad)")

    def __array_ufunc__(self, ufunc, method, *inputs, **kwargs):
        # an operator with an ndarray or numpy scalar on the left (x + t) reaches
        # here as a ufunc call: the ufuncs of Python's operators trace, as the
        # operators do; any other ufunc call is refused
        op = ops.OPERATOR_UFUNCS.get(ufunc) if method == "__call__" else None
        name = ufunc.__name__ if method == "__call__" else f"{ufunc.__name__}.{method}"
        if op is None:
            raise TypeError(f"numpy.{name} does not trace; inside a function being "
                            f"differentiated use {_replacement_for(name)}")
        if "out" in kwargs:
            raise TypeError(f"numpy.{name} cannot write a traced value into an array "
                            f"(out=, or an in-place operator such as x += t); make a new "
                            f"value instead, e.g. x = x + t")
        if kwargs:
            given = ", ".join(f"{k}=" for k in kwargs)
            raise TypeError(f"numpy.{name} with {given} does not trace; call it without "
                            f"{'it' if len(kwargs) == 1 else 'them'}, or use its operator")
        return op(*inputs)

    def __array_function__(self, func, types, args, kwargs):
        where = getattr(func, "__module__", None) or "numpy"  # numpy.linalg.norm, say
        raise TypeError(f"{where}.{func.__name__} does not trace; inside a function being "
                        f"differentiated use {_replacement_for(func.__name__)}")

    def __add__(self, other): return ops.add(self, other)
    def __radd__(self, other): return ops.add(other, self)
    def __sub__(self, other): return ops.subtract(self, other)
    def __rsub__(self, other): return ops.subtract(other, self)
    def __mul__(self, other): return ops.multiply(self, other)
    def __rmul__(self, other): return ops.multiply(other, self)
    def __truediv__(self, other): return ops.divide(self, other)
    def __rtruediv__(self, other): return ops.divide(other, self)
    def __pow__(self, other): return ops.power(self, other)
    def __rpow__(self, other): return ops.power(other, self)
    def __matmul__(self, other): return ops.matmul(self, other)
    def __rmatmul__(self, other): return ops.matmul(other, self)
    def __neg__(self): return ops.negative(self)
    def __pos__(self): return self
    def __abs__(self): return ops.absolute(self)
    def __getitem__(self, index): return ops.getitem(self, index)

    # comparisons are not differentiable: they answer with plain arrays
    __hash__ = object.__hash__

    def __eq__(self, other): return self.value == value_of(other)
    def __ne__(self, other): return self.value != value_of(other)
    def __lt__(self, other): return self.value < value_of(other)
    def __le__(self, other): return self.value <= value_of(other)
    def __gt__(self, other): return self.value > value_of(other)
    def __ge__(self, other): return self.value >= value_of(other)

    def reshape(self, *shape):
        """Differentiable :func:`contractnet.reshape`."""
        return ops.reshape(self, shape[0] if len(shape) == 1 else shape)

    def transpose(self, *axes):
        """Differentiable :func:`contractnet.transpose` (array axes)."""
        return ops.transpose(self, axes[0] if len(axes) == 1 else (axes or None))

    def astype(self, dtype) -> "Traced":
        """Differentiable :func:`contractnet.astype`."""
        return ops.astype(self, dtype)

    def ravel(self) -> "Traced":
        """The elements as one axis (differentiable :func:`contractnet.reshape`)."""
        return ops.reshape(self, -1)

    flatten = ravel

    def squeeze(self, axis: int | tuple[int, ...] | None = None) -> "Traced":
        """Drop axes of length 1 (all, or those of ``axis``), as numpy does."""
        return ops.reshape(self, np.squeeze(self.value, axis).shape)

    @property
    def real(self) -> "Traced":
        """Differentiable :func:`contractnet.real`."""
        return ops.real(self)

    @property
    def imag(self) -> "Traced":
        """Differentiable :func:`contractnet.imag`."""
        return ops.imag(self)

    def conj(self) -> "Traced":
        """Differentiable :func:`contractnet.conj`."""
        return ops.conj(self)

    conjugate = conj

    def sum(self, axis=None, keepdims=False): return ops.sum(self, axis, keepdims)
    def mean(self, axis=None, keepdims=False): return ops.mean(self, axis, keepdims)
    def max(self, axis=None, keepdims=False): return ops.max(self, axis, keepdims)
    def min(self, axis=None, keepdims=False): return ops.min(self, axis, keepdims)


def _not_traced(name: str) -> property:
    """What a traced value has for an ndarray method or attribute of its own
    it lacks: a property raising an ``AttributeError`` that says what to use
    instead (a property, not ``__getattr__``, which would slow every lookup
    of ``value`` and ``node``; ``hasattr`` stays false)."""
    kind = "method" if callable(getattr(np.ndarray, name)) else "attribute"

    def refuse(self: "Traced") -> None:
        raise AttributeError(f"a traced value has no {kind} {name!r} (ndarray's does not "
                             f"trace): to differentiate through it use "
                             f"{_replacement_for(name)}; .value.{name} is the plain "
                             f"array's (which stops tracing)")
    return property(refuse)


for _name in dir(np.ndarray):
    if not _name.startswith("_") and not hasattr(Traced, _name):
        setattr(Traced, _name, _not_traced(_name))
del _name


def array_or_traced(x: Any) -> Any:
    """``x`` itself when traced, else ``x`` as an ndarray (a list, a scalar)."""
    return x if type(x) is Traced else np.asarray(x)


def _replacement_for(numpy_name: str) -> str:
    """What to use on a traced value instead of numpy's ``numpy_name``: the
    contractnet function of that name (or of its equivalent), or a short
    composition of them, where there is one."""
    import contractnet  # complete by the time a traced value meets numpy
    own = ops.CN_EQUIVALENTS.get(numpy_name, numpy_name)
    if own in contractnet.__all__:
        return f"cn.{own}"
    return ops.CN_COMPOSITIONS.get(numpy_name, "contractnet's own operations")


def value_of(x: Any) -> Any:
    """The plain value of ``x`` (unwraps a :class:`Traced`)."""
    return x.value if isinstance(x, Traced) else x


from . import ops  # noqa: E402  (ops builds on Primitive and Traced)
