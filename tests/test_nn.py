"""Layers, heads, losses, init, weight conversion and save/load of contractnet.nn.

Oracles: ``np.einsum`` and plain numpy loops for forwards, the exact adjoint
for the head's gradients, float64 finite differences (cn.check_grads) for
every layer's gradients, and an explicit index formula for PyTorch's
channels-first flatten order.
"""
from __future__ import annotations

import os
import re
import stat
import zipfile

import numpy as np
import pytest

import contractnet as cn
from contractnet import nn

SEED = 3


def rng(seed: int = SEED) -> np.random.Generator:
    return np.random.default_rng(seed)


def randomize(module: nn.Module, seed: int = SEED, dtype=np.float64) -> dict[str, np.ndarray]:
    """Random values for every parameter (biases too, so they are exercised)."""
    g = rng(seed)
    return {k: g.standard_normal(v.shape).astype(dtype) for k, v in module.parameters().items()}


def conv_oracle(x, w, stride=(1, 1), pads=((0, 0), (0, 0)), dilation=(1, 1)):
    """Cross-correlation by a loop over kernel offsets, channels last."""
    xp = np.pad(x, ((0, 0),) + tuple(pads) + ((0, 0),))
    kh, kw, _, k = w.shape
    (sh, sw), (dh, dw) = stride, dilation
    ho = (xp.shape[1] - dh * (kh - 1) - 1) // sh + 1
    wo = (xp.shape[2] - dw * (kw - 1) - 1) // sw + 1
    out = np.zeros((x.shape[0], ho, wo, k), dtype=x.dtype)
    for u in range(kh):
        for v in range(kw):
            rows = slice(u * dh, u * dh + sh * (ho - 1) + 1, sh)
            cols = slice(v * dw, v * dw + sw * (wo - 1) + 1, sw)
            patch = xp[:, rows, cols]
            out += patch @ w[u, v]
    return out


def check_layer_grads(layer: nn.Module, x: np.ndarray, **tol) -> None:
    """Finite-difference check of d(sum(layer(x) * c)) / d(params, x)."""
    params = randomize(layer)
    c = rng(SEED + 1).standard_normal(np.shape(layer.apply(params, x)))
    cn.check_grads(lambda p, x: cn.sum(layer.apply(p, x) * c), params, x, **tol)


# ------------------------------------------------------------------- Einsum
def test_einsum_layer_derives_shapes_and_matches_numpy():
    layer = nn.Einsum("bi,ik->bk", sizes={"i": 6, "k": 4}, bias=True, rng=0)
    assert {k: v.shape for k, v in layer.parameters().items()} == {"weight": (6, 4), "bias": (4,)}
    params = randomize(layer)
    x = rng().standard_normal((5, 6))
    np.testing.assert_allclose(layer.apply(params, x), x @ params["weight"] + params["bias"])
    assert repr(layer) == "Einsum('bi,ik->bk', sizes={'i': 6, 'k': 4}, bias=True)"
    check_layer_grads(layer, x)


def test_einsum_bias_on_inner_output_axis_broadcasts_there():
    layer = nn.Einsum("bik,ij->bjk", sizes={"i": 3, "j": 4}, bias=True, rng=0)  # bias over j
    params = randomize(layer)
    x = rng().standard_normal((2, 3, 5))
    want = np.einsum("bik,ij->bjk", x, params["weight"]) + params["bias"][None, :, None]
    np.testing.assert_allclose(layer.apply(params, x), want)
    check_layer_grads(layer, x)


def test_einsum_factorised_weights_are_numbered_and_contracted():
    layer = nn.Einsum("bi,ir,rk->bk", sizes={"i": 5, "r": 2, "k": 3}, rng=0)
    assert {k: v.shape for k, v in layer.parameters().items()} == {"weight1": (5, 2),
                                                                   "weight2": (2, 3)}
    params = randomize(layer)
    x = rng().standard_normal((4, 5))
    np.testing.assert_allclose(layer.apply(params, x), x @ params["weight1"] @ params["weight2"])
    check_layer_grads(layer, x)


def test_einsum_windowed_input_is_a_conv():
    layer = nn.Einsum("b(h+u)(w+v)c,uvck->bhwk", sizes={"u": 2, "v": 2, "c": 3, "k": 4},
                      bias=True, rng=0)
    params = randomize(layer)
    x = rng().standard_normal((2, 4, 5, 3))
    np.testing.assert_allclose(layer.apply(params, x),
                               conv_oracle(x, params["weight"]) + params["bias"], atol=1e-12)


def test_einsum_checks_input_sizes_it_was_given():
    layer = nn.Einsum("bi,ik->bk", sizes={"i": 4, "k": 3, "b": 2}, rng=0)
    layer(np.ones((2, 4), np.float32))
    with pytest.raises(cn.SpecError, match="'b'"):
        layer(np.ones((5, 4), np.float32))


@pytest.mark.parametrize("spec, sizes, error, match", [
    ("bi,ik->bk(", {"i": 2, "k": 2}, cn.SpecError, "window group"),
    ("bi->b", {"i": 2}, cn.SpecError, "at least one weight"),
    ("b(h+u),(h+u)->bh", {"u": 2, "h": 2}, cn.SpecError, "must be plain"),
    ("bi,ii->bi", {"i": 2}, cn.SpecError, "must be plain"),
    ("bi,ik->bkz", {"i": 2, "k": 2}, cn.SpecError,
     "'z' appears in no operand: a learned layer's output would only repeat along it"),
    # a typo: 'd' only in the weight would be summed away inside it
    ("bnme,nmdk->bk", {"n": 2, "m": 2, "d": 3, "k": 2}, cn.SpecError,
     r"index 'd' of weight term 'nmdk' \(operand 1\) appears in no other term"),
    ("bi,ik,jr->bk", {"i": 2, "k": 2, "j": 2, "r": 2}, cn.SpecError, "index 'j' of weight"),
    ("bi,ik->bk", {"i": 2}, ValueError, r"missing \['k'\]"),
    ("bi,ik->bk", {"i": 2, "k": 0}, ValueError, "positive integer"),
    ("bi,ik->bk", {"i": 2, "k": 2, "q": 3}, ValueError, "'q'"),
    ("bi,ik->bk", {"i": 2, "k": 2, "(2h+u)": 3}, ValueError, r"'\(2h\+u\)'.* does not use"),
    # a typo in the output is named, not the weight index it leaves alone
    ("bi,ik->bz", {"i": 3, "k": 2}, cn.SpecError, "output index 'z' appears in no operand"),
    # a second input taken for a weight: its batch index is named, with inputs=
    ("bi,ikj,bj->bk", {"i": 3, "k": 2, "j": 4}, ValueError,
     r"missing \['b'\] \('b' is also an input's or the output's index: is its weight term an "
     r"input\? name the inputs' operands with inputs=\)"),
])
def test_einsum_layer_rejects_bad_specs_and_sizes(spec, sizes, error, match):
    with pytest.raises(error, match=match):
        nn.Einsum(spec, sizes=sizes, rng=0)


def test_an_einsum_layer_takes_a_window_groups_length():
    # a transposed conv's output length, as cn.einsum takes it: positions no window reaches are 0
    layer = nn.Einsum("bhk,uck->b(2h+u)c", sizes={"u": 3, "c": 2, "k": 4, "(2h+u)": 12}, rng=0)
    x = np.ones((1, 5, 4), np.float32)
    y = layer(x)
    expected = cn.einsum("bhk,uck->b(2h+u)c", x, layer.parameters()["weight"],
                         sizes={"(2h+u)": 12})
    assert y.shape == (1, 12, 2) and np.array_equal(y, expected) and not y[0, 11:].any()


def test_a_layer_refusing_its_input_names_itself_and_its_operands():
    net = nn.Sequential(nn.Dense(4, 3, rng=0), nn.ReLU(), nn.Dense(4, 2, rng=0))
    with pytest.raises(cn.SpecError, match=r"^Dense\(4, 2, .*\) cannot take input shape\(s\) "
                                           r"\(2, 3\): index 'i' has size 3 in operand 0 but 4 "
                                           r"in operand 1 \(operand 0 is the input, the others "
                                           r"its weights\)\n  bi,ik->bk\n     \^"):
        net(np.ones((2, 4), np.float32))
    bilinear = nn.Einsum("bi,ikj,bj->bk", sizes={"i": 3, "k": 4, "j": 5}, inputs=(0, 2))
    with pytest.raises(cn.SpecError, match=r"\(2, 3\), \(2, 4\): .*operands \[0, 2\] are "
                                           r"the inputs"):
        bilinear(np.ones((2, 3), np.float32), np.ones((2, 4), np.float32))


@pytest.mark.parametrize("make", [
    lambda: nn.Sequential(nn.Conv2d(1, 2, 3, rng=0), nn.ReLU(), nn.ContractHead((2, 2, 2), 3)),
    lambda: nn.Sequential(nn.FlattenDense((4, 4, 1), 3, rng=0)),
    lambda: nn.Einsum("bhwc,hwck->bk", sizes={"h": 4, "w": 4, "c": 1, "k": 3}, rng=0),
])
@pytest.mark.parametrize("dtype", [np.int64, np.uint8, np.bool_])
def test_integer_input_keeps_a_float32_model_float32(make, dtype):
    model = make()
    x = (np.arange(2 * 4 * 4).reshape(2, 4, 4, 1) % 3).astype(dtype)
    y = model(x)
    assert y.dtype == np.float32
    np.testing.assert_allclose(y, model(x.astype(np.float32)), rtol=1e-6)
    _, grads = nn.loss_and_grads(lambda p: cn.sum(model.apply(p, x)), model.parameters())
    assert all(g.dtype == np.float32 for g in grads.values())
    assert model(x.astype(np.float64)).dtype == np.float64  # floats promote as numpy does


