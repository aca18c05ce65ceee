"""Value and gradient of a loss over Dask arrays: tracejit's compiled value+grad runs on each
row block where the block lives, and a fixed-order tree reduction adds the results.

    import tracejit.dask as tjd
    vg = tjd.value_and_grad(loss, reduce="mean")   # loss(w, X, y) = mean over X's rows
    value, g = vg(w, X, y)    # X, y: Dask arrays chunked along rows; w: NumPy (a parameter)

The graph of one call (split_every=8; each name is one Dask task):

    params ----------+-----------+-- ... --+-----------+--  ...   one key, sent once per call
    X[0], y[0] --> block 0       |         |           |          tracejit value+grad of the
    X[1], y[1] --> block 1 ...   block 7   block 8 ... block 15   block: (rows, value, grads)
                   |             |         |           |
                   +-- combine --+         +-- combine-+          float64 sums in block order:
                          +---------- combine ----+               the tree's shape depends on
                                   finish                         the number of blocks only
                       (mean: / rows; cast to the block dtypes)

Per block it calls the public `tracejit.value_and_grad` (and `make_ir` to check the loss
before any task runs), as a user would; nothing in tracejit imports this module.
"""
from __future__ import annotations

import collections
import contextlib
import functools
import sys
import threading
import uuid
from collections.abc import Callable
from typing import Any

import numpy as np

from . import api, pytree
from .errors import (
    ArgnumsError,
    ArgumentError,
    ShapeError,
    TracejitError,
    trim_traceback,
    user_error,
)

try:
    import dask
    import dask.array as da
    import dask.core
    from dask.delayed import Delayed
    from dask.highlevelgraph import HighLevelGraph
    try:
        from dask.task_spec import DataNode, Task, TaskRef
    except ImportError:  # pragma: no cover - dask 2025.1: only the private module
        from dask._task_spec import DataNode, Task, TaskRef
except ImportError as e:  # pragma: no cover - the extra is not installed
    raise ImportError("tracejit.dask needs Dask 2025.1 or later: pip install "
                      "'tracejit[dask]' (dask[array], distributed, threadpoolctl).") from e

__all__ = ["ChunkError", "grad", "value_and_grad"]

_REDUCES = ("sum", "mean")


class ChunkError(ShapeError):
    """Dask arguments chunked other than along rows, or with row chunks that differ."""


# ----- the per-process compiled function a block task calls -----
# A task is pickled to reach a distributed worker; the compiled kernels are not (they hold
# Numba dispatchers and locks). A worker process rebuilds `tj.value_and_grad(fn)` once per
# transform (keyed by a token made when the user built it) and keeps it here, so it traces
# and compiles (or loads from the on-disk kernel cache) once per process, not once per task.
_TRANSFORMS: collections.OrderedDict[str, Any] = collections.OrderedDict()
_TRANSFORMS_MAX = 64
_transforms_lock = threading.Lock()


class _BlockFn:
    """`tj.value_and_grad(fn, **options)` that pickles as (token, fn, options)."""

    def __init__(self, token: str, fn: Callable, options: dict) -> None:
        self.token, self.fn, self.options = token, fn, options
        self.vg = _transform(token, fn, options)

    def __reduce__(self):
        return (_BlockFn, (self.token, self.fn, self.options))


def _transform(token: str, fn: Callable, options: dict):
    """The process's compiled value+grad for `token`, built on first use (LRU of 64)."""
    with _transforms_lock:
        vg = _TRANSFORMS.get(token)
        if vg is None:
            vg = api.value_and_grad(fn, **options)
            _TRANSFORMS[token] = vg
            while len(_TRANSFORMS) > _TRANSFORMS_MAX:
                _TRANSFORMS.popitem(last=False)
        else:
            _TRANSFORMS.move_to_end(token)
        return vg


# ----- tasks: one block, combine, finish -----
class _Partial:
    """A sum over some blocks: rows, value and gradient leaves (float64), aux per block."""

    __slots__ = ("aux", "grads", "meta", "rows", "value")

    def __init__(self, rows, value, grads, aux, meta) -> None:
        self.rows, self.value, self.grads, self.aux, self.meta = rows, value, grads, aux, meta


