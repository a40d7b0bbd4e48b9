"""Does starting FCN-8s from a pre-trained classifier help when masks are few?

    python benchmarks/pretraining.py                       # pretrain once, 3 seeds x 2 runs
    python benchmarks/pretraining.py --classifier runs/classifier/best.npz   # reuse one
    python benchmarks/pretraining.py --pretrain-epochs 1 --pretrain-size 32 --train-size 16 \\
        --epochs 1 --val-size 16 --seeds 0          # a smoke run

Long et al.'s recipe at toy scale: first ``minifcn pretrain`` (a classifier naming the
shape in 96 x 96 images of one shape each, :class:`minifcn.data.ShapeLabels`, images the
segmenter never sees), then, for each seed, FCN-8s trained on only
``--train-size`` labelled masks twice with the same budget, data and seed: once from
scratch, once started from the converted classifier (``minifcn train --init-from``).
Reports the last epoch's validation mean IoU of each, their mean over the seeds and the
difference, whatever it is, in a table written to ``benchmarks/results/pretraining.md``.
The pre-training time is reported separately: it is not part of the equal budget.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from pathlib import Path

import _common

REPO = Path(__file__).resolve().parent.parent


def main(argv=None) -> int:
    from minifcn.train import TrainConfig, pretrain_config, train

    pre = pretrain_config()
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--classifier", default=None, metavar="CKPT",
                        help="a classifier checkpoint to start from (default: pretrain one)")
    # minifcn pretrain's own defaults unless told otherwise
    parser.add_argument("--pretrain-epochs", type=int, default=pre.epochs)
    parser.add_argument("--pretrain-size", type=int, default=pre.train_size)
    parser.add_argument("--pretrain-val-size", type=int, default=pre.val_size)
    parser.add_argument("--pretrain-lr", type=float, default=pre.lr)
    parser.add_argument("--model", default="fcn8s", choices=["fcn8s", "fcn16s", "fcn32s"])
    parser.add_argument("--train-size", type=int, default=200)
    parser.add_argument("--val-size", type=int, default=300)
    parser.add_argument("--epochs", type=int, default=20)
    parser.add_argument("--batch-size", type=int, default=None,
                        help="the segmenter's batch size (default: the model's own recipe)")
    parser.add_argument("--lr", type=float, default=None,
                        help="the segmenter's learning rate (default: the model's own recipe)")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--widths", type=int, nargs=5, default=None, metavar="W",
                        help="encoder widths of the classifier and the FCNs, e.g. 8 16 32 32 "
                             "64 (fc6/fc7 then as wide as the last; default: the models' own)")
    parser.add_argument("--out", default=str(REPO / "benchmarks" / "results"))
    parser.add_argument("--report", default="pretraining.md",
                        help="file name of the table written in --out")
    parser.add_argument("--runs", default=str(REPO / "runs" / "pretraining"))
    args = parser.parse_args(argv)
    options = ({} if args.widths is None else
               {"widths": tuple(args.widths), "head_channels": args.widths[-1]})

    def log_as(tag):
        return lambda line: print(f"[{tag}] {line}", flush=True)

    classifier, pretrain_seconds, pretrain_row = args.classifier, None, None
    if classifier is None:
        config = pretrain_config(epochs=args.pretrain_epochs, train_size=args.pretrain_size,
                                 val_size=args.pretrain_val_size, lr=args.pretrain_lr,
                                 model_options=dict(options),
                                 out=os.path.join(args.runs, "classifier"))
        started = time.perf_counter()
        pretrain_row = train(config, progress=False, log=log_as("pretrain"))
        pretrain_seconds = time.perf_counter() - started
        classifier = os.path.join(config.out, "best.npz")
    else:
        from minifcn.checkpoint import load_checkpoint

        pretrain_row = load_checkpoint(classifier).metrics
    del pre

    results = {}  # (seed, start) -> (last row, seconds)
    for seed in args.seeds:
        for start in ("scratch", "classifier"):
            config = TrainConfig(model=args.model, epochs=args.epochs,
                                 batch_size=args.batch_size, lr=args.lr,
                                 train_size=args.train_size, val_size=args.val_size,
                                 seed=seed, out=os.path.join(args.runs, f"{start}-{seed}"),
                                 model_options=dict(options),
                                 init_from=classifier if start == "classifier" else None)
            started = time.perf_counter()
            last = train(config, progress=False, log=log_as(f"{start} seed {seed}"))
            results[seed, start] = (last, time.perf_counter() - started)

    lines = _report(results, args, classifier, pretrain_row, pretrain_seconds)
    print("\n".join(lines))
    os.makedirs(args.out, exist_ok=True)
    path = os.path.join(args.out, args.report)
    with open(f"{path}.tmp", "w") as f:
        f.write("\n".join(lines) + "\n")
    os.replace(f"{path}.tmp", path)
    print(f"[written] {path}")
    return 0


def _report(results, args, classifier, pretrain_row, pretrain_seconds) -> list[str]:

    from minifcn.train import TrainConfig

    segmenter = TrainConfig(model=args.model, batch_size=args.batch_size, lr=args.lr)
    if pretrain_seconds is not None:
        pretrained = (f"pre-trained here: {args.pretrain_epochs} epochs of "
                      f"{args.pretrain_size} images, Adam lr {args.pretrain_lr:g}, "
                      f"{pretrain_seconds:.0f} s, validation "
                      f"accuracy {pretrain_row['accuracy']:.3f} (3 classes)")
    else:
        pretrained = (f"`{classifier}`, validation accuracy "
                      f"{pretrain_row.get('accuracy', float('nan')):.3f} (3 classes)")
    widths = ("the models' defaults" if args.widths is None else
              f"encoder {tuple(args.widths)}, fc6 and fc7 {args.widths[-1]}")
    lines = [
        f"# {args.model} from a pre-trained classifier against from scratch, "
        f"{args.train_size} masks",
        "",
        *_common.run_lines("pretraining.py"),
        f"- Classifier: {pretrained}",
        f"- Widths: {widths}",
        f"- Segmenter: {args.epochs} epochs of {args.train_size} labelled masks (64x64), "
        f"batch {segmenter.batch_size}, Adam lr {segmenter.lr:g}, cosine schedule, random "
        f"flips; validation mean IoU on "
        f"{args.val_size} images, last epoch. Both starts see the same data in the same "
        f"order (same seed).",
        "",
        "| seed | from scratch | from the classifier | difference | seconds (each) |",
        "|---:|---:|---:|---:|---:|",
    ]
    differences = []
    for seed in args.seeds:
        scratch, t_scratch = results[seed, "scratch"]
        started, t_started = results[seed, "classifier"]
        difference = started["mean_iou"] - scratch["mean_iou"]
        differences.append(difference)
        lines.append(f"| {seed} | {scratch['mean_iou']:.3f} | {started['mean_iou']:.3f} | "
                     f"{difference:+.3f} | {t_scratch:.0f} / {t_started:.0f} |")
    scratch_mean = statistics.mean(results[s, "scratch"][0]["mean_iou"] for s in args.seeds)
    started_mean = statistics.mean(results[s, "classifier"][0]["mean_iou"] for s in args.seeds)
    def sd(values):
        values = list(values)
        return statistics.stdev(values) if len(values) > 1 else float("nan")

    scratch_sd = sd(results[s, "scratch"][0]["mean_iou"] for s in args.seeds)
    started_sd = sd(results[s, "classifier"][0]["mean_iou"] for s in args.seeds)
    lines.append(f"| mean (sd) | {scratch_mean:.3f} ({scratch_sd:.3f}) | {started_mean:.3f} "
                 f"({started_sd:.3f}) | {started_mean - scratch_mean:+.3f} "
                 f"({sd(differences):.3f}) | |")
    better = sum(d > 0 for d in differences)
    lines += ["", f"The converted classifier was ahead in {better} of {len(differences)} "
                  f"seeds."]
    return lines


if __name__ == "__main__":
    sys.exit(main())
