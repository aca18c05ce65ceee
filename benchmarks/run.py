"""Runner: value+gradient benchmarks of tracejit against NumPy, hand-written Numba and the
optional JAX / PyTorch / Dr.Jit peers.

    python -m benchmarks                  # everything installed, full sizes
    python benchmarks/run.py --quick      # smoke run: 1/10 sizes, few repeats
    python -m benchmarks --only W1,W3 --peers 'numpy,numba*,tracejit' --memory

Every peer runs in this one process on the same input arrays (memory measurements excepted:
``--memory`` starts one fresh process per (workload, peer)). A peer is checked against NumPy
by hand on its first call; one that fails is reported and not timed. See README.md for what
each column means.
"""

from __future__ import annotations

import argparse
import fnmatch
import gc
import json
import math
import os
import shutil
import subprocess
import sys
import tempfile
import time
import traceback

if __package__ in (None, ""):
    # ``python benchmarks/run.py``: make the repository root importable so that both the
    # ``benchmarks`` package and the in-tree ``tracejit`` resolve.
    sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from benchmarks import timing
from benchmarks.workloads import (
    PEERS,
    RATIO_REFERENCES,
    WORKLOADS,
    NotApplicable,
    check,
    configure_threads,
)

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(HERE)
RESULTS_DIR = os.path.join(HERE, "results")


# --------------------------------------------------------------------------------------------
# Selection


def select_peers(spec: str | None) -> list[str]:
    """Peers named by a comma list; each item is a name, a glob (``numba*``) or a family
    prefix (``numba`` selects every ``numba-*``; ``torch`` is itself a peer, so it selects
    eager only: use ``torch*`` for both)."""
    if not spec:
        return [n for n, p in PEERS.items() if p.default]
    chosen: list[str] = []
    for tok in (t.strip() for t in spec.split(",")):
        if not tok:
            continue
        if tok in PEERS:
            hits = [tok]
        elif any(c in tok for c in "*?["):
            hits = fnmatch.filter(PEERS, tok)
        else:
            hits = [n for n in PEERS if n.startswith(tok + "-")]
        if not hits:
            raise SystemExit(f"unknown peer {tok!r}; known: {', '.join(PEERS)}")
        chosen += [h for h in hits if h not in chosen]
    # Keep the table order stable regardless of the order given.
    return [n for n in PEERS if n in chosen]


def select_workloads(spec: str | None) -> list[str]:
    if not spec:
        return list(WORKLOADS)
    keys = [k.strip().upper() for k in spec.split(",") if k.strip()]
    for k in keys:
        if k not in WORKLOADS:
            raise SystemExit(f"unknown workload {k!r}; known: {', '.join(WORKLOADS)}")
    return [k for k in WORKLOADS if k in keys]


# --------------------------------------------------------------------------------------------
# One (workload, peer)


def _short(exc: BaseException, limit: int = 160) -> str:
    msg = f"{type(exc).__name__}: {exc}".replace("\n", " ")
    return msg if len(msg) <= limit else msg[: limit - 3] + "..."


