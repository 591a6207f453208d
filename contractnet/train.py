"""``contractnet train digits``: a small CNN on scikit-learn's digits, head of your choice.

The net is ``Conv2d(1->16, 3x3, same) -> ReLU -> MaxPool2d(2)`` giving a
``(4, 4, 16)`` activation, then one of four heads to 10 classes:

* ``contract`` -- :class:`~contractnet.nn.ContractHead`, ``"bnmd,nmdk->bk"``
* ``flatten``  -- :class:`~contractnet.nn.FlattenDense`, reshape then ``"bi,ik->bk"``
* ``cp``       -- :class:`~contractnet.nn.CPHead`, rank ``--rank``
* ``tucker``   -- :class:`~contractnet.nn.TuckerHead`, ranks ``--ranks``

trained with Adam on softmax cross-entropy.  ``contract`` and ``flatten``
compute the same function, and seeded alike they start from the same
weights, so their accuracies match and only their speed may differ.
"""
from __future__ import annotations

import argparse
import copy
import math
import sys
import time
from typing import Any, Callable, Sequence

import numpy as np

from . import data, nn, optim
from .arguments import Once, non_negative_int, positive_int
from .files import json_text
from .pair import view_key

HEADS = ("contract", "flatten", "cp", "tucker")
#: The default rank of the CP head and ranks of the Tucker head.
CP_RANK, TUCKER_RANKS = 16, (3, 3, 8)
ACTIVATION = (4, 4, 16)
CLASSES = 10


def build_model(head: str = "contract", *, rng: np.random.Generator | int | None = 0,
                rank: int = CP_RANK, ranks: Sequence[int] = TUCKER_RANKS,
                dtype: np.dtype | type | str = np.float32) -> nn.Sequential:
    """The digits CNN with the chosen head.

    The weights are drawn from ``rng`` (a Generator is advanced only when
    the model is built).

    Raises
    ------
    ValueError
        If ``head`` is not one of :data:`HEADS`, ``rank`` or ``ranks`` is
        not what its head takes, or ``dtype`` is not floating point.

    Examples
    --------
    >>> build_model("cp", rank=4)[3]
    CPHead((4, 4, 16), 10, rank=4, spec='bnmd,nr,mr,dr,kr->bk', bias=True)
    """
    if head not in HEADS:
        raise ValueError(f"unknown head {head!r}; choose one of {', '.join(HEADS)}")
    given = nn.init.as_generator(rng)
    # the weights are drawn from a copy, whose state is handed back once the
    # model is built: a refused head (a bad rank) leaves the caller's generator as it was
    rng = copy.deepcopy(given)
    heads: dict[str, Callable[[], nn.Module]] = {
        "contract": lambda: nn.ContractHead(ACTIVATION, CLASSES, rng=rng, dtype=dtype),
        "flatten": lambda: nn.FlattenDense(ACTIVATION, CLASSES, rng=rng, dtype=dtype),
        "cp": lambda: nn.CPHead(ACTIVATION, CLASSES, rank, rng=rng, dtype=dtype),
        "tucker": lambda: nn.TuckerHead(ACTIVATION, CLASSES, ranks, rng=rng, dtype=dtype),
    }
    conv = nn.Conv2d(1, ACTIVATION[2], 3, padding="same", rng=rng, dtype=dtype)
    model = nn.Sequential(conv, nn.ReLU(), nn.MaxPool2d(2), heads[head]())
    given.bit_generator.state = rng.bit_generator.state
    return model


def cross_entropy_loss(model: nn.Module) -> Callable[..., Any]:
    """``loss(params, x, y)``: mean softmax cross-entropy of ``model``."""
    def loss(params: nn.module.Params, x: np.ndarray, y: np.ndarray) -> Any:
        return nn.softmax_cross_entropy(model.apply(params, x), y)
    return loss


class Diverged(ValueError):
    """Training reached a loss or a gradient that is not finite.  No step is
    taken on it; the steps before it stand (and may already have left the
    model unusable: the loss is only seen after the step that spoils it)."""


#: numpy's floating-point warnings that training keeps quiet: what they spoil is
#: reported as :class:`Diverged`.
QUIET = {"over": "ignore", "invalid": "ignore", "divide": "ignore"}


def _diverged(batch: int, reason: str) -> Diverged:
    return Diverged(f"training diverged in batch {batch}: {reason}; a lower learning rate "
                    f"may help")


