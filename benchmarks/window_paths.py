"""The path of a spec of three or more operands, one of them windowed.

opt_einsum picks the pairwise path with the fewest FLOPs, and a windowed
operand counts there as its full read, every window offset an axis.  Two
costs of that read escape the count: a product that keeps a window offset
next to the position it slides over makes an intermediate (and, backward,
a gradient) as large as the window's copy, and a product that keeps the
operand's own summed indices is batched over them.  So the plan also
builds a path that reads the window in one product summing all it sums
(the other terms sharing those indices contracted first: a kernel, or part
of one) and takes it when it costs no more FLOPs
(``contractnet.path.contraction_path``).

This script draws random convolutions with factored kernels (CP, Tucker,
depthwise and 1x1 parts, a dense layer after; 2-D and 1-D, strides 1 and
2, float32) until ``--cases`` of them take the one-product path, and
times each one's forward+backward through ``cn.vjp`` (the pairwise steps
recorded by ``contractnet.api._contract_pairwise``), and its untraced
forward (``contractnet.engine.run_plan``, as ``cn.einsum`` runs it), along
the plan's path and along opt_einsum's.  Run it on purpose, never by
pytest::

    env -u OPENBLAS_CORETYPE -u OPENBLAS_L2_SIZE OPENBLAS_NUM_THREADS=1 \\
        python benchmarks/window_paths.py [--cases 60] [--seed 7]
"""
from __future__ import annotations

import argparse
import dataclasses

import numpy as np

import contractnet as cn
from contractnet.arguments import int_option
from contractnet.api import _contract_pairwise
from contractnet.bench_timing import calls_per_sample, machine_lines, ratio_table, time_sample
from contractnet.bind import bind_text
from contractnet.engine import make_plan, run_plan
from contractnet.path import plan_path


def best_time(fn) -> float:
    """Best of 5 mean times of ``fn`` in µs, each over calls lasting 20 ms."""
    return time_sample(fn, calls_per_sample(fn, 2e-2), best_of=5) * 1e6


def draw_layer(rng: np.random.Generator) -> tuple[str, list[tuple[int, ...]]]:
    """A random factored convolution: its spec and operand shapes."""
    pick = lambda *values: int(rng.choice(values))  # noqa: E731
    b, h, c = pick(2, 4, 8, 16, 32), pick(8, 12, 16, 24, 32), pick(3, 8, 16, 32, 64)
    u, r, k = pick(1, 3, 3, 5), pick(2, 4, 8, 16, 32), pick(4, 8, 16, 32, 64)
    u = min(u, h)
    s = pick(1, 1, 2)
    win = "(h+u)(w+v)" if s == 1 else f"({s}h+u)({s}w+v)"
    x = (b, h, h, c)
    layers = [
        (f"b{win}c,ur,vr,cr,kr->bhwk", [x, (u, r), (u, r), (c, r), (k, r)]),
        (f"b({s}h+u)c,ur,cr,kr->bhk", [(b, 4 * h, c), (u, r), (c, r), (k, r)]),
        (f"b{win}c,up,vq,cs,pqsk->bhwk", [x, (u, 4), (u, 4), (c, 4), (4, 4, 4, k)]),
        (f"b{win}c,uvc,ck->bhwk", [x, (u, u, c), (c, k)]),
        (f"b{win}c,uvck,kj->bhwj", [x, (u, u, c, k), (k, pick(4, 10, 32))]),
        (f"b{win}c,uvcr,rk->bhwk", [x, (u, u, c, r), (r, k)]),
        (f"b{win}c,ur,vr,cr->bhwr", [x, (u, r), (u, r), (c, r)]),
        (f"b{win}c,cr,uvr,rk->bhwk", [x, (c, r), (u, u, r), (r, k)]),
    ]
    return layers[int(rng.integers(len(layers)))]


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--cases", type=int_option(1), default=60,
                        help="layers timed: those whose plan takes the one-product path")
    parser.add_argument("--seed", type=int_option(0), default=7)
    args = parser.parse_args(argv)
    rng = np.random.default_rng(args.seed)
    rows: dict[str, list] = {"forward+backward": [], "forward": []}
    drawn = 0
    while len(rows["forward"]) < args.cases:
        spec, shapes = draw_layer(rng)
        drawn += 1
        plan = make_plan(bind_text(spec, tuple(shapes)), "sum")
        sizes = plan.bound.size_map
        read_shapes = tuple(tuple(sizes[n] for n in t) for t in plan.read_names)
        if (plan_path(plan.read_names, read_shapes, plan.target, plan.window_offsets)
                == plan_path(plan.read_names, read_shapes, plan.target)):
            continue  # opt_einsum's path is the plan's
        auto = dataclasses.replace(plan, window_offsets=())  # runs along opt_einsum's path
        operands = [rng.standard_normal(s, dtype=np.float32) for s in shapes]
        dy = rng.standard_normal(cn.einsum(spec, *operands).shape, dtype=np.float32)

        def forward_backward(p):
            _, pullback = cn.vjp(lambda *xs: _contract_pairwise(p, list(xs), p.bound.spec),
                                 *operands)
            return pullback(dy)

        for pass_, call in (("forward+backward", forward_backward),
                            ("forward", lambda p: run_plan(p, operands))):
            rows[pass_].append(tuple(best_time(lambda p=p: call(p)) for p in (auto, plan)))
    for line in machine_lines():
        print(line)
    print(f"{drawn} layers drawn, {args.cases} of them planned along the one-product path:")
    for line in ratio_table(rows, "pass"):
        print(line)
    print("ratio: time along the plan's path over time along opt_einsum's; "
          "faster < 0.9, slower > 1.1")


if __name__ == "__main__":
    main()
