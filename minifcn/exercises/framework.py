"""The machinery behind ``minifcn exercises``: load a learner's file, run an exercise's
checks on it, and explain what is wrong.

An :class:`Exercise` is a list of :class:`Check` objects. Each check calls the learner's
functions through a :class:`Learner` (which turns a ``NotImplementedError`` into "not
implemented yet" and any other crash into a failure that names the function, the line and
the configuration), compares what comes back with minifcn's own implementation, and raises
:class:`CheckFailed` with a plain message and, where one can be recognised, the *symptom*:
what the numbers say the mistake is ("dx is wrong only where pooling windows overlap: are
overlapping contributions added?").

Property checks draw their configurations with hypothesis (:func:`for_all`); when one
fails, hypothesis shrinks it and the report shows the smallest failing configuration.

The checks never run minifcn's own code in place of the learner's: every function a check
needs comes from the learner's file, and a missing one is a failure. Nor may the learner's
file hand minifcn's code back: while a function from a learner's file runs, no code of
minifcn's may run but :mod:`minifcn.backend` and the CuPy stand-in (:class:`OwnCodeOnly`),
so a file that imports or wraps ``minifcn.functional.conv2d_forward`` fails every check.
"""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import importlib.util
import os
import sys
import time
import traceback
import warnings
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field

from .. import backend
from ..backend import np, to_numpy

__all__ = [
    "Check",
    "CheckFailed",
    "CheckResult",
    "Exercise",
    "ExerciseReport",
    "Learner",
    "NotImplementedYet",
    "OwnCodeOnly",
    "compare",
    "for_all",
    "load_learner_file",
    "only_where",
    "looks_like",
    "run_exercise",
]


class CheckFailed(Exception):
    """A check found a mistake.

    Args:
        message: what was measured and what was expected.
        symptom: what the numbers suggest the mistake is, and where to look (or None).
        config: the configuration it failed on (hypothesis's smallest), or None.
    """

    def __init__(self, message: str, symptom: str | None = None, config=None):
        super().__init__(message)
        self.message, self.symptom, self.config = message, symptom, config


class NotImplementedYet(Exception):
    """The learner's function still raises ``NotImplementedError``."""

    def __init__(self, function: str, detail: str):
        super().__init__(f"{function} is not implemented yet"
                         + (f" ({detail})" if detail else ""))
        self.function = function


# --- loading the learner's file ------------------------------------------------------------

def load_learner_file(path: str, functions: tuple[str, ...]) -> dict[str, Callable]:
    """Import ``path`` as a fresh module and return the named functions it defines.

    The file's folder is on ``sys.path`` while it loads, so a learner's file may import
    their other exercise files (``from im2col import im2col``); modules imported from that
    folder are forgotten afterwards, so the next load sees the files as they are then.

    Raises:
        CheckFailed: the file is missing, does not import, or lacks one of ``functions``.
    """
    if not os.path.isfile(path):
        raise CheckFailed(f"there is no file {path}",
                          symptom="write the skeleton first: minifcn exercises start "
                                  f"{os.path.splitext(os.path.basename(path))[0]}")
    folder = os.path.dirname(os.path.abspath(path))
    name = f"_minifcn_learner_{os.path.splitext(os.path.basename(path))[0]}"
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    before = set(sys.modules)
    sys.path.insert(0, folder)
    try:
        spec.loader.exec_module(module)
    except SyntaxError as error:
        raise CheckFailed(f"{path} has a syntax error at line {error.lineno}: {error.msg}",
                          symptom="Python could not read the file; fix that line first"
                          ) from None
    except Exception as error:  # the learner's module-level code crashed
        raise CheckFailed(f"{path} raised {type(error).__name__} while being imported: "
                          f"{error}{_learner_line(error, folder)}") from None
    finally:
        sys.path.remove(folder)
        for added in set(sys.modules) - before:
            origin = getattr(sys.modules[added], "__file__", None) or ""
            if os.path.abspath(origin).startswith(folder + os.sep):
                del sys.modules[added]
    missing = [f for f in functions if not callable(getattr(module, f, None))]
    if missing:
        raise CheckFailed(f"{path} defines no function {', '.join(missing)}",
                          symptom="the checks call these names; keep the names and "
                                  "arguments of the skeleton (minifcn exercises start)")
    return {f: OwnCodeOnly(getattr(module, f), f) for f in functions}


