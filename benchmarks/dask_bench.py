"""W13: value + gradient of a logistic loss over Dask arrays (`tracejit.dask`).

    python -m benchmarks --only W13               # the runner hands W13 to this module
    python -m benchmarks.dask_bench [--quick] [--rows N] [--chunks 64] [--peers a,b]

Data: X float32[2e7, 32] (2.56 GB) and y in {0, 1} float32[2e7] in 64 row chunks, made
block by block from (seed, block index), so the in-memory arrays and the blocks generated on
cluster workers hold the same numbers. Loss: sum(softplus(X@w) - y*(X@w)) (dask-glm's
`Logistic.loglike`), gradient w.r.t. w float32[32].

Peers (rows of the table; `/tracejit` divides by the in-process tracejit row):

    numpy                 NumPy by hand on the in-memory arrays (also the correctness check)
    tracejit              tj.value_and_grad(loss) on the in-memory arrays, one process
    jax                   jax.jit(jax.value_and_grad(loss)) on the same arrays (device_put once)
    tjd-threads           tracejit.dask.value_and_grad on da.from_array(X): threaded
                          scheduler, default threads (2 Dask threads x 1 Numba thread here)
    tjd-threads-1         the same with 1 Dask thread x 1 Numba thread (scaling with threads)
    tjd-sync              synchronous scheduler (1 Dask thread x all cores in Numba)
    dask-glm              dask_glm.families.Logistic pointwise_loss + pointwise_gradient,
                          computed together: one evaluation of dask-glm's lbfgs (threaded)
    tjd-cluster-1         LocalCluster, 1 worker process x 1 thread (2 Numba threads),
                          data generated and persisted on the worker
    tjd-cluster-2         LocalCluster, 2 worker processes x 1 thread (1 Numba thread each)
    dask-glm-cluster-2    dask-glm's evaluation on the 2-worker cluster

Per-chunk overhead: the same calls on 64 chunks of 16 rows (no work in the blocks), time per
call / 64, for the threaded and synchronous schedulers and the 2-worker cluster.
Results: benchmarks/results/dask-<date>-<time>[-quick].json and a table on stdout.
"""
from __future__ import annotations

import argparse
import json
import logging
import os
import statistics
import sys
import time
import traceback

if __package__ in (None, ""):
    sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import numpy as np

from benchmarks import timing

HERE = os.path.dirname(os.path.abspath(__file__))
RESULTS_DIR = os.path.join(HERE, "results")
F32 = np.float32
SEED = 13
W_TRUE = (np.linspace(-1.0, 1.0, 32) / 4).astype(F32)
PEERS = ("numpy", "tracejit", "jax", "tjd-threads", "tjd-threads-1", "tjd-sync", "dask-glm",
         "tjd-cluster-1", "tjd-cluster-2", "dask-glm-cluster-2")


def loss(F, w, X, y):
    z = X @ w
    return F.sum(F.maximum(z, 0) + F.log1p(F.exp(-F.abs(z))) - y * z)


def w13(w, X, y):  # what tracejit traces: plain NumPy
    return loss(np, w, X, y)


def make_block(k: int, rows: int, cols: int) -> tuple[np.ndarray, np.ndarray]:
    """Block k of the data: X ~ N(0, 1), y ~ Bernoulli(sigmoid(X @ w_true))."""
    rng = np.random.default_rng([SEED, k])
    X = rng.standard_normal((rows, cols), dtype=F32)
    p = 1 / (1 + np.exp(-(X @ W_TRUE[:cols])))
    y = (rng.random(rows, dtype=F32) < p).astype(F32)
    return X, y


