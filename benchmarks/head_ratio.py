"""The head's acceptance ratios, measured side by side in one process.

1. ``"bnmd,nmdk->bk"`` forward+backward through ``cn.vjp`` against numpy
   flatten+matmul forward+backward, at the three acceptance shapes
   (target: median ratio <= 1.05 at every shape).
2. The five-operand CP head ``"bnmd,nr,mr,dr,kr->bk"`` (B=128, N=M=7, D=64,
   K=10, rank 32): forward+backward through ``cn.vjp`` over forward alone
   (target <= 3.5).

Protocol: same dtype and inputs, answers compared before timing, both calls
warmed up, then timed in alternating pairs (A B, B A, ...); each pair gives
one ratio and the median and spread of those ratios are reported.  Run it
with the machine's OpenBLAS kernel overrides removed::

    env -u OPENBLAS_CORETYPE -u OPENBLAS_L2_SIZE python benchmarks/head_ratio.py

``--results benchmarks/RESULTS.md`` also runs ``contractnet bench all`` on
the presets of :data:`RESULTS_PRESETS` and rewrites the results file, its
plot and its JSON records.
"""
from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time

import contractnet as cn
from contractnet import cli
from contractnet.bench import compare
from contractnet.bench_lowrank import CP_SPEC, lowrank_heads, lowrank_problem, reference_answer
from contractnet.bench_methods import HEAD_SPEC, head_problem
from contractnet.bench_presets import ACCEPTANCE_HEADS, HeadShape
from contractnet.bench_timing import OtherLoad, PairResult, compare_pair, machine_lines
from contractnet.files import check_writable, replaced_file, write_file

HEAD_TARGET = 1.05
CP_TARGET = 3.5
CP_SHAPE, CP_RANK = HeadShape(128, 7, 7, 64, 10), 32
#: Share of the CPUs used by other processes above which a row is measured again.
BUSY = 0.2
ATTEMPTS = 3
RESULTS_PRESETS = ("digits", "lenet5", "lenet", "mnist-cnn", "alexnet-fc6", "vgg-head",
                   "vgg16-fc6", "resnet-head")
RESULTS_COMMAND = ("env -u OPENBLAS_CORETYPE -u OPENBLAS_L2_SIZE "
                   "python benchmarks/head_ratio.py --results benchmarks/RESULTS.md")


def head_calls(shape: HeadShape, dtype: str):
    """The contraction's and flatten+matmul's forward+backward, checked to agree."""
    problem = head_problem(shape, dtype)
    x, w = problem.operands
    dy = problem.dy
    xf, wf = x.reshape(shape.B, -1), w.reshape(-1, shape.K)

    def contraction():
        out, pullback = cn.vjp(lambda a, b: cn.einsum(HEAD_SPEC, a, b), x, w)
        return (out,) + tuple(pullback(dy))

    def flatten():
        return xf @ wf, (dy @ wf.T).reshape(x.shape), (xf.T @ dy).reshape(w.shape)
    _require_agreement(f"head {shape.label}", contraction(), flatten(), dtype)
    return contraction, flatten


def cp_calls(dtype: str):
    """The CP head's forward+backward and forward alone, checked against opt_einsum."""
    head = lowrank_heads(CP_SHAPE, [CP_RANK])[1]
    activation = head_problem(CP_SHAPE, dtype)
    dy = activation.dy
    problem = lowrank_problem(head, activation.operands[0], dy)
    operands = problem.operands

    def both():
        out, pullback = cn.vjp(lambda *ops: cn.einsum(CP_SPEC, *ops), *operands)
        return (out,) + tuple(pullback(dy))

    def forward():
        return cn.einsum(CP_SPEC, *operands)
    _require_agreement("CP forward+backward", both(), reference_answer(CP_SPEC, problem, True),
                       dtype)
    _require_agreement("CP forward", (forward(),), reference_answer(CP_SPEC, problem, False),
                       dtype)
    return both, forward


def _require_agreement(what: str, answer, reference, dtype: str) -> None:
    """Refuse to time two calls whose answers differ."""
    diff, note = compare(answer, reference, dtype)
    if note:
        raise SystemExit(f"{what}: answers disagree ({note}); not timing")
    print(f"checked {what}: max |diff| {diff:.2e}")


def _row(name: str, result: PairResult, target: float, load: OtherLoad) -> str:
    verdict = "met" if result.ratio.median <= target else \
        f"MISSED by {100 * (result.ratio.median / target - 1):.1f}%"
    busy = "?" if load.fraction is None else f"{100 * load.fraction:.0f}%"
    return (f"| {name} | {result.median_a * 1e3:.3f} | {result.median_b * 1e3:.3f} | "
            f"{result.ratio.median:.3f} | {result.ratio.low:.3f}-{result.ratio.high:.3f} | "
            f"<= {target} | {verdict} | {busy} |")


