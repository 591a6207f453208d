"""Where the head's fixed per-call cost goes, and why it grows after a GEMM.

The head ``"bnmd,nmdk->bk"`` runs the same three BLAS calls as numpy
flatten+matmul; what it adds is Python work around them.  Three parts:

1. **Warm cost**: forward+backward through ``cn.vjp`` against flatten+matmul
   on a tiny head (B=N=M=D=K=2), where the GEMMs cost almost nothing.
2. **Segments**: at a real shape, the time from the start of the call to
   the first GEMM, between the GEMMs and after the last, for both methods.
   Both route their GEMMs through one timing wrapper (contractnet's through
   its backend seam, :data:`contractnet.backend.backend`), so the segments
   hold exactly the Python work each method does around its BLAS calls.
3. **What makes Python slow right after a GEMM**: flatten+matmul with a
   filler after each GEMM, twice: 24 new tuples of one size made from one
   tuple, and 24 new tuples of 24 sizes made from 24 tuples (the same work
   on far more distinct memory).

Parts 2 and 3 give medians over many rounds in one process (part 2 alternates
the two methods, part 3 shuffles its three calls every round)::

    env -u OPENBLAS_CORETYPE -u OPENBLAS_L2_SIZE python benchmarks/call_overhead.py \
        [--shape 128,4,4,50,500] [--rounds 200]
"""
from __future__ import annotations

import argparse
import random
import statistics
import time
import timeit

import numpy as np

import contractnet as cn
from contractnet.backend import backend
from contractnet.bench_presets import HeadShape

SEGMENTS = ("before GEMM 1", "GEMM 1", "between 1 and 2", "GEMM 2", "between 2 and 3",
            "GEMM 3", "after GEMM 3")


def head_arrays(shape: HeadShape, seed: int = 0):
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((shape.B, shape.N, shape.M, shape.D), dtype=np.float32)
    w = rng.standard_normal((shape.N, shape.M, shape.D, shape.K), dtype=np.float32)
    dy = rng.standard_normal((shape.B, shape.K), dtype=np.float32)
    return x, w, dy


def head_methods(shape: HeadShape, matmul=np.matmul):
    """``(contraction, flatten)``: forward+backward each; flatten multiplies with ``matmul``."""
    x, w, dy = head_arrays(shape)
    xf, wf = x.reshape(shape.B, -1), w.reshape(-1, shape.K)

    def contraction():
        out, pullback = cn.vjp(lambda a, b: cn.einsum("bnmd,nmdk->bk", a, b), x, w)
        return pullback(dy)

    def flatten():
        matmul(xf, wf)
        return matmul(dy, wf.T).reshape(x.shape), matmul(xf.T, dy).reshape(w.shape)
    return contraction, flatten


def warm_cost(rounds: int) -> None:
    contraction, flatten = head_methods(HeadShape(2, 2, 2, 2, 2))
    per_call = {}
    for name, call in (("cn.vjp", contraction), ("flatten+matmul", flatten)):
        per_call[name] = min(timeit.repeat(call, number=rounds, repeat=5)) / rounds
    extra = per_call["cn.vjp"] - per_call["flatten+matmul"]
    print("1. warm, tiny head (2,2,2,2,2), best of 5 x", rounds, "calls:")
    for name, seconds in per_call.items():
        print(f"   {name:16s} {seconds * 1e6:7.1f} us")
    print(f"   cn.vjp adds {extra * 1e6:.1f} us per forward+backward\n")


