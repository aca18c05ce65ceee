"""Exceptions raised by tracejit, and how they find the line of user code to blame.

Every user-facing error says what was wrong, where in the user's code, and how to fix it.
Each subclass also inherits the matching builtin, so `except TypeError` keeps working.
"""
from __future__ import annotations

import ast
import builtins
import linecache
import os
import sys
import threading
import types
from typing import Any

_PACKAGE_DIR = os.path.dirname(os.path.abspath(__file__))
_STDLIB_DIRS = tuple({os.path.dirname(os.__file__)})


class TracejitError(Exception):
    """Base class of every error tracejit raises on purpose."""


class TracerBoolError(TracejitError, TypeError):
    """A traced value was asked for a concrete Python value (bool, float, int, index)."""


class ShapeError(TracejitError, ValueError):
    """Shapes that cannot broadcast, contract, reshape or index."""


class UnsupportedError(TracejitError, NotImplementedError):
    """A NumPy function or argument combination tracejit does not trace."""


class OutOfBoundsError(TracejitError, IndexError):
    """An integer index outside its axis (NumPy raises IndexError too)."""


class ChoiceError(TracejitError, ValueError):
    """An np.choose index outside [0, number of choices) (NumPy raises ValueError too)."""


class ArgnumsError(TracejitError, ValueError):
    """`argnums` out of range, or pointing at an argument that cannot be differentiated."""


class ArgumentError(TracejitError, TypeError):
    """An argument tracejit cannot trace (not an array, scalar or pytree of them)."""


class GradientError(TracejitError, TypeError):
    """The function cannot be differentiated as asked (e.g. a non-scalar loss)."""


class DeviceError(TracejitError, RuntimeError):
    """A device was asked for that is not available."""


def is_internal(filename: str) -> bool:
    """Code that is not the user's: tracejit, NumPy, Numba, the stdlib."""
    path = os.path.abspath(filename)
    if path.startswith(_PACKAGE_DIR + os.sep):
        # tests and examples live outside the package; only the library is internal
        return True
    if filename.startswith("<frozen") or "/numpy/" in path or "/numba/" in path:
        return True
    # (site-packages may sit inside the stdlib directory, as under pyenv: installed
    # libraries are not the stdlib)
    return path.startswith(_STDLIB_DIRS) and not _is_library(path)


_REPLAY = threading.local()  # the source line of the equation being replayed, per thread


def replaying(where: tuple[str, int, str] | None) -> tuple[str, int, str] | None:
    """Blame `where` for what happens next in this thread (eval_graph replaying an equation
    keeps the user's line on the equations it records; None: the call stack again). Returns
    the location it replaces, to be restored."""
    prev = getattr(_REPLAY, "where", None)
    _REPLAY.where = where
    return prev


def user_frame() -> tuple[str, int, str] | None:
    """The user's (file, line, function): the line of the equation being replayed, else the
    innermost stack frame outside tracejit, NumPy and the stdlib."""
    where = getattr(_REPLAY, "where", None)
    if where is not None:
        return where
    frame = sys._getframe(1)
    while frame is not None:
        code = frame.f_code
        if not is_internal(code.co_filename):
            return (code.co_filename, frame.f_lineno, code.co_name)
        frame = frame.f_back
    return None


def in_package(frame: types.FrameType | None) -> bool:
    """Whether `frame` runs tracejit's own code."""
    return frame is not None and os.path.abspath(frame.f_code.co_filename).startswith(
        _PACKAGE_DIR + os.sep)


def _is_library(filename: str) -> bool:
    return os.sep + "site-packages" + os.sep in filename or \
        os.sep + "dist-packages" + os.sep in filename


def calling_frame() -> types.FrameType | None:
    """The frame of the user's code that made the call now running: the innermost frame
    outside tracejit, NumPy and the stdlib, and outside installed libraries (scipy calling
    np.asarray on a tracer: the user's line that called scipy) when there is such a frame."""
    frame, found = sys._getframe(1), None
    while frame is not None:
        if not is_internal(frame.f_code.co_filename):
            found = found or frame
            if not _is_library(frame.f_code.co_filename):
                return frame
        frame = frame.f_back
    return found


