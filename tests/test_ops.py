"""Non-contraction primitives: numpy forward, finite-difference gradients,
broadcasting, dtype, traced operators."""
from __future__ import annotations

import numpy as np
import pytest

import contractnet as cn
from oracles import assert_close, distinct_values, numeric_vjp

FD_TOL = 1e-6


def _rng(seed=0):
    return np.random.default_rng(seed)


def _check(fn, *args, tol=FD_TOL, reference=None):
    """Forward against ``reference`` (numpy), vjp against finite differences,
    gradient shapes against the operands, and cn.check_grads."""
    out, vjp_fn = cn.vjp(fn, *args)
    if reference is not None:
        assert_close(out, reference(*args), 1e-12, what="forward")
    dy = _rng(99).standard_normal(np.shape(out))
    grads = vjp_fn(dy)
    for i, (g, n, a) in enumerate(zip(grads, numeric_vjp(fn, args, dy), args)):
        assert np.shape(g) == np.shape(a), f"gradient {i} not summed back to the operand shape"
        assert_close(g, n, tol, what=f"gradient {i}")
    cn.check_grads(fn, *args)


BROADCAST_SHAPES = [
    ((2, 3), (2, 3)), ((2, 3), (3,)), ((3,), (2, 3)), ((2, 1), (1, 3)), ((), (2, 3)),
    ((2, 3), ()), ((4, 1, 3), (2, 1)), ((1,), (3,)), ((), ()),
]


def _pair(shapes, seed=0, positive_b=False):
    rng = _rng(seed)
    a = rng.standard_normal(shapes[0])
    b = rng.standard_normal(shapes[1])
    if positive_b:
        b = 1.0 + np.abs(b)
    return a, b


@pytest.mark.parametrize("shapes", BROADCAST_SHAPES, ids=str)
@pytest.mark.parametrize("name, ref", [
    ("add", np.add), ("subtract", np.subtract), ("multiply", np.multiply),
    ("divide", np.divide), ("maximum", np.maximum), ("minimum", np.minimum),
])
def test_binary_ops_with_broadcasting(name, ref, shapes):
    a, b = _pair(shapes, positive_b=(name == "divide"))
    _check(getattr(cn, name), a, b, reference=ref)


@pytest.mark.parametrize("shapes", BROADCAST_SHAPES, ids=str)
def test_power_with_broadcasting(shapes):
    a, b = _pair(shapes)
    a = 0.5 + np.abs(a)  # positive base: the exponent's gradient exists
    _check(cn.power, a, b, reference=np.power)


def test_power_with_constant_exponent_and_negative_base():
    x = _rng().standard_normal((3, 2))
    _check(lambda a: cn.power(a, 3), x, reference=lambda a: a ** 3)
    _check(lambda a: a ** 2, x, reference=lambda a: a ** 2)


def test_power_gradients_at_a_zero_exponent_and_for_a_complex_base():
    x = np.array([0.0, 2.0])
    for fn in (lambda x: x ** 0, lambda x: cn.power(x, np.zeros(2))):
        (dx,) = cn.vjp(fn, x)[1](np.ones(2))
        np.testing.assert_array_equal(dx, [0.0, 0.0])  # a**0 is constant, also at a == 0
    a = np.array([-2 + 0.5j, 1.5 - 1j])
    b = np.array([2.0 + 0j, 0.5 + 0.3j])
    (db,) = cn.vjp(lambda b: cn.power(a, b), b)[1](np.ones(2, complex))
    np.testing.assert_allclose(db, a ** b * np.log(a), rtol=1e-12)
    cn.check_grads(lambda b: cn.power(a, b), b)
    cn.check_grads(lambda a: cn.power(a, b), a)


def test_power_keeps_float32_and_takes_a_real_negative_base_to_a_complex_exponent():
    from contractnet import autodiff
    a = np.ones(3, np.float32)
    for exponent in (2, 2.0, np.float32(2)):  # a Python number must not promote
        assert autodiff._power_rule(0, np.ones(3, np.float32), a ** 2, a, exponent).dtype \
            == np.float32
    assert autodiff._power_rule(1, np.ones(3, np.float32), 2.0 ** a, 2.0, a).dtype == np.float32
    a = np.array([-2.0, 3.0])
    b = np.array([0.5 + 0.2j, 2.0 + 0j])
    (db,) = cn.vjp(lambda b: cn.power(a, b), b)[1](np.ones(2, complex))
    np.testing.assert_allclose(db, (a + 0j) ** b * np.log(a + 0j), rtol=1e-12)


def test_astype_casts_and_casts_the_gradient_back():
    x = _rng().standard_normal((2, 3)).astype(np.float32)
    y, vjp_fn = cn.vjp(lambda x: cn.astype(x, np.float64) * 2.0, x)
    assert y.dtype == np.float64
    (dx,) = vjp_fn(np.ones((2, 3)))
    assert dx.dtype == np.float32
    np.testing.assert_array_equal(dx, np.full((2, 3), 2, np.float32))
    z = _rng(1).standard_normal(3)
    (dz,) = cn.vjp(lambda z: cn.astype(z, np.complex128) * (1 + 2j), z)[1](np.ones(3, complex))
    assert dz.dtype == np.float64
    np.testing.assert_allclose(dz, np.ones(3))  # the real part
    _check(lambda z: cn.astype(z, np.float64) ** 2, z, reference=lambda z: z ** 2)
    (dz,) = cn.vjp(lambda z: cn.astype(z, np.int64) * 1.0, z)[1](np.ones(3))
    np.testing.assert_array_equal(dz, np.zeros(3))  # an integer carries no gradient


