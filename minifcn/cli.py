"""The ``minifcn`` command: ``train``, ``pretrain``, ``evaluate``, ``predict``,
``exercises`` and ``course``.

    minifcn train                         # FCN-8s on toy shapes, on the CPU
    minifcn train --model unet --epochs 5 --out runs/unet
    minifcn train --data VOCdevkit/VOC2012 --image-size 128
    minifcn train --resume runs/unet/checkpoint.npz --epochs 8
    minifcn pretrain                      # a classifier on toy shape labels (96 x 96)
    minifcn train --init-from runs/classifier/best.npz    # FCN-8s started from it
    minifcn evaluate --checkpoint runs/latest/best.npz
    minifcn predict --checkpoint runs/latest/best.npz photo.png --out masks/
    minifcn exercises start conv2d        # then: minifcn exercises check conv2d
    minifcn exercises grade submission/   # for teachers: points, limits, Gradescope, JUnit
    minifcn course build                  # the lessons as a web page: site/index.html

Mistakes a user can make (an unknown model, a bad checkpoint or data folder, a GPU that is
not there, an option that conflicts with the checkpoint being resumed) print one line and
exit with status 1, never a traceback. The help text is plain: no markup.
"""

from __future__ import annotations

import argparse
import math
import os
import reprlib
import sys
import types
import typing

from . import backend, distributed, launch
from .backend import np

__all__ = ["main"]

# OSError: a path that cannot be read or written (a missing file, a file where a folder
# should be, no permission, a full disk); MemoryError: sizes too large for this machine.
USER_ERRORS = (ValueError, TypeError, OSError, MemoryError, backend.DeviceUnavailableError,
               distributed.DistributedUnavailableError)

WORKERS_HELP = ("processes that share each batch: a number, or auto for one per core (one "
                "per GPU with --device gpu), at most the batch size, and 1 where MPI is not "
                "installed (pip install \"minifcn[mpi]\"); they run under mpiexec. With "
                "SyncBatchNorm (the default) results equal one process's up to float "
                "rounding (default: %(default)s; MINIFCN_WORKERS sets another)")


# Train options that describe the run (TrainConfig fields). Their argparse default is None,
# "not given", so that with --resume an option the user typed can be told apart from a
# default; the defaults themselves are TrainConfig's, stated in each help line.
_RUN_OPTIONS = ("model", "epochs", "batch_size", "lr", "optimizer", "schedule", "weight_decay",
                "image_size", "train_size", "val_size", "data", "num_classes", "class_names",
                "upsample", "class_weights", "flip", "seed", "out", "init_from",
                "sync_batchnorm")
# What a resumed run may change: how long it runs, where it writes, where it computes,
# where its data folder now is, and how its ranks share batch norm (one process computes
# the same either way). Anything else would no longer continue the same run. (--layers and
# --workers are the command line's own, never saved: they may change too.)
_RESUME_MAY_CHANGE = ("epochs", "out", "device", "data", "sync_batchnorm")


def _finite_float(text: str) -> float:
    """argparse's type of --lr and --weight-decay: a finite number >= 0. (float() also reads
    nan and inf, which would only show epochs later, as a run that diverged; a negative one
    PyTorch's optimizers refuse too, and minifcn's would only after the data is built.)"""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"invalid float value: {text!r}") from None
    if not math.isfinite(value) or value < 0:
        raise argparse.ArgumentTypeError(f"expected a finite number >= 0, got {text!r}")
    return value


def _whole_number(minimum: int):
    """argparse's type for a whole number >= ``minimum``."""
    def convert(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"invalid int value: {text!r}") from None
        if value < minimum:
            raise argparse.ArgumentTypeError(f"expected a whole number >= {minimum}, got "
                                             f"{text!r}")
        return value
    return convert


_seed = _whole_number(0)  # --seed, as the random generators take it


