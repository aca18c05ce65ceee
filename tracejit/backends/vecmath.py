"""Branch-free elementary functions that LLVM can auto-vectorize inside Numba loops.

The llvmlite wheels ship without SVML, so ``math.exp``/``math.sin``/... in an njit loop
become scalar libm calls and the loop is never vectorized.  Everything here is written
with selects instead of branches and with LLVM intrinsics (fmuladd, rint, fabs, copysign,
floor, bitcasts) only, so after inlining the loop vectorizer sees straight-line code.

Calling convention: generated kernels do ``from tracejit.backends import vecmath as vm`` at
module level and call ``vm.exp(x)`` etc. on scalars inside ``njit``/``prange`` loops.  Each
public name is a Python stub with a ``numba.extending.overload``: float32 arguments get a
float32 kernel (float32 constants and polynomials, no double arithmetic), float64/ints get
the float64 kernel.  Called from plain Python they run a lazily compiled Numba ufunc.
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
=========  =======  =======  ==========================================================

float32 ``pow`` is the one function computed in float64: y*log(x) needs ~30 bits more than
float32 carries, and doing it in double (like musl/glibc powf) is cheaper than
double-float32 arithmetic.  float64 ``pow`` evaluates log(|x|) in double-double (needs a
true FMA, ``llvm.fma``; on CPUs without FMA that is a libm call: correct but slow); its
tail polynomial limits accuracy when |y*ln x| approaches the overflow limit.

sin/cos range reduction: Cody-Waite with a 4-part pi/2 whose first three parts are short
enough that q*P_i is exact (float32: 12-bit parts, 72 bits total; float64: fdlibm's 33-bit
parts + 53-bit tail, evaluated with error-free TwoSum steps).  It is exact for
|x| < TRIG_MAX = 4095*pi/2 ~ 6432 (float32) and 2**19*pi/2 ~ 8.2e5 (float64); beyond
that the functions return NaN.  A libm fallback behind a branch was measured and rejected:
a conditional call stops the loop vectorizer, making a float32 sin loop 115 ms instead of
2.1 ms (1e7 elements, 1 thread).  Instead the Numba backend counts arguments beyond
``TRIG_MAX`` in the same loop and, when there are any, redoes the call with libm's sin/cos
(``numba_cpu._trig_guard``): results are exact for every argument, and the fast path costs
one compare-and-add per element.
"""
import math

import numba
import numpy as np
from llvmlite import ir
from numba import types
from numba.core import cgutils
from numba.extending import intrinsic, overload

__all__ = [
    "cos",
    "exp",
    "expm1",
    "log",
    "log1p",
    "maximum",
    "minimum",
    "pow",
    "sigmoid",
    "sin",
    "softplus",
    "sqrt",
    "tanh",
]

# error_model='numpy': no ZeroDivisionError checks (a branch + exception path would stop
# vectorization).  fastmath is set explicitly so it is not inherited from the caller; we
# allow 'contract' (FMA) only, and every algorithm below is exact-enough with or without
# fusion.  forceinline guarantees LLVM inlines us into the caller's loop body.
_JIT_OPTIONS = dict(fastmath={"contract"}, error_model="numpy", forceinline=True, nogil=True)
_kernel = numba.njit(**_JIT_OPTIONS)


# --------------------------------------------------------------------------------------
# LLVM-level helpers.  Each is a single IR instruction or intrinsic call, all vectorizable.
# --------------------------------------------------------------------------------------

def _fsuffix(ty):
    return "f32" if ty == ir.FloatType() else "f64"


def _llvm_call(builder, name, args):
    ty = args[0].type
    fnty = ir.FunctionType(ty, [a.type for a in args])
    fn = cgutils.get_or_insert_function(builder.module, fnty, f"llvm.{name}.{_fsuffix(ty)}")
    return builder.call(fn, args)


def _float_intrinsic(name, nargs):
    """An intrinsic ``f(x, ...)`` -> ``llvm.<name>`` for same-typed float arguments."""

    def impl(typingctx, *args):
        if len(args) != nargs or not isinstance(args[0], types.Float):
            return None
        if any(a != args[0] for a in args):
            return None

        def codegen(context, builder, sig, llargs):
            return _llvm_call(builder, name, list(llargs))

        return args[0](*args), codegen

    # intrinsic needs a fixed positional signature
    params = ", ".join(f"a{i}" for i in range(nargs))
    ns = {"impl": impl}
    exec(f"def _{name}(typingctx, {params}):\n    return impl(typingctx, {params})\n", ns)
    return intrinsic(ns[f"_{name}"])


