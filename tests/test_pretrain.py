"""Pre-training the classifier and starting an FCN from it: files, reproducibility, CLI."""

from __future__ import annotations

import csv

import numpy as np
import pytest

from minifcn.checkpoint import load_checkpoint
from minifcn.cli import main
from minifcn.models import build_model, convolutionalize
from minifcn.train import (
    PRETRAIN_COLUMNS,
    TrainConfig,
    TrainingDiverged,
    _init_from_classifier,
    build_for_config,
    pretrain_config,
    train,
)

TINY_OPTIONS = {"widths": (4, 4, 8, 8, 8), "head_channels": 8}


def quiet(*_):
    pass


def tiny_pretrain(out, **changes) -> TrainConfig:
    # a constant learning rate: a cosine schedule's length depends on the epochs asked for,
    # so a 1-epoch run could not be resumed into the 2-epoch run it is compared with
    settings = dict(epochs=2, batch_size=8, train_size=16, val_size=8, out=str(out),
                    schedule="constant", model_options=dict(TINY_OPTIONS))
    settings.update(changes)
    return pretrain_config(**settings)


def read_rows(path) -> list[dict]:
    with open(path, newline="") as f:
        return [{k: v for k, v in row.items() if k != "seconds"} for row in csv.DictReader(f)]


@pytest.fixture(scope="module")
def classifier_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("classifier")
    last = train(tiny_pretrain(out), progress=False, log=quiet)
    return out, last