def test_einsum_layer_error_points_at_the_lone_weight_index():
    with pytest.raises(cn.SpecError) as exc:
        nn.Einsum("bnme,nmdk->bk", sizes={"n": 2, "m": 2, "d": 3, "k": 2}, rng=0)
    spec_line, caret_line = str(exc.value).splitlines()[-2:]
    assert spec_line.strip() == "bnme,nmdk->bk" and spec_line[caret_line.index("^")] == "d"


def test_einsum_layer_keeps_the_order_of_its_sizes():
    layer = nn.Einsum("bnmd,nr,mr,dr,kr->bk", sizes={"n": 2, "m": 2, "d": 3, "r": 4, "k": 5})
    assert list(layer.sizes) == ["n", "m", "d", "r", "k"]
    assert "sizes={'n': 2, 'm': 2, 'd': 3, 'r': 4, 'k': 5}" in repr(layer)


def test_einsum_layer_rejects_bad_weight_names_init_and_dtype():
    with pytest.raises(ValueError, match="weight_names"):
        nn.Einsum("bi,ik->bk", {"i": 2, "k": 2}, weight_names=("a", "b"))
    with pytest.raises(ValueError, match="init scheme"):
        nn.Einsum("bi,ik->bk", {"i": 2, "k": 2}, init="zeros")
    with pytest.raises(ValueError, match="floating"):
        nn.Einsum("bi,ik->bk", {"i": 2, "k": 2}, dtype=np.int32)


# -------------------------------------------------------------- other layers
def test_dense_forward_repr_and_grads():
    layer = nn.Dense(4, 3, rng=0)
    assert repr(layer) == "Dense(4, 3, spec='bi,ik->bk', bias=True)"
    assert repr(nn.Dense(4, 3, bias=np.False_, dtype=np.float64)) == (
        "Dense(4, 3, spec='bi,ik->bk', bias=False, dtype=float64)")
    params = randomize(layer)
    x = rng().standard_normal((2, 4))
    np.testing.assert_allclose(layer.apply(params, x), x @ params["weight"] + params["bias"])
    check_layer_grads(layer, x)
    with pytest.raises(ValueError, match="in_features"):
        nn.Dense(0, 3)


@pytest.mark.parametrize("options, pads", [
    ({"padding": "same"}, ((1, 1), (1, 1))),
    ({"stride": 2, "padding": 1}, ((1, 1), (1, 1))),
    ({"dilation": (2, 1)}, ((0, 0), (0, 0))),
])
def test_conv2d_matches_loop_oracle_and_grads(options, pads):
    layer = nn.Conv2d(2, 3, 3, rng=0, **options)
    params = randomize(layer)
    x = rng().standard_normal((2, 6, 5, 2))
    stride = (options.get("stride", 1),) * 2
    dilation = options.get("dilation", (1, 1))
    want = conv_oracle(x, params["weight"], stride, pads, dilation) + params["bias"]
    np.testing.assert_allclose(layer.apply(params, x), want, atol=1e-12)
    check_layer_grads(layer, x)


def test_conv2d_groups_are_independent_convolutions():
    layer = nn.Conv2d(4, 2, (2, 3), groups=2, bias=False, rng=0)
    assert layer.parameters()["weight"].shape == (2, 3, 2, 2)
    params = randomize(layer)
    x = rng().standard_normal((1, 4, 5, 4))
    w = params["weight"]
    want = np.concatenate([conv_oracle(x[..., :2], w[..., :1]),
                           conv_oracle(x[..., 2:], w[..., 1:])], axis=-1)
    np.testing.assert_allclose(layer.apply(params, x), want, atol=1e-12)


def test_conv2d_repr_and_validation():
    assert repr(nn.Conv2d(1, 16, 3, padding="same", rng=0)) == (
        "Conv2d(1, 16, kernel_size=(3, 3), padding='same', "
        "spec='b(h+u)(w+v)c,uvck->bhwk', bias=True)")
    assert "b(2h+2u)(2w+2v)c" in repr(nn.Conv2d(1, 2, 3, stride=2, dilation=2))
    for zero in (0, (0, 0), ((0, 0), (0, 0)), "valid"):  # no padding: not shown
        assert "padding" not in repr(nn.Conv2d(1, 2, 3, padding=zero))
    assert "padding=((0, 0), (0, 1))" in repr(nn.Conv2d(1, 2, 3, padding=((0, 0), (0, 1))))
    assert repr(nn.Conv2d(1, 2, 3, dtype=np.float64)).endswith("bias=True, dtype=float64)")
    for bad, match in [({"kernel_size": 0}, "kernel_size"), ({"padding": "full"}, "padding"),
                       ({"padding": np.array([1, 1])}, "padding must be an int"),
                       ({"groups": 3}, "groups"), ({"stride": (1, 2, 3)}, "stride")]:
        kwargs = {"kernel_size": 3, **bad}
        with pytest.raises(ValueError, match=match):
            nn.Conv2d(2, 4, **kwargs)
    # an input of other channels is named as the layer's, not as the kernel's fault
    for x in (np.ones((1, 5, 5, 1)), cn.Traced(np.ones((1, 5, 5, 3)))):
        with pytest.raises(cn.ConvError, match=r"Conv2d\(2, 4, ...\) takes inputs of 2 "
                                               r"channel\(s\) on the last axis \(B, H, W, C\), "
                                               rf"got shape \(1, 5, 5, {x.shape[-1]}\)"):
            nn.Conv2d(2, 4, 3, rng=0)(x)


def test_pools_match_reshape_oracle_and_grads():
    x = rng().standard_normal((2, 4, 6, 3))
    blocks = x.reshape(2, 2, 2, 3, 2, 3)
    np.testing.assert_allclose(nn.MaxPool2d(2)(x), blocks.max(axis=(2, 4)))
    np.testing.assert_allclose(nn.AvgPool2d(2)(x), blocks.mean(axis=(2, 4)))
    check_layer_grads(nn.MaxPool2d(2), x)
    check_layer_grads(nn.AvgPool2d((2, 3), stride=1), x)
    assert repr(nn.MaxPool2d(2)) == "MaxPool2d((2, 2), spec='b(2h+u)(2w+v)c->bhwc', reduce='max')"


def test_conv_and_pool_layers_run_with_the_settings_they_checked():
    # lists the caller changes after building a layer change nothing in it
    x = rng().standard_normal((1, 8, 8, 1)).astype(np.float32)
    stride, padding, size = [1, 1], [1, 1], [2, 2]
    conv = nn.Conv2d(1, 1, 3, stride=stride, padding=padding, rng=0)
    pools = [nn.MaxPool2d(size), nn.AvgPool2d(size, stride=stride)]
    before = [conv(x)] + [pool(x) for pool in pools]
    stride[0], padding[0], size[1] = 2, -1, 4
    after = [conv(x)] + [pool(x) for pool in pools]
    for old, new in zip(before, after):
        np.testing.assert_array_equal(old, new)
    assert conv.stride == (1, 1) and conv.padding == [1, 1] and "padding=[1, 1]" in repr(conv)
    assert [pool.size for pool in pools] == [(2, 2), (2, 2)]


def test_relu_forward_and_grads():
    x = rng().standard_normal((3, 4))
    x[np.abs(x) < 0.1] = 0.5  # keep finite differences away from the kink
    np.testing.assert_array_equal(nn.ReLU()(x), np.maximum(x, 0))
    check_layer_grads(nn.ReLU(), x)


# --------------------------------------------------------------------- heads
def test_contract_head_forward_and_exact_gradients():
    head = nn.ContractHead((2, 3, 4), 5, rng=0)
    params = randomize(head)
    x, dy = rng(1).standard_normal((6, 2, 3, 4)), rng(2).standard_normal((6, 5))
    y, vjp_fn = cn.vjp(head.apply, params, x)
    np.testing.assert_allclose(y, np.einsum("bnmd,nmdk->bk", x, params["weight"]) + params["bias"])
    grads, dx = vjp_fn(dy)
    np.testing.assert_allclose(grads["weight"], np.einsum("bnmd,bk->nmdk", x, dy))
    np.testing.assert_allclose(grads["bias"], dy.sum(axis=0))
    np.testing.assert_allclose(dx, np.einsum("bk,nmdk->bnmd", dy, params["weight"]))


@pytest.mark.parametrize("make, full", [
    (lambda: nn.CPHead((2, 3, 4), 5, rank=3, rng=0),
     lambda p: np.einsum("nr,mr,dr,kr->nmdk", p["factor_n"], p["factor_m"], p["factor_d"],
                         p["factor_k"])),
    (lambda: nn.TuckerHead((2, 3, 4), 5, ranks=(2, 2, 3), rng=0),
     lambda p: np.einsum("np,mq,ds,pqsk->nmdk", p["factor_n"], p["factor_m"], p["factor_d"],
                         p["core"])),
])
def test_factorised_heads_equal_contract_head_with_full_weight(make, full):
    head = make()
    params = randomize(head)
    x = rng(1).standard_normal((3, 2, 3, 4))
    want = np.einsum("bnmd,nmdk->bk", x, full(params)) + params["bias"]
    np.testing.assert_allclose(head.apply(params, x), want, atol=1e-12)
    np.testing.assert_allclose(head.full_weight(params), full(params), atol=1e-12)
    check_layer_grads(head, x)


