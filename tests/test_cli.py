"""The command line as a PyTorch user expects it: --version, help with defaults, --resume that
refuses conflicting options and says when there is nothing to train, your own data with a
class count and class names.

Everything runs in-process through ``main`` with tiny images and one epoch.
"""

from __future__ import annotations

import re

import numpy as np
import pytest
from test_data import _two_splits

import minifcn
from minifcn.checkpoint import load_checkpoint
from minifcn.cli import main
from minifcn.data import VOC_CLASSES

TINY = ["--epochs", "1", "--batch-size", "4", "--image-size", "32", "--train-size", "8",
        "--val-size", "4", "--quiet"]


def run(capsys, *argv) -> tuple[int, str, str]:
    """(exit status, stdout, stderr) of ``minifcn argv...``; --help and --version exit
    through SystemExit, as argparse does."""
    try:
        status = main(list(argv))
    except SystemExit as done:
        status = done.code
    captured = capsys.readouterr()
    return status, captured.out, captured.err


def one_line_error(status: int, err: str) -> str:
    lines = err.strip().splitlines()
    assert status == 1 and len(lines) == 1, err
    assert "Traceback" not in err
    return lines[0]


def write_folder(root, last_class_in: str = "val"):
    """A VOC-layout folder of 32 x 32 toy images, labels 0..3, class 3 only in one split."""
    return _two_splits(root, last_class_in, images=8, size=32)


# --- --version and --help ---------------------------------------------------------------

def test_version(capsys):
    status, out, _ = run(capsys, "--version")
    assert status == 0 and out == f"minifcn {minifcn.__version__}\n"
    assert minifcn.__version__ == "0.1.0"


def help_entries(text: str) -> dict[str, str]:
    """Option -> its help text, from the 'options:' section of argparse's help."""
    section = text.split("options:\n", 1)[1].split("\n\n", 1)[0]
    entries, current = {}, None
    for line in section.splitlines():
        match = re.match(r"  (-[-\w]+)\S*(?:[ ,]+\S+)*?(?:\s{2,}(.*))?$", line)
        if match and not line.startswith("   "):
            current = match.group(1)
            entries[current] = match.group(2) or ""
        else:
            entries[current] += " " + line.strip()
    return {option: " ".join(words.split()) for option, words in entries.items()}


@pytest.mark.parametrize("command", ["train", "evaluate", "predict"])
def test_help_is_plain_text_and_every_option_states_its_default(capsys, command):
    status, out, _ = run(capsys, command, "--help")
    assert status == 0
    assert "``" not in out and "`" not in out
    entries = help_entries(out)
    usage = out.split("\n\n", 1)[0]
    assert set(re.findall(r"\[(--[a-z-]+)", usage)) | set(re.findall(r" (--[a-z-]+) ", usage)) \
        == set(entries) - {"-h"}
    for option, text in entries.items():
        if option == "-h":
            continue
        assert text, f"{command} {option} has no help line"
        assert "default" in text or "required" in text, f"{command} {option}: {text!r}"
    if command == "train":
        assert "default: fcn8s" in entries["--model"]
        from minifcn.models import MODELS
        from minifcn.train import recipe
        for option, setting in (("--lr", "lr"), ("--batch-size", "batch_size"),
                                ("--epochs", "epochs")):
            assert "(default: the model's own: " in entries[option]
            for name in MODELS:  # each model's recipe, named beside its value
                value = f"{recipe(name)[setting]:g} ("
                listed = entries[option].split(value, 1)[1].split(")", 1)[0]
                assert name in listed, f"{option}: {name} not listed after {value!r}"
        assert "--resume" in out.split("options:", 1)[1].split("\n\n", 1)[1]  # the epilog


def test_top_level_help_is_plain_text(capsys):
    status, out, _ = run(capsys, "--help")
    assert status == 0 and "`" not in out
    assert "--version" in out and all(name in out for name in ("train", "evaluate", "predict"))


# --- --resume -----------------------------------------------------------------------------

@pytest.fixture(scope="module")
def toy_run(tmp_path_factory):
    """A one-epoch run on toy shapes: (its folder, the command that made it)."""
    out = tmp_path_factory.mktemp("toy_run")
    command = ["train", *TINY, "--out", str(out)]
    assert main(command) == 0
    return out, command