# --- the learner's code, not minifcn's ------------------------------------------------------

_PACKAGE = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))  # .../minifcn
# What a learner's file may call of minifcn's: the array backend the skeletons import
# (get_array_module, np, Generator) and the CuPy stand-in that the GPU checks hand it.
_ALLOWED = tuple(os.path.join(_PACKAGE, *parts) for parts in (
    ("backend.py",), ("testing", "strict_cupy.py")))


class _MinifcnCodeRan(BaseException):
    """Raised into a learner's call where it entered minifcn's code. A BaseException, so
    that a learner's ``except Exception`` does not hide it; :class:`OwnCodeOnly` turns it
    into the check's failure."""


class OwnCodeOnly:
    """A function from a learner's file, called so that minifcn's own code cannot stand in.

    While it runs, a trace function (``sys.settrace``; called once per Python frame, so
    the cost is one Python call per function call, not per line) looks at every function
    entered: one defined in the minifcn package, other than :mod:`minifcn.backend` and the
    CuPy stand-in, ends the call with a :class:`CheckFailed` naming it. It is what keeps a
    file that does ``from minifcn.functional import conv2d_forward``, or calls it from a
    function of its own, from passing the checks on minifcn's work.

    The trace is this thread's only one while the call runs and the previous one (a
    debugger's, coverage's) is restored afterwards; ``breakpoint()`` inside the learner's
    code still works, and from there on the call is not watched. This keeps honest people
    honest; it is not a sandbox.
    """

    def __init__(self, function: Callable, name: str):
        self.function, self.name = function, name
        functools.update_wrapper(self, function)
        self._entered: list[tuple[str, str, int]] = []

    def _trace(self, frame, event, arg):
        code = frame.f_code
        if code.co_filename.startswith(_PACKAGE + os.sep) and \
                not code.co_filename.startswith(_ALLOWED):
            self._entered.append((getattr(code, "co_qualname", code.co_name),
                                  code.co_filename, frame.f_lineno))
            raise _MinifcnCodeRan
        return None  # no per-line tracing inside the frame

    def __call__(self, *args, **kwargs):
        if sys.gettrace() == self._trace:  # called from itself (recursion): already watched
            return self.function(*args, **kwargs)
        previous, self._entered = sys.gettrace(), []
        sys.settrace(self._trace)
        try:
            result = self.function(*args, **kwargs)
        except _MinifcnCodeRan:
            result = None
        finally:
            sys.settrace(previous)
        if self._entered:  # even where the learner's code caught the exception
            qualname, path, line = self._entered[0]
            module = os.path.relpath(path, os.path.dirname(_PACKAGE))
            raise CheckFailed(
                f"{self.name} ran minifcn's own {qualname} ({module} line {line})",
                symptom="the checks judge your code, not minifcn's, so this one is "
                        "yours to write. Of minifcn, your file may use only "
                        "minifcn.backend (get_array_module, np, Generator); your own "
                        "exercise files you may import freely")
        return result


def _learner_line(error: BaseException, folder: str | None = None) -> str:
    """' (at conv2d.py line 42: y = ...)': the innermost frame of the learner's code."""
    frames = traceback.extract_tb(error.__traceback__)
    mine = [f for f in frames if "minifcn" not in f.filename.split(os.sep)[-3:-1]
            and "site-packages" not in f.filename and "hypothesis" not in f.filename]
    if folder is not None:
        mine = [f for f in mine if os.path.abspath(f.filename).startswith(folder)] or mine
    if not mine:
        return ""
    frame = mine[-1]
    code = f": {frame.line}" if frame.line else ""
    return f" (at {os.path.basename(frame.filename)} line {frame.lineno}{code})"


