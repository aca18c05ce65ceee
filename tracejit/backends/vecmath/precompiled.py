"""vecmath's entry points compiled once per install, not once per process.

A kernel calling `vm.tanh` on float32 used to compile the entry (an overload: a whole Numba
pipeline, its helpers inlined at Numba IR level) in every new process: 0.1 s of W11's cold
first call of ~1 s. Here an entry is compiled once for its signature, its optimized LLVM
module saved as bitcode, and a call site links that module into the caller's library, where
LLVM inlines it (the entry is `alwaysinline`) and vectorizes the loop around it as before.

The bitcode lives next to the package (`__pycache__/vm-<key>.bc`, like Numba's own cache of
package functions) or, where that is not writable, in the kernel cache folder. Its name is a
digest of the entry, its signature, vecmath's sources, the Python/Numba/llvmlite versions and
the CPU, so an edit or an upgrade compiles it afresh. Its functions are renamed after that
digest and made `linkonce_odr`: two libraries holding the same entry link as one, and no
name can meet another process's function of the same Numba name.
"""
from __future__ import annotations

import glob
import hashlib
import os
import sys
import weakref

import llvmlite
import llvmlite.binding as ll
import numba
from numba.core import cgutils

_BITCODE: dict[str, bytes] = {}  # key -> bitcode, this process
_LINKED = weakref.WeakKeyDictionary()  # code library -> keys linked into it
_SALT: list[str] = []


def _salt() -> str:
    """What every key depends on besides the entry: sources, versions, the CPU."""
    if not _SALT:
        h = hashlib.sha256()
        for path in sorted(glob.glob(os.path.join(os.path.dirname(__file__), "*.py"))):
            with open(path, "rb") as f:
                h.update(f.read())
        h.update(repr((sys.version, numba.__version__, llvmlite.__version__,
                       ll.get_process_triple(), ll.get_host_cpu_name(),
                       ll.get_host_cpu_features().flatten())).encode())
        _SALT.append(h.hexdigest())
    return _SALT[0]


def _folders() -> list[str]:
    from ... import config
    return [os.path.join(os.path.dirname(__file__), "__pycache__"),
            os.path.join(config.CACHE_DIR, "vecmath")]


def _bitcode(key: str, compile_entry) -> bytes:
    """The entry's bitcode: from this process, from disk, or compiled (and saved)."""
    if key in _BITCODE:
        return _BITCODE[key]
    for folder in _folders():
        try:
            with open(os.path.join(folder, f"vm-{key}.bc"), "rb") as f:
                bc = f.read()
            ll.parse_bitcode(bc)  # a truncated file is compiled again
        except (OSError, RuntimeError):
            continue
        _BITCODE[key] = bc
        return bc
    bc = _BITCODE[key] = compile_entry()
    for folder in _folders():
        try:
            os.makedirs(folder, exist_ok=True)
            tmp = os.path.join(folder, f"vm-{key}.{os.getpid()}.tmp")
            with open(tmp, "wb") as f:
                f.write(bc)
            os.replace(tmp, os.path.join(folder, f"vm-{key}.bc"))
            break
        except OSError:
            continue
    return bc


def call(context, builder, name: str, pyfunc, sig, args, jit_options: dict):
    """Lower a call of `pyfunc` (an njit-able function of `sig.args`) as a call of its
    precompiled entry, linked into the library being lowered."""
    key = hashlib.sha256(f"{name}|{sig}|{_salt()}".encode()).hexdigest()[:24]
    symbol = f"tracejit_vm_{key}"

    def compile_entry() -> bytes:
        disp = numba.njit(**jit_options)(pyfunc)
        disp.compile(sig.args)
        cres = disp.overloads[sig.args]
        mod = ll.parse_assembly(cres.library.get_llvm_str())
        n = 0
        for fn in mod.functions:
            if fn.is_declaration:
                continue
            fn.name = symbol if fn.name == cres.fndesc.mangled_name else f"{symbol}_{n}"
            fn.linkage = ll.Linkage.weak_odr
            n += 1
        if symbol not in {fn.name for fn in mod.functions if not fn.is_declaration}:
            raise RuntimeError(f"vecmath entry {name}{sig}: Numba's function for it was not "
                               f"found in its module (Numba's naming changed?)")
        return mod.as_bitcode()

    bc = _bitcode(key, compile_entry)
    library = context.active_code_library
    linked = _LINKED.setdefault(library, set())
    if key not in linked:
        library.add_llvm_module(ll.parse_bitcode(bc))
        linked.add(key)
    fnty = context.call_conv.get_function_type(sig.return_type, sig.args)
    fn = cgutils.get_or_insert_function(builder.module, fnty, symbol)
    _, out = context.call_conv.call_function(builder, fn, sig.return_type, sig.args, args)
    return out
