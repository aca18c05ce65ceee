"""Hypothesis profiles and the `backend` fixture shared by the test suite."""
from __future__ import annotations

import os
import sys

import pytest
from hypothesis import HealthCheck, settings

sys.path.insert(0, os.path.dirname(__file__))  # `import helpers` from any test file

from helpers import BACKENDS  # noqa: E402

# CI: derandomized so a failure reproduces; dev: random, a few more examples
settings.register_profile("ci", derandomize=True, deadline=None, max_examples=40,
                          print_blob=True, suppress_health_check=[HealthCheck.too_slow])
settings.register_profile("dev", deadline=None, max_examples=60,
                          suppress_health_check=[HealthCheck.too_slow])
settings.load_profile("ci" if os.environ.get("CI") else
                      os.environ.get("HYPOTHESIS_PROFILE", "dev"))


@pytest.fixture(params=BACKENDS)
def backend(request) -> str:
    """Each backend tracejit has: 'interpreter' always, 'numba' once it exists."""
    return request.param
