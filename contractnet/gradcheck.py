"""``check_grads``: a function's vjp against central finite differences.

The check users can call on their own functions (and the tests call on
every nonlinear primitive): random directions ``v`` and cotangents ``u``,
and ``<vjp(u), v>`` against the derivative of ``<u, f(x + t v)>`` at
``t = 0``, taken in float64 by central differences.
"""
from __future__ import annotations

import math
from typing import Any, Callable, NamedTuple

import numpy as np

from .arguments import as_flag, non_negative_int, positive_int
from .autodiff import refuse_non_float, vjp
from .pytree import flatten_tree
from .trace import value_of

#: The steps tried, as fractions of ``eps``.  A step that carries an input
#: across a kink (a ReLU at 0, a max changing hands) is wrong there and a
#: smaller one is not, and an input large against its features (positions
#: near 1e12, features of size 1) needs a step far below ``eps`` times its
#: size; a wrong gradient disagrees at every step that resolves the derivative.
STEP_SHRINKS = (1.0, 1e-2, 1e-4, 1e-6, 1e-8, 1e-10)
#: A step is sharp when all it allows (truncation and rounding) is at most
#: this share of the derivative.  A trial passes when a sharp step agrees;
#: when none is sharp, when the first step agrees, as a looser check.
SHARP = 1e-3
#: Rounding allowed in a float64 sum, per unit of the sum of its terms'
#: sizes; rounding inside ``fn`` shows in the difference of two steps.
FLOAT64_SLACK = 4 * float(np.finfo(np.float64).eps)
#: A lower-precision output's rounding is allowed this many times its
#: precision times the root of the sum of the squared sizes of the terms
#: (see :func:`_rounding_error`): far past the spread of independent
#: rounding (a uniform rounding of 1 unit has a spread of 0.29 units).
ROUNDING_SPREADS = 8.0
#: How far a gradient computed in lower precision may stray from the float64
#: one, element by element: this share of the element, plus this many units
#: of the coarsest precision times the largest element of all the gradients
#: (cancellation, as in a softmax near one minus one, is relative to it; so
#: is a kink a rounded input crosses).  A net for rules wrong in one dtype
#: only, not a precision test: in float16 it lets a quarter of the largest
#: element through, in float32 about 3e-5 of it.
OWN_DTYPE_RTOL = 0.05
OWN_DTYPE_SLACK = 256


