"""conv2d and pooling forward+backward: contractnet (through ``cn.vjp``) against PyTorch CPU.

Run on purpose, never by pytest::

    env -u OPENBLAS_CORETYPE -u OPENBLAS_L2_SIZE python benchmarks/conv_ratio.py
    python benchmarks/conv_ratio.py --pairs 15 --padding 0 --json out.json
    python benchmarks/conv_ratio.py --profile      # where contractnet's time goes

Protocol (benchmarks/README.md): one process, float32, PyTorch limited to the BLAS
thread count, both methods warmed up and their results compared before any
timing, then alternating pairs (A B, B A, ...); the figure is the median of
the per-pair ratios ``time(contractnet) / time(torch)`` with its spread.
In one process the two thread pools disturb each other: with PyTorch's default
OpenMP policy its idle threads spin on the cores numpy's BLAS needs next;
with ``OMP_WAIT_POLICY=PASSIVE`` PyTorch itself slows down (about 2x at
2 threads on the 14x14x32 layer).  Neither setting gives both libraries their
own best, so compare with ``--threads 1`` too, and with each library timed in
a process of its own (benchmarks/README.md has those figures).  Each method
gets the same numbers in channels-last memory (for PyTorch, NCHW tensors in
``torch.channels_last`` format, its faster CPU path here) prepared outside
the timed call: the same input, kernel and cotangent.
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
from typing import Callable

import numpy as np

import contractnet as cn
from contractnet.arguments import int_option
from contractnet.bench_timing import (MAX_THREADS, blas_info, blas_threads, compare_pair,
                                       machine_info)
from contractnet.engine import PER_OFFSET_MIN_ELEMENTS
from contractnet.files import check_writable, write_file

#: (B, H, W, C, KH, KW, K): MNIST-sized first layer, second layer, digits-sized layer.
SHAPES = [(64, 28, 28, 1, 3, 3, 32), (64, 14, 14, 32, 3, 3, 64), (64, 8, 8, 16, 3, 3, 32)]


def make_inputs(shape, padding: int, seed: int = 0):
    """Float32 input, kernel and output cotangent, channels last."""
    b, h, w, c, kh, kw, k = shape
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((b, h, w, c)).astype(np.float32)
    wk = (rng.standard_normal((kh, kw, c, k)) / np.sqrt(kh * kw * c)).astype(np.float32)
    ho, wo = h + 2 * padding - kh + 1, w + 2 * padding - kw + 1
    dy = rng.standard_normal((b, ho, wo, k)).astype(np.float32)
    return x, wk, dy


def contractnet_step(x, w, dy, padding: int) -> Callable[[], tuple]:
    """One forward+backward of ``cn.conv2d``: returns (y, dx, dw)."""
    def step():
        y, vjp_fn = cn.vjp(lambda x, w: cn.conv2d(x, w, padding=padding), x, w)
        dx, dw = vjp_fn(dy)
        return y, dx, dw
    return step


def _torch_nchw(torch, a: np.ndarray, axes=(0, 3, 1, 2), grad: bool = False):
    """``a`` (channels last) as an NCHW tensor stored channels last."""
    t = torch.from_numpy(np.ascontiguousarray(a.transpose(axes))).contiguous(
        memory_format=torch.channels_last)
    return t.requires_grad_() if grad else t


def torch_step(torch, x, w, dy, padding: int) -> Callable[[], tuple]:
    """One forward+backward of ``torch.nn.functional.conv2d`` on NCHW tensors
    stored channels last (``torch.channels_last``), PyTorch's faster CPU path
    for these shapes and the same memory order contractnet uses."""
    xt, dyt = _torch_nchw(torch, x, grad=True), _torch_nchw(torch, dy)
    wt = _torch_nchw(torch, w, (3, 2, 0, 1), grad=True)

    def step():
        xt.grad = wt.grad = None
        y = torch.nn.functional.conv2d(xt, wt, padding=padding)
        y.backward(dyt)
        return y, xt.grad, wt.grad
    return step


def check_agreement(ours: tuple, theirs: tuple) -> None:
    """Refuse to time methods whose results differ."""
    y, dx, dw = (np.asarray(getattr(a, "value", a)) for a in ours)
    ty, tdx, tdw = (t.detach().numpy() for t in theirs)
    pairs = [("y", y, ty.transpose(0, 2, 3, 1)), ("dx", dx, tdx.transpose(0, 2, 3, 1)),
             ("dw", dw, tdw.transpose(2, 3, 1, 0))]
    for name, a, b in pairs:
        if a.dtype != np.float32:
            raise SystemExit(f"contractnet {name} has dtype {a.dtype}, expected float32")
        scale = float(np.abs(b).max()) or 1.0
        err = float(np.abs(a - b).max()) / scale
        if err > 1e-4:
            raise SystemExit(f"results differ before timing: {name} relative error {err:.2e}")


def measure(torch, shape, padding: int, pairs: int) -> dict:
    x, w, dy = make_inputs(shape, padding)
    ours, theirs = contractnet_step(x, w, dy, padding), torch_step(torch, x, w, dy, padding)
    check_agreement(ours(), theirs())
    result = compare_pair(ours, theirs, pairs=pairs, warmup=3)
    b, h, wd, c, kh, kw, k = shape
    flops = 3 * 2 * b * (h + 2 * padding - kh + 1) * (wd + 2 * padding - kw + 1) * kh * kw * c * k
    return {"shape": dict(zip("B H W C KH KW K".split(), shape)), "padding": padding,
            "contractnet_ms": 1e3 * result.median_a, "torch_ms": 1e3 * result.median_b,
            "ratio": result.ratio.median, "ratio_min": result.ratio.low,
            "ratio_max": result.ratio.high, "pairs": result.ratio.pairs,
            "contractnet_gflops": flops / result.median_a / 1e9}


#: (B, H, W, C, size): 2x2 pooling after an MNIST-sized first layer, and the digits net's.
POOL_SHAPES = [(64, 28, 28, 32, 2), (32, 8, 8, 16, 2)]
POOLS = {"max": ("max_pool2d", "max_pool2d"), "mean": ("avg_pool2d", "avg_pool2d")}


def measure_pool(torch, shape, reduce: str, pairs: int) -> dict:
    """Pooling forward+backward, ``cn.max_pool2d``/``cn.avg_pool2d`` against
    PyTorch's, each on its own layout (channels last for both)."""
    b, h, w, c, size = shape
    rng = np.random.default_rng(0)
    x = rng.standard_normal((b, h, w, c)).astype(np.float32)
    dy = rng.standard_normal((b, h // size, w // size, c)).astype(np.float32)
    ours_fn = getattr(cn, POOLS[reduce][0])
    theirs_fn = getattr(torch.nn.functional, POOLS[reduce][1])
    xt, dyt = _torch_nchw(torch, x, grad=True), _torch_nchw(torch, dy)

    def ours():
        y, vjp_fn = cn.vjp(lambda x: ours_fn(x, size), x)
        return y, vjp_fn(dy)[0]

    def theirs():
        xt.grad = None
        y = theirs_fn(xt, size)
        y.backward(dyt)
        return y, xt.grad
    (y, dx), (ty, tdx) = ours(), theirs()
    for name, a, t in (("y", y, ty), ("dx", dx, tdx)):
        if np.abs(a - t.detach().numpy().transpose(0, 2, 3, 1)).max() > 1e-5:
            raise SystemExit(f"{reduce} pooling results differ before timing: {name}")
    result = compare_pair(ours, theirs, pairs=pairs, warmup=3)
    return {"shape": dict(zip("B H W C size".split(), shape)), "reduce": reduce,
            "contractnet_ms": 1e3 * result.median_a, "torch_ms": 1e3 * result.median_b,
            "ratio": result.ratio.median, "ratio_min": result.ratio.low,
            "ratio_max": result.ratio.high, "pairs": result.ratio.pairs}


def print_pool_table(rows: list[dict]) -> None:
    print(f"{'pooling (B,H,W,C,size)':<28}{'contractnet ms':>15}{'torch ms':>10}"
          f"{'ratio':>8}  spread")
    for r in rows:
        shape = r["reduce"] + " (" + ",".join(str(v) for v in r["shape"].values()) + ")"
        print(f"{shape:<28}{r['contractnet_ms']:>15.3f}{r['torch_ms']:>10.3f}"
              f"{r['ratio']:>8.3f}  {r['ratio_min']:.3f}-{r['ratio_max']:.3f} "
              f"({r['pairs']} pairs)")


def print_table(rows: list[dict]) -> None:
    print(f"{'(B,H,W,C,KH,KW,K)':<28}{'contractnet ms':>15}{'torch ms':>10}"
          f"{'ratio':>8}  spread")
    for r in rows:
        shape = "(" + ",".join(str(v) for v in r["shape"].values()) + ")"
        print(f"{shape:<28}{r['contractnet_ms']:>15.2f}{r['torch_ms']:>10.2f}"
              f"{r['ratio']:>8.3f}  {r['ratio_min']:.3f}-{r['ratio_max']:.3f} "
              f"({r['pairs']} pairs)")


# ------------------------------------------------------------------ profile
def _windows(xp: np.ndarray, kh: int, kw: int, ho: int, wo: int) -> np.ndarray:
    """The read view of ``b(h+u)(w+v)c``: axes (b, h, u, w, v, c), no copy."""
    sb, sh, sw, sc = xp.strides
    return np.lib.stride_tricks.as_strided(
        xp, (xp.shape[0], ho, kh, wo, kw, xp.shape[3]), (sb, sh, sh, sw, sw, sc),
        writeable=False)


def _scatter(core: np.ndarray, padded_shape) -> np.ndarray:
    """Scatter-add ``core`` (b, h, w, u, v, c) into a zeroed padded input."""
    out = np.zeros(padded_shape, dtype=core.dtype)
    _, ho, wo, kh, kw, _ = core.shape
    for u in range(kh):
        for v in range(kw):
            out[:, u:u + ho, v:v + wo, :] += core[:, :, :, u, v, :]
    return out


def stage_calls(shape, padding: int) -> dict[str, Callable[[], object]]:
    """The stages contractnet's conv2d runs, rebuilt in numpy, and
    alternatives it does not run at this shape ("alt").

    The engine pads (zeros and one slice assignment) and copies the windows
    into an im2col matrix once; the forward is one GEMM on it and the kernel
    gradient one GEMM on the same copy.  The input gradient is one GEMM per
    kernel offset, each added into its window, once the (N, KH*KW*C)
    product would hold at least ``PER_OFFSET_MIN_ELEMENTS`` elements; below
    that, one GEMM to that product, then a scatter-add.
    """
    x, w, dy = make_inputs(shape, padding)
    b, h, wd, c, kh, kw, k = shape
    p, (ho, wo) = padding, dy.shape[1:3]
    widths = ((0, 0), (p, p), (p, p), (0, 0))
    xp = cn.pad(x, widths)
    view, n = _windows(xp, kh, kw, ho, wo), b * ho * wo
    cols = view.transpose(0, 1, 3, 2, 4, 5).reshape(n, kh * kw * c)
    w2, dy2 = w.reshape(-1, k), dy.reshape(n, k)
    core = (dy2 @ w2.T).reshape(b, ho, wo, kh, kw, c)
    per_offset = n * kh * kw * c >= PER_OFFSET_MIN_ELEMENTS
    offsets, (product, scatter) = DX_STAGES[per_offset]
    calls = {
        "cn.conv2d forward+backward": contractnet_step(x, w, dy, padding),
        "fwd: pad": lambda: cn.pad(x, widths),
        "fwd: im2col copy (N, KH*KW*C)": lambda: view.transpose(0, 1, 3, 2, 4, 5).reshape(n, -1),
        "fwd: GEMM": lambda: cols @ w2,
        offsets: lambda: _per_offset_dx(dy2, w, xp.shape, ho, wo),
        product: lambda: dy2 @ w2.T,
        scatter: lambda: _scatter(core, xp.shape),
        "dW: GEMM on the forward's im2col": lambda: cols.T @ dy2,
        "alt fwd: copy (KH*KW*C, N) + its .T @ w": lambda: view.transpose(2, 4, 5, 0, 1, 3)
        .reshape(-1, n).T @ w2,
        "alt dW: copy (KH*KW*C, N) + GEMM": lambda: view.transpose(2, 4, 5, 0, 1, 3)
        .reshape(-1, n) @ dy2,
    }
    if p == (kh - 1) // 2 == (kw - 1) // 2 and kh % 2 and kw % 2:
        calls["alt dx: transposed conv (pad, im2col, GEMM)"] = lambda: _transposed_dx(dy, w)
    return calls


#: The input gradient's stage names, keyed by whether the engine runs it per offset.
DX_STAGES = {
    True: ("dx: per-offset GEMM + add",
           ("alt dx: one GEMM to (N, KH*KW*C)", "alt dx: then scatter-add, KH*KW offsets")),
    False: ("alt dx: per-offset GEMM + add",
            ("dx: one GEMM to (N, KH*KW*C)", "dx: then scatter-add, KH*KW offsets")),
}


def _per_offset_dx(dy2, w, padded_shape, ho, wo):
    out = np.zeros(padded_shape, dtype=dy2.dtype)
    part = np.empty((dy2.shape[0], w.shape[2]), dtype=dy2.dtype)
    for u in range(w.shape[0]):
        for v in range(w.shape[1]):
            np.matmul(dy2, w[u, v].T, out=part)
            out[:, u:u + ho, v:v + wo, :] += part.reshape(padded_shape[0], ho, wo, -1)
    return out


def _transposed_dx(dy, w):
    """dx of a stride-1 'same' conv as a conv of dy with the flipped kernel."""
    kh, kw, c, k = w.shape
    q = (kh - 1) // 2, (kw - 1) // 2
    dyp = np.pad(dy, ((0, 0), (q[0], q[0]), (q[1], q[1]), (0, 0)))
    b, h, wd = dy.shape[0], dyp.shape[1] - kh + 1, dyp.shape[2] - kw + 1
    cols = _windows(dyp, kh, kw, h, wd).transpose(0, 1, 3, 2, 4, 5).reshape(b * h * wd, -1)
    flipped = np.ascontiguousarray(w[::-1, ::-1].transpose(0, 1, 3, 2)).reshape(-1, c)
    return cols @ flipped


def check_stages(calls: dict, padding: int) -> None:
    """Each alternative must compute what the stage it replaces computes."""
    offsets = next(name for name in calls if name.endswith("per-offset GEMM + add"))
    scatter = next(name for name in calls if name.endswith("then scatter-add, KH*KW offsets"))
    same = [("fwd: GEMM", "alt fwd: copy (KH*KW*C, N) + its .T @ w"),
            ("dW: GEMM on the forward's im2col", "alt dW: copy (KH*KW*C, N) + GEMM"),
            (offsets, scatter)]
    for a, b in same:
        np.testing.assert_allclose(calls[a](), calls[b](), rtol=1e-4, atol=1e-4, err_msg=b)
    if "alt dx: transposed conv (pad, im2col, GEMM)" in calls:
        p = padding
        dx = calls[offsets]()[:, p:-p or None, p:-p or None]
        np.testing.assert_allclose(calls["alt dx: transposed conv (pad, im2col, GEMM)"](),
                                   dx.reshape(-1, dx.shape[-1]), rtol=1e-4, atol=1e-4)


def profile(shapes, padding: int, rounds: int = 11) -> int:
    """Print the median time of each stage, all stages interleaved per shape."""
    from contractnet.bench_timing import finite_median, interleave
    for shape in shapes:
        calls = stage_calls(shape, padding)
        check_stages(calls, padding)
        times = interleave(calls, repeat=rounds, warmup=2)
        print(f"(B,H,W,C,KH,KW,K) = {shape}, padding {padding}: median, min ms")
        for name, samples in times.items():
            print(f"    {name:<46}{1e3 * finite_median(samples):8.3f}"
                  f"{1e3 * min(samples):8.3f}")
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pairs", type=int_option(9), default=11, help="timed A/B pairs (>= 9)")
    parser.add_argument("--padding", type=int_option(0), default=1, help="zero padding (default 1)")
    parser.add_argument("--threads", type=int_option(1, MAX_THREADS), default=None,
                        help="BLAS and PyTorch threads (default: the BLAS's current count)")
    parser.add_argument("--json", metavar="PATH", help="also write the results as JSON")
    parser.add_argument("--profile", action="store_true",
                        help="time the stages of contractnet's conv instead")
    args = parser.parse_args(argv)
    if args.json is not None:  # before anything is measured
        try:
            check_writable(args.json)
        except ValueError as exc:
            parser.error(f"--json: {exc}")
    if args.profile:
        with blas_threads(args.threads):
            print(", ".join(f"{k}={v}" for k, v in blas_info().items()))
            return profile(SHAPES, args.padding)
    try:
        import torch
    except ImportError:
        print("PyTorch is not installed: nothing to compare against, skipping "
              "(--profile times contractnet's stages without it).")
        return 0
    threads = args.threads if args.threads is not None else blas_info()["blas_threads"]
    threads = threads if isinstance(threads, int) else None
    with blas_threads(threads):
        info = machine_info() | {"torch_threads": torch.get_num_threads(),
                                 "padding": args.padding,
                                 "omp_wait_policy": os.environ.get("OMP_WAIT_POLICY", "")}
        print(", ".join(f"{k}={v}" for k, v in info.items()))
        rows = [measure(torch, shape, args.padding, args.pairs) for shape in SHAPES]
        pool_rows = [measure_pool(torch, shape, reduce, args.pairs)
                     for shape in POOL_SHAPES for reduce in POOLS]
    print_table(rows)
    print(f"median of ratios over shapes: {statistics.median(r['ratio'] for r in rows):.3f}")
    print_pool_table(pool_rows)
    if args.json is not None:
        write_file(args.json, json.dumps({"machine": info, "results": rows,
                                          "pooling": pool_rows}, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
