"""Bind a :class:`~contractnet.spec.Spec` to operand shapes.

Binding resolves everything that depends on shapes and nothing else: it
expands ``...`` into fresh index letters, gives every index its size, renames
axes that broadcast from size 1 to private indices (so that the gradient sums
back to size 1 without a special case), and fixes the extent of every window.
The result, :class:`Bound`, is concrete: no ellipsis, every size known.
It is pure shape logic and hashable; the engine's plans for it are cached
on it (:attr:`Bound.derived`), and bound specs are cached by the bind caches
below, which bound both.
"""
from __future__ import annotations

import itertools

import operator
from dataclasses import dataclass
from functools import cached_property, lru_cache
from typing import Iterator, Mapping, Sequence

from .arguments import as_index
from .spec import ELLIPSIS, Axis, Spec, SpecError, Term, Window, parse

Shape = tuple[int, ...]


@dataclass(frozen=True)
class Bound:
    """A concrete spec with the size of every index and of every axis."""

    spec: Spec
    sizes: tuple[tuple[str, int], ...]
    in_shapes: tuple[Shape, ...]
    out_shape: Shape

    def size(self, name: str) -> int:
        """The size of index ``name``."""
        return self.size_map[name]

    @cached_property
    def size_map(self) -> dict[str, int]:
        return dict(self.sizes)

    def __hash__(self) -> int:  # computed once: bound specs key the bind caches
        return self._hash

    @cached_property
    def derived(self) -> dict:
        """What the engine and autodiff compute from this bound spec alone,
        cached with it: execution plans keyed by reduction, the plans of its
        backward specs keyed by ``(operand, gradient shape)``, and the steps
        of its traced pairwise run keyed by ``("pairwise", operands read
        first)`` (:func:`contractnet.engine.pairwise_steps`).  A plan refers
        back to its bound spec, so a dropped one is freed by Python's cycle
        collector."""
        return {}

    @cached_property
    def _hash(self) -> int:
        return hash((self.spec, self.sizes, self.in_shapes, self.out_shape))


def fresh_letters(used: set[str]) -> Iterator[str]:
    """Index letters not in ``used``: uppercase first, then lowercase, then beyond ASCII."""
    ascii_letters = [chr(c) for c in range(ord("A"), ord("Z") + 1)]
    ascii_letters += [chr(c) for c in range(ord("a"), ord("z") + 1)]
    for ch in ascii_letters:
        if ch not in used:
            yield ch
    code = 192
    while True:
        ch = chr(code)
        if ch.isalpha() and len(ch.lower()) == 1 and ch not in used:
            yield ch
        code += 1


def _axis_positions(spec: Spec) -> list[list[int]]:
    """Column of each axis of each input term in ``str(spec)`` (for carets)."""
    positions, offset = [], 0
    for term in spec.inputs:
        cols, col = [], offset
        for axis in term.axes:
            cols.append(col)
            col += len(str(axis))
        positions.append(cols)
        offset += len(str(term)) + 1
    return positions


def _expand_ellipsis(spec: Spec, shapes: Sequence[Shape]) -> tuple[Spec, list[list[int]]]:
    """Replace ``...`` by fresh letters; check every operand's rank."""
    text, cols = str(spec), _axis_positions(spec)
    n_ell, counts = 0, []
    for i, (term, shape) in enumerate(zip(spec.inputs, shapes)):
        explicit = len(term.axes) - term.has_ellipsis
        if len(shape) < explicit or (not term.has_ellipsis and len(shape) != explicit):
            want = f"at least {explicit}" if term.has_ellipsis else str(explicit)
            start = cols[i][0] if cols[i] else sum(len(str(t)) + 1 for t in spec.inputs[:i])
            raise SpecError(f"operand {i} has rank {len(shape)} (shape {tuple(shape)}) "
                            f"but its term '{term}' needs rank {want}", text, start)
        counts.append(len(shape) - explicit)
        n_ell = max(n_ell, counts[-1] if term.has_ellipsis else 0)
    if not spec.has_ellipsis:
        return spec, cols
    letters = []
    for ch in fresh_letters(spec.indices()):
        if len(letters) == n_ell:
            break
        letters.append(ch)
    new_inputs, new_cols = [], []
    for term, k, col in zip(spec.inputs, counts, cols):
        axes, c = [], []
        for axis, pos in zip(term.axes, col):
            fill = letters[n_ell - k:] if axis == ELLIPSIS else [axis]
            axes.extend(fill)
            c.extend([pos] * len(fill))
        new_inputs.append(Term(tuple(axes)))
        new_cols.append(c)
    out_axes: list[Axis] = []
    for axis in spec.output.axes:
        out_axes.extend(letters if axis == ELLIPSIS else [axis])
    return Spec(tuple(new_inputs), Term(tuple(out_axes))), new_cols


