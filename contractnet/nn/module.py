"""The :class:`Module` base class, :class:`Sequential`, and the training-step helper.

A module owns its parameters as a flat dict ``name -> ndarray`` and computes
with whatever dict it is handed.  That split is what makes a training step
one call to :func:`contractnet.value_and_grad`: the loss is an ordinary
function of the parameter dict, so the same ``forward`` runs on the module's
own arrays (``model(x)``) and on traced copies of them
(``model.apply(params, x)`` inside :func:`loss_and_grads`)::

    params = model.parameters()                 # live arrays, shared with model
    opt = cn.optim.Adam(params, lr=1e-2)

    def loss_fn(params, x, y):
        return cn.nn.softmax_cross_entropy(model.apply(params, x), y)

    loss, grads = cn.nn.loss_and_grads(loss_fn, params, x, y)
    opt.step(grads)                             # updates the arrays in place
"""
from __future__ import annotations

import os
from typing import Any, Callable, Iterator, Mapping

import numpy as np

import contractnet as cn

from . import serialization
from ..pair import view_key
from ..trace import Traced, value_of

Params = Mapping[str, Any]


class Module:
    """Base class: parameters by name, a functional ``forward``, save and load.

    Subclasses call ``super().__init__()``, register arrays with
    :meth:`add_parameter` and sub-modules with :meth:`add_module`, and
    implement ``forward(params, x)`` reading their parameters from ``params``
    by local name (never from ``self``), so that gradients can flow through.
    A registered sub-module reads back as an attribute of its name where no
    other attribute has it (``self.fc`` after ``add_module("fc", ...)``).
    """

    def __init__(self) -> None:
        self._params: dict[str, np.ndarray] = {}
        self._children: dict[str, Module] = {}

    def __setattr__(self, name: str, value: Any) -> None:
        """Refuse a :class:`Module` assigned to an attribute under a name it is
        not registered by (its parameters would be left out silently), but
        for names starting with ``_`` (a reference that is no layer of this
        one)."""
        if (isinstance(value, Module) and not name.startswith("_")
                and self.__dict__.get("_children", {}).get(name) is not value):
            raise ValueError(f"assigning a Module to {name!r} would leave its parameters out: "
                             f"register it with self.add_module({name!r}, module), which "
                             f"returns it and makes self.{name} read it (after "
                             f"super().__init__(); a reference that is no layer of this one "
                             f"goes in a name starting with '_')")
        if not name.startswith("_") and _unregistered_modules(self, value):
            raise ValueError(f"assigning a container ({type(value).__name__}) holding Modules "
                             f"to {name!r} would leave their parameters out: register them "
                             f"as one layer, self.add_module({name!r}, Sequential(*layers)), "
                             f"or each with self.add_module (a reference to layers "
                             f"registered elsewhere goes in a name starting with '_')")
        object.__setattr__(self, name, value)

    # ------------------------------------------------------------ registry
    def add_parameter(self, name: str, array: np.ndarray) -> np.ndarray:
        """Register ``array`` under ``name``; returns it."""
        self._check_new_name("parameter", name)
        if not isinstance(array, np.ndarray) or not np.issubdtype(array.dtype, np.floating):
            raise ValueError(f"parameter {name!r} must be a floating ndarray")
        self._params[name] = array
        return array

    def add_module(self, name: str, module: Module) -> Module:
        """Register a sub-module; its parameters appear as ``name.<param>``,
        and it reads back as the attribute ``name`` (where no other attribute
        has that name).  Returns ``module``, so ``self.fc =
        self.add_module("fc", Dense(...))`` also works."""
        self._check_new_name("module", name)
        if not isinstance(module, Module):
            if isinstance(module, type) and issubclass(module, Module):
                hint = f"; make one: {module.__name__}(...)"
            elif callable(module):
                hint = "; layers are modules, e.g. cn.nn.ReLU() rather than cn.relu"
            elif isinstance(module, (list, tuple)):
                hint = "; give the layers one by one: Sequential(*layers)"
            else:
                hint = ""
            raise ValueError(f"{name!r} must be a Module, got {type(module).__name__}{hint}")
        self._children[name] = module
        if name not in self.__dict__ and not hasattr(type(self), name):
            object.__setattr__(self, name, module)  # an attribute, where the name is free
        return module

    def _check_new_name(self, kind: str, name: str) -> None:
        """Refuse a parameter or module name that is not a fresh, undotted
        string, and any before ``Module.__init__`` has run."""
        if "_params" not in self.__dict__:
            raise TypeError(f"{type(self).__name__}.__init__ must call super().__init__() "
                            f"before registering {kind} {name!r}")
        if not isinstance(name, str):
            problem = f"is of type {type(name).__name__}, not str"
        elif not name or "." in name:
            problem = "is empty or dotted (dots join a module's name to its children's)"
        elif name in self._params or name in self._children:
            problem = "is already used"
        else:
            return
        raise ValueError(f"{kind} name {name!r} {problem}")

    def named_parameters(self) -> Iterator[tuple[str, np.ndarray]]:
        """Yield ``(dotted name, array)`` for every parameter, children included."""
        yield from self._params.items()
        for child_name, child in self._children.items():
            for name, array in child.named_parameters():
                yield f"{child_name}.{name}", array

    def parameters(self) -> dict[str, np.ndarray]:
        """The parameters as a new dict of the live arrays (not copies).

        Optimizers update these arrays in place, so the module sees each step.
        """
        return dict(self.named_parameters())

    def num_parameters(self) -> int:
        """Total number of scalar parameters; an array held under several names
        (a layer used twice) counts once, as optimizers tie it."""
        distinct = {view_key(a): a for _, a in self.named_parameters()}
        return sum(a.size for a in distinct.values())

    # ------------------------------------------------------------- compute
    def forward(self, params: Params, *inputs: Any) -> Any:
        """Compute the output from ``params`` (local names) and the input(s)."""
        raise NotImplementedError(f"{type(self).__name__} does not define forward")

    def apply(self, params: Params, *inputs: Any) -> Any:
        """Run the module with ``params`` instead of its own arrays.

        Parameters
        ----------
        params : mapping of str to array or Traced
            Exactly the names of :meth:`parameters`, with the same shapes.
        *inputs : ndarray or Traced
            The input (several for a layer with several data operands).

        Returns
        -------
        ndarray or Traced

        Raises
        ------
        ValueError
            If a name is missing or unexpected, a shape differs, or a value
            is not floating point.  A floating dtype other than the
            module's is allowed and computes as numpy promotes (a float64
            check of a float32 model).
        """
        check_parameters(self, params)
        return self.forward(params, *inputs)

    def __call__(self, *inputs: Any) -> Any:
        return self.forward(self.parameters(), *inputs)

    def child_params(self, params: Params, name: str) -> dict[str, Any]:
        """The entries of ``params`` that belong to child ``name``, renamed locally."""
        prefix = name + "."
        child = self._children[name]
        return {local: params[prefix + local] for local, _ in child.named_parameters()}

    # -------------------------------------------------------------- values
    def set_parameters(self, params: Params) -> None:
        """Copy ``params`` into the module's arrays (in place), all or nothing.

        Every value is read before any array is written, so values may be the
        module's own arrays (a swap of two layers' weights).

        Raises
        ------
        ValueError
            If the names, shapes or dtypes (byte order aside) differ from the
            module's, a value cannot be read as an array, two names of one
            tied array are given different values, or a module array is
            read-only; the module is then unchanged.
        """
        check_parameters(self, params, dtypes=True)
        targets = self.parameters()
        values = {}
        for name, array in targets.items():
            if not array.flags.writeable:
                raise ValueError(f"parameter {name!r} of the module is read-only")
            try:
                value = np.asarray(value_of(params[name]))
            except (TypeError, ValueError) as error:
                raise ValueError(f"parameter {name!r} cannot be read as an array: "
                                 f"{error}") from None
            if any(np.may_share_memory(value, t) for t in targets.values()):
                value = value.copy()  # written below before it would be read
            values[name] = value
        # again as read: a value's own shape and dtype may not be its array's
        check_parameters(self, values, dtypes=True)
        _check_tied_values(targets, values)
        for name, array in targets.items():
            np.copyto(array, values[name])

    def save(self, path: str | os.PathLike) -> None:
        """Write the parameters to ``path`` as ``.npz``, atomically."""
        serialization.save_parameters(self.parameters(), path)

    def load(self, path: str | os.PathLike) -> Module:
        """Read parameters saved by :meth:`save` into this module; returns ``self``.

        Raises
        ------
        ValueError
            If the file's names, shapes or dtypes do not match the module;
            the module is then unchanged.
        """
        arrays = serialization.load_parameters(path)
        try:
            self.set_parameters(arrays)
        except ValueError as exc:
            raise ValueError(f"cannot load {os.fsdecode(os.fspath(path))!r} into "
                             f"{type(self).__name__}: {exc}") from exc
        return self

    def extra_repr(self) -> str:
        """The settings :meth:`__repr__` shows between the parentheses."""
        return ""

    def __repr__(self) -> str:
        """``Name(settings)``, then one indented line per child module, if any."""
        head = f"{type(self).__name__}({self.extra_repr()}"
        if not self._children:
            return head + ")"
        lines = [f"  ({name}): " + repr(child).replace("\n", "\n  ")
                 for name, child in self._children.items()]
        return head + "\n" + "\n".join(lines) + "\n)"