def bench_one(wl, peer, data, ref, args) -> dict:
    """Build, first call (timed, checked), then steady-state timing. Never raises."""
    rec: dict = {"workload": wl.key, "peer": peer.name, "status": "ok", "message": "",
                 "note": ""}
    missing = peer.missing()
    if missing:
        rec.update(status="not installed", message=f"missing {', '.join(missing)}")
        return rec
    try:
        built = peer.build(wl, data)
    except NotApplicable as exc:
        rec.update(status="n/a", message=str(exc))
        return rec
    except Exception as exc:  # noqa: BLE001 - a broken peer is a table entry, not a crash
        rec.update(status="error", message="build: " + _short(exc))
        rec["traceback"] = traceback.format_exc(limit=6)
        return rec
    rec["note"] = built.note
    try:
        first_s, out = timing.time_first_call(built.fn)
        rec["first_call_s"] = first_s
        got = built.to_numpy(out)
        del out
    except Exception as exc:  # noqa: BLE001
        rec.update(status="error", message="first call: " + _short(exc))
        rec["traceback"] = traceback.format_exc(limit=6)
        return rec
    try:
        ok, msg, errs = check(wl, data, ref, got)
    except Exception as exc:  # noqa: BLE001
        ok, msg, errs = False, "check: " + _short(exc), {}
    rec["errors"] = errs
    if not ok:
        rec.update(status="failed check", message=msg)
        return rec
    built.settle()
    # The machine may be shared: time, and if other processes took more than FOREIGN_WARN
    # cores meanwhile, wait for a quiet moment and time again (keeping the quietest attempt).
    best = None
    for attempt in range(1 + args.retries):
        if args.retries and args.quiet_budget > 0:
            # A short look before every attempt (0.5 s when the machine is quiet); longer
            # waits only before retries.
            t_wait = time.perf_counter()
            timing.wait_until_quiet(FOREIGN_WARN / 2, min(5.0, args.quiet_budget))
            args.quiet_budget -= time.perf_counter() - t_wait
        if attempt:
            if args.quiet_budget <= 0:
                break
            t_wait = time.perf_counter()
            timing.wait_until_quiet(FOREIGN_WARN / 2, min(args.quiet_wait, args.quiet_budget))
            args.quiet_budget -= time.perf_counter() - t_wait
        try:
            t = timing.time_steady(built.fn, first_s, repeats=args.repeats,
                                   min_batch_s=args.min_batch_ms / 1e3,
                                   max_total_s=args.max_peer_s)
        except Exception as exc:  # noqa: BLE001
            rec.update(status="error", message="timing: " + _short(exc))
            return rec
        attempts = attempt + 1
        if best is None or (t.foreign_cores or 0) < (best.foreign_cores or 0):
            best = t
        if (t.foreign_cores or 0) <= FOREIGN_WARN:
            break
    rec.update(best.as_dict())
    rec["timing_attempts"] = attempts
    del built
    gc.collect()
    return rec


# --------------------------------------------------------------------------------------------
# --memory: one fresh process per (workload, peer)


def memory_child(wl_key: str, peer_name: str, quick: bool, threads: int) -> dict:
    """Runs in the child: RSS growth of the first call and of steady-state calls.

    The baseline is taken with the inputs (and the peer's converted copies of them) resident
    and the peer built, so what is reported is the working memory of computing value and
    gradient: temporaries, outputs, and for the first call the compiler too.
    """
    wl, peer = WORKLOADS[wl_key], PEERS[peer_name]
    configure_threads([peer_name], threads)
    data = wl.make_data(quick)
    built = peer.build(wl, data)
    gc.collect()
    first = timing.measure_peak_growth(built.fn, 1)
    built.settle()  # a background compile's memory is not the steady state's
    for _ in range(2):
        built.fn()
    steady = timing.measure_peak_growth(built.fn, 5)
    return {
        "input_bytes": int(sum(getattr(v, "nbytes", 0) for v in data.values())),
        "first_call_peak_bytes": first["peak_growth_bytes"],
        "steady_peak_bytes": steady["peak_growth_bytes"],
        "steady_retained_bytes": steady["retained_bytes"],
        "hwm_reset_supported": steady["hwm_reset_supported"],
    }


# Environment variables of the peers' on-disk compile caches. Numba kernels here are never
# cached on disk and JAX's persistent cache is off by default; the others would make a second
# run's "first call" skip compilation.
CACHE_ENV_VARS = {"TRACEJIT_CACHE_DIR": "tracejit", "DRJIT_CACHE_DIR": "drjit",
                  "TORCHINDUCTOR_CACHE_DIR": "inductor"}


def cold_cache_env(root: str) -> dict[str, str]:
    """Fresh, empty cache directories under ``root`` for every peer with a disk cache, so
    first calls include compilation. Must be in the environment before the peer is imported;
    variables already set by the user are left alone."""
    out = {}
    for var, sub in CACHE_ENV_VARS.items():
        if var in os.environ:
            continue
        path = os.path.join(root, sub)
        os.makedirs(path, exist_ok=True)
        out[var] = path
    return out


def measure_memory(wl_key: str, peer_name: str, args) -> dict:
    cmd = [sys.executable, "-m", "benchmarks.run", "--memory-child", wl_key, peer_name,
           "--threads", str(args.threads)] + (["--quick"] if args.quick else [])
    env = dict(os.environ)
    cache = None
    if not args.warm_cache:
        # Each child compiles from scratch (its first-call figure then contains the
        # compiler's memory for every peer alike).
        cache = tempfile.mkdtemp(prefix="bench-cold-cache-")
        env.update(cold_cache_env(cache))
    try:
        proc = subprocess.run(cmd, check=False, cwd=REPO, capture_output=True, text=True,
                              timeout=900, env=env)
    except subprocess.TimeoutExpired:
        return {"memory_error": "timeout"}
    finally:
        if cache:
            shutil.rmtree(cache, ignore_errors=True)
    for line in proc.stdout.splitlines():
        if line.startswith("MEMJSON:"):
            return json.loads(line[len("MEMJSON:"):])
    tail = (proc.stderr or proc.stdout).strip().splitlines()[-1:] or ["no output"]
    return {"memory_error": tail[0][:160]}