class _BlockTask:
    """One call's block task. What is the same for every block (the function, the argument
    layout) is held here, not passed as task arguments, where Dask looks for keys."""

    def __init__(self, block_fn: _BlockFn, spec: tuple) -> None:
        self.block_fn, self.spec = block_fn, spec

    def __call__(self, params: _Params, *blocks: np.ndarray) -> _Partial:
        """Run the compiled value+grad on one row block (mean: weighted by its rows)."""
        treedef, dask_slots, has_aux, weighted, threads = self.spec
        leaves = [_aligned(x) for x in params.leaves]
        for slot, b in zip(dask_slots, blocks):
            leaves[slot] = _aligned(b)
        args, kwargs = pytree.unflatten(treedef, leaves)
        rows = blocks[0].shape[0]
        with _numba_threads(threads):
            out, grads = self.block_fn.vg(*args, **kwargs)
        value, aux = out if has_aux else (out, None)
        g_leaves, g_tree = pytree.flatten(grads)
        w = float(rows) if weighted else 1.0
        meta = (np.asarray(value).dtype, [np.asarray(g).dtype for g in g_leaves], g_tree)
        return _Partial(rows, float(value) * w,
                        [np.asarray(g, dtype=np.float64) * w for g in g_leaves],
                        [aux] if has_aux else [], meta)


def _aligned(x):
    """`x`, copied if its data is not aligned to its item size. Arrays that come over the
    network can start at any byte; Numba compiles a separate, differently vectorized loop
    for those, whose rounding differs (the result would depend on where a block landed)."""
    return x.copy() if isinstance(x, np.ndarray) and not x.flags.aligned else x


def _combine(*parts: _Partial) -> _Partial:
    """Sum partials in the order given (block order: deterministic), in float64."""
    first = parts[0]
    grads = [np.array(g, dtype=np.float64, copy=True) for g in first.grads]
    value, rows, aux = first.value, first.rows, list(first.aux)
    for p in parts[1:]:
        value += p.value
        rows += p.rows
        for acc, g in zip(grads, p.grads):
            acc += g
        aux += p.aux
    return _Partial(rows, value, grads, aux, first.meta)


def _finish(total: _Partial, mode: str, has_aux: bool, mean: bool):
    """The user's result from the root partial: divide by the rows (mean), cast to the
    dtypes one block returned, rebuild the gradient's structure."""
    value_dtype, grad_dtypes, g_tree = total.meta
    scale = 1.0 / total.rows if mean else 1.0
    value = np.asarray(total.value * scale, dtype=value_dtype)[()]
    grads = pytree.unflatten(g_tree, [np.asarray(g * scale, dtype=dt)[()]
                                      for g, dt in zip(total.grads, grad_dtypes)])
    if mode == "grad":
        return (grads, total.aux) if has_aux else grads
    return ((value, total.aux) if has_aux else value), grads


# ----- Numba threads per task -----
@contextlib.contextmanager
def _numba_threads(n):
    """Run a block with `n` Numba threads in this thread (Numba's setting is per thread),
    then restore the count. `n` is an int, or a dict {host: Dask threads on that host} for
    a distributed worker to work out its share of its machine's cores."""
    import numba  # loaded already by `import tracejit`
    n = n if isinstance(n, int) else _worker_share(n)
    n = max(1, min(n, numba.config.NUMBA_NUM_THREADS))
    old = numba.get_num_threads()
    if n != old:
        numba.set_num_threads(n)
    try:
        yield
    finally:
        if n != old:
            numba.set_num_threads(old)


_CONTROLLER: list = []


