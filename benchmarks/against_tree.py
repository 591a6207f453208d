"""This checkout's contractnet against another one, alternated in one process.

Times forward+backward of a few layers and one CNN training step with both
versions side by side: the other checkout's package is imported under
another name (``contractnet_other``, through a symbolic link in a temporary
folder), so both see the same machine state, call by call.  Give it the
root of another checkout (``git worktree add /tmp/old <commit>`` or ``git
archive <commit> | tar -x -C /tmp/old``)::

    env -u OPENBLAS_CORETYPE -u OPENBLAS_L2_SIZE python benchmarks/against_tree.py /tmp/old

The other package's own modules that import ``contractnet`` by name (its
``nn`` layers) get this checkout's; the cases here call only the core
functions, which import each other relatively.
"""
from __future__ import annotations

import argparse
import atexit
import importlib
import os
import shutil
import sys
import tempfile
import time

import numpy as np

import contractnet as this
from contractnet.arguments import int_option


def other_package(root: str):
    """The contractnet package under ``root``, imported as ``contractnet_other``."""
    package = os.path.join(os.path.abspath(root), "contractnet")
    if not os.path.isfile(os.path.join(package, "__init__.py")):
        raise SystemExit(f"{root!r} holds no contractnet package")
    folder = tempfile.mkdtemp()
    atexit.register(shutil.rmtree, folder)  # the link only, not what it points to
    os.symlink(package, os.path.join(folder, "contractnet_other"))
    sys.path.insert(0, folder)
    return importlib.import_module("contractnet_other")


def cases(cn, rng_seed: int = 0):
    """(name, call) pairs for one version ``cn``, on the same arrays for each."""
    rng = np.random.default_rng(rng_seed)
    x = rng.standard_normal((64, 28, 28, 1)).astype(np.float32)
    params = {"w1": rng.standard_normal((3, 3, 1, 32)).astype(np.float32) * 0.3,
              "w2": rng.standard_normal((3, 3, 32, 64)).astype(np.float32) * 0.05,
              "wh": rng.standard_normal((7, 7, 64, 10)).astype(np.float32) * 0.01}
    act = rng.standard_normal((64, 28, 28, 32)).astype(np.float32)
    g_act = rng.standard_normal((64, 28, 28, 32)).astype(np.float32)
    g_pool = rng.standard_normal((64, 14, 14, 32)).astype(np.float32)

    def loss(p):
        h = cn.max_pool2d(cn.relu(cn.conv2d(x, p["w1"], padding=1)), 2)
        h = cn.max_pool2d(cn.relu(cn.conv2d(h, p["w2"], padding=1)), 2)
        y = cn.einsum("bnmd,nmdk->bk", h, p["wh"])
        return cn.sum(y * y)
    step = cn.grad(loss)
    return [
        ("CNN step (conv 1->32, relu, pool, conv 32->64, relu, pool, head; batch 64)",
         lambda: step(params)),
        ("relu fwd+bwd (64,28,28,32)", lambda: cn.vjp(cn.relu, act)[1](g_act)),
        ("2x2 max pool fwd+bwd (64,28,28,32)",
         lambda: cn.vjp(lambda a: cn.max_pool2d(a, 2), act)[1](g_pool)),
        ("2x2 avg pool fwd+bwd (64,28,28,32)",
         lambda: cn.vjp(lambda a: cn.avg_pool2d(a, 2), act)[1](g_pool)),
    ]


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("other", help="root of the other checkout")
    parser.add_argument("--rounds", type=int_option(1), default=20,
                        help="alternated pairs per case")
    args = parser.parse_args(argv)
    other = other_package(args.other)
    print(f"this: {os.path.dirname(this.__file__)}; other: {os.path.dirname(other.__file__)}")
    for (name, mine), (_, theirs) in zip(cases(this), cases(other)):
        calls = {"this": mine, "other": theirs}
        for call in calls.values():
            call(), call()  # warm-up
        times: dict[str, list[float]] = {"this": [], "other": []}
        for rnd in range(args.rounds):
            for who in (("this", "other") if rnd % 2 else ("other", "this")):
                start = time.perf_counter()
                calls[who]()
                times[who].append(time.perf_counter() - start)
        mine_t, theirs_t = np.array(times["this"]), np.array(times["other"])
        print(f"{name}: other {np.median(theirs_t) * 1e3:.2f} ms, this "
              f"{np.median(mine_t) * 1e3:.2f} ms, median ratio this/other "
              f"{np.median(mine_t / theirs_t):.3f}")


if __name__ == "__main__":
    main()
