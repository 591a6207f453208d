"""Digits training, seconds per epoch: contractnet against the same net in PyTorch CPU.

Run on purpose, never by pytest::

    python benchmarks/train_digits_torch.py
    python benchmarks/train_digits_torch.py --heads contract flatten cp tucker --pairs 11
    python benchmarks/train_digits_torch.py --json out.json

The net is ``contractnet train digits``'s: Conv2d(1->16, 3x3, same), ReLU,
MaxPool(2), then a head to 10 classes, Adam(lr=0.01), softmax cross-entropy,
batch 32, float32.  PyTorch gets its native layout (channels first) and the
head a PyTorch user would write: ``Flatten + Linear`` for ``contract`` and
``flatten`` (its weight ported with ``flat_weight(W, "NCHW")``), and
``torch.einsum`` of the same spec for ``cp`` and ``tucker``.

Protocol (benchmarks/README.md): one process; both nets start from the same weights
and their logits on the test set are compared before timing; each timed
call is one full epoch (shuffle, batching, forward, backward, Adam step);
both are warmed up, then alternated in pairs (A B, B A, ...); the figure is
the median of the per-pair ratios ``time(contractnet) / time(torch)`` with
its spread.  PyTorch is limited to numpy's BLAS thread count.  Without
PyTorch the script says so and exits 0.
"""
from __future__ import annotations

import argparse
import json
import sys
from typing import Callable

import numpy as np

from contractnet import data, nn, optim, train
from contractnet.arguments import int_option
from contractnet.files import check_writable, write_file
from contractnet.bench_timing import (MAX_THREADS, blas_info, blas_threads, compare_pair,
                                       machine_info)

BATCH, LR = 32, 0.01


def contractnet_epoch(model: nn.Sequential, x: np.ndarray, y: np.ndarray,
                      seed: int) -> Callable[[], float]:
    """One training epoch of the contractnet model per call."""
    opt = optim.Adam(model.parameters(), lr=LR)
    rng = np.random.default_rng(seed)
    return lambda: train.train_epoch(model, opt, x, y, BATCH, rng)


def torch_head(torch, head: nn.Module):
    """The PyTorch head equal to ``head``, fed the channels-first activation (B, D, N, M)."""
    p = {k: torch.from_numpy(v.copy()) for k, v in head.parameters().items()}
    if isinstance(head, (nn.ContractHead, nn.FlattenDense)):
        w = head.parameters()["weight"]
        w4 = w if isinstance(head, nn.ContractHead) else head.full_weight()
        linear = torch.nn.Linear(w4[..., 0].size, w4.shape[-1])
        with torch.no_grad():
            linear.weight.copy_(torch.from_numpy(nn.flat_weight(w4, "NCHW").T.copy()))
            linear.bias.copy_(p["bias"])
        return torch.nn.Sequential(torch.nn.Flatten(), linear)
    spec = head.spec.replace("bnmd", "bdnm", 1)
    return _EinsumHead(torch, spec, [p[n] for n in head.weight_names], p["bias"])


