"""The methods ``contractnet bench`` compares, each as a ready-to-time call.

A method builds, from one problem's arrays, a zero-argument call that does
the forward pass (or forward and backward) and a ``convert`` function that
turns what the call returned into numpy arrays in the problem's own layouts,
so that every method's answer is compared with the baseline before any of
them is timed.  Conversion happens outside the timed call.

Head problems: activation ``x (B, N, M, D)``, weight ``W (N, M, D, K)``,
cotangent ``dy (B, K)``; answers ``(y,)`` or ``(y, dx, dW)``.
Conv problems: ``x (B, H, W, C)``, ``w (KH, KW, C, K)``, ``dy (B, Ho, Wo, K)``;
answers ``(y,)`` or ``(y, dx, dw)``.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Sequence

import numpy as np
import opt_einsum

import contractnet as cn

from .bench_presets import ConvShape, HeadShape
from .budget import check_allocation

HEAD_SPEC = "bnmd,nmdk->bk"
HEAD_GRAD_SPECS = ("bk,nmdk->bnmd", "bnmd,bk->nmdk")

Answer = tuple[np.ndarray, ...]
Runner = tuple[Callable[[], object], Callable[[object], Answer]]


@dataclass(frozen=True)
class Problem:
    """Arrays of one benchmark case; ``operands`` are differentiated, ``dy`` is the cotangent."""

    operands: tuple[np.ndarray, ...]
    dy: np.ndarray
    shape: HeadShape | ConvShape


@dataclass(frozen=True)
class Method:
    """One way of computing a case.

    ``build(problem, backward)`` returns ``(call, convert)``.  ``peer`` is the
    ``--peers`` name (``None`` for the baseline and contractnet, which always
    run); ``needs`` names an optional module; ``traced_memory`` says whether
    tracemalloc sees the method's allocations.
    """

    key: str
    label: str
    build: Callable[[Problem, bool], Runner]
    peer: str | None = None
    needs: str | None = None
    traced_memory: bool = True


def _identity(answer: object) -> Answer:
    return tuple(answer) if isinstance(answer, tuple) else (answer,)


def random_array(rng: np.random.Generator, shape: Sequence[int], dtype, scale: float = 1.0):
    """Standard normal samples made directly in ``dtype`` (no float64 temporary)."""
    out = rng.standard_normal(tuple(shape), dtype=dtype)
    if scale != 1.0:
        out *= out.dtype.type(scale)
    return out


def input_shapes(shape: HeadShape | ConvShape) -> tuple[tuple[int, ...], ...]:
    """The shapes of a problem's operands and cotangent (see :func:`head_problem`)."""
    if isinstance(shape, HeadShape):
        return ((shape.B, shape.N, shape.M, shape.D), (shape.N, shape.M, shape.D, shape.K),
                (shape.B, shape.K))
    ho, wo = shape.output_hw
    return ((shape.B, shape.H, shape.W, shape.C), (shape.KH, shape.KW, shape.C, shape.K),
            (shape.B, ho, wo, shape.K))


def check_fits(shape: HeadShape | ConvShape, dtype: str) -> None:
    """Raise :class:`~contractnet.budget.MemoryBudgetError` when one of the
    problem's arrays, or the patch matrix of the im2col baseline for a conv
    shape, would exceed the memory budget (before any is made)."""
    for dims in input_shapes(shape):
        check_allocation(dims, dtype, f"benchmark shape {shape.label} needs an array")
    if isinstance(shape, ConvShape):
        ho, wo = shape.output_hw
        check_allocation((shape.B * ho * wo, shape.KH * shape.KW * shape.C), dtype,
                         f"benchmark shape {shape.label} needs an im2col patch matrix")


def head_problem(shape: HeadShape, dtype: str, seed: int = 0) -> Problem:
    """Random activation, weight and cotangent for a head shape."""
    rng = np.random.default_rng(seed)
    x_shape, w_shape, dy_shape = input_shapes(shape)
    x = random_array(rng, x_shape, dtype)
    w = random_array(rng, w_shape, dtype, (shape.N * shape.M * shape.D) ** -0.5)
    dy = random_array(rng, dy_shape, dtype)
    return Problem((x, w), dy, shape)


def conv_problem(shape: ConvShape, dtype: str, seed: int = 0) -> Problem:
    """Random input, kernel and cotangent for a conv shape."""
    rng = np.random.default_rng(seed)
    x_shape, w_shape, dy_shape = input_shapes(shape)
    x = random_array(rng, x_shape, dtype)
    w = random_array(rng, w_shape, dtype, (shape.KH * shape.KW * shape.C) ** -0.5)
    dy = random_array(rng, dy_shape, dtype)
    return Problem((x, w), dy, shape)


