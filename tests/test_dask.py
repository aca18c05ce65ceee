"""tracejit.dask: value and gradient over Dask arrays against tracejit on the concatenated
data (sum and mean, uneven and empty chunks, one chunk, pytree parameters, argnums tuples,
has_aux), on the threaded and synchronous schedulers and a 2-process LocalCluster; the
errors raised before any task runs; a worker killed mid-computation; peak memory while a
lazily generated array ten times the chunk budget streams through."""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys

import numpy as np
import pytest

da = pytest.importorskip("dask.array")
import dask  # noqa: E402
from dask.delayed import Delayed  # noqa: E402
from helpers import line_of  # noqa: E402

import tracejit as tj  # noqa: E402
import tracejit.dask as tjd  # noqa: E402

HERE = os.path.abspath(__file__)
ROOT = os.path.dirname(os.path.dirname(HERE))
N, D = 10_007, 5
CHUNKS = (3000, 2500, 1, 4506)  # uneven, one single-row block


def logistic_mean(w, X, y):
    z = X @ w
    return np.mean(np.maximum(z, 0) + np.log1p(np.exp(-np.abs(z))) - y * z)


def logistic_sum(w, X, y):
    z = X @ w
    return np.sum(np.maximum(z, 0) + np.log1p(np.exp(-np.abs(z))) - y * z)


@pytest.fixture(scope="module")
def data():
    rng = np.random.default_rng(0)
    X = rng.standard_normal((N, D))
    y = (rng.random(N) < 0.5).astype(np.float64)
    w = 0.3 * rng.standard_normal(D)
    return w, X, y


def chunked(X, y, chunks=CHUNKS):
    return da.from_array(X, chunks=(chunks, -1)), da.from_array(y, chunks=(chunks,))


def assert_close(got, want, rtol=1e-12):
    np.testing.assert_allclose(got, want, rtol=rtol, atol=rtol * np.max(np.abs(want)))


# ----- equality with tracejit on the whole data -----
@pytest.mark.parametrize("reduce,f", [("mean", logistic_mean), ("sum", logistic_sum)])
def test_value_and_grad_matches_single_process(data, reduce, f):
    w, X, y = data
    ref_v, ref_g = tj.value_and_grad(f)(w, X, y)
    v, g = tjd.value_and_grad(f, reduce=reduce)(w, *chunked(X, y))
    assert type(v) is type(ref_v) and g.dtype == ref_g.dtype and g.shape == ref_g.shape
    assert_close(v, ref_v)
    assert_close(g, ref_g)


def test_float32_keeps_dtypes_and_matches(data):
    w, X, y = (a.astype(np.float32) for a in data)
    ref_v, ref_g = tj.value_and_grad(logistic_sum)(w, X, y)
    v, g = tjd.value_and_grad(logistic_sum)(w, *chunked(X, y))
    assert type(v) is np.float32 and g.dtype == np.float32
    assert_close(v, ref_v, rtol=1e-5)
    assert_close(g, ref_g, rtol=1e-5)


def test_one_chunk_is_tracejit_exactly(data):
    w, X, y = data
    ref_v, ref_g = tj.value_and_grad(logistic_sum)(w, X, y)
    v, g = tjd.value_and_grad(logistic_sum)(w, *chunked(X, y, chunks=(N,)))
    assert v == ref_v and np.array_equal(g, ref_g)


def test_empty_blocks_are_skipped(data):
    w, X, y = data
    ref_v, ref_g = tj.value_and_grad(logistic_mean)(w, X, y)
    v, g = tjd.value_and_grad(logistic_mean, reduce="mean")(
        w, *chunked(X, y, chunks=(0, 5000, 0, N - 5000)))
    assert np.isfinite(v)  # f on 0 rows would be 0/0
    assert_close(v, ref_v)
    assert_close(g, ref_g)


def test_pytree_parameters(data):
    w, X, y = data

    def f(params, X, y):
        z = X @ params["w"] + params["b"][0]
        return np.mean((z - y) ** 2) + 0.1 * np.sum(params["w"] ** 2)
    params = {"w": w, "b": [np.float64(0.25)]}
    ref_v, ref_g = tj.value_and_grad(f)(params, X, y)
    v, g = tjd.value_and_grad(f, reduce="mean")(params, *chunked(X, y))
    assert set(g) == {"w", "b"} and isinstance(g["b"], list)
    assert_close(v, ref_v)
    assert_close(g["w"], ref_g["w"])
    assert_close(g["b"][0], ref_g["b"][0])