# --------------------------------------------------------------------------------------------
# Formatting


def fmt_time(s: float | None, unit: str) -> str:
    if s is None or (isinstance(s, float) and math.isnan(s)):
        return "-"
    v = s * (1e6 if unit == "us" else 1e3)
    return f"{v:.3g}" if v < 100 else f"{v:.0f}"


def fmt_secs(s: float | None) -> str:
    if s is None:
        return "-"
    if s >= 1:
        return f"{s:.2f} s"
    if s >= 1e-3:
        return f"{s * 1e3:.3g} ms"
    return f"{s * 1e6:.3g} us"


def fmt_ratio(a: float | None, b: float | None) -> str:
    if not a or not b:
        return "-"
    return f"{a / b:.2f}x"


FOREIGN_WARN = 0.2  # cores used by other processes above which a timing is flagged


def fmt_foreign(c: float | None) -> str:
    if c is None:
        return "?"
    return f"{c:.2f}" + ("*" if c > FOREIGN_WARN else "")


def fmt_mb(b: int | None) -> str:
    # Clamped at 0: a peer whose steady state frees more than it maps reads as "-0" otherwise.
    return "-" if b is None else f"{max(b, 0) / 2**20:.0f}"


def print_workload_table(wl, recs: list[dict], copy_ref: dict, with_memory: bool) -> None:
    unit = wl.unit
    print()
    what = "value+grad" if not wl.is_transform else wl.transform.replace("_", " ")
    print(f"{wl.key}  {wl.title}: {wl.formula}   [median {unit}/call, {what}]")
    refs = {r["peer"]: r.get("median_s") for r in recs if r["status"] == "ok"}
    head = (f"  {'peer':<16}{'median':>9}{'min':>9}{'IQR':>15}{'first call':>12}"
            f"{'/tracejit':>11}{'/fused':>9}{'calls':>9}{'others':>7}")
    if with_memory:
        head += f"{'peakMB':>8}{'1stMB':>8}"
    print(head + "  status / note")
    for r in recs:
        if r["status"] == "ok":
            iqr = f"{fmt_time(r['q1_s'], unit)}-{fmt_time(r['q3_s'], unit)}"
            line = (f"  {r['peer']:<16}{fmt_time(r['median_s'], unit):>9}"
                    f"{fmt_time(r['min_s'], unit):>9}{iqr:>15}"
                    f"{fmt_secs(r.get('first_call_s')):>12}"
                    f"{fmt_ratio(r['median_s'], refs.get(RATIO_REFERENCES[0])):>11}"
                    f"{fmt_ratio(r['median_s'], refs.get(RATIO_REFERENCES[1])):>9}"
                    f"{r['total_timed_calls']:>9}{fmt_foreign(r.get('foreign_cores')):>7}")
        else:
            line = (f"  {r['peer']:<16}{'-':>9}{'-':>9}{'-':>15}"
                    f"{fmt_secs(r.get('first_call_s')):>12}{'-':>11}{'-':>9}{'-':>9}{'':>7}")
        if with_memory:
            mem = r.get("memory", {})
            line += (f"{fmt_mb(mem.get('steady_peak_bytes')):>8}"
                     f"{fmt_mb(mem.get('first_call_peak_bytes')):>8}")
        tail = r["status"] if r["status"] != "ok" else ""
        if r.get("message"):
            tail += (": " if tail else "") + r["message"]
        if r.get("note"):
            tail += (" | " if tail else "") + r["note"]
        if with_memory and r.get("memory", {}).get("memory_error"):
            tail += f" | memory: {r['memory']['memory_error']}"
        print(line + ("  " + tail if tail else ""))
    print(f"  {'copy ref':<16}{fmt_time(copy_ref['median_s'], unit):>9}"
          f"{fmt_time(copy_ref['min_s'], unit):>9}   np.copyto of {wl.copy_arg} "
          f"({copy_ref['bytes'] / 1e6:.1f} MB): {copy_ref['gb_per_s']:.1f} GB/s read+write")


