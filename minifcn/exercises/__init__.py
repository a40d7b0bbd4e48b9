"""The exercise track: write minifcn's layers yourself, and let minifcn check them.

    minifcn exercises list                 # one exercise a line, name first
    minifcn exercises start conv2d         # writes my_minifcn/conv2d.py (never overwrites)
    minifcn exercises check conv2d         # runs its checks on YOUR file, says what is wrong
    minifcn exercises status               # done / failing / not started, for every one
    minifcn exercises grade submission/    # for teachers: points, limits, reports (grade.py)

Each exercise is a file of functions with the names and leading arguments of their
counterparts in :mod:`minifcn.functional` (``conv2d_forward(x, weight, bias=None, stride=1,
padding=0, dilation=1) -> (y, cache)``, ``conv2d_backward(dy, cache) -> (dx, dweight,
dbias)``, ...), so that the capstone can build FCN-8s from them (``minifcn train --layers
my_minifcn/``). The checks compare your functions with minifcn's own on configurations
drawn by hypothesis, check gradients against finite differences of your own forward in
float64, run your code on a strict CuPy stand-in, and name the symptom of a mistake when
they recognise it.

The same from Python::

    from minifcn import exercises
    report = exercises.check("conv2d", "my_minifcn")
    print(report.text()); assert report.passed
"""

from __future__ import annotations

import hashlib
import importlib
import json
import os
from importlib import resources

from .framework import Exercise, ExerciseReport, run_exercise

__all__ = ["DEFAULT_DIR", "EXERCISES", "Exercise", "ExerciseReport", "check", "get",
           "learner_path", "names", "run_checks", "start", "status"]

DEFAULT_DIR = "my_minifcn"

# In course order; each module in ``tasks`` defines EXERCISE.
_TASKS = ("relu", "conv2d_naive", "im2col", "conv2d", "max_pool2d", "avg_pool2d", "dropout",
          "batch_norm", "conv_transpose2d", "bilinear_kernel", "upsample", "cross_entropy",
          "skip", "metrics", "capstone")

_STATUS_FILE = ".minifcn-status.json"


def _require_hypothesis() -> None:
    try:
        import hypothesis  # noqa: F401
    except ImportError:
        raise ImportError('the exercise checks draw their cases with hypothesis: '
                          'pip install "minifcn[test]"') from None


def _load() -> dict[str, Exercise]:
    _require_hypothesis()
    found = {}
    for task in _TASKS:
        try:
            module = importlib.import_module(f".tasks.{task}", __name__)
        except ModuleNotFoundError as error:
            if error.name != f"{__name__}.tasks.{task}":
                raise
            continue  # not written yet
        found[module.EXERCISE.name] = module.EXERCISE
    return dict(sorted(found.items(), key=lambda item: item[1].number))


_cache: dict[str, Exercise] = {}


def exercises() -> dict[str, Exercise]:
    """name -> :class:`Exercise`, in course order."""
    if not _cache:
        _cache.update(_load())
    return _cache


EXERCISES = exercises  # a function: the registry loads hypothesis, which stays optional


def names() -> list[str]:
    return list(exercises())


def get(name: str) -> Exercise:
    """The exercise called ``name``; a ValueError listing the names otherwise."""
    try:
        return exercises()[name]
    except KeyError:
        raise ValueError(f"no exercise called {name!r}; the exercises are: "
                         f"{', '.join(names())}") from None


def learner_path(name: str, folder: str = DEFAULT_DIR) -> str:
    return os.path.join(folder, f"{name}.py")


def skeleton_text(name: str) -> str:
    return resources.files(__package__).joinpath("skeletons", f"{name}.py").read_text()


def start(name: str, folder: str = DEFAULT_DIR) -> tuple[str, bool]:
    """Write the skeleton of exercise ``name`` to ``folder/name.py``.

    Returns (path, written): ``written`` is False when the file already existed, which is
    then left exactly as it was (a learner's work is never overwritten).
    """
    exercise = get(name)
    path = learner_path(exercise.name, folder)
    if not exercise.functions:  # the capstone has no file of its own
        return path, False
    if os.path.exists(path):
        return path, False
    os.makedirs(folder, exist_ok=True)
    temporary = path + ".tmp"
    with open(temporary, "w") as handle:
        handle.write(skeleton_text(exercise.name))
    os.replace(temporary, path)  # never a half-written file under the learner's name
    return path, True


def run_checks(name: str, folder: str = DEFAULT_DIR) -> ExerciseReport:
    """Run exercise ``name``'s checks on ``folder/name.py`` (the capstone: on the folder),
    and remember nothing: what :func:`check` and ``minifcn exercises grade`` both run."""
    exercise = get(name)
    if exercise.runner is not None:
        return exercise.runner(exercise, folder)
    return run_exercise(exercise, path=learner_path(exercise.name, folder))


def check(name: str, folder: str = DEFAULT_DIR) -> ExerciseReport:
    """Run exercise ``name``'s checks on ``folder/name.py`` (the capstone: on the folder),
    and remember the outcome for :func:`status`."""
    report = run_checks(name, folder)
    _remember(folder, get(name), report)
    return report


def _fingerprint(folder: str) -> str:
    """A hash of every exercise file in ``folder``: a status stays valid while it holds
    (a later exercise's check may import an earlier file, so any change invalidates all)."""
    digest = hashlib.sha256()
    for name in sorted(exercises()):
        path = learner_path(name, folder)
        if os.path.isfile(path):
            with open(path, "rb") as handle:
                digest.update(name.encode() + b"\0" + handle.read())
    return digest.hexdigest()


def _read_status(folder: str) -> dict:
    try:
        with open(os.path.join(folder, _STATUS_FILE)) as handle:
            saved = json.load(handle)
    except (OSError, ValueError):
        return {}
    return saved.get("results", {}) if saved.get("fingerprint") == _fingerprint(folder) else {}


def _remember(folder: str, exercise: Exercise, report: ExerciseReport) -> None:
    if not os.path.isdir(folder):
        return
    results = _read_status(folder)
    failed = len(report.failures())
    results[exercise.name] = {"status": report.status, "failed": failed,
                              "checks": len(report.results)}
    path = os.path.join(folder, _STATUS_FILE)
    with open(path + ".tmp", "w") as handle:
        json.dump({"fingerprint": _fingerprint(folder), "results": results}, handle, indent=1)
    os.replace(path + ".tmp", path)


def status(folder: str = DEFAULT_DIR) -> list[tuple[Exercise, str, str]]:
    """(exercise, state, detail) for every exercise: "done", "failing", "in progress" or
    "not started". Exercises whose files changed since their last check are checked again."""
    remembered = _read_status(folder)
    rows = []
    for name, exercise in exercises().items():
        has_file = os.path.isfile(learner_path(name, folder))
        if exercise.functions and not has_file:
            rows.append((exercise, "not started", f"minifcn exercises start {name}"))
            continue
        if not exercise.functions and not os.path.isdir(folder):
            rows.append((exercise, "not started", "needs your layers first"))
            continue
        result = remembered.get(name)
        if result is None:
            report = check(name, folder)
            result = {"status": report.status, "failed": len(report.failures()),
                      "checks": len(report.results)}
        plural = "" if result["checks"] == 1 else "s"
        detail = {"done": f"{result['checks']} check{plural} passed",
                  "failing": f"{result['failed']} of {result['checks']} checks failed",
                  "in progress": "a function still raises NotImplementedError"}[result["status"]]
        rows.append((exercise, result["status"], detail))
    return rows

