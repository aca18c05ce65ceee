"""Branch-free elementary functions that LLVM can auto-vectorize inside Numba loops.

The llvmlite wheels ship without SVML, so ``math.exp``/``math.sin``/... in an njit loop
become scalar libm calls and the loop is never vectorized.  Everything here is written
with selects instead of branches and with LLVM intrinsics (fmuladd, rint, fabs, copysign,
floor, bitcasts) only, so after inlining the loop vectorizer sees straight-line code.

Calling convention: generated kernels do ``from tracejit.backends import vecmath as vm`` at
module level and call ``vm.exp(x)`` etc. on scalars inside ``njit``/``prange`` loops.  Each
public name is a Python stub that Numba types and lowers itself (``type_callable``,
``lower_builtin``): float32 arguments get a float32 kernel (float32 constants and
polynomials, no double arithmetic), float64/ints get the float64 kernel, compiled once per
install and linked into the caller (precompiled.py).  Called from plain Python they run a
lazily compiled Numba ufunc.
Works from callers compiled with ``njit(parallel=True, fastmath={'reassoc','contract'},
cache=True)`` in other files (tested).  Our kernels are compiled with
``fastmath={'contract'}`` and ``error_model='numpy'`` set explicitly so they never inherit
NaN/inf-assuming flags, and are correct with or without FMA contraction.

Max error measured (ulps of the correctly rounded result; float32 against NumPy float64,
float64 against mpmath at 160 bits; samples: tests/test_vecmath.py ``_inputs`` with 2e5
float32 / ~1e4 float64 points, log-uniform over the whole domain incl. subnormals, the
overflow/underflow edges, and near multiples of pi/2):

=========  =======  =======  ==========================================================
function   float32  float64  notes
=========  =======  =======  ==========================================================
exp        0.94     1.00     clamp + Cody-Waite ln2 + Taylor; 2**k applied as 2 factors
expm1      1.34     1.80     same reduction; 2**k*em + (2**k - 1) with one FMA
log        0.80     0.72     fdlibm/FreeBSD logf: s = f/(2+f), Lg minimax in s*s
log1p      1.44     1.05     log(1+x) + (x - ((1+x) - 1))/(1+x)
tanh       2.23     2.32     em/(em+2), em = expm1(2|x|), copysign
sin        2.02     0.74     |x| < TRIG_MAX, else NaN (kernels then use libm)
cos        2.04     0.72     |x| < TRIG_MAX, else NaN (kernels then use libm)
sigmoid    2.27     1.55     e = exp(-|x|): 1/(1+e) or e/(1+e)
softplus   1.78     1.56     max(x, 0) + log1p(exp(-|x|))
pow        0.50     0.90     float64: for |y ln x| <= ~40; up to 15 ulp as |y ln x| -> 709
sqrt       0.5      0.5      math.sqrt = llvm.sqrt intrinsic, vectorizes (vsqrtps/pd)
maximum    exact    exact    NaN if either is NaN; ties return the 2nd argument (NumPy)
minimum    exact    exact
rmax/rmin  exact    exact    reduction combines (llvm.maximum/minimum: vectorized reductions)
=========  =======  =======  ==========================================================

float32 ``pow`` is the one function computed in float64: y*log(x) needs ~30 bits more than
float32 carries, and doing it in double (like musl/glibc powf) is cheaper than
double-float32 arithmetic.  float64 ``pow`` evaluates log(|x|) in double-double (needs a
true FMA, ``llvm.fma``; on CPUs without FMA that is a libm call: correct but slow); its
tail polynomial limits accuracy when |y*ln x| approaches the overflow limit.

sin/cos reduce their argument exactly only for |x| < TRIG_MAX and return NaN beyond; the
Numba backend guards that range (see trig.py).

Modules: intrinsics.py (LLVM-level building blocks), explog.py (exp/log family, composites,
pow, sqrt), trig.py (sin, cos, TRIG_MAX); this file: the public functions with their
float32/float64 dispatch, maximum/minimum and the reduction combines.
"""
import numba
import numpy as np
from numba import types
from numba.extending import lower_builtin, type_callable

from . import explog, precompiled, trig
from .intrinsics import JIT_OPTIONS, fmaximum, fminimum, isnan, kernel, where
from .trig import TRIG_MAX  # noqa: F401  (the Numba backend's RANGE_LIMITS)

__all__ = [
    "cos",
    "exp",
    "expm1",
    "log",
    "log1p",
    "maximum",
    "minimum",
    "pow",
    "rmax",
    "rmin",
    "sigmoid",
    "sin",
    "softplus",
    "sqrt",
    "tanh",
]

_F64 = {**explog.build(np.float64), **trig.build(np.float64)}
_F32 = {**explog.build(np.float32, _F64), **trig.build(np.float32)}  # f32 pow uses f64's


@kernel
def _maximum(a, b):
    # NumPy: NaN if either is NaN, the second argument wins ties (maximum(-0., 0.) is 0.)
    return where((a > b) | isnan(a), a, b)


@kernel
def _minimum(a, b):
    return where((a < b) | isnan(a), a, b)


# Reduction combines: the only operations in a kernel that may be reassociated (so a sum
# vectorizes), kept in their own functions so the flag is on the combine instruction alone.
_reduce_kernel = numba.njit(**dict(JIT_OPTIONS, fastmath={"reassoc", "contract"}))


@_reduce_kernel
def radd(acc, x):
    """acc + x, reassociable: a sum accumulator LLVM may split into vector lanes."""
    return acc + x


