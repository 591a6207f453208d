"""Parse einsum spec text into an immutable :class:`Spec`.

The grammar is numpy's (explicit or implicit output, ``...``, repeated
indices, 0-d operands, spaces) plus windowed groups such as ``(2h+u)``,
which index one axis at ``stride*h + dilation*u``.

This module touches no arrays: only strings, ints and shapes.
"""
from __future__ import annotations

import operator
import unicodedata
from dataclasses import dataclass
from functools import cached_property, lru_cache
from typing import Iterable, Sequence, Union

ELLIPSIS = "..."
#: The largest stride or dilation a window may have: a step in memory this
#: many elements long must still fit numpy's 64-bit strides.
MAX_COEFFICIENT = 2**31 - 1
#: The digits of a window coefficient (``str.isdigit`` also takes '²' and '２').
_ASCII_DIGITS = frozenset("0123456789")


class SpecError(ValueError):
    """A malformed spec, or operands that do not fit it.

    The message quotes the spec and, where one position is to blame, puts a
    caret under it::

        SpecError: index 'k' has size 10 in operand 1 but 12 in operand 2
          bnmd,nmdk,k->bk
                    ^
    """

    def __init__(self, message: str, spec: str | None = None, position: int | None = None,
                 unsized: str | None = None):
        self.reason = message
        self.spec = spec
        self.position = position
        #: The index whose missing size is the culprit, if that is the error.
        self.unsized = unsized
        text = message
        if spec is not None:
            shown = [_shown_char(ch) for ch in spec]
            text += "\n  " + "".join(shown)
            if position is not None:
                column = sum(_columns(ch) for ch in shown[:position])
                text += "\n  " + " " * column + "^"
        super().__init__(text)


def as_written(error: SpecError, text: object) -> SpecError:
    """``error`` quoting ``text``, the spec as the caller typed it, where it
    quotes the spec normalised (spaces dropped, an implicit output written
    out) and its caret falls in what was typed; else (``text`` a parsed
    :class:`Spec`, say) ``error`` itself.

    >>> error = as_written(SpecError("index 'j'", "ij,jk->ik", 3), "ij , jk -> ik")
    >>> error.spec, error.position
    ('ij , jk -> ik', 5)
    """
    if (type(error) is not SpecError or type(text) is not str or error.spec is None
            or error.spec == text):
        return error
    typed = [i for i, ch in enumerate(text) if ch != " "]
    if not error.spec.startswith("".join(text[i] for i in typed)):
        return error  # a window spelled otherwise ('2*h'), a step's spec: as it is
    position = error.position
    if position is not None:
        if position >= len(typed):  # in an output the caller left implicit
            return error
        position = typed[position]
    return SpecError(error.reason, text, position, error.unsized)


def _shown_char(ch: str) -> str:
    """``ch`` as a spec's quoted line shows it: a control character (a newline,
    a tab) or a combining mark, which would move the caret off its column,
    as its escape."""
    if ch.isprintable() and not unicodedata.combining(ch):
        return ch
    return ch.encode("unicode_escape").decode("ascii")


def _columns(shown: str) -> int:
    """Terminal columns of a shown character (two for a wide one, such as 'ｉ')."""
    if len(shown) == 1 and unicodedata.east_asian_width(shown) in "WF":
        return 2
    return len(shown)


@dataclass(frozen=True)
class Window:
    """A windowed axis ``(stride*outer + dilation*inner)``.

    >>> str(Window("h", "u", stride=2))
    '(2h+u)'
    """

    outer: str
    inner: str
    stride: int = 1
    dilation: int = 1

    def __str__(self) -> str:
        s = "" if self.stride == 1 else str(self.stride)
        d = "" if self.dilation == 1 else str(self.dilation)
        return f"({s}{self.outer}+{d}{self.inner})"

    def span(self, outer_size: int, inner_size: int) -> int:
        """Smallest axis length that holds every position of the window (0 when
        it has no position)."""
        if outer_size < 1 or inner_size < 1:
            return 0
        return self.stride * (outer_size - 1) + self.dilation * (inner_size - 1) + 1

    def outer_extent(self, length: int, inner_size: int) -> int:
        """How many window positions fit an axis of ``length`` (may be <= 0)."""
        return (length - self.dilation * (inner_size - 1) - 1) // self.stride + 1


Axis = Union[str, Window]