def _parser() -> argparse.ArgumentParser:
    from . import __version__
    from .models import MODELS, UPSAMPLE_MODES
    from .train import TrainConfig, pretrain_config, recipe

    defaults = TrainConfig()
    def per_model(setting: str) -> str:
        """Each model's own value, e.g. "0.003 (fcn16s, fcn32s, segnet), 0.001 (unet)"."""
        values: dict = {}
        for name in MODELS:
            values.setdefault(recipe(name)[setting], []).append(name)
        return ", ".join(f"{value:g} ({', '.join(names)})" for value, names in values.items())

    parser = argparse.ArgumentParser(
        prog="minifcn", description="Fully convolutional segmentation from scratch: train a "
        "segmenter, evaluate a checkpoint, or predict masks for images.",
        epilog="Run 'minifcn COMMAND --help' for the options of each command.")
    parser.add_argument("--version", action="version", version=f"minifcn {__version__}")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    train = commands.add_parser(
        "train", help="train a segmenter",
        description="Train a segmenter; with no arguments, FCN-8s on generated toy shapes on "
        "the CPU. Writes metrics.csv, checkpoint.npz (last epoch), best.npz, predictions.png "
        "and curves.png to --out.",
        epilog="With --resume the run continues with every setting saved in the checkpoint. "
        "Only --epochs, --out, --device, --data (the same folder in a new place) and "
        "--layers may "
        "change; any other option given with a value other than the checkpoint's is refused, "
        "as a PyTorch model refuses a state_dict of another architecture.")
    train.add_argument("--model", choices=list(MODELS),
                       help=f"the architecture; each trains with its own recipe (see --epochs, "
                            f"--batch-size and --lr) "
                            f"unless options say otherwise (default: {defaults.model})")
    train.add_argument("--epochs", type=int,
                       help=f"epochs in the whole run; a resumed run trains those after its "
                            f"checkpoint's (default: the model's own: "
                            f"{per_model('epochs')}; with --resume, the "
                            f"checkpoint's)")
    train.add_argument("--batch-size", type=int,
                       help=f"images per step (default: the model's own: "
                            f"{per_model('batch_size')})")
    train.add_argument("--lr", type=_finite_float,
                       help=f"learning rate (default: the model's own: {per_model('lr')})")
    train.add_argument("--optimizer", choices=["adam", "sgd"],
                       help=f"adam, or sgd with momentum {defaults.momentum} "
                            f"(default: {defaults.optimizer})")
    train.add_argument("--schedule", choices=["constant", "step", "cosine", "poly"],
                       help=f"how the learning rate changes over the run "
                            f"(default: {defaults.schedule})")
    train.add_argument("--weight-decay", type=_finite_float,
                       help=f"L2 weight decay (default: {defaults.weight_decay:g})")
    train.add_argument("--image-size", type=int,
                       help=f"side of the square images, a multiple of 32 "
                            f"(default: {defaults.image_size})")
    train.add_argument("--train-size", type=int,
                       help=f"number of toy training images (default: {defaults.train_size})")
    train.add_argument("--val-size", type=int,
                       help=f"number of toy validation images (default: {defaults.val_size})")
    train.add_argument("--data", metavar="DIR",
                       help="a VOC-layout folder (JPEGImages/, SegmentationClass/, "
                            "ImageSets/Segmentation/train.txt and val.txt) instead of the toy "
                            "shapes (default: the toy shapes)")
    train.add_argument("--num-classes", type=int, metavar="N",
                       help="classes in --data, labels 0 to N-1 (255 is void) (default: the "
                            "number of class names, else one more than the largest label in "
                            "the masks of every split)")
    train.add_argument("--class-names", metavar="FILE",
                       help="a text file of class names, one a line, label 0 first (default: "
                            "DIR/class_names.txt if it exists, Pascal VOC's 21 names if DIR is "
                            "a VOC devkit folder such as VOC2012, else the labels' numbers)")
    train.add_argument("--upsample", choices=list(UPSAMPLE_MODES) + ["unpool"],
                       help="how the decoder up-samples (default: the model's own)")
    train.add_argument("--class-weights", action="store_true", default=None,
                       help="weight the loss by median-frequency balancing, as SegNet does "
                            "(default: off)")
    train.add_argument("--no-flip", dest="flip", action="store_false", default=None,
                       help="no random left-right flips of the training images (default: "
                            "flips on)")
    train.add_argument("--seed", type=_seed,
                       help=f"seed of the weights, data and batch order (default: "
                            f"{defaults.seed})")
    train.add_argument("--device", default=defaults.device, choices=list(backend.DEVICES),
                       help="where to compute; gpu needs CuPy (default: %(default)s)")
    train.add_argument("--out", metavar="DIR",
                       help=f"folder for the run's files (default: {defaults.out}; with "
                            f"--resume, the checkpoint's folder)")
    train.add_argument("--resume", metavar="CKPT",
                       help="continue the run saved in this checkpoint; see below (default: "
                            "start a new run)")
    train.add_argument("--quiet", action="store_true",
                       help="no progress bars (default: progress bars on)")
    train.add_argument("--layers", metavar="DIR",
                       help="the capstone of the exercise track: compute with your exercise "
                            "files in DIR (e.g. my_minifcn) wherever they implement a layer, "
                            "minifcn's layers elsewhere (default: minifcn's layers)")
    train.add_argument("--init-from", metavar="CKPT",
                       help="start an FCN's encoder, fc6 and fc7 from a classifier checkpoint "
                            "written by minifcn pretrain (default: from scratch)")
    train.add_argument("--workers", default=launch.default_workers(), metavar="N",
                       help=WORKERS_HELP)
    train.add_argument("--no-sync-bn", dest="sync_batchnorm", action="store_false",
                       default=None,
                       help="with several workers, each normalizes batch norm by its own "
                            "share of the batch, as PyTorch's DDP does by default: faster, "
                            "and no longer what one process computes (default: "
                            "SyncBatchNorm, the whole batch's statistics)")

    pre = pretrain_config()
    pretrain = commands.add_parser(
        "pretrain", help="train the image classifier an FCN can start from",
        description="Train the classifier (the segmenters' encoder, fc6, fc7, class scores) "
                    "to name the shape in 96 x 96 toy images (one shape each, 12 to 40 px); "
                    "then: minifcn train --init-from OUT/best.npz")
    for flag, kind in (("--epochs", int), ("--batch-size", int), ("--lr", _finite_float),
                       ("--weight-decay", _finite_float), ("--image-size", int),
                       ("--train-size", int), ("--val-size", int), ("--seed", _seed)):
        pretrain.add_argument(flag, type=kind, default=getattr(pre, flag[2:].replace("-", "_")),
                              help="as for train (default: %(default)s)")
    pretrain.add_argument("--optimizer", default=pre.optimizer, choices=["adam", "sgd"],
                          help="adam or sgd (default: %(default)s)")
    pretrain.add_argument("--schedule", default=pre.schedule,
                          choices=["constant", "step", "cosine", "poly"],
                          help="how the learning rate changes (default: %(default)s)")
    pretrain.add_argument("--no-flip", action="store_true",
                          help="no random left-right flips (default: flips on)")
    pretrain.add_argument("--device", default=pre.device, choices=list(backend.DEVICES),
                          help="where to compute (default: %(default)s)")
    pretrain.add_argument("--out", default=pre.out, metavar="DIR",
                          help="folder for the run's files (default: %(default)s)")
    pretrain.add_argument("--resume", default=None, metavar="CKPT",
                          help="continue the run saved in this checkpoint (default: a new run)")
    pretrain.add_argument("--quiet", action="store_true",
                          help="no progress bars (default: progress bars on)")
    pretrain.add_argument("--workers", default=launch.default_workers(), metavar="N",
                          help=WORKERS_HELP)

    evaluate = commands.add_parser(
        "evaluate", help="metrics of a checkpoint",
        description="Pixel accuracy, mean accuracy, mean IoU, frequency-weighted IoU and the "
                    "IoU of each class, by name, on the validation split.")
    evaluate.add_argument("--checkpoint", required=True, metavar="CKPT",
                          help="a checkpoint written by minifcn train (required)")
    evaluate.add_argument("--data", metavar="DIR",
                          help="a VOC-layout folder whose val split to score (default: the "
                               "checkpoint's own data: its --data folder or toy shapes)")
    evaluate.add_argument("--device", default="cpu", choices=list(backend.DEVICES),
                          help="where to compute (default: %(default)s)")
    evaluate.add_argument("--workers", default=launch.default_workers(), metavar="N",
                          help="processes that share the images: a number, or auto for one "
                               "per core where MPI is installed (default: %(default)s; "
                               "MINIFCN_WORKERS sets another)")

    predict = commands.add_parser(
        "predict", help="coloured masks for images",
        description="Predict a mask for each image, of the image's own size, and write it "
                    "as a palette PNG (VOC's colours) named after the image. Phone photos "
                    "are turned upright by their EXIF orientation; an image that cannot be "
                    "read is skipped with one line and the others still run (exit status 1 "
                    "when any was skipped).",
        epilog="Memory: nothing is kept for a backward, and the convolutions work in bands "
               "of rows, so the peak is about two of the largest activations: for FCN-8s "
               "at the default widths about 170 bytes a pixel, the photo and the process "
               "included (a 12-megapixel photo: 1.95 GiB; 4 GB of memory: about 23 "
               "megapixels). Measured with benchmarks/inference.py.")
    predict.add_argument("--checkpoint", required=True, metavar="CKPT",
                         help="a checkpoint written by minifcn train (required)")
    predict.add_argument("images", nargs="+", metavar="IMAGE",
                         help="image files or folders of them (any size; any format Pillow "
                              "reads)")
    predict.add_argument("--out", required=True, metavar="DIR",
                         help="folder for the masks (required; created if missing)")
    predict.add_argument("--device", default="cpu", choices=list(backend.DEVICES),
                         help="where to compute (default: %(default)s)")
    predict.add_argument("--quiet", action="store_true",
                         help="no progress bar (default: a progress bar over the files, on a "
                              "terminal)")

    exercises = commands.add_parser(
        "exercises", help="write the layers yourself; minifcn checks them",
        description="The exercise track: start an exercise (a skeleton file in DIR), fill "
                    "it in, check it; status shows how far you are.")
    actions = exercises.add_subparsers(dest="action", required=True, metavar="ACTION")
    actions.add_parser("list", help="every exercise, one a line, its name first")
    for action, text in (("start", "write DIR/NAME.py, the exercise's skeleton (never "
                                   "overwrites your work)"),
                         ("check", "run the exercise's checks on DIR/NAME.py; exit status 0 "
                                   "only when every check passes")):
        sub = actions.add_parser(action, help=text, description=text)
        sub.add_argument("name", metavar="NAME")
        sub.add_argument("--dir", default="my_minifcn",
                         help="the folder of your exercise files (default: my_minifcn)")
    sub = actions.add_parser("status", help="a table of exercises done, failing, not started")
    sub.add_argument("--dir", default="my_minifcn",
                     help="the folder of your exercise files (default: my_minifcn)")
    _grade_parser(actions)

    course = commands.add_parser(
        "course", help="the lessons as notebooks and web pages",
        description="The lessons as a web page: every lesson run as a notebook, one page each "
                    "(text, code, output, figures), an index and the exercises. Needs the "
                    "course extra: pip install -e \".[course]\".")
    actions = course.add_subparsers(dest="action", required=True, metavar="ACTION")
    build = actions.add_parser("build", help="run every lesson as a notebook; write the site",
                               description="Run every lesson as a notebook and write a static "
                                           "site: OUT/index.html, one page per lesson and the "
                                           "API reference, OUT/api/.")
    build.add_argument("--quick", action="store_true",
                       help="the lessons' quick mode: seconds each, the same checks")
    build.add_argument("--out", default="site", help="the site's folder (default: %(default)s)")
    build.add_argument("--lessons", default=None,
                       help="the lessons' folder (default: lessons/ beside the minifcn "
                            "package, there when installed from the repository)")
    build.add_argument("--only", nargs="+", metavar="LESSON",
                       help="build only these lessons, by number or name (01 11 12_gpu)")
    build.add_argument("--device", default="cpu", choices=list(backend.DEVICES),
                       help="where the lessons compute (default: %(default)s)")
    return parser


