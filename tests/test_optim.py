"""SGD and Adam against hand-computed steps (and PyTorch when installed)."""
from __future__ import annotations

import math
import re

import numpy as np
import pytest

from contractnet import optim
from contractnet.nn import Dense

#: Each optimizer, built on a parameter dict: the cases every contract test runs.
OPTIMIZERS = [lambda p: optim.SGD(p, lr=0.1, momentum=0.9), lambda p: optim.Adam(p, lr=0.1)]


def test_sgd_plain_step_in_place():
    w = np.array([1.0, -2.0], np.float32)
    params = {"w": w}
    optim.SGD(params, lr=0.1).step({"w": np.array([0.5, 1.0], np.float32)})
    assert params["w"] is w and w.dtype == np.float32
    np.testing.assert_allclose(w, [1.0 - 0.05, -2.0 - 0.1], rtol=1e-7)


def test_sgd_momentum_and_weight_decay_by_hand():
    p = {"w": np.array([2.0])}
    opt = optim.SGD(p, lr=0.1, momentum=0.5, weight_decay=0.1)
    # step 1: g = 1 + 0.1*2 = 1.2, v = 1.2, w = 2 - 0.12 = 1.88
    opt.step({"w": np.array([1.0])})
    np.testing.assert_allclose(p["w"], [1.88])
    # step 2: g = 1 + 0.188 = 1.188, v = 0.6 + 1.188 = 1.788, w = 1.88 - 0.1788
    opt.step({"w": np.array([1.0])})
    np.testing.assert_allclose(p["w"], [1.88 - 0.1788])


def test_sgd_nesterov_by_hand():
    p = {"w": np.array([0.0])}
    opt = optim.SGD(p, lr=1.0, momentum=0.5, nesterov=True)
    opt.step({"w": np.array([1.0])})  # v = 1, step g + 0.5 v = 1.5
    opt.step({"w": np.array([1.0])})  # v = 1.5, step 1 + 0.75 = 1.75
    np.testing.assert_allclose(p["w"], [-3.25])


def adam_by_hand(w, grads, lr, b1, b2, eps, weight_decay=0.0):
    m = v = 0.0
    for t, g in enumerate(grads, start=1):
        g = g + weight_decay * w  # L2 added to the gradient, as PyTorch's Adam does
        m = b1 * m + (1 - b1) * g
        v = b2 * v + (1 - b2) * g * g
        w = w - lr * (m / (1 - b1 ** t)) / (math.sqrt(v / (1 - b2 ** t)) + eps)
    return w


def test_adam_three_steps_by_hand():
    grads = [0.3, -1.2, 0.7]
    p = {"w": np.array([0.5, 0.5])}
    opt = optim.Adam(p, lr=0.01, betas=(0.8, 0.9), eps=1e-3)
    for g in grads:
        opt.step({"w": np.array([g, 2 * g])})
    for w, scale in zip(p["w"], (1, 2)):
        want = adam_by_hand(0.5, [scale * g for g in grads], 0.01, 0.8, 0.9, 1e-3)
        np.testing.assert_allclose(w, want, rtol=1e-12)
    assert opt.steps == 3


def test_adam_weight_decay_by_hand():
    grads = [0.3, -1.2, 0.7]
    p = {"w": np.array([0.5, -2.0])}
    opt = optim.Adam(p, lr=0.01, betas=(0.8, 0.9), eps=1e-3, weight_decay=0.5)
    for g in grads:
        opt.step({"w": np.array([g, g])})
    for w, start in zip(p["w"], (0.5, -2.0)):
        want = adam_by_hand(start, grads, 0.01, 0.8, 0.9, 1e-3, weight_decay=0.5)
        np.testing.assert_allclose(w, want, rtol=1e-12)
    assert p["w"][0] != adam_by_hand(0.5, grads, 0.01, 0.8, 0.9, 1e-3)  # the decay shows


