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

Data parallel: started as N MPI ranks (``mpiexec -n N minifcn train``, or ``minifcn train
--workers N``, after :func:`minifcn.distributed.init_process_group`), the same loop runs on
every rank, each on its share of every batch (``--batch-size`` stays the whole batch); the
model is wrapped in :class:`~minifcn.nn.parallel.DistributedDataParallel`, its batch norms
synchronized (:class:`~minifcn.nn.SyncBatchNorm`), and the loss is the whole batch's mean,
so N ranks train what one process trains. Only rank 0 logs and writes files.
"""

from __future__ import annotations

import csv
import dataclasses
import math
import os
import time
import warnings
from dataclasses import dataclass, field

from . import backend, distributed
from .checkpoint import load_checkpoint, save_checkpoint
from .data import (
    IGNORE_INDEX,
    DataLoader,
    SegmentationFolder,
    ShapeLabels,
    Shapes,
    median_frequency_weights,
)
from .functional.parallel import even_slices
from .grad_mode import no_grad
from .metrics import ConfusionMatrix
from .models import CLASSIFIERS, MODELS, build_model
from .nn import CrossEntropyLoss, SyncBatchNorm
from .nn.parallel import DistributedDataParallel, global_mean_loss
from .optim import SGD, Adam, make_scheduler

__all__ = ["METRIC_COLUMNS", "PRETRAIN_COLUMNS", "RECIPES", "SHARED_RECIPE", "TrainConfig",
           "TrainingDiverged", "build_for_config", "check_world_size", "evaluate",
           "evaluate_classifier", "pretrain_config", "recipe", "train"]

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
    init_from: str | None = None  # a classifier checkpoint an FCN starts from
    # With several ranks: batch norm over the whole batch (SyncBatchNorm), so that N ranks
    # compute what one process computes; False: each rank normalizes by its own share, as
    # PyTorch's DDP does unless told otherwise. One process is the same either way.
    sync_batchnorm: bool = True

    @classmethod
    def from_saved(cls, saved: dict) -> TrainConfig:
        """The config a checkpoint saved, leaving out settings that minifcn no longer has
        (``layers``, saved before 2026-12-06, is now the command line's alone)."""
        names = {f.name for f in dataclasses.fields(cls)}
        return cls(**{k: v for k, v in saved.items() if k in names})

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
        if not self.weight_decay >= 0:
            raise ValueError(f"--weight-decay must be at least 0, got {self.weight_decay}")
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


@no_grad()  # nothing is kept for a backward: evaluation needs a fraction of the memory
def _confusion_and_loss(model, loader, confusion: ConfusionMatrix, criterion) -> float | None:
    """Fill ``confusion`` with the model's argmax against each batch's targets, in
    evaluation mode (running batch-norm statistics, no dropout), and leave the model in
    the mode it came in; returns the mean of ``criterion`` over the batches, or None.

    A loader sharded over the ranks (``num_replicas > 1``) is evaluated by all of them, each
    on its share of every batch: the confusion counts are summed over the ranks, and each
    batch's loss is put together from the shares' sums (:func:`global_mean_loss`'s rule),
    so every rank returns what one process computes on the whole loader."""
    was_training = model.training
    model.eval()
    shared = loader.num_replicas > 1
    # Per batch: (the share's loss times what its mean divided by, that divisor); one
    # process needs no divisor: (loss, 1).
    sums = backend.np.zeros((len(loader), 2))
    for batch, (inputs, targets) in enumerate(loader):
        if inputs.shape[0] == 0:
            continue  # a short last batch left this rank nothing
        scores = model(inputs)
        if criterion is not None:
            loss = float(criterion(scores, targets))
            weight = float(criterion.mean_denominator) if shared else 1.0
            sums[batch] = (loss * weight if weight else 0.0, weight)
        confusion.update(scores.argmax(axis=1), targets)
    model.train(was_training)
    if shared:
        world = distributed._resolve(None)
        world.all_reduce(confusion.matrix)
        world.all_reduce(sums)
    if criterion is None:
        return None
    total = 0.0
    for loss_sum, weight in sums.tolist():  # in order, as one process adds them
        total += loss_sum / weight if weight else float("nan")  # all void: NaN, as PyTorch
    return total / max(len(loader), 1)


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


class _Output:
    """What a run shows and writes: log lines, progress bars, metrics.csv, checkpoints and
    figures. In a data-parallel run every rank computes the same run; only rank 0 shows and
    writes, and this is the one place that asks which rank this is."""

    def __init__(self, log, progress: bool):
        self.writes = distributed.get_rank() == 0
        self.log = log if self.writes else (lambda *args, **kwargs: None)
        self.progress = progress and self.writes

    def folder(self, config: TrainConfig) -> None:
        if self.writes:
            os.makedirs(config.out, exist_ok=True)

    def metrics(self, config: TrainConfig, rows: list, task: _Task) -> None:
        if self.writes:
            _write_metrics(os.path.join(config.out, "metrics.csv"), rows, task.columns)

    def checkpoint(self, name: str, config, model, optimizer, scheduler, epoch, row) -> None:
        if self.writes:
            _save(config, model, optimizer, scheduler, epoch, row, name)

    def figures(self, config, model, val_set, rows, task: _Task) -> None:
        if self.writes:
            _figures(config, model, val_set, rows, self.log, task)


def train(config: TrainConfig, resume: str | None = None, progress: bool = True,
          log=print, prepare=None) -> dict:
    """Train ``config.model``; write metrics.csv, checkpoints and figures to ``config.out``.

    With ``resume`` (a checkpoint's path) the run continues from that checkpoint with its
    saved settings, except ``epochs``, ``out``, ``device`` and ``sync_batchnorm``, taken
    from ``config``, and ``data``, taken from ``config`` when set there (the same folder in
    a new place). When the checkpoint has already reached ``config.epochs``, nothing is
    trained: a message says how to continue, and the checkpoint's metrics are returned.

    A segmenter is scored by mean IoU, the classifier (``minifcn pretrain``) by accuracy;
    best.npz keeps the epoch with the highest. With ``config.init_from`` an FCN starts
    from that classifier checkpoint (not when resuming: the checkpoint holds it already).

    ``prepare(model, criterion, log) -> criterion``, when given, runs once the model and
    the loss are built, before any training: the command line's ``--layers`` swaps a
    learner's layer functions in there.

    In a data-parallel run (see the module docstring) every rank calls this with the same
    arguments. The checkpoints are what one process writes, so a run may resume with any
    number of ranks.

    Returns the last epoch's metrics row. Raises :class:`TrainingDiverged` (after keeping
    the last good checkpoint) when the loss stops being finite.
    """
    out = _Output(log, progress)
    world, rank = distributed.get_world_size(), distributed.get_rank()
    start_epoch, state = 0, None
    if resume is not None:
        state = load_checkpoint(resume)
        saved = dict(state.config)
        saved.update(epochs=config.epochs, out=config.out, device=config.device,
                     sync_batchnorm=config.sync_batchnorm)
        if config.data is not None and saved.get("data") is not None:
            saved["data"] = config.data
        config = TrainConfig.from_saved(saved)
        start_epoch = state.epoch + 1
        if start_epoch >= config.epochs:
            more = max(1, start_epoch // 2)
            out.log(f"nothing to train: {resume} has finished epoch {start_epoch} and --epochs "
                    f"is {config.epochs}. To train {more} more, pass --epochs "
                    f"{start_epoch + more} (the learning-rate schedule then spans "
                    f"{start_epoch + more} epochs).")
            return dict(state.metrics)
    config.validate()
    check_world_size(config, world)
    if world > 1 and config.device == "gpu":
        backend.set_gpu(distributed.get_local_rank())  # one GPU per rank on each machine
    out.folder(config)
    backend.manual_seed(config.seed)

    train_set, val_set = _datasets(config, out.log, "--class-names" if state is None
                                   else f"the names saved in {resume}")
    num_classes = train_set.num_classes
    config = dataclasses.replace(config, num_classes=num_classes,
                                 class_names=list(train_set.classes))
    task = _CLASSIFICATION if config.is_classifier else _SEGMENTATION
    net = build_for_config(config)  # the model itself; ``model`` below may wrap it
    if config.init_from is not None and state is None:
        out.log(_init_from_classifier(net, config))
    shares = dict(num_replicas=world, rank=rank)  # each rank's share of every batch
    train_loader = DataLoader(train_set, config.batch_size, shuffle=True, drop_last=True,
                              seed=config.seed, hflip=config.flip, device=config.device,
                              **shares)
    if len(train_loader) == 0:  # else: "make_scheduler: total_steps must be >= 1"
        raise ValueError(f"the training set has {len(train_set)} images, fewer than "
                         f"--batch-size {config.batch_size}: training uses whole batches "
                         f"only, so there would be none; lower --batch-size, or give more "
                         f"images (--train-size, for the toy data)")
    val_loader = DataLoader(val_set, config.batch_size, device=config.device, **shares)
    weight = None
    if config.class_weights:
        masks = getattr(train_set, "masks", None)
        if masks is None:  # a folder dataset reads its masks from disk one by one
            masks = [mask for _, mask in train_set]
        host_weight = median_frequency_weights(masks, num_classes, train_set.ignore_index)
        weight = backend.to_device(host_weight.astype("float32"), config.device)
    criterion = CrossEntropyLoss(weight=weight, ignore_index=train_set.ignore_index)
    _skip_needless_work(net, criterion, config)
    if prepare is not None:
        criterion = prepare(net, criterion, out.log)

    rows = []
    if state is not None:
        net.load_state_dict(state.model_state)
        train_loader.set_epoch(start_epoch)
        rows = [r for r in _read_metrics(os.path.join(config.out, "metrics.csv"))
                if r["epoch"] <= state.epoch + 1]  # rows count epochs from 1
    model = net
    if world > 1:
        model = _data_parallel(net, config, world, out.log)
    optimizer = _make_optimizer(config, net)
    scheduler = make_scheduler(config.schedule, optimizer,
                               total_steps=config.epochs * len(train_loader))
    if state is not None:
        try:
            optimizer.load_state_dict(state.optimizer_state)
            scheduler.load_state_dict(state.extra["scheduler"])
        except ValueError as error:  # the optimizer's message, which names no file
            raise ValueError(f"{resume}: its optimizer state does not fit this run: "
                             f"{error}") from None
        optimizer.to(config.device)
    best = max((r[task.score] for r in rows), default=-1.0)
    my_rows = even_slices(config.batch_size, world)[rank]

    for epoch in range(start_epoch, config.epochs):
        started = time.perf_counter()
        _reseed_generators(net, config.seed, epoch, my_rows, config.batch_size)
        batches = _progress(train_loader, f"epoch {epoch + 1}/{config.epochs}", out.progress)
        with warnings.catch_warnings():
            # A diverging run overflows on its way to NaN; the finite-loss checks report that
            # once, with advice, instead of a screenful of NumPy warnings.
            warnings.simplefilter("ignore", RuntimeWarning)
            train_loss = _train_epoch(model, criterion, optimizer, scheduler, batches,
                                      config, epoch, out.progress)
            val = (evaluate_classifier(model, val_loader, criterion) if config.is_classifier
                   else evaluate(model, val_loader, num_classes, criterion))
        if not math.isfinite(val["loss"]):
            raise TrainingDiverged(_divergence(config, val["loss"], f"epoch {epoch + 1}, "
                                               f"on the validation set"))
        row = {"epoch": epoch + 1, "train_loss": train_loss, "val_loss": val["loss"],
               **{k: val[k] for k in task.columns[3:-1]},
               "seconds": time.perf_counter() - started}
        rows.append(row)
        out.log(f"epoch {epoch + 1}/{config.epochs}: train loss {row['train_loss']:.4f}, "
                f"val loss {row['val_loss']:.4f}, "
                + ", ".join(f"{label} {row[k]:.4f}" for k, label in reversed(task.measures))
                + f" ({row['seconds']:.1f} s)")
        out.metrics(config, rows, task)
        out.checkpoint("checkpoint.npz", config, net, optimizer, scheduler, epoch, row)
        if row[task.score] > best:
            best = row[task.score]
            out.checkpoint("best.npz", config, net, optimizer, scheduler, epoch, row)

    out.figures(config, net, val_set, rows, task)
    return rows[-1] if rows else {}


def check_world_size(config: TrainConfig, world: int) -> None:
    """Every rank needs at least one image of every batch: ``world <= batch_size``."""
    if world > config.batch_size:
        raise ValueError(f"--batch-size {config.batch_size} cannot be shared by {world} "
                         f"ranks: each needs at least one image of every batch; use at "
                         f"most {config.batch_size} workers, or a larger --batch-size")


def _data_parallel(net, config: TrainConfig, world: int, log) -> DistributedDataParallel:
    """``net`` (changed in place) inside DistributedDataParallel, its batch norms
    synchronized unless the config says otherwise."""
    if config.sync_batchnorm:
        SyncBatchNorm.convert_sync_batchnorm(net)  # the model's root is never a batch norm
    smallest, largest = config.batch_size // world, -(-config.batch_size // world)
    share = f"{smallest}" if smallest == largest else f"{smallest}-{largest}"
    log(f"{world} ranks, {share} images each of every batch of {config.batch_size}; batch "
        f"norm over " + ("the whole batch (SyncBatchNorm)" if config.sync_batchnorm
                         else "each rank's share"))
    # With SyncBatchNorm every rank's running statistics are the whole batch's already:
    # there is nothing to copy from rank 0 before each forward.
    return DistributedDataParallel(net, broadcast_buffers=not config.sync_batchnorm)


def _init_from_classifier(model, config: TrainConfig) -> str:
    """Copy a classifier checkpoint's encoder, fc6 and fc7 into the FCN ``model``
    (:func:`minifcn.models.classifier.transfer_to_fcn`); returns a line for the log."""
    from .models.classifier import transfer_to_fcn

    path = config.init_from
    saved = load_checkpoint(path)
    if saved.model_name not in CLASSIFIERS:
        raise ValueError(f"--init-from {path}: holds a {saved.model_name} model, not a "
                         f"classifier (train one with minifcn pretrain)")
    classifier_config = TrainConfig.from_saved({**saved.config, "device": config.device})
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
        # The whole batch's mean loss, the same on every rank (in one process the loss
        # itself: the one host sync of a step), and this rank's share of its gradient.
        loss, dloss = global_mean_loss(criterion(logits, masks), criterion)
        if not math.isfinite(loss):
            raise TrainingDiverged(_divergence(config, loss,
                                               f"epoch {epoch + 1}, step {step + 1}"))
        model.zero_grad()
        model.backward(criterion.backward(dloss))
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


def _reseed_generators(model, seed: int, epoch: int, rows: slice, batch: int) -> None:
    """Give every module that draws random numbers (dropout) a stream that depends only on
    (seed, epoch, its place in the model): a run resumed at epoch e then draws the same
    masks as one that never stopped. A rank that holds ``rows`` of every batch of ``batch``
    images keeps those rows of the whole batch's masks, so every image gets the mask it
    gets in one process, whatever the number of ranks."""
    for index, module in enumerate(model.modules()):
        if isinstance(getattr(module, "generator", None), backend.Generator):
            generator = backend.Generator(backend.derive_seed(seed, epoch, index))
            if rows != slice(0, batch):
                generator = distributed.BatchShardGenerator(generator, rows, batch)
            module.generator = generator


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