def _EinsumHead(torch, spec: str, weights, bias):
    class EinsumHead(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.weights = torch.nn.ParameterList([torch.nn.Parameter(w) for w in weights])
            self.bias = torch.nn.Parameter(bias)

        def forward(self, x):
            return torch.einsum(spec, x, *self.weights) + self.bias
    return EinsumHead()


def torch_model(torch, model: nn.Sequential):
    """The PyTorch twin of the contractnet model, with the same weights."""
    conv = model[0].parameters()
    tconv = torch.nn.Conv2d(1, conv["weight"].shape[-1], 3, padding=1)
    with torch.no_grad():
        tconv.weight.copy_(torch.from_numpy(conv["weight"].transpose(3, 2, 0, 1).copy()))
        tconv.bias.copy_(torch.from_numpy(conv["bias"]))
    return torch.nn.Sequential(tconv, torch.nn.ReLU(), torch.nn.MaxPool2d(2),
                               torch_head(torch, model[3]))


def torch_epoch(torch, net, x: np.ndarray, y: np.ndarray, seed: int) -> Callable[[], float]:
    """One training epoch of the PyTorch net per call (same batching as contractnet)."""
    xt = torch.from_numpy(np.ascontiguousarray(x.transpose(0, 3, 1, 2)))
    yt = torch.from_numpy(y)
    opt = torch.optim.Adam(net.parameters(), lr=LR)
    rng = np.random.default_rng(seed)
    loss_fn = torch.nn.CrossEntropyLoss()

    def epoch() -> float:
        order = torch.from_numpy(rng.permutation(len(y)))
        total, count = 0.0, 0
        for start in range(0, len(y), BATCH):
            index = order[start:start + BATCH]
            opt.zero_grad()
            loss = loss_fn(net(xt[index]), yt[index])
            loss.backward()
            opt.step()
            total, count = total + loss.item(), count + 1
        return total / count
    return epoch


def check_agreement(torch, model, net, x: np.ndarray) -> float:
    """Refuse to time nets whose logits differ; returns the relative error."""
    ours = model(x)
    with torch.no_grad():
        theirs = net(torch.from_numpy(np.ascontiguousarray(x.transpose(0, 3, 1, 2)))).numpy()
    err = float(np.abs(ours - theirs).max() / (np.abs(theirs).max() or 1.0))
    if ours.dtype != np.float32 or err > 1e-4:
        raise SystemExit(f"nets differ before timing: dtype {ours.dtype}, relative error {err:.2e}")
    return err


def measure(torch, head: str, split, pairs: int, seed: int = 0) -> dict:
    model = train.build_model(head, rng=seed)
    net = torch_model(torch, model)
    err = check_agreement(torch, model, net, split.x_test)
    ours = contractnet_epoch(model, split.x_train, split.y_train, seed)
    theirs = torch_epoch(torch, net, split.x_train, split.y_train, seed)
    result = compare_pair(ours, theirs, pairs=pairs, warmup=2)
    return {"head": head, "contractnet_s_per_epoch": result.median_a,
            "torch_s_per_epoch": result.median_b, "ratio": result.ratio.median,
            "ratio_min": result.ratio.low, "ratio_max": result.ratio.high,
            "pairs": result.ratio.pairs, "logits_rel_error": err,
            "contractnet_test_accuracy": train.evaluate(model, split.x_test, split.y_test)}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--heads", nargs="+", choices=train.HEADS, default=["contract"])
    parser.add_argument("--pairs", type=int_option(1), default=9, help="timed A/B pairs")
    parser.add_argument("--threads", type=int_option(1, MAX_THREADS), default=None,
                        help="BLAS and PyTorch threads (default: the BLAS's current count)")
    parser.add_argument("--json", metavar="PATH", help="also write the results as JSON")
    args = parser.parse_args(argv)
    if args.json is not None:  # before anything is measured
        try:
            check_writable(args.json)
        except ValueError as exc:
            parser.error(f"--json: {exc}")
    try:
        import torch
    except ImportError:
        print("PyTorch is not installed: nothing to compare against, skipping.")
        return 0
    try:
        split = data.load_digits(seed=0)
    except ImportError as exc:  # scikit-learn is this script's own requirement (the
        raise SystemExit(str(exc)) from None  # data extra); PyTorch is an optional peer
    with blas_threads(args.threads):
        blas = blas_info()
        if isinstance(blas["blas_threads"], int):
            torch.set_num_threads(blas["blas_threads"])
        print(f"BLAS {blas['blas']}, {blas['blas_threads']} threads; torch {torch.__version__}, "
              f"{torch.get_num_threads()} threads; batch {BATCH}, float32, {args.pairs} pairs")
        rows = [measure(torch, head, split, args.pairs) for head in args.heads]
        machine = machine_info()  # inside the block: its thread count is the one timed
    print(f"{'head':<10}{'contractnet s/epoch':>21}{'torch s/epoch':>15}{'ratio':>8}  spread")
    for r in rows:
        print(f"{r['head']:<10}{r['contractnet_s_per_epoch']:>21.4f}{r['torch_s_per_epoch']:>15.4f}"
              f"{r['ratio']:>8.3f}  {r['ratio_min']:.3f}-{r['ratio_max']:.3f} ({r['pairs']} pairs)")
    if args.json is not None:
        write_file(args.json, json.dumps({"machine": machine, "results": rows}, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
