"""Several processes that train one model: PyTorch's ``torch.distributed`` names, on MPI.

Data-parallel training runs one copy of the model in each of N processes (*ranks*). Every
rank takes its share of each batch, and the ranks add up what they computed with
*collectives*: calls that every rank makes together, in the same order.

    from minifcn import distributed as dist

    dist.init_process_group()        # the world from MPI (mpiexec -n N ...), else a world of 1
    dist.get_rank(), dist.get_world_size()
    dist.all_reduce(grads)           # in place: every rank ends with the sum over ranks
    dist.broadcast(weights, src=0)   # in place: every rank ends with rank 0's values
    dist.barrier()
    dist.destroy_process_group()

Why MPI: it is what clusters already run (``mpiexec``, Slurm's ``srun``), from two cores to
thousands of machines, and ``pip install mpi4py mpich`` brings it with no compiler. mpi4py's
upper-case methods (``Allreduce``, ``Iallreduce``, ``Bcast``) hand an array's memory to MPI
directly; nothing is pickled.

Where the arrays live decides how they travel:

- NumPy arrays go straight to MPI.
- CuPy arrays (one GPU per rank) go through NCCL, NVIDIA's GPU collectives, when CuPy has it;
  else straight to MPI when ``MINIFCN_CUDA_AWARE_MPI=1`` says that the MPI library reads GPU
  memory; else they are *staged*: copied to the host, reduced there, copied back. The staged
  path is the one the strict CuPy stand-in exercises in the tests.

Every collective also has an ``async_op=True`` form that returns a :class:`Work` at once:
the reduction runs while the caller goes on, and ``work.wait()`` finishes it. That is what
lets :class:`~minifcn.nn.parallel.DistributedDataParallel` send gradients while the rest of
the backward pass is still running.
"""

from __future__ import annotations

import os
from collections.abc import Callable

from . import backend
from .backend import is_array, np

__all__ = ["MPI_INSTALL_HINT", "BatchShardGenerator", "DistributedUnavailableError",
           "ProcessGroup", "ReduceOp",
           "Work", "all_gather_into_tensor", "all_reduce", "barrier", "broadcast",
           "destroy_process_group", "get_local_rank", "get_local_world_size", "get_rank",
           "get_world_size", "init_process_group", "is_available", "is_initialized",
           "launched_rank", "launched_world_size"]

MPI_INSTALL_HINT = 'pip install "minifcn[mpi]" (mpi4py and the MPICH wheel, which brings mpiexec)'
"""What to install for MPI, as the messages about a missing mpi4py say."""


class DistributedUnavailableError(RuntimeError):
    """Raised when several ranks are asked for and MPI (mpi4py) is not installed."""


class ReduceOp:
    """The reductions ``all_reduce`` knows, by PyTorch's names (``dist.ReduceOp.SUM``); the
    lower-case strings ``"sum"``, ... are accepted too."""

    SUM = "sum"
    PRODUCT = "product"
    MIN = "min"
    MAX = "max"
    AVG = "avg"  # the sum divided by the world size (floating arrays)


_REDUCE_OPS = (ReduceOp.SUM, ReduceOp.PRODUCT, ReduceOp.MIN, ReduceOp.MAX, ReduceOp.AVG)


# --- the world a launcher started -------------------------------------------------------------

# What MPI launchers put in each rank's environment: MPICH's and Intel MPI's Hydra (PMI_*),
# Open MPI (OMPI_COMM_WORLD_*), PMIx launchers. Read without importing MPI, so that a plain
# ``minifcn train`` never pays for starting it.
_SIZE_VARIABLES = ("PMI_SIZE", "OMPI_COMM_WORLD_SIZE", "PMIX_SIZE")
_RANK_VARIABLES = ("PMI_RANK", "OMPI_COMM_WORLD_RANK", "PMIX_RANK")
_LOCAL_SIZE_VARIABLES = ("MPI_LOCALNRANKS", "OMPI_COMM_WORLD_LOCAL_SIZE")
_LOCAL_RANK_VARIABLES = ("MPI_LOCALRANKID", "OMPI_COMM_WORLD_LOCAL_RANK")


def _first_int(names, default: int) -> int:
    for name in names:
        value = os.environ.get(name, "").strip()
        if value.isdigit():
            return int(value)
    return default


def launched_world_size() -> int:
    """How many ranks an MPI launcher (``mpiexec -n N``) started this process among; 1 when
    no launcher did. Read from the environment: MPI is not started to answer."""
    return _first_int(_SIZE_VARIABLES, 1)