class Learner:
    """The functions of one exercise, called so that every failure is a clear report.

    ``learner.conv2d_forward(x, w)`` calls the function; ``NotImplementedError`` becomes
    :class:`NotImplementedYet`, any other exception a :class:`CheckFailed` naming the
    function and the line of the learner's file it came from.
    """

    def __init__(self, functions: dict[str, Callable], origin: str = "your file"):
        self._functions, self.origin = dict(functions), origin

    def __getattr__(self, name: str):
        try:
            function = self.__dict__["_functions"][name]
        except KeyError:
            raise AttributeError(name) from None

        def call(*args, **kwargs):
            try:
                return function(*args, **kwargs)
            except NotImplementedError as error:
                raise NotImplementedYet(name, str(error)) from None
            except (CheckFailed, NotImplementedYet):
                raise
            except Exception as error:
                raise CheckFailed(f"{name} raised {type(error).__name__}: {error}"
                                  f"{_learner_line(error)}") from None
        return call


# --- comparing and diagnosing ----------------------------------------------------------------

Symptom = Callable[[np.ndarray, np.ndarray], "str | None"]


def looks_like(transform: Callable[[np.ndarray], np.ndarray], text: str,
               rtol: float = 1e-6) -> Symptom:
    """A symptom: ``got`` equals ``transform(expected)`` (a flip, a transpose, a scale)."""
    def symptom(got, expected):
        try:
            candidate = np.asarray(transform(expected))
        except Exception:
            return None
        if candidate.shape == got.shape and _close(got, candidate, rtol):
            return text
        return None
    return symptom


def only_where(mask_of: Callable[[np.ndarray], np.ndarray], text: str,
               rtol: float = 1e-6) -> Symptom:
    """A symptom: every wrong entry lies where ``mask_of(expected)`` is True."""
    def symptom(got, expected):
        mask = np.broadcast_to(np.asarray(mask_of(expected), dtype=bool), expected.shape)
        wrong = ~_entrywise_close(got, expected, rtol)
        return text if wrong.any() and not (wrong & ~mask).any() else None
    return symptom


def _entrywise_close(a, b, rtol):
    scale = max(float(np.abs(b).max(initial=0.0)), 1e-12)
    return np.abs(a - b) <= rtol * np.maximum(np.abs(b), scale * 1e-3) + 1e-12 * scale


def _close(a, b, rtol) -> bool:
    return a.shape == b.shape and bool(np.all(_entrywise_close(a, b, rtol)))


def _generic_symptoms(name: str) -> list[Symptom]:
    def zeros(got, expected):
        if not np.any(got) and np.any(expected):
            return (f"{name} is zero everywhere: is the value you computed the one you "
                    f"return?")
        return None

    def constant_factor(got, expected):
        if np.count_nonzero(expected) < 2:  # any two numbers are "proportional"
            return None
        scale = float(np.vdot(got.ravel(), expected.ravel()))
        norm = float(np.vdot(expected.ravel(), expected.ravel()))
        if norm == 0.0 or scale == 0.0:
            return None
        factor = scale / norm
        if abs(factor - 1.0) > 1e-6 and _close(got, factor * expected, 1e-6):
            return (f"{name} is the right answer times {factor:.6g}: a missing or extra "
                    f"scale factor (a division by a count, a probability, a batch size?)")
        return None

    def nan(got, expected):
        if not np.all(np.isfinite(got)) and np.all(np.isfinite(expected)):
            return (f"{name} has NaN or infinite entries where the right answer is finite: "
                    f"an overflow (exp of a large number?) or a division by zero")
        return None

    return [nan, zeros, constant_factor]


def compare(name: str, got, expected, *, rtol: float = 1e-7, atol: float = 1e-9,
            symptoms: tuple[Symptom, ...] = (), config=None, shape_hint: str = "") -> None:
    """Raise :class:`CheckFailed` unless ``got`` equals ``expected`` to the tolerance.

    Args:
        name: the quantity, as the learner knows it ("y", "dx", "dweight").
        got: what the learner's code returned (any backend).
        expected: what it should be (NumPy).
        symptoms: exercise-specific recognisers, tried before the generic ones (all zero,
            a constant factor, NaN).
        shape_hint: the formula the shape follows, shown when the shape is wrong.
    """
    from ..testing.assertions import mismatch_report

    if got is None:
        raise CheckFailed(f"{name} is None; expected an array of shape "
                          f"{tuple(expected.shape)}", config=config)
    if not backend.is_array(got) and not np.isscalar(got):
        raise CheckFailed(f"{name} should be an array, got a {type(got).__name__}",
                          config=config)
    got = np.asarray(to_numpy(got) if backend.is_array(got) else got)
    expected = np.asarray(expected)
    if got.shape != expected.shape:
        # A recogniser may know this shape (a transposed weight has the transposed shape).
        symptom = next((text for text in (recognise(got.astype(np.float64),
                                                    expected.astype(np.float64))
                                          for recognise in symptoms) if text), None)
        raise CheckFailed(f"{name} has shape {got.shape}; expected {expected.shape}",
                          symptom=symptom or (f"the shape follows {shape_hint}" if shape_hint
                                              else "check which axes you sum over or keep"),
                          config=config)
    message = mismatch_report(got, expected, name=name, rtol=rtol, atol=atol)
    if message is None:
        return
    symptom = None
    for recognise in (*symptoms, *_generic_symptoms(name)):
        symptom = recognise(got.astype(np.float64), expected.astype(np.float64))
        if symptom:
            break
    raise CheckFailed(message, symptom=symptom, config=config)


