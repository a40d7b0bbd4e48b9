"""``minifcn exercises grade``: points, limits, reports, and the ready-made autograder set-ups.

Every exercise runs in a child process; these tests grade small folders of learner files
(the independent correct solutions for a correct file, as test_exercises.py copies them, and the
catalogued mistakes of tests/exercise_mistakes/ for wrong ones) and read the reports.
"""

from __future__ import annotations

import base64
import json
import os
import shutil
import signal
import subprocess
import sys
import textwrap
import time
import xml.etree.ElementTree as ET
from fractions import Fraction
from pathlib import Path

import pytest
from test_exercises import write_correct_folder

from minifcn import exercises
from minifcn.cli import main
from minifcn.exercises import grade as grading

MISTAKES = Path(__file__).parent / "exercise_mistakes"
LINUX = sys.platform.startswith("linux")

ENDLESS_RELU = """\
def relu_forward(x):
    while True:
        pass


def relu_backward(dy, cache):
    return dy
"""


def run_cli(capsys, *argv) -> tuple[int, str, str]:
    try:
        status = main(list(argv))
    except SystemExit as done:  # argparse's own usage errors
        status = done.code
    captured = capsys.readouterr()
    return status, captured.out, captured.err


def one_line_error(status: int, err: str, expected_status: int) -> str:
    lines = err.strip().splitlines()
    assert status == expected_status and len(lines) == 1, (status, err)
    assert "Traceback" not in err
    return lines[0]


def by_name(report: dict) -> dict[str, dict]:
    return {exercise["name"]: exercise for exercise in report["exercises"]}


def without_timings(value):
    """A JSON report without what may change from run to run: durations and timings."""
    if isinstance(value, dict):
        return {key: without_timings(item) for key, item in value.items()
                if key not in ("seconds", "measurement")}
    if isinstance(value, list):
        return [without_timings(item) for item in value]
    return value


# Gradescope's results.json, as its "Autograder Specifications" page documents it.
GRADESCOPE_TOP = {"score", "execution_time", "output", "output_format", "test_output_format",
                  "test_name_format", "visibility", "stdout_visibility", "extra_data", "tests",
                  "leaderboard"}
GRADESCOPE_TEST = {"score", "max_score", "status", "name", "name_format", "number", "output",
                   "output_format", "tags", "visibility", "extra_data"}
VISIBILITY = {"hidden", "after_due_date", "after_published", "visible"}
FORMATS = {"text", "html", "simple_format", "md", "ansi"}


def check_gradescope(results: dict) -> None:
    assert set(results) <= GRADESCOPE_TOP, set(results) - GRADESCOPE_TOP
    assert isinstance(results["score"], (int, float))
    assert isinstance(results.get("execution_time", 0), int)
    assert results.get("visibility", "visible") in VISIBILITY
    assert results.get("output_format", "simple_format") in FORMATS
    assert results["tests"]
    for test in results["tests"]:
        assert set(test) <= GRADESCOPE_TEST, set(test) - GRADESCOPE_TEST
        assert isinstance(test["name"], str) and test["name"]
        assert isinstance(test["number"], str)
        assert 0 <= test["score"] <= test["max_score"]
        assert test["status"] in ("passed", "failed")
        assert (test["status"] == "passed") <= (test["score"] == test["max_score"])
        assert isinstance(test["output"], str) and "\r" not in test["output"]
        assert test["output_format"] in FORMATS and test["visibility"] in VISIBILITY
    assert results["score"] == pytest.approx(sum(test["score"] for test in results["tests"]))


# --- the target: a correct conv2d, a wrong max_pool2d, a relu that never returns -------------