def test_argnums_tuple_and_keyword_data(data):
    w, X, y = data

    def f(w, b, X, y):
        return logistic_mean(w, X, y) + b * b
    ref_v, (ref_gw, ref_gb) = tj.value_and_grad(f, argnums=(0, 1))(w, 0.5, X, y)
    Xd, yd = chunked(X, y)
    v, (gw, gb) = tjd.value_and_grad(f, argnums=(0, 1), reduce="mean")(w, 0.5, X=Xd, y=yd)
    assert_close(v, ref_v)
    assert_close(gw, ref_gw)
    assert_close(gb, ref_gb)


def test_has_aux_is_a_list_per_block(data):
    w, X, y = data

    def f(w, X, y):
        z = X @ w
        return logistic_mean(w, X, y), (z, np.sum(z > 0))
    (ref_v, (ref_z, _)), ref_g = tj.value_and_grad(f, has_aux=True)(w, X, y)
    (v, aux), g = tjd.value_and_grad(f, reduce="mean", has_aux=True)(w, *chunked(X, y))
    assert len(aux) == len(CHUNKS)
    np.testing.assert_allclose(np.concatenate([a[0] for a in aux]), ref_z, rtol=1e-12)
    assert sum(int(a[1]) for a in aux) == int(np.sum(ref_z > 0))
    assert_close(v, ref_v)
    assert_close(g, ref_g)
    g2, aux2 = tjd.grad(f, reduce="mean", has_aux=True)(w, *chunked(X, y))
    assert np.array_equal(g2, g) and len(aux2) == len(CHUNKS)


def test_grad(data):
    w, X, y = data
    assert_close(tjd.grad(logistic_mean, reduce="mean")(w, *chunked(X, y)),
                 tj.grad(logistic_mean)(w, X, y))


def test_compute_false_returns_delayed(data):
    w, X, y = data
    vg = tjd.value_and_grad(logistic_mean, reduce="mean")
    d = tjd.value_and_grad(logistic_mean, reduce="mean", compute=False)(w, *chunked(X, y))
    assert isinstance(d, Delayed)
    (v, g), = dask.compute(d)
    v2, g2 = vg(w, *chunked(X, y))
    assert v == v2 and np.array_equal(g, g2)


# ----- schedulers and determinism -----
def test_threaded_and_sync_schedulers_each_same_bits(data):
    # the same bits on every run with the same chunks and thread settings (across the two
    # schedulers only close: BLAS rounding may depend on its thread count)
    w, X, y = data
    vg = tjd.value_and_grad(logistic_mean, reduce="mean")
    Xd, yd = chunked(X, y, chunks=(700,) * 14 + (N - 9800,))
    ref_v, ref_g = tj.value_and_grad(logistic_mean)(w, X, y)
    for scheduler in ("threads", "sync"):
        with dask.config.set(scheduler=scheduler, num_workers=2):
            runs = [vg(w, Xd, yd) for _ in range(3)]
        for v, g in runs[1:]:
            assert v == runs[0][0] and np.array_equal(g, runs[0][1])
        assert_close(runs[0][0], ref_v)
        assert_close(runs[0][1], ref_g)