@_reduce_kernel
def rmul(acc, x):
    """acc * x, reassociable: a product accumulator."""
    return acc * x


@kernel
def _rmax(acc, x):
    return fmaximum(acc, x)


@kernel
def _rmin(acc, x):
    return fminimum(acc, x)


# --------------------------------------------------------------------------------------
# Public API: Python stubs whose typing picks the float32/float64 kernel and whose lowering
# links that kernel's precompiled entry. From njit code ``vm.exp(x)`` is that call; from
# Python the stub runs a lazily
# built Numba ufunc, so scalars and arrays both work (slow, meant for tests/debugging).
# --------------------------------------------------------------------------------------

def _as_float_type(t):
    """Numba float type a NumPy ufunc would compute in: f32 stays f32, the rest f64."""
    if isinstance(t, types.Float):
        return t if t.bitwidth in (32, 64) else None
    if isinstance(t, (types.Integer, types.Boolean)):
        return types.float64
    return None


def _make_python_caller(stub, nargs):
    cache = []

    def call(*args):
        if not cache:
            params = ", ".join(f"a{i}" for i in range(nargs))
            ns = {"stub": stub}
            exec(f"def _fn({params}):\n    return stub({params})\n", ns)
            sigs = [f"float32({', '.join(['float32'] * nargs)})",
                    f"float64({', '.join(['float64'] * nargs)})"]
            cache.append(numba.vectorize(sigs)(ns["_fn"]))
        return cache[0](*args)

    return call


def _unary(name, doc):
    impls = {32: _F32[name], 64: _F64[name]}

    def stub(x):
        return call(x)

    stub.__name__ = stub.__qualname__ = name
    stub.__doc__ = doc
    call = _make_python_caller(stub, 1)

    @type_callable(stub)
    def _type(context):
        return _as_float_type  # the result's type, None where not defined

    @lower_builtin(stub, types.Any)
    def _lower(context, builder, sig, args):
        ft = sig.return_type
        impl = impls[ft.bitwidth]
        x = context.cast(builder, args[0], sig.args[0], ft)
        return precompiled.call(context, builder, name, lambda x: impl(x), ft(ft), [x],
                                JIT_OPTIONS)

    return stub


exp = _unary("exp", "e**x.")
expm1 = _unary("expm1", "e**x - 1, accurate near 0.")
log = _unary("log", "Natural log; log(0) = -inf, log(x<0) = nan.")
log1p = _unary("log1p", "log(1 + x), accurate near 0.")
tanh = _unary("tanh", "Hyperbolic tangent.")
sigmoid = _unary("sigmoid", "Logistic 1/(1 + exp(-x)), no overflow for large |x|.")
softplus = _unary("softplus", "log(1 + exp(x)) computed as max(x, 0) + log1p(exp(-|x|)).")
sin = _unary("sin", "Sine (see the docstring table for the large-argument policy).")
cos = _unary("cos", "Cosine (see the docstring table for the large-argument policy).")
sqrt = _unary("sqrt", "Square root: math.sqrt is the llvm.sqrt intrinsic and vectorizes as is.")


def _binary(name, doc, impls):
    def stub(a, b):
        return call(a, b)

    stub.__name__ = stub.__qualname__ = name
    stub.__doc__ = doc
    call = _make_python_caller(stub, 2)

    @type_callable(stub)
    def _type(context):
        def typer(a, b):
            if isinstance(a, types.Integer) and isinstance(b, types.Integer) and "int" in impls:
                return a if a == b else None
            if _as_float_type(a) is None or _as_float_type(b) is None:
                return None
            # integers are "weak" like Python scalars under NEP 50: f32 op int -> f32
            floats = [t for t in (a, b) if isinstance(t, types.Float)]
            return types.float32 if floats and all(t.bitwidth == 32 for t in floats) \
                else types.float64
        return typer

    @lower_builtin(stub, types.Any, types.Any)
    def _lower(context, builder, sig, args):
        rt = sig.return_type
        impl = impls["int" if isinstance(rt, types.Integer) else rt.bitwidth]
        ab = [context.cast(builder, v, t, rt) for v, t in zip(args, sig.args)]
        return precompiled.call(context, builder, name, lambda a, b: impl(a, b), rt(rt, rt),
                                ab, JIT_OPTIONS)

    return stub


pow = _binary("pow", "x**y with np.power's special cases (0**0 = 1, nan**0 = 1, 1**nan = 1, "
                     "negative base with integer exponent).", {32: _F32["pow"], 64: _F64["pow"]})
maximum = _binary("maximum", "np.maximum: NaN if either argument is NaN.",
                  {32: _maximum, 64: _maximum, "int": _maximum})
minimum = _binary("minimum", "np.minimum: NaN if either argument is NaN.",
                  {32: _minimum, 64: _minimum, "int": _minimum})
# max/min reduction combines: floats through llvm.maximum/minimum, which LLVM vectorizes as a
# reduction (NaN-exact: NaN if any element is NaN; a tie of -0 and +0 gives +0 for max, -0
# for min, where NumPy's pairwise order gives either); integers as maximum/minimum
rmax = _binary("rmax", "max(acc, x) as a reduction combine: NaN if either is NaN.",
               {32: _rmax, 64: _rmax, "int": _maximum})
rmin = _binary("rmin", "min(acc, x) as a reduction combine: NaN if either is NaN.",
               {32: _rmin, 64: _rmin, "int": _minimum})