def test_a_right_conv2d_a_wrong_max_pool2d_and_an_endless_relu_in_one_grading(tmp_path, capsys):
    folder = tmp_path / "submission"
    write_correct_folder(folder, ["conv2d"])
    shutil.copy(MISTAKES / "max_pool2d" / "assigns.py", folder / "max_pool2d.py")
    (folder / "relu.py").write_text(ENDLESS_RELU)
    out = tmp_path / "out"
    start = time.perf_counter()
    status, stdout, err = run_cli(
        capsys, "exercises", "grade", str(folder), "--timeout", "10",
        "--json", str(out / "grades.json"), "--gradescope", str(out / "results.json"),
        "--junit", str(out / "junit.xml"), "--classroom", str(out / "classroom.txt"))
    seconds = time.perf_counter() - start
    assert status == 0, err
    assert seconds < 60, f"graded in {seconds:.0f} s"

    report = json.loads((out / "grades.json").read_text())
    assert report["schema"] == "minifcn-grade" and report["version"] == 1
    graded = by_name(report)
    assert list(graded) == exercises.names()  # every exercise, in course order
    conv2d, pool, relu = graded["conv2d"], graded["max_pool2d"], graded["relu"]
    assert conv2d["status"] == "passed" and conv2d["score"] == conv2d["max_score"] == 6
    assert [c["status"] for c in conv2d["checks"]] == ["pass"] * 7
    assert pool["status"] == "failed" and 0 < pool["score"] < pool["max_score"]
    failed = [c for c in pool["checks"] if c["status"] == "fail"]
    assert failed[0]["key"] == "backward" and "several windows read" in failed[0]["detail"]
    assert pool["reason"].startswith(f"{len(failed)} of 5 checks did not pass; first failure: "
                                     f"backward")
    assert relu["status"] == "time limit" and relu["score"] == 0
    assert relu["reason"] == "time limit (10 s)"
    assert {c["status"] for c in relu["checks"]} == {"not run"}
    assert "Your code was stopped after 10 s" in relu["report"]
    # the capstone would run the same endless relu: not run again
    assert graded["capstone"]["status"] == "time limit"
    assert graded["capstone"]["reason"] == "not run: relu ended with time limit (10 s)"
    assert graded["im2col"]["status"] == "not submitted"
    assert graded["im2col"]["reason"] == "no file im2col.py"
    assert report["score"] == sum(e["score"] for e in report["exercises"]) == 6 + pool["score"]
    assert report["limits"]["timeout_seconds"] == 10

    # the table on stdout: a row per exercise, then the total
    rows = {line.split()[1]: line for line in stdout.splitlines()
            if line[:3].strip().isdigit()}
    assert "6 / 6  passed" in rows["conv2d"]
    assert "0 / 4  time limit     time limit (10 s)" in rows["relu"]
    assert f"Total: {report['score']} of {report['max_score']} points" in stdout

    results = json.loads((out / "results.json").read_text())
    check_gradescope(results)
    tests = {test["name"].split(":")[0]: test for test in results["tests"]}
    assert tests["conv2d"]["status"] == "passed" and tests["conv2d"]["score"] == 6
    assert tests["relu"]["status"] == "failed" and "time limit" in tests["relu"]["output"]
    assert tests["max_pool2d"]["output"] == pool["report"]

    junit = ET.parse(out / "junit.xml").getroot()
    suites = {suite.get("name"): suite for suite in junit.iter("testsuite")}
    assert len(suites["conv2d"].findall("testcase")) == 7
    assert not suites["conv2d"].findall("testcase/failure")
    pool_failures = suites["max_pool2d"].findall("testcase/failure")
    assert [f.get("type") for f in pool_failures] == ["fail"] * len(failed)
    assert int(junit.get("tests")) == sum(len(e["checks"]) for e in report["exercises"])
    properties = {p.get("name"): p.get("value") for p in suites["relu"].iter("property")}
    assert properties == {"score": "0", "max_score": "4", "status": "time limit",
                          "reason": "time limit (10 s)"}

    classroom = json.loads(base64.b64decode((out / "classroom.txt").read_text()))
    assert classroom["version"] == 1 and classroom["status"] == "fail"
    assert classroom["max_score"] == report["max_score"]
    assert sum(test["score"] for test in classroom["tests"]) == report["score"]
    assert {test["status"] for test in classroom["tests"]} == {"pass", "fail"}


def test_minifcns_own_code_handed_back_scores_nothing(tmp_path, capsys):
    """A submission whose conv2d is minifcn's, re-exported: 0 points, and the report says
    which of minifcn's functions ran; the same folder's own relu is graded as ever."""
    folder = tmp_path / "submission"
    write_correct_folder(folder, ["relu"])
    (folder / "conv2d.py").write_text("from minifcn.functional import conv2d_forward, "
                                      "conv2d_backward  # noqa: F401\n")
    out = tmp_path / "grades.json"
    status, _, err = run_cli(capsys, "exercises", "grade", str(folder), "--only",
                             "relu,conv2d", "--json", str(out))
    assert status == 0, err
    graded = by_name(json.loads(out.read_text()))
    assert graded["relu"]["score"] == graded["relu"]["max_score"] == 4
    conv2d = graded["conv2d"]
    assert conv2d["status"] == "failed" and conv2d["score"] == 0
    assert {c["status"] for c in conv2d["checks"]} <= {"fail", "skip"}
    assert "conv2d_forward ran minifcn's own conv2d_forward (minifcn/functional/conv.py" in \
        conv2d["checks"][0]["detail"]