def check_grads(fn: Callable, *primals: Any, eps: float | None = None, rtol: float = 1e-5,
                atol: float = 1e-12, trials: int = 3, seed: int | None = 0,
                own_dtype: bool = False) -> None:
    """Compare ``vjp`` with central finite differences.

    For random directions ``v`` and cotangents ``u`` checks that
    ``<vjp(u), v>`` is the derivative of ``<u, f(x + t v)>`` at ``t = 0``,
    where ``<a, b>`` is the real part of ``sum(a * b)``.  Primals are
    promoted to float64 (complex128) so that the differences are accurate.
    A complex primal gets complex directions and a complex output complex
    cotangents, so a gradient with a wrong imaginary part, or conjugated,
    fails; the convention checked is ``jax.vjp``'s, for holomorphic functions.

    Each element's step is ``eps`` times its own size (at least 1), so large
    inputs are probed with differences their float64 values resolve, and
    the vjp is paired with the direction the probes took once rounded.  The
    derivative is extrapolated from steps ``h`` and ``2h`` (Richardson),
    whose difference bounds its truncation error.  The two numbers must
    agree to ``rtol`` of the larger, plus that truncation error, plus the
    rounding error of float64 in both (estimated from the sizes of the terms
    summed; when ``fn`` returns a lower precision, as when it casts to
    float32, plus a generous multiple of the spread of that precision's
    rounding of the output), plus ``atol``, a small absolute slack for cancellation
    inside ``fn`` or its vjp (a softmax that is one minus one).  So a gradient of
    the wrong size fails unless its pairing with ``v`` is below ``atol``,
    however small the function's values.  A trial tries steps 10^2, 10^4,
    ..., 10^10 times smaller until one that resolves the derivative (all it
    allows within 0.1% of it) agrees: a step that carries an input across a
    kink (a ReLU near 0) is wrong where a smaller one is not, an input large
    against its features (positions near 1e12) needs a step far below its
    size, and a wrong gradient disagrees wherever the derivative is
    resolved.  When no step resolves it (values huge against the slope:
    ``sum(tanh(x)) + 1e10``), the first step's agreement decides, and the
    check is only as sharp as that step: it can pass a wrong gradient there.
    As directions scale with each element's size, the elements of a primal
    much larger than the others' (positions near 1e6 beside features of
    size 1) dominate the pairing, and an error in the small ones' gradient
    can hide below ``rtol``: check such functions one primal at a time.
    A function that computes in lower precision inside but returns float64
    hides that rounding from the estimate and fails at small steps: give it
    a larger ``eps``, or let it return its lower-precision result.

    Parameters
    ----------
    fn : callable
        Built from contractnet operations, as for :func:`~contractnet.vjp`.
    *primals : arrays, or nested dicts/lists/tuples of arrays
        Floating-point (or complex) inputs at which to check.
    eps : float, optional
        Relative size of the first step, by default 1e-6; at least the cube
        root of the output's precision when ``fn`` returns a lower one than
        float64 (about 5e-3 for float32), so a step near the edge of ``fn``'s
        domain can carry a probe out of it and fail a correct gradient.
    rtol, atol : float
        Relative and absolute tolerance of the comparison (above).
    trials : int
        Random direction and cotangent pairs to try (default 3).
    seed : int or None
        Seed of the random directions (a non-negative int; None draws fresh
        ones).
    own_dtype : bool
        Also differentiate a primal of lower precision (float32, float16,
        complex64) in its own dtype and compare each element of that
        gradient with the float64 one: they must agree to 5%, plus 256 units
        of the coarsest precision times the largest element of all the
        gradients.  This catches a rule wrong in one dtype only, or a
        gradient that overflows in it; it is no precision test (in float16
        it lets a quarter of the largest element through).  Off by default:
        rounding can move an input across a kink (a ReLU, a max-pool tie)
        and so change some elements of a correct gradient by more.

    Raises
    ------
    AssertionError
        With both numbers, when they differ by more than the tolerance.
    ValueError
        ``eps`` not a positive number, ``rtol`` or ``atol`` negative (or not
        finite), ``trials`` not a positive integer, ``seed`` not a
        non-negative integer or None, or ``own_dtype`` not a bool; or
        ``fn`` returns bools (nothing to take differences of), or float16
        (cast to it inside), whose rounding lets wrong gradients pass.
    DtypeError
        A primal is not floating point.

    Examples
    --------
    >>> import numpy as np, contractnet as cn
    >>> cn.check_grads(lambda x: cn.sum(cn.tanh(x) * x), np.array([0.5, -2.0]))
    """
    _check_settings(eps=1e-6 if eps is None else eps, rtol=rtol, atol=atol, trials=trials)
    own_dtype = as_flag(own_dtype, "own_dtype")
    non_negative_int(seed, "seed", none_ok=True)
    refuse_non_float((f"primal {i}", p) for i, p in enumerate(primals))
    rng = np.random.default_rng(seed)
    flats = [flatten_tree(p) for p in primals]
    own = [[np.asarray(value_of(x)) for x in flat] for flat, _ in flats]
    xs = [[_promoted(x) for x in leaves] for leaves in own]
    build = lambda leaves: [b(ls) for (_, b), ls in zip(flats, leaves)]  # noqa: E731
    out, vjp_fn = vjp(fn, *build(xs))
    _refuse_unfit_output(out)
    eps = _first_step(out, eps)
    for trial in range(trials):
        vs = [[_direction(rng, x) for x in leaves] for leaves in xs]
        u = _random_like(rng, np.shape(out), np.result_type(out, np.float64))
        grads = vjp_fn(u)
        verdicts = []
        for shrink in STEP_SHRINKS:  # smaller steps only while no sharp step agrees
            step = eps * shrink
            numeric, error, directions = _derivative(fn, build, xs, vs, u, step)
            verdicts.append(_compare(*_pairing(grads, directions), numeric, error, step, rtol,
                                     atol))
            if verdicts[-1].agrees and verdicts[-1].sharp:
                break  # a step that resolves the derivative agrees
        else:
            # a sharp step that disagrees fails; with none, the first step's looser
            # agreement decides
            deciding = next((v for v in verdicts if v.sharp), verdicts[0])
            if deciding.sharp or not deciding.agrees:
                raise AssertionError(
                    f"vjp disagrees with finite differences (trial {trial}; relative steps "
                    f"{eps:.3g} down to {eps * STEP_SHRINKS[-1]:.3g} tried): "
                    f"{deciding.message}")
    if own_dtype and any(x.dtype != y.dtype for a, b in zip(own, xs) for x, y in zip(a, b)):
        _check_own_dtypes(fn, build, own, vjp_fn, rng, atol)


