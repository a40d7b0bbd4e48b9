"""Running a command as N ranks: ``minifcn train --workers N``, and what a rank does when
something goes wrong.

Two ways to start a data-parallel run, one code path for both:

- ``mpiexec -n N minifcn train ...`` (or ``srun`` on a cluster): the launcher starts N copies
  of the command; each finds its rank in the environment the launcher gives it
  (:func:`minifcn.distributed.launched_world_size`).
- ``minifcn train --workers N``: this module starts ``mpiexec -n N`` itself, with the
  ``mpiexec`` that the MPICH wheel installed beside Python, and the same arguments. It passes
  the ranks' output through and turns MPI's multi-line report of a dead rank into one line.

In each rank, :func:`run_rank` runs the command. Faults are the danger of collectives: a
rank that stops while the others wait for it in an all-reduce leaves them waiting forever
(ChainerMN's FAQ documents exactly this). So any error in any rank ends every rank at once
(``MPI_Abort``), after one line that names the rank and the cause; a rank that dies
outright (killed, out of memory, a segfault) is noticed by ``mpiexec``, which ends the
others. Checkpoints are written atomically by rank 0 alone, so an abort never leaves half
of one.
"""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
import traceback
from collections.abc import Callable

from . import backend, distributed

__all__ = ["WORKERS_VARIABLE", "RanksDidNotStart", "available_cores", "default_workers",
           "error_line", "find_mpiexec", "pin_blas_threads", "resolve_workers", "run_rank",
           "run_workers"]

WORKERS_VARIABLE = "MINIFCN_WORKERS"
"""The default of ``--workers`` when set (``1``, ``4``, ``auto``); else ``auto``."""

RUN_DIR_VARIABLE = "MINIFCN_RUN_DIR"
"""Set by :func:`run_workers` for its ranks: a folder where each rank notes its process id
(and any error), so that a rank that dies can be named. A temporary folder unless the
variable is set already."""

# How long a rank other than 0 waits before it reports an error and ends the run: when
# every rank fails alike (a bad option, a missing file), rank 0 reports it first and alone.
REPORT_DELAY_SECONDS = 0.5
# How long a rank waits between writing its line and MPI_Abort: mpiexec forwards a rank's
# stderr through a pipe it reads when it gets to it, and an abort that comes first can end
# the run with the line still in the pipe (the fault test saw no line once, in a full CI run).
FORWARD_SECONDS = 0.2


def available_cores() -> int:
    """The cores this process may run on (its CPU affinity where the system tells it)."""
    if hasattr(os, "sched_getaffinity"):
        return len(os.sched_getaffinity(0))
    return os.cpu_count() or 1


class RanksDidNotStart(distributed.DistributedUnavailableError):
    """mpiexec ended before any rank started (no MPI here, or one that cannot start)."""


def default_workers() -> str:
    """``--workers``'s default: ``$MINIFCN_WORKERS`` when set, else ``auto``."""
    return os.environ.get(WORKERS_VARIABLE, "").strip() or "auto"


def resolve_workers(value: str, batch_size: int | None = None, device: str = "cpu") -> int:
    """``--workers``: a count of ranks, or ``auto``: one per core (one per GPU with
    ``device="gpu"``), at most ``batch_size`` (every rank needs one image of each batch),
    and 1 where MPI is not installed."""
    if value == "auto":
        if not distributed.is_available() or _mpiexec_or_none() is None:
            return 1
        count = available_cores() if device == "cpu" else _gpu_count()
        return count if batch_size is None else max(1, min(count, batch_size))
    if not (value.isascii() and value.isdigit()) or int(value) < 1:  # "²" is a digit too
        raise ValueError(f"--workers must be a whole number of at least 1 or 'auto', got "
                         f"{value!r}")
    return int(value)


def _gpu_count() -> int:
    xp = backend.array_module("gpu")
    runtime = getattr(getattr(xp, "cuda", None), "runtime", None)
    return runtime.getDeviceCount() if runtime is not None else 1  # the stand-in: one


def _mpiexec_or_none() -> str | None:
    beside = os.path.join(os.path.dirname(sys.executable), "mpiexec")
    return beside if os.access(beside, os.X_OK) else shutil.which("mpiexec")


def find_mpiexec() -> str:
    """The ``mpiexec`` beside this Python (where ``pip install mpich`` puts it), else the
    one on PATH; ``DistributedUnavailableError`` naming the extra when there is none."""
    found = _mpiexec_or_none()
    if found is None or not distributed.is_available():
        raise distributed.DistributedUnavailableError(
            f"--workers starts ranks with mpiexec and mpi4py, which are not installed: "
            f"{distributed.MPI_INSTALL_HINT}")
    return found


