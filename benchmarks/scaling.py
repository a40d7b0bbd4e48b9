"""How time and memory grow with the image and the batch, and what the im2col budget buys.

    python benchmarks/scaling.py            # images 64..512, batches 1..16 (a few minutes)
    python benchmarks/scaling.py --quick    # images 64..256, batches 1..8, 1 repeat

Four sweeps, minifcn beside PyTorch, float32: a Conv2d(64, 64, 3, padding=1) forward+
backward and a training step (see ``train_step.py``) as the image grows and as the batch
grows; the time per megapixel (N*H*W / 1e6) should stay about flat, since both grow
linearly in pixels. Then one large convolution under several im2col budgets: minifcn splits
the batch so that no im2col buffer exceeds the budget, so its peak memory stays bounded
however large the batch. Writes ``results/scaling.md``.
"""

from __future__ import annotations

import _common

_common.quiet_thread_spinning()

from layers import contenders, paired
from train_step import training_steps

from minifcn import backend, nn
from minifcn.functional import workspace
from minifcn.functional.im2col import batch_chunks, default_im2col_budget, im2col_budget

UNBOUNDED = 2**62  # a budget no buffer reaches: the whole batch in one im2col
CHANNELS = 64


def conv_runs(shape, env: _common.Platform, torch_models, rng) -> dict:
    """forward+backward closures of Conv2d(64, 64, 3, padding=1) on an input of ``shape``."""
    case = paired("", nn.Conv2d(CHANNELS, CHANNELS, 3, padding=1),
                  env.torch.nn.Conv2d(CHANNELS, CHANNELS, 3, padding=1),
                  rng.standard_normal(shape, dtype="float32"), env, torch_models)
    return contenders(case, env, rng)[1]


def sweep_row(label: str, pixels: int, result: _common.Measurement) -> list[str]:
    megapixels = pixels / 1e6
    return [label, f"{result.ours_ms:.1f}", f"{result.torch_ms:.1f}",
            f"**{_common.format_ratio(result.ratio)}**",
            f"{result.ours_ms / megapixels:.1f}", f"{result.torch_ms / megapixels:.1f}",
            *result.memory_cells()]


SWEEP_HEADERS = ["input", "minifcn ms", "torch ms", "ratio", "minifcn ms/MP", "torch ms/MP",
                 *_common.MEMORY_HEADERS]


