"""Backends turn a fusion Plan into an executable `f(*flat_inputs) -> outputs`: each exports
`compile(plan, *, fallback=None, reuse_buffers=False, **options)`, and may declare
RANGE_LIMITS (primitive -> {dtype: |x| limit}) where its fast code is exact only in a range.

    interpreter.py   the NumPy reference: runs the plan's graph equation by equation
    numba_cpu.py     njit loops (prange), NumPy/BLAS steps, a generated driver
    numba_cuda.py    cuda.jit grid-stride kernels, gather and matmul steps
    loopgen.py       the loop-nest generator both Numba backends share
    numba_loops.py   a scan (tracejit/loops.py) as one njit loop over its body's kernels
    kernel_cache.py  generated kernel modules on disk; tiered compile of CPU kernels
    vecmath/         vectorizable elementary functions the CPU kernels call (vm.exp ...)

Only this package imports numba, lazily, so `import tracejit` stays fast and CUDA optional.
"""
from __future__ import annotations

import importlib

import numpy as np

from ..errors import DeviceError

BACKENDS = {"interpreter": "interpreter", "numba": "numba_cpu", "cpu": "numba_cpu",
            "cuda": "numba_cuda"}


def get_backend(name: str):
    """The backend module for `name` ('interpreter', 'numba'/'cpu', 'cuda')."""
    if name not in BACKENDS:
        raise DeviceError(f"{name!r} is not a tracejit backend.\nFix: use one of "
                          f"{', '.join(map(repr, BACKENDS))}.")
    return importlib.import_module(f".{BACKENDS[name]}", __name__)


def is_device_array(x) -> bool:
    """A GPU array: anything with `__cuda_array_interface__` (Numba, CuPy, PyTorch CUDA
    tensors), or the CUDA simulator's stand-in for one (it has no such interface)."""
    return hasattr(x, "__cuda_array_interface__") or type(x).__name__ == "FakeCUDAArray"


def device_shape_dtype(x) -> tuple[tuple[int, ...], np.dtype]:
    """Shape and dtype of a device array, read without copying it to the host."""
    if type(x).__name__ == "FakeCUDAArray":
        return tuple(x.shape), np.dtype(x.dtype)
    iface = x.__cuda_array_interface__
    return tuple(iface["shape"]), np.dtype(iface["typestr"])


def to_host(x) -> np.ndarray:
    """A NumPy copy of a device array (for device='cpu' calls given GPU arrays)."""
    if hasattr(x, "copy_to_host"):
        return x.copy_to_host()
    from numba import cuda
    return cuda.as_cuda_array(x).copy_to_host()
