"""A small pool of large NumPy buffers, reused from one training step to the next.

Why: a training step allocates the same large temporaries every time (the padded input and
the columns of im2col, the GEMM results, the padded buffer col2im adds into), frees them,
and allocates them again in the next step. glibc hands freed blocks of this size back to
the system and then page-faults every page of the next allocation in again. Measured on
an FCN-8s step (batch 8, 64x64, one thread, 2-core VM): 170 ms with fresh allocations,
120 ms when glibc was told to keep freed memory (``GLIBC_TUNABLES``); PyTorch, which keeps
a cache of its own, gained less. This pool keeps them inside minifcn instead: measured
(one thread, quiet machine, median of 5 steps) FCN-8s batch 8 98 -> 76 ms a step for a
peak RSS of 121 -> 154 MiB; batch 16 163 -> 150 ms, 221 -> 278 MiB; U-Net batch 8
240 -> 219 ms, 263 -> 311 MiB.

Two calls, used by the convolutions only:

- :func:`take` ``(xp, shape, dtype)``: an uninitialised array, a given-back buffer of the
  same size if there is one, else a new one. Taking is always safe: an array taken and
  never given back is an ordinary array.
- :func:`give` ``(array)``: the caller promises that nothing will read or write ``array`` or
  any view of it again; its memory goes back to the pool. Only code that created the
  buffer and saw every use of it gives it back.

NumPy only: on CuPy (and the strict stand-in) :func:`take` is ``xp.empty`` and :func:`give`
does nothing, since CuPy's own memory pool already reuses device memory.

Memory: the pool holds at most :data:`DEFAULT_POOL_BYTES` (256 MiB) of free buffers per
thread, dropping the least recently given ones first; set it with :func:`set_pool_bytes` (0
turns the pool off) and empty it with :func:`clear`. A step whose buffers add up to more
than that page-faults the dropped ones in again every time: the CPU's small im2col budget
(:data:`~minifcn.functional.im2col.CPU_IM2COL_BUDGET`) keeps them few and small.
"""

from __future__ import annotations

import threading
import weakref
from collections import OrderedDict

from ..backend import np

__all__ = ["DEFAULT_POOL_BYTES", "clear", "give", "pool_bytes", "set_pool_bytes", "take"]

DEFAULT_POOL_BYTES = 256 * 2**20
"""Bytes of free buffers the pool may hold (per thread) unless :func:`set_pool_bytes` says."""

_limit = DEFAULT_POOL_BYTES
_local = threading.local()


def _free() -> OrderedDict:
    """This thread's free buffers: (nbytes, dtype) -> list of 1-D arrays, oldest first."""
    if not hasattr(_local, "free"):
        _local.free, _local.held, _local.ours = (OrderedDict(), 0,
                                                   weakref.WeakValueDictionary())
    return _local.free


def take(xp, shape, dtype):
    """An uninitialised ``xp`` array of ``shape`` and ``dtype``, reusing a given-back buffer."""
    dtype = np.dtype(dtype)
    if xp is not np:
        return xp.empty(shape, dtype=dtype)
    count = 1
    for n in shape:
        count *= int(n)
    free = _free()
    key = (count * dtype.itemsize, dtype.str)
    buffers = free.get(key)
    if not buffers:
        buffer = np.empty(count, dtype=dtype)
        _local.ours[id(buffer)] = buffer  # give() takes back only what take() made
        return buffer.reshape(shape)
    buffer = buffers.pop()
    if not buffers:
        del free[key]  # no empty lists: the oldest entry always holds a buffer to drop
    _local.held -= buffer.nbytes
    return buffer.reshape(shape)


def give(array) -> None:
    """Give ``array``'s whole buffer back to the pool; nothing may use it, or any view of
    it, afterwards. Anything :func:`take` did not make (a caller's array, a CuPy array) is
    ignored, so a mistake here cannot hand a caller's memory to the pool."""
    if not isinstance(array, np.ndarray):
        return
    while isinstance(array.base, np.ndarray):
        array = array.base
    free = _free()
    if _local.ours.get(id(array)) is not array or _limit < array.nbytes:
        return
    key = (array.nbytes, array.dtype.str)
    free.setdefault(key, []).append(array)
    free.move_to_end(key)
    _local.held += array.nbytes
    while _local.held > _limit:  # drop the least recently given
        oldest = next(iter(free))
        dropped = free[oldest].pop(0)
        _local.held -= dropped.nbytes
        if not free[oldest]:
            del free[oldest]


def clear() -> None:
    """Drop every free buffer of this thread (their memory returns to the system)."""
    _free().clear()
    _local.held = 0


def pool_bytes() -> int:
    """Bytes of free buffers the pool holds now, in this thread."""
    _free()
    return _local.held


def set_pool_bytes(nbytes: int) -> int:
    """Let the pool hold at most ``nbytes`` of free buffers (0: no pool); returns the old
    limit. Buffers over the new limit are dropped at the next :func:`give`."""
    global _limit
    if int(nbytes) < 0:
        raise ValueError(f"set_pool_bytes: nbytes must be >= 0, got {nbytes!r}")
    previous, _limit = _limit, int(nbytes)
    if _limit == 0:
        clear()
    return previous
