"""Integer-array indexing: gathers and scatters (kind INDEX). tracejit.numpy reduces every
NumPy advanced index (`x[idx]`, `x[rows, cols]`, `x[:, idx]`, `np.take`, `x.at[i].add(v)`) to
these:

    index_check  idx -> idx with negatives wrapped; IndexError if one is out of bounds
    take         np.take(x, idx, axis): x's `axis` replaced by idx's dimensions
    take_along   np.take_along_axis(x, idx, axis): a read per output element, fused into
                 loop nests (the label of each row read inside the row loop)
    scatter      x with updates at idx along `axis`: mode set | add | mul | min | max

Indices reaching take/take_along/scatter are in bounds and non-negative: tracejit.numpy
checks constant indices at trace time and traced ones with one `index_check` per index array
and call (a NumPy min/max on the host, before any kernel reads through them).

Determinism: `scatter` applies updates in the C order of the indices, whatever the thread
count: on the CPU the NumPy reference does (ufunc.at, and for `set` the last write wins as
in NumPy); on the GPU each output element's thread walks the indices in order (owner
computes, no atomics). Its VJPs are gathers; take's VJP is a scatter-add.
"""
from __future__ import annotations

import numpy as np

from ..errors import ChoiceError, OutOfBoundsError, UnsupportedError, format_frame, user_error
from ..ir import Aval
from . import ANY, INDEX, LOOP, STEP, defprim
from .elementwise import MAX_EMIT, MIN_EMIT, convert, div_p, eq_p, mul_p, select

_I64 = np.dtype(np.int64)


def _ix(names) -> str:
    return ", ".join(names) or "0"


def _zeros(aval: Aval, value=0):
    from .layout import broadcast_p
    return broadcast_p.bind(np.full((), value, aval.dtype), shape=aval.shape)


# ----- index_check: the one bounds check per index array and call -----
def check_bounds(idx, size: int, axis: int, where=None, choice: bool = False) -> int:
    """Raise IndexError (NumPy's message, with the user's line) if an index is outside
    [-size, size); with `choice` (np.choose's indices, negatives already moved out of range)
    NumPy's ValueError 'invalid entry in choice array' instead. Returns the smallest index
    (0 for none)."""
    idx = np.asarray(idx)
    if idx.size == 0:
        return 0
    lo, hi = int(idx.min()), int(idx.max())
    if lo < -size or hi >= size:
        bad = lo if lo < -size else hi
        line = format_frame(where)
        line = f"\n{line}" if line else ""
        if choice:
            raise ChoiceError(f"invalid entry in choice array: np.choose's indices must lie "
                              f"in [0, {size}) (or use mode='wrap' / 'clip'){line}")
        raise OutOfBoundsError(f"index {bad} is out of bounds for axis {axis} with size "
                               f"{size}{line}")
    return lo


def _check_impl(idx, size, axis, where=None, choice=False):
    """The indices, checked, negatives wrapped: the same array when there is none (W8's
    327k indices: 3 ms with a wrapped copy each call, 0.06 ms for the check alone)."""
    idx = np.asarray(idx, np.int64)
    if check_bounds(idx, size, axis, where, choice) >= 0:
        return idx
    return np.where(idx < 0, idx + size, idx)


index_check_p = defprim(
    "index_check", INDEX,
    shape=lambda idx, size, axis, where=None, choice=False: Aval(idx.shape, _I64),
    impl=_check_impl, view=_check_impl, fusion=STEP,  # view: the result may be the input
    # elementwise over the indices: a batched index array is checked as it is
    batch=lambda prim, args, dims, **p: (prim.bind(args[0], **p), dims[0]),
    host_check=lambda idx, size, axis, where=None, choice=False: check_bounds(
        idx, size, axis, where, choice),
    # on a device the check ran on the host; the kernel only wraps (and clamps, never
    # reading out of bounds)
    gather=lambda e: [
        f"j = x0[{_ix(f'i{d}' for d in range(e.inputs[0].aval.ndim))}]",
        f"j = j + {e.params['size']} if j < 0 else j",
        (f"o[{_ix(f'i{d}' for d in range(e.inputs[0].aval.ndim))}] = "
         f"min(max(j, 0), {max(e.params['size'] - 1, 0)})")])


