"""Every exercise against its mistake catalogue.

For each exercise with a file: an independent correct learner solution
(tests/exercise_mistakes/<name>/correct.py) passes every check; an empty file fails; and every
catalogued mistake (tests/exercise_mistakes/<name>/<mistake>.py, one typical bug each) fails,
with its symptom (the ``Symptom:`` line of its docstring) named on a ``Symptom:`` line of the
report: the checker recognised the mistake, not merely that something is off. (minifcn's own
functions and the skeletons are tested for every exercise in test_exercises.py.)
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

from minifcn import exercises
from minifcn.exercises.framework import run_exercise

FILE_EXERCISES = [name for name in exercises.names() if exercises.get(name).functions]
CATALOGUE = Path(__file__).parent / "exercise_mistakes"


def _mistakes():
    for name in FILE_EXERCISES:
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


def test_the_catalogue_holds_at_least_fifteen_mistakes():
    assert len(list(_mistakes())) >= 15


@pytest.mark.parametrize("name", FILE_EXERCISES)
def test_every_exercise_has_a_catalogue(name):
    mistakes = [path for path in (CATALOGUE / name).glob("*.py") if path.name != "correct.py"]
    assert len(mistakes) >= 3, f"{name}: only {len(mistakes)} catalogued mistakes"


@pytest.mark.parametrize("name", FILE_EXERCISES)
def test_a_correct_learner_solution_passes_every_check(name):
    report = run_exercise(exercises.get(name), path=str(CATALOGUE / name / "correct.py"))
    assert report.passed, report.text()


@pytest.mark.parametrize("name", FILE_EXERCISES)
def test_an_empty_file_fails(name, tmp_path):
    path = tmp_path / f"{name}.py"
    path.write_text("")
    report = run_exercise(exercises.get(name), path=str(path))
    assert not report.passed
    assert "defines no function" in report.text()


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
