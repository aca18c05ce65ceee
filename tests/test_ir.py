"""The IR: printer format, check_graph, and the clean-up passes (DCE, CSE, constant folding,
implicit broadcasting, algebraic rules, stop_gradient erasure), each on a small graph."""
from __future__ import annotations

import re

import numpy as np
import pytest

import tracejit as tj
from tracejit import passes
from tracejit.backends.interpreter import run_graph as eval_graph
from tracejit.ir import Aval, Eqn, Graph, Literal, Var, check_graph
from tracejit.primitives import REGISTRY

F32 = np.dtype(np.float32)


def ir(f, *args):
    return tj.make_ir(f)(*args)


def names(graph) -> list[str]:
    return [e.prim.name for e in graph.eqns]


def same_values(g1, g2, args):
    for a, b in zip(eval_graph(g1, args), eval_graph(g2, args)):
        np.testing.assert_array_equal(a, b)


# ----- printer -----
def test_printer_format():
    g = ir(lambda a, b: a * b, np.ones(3, np.float32), np.ones(3, np.float32))
    text = str(g)
    assert text.splitlines() == ["{ lambda a:f32[3] b:f32[3] .",
                                 "    c:f32[3] = mul a b",
                                 "  in ( c ) }"]


def test_printer_params_literals_and_dtypes():
    g = ir(lambda x: np.sum(x * 2.0, axis=1) > 0, np.ones((2, 3)))
    text = str(g)
    assert "a:f64[2,3]" in text
    assert re.search(r"b:f64\[2,3\] = mul a 2\.0:f64", text), text
    assert re.search(r"c:f64\[2,1\] = reduce_sum\[axes=\(1,\)\] b", text), text
    assert re.search(r":bool\[2\] = gt ", text), text
    for line in text.splitlines()[1:-1]:  # every equation: `<outs> = <prim>[<params>] <atoms>`
        assert re.fullmatch(r"    ([a-z]+:[a-z0-9]+\[[0-9,]*\] ?)+ = [a-z_]+(\[.*\])? .+",
                            line), line


def test_printer_scalar_and_array_constants():
    # an array made inside the function is a constant (a captured one is an input)
    text = str(ir(lambda x: x * np.arange(3.0) + 1, np.ones(3)))
    assert "constf64[3]" in text and "1.0:f64" in text


def test_printer_names_past_z():
    def f(x):
        for _ in range(30):
            x = x + 1.0
        return x
    text = str(ir(f, np.ones(2)))
    assert " ba:f64[2] = add " in text  # names go a..z, ba, bb, ...


# ----- check_graph -----
@pytest.mark.parametrize("f,args", [
    (lambda x: np.sum(np.exp(x) * x.T @ x), (np.ones((3, 3)),)),
    (lambda x, y: np.where(x > y, x, y)[::-1, None], (np.ones((2, 3)), np.ones(3))),
    (lambda x: np.concatenate([x, x[1:]]).reshape(-1, 1).max(axis=0), (np.ones(4),)),
])
def test_check_graph_on_traced_and_joint_graphs(f, args):
    fwd = ir(f, *args)
    check_graph(fwd)
    loss = lambda *a: np.sum(f(*a))  # noqa: E731
    inner = tj.grad(lambda *a: np.sum(np.sin(f(*a))))
    second = tj.grad(lambda *a: np.sum(inner(*a)))  # grad of grad: a joint graph of a joint
    for g in (ir(tj.grad(loss), *args), passes.simplify(ir(tj.value_and_grad(loss), *args)),
              ir(second, *args), passes.simplify(ir(second, *args))):
        check_graph(g)


def test_check_graph_detects_errors():
    a = Var(Aval((3,), F32))
    b = Var(Aval((3,), F32))
    mul = REGISTRY["mul"]
    use_before_def = Graph([a], [Eqn(mul, (a, b), {}, (Var(Aval((3,), F32)),))], [a])
    with pytest.raises(AssertionError, match="use before def"):
        check_graph(use_before_def)
    wrong_aval = Graph([a, b], [Eqn(mul, (a, b), {}, (Var(Aval((4,), F32)),))], [a])
    with pytest.raises(AssertionError, match="mul"):
        check_graph(wrong_aval)
    undefined_output = Graph([a], [], [b])
    with pytest.raises(AssertionError, match="output"):
        check_graph(undefined_output)


