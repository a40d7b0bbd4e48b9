"""Every lesson runs clean in quick mode: its asserts are the lesson's claims."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

LESSONS_DIR = Path(__file__).resolve().parent.parent / "lessons"
LESSONS = sorted(LESSONS_DIR.glob("[0-9][0-9]_*.py"))


def test_lessons_are_numbered_without_gaps():
    numbers = [int(path.name[:2]) for path in LESSONS]
    assert numbers == list(range(1, len(numbers) + 1)), [p.name for p in LESSONS]
    assert len(numbers) >= 13


def test_lessons_readme_lists_every_lesson():
    readme = (LESSONS_DIR / "README.md").read_text()
    for path in LESSONS:
        assert path.name in readme, f"{path.name} is missing from lessons/README.md"


@pytest.mark.parametrize("lesson", LESSONS, ids=[path.stem for path in LESSONS])
def test_lesson_runs_in_quick_mode(lesson, tmp_path):
    # Run from an unrelated folder: a lesson must work from anywhere.
    result = subprocess.run([sys.executable, str(lesson), "--quick", "--out", str(tmp_path)],
                            capture_output=True, text=True, cwd=tmp_path, timeout=180,
                            env={**os.environ, "MPLBACKEND": "Agg"})
    assert result.returncode == 0, f"{lesson.name} failed:\n{result.stdout}\n{result.stderr}"
    assert "every check passed" in result.stdout
    announced = re.findall(r"\[figure\] (\S+)", result.stdout)
    for figure in announced:
        assert Path(figure).is_file() and Path(figure).stat().st_size > 0, figure


@pytest.mark.parametrize("lesson", LESSONS, ids=[path.stem for path in LESSONS])
def test_lesson_docstring_says_what_it_teaches_and_how_to_run_it(lesson):
    source = lesson.read_text()
    assert source.startswith('"""'), f"{lesson.name} has no module docstring"
    docstring = source.split('"""')[1]
    assert docstring.strip().startswith(f"Lesson {lesson.name[:2]}")
    assert f"lessons/{lesson.name}" in docstring, "the docstring should say how to run it"


def _exercises_named(lesson: Path) -> list[str]:
    found = re.search(r"course\.start\(__doc__, exercises=\[([^\]]*)\]", lesson.read_text())
    return re.findall(r'"(\w+)"', found.group(1)) if found else []


def test_lessons_point_to_the_exercises_that_build_what_they_teach():
    """Each named exercise exists, and every exercise is pointed to by some lesson."""
    from minifcn import exercises

    named = {name: lesson.name for lesson in LESSONS for name in _exercises_named(lesson)}
    unknown = sorted(set(named) - set(exercises.names()))
    assert not unknown, f"lessons name exercises that do not exist: {unknown}"
    orphans = sorted(set(exercises.names()) - set(named))
    assert not orphans, f"no lesson points to the exercises {orphans}"
    readme = (LESSONS_DIR / "README.md").read_text()
    for name in exercises.names():
        assert f"`{name}`" in readme, f"lessons/README.md does not list the exercise {name}"


def test_a_lesson_ends_by_pointing_to_its_exercise(tmp_path):
    lesson = LESSONS_DIR / "12_metrics.py"
    result = subprocess.run([sys.executable, str(lesson), "--quick", "--out", str(tmp_path)],
                            capture_output=True, text=True, cwd=tmp_path, timeout=180,
                            env={**os.environ, "MPLBACKEND": "Agg"})
    assert result.returncode == 0, result.stderr
    assert ("Now build it yourself: minifcn exercises start metrics, fill it in, then "
            "minifcn exercises check metrics (and after it: cross_entropy).") in result.stdout
