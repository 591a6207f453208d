"""Honest timing on a shared, noisy machine: interleaved samples, paired ratios.

A ratio between two methods is measured in one process: warm both up, then
alternate them (A B, B A, ...) so that both see the same machine state, take
the ratio within each pair and report the median ratio and its spread.  With
more than two methods the order rotates every round and each method's ratio
to the baseline is taken within the round.

This module also describes the machine the figures come from: CPU, cores, the
BLAS library and its thread count (through threadpoolctl), and the measured
GEMM rate that percentages are relative to.
"""
from __future__ import annotations

import contextlib
import gc
import math
import os
import platform
import statistics
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
#: Pause before each sample.  Thread pools spin for a while after a call
#: (OpenBLAS's and PyTorch's OpenMP pool); on a machine with few cores the
#: next method would otherwise share its cores with them.
SETTLE_SECONDS = 0.005


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


def time_sample(fn: Call, calls: int = 1) -> float:
    """Seconds per call of ``fn``, averaged over ``calls`` back-to-back calls."""
    start = time.perf_counter()
    for _ in range(calls):
        fn()
    return (time.perf_counter() - start) / calls


def interleave(fns: Mapping[str, Call], repeat: int, warmup: int = 1,
               budget_seconds: float | None = None,
               settle_seconds: float = SETTLE_SECONDS) -> dict[str, list[float]]:
    """Time several methods round-robin so that they share machine state.

    Parameters
    ----------
    fns : mapping of str to callable
        Zero-argument calls to time; the first is the baseline.
    repeat : int
        Rounds; each round times every method once, in an order that rotates
        and reverses from round to round.
    warmup : int
        Untimed calls per method before the first round.
    budget_seconds : float, optional
        A method whose samples have used more than this stops being timed
        (it keeps at least one sample), so a very slow peer cannot stall a run.
    settle_seconds : float
        Pause before each sample, so that one method's spinning threads have
        gone idle before the next method starts.

    Returns
    -------
    dict of str to list of float
        Seconds per call for every round; a method that left early has
        ``nan`` for the rounds it missed, so lists stay aligned by round.
    """
    if repeat < 1:
        raise ValueError(f"repeat must be at least 1, got {repeat}")
    names = list(fns)
    calls = {name: calls_per_sample(fns[name]) for name in names}
    for name in names:
        for _ in range(max(0, warmup - 1)):
            fns[name]()
    times: dict[str, list[float]] = {name: [] for name in names}
    spent = dict.fromkeys(names, 0.0)
    for rnd in range(repeat):
        order = names[rnd % len(names):] + names[:rnd % len(names)]
        for name in (order if rnd % 2 == 0 else order[::-1]):
            if budget_seconds is not None and times[name] and spent[name] > budget_seconds:
                times[name].append(math.nan)
                continue
            time.sleep(settle_seconds)
            seconds = time_sample(fns[name], calls[name])
            spent[name] += seconds * calls[name]
            times[name].append(seconds)
    return times


def paired_ratio(times: Sequence[float], baseline: Sequence[float]) -> RatioSummary:
    """Median and spread of the ratio within each round (``nan`` rounds skipped).

    Examples
    --------
    >>> str(paired_ratio([2.0, 2.2, 1.8], [1.0, 1.0, 1.0]))
    '2.000 (min 1.800, max 2.200, 3 pairs)'
    """
    ratios = [t / b for t, b in zip(times, baseline)
              if not (math.isnan(t) or math.isnan(b)) and b > 0]
    if not ratios:
        return RatioSummary(math.nan, math.nan, math.nan, 0)
    return RatioSummary(statistics.median(ratios), min(ratios), max(ratios), len(ratios))


def compare_pair(a: Call, b: Call, pairs: int = 9, warmup: int = 2) -> PairResult:
    """Time ``a`` against ``b`` in alternating pairs (A B, B A, ...).

    Parameters
    ----------
    a, b : callable
        Zero-argument calls doing the same work two ways.
    pairs : int
        Number of pairs, at least 9 for a figure worth reporting.
    warmup : int
        Untimed calls of each before timing.

    Returns
    -------
    PairResult
        Per-call times of both and the median of ``time(a) / time(b)``.
    """
    if pairs < 1:
        raise ValueError(f"pairs must be at least 1, got {pairs}")
    times = interleave({"a": a, "b": b}, repeat=pairs, warmup=warmup)
    ratio = paired_ratio(times["a"], times["b"])
    return PairResult(tuple(times["a"]), tuple(times["b"]), ratio)


def finite_median(values: Sequence[float]) -> float:
    """Median of the values that are not ``nan`` (``nan`` if none are)."""
    kept = [v for v in values if not math.isnan(v)]
    return statistics.median(kept) if kept else math.nan


# ------------------------------------------------------------------ memory
def peak_memory(fn: Call) -> int:
    """Extra bytes allocated at the peak of one call of ``fn`` (tracemalloc).

    Counts allocations that go through Python's tracing hooks, which numpy's
    data buffers do; libraries with their own allocator (PyTorch) are not
    seen, so their figure is not comparable.
    """
    gc.collect()
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
def gemm_rate(dtype: np.dtype | str = "float32", n: int = 1024, repeat: int = 5) -> float:
    """This machine's GEMM rate in GFLOP/s: median of ``repeat`` square products.

    Uses numpy's BLAS with the current thread limits and ``dtype``, the same
    calls the head benchmarks make.
    """
    rng = np.random.default_rng(0)
    a = rng.standard_normal((n, n)).astype(dtype)
    b = rng.standard_normal((n, n)).astype(dtype)
    out = np.empty((n, n), dtype=dtype)
    np.matmul(a, b, out=out)
    seconds = statistics.median(
        time_sample(lambda: np.matmul(a, b, out=out)) for _ in range(repeat))
    return 2.0 * n ** 3 / seconds / 1e9


def blas_info() -> dict[str, object]:
    """The BLAS numpy uses: library, version, kernel and thread count.

    Values are ``"unknown"`` when threadpoolctl is not installed.
    """
    try:
        from threadpoolctl import threadpool_info
    except ImportError:
        return {"blas": "unknown (threadpoolctl not installed)", "blas_threads": "unknown"}
    for pool in threadpool_info():
        if pool.get("user_api") == "blas":
            kernel = pool.get("architecture")
            name = f"{pool.get('internal_api')} {pool.get('version')}"
            return {"blas": name + (f" ({kernel})" if kernel else ""),
                    "blas_threads": pool.get("num_threads")}
    return {"blas": "none found", "blas_threads": "unknown"}


@contextlib.contextmanager
def blas_threads(threads: int | None) -> Iterator[None]:
    """Limit BLAS (and PyTorch, when loaded) to ``threads`` threads inside the block.

    ``None`` changes nothing.

    Raises
    ------
    ValueError
        If ``threads`` is not positive, or threadpoolctl is missing.
    """
    if threads is None:
        yield
        return
    if threads < 1:
        raise ValueError(f"--threads must be at least 1, got {threads}")
    try:
        from threadpoolctl import threadpool_limits
    except ImportError:
        raise ValueError("--threads needs threadpoolctl: pip install 'contractnet[bench]'") from None
    torch = _import_torch()
    previous = torch.get_num_threads() if torch is not None else None
    with threadpool_limits(limits=threads, user_api="blas"):
        if torch is not None:
            torch.set_num_threads(threads)
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
