"""check_grads: passes correct gradients, catches wrong ones (also where only
float32 is wrong, or the function's values are tiny), refuses bad settings."""
from __future__ import annotations

import re

import numpy as np
import pytest

import contractnet as cn


def _rng(seed=0):
    return np.random.default_rng(seed)


def test_check_grads_passes_on_correct_gradients():
    x, w = _rng().standard_normal((2, 3)), _rng(1).standard_normal((3, 4))
    cn.check_grads(lambda a, b: cn.tanh(cn.einsum("ij,jk->ik", a, b)), x, w)


def test_check_grads_catches_a_wrong_gradient():
    # the second term escapes tracing through .value: vjp misses its gradient
    x = _rng().standard_normal((3,)) + 2.0
    fn = lambda a: cn.einsum("i->", a) + np.sum(getattr(a, "value", a) ** 2)  # noqa: E731
    with pytest.raises(AssertionError, match="finite difference"):
        cn.check_grads(fn, x)


def test_check_grads_passes_complex_and_mixed_primals():
    z = np.array([0.3 + 0.7j, -1.2 + 0.4j])
    x = np.array([1.0, 2.0])
    cn.check_grads(lambda a: cn.sum(cn.exp(a)), z)
    cn.check_grads(lambda a: cn.einsum("i,i->", a, np.array([1 + 2j, 3j])), x)
    cn.check_grads(lambda a, b: cn.einsum("i,i->i", a, b), x, z)


@pytest.mark.parametrize("wrong", [lambda g, y: g * np.conj(y),
                                   lambda g, y: g * (y.real + 2j * y.imag)],
                         ids=["conjugated", "wrong-imaginary-part"])
def test_check_grads_catches_a_wrong_complex_gradient(monkeypatch, wrong):
    from contractnet import autodiff, ops
    monkeypatch.setitem(autodiff.VJP_RULES, ops.exp, lambda n, g, y, a: wrong(g, y))
    with pytest.raises(AssertionError, match="finite difference"):
        cn.check_grads(lambda a: cn.sum(cn.exp(a)), np.array([0.3 + 0.7j, -1.2 + 0.4j]))


def test_check_grads_passes_a_correct_function_of_large_inputs():
    """The step grows with the primal: at 1e6 a fixed step of 1e-6 is lost in rounding."""
    cn.check_grads(lambda a: a * a, np.array([1e6, 2e6, 3e6]))
    cn.check_grads(lambda a: cn.sum(cn.exp(a / 1e7)), np.array([-4e7, 1e7]))


@pytest.mark.parametrize("fn, x", [
    (cn.log, np.geomspace(1e-3, 1e3, 10)),
    (cn.log, np.array([1e6, 1e-3])),
    (cn.relu, np.array([100.0, 1e-5])),
    (cn.tanh, np.array([1e6, 0.5])),
    (lambda a: cn.sum(a * a * a), np.zeros(3)),  # a zero gradient, a third derivative
    (lambda a: cn.logsumexp(a, axis=1) - cn.max(a, axis=1), 1e3 * _rng(2).standard_normal((2, 4))),
], ids=["log-wide", "log-two-scales", "relu-two-scales", "tanh-two-scales", "cube-at-zero",
        "softmax-one-minus-one"])
def test_check_grads_passes_correct_functions_of_mixed_scales(fn, x):
    """Each element's step follows its own size, truncation and cancellation are allowed for."""
    for seed in range(5):
        cn.check_grads(fn, x, seed=seed)


def test_check_grads_pairs_the_vjp_with_the_steps_float64_took():
    """Inputs near 1e6 with features of size 1: ``x + h v`` is rounded to
    float64, and the vjp is paired with the step actually taken."""
    x = 1e6 + _rng(0).standard_normal(4)
    for seed in range(20):
        cn.check_grads(lambda a: cn.tanh(a - 1e6), x, seed=seed)


