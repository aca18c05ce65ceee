"""Every user-facing error of issue 2 section 6: the tracejit class (and its builtin base),
what went wrong, where in the user's code (this file and the offending line), and a Fix."""
from __future__ import annotations

import math
import os
import traceback

import numpy as np
import pytest

import tracejit as tj
from helpers import line_of
from tracejit.errors import DeviceError

HERE = os.path.abspath(__file__)


def assert_user_error(excinfo, cls, builtin, marker: str, *words: str) -> str:
    """The error is `cls` (and `builtin`), names this file at the line holding `marker`,
    mentions `words`, and ends with a 'Fix:' sentence."""
    err = excinfo.value
    assert isinstance(err, cls), f"expected {cls.__name__}, got {type(err).__name__}: {err}"
    assert isinstance(err, builtin) and isinstance(err, tj.TracejitError)
    msg = str(err)
    line = line_of(HERE, marker)
    assert f'File "{HERE}", line {line}' in msg, \
        f"message does not point to {os.path.basename(HERE)}:{line}:\n{msg}"
    assert marker in msg, f"the offending source line is not shown:\n{msg}"
    fix = [ln for ln in msg.splitlines() if ln.startswith("Fix: ")]
    assert fix and len(fix[0]) > len("Fix: ") + 10, f"no 'Fix:' sentence:\n{msg}"
    for w in words:
        assert w in msg, f"{w!r} missing from:\n{msg}"
    return msg


# ----- non-scalar loss -----
def test_nonscalar_loss(backend):
    # the error names the line that computed the (non-scalar) loss
    g = tj.grad(lambda x: x * 2, backend=backend)  # MARK-nonscalar-loss
    with pytest.raises(tj.GradientError) as e:
        g(np.ones(3))
    assert_user_error(e, tj.GradientError, TypeError, "# MARK-nonscalar-loss", "scalar",
                      "float64[3]", "tracejit.grad")


def test_nonscalar_loss_value_and_grad_aux(backend):
    g = tj.value_and_grad(lambda x: (x, x), has_aux=True, backend=backend)
    with pytest.raises(tj.GradientError) as e:
        g(np.ones(2))  # MARK-nonscalar-aux
    assert_user_error(e, tj.GradientError, TypeError, "# MARK-nonscalar-aux", "scalar")


def test_container_loss(backend):
    with pytest.raises(tj.GradientError) as e:
        tj.grad(lambda x: [np.sum(x)], backend=backend)(np.ones(2))  # MARK-container-loss
    assert_user_error(e, tj.GradientError, TypeError, "# MARK-container-loss", "scalar")


def test_has_aux_without_pair(backend):
    with pytest.raises(tj.GradientError) as e:
        tj.grad(lambda x: np.sum(x), has_aux=True, backend=backend)(np.ones(2))  # MARK-aux
    assert_user_error(e, tj.GradientError, TypeError, "# MARK-aux", "has_aux")


# ----- concrete values of tracers -----
def _if_on_tracer(x):
    if np.sum(x) > 0:  # MARK-if
        return np.sum(x)
    return -np.sum(x)


def _bool_on_tracer(x):
    flag = bool(x[0])  # MARK-bool
    return np.sum(x) * flag


def _float_on_tracer(x):
    s = float(np.sum(x))  # MARK-float
    return np.sum(x) * s


def _int_on_tracer(x):
    return np.sum(x[: int(x[0])])  # MARK-int


def _while_on_tracer(x):
    while np.max(x) < 10:  # MARK-while
        x = x * 2
    return np.sum(x)


def _and_on_tracer(x):
    return np.sum(x) if (x[0] > 0 and x[1] > 0) else 0.0  # MARK-and


def _asarray_on_tracer(x):
    return np.sum(np.asarray(x))  # MARK-asarray


def _item_on_tracer(x):
    return np.sum(x) * x[0].item()  # MARK-item


def _array_of_tracers(x):
    return np.sum(np.array([x[0], x[1]]))  # MARK-array-list


def _range_on_tracer(x):
    return sum(x[i] for i in range(x[0]))  # MARK-range-traced


def _math_on_tracer(x):
    return np.sum(x) * math.exp(x[0])  # MARK-math


