"""Training and evaluation loops: what ``minifcn train``, ``minifcn pretrain`` and
``minifcn evaluate`` run.

One training step is the whole framework in five lines:

    logits = model(images)                    # forward through every layer
    loss = criterion(logits, masks)           # per-pixel cross-entropy, void ignored
    model.zero_grad()
    model.backward(criterion.backward())      # every layer's hand-written backward
    optimizer.step()

The same loop trains the image classifier (``minifcn pretrain``, ``config.model ==
"classifier"``) on :class:`~minifcn.data.ShapeLabels`, with one label per image, scored by
accuracy; ``init_from`` starts an FCN from such a classifier (Long et al.'s recipe).
"""

from __future__ import annotations

import csv
import dataclasses
import math
import os
import time
import warnings
from dataclasses import dataclass, field

from . import backend
from .checkpoint import load_checkpoint, save_checkpoint
from .data import (
    IGNORE_INDEX,
    DataLoader,
    SegmentationFolder,
    ShapeLabels,
    Shapes,
    median_frequency_weights,
)
from .metrics import ConfusionMatrix
from .models import CLASSIFIERS, MODELS, build_model
from .nn import CrossEntropyLoss
from .optim import SGD, Adam, make_scheduler

__all__ = ["METRIC_COLUMNS", "PRETRAIN_COLUMNS", "RECIPES", "SHARED_RECIPE", "TrainConfig",
           "TrainingDiverged", "build_for_config", "evaluate", "evaluate_classifier",
           "pretrain_config", "recipe", "train"]

METRIC_COLUMNS = ["epoch", "train_loss", "val_loss", "pixel_acc", "mean_acc", "mean_iou",
                  "fw_iou", "seconds"]
PRETRAIN_COLUMNS = ["epoch", "train_loss", "val_loss", "accuracy", "seconds"]


class TrainingDiverged(RuntimeError):
    """The loss became NaN or infinite."""


SHARED_RECIPE = {"epochs": 8, "lr": 3e-3, "batch_size": 16}
"""The settings a model gets unless :data:`RECIPES` or the caller say otherwise: 8 epochs of
Adam at 3e-3 on batches of 16, cosine to 0 over the run (the PyTorch calibration's recipe)."""

RECIPES = {
    # Measured here (cosine, seed 0): batches of 8 reached mean IoU 0.886 after 8 epochs at
    # lr 3e-3 and 0.874 at 2e-3, where batches of 16 at 3e-3 reached 0.834-0.849: twice
    # the steps for the same time an epoch (21 s either way, one BLAS thread). 7 epochs:
    # 0.861 in 135 s with two BLAS threads, within the 150 s the default run should take
    # (8 took 160 s); 6 epochs: 0.852.
    "fcn8s": {"batch_size": 8, "epochs": 7},
    # Measured here (8 epochs, batch 16, cosine, seed 0): U-Net at the shared 3e-3 reached
    # mean IoU 0.714-0.819, its result swinging with the BLAS thread count; at 1e-3, 0.897.
    "unet": {"lr": 1e-3},
    # The classifier (minifcn pretrain), measured in its PyTorch twin (1000 one-object
    # ShapeLabels images, 5 epochs, batch 16, no dropout, constant rate): at 3e-3 (seed 0)
    # it learned nothing (accuracy near the commonest class's share, 36%); seeds 0, 1, 2 at 1e-3
    # validation accuracy 0.94, 0.51, 0.72 (long, seed-dependent plateaus at ln 3); at 3e-4
    # 0.75, 0.86, 0.74, every seed leaving the plateau in the first epochs.
    "classifier": {"lr": 3e-4},
    # SegNet keeps the shared recipe: at 1e-3 (the PyTorch calibration's rate for it) it
    # reached 0.664 here, below the 0.696 it reaches at 3e-3.
}
"""Per-model departures from :data:`SHARED_RECIPE`: what ``minifcn train --model NAME``
uses for options not given."""