def test_adam_preserves_float32_and_casts_gradients():
    p = {"w": np.ones((2, 2), np.float32)}
    opt = optim.Adam(p, lr=0.1)
    opt.step({"w": np.full((2, 2), 0.5)})  # float64 gradient
    assert p["w"].dtype == np.float32
    assert opt.state["w"]["m"].dtype == np.float32
    np.testing.assert_allclose(p["w"], 0.9, rtol=1e-6)


def test_adam_refuses_an_eps_that_is_zero_in_a_parameters_dtype():
    # 1e-8 is 0 in float16: a zero gradient would step the parameter to 0 / 0
    p = {"a": np.ones(2, np.float32), "h": np.ones(2, np.float16)}
    with pytest.raises(ValueError, match=r"eps=1e-08 is 0 in float16 \(parameter 'h'\)"):
        optim.Adam(p)
    opt = optim.Adam(p, eps=1e-4)
    opt.step({"a": np.zeros(2), "h": np.zeros(2)})
    opt.step({"a": np.ones(2), "h": np.full(2, 1e-4)})
    assert np.isfinite(p["h"]).all() and p["h"].dtype == np.float16


@pytest.mark.parametrize("make", [lambda p: optim.SGD(p, lr=1e-50),
                                  lambda p: optim.Adam(p, lr=1e-50)])
def test_an_lr_that_is_0_in_a_parameters_dtype_is_refused(make):
    p = {"a": np.ones(2), "w": np.ones(2, np.float32)}  # 1e-50 is a float64, not a float32
    with pytest.raises(ValueError, match=r"lr=1e-50 is 0 in float32 \(parameter 'w'\): no "
                                         r"step would change it"):
        make(p)
    make({"a": np.ones(2)})  # float64 holds it


@pytest.mark.parametrize("dtype, big", [(np.float16, 300.0), (np.float32, 2e19)])
def test_adam_keeps_its_second_moment_finite_past_the_square_root_of_the_dtypes_max(dtype, big):
    # big * big overflows the dtype; (1 - b2) * big * big does not
    p = {"w": np.array([1.0], dtype)}
    opt = optim.Adam(p, lr=0.1, eps=1e-4)
    opt.step({"w": np.array([big], dtype)})
    v = opt.state["w"]["v"]
    assert np.isfinite(v).all() and v.dtype == dtype
    np.testing.assert_allclose(v, [0.001 * big * big], rtol=2e-3)
    before = p["w"].copy()
    opt.step({"w": np.ones(1, dtype)})
    assert p["w"][0] < before[0]  # still moving: a v of inf would freeze it


@pytest.mark.parametrize("make, match", [
    (lambda p: optim.SGD(p, lr=1e39), r"lr=1e\+39 is not finite in float32 \(parameter 'f'\)"),
    (lambda p: optim.SGD({"h": np.ones(2, np.float16)}, lr=1e5), "lr=100000 is not finite in "
                                                                "float16"),
    (lambda p: optim.SGD(p, lr=0.1, weight_decay=1e39), "weight_decay=1e\\+39 is not finite"),
    (lambda p: optim.Adam(p, eps=1e39), "eps=1e\\+39 is not finite in float32"),
    (lambda p: optim.Adam(p, lr=1e39), "lr=1e\\+39 is not finite in float32"),
])
def test_a_rate_infinite_in_a_parameters_dtype_is_refused(make, match):
    params = {"d": np.ones(2), "f": np.ones(2, np.float32)}
    with pytest.raises(ValueError, match=match):
        make(params)


