"""The kernel cache on disk: the test suite's own temporary folder, and the size cap with
least-recently-used eviction (kernel modules with Numba's index and data files)."""
import os
import subprocess
import sys
import tempfile
import time

import numpy as np
import pytest

import tracejit as tj
from tracejit import config
from tracejit.backends import kernel_cache

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def test_suite_uses_a_temporary_cache():
    """conftest points TRACEJIT_CACHE_DIR at a session folder (unless the caller set one),
    so the suite writes nothing into the user's cache; subprocesses inherit it."""
    import conftest
    assert config.CACHE_DIR == os.environ["TRACEJIT_CACHE_DIR"]
    if conftest.SESSION_CACHE is None:
        pytest.skip("the caller chose TRACEJIT_CACHE_DIR")
    assert config.CACHE_DIR == conftest.SESSION_CACHE
    assert os.path.commonpath([config.CACHE_DIR, tempfile.gettempdir()]) == \
        tempfile.gettempdir()
    tj.jit(lambda x: np.sum(x * 3.25))(np.ones(3))
    assert os.listdir(os.path.join(config.CACHE_DIR, "kernels"))
    out = subprocess.run([sys.executable, "-c", "from tracejit import config; "
                          "print(config.CACHE_DIR)"], capture_output=True, text=True,
                         env=dict(os.environ, PYTHONPATH=ROOT), timeout=120)
    assert out.stdout.strip() == config.CACHE_DIR


def test_cache_cap_is_read_from_the_environment():
    code = "from tracejit import config; print(config.CACHE_MAX_MB)"
    env = {k: v for k, v in os.environ.items() if k != "TRACEJIT_CACHE_MAX_MB"}
    env["PYTHONPATH"] = ROOT
    default = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                             env=env, timeout=120)
    assert float(default.stdout) == 1024
    env["TRACEJIT_CACHE_MAX_MB"] = "2.5"
    small = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                           env=env, timeout=120)
    assert float(small.stdout) == 2.5


def _module(tag: str, size: int = 10_000) -> str:
    return f"X = {tag!r}\n" + "#" * size + "\n"


@pytest.fixture
def tiny_cache(tmp_path, monkeypatch):
    monkeypatch.setattr(config, "CACHE_DIR", str(tmp_path))
    monkeypatch.setattr(config, "CACHE_MAX_MB", 25_000 / 2**20)  # two 10 kB modules fit
    return tmp_path / "kernels"


def _load(tag: str):
    """Load module `tag` as a new process would (not from this process's MODULES)."""
    digest = f"test{tag}"
    kernel_cache.MODULES.pop(f"tracejit_k_{digest}", None)
    return kernel_cache.load(_module(tag), digest)


def _present(folder) -> set:
    return {p.split(".")[0].removeprefix("tracejit_k_test")
            for p in os.listdir(folder) if p.endswith(".py")}


def test_least_recently_used_kernels_are_evicted(tiny_cache):
    assert _load("a").X == "a" and _load("b").X == "b"
    # cache entries named after each module (bytecode, Numba index and data) go with it
    pyc = tiny_cache / "__pycache__"
    pyc.mkdir(exist_ok=True)
    for tag in "ab":
        for ext in (".k_add-12.py311.nbi", ".k_add-12.py311.1.nbc"):
            (pyc / f"tracejit_k_test{tag}{ext}").write_bytes(b"x" * 100)
    assert _present(tiny_cache) == {"a", "b"}
    _age(tiny_cache, "a", 50)
    _age(tiny_cache, "b", 40)
    _load("a")  # used again: b is now the least recently used
    _load("c")  # over the cap: b goes, with its files
    assert _present(tiny_cache) == {"a", "c"}
    assert not [p for p in os.listdir(pyc) if p.startswith("tracejit_k_testb")]
    assert [p for p in os.listdir(pyc) if p.startswith("tracejit_k_testa.")]
    _load("d")  # a was used before c
    assert _present(tiny_cache) == {"c", "d"}
    total = sum(p.stat().st_size for p in tiny_cache.rglob("*") if p.is_file())
    assert total <= 25_000


def _age(folder, tag: str, seconds: float) -> None:
    """Last used `seconds` ago, modified before that (a read alone does not move such an
    access time under relatime or noatime)."""
    now = time.time_ns()
    os.utime(folder / f"tracejit_k_test{tag}.py",
             ns=(now - int(seconds * 1e9), now - int(2 * seconds * 1e9)))


def test_loading_sets_the_access_time_only(tiny_cache):
    """A use sets the access time, never the modification time: Numba's index keys on it."""
    _load("a")
    path = tiny_cache / "tracejit_k_testa.py"
    _age(tiny_cache, "a", 50)
    mtime = path.stat().st_mtime_ns
    before = time.time_ns()
    _load("a")
    st = path.stat()
    assert st.st_mtime_ns == mtime and st.st_atime_ns >= before - 10**7


