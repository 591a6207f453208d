"""Benchmark output: the terminal table and progress bar, JSON, CSV, Markdown and plots.

One :class:`Record` is one method x shape x pass.  The terminal table uses
rich when it is installed and plain text otherwise; ``--plot`` needs
matplotlib (the ``bench`` extra) and says so when it is missing.
"""
from __future__ import annotations

import contextlib
import csv
import io
import math
import os
import shutil
import sys
import textwrap
from dataclasses import asdict, dataclass, field, fields
from typing import Iterator, Sequence

from .files import json_text, write_file

PASSES = ("forward", "forward+backward")


@dataclass
class Record:
    """One method on one shape and pass; times in seconds, memory in bytes.

    ``status`` is ``"ok"``, ``"mismatch"`` (disagrees with the reference,
    so not timed) or ``"error"``; ``ratio`` is the median of per-round ratios
    ``time / time(baseline)``; ``other_load`` is the share of the CPUs other
    processes used while the case was timed.
    """

    kind: str
    case: str
    shape: str
    dtype: str
    method: str
    label: str
    pass_: str
    status: str = "ok"
    note: str = ""
    repeats: int = 0
    median_s: float = math.nan
    min_s: float = math.nan
    max_s: float = math.nan
    gflop: float = math.nan
    gflop_s: float = math.nan
    pct_gemm: float = math.nan
    peak_bytes: int | None = None
    max_abs_diff: float = math.nan
    ratio: float = math.nan
    ratio_min: float = math.nan
    ratio_max: float = math.nan
    params: int | None = None
    other_load: float | None = None
    dims: dict = field(default_factory=dict)
    machine: dict = field(default_factory=dict)

    def flat(self) -> dict[str, object]:
        """The record as one flat row: ``pass``, dims and machine fields inlined."""
        row = {("pass" if k == "pass_" else k): v for k, v in asdict(self).items()
               if k not in ("dims", "machine")}
        row["dims"] = " ".join(f"{k}={v}" for k, v in self.dims.items())
        row.update(self.machine)
        return row


# ------------------------------------------------------------------ files
def write_json(path: str, records: Sequence[Record], header: dict) -> None:
    """``{"machine": ..., "gemm_gflop_s": ..., "notes": [...], "records": [flat rows]}``."""
    payload = dict(header, records=[r.flat() for r in records])
    write_file(path, json_text(payload, indent=1) + "\n")


def write_csv(path: str, records: Sequence[Record]) -> None:
    """One row per record, with the machine's fields on every row."""
    rows = [r.flat() for r in records]
    columns = list(dict.fromkeys(k for row in rows for k in row)) or \
        [f.name for f in fields(Record)]
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=columns, lineterminator="\n")
    writer.writeheader()
    for row in rows:
        writer.writerow({k: ("" if v is None else v) for k, v in row.items()})
    write_file(path, buffer.getvalue())


def plot_format(path: str) -> str:
    """The image format ``--plot`` writes to ``path``: its extension's, or PNG
    for a name without one (written under that exact name).

    Raises
    ------
    ValueError
        If matplotlib is not installed (naming the ``bench`` extra), or
        cannot write the extension's format.
    """
    try:
        import matplotlib  # first: a loaded submodule alone does not count
        from matplotlib.backends.backend_agg import FigureCanvasAgg
    except ImportError:
        raise ValueError("--plot needs matplotlib, which is not installed: "
                         "pip install 'contractnet[bench]'") from None
    extension = os.path.splitext(path)[1][1:].lower()
    supported = FigureCanvasAgg.get_supported_filetypes()
    if extension and extension not in supported:
        raise ValueError(f"--plot {path!r}: matplotlib cannot write '.{extension}' files; "
                         f"use one of {', '.join('.' + e for e in sorted(supported))}")
    if extension == "pgf":  # matplotlib measures the text with a TeX system for PGF
        texsystem = matplotlib.rcParams["pgf.texsystem"]
        if shutil.which(texsystem) is None:
            raise ValueError(f"--plot {path!r}: writing '.pgf' needs {texsystem}, which is "
                             "not installed; use '.pdf' or '.svg'")
    return extension or "png"