def measure(name: str, calls, target: float, args) -> tuple[str, bool]:
    """One table row and whether its target was missed.

    On a shared machine a row measured while other processes used more than
    :data:`BUSY` of the CPUs is measured again (up to :data:`ATTEMPTS` times)
    and the attempt with the least other load is kept; its load is reported.
    A row too short for the kernel's tick counts has its load measured over
    the row and a wait after it (see :class:`OtherLoad`).
    """
    attempts = []
    for _ in range(ATTEMPTS):
        with OtherLoad(wait=True) as load:
            result = compare_pair(*calls, pairs=args.pairs, best_of=args.best_of)
        attempts.append((load.fraction or 0.0, result, load))
        if load.fraction is None or load.fraction <= BUSY:
            break
    _, result, load = min(attempts, key=lambda a: a[0])
    return _row(name, result, target, load), result.ratio.median > target


def acceptance_table(args: argparse.Namespace) -> tuple[list[str], int]:
    """Measure every acceptance case; returns Markdown lines and the number missed."""
    cases = [(f"head {s.label}: A = cn.vjp fwd+bwd, B = flatten+matmul fwd+bwd",
              lambda s=s: head_calls(s, args.dtype), HEAD_TARGET) for s in ACCEPTANCE_HEADS]
    cases.append((f"CP {CP_SPEC} {CP_SHAPE.label} r={CP_RANK}: A = cn.vjp fwd+bwd, "
                  "B = forward", lambda: cp_calls(args.dtype), CP_TARGET))
    lines = [f"{args.dtype}, {args.pairs} alternating pairs per row, each time the best of "
             f"{args.best_of} calls; 'other load' is the share of the CPUs that other "
             "processes used meanwhile.", "",
             "| case | A ms | B ms | median A/B | min-max | target | verdict | other load |",
             "|---|---|---|---|---|---|---|---|"]
    missed = 0
    for name, make, target in cases:
        row, miss = measure(name, make(), target, args)
        lines.append(row)
        missed += miss
    return lines, missed


def write_results(path: str, machine: list[str], acceptance: list[str]) -> None:
    """RESULTS.md at ``path`` (a regular file, links followed): the acceptance
    table, then ``contractnet bench all`` with a plot beside it."""
    folder = os.path.dirname(path)
    with tempfile.TemporaryDirectory() as tmp:
        tables = os.path.join(tmp, "bench.md")
        status = cli.main(["bench", "all", "--preset", *RESULTS_PRESETS, "--best-of", "3",
                           "--no-progress", "--markdown", tables,
                           "--plot", os.path.join(folder, "results.png"),
                           "--json", os.path.join(folder, "results.json")])
        if status != 0:
            print(f"contractnet bench failed with status {status}", file=sys.stderr)
            raise SystemExit(2)  # 1 means a missed target
        with open(tables, encoding="utf-8") as handle:
            bench_text = handle.read()
    text = "\n".join([
        "# Benchmark results", "",
        f"Measured {time.strftime('%Y-%m-%d %H:%M %Z')}; regenerate with", "",
        f"    {RESULTS_COMMAND}", "",
        *[f"- {line}" for line in machine], "",
        "## Acceptance ratios (benchmarks/head_ratio.py)", "", *acceptance, "",
        f"## contractnet bench all --preset {' '.join(RESULTS_PRESETS)} --best-of 3", "",
        bench_text])
    write_file(path, text)


def main(argv: list[str] | None = None) -> int:
    """Measure and print the acceptance ratios as a Markdown table.

    Returns 1 when a target is missed, 2 when the results could not be
    written, else 0.  With ``--results PATH`` it also runs ``contractnet
    bench all`` on the result presets and writes PATH (Markdown),
    ``results.png`` and ``results.json`` beside it; those paths are checked
    before anything is measured.
    """
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pairs", type=int, default=15, help="alternating pairs (>= 9)")
    parser.add_argument("--best-of", type=int, default=3,
                        help="each timed call is the fastest of this many (default 3)")
    parser.add_argument("--dtype", choices=("float32", "float64"), default="float32")
    parser.add_argument("--results", metavar="PATH",
                        help="also write the full results file (its bench tables in float32)")
    args = parser.parse_args(argv)
    if args.pairs < 9 or args.best_of < 1:
        parser.error("--pairs must be at least 9 and --best-of at least 1")
    if args.results is not None:
        try:
            target = replaced_file(args.results)
            if target is None:
                raise ValueError(f"{args.results!r} is no regular file, which the results "
                                 "need: their plot and JSON records go beside it")
            folder = os.path.dirname(target)
            for path in (target, os.path.join(folder, "results.png"),
                         os.path.join(folder, "results.json")):
                check_writable(path)
        except ValueError as exc:
            parser.error(f"--results: {exc}")
    machine = machine_lines()
    print("\n".join(machine))
    acceptance, missed = acceptance_table(args)
    print("\n" + "\n".join(acceptance))
    if args.results is not None:
        try:
            write_results(target, machine, acceptance)
        except (OSError, ValueError) as exc:
            print(f"head_ratio.py: cannot write the results: {exc}", file=sys.stderr)
            return 2
    return 1 if missed else 0


if __name__ == "__main__":
    sys.exit(main())
