"""Two-operand contractions off the head's path: contractnet against numpy.einsum.

The engine routes a pair of operands to one (batched) GEMM or to
``numpy.einsum``; this script times each route against numpy's own, on the
shapes that once went the slow way, with the error of each against the
float64 answer:

- reductions that keep a shared index (``"ab,ab->b"``, ``"bhwc,bhwc->c"``):
  the gradient of a per-channel scale, and a step of many backward passes;
  contractnet adds long float32 sums in blocks, where numpy.einsum adds
  term by term, so the table gives both errors against float64;
- batched dot products contiguous along their sums (``"ab,ab->a"``);
- a batched matrix-vector product with its batch index innermost
  (``"yimc,ic->mcy"``), which a GEMM would copy batch-outermost first;
- an outer product, small batched products (a GEMM for matrices, numpy.einsum
  for tiny vector products) and one whose batch index is innermost in one
  operand;
- sums over an operand's axes (a bias gradient ``"bhwc->c"``, a middle axis,
  and a long contiguous run that ndarray.sum adds pairwise).

It also gives forward+backward over forward for two layers made of such
steps (target of the core issue: about 3).  Run it on purpose, never by
pytest::

    env -u OPENBLAS_CORETYPE -u OPENBLAS_L2_SIZE python benchmarks/pair_routes.py [--pairs 9]

Protocol: float32; each pair route's error against float64 is printed
beside its times (nothing is refused on it); alternating pairs in one
process; each figure is the median of the per-pair ratios, with its spread.
"""
from __future__ import annotations

import argparse

import numpy as np

import contractnet as cn
from contractnet.arguments import int_option
from contractnet.bench_timing import compare_pair, machine_lines

#: (spec, operand shapes): each timed as cn.einsum against numpy.einsum.
PAIRS = [
    ("ab,ab->b", [(64, 4096), (64, 4096)]),
    ("ab,ab->b", [(512, 512), (512, 512)]),
    ("ab,ab->a", [(512, 512), (512, 512)]),
    ("bhwc,bhwc->c", [(64, 28, 28, 32), (64, 28, 28, 32)]),
    ("ab,ab->b", [(200000, 2), (200000, 2)]),
    ("yimc,ic->mcy", [(5, 48, 10, 256), (48, 256)]),
    ("i,j->ij", [(2048,), (2048,)]),
    ("bij,bjk->bik", [(256, 4, 8), (256, 8, 4)]),
    ("bij,bjk->bik", [(1000, 2, 2), (1000, 2, 2)]),
    ("bj,bjk->bk", [(1000, 2), (1000, 2, 2)]),
    ("ijs,jsl->isl", [(6, 3, 1000), (3, 1000, 16)]),
    ("bhwc->c", [(64, 28, 28, 32)]),
    ("abcd->abd", [(8, 384, 10, 2)]),
    ("bij->b", [(64, 128, 96)]),
]
#: (spec, operand shapes): forward+backward through cn.vjp over the forward.
LAYERS = [
    ("bhwc,c->bhwc", [(64, 28, 28, 32), (32,)]),
    ("ab,b,b->ab", [(512, 512), (512,), (512,)]),
]


def _arrays(shapes, seed: int = 0) -> list[np.ndarray]:
    rng = np.random.default_rng(seed)
    return [rng.standard_normal(s, dtype=np.float32) for s in shapes]


def _relative_error(got: np.ndarray, exact: np.ndarray) -> float:
    """Largest error against the float64 answer, over its largest element."""
    return float(np.max(np.abs(got - exact)) / max(np.max(np.abs(exact)), 1e-300))


def _row(name: str, result) -> str:
    r = result.ratio
    return (f"| {name} | {result.median_a * 1e3:.3f} | {result.median_b * 1e3:.3f} | "
            f"{r.median:.2f} | {r.low:.2f}-{r.high:.2f} |")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pairs", type=int_option(1), default=9,
                        help="alternating pairs (default 9)")
    args = parser.parse_args(argv)
    print("\n".join(machine_lines()))
    print("\n| spec and shapes | A = cn.einsum ms | B = numpy.einsum ms | median A/B | min-max "
          "| A's error | B's error |")
    print("|---|---|---|---|---|---|---|")
    for spec, shapes in PAIRS:
        ops = _arrays(shapes)
        exact = np.einsum(spec, *(x.astype(np.float64) for x in ops))
        errors = [_relative_error(f(spec, *ops), exact) for f in (cn.einsum, np.einsum)]
        result = compare_pair(lambda: cn.einsum(spec, *ops), lambda: np.einsum(spec, *ops),
                              pairs=args.pairs, best_of=3)
        print(_row(f"`{spec}` {' '.join(map(str, shapes))}", result)
              + " {:.1e} | {:.1e} |".format(*errors))
    print("\n| layer | A = fwd+bwd ms | B = fwd ms | median A/B | min-max |")
    print("|---|---|---|---|---|")
    for spec, shapes in LAYERS:
        ops = _arrays(shapes)
        dy = np.ones_like(np.einsum(spec, *ops))

        def both(spec=spec, ops=ops, dy=dy):
            return cn.vjp(lambda *xs: cn.einsum(spec, *xs), *ops)[1](dy)
        result = compare_pair(both, lambda: cn.einsum(spec, *ops), pairs=args.pairs, best_of=3)
        print(_row(f"`{spec}` {' '.join(map(str, shapes))}", result))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
