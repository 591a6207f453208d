"""Direct-loop numpy references for convolution and pooling (channels last).

Slow on purpose and written without windows, views or einsum specs: every
function walks output positions and kernel offsets one at a time, so that it
shares no mechanism with the code under test.  Padding is given explicitly
as ``(before, after)`` pairs per spatial axis.  Works for any number of
spatial axes.
"""
from __future__ import annotations

import itertools

import numpy as np


def _pad(x: np.ndarray, pads) -> np.ndarray:
    return np.pad(x, ((0, 0),) + tuple(tuple(p) for p in pads) + ((0, 0),))


def _crop(x: np.ndarray, pads) -> np.ndarray:
    index = tuple(slice(a, x.shape[1 + i] - b) for i, (a, b) in enumerate(pads))
    return x[(slice(None),) + index + (slice(None),)]


def _positions(shape):
    return itertools.product(*(range(n) for n in shape))


def _out_shape(lengths, kernel, stride, dilation):
    return tuple((n - d * (k - 1) - 1) // s + 1
                 for n, k, s, d in zip(lengths, kernel, stride, dilation))


def _at(out_pos, k_pos, stride, dilation):
    """Input position read by output position ``out_pos`` at offset ``k_pos``."""
    return tuple(s * o + d * k for o, k, s, d in zip(out_pos, k_pos, stride, dilation))


def _dense_forward(xp, w, stride, dilation):
    n = xp.ndim - 2
    kernel = w.shape[:n]
    out = _out_shape(xp.shape[1:-1], kernel, stride, dilation)
    y = np.zeros((xp.shape[0],) + out + (w.shape[-1],), dtype=xp.dtype)
    for o in _positions(out):
        for k in _positions(kernel):
            y[(slice(None),) + o] += xp[(slice(None),) + _at(o, k, stride, dilation)] @ w[k]
    return y


def _dense_grads(xp, w, dy, stride, dilation):
    n = xp.ndim - 2
    dxp, dw = np.zeros_like(xp), np.zeros_like(w)
    for o in _positions(dy.shape[1:-1]):
        g = dy[(slice(None),) + o]
        for k in _positions(w.shape[:n]):
            at = (slice(None),) + _at(o, k, stride, dilation)
            dxp[at] += g @ w[k].T
            dw[k] += xp[at].T @ g
    return dxp, dw


def _group_slices(c: int, k: int, groups: int):
    for j in range(groups):
        yield (slice(j * c // groups, (j + 1) * c // groups),
               slice(j * k // groups, (j + 1) * k // groups))


def conv_forward(x, w, stride, pads, dilation, groups=1) -> np.ndarray:
    """``y[b, o, k] = sum_{q, c} x_padded[b, stride*o + dilation*q, c] w[q, c, k]``."""
    xp = _pad(x, pads)
    parts = [_dense_forward(xp[..., cs], w[..., ks], stride, dilation)
             for cs, ks in _group_slices(x.shape[-1], w.shape[-1], groups)]
    return np.concatenate(parts, axis=-1)


def conv_grads(x, w, dy, stride, pads, dilation, groups=1):
    """Gradients ``(dx, dw)`` of ``sum(conv_forward(x, w, ...) * dy)``."""
    xp = _pad(x, pads)
    dxp, dw = np.zeros_like(xp), np.zeros_like(w)
    for cs, ks in _group_slices(x.shape[-1], w.shape[-1], groups):
        dxp[..., cs], dw[..., ks] = _dense_grads(xp[..., cs], w[..., ks], dy[..., ks],
                                                 stride, dilation)
    return _crop(dxp, pads), dw


def conv_transpose(y, w, stride, pads, dilation, output_padding) -> np.ndarray:
    """Scatter ``y[b, o, k] w[q, c, k]`` to ``stride*o + dilation*q``, then crop."""
    n = y.ndim - 2
    kernel = w.shape[:n]
    full = tuple(s * (h - 1) + d * (k - 1) + 1 + r for h, k, s, d, r in
                 zip(y.shape[1:-1], kernel, stride, dilation, output_padding))
    z = np.zeros((y.shape[0],) + full + (w.shape[-2],), dtype=y.dtype)
    for o in _positions(y.shape[1:-1]):
        for k in _positions(kernel):
            z[(slice(None),) + _at(o, k, stride, dilation)] += y[(slice(None),) + o] @ w[k].T
    return _crop(z, pads)


def pool_forward(x, size, stride, reduce: str) -> np.ndarray:
    """Max or mean over each window ``x[b, stride*o + q, c]``, no padding."""
    out = _out_shape(x.shape[1:-1], size, stride, (1,) * len(size))
    y = np.zeros((x.shape[0],) + out + (x.shape[-1],), dtype=x.dtype)
    for o in _positions(out):
        window = np.stack([x[(slice(None),) + _at(o, q, stride, (1,) * len(size))]
                           for q in _positions(size)])
        y[(slice(None),) + o] = window.max(axis=0) if reduce == "max" else window.mean(axis=0)
    return y


def pool_grad(x, dy, size, stride, reduce: str) -> np.ndarray:
    """Gradient of ``sum(pool_forward(x) * dy)``: to the argmax, or spread evenly."""
    dx = np.zeros_like(x)
    offsets = list(_positions(size))
    ones = (1,) * len(size)
    for o in _positions(dy.shape[1:-1]):
        g = dy[(slice(None),) + o]
        if reduce == "mean":
            for q in offsets:
                dx[(slice(None),) + _at(o, q, stride, ones)] += g / len(offsets)
            continue
        for b, c in _positions((x.shape[0], x.shape[-1])):
            values = [x[(b,) + _at(o, q, stride, ones) + (c,)] for q in offsets]
            best = offsets[int(np.argmax(values))]
            dx[(b,) + _at(o, best, stride, ones) + (c,)] += g[b, c]
    return dx
