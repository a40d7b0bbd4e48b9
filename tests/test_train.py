"""Training end to end: files written, reproducibility, resuming, divergence, the CLI."""

from __future__ import annotations

import csv
import os
import subprocess
import sys

import numpy as np
import pytest

from minifcn.checkpoint import load_checkpoint
from minifcn.cli import main
from minifcn.data import Shapes, write_voc_folder
from minifcn.train import METRIC_COLUMNS, TrainConfig, TrainingDiverged, build_for_config, train

TINY_OPTIONS = {"widths": (4, 4, 8, 8, 8), "head_channels": 8}


def tiny_config(out, **changes) -> TrainConfig:
    settings = dict(model="fcn8s", epochs=2, batch_size=8, train_size=16, val_size=8,
                    out=str(out), model_options=dict(TINY_OPTIONS))
    settings.update(changes)
    return TrainConfig(**settings)


def read_rows(path) -> list[dict]:
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


def without_time(rows: list[dict]) -> list[dict]:
    return [{k: v for k, v in row.items() if k != "seconds"} for row in rows]


def test_training_writes_metrics_checkpoints_and_figures(tmp_path):
    last = train(tiny_config(tmp_path), progress=False, log=lambda *_: None)
    rows = read_rows(tmp_path / "metrics.csv")
    assert list(rows[0]) == METRIC_COLUMNS
    assert [int(r["epoch"]) for r in rows] == [1, 2]
    assert 0.0 <= last["mean_iou"] <= 1.0 and np.isfinite(float(rows[-1]["train_loss"]))
    for name in ("checkpoint.npz", "best.npz", "predictions.png", "curves.png"):
        assert (tmp_path / name).stat().st_size > 0, name
    state = load_checkpoint(tmp_path / "checkpoint.npz")
    assert state.epoch == 1 and state.model_name == "fcn8s"
    assert "encoder.stage1.0.weight" in state.model_state
    model = build_for_config(TrainConfig(**state.config))
    model.load_state_dict(state.model_state)  # the saved config rebuilds the same model


def test_same_seed_gives_identical_metrics(tmp_path):
    """Every number is reproducible on the CPU; only the wall-clock column differs."""
    train(tiny_config(tmp_path / "a"), progress=False, log=lambda *_: None)
    train(tiny_config(tmp_path / "b"), progress=False, log=lambda *_: None)
    first, second = read_rows(tmp_path / "a/metrics.csv"), read_rows(tmp_path / "b/metrics.csv")
    assert without_time(first) == without_time(second)
    train(tiny_config(tmp_path / "c", seed=1), progress=False, log=lambda *_: None)
    assert without_time(read_rows(tmp_path / "c/metrics.csv")) != without_time(first)


def test_resuming_continues_exactly_where_training_stopped(tmp_path):
    # A constant learning rate: a schedule's shape depends on the total number of epochs,
    # so a 1-epoch run and a 3-epoch run differ from their first step on.
    def config(out, epochs):
        return tiny_config(out, epochs=epochs, schedule="constant")

    train(config(tmp_path / "straight", 3), progress=False, log=lambda *_: None)
    train(config(tmp_path / "split", 1), progress=False, log=lambda *_: None)
    train(config(tmp_path / "split", 3),
          resume=str(tmp_path / "split/checkpoint.npz"), progress=False, log=lambda *_: None)
    straight = read_rows(tmp_path / "straight/metrics.csv")
    resumed = read_rows(tmp_path / "split/metrics.csv")
    assert without_time(resumed) == without_time(straight)
    a = load_checkpoint(tmp_path / "straight/checkpoint.npz").model_state
    b = load_checkpoint(tmp_path / "split/checkpoint.npz").model_state
    assert all(np.array_equal(a[k], b[k]) for k in a)


def test_a_diverging_run_stops_with_advice_and_keeps_the_last_good_checkpoint(tmp_path):
    config = tiny_config(tmp_path, epochs=3, optimizer="sgd", lr=1e3, schedule="constant")
    where = r"at epoch \d+(, step \d+|, on the validation set)"
    with pytest.raises(TrainingDiverged, match=where + ".*lower learning rate"):
        train(config, progress=False, log=lambda *_: None)
    checkpoint = tmp_path / "checkpoint.npz"
    if checkpoint.exists():  # saved only by epochs that ended with a finite loss
        state = load_checkpoint(checkpoint)
        assert all(np.isfinite(v).all() for v in state.model_state.values())