@dataclass(frozen=True)
class Term:
    """The axes of one operand (or of the output), in order.

    Each axis is an index name, a :class:`Window`, or ``"..."``.
    """

    axes: tuple[Axis, ...]

    def __str__(self) -> str:
        return "".join(str(a) for a in self.axes)

    def __hash__(self) -> int:  # computed once: terms key the engine's caches
        return self._hash

    def __reduce__(self):
        # pickled by its axes alone: the cached values are made anew where it is
        # loaded (a string's hash changes from process to process)
        return Term, (self.axes,)

    @cached_property
    def _hash(self) -> int:
        return hash(self.axes)

    @cached_property
    def has_ellipsis(self) -> bool:
        return ELLIPSIS in self.axes

    @cached_property
    def windows(self) -> tuple[Window, ...]:
        return tuple(a for a in self.axes if isinstance(a, Window))

    def indices(self) -> tuple[str, ...]:
        """Every index name in order of appearance, window parts included."""
        return self._indices

    @cached_property
    def _indices(self) -> tuple[str, ...]:
        found: list[str] = []
        for a in self.axes:
            if isinstance(a, Window):
                found += [a.outer, a.inner]
            elif a != ELLIPSIS:
                found.append(a)
        return tuple(found)

    @cached_property
    def is_plain(self) -> bool:
        """No ellipsis, no window and no repeated index."""
        names = [a for a in self.axes if isinstance(a, str)]
        return (not self.windows and ELLIPSIS not in names
                and len(set(names)) == len(names))


@dataclass(frozen=True)
class Spec:
    """A parsed contraction: input terms and an (always explicit) output term.

    ``str(spec)`` is explicit text that parses back to an equal Spec.

    >>> str(parse("ij,jk"))
    'ij,jk->ik'
    """

    inputs: tuple[Term, ...]
    output: Term

    def __str__(self) -> str:
        return self._text

    @cached_property
    def _text(self) -> str:
        return ",".join(str(t) for t in self.inputs) + "->" + str(self.output)

    def __hash__(self) -> int:  # computed once: specs key the engine's caches
        return self._hash

    def __reduce__(self):
        return Spec, (self.inputs, self.output)  # by its terms alone, as a Term is

    @cached_property
    def _hash(self) -> int:
        return hash((self.inputs, self.output))

    def indices(self) -> set[str]:
        """Every index name used anywhere in the spec."""
        return set(self._indices)

    @cached_property
    def _indices(self) -> frozenset[str]:
        found = set(self.output.indices())
        for t in self.inputs:
            found.update(t.indices())
        return frozenset(found)

    @cached_property
    def has_ellipsis(self) -> bool:
        return any(t.has_ellipsis for t in self.inputs + (self.output,))

    def lone_indices(self) -> dict[int, tuple[str, ...]]:
        """The plain indices that one term has, once, and no other term, by
        term number (the output's is ``len(inputs)``): an input's is summed
        inside its operand, the output's broadcast.  A window's indices and
        a repeated index (a diagonal) are not lone.

        >>> parse("bnme,nmdk->bkq").lone_indices()
        {0: ('e',), 1: ('d',), 2: ('q',)}
        """
        terms = self.inputs + (self.output,)
        lone = {}
        for i, term in enumerate(terms):
            others = {k for j, t in enumerate(terms) if j != i for k in t.indices()}
            names = tuple(k for k in term.axes if isinstance(k, str) and k != ELLIPSIS
                          and k not in others and term.axes.count(k) == 1)
            if names:
                lone[i] = names
        return lone


# --------------------------------------------------------------------- parsing
def _error(text: str, position: int, message: str) -> SpecError:
    return SpecError(message, text, position)


def _read_int(text: str, pos: int) -> tuple[int | None, int]:
    """Read an optional positive integer, allowing spaces and a trailing ``*``.

    >>> _read_int("12h", 0)
    (12, 2)
    """
    start = pos
    while pos < len(text) and text[pos] in _ASCII_DIGITS:  # not str.isdigit: '²' is one
        pos += 1
    if pos == start:
        return None, pos
    value = int(text[start:pos])
    if value <= 0:
        raise _error(text, start, f"window coefficient must be a positive integer, got {value}")
    if value > MAX_COEFFICIENT:
        raise _error(text, start, f"window coefficient {value} is too large (at most "
                                  f"{MAX_COEFFICIENT})")
    while pos < len(text) and text[pos] == " ":
        pos += 1
    if pos < len(text) and text[pos] == "*":
        pos += 1
    return value, pos


def _skip_spaces(text: str, pos: int) -> int:
    while pos < len(text) and text[pos] == " ":
        pos += 1
    return pos