# ----- take -----
def _take_shape(x: Aval, idx: Aval, axis: int) -> Aval:
    return Aval(x.shape[:axis] + idx.shape + x.shape[axis + 1:], x.dtype)


def _take_vjp(g, out, x, idx, axis):
    return scatter_p.bind(_zeros(x.aval), idx, g, axis=axis, mode="add"), None


def _take_gather(e) -> list[str]:
    x, idx = e.inputs[0].aval, e.inputs[1].aval
    a, k = e.params["axis"], idx.ndim
    o = [f"i{d}" for d in range(e.outputs[0].aval.ndim)]
    j = f"x1[{_ix(o[a:a + k])}]"
    src = o[:a] + [j] + o[a + k:]
    assert len(src) == x.ndim
    return [f"o[{_ix(o)}] = x0[{_ix(src)}]"]


def _take_load(e, name: str, index_at, out_ix: list[str]) -> str:
    a, k = e.params["axis"], e.inputs[1].aval.ndim
    amap = [None if ix == "0" else int(ix[1:]) for ix in out_ix]
    return f"{name}[{_ix(out_ix[:a] + [index_at(amap[a:a + k])] + out_ix[a + k:])}]"


# ----- batching (vmap): the batch axis leads every batched operand -----
def _permute(x, perm):
    from .layout import transpose_p
    perm = tuple(perm)
    return x if perm == tuple(range(len(perm))) else transpose_p.bind(x, perm=perm)


def _leading(x, dim, size=None):
    """x with the batch axis in front: as it is when batched, else with a new axis of 1
    (which broadcasts) or, given `size`, of `size`."""
    from .layout import broadcast_p, reshape_p
    if dim is not None:
        return x
    x = reshape_p.bind(x, shape=(1,) + x.shape)
    return x if size is None else broadcast_p.bind(x, shape=(size,) + x.shape[1:])


def _rows_per_example(x, axis):
    """(B, pre..., N, post...) -> (B*N, pre..., post...): example b's index j is row b*N + j,
    so one gather or scatter along axis 0 serves every example with its own indices."""
    from .layout import reshape_p
    moved = _permute(x, (0, axis + 1) + tuple(d for d in range(1, x.ndim) if d != axis + 1))
    return reshape_p.bind(moved, shape=(x.shape[0] * x.shape[axis + 1],) + moved.shape[2:])


def _offset_rows(idx, n: int):
    """Per-example indices (B, ...) into the rows of `_rows_per_example`."""
    from .elementwise import add_p
    size = idx.shape[0]
    offsets = (np.arange(size, dtype=np.int64) * n).reshape((size,) + (1,) * (idx.ndim - 1))
    return add_p.bind(idx, offsets)


def _take_batch(prim, args, dims, axis):
    (x, idx), (dx, di) = args, dims
    if di is None:  # one index for every example
        return take_p.bind(x, idx, axis=axis + 1), 0
    if dx is None:  # the index's batch axis lands at `axis` of the result: move it in front
        out = take_p.bind(x, idx, axis=axis)
        return _permute(out, (axis,) + tuple(d for d in range(out.ndim) if d != axis)), 0
    if idx.size == idx.shape[0]:  # one index per example (a label): a row gather that
        return _take_one_per_example(x, idx, axis), 0  # fuses into the row loop
    # per-example indices into per-example operands: (B, idx..., pre..., post...)
    out = take_p.bind(_rows_per_example(x, axis), _offset_rows(idx, x.shape[axis + 1]), axis=0)
    k = idx.ndim - 1
    return _permute(out, (0,) + tuple(range(1 + k, 1 + k + axis)) + tuple(range(1, 1 + k)) +
                    tuple(range(1 + k + axis, out.ndim))), 0


