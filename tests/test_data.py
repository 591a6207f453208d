"""The digits loader and the seeded batch iterator."""
from __future__ import annotations

import sys

import numpy as np
import pytest

from contractnet import data

sklearn_datasets = pytest.importorskip("sklearn.datasets")


def test_digits_shapes_range_and_labels():
    d = data.load_digits()
    assert d.x_train.shape == (1438, 8, 8, 1) and d.x_test.shape == (359, 8, 8, 1)
    assert d.x_train.dtype == np.float32 and d.y_train.dtype == np.int64
    assert d.x_train.min() == 0.0 and d.x_train.max() == 1.0
    assert set(np.unique(d.y_train)) == set(range(10))


def test_digits_are_sklearns_images_scaled_channels_last():
    bunch = sklearn_datasets.load_digits()
    d = data.load_digits(test_fraction=0.25, seed=4, dtype=np.float64)
    order = np.random.default_rng(4).permutation(1797)  # the documented split
    test, train = order[:449], order[449:]
    np.testing.assert_array_equal(d.x_test[..., 0] * 16, bunch.images[test])
    np.testing.assert_array_equal(d.x_train[..., 0] * 16, bunch.images[train])
    np.testing.assert_array_equal(d.y_test, bunch.target[test])
    np.testing.assert_array_equal(d.y_train, bunch.target[train])


def test_split_is_deterministic_per_seed_and_disjoint():
    a, b, c = data.load_digits(seed=1), data.load_digits(seed=1), data.load_digits(seed=2)
    np.testing.assert_array_equal(a.x_test, b.x_test)
    assert not np.array_equal(a.y_test, c.y_test)
    train_rows = {r.tobytes() for r in a.x_train.reshape(len(a.x_train), -1)}
    overlap = sum(r.tobytes() in train_rows for r in a.x_test.reshape(len(a.x_test), -1))
    assert overlap <= 3  # only the dataset's own duplicate images


@pytest.mark.parametrize("kwargs, message", [
    ({"test_fraction": 1.0}, r"test_fraction must be a number in \(0, 1\), got 1.0"),
    ({"test_fraction": 0.9999}, "both the training and the test set"),  # rounds to empty
    ({"test_fraction": 0.0001}, "both the training and the test set"),
    ({"dtype": np.int32}, "dtype must be a floating dtype, got int32"),
    ({"seed": 1.5}, "seed must be a non-negative integer, got 1.5"),
    ({"seed": -1}, "seed must be a non-negative integer, got -1"),
    ({"seed": True}, "seed must be a non-negative integer, got True"),
    ({"test_fraction": None}, r"test_fraction must be a number in \(0, 1\), got None"),
    ({"test_fraction": "0.5"}, r"test_fraction must be a number in \(0, 1\), got '0.5'"),
    ({"test_fraction": float("nan")}, r"test_fraction must be a number in \(0, 1\), got nan"),
    ({"dtype": "foo"}, "dtype must be a floating dtype, got 'foo'"),
])
def test_load_digits_names_the_bad_argument(kwargs, message):
    with pytest.raises(ValueError, match=message):
        data.load_digits(**kwargs)


def test_missing_scikit_learn_names_the_extra(monkeypatch):
    monkeypatch.setitem(sys.modules, "sklearn.datasets", None)  # import now fails
    with pytest.raises(ImportError, match=r"contractnet\[data\]"):
        data.load_digits()


def test_batches_cover_every_row_once_in_a_seeded_order():
    x, y = np.arange(10), np.arange(10) * 2
    got = list(data.batches(x, y, 3, rng=5))
    assert [len(b) for b, _ in got] == [3, 3, 3, 1]
    order = np.concatenate([b for b, _ in got])
    assert sorted(order.tolist()) == list(range(10))
    assert order.tolist() == np.random.default_rng(5).permutation(10).tolist()
    for b, t in got:
        np.testing.assert_array_equal(t, b * 2)
    again = np.concatenate([b for b, _ in data.batches(x, y, 3, rng=5)])
    np.testing.assert_array_equal(order, again)


def test_batches_generator_gives_a_new_order_each_epoch_and_drop_last():
    x = np.arange(10)
    g = np.random.default_rng(0)
    first = np.concatenate([b for b, _ in data.batches(x, x, 4, rng=g)])
    second = np.concatenate([b for b, _ in data.batches(x, x, 4, rng=g)])
    assert not np.array_equal(first, second)
    assert [len(b) for b, _ in data.batches(x, x, 4, drop_last=True, shuffle=False)] == [4, 4]
    assert [b.tolist() for b, _ in data.batches(x[:5], x[:5], 2, shuffle=False)] == [
        [0, 1], [2, 3], [4]]


def test_batches_validate_at_the_call():
    with pytest.raises(ValueError, match="rows"):
        data.batches(np.ones(3), np.ones(4), 2)
    with pytest.raises(ValueError, match="batch_size"):
        data.batches(np.ones(3), np.ones(3), 0)


def test_the_data_module_is_an_attribute_of_the_package_and_loads_no_scikit_learn():
    import subprocess
    code = ("import sys, contractnet as cn; print(cn.data.load_digits.__name__, "
            "cn.data.batches.__name__, 'sklearn' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.split() == ["load_digits", "batches", "False"]
