"""Checkpoints: a model's (and optimizer's) state in one ``.npz`` file, without pickle.

One archive holds every array under a namespaced key, plus a JSON ``meta`` entry:

    meta                      uint8 bytes of a JSON object: format, version, epoch,
                              model_name, config, metrics
    model/conv1.weight        the model's state_dict, PyTorch's keys after the slash
    optim/state.0.exp_avg     the optimizer's flat state_dict (minifcn.optim)
    extra/scheduler/last_epoch  further named states, e.g. the lr scheduler's state_dict

Nothing is pickled, and loading uses ``np.load(allow_pickle=False)``: a checkpoint from an
untrusted source cannot run code. Saving is atomic: the archive is written to a temporary
file beside the target and renamed over it only once complete, so a crash (or a full disk)
mid-save leaves the previous checkpoint intact.

    save_checkpoint("runs/fcn/last.npz", model.state_dict(), opt.state_dict(),
                    epoch=epoch, model_name="fcn8s", config=vars(args),
                    metrics={"mean_iou": miou}, extra={"scheduler": sched.state_dict()})
    ckpt = load_checkpoint("runs/fcn/last.npz")
    model.load_state_dict(ckpt.model_state)   # host arrays, moved to the model's device
"""

from __future__ import annotations

import json
import os
import reprlib
import secrets
import zipfile
from dataclasses import dataclass, field

from . import backend
from .backend import np

__all__ = ["FORMAT", "VERSION", "Checkpoint", "load_checkpoint", "save_checkpoint"]

FORMAT = "minifcn-checkpoint"
"""The ``format`` entry of a checkpoint's ``meta``: an archive without it is not a minifcn
checkpoint for ``load_checkpoint``."""
VERSION = 1
"""The checkpoint layout's version, in ``meta``; ``load_checkpoint`` refuses another one
with a ``ValueError`` that names both."""
# The dtype kinds an entry may have: bool, signed and unsigned int, float, complex.
_NUMBERS = "biufc"


@dataclass
class Checkpoint:
    """What ``load_checkpoint`` returns. Each state maps its original keys to host NumPy
    arrays (numbers in the optimizer's and scheduler's states come back as 0-d arrays, which
    their ``load_state_dict`` accept); ``optimizer_state`` is ``None`` when none was saved,
    and ``extra`` maps each saved name to its state."""

    model_state: dict
    optimizer_state: dict | None = None
    epoch: int | None = None
    model_name: str | None = None
    config: dict = field(default_factory=dict)
    metrics: dict = field(default_factory=dict)
    extra: dict = field(default_factory=dict)

    def restore(self, model, optimizer=None, scheduler=None) -> None:
        """Load the saved states into ``model``, and into ``optimizer`` and ``scheduler``
        when given (the scheduler's from ``extra["scheduler"]``)."""
        if optimizer is not None and self.optimizer_state is None:
            raise ValueError("Checkpoint.restore: an optimizer was given but the checkpoint "
                             "holds no optimizer state")
        if scheduler is not None and "scheduler" not in self.extra:
            raise ValueError("Checkpoint.restore: a scheduler was given but the checkpoint "
                             "holds no extra['scheduler'] state")
        model.load_state_dict(self.model_state)
        if optimizer is not None:
            optimizer.load_state_dict(self.optimizer_state)
        if scheduler is not None:
            scheduler.load_state_dict(self.extra["scheduler"])