_rint = _float_intrinsic("rint", 1)
_floor = _float_intrinsic("floor", 1)
_fabs = _float_intrinsic("fabs", 1)
_copysign = _float_intrinsic("copysign", 2)
# fmuladd: fused when the target has FMA, separate mul+add otherwise (never a libm call).
_fmuladd = _float_intrinsic("fmuladd", 3)
# fma: always fused (a libm call on targets without FMA); only pow's error-free product uses it.
_fma = _float_intrinsic("fma", 3)


@intrinsic
def _where(typingctx, cond, a, b):
    """select(cond, a, b) as a real IR select: no branch for the vectorizer to undo."""
    if not isinstance(cond, types.Boolean) or a != b:
        return None

    def codegen(context, builder, sig, args):
        return builder.select(args[0], args[1], args[2])

    return a(cond, a, b), codegen


@intrinsic
def _horner(typingctx, x, coeffs):
    """c0 + x*(c1 + x*(c2 + ...)) with fmuladd; coefficients are cast to x's type."""
    if not isinstance(x, types.Float) or not isinstance(coeffs, types.BaseTuple):
        return None

    def codegen(context, builder, sig, args):
        xv, cv = args
        tys = sig.args[1]
        cs = [context.cast(builder, builder.extract_value(cv, i), tys[i], sig.args[0])
              for i in range(len(tys))]
        r = cs[-1]
        for c in reversed(cs[:-1]):
            r = _llvm_call(builder, "fmuladd", [r, xv, c])
        return r

    return x(x, coeffs), codegen


def _fmt(ty):
    """(int type, mantissa bits, exponent bias) for an LLVM float type."""
    if ty == ir.FloatType():
        return ir.IntType(32), 23, 127
    return ir.IntType(64), 52, 1023


@intrinsic
def _exp2i(typingctx, k):
    """2**k for integer-valued float k in the normal exponent range, via exponent bits."""
    if not isinstance(k, types.Float):
        return None

    def codegen(context, builder, sig, args):
        ity, mbits, bias = _fmt(args[0].type)
        ki = builder.fptosi(args[0], ity)
        e = builder.add(ki, ir.Constant(ity, bias))
        return builder.bitcast(builder.shl(e, ir.Constant(ity, mbits)), args[0].type)

    return k(k), codegen


@intrinsic
def _frexp_sqrt2(typingctx, x):
    """(m, e) with x = m * 2**e and m in [sqrt(1/2), sqrt(2)); x positive normal finite."""
    if not isinstance(x, types.Float):
        return None
    rtype = types.UniTuple(x, 2)

    def codegen(context, builder, sig, args):
        fty = args[0].type
        ity, mbits, bias = _fmt(fty)
        one_bits = bias << mbits
        # bits of the largest float below sqrt(1/2) boundary, as in musl's log
        sqrt_half = 0x3F3504F3 if fty == ir.FloatType() else 0x3FE6A09E667F3BCD
        ix = builder.bitcast(args[0], ity)
        u = builder.add(ix, ir.Constant(ity, one_bits - sqrt_half))
        e = builder.sub(builder.ashr(u, ir.Constant(ity, mbits)), ir.Constant(ity, bias))
        mant = builder.and_(u, ir.Constant(ity, (1 << mbits) - 1))
        m = builder.bitcast(builder.add(mant, ir.Constant(ity, sqrt_half)), fty)
        ef = builder.sitofp(e, fty)
        return context.make_tuple(builder, rtype, [m, ef])

    return rtype(x), codegen


@_kernel
def _isnan(x):
    return x != x


@_kernel
def _two_diff(a, b):
    """s + e == a - b exactly (Knuth TwoSum; no multiplications, so contraction-safe)."""
    s = a - b
    bb = s - a
    e = (a - (s - bb)) - (b + bb)
    return s, e


# --------------------------------------------------------------------------------------
# Per-dtype implementations.  Constants live in closures so Numba freezes them with the
# right type: a bare Python float literal is float64 and would silently upcast float32.
# --------------------------------------------------------------------------------------