def pin_blas_threads() -> int | None:
    """Give this rank's BLAS (OpenBLAS, MKL) cores / ranks-on-this-machine threads, so that
    N ranks share the cores instead of each starting one thread per core. Returns the
    count set, or None when the user chose one (``OPENBLAS_NUM_THREADS``,
    ``OMP_NUM_THREADS`` or ``MKL_NUM_THREADS`` set) or threadpoolctl is missing."""
    if any(os.environ.get(name) for name in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS",
                                              "MKL_NUM_THREADS")):
        return None
    try:
        from threadpoolctl import threadpool_limits
    except ImportError:
        return None
    threads = max(1, available_cores() // max(1, distributed.get_local_world_size()))
    threadpool_limits(threads, user_api="blas")
    return threads


def error_line(error: BaseException) -> str:
    """What ``minifcn COMMAND: error: ...`` says of ``error``, in one process or in a rank:
    the first line of its message (its type's name when it has none), and for a
    MemoryError that memory ran out."""
    line = str(error).splitlines()[0] if str(error) else type(error).__name__
    if isinstance(error, MemoryError):  # NumPy's "Unable to allocate 1.00 TiB for ..."
        line = f"not enough memory: {line}; try smaller sizes"
    return line


# --- in each rank ------------------------------------------------------------------------------

def run_rank(command: str, work: Callable[[], int | None], user_errors: tuple) -> int:
    """Run ``work()`` as one rank of a data-parallel run of ``minifcn COMMAND``.

    Joins the world (:func:`minifcn.distributed.init_process_group`) and pins the BLAS
    threads first. When ``work`` returns, returns its exit status. When it raises, reports
    on stderr in one line, ``minifcn COMMAND: error: rank R of N: <cause>`` (a traceback
    first when the error is not one of ``user_errors``, i.e. a bug), and ends every rank
    with ``MPI_Abort``: the others may be waiting for this one in a collective.
    """
    _note_pid(distributed.launched_rank())  # first: mpiexec has started this rank
    group = distributed.init_process_group()
    pin_blas_threads()
    try:
        return work() or 0
    except KeyboardInterrupt:
        _end_every_rank(group, f"minifcn {command}: interrupted", 130, quiet=group.rank != 0)
    except BaseException as error:  # noqa: BLE001 -- every error must end every rank
        if isinstance(error, SystemExit) and not error.code:
            raise
        known = isinstance(error, user_errors)
        cause = error_line(error)
        if not known:
            cause = f"{type(error).__name__}: {cause}"
            # A bug: its traceback is worth the lines. Rank 0 alone when all fail alike.
            if group.rank != 0:
                time.sleep(REPORT_DELAY_SECONDS)
            traceback.print_exc()
        _end_every_rank(group, f"minifcn {command}: error: rank {group.rank} of "
                               f"{group.size}: {cause}", 1)
    return 1  # not reached: MPI_Abort ends the process


def _note_pid(rank: int) -> None:
    run_dir = os.environ.get(RUN_DIR_VARIABLE)
    if run_dir and os.path.isdir(run_dir):
        with open(os.path.join(run_dir, f"rank-{rank}.pid"), "w") as handle:
            handle.write(str(os.getpid()))


def _end_every_rank(group, message: str, status: int, quiet: bool = False) -> None:
    """Report ``message`` (unless ``quiet``), then MPI_Abort: every rank ends within
    moments. MPI's own line about the abort is silenced: ``message`` says it already."""
    if group.rank != 0:
        time.sleep(REPORT_DELAY_SECONDS)  # when every rank fails alike, rank 0 reports
    if not quiet:
        print(message, file=sys.stderr, flush=True)
        run_dir = os.environ.get(RUN_DIR_VARIABLE)
        if run_dir and os.path.isdir(run_dir):
            with open(os.path.join(run_dir, f"rank-{group.rank}.error"), "w") as handle:
                handle.write(message)
    sys.stdout.flush()
    if not quiet:
        time.sleep(FORWARD_SECONDS)
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, 1)
    os.dup2(devnull, 2)
    group.abort(status)


# --- the launcher: minifcn COMMAND --workers N --------------------------------------------------

# mpiexec's (Hydra's) report of a rank that died: a box of '=' lines, then three lines.
_HYDRA_LINES = re.compile(r"^(={20,}|=   .*|YOUR APPLICATION TERMINATED WITH THE EXIT STRING: .*|"
                          r"This typically refers to a problem with your application\.|"
                          r"Please see the FAQ page for debugging suggestions)\s*$")
