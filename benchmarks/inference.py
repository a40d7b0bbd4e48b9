"""Inference on real photos, and training on large images: minifcn beside PyTorch.

    python benchmarks/inference.py             # the targets of the inference issue
    python benchmarks/inference.py --quick     # smaller images, 1 repeat

Three measurements, each with its target (minifcn / PyTorch, medians, float32):

- the eval forward of FCN-8s (default widths, 4 classes) on one 1 x 3 x 1504 x 2016 photo,
  minifcn under ``minifcn.no_grad()`` beside the PyTorch twin under ``torch.no_grad()``:
  time <= 1.5x, peak memory growth <= 1.5x;
- ``minifcn predict`` on a 4000 x 3000 JPEG as a command of its own: peak resident memory
  <= 2 GiB (it was killed at 23.7 GB before no_grad and bands of rows);
- a training step (as ``train_step.py``) at 256 x 256 and 512 x 512, batch 8: time <= 1.6x,
  peak memory growth <= 1.5x; and at 64 x 64, where nothing should have changed.

Writes ``results/inference.md``.
"""

from __future__ import annotations

import _common

_common.quiet_thread_spinning()

import dataclasses
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from train_step import training_steps

import minifcn
from minifcn.models import build_model

NUM_CLASSES = 4
FORWARD_TARGETS = {"time": 1.5, "memory": 1.5}
STEP_TARGETS = {"time": 1.6, "memory": 1.5}
PREDICT_TARGET_BYTES = 2 * 2**30


def forward_runs(size, env, torch_models):
    """Eval forwards of FCN-8s and its twin on one random photo of ``size`` (H, W)."""
    torch = env.torch
    minifcn.manual_seed(0)
    ours = build_model("fcn8s", NUM_CLASSES, device=env.device).eval()
    twin = torch_models.build_twin("fcn8s", NUM_CLASSES)
    twin.load_state_dict(torch_models.from_minifcn(ours.state_dict()))
    twin.to(env.torch_device).eval()
    rng = minifcn.backend.np.random.default_rng(0)
    photo = rng.random((1, 3, *size), dtype="float32")
    x, x_t = env.asarray(photo), env.tensor(photo)

    def ours_forward():
        with minifcn.no_grad():
            return ours(x).argmax(axis=1)

    def torch_forward():
        with torch.no_grad():
            return twin(x_t).argmax(dim=1)

    return {"minifcn": ours_forward, "torch": torch_forward}


def predict_peak(size, folder: Path) -> tuple[int, float]:
    """Peak resident bytes and seconds of ``minifcn predict`` on one JPEG of ``size`` (H, W)
    in a process of its own (its whole life: Python, the libraries, the photo)."""
    from PIL import Image

    from minifcn.checkpoint import save_checkpoint
    from minifcn.train import TrainConfig

    rng = minifcn.backend.np.random.default_rng(1)
    height, width = size
    # A photo-like picture: smooth gradients and noise, saved as a JPEG as a camera would.
    rows = minifcn.backend.np.linspace(0, 255, height, dtype="float32")[:, None, None]
    cols = minifcn.backend.np.linspace(0, 255, width, dtype="float32")[None, :, None]
    picture = (rows * 0.5 + cols * 0.5 + rng.normal(0, 20, (height, width, 3))).clip(0, 255)
    Image.fromarray(picture.astype("uint8")).save(folder / "photo.jpg", quality=90)
    minifcn.manual_seed(0)
    model = build_model("fcn8s", NUM_CLASSES)
    save_checkpoint(folder / "model.npz", model.state_dict(), epoch=0, model_name="fcn8s",
                    config=dataclasses.asdict(TrainConfig(num_classes=NUM_CLASSES)))
    started = time.perf_counter()
    process = subprocess.Popen([sys.executable, "-m", "minifcn", "predict", "--checkpoint",
                                str(folder / "model.npz"), str(folder / "photo.jpg"), "--out",
                                str(folder / "masks"), "--quiet"], stdout=subprocess.DEVNULL,
                               stderr=subprocess.PIPE)
    _, status, usage = os.wait4(process.pid, 0)
    seconds = time.perf_counter() - started
    if status != 0:
        _common.fail(f"minifcn predict failed: {process.stderr.read().decode()[-2000:]}")
    process.stderr.close()
    return usage.ru_maxrss * 1024, seconds