@pytest.mark.parametrize("fn, x", [
    (lambda a: cn.sum(cn.tanh(a - 1e12)), 1e12 + _rng(0).standard_normal(4)),
    (lambda a: cn.sum(cn.relu(a)) + 1e8, np.array([1e-4])),        # near a kink, values huge
    (lambda a: 1.0 + 1e-8 * cn.sum(cn.relu(a)), np.array([1e-4, 0.5])),
    (lambda a: cn.sum(cn.sigmoid(600 * a)) + 1e12, np.array([-0.0033, -0.00375])),
], ids=["features-far-below-the-inputs", "kink-and-huge-values", "kink-and-tiny-slope",
        "steep-and-huge-values"])
def test_check_grads_passes_correct_gradients_its_steps_barely_resolve(fn, x):
    for seed in range(5):
        cn.check_grads(fn, x, seed=seed)


def test_a_step_across_a_kink_is_tried_again_smaller(monkeypatch):
    """Inputs 3e-7 from a ReLU's kink: a step of 1e-6 crosses it, 1e-8 does not."""
    from contractnet import autodiff, gradcheck, ops
    x = np.array([3e-7, -3e-7, 0.5, -2.0])
    fn = lambda a: cn.sum(cn.relu(a) * np.array([1.0, 2.0, 3.0, 4.0]))  # noqa: E731
    cn.check_grads(fn, x)
    with monkeypatch.context() as m:
        m.setattr(gradcheck, "STEP_SHRINKS", (1.0,))  # the first step alone: it crosses
        with pytest.raises(AssertionError, match="finite difference"):
            cn.check_grads(fn, x)
    monkeypatch.setitem(autodiff.VJP_RULES, ops.relu, lambda n, g, y, a: g * 0.5 * (a > 0))
    with pytest.raises(AssertionError, match="finite difference = .* with step 1e-06"):
        cn.check_grads(fn, x)  # a wrong gradient is wrong at every step
    with pytest.raises(AssertionError, match="finite difference"):  # large values, same slope:
        cn.check_grads(lambda a: fn(a) + 1e6, x)  # small steps round too much to count


def _tanh_rule_times(factor, inf_at=None):
    from contractnet import autodiff, ops
    right = autodiff.VJP_RULES[ops.tanh]

    def rule(n, g, y, a):
        grad = right(n, g, y, a) * factor
        if inf_at is not None:
            grad = np.array(grad, dtype=float)
            grad.flat[inf_at] = np.inf
        return grad
    return rule


@pytest.mark.parametrize("rule, fn, x", [
    (_tanh_rule_times(1.0, inf_at=2), lambda a: cn.sum(cn.tanh(a)), np.linspace(-1, 1, 5)),
    (_tanh_rule_times(1.5), lambda a: cn.sum(cn.tanh(a)) + 1e8, np.linspace(-1, 1, 5)),
    (_tanh_rule_times(1.2), lambda a: cn.sum(cn.tanh(3e5 * a)), 3e-6 * _rng(4).standard_normal(6)),
    # features of size 1 on inputs near 1e12: only a step 10^8 times smaller resolves them
    (_tanh_rule_times(1.01), lambda a: cn.tanh(a - 1e12), 1e12 + _rng(5).standard_normal(4)),
], ids=["an-infinite-element", "values-huge-against-the-slope", "inputs-far-below-the-step",
        "inputs-huge-against-their-features"])
def test_check_grads_catches_wrong_gradients_its_steps_barely_resolve(monkeypatch, rule, fn, x):
    from contractnet import autodiff, ops
    cn.check_grads(fn, x)
    monkeypatch.setitem(autodiff.VJP_RULES, ops.tanh, rule)
    with pytest.raises(AssertionError, match="finite difference"):
        cn.check_grads(fn, x)


@pytest.mark.parametrize("fn", [
    lambda a: cn.sum(cn.tanh(a.astype(np.float32))),
    lambda a: cn.sum(a.astype(np.float32)),
    lambda a: cn.exp(a.astype(np.float32)) * 2.0,
], ids=["tanh", "sum", "exp"])
def test_a_function_returning_float32_is_checked_at_float32_steps(monkeypatch, fn):
    """The probes are float64, but fn rounds them to float32: a step below
    float32's resolution measures rounding, so the steps start at its cube
    root; a gradient wrong by 1% still fails."""
    from contractnet import autodiff, ops
    x = 2 * _rng(6).standard_normal(5)
    cn.check_grads(fn, x, seed=0)
    cn.check_grads(fn, x, eps=1e-4, seed=0)
    for primitive in (ops.tanh, ops.exp, ops.astype):
        right = autodiff.VJP_RULES[primitive]
        monkeypatch.setitem(autodiff.VJP_RULES, primitive,
                            lambda *args, right=right: right(*args) * 1.01)
    with pytest.raises(AssertionError, match=r"relative steps 0.00492 down to 4.92e-13 tried"):
        cn.check_grads(fn, x, seed=0)


