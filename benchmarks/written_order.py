"""The order in which numpy.einsum writes a product that sums nothing.

A pair of operands that sums nothing (an outer product, or a Hadamard
product with batch indices) goes to ``numpy.einsum``; in a forward pass
the plan may pick the order of the result (``contractnet.written_order``).
Where no order reads every operand in order, it takes the larger
operand's memory order innermost, where numpy's inner loop along it
covers at least 16 elements and more than along the caller's order.

This script draws random such products (1-3 batch indices, 0-2 own indices
per operand, sizes 2-255, 20,000 to 3 million result elements, float32 and
float64, each operand in a random memory order) where no order reads every
operand in order, and times ``numpy.einsum(..., order="C")`` in the
caller's order against the larger operand's order, split by whether the
rule takes the second.  Run it on purpose, never by pytest::

    env -u OPENBLAS_CORETYPE -u OPENBLAS_L2_SIZE OPENBLAS_NUM_THREADS=1 \\
        python benchmarks/written_order.py [--cases 500] [--seed 11]
"""
from __future__ import annotations

import argparse
import math

import numpy as np

from contractnet.bench_timing import calls_per_sample, machine_lines, ratio_table, time_sample
from contractnet.blocks import ascii_equation
from contractnet.written_order import MIN_RUN, Laid, contiguous_run, inner_order, written_order

SIZES = (2, 3, 4, 6, 8, 10, 16, 17, 32, 50, 64, 96, 128, 255)


def best_time(fn) -> float:
    """Best of 5 mean times of ``fn`` in µs, each over calls lasting 2 ms."""
    return time_sample(fn, calls_per_sample(fn, 2e-3), best_of=5) * 1e6


def laid(rng: np.random.Generator, names: list[str], size: dict, dtype) -> np.ndarray:
    """A random operand with indices ``names``, its axes in a random memory order."""
    stored = list(names)
    rng.shuffle(stored)
    x = rng.standard_normal([size[n] for n in stored]).astype(dtype)
    return x.transpose([stored.index(n) for n in names])


def draw_product(rng: np.random.Generator):
    """A random product that sums nothing, as (a, an, b, bn, keep, size), or
    None where its size is out of range."""
    n_batch, n_a, n_b = int(rng.integers(1, 4)), int(rng.integers(0, 3)), int(rng.integers(0, 3))
    names = list("abcdefgh"[:n_batch + n_a + n_b])
    rng.shuffle(names)
    batch, own_a, own_b = (names[:n_batch], names[n_batch:n_batch + n_a],
                           names[n_batch + n_a:])
    size = {n: int(rng.choice(SIZES)) for n in names}
    if not 20_000 <= math.prod(size.values()) <= 3_000_000:
        return None
    an, bn, keep = batch + own_a, batch + own_b, list(names)
    for group in (an, bn, keep):
        rng.shuffle(group)
    dtype = rng.choice([np.float32, np.float64])
    a, b = laid(rng, an, size, dtype), laid(rng, bn, size, dtype)
    return a, "".join(an), b, "".join(bn), "".join(keep), size


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--cases", type=int, default=500)
    parser.add_argument("--seed", type=int, default=11)
    args = parser.parse_args(argv)
    rng = np.random.default_rng(args.seed)
    rows: dict[bool, list] = {True: [], False: []}
    while sum(map(len, rows.values())) < args.cases:
        drawn = draw_product(rng)
        if drawn is None:
            continue
        a, an, b, bn, keep, size = drawn
        la, lb = (Laid(names, dict(zip(names, x.strides)), x.size, x.itemsize)
                  for x, names in ((a, an), (b, bn)))
        chosen = written_order(keep, size, la, lb)
        if chosen != keep and contiguous_run(chosen, (la, lb), size) >= MIN_RUN:
            continue  # an order that reads every operand in order: not this rule's
        if contiguous_run(keep, (la, lb), size) > 1:
            continue
        big, small = (la, lb) if la.count >= lb.count else (lb, la)
        larger = inner_order(big, small, keep)
        if larger == keep:
            continue
        taken = chosen == larger
        rows[taken].append(tuple(
            best_time(lambda order=order: np.einsum(ascii_equation([an, bn], order), a, b,
                                                    order="C"))
            for order in (keep, larger)))
    for line in machine_lines():
        print(line)
    labels = {True: "larger operand's order taken", False: "caller's order kept"}
    for line in ratio_table({labels[taken]: times for taken, times in rows.items()},
                            "rule"):
        print(line)
    print("ratio: time written in the larger operand's order over time in the caller's; "
          "faster < 0.9, slower > 1.1")


if __name__ == "__main__":
    main()
