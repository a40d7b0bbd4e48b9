"""Large copies on several cores: the im2col and col2im of one layer split by channels.

Why: im2col and col2im are nothing but copies and adds, and NumPy runs each of them on one
core. It lets go of Python's GIL while it copies, though, so threads that copy disjoint
blocks of one array run at the same time, while the GEMMs around them use every core
through OpenBLAS. Measured on a quiet 2-core VM, batch 8, 3x3 kernels, one thread against
two (medians): im2col of 16 channels at 64x64 0.87 -> 0.50 ms and col2im 2.07 -> 1.08 ms;
at stride 2 on 32 channels 1.25 -> 0.72 and 2.21 -> 1.21 ms; on 3 channels (a 3.5 MB
buffer) two threads were slower, 0.14 -> 0.24 ms, hence a minimum of work per thread.

    minifcn.set_num_threads(2)                  # as torch.set_num_threads
    for_blocks(xp, C, nbytes, work)             # work(0, c1), work(c1, C) at once

Off (one thread) unless asked for, because it pays only where OpenBLAS's idle threads
sleep. By default they spin for about 0.1 s after every GEMM, which in a training step
means always, and then they hold the other cores: the copy threads wait for a core and a
step gets no faster. Measured here, FCN-8s batch 8 at two BLAS threads, median step: 57.5
ms with one copy thread, 57.8 with two; with ``OPENBLAS_THREAD_TIMEOUT=4`` in the
environment (idle threads sleep at once) 56.8 and 53.8 ms; U-Net 163.0 and 154.0 ms. So:
``OPENBLAS_THREAD_TIMEOUT=4 MINIFCN_NUM_THREADS=2 minifcn train``, or
:func:`set_num_threads` in a script started with that variable. The benchmarks do both.

Same numbers for every thread count: each element is written by exactly one thread, with
the same operations in the same order as with one thread, so results are bit-for-bit equal.

NumPy only: on CuPy (and the strict stand-in) the GPU runs the copy, so :func:`for_blocks`
calls ``work`` once, on the calling thread.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor

from ..backend import np

__all__ = ["MIN_BYTES_PER_THREAD", "even_slices", "for_blocks", "get_num_threads",
           "set_num_threads"]

MIN_BYTES_PER_THREAD = 2 * 2**20
"""Below this much data per thread (2 MiB) a copy stays on fewer threads: starting a block
on another thread costs tens of microseconds, and thin channel blocks copy slowly."""


def _default_threads() -> int:
    """``MINIFCN_NUM_THREADS`` if set to a positive int, else 1 (see the module docstring)."""
    value = os.environ.get("MINIFCN_NUM_THREADS", "").strip()
    if not value:
        return 1
    if not value.isdigit() or int(value) < 1:
        raise ValueError(f"MINIFCN_NUM_THREADS must be an int >= 1, got {value!r}")
    return int(value)


_num_threads = _default_threads()
_executor: ThreadPoolExecutor | None = None
_executor_lock = threading.Lock()


def _forget_pool() -> None:
    """In a forked child the parent's worker threads do not exist: start a new pool."""
    global _executor, _executor_lock
    _executor, _executor_lock = None, threading.Lock()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_forget_pool)


def set_num_threads(threads: int) -> int:
    """Let minifcn's copies use up to ``threads`` threads (1, the default: only the calling
    thread), as ``torch.set_num_threads``; returns the previous count. NumPy's GEMM threads
    are OpenBLAS's own (``OPENBLAS_NUM_THREADS``, or ``threadpoolctl``)."""
    global _num_threads, _executor
    if isinstance(threads, bool) or not isinstance(threads, int) or threads < 1:
        raise ValueError(f"set_num_threads: threads must be an int >= 1, got {threads!r}")
    with _executor_lock:
        previous, _num_threads = _num_threads, threads
        if _executor is not None and threads != previous:
            _executor.shutdown(wait=True)
            _executor = None
    return previous


def get_num_threads() -> int:
    """The number of threads minifcn's copies may use (see :func:`set_num_threads`)."""
    return _num_threads


def _pool() -> ThreadPoolExecutor:
    global _executor
    with _executor_lock:
        if _executor is None:
            _executor = ThreadPoolExecutor(max_workers=_num_threads - 1,
                                           thread_name_prefix="minifcn-copy")
        return _executor


def even_slices(count: int, parts: int) -> list[slice]:
    """``range(count)`` cut into ``parts`` consecutive slices whose sizes differ by at most
    one (10 into 4: 2, 3, 2, 3), so that the largest is as small as it can be."""
    bounds = [count * k // parts for k in range(parts + 1)]
    return [slice(start, stop) for start, stop in zip(bounds[:-1], bounds[1:], strict=True)]


def for_blocks(xp, count: int, nbytes: int, work: Callable[[int, int], None]) -> None:
    """Call ``work(start, stop)`` on consecutive blocks that cover ``range(count)``, the
    blocks at the same time on up to :func:`get_num_threads` threads.

    Args:
        xp: the array module of the arrays ``work`` touches; anything but NumPy runs
            ``work(0, count)`` on the calling thread.
        count: how many independent items (channels) to split.
        nbytes: how much data the whole job moves; each thread gets at least
            :data:`MIN_BYTES_PER_THREAD` of it.
        work: writes the items ``start:stop`` and nothing that another block writes.

    Returns when every block is done; an exception from any block is raised after all of
    them have finished (so no thread still writes into a buffer the caller then reuses).
    """
    threads = min(_num_threads, count, nbytes // MIN_BYTES_PER_THREAD)
    if xp is not np or threads <= 1:
        work(0, count)
        return
    first, *rest = even_slices(count, threads)
    pool = _pool()
    others = [pool.submit(work, block.start, block.stop) for block in rest]
    try:
        work(first.start, first.stop)
    finally:
        for other in others:
            other.exception()  # wait for every block before anything is raised
    for other in others:
        other.result()
