"""Generated kernel modules on disk, and CPU kernels that pick their compiled variant.

`load(source, digest)` writes a kernel module to `<cache>/kernels/tracejit_k_<digest>.py`
(atomically; a truncated or corrupted file is rewritten) and imports it: Numba's disk cache
works only for functions whose source file exists, so a new process loads machine code
instead of compiling. `TieredKernel` holds a module's serial and parallel njit variants (a
fused kernel's, numba_cpu.CompiledKernel, or a scan loop's, numba_loops):

    first call    parallel variant in Numba's disk cache?  yes: load it, run it
                                                           no:  run the serial variant (it
                                                                compiles in ~60% of the time)
                                                                and compile the parallel one in
                                                                the background (tiered compile)
    broken entry  a corrupted disk-cache entry: delete it, compile once more

The folder has a size cap (config.CACHE_MAX_MB, `TRACEJIT_CACHE_MAX_MB`, default 1024):
writing a new kernel module evicts the least recently used modules with the files named
after them in `__pycache__` (Numba's index and data, Python's bytecode) until the folder fits.
A module's last use is its file's access time, set at every load (never its modification
time: Numba's index checks that, and a touched source would make its entries stale).
"""
from __future__ import annotations

import contextlib
import gc
import hashlib
import importlib.util
import os
import sys
import threading
import time

import numba
from numba.core.errors import NumbaError

from .. import config
from . import ahead

lock = threading.RLock()  # loading modules and first calls (compiles) one at a time
MODULES: dict[str, object] = {}  # kernel modules imported by this process, by module name


def load(source: str, digest: str):
    """Import the kernel module from the cache directory, writing it first if needed."""
    mod_name = f"tracejit_k_{digest}"
    with lock:
        if mod_name not in MODULES:
            MODULES[mod_name] = _import(source, mod_name)
        return MODULES[mod_name]


