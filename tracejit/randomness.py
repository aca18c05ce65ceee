"""No random numbers inside traced functions.

A traced function runs once, while tracing; noise drawn there (`np.random.normal(size=3)`)
would become a constant of the compiled code: the same "noise" at every call. So drawing
random numbers while tracing is an error at the user's line, saying to pass the noise in.

How it is found. numpy.random is compiled Cython: its calls make no Python frames and no
profiler events (sys.setprofile sees no `c_call` for them), so they cannot be watched as
calls. Instead, before a trace, `watch(fn)` reads the bytecode of `fn` and of the functions
and methods it names (three levels deep, as captures.py looks for captured values), resolves
the names it loads from globals, closures and `self`, and marks each instruction that loads
a random number generator:

    np.random (any attribute of it: np.random.normal, np.random.default_rng, ...)
    a numpy.random.Generator, RandomState, BitGenerator or SeedSequence, or their methods
    functions of numpy.random imported by name, Python's `random` module and its functions

A generator made inside the function from a seed (`np.random.default_rng(seed).normal(...)`)
draws the same numbers at every call, as NumPy would: it is allowed; without a seed (or
with seed=None) it is an error, found by reading the call's source when the load runs.

Only when there is such an instruction does the trace run under a per-thread `sys.settrace`
that follows opcodes in the marked functions alone and raises when a marked instruction
executes (a branch not taken raises nothing). A function without one is traced with no hook
at all, so the check costs a cached bytecode scan per trace. Not seen: random numbers drawn
through objects the scan cannot name statically (an RNG passed as a static argument, or
reached through a local variable), and no check runs while a debugger or coverage tool
holds the thread's trace hook.
"""
from __future__ import annotations

import ast
import contextlib
import dis
import functools
import inspect
import linecache
import random
import sys
import threading
import types
import weakref
from collections.abc import Callable, Iterator
from typing import Any

from .errors import TracejitError, UnsupportedError, is_internal, user_error

_DEPTH = 3  # functions calling functions calling functions, as captures.py
_MISSING = object()
_ATTRS = ("LOAD_ATTR", "LOAD_METHOD")
# per code object: the chains of loads it makes (np.random.normal: one chain of three)
_CHAINS: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()
_STATE = threading.local()  # .marks while this thread traces under the hook


def _chains(code: types.CodeType) -> list[list[tuple[int, str, str]]]:
    """[(offset, opname, name), ...] per chain of a name load and the attribute loads that
    follow it: `np.random.normal` is LOAD_GLOBAL np, LOAD_ATTR random, LOAD_METHOD normal."""
    found = _CHAINS.get(code)
    if found is None:
        found, chain = [], None
        for ins in dis.get_instructions(code):
            if ins.opname in ("LOAD_GLOBAL", "LOAD_NAME", "LOAD_DEREF", "LOAD_CLASSDEREF") or \
                    ins.opname.startswith("LOAD_FAST") and isinstance(ins.argval, str):
                chain = [(ins.offset, ins.opname, ins.argval)]
                found.append(chain)
            elif ins.opname in _ATTRS and chain is not None:
                chain.append((ins.offset, ins.opname, ins.argval))
            elif ins.opname == "IMPORT_NAME" and _random_module_name(ins.argval):
                found.append([(ins.offset, ins.opname, ins.argval)])
                chain = None
            else:
                chain = None
        _CHAINS[code] = found
    return found


def _random_module_name(name: Any) -> bool:
    return isinstance(name, str) and (name == "random" or name == "numpy.random" or
                                      name.startswith("numpy.random."))


def is_rng(value: Any) -> bool:
    """A random number generator, or a function or method that draws from one."""
    if isinstance(value, types.ModuleType):
        return _random_module_name(value.__name__)
    if isinstance(value, random.Random) or _random_module_name(type(value).__module__):
        return True  # Generator, RandomState, BitGenerator, SeedSequence instances
    if isinstance(value, (types.MethodType, types.BuiltinMethodType)):
        owner = value.__self__
        if isinstance(owner, random.Random) or _random_module_name(type(owner).__module__) \
                or isinstance(owner, types.ModuleType) and _random_module_name(owner.__name__):
            return True
    module = getattr(value, "__module__", None) if callable(value) else None
    return _random_module_name(module)


