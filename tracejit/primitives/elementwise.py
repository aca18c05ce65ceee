"""Elementwise primitives: unary, binary (NumPy broadcasting) and select.

Binary primitives take operands of one dtype (tracejit.numpy promotes before binding) and
broadcast like NumPy; autodiff sums a cotangent back to its input's shape, never the rule.
Emit templates are scalar Python expressions valid in numba.njit and numba.cuda.jit code;
`{T}` stands for the output's scalar type (e.g. np.float32) so constants keep their dtype.
The CPU backend overrides the transcendental ones with tracejit's vectorizable math (`vm.*`,
branch-free, so LLVM vectorizes the loop; libm calls do not vectorize).
"""
from __future__ import annotations

import numpy as np

from ..ir import Aval
from . import (
    ANY,
    BINARY,
    LOOP,
    NONZERO,
    POSITIVE,
    SELECT,
    SMOOTH,
    UNARY,
    UNIT,
    broadcast_shapes,
    defprim,
    is_float,
    keep_if,
)


def same_shape(x: Aval, **_) -> Aval:
    return x


def _binary_shape(name: str, out_dtype=None):
    def rule(x: Aval, y: Aval) -> Aval:
        assert x.dtype == y.dtype, f"{name}: operand dtypes differ ({x.dtype}, {y.dtype})"
        return Aval(broadcast_shapes(x.shape, y.shape, op=name), out_dtype or x.dtype)
    return rule


def _bool_shape(x: Aval) -> Aval:
    return Aval(x.shape, np.dtype(bool))


def select(c, x, y):
    return select_p.bind(c, x, y)


def convert(x, dtype):
    return convert_p.bind(x, dtype=np.dtype(dtype))


def zeros_like_ct(x):
    return None


# (the JVP and batching rules of elementwise primitives are their kind's, filled in by
# defprim: the JVP from the VJP, batching by broadcasting; see primitives/__init__.py)
def _unary(name, impl, vjp, emit, numpy=(), domain=ANY, **kw):
    return defprim(name, UNARY, shape=same_shape, impl=impl, vjp=vjp, emit=emit,
                   numpy=numpy, domain=domain, fusion=LOOP, **kw)


def _cpu(fn: str) -> dict:
    """The CPU backend's override: tracejit's vectorizable `vm.<fn>`."""
    return {"numba_cpu": f"vm.{fn}({{0}})"}


def _gpu_rint(dtype: np.dtype) -> str:
    """rint on the GPU (NumPy's rint is no CUDA function): round half to even by adding and
    removing 2**(mantissa bits), which leaves no fraction bits; integers are integral."""
    if not is_float(dtype):
        return "{0}"
    m = f"np.{dtype.name}({2.0 ** np.finfo(dtype).nmant!r})"
    return f"(math.copysign((abs({{0}}) + {m}) - {m}, {{0}}) if abs({{0}}) < {m} else {{0}})"


# ----- unary -----
def _neg_neg(ins, out, producer):
    p = producer(ins[0])
    return p.inputs[0] if p is not None and p.prim is neg_p else None


neg_p = _unary("neg", np.negative, lambda g, out, x: (-g,), "(-{0})", ("negative",),
               cheap=True, rewrite=_neg_neg)  # neg(neg x) -> x
exp_p = _unary("exp", np.exp, lambda g, out, x: (g * out,), "math.exp({0})", ("exp",),
               domain=SMOOTH, emit_for=_cpu("exp"))
expm1_p = _unary("expm1", np.expm1, lambda g, out, x: (g * (out + 1),), "math.expm1({0})",
                 ("expm1",), domain=SMOOTH, emit_for=_cpu("expm1"))
log_p = _unary("log", np.log, lambda g, out, x: (g / x,), "math.log({0})", ("log",),
               domain=POSITIVE, emit_for=_cpu("log"))
log1p_p = _unary("log1p", np.log1p, lambda g, out, x: (g / (x + 1),), "math.log1p({0})",
                 ("log1p",), domain=POSITIVE, emit_for=_cpu("log1p"))
