"""``minifcn exercises grade DIR``: grade a learner's folder of exercise files, for teachers.

    minifcn exercises grade submission/                       # a table of points on stdout
    minifcn exercises grade submission/ --only relu,conv2d --points points.json \\
        --json grades.json --gradescope results.json --junit junit.xml --timeout 60
    minifcn exercises grade submissions/*/ --csv gradebook.csv   # a class: a row per folder
    minifcn exercises grade --write-setup gradescope autograder/   # Gradescope's two scripts
    minifcn exercises grade --write-setup github template-repo/    # a GitHub Classroom workflow

From Python: ``grading = grade("submission")``; ``grading.score``, ``to_json(grading)``.

Each exercise runs in a child process of its own (``python -m
minifcn.exercises.grade_child``), which runs the same checks as ``minifcn exercises check``
on the learner's file, never on minifcn's code. Per exercise the child has ``--timeout``
seconds (default 60; then its whole process group is killed; on Windows, the child) and
``--memory-mb`` MiB of address space (default 2048; ``RLIMIT_AS`` on Linux; where that is
missing, on macOS and Windows, memory is not limited and the reports say so). An endless
loop, a crash, ``sys.exit`` or ``os._exit``, a segfault or a huge allocation gives that
exercise 0 points with the reason, and grading goes on with the next one. A file that hands
back minifcn's own implementation fails every check that calls it (``OwnCodeOnly`` in
framework.py). These are resource limits and a watch, not a sandbox against a hostile
submission: the code runs as your user.

Points. By default every check is worth 1 point, except checks that only measure (conv2d's
``speed``: 0), and an exercise is worth the sum of its checks. A points file (JSON, or TOML
on Python 3.11+) changes that::

    {"exercises": {
        "relu": 10,                                 # 10 for the exercise, shared by its checks
                                                    # in proportion to their default points
        "conv2d": {"forward": 4, "dx": 2},          # these checks; the others keep 1 point
        "capstone": 0}}                             # still graded and reported, worth nothing

A check earns its points when it passes; a check that fails, waits for a failed check
("skip") or meets a function still raising NotImplementedError ("todo") earns 0. A name
that is no exercise or no check of its exercise is an error. ``--write-setup gradescope``
writes the defaults as a points file to start from.

Statuses of an exercise: ``passed`` (every check passed), ``failed`` (the checks ran, or
the file did not load), ``not submitted`` (no ``NAME.py``; the capstone: no layer file at
all), ``time limit``, ``memory limit`` and ``crashed`` (a signal, an exit, or checks that
could not go on). The reason is one line: "every check passed", "2 of 5 checks did not
pass; first failure: ...", "no file relu.py", "time limit (60 s)", "memory limit (2048
MiB)", "crashed: signal SIGSEGV", "exited with status 3". The capstone runs the learner's
layers, so when one of them hit a limit or crashed earlier in the same grading, the capstone
is not run (it would do the same): it takes that status, with the reason "not run: relu
ended with time limit (60 s)".

The JSON report (``--json``), minifcn's own schema, version 1::

    {"schema": "minifcn-grade", "version": 1, "minifcn": "0.1.0",
     "folder": "submission", "score": 8, "max_score": 16, "points_file": null,
     "limits": {"timeout_seconds": 60, "memory_mb": 2048, "memory_limit_enforced": true},
     "seconds": 12.5,
     "exercises": [
       {"name": "relu", "number": 1, "title": "ReLU forward and backward",
        "file": "relu.py",               # null for the capstone (it uses the whole folder)
        "status": "time limit", "reason": "time limit (60 s)",
        "score": 0, "max_score": 4, "seconds": 60.2,
        "checks": [{"key": "forward", "title": "forward: y = max(x, 0), ...",
                    "status": "not run",  # or "pass", "fail", "skip", "todo"
                    "score": 0, "max_score": 1,
                    "detail": "time limit (60 s)",   # the failure, the note, why not run
                    "measurement": null,             # a timing, for checks that measure
                    "seconds": 0.0}, ...],
        "report": "Exercise 1: ReLU forward and backward (submission/relu.py) ..."}]}

Scores are numbers (whole ones as integers). Grading is deterministic: the checks draw
their cases derandomised and seed every input, and the child runs with PYTHONHASHSEED=0
and one BLAS thread; two runs give the same JSON except the fields ``seconds`` and
``measurement``.

``--gradescope FILE`` writes Gradescope's ``results.json``: ``score``, ``execution_time``,
``output``, and one test per exercise (``name``, ``number``, ``score``, ``max_score``,
``status`` "passed" or "failed", ``output``: the report text, ``output_format`` "text",
``visibility`` "visible"). ``--junit FILE`` writes JUnit XML: a testsuite per exercise (its
score, status and reason as properties), a testcase per check, a ``<failure>`` for every
check that did not pass. ``--classroom FILE`` writes what GitHub Classroom's autograding
reporter reads (base64 of its JSON: ``version``, ``status``, ``max_score``, ``tests`` with
``score``), for a workflow's ``$GITHUB_OUTPUT``.

A class at once: give several folders (one per learner, ``submissions/*/``) and
``--csv FILE`` writes a gradebook, a row per folder: ``submission`` (the folder's name; its
path where two names are alike), ``score``, ``max_score``, one column per exercise with its
score, and ``problems`` ("relu: time limit; conv2d: not submitted": every exercise that did
not pass, and why). The per-submission reports (``--json``, ``--gradescope``, ``--junit``,
``--classroom``) take one folder. ``--jobs N`` grades N folders at a time (one thread each,
waiting on its own child processes); keep N at most the number of cores, since the time
limit is wall-clock time.

Exit status of the command: 0 when grading ran, whatever the scores; 2 for a usage error
(an unknown exercise, a bad points file, DIR not a folder); 1 when grading cannot run here
(hypothesis missing, the child process cannot start, a report cannot be written).
"""