def test_head_repr_param_counts_and_shape_errors():
    assert repr(nn.ContractHead((4, 4, 16), 10)) == (
        "ContractHead((4, 4, 16), 10, spec='bnmd,nmdk->bk', bias=True)")
    assert repr(nn.FlattenDense((4, 4, 16), 10, layout="NCHW")) == (
        "FlattenDense((4, 4, 16), 10, layout='NCHW', spec='bi,ik->bk', bias=True)")
    assert nn.CPHead((4, 4, 16), 10, rank=8).num_parameters() == 8 * (4 + 4 + 16 + 10) + 10
    tucker = nn.TuckerHead((4, 4, 16), 10, ranks=(2, 3, 5))
    assert tucker.num_parameters() == 4 * 2 + 4 * 3 + 16 * 5 + 2 * 3 * 5 * 10 + 10
    assert "ranks=(2, 3, 5)" in repr(tucker)
    assert repr(nn.CPHead((4, 4, 16), 10, rank=2, dtype=np.float64)).endswith(
        "bias=True, dtype=float64)")
    assert repr(nn.FlattenDense((4, 4, 16), 10, dtype=np.float16)).endswith(
        "bias=True, dtype=float16)")
    with pytest.raises(ValueError, match=r"expects input \(B, 4, 4, 16\)"):
        nn.ContractHead((4, 4, 16), 10)(np.ones((2, 4, 16, 4), np.float32))
    with pytest.raises(ValueError, match="in_shape"):
        nn.ContractHead((4, 16), 10)
    with pytest.raises(ValueError, match="in_shape"):
        nn.ContractHead((True, 4, 16), 10)
    assert nn.TuckerHead((4, 4, 16), 10, ranks=np.array([2, 3, 5])).ranks == (2, 3, 5)
    with pytest.raises(ValueError, match="ranks"):
        nn.TuckerHead((4, 4, 16), 10, ranks=np.array(2))
    with pytest.raises(cn.MemoryBudgetError, match="a weight of shape"):
        nn.CPHead((4, 4, 16), 10, rank=10**10)
    with pytest.raises(ValueError, match="ranks"):
        nn.TuckerHead((4, 4, 16), 10, ranks=(2, 2))
    with pytest.raises(ValueError, match=r"\(p, q, s\), got 2$"):  # as given, not as a tuple
        nn.TuckerHead((4, 4, 16), 10, ranks=2)
    with pytest.raises(ValueError, match=r"ranks\[1\] \(q\) must be a positive integer, got 0"):
        nn.TuckerHead((4, 4, 16), 10, ranks=(2, 0, 5))
    with pytest.raises(ValueError, match="rank"):
        nn.CPHead((4, 4, 16), 10, rank=0)


@pytest.mark.parametrize("layout", ["NHWC", "NCHW"])
def test_flatten_dense_grads(layout):
    head = nn.FlattenDense((2, 3, 4), 5, layout=layout, rng=0)
    check_layer_grads(head, rng(1).standard_normal((3, 2, 3, 4)))


def test_head_init_scale_gives_unit_order_logits():
    # init targets Var(W_eff) = 2 / (fan_in + fan_out) for plain and factorised heads alike
    x = rng().standard_normal((2000, 4, 4, 16)).astype(np.float32)
    for head in (nn.ContractHead((4, 4, 16), 10, rng=1), nn.CPHead((4, 4, 16), 10, 8, rng=1),
                 nn.TuckerHead((4, 4, 16), 10, (3, 3, 8), rng=1)):
        var = float(np.var(head(x)))
        assert 0.3 * 256 * 2 / 266 < var < 3 * 256 * 2 / 266, (head, var)


# -------------------------------------------------------------- Module/Seq
def small_net(dtype=np.float64) -> nn.Sequential:
    g = rng(0)
    return nn.Sequential(nn.Conv2d(1, 2, 3, padding="same", rng=g, dtype=dtype), nn.ReLU(),
                         nn.MaxPool2d(2), nn.ContractHead((2, 2, 2), 3, rng=g, dtype=dtype))


def test_a_module_lists_its_children_in_its_repr():
    class Pair(nn.Module):
        def __init__(self):
            super().__init__()
            self.add_module("left", nn.Dense(3, 2, rng=0))
            self.add_module("right", nn.Sequential(nn.ReLU(), nn.Dense(2, 2, rng=0)))

    assert repr(Pair()) == (
        "Pair(\n"
        "  (left): Dense(3, 2, spec='bi,ik->bk', bias=True)\n"
        "  (right): Sequential(\n"
        "    (0): ReLU()\n"
        "    (1): Dense(2, 2, spec='bi,ik->bk', bias=True)\n"
        "  )\n"
        ")")
    assert repr(nn.Sequential()) == "Sequential()" and repr(nn.ReLU()) == "ReLU()"


def test_sequential_names_apply_and_grads():
    net = small_net()
    assert list(net.parameters()) == ["0.weight", "0.bias", "3.weight", "3.bias"]
    assert len(net) == 4 and isinstance(net[3], nn.ContractHead)
    x = rng(5).standard_normal((2, 4, 4, 1))
    params = randomize(net)
    h = np.maximum(conv_oracle(x, params["0.weight"], pads=((1, 1), (1, 1))) + params["0.bias"], 0)
    h = h.reshape(2, 2, 2, 2, 2, 2).max(axis=(2, 4))
    want = np.einsum("bnmd,nmdk->bk", h, params["3.weight"]) + params["3.bias"]
    np.testing.assert_allclose(net.apply(params, x), want, atol=1e-12)
    check_layer_grads(net, x)
    assert repr(net).startswith("Sequential(\n  (0): Conv2d(1, 2,")


def test_apply_rejects_wrong_names_and_shapes():
    net = small_net()
    params = net.parameters()
    x = np.ones((1, 4, 4, 1))
    with pytest.raises(ValueError, match=r"missing \['3.bias'\]"):
        net.apply({k: v for k, v in params.items() if k != "3.bias"}, x)
    with pytest.raises(ValueError, match=r"unexpected \['extra'\]"):
        net.apply({**params, "extra": np.ones(1)}, x)
    with pytest.raises(ValueError, match=r"'0.bias' has shape \(3,\)"):
        net.apply({**params, "0.bias": np.ones(3)}, x)


def test_parameters_are_live_and_set_parameters_copies_all_or_nothing():
    net = small_net()
    params = net.parameters()
    params["3.bias"] += 1.0  # same array as the module's
    np.testing.assert_array_equal(net.parameters()["3.bias"], np.ones(3))
    new = randomize(net, seed=9)
    net.set_parameters(new)
    np.testing.assert_array_equal(params["0.weight"], new["0.weight"])
    before = {k: v.copy() for k, v in params.items()}
    with pytest.raises(ValueError, match="dtype float32"):
        net.set_parameters({**new, "3.weight": new["3.weight"].astype(np.float32)})
    with pytest.raises(ValueError, match="'3.bias' must be an array, got list"):
        net.set_parameters({**new, "3.bias": new["3.bias"].tolist()})
    for k in before:
        np.testing.assert_array_equal(params[k], before[k])


def test_float32_is_preserved_through_forward_and_gradients():
    net = small_net(np.float32)
    x = rng().random((3, 4, 4, 1), dtype=np.float32)
    y = np.array([0, 1, 2])
    loss, grads = nn.loss_and_grads(lambda p: nn.softmax_cross_entropy(net.apply(p, x), y),
                                    net.parameters())
    assert np.asarray(loss).dtype == np.float32
    assert {k: g.dtype for k, g in grads.items()} == {k: np.float32 for k in grads}


def test_loss_and_grads_matches_value_and_grad_and_leaves_labels_alone():
    net = small_net()
    x, y = rng().standard_normal((3, 4, 4, 1)), np.array([2, 0, 1])

    def loss_fn(p, x, y):
        return nn.softmax_cross_entropy(net.apply(p, x), y)

    loss, grads = nn.loss_and_grads(loss_fn, net.parameters(), x, y)
    cn.check_grads(lambda p: loss_fn(p, x, y), net.parameters())
    np.testing.assert_allclose(loss, loss_fn(net.parameters(), x, y))
    assert set(grads) == set(net.parameters())


def test_loss_and_grads_given_a_module_says_to_pass_its_parameters():
    layer = nn.Dense(3, 2, rng=0)
    with pytest.raises(ValueError, match="got Dense; pass its .parameters()"):
        nn.loss_and_grads(lambda p, x: cn.sum(layer.apply(p, x)), layer, np.ones((1, 3)))


def test_sequential_passes_several_inputs_to_its_first_layer():
    bilinear = nn.Einsum("bi,ikj,bj->bk", sizes={"i": 3, "k": 4, "j": 5}, inputs=(0, 2), rng=0)
    net = nn.Sequential(bilinear, nn.ReLU())
    x1, x2 = rng().standard_normal((2, 3)), rng(1).standard_normal((2, 5))
    np.testing.assert_allclose(net(x1, x2), np.maximum(bilinear(x1, x2), 0))
    cn.check_grads(lambda p: net.apply(p, x1, x2), dict(net.parameters()))
    with pytest.raises(ValueError, match="a Sequential with no layers takes one input, got 2"):
        nn.Sequential()(x1, x2)
    one = nn.Sequential(nn.Dense(3, 4, rng=0))
    np.testing.assert_array_equal(one.forward(one.parameters(), x=x1), one(x1))  # by keyword


@pytest.mark.parametrize("layer, hint", [(cn.relu, r"cn.nn.ReLU\(\) rather than cn.relu"),
                                         (nn.ReLU, r"got type; make one: ReLU\(...\)"),
                                         ([nn.ReLU()], r"one by one: Sequential\(\*layers\)")])
def test_sequential_refuses_a_non_module_with_a_hint(layer, hint):
    with pytest.raises(ValueError, match=hint):
        nn.Sequential(layer)


