"""Honest timing on a shared, noisy machine: interleaved samples, paired ratios.

A ratio between two methods is measured in one process: warm both up, then
time them in rounds whose order alternates (A B, B A, B A, A B, ...) so that
both see the same machine state and each goes first equally often, take the
ratio within each round and report the median ratio and its spread.  With
more than two methods the order rotates and reverses (:func:`round_order`)
and each method's ratio to the baseline is taken within the round.

This module also describes the machine the figures come from: CPU, cores, the
BLAS library and its thread count (through threadpoolctl), and the measured
GEMM rate that percentages are relative to.
"""
from __future__ import annotations

import contextlib
import math
import os
import platform
import statistics
import sys
import time
import tracemalloc
from dataclasses import dataclass
from importlib import metadata
from typing import Callable, Iterator, Mapping, Sequence

import numpy as np

Call = Callable[[], object]

#: A timing sample shorter than this repeats the call to beat timer noise.
MIN_SAMPLE_SECONDS = 2e-3
#: Calls per sample are capped so that tiny problems still finish quickly.
MAX_CALLS_PER_SAMPLE = 200


@dataclass(frozen=True)
class RatioSummary:
    """Median and spread of per-pair ratios ``time(method) / time(baseline)``."""

    median: float
    low: float
    high: float
    pairs: int

    def __str__(self) -> str:
        return f"{self.median:.3f} (min {self.low:.3f}, max {self.high:.3f}, {self.pairs} pairs)"


@dataclass(frozen=True)
class PairResult:
    """Outcome of :func:`compare_pair`: per-call times and the paired ratio."""

    times_a: tuple[float, ...]
    times_b: tuple[float, ...]
    ratio: RatioSummary

    @property
    def median_a(self) -> float:
        return statistics.median(self.times_a)

    @property
    def median_b(self) -> float:
        return statistics.median(self.times_b)


# ------------------------------------------------------------------ sampling
def calls_per_sample(fn: Call, min_seconds: float = MIN_SAMPLE_SECONDS) -> int:
    """How many back-to-back calls make one sample of at least ``min_seconds``.

    Calls ``fn`` once (which doubles as a warm-up call).

    Examples
    --------
    >>> calls_per_sample(lambda: None) > 1
    True
    """
    start = time.perf_counter()
    fn()
    once = time.perf_counter() - start
    if once >= min_seconds:
        return 1
    return min(MAX_CALLS_PER_SAMPLE, math.ceil(min_seconds / max(once, 1e-7)))


def time_sample(fn: Call, calls: int = 1, best_of: int = 1,
                budget_seconds: float | None = None) -> float:
    """Seconds per call of ``fn``, averaged over ``calls`` back-to-back calls.

    With ``best_of`` > 1 the fastest of that many such averages is returned:
    other work on the machine only ever slows a call down, so the minimum of
    a few is the steadier estimate of the call's own cost.  Once the
    averages taken have used more than ``budget_seconds``, no more are
    taken (the first always is).
    """
    best, spent = math.inf, 0.0
    for _ in range(best_of):
        start = time.perf_counter()
        for _ in range(calls):
            fn()
        elapsed = time.perf_counter() - start
        best, spent = min(best, elapsed / calls), spent + elapsed
        if budget_seconds is not None and spent > budget_seconds:
            break
    return best


def ratio_table(groups: Mapping[str, Sequence[tuple[float, float]]], what: str) -> list[str]:
    """Lines of a table of timed alternatives over random draws.

    ``groups`` maps a row label to (µs before, µs after) pairs, one per
    draw; each row gives the draws, the median ratio (after over before),
    how many ran faster (ratio < 0.9) and slower (> 1.1), the worst ratio
    and the total times in ms.  ``what`` heads the label column.  Empty
    groups are left out.

    >>> ratio_table({"a": [(2.0, 1.0), (4.0, 5.0)]}, "rule")[1].split()
    ['a', '2', '0.88', '1', '1', '1.25', '0.0', '->', '0.0']
    """
    width = max([len(what), *map(len, groups)])
    lines = [f"{what:<{width}} {'draws':>6} {'median':>7} {'faster':>7} {'slower':>7} "
             f"{'worst':>6} {'total ms':>17}"]
    for label, times in groups.items():
        if not times:
            continue
        ratio = np.array([after / before for before, after in times])
        before, after = (sum(t[i] for t in times) / 1e3 for i in (0, 1))
        lines.append(f"{label:<{width}} {len(ratio):>6} {np.median(ratio):>7.2f} "
                     f"{(ratio < 0.9).sum():>7} {(ratio > 1.1).sum():>7} {ratio.max():>6.2f} "
                     f"{before:>8.1f} -> {after:<7.1f}")
    return lines