def train_epoch(model: nn.Module, opt: optim.Optimizer, x: np.ndarray, y: np.ndarray,
                batch_size: int, rng: np.random.Generator) -> float:
    """One pass over ``(x, y)`` in shuffled batches; returns the mean batch loss.

    ``opt`` must have been built on ``model.parameters()`` (it updates those arrays).

    Raises
    ------
    ValueError
        If ``x`` holds no example, ``x`` and ``y`` differ in length, a label
        is not a class of the model's output, or ``opt`` updates arrays
        other than the model's; these are checked before the first step,
        so the model is then unchanged.
    Diverged
        When a batch's loss or gradient holds a nan or an infinity; no step
        is taken on that batch.  numpy's floating-point warnings (overflow,
        invalid value, division by zero) are not shown during the epoch:
        this error reports what they would have spoiled.
    """
    loss_fn, params, total, count = cross_entropy_loss(model), model.parameters(), 0.0, 0
    _check_examples(x, "train_epoch")
    _check_optimizer_holds(opt, params)
    # how many classes, off a batch's logits (a model may fix its batch size); before
    # the shuffle, so that a refusal leaves rng as it was
    classes = np.shape(model(x[:batch_size]))[-1]
    nn.losses.check_labels(y, (len(x), classes), "train_epoch")
    with np.errstate(**QUIET):  # a loss or gradient these spoil raises Diverged
        for xb, yb in data.batches(x, y, batch_size, rng=rng):
            loss, grads = nn.loss_and_grads(loss_fn, params, xb, yb)
            if not np.isfinite(loss):
                raise _diverged(count + 1, f"its loss is {float(loss)}")
            try:
                opt.step(grads)
            except optim.NonFiniteGradientError as exc:
                raise _diverged(count + 1, str(exc)) from exc
            total, count = total + float(loss), count + 1
    return total / count


def evaluate(model: nn.Module, x: np.ndarray, y: np.ndarray, batch_size: int = 512) -> float:
    """Accuracy of ``model`` on ``(x, y)``.

    Raises
    ------
    ValueError
        If ``x`` holds no example (an empty first axis, or a 0-d value).
    """
    _check_examples(x, "evaluate")
    logits = np.concatenate([model(xb) for xb, _ in data.batches(x, y, batch_size, shuffle=False)])
    return nn.accuracy(logits, y)


def _check_optimizer_holds(opt: optim.Optimizer, params: dict[str, np.ndarray]) -> None:
    """Refuse an optimizer that would not update ``params`` (the model's arrays),
    naming the first parameter it lacks, adds, or holds in other memory."""
    names = list(params) + [n for n in opt.params if n not in params]
    for name in names:
        if name not in opt.params:
            problem = "it lacks the model's parameter"
        elif name not in params:
            problem = "it holds a parameter the model lacks,"
        elif view_key(opt.params[name]) != view_key(params[name]):
            problem = "it holds other memory than the model's array for"
        else:
            continue
        raise ValueError(f"the optimizer was not built on this model's parameters "
                         f"(model.parameters()): {problem} {name!r}")


def _check_examples(x: np.ndarray, fn: str) -> None:
    """Refuse inputs that hold no example (an empty batch axis, or none at all)."""
    if np.ndim(x) == 0 or len(x) == 0:
        raise ValueError(f"{fn} needs at least one example along x's first axis, got x of "
                         f"shape {np.shape(x)}")


def train_digits(head: str = "contract", epochs: int = 8, seed: int = 0, batch_size: int = 32,
                 lr: float = 0.01, rank: int = CP_RANK, ranks: Sequence[int] = TUCKER_RANKS,
                 log: Callable[[str], None] | None = print) -> dict[str, Any]:
    """Train the digits CNN and return its figures.

    Parameters
    ----------
    head : {"contract", "flatten", "cp", "tucker"}
    epochs, batch_size : int
        Positive.
    seed : int
        Fixes the split, the initial weights and the batch order.
    lr : float
        Adam learning rate.
    rank, ranks : int, (int, int, int)
        Ranks of the CP and Tucker heads.
    log : callable or None
        Receives one progress line per epoch.

    Returns
    -------
    dict
        ``head, epochs, seed, batch_size, lr, params, train_loss,
        test_accuracy, seconds_per_epoch, diverged, history`` (per-epoch
        loss and accuracy).  ``seconds_per_epoch`` times training only, not
        evaluation.  A run whose loss or gradient stops being finite ends
        in that epoch (see :class:`Diverged`): ``diverged`` is its number
        (else None), its ``train_loss`` is nan and its accuracy is the
        model's as it stopped.

    Raises
    ------
    ValueError
        On a bad head, non-positive epochs/batch size or learning rate, or
        a negative seed.
    ImportError
        If scikit-learn is missing.
    """
    epochs = positive_int(epochs, "epochs")
    batch_size = positive_int(batch_size, "batch_size")
    non_negative_int(seed, "seed")
    rng = np.random.default_rng(seed)
    model = build_model(head, rng=rng, rank=rank, ranks=ranks)
    opt = optim.Adam(model.parameters(), lr=lr)
    split = data.load_digits(seed=seed)
    if log is not None:
        log(f"digits: {len(split.y_train)} train, {len(split.y_test)} test; head {model[3]!r}")
    history, diverged_epoch = _train_epochs(model, opt, split, epochs, batch_size, rng, log)
    return {"head": head, "epochs": epochs, "seed": seed, "batch_size": batch_size, "lr": lr,
            "params": model.num_parameters(), "head_params": model[3].num_parameters(),
            "train_loss": history[-1]["train_loss"],
            "test_accuracy": history[-1]["test_accuracy"],
            "seconds_per_epoch": float(np.mean([h["seconds"] for h in history])),
            "diverged": diverged_epoch, "history": history}