def test_orphaned_cache_files_go_first(tiny_cache):
    _load("a")
    pyc = tiny_cache / "__pycache__"
    pyc.mkdir(exist_ok=True)
    (pyc / "tracejit_k_testz.k_add-3.py311.1.nbc").write_bytes(b"x" * 5000)
    _load("b")  # 25 kB with the orphan: the orphan goes, both modules stay
    assert _present(tiny_cache) == {"a", "b"}
    assert not (pyc / "tracejit_k_testz.k_add-3.py311.1.nbc").exists()


def test_real_kernels_are_evicted_with_numba_files(tmp_path, monkeypatch):
    """Compiled kernels under a cap below one kernel: each new one evicts the previous
    module together with the index and data Numba wrote for it; calls still work."""
    monkeypatch.setattr(config, "CACHE_DIR", str(tmp_path))
    monkeypatch.setattr(config, "CACHE_MAX_MB", 1e-3)
    x = np.linspace(0.1, 1, 50)
    f = tj.jit(lambda x: np.sum(np.sin(x) * 1.7183))
    np.testing.assert_allclose(f(x), np.sum(np.sin(x) * 1.7183))
    kernel_cache.wait_compiled()
    pyc = tmp_path / "kernels" / "__pycache__"
    first = {p.name.split(".")[0] for p in (tmp_path / "kernels").glob("*.py")}
    assert len(first) == 1 and any(p.suffix == ".nbi" for p in pyc.iterdir())
    g = tj.jit(lambda x: np.sum(np.cos(x) * 2.7183))
    np.testing.assert_allclose(g(x), np.sum(np.cos(x) * 2.7183))
    names = {p.name.split(".")[0] for p in (tmp_path / "kernels").glob("*.py")}
    assert len(names) == 1 and names != first
    assert not [p for p in pyc.iterdir() if p.name.split(".")[0] in first]
    np.testing.assert_allclose(f(x), np.sum(np.sin(x) * 1.7183))  # loaded code still runs


def test_parallel_variants_compile_after_the_first_call():
    """A kernel's parallel variant compiles in the background only once the executable's
    first call is over: Numba compiles one function at a time, so it would make the next
    kernel's serial compile wait."""
    import threading
    import types
    events = []
    stub = types.SimpleNamespace(par=types.SimpleNamespace(compile=events.append),
                                 _use=lambda fn: events.append("use"))
    with kernel_cache.first_call():
        t = threading.Thread(target=kernel_cache.TieredKernel._compile_parallel,
                             args=(stub, "sig"))
        kernel_cache._TIER_UPS.add(t)
        t.start()
        time.sleep(0.2)
        events.append("first call over")
    t.join(10)
    assert events == ["first call over", "sig", "use"]
    assert t not in kernel_cache._TIER_UPS


_PARALLEL_LOOP = r"""
import numpy as np
import tracejit as tj

def euler(h, W, b):
    def step(h, _):
        return h + 0.1 * np.tanh(W @ h + b), None
    return tj.scan(step, h, None, length=4)[0]

rng = np.random.default_rng(0)
n = 256  # a body kernel big enough to be parallel: the loop module has a loop_par
args = (rng.standard_normal(n), rng.standard_normal((n, n)) / n, rng.standard_normal(n))
out = tj.jit(euler)(*args)
tj.wait_compiled()
print(repr(float(out.sum())))
"""


def test_a_parallel_loop_compiled_over_cached_kernels_loads_in_a_new_process(tmp_path):
    """loop_par compiled in a process that loaded its parallel kernels from the disk cache:
    Numba's entry for it forgets to start the threading layer, and loaded first in a new
    process it aborted ("Symbol not found: allocate_sched")."""
    env = dict(os.environ, TRACEJIT_CACHE_DIR=str(tmp_path))
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    env["PYTHONPATH"] = root + os.pathsep + env.get("PYTHONPATH", "")

    def run():
        r = subprocess.run([sys.executable, "-c", _PARALLEL_LOOP], env=env,
                           capture_output=True, text=True, timeout=600)
        assert r.returncode == 0, r.stderr[-3000:]
        return float(r.stdout.split()[-1])

    first = run()  # kernels and loops compiled, all cached
    entries = tmp_path / "kernels" / "__pycache__"
    loops = [p for p in entries.iterdir() if ".loop_" in p.name]
    assert any(".loop_par" in p.name for p in loops)
    for p in loops:
        p.unlink()
    # loop_par compiled again, over kernels loaded from disk; then loaded first of all in a
    # new process (the last bits may differ from a loop compiled in-process: noted on #13)
    for _ in range(2):
        np.testing.assert_allclose(run(), first, rtol=1e-13)


def test_first_calls_freeze_the_collectors_objects():
    """While an executable's first call compiles, the objects there were before it are
    frozen (no full collections over them); after the last first call they are not."""
    import gc
    assert gc.get_freeze_count() == 0
    with kernel_cache.first_call():
        assert gc.get_freeze_count() > 0
        with kernel_cache.first_call():  # another thread's first call, nested
            pass
        assert gc.get_freeze_count() > 0
    assert gc.get_freeze_count() == 0