def _take_one_per_example(x, idx, axis):
    """take with one index per example is take_along with an index of 1 along `axis`: its
    VJP is a select (no scatter), and fusion reads it inside the loop over the examples."""
    from .layout import reshape_p
    size = x.shape[0]
    along = reshape_p.bind(idx, shape=(size,) + (1,) * (x.ndim - 1))
    out = take_along_p.bind(x, along, axis=axis + 1)
    return reshape_p.bind(out, shape=x.shape[:axis + 1] + idx.shape[1:] + x.shape[axis + 2:])


def _along_batch(prim, args, dims, axis):
    """take_along broadcasts its operands' other axes: an unbatched one gets an axis of 1."""
    x, idx = (_leading(a, d) for a, d in zip(args, dims))
    return take_along_p.bind(x, idx, axis=axis + 1), 0


def _scatter_one_per_example(x, idx, v, axis, mode):
    """Each example updates one place: where(iota == idx, x <mode> v, x) along `axis`."""
    from .elementwise import add_p, max_p, min_p
    from .layout import reshape_p
    size, n, k = x.shape[0], x.shape[axis + 1], idx.ndim - 1
    at = reshape_p.bind(idx, shape=(size,) + (1,) * (x.ndim - 1))
    iota = np.arange(n, dtype=np.int64).reshape((1,) * (axis + 1) + (n,) +
                                                (1,) * (x.ndim - axis - 2))
    v = reshape_p.bind(v, shape=v.shape[:axis + 1] + (1,) + v.shape[axis + 1 + k:])
    op = {"add": add_p, "mul": mul_p, "min": min_p, "max": max_p}.get(mode)
    new = v if op is None else op.bind(x, v)
    if new.shape != x.shape:
        from .layout import broadcast_p
        new = broadcast_p.bind(new, shape=x.shape)
    return select(eq_p.bind(at, iota), new, x)


def _scatter_batch(prim, args, dims, axis, mode):
    from .layout import reshape_p
    (x, idx, v), (dx, di, dv) = args, dims
    size = next(a.shape[0] for a, d in zip(args, dims) if d is not None)
    x, v = _leading(x, dx, size), _leading(v, dv)
    if di is None:  # one index for every example; v's axis of 1 broadcasts
        return scatter_p.bind(x, idx, v, axis=axis + 1, mode=mode), 0
    if idx.size == size:  # one index per example: an elementwise select that fuses
        return _scatter_one_per_example(x, idx, v, axis, mode), 0
    # per-example indices: scatter into the rows of every example at once; example b's
    # updates keep their C order and touch only its rows (the same winners and sums)
    n, k = x.shape[axis + 1], idx.ndim - 1
    rows = _rows_per_example(x, axis)
    v = _permute(v, (0,) + tuple(range(1 + axis, 1 + axis + k)) + tuple(range(1, 1 + axis)) +
                 tuple(range(1 + axis + k, v.ndim)))
    out = scatter_p.bind(rows, _offset_rows(idx, n), v, axis=0, mode=mode)
    out = reshape_p.bind(out, shape=(size, n) + rows.shape[1:])
    return _permute(out, (0,) + tuple(range(2, 2 + axis)) + (1,) +
                    tuple(range(2 + axis, out.ndim))), 0


take_p = defprim("take", INDEX, shape=_take_shape,
                 impl=lambda x, idx, axis: np.take(x, idx, axis=axis), vjp=_take_vjp,
                 jvp=lambda ts, out, x, idx, axis: take_p.bind(ts[0], idx, axis=axis),
                 batch=_take_batch,
                 domain=ANY, fusion=LOOP, gather=_take_gather, load=_take_load)


# ----- scatter -----
_UFUNC = {"add": np.add, "mul": np.multiply, "min": np.minimum, "max": np.maximum}
_COMBINE = {"add": "({0} + {1})", "mul": "({0} * {1})", "min": MIN_EMIT, "max": MAX_EMIT,
            "set": "{1}"}


def _scatter_shape(x: Aval, idx: Aval, v: Aval, axis: int, mode: str) -> Aval:
    want = _take_shape(x, idx, axis).shape
    assert v.ndim == len(want) and np.broadcast_shapes(v.shape, want) == want and \
        v.dtype == x.dtype, f"scatter: updates {v} for {want}"
    return x


