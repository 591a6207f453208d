"""``contractnet bench``: flatten+matmul against the contraction head, and its peers.

::

    contractnet bench                         # quick default, well under a minute
    contractnet bench head --preset lenet vgg-head --json out.json --plot out.png
    contractnet bench conv --shape 8,14,14,512,3,3,512,1,1
    contractnet bench heads --preset mnist-cnn --ranks 8 32

Every method's answer is compared with the baseline's (flatten+matmul for
heads, numpy im2col for conv) before anything is timed; a method that
disagrees is flagged and left out of the timing.  Methods are timed
round-robin so they see the same machine state, and each ratio is the median
of per-round ratios to the baseline (see :mod:`contractnet.bench_timing`).
"""
from __future__ import annotations

import argparse
import importlib.util
import math
import os
import sys
from dataclasses import dataclass
from typing import Callable

import numpy as np

from . import bench_lowrank as lowrank
from .arguments import Once
from .bench_methods import (CONV_METHODS, HEAD_METHODS, PEERS, Answer, Method, Problem,
                            check_fits, contractnet_method, conv_problem, head_problem)
from .bench_presets import (KINDS, PRESETS, ConvShape, HeadShape, parse_shape, select_shapes,
                            split_names)
from .bench_report import PASSES, Record, plot_format, print_table
from .bench_report import progress, write_csv, write_json, write_markdown, write_plot
from .bench_timing import (OtherLoad, blas_threads, finite_median, gemm_rate, interleave,
                           machine_info, paired_ratio, peak_memory)
from .budget import check_allocation
from .files import check_writable, replaced_file

#: Relative tolerance (to the reference's largest magnitude) for "agrees".
RTOL = {"float32": 1e-3, "float64": 1e-9}
BASELINE = {"head": "flatten", "conv": "im2col", "heads": "full"}
#: The ranks of ``bench heads`` when ``--ranks`` is not given.
DEFAULT_RANKS = (8, 32)
TITLES = {"head": "conv-to-FC head: flatten+matmul vs contraction",
          "conv": "2-D convolution (channels last)",
          "heads": "low-rank heads on one activation (contractnet, through cn.vjp)"}


@dataclass
class Entry:
    """A method ready to time on one case and pass, with its check already done."""

    key: str
    label: str
    call: Callable[[], object] | None
    flops: float
    traced_memory: bool
    params: int | None = None
    status: str = "ok"
    note: str = ""
    max_abs_diff: float = math.nan


@dataclass(frozen=True)
class Settings:
    """Validated command-line choices that every measurement needs."""

    dtype: str
    repeat: int
    best_of: int
    budget: float
    gemm: float
    machine: dict


# ------------------------------------------------------------------ arguments
def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Add ``contractnet bench``'s options to ``parser``."""
    parser.add_argument("kind", nargs="?", choices=KINDS + ("all",), default=None,
                        help="what to benchmark (default: a quick head run)")
    parser.add_argument("--preset", nargs="+", action="extend", default=[], metavar="NAME",
                        help=f"named shapes: {', '.join(PRESETS)}")
    parser.add_argument("--shape", action="append", default=[], metavar="DIMS",
                        help="custom shape: B,N,M,D,K (head) or B,H,W,C,KH,KW,K[,stride[,pad]]"
                             " (conv); repeat the option for more")
    parser.add_argument("--dtype", action=Once, choices=("float32", "float64"), default="float32",
                        help="floating dtype of every array (default float32)")
    parser.add_argument("--repeat", action=Once, type=int, default=9, metavar="N",
                        help="timed rounds per method (default 9)")
    parser.add_argument("--best-of", action=Once, type=int, default=3, metavar="K",
                        help="each timed sample is the fastest of K calls (default 3)")
    parser.add_argument("--threads", action=Once, type=int, default=None, metavar="N",
                        help="BLAS (and PyTorch) threads, via threadpoolctl")
    parser.add_argument("--peers", nargs="+", action="extend", default=None, metavar="NAME",
                        help=f"peer methods to include: {', '.join(PEERS)}, all or none "
                             "(default all)")
    parser.add_argument("--ranks", nargs="+", type=int, action="extend", default=None,
                        metavar="R", help="ranks for 'bench heads' (default "
                                          f"{' '.join(map(str, DEFAULT_RANKS))}); repeat the "
                                          "option for more")
    parser.add_argument("--max-seconds", action=Once, type=float, default=5.0, metavar="S",
                        help="stop timing a method after S seconds per case and pass, "
                             "within a sample's best-of calls too (default 5)")
    parser.add_argument("--json", metavar="PATH", action=Once,
                        help="write one record per method/shape/pass")
    parser.add_argument("--csv", metavar="PATH", action=Once, help="write the records as CSV")
    parser.add_argument("--plot", metavar="PATH", action=Once,
                        help="plot GFLOP/s against size (matplotlib)")
    parser.add_argument("--markdown", metavar="PATH", action=Once,
                        help="write the tables as Markdown")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")