# vm.sin/vm.cos are exact only for |x| < vm.TRIG_MAX: the CPU backend guards their range
sin_p = _unary("sin", np.sin, lambda g, out, x: (g * cos_p.bind(x),), "math.sin({0})", ("sin",),
               emit_for=_cpu("sin"))
cos_p = _unary("cos", np.cos, lambda g, out, x: (-(g * sin_p.bind(x)),), "math.cos({0})",
               ("cos",), emit_for=_cpu("cos"))
tan_p = _unary("tan", np.tan, lambda g, out, x: (g * (1 + out * out),), "math.tan({0})",
               ("tan",), domain=UNIT)
tanh_p = _unary("tanh", np.tanh, lambda g, out, x: (g * (1 - out * out),), "math.tanh({0})",
                ("tanh",), emit_for=_cpu("tanh"))
sinh_p = _unary("sinh", np.sinh, lambda g, out, x: (g * cosh_p.bind(x),), "math.sinh({0})",
                ("sinh",), domain=SMOOTH)
cosh_p = _unary("cosh", np.cosh, lambda g, out, x: (g * sinh_p.bind(x),), "math.cosh({0})",
                ("cosh",), domain=SMOOTH)
arctan_p = _unary("arctan", np.arctan, lambda g, out, x: (g / (1 + x * x),), "math.atan({0})",
                  ("arctan",))
arcsin_p = _unary("arcsin", np.arcsin, lambda g, out, x: (g / sqrt_p.bind(1 - x * x),),
                  "math.asin({0})", ("arcsin",), domain=UNIT)
arccos_p = _unary("arccos", np.arccos, lambda g, out, x: (-g / sqrt_p.bind(1 - x * x),),
                  "math.acos({0})", ("arccos",), domain=UNIT)
sqrt_p = _unary("sqrt", np.sqrt, lambda g, out, x: (g / (2 * out),), "math.sqrt({0})",
                ("sqrt",), domain=POSITIVE)
# d|x|/dx = sign(x), so 0 at x = 0 (as JAX)
abs_p = _unary("abs", np.abs, lambda g, out, x: (g * sign_p.bind(x),), "abs({0})",
               ("absolute", "abs"), domain=NONZERO, cheap=True)
logistic_p = _unary("logistic", lambda x: 1 / (1 + np.exp(-x)),
                    lambda g, out, x: (g * (out * (1 - out)),),
                    "({T}(1) / ({T}(1) + math.exp(-{0})))", domain=ANY,
                    emit_for=_cpu("sigmoid"))
# piecewise-constant functions: zero gradient everywhere (JAX's convention)
sign_p = _unary("sign", np.sign, lambda g, out, x: (None,),
                "({T}(1) if {0} > 0 else ({T}(-1) if {0} < 0 else {0}))", ("sign",), cheap=True)
# CUDA's math.floor/ceil return floats (unlike Python's); NumPy's are no CUDA functions
floor_p = _unary("floor", np.floor, lambda g, out, x: (None,), "np.floor({0})", ("floor",),
                 emit_for={"numba_cuda": "math.floor({0})"})
ceil_p = _unary("ceil", np.ceil, lambda g, out, x: (None,), "np.ceil({0})", ("ceil",),
                emit_for={"numba_cuda": "math.ceil({0})"})
round_p = _unary("round", np.rint, lambda g, out, x: (None,), "np.rint({0})", ("rint",),
                 emit_for={"numba_cuda": _gpu_rint})
logical_not_p = defprim("logical_not", UNARY, shape=_bool_shape, impl=np.logical_not,
                        emit="(not {0})", numpy=("logical_not",), fusion=LOOP, cheap=True)
# identity forward, constant edge backward (and a zero tangent forward, as in JAX); erased
# by passes.simplify once the transformations are done
stop_gradient_p = _unary("stop_gradient", lambda x: np.array(x, copy=True),
                         lambda g, out, x: (None,), "{0}", erase_after_autodiff=True,
                         cheap=True)


def _convert_shape(x: Aval, dtype: np.dtype) -> Aval:
    return Aval(x.shape, np.dtype(dtype))