def write_plot(path: str, records: Sequence[Record], title: str) -> None:
    """GFLOP/s against problem size (GFLOP), one line per method, one panel per pass."""
    image_format = plot_format(path)
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    panels = [(kind, p) for kind in dict.fromkeys(r.kind for r in records) for p in PASSES]
    fig, axes = plt.subplots(len(panels), 1, figsize=(8, 3.2 * max(1, len(panels))),
                             squeeze=False)
    for ax, (kind, pass_) in zip(axes[:, 0], panels):
        _plot_panel(ax, [r for r in records if r.kind == kind and r.pass_ == pass_])
        ax.set_title(f"{kind}: {pass_}", fontsize=10)
    fig.suptitle(textwrap.fill(title, 110), fontsize=8)
    fig.tight_layout(rect=(0, 0, 1, 0.98))
    write_file(path, lambda handle: fig.savefig(handle, dpi=110, format=image_format))
    plt.close(fig)


def _plot_panel(ax, records: Sequence[Record]) -> None:
    for method in dict.fromkeys(r.method for r in records):
        points = sorted((r.gflop, r.gflop_s) for r in records
                        if r.method == method and r.status == "ok" and math.isfinite(r.gflop_s))
        if points:
            ax.plot(*zip(*points), marker="o", label=method)
    ax.set_xscale("log")
    ax.set_xlabel("problem size (GFLOP per call)")
    ax.set_ylabel("GFLOP/s")
    ax.grid(True, alpha=0.3)
    if ax.lines:
        ax.legend(fontsize=7)


# ------------------------------------------------------------------ tables
COLUMNS = ("case", "pass", "method", "GFLOP", "median ms", "min-max ms", "GFLOP/s", "% GEMM",
           "peak MB", "max |diff|", "ratio (min-max)", "load %", "params")


def columns(records: Sequence[Record]) -> tuple[str, ...]:
    """The table's columns: ``params`` only when some record has a parameter count."""
    if any(r.params is not None for r in records):
        return COLUMNS
    return COLUMNS[:-1]


def table_rows(records: Sequence[Record]) -> list[tuple[str, ...]]:
    """The text of every table row, in :func:`columns` order."""
    width = len(columns(records))
    return [_row(r)[:width] for r in records]


def _row(r: Record) -> tuple[str, ...]:
    ms = "-" if math.isnan(r.median_s) else f"{r.median_s * 1e3:.3f}"
    spread = "-" if math.isnan(r.min_s) else f"{r.min_s * 1e3:.3f}-{r.max_s * 1e3:.3f}"
    ratio = "-" if math.isnan(r.ratio) else f"{r.ratio:.3f} ({r.ratio_min:.2f}-{r.ratio_max:.2f})"
    if r.status != "ok":
        ratio = r.status.upper()
    short = {"forward": "fwd", "forward+backward": "fwd+bwd"}.get(r.pass_, r.pass_)
    load = "?" if r.other_load is None else f"{100 * r.other_load:.0f}"
    return (r.case, short, r.method, _fmt(r.gflop, ".3g"), ms, spread, _fmt(r.gflop_s, ".1f"),
            _fmt(r.pct_gemm, ".0f"),
            "n/a" if r.peak_bytes is None else f"{r.peak_bytes / 2**20:.1f}",
            _fmt(r.max_abs_diff, ".1e"), ratio, load,
            "" if r.params is None else f"{r.params:,}")


def _fmt(value: float, spec: str) -> str:
    return "-" if value is None or not math.isfinite(value) else format(value, spec)