def makes_generator(value: Any) -> bool:
    """A constructor of generators (np.random.default_rng, RandomState, Generator, PCG64, ...,
    SeedSequence, random.Random): seeded, what it makes draws the same numbers every time."""
    if isinstance(value, type):
        return issubclass(value, random.Random) or _random_module_name(value.__module__)
    return getattr(value, "__name__", None) == "default_rng" and \
        _random_module_name(getattr(value, "__module__", None))


def _attribute(value: Any, name: str) -> Any:
    """value.name without running user code (no properties): modules and static lookups."""
    if isinstance(value, types.ModuleType):
        return getattr(value, name, _MISSING)
    try:
        found = inspect.getattr_static(value, name, _MISSING)
    except Exception:  # noqa: BLE001  (an object whose type lookup itself fails: unknown)
        return _MISSING
    if isinstance(found, (staticmethod, classmethod)):
        return found.__func__
    if isinstance(found, types.FunctionType) and not isinstance(value, type):
        return types.MethodType(found, value)  # a method of `self`: scanned with its self
    if hasattr(type(found), "__get__") and not callable(found):
        return _MISSING  # a property or another computed attribute
    return found


_internal = functools.lru_cache(maxsize=1024)(is_internal)


def _function_parts(fn: Any) -> tuple[Any, Any]:
    """(plain function, bound self or None) of a function, method, partial or callable
    object; (None, None) when there is no Python code to read."""
    for _ in range(4):
        if isinstance(fn, functools.partial):
            fn = fn.func
        elif type(fn).__module__.startswith("tracejit.") and hasattr(fn, "fn"):
            fn = fn.fn  # a tracejit transformation or custom_vjp: the user's function
        else:
            break
    if isinstance(fn, types.MethodType):
        return fn.__func__, fn.__self__
    if isinstance(fn, types.FunctionType):
        return fn, None
    call = inspect.getattr_static(type(fn), "__call__", None)  # a callable object's method
    if isinstance(call, types.FunctionType):
        return call, fn
    return None, None


def _scan(fn: Any, marks: dict, seen: set, depth: int) -> None:
    """Mark, in `marks` (id(code) -> (code, {offset: what})), the instructions of `fn` and of
    the user functions it names that load a random number generator."""
    func, self_obj = _function_parts(fn)
    code = getattr(func, "__code__", None)
    if code is None or depth < 0 or id(code) in seen or _internal(code.co_filename):
        return
    seen.add(id(code))
    closure = {}
    for name, cell in zip(code.co_freevars, func.__closure__ or ()):
        with contextlib.suppress(ValueError):  # an empty cell
            closure[name] = cell.cell_contents
    self_name = code.co_varnames[0] if self_obj is not None and code.co_argcount else None
    _scan_code(code, func.__globals__, closure, (self_name, self_obj), marks, seen, depth)


def _scan_code(code, globals_: dict, closure: dict, self_pair, marks, seen, depth) -> None:
    found: dict[int, str] = {}
    for chain in _chains(code):
        offset, op, name = chain[0]
        if op == "IMPORT_NAME":
            found[offset] = (f"import {name}", None)
            continue
        if op.startswith("LOAD_FAST"):
            value = self_pair[1] if name == self_pair[0] else _MISSING
        elif op in ("LOAD_DEREF", "LOAD_CLASSDEREF"):
            value = closure.get(name, _MISSING)
        else:
            value = globals_.get(name, _MISSING)
        for k, (offset, _, attr) in enumerate(chain):
            if k:
                value = _attribute(value, attr)
            if value is _MISSING:
                break
            if is_rng(value):
                for _, _, rest in chain[k + 1:]:  # what the whole chain loads
                    value = _attribute(value, rest)
                text = ".".join(n for _, _, n in chain)
                # a generator made here from a seed is deterministic: its call is checked
                found[offset] = (text, chain[-1][0] if makes_generator(value) else None)
                break
            if callable(value) and not isinstance(value, type):
                _scan(value, marks, seen, depth - 1)
    for const in code.co_consts:  # lambdas, comprehensions and inner functions
        if isinstance(const, types.CodeType) and id(const) not in seen:
            seen.add(id(const))
            _scan_code(const, globals_, closure, (None, None), marks, seen, depth)
    if found:
        marks[id(code)] = (code, found)