def test_check_grads_passes_a_log_of_inputs_far_below_the_step():
    """p of 1e-9 against a first step of 1e-6: only a step 10^6 times smaller resolves it."""
    p = np.array([0.5, 1e-9, 0.3, 2e-9])
    cn.check_grads(lambda a: cn.sum(np.array([1.0, 2.0, 3.0, 4.0]) * cn.log(a)), p)


def test_check_grads_catches_a_zero_gradient_of_a_tiny_function(monkeypatch):
    from contractnet import autodiff, ops
    fn = lambda a: 1e-9 * cn.sum(a * a)  # noqa: E731
    cn.check_grads(fn, np.array([1.0, 2.0, 3.0]))
    monkeypatch.setitem(autodiff.VJP_RULES, ops.sum,
                        lambda n, g, y, x, axis=None, keepdims=False: np.zeros(np.shape(x)))
    with pytest.raises(AssertionError, match="finite difference"):
        cn.check_grads(fn, np.array([1.0, 2.0, 3.0]))


def test_check_grads_catches_a_gradient_wrong_only_in_float32(monkeypatch):
    from contractnet import autodiff, ops
    right = autodiff.VJP_RULES[ops.tanh]

    def wrong_in_float32(n, g, y, a):
        grad = right(n, g, y, a)
        return grad * 1.5 if np.asarray(y).dtype == np.float32 else grad
    x = np.array([0.5, -0.25], np.float32)
    cn.check_grads(cn.tanh, x)
    monkeypatch.setitem(autodiff.VJP_RULES, ops.tanh, wrong_in_float32)
    cn.check_grads(cn.tanh, x.astype(np.float64))  # float64 alone cannot see it
    cn.check_grads(cn.tanh, x)  # the own-dtype check is asked for
    with pytest.raises(AssertionError, match="own dtypes disagrees"):
        cn.check_grads(cn.tanh, x, own_dtype=True)


def test_check_grads_catches_a_float16_gradient_wrong_by_half(monkeypatch):
    """float16 has 3 decimal digits: its check allows a quarter of the largest element."""
    from contractnet import autodiff, ops
    right = autodiff.VJP_RULES[ops.tanh]
    x = np.array([0.5, -0.25, 1.0], np.float16)
    fn = lambda a: cn.sum(cn.tanh(a))  # noqa: E731
    cn.check_grads(fn, x, own_dtype=True)
    monkeypatch.setitem(autodiff.VJP_RULES, ops.tanh, lambda n, g, y, a: (
        right(n, g, y, a) * (1.5 if np.asarray(y).dtype == np.float16 else 1)))
    with pytest.raises(AssertionError, match="own dtypes disagrees"):
        cn.check_grads(fn, x, own_dtype=True)


def test_the_own_dtype_check_passes_a_float16_relu_net():
    """float16 rounds some pre-activations across 0: a few elements of the weight
    gradients differ from float64's by about a typical element, which is allowed."""
    from contractnet import nn
    rng = np.random.default_rng(2)
    layers = []
    for _ in range(6):
        layers += [nn.Dense(64, 64, rng=rng, dtype=np.float16), nn.ReLU()]
    net = nn.Sequential(*layers, nn.Dense(64, 10, rng=rng, dtype=np.float16))
    x = np.random.default_rng(102).standard_normal((32, 64)).astype(np.float16)
    loss = lambda p: nn.softmax_cross_entropy(net.apply(p, x), np.arange(32) % 10)  # noqa: E731
    cn.check_grads(loss, net.parameters(), own_dtype=True)