def _positive_seconds(text: str) -> float:
    """argparse's type of --timeout: a finite number of seconds > 0."""
    value = _finite_float(text)
    if value <= 0:
        raise argparse.ArgumentTypeError(f"expected seconds > 0, got {text!r}")
    return value


def _grade_parser(actions) -> None:
    text = ("for teachers: grade a learner's folder (or a class's folders), each exercise in "
            "a child process with time and memory limits; points, a table, JSON, Gradescope, "
            "JUnit and CSV gradebook reports")
    sub = actions.add_parser(
        "grade", help=text,
        description=text + ". Exit status 0 when grading ran (whatever the scores), 2 for a "
                    "usage error, 1 when grading cannot run here. The points file and the "
                    "JSON schema: python -m pydoc minifcn.exercises.grade")
    sub.add_argument("dir", metavar="DIR", nargs="+",
                     help="the learner's folder of exercise files, or several (a class: "
                          "submissions/*/); with --write-setup: the folder to write the "
                          "set-up into")
    sub.add_argument("--only", metavar="NAMES",
                     help="grade only these exercises, comma-separated: relu,conv2d "
                          "(default: every exercise)")
    sub.add_argument("--points", metavar="FILE",
                     help="a points file, JSON or TOML: {\"exercises\": {\"relu\": 10, "
                          "\"conv2d\": {\"forward\": 4}}} (default: 1 point per check, 0 for "
                          "conv2d's speed check)")
    sub.add_argument("--json", metavar="FILE", dest="json_path",
                     help="write minifcn's report: per exercise its score, status, reason, "
                          "checks and report text (default: none)")
    sub.add_argument("--gradescope", metavar="FILE",
                     help="write Gradescope's results.json, one test per exercise "
                          "(default: none)")
    sub.add_argument("--junit", metavar="FILE",
                     help="write JUnit XML, one testcase per check, for CI (default: none)")
    sub.add_argument("--classroom", metavar="FILE",
                     help="write the result GitHub Classroom's autograding reporter reads, "
                          "base64 JSON with partial points (default: none)")
    sub.add_argument("--csv", metavar="FILE", dest="csv_path",
                     help="write a gradebook, a row per DIR: its score, one column per "
                          "exercise, and the problems (default: none)")
    sub.add_argument("--jobs", type=_whole_number(1), default=1, metavar="N",
                     help="grade N folders at a time, at most one per core: the time limit "
                          "is wall-clock time (default: 1)")
    sub.add_argument("--timeout", type=_positive_seconds, default=60.0, metavar="SECONDS",
                     help="time per exercise; then its processes are killed and it scores 0 "
                          "(default: 60)")
    sub.add_argument("--memory-mb", type=_whole_number(1), default=2048, metavar="MIB",
                     help="address space per exercise, RLIMIT_AS on Linux; not limited "
                          "elsewhere (default: 2048)")
    sub.add_argument("--write-setup", choices=("gradescope", "github"), default=None,
                     help="write a ready-made set-up into DIR instead of grading: Gradescope's "
                          "setup.sh, run_autograder and points.json, or GitHub Classroom's "
                          ".github/workflows/classroom.yml (default: grade DIR)")