def _check_tied_values(targets: Mapping[str, np.ndarray], values: Mapping[str, np.ndarray]
                       ) -> None:
    """Refuse two different values for one tied array (names that hold the
    same elements, a layer used twice): one of them would be lost."""
    first: dict[tuple, str] = {}
    for name, array in targets.items():
        earlier = first.setdefault(view_key(array), name)  # as num_parameters ties them
        if earlier != name and not np.array_equal(values[earlier], values[name],
                                                  equal_nan=True):
            raise ValueError(f"parameters {earlier!r} and {name!r} are one tied array "
                             f"(a layer used twice) but were given different values")


def check_parameters(module: Module, params: Params, dtypes: bool = False) -> None:
    """Raise ValueError unless ``params`` has the module's names and shapes, in
    a floating dtype (with ``dtypes``, the module's own, byte order aside)."""
    if not isinstance(params, Mapping):
        raise ValueError("parameters must be a mapping of name to array, "
                         f"got {type(params).__name__}")
    expected = module.parameters()
    missing = [n for n in expected if n not in params]
    unexpected = [n for n in params if n not in expected]
    if missing or unexpected:
        raise ValueError(f"parameters do not match {type(module).__name__}: "
                         f"missing {missing}, unexpected {unexpected}")
    for name, array in expected.items():
        got = params[name]
        if not hasattr(got, "shape") or not hasattr(got, "dtype"):
            raise ValueError(f"parameter {name!r} must be an array, got {type(got).__name__}")
        if tuple(got.shape) != array.shape:
            raise ValueError(f"parameter {name!r} has shape {tuple(got.shape)} "
                             f"but the module expects {array.shape}")
        dtype = _dtype_of(name, got)
        # byte order aside: an .npz written on a big-endian machine holds >f4
        if dtypes and dtype.newbyteorder("=") != array.dtype.newbyteorder("="):
            raise ValueError(f"parameter {name!r} has dtype {got.dtype} "
                             f"but the module expects {array.dtype}")
        if dtype.kind != "f":  # an integer weight would make the output float64
            raise ValueError(f"parameter {name!r} has dtype {got.dtype}; parameters "
                             f"must be floating point")