def print_summary(workloads, peers, results) -> None:
    print()
    print("Summary: median per call (W1-W5 in ms, W6 in us); 'x' = failed check, "
          "'!' = error, 'n/a' = not applicable, '--' = not installed")
    cols = [wl.key for wl in workloads]
    print(f"  {'peer':<16}" + "".join(f"{c:>10}" for c in cols))
    by = {(r["workload"], r["peer"]): r for r in results}
    for name in peers:
        cells = []
        for wl in workloads:
            r = by.get((wl.key, name))
            if r is None:
                cells.append("")
            elif r["status"] == "ok":
                cells.append(fmt_time(r["median_s"], wl.unit))
            else:
                cells.append({"failed check": "x", "error": "!", "n/a": "n/a",
                              "not installed": "--"}.get(r["status"], "?"))
        print(f"  {name:<16}" + "".join(f"{c:>10}" for c in cells))
    noisy = [f"{r['workload']}/{r['peer']} ({r['foreign_cores']:.2f})" for r in results
             if (r.get("foreign_cores") or 0) > FOREIGN_WARN]
    if noisy:
        print(f"  WARNING: other processes used > {FOREIGN_WARN} cores while timing: "
              + ", ".join(noisy))


# --------------------------------------------------------------------------------------------
# Chart


