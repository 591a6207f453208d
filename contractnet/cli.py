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
    "explain": ("contractnet.explanation", "show a spec's indices, path and backward specs"),
    "train": ("contractnet.train", "train the small CNN on scikit-learn's digits"),
}


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
    args = parser.parse_args(_values_not_options(argv, chosen))
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


def _values_not_options(argv: list[str], command: str | None) -> list[str]:
    """``argv`` with the values argparse would take for options, because they
    start with ``-`` (it only spares a lone number), made plain values:

    - ``explain``'s spec ``"->"`` (an output with no operands) gets a leading
      space, which is no change to a spec;
    - ``--shape -1,2`` becomes ``--shape=-1,2``, and a shape like ``-2x3``
      among ``explain --shapes`` gets a leading space (which the shape's
      parser strips), so that the shape's own check says a size is
      negative, not argparse that the shape is missing.
    """
    out: list[str] = []
    in_shapes = False  # among the values of explain's --shapes
    for arg in argv:
        negative = arg[:1] == "-" and arg[1:2].isdigit()
        if command == "explain" and arg.startswith("->"):
            out.append(" " + arg)
        elif negative and in_shapes:
            out.append(" " + arg)
        elif negative and out and out[-1] == "--shape":
            out[-1] = f"--shape={arg}"
        else:
            out.append(arg)
        in_shapes = command == "explain" and (arg == "--shapes"
                                              or in_shapes and (negative or arg[:1] != "-"))
    return out