def test_numba_threads_share_the_cores():
    cores = tjd._cores()
    with dask.config.set(scheduler="threads", num_workers=2):
        assert tjd._plan_threads(None) == max(1, cores // 2)
    with dask.config.set(scheduler="sync"):
        assert tjd._plan_threads(None) == cores
        assert tjd._plan_threads(3) == 3


# ----- errors, raised before any task runs -----
def assert_user_error(excinfo, cls, marker: str, *words: str) -> None:
    err, msg = excinfo.value, str(excinfo.value)
    assert isinstance(err, cls) and isinstance(err, tj.TracejitError), f"{type(err)}: {msg}"
    assert f'File "{HERE}", line {line_of(HERE, marker)}' in msg, msg
    assert any(ln.startswith("Fix: ") for ln in msg.splitlines()), msg
    for w in words:
        assert w in msg, f"{w!r} missing from:\n{msg}"


def counted(X, calls):
    """X as a Dask array whose blocks count their computation in `calls`."""
    def touch(b):
        calls.append(1)
        return b
    return da.from_array(X, chunks=(3000, -1)).map_blocks(touch, dtype=X.dtype,
                                                          meta=np.empty((0, 0), X.dtype))


def test_error_nonscalar_loss_before_any_task(data):
    w, X, y = data
    calls = []
    vg = tjd.value_and_grad(lambda w, X, y: X @ w - y)  # MARK-dask-nonscalar
    with pytest.raises(tj.GradientError) as e:
        vg(w, counted(X, calls), da.from_array(y, chunks=3000))
    assert_user_error(e, tj.GradientError, "# MARK-dask-nonscalar", "scalar", "before any Dask")
    assert calls == []


def test_error_chunked_along_columns(data):
    w, X, y = data
    calls = []
    Xd = counted(X, calls).rechunk((3000, 2))
    with pytest.raises(tjd.ChunkError) as e:
        tjd.value_and_grad(logistic_mean)(w, Xd, da.from_array(y, chunks=3000))  # MARK-cols
    assert_user_error(e, tjd.ChunkError, "# MARK-cols", "axis 1", "rechunk")
    assert isinstance(e.value, ValueError) and calls == []


def test_error_row_chunks_differ(data):
    w, X, y = data
    calls, y2000 = [], da.from_array(y, chunks=2000)
    with pytest.raises(tjd.ChunkError) as e:
        tjd.value_and_grad(logistic_mean)(w, counted(X, calls), y2000)  # MARK-rows
    assert_user_error(e, tjd.ChunkError, "# MARK-rows", "different row chunks", "X.chunks[0]")
    assert calls == []


def test_error_unknown_chunks_and_no_dask_array(data):
    w, X, y = data
    Xd = da.from_array(X, chunks=(3000, -1))
    unknown = Xd[da.from_array(y, chunks=3000) > 0.5]
    with pytest.raises(tjd.ChunkError) as e:
        tjd.value_and_grad(logistic_mean)(w, unknown, unknown[:, 0])  # MARK-unknown
    assert_user_error(e, tjd.ChunkError, "# MARK-unknown", "compute_chunk_sizes")
    with pytest.raises(tj.ArgumentError) as e:
        tjd.value_and_grad(logistic_mean)(w, X, y)  # MARK-nodask
    assert_user_error(e, tj.ArgumentError, "# MARK-nodask", "Dask array")


def test_error_argnums_on_dask_array_and_bad_options(data):
    w, X, y = data
    with pytest.raises(tj.ArgnumsError) as e:
        tjd.grad(logistic_mean, argnums=1)(w, *chunked(X, y))  # MARK-argnums
    assert_user_error(e, tj.ArgnumsError, "# MARK-argnums", "argnums=1")
    with pytest.raises(ValueError, match="reduce"):
        tjd.value_and_grad(logistic_mean, reduce="max")
    with pytest.raises(ValueError, match="split_every"):
        tjd.value_and_grad(logistic_mean, split_every=1)


# ----- a LocalCluster with 2 worker processes -----
@pytest.fixture(scope="module")
def client():
    distributed = pytest.importorskip("distributed")
    import logging

    import cloudpickle
    # the losses and generators below travel by value: a worker need not import this file
    cloudpickle.register_pickle_by_value(sys.modules[__name__])
    cluster = distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=True,
                                       dashboard_address=None, silence_logs=logging.CRITICAL)
    with distributed.Client(cluster) as c:
        yield c
    cluster.close()
    cloudpickle.unregister_pickle_by_value(sys.modules[__name__])


def test_local_cluster_matches_and_compiles_once_per_worker(client, data):
    w, X, y = data
    vg = tjd.value_and_grad(logistic_mean, reduce="mean")
    Xd, yd = chunked(X, y, chunks=(1000,) * 10 + (7,))
    v, g = vg(w, Xd, yd)
    ref_v, ref_g = tj.value_and_grad(logistic_mean)(w, X, y)
    assert_close(v, ref_v)
    assert_close(g, ref_g)

    def transform_id(token=vg.token):
        t = tjd._TRANSFORMS.get(token)
        return None if t is None else (id(t), len(t._cache))
    first = client.run(transform_id)
    vg(w * 0.5, Xd, yd)  # new parameters: the same compiled function on each worker
    again = client.run(transform_id)
    assert {a: i for a, (i, _) in again.items()} == {a: i for a, (i, _) in first.items()}
    assert all(entries <= 2 for _, entries in again.values())  # blocks of 1000 and 7 rows
    v3, g3 = vg(w, Xd, yd)
    assert v3 == v and np.array_equal(g3, g)  # the same bits on every run
    Xp, yp = client.persist([Xd, yd])  # blocks held by the workers, not in the graph
    v4, g4 = vg(w, Xp, yp)
    assert v4 == v and np.array_equal(g4, g)


