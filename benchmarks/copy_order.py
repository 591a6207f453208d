"""The order in which a GEMM operand is copied: short against long inner loops.

A two-operand contraction whose operand is not a view of a matrix copies
that operand first.  numpy's copy runs its inner loop along the copy's
innermost axis; where the operand's fastest axis holds 2-4 elements and is
not nested in the next one out, the copy in memory order runs a loop per
few elements.  ``plan_pair`` then puts a long axis of the same group
innermost instead, where its elements lie less than a page apart
(``contractnet.pair._copies_fast_along``).

This script draws random such copies (3-5 axes of 2-255 elements, float32
and float64, some with a sliced axis), times ``numpy.ascontiguousarray`` of
the operand in memory order and with its group's longest axis innermost,
and reports the ratio, split by whether the rule takes the second order.
Run it on purpose, never by pytest::

    env -u OPENBLAS_CORETYPE -u OPENBLAS_L2_SIZE OPENBLAS_NUM_THREADS=1 \\
        python benchmarks/copy_order.py [--cases 260] [--seed 5]
"""
from __future__ import annotations

import argparse
import math
import time

import numpy as np

from contractnet.bench_timing import machine_lines
from contractnet.pair import LONG_AXIS, _copies_fast_along, _short_inner_loop

SIZES = (2, 3, 4, 5, 7, 8, 12, 16, 17, 32, 50, 64, 96, 128, 255)


def best_time(fn, repeats: int = 5, floor: float = 2e-3) -> float:
    """Best mean time of ``fn`` in µs over ``repeats`` rounds of at least
    ``floor`` seconds."""
    fn()
    start = time.perf_counter()
    fn()
    calls = max(1, int(floor / max(time.perf_counter() - start, 1e-7)))
    best = math.inf
    for _ in range(repeats):
        start = time.perf_counter()
        for _ in range(calls):
            fn()
        best = min(best, (time.perf_counter() - start) / calls)
    return best * 1e6


def draw_copy(rng: np.random.Generator):
    """A random operand laid out for a copy with a short inner loop, as
    (view in the copy's order, position of its group's longest axis), or
    None where the draw does not qualify."""
    rank = int(rng.integers(3, 6))
    shape = [int(rng.choice(SIZES)) for _ in range(rank)]
    while math.prod(shape) > 3_000_000:
        shape[int(np.argmax(shape))] //= 2
    if math.prod(shape) < 8000:
        return None
    x = rng.random(shape).astype(rng.choice([np.float32, np.float64]))
    if rng.random() < 0.3:
        cut = [slice(None)] * rank
        cut[int(rng.integers(rank))] = slice(None, None, 2)
        x = x[tuple(cut)]
    x = x.transpose(rng.permutation(rank))
    # the group: the trailing axes, ordered as laid out in memory
    start = rank - int(rng.integers(2, rank + 1))
    group = sorted(range(start, rank), key=lambda i: -abs(x.strides[i]))
    x = x.transpose(list(range(start)) + group)
    names = "abcde"[:rank]
    size = dict(zip(names, x.shape))
    stride = dict(zip(names, x.strides))
    inner = list(names[start:])
    if not _short_inner_loop(inner, stride, size):
        return None
    longest = max(range(start, rank), key=lambda i: x.shape[i])
    if x.shape[longest] < LONG_AXIS:
        return None
    return x, longest, _copies_fast_along(names[longest], stride, size)


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--cases", type=int, default=260)
    parser.add_argument("--seed", type=int, default=5)
    args = parser.parse_args(argv)
    rng = np.random.default_rng(args.seed)
    rows = {True: [], False: []}
    while sum(map(len, rows.values())) < args.cases:
        drawn = draw_copy(rng)
        if drawn is None:
            continue
        x, longest, taken = drawn
        moved = x.transpose([i for i in range(x.ndim) if i != longest] + [longest])
        plain = best_time(lambda: np.ascontiguousarray(x))
        reordered = best_time(lambda: np.ascontiguousarray(moved))
        rows[taken].append((reordered / plain, plain, reordered))
    for line in machine_lines():
        print(line)
    print(f"{'longest axis':<28} {'copies':>6} {'median':>7} {'faster':>7} {'slower':>7} "
          f"{'worst':>6} {'total ms':>17}")
    for taken, label in ((True, "< a page apart (taken)"), (False, ">= a page apart (kept)")):
        if not rows[taken]:
            continue
        ratio = np.array([r[0] for r in rows[taken]])
        plain = sum(r[1] for r in rows[taken]) / 1e3
        reordered = sum(r[2] for r in rows[taken]) / 1e3
        print(f"{label:<28} {len(ratio):>6} {np.median(ratio):>7.2f} {(ratio < 0.9).sum():>7} "
              f"{(ratio > 1.1).sum():>7} {ratio.max():>6.2f} {plain:>8.1f} -> {reordered:<7.1f}")
    print("ratio: time with the longest axis innermost over time in memory order; "
          "faster < 0.9, slower > 1.1")


if __name__ == "__main__":
    main()