def _given(args) -> dict:
    """The run options the user typed: TrainConfig field -> value."""
    from .data import read_class_names

    given = {name: getattr(args, name) for name in _RUN_OPTIONS
             if getattr(args, name) is not None}
    if "class_names" in given:
        given["class_names"] = list(read_class_names(given["class_names"]))
    return given


def _show(name: str, value) -> str:
    """A setting as the command line spells it, e.g. ``--model unet``, ``--no-flip``."""
    flag = "--" + name.replace("_", "-")
    if name == "flip":
        return "flips" if value else "--no-flip"
    if isinstance(value, bool):
        return flag if value else f"no {flag}"
    if value is None:
        return {"data": "the toy shapes", "upsample": "the model's own --upsample"}.get(
            name, f"no {flag}")
    if isinstance(value, list):
        shown = ", ".join(value[:5]) + (", ..." if len(value) > 5 else "")
        return f"{flag} ({len(value)}: {shown})"
    return f"{flag} {value}"


def _resumed_config(path: str, given: dict, device: str):
    """The checkpoint's config with what a resumed run may change; ``ValueError`` (one line)
    for any other option given with a value other than the checkpoint's, and for a
    checkpoint that cannot be resumed."""
    from .train import TrainConfig

    state = _saved_run(path, "cpu")[0]  # the whole checkpoint checked before any work
    lacking = [what for what, absent in (
        ("finished epoch", state.epoch is None or state.epoch < 0),
        ("optimizer state", state.optimizer_state is None),
        ("scheduler state", "scheduler" not in state.extra)) if absent]
    if lacking:
        raise ValueError(f"checkpoint {path} cannot be resumed: it holds no "
                         f"{', no '.join(lacking)}; evaluate or predict with it, or start a "
                         f"new run")
    saved = state.config
    conflicts = [f"{_show(name, value)} (the checkpoint has {_show(name, saved.get(name))})"
                 for name, value in given.items()
                 if name not in _RESUME_MAY_CHANGE and value != saved.get(name)]
    if "data" in given and saved.get("data") is None:
        conflicts.append(f"{_show('data', given['data'])} (the checkpoint has the toy shapes)")
    if conflicts:
        raise ValueError(f"{', '.join(conflicts)}: a resumed run keeps the settings of its "
                         f"checkpoint {path}; drop these options, or start a new run "
                         f"with another --out")
    config = dict(saved, device=device, out=os.path.dirname(path) or ".")
    config.update({name: given[name] for name in _RESUME_MAY_CHANGE if name in given})
    return TrainConfig.from_saved(config)