@pytest.mark.parametrize("make", OPTIMIZERS, ids=["sgd", "adam"])
def test_step_checks_everything_before_changing_anything(make):
    p = {"a": np.ones(2), "b": np.ones(3)}
    opt = make(p)
    with pytest.raises(ValueError, match=r"missing \['b'\]"):
        opt.step({"a": np.ones(2)})
    with pytest.raises(ValueError, match=r"unexpected \['c'\]"):
        opt.step({"a": np.ones(2), "b": np.ones(3), "c": np.ones(1)})
    with pytest.raises(ValueError, match=r"gradient 'b' has shape \(2,\)"):
        opt.step({"a": np.ones(2), "b": np.ones(2)})
    with pytest.raises(ValueError, match="must be a dict"):
        opt.step([np.ones(2), np.ones(3)])
    for bad in (np.array([None] * 3), np.array(["2020-01-01"] * 3, "M8[D]"),
                np.array(["a", "b", "c"]), np.full(3, 1j)):
        with pytest.raises(ValueError, match=re.escape(f"gradient 'b' has dtype {bad.dtype}")):
            opt.step({"a": np.ones(2), "b": bad})
    p["b"].flags.writeable = False  # after the optimizer was built
    with pytest.raises(ValueError, match="'b' has become read-only"):
        opt.step({"a": np.ones(2), "b": np.ones(3)})
    np.testing.assert_array_equal(p["a"], np.ones(2))
    np.testing.assert_array_equal(p["b"], np.ones(3))
    assert opt.steps == 0


@pytest.mark.filterwarnings("error")  # the float32 cast of 1e300 must not warn either
@pytest.mark.parametrize("make", OPTIMIZERS, ids=["sgd", "adam"])
@pytest.mark.parametrize("bad, holds", [
    ([1.0, np.nan, np.inf], "1 nan and 1 infinite value"), ([np.nan, 0, np.nan], "2 nan value"),
    ([1e300, 0.0, 0.0], "1 infinite value")])  # finite in float64, inf in float32
def test_a_gradient_that_is_not_finite_changes_nothing(make, bad, holds):
    p = {"a": np.ones(2, np.float32), "b": np.ones(3, np.float32)}
    opt = make(p)
    opt.step({"a": np.ones(2), "b": np.ones(3)})
    before = {k: v.copy() for k, v in p.items()}
    state = {k: {s: v.copy() for s, v in d.items()} for k, d in opt.state.items()}
    with pytest.raises(optim.NonFiniteGradientError,
                       match=f"gradient 'b' holds {holds}.* in the parameter's "
                                         f"dtype float32; no parameter was updated"):
        opt.step({"a": np.ones(2), "b": np.array(bad)})
    for k in p:
        np.testing.assert_array_equal(p[k], before[k])
        for s, v in opt.state[k].items():
            np.testing.assert_array_equal(v, state[k][s])
    assert opt.steps == 1


@pytest.mark.filterwarnings("error")
@pytest.mark.parametrize("make", OPTIMIZERS, ids=["sgd", "adam"])
def test_a_tied_gradient_that_sums_past_the_dtype_changes_nothing(make):
    w = np.ones(2, np.float32)
    p = {"first": w, "other": np.ones(1, np.float32), "again": w}
    opt = make(p)
    big = np.full(2, 3e38, np.float32)  # finite alone; inf once the two names are summed
    with pytest.raises(optim.NonFiniteGradientError,
                       match=r"the summed gradient of tied 'first', 'again' holds "
                                         r"2 infinite value\(s\) in the parameter's dtype "
                                         r"float32; no parameter was updated"):
        opt.step({"first": big, "other": np.ones(1), "again": big})
    np.testing.assert_array_equal(w, 1)
    assert opt.steps == 0 and not any(opt.state[k] for k in opt.state)