def chunk_rows(rows: int, chunks: int) -> tuple[int, ...]:
    return tuple(rows * (k + 1) // chunks - rows * k // chunks for k in range(chunks))


def in_memory(rows: int, cols: int, chunks: int) -> tuple[np.ndarray, np.ndarray]:
    X, y = np.empty((rows, cols), F32), np.empty(rows, F32)
    start = 0
    for k, r in enumerate(chunk_rows(rows, chunks)):
        X[start:start + r], y[start:start + r] = make_block(k, r, cols)
        start += r
    return X, y


def generated(rows: int, cols: int, chunks: int):
    """The same data as lazily generated Dask arrays (made where the task runs)."""
    import dask.array as da

    def gen(part, block_info=None):
        info = block_info[None]
        X, y = make_block(info["chunk-location"][0], info["chunk-shape"][0], cols)
        return X if part == "X" else y
    rc = chunk_rows(rows, chunks)
    X = da.map_blocks(gen, "X", chunks=(rc, (cols,)), dtype=F32, meta=np.empty((0, 0), F32))
    y = da.map_blocks(gen, "y", chunks=(rc,), dtype=F32, meta=np.empty((0,), F32))
    return X, y


def reference(X: np.ndarray, y: np.ndarray, w: np.ndarray) -> tuple[float, np.ndarray]:
    """Value and gradient in float64, block by block (the check for every peer)."""
    v, g = 0.0, np.zeros(X.shape[1])
    for s in range(0, X.shape[0], 1 << 20):
        Xb = X[s:s + (1 << 20)].astype(np.float64)
        z = Xb @ w.astype(np.float64)
        v += float(np.sum(np.logaddexp(0, z) - y[s:s + (1 << 20)] * z))
        g += Xb.T @ (1 / (1 + np.exp(-z)) - y[s:s + (1 << 20)])
    return v, g


def numpy_by_hand(w, X, y):
    z = X @ w
    e = np.exp(-np.abs(z))
    value = np.sum(np.maximum(z, 0) + np.log1p(e) - y * z)
    sig = np.where(z >= 0, 1 / (1 + e), e / (1 + e))
    return value, X.T @ (sig - y)


# --------------------------------------------------------------------------------------------
# Peers: build(ctx) -> zero-argument callable returning (value, grad)


def build(name: str, ctx: dict):
    w = ctx["w"]
    if name == "numpy":
        return lambda: numpy_by_hand(w, ctx["X"], ctx["y"])
    if name == "tracejit":
        import tracejit as tj
        vg = tj.value_and_grad(w13)
        return lambda: vg(w, ctx["X"], ctx["y"])
    if name == "jax":
        import jax
        import jax.numpy as jnp
        f = jax.jit(jax.value_and_grad(lambda w, X, y: loss(jnp, w, X, y)))
        args = [jax.device_put(a) for a in (w, ctx["X"], ctx["y"])]
        return lambda: jax.block_until_ready(f(*args))
    if name.startswith("tjd-"):
        import tracejit.dask as tjd
        threads = {"tjd-threads-1": 1}.get(name)
        vg = tjd.value_and_grad(w13, numba_threads=threads)
        X, y = ctx["Xd"], ctx["yd"]
        if name == "tjd-sync":
            return _with_config(lambda: vg(w, X, y), scheduler="sync")
        if name.startswith("tjd-threads"):
            return _with_config(lambda: vg(w, X, y), scheduler="threads",
                                num_workers=threads or timing.usable_cores())
        return lambda: vg(w, X, y)
    if name.startswith("dask-glm"):
        import dask
        from dask_glm.families import Logistic
        X, y = ctx["Xd"], ctx["yd"]
        return lambda: dask.compute(Logistic.pointwise_loss(w, X, y),
                                    Logistic.pointwise_gradient(w, X, y))
    raise KeyError(name)


def _with_config(fn, **config):
    import dask

    def call():
        with dask.config.set(**config):
            return fn()
    return call


def check(got, ref) -> tuple[bool, str]:
    """Value within 1e-3 relative (float32 sums of 2e7 terms), gradient within 1e-3 of its
    largest element."""
    v, g = float(got[0]), np.asarray(got[1], dtype=np.float64)
    rv, rg = ref
    ev = abs(v - rv) / abs(rv)
    eg = float(np.max(np.abs(g - rg))) / float(np.max(np.abs(rg)))
    ok = ev <= 1e-3 and eg <= 1e-3 and np.all(np.isfinite(g))
    return ok, f"value rel err {ev:.1e}, grad err {eg:.1e} of max"


# --------------------------------------------------------------------------------------------
# Timing: calls of 0.05-2 s; other processes' CPU is measured without this process's
# children (cluster workers)


def tree_cpu_s() -> float:
    import psutil
    me = psutil.Process()
    total = sum(me.cpu_times()[:2])
    for child in me.children(recursive=True):
        try:
            total += sum(child.cpu_times()[:2])
        except psutil.Error:
            pass
    return total


def machine_busy_s() -> float | None:
    snap = timing.cpu_snapshot()
    return None if snap is None else snap[0] / timing._CLK_TCK


def time_calls(fn, repeats: int, max_s: float) -> dict:
    t0 = time.perf_counter()
    out = fn()
    first = time.perf_counter() - t0
    _settle()
    fn()
    busy0, own0, t0 = machine_busy_s(), tree_cpu_s(), time.perf_counter()
    samples = []
    while len(samples) < repeats and (len(samples) < 3 or time.perf_counter() - t0 < max_s):
        t = time.perf_counter()
        fn()
        samples.append(time.perf_counter() - t)
    wall = time.perf_counter() - t0
    busy1, own1 = machine_busy_s(), tree_cpu_s()
    foreign = None if busy0 is None else max(0.0, (busy1 - busy0 - (own1 - own0)) / wall)
    return {"first_call_s": first, "median_s": statistics.median(samples),
            "min_s": min(samples), "calls": len(samples), "foreign_cores": foreign,
            "out": out}


def paired(ctx: dict, names: list[str], pairs: int, peer_ctx: dict | None = None) -> dict:
    """Median ratio of each peer to in-process tracejit over alternating calls: both sides
    of a pair see the same foreign load, so the ratio holds on a shared machine."""
    base = build("tracejit", ctx)
    out = {}
    for name in names:
        fn = build(name, peer_ctx or ctx)
        fn(), base()
        ratios = []
        for _ in range(pairs):
            t0 = time.perf_counter()
            base()
            t1 = time.perf_counter()
            fn()
            ratios.append((time.perf_counter() - t1) / (t1 - t0))
        out[name] = statistics.median(ratios)
    return out


def _settle() -> None:
    import sys as _sys
    if "tracejit" in _sys.modules:
        _sys.modules["tracejit"].wait_compiled()


def overhead(ctx_small: dict, names: list[str], repeats: int, suffix: str = "") -> dict:
    """Per-chunk overhead: seconds per call / chunks on tiny blocks, for the peers `names`
    and for Dask's own `dask.compute(X.sum(0), y.sum())` on the same chunks."""
    import dask
    timing.wait_until_quiet(0.1, 30.0)
    X, y = ctx_small["Xd"], ctx_small["yd"]
    fns = {name: build(name, ctx_small) for name in names}
    fns["dask X.sum(0)" + suffix] = lambda: dask.compute(X.sum(axis=0), y.sum())
    if names and names[0].startswith("tjd-threads"):
        fns["dask X.sum(0)" + suffix] = _with_config(fns["dask X.sum(0)" + suffix],
                                                     scheduler="threads")
    return {name: time_calls(fn, repeats, 10.0)["median_s"] / ctx_small["chunks"]
            for name, fn in fns.items()}


# --------------------------------------------------------------------------------------------


def start_cluster(workers: int):
    from distributed import Client, LocalCluster
    cluster = LocalCluster(n_workers=workers, threads_per_worker=1, processes=True,
                           dashboard_address=None, silence_logs=logging.CRITICAL)
    return cluster, Client(cluster)


def run_peer(name: str, ctx: dict, ref, args) -> dict:
    rec = {"peer": name, "status": "ok", "message": ""}
    try:
        fn = build(name, ctx)
        t = None
        for attempt in range(1 + args.retries):  # a shared machine: keep the quietest try
            if args.retries:
                timing.wait_until_quiet(0.1, args.quiet_wait)
            ti = time_calls(fn, args.repeats, args.max_peer_s)
            if t is None or (ti["foreign_cores"] or 0) < (t["foreign_cores"] or 0):
                t = ti
            if (t["foreign_cores"] or 0) <= 0.2:
                break
        t["attempts"] = attempt + 1
    except ImportError as e:
        return {**rec, "status": "not installed", "message": str(e)[:120]}
    except Exception as e:  # noqa: BLE001 - a broken peer is a table row, not a crash
        return {**rec, "status": "error", "message": f"{type(e).__name__}: {e}"[:200],
                "traceback": traceback.format_exc(limit=6)}
    ok, msg = check(t.pop("out"), ref)
    rec.update(t, message=msg, status="ok" if ok else "failed check")
    print(f"  {name:<20}{_ms(rec.get('median_s'))} ms  ({msg}; first call "
          f"{rec['first_call_s']:.2f} s; others {rec['foreign_cores'] or 0:.2f} cores)",
          flush=True)
    return rec


def _ms(s) -> str:
    return "-" if s is None else f"{s * 1e3:9.0f}"


def print_table(recs: list[dict], overhead_s: dict, args) -> None:
    base = next((r["median_s"] for r in recs if r["peer"] == "tracejit" and "median_s" in r),
                None)
    print(f"\nW13  logistic loss value+grad, X float32[{args.rows:.2g}, {args.cols}] "
          f"({args.rows * args.cols * 4 / 1e9:.2f} GB) in {args.chunks} chunks, "
          f"grad w[{args.cols}]")
    print(f"  {'peer':<20}{'median ms':>10}{'min ms':>9}{'/tracejit':>10}{'first call':>12}"
          f"{'others':>8}  status / check")
    for r in recs:
        ratio = f"{r['median_s'] / base:.2f}x" if base and "median_s" in r else "-"
        first = f"{r['first_call_s']:.2f} s" if "first_call_s" in r else "-"
        other = "-" if r.get("foreign_cores") is None else f"{r['foreign_cores']:.2f}"
        if other != "-" and r["foreign_cores"] > 0.2:
            other += "*"
        print(f"  {r['peer']:<20}{_ms(r.get('median_s')):>10}{_ms(r.get('min_s')):>9}"
              f"{ratio:>10}{first:>12}{other:>8}  {r['status']}: {r['message']}")
    by = {r["peer"]: r.get("median_s") for r in recs}
    for a, b in (("tjd-threads-1", "tjd-threads"), ("tjd-cluster-1", "tjd-cluster-2")):
        if by.get(a) and by.get(b):
            print(f"  scaling {a} -> {b}: {by[a] / by[b]:.2f}x faster")
    for name, s in overhead_s.items():
        print(f"  per-chunk overhead {name:<28}{s * 1e6:8.0f} us per chunk "
              f"({args.chunks} chunks of 16 rows)")


def parse_args(argv=None):
    ap = argparse.ArgumentParser(prog="python -m benchmarks.dask_bench", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="2e6 rows, 3 repeats")
    ap.add_argument("--rows", type=float, default=None, help="rows (default 2e7, quick 2e6)")
    ap.add_argument("--cols", type=int, default=32)
    ap.add_argument("--chunks", type=int, default=64)
    ap.add_argument("--peers", help=f"comma list from {', '.join(PEERS)}")
    ap.add_argument("--repeats", type=int, default=None, help="timed calls (default 9, quick 3)")
    ap.add_argument("--max-peer-s", type=float, default=30.0)
    ap.add_argument("--retries", type=int, default=None,
                    help="time a peer again when other processes used > 0.2 cores meanwhile "
                         "(default 2, quick 0)")
    ap.add_argument("--quiet-wait", type=float, default=60.0,
                    help="seconds to wait for the machine to go quiet before each try")
    ap.add_argument("--out", default=RESULTS_DIR)
    ap.add_argument("--no-save", action="store_true")
    ap.add_argument("--warm-cache", action="store_true",
                    help="use TRACEJIT_CACHE_DIR as set (default: a fresh one, so the first "
                         "calls include compiling, as in the runner)")
    args = ap.parse_args(argv)
    args.rows = int(args.rows or (2e6 if args.quick else 2e7))
    args.repeats = args.repeats or (3 if args.quick else 9)
    if args.retries is None:
        args.retries = 0 if args.quick else 2
    return args


def main(argv=None) -> int:
    args = parse_args(argv)
    peers = [p.strip() for p in args.peers.split(",")] if args.peers else list(PEERS)
    unknown = set(peers) - set(PEERS)
    if unknown:
        raise SystemExit(f"unknown peers {sorted(unknown)}; known: {', '.join(PEERS)}")
    cold = None
    if not args.warm_cache and "tracejit" not in sys.modules:
        import tempfile  # before tracejit is imported; cluster workers inherit it
        cold = os.environ["TRACEJIT_CACHE_DIR"] = tempfile.mkdtemp(prefix="bench-cold-cache-")
    import dask.array as da
    machine = timing.machine_info()
    print(f"{machine['cpu_model']}, {machine['cores_usable']} cores; W13 "
          f"{args.rows:.3g} x {args.cols} float32 in {args.chunks} chunks"
          + ("  [QUICK]" if args.quick else ""), flush=True)
    t_all = time.perf_counter()
    X, y = in_memory(args.rows, args.cols, args.chunks)
    w = (np.linspace(0.5, -0.5, args.cols) / 8).astype(F32)
    ref = reference(X, y, w)
    rc = chunk_rows(args.rows, args.chunks)
    ctx = {"w": w, "X": X, "y": y, "Xd": da.from_array(X, chunks=(rc, -1)),
           "yd": da.from_array(y, chunks=(rc,))}
    small_X, small_y = in_memory(16 * args.chunks, args.cols, args.chunks)
    small = {"w": w, "X": small_X, "y": small_y, "chunks": args.chunks,
             "Xd": da.from_array(small_X, chunks=(16, -1)),
             "yd": da.from_array(small_y, chunks=(16,))}
    print(f"data ready in {time.perf_counter() - t_all:.0f} s", flush=True)
    recs = [run_peer(p, ctx, ref, args) for p in peers if "cluster" not in p]
    ratios = {}
    if "tracejit" in peers:
        ratios = paired(ctx, [p for p in ("tjd-threads", "tjd-sync") if p in peers],
                        args.repeats)
    over = overhead(small, [p for p in ("tjd-threads", "tjd-sync") if p in peers],
                    args.repeats * 3, " (threads)")
    del ctx["Xd"], ctx["yd"]
    for workers in (1, 2):
        names = [p for p in peers if p.endswith(f"cluster-{workers}")]
        if not names:
            continue
        cluster, client = start_cluster(workers)
        try:
            import dask
            Xd, yd = generated(args.rows, args.cols, args.chunks)
            Xd, yd = dask.persist(Xd, yd)
            from distributed import wait
            wait([Xd, yd])
            cctx = {"w": w, "Xd": Xd, "yd": yd}
            recs += [run_peer(p, cctx, ref, args) for p in names]
            if "tracejit" in peers and f"tjd-cluster-{workers}" in names:
                ratios.update(paired(ctx, [f"tjd-cluster-{workers}"], args.repeats, cctx))
            if workers == 2 and "tjd-cluster-2" in names:
                Xs, ys = dask.persist(small["Xd"], small["yd"])
                over.update(overhead({**small, "Xd": Xs, "yd": ys}, ["tjd-cluster-2"],
                                     args.repeats * 3, " (cluster-2)"))
        finally:
            client.close()
            cluster.close()
    print_table(recs, over, args)
    for name, r in ratios.items():
        print(f"  paired {name} / tracejit: {r:.2f}x (median of {args.repeats} alternating "
              "pairs)")
    print(f"total {time.perf_counter() - t_all:.0f} s")
    if cold:
        import shutil
        shutil.rmtree(cold, ignore_errors=True)
    if args.no_save:
        return 0
    os.makedirs(args.out, exist_ok=True)
    stem = os.path.join(args.out, time.strftime("dask-%Y%m%d-%H%M%S")
                        + ("-quick" if args.quick else ""))
    import importlib.metadata
    versions = {}
    for name in ("dask", "distributed", "dask-glm", "threadpoolctl"):
        try:
            versions[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            versions[name] = None
    machine["libraries"].update(versions)
    payload = {"machine": machine, "config": {k: v for k, v in vars(args).items()},
               "results": recs, "per_chunk_overhead_s": over, "paired_ratio": ratios,
               "argv": sys.argv[1:]}
    with open(stem + ".json", "w") as f:
        json.dump(payload, f, indent=1, default=str)
    print(f"wrote {os.path.relpath(stem + '.json', os.path.dirname(HERE))}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
