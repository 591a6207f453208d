"""The order in which a GEMM operand is copied: slow against fast inner loops.

A two-operand contraction whose operand is not a view of a matrix copies
that operand first, laid out as the GEMM asks: its batch axes, then its own
axes and the summed ones, the group holding its fastest axis innermost,
each group in memory order.  numpy's copy runs its inner loop along the
innermost axis.  Where the operand's fastest axis holds 2-4 elements and
the copy cannot join it with the next axis out, that loop covers a few
elements ("short"); where the innermost axis's elements lie a page or more
apart, every read lands on another page ("far").  ``plan_pair`` then
changes the layout (``contractnet.copy_order.copy_layout``): its own group
goes innermost, in memory order or with a long axis moved innermost, or
the summed group goes innermost, where that puts innermost an axis of 16
or more elements less than a page apart.

This script draws random such operands (3-5 axes of 2-255 elements, each
a batch, own or summed axis at random, float32 and float64, some with a
sliced axis) and times ``numpy.ascontiguousarray`` in the layout asked for
against the layout the rule picks; where the rule keeps the layout, against
the inner group's longest axis moved innermost, page or no page (where
that is another layout).  Run it
on purpose, never by pytest::

    env -u OPENBLAS_CORETYPE -u OPENBLAS_L2_SIZE OPENBLAS_NUM_THREADS=1 \\
        python benchmarks/copy_order.py [--cases 300] [--seed 5]
"""
from __future__ import annotations

import argparse
import math

import numpy as np

from contractnet.arguments import int_option
from contractnet.bench_timing import calls_per_sample, machine_lines, ratio_table, time_sample
from contractnet.copy_order import copy_layout, short_inner_loop, slow_inner_loop
from contractnet.pair import _innermost, _memory_order

SIZES = (2, 3, 4, 5, 7, 8, 12, 16, 17, 32, 50, 64, 96, 128, 255)


def best_time(fn) -> float:
    """Best of 5 mean times of ``fn`` in µs, each over calls lasting 2 ms."""
    return time_sample(fn, calls_per_sample(fn, 2e-3), best_of=5) * 1e6


def draw_operand(rng: np.random.Generator):
    """A random GEMM operand whose layout asked for copies it with a slow
    inner loop, as (array, names, batch, own, summed, own_inner), or None
    where the draw does not qualify."""
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
    names = "abcde"[:rank]
    size, stride = dict(zip(names, x.shape)), dict(zip(names, x.strides))
    role = rng.choice(["batch", "own", "summed"], size=rank, p=[0.2, 0.4, 0.4])
    batch, own, summed = ([n for n, r in zip(names, role) if r == kind]
                          for kind in ("batch", "own", "summed"))
    if not own or not summed:
        return None
    own, summed = _memory_order(own, stride), _memory_order(summed, stride)
    # the group holding the fastest axis goes innermost; where that is a batch
    # axis, the summed group does in a first operand and the own group in a second
    fastest = _innermost(names, stride, size)
    own_inner = fastest in own if fastest not in batch else bool(rng.integers(2))
    inner, outer = (own, summed) if own_inner else (summed, own)
    if not slow_inner_loop(inner, stride, size, (outer, batch)):
        return None
    return x, names, batch, own, summed, own_inner


def copy_time(x: np.ndarray, names: str, order: list[str]) -> float:
    """µs to copy ``x`` C-ordered with its axes in ``order``."""
    view = x.transpose([names.index(n) for n in order])
    return best_time(lambda: np.ascontiguousarray(view))


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--cases", type=int_option(1), default=300)
    parser.add_argument("--seed", type=int_option(0), default=5)
    args = parser.parse_args(argv)
    rng = np.random.default_rng(args.seed)
    rows: dict[tuple[str, str], list] = {}
    while sum(map(len, rows.values())) < args.cases:
        drawn = draw_operand(rng)
        if drawn is None:
            continue
        x, names, batch, own, summed, own_inner = drawn
        asked = batch + (summed + own if own_inner else own + summed)
        new_own, new_inner = copy_layout(own, summed, dict(zip(names, x.strides)),
                                         dict(zip(names, x.shape)), own_inner, batch)
        if (new_own, new_inner) != (own, own_inner):
            kind = "reordered" if new_inner == own_inner else "own" if new_inner else "summed"
            other = batch + (summed + new_own if new_inner else new_own + summed)
        else:  # what putting the inner group's longest axis innermost would have cost
            inner = own if own_inner else summed
            longest = max(inner, key=lambda n: x.shape[names.index(n)])
            kind, other = "kept", [n for n in asked if n != longest] + [longest]
            if other == asked:
                continue
        inner = own if own_inner else summed
        stride, size = dict(zip(names, x.strides)), dict(zip(names, x.shape))
        slow = "short" if short_inner_loop(inner, stride, size, (own if inner is summed
                                                               else summed, batch)) else "far"
        rows.setdefault((slow, kind), []).append((copy_time(x, names, asked),
                                                  copy_time(x, names, other)))
    for line in machine_lines():
        print(line)
    labels = {"reordered": "own group, longest near axis innermost",
              "own": "own group innermost, not summed",
              "summed": "summed group innermost, not own",
              "kept": "kept (vs longest axis innermost)"}
    table = {f"{slow}: {labels[kind]}": rows[slow, kind]
             for slow in ("short", "far") for kind in labels if (slow, kind) in rows}
    for line in ratio_table(table, "slow loop: layout"):
        print(line)
    print("ratio: copy time in the other layout over copy time in the layout asked for; "
          "faster < 0.9, slower > 1.1")


if __name__ == "__main__":
    main()
