"""contractnet against the best einsum baseline over random specs.

Draws random two- and three-operand specs (two to six indices of sizes 2
to 96, an index repeated inside one operand now and then, an output of
any subset of the indices in any order) on float32 or float64 operands,
each C-ordered, a transposed view, or strided (every other element along
one axis), and times, in one process, round-robin, each sample the best
of ``--best-of`` calls:

- **forward**: ``cn.einsum`` against the fastest of ``numpy.einsum``
  (``optimize=False``), ``numpy.einsum(optimize="greedy")`` and
  ``opt_einsum.contract``;
- **forward+backward**: ``cn.vjp`` forward and backward against that
  fastest forward plus, for each operand, the fastest of the three on its
  transposed spec (``cn.backward_specs``) run on the same operands and a
  cotangent.  numpy refuses a transposed spec that writes an index no
  other term has (the gradient is broadcast along it): the baseline
  computes it without that index and copies it broadcast.  A transposed
  spec that writes a repeated index (a diagonal), which only contractnet's
  engine runs, leaves its case without a forward+backward ratio.

Specs whose fastest baseline forward takes under 50 µs are drawn again:
on smaller ones contractnet's fixed cost per call (about 10 µs, see the
main README) is much of the time, which these ratios are not meant to
measure.

Each ratio is contractnet's time over the baseline's (median of the
rounds).  The tables give the median, the 90th percentile, the largest
ratio and how many cases are over 1.3, then the slowest cases with their
shapes and layouts.  Run it on purpose, one BLAS thread, never by
pytest::

    env -u OPENBLAS_CORETYPE -u OPENBLAS_L2_SIZE \\
        python benchmarks/spec_fuzz.py [--cases 400] [--seed 5] [--threads 1]
"""
from __future__ import annotations

import argparse
import math
import statistics
from typing import Callable, NamedTuple

import numpy as np
import opt_einsum

import contractnet as cn
from contractnet.arguments import int_option
from contractnet.bench_timing import (MAX_THREADS, blas_threads, interleave, machine_lines,
                                       time_sample)

SIZES = (2, 3, 4, 5, 8, 12, 16, 24, 32, 48, 64, 96)
LAYOUTS = ("C", "transposed", "strided")
LETTERS = "abcdef"
#: Drawn specs outside these bounds are drawn again: every operand at most
#: MAX_OPERAND elements, the product of all sizes at most MAX_PRODUCT, and
#: the fastest baseline forward at least MIN_SECONDS.
MAX_OPERAND = 1 << 19
MAX_PRODUCT = 1 << 24
MIN_SECONDS = 50e-6
SLOW = 1.3


class Case(NamedTuple):
    spec: str
    operands: tuple[np.ndarray, ...]
    layouts: tuple[str, ...]


def draw_case(rng: np.random.Generator) -> Case | None:
    """A random case, or None where its sizes fall outside the bounds
    (:func:`worth_timing` tells whether it is large enough to time)."""
    n_ops, n_idx = int(rng.integers(2, 4)), int(rng.integers(2, 7))
    names = LETTERS[:n_idx]
    size = {n: int(rng.choice(SIZES)) for n in names}
    terms = []
    for _ in range(n_ops):
        term = [n for n in names if rng.random() < 0.55] or [str(rng.choice(list(names)))]
        if rng.random() < 0.08:  # a repeated index: a diagonal
            term.append(str(rng.choice(term)))
        rng.shuffle(term)
        terms.append("".join(term))
    used = sorted(set("".join(terms)))
    out = "".join(n for n in rng.permutation(used) if rng.random() < 0.45)
    spec = ",".join(terms) + "->" + out
    shapes = [[size[n] for n in t] for t in terms]
    if (math.prod(size[n] for n in used) > MAX_PRODUCT
            or any(math.prod(shape) > MAX_OPERAND for shape in shapes)):
        return None
    dtype = rng.choice([np.float32, np.float64])
    layouts = tuple(str(rng.choice(LAYOUTS)) for _ in terms)
    operands = tuple(laid_out(rng, shape, dtype, layout) for shape, layout in zip(shapes, layouts))
    return Case(spec, operands, layouts)


def worth_timing(case: Case) -> bool:
    """Whether the fastest baseline forward of ``case`` takes MIN_SECONDS or more."""
    calls = fastest_einsum(case.spec, case.operands).values()
    return min(time_sample(f, best_of=3) for f in calls) >= MIN_SECONDS


def laid_out(rng: np.random.Generator, shape: list[int], dtype, layout: str) -> np.ndarray:
    """A random array of ``shape``: C-ordered, a view of a C-ordered array
    with its axes reversed, or every other element along a random axis."""
    if layout == "transposed" and len(shape) > 1:
        return rng.standard_normal(shape[::-1]).astype(dtype).T
    if layout == "strided" and shape:
        axis = int(rng.integers(len(shape)))
        wide = list(shape)
        wide[axis] *= 2
        return np.moveaxis(np.moveaxis(rng.standard_normal(wide).astype(dtype), axis, 0)[::2],
                           0, axis)
    return rng.standard_normal(shape).astype(dtype)


def fastest_einsum(spec: str, operands) -> dict[str, Callable[[], np.ndarray]]:
    """The three baselines for ``spec`` on ``operands``, each a call."""
    return {"numpy": lambda: np.einsum(spec, *operands),
            "numpy greedy": lambda: np.einsum(spec, *operands, optimize="greedy"),
            "opt_einsum": lambda: opt_einsum.contract(spec, *operands)}


