"""Hypothesis profiles and the `backend` fixture shared by the test suite."""
from __future__ import annotations

import os
import shutil
import sys
import tempfile

import pytest
from hypothesis import HealthCheck, settings

# the suite's kernels go to a temporary cache, not the user's (~/.cache/tracejit), unless the
# caller chose one; set before tracejit is imported (config reads it once), and inherited by
# the tests' subprocesses
if not os.environ.get("TRACEJIT_CACHE_DIR"):
    SESSION_CACHE = os.environ["TRACEJIT_CACHE_DIR"] = tempfile.mkdtemp(prefix="tracejit-tests-")
else:
    SESSION_CACHE = None


def pytest_unconfigure(config):
    if SESSION_CACHE is not None:
        cache = sys.modules.get("tracejit.backends.kernel_cache")
        if cache is not None:
            cache.wait_compiled()  # background compiles write into the folder
        shutil.rmtree(SESSION_CACHE, ignore_errors=True)


def _has_cuda_gpu() -> bool:
    """A CUDA driver with at least one device, asked through libcuda (not numba.cuda, whose
    import would fix the simulator choice)."""
    import ctypes
    try:
        lib = ctypes.CDLL("libcuda.so.1")
    except OSError:
        return False
    count = ctypes.c_int(0)
    return lib.cuInit(0) == 0 and lib.cuDeviceGetCount(ctypes.byref(count)) == 0 and \
        count.value > 0


# the CUDA tests run on a real GPU when there is one, else on Numba's CUDA simulator, which
# must be chosen before numba.cuda is first imported (numba's CPU code ignores the flag)
if "NUMBA_ENABLE_CUDASIM" not in os.environ and not _has_cuda_gpu():
    os.environ["NUMBA_ENABLE_CUDASIM"] = "1"

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
