"""The child process of ``minifcn exercises grade``: one exercise on one learner's folder.

    python -m minifcn.exercises.grade_child NAME FOLDER RESULT --memory-mb 2048 --show-as DIR
    python -m minifcn.exercises.grade_child --probe RESULT --memory-mb 2048

It first limits its own address space (``RLIMIT_AS``, soft and hard, where the platform has
it), then runs the exercise's checks exactly as ``minifcn exercises check`` runs them
(:func:`minifcn.exercises.run_checks`: the learner's file, loaded fresh, with its folder on
``sys.path`` while it loads, so ``from im2col import col2im`` finds the learner's im2col)
and writes what they found to RESULT as JSON. RESULT is written only when the checks came
to an end; everything else (a time limit, a signal, ``sys.exit`` or ``os._exit`` in the
learner's code) the parent reads from how the process ended. ``--probe`` only loads the
exercises and says whether the memory limit holds: the parent runs it once, before any
learner's code, so that a broken grading set-up is not mistaken for crashing learners.

This is a resource limit, not a security sandbox: the learner's code runs as the grader's
user, in this process.
"""

from __future__ import annotations

import argparse
import dataclasses
import faulthandler
import json
import os
import sys

from . import get, run_checks
from .framework import ExerciseReport, _failure_lines, _learner_line
from .grade import MEASURING_CHECKS, _write_atomically

# The notes of checks that measure (a timing on the grading machine) are left out of the
# report text, so that the same submission gives the same report on every run, and kept
# apart in the result as "measurement".
MEASUREMENT_NOTE = "(a timing on the grading machine: left out of graded reports)"


def limit_memory(megabytes: int) -> bool:
    """Cap this process's address space at ``megabytes`` MiB; True when the cap holds.

    ``RLIMIT_AS`` exists on Linux; elsewhere (Windows has no ``resource`` module, macOS
    refuses or ignores the limit) nothing is capped and this returns False.
    """
    try:
        import resource
    except ImportError:
        return False
    if not sys.platform.startswith("linux") or not hasattr(resource, "RLIMIT_AS"):
        return False
    limit = megabytes * 1024 * 1024
    _, hard = resource.getrlimit(resource.RLIMIT_AS)
    if hard != resource.RLIM_INFINITY:
        limit = min(limit, hard)
    try:
        resource.setrlimit(resource.RLIMIT_AS, (limit, limit))
    except (ValueError, OSError):
        return False
    return True


def _out_of_memory(report: ExerciseReport) -> bool:
    """A MemoryError in the learner's code: the Learner wrapper turned it into a failed
    check ("relu_forward raised MemoryError: ..."), the loader into a load failure."""
    failures = [r.failure for r in report.results if r.failure is not None]
    if report.load_failure is not None:
        failures.append(report.load_failure)
    return any("raised MemoryError" in failure.message for failure in failures)


def _shown(text: str, folder: str, shown_as: str) -> str:
    """``text`` with the folder's absolute path written as the teacher gave it."""
    return text.replace(folder + os.sep, shown_as + os.sep).replace(folder, shown_as)


def serialise(name: str, report: ExerciseReport, folder: str, shown_as: str) -> dict:
    """What the parent needs of a report: per check its status, detail and seconds, and
    the report text a learner reads (measurements left out)."""
    passed = {r.check.key for r in report.results if r.status == "pass"}
    checks, results = [], []
    for result in report.results:
        measured = (name, result.check.key) in MEASURING_CHECKS and result.note
        if result.status == "pass":
            detail = MEASUREMENT_NOTE if measured else (result.note or "")
        elif result.status == "fail":
            detail = "\n".join(_failure_lines(result.failure, indent=""))
        elif result.status == "skip":
            waiting = [key for key in result.check.requires if key not in passed]
            detail = f"not run: needs {', '.join(waiting)} to pass first"
        else:  # "todo"
            detail = f"not run: {report.not_implemented}"
        checks.append({"key": result.check.key, "status": result.status,
                       "detail": _shown(detail, folder, shown_as),
                       "measurement": result.note if measured else None,
                       "seconds": result.seconds})
        results.append(dataclasses.replace(result, note=MEASUREMENT_NOTE) if measured
                       else result)
    text = dataclasses.replace(report, results=results).text()
    load_failure = None
    if report.load_failure is not None:
        load_failure = "\n".join(_failure_lines(report.load_failure, indent=""))
    return {"outcome": "ran", "checks": checks, "text": _shown(text, folder, shown_as),
            "load_failure": load_failure and _shown(load_failure, folder, shown_as),
            "not_implemented": (None if report.not_implemented is None
                                else str(report.not_implemented)),
            "passed": report.passed}


def grade_one(name: str, folder: str, shown_as: str) -> dict:
    try:
        report = run_checks(name, folder)
    except MemoryError:
        return {"outcome": "memory"}
    except Exception as error:  # the checks could not go on with what the code returned
        message = f"{type(error).__name__}: {error}{_learner_line(error, folder)}"
        return {"outcome": "error", "error": _shown(message, folder, shown_as)}
    if _out_of_memory(report):
        return {"outcome": "memory"}
    return serialise(name, report, folder, shown_as)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m minifcn.exercises.grade_child")
    parser.add_argument("args", nargs="+", metavar="NAME FOLDER RESULT | RESULT")
    parser.add_argument("--probe", action="store_true")
    parser.add_argument("--memory-mb", type=int, required=True)
    parser.add_argument("--show-as", default=None)
    options = parser.parse_args(argv)
    enforced = limit_memory(options.memory_mb)
    faulthandler.enable()  # a segfault prints the Python stack, which the parent keeps
    if options.probe:
        from . import exercises

        (result_path,) = options.args
        _write_atomically(result_path, json.dumps({
            "outcome": "probe", "exercises": list(exercises()),
            "memory_limit_enforced": enforced}))
        return 0
    name, folder, result_path = options.args
    get(name)  # an unknown name is the parent's mistake: a traceback, before any learner code
    result = grade_one(name, folder, options.show_as or folder)
    result["memory_limit_enforced"] = enforced
    _write_atomically(result_path, json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