def _train_config(args):
    """The TrainConfig of ``minifcn train``'s arguments (a resumed run's, from its
    checkpoint, with what may change)."""
    from .train import TrainConfig

    given = _given(args)
    if args.resume is not None:
        return _resumed_config(args.resume, given, args.device)
    return TrainConfig(**given, device=args.device)


def _train(args) -> None:
    from .train import train

    prepare = None
    if args.layers is not None:
        from .exercises.capstone import layers_preparer

        prepare = layers_preparer(args.layers)
    train(_train_config(args), resume=args.resume, progress=not args.quiet, prepare=prepare)


def _pretrain_config(args):
    from .train import pretrain_config

    return pretrain_config(epochs=args.epochs, batch_size=args.batch_size, lr=args.lr,
                           optimizer=args.optimizer, schedule=args.schedule,
                           weight_decay=args.weight_decay, image_size=args.image_size,
                           train_size=args.train_size, val_size=args.val_size,
                           seed=args.seed, device=args.device, out=args.out,
                           flip=not args.no_flip)


def _pretrain(args) -> None:
    from .train import train

    train(_pretrain_config(args), resume=args.resume, progress=not args.quiet)


def _load_model(path: str, device: str):
    _, config, model = _saved_run(path, device)
    return model.eval(), config


def _saved_run(path: str, device: str):
    """A checkpoint of minifcn train or pretrain, checked whole before any use: (the
    Checkpoint, its TrainConfig on ``device``, the model the config describes, holding the
    checkpoint's weights). Whatever does not fit is a one-line ``ValueError`` naming the
    file: a run is never loaded half right."""
    from .checkpoint import load_checkpoint
    from .train import TrainConfig, build_for_config

    state = load_checkpoint(path)
    saved, name = state.config, state.config.get("model")
    if not isinstance(name, str):
        raise ValueError(f"checkpoint {path}: its config names no model (model "
                         f"{reprlib.repr(name)}); minifcn train and pretrain write one")
    if state.model_name is not None and state.model_name != name:
        raise ValueError(f"checkpoint {path}: model_name {state.model_name!r} in its meta, "
                         f"but model {name!r} in its config; one of them is wrong")
    hints = typing.get_type_hints(TrainConfig)
    wrong = [f"{key} {reprlib.repr(value)}" for key, value in saved.items()
             if key in hints and not _fits(value, hints[key])]
    if wrong:
        raise ValueError(f"checkpoint {path}: settings of the wrong type in its config: "
                         f"{', '.join(wrong)}")
    try:
        config = TrainConfig.from_saved({**saved, "device": device})
        config.validate()
        model = build_for_config(config)
    except (ValueError, TypeError) as error:
        raise ValueError(f"checkpoint {path}: its config does not describe a model minifcn "
                         f"can build: {launch.error_line(error)}") from None
    for key, value in state.model_state.items():
        if value.dtype.kind not in "biuf" or (value.dtype.kind == "f"
                                              and not np.isfinite(value).all()):
            raise ValueError(f"checkpoint {path}: model/{key} holds "
                             + ("complex numbers, which real weights cannot take"
                                if value.dtype.kind == "c"
                                else "NaN or infinite values, which minifcn train never saves "
                                     "(it stops when the loss stops being finite)")
                             + "; use another checkpoint")
    try:  # arrays of another float dtype are cast, as PyTorch's load_state_dict casts them
        model.load_state_dict(state.model_state)
    except ValueError as error:
        raise ValueError(f"checkpoint {path}: its weights do not fit the {name} its config "
                         f"describes: {launch.error_line(error)}") from None
    return state, config, model