def _peers(values: list[str] | None) -> set[str]:
    """The chosen peer names; raises ValueError naming an unknown one."""
    if values is None:
        return set(PEERS)
    chosen: set[str] = set()
    names = split_names(values, "--peers")
    for name in names:
        if name == "all":
            chosen |= set(PEERS)
        elif name != "none":
            if name not in PEERS:
                hint = (f" ('{name}' is a benchmark: put it before the options)"
                        if name in KINDS else "")
                raise ValueError(f"unknown peer {name!r}; choose from "
                                 f"{', '.join(PEERS)}, all, none" + hint)
            chosen.add(name)
    if "none" in names and len(set(names)) > 1:  # 'all none', 'torch none': which was meant?
        others = " ".join(n for n in dict.fromkeys(names) if n != "none")
        raise ValueError(f"--peers none cannot go with other peers ({others})")
    return chosen


def _ranks(args: argparse.Namespace) -> list[int]:
    """The ranks of ``bench heads``: those given, else :data:`DEFAULT_RANKS`."""
    return list(DEFAULT_RANKS) if args.ranks is None else args.ranks


def _unused_options(args: argparse.Namespace, kinds: list[str]) -> list[str]:
    """Notes on options given that no kind run uses: ``--ranks`` outside
    ``bench heads``, a peer named in ``--peers`` that no kind run has, a
    ``--shape`` of a kind not run (a conv's under ``bench head``)."""
    notes = []
    for text in dict.fromkeys(args.shape):
        shape = parse_shape(text)  # checked already
        shape_kinds = ("conv",) if isinstance(shape, ConvShape) else ("head", "heads")
        if not set(shape_kinds) & set(kinds):
            notes.append(f"--shape {text} is a {shape_kinds[0]} shape, which no "
                         f"'bench {' '.join(kinds)}' case takes: ignored")
    if args.ranks is not None and "heads" not in kinds:
        notes.append("--ranks applies to 'bench heads' only: ignored")
    if args.peers is not None:
        methods = [*(HEAD_METHODS if "head" in kinds else ()),
                   *(CONV_METHODS if "conv" in kinds else ())]
        run = {m.peer for m in methods}
        named = [n for n in split_names(args.peers, "--peers") if n not in ("all", "none")]
        unused = [n for n in dict.fromkeys(named) if n not in run]
        if unused:
            notes.append(f"--peers {' '.join(unused)}: no such method in "
                         f"'bench {' '.join(kinds)}': ignored")
    return notes


