"""Layer by layer: minifcn beside PyTorch, forward and forward+backward, float32.

    python benchmarks/layers.py                  # batch 8, 20 interleaved repeats
    python benchmarks/layers.py --quick          # 5 repeats
    python benchmarks/layers.py --device gpu     # CuPy beside PyTorch CUDA

Each pair of layers holds the same weights (minifcn's state_dict loaded into PyTorch's).
"forward" is one call in training mode (PyTorch records its autograd graph, minifcn keeps
its cache); "fwd+bwd" adds the backward for a fixed random upstream gradient (dx and every
parameter gradient). Writes ``results/layers.md``.
"""

from __future__ import annotations

import _common

_common.quiet_thread_spinning()

from dataclasses import dataclass

from minifcn import backend, nn
from minifcn.models.common import make_upsampler

# The targets, on the fwd+bwd ratio minifcn / PyTorch (lower is better).
TARGETS = {"Conv2d": 1.5, "ConvTranspose2d": 1.5, "MaxPool2d": 1.0, "BatchNorm2d": 1.2}


@dataclass
class Case:
    """One layer in both frameworks, on one input."""

    layer: str      # minifcn's class name
    config: str     # the shapes, for the table
    ours: object    # the minifcn module
    theirs: object  # the PyTorch module with the same weights
    x: object       # host input (N, C, H, W)
    target: object = None  # host class indices (N, H, W), for the loss only


def paired(config: str, ours, theirs, x, env: _common.Platform, torch_models) -> Case:
    """A Case with ours' initial weights loaded into theirs, each on its device."""
    theirs.load_state_dict(torch_models.from_minifcn(ours.state_dict()))
    return Case(type(ours).__name__, config, ours.to(env.device), theirs.to(env.torch_device), x)


def conv_cases(batch: int, torch_nn) -> list[tuple]:
    """(minifcn layer, PyTorch layer, input shape, config text) for every convolution."""
    pairs = []
    for C, size, F, k, s, p in [(3, 64, 16, 3, 1, 1), (16, 64, 32, 3, 1, 1),
                                (32, 32, 64, 3, 1, 1), (64, 16, 128, 3, 1, 1),
                                (32, 64, 32, 3, 2, 1)]:
        pairs.append((nn.Conv2d(C, F, k, s, p), torch_nn.Conv2d(C, F, k, s, p),
                      (batch, C, size, size),
                      f"({batch},{C},{size},{size}) -> {F}, k{k} s{s} p{p}"))
    pairs.append((nn.ConvTranspose2d(64, 32, 4, 2, 1), torch_nn.ConvTranspose2d(64, 32, 4, 2, 1),
                  (batch, 64, 16, 16), f"({batch},64,16,16) -> 32, k4 s2 p1"))
    return pairs


def make_cases(batch: int, env: _common.Platform, torch_models) -> list[Case]:
    rng = backend.np.random.default_rng(0)
    torch_nn = env.torch.nn
    pairs = conv_cases(batch, torch_nn)
    # FCN's final up-samplers, as the model builds them, on the score maps of 64x64 images
    for scale, size in ((8, 8), (32, 2)):
        pairs.append((make_upsampler(4, 4, scale), torch_models.make_upsampler(4, 4, scale),
                      (batch, 4, size, size),
                      f"FCN x{scale}: ({batch},4,{size},{size}) -> 4, k{2 * scale} s{scale} "
                      f"p{scale // 2}"))
    feature_map = (batch, 32, 64, 64)
    text = f"({batch},32,64,64)"
    pairs += [
        (nn.MaxPool2d(2, 2), torch_nn.MaxPool2d(2, 2), feature_map, f"{text}, 2x2"),
        (nn.BatchNorm2d(32), torch_nn.BatchNorm2d(32), feature_map, f"{text}, training"),
        (nn.Dropout(0.5), torch_nn.Dropout(0.5), feature_map, f"{text}, p=0.5"),
        (nn.Upsample(scale_factor=2, mode="bilinear", align_corners=False),
         torch_nn.Upsample(scale_factor=2, mode="bilinear", align_corners=False),
         (batch, 32, 32, 32), f"({batch},32,32,32), bilinear x2"),
    ]
    cases = [paired(config, ours, theirs, rng.standard_normal(shape, dtype="float32"), env,
                    torch_models)
             for ours, theirs, shape, config in pairs]
    target = rng.integers(0, 4, (batch, 64, 64))
    target[rng.random(target.shape) < 0.1] = 255  # some void pixels
    cases.append(Case("CrossEntropyLoss", f"({batch},4,64,64), ignore_index=255",
                      nn.CrossEntropyLoss(ignore_index=255, device=env.device),
                      torch_nn.CrossEntropyLoss(ignore_index=255),
                      rng.standard_normal((batch, 4, 64, 64), dtype="float32"), target))
    return cases