@pytest.mark.parametrize("axis", [None, 0, (1, 2)], ids=str)
def test_mean_of_float16_sums_in_float32_as_numpy_does(axis):
    x = np.full((4, 2, 3), 30000, np.float16)  # every sum overflows float16 (65504)
    out, vjp_fn = cn.vjp(lambda a: cn.mean(a, axis), x)
    assert out.dtype == np.float16
    np.testing.assert_array_equal(out, np.mean(x, axis))
    (g,) = vjp_fn(np.ones_like(out))
    assert g.dtype == np.float16
    np.testing.assert_array_equal(g, np.full(x.shape, 1 / (x.size // np.size(out)), np.float16))


def test_a_float16_mean_over_everything_is_a_numpy_scalar_as_numpys():
    out = cn.mean(np.ones((3, 4), np.float16))
    assert type(out) is np.float16 and out == 1


def test_power_with_a_list_exponent_has_gradients():
    x = np.array([1.5, 2.0])
    np.testing.assert_allclose(cn.grad(lambda t: cn.sum(t ** [2.0, 3.0]))(x), [3.0, 12.0])
    np.testing.assert_allclose(cn.grad(lambda t: cn.sum(cn.power([2.0, 3.0], t)))(x),
                               np.log([2.0, 3.0]) * np.power([2.0, 3.0], x))


def test_mean_of_integers_and_bools_is_numpys():
    x = np.full((2, 3), 100, np.int8)
    assert cn.mean(x) == 100.0 and cn.mean(x).dtype == np.float64
    np.testing.assert_allclose(cn.mean(np.array([True, False, True])), 2 / 3)
    # a traced integer (from cn.astype) averages in float64 too, not wrapping in int8
    y, vjp_fn = cn.vjp(lambda z: cn.mean(cn.astype(z, np.int8)) + cn.sum(z), np.full(3, 100.0))
    assert y == 400.0
    np.testing.assert_array_equal(vjp_fn(1.0)[0], np.ones(3))


def test_power_exponent_gradient_is_0_where_the_base_is_0_even_when_the_answer_is_inf():
    # documented as 0 where a <= 0 (a real answer) or a == 0 (a complex one); 0**-1 is inf,
    # and inf times the mask's 0 would be nan
    with np.errstate(divide="ignore", invalid="ignore"):
        grad = cn.grad(lambda b: cn.sum(cn.power(np.array([0.0, 2.0]), b)))(np.array([-1.0, -1.0]))
        (complex_grad,) = cn.vjp(lambda b: cn.power(np.array([0j]), b),
                                 np.array([-1 + 0j]))[1](np.array([1 + 0j]))
    np.testing.assert_allclose(grad, [0.0, np.log(2.0) / 2])
    np.testing.assert_array_equal(complex_grad, [0j])


def test_power_exponent_gradient_takes_an_infinite_cotangent_at_a_zero_base_quietly():
    # sqrt(0 ** 2): sqrt's cotangent at 0 is inf, and the exponent's gradient there is 0
    a = np.array([0.0, 2.0])
    with np.errstate(divide="ignore"):
        _, vjp_fn = cn.vjp(lambda b: cn.sqrt(cn.power(a, b)), np.array([2.0, 2.0]))
    with np.errstate(all="raise"):  # the rule itself neither warns nor makes a nan
        (grad,) = vjp_fn(np.ones(2))
    np.testing.assert_allclose(grad, [0.0, np.log(2.0)])


def test_power_gradient_of_an_integer_base_to_a_zero_exponent():
    # the rule must not form int ** -1 (numpy refuses negative integer powers)
    exponents = np.array([0, 1, 2])
    y, vjp_fn = cn.vjp(lambda x: cn.astype(cn.power(cn.astype(x, np.int64), exponents),
                                           np.float64), np.array([3.0, 3.0, 3.0]))
    np.testing.assert_array_equal(y, [1.0, 3.0, 9.0])
    np.testing.assert_array_equal(vjp_fn(np.ones(3))[0], np.zeros(3))
    (dx,) = cn.vjp(lambda x: x ** 0, np.array([0.0, np.inf, np.nan]))[1](np.ones(3))
    np.testing.assert_array_equal(dx, np.zeros(3))


@pytest.mark.parametrize("name, ref, domain", [
    ("exp", np.exp, "any"), ("log", np.log, "positive"), ("tanh", np.tanh, "any"),
    ("sigmoid", lambda a: 1 / (1 + np.exp(-a)), "any"), ("relu", lambda a: np.maximum(a, 0), "any"),
    ("negative", np.negative, "any"), ("abs", np.abs, "any"), ("sqrt", np.sqrt, "positive"),
])
@pytest.mark.parametrize("shape", [(), (3,), (2, 3)], ids=str)
def test_unary_ops(name, ref, domain, shape):
    x = _rng().standard_normal(shape) * 2
    if domain == "positive":
        x = 0.1 + np.abs(x)
    if name in ("relu", "abs"):
        x = np.where(np.abs(x) < 0.05, 0.5, x)  # keep away from the kink
    fn = getattr(cn, name)
    out, _ = cn.vjp(fn, x)
    np.testing.assert_allclose(out, ref(x), rtol=1e-12, atol=1e-14)
    _check(fn, x)


def test_sigmoid_does_not_overflow():
    x = np.array([-1000.0, 0.0, 1000.0])
    np.testing.assert_allclose(cn.sigmoid(x), [0.0, 0.5, 1.0])
    g = cn.grad(lambda a: cn.sum(cn.sigmoid(a)))(x)
    assert np.all(np.isfinite(g))


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_sigmoid_keeps_its_relative_precision_far_below_zero(dtype):
    x = np.array([-80.0, -40.0, -17.0, -9.0, -1.0, 0.0, 1.0, 9.0, 40.0], dtype)
    exact = 1 / (1 + np.exp(-x.astype(np.longdouble)))
    got = cn.sigmoid(x)
    assert got.dtype == dtype
    tiny = np.finfo(dtype).tiny  # below it float32 has no relative precision left
    np.testing.assert_allclose(got[exact > tiny], exact[exact > tiny].astype(dtype),
                               rtol=4 * np.finfo(dtype).eps)
    g = cn.grad(lambda a: cn.sum(cn.log(cn.sigmoid(a))))(np.array([-40.0, -20.0]))
    np.testing.assert_allclose(g, [1.0, 1.0])  # d log(sigmoid(a)) = 1 - sigmoid(a)


def test_sigmoid_of_integers_bools_and_complex_numbers():
    np.testing.assert_allclose(cn.sigmoid(np.array([True, False])), [1 / (1 + np.exp(-1)), 0.5])
    assert cn.sigmoid(np.int8(3)).dtype == np.float64
    z = np.array([1 + 1j, -2 - 0.5j])
    np.testing.assert_allclose(cn.sigmoid(z), 1 / (1 + np.exp(-z)))
    with np.errstate(over="raise", invalid="raise"):  # far from 0 either side: no inf, nan
        far = cn.sigmoid(np.array([-1000 + 1j, 1000 + 1j, -800 + 0.5j]))
    np.testing.assert_allclose(far, [0, 1, 0], atol=1e-300)


@pytest.mark.parametrize("x", [np.array([True, True, True]), np.full(4, 200, np.uint8),
                               np.array([2**31 - 1, 1], np.int32), np.full((2, 3), 100, np.int8),
                               np.arange(6.0).reshape(2, 3).astype(">f8")],
                         ids=lambda x: x.dtype.str)
def test_sum_of_bools_small_integers_and_big_endian_floats_is_numpys(x):
    for axis in (None, 0):
        got, want = cn.sum(x, axis), np.sum(x, axis=axis)
        np.testing.assert_array_equal(got, want)
        assert np.asarray(got).dtype == want.dtype


def test_mean_refuses_an_axis_out_of_range_as_numpy_does():
    with pytest.raises(np.exceptions.AxisError, match="axis 5 is out of bounds"):
        cn.mean(np.ones((2, 3)), axis=5)
    assert issubclass(np.exceptions.AxisError, ValueError)


def test_where_with_broadcasting_and_no_gradient_for_the_condition():
    rng = _rng()
    cond = rng.standard_normal((2, 3)) > 0
    a, b = rng.standard_normal((3,)), rng.standard_normal((2, 1))
    _check(lambda x, y: cn.where(cond, x, y), a, b, reference=lambda x, y: np.where(cond, x, y))


def test_maximum_ties_send_gradient_to_the_first_argument():
    a = np.array([1.0, 2.0])
    ga, gb = cn.vjp(cn.maximum, a, a.copy())[1](np.ones(2))
    assert_close(ga + gb, np.ones(2))  # one unit per output, not two


def test_maximum_sends_the_gradient_to_the_nan_it_returns():
    a = np.array([np.nan, 1.0, 2.0, np.nan])
    b = np.array([0.0, np.nan, 2.0, np.nan])
    out, vjp_fn = cn.vjp(cn.maximum, a, b)
    np.testing.assert_array_equal(out, np.maximum(a, b))
    ga, gb = vjp_fn(np.ones(4))
    np.testing.assert_array_equal(ga, [1, 0, 1, 1])
    np.testing.assert_array_equal(gb, [0, 1, 0, 0])


def test_minimum_ties_and_nans_follow_what_numpy_returns():
    a = np.array([1.0, np.nan, 2.0, 3.0, np.nan])
    b = np.array([1.0, 0.0, np.nan, 0.0, np.nan])
    out, vjp_fn = cn.vjp(cn.minimum, a, b)
    np.testing.assert_array_equal(out, np.minimum(a, b))
    ga, gb = vjp_fn(np.ones(5))
    np.testing.assert_array_equal(ga, [1, 1, 0, 0, 1])  # a tie goes to a, once
    np.testing.assert_array_equal(gb, [0, 0, 1, 1, 0])


def test_abs_gradient_is_the_sign_and_zero_at_zero():
    x = np.array([-2.0, 0.0, 3.0])
    np.testing.assert_array_equal(cn.grad(lambda a: cn.sum(cn.abs(a)))(x), [-1, 0, 1])
    assert cn.abs is cn.absolute


def test_abs_and_sqrt_of_complex_numbers_pass_the_gradient_check():
    z = np.array([1 + 2j, -0.5 + 0.3j, 2 - 1j])
    cn.check_grads(cn.abs, z)
    cn.check_grads(cn.sqrt, z)
    out, vjp_fn = cn.vjp(cn.abs, z)
    assert out.dtype == np.float64
    np.testing.assert_allclose(vjp_fn(np.ones(3))[0], np.conj(z) / np.abs(z))  # jax's convention


@pytest.mark.parametrize("name", ["conj", "real", "imag"])
def test_complex_parts_match_numpy_in_new_memory(name):
    z = np.array([1 + 2j, -0.5 + 0.3j], np.complex64)
    x = np.array([1.5, -2.0], np.float32)
    for a in (z, x):
        out = getattr(cn, name)(a)
        want = getattr(np, {"conj": "conjugate"}.get(name, name))(a)
        np.testing.assert_array_equal(out, want)
        assert out.dtype == want.dtype and out.flags.writeable
        assert not np.shares_memory(out, a)  # numpy's real and imag are views
    assert type(cn.real(1 + 2j)) is np.float64 and cn.imag(np.complex64(3j)) == np.float32(3)


@pytest.mark.parametrize("fn", [
    lambda z: cn.conj(z) * z * z, lambda z: cn.real(z) * z, lambda z: cn.imag(z * z) + z,
    lambda z: z.conj() * z.real - z.imag, lambda z: np.conjugate(z) * (2 - 1j),
], ids=["conj", "real", "imag", "methods", "np.conjugate"])
def test_complex_parts_pass_the_gradient_check(fn):
    cn.check_grads(fn, np.array([1 + 2j, -0.5 + 0.3j, 2 - 1j]))


def test_complex_part_gradients_follow_jax():
    # for a real loss of z, jax's convention gives the conjugate of PyTorch's z.grad
    z = np.array([1 + 2j, -0.5 + 0.3j])
    expected = 2 * np.conj(z)  # of |z|^2 = real(z)^2 + imag(z)^2 = real(z * conj(z))
    for loss in (lambda z: cn.sum(z.real ** 2 + z.imag ** 2),
                 lambda z: cn.sum(cn.real(z * cn.conj(z)))):
        np.testing.assert_allclose(cn.grad(loss)(z), expected, rtol=1e-14)
    np.testing.assert_allclose(cn.grad(lambda z: cn.real(z) * cn.imag(z))(np.array(1 + 2j)),
                               2 - 1j, rtol=1e-14)
    x = np.array([1.0, 2.0])  # real primals: real() and conj() pass g on, imag() nothing
    (g,) = cn.vjp(lambda a: cn.imag(a) + 3 * cn.real(a) + cn.conj(a), x)[1](np.array([1.0, 2.0]))
    assert g.dtype == np.float64
    np.testing.assert_array_equal(g, [4.0, 8.0])
    (g,) = cn.vjp(cn.imag, np.ones(2, np.complex64))[1](np.ones(2, np.float32))
    assert g.dtype == np.complex64
    np.testing.assert_array_equal(g, [-1j, -1j])


def test_complex_part_gradients_are_the_conjugate_of_pytorchs():
    torch = pytest.importorskip("torch")
    z = np.array([1 + 2j, -0.5 + 0.3j, 2 - 1j])
    w = np.array([0.3 - 1j, 2 + 0.5j, -1 + 1j])
    mine = cn.grad(lambda z: cn.sum(cn.real(z * w) * cn.imag(cn.conj(z) * z * w)))(z)
    t = torch.tensor(z, requires_grad=True)
    tw = torch.tensor(w)
    torch.sum(torch.real(t * tw) * torch.imag(torch.conj(t) * t * tw)).backward()
    np.testing.assert_allclose(mine, np.conj(t.grad.numpy()), rtol=1e-12)


# ------------------------------------------------------------------ joining
@pytest.mark.parametrize("axis", [0, 1, -1, None], ids=str)
def test_concatenate_matches_numpy_and_splits_the_gradient(axis):
    rng = _rng()
    a, b, c = rng.standard_normal((2, 3)), rng.standard_normal((2, 3)), rng.standard_normal((2, 3))
    if axis == 0:
        b = rng.standard_normal((4, 3))
    elif axis in (1, -1):
        b = rng.standard_normal((2, 1))
    _check(lambda x, y, z: cn.concatenate([x, y, z], axis), a, b, c,
           reference=lambda x, y, z: np.concatenate([x, y, z], axis))


def test_concatenate_with_a_constant_and_a_repeated_operand():
    x = _rng().standard_normal(3)
    k = np.arange(4.0)
    g = cn.grad(lambda a: cn.sum(cn.concatenate((a, k, a)) * np.arange(10.0)))(x)
    np.testing.assert_array_equal(g, [0 + 7, 1 + 8, 2 + 9])


@pytest.mark.parametrize("axis", [0, 1, 2, -1], ids=str)
def test_stack_matches_numpy(axis):
    rng = _rng()
    a, b = rng.standard_normal((2, 3)), rng.standard_normal((2, 3))
    _check(lambda x, y: cn.stack([x, y], axis), a, b,
           reference=lambda x, y: np.stack([x, y], axis))


@pytest.mark.parametrize("call, message", [
    (lambda: cn.concatenate(np.ones((2, 3))), "sequence of arrays"),
    (lambda: cn.stack(np.ones((2, 3))), "sequence of arrays"),
    (lambda: cn.stack([np.ones(2), np.ones(2), np.ones(3)]),
     r"one shape: array 0 has \(2,\), array 2 has \(3,\)"),
    (lambda: cn.concatenate([]), "at least one array"),
    (lambda: cn.concatenate([np.ones((2, 2))] * 2, axis=1.5), "axis must be an integer, got 1.5"),
    (lambda: cn.stack([np.ones(2)] * 2, axis=1.0), "axis must be an integer, got 1.0"),
    (lambda: cn.concatenate([np.ones(2)] * 2, axis=np.array([0])), "axis must be an integer"),
])
def test_joining_refuses_what_it_cannot_join(call, message):
    with pytest.raises(ValueError, match=message):
        call()


# ------------------------------------------------------------------ reductions
AXES = [None, 0, -1, 1, (0, 2), (-1, 0)]


@pytest.mark.parametrize("keepdims", [False, True])
@pytest.mark.parametrize("axis", AXES, ids=str)
@pytest.mark.parametrize("name, ref", [
    ("sum", np.sum), ("mean", np.mean), ("max", np.max), ("min", np.min),
    ("logsumexp", lambda a, axis=None, keepdims=False: np.log(np.sum(
        np.exp(a), axis=axis, keepdims=keepdims))),
])
def test_reductions(name, ref, axis, keepdims):
    x = distinct_values(_rng(), (2, 3, 4)) - 1.0  # distinct: max has a unique argmax
    fn = lambda a: getattr(cn, name)(a, axis=axis, keepdims=keepdims)  # noqa: E731
    _check(fn, x, reference=lambda a: ref(a, axis=axis, keepdims=keepdims))


def test_max_splits_gradient_among_ties():
    x = np.array([[1.0, 3.0, 3.0], [2.0, 0.0, -1.0]])
    (g,) = cn.vjp(lambda a: cn.max(a, axis=1), x)[1](np.ones(2))
    assert_close(g, [[0.0, 0.5, 0.5], [1.0, 0.0, 0.0]])


@pytest.mark.parametrize("name", ["max", "min"])
def test_extremum_ties_are_counted_whatever_the_dtype(name):
    # big-endian input (a ufunc's dtype= must be native); float16 ties past its 65504
    x = np.array([[1.0, 3.0, 3.0], [2.0, 0.5, 0.5]], dtype=">f8")
    (g,) = cn.vjp(lambda a: getattr(cn, name)(a, axis=1), x)[1](np.ones(2))
    expected = [[0.0, 0.5, 0.5], [1.0, 0.0, 0.0]] if name == "max" else \
        [[1.0, 0.0, 0.0], [0.0, 0.5, 0.5]]
    assert_close(g, expected)
    many = np.ones(70000, np.float16)
    (g,) = cn.vjp(lambda a: getattr(cn, name)(a), many)[1](np.float16(1))
    assert g.dtype == np.float16 and np.all(g == np.float16(1 / 70000))


@pytest.mark.parametrize("reduce", ["sum", "max", "min"])
@pytest.mark.parametrize("axis", [0, -1])  # numpy refuses (0,) there
def test_a_0d_value_reduced_over_axis_0_differentiates_as_numpy_reduces_it(reduce, axis):
    x = np.array(5.0)
    out, vjp_fn = cn.vjp(lambda t: getattr(cn, reduce)(t, axis=axis), x)
    assert out == getattr(np, reduce)(x, axis=axis)
    (g,) = vjp_fn(np.array(2.0))
    assert g.shape == () and g == 2.0
    with pytest.raises(np.exceptions.AxisError):  # as numpy.mean refuses it
        cn.mean(x, axis=axis)


def test_max_of_nans_gives_its_gradient_to_the_nans():
    x = np.array([[1.0, np.nan, 3.0, np.nan], [2.0, 0.0, -1.0, 5.0]])
    (g,) = cn.vjp(lambda a: cn.max(a, axis=1), x)[1](np.array([2.0, 1.0]))
    np.testing.assert_array_equal(g, [[0.0, 1.0, 0.0, 1.0], [0.0, 0.0, 0.0, 1.0]])


@pytest.mark.parametrize("name", ["sum", "max", "min", "mean", "logsumexp"])
@pytest.mark.parametrize("axis", [1.5, (0.7,), True])
def test_reductions_refuse_an_axis_that_is_not_an_integer(name, axis):
    with pytest.raises(ValueError, match=f"{name}: axis must be an integer"):  # its own name
        getattr(cn, name)(np.ones((2, 3)), axis=axis)


def test_min_splits_gradient_among_ties_and_gives_a_nan_min_to_the_nans():
    x = np.array([[1.0, -3.0, -3.0], [2.0, np.nan, 5.0]])
    out, vjp_fn = cn.vjp(lambda a: a.min(axis=1), x)
    np.testing.assert_array_equal(out, np.min(x, axis=1))
    np.testing.assert_array_equal(vjp_fn(np.array([1.0, 2.0]))[0],
                                  [[0.0, 0.5, 0.5], [0.0, 2.0, 0.0]])


@pytest.mark.parametrize("call", [lambda t: cn.exp(a=t), lambda t: cn.sum(a=t),
                                  lambda t: cn.sigmoid(a=t), lambda t: cn.pad(a=t, pad_width=1)],
                         ids=["exp", "sum", "sigmoid", "pad"])
def test_a_traced_value_given_by_keyword_is_refused_by_name(call):
    with pytest.raises(TypeError, match=r"pass the traced value a= by position; keyword "
                                        r"arguments are not traced"):
        cn.vjp(call, np.ones(3))


def test_logsumexp_is_stable():
    x = np.array([1000.0, 1000.0])
    assert_close(cn.logsumexp(x), 1000.0 + np.log(2.0))
    assert_close(cn.grad(lambda a: cn.logsumexp(a))(x), [0.5, 0.5])


@pytest.mark.parametrize("dtype", [np.int8, np.uint8, np.int64, np.bool_])
def test_logsumexp_of_integers_and_bools_is_taken_in_float64(dtype):
    x = np.array([[1, 0, 1], [0, 0, 1]], dtype)
    out = cn.logsumexp(x, axis=1)
    assert out.dtype == np.float64
    np.testing.assert_allclose(out, np.log(np.exp(x.astype(np.float64)).sum(axis=1)), rtol=1e-15)


@pytest.mark.filterwarnings("error")
def test_logsumexp_of_float16_sums_in_float32_past_float16s_largest_value():
    x = np.zeros((2, 70000), np.float16)  # a float16 sum of 70,000 ones is inf
    out = cn.logsumexp(x, axis=1)
    assert out.dtype == np.float16
    np.testing.assert_allclose(out.astype(np.float64), [np.log(70000)] * 2, rtol=1e-3)
    grad = cn.grad(lambda a: cn.sum(cn.logsumexp(a, axis=1)))(x)
    assert grad.dtype == np.float16
    np.testing.assert_allclose(grad.astype(np.float64), 1 / 70000, rtol=2e-3)


def test_logsumexp_of_nothing_but_minus_infinity_is_minus_infinity_without_a_warning():
    assert cn.logsumexp(np.array([-np.inf, -np.inf])) == -np.inf
    np.testing.assert_array_equal(cn.logsumexp(np.array([[-np.inf, 0.0], [-np.inf, -np.inf]]),
                                               axis=1), [0.0, -np.inf])


# ------------------------------------------------------------------ shape ops
@pytest.mark.parametrize("shape", [(6,), (3, -1), (1, 2, 3), (2, 3, 1)], ids=str)
def test_reshape(shape):
    x = _rng().standard_normal((2, 3))
    _check(lambda a: cn.reshape(a, shape), x, reference=lambda a: np.reshape(a, shape))


@pytest.mark.parametrize("axes", [None, (1, 0, 2), (2, 0, 1), (0, 1, 2)], ids=str)
def test_transpose(axes):
    x = _rng().standard_normal((2, 3, 4))
    _check(lambda a: cn.transpose(a, axes), x, reference=lambda a: np.transpose(a, axes))


@pytest.mark.parametrize("transposed", [lambda a: a.transpose(0), lambda a: cn.transpose(a, -1),
                                        lambda a: cn.transpose(a, np.array(0))],
                         ids=["method", "function", "0d-array"])
def test_a_1d_value_transposed_by_its_one_axis_as_an_int(transposed):
    # numpy takes an int for a 1-d array's axes; the backward pass must too
    grad = cn.grad(lambda a: cn.sum(transposed(a) * np.arange(3.0)))(np.ones(3))
    np.testing.assert_array_equal(grad, [0.0, 1.0, 2.0])


# sqrt's derivative at 0 is infinite: a selection must pass 0, not inf * 0 = nan, where it
# does not select (PyTorch's relu and maximum give 0 there too)
X_AT_ZERO = np.array([-1.0, 4.0])  # the first is 0 after each selection, the second is 4
CONSTANT_ZEROS = np.zeros(2)


@pytest.mark.parametrize("selection", [
    lambda a: cn.relu(a),
    lambda a: cn.maximum(a, 0.0),
    lambda a: cn.maximum(0.0, a),
    lambda a: -cn.minimum(-a, 0.0),
    lambda a: cn.max(cn.stack([a, CONSTANT_ZEROS]), axis=0),
    lambda a: cn.einsum("ij->j", cn.stack([a, CONSTANT_ZEROS]), reduce="max"),
    lambda a: cn.reshape(cn.max_pool2d(cn.reshape(cn.stack([a, CONSTANT_ZEROS]), (1, 2, 2, 1)),
                                       (2, 1)), (2,)),
], ids=["relu", "maximum-left", "maximum-right", "minimum", "max", "einsum-max", "max-pool"])
def test_a_selection_passes_an_infinite_cotangent_only_where_it_selects(selection):
    with np.errstate(divide="ignore"):
        grad = cn.grad(lambda a: cn.sum(cn.sqrt(selection(a))))(X_AT_ZERO)
    np.testing.assert_array_equal(grad, [0.0, 0.25])


LARGE_SELECTIONS = {  # each selects about half of 6,000 elements (above MASK_PRODUCT_MIN)
    "relu": lambda a: cn.relu(a),
    "maximum": lambda a: cn.maximum(a, 0.0) + cn.maximum(0.0, a),
    "minimum": lambda a: cn.minimum(a, 0.0),
    "where": lambda a: cn.where(np.arange(a.size).reshape(a.shape) % 2, a, 0.0),  # int cond
    "where-else": lambda a: cn.where(np.arange(a.size).reshape(a.shape) % 2, 0.0, a),
    "max": lambda a: cn.max(a, axis=0),
    "einsum-max": lambda a: cn.einsum("ij->j", a, reduce="max"),
    "power": lambda a: cn.relu(a) ** a,  # its exponent's gradient selects a > 0
}


@pytest.mark.parametrize("cotangent", ["finite", "an-inf", "a-nan"])
@pytest.mark.parametrize("selection", list(LARGE_SELECTIONS), ids=str)
def test_a_large_selection_passes_the_cotangent_as_numpy_where_does(selection, cotangent,
                                                                    monkeypatch):
    # from MASK_PRODUCT_MIN elements on, a finite cotangent is multiplied by the mask;
    # the result must equal the selection bit for bit, +0 where it selects nothing
    from contractnet import engine
    rng = np.random.default_rng(3)
    x = rng.standard_normal((2, 3000))
    x[0, :5] = 0.0  # ties in max, relu at 0
    fn = LARGE_SELECTIONS[selection]
    with np.errstate(invalid="ignore", divide="ignore"):  # power: 0 ** -x is inf
        out, vjp_fn = cn.vjp(fn, x)
        cot = rng.standard_normal(out.shape)
        cot.flat[7] = {"finite": -0.0, "an-inf": -np.inf, "a-nan": np.nan}[cotangent]
        fast = vjp_fn(cot)[0]
        monkeypatch.setattr(engine, "MASK_PRODUCT_MIN", np.inf)  # always numpy.where
        selected = cn.vjp(fn, x)[1](cot)[0]
    np.testing.assert_array_equal(fast, selected)
    zeros = fast == 0
    assert zeros.sum() > 1000
    assert not np.signbit(fast[zeros]).any()


@pytest.mark.parametrize("stride", [2, 1], ids=["disjoint", "overlapping"])
def test_max_pooling_offset_by_offset_passes_an_infinite_cotangent_only_to_the_maxima(stride):
    # every reduced index a window offset: routed offset by offset; the windows whose
    # max is 0 get sqrt's infinite cotangent
    x = np.zeros((1, 8, 8, 1))
    x[0, ::2, ::2, 0] = 4.0
    x[0, :2] = -1.0  # windows whose max is 0 (a mix of -1 and 0) or -1 (all -1)
    with np.errstate(divide="ignore", invalid="ignore"):
        grad = cn.grad(lambda a: cn.sum(cn.sqrt(cn.relu(cn.max_pool2d(a, 2, stride=stride)))))(x)
    assert not np.isnan(grad).any()
    assert (grad[x != 4.0] == 0).all() and (grad[x == 4.0] > 0).all()


@pytest.mark.parametrize("pad_width", [1, ((1, 2), (0, 3)), (1, 2), ((0, 0), (2, 0))], ids=str)
def test_pad(pad_width):
    x = _rng().standard_normal((2, 3))
    _check(lambda a: cn.pad(a, pad_width), x,
           reference=lambda a: np.pad(a, pad_width))


@pytest.mark.parametrize("shape, pad_width", [((), 0), ((0, 2), ((1, 1), (2, 0))),
                                              ((2, 2, 3), ((0, 0), (1, 1), (2, 2)))], ids=str)
def test_pad_matches_numpy_in_dtype_and_layout(shape, pad_width):
    x = _rng().standard_normal(shape).astype(np.float32)
    got, want = cn.pad(x, pad_width), np.pad(x, pad_width)
    assert got.dtype == np.float32 and got.flags.c_contiguous
    np.testing.assert_array_equal(got, want)


@pytest.mark.parametrize("pad_width, message", [
    (1.5, "pad widths must be integers, got 1.5"), (-0.5, "must be integers"),
    (None, "must be integers"), ([], "must be integers"),
    ([1, 2, 3], r"pad widths \[1, 2, 3\] do not fit an array of 2 dimension"),
], ids=str)
def test_pad_refuses_widths_numpy_refuses(pad_width, message):
    with pytest.raises(ValueError, match=message):
        cn.pad(np.ones((2, 2)), pad_width)


def test_pad_checks_the_memory_budget_before_allocating():
    with pytest.raises(cn.MemoryBudgetError, match="the padded array of shape"):
        cn.pad(np.ones((1, 4, 4, 1)), 10**9)
    with pytest.raises(cn.MemoryBudgetError, match="padded array"):
        cn.conv2d(np.ones((1, 4, 4, 1)), np.ones((3, 3, 1, 1)), padding=10**6)


def test_pad_refuses_negative_widths():
    with pytest.raises(ValueError, match="pad widths must be >= 0"):
        cn.pad(np.ones((2, 2)), -1)


@pytest.mark.parametrize("index", [
    0, -1, slice(1, None), (slice(None), 1), (Ellipsis, 0), (None, slice(None, None, -1)),
    (slice(None, None, 2), slice(1, 3)), np.array([0, 0, 2]), (1, 2),
], ids=str)
def test_getitem(index):
    x = _rng().standard_normal((3, 4))
    _check(lambda a: a[index], x, reference=lambda a: a[index])
    _check(lambda a: cn.getitem(a, index), x)


# ------------------------------------------------------------------ operators
def test_traced_operators():
    rng = _rng()
    a, b = rng.standard_normal((2, 3)), 1.5 + np.abs(rng.standard_normal((2, 3)))
    c = rng.standard_normal((3, 4))
    _check(lambda x, y: x + y - x * y / y ** 2, a, b,
           reference=lambda x, y: x + y - x * y / y ** 2)
    _check(lambda x, y: -x @ y, a, c, reference=lambda x, y: -x @ y)
    _check(lambda x: x.T, a, reference=lambda x: x.T)
    _check(lambda x: x[1], a, reference=lambda x: x[1])


def test_operators_with_constants_on_either_side():
    a = 0.5 + np.abs(_rng().standard_normal((2, 3)))
    k = _rng(1).standard_normal((3,))
    f = lambda x: 2.0 + x - 3.0 * x / 4.0 + 1.0 / x - 2.0 ** x + x ** 0.5 - k * x + k / x  # noqa
    _check(f, a, reference=f)
    g = lambda x: k - x + k @ x.T @ x  # noqa: E731
    _check(g, a, reference=g)


def test_traced_methods_and_attributes():
    x = _rng().standard_normal((2, 3))
    seen = {}

    def fn(a):
        seen.update(shape=a.shape, dtype=a.dtype, ndim=a.ndim)
        return a.reshape(3, 2).sum(axis=0) + a.reshape((6,)).mean() + a.max(axis=1).sum()
    _check(fn, x, reference=lambda a: a.reshape(3, 2).sum(axis=0) + a.mean()
           + a.max(axis=1).sum())
    assert seen == {"shape": (2, 3), "dtype": np.float64, "ndim": 2}


def test_traced_shape_methods_and_builtin_abs():
    x = _rng().standard_normal((2, 1, 3))
    _check(lambda a: a.squeeze() * 2 + a.squeeze(1), x,
           reference=lambda a: a.squeeze() * 2 + a.squeeze(1))
    _check(lambda a: a.ravel() - a.flatten() ** 2, x,
           reference=lambda a: a.ravel() - a.flatten() ** 2)
    _check(lambda a: abs(a), np.where(np.abs(x) < 0.05, 0.5, x), reference=np.abs)
    out, vjp_fn = cn.vjp(lambda a: a.astype(np.float32), x)
    assert out.dtype == np.float32 and vjp_fn(np.ones_like(out))[0].dtype == np.float64


def test_operators_with_an_ndarray_or_numpy_scalar_on_the_left_trace():
    rng = _rng()
    a = 0.5 + np.abs(rng.standard_normal((2, 3)))
    k = rng.standard_normal((2, 3))
    base = 0.5 + np.abs(k)
    m = rng.standard_normal((2, 2))
    f = lambda x: (k + x) * (k - x) / (base ** x) + np.float64(2.0) * x + m @ x  # noqa: E731
    _check(f, a, reference=f)
    seen = {}

    def compare(x):
        seen["less"] = k < x  # a plain array, as Traced's own comparisons give
        return x
    cn.vjp(compare, a)
    assert type(seen["less"]) is np.ndarray
    np.testing.assert_array_equal(seen["less"], k < a)


@pytest.mark.parametrize("call, message", [
    (lambda x: np.exp(x), r"numpy\.exp does not trace.*use cn\.exp$"),
    (lambda x: np.absolute(x, out=np.empty(3)), r"numpy\.absolute cannot write a traced value"),
    (lambda x: np.add(x, 1.0, dtype=np.float64),
     r"numpy\.add with dtype= does not trace; call it without it, or use its operator"),
    (lambda x: np.add(x, 1.0, dtype=np.float64, casting="unsafe"),
     r"numpy\.add with dtype=, casting= does not trace; call it without them"),
    (lambda x: np.dot(x, x), r"numpy\.dot does not trace.*use cn\.matmul$"),
    (lambda x: np.einsum("i->", x), r"numpy\.einsum does not trace.*use cn\.einsum$"),
    (lambda x: np.less(x, 1, dtype=bool), r"numpy\.less with dtype= does not trace; call it "
                                          r"without it, or use its operator"),
    (lambda x: np.pad(x, 1), r"numpy\.pad does not trace.*cn\.pad"),
    (lambda x: np.add.reduce(x), r"numpy\.add\.reduce does not trace.*use cn\.sum$"),
    (lambda x: np.floor_divide(x, 2), r"numpy\.floor_divide does not trace.*own operations"),
    (lambda x: np.sum(x), r"numpy\.sum does not trace.*use cn\.sum$"),
    (lambda x: np.asarray(x), r"cannot become a numpy array.*\.value is the plain array"),
    (lambda x: np.sign(x), r"numpy\.sign does not trace.*own operations"),
    (lambda x: np.linalg.norm(x), r"numpy\.linalg\.norm does not trace.*cn\.sqrt\(cn\.sum\("
                                  r"cn\.abs"),
    (lambda x: np.clip(x, 0, 1), r"numpy\.clip does not trace.*cn\.minimum\(cn\.maximum"),
    (lambda x: np.square(x), r"numpy\.square does not trace.*use x \* x$"),
])
def test_numpy_functions_on_traced_values_are_refused_naming_contractnets_own(call, message):
    with pytest.raises(TypeError, match=message):
        cn.vjp(call, np.ones(3))


@pytest.mark.parametrize("call, message", [
    (lambda x: x.std(), r"no method 'std' \(ndarray's does not trace\): to differentiate "
                        r"through it use cn\.sqrt.*; \.value\.std is the plain array's"),
    (lambda x: x.nbytes, r"no attribute 'nbytes'.*\.value\.nbytes is the plain array's"),
    (lambda x: x.clip(0, 1), r"no method 'clip'.*cn\.minimum\(cn\.maximum"),
    (lambda x: x.cumsum(), r"no method 'cumsum'.*triangular mask"),
    (lambda x: x.prod(), r"no method 'prod'.*contractnet's own operations"),
    (lambda x: x.no_such_thing, r"^'Traced' object has no attribute 'no_such_thing'$"),
])
def test_ndarray_methods_a_traced_value_lacks_say_what_to_use(call, message):
    with pytest.raises(AttributeError, match=message):
        cn.vjp(call, np.ones(3))
    assert not hasattr(cn.Traced(np.ones(2)), "__array_interface__")


@pytest.mark.parametrize("axis", [-1, 0, None, (0, 1)])
def test_softmax_and_log_softmax_match_their_definitions_and_differentiate(axis):
    x = np.random.default_rng(0).standard_normal((3, 4)) * 50  # exp alone would overflow
    shifted = x - x.max(axis=axis, keepdims=True)
    want = np.exp(shifted) / np.exp(shifted).sum(axis=axis, keepdims=True)
    np.testing.assert_allclose(cn.softmax(x, axis), want, atol=1e-12)
    np.testing.assert_allclose(cn.log_softmax(x, axis), np.log(want), rtol=1e-10, atol=1e-12)
    c = np.random.default_rng(1).standard_normal((3, 4))
    g, = cn.vjp(lambda x: cn.softmax(x, axis), x)[1](c)  # J^T c = s * (c - sum(s c))
    np.testing.assert_allclose(g, want * (c - (want * c).sum(axis=axis, keepdims=True)),
                               atol=1e-12)
    cn.check_grads(lambda x: cn.log_softmax(x, axis), x / 50)
    assert cn.softmax(x.astype(np.float32), axis).dtype == np.float32


@pytest.mark.parametrize("logits, dtype, rtol", [
    ([1000, 1000], np.float16, 1e-3), ([50, 49.5, 49, 47], np.float16, 1e-3),
    ([300, 299.5, 299, 297], np.float16, 1e-3), ([1e7, 1e7], np.float32, 1e-6),
    ([1e4, 1e4 - 1], np.float32, 1e-6), ([1e16, 1e16], np.float64, 1e-15),
])
def test_softmax_keeps_its_precision_next_to_large_logits(logits, dtype, rtol):
    x = np.array(logits, dtype)
    exact = np.exp(x.astype(np.float64) - x.astype(np.float64).max())
    exact /= exact.sum()  # as the logits are held in dtype
    got = cn.softmax(x)
    assert got.dtype == dtype
    np.testing.assert_allclose(got, exact, rtol=rtol)
    np.testing.assert_allclose(cn.log_softmax(x), np.log(exact), rtol=rtol, atol=rtol)


def test_softmax_of_bools_integers_and_minus_infinity():
    np.testing.assert_allclose(cn.softmax(np.array([True, False])), [np.e / (np.e + 1),
                                                                    1 / (np.e + 1)])
    assert cn.softmax(np.array([3, 1], np.int8)).dtype == np.float64
    np.testing.assert_array_equal(cn.softmax(np.array([-np.inf, 0.0])), [0.0, 1.0])
    g, = cn.vjp(cn.softmax, np.array([-np.inf, 0.0, 0.0]))[1](np.array([1.0, 2.0, 0.0]))
    np.testing.assert_allclose(g, [0.0, 0.5, -0.5])


@pytest.mark.parametrize("holder", [list, tuple])
def test_a_list_of_traced_values_is_refused_naming_the_op_and_cn_stack(holder):
    with pytest.raises(TypeError, match=rf"^cn\.sum: an argument is a {holder.__name__} "
                                        r"of traced values, not an array; make it one with "
                                        r"cn\.stack"):
        cn.grad(lambda x: cn.sum(x))(holder([1.0, 2.0]))
    assert [float(g) for g in cn.grad(lambda x: cn.sum(cn.stack(x)))(holder([1.0, 2.0]))] == \
        [1.0, 1.0]


def test_an_in_place_operator_on_an_array_cannot_store_a_traced_value():
    target = np.ones(3)

    def fn(x):
        target.__iadd__(x)  # target += x
        return x
    with pytest.raises(TypeError, match=r"in-place operator such as x \+= t"):
        cn.vjp(fn, np.ones(3))
    np.testing.assert_array_equal(target, np.ones(3))


@pytest.mark.parametrize("sa, sb", [((3,), (3,)), ((2, 3), (3,)), ((3,), (3, 4)),
                                    ((2, 3), (3, 4)), ((5, 2, 3), (3, 4)), ((5, 2, 3), (5, 3, 4)),
                                    ((1, 2, 3), (5, 3, 4))], ids=str)
def test_matmul_follows_numpy(sa, sb):
    a, b = _rng().standard_normal(sa), _rng(1).standard_normal(sb)
    _check(lambda x, y: x @ y, a, b, reference=np.matmul)
    _check(cn.matmul, a, b, reference=np.matmul)


# ------------------------------------------------------------------ dtype
UNARY = ["exp", "tanh", "sigmoid", "relu", "negative", "abs", "sqrt", "conj", "real", "imag"]
BINARY = ["add", "subtract", "multiply", "divide", "maximum", "minimum", "power"]


@pytest.mark.parametrize("name", UNARY + BINARY + ["log", "sum", "mean", "max", "min", "logsumexp",
                                                   "transpose", "reshape", "pad", "getitem",
                                                   "matmul", "where"])
def test_float32_in_float32_out_and_float32_gradients(name):
    x = (0.5 + np.abs(_rng().standard_normal((2, 3)))).astype(np.float32)
    y = (0.5 + np.abs(_rng(1).standard_normal((2, 3)))).astype(np.float32)
    calls = {
        "log": lambda a: cn.log(a), "sum": lambda a: cn.sum(a, axis=0),
        "mean": lambda a: cn.mean(a, axis=1), "max": lambda a: cn.max(a, axis=0),
        "min": lambda a: cn.min(a, axis=0),
        "logsumexp": lambda a: cn.logsumexp(a, axis=1), "transpose": lambda a: cn.transpose(a),
        "reshape": lambda a: cn.reshape(a, (3, 2)), "pad": lambda a: cn.pad(a, 1),
        "getitem": lambda a: a[1:], "matmul": lambda a: a @ y.T,
        "where": lambda a: cn.where(a > 1, a, y),
    }
    if name in UNARY:
        fn = getattr(cn, name)
    elif name in BINARY:
        fn = lambda a: getattr(cn, name)(a, y)  # noqa: E731
    else:
        fn = calls[name]
    out, vjp_fn = cn.vjp(fn, x)
    assert out.dtype == np.float32, f"{name} forward gave {out.dtype}"
    (g,) = vjp_fn(np.ones_like(out))
    assert g.dtype == np.float32, f"{name} gradient gave {g.dtype}"
    assert np.asarray(fn(x)).dtype == np.float32  # untraced too


def test_float32_scalar_constants_do_not_upcast():
    x = np.ones((2, 2), dtype=np.float32)
    out, vjp_fn = cn.vjp(lambda a: 2.0 * a / 3.0 + 1.0 - a ** 2.0, x)
    assert out.dtype == np.float32
    assert vjp_fn(np.ones_like(out))[0].dtype == np.float32


# ------------------------------------------------------------------ aliasing
FRESH_CASES = [
    ("pad0", lambda a: cn.pad(a, 0)),
    ("add0", lambda a: cn.add(a, 0.0)),
    ("einsum-transpose", lambda a: cn.einsum("ij->ji", a)),
    ("real", lambda a: cn.real(a)), ("conj", lambda a: cn.conj(a)),
    ("real-of-complex", lambda a: cn.real(cn.astype(a, np.complex128))),
]
# Shape operations follow numpy: a view exactly where numpy gives one.
VIEW_CASES = [
    ("reshape", lambda a: cn.reshape(a, (9,)), lambda a: np.reshape(a, (9,))),
    ("transpose", lambda a: cn.transpose(a), lambda a: np.transpose(a)),
    ("getitem", lambda a: cn.getitem(a, (slice(None), 0)), lambda a: a[:, 0]),
    ("getitem-fancy", lambda a: cn.getitem(a, ([0, 2],)), lambda a: a[[0, 2]]),
]


@pytest.mark.parametrize("name, fn", FRESH_CASES, ids=[name for name, _ in FRESH_CASES])
def test_op_results_never_alias_the_operand(name, fn):
    a = _rng().standard_normal((3, 3))
    assert not np.shares_memory(fn(a), a), f"{name} returned a view of its operand"
    out, _ = cn.vjp(fn, a)
    assert not np.shares_memory(out, a), f"{name} under vjp returned a view of its operand"


@pytest.mark.parametrize("name, fn, numpy_fn", VIEW_CASES, ids=[c[0] for c in VIEW_CASES])
def test_shape_ops_alias_exactly_as_numpy_does(name, fn, numpy_fn):
    a = _rng().standard_normal((3, 3))
    assert np.shares_memory(fn(a), a) == np.shares_memory(numpy_fn(a), a), name
    np.testing.assert_array_equal(fn(a), numpy_fn(a))


def test_ops_match_numpy_at_their_edges():
    with pytest.raises(ValueError, match="pad widths must be >= 0"):
        cn.pad(np.ones((2, 1)), ((0, 0), (1, -1)))
    with pytest.raises(ValueError, match="got generator"):
        cn.concatenate(x for x in [np.ones(2), np.zeros(1)])
    assert cn.sum(np.ones((2, 3)), axis=[0, 1]) == 6.0
    assert cn.matmul(np.ones((2, 3, 4)), np.arange(4.0)).shape == (2, 3)
    with np.errstate(invalid="ignore"), pytest.warns(RuntimeWarning):
        want = np.mean(np.ones((0, 3)), axis=0)
    got = cn.mean(np.ones((0, 3)), axis=0)
    assert np.isnan(got).all() and got.shape == want.shape
    assert cn.logsumexp(np.zeros((1, 3)), axis=1).shape == (1,)


def test_every_primitive_pickles_and_copies_as_itself():
    # a copy would be no key of the rule table: a deep-copied model could not be
    # differentiated, and a pickled one could not be saved at all
    import copy
    import pickle
    from contractnet import ops
    from contractnet.api import contract
    from contractnet.trace import Primitive
    primitives = [v for v in vars(ops).values() if isinstance(v, Primitive)] + [contract]
    assert len(primitives) > 25
    for p in primitives:
        assert pickle.loads(pickle.dumps(p)) is p and copy.deepcopy(p) is p, p.name
    holder = copy.deepcopy({"act": cn.tanh})
    _, grad = cn.value_and_grad(lambda x: cn.sum(holder["act"](x)))(np.zeros(3))
    np.testing.assert_allclose(grad, np.ones(3))
