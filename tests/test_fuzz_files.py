"""Fuzzing what a user hands minifcn: the command line, checkpoints and data folders.

One rule for all of it, as a user sees it:

- a malformed command line (an unknown flag, a flag without its value, a value of the
  wrong type, an unknown choice) is argparse's: exit status 2, argparse's usage lines and
  then exactly one line ``minifcn ...: error: ...``;
- a well-formed command that minifcn refuses (a bad value, file or folder) is exit status
  1 and exactly one line ``minifcn COMMAND: error: ...``, naming the file when a file is
  to blame;
- never a traceback, never another status, and never a file loaded half right: a damaged
  checkpoint or data file is refused, or it reads exactly as the undamaged one (a damaged
  byte that changes nothing, e.g. in a zip entry's timestamp).

Every run is in this process (``minifcn.cli.main``) and never trains beyond a few tiny
steps. Short in the dev and ci profiles, long in the thorough one:
``HYPOTHESIS_PROFILE=thorough python -m pytest tests/test_fuzz_files.py``.
"""

from __future__ import annotations

import argparse
import dataclasses
import functools
import gc
import io
import json
import re
import shutil
import struct
import warnings
import zlib
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from minifcn import cli
from minifcn.checkpoint import load_checkpoint, save_checkpoint
from minifcn.cli import main
from minifcn.data import (
    DataLoader,
    SegmentationFolder,
    Shapes,
    read_class_names,
    save_mask_png,
    write_voc_folder,
)
from minifcn.train import TrainConfig, train

EXAMPLES = settings().max_examples  # 20 in dev and ci, 300 in thorough


def fuzzing(scale: int) -> settings:
    """``scale`` times the profile's examples: more for the cheap tests (a command line that
    argparse refuses costs 2 ms), fewer for those that load a model."""
    return settings(max_examples=scale * EXAMPLES, deadline=None,
                    suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much,
                                           HealthCheck.function_scoped_fixture])


# --- what a user sees -------------------------------------------------------------------------

def run(capsys, argv) -> tuple[int, str, str]:
    """(exit status, stdout, stderr) of ``minifcn argv...`` in this process; argparse exits
    through SystemExit. Anything else raised is a crash, and fails the test."""
    capsys.readouterr()
    try:
        status = main([str(arg) for arg in argv])
    except SystemExit as done:
        status = done.code
    captured = capsys.readouterr()
    return status, captured.out, captured.err


def parsers() -> dict[tuple, argparse.ArgumentParser]:
    """Every parser of minifcn's command line by its words: () for ``minifcn``, ("train",),
    ("exercises", "start"), ..., read from minifcn's own parser, so that an option added
    later is fuzzed too."""
    found = {}

    def walk(words: tuple, parser) -> None:
        found[words] = parser
        for action in parser._actions:
            if isinstance(action, argparse._SubParsersAction):
                for name, sub in action.choices.items():
                    walk((*words, name), sub)

    walk((), cli._parser())
    return found


PARSERS = parsers()
PROGS = {" ".join(("minifcn", *words)): parser for words, parser in PARSERS.items()}
# The commands themselves: the parsers without subcommands of their own.
LEAVES = sorted(words for words, parser in PARSERS.items()
                if not any(isinstance(action, argparse._SubParsersAction)
                           for action in parser._actions))


def options(parser) -> list[argparse.Action]:
    """The parser's options, --help and --version aside."""
    return [action for action in parser._actions if action.option_strings
            and not isinstance(action, (argparse._HelpAction, argparse._VersionAction))]


def assert_usage_error(status, out: str, err: str) -> str:
    """argparse's refusal: status 2, nothing on stdout, the usage of the parser that refused
    (exactly as that parser writes it) and one error line, which is returned."""
    assert status == 2, (status, err)
    assert out == "" and "Traceback" not in err, err
    *usage, line = err.rstrip("\n").split("\n")  # lines as a terminal shows them
    prog, colon, message = line.partition(": error: ")
    assert colon and message and prog in PROGS, err
    assert "\n".join(usage) + "\n" == PROGS[prog].format_usage(), err
    return line


def assert_one_line_error(status, err: str, command: str, named=None) -> str:
    """minifcn's refusal: status 1 and one line ``minifcn COMMAND: error: ...`` on stderr,
    naming ``named`` (a path) when given; returns the line."""
    assert status == 1, (status, err)
    assert "Traceback" not in err, err
    assert err.endswith("\n") and err.count("\n") == 1, err
    assert err.startswith(f"minifcn {command}: error: "), err
    if named is not None:
        assert str(named) in err, (str(named), err)
    return err.rstrip("\n")


# --- drawing command lines ----------------------------------------------------------------------

# What a user may type: any printable text. Line breaks and control characters aside (a
# terminal cannot show them in one line), and lone surrogates (in argv only for file names
# that are not UTF-8; pytest's capture cannot encode them).
TEXT = st.characters(exclude_categories=("Cc", "Cs", "Zl", "Zp"))
WORDS = st.text(TEXT, max_size=12).filter(lambda word: not word.startswith("-"))
NAME_CHARS = st.sampled_from("abcdefghijklmnopqrstuvwxyz0123456789-_é数")
NAMES = st.text(NAME_CHARS, min_size=1, max_size=8).filter(lambda name: name[0] != "-")


def fails(convert, text: str) -> bool:
    try:
        convert(text)
    except (ValueError, TypeError, argparse.ArgumentTypeError):
        return True
    return False


@st.composite
def valid_groups(draw, parser) -> list[list[str]]:
    """Whole options (a flag, a flag and its value, ``--flag=value``) that argparse accepts,
    repeats included: none of them is a mistake argparse sees."""
    groups = []
    for _ in range(draw(st.integers(0, 5)) if options(parser) else 0):
        action = draw(st.sampled_from(options(parser)))
        flag = draw(st.sampled_from(action.option_strings))
        if action.nargs == 0:
            groups.append([flag])
            continue
        if action.choices is not None:
            values = [draw(st.sampled_from(list(action.choices)))]
        elif action.type in (int, cli._seed):
            values = [str(draw(st.integers(0, 3)))]
        elif action.type is cli._finite_float:
            values = [repr(draw(st.floats(0, 1)))]
        else:
            values = draw(st.lists(WORDS, min_size=1, max_size=1 if action.nargs is None
                                   else 3))
        if action.nargs is None and draw(st.booleans()):
            groups.append([f"{flag}={values[0]}"])
        else:
            groups.append([flag, *values])
    return groups