def test_two_gradings_give_the_same_json_but_for_timings(tmp_path):
    folder = tmp_path / "submission"
    write_correct_folder(folder, ["conv2d"])
    shutil.copy(MISTAKES / "max_pool2d" / "last_max.py", folder / "max_pool2d.py")
    (folder / "relu.py").write_text("import ctypes\n\n\ndef relu_forward(x):\n"
                                    "    ctypes.string_at(0)\n\n\n"
                                    "def relu_backward(dy, cache):\n    return dy\n")
    first, second = (grading.to_json(grading.grade(str(folder), timeout=30,
                                                   only="relu,conv2d,max_pool2d"))
                     for _ in range(2))
    assert without_timings(first) == without_timings(second)
    graded = by_name(first)
    assert graded["conv2d"]["checks"][-1]["measurement"]  # the timing is there, apart
    assert "conv2d_naive" not in graded["conv2d"]["report"]
    assert graded["max_pool2d"]["status"] == "failed"
    assert graded["relu"]["reason"] == "crashed: signal SIGSEGV"
    assert f'File "{folder}/relu.py", line 5 in relu_forward' in graded["relu"]["report"]


def test_crashes_exits_and_memory_cost_their_exercise_only(tmp_path):
    folder = tmp_path / "sub"
    folder.mkdir()
    (folder / "conv2d_naive.py").write_text("import sys\n\n\ndef conv2d_naive(*args, **kw):\n"
                                            "    sys.exit(4)\n")
    (folder / "im2col.py").write_text("import os\n\n\ndef im2col(*args, **kw):\n"
                                      "    os._exit(3)\n\n\ndef col2im(*args, **kw):\n"
                                      "    os._exit(3)\n")
    if LINUX:  # elsewhere nothing limits the memory: the machine would really try
        (folder / "dropout.py").write_text(textwrap.dedent("""\
            from minifcn.backend import np


            def dropout_forward(x, *args, **kw):
                return np.ones(10 * 2**30 // 8), None  # 10 GiB


            def dropout_backward(dy, cache):
                return dy
            """))
    (folder / "avg_pool2d.py").write_text("def avg_pool2d_forward(x, *args, **kw):\n"
                                          "    return x, None\n")
    (folder / "bilinear_kernel.py").write_text("def bilinear_kernel(k):\n    return k +\n")
    write_correct_folder(folder, ["skip"])  # after every mishap: graded as ever
    result = grading.grade(str(folder), timeout=30, only=["conv2d_naive", "im2col", "dropout",
                                                          "avg_pool2d", "bilinear_kernel",
                                                          "skip"])
    graded = {e.name: e for e in result.exercises}
    assert (graded["conv2d_naive"].status, graded["conv2d_naive"].reason) == \
        ("crashed", "exited with status 4")
    assert (graded["im2col"].status, graded["im2col"].reason) == \
        ("crashed", "exited with status 3")
    assert "before the checks finished" in graded["im2col"].report
    if LINUX:
        assert (graded["dropout"].status, graded["dropout"].reason) == \
            ("memory limit", "memory limit (2048 MiB)")
        assert "more memory than the 2048 MiB" in graded["dropout"].report
    assert graded["avg_pool2d"].status == "failed"
    assert "defines no function avg_pool2d_backward" in graded["avg_pool2d"].reason
    assert graded["bilinear_kernel"].reason == (f"{folder}/bilinear_kernel.py has a syntax "
                                                f"error at line 2: invalid syntax")
    assert all(e.score == 0 for name, e in graded.items() if name != "skip")
    assert graded["skip"].status == "passed" and graded["skip"].score == 6
    assert result.memory_limit_enforced == LINUX
    assert not (folder / "__pycache__").exists()  # the learner's folder is left as it came
    assert not (folder / ".minifcn-status.json").exists()