# each way of asking a tracer for a concrete value gets its own fix
@pytest.mark.parametrize("fn,marker,fix", [
    (_if_on_tracer, "# MARK-if", "tnp.where"), (_bool_on_tracer, "# MARK-bool", "tnp.where"),
    (_while_on_tracer, "# MARK-while", "tnp.where"), (_and_on_tracer, "# MARK-and", "tnp.where"),
    (_float_on_tracer, "# MARK-float", "keep it an array"),
    (_item_on_tracer, "# MARK-item", "keep it an array"),
    (_int_on_tracer, "# MARK-int", "static argument"),
    (_range_on_tracer, "# MARK-range-traced", "range(x.shape[0])"),
    (_math_on_tracer, "# MARK-math", "use np.exp(...)"),
    (_asarray_on_tracer, "# MARK-asarray", "np.stack"),
    (_array_of_tracers, "# MARK-array-list", "np.stack")],
    ids=lambda v: getattr(v, "__name__", ""))
@pytest.mark.parametrize("transform", ["grad", "jit", "value_and_grad"])
def test_concrete_value_of_tracer(fn, marker, fix, transform, backend):
    f = getattr(tj, transform)(fn, backend=backend)
    with pytest.raises(tj.TracerBoolError) as e:
        f(np.array([1.0, 2.0]))
    msg = assert_user_error(e, tj.TracerBoolError, TypeError, marker, "traced value")
    fix_line = next(ln for ln in msg.splitlines() if ln.startswith("Fix: "))
    assert fix in fix_line, msg
    if fn not in (_if_on_tracer, _bool_on_tracer, _while_on_tracer, _and_on_tracer):
        assert "where(" not in fix_line, msg  # not the branch-on-data hint


def test_math_function_on_tracer_is_named():
    with pytest.raises(tj.TracerBoolError) as e:
        tj.jit(_math_on_tracer)(np.ones(2))
    assert str(e.value).startswith("math.exp() was given a traced value")


def test_library_function_converting_a_tracer_is_named():
    # (scipy.special.logsumexp, the example before, now traces: tests/test_scipy_special.py)
    linalg = pytest.importorskip("scipy.linalg")

    def f(x):
        return np.sum(linalg.expm(x))  # MARK-scipy-expm
    with pytest.raises(tj.UnsupportedError) as e:
        tj.grad(f)(np.eye(3))
    msg = assert_user_error(e, tj.UnsupportedError, NotImplementedError,
                            "# MARK-scipy-expm", "compute it outside")
    assert msg.startswith("scipy.linalg.expm is not supported"), msg


def test_scipy_ufuncs_named_and_expit_traced():
    special = pytest.importorskip("scipy.special")
    x = np.array([-1.0, 0.5, 2.0])
    g = tj.grad(lambda x: np.sum(special.expit(x) ** 2))(x)
    s = 1 / (1 + np.exp(-x))
    np.testing.assert_allclose(g, 2 * s * s * (1 - s))

    def f(x):
        return np.sum(special.gammaln(x))  # MARK-scipy-gammaln
    with pytest.raises(tj.UnsupportedError) as e:
        tj.grad(f)(x)
    msg = assert_user_error(e, tj.UnsupportedError, NotImplementedError,
                            "# MARK-scipy-gammaln")
    assert msg.startswith("scipy.special.gammaln is not supported"), msg


def _assign_into_tracer(x):
    x[0] = 1.0  # MARK-setitem
    return np.sum(x)


def test_assignment_into_tracer_is_functional():
    """x[0] = 1.0 on a tracer updates the traced value (issue 11), never the caller's array."""
    x = np.ones(2)
    np.testing.assert_allclose(tj.grad(_assign_into_tracer)(x), [0.0, 1.0])
    np.testing.assert_allclose(x, [1.0, 1.0])


def test_copy_of_tracer_works(backend):
    f = tj.value_and_grad(lambda x: np.sum(x.copy() * np.copy(x)), backend=backend)
    value, g = f(np.array([1.0, 2.0]))
    assert value == 5.0
    np.testing.assert_allclose(g, [2.0, 4.0])


def test_concrete_error_traceback_is_trimmed():
    with pytest.raises(tj.TracerBoolError) as e:
        tj.grad(_if_on_tracer)(np.ones(2))
    files = [fr.filename for fr in traceback.extract_tb(e.value.__traceback__)]
    pkg = os.path.dirname(os.path.abspath(tj.__file__))
    internal = [f for f in files if os.path.abspath(f).startswith(pkg + os.sep)]
    # only the API boundary that re-raises may remain (a raise always records its own frame)
    assert len(internal) <= 1 and all(f.endswith("dispatch.py") for f in internal), files
    assert files[-1] == HERE  # the innermost frame is the user's `if`


