"""Measurement machinery for the value+gradient benchmarks.

Kept apart from the workload definitions so that every peer is timed by exactly the same
code: one first call (compile and tracing included, because that is what a user waits for),
then warm-up, then batches of calls whose per-call median is reported. Batching matters for
the microsecond workload (W6), where one ``perf_counter`` pair per call would cost as much as
the call itself.

Memory is the hard part to measure honestly: ``tracemalloc`` only sees allocations made
through Python's allocator, so NumPy is seen but Numba's NRT, XLA, libtorch and Dr.Jit are
not. The only measure that treats all peers alike is the process's resident set: we reset
the kernel's high-water mark (``/proc/self/clear_refs``) and read ``VmHWM`` growth. That is
done in a fresh subprocess per (workload, peer) so that one peer's caches, arenas and
compilers do not pollute another's numbers; the runner drives that (``--memory``).
"""

from __future__ import annotations

import datetime as _dt
import gc
import importlib.metadata
import os
import platform
import re
import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np


@dataclass
class Timing:
    """Timing of one peer on one workload; all times are seconds per call."""

    first_call_s: float
    median_s: float
    min_s: float
    q1_s: float
    q3_s: float
    calls_per_batch: int
    batches: int
    warmup_s: float = 0.0
    samples_s: list[float] = field(default_factory=list)
    foreign_cores: float | None = None  # CPU used by other processes while timing, in cores

    def as_dict(self) -> dict[str, Any]:
        return {
            "first_call_s": self.first_call_s,
            "median_s": self.median_s,
            "min_s": self.min_s,
            "q1_s": self.q1_s,
            "q3_s": self.q3_s,
            "calls_per_batch": self.calls_per_batch,
            "batches": self.batches,
            "total_timed_calls": self.calls_per_batch * self.batches,
            "foreign_cores": self.foreign_cores,
        }


def time_first_call(fn: Callable[[], Any]) -> tuple[float, Any]:
    """Time the very first call of a freshly built peer (compile/trace included)."""
    t0 = time.perf_counter()
    out = fn()
    return time.perf_counter() - t0, out


# the clock of steady-state timings: wall time, or with `--cpu-time` this process's CPU time
# (all its threads): on a machine shared with other busy processes, with every peer on one
# thread (--threads 1), what a call costs regardless of how the cores are time-shared
CLOCK: Callable[[], float] = time.perf_counter


def _run_batch(fn: Callable[[], Any], number: int) -> float:
    """Run ``number`` calls back to back; keep each result alive until the next call returns.

    Keeping the previous result alive mirrors a training loop (the caller holds the gradient
    while the next step runs), so a peer cannot win by recycling memory the caller still has.
    """
    out = None
    clock = CLOCK
    t0 = clock()
    for _ in range(number):
        out = fn()
    t1 = clock()
    del out
    return t1 - t0


def time_steady(
    fn: Callable[[], Any],
    first_call_s: float,
    repeats: int = 30,
    min_batch_s: float = 0.02,
    warmup_s: float = 0.3,
    max_total_s: float = 20.0,
) -> Timing:
    """Median per-call time after warm-up, in batches sized like ``timeit.autorange``.

    A batch holds as many calls as needed to last ``min_batch_s`` (1 call for the 10-100 ms
    workloads, thousands for W6). ``repeats`` batches are timed unless that would exceed
    ``max_total_s``, in which case at least 5 are. GC is disabled while timing, as timeit does,
    so a collection triggered by one peer's garbage is not charged to a random later call.
    """
    gc_was_enabled = gc.isenabled()
    gc.collect()
    gc.disable()
    try:
        # Warm-up: at least 3 calls, and at least warmup_s of calls (caches, thread pools,
        # page faults of allocator arenas, lazy second-stage compiles).
        t_start = time.perf_counter()
        n_warm = 0
        while n_warm < 3 or time.perf_counter() - t_start < warmup_s:
            _run_batch(fn, 1)
            n_warm += 1
            if n_warm > 100_000:
                break
        warm = time.perf_counter() - t_start

        number = 1
        while True:
            t = _run_batch(fn, number)
            if t >= min_batch_s or number >= 1_000_000:
                break
            # Grow towards the target in one or two steps instead of doubling many times.
            number = max(number * 2, int(number * min_batch_s / max(t, 1e-9) * 1.2))
        per_batch = max(t, 1e-9)
        budget_batches = int(max_total_s / per_batch)
        batches = max(5, min(repeats, budget_batches))

        snap = cpu_snapshot()
        t_timed = time.perf_counter()
        samples = [_run_batch(fn, number) / number for _ in range(batches)]
        foreign = foreign_cores(snap, cpu_snapshot(), time.perf_counter() - t_timed)
    finally:
        if gc_was_enabled:
            gc.enable()
    q = statistics.quantiles(samples, n=4) if len(samples) >= 2 else [samples[0]] * 3
    return Timing(
        first_call_s=first_call_s,
        median_s=statistics.median(samples),
        min_s=min(samples),
        q1_s=q[0],
        q3_s=q[2],
        calls_per_batch=number,
        batches=batches,
        warmup_s=warm,
        samples_s=samples,
        foreign_cores=foreign,
    )


