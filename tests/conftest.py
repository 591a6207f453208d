"""Test configuration: a fixed-seed hypothesis profile and the tests' import path.

The default ``ci`` profile is deterministic (derandomized, no example
database) and modest, so the suite gives the same answer on every run.
``HYPOTHESIS_PROFILE=dev`` explores more widely with a random seed.
"""
from __future__ import annotations

import os
import sys

from hypothesis import HealthCheck, settings

# the oracle and strategy helpers live next to the tests
sys.path.insert(0, os.path.dirname(__file__))

settings.register_profile(
    "ci",
    max_examples=100,
    deadline=None,
    derandomize=True,
    database=None,
    print_blob=True,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much],
)
settings.register_profile(
    "dev",
    max_examples=500,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much],
)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "ci"))
