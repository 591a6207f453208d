"""Weight initialisation with an explicit random generator and dtype.

A weight larger than the memory budget (:mod:`contractnet.budget`) is
refused before it is drawn, counted in the wider of its dtype and the one
it is drawn in.

Every function draws from the ``np.random.Generator`` it is given, in the
requested dtype when the generator draws it (float32, float64), else in
the nearest one it does, then cast (float16 from float32, longdouble from
float64), so that a seed fixes the weights and float32 models never hold
float64 temporaries.

For a learned spec, :func:`spec_fans` reads fan-in and fan-out off the index
names: the fan-in is the product of the sizes of the weight indices summed
against the input, the fan-out that of the weight indices kept in the output
and of window offsets.
"""
from __future__ import annotations

import math
from typing import Mapping, Sequence

import numpy as np

from ..arguments import (finite_in, floating_dtype, is_int, non_negative_int, positive_int,
                         real_number)
from ..budget import check_allocation
from ..spec import Spec

SCHEMES = ("he", "glorot")


def as_generator(rng: np.random.Generator | int | None) -> np.random.Generator:
    """Accept a Generator, an int seed, or None (fresh entropy).

    Raises
    ------
    ValueError
        If ``rng`` is anything else (a legacy ``RandomState`` included).
    """
    if isinstance(rng, np.random.Generator):
        return rng
    if rng is None or is_int(rng):
        return np.random.default_rng(non_negative_int(rng, "rng as a seed", none_ok=True))
    raise ValueError(f"rng must be a numpy Generator, an int seed or None, got {rng!r}")


def normal(shape: Sequence[int], std: float, *, rng: np.random.Generator | int | None,
           dtype: np.dtype | type | str = np.float32) -> np.ndarray:
    """Draw ``N(0, std**2)`` in ``dtype`` (``rng`` as :func:`as_generator` takes it).

    Raises
    ------
    ValueError
        For a ``std`` that is not a finite real number >= 0 in ``dtype``,
        or an ``rng`` :func:`as_generator` refuses; nothing is drawn then.

    Examples
    --------
    >>> import numpy as np
    >>> from contractnet.nn.init import normal
    >>> w = normal((3, 2), 0.1, rng=np.random.default_rng(0))
    >>> w.dtype, w.shape
    (dtype('float32'), (3, 2))
    """
    dt, draw_dt = _draw_dtypes(shape, dtype)
    std = _scale(std, "std", dt)
    out = as_generator(rng).standard_normal(tuple(shape), dtype=draw_dt).astype(dt, copy=False)
    out *= dt.type(std)
    return out


def uniform(shape: Sequence[int], limit: float, *, rng: np.random.Generator | int | None,
            dtype: np.dtype | type | str = np.float32) -> np.ndarray:
    """Draw ``U(-limit, limit)`` in ``dtype`` (``rng`` as :func:`as_generator` takes it).

    Raises
    ------
    ValueError
        For a ``limit`` that is not a finite real number >= 0 whose double
        is finite in ``dtype``, or an ``rng`` :func:`as_generator` refuses;
        nothing is drawn then.
    """
    dt, draw_dt = _draw_dtypes(shape, dtype)
    limit = _scale(limit, "limit", dt, factor=2)  # the draw is scaled by 2 * limit
    out = as_generator(rng).random(tuple(shape), dtype=draw_dt).astype(dt, copy=False)
    out *= dt.type(2 * limit)
    out -= dt.type(limit)
    return out


def _scale(value: float, name: str, dt: np.dtype, factor: float = 1) -> float:
    """``value`` as a float: a finite real number >= 0 with ``factor * value``
    finite in ``dt`` (so the draw it scales holds no infinity or nan)."""
    number = real_number(value, name)
    if not (math.isfinite(number) and number >= 0):
        raise ValueError(f"{name} must be a finite number >= 0, got {number}")
    if not finite_in(factor * number, dt):
        raise ValueError(f"{name}={number:g} is too large for {dt}: the weights would "
                         f"hold infinities")
    return number


def _draw_dtypes(shape: Sequence[int], dtype) -> tuple[np.dtype, np.dtype]:
    """The weight's dtype and the one the generator draws it in (it draws
    float32 and float64 only: float16 comes from float32, longdouble from
    float64), once the larger of the two arrays is checked against the
    memory budget."""
    dt = floating_dtype(dtype)
    native = dt.newbyteorder("=")  # a byte-swapped float32 is drawn as float32
    draw_dt = (native if native in (np.float32, np.float64)
               else np.dtype(np.float32) if dt.itemsize < 4 else np.dtype(np.float64))
    if draw_dt.itemsize > dt.itemsize:
        check_allocation(shape, draw_dt, f"the {draw_dt} draw of a {dt} weight")
    else:
        check_allocation(shape, dt, "a weight")
    return dt, draw_dt