def test_loss_and_grads_refuses_a_loss_that_reads_no_parameter():
    net = small_net()
    x, y = rng().standard_normal((3, 4, 4, 1)), np.array([2, 0, 1])
    with pytest.raises(ValueError, match=r"does not depend on params.*model\.apply"):
        nn.loss_and_grads(lambda p: nn.softmax_cross_entropy(net(x), y), net.parameters())
    # a parameter the loss leaves out is fine: its gradient is zero
    _, grads = nn.loss_and_grads(lambda p: cn.sum(p["0.weight"] * 2.0), net.parameters())
    assert np.all(grads["0.weight"] == 2.0) and not np.any(grads["0.bias"])


# -------------------------------------------------------------------- losses
def test_softmax_cross_entropy_matches_stable_numpy_and_grads():
    logits = rng().standard_normal((4, 5)) * 30  # large values: needs a stable logsumexp
    labels = np.array([0, 4, 2, 2])
    shifted = logits - logits.max(axis=1, keepdims=True)
    log_softmax = shifted - np.log(np.exp(shifted).sum(axis=1, keepdims=True))
    want = -log_softmax[np.arange(4), labels].mean()
    np.testing.assert_allclose(nn.softmax_cross_entropy(logits, labels), want, rtol=1e-12)
    small = rng().standard_normal((4, 5))
    cn.check_grads(lambda z: nn.softmax_cross_entropy(z, labels), small)


def test_softmax_cross_entropy_takes_masked_logits():
    # -inf marks a class that cannot be the answer: it adds nothing and gets no gradient
    logits = np.array([[2.0, -np.inf, 0.5], [1.0, 3.0, -np.inf]])
    labels = np.array([0, 1])
    want = np.mean([np.logaddexp(2.0, 0.5) - 2.0, np.logaddexp(1.0, 3.0) - 3.0])
    loss, grad = cn.value_and_grad(lambda z: nn.softmax_cross_entropy(z, labels))(logits)
    np.testing.assert_allclose(loss, want, rtol=1e-14)
    softmax = np.exp(logits - np.logaddexp.reduce(logits, axis=1, keepdims=True))
    softmax[np.arange(2), labels] -= 1
    np.testing.assert_allclose(grad, softmax / 2, rtol=1e-14, atol=0)
    assert grad[0, 1] == 0 and grad[1, 2] == 0


@pytest.mark.parametrize("labels, match", [
    (np.array([0.0, 1.0]), "integers"), (np.array([0, 1, 2]), r"shape \(2,\)"),
    (np.array([0, 3]), r"\[0, 3\)"), (np.array([-1, 0]), r"\[0, 3\)"),
    (np.eye(3)[[0, 2]], r"got a \(2, 3\) array, one-hot rows it seems; pass "
                        r"labels\.argmax\(axis=1\)"),
])
def test_softmax_cross_entropy_rejects_bad_labels(labels, match):
    with pytest.raises(ValueError, match=match):
        nn.softmax_cross_entropy(np.zeros((2, 3)), labels)


def test_traced_labels_suggest_swapped_arguments():
    logits, labels = np.zeros((2, 3)), np.array([0, 2])
    with pytest.raises(ValueError, match=r"labels must be an integer array, got a traced value "
                                         r"\(are the logits and the labels swapped\?\)"):
        cn.grad(lambda z: nn.softmax_cross_entropy(labels, z))(logits)


def test_mse_and_accuracy():
    p, t = rng(1).standard_normal((3, 2)), rng(2).standard_normal((3, 2))
    np.testing.assert_allclose(nn.mse(p, t), np.mean((p - t) ** 2))
    cn.check_grads(lambda p: nn.mse(p, t), p)
    with pytest.raises(ValueError, match="shape"):
        nn.mse(p, t[:2])
    assert nn.accuracy(np.array([[1.0, 2.0], [3.0, 0.0], [0.0, 1.0]]), np.array([1, 0, 0])) == 2 / 3


def test_mse_of_nothing_is_refused_as_cross_entropy_of_nothing_is():
    for shape in ((0, 3), (0,)):
        with pytest.raises(ValueError, match=rf"mse needs at least one element, got shape "
                                             rf"{re.escape(str(shape))}"):
            nn.mse(np.zeros(shape), np.zeros(shape))


def test_mse_of_two_integer_arrays_does_not_wrap_around():
    # the difference and its square in the integers' own dtype would wrap (uint8: 0 - 20 is 236)
    assert nn.mse(np.array([0], np.uint8), np.array([20], np.uint8)) == 400.0
    assert nn.mse(np.array([100], np.int8), np.array([-100], np.int8)) == 40000.0
    assert nn.mse(np.array([2**32]), np.array([0])) == pytest.approx(2.0**64)
    assert nn.mse(np.array([True, False]), np.array([False, False])) == 0.5
    assert nn.mse(np.array([3], np.uint8), np.array([1.0], np.float32)).dtype == np.float32


def test_mse_of_complex_numbers_is_the_mean_squared_magnitude():
    p, t = np.array([1j, 1 + 1j, 0.5]), np.array([0j, 0, -1j])
    loss = nn.mse(p, t)
    assert np.isrealobj(loss) and loss == pytest.approx(np.mean(np.abs(p - t) ** 2))
    cn.check_grads(lambda p: nn.mse(p, t), p)


def test_accuracy_counts_a_row_with_a_nan_as_wrong():
    """np.argmax picks a nan's position: a diverged model must not score there."""
    logits = np.array([[np.nan, 1.0], [0.0, 1.0], [1.0, 0.0], [2.0, np.nan]])
    assert nn.accuracy(logits, np.array([0, 1, 1, 1])) == 1 / 4
    assert nn.accuracy(np.full((3, 2), np.nan), np.zeros(3, int)) == 0


@pytest.mark.parametrize("fn", [nn.softmax_cross_entropy, nn.accuracy])
def test_an_empty_batch_is_refused_not_averaged_to_nan(fn):
    with pytest.raises(ValueError, match=r"needs at least one example, got logits of shape "
                                         r"\(0, 3\)"):
        fn(np.zeros((0, 3)), np.zeros(0, int))


# ---------------------------------------------------------------------- init

def test_a_float16_weight_is_budgeted_as_its_float32_draw():
    with cn.memory_budget(3 * 10**6), pytest.raises(  # drawn in float32: 4 MB, not 2 MB
            cn.MemoryBudgetError, match="the float32 draw of a float16 weight"):
        nn.Dense(1000, 1000, dtype=np.float16)


def test_a_byte_swapped_float32_weight_is_drawn_as_float32():
    swapped = nn.init.normal((3,), 1.0, rng=np.random.default_rng(0), dtype=np.dtype(">f4"))
    native = nn.init.normal((3,), 1.0, rng=np.random.default_rng(0), dtype=np.float32)
    assert swapped.dtype == np.dtype(">f4")
    np.testing.assert_array_equal(swapped, native)


def test_a_longdouble_weight_is_budgeted_at_its_own_size_and_drawn_in_float64():
    wide = np.dtype(np.longdouble)  # float128 here, float64 on some platforms
    with cn.memory_budget(5 * 10**6), pytest.raises(
            cn.MemoryBudgetError, match=rf"a weight of shape \(1000, 1000\) \({wide}\)"):
        nn.init.normal((1000, 1000), 0.1, rng=np.random.default_rng(0), dtype=np.longdouble)
    w = nn.init.normal((2, 3), 0.1, rng=np.random.default_rng(0), dtype=np.longdouble)
    want = 0.1 * np.random.default_rng(0).standard_normal((2, 3))
    assert w.dtype == np.longdouble and np.allclose(w, want, rtol=1e-15, atol=0)


def test_init_draws_in_dtype_with_the_right_scale_and_seed():
    w = nn.init.he_normal((400, 300), 400, rng=rng(), dtype=np.float32)
    assert w.dtype == np.float32
    np.testing.assert_allclose(w.std(), np.sqrt(2 / 400), rtol=0.02)
    g = nn.init.glorot_uniform((200, 100), 200, 100, rng=rng(), dtype=np.float64)
    limit = np.sqrt(6 / 300)
    assert g.dtype == np.float64 and g.min() >= -limit and g.max() <= limit
    assert abs(g.max() - limit) < 0.01 * limit
    np.testing.assert_array_equal(nn.init.he_normal((3,), 3, rng=rng(7)),
                                  nn.init.he_normal((3,), 3, rng=rng(7)))
    assert nn.init.he_normal((3,), 3, rng=rng(), dtype=np.float16).dtype == np.float16


@pytest.mark.parametrize("draw, match", [
    (lambda g: nn.init.normal((2,), -1.0, rng=g), "std must be a finite number >= 0, got -1.0"),
    (lambda g: nn.init.normal((2,), float("nan"), rng=g), "std must be a finite number"),
    (lambda g: nn.init.normal((2,), "0.1", rng=g), "std must be a real number"),
    (lambda g: nn.init.normal((2,), 1e39, rng=g), "std=1e\\+39 is too large for float32"),
    (lambda g: nn.init.uniform((2,), np.inf, rng=g), "limit must be a finite number"),
    (lambda g: nn.init.uniform((2,), 40000, rng=g, dtype=np.float16),
     "limit=40000 is too large for float16"),  # its double is not finite in float16
])
def test_a_bad_scale_is_refused_before_drawing(draw, match):
    g = rng(3)
    with pytest.raises(ValueError, match=match):
        draw(g)
    assert g.random() == rng(3).random()  # the generator was not drawn from


def test_init_draws_take_an_int_seed_as_layers_do():
    for draw in (nn.init.normal, nn.init.uniform):
        np.testing.assert_array_equal(draw((3,), 0.5, rng=4), draw((3,), 0.5, rng=rng(4)))
    w = nn.init.uniform((1000,), 30000, rng=0, dtype=np.float16)  # 2 * limit fits
    assert np.isfinite(w).all() and np.abs(w).max() <= 30000