from __future__ import annotations

import base64
import csv
import io
import json
import math
import os
import re
import signal
import subprocess
import sys
import tempfile
import threading
import time
import xml.etree.ElementTree as ET
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from fractions import Fraction
from importlib import resources

from .. import __version__
from . import exercises as registry
from . import learner_path
from .framework import Exercise

__all__ = ["DEFAULT_MEMORY_MB", "DEFAULT_TIMEOUT", "CheckGrade", "ExerciseGrade", "Grading",
           "SetupError", "UsageError", "check_folders", "classroom_result", "default_points",
           "grade", "grade_many", "gradebook_csv", "gradebook_lines", "gradescope_results",
           "junit_xml", "read_points", "submission_names", "summary_lines", "to_json",
           "write_gradebook", "write_reports", "write_setup"]

DEFAULT_TIMEOUT = 60.0
DEFAULT_MEMORY_MB = 2048
MEASURING_CHECKS = {("conv2d", "speed")}  # they time the code: information, not a judgement
STATUSES = ("passed", "failed", "not submitted", "time limit", "memory limit", "crashed")
INCIDENTS = ("time limit", "memory limit", "crashed")
_TAIL_BYTES = 8192  # of what a child prints, kept for the report (the rest is dropped)
_PROBE_TIMEOUT = 120.0


class UsageError(ValueError):
    """The command was given something it cannot use (exit status 2)."""


class SetupError(RuntimeError):
    """Grading cannot run on this machine as set up (exit status 1)."""


# --- points ----------------------------------------------------------------------------------

def default_points(exercise: Exercise) -> dict[str, Fraction]:
    """check key -> points: 1 for every check, 0 for the checks that only measure."""
    return {check.key: Fraction(0 if (exercise.name, check.key) in MEASURING_CHECKS else 1)
            for check in exercise.checks}


def _points_value(value, where: str, source: str) -> Fraction:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise UsageError(f"--points {source}: {where} should be a number of points, got "
                         f"{json.dumps(value) if _jsonable(value) else repr(value)}")
    if not math.isfinite(value) or value < 0:
        raise UsageError(f"--points {source}: {where} should be a number >= 0, got {value}")
    return Fraction(str(value)) if isinstance(value, float) else Fraction(value)


def _jsonable(value) -> bool:
    try:
        json.dumps(value)
    except (TypeError, ValueError):
        return False
    return True


def _load_points_file(path: str):
    try:
        with open(path, "rb") as handle:
            raw = handle.read()
    except OSError as error:
        raise UsageError(f"--points {path}: cannot read it ({error.strerror or error})"
                         ) from None
    if path.lower().endswith(".toml"):
        try:
            import tomllib
        except ImportError:
            raise UsageError(f"--points {path}: reading TOML needs Python 3.11 or later; "
                             f"write the same table as JSON") from None
        try:
            return tomllib.loads(raw.decode("utf-8"))
        except (UnicodeDecodeError, tomllib.TOMLDecodeError) as error:
            raise UsageError(f"--points {path}: not valid TOML: {error}") from None
    try:
        return json.loads(raw.decode("utf-8"))
    except UnicodeDecodeError as error:
        raise UsageError(f"--points {path}: not UTF-8 text ({error.reason})") from None
    except json.JSONDecodeError as error:
        raise UsageError(f"--points {path}: not valid JSON: {error.msg} at line "
                         f"{error.lineno} column {error.colno}") from None


def read_points(source, catalogue: dict[str, Exercise] | None = None
                ) -> dict[str, dict[str, Fraction]]:
    """exercise -> check -> points for every exercise: the defaults, changed by ``source``
    (a points file's path, or the same table as a dict; None for the defaults alone).

    Raises:
        UsageError: the file cannot be read or parsed, or names an unknown exercise or
            check, or gives a value that is not a number >= 0.
    """
    catalogue = registry() if catalogue is None else catalogue
    table = {name: default_points(exercise) for name, exercise in catalogue.items()}
    if source is None:
        return table
    where = source if isinstance(source, str) else "(given table)"
    data = _load_points_file(source) if isinstance(source, str) else source
    if not isinstance(data, dict) or set(data) != {"exercises"} or \
            not isinstance(data["exercises"], dict):
        got = (f"keys {', '.join(map(repr, data))}" if isinstance(data, dict)
               else f"a {type(data).__name__}")
        raise UsageError(f"--points {where}: expected a table with one key, \"exercises\" "
                         f"(exercise -> points, or exercise -> check -> points), got {got}")
    for name, value in data["exercises"].items():
        if name not in catalogue:
            raise UsageError(f"--points {where}: no exercise called {name!r}; the exercises "
                             f"are: {', '.join(catalogue)}")
        defaults = table[name]
        if isinstance(value, dict):
            for key, points in value.items():
                if key not in defaults:
                    raise UsageError(f"--points {where}: exercise {name} has no check "
                                     f"{key!r}; its checks are: {', '.join(defaults)}")
                defaults[key] = _points_value(points, f"{name}.{key}", where)
            continue
        total = _points_value(value, f"{name} (the exercise's total, or a table of check -> "
                                     f"points)", where)
        weights = dict(defaults) if sum(defaults.values()) else {k: Fraction(1)
                                                                 for k in defaults}
        weight = sum(weights.values())
        table[name] = {key: total * w / weight for key, w in weights.items()}
    return table