@pytest.mark.parametrize("change,message", [
    ({"model": "fcn4s"}, "unknown model"),
    ({"image_size": 48}, "multiple of 32"),
    ({"epochs": 0}, "--epochs"),
    ({"lr": -1.0}, "--lr"),
    ({"device": "gpu"}, "gpu"),
])
def test_bad_configurations_are_refused_before_training(tmp_path, change, message):
    with pytest.raises(ValueError if change.get("device") != "gpu" else RuntimeError,
                       match=message):
        train(tiny_config(tmp_path, **change), progress=False, log=lambda *_: None)


# --- the command line -------------------------------------------------------------------

CLI_TINY = ["--train-size", "16", "--val-size", "8", "--batch-size", "8", "--quiet"]


def run_cli(*args, cwd=None) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "minifcn", *args], capture_output=True,
                          text=True, cwd=cwd, timeout=300)


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """One short CLI training run shared by the evaluate/predict tests."""
    out = tmp_path_factory.mktemp("cli_run")
    result = run_cli("train", "--epochs", "1", "--out", str(out), *CLI_TINY)
    assert result.returncode == 0, result.stderr
    return out


def test_cli_train_writes_the_run(trained):
    assert {"metrics.csv", "checkpoint.npz", "best.npz", "predictions.png",
            "curves.png"} <= set(os.listdir(trained))


def test_cli_evaluate_prints_the_four_metrics_and_per_class_iou(trained):
    result = run_cli("evaluate", "--checkpoint", str(trained / "best.npz"))
    assert result.returncode == 0, result.stderr
    for label in ("pixel accuracy", "mean accuracy", "mean IoU", "frequency-weighted IoU",
                  "circle", "square", "triangle", "background"):
        assert label in result.stdout
    saved = read_rows(trained / "metrics.csv")[-1]
    printed = float(result.stdout.split("mean IoU")[1].split()[0])
    assert printed == pytest.approx(float(saved["mean_iou"]), abs=1e-4)


def test_cli_predict_writes_palette_masks_of_the_image_size(trained, tmp_path):
    from PIL import Image

    images = Shapes(2, image_size=64, seed=3).images
    paths = []
    for i, size in enumerate([(64, 64), (50, 70)]):  # any size: padded, predicted, cropped
        picture = (images[i].transpose(1, 2, 0) * 255).astype(np.uint8)
        path = tmp_path / f"photo{i}.png"
        Image.fromarray(picture).resize(size[::-1]).save(path)
        paths.append(str(path))
    result = run_cli("predict", "--checkpoint", str(trained / "best.npz"), *paths,
                     "--out", str(tmp_path / "masks"))
    assert result.returncode == 0, result.stderr
    for i, size in enumerate([(64, 64), (50, 70)]):
        mask = Image.open(tmp_path / "masks" / f"photo{i}.png")
        assert mask.mode == "P" and mask.size == size[::-1]
        assert set(np.unique(np.asarray(mask))) <= {0, 1, 2, 3}


def test_cli_predict_runs_a_folder_and_skips_what_it_cannot_read(trained, tmp_path):
    """A folder of images: the unreadable one is skipped with one line naming it, every
    other gets its mask, and the exit status says that one was skipped."""
    from PIL import Image

    folder = tmp_path / "photos"
    folder.mkdir()
    picture = (Shapes(1, image_size=64, seed=3).images[0].transpose(1, 2, 0) * 255)
    Image.fromarray(picture.astype(np.uint8)).save(folder / "a.png")
    Image.fromarray(picture.astype(np.uint8)).convert("CMYK").save(folder / "b.jpg")
    (folder / "c.jpg").write_bytes(b"\xff\xd8\xff not a photo")
    result = run_cli("predict", "--checkpoint", str(trained / "best.npz"), str(folder),
                     "--out", str(tmp_path / "masks"))
    assert result.returncode == 1
    assert sorted(os.listdir(tmp_path / "masks")) == ["a.png", "b.png"]
    errors = result.stderr.strip().splitlines()
    assert errors[0].startswith(f"minifcn predict: skipped {folder / 'c.jpg'}: ")
    assert errors[-1] == "minifcn predict: 2 of 3 images done, 1 skipped"
    assert "Traceback" not in result.stderr


def test_cli_predict_refuses_two_images_that_would_write_one_mask(trained, tmp_path):
    from PIL import Image

    for name in ("x.png", "x.jpg"):
        Image.new("RGB", (32, 32)).save(tmp_path / name)
    result = run_cli("predict", "--checkpoint", str(trained / "best.npz"),
                     str(tmp_path / "x.png"), str(tmp_path / "x.jpg"),
                     "--out", str(tmp_path / "masks"))
    assert result.returncode == 1 and "would both write" in result.stderr
    assert not (tmp_path / "masks").exists()