def test_init_validation_and_spec_fans():
    with pytest.raises(ValueError, match="fan_in"):
        nn.init.he_normal((3,), 0, rng=rng())
    with pytest.raises(ValueError, match="Generator"):
        nn.init.as_generator(np.random.RandomState(0))
    spec = cn.parse("b(h+u)(w+v)c,uvck->bhwk")
    # an input element reaches one output per window offset: fan-out counts u and v
    assert nn.init.spec_fans(spec, {"u": 3, "v": 3, "c": 2, "k": 8}) == (18, 72, 1)
    spec = cn.parse("b(2h+u)c,uck->bhk")  # a stride leaves the fans alone
    assert nn.init.spec_fans(spec, {"u": 5, "c": 2, "k": 4}) == (10, 20, 1)
    spec = cn.parse("bnmd,np,mq,ds,pqsk->bk")
    sizes = dict(n=4, m=4, d=16, k=10, p=2, q=3, s=5)
    assert nn.init.spec_fans(spec, sizes) == (256, 10, 30)


def test_conv_glorot_counts_the_window_in_both_fans_as_keras_and_pytorch():
    """Glorot's bound for a KH x KW conv is sqrt(6 / (KH*KW*C + KH*KW*K)), in
    the layer and in the same conv written as an Einsum spec."""
    bound = np.sqrt(6 / (9 * 8 + 9 * 32))
    w = nn.Conv2d(8, 32, 3, init="glorot", rng=0).parameters()["weight"]
    assert w.min() >= -bound and w.max() <= bound and w.max() > 0.95 * bound
    layer = nn.Einsum("b(h+u)(w+v)c,uvck->bhwk", {"u": 3, "v": 3, "c": 8, "k": 32},
                      init="glorot", rng=0)
    w = layer.parameters()["weight"]
    assert w.min() >= -bound and w.max() <= bound and w.max() > 0.95 * bound


@pytest.mark.parametrize("make, message", [
    (lambda: nn.Dense(3, 3, dtype="foo"), "dtype must be a floating dtype, got 'foo'"),
    (lambda: nn.Conv2d(1, 2, 3, dtype="foo"), "dtype must be a floating dtype, got 'foo'"),
    (lambda: nn.Dense(3, 3, rng=-1),
     "rng as a seed must be a non-negative integer or None, got -1"),
])
def test_layers_name_a_bad_dtype_or_seed(make, message):
    with pytest.raises(ValueError, match=message):
        make()


def test_seeded_layers_are_reproducible():
    a, b = nn.Dense(5, 4, rng=11), nn.Dense(5, 4, rng=11)
    np.testing.assert_array_equal(a.parameters()["weight"], b.parameters()["weight"])


# ------------------------------------------------------ flat <-> contraction
@pytest.mark.parametrize("layout", ["NHWC", "NCHW"])
def test_flat_and_contraction_weight_round_trip(layout):
    w = rng().standard_normal((2, 3, 4, 5)).astype(np.float32)
    flat = nn.flat_weight(w, layout)
    assert flat.shape == (24, 5) and flat.dtype == np.float32 and flat.flags.c_contiguous
    np.testing.assert_array_equal(nn.contraction_weight(flat, (2, 3, 4), layout), w)
    f = rng(1).standard_normal((24, 5))
    np.testing.assert_array_equal(nn.flat_weight(nn.contraction_weight(f, (2, 3, 4), layout),
                                                 layout), f)


def test_flat_weight_orders_rows_like_keras_and_pytorch():
    n_, m_, d_ = 2, 3, 4
    w = rng().standard_normal((n_, m_, d_, 5))
    keras, torch_order = nn.flat_weight(w, "NHWC"), nn.flat_weight(w, "NCHW")
    for n in range(n_):
        for m in range(m_):
            for d in range(d_):
                np.testing.assert_array_equal(keras[(n * m_ + m) * d_ + d], w[n, m, d])
                np.testing.assert_array_equal(torch_order[(d * n_ + n) * m_ + m], w[n, m, d])


@pytest.mark.parametrize("layout", ["NHWC", "NCHW"])
def test_flatten_dense_equals_contract_head(layout):
    contract = nn.ContractHead((2, 3, 4), 5, rng=0)
    params = randomize(contract)
    flat = nn.FlattenDense((2, 3, 4), 5, layout=layout, rng=0, dtype=np.float64)
    flat.set_parameters({"weight": nn.flat_weight(params["weight"], layout),
                         "bias": params["bias"]})
    x = rng(1).standard_normal((6, 2, 3, 4))
    want = contract.apply(params, x)
    np.testing.assert_allclose(flat(x), want, atol=1e-12)
    # the flat input a framework with this layout sees, built by hand
    by_hand = x.reshape(6, -1) if layout == "NHWC" else x.transpose(0, 3, 1, 2).reshape(6, -1)
    np.testing.assert_array_equal(nn.flatten_activation(x, layout), by_hand)
    np.testing.assert_allclose(by_hand @ nn.flat_weight(params["weight"], layout) + params["bias"],
                               want, atol=1e-12)
    np.testing.assert_allclose(flat.full_weight(), params["weight"])


def test_pytorch_flatten_matches_nchw_layout():
    torch = pytest.importorskip("torch")
    x = rng().standard_normal((3, 2, 3, 4))
    torch_flat = torch.flatten(torch.from_numpy(x).permute(0, 3, 1, 2), 1).numpy()
    np.testing.assert_array_equal(nn.flatten_activation(x, "NCHW"), torch_flat)


def test_seeded_flatten_dense_draws_the_contract_heads_weights():
    a, b = nn.ContractHead((2, 3, 4), 5, rng=8), nn.FlattenDense((2, 3, 4), 5, rng=8)
    np.testing.assert_array_equal(nn.flat_weight(a.parameters()["weight"]),
                                  b.parameters()["weight"])


def test_weight_conversion_errors():
    with pytest.raises(ValueError, match="unknown layout 'NWHC'"):
        nn.flat_weight(np.ones((2, 2, 2, 2)), "NWHC")
    with pytest.raises(ValueError, match="4-d"):
        nn.flat_weight(np.ones((8, 2)))
    with pytest.raises(ValueError, match=r"\(24, K\)"):
        nn.contraction_weight(np.ones((20, 5)), (2, 3, 4))
    with pytest.raises(ValueError, match="layout"):
        nn.FlattenDense((2, 3, 4), 5, layout="CHW")


# ----------------------------------------------------------------- save/load
def test_save_load_round_trip(tmp_path):
    net = small_net(np.float32)
    path = tmp_path / "net.npz"
    net.save(path)
    other = small_net(np.float32)
    other.set_parameters({k: np.zeros_like(v) for k, v in other.parameters().items()})
    assert other.load(path) is other
    for name, value in net.parameters().items():
        np.testing.assert_array_equal(other.parameters()[name], value)
        assert other.parameters()[name].dtype == np.float32
    assert sorted(os.listdir(tmp_path)) == ["net.npz"]  # no temp file left behind


def test_save_is_atomic_when_writing_fails(tmp_path, monkeypatch):
    path = tmp_path / "net.npz"
    nn.save_parameters({"w": np.ones(3)}, path)
    original = path.read_bytes()

    def broken(*args, **kwargs):
        raise OSError("disk full")
    monkeypatch.setattr(np.lib.format, "write_array", broken)
    with pytest.raises(OSError, match="disk full"):
        nn.save_parameters({"w": np.zeros(3)}, path)
    assert path.read_bytes() == original
    assert sorted(os.listdir(tmp_path)) == ["net.npz"]


def test_save_takes_any_name(tmp_path):
    # names np.savez would mistake for its own arguments
    arrays = {"file": np.ones(2), "allow_pickle": np.zeros(1), "a.b": np.arange(3.0)}
    nn.save_parameters(arrays, tmp_path / "x.npz")
    back = nn.load_parameters(tmp_path / "x.npz")
    assert set(back) == set(arrays)
    np.testing.assert_array_equal(back["a.b"], arrays["a.b"])


def test_save_and_load_keep_names_that_end_in_npy(tmp_path):
    # numpy's NpzFile reads "a.npy" as the member of "a": the loader must not
    arrays = {"a": np.ones(1), "a.npy": np.zeros(3), "x/y": np.arange(2.0), "ü": np.ones(2)}
    nn.save_parameters(arrays, tmp_path / "x.npz")
    back = nn.load_parameters(tmp_path / "x.npz")
    assert set(back) == set(arrays)
    for name, value in arrays.items():
        np.testing.assert_array_equal(back[name], value)


def test_save_refuses_a_name_with_a_nul_and_writes_nothing(tmp_path):
    with pytest.raises(ValueError, match="NUL"):
        nn.save_parameters({"w\0x": np.ones(1), "w\0y": np.ones(2)}, tmp_path / "x.npz")
    for name in ("\udc80", "a" * 70000):  # not UTF-8; longer than a zip member name
        with pytest.raises(ValueError, match="is not UTF-8 text of at most 65,531 bytes"):
            nn.save_parameters({name: np.ones(1)}, tmp_path / "x.npz")
    assert os.listdir(tmp_path) == []


def test_save_names_a_parameter_that_is_not_an_array(tmp_path):
    with pytest.raises(ValueError, match=r"parameter 'layer3.weight' is not an array: "
                                         r"setting an array element with a sequence"):
        nn.save_parameters({"good": np.ones(2), "layer3.weight": [[1.0], [1.0, 2.0]]},
                           tmp_path / "x.npz")
    assert os.listdir(tmp_path) == []


