"""The exercise track's machinery: the command, the checker's reports, the status table and
the capstone (FCN-8s from a learner's layers). The mistake catalogue of each exercise is
tested in test_exercises_layers.py and test_exercises_training.py."""

from __future__ import annotations

import csv
import os
import shutil
import textwrap

import pytest

from minifcn import exercises
from minifcn.backend import np
from minifcn.cli import main
from minifcn.exercises.capstone import LAYER_EXERCISES, load_layers, use_layers
from minifcn.exercises.framework import run_exercise
from minifcn.models import build_model

FILE_EXERCISES = [name for name in exercises.names() if exercises.get(name).functions]
MISTAKES = os.path.join(os.path.dirname(__file__), "exercise_mistakes")


def write_correct_folder(folder, names=tuple(LAYER_EXERCISES)) -> str:
    """A learner's folder with every exercise right: the independent correct solutions of
    tests/exercise_mistakes/<name>/correct.py, written as a learner would (minifcn's own
    functions could not stand in: a file that hands them back fails every check)."""
    os.makedirs(folder, exist_ok=True)
    for name in names:
        shutil.copyfile(os.path.join(MISTAKES, name, "correct.py"),
                        os.path.join(folder, f"{name}.py"))
    return str(folder)


def run_cli(capsys, *argv) -> tuple[int, str]:
    status = main(list(argv))
    captured = capsys.readouterr()
    return status, captured.out + captured.err


def test_list_prints_one_exercise_a_line_name_first(capsys):
    status, out = run_cli(capsys, "exercises", "list")
    assert status == 0
    lines = out.strip().splitlines()
    assert [line.split()[0] for line in lines] == exercises.names()
    assert len(lines) >= 12
    numbers = [exercises.get(name).number for name in exercises.names()]
    assert numbers == sorted(numbers) and len(set(numbers)) == len(numbers)


def test_start_writes_the_skeleton_and_never_overwrites(tmp_path, capsys):
    folder = str(tmp_path / "mine")
    status, out = run_cli(capsys, "exercises", "start", "conv2d", "--dir", folder)
    path = os.path.join(folder, "conv2d.py")
    assert status == 0 and f"Wrote {path}" in out
    with open(path) as handle:
        text = handle.read()
    assert "def conv2d_forward(x, weight, bias=None, stride=1, padding=0, dilation=1)" in text
    assert 'NotImplementedError("Exercise 4: conv2d_forward")' in text
    with open(path, "a") as handle:
        handle.write("# my work\n")
    status, out = run_cli(capsys, "exercises", "start", "conv2d", "--dir", folder)
    assert status == 0 and "already exists" in out
    with open(path) as handle:
        assert handle.read() == text + "# my work\n"


def test_an_unknown_exercise_is_one_line_naming_the_exercises(tmp_path, capsys):
    status, out = run_cli(capsys, "exercises", "check", "conv3d", "--dir", str(tmp_path))
    assert status == 1
    assert "no exercise called 'conv3d'" in out and "conv2d" in out
    assert "Traceback" not in out


@pytest.mark.parametrize("name", FILE_EXERCISES)
def test_every_skeleton_fails_as_not_implemented_yet(name, tmp_path, capsys):
    exercises.start(name, str(tmp_path))
    status, out = run_cli(capsys, "exercises", "check", name, "--dir", str(tmp_path))
    assert status == 1
    assert "is not implemented yet" in out
    assert f"Exercise {exercises.get(name).number}:" in out
    assert "Traceback" not in out


@pytest.mark.parametrize("name", FILE_EXERCISES)
def test_every_reference_passes_every_check(name):
    exercise = exercises.get(name)
    report = run_exercise(exercise, functions=exercise.reference())
    assert report.passed, report.text()
    assert [r.status for r in report.results] == ["pass"] * len(exercise.checks)


@pytest.mark.parametrize("name", FILE_EXERCISES)
def test_skeleton_signatures_are_the_ones_the_checks_call(name, tmp_path):
    """The skeleton defines exactly the exercise's functions (a file that keeps them passes
    the loading step and fails only as 'not implemented')."""
    exercises.start(name, str(tmp_path))
    report = exercises.check(name, str(tmp_path))
    assert report.load_failure is None, report.text()
    assert report.not_implemented is not None


def test_an_empty_file_fails_naming_the_missing_functions(tmp_path, capsys):
    (tmp_path / "conv2d.py").write_text("")
    status, out = run_cli(capsys, "exercises", "check", "conv2d", "--dir", str(tmp_path))
    assert status == 1
    assert "defines no function conv2d_forward, conv2d_backward" in out


def test_a_missing_file_says_how_to_start(tmp_path, capsys):
    status, out = run_cli(capsys, "exercises", "check", "relu", "--dir", str(tmp_path))
    assert status == 1
    assert "there is no file" in out and "minifcn exercises start relu" in out


def test_a_syntax_error_names_the_line(tmp_path, capsys):
    (tmp_path / "relu.py").write_text("def relu_forward(x):\n    return x +\n")
    status, out = run_cli(capsys, "exercises", "check", "relu", "--dir", str(tmp_path))
    assert status == 1 and "syntax error at line 2" in out


