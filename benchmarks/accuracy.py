"""Accuracy of float32 reductions: relative error against the same computation in float64.

    python -m benchmarks.accuracy                      # n = 1e6, 1e7, 1e8
    python -m benchmarks.accuracy --sizes 1e6,1e7 --peers tracejit,numpy

Quantities, on W1's data (x: float32 standard normal, `data_w1`): `sum(x*x)` (each peer's
jitted `sum(x*x)`: tracejit's `tj.jit`, NumPy's pairwise `np.sum`, `jax.jit`) and W1's loss
`sum(tanh(x)*sin(x) + 0.5*x*x)` as each peer's value-and-gradient call returns it. The
reference is the float64 computation on the same float32 inputs, so a peer that rounds its
float32 result correctly still shows that rounding (up to 6e-8; the `rounded` column gives
it for each row). JAX is skipped when it is not installed. 1e8 needs about 3 GB of memory.
"""
from __future__ import annotations

import argparse
import importlib.util
from types import SimpleNamespace

import numpy as np

from .workloads import WORKLOADS, build_jax, data_w1, loss_w1, numpy_w1, tracejit_loss

PEERS = ("tracejit", "numpy", "jax")


def _sum_sq(peer: str):
    """The peer's `x -> sum(x*x)`, compiled where the peer compiles."""
    if peer == "tracejit":
        import tracejit as tj
        return tj.jit(lambda x: np.sum(x * x))
    if peer == "numpy":
        return lambda x: np.sum(x * x)
    import jax
    import jax.numpy as jnp
    f = jax.jit(lambda x: jnp.sum(x * x))
    return lambda x: f(jax.device_put(x)).block_until_ready()


def _w1_value(peer: str, x: np.ndarray) -> float:
    """W1's loss as the peer's value-and-gradient call returns it."""
    if peer == "tracejit":
        import tracejit as tj
        f, _ = tracejit_loss(WORKLOADS["W1"])
        return float(tj.jit_grad(f)(x)[0])
    if peer == "numpy":
        return float(numpy_w1(x)[0])
    built = build_jax(WORKLOADS["W1"], {"x": x})
    return float(built.fn()[0])


def _w1_reference(x: np.ndarray) -> float:
    F = SimpleNamespace(tanh=np.tanh, sin=np.sin, sum=np.sum)
    return float(loss_w1(F, x.astype(np.float64)))


def _rounding(ref: float) -> float:
    """The error of the exact value rounded to float32: the least any float32 result has."""
    return abs(float(np.float32(ref)) - ref) / abs(ref)


def measure(sizes: list[int], peers: list[str]) -> list[tuple[str, int, dict]]:
    rows = []
    for n in sizes:
        x = data_w1(n)["x"]
        x64 = x.astype(np.float64)
        ref = float(np.sum(x64 * x64))
        errs = {p: abs(float(_sum_sq(p)(x)) - ref) / abs(ref) for p in peers}
        rows.append(("sum(x*x)", n, dict(errs, rounded=_rounding(ref))))
        del x64
        ref = _w1_reference(x)
        errs = {p: abs(_w1_value(p, x) - ref) / abs(ref) for p in peers}
        rows.append(("W1 loss", n, dict(errs, rounded=_rounding(ref))))
    return rows


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sizes", default="1e6,1e7,1e8", help="comma-separated element counts")
    ap.add_argument("--peers", default=",".join(PEERS))
    args = ap.parse_args(argv)
    sizes = [int(float(s)) for s in args.sizes.split(",")]
    peers = [p for p in args.peers.split(",")
             if p != "jax" or importlib.util.find_spec("jax") is not None]
    rows = measure(sizes, peers)
    print("relative error against float64 (float32 inputs: W1's data, standard normal);")
    print("'rounded': the exact value rounded to float32, the least error a float32 result has")
    cols = peers + ["rounded"]
    print(f"{'quantity':10s} {'n':>6s} " + " ".join(f"{p:>10s}" for p in cols))
    for name, n, errs in rows:
        print(f"{name:10s} {n:6.0e} " + " ".join(f"{errs[p]:10.1e}" for p in cols))


if __name__ == "__main__":
    main()