def where_of(frame: types.FrameType | None) -> tuple[str, int, str] | None:
    """(file, line, function) of a frame, as user_frame gives them."""
    if frame is None:
        return None
    return (frame.f_code.co_filename, frame.f_lineno, frame.f_code.co_name)


def called_function(frame: types.FrameType | None) -> Any:
    """The function `frame` is calling now (its current instruction is a call), resolved from
    the call's source text (`math.exp(x)`: the math.exp object), or None when that cannot be
    told: not a call, no source, or a callee that is not a plain name or attribute chain."""
    try:
        positions = list(frame.f_code.co_positions())[frame.f_lasti // 2]
        first, last, start, end = positions
        lines = [linecache.getline(frame.f_code.co_filename, n) for n in range(first, last + 1)]
        # columns are UTF-8 byte offsets
        text = b"".join(ln.encode() for ln in lines)
        text = text[start:len(text) - len(lines[-1].encode()) + end].decode()
        call = ast.parse(text.strip(), mode="eval").body
    except (AttributeError, IndexError, TypeError, ValueError, SyntaxError):
        # no co_positions (Python 3.10), no source, or not one expression
        return None
    if not isinstance(call, ast.Call):
        return None
    return _resolve(call.func, frame)


def _resolve(node: ast.expr, frame: types.FrameType) -> Any:
    """The value of a name or attribute chain in `frame` (modules only are looked into)."""
    if isinstance(node, ast.Name):
        for scope in (frame.f_locals, frame.f_globals, vars(builtins)):
            if node.id in scope:
                return scope[node.id]
        return None
    if isinstance(node, ast.Attribute):
        base = _resolve(node.value, frame)
        if isinstance(base, types.ModuleType):
            return getattr(base, node.attr, None)
    return None


def public_name(fn: Any) -> str:
    """How the user wrote a library function: np.cumsum, np.fft.fft, scipy.special.expit
    (private submodules dropped), math.exp."""
    name = getattr(fn, "__name__", None) or str(fn)
    module = (getattr(fn, "__module__", None) or "").split(".")
    if module[0] == "numpy":  # np.fft.fft, but np.cumsum (not np._core.fromnumeric.cumsum)
        parts = ["np", *[p for p in module[1:2] if not p.startswith("_")]]
    else:
        parts = [p for p in module if p and not p.startswith("_")][:2]
    return ".".join([*parts, name])


def format_frame(where: tuple[str, int, str] | None) -> str:
    """Two lines in the style of a traceback entry, or '' when no user frame is known."""
    if where is None:
        return ""
    filename, lineno, name = where
    text = linecache.getline(filename, lineno).strip()
    out = f'  File "{filename}", line {lineno}, in {name}'
    return out + (f"\n      {text}" if text else "")


def user_error(cls: type[TracejitError], what: str, fix: str,
               where: tuple[str, int, str] | None = None) -> TracejitError:
    """Build an error whose message is: what, then the user's line, then how to fix it."""
    where = where if where is not None else user_frame()
    parts = [what, format_frame(where), f"Fix: {fix}"]
    return cls("\n".join(p for p in parts if p))


def trim_traceback(exc: BaseException) -> BaseException:
    """Drop tracejit's own frames from a user-facing exception's traceback (JAX api_boundary)."""
    tb = exc.__traceback__
    kept: list[types.TracebackType] = []
    while tb is not None:
        if not is_internal(tb.tb_frame.f_code.co_filename):
            kept.append(tb)
        tb = tb.tb_next
    new_tb = None
    for entry in reversed(kept):
        new_tb = types.TracebackType(new_tb, entry.tb_frame, entry.tb_lasti, entry.tb_lineno)
    return exc.with_traceback(new_tb)