def _fits(value, hint) -> bool:
    """Whether ``value``, read from a checkpoint's JSON, has the type of a TrainConfig field
    (``int``, ``float`` (finite), ``str``, ``bool``, ``dict``, ``list[str]``, or one of
    them or ``None``)."""
    for kind in typing.get_args(hint) if isinstance(hint, types.UnionType) else (hint,):
        if kind is type(None) and value is None:
            return True
        if kind is float and type(value) in (int, float) and math.isfinite(value):
            return True
        if typing.get_origin(kind) is list and isinstance(value, list) and all(
                isinstance(item, str) for item in value):
            return True
        if kind in (int, str, bool, dict) and type(value) is kind:
            return True
    return False


def _evaluate(args) -> None:
    from .data import DataLoader, SegmentationFolder, ShapeLabels, Shapes
    from .train import evaluate, evaluate_classifier

    if distributed.get_world_size() > 1 and args.device == "gpu":
        backend.set_gpu(distributed.get_local_rank())  # one GPU per rank on each machine
    model, config = _load_model(args.checkpoint, args.device)
    # With several ranks each scores its share of every batch and the counts are summed;
    # rank 0 prints.
    shares = dict(num_replicas=distributed.get_world_size(), rank=distributed.get_rank())
    say = print if distributed.get_rank() == 0 else (lambda *args, **kwargs: None)
    if config.is_classifier:
        if args.data is not None:
            raise ValueError("--data is for segmenters; this checkpoint holds the classifier")
        dataset = ShapeLabels(config.val_size, config.image_size, config.seed, split="val")
        results = evaluate_classifier(model, DataLoader(dataset, config.batch_size,
                                                        device=args.device, **shares))
        say(f"{config.model} on {len(dataset)} validation images")
        say(f"  {'accuracy':<24}{results['accuracy']:.4f}")
        say(f"  {'mean accuracy':<24}{results['mean_acc']:.4f}")
        for name, value in zip(dataset.classes, results["per_class_acc"], strict=True):
            say(f"    {name:<22}{value:.4f}")
        return
    data = args.data if args.data is not None else config.data
    if data is not None:
        # The checkpoint's names and count (older checkpoints saved no names: the folder's).
        dataset = SegmentationFolder(data, split="val", image_size=config.image_size,
                                     num_classes=model.num_classes,
                                     classes=config.class_names or None)
    else:
        dataset = Shapes(config.val_size, config.image_size, config.seed, split="val")
    results = evaluate(model, DataLoader(dataset, config.batch_size, device=args.device,
                                         **shares), model.num_classes)
    say(f"{config.model} on {len(dataset)} validation images"
        + (f" of {data}" if data is not None else ""))
    for key, label in (("pixel_acc", "pixel accuracy"), ("mean_acc", "mean accuracy"),
                       ("mean_iou", "mean IoU"), ("fw_iou", "frequency-weighted IoU")):
        say(f"  {label:<24}{results[key]:.4f}")
    say("  per-class IoU:")
    names = config.class_names or dataset.classes
    width = max(22, max(map(len, names)) + 2)
    for name, iou in zip(names, results["per_class_iou"], strict=True):
        say(f"    {name:<{width}}{'absent' if np.isnan(iou) else f'{iou:.4f}'}")


