"""Logistic regression on a data set that need not fit in memory: L-BFGS on tracejit.dask.

    python examples/dask_logistic_regression.py             # 2e7 rows x 32 features, 2.6 GB
    python examples/dask_logistic_regression.py --quick     # 2e5 rows, a few seconds
    python examples/dask_logistic_regression.py --cluster   # the same fit on a LocalCluster
    python examples/dask_logistic_regression.py --rows 1e8  # 13 GB: streamed, never all held

Data: X ~ N(0, 1) float32[rows, 32] and y ~ Bernoulli(sigmoid(X @ w_true + b_true)), made
lazily block by block from (seed, block index): a block exists only while a task needs it, and
every evaluation makes it again, so memory holds a few blocks per Dask thread whatever the
number of rows (`--persist` keeps the blocks in memory instead, when they fit).

The loss is the mean logistic loss of one block, written in plain NumPy.
`tracejit.dask.value_and_grad(loss, reduce="mean")` runs its compiled value+gradient on
every block where the block is made, weights the block means by their row counts, and adds
them in a fixed order; scipy's L-BFGS-B (jac=True) fits the 33 coefficients. Dask's progress
bar shows each evaluation; the fit ends with the coefficients next to the true ones.
"""
import argparse
import contextlib
import time

import numpy as np
import scipy.optimize

import tracejit.dask as tjd

FEATURES, SEED = 32, 0
# stop when an iteration lowers the loss by less than this, relatively (scipy's default is
# 2.2e-9): the gradient is float32, and below this its rounding steers the line search
FTOL = 1e-9
W_TRUE = np.round(np.linspace(-1.0, 1.0, FEATURES) * np.cos(np.arange(FEATURES)), 2)
B_TRUE = -0.5


def loss(w, b, X, y):
    """Mean logistic loss of one block: softplus(z) - y*z, written to not overflow. The
    terms are float32 like the data; their mean is taken in float64, so the optimizer sees
    the loss change when a step changes it by less than float32 can show."""
    z = X @ w + b
    return np.mean((np.maximum(z, 0) + np.log1p(np.exp(-np.abs(z))) - y * z)
                   .astype(np.float64))


def make_block(k, rows):
    rng = np.random.default_rng([SEED, k])
    X = rng.standard_normal((rows, FEATURES), dtype=np.float32)
    p = 1 / (1 + np.exp(-(X @ W_TRUE.astype(np.float32) + np.float32(B_TRUE))))
    y = (rng.random(rows, dtype=np.float32) < p).astype(np.float32)
    return X, y


def lazy_data(rows, chunk_rows):
    """X and y as Dask arrays whose blocks are generated when a task needs them."""
    import dask.array as da

    chunks = (chunk_rows,) * (rows // chunk_rows) + ((rows % chunk_rows,) if rows % chunk_rows
                                                    else ())

    def block(part, block_info=None):
        info = block_info[None]
        X, y = make_block(info["chunk-location"][0], info["chunk-shape"][0])
        return X if part == "X" else y
    X = da.map_blocks(block, "X", chunks=(chunks, (FEATURES,)), dtype=np.float32,
                      meta=np.empty((0, 0), np.float32))
    y = da.map_blocks(block, "y", chunks=(chunks,), dtype=np.float32,
                      meta=np.empty((0,), np.float32))
    return X, y


def fit(X, y, client=None, progress=True):
    """L-BFGS-B on the coefficients (float64 for scipy, float32 for the data's loss)."""
    import dask
    from dask.diagnostics import ProgressBar

    vg = tjd.value_and_grad(loss, argnums=(0, 1), reduce="mean", compute=False)
    evaluations = []

    def value_and_grad(theta):
        w, b = theta[:-1].astype(np.float32), np.float32(theta[-1])
        lazy = vg(w, b, X, y)  # a Dask object: the block tasks, the tree of sums
        t0 = time.perf_counter()
        if client is not None:
            from distributed import progress as cluster_progress
            future = client.compute(lazy)
            if progress:
                cluster_progress(future)
                print()
            value, (gw, gb) = future.result()
        else:  # the current Dask scheduler: the threaded one unless configured
            with ProgressBar(dt=0.05) if progress else contextlib.nullcontext():
                value, (gw, gb) = dask.compute(lazy)[0]
        evaluations.append(time.perf_counter() - t0)
        print(f"evaluation {len(evaluations):3d}: loss {float(value):.6f}  "
              f"|grad| {np.hypot(np.linalg.norm(gw), gb):.2e}  "
              f"({evaluations[-1]:.2f} s)", flush=True)
        return float(value), np.append(gw, gb).astype(np.float64)

    result = scipy.optimize.minimize(value_and_grad, np.zeros(FEATURES + 1), jac=True,
                                     method="L-BFGS-B",
                                     options={"maxiter": 100, "ftol": FTOL, "gtol": 1e-6})
    return result, evaluations


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="2e5 rows")
    parser.add_argument("--rows", type=float, default=None, help="rows (default 2e7)")
    parser.add_argument("--chunk-rows", type=int, default=None,
                        help="rows per block (default rows/64, at least 10000)")
    parser.add_argument("--cluster", action="store_true",
                        help="fit on a dask.distributed LocalCluster (2 workers x 1 thread)")
    parser.add_argument("--persist", action="store_true",
                        help="make the blocks once and keep them in memory")
    parser.add_argument("--no-progress", action="store_true", help="no progress bars")
    args = parser.parse_args()
    rows = int(args.rows or (2e5 if args.quick else 2e7))
    chunk_rows = args.chunk_rows or max(10_000, -(-rows // 64))
    X, y = lazy_data(rows, chunk_rows)
    print(f"{rows:,} rows x {FEATURES} features float32 ({X.nbytes / 1e9:.2f} GB) in "
          f"{X.numblocks[0]} blocks of {chunk_rows:,} rows, "
          + ("kept in memory" if args.persist else "generated by each evaluation"))

    client = cluster = None
    if args.cluster:
        import logging

        from distributed import Client, LocalCluster
        cluster = LocalCluster(n_workers=2, threads_per_worker=1, dashboard_address=None,
                               silence_logs=logging.ERROR)
        client = Client(cluster)
        print(f"LocalCluster: {len(client.scheduler_info()['workers'])} workers")
    if args.persist:
        import dask
        X, y = dask.persist(X, y)
    t0 = time.perf_counter()
    result, evaluations = fit(X, y, client, progress=not args.no_progress)
    wall = time.perf_counter() - t0
    if client is not None:
        client.close()
        cluster.close()

    w, b = result.x[:-1], result.x[-1]
    print(f"\nL-BFGS-B: {result.message} after {result.nit} iterations, "
          f"{len(evaluations)} evaluations in {wall:.1f} s "
          f"(median evaluation {np.median(evaluations):.2f} s)")
    print("coefficient   true  fitted")
    for i in list(range(6)) + [FEATURES - 1]:
        print(f"  w[{i:2d}]     {W_TRUE[i]:6.2f}  {w[i]:7.4f}")
    print(f"  b         {B_TRUE:6.2f}  {b:7.4f}")
    err = max(np.max(np.abs(w - W_TRUE)), abs(b - B_TRUE))
    print(f"result: max |fitted - true| coefficient {err:.4f} over {FEATURES + 1} "
          f"coefficients, loss {result.fun:.4f}, {rows:.2g} rows")


if __name__ == "__main__":
    main()