def _train_epochs(model: nn.Module, opt: optim.Optimizer, split: data.Split, epochs: int,
                  batch_size: int, rng: np.random.Generator, log: Callable[[str], None] | None
                  ) -> tuple[list[dict[str, Any]], int | None]:
    """Train and evaluate epoch by epoch: one record per epoch (loss, accuracy,
    seconds), and the number of the epoch that diverged (the last), or None."""
    history = []
    for epoch in range(1, epochs + 1):
        start, stop = time.perf_counter(), None
        try:
            loss = train_epoch(model, opt, split.x_train, split.y_train, batch_size, rng)
        except Diverged as exc:
            loss, stop = math.nan, exc
        seconds = time.perf_counter() - start
        with np.errstate(**QUIET):  # a model that diverged may overflow here too
            acc = evaluate(model, split.x_test, split.y_test)
        history.append({"epoch": epoch, "train_loss": loss, "test_accuracy": acc,
                        "seconds": seconds})
        if log is not None:
            log(f"epoch {epoch:>3}/{epochs}  stopped: {stop}" if stop else
                f"epoch {epoch:>3}/{epochs}  loss {loss:.4f}  test accuracy {acc:.4f}  "
                f"{seconds:.2f} s")
        if stop:
            return history, epoch
    return history, None


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Options of ``contractnet train``."""
    parser.add_argument("dataset", choices=["digits"], help="the data set (scikit-learn's digits)")
    parser.add_argument("--head", action=Once, choices=HEADS, default="contract",
                        help="conv-to-FC head (default: contract)")
    parser.add_argument("--epochs", action=Once, type=int, default=8,
                        help="passes over the data (default: 8)")
    parser.add_argument("--seed", action=Once, type=int, default=0,
                        help="seed of split, weights, batches")
    parser.add_argument("--batch-size", action=Once, type=int, default=32, help="default: 32")
    parser.add_argument("--lr", action=Once, type=float, default=0.01,
                        help="Adam learning rate (default: 0.01)")
    parser.add_argument("--rank", action=Once, type=int,
                        help=f"rank of the cp head (default: {CP_RANK})")
    parser.add_argument("--ranks", action=Once, type=int, nargs=3, metavar=("P", "Q", "S"),
                        help="ranks of the tucker head (default: "
                             f"{' '.join(map(str, TUCKER_RANKS))})")
    parser.add_argument("--json", action="store_true",
                        help="print the results as one JSON object on stdout "
                             "(progress goes to stderr)")


def run(args: argparse.Namespace) -> int:
    """Run ``contractnet train``; returns the exit status."""
    log = (lambda line: print(line, file=sys.stderr)) if args.json else print
    for option, value, head in (("--rank", args.rank, "cp"), ("--ranks", args.ranks, "tucker")):
        if value is not None and args.head != head:
            raise ValueError(f"{option} sets the {head} head's {option[2:]}; add --head {head}")
    if args.rank is not None:
        positive_int(args.rank, "--rank")
    if args.ranks is not None and not all(r >= 1 for r in args.ranks):
        raise ValueError("--ranks must be three positive integers (P Q S), got "
                         f"{' '.join(map(str, args.ranks))}")
    # checked here too, to be named as options (train_digits names its parameters)
    positive_int(args.epochs, "--epochs")
    positive_int(args.batch_size, "--batch-size")
    non_negative_int(args.seed, "--seed")
    if not 0 < args.lr < math.inf:
        raise ValueError(f"--lr must be a positive number, got {args.lr}")
    try:
        result = train_digits(args.head, args.epochs, args.seed, args.batch_size, args.lr,
                              CP_RANK if args.rank is None else args.rank,
                              TUCKER_RANKS if args.ranks is None else args.ranks, log=log)
    except ImportError as exc:
        print(f"contractnet train: error: {exc}", file=sys.stderr)
        return 2
    if args.json:
        print(json_text(result))
    elif result["diverged"]:
        print(f"diverged in epoch {result['diverged']}; test accuracy of the model as it "
              f"stopped {result['test_accuracy']:.4f}")
    else:
        print(f"test accuracy {result['test_accuracy']:.4f}, "
              f"{result['seconds_per_epoch']:.3f} s per epoch, {result['params']} parameters")
    return 0