def block_data(seed: int, rows: int, blocks: int, kill_marker: str | None = None):
    """X[rows*blocks, D] and y, generated lazily per block from (seed, block index).
    With kill_marker: the first process to make block 5 creates the marker and dies."""
    def gen_X(block_info=None):
        k = block_info[None]["chunk-location"][0]
        if kill_marker and k == 5 and not os.path.exists(kill_marker):
            with open(kill_marker, "w") as f:
                f.write(str(os.getpid()))
            os.kill(os.getpid(), signal.SIGKILL)
        return np.random.default_rng([seed, k]).standard_normal((rows, D))

    def gen_y(block_info=None):
        k = block_info[None]["chunk-location"][0]
        return (np.random.default_rng([seed + 1, k]).random(rows) < 0.5).astype(np.float64)
    chunks = ((rows,) * blocks,)
    X = da.map_blocks(gen_X, chunks=chunks + ((D,),), dtype=np.float64, meta=np.empty((0, 0)))
    y = da.map_blocks(gen_y, chunks=chunks, dtype=np.float64, meta=np.empty((0,)))
    return X, y


def test_local_cluster_worker_killed_same_result(client, tmp_path):
    w = np.linspace(-0.5, 0.5, D)
    vg = tjd.value_and_grad(logistic_mean, reduce="mean")
    v, g = vg(w, *block_data(3, 2000, 12))
    pids = set(client.run(os.getpid).values())
    marker = str(tmp_path / "killed")
    v2, g2 = vg(w, *block_data(3, 2000, 12, kill_marker=marker))
    with open(marker) as f:
        killed = int(f.read())
    assert killed in pids  # a worker process died while computing block 5
    assert v2 == v and np.array_equal(g2, g)
    client.wait_for_workers(2, timeout=60)
    assert killed not in set(client.run(os.getpid).values())


# ----- memory: a lazily generated array 10x the chunk budget streams -----
MEMORY_CHILD = r"""
import json, sys
import numpy as np, dask
import tracejit.dask as tjd
from test_dask import block_data, logistic_mean

def status(key):
    with open("/proc/self/status") as f:
        return next(int(l.split()[1]) * 1024 for l in f if l.startswith(key + ":"))

rows, blocks = int(sys.argv[1]), int(sys.argv[2])
vg = tjd.value_and_grad(logistic_mean, reduce="mean")
w = np.full(5, 0.1)
with dask.config.set(scheduler="threads", num_workers=2):
    for _ in range(3):  # compile and warm up on small blocks: not part of the peak
        vg(w, *block_data(1, 1000, 2))
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")  # VmHWM := VmRSS
    except OSError as e:
        print(json.dumps({"skip": f"cannot reset the peak RSS: {e}"}))
        sys.exit(0)
    base = status("VmRSS")
    v, g = vg(w, *block_data(1, rows, blocks))
print(json.dumps({"growth": status("VmHWM") - base, "value": float(v)}))
"""


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc/self/status")
def test_memory_streams_ten_times_the_chunk_budget():
    rows, threads = 250_000, 2
    block_bytes = rows * (D + 1) * 8  # one block of X and of y: 12 MB
    budget = 3 * threads * block_bytes  # a few blocks per Dask thread: 72 MB
    blocks = 10 * budget // block_bytes  # the data: 60 blocks, 720 MB
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(
        [ROOT, os.path.dirname(HERE)] + [p for p in [os.environ.get("PYTHONPATH")] if p]))
    proc = subprocess.run([sys.executable, "-c", MEMORY_CHILD, str(rows), str(blocks)],
                          env=env, capture_output=True, text=True, timeout=300, check=False)
    assert proc.returncode == 0, proc.stderr[-3000:]
    out = json.loads(proc.stdout.strip().splitlines()[-1])
    if "skip" in out:
        pytest.skip(out["skip"])
    assert np.isfinite(out["value"])
    assert 0 < out["growth"] < budget, f"peak RSS grew {out['growth'] / 1e6:.0f} MB for " \
        f"{blocks * block_bytes / 1e6:.0f} MB of data (budget {budget / 1e6:.0f} MB)"