def recipe(model: str) -> dict:
    """The settings model ``model`` trains with unless told otherwise, e.g.
    ``{"epochs": 8, "lr": 1e-3, "batch_size": 16}`` for U-Net."""
    return {**SHARED_RECIPE, **RECIPES.get(model, {})}


@dataclass
class TrainConfig:
    """Everything that defines a training run (saved in every checkpoint)."""

    model: str = "fcn8s"
    epochs: int | None = None  # None: the model's recipe (see recipe())
    batch_size: int | None = None  # None: the model's recipe (see recipe())
    lr: float | None = None  # None: the model's recipe (see recipe())
    optimizer: str = "adam"
    schedule: str = "cosine"
    momentum: float = 0.9
    weight_decay: float = 0.0
    image_size: int = 64
    train_size: int = 2000
    val_size: int = 500
    data: str | None = None
    seed: int = 0
    device: str = "cpu"
    out: str = "runs/latest"
    upsample: str | None = None
    class_weights: bool = False
    flip: bool = True
    num_classes: int = 0  # 0: as many as the data has (see SegmentationFolder)
    class_names: list[str] | None = None  # None: the data's own; saved for evaluate
    model_options: dict = field(default_factory=dict)
    layers: str | None = None  # a folder of exercise files whose layers replace minifcn's
    init_from: str | None = None  # a classifier checkpoint an FCN starts from

    @property
    def is_classifier(self) -> bool:
        return self.model in CLASSIFIERS

    def __post_init__(self) -> None:
        for name, value in recipe(self.model).items():  # what the caller left to the model
            if getattr(self, name) is None:
                setattr(self, name, value)

    def validate(self) -> None:
        if self.model not in MODELS and not self.is_classifier:
            raise ValueError(f"unknown model {self.model!r}: expected one of "
                             f"{', '.join([*MODELS, *CLASSIFIERS])}")
        if self.is_classifier:
            for option, used in (("--data", self.data is not None),
                                 ("--class-weights", self.class_weights),
                                 ("--upsample", self.upsample is not None),
                                 ("--init-from", self.init_from is not None)):
                if used:
                    raise ValueError(f"{option} is for segmenters; the classifier trains on "
                                     f"the toy shape labels")
        if self.init_from is not None and not self.model.startswith("fcn"):
            raise ValueError(f"--init-from starts fcn32s, fcn16s or fcn8s from a classifier "
                             f"(their fc6 and fc7 are its fully connected layers), not "
                             f"{self.model}")
        if self.image_size <= 0 or self.image_size % 32:
            raise ValueError(f"image size {self.image_size} cannot go through the encoder: it "
                             f"must be a positive multiple of 32 (the output stride)")
        for name in ("epochs", "batch_size", "train_size", "val_size"):
            if getattr(self, name) < 1:
                raise ValueError(f"--{name.replace('_', '-')} must be at least 1, "
                                 f"got {getattr(self, name)}")
        if not self.lr > 0:
            raise ValueError(f"--lr must be positive, got {self.lr}")
        if not 0 <= self.num_classes <= IGNORE_INDEX:
            raise ValueError(f"--num-classes must be between 1 and {IGNORE_INDEX} (label "
                             f"{IGNORE_INDEX} marks void), got {self.num_classes}")
        names = self.class_names
        if names is not None and self.num_classes and len(names) != self.num_classes:
            raise ValueError(f"--num-classes {self.num_classes} but --class-names gives "
                             f"{len(names)} names ({', '.join(names[:5])}"
                             f"{', ...' if len(names) > 5 else ''})")
        if not self.is_classifier and self.data is None and (
                self.num_classes not in (0, Shapes.num_classes) or (
                names is not None and len(names) != Shapes.num_classes)):
            raise ValueError(f"the toy shapes have {Shapes.num_classes} classes "
                             f"({', '.join(Shapes.CLASSES)}); --num-classes and --class-names "
                             f"describe a --data folder")
        if self.optimizer not in ("adam", "sgd"):
            raise ValueError(f"unknown optimizer {self.optimizer!r}: expected adam or sgd")
        backend.array_module(self.device)  # a clear error when the GPU is not there
        if self.layers is not None and not os.path.isdir(self.layers):
            raise ValueError(f"--layers: {self.layers} is not a folder; it should hold your "
                             f"exercise files (minifcn exercises start NAME writes them there)")