def _dtype_of(name: str, value: Any) -> np.dtype:
    """``value.dtype`` as a numpy dtype; a ValueError naming ``name`` if it is none."""
    try:
        return np.dtype(value.dtype)
    except TypeError:  # another library's dtype (a torch tensor)
        raise ValueError(f"parameter {name!r} has dtype {value.dtype!r}, which is not a "
                         f"numpy dtype; pass a numpy array") from None


def _unregistered_modules(owner: Module, value: Any) -> bool:
    """Whether ``value`` is a list, tuple, set or dict holding, at any depth, a
    :class:`Module` that is not one of ``owner``'s registered layers: one
    whose parameters :meth:`Module.parameters` would not see.  (A container
    filled after it is assigned is not seen here.)"""
    if not isinstance(value, (list, tuple, set, frozenset, dict)):
        return False  # the common case, at once
    registered = {id(child) for child in owner.__dict__.get("_children", {}).values()}
    stack, seen = [value], set()
    while stack:
        item = stack.pop()
        if isinstance(item, Module):
            if id(item) not in registered:
                return True
        elif isinstance(item, (list, tuple, set, frozenset, dict)) and id(item) not in seen:
            seen.add(id(item))  # a container holding itself is walked once
            stack.extend(item.values() if isinstance(item, dict) else item)
    return False