def _validate(args: argparse.Namespace) -> list[tuple[str, list]]:
    """Check every option before any timing; returns (kind, cases) for each
    kind asked for (``all`` asks for every kind; a kind no shape fits has
    no cases)."""
    if args.repeat < 1:
        raise ValueError(f"--repeat must be at least 1, got {args.repeat}")
    if args.best_of < 1:
        raise ValueError(f"--best-of must be at least 1, got {args.best_of}")
    if not args.max_seconds > 0:  # nan too
        raise ValueError(f"--max-seconds must be positive, got {args.max_seconds}")
    written: dict[str, str] = {}  # each file replaced, by the option that writes it
    for option, path in (("--json", args.json), ("--csv", args.csv), ("--plot", args.plot),
                         ("--markdown", args.markdown)):
        if path == "-":  # not a file named '-' in the working directory, by surprise
            raise ValueError(f"{option} -: standard output is not an option here (the tables "
                             f"go there); name a file, or /dev/stdout")
        if path is not None:
            try:
                check_writable(path)
            except ValueError as exc:
                raise ValueError(f"{option}: {exc}") from None
            target = replaced_file(path)  # None for a stream or a device: written in turn
            if target in written:
                raise ValueError(f"{written[target]} and {option} both write {path!r}: "
                                 f"the second would replace the first")
            if target is not None:
                written[target] = option
    if args.plot is not None:
        plot_format(args.plot)
    lowrank.lowrank_heads(HeadShape(1, 1, 1, 1, 1), _ranks(args))
    kinds = {None: ["head"], "all": list(KINDS)}.get(args.kind, [args.kind])
    presets, shapes = split_names(args.preset, "--preset"), list(args.shape)
    plan = [(kind, select_shapes(kind, presets, shapes)) for kind in kinds]
    if not any(cases for _, cases in plan):
        raise ValueError(f"no shape fits 'bench {args.kind or 'head'}': give a "
                         f"{'conv' if args.kind == 'conv' else 'head'} --shape or a --preset")
    for kind, cases in plan:
        for _, shape in cases:
            check_fits(shape, args.dtype)
            if kind == "heads":
                for head in lowrank.lowrank_heads(shape, _ranks(args)):
                    for dims in head.weight_shapes:
                        check_allocation(dims, args.dtype, f"{head.key} at {shape.label} needs "
                                                           f"a weight")
    return plan


# ------------------------------------------------------------------ checking
def compare(answer: Answer, reference: Answer, dtype: str) -> tuple[float, str]:
    """Largest absolute difference and a note, empty when the answer agrees.

    An answer agrees when it has the reference's shapes and dtype and differs
    by at most ``RTOL[dtype]`` times the reference's largest magnitude.

    >>> a = (np.ones(3, dtype=np.float32),)
    >>> compare(a, a, "float32")
    (0.0, '')
    """
    if len(answer) != len(reference):
        return math.inf, f"{len(answer)} results, expected {len(reference)}"
    worst, note = 0.0, ""
    for got, want in zip(answer, reference):
        got = np.asarray(got)
        if got.shape != want.shape:
            return math.inf, f"shape {got.shape}, expected {want.shape}"
        if got.dtype != want.dtype:
            note = f"returned {got.dtype}, expected {want.dtype}"
        # in float64 (unsigned answers would wrap), equal values (infinities too) 0 apart
        wide = np.result_type(got.dtype, want.dtype, np.float64)
        with np.errstate(invalid="ignore"):  # inf - inf, set to 0 next
            apart = np.where(got == want, 0.0, np.abs(got.astype(wide) - want.astype(wide)))
        diff = float(np.max(apart)) if got.size else 0.0
        scale = float(np.max(np.abs(want))) if want.size else 0.0
        worst = diff if math.isnan(diff) or diff > worst else worst  # max() would drop a nan
        if not diff <= RTOL[dtype] * max(scale, 1e-30):
            note = note or f"differs by {diff:.3g} (scale {scale:.3g})"
    return worst, note


