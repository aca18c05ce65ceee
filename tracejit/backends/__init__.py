"""Backends turn a simplified joint graph into an executable `f(*flat_inputs) -> outputs`.

Only this package imports numba, lazily, so `import tracejit` stays fast and CUDA optional.
"""
from __future__ import annotations

import importlib

BACKENDS = {"interpreter": "interpreter", "numba": "numba_cpu", "cpu": "numba_cpu",
            "cuda": "numba_cuda"}


def get_backend(name: str):
    """The backend module for `name` ('interpreter', 'numba'/'cpu', 'cuda')."""
    return importlib.import_module(f".{BACKENDS[name]}", __name__)
