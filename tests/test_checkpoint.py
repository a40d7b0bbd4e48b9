"""Checkpoints: exact round trips, atomic saves, and one-line errors for bad files."""

from __future__ import annotations

import json
import os

import numpy as np
import pytest

from minifcn import backend
from minifcn.checkpoint import VERSION, load_checkpoint, save_checkpoint
from minifcn.nn.module import Module, Parameter, Sequential
from minifcn.optim import Adam, make_scheduler


class Affine(Module):
    """``y = x * weight + bias`` over (N, C) inputs, with BatchNorm-like buffers, so that a
    state_dict holds float32 parameters, a float64 buffer and a 0-d int64 counter."""

    def __init__(self, channels: int, seed: int):
        super().__init__()
        rng = np.random.default_rng(seed)
        self.weight = Parameter(rng.standard_normal(channels).astype(np.float32))
        self.bias = Parameter(rng.standard_normal(channels).astype(np.float32))
        self.register_buffer("running_mean", rng.standard_normal(channels))
        self.register_buffer("num_batches_tracked", np.array(seed, dtype=np.int64))

    def forward(self, x):
        self._cache = x
        return x * self.weight.data + self.bias.data

    def backward(self, dy):
        x, self._cache = self._cache, None
        self.weight.grad += (dy * x).sum(axis=0)
        self.bias.grad += dy.sum(axis=0)
        return dy * self.weight.data


def _model(seed: int = 0) -> Module:
    return Sequential(Affine(3, seed), Affine(3, seed + 1))


def _train(model, optimizer, scheduler, steps: int, seed: int) -> None:
    xp = backend.get_array_module(next(model.parameters()).data)
    rng = np.random.default_rng(seed)
    for _ in range(steps):
        x = rng.standard_normal((4, 3)).astype(np.float32)
        dy = rng.standard_normal((4, 3)).astype(np.float32)
        optimizer.zero_grad()
        model(xp.asarray(x) if xp is not np else x)
        model.backward(xp.asarray(dy) if xp is not np else dy)
        optimizer.step()
        scheduler.step()


def _assert_state_equal(loaded: dict, original: dict) -> None:
    assert list(loaded) == list(original)
    for key, value in original.items():
        host = backend.to_numpy(value) if backend.is_array(value) else np.asarray(value)
        assert isinstance(loaded[key], np.ndarray), key
        assert loaded[key].dtype == host.dtype, key
        np.testing.assert_array_equal(loaded[key], host, err_msg=key)


CONFIG = {"model": "fcn8s", "lr": 3e-3, "image_size": 64, "flip": True, "data": None,
          "model_options": {"upsample": "bilinear"}, "classes": ["background", "disk"]}


def _save_run(path, model, optimizer, scheduler, epoch: int = 7) -> None:
    save_checkpoint(path, model.state_dict(), optimizer.state_dict(), epoch=epoch,
                    model_name="affine", config=CONFIG,
                    metrics={"mean_iou": 0.625, "pixel_acc": np.float32(0.5)},
                    extra={"scheduler": scheduler.state_dict()})


def test_round_trip_keeps_arrays_dtypes_and_metadata(tmp_path):
    model = _model()
    optimizer = Adam(model.parameters(), lr=0.01)
    scheduler = make_scheduler("cosine", optimizer, total_steps=10, warmup_steps=2)
    _train(model, optimizer, scheduler, steps=3, seed=0)
    path = tmp_path / "last.npz"
    _save_run(path, model, optimizer, scheduler)

    ckpt = load_checkpoint(path)
    assert ckpt.model_state["1.num_batches_tracked"].shape == ()
    assert ckpt.model_state["1.num_batches_tracked"].dtype == np.int64
    _assert_state_equal(ckpt.model_state, model.state_dict())
    _assert_state_equal(ckpt.optimizer_state, optimizer.state_dict())
    _assert_state_equal(ckpt.extra["scheduler"], scheduler.state_dict())
    assert list(ckpt.extra) == ["scheduler"]
    assert ckpt.epoch == 7 and ckpt.model_name == "affine"
    assert ckpt.config == CONFIG
    assert ckpt.metrics == {"mean_iou": 0.625, "pixel_acc": 0.5}
    assert all(type(value) is float for value in ckpt.metrics.values())
    # Plain NumPy reads it without pickle, and no file but the checkpoint is left around.
    with np.load(path, allow_pickle=False) as archive:
        assert "meta" in archive.files and "model/0.weight" in archive.files
        assert "optim/state.0.exp_avg" in archive.files
    assert os.listdir(tmp_path) == ["last.npz"]