class Sequential(Module):
    """Layers applied in order; parameters are named ``"<position>.<name>"``.

    Parameters
    ----------
    *layers : Module
        The first is called on the inputs (several, for a layer that takes
        several), each next one on the previous one's output (with no
        layers, the one input is returned as it is).  A layer given twice
        shares its arrays under both positions' names.

    Raises
    ------
    ValueError
        If a layer is not a :class:`Module`.

    Examples
    --------
    >>> import numpy as np, contractnet as cn
    >>> rng = np.random.default_rng(0)
    >>> net = cn.nn.Sequential(cn.nn.Dense(4, 3, rng=rng), cn.nn.ReLU())
    >>> sorted(net.parameters())
    ['0.bias', '0.weight']
    """

    def __init__(self, *layers: Module) -> None:
        super().__init__()
        for i, layer in enumerate(layers):
            self.add_module(str(i), layer)

    def forward(self, params: Params, x: Any, *more: Any) -> Any:
        xs = (x, *more)  # several for a first layer that takes several
        if not self._children:
            if more:
                raise ValueError(f"a Sequential with no layers takes one input, got {len(xs)}")
            return x
        for name, layer in self._children.items():
            xs = (layer.forward(self.child_params(params, name), *xs),)
        return xs[0]

    def __getitem__(self, i: int | slice) -> Module:
        """The layer at position ``i``; a slice is a :class:`Sequential` of
        those layers (sharing their arrays: a feature extractor, say)."""
        layers = list(self._children.values())
        return Sequential(*layers[i]) if isinstance(i, slice) else layers[i]

    def __len__(self) -> int:
        return len(self._children)

    def __iter__(self) -> Iterator[Module]:
        return iter(self._children.values())


def loss_and_grads(loss_fn: Callable[..., Any], params: Params, *args: Any
                   ) -> tuple[np.ndarray, dict[str, np.ndarray]]:
    """Value and gradient of ``loss_fn(params, *args)`` with respect to ``params``.

    Only the parameter arrays are differentiated; ``args`` (inputs, integer
    labels) are passed through untouched.

    Parameters
    ----------
    loss_fn : callable
        ``loss_fn(params, *args)`` returning a 0-d value.
    params : mapping of str to ndarray
        Floating arrays, e.g. ``module.parameters()``.
    *args
        Further arguments of ``loss_fn``.

    Returns
    -------
    loss : ndarray
        The 0-d loss value.
    grads : dict of str to ndarray
        One gradient per parameter, same names, shapes and dtypes (zeros for
        a parameter the loss does not read).

    Raises
    ------
    ValueError
        If ``params`` is empty, or the loss reads none of them (a loss that
        calls ``model(x)``, which runs on the model's own arrays, instead of
        ``model.apply(params, x)``).

    Examples
    --------
    >>> import numpy as np, contractnet as cn
    >>> params = {"w": np.array([1.0, 2.0])}
    >>> loss, grads = cn.nn.loss_and_grads(lambda p, s: cn.sum(p["w"] * p["w"]) * s, params, 3.0)
    >>> float(loss), grads["w"].tolist()
    (15.0, [6.0, 12.0])
    """
    if not isinstance(params, Mapping) or not params:
        got = "" if isinstance(params, Mapping) else f", got {type(params).__name__}"
        if hasattr(params, "parameters"):  # a module
            got += "; pass its .parameters()"
        raise ValueError(f"loss_and_grads needs a non-empty dict of name -> array{got}")

    def traced_loss(traced_params: dict[str, Any], *rest: Any) -> Any:
        loss = loss_fn(traced_params, *rest)
        if type(loss) is not Traced:
            raise ValueError(
                "the loss does not depend on params, so every gradient would be 0: "
                "inside the loss, run the model on the params it is given "
                "(model.apply(params, x)), not on its own arrays (model(x))")
        return loss
    value, grads = cn.value_and_grad(traced_loss, argnums=0)(dict(params), *args)
    return value, grads