def _plain_sizes(spec: Spec, shapes, cols, given: dict[str, int], text: str,
                 named: set[str]):
    """Sizes of indices on plain axes; an axis of size 1 may broadcast.

    A size in ``given`` must be the one the operands give its index (after
    broadcasting: an axis of size 1 agrees with a larger one elsewhere).
    """
    # name -> (size, operand, column, axis number) of its largest axis
    seen: dict[str, tuple[int, int, int, int]] = {}
    for i, (term, shape) in enumerate(zip(spec.inputs, shapes)):
        for j, (axis, n, col) in enumerate(zip(term.axes, shape, cols[i])):
            if isinstance(axis, Window):
                continue
            size0, op0, _, j0 = seen.get(axis, (n, i, col, j))
            if n != size0 and 1 not in (n, size0):
                where = (f"in operand {op0} but {n} in operand {i}" if op0 != i else
                         f"on axis {j0} of operand {i} but {n} on its axis {j}")
                raise SpecError(f"{_label(axis, named)} has size {size0} {where}", text, col)
            if axis not in seen or size0 == 1:
                seen[axis] = (n, i, col, j)
    sizes = dict(given)
    for name, (n, i, col, _) in seen.items():
        if name in given and n != given[name]:
            raise SpecError(f"{_label(name, named)} has size {n} in operand {i} "
                            f"but sizes= gives {given[name]}", text, col)
        sizes[name] = n
    return sizes


def _label(axis: str, named: set[str]) -> str:
    """How an error names an index: by its letter, or as an axis under '...'."""
    return f"index '{axis}'" if axis in named else "an axis under '...'"


def _rename_broadcast_axes(spec: Spec, shapes, sizes: dict[str, int], text, cols) -> Spec:
    """Give each axis of size 1 whose index is larger elsewhere a private index.

    All the axes of one operand that share such an index (a repeated index,
    all of size 1) share one private index, as numpy broadcasts them.
    """
    fresh = fresh_letters(spec.indices() | set(sizes))
    inputs = []
    for i, (term, shape) in enumerate(zip(spec.inputs, shapes)):
        axes, private = list(term.axes), {}
        for j, (axis, n) in enumerate(zip(term.axes, shape)):
            if isinstance(axis, Window) or n == sizes[axis]:
                continue
            if any(m != 1 for a, m in zip(term.axes, shape) if a == axis):
                raise SpecError(f"index '{axis}' is repeated in operand {i} with sizes "
                                f"{[m for a, m in zip(term.axes, shape) if a == axis]}; "
                                f"it cannot broadcast to {sizes[axis]}", text, cols[i][j])
            if axis not in private:
                private[axis] = next(fresh)
                sizes[private[axis]] = 1
            axes[j] = private[axis]
        inputs.append(Term(tuple(axes)))
    return Spec(tuple(inputs), spec.output)


