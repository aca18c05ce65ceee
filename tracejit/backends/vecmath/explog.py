"""vecmath's exp/log family for one float type at a time (`build`): exp and expm1 (Cody-Waite
ln2 reduction, Taylor polynomial, 2**k applied as two factors), log and log1p (fdlibm's
s = f/(2+f) minimax), the composites on them (tanh, sigmoid, softplus), pow (float64: log in
double-double; float32: through float64) and sqrt (the llvm.sqrt intrinsic)."""
import math

import numpy as np

from .intrinsics import (copysign, exp2i, fabs, fma, fmuladd, frexp_sqrt2, horner, isnan,
                         kernel, rint, two_diff, where)


def build(ft, f64: dict | None = None) -> dict:
    """The kernels for float type `ft` (np.float32 or np.float64), by name; float32 pow takes
    the float64 `pow_magnitude` from `f64`. Constants live in closures so Numba freezes them
    with the right type: a bare Python float literal is float64 and would upcast float32."""
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

    # ---- exp family ----------------------------------------------------------------

    @kernel
    def expm1_reduced(x, xlo):
        """(expm1(r), k) with x + xlo = k*ln2 + r, |r| <= ln2/2; x finite and clamped."""
        k = rint(x * log2e)
        # written so that xlo == +0.0 folds away (t - 0.0 == t for every t)
        r = (x - k * ln2_hi) - (k * ln2_lo - xlo)
        em = fmuladd(r * r, horner(r, expm1_p), r)
        return em, k

    @kernel
    def exp_finite(x, xlo):
        """exp(x + xlo) for non-NaN x, |xlo| <= ulp(x); over/underflows naturally."""
        xc = where(x > exp_min, x, exp_min)
        xc = where(xc < exp_max, xc, exp_max)
        em, k = expm1_reduced(xc, xlo)
        # two factors so 2**k never leaves the normal range: exact scaling, one final
        # rounding into the subnormal range, clean overflow to inf
        k1 = rint(k * half)
        return ((one + em) * exp2i(k1)) * exp2i(k - k1)

    @kernel
    def exp_(x):
        return where(isnan(x), x, exp_finite(x, zero))

    @kernel
    def expm1_finite(x):
        xc = where(x > expm1_min, x, expm1_min)
        xc = where(xc < exp_max, xc, exp_max)
        em, k = expm1_reduced(xc, zero)
        k1 = rint(k * half)
        s1 = exp2i(k1)
        s2 = exp2i(k - k1)
        s = s1 * s2
        small_k = fmuladd(em, s, s - one)   # s - 1 is exact for k <= mantissa bits
        big_k = ((em + one) * s1) * s2        # -1 is below rounding; avoids 2**k overflow
        return where(k > expm1_kbig, big_k, small_k)

    @kernel
    def expm1_(x):
        y = expm1_finite(x)
        y = where(x == zero, x, y)   # keep the sign of zero
        return where(isnan(x), x, y)

    # ---- log family ----------------------------------------------------------------

    @kernel
    def log_reduce(x):
        """(f, e) with x = (1 + f) * 2**e, sqrt(1/2) <= 1 + f < sqrt(2), for positive finite
        x (subnormals rescaled first); f is exact."""
        tiny = x < tiny_norm
        m, e = frexp_sqrt2(where(tiny, x * tiny_scale, x))
        return m - one, e - where(tiny, tiny_e, zero)

    @kernel
    def log_positive(x):
        """log for positive finite x."""
        f, e = log_reduce(x)
        s = f / (two + f)
        z = s * s
        rr = z * horner(z, log_lg)
        hfsq = half * f * f
        return e * log_ln2_hi - ((hfsq - (s * (hfsq + rr) + e * log_ln2_lo)) - f)

    @kernel
    def log_(x):
        y = log_positive(x)
        y = where(x == inf, x, y)
        y = where(x == zero, -inf, y)
        y = where(x < zero, nan, y)
        return where(isnan(x), x, y)

    @kernel
    def log1p_core(x):
        """log1p for x > -1, finite or +inf handled by caller; u = 1+x rounding corrected."""
        u = one + x
        corr = (x - (u - one)) / u
        corr = where((u > zero) & (u < inf), corr, zero)
        return log_(u) + corr

    @kernel
    def log1p_(x):
        y = log1p_core(x)
        y = where(x == zero, x, y)
        return where(isnan(x), x, y)

    # ---- composites ----------------------------------------------------------------

    @kernel
    def tanh_(x):
        ax = fabs(x)
        ax = where(ax < tanh_clamp, ax, tanh_clamp)
        em = expm1_finite(two * ax)
        t = copysign(em / (em + two), x)
        return where(isnan(x), x, t)

    @kernel
    def sigmoid_(x):
        e = exp_finite(-fabs(x), zero)
        d = one + e
        y = where(x >= zero, one / d, e / d)
        return where(isnan(x), x, y)

    @kernel
    def softplus_(x):
        e = exp_finite(-fabs(x), zero)
        y = where(x > zero, x, zero) + log1p_core(e)
        return where(isnan(x), x, y)

    # ---- pow -----------------------------------------------------------------------

    if not f32:
        @kernel
        def log_dd(ax):
            """log(ax) as hi + lo (~2**-60 relative) for positive finite ax; for pow."""
            f, e = log_reduce(ax)
            u = two + f
            ulo = (two - u) + f                # exact: |2| >= |f|
            s = f / u
            slo = (fma(-s, u, f) - s * ulo) / u   # s + slo = f / (2 + f) to ~2**-104
            z = s * s
            t = s * (z * horner(z, log_lg)) + two * slo   # log1p(f) = 2s + t
            hi, lo = two_diff(e * log_ln2_hi, -two * s)   # e*ln2_hi is exact
            lo = lo + (t + e * log_ln2_lo)
            h = hi + lo
            return h, (hi - h) + lo

        @kernel
        def pow_magnitude(ax, y):
            """|x|**y for positive finite ax, via exp(y*log(ax)) in double-double."""
            h, l = log_dd(ax)
            p = y * h
            plo = fma(y, h, -p) + y * l
            plo = where(fabs(p) < c(750.0), plo, zero)   # clamped in exp: drop lo
            return exp_finite(where(isnan(p), zero, p), plo)
    else:
        pow_magnitude64 = f64["pow_magnitude"]

        @kernel
        def pow_magnitude(ax, y):
            """float32 via float64 log/exp: y*log(x) needs ~30 more bits than float32 has."""
            return np.float32(pow_magnitude64(np.float64(ax), np.float64(y)))

    @kernel
    def pow_(x, y):
        ax = fabs(x)
        mag = pow_magnitude(where((ax > zero) & (ax < inf), ax, one), y)
        mag = where(ax == zero, where(y < zero, inf, zero), mag)
        mag = where(ax == inf, where(y < zero, zero, inf), mag)
        yinf = fabs(y) == inf
        mag = where(yinf, where(ax == one, one, where((ax > one) == (y > zero), inf, zero)),
                     mag)
        y_int = rint(y) == y                          # true for +-inf, false for nan
        y_odd = y_int & (rint(y * half) != y * half)  # |y| >= 2**53 is even
        res = where(y_odd, copysign(mag, x), mag)
        res = where((x < zero) & (x > -inf) & ~y_int, nan, res)
        res = where(isnan(x) | isnan(y), nan, res)
        res = where(y == zero, one, res)              # even for x = nan
        return where(x == one, one, res)              # even for y = nan

    @kernel
    def sqrt_(x):
        return math.sqrt(x)   # llvm.sqrt intrinsic: vectorizes (vsqrtps/pd)

    return dict(pow=pow_, sqrt=sqrt_, pow_magnitude=pow_magnitude,
                exp=exp_, expm1=expm1_, log=log_, log1p=log1p_, tanh=tanh_,
                sigmoid=sigmoid_, softplus=softplus_, exp_finite=exp_finite,
                log_positive=log_positive)