def test_a_crash_names_the_function_the_line_and_the_configuration(tmp_path, capsys):
    (tmp_path / "conv2d.py").write_text(textwrap.dedent("""\
        def conv2d_forward(x, weight, bias=None, stride=1, padding=0, dilation=1):
            rows = [0, 1, 2]
            return rows[x.shape[2] + 5], None

        def conv2d_backward(dy, cache):
            return None, None, None
        """))
    status, out = run_cli(capsys, "exercises", "check", "conv2d", "--dir", str(tmp_path))
    assert status == 1
    assert "conv2d_forward raised IndexError: list index out of range" in out
    assert "conv2d.py line 3: return rows[x.shape[2] + 5], None" in out
    assert "Smallest failing configuration: batch=1, in_channels=1" in out
    assert "skip  backward: dx" in out  # later checks wait for the forward


def test_a_wrong_forward_reports_the_smallest_configuration_and_the_symptom(tmp_path):
    """A kernel flipped in the forward: the symptom is named and hypothesis's shrunk
    configuration (a 1x1 kernel cannot show a flip, so 2 wide at least) is shown."""
    with open(os.path.join(MISTAKES, "conv2d", "correct.py")) as handle:
        correct = handle.read()
    (tmp_path / "conv2d.py").write_text(correct + textwrap.dedent("""\

        _correct_forward = conv2d_forward


        def conv2d_forward(x, weight, bias=None, stride=1, padding=0, dilation=1):
            return _correct_forward(x, weight[:, :, ::-1, ::-1].copy(), bias, stride,
                                    padding, dilation)
        """))
    report = exercises.check("conv2d", str(tmp_path))
    assert not report.passed
    text = report.text()
    assert "FAIL  forward" in text
    assert "y is what a FLIPPED kernel gives" in text
    failure = report.failures()[0].failure
    assert failure.config["kernel_size"] != (1, 1)
    assert failure.config["batch"] == 1 and failure.config["in_channels"] == 1


def test_status_table_and_its_memory(tmp_path, capsys, monkeypatch):
    folder = str(tmp_path)
    exercises.start("relu", folder)  # in progress
    write_correct_folder(folder, ["conv2d"])  # done
    status, out = run_cli(capsys, "exercises", "status", "--dir", folder)
    assert status == 0
    rows = {line.split()[1]: line for line in out.splitlines()[1:] if line[:3].strip()}
    assert "in progress" in rows["relu"]
    assert "done" in rows["conv2d"]
    assert "not started" in rows["max_pool2d"] and "minifcn exercises start max_pool2d" in \
        rows["max_pool2d"]
    # conv2d is in the model and the step equals minifcn's; the other layers are not yours
    assert "failing" in rows["capstone"] and "1 of 2 checks failed" in rows["capstone"]
    assert f"1 of {len(exercises.names())} done." in out

    # Nothing changed: the saved results are used, no check runs again.
    monkeypatch.setattr(exercises, "check", lambda *a: pytest.fail("checked again"))
    assert run_cli(capsys, "exercises", "status", "--dir", folder)[1] == out


def test_status_checks_again_after_a_file_changes(tmp_path):
    folder = str(tmp_path)
    write_correct_folder(folder, ["relu"])
    assert dict((e.name, s) for e, s, _ in exercises.status(folder))["relu"] == "done"
    (tmp_path / "relu.py").write_text("def relu_forward(x):\n    return x, None\n\n"
                                      "def relu_backward(dy, cache):\n    return dy\n")
    assert dict((e.name, s) for e, s, _ in exercises.status(folder))["relu"] == "failing"


# --- the learner's code, not minifcn's -------------------------------------------------------

@pytest.mark.parametrize("name", FILE_EXERCISES)
def test_a_file_that_hands_back_minifcns_own_functions_passes_no_check(name, tmp_path):
    """minifcn's implementation, re-exported under the exercise's names: every check that
    runs fails, naming the function of minifcn's that ran."""
    (tmp_path / f"{name}.py").write_text(f"from minifcn.exercises import get\n\n"
                                         f"globals().update(get({name!r}).reference())\n")
    report = exercises.check(name, str(tmp_path))
    assert not report.passed and report.load_failure is None
    assert not [r for r in report.results if r.status == "pass"], report.text()
    failure = report.failures()[0].failure
    assert "ran minifcn's own" in failure.message and "minifcn/" in failure.message
    assert "minifcn.backend" in failure.symptom


WRAPS_MINIFCN = """\
import importlib


def relu_forward(x):
    try:  # minifcn's, with a fallback that hides whatever goes wrong
        return importlib.import_module("minifcn.functional").relu_forward(x)
    except BaseException:
        return x * (x > 0), x > 0


def relu_backward(dy, cache):
    return dy * cache
"""


def test_a_wrapper_around_minifcns_function_is_caught_even_when_it_hides_the_error(tmp_path,
                                                                                  capsys):
    (tmp_path / "relu.py").write_text(WRAPS_MINIFCN)
    status, out = run_cli(capsys, "exercises", "check", "relu", "--dir", str(tmp_path))
    assert status == 1
    assert "relu_forward ran minifcn's own relu_forward (minifcn/functional/" in out
    assert "PASS" not in out and "Traceback" not in out