# ----- argnums -----
def test_integer_input_in_argnums(backend):
    with pytest.raises(tj.ArgnumsError) as e:
        g = tj.grad(lambda x, n: np.sum(x) * n, argnums=1, backend=backend)
        g(np.ones(2), np.arange(2))  # MARK-int-argnums
    assert_user_error(e, tj.ArgnumsError, ValueError, "# MARK-int-argnums", "int64",
                      "floating-point")


def test_python_int_and_bool_inputs_in_argnums(backend):
    for value in (3, True):
        with pytest.raises(tj.ArgnumsError) as e:
            tj.grad(lambda x: x * 1.0, backend=backend)(value)  # MARK-pyint-argnums
        assert_user_error(e, tj.ArgnumsError, ValueError, "# MARK-pyint-argnums")


def test_non_numeric_input(backend):
    for value in ("abc", object()):
        with pytest.raises(tj.ArgumentError) as e:
            tj.grad(lambda x: np.sum(x), backend=backend)(value)  # MARK-non-numeric
        assert_user_error(e, tj.ArgumentError, TypeError, "# MARK-non-numeric", "str"
                          if isinstance(value, str) else "object")


def test_non_numeric_input_jit(backend):
    with pytest.raises(tj.ArgumentError) as e:
        tj.jit(lambda x, s: x, backend=backend)(np.ones(2), "mode")  # MARK-non-numeric-jit
    assert_user_error(e, tj.ArgumentError, TypeError, "# MARK-non-numeric-jit",
                      "static_argnums")


@pytest.mark.parametrize("argnums", [1, 5, -2, (0, 1), (0, 3)])
def test_argnums_out_of_range(argnums, backend):
    with pytest.raises(tj.ArgnumsError) as e:
        tj.grad(lambda x: np.sum(x), argnums=argnums, backend=backend)(np.ones(2))  # MARK-range
    assert_user_error(e, tj.ArgnumsError, ValueError, "# MARK-range", "out of range")


@pytest.mark.parametrize("argnums", ["a", 1.0, [0, 1], (), (0, "1"), None, (0, 1.5)])
def test_bad_argnums_type(argnums):
    with pytest.raises(tj.ArgnumsError) as e:
        tj.grad(lambda x: np.sum(x), argnums=argnums)
    msg = str(e.value)
    assert isinstance(e.value, ValueError)
    assert "argnums" in msg and repr(argnums) in msg and "Fix:" in msg


def test_bad_argnums_type_names_line():
    with pytest.raises(tj.ArgnumsError) as e:
        tj.grad(lambda x: np.sum(x), argnums="a")  # MARK-bad-argnums
    assert_user_error(e, tj.ArgnumsError, ValueError, "# MARK-bad-argnums")


def test_argnums_also_static(backend):
    with pytest.raises(tj.ArgnumsError) as e:
        g = tj.grad(lambda x, n: np.sum(x) * n, argnums=1, static_argnums=1, backend=backend)
        g(np.ones(2), 2.0)  # MARK-static-argnums
    assert_user_error(e, tj.ArgnumsError, ValueError, "# MARK-static-argnums")


def test_bad_unconnected_option():
    with pytest.raises(ValueError, match="unconnected"):
        tj.grad(lambda x: x, unconnected="zeros")


# ----- shapes -----
def _broadcast_mismatch(x, y):
    return np.sum(x + y)  # MARK-broadcast


def _matmul_mismatch(a, b):
    return np.sum(a @ b)  # MARK-matmul


def _dot_mismatch(a, b):
    return np.dot(a, b)  # MARK-dot


def _reshape_mismatch(x):
    return np.sum(x.reshape(4, 4))  # MARK-reshape


def _concat_mismatch(x, y):
    return np.sum(np.concatenate([x, y], axis=0))  # MARK-concat


def _index_out_of_bounds(x):
    return x[5]  # MARK-index


def _axis_out_of_bounds(x):
    return np.sum(x, axis=2)  # MARK-axis


