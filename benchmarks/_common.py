"""What the benchmark scripts share: environment, command line, machine report, timing,
memory, and the markdown report.

A benchmark script starts like this, before NumPy, PyTorch or minifcn are imported::

    import _common

    _common.quiet_thread_spinning()

Why: OpenBLAS (NumPy) and PyTorch's OpenMP pool keep their threads spinning for a while
after each call. Timed in turns in one process on two cores, each library's spinning
threads steal the cores from the other (measured: PyTorch looked 2-5x slower than it is).
Both libraries read the settings that shorten the spinning once, when they load.

Timing is interleaved: minifcn and PyTorch run in turns, ABBA, after a warm-up, and the
tables report medians. Peak memory is measured two ways (see :func:`traced_peak` and
:func:`rss_peak_growth`).
"""

from __future__ import annotations

import argparse
import ctypes
import datetime
import gc
import os
import platform
import shlex
import statistics
import subprocess
import sys
import time
import tracemalloc
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

SPIN_SETTINGS = {"OPENBLAS_THREAD_TIMEOUT": "4", "GOMP_SPINCOUNT": "10000"}
TORCH_HINT = "pip install torch==2.13.0"
REPO = Path(__file__).resolve().parent.parent
RESULTS_DIR = REPO / "benchmarks" / "results"
MIB = 2**20
_spinning_quieted = False


def quiet_thread_spinning() -> None:
    """Shorten the idle spinning of OpenBLAS and OpenMP threads (see the module docstring).

    ``setdefault``: a value already in the environment wins. The first call refuses to run
    once NumPy or PyTorch is loaded, since they would not see the settings; later calls (a
    script importing another's helpers) have nothing left to do.
    """
    global _spinning_quieted
    if _spinning_quieted:
        return
    loaded = [name for name in ("numpy", "torch", "minifcn") if name in sys.modules]
    if loaded:
        raise RuntimeError(f"quiet_thread_spinning() must run before importing {loaded}")
    for name, value in SPIN_SETTINGS.items():
        os.environ.setdefault(name, value)
    _spinning_quieted = True


def hygiene_note() -> str:
    settings = ", ".join(f"{name}={os.environ.get(name, 'unset')}" for name in SPIN_SETTINGS)
    return (f"Thread hygiene: {settings} set before NumPy and PyTorch were imported, so idle "
            f"OpenBLAS/OpenMP threads stop spinning and do not steal the cores from the other "
            f"library between interleaved runs.")


# --- command line ------------------------------------------------------------------------

def usable_cores() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        return os.cpu_count() or 1


def argument_parser(description: str, repeats: int, quick_repeats: int
                    ) -> argparse.ArgumentParser:
    """The options every script takes; scripts add their own. Read it with
    :func:`parse_arguments`, which fills in the repeats --quick implies."""
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("--repeats", type=int, default=None,
                        help=f"timed runs per contender (default {repeats}, {quick_repeats} "
                             f"with --quick; medians reported)")
    parser.add_argument("--warmup", type=int, default=None,
                        help="untimed runs of each contender before timing (default 2, 1 "
                             "with --quick)")
    parser.add_argument("--quick", action="store_true",
                        help="fewer repeats and smaller problems: a short run")
    parser.set_defaults(full_repeats=repeats, quick_repeats=quick_repeats)
    parser.add_argument("--device", choices=("cpu", "gpu"), default="cpu",
                        help="cpu: NumPy beside PyTorch CPU; gpu: CuPy beside PyTorch CUDA")
    parser.add_argument("--threads", type=int, default=usable_cores(),
                        help="threads of PyTorch, of NumPy's OpenBLAS and of minifcn's "
                             "copies (default: the cores this process may use; "
                             "OPENBLAS_NUM_THREADS, if set, wins for OpenBLAS)")
    parser.add_argument("--out", type=Path, default=RESULTS_DIR,
                        help=f"folder for the markdown table (default {RESULTS_DIR})")
    return parser


def parse_arguments(parser: argparse.ArgumentParser, argv=None) -> argparse.Namespace:
    args = parser.parse_args(argv)
    if args.repeats is None:
        args.repeats = args.quick_repeats if args.quick else args.full_repeats
    if args.warmup is None:
        args.warmup = 1 if args.quick else 2
    if args.repeats < 1 or args.warmup < 0:
        parser.error("--repeats must be >= 1 and --warmup >= 0")
    return args