def round_order(names: Sequence[str], rnd: int) -> list[str]:
    """The order of round ``rnd``: the names rotated by one every second round
    and reversed every odd round, so that each name takes every place equally
    often: ``A B, B A, B A, A B`` for two, all six orders for three.

    >>> [" ".join(round_order("AB", r)) for r in range(4)]
    ['A B', 'B A', 'B A', 'A B']
    """
    names = list(names)
    shift = (rnd // 2) % len(names)
    order = names[shift:] + names[:shift]
    return order[::-1] if rnd % 2 else order


def interleave(fns: Mapping[str, Call], repeat: int, warmup: int = 1,
               budget_seconds: float | None = None, best_of: int = 1) -> dict[str, list[float]]:
    """Time several methods round-robin so that they share machine state.

    Parameters
    ----------
    fns : mapping of str to callable
        Zero-argument calls to time; the first is the baseline.
    repeat : int
        Rounds; each round times every method once, in the order
        :func:`round_order` gives.
    warmup : int
        Untimed calls per method before the first round.
    budget_seconds : float, optional
        A method whose samples have used more than this stops being timed
        (it keeps at least one sample), so a very slow peer cannot stall a run;
        within a sample, no more of its ``best_of`` averages are taken once
        the method's time has passed it.
    best_of : int
        Each sample is the fastest of this many (see :func:`time_sample`).

    Returns
    -------
    dict of str to list of float
        Seconds per call for every round; a method that left early has
        ``nan`` for the rounds it missed, so lists stay aligned by round.
        Once every method is past ``budget_seconds`` the rounds stop (the
        lists are then shorter than ``repeat``).
    """
    if repeat < 1 or best_of < 1:
        raise ValueError(f"repeat and best_of must be at least 1, got {repeat} and {best_of}")
    names = list(fns)
    calls = {name: calls_per_sample(fns[name]) for name in names}
    for name in names:
        for _ in range(max(0, warmup - 1)):
            fns[name]()
    times: dict[str, list[float]] = {name: [] for name in names}
    spent = dict.fromkeys(names, 0.0)
    for rnd in range(repeat):
        for name in round_order(names, rnd):
            if budget_seconds is not None and times[name] and spent[name] > budget_seconds:
                times[name].append(math.nan)
                continue
            start = time.perf_counter()
            left = None if budget_seconds is None else budget_seconds - spent[name]
            seconds = time_sample(fns[name], calls[name], best_of, left)
            spent[name] += time.perf_counter() - start
            times[name].append(seconds)
        if budget_seconds is not None and all(t > budget_seconds for t in spent.values()):
            break  # every method is past its budget: the rounds left would all be nan
    return times


def paired_ratio(times: Sequence[float], baseline: Sequence[float]) -> RatioSummary:
    """Median and spread of the ratio within each round (rounds whose ratio
    is not a finite number skipped: a ``nan`` time, an infinite one, a zero
    baseline).

    Raises
    ------
    ValueError
        If the two lists differ in length (their rounds would not pair up).

    Examples
    --------
    >>> str(paired_ratio([2.0, 2.2, 1.8], [1.0, 1.0, 1.0]))
    '2.000 (min 1.800, max 2.200, 3 pairs)'
    """
    if len(times) != len(baseline):
        raise ValueError(f"paired_ratio needs one time per round on each side, got "
                         f"{len(times)} and {len(baseline)}")
    ratios = [t / b for t, b in zip(times, baseline)
              if b > 0 and math.isfinite(t) and math.isfinite(b) and math.isfinite(t / b)]
    if not ratios:
        return RatioSummary(math.nan, math.nan, math.nan, 0)
    return RatioSummary(statistics.median(ratios), min(ratios), max(ratios), len(ratios))


def compare_pair(a: Call, b: Call, pairs: int = 9, warmup: int = 2,
                 best_of: int = 1) -> PairResult:
    """Time ``a`` against ``b`` in alternating pairs (A B, B A, ...).

    Parameters
    ----------
    a, b : callable
        Zero-argument calls doing the same work two ways.
    pairs : int
        Number of pairs, at least 9 for a figure worth reporting.
    warmup : int
        Untimed calls of each before timing.
    best_of : int
        Each time is the fastest of this many calls (see :func:`time_sample`).

    Returns
    -------
    PairResult
        Per-call times of both and the median of ``time(a) / time(b)``.
    """
    if pairs < 1:
        raise ValueError(f"pairs must be at least 1, got {pairs}")
    times = interleave({"a": a, "b": b}, repeat=pairs, warmup=warmup, best_of=best_of)
    ratio = paired_ratio(times["a"], times["b"])
    return PairResult(tuple(times["a"]), tuple(times["b"]), ratio)


def finite_median(values: Sequence[float]) -> float:
    """Median of the values that are not ``nan`` (``nan`` if none are)."""
    kept = [v for v in values if not math.isnan(v)]
    return statistics.median(kept) if kept else math.nan


#: Clock ticks (10 ms each at the usual 100 per second) a block must last for
#: :class:`OtherLoad` to report a share: the kernel counts CPU time in ticks.
MIN_LOAD_TICKS = 50


class OtherLoad:
    """How busy other processes kept the CPUs while a block ran (Linux).

    Use as a context manager; afterwards ``fraction`` is the share of all
    cores' time spent by other processes (``None`` where ``/proc/stat`` is
    missing).  The kernel counts in whole clock ticks, which cannot resolve
    a block shorter than :data:`MIN_LOAD_TICKS` of them: its fraction is
    ``None`` too, unless ``wait`` is true, when the measurement goes on
    through a sleep after the block until it is that long (the other load
    just after the block stands in for the load during it).  Figures
    measured while it is high are noisy.
    """

    fraction: float | None = None

    def __init__(self, wait: bool = False) -> None:
        self.wait = wait

    def __enter__(self) -> "OtherLoad":
        self._start = (_busy_ticks(), os.times(), time.perf_counter())
        return self

    def __exit__(self, *exc) -> None:
        busy0, own0, wall0 = self._start
        ticks = os.sysconf("SC_CLK_TCK")
        short = MIN_LOAD_TICKS / ticks - (time.perf_counter() - wall0)
        if short > 0 and self.wait and exc[0] is None and busy0 is not None:
            time.sleep(short)
        busy1, own1, wall1 = _busy_ticks(), os.times(), time.perf_counter()
        if busy0 is None or busy1 is None:
            return
        if (wall1 - wall0) * ticks < MIN_LOAD_TICKS:
            return  # counted in whole ticks: a short block would read 0% or 100%
        own = (own1.user - own0.user) + (own1.system - own0.system)
        other = (busy1 - busy0) / ticks - own
        capacity = (wall1 - wall0) * (os.cpu_count() or 1)
        self.fraction = min(1.0, max(0.0, other / capacity))


def _busy_ticks() -> int | None:
    """Clock ticks all CPUs have spent busy since boot (``None`` off Linux)."""
    try:
        with open("/proc/stat", encoding="ascii") as handle:
            fields = handle.readline().split()[1:]
    except OSError:
        return None
    values = [int(v) for v in fields]
    return sum(values) - values[3] - (values[4] if len(values) > 4 else 0)


# ------------------------------------------------------------------ memory
def peak_memory(fn: Call) -> int:
    """Extra bytes allocated at the peak of one call of ``fn`` (tracemalloc).

    Counts allocations that go through Python's tracing hooks, which numpy's
    data buffers do; libraries with their own allocator (PyTorch) are not
    seen, so their figure is not comparable.
    """
    was_tracing = tracemalloc.is_tracing()
    if not was_tracing:
        tracemalloc.start()
    try:
        tracemalloc.reset_peak()
        base = tracemalloc.get_traced_memory()[0]
        result = fn()
        peak = tracemalloc.get_traced_memory()[1]
        del result
    finally:
        if not was_tracing:
            tracemalloc.stop()
    return max(0, peak - base)


# ------------------------------------------------------------------ machine
def gemm_rate(dtype: np.dtype | str = "float32", sizes: Sequence[int] = (512, 1024),
              repeat: int = 10) -> float:
    """This machine's GEMM rate in GFLOP/s: the best of square products.

    Uses numpy's BLAS with the current thread limits and ``dtype``, the same
    calls flatten+matmul makes.  The best sample over a few sizes is taken
    because noise from other work only ever slows a product down; on a
    shared machine the median of one size can be far below what BLAS reaches.
    """
    rng = np.random.default_rng(0)
    best = 0.0
    for n in sizes:
        a = rng.standard_normal((n, n), dtype=np.dtype(dtype).type)
        b = rng.standard_normal((n, n), dtype=np.dtype(dtype).type)
        out = np.empty((n, n), dtype=dtype)
        np.matmul(a, b, out=out)
        seconds = min(time_sample(lambda: np.matmul(a, b, out=out)) for _ in range(repeat))
        best = max(best, 2.0 * n ** 3 / seconds / 1e9)
    return best


def blas_info() -> dict[str, object]:
    """The BLAS numpy uses: library, version, kernel and thread count.

    Values are ``"unknown"`` when threadpoolctl is not installed.
    """
    try:
        from threadpoolctl import threadpool_info
    except ImportError:
        return {"blas": "unknown (threadpoolctl not installed)", "blas_threads": "unknown"}
    pools = [p for p in threadpool_info() if p.get("user_api") == "blas"]
    if not pools:
        return {"blas": "none found", "blas_threads": "unknown"}
    # with PyTorch loaded there may be two; numpy's own copy lives in numpy's
    # folder or in numpy.libs beside it (a BLAS numpy links from elsewhere: the first)
    numpy_dir = os.path.dirname(os.path.realpath(np.__file__))
    pool = next((p for p in pools if _inside(p.get("filepath", ""), numpy_dir)), pools[0])
    kernel = pool.get("architecture")
    name = f"{pool.get('internal_api')} {pool.get('version')}"
    return {"blas": name + (f" ({kernel})" if kernel else ""),
            "blas_threads": pool.get("num_threads")}


def _inside(path: str, numpy_dir: str) -> bool:
    folder = os.path.dirname(os.path.realpath(path)) if path else ""
    return (folder == numpy_dir + ".libs" or folder == numpy_dir
            or folder.startswith(numpy_dir + os.sep))


#: The most threads ``--threads`` takes (BLAS libraries cap far lower: OpenBLAS
#: builds at 64 or so; the run reports the count BLAS really uses).
MAX_THREADS = 1024


@contextlib.contextmanager
def blas_threads(threads: int | None, torch_too: bool = False) -> Iterator[None]:
    """Run BLAS with ``threads`` threads inside the block (``None``: as it is),
    and PyTorch with as many as BLAS then runs, so that the two compare on
    equal terms.

    Where threadpoolctl cannot read BLAS's count, PyTorch gets ``threads``,
    or is left as it is.  PyTorch is set when it is already imported, or,
    with ``torch_too``, imported for the purpose if it is installed.

    Raises
    ------
    ValueError
        If ``threads`` is not between 1 and :data:`MAX_THREADS`, or
        threadpoolctl is missing.
    """
    threadpool_limits = None
    if threads is not None:
        if not 1 <= threads <= MAX_THREADS:
            raise ValueError(f"--threads must be between 1 and {MAX_THREADS}, got {threads}")
        try:
            from threadpoolctl import threadpool_limits
        except ImportError:
            raise ValueError("--threads needs threadpoolctl: "
                             "pip install 'contractnet[bench]'") from None
    torch = sys.modules.get("torch") or (_import_torch() if torch_too else None)
    previous = torch.get_num_threads() if torch is not None else None
    # the limit applies once made: made last, inside the block that undoes it
    with (contextlib.nullcontext() if threadpool_limits is None
          else threadpool_limits(limits=threads, user_api="blas")):
        running = blas_info()["blas_threads"]  # what BLAS runs (it may cap what was asked)
        count = running if isinstance(running, int) else threads  # unknown: as asked
        if torch is not None and count is not None:
            torch.set_num_threads(count)
        try:
            yield
        finally:
            if torch is not None:
                torch.set_num_threads(previous)


def _import_torch():
    """PyTorch if it is installed, else ``None``."""
    try:
        import torch
    except ImportError:
        return None
    return torch


def machine_info() -> dict[str, object]:
    """CPU, core count, BLAS and library versions, for every result record."""
    info: dict[str, object] = {
        "cpu": _cpu_name(),
        "cores": os.cpu_count(),
        "python": platform.python_version(),
    }
    info.update(blas_info())
    for package in ("numpy", "opt_einsum", "contractnet", "torch"):
        try:
            info[package] = metadata.version(package)
        except metadata.PackageNotFoundError:
            info[package] = _module_version(package)
    return info


def machine_lines() -> list[str]:
    """CPU, libraries, BLAS kernel and threads, and any OpenBLAS overrides set."""
    info, blas = machine_info(), blas_info()
    lines = [f"CPU {info['cpu']}, {info['cores']} cores; Python {info['python']}, numpy "
             f"{info['numpy']}, opt_einsum {info['opt_einsum']}, torch {info['torch']}",
             f"BLAS {blas['blas']}, {blas['blas_threads']} thread(s)"]
    for name in ("OPENBLAS_CORETYPE", "OPENBLAS_L2_SIZE", "OPENBLAS_NUM_THREADS"):
        if name in os.environ:
            lines.append(f"note: {name}={os.environ[name]} is set in this environment")
    return lines


def _module_version(package: str) -> str:
    """Version from the imported module when the package is not installed."""
    try:
        module = __import__(package)
    except ImportError:
        return "not installed"
    return str(getattr(module, "__version__", "unknown"))


def _cpu_name() -> str:
    """The CPU model name (``/proc/cpuinfo`` on Linux, else ``platform``)."""
    with contextlib.suppress(OSError):
        with open("/proc/cpuinfo", encoding="utf-8") as handle:
            for line in handle:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    return platform.processor() or platform.machine() or "unknown"