def _window_sizes(spec: Spec, shapes, cols, sizes: dict[str, int],
                  given_windows: dict[str, int], text: str) -> None:
    """Sizes of window indices: inner from elsewhere, outer from the axis length
    (which a size given for the window group must equal, unless the output
    has that group too: the size is then the output axis's)."""
    extents: dict[str, list[tuple[int, int, Window, int, int]]] = {}
    output_windows = {str(w) for w in spec.output.windows}
    for i, (term, shape) in enumerate(zip(spec.inputs, shapes)):
        for axis, length, col in zip(term.axes, shape, cols[i]):
            if not isinstance(axis, Window):
                continue
            given = None if str(axis) in output_windows else given_windows.get(str(axis))
            if given is not None and given != length:
                raise SpecError(f"sizes= gives window {axis} length {given}, but that axis of "
                                f"operand {i} has length {length}", text, col)
            if axis.inner not in sizes:
                swapped = (f" (or, if '{axis.outer}' is the offset within the window, write "
                           f"the outer index first: "
                           f"{Window(axis.inner, axis.outer, axis.dilation, axis.stride)})"
                           if axis.outer in sizes else "")
                raise SpecError(f"window index '{axis.inner}' in {axis} has no size: it "
                                f"appears in no other operand; give {size_hint(axis.inner)}"
                                f"{swapped}", text, col, unsized=axis.inner)
            if sizes[axis.inner] < 1:
                raise SpecError(f"window {axis} has size '{axis.inner}'={sizes[axis.inner]}; "
                                f"a window holds at least one position", text, col)
            extent = axis.outer_extent(length, sizes[axis.inner])
            if axis.outer in sizes:
                span = axis.span(sizes[axis.outer], sizes[axis.inner])
                if span > length:
                    raise SpecError(f"window {axis} spans {span} positions for "
                                    f"'{axis.outer}'={sizes[axis.outer]}, '{axis.inner}'="
                                    f"{sizes[axis.inner]}, but axis {axis} of operand {i} "
                                    f"has length {length}", text, col)
                continue
            if extent < 1:
                raise SpecError(f"window {axis} with '{axis.inner}'={sizes[axis.inner]} "
                                f"does not fit axis of length {length} in operand {i}",
                                text, col)
            extents.setdefault(axis.outer, []).append((extent, i, axis, length, col))
    for name, found in extents.items():
        sizes[name] = min(e for e, *_ in found)


def _output_sizes(spec: Spec, sizes, given_windows, out_shape, text) -> Shape:
    """Sizes of the output's axes, from inputs, ``sizes=`` or ``out_shape``."""
    written = str(spec.output)
    if text.endswith("->" + written):  # the output as written: a caret under each axis
        out_col = len(text) - len(written)
        starts = list(itertools.accumulate((len(str(a)) for a in spec.output.axes[:-1]),
                                           initial=out_col))
    else:  # written with '...', or implicit: a caret where the output starts
        out_col = text.index("->") + 2 if "->" in text else len(text)
        starts = [out_col] * len(spec.output.axes)
    axes = spec.output.axes
    if out_shape is not None and len(out_shape) != len(axes):
        raise SpecError(f"output term '{spec.output}' has rank {len(axes)} but the "
                        f"requested output shape is {tuple(out_shape)}", text, out_col)
    shape = []
    for j, axis in enumerate(axes):
        at = starts[j]
        wanted = None if out_shape is None else int(out_shape[j])
        if isinstance(axis, Window):
            for name in (axis.outer, axis.inner):
                if name not in sizes:
                    raise SpecError(f"index '{name}' of output window {axis} appears in no "
                                    f"operand; give {size_hint(name)}", text, at,
                                    unsized=name)
            if sizes[axis.inner] < 1:
                raise SpecError(f"output window {axis} has size '{axis.inner}'="
                                f"{sizes[axis.inner]}; a window holds at least one position",
                                text, at)
            span = axis.span(sizes[axis.outer], sizes[axis.inner])
            length = wanted if wanted is not None else given_windows.get(str(axis), span)
            if length < span:
                raise SpecError(f"output window {axis} needs length >= {span}, "
                                f"got {length}", text, at)
            shape.append(length)
            continue
        if axis not in sizes:
            if wanted is None:
                raise SpecError(f"output index '{axis}' appears in no operand; "
                                f"give its size with {size_hint(axis)}", text, at,
                                unsized=axis)
            sizes[axis] = wanted
        if wanted is not None and wanted != sizes[axis]:
            raise SpecError(f"output index '{axis}' has size {sizes[axis]} but the requested "
                            f"output shape has {wanted}", text, at)
        shape.append(sizes[axis])
    return tuple(shape)


def checked_sizes(spec: Spec, sizes: Mapping[str, int] | None) -> dict[str, int]:
    """``sizes=`` checked as :func:`bind` checks it, each window group keyed
    as it is printed (``"(2h+u)"``, whatever spelling was given)."""
    letters, windows = _split_given(spec, sizes, str(spec))
    return letters | windows


def _split_given(spec: Spec, sizes: Mapping[str, int] | None, text: str):
    """Check ``sizes=``: letters of the spec or window groups, positive ints."""
    letters, windows = {}, {}
    names = spec.indices()
    window_names = {str(w): str(w) for t in spec.inputs + (spec.output,) for w in t.windows}
    window_names.update({k[1:-1]: k for k in list(window_names)})
    spelled: dict[str, object] = {}  # each window group's key as the caller wrote it
    for key, value in (sizes or {}).items():
        value = _size_value(key, value, text)
        if key in names:
            letters[key] = value
        elif (group := window_names.get(window_key(key))) is not None:
            if group in windows and windows[group] != value:
                raise SpecError(f"sizes= gives window group {group} twice, as "
                                f"{spelled[group]!r}: {windows[group]} and as {key!r}: {value}",
                                text)
            windows[group], spelled[group] = value, key
        else:
            raise SpecError(f"sizes= names {key!r}, which is not an index of the spec", text)
    return letters, windows