@pytest.mark.parametrize("make", OPTIMIZERS, ids=["sgd", "adam"])
def test_a_tied_parameter_takes_the_sum_of_its_gradients_once(make):
    """A layer used twice appears under two names: one array, one update, one state."""
    rng = np.random.default_rng(0)
    tied = rng.standard_normal(3)
    alone = tied.copy()
    tied_opt = make({"first": tied, "other": np.ones(2), "second": tied})
    alone_opt = make({"w": alone, "other": np.ones(2)})
    assert tied_opt.tied == {"second": "first"} and "second" not in tied_opt.state
    for _ in range(3):
        g1, g2 = rng.standard_normal(3), rng.standard_normal(3)
        tied_opt.step({"first": g1, "second": g2, "other": np.zeros(2)})
        alone_opt.step({"w": g1 + g2, "other": np.zeros(2)})
    np.testing.assert_allclose(tied, alone, rtol=1e-13)


def test_arrays_of_one_buffer_are_tied_whatever_objects_own_it():
    """Two frombuffer views of one buffer have different owners but one memory."""
    buffer = bytearray(np.zeros(3).tobytes())
    w1, w2, w3 = (np.frombuffer(buffer) for _ in range(3))
    opt = optim.Adam({"w3": w3, "w1": w1, "other": np.ones(2), "w2": w2}, lr=0.1)
    assert opt.tied == {"w1": "w3", "w2": "w3"} and set(opt.state) == {"w3", "other"}
    opt.step({"w1": np.ones(3), "w2": np.ones(3), "w3": np.ones(3), "other": np.zeros(2)})
    np.testing.assert_allclose(w1, -0.1)  # Adam's first step is lr whatever the gradient
    with pytest.raises(ValueError, match="'a' and 'b' overlap in memory"):
        optim.SGD({"a": np.frombuffer(buffer)[:2], "b": np.frombuffer(buffer)[1:]}, lr=0.1)


def test_many_names_for_one_array_and_names_that_are_not_strings():
    x = np.zeros(4)
    opt = optim.SGD({**{f"t{i}": x for i in range(2000)}, 0: x}, lr=0.1)  # no pair by pair
    assert len(opt.tied) == 2000 and set(opt.state) == {"t0"}


def test_parameters_that_only_partly_overlap_are_refused():
    x = np.ones(4)
    with pytest.raises(ValueError, match="parameters 'a' and 'c' overlap in memory"):
        optim.Adam({"a": x[:3], "b": np.ones(2), "c": x[2:]})
    with pytest.raises(ValueError, match="overlap in memory"):
        optim.SGD({"a": x, "b": x[::-1]}, lr=0.1)  # the same elements, laid out otherwise
    optim.SGD({"even": x[::2], "odd": x[1::2]}, lr=0.1)  # interleaved, disjoint: fine


@pytest.mark.parametrize("make, match", [
    (lambda p: optim.SGD(p, lr=0.0), "lr"),
    (lambda p: optim.SGD(p, lr="abc"), "lr must be a real number, got 'abc'"),
    (lambda p: optim.SGD(p, lr=None), "lr must be a real number, got None"),
    (lambda p: optim.SGD(p, lr=True), "lr must be a real number, got True"),
    (lambda p: optim.SGD(p, lr=np.array(True)), "lr must be a real number, got array\\(True\\)"),
    (lambda p: optim.SGD(p, lr=np.timedelta64(5, "ns")), "lr must be a real number"),
    (lambda p: optim.SGD(p, lr=np.complex128(0.1 + 0.5j)), "lr must be a real number"),
    (lambda p: optim.Adam(p, betas=(0.9, "x")), r"betas\[1\] must be a real number"),
    (lambda p: optim.SGD(p, lr=0.1, momentum=0.9, nesterov="no"), "nesterov must be True or False"),
    (lambda p: optim.SGD(p, lr=0.1, momentum=1.0), "momentum"),
    (lambda p: optim.SGD(p, lr=0.1, nesterov=True), "nesterov"),
    (lambda p: optim.SGD(p, lr=0.1, weight_decay=-1), "weight_decay"),
    (lambda p: optim.Adam(p, betas=(0.9,)), "betas"),
    (lambda p: optim.Adam(p, betas=(0.9, 1.0)), r"betas\[1\]"),
    (lambda p: optim.Adam(p, eps=0), "eps"),
    (lambda p: optim.SGD(p, lr=10**400), "lr is an integer too large for a float"),
    (lambda p: optim.Adam(p, eps=10**400), "eps is an integer too large for a float"),
    (lambda p: optim.SGD({"w": np.ones(2, np.int64)}, lr=0.1), "floating"),
    (lambda p: optim.SGD({}, lr=0.1), "non-empty"),
    (lambda p: optim.SGD([p["w"]], lr=0.1), "non-empty dict of name -> ndarray, got list$"),
    (lambda p: optim.Adam(Dense(2, 1)), "got Dense; pass its .parameters()"),
])
def test_bad_hyper_parameters_and_params_are_refused(make, match):
    with pytest.raises(ValueError, match=match):
        make({"w": np.ones(2)})


