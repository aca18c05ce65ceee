"""GPU benchmarks: W1-W4 value+gradient on the device with tracejit's CUDA backend, next to a
device-to-device copy of the workload's largest input (the bandwidth floor), JAX on its GPU
and PyTorch on CUDA when they are installed with GPU support.

    python benchmarks/gpu.py            # full sizes (1e7 elements, W3 4096x1000)
    python benchmarks/gpu.py --quick    # 1/10 sizes

Inputs are placed on the device once (tracejit reads them in place and returns device arrays),
so the times are device work plus dispatch, never host transfers. Every peer's result is
checked against NumPy by hand before it is timed. Without a GPU it says so and exits 0; the
CUDA simulator is not a GPU and is refused (it would take hours at these sizes).
"""
from __future__ import annotations

import argparse
import functools
import os
import sys
import time

if __package__ in (None, ""):
    sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import numpy as np

from benchmarks.workloads import WORKLOADS, _jax_ops, _torch_ops, _tracejit_ops, check

KEYS = ("W1", "W2", "W3", "W4")


def gpu_or_reason() -> str | None:
    """None when a real CUDA GPU is usable, else why not."""
    if os.environ.get("NUMBA_ENABLE_CUDASIM") == "1":
        return "NUMBA_ENABLE_CUDASIM=1 selects the simulator, which is not a GPU"
    try:
        from numba import cuda
    except ImportError:
        return "numba-cuda is not installed (pip install 'tracejit[cuda]')"
    if not cuda.is_available():
        return "numba-cuda found no CUDA driver or device"
    return None


def time_device(fn, sync, repeats: int) -> float:
    """Median seconds of fn() (synchronized), after one warm-up call."""
    sync(fn())
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        sync(fn())
        times.append(time.perf_counter() - t0)
    return float(np.median(times))


def peer_tracejit(wl, data):
    from numba import cuda

    import tracejit as tj
    args = [cuda.to_device(np.asarray(a)) for a in wl.ordered(data)]
    argnums = wl.argnums[0] if len(wl.argnums) == 1 else wl.argnums
    g = tj.jit_grad(functools.partial(wl.loss, _tracejit_ops(tj)), argnums=argnums,
                    device="cuda")

    def host(out):
        v, grads = out
        grads = (grads,) if len(wl.argnums) == 1 else grads
        return (float(v.copy_to_host()), tuple(gi.copy_to_host() for gi in grads))
    return (lambda: g(*args)), lambda _: cuda.synchronize(), host


def peer_copy(wl, data):
    from numba import cuda
    src = cuda.to_device(np.asarray(data[wl.copy_arg]))
    dst = cuda.device_array_like(src)
    return (lambda: dst.copy_to_device(src)), lambda _: cuda.synchronize(), None


def peer_jax(wl, data):
    import jax
    if jax.default_backend() != "gpu":
        raise RuntimeError("JAX has no GPU backend here")
    args = [jax.device_put(np.asarray(a)) for a in wl.ordered(data)]
    fn = jax.jit(jax.value_and_grad(functools.partial(wl.loss, _jax_ops(jax.numpy, jax)),
                                    argnums=wl.argnums))
    return (lambda: fn(*args)), jax.block_until_ready, \
        lambda out: (float(out[0]), tuple(np.asarray(g) for g in out[1]))


def peer_torch(wl, data):
    import torch
    if not torch.cuda.is_available():
        raise RuntimeError("PyTorch has no CUDA here")
    args = [torch.from_numpy(np.array(a, copy=True)).cuda() for a in wl.ordered(data)]
    wrt = [args[i].requires_grad_(True) for i in wl.argnums]
    loss = functools.partial(wl.loss, _torch_ops(torch))

    def call():
        value = loss(*args)
        return value.detach(), torch.autograd.grad(value, wrt)
    return call, lambda _: torch.cuda.synchronize(), \
        lambda out: (float(out[0]), tuple(g.cpu().numpy() for g in out[1]))


PEERS = {"tracejit-cuda": peer_tracejit, "d2d-copy": peer_copy, "jax-gpu": peer_jax,
         "torch-cuda": peer_torch}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--quick", action="store_true", help="1/10 sizes, fewer repeats")
    opts = ap.parse_args(argv)
    reason = gpu_or_reason()
    if reason:
        print(f"no GPU: {reason}; nothing to benchmark.")
        return 0
    repeats = 5 if opts.quick else 20
    for key in KEYS:
        wl = WORKLOADS[key]
        data = wl.make_data(opts.quick)
        ref = wl.numpy(*wl.ordered(data))
        print(f"{key} ({wl.formula})")
        for name, build in PEERS.items():
            try:
                fn, sync, host = build(wl, data)
                if host is not None:
                    ok, msg, _ = check(wl, data, ref, host(fn()))
                    if not ok:
                        print(f"  {name:14s} WRONG: {msg}")
                        continue
                ms = time_device(fn, sync, repeats) * 1e3
                print(f"  {name:14s} {ms:9.3f} ms")
            except Exception as e:  # a missing or broken peer removes its row, not the run
                print(f"  {name:14s} skipped: {type(e).__name__}: {e}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