# ----- passes -----
def test_dce_removes_unused_equations():
    def f(x):
        unused = np.exp(x) * 3  # noqa: F841
        return np.sin(x)
    g = tj.make_ir(f)(np.ones(2))  # make_ir runs DCE already
    assert names(g) == ["sin"]
    a = Var(Aval((2,), F32))
    dead, live = Var(Aval((2,), F32)), Var(Aval((2,), F32))
    raw = Graph([a], [Eqn(REGISTRY["exp"], (a,), {}, (dead,)),
                      Eqn(REGISTRY["sin"], (a,), {}, (live,))], [live])
    assert names(passes.dce(raw)) == ["sin"]


def test_cse_merges_identical_equations():
    g = ir(lambda a, b: np.sum(a * b + a * b) + np.sum(np.exp(a) * np.exp(a)),
           np.ones(3), np.ones(3))
    assert names(g).count("mul") == 3 and names(g).count("exp") == 2
    out = passes.cse(g)
    check_graph(out)
    assert names(out).count("mul") == 2 and names(out).count("exp") == 1
    same_values(g, out, [np.arange(3.0), np.ones(3) * 2])


def test_cse_keeps_different_params():
    g = ir(lambda x: np.sum(x, axis=0) + np.sum(x, axis=1), np.ones((3, 3)))
    assert names(passes.cse(g)).count("reduce_sum") == 2


def test_constant_folding():
    g = ir(lambda x: x * (np.float64(2.0) * 3.0 + 1.0), np.ones(3))
    out = passes.simplify(g)
    assert names(out) == ["mul"], str(out)
    # folding scalar literal equations recorded by the tracer
    a = Var(Aval((3,), F32))
    t = Var(Aval((), F32))
    y = Var(Aval((3,), F32))
    two = Literal.of(np.float32(2.0))
    raw = Graph([a], [Eqn(REGISTRY["add"], (two, two), {}, (t,)),
                      Eqn(REGISTRY["mul"], (a, t), {}, (y,))], [y])
    folded = passes.simplify(raw)
    assert names(folded) == ["mul"]
    lit = folded.eqns[0].inputs[1]
    assert isinstance(lit, Literal) and lit.val == 4.0 and lit.dtype == F32
    same_values(raw, folded, [np.arange(3, dtype=np.float32)])


def test_implicit_broadcast_removes_broadcast_before_elementwise():
    g = ir(lambda x, b: x + np.broadcast_to(b, (4, 3)), np.ones((4, 3)), np.ones(3))
    assert "broadcast" in names(g)
    out = passes.simplify(g)
    assert names(out) == ["add"], str(out)
    assert out.eqns[0].inputs[1].aval.shape == (3,)
    same_values(g, out, [np.ones((4, 3)), np.arange(3.0)])


def test_implicit_broadcast_kept_when_shape_would_change():
    g = ir(lambda b: np.broadcast_to(b, (4, 3)) * 2.0, np.ones(3))
    out = passes.simplify(g)
    assert out.outputs[0].aval.shape == (4, 3)
    same_values(g, out, [np.arange(3.0)])


def test_algebraic_identities():
    g = ir(lambda x: -(-(x * 1.0)) / 1.0 - 0.0, np.ones(3))
    out = passes.simplify(g)
    assert names(out) == [], str(out)
    assert out.outputs[0] is out.inputs[0]
    # x + 0 is kept (it turns -0.0 into +0.0)
    g = ir(lambda x: x + 0.0, np.ones(3))
    assert names(passes.simplify(g)) == ["add"]


def test_erase_stop_gradient():
    g = ir(lambda x: tj.stop_gradient(x * 2.0) + x, np.ones(3))
    assert "stop_gradient" in names(g)
    out = passes.erase_identities(g)
    assert "stop_gradient" not in names(out)
    same_values(g, out, [np.arange(3.0)])


def test_simplify_preserves_values_on_joint_graph():
    def loss(x, y):
        return np.sum(tnp_softmax(x) * y * 1.0) + np.max(x) * 0.0
    x, y = np.array([[0.1, 2.0, -1.0], [3.0, 0.0, 0.5]]), np.arange(3.0)
    joint = ir(tj.value_and_grad(loss, argnums=(0, 1)), x, y)
    out = passes.simplify(joint)
    check_graph(out)
    assert len(out.eqns) < len(joint.eqns)
    for a, b in zip(eval_graph(joint, [x, y]), eval_graph(out, [x, y])):
        np.testing.assert_allclose(a, b, rtol=1e-15)


def tnp_softmax(x):
    import tracejit.numpy as tnp
    return tnp.softmax(x)


def test_equations_record_user_line():
    g = ir(lambda x: np.exp(x), np.ones(2))
    (eqn,) = g.eqns
    assert eqn.where is not None and eqn.where[0] == __file__