@dataclass
class Platform:
    """Where both contenders run: ``xp`` (NumPy or CuPy) for minifcn, ``torch_device`` for
    PyTorch, and ``sync`` to wait for both (a no-op on the CPU)."""

    device: str
    xp: object
    torch: object
    torch_device: str

    def sync(self) -> None:
        if self.device == "gpu":
            self.xp.cuda.get_current_stream().synchronize()
            self.torch.cuda.synchronize()

    def asarray(self, host):
        """A host (NumPy) array on minifcn's device."""
        from minifcn import backend
        return backend.to_device(host, self.device)

    def tensor(self, host, requires_grad: bool = False):
        """A host (NumPy) array as a PyTorch tensor on PyTorch's device (a copy)."""
        tensor = self.torch.from_numpy(host.copy()).to(self.torch_device)
        return tensor.requires_grad_(requires_grad)


def fail(message: str) -> None:
    print(f"error: {message}", file=sys.stderr)
    raise SystemExit(2)


_blas_limit = None  # kept alive: threadpoolctl's limit lasts as long as this object


def _limit_blas_threads(threads: int) -> None:
    """Give NumPy's OpenBLAS the same thread count as PyTorch (``--threads``), so that both
    contenders use the same cores. OPENBLAS_NUM_THREADS, when set, is the user's choice
    and wins; without threadpoolctl the machine report says the counts differ."""
    global _blas_limit
    if os.environ.get("OPENBLAS_NUM_THREADS"):
        return
    try:
        from threadpoolctl import threadpool_limits
    except ImportError:
        return
    _blas_limit = threadpool_limits(limits=threads, user_api="blas")


def setup(args: argparse.Namespace) -> Platform:
    """Check the device, import PyTorch, set its threads; exit non-zero with a clear message
    when the GPU or PyTorch is missing."""
    import minifcn
    from minifcn import backend
    try:
        xp = backend.array_module(args.device)
    except backend.DeviceUnavailableError as error:
        fail(f"--device {args.device}: {error}")
    try:
        import torch
    except ImportError as error:
        fail(f"these benchmarks compare with PyTorch, which is not importable ({error}); "
             f"install it with: {TORCH_HINT}")
    torch.set_num_threads(args.threads)
    _limit_blas_threads(args.threads)
    minifcn.set_num_threads(args.threads)  # minifcn's own copy threads, as PyTorch's
    torch_device = "cpu"
    if args.device == "gpu":
        if not torch.cuda.is_available():
            fail("--device gpu: PyTorch sees no CUDA device; install a CUDA build of PyTorch")
        torch_device = "cuda"
    return Platform(args.device, xp, torch, torch_device)


# --- machine report ----------------------------------------------------------------------

def _cpu_model() -> str:
    try:
        with open("/proc/cpuinfo") as cpuinfo:
            for line in cpuinfo:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def _blas() -> str:
    import numpy
    try:
        blas = numpy.show_config(mode="dicts")["Build Dependencies"]["blas"]
        text = f"{blas['name']} {blas['version']}"
        config = " ".join(blas.get("openblas configuration", "").split())
        text += f" ({config})" if config else ""
    except Exception:  # the layout of show_config's dict is not a stable API
        text = "unknown (numpy.show_config)"
    try:
        from threadpoolctl import threadpool_info
        pools = [f"{p['internal_api']} {p.get('architecture', '')} {p['num_threads']} threads"
                 for p in threadpool_info()]
        text += "; threadpoolctl: " + ", ".join(pools)
    except ImportError:
        pass
    return text


def _git(*command: str) -> str:
    return subprocess.run(["git", "-C", str(REPO), *command], capture_output=True, text=True,
                          timeout=10, check=True).stdout.strip()


def _git_revision() -> str:
    """The commit measured, and whether the library had uncommitted changes."""
    try:
        revision = _git("rev-parse", "--short", "HEAD")
        dirty = _git("status", "--porcelain", "--", "minifcn")
    except (OSError, subprocess.SubprocessError):
        return "unknown"
    return revision + (" with uncommitted changes in minifcn/" if dirty else "")


def _blas_threads() -> tuple[int, str]:
    """OpenBLAS's thread count now, and where it came from."""
    try:
        from threadpoolctl import threadpool_info
        counts = [pool["num_threads"] for pool in threadpool_info()
                  if pool["internal_api"] == "openblas"]
        if counts:
            source = "set to --threads" if _blas_limit is not None else "OPENBLAS_NUM_THREADS"
            return counts[0], f"{source}, read by threadpoolctl"
    except ImportError:
        pass
    return (int(os.environ.get("OPENBLAS_NUM_THREADS") or usable_cores()),
            "OPENBLAS_NUM_THREADS, else the usable cores")


def _thread_line(torch) -> str:
    """Threads of each library; they should match for a fair comparison."""
    blas, source = _blas_threads()
    import minifcn
    line = (f"Threads: OpenBLAS {blas} ({source}), minifcn's copies "
            f"{minifcn.get_num_threads()} (--threads), PyTorch "
            f"{torch.get_num_threads()} (--threads; {torch.get_num_interop_threads()} inter-op)")
    if blas != torch.get_num_threads():
        line += (" -- NOT EQUAL: set OPENBLAS_NUM_THREADS to --threads (or install "
                 "threadpoolctl) for a fair comparison")
    return line