_HYDRA_PID = re.compile(r"^=\s+PID (\d+) RUNNING AT")
_HYDRA_CAUSE = re.compile(r"^YOUR APPLICATION TERMINATED WITH THE EXIT STRING: (.*?)\s*$")


class _Passthrough:
    """Copies one output stream of mpiexec to ours, piece by piece (a progress bar redraws
    with carriage returns, not newlines), holding back Hydra's report of a dead rank and
    keeping what it says."""

    def __init__(self, source, target):
        self.source, self.target = source, target
        self.dead_pid, self.cause = None, None
        self.thread = threading.Thread(target=self._copy, daemon=True)
        self.thread.start()

    def _copy(self) -> None:
        pending, blank = b"", False
        while True:
            chunk = os.read(self.source.fileno(), 4096)
            if not chunk:
                break
            pending += chunk
            pieces = re.split(rb"(?<=[\r\n])", pending)
            pending = pieces.pop()  # an unfinished piece waits for its end
            for piece in pieces:
                text = piece.decode(errors="replace")
                if _HYDRA_LINES.match(text.rstrip("\r\n")) and text.strip():
                    pid, cause = _HYDRA_PID.match(text), _HYDRA_CAUSE.match(text)
                    self.dead_pid = int(pid.group(1)) if pid else self.dead_pid
                    self.cause = cause.group(1) if cause else self.cause
                    blank = False  # the empty line Hydra prints before its box
                    continue
                if blank:
                    self.target.write("\n")
                blank = text == "\n"
                if not blank:
                    self.target.write(text)
                    self.target.flush()
        if pending:
            self.target.write(pending.decode(errors="replace"))
        if blank:
            self.target.write("\n")
        self.target.flush()


def run_workers(command: str, argv: list[str], workers: int) -> int:
    """Run ``minifcn <argv>`` as ``workers`` ranks on this machine under ``mpiexec`` and
    return its exit status. Each rank runs the same arguments and finds its rank in the
    environment mpiexec gives it. A rank that dies without reporting (killed, a segfault)
    is named in one line: which rank, which process, what ended it."""
    mpiexec = find_mpiexec()
    given = os.environ.get(RUN_DIR_VARIABLE)  # a caller (a test) may choose the folder
    with (contextlib.nullcontext(given) if given else
          tempfile.TemporaryDirectory(prefix="minifcn-ranks-")) as run_dir:
        os.makedirs(run_dir, exist_ok=True)
        process = subprocess.Popen(
            [mpiexec, "-n", str(workers), sys.executable, "-m", "minifcn", *argv],
            env={**os.environ, RUN_DIR_VARIABLE: run_dir},
            stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        streams = [_Passthrough(process.stdout, sys.stdout),
                   _Passthrough(process.stderr, sys.stderr)]
        try:
            status = process.wait()
        except KeyboardInterrupt:
            process.send_signal(signal.SIGINT)  # mpiexec passes it on to every rank
            try:
                process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                process.kill()
            status = 130
        for stream in streams:
            stream.thread.join(timeout=5)
        process.stdout.close()
        process.stderr.close()
        if status not in (0, 130) and not any(name.endswith(".pid")
                                              for name in os.listdir(run_dir)):
            raise RanksDidNotStart(f"mpiexec could not start {workers} ranks (exit status "
                                   f"{status})")
        if status not in (0, 130) and not _reported(run_dir):
            print(_death_line(command, run_dir, workers, status, streams), file=sys.stderr,
                  flush=True)
        return 1 if status not in (0, 130) else status


def _reported(run_dir: str) -> bool:
    return any(name.endswith(".error") for name in os.listdir(run_dir))


def _death_line(command: str, run_dir: str, workers: int, status: int, streams) -> str:
    """One line for a rank that ended without a word: its rank (from the process ids the
    ranks noted), its process id and the signal or exit code mpiexec reported."""
    pid = next((s.dead_pid for s in streams if s.dead_pid is not None), None)
    cause = next((s.cause for s in streams if s.cause), None) or f"exit status {status}"
    rank = None
    for name in os.listdir(run_dir):
        if name.endswith(".pid"):
            with open(os.path.join(run_dir, name)) as handle:
                if handle.read().strip() == str(pid):
                    rank = int(name[len("rank-"):-len(".pid")])
    who = (f"rank {rank} of {workers} (process {pid})" if rank is not None
           else f"a rank (process {pid})" if pid is not None else "a rank")
    return (f"minifcn {command}: error: {who} ended: {cause}; mpiexec stopped the other "
            f"ranks")