def test_resume_refuses_options_that_conflict_with_the_checkpoint(capsys, toy_run):
    out, _ = toy_run
    checkpoint = str(out / "checkpoint.npz")
    before = (out / "metrics.csv").read_text()
    line = one_line_error(*run(capsys, "train", "--resume", checkpoint, "--model", "unet",
                               "--upsample", "bilinear", "--epochs", "2")[::2])
    assert "--model unet (the checkpoint has --model fcn8s)" in line
    assert "--upsample bilinear (the checkpoint has the model's own --upsample)" in line
    assert checkpoint in line and "start a new run" in line
    line = one_line_error(*run(capsys, "train", "--resume", checkpoint, "--image-size", "64",
                               "--no-flip", "--epochs", "2")[::2])
    assert "--image-size 64 (the checkpoint has --image-size 32)" in line
    assert "--no-flip (the checkpoint has flips)" in line
    line = one_line_error(*run(capsys, "train", "--resume", checkpoint, "--data", str(out),
                               "--epochs", "2")[::2])
    assert "(the checkpoint has the toy shapes)" in line
    assert (out / "metrics.csv").read_text() == before  # nothing was trained


def test_resume_with_nothing_left_to_train_says_how_to_continue(capsys, toy_run):
    out, command = toy_run
    before = load_checkpoint(out / "checkpoint.npz").model_state
    status, printed, err = run(capsys, "train", "--resume", str(out / "checkpoint.npz"))
    assert status == 0 and err == ""
    assert "nothing to train" in printed and "finished epoch 1" in printed
    assert "--epochs is 1" in printed and "pass --epochs 2" in printed
    after = load_checkpoint(out / "checkpoint.npz").model_state
    assert all(np.array_equal(before[k], after[k]) for k in before)


def test_resume_accepts_the_original_command_and_writes_to_the_checkpoints_folder(
        capsys, tmp_path):
    command = ["train", *TINY, "--out", str(tmp_path / "run")]
    assert main(command) == 0
    capsys.readouterr()
    # The original command line again, with --resume and more epochs: same values, accepted;
    # without --out the run continues in the checkpoint's folder.
    again = [arg for arg in command if arg not in ("--out", str(tmp_path / "run"))]
    again[again.index("--epochs") + 1] = "2"
    status, printed, err = run(capsys, *again, "--resume", str(tmp_path / "run/checkpoint.npz"))
    assert status == 0, err
    assert "epoch 2/2" in printed
    assert load_checkpoint(tmp_path / "run/checkpoint.npz").epoch == 1  # epochs count from 0
    assert (tmp_path / "run/metrics.csv").read_text().count("\n") == 3  # header + 2 epochs


# --- per-model recipes --------------------------------------------------------------------

def test_each_model_trains_with_its_own_recipe_unless_told_otherwise(capsys, tmp_path):
    """--model unet alone takes U-Net's learning rate; --lr still wins; a resumed run keeps
    the checkpoint's rate and refuses another one, naming both."""
    from minifcn.train import TrainConfig, recipe

    assert recipe("unet")["lr"] == 1e-3 and recipe("segnet")["lr"] == 3e-3
    assert recipe("fcn8s") == {"epochs": 7, "lr": 3e-3, "batch_size": 8}
    assert TrainConfig().lr == 3e-3 and TrainConfig().batch_size == 8
    assert TrainConfig().epochs == 7 and TrainConfig(model="fcn16s").epochs == 8
    assert TrainConfig(model="segnet").lr == 3e-3 and TrainConfig(model="unet").batch_size == 16
    assert TrainConfig(batch_size=4).batch_size == 4
    assert TrainConfig(model="unet", lr=5e-4).lr == 5e-4
    for name, argv, lr in (("own", [], 1e-3), ("given", ["--lr", "2e-3"], 2e-3)):
        out = tmp_path / name
        assert main(["train", *TINY, "--model", "unet", *argv, "--out", str(out)]) == 0
        assert load_checkpoint(out / "checkpoint.npz").config["lr"] == lr
    capsys.readouterr()
    checkpoint = str(tmp_path / "own" / "checkpoint.npz")
    line = one_line_error(*run(capsys, "train", "--resume", checkpoint, "--lr", "3e-3",
                               "--epochs", "2")[::2])
    assert "--lr 0.003 (the checkpoint has --lr 0.001)" in line
    status, printed, err = run(capsys, "train", "--resume", checkpoint, "--model", "unet",
                               "--epochs", "2")
    assert status == 0 and "epoch 2/2" in printed, err
    assert load_checkpoint(checkpoint).config["lr"] == 1e-3


# --- your own data ------------------------------------------------------------------------

@pytest.fixture(scope="module")
def voc(tmp_path_factory):
    return write_folder(tmp_path_factory.mktemp("data") / "shapes_voc", last_class_in="val")


def test_class_count_comes_from_every_split(capsys, voc, tmp_path):
    """The training split lacks class 3; the model still gets 4 classes."""
    status, printed, err = run(capsys, "train", *TINY, "--data", str(voc),
                               "--out", str(tmp_path))
    assert status == 0, err
    assert "4 classes, from the largest label in the folder's masks, 3 in" in printed
    config = load_checkpoint(tmp_path / "checkpoint.npz").config
    assert config["num_classes"] == 4 and config["class_names"] == ["0", "1", "2", "3"]