def pretrain_config(**changes) -> TrainConfig:
    """The defaults of ``minifcn pretrain``: the classifier on 96 x 96 shape labels."""
    settings = dict(model="classifier", image_size=96, epochs=6, out="runs/classifier")
    settings.update(changes)
    return TrainConfig(**settings)


def _datasets(config: TrainConfig, log=print, names_from: str = "--class-names"):
    """(train, validation) datasets: toy shapes or shape labels, or a VOC-layout folder
    whose every mask is checked, up front, to hold only labels below the class count (or
    void)."""
    if config.is_classifier:
        return ShapeLabels.splits(config.train_size, config.val_size, config.image_size,
                                  seed=config.seed)
    if config.data is None:
        return Shapes.splits(config.train_size, config.val_size, config.image_size,
                             seed=config.seed)
    train_set = SegmentationFolder(config.data, split="train", image_size=config.image_size,
                                   num_classes=config.num_classes or None,
                                   classes=config.class_names)
    train_set.check_labels()
    source = train_set.classes_from if config.class_names is None else names_from
    log(f"{config.data}: {train_set.num_classes} classes, from {source}")
    # The validation split shares the training split's classes: nothing to count again.
    return train_set, SegmentationFolder(config.data, split="val", image_size=config.image_size,
                                         num_classes=train_set.num_classes,
                                         classes=train_set.classes)


def build_for_config(config: TrainConfig):
    """The model a config describes, freshly initialised, on the config's device."""
    options = dict(config.model_options)
    if config.upsample is not None:
        options["upsample"] = config.upsample
    if config.is_classifier:
        options["image_size"] = config.image_size
    model = build_model(config.model, config.num_classes, **options)
    return model.to(config.device)


def _make_optimizer(config: TrainConfig, model):
    if config.optimizer == "sgd":
        return SGD(model.parameters(), lr=config.lr, momentum=config.momentum,
                   weight_decay=config.weight_decay)
    return Adam(model.parameters(), lr=config.lr, weight_decay=config.weight_decay)


def _confusion_and_loss(model, loader, confusion: ConfusionMatrix, criterion) -> float | None:
    """Fill ``confusion`` with the model's argmax against each batch's targets, in
    evaluation mode (running batch-norm statistics, no dropout), and leave the model in
    the mode it came in; returns the mean of ``criterion`` over the batches, or None."""
    was_training = model.training
    model.eval()
    total_loss, batches = 0.0, 0
    for inputs, targets in loader:
        scores = model(inputs)
        if criterion is not None:
            total_loss += float(criterion(scores, targets))
            batches += 1
        confusion.update(scores.argmax(axis=1), targets)
    model.train(was_training)
    return None if criterion is None else total_loss / max(batches, 1)


def evaluate(model, loader, num_classes: int, criterion=None) -> dict:
    """Mean loss (if ``criterion``) and the four segmentation metrics over ``loader``.

    The model runs in evaluation mode (running batch-norm statistics, no dropout) and is
    left in the mode it came in.
    """
    confusion = ConfusionMatrix(num_classes, ignore_index=loader.dataset.ignore_index)
    loss = _confusion_and_loss(model, loader, confusion, criterion)
    results = confusion.compute()
    if loss is not None:
        results["loss"] = loss
    return results


def evaluate_classifier(model, loader, criterion=None) -> dict:
    """Mean loss (if ``criterion``), ``accuracy`` (the share of images labelled right) and
    ``mean_acc`` (accuracy per class, averaged) of an image classifier over ``loader``.
    Evaluation mode, as :func:`evaluate`."""
    confusion = ConfusionMatrix(loader.dataset.num_classes, ignore_index=None)
    loss = _confusion_and_loss(model, loader, confusion, criterion)  # counts images
    results = {"accuracy": confusion.pixel_accuracy(), "mean_acc": confusion.mean_accuracy(),
               "per_class_acc": confusion.per_class_accuracy()}
    if loss is not None:
        results["loss"] = loss
    return results