@st.composite
def mistakes(draw, parser) -> tuple[list[str], bool]:
    """A mistake argparse must refuse: (its words, whether it must come last)."""
    takes_value = [action for action in options(parser) if action.nargs != 0]
    typed = [action for action in takes_value
             if action.type in (int, cli._seed, cli._finite_float)]
    chosen = [action for action in takes_value if action.choices is not None]
    switches = [action for action in options(parser) if action.nargs == 0]
    known = [flag for action in parser._actions for flag in action.option_strings]
    kinds = ["unknown flag"] + ["missing value"] * bool(takes_value) + ["wrong type"] * bool(
        typed) + ["unknown choice"] * bool(chosen) + ["switch given a value"] * bool(switches)
    kind = draw(st.sampled_from(kinds))
    if kind == "unknown flag":  # neither an option nor the start of one (argparse takes
        # abbreviations), nor -h
        flag = draw(st.one_of(
            st.builds(lambda text: "--" + text, st.text(NAME_CHARS, min_size=1, max_size=10)),
            st.builds(lambda char: "-" + char, st.sampled_from("abcdefgijklmnopqrstuvwxyzAZ"))))
        assume(not any(option.startswith(flag) for option in known))
        value = draw(st.one_of(st.none(), WORDS))
        if value is None:
            return [flag], False
        # argparse reads an unknown "--flag=a b" (a space in it) as a positional argument,
        # e.g. an image path for predict: the joined form only without white space
        forms = [[flag, value]] + [[f"{flag}={value}"]] * (not any(c.isspace() for c in value))
        return draw(st.sampled_from(forms)), False
    if kind == "missing value":
        return [draw(st.sampled_from(draw(st.sampled_from(takes_value)).option_strings))], True
    if kind == "wrong type":
        action = draw(st.sampled_from(typed))
        # letters, empty, unicode, nan and inf for a finite float, negative seeds
        value = draw(st.one_of(st.text(TEXT, max_size=8), st.sampled_from(
            ["", "abc", "1.5", "1e3", "nan", "inf", "-inf", "-1", "0x10", "٣.5", "1,000"])))
        assume(fails(action.type, value))
        return [action.option_strings[0], value] if draw(st.booleans()) else [
            f"{action.option_strings[0]}={value}"], False
    if kind == "unknown choice":
        action = draw(st.sampled_from(chosen))
        value = draw(st.one_of(WORDS, st.sampled_from(
            [choice.upper() for choice in action.choices if choice.upper() != choice])))
        assume(value not in action.choices)
        return [action.option_strings[0], value], False
    flag = draw(st.sampled_from(draw(st.sampled_from(switches)).option_strings))
    return [f"{flag}={draw(WORDS)}"], False


@st.composite
def malformed_command_lines(draw) -> list[str]:
    """A command's words, then valid options and its required arguments in any order, then
    one or more mistakes among them (or a command or action that does not exist)."""
    if draw(st.integers(0, 9)) == 0:  # an unknown command or action, or none
        words = draw(st.sampled_from([(), ("exercises",), ("course",)]))
        parser = PARSERS[words]
        commands = next(action for action in parser._actions
                        if isinstance(action, argparse._SubParsersAction)).choices
        word = draw(st.one_of(st.just(None), WORDS))
        if word is None:  # no command at all
            return list(words)
        assume(word not in commands)
        return [*words, word, *draw(st.lists(WORDS, max_size=2))]
    words = draw(st.sampled_from(LEAVES))
    parser = PARSERS[words]
    groups = draw(valid_groups(parser))
    for action in parser._actions:  # what the command requires, now and then left out
        if action.required and not isinstance(action, argparse._SubParsersAction) and (
                draw(st.integers(0, 9)) > 0):
            if action.option_strings:
                groups.append([action.option_strings[0], draw(WORDS)])
            else:  # a positional: keep it in one piece, as argparse reads it
                groups.append(draw(st.lists(WORDS, min_size=1, max_size=2)))
    groups = draw(st.permutations(groups))
    last = None
    for _ in range(draw(st.integers(1, 3))):
        mistake, at_end = draw(mistakes(parser))
        if at_end:
            last = mistake
        else:
            groups.insert(draw(st.integers(0, len(groups))), mistake)
    return [*words, *(word for group in groups for word in group), *(last or [])]


@given(argv=malformed_command_lines())
@fuzzing(25)
def test_malformed_command_lines_are_argparse_errors(capsys, argv):
    status, out, err = run(capsys, argv)
    assert_usage_error(status, out, err)


@pytest.mark.parametrize("argv, message", [
    (["train", "--lr", "nan"], "argument --lr: expected a finite number >= 0, got 'nan'"),
    (["train", "--lr", "inf"], "argument --lr: expected a finite number >= 0, got 'inf'"),
    (["train", "--weight-decay", "nan"], "argument --weight-decay: expected a finite number"),
    (["pretrain", "--lr", "1e999"], "argument --lr: expected a finite number >= 0, got "
                                    "'1e999'"),
    (["train", "--weight-decay", "-0.1"], "argument --weight-decay: expected a finite number "
                                          ">= 0, got '-0.1'"),
    (["pretrain", "--lr", "-1"], "argument --lr: expected a finite number >= 0, got '-1'"),
    (["train", "--seed", "-1"], "argument --seed: expected a whole number >= 0, got '-1'"),
    (["pretrain", "--seed", "-3"], "argument --seed: expected a whole number >= 0"),
    (["train", "--lr", "fast"], "argument --lr: invalid float value: 'fast'"),
    (["train", "--seed", "one"], "argument --seed: invalid int value: 'one'"),
])
def test_non_finite_rates_and_negative_seeds_are_argparse_errors(capsys, tmp_path, argv,
                                                                  message):
    """Regression: --lr inf and --weight-decay nan or inf were taken, trained, and ended
    epochs later as "the loss became nan ... try --lr inf"; a negative --weight-decay was
    refused by Adam, after the data was built; --seed -1 was refused only by NumPy, in
    words that named no option ("expected non-negative integer")."""
    status, out, err = run(capsys, [*argv, "--epochs", "1", "--train-size", "1",
                                    "--val-size", "1", "--batch-size", "1", "--quiet",
                                    "--out", tmp_path / "run"])
    assert f"error: {message}" in assert_usage_error(status, out, err)
    assert not (tmp_path / "run").exists()


# --- command lines that parse, and are refused after ------------------------------------------

def missing(tmp: Path):
    """Paths that do not exist."""
    return st.text(NAME_CHARS, max_size=6).map(lambda name: str(tmp / f"missing_{name}"))


@functools.cache
def exercise_names() -> frozenset:
    from minifcn import exercises

    return frozenset(exercises.exercises())


def no_ranks(text: str) -> bool:
    """--workers values that never start ranks (those are tests/test_mpi.py's)."""
    try:
        return text != "auto" and not (text.isdigit() and int(text) > 1)
    except ValueError:  # '²' is a digit that int() does not read: refused, one line
        return True


@st.composite
def refused_command_lines(draw, tmp: Path, damaged: Path) -> tuple[list[str], object]:
    """A command line argparse accepts whose last option minifcn refuses before any work,
    after options that cost nothing (tiny sizes, paths that do not exist); (argv, the path
    the error must name, or None where another option may be refused first)."""
    def ints(low, high):
        return st.integers(low, high).map(str)

    paths = missing(tmp)
    workers = st.just("1") | WORDS.filter(no_ranks)
    safe = {  # option -> values that start no work on their own
        "--model": st.sampled_from(list(PARSERS[("train",)]._option_string_actions[
            "--model"].choices)),
        "--epochs": ints(1, 2), "--batch-size": ints(1, 4), "--image-size": ints(1, 2).map(
            lambda k: str(32 * int(k))), "--train-size": ints(1, 4), "--val-size": ints(1, 4),
        "--num-classes": ints(0, 6), "--seed": ints(0, 9),
        "--lr": st.sampled_from(["0.001", "3e-3", "1"]),
        "--weight-decay": st.sampled_from(["0", "1e-4"]),
        "--optimizer": st.sampled_from(["adam", "sgd"]),
        "--schedule": st.sampled_from(["constant", "step", "cosine", "poly"]),
        "--upsample": st.sampled_from(list(PARSERS[("train",)]._option_string_actions[
            "--upsample"].choices)),
        "--device": st.sampled_from(["cpu", "gpu"]), "--workers": workers,
        "--data": paths, "--class-names": paths, "--resume": paths, "--layers": paths,
        "--init-from": paths, "--lessons": paths,
        "--out": st.text(NAME_CHARS, max_size=6).map(lambda name: str(tmp / "out" / name)),
        "--dir": st.just(str(tmp / "exercises")),
        "--only": NAMES,
        "--checkpoint": st.just(str(damaged)) | paths,
    }
    words = draw(st.sampled_from([("train",), ("pretrain",), ("evaluate",), ("predict",),
                                  ("exercises", "start"), ("exercises", "check"),
                                  ("course", "build")]))
    parser = PARSERS[words]
    for action in options(parser):
        assert action.nargs == 0 or action.option_strings[0] in safe, (
            f"{action.option_strings[0]}: give the fuzzer values that start no work")
    argv = list(words)
    # evaluate and predict read the checkpoint first, unless --workers is refused before
    free = [action for action in options(parser) if action.option_strings[0] != "--workers"
            or words not in (("evaluate",), ("predict",))]
    for _ in range(draw(st.integers(0, 4))):
        action = draw(st.sampled_from(free))
        argv.append(action.option_strings[0])
        if action.nargs != 0:
            argv.append(draw(safe[action.option_strings[0]]))
    # The last word: what minifcn refuses before any work (the last of a repeated option
    # counts), and the file to name when it is one.
    named = None
    if words in (("train",), ("pretrain",)):
        flag, value = draw(st.sampled_from(
            [("--epochs", "0"), ("--batch-size", "-1"), ("--train-size", "0"),
             ("--val-size", "-2"), ("--image-size", "33"), ("--image-size", "0"),
             ("--lr", "0"), ("--resume", None), ("--workers", "zero"),
             ("--workers", "0")]
            + [("--num-classes", "256"), ("--data", None), ("--class-names", None)]
            * (words == ("train",))))
        argv += [flag, draw(paths) if value is None else value]
    elif words in (("evaluate",), ("predict",)):
        named = draw(st.just(str(damaged)) | paths)
        argv += ["--checkpoint", named]
        if words == ("predict",):
            argv += ["--out", str(tmp / "masks"), *draw(st.lists(paths, min_size=1,
                                                                 max_size=2))]
    elif words[0] == "exercises":  # an exercise that does not exist
        argv.insert(2, draw(NAMES.filter(lambda name: name not in exercise_names())))
    else:
        argv += draw(st.sampled_from([["--lessons", draw(paths)],
                                      ["--only", "no_such_lesson"]]))
    return argv, named