def save_checkpoint(path, model_state: dict, optimizer_state: dict | None = None, *,
                    epoch: int | None = None, model_name: str | None = None,
                    config: dict | None = None, metrics: dict | None = None,
                    extra: dict | None = None) -> None:
    """Write a checkpoint to ``path`` atomically (see the module docstring).

    Args:
        path: the file to write (``.npz`` by convention; the name is used as given).
        model_state: ``model.state_dict()``: name -> array on any device.
        optimizer_state: ``optimizer.state_dict()`` (arrays and numbers).
        epoch, model_name: stored as they are.
        config: JSON-serialisable settings of the run (e.g. the command-line arguments).
        metrics: name -> number, e.g. ``{"mean_iou": 0.61}``.
        extra: name -> a further state of arrays and numbers, e.g. ``{"scheduler":
            scheduler.state_dict()}``.
    """
    sections = {"model": model_state, "optim": optimizer_state or {}}
    for name, state in (extra or {}).items():
        if not isinstance(name, str) or "/" in name or not isinstance(state, dict):
            raise TypeError(f"save_checkpoint: extra must map names (without '/') to state "
                            f"dicts, got {name!r}: {type(state).__name__}")
        sections[f"extra/{name}"] = state
    arrays = {}
    for prefix, state in sections.items():
        for key, value in state.items():
            host = backend.to_numpy(value)
            if host.dtype.kind not in _NUMBERS:
                raise TypeError(f"save_checkpoint: {prefix} entry {key!r} is not numeric "
                                f"(dtype {host.dtype}); checkpoints hold numbers only")
            arrays[f"{prefix}/{key}"] = host
    meta = {"format": FORMAT, "version": VERSION,
            "epoch": None if epoch is None else int(epoch), "model_name": model_name,
            "config": config or {},
            "metrics": {name: float(value) for name, value in (metrics or {}).items()}}
    try:
        text = json.dumps(meta)
    except TypeError as error:
        raise TypeError(f"save_checkpoint: epoch, model_name, config and metrics must be "
                        f"JSON-serialisable: {error}") from None
    arrays["meta"] = np.frombuffer(text.encode("utf-8"), dtype=np.uint8)

    path = os.fspath(path)
    directory, name = os.path.split(os.path.abspath(path))
    temporary = os.path.join(directory, f".{name}.{secrets.token_hex(4)}.tmp")
    try:
        with open(temporary, "xb") as file:
            np.savez(file, allow_pickle=False, **arrays)
            file.flush()
            os.fsync(file.fileno())  # the bytes are on disk before the rename makes them live
        os.replace(temporary, path)
    except BaseException:
        if os.path.exists(temporary):
            os.remove(temporary)
        raise


def load_checkpoint(path) -> Checkpoint:
    """Read a checkpoint written by ``save_checkpoint``.

    A missing file is a ``FileNotFoundError``; a file that is truncated, corrupted (every
    entry is checked against its CRC-32), not a minifcn checkpoint, holds pickled objects or
    anything but numbers, has a ``meta`` entry of other types than ``save_checkpoint``
    writes, or has another format version is a ``ValueError``. Each names the path and the
    problem in one line.
    """
    path = os.fspath(path)
    try:
        with open(path, "rb") as file:  # other OSErrors (permissions) speak for themselves
            is_zip = zipfile.is_zipfile(file)
    except FileNotFoundError:
        raise FileNotFoundError(f"checkpoint {path}: no such file") from None
    except IsADirectoryError:
        raise ValueError(f"checkpoint {path}: is a directory, not a checkpoint file") from None
    if not is_zip:
        raise ValueError(f"checkpoint {path}: not an .npz archive (truncated, corrupted, or "
                         f"not a checkpoint)")
    try:  # np.load leaves a file it opened itself open when the zip directory is damaged
        with open(path, "rb") as file, np.load(file, allow_pickle=False) as archive:
            # np.load stops reading an entry where its .npy header says the array ends, and
            # zipfile checks an entry's CRC-32 only at its end: a damaged header ('<f4' made
            # '<f2') would load the wrong bytes unnoticed. testzip reads every entry whole.
            damaged = archive.zip.testzip()
            contents = {} if damaged else {key: archive[key] for key in archive.files}
    except ValueError as error:
        if "pickle" in str(error) or "Object arrays" in str(error):
            raise ValueError(f"checkpoint {path}: holds pickled Python objects, which minifcn "
                             f"never writes and refuses to load") from None
        raise ValueError(f"checkpoint {path}: unreadable array ({_one_line(error)})") from None
    except Exception as error:  # damaged bytes raise many kinds in zipfile and .npy parsing
        raise ValueError(f"checkpoint {path}: truncated or corrupted "
                         f"({type(error).__name__}: {_one_line(error)})") from None
    if damaged is not None:  # in zipfile's words, as when np.load reads to an entry's end
        raise ValueError(f"checkpoint {path}: truncated or corrupted (BadZipFile: Bad CRC-32 "
                         f"for file {damaged!r})")

    meta = _read_meta(path, contents.pop("meta", None))
    model_state, optimizer_state, extra = {}, {}, {}
    for key, value in contents.items():
        if value.dtype.kind not in _NUMBERS:  # strings would be parsed, or cast, as numbers
            raise ValueError(f"checkpoint {path}: entry {key!r} holds {value.dtype} data, not "
                             f"numbers (minifcn writes numbers only)")
        prefix, _, name = key.partition("/")
        if prefix == "extra" and "/" in name:
            extra_name, _, name = name.partition("/")
            extra.setdefault(extra_name, {})[name] = value
        elif prefix in ("model", "optim") and name:
            (model_state if prefix == "model" else optimizer_state)[name] = value
        else:
            raise ValueError(f"checkpoint {path}: unexpected entry {key!r} (expected meta, "
                             f"model/..., optim/... or extra/<name>/...)")
    return Checkpoint(model_state=model_state, optimizer_state=optimizer_state or None,
                      epoch=meta["epoch"], model_name=meta["model_name"],
                      config=meta["config"], metrics=meta["metrics"], extra=extra)


