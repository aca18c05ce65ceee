"""Environment flags, read once at import."""
from __future__ import annotations

import os

# 1: print graphs as functions compile; 2: also the fusion plan; 3: also generated source
DEBUG = int(os.environ.get("TRACEJIT_DEBUG", "0") or 0)
CACHE_DIR = os.environ.get("TRACEJIT_CACHE_DIR") or os.path.join(
    os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache"),
    "tracejit")
# the kernel cache's size cap: writing a new kernel evicts the least recently used ones above it
CACHE_MAX_MB = float(os.environ.get("TRACEJIT_CACHE_MAX_MB") or 1024)
DEFAULT_BACKEND = os.environ.get("TRACEJIT_BACKEND", "numba")
# processes forked to compile a cold first call's kernels in parallel (backends/ahead.py):
# unset, one per further core (at most 4); 0, none
COMPILE_WORKERS = int(os.environ["TRACEJIT_COMPILE_WORKERS"]) \
    if os.environ.get("TRACEJIT_COMPILE_WORKERS") else None