def _scatter_impl(x, idx, v, axis, mode):
    out = np.array(x, copy=True)
    idx = np.asarray(idx, np.int64)
    v = np.broadcast_to(np.asarray(v, out.dtype), out.shape[:axis] + idx.shape +
                        out.shape[axis + 1:])
    flat = idx.reshape(-1)
    vflat = v.reshape(out.shape[:axis] + (flat.size,) + out.shape[axis + 1:])
    pre = (slice(None),) * axis
    if mode == "set":  # the last write of each index wins (NumPy's order), deterministic
        _, first_of_reversed = np.unique(flat[::-1], return_index=True)
        last = flat.size - 1 - first_of_reversed
        out[pre + (flat[last],)] = vflat[pre + (last,)]
    else:
        _UFUNC[mode].at(out, pre + (flat,), vflat)
    return out


def _as_update(mask, v_aval: Aval, axis: int):
    """An index-shaped value reshaped to broadcast against the updates."""
    from .layout import reshape_p
    rest = v_aval.ndim - axis - mask.ndim
    return reshape_p.bind(mask, shape=(1,) * axis + mask.shape + (1,) * rest)


def _winners(x, idx, axis):
    """Per index entry: whether its write is the one `set` keeps (the last)."""
    from .layout import reshape_p
    n = x.aval.shape[axis]
    pos = np.arange(idx.aval.size, dtype=np.int64).reshape(idx.aval.shape)
    pos_flat = reshape_p.bind(pos, shape=(idx.aval.size,))
    idx_flat = reshape_p.bind(idx, shape=(idx.aval.size,))
    owner = scatter_p.bind(np.full(n, -1, np.int64), idx_flat, pos_flat, axis=0, mode="set")
    return eq_p.bind(take_p.bind(owner, idx, axis=0), pos)


def _scatter_vjp(g, out, x, idx, v, axis, mode):
    gv = take_p.bind(g, idx, axis=axis)
    if mode == "add":
        return g, None, gv
    if mode == "set":
        gx = scatter_p.bind(g, idx, _zeros(v.aval), axis=axis, mode="set")
        return gx, None, select(_as_update(_winners(x, idx, axis), v.aval, axis), gv, 0)
    if mode == "mul":  # exact where no update is 0 (as JAX: unique or nonzero updates)
        factor = scatter_p.bind(_zeros(x.aval, 1), idx, v, axis=axis, mode="mul")
        return mul_p.bind(g, factor), None, div_p.bind(take_p.bind(mul_p.bind(g, out), idx,
                                                                   axis=axis), v)
    # min/max: ties (x and the updates equal to the result) share the gradient equally
    hit_x = eq_p.bind(x, out)
    hit_v = eq_p.bind(v, take_p.bind(out, idx, axis=axis))
    count = scatter_p.bind(convert(hit_x, x.dtype), idx, convert(hit_v, v.dtype),
                           axis=axis, mode="add")
    share = div_p.bind(g, count)
    return select(hit_x, share, 0), None, select(hit_v, take_p.bind(share, idx, axis=axis), 0)


def _scatter_gather(e) -> list[str]:
    """Owner computes: the thread of o[i...] walks every index in C order (deterministic,
    no atomics)."""
    x, idx = e.inputs[0].aval, e.inputs[1].aval
    a, mode = e.params["axis"], e.params["mode"]
    o = [f"i{d}" for d in range(x.ndim)]
    js = [f"j{d}" for d in range(idx.ndim)]
    lines, ind = [f"acc = x0[{_ix(o)}]"], ""
    for d in range(idx.ndim):
        lines.append(f"{ind}for j{d} in range(x1.shape[{d}]):")
        ind += "    "
    v = e.inputs[2].aval
    vsrc = _ix("0" if n == 1 else i for n, i in zip(v.shape, o[:a] + js + o[a + 1:]))
    lines += [f"{ind}if x1[{_ix(js)}] == i{a}:",
              f"{ind}    acc = {_COMBINE[mode].format('acc', f'x2[{vsrc}]')}",
              f"o[{_ix(o)}] = acc"]
    return lines