def _predict(args) -> int:
    from .data import image_files, save_mask_png
    from .viz import predict_mask

    if os.path.exists(args.out) and not os.path.isdir(args.out):
        raise ValueError(f"--out {args.out} is a file; the masks go into a folder: give the "
                         f"name of a folder (created if missing)")
    model, config = _load_model(args.checkpoint, args.device)
    if config.is_classifier:
        raise ValueError(f"{args.checkpoint} holds the classifier, which names one shape per "
                         f"image and draws no mask; predict needs a segmenter")
    paths = image_files(args.images)
    targets = {}
    for path in paths:  # two images would write one mask: refuse before any work
        target = os.path.join(args.out, path.stem + ".png")
        if target in targets:
            raise ValueError(f"{targets[target]} and {path} would both write {target}; "
                             f"predict them into separate --out folders")
        targets[target] = path
    os.makedirs(args.out, exist_ok=True)
    bar = _file_progress(paths, not args.quiet)
    skipped = 0
    for target, path in targets.items():
        try:  # read (upright, RGB in [0, 1]) and segmented, the photo held by nothing else
            mask = predict_mask(model, path)
        except (ValueError, OSError) as error:  # an image that cannot be read: the next
            skipped += 1
            bar.write(f"minifcn predict: skipped {path}: {str(error).splitlines()[0]}",
                      file=sys.stderr)
            bar.update()
            continue
        save_mask_png(target, mask)
        bar.write(f"{path} -> {target}")
        bar.update()
    bar.close()
    if skipped:
        print(f"minifcn predict: {len(paths) - skipped} of {len(paths)} images done, "
              f"{skipped} skipped", file=sys.stderr)
    return 1 if skipped else 0


class _NoProgress:
    """tqdm's three calls, for --quiet: lines still print, no bar."""

    def write(self, line: str, file=None) -> None:
        print(line, file=file or sys.stdout)

    def update(self) -> None:
        pass

    def close(self) -> None:
        pass


def _file_progress(paths, enabled: bool):
    """A progress bar over the files, on a terminal only (in a log it would be noise)."""
    if not enabled or len(paths) < 2 or not sys.stderr.isatty():
        return _NoProgress()
    from tqdm import tqdm

    return tqdm(total=len(paths), desc="predict", unit="image", leave=False,
                dynamic_ncols=True)


def _exercises(args) -> int:
    from . import exercises

    try:
        exercises.exercises()
    except ImportError as error:  # hypothesis, an extra, is missing
        print(f"minifcn exercises: error: {error}", file=sys.stderr)
        return 1
    if args.action == "list":
        for exercise in exercises.exercises().values():
            print(f"{exercise.name:<18}{exercise.number:>3}. {exercise.title}")
        return 0
    if args.action == "start":
        path, written = exercises.start(args.name, args.dir)
        exercise = exercises.get(args.name)
        if not exercise.functions:
            print(f"The {exercise.name} exercise has no file of its own: it uses the files "
                  f"in {args.dir}/. Run: minifcn exercises check {exercise.name}")
        elif written:
            print(f"Wrote {path}: fill in {', '.join(exercise.functions)}, then run:\n"
                  f"  minifcn exercises check {exercise.name}"
                  + ("" if args.dir == "my_minifcn" else f" --dir {args.dir}"))
        else:
            print(f"{path} already exists; it was left as it is. To start over, delete or "
                  f"rename it first.")
        return 0
    if args.action == "check":
        report = exercises.check(args.name, args.dir)
        print(report.text())
        return 0 if report.passed else 1
    if args.action == "grade":
        return _grade(args)
    rows = exercises.status(args.dir)
    width = max(len(exercise.name) for exercise, _, _ in rows)
    print(f"{'exercise':<{width + 6}}{'state':<14}detail")
    for exercise, state, detail in rows:
        print(f"{exercise.number:>2}. {exercise.name:<{width + 2}}{state:<14}{detail}")
    done = sum(state == "done" for _, state, _ in rows)
    print(f"\n{done} of {len(rows)} done.")
    return 0