def test_an_optimizer_shows_its_settings():
    params = {"w": np.ones(2), "b": np.ones(1)}
    assert repr(optim.SGD(params, lr=0.1, momentum=0.9)) == \
        "SGD(2 parameter(s), lr=0.1, momentum=0.9, weight_decay=0.0, nesterov=False)"
    assert repr(optim.Adam(params, lr=0.01, betas=(0.8, 0.9))) == \
        "Adam(2 parameter(s), lr=0.01, betas=(0.8, 0.9), eps=1e-08, weight_decay=0.0)"
    tied = {"w": params["w"], "again": params["w"], "b": params["b"]}  # one array, two names
    assert repr(optim.SGD(tied, lr=0.1)).startswith("SGD(2 parameter(s), lr=0.1")


def test_read_only_params_are_refused():
    w = np.ones(2)
    w.flags.writeable = False
    with pytest.raises(ValueError, match="read-only"):
        optim.SGD({"w": w}, lr=0.1)


@pytest.mark.parametrize("ours, theirs", [
    (lambda p: optim.SGD(p, lr=0.1, momentum=0.9, weight_decay=0.01),
     lambda t, torch: torch.optim.SGD([t], lr=0.1, momentum=0.9, weight_decay=0.01)),
    (lambda p: optim.Adam(p, lr=0.05, weight_decay=0.01),
     lambda t, torch: torch.optim.Adam([t], lr=0.05, weight_decay=0.01)),
])
def test_matches_pytorch_over_several_steps(ours, theirs):
    torch = pytest.importorskip("torch")
    g = np.random.default_rng(0)
    w0, grads = g.standard_normal(4), g.standard_normal((5, 4))
    p = {"w": w0.copy()}
    opt = ours(p)
    t = torch.tensor(w0, requires_grad=True)
    topt = theirs(t, torch)
    for grad in grads:
        opt.step({"w": grad})
        t.grad = torch.tensor(grad)
        topt.step()
    np.testing.assert_allclose(p["w"], t.detach().numpy(), rtol=1e-10, atol=1e-12)


def test_sgd_momentum_builds_up_on_a_0d_parameter():
    """A 0-d parameter's gradient plus weight decay is a numpy scalar: the
    velocity must still be an array updated in place."""
    scalar, vector = {"w": np.zeros(())}, {"w": np.zeros(1)}
    opts = [optim.SGD(p, lr=1.0, momentum=0.9, weight_decay=0.1) for p in (scalar, vector)]
    for _ in range(3):
        opts[0].step({"w": np.ones(())})
        opts[1].step({"w": np.ones(1)})
    assert scalar["w"].shape == ()
    np.testing.assert_allclose(scalar["w"], vector["w"][0], rtol=1e-15)


def test_a_ragged_gradient_is_refused_by_name():
    p = {"a": np.zeros(2), "b": np.zeros((2, 2))}
    with pytest.raises(ValueError, match="gradient 'b' is not an array"):
        optim.SGD(p, lr=0.1).step({"a": np.ones(2), "b": [[1.0], [1.0, 2.0]]})
    assert not p["a"].any()
