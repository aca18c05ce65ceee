"""Fusion structure: how many kernels a joint graph becomes, and what runs where."""
import numpy as np
import pytest

import tracejit as tj
from tracejit import fusion, passes, pytree
from tracejit.autodiff import vjp_graph


def joint_plan(f, args, argnums=0):
    t = tj.value_and_grad(f, argnums=argnums, backend="interpreter")
    leaves, treedef = pytree.flatten((args, {}))
    graph, _, wrt = t._trace(args, leaves, treedef)
    joint, _ = vjp_graph(graph, wrt)
    return fusion.plan(passes.simplify(joint))


def kernels(items):
    return [it for it in items if isinstance(it, fusion.Kernel)]


def w1(x):
    return np.sum(np.tanh(x) * np.sin(x) + 0.5 * x * x)


def w2(w, b, x, y):
    return np.mean((w * x + b - y) ** 2)


def w4(x, t):
    return np.sum((x + tj.stop_gradient(np.round(x * 4) / 4 - x) - t) ** 2)


def w3(L, Y):
    z = L - tj.stop_gradient(np.max(L, axis=1, keepdims=True))
    return np.mean(np.log(np.sum(np.exp(z), 1)) - np.sum(Y * z, 1))


def w5(W2, X, W1, T):
    h = tj.stop_gradient(np.tanh(X @ W1))
    return np.mean((h @ W2 - T) ** 2)


x = np.ones(64, np.float32)
L = np.ones((16, 10), np.float32)


@pytest.mark.parametrize("f,args,argnums", [
    (w1, (x,), 0),
    (w2, (np.float32(1), np.float32(0), x, x), (0, 1)),
    (w4, (x, x), 0),
    (w3, (L, L), 0),
])
def test_map_reduce_losses_are_one_kernel(f, args, argnums):
    items = joint_plan(f, args, argnums)
    assert len(items) == 1 and isinstance(items[0], fusion.Kernel), fusion.describe(items)


def test_w1_value_and_gradient_share_the_loop():
    (k,) = joint_plan(w1, (x,))
    kinds = set(k.kinds.values())
    assert kinds == {"elem", "acc", "epi"}
    assert len(k.outputs) == 2  # the loss and the gradient, nothing else stored


def test_row_softmax_is_a_row_loop_nest():
    (k,) = joint_plan(w3, (L, L))
    assert k.inner == (1,)
    assert sorted(set(k.kinds.values())) == ["acc", "elem", "epi", "row"]
    assert len(k.outputs) == 2  # loss and dL; max, exp and sums stay in registers


def test_matmul_is_a_library_step():
    items = joint_plan(w5, (np.ones((6, 3), np.float32), np.ones((8, 4), np.float32),
                            np.ones((4, 6), np.float32), np.ones((8, 3), np.float32)))
    names = [it.eqn.prim.name for it in items if isinstance(it, fusion.Step)]
    assert names.count("matmul") == 3
    assert len(kernels(items)) == 2


def test_broadcast_is_indexing_not_a_copy():
    items = joint_plan(lambda a, b: np.sum(a[:, None] * b), (np.ones(5), np.ones((5, 7))))
    (k,) = kernels(items)
    assert not any(isinstance(it, fusion.Step) and it.eqn.prim.name == "broadcast"
                   for it in items)
    assert k.space == (5, 7)


def test_dependence_on_a_total_forces_a_new_kernel():
    # x - mean(x) needs the final mean inside the loop, and its gradient needs the final
    # sum of 2(x - mean): three passes over memory, each a true dependence
    items = joint_plan(lambda v: np.sum((v - np.mean(v)) ** 2), (np.ones(32),))
    assert len(kernels(items)) == 3