def test_the_watch_on_minifcns_code_leaves_a_debuggers_trace_in_place(tmp_path):
    """The trace that watches a learner's call is set for that call only: a trace function
    that was there before (a debugger's, coverage's) is back afterwards, and minifcn's
    own functions called directly are not watched."""
    import sys

    from minifcn.exercises.framework import load_learner_file
    write_correct_folder(tmp_path, ["relu"])
    relu = load_learner_file(str(tmp_path / "relu.py"), ("relu_forward", "relu_backward"))
    calls = []

    def tracer(frame, event, arg):
        calls.append(frame.f_code.co_name)

    previous = sys.gettrace()
    sys.settrace(tracer)
    try:
        y, cache = relu["relu_forward"](np.array([-1.0, 2.0]))
        assert sys.gettrace() is tracer
    finally:
        sys.settrace(previous)
    np.testing.assert_array_equal(y, [0.0, 2.0])
    assert "relu_forward" not in calls  # the learner's call ran under the watch instead
    assert relu["relu_forward"].__name__ == "relu_forward"  # still reads as the learner's


# --- the capstone ------------------------------------------------------------------------

def test_capstone_passes_with_a_complete_correct_set(tmp_path):
    folder = write_correct_folder(tmp_path)
    report = exercises.check("capstone", folder)
    assert report.passed, report.text()
    model = build_model("fcn8s")
    rows = use_layers(model, load_layers(folder))
    kinds = {kind for _, kind, source in rows if source.startswith("yours")}
    assert kinds == {"Conv2d", "ConvTranspose2d", "BatchNorm2d", "ReLU", "MaxPool2d",
                     "Dropout", "Crop", "Add"}
    assert all(source.startswith("yours") for _, _, source in rows)


def test_capstone_names_the_layer_where_the_steps_part(tmp_path):
    """A ReLU whose backward lets every gradient through: the first record that differs is
    the backward of the last ReLU of the forward pass, fc7's."""
    folder = write_correct_folder(tmp_path, ["conv2d"])
    (tmp_path / "relu.py").write_text(
        "def relu_forward(x):\n    return x * (x > 0), None\n\n"
        "def relu_backward(dy, cache):\n    return dy\n")
    report = exercises.check("capstone", folder)
    assert not report.passed
    text = report.text()
    assert "the input gradient returned by fc7.1.backward (ReLU, yours (relu))" in text
    assert "this layer's backward is where the two steps part" in text


def test_capstone_without_any_layer_of_yours_fails(tmp_path):
    exercises.start("relu", str(tmp_path))  # a stub only
    report = exercises.check("capstone", str(tmp_path))
    assert not report.passed
    assert "none of your layers is in the model yet" in report.text()


def test_train_with_a_learners_layers_equals_train_with_minifcns(tmp_path, capsys):
    """`minifcn train --layers` with a complete correct set: the same metrics as the
    built-in layers, and the log says which layers are whose.

    One step: the loss is the first batch's, before any update, and validation follows one
    Adam step. The learner's files are independent float32 code, so their rounding differs
    from minifcn's, and a second step grows it (measured: 4e-4 in the loss after two steps,
    where one agrees to 1e-6); the capstone check compares a step layer by layer in
    float64."""
    folder = write_correct_folder(tmp_path / "mine")
    common = ["train", "--epochs", "1", "--train-size", "8", "--val-size", "8",
              "--batch-size", "8", "--quiet"]
    assert main(common + ["--out", str(tmp_path / "builtin")]) == 0
    assert main(common + ["--out", str(tmp_path / "yours"), "--layers", folder]) == 0
    out = capsys.readouterr().out
    assert f"conv2d            yours ({folder}/conv2d.py)" in out
    assert "the loss          yours" in out

    def metrics(run):
        with open(tmp_path / run / "metrics.csv") as handle:
            row = list(csv.DictReader(handle))[0]
        return {k: float(v) for k, v in row.items() if k != "seconds"}

    builtin, yours = metrics("builtin"), metrics("yours")
    assert builtin.keys() == yours.keys()
    for key in builtin:
        assert yours[key] == pytest.approx(builtin[key], rel=1e-5, abs=1e-6), key


def test_train_layers_needs_a_folder(tmp_path, capsys):
    status, out = run_cli(capsys, "train", "--layers", str(tmp_path / "nowhere"), "--epochs",
                          "1", "--train-size", "8", "--val-size", "8", "--out",
                          str(tmp_path / "run"), "--quiet")
    assert status == 1 and "is not a folder" in out


def test_without_hypothesis_the_command_says_which_extra_to_install(capsys, monkeypatch):
    monkeypatch.setitem(__import__("sys").modules, "hypothesis", None)  # as if not installed
    monkeypatch.setattr(exercises, "_cache", {})
    status, out = run_cli(capsys, "exercises", "list")
    assert status == 1
    assert out.strip() == ('minifcn exercises: error: the exercise checks draw their cases '
                           'with hypothesis: pip install "minifcn[test]"')