@pytest.mark.parametrize("args,message", [
    (["train", "--image-size", "48"], "multiple of 32"),
    (["train", "--device", "gpu"], "gpu"),
    (["train", "--data", "/nonexistent/voc"], "/nonexistent/voc"),
    (["evaluate", "--checkpoint", "/nonexistent.npz"], "nonexistent.npz"),
    (["train", "--resume", "/nonexistent.npz"], "nonexistent.npz"),
])
def test_cli_user_errors_are_one_line_without_traceback(tmp_path, args, message):
    result = run_cli(*args, "--out" if args[0] == "train" else "--device",
                     str(tmp_path) if args[0] == "train" else "cpu",
                     *(CLI_TINY if args[0] == "train" else []))
    assert result.returncode == 1
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and message in lines[0], result.stderr
    assert "Traceback" not in result.stderr


def test_cli_bad_checkpoint_file_is_one_line(tmp_path):
    bad = tmp_path / "broken.npz"
    bad.write_bytes(b"not a checkpoint at all")
    result = run_cli("evaluate", "--checkpoint", str(bad))
    assert result.returncode == 1 and "broken.npz" in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1


def test_cli_unknown_model_is_refused(tmp_path):
    result = run_cli("train", "--model", "fcn4s", "--out", str(tmp_path))
    assert result.returncode != 0 and "fcn4s" in result.stderr
    assert "Traceback" not in result.stderr


def test_cli_trains_on_a_voc_folder(tmp_path):
    train_set, val_set = Shapes.splits(16, 8, image_size=64, seed=5)
    write_voc_folder(tmp_path / "voc", train_set, split="train")
    write_voc_folder(tmp_path / "voc", val_set, split="val")
    result = run_cli("train", "--data", str(tmp_path / "voc"), "--epochs", "1",
                     "--out", str(tmp_path / "run"), "--class-weights", *CLI_TINY)
    assert result.returncode == 0, result.stderr
    assert len(read_rows(tmp_path / "run/metrics.csv")) == 1


def test_main_returns_status_codes(tmp_path):
    assert main(["train", "--image-size", "33", "--out", str(tmp_path), "--quiet"]) == 1


@pytest.mark.parametrize("model_name,optimizer", [("fcn8s", "adam"), ("unet", "sgd")])
def test_a_training_step_on_the_device_syncs_with_the_host_once(model_name, optimizer, rng):
    """On a GPU every device -> host transfer (float(), .item(), .get(), printing) waits for
    the device. One training step (forward, loss, backward, optimizer and schedule, exactly
    as minifcn train runs them) may make one: the loss for the progress display. Counted on
    the strict stand-in, whose hook sees them all."""
    from minifcn import backend, nn
    from minifcn.optim import make_scheduler
    from minifcn.testing import strict_cupy
    from minifcn.train import _make_optimizer, _skip_needless_work, _train_epoch

    options = {"widths": (4, 4, 8, 8, 8)}
    if model_name == "fcn8s":
        options["head_channels"] = 8
    config = tiny_config("unused", model=model_name, optimizer=optimizer, device="gpu",
                         num_classes=4, model_options=options)
    images = rng.standard_normal((2, 3, 64, 64)).astype(np.float32)
    masks = rng.integers(0, 4, (2, 64, 64))
    masks[0, 0, :5] = 255  # void pixels too
    with backend.use_gpu_module(strict_cupy):
        model = build_for_config(config)
        optimizer_ = _make_optimizer(config, model)
        scheduler = make_scheduler(config.schedule, optimizer_, total_steps=4)
        criterion = nn.CrossEntropyLoss(ignore_index=255, device="gpu")
        _skip_needless_work(model, criterion, config)  # as train() does
        batch = (strict_cupy.asarray(images), strict_cupy.asarray(masks))
        _train_epoch(model, criterion, optimizer_, scheduler, [batch], config, 0, False)
        with strict_cupy._count_host_transfers() as transfers:
            loss = _train_epoch(model, criterion, optimizer_, scheduler, [batch], config, 1,
                                False)
        assert transfers.where == ["float()"], transfers.where
        assert np.isfinite(loss)
        # the hook sees the other ways too
        with strict_cupy._count_host_transfers() as transfers:
            value = model.encoder.stage1[0].weight.data
            value.get(), value[0, 0, 0, 0].item(), int(value[0, 0, 0, 0] > 0), f"{value[0, 0]}"
        assert transfers.where == [".get()", ".item()", "int()", "format()"], transfers.where