@pytest.mark.skipif(not LINUX, reason="reads the process's state in /proc")
def test_a_time_limit_kills_everything_the_learners_code_started(tmp_path):
    folder = tmp_path / "sub"
    folder.mkdir()
    pid_file = tmp_path / "pid"
    (folder / "relu.py").write_text(textwrap.dedent(f"""\
        import subprocess
        import sys


        def relu_forward(x):
            child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(600)"])
            with open({str(pid_file)!r}, "w") as handle:
                handle.write(str(child.pid))
            while True:
                pass


        def relu_backward(dy, cache):
            return dy
        """))
    result = grading.grade(str(folder), timeout=3, only="relu")
    assert result.exercises[0].reason == "time limit (3 s)"
    pid = int(pid_file.read_text())
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline:
        try:
            with open(f"/proc/{pid}/status") as handle:
                state = [line for line in handle if line.startswith("State:")][0]
        except FileNotFoundError:
            break  # gone
        if "Z" in state.split()[1]:
            break  # dead, not yet reaped by init
        time.sleep(0.1)
    else:
        pytest.fail(f"the learner's process {pid} outlived the time limit: {state}")


# --- points --------------------------------------------------------------------------------

def test_default_points_one_a_check_none_for_measuring():
    table = grading.read_points(None)
    assert set(table) == set(exercises.names())
    assert table["relu"] == dict.fromkeys(["forward", "backward", "numerical", "gpu"], 1)
    assert table["conv2d"]["speed"] == 0 and table["conv2d"]["forward"] == 1
    assert sum(table["conv2d"].values()) == 6


def test_a_points_file_sets_totals_and_checks(tmp_path):
    path = tmp_path / "points.json"
    path.write_text(json.dumps({"exercises": {"relu": 10, "conv2d": 3,
                                              "max_pool2d": {"forward": 4, "ties": 0.5},
                                              "capstone": 0}}))
    table = grading.read_points(str(path))
    assert table["relu"] == dict.fromkeys(["forward", "backward", "numerical", "gpu"],
                                          Fraction(5, 2))
    assert sum(table["conv2d"].values()) == 3 and table["conv2d"]["speed"] == 0
    assert table["conv2d"]["forward"] == Fraction(1, 2)
    assert table["max_pool2d"] == {"forward": 4, "backward": 1, "ties": Fraction(1, 2),
                                   "numerical": 1, "gpu": 1}
    assert table["capstone"] == {"step": 0, "complete": 0}
    assert table["im2col"] == grading.read_points(None)["im2col"]

    toml = tmp_path / "points.toml"
    toml.write_text('[exercises]\nrelu = 10\ncapstone = 0\n\n[exercises.max_pool2d]\n'
                    'forward = 4\nties = 0.5\n\n[exercises.conv2d]\nforward = 0.5\n'
                    'dx = 0.5\ndweight = 0.5\ndbias = 0.5\nnumerical = 0.5\ngpu = 0.5\n')
    assert grading.read_points(str(toml)) == table


@pytest.mark.parametrize(("content", "expected"), [
    ('{"exercises": {"relu2": 3}}', "no exercise called 'relu2'; the exercises are: relu, "),
    ('{"exercises": {"conv2d": {"fwd": 1}}}',
     "exercise conv2d has no check 'fwd'; its checks are: forward, dx, dweight, dbias, "
     "numerical, gpu, speed"),
    ('{"exercises": {"relu": -1}}', "relu (the exercise's total, or a table of check -> "
                                    "points) should be a number >= 0, got -1"),
    ('{"exercises": {"relu": {"forward": true}}}',
     "relu.forward should be a number of points, got true"),
    ('{"exercises": {"relu": [1, 2]}}', "should be a number of points, got [1, 2]"),
    ('{"relu": 3}', "expected a table with one key, \"exercises\""),
    ('{"exercises": {"relu": 3,}}', "not valid JSON: Expecting property name enclosed in "
                                    "double quotes at line 1 column 26"),
])
def test_a_bad_points_file_is_one_line_naming_what_is_wrong(tmp_path, capsys, content,
                                                            expected):
    path = tmp_path / "points.json"
    path.write_text(content)
    status, _, err = run_cli(capsys, "exercises", "grade", str(tmp_path), "--points",
                             str(path))
    line = one_line_error(status, err, 2)
    assert line.startswith(f"minifcn exercises grade: error: --points {path}: ")
    assert expected in line


# --- a class at once: a gradebook ----------------------------------------------------------

