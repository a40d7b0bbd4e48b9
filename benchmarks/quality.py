"""What each segmenter reaches with the default training recipe, and how long it takes.

    python benchmarks/quality.py                    # every model, the default budget
    python benchmarks/quality.py --models fcn8s     # only the default model
    python benchmarks/quality.py --epochs 2 --train-size 64 --val-size 32   # a smoke run

Trains each model exactly as ``minifcn train --model NAME`` would (same data, seed and
recipe), then checks the bars the project sets itself:

- the default model (FCN-8s) reaches validation mean IoU >= 0.80 within 3 minutes;
- the FCN paper's ordering at equal budgets: FCN-32s < FCN-16s < FCN-8s, and U-Net above
  all three.

Prints a table and writes it to ``benchmarks/results/quality.md`` (quoted by the README),
with the prediction pictures of each run under ``runs/quality/<model>/``. Exits non-zero
when a bar is missed. Wall-clock times depend on the machine's load, which the table
records.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

import _common

REPO = Path(__file__).resolve().parent.parent
DEFAULT_BAR = (0.80, 180.0)  # mean IoU, seconds, for the default model


def main(argv=None) -> int:
    from minifcn.models import MODELS
    from minifcn.train import TrainConfig, train

    defaults = TrainConfig()
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--models", nargs="+", default=["fcn32s", "fcn16s", "fcn8s", "segnet",
                                                         "unet"], choices=list(MODELS))
    parser.add_argument("--epochs", type=int, default=None,
                        help="epochs for every model (default: each model's own recipe)")
    parser.add_argument("--train-size", type=int, default=defaults.train_size)
    parser.add_argument("--val-size", type=int, default=defaults.val_size)
    parser.add_argument("--seed", type=int, default=defaults.seed)
    parser.add_argument("--out", default=str(REPO / "benchmarks" / "results"))
    parser.add_argument("--runs", default=str(REPO / "runs" / "quality"))
    args = parser.parse_args(argv)
    is_default = args.epochs is None and (args.train_size, args.val_size) == (
        defaults.train_size, defaults.val_size)

    results = {}
    for name in args.models:
        config = TrainConfig(model=name, epochs=args.epochs, train_size=args.train_size,
                             val_size=args.val_size, seed=args.seed,
                             out=os.path.join(args.runs, name))
        started = time.perf_counter()
        last = train(config, progress=False, log=lambda line, n=name: print(f"[{n}] {line}"))
        results[name] = (last, time.perf_counter() - started)

    lines = _report(results, args, is_default)
    print("\n".join(lines))
    os.makedirs(args.out, exist_ok=True)
    path = os.path.join(args.out, "quality.md")
    with open(f"{path}.tmp", "w") as f:
        f.write("\n".join(lines) + "\n")
    os.replace(f"{path}.tmp", path)
    print(f"[written] {path}")
    failures = [line for line in lines if "MISSED" in line]
    return 1 if failures else 0


def _report(results: dict, args, is_default: bool) -> list[str]:


    lines = [
        "# Segmenters on toy shapes: the default recipe",
        "",
        *_common.run_lines("quality.py"),
        f"- Recipe: {args.train_size} images (64x64), Adam at each model's own epochs, "
        f"batch size and learning rate (columns; minifcn.train.recipe"
        f"{'' if args.epochs is None else f', but {args.epochs} epochs for all'}), cosine "
        f"schedule, random flips, seed {args.seed}; validation on {args.val_size} images",
        "",
        "| model | epochs | batch | lr | mean IoU | pixel acc | mean acc | f.w. IoU "
        "| train time (s) | bar |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|---|",
    ]
    from minifcn.train import recipe

    for name, (last, seconds) in results.items():
        bar = ""
        if name == "fcn8s" and is_default:
            iou_bar, time_bar = DEFAULT_BAR
            met = last["mean_iou"] >= iou_bar and seconds <= time_bar
            bar = f">= {iou_bar} in <= {time_bar:.0f} s: {'met' if met else 'MISSED'}"
        epochs = args.epochs or recipe(name)["epochs"]
        lines.append(f"| {name} | {epochs} | {recipe(name)['batch_size']} | "
                     f"{recipe(name)['lr']:g} | "
                     f"{last['mean_iou']:.3f} | "
                     f"{last['pixel_acc']:.3f} | "
                     f"{last['mean_acc']:.3f} | {last['fw_iou']:.3f} | {seconds:.0f} | {bar} |")
    iou = {name: last["mean_iou"] for name, (last, _) in results.items()}
    if {"fcn32s", "fcn16s", "fcn8s"} <= set(iou):
        held = iou["fcn32s"] < iou["fcn16s"] < iou["fcn8s"]
        lines += ["", f"FCN ordering fcn32s < fcn16s < fcn8s: {'held' if held else 'MISSED'} "
                      f"({iou['fcn32s']:.3f} < {iou['fcn16s']:.3f} < {iou['fcn8s']:.3f})"]
    if "unet" in iou and len(iou) > 1:
        best_other = max(v for k, v in iou.items() if k != "unet")
        held = "held" if iou["unet"] > best_other else "not held"
        lines += [f"U-Net above every other model: {held} ({iou['unet']:.3f} vs best other "
                  f"{best_other:.3f})"]
    return lines


if __name__ == "__main__":
    sys.exit(main())
