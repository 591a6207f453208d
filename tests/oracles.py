"""Slow, obviously correct references that the engine is checked against.

Nothing here imports contractnet: every oracle is built from ``numpy.einsum``
or from plain Python loops, so that a bug in the library cannot hide in the
reference it is compared with.

- :func:`linear_vjp` — the exact VJP of any function that is linear in one
  argument, by probing it with unit tensors (einsum is linear in each operand).
- :func:`einsum_vjp` — that oracle applied to every operand of ``numpy.einsum``
  (product rule when the same array is passed twice is left to the caller).
- :func:`pattern_einsum` — windowed specs rewritten as plain einsum with 0/1
  index-pattern tensors ``P[X, h, u] = (X == s*h + d*u)``.
- loop references for convolution, pooling and scatter-add.
- :func:`numeric_grad` — central finite differences in float64.
"""
from __future__ import annotations

import itertools
import re
from typing import Callable, Mapping, Sequence

import numpy as np

TOL = 1e-10
WINDOW = re.compile(r"\((\d*)\*?([A-Za-z])\+(\d*)\*?([A-Za-z])\)|([A-Za-z])")


def max_abs_error(got, expected) -> float:
    """Largest absolute difference; infinite when the shapes differ."""
    got, expected = np.asarray(got), np.asarray(expected)
    if got.shape != expected.shape:
        return float("inf")
    if got.size == 0:
        return 0.0
    return float(np.max(np.abs(got.astype(np.float64) - expected.astype(np.float64))))


def assert_close(got, expected, tol: float = TOL, what: str = "") -> None:
    """Assert equal shapes and max abs error <= ``tol``, with a useful message."""
    got, expected = np.asarray(got), np.asarray(expected)
    assert got.shape == expected.shape, f"{what}: shape {got.shape} != expected {expected.shape}"
    err = max_abs_error(got, expected)
    assert err <= tol, f"{what}: max abs error {err:.3g} > {tol:g}"


# --------------------------------------------------------------- linear oracle
def linear_vjp(fn: Callable[..., np.ndarray], args: Sequence[np.ndarray], index: int,
               cotangent: np.ndarray) -> np.ndarray:
    """Exact VJP of ``fn`` in argument ``index``, assuming ``fn`` is linear in it.

    ``grad[k] = sum(cotangent * fn(..., e_k, ...))`` with ``e_k`` the k-th unit
    tensor of that argument's shape, computed in float64.

    >>> a, b = np.ones((2, 3)), np.arange(3.0)
    >>> linear_vjp(lambda x, y: x @ y, (a, b), 1, np.ones(2))
    array([2., 2., 2.])
    """
    args = [np.asarray(a, dtype=np.float64) for a in args]
    cot = np.asarray(cotangent, dtype=np.float64)
    shape = args[index].shape
    grad = np.zeros(shape, dtype=np.float64)
    for k in np.ndindex(*shape):
        unit = np.zeros(shape, dtype=np.float64)
        unit[k] = 1.0
        probe = list(args)
        probe[index] = unit
        grad[k] = np.sum(cot * fn(*probe))
    return grad


def einsum_vjp(spec: str, operands: Sequence[np.ndarray], cotangent: np.ndarray
               ) -> tuple[np.ndarray, ...]:
    """Exact gradient of ``sum(cotangent * np.einsum(spec, *operands))`` per operand."""
    def fn(*ops):
        return np.einsum(spec, *ops)
    return tuple(linear_vjp(fn, operands, i, cotangent) for i in range(len(operands)))


def numeric_grad(fn: Callable[[np.ndarray], float], x: np.ndarray, eps: float = 1e-6
                 ) -> np.ndarray:
    """Central finite differences of a scalar function, in float64."""
    x = np.array(x, dtype=np.float64)
    grad = np.zeros_like(x)
    for k in np.ndindex(*x.shape):
        old = x[k]
        x[k] = old + eps
        up = float(fn(x.copy()))
        x[k] = old - eps
        down = float(fn(x.copy()))
        x[k] = old
        grad[k] = (up - down) / (2 * eps)
    return grad