def segments(shape: HeadShape, rounds: int) -> None:
    stamps: list[float] = []
    clock, plain = time.perf_counter, backend.matmul

    def timed_matmul(a, b):
        stamps.append(clock())
        out = plain(a, b)
        stamps.append(clock())
        return out

    contraction, flatten = head_methods(shape, timed_matmul)
    rows: dict[str, list[list[float]]] = {"flatten+matmul": [], "cn.vjp": []}
    backend.matmul = timed_matmul
    try:
        for r in range(rounds + 3):
            for name, table in (rows.items() if r % 2 == 0 else list(rows.items())[::-1]):
                call = flatten if name == "flatten+matmul" else contraction
                stamps.clear()
                start = clock()
                call()
                end = clock()
                if len(stamps) != 6:
                    raise SystemExit(f"{name} made {len(stamps) // 2} GEMM calls, not 3")
                if r >= 3:  # warm-up rounds are not kept
                    edges = [start, *stamps, end]
                    table.append([b - a for a, b in zip(edges, edges[1:])])
    finally:
        backend.matmul = plain
    print(f"2. segments at {shape.label}, float32, median of {rounds} alternating rounds (us):")
    print(f"   {'':16s}" + "".join(f"{s:>17s}" for s in SEGMENTS) + f"{'Python, total':>16s}")
    for name, table in rows.items():
        med = [statistics.median(col) * 1e6 for col in zip(*table)]
        python = sum(m for s, m in zip(SEGMENTS, med) if not s.startswith("GEMM"))
        print(f"   {name:16s}" + "".join(f"{m:17.1f}" for m in med) + f"{python:16.1f}")
    print()


#: Sources for the fillers: one tuple, and tuples of 1 to 24 elements.
_ONE = tuple(range(12))
_MANY = [tuple(range(n)) for n in range(1, 25)]


def _repeated() -> list:
    """24 new tuples, all of one size, made from one tuple."""
    return [_ONE + (i,) for i in range(24)]


def _varied() -> list:
    """24 new tuples of 24 sizes, made from 24 tuples: as much work as
    :func:`_repeated`, on far more distinct memory."""
    return [t + (i,) for i, t in enumerate(_MANY)]


def shuffled_rounds(calls: dict, rounds: int, seed: int = 0) -> dict[str, list[float]]:
    """Seconds per call of each, every round in a fresh random order (a fixed
    order favours whichever call follows a given one)."""
    for call in calls.values():
        for _ in range(3):
            call()
    times: dict[str, list[float]] = {name: [] for name in calls}
    order, rng = list(calls), random.Random(seed)
    for _ in range(rounds):
        rng.shuffle(order)
        for name in order:
            start = time.perf_counter()
            calls[name]()
            times[name].append(time.perf_counter() - start)
    return times


def filler_cost(shape: HeadShape, rounds: int) -> None:
    x, w, dy = head_arrays(shape)
    xf, wf = x.reshape(shape.B, -1), w.reshape(-1, shape.K)

    def with_filler(fill):
        def call():
            xf @ wf
            fill()
            dx = (dy @ wf.T).reshape(x.shape)
            fill()
            dw = (xf.T @ dy).reshape(w.shape)
            fill()
            return dx, dw
        return call

    fills = {"repeated": _repeated, "varied": _varied}
    warm = {k: min(timeit.repeat(f, number=2000, repeat=5)) / 2000 for k, f in fills.items()}
    calls = {"none": with_filler(lambda: None)}
    calls.update({k: with_filler(f) for k, f in fills.items()})
    times = shuffled_rounds(calls, rounds)
    base = times["none"]
    print(f"3. flatten+matmul at {shape.label} with a filler after each GEMM "
          f"(median extra time over no filler, {rounds} rounds in random order):")
    for k in fills:
        extra = statistics.median(t - b for t, b in zip(times[k], base))
        print(f"   {k:8s} filler: {3 * warm[k] * 1e6:5.1f} us warm in all, "
              f"{extra * 1e6:6.1f} us extra after the GEMMs")


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--shape", default="128,4,4,50,500", help="B,N,M,D,K")
    parser.add_argument("--rounds", type=int, default=200)
    args = parser.parse_args(argv)
    try:
        shape = HeadShape(*(int(v) for v in args.shape.split(",")))
    except (TypeError, ValueError):
        parser.error(f"--shape wants five integers B,N,M,D,K, got {args.shape!r}")
    if min(shape.as_dict().values()) < 1 or args.rounds < 9:
        parser.error("--shape needs positive sizes and --rounds at least 9")
    warm_cost(20000)
    segments(shape, args.rounds)
    filler_cost(shape, args.rounds)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