@pytest.mark.parametrize("fn,args,marker,words", [
    (_broadcast_mismatch, (np.ones(3), np.ones(4)), "# MARK-broadcast", ("(3,)", "(4,)")),
    (_broadcast_mismatch, (np.ones((2, 3)), np.ones((3, 2))), "# MARK-broadcast",
     ("(2, 3)", "(3, 2)")),
    (_matmul_mismatch, (np.ones((2, 3)), np.ones((2, 3))), "# MARK-matmul", ("matmul",)),
    (_matmul_mismatch, (np.ones(3), np.ones(4)), "# MARK-matmul", ("matmul",)),
    (_matmul_mismatch, (np.ones((2, 2, 3)), np.ones((3, 3, 4))), "# MARK-matmul", ("matmul",)),
    (_dot_mismatch, (np.ones(3), np.ones(4)), "# MARK-dot", ()),
    (_reshape_mismatch, (np.ones(6),), "# MARK-reshape", ("reshape",)),
    (_concat_mismatch, (np.ones((2, 3)), np.ones((2, 4))), "# MARK-concat", ("concatenate",)),
    (_axis_out_of_bounds, (np.ones((2, 2)),), "# MARK-axis", ("axis 2",)),
], ids=["bcast1d", "bcast2d", "matmul2d", "matmul1d", "matmul_batch", "dot", "reshape",
        "concat", "axis"])
def test_shape_mismatch(fn, args, marker, words, backend):
    for transform in (tj.jit, tj.grad):
        f = transform(fn, backend=backend) if transform is tj.jit else \
            tj.grad(fn, argnums=0, backend=backend)
        with pytest.raises(tj.ShapeError) as e:
            f(*args)
        assert_user_error(e, tj.ShapeError, ValueError, marker, *words)


def test_index_out_of_bounds_is_an_index_error(backend):
    """As NumPy: IndexError (tracejit's OutOfBoundsError), at the user's line."""
    for f in (tj.jit(_index_out_of_bounds, backend=backend),
              tj.grad(_index_out_of_bounds, argnums=0, backend=backend)):
        with pytest.raises(tj.OutOfBoundsError) as e:
            f(np.ones(3))
        assert_user_error(e, tj.OutOfBoundsError, IndexError, "# MARK-index", "out of bounds")


# ----- unsupported NumPy functions -----
def _fft(x):
    return np.sum(np.fft.fft(x))  # MARK-fft


def _unique(x):
    return np.sum(np.unique(x))  # MARK-unique


def _median(x):
    return np.sum(np.median(x))  # MARK-median


def _mask_index(x):
    return np.sum(x[x > 0])  # MARK-mask


def _ufunc_accumulate(x):
    return np.sum(np.add.accumulate(x))  # MARK-accumulate


def _where_one_arg(x):
    return np.sum(np.where(x > 0))  # MARK-where1


def _out_kwarg(x):
    return np.sum(np.exp(x, out=np.empty(3)))  # MARK-out


@pytest.mark.parametrize("fn,marker,name", [
    (_fft, "# MARK-fft", "fft"), (_unique, "# MARK-unique", "np.unique"),
    (_median, "# MARK-median", "np.median"), (_mask_index, "# MARK-mask", "boolean mask"),
    (_ufunc_accumulate, "# MARK-accumulate", "np.add.accumulate"),
    (_where_one_arg, "# MARK-where1", "np.where"), (_out_kwarg, "# MARK-out", "out=")],
    ids=["fft", "unique", "median", "mask", "accumulate", "where1", "out"])
def test_unsupported_numpy_function(fn, marker, name, backend):
    with pytest.raises(tj.UnsupportedError) as e:
        tj.grad(fn, backend=backend)(np.array([1.0, -2.0, 3.0]))
    msg = assert_user_error(e, tj.UnsupportedError, NotImplementedError, marker, name,
                            "not supported")
    assert msg.startswith(name) or name in msg.splitlines()[0]


def test_unsupported_names_fft_submodule():
    with pytest.raises(tj.UnsupportedError) as e:
        tj.jit(_fft)(np.ones(3))
    assert "np.fft.fft" in str(e.value).splitlines()[0]


# ----- errors raised later still name the user's line -----
def test_escaped_tracer():
    leaked = []

    def f(x):
        leaked.append(x)
        return np.sum(x)
    tj.grad(f)(np.ones(2))
    with pytest.raises(tj.TracejitError) as e:
        tj.jit(lambda y: y + leaked[0])(np.ones(2))  # MARK-escaped
    assert "escaped" in str(e.value)
    assert f"line {line_of(HERE, '# MARK-escaped')}" in str(e.value)


# ----- options and arguments -----
def test_unknown_backend_name():
    with pytest.raises(DeviceError) as e:
        tj.jit(lambda x: x, backend="numbaa")  # MARK-backend-typo
    msg = assert_user_error(e, DeviceError, RuntimeError, "# MARK-backend-typo",
                            "'numbaa'", "did you mean backend='numba'")
    assert "KeyError" not in msg


