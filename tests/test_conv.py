"""Convolution, transposed convolution and pooling against direct-loop references.

Forward values and both gradients (through ``cn.vjp``) are compared with the
loop references of ``conv_reference.py`` over the case tables of
``conv_cases.py``; finite differences and PyTorch CPU are extra oracles.
"""
from __future__ import annotations

import numpy as np
import pytest

import contractnet as cn
from contractnet.conv import ConvError, conv_spec, same_padding

import conv_reference as ref
from conv_cases import CONV_CASES, POOL_CASES, TRANSPOSE_CASES, ConvCase


def _ids(cases):
    return [pytest.param(c, id=c.id) for c in cases]


def _random(shape, seed, dtype=np.float64):
    return np.random.default_rng(seed).standard_normal(shape).astype(dtype)


def _value(a):
    return np.asarray(getattr(a, "value", a))


def _conv_fn(case: ConvCase):
    conv = getattr(cn, f"conv{case.n}d")
    return lambda x, w: conv(x, w, **case.kwargs)


def _pair(value):
    return tuple(value) if isinstance(value, tuple) else (value, value)


def _ref_args(case: ConvCase):
    return case.tuple_of(case.stride), case.pads, case.tuple_of(case.dilation), case.groups


# ------------------------------------------------------------------ convolution
@pytest.mark.parametrize("case", _ids(CONV_CASES))
def test_conv_forward_matches_loop_reference(case):
    x, w = _random(case.x_shape, 0), _random(case.w_shape, 1)
    expected = ref.conv_forward(x, w, *_ref_args(case))
    np.testing.assert_allclose(_conv_fn(case)(x, w), expected, rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("case", _ids(CONV_CASES))
def test_conv_gradients_match_loop_reference(case):
    x, w = _random(case.x_shape, 2), _random(case.w_shape, 3)
    out, vjp_fn = cn.vjp(_conv_fn(case), x, w)
    dy = _random(_value(out).shape, 4)
    dx, dw = vjp_fn(dy)
    ex, ew = ref.conv_grads(x, w, dy, *_ref_args(case))
    np.testing.assert_allclose(_value(dx), ex, rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(_value(dw), ew, rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("case", _ids([c for c in CONV_CASES if c.id in {
    "basic_3x3", "stride2", "pad_pairs_asymmetric", "groups3_stride_pad",
    "depthwise", "conv1d_basic", "conv3d_stride_pad"}]))
def test_conv_preserves_float32(case):
    x, w = _random(case.x_shape, 5, np.float32), _random(case.w_shape, 6, np.float32)
    out, vjp_fn = cn.vjp(_conv_fn(case), x, w)
    dy = _random(_value(out).shape, 7, np.float32)
    dx, dw = vjp_fn(dy)
    assert [_value(a).dtype for a in (out, dx, dw)] == [np.float32] * 3
    x64, w64, dy64 = (a.astype(np.float64) for a in (x, w, dy))
    np.testing.assert_allclose(_value(out), ref.conv_forward(x64, w64, *_ref_args(case)),
                               rtol=1e-4, atol=1e-5)
    ex, ew = ref.conv_grads(x64, w64, dy64, *_ref_args(case))
    np.testing.assert_allclose(_value(dx), ex, rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(_value(dw), ew, rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("kwargs", [
    dict(), dict(stride=2, padding=1), dict(dilation=2, padding="same"), dict(groups=2),
], ids=["plain", "stride_pad", "dilation_same", "depthwise"])
def test_conv2d_check_grads(kwargs):
    x, w = _random((1, 5, 5, 2), 8), _random((3, 3, 2 // kwargs.get("groups", 1), 2), 9)
    cn.check_grads(lambda x, w: cn.sum(cn.tanh(cn.conv2d(x, w, **kwargs))), x, w)


def test_conv2d_is_the_written_spec():
    x, w = _random((2, 9, 8, 3), 10), _random((3, 2, 3, 4), 11)
    y = cn.conv2d(x, w, stride=(2, 1), dilation=(1, 3))
    np.testing.assert_array_equal(y, cn.einsum("b(2h+u)(w+3v)c,uvck->bhwk", x, w))


def test_conv_spec_text():
    assert conv_spec(2) == "b(h+u)(w+v)c,uvck->bhwk"
    assert conv_spec(2, stride=(2, 1), dilation=3) == "b(2h+3u)(w+3v)c,uvck->bhwk"
    assert conv_spec(2, form="grouped") == "b(h+u)(w+v)gc,uvcgk->bhwgk"
    assert conv_spec(2, form="depthwise") == "b(h+u)(w+v)c,uvc->bhwc"
    assert conv_spec(1) == "b(h+u)c,uck->bhk"
    assert conv_spec(3, stride=2) == "b(2d+t)(2h+u)(2w+v)c,tuvck->bdhwk"


@pytest.mark.parametrize("length, kernel, stride, dilation, expected", [
    (5, 3, 1, 1, (1, 1)), (5, 2, 1, 1, (0, 1)), (6, 3, 2, 1, (0, 1)), (5, 3, 2, 1, (1, 1)),
    (6, 1, 2, 1, (0, 0)), (7, 3, 3, 1, (1, 1)), (6, 3, 1, 2, (2, 2)),
])
def test_same_padding_gives_ceil_of_length_over_stride(length, kernel, stride, dilation,
                                                       expected):
    before, after = same_padding(length, kernel, stride, dilation)
    assert (before, after) == expected
    span = dilation * (kernel - 1) + 1
    assert (length + before + after - span) // stride + 1 == -(-length // stride)


# ------------------------------------------------------------------ transposed convolution
@pytest.mark.parametrize("case", _ids(TRANSPOSE_CASES))
def test_conv_transpose2d_is_the_vjp_of_conv2d(case):
    x, w = _random(case.x_shape, 12), _random(case.w_shape, 13)
    out, vjp_fn = cn.vjp(lambda x: cn.conv2d(x, w, **case.conv_kwargs), x)
    dy = _random(_value(out).shape, 14)
    (dx,) = vjp_fn(dy)
    z = cn.conv_transpose2d(dy, w, **case.kwargs)
    assert z.shape == x.shape
    np.testing.assert_allclose(z, _value(dx), rtol=1e-10, atol=1e-12)
    expected = ref.conv_transpose(dy, w, _pair(case.stride), case.pads, _pair(case.dilation),
                                  _pair(case.output_padding))
    np.testing.assert_allclose(z, expected, rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("case", _ids(TRANSPOSE_CASES[:4]))
def test_conv_transpose2d_gradients(case):
    """Its gradients are a conv2d (in y) and the conv2d kernel gradient (in w)."""
    x_shape = case.x_shape
    w = _random(case.w_shape, 15)
    y = _random(_value(cn.conv2d(np.zeros(x_shape), w, **case.conv_kwargs)).shape, 16)
    out, vjp_fn = cn.vjp(lambda y, w: cn.conv_transpose2d(y, w, **case.kwargs), y, w)
    dz = _random(x_shape, 17)
    dy, dw = vjp_fn(dz)
    stride, dilation = _pair(case.stride), _pair(case.dilation)
    np.testing.assert_allclose(_value(dy), ref.conv_forward(dz, w, stride, case.pads, dilation),
                               rtol=1e-10, atol=1e-12)
    _, ew = ref.conv_grads(dz, w, y, stride, case.pads, dilation)
    np.testing.assert_allclose(_value(dw), ew, rtol=1e-10, atol=1e-12)


def test_conv_transpose2d_check_grads():
    y, w = _random((1, 3, 3, 2), 18), _random((3, 3, 2, 2), 19)
    cn.check_grads(lambda y, w: cn.sum(cn.tanh(
        cn.conv_transpose2d(y, w, stride=2, padding=1, output_padding=1))), y, w)


# ------------------------------------------------------------------ pooling
POOLS = {"max": cn.max_pool2d, "mean": cn.avg_pool2d}


@pytest.mark.parametrize("reduce", ["max", "mean"])
@pytest.mark.parametrize("case", _ids(POOL_CASES))
def test_pool_forward_and_gradient(case, reduce):
    # distinct values so that every max window has a single winner
    x = np.random.default_rng(20).permutation(np.prod(case.x_shape)).reshape(case.x_shape)
    x = x.astype(np.float64) / x.size
    size, stride = case.sizes()
    out, vjp_fn = cn.vjp(lambda x: POOLS[reduce](x, case.size, case.stride), x)
    np.testing.assert_allclose(_value(out), ref.pool_forward(x, size, stride, reduce),
                               rtol=1e-12)
    dy = _random(_value(out).shape, 21)
    (dx,) = vjp_fn(dy)
    np.testing.assert_allclose(_value(dx), ref.pool_grad(x, dy, size, stride, reduce),
                               rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("case", _ids(POOL_CASES))
def test_max_pool_ties_and_nans_go_to_the_first_in_window_order(case):
    # few distinct values: most windows tie; a nan wins its window, as in np.argmax
    rng = np.random.default_rng(22)
    x = rng.integers(0, 3, case.x_shape).astype(np.float64)
    x[rng.random(case.x_shape) < 0.05] = np.nan
    size, stride = case.sizes()
    out, vjp_fn = cn.vjp(lambda x: cn.max_pool2d(x, case.size, case.stride), x)
    np.testing.assert_array_equal(_value(out), ref.pool_forward(x, size, stride, "max"))
    dy = _random(_value(out).shape, 23)
    (dx,) = vjp_fn(dy)
    np.testing.assert_allclose(dx, ref.pool_grad(x, dy, size, stride, "max"), rtol=1e-12)


@pytest.mark.parametrize("reduce", ["max", "mean"])
def test_pool_preserves_float32_and_check_grads(reduce):
    pool = POOLS[reduce]
    x32 = _random((2, 6, 6, 2), 22, np.float32)
    out, vjp_fn = cn.vjp(lambda x: pool(x, 3, 2), x32)
    (dx,) = vjp_fn(np.ones_like(_value(out)))
    assert _value(out).dtype == np.float32 and _value(dx).dtype == np.float32
    cn.check_grads(lambda x: cn.sum(pool(x, (2, 3), (1, 2)) ** 2), _random((1, 5, 6, 2), 23))


# ------------------------------------------------------------------ errors
X, W = np.zeros((2, 6, 6, 4)), np.zeros((3, 3, 4, 5))
BAD_CALLS = [
    ("channel_mismatch", lambda: cn.conv2d(X, np.zeros((3, 3, 3, 5))),
     r"4 channels \(its last axis: channels last\).*3, 3, 3, 5"),
    ("kernel_too_large", lambda: cn.conv2d(X, np.zeros((7, 3, 4, 5))),
     r"kernel 7x3 spans 7x3 but the input is 6x6"),
    ("dilated_too_large", lambda: cn.conv2d(X, W, dilation=3), r"dilation \(3, 3\) spans 7x7"),
    ("padded_too_small", lambda: cn.conv2d(X[:, :2], W, padding=((0, 0), (1, 1))),
     r"padded input is 2x8 \(input 2x6"),
    ("stride_zero", lambda: cn.conv2d(X, W, stride=0), r"stride must be >= 1, got 0"),
    ("stride_negative_pair", lambda: cn.conv2d(X, W, stride=(1, -2)), r"stride.*\(1, -2\)"),
    ("dilation_zero", lambda: cn.conv2d(X, W, dilation=(0, 1)), r"dilation.*\(0, 1\)"),
    ("stride_float", lambda: cn.conv2d(X, W, stride=1.5), r"stride must be an int.*1.5"),
    ("padding_negative", lambda: cn.conv2d(X, W, padding=-1), r"padding must be >= 0.*-1"),
    ("padding_wrong_length", lambda: cn.conv2d(X, W, padding=(1, 1, 1)), r"padding.*\(1, 1, 1\)"),
    ("padding_pairs_count", lambda: cn.conv2d(X, W, padding=((1, 1),)), r"2 \(before, after\)"),
    ("padding_pair_negative", lambda: cn.conv2d(X, W, padding=((1, 1), (0, -1))), r"-1"),
    ("padding_unknown_string", lambda: cn.conv2d(X, W, padding="full"), r"'full'"),
    ("x_rank", lambda: cn.conv2d(np.zeros((6, 6, 4)), W), r"rank 4, got shape \(6, 6, 4\)"),
    ("w_rank", lambda: cn.conv2d(X, np.zeros((3, 4, 5))), r"kernel.*rank 4.*\(3, 4, 5\)"),
    ("conv1d_rank", lambda: cn.conv1d(X, W), r"conv1d.*rank 3"),
    ("conv3d_rank", lambda: cn.conv3d(X, W), r"conv3d.*rank 5"),
    ("groups_not_dividing", lambda: cn.conv2d(X, np.zeros((3, 3, 1, 5)), groups=3),
     r"groups=3 must divide.*\(4\).*\(5\)"),
    ("groups_channel_mismatch", lambda: cn.conv2d(X, np.zeros((3, 3, 4, 6)), groups=2),
     r"groups=2.*2 input channels"),
    ("groups_zero", lambda: cn.conv2d(X, W, groups=0), r"groups must be a positive int, got 0"),
    ("transpose_channels", lambda: cn.conv_transpose2d(np.zeros((1, 3, 3, 4)), W),
     r"4 channels.*K=5"),
    ("transpose_output_padding", lambda: cn.conv_transpose2d(np.zeros((1, 3, 3, 5)), W,
                                                             output_padding=1),
     r"output_padding \(1, 1\)"),
    ("transpose_crops_everything", lambda: cn.conv_transpose2d(np.zeros((1, 1, 1, 5)), W,
                                                               padding=2), r"crops all"),
    ("kernel_empty_axis", lambda: cn.conv2d(X, np.zeros((0, 3, 4, 5))),
     r"conv2d: kernel 0x3 has a size-0 axis"),
    ("transpose_kernel_empty_axis", lambda: cn.conv_transpose2d(np.zeros((1, 3, 3, 5)),
                                                                np.zeros((3, 0, 4, 5))),
     r"conv_transpose2d: kernel 3x0 has a size-0 axis"),
    ("padding_array", lambda: cn.conv2d(X, W, padding=np.array([1, 1])),
     r"padding must be an int, 2 int\(s\).*got array"),
    ("transpose_padding_array", lambda: cn.conv_transpose2d(np.zeros((1, 3, 3, 5)), W,
                                                             padding=np.array([1, 1])),
     r"padding must be an int.*got array"),
    ("conv1d_padding_pair_flat", lambda: cn.conv1d(np.zeros((1, 6, 4)), np.zeros((3, 4, 5)),
                                                   padding=(1, 2)),
     r"such as \(\(1, 2\),\).*got \(1, 2\)"),
    ("pool_window_too_large", lambda: cn.max_pool2d(X, (7, 2)), r"window 7x2.*6x6"),
    ("pool_size_zero", lambda: cn.avg_pool2d(X, 0), r"size must be >= 1, got 0"),
    ("pool_stride_zero", lambda: cn.max_pool2d(X, 2, stride=(2, 0)), r"stride.*\(2, 0\)"),
    ("pool_rank", lambda: cn.max_pool2d(np.zeros((6, 6)), 2), r"rank 4"),
    ("stride_past_int32", lambda: cn.conv2d(X, W, stride=2**31),
     r"conv2d: stride must be at most 2147483647, got 2147483648"),
    ("pool_stride_huge", lambda: cn.max_pool2d(X, 2, stride=2**70), r"stride must be at most"),
    ("layer_stride_huge", lambda: cn.nn.Conv2d(2, 2, 3, stride=2**70),
     r"Conv2d: stride must be at most"),
    ("conv_spec_float", lambda: conv_spec(2.0), r"1, 2 or 3 spatial axes, got 2\.0"),
    ("conv_spec_bool", lambda: conv_spec(True), r"1, 2 or 3 spatial axes, got True"),
    ("transpose_empty_input", lambda: cn.conv_transpose2d(np.ones((1, 0, 3, 4)),
                                                          np.ones((1, 1, 2, 4)), stride=2),
     r"conv_transpose2d: input y's height x width 0x3 has a size-0 axis"),
]


@pytest.mark.parametrize("call, match", [pytest.param(c, m, id=i) for i, c, m in BAD_CALLS])
def test_bad_arguments_raise_conv_error(call, match):
    with pytest.raises(ConvError, match=match) as info:
        call()
    assert isinstance(info.value, ValueError) and isinstance(info.value, cn.SpecError)


# ------------------------------------------------------------------ PyTorch CPU
def _torch_conv(torch, case, x, w):
    """PyTorch forward and gradients of the same conv, converted to channels last."""
    F = torch.nn.functional
    n = case.n
    xt = torch.tensor(np.moveaxis(x, -1, 1), requires_grad=True)
    wt = torch.tensor(np.moveaxis(w, (n, n + 1), (1, 0)), requires_grad=True)
    same_ok = case.padding == "same" and case.tuple_of(case.stride) == (1,) * n
    if isinstance(case.padding, int) or same_ok or (
            isinstance(case.padding, tuple) and isinstance(case.padding[0], int)):
        inp, padding = xt, case.padding
    else:  # asymmetric or strided 'same': pad explicitly (torch pads the last axis first)
        inp, padding = F.pad(xt, [p for pair in reversed(case.pads) for p in pair]), 0
    conv = getattr(F, f"conv{n}d")
    yt = conv(inp, wt, stride=case.stride, padding=padding, dilation=case.dilation,
              groups=case.groups)
    return xt, wt, yt


@pytest.mark.filterwarnings("ignore:Using padding='same' with even kernel")
@pytest.mark.parametrize("case", _ids(CONV_CASES))
def test_conv_matches_pytorch(case):
    torch = pytest.importorskip("torch")
    x, w = _random(case.x_shape, 24), _random(case.w_shape, 25)
    xt, wt, yt = _torch_conv(torch, case, x, w)
    n = case.n
    out, vjp_fn = cn.vjp(_conv_fn(case), x, w)
    np.testing.assert_allclose(_value(out), np.moveaxis(yt.detach().numpy(), 1, -1),
                               rtol=1e-10, atol=1e-12)
    dy = _random(_value(out).shape, 26)
    yt.backward(torch.tensor(np.moveaxis(dy, -1, 1)))
    dx, dw = vjp_fn(dy)
    np.testing.assert_allclose(_value(dx), np.moveaxis(xt.grad.numpy(), 1, -1),
                               rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(_value(dw), np.moveaxis(wt.grad.numpy(), (1, 0), (n, n + 1)),
                               rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("case", _ids([c for c in TRANSPOSE_CASES if c.padding != "same"]))
def test_conv_transpose2d_matches_pytorch(case):
    torch = pytest.importorskip("torch")
    w = _random(case.w_shape, 27)
    y = _random(_value(cn.conv2d(np.zeros(case.x_shape), w, **case.conv_kwargs)).shape, 28)
    pads = case.pads
    # PyTorch crops symmetrically; an asymmetric crop is a slice of the uncropped output
    zt = torch.nn.functional.conv_transpose2d(
        torch.tensor(np.moveaxis(y, -1, 1)), torch.tensor(w.transpose(3, 2, 0, 1)),
        stride=case.stride, dilation=case.dilation, output_padding=case.output_padding)
    full = np.moveaxis(zt.numpy(), 1, -1)
    (top, bottom), (left, right) = pads
    expected = full[:, top:full.shape[1] - bottom, left:full.shape[2] - right]
    np.testing.assert_allclose(cn.conv_transpose2d(y, w, **case.kwargs), expected,
                               rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("case", _ids(POOL_CASES))
def test_pooling_matches_pytorch(case):
    torch = pytest.importorskip("torch")
    x = _random(case.x_shape, 29)
    xt = torch.tensor(np.moveaxis(x, -1, 1))
    for reduce, fn in (("max", torch.nn.functional.max_pool2d),
                       ("mean", torch.nn.functional.avg_pool2d)):
        expected = np.moveaxis(fn(xt, case.size, case.stride).numpy(), 1, -1)
        np.testing.assert_allclose(POOLS[reduce](x, case.size, case.stride), expected,
                                   rtol=1e-12)
