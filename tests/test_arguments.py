"""The argument checks every module shares: what passes, and the one wording
of each refusal."""
from __future__ import annotations

import numpy as np
import pytest

from contractnet.arguments import floating_dtype, is_int, non_negative_int, positive_int


@pytest.mark.parametrize("value, expected", [
    (3, True), (np.int64(3), True), (np.uint8(0), True), (-2, True),
    (True, False), (np.True_, False), (3.0, False), ("3", False), (None, False),
    (np.array(3), False)])
def test_is_int_takes_python_and_numpy_integers_but_not_bools(value, expected):
    assert is_int(value) is expected


def test_positive_int_returns_a_python_int_and_names_what_it_refuses():
    assert positive_int(np.int32(4), "epochs") == 4 and type(positive_int(np.int32(4), "x")) is int
    for bad in (0, -1, 2.0, True, "2", None):
        with pytest.raises(ValueError, match=f"epochs must be a positive integer, got {bad!r}"):
            positive_int(bad, "epochs")


def test_non_negative_int_takes_zero_and_none_only_where_allowed():
    assert non_negative_int(0, "seed") == 0
    assert non_negative_int(None, "seed", none_ok=True) is None
    with pytest.raises(ValueError, match="seed must be a non-negative integer, got None"):
        non_negative_int(None, "seed")
    with pytest.raises(ValueError, match="seed must be a non-negative integer or None, got -1"):
        non_negative_int(-1, "seed", none_ok=True)
    with pytest.raises(ValueError, match="seed must be a non-negative integer, got 1.5"):
        non_negative_int(1.5, "seed")


def test_floating_dtype_reads_any_spelling_and_refuses_the_rest():
    assert floating_dtype("float16") == np.float16 and floating_dtype(np.float64) == np.float64
    assert floating_dtype(">f4") == np.dtype(">f4")
    for bad, shown in (("foo", "'foo'"), (np.int32, "int32"), (complex, "complex128"),
                       ("bfloat16", "'bfloat16'"), (None, "None")):  # numpy reads None as float64
        with pytest.raises(ValueError, match=f"weights must be a floating dtype, got {shown}"):
            floating_dtype(bad, "weights")