def test_a_class_of_folders_gives_a_gradebook_that_agrees_with_each_grading(tmp_path, capsys):
    """Four learners (one right, one with a catalogued mistake, one who handed in nothing,
    and a second 'alice' from another section): a CSV row per folder, whose scores are the
    ones each folder gets when it is graded on its own."""
    class_ = tmp_path / "submissions"
    write_correct_folder(class_ / "alice", ["relu"])
    (class_ / "bob").mkdir(parents=True)
    shutil.copy(MISTAKES / "relu" / "in_place.py", class_ / "bob" / "relu.py")
    (class_ / "carol").mkdir()
    write_correct_folder(tmp_path / "section2" / "alice", ["relu"])
    folders = [str(class_ / name) for name in ("alice", "bob", "carol")]
    folders.append(str(tmp_path / "section2" / "alice"))
    book = tmp_path / "gradebook.csv"
    status, out, err = run_cli(capsys, "exercises", "grade", *folders, "--only", "relu,im2col",
                               "--csv", str(book), "--jobs", "2")
    assert status == 0, err
    assert out.count("Grading ") == 4 and "Gradebook: 4 folders" in out
    # One job at a time streams each row as it comes; the page printed is the same.
    assert run_cli(capsys, "exercises", "grade", *folders, "--only", "relu,im2col") == \
        (0, out.replace(f"Wrote {book}.\n", ""), "")

    import csv
    with open(book, newline="") as handle:
        rows = list(csv.DictReader(handle))
    assert list(rows[0]) == ["submission", "score", "max_score", "relu", "im2col", "problems"]
    assert [row["submission"] for row in rows] == [
        os.path.normpath(folders[0]), "bob", "carol", os.path.normpath(folders[3])]
    for folder, row in zip(folders, rows, strict=True):
        alone = grading.grade(folder, only="relu,im2col")
        scores = {e.name: e.score for e in alone.exercises}
        assert Fraction(row["score"]) == alone.score and Fraction(row["relu"]) == \
            scores["relu"] and Fraction(row["im2col"]) == scores["im2col"]
        assert Fraction(row["max_score"]) == alone.max_score
        assert row["problems"] == "; ".join(f"{e.name}: {e.status}" for e in alone.exercises
                                            if e.status != "passed")
    assert rows[0]["problems"] == "im2col: not submitted"
    assert rows[1]["problems"].startswith("relu: failed")
    assert Fraction(rows[0]["relu"]) == sum(grading.read_points(None)["relu"].values())


@pytest.mark.skipif(not LINUX, reason="interrupting the main thread is tested on Linux")
def test_interrupting_a_class_kills_every_running_child(tmp_path):
    """Ctrl-C reaches only the main thread; the children, in sessions of their own, would
    run on to their time limit unless grade_many kills them."""
    import threading

    folders = []
    for name in ("alice", "bob"):
        (tmp_path / name).mkdir()
        (tmp_path / name / "relu.py").write_text(ENDLESS_RELU)
        folders.append(str(tmp_path / name))
    started = time.perf_counter()

    def interrupt_once_both_run():
        while time.perf_counter() - started < 30:
            with grading._LIVE_LOCK:  # both relus running (not the memory-limit probes)
                if sum("--probe" not in child.args for child in grading._LIVE) == 2:
                    break
            time.sleep(0.05)
        # What Ctrl-C does: SIGINT to the main thread, which waits for the first folder.
        signal.pthread_kill(threading.main_thread().ident, signal.SIGINT)

    threading.Thread(target=interrupt_once_both_run, daemon=True).start()
    with pytest.raises(KeyboardInterrupt):
        grading.grade_many(folders, jobs=2, only="relu", timeout=60)
    assert time.perf_counter() - started < 30  # not the 60 s time limit
    assert not grading._LIVE


@pytest.mark.parametrize(("extra", "expected"), [
    (["--json", "grades.json"], "--json writes one folder's report; with 2 folders, --csv "
                                "FILE writes the gradebook"),
    (["--junit", "junit.xml"], "--junit writes one folder's report"),
    (["--write-setup", "github"], "--write-setup github: expected one folder to write into, "
                                  "got 2"),
])
def test_several_folders_refuse_what_takes_one(tmp_path, capsys, extra, expected):
    status, out, err = run_cli(capsys, "exercises", "grade", str(tmp_path), str(tmp_path),
                               *[str(tmp_path / a) if a.endswith((".json", ".xml")) else a
                                 for a in extra])
    assert expected in one_line_error(status, err, 2)
    assert "Grading" not in out and os.listdir(tmp_path) == []


def test_a_missing_folder_among_several_stops_before_any_grading(tmp_path, capsys):
    write_correct_folder(tmp_path / "alice", ["relu"])
    status, out, err = run_cli(capsys, "exercises", "grade", str(tmp_path / "alice"),
                               str(tmp_path / "bobb"), "--csv", str(tmp_path / "book.csv"))
    assert "'" + str(tmp_path / "bobb") + "' (no such folder)" in one_line_error(status, err, 2)
    assert "Grading" not in out and not (tmp_path / "book.csv").exists()