def _one_line(error: Exception) -> str:
    return " ".join(str(error).split())


def _read_meta(path: str, raw) -> dict:
    """The decoded ``meta`` entry, or a one-line ``ValueError`` saying what is wrong."""
    if raw is None:
        raise ValueError(f"checkpoint {path}: not a minifcn checkpoint (no 'meta' entry)")
    try:
        if raw.dtype != np.uint8 or raw.ndim != 1:
            raise ValueError(f"a {raw.dtype} array of shape {raw.shape}, not bytes")
        meta = json.loads(raw.tobytes().decode("utf-8"))
        if not isinstance(meta, dict) or meta.get("format") != FORMAT:
            raise ValueError(f"format is not {FORMAT!r}")
    # UnicodeDecodeError and JSONDecodeError are ValueErrors; JSON nested too deep for the
    # decoder is a RecursionError
    except (ValueError, RecursionError) as error:
        raise ValueError(f"checkpoint {path}: not a minifcn checkpoint (invalid 'meta': "
                         f"{_one_line(error)})") from None
    if meta.get("version") != VERSION:
        raise ValueError(f"checkpoint {path}: format version {meta.get('version')!r}, but this "
                         f"minifcn reads version {VERSION}")
    missing = [key for key in ("epoch", "model_name", "config", "metrics") if key not in meta]
    if missing:
        raise ValueError(f"checkpoint {path}: 'meta' lacks {missing}")
    # What save_checkpoint writes: anything else would surface later as a confusing error
    # (an epoch of "3" + 1) or not at all (an epoch of true, a metric of "high").
    epoch, name, metrics = meta["epoch"], meta["model_name"], meta["metrics"]
    wrong = [f"{key} {reprlib.repr(value)} is not {expected}" for key, value, expected, fits in (
        ("epoch", epoch, "a whole number or null", epoch is None or type(epoch) is int),
        ("model_name", name, "a string or null", name is None or isinstance(name, str)),
        ("config", meta["config"], "an object", isinstance(meta["config"], dict)),
        ("metrics", metrics, "an object of numbers", isinstance(metrics, dict) and all(
            type(value) in (int, float) for value in metrics.values())))
        if not fits]
    if wrong:
        raise ValueError(f"checkpoint {path}: invalid 'meta': {'; '.join(wrong)}")
    return meta