# ------------------------------------------------------------------ head
def _flatten(p: Problem, backward: bool) -> Runner:
    x, w = p.operands
    xf, wf, dy = x.reshape(x.shape[0], -1), w.reshape(-1, w.shape[-1]), p.dy

    def forward():
        return xf @ wf

    def both():
        return xf @ wf, (dy @ wf.T).reshape(x.shape), (xf.T @ dy).reshape(w.shape)
    return (both if backward else forward), _identity


def contractnet_method(spec: str) -> Callable[[Problem, bool], Runner]:
    """contractnet's einsum of ``spec``; forward+backward through ``cn.vjp``."""
    def build(p: Problem, backward: bool) -> Runner:
        def forward():
            return cn.einsum(spec, *p.operands)

        def both():
            out, pullback = cn.vjp(lambda *ops: cn.einsum(spec, *ops), *p.operands)
            return (out,) + tuple(pullback(p.dy))
        return (both if backward else forward), _identity
    return build


def _numpy_einsum(optimize: bool) -> Callable[[Problem, bool], Runner]:
    """numpy.einsum, with the backward written as the two transposed einsums."""
    def build(p: Problem, backward: bool) -> Runner:
        x, w = p.operands

        def forward():
            return np.einsum(HEAD_SPEC, x, w, optimize=optimize)

        def both():
            return (np.einsum(HEAD_SPEC, x, w, optimize=optimize),
                    np.einsum(HEAD_GRAD_SPECS[0], p.dy, w, optimize=optimize),
                    np.einsum(HEAD_GRAD_SPECS[1], x, p.dy, optimize=optimize))
        return (both if backward else forward), _identity
    return build


def _opt_einsum(p: Problem, backward: bool) -> Runner:
    x, w = p.operands

    def forward():
        return opt_einsum.contract(HEAD_SPEC, x, w)

    def both():
        return (opt_einsum.contract(HEAD_SPEC, x, w),
                opt_einsum.contract(HEAD_GRAD_SPECS[0], p.dy, w),
                opt_einsum.contract(HEAD_GRAD_SPECS[1], x, p.dy))
    return (both if backward else forward), _identity


def _torch_runner(forward_fn, leaves, dy, backward: bool, convert) -> Runner:
    """Time ``forward_fn`` under no_grad, or with ``backward(dy)`` through autograd."""
    import torch

    def forward():
        with torch.no_grad():
            return forward_fn()

    def both():
        for leaf in leaves:
            leaf.grad = None
        out = forward_fn()
        out.backward(dy)
        return (out,) + tuple(leaf.grad for leaf in leaves)
    return (both if backward else forward), convert


def _torch_linear(p: Problem, backward: bool) -> Runner:
    """PyTorch ``nn.Flatten`` + ``nn.Linear`` (no bias) on the same numbers."""
    import torch
    x, w = p.operands
    n, m, d, k = w.shape
    model = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(
        n * m * d, k, bias=False, dtype=torch.from_numpy(w[:0]).dtype))
    with torch.no_grad():
        model[1].weight.copy_(torch.from_numpy(np.ascontiguousarray(w.reshape(-1, k).T)))
    xt = torch.from_numpy(x.copy()).requires_grad_(backward)
    weight = model[1].weight

    def convert(answer) -> Answer:
        parts = answer if isinstance(answer, tuple) else (answer,)
        out = [parts[0].detach().numpy()]
        if len(parts) > 1:
            out += [parts[1].numpy(), parts[2].numpy().T.reshape(w.shape)]
        return tuple(out)
    return _torch_runner(lambda: model(xt), (xt, weight), torch.from_numpy(p.dy),
                         backward, convert)


def _torch_einsum(p: Problem, backward: bool) -> Runner:
    import torch
    xt, wt = (torch.from_numpy(a.copy()).requires_grad_(backward) for a in p.operands)

    def convert(answer) -> Answer:
        parts = answer if isinstance(answer, tuple) else (answer,)
        return tuple(a.detach().numpy() for a in parts)
    return _torch_runner(lambda: torch.einsum(HEAD_SPEC, xt, wt), (xt, wt),
                         torch.from_numpy(p.dy), backward, convert)


HEAD_METHODS = (
    Method("flatten", "numpy flatten+matmul", _flatten),
    Method("contractnet", "contractnet einsum", contractnet_method(HEAD_SPEC)),
    Method("einsum", "numpy.einsum optimize=False", _numpy_einsum(False), peer="einsum"),
    Method("einsum-opt", "numpy.einsum optimize=True", _numpy_einsum(True), peer="einsum-opt"),
    Method("opt_einsum", "opt_einsum.contract", _opt_einsum, peer="opt_einsum"),
    Method("torch", "torch Flatten+Linear", _torch_linear, peer="torch", needs="torch",
           traced_memory=False),
    Method("torch-einsum", "torch.einsum", _torch_einsum, peer="torch-einsum", needs="torch",
           traced_memory=False),
)