# --- property checks -----------------------------------------------------------------------

def for_all(strategy, body: Callable[[object], None], *, examples: int = 25) -> int:
    """Run ``body(config)`` on ``examples`` configurations drawn from ``strategy``.

    Derandomised: the same file gives the same report every time. On a failure hypothesis
    shrinks the configuration and replays the smallest one last, so the configuration seen
    last is the one to report. Returns the number of configurations that passed.
    """
    from hypothesis import HealthCheck, Phase, Verbosity, given, settings

    seen = {"config": None, "count": 0}

    @settings(max_examples=examples, derandomize=True, deadline=None, database=None,
              verbosity=Verbosity.quiet, report_multiple_bugs=False, print_blob=False,
              suppress_health_check=list(HealthCheck),
              phases=(Phase.explicit, Phase.generate, Phase.shrink))
    @given(strategy)
    def run(config):
        seen["config"] = config
        body(config)
        seen["count"] += 1

    try:
        run()
    except CheckFailed as failure:
        if failure.config is None:
            failure.config = seen["config"]
        raise
    return seen["count"]


# --- exercises -----------------------------------------------------------------------------

@dataclass
class Check:
    """One property of an exercise.

    ``run(learner)`` raises :class:`CheckFailed` on a mistake and may return a note to print
    (a timing, a measured error). ``requires`` names earlier checks (by ``key``) that must
    pass first: a backward check means little while the forward is wrong.
    """

    key: str
    title: str
    run: Callable[[Learner], str | None]
    requires: tuple[str, ...] = ()


@dataclass
class Exercise:
    """One exercise: the functions a learner writes and the checks that judge them.

    Attributes:
        number, name, title: ``name`` is also the file name (``my_minifcn/<name>.py``).
        functions: the names the learner's file must define.
        lesson: the lesson that teaches it (for the report's "read next").
        checks: run in order.
        reference: name -> minifcn's own implementation; the checks' oracle, and itself
            tested to pass every check.
        summary: one line for ``minifcn exercises list``.
        runner: ``runner(exercise, folder) -> ExerciseReport`` for an exercise that checks
            a whole folder rather than one file (the capstone); None for the usual one.

    ``minifcn exercises start`` writes ``minifcn/exercises/skeletons/<name>.py``.
    """

    number: int
    name: str
    title: str
    functions: tuple[str, ...]
    lesson: str
    checks: list[Check]
    reference: Callable[[], dict[str, Callable]]
    summary: str = ""
    runner: Callable[[Exercise, str], ExerciseReport] | None = None


@dataclass
class CheckResult:
    check: Check
    status: str  # "pass", "fail", "skip", "todo"
    note: str | None = None
    failure: CheckFailed | None = None
    seconds: float = 0.0


