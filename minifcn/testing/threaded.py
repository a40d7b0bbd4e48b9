"""Ranks as threads of one process: data-parallel code tested without MPI.

:func:`run_ranks` runs ``fn(group)`` on N threads at once, each with a
:class:`ThreadedProcessGroup` that does what an MPI process group does (all-reduce,
broadcast, all-gather, barrier) through memory the threads share. Anything that takes a
``process_group`` (``DistributedDataParallel``, ``SyncBatchNorm``, ``global_mean_loss``)
then runs as it would on N ranks, in one process, in a test or a notebook::

    from minifcn.testing.threaded import run_ranks

    def step(group):                      # runs once per rank, at the same time
        shard = x[even_slices(8, group.size)[group.rank]]
        bn = nn.SyncBatchNorm(16, process_group=group)
        return bn(shard)

    y0, y1 = run_ranks(2, step)           # each rank's result, in rank order

Build what the ranks start from (models, with their random weights) before
``run_ranks``, not inside ``fn``: the threads share one process, so they share the seed
source that ``minifcn.manual_seed`` resets, and building in each thread would interleave
their draws.

Every rank computes each reduction in rank order, so every rank gets the same bits, as
MPI's all-reduce gives. Collectives run as they are called (``async_op=True`` returns work
already done): nothing overlaps, which is all a test of the arithmetic needs. (PyTorch's
own tests run ranks as threads the same way.)
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from functools import reduce

from ..backend import get_array_module, is_array
from ..distributed import _REDUCE_OPS, ReduceOp, Work, _check_buffer

__all__ = ["ThreadedProcessGroup", "run_ranks"]

_COMBINE = {ReduceOp.SUM: lambda a, b: a + b, ReduceOp.AVG: lambda a, b: a + b,
            ReduceOp.PRODUCT: lambda a, b: a * b,
            ReduceOp.MIN: lambda a, b: get_array_module(a).minimum(a, b),
            ReduceOp.MAX: lambda a, b: get_array_module(a).maximum(a, b)}


class _SharedWorld:
    """What the threads of one run share: a barrier and one slot per rank."""

    def __init__(self, size: int):
        self.size = size
        self.barrier = threading.Barrier(size)
        self.slots: list = [None] * size

    def exchange(self, rank: int, value) -> list:
        """Every rank's ``value``, in rank order, once every rank has given its own."""
        self.slots[rank] = value
        self.barrier.wait()
        values = list(self.slots)
        self.barrier.wait()  # nobody writes the slots again before everyone has read them
        return values


class ThreadedProcessGroup:
    """Rank ``rank`` of ``size`` threads: the collectives of
    :class:`minifcn.distributed.ProcessGroup`, through shared memory."""

    def __init__(self, world: _SharedWorld, rank: int):
        self._world, self.rank, self.size = world, rank, world.size

    def __repr__(self) -> str:
        return f"ThreadedProcessGroup(rank={self.rank}, size={self.size})"

    def all_reduce(self, array, op: str = ReduceOp.SUM, async_op: bool = False):
        _check_buffer("all_reduce", array)
        op = str(op).lower()
        if op not in _REDUCE_OPS:
            raise ValueError(f"all_reduce: op must be one of {', '.join(_REDUCE_OPS)}, got "
                             f"{op!r}")
        values = self._world.exchange(self.rank, array.copy())
        result = reduce(_COMBINE[op], values)  # rank order on every rank: the same bits
        array[...] = result / self.size if op == ReduceOp.AVG else result
        return Work() if async_op else None

    def broadcast(self, array, src: int = 0, async_op: bool = False):
        _check_buffer("broadcast", array)
        values = self._world.exchange(self.rank, array.copy() if self.rank == src else None)
        array[...] = values[src]
        return Work() if async_op else None

    def all_gather_into_tensor(self, output, input, async_op: bool = False):
        _check_buffer("all_gather_into_tensor", output)
        if not is_array(input):
            raise TypeError(f"all_gather_into_tensor: expected input to be an array, got "
                            f"{type(input).__name__}")
        values = self._world.exchange(self.rank, input.copy())
        output[...] = get_array_module(output).concatenate(values)
        return Work() if async_op else None

    def all_gather_object(self, obj) -> list:
        return self._world.exchange(self.rank, obj)

    def barrier(self) -> None:
        self._world.exchange(self.rank, None)

    def abort(self, status: int = 1) -> None:
        self._world.barrier.abort()
        raise RuntimeError(f"rank {self.rank} aborted the threaded world (status {status})")


def run_ranks(size: int, fn: Callable) -> list:
    """Run ``fn(group)`` on ``size`` threads at once, ``group`` each thread's
    :class:`ThreadedProcessGroup`; returns their results in rank order. An exception in any
    rank releases the others (their collectives raise ``threading.BrokenBarrierError``) and
    is raised here."""
    if not isinstance(size, int) or size < 1:
        raise ValueError(f"run_ranks: size must be an int >= 1, got {size!r}")
    world = _SharedWorld(size)
    results, errors = [None] * size, [None] * size

    def run(rank: int) -> None:
        try:
            results[rank] = fn(ThreadedProcessGroup(world, rank))
        except BaseException as error:  # noqa: BLE001 -- handed to the caller below
            errors[rank] = error
            world.barrier.abort()

    threads = [threading.Thread(target=run, args=(rank,), name=f"rank-{rank}")
               for rank in range(size)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    first = next((e for e in errors if e is not None
                  and not isinstance(e, threading.BrokenBarrierError)), None)
    first = first or next((e for e in errors if e is not None), None)
    if first is not None:
        raise first
    return results
