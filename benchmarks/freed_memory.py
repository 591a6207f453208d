"""A training step with glibc's default malloc against ``cn.keep_freed_memory()``.

``keep_freed_memory`` changes the whole process and cannot be undone, so
each setting runs in processes of its own, alternated (default, kept,
kept, default, ...); each process times the cases of ``against_tree.py``
(a CNN training step at batch 64, relu and 2x2 pooling fwd+bwd at
(64,28,28,32)) and counts the page faults per call::

    env -u OPENBLAS_CORETYPE -u OPENBLAS_L2_SIZE python benchmarks/freed_memory.py [--rounds 3]
"""
from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import time

import numpy as np

import contractnet as cn
from contractnet.arguments import int_option
from against_tree import cases  # this folder is the script's own


def page_faults() -> int:
    """Minor page faults of this process so far."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_minflt


def measure(calls: int) -> dict[str, tuple[float, float]]:
    """Each case's median time (ms) and page faults per call, in this process."""
    out = {}
    for name, call in cases(cn):
        call(), call()  # warm-up
        times, before = [], page_faults()
        for _ in range(calls):
            start = time.perf_counter()
            call()
            times.append(time.perf_counter() - start)
        out[name] = (float(np.median(times)) * 1e3, (page_faults() - before) / calls)
    return out


def child(setting: str, calls: int) -> None:
    if setting == "kept" and not cn.keep_freed_memory():
        raise SystemExit("keep_freed_memory() changed nothing: the C library is not glibc")
    print(json.dumps(measure(calls)))


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rounds", type=int_option(1), default=3, help="processes per setting")
    parser.add_argument("--calls", type=int_option(1), default=15, help="timed calls per case")
    parser.add_argument("--child", choices=("default", "kept"), help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        child(args.child, args.calls)
        return
    runs: dict[str, list[dict]] = {"default": [], "kept": []}
    for rnd in range(args.rounds):
        for setting in (("default", "kept") if rnd % 2 == 0 else ("kept", "default")):
            done = subprocess.run([sys.executable, os.path.abspath(__file__), "--child", setting,
                                   "--calls", str(args.calls)],
                                  stdout=subprocess.PIPE, text=True)  # its errors show
            if done.returncode:
                raise SystemExit(f"freed_memory.py: the '{setting}' process failed "
                                 f"(status {done.returncode})")
            runs[setting].append(json.loads(done.stdout.splitlines()[-1]))
    print(f"{args.rounds} processes per setting, {args.calls} calls per case; median ms "
          f"(range over processes), page faults per call")
    for name in runs["default"][0]:
        cells, medians = [], {}
        for setting in ("default", "kept"):
            ms = [run[name][0] for run in runs[setting]]
            faults = [run[name][1] for run in runs[setting]]
            medians[setting] = np.median(ms)
            cells.append(f"{setting} {medians[setting]:.2f} ms ({min(ms):.2f}-{max(ms):.2f}), "
                         f"{np.median(faults):.0f} faults")
        print(f"{name}: " + "; ".join(cells)
              + f"; kept/default {medians['kept'] / medians['default']:.2f}")


if __name__ == "__main__":
    main()