@pytest.fixture(scope="module")
def damaged_checkpoint(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("damaged") / "checkpoint.npz"
    save_checkpoint(path, {"w": np.zeros(3)}, epoch=0)
    path.write_bytes(path.read_bytes()[:-40])
    return path


@given(data=st.data())
@fuzzing(10)
def test_command_lines_refused_after_parsing_are_one_line(capsys, tmp_path, monkeypatch,
                                                         damaged_checkpoint, data):
    monkeypatch.chdir(tmp_path)  # anything written lands here
    argv, named = data.draw(refused_command_lines(tmp_path, damaged_checkpoint))
    status, _, err = run(capsys, argv)
    assert_one_line_error(status, err, argv[0], named)


@pytest.mark.parametrize("command", ["train", "predict"])
def test_an_out_that_is_a_file_is_one_line(capsys, tmp_path, run_files, command):
    """Regression: os.makedirs's FileExistsError was a traceback (only FileNotFoundError
    and NotADirectoryError were a user's mistakes; now every OSError is)."""
    (tmp_path / "taken").write_text("a file, not a folder")
    argv = {"train": ["train", "--epochs", "1", "--train-size", "1", "--val-size", "1",
                      "--batch-size", "1", "--quiet"],
            "predict": ["predict", "--checkpoint", run_files.checkpoint, run_files.image]}
    line = assert_one_line_error(*run(capsys, [*argv[command], "--out", tmp_path / "taken"])
                                 [::2], command, tmp_path / "taken")
    if command == "predict":
        assert "is a file; the masks go into a folder" in line


def test_running_out_of_memory_is_one_line(capsys, tmp_path, monkeypatch):
    """Regression: sizes this machine cannot hold (--image-size 1048576, --train-size 10**11)
    ended in NumPy's MemoryError and a traceback. (Simulated: a real one might not come
    before the operating system's out-of-memory killer.)"""
    def too_large(*args, **kwargs):
        raise MemoryError("Unable to allocate 1.00 TiB for an array with shape (1, 1048576, "
                          "1048576) and data type int8")

    monkeypatch.setattr(Shapes, "splits", too_large)
    status, _, err = run(capsys, ["train", "--image-size", "1048576", "--train-size", "1",
                                  "--val-size", "1", "--quiet", "--out", tmp_path])
    line = assert_one_line_error(status, err, "train")
    assert line.endswith("error: not enough memory: Unable to allocate 1.00 TiB for an array "
                         "with shape (1, 1048576, 1048576) and data type int8; try smaller "
                         "sizes")


# --- checkpoints: load_checkpoint on damaged bytes ------------------------------------------

def same_checkpoint(loaded, original) -> bool:
    """Every state array equal in dtype, shape and bits, and the metadata equal."""
    states = [(loaded.model_state, original.model_state),
              (loaded.optimizer_state or {}, original.optimizer_state or {}),
              *((loaded.extra.get(name, {}), state) for name, state in original.extra.items())]
    return all(list(got) == list(want) and all(
        got[key].dtype == want[key].dtype and got[key].shape == want[key].shape
        and got[key].tobytes() == want[key].tobytes() for key in want)
        for got, want in states) and list(loaded.extra) == list(original.extra) and (
        loaded.epoch, loaded.model_name, loaded.config, loaded.metrics) == (
        original.epoch, original.model_name, original.config, original.metrics)


def assert_refused(error: Exception, path) -> None:
    """load_checkpoint's refusal: one line naming the file, with no chained traceback."""
    assert str(path) in str(error) and "\n" not in str(error), str(error)
    assert error.__cause__ is None and (error.__context__ is None
                                        or error.__suppress_context__), repr(error)


class Offsets(tuple):
    """Offsets into a file, printed short (hypothesis prints a strategy's arguments)."""

    def __repr__(self) -> str:
        return f"<{len(self)} offsets>"


def landmarks(data: bytes) -> Offsets:
    """Offsets where one damaged byte does the most: the zip's headers and directory, and
    the .npy headers (an array's dtype and shape)."""
    found = []
    for mark, length in ((b"PK\x03\x04", 46), (b"PK\x01\x02", 60), (b"PK\x05\x06", 22),
                         (b"\x93NUMPY", 128)):
        start = data.find(mark)
        while start >= 0:
            found += range(start, min(start + length, len(data)))
            start = data.find(mark, start + 1)
    return Offsets(found)


@dataclasses.dataclass(frozen=True)
class Damage:
    """What happens to a file's bytes: cut at ``cut``, bytes XORed (offset, mask), junk put
    before or after. Short to print in a falsifying example, unlike the bytes."""

    cut: int | None = None
    changes: tuple = ()
    before: bytes = b""
    after: bytes = b""

    def __call__(self, data: bytes) -> bytes:
        damaged = bytearray(data[:self.cut])
        for where, mask in self.changes:
            damaged[where] ^= mask
        return self.before + bytes(damaged) + self.after


@st.composite
def damages(draw, size: int, marks: Offsets | None = None) -> Damage:
    """The bytes of a file of ``size`` bytes truncated, changed (anywhere, or at ``marks``,
    offsets where a change does the most), or with bytes put before or after them."""
    kind = draw(st.sampled_from(["cut", "change", "change", "before", "after"]))
    if kind == "cut":
        return Damage(cut=draw(st.integers(0, size - 1)))
    if kind in ("before", "after"):
        return Damage(**{kind: draw(st.binary(min_size=1, max_size=64))})
    where = st.integers(0, size - 1)
    if marks:
        where = st.sampled_from(marks) | where
    return Damage(changes=tuple(draw(st.lists(st.tuples(where, st.integers(1, 255)),
                                               min_size=1, max_size=3))))


@pytest.fixture(scope="module")
def small_checkpoint(tmp_path_factory) -> Path:
    """Arrays of several dtypes, one of them longer than zipfile's read-ahead (4 KiB: np.load
    reads the shorter ones whole, and so had zipfile check their CRCs)."""
    path = tmp_path_factory.mktemp("checkpoint") / "small.npz"
    rng = np.random.default_rng(0)
    save_checkpoint(path, {"conv.weight": rng.standard_normal((64, 3, 3, 3)).astype("float32"),
                           "bn.running_var": rng.random(5) + 0.5,
                           "bn.num_batches_tracked": np.array(7)},
                    {"state.0.step": np.array(3.0), "param_groups.0.lr": np.array(0.01)},
                    epoch=4, model_name="fcn8s", config={"model": "fcn8s", "seed": 1},
                    metrics={"mean_iou": 0.5}, extra={"scheduler": {"last_epoch": np.array(4)}})
    return path


@given(data=st.data())
@fuzzing(10)
def test_damaged_checkpoint_bytes_are_refused_or_read_exactly(tmp_path, small_checkpoint,
                                                             data):
    original = load_checkpoint(small_checkpoint)
    path = tmp_path / "damaged.npz"
    original_bytes = small_checkpoint.read_bytes()
    damage = data.draw(damages(len(original_bytes), landmarks(original_bytes)))
    path.write_bytes(damage(original_bytes))
    try:
        loaded = load_checkpoint(path)
    except ValueError as error:
        assert_refused(error, path)
    else:  # e.g. a damaged timestamp, or junk after the archive: the same arrays
        assert same_checkpoint(loaded, original)


def test_a_damaged_array_header_is_caught_by_the_crc(tmp_path, small_checkpoint):
    """Regression: one byte of an array's .npy header ('<f4' made '<f2', (64, ...) made
    (24, ...)) loaded the wrong bytes as the array: np.load reads an entry only as far as
    its header says, and zipfile checks the CRC-32 only at an entry's end."""
    data = small_checkpoint.read_bytes()
    for before, after in ((b"'<f4'", b"'<f2'"), (b"(64, 3, 3, 3)", b"(24, 3, 3, 3)")):
        path = tmp_path / "header.npz"
        path.write_bytes(data.replace(before, after, 1))
        with pytest.raises(ValueError, match=r"truncated or corrupted \(BadZipFile: Bad CRC-32 "
                                             r"for file 'model/conv.weight.npy'\)") as info:
            load_checkpoint(path)
        assert_refused(info.value, path)


def test_a_damaged_zip_directory_leaves_no_file_open(tmp_path, small_checkpoint):
    """Regression: np.load, given a path, opened the file itself and left it open when the
    zip's directory could not be read (a ResourceWarning for each refused file)."""
    data = bytearray(small_checkpoint.read_bytes())
    data[data.index(b"PK\x01\x02") + 2] ^= 0xFF  # the first directory entry's signature
    path = tmp_path / "directory.npz"
    path.write_bytes(bytes(data))
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        with pytest.raises(ValueError, match="truncated or corrupted") as info:
            load_checkpoint(path)
        assert_refused(info.value, path)
        del info
        gc.collect()
    assert not [warning for warning in caught if warning.category is ResourceWarning]


# --- checkpoints: the meta entry ----------------------------------------------------------------

JSON = st.recursive(st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=8),
                    lambda inner: st.lists(inner, max_size=3)
                    | st.dictionaries(st.text(max_size=5), inner, max_size=3), max_leaves=8)