# --- results ---------------------------------------------------------------------------------

@dataclass
class CheckGrade:
    key: str
    title: str
    status: str  # "pass", "fail", "skip", "todo", "not run"
    score: Fraction
    max_score: Fraction
    detail: str = ""
    measurement: str | None = None
    seconds: float = 0.0


@dataclass
class ExerciseGrade:
    name: str
    number: int
    title: str
    file: str | None
    status: str  # one of STATUSES
    reason: str
    checks: list[CheckGrade]
    report: str
    seconds: float = 0.0

    @property
    def score(self) -> Fraction:
        return sum((check.score for check in self.checks), Fraction(0))

    @property
    def max_score(self) -> Fraction:
        return sum((check.max_score for check in self.checks), Fraction(0))


@dataclass
class Grading:
    folder: str
    exercises: list[ExerciseGrade] = field(default_factory=list)
    timeout: float = DEFAULT_TIMEOUT
    memory_mb: int = DEFAULT_MEMORY_MB
    memory_limit_enforced: bool = False
    points_file: str | None = None
    seconds: float = 0.0

    @property
    def score(self) -> Fraction:
        return sum((e.score for e in self.exercises), Fraction(0))

    @property
    def max_score(self) -> Fraction:
        return sum((e.max_score for e in self.exercises), Fraction(0))


# --- running one exercise in a child process ---------------------------------------------------

class _Tail(threading.Thread):
    """Reads a child's output to the end, keeping only the last bytes (an endless print
    must fill neither memory nor disk)."""

    def __init__(self, stream):
        super().__init__(daemon=True)
        self.stream, self.data = stream, bytearray()

    def run(self) -> None:
        while True:
            chunk = self.stream.read1(65536)
            if not chunk:
                return
            self.data += chunk
            del self.data[:-_TAIL_BYTES]

    def text(self) -> str:
        return bytes(self.data).decode("utf-8", errors="replace")


def _child_env() -> dict[str, str]:
    """The child's environment: ours, made deterministic (hash seed, one BLAS thread), no
    bytecode written into the learner's folder, and this minifcn on the path."""
    env = dict(os.environ)
    here = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    if os.path.basename(here) not in ("site-packages", "dist-packages"):
        # a source checkout used without installing it: the child must import this minifcn
        env["PYTHONPATH"] = os.pathsep.join(p for p in (here, env.get("PYTHONPATH")) if p)
    env.update(PYTHONHASHSEED="0", PYTHONDONTWRITEBYTECODE="1", PYTHONIOENCODING="utf-8",
               OMP_NUM_THREADS="1", OPENBLAS_NUM_THREADS="1", MKL_NUM_THREADS="1")
    return env