def launched_rank() -> int:
    """This process's rank among the ones an MPI launcher started (0 when no launcher did).
    Read from the environment, as :func:`launched_world_size`."""
    return _first_int(_RANK_VARIABLES, 0)


def get_local_world_size() -> int:
    """How many ranks run on this machine (for cores per rank, and one GPU per rank)."""
    return _first_int(_LOCAL_SIZE_VARIABLES, get_world_size() if _world is not None
                      else launched_world_size())


def get_local_rank() -> int:
    """This rank's number among the ranks on its machine (0 when alone)."""
    return _first_int(_LOCAL_RANK_VARIABLES, get_rank() if _world is not None else 0)


def is_available() -> bool:
    """True when mpi4py imports, i.e. several ranks can be run."""
    try:
        import mpi4py  # noqa: F401
    except ImportError:
        return False
    return True


def _import_mpi(why: str):
    try:
        from mpi4py import MPI
    except ImportError as error:
        raise DistributedUnavailableError(f"{why} needs MPI, which is not installed: "
                                          f"{MPI_INSTALL_HINT}") from error
    return MPI


# --- collectives ------------------------------------------------------------------------------

class Work:
    """A collective on its way (``async_op=True``). ``wait()`` returns once the result is in
    the array, on every rank; ``is_completed()`` asks without waiting (and, for MPI, lets the
    library move the message along: MPI progresses a non-blocking collective only while the
    program calls into it)."""

    def __init__(self, request=None, finish: Callable[[], None] | None = None):
        self._request = request  # an mpi4py Request, or None for work already done
        self._finish = finish  # what the result still needs once it has arrived
        self._done = False

    def is_completed(self) -> bool:
        """True once the result is in the array (it then runs what the result still
        needs, such as the division of an average); never waits."""
        if not self._done and (self._request is None or self._request.Test()):
            self._complete()
        return self._done

    def wait(self) -> None:
        """Return once the result is in the array."""
        if not self._done:
            if self._request is not None:
                self._request.Wait()
            self._complete()

    def _complete(self) -> None:
        self._done = True
        if self._finish is not None:
            self._finish()


def _check_buffer(where: str, array) -> None:
    """Collectives write into the caller's array: it must be one contiguous block."""
    if not is_array(array):
        raise TypeError(f"{where}: expected an array (NumPy or CuPy), got "
                        f"{type(array).__name__}")
    if not array.flags.c_contiguous:
        raise ValueError(f"{where}: expected a C-contiguous array (MPI sends one block of "
                         f"memory), got one of shape {tuple(array.shape)} with strides "
                         f"{tuple(array.strides)}; pass a copy (xp.ascontiguousarray)")
    if isinstance(array, np.ndarray) and not array.flags.writeable:
        raise ValueError(f"{where}: the array is read-only, and the result is written into "
                         f"it")


