"""vecmath's LLVM-level building blocks. Each is one IR instruction or intrinsic (rint, floor,
fabs, copysign, fmuladd, fma, select, exponent-bit tricks) or a tiny inlined function, so
after inlining the loop vectorizer sees straight-line code with no branch and no libm call.
`kernel` compiles vecmath's scalar functions: inlined into the caller, 'contract' as the only
fast-math flag, NumPy's error model (no ZeroDivisionError branch)."""
import numba
from llvmlite import ir
from numba import types
from numba.core import cgutils
from numba.extending import intrinsic

# error_model='numpy': no ZeroDivisionError checks (a branch + exception path would stop
# vectorization).  fastmath is set explicitly so it is not inherited from the caller; we
# allow 'contract' (FMA) only, and every algorithm below is exact-enough with or without
# fusion.  forceinline guarantees LLVM inlines us into the caller's loop body. JIT_OPTIONS
# compile the public entry points (called from njit code only: no Python or C wrapper; once
# per install, precompiled.py); the scalar functions below them (`kernel`) are inlined into
# those at Numba IR level, so they take their flags, and an entry is one function to
# compile, not one per helper (each a whole Numba compile: a cold tanh took 0.3 s, 0.15 s).
JIT_OPTIONS = dict(fastmath={"contract"}, error_model="numpy", forceinline=True, nogil=True,
                   no_cpython_wrapper=True, no_cfunc_wrapper=True)
kernel = numba.njit(inline="always", fastmath={"contract"}, error_model="numpy", nogil=True)


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


rint = _float_intrinsic("rint", 1)
floor = _float_intrinsic("floor", 1)
fabs = _float_intrinsic("fabs", 1)
copysign = _float_intrinsic("copysign", 2)
# llvm.maximum / llvm.minimum: NaN if either is NaN, -0 < +0. Associative and commutative as
# they are, so the loop vectorizer splits a reduction through them into vector lanes with no
# fast-math flag (not so a select of a compare: its NaN order would change).
fmaximum = _float_intrinsic("maximum", 2)
fminimum = _float_intrinsic("minimum", 2)
# fmuladd: fused when the target has FMA, separate mul+add otherwise (never a libm call).
fmuladd = _float_intrinsic("fmuladd", 3)
# fma: always fused (a libm call on targets without FMA); only pow's error-free product uses it.
fma = _float_intrinsic("fma", 3)


@intrinsic
def where(typingctx, cond, a, b):
    """select(cond, a, b) as a real IR select: no branch for the vectorizer to undo."""
    if not isinstance(cond, types.Boolean) or a != b:
        return None

    def codegen(context, builder, sig, args):
        return builder.select(args[0], args[1], args[2])

    return a(cond, a, b), codegen


@intrinsic
def horner(typingctx, x, coeffs):
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
def exp2i(typingctx, k):
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
def frexp_sqrt2(typingctx, x):
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


@kernel
def isnan(x):
    return x != x


@kernel
def two_diff(a, b):
    """s + e == a - b exactly (Knuth TwoSum; no multiplications, so contraction-safe)."""
    s = a - b
    bb = s - a
    e = (a - (s - bb)) - (b + bb)
    return s, e
