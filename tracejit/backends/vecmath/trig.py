"""vecmath's sin and cos for one float type at a time (`build`).

Range reduction: Cody-Waite with a 4-part pi/2 whose first three parts are short enough that
q*P_i is exact (float32: 12-bit parts, 72 bits total; float64: fdlibm's 33-bit parts + 53-bit
tail, evaluated with error-free TwoSum steps). It is exact for |x| < TRIG_MAX = 4095*pi/2 ~ 6432
(float32) and 2**19*pi/2 ~ 8.2e5 (float64); beyond that the functions return NaN. A libm
fallback behind a branch was measured and rejected: a conditional call stops the loop
vectorizer, making a float32 sin loop 115 ms instead of 2.1 ms (1e7 elements, 1 thread).
Instead the Numba backend declares TRIG_MAX as its RANGE_LIMITS: passes.guard_ranges counts
arguments beyond it in the same loop and, when there are any, the call is redone with libm's
sin/cos. Results are exact for every argument; the fast path costs one compare-and-add per
element.
"""
import math

import numpy as np

from .intrinsics import fabs, floor, fmuladd, horner, kernel, rint, two_diff, where

# |x| from which sin/cos return NaN (their range reduction is exact only below)
TRIG_MAX = {np.dtype(np.float32): np.float32(4095 * math.pi / 2),
            np.dtype(np.float64): np.float64(2.0 ** 19 * math.pi / 2)}  # fdlibm's "medium"


def build(ft) -> dict:
    """sin and cos for float type `ft` (np.float32 or np.float64), by name."""
    f32 = ft is np.float32
    c = ft  # constant constructor
    zero, one, two, half, nan = c(0.0), c(1.0), c(2.0), c(0.5), c(np.nan)
    two_over_pi, four, quarter = c(0.6366197723675814), c(4.0), c(0.25)
    trig_max = TRIG_MAX[np.dtype(ft)]
    if f32:
        # pi/2 = P1 + P2 + P3 + P4; P1..P3 have <= 12 significant bits, so q*Pi is exact
        # for |q| < 2**12 with or without FMA, and the chain below stays exact while it
        # cancels.  72 bits of pi/2 cover the worst float32 cancellation below TRIG_MAX.
        pio2 = (c(1.5703125), c(4.837512969970703e-04), c(7.549533620476723e-08),
                c(2.5633440682570896e-12))
        # Cephes sinf/cosf minimax on |r| <= pi/4 (coefficients of z = r*r)
        sin_p = (-1.6666654611e-1, 8.3321608736e-3, -1.9515295891e-4)
        cos_p = (4.166664568298827e-2, -1.388731625493765e-3, 2.443315711809948e-5)
    else:
        # fdlibm's 33-bit pieces of pi/2 (q*Pi exact for |q| < 2**20) + a 53-bit tail
        pio2 = (c(1.5707963267341256), c(6.077100506303966e-11), c(2.0222662487111665e-21),
                c(8.4784276603689e-32))
        # fdlibm k_sin.c S1..S6 and k_cos.c C1..C6
        sin_p = (-1.66666666666666324348e-01, 8.33333333332248946124e-03,
                 -1.98412698298579493134e-04, 2.75573137070700676789e-06,
                 -2.50507602534068634195e-08, 1.58969099521155010221e-10)
        cos_p = (4.16666666666666019037e-02, -1.38888888888741095749e-03,
                 2.48015872894767294178e-05, -2.75573143513906633035e-07,
                 2.08757232129817482790e-09, -1.13596475577881948265e-11)

    if f32:
        @kernel
        def sincos_reduced(x):
            """(sin r, cos r, q mod 4) with x = q*pi/2 + r; exact reduction for |x| < TRIG_MAX."""
            q = rint(x * two_over_pi)
            r = fmuladd(-q, pio2[0], x)
            r = fmuladd(-q, pio2[1], r)
            r = fmuladd(-q, pio2[2], r)
            r = fmuladd(-q, pio2[3], r)
            z = r * r
            sr = fmuladd(r * z, horner(z, sin_p), r)
            cr = fmuladd(z * z, horner(z, cos_p), one - half * z)
            return sr, cr, q - four * floor(q * quarter)
    else:
        @kernel
        def sincos_reduced(x):
            """As above in double: x - q*(P1+P2+P3+P4) as y0 + y1 with error-free steps."""
            q = rint(x * two_over_pi)
            a = x - q * pio2[0]                       # exact (Sterbenz, exact product)
            s1, e1 = two_diff(a, q * pio2[1])
            s2, e2 = two_diff(s1, q * pio2[2])
            lo = (e1 + e2) - q * pio2[3]
            y0 = s2 + lo
            y1 = (s2 - y0) + lo
            z = y0 * y0
            v = z * y0
            # fdlibm __kernel_sin(y0, y1) and __kernel_cos(y0, y1)
            rs = horner(z, sin_p[1:])
            sr = y0 - ((z * (half * y1 - v * rs) - y1) - v * sin_p[0])
            w = z * z
            rc = z * horner(z, cos_p)
            hz = half * z
            w = one - hz
            cr = w + (((one - w) - hz) + (z * rc - y0 * y1))
            return sr, cr, q - four * floor(q * quarter)

    @kernel
    def sin_(x):
        sr, cr, n = sincos_reduced(x)
        y = where((n == one) | (n == c(3.0)), cr, sr)
        y = where(n >= two, -y, y)
        y = where(x == zero, x, y)         # sin(-0) = -0
        # beyond TRIG_MAX the reduction is inexact: NaN rather than a silently wrong value
        return where(fabs(x) < trig_max, y, nan)

    @kernel
    def cos_(x):
        sr, cr, n = sincos_reduced(x)
        y = where((n == one) | (n == c(3.0)), sr, cr)
        y = where((n == one) | (n == two), -y, y)
        return where(fabs(x) < trig_max, y, nan)

    return dict(sin=sin_, cos=cos_)