def _convert_vjp(g, out, x, dtype):
    return (convert(g, x.dtype) if is_float(x.dtype) and is_float(dtype) else None,)


def _convert_jvp(tangents, out, x, dtype):
    return convert(tangents[0], dtype) if is_float(x.dtype) and is_float(dtype) else None


convert_p = defprim("convert", UNARY, shape=_convert_shape,
                    impl=lambda x, dtype: np.asarray(x).astype(dtype),
                    vjp=_convert_vjp, jvp=_convert_jvp,
                    emit="np.{dtype}({0})", domain=ANY, fusion=LOOP, cheap=True)


# ----- binary -----
def _binary(name, impl, vjp, emit, numpy=(), domain=ANY, out_dtype=None, cheap=False,
            emit_for=None, **kw):
    return defprim(name, BINARY, shape=_binary_shape(name, out_dtype), impl=impl, vjp=vjp,
                   emit=emit, numpy=numpy, domain=domain, fusion=LOOP, cheap=cheap,
                   emit_for=emit_for or {}, **kw)


def _pow_vjp(g, out, x, y):
    gx = g * (y * x ** (y - 1))
    # d/dy x**y = log(x) x**y, defined as 0 where x == 0 (JAX's choice) so 0**y stays finite
    safe_x = select(x == 0, 1, x)
    gy = g * select(x == 0, 0, out * log_p.bind(safe_x))
    return gx, gy


def _max_vjp(g, out, x, y):
    # ties share the gradient equally (as jax.numpy.maximum)
    gx = select(x > y, g, select(x == y, 0.5 * g, 0))
    return gx, g - gx


def _min_vjp(g, out, x, y):
    gx = select(x < y, g, select(x == y, 0.5 * g, 0))
    return gx, g - gx


# NaN-propagating like np.maximum: the comparison is false when either side is NaN
MAX_EMIT = "({0} if ({0} > {1} or {0} != {0}) else {1})"
MIN_EMIT = "({0} if ({0} < {1} or {0} != {0}) else {1})"

add_p = _binary("add", np.add, lambda g, out, x, y: (g, g), "({0} + {1})", ("add",),
                cheap=True)
sub_p = _binary("sub", np.subtract, lambda g, out, x, y: (g, -g), "({0} - {1})", ("subtract",),
                cheap=True, rewrite=lambda ins, out, _: keep_if(ins[0], out, ins[1], 0))
mul_p = _binary("mul", np.multiply, lambda g, out, x, y: (g * y, g * x), "({0} * {1})",
                ("multiply",), cheap=True,
                rewrite=lambda ins, out, _: keep_if(ins[0], out, ins[1], 1) or keep_if(
                    ins[1], out, ins[0], 1))
div_p = _binary("div", np.divide, lambda g, out, x, y: (g / y, -(g * out) / y), "({0} / {1})",
                ("divide", "true_divide"), domain=NONZERO,
                rewrite=lambda ins, out, _: keep_if(ins[0], out, ins[1], 1))
# integer // and % (NumPy's: the floor, the divisor's sign, 0 where y == 0); tracejit.numpy
# binds them for integers only: float // and % are floor(x / y) compositions (differentiable)
floordiv_p = _binary("floordiv", np.floor_divide, None, "({0} // {1})", domain=NONZERO)
rem_p = _binary("rem", np.remainder, None, "({0} % {1})", domain=NONZERO)
pow_p = _binary("pow", np.power, _pow_vjp, "({0} ** {1})", ("power",), domain=POSITIVE,
                emit_for={"numba_cpu": "vm.pow({0}, {1})"})
# where each side's cotangent can be nonzero (see autodiff: NaN-safe masks)
max_p = _binary("max", np.maximum, _max_vjp, MAX_EMIT, ("maximum",), cheap=True,
                emit_for={"numba_cpu": "vm.maximum({0}, {1})"},
                masks=lambda g, out, x, y: (ge_p.bind(x, y), logical_not_p.bind(gt_p.bind(x, y))))