def rewrite(source: Path, target: Path, change) -> None:
    """``target``: the entries of checkpoint ``source``, as ``change(entries)`` leaves them,
    written by np.savez (so with valid CRCs: what a careless tool could write)."""
    with np.load(source, allow_pickle=False) as archive:
        entries = {key: archive[key] for key in archive.files}
    change(entries)
    np.savez(target, allow_pickle=False, **entries)


def meta_of(entries: dict) -> dict:
    return json.loads(entries["meta"].tobytes())


def set_meta(entries: dict, meta) -> None:
    text = meta if isinstance(meta, bytes) else json.dumps(meta).encode()
    entries["meta"] = np.frombuffer(text, dtype=np.uint8)


@st.composite
def garbage_meta(draw, meta: dict):
    """Bytes, any JSON, or the meta with one entry any JSON."""
    kind = draw(st.sampled_from(["bytes", "json", "entry", "entry"]))
    if kind == "bytes":
        return draw(st.binary(max_size=40))
    if kind == "json":
        return draw(JSON)
    key = draw(st.sampled_from(sorted(meta)))
    return {**meta, key: draw(JSON)}


def format_types(ckpt) -> bool:
    """The types the format says: epoch an int or None, model_name a str or None, config an
    object, metrics an object of numbers."""
    return ((ckpt.epoch is None or type(ckpt.epoch) is int)
            and (ckpt.model_name is None or isinstance(ckpt.model_name, str))
            and isinstance(ckpt.config, dict) and isinstance(ckpt.metrics, dict)
            and all(type(value) in (int, float) for value in ckpt.metrics.values()))


@given(data=st.data())
@fuzzing(10)
def test_garbage_meta_is_refused_or_read_as_the_format_says(tmp_path, small_checkpoint, data):
    with np.load(small_checkpoint) as archive:
        meta = json.loads(archive["meta"].tobytes())
    garbage = data.draw(garbage_meta(meta))
    path = tmp_path / "meta.npz"
    rewrite(small_checkpoint, path, lambda entries: set_meta(entries, garbage))
    try:
        loaded = load_checkpoint(path)
    except ValueError as error:
        assert_refused(error, path)
    else:
        assert format_types(loaded)
        read = [loaded.epoch, loaded.model_name, loaded.config, loaded.metrics]
        assert json.dumps(read) == json.dumps([garbage[key] for key in  # NaN == NaN here
                                               ("epoch", "model_name", "config", "metrics")])


@pytest.mark.parametrize("entry, value, message", [
    ("epoch", True, "epoch True is not a whole number or null"),
    ("epoch", "3", "epoch '3' is not a whole number or null"),
    ("epoch", float("nan"), "epoch nan is not a whole number or null"),
    ("epoch", 2.0, "epoch 2.0 is not a whole number or null"),
    ("model_name", 5, "model_name 5 is not a string or null"),
    ("config", [1, 2], r"config \[1, 2\] is not an object"),
    ("metrics", {"mean_iou": "high"}, r"metrics \{'mean_iou': 'high'\} is not an object of "
                                      r"numbers"),
    ("metrics", [0.5], r"metrics \[0.5\] is not an object of numbers"),
])
def test_meta_entries_of_the_wrong_type_are_refused(tmp_path, small_checkpoint, entry, value,
                                                    message):
    """Regression: these loaded; a config that was a list then crashed minifcn evaluate
    with an AttributeError, an epoch of true resumed at epoch 2, "3" + 1 was a TypeError."""
    path = tmp_path / "meta.npz"
    rewrite(small_checkpoint, path,
            lambda entries: set_meta(entries, {**meta_of(entries), entry: value}))
    with pytest.raises(ValueError, match=rf"invalid 'meta': {message}") as info:
        load_checkpoint(path)
    assert_refused(info.value, path)


def test_meta_nested_too_deep_is_refused(tmp_path, small_checkpoint):
    """Regression: JSON nested deeper than the decoder goes was a RecursionError."""
    path = tmp_path / "deep.npz"
    rewrite(small_checkpoint, path, lambda entries: set_meta(entries, b"[" * 100_000))
    with pytest.raises(ValueError, match="invalid 'meta': maximum recursion depth") as info:
        load_checkpoint(path)
    assert_refused(info.value, path)