def he_normal(shape: Sequence[int], fan_in: int, *, rng: np.random.Generator,
              dtype: np.dtype | type | str = np.float32) -> np.ndarray:
    """He initialisation for ReLU nets: ``N(0, 2 / fan_in)``.

    Examples
    --------
    >>> import numpy as np
    >>> from contractnet.nn.init import he_normal
    >>> w = he_normal((1000, 50), 1000, rng=np.random.default_rng(0))
    >>> round(float(w.std()) * 1000 ** 0.5, 1)
    1.4
    """
    _check_fan(fan_in, "fan_in")
    return normal(shape, math.sqrt(2.0 / fan_in), rng=rng, dtype=dtype)


def glorot_uniform(shape: Sequence[int], fan_in: int, fan_out: int, *,
                   rng: np.random.Generator,
                   dtype: np.dtype | type | str = np.float32) -> np.ndarray:
    """Glorot (Xavier) initialisation: ``U(-a, a)``, ``a = sqrt(6 / (fan_in + fan_out))``."""
    _check_fan(fan_in, "fan_in")
    _check_fan(fan_out, "fan_out")
    return uniform(shape, math.sqrt(6.0 / (fan_in + fan_out)), rng=rng, dtype=dtype)


def zeros(shape: Sequence[int], dtype: np.dtype | type | str = np.float32) -> np.ndarray:
    """Zeros in a floating ``dtype`` (biases)."""
    check_allocation(shape, floating_dtype(dtype), "a weight")
    return np.zeros(tuple(shape), dtype=floating_dtype(dtype))


def _check_fan(fan: int, name: str) -> None:
    positive_int(fan, name)


def spec_fans(spec: Spec, sizes: Mapping[str, int], inputs: Sequence[int] = (0,)
              ) -> tuple[int, int, int]:
    """Fan-in, fan-out and number of summed products of a learned spec.

    The operands at positions ``inputs`` are the data, every other operand
    a weight.  Fan-in counts the weights' indices the data is summed over;
    fan-out those the weights add to the output, and a window's offsets (a
    data element reaches one output per offset: a ``KH x KW`` conv's fans
    are ``KH*KW*C`` and ``KH*KW*K``, as Keras and PyTorch count them).  The
    third number counts the indices found only in weights (ranks of a
    factorised weight): the effective weight is a sum of that many products
    of weight entries.

    Examples
    --------
    >>> from contractnet.spec import parse
    >>> spec_fans(parse("bnmd,nr,mr,dr,kr->bk"), dict(n=4, m=4, d=16, k=10, r=8))
    (256, 10, 8)
    >>> spec_fans(parse("b(h+u)(w+v)c,uvck->bhwk"), dict(u=3, v=3, c=2, k=8))
    (18, 72, 1)
    """
    data = [t for i, t in enumerate(spec.inputs) if i in inputs]
    x_idx = {i for term in data for i in term.indices()}
    offsets = {w.inner for term in data for w in term.windows}
    out_idx = set(spec.output.indices())
    w_idx = {i for k, term in enumerate(spec.inputs) if k not in inputs for i in term.indices()}
    prod = lambda names: math.prod(sizes[i] for i in names)  # noqa: E731
    return (prod(w_idx & (x_idx - out_idx)), prod(w_idx & ((out_idx - x_idx) | offsets)),
            prod(w_idx - x_idx - out_idx))


def spec_weights(spec: Spec, sizes: Mapping[str, int], scheme: str, *,
                 rng: np.random.Generator, dtype: np.dtype | type | str = np.float32,
                 inputs: Sequence[int] = (0,)) -> list[np.ndarray]:
    """Initial arrays for every weight operand (those not at positions
    ``inputs``, in order) of a learned spec.

    One weight gets the plain scheme.  With several weights (a factorised
    weight) each is normal with the same std, chosen so that the effective
    weight's variance equals the scheme's target.
    """
    if scheme not in SCHEMES:
        raise ValueError(f"unknown init scheme {scheme!r}; choose one of {SCHEMES}")
    fan_in, fan_out, terms = spec_fans(spec, sizes, inputs)
    shapes = [tuple(sizes[i] for i in term.indices())
              for k, term in enumerate(spec.inputs) if k not in inputs]
    for shape in shapes:  # all before the first draw: a refusal leaves ``rng`` untouched
        _draw_dtypes(shape, dtype)
    if len(shapes) == 1 and scheme == "glorot":
        return [glorot_uniform(shapes[0], fan_in, fan_out, rng=rng, dtype=dtype)]
    if len(shapes) == 1:
        return [he_normal(shapes[0], fan_in, rng=rng, dtype=dtype)]
    target = 2.0 / fan_in if scheme == "he" else 2.0 / (fan_in + fan_out)
    std = (target / terms) ** (1.0 / (2 * len(shapes)))
    return [normal(shape, std, rng=rng, dtype=dtype) for shape in shapes]