min_p = _binary("min", np.minimum, _min_vjp, MIN_EMIT, ("minimum",), cheap=True,
                emit_for={"numba_cpu": "vm.minimum({0}, {1})"},
                masks=lambda g, out, x, y: (le_p.bind(x, y), logical_not_p.bind(lt_p.bind(x, y))))

def _erf_impl(fn):
    def impl(x):
        try:
            import scipy.special as sp
            return getattr(sp, fn)(x)
        except ImportError:  # pragma: no cover  (scipy is optional)
            import math
            return np.vectorize(getattr(math, fn), otypes=[np.asarray(x).dtype])(x)
    return impl


_2_SQRT_PI = 1.1283791670955126
arctan2_p = _binary("arctan2", np.arctan2, lambda g, out, y, x: (
    g * x / (x * x + y * y), -(g * y) / (x * x + y * y)), "math.atan2({0}, {1})",
                    ("arctan2",), domain=NONZERO)
hypot_p = _binary("hypot", np.hypot, lambda g, out, x, y: (g * x / out, g * y / out),
                  "math.hypot({0}, {1})", ("hypot",), domain=NONZERO)
# d/dx copysign(x, y) = sign(x) sign(y); piecewise constant in y
copysign_p = _binary("copysign", np.copysign, lambda g, out, x, y: (
    g * sign_p.bind(x) * sign_p.bind(out), None), "math.copysign({0}, {1})", ("copysign",),
                     domain=NONZERO)
erf_p = _unary("erf", _erf_impl("erf"),
               lambda g, out, x: (g * (_2_SQRT_PI * exp_p.bind(-(x * x))),), "math.erf({0})")
erfc_p = _unary("erfc", _erf_impl("erfc"),
                lambda g, out, x: (-(g * (_2_SQRT_PI * exp_p.bind(-(x * x)))),),
                "math.erfc({0})")

_BOOL = np.dtype(bool)
_no_grad = lambda g, out, x, y: (None, None)
lt_p = _binary("lt", np.less, _no_grad, "({0} < {1})", ("less",), out_dtype=_BOOL, cheap=True)
le_p = _binary("le", np.less_equal, _no_grad, "({0} <= {1})", ("less_equal",), out_dtype=_BOOL,
               cheap=True)
gt_p = _binary("gt", np.greater, _no_grad, "({0} > {1})", ("greater",), out_dtype=_BOOL,
               cheap=True)
ge_p = _binary("ge", np.greater_equal, _no_grad, "({0} >= {1})", ("greater_equal",),
               out_dtype=_BOOL, cheap=True)
eq_p = _binary("eq", np.equal, _no_grad, "({0} == {1})", ("equal",), out_dtype=_BOOL,
               cheap=True)
ne_p = _binary("ne", np.not_equal, _no_grad, "({0} != {1})", ("not_equal",), out_dtype=_BOOL,
               cheap=True)
and_p = _binary("and", np.logical_and, _no_grad, "({0} and {1})", ("logical_and",), cheap=True)
or_p = _binary("or", np.logical_or, _no_grad, "({0} or {1})", ("logical_or",), cheap=True)


# ----- select -----
def _select_shape(c: Aval, x: Aval, y: Aval) -> Aval:
    assert c.dtype == _BOOL and x.dtype == y.dtype, f"select: dtypes {c.dtype} {x.dtype} {y.dtype}"
    return Aval(broadcast_shapes(c.shape, x.shape, y.shape, op="where"), x.dtype)


def _select_jvp(tangents, out, c, x, y):
    _, tx, ty = tangents
    if tx is None and ty is None:
        return None
    return select(c, 0 if tx is None else tx, 0 if ty is None else ty)


select_p = defprim("select", SELECT, shape=_select_shape, impl=np.where,
                   vjp=lambda g, out, c, x, y: (None, select(c, g, 0), select(c, 0, g)),
                   jvp=_select_jvp,  # one select (the VJP-derived rule would take two)
                   masks=lambda g, out, c, x, y: (None, c, logical_not_p.bind(c)),
                   emit="({1} if {0} else {2})", numpy=("where",), domain=ANY, fusion=LOOP,
                   cheap=True)