def _scatter_serial(e) -> list[str]:
    """CPU, owner computes: chunk c of x's `axis` copies its slab of x, then walks every
    index in C order and applies the updates that land in its slab. Each element gets its
    updates in index order whatever the number of chunks (the same bits with any thread
    count, no atomics); the chunks run in parallel."""
    x, idx, v = (a.aval for a in e.inputs)
    a, mode = e.params["axis"], e.params["mode"]
    pre = [f"p{d}" for d in range(a)]
    post = [f"q{d}" for d in range(a + 1, x.ndim)]
    js = [f"j{d}" for d in range(idx.ndim)]
    lines = [f"n = o.shape[{a}]",
             f"nch = max(1, min(n, nth, (o.size + x2.size) // {1 << 15}))",
             "for c in prange(nch):", "    lo = c * n // nch", "    hi = (c + 1) * n // nch"]
    # the slab's copy as loops (unsigned indices: no negative-index checks, it vectorizes);
    # a slice assignment `o[lo:hi] = x0[lo:hi]` took Numba 3x as long to compile (W8's
    # first call: 13 of its 16 s)
    ind = "    "
    for d, name in enumerate(pre):
        lines.append(f"{ind}for {name} in range(x0.shape[{d}]):")
        ind += "    "
    for d, name in enumerate(["r"] + post):
        lo_hi = "lo, hi" if d == 0 else f"x0.shape[{a + d}]"
        lines += [f"{ind}for k{name} in range({lo_hi}):", f"{ind}    {name} = np.uint64(k{name})"]
        ind += "    "
    slab = _ix(pre + ["r"] + post)
    lines.append(f"{ind}o[{slab}] = x0[{slab}]")
    if not js:
        lines.append("    t = x1.item()")
    ind = "    "
    for d, name in enumerate(pre):
        lines.append(f"{ind}for {name} in range(x0.shape[{d}]):")
        ind += "    "
    for d, name in enumerate(js):
        lines.append(f"{ind}for {name} in range(x1.shape[{d}]):")
        ind += "    "
    if js:
        lines.append(f"{ind}t = x1[{_ix(js)}]")
    lines.append(f"{ind}if lo <= t and t < hi:")
    ind += "    "
    for d, name in enumerate(post):  # unsigned: no negative-index checks, so it vectorizes
        lines.append(f"{ind}for k{name} in range(x0.shape[{a + 1 + d}]):")
        lines.append(f"{ind}    {name} = np.uint64(k{name})")
        ind += "    "
    vix = [("0" if n == 1 else i) for n, i in zip(v.shape, pre + js + post)]
    dst = f"o[{_ix(pre + ['t'] + post)}]"
    lines.append(f"{ind}{dst} = {_COMBINE[mode].format(dst, f'x2[{_ix(vix)}]')}")
    return lines


def _scatter_jvp(ts, out, x, idx, v, axis, mode):
    """set and add are linear in (x, v): the tangent is the same scatter of the tangents."""
    if mode not in ("set", "add"):
        raise user_error(UnsupportedError, f"forward mode (jvp) through a scatter with "
                         f"mode {mode!r} (x.at[...].{mode}) is not supported yet.",
                         "use reverse mode (grad/vjp), or .set/.add updates.")
    tx = ts[0] if ts[0] is not None else _zeros(x.aval)
    tv = ts[2] if ts[2] is not None else _zeros(v.aval)
    return scatter_p.bind(tx, idx, tv, axis=axis, mode=mode)


scatter_p = defprim("scatter", INDEX, shape=_scatter_shape, impl=_scatter_impl,
                    vjp=_scatter_vjp, jvp=_scatter_jvp, batch=_scatter_batch, domain=ANY,
                    fusion=STEP, gather=_scatter_gather,
                    broadcast_inputs=(2,), serial=_scatter_serial)


# ----- take_along (np.take_along_axis) -----
def _along_shape(x: Aval, idx: Aval, axis: int) -> Aval:
    assert x.ndim == idx.ndim, "take_along: index and operand have the same rank"
    shape = tuple(idx.shape[d] if d == axis else max(x.shape[d], idx.shape[d])
                  for d in range(x.ndim))
    return Aval(shape, x.dtype)