@pytest.mark.parametrize("damage", ["smaller shape", "header length"])
def test_load_refuses_a_large_member_whose_damaged_header_claims_less(tmp_path, damage):
    # read_array stops where the header says; zipfile checks the CRC only at the
    # member's end, which a member larger than its read-ahead would not reach
    w = np.arange(300 * 400, dtype=np.float32).reshape(300, 400)
    path = tmp_path / "w.npz"
    nn.save_parameters({"w": w}, path)
    data = bytearray(path.read_bytes())
    if damage == "smaller shape":
        at = data.find(b"(300, 400)")
        data[at:at + 10] = b"(200, 400)"
    else:
        data[data.find(b"\x93NUMPY") + 8] ^= 2
    path.write_bytes(bytes(data))
    with pytest.raises(ValueError, match=r"member 'w.npy' cannot be read"):
        nn.load_parameters(path)


def test_load_refuses_members_that_are_not_arrays(tmp_path):
    with zipfile.ZipFile(tmp_path / "foreign.npz", "w") as archive:
        archive.writestr("0.bias", b"raw bytes")
    with pytest.raises(ValueError, match="'0.bias', which is not a '<name>.npy' array"):
        nn.load_parameters(tmp_path / "foreign.npz")
    net = small_net(np.float32)
    before = {k: v.copy() for k, v in net.parameters().items()}
    with pytest.raises(ValueError, match="not an archive of parameters"):
        net.load(tmp_path / "foreign.npz")
    for k, v in net.parameters().items():
        np.testing.assert_array_equal(v, before[k])
    with zipfile.ZipFile(tmp_path / "twice.npz", "w") as archive, \
            pytest.warns(UserWarning, match="Duplicate name"):
        for _ in range(2):
            with archive.open("w.npy", "w") as member:
                np.lib.format.write_array(member, np.ones(2))
    with pytest.raises(ValueError, match="'w' twice"):
        nn.load_parameters(tmp_path / "twice.npz")
    with zipfile.ZipFile(tmp_path / "bad.npz", "w") as archive:
        archive.writestr("w.npy", b"not an array")
    with pytest.raises(ValueError, match=r"bad.npz.*member 'w.npy'"):
        nn.load_parameters(tmp_path / "bad.npz")


def test_save_gives_a_new_file_the_umask_mode_and_keeps_a_replaced_files_mode(tmp_path):
    umask = os.umask(0o022)
    try:
        nn.save_parameters({"w": np.ones(1)}, tmp_path / "new.npz")
        assert stat.S_IMODE(os.stat(tmp_path / "new.npz").st_mode) == 0o644
        os.chmod(tmp_path / "new.npz", 0o640)
        nn.save_parameters({"w": np.zeros(1)}, tmp_path / "new.npz")
        assert stat.S_IMODE(os.stat(tmp_path / "new.npz").st_mode) == 0o640
    finally:
        os.umask(umask)
    assert sorted(os.listdir(tmp_path)) == ["new.npz"]


@pytest.mark.parametrize("change, match", [
    (lambda p: {k: v for k, v in p.items() if k != "0.bias"}, r"missing \['0.bias'\]"),
    (lambda p: {**p, "9.weight": np.ones(2, np.float32)}, r"unexpected \['9.weight'\]"),
    (lambda p: {**p, "3.bias": np.ones(4, np.float32)}, r"'3.bias' has shape \(4,\)"),
])
def test_load_rejects_wrong_names_and_shapes_and_changes_nothing(tmp_path, change, match):
    net = small_net(np.float32)
    nn.save_parameters(change(net.parameters()), tmp_path / "bad.npz")
    before = {k: v.copy() for k, v in net.parameters().items()}
    with pytest.raises(ValueError, match=match):
        net.load(tmp_path / "bad.npz")
    for k, v in net.parameters().items():
        np.testing.assert_array_equal(v, before[k])


def test_load_never_unpickles_and_refuses_non_archives(tmp_path):
    np.savez(tmp_path / "obj.npz", w=np.array([{"a": 1}], dtype=object))
    with pytest.raises(ValueError, match="pickle"):
        nn.load_parameters(tmp_path / "obj.npz")
    np.save(tmp_path / "one.npy", np.ones(3))
    with pytest.raises(ValueError, match="not an .npz"):
        nn.load_parameters(tmp_path / "one.npy")
    (tmp_path / "junk.npz").write_bytes(b"PK\x03\x04 not really a zip")
    with pytest.raises(ValueError, match="npz"):
        nn.load_parameters(tmp_path / "junk.npz")
    with pytest.raises(ValueError, match="non-numeric"):
        nn.save_parameters({"w": np.array(["a"])}, tmp_path / "s.npz")
    np.savez(tmp_path / "text.npz", w=np.ones(2), b=np.array("str"))  # what save refuses
    with pytest.raises(ValueError, match="parameter 'b' has non-numeric dtype <U3"):
        nn.load_parameters(tmp_path / "text.npz")


# ------------------------------------------------------------- several data operands
def test_bilinear_einsum_layer_takes_two_inputs():
    layer = cn.nn.Einsum("bi,ikj,bj->bk", sizes={"i": 3, "k": 4, "j": 5}, inputs=(0, 2),
                         bias=True, rng=0, dtype=np.float64)
    assert set(layer.parameters()) == {"weight", "bias"}
    assert layer.parameters()["weight"].shape == (3, 4, 5)
    rng = np.random.default_rng(1)
    x1, x2 = rng.standard_normal((2, 3)), rng.standard_normal((2, 5))
    layer.parameters()["bias"][:] = rng.standard_normal(4)
    want = np.einsum("bi,ikj,bj->bk", x1, layer.parameters()["weight"], x2) \
        + layer.parameters()["bias"]
    np.testing.assert_allclose(layer(x1, x2), want, rtol=1e-12)
    cn.check_grads(lambda p, a, b: layer.apply(p, a, b), dict(layer.parameters()), x1, x2)
    assert "inputs=(0, 2)" in repr(layer)


@pytest.mark.parametrize("inputs, match", [((0, 0), "distinct"), ((0, 3), "distinct"),
                                           ((2, 0), "increasing order"),
                                           ((0, 1, 2), "at least one weight")])
def test_einsum_layer_refuses_bad_input_positions(inputs, match):
    with pytest.raises(ValueError, match=match):
        cn.nn.Einsum("bi,ikj,bj->bk", sizes={"i": 3, "k": 4, "j": 5}, inputs=inputs)


def test_einsum_layer_counts_its_inputs():
    layer = cn.nn.Einsum("bi,ikj,bj->bk", sizes={"i": 3, "k": 4, "j": 5}, inputs=(0, 2))
    with pytest.raises(ValueError, match="takes 2 input"):
        layer(np.ones((2, 3), np.float32))


def test_einsum_layer_without_bias_accepts_any_output_layout():
    layer = cn.nn.Einsum("...i,ik->k...", sizes={"i": 3, "k": 4}, bias=False, rng=0)
    assert layer(np.ones((2, 3), np.float32)).shape == (4, 2)


def _under_budget(budget, make):
    with cn.memory_budget(budget):
        return make()


@pytest.mark.parametrize("make, error", [
    (lambda g: cn.nn.Einsum("bi,ik->bkk", sizes={"i": 3, "k": 4}, bias=True, rng=g),
     cn.SpecError),
    (lambda g: cn.nn.Einsum("bi,ik->bk", sizes={"i": 3, "k": 4}, weight_names=("w.1",), rng=g),
     ValueError),
    # the second weight is over the budget: the first must not be drawn either
    (lambda g: cn.nn.Einsum("bi,ir,rk->bk", sizes={"i": 3, "r": 2, "k": 10**12}, rng=g),
     cn.MemoryBudgetError),
    # a string is no bool ("no" would read as true)
    (lambda g: cn.nn.Dense(3, 2, bias="no", rng=g), ValueError),
    (lambda g: cn.nn.Conv2d(1, 2, 3, bias="False", rng=g), ValueError),
    (lambda g: cn.nn.CPHead((2, 2, 3), 4, rank=2, bias=1, rng=g), ValueError),
    # float16 weights are drawn in float32: all are checked so before the first draw
    (lambda g: _under_budget(6 * 10**6, lambda: cn.nn.Einsum(
        "bi,ir,rk->bk", sizes={"i": 3, "r": 2, "k": 10**6}, dtype=np.float16, rng=g)),
     cn.MemoryBudgetError),
], ids=["spec", "weight-name", "budget", "dense-bias", "conv-bias", "head-bias", "float16"])
def test_refused_layer_leaves_the_generator_untouched(make, error):
    """A refusal draws nothing from ``rng``."""
    g = np.random.default_rng(0)
    state = g.bit_generator.state
    with pytest.raises(error):
        make(g)
    assert g.bit_generator.state == state


@pytest.mark.parametrize("kwargs, match", [
    ({"inputs": 1.5}, "inputs must be distinct operand positions"),
    ({"inputs": None}, "got None"),
    ({"inputs": True}, "got True"),
    ({"inputs": (0, True)}, r"got \(0, True\)"),
    ({"weight_names": (3,)}, r"weight_names must be 1 distinct names .* got \(3,\)"),
    ({"weight_names": ("",)}, "non-empty strings"),
], ids=str)
def test_einsum_layer_refuses_wrongly_typed_arguments(kwargs, match):
    with pytest.raises(ValueError, match=match):
        cn.nn.Einsum("bi,ik->bk", sizes={"i": 3, "k": 4}, **kwargs)


@pytest.mark.parametrize("call, match", [
    (lambda: nn.ContractHead(4, 10), "in_shape must be three positive ints"),
    (lambda: nn.contraction_weight(np.ones((48, 10)), 8), "in_shape must be three"),
    (lambda: nn.FlattenDense((4, 4, 3), 10, layout=[]), r"unknown layout \[\]"),
    (lambda: nn.flat_weight(np.ones((4, 4, 3, 10)), ["NHWC"]), "unknown layout"),
    (lambda: nn.save_parameters([np.ones(2)], "unused.npz"), "params must be a dict"),
    (lambda: cn.grad(lambda a: cn.sum(a), argnums=np.array([0]))(np.ones(2)), "argnums"),
], ids=["head", "contraction_weight", "layout", "flat_weight", "save", "argnums"])
def test_wrongly_typed_arguments_are_value_errors(call, match):
    with pytest.raises(ValueError, match=match):
        call()