def test_text_arrays_are_refused(tmp_path, small_checkpoint):
    """Regression: an entry of strings loaded, and a model's load_state_dict then read "1.5"
    as the number 1.5; save_checkpoint wrote such entries too (it refused only objects)."""
    path = tmp_path / "text.npz"
    rewrite(small_checkpoint, path,
            lambda entries: entries.update({"model/conv.weight": np.full((64, 3, 3, 3), "1.5")}))
    with pytest.raises(ValueError, match=r"entry 'model/conv.weight' holds <U3 data, not "
                                         r"numbers") as info:
        load_checkpoint(path)
    assert_refused(info.value, path)
    with pytest.raises(TypeError, match=r"model entry 'w' is not numeric \(dtype <U3\)"):
        save_checkpoint(tmp_path / "out.npz", {"w": np.array(["1.5"])})


# --- checkpoints on the command line: evaluate, predict, train --resume ------------------------

@dataclasses.dataclass
class RunFiles:
    checkpoint: Path  # a one-epoch run's checkpoint.npz, as minifcn train writes it
    image: Path  # a photo to predict


@pytest.fixture(scope="module")
def run_files(tmp_path_factory) -> RunFiles:
    """A tiny FCN-8s (4 channels wide) trained for one epoch on 32 x 32 toy shapes: each
    load is milliseconds. Resumed without --epochs it has nothing left to train."""
    from PIL import Image

    folder = tmp_path_factory.mktemp("run")
    config = TrainConfig(epochs=1, batch_size=2, train_size=2, val_size=2, image_size=32,
                         out=str(folder), model_options={"widths": [4, 4, 4, 4, 4],
                                                         "head_channels": 8})
    train(config, progress=False, log=lambda *args: None)
    image = folder / "photo.png"
    Image.fromarray(np.random.default_rng(0).integers(0, 256, (30, 40, 3), dtype=np.uint8)
                    ).save(image)
    return RunFiles(folder / "checkpoint.npz", image)


def commands(ckpt, run: RunFiles, out: Path) -> dict[str, list]:
    """The three commands that read a checkpoint, on ``ckpt``."""
    return {"evaluate": ["evaluate", "--checkpoint", ckpt],
            "predict": ["predict", "--checkpoint", ckpt, "--out", out, run.image, "--quiet"],
            "resume": ["train", "--resume", ckpt, "--quiet"]}


ALL = frozenset({"evaluate", "predict", "resume"})
# The JSON type of each TrainConfig field, and values of other types.
FIELD_KINDS = {field.name: type(getattr(TrainConfig(), field.name))
               for field in dataclasses.fields(TrainConfig)} | {
    "data": str, "upsample": str, "init_from": str, "class_names": list}
WRONG_TYPE = {
    int: st.text(max_size=4) | st.booleans() | st.floats() | st.lists(st.integers(), max_size=2),
    float: st.text(max_size=4) | st.booleans() | st.sampled_from([float("nan"), float("inf")])
    | st.lists(st.floats(), max_size=2),
    str: st.integers() | st.booleans() | st.lists(st.text(max_size=3), max_size=2)
    | st.dictionaries(st.text(max_size=3), st.integers(), max_size=2),
    bool: st.integers() | st.text(max_size=4) | st.none(),
    dict: st.lists(st.integers(), max_size=2) | st.text(max_size=4) | st.integers(),
    list: st.text(max_size=6) | st.lists(st.integers(), min_size=1, max_size=3),
}
# Values of the right type that TrainConfig.validate refuses.
REFUSED_VALUES = [("image_size", 33), ("image_size", 0), ("batch_size", 0), ("val_size", -1),
                  ("epochs", 0), ("num_classes", 300), ("lr", -1.0), ("optimizer", "rmsprop"),
                  ("class_names", ["a", "b"])]


@dataclasses.dataclass(frozen=True)
class Change:
    """A change to a checkpoint's entries: ``apply(entries)`` in place, and the commands that
    may still load the checkpoint. Printed as ``what``."""

    what: str
    apply: object
    loads_for: frozenset = frozenset()

    def __repr__(self) -> str:
        return f"Change({self.what!r})"


@st.composite
def run_changes(draw, layout: tuple) -> Change:
    """A change to a run's checkpoint, whose model entries are ``layout``: (key, shape,
    dtype kind) each. Another float dtype is cast, as PyTorch's load_state_dict casts it,
    and a checkpoint of weights only still evaluates and predicts; anything else about the
    weights or the meta that does not fit is refused."""
    model = [key for key, _, _ in layout]
    floats = [key for key, shape, kind in layout if kind == "f" and np.prod(shape)]
    kind = draw(st.sampled_from(["drop", "add", "shape", "dtype", "complex", "non-finite",
                                 "model_name", "config type", "config value", "weights only",
                                 "no epoch"]))
    key = draw(st.sampled_from(floats if kind in ("complex", "non-finite") else model))
    shape = dict((key, shape) for key, shape, _ in layout)[key]
    if kind == "drop":
        return Change(f"without {key}", lambda e: e.pop(key))
    if kind == "add":
        name = "model/" + draw(NAMES)
        assume(name not in model)
        return Change(f"with {name}", lambda e: e.update({name: np.zeros(3, np.float32)}))
    if kind == "shape":
        other = draw(st.sampled_from([(), (1,) * len(shape), (int(np.prod(shape)),),
                                      shape[::-1], (*shape[:-1], shape[-1] + 1) if shape
                                      else (2,)]))
        assume(other != shape)
        return Change(f"{key} of shape {other}",
                      lambda e: e.update({key: np.resize(e[key], other)}))
    if kind == "dtype":
        dtype = draw(st.sampled_from(["float64", "float16", "int32", "int64", "bool"]))
        return Change(f"{key} as {dtype}", lambda e: e.update({key: e[key].astype(dtype)}),
                      ALL)
    if kind == "complex":
        return Change(f"{key} complex", lambda e: e.update({key: e[key].astype("complex64")}))
    if kind == "non-finite":
        index = draw(st.integers(0, int(np.prod(shape)) - 1))
        value = draw(st.sampled_from([np.nan, np.inf, -np.inf]))

        def change(e):
            e[key] = e[key].copy()
            e[key].flat[index] = value
        return Change(f"{key}[{index}] = {value}", change)
    if kind == "model_name":
        name = draw(st.sampled_from(["unet", "segnet", "classifier"]) | st.text(max_size=5))
        assume(name != "fcn8s")
        return Change(f"model_name {name!r}",
                      lambda e: set_meta(e, {**meta_of(e), "model_name": name}))
    if kind in ("config type", "config value"):
        if kind == "config type":
            field = draw(st.sampled_from(sorted(FIELD_KINDS)))
            value = draw(WRONG_TYPE[FIELD_KINDS[field]])
        else:
            field, value = draw(st.sampled_from(REFUSED_VALUES))
        return Change(f"config {field}={value!r}", config_change(**{field: value}))
    if kind == "weights only":
        return Change("weights only", weights_only, frozenset({"evaluate", "predict"}))
    return Change("no epoch", lambda e: set_meta(e, {**meta_of(e), "epoch": None}),
                  frozenset({"evaluate", "predict"}))


def config_change(**changes):
    """A change of the config's settings; "drop" drops one."""
    def change(entries):
        meta = meta_of(entries)
        config = {**meta["config"], **changes}
        set_meta(entries, {**meta, "config": {k: v for k, v in config.items() if v != "drop"}})
    return change


def weights_only(entries) -> None:
    """A checkpoint of the weights alone, as save_checkpoint without an optimizer writes."""
    for key in [key for key in entries if key.startswith(("optim/", "extra/"))]:
        del entries[key]