def _along_vjp(g, out, x, idx, axis):
    """Owner computes, in primitives that fuse: ct[..., j, ...] = sum over k of
    g[..., k, ...] where idx[..., k, ...] == j (one select when k has one entry)."""
    from .layout import reshape_p
    from .reductions import reduce_sum_p
    n, k = x.aval.shape[axis], idx.aval.shape[axis]
    iota = np.arange(n, dtype=np.int64).reshape((1,) * axis + (n,) + (1,) * (x.ndim - axis - 1))
    if k == 1:
        return select(eq_p.bind(idx, iota), g, 0), None

    def expand(t):
        return reshape_p.bind(t, shape=t.shape[:axis + 1] + (1,) + t.shape[axis + 1:])
    iota = iota.reshape(iota.shape[:axis] + (1,) + iota.shape[axis:])
    picked = select(eq_p.bind(expand(idx), iota), expand(g), 0)
    summed = reduce_sum_p.bind(picked, axes=(axis,))
    return reshape_p.bind(summed, shape=summed.shape[:axis] + summed.shape[axis + 1:]), None


def _along_src(e, idx_expr: str, out_ix: list[str]) -> list[str]:
    x, axis = e.inputs[0].aval, e.params["axis"]
    return [idx_expr if d == axis else ("0" if x.shape[d] == 1 else out_ix[d])
            for d in range(x.ndim)]


def _along_gather(e) -> list[str]:
    idx = e.inputs[1].aval
    o = [f"i{d}" for d in range(e.outputs[0].aval.ndim)]
    j = f"x1[{_ix('0' if n == 1 else o[d] for d, n in enumerate(idx.shape))}]"
    return [f"o[{_ix(o)}] = x0[{_ix(_along_src(e, j, o))}]"]


def _along_load(e, name: str, index_at, out_ix: list[str]) -> str:
    """In a loop nest: operand 0 (read from memory as `name`) at the loaded index."""
    amap = [None if ix == "0" else int(ix[1:]) for ix in out_ix]
    return f"{name}[{_ix(_along_src(e, index_at(amap), out_ix))}]"


take_along_p = defprim("take_along", INDEX, shape=_along_shape,
                       impl=lambda x, idx, axis: np.take_along_axis(x, idx, axis=axis),
                       vjp=_along_vjp, domain=ANY, fusion=LOOP, gather=_along_gather,
                       jvp=lambda ts, out, x, idx, axis: take_along_p.bind(ts[0], idx,
                                                                           axis=axis),
                       batch=_along_batch,
                       load=_along_load)


# ----- argsort (np.argsort, stable; NaNs last as in NumPy); sort is take_along(x, argsort) --
def _argsort_gather(e) -> list[str]:
    """GPU: the thread of output position p finds the element of stable rank p (O(n^2) per
    row; sorting networks are a TODO)."""
    a, nd = e.params["axis"], e.inputs[0].aval.ndim
    o = [f"i{d}" for d in range(nd)]

    def at(j):
        return _ix(j if d == a else o[d] for d in range(nd))
    return [f"for j in range(x0.shape[{a}]):", f"    xj = x0[{at('j')}]", "    r = 0",
            f"    for k in range(x0.shape[{a}]):", f"        xk = x0[{at('k')}]",
            "        if (xk < xj or (xj != xj and xk == xk)) or (k < j and (xk == xj or "
            "(xk != xk and xj != xj))):", "            r += 1",
            f"    if r == i{a}:", f"        o[{_ix(o)}] = j"]


argsort_p = defprim("argsort", INDEX, shape=lambda x, axis: Aval(x.shape, _I64),
                    impl=lambda x, axis: np.argsort(x, axis=axis, kind="stable"),
                    fusion=STEP, gather=_argsort_gather,
                    # the batch axis leads: sort along the same axis, one further in
                    batch=lambda prim, args, dims, axis: (
                        prim.bind(args[0], axis=axis if dims[0] is None else axis + 1),
                        dims[0]))