@contextlib.contextmanager
def _blas_threads(n):
    """Cap BLAS threads (process-wide, through threadpoolctl when installed) at `n` for one
    call on a local scheduler, where Dask threads already fill the cores: a matmul in each of
    two Dask threads, each with two OpenBLAS threads, made W13 2x slower on 2 cores.
    Distributed workers start with one BLAS thread (Dask's default), so a dict `n` is left
    alone, as is a share of all the cores."""
    if not isinstance(n, int) or n >= _cores() or _client() is not None:
        yield
        return
    try:
        if not _CONTROLLER:
            from threadpoolctl import ThreadpoolController
            _CONTROLLER.append(ThreadpoolController())
        limit = _CONTROLLER[0].limit(limits=n, user_api="blas")
    except ImportError:
        limit = contextlib.nullcontext()
    with limit:
        yield


def _client():
    """The dask.distributed Client that dask.compute would use now, or None."""
    from dask.base import get_scheduler
    distributed = sys.modules.get("distributed")
    client = getattr(get_scheduler(), "__self__", None)
    return client if distributed is not None and isinstance(client, distributed.Client) \
        else None


def _cores() -> int:
    from dask.system import CPU_COUNT  # affinity and cgroup limits taken into account
    return CPU_COUNT


def _worker_share(host_threads: dict) -> int:
    """On a distributed worker: its machine's cores / Dask threads of all workers there."""
    from distributed import get_worker
    from distributed.comm import get_address_host
    try:
        worker = get_worker()
    except ValueError:  # not on a worker after all (a client-side fallback)
        return _cores()
    host = get_address_host(worker.address)
    return _cores() // max(1, host_threads.get(host, worker.state.nthreads))