def gradient_baselines(transposed: str, reads, shape
                       ) -> dict[str, Callable[[], np.ndarray]] | None:
    """The three baselines for a transposed spec, writing its indices that
    no other term has by a broadcast copy; None for a repeated output index."""
    inputs, out = transposed.split("->")
    if len(set(out)) != len(out):
        return None
    read = set(inputs.replace(",", ""))
    kept = "".join(n for n in out if n in read)
    calls = fastest_einsum(f"{inputs}->{kept}", reads)
    if kept == out:
        return calls
    kept_shape = [d if n in read else 1 for n, d in zip(out, shape)]
    return {name: (lambda f=f: np.broadcast_to(f().reshape(kept_shape), shape).copy())
            for name, f in calls.items()}


def time_case(case: Case, rounds: int, best_of: int) -> tuple[float, float | None]:
    """(forward ratio, forward+backward ratio or None) for one case."""
    spec, operands = case.spec, case.operands
    forward = interleave({"cn": lambda: cn.einsum(spec, *operands),
                          **fastest_einsum(spec, operands)}, rounds, best_of=best_of)
    fwd_base = [min(t) for t in zip(*(forward[k] for k in forward if k != "cn"))]
    fwd_ratio = statistics.median(c / b for c, b in zip(forward["cn"], fwd_base))
    out = np.einsum(spec, *operands)
    cotangent = np.random.default_rng(0).standard_normal(out.shape).astype(out.dtype)
    shapes = [x.shape for x in operands]
    backward = []
    for i, transposed in enumerate(cn.backward_specs(spec, *shapes)):
        reads = list(operands)  # the transposed spec reads the cotangent in place of operand i
        reads[i] = cotangent
        baselines = gradient_baselines(transposed, reads, shapes[i])
        if baselines is None:
            return fwd_ratio, None
        backward.append(baselines)

    def cn_both():
        _, vjp_fn = cn.vjp(lambda *xs: cn.einsum(spec, *xs), *operands)
        return vjp_fn(cotangent)
    calls = {"cn": cn_both}
    calls |= {f"forward {k}": f for k, f in fastest_einsum(spec, operands).items()}
    for i, baselines in enumerate(backward):
        calls |= {f"operand {i} {k}": f for k, f in baselines.items()}
    both = interleave(calls, rounds, best_of=best_of)
    ratios = []
    for r, cn_time in enumerate(both["cn"]):
        base = min(both[f"forward {k}"][r] for k in ("numpy", "numpy greedy", "opt_einsum"))
        base += sum(min(both[f"operand {i} {k}"][r] for k in ("numpy", "numpy greedy",
                                                                "opt_einsum"))
                    for i in range(len(backward)))
        ratios.append(cn_time / base)
    return fwd_ratio, statistics.median(ratios)


def summary(ratios: list[float]) -> str:
    if not ratios:  # no case drawn has this pass (a diagonal written has no backward here)
        return "| - | - | - | no cases |"
    ordered = sorted(ratios)
    p90 = ordered[min(len(ordered) - 1, math.ceil(0.9 * len(ordered)) - 1)]
    slow = sum(r > SLOW for r in ordered)
    return (f"| {statistics.median(ordered):.2f} | {p90:.2f} | {ordered[-1]:.2f} "
            f"| {slow} of {len(ordered)} |")


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--cases", type=int_option(1), default=400)
    parser.add_argument("--seed", type=int_option(0), default=5)
    parser.add_argument("--rounds", type=int_option(1), default=5,
                        help="round-robin rounds per case")
    parser.add_argument("--best-of", type=int_option(1), default=3,
                        help="calls per sample, fastest kept")
    parser.add_argument("--threads", type=int_option(1, MAX_THREADS), default=1,
                        help="BLAS threads")
    parser.add_argument("--worst", type=int_option(0), default=10, help="slowest cases listed")
    args = parser.parse_args(argv)
    rng = np.random.default_rng(args.seed)
    rows = []
    with blas_threads(args.threads):
        for line in machine_lines():
            print(line)
        while len(rows) < args.cases:
            case = draw_case(rng)
            if case is not None and worth_timing(case):
                rows.append((case, *time_case(case, args.rounds, args.best_of)))
    forward = [f for _, f, _ in rows]
    both = [b for _, _, b in rows if b is not None]
    print(f"\n{args.cases} cases (seed {args.seed}), {args.threads} BLAS thread(s), "
          f"{args.rounds} rounds, each sample the best of {args.best_of} calls; "
          f"contractnet over the fastest baseline:\n")
    print("| | median | 90th percentile | max | cases over 1.3 |")
    print("|---|---|---|---|---|")
    print(f"| forward {summary(forward)}")
    print(f"| forward+backward {summary(both)}")
    for label, column in (("forward", 1), ("forward+backward", 2)):
        ranked = sorted((r for r in rows if r[column] is not None), key=lambda r: -r[column])
        print(f"\nslowest {label}:")
        for row in ranked[:args.worst]:
            case = row[0]
            shapes = " ".join(str(x.shape) for x in case.operands)
            print(f"  {row[column]:.2f}  {case.spec}  {shapes}  {case.operands[0].dtype}  "
                  f"{'/'.join(case.layouts)}")


if __name__ == "__main__":
    main()
