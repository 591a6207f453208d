"""Checks of the plain arguments users pass (counts, seeds, flags, dtypes),
with one wording for each kind: a ``ValueError`` naming the argument and
quoting what was given; and :class:`Once`, the command line's refusal of an
option given twice.
"""
from __future__ import annotations

import argparse
import operator
from typing import Any

import numpy as np


def is_int(value: Any) -> bool:
    """True for a Python or numpy integer; a bool is not one.

    >>> is_int(3), is_int(np.int8(3)), is_int(True), is_int(3.0)
    (True, True, False, False)
    """
    return isinstance(value, (int, np.integer)) and not isinstance(value, bool)


def as_index(value: Any) -> int | None:
    """``value`` as an int where it is one: a Python or numpy integer, or a
    0-d integer array, but not a bool; None for anything else.

    >>> as_index(3), as_index(np.array(3)), as_index(True), as_index(np.array([3]))
    (3, 3, None, None)
    """
    if isinstance(value, (bool, np.bool_)):
        return None
    try:
        return operator.index(value)
    except TypeError:
        return None


def as_flag(value: Any, name: str) -> bool:
    """``value`` as a bool when it is a Python or numpy bool; a ValueError
    naming ``name`` for anything else (``"no"`` and ``0`` are not read as false).

    >>> as_flag(np.True_, "bias")
    True
    """
    if not isinstance(value, (bool, np.bool_)):
        raise ValueError(f"{name} must be True or False, got {value!r}")
    return bool(value)


def positive_int(value: Any, name: str) -> int:
    """``value`` as an int ``>= 1``; a ValueError naming ``name`` otherwise."""
    if not is_int(value) or value < 1:
        raise ValueError(f"{name} must be a positive integer, got {value!r}")
    return int(value)


def non_negative_int(value: Any, name: str, none_ok: bool = False) -> int | None:
    """``value`` as an int ``>= 0`` (a seed, say), or None where ``none_ok``;
    a ValueError naming ``name`` otherwise."""
    if value is None and none_ok:
        return None
    if not is_int(value) or value < 0:
        allowed = "a non-negative integer or None" if none_ok else "a non-negative integer"
        raise ValueError(f"{name} must be {allowed}, got {value!r}")
    return int(value)


def real_number(value: Any, name: str) -> float:
    """``value`` as a float when it is a real number (an int, a float, or a
    numpy number or 0-d array of one); a ValueError naming ``name`` for
    anything else, whatever ``float()`` makes of it (a string, a bool, a
    complex number, a time, None) and for an int past float's range.

    >>> real_number(np.float32(0.5), "lr")
    0.5
    """
    try:
        if isinstance(value, (str, bytes, bool, complex)) or \
                (isinstance(value, (np.ndarray, np.generic)) and value.dtype.kind not in "iuf"):
            raise TypeError
        return float(value)
    except (TypeError, ValueError):
        raise ValueError(f"{name} must be a real number, got {value!r}") from None
    except OverflowError:
        raise ValueError(f"{name} is an integer too large for a float") from None


def finite_in(value: float, dtype: np.dtype) -> bool:
    """Whether ``value`` is finite once cast to ``dtype`` (1e5 is not in float16).

    >>> finite_in(1e5, np.dtype(np.float16)), finite_in(1e5, np.dtype(np.float32))
    (False, True)
    """
    with np.errstate(over="ignore"):
        return bool(np.isfinite(dtype.type(value)))


def floating_dtype(dtype: Any, name: str = "dtype") -> np.dtype:
    """``np.dtype(dtype)`` when it is a floating dtype; a ValueError naming
    ``name`` for anything else, including what numpy cannot read as a dtype.

    >>> floating_dtype("float32")
    dtype('float32')
    """
    try:  # None, which numpy reads as float64, is refused: contractnet's default is float32
        dt = np.dtype(dtype) if dtype is not None else None
    except TypeError:
        dt = None
    if dt is None:
        raise ValueError(f"{name} must be a floating dtype, got {dtype!r}")
    if not np.issubdtype(dt, np.floating):
        raise ValueError(f"{name} must be a floating dtype, got {dt}")
    return dt


def int_option(minimum: int, maximum: int | None = None):
    """An argparse ``type`` reading an option's text as an int in
    ``[minimum, maximum]``; argparse turns its refusal into a one-line error
    naming the option.

    >>> int_option(1)("3")
    3
    """
    def read(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text!r} is not an integer") from None
        if value < minimum or (maximum is not None and value > maximum):
            bound = f"at least {minimum}" if maximum is None else \
                f"between {minimum} and {maximum}"
            raise argparse.ArgumentTypeError(f"must be {bound}, got {value}")
        return value
    return read


#: The namespace attribute where :class:`Once` notes the options given (by dest).
GIVEN_ATTRIBUTE = "_options_given"


class Once(argparse.Action):
    """An option's value stored, the option refused a second time (argparse
    would keep the last and drop the first silently).  The options seen are
    noted on the namespace (:data:`GIVEN_ATTRIBUTE`), so an option with a default is
    refused the same way."""

    def __call__(self, parser, namespace, values, option_string=None):
        given = vars(namespace).setdefault(GIVEN_ATTRIBUTE, set())
        if self.dest in given:
            parser.error(f"{option_string} was given twice; give it once")
        given.add(self.dest)
        setattr(namespace, self.dest, values)
