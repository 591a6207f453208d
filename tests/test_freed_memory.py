"""cn.keep_freed_memory: glibc's malloc keeps freed memory for new arrays."""
from __future__ import annotations

import json
import platform
import subprocess
import sys

import pytest

import contractnet as cn
from contractnet import freed_memory

ON_GLIBC = platform.system() == "Linux" and platform.libc_ver()[0] == "glibc"

# a small CNN's training step, its page faults per step counted after warm-up;
# run in a process of its own (the setting cannot be undone)
STEP_FAULTS = """
import json, resource, sys
import numpy as np
import contractnet as cn
kept = cn.keep_freed_memory() if sys.argv[1] == "kept" else None
rng = np.random.default_rng(0)
x = rng.standard_normal((16, 28, 28, 1)).astype(np.float32)
w1 = rng.standard_normal((3, 3, 1, 32)).astype(np.float32)
w2 = rng.standard_normal((3, 3, 32, 16)).astype(np.float32)
def loss(w1, w2):
    h = cn.max_pool2d(cn.relu(cn.conv2d(x, w1, padding=1)), 2)
    return cn.sum(cn.relu(cn.conv2d(h, w2, padding=1)))
step = cn.grad(loss, argnums=(0, 1))
for _ in range(3):
    step(w1, w2)
faults = lambda: resource.getrusage(resource.RUSAGE_SELF).ru_minflt
before = faults()
for _ in range(5):
    step(w1, w2)
print(json.dumps({"kept": kept, "faults": (faults() - before) / 5}))
"""


def _step_faults(setting: str) -> dict:
    done = subprocess.run([sys.executable, "-c", STEP_FAULTS, setting],
                          capture_output=True, text=True, check=True)
    return json.loads(done.stdout.splitlines()[-1])


@pytest.mark.skipif(not ON_GLIBC, reason="sets glibc's malloc thresholds")
def test_kept_freed_memory_spares_a_training_step_its_page_faults():
    default, kept = _step_faults("default"), _step_faults("kept")
    assert kept["kept"] is True and default["kept"] is None
    # thousands of fresh pages a step by default (about 3,000 here), few once kept
    assert kept["faults"] * 10 < default["faults"], (kept, default)


@pytest.mark.parametrize("nbytes", [0, -1, 1.5, True, "1GB", None])
def test_keep_freed_memory_refuses_what_is_not_a_positive_int(nbytes):
    with pytest.raises(ValueError, match="positive number of bytes"):
        cn.keep_freed_memory(nbytes)


def test_keep_freed_memory_changes_nothing_without_glibc(monkeypatch):
    monkeypatch.setattr(freed_memory.platform, "libc_ver", lambda: ("musl", "1.2"))
    monkeypatch.setattr(freed_memory.ctypes, "CDLL", pytest.fail)  # not even loaded
    assert cn.keep_freed_memory() is False