def _build(ft):
    f32 = ft is np.float32
    c = ft  # constant constructor
    zero, one, two, half = c(0.0), c(1.0), c(2.0), c(0.5)
    inf, nan = c(np.inf), c(np.nan)
    log2e = c(1.4426950408889634)

    if f32:
        # Cephes expf split of ln2: hi has 9 bits, so k*hi is exact for |k| < 2**15.
        ln2_hi, ln2_lo = c(0.693359375), c(-2.12194440e-4)
        exp_min, exp_max = c(-104.0), c(89.0)
        expm1_min = c(-20.0)    # expm1(x) rounds to -1 below this
        expm1_kbig = c(26.0)    # above this 2**k - 1 == 2**k
        tanh_clamp = c(10.0)    # tanh(x) rounds to 1 above ~9.01
        # Taylor coefficients 1/2! .. 1/8!: |r| <= ln2/2 gives < 2**-27 relative error
        expm1_p = tuple(1.0 / math.factorial(i) for i in range(2, 9))
        # FreeBSD e_logf.c: R(z) = Lg1 z + .. + Lg4 z**4
        log_lg = (0.66666662693, 0.40000972152, 0.28498786688, 0.24279078841)
        log_ln2_hi, log_ln2_lo = c(6.9313812256e-01), c(9.0580006145e-06)
        tiny_norm, tiny_scale, tiny_e = c(2.0 ** -126), c(2.0 ** 25), c(25.0)
        # pi/2 = P1 + P2 + P3 + P4; P1..P3 have <= 12 significant bits, so q*Pi is exact
        # for |q| < 2**12 with or without FMA, and the chain below stays exact while it
        # cancels.  72 bits of pi/2 cover the worst float32 cancellation below TRIG_MAX.
        pio2 = (c(1.5703125), c(4.837512969970703e-04), c(7.549533620476723e-08),
                c(2.5633440682570896e-12))
        trig_max = c(4095 * math.pi / 2)
        # Cephes sinf/cosf minimax on |r| <= pi/4 (coefficients of z = r*r)
        sin_p = (-1.6666654611e-1, 8.3321608736e-3, -1.9515295891e-4)
        cos_p = (4.166664568298827e-2, -1.388731625493765e-3, 2.443315711809948e-5)
    else:
        # fdlibm: ln2_hi has 21 trailing zero bits, so k*hi is exact for |k| < 2**21.
        ln2_hi, ln2_lo = c(6.93147180369123816490e-01), c(1.90821492927058770002e-10)
        exp_min, exp_max = c(-746.0), c(710.0)
        expm1_min = c(-45.0)
        expm1_kbig = c(56.0)
        tanh_clamp = c(20.0)
        # Taylor 1/2! .. 1/14!: truncation < 2**-56 relative on |r| <= ln2/2
        expm1_p = tuple(1.0 / math.factorial(i) for i in range(2, 15))
        # fdlibm e_log.c Lg1..Lg7
        log_lg = (6.666666666666735130e-01, 3.999999999940941908e-01,
                  2.857142874366239149e-01, 2.222219843214978396e-01,
                  1.818357216161805012e-01, 1.531383769920937332e-01,
                  1.479819860511658591e-01)
        log_ln2_hi, log_ln2_lo = c(6.93147180369123816490e-01), c(1.90821492927058770002e-10)
        tiny_norm, tiny_scale, tiny_e = c(2.0 ** -1022), c(2.0 ** 54), c(54.0)
        # fdlibm's 33-bit pieces of pi/2 (q*Pi exact for |q| < 2**20) + a 53-bit tail
        pio2 = (c(1.5707963267341256), c(6.077100506303966e-11), c(2.0222662487111665e-21),
                c(8.4784276603689e-32))
        trig_max = c(2.0 ** 19 * math.pi / 2)   # fdlibm's "medium" range
        # fdlibm k_sin.c S1..S6 and k_cos.c C1..C6
        sin_p = (-1.66666666666666324348e-01, 8.33333333332248946124e-03,
                 -1.98412698298579493134e-04, 2.75573137070700676789e-06,
                 -2.50507602534068634195e-08, 1.58969099521155010221e-10)
        cos_p = (4.16666666666666019037e-02, -1.38888888888741095749e-03,
                 2.48015872894767294178e-05, -2.75573143513906633035e-07,
                 2.08757232129817482790e-09, -1.13596475577881948265e-11)

    # ---- exp family ----------------------------------------------------------------

    @_kernel
    def expm1_reduced(x, xlo):
        """(expm1(r), k) with x + xlo = k*ln2 + r, |r| <= ln2/2; x finite and clamped."""
        k = _rint(x * log2e)
        # written so that xlo == +0.0 folds away (t - 0.0 == t for every t)
        r = (x - k * ln2_hi) - (k * ln2_lo - xlo)
        em = _fmuladd(r * r, _horner(r, expm1_p), r)
        return em, k

    @_kernel
    def exp_finite(x, xlo):
        """exp(x + xlo) for non-NaN x, |xlo| <= ulp(x); over/underflows naturally."""
        xc = _where(x > exp_min, x, exp_min)
        xc = _where(xc < exp_max, xc, exp_max)
        em, k = expm1_reduced(xc, xlo)
        # two factors so 2**k never leaves the normal range: exact scaling, one final
        # rounding into the subnormal range, clean overflow to inf
        k1 = _rint(k * half)
        return ((one + em) * _exp2i(k1)) * _exp2i(k - k1)

    @_kernel
    def exp_(x):
        return _where(_isnan(x), x, exp_finite(x, zero))

    @_kernel
    def expm1_finite(x):
        xc = _where(x > expm1_min, x, expm1_min)
        xc = _where(xc < exp_max, xc, exp_max)
        em, k = expm1_reduced(xc, zero)
        k1 = _rint(k * half)
        s1 = _exp2i(k1)
        s2 = _exp2i(k - k1)
        s = s1 * s2
        small_k = _fmuladd(em, s, s - one)   # s - 1 is exact for k <= mantissa bits
        big_k = ((em + one) * s1) * s2        # -1 is below rounding; avoids 2**k overflow
        return _where(k > expm1_kbig, big_k, small_k)

    @_kernel
    def expm1_(x):
        y = expm1_finite(x)
        y = _where(x == zero, x, y)   # keep the sign of zero
        return _where(_isnan(x), x, y)

    # ---- log family ----------------------------------------------------------------

    @_kernel
    def log_reduce(x):
        """(f, e) with x = (1 + f) * 2**e, sqrt(1/2) <= 1 + f < sqrt(2), for positive finite
        x (subnormals rescaled first); f is exact."""
        tiny = x < tiny_norm
        m, e = _frexp_sqrt2(_where(tiny, x * tiny_scale, x))
        return m - one, e - _where(tiny, tiny_e, zero)

    @_kernel
    def log_positive(x):
        """log for positive finite x."""
        f, e = log_reduce(x)
        s = f / (two + f)
        z = s * s
        rr = z * _horner(z, log_lg)
        hfsq = half * f * f
        return e * log_ln2_hi - ((hfsq - (s * (hfsq + rr) + e * log_ln2_lo)) - f)

    @_kernel
    def log_(x):
        y = log_positive(x)
        y = _where(x == inf, x, y)
        y = _where(x == zero, -inf, y)
        y = _where(x < zero, nan, y)
        return _where(_isnan(x), x, y)

    @_kernel
    def log1p_core(x):
        """log1p for x > -1, finite or +inf handled by caller; u = 1+x rounding corrected."""
        u = one + x
        corr = (x - (u - one)) / u
        corr = _where((u > zero) & (u < inf), corr, zero)
        return log_(u) + corr

    @_kernel
    def log1p_(x):
        y = log1p_core(x)
        y = _where(x == zero, x, y)
        return _where(_isnan(x), x, y)

    # ---- composites ----------------------------------------------------------------

    @_kernel
    def tanh_(x):
        ax = _fabs(x)
        ax = _where(ax < tanh_clamp, ax, tanh_clamp)
        em = expm1_finite(two * ax)
        t = _copysign(em / (em + two), x)
        return _where(_isnan(x), x, t)

    @_kernel
    def sigmoid_(x):
        e = exp_finite(-_fabs(x), zero)
        d = one + e
        y = _where(x >= zero, one / d, e / d)
        return _where(_isnan(x), x, y)

    @_kernel
    def softplus_(x):
        e = exp_finite(-_fabs(x), zero)
        y = _where(x > zero, x, zero) + log1p_core(e)
        return _where(_isnan(x), x, y)

    # ---- sin / cos -----------------------------------------------------------------
    two_over_pi = c(0.6366197723675814)
    four, quarter = c(4.0), c(0.25)

    if f32:
        @_kernel
        def sincos_reduced(x):
            """(sin r, cos r, q mod 4) with x = q*pi/2 + r; exact reduction for |x| < TRIG_MAX."""
            q = _rint(x * two_over_pi)
            r = _fmuladd(-q, pio2[0], x)
            r = _fmuladd(-q, pio2[1], r)
            r = _fmuladd(-q, pio2[2], r)
            r = _fmuladd(-q, pio2[3], r)
            z = r * r
            sr = _fmuladd(r * z, _horner(z, sin_p), r)
            cr = _fmuladd(z * z, _horner(z, cos_p), one - half * z)
            return sr, cr, q - four * _floor(q * quarter)
    else:
        @_kernel
        def sincos_reduced(x):
            """As above in double: x - q*(P1+P2+P3+P4) as y0 + y1 with error-free steps."""
            q = _rint(x * two_over_pi)
            a = x - q * pio2[0]                       # exact (Sterbenz, exact product)
            s1, e1 = _two_diff(a, q * pio2[1])
            s2, e2 = _two_diff(s1, q * pio2[2])
            lo = (e1 + e2) - q * pio2[3]
            y0 = s2 + lo
            y1 = (s2 - y0) + lo
            z = y0 * y0
            v = z * y0
            # fdlibm __kernel_sin(y0, y1) and __kernel_cos(y0, y1)
            rs = _horner(z, sin_p[1:])
            sr = y0 - ((z * (half * y1 - v * rs) - y1) - v * sin_p[0])
            w = z * z
            rc = z * _horner(z, cos_p)
            hz = half * z
            w = one - hz
            cr = w + (((one - w) - hz) + (z * rc - y0 * y1))
            return sr, cr, q - four * _floor(q * quarter)

    @_kernel
    def sin_(x):
        sr, cr, n = sincos_reduced(x)
        y = _where((n == one) | (n == c(3.0)), cr, sr)
        y = _where(n >= two, -y, y)
        y = _where(x == zero, x, y)         # sin(-0) = -0
        # beyond TRIG_MAX the reduction is inexact: NaN rather than a silently wrong value
        return _where(_fabs(x) < trig_max, y, nan)

    @_kernel
    def cos_(x):
        sr, cr, n = sincos_reduced(x)
        y = _where((n == one) | (n == c(3.0)), sr, cr)
        y = _where((n == one) | (n == two), -y, y)
        return _where(_fabs(x) < trig_max, y, nan)

    # ---- pow -----------------------------------------------------------------------

    if not f32:
        @_kernel
        def log_dd(ax):
            """log(ax) as hi + lo (~2**-60 relative) for positive finite ax; for pow."""
            f, e = log_reduce(ax)
            u = two + f
            ulo = (two - u) + f                # exact: |2| >= |f|
            s = f / u
            slo = (_fma(-s, u, f) - s * ulo) / u   # s + slo = f / (2 + f) to ~2**-104
            z = s * s
            t = s * (z * _horner(z, log_lg)) + two * slo   # log1p(f) = 2s + t
            hi, lo = _two_diff(e * log_ln2_hi, -two * s)   # e*ln2_hi is exact
            lo = lo + (t + e * log_ln2_lo)
            h = hi + lo
            return h, (hi - h) + lo

        @_kernel
        def pow_magnitude(ax, y):
            """|x|**y for positive finite ax, via exp(y*log(ax)) in double-double."""
            h, l = log_dd(ax)
            p = y * h
            plo = _fma(y, h, -p) + y * l
            plo = _where(_fabs(p) < c(750.0), plo, zero)   # clamped in exp: drop lo
            return exp_finite(_where(_isnan(p), zero, p), plo)
    else:
        pow_magnitude64 = _F64["pow_magnitude"]

        @_kernel
        def pow_magnitude(ax, y):
            """float32 via float64 log/exp: y*log(x) needs ~30 more bits than float32 has."""
            return np.float32(pow_magnitude64(np.float64(ax), np.float64(y)))

    @_kernel
    def pow_(x, y):
        ax = _fabs(x)
        mag = pow_magnitude(_where((ax > zero) & (ax < inf), ax, one), y)
        mag = _where(ax == zero, _where(y < zero, inf, zero), mag)
        mag = _where(ax == inf, _where(y < zero, zero, inf), mag)
        yinf = _fabs(y) == inf
        mag = _where(yinf, _where(ax == one, one, _where((ax > one) == (y > zero), inf, zero)),
                     mag)
        y_int = _rint(y) == y                          # true for +-inf, false for nan
        y_odd = y_int & (_rint(y * half) != y * half)  # |y| >= 2**53 is even
        res = _where(y_odd, _copysign(mag, x), mag)
        res = _where((x < zero) & (x > -inf) & ~y_int, nan, res)
        res = _where(_isnan(x) | _isnan(y), nan, res)
        res = _where(y == zero, one, res)              # even for x = nan
        return _where(x == one, one, res)              # even for y = nan

    @_kernel
    def sqrt_(x):
        return math.sqrt(x)   # llvm.sqrt intrinsic: vectorizes (vsqrtps/pd)

    return dict(sin=sin_, cos=cos_, pow=pow_, sqrt=sqrt_, pow_magnitude=pow_magnitude,
                exp=exp_, expm1=expm1_, log=log_, log1p=log1p_, tanh=tanh_,
                sigmoid=sigmoid_, softplus=softplus_, exp_finite=exp_finite,
                log_positive=log_positive)