def test_without_optimizer_or_metadata(tmp_path):
    model = _model()
    save_checkpoint(tmp_path / "weights.npz", model.state_dict())
    ckpt = load_checkpoint(str(tmp_path / "weights.npz"))
    _assert_state_equal(ckpt.model_state, model.state_dict())
    assert ckpt.optimizer_state is None and ckpt.extra == {}
    assert (ckpt.epoch, ckpt.model_name, ckpt.config, ckpt.metrics) == (None, None, {}, {})


def test_reload_into_fresh_modules_continues_identically(tmp_path, bk):
    """A model trained on the backend's device, saved, and restored into freshly built
    modules on that device trains on exactly as the original does."""
    model = _model(seed=0).to(device=bk.device)
    optimizer = Adam(model.parameters(), lr=0.01, weight_decay=0.01)
    scheduler = make_scheduler("poly", optimizer, total_steps=12, warmup_steps=2)
    _train(model, optimizer, scheduler, steps=4, seed=1)
    _save_run(tmp_path / "ckpt.npz", model, optimizer, scheduler)

    fresh = _model(seed=10).to(device=bk.device)  # other initial weights, to be overwritten
    fresh_optimizer = Adam(fresh.parameters(), lr=0.01, weight_decay=0.01)
    fresh_scheduler = make_scheduler("poly", fresh_optimizer, total_steps=12, warmup_steps=2)
    load_checkpoint(tmp_path / "ckpt.npz").restore(fresh, fresh_optimizer, fresh_scheduler)
    for key, value in fresh.state_dict().items():
        assert bk.owns(value), key
        assert value.dtype == model.state_dict()[key].dtype, key
        np.testing.assert_array_equal(bk.numpy(value), bk.numpy(model.state_dict()[key]))
    assert fresh_scheduler.get_last_lr() == scheduler.get_last_lr()

    _train(model, optimizer, scheduler, steps=3, seed=2)
    _train(fresh, fresh_optimizer, fresh_scheduler, steps=3, seed=2)
    for (key, value), other in zip(model.state_dict().items(), fresh.state_dict().values(),
                                   strict=True):
        np.testing.assert_array_equal(bk.numpy(other), bk.numpy(value), err_msg=key)


def test_load_state_dict_takes_the_host_arrays_directly(tmp_path, bk):
    model = _model(seed=3)
    save_checkpoint(tmp_path / "m.npz", model.state_dict())
    fresh = _model(seed=4).to(device=bk.device, dtype="float64")
    fresh.load_state_dict(load_checkpoint(tmp_path / "m.npz").model_state)
    for key, value in fresh.state_dict().items():
        assert bk.owns(value)
        np.testing.assert_array_equal(bk.numpy(value), model.state_dict()[key], err_msg=key)
    assert fresh.state_dict()["0.weight"].dtype == np.float64  # the model's dtype is kept


def test_restore_without_saved_optimizer_state(tmp_path):
    model = _model()
    save_checkpoint(tmp_path / "w.npz", model.state_dict())
    ckpt = load_checkpoint(tmp_path / "w.npz")
    with pytest.raises(ValueError, match="the checkpoint holds no optimizer state"):
        ckpt.restore(model, Adam(model.parameters()))


@pytest.mark.parametrize("crash", [OSError("No space left on device"), KeyboardInterrupt()],
                         ids=["disk-full", "interrupt"])
def test_a_crash_while_saving_keeps_the_previous_checkpoint(tmp_path, monkeypatch, crash):
    path = tmp_path / "last.npz"
    good = _model(seed=0)
    save_checkpoint(path, good.state_dict(), epoch=1)
    before = path.read_bytes()

    real_savez = np.savez

    def savez_then_crash(file, *args, **kwargs):
        real_savez(file, *args, **kwargs)  # a whole archive written to the temporary file...
        file.truncate(100)  # ...then damaged, and the save dies before the rename
        raise crash

    monkeypatch.setattr(np, "savez", savez_then_crash)
    with pytest.raises(type(crash)):
        save_checkpoint(path, _model(seed=5).state_dict(), epoch=2)
    monkeypatch.undo()

    assert os.listdir(tmp_path) == ["last.npz"]  # no temporary file left behind
    assert path.read_bytes() == before
    ckpt = load_checkpoint(path)
    assert ckpt.epoch == 1
    _assert_state_equal(ckpt.model_state, good.state_dict())


def test_a_crash_on_the_first_save_leaves_nothing(tmp_path, monkeypatch):
    def fail(*args, **kwargs):
        raise OSError("No space left on device")

    monkeypatch.setattr(os, "fsync", fail)
    with pytest.raises(OSError, match="No space left"):
        save_checkpoint(tmp_path / "first.npz", _model().state_dict())
    assert os.listdir(tmp_path) == []