def _grade(args) -> int:
    """minifcn exercises grade: 0 when grading ran, 2 for a usage error, 1 when it cannot run."""
    from .exercises import grade as grading

    prog = "minifcn exercises grade"
    folders = args.dir
    try:
        if args.write_setup is not None:
            if len(folders) > 1:
                raise grading.UsageError(f"--write-setup {args.write_setup}: expected one "
                                         f"folder to write into, got {len(folders)}")
            (target,) = folders
            written = grading.write_setup(args.write_setup, target)
            print(f"Wrote {', '.join(written)}.")
            if args.write_setup == "gradescope":
                print(f"Add a minifcn wheel (in your minifcn checkout: pip wheel --no-deps -w "
                      f"{target} .), then zip the files, not the folder: cd {target} && "
                      f"zip ../autograder.zip *")
            else:
                print("Put it in the assignment's template repository; edit its 'Install "
                      "minifcn' step to where your course's minifcn comes from.")
            return 0
        reports = dict(json_path=args.json_path, gradescope=args.gradescope,
                       junit=args.junit, classroom=args.classroom)
        grading.check_outputs(json=args.json_path, gradescope=args.gradescope,
                              junit=args.junit, classroom=args.classroom, csv=args.csv_path)
        one_each = [f"--{option.removesuffix('_path')}" for option, path in reports.items()
                    if path is not None]
        if len(folders) > 1 and one_each:
            raise grading.UsageError(f"{one_each[0]} writes one folder's report; with "
                                     f"{len(folders)} folders, --csv FILE writes the "
                                     f"gradebook (or grade each folder on its own)")
        shown = []  # folders whose table is printed

        def started(plan) -> None:  # one job: the rows stream as the exercises end
            print(("\n" if shown else "") + "\n".join(grading.summary_header(plan)),
                  flush=True)
            shown.append(plan.folder)

        def finished(result) -> None:
            lines = grading.summary_lines(result)
            if result.folder not in shown:  # several jobs: the whole table at once
                print(("\n" if shown else "") + "\n".join(lines[:-2]))
                shown.append(result.folder)
            print("\n" + lines[-1], flush=True)

        options = dict(only=args.only, points=args.points, timeout=args.timeout,
                       memory_mb=args.memory_mb)
        if args.jobs == 1:
            options.update(on_start=started, progress=lambda graded: print(
                grading.summary_row(graded), flush=True))
        results = grading.grade_many(folders, jobs=args.jobs, done=finished, **options)
        if len(results) > 1:
            print("\n" + "\n".join(grading.gradebook_lines(results)))
        written = grading.write_reports(results[0], **reports) if len(results) == 1 else []
        if args.csv_path:
            written.append(grading.write_gradebook(results, args.csv_path))
    except grading.UsageError as error:
        print(f"{prog}: error: {error}", file=sys.stderr)
        return 2
    except grading.SetupError as error:
        print(f"{prog}: error: grading cannot run here: {error}", file=sys.stderr)
        return 1
    except OSError as error:
        print(f"{prog}: error: cannot write {error.filename or 'a report'}: "
              f"{error.strerror or error}", file=sys.stderr)
        return 1
    if written:
        print(f"Wrote {', '.join(written)}.")
    return 0


def _course(args) -> int:
    from . import site

    try:
        site.require_course_tools()
    except site.CourseToolsMissing as error:
        print(f"minifcn course: error: {error}", file=sys.stderr)
        return 1
    site.find_lessons(args.lessons, args.only)  # a wrong folder or name, before any work
    print(f"Running the lessons as notebooks{' in quick mode' if args.quick else ''}:")
    try:
        built = site.build_site(args.out, args.lessons, quick=args.quick, only=args.only,
                                device=args.device)
    except site.LessonFailed as error:  # the whole cell and traceback: the lesson's own
        print(f"minifcn course: error: {error}", file=sys.stderr)
        return 1
    print(f"Wrote {len(built)} lesson page(s); open {os.path.join(args.out, 'index.html')}")
    return 0


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    args = _parser().parse_args(argv)
    from .train import TrainingDiverged

    command = {"train": _train, "pretrain": _pretrain, "evaluate": _evaluate,
               "predict": _predict, "exercises": _exercises, "course": _course}[args.command]
    errors = (*USER_ERRORS, TrainingDiverged)
    if distributed.launched_world_size() > 1:  # one of the ranks mpiexec started
        return launch.run_rank(args.command, lambda: _as_rank(command, args), errors)
    try:
        workers = _workers(args)
        if workers > 1:
            try:
                return launch.run_workers(args.command, argv, workers)
            except launch.RanksDidNotStart as error:
                if args.workers != "auto":
                    raise
                print(f"minifcn {args.command}: {error}; running in one process instead",
                      file=sys.stderr)
        status = command(args)
    except errors as error:
        print(f"minifcn {args.command}: error: {launch.error_line(error)}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print(f"minifcn {args.command}: interrupted", file=sys.stderr)
        return 130
    return status or 0


def _workers(args) -> int:
    """How many ranks the command asks for (1 for commands without --workers). Before
    starting several, the run's settings are checked here, so that a mistake is one line
    from this process rather than the same line from every rank."""
    if getattr(args, "workers", None) in (None, "1"):
        return 1
    if args.command in ("train", "pretrain"):
        from .train import check_world_size

        config = _train_config(args) if args.command == "train" else _pretrain_config(args)
        config.validate()
        workers = launch.resolve_workers(args.workers, config.batch_size, config.device)
        check_world_size(config, workers)
        return workers
    return launch.resolve_workers(args.workers, device=args.device)


def _as_rank(command, args):
    """Run ``command`` in one of the ranks of a ``mpiexec -n N`` run."""
    launched = distributed.launched_world_size()
    given = getattr(args, "workers", None)
    if given is None:
        raise ValueError(f"minifcn {args.command} runs in one process; it was started as "
                         f"{launched} ranks (mpiexec -n {launched})")
    if given not in ("auto", "1") and given != str(launched):
        raise ValueError(f"--workers {given} but mpiexec started {launched} ranks; give "
                         f"one of the two")
    return command(args)