@given(data=st.data(), command=st.sampled_from(sorted(ALL)))
@fuzzing(5)
def test_damaged_checkpoints_on_the_command_line(capsys, tmp_path, run_files, data, command):
    """A run's checkpoint, damaged in its bytes or rewritten with a change, given to
    evaluate, predict or train --resume: refused in one line naming it, or (a change of
    float dtype, a harmless damaged byte) read as it is."""
    path = tmp_path / "changed.npz"
    with np.load(run_files.checkpoint) as archive:
        layout = tuple((key, archive[key].shape, archive[key].dtype.kind)
                       for key in sorted(archive.files) if key.startswith("model/"))
    if data.draw(st.booleans()):
        change = data.draw(run_changes(layout))
        rewrite(run_files.checkpoint, path, change.apply)
        what, loads_for = change.what, change.loads_for
    else:
        what = "damaged bytes"
        original_bytes = run_files.checkpoint.read_bytes()
        damage = data.draw(damages(len(original_bytes), landmarks(original_bytes)))
        path.write_bytes(damage(original_bytes))
        try:
            same = same_checkpoint(load_checkpoint(path), load_checkpoint(run_files.checkpoint))
        except ValueError:
            same = False
        loads_for = ALL if same else frozenset()
    status, _, err = run(capsys, commands(path, run_files, tmp_path / "masks")[command])
    if command in loads_for:
        assert (status, err) == (0, ""), what
    else:
        assert_one_line_error(status, err, "train" if command == "resume" else command, path)


def changed_run(run_files: RunFiles, path: Path, change) -> Path:
    rewrite(run_files.checkpoint, path, change)
    return path


def test_resuming_a_checkpoint_without_optimizer_state_is_one_line(capsys, tmp_path,
                                                                  run_files):
    """Regression: a checkpoint of weights only (save_checkpoint without an optimizer, as
    one might write for a model to share) crashed train --resume with an AttributeError."""
    path = changed_run(run_files, tmp_path / "weights.npz", weights_only)
    line = assert_one_line_error(*run(capsys, ["train", "--resume", path, "--epochs", "2",
                                               "--quiet"])[::2], "train", path)
    assert line.endswith(f"checkpoint {path} cannot be resumed: it holds no optimizer state, "
                         f"no scheduler state; evaluate or predict with it, or start a new run")
    status, out, err = run(capsys, ["evaluate", "--checkpoint", path])
    assert status == 0 and err == "" and "mean IoU" in out  # its weights are all evaluate needs


def test_optimizer_state_that_does_not_fit_names_the_checkpoint(capsys, tmp_path, run_files):
    """Regression: the error was Adam.load_state_dict's alone, naming no file."""
    def misshapen(entries):
        entries["optim/state.0.exp_avg"] = np.zeros((1,), np.float32)

    path = changed_run(run_files, tmp_path / "bad.npz", misshapen)
    line = assert_one_line_error(*run(capsys, ["train", "--resume", path, "--epochs", "2",
                                               "--quiet"])[::2], "train", path)
    assert line.endswith(f"{path}: its optimizer state does not fit this run: "
                         f"Adam.load_state_dict: state.0.exp_avg has shape (1,), parameter 0 "
                         f"has shape (4, 3, 3, 3)")


def test_a_training_set_smaller_than_a_batch_is_one_line(capsys, tmp_path):
    """Regression: whole batches only, so no step at all, which surfaced as
    "make_scheduler: total_steps must be >= 1"."""
    status, _, err = run(capsys, ["train", "--train-size", "3", "--batch-size", "4",
                                  "--val-size", "1", "--epochs", "1", "--image-size", "32",
                                  "--quiet", "--out", tmp_path / "run"])
    line = assert_one_line_error(status, err, "train")
    assert line.endswith("the training set has 3 images, fewer than --batch-size 4: training "
                         "uses whole batches only, so there would be none; lower "
                         "--batch-size, or give more images (--train-size, for the toy data)")


def test_a_split_file_with_a_byte_order_mark_reads_its_first_id(tmp_path):
    """Regression: Windows editors start UTF-8 with a byte-order mark, which became part of
    the first id: "\ufefftrain_0" has no image."""
    ids = write_voc_folder(tmp_path, Shapes(2, 16, seed=0), split="train")
    listing = tmp_path / "ImageSets" / "Segmentation" / "train.txt"
    listing.write_bytes("\ufeff".encode() + listing.read_bytes())
    assert SegmentationFolder(tmp_path, split="train").ids == ids


@pytest.mark.parametrize("change, message", [
    (lambda e: e.pop("model/score_fr.bias"), r"missing keys \['score_fr.bias'\]"),
    (lambda e: e.update({"model/head.weight": np.zeros(3, np.float32)}),
     r"unexpected keys \['head.weight'\]"),
    (lambda e: e.update({"model/score_fr.bias": np.zeros((1,), np.float32)}),
     r"shape mismatch for \['score_fr.bias: expected \(4,\), got \(1,\)'\]"),
], ids=["missing", "unexpected", "broadcastable-shape"])
@pytest.mark.parametrize("command", sorted(ALL))
def test_weights_that_do_not_fit_name_the_checkpoint(capsys, tmp_path, run_files, change,
                                                     message, command):
    """Regression: the error was FCN.load_state_dict's alone, naming no file."""
    path = changed_run(run_files, tmp_path / "weights.npz", change)
    line = assert_one_line_error(*run(capsys, commands(path, run_files, tmp_path)[command])
                                 [::2], "train" if command == "resume" else command, path)
    assert re.search(rf"checkpoint {re.escape(str(path))}: its weights do not fit the fcn8s "
                     rf"its config describes: FCN.load_state_dict: {message}", line), line


@pytest.mark.parametrize("change, message", [
    (lambda e: set_meta(e, {**meta_of(e), "model_name": "unet"}),
     "model_name 'unet' in its meta, but model 'fcn8s' in its config; one of them is wrong"),
    (config_change(model="drop"), "its config names no model (model None); minifcn train and "
                                  "pretrain write one"),
    (config_change(class_names="abcd"), "settings of the wrong type in its config: "
                                        "class_names 'abcd'"),
    (config_change(image_size="big", flip="no"), "settings of the wrong type in its config: "
                                                 "image_size 'big', flip 'no'"),
    (config_change(model_options={"bogus": 1}), "its config does not describe a model "
     "minifcn can build: FCN.__init__() got an unexpected keyword argument 'bogus'"),
    (config_change(num_classes=21), "its config does not describe a model minifcn can build: "
     "--num-classes 21 but --class-names gives 4 names (background, circle, square, "
     "triangle)"),
    (lambda e: e.update({"model/score_fr.bias": np.array([0, np.nan, 0, 0], np.float32)}),
     "model/score_fr.bias holds NaN or infinite values, which minifcn train never saves (it "
     "stops when the loss stops being finite); use another checkpoint"),
    (lambda e: e.update({"model/score_fr.bias": np.zeros(4, np.complex64)}),
     "model/score_fr.bias holds complex numbers, which real weights cannot take; use another "
     "checkpoint"),
], ids=["model-name", "no-model", "names-a-string", "wrong-types", "unknown-option",
        "class-count", "nan", "complex"])
def test_a_checkpoint_that_says_one_thing_and_holds_another_is_refused(
        capsys, tmp_path, run_files, change, message):
    """Regression: each of these loaded (a meta naming another model than the config, a
    config without a model, class names of one string's letters, NaN weights; complex ones
    with NumPy's ComplexWarning), or failed naming no file."""
    path = changed_run(run_files, tmp_path / "says.npz", change)
    for command in sorted(ALL):
        line = assert_one_line_error(*run(capsys, commands(path, run_files, tmp_path)[command])
                                     [::2], "train" if command == "resume" else command, path)
        assert line.endswith(f"checkpoint {path}: {message}"), line


