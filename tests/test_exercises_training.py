"""The training exercises (dropout, batch_norm, upsample, cross_entropy, skip, metrics)
against their mistake catalogue.

For each exercise: minifcn's own functions pass every check; an independent correct learner
solution (tests/exercise_mistakes/<name>/correct.py) passes every check; the skeleton fails
as "not implemented yet"; an empty file fails; and every catalogued mistake
(tests/exercise_mistakes/<name>/<mistake>.py, one typical bug each) fails, with its symptom
(the ``Symptom:`` line of its docstring) named on a ``Symptom:`` line of the report: the
checker recognised the mistake, not merely that something is off.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

from minifcn import exercises
from minifcn.exercises.framework import run_exercise

TRAINING = ("dropout", "batch_norm", "upsample", "cross_entropy", "skip", "metrics")
CATALOGUE = Path(__file__).parent / "exercise_mistakes"


def _mistakes():
    for name in TRAINING:
        for path in sorted((CATALOGUE / name).glob("*.py")):
            if path.name != "correct.py":
                yield pytest.param(name, path, id=f"{name}/{path.stem}")


def _docstring(path: Path) -> tuple[str, str]:
    """(the first line, the text after 'Symptom:') of a mistake file's docstring."""
    text = ast.get_docstring(ast.parse(path.read_text())) or ""
    symptoms = [line.split("Symptom:", 1)[1].strip() for line in text.splitlines()
                if line.startswith("Symptom:")]
    assert len(symptoms) == 1 and symptoms[0], f"{path}: no single 'Symptom: <text>' line"
    return text.splitlines()[0], symptoms[0]


@pytest.mark.parametrize("name", TRAINING)
def test_the_reference_passes_every_check(name):
    exercise = exercises.get(name)
    report = run_exercise(exercise, functions=exercise.reference())
    assert report.passed, report.text()
    assert [r.status for r in report.results] == ["pass"] * len(exercise.checks)


@pytest.mark.parametrize("name", TRAINING)
def test_a_correct_learner_solution_passes_every_check(name):
    report = run_exercise(exercises.get(name), path=str(CATALOGUE / name / "correct.py"))
    assert report.passed, report.text()
    assert "Every check passed" in report.text()


@pytest.mark.parametrize("name", TRAINING)
def test_the_skeleton_fails_as_not_implemented_yet(name, tmp_path):
    path, written = exercises.start(name, str(tmp_path))
    assert written
    report = run_exercise(exercises.get(name), path=path)
    assert not report.passed
    assert report.not_implemented is not None
    assert "is not implemented yet" in report.text()
    assert f"Exercise {exercises.get(name).number}: " in str(report.not_implemented)
    assert report.status == "in progress"


@pytest.mark.parametrize("name", TRAINING)
def test_an_empty_file_fails(name, tmp_path):
    path = tmp_path / f"{name}.py"
    path.write_text("")
    report = run_exercise(exercises.get(name), path=str(path))
    assert not report.passed and report.status == "failing"
    assert "defines no function" in report.text()
    assert "No check could run." in report.text()


@pytest.mark.parametrize("name", TRAINING)
def test_every_exercise_has_a_catalogue(name):
    mistakes = [path for path in (CATALOGUE / name).glob("*.py") if path.name != "correct.py"]
    assert len(mistakes) >= 3, f"{name}: only {len(mistakes)} catalogued mistakes"


@pytest.mark.parametrize(("name", "path"), list(_mistakes()))
def test_every_catalogued_mistake_is_caught_with_its_symptom(name, path):
    what, symptom = _docstring(path)
    assert what, f"{path}: the docstring's first line should describe the bug"
    report = run_exercise(exercises.get(name), path=str(path))
    text = report.text()
    assert not report.passed, f"{path.name} ({what}) passed every check:\n{text}"
    assert report.load_failure is None and report.not_implemented is None, text
    assert report.failures(), text
    named = [line for line in text.splitlines()
             if line.strip().startswith("Symptom:") and symptom in line]
    assert named, f"{path.name}: no Symptom line of the report says {symptom!r}:\n{text}"