def test_num_classes_option(capsys, voc, tmp_path):
    status, _, err = run(capsys, "train", *TINY, "--data", str(voc), "--num-classes", "6",
                         "--out", str(tmp_path))
    assert status == 0, err
    assert load_checkpoint(tmp_path / "checkpoint.npz").config["num_classes"] == 6
    line = one_line_error(*run(capsys, "train", *TINY, "--data", str(voc), "--num-classes",
                               "3", "--out", str(tmp_path / "small"))[::2])
    assert re.search(r"mask .*val_0000\d\.png has label 3, but the folder has 3 classes", line)
    assert not (tmp_path / "small" / "checkpoint.npz").exists()  # refused before training


def test_class_names_file_reaches_evaluate(capsys, voc, tmp_path):
    names = tmp_path / "names.txt"
    names.write_text("sky\nball\nbox\ncone\n")
    status, printed, err = run(capsys, "train", *TINY, "--data", str(voc), "--class-names",
                               str(names), "--out", str(tmp_path / "run"))
    assert status == 0, err
    assert "4 classes, from --class-names" in printed
    status, printed, err = run(capsys, "evaluate", "--checkpoint",
                               str(tmp_path / "run/best.npz"))
    assert status == 0, err
    assert f"8 validation images of {voc}" in printed.splitlines()[0]  # the run's own data
    per_class = printed.split("per-class IoU:\n")[1].split()
    assert per_class[::2] == ["sky", "ball", "box", "cone"]


@pytest.mark.parametrize("text,extra,message", [
    ("sky\nball\nbox\n", [], r"has label 3, but the folder has 3 classes"),
    ("sky\nball\nbox\ncone\n", ["--num-classes", "5"], r"--num-classes 5 but --class-names "
                                                        r"gives 4 names \(sky, ball, box, cone\)"),
    ("sky\n\nbox\ncone\n", [], r"line 2 is empty"),
])
def test_class_names_that_do_not_fit_are_one_line_errors(capsys, voc, tmp_path, text, extra,
                                                         message):
    names = tmp_path / "names.txt"
    names.write_text(text)
    line = one_line_error(*run(capsys, "train", *TINY, "--data", str(voc), "--class-names",
                               str(names), *extra, "--out", str(tmp_path))[::2])
    assert re.search(message, line), line


def test_class_names_file_in_the_folder(capsys, tmp_path):
    data = write_folder(tmp_path / "mine")
    (data / "class_names.txt").write_text("sky\nball\nbox\ncone\n")
    assert main(["train", *TINY, "--data", str(data), "--out", str(tmp_path / "run")]) == 0
    assert "class_names.txt" in capsys.readouterr().out
    config = load_checkpoint(tmp_path / "run/checkpoint.npz").config
    assert config["class_names"] == ["sky", "ball", "box", "cone"]


def test_a_voc_devkit_folder_gets_voc_names_in_evaluate(capsys, tmp_path):
    data = write_folder(tmp_path / "VOCdevkit" / "VOC2012")
    assert main(["train", *TINY, "--data", str(data), "--out", str(tmp_path / "run")]) == 0
    assert "21 classes, from Pascal VOC's" in capsys.readouterr().out
    status, printed, err = run(capsys, "evaluate", "--checkpoint", str(tmp_path / "run/best.npz"),
                               "--data", str(data))
    assert status == 0, err
    assert printed.split("per-class IoU:\n")[1].split()[::2] == list(VOC_CLASSES)


def test_num_classes_and_class_names_need_a_data_folder(capsys, tmp_path):
    line = one_line_error(*run(capsys, "train", *TINY, "--num-classes", "5",
                               "--out", str(tmp_path))[::2])
    assert "toy shapes have 4 classes" in line and "--data" in line


def test_resume_finds_a_moved_data_folder_with_data(capsys, voc, tmp_path):
    import shutil

    data = shutil.copytree(voc, tmp_path / "before")
    assert main(["train", *TINY, "--data", str(data), "--out", str(tmp_path / "run")]) == 0
    moved = shutil.move(data, tmp_path / "after")
    checkpoint = str(tmp_path / "run/checkpoint.npz")
    line = one_line_error(*run(capsys, "train", "--resume", checkpoint, "--epochs", "2")[::2])
    assert "before" in line  # the folder the checkpoint knows is gone: one line naming it
    status, printed, err = run(capsys, "train", "--resume", checkpoint, "--epochs", "2",
                               "--data", str(moved))
    assert status == 0, err
    assert "epoch 2/2" in printed
    assert load_checkpoint(checkpoint).config["data"] == str(moved)