@pytest.mark.torch
def test_weights_of_another_float_dtype_are_cast_as_pytorch_casts(capsys, tmp_path, run_files,
                                                                  torch):
    """The decision: float64 weights (say, converted from another framework) load into the
    float32 model rounded to float32, as torch.nn.Module.load_state_dict copies them."""
    with np.load(run_files.checkpoint) as archive:
        weight = archive["model/score_fr.weight"].astype(np.float64) / 3.0  # not float32-exact
    path = changed_run(run_files, tmp_path / "float64.npz",
                       lambda e: e.update({"model/score_fr.weight": weight}))
    model, _ = cli._load_model(str(path), "cpu")
    ours = model.state_dict()["score_fr.weight"]
    twin = torch.nn.Conv2d(8, 4, 1)
    twin.load_state_dict({"weight": torch.from_numpy(weight), "bias": torch.zeros(4)})
    assert ours.dtype == np.float32 and twin.weight.dtype == torch.float32
    np.testing.assert_array_equal(ours, twin.weight.detach().numpy())
    assert not np.array_equal(ours, weight)  # rounded, not kept in float64
    status, _, err = run(capsys, ["evaluate", "--checkpoint", path])
    assert (status, err) == (0, "")


# --- data folders -------------------------------------------------------------------------------

SIZE = 32  # the side of the folder's images and of what training reads


def voc_folder(root: Path, image_format: str = "png") -> Path:
    """Four training and two validation images of the toy shapes (labels 0 to 3, 255 void)
    in the VOC layout, masks as palette PNGs."""
    write_voc_folder(root, Shapes(4, SIZE, seed=3), split="train", image_format=image_format)
    write_voc_folder(root, Shapes(2, SIZE, seed=3, split="val"), split="val",
                     image_format=image_format)
    return root


def read_folder(root: Path) -> list[tuple[np.ndarray, np.ndarray]]:
    """What training reads from a folder: its train split at SIZE x SIZE, the labels of every
    split checked against 4 classes, in batches of 2."""
    folder = SegmentationFolder(root, split="train", image_size=SIZE, num_classes=4)
    folder.check_labels()
    return [(np.array(images), np.array(masks))
            for images, masks in DataLoader(folder, batch_size=2)]


@pytest.fixture(scope="module", params=["png", "jpg"])
def template(request, tmp_path_factory) -> tuple[Path, list]:
    """An undamaged folder (images as PNG or JPEG files) and the batches read from it."""
    root = voc_folder(tmp_path_factory.mktemp(f"voc_{request.param}"), request.param)
    return root, read_folder(root)


def png_pixel_data(data: bytes) -> Offsets:
    """The offsets of a PNG's compressed pixels (its IDAT chunks' data)."""
    offsets, start = [], 8
    while start + 8 <= len(data):
        length, kind = struct.unpack(">I4s", data[start:start + 8])
        if kind == b"IDAT":
            offsets += range(start + 8, start + 8 + length)
        start += 12 + length
    return Offsets(offsets)


@dataclasses.dataclass(frozen=True)
class FolderDamage:
    """A damage to one file of a folder: ``apply(root)`` returns the path an error must
    name; ``exact``: when no error comes, the batches must equal the undamaged ones (not so
    for a JPEG, which has no checksum: a damaged one may decode to other pixels)."""

    what: str
    apply: object
    exact: bool = True

    def __repr__(self) -> str:
        return f"FolderDamage({self.what!r})"


@st.composite
def folder_damages(draw, root: Path) -> FolderDamage:
    ids = (root / "ImageSets/Segmentation/train.txt").read_text().split()
    name = draw(st.sampled_from(ids))
    image = next((root / "JPEGImages").glob(f"{name}.*")).relative_to(root)
    mask = Path("SegmentationClass", f"{name}.png")
    split = Path("ImageSets/Segmentation/train.txt")
    kind = draw(st.sampled_from(["bytes", "bytes", "bytes", "random file", "mask size",
                                 "label", "delete", "ghost", "empty split", "binary split",
                                 "binary names"]))
    if kind in ("bytes", "random file"):
        target = draw(st.sampled_from([image, mask]))
        data = (root / target).read_bytes()
        damage = (draw(damages(len(data), png_pixel_data(data) if target.suffix == ".png"
                               else None)) if kind == "bytes" else draw(st.binary(max_size=200)))

        def apply(at):
            path = at / target
            path.write_bytes(damage(path.read_bytes()) if kind == "bytes" else damage)
            return path
        return FolderDamage(f"{kind} {target}: {damage!r}"[:200], apply,
                            exact=target.suffix == ".png" or kind != "bytes")
    if kind == "mask size":
        shape = draw(st.tuples(st.integers(1, 40), st.integers(1, 40)))
        assume(shape != (SIZE, SIZE))

        def apply(at):
            save_mask_png(at / mask, np.zeros(shape, np.uint8))
            return at / mask
        return FolderDamage(f"{mask} of shape {shape}", apply)
    if kind == "label":
        where = (draw(st.integers(0, SIZE - 1)), draw(st.integers(0, SIZE - 1)))
        label = draw(st.integers(4, 254))

        def apply(at):
            from PIL import Image

            with Image.open(at / mask) as opened:
                labels = np.array(opened)
            labels[where] = label
            save_mask_png(at / mask, labels)
            return at / mask
        return FolderDamage(f"{mask} with label {label} at {where}", apply)
    if kind == "delete":
        target = draw(st.sampled_from([image, mask]))

        def apply(at):
            (at / target).unlink()
            return at / (target.with_suffix("") if target == image else target)
        return FolderDamage(f"without {target}", apply)
    if kind == "ghost":
        ghost = draw(NAMES)
        assume(ghost not in ids)

        def apply(at):
            with open(at / split, "a") as listing:
                listing.write(f"{ghost}\n")
            return at / "JPEGImages" / ghost
        return FolderDamage(f"train.txt lists {ghost!r}", apply)
    if kind == "empty split":
        text = draw(st.text(" \t\n", max_size=5))

        def apply(at):
            (at / split).write_text(text)
            return at / split
        return FolderDamage(f"train.txt is {text!r}", apply)
    junk = b"\xff" + draw(st.binary(max_size=30))  # never UTF-8
    target = split if kind == "binary split" else Path("class_names.txt")

    def apply(at):
        (at / target).write_bytes(junk)
        return at / target
    return FolderDamage(f"{target} is {junk!r}", apply)


@given(data=st.data())
@fuzzing(5)
def test_damaged_data_folders_are_refused_or_read_exactly(tmp_path, template, data):
    """One file of the folder damaged: an error (ValueError, FileNotFoundError) in one line
    naming that file, or the very batches of the undamaged folder."""
    original, batches = template
    root = tmp_path / "voc"
    shutil.rmtree(root, ignore_errors=True)
    shutil.copytree(original, root)
    damage = data.draw(folder_damages(original))
    named = damage.apply(root)
    try:
        read = read_folder(root)
    except (ValueError, FileNotFoundError) as error:
        assert str(named) in str(error) and "\n" not in str(error), str(error)
    else:
        assert len(read) == len(batches)
        for (images, masks), (want_images, want_masks) in zip(read, batches, strict=True):
            assert images.shape == want_images.shape and images.dtype == want_images.dtype
            np.testing.assert_array_equal(masks, want_masks)  # masks are PNGs: always exact
            if damage.exact:
                np.testing.assert_array_equal(images, want_images)


def silently_misread(data: bytes, mask: bool = False) -> bytes:
    """``data`` (a PNG) with one byte of its compressed pixels changed such that Pillow,
    left to itself, decodes other pixels without a word (for a ``mask``, labels that are
    all valid ones: 0 to 3, or 255)."""
    from PIL import Image

    def pixels(png: bytes):
        with Image.open(io.BytesIO(png)) as image:
            image.load()
            return np.array(image)

    original = pixels(data)
    for where in png_pixel_data(data):
        for bit in (1, 0x10, 0x80):
            damaged = bytearray(data)
            damaged[where] ^= bit
            try:
                misread = pixels(bytes(damaged))
            except Exception:  # noqa: S112 -- an error is what we do not look for here
                continue
            if misread.shape == original.shape and (misread != original).any() and not (
                    mask and ((misread > 3) & (misread != 255)).any()):
                return bytes(damaged)
    raise AssertionError("no byte of the PNG's pixel data misreads silently")