def copy_reference(src: np.ndarray, repeats: int = 30, min_batch_s: float = 0.02) -> dict:
    """Memory-bandwidth reference: ``np.copyto`` of the workload's main input.

    A copy reads N and writes N elements. A fused value+gradient pass reads the inputs once
    and writes the gradient once, so for a one-input workload (W1) the copy is close to its
    floor; for two inputs (W2, W4) the floor is about 1.5x the copy. The destination is
    allocated (and faulted in) once, so this is the bandwidth of warm memory. The L3 here may
    hold a 40 MB working set, so this is quoted as measured, not as DRAM bandwidth.
    """
    dst = np.empty_like(src)
    np.copyto(dst, src)
    t = time_steady(lambda: np.copyto(dst, src), 0.0, repeats=repeats, min_batch_s=min_batch_s,
                    warmup_s=0.1, max_total_s=5.0)
    moved = 2 * src.nbytes
    return {
        "bytes": int(src.nbytes),
        "median_s": t.median_s,
        "min_s": t.min_s,
        "gb_per_s": moved / t.median_s / 1e9,
        "foreign_cores": t.foreign_cores,
    }


# --------------------------------------------------------------------------------------------
# Other processes' CPU use
#
# This machine is shared (other people run test suites on it). With 2 cores, one busy foreign
# process halves what a 2-thread peer can get, and a parallel region waits for its slowest
# thread, so a parallel peer can come out slower than a serial one. We cannot prevent that,
# but we can measure it: busy time of the whole machine (/proc/stat) minus this process's own
# CPU time (/proc/self/stat, all threads), over the timed interval, in cores.

_CLK_TCK = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100


def cpu_snapshot() -> tuple[int, int] | None:
    """(machine busy jiffies, this process's jiffies), or None where /proc is missing."""
    try:
        with open("/proc/stat") as f:
            fields = [int(v) for v in f.readline().split()[1:]]
        with open("/proc/self/stat") as f:
            own = f.read().rsplit(")", 1)[1].split()
    except (OSError, ValueError, IndexError):
        return None
    idle = fields[3] + (fields[4] if len(fields) > 4 else 0)  # idle + iowait
    busy = sum(fields[:8]) - idle  # user..steal, without guest (already in user)
    return busy, int(own[11]) + int(own[12])  # utime + stime


def foreign_cores(a, b, wall_s: float) -> float | None:
    """Average number of cores other processes kept busy between snapshots a and b."""
    if a is None or b is None or wall_s <= 0:
        return None
    other = (b[0] - a[0]) - (b[1] - a[1])
    return max(0.0, other / _CLK_TCK / wall_s)


def wait_until_quiet(threshold: float, max_wait_s: float, window_s: float = 0.5) -> float:
    """Sleep until other processes use at most ``threshold`` cores over a window, or until
    ``max_wait_s`` has passed. Returns the last measured foreign load (cores)."""
    deadline = time.perf_counter() + max_wait_s
    load = 0.0
    while True:
        a = cpu_snapshot()
        t0 = time.perf_counter()
        time.sleep(window_s)
        load = foreign_cores(a, cpu_snapshot(), time.perf_counter() - t0)
        if load is None or load <= threshold or time.perf_counter() >= deadline:
            return load or 0.0


# --------------------------------------------------------------------------------------------
# Resident-memory probes (used by the --memory child process)


def _status_kb(key: str) -> int:
    with open("/proc/self/status") as f:
        m = re.search(rf"^{key}:\s+(\d+)\s+kB", f.read(), re.MULTILINE)
    return int(m.group(1)) if m else -1


