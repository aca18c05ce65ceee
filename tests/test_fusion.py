"""Fusion structure through the public entry point `tj.make_plan`: how many kernels a joint
graph becomes, and what runs where. W1-W6 are the benchmark workloads themselves."""
import numpy as np
import pytest

import tracejit as tj
from benchmarks.workloads import WORKLOADS, data_w1, data_w3, data_w5, tracejit_loss


def joint_plan(f, args, argnums=0):
    return tj.make_plan(tj.value_and_grad(f, argnums=argnums))(*args)


def workload_plan(key, data):
    wl = WORKLOADS[key]
    f, argnums = tracejit_loss(wl)
    return joint_plan(f, wl.ordered(data), argnums)


SMALL = {"W1": lambda: data_w1(64), "W2": lambda: WORKLOADS["W2"].make_data(True),
         "W3": lambda: data_w3(16, 10), "W4": lambda: WORKLOADS["W4"].make_data(True),
         "W5": lambda: data_w5(8), "W6": lambda: WORKLOADS["W6"].make_data(True)}
# (kernels, steps): the map-reduce losses are one pass; W5: three BLAS matmuls and the
# transpose of h for the gradient h.T @ dy
EXPECTED = {"W1": (1, 0), "W2": (1, 0), "W3": (1, 0), "W4": (1, 0), "W5": (2, 4), "W6": (1, 0)}


@pytest.mark.parametrize("key", sorted(EXPECTED))
def test_workload_kernel_counts(key):
    plan = workload_plan(key, SMALL[key]())
    assert (len(plan.kernels), len(plan.steps)) == EXPECTED[key], plan.describe()


def w1(x):
    f, _ = tracejit_loss(WORKLOADS["W1"])
    return f(x)


def w3(L, Y):
    f, _ = tracejit_loss(WORKLOADS["W3"])
    return f(L, Y)


x = np.ones(64, np.float32)
L = np.ones((16, 10), np.float32)


def test_w1_value_and_gradient_share_the_loop():
    (k,) = joint_plan(w1, (x,))
    kinds = set(k.kinds.values())
    assert kinds == {"elem", "acc", "epi"}
    # stored: the loss, the gradient and (the CPU backend's sin/cos range guard) the count
    # of arguments beyond the fast range; no intermediate array
    assert sorted(v.aval.shape for v in k.outputs) == [(), (), (64,)]


def test_row_softmax_is_a_row_loop_nest():
    (k,) = joint_plan(w3, (L, L))
    assert k.inner == (1,)
    assert sorted(set(k.kinds.values())) == ["acc", "elem", "epi", "row"]
    assert len(k.outputs) == 2  # loss and dL; max, exp and sums stay in registers


def test_matmul_is_a_library_step():
    plan = workload_plan("W5", data_w5(8))
    assert [s.eqn.prim.name for s in plan.steps].count("matmul") == 3


def test_broadcast_is_indexing_not_a_copy():
    plan = joint_plan(lambda a, b: np.sum(a[:, None] * b), (np.ones(5), np.ones((5, 7))))
    (k,) = plan.kernels
    assert "broadcast" not in [s.eqn.prim.name for s in plan.steps]  # (a[:, None] is a view)
    assert k.space == (5, 7)


def test_dependence_on_a_total_forces_a_new_kernel():
    # x - mean(x) needs the final mean inside the loop, and its gradient needs the final
    # sum of 2(x - mean): three passes over memory, each a true dependence
    plan = joint_plan(lambda v: np.sum((v - np.mean(v)) ** 2), (np.ones(32),))
    assert len(plan.kernels) == 3


@pytest.mark.parametrize("backend", ["interpreter", "numba"])
def test_size_one_work_is_not_placed_in_an_empty_loop(backend):
    """sum(h*h) of a size-1 h and a sum over an empty z: the size-1 work must not widen into
    the empty loop's kernel, where it would never run (found by tests/test_loops_random.py:
    the final carry of a zero-step scan, summed with its empty ys, read uninitialized)."""
    def f(h, z):
        return np.sum(h * h) + np.sum(z * 0.7)
    h = np.array([0.3])
    np.testing.assert_allclose(tj.jit(f, backend=backend)(h, np.zeros(0)), 0.09)
    np.testing.assert_allclose(tj.grad(f, backend=backend)(h, np.zeros(0)), [0.6])