@dataclass(frozen=True)
class _Task:
    """What differs between training a segmenter and pre-training a classifier."""

    columns: list
    score: str  # the column best.npz is chosen by
    measures: tuple  # (column, label) logged after the losses and drawn in curves.png


_SEGMENTATION = _Task(METRIC_COLUMNS, "mean_iou",
                      (("mean_iou", "mean IoU"), ("pixel_acc", "pixel acc")))
_CLASSIFICATION = _Task(PRETRAIN_COLUMNS, "accuracy", (("accuracy", "accuracy"),))


def _write_metrics(path: str, rows: list[dict], columns=METRIC_COLUMNS) -> None:
    tmp = f"{path}.tmp"
    with open(tmp, "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=columns)
        writer.writeheader()
        for row in rows:
            writer.writerow({k: (f"{row[k]:.6f}" if isinstance(row[k], float) else row[k])
                             for k in columns})
    os.replace(tmp, path)


def _read_metrics(path: str) -> list[dict]:
    if not os.path.exists(path):
        return []
    with open(path, newline="") as f:
        return [{k: (int(v) if k == "epoch" else float(v)) for k, v in row.items()}
                for row in csv.DictReader(f)]


def train(config: TrainConfig, resume: str | None = None, progress: bool = True,
          log=print) -> dict:
    """Train ``config.model``; write metrics.csv, checkpoints and figures to ``config.out``.

    With ``resume`` (a checkpoint's path) the run continues from that checkpoint with its
    saved settings, except ``epochs``, ``out`` and ``device``, taken from ``config``, and
    ``data``, taken from ``config`` when set there (the same folder in a new place). When
    the checkpoint has already reached ``config.epochs``, nothing is trained: a message
    says how to continue, and the checkpoint's metrics are returned.

    A segmenter is scored by mean IoU, the classifier (``minifcn pretrain``) by accuracy;
    best.npz keeps the epoch with the highest. With ``config.init_from`` an FCN starts
    from that classifier checkpoint (not when resuming: the checkpoint holds it already).

    Returns the last epoch's metrics row. Raises :class:`TrainingDiverged` (after keeping
    the last good checkpoint) when the loss stops being finite.
    """
    start_epoch, state = 0, None
    if resume is not None:
        state = load_checkpoint(resume)
        saved = dict(state.config)
        saved.update(epochs=config.epochs, out=config.out, device=config.device)
        if config.data is not None and saved.get("data") is not None:
            saved["data"] = config.data
        config = TrainConfig(**saved)
        start_epoch = state.epoch + 1
        if start_epoch >= config.epochs:
            more = max(1, start_epoch // 2)
            log(f"nothing to train: {resume} has finished epoch {start_epoch} and --epochs is "
                f"{config.epochs}. To train {more} more, pass --epochs {start_epoch + more} "
                f"(the learning-rate schedule then spans {start_epoch + more} epochs).")
            return dict(state.metrics)
    config.validate()
    os.makedirs(config.out, exist_ok=True)
    backend.manual_seed(config.seed)

    train_set, val_set = _datasets(config, log, "--class-names" if state is None
                                   else f"the names saved in {resume}")
    num_classes = train_set.num_classes
    config = dataclasses.replace(config, num_classes=num_classes,
                                 class_names=list(train_set.classes))
    task = _CLASSIFICATION if config.is_classifier else _SEGMENTATION
    model = build_for_config(config)
    if config.init_from is not None and state is None:
        log(_init_from_classifier(model, config))
    optimizer = _make_optimizer(config, model)
    train_loader = DataLoader(train_set, config.batch_size, shuffle=True, drop_last=True,
                              seed=config.seed, hflip=config.flip, device=config.device)
    val_loader = DataLoader(val_set, config.batch_size, device=config.device)
    scheduler = make_scheduler(config.schedule, optimizer,
                               total_steps=config.epochs * len(train_loader))
    weight = None
    if config.class_weights:
        masks = getattr(train_set, "masks", None)
        if masks is None:  # a folder dataset reads its masks from disk one by one
            masks = [mask for _, mask in train_set]
        host_weight = median_frequency_weights(masks, num_classes, train_set.ignore_index)
        weight = backend.to_device(host_weight.astype("float32"), config.device)
    criterion = CrossEntropyLoss(weight=weight, ignore_index=train_set.ignore_index)
    _skip_needless_work(model, criterion, config)
    if config.layers is not None:
        criterion = _use_learner_layers(config, model, criterion, log)

    rows = []
    if state is not None:
        model.load_state_dict(state.model_state)
        optimizer.load_state_dict(state.optimizer_state)
        optimizer.to(config.device)
        scheduler.load_state_dict(state.extra["scheduler"])
        train_loader.set_epoch(start_epoch)
        rows = [r for r in _read_metrics(os.path.join(config.out, "metrics.csv"))
                if r["epoch"] <= state.epoch + 1]  # rows count epochs from 1
    best = max((r[task.score] for r in rows), default=-1.0)

    for epoch in range(start_epoch, config.epochs):
        started = time.perf_counter()
        _reseed_generators(model, config.seed, epoch)
        batches = _progress(train_loader, f"epoch {epoch + 1}/{config.epochs}", progress)
        with warnings.catch_warnings():
            # A diverging run overflows on its way to NaN; the finite-loss checks report that
            # once, with advice, instead of a screenful of NumPy warnings.
            warnings.simplefilter("ignore", RuntimeWarning)
            train_loss = _train_epoch(model, criterion, optimizer, scheduler, batches,
                                      config, epoch, progress)
            val = (evaluate_classifier(model, val_loader, criterion) if config.is_classifier
                   else evaluate(model, val_loader, num_classes, criterion))
        if not math.isfinite(val["loss"]):
            raise TrainingDiverged(_divergence(config, val["loss"], f"epoch {epoch + 1}, "
                                               f"on the validation set"))
        row = {"epoch": epoch + 1, "train_loss": train_loss, "val_loss": val["loss"],
               **{k: val[k] for k in task.columns[3:-1]},
               "seconds": time.perf_counter() - started}
        rows.append(row)
        log(f"epoch {epoch + 1}/{config.epochs}: train loss {row['train_loss']:.4f}, "
            f"val loss {row['val_loss']:.4f}, "
            + ", ".join(f"{label} {row[k]:.4f}" for k, label in reversed(task.measures))
            + f" ({row['seconds']:.1f} s)")
        _write_metrics(os.path.join(config.out, "metrics.csv"), rows, task.columns)
        _save(config, model, optimizer, scheduler, epoch, row, "checkpoint.npz")
        if row[task.score] > best:
            best = row[task.score]
            _save(config, model, optimizer, scheduler, epoch, row, "best.npz")

    _figures(config, model, val_set, rows, log, task)
    return rows[-1] if rows else {}


def _use_learner_layers(config: TrainConfig, model, criterion, log):
    """The capstone: the learner's functions inside the model's layers (and the loss)."""
    from .exercises.capstone import load_layers, use_layers
    from .exercises.tasks.capstone import layer_table

    layers = load_layers(config.layers)
    rows = use_layers(model, layers)
    log(f"layers from {config.layers}:")
    for exercise, source in layers.sources.items():
        log(f"  {exercise:<18}{source}")
    criterion = layers.criterion(criterion)
    loss_source = "yours" if layers.has("cross_entropy") else "minifcn's"
    log(f"  {'the loss':<18}{loss_source}")
    log("the model's layers:\n" + layer_table(rows))
    return criterion


def _init_from_classifier(model, config: TrainConfig) -> str:
    """Copy a classifier checkpoint's encoder, fc6 and fc7 into the FCN ``model``
    (:func:`minifcn.models.classifier.transfer_to_fcn`); returns a line for the log."""
    from .models.classifier import transfer_to_fcn

    path = config.init_from
    saved = load_checkpoint(path)
    if saved.model_name not in CLASSIFIERS:
        raise ValueError(f"--init-from {path}: holds a {saved.model_name} model, not a "
                         f"classifier (train one with minifcn pretrain)")
    classifier_config = TrainConfig(**{**saved.config, "device": config.device})
    classifier = build_for_config(classifier_config)
    classifier.load_state_dict(saved.model_state)
    try:
        copied = transfer_to_fcn(classifier, model)
    except ValueError as error:
        raise ValueError(f"--init-from {path}: {error}") from None
    accuracy = saved.metrics.get("accuracy")
    scored = "" if accuracy is None else f", validation accuracy {accuracy:.3f}"
    return (f"started from {path} (classifier epoch {saved.epoch + 1}{scored}): "
            f"{len(copied)} arrays of the encoder, fc6 and fc7 copied, the rest fresh")


def _skip_needless_work(model, criterion, config: TrainConfig) -> None:
    """What training never needs: the gradient of the image (the first convolution skips
    it) and, on the GPU, the loss re-checking every step's labels, a host sync per step,
    when the data's labels were checked up front (the toy shapes make only valid ones)."""
    model.encoder.needs_input_grad = False
    if config.device != "cpu":
        criterion.check_targets = False


def _train_epoch(model, criterion, optimizer, scheduler, batches, config, epoch: int,
                 progress: bool) -> float:
    """One pass over the training batches; returns the mean training loss."""
    model.train()
    total = 0.0
    for step, (images, masks) in enumerate(batches):
        logits = model(images)
        loss = float(criterion(logits, masks))  # the one host sync of a step
        if not math.isfinite(loss):
            raise TrainingDiverged(_divergence(config, loss,
                                               f"epoch {epoch + 1}, step {step + 1}"))
        model.zero_grad()
        model.backward(criterion.backward())
        optimizer.step()
        scheduler.step()
        total += loss
        if progress:
            batches.set_postfix(loss=f"{total / (step + 1):.4f}")
    return total / (step + 1)


def _divergence(config, loss: float, where: str) -> str:
    return (f"the loss became {loss} at {where} (lr {config.lr}); try a lower learning "
            f"rate, e.g. --lr {config.lr / 10:g}; the last good checkpoint is kept in "
            f"{config.out}")


def _reseed_generators(model, seed: int, epoch: int) -> None:
    """Give every module that draws random numbers (dropout) a stream that depends only on
    (seed, epoch, its place in the model): a run resumed at epoch e then draws the same
    masks as one that never stopped."""
    for index, module in enumerate(model.modules()):
        if isinstance(getattr(module, "generator", None), backend.Generator):
            module.generator = backend.Generator(backend.derive_seed(seed, epoch, index))


def _save(config, model, optimizer, scheduler, epoch, row, name) -> None:
    save_checkpoint(os.path.join(config.out, name), model.state_dict(),
                    optimizer_state=optimizer.state_dict(), epoch=epoch,
                    model_name=config.model, config=dataclasses.asdict(config),
                    metrics={k: v for k, v in row.items() if k != "seconds"},
                    extra={"scheduler": scheduler.state_dict()})


def _progress(loader, description: str, enabled: bool):
    if not enabled:
        return loader
    from tqdm import tqdm

    return tqdm(loader, desc=description, leave=False, dynamic_ncols=True)


def _figures(config, model, val_set, rows, log, task=_SEGMENTATION) -> None:
    from .viz import save_curves, save_predictions

    curves = os.path.join(config.out, "curves.png")
    if config.is_classifier:
        save_curves(curves, rows, task.measures)
        log(f"wrote {curves}")
        return
    predictions = os.path.join(config.out, "predictions.png")
    save_predictions(predictions, model, val_set, count=6)
    save_curves(curves, rows, task.measures)
    log(f"wrote {predictions} and {curves}")
