"""The contractnet command: bench, explain and train.

Each subcommand lives in its own module, which supplies
``add_arguments(parser)`` and ``run(args) -> int``.
"""
from __future__ import annotations

import argparse
import importlib
import os
import sys
from typing import Sequence

from . import __version__

SUBCOMMANDS = {
    "bench": ("contractnet.bench", "time the contraction head, conv2d and low-rank heads "
                                   "against flatten+matmul, PyTorch and numpy"),
    "explain": ("contractnet.explain", "show a spec's indices, path and backward specs"),
    "train": ("contractnet.train", "train the small CNN on scikit-learn's digits"),
}


class Once(argparse.Action):
    """Store an option's value, refusing the option a second time (argparse
    would keep the last and drop the first silently)."""

    def __call__(self, parser, namespace, values, option_string=None):
        if getattr(namespace, self.dest) is not None:
            parser.error(f"{option_string} was given twice; give it once")
        setattr(namespace, self.dest, values)


def build_parser(only: str | None = None) -> argparse.ArgumentParser:
    """The argument parser; with ``only``, just that subcommand's module is imported."""
    parser = argparse.ArgumentParser(prog="contractnet", description=__doc__.splitlines()[0])
    parser.add_argument("--version", action="version", version=f"contractnet {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name, (module, help_text) in SUBCOMMANDS.items():
        if only is not None and name != only:
            continue
        sp = sub.add_parser(name, help=help_text, description=help_text)
        importlib.import_module(module).add_arguments(sp)
        sp.set_defaults(module=module)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; returns the exit status."""
    argv = list(sys.argv[1:] if argv is None else argv)
    chosen = next((a for a in argv if not a.startswith("-")), None)
    parser = build_parser(chosen if chosen in SUBCOMMANDS else None)
    if chosen == "explain":  # a spec such as "->" would read as an option; a space
        argv = [" " + a if a.startswith("->") else a for a in argv]  # is no change to it
    argv = _attach_negative_shapes(argv)
    args = parser.parse_args(argv)
    if args.command is None:
        parser.error(f"a command is required: {', '.join(SUBCOMMANDS)}")
    try:
        return int(importlib.import_module(args.module).run(args) or 0)
    except ValueError as exc:  # bad specs, shapes and parameters: no traceback
        print(f"contractnet {args.command}: error: {exc}", file=sys.stderr)
        return 2
    except BrokenPipeError:  # the reader went away (e.g. `| head`): stop quietly
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 1
    except OSError as exc:  # e.g. a full disk while writing a report
        print(f"contractnet {args.command}: error: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:  # Ctrl-C: files are written whole or not at all
        print(f"contractnet {args.command}: interrupted", file=sys.stderr)
        return 130
    except MemoryError as exc:  # arrays that each fit the budget, but not together
        print(f"contractnet {args.command}: error: out of memory ({exc}); try smaller sizes",
              file=sys.stderr)
        return 1


def _attach_negative_shapes(argv: list[str]) -> list[str]:
    """``--shape -1,2`` as ``--shape=-1,2``: argparse takes a value starting with
    ``-`` for an option unless it is one number, and would say the shape is
    missing, not that a size is negative."""
    out: list[str] = []
    for arg in argv:
        if out and out[-1] == "--shape" and arg[:1] == "-" and arg[1:2].isdigit():
            out[-1] = f"--shape={arg}"
        else:
            out.append(arg)
    return out
