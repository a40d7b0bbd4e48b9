"""One training step of a whole model: minifcn beside the same model in PyTorch.

    python benchmarks/train_step.py                       # FCN-8s and U-Net, batch 8, 64x64
    python benchmarks/train_step.py --batch 8 16 --models fcn8s unet segnet
    python benchmarks/train_step.py --profile             # where minifcn's step spends time

A step is forward, cross-entropy loss (void label 255), zeroing the gradients, backward and an
Adam update, float32, on random images. The PyTorch model is the twin from
``torch_models.py`` with minifcn's initial weights loaded unchanged. Also reports the peak
memory of a step. Writes ``results/train_step.md``.
"""

from __future__ import annotations

import _common

_common.quiet_thread_spinning()

import cProfile
import pstats
import time
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path

from minifcn import backend, nn, optim
from minifcn.models import MODELS, build_model

NUM_CLASSES = 4
TARGET_RATIO = {"fcn8s": 1.6, "unet": 2.0}  # the targets for a step, minifcn / PyTorch (targets.py)


@dataclass
class Steps:
    """One training step of each framework on the same model, weights and batch."""

    ours: object     # the minifcn model
    criterion: object
    optimizer: object
    run: dict        # {"minifcn": step, "torch": step}


def training_steps(name: str, batch: int, size: int, env: _common.Platform,
                   torch_models) -> Steps:
    """Both steps for model ``name`` on a random batch of ``batch`` images of size x size."""
    torch = env.torch
    rng = backend.np.random.default_rng(0)
    ours = build_model(name, NUM_CLASSES, device=env.device)
    ours.encoder.needs_input_grad = False  # as minifcn.train does; PyTorch's x needs none
    twin = torch_models.build_twin(name, NUM_CLASSES)
    twin.load_state_dict(torch_models.from_minifcn(ours.state_dict()))
    twin.to(env.torch_device)

    images = rng.standard_normal((batch, 3, size, size), dtype="float32")
    masks = rng.integers(0, NUM_CLASSES, (batch, size, size))
    masks[rng.random(masks.shape) < 0.05] = 255  # a few void pixels, as VOC's borders
    x, target = env.asarray(images), env.asarray(masks)
    x_t, target_t = env.tensor(images), env.tensor(masks)

    criterion = nn.CrossEntropyLoss(ignore_index=255, device=env.device)
    optimizer = optim.Adam(ours.parameters(), lr=1e-3)
    criterion_t = torch.nn.CrossEntropyLoss(ignore_index=255)
    optimizer_t = torch.optim.Adam(twin.parameters(), lr=1e-3)

    def ours_step():
        criterion(ours(x), target)
        ours.zero_grad()
        ours.backward(criterion.backward())
        optimizer.step()

    def torch_step():
        optimizer_t.zero_grad()
        criterion_t(twin(x_t), target_t).backward()
        optimizer_t.step()

    return Steps(ours, criterion, optimizer, {"minifcn": ours_step, "torch": torch_step})


# --- where minifcn's step spends its time -----------------------------------------------

def time_by_layer(steps: Steps, repeats: int) -> tuple[dict, float]:
    """Seconds per step spent in each (layer type, forward/backward), and the step's total.

    Every leaf module's forward and backward, the loss and the optimizer's step are wrapped
    with a timer for the measurement and unwrapped after it.
    """
    totals: dict[tuple[str, str], float] = defaultdict(float)

    def timed(key, method):
        def wrapper(*args, **kwargs):
            start = time.perf_counter()
            result = method(*args, **kwargs)
            totals[key] += time.perf_counter() - start
            return result
        return wrapper

    wrapped = [(m, type(m).__name__) for m in steps.ours.modules() if not list(m.children())]
    wrapped.append((steps.criterion, "CrossEntropyLoss"))
    for module, kind in wrapped:
        for method in ("forward", "backward"):
            object.__setattr__(module, method, timed((kind, method), getattr(module, method)))
    steps.optimizer.step = timed(("Adam", "step"), steps.optimizer.step)
    try:
        start = time.perf_counter()
        for _ in range(repeats):
            steps.run["minifcn"]()
        total = time.perf_counter() - start
    finally:
        for module, _ in wrapped:
            del module.forward, module.backward
        del steps.optimizer.step
    return {key: seconds / repeats for key, seconds in totals.items()}, total / repeats