# --- usage and set-up errors ---------------------------------------------------------------

def test_help_is_plain_and_every_option_states_its_default(capsys):
    from test_cli import help_entries

    status, out, _ = run_cli(capsys, "exercises", "grade", "--help")
    assert status == 0 and "`" not in out
    entries = help_entries(out)
    assert set(entries) == {"-h", "--only", "--points", "--json", "--gradescope", "--junit",
                            "--classroom", "--csv", "--jobs", "--timeout", "--memory-mb",
                            "--write-setup"}
    for option, text in entries.items():
        assert option == "-h" or "(default: " in text, f"{option}: {text!r}"
    assert f"(default: {grading.DEFAULT_TIMEOUT:g})" in entries["--timeout"]
    assert f"(default: {grading.DEFAULT_MEMORY_MB})" in entries["--memory-mb"]


@pytest.mark.parametrize(("argv", "expected", "code"), [
    (["--only", "relu,conv3d"], "error: --only: no exercise called 'conv3d'; the exercises "
                                "are: relu, conv2d_naive", 2),
    (["--timeout", "0"], "argument --timeout: expected seconds > 0, got '0'", 2),
    (["--memory-mb", "lots"], "argument --memory-mb: invalid int value: 'lots'", 2),
])
def test_usage_errors_exit_with_status_2(tmp_path, capsys, argv, expected, code):
    status, _, err = run_cli(capsys, "exercises", "grade", str(tmp_path), *argv)
    assert status == code and expected in err and "Traceback" not in err


def test_a_folder_that_is_not_there_or_a_report_path_that_is_a_folder(tmp_path, capsys):
    status, _, err = run_cli(capsys, "exercises", "grade", str(tmp_path / "nowhere"))
    assert one_line_error(status, err, 2) == (
        f"minifcn exercises grade: error: DIR: expected the folder of a learner's exercise "
        f"files, got '{tmp_path / 'nowhere'}' (no such folder)")
    status, _, err = run_cli(capsys, "exercises", "grade", str(tmp_path), "--junit",
                             str(tmp_path))
    assert "--junit: expected a file to write" in one_line_error(status, err, 2)


@pytest.mark.skipif(not LINUX, reason="RLIMIT_AS is enforced on Linux only")
def test_a_child_that_cannot_start_is_a_setup_error_not_a_crashed_learner(tmp_path, capsys):
    write_correct_folder(tmp_path, ["relu"])
    status, out, err = run_cli(capsys, "exercises", "grade", str(tmp_path), "--memory-mb", "1",
                               "--json", str(tmp_path / "grades.json"))
    line = one_line_error(status, err, 1)
    assert line.startswith("minifcn exercises grade: error: grading cannot run here: the "
                           "child process that runs the checks")
    assert "--memory-mb 1" in line
    assert "relu" not in out and not (tmp_path / "grades.json").exists()


# --- the ready-made set-ups ----------------------------------------------------------------

@pytest.mark.skipif(shutil.which("bash") is None, reason="the scripts are bash")
def test_write_setup_gradescope_writes_the_scripts_and_never_overwrites(tmp_path, capsys):
    target = tmp_path / "autograder"
    status, out, err = run_cli(capsys, "exercises", "grade", "--write-setup", "gradescope",
                               str(target))
    assert status == 0, err
    assert sorted(os.listdir(target)) == ["points.json", "run_autograder", "setup.sh"]
    for script in ("setup.sh", "run_autograder"):
        assert os.access(target / script, os.X_OK)
        assert (target / script).read_text().startswith("#!/usr/bin/env bash\n")
        subprocess.run(["bash", "-n", str(target / script)], check=True)
    assert grading.read_points(str(target / "points.json")) == grading.read_points(None)
    assert "pip wheel --no-deps" in out

    (target / "run_autograder").write_text("# mine\n")
    status, _, err = run_cli(capsys, "exercises", "grade", "--write-setup", "gradescope",
                             str(target))
    assert "already exists; nothing was written" in one_line_error(status, err, 2)
    assert (target / "run_autograder").read_text() == "# mine\n"