def test_pretraining_writes_metrics_checkpoints_and_curves(classifier_run):
    out, last = classifier_run
    with open(out / "metrics.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    assert list(rows[0]) == PRETRAIN_COLUMNS
    assert [int(r["epoch"]) for r in rows] == [1, 2]
    assert 0.0 <= last["accuracy"] <= 1.0 and np.isfinite(last["train_loss"])
    for name in ("checkpoint.npz", "best.npz", "curves.png"):
        assert (out / name).stat().st_size > 0, name
    state = load_checkpoint(out / "checkpoint.npz")
    assert state.model_name == "classifier" and state.epoch == 1
    assert state.metrics["accuracy"] == pytest.approx(last["accuracy"])
    model = build_for_config(TrainConfig(**state.config))
    model.load_state_dict(state.model_state)
    assert model.image_size == 96 and model.num_classes == 3
    assert state.model_state["fc6.0.weight"].shape == (8, 8 * 3 * 3)


def test_pretraining_is_reproducible_and_resumes_exactly(classifier_run, tmp_path):
    """One epoch, then a resumed second, writes the fixture's metrics to the last digit:
    the same numbers from the same seed, and resuming loses nothing."""
    out, _ = classifier_run
    train(tiny_pretrain(tmp_path, epochs=1), progress=False, log=quiet)
    train(tiny_pretrain(tmp_path), resume=str(tmp_path / "checkpoint.npz"), progress=False,
          log=quiet)
    assert read_rows(tmp_path / "metrics.csv") == read_rows(out / "metrics.csv")


def test_a_diverging_pretraining_stops_with_advice(tmp_path):
    config = tiny_pretrain(tmp_path, epochs=3, optimizer="sgd", lr=1e4, schedule="constant")
    with pytest.raises(TrainingDiverged, match="try a lower learning rate"):
        train(config, progress=False, log=quiet)


def test_an_fcn_starts_from_the_converted_classifier(classifier_run, tmp_path):
    out, _ = classifier_run
    config = TrainConfig(model="fcn8s", num_classes=4, model_options=dict(TINY_OPTIONS),
                         init_from=str(out / "best.npz"))
    fcn = build_for_config(config)
    message = _init_from_classifier(fcn, config)
    assert "started from" in message and "copied" in message
    state = load_checkpoint(out / "best.npz")
    classifier = build_for_config(TrainConfig(**state.config))
    classifier.load_state_dict(state.model_state)
    converted = convolutionalize(classifier).state_dict()
    fcn_state = fcn.state_dict()
    for key in ("encoder.stage1.0.weight", "encoder.stage5.1.running_var", "fc6.0.weight",
                "fc7.0.bias"):
        np.testing.assert_array_equal(fcn_state[key], converted[key], err_msg=key)
    assert fcn_state["score_fr.weight"].shape == (4, 8, 1, 1)  # fresh: other classes

    logged = []
    last = train(TrainConfig(**{**config.__dict__, "epochs": 1, "batch_size": 8,
                                "train_size": 8, "val_size": 8, "out": str(tmp_path)}),
                 progress=False, log=logged.append)
    assert any("started from" in line for line in logged) and 0 <= last["mean_iou"] <= 1
    assert load_checkpoint(tmp_path / "checkpoint.npz").config["init_from"] == str(
        out / "best.npz")


def test_cli_pretrain_then_train_init_from_then_evaluate(tmp_path, capsys):
    classifier = tmp_path / "classifier"
    assert main(["pretrain", "--epochs", "1", "--train-size", "8", "--val-size", "4",
                 "--batch-size", "4", "--out", str(classifier), "--quiet"]) == 0
    assert "accuracy" in capsys.readouterr().out
    assert main(["train", "--model", "fcn32s", "--init-from", str(classifier / "best.npz"),
                 "--epochs", "1", "--train-size", "8", "--val-size", "4", "--batch-size",
                 "4", "--image-size", "32", "--out", str(tmp_path / "fcn"), "--quiet"]) == 0
    assert "started from" in capsys.readouterr().out
    assert main(["evaluate", "--checkpoint", str(classifier / "best.npz")]) == 0
    printed = capsys.readouterr().out
    assert "classifier on 4 validation images" in printed and "accuracy" in printed


def test_init_from_refuses_what_cannot_start_an_fcn(classifier_run, tmp_path, capsys):
    out, _ = classifier_run
    segmenter = tmp_path / "segmenter"
    train(TrainConfig(model="fcn32s", epochs=1, batch_size=4, train_size=4, val_size=4,
                      image_size=32, out=str(segmenter), model_options=dict(TINY_OPTIONS)),
          progress=False, log=quiet)
    common = ["--epochs", "1", "--train-size", "4", "--val-size", "4", "--image-size", "32",
              "--out", str(tmp_path / "x"), "--quiet"]
    cases = [
        (["train", "--init-from", str(segmenter / "best.npz")], "holds a fcn32s model, not a "
                                                                 "classifier"),
        # the CLI's FCN has the default widths, the tiny classifier others
        (["train", "--init-from", str(out / "best.npz")], "encoder widths (4, 4, 8, 8, 8) vs"),
        (["train", "--model", "unet", "--init-from", str(out / "best.npz")],
         "--init-from starts fcn32s, fcn16s or fcn8s"),
        (["train", "--init-from", str(tmp_path / "missing.npz")], "no such file"),
    ]
    for argv, expected in cases:
        assert main(argv + common) == 1, argv
        error = capsys.readouterr().err
        assert expected in error and "Traceback" not in error, (argv, error)


def test_a_classifier_trained_on_64_px_images_says_why_it_does_not_fit(tmp_path, capsys):
    small = tmp_path / "small"
    train(tiny_pretrain(small, epochs=1, image_size=64), progress=False, log=quiet)
    config = TrainConfig(model="fcn8s", num_classes=4, model_options=dict(TINY_OPTIONS),
                         init_from=str(small / "best.npz"))
    with pytest.raises(ValueError, match="train the classifier on 96 px images"):
        _init_from_classifier(build_for_config(config), config)
    with pytest.raises(ValueError, match="--data is for segmenters"):
        pretrain_config(data="somewhere").validate()
    assert build_model("classifier", 3, image_size=64).pool5_size == 2


def test_pretrain_defaults_are_the_recipe_that_learns(capsys):
    """The measured recipe (see RECIPES and ShapeLabels): Adam at 3e-4, no dropout, one
    shape per 96 x 96 image at object scale 2; what minifcn pretrain uses when not told,
    and what its help says. (At 3e-3 with dropout 0.5 the classifier learned nothing.)"""
    from minifcn import nn
    from minifcn.train import recipe

    config = pretrain_config()
    assert config.lr == recipe("classifier")["lr"] == 3e-4 and config.image_size == 96
    model = build_model("classifier", 3, widths=(2, 2, 2, 2, 2), head_channels=2)
    drops = [m for m in model.modules() if isinstance(m, nn.Dropout)]
    assert len(drops) == 2 and all(d.p == 0.0 for d in drops), "named like FCN's, off"
    with pytest.raises(SystemExit):
        main(["pretrain", "--help"])
    help_text = " ".join(capsys.readouterr().out.split())
    assert "one shape each" in help_text and "(default: 0.0003)" in help_text