def print_table(records: Sequence[Record], title: str, stream=None) -> None:
    """Print the results table: rich when available, plain text otherwise."""
    stream = stream or sys.stdout
    rich = _rich()
    if rich is None:
        print(plain_table(records, title), file=stream)
        return
    from rich.console import Console
    from rich.table import Table
    table = Table(title=title, title_justify="left")
    for name in columns(records):
        table.add_column(name, justify="left" if name in ("case", "pass", "method") else "right")
    for record, row in zip(records, table_rows(records)):
        style = "red" if record.status != "ok" else ("bold" if record.ratio == 1.0 else None)
        table.add_row(*row, style=style)
    # A pipe has no width; let the table keep one line per row there.
    Console(file=stream, width=max(200, _terminal_width())).print(table)


def plain_table(records: Sequence[Record], title: str) -> str:
    """The results table as aligned plain text (no rich needed)."""
    rows = [columns(records)] + table_rows(records)
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    lines = [title]
    for n, row in enumerate(rows):
        lines.append("  ".join(cell.ljust(w) if i < 3 else cell.rjust(w)
                               for i, (cell, w) in enumerate(zip(row, widths))))
        if n == 0:
            lines.append("  ".join("-" * w for w in widths))
    return "\n".join(lines)


def markdown_table(records: Sequence[Record]) -> str:
    """The results table in GitHub Markdown."""
    rows = table_rows(records)
    names = columns(records)
    lines = ["| " + " | ".join(_escape(n) for n in names) + " |", "|" + "---|" * len(names)]
    lines += ["| " + " | ".join(_escape(cell) for cell in row) + " |" for row in rows]
    return "\n".join(lines)


def _escape(cell: str) -> str:
    """A table cell that may contain ``|`` (as in ``max |diff|``)."""
    return cell.replace("|", "\\|")


def write_markdown(path: str, records: Sequence[Record], titles: dict[str, str],
                   lines: Sequence[str], plot: str | None = None) -> None:
    """The tables in Markdown, one section per kind, after ``lines`` as a list."""
    parts = [f"- {line}" for line in lines]
    for kind in dict.fromkeys(r.kind for r in records):
        parts += ["", f"### {titles.get(kind, kind)}", "",
                  markdown_table([r for r in records if r.kind == kind])]
    if plot:  # linked from where the Markdown file is
        link = os.path.relpath(os.path.abspath(plot), os.path.dirname(os.path.abspath(path)))
        parts += ["", f"![GFLOP/s against problem size]({link})"]
    write_file(path, "\n".join(parts) + "\n")


def _terminal_width() -> int:
    try:
        return os.get_terminal_size().columns
    except OSError:
        return 0


def _rich():
    """The rich package, or ``None`` when it is not installed."""
    try:
        import rich
    except ImportError:
        return None
    return rich


class _Silent:
    """Progress that shows nothing (no rich, or disabled)."""

    def start(self, description: str) -> None:
        pass

    def done(self) -> None:
        pass


class _Bar:
    """A rich progress bar: ``start(description)`` then ``done()`` per step."""

    def __init__(self, bar, task) -> None:
        self.bar, self.task = bar, task

    def start(self, description: str) -> None:
        self.bar.update(self.task, description=description)

    def done(self) -> None:
        self.bar.update(self.task, advance=1)


@contextlib.contextmanager
def progress(total: int, enabled: bool = True) -> Iterator:
    """A transient progress bar on stderr (rich); yields an object with
    ``start(description)`` and ``done()``, which do nothing without rich or
    when stderr is no terminal (a log file would keep the bar's last line)."""
    if not enabled or not sys.stderr.isatty() or _rich() is None:
        yield _Silent()
        return
    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn
    from rich.progress import TimeElapsedColumn
    bar = Progress(TextColumn("{task.description:<40}"), BarColumn(), MofNCompleteColumn(),
                   TimeElapsedColumn(), console=Console(file=sys.stderr), transient=True)
    with bar:
        yield _Bar(bar, bar.add_task("benchmarking", total=total))