def test_unknown_backend_name_in_get_backend():
    from tracejit.backends import get_backend
    with pytest.raises(tj.TracejitError, match="'numbaa' is not a tracejit backend"):
        get_backend("numbaa")


def test_none_in_argnums():
    with pytest.raises(tj.ArgnumsError) as e:
        tj.grad(lambda x, y: np.sum(x), argnums=1)(np.ones(2), None)  # MARK-none-argnums
    assert_user_error(e, tj.ArgnumsError, ValueError, "# MARK-none-argnums", "is None",
                      "leave it out of argnums")


def _forgot_return(x):
    np.sum(x * x)  # MARK-no-return


def test_loss_returned_none():
    with pytest.raises(tj.GradientError) as e:
        tj.grad(_forgot_return)(np.ones(2))  # MARK-none-loss
    assert_user_error(e, tj.GradientError, TypeError, "# MARK-none-loss", "returned None",
                      "`return`")


def _list_as_array(x, ys):
    return np.sum(x * ys)  # MARK-list-as-array


def test_list_of_numbers_used_as_an_array(backend):
    with pytest.raises(tj.TracerBoolError) as e:
        tj.grad(_list_as_array, backend=backend)(np.ones(2), [1.0, 2.0])
    assert_user_error(e, tj.TracerBoolError, TypeError, "# MARK-list-as-array",
                      "list or tuple of traced values", "np.asarray([...])")


def _square_sum(x):
    return np.sum(x ** 2)  # MARK-list-operator


def test_list_or_none_argument_failing_in_an_operator(backend):
    """A list of numbers reaches the function as a list (a pytree, as in JAX), None as None:
    the operator's TypeError comes back naming the argument, the line and the fix."""
    with pytest.raises(tj.ArgumentError) as e:
        tj.jit(_square_sum, backend=backend)([1.0, 2.0])
    assert_user_error(e, tj.ArgumentError, TypeError, "# MARK-list-operator",
                      "argument 0 is a list of 2 numbers", "np.asarray([...])")
    assert "unsupported operand" in str(e.value)
    with pytest.raises(tj.ArgumentError) as e:
        tj.grad(_square_sum, backend=backend)(None)
    assert_user_error(e, tj.ArgumentError, TypeError, "# MARK-list-operator",
                      "argument 0 is None", "static_argnums")
    # a static None is a setting: the user's own error passes through untouched
    with pytest.raises(TypeError, match="unsupported operand") as e:
        tj.jit(lambda x, s: x * s, static_argnums=1)(np.ones(2), None)
    assert not isinstance(e.value, tj.ArgumentError)


def test_unhashable_static_argument():
    f = tj.jit(lambda x, n: x * len(n), static_argnums=1)
    with pytest.raises(tj.ArgumentError) as e:
        f(np.ones(2), [1, 2])  # MARK-unhashable-static
    assert_user_error(e, tj.ArgumentError, TypeError, "# MARK-unhashable-static",
                      "static argument 1 (a list)", "tuple")


def test_static_argnames_naming_no_parameter():
    def f(x, n):
        return x * n
    with pytest.raises(tj.ArgnumsError) as e:
        tj.jit(f, static_argnames="m")  # MARK-static-argnames
    assert_user_error(e, tj.ArgnumsError, ValueError, "# MARK-static-argnames",
                      "static_argnames='m' names no parameter", "(it has x, n)")


def _max_where_no_initial(x):
    return np.max(x, where=x > 0)  # MARK-max-where


def _mean_where_bad_mask(x):
    return np.mean(x, where=np.ones(3, bool))  # MARK-where-shape


@pytest.mark.parametrize("fn,marker,words", [
    (_max_where_no_initial, "# MARK-max-where", ("np.max", "initial=")),
    (_mean_where_bad_mask, "# MARK-where-shape", ("where= mask of shape (3,)", "(2, 2)"))],
    ids=["max-where", "where-shape"])
def test_reduction_where_errors(fn, marker, words, backend):
    with pytest.raises(tj.ShapeError) as e:
        tj.jit(fn, backend=backend)(np.ones((2, 2)))
    assert_user_error(e, tj.ShapeError, ValueError, marker, *words)


def test_installed_libraries_are_not_the_stdlib():
    """Under pyenv site-packages lies inside the stdlib directory: an installed library's
    frames still count as the user's side (errors name the library call's line)."""
    import os

    import scipy

    from tracejit.errors import is_internal
    assert is_internal(os.__file__) and is_internal(np.__file__)
    assert not is_internal(scipy.__file__)