def _read_window_part(text: str, pos: int) -> tuple[int, str, int]:
    """Read ``[coef[*]]letter`` inside a window group."""
    pos = _skip_spaces(text, pos)
    coef, pos = _read_int(text, pos)
    pos = _skip_spaces(text, pos)
    if pos >= len(text) or not text[pos].isalpha():
        found = repr(text[pos]) if pos < len(text) else "the end"
        raise _error(text, min(pos, len(text)),
                     f"expected an index letter in window group, found {found}")
    return (1 if coef is None else coef), text[pos], _skip_spaces(text, pos + 1)


def _read_window(text: str, pos: int) -> tuple[Window, int]:
    """Read ``(s*h + d*u)`` starting at the opening parenthesis."""
    open_pos = pos
    stride, outer, pos = _read_window_part(text, pos + 1)
    if pos >= len(text) or text[pos] != "+":
        raise _error(text, min(pos, len(text)),
                     "a window group is '(stride*outer + dilation*inner)', expected '+'")
    dilation, inner, pos = _read_window_part(text, pos + 1)
    if pos >= len(text):
        raise _error(text, open_pos, "window group is not closed with ')'")
    if text[pos] != ")":  # a third part, a comma: the group has more than its two
        raise _error(text, pos, f"a window group is '(stride*outer + dilation*inner)', "
                                f"expected ')' after its second part, found {text[pos]!r}")
    if outer == inner:
        raise _error(text, open_pos, f"window group uses index '{outer}' twice")
    return Window(outer, inner, stride, dilation), pos + 1


def _read_term(text: str, start: int, end: int) -> Term:
    """Parse ``text[start:end]`` as one term."""
    axes: list[Axis] = []
    pos = start
    while pos < end:
        ch = text[pos]
        if ch == " ":
            pos += 1
        elif ch == ".":
            if text[pos:pos + 3] != ELLIPSIS or pos + 3 > end:
                raise _error(text, pos, "'.' must be part of an ellipsis '...'")
            if ELLIPSIS in axes:
                raise _error(text, pos, "a term may contain at most one ellipsis")
            axes.append(ELLIPSIS)
            pos += 3
        elif ch == "(":
            close = text.find(")", pos, end)
            if close < 0:
                raise _error(text, pos, "window group is not closed with ')'")
            window, pos = _read_window(text, pos)
            axes.append(window)
        elif ch.isalpha():
            axes.append(ch)
            pos += 1
        else:
            shown = repr(ch) if ch.isascii() else \
                f"'{_shown_char(ch)}' ({unicodedata.name(ch, 'unnamed')})"
            raise _error(text, pos, f"invalid character {shown}: indices are letters")
    return Term(tuple(axes))


def _split_terms(text: str, start: int, end: int) -> list[tuple[int, int]]:
    """Split ``text[start:end]`` at commas outside window groups."""
    bounds, depth, begin = [], 0, start
    for pos in range(start, end):
        if text[pos] == "(":
            depth += 1
        elif text[pos] == ")":
            depth -= 1
            if depth < 0:
                raise _error(text, pos, "unbalanced ')'")
        elif text[pos] == "," and depth == 0:
            bounds.append((begin, pos))
            begin = pos + 1
    bounds.append((begin, end))
    return bounds


def implicit_output(inputs: tuple[Term, ...]) -> Term:
    """numpy's implicit output: ellipsis, then indices used once, sorted.

    >>> str(implicit_output((Term(("b", "a")),)))
    'ab'
    """
    counts: dict[str, int] = {}
    for t in inputs:
        for name in t.indices():
            counts[name] = counts.get(name, 0) + 1
    single = sorted(name for name, n in counts.items() if n == 1)
    head: tuple[Axis, ...] = (ELLIPSIS,) if any(t.has_ellipsis for t in inputs) else ()
    return Term(head + tuple(single))


def parse(text: str) -> Spec:
    """Parse spec text into a :class:`Spec`.

    Parameters
    ----------
    text : str
        numpy einsum grammar plus windowed groups ``(s*h+d*u)``.

    Returns
    -------
    Spec

    Raises
    ------
    SpecError
        If the text is malformed; the message points at the position.

    Examples
    --------
    >>> str(parse("bnmd,nmdk->bk"))
    'bnmd,nmdk->bk'
    >>> str(parse("b(2h+u)c,uck->bhk"))
    'b(2h+u)c,uck->bhk'
    """
    if not isinstance(text, str):
        raise SpecError(f"a spec must be a string, got {type(text).__name__}")
    return _parse(text)