# ----------------------------------------------------- index-pattern windows
def _tokens(term: str) -> list:
    """Split a term into letters and (stride, outer, dilation, inner) windows."""
    out, pos = [], 0
    term = term.replace(" ", "")
    while pos < len(term):
        m = WINDOW.match(term, pos)
        if m is None:
            raise ValueError(f"oracle cannot read {term!r} at {pos}")
        if m.group(5):
            out.append(m.group(5))
        else:
            out.append((int(m.group(1) or 1), m.group(2), int(m.group(3) or 1), m.group(4)))
        pos = m.end()
    return out


def _window_sizes(ins, shapes, sizes: Mapping[str, int]) -> dict[str, int]:
    """Plain sizes, then window outer extents (the smallest that fits)."""
    found = dict(sizes)
    for toks, shape in zip(ins, shapes):
        for tok, n in zip(toks, shape):
            if isinstance(tok, str):
                found[tok] = max(found.get(tok, 1), n)
    for toks, shape in zip(ins, shapes):
        for tok, n in zip(toks, shape):
            if isinstance(tok, tuple):
                s, h, d, u = tok
                extent = (n - d * (found[u] - 1) - 1) // s + 1
                if h not in sizes:
                    found[h] = min(found.get(h, extent), extent)
    return found


def _pattern(length: int, stride: int, n_outer: int, dilation: int, n_inner: int) -> np.ndarray:
    p = np.zeros((length, n_outer, n_inner))
    for h, u in itertools.product(range(n_outer), range(n_inner)):
        if stride * h + dilation * u < length:
            p[stride * h + dilation * u, h, u] = 1.0
    return p


def pattern_einsum(spec: str, *operands: np.ndarray, sizes: Mapping[str, int] | None = None
                   ) -> np.ndarray:
    """Evaluate a windowed spec (no ``...``) as plain einsum with index patterns.

    Each window ``(s h + d u)`` on an axis becomes a fresh letter ``X`` plus an
    extra operand ``P[X, h, u] = 1 if X == s*h + d*u``.  An output window gets
    the length ``s*(h-1) + d*(u-1) + 1`` (scatter-add).

    >>> x = np.arange(5.0)
    >>> pattern_einsum("(h+u)->h", x, sizes={"u": 2})
    array([1., 3., 5., 7.])
    """
    lhs, rhs = spec.replace(" ", "").split("->")
    ins = [_tokens(t) for t in lhs.split(",")]
    out = _tokens(rhs)
    shapes = [np.shape(a) for a in operands]
    found = _window_sizes(ins, shapes, sizes or {})
    free = iter(c for c in "ABCDEFGHIJKLMNOPQRSTUVWXYZ"
                if c not in lhs + rhs)
    terms, arrays = [], [np.asarray(a, dtype=np.float64) for a in operands]
    patterns, pattern_arrays = [], []

    def plain(toks, shape):
        letters = []
        for j, tok in enumerate(toks):
            if isinstance(tok, str):
                letters.append(tok)
                continue
            s, h, d, u = tok
            x = next(free)
            length = shape[j] if shape is not None else s * (found[h] - 1) + d * (found[u] - 1) + 1
            patterns.append(x + h + u)
            pattern_arrays.append(_pattern(length, s, found[h], d, found[u]))
            letters.append(x)
        return "".join(letters)

    terms = [plain(toks, shape) for toks, shape in zip(ins, shapes)]
    out_term = plain(out, None)
    full = ",".join(terms + patterns) + "->" + out_term
    return np.einsum(full, *arrays, *pattern_arrays)


# ----------------------------------------------------------- loop references
def conv2d_loop(x: np.ndarray, w: np.ndarray, stride: int = 1, dilation: int = 1) -> np.ndarray:
    """Cross-correlation ``y[b,h,w,k] = sum x[b, s*h+d*u, s*w+d*v, c] w[u,v,c,k]``."""
    B, H, W, C = x.shape
    KH, KW, _, K = w.shape
    Ho = (H - dilation * (KH - 1) - 1) // stride + 1
    Wo = (W - dilation * (KW - 1) - 1) // stride + 1
    y = np.zeros((B, Ho, Wo, K), dtype=np.float64)
    for b, h, ww, k in itertools.product(range(B), range(Ho), range(Wo), range(K)):
        acc = 0.0
        for u, v, c in itertools.product(range(KH), range(KW), range(C)):
            acc += x[b, stride * h + dilation * u, stride * ww + dilation * v, c] * w[u, v, c, k]
        y[b, h, ww, k] = acc
    return y