def rss_bytes() -> int:
    """Current resident set size of this process."""
    return _status_kb("VmRSS") * 1024


def peak_rss_bytes() -> int:
    """High-water mark of the resident set since process start or the last reset."""
    return _status_kb("VmHWM") * 1024


def reset_peak_rss() -> bool:
    """Reset VmHWM to the current RSS (Linux ``clear_refs`` value 5). False if unsupported."""
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
        return True
    except OSError:
        return False


def measure_peak_growth(fn: Callable[[], Any], calls: int) -> dict:
    """Peak RSS above the pre-call RSS while running ``calls`` calls.

    Results of the calls are dropped only after the last call, as in ``_run_batch``, so the
    peak includes the gradient the caller still holds from the previous step.
    """
    gc.collect()
    resettable = reset_peak_rss()
    base = rss_bytes()
    outs = None
    for _ in range(calls):
        outs = fn()
    peak = peak_rss_bytes()
    after = rss_bytes()
    del outs
    return {
        "peak_growth_bytes": peak - base if resettable else None,
        "retained_bytes": after - base,
        "hwm_reset_supported": resettable,
    }


# --------------------------------------------------------------------------------------------
# Machine description


def cpu_model() -> str:
    try:
        with open("/proc/cpuinfo") as f:
            text = f.read()
    except OSError:
        return platform.processor() or "unknown"
    m = re.search(r"^model name\s*:\s*(.*)$", text, re.MULTILINE)
    model = m.group(1).strip() if m else "unknown"
    fam = re.search(r"^cpu family\s*:\s*(\d+)", text, re.MULTILINE)
    mod = re.search(r"^model\s*:\s*(\d+)", text, re.MULTILINE)
    if fam and mod:
        model += f" (family {fam.group(1)}, model {mod.group(1)})"
    return model


def cpu_flags() -> list[str]:
    try:
        with open("/proc/cpuinfo") as f:
            m = re.search(r"^flags\s*:\s*(.*)$", f.read(), re.MULTILINE)
    except OSError:
        return []
    wanted = ("avx", "avx2", "fma", "avx512f", "avx512vl", "avx512dq", "avx512bw")
    return [f for f in (m.group(1).split() if m else []) if f in wanted]


def _read(path: str) -> str:
    with open(path) as f:
        return f.read().strip()


def cache_sizes() -> dict[str, str]:
    """L2/L3 sizes from sysfs (cpu0), so the in-cache caveat of the copy reference is visible."""
    out = {}
    base = "/sys/devices/system/cpu/cpu0/cache"
    try:
        for idx in sorted(os.listdir(base)):
            p = os.path.join(base, idx)
            try:
                level, kind, size = (_read(os.path.join(p, n)) for n in ("level", "type", "size"))
            except OSError:
                continue
            if kind in ("Unified", "Data"):
                out[f"L{level}{'d' if kind == 'Data' else ''}"] = size
    except OSError:
        pass
    return out


def usable_cores() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:
        return os.cpu_count() or 1


def mem_total_gb() -> float | None:
    try:
        with open("/proc/meminfo") as f:
            m = re.search(r"^MemTotal:\s+(\d+)", f.read(), re.MULTILINE)
        return round(int(m.group(1)) / 2**20, 1) if m else None
    except OSError:
        return None


LIBRARIES = ("numpy", "numba", "llvmlite", "scipy", "jax", "jaxlib", "torch", "drjit",
             "matplotlib", "tracejit")


def library_versions() -> dict[str, str | None]:
    """Installed versions, read from package metadata so no peer gets imported for this."""
    out = {}
    for name in LIBRARIES:
        try:
            out[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            out[name] = None
    return out


def machine_info() -> dict[str, Any]:
    return {
        "date": _dt.datetime.now().astimezone().isoformat(timespec="seconds"),
        "cpu_model": cpu_model(),
        "cpu_flags": cpu_flags(),
        "cores_usable": usable_cores(),
        "cpu_count": os.cpu_count(),
        "caches": cache_sizes(),
        "mem_total_gb": mem_total_gb(),
        "python": platform.python_version(),
        "platform": platform.platform(),
        "libraries": library_versions(),
        "thread_env": {k: os.environ.get(k) for k in (
            "OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS", "NUMBA_NUM_THREADS",
            "NUMBA_THREADING_LAYER", "XLA_FLAGS") if os.environ.get(k) is not None},
    }