class ProcessGroup:
    """The ranks that take part in collectives, and how arrays travel between them.

    ``comm`` is an mpi4py communicator, or None for a world of one process (then every
    collective leaves the arrays as they are). Usually made by :func:`init_process_group`;
    a test can make one over ``MPI.COMM_SELF``.
    """

    def __init__(self, comm=None):
        self.comm = comm
        self.rank = 0 if comm is None else comm.Get_rank()
        self.size = 1 if comm is None else comm.Get_size()
        self._nccl = None  # made on first use by a GPU array, when CuPy has NCCL

    def __repr__(self) -> str:
        return f"ProcessGroup(rank={self.rank}, size={self.size})"

    # --- how an array travels
    def _transport(self, array) -> str:
        """``"host"`` (NumPy, or a GPU array that MPI reads directly), ``"nccl"`` or
        ``"staged"`` (a GPU array copied to the host and back)."""
        if isinstance(array, np.ndarray):
            return "host"
        if self._nccl_comm(array) is not None:
            return "nccl"
        if os.environ.get("MINIFCN_CUDA_AWARE_MPI", "") == "1" and hasattr(
                array, "__cuda_array_interface__"):
            return "host"
        return "staged"

    def _nccl_comm(self, array):
        """An NCCL communicator for real CuPy arrays when CuPy can load NCCL (else None)."""
        if self._nccl is not None:
            return self._nccl or None
        self._nccl = False
        if not hasattr(array, "__cuda_array_interface__"):
            return None  # the strict stand-in: a NumPy array in a wrapper
        nccl = backend.cuda_runtime().nccl

        if not nccl.available:
            return None
        # Rank 0 makes the communicator's id; MPI carries it to the others (a small
        # pickled object, the one place the lower-case, pickling bcast fits).
        unique_id = nccl.get_unique_id() if self.rank == 0 else None
        unique_id = self.comm.bcast(unique_id, root=0)
        self._nccl = nccl.NcclCommunicator(self.size, unique_id, self.rank)
        return self._nccl

    def _run(self, array, mpi_call, nccl_call, async_op: bool, finish=None):
        """Run one collective on ``array`` in place, by the array's transport.

        ``mpi_call(host_array) -> request`` starts it non-blocking in MPI; ``nccl_call(comm,
        array, stream)`` queues it on a CUDA stream; ``finish()`` runs once it is done."""
        if self.comm is None:  # a world of one without MPI: the array is the result
            work = Work(finish=finish)
            work.wait()
            return work if async_op else None
        transport = self._transport(array)
        if transport == "nccl":
            work = self._run_nccl(array, nccl_call, finish)
        elif transport == "host":
            work = Work(mpi_call(array), finish)
        else:
            xp = backend.get_array_module(array)
            host = backend.to_numpy(array).copy()  # a writable host copy, reduced in place

            def copy_back():
                array[...] = xp.asarray(host)
                if finish is not None:
                    finish()

            work = Work(mpi_call(host), copy_back)
        if not async_op:
            work.wait()
            return None
        return work

    def _run_nccl(self, array, nccl_call, finish) -> Work:
        """NCCL on a stream of its own: it starts after the work already queued on the
        current stream (an event), and ``wait()`` makes the current stream wait for it."""
        cuda = backend.cuda_runtime()
        current = cuda.get_current_stream()
        if not hasattr(self, "_nccl_stream"):
            self._nccl_stream = cuda.Stream(non_blocking=True)
        ready = current.record()
        self._nccl_stream.wait_event(ready)
        nccl_call(self._nccl, array, self._nccl_stream.ptr)
        done = self._nccl_stream.record()

        def join():
            current.wait_event(done)
            if finish is not None:
                finish()

        return Work(finish=join)

    # --- the collectives
    def all_reduce(self, array, op: str = ReduceOp.SUM, async_op: bool = False):
        """The module's ``all_reduce`` over this group's ranks."""
        where = "all_reduce"
        _check_buffer(where, array)
        op = str(op).lower()
        if op not in _REDUCE_OPS:
            raise ValueError(f"{where}: op must be one of {', '.join(_REDUCE_OPS)}, got {op!r}")
        if op == ReduceOp.AVG and array.dtype.kind != "f":
            raise TypeError(f"{where}: op='avg' needs a floating array, got {array.dtype}")
        average = op == ReduceOp.AVG
        size = self.size

        def finish():
            if average:
                array[...] /= size

        def mpi_call(host):
            MPI = _import_mpi(where)
            mpi_op = {"sum": MPI.SUM, "avg": MPI.SUM, "product": MPI.PROD, "min": MPI.MIN,
                      "max": MPI.MAX}[op]
            return self.comm.Iallreduce(MPI.IN_PLACE, host, op=mpi_op)

        def nccl_call(comm, device_array, stream):
            nccl = backend.cuda_runtime().nccl
            nccl_op = {"sum": nccl.NCCL_SUM, "avg": nccl.NCCL_SUM, "product": nccl.NCCL_PROD,
                       "min": nccl.NCCL_MIN, "max": nccl.NCCL_MAX}[op]
            comm.allReduce(device_array.data.ptr, device_array.data.ptr, device_array.size,
                           _nccl_dtype(device_array.dtype), nccl_op, stream)

        return self._run(array, mpi_call, nccl_call, async_op, finish)

    def broadcast(self, array, src: int = 0, async_op: bool = False):
        """The module's ``broadcast`` over this group's ranks."""
        where = "broadcast"
        _check_buffer(where, array)
        self._check_rank(where, "src", src)

        def mpi_call(host):
            return self.comm.Ibcast(host, root=src)

        def nccl_call(comm, device_array, stream):
            comm.bcast(device_array.data.ptr, device_array.size,
                       _nccl_dtype(device_array.dtype), src, stream)

        return self._run(array, mpi_call, nccl_call, async_op)

    def all_gather_into_tensor(self, output, input, async_op: bool = False):
        """The module's ``all_gather_into_tensor`` over this group's ranks."""
        where = "all_gather_into_tensor"
        _check_buffer(where, output)
        if not is_array(input):
            raise TypeError(f"{where}: expected input to be an array, got "
                            f"{type(input).__name__}")
        if tuple(output.shape) != (self.size * input.shape[0],) + tuple(input.shape[1:]) \
                or output.dtype != input.dtype:
            raise ValueError(f"{where}: expected output of shape "
                             f"{(self.size * input.shape[0],) + tuple(input.shape[1:])} and "
                             f"dtype {input.dtype} (world size {self.size} times the input's "
                             f"first axis), got {tuple(output.shape)} {output.dtype}")
        if self.comm is None:
            output[...] = input
            return Work() if async_op else None
        xp = backend.get_array_module(output)
        mine = xp.ascontiguousarray(input)

        def mpi_call(host):  # staged: the output on the host, so the input goes there too
            sent = backend.to_numpy(mine) if isinstance(host, np.ndarray) else mine
            return self.comm.Iallgather(sent, host)

        def nccl_call(comm, device_array, stream):
            comm.allGather(mine.data.ptr, device_array.data.ptr, mine.size,
                           _nccl_dtype(mine.dtype), stream)

        return self._run(output, mpi_call, nccl_call, async_op)

    def all_gather_object(self, obj) -> list:
        """Every rank's ``obj`` (any picklable value), in rank order, on every rank. Small
        control data only: it is pickled (mpi4py's lower-case ``allgather``)."""
        if self.comm is None:
            return [obj]
        return self.comm.allgather(obj)

    def barrier(self) -> None:
        """Return once every rank of this group has called it."""
        if self.comm is not None:
            self.comm.Barrier()

    def abort(self, status: int = 1) -> None:
        """End every rank now (``MPI_Abort``): for a rank that failed while the others may
        be waiting for it in a collective. In a world of one, end this process."""
        if self.comm is not None:
            self.comm.Abort(status)
        os._exit(status)

    def _check_rank(self, where: str, name: str, value) -> None:
        if not isinstance(value, int) or isinstance(value, bool) or not \
                0 <= value < self.size:
            raise ValueError(f"{where}: {name} must be a rank in [0, {self.size}), got "
                             f"{value!r}")