def _refuse_unfit_output(out: np.ndarray) -> None:
    """Refuse a bool output (no differences to take), and an output coarser
    than float32: its rounding lets wrong gradients pass, sign-flipped ones
    among them."""
    if out.dtype.kind == "b":
        raise ValueError("fn returns bools, which finite differences cannot subtract; "
                         "check the numbers the comparison is made from")
    dtype = _output_dtype(out)
    if np.finfo(dtype).eps > np.finfo(np.float32).eps:
        raise ValueError(f"fn returns {dtype}, too coarse for finite differences: a wrong "
                         f"gradient, even a sign-flipped one, can pass; check the function "
                         f"in float32 or float64 (own_dtype=True then compares the gradients "
                         f"of lower-precision primals with those)")


def _first_step(out: np.ndarray, eps: float | None) -> float:
    """``eps``, by default 1e-6; for an output of lower precision than
    float64 (``fn`` casts down), at least the cube root of that precision,
    the central difference's best step there: a smaller one only measures
    rounding, and every step then passes on the first one's loose test."""
    eps = 1e-6 if eps is None else eps
    precision = float(np.finfo(_output_dtype(out)).eps)
    return max(eps, precision ** (1 / 3)) if precision > np.finfo(np.float64).eps else eps


def _output_dtype(out: np.ndarray) -> np.dtype:
    """The precision ``fn``'s output was rounded to: its own dtype if it is a
    float or complex one, else float64."""
    return out.dtype if out.dtype.kind in "fc" else np.dtype(np.float64)


def _check_settings(eps: float, rtol: float, atol: float, trials: int) -> None:
    """check_grads's own arguments: a check that cannot fail, or that blames
    the function for its own bad settings, is refused."""
    for name, value, positive in (("eps", eps, True), ("rtol", rtol, False),
                                  ("atol", atol, False)):
        real = isinstance(value, (int, float, np.integer, np.floating)) and \
            not isinstance(value, (bool, np.bool_))
        if not real or not math.isfinite(value) or value < 0 or (positive and value == 0):
            wanted = "a positive" if positive else "a non-negative"
            raise ValueError(f"{name} must be {wanted} finite number, got {value!r}")
    positive_int(trials, "trials")


def _promoted(x: np.ndarray) -> np.ndarray:
    """``x`` in float64 (complex128 when complex), for accurate differences."""
    return x.astype(np.result_type(x, np.float64), copy=False)


def _random_like(rng: np.random.Generator, shape: tuple, dtype) -> np.ndarray:
    sample = rng.standard_normal(shape)
    if np.dtype(dtype).kind == "c":
        sample = sample + 1j * rng.standard_normal(shape)
    return sample.astype(dtype)


def _direction(rng: np.random.Generator, x: np.ndarray) -> np.ndarray:
    """A random direction whose elements are as large as ``x``'s own (at least 1;
    1 beside an infinity or a nan)."""
    size = np.abs(x)
    scale = np.where(np.isfinite(size), np.maximum(size, 1.0), 1.0)
    return _random_like(rng, x.shape, x.dtype) * scale


def _derivative(fn, build, xs, vs, u, step: float) -> tuple[float, float, list]:
    """d/dt ``<u, f(x + t v)>`` at 0 by central differences at ``t = step``
    and ``2 step``; a bound on its error: the truncation error seen between
    the two, plus the rounding of the outputs; and the direction the
    differences took (the vjp is paired with that).

    The probes are ``x +- d`` and ``x +- 2d`` for the displacement ``d``
    that float64 makes of ``step v`` at ``x``: an element large against its
    step moves by a rounded amount, the same one at both steps, so the two
    differences see one direction and differ by truncation alone.
    """
    # an infinite element's displacement is undefined (inf - inf): it is moved by step v
    with np.errstate(all="ignore"):
        ds = [[_displacement(x, step * v) for x, v in zip(lx, lv)] for lx, lv in zip(xs, vs)]
    at_h, rounding = _central_difference(fn, build, xs, ds, u, 1, step)
    at_2h, _ = _central_difference(fn, build, xs, ds, u, 2, step)
    directions_taken = [[d / step for d in ld] for ld in ds]
    return (4 * at_h - at_2h) / 3, abs(at_h - at_2h) + 2 * rounding, directions_taken


def _displacement(x: np.ndarray, step: np.ndarray) -> np.ndarray:
    """How far ``x + step`` is from ``x`` once rounded to ``x``'s precision
    (``step`` itself where ``x`` is infinite or nan)."""
    moved = (x + step) - x
    return np.where(np.isfinite(moved), moved, step)