def _kill_group(process: subprocess.Popen) -> None:
    """Kill the child and everything it started (its process group, on POSIX)."""
    if os.name == "posix":
        try:
            os.killpg(process.pid, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            pass
    elif process.poll() is None:
        process.kill()


@dataclass
class _Run:
    result: dict | None  # what the child wrote; None when it did not finish
    returncode: int
    timed_out: bool
    output: str  # the end of what it printed
    seconds: float


# The children running now, in any thread: grade_many kills them all when it is interrupted
# (Ctrl-C reaches only the main thread, and the children have sessions of their own).
_LIVE: set[subprocess.Popen] = set()
_LIVE_LOCK = threading.Lock()


def _run_child(arguments: list[str], timeout: float, workdir: str) -> _Run:
    """``python -m minifcn.exercises.grade_child ARGUMENTS`` in ``workdir``, in a process
    group of its own (killed whole when the time is up, and after it ends: whatever the
    learner's code started goes too). The child writes ``workdir/result.json``.

    A fresh interpreter through subprocess rather than multiprocessing's spawn: its process
    group exists before any learner's code runs (no window in which a child could start
    processes outside it), nothing of the caller (its ``__main__``, pickled arguments) is
    re-imported, and its output is read here apart from ours."""
    result_path = os.path.join(workdir, "result.json")
    command = [sys.executable, "-m", "minifcn.exercises.grade_child", *arguments]
    group = ({"start_new_session": True} if os.name == "posix"
             else {"creationflags": getattr(subprocess, "CREATE_NEW_PROCESS_GROUP", 0)})
    start = time.perf_counter()
    try:
        process = subprocess.Popen(command, cwd=workdir, env=_child_env(),
                                   stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                                   stderr=subprocess.STDOUT, **group)
    except OSError as error:
        raise SetupError(f"cannot start {sys.executable}: {error.strerror or error}") from None
    with _LIVE_LOCK:
        _LIVE.add(process)
    tail = _Tail(process.stdout)
    tail.start()
    timed_out = False
    try:
        process.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        timed_out = True
    finally:
        _kill_group(process)
        process.wait()
        with _LIVE_LOCK:
            _LIVE.discard(process)
        tail.join(timeout=5.0)
        if not tail.is_alive():
            process.stdout.close()
    seconds = time.perf_counter() - start
    result = None
    try:
        with open(result_path) as handle:
            result = json.load(handle)
    except (OSError, ValueError):
        pass
    if not isinstance(result, dict):
        result = None
    return _Run(result, process.returncode, timed_out and result is None, tail.text(),
                seconds)


def _how_it_ended(run: _Run) -> str:
    if run.returncode < 0:
        try:
            return f"crashed: signal {signal.Signals(-run.returncode).name}"
        except ValueError:
            return f"crashed: signal {-run.returncode}"
    return f"exited with status {run.returncode}"


def _probe(memory_mb: int) -> bool:
    """Start one child that loads every exercise under the memory limit, before any
    learner's code runs; True when the limit holds. A child that cannot start is a
    :class:`SetupError`, not a row of crashed exercises."""
    with tempfile.TemporaryDirectory(prefix="minifcn-grade-") as workdir:
        run = _run_child(["--probe", os.path.join(workdir, "result.json"), "--memory-mb",
                          str(memory_mb)], _PROBE_TIMEOUT, workdir)
    if run.result is None or run.result.get("outcome") != "probe":
        last = [line for line in run.output.strip().splitlines() if line.strip()]
        said = f" ({last[-1].strip()})" if last else ""
        how = (f"did not finish within {_PROBE_TIMEOUT:g} s" if run.timed_out
               else _how_it_ended(run))
        hint = (f"; with --memory-mb {memory_mb} it may lack memory even to import NumPy "
                f"and hypothesis" if memory_mb < 1024 else "")
        raise SetupError(f"the child process that runs the checks ({sys.executable} -m "
                         f"minifcn.exercises.grade_child) could not load the exercises: it "
                         f"{how}{said}{hint}")
    return bool(run.result.get("memory_limit_enforced"))


def _submitted(exercise: Exercise, folder: str) -> bool:
    if exercise.functions:
        return os.path.isfile(learner_path(exercise.name, folder))
    from .capstone import LAYER_EXERCISES

    return any(os.path.isfile(learner_path(name, folder)) for name in LAYER_EXERCISES)


def _indent(text: str, prefix: str = "  ") -> list[str]:
    return [prefix + line for line in text.splitlines()]


def _incident_report(exercise: Exercise, shown: str, reason: str, explanation: str,
                     output: str) -> str:
    import textwrap

    lines = [f"Exercise {exercise.number}: {exercise.title} ({shown})", "",
             f"  No points: {reason}.", ""]
    lines += textwrap.wrap(explanation, 88, initial_indent="  ", subsequent_indent="  ")
    # thread addresses change from run to run; a report must not
    output = re.sub(r"\b(Current thread|Thread) 0x[0-9a-fA-F]+", r"\1", output)
    printed = output.rstrip().splitlines()
    fatal = [i for i, line in enumerate(printed) if line.startswith("Fatal Python error")]
    if fatal:  # faulthandler's dump, most recent call first: its top names the line
        shown = printed[fatal[0]:fatal[0] + 12]
        lines += ["", "  Python's report of the crash (most recent call first):"]
    else:
        shown = printed[-20:]
        lines += ["", "  The last lines it printed:"] if shown else []
    return "\n".join(lines + _indent("\n".join(shown), "    "))


def _explain(status: str, reason: str, timeout: float, memory_mb: int) -> str:
    if status == "time limit":
        return (f"Your code was stopped after {timeout:g} s. A correct solution passes every "
                f"check of this exercise in a few seconds: look for a loop that never ends "
                f"(a while loop whose condition never changes?) or work that grows far "
                f"faster than its input.")
    if status == "memory limit":
        return (f"Your code asked for more memory than the {memory_mb} MiB an exercise may "
                f"use. The checks' arrays are small (kilobytes): look for a size computed "
                f"wrongly, e.g. a product of dimensions where a sum was meant.")
    if reason.startswith("crashed: signal"):
        name = reason.rsplit(" ", 1)[-1]
        extra = {"SIGSEGV": " (a segmentation fault: memory read or written where it must "
                            "not be, e.g. through ctypes or an array built on a bad buffer)",
                 "SIGKILL": " (sent by the system; often it is out of memory)"}.get(name, "")
        return (f"The Python process running your code was killed by signal {name}{extra}, "
                f"so the checks could not finish.")
    if reason.startswith("exited"):
        return (f"Your code ended the process ({reason}: sys.exit, os._exit or exit()) "
                f"before the checks finished. A layer's function must return its results, "
                f"never end the program.")
    return (f"The checks could not go on with what your code returned ({reason[9:]}). "
            f"Return what the skeleton's docstring says: arrays of the stated shapes.")


def _not_run(exercise: Exercise, points: dict[str, Fraction], detail: str) -> list[CheckGrade]:
    return [CheckGrade(check.key, check.title, "not run", Fraction(0), points[check.key],
                       detail) for check in exercise.checks]


def _from_result(exercise: Exercise, result: dict, points: dict[str, Fraction]
                 ) -> tuple[str, str, list[CheckGrade]]:
    """(status, reason, checks) of an exercise whose checks ran."""
    found = {c["key"]: c for c in result.get("checks", [])}
    load_failure = result.get("load_failure")
    checks = []
    for check in exercise.checks:
        got = found.get(check.key)
        if got is None:
            checks.append(CheckGrade(check.key, check.title, "not run", Fraction(0),
                                     points[check.key], load_failure or "not run"))
            continue
        checks.append(CheckGrade(check.key, check.title, got["status"],
                                 points[check.key] if got["status"] == "pass" else Fraction(0),
                                 points[check.key], got.get("detail") or "",
                                 got.get("measurement"), float(got.get("seconds") or 0.0)))
    if result.get("passed"):
        return "passed", "every check passed", checks
    if load_failure:
        return "failed", load_failure.splitlines()[0], checks
    failing = [c for c in checks if c.status == "fail"]
    missed = sum(c.status != "pass" for c in checks)
    if failing:
        return ("failed", f"{missed} of {len(checks)} checks did not pass; first failure: "
                          f"{failing[0].title}", checks)
    if result.get("not_implemented"):
        return "failed", result["not_implemented"].splitlines()[0], checks
    return "failed", f"{missed} of {len(checks)} checks did not pass", checks


def grade_exercise(exercise: Exercise, folder: str, points: dict[str, Fraction], *,
                   timeout: float = DEFAULT_TIMEOUT, memory_mb: int = DEFAULT_MEMORY_MB,
                   memory_limit_enforced: bool = True, shown: str | None = None
                   ) -> ExerciseGrade:
    """Grade one exercise of ``folder`` in a child process (see the module docstring)."""
    shown = folder if shown is None else shown
    file = f"{exercise.name}.py" if exercise.functions else None
    shown_path = os.path.join(shown, file) if file else shown

    def made(status, reason, checks, report, seconds=0.0):
        return ExerciseGrade(exercise.name, exercise.number, exercise.title, file, status,
                             reason, checks, report, seconds)

    if not _submitted(exercise, folder):
        reason = (f"no file {file}" if file else
                  "no layer file (relu.py, conv2d.py, ...) to build FCN-8s from")
        report = (f"Exercise {exercise.number}: {exercise.title} ({shown_path})\n\n"
                  f"  Not submitted: {reason}.")
        return made("not submitted", reason, _not_run(exercise, points, "not submitted"),
                    report)
    with tempfile.TemporaryDirectory(prefix=f"minifcn-grade-{exercise.name}-",
                                     ignore_cleanup_errors=True) as workdir:
        run = _run_child([exercise.name, os.path.abspath(folder),
                          os.path.join(workdir, "result.json"), "--memory-mb", str(memory_mb),
                          "--show-as", shown], timeout, workdir)
    outcome = (run.result or {}).get("outcome")
    if outcome == "ran":
        status, reason, checks = _from_result(exercise, run.result, points)
        return made(status, reason, checks, run.result.get("text", ""), run.seconds)
    if run.timed_out:
        status, reason = "time limit", f"time limit ({timeout:g} s)"
    elif outcome == "memory":
        status = "memory limit"
        reason = f"memory limit ({memory_mb} MiB)" if memory_limit_enforced else "out of memory"
    elif outcome == "error":
        status, reason = "crashed", f"crashed: {str(run.result.get('error')).splitlines()[0]}"
    else:
        status, reason = "crashed", _how_it_ended(run)
    folder = os.path.abspath(folder)
    printed = run.output.replace(folder + os.sep, shown + os.sep)
    report = _incident_report(exercise, shown_path, reason,
                              _explain(status, reason, timeout, memory_mb), printed)
    return made(status, reason, _not_run(exercise, points, reason), report, run.seconds)


def _after_incident(exercise: Exercise, graded: list[ExerciseGrade],
                    points: dict[str, Fraction], shown: str) -> ExerciseGrade | None:
    """The capstone's grade when one of the layers it would run (the learner's) already
    hit a limit or crashed in this grading: it would do the same again (up to --timeout
    more), so it is not run. None otherwise."""
    if exercise.functions:
        return None
    from .capstone import LAYER_EXERCISES

    for layer in graded:
        if layer.name in LAYER_EXERCISES and layer.status in INCIDENTS:
            reason = f"not run: {layer.name} ended with {layer.reason}"
            report = (f"Exercise {exercise.number}: {exercise.title} ({shown})\n\n"
                      f"  No points: {reason}.\n\n  The capstone runs your {layer.name} "
                      f"inside FCN-8s, where it would do the same; see exercise "
                      f"{layer.number}.")
            return ExerciseGrade(exercise.name, exercise.number, exercise.title, None,
                                 layer.status, reason, _not_run(exercise, points, reason),
                                 report)
    return None


def check_folders(folders: list[str]) -> None:
    """Refuse, before grading any, a DIR that is not a folder."""
    for folder in folders:
        if not os.path.isdir(folder):
            what = "a file" if os.path.exists(folder) else "no such folder"
            raise UsageError(f"DIR: expected the folder of a learner's exercise files, got "
                             f"{folder!r} ({what})")


def _select(only) -> list[Exercise]:
    catalogue = registry()
    if only is None:
        return list(catalogue.values())
    names = [name.strip() for name in (only.split(",") if isinstance(only, str) else only)]
    for name in names:
        if name not in catalogue:
            raise UsageError(f"--only: no exercise called {name!r}; the exercises are: "
                             f"{', '.join(catalogue)}")
    return [exercise for name, exercise in catalogue.items() if name in names]


def _check_limits(timeout: float, memory_mb: int) -> None:
    if not (isinstance(timeout, (int, float)) and math.isfinite(timeout) and timeout > 0):
        raise UsageError(f"--timeout: expected seconds > 0, got {timeout!r}")
    if isinstance(memory_mb, bool) or not isinstance(memory_mb, int) or memory_mb <= 0:
        raise UsageError(f"--memory-mb: expected a whole number of MiB > 0, got "
                         f"{memory_mb!r}")


def grade(folder: str, *, only=None, points=None, timeout: float = DEFAULT_TIMEOUT,
          memory_mb: int = DEFAULT_MEMORY_MB,
          on_start: Callable[[Grading], None] | None = None,
          progress: Callable[[ExerciseGrade], None] | None = None) -> Grading:
    """Grade the exercise files in ``folder``, one child process per exercise.

    Args:
        only: exercise names ("relu,conv2d" or a list); None for every exercise.
        points: a points file's path, or its table as a dict; None for the defaults.
        timeout: seconds per exercise. memory_mb: address space per exercise, in MiB.
        on_start: called with the (still empty) grading once the arguments are checked
            and the child process is known to work, before the first exercise.
        progress: called with each exercise's grade as soon as it is known.

    Raises:
        UsageError: ``folder`` is not a folder, an unknown exercise, a bad points file.
        SetupError: the child process cannot run the checks on this machine.
    """
    (grading,) = grade_many([folder], only=only, points=points, timeout=timeout,
                            memory_mb=memory_mb, on_start=on_start, progress=progress)
    return grading


def grade_many(folders: list[str], *, jobs: int = 1, only=None, points=None,
               timeout: float = DEFAULT_TIMEOUT, memory_mb: int = DEFAULT_MEMORY_MB,
               on_start: Callable[[Grading], None] | None = None,
               progress: Callable[[ExerciseGrade], None] | None = None,
               done: Callable[[Grading], None] | None = None) -> list[Grading]:
    """Grade several learners' folders (a class), ``jobs`` folders at a time; return their
    gradings in the order of ``folders``. The arguments are :func:`grade`'s.

    The options and every folder are checked, the points read and the child process
    probed once, before any grading starts. Each job is a thread that waits on its own
    child processes, so ``jobs`` up to the number of cores costs nothing in the results;
    beyond it the exercises share cores, and the time limit (wall-clock time) comes sooner
    for the same code. ``done(grading)`` is called for each folder, in the order of
    ``folders``, once it and every folder before it are graded; ``on_start`` and
    ``progress`` are for ``jobs=1``, where the rows can stream. When grading stops early
    (Ctrl-C, a set-up error), every running child is killed.
    """
    if isinstance(jobs, bool) or not isinstance(jobs, int) or jobs < 1:
        raise UsageError(f"--jobs: expected a whole number >= 1, got {jobs!r}")
    _check_limits(timeout, memory_mb)
    check_folders(folders)
    selected = _select(only)
    table = read_points(points)
    enforced = _probe(memory_mb)

    def one(folder: str) -> Grading:
        start = time.perf_counter()
        grading = Grading(folder, timeout=timeout, memory_mb=memory_mb,
                          memory_limit_enforced=enforced,
                          points_file=points if isinstance(points, str) else None)
        shown = os.path.normpath(folder)
        if on_start is not None:
            on_start(grading)
        for exercise in selected:
            graded = _after_incident(exercise, grading.exercises, table[exercise.name], shown)
            if graded is None:
                graded = grade_exercise(exercise, folder, table[exercise.name],
                                        timeout=timeout, memory_mb=memory_mb,
                                        memory_limit_enforced=enforced, shown=shown)
            grading.exercises.append(graded)
            if progress is not None:
                progress(graded)
        grading.seconds = time.perf_counter() - start
        return grading

    # One job grades in this thread, so that done() comes before the next folder's
    # on_start; several wait here for their threads, in the order of ``folders``.
    pool = ThreadPoolExecutor(max_workers=min(jobs, len(folders))) if jobs > 1 else None
    futures = [pool.submit(one, folder) for folder in folders] if pool else []
    gradings = (future.result() for future in futures) if pool else map(one, folders)
    results: list[Grading] = []
    try:
        for grading in gradings:
            results.append(grading)
            if done is not None:
                done(grading)
    except BaseException:
        for future in futures:
            future.cancel()
        with _LIVE_LOCK:  # (one job: its child was killed as the wait on it ended)
            running = list(_LIVE)
        for process in running:
            _kill_group(process)
        raise
    finally:
        if pool is not None:
            pool.shutdown(wait=True)
    return results


# --- reports ---------------------------------------------------------------------------------

def _number(value) -> int | float:
    value = Fraction(value)
    return value.numerator if value.denominator == 1 else float(value)


def _shown_number(value) -> str:
    value = Fraction(value)
    if value.denominator == 1:
        return str(value.numerator)
    return f"{float(value):.2f}".rstrip("0").rstrip(".")


def to_json(grading: Grading) -> dict:
    """minifcn's own report (the schema is in the module docstring)."""
    return {
        "schema": "minifcn-grade", "version": 1, "minifcn": __version__,
        "folder": grading.folder, "score": _number(grading.score),
        "max_score": _number(grading.max_score), "points_file": grading.points_file,
        "limits": {"timeout_seconds": _number(Fraction(str(grading.timeout))),
                   "memory_mb": grading.memory_mb,
                   "memory_limit_enforced": grading.memory_limit_enforced},
        "seconds": round(grading.seconds, 3),
        "exercises": [{
            "name": e.name, "number": e.number, "title": e.title, "file": e.file,
            "status": e.status, "reason": e.reason, "score": _number(e.score),
            "max_score": _number(e.max_score), "seconds": round(e.seconds, 3),
            "checks": [{"key": c.key, "title": c.title, "status": c.status,
                        "score": _number(c.score), "max_score": _number(c.max_score),
                        "detail": c.detail, "measurement": c.measurement,
                        "seconds": round(c.seconds, 3)} for c in e.checks],
            "report": e.report,
        } for e in grading.exercises],
    }


def _overview(grading: Grading) -> str:
    passed = sum(e.status == "passed" for e in grading.exercises)
    return (f"{_shown_number(grading.score)} of {_shown_number(grading.max_score)} points; "
            f"{passed} of {len(grading.exercises)} exercises passed every check. Graded by "
            f"minifcn {__version__} with {_limits(grading)}.")


def gradescope_results(grading: Grading) -> dict:
    """Gradescope's ``results.json`` (gradescope-autograders.readthedocs.io, "Autograder
    Specifications"): one test per exercise, its report as the test's output."""
    return {
        "score": _number(grading.score),
        "execution_time": max(1, round(grading.seconds)),
        "output": _overview(grading),
        "visibility": "visible",
        "tests": [{
            "name": f"{e.name}: {e.title}", "number": str(e.number),
            "score": _number(e.score), "max_score": _number(e.max_score),
            "status": "passed" if e.status == "passed" else "failed",
            "output": e.report, "output_format": "text", "visibility": "visible",
        } for e in grading.exercises],
    }


def _xml_text(text: str) -> str:
    """``text`` without the characters XML 1.0 cannot hold (a learner may print any)."""
    return "".join(ch for ch in text if ch in "\t\n\r" or " " <= ch <= "\ud7ff"
                   or "\ue000" <= ch <= "\ufffd" or ch >= "\U00010000")


def junit_xml(grading: Grading) -> str:
    """JUnit XML: a testsuite per exercise, a testcase per check."""
    failures = sum(c.status != "pass" for e in grading.exercises for c in e.checks)
    tests = sum(len(e.checks) for e in grading.exercises)
    root = ET.Element("testsuites", name="minifcn exercises", tests=str(tests),
                      failures=str(failures), errors="0", time=f"{grading.seconds:.3f}")
    for e in grading.exercises:
        suite = ET.SubElement(root, "testsuite", name=e.name, tests=str(len(e.checks)),
                              failures=str(sum(c.status != "pass" for c in e.checks)),
                              errors="0", skipped="0", time=f"{e.seconds:.3f}")
        properties = ET.SubElement(suite, "properties")
        for name, value in (("score", _shown_number(e.score)),
                            ("max_score", _shown_number(e.max_score)),
                            ("status", e.status), ("reason", _xml_text(e.reason))):
            ET.SubElement(properties, "property", name=name, value=value)
        for c in e.checks:
            name = c.title if c.title.startswith(c.key) else f"{c.key}: {c.title}"
            case = ET.SubElement(suite, "testcase", classname=f"minifcn.exercises.{e.name}",
                                 name=_xml_text(name), time=f"{c.seconds:.3f}")
            if c.status != "pass":
                first = (c.detail.splitlines() or [c.status])[0]
                failure = ET.SubElement(case, "failure", type=c.status,
                                        message=_xml_text(first))
                failure.text = _xml_text(c.detail)
        ET.SubElement(suite, "system-out").text = _xml_text(e.report)
    ET.indent(root)
    return '<?xml version="1.0" encoding="UTF-8"?>\n' + ET.tostring(root, encoding="unicode")


def classroom_result(grading: Grading) -> dict:
    """The result GitHub Classroom's autograding reporter reads from a step (the JSON of
    classroom-resources/autograding-command-grader, with partial points): one test per
    check."""
    return {
        "version": 1,
        "status": "pass" if all(e.status == "passed" for e in grading.exercises) else "fail",
        "max_score": _number(grading.max_score),
        "tests": [{
            "name": f"{e.name}: {c.key}", "status": "pass" if c.status == "pass" else "fail",
            "score": _number(c.score),
            "message": c.detail,
            "test_code": f"minifcn exercises check {e.name}",
            "filename": os.path.join(grading.folder, e.file or ""), "line_no": 0,
            "duration": round(c.seconds * 1000),
        } for e in grading.exercises for c in e.checks],
    }


def _limits(grading: Grading) -> str:
    memory = (f"{grading.memory_mb} MiB" if grading.memory_limit_enforced
              else "no memory limit (not available on this platform)")
    return f"{grading.timeout:g} s and {memory} per exercise"


def summary_header(grading: Grading) -> list[str]:
    return [f"Grading {grading.folder} ({_limits(grading)})", "",
            f"{'':>3}  {'exercise':<17}{'points':>11}  {'status':<15}reason"]


def summary_row(e: ExerciseGrade) -> str:
    points = f"{_shown_number(e.score)} / {_shown_number(e.max_score)}"
    return f"{e.number:>3}  {e.name:<17}{points:>11}  {e.status:<15}{e.reason}"


def summary_lines(grading: Grading) -> list[str]:
    """The table the command prints: a row per exercise, then the total."""
    lines = summary_header(grading)
    lines += [summary_row(e) for e in grading.exercises]
    return lines + ["", "Total: " + _overview(grading)]


def _write_atomically(path: str, text: str) -> None:
    folder = os.path.dirname(os.path.abspath(path))
    os.makedirs(folder, exist_ok=True)
    with open(path + ".tmp", "w", encoding="utf-8") as handle:
        handle.write(text)
    os.replace(path + ".tmp", path)


def check_outputs(**paths: str | None) -> None:
    """Refuse, before grading, an output path that is a folder."""
    for option, path in paths.items():
        if path is not None and os.path.isdir(path):
            raise UsageError(f"--{option}: expected a file to write, got {path!r} (a folder)")


def write_reports(grading: Grading, *, json_path: str | None = None,
                  gradescope: str | None = None, junit: str | None = None,
                  classroom: str | None = None) -> list[str]:
    """Write the reports asked for; return their paths. OSError when one cannot be written."""
    written = []
    if json_path:
        _write_atomically(json_path, json.dumps(to_json(grading), indent=1) + "\n")
        written.append(json_path)
    if gradescope:
        _write_atomically(gradescope, json.dumps(gradescope_results(grading), indent=1) + "\n")
        written.append(gradescope)
    if junit:
        _write_atomically(junit, junit_xml(grading) + "\n")
        written.append(junit)
    if classroom:
        encoded = base64.b64encode(json.dumps(classroom_result(grading)).encode()).decode()
        _write_atomically(classroom, encoded + "\n")
        written.append(classroom)
    return written


def submission_names(folders: list[str]) -> list[str]:
    """What the gradebook calls each folder: its own name, or its path where two names are
    alike (``a/alice`` and ``b/alice``)."""
    names = [os.path.basename(os.path.normpath(folder)) for folder in folders]
    return [name if names.count(name) == 1 else os.path.normpath(folder)
            for name, folder in zip(names, folders, strict=True)]


def gradebook_csv(gradings: list[Grading]) -> str:
    """The gradebook of a class: a row per graded folder (the columns are in the module
    docstring), the exercises in course order, scores as numbers."""
    exercise_names = list(dict.fromkeys(e.name for g in gradings for e in g.exercises))
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(["submission", "score", "max_score", *exercise_names, "problems"])
    names = submission_names([g.folder for g in gradings])
    for name, g in zip(names, gradings, strict=True):
        scores = {e.name: _number(e.score) for e in g.exercises}
        problems = "; ".join(f"{e.name}: {e.status}" for e in g.exercises
                             if e.status != "passed")
        writer.writerow([name, _number(g.score), _number(g.max_score),
                         *(scores.get(n, "") for n in exercise_names), problems])
    return out.getvalue()


def gradebook_lines(gradings: list[Grading]) -> list[str]:
    """The class at a glance, after every folder's table: a row per folder."""
    names = submission_names([g.folder for g in gradings])
    width = max(len("submission"), *(len(name) for name in names)) + 2
    lines = [f"Gradebook: {len(gradings)} folders", "",
             f"  {'submission':<{width}}{'points':>11}  passed"]
    for name, g in zip(names, gradings, strict=True):
        points = f"{_shown_number(g.score)} / {_shown_number(g.max_score)}"
        passed = sum(e.status == "passed" for e in g.exercises)
        lines.append(f"  {name:<{width}}{points:>11}  {passed} of {len(g.exercises)}")
    return lines


def write_gradebook(gradings: list[Grading], path: str) -> str:
    """Write :func:`gradebook_csv` atomically; return the path."""
    _write_atomically(path, gradebook_csv(gradings))
    return path


# --- ready-made set-ups --------------------------------------------------------------------

SETUPS = {
    "gradescope": {"setup.sh": "setup.sh", "run_autograder": "run_autograder",
                   "points.json": None},
    "github": {os.path.join(".github", "workflows", "classroom.yml"): "classroom.yml"},
}
_EXECUTABLE = {"setup.sh", "run_autograder"}


def setup_text(name: str) -> str:
    """One of the ready-made files in minifcn/exercises/autograder/."""
    return resources.files(__package__).joinpath("autograder", name).read_text()


def default_points_json() -> str:
    table = read_points(None)
    return json.dumps({"exercises": {name: {key: _number(value) for key, value in checks.items()}
                                     for name, checks in table.items()}}, indent=1) + "\n"


def write_setup(kind: str, folder: str) -> list[str]:
    """Write the files of a ready-made set-up ("gradescope" or "github") into ``folder``;
    return their paths. Nothing is written when one of them exists already."""
    if kind not in SETUPS:
        raise UsageError(f"--write-setup: expected gradescope or github, got {kind!r}")
    if os.path.exists(folder) and not os.path.isdir(folder):
        raise UsageError(f"--write-setup {kind}: {folder!r} is a file, not a folder")
    targets = {os.path.join(folder, path): source for path, source in SETUPS[kind].items()}
    existing = [path for path in targets if os.path.exists(path)]
    if existing:
        raise UsageError(f"--write-setup {kind}: {', '.join(existing)} already exists; "
                         f"nothing was written (move it away first)")
    for path, source in targets.items():
        _write_atomically(path, setup_text(source) if source else default_points_json())
        if os.path.basename(path) in _EXECUTABLE:
            os.chmod(path, 0o755)
    return list(targets)