def marked(*fns: Any) -> dict:
    """id(code) -> (code, {instruction offset: what it loads}) for the code of `fns` that
    loads a random number generator (see the module docstring)."""
    marks: dict = {}
    seen: set = set()
    for fn in fns:
        if fn is not None:
            _scan(fn, marks, seen, _DEPTH)
    return marks


@contextlib.contextmanager
def watch(*fns: Any) -> Iterator[None]:
    """Raise at the user's line if the code of `fns` draws random numbers while this
    context is open (this thread only)."""
    marks = marked(*fns)
    active = getattr(_STATE, "marks", None)
    if not marks:
        yield
    elif active is not None:  # inside a watched trace: watch ours too while it runs
        added = [k for k in marks if k not in active]
        active.update(marks)
        try:
            yield
        finally:
            for k in added:
                active.pop(k, None)
    elif sys.gettrace() is not None:
        yield  # a debugger or coverage tool holds this thread's trace hook: leave it alone
    else:
        _STATE.marks = marks
        sys.settrace(_on_call)
        try:
            yield
        finally:
            sys.settrace(None)
            _STATE.marks = None


def _on_call(frame: types.FrameType, event: str, arg: Any) -> Callable | None:
    """The thread's trace function: follow opcodes in marked code only."""
    marks = getattr(_STATE, "marks", None)
    if marks is None or id(frame.f_code) not in marks:
        return None
    frame.f_trace_opcodes = True
    frame.f_trace_lines = False
    return _on_opcode


def _on_opcode(frame: types.FrameType, event: str, arg: Any) -> Callable | None:
    if event == "opcode":
        entry = (getattr(_STATE, "marks", None) or {}).get(id(frame.f_code))
        found = entry[1].get(frame.f_lasti) if entry is not None else None
        if found is not None:
            what, maker = found
            if maker is None:
                raise random_error(what, frame)
            if not _seeded(frame, maker):
                raise random_error(f"{what}() without a seed", frame)
    return _on_opcode


def _seeded(frame: types.FrameType, offset: int) -> bool:
    """Whether the generator constructor loaded at `offset` is called right there with a seed
    that is not None (read from the call's source; unknown counts as not seeded)."""
    try:
        _, line, _, col = list(frame.f_code.co_positions())[offset // 2]
        lines = [linecache.getline(frame.f_code.co_filename, n).encode()
                 for n in range(line, line + 20)]
        text = (lines[0][col:] + b"".join(lines[1:])).decode().lstrip()
        depth = 0
        for end, char in enumerate(text):
            depth += {"(": 1, ")": -1}.get(char, 0)
            if depth == 0:
                break
        call = ast.parse("_" + text[:end + 1], mode="eval").body
    except (AttributeError, IndexError, TypeError, ValueError, SyntaxError):
        return False
    seed = call.args[0] if call.args else next(
        (k.value for k in call.keywords if k.arg in ("seed", "x")), None)
    if isinstance(seed, ast.Constant):
        return seed.value is not None
    if isinstance(seed, ast.Name):
        value = frame.f_locals.get(seed.id, frame.f_globals.get(seed.id, None))
        return value is not None
    return seed is not None  # an expression: taken as a seed


def random_error(what: str, frame: types.FrameType) -> TracejitError:
    code = frame.f_code
    return user_error(
        UnsupportedError, f"random numbers inside a traced function ({what}): tracing runs "
        "the function once, so they would be frozen into the compiled code (the same values "
        "at every call).", "draw the noise outside and pass it in as an argument, e.g. "
        "loss(w, x, noise) called with noise = rng.normal(size=x.shape) drawn before each "
        "call (or an array derived from a seed).", (code.co_filename, frame.f_lineno,
                                                     code.co_name))