def _plan_threads(override: int | None):
    """Numba threads per task for the scheduler in use: `override`, or the machine's cores
    divided by the Dask threads that share them (threaded: the pool size; sync: 1;
    processes: one each; distributed: all workers' threads on the worker's host)."""
    if override is not None:
        return override
    import dask.local
    import dask.multiprocessing
    from dask.base import get_scheduler
    sched, client = get_scheduler(), _client()
    if client is not None:
        try:
            info = client.scheduler_info(n_workers=-1)
        except TypeError:  # older distributed: no n_workers argument (reports them all)
            info = client.scheduler_info()
        host_threads: dict[str, int] = {}
        for w in info.get("workers", {}).values():
            host_threads[w["host"]] = host_threads.get(w["host"], 0) + w["nthreads"]
        return host_threads
    if sched is dask.local.get_sync:
        return _cores()
    if sched is dask.multiprocessing.get:
        return max(1, _cores() // (dask.config.get("num_workers", None) or _cores()))
    pool = dask.config.get("pool", None)
    workers = dask.config.get("num_workers", None) or getattr(pool, "_max_workers", None)
    return max(1, _cores() // (workers or _cores()))


# ----- the transform -----
class DaskTransformed:
    """`value_and_grad`/`grad` of a loss over Dask arrays (see `value_and_grad`)."""

    def __init__(self, fn: Callable, *, mode: str, argnums=0, reduce: str = "sum",
                 has_aux: bool = False, unconnected: str = "zero", compute: bool = True,
                 split_every: int = 8, numba_threads: int | None = None) -> None:
        self.fn, self.mode, self.has_aux, self.compute = fn, mode, has_aux, compute
        self.name = f"tracejit.dask.{mode}({getattr(fn, '__name__', 'fn')})"
        if reduce not in _REDUCES:
            raise ValueError(f"{self.name}: reduce must be 'sum' or 'mean', got {reduce!r}. "
                             "Fix: reduce='sum' when f sums over its block's rows, 'mean' "
                             "when it averages them.")
        if not isinstance(split_every, int) or split_every < 2:
            raise ValueError(f"{self.name}: split_every must be an int >= 2, got "
                             f"{split_every!r}.")
        if numba_threads is not None and (not isinstance(numba_threads, int)
                                          or numba_threads < 1):
            raise ValueError(f"{self.name}: numba_threads must be None (automatic) or an "
                             f"int >= 1, got {numba_threads!r}.")
        self.reduce, self.split_every, self.numba_threads = reduce, split_every, numba_threads
        self.options = dict(argnums=argnums, has_aux=has_aux, unconnected=unconnected)
        self.token = f"{getattr(fn, '__name__', 'fn')}-{uuid.uuid4().hex}"
        self.block_fn = _BlockFn(self.token, fn, self.options)  # checks the options
        self.argnums = (argnums,) if isinstance(argnums, int) else tuple(argnums)
        self._checked: set = set()

    def __repr__(self) -> str:
        return f"<{self.name}>"

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        try:
            leaves, treedef, slots = self._split(args, kwargs)
            self._check_loss(args, kwargs, leaves, treedef, slots)
            threads = _plan_threads(self.numba_threads)
            result = self._graph(leaves, treedef, slots, threads)
        except TracejitError as e:
            raise trim_traceback(e)
        if not self.compute:
            return result
        with _blas_threads(threads):
            return dask.compute(result)[0]

    # --- 1. checks, before any task runs ---
    def _split(self, args: tuple, kwargs: dict) -> tuple[list, Any, list[int]]:
        """Flat leaves of (args, kwargs), their treedef, and the slots of the Dask arrays
        (checked: at least one, chunked along rows only, the same row chunks)."""
        leaves, treedef = pytree.flatten((args, kwargs))
        slots = [i for i, x in enumerate(leaves) if isinstance(x, da.Array)]
        if not slots:
            raise user_error(ArgumentError, f"{self.name}: no argument is a Dask array.",
                             "pass the data as Dask arrays chunked along rows, e.g. "
                             "da.from_array(X, chunks=(100_000, -1)); for NumPy data use "
                             "tracejit.value_and_grad.")
        self._check_argnums(args)
        first = leaves[slots[0]]
        for i in slots:
            x = leaves[i]
            if x.ndim == 0:
                raise user_error(ChunkError, f"{self.name}: a 0-d Dask array has no rows "
                                 "to split.", "pass it computed (as a NumPy scalar), or "
                                 "give it a leading row axis.")
            if any(np.isnan(c) for c in x.chunks[0]):
                raise user_error(ChunkError, f"{self.name}: a Dask array {_desc(x)} has "
                                 "unknown row-chunk sizes.", "call x.compute_chunk_sizes() "
                                 "first (or build it with known lengths).")
            multi = [ax for ax in range(1, x.ndim) if len(x.chunks[ax]) > 1]
            if multi:
                raise user_error(ChunkError, f"{self.name}: a Dask array {_desc(x)} is "
                                 f"chunked along axis {multi[0]} (blocks {x.chunksize}); "
                                 "blocks must hold whole rows.", "rechunk it to one chunk "
                                 "along the other axes: "
                                 f"x.rechunk({{{', '.join(f'{a}: -1' for a in multi)}}}).")
            if x.chunks[0] != first.chunks[0]:
                raise user_error(ChunkError, f"{self.name}: Dask arrays {_desc(first)} and "
                                 f"{_desc(x)} have different row chunks "
                                 f"({_rows(first)} vs {_rows(x)}).",
                                 "rechunk them alike, e.g. y = y.rechunk({0: X.chunks[0]}).")
        if sum(first.chunks[0]) == 0:
            raise user_error(ChunkError, f"{self.name}: the Dask arrays have no rows.",
                             "pass data with at least one row.")
        return leaves, treedef, slots

    def _check_argnums(self, args: tuple) -> None:
        for i in self.argnums:
            if -len(args) <= i < len(args) and any(
                    isinstance(x, da.Array) for x in pytree.flatten(args[i])[0]):
                raise user_error(ArgnumsError, f"{self.name}: argnums={i} points at a Dask "
                                 "array; tracejit.dask differentiates the parameters (NumPy "
                                 "arguments), whose gradient is a sum over blocks.",
                                 "differentiate w.r.t. NumPy arguments, or use "
                                 "tracejit.value_and_grad on in-memory data.")

    def _check_loss(self, args, kwargs, leaves, treedef, slots) -> None:
        """Trace f (and its gradient, not compiled) on one block's shapes: a non-scalar
        loss, bad argnums or has_aux raise here with the user's line, before any task."""
        key = (treedef, tuple(_leaf_key(x) for x in leaves))
        if key in self._checked:
            return
        rows = next(c for c in leaves[slots[0]].chunks[0] if c)
        stand_in = list(leaves)
        for i in slots:  # zero-stride views: shape and dtype, no memory
            x = leaves[i]
            stand_in[i] = np.broadcast_to(np.zeros((), x.dtype), (rows,) + x.shape[1:])
        s_args, s_kwargs = pytree.unflatten(treedef, stand_in)
        try:
            api.make_ir(api.value_and_grad(self.fn, **self.options))(*s_args, **s_kwargs)
        except TracejitError as e:
            what, _, rest = str(e).partition("\n")
            what = what.replace("tracejit.value_and_grad(", f"{self.name} -> "
                                "tracejit.value_and_grad(", 1)
            raise type(e)(f"{what} (traced on one block of {rows} rows, before any Dask "
                          f"task ran)\n{rest}") from None
        self._checked.add(key)

    # --- 2. the graph ---
    def _graph(self, leaves: list, treedef, slots: list[int], threads) -> Delayed:
        """A Delayed computing the user's result: block tasks, a tree of combines, finish.
        One low-level layer (building it from dask.delayed calls cost 0.4 ms a block)."""
        arrays = dask.optimize(*[leaves[i] for i in slots])  # shared inputs computed once
        keys = [list(dask.core.flatten(a.__dask_keys__())) for a in arrays]
        params = _Params([None if i in slots else x for i, x in enumerate(leaves)])
        token = dask.base.tokenize(self.token, params.leaves, [a.name for a in arrays],
                                   self.reduce, self.numba_threads)
        spec = (treedef, tuple(slots), self.has_aux, self.reduce == "mean", threads)
        task, pkey = _BlockTask(self.block_fn, spec), f"tracejit-params-{token}"
        layer: dict = {pkey: DataNode(pkey, params)}
        parts = []
        for k, rows in enumerate(arrays[0].chunks[0]):
            if rows:
                parts.append(("tracejit-block-" + token, k))
                layer[parts[-1]] = _task(parts[-1], task, pkey, *[b[k] for b in keys])
        level = 0
        while len(parts) > 1:  # the tree's shape depends only on the number of blocks
            groups = [parts[j:j + self.split_every]
                      for j in range(0, len(parts), self.split_every)]
            parts = [(f"tracejit-combine-{level}-{token}", j) for j in range(len(groups))]
            layer.update({key: _task(key, _combine, *g) for key, g in zip(parts, groups)})
            level += 1
        final = f"tracejit-{self.mode}-{token}"
        layer[final] = _task(final, functools.partial(
            _finish, mode=self.mode, has_aux=self.has_aux, mean=self.reduce == "mean"),
            parts[0])
        return Delayed(final, HighLevelGraph.from_collections(final, layer, arrays))


def _task(key, fn: Callable, *deps) -> Task:
    """A task calling fn on the values of the keys `deps`. The references are explicit: in a
    legacy tuple task a key is found only if the graph holds it, and persisted blocks live
    on the cluster, not in the graph (they would arrive as the key tuple itself)."""
    return Task(key, fn, *[TaskRef(d) for d in deps])


class _Params:
    """The parameters' leaves (None where a block goes): one graph value, taken literally."""

    __slots__ = ("leaves",)

    def __init__(self, leaves: list) -> None:
        self.leaves = leaves


def _leaf_key(x) -> tuple:
    if isinstance(x, da.Array):
        return ("dask", x.dtype, x.shape[1:])
    if isinstance(x, np.ndarray):
        return (x.dtype, x.shape)
    return (type(x), np.shape(x))


def _desc(x) -> str:
    return f"{x.dtype}{list(x.shape)}"


def _rows(x) -> str:
    c = x.chunks[0]
    return str(c) if len(c) <= 6 else f"({', '.join(map(str, c[:3]))}, ..., {c[-1]}; " \
                                      f"{len(c)} blocks)"


# ----- public constructors -----
def value_and_grad(fn: Callable | None = None, *, argnums=0, reduce: str = "sum",
                   has_aux: bool = False, unconnected: str = "zero", compute: bool = True,
                   split_every: int = 8, numba_threads: int | None = None):
    """Value and gradient of a loss over Dask arrays, computed block by block where the
    blocks live and summed by a deterministic tree reduction.

    Call the result with the same arguments as `fn`: the data as Dask arrays chunked along
    axis 0 only (all sharing their row chunks), the parameters as NumPy arrays, scalars or
    pytrees of them (sent once per call, one task reads them). `fn` is given NumPy blocks
    (one row block of every Dask argument) and compiled with `tracejit.value_and_grad`.

    Args:
        fn: the loss of one row block: a float scalar (or `(scalar, aux)` with has_aux).
        argnums: the parameters to differentiate, as in `tracejit.value_and_grad` (an int:
            a bare gradient; a tuple: a tuple of them). They cannot be Dask arrays.
        reduce: "sum": `fn` sums over its block's rows and the result is the sum over blocks;
            "mean": `fn` averages over its rows and blocks are weighted by their row counts,
            so the result is `fn` on the whole data.
        has_aux: `fn` returns `(loss, aux)`; the result's aux is a list with one entry per
            non-empty block, in block order (concatenate or add them as they mean).
        unconnected: "zero" or "none", as in `tracejit.value_and_grad`.
        compute: False returns a `dask.delayed.Delayed` that computes to the same result,
            to put into a larger graph (`dask.compute(a, b)`, `client.compute(d)`).
        split_every: fan-in of the tree reduction (default 8).
        numba_threads: Numba threads per block task. Default: the machine's cores divided
            by the Dask threads sharing them (the threaded scheduler's pool size, 1 for
            the synchronous one, all workers' threads on a distributed worker's host), so
            Dask threads x Numba threads do not oversubscribe the cores.

    Returns:
        A function returning `(value, grads)` (or `((value, aux), grads)`) as NumPy values,
        equal to `tracejit.value_and_grad(fn)` on the concatenated data up to the rounding
        of the reduction order (blocks are combined in float64, then cast back): the same
        bits on every run with the same chunks and threads per task.

    It runs on Dask's current scheduler: the threaded one when nothing is configured, a
    `dask.distributed.Client` when one is active, or `dask.config.set(scheduler=...)`.
    Blocks with no rows are skipped.

    Example:
        >>> X = da.from_array(x_np, chunks=(100_000, -1)); y = da.from_array(y_np, 100_000)
        >>> vg = tracejit.dask.value_and_grad(lambda w, X, y: np.mean((X @ w - y) ** 2),
        ...                                   reduce="mean")
        >>> value, g = vg(np.zeros(X.shape[1]), X, y)
    """
    options = dict(argnums=argnums, reduce=reduce, has_aux=has_aux, unconnected=unconnected,
                   compute=compute, split_every=split_every, numba_threads=numba_threads)
    if fn is None:
        return lambda f: DaskTransformed(f, mode="value_and_grad", **options)
    return DaskTransformed(fn, mode="value_and_grad", **options)


def grad(fn: Callable | None = None, *, argnums=0, reduce: str = "sum", has_aux: bool = False,
         unconnected: str = "zero", compute: bool = True, split_every: int = 8,
         numba_threads: int | None = None):
    """The gradient of a loss over Dask arrays (with has_aux: `(grads, aux)`).

    Same options and semantics as `value_and_grad`.

    Example:
        >>> g = tracejit.dask.grad(loss, reduce="mean")(w, X, y)
    """
    options = dict(argnums=argnums, reduce=reduce, has_aux=has_aux, unconnected=unconnected,
                   compute=compute, split_every=split_every, numba_threads=numba_threads)
    if fn is None:
        return lambda f: DaskTransformed(f, mode="grad", **options)
    return DaskTransformed(fn, mode="grad", **options)