def _nccl_dtype(dtype):
    nccl = backend.cuda_runtime().nccl
    table = {"float16": nccl.NCCL_FLOAT16, "float32": nccl.NCCL_FLOAT32,
             "float64": nccl.NCCL_FLOAT64, "int32": nccl.NCCL_INT32,
             "int64": nccl.NCCL_INT64, "int8": nccl.NCCL_INT8, "uint8": nccl.NCCL_UINT8}
    if dtype.name not in table:
        raise TypeError(f"NCCL cannot reduce arrays of dtype {dtype}")
    return table[dtype.name]


# --- the default group: the module-level functions ----------------------------------------------

_world: ProcessGroup | None = None


def init_process_group(backend: str | None = None, *, comm=None) -> ProcessGroup:
    """Join the ranks an MPI launcher started, as ``torch.distributed.init_process_group``.

    Args:
        backend: ``None`` or ``"mpi"``: MPI for host arrays, NCCL for GPU arrays where CuPy
            has it (see the module docstring); ``"nccl"`` says the same and is accepted for
            PyTorch's spelling.
        comm: an mpi4py communicator to use instead of ``MPI.COMM_WORLD`` (a test can pass
            ``MPI.COMM_SELF`` for a real one-rank world).

    Under ``mpiexec -n N`` the world is those N ranks. Without a launcher it is a world of
    one: with mpi4py a one-rank MPI world, without it one process whose collectives do
    nothing. A launcher that started several ranks while mpi4py is missing is an error
    (``DistributedUnavailableError``): N separate runs would each think they were alone.
    """
    global _world
    if backend not in (None, "mpi", "nccl"):
        raise ValueError(f"init_process_group: backend must be None, 'mpi' or 'nccl', got "
                         f"{backend!r}")
    if _world is not None:
        raise RuntimeError("init_process_group: the process group is initialized already "
                           "(destroy_process_group() first)")
    if comm is None:
        launched = launched_world_size()
        if launched > 1 or is_available():
            MPI = _import_mpi(f"a run of {launched} ranks")
            comm = MPI.COMM_WORLD
    _world = ProcessGroup(comm)
    return _world


def is_initialized() -> bool:
    """True between ``init_process_group()`` and ``destroy_process_group()``."""
    return _world is not None