# |x| from which sin/cos return NaN (their range reduction is exact only below): compiled
# kernels count such arguments and redo the call with libm's sin/cos when there are any
TRIG_MAX = {np.dtype(np.float32): np.float32(4095 * math.pi / 2),
            np.dtype(np.float64): np.float64(2.0 ** 19 * math.pi / 2)}

_F64 = _build(np.float64)
_F32 = _build(np.float32)   # after _F64: float32 pow reuses the float64 kernels


@_kernel
def _maximum(a, b):
    # NumPy: NaN if either is NaN, the second argument wins ties (maximum(-0., 0.) is 0.)
    return _where((a > b) | _isnan(a), a, b)


@_kernel
def _minimum(a, b):
    return _where((a < b) | _isnan(a), a, b)


# Reduction combines: the only operations in a kernel that may be reassociated (so a sum
# vectorizes), kept in their own functions so the flag is on the combine instruction alone.
_reduce_kernel = numba.njit(fastmath={"reassoc", "contract"}, error_model="numpy",
                            forceinline=True, nogil=True)


@_reduce_kernel
def radd(acc, x):
    """acc + x, reassociable: a sum accumulator LLVM may split into vector lanes."""
    return acc + x


@_reduce_kernel
def rmul(acc, x):
    """acc * x, reassociable: a product accumulator."""
    return acc * x