@pytest.mark.skipif(shutil.which("bash") is None, reason="the scripts are bash")
def test_run_autograder_grades_a_fake_gradescope_tree(tmp_path, capsys):
    """The script as Gradescope runs it, with AUTOGRADER_ROOT standing in for /autograder
    and this Python for the virtual environment setup.sh makes."""
    root = tmp_path / "autograder"
    assert run_cli(capsys, "exercises", "grade", "--write-setup", "gradescope",
                   str(root / "source"))[0] == 0
    points = json.loads((root / "source" / "points.json").read_text())
    points["exercises"]["relu"] = 10
    (root / "source" / "points.json").write_text(json.dumps(points))
    submission = root / "submission"
    write_correct_folder(submission, ["relu"])  # the files at the top, as uploaded
    shutil.copy(MISTAKES / "max_pool2d" / "every_tie.py", submission / "max_pool2d.py")
    before = sorted(os.listdir(submission))
    env = dict(os.environ, AUTOGRADER_ROOT=str(root), MINIFCN_PYTHON=sys.executable,
               MINIFCN_TIMEOUT="30")
    done = subprocess.run(["bash", str(root / "source" / "run_autograder")], env=env,
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "Total: " in done.stdout
    results = json.loads((root / "results" / "results.json").read_text())
    check_gradescope(results)
    tests = {test["name"].split(":")[0]: test for test in results["tests"]}
    assert (tests["relu"]["score"], tests["relu"]["max_score"]) == (10, 10)
    assert tests["max_pool2d"]["status"] == "failed" and \
        0 < tests["max_pool2d"]["score"] < tests["max_pool2d"]["max_score"]
    assert "(my_minifcn/relu.py)" in tests["relu"]["output"]
    assert tests["im2col"]["output"].endswith("Not submitted: no file im2col.py.")
    assert sorted(os.listdir(submission)) == before


def _pip_reaches_an_index(tmp_path) -> bool:
    """Whether pip here can fetch a package (an index or local wheels), as setup.sh needs."""
    import numpy
    done = subprocess.run([sys.executable, "-m", "pip", "download", "--no-deps", "-q",
                           "-d", str(tmp_path / "probe"), f"numpy=={numpy.__version__}"],
                          capture_output=True, text=True, timeout=300)
    return done.returncode == 0


@pytest.mark.skipif(shutil.which("bash") is None, reason="the scripts are bash")
def test_setup_sh_then_run_autograder_as_gradescope_runs_them(tmp_path, capsys):
    """The whole Gradescope life, in a fake /autograder tree: the teacher's zip (the scripts,
    points.json and a minifcn wheel built from this checkout), setup.sh building its
    virtual environment, then run_autograder grading an upload with that environment's
    Python alone. It needs pip to reach packages (an index, or this machine's wheels)."""
    project = Path(grading.__file__).resolve().parents[2]
    if not (project / "pyproject.toml").is_file():
        pytest.skip("minifcn is not installed from a checkout here: no wheel to build")
    if not _pip_reaches_an_index(tmp_path):
        pytest.skip("pip reaches no package index here, and setup.sh installs from one")
    root = tmp_path / "autograder"
    source = root / "source"
    assert run_cli(capsys, "exercises", "grade", "--write-setup", "gradescope",
                   str(source))[0] == 0
    env = {key: value for key, value in os.environ.items()
           if key not in ("PYTHONPATH", "MINIFCN_PYTHON", "VIRTUAL_ENV")}
    env["AUTOGRADER_ROOT"] = str(root)

    def setup():
        return subprocess.run(["bash", str(source / "setup.sh")], env=env,
                              capture_output=True, text=True, timeout=900)

    forgot = setup()  # the teacher forgot the wheel
    assert forgot.returncode == 1, forgot.stdout + forgot.stderr
    assert forgot.stderr.strip().endswith(
        f"setup.sh: no minifcn-*.whl in {source}; put one in the autograder zip")

    subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "-q", "-w",
                    str(source), str(project)], check=True, capture_output=True, timeout=600)
    done = setup()
    assert done.returncode == 0, done.stdout + done.stderr
    setup_out = done.stdout
    assert "relu" in setup_out  # it ends by listing the exercises with the new install
    venv_python = root / "venv" / "bin" / "python"
    where = subprocess.run([str(venv_python), "-c", "import minifcn; print(minifcn.__file__)"],
                           env=env, cwd=tmp_path, capture_output=True, text=True, check=True)
    assert where.stdout.startswith(str(root / "venv")), where.stdout  # the wheel, not here

    write_correct_folder(root / "submission" / "my_minifcn", ["relu"])  # uploaded as a folder
    env["MINIFCN_TIMEOUT"] = "60"
    done = subprocess.run(["bash", str(source / "run_autograder")], env=env,
                          capture_output=True, text=True, timeout=900)
    assert done.returncode == 0, done.stdout + done.stderr
    results = json.loads((root / "results" / "results.json").read_text())
    check_gradescope(results)
    tests = {test["name"].split(":")[0]: test for test in results["tests"]}
    assert (tests["relu"]["score"], tests["relu"]["max_score"]) == (4, 4)
    assert tests["conv2d"]["score"] == 0 and "Not submitted" in tests["conv2d"]["output"]