def window_key(key: object) -> object:
    """A ``sizes=`` key naming a window group in any spelling the spec
    accepts (``"2*h + u"``, ``"(2h+1u)"``) as the group is printed
    (``"(2h+u)"``); other keys as they are."""
    if not isinstance(key, str) or "+" not in key:
        return key
    group = key.strip()
    if not (group.startswith("(") and group.endswith(")")):
        group = f"({group})"
    try:
        terms = parse(f"{group}->").inputs
    except SpecError:
        return key
    # one term of one axis: "h+u),(x+y" parses as two terms
    return str(terms[0].axes[0]) if len(terms) == 1 and len(terms[0].axes) == 1 else key


def size_hint(name: str, option: bool = False) -> str:
    """How to give index ``name`` a size: as :func:`~contractnet.einsum`'s
    argument (``sizes={'z': n}``) or, with ``option``, as the command line's
    (``--sizes z=N``)."""
    return f"--sizes {name}=N" if option else f"sizes={{'{name}': n}}"


def _size_value(key, value, text: str) -> int:
    """A size given in ``sizes=``: a non-negative int (not a bool or a float)."""
    size = as_index(value)
    if size is None:
        raise SpecError(f"sizes[{key!r}] must be an int, got {value!r}", text)
    if size < 0:
        raise SpecError(f"sizes[{key!r}] must be a non-negative int, got {size}", text)
    return size


def check_operand_count(spec: Spec, given: int, what: str) -> None:
    """Raise :class:`SpecError` unless ``given`` (arrays or shapes: ``what``)
    is the number of operands ``spec`` has."""
    if given != len(spec.inputs):
        raise SpecError(f"spec has {len(spec.inputs)} operand(s) but {given} {what} were "
                        f"given", str(spec))


def checked_shape(shape, what: str, text: str) -> tuple[int, ...]:
    """``shape`` as a tuple of non-negative ints (not bools), or a
    :class:`SpecError` naming ``what`` in spec ``text``."""
    try:
        given = tuple(shape)
        dims = tuple(operator.index(n) for n in given)
    except TypeError:
        raise SpecError(f"{what} must be a sequence of ints, got {shape!r}", text) from None
    if any(isinstance(n, bool) for n in given):
        raise SpecError(f"{what} must be a sequence of ints, not bools, got {given!r}", text)
    if any(n < 0 for n in dims):
        raise SpecError(f"{what} must be a sequence of non-negative ints, got {given!r}", text)
    return dims


def bind(spec: Spec, shapes: Sequence[Sequence[int]], sizes: Mapping[str, int] | None = None,
         out_shape: Sequence[int] | None = None) -> Bound:
    """Resolve ``spec`` against operand shapes (cached; see :func:`bind_uncached`).

    The arguments are normalised (and their types checked) before the cache
    is consulted, so a cached answer is never given to arguments that
    binding would refuse.
    """
    if sizes is None and out_shape is None and all(type(s) is tuple for s in shapes) and all(
            type(n) is int for s in shapes for n in s):
        return bind_array_shapes(spec, tuple(shapes))  # the common case: ndarray shapes
    text = str(spec)
    if sizes is not None and not isinstance(sizes, Mapping):
        raise SpecError(f"sizes must be a mapping of index to size, got {sizes!r}", text)
    key_sizes = tuple(sorted(((k, _size_value(k, v, text)) for k, v in (sizes or {}).items()),
                             key=lambda item: str(item[0])))
    key_shapes = tuple(checked_shape(s, f"the shape of operand {i}", text)
                       for i, s in enumerate(shapes))
    key_out = None if out_shape is None else checked_shape(out_shape, "out_shape", text)
    return _bind_cached(spec, key_shapes, key_sizes or None, key_out)