def _resolve(group: ProcessGroup | None) -> ProcessGroup:
    """``group``, else the default one (the world); ``RuntimeError`` before it exists."""
    if group is not None:
        return group
    if _world is None:
        raise RuntimeError("minifcn.distributed: call init_process_group() first (the world "
                           "of ranks is not known yet)")
    return _world


def destroy_process_group() -> None:
    """Forget the world (MPI itself is finalized when the process ends)."""
    global _world
    _world = None


def get_rank(group: ProcessGroup | None = None) -> int:
    """This process's number, 0 to world size - 1; 0 when no group is initialized."""
    group = group or _world
    return 0 if group is None else group.rank


def get_world_size(group: ProcessGroup | None = None) -> int:
    """How many ranks there are; 1 when no group is initialized."""
    group = group or _world
    return 1 if group is None else group.size


def all_reduce(array, op: str = ReduceOp.SUM, group: ProcessGroup | None = None,
               async_op: bool = False):
    """Reduce ``array`` over the ranks, in place: afterwards every rank holds the sum (or
    product, min, max, average) of every rank's ``array``. Returns a :class:`Work` with
    ``async_op=True``, else None once done."""
    return _resolve(group).all_reduce(array, op, async_op)


def broadcast(array, src: int = 0, group: ProcessGroup | None = None, async_op: bool = False):
    """Copy rank ``src``'s ``array`` into every rank's ``array``, in place."""
    return _resolve(group).broadcast(array, src, async_op)


def all_gather_into_tensor(output, input, group: ProcessGroup | None = None,
                           async_op: bool = False):
    """Every rank's ``input`` (K, ...), stacked in rank order into ``output`` (N*K, ...) on
    every rank."""
    return _resolve(group).all_gather_into_tensor(output, input, async_op)


def barrier(group: ProcessGroup | None = None) -> None:
    """Return once every rank has called it."""
    _resolve(group).barrier()


# --- random numbers that do not depend on how a batch is split --------------------------------

class BatchShardGenerator(backend.Generator):
    """A random stream for a layer that draws one value per sample (dropout) on a rank that
    holds rows ``rows`` of a global batch of ``batch`` samples.

    Each draw is made for the whole batch, from ``generator``, and this rank keeps its rows:
    every sample's mask is then the one it gets in one process on the whole batch, whatever
    the number of ranks, and the stream stays the same on every rank. The cost is drawing
    the other ranks' numbers too: for dropout after fc6 and fc7 a few thousand per step.

        layer.generator = BatchShardGenerator(layer.generator, slice(4, 8), batch=8)
    """

    def __init__(self, generator: backend.Generator, rows: slice, batch: int):
        if not isinstance(generator, backend.Generator):
            raise TypeError(f"BatchShardGenerator: expected a minifcn.backend.Generator, got "
                            f"{type(generator).__name__}")
        if not 0 <= rows.start <= rows.stop <= batch:
            raise ValueError(f"BatchShardGenerator: rows {rows.start}:{rows.stop} are not "
                             f"within a batch of {batch}")
        self.generator, self.rows, self.batch = generator, rows, int(batch)
        self.seed = generator.seed

    def _whole_batch_shape(self, shape) -> tuple:
        shape = tuple(shape)
        share = self.rows.stop - self.rows.start
        if not shape or shape[0] != share:
            raise ValueError(f"BatchShardGenerator: this rank holds rows {self.rows.start}:"
                             f"{self.rows.stop} of a batch of {self.batch} ({share} samples), "
                             f"but a draw of shape {shape} was asked for; a sharded layer "
                             f"draws one value per sample along the first axis")
        return (self.batch,) + shape[1:]

    def random(self, shape, dtype="float32", xp=np):
        return self.generator.random(self._whole_batch_shape(shape), dtype, xp)[self.rows]

    def standard_normal(self, shape, dtype="float32", xp=np):
        """This rank's rows of a whole-batch draw of normal numbers."""
        return self.generator.standard_normal(self._whole_batch_shape(shape), dtype,
                                              xp)[self.rows]

    def integers(self, low: int, high: int | None = None, size=None, xp=np):
        """This rank's rows of a whole-batch draw of integers."""
        return self.generator.integers(low, high, self._whole_batch_shape(size), xp)[self.rows]

    def permutation(self, n: int):
        raise TypeError("BatchShardGenerator draws per sample; a permutation is not per "
                        "sample (use the generator it wraps)")