def _grade_step_by_text(text: str) -> str:
    """Without PyYAML: the `run: |` block of the step whose id is minifcn."""
    lines = text.splitlines()
    at = lines.index("        id: minifcn")
    assert lines[at + 1] == "        run: |"
    block = []
    for line in lines[at + 2:]:
        if not line.startswith("          "):
            break
        block.append(line[10:])
    return "\n".join(block) + "\n"


@pytest.mark.skipif(shutil.which("bash") is None, reason="the step runs in bash")
def test_the_github_classroom_workflow_grades_and_reports_points(tmp_path, capsys):
    repo = tmp_path / "repo"
    assert run_cli(capsys, "exercises", "grade", "--write-setup", "github", str(repo))[0] == 0
    text = (repo / ".github" / "workflows" / "classroom.yml").read_text()
    try:
        import yaml
    except ImportError:  # a structural look at the text instead
        yaml = None
    if yaml is None:
        assert "\njobs:\n" in text and "permissions:\n  checks: write\n" in text
        assert "uses: classroom-resources/autograding-grading-reporter@v1" in text
        assert 'MINIFCN_RESULTS: "${{ steps.minifcn.outputs.result }}"' in text
        assert "runners: minifcn" in text
        grade_run = _grade_step_by_text(text)
    else:
        workflow = yaml.safe_load(text)
        assert workflow["name"] == "Autograding Tests"
        assert set(workflow["on"]) >= {"push", "repository_dispatch"}
        assert workflow["permissions"]["checks"] == "write"
        (job,) = workflow["jobs"].values()
        steps = {step.get("id", step.get("name")): step for step in job["steps"]}
        assert any(step.get("uses", "").startswith("actions/checkout@")
                   for step in job["steps"])
        assert "pip install" in steps["Install minifcn"]["run"]
        reporter = steps["Autograding Reporter"]
        assert reporter["uses"].startswith("classroom-resources/autograding-grading-reporter@")
        assert reporter["with"]["runners"] == "minifcn"
        assert reporter["env"]["MINIFCN_RESULTS"] == "${{ steps.minifcn.outputs.result }}"
        grade_run = steps["minifcn"]["run"]
        assert grade_run == _grade_step_by_text(text)
    assert "minifcn exercises grade my_minifcn" in grade_run
    assert "--junit minifcn-junit.xml" in grade_run

    # Its grading step, run here as the runner would, with `minifcn` on the PATH.
    write_correct_folder(repo / "my_minifcn", ["relu"])
    exercises.start("conv2d", str(repo / "my_minifcn"))  # the skeleton, not filled in
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    (bin_dir / "minifcn").write_text(f'#!/bin/sh\nexec "{sys.executable}" -m minifcn "$@"\n')
    (bin_dir / "minifcn").chmod(0o755)
    output = tmp_path / "github_output"
    env = dict(os.environ, PATH=f"{bin_dir}{os.pathsep}{os.environ['PATH']}",
               GITHUB_OUTPUT=str(output))
    done = subprocess.run(["bash", "-e", "-c", grade_run], cwd=repo, env=env,
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stdout + done.stderr
    (line,) = output.read_text().splitlines()
    assert line.startswith("result=")
    result = json.loads(base64.b64decode(line[len("result="):]))
    assert set(result) == {"version", "status", "max_score", "tests"}
    assert result["status"] == "fail"  # most exercises are not there yet
    scores = {test["name"]: test["score"] for test in result["tests"]}
    assert scores["relu: forward"] == 1 and scores["conv2d: forward"] == 0
    assert sum(scores.values()) == 4 + 1  # relu's 4 checks and the capstone
    assert result["max_score"] == sum(sum(p.values()) for p in
                                      grading.read_points(None).values())
    junit = ET.parse(repo / "minifcn-junit.xml").getroot()
    todo = [f for f in junit.iter("failure") if f.get("type") == "todo"]
    assert len(todo) == 7  # every check of conv2d meets the stub