def interleaved_spec(sublists: Sequence[Iterable], output: Iterable | None = None) -> str:
    """Spec text for numpy's interleaved form, ``op0, sublist0, op1, sublist1, ..., [output]``.

    Parameters
    ----------
    sublists : sequence of iterables
        One per operand: integer subscripts in ``[0, 52)`` and ``Ellipsis``.
        As in numpy, 0-25 stand for the letters ``A``-``Z`` and 26-51 for
        ``a``-``z``, so an implicit output lists them in increasing order.
    output : iterable, optional
        The output's subscripts; without it the output is implicit.

    Returns
    -------
    str

    Raises
    ------
    SpecError
        A sublist that is not an iterable of such subscripts; the message
        names the sublist and the subscript.

    Examples
    --------
    >>> interleaved_spec([[0, 1], [1, 2]], [0, 2])
    'AB,BC->AC'
    >>> interleaved_spec([[Ellipsis, 27]])
    '...b'
    """
    terms = [_sublist_term(s, f"operand {i}'s sublist") for i, s in enumerate(sublists)]
    if output is None:
        return ",".join(terms)
    what = "the output sublist (the last of an odd number of arguments)"
    return ",".join(terms) + "->" + _sublist_term(output, what)


def subscript_letter(subscript: int) -> str:
    """The index letter numpy's interleaved form gives an integer subscript.

    >>> subscript_letter(0), subscript_letter(26)
    ('A', 'a')
    """
    return chr(ord("A") + subscript) if subscript < 26 else chr(ord("a") + subscript - 26)


_INTERLEAVED = ("the first argument is not a spec string, so the arguments are read in "
                "numpy's interleaved form (operand, sublist, ..., [output sublist]), where")


def _sublist_term(sublist: Iterable, what: str) -> str:
    """One sublist as a term's text; ``what`` names it in errors."""
    shown = _short_repr(sublist)
    refusal = SpecError(f"{_INTERLEAVED} {what} {shown} is not a sequence of integers and "
                        f"Ellipsis")
    if isinstance(sublist, (str, bytes)):
        raise refusal
    try:  # any iterable, as numpy reads it (a generator too, read once)
        items = iter(sublist)
    except TypeError:  # none, or one refusing to be read (a 0-d array or traced value)
        raise refusal from None
    letters = []
    for item in items:
        if item is Ellipsis:
            letters.append(ELLIPSIS)
            continue
        n = subscript_index(item)
        if n is None or not 0 <= n < 52:
            raise SpecError(f"{_INTERLEAVED} {what} {shown} has subscript "
                            f"{_short_repr(item)}: subscripts are integers in [0, 52) or "
                            f"Ellipsis")
        letters.append(subscript_letter(n))
    return "".join(letters)


def subscript_index(item: object) -> int | None:
    """``item`` as an int when it is an integer (not a bool), else None."""
    if isinstance(item, bool):
        return None
    try:
        return operator.index(item)
    except TypeError:
        return None


def _short_repr(value: object, limit: int = 40) -> str:
    text = repr(value)
    return text if len(text) <= limit and "\n" not in text else f"<{type(value).__name__}>"


def _inside_group(text: str, pos: int) -> bool:
    """Whether ``pos`` lies between a window group's ``(`` and its ``)``, in one term."""
    start = max(text.rfind(",", 0, pos), text.rfind(">", 0, pos)) + 1
    ends = [i for i in (text.find(",", pos), text.find("->", pos)) if i >= 0]
    end = min(ends, default=len(text))
    return text.count("(", start, pos) > text.count(")", start, pos) and ")" in text[pos:end]


@lru_cache(maxsize=1024)
def _parse(text: str) -> Spec:
    arrow = text.find("->")
    if arrow >= 0 and text.find("->", arrow + 1) >= 0:
        raise _error(text, text.find("->", arrow + 1), "a spec may contain only one '->'")
    lhs_end = arrow if arrow >= 0 else len(text)
    for pos, ch in enumerate(text):
        if ch in "->" and not (arrow >= 0 and arrow <= pos <= arrow + 1):
            if ch == "-" and _inside_group(text, pos):
                raise _error(text, pos, "stray '-' in a window group: its strides and "
                                        "dilations are positive integers, as in (2h+3u)")
            raise _error(text, pos, f"stray {ch!r}: the output is introduced by '->'")
    inputs = tuple(_read_term(text, a, b) for a, b in _split_terms(text, 0, lhs_end))
    if arrow < 0:
        return Spec(inputs, implicit_output(inputs))
    out_start = arrow + 2
    if "," in text[out_start:]:
        raise _error(text, text.index(",", out_start), "the output has a single term")
    # '...' in the output and in no input stands for no axes, as in numpy
    return Spec(inputs, _read_term(text, out_start, len(text)))