def plot(path: str, workloads, peers, results, copy_refs) -> str | None:
    """Log-scale bar chart, one panel per workload; the copy reference is a dashed line."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except Exception as exc:  # noqa: BLE001
        return f"no plot: {_short(exc)}"
    by = {(r["workload"], r["peer"]): r for r in results}
    n = len(workloads)
    ncols = min(3, n)
    nrows = math.ceil(n / ncols)
    fig, axes = plt.subplots(nrows, ncols, figsize=(5.2 * ncols, 4.2 * nrows), squeeze=False)
    cmap = plt.get_cmap("tab20")
    colors = {p: cmap(i % 20) for i, p in enumerate(PEERS)}
    for ax, wl in zip(axes.flat, workloads):
        scale = 1e6 if wl.unit == "us" else 1e3
        names, vals, cols = [], [], []
        for p in peers:
            r = by.get((wl.key, p))
            if r and r["status"] == "ok":
                names.append(p)
                vals.append(r["median_s"] * scale)
                cols.append(colors[p])
        bars = ax.bar(range(len(vals)), vals, color=cols, edgecolor=[
            "black" if nm.startswith("tracejit") else "none" for nm in names], linewidth=1.5)
        for b, v in zip(bars, vals):
            ax.text(b.get_x() + b.get_width() / 2, v * 1.05, f"{v:.3g}", ha="center",
                    va="bottom", fontsize=7, rotation=90)
        ax.set_yscale("log")
        ax.set_xticks(range(len(names)))
        ax.set_xticklabels(names, rotation=60, ha="right", fontsize=8)
        ax.set_ylabel(f"median {wl.unit}/call (log)")
        ax.set_title(f"{wl.key}: {wl.title}", fontsize=10)
        cr = copy_refs.get(wl.key)
        if cr:
            ax.axhline(cr["median_s"] * scale, ls="--", color="grey", lw=1)
            ax.text(len(vals) - 0.5, cr["median_s"] * scale, "copy", color="grey", fontsize=7,
                    ha="right", va="bottom")
        if vals:
            ax.set_ylim(min(vals + [cr["median_s"] * scale if cr else vals[0]]) / 2,
                        max(vals) * 4)
        failed = [p for p in peers if by.get((wl.key, p)) and by[(wl.key, p)]["status"] in
                  ("failed check", "error")]
        if failed:
            ax.text(0.01, 0.98, "not timed: " + ", ".join(failed), transform=ax.transAxes,
                    fontsize=7, va="top", color="darkred")
    for ax in list(axes.flat)[n:]:
        ax.axis("off")
    fig.suptitle("value + gradient per call, float32 (lower is better)")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return None


# --------------------------------------------------------------------------------------------
# Main


def git_commit() -> str | None:
    """HEAD of the repository the benchmark ran from, '+dirty' if tracejit/ had changes."""
    try:
        head = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=REPO, check=True,
                              capture_output=True, text=True).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain", "tracejit"], cwd=REPO,
                               check=True, capture_output=True, text=True).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return None
    return head + ("+dirty" if dirty else "")


def parse_args(argv=None):
    ap = argparse.ArgumentParser(prog="python -m benchmarks", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true",
                    help="smoke run: sizes / 10 (N=1e6, 1024 rows), 5 repeats, short batches; "
                         "results are tagged quick")
    ap.add_argument("--only", help="comma list of workloads, e.g. W1,W3")
    ap.add_argument("--peers", help="comma list of peers, globs or families "
                                    "(e.g. numpy,numba,jax,torch*,tracejit*)")
    ap.add_argument("--repeats", type=int, default=None,
                    help="timed batches per peer (default 30, quick 5)")
    ap.add_argument("--min-batch-ms", type=float, default=None,
                    help="a timed batch lasts at least this long (default 20, quick 5)")
    ap.add_argument("--max-peer-s", type=float, default=20.0,
                    help="cap on timed seconds per (workload, peer); at least 5 batches run")
    ap.add_argument("--retries", type=int, default=None,
                    help="re-time a peer up to this many times when other processes used "
                         f"> {FOREIGN_WARN} cores meanwhile (default 3, quick 0)")
    ap.add_argument("--quiet-wait", type=float, default=60.0,
                    help="seconds to wait for the machine to go quiet before a retry")
    ap.add_argument("--quiet-budget", type=float, default=900.0,
                    help="total seconds the whole run may spend waiting for quiet")
    ap.add_argument("--threads", type=int, default=timing.usable_cores(),
                    help="threads for every peer (default: usable cores)")
    ap.add_argument("--cpu-time", action="store_true",
                    help="time steady-state calls (and the copy reference) in this process's "
                         "CPU time instead of wall time: with --threads 1 on a busy shared "
                         "machine, the cost of a call whatever other processes do")
    ap.add_argument("--memory", action="store_true",
                    help="also measure peak RSS growth, one fresh process per (workload, peer)"
                         " (slow)")
    ap.add_argument("--warm-cache", action="store_true",
                    help="let tracejit, Dr.Jit and inductor use their usual on-disk kernel "
                         "caches (first calls then skip compiles cached by an earlier run)")
    ap.add_argument("--out", default=RESULTS_DIR, help="directory for JSON and PNG")
    ap.add_argument("--no-save", action="store_true", help="print only; write no files")
    ap.add_argument("--no-plot", action="store_true", help="write JSON but no PNG")
    ap.add_argument("--list", action="store_true", help="list workloads and peers and exit")
    ap.add_argument("--memory-child", nargs=2, metavar=("WORKLOAD", "PEER"),
                    help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.repeats is None:
        args.repeats = 5 if args.quick else 30
    if args.retries is None:
        args.retries = 0 if args.quick else 3
    if args.min_batch_ms is None:
        args.min_batch_ms = 5.0 if args.quick else 20.0
    return args


def main(argv=None) -> int:
    args = parse_args(argv)
    if args.memory_child:
        try:
            out = memory_child(*args.memory_child, args.quick, args.threads)
        except Exception as exc:  # noqa: BLE001
            out = {"memory_error": _short(exc)}
        print("MEMJSON:" + json.dumps(out), flush=True)
        return 0
    if args.list:
        for wl in WORKLOADS.values():
            print(f"{wl.key}  {wl.formula}")
        print("W13  logistic loss over Dask arrays, X[2e7, 32] in 64 chunks (--only W13: "
              "benchmarks/dask_bench.py, its own peers)")
        for p in PEERS.values():
            state = "missing " + ",".join(p.missing()) if p.missing() else "installed"
            print(f"  {p.name:<16}{'' if p.default else '(opt-in) '}{p.description} [{state}]")
        return 0

    if args.only and "W13" in [k.strip().upper() for k in args.only.split(",")]:
        # W13 (tracejit.dask) has its own data, peers and schedulers: benchmarks/dask_bench.py
        from benchmarks import dask_bench
        rc = dask_bench.main(["--out", args.out] + (["--quick"] if args.quick else [])
                             + (["--no-save"] if args.no_save else []))
        rest = [k for k in args.only.split(",") if k.strip() and k.strip().upper() != "W13"]
        if not rest:
            return rc
        args.only = ",".join(rest)
    if args.cpu_time:
        timing.CLOCK = time.process_time
    workloads = [WORKLOADS[k] for k in select_workloads(args.only)]
    peers = select_peers(args.peers)
    cold_dir = None if args.warm_cache else tempfile.mkdtemp(prefix="bench-cold-cache-")
    if cold_dir:
        os.environ.update(cold_cache_env(cold_dir))
    machine = timing.machine_info()
    print(f"{machine['cpu_model']}, {machine['cores_usable']} cores, "
          f"caches {machine['caches']}; threads per peer: {args.threads}"
          + ("  [QUICK: reduced sizes]" if args.quick else ""))
    print("libraries: " + ", ".join(f"{k} {v}" for k, v in machine["libraries"].items() if v))
    configure_threads(peers, args.threads)

    results: list[dict] = []
    copy_refs: dict[str, dict] = {}
    t_all = time.perf_counter()
    for wl in workloads:
        data = wl.make_data(args.quick)
        ref = wl.numpy(*wl.ordered(data))
        if args.retries and args.quiet_budget > 0:
            t_wait = time.perf_counter()
            timing.wait_until_quiet(FOREIGN_WARN / 2, min(args.quiet_wait, args.quiet_budget))
            args.quiet_budget -= time.perf_counter() - t_wait
        copy_refs[wl.key] = timing.copy_reference(data[wl.copy_arg], repeats=args.repeats,
                                                  min_batch_s=args.min_batch_ms / 1e3)
        print(f"\n[{wl.key}] {wl.formula}", flush=True)
        recs = []
        for name in peers:
            t0 = time.perf_counter()
            rec = bench_one(wl, PEERS[name], data, ref, args)
            if args.memory and rec["status"] == "ok":
                rec["memory"] = measure_memory(wl.key, name, args)
            rec["wall_s"] = time.perf_counter() - t0
            recs.append(rec)
            shown = fmt_time(rec.get("median_s"), wl.unit) + " " + wl.unit \
                if rec["status"] == "ok" else f"{rec['status']}: {rec['message']}"
            print(f"  {name:<16} {shown}  (first call {fmt_secs(rec.get('first_call_s'))},"
                  f" {rec['wall_s']:.1f} s)", flush=True)
        results += recs
        print_workload_table(wl, recs, copy_refs[wl.key], args.memory)
        del data, ref
        gc.collect()

    thread_info = configure_threads(peers, args.threads)  # read back after first use
    print()
    print("Threads: " + "; ".join(f"{k}: {v}" for k, v in thread_info.items()))
    for wl in workloads:
        print_workload_table(wl, [r for r in results if r["workload"] == wl.key],
                             copy_refs[wl.key], args.memory)
    print_summary(workloads, peers, results)
    print(f"\ntotal {time.perf_counter() - t_all:.0f} s")
    if cold_dir:
        shutil.rmtree(cold_dir, ignore_errors=True)

    tj = sys.modules.get("tracejit")
    if machine["libraries"].get("tracejit") is None and tj is not None:
        machine["libraries"]["tracejit"] = getattr(tj, "__version__", "in-tree")
    machine["repo_commit"] = git_commit()
    if args.no_save:
        return 0
    os.makedirs(args.out, exist_ok=True)
    stamp = time.strftime("%Y%m%d-%H%M%S")
    stem = os.path.join(args.out, f"bench-{stamp}{'-quick' if args.quick else ''}")
    payload = {
        "machine": machine,
        "config": {"quick": args.quick, "repeats": args.repeats,
                   "min_batch_ms": args.min_batch_ms, "threads": args.threads,
                   "workloads": [w.key for w in workloads], "peers": peers,
                   "memory": args.memory, "warm_disk_caches": args.warm_cache,
                   "retries": args.retries, "argv": sys.argv[1:],
                   "clock": "process CPU time" if args.cpu_time else "wall"},
        "threads": thread_info,
        "workloads": {w.key: {"title": w.title, "formula": w.formula, "unit": w.unit}
                      for w in workloads},
        "copy_reference": copy_refs,
        "results": results,
    }
    with open(stem + ".json", "w") as f:
        json.dump(payload, f, indent=1, default=str)
    print(f"wrote {os.path.relpath(stem + '.json', REPO)}")
    if not args.no_plot:
        err = plot(stem + ".png", workloads, peers, results, copy_refs)
        print(err or f"wrote {os.path.relpath(stem + '.png', REPO)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