def _checked_entry(key: str, label: str, build: Callable[[], tuple], reference: Answer | None,
                   dtype: str, flops: float, traced: bool) -> tuple[Entry, Answer | None]:
    """Build a method's call, run it once and compare with ``reference``.

    With no reference the answer becomes the reference (the baseline).  A
    method that fails is reported, not raised: one broken peer must not hide
    the other results, and the failure is shown in the table.
    """
    entry = Entry(key, label, None, flops, traced)
    try:
        call, convert = build()
        answer = convert(call())
    except Exception as exc:  # noqa: BLE001  (reported in the table, see docstring)
        entry.status, entry.note = "error", f"{type(exc).__name__}: {exc}".splitlines()[0]
        return entry, reference
    if reference is None:
        entry.call, entry.max_abs_diff = call, 0.0
        return entry, answer
    entry.max_abs_diff, entry.note = compare(answer, reference, dtype)
    if entry.note:
        entry.status = "mismatch"
    else:
        entry.call = call
    return entry, reference


# ------------------------------------------------------------------ entries
def available(methods: tuple[Method, ...], peers: set[str], notes: list[str]) -> list[Method]:
    """Methods that run: the baseline, contractnet, and the chosen, installed peers.

    A peer whose module is missing is skipped, with one note per module.
    """
    chosen = []
    for method in methods:
        if method.peer is not None and method.peer not in peers:
            continue
        if method.needs and importlib.util.find_spec(method.needs) is None:
            note = f"{method.needs} is not installed: skipping its peers"
            if note not in notes:
                notes.append(note)
            continue
        chosen.append(method)
    return chosen


def method_entries(methods: list[Method], problem: Problem, backward: bool,
                   settings: Settings) -> list[Entry]:
    """Entries for head or conv methods, all checked against the first (baseline)."""
    flops = problem.shape.flops * (3 if backward else 1)
    entries, reference = [], None
    for method in methods:
        if entries and reference is None:  # the baseline failed: nothing to check against
            entry = Entry(method.key, method.label, None, flops, method.traced_memory)
            entry.status = "error"
            entry.note = f"not run: the baseline ({methods[0].label}) failed"
        else:
            entry, reference = _checked_entry(
                method.key, method.label, lambda m=method: m.build(problem, backward),
                reference, settings.dtype, flops, method.traced_memory)
        entries.append(entry)
    return entries


def lowrank_entries(shape: HeadShape, ranks: list[int], backward: bool,
                    settings: Settings) -> list[Entry]:
    """Entries for the full, CP and Tucker heads, each checked against opt_einsum."""
    base = head_problem(shape, settings.dtype)
    x, dy = base.operands[0], base.dy
    entries = []
    for head in lowrank.lowrank_heads(shape, ranks):
        problem = lowrank.lowrank_problem(head, x, dy)
        reference = lowrank.reference_answer(head.spec, problem, backward)
        flops = lowrank.path_flops(head.spec, lowrank.index_sizes(head, shape), backward)
        entry, _ = _checked_entry(
            head.key, f"{head.spec} ({head.key})",
            lambda h=head, p=problem: contractnet_method(h.spec)(p, backward), reference,
            settings.dtype, flops, True)
        entry.params = head.params
        entries.append(entry)
    return entries


# ------------------------------------------------------------------ measuring
def measure(entries: list[Entry], baseline: str, settings: Settings,
            meta: dict) -> tuple[list[Record], dict[str, list[float]]]:
    """Time the agreeing entries round-robin and turn everything into records.

    ``meta`` holds the record fields shared by the case (kind, case, shape,
    dtype, pass, dims).
    """
    timed = {e.key: e.call for e in entries if e.call is not None}
    with OtherLoad() as load:
        times = interleave(timed, settings.repeat, warmup=1, budget_seconds=settings.budget,
                           best_of=settings.best_of) if timed else {}
    base = times.get(baseline, [])
    records = []
    for e in entries:
        record = Record(method=e.key, label=e.label, status=e.status, note=e.note,
                        max_abs_diff=e.max_abs_diff, params=e.params,
                        gflop=e.flops / 1e9, other_load=load.fraction,
                        machine=settings.machine, **meta)
        if e.key in times:
            _fill_times(record, times[e.key], base, settings.gemm)
            record.peak_bytes = peak_memory(e.call) if e.traced_memory else None
        records.append(record)
    return records, times