def _central_difference(fn, build, xs, ds, u, multiple: int,
                        step: float) -> tuple[float, float]:
    """``<u, f(x + multiple d) - f(x - multiple d)>`` over ``2 multiple step``
    (``d`` is ``step v`` as rounded at ``x``), and its rounding error."""
    plus = [[x + multiple * d for x, d in zip(lx, ld)] for lx, ld in zip(xs, ds)]
    minus = [[x - multiple * d for x, d in zip(lx, ld)] for lx, ld in zip(xs, ds)]
    h = multiple * step
    with np.errstate(all="ignore"):  # a probe may step out of fn's domain: judged below
        f_plus = np.asarray(value_of(fn(*build(plus))))
        f_minus = np.asarray(value_of(fn(*build(minus))))
        value = float(np.real(np.sum(u * (f_plus - f_minus)))) / (2 * h)
        error = _rounding_error(np.abs(u) * (np.abs(f_plus) + np.abs(f_minus)),
                                _output_dtype(f_plus)) / (2 * h)
    return value, error


def _rounding_error(terms: np.ndarray, dtype: np.dtype) -> float:
    """A bound on the rounding in ``<u, f+ - f->``, from its terms' sizes
    ``|u| (|f+| + |f-|)``: float64's worst case (every term rounded the same
    way), plus, for an output rounded to a lower precision (``fn`` casts its
    float64 probes down), that precision's worst case or
    :data:`ROUNDING_SPREADS` times its spread over the terms, whichever is
    smaller: the terms round independently of one another, and the worst
    case of many would let wrong gradients of a large output pass."""
    total = float(np.sum(terms))
    error = FLOAT64_SLACK * total
    precision = float(np.finfo(dtype).eps)
    if precision > np.finfo(np.float64).eps:  # the worst case bounds a few terms better
        error += precision * min(4 * total,
                                 ROUNDING_SPREADS * float(np.sqrt(np.sum(np.square(terms)))))
    return error


class _Verdict(NamedTuple):
    """One step's comparison: whether the numbers agree, whether the step is
    sharp (all it allows is within :data:`SHARP` of the derivative), and
    both numbers for a message."""

    agrees: bool
    sharp: bool
    message: str


def _compare(analytic: float, size: float, numeric: float, error: float, step: float,
             rtol: float, atol: float) -> _Verdict:
    """How ``analytic`` and a finite difference at ``step`` compare."""
    scale = max(abs(analytic), abs(numeric))
    allowed = atol + rtol * scale + error + FLOAT64_SLACK * size
    agrees = bool(np.isfinite(analytic) and np.isfinite(numeric)
                  and abs(analytic - numeric) <= allowed)
    sharp = bool(np.isfinite(allowed) and allowed <= SHARP * scale)
    return _Verdict(agrees, sharp,
                    f"<vjp(u), v> = {analytic!r}, finite difference = {numeric!r} with "
                    f"step {step:.3g}, difference {abs(analytic - numeric):.3g} "
                    f"(allowed {allowed:.3g})")


def _pairing(grads: tuple, vs: list) -> tuple[float, float]:
    """``sum <g, v>`` over every leaf of ``grads``, and the sum of its terms' sizes."""
    total = size = 0.0
    for tree, directions in zip(grads, vs):
        for g, v in zip(flatten_tree(tree)[0], directions):
            total += float(np.real(np.sum(g * v)))
            size += float(np.sum(np.abs(g * v)))
    return total, size


def _check_own_dtypes(fn, build, own, vjp_fn, rng: np.random.Generator, atol: float) -> None:
    """Each gradient computed in the primals' own (lower) precisions against
    the float64 one, element by element."""
    out, own_vjp_fn = vjp(fn, *build(own))
    u = _random_like(rng, np.shape(out), out.dtype if out.dtype.kind in "fc" else np.float64)
    dtypes = [x.dtype for leaves in own for x in leaves] + [out.dtype]
    precision = float(max(np.finfo(d).eps for d in dtypes if d.kind in "fc"))
    lows = [np.asarray(g) for tree in own_vjp_fn(u) for g in flatten_tree(tree)[0]]
    highs = [np.asarray(g) for tree in vjp_fn(_promoted(u)) for g in flatten_tree(tree)[0]]
    finite = [np.abs(h[np.isfinite(h)]) for h in highs]
    largest = max((float(f.max()) for f in finite if f.size), default=0.0)
    floor = atol + OWN_DTYPE_SLACK * precision * largest
    for leaf, (low, high) in enumerate(zip(lows, highs)):
        allowed = floor + OWN_DTYPE_RTOL * np.abs(high)
        wrong = ~(np.abs(_promoted(low) - high) <= allowed) & np.isfinite(high)
        if wrong.any():
            at = np.unravel_index(np.argmax(wrong), wrong.shape)
            raise AssertionError(
                f"vjp in the primals' own dtypes disagrees with the float64 one in "
                f"{np.count_nonzero(wrong)} of {wrong.size} elements of gradient leaf {leaf}; "
                f"at {tuple(int(i) for i in at)}: {low[at]!r} against {high[at]!r} "
                f"(allowed {float(allowed[at]):.3g})")