def _assert_one_line(error_info, path) -> None:
    """The message names the path, fits one line, and no chained traceback is printed."""
    error = error_info.value
    assert str(path) in str(error) and "\n" not in str(error)
    assert error.__cause__ is None and (error.__context__ is None or error.__suppress_context__)


def test_missing_file_and_directory(tmp_path):
    with pytest.raises(FileNotFoundError, match="no such file") as info:
        load_checkpoint(tmp_path / "nope.npz")
    _assert_one_line(info, tmp_path / "nope.npz")
    with pytest.raises(ValueError, match="is a directory") as info:
        load_checkpoint(tmp_path)
    _assert_one_line(info, tmp_path)


@pytest.mark.parametrize("keep", [0.5, 0.98], ids=["half", "tail-cut"])
def test_truncated_file(tmp_path, keep):
    path = tmp_path / "ckpt.npz"
    save_checkpoint(path, _model().state_dict(), epoch=3)
    data = path.read_bytes()
    path.write_bytes(data[:int(len(data) * keep)])
    with pytest.raises(ValueError, match="not an .npz archive \\(truncated, corrupted") as info:
        load_checkpoint(path)
    _assert_one_line(info, path)


def test_corrupted_array_bytes(tmp_path):
    path = tmp_path / "ckpt.npz"
    save_checkpoint(path, {"w": np.arange(256.0)})
    data = bytearray(path.read_bytes())
    start = data.index(np.arange(256.0)[100:].tobytes())  # inside the array's bytes
    data[start:start + 8] = b"\xff" * 8
    path.write_bytes(bytes(data))
    with pytest.raises(ValueError, match="truncated or corrupted \\(BadZipFile: Bad CRC") as info:
        load_checkpoint(path)
    _assert_one_line(info, path)


def test_random_bytes(tmp_path):
    path = tmp_path / "noise.npz"
    path.write_bytes(np.random.default_rng(0).integers(0, 256, 4096, dtype=np.uint8).tobytes())
    with pytest.raises(ValueError, match="not an .npz archive") as info:
        load_checkpoint(path)
    _assert_one_line(info, path)


def _meta(**changes) -> np.ndarray:
    meta = {"format": "minifcn-checkpoint", "version": VERSION, "epoch": 0,
            "model_name": None, "config": {}, "metrics": {}} | changes
    return np.frombuffer(json.dumps(meta).encode(), dtype=np.uint8)


@pytest.mark.parametrize("entries, match", [
    ({"model/w": np.zeros(3)}, r"not a minifcn checkpoint \(no 'meta' entry\)"),
    ({"meta": np.frombuffer(b"{not json", dtype=np.uint8)},
     r"not a minifcn checkpoint \(invalid 'meta': Expecting property name"),
    ({"meta": np.array(["{}"])}, r"not a minifcn checkpoint \(invalid 'meta': a <U2 array"),
    ({"meta": _meta(format="something-else")}, r"invalid 'meta': format is not "
                                               r"'minifcn-checkpoint'"),
    ({"meta": _meta(version=VERSION + 1)}, rf"format version {VERSION + 1}, but this minifcn "
                                           rf"reads version {VERSION}"),
    ({"meta": _meta(), "weights/w": np.zeros(3)}, r"unexpected entry 'weights/w'"),
], ids=["no-meta", "bad-json", "meta-not-bytes", "other-format", "other-version",
        "unknown-entry"])
def test_npz_that_is_not_a_minifcn_checkpoint(tmp_path, entries, match):
    path = tmp_path / "other.npz"
    np.savez(path, allow_pickle=False, **entries)
    with pytest.raises(ValueError, match=match) as info:
        load_checkpoint(path)
    _assert_one_line(info, path)


def test_object_arrays_are_refused_not_unpickled(tmp_path):
    path = tmp_path / "evil.npz"
    np.savez(path, meta=_meta(), **{"model/w": np.array([{"code": "runs on load"}])})
    with pytest.raises(ValueError, match="holds pickled Python objects, which minifcn never "
                                         "writes and refuses to load") as info:
        load_checkpoint(path)
    _assert_one_line(info, path)


def test_save_refuses_what_it_cannot_store_without_pickle(tmp_path):
    with pytest.raises(TypeError, match=r"model entry 'w' is not numeric \(dtype object\)"):
        save_checkpoint(tmp_path / "a.npz", {"w": np.array([None, 1])})
    with pytest.raises(TypeError, match="config and metrics must be JSON-serialisable"):
        save_checkpoint(tmp_path / "b.npz", {}, config={"device": object()})
    with pytest.raises(TypeError, match="extra must map names"):
        save_checkpoint(tmp_path / "c.npz", {}, extra={"scheduler": 3})
    assert os.listdir(tmp_path) == []