def budget_rows(shape, budgets_mib: list[int], args, env, torch_models, rng) -> list[list]:
    """The conv on ``shape`` under each budget (and none): chunks, time, peak memory."""
    runs = conv_runs(shape, env, torch_models, rng)
    N, C, H, W = shape
    per_sample = C * 9 * H * W * 4  # float32 im2col buffer of one image, 3x3 kernel
    rows = []
    # What the budget bounds is one im2col buffer; the workspace pool would keep the buffers
    # of one budget's runs alive into the next one's and blur its peak: off for this sweep.
    previous = workspace.set_pool_bytes(0)
    workspace.clear()
    for budget in [b * _common.MIB for b in budgets_mib] + [UNBOUNDED]:
        with im2col_budget(budget):
            result = _common.measure(runs, args, env)
            chunks = len(batch_chunks(env.xp, N, per_sample))
        name = "unbounded" if budget == UNBOUNDED else f"{budget // _common.MIB} MiB"
        if budget == default_im2col_budget(env.xp):
            name += " (default)"
        rows.append([name, str(chunks), _common.mib(per_sample * -(-N // chunks)),
                     f"{result.ours_ms:.1f}", f"{result.torch_ms:.1f}",
                     f"**{_common.format_ratio(result.ratio)}**", *result.memory_cells()])
        print(" | ".join(rows[-1]), flush=True)
    workspace.set_pool_bytes(previous)
    return rows


def main(argv=None) -> None:
    parser = _common.argument_parser(__doc__.splitlines()[0], repeats=3, quick_repeats=1)
    parser.add_argument("--sizes", nargs="+", type=int,
                        help="image sizes (default 64 128 256 512; --quick: 64 128 256)")
    parser.add_argument("--batches", nargs="+", type=int,
                        help="batch sizes (default 1 2 4 8 16; --quick: 1 2 4 8)")
    parser.add_argument("--batch", type=int, default=8, help="batch of the size sweeps")
    parser.add_argument("--size", type=int, default=64,
                        help="image size of the batch sweeps (conv: twice this)")
    parser.add_argument("--model", default="fcn8s", help="model of the training steps")
    parser.add_argument("--budget-input", nargs=2, type=int, metavar=("N", "S"),
                        help="batch and image size of the budget study (default 8 256; "
                             "--quick: 8 128)")
    parser.add_argument("--budgets", nargs="+", type=int, default=[32, 256],
                        help="im2col budgets in MiB, besides unbounded (default 32 256: the "
                             "CPU's and the GPU's defaults)")
    args = _common.parse_arguments(parser, argv)
    args.sizes = args.sizes or ([64, 128, 256] if args.quick else [64, 128, 256, 512])
    args.batches = args.batches or ([1, 2, 4, 8] if args.quick else [1, 2, 4, 8, 16])
    budget_batch, budget_size = args.budget_input or [8, 128 if args.quick else 256]
    env = _common.setup(args)
    import torch_models  # imports PyTorch: only after setup() has checked it is there

    report = _common.Report("How cost grows: image size, batch size, im2col budget", env, args)
    rng = backend.np.random.default_rng(0)
    conv = f"Conv2d({CHANNELS}, {CHANNELS}, 3, padding=1) forward+backward"
    sweeps = [
        (f"{conv}, batch {args.batch}, as the image grows",
         [((args.batch, CHANNELS, s, s), f"{args.batch}x{CHANNELS}x{s}x{s}") for s in args.sizes]),
        (f"{conv}, {2 * args.size}x{2 * args.size}, as the batch grows",
         [((n, CHANNELS, 2 * args.size, 2 * args.size), f"{n}x{CHANNELS}x{2 * args.size}x"
           f"{2 * args.size}") for n in args.batches]),
    ]
    for title, problems in sweeps:
        rows = []
        for shape, label in problems:
            result = _common.measure(conv_runs(shape, env, torch_models, rng), args, env)
            rows.append(sweep_row(label, shape[0] * shape[2] * shape[3], result))
            print(" | ".join(rows[-1]), flush=True)
        report.table(title, SWEEP_HEADERS, rows)

    step = f"{args.model} training step"
    step_sweeps = [
        (f"{step}, batch {args.batch}, as the image grows", [(args.batch, s) for s in args.sizes]),
        (f"{step}, {args.size}x{args.size}, as the batch grows",
         [(n, args.size) for n in args.batches]),
    ]
    for title, problems in step_sweeps:
        rows = []
        for batch, size in problems:
            steps = training_steps(args.model, batch, size, env, torch_models)
            result = _common.measure(steps.run, args, env)
            rows.append(sweep_row(f"{batch}x3x{size}x{size}", batch * size * size, result))
            print(" | ".join(rows[-1]), flush=True)
        report.table(title, SWEEP_HEADERS, rows)

    shape = (budget_batch, CHANNELS, budget_size, budget_size)
    rows = budget_rows(shape, args.budgets, args, env, torch_models, rng)
    report.table(f"{conv} on {'x'.join(map(str, shape))} under im2col budgets",
                 ["budget", "chunks", "im2col MiB per chunk", "minifcn ms", "torch ms", "ratio",
                  *_common.MEMORY_HEADERS], rows,
                 "minifcn splits the batch so that one im2col buffer (C*KH*KW*OH*OW floats per "
                 "image) stays within the budget (minifcn.functional.im2col.im2col_budget); "
                 "with one chunk, forward keeps the buffer for backward, with several, backward "
                 "rebuilds it chunk by chunk. " + _common.MEMORY_NOTE)
    report.save(args.out, "scaling")


if __name__ == "__main__":
    main()