def pool2d_loop(x: np.ndarray, size: int, stride: int, reduce: str) -> np.ndarray:
    """Pooling over ``size x size`` windows at ``stride``; ``reduce`` in sum/mean/max."""
    B, H, W, C = x.shape
    Ho, Wo = (H - size) // stride + 1, (W - size) // stride + 1
    y = np.zeros((B, Ho, Wo, C), dtype=np.float64)
    fn = {"sum": np.sum, "mean": np.mean, "max": np.max}[reduce]
    for b, h, w, c in itertools.product(range(B), range(Ho), range(Wo), range(C)):
        y[b, h, w, c] = fn(x[b, stride * h:stride * h + size, stride * w:stride * w + size, c])
    return y


def max_pool2d_vjp_loop(x: np.ndarray, size: int, stride: int, dy: np.ndarray) -> np.ndarray:
    """Exact max-pool gradient (distinct values): ``dy`` routed to each argmax."""
    B, H, W, C = x.shape
    _, Ho, Wo, _ = dy.shape
    dx = np.zeros(x.shape, dtype=np.float64)
    for b, h, w, c in itertools.product(range(B), range(Ho), range(Wo), range(C)):
        win = x[b, stride * h:stride * h + size, stride * w:stride * w + size, c]
        u, v = np.unravel_index(np.argmax(win), win.shape)
        dx[b, stride * h + u, stride * w + v, c] += dy[b, h, w, c]
    return dx


def scatter2d_loop(p: np.ndarray, stride: int = 1, dilation: int = 1) -> np.ndarray:
    """Adjoint of a window read: ``y[b, s*h+d*u, s*w+d*v, c] += p[b,h,w,u,v,c]``."""
    B, Ho, Wo, KH, KW, C = p.shape
    H = stride * (Ho - 1) + dilation * (KH - 1) + 1
    W = stride * (Wo - 1) + dilation * (KW - 1) + 1
    y = np.zeros((B, H, W, C), dtype=np.float64)
    for b, h, w, u, v in itertools.product(range(B), range(Ho), range(Wo), range(KH), range(KW)):
        y[b, stride * h + dilation * u, stride * w + dilation * v, :] += p[b, h, w, u, v, :]
    return y


def distinct_values(rng: np.random.Generator, shape: Sequence[int]) -> np.ndarray:
    """Random float64 values at least 0.1 apart (max has no ties, FD stays on one side)."""
    n = int(np.prod(shape, dtype=np.int64))
    return (rng.permutation(n).astype(np.float64) * 0.1 + rng.uniform(0, 0.01)).reshape(shape)


def numeric_vjp(fn: Callable[..., np.ndarray], args: Sequence[np.ndarray], cotangent,
                eps: float = 1e-6) -> tuple[np.ndarray, ...]:
    """Finite-difference VJP of ``fn`` (plain arrays in and out) for every argument."""
    args = [np.array(a, dtype=np.float64) for a in args]
    cot = np.asarray(cotangent, dtype=np.float64)
    grads = []
    for i in range(len(args)):
        def scalar(x, i=i):
            probe = list(args)
            probe[i] = x
            return np.sum(cot * np.asarray(fn(*probe), dtype=np.float64))
        grads.append(numeric_grad(scalar, args[i], eps))
    return tuple(grads)


def reduce_window_loop(spec: str, x: np.ndarray, sizes: Mapping[str, int], reduce: str
                       ) -> np.ndarray:
    """One-operand windowed spec with a plain output, reduced by max or mean.

    The operand is first gathered to every index of its term (an exact 0/1
    pattern einsum with nothing summed), then reduced over the indices the
    output lacks.
    """
    lhs, out = spec.replace(" ", "").split("->")
    names = "".join(dict.fromkeys(
        c for tok in _tokens(lhs) for c in ((tok,) if isinstance(tok, str) else tok[1::2])))
    gathered = pattern_einsum(f"{lhs}->{names}", x, sizes=sizes)
    axes = tuple(i for i, c in enumerate(names) if c not in out)
    kept = "".join(c for c in names if c in out)
    if reduce == "max":
        core = gathered.max(axis=axes) if axes else gathered
    else:
        core = gathered.mean(axis=axes) if axes else gathered
    return np.transpose(core, [kept.index(c) for c in out])
