"""Compiling a cold first call's kernels in forked workers (backends/ahead.py): the sharing
of jobs with fake compiles, and a real first call whose later loops a worker compiles."""
from __future__ import annotations

import json
import os
import subprocess
import sys
import time

import pytest

from tracejit.backends import ahead

pytestmark = pytest.mark.skipif(not hasattr(os, "fork"), reason="workers are forked")


def taken(a, k):
    """Wait until a worker has taken job k (a loaded machine may start it late)."""
    deadline = time.time() + 30
    while a.states[k] == ahead.FREE and time.time() < deadline:
        time.sleep(0.005)
    assert a.states[k] in (ahead.WORKER, ahead.DONE)


class FakeJob:
    """A dispatcher whose compile writes a marker file (in the worker that runs it)."""

    def __init__(self, folder, name, seconds=0.0, die=False):
        self.path, self.seconds, self.die = os.path.join(folder, name), seconds, die

    def compile(self, sig):
        if self.die:
            os.kill(os.getpid(), 9)
        time.sleep(self.seconds)
        with open(self.path, "w") as f:
            f.write(repr(sig))


def test_workers_take_the_jobs_the_caller_has_not(tmp_path):
    jobs = [FakeJob(tmp_path, f"j{i}", 0.05) for i in range(4)]
    a = ahead.Ahead([(j, (i,)) for i, j in enumerate(jobs)], 2)
    for k, j in enumerate(jobs[1:], 1):
        taken(a, k)
        a.claim(j)  # returns when a worker has compiled it
        with open(j.path) as f:
            assert f.read() in ("(1,)", "(2,)", "(3,)")
    assert not os.path.exists(jobs[0].path)  # the first job is the caller's
    assert list(a.states[:]) == [ahead.HERE] + [ahead.DONE] * 3


def test_a_job_no_worker_started_is_the_callers(tmp_path):
    slow, other = FakeJob(tmp_path, "slow", 0.5), FakeJob(tmp_path, "other")
    a = ahead.Ahead([(FakeJob(tmp_path, "first"), ()), (other, ()), (slow, ())], 1)
    taken(a, 2)  # the one worker takes the last job first: it is inside `slow`
    t = time.perf_counter()
    a.claim(other)
    assert time.perf_counter() - t < 0.3  # not waited for
    assert a.states[1] == ahead.HERE
    a.claim(slow)
    assert os.path.exists(slow.path)
    while a.live:
        time.sleep(0.01)
    assert not os.path.exists(other.path)  # the worker left it to the caller


def test_a_worker_that_dies_is_not_waited_for(tmp_path):
    dead = FakeJob(tmp_path, "dead", die=True)
    a = ahead.Ahead([(FakeJob(tmp_path, "first"), ()), (dead, ()), (FakeJob(tmp_path, "x"), ())],
                    1)
    taken(a, 1)
    t = time.perf_counter()
    a.claim(dead)
    assert time.perf_counter() - t < 30 and not os.path.exists(dead.path)
    assert a.states[1] == ahead.WORKER and not a.live


@pytest.mark.parametrize("limit", ["PATIENCE", "STALL"])
def test_a_stuck_worker_is_stopped(tmp_path, monkeypatch, limit):
    """A worker past PATIENCE is stopped; so is one that uses no CPU for STALL seconds (it is
    waiting on a lock a thread of the parent held at the fork), long before PATIENCE."""
    monkeypatch.setattr(ahead, limit, 0.4)
    stuck = FakeJob(tmp_path, "stuck", seconds=60)
    a = ahead.Ahead([(FakeJob(tmp_path, "first"), ()), (stuck, ())], 1)
    taken(a, 1)
    t = time.perf_counter()
    a.claim(stuck)
    assert 0.3 < time.perf_counter() - t < 10 and not os.path.exists(stuck.path)
    deadline = time.time() + 10
    while a.live and time.time() < deadline:
        time.sleep(0.01)
    assert not a.live  # killed, reaped


