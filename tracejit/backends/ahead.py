"""Compiling a first call's kernels in parallel, in forked worker processes.

Numba compiles one function at a time (one lock, mostly Python under the GIL), so a cold
first call that needs three loops and kernels compiled them one after another on one core:
W11's forward loop, loss kernel and backward loop took 0.35 + 0.16 + 0.3 s. Their
signatures are known before the call (shapes and dtypes are static; the driver allocates
the buffers), so at the start of an executable's first call the compiles it will need are
shared out: the calling process compiles them from the first on, and up to
`config.COMPILE_WORKERS` processes forked from it (each a copy of it: the kernel modules
are already imported) from the last back, each into Numba's disk cache, so the two ends
meet in the middle. When the call reaches a kernel a worker has taken, it waits for that
worker's compile and loads the result from the disk cache; one nobody has taken yet it
compiles itself.

A worker that fails or dies only means a compile here. The fork happens while the forking
thread holds tracejit's kernel lock, Numba's compiler lock and llvmlite's lock, so no other
thread is loading a kernel or inside Numba or LLVM (a lock another thread held at the fork
stays held in the worker forever); a worker gets fresh stdio objects, only compiles, writes
cache files and leaves by os._exit. A worker that uses no CPU for STALL seconds is waiting
for some other lock all the same: it is stopped and the caller compiles. Where fork is
missing (Windows) or workers are off (`TRACEJIT_COMPILE_WORKERS=0`) nothing changes.
"""
from __future__ import annotations

import contextlib
import mmap
import os
import signal
import sys
import threading
import time
import warnings

from .. import config

FREE, WORKER, DONE, FAILED, HERE = 0, 1, 2, 3, 4  # a job's state, one byte each
PATIENCE = 120.0  # seconds the calling process waits for one worker's compile
STALL = 2.0  # seconds a worker may use no CPU before it counts as stuck


class Ahead:
    """The jobs of one first call: [(dispatcher, signature)], their states shared with the
    workers (an anonymous shared mapping) under a lock shared across fork."""

    def __init__(self, jobs: list, n_workers: int) -> None:
        import multiprocessing
        self.jobs = jobs
        self.states = mmap.mmap(-1, len(jobs))
        self.lock = multiprocessing.get_context("fork").Lock()
        self.owners = mmap.mmap(-1, len(jobs))  # the worker that took each job
        self.states[0] = HERE  # the calling process compiles the first job itself
        self.live: set[int] = set()  # workers not yet exited
        self.pids: dict[int, int] = {}
        from llvmlite.binding import ffi
        from numba.core.compiler_lock import global_compiler_lock
        llvm = getattr(getattr(ffi, "lib", None), "_lock", None) or contextlib.nullcontext()
        with global_compiler_lock, llvm, warnings.catch_warnings():
            # fork with threads (3.12), and JAX's at-fork hook: a worker runs no JAX, no thread
            warnings.simplefilter("ignore", DeprecationWarning)
            warnings.filterwarnings("ignore", "os.fork", RuntimeWarning)
            for w in range(n_workers):
                try:
                    pid = os.fork()
                except OSError:  # out of processes or memory: the workers there are
                    break
                if pid == 0:
                    self._work(w)  # never returns
                self.live.add(w)
                self.pids[w] = pid
                threading.Thread(target=self._reap, args=(pid, w), daemon=True,
                                 name="tracejit compile worker").start()

    def _work(self, w: int) -> None:
        try:
            null = os.open(os.devnull, os.O_WRONLY)
            os.dup2(null, 1)  # Numba's warnings were the parent's to give, at its compile
            os.dup2(null, 2)
            # new stream objects: a parent thread may have held the old ones' locks
            sys.stdout = sys.stderr = open(os.devnull, "w")
            warnings.simplefilter("ignore")
            while True:
                with self.lock:  # the last job still free: the caller works from the front
                    k = next((i for i in reversed(range(len(self.jobs)))
                              if self.states[i] == FREE), None)
                    if k is None:
                        break
                    self.states[k], self.owners[k] = WORKER, w
                dispatcher, sig = self.jobs[k]
                try:
                    dispatcher.compile(sig)
                    self.states[k] = DONE
                except BaseException:  # noqa: BLE001  (the parent compiles it then)
                    self.states[k] = FAILED
        finally:
            os._exit(0)

    def _reap(self, pid: int, w: int) -> None:
        try:
            os.waitpid(pid, 0)
        except OSError:
            pass
        self.live.discard(w)

    def claim(self, dispatcher) -> None:
        """Before the calling process first calls `dispatcher`: return once a worker has
        compiled it (the call then loads it from disk), or at once when no worker took it
        (the call compiles it; no worker will start it now)."""
        k = next((i for i, (d, _) in enumerate(self.jobs) if d is dispatcher), None)
        if k is None:
            return
        if self.lock.acquire(timeout=1.0):
            try:
                if self.states[k] == FREE:
                    self.states[k] = HERE
                    return
            finally:
                self.lock.release()
        start = moved = checked = time.monotonic()
        busy = None
        while self.states[k] == WORKER and self.owners[k] in self.live:
            now = time.monotonic()
            if now - checked > 0.1:  # a compile keeps its worker busy; one that is not is
                checked = now  # waiting for a lock a thread of ours held at the fork
                used = _cpu_ticks(self.pids[self.owners[k]])
                if used is None or used != busy:
                    busy, moved = used, now
            if now - moved > STALL or now - start > PATIENCE:  # stop it, compile here
                try:
                    os.kill(self.pids[self.owners[k]], signal.SIGKILL)
                except OSError:
                    pass
                return
            time.sleep(0.002)


def _cpu_ticks(pid: int):
    """CPU time a process has used (Linux: /proc), or None where that cannot be read (then
    only PATIENCE bounds the wait)."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
        return int(fields[11]) + int(fields[12])  # utime + stime
    except (OSError, IndexError, ValueError):
        return None


def start(jobs: list) -> Ahead | None:
    """Share out `jobs` ([(dispatcher, signature)] in the order the call needs them, the
    ones not in the disk cache) when there are two or more and workers may run."""
    if len(jobs) < 2 or not hasattr(os, "fork"):
        return None
    n = config.COMPILE_WORKERS
    if n is None:
        try:
            cores = len(os.sched_getaffinity(0))
        except AttributeError:
            cores = os.cpu_count() or 1
        n = min(cores - 1, 4)
    n = min(n, len(jobs) - 1)
    if n <= 0:
        return None
    try:
        return Ahead(jobs, n)
    except (OSError, ImportError):  # no shared memory or semaphores here: as before
        return None