def run_lines(script: str) -> list[str]:
    """How ``script`` ran, for the reports that time minifcn alone (quality.py,
    pretraining.py): the command, when, the machine with its load average at the end, and
    the Python, NumPy and minifcn versions."""
    import numpy

    import minifcn
    load = ", ".join(f"{v:.2f}" for v in os.getloadavg())
    return [
        f"`python benchmarks/{script} {' '.join(sys.argv[1:])}`".replace(" `", "`"),
        f"({datetime.datetime.now(datetime.timezone.utc):%Y-%m-%d %H:%M} UTC)",
        "",
        f"- Machine: {platform.processor() or platform.machine()}, {os.cpu_count()} cores, "
        f"load average at the end {load}",
        f"- Python {platform.python_version()}, NumPy {numpy.__version__}, "
        f"minifcn {minifcn.__version__}",
    ]


def machine_lines(env: Platform) -> list[str]:
    """What was measured on: CPU, cores, load, library versions, BLAS and thread settings."""
    import numpy

    import minifcn
    torch = env.torch
    load = ", ".join(f"{v:.2f}" for v in os.getloadavg())
    blas_env = ", ".join(f"{k}={v}" for k, v in sorted(os.environ.items())
                         if k.startswith(("OPENBLAS_", "OMP_", "MKL_", "GOMP_")))
    lines = [
        f"CPU: {_cpu_model()}; {os.cpu_count()} logical cores, {usable_cores()} usable",
        f"Load average (1, 5, 15 min) at start: {load}",
        f"Python {platform.python_version()}, NumPy {numpy.__version__}, "
        f"PyTorch {torch.__version__}",
        _thread_line(torch),
        f"minifcn {minifcn.__version__}, git {_git_revision()}",
        f"NumPy BLAS: {_blas()}",
        f"Environment: {blas_env or 'no BLAS/OpenMP variables set'}",
        f"Device: {env.device} (minifcn on {env.xp.__name__}, PyTorch on {env.torch_device})",
    ]
    if env.device == "gpu":
        lines.append(f"GPU: {torch.cuda.get_device_name()}")
    return lines


# --- timing ------------------------------------------------------------------------------

def interleaved(contenders: dict[str, Callable[[], object]], repeats: int, warmup: int,
                sync: Callable[[], None]) -> dict[str, list[float]]:
    """Seconds per call of each contender, taking turns (ABBA ...) so that slow drifts of
    the machine (other processes, clock changes) hit all of them alike."""
    for _ in range(warmup):
        for run in contenders.values():
            run()
    sync()
    gc.collect()
    names = list(contenders)
    times: dict[str, list[float]] = {name: [] for name in names}
    for repeat in range(repeats):
        for name in names if repeat % 2 == 0 else reversed(names):
            start = time.perf_counter()
            contenders[name]()
            sync()
            times[name].append(time.perf_counter() - start)
    return times


def median_ms(seconds: list[float]) -> float:
    return 1e3 * statistics.median(seconds)


def fastest_ms(seconds: list[float]) -> float:
    """The fastest run, in ms: what the code does when the machine leaves it alone (on a
    shared VM the median also carries the other jobs' noise)."""
    return 1e3 * min(seconds)


# --- memory ------------------------------------------------------------------------------

def traced_peak(run: Callable[[], object]) -> int:
    """Bytes above the starting point at the peak of ``run()``, counting every NumPy array
    (NumPy reports its buffers to tracemalloc) and Python object; not PyTorch's tensors."""
    gc.collect()
    tracemalloc.start()
    try:
        start = tracemalloc.get_traced_memory()[0]
        run()
        return tracemalloc.get_traced_memory()[1] - start
    finally:
        tracemalloc.stop()


def _proc_status_kib(field: str) -> int:
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    raise KeyError(field)


def _release_free_heap() -> None:
    """Return the C heap's free pages to the system (glibc only; elsewhere nothing)."""
    try:
        ctypes.CDLL(None).malloc_trim(0)
    except (OSError, AttributeError):
        pass


def rss_peak_growth(run: Callable[[], object]) -> int | None:
    """Bytes the process's resident memory rose above its level before ``run()`` at its
    peak: the same measure for any library. Linux only (None elsewhere): the kernel's
    high-water mark VmHWM, reset first by writing 5 to /proc/self/clear_refs.

    Memory freed earlier but kept by the C allocator would be reused without showing in
    the resident size, so it is handed back to the system first (glibc's ``malloc_trim``).
    """
    try:
        gc.collect()
        _release_free_heap()
        with open("/proc/self/clear_refs", "w") as clear_refs:
            clear_refs.write("5")
        start = _proc_status_kib("VmRSS")
        run()
        return 1024 * max(0, _proc_status_kib("VmHWM") - start)
    except OSError:
        return None