_WARN_AT_FORK: list = []
os.register_at_fork(before=lambda: _WARN_AT_FORK and __import__("warnings").warn(
    "os.fork() was called. os.fork() is incompatible with multithreaded code, and JAX is "
    "multithreaded, so this will likely lead to a deadlock.", RuntimeWarning))


def test_no_warning_from_an_at_fork_hook_like_jaxs(tmp_path, recwarn):
    """JAX warns at every fork once it runs; a worker runs no JAX, so that warning is not
    passed on to the user."""
    _WARN_AT_FORK.append(True)
    try:
        a = ahead.Ahead([(FakeJob(tmp_path, "first"), ()), (FakeJob(tmp_path, "j"), ())], 1)
    finally:
        _WARN_AT_FORK.clear()
    a.claim(a.jobs[1][0])
    assert not [w for w in recwarn if "os.fork" in str(w.message)]


def test_start_needs_two_jobs_and_workers(tmp_path, monkeypatch):
    jobs = [(FakeJob(tmp_path, f"j{i}"), ()) for i in range(3)]
    assert ahead.start(jobs[:1]) is None
    monkeypatch.setattr(ahead.config, "COMPILE_WORKERS", 0)
    assert ahead.start(jobs) is None
    monkeypatch.setattr(ahead.config, "COMPILE_WORKERS", 5)
    a = ahead.start(jobs)
    assert len(a.pids) == 2  # never more workers than jobs after the first
    for j, _ in jobs[1:]:
        a.claim(j)


_FIRST_CALL = r"""
import json, sys
import numpy as np
import tracejit as tj
from numba.core import event

compiled = []
class Listener(event.Listener):
    def on_start(self, e): pass
    def on_end(self, e): compiled.append(e.data["dispatcher"].py_func.__name__)
event.register("numba:compile", Listener())

def loss(h0, W, b, dts):
    def step(h, dt):
        return h + dt * np.tanh(W @ h + b), None
    h, _ = tj.scan(step, h0, dts)
    return np.sum(h * h)

rng = np.random.default_rng(0)
n = 48
args = (rng.standard_normal(n), rng.standard_normal((n, n)) / n, rng.standard_normal(n),
        np.full(5, 0.1))
got = tj.jit_grad(loss, argnums=(0, 1))(*args)
want = tj.jit(tj.value_and_grad(loss, argnums=(0, 1)), backend="interpreter")(*args)
for g, w in zip(got[1], want[1]):
    np.testing.assert_allclose(g, w, rtol=1e-9, atol=1e-12)
np.testing.assert_allclose(got[0], want[0], rtol=1e-9)
print(json.dumps(compiled))
"""


@pytest.mark.parametrize("workers", ["0", "1"])
def test_a_cold_first_call_shares_its_compiles(tmp_path, workers):
    """Grad of a scan: forward loop, loss kernel, backward loop. With a worker the calling
    process compiles from the front, the worker from the back, and what the worker compiled
    comes through the disk cache. The numbers are the interpreter's either way."""
    env = dict(os.environ, TRACEJIT_CACHE_DIR=str(tmp_path), TRACEJIT_COMPILE_WORKERS=workers)
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    env["PYTHONPATH"] = root + os.pathsep + env.get("PYTHONPATH", "")
    r = subprocess.run([sys.executable, "-c", _FIRST_CALL], env=env, capture_output=True,
                       text=True, timeout=600)
    assert r.returncode == 0, r.stderr[-3000:]
    compiled = [c for c in json.loads(r.stdout.splitlines()[-1]) if c.startswith(("loop", "k_"))]
    if workers == "0":
        assert compiled[:3] == ["loop_ser", compiled[1], "loop_ser"], compiled
    else:
        # the forward loop (and the loss kernel, if the worker had not started it yet); the
        # backward loop, the last job, was the worker's
        assert compiled in (["loop_ser"], ["loop_ser", compiled[-1]]), compiled
        assert compiled[-1] == "loop_ser" or compiled[-1].startswith("k_"), compiled