def _fill_times(record: Record, samples: list[float], base: list[float], gemm: float) -> None:
    kept = [t for t in samples if not math.isnan(t)]
    record.repeats = len(kept)
    record.median_s = finite_median(samples)
    record.min_s, record.max_s = min(kept), max(kept)
    record.gflop_s = record.gflop / record.median_s
    record.pct_gemm = 100.0 * record.gflop_s / gemm
    if base:
        ratio = paired_ratio(samples, base)
        record.ratio, record.ratio_min, record.ratio_max = ratio.median, ratio.low, ratio.high


# ------------------------------------------------------------------ running
def run(args: argparse.Namespace) -> int:
    """Run ``contractnet bench``; returns the exit status: 0 when every case
    ran, whatever the verdicts on the targets; 1 when an output file could
    not be written (the others are written, the tables printed), or when
    the baseline or contractnet (any low-rank head) failed or disagreed in
    a case (a peer's failure is shown in the table, and is no failure of
    the run).

    Raises
    ------
    ValueError
        Before any timing: for an unknown preset or peer, a malformed
        ``--shape``, a bad ``--repeat``/``--best-of``/``--max-seconds``/
        ``--threads``/``--ranks``, an output file that cannot be written, a
        ``--plot`` format matplotlib cannot write (or no matplotlib), or a
        shape or weight over the memory budget.
    """
    plan = _validate(args)
    peers = _peers(args.peers)
    if "torch" not in sys.modules:
        # PyTorch's OpenMP threads otherwise spin after each call and take the
        # cores the next method needs; libgomp reads this when torch loads.
        os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
    notes = [f"no {kind} shape among the presets and --shape values given: {kind} skipped"
             for kind, cases in plan if not cases]
    plan = [(kind, cases) for kind, cases in plan if cases]
    notes += _unused_options(args, [kind for kind, _ in plan])
    with blas_threads(args.threads, torch_too=bool(peers & {"torch", "torch-einsum"})):
        machine = machine_info() | {"omp_wait_policy": os.environ.get("OMP_WAIT_POLICY", "")}
        running = machine["blas_threads"]
        if args.threads is not None and isinstance(running, int) and running != args.threads:
            notes.append(f"--threads {args.threads}: BLAS runs {running} thread(s), its limit")
        settings = Settings(args.dtype, args.repeat, args.best_of, args.max_seconds,
                            gemm_rate(args.dtype), machine)
        steps = sum(len(cases) for _, cases in plan) * len(PASSES)
        records, summaries = [], []
        with progress(steps, enabled=not args.no_progress) as bar:
            for kind, cases in plan:
                found, lines = _run_kind(kind, cases, args, peers, settings, notes, bar)
                records += found
                summaries += lines
    failed_files = _report(records, summaries, notes, settings, args)
    # every low-rank head is contractnet's; a peer's failure is no failure of the run
    failed_runs = [r for r in records if r.status != "ok" and (
        r.kind == "heads" or r.method in (BASELINE[r.kind], "contractnet"))]
    return 1 if failed_files or failed_runs else 0


def _run_kind(kind: str, cases: list, args, peers: set[str], settings: Settings,
              notes: list[str], bar) -> tuple[list[Record], list[str]]:
    """Every case and pass of one kind; returns records and summary lines."""
    methods = available(HEAD_METHODS if kind == "head" else CONV_METHODS, peers, notes) \
        if kind != "heads" else []
    records, lines = [], []
    for name, shape in cases:
        for pass_ in PASSES:
            bar.start(f"{kind} {name} {pass_}")
            backward = pass_ != "forward"
            if kind == "heads":
                entries = lowrank_entries(shape, _ranks(args), backward, settings)
            else:
                maker = head_problem if kind == "head" else conv_problem
                entries = method_entries(methods, maker(shape, settings.dtype), backward, settings)
            meta = dict(kind=kind, case=name, shape=shape.label, dtype=settings.dtype,
                        pass_=pass_, dims=shape.as_dict())
            found, times = measure(entries, BASELINE[kind], settings, meta)
            records += found
            lines += _summary(kind, name, pass_, times, found[0].other_load if found else None)
            bar.done()
    return records, lines