@pytest.mark.parametrize("target", ["SegmentationClass", "JPEGImages"])
def test_a_damaged_png_is_refused_not_read_as_other_pixels(tmp_path, target):
    """Regression: Pillow does not check the CRC of a PNG's pixel data; one damaged byte
    there gave a mask of other labels (or another image) without a word."""
    root = voc_folder(tmp_path)
    path = root / target / "train_00002.png"
    path.write_bytes(silently_misread(path.read_bytes(), mask=target == "SegmentationClass"))
    folder = SegmentationFolder(root, split="train", num_classes=4)
    folder[1]  # the others still read
    what = "mask" if target == "SegmentationClass" else "image"
    with pytest.raises(ValueError, match=rf"cannot read {what} {re.escape(str(path))}: "
                                         rf"broken PNG file"):
        folder[2]


def claims_pixels(width: int, height: int) -> bytes:
    """A PNG whose header (CRC and all) claims ``width`` x ``height`` pixels."""
    from PIL import Image

    buffer = io.BytesIO()
    Image.new("L", (8, 8)).save(buffer, "PNG")
    data = bytearray(buffer.getvalue())
    data[16:24] = struct.pack(">II", width, height)  # IHDR's data starts at offset 16
    data[29:33] = struct.pack(">I", zlib.crc32(bytes(data[12:29])))
    return bytes(data)


def unknown_to_the_decoder() -> bytes:
    """A DDS file whose pixel format Pillow does not know: NotImplementedError."""
    from PIL import Image

    buffer = io.BytesIO()
    Image.new("RGB", (8, 8)).save(buffer, "DDS")
    data = bytearray(buffer.getvalue())
    data[80:84] = struct.pack("<I", 26)  # the pixel format's flags
    return bytes(data)


@pytest.mark.parametrize("content, message", [
    (claims_pixels(20_000, 20_000), "Image size (400000000 pixels) exceeds limit"),
    (unknown_to_the_decoder(), "Unknown pixel format flags 26"),
], ids=["too-many-pixels", "decoder-not-implemented"])
@pytest.mark.parametrize("target", ["SegmentationClass", "JPEGImages"])
def test_any_error_of_the_decoder_is_a_file_that_cannot_be_read(tmp_path, capsys, run_files,
                                                                content, message, target):
    """Regression: Pillow's DecompressionBombError (a damaged header that claims 400
    megapixels) and NotImplementedError (a file whose format Pillow half knows) went past
    SegmentationFolder and minifcn predict as tracebacks."""
    root = voc_folder(tmp_path / "voc")
    path = root / target / "train_00001.png"
    path.write_bytes(content)
    what = "mask" if target == "SegmentationClass" else "image"
    with pytest.raises(ValueError, match=rf"cannot read {what} {re.escape(str(path))}: "
                                         rf"{re.escape(message)}"):
        SegmentationFolder(root, split="train", num_classes=4)[1]
    if target == "JPEGImages":  # predict skips it, in one line, and does the others
        status, out, err = run(capsys, ["predict", "--checkpoint", run_files.checkpoint,
                                        path, run_files.image, "--out", tmp_path / "masks"])
        skipped, summary = err.splitlines()
        assert status == 1 and "Traceback" not in err
        assert skipped.startswith(f"minifcn predict: skipped {path}: ")
        assert f"cannot read image {path}: {message}" in skipped, skipped
        assert summary == "minifcn predict: 1 of 2 images done, 1 skipped"


def test_split_and_class_name_files_that_are_not_text_are_named(tmp_path):
    """Regression: UnicodeDecodeError's own words, "'utf-8' codec can't decode byte 0xff
    in position 0", named no file."""
    root = voc_folder(tmp_path)
    listing = root / "ImageSets/Segmentation/train.txt"
    text = listing.read_bytes()
    listing.write_bytes(b"\xff\xfe" + text)
    with pytest.raises(ValueError, match=rf"split file {re.escape(str(listing))} is not UTF-8 "
                                         rf"text \(invalid start byte at byte 0\)"):
        SegmentationFolder(root, split="train")
    listing.write_bytes(text)
    (root / "class_names.txt").write_bytes(b"sky\n\xe9t\xe9\n")  # Latin-1, not UTF-8
    with pytest.raises(ValueError, match=r"class names file .*class_names.txt is not UTF-8 "
                                         r"text \(invalid continuation byte at byte 4\)"):
        SegmentationFolder(root, split="train")
    with pytest.raises(ValueError, match="is not UTF-8 text"):
        read_class_names(root / "class_names.txt")


def test_an_empty_split_file_is_named(tmp_path):
    """Regression: the error named SegmentationClass/, where nothing was wrong."""
    root = voc_folder(tmp_path)
    listing = root / "ImageSets/Segmentation/train.txt"
    listing.write_text("\n  \n")
    with pytest.raises(ValueError, match=rf"split file {re.escape(str(listing))} lists no ids"):
        SegmentationFolder(root, split="train")


def damage_mask_pixels(root: Path) -> Path:
    path = root / "SegmentationClass/train_00001.png"
    path.write_bytes(silently_misread(path.read_bytes(), mask=True))
    return path


def write_to(relative: str, content):
    def damage(root: Path) -> Path:
        path = root / relative
        if isinstance(content, bytes):
            path.write_bytes(content)
        elif isinstance(content, str):
            path.write_text(content)
        else:
            save_mask_png(path, content)
        return path
    return damage


def delete(relative: str, named: str):
    def damage(root: Path) -> Path:
        (root / relative).unlink()
        return root / named
    return damage


def list_ghost(root: Path) -> Path:
    with open(root / "ImageSets/Segmentation/train.txt", "a") as listing:
        listing.write("ghost\n")
    return root / "JPEGImages/ghost"


LABEL_7 = np.zeros((SIZE, SIZE), np.uint8)
LABEL_7[3, 4] = 7


@pytest.mark.parametrize("damage", [
    write_to("SegmentationClass/train_00001.png", np.zeros((16, SIZE), np.uint8)),
    write_to("JPEGImages/train_00002.png", b"\x89PNG\r\n\x1a\n not an image"),
    write_to("SegmentationClass/train_00003.png", b"\x89PNG\r\n\x1a\n not an image"),
    damage_mask_pixels,
    write_to("SegmentationClass/val_00001.png", LABEL_7),
    list_ghost,
    delete("SegmentationClass/train_00000.png", "SegmentationClass/train_00000.png"),
    delete("JPEGImages/train_00000.png", "JPEGImages/train_00000"),
    write_to("ImageSets/Segmentation/train.txt", "\n \n"),
    write_to("ImageSets/Segmentation/val.txt", b"\xff\xfe val_00000\n"),
    write_to("class_names.txt", b"\xff\xfe sky\n"),
    write_to("JPEGImages/train_00003.png", claims_pixels(20_000, 20_000)),
    write_to("SegmentationClass/train_00002.png", unknown_to_the_decoder()),
], ids=["mask-size", "corrupt-image", "corrupt-mask", "damaged-mask-pixels", "label-7",
        "id-without-files", "no-mask", "no-image", "empty-split", "split-not-text",
        "names-not-text", "too-many-pixels", "decoder-not-implemented"])
def test_train_on_a_damaged_folder_is_one_line_naming_the_file(capsys, tmp_path, damage):
    root = voc_folder(tmp_path / "voc")
    named = damage(root)
    status, _, err = run(capsys, ["train", "--data", root, "--num-classes", "4", "--epochs",
                                  "1", "--batch-size", "2", "--image-size", SIZE, "--quiet",
                                  "--out", tmp_path / "run"])
    assert_one_line_error(status, err, "train", named)
