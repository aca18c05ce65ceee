"""Random numbers drawn inside a traced function would be frozen into the compiled code: each
way of drawing them raises an UnsupportedError at the user's line saying to pass the noise
in (randomness.py); noise passed as an argument, and branches not taken, raise nothing."""
from __future__ import annotations

import os
import random
import sys
import threading

import numpy as np
import numpy.random as npr
import pytest
from numpy.random import standard_normal

import tracejit as tj
from helpers import line_of

HERE = os.path.abspath(__file__)
# the check steps aside while a debugger or coverage tool holds the thread's trace hook
pytestmark = pytest.mark.skipif(sys.gettrace() is not None,
                                reason="a trace function (debugger, coverage) is installed")
RNG = np.random.default_rng(0)
LEGACY = np.random.RandomState(0)


def assert_random_error(excinfo, marker: str, what: str) -> None:
    err = excinfo.value
    assert isinstance(err, tj.UnsupportedError) and isinstance(err, NotImplementedError)
    msg = str(err)
    assert msg.startswith(f"random numbers inside a traced function ({what})"), msg
    assert f'File "{HERE}", line {line_of(HERE, marker)}' in msg, msg
    fix = next(ln for ln in msg.splitlines() if ln.startswith("Fix: "))
    assert "pass it in as an argument" in fix, msg


def _module_function(x):
    return np.sum(x * np.random.normal(size=3))  # MARK-np-random


def _fresh_generator(x):
    return np.sum(x * np.random.default_rng().normal(size=3))  # MARK-default-rng


def _seed_none(x):
    return np.sum(x * np.random.default_rng(seed=None).normal(size=3))  # MARK-seed-none


def _unseeded_bit_generator(x):
    g = np.random.Generator(np.random.PCG64())  # MARK-pcg64
    return np.sum(x * g.normal(size=3))


def _global_generator(x):
    return np.sum(x * RNG.normal(size=3))  # MARK-generator


def _legacy_random_state(x):
    return np.sum(x * LEGACY.rand(3))  # MARK-random-state


def _module_alias(x):
    return np.sum(x * npr.uniform(size=3))  # MARK-npr


def _imported_function(x):
    return np.sum(x * standard_normal(3))  # MARK-imported


def _python_random(x):
    return np.sum(x) * random.random()  # MARK-stdlib


def _draw(n):
    return np.random.rand(n)  # MARK-helper


def _through_helper(x):
    return np.sum(x * _draw(3))


def _in_comprehension(x):
    return np.sum(x * np.stack([np.random.rand() for _ in range(3)]))  # MARK-listcomp


class _Model:
    def __init__(self):
        self.rng = np.random.default_rng(1)

    def loss(self, x):
        return np.sum(x * self.rng.normal(size=x.shape))  # MARK-self-rng


@pytest.mark.parametrize("fn,marker,what", [
    (_module_function, "# MARK-np-random", "np.random.normal"),
    (_fresh_generator, "# MARK-default-rng", "np.random.default_rng() without a seed"),
    (_seed_none, "# MARK-seed-none", "np.random.default_rng() without a seed"),
    (_unseeded_bit_generator, "# MARK-pcg64", "np.random.PCG64() without a seed"),
    (_global_generator, "# MARK-generator", "RNG.normal"),
    (_legacy_random_state, "# MARK-random-state", "LEGACY.rand"),
    (_module_alias, "# MARK-npr", "npr.uniform"),
    (_imported_function, "# MARK-imported", "standard_normal"),
    (_python_random, "# MARK-stdlib", "random.random"),
    (_through_helper, "# MARK-helper", "np.random.rand"),
    (_in_comprehension, "# MARK-listcomp", "np.random.rand"),
    (_Model().loss, "# MARK-self-rng", "self.rng.normal"),
], ids=lambda v: getattr(v, "__name__", None) if callable(v) else None)
@pytest.mark.parametrize("transform", ["jit", "grad"])
def test_random_numbers_while_tracing_raise(fn, marker, what, transform):
    with pytest.raises(tj.UnsupportedError) as e:
        getattr(tj, transform)(fn)(np.ones(3))
    assert_random_error(e, marker, what)
    assert sys.gettrace() is None  # the hook is gone


def _noise_or_draw(x, noise=None):
    noise = np.random.normal(size=x.shape) if noise is None else noise  # MARK-branch
    return np.sum(x * noise)


def test_noise_passed_in_works_and_the_untaken_branch_raises_nothing(backend):
    f = tj.value_and_grad(_noise_or_draw, backend=backend)
    x, noise = np.ones(3), np.array([0.5, -1.0, 2.0])
    value, g = f(x, noise)
    assert value == 1.5
    np.testing.assert_array_equal(g, noise)
    np.testing.assert_array_equal(f(x, 2 * noise)[1], 2 * noise)  # new noise, new result
    with pytest.raises(tj.UnsupportedError) as e:
        f(x)  # noise=None takes the branch that draws
    assert_random_error(e, "# MARK-branch", "np.random.normal")


def test_a_generator_made_from_a_seed_inside_is_deterministic_and_allowed(backend):
    seed = 3

    def f(x):
        w = np.random.default_rng(seed).standard_normal(x.shape)  # the same at every call
        g = np.random.Generator(np.random.PCG64(7))
        return np.sum(x * w) + np.sum(x * g.uniform(size=x.shape))
    want = np.random.default_rng(seed).standard_normal(3) + \
        np.random.Generator(np.random.PCG64(7)).uniform(size=3)
    np.testing.assert_allclose(tj.grad(f, backend=backend)(np.ones(3)), want)


def test_nested_transformation_and_custom_vjp_rule():
    inner = tj.grad(_global_generator)
    with pytest.raises(tj.UnsupportedError) as e:
        tj.grad(lambda x: np.sum(inner(x)))(np.ones(3))
    assert_random_error(e, "# MARK-generator", "RNG.normal")

    @tj.custom_vjp
    def noisy_identity(x):
        return x

    def bwd(res, g):
        return (g * np.random.normal(size=g.shape),)  # MARK-bwd
    noisy_identity.defvjp(lambda x: (x, None), bwd)
    with pytest.raises(tj.UnsupportedError) as e:
        tj.grad(lambda x: np.sum(noisy_identity(x)))(np.ones(3))
    assert_random_error(e, "# MARK-bwd", "np.random.normal")


def test_checked_per_thread():
    results = []

    def worker(fn):
        try:
            results.append(float(tj.grad(fn)(np.ones(3))[0]))
        except tj.UnsupportedError:
            results.append("error")
    threads = [threading.Thread(target=worker, args=(f,)) for f in
               (_module_function, lambda x: np.sum(x * 2.0)) * 3]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(results, key=str) == [2.0, 2.0, 2.0, "error", "error", "error"]


def test_no_hook_for_functions_without_randomness():
    seen = []

    def f(x):
        seen.append(sys.gettrace())
        return np.sum(x * x)
    tj.grad(f)(np.ones(3))
    assert seen == [None]


def test_a_debuggers_trace_function_is_left_alone():
    calls = []

    def tracer(frame, event, arg):
        calls.append(event)
    sys.settrace(tracer)
    try:
        out = tj.jit(_module_function)(np.ones(3))  # not checked under a debugger
        assert sys.gettrace() is tracer
    finally:
        sys.settrace(None)
    assert np.shape(out) == () and calls