def _summary(kind: str, case: str, pass_: str, times: dict[str, list[float]],
             load: float | None) -> list[str]:
    """The ratios the performance targets are stated for, one line each."""
    pairs = {"head": [("contractnet", "flatten", 1.05)],
             "conv": [("contractnet", "torch", 1.5), ("contractnet", "im2col", None)]}
    lines = []
    for method, against, target in pairs.get(kind, []):
        if method in times and against in times:
            ratio = paired_ratio(times[method], times[against])
            if pass_ == "forward":
                target = None  # the targets are stated for forward+backward
            # a miss shows a fourth digit: 1.0504 would print as 1.050
            verdict = "" if target is None else (
                f"  (target <= {target}: met)" if ratio.median <= target else
                f"  (target <= {target}: MISSED at {ratio.median:.4f})")
            busy = "" if load is None else f", other load {100 * load:.0f}%"
            lines.append(f"{kind} {case} {pass_}: {method}/{against} = {ratio}{verdict}{busy}")
    return lines


def _report(records: list[Record], summaries: list[str], notes: list[str],
            settings: Settings, args) -> list[str]:
    """Write the requested files, then print the tables, summary and notes
    (files first: a closed or full standard output must not lose them).
    Returns the errors of the files that could not be written, each also
    printed to stderr."""
    m = settings.machine
    loads = [r.other_load for r in records if r.other_load is not None]
    busy = f", other processes used {100 * max(loads):.0f}% of the CPUs at worst" if loads else ""
    header = (f"{m['cpu']}, {m['cores']} cores, BLAS {m['blas']} with {m['blas_threads']} "
              f"thread(s), numpy {m['numpy']}, {settings.dtype}, best GEMM rate "
              f"{settings.gemm:.1f} GFLOP/s, up to {settings.repeat} rounds "
              f"(best of {settings.best_of}){busy}")
    failed = _write_files(records, notes, summaries, settings, header, args)
    print(header)
    for note in notes:
        print(f"note: {note}")
    for kind in dict.fromkeys(r.kind for r in records):
        print_table([r for r in records if r.kind == kind], TITLES[kind])
    for record in records:
        if record.status != "ok":
            print(f"{record.status.upper()}: {record.kind} {record.case} {record.pass_} "
                  f"{record.method}: {record.note}")
    for line in summaries:
        print(line)
    for error in failed:
        print(f"contractnet bench: error: {error}", file=sys.stderr)
    return failed


def _write_files(records: list[Record], notes: list[str], summaries: list[str],
                 settings: Settings, header: str, args) -> list[str]:
    """Write the ``--json``, ``--csv``, ``--plot`` and ``--markdown`` files asked
    for; a file that cannot be written (a full disk) does not stop the others.
    Returns an error naming the option and path of each that failed."""
    meta = {"machine": settings.machine, "gemm_gflop_s": settings.gemm, "dtype": settings.dtype,
            "repeat": settings.repeat, "best_of": settings.best_of, "notes": notes,
            "summary": summaries}
    failed: dict[str, str] = {}  # the error of each option whose file was not written
    writers = {  # the plot before the Markdown, which links it only if it was written
        "--json": lambda path: write_json(path, records, meta),
        "--csv": lambda path: write_csv(path, records),
        "--plot": lambda path: write_plot(path, records, header),
        "--markdown": lambda path: write_markdown(
            path, records, TITLES, [header] + notes + summaries,
            None if "--plot" in failed else args.plot),
    }
    for option, write in writers.items():
        path = getattr(args, option[2:])
        if path:
            try:
                write(path)
            except OSError as exc:
                failed[option] = f"{option} {path}: {exc.strerror or exc}"
    return list(failed.values())