def test_heads_and_losses_take_array_likes():
    head = nn.ContractHead((1, 1, 2), 3, rng=0)
    x = [[[[1.0, 2.0]]]]
    np.testing.assert_allclose(head(x), head(np.array(x, np.float32)))
    np.testing.assert_allclose(nn.flatten_activation(x), [[1.0, 2.0]])
    assert float(nn.mse([1.0, 2.0], [1.0, 1.0])) == 0.5
    np.testing.assert_allclose(float(nn.softmax_cross_entropy([[0.0, 0.0]], [1])), np.log(2))
    assert nn.accuracy([[0.1, 0.9]], [1]) == 1.0
    with pytest.raises(ValueError, match=r"expects input \(B, 1, 1, 2\), got shape \(1, 1, 2\)"):
        head([[[1.0, 2.0]]])


@pytest.mark.parametrize("kwargs, spec", [
    ({}, "b(h+u)(w+v)c,uvck->bhwk"),
    ({"groups": 2}, "b(h+u)(w+v)gc,uvcgk->bhwgk"),
    ({"groups": 4, "out_channels": 4}, "b(h+u)(w+v)c,uvc->bhwc"),
    ({"stride": 2, "dilation": (1, 3)}, "b(2h+u)(2w+3v)c,uvck->bhwk")])
def test_conv2d_shows_the_spec_conv2d_runs(kwargs, spec):
    args = {"in_channels": 4, "out_channels": 8, "kernel_size": 3, **kwargs}
    layer = nn.Conv2d(**args)
    assert layer.spec == spec and f"spec={spec!r}" in repr(layer)


def test_a_model_that_reuses_a_layer_trains_its_tied_weights():
    layer = nn.Dense(3, 3, rng=3)  # a seed whose ReLU passes something: no zero gradient
    model = nn.Sequential(layer, nn.ReLU(), layer)
    params = model.parameters()
    assert params["0.weight"] is params["2.weight"]
    x = np.random.default_rng(1).standard_normal((4, 3)).astype(np.float32)
    grads = cn.grad(lambda p: cn.sum(model.apply(p, x) ** 2))(params)
    assert all(np.all(g != 0) for g in grads.values())
    alone = {"weight": params["0.weight"].copy(), "bias": params["0.bias"].copy()}
    opt, alone_opt = cn.optim.Adam(params, lr=0.1), cn.optim.Adam(alone, lr=0.1)
    for _ in range(2):  # Adam is not linear in the gradient: two updates would differ
        opt.step(grads)
        alone_opt.step({k: grads[f"0.{k}"] + grads[f"2.{k}"] for k in alone})
    np.testing.assert_allclose(params["0.weight"], alone["weight"], rtol=1e-6)
    np.testing.assert_allclose(params["2.bias"], alone["bias"], rtol=1e-6)


def test_positions_and_shapes_may_be_any_sequence_of_ints():
    spec, sizes = "bi,ik,bk->b", {"i": 2, "k": 3}
    assert nn.Einsum(spec, sizes=sizes, inputs=np.array([0, 2])).inputs == (0, 2)
    assert nn.Einsum("bi,ik->bk", sizes=sizes, inputs=range(1)).inputs == (0,)
    assert nn.Einsum("bi,ik->bk", sizes=sizes, inputs=np.array(0)).inputs == (0,)
    assert nn.ContractHead(range(1, 4), 5).in_shape == (1, 2, 3)
    assert nn.ContractHead(np.array([1, 2, 3]), 5).in_shape == (1, 2, 3)
    with pytest.raises(ValueError, match="in_shape must be three positive ints"):
        nn.ContractHead("abc", 5)
    for nested in (np.array([[0, 2]]), [[0, 2]], ([0], [2])):
        with pytest.raises(ValueError, match=r"inputs must be distinct operand positions .* got"):
            nn.Einsum(spec, sizes=sizes, inputs=nested)
    with pytest.raises(ValueError, match=r"got array\(\[\[0, 2\]\]\)"):  # as given
        nn.Einsum(spec, sizes=sizes, inputs=np.array([[0, 2]]))


def test_set_parameters_checks_every_array_before_writing_any():
    net = small_net()
    params = net.parameters()
    before = {k: v.copy() for k, v in params.items()}
    new = randomize(net, seed=3)
    params["3.bias"].flags.writeable = False
    with pytest.raises(ValueError, match="'3.bias' of the module is read-only"):
        net.set_parameters(new)
    params["3.bias"].flags.writeable = True

    class ForeignDtype:  # another library's tensor: a shape, and a dtype numpy cannot read
        shape, dtype = new["3.bias"].shape, "torch.float32"
    with pytest.raises(ValueError, match="'3.bias' has dtype 'torch.float32'"):
        net.set_parameters({**new, "3.bias": ForeignDtype()})
    for k in before:
        np.testing.assert_array_equal(params[k], before[k])


def test_set_parameters_can_swap_two_of_the_modules_own_arrays():
    net = nn.Sequential(nn.Dense(3, 3, rng=0), nn.Dense(3, 3, rng=1))
    params = net.parameters()
    first, second = params["0.weight"].copy(), params["1.weight"].copy()
    net.set_parameters({**params, "0.weight": params["1.weight"], "1.weight": params["0.weight"]})
    np.testing.assert_array_equal(net.parameters()["0.weight"], second)
    np.testing.assert_array_equal(net.parameters()["1.weight"], first)


@pytest.mark.parametrize("register, name, match", [
    ("add_parameter", 5, "parameter name 5 is of type int, not str"),
    ("add_module", 3, "module name 3 is of type int, not str"),
    ("add_parameter", "", "parameter name '' is empty or dotted"),
    ("add_parameter", "a.b", "parameter name 'a.b' is empty or dotted"),
    ("add_module", "w", "module name 'w' is already used"),
])
def test_a_bad_name_is_refused_by_the_rule_it_breaks(register, name, match):
    module = nn.Module()
    module.add_parameter("w", np.ones(2))
    thing = np.ones(2) if register == "add_parameter" else nn.ReLU()
    with pytest.raises(ValueError, match=match):
        getattr(module, register)(name, thing)


def test_an_array_held_twice_counts_once():
    layer = nn.Dense(4, 4, rng=0)
    assert layer.num_parameters() == 20
    assert nn.Sequential(layer, nn.ReLU(), layer).num_parameters() == 20
    module, array = nn.Module(), np.ones(3)
    module.add_parameter("w", array)
    module.add_parameter("v", array[...])  # another object over the same memory
    module.add_parameter("u", array[::-1])  # the same memory seen otherwise: its own
    assert module.num_parameters() == 6


def test_flat_and_contraction_weights_are_new_arrays():
    w = rng().random((2, 2, 3, 4))
    for layout in ("NHWC", "NCHW"):
        flat = nn.flat_weight(w, layout)
        assert not np.shares_memory(flat, w) and flat.flags.c_contiguous
        back = nn.contraction_weight(flat, (2, 2, 3), layout)
        assert not np.shares_memory(back, flat) and back.flags.c_contiguous
        np.testing.assert_array_equal(back, w)
    head = nn.FlattenDense((2, 2, 3), 4, rng=0)
    head.full_weight()[...] = 0
    assert head.parameters()["weight"].any()


def test_a_0d_parameter_survives_save_and_load(tmp_path):
    layer = nn.Einsum("bi,i->b", sizes={"i": 3}, bias=True, rng=0)
    assert layer.parameters()["bias"].shape == ()
    layer.save(tmp_path / "m.npz")
    assert layer.load(tmp_path / "m.npz") is layer
    nn.save_parameters({"s": np.array(3.5, np.float32)}, tmp_path / "s.npz")
    loaded = nn.load_parameters(tmp_path / "s.npz")["s"]
    assert loaded.shape == () and loaded.dtype == np.float32 and loaded == 3.5


def test_a_damaged_compressed_archive_or_a_directory_is_a_value_error(tmp_path):
    path = tmp_path / "zl.npz"
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as archive:
        archive.writestr("w.npy", b"\x93NUMPY" + bytes(range(256)) * 40)
    raw = bytearray(path.read_bytes())
    raw[35] = 0xFF  # the first byte of the deflated stream: an invalid block type
    path.write_bytes(bytes(raw))
    with pytest.raises(ValueError, match=r"zl.npz'?: member 'w.npy' cannot be read"):
        nn.load_parameters(path)
    header = b"{'descr': '<f8', 'fortran_order': False, 'shape': (3, }"
    header += b" " * (53 - len(header)) + b"\n"  # a header numpy cannot parse
    with zipfile.ZipFile(tmp_path / "tok.npz", "w") as archive:
        archive.writestr("w.npy", b"\x93NUMPY\x01\x00" + len(header).to_bytes(2, "little")
                         + header + b"\0" * 24)
    with pytest.raises(ValueError, match="member 'w.npy' cannot be read"):
        nn.load_parameters(tmp_path / "tok.npz")
    with pytest.raises(ValueError, match="is a directory"):
        nn.load_parameters(tmp_path)