def contenders(case: Case, env: _common.Platform, rng) -> tuple[dict, dict]:
    """({name: forward}, {name: forward+backward}) closures for both frameworks."""
    x, x_t = env.asarray(case.x), env.tensor(case.x, requires_grad=True)
    if case.target is not None:
        args, args_t = (x, env.asarray(case.target)), (x_t, env.tensor(case.target))
        dy = dy_t = None  # a loss: backward starts from d loss / d loss = 1
    else:
        args, args_t = (x,), (x_t,)
        shape = case.ours(x).shape
        dy_host = rng.standard_normal(shape, dtype="float32")
        dy, dy_t = env.asarray(dy_host), env.tensor(dy_host)
    backward_args = () if dy is None else (dy,)

    def ours_step():
        case.ours(*args)
        case.ours.backward(*backward_args)

    def theirs_step():
        x_t.grad = None  # minifcn returns dx rather than accumulating it
        case.theirs(*args_t).backward(dy_t)

    forward = {"minifcn": lambda: case.ours(*args), "torch": lambda: case.theirs(*args_t)}
    return forward, {"minifcn": ours_step, "torch": theirs_step}


def main(argv=None) -> None:
    parser = _common.argument_parser(__doc__.splitlines()[0], repeats=20, quick_repeats=5)
    parser.add_argument("--batch", type=int, default=8, help="N of every input (default 8)")
    args = _common.parse_arguments(parser, argv)
    env = _common.setup(args)
    import torch_models  # imports PyTorch: only after setup() has checked it is there

    report = _common.Report("minifcn beside PyTorch, layer by layer (float32)", env, args)
    rng = backend.np.random.default_rng(1)
    rows = []
    for case in make_cases(args.batch, env, torch_models):
        forward, step = contenders(case, env, rng)
        medians = []
        for runs in (forward, step):
            times = _common.interleaved(runs, args.repeats, args.warmup, env.sync)
            medians.append((_common.median_ms(times["minifcn"]), _common.median_ms(times["torch"])))
        (fwd_ours, fwd_torch), (step_ours, step_torch) = medians
        ratio = step_ours / step_torch
        rows.append([case.layer, case.config, f"{fwd_ours:.2f}", f"{fwd_torch:.2f}",
                     _common.format_ratio(fwd_ours / fwd_torch), f"{step_ours:.2f}",
                     f"{step_torch:.2f}", f"**{_common.format_ratio(ratio)}**",
                     _common.verdict(ratio, TARGETS.get(case.layer))])
        print(" | ".join(rows[-1]), flush=True)
    report.table("Milliseconds per call (median) and ratio minifcn / PyTorch",
                 ["layer", "input -> output", "fwd minifcn", "fwd torch", "fwd ratio",
                  "fwd+bwd minifcn", "fwd+bwd torch", "fwd+bwd ratio", "target"], rows,
                 "Ratios below 1 mean minifcn is faster. Same weights and inputs in both; "
                 "PyTorch's forward records its autograd graph (the input requires grad), as "
                 "in training. Timings on a shared machine drift 20-30% from run to run: "
                 "compare the ratios.", text_columns=2)
    report.save(args.out, "layers")


if __name__ == "__main__":
    main()
