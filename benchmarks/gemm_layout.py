"""Why a gradient keeps its primal's memory layout, even where BLAS would
write the transposed product faster.

Each of the head's three GEMMs can be run two ways with the same answer:
``a @ b``, which writes a C-ordered result, or ``(b.T @ a.T).T``, which
writes the same numbers in Fortran order (BLAS swaps the roles of its M and
N dimensions).  On some shapes the second is faster.  ``cn.vjp`` still
writes every gradient C-ordered like its primal, because what a layout saves
in one GEMM it can cost again downstream.  This script measures both sides
of that trade, side by side in one process:

1. **The GEMMs**, both ways, at the three acceptance shapes: the forward
   ``x @ w``, the activation's gradient ``dy @ w.T`` and the weight's
   gradient ``x.T @ dy`` (flattened).  The two answers are checked to be
   bitwise equal before timing.
2. **What a transposed gradient costs its consumers**: the activation's
   gradient reshaped back to ``(B, N, M, D)`` in each layout, multiplied by a
   ReLU mask (the next layer's backward), and the weight's gradient in each
   layout applied as an SGD step ``p -= lr * g``.

Medians over rounds that visit the cases in shuffled order::

    env -u OPENBLAS_CORETYPE -u OPENBLAS_L2_SIZE python benchmarks/gemm_layout.py [--rounds 15]
"""
from __future__ import annotations

import argparse
import random
import statistics
import time

import numpy as np

from contractnet.bench_presets import ACCEPTANCE_HEADS, HeadShape


def _seconds_per_call(fn, calls: int) -> float:
    start = time.perf_counter()
    for _ in range(calls):
        fn()
    return (time.perf_counter() - start) / calls


def shuffled_medians(cases: dict, rounds: int, calls: int, seed: int = 0) -> dict[str, float]:
    """Median seconds per call of each case; every round visits them in a new order."""
    rng = random.Random(seed)
    for fn in cases.values():
        _seconds_per_call(fn, calls)  # warm up
    times: dict[str, list[float]] = {name: [] for name in cases}
    for _ in range(rounds):
        names = list(cases)
        rng.shuffle(names)
        for name in names:
            times[name].append(_seconds_per_call(cases[name], calls))
    return {name: statistics.median(t) for name, t in times.items()}


def gemm_cases(shape: HeadShape, seed: int = 0) -> dict[str, tuple]:
    """The head's three GEMMs, each as ``(C-ordered, Fortran-ordered)`` calls."""
    rng = np.random.default_rng(seed)
    features = shape.N * shape.M * shape.D
    x = rng.standard_normal((shape.B, features), dtype=np.float32)
    w = rng.standard_normal((features, shape.K), dtype=np.float32)
    dy = rng.standard_normal((shape.B, shape.K), dtype=np.float32)
    cases = {"forward x @ w": (lambda: x @ w, lambda: (w.T @ x.T).T),
             "activation grad dy @ w.T": (lambda: dy @ w.T, lambda: (w @ dy.T).T),
             "weight grad x.T @ dy": (lambda: x.T @ dy, lambda: (dy.T @ x).T)}
    for name, (c_order, f_order) in cases.items():
        if not np.array_equal(c_order(), f_order()):
            raise SystemExit(f"{shape.label} {name}: the two layouts give different answers")
    return cases


def gemm_table(shapes, rounds: int) -> list[str]:
    lines = ["| shape | GEMM | C-ordered result ms | Fortran-ordered ms | Fortran / C |",
             "|---|---|---|---|---|"]
    for shape in shapes:
        cases = gemm_cases(shape)
        calls = max(1, int(0.02 / max(_seconds_per_call(cases["forward x @ w"][0], 1), 1e-6)))
        timed = shuffled_medians({f"{name}|{order}": fn for name, pair in cases.items()
                                  for order, fn in zip("CF", pair)}, rounds, calls)
        for name in cases:
            c, f = timed[f"{name}|C"], timed[f"{name}|F"]
            lines.append(f"| {shape.label} | {name} | {c * 1e3:.3f} | {f * 1e3:.3f} | "
                         f"{f / c:.3f} |")
    return lines


def consumer_table(shape: HeadShape, rounds: int, seed: int = 0) -> list[str]:
    """The cost of a transposed gradient to the work that reads it next."""
    rng = np.random.default_rng(seed)
    act = (shape.B, shape.N, shape.M, shape.D)
    flat_w = (shape.N * shape.M * shape.D, shape.K)
    dx_c = rng.standard_normal(act, dtype=np.float32)
    dx_f = np.asfortranarray(dx_c.reshape(shape.B, -1)).reshape(act)  # as (w @ dy.T).T gives
    x = rng.standard_normal(act, dtype=np.float32)
    dw_c = rng.standard_normal(flat_w, dtype=np.float32)
    dw_f = np.asfortranarray(dw_c)
    p = rng.standard_normal(flat_w, dtype=np.float32)

    def sgd(g):
        def step():
            q = p.copy()
            q -= 0.01 * g
        return step
    cases = {"relu backward|C": lambda: dx_c * (x > 0), "relu backward|F": lambda: dx_f * (x > 0),
             "SGD step (with a copy of p)|C": sgd(dw_c),
             "SGD step (with a copy of p)|F": sgd(dw_f)}
    calls = max(1, int(0.02 / max(_seconds_per_call(cases["SGD step (with a copy of p)|C"], 1),
                                  1e-6)))
    timed = shuffled_medians(cases, rounds, calls)
    lines = [f"Consumers at {shape.label}:", "",
             "| work on the gradient | C-ordered ms | Fortran-ordered ms | Fortran / C |",
             "|---|---|---|---|"]
    for name in ("relu backward", "SGD step (with a copy of p)"):
        c, f = timed[f"{name}|C"], timed[f"{name}|F"]
        lines.append(f"| {name} | {c * 1e3:.3f} | {f * 1e3:.3f} | {f / c:.3f} |")
    return lines


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=15,
                        help="rounds of shuffled cases (default 15)")
    args = parser.parse_args(argv)
    if args.rounds < 1:
        parser.error("--rounds must be at least 1")
    print("\n".join(gemm_table(ACCEPTANCE_HEADS, args.rounds)))
    print()
    print("\n".join(consumer_table(ACCEPTANCE_HEADS[0], args.rounds)))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