def bind_array_shapes(spec: Spec, shapes: tuple[Shape, ...],
                      sizes: Mapping[str, int] | None = None) -> Bound:
    """:func:`bind` for shapes read off arrays, which need no normalising.

    Parameters
    ----------
    spec : Spec
    shapes : tuple of tuples of int
        One ``ndarray.shape`` per input term; not checked.
    sizes : mapping, optional
        As for :func:`bind` (given sizes take the checked path).

    Returns
    -------
    Bound
    """
    if sizes is None:
        return _bind_cached(spec, shapes, None, None)
    return bind(spec, shapes, sizes)


def bind_text(text: str, shapes: tuple[Shape, ...],
              sizes: Mapping[str, int] | None = None) -> Bound:
    """:func:`bind_array_shapes` for spec text, cached by the text itself
    (so that a repeated call neither parses nor hashes a Spec, nor checks
    its ``sizes`` again).

    ``sizes`` joins the key as its items when its keys are strings and its
    values plain ints (a window layer's ``{"u": 2, "v": 2}``, given on every
    call); any other ``sizes`` takes :func:`bind`'s checked path each time.
    A hit is an exact repeat of a call that bound, so it needs no checking.
    """
    if sizes is None:
        key = (text, shapes)
    elif type(sizes) is dict and all(type(k) is str and type(v) is int
                                     for k, v in sizes.items()):
        key = (text, shapes, tuple(sizes.items()))
    else:
        return bind(parse(text), shapes, sizes)
    bound = bound_by_text.get(key)
    if bound is None:
        bound = (_bind_cached(parse(text), shapes, None, None) if sizes is None
                 else bind(parse(text), shapes, sizes))
        if len(bound_by_text) >= _BOUND_BY_TEXT_MAX:
            bound_by_text.clear()
        bound_by_text[key] = bound
    return bound


#: :func:`bind_text`'s cache, keyed by ``(text, shapes)`` or ``(text, shapes,
#: sizes items)``; read directly by :func:`contractnet.einsum` on its common
#: path (a hit means valid text).
bound_by_text: dict[tuple, Bound] = {}
_BOUND_BY_TEXT_MAX = 4096


def clear_bind_cache() -> None:
    """Forget every cached bound spec, and with them the plans derived from
    each, backward ones included (see :attr:`Bound.derived`)."""
    _bind_cached.cache_clear()
    bound_by_text.clear()


@lru_cache(maxsize=4096)
def _bind_cached(spec, shapes, sizes, out_shape) -> Bound:
    return bind_uncached(spec, shapes, None if sizes is None else dict(sizes), out_shape)


#: The most axes a numpy array can have.
MAX_DIMS = 64


def bind_uncached(spec: Spec, shapes: Sequence[Sequence[int]],
                  sizes: Mapping[str, int] | None = None,
                  out_shape: Sequence[int] | None = None) -> Bound:
    """Resolve ``spec`` against operand shapes.

    Parameters
    ----------
    spec : Spec
    shapes : sequence of shapes, one per input term
    sizes : mapping, optional
        Sizes of indices that no operand fixes (output-only indices, window
        sizes), keyed by letter, or by a window group such as ``"2h+u"``.
    out_shape : shape, optional
        The exact output shape wanted (used by derived backward specs).

    Returns
    -------
    Bound

    Raises
    ------
    SpecError
        Wrong operand count, rank, conflicting sizes, windows that do not fit.
    """
    text = str(spec)
    shapes = [tuple(int(n) for n in s) for s in shapes]
    check_operand_count(spec, len(shapes), "array(s)")
    letters, given_windows = _split_given(spec, sizes, text)
    concrete, cols = _expand_ellipsis(spec, shapes)
    if out_shape is not None and len(out_shape) == len(concrete.output.axes):
        for axis, n in zip(concrete.output.axes, out_shape):
            if isinstance(axis, str):
                letters.setdefault(axis, int(n))
    size_map = _plain_sizes(concrete, shapes, cols, letters, text, spec.indices())
    concrete = _rename_broadcast_axes(concrete, shapes, size_map, text, cols)
    _window_sizes(concrete, shapes, cols, size_map, given_windows, text)
    shape = _output_sizes(concrete, size_map, given_windows, out_shape, text)
    if len(shape) > MAX_DIMS:  # numpy >= 2 holds 64 axes, 1.x held 32
        raise SpecError(f"the output would have {len(shape)} axes; a numpy array holds at "
                        f"most {MAX_DIMS}", text, text.index("->") + 2 if "->" in text else None)
    used = concrete.indices()
    return Bound(concrete, tuple(sorted((k, v) for k, v in size_map.items() if k in used)),
                 tuple(shapes), shape)