# ------------------------------------------------------------------ conv
def _padded(x: np.ndarray, padding: int) -> np.ndarray:
    if padding == 0:
        return x
    return np.pad(x, ((0, 0), (padding, padding), (padding, padding), (0, 0)))


def _im2col(xp: np.ndarray, s: ConvShape) -> np.ndarray:
    """Patches of the padded input as a ``(B*Ho*Wo, KH*KW*C)`` matrix (one copy)."""
    ho, wo = s.output_hw
    sb, sh, sw, sc = xp.strides
    view = np.lib.stride_tricks.as_strided(
        xp, (s.B, ho, wo, s.KH, s.KW, s.C),
        (sb, s.stride * sh, s.stride * sw, sh, sw, sc), writeable=False)
    return view.reshape(s.B * ho * wo, -1)


def _col2im(dcols: np.ndarray, s: ConvShape, dtype) -> np.ndarray:
    """Adjoint of :func:`_im2col`: scatter-add patch gradients into the input."""
    ho, wo = s.output_hw
    dcols = dcols.reshape(s.B, ho, wo, s.KH, s.KW, s.C)
    p = s.padding
    dxp = np.zeros((s.B, s.H + 2 * p, s.W + 2 * p, s.C), dtype=dtype)
    for i in range(s.KH):
        for j in range(s.KW):
            rows = slice(i, i + s.stride * ho, s.stride)
            cols = slice(j, j + s.stride * wo, s.stride)
            dxp[:, rows, cols] += dcols[:, :, :, i, j]
    return dxp[:, p:p + s.H, p:p + s.W]


def _numpy_im2col(p: Problem, backward: bool) -> Runner:
    """The from-scratch numpy conv: im2col, one GEMM, col2im for the input gradient."""
    x, w = p.operands
    s = p.shape
    ho, wo = s.output_hw
    wf = w.reshape(-1, s.K)
    dyf = p.dy.reshape(-1, s.K)

    def forward():
        return (_im2col(_padded(x, s.padding), s) @ wf).reshape(s.B, ho, wo, s.K)

    def both():
        cols = _im2col(_padded(x, s.padding), s)
        y = (cols @ wf).reshape(s.B, ho, wo, s.K)
        dx = _col2im(dyf @ wf.T, s, x.dtype)
        return y, dx, (cols.T @ dyf).reshape(w.shape)
    return (both if backward else forward), _identity


def _contractnet_conv(p: Problem, backward: bool) -> Runner:
    """``cn.conv2d``: zero padding, then the windowed spec ``"b(h+u)(w+v)c,uvck->bhwk"``."""
    s = p.shape

    def forward():
        return cn.conv2d(*p.operands, stride=s.stride, padding=s.padding)

    def both():
        out, pullback = cn.vjp(
            lambda x, w: cn.conv2d(x, w, stride=s.stride, padding=s.padding), *p.operands)
        return (out,) + tuple(pullback(p.dy))
    return (both if backward else forward), _identity


def _torch_conv(p: Problem, backward: bool) -> Runner:
    """PyTorch ``conv2d`` on the same numbers, channels-last memory format."""
    import torch
    import torch.nn.functional as F
    x, w = p.operands
    s = p.shape
    xt = torch.from_numpy(x.copy()).requires_grad_(backward)
    wt = torch.from_numpy(np.ascontiguousarray(w.transpose(3, 2, 0, 1))).requires_grad_(backward)

    def run():
        return F.conv2d(xt.permute(0, 3, 1, 2), wt, stride=s.stride, padding=s.padding)

    def convert(answer) -> Answer:
        parts = answer if isinstance(answer, tuple) else (answer,)
        out = [parts[0].detach().permute(0, 2, 3, 1).numpy()]
        if len(parts) > 1:
            out += [parts[1].numpy(), parts[2].permute(2, 3, 1, 0).numpy()]
        return tuple(out)
    return _torch_runner(run, (xt, wt), torch.from_numpy(p.dy).permute(0, 3, 1, 2),
                         backward, convert)


CONV_METHODS = (
    Method("im2col", "numpy im2col+matmul", _numpy_im2col),
    Method("contractnet", "contractnet conv2d", _contractnet_conv),
    Method("torch", "torch conv2d", _torch_conv, peer="torch", needs="torch",
           traced_memory=False),
)

#: Every name ``--peers`` accepts, in a stable order.
PEERS = ("einsum", "einsum-opt", "opt_einsum", "torch", "torch-einsum")
