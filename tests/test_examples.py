"""Every example runs end to end with --quick, and its final `result:` line says it worked.

Each example runs in a subprocess (as a user would run it), with MPLBACKEND=Agg and the
caller's TRACEJIT_CACHE_DIR / TRACEJIT_BACKEND, so compiled kernels are shared through the
disk cache. Examples whose optional dependency (scikit-learn, matplotlib) is missing are
skipped with the reason.
"""
from __future__ import annotations

import importlib.util
import os
import re
import subprocess
import sys

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
EXAMPLES = os.path.join(ROOT, "examples")


def _floats(text: str) -> list[float]:
    return [float(v) for v in re.findall(r"-?\d+\.\d+(?:e[-+]?\d+)?", text)]


def check_quickstart(result: str) -> None:
    loss, acc = _floats(result)[:2]
    assert loss < 0.3 and acc > 0.9


def check_frozen(result: str) -> None:
    acc_a, acc_b = _floats(result)[:2]
    assert acc_a == acc_b and acc_a > 0.9


def check_gan(result: str) -> None:
    start, end = _floats(result)[:2]
    assert end < 0.5 * start


def check_ste(result: str) -> None:
    a_float, a_ptq, a_ste, a_custom = _floats(result)[:4]
    assert a_float > 0.9 and a_ste > a_ptq and abs(a_ste - a_custom) < 0.03


def check_softmax(result: str) -> None:
    assert "NaN" in result
    acc, grad_diff = _floats(result)[:2]
    assert acc > 0.9 and grad_diff < 1e-4


def check_em(result: str) -> None:
    values = _floats(result)
    means, true_means = values[0:3], values[3:6]
    weights, true_weights = values[6:9], values[9:12]
    assert max(abs(a - b) for a, b in zip(means, true_means)) < 0.3
    assert max(abs(a - b) for a, b in zip(weights, true_weights)) < 0.05


def check_rbm(result: str) -> None:
    start, end = _floats(result)[:2]
    assert end < 0.6 * start


def check_dask_logistic(result: str) -> None:
    err, loss = _floats(result)[:2]
    assert err < 0.05 and 0.3 < loss < 0.5


# name -> (optional modules it needs, check of its `result:` line)
CASES = {
    "quickstart": ((), check_quickstart),
    "frozen_features": (("sklearn",), check_frozen),
    "gan_alternating": (("matplotlib",), check_gan),
    "straight_through_quantization": (("sklearn",), check_ste),
    "stable_softmax": (("sklearn",), check_softmax),
    "em_gaussian_mixture": ((), check_em),
    "rbm_contrastive_divergence": (("sklearn",), check_rbm),
    "dask_logistic_regression": (("dask", "distributed"), check_dask_logistic),
}


def test_every_example_is_listed():
    names = {f[:-3] for f in os.listdir(EXAMPLES) if f.endswith(".py") and not f.startswith("_")}
    assert names == set(CASES), "add new examples to CASES in tests/test_examples.py"


@pytest.mark.parametrize("name", sorted(CASES))
def test_example_quick(name, tmp_path):
    needs, check = CASES[name]
    for module in needs:
        if importlib.util.find_spec(module) is None:
            pytest.skip(f"{name} needs {module} (pip install -e '.[examples]')")
    env = dict(os.environ, MPLBACKEND="Agg",
               PYTHONPATH=os.pathsep.join([ROOT] + [p for p in [os.environ.get("PYTHONPATH")]
                                                    if p]))
    cmd = [sys.executable, os.path.join(EXAMPLES, f"{name}.py"), "--quick"]
    if name == "gan_alternating":
        cmd += ["--out", str(tmp_path / "gan.png")]
    proc = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=300,
                          check=False)
    output = proc.stdout + proc.stderr
    assert proc.returncode == 0, f"{name} failed:\n{output[-4000:]}"
    lines = proc.stdout.strip().splitlines()
    assert lines and lines[-1].startswith("result: "), f"no final result line:\n{output[-2000:]}"
    check(lines[-1])
    if name == "gan_alternating" and importlib.util.find_spec("matplotlib") is not None:
        assert (tmp_path / "gan.png").stat().st_size > 1000