def test_the_own_dtype_check_passes_a_gradient_zero_by_cancellation():
    """d/db of logsumexp(z + b) - (z + b)[3] is 1 - 1: float32 leaves a rounding
    error that is small against the other gradient, not against zero."""
    z = np.linspace(-1, 1, 10).astype(np.float32)
    cn.check_grads(lambda a, b: cn.logsumexp(a + b) - (a + b)[3], z, np.ones(1, np.float32),
                   own_dtype=True)


def test_the_own_dtype_check_catches_rare_wrong_elements_and_overflow(monkeypatch):
    from contractnet import autodiff, ops
    right = autodiff.VJP_RULES[ops.tanh]

    def wrong_far_out_in_float32(n, g, y, a):
        grad = right(n, g, y, a)
        far = (np.abs(a) > 2) & (np.asarray(y).dtype == np.float32)
        return np.where(far, -g, grad)
    x = np.random.default_rng(0).standard_normal(200).astype(np.float32)
    fn = lambda a: cn.sum(cn.tanh(a))  # noqa: E731
    cn.check_grads(fn, x, own_dtype=True)
    monkeypatch.setitem(autodiff.VJP_RULES, ops.tanh, wrong_far_out_in_float32)
    with pytest.raises(AssertionError, match="own dtypes disagrees"):
        cn.check_grads(fn, x, own_dtype=True)  # about 5% of the elements are wrong
    big = np.zeros(40, np.float16)
    big[7] = 11.5  # exp(11.5) overflows float16, not float64
    with pytest.raises(AssertionError, match="own dtypes disagrees"), \
            np.errstate(over="ignore"):
        cn.check_grads(lambda a: cn.sum(cn.exp(a) * 0.01), big, own_dtype=True)


@pytest.mark.parametrize("kwargs, message", [
    ({"trials": 0}, "trials must be a positive integer, got 0"),
    ({"trials": 2.0}, "trials must be a positive integer"),
    ({"trials": True}, "trials must be a positive integer"),
    ({"eps": 0}, "eps must be a positive finite number, got 0"),
    ({"eps": float("nan")}, "eps must be a positive finite number"),
    ({"rtol": -1}, "rtol must be a non-negative finite number, got -1"),
    ({"atol": "1e-8"}, "atol must be a non-negative finite number"),
    ({"own_dtype": "yes"}, "own_dtype must be True or False, got 'yes'"),
    ({"seed": -1}, "seed must be a non-negative integer or None, got -1"),
    ({"seed": "x"}, "seed must be a non-negative integer or None, got 'x'"),
    ({"seed": 1.5}, "seed must be a non-negative integer or None, got 1.5"),
], ids=str)
def test_check_grads_refuses_its_own_bad_arguments(kwargs, message):
    with pytest.raises(ValueError, match=re.escape(message)):
        cn.check_grads(lambda a: cn.sum(a * a), np.ones(3), **kwargs)


def test_a_function_returning_bools_is_refused_by_name():
    with pytest.raises(ValueError, match="fn returns bools"):
        cn.check_grads(lambda x: x > 0, np.ones(3))


def test_a_function_returning_float16_is_refused_rather_than_checked_loosely():
    """At float16's rounding, gradients 5% off pass, and in some functions
    sign-flipped ones."""
    x = 100 * _rng(7).standard_normal((50, 50))
    with pytest.raises(ValueError, match="fn returns float16, too coarse for finite "
                                         "differences: a wrong gradient, even a sign-flipped "
                                         "one, can pass"):
        cn.check_grads(lambda a: a.astype(np.float16), x)
    cn.check_grads(lambda a: a.astype(np.float32), x)


def test_a_float32_output_is_checked_against_its_rounding_not_its_worst_case(monkeypatch):
    """Rounding to float32 is independent from element to element: bounded
    by its worst case (every element off the same way), a sign-flipped
    gradient of 100 values offset by 1000 passed."""
    from contractnet import autodiff, ops
    x = _rng(3).standard_normal(100)

    def fn(a):
        return cn.tanh(a.astype(np.float32)) + np.float32(1000)
    cn.check_grads(fn, x)
    right = autodiff.VJP_RULES[ops.tanh]
    monkeypatch.setitem(autodiff.VJP_RULES, ops.tanh, lambda *args: -right(*args))
    with pytest.raises(AssertionError, match="finite difference"):
        cn.check_grads(fn, x)