def ratio_cells(result: _common.Measurement, targets: dict) -> list[str]:
    time_ratio = result.ratio
    memory = (result.rss_ours / result.rss_torch if result.rss_ours and result.rss_torch
              else None)
    return [f"{result.ours_ms:.0f}", f"{result.torch_ms:.0f}",
            f"**{_common.format_ratio(time_ratio)}**", _common.verdict(time_ratio,
                                                                       targets["time"]),
            _common.mib(result.rss_ours), _common.mib(result.rss_torch),
            f"**{_common.format_ratio(memory)}**" if memory else "n/a",
            _common.verdict(memory, targets["memory"]) if memory else ""]


def main(argv=None) -> None:
    parser = _common.argument_parser(__doc__.splitlines()[0], repeats=5, quick_repeats=1)
    parser.add_argument("--photo", type=int, nargs=2, metavar=("H", "W"),
                        help="the eval forward's photo (default 1504 2016; 480 640 with "
                             "--quick)")
    parser.add_argument("--predict", type=int, nargs=2, metavar=("H", "W"),
                        help="the photo minifcn predict segments (default 3000 4000; 600 800 "
                             "with --quick)")
    parser.add_argument("--steps", type=int, nargs="+",
                        help="image sides of the training steps, batch 8 (default 64 256 512; "
                             "64 128 with --quick)")
    args = _common.parse_arguments(parser, argv)
    args.photo = args.photo or ((480, 640) if args.quick else (1504, 2016))
    args.predict = args.predict or ((600, 800) if args.quick else (3000, 4000))
    args.steps = args.steps or ((64, 128) if args.quick else (64, 256, 512))
    env = _common.setup(args)
    import torch_models  # PyTorch: only after setup() has checked it is there

    report = _common.Report("Inference on photos and training on large images", env, args)
    headers = ["case", "minifcn ms", "torch ms", "time ratio", "time target", "minifcn RSS MiB",
               "torch RSS MiB", "memory ratio", "memory target"]
    height, width = args.photo
    forward = _common.measure(forward_runs(args.photo, env, torch_models), args, env)
    rows = [[f"FCN-8s eval forward, 1x3x{height}x{width}",
             *ratio_cells(forward, FORWARD_TARGETS)]]
    for side in args.steps:
        steps = training_steps("fcn8s", 8, side, env, torch_models)
        result = _common.measure(steps.run, args, env)
        rows.append([f"FCN-8s training step, 8x3x{side}x{side}",
                     *ratio_cells(result, STEP_TARGETS)])
        print(" | ".join(rows[-1]), flush=True)
    report.table("Time (median) and peak memory growth, minifcn / PyTorch", headers, rows,
                 "The forward: minifcn under minifcn.no_grad(), PyTorch under torch.no_grad(), "
                 "both followed by the argmax a mask needs. A training step: forward, loss, "
                 "zero_grad, backward, Adam (train_step.py). RSS: the peak growth of the "
                 "process's resident memory over one more untimed call of each "
                 "(see benchmarks/README.md).")
    if env.device == "cpu":
        with tempfile.TemporaryDirectory() as folder:
            peak, seconds = predict_peak(args.predict, Path(folder))
        verdict = "met" if peak <= PREDICT_TARGET_BYTES else "MISSED"
        report.table("minifcn predict on one photo, a process of its own",
                     ["photo", "seconds", "peak RSS MiB", "target"],
                     [[f"{args.predict[1]} x {args.predict[0]} JPEG", f"{seconds:.1f}",
                       _common.mib(peak), f"<= 2048 MiB: {verdict}"]],
                     "The whole process: Python, NumPy, Pillow, the photo, the model and its "
                     "forward (os.wait4's ru_maxrss). Its mask is written as a PNG.")
    report.save(args.out, "inference")


if __name__ == "__main__":
    main()
