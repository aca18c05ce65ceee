"""tracejit: trace NumPy-style functions, differentiate them (reverse and forward mode),
batch them (vmap), and run the results as fused compiled loops."""
from . import numpy  # noqa: F401  (installs the Tracer operators)
from .api import (
    explain,
    grad,
    hessian,
    jacfwd,
    jacrev,
    jit,
    jit_grad,
    jvp,
    make_ir,
    make_plan,
    stop_gradient,
    value_and_grad,
    vjp,
    vmap,
    wait_compiled,
)
from .gradcheck import check_grads
from .custom import custom_vjp
from .branches import cond, switch
from .loops import fori_loop, scan, while_loop
from .remat import checkpoint, remat
from .errors import (
                     ArgnumsError,
                     ArgumentError,
                     ChoiceError,
                     GradientError,
                     OutOfBoundsError,
                     ShapeError,
                     TracejitError,
                     TracerBoolError,
                     UnsupportedError,
)

__all__ = [
                     "ArgnumsError",
                     "ArgumentError",
                     "ChoiceError",
                     "GradientError",
                     "OutOfBoundsError",
                     "ShapeError",
                     "TracejitError",
                     "TracerBoolError",
                     "UnsupportedError",
                     "check_grads",
                     "checkpoint",
                     "cond",
                     "custom_vjp",
                     "explain",
                     "fori_loop",
                     "grad",
                     "hessian",
                     "jacfwd",
                     "jacrev",
                     "jit",
                     "jit_grad",
                     "jvp",
                     "make_ir",
                     "make_plan",
                     "remat",
                     "scan",
                     "stop_gradient",
                     "switch",
                     "value_and_grad",
                     "vjp",
                     "vmap",
                     "wait_compiled",
                     "while_loop",
]
__version__ = "0.1.0"

from . import config as _config

if _config.DEFAULT_BACKEND in ("numba", "cpu"):
    # Load Numba and its CPU target here (about 0.5 s, once per process) rather than inside
    # the first call: with the on-disk kernel cache warm, a first call then takes milliseconds.
    # TRACEJIT_BACKEND=interpreter skips it.
    from .backends import numba_cpu as _numba_cpu
    _numba_cpu.warm_up()