def test_set_parameters_refuses_two_values_for_one_tied_array():
    layer = nn.Dense(2, 2, rng=0)
    tied = nn.Sequential(layer, nn.ReLU(), layer)
    before = {k: v.copy() for k, v in tied.parameters().items()}
    new = {k: v + 1 for k, v in before.items()}
    tied.set_parameters(new)  # the same values under both names: one array, written
    np.testing.assert_array_equal(layer.parameters()["weight"], new["0.weight"])
    new["2.weight"] = new["2.weight"] + 1
    with pytest.raises(ValueError, match="parameters '0.weight' and '2.weight' are one tied "
                                         "array .* different values"):
        tied.set_parameters(new)
    np.testing.assert_array_equal(layer.parameters()["weight"], new["0.weight"])


def test_set_parameters_and_load_take_the_other_byte_order(tmp_path):
    d = nn.Dense(2, 3, rng=0)
    swapped = {"weight": np.arange(6, dtype=">f4").reshape(2, 3), "bias": np.ones(3, ">f4")}
    d.set_parameters(swapped)
    assert d.parameters()["weight"].dtype == np.dtype("=f4")
    np.testing.assert_array_equal(d.parameters()["weight"], np.arange(6).reshape(2, 3))
    np.savez(tmp_path / "swapped.npz", **{k: v + 1 for k, v in swapped.items()})
    d.load(tmp_path / "swapped.npz")
    np.testing.assert_array_equal(d.parameters()["bias"], 2)
    with pytest.raises(ValueError, match="'weight' has dtype >f8 but the module expects float32"):
        d.set_parameters({**swapped, "weight": swapped["weight"].astype(">f8")})


def test_a_module_holding_the_other_byte_order_takes_its_own_dtype():
    m = nn.Module()
    m.add_parameter("w", np.ones(3, ">f4"))
    m.set_parameters({"w": np.full(3, 2, ">f4")})
    m.set_parameters({"w": np.full(3, 3, "<f4")})
    np.testing.assert_array_equal(m.parameters()["w"], 3)


def test_set_parameters_ties_views_of_one_array_as_num_parameters_does():
    m = nn.Module()
    w = np.zeros(3)
    m.add_parameter("a", w)
    m.add_parameter("b", w.view())  # the same elements under another array object
    assert m.num_parameters() == 3
    with pytest.raises(ValueError, match="'a' and 'b' are one tied array"):
        m.set_parameters({"a": np.ones(3), "b": np.full(3, 2.0)})
    np.testing.assert_array_equal(w, 0)


@pytest.mark.parametrize("dtype", [np.int64, np.complex128, np.bool_])
def test_apply_refuses_parameters_that_are_not_real_floats(dtype):
    d = nn.Dense(2, 3, rng=0)
    x = np.ones((1, 2), np.float32)
    with pytest.raises(ValueError, match=f"parameter 'weight' has dtype {np.dtype(dtype)}; "
                                         f"parameters must be floating point"):
        d.apply({"weight": np.ones((2, 3), dtype), "bias": np.zeros(3)}, x)
    wide = {k: v.astype(np.float64) for k, v in d.parameters().items()}
    assert d.apply(wide, x).dtype == np.float64  # a float64 check of a float32 model


def test_set_parameters_checks_values_as_numpy_reads_them():
    net = nn.Sequential(nn.Dense(3, 3, rng=0), nn.ReLU(), nn.Dense(3, 3, rng=1))
    params = net.parameters()
    before = {k: v.copy() for k, v in params.items()}

    class ClaimsOneShape:  # says (3, 3), reads as (2, 2)
        shape, dtype = (3, 3), np.dtype(np.float32)

        def __array__(self, dtype=None, copy=None):
            return np.ones((2, 2), np.float32)
    with pytest.raises(ValueError, match=r"'2.weight' has shape \(2, 2\)"):
        net.set_parameters({**{k: v + 1 for k, v in params.items()}, "2.weight": ClaimsOneShape()})
    for k in before:
        np.testing.assert_array_equal(params[k], before[k])


def test_a_central_directory_missing_members_is_a_value_error(tmp_path):
    # a damaged comment length in one directory entry swallows the entries after it:
    # zipfile then lists fewer members, which the end record's count contradicts
    nn.save_parameters({"a": np.ones(2), "b": np.zeros(3), "c": np.ones(1)}, tmp_path / "p.npz")
    raw = bytearray((tmp_path / "p.npz").read_bytes())
    entry = raw.index(b"PK\x01\x02")
    raw[entry + 32:entry + 34] = (0x2000).to_bytes(2, "little")  # its comment length
    (tmp_path / "p.npz").write_bytes(bytes(raw))
    with pytest.raises(ValueError, match="end record lists 3 members but its directory holds 1"):
        nn.load_parameters(tmp_path / "p.npz")


def test_a_member_flagged_as_encrypted_is_a_value_error(tmp_path):
    nn.save_parameters({"w": np.ones(4, np.float32)}, tmp_path / "w.npz")
    raw = bytearray((tmp_path / "w.npz").read_bytes())
    raw[raw.rfind(b"PK\x01\x02") + 8] |= 1  # the directory entry's "encrypted" flag bit
    (tmp_path / "w.npz").write_bytes(bytes(raw))
    with pytest.raises(ValueError, match="member 'w.npy' cannot be read: it is marked as "
                                         "encrypted"):
        nn.load_parameters(tmp_path / "w.npz")


def test_a_bytes_path_loads_as_it_saves(tmp_path):
    path = os.fsencode(tmp_path / "b.npz")
    nn.save_parameters({"w": np.arange(3.0)}, path)
    assert nn.load_parameters(path)["w"].tolist() == [0.0, 1.0, 2.0]
    with pytest.raises(FileNotFoundError):
        nn.load_parameters(os.fsencode(tmp_path / "missing.npz"))
    model = nn.Dense(2, 3, rng=0)
    with pytest.raises(ValueError, match=r"cannot load '.*b\.npz' into Dense"):
        model.load(path)


def test_a_damaged_central_directory_is_a_value_error(tmp_path):
    nn.save_parameters({"a": np.ones(3)}, tmp_path / "v.npz")
    raw = bytearray((tmp_path / "v.npz").read_bytes())
    raw[raw.index(b"PK\x01\x02") + 6] = 0xFF  # "version needed to extract": unknown
    (tmp_path / "v.npz").write_bytes(bytes(raw))
    with pytest.raises(ValueError, match="v.npz' is a damaged or unsupported .npz archive"):
        nn.load_parameters(tmp_path / "v.npz")


def test_a_registered_sub_module_reads_back_and_an_unregistered_one_is_refused():
    class TwoLayers(nn.Module):
        def __init__(self):
            super().__init__()
            self.first = self.add_module("first", nn.Dense(4, 3, rng=0))  # the idiom
            self.add_module("second", nn.Dense(3, 2, rng=1))  # an attribute by registration

        def forward(self, params, x):
            hidden = self.first.forward(self.child_params(params, "first"), x)
            return self.second.forward(self.child_params(params, "second"), cn.relu(hidden))
    model = TwoLayers()
    assert sorted(model.parameters()) == ["first.bias", "first.weight", "second.bias",
                                          "second.weight"]
    x = np.ones((5, 4))
    np.testing.assert_allclose(model(x), model.second(cn.relu(model.first(x))))
    # a plain assignment would leave the layer's parameters out: refused, nothing changed
    for name, layer in (("third", nn.Dense(2, 2, rng=2)), ("first", nn.Dense(4, 3, rng=3)),
                        ("alias", model.first)):
        with pytest.raises(ValueError, match=rf"assigning a Module to '{name}' would leave "
                                             rf"its parameters out: register it"):
            setattr(model, name, layer)
    assert sorted(model._children) == ["first", "second"] and not hasattr(model, "third")
    model._owner = TwoLayers()  # a reference that is no layer of this one
    assert sorted(model.parameters()) == ["first.bias", "first.weight", "second.bias",
                                          "second.weight"]
    with pytest.raises(AttributeError, match="'TwoLayers' object has no attribute 'missing'"):
        model.missing  # noqa: B018
    dense = nn.Dense(2, 2, rng=0)
    dense.add_module("spec", nn.ReLU())  # another attribute has that name: it stays
    assert isinstance(dense.spec, str)


def test_modules_in_a_container_are_refused_and_a_missing_super_init_is_named():
    class Blocks(nn.Module):
        def __init__(self, blocks):
            super().__init__()
            self.blocks = blocks

        def forward(self, params, x):
            return x
    layers = [nn.Dense(4, 4, rng=0), nn.Dense(4, 4, rng=1)]
    for container in (layers, tuple(layers), {"a": layers[0]}, [[layers[0]]], {"a": [layers]}):
        with pytest.raises(ValueError, match=rf"assigning a container \({type(container).__name__}"
                                             rf"\) holding Modules to 'blocks' would leave "
                                             rf"their parameters out: register them"):
            Blocks(container)
    assert Blocks([1, 2]).blocks == [1, 2]  # a list of anything else is no layer
    model = Blocks([])
    first = model.add_module("first", layers[0])
    model.registered = [first]  # a reference to a registered layer leaves nothing out
    assert sorted(model.parameters()) == ["first.bias", "first.weight"]

    class Forgetful(nn.Module):
        def __init__(self):
            self.add_module("fc", nn.Dense(2, 2, rng=0))
    with pytest.raises(TypeError, match=r"Forgetful.__init__ must call super\(\).__init__\(\) "
                                        r"before registering module 'fc'"):
        Forgetful()


def test_a_slice_of_a_sequential_is_a_sequential_sharing_its_arrays():
    model = nn.Sequential(nn.Dense(4, 3, rng=0), nn.ReLU(), nn.Dense(3, 2, rng=1))
    features = model[:2]
    assert isinstance(features, nn.Sequential) and len(features) == 2
    assert features.parameters()["0.weight"] is model.parameters()["0.weight"]
    x = np.ones((5, 4))
    np.testing.assert_allclose(model[2](features(x)), model(x))
    assert isinstance(model[-1], nn.Dense)