# --------------------------------------------------------------------------------------
# Public API: Python stubs with a Numba overload that picks the float32/float64 kernel.
# From njit code ``vm.exp(x)`` resolves to the overload; from Python the stub runs a lazily
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

    @overload(stub, jit_options=_JIT_OPTIONS)
    def _ol(x):
        ft = _as_float_type(x)
        if ft is None:
            return None
        impl = impls[ft.bitwidth]
        if ft == x:
            return lambda x: impl(x)
        return lambda x: impl(np.float64(x))

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

    @overload(stub, jit_options=_JIT_OPTIONS)
    def _ol(a, b):
        if isinstance(a, types.Integer) and isinstance(b, types.Integer) and "int" in impls:
            int_impl = impls["int"]  # a plain function global: Numba cannot type the dict
            return lambda a, b: int_impl(a, b)
        fa, fb = _as_float_type(a), _as_float_type(b)
        if fa is None or fb is None:
            return None
        # integers are treated as "weak" like Python scalars under NEP 50: f32 op int -> f32
        floats = [t for t in (a, b) if isinstance(t, types.Float)]
        bits = 32 if floats and all(t.bitwidth == 32 for t in floats) else 64
        impl = impls[bits]
        cast = np.float32 if bits == 32 else np.float64
        return lambda a, b: impl(cast(a), cast(b))

    return stub


pow = _binary("pow", "x**y with np.power's special cases (0**0 = 1, nan**0 = 1, 1**nan = 1, "
                     "negative base with integer exponent).", {32: _F32["pow"], 64: _F64["pow"]})
maximum = _binary("maximum", "np.maximum: NaN if either argument is NaN.",
                  {32: _maximum, 64: _maximum, "int": _maximum})
minimum = _binary("minimum", "np.minimum: NaN if either argument is NaN.",
                  {32: _minimum, 64: _minimum, "int": _minimum})
