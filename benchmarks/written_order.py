"""The order in which numpy.einsum writes a product that sums nothing.

A pair of operands that sums nothing (an outer product, or a Hadamard
product with batch indices) goes to ``numpy.einsum``; in a forward pass
the plan may pick the order of the result (``contractnet.written_order``).
Where no order reads every operand in order, it takes the larger
operand's memory order innermost, where numpy's inner loop along it
covers at least 16 elements and more than along the caller's order.
Where the caller's order reads every operand in order but in a run of
fewer than 16 elements, in a product of 16,384 elements or more (all
drawn here are), it takes an operand's order that reads every operand in
order in a run of 16 or more, else the larger operand's where numpy's
inner loop along it is at least as long.

This script draws random such products (1-3 batch indices, 0-2 own indices
per operand, sizes 2-255, 20,000 to 3 million result elements, float32 and
float64, each operand in a random memory order) and times
``numpy.einsum(..., order="C")`` in the caller's order against the other,
in two tables: products no order reads in order (the larger operand's
order against the caller's, split by whether the rule takes it) and
products the caller's order reads in order in a short run (the order
taken against the caller's; where the caller's is kept, the larger
operand's).  Run it on purpose, never by pytest::

    env -u OPENBLAS_CORETYPE -u OPENBLAS_L2_SIZE OPENBLAS_NUM_THREADS=1 \\
        python benchmarks/written_order.py [--cases 500] [--seed 11]
"""
from __future__ import annotations

import argparse
import math

import numpy as np

from contractnet.arguments import int_option
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


def laid_operands(a, an, b, bn) -> tuple[Laid, Laid]:
    """``a`` and ``b`` as :func:`written_order` reads them."""
    return tuple(Laid(names, dict(zip(names, x.strides)), x.size, x.itemsize)
                 for x, names in ((a, an), (b, bn)))


def time_orders(a, an, b, bn, orders) -> tuple[float, ...]:
    """The best times of numpy.einsum writing the product in each of ``orders``."""
    return tuple(best_time(lambda order=order: np.einsum(ascii_equation([an, bn], order), a, b,
                                                         order="C"))
                 for order in orders)


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--cases", type=int_option(1), default=500,
                        help="products timed in each of the two tables")
    parser.add_argument("--seed", type=int_option(0), default=11)
    args = parser.parse_args(argv)
    rng = np.random.default_rng(args.seed)
    # out of order: no order reads every operand in order; short: the
    # caller's order does, in a run of 2 to MIN_RUN - 1 elements
    out_of_order: dict[bool, list] = {True: [], False: []}
    short: dict[bool, list] = {True: [], False: []}
    wanted = lambda rows: sum(map(len, rows.values())) < args.cases  # noqa: E731
    while wanted(out_of_order) or wanted(short):
        drawn = draw_product(rng)
        if drawn is None:
            continue
        a, an, b, bn, keep, size = drawn
        la, lb = laid_operands(a, an, b, bn)
        chosen = written_order(keep, size, la, lb)
        keep_run = contiguous_run(keep, (la, lb), size)
        big, small = (la, lb) if la.count >= lb.count else (lb, la)
        larger = inner_order(big, small, keep)
        if 2 <= keep_run < MIN_RUN:
            other = chosen if chosen != keep else larger
            if other != keep and wanted(short):
                short[chosen != keep].append(time_orders(a, an, b, bn, (keep, other)))
            continue
        if chosen != keep and contiguous_run(chosen, (la, lb), size) >= MIN_RUN:
            continue  # an order that reads every operand in order: not this rule's
        if keep_run > 1 or larger == keep:
            continue
        if wanted(out_of_order):
            out_of_order[chosen == larger].append(time_orders(a, an, b, bn, (keep, larger)))
    for line in machine_lines():
        print(line)
    print("no order reads every operand in order:")
    labels = {True: "larger operand's order taken", False: "caller's order kept"}
    for line in ratio_table({labels[taken]: times for taken, times in out_of_order.items()},
                            "rule"):
        print(line)
    print("ratio: time written in the larger operand's order over time in the caller's")
    print()
    print(f"the caller's order reads every operand in order, in a run of 2 to {MIN_RUN - 1}:")
    labels = {True: "another order taken", False: "caller's order kept"}
    for line in ratio_table({labels[taken]: times for taken, times in short.items()}, "rule"):
        print(line)
    print("ratio: time written in the order taken (where kept, the larger operand's) "
          "over time in the caller's")
    print("faster < 0.9, slower > 1.1")


if __name__ == "__main__":
    main()