@dataclass
class ExerciseReport:
    exercise: Exercise
    origin: str
    results: list[CheckResult] = field(default_factory=list)
    load_failure: CheckFailed | None = None
    not_implemented: NotImplementedYet | None = None

    @property
    def passed(self) -> bool:
        return (self.load_failure is None and self.not_implemented is None and bool(self.results)
                and all(r.status == "pass" for r in self.results))

    @property
    def status(self) -> str:
        """"done", "failing", "not implemented" (a stub) for ``minifcn exercises status``."""
        if self.passed:
            return "done"
        if self.not_implemented is not None:
            return "in progress"
        return "failing"

    def failures(self) -> list[CheckResult]:
        return [r for r in self.results if r.status == "fail"]

    def text(self) -> str:
        """The report a learner reads."""
        ex = self.exercise
        lines = [f"Exercise {ex.number}: {ex.title} ({self.origin})", ""]
        if self.load_failure is not None:
            lines += _failure_lines(self.load_failure, indent="  ")
            lines += ["", "No check could run."]
            return "\n".join(lines)
        for result in self.results:
            mark = {"pass": "PASS", "fail": "FAIL", "skip": "skip", "todo": "TODO"}[result.status]
            lines.append(f"  {mark}  {result.check.title}")
            if result.status == "pass" and result.note:
                lines += [f"        {line}" for line in result.note.splitlines()]
            if result.status == "fail":
                lines += _failure_lines(result.failure, indent="        ")
        lines.append("")
        if self.not_implemented is not None:
            lines.append(f"{self.not_implemented}: fill in its body, then check again.")
        elif self.passed:
            lines.append(f"Every check passed ({len(self.results)} of {len(self.results)}). "
                         f"Well done.")
        else:
            failed = len(self.failures())
            lines.append(f"{failed} of {len(self.results)} checks failed. Start with the first "
                         f"FAIL; lesson {ex.lesson} explains the ideas behind it.")
        return "\n".join(lines)


def _format_config(config) -> str:
    if config is None:
        return ""
    if dataclasses.is_dataclass(config) and not isinstance(config, type):
        items = dataclasses.asdict(config).items()
    elif isinstance(config, dict):
        items = config.items()
    else:
        return repr(config)
    return ", ".join(f"{key}={value!r}" for key, value in items)


def _failure_lines(failure: CheckFailed, indent: str) -> list[str]:
    lines = [indent + line for line in failure.message.splitlines()]
    if failure.symptom:
        lines.append(f"{indent}Symptom: {failure.symptom}")
    if failure.config is not None:
        lines.append(f"{indent}Smallest failing configuration: {_format_config(failure.config)}")
    return lines


def run_exercise(exercise: Exercise, functions: dict[str, Callable] | None = None, *,
                 path: str | None = None) -> ExerciseReport:
    """Run every check of ``exercise`` on the learner's functions.

    Give either ``path`` (the learner's file, loaded fresh) or ``functions`` (name ->
    callable, e.g. ``exercise.reference()`` to check minifcn's own code).
    """
    origin = path or "given functions"
    report = ExerciseReport(exercise, origin)
    try:
        if functions is None:
            functions = load_learner_file(path, exercise.functions)
        missing = [f for f in exercise.functions if f not in functions]
        if missing:
            raise CheckFailed(f"no function {', '.join(missing)}")
    except CheckFailed as failure:
        report.load_failure = failure
        return report
    learner = Learner(functions, origin)
    failed: set[str] = set()
    for check in exercise.checks:
        blocked = [key for key in check.requires if key in failed]
        if report.not_implemented is not None or blocked:
            report.results.append(CheckResult(
                check, "todo" if report.not_implemented is not None else "skip"))
            failed.add(check.key)
            continue
        start = time.perf_counter()
        try:
            with warnings.catch_warnings():
                # An overflow in a learner's code shows up as inf or NaN in the results,
                # which the checks report with their cause; the warning would only repeat it.
                warnings.simplefilter("ignore", RuntimeWarning)
                note = check.run(learner)
        except NotImplementedYet as stub:
            report.not_implemented = stub
            report.results.append(CheckResult(check, "todo"))
            failed.add(check.key)
        except CheckFailed as failure:
            report.results.append(CheckResult(check, "fail", failure=failure,
                                              seconds=time.perf_counter() - start))
            failed.add(check.key)
        else:
            report.results.append(CheckResult(check, "pass", note=note,
                                              seconds=time.perf_counter() - start))
    return report


@contextlib.contextmanager
def on_strict_gpu() -> Iterator[object]:
    """The strict CuPy stand-in posing as the GPU (yields its module)."""
    from ..testing import strict_cupy

    backend.register_array_module(strict_cupy.ndarray, strict_cupy, "gpu")
    with backend.use_gpu_module(strict_cupy):
        yield strict_cupy