MEMORY_HEADERS = ["minifcn traced MiB", "minifcn RSS MiB", "torch RSS MiB"]
MEMORY_NOTE = ("Memory, in MiB, over one more untimed call of each: 'traced' is the peak of "
               "NumPy's allocations above the starting point (tracemalloc; minifcn only, "
               "PyTorch's tensors are invisible to it); 'RSS' is the peak growth of the "
               "process's resident memory (Linux VmHWM, reset through /proc/self/clear_refs), "
               "the same measure for both libraries (free C-heap pages are returned to the "
               "system first, so that reused memory counts). n/a on the GPU.")


def verdict(ratio: float, target: float | None) -> str:
    """A table cell: whether a ratio minifcn / PyTorch meets its target (empty: no target)."""
    if target is None:
        return ""
    return f"<= {target}x: {'met' if ratio <= target else 'MISSED'}"


def format_ratio(ratio: float) -> str:
    """Three significant digits: a fixed two decimals would print a real 0.004 as 0.00."""
    return f"{ratio:.3g}"


def mib(nbytes: int | None) -> str:
    """Bytes as MiB for a table: whole MiB, with one decimal below 10."""
    if nbytes is None:
        return "n/a"
    return f"{nbytes / MIB:.1f}" if nbytes < 10 * MIB else f"{nbytes / MIB:,.0f}"


# --- timing and memory together ---------------------------------------------------------

@dataclass
class Measurement:
    """Median milliseconds of each contender and, on the CPU, peak memory in bytes."""

    ours_ms: float
    torch_ms: float
    traced: int | None = None
    rss_ours: int | None = None
    rss_torch: int | None = None

    @property
    def ratio(self) -> float:
        return self.ours_ms / self.torch_ms

    def memory_cells(self) -> list[str]:
        return [mib(self.traced), mib(self.rss_ours), mib(self.rss_torch)]


def measure(runs: dict[str, Callable[[], object]], args: argparse.Namespace,
            env: Platform) -> Measurement:
    """Time ``runs["minifcn"]`` and ``runs["torch"]`` interleaved, then, on the CPU, measure
    one more untimed call of each for peak memory (see :data:`MEMORY_NOTE`)."""
    times = interleaved(runs, args.repeats, args.warmup, env.sync)
    result = Measurement(median_ms(times["minifcn"]), median_ms(times["torch"]))
    if env.device == "cpu":
        result.traced = traced_peak(runs["minifcn"])
        result.rss_ours = rss_peak_growth(runs["minifcn"])
        result.rss_torch = rss_peak_growth(runs["torch"])
    return result


# --- report ------------------------------------------------------------------------------

def markdown_table(headers: list[str], rows: list[list], text_columns: int = 1) -> str:
    """A markdown table; the first ``text_columns`` columns left-aligned, numbers right."""
    lines = ["| " + " | ".join(headers) + " |",
             "|" + "|".join("---" if k < text_columns else "---:"
                            for k in range(len(headers))) + "|"]
    lines += ["| " + " | ".join(str(cell) for cell in row) + " |" for row in rows]
    return "\n".join(lines)


class Report:
    """Markdown printed as it grows and saved at the end to ``<out>/<name>.md``."""

    def __init__(self, title: str, env: Platform, args: argparse.Namespace):
        self.parts: list[str] = []
        command = shlex.join(["python", f"benchmarks/{Path(sys.argv[0]).name}", *sys.argv[1:]])
        when = datetime.datetime.now().astimezone().strftime("%Y-%m-%d %H:%M %Z")
        self.add(f"# {title}\n\n`{command}` ({when}; medians of {args.repeats} interleaved "
                 f"runs after {args.warmup} warm-up runs)")
        self.add("\n".join(f"- {line}" for line in machine_lines(env)))
        self.add(hygiene_note())

    def add(self, text: str) -> None:
        self.parts.append(text)
        print(text + "\n", flush=True)

    def table(self, title: str, headers: list[str], rows: list[list], note: str = "",
              text_columns: int = 1) -> None:
        table = markdown_table(headers, rows, text_columns)
        self.add(f"## {title}\n\n{table}" + (f"\n\n{note}" if note else ""))

    def save(self, out: Path, name: str) -> Path:
        out.mkdir(parents=True, exist_ok=True)
        path = out / f"{name}.md"
        path.write_text("\n\n".join(self.parts) + "\n")
        print(f"[written] {path}")
        return path
