"""Operands copied into the order of the product they make, before numpy.einsum.

A pair of operands that sums nothing (an outer product, or a Hadamard
product with batch indices) goes to ``numpy.einsum``, written in an order
the caller may fix (a backward pass asks for its primal's).  numpy's loop
runs along that order's innermost index, and reads an operand that holds
the index at a stride other than its item size element by element.
``contractnet.pair.result_order_copies`` then copies the operands not laid
out in the result's order into it first, when numpy's loop gets a run of
at least 16 elements (``MIN_COPIED_RUN``), the result has at least
``MIN_COPIED_PRODUCT`` elements and no copied operand is more than half
of it.

This script draws random such products (0-2 batch indices, 1-2 own indices
per operand, sizes 1-256, ``MIN_COPIED_PRODUCT`` to 3 million result
elements, float32 and float64, each operand C-ordered, Fortran-ordered, in
a random axis order or every other element) whose result's innermost index
an operand holds strided, and times ``numpy.einsum(..., order="C")`` on
the operands as they are against the same after copying them into the
result's order (the operands the rule copies where it copies, else every
operand not laid out so), split by whether the rule copies.  Run it
on purpose, never by pytest::

    env -u OPENBLAS_CORETYPE -u OPENBLAS_L2_SIZE OPENBLAS_NUM_THREADS=1 \\
        python benchmarks/outer_copies.py [--cases 300] [--seed 5]
"""
from __future__ import annotations

import argparse
import math

import numpy as np

from contractnet.arguments import int_option
from contractnet.bench_timing import calls_per_sample, machine_lines, ratio_table, time_sample
from contractnet.blocks import ascii_equation
from contractnet.pair import MIN_COPIED_PRODUCT, result_order_copies

SIZES = (1, 2, 3, 4, 6, 8, 12, 16, 24, 32, 50, 64, 100, 128, 256)
LAYOUTS = ("C", "F", "axes", "every other")


def best_time(fn) -> float:
    """Best of 5 mean times of ``fn`` in µs, each over calls lasting 2 ms."""
    return time_sample(fn, calls_per_sample(fn, 2e-3), best_of=5) * 1e6


def laid(rng: np.random.Generator, names: str, size: dict, dtype, layout: str) -> np.ndarray:
    """A random operand with indices ``names`` in the memory ``layout``."""
    x = rng.standard_normal([size[n] for n in names]).astype(dtype)
    if layout == "F":
        return np.asfortranarray(x)
    if layout == "axes":
        perm = rng.permutation(x.ndim)
        return np.ascontiguousarray(x.transpose(perm)).transpose(np.argsort(perm))
    if layout == "every other":
        wide = np.zeros([2 * n for n in x.shape], dtype)
        wide[tuple(slice(None, None, 2) for _ in x.shape)] = x
        return wide[tuple(slice(None, None, 2) for _ in x.shape)]
    return x


def draw_product(rng: np.random.Generator):
    """A random product that sums nothing, as (a, an, b, bn, keep, size), or
    None where its size is out of range."""
    n_batch, n_a, n_b = int(rng.integers(0, 3)), int(rng.integers(1, 3)), int(rng.integers(1, 3))
    names = list("abcdefgh"[:n_batch + n_a + n_b])
    rng.shuffle(names)
    batch, own_a, own_b = (names[:n_batch], names[n_batch:n_batch + n_a],
                           names[n_batch + n_a:])
    size = {n: int(rng.choice(SIZES)) for n in names}
    if not MIN_COPIED_PRODUCT <= math.prod(size.values()) <= 3_000_000:
        return None
    an, bn, keep = batch + own_a, batch + own_b, list(names)
    for group in (an, bn, keep):
        rng.shuffle(group)
    dtype = rng.choice([np.float32, np.float64])
    a, b = (laid(rng, "".join(t), size, dtype, str(rng.choice(LAYOUTS))) for t in (an, bn))
    return a, "".join(an), b, "".join(bn), "".join(keep), size


def in_result_order(x: np.ndarray, names: str, keep: str) -> np.ndarray:
    """``x`` with its axes in ``keep``'s order, copied C-ordered."""
    return np.ascontiguousarray(x.transpose([names.index(n) for n in keep if n in names]))


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--cases", type=int_option(1), default=300)
    parser.add_argument("--seed", type=int_option(0), default=5)
    args = parser.parse_args(argv)
    rng = np.random.default_rng(args.seed)
    rows: dict[bool, list] = {True: [], False: []}
    while sum(map(len, rows.values())) < args.cases:
        drawn = draw_product(rng)
        if drawn is None:
            continue
        a, an, b, bn, keep, size = drawn
        last = [n for n in keep if size[n] > 1][-1]
        if all(last not in names or x.strides[names.index(last)] == x.itemsize
               for x, names in ((a, an), (b, bn))):
            continue  # numpy reads every operand in runs already: not this rule's
        strides = [dict(zip(names, x.strides)) for x, names in ((a, an), (b, bn))]
        rule = result_order_copies(an, strides[0], bn, strides[1], size,
                                   (a.itemsize, b.itemsize), keep)
        # what the rule copies where it copies, else every operand out of order
        copy = (True, True) if rule is None else tuple(p is not None for p in rule)
        terms = ["".join(n for n in keep if n in t) if c else t for t, c in zip((an, bn), copy)]
        as_they_are, copied = ascii_equation([an, bn], keep), ascii_equation(terms, keep)
        rows[rule is not None].append((
            best_time(lambda: np.einsum(as_they_are, a, b, order="C")),
            best_time(lambda: np.einsum(
                copied, *(in_result_order(x, t, keep) if c else x
                          for x, t, c in zip((a, b), (an, bn), copy)), order="C"))))
    for line in machine_lines():
        print(line)
    labels = {True: "copied by the rule", False: "read as they are"}
    for line in ratio_table({labels[taken]: times for taken, times in rows.items()}, "rule"):
        print(line)
    print("ratio: time with the operands copied into the result's order over time reading "
          "them as they are; faster < 0.9, slower > 1.1")


if __name__ == "__main__":
    main()