def profile_rows(steps: Steps, repeats: int, top: int) -> list[list]:
    """The ``top`` functions by self time (cProfile) over ``repeats`` minifcn steps."""
    profiler = cProfile.Profile()
    profiler.enable()
    for _ in range(repeats):
        steps.run["minifcn"]()
    profiler.disable()
    stats = pstats.Stats(profiler).stats
    total = sum(entry[2] for entry in stats.values())
    rows = []
    ranked = sorted(stats.items(), key=lambda item: item[1][2], reverse=True)[:top]
    for (filename, line, function), (_, calls, self_time, cumulative, _) in ranked:
        where = f"{Path(filename).parent.name}/{Path(filename).name}:{line}" if line else "builtin"
        rows.append([f"`{function}`", where, f"{calls / repeats:g}",
                     f"{1e3 * self_time / repeats:.2f}", f"{100 * self_time / total:.1f}%",
                     f"{1e3 * cumulative / repeats:.2f}"])
    return rows


def report_profile(report: _common.Report, name: str, steps: Steps, repeats: int) -> None:
    by_layer, total = time_by_layer(steps, repeats)
    rows = [[kind, method, f"{1e3 * seconds:.2f}", f"{100 * seconds / total:.1f}%"]
            for (kind, method), seconds in sorted(by_layer.items(), key=lambda kv: -kv[1])]
    glue = total - sum(by_layer.values())
    rows.append(["(model glue: skips, crops, sums)", "", f"{1e3 * glue:.2f}",
                 f"{100 * glue / total:.1f}%"])
    report.table(f"{name}: minifcn step by layer type ({1e3 * total:.1f} ms per step, "
                 f"{repeats} steps)", ["layer", "pass", "ms per step", "share"], rows,
                 text_columns=2)
    report.table(f"{name}: top functions by self time (cProfile, {repeats} steps)",
                 ["function", "where", "calls per step", "self ms per step", "share",
                  "cumulative ms"], profile_rows(steps, repeats, top=15),
                 "cProfile slows Python-level calls, so small functions look a little "
                 "heavier than they are.", text_columns=2)


def main(argv=None) -> None:
    parser = _common.argument_parser(__doc__.splitlines()[0], repeats=20, quick_repeats=5)
    parser.add_argument("--models", nargs="+", choices=list(MODELS), default=["fcn8s", "unet"])
    parser.add_argument("--batch", nargs="+", type=int, default=[8],
                        help="batch sizes (default 8; e.g. --batch 8 16)")
    parser.add_argument("--size", type=int, default=64,
                        help="image height and width, a multiple of 32 (default 64)")
    parser.add_argument("--profile", action="store_true",
                        help="also break minifcn's step down by layer type and function")
    args = _common.parse_arguments(parser, argv)
    env = _common.setup(args)
    import torch_models  # imports PyTorch: only after setup() has checked it is there

    report = _common.Report("One training step, minifcn beside PyTorch (float32)", env, args)
    rows, profiles = [], []
    for name in args.models:
        for batch in args.batch:
            steps = training_steps(name, batch, args.size, env, torch_models)
            result = _common.measure(steps.run, args, env)
            rows.append([name, f"{batch}x3x{args.size}x{args.size}", f"{result.ours_ms:.1f}",
                         f"{result.torch_ms:.1f}", f"**{_common.format_ratio(result.ratio)}**",
                         _common.verdict(result.ratio, TARGET_RATIO.get(name)),
                         *result.memory_cells()])
            print(" | ".join(rows[-1]), flush=True)
            if args.profile:
                profiles.append((f"{name}, batch {batch}", steps))
    report.table("Milliseconds per step (median), ratio minifcn / PyTorch, peak memory",
                 ["model", "input", "minifcn ms", "torch ms", "ratio", "target",
                  *_common.MEMORY_HEADERS], rows,
                 "A step: forward, loss, zero_grad, backward, Adam. " + _common.MEMORY_NOTE,
                 text_columns=2)
    for title, steps in profiles:
        report_profile(report, title, steps, args.repeats)
    report.save(args.out, "train_step")


if __name__ == "__main__":
    main()