def _import(source: str, mod_name: str):
    """Write `source` to the kernels folder (a private temporary one if that is not
    writable) and import it as `mod_name`."""
    folder = os.path.join(config.CACHE_DIR, "kernels")
    path = os.path.join(folder, f"{mod_name}.py")
    try:
        os.makedirs(folder, exist_ok=True)
        existing = None
        if os.path.exists(path):
            with open(path) as f:
                existing = f.read()
        if existing != source:  # absent, or corrupted: (re)write atomically
            tmp = f"{path}.{os.getpid()}.{threading.get_ident()}.tmp"
            with open(tmp, "w") as f:
                f.write(source)
            os.replace(tmp, path)
            touch(path)
            evict(folder, int(config.CACHE_MAX_MB * 2**20), keep=mod_name)
        else:
            touch(path)
    except OSError:  # unwritable cache: fall back to a private temporary directory
        import tempfile
        folder = tempfile.mkdtemp(prefix="tracejit-")
        path = os.path.join(folder, f"{mod_name}.py")
        with open(path, "w") as f:
            f.write(source)
    spec = importlib.util.spec_from_file_location(mod_name, path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[mod_name] = module  # Numba's disk cache re-imports it by name
    spec.loader.exec_module(module)
    return module


def touch(path: str) -> None:
    """Mark a kernel module used now: its access time (the modification time stays, see the
    module docstring)."""
    try:
        os.utime(path, ns=(time.time_ns(), os.stat(path).st_mtime_ns))
    except OSError:
        pass


def evict(folder: str, cap: int, keep: str = "") -> None:
    """Delete the least recently used kernel modules in `folder`, each with its files in
    `__pycache__`, until the folder's kernel files take at most `cap` bytes. Files left
    without their module (its cache entries written after an eviction) go first; `keep` (the
    module just written) and other processes' temporary files stay."""
    groups: dict[str, list] = {}  # module name -> [last use, bytes, paths]
    total = 0
    for d in (folder, os.path.join(folder, "__pycache__")):
        try:
            entries = list(os.scandir(d))
        except OSError:
            continue
        for ent in entries:
            stem = ent.name.split(".", 1)[0]
            if not stem.startswith("tracejit_k_") or ent.name.endswith(".tmp"):
                continue
            try:
                st = ent.stat()
            except OSError:
                continue
            g = groups.setdefault(stem, [-1.0, 0, []])
            g[1] += st.st_size
            g[2].append(ent.path)
            total += st.st_size
            if d == folder and ent.name == stem + ".py":
                g[0] = st.st_atime
    if total <= cap:
        return
    for stem, (_, size, paths) in sorted(groups.items(), key=lambda kv: kv[1][0]):
        if stem == keep:
            continue
        for path in paths:
            try:
                os.remove(path)
            except OSError:
                pass
        total -= size
        if total <= cap:
            break


def clear_numba_cache(module) -> None:
    """Delete Numba's cache entries (index and data) of a kernel module."""
    folder = os.path.join(os.path.dirname(module.__file__), "__pycache__")
    stem = os.path.splitext(os.path.basename(module.__file__))[0]
    if os.path.isdir(folder):
        for f in os.listdir(folder):
            if f.startswith(stem) and (f.endswith(".nbi") or f.endswith(".nbc")):
                try:
                    os.remove(os.path.join(folder, f))
                except OSError:
                    pass


class TieredKernel:
    """A kernel module's serial and parallel variants (`<name>_ser`, `<name>_par`). The first
    call picks one (serial first when the parallel one is not cached, which then compiles in
    the background) and recovers from a broken disk cache; `slot` is where a driver holds the
    variant it calls, updated when the parallel one takes over."""

    def __init__(self, name: str, source: str, parallel: bool) -> None:
        self.name, self.source, self.parallel = name, source, parallel
        self.digest = hashlib.sha256(source.encode()).hexdigest()[:16]
        self.module = module = load(source, self.digest)
        self.ser = getattr(module, f"{name}_ser")
        self.par = getattr(module, f"{name}_par") if parallel else None
        self.fn = self.ser
        self.ok = False
        self.slot = None  # (globals, name) of a driver calling this kernel
        self.tier_up: threading.Thread | None = None

    def __call__(self, *args):
        if self.ok:
            return self.fn(*args)
        with lock:
            if self.ok:
                return self.fn(*args)
            if self.par is not None and load_cached(self.par, args):
                self.fn = self.par  # a warm disk cache: the parallel variant at once
            for sharing in AHEAD:  # a worker may be compiling it: wait, then load it
                sharing.claim(self.fn)
            try:
                out = self.fn(*args)
            except NumbaError:
                raise  # a code-generation bug, not a cache problem: never hide it
            except Exception:  # a corrupted or stale disk-cache entry: drop it, rebuild once
                clear_numba_cache(self.module)
                opts = {k: v for k, v in self.fn.targetoptions.items()
                        if k not in ("cache", "nopython")}  # the same flags, uncached
                self.fn = numba.njit(**opts)(self.fn.py_func)
                out = self.fn(*args)
            self.ok = True
            self._use(self.fn)
            if self.par is not None and self.fn is not self.par:
                # tiered compilation: the first call ran the serial loop (compiled in about
                # 60% of the parallel one's time); the parallel variant compiles in the
                # background once the executable's first call is over (see first_call) and
                # replaces it when ready
                sig = self.ser.signatures[0]
                self.tier_up = threading.Thread(target=self._compile_parallel, args=(sig,),
                                                name=f"tracejit compile {self.name}")
                _TIER_UPS.add(self.tier_up)
                self.tier_up.start()
        return out

    def _use(self, fn) -> None:
        self.fn = fn
        if self.slot is not None:  # the driver calls the dispatcher directly
            self.slot[0][self.slot[1]] = fn

    def _compile_parallel(self, sig) -> None:
        try:
            with _quiet:
                _quiet.wait_for(lambda: _first_calls == 0)
            parallel_runtime()
            self.par.compile(sig)
            self._use(self.par)
        except Exception:  # noqa: BLE001  (the serial loop stays: correct, only slower)
            pass
        finally:
            _TIER_UPS.discard(threading.current_thread())


_TIER_UPS: set = set()  # background compiles of parallel variants in flight
_first_calls = 0  # executables' first calls in progress (see first_call)
_quiet = threading.Condition()


AHEAD: list = []  # ahead.Ahead of first calls in progress: compiles shared with workers


@contextlib.contextmanager
def first_call(kernels=()):
    """Around an executable's first call: background compiles of parallel variants start
    after it. Numba compiles one function at a time, so a parallel variant compiling in the
    background made the next kernel's serial compile wait for it (W8's first call, three
    kernels: 8.7 s, 4.5 s of it waiting). `kernels`: the [(TieredKernel, signature)] the
    call will first run, in order; the ones not in the disk cache compile in parallel
    (ahead.py)."""
    global _first_calls
    with _quiet:
        _first_calls += 1
        if _first_calls == 1:
            # the objects there are now stay out of the collector's way while Numba compiles
            # (it allocates enough to trigger full collections, ~60 ms each with Numba and
            # SciPy loaded: a cold W11 first call in one process 0.98 -> 0.83 s, the means
            # of 8 alternating pairs); put back after the call
            gc.freeze()
    jobs = {}
    for tk, sig in kernels:
        if not tk.ok and not (tk.par is not None and cached(tk.par, sig)) and \
                not cached(tk.ser, sig):
            jobs.setdefault(tk.ser, sig)
    with lock:  # no thread is loading or first-calling a kernel while the workers fork
        started = ahead.start(list(jobs.items()))
    if started is not None:
        AHEAD.append(started)
    try:
        yield
    finally:
        if started is not None:
            AHEAD.remove(started)
        with _quiet:
            _first_calls -= 1
            if _first_calls == 0:
                gc.unfreeze()
            _quiet.notify_all()


def cached(dispatcher, sig) -> bool:
    """Whether Numba's disk cache holds `dispatcher` compiled for `sig` (or it is compiled
    here already); True when that cannot be told (nothing is then compiled ahead)."""
    try:
        if sig in dispatcher.overloads:
            return True
        cache = dispatcher._cache
        key = cache._index_key(sig, dispatcher.targetctx.codegen())
        return key in cache._cache_file._load_index()
    except Exception:  # noqa: BLE001  (Numba internals moved)
        return True


def wait_compiled() -> None:
    """Block until every background compile of a parallel kernel variant has finished."""
    for t in list(_TIER_UPS):
        t.join()


def parallel_runtime() -> None:
    """Start Numba's threading layer before a parallel variant may come from the disk cache.
    Numba restarts it when it loads a function with parallel loops of its own, but a loop
    module's loop_par calls kernels whose parallel loops were themselves loaded from disk
    when it compiled, and Numba's entry for it then forgets the restart: loaded first in a
    new process it aborted ("Symbol not found: allocate_sched")."""
    from numba.np.ufunc.parallel import _launch_threads
    _launch_threads()


def load_cached(dispatcher, args) -> bool:
    """Load `dispatcher`'s compiled code for these arguments from Numba's disk cache, if it is
    there; False (and nothing compiled) otherwise."""
    try:
        sig = tuple(numba.typeof(a) for a in args)
        parallel_runtime()  # (only parallel variants are loaded here)
        cres = dispatcher._cache.load_overload(sig, dispatcher.targetctx)
        if cres is None:
            return False
        dispatcher.targetctx.insert_user_function(cres.entry_point, cres.fndesc,
                                                  [cres.library])
        dispatcher.add_overload(cres)
        return True
    except Exception:  # noqa: BLE001  (Numba internals moved, or a broken entry: compile)
        return False
