"""The ``minifcn`` command: ``train``, ``pretrain``, ``evaluate`` and ``predict``.

    minifcn train                         # FCN-8s on toy shapes, on the CPU
    minifcn train --model unet --epochs 5 --out runs/unet
    minifcn pretrain                      # a classifier on toy shape labels (96 x 96)
    minifcn train --init-from runs/classifier/best.npz    # FCN-8s started from it
    minifcn evaluate --checkpoint runs/latest/best.npz
    minifcn predict --checkpoint runs/latest/best.npz photo.png --out masks/

Mistakes a user can make (an unknown model, a bad checkpoint or data folder, a GPU that is
not there) print one line and exit with status 1, never a traceback.
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import sys

from . import backend
from .backend import np

__all__ = ["main"]

USER_ERRORS = (ValueError, TypeError, FileNotFoundError, NotADirectoryError,
               backend.DeviceUnavailableError)


def _parser() -> argparse.ArgumentParser:
    from .models import MODELS, UPSAMPLE_MODES
    from .train import TrainConfig, pretrain_config

    defaults = TrainConfig()
    parser = argparse.ArgumentParser(prog="minifcn", description=__doc__.split("\n\n")[0])
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    train = commands.add_parser("train", help="train a segmenter",
                                description="Train a segmenter; with no arguments, FCN-8s on "
                                            "toy shapes on the CPU.")
    train.add_argument("--model", default=defaults.model, choices=list(MODELS))
    train.add_argument("--epochs", type=int, default=defaults.epochs)
    train.add_argument("--batch-size", type=int, default=defaults.batch_size)
    train.add_argument("--lr", type=float, default=defaults.lr)
    train.add_argument("--optimizer", default=defaults.optimizer, choices=["adam", "sgd"])
    train.add_argument("--schedule", default=defaults.schedule,
                       choices=["constant", "step", "cosine", "poly"])
    train.add_argument("--weight-decay", type=float, default=defaults.weight_decay)
    train.add_argument("--image-size", type=int, default=defaults.image_size)
    train.add_argument("--train-size", type=int, default=defaults.train_size)
    train.add_argument("--val-size", type=int, default=defaults.val_size)
    train.add_argument("--data", default=None, metavar="DIR",
                       help="a VOC-layout folder (JPEGImages/, SegmentationClass/) instead of "
                            "the toy shapes")
    train.add_argument("--upsample", default=None, choices=list(UPSAMPLE_MODES) + ["unpool"],
                       help="how the decoder up-samples (default: the model's own)")
    train.add_argument("--class-weights", action="store_true",
                       help="weight the loss by median-frequency balancing (SegNet)")
    train.add_argument("--no-flip", action="store_true", help="no random flips")
    train.add_argument("--seed", type=int, default=defaults.seed)
    train.add_argument("--device", default=defaults.device, choices=list(backend.DEVICES))
    train.add_argument("--out", default=defaults.out, metavar="DIR")
    train.add_argument("--resume", default=None, metavar="CKPT")
    train.add_argument("--quiet", action="store_true", help="no progress bars")
    train.add_argument("--init-from", default=None, metavar="CKPT",
                       help="start an FCN's encoder, fc6 and fc7 from a classifier checkpoint "
                            "(minifcn pretrain)")

    pre = pretrain_config()
    pretrain = commands.add_parser(
        "pretrain", help="train the image classifier an FCN can start from",
        description="Train the classifier (the segmenters' encoder, fc6, fc7, class scores) "
                    "to name the shape covering the most pixels of 96 x 96 toy images; "
                    "then: minifcn train --init-from OUT/best.npz")
    for flag, kind in (("--epochs", int), ("--batch-size", int), ("--lr", float),
                       ("--weight-decay", float), ("--image-size", int),
                       ("--train-size", int), ("--val-size", int), ("--seed", int)):
        pretrain.add_argument(flag, type=kind, default=getattr(pre, flag[2:].replace("-", "_")))
    pretrain.add_argument("--optimizer", default=pre.optimizer, choices=["adam", "sgd"])
    pretrain.add_argument("--schedule", default=pre.schedule,
                          choices=["constant", "step", "cosine", "poly"])
    pretrain.add_argument("--no-flip", action="store_true", help="no random flips")
    pretrain.add_argument("--device", default=pre.device, choices=list(backend.DEVICES))
    pretrain.add_argument("--out", default=pre.out, metavar="DIR")
    pretrain.add_argument("--resume", default=None, metavar="CKPT")
    pretrain.add_argument("--quiet", action="store_true", help="no progress bars")

    evaluate = commands.add_parser("evaluate", help="metrics of a checkpoint")
    evaluate.add_argument("--checkpoint", required=True, metavar="CKPT")
    evaluate.add_argument("--data", default=None, metavar="DIR")
    evaluate.add_argument("--device", default="cpu", choices=list(backend.DEVICES))

    predict = commands.add_parser("predict", help="coloured masks for images")
    predict.add_argument("--checkpoint", required=True, metavar="CKPT")
    predict.add_argument("images", nargs="+", metavar="IMAGE")
    predict.add_argument("--out", required=True, metavar="DIR")
    predict.add_argument("--device", default="cpu", choices=list(backend.DEVICES))
    return parser


def _train(args) -> None:
    from .train import TrainConfig, train

    config = TrainConfig(model=args.model, epochs=args.epochs, batch_size=args.batch_size,
                         lr=args.lr, optimizer=args.optimizer, schedule=args.schedule,
                         weight_decay=args.weight_decay, image_size=args.image_size,
                         train_size=args.train_size, val_size=args.val_size, data=args.data,
                         seed=args.seed, device=args.device, out=args.out,
                         upsample=args.upsample, class_weights=args.class_weights,
                         flip=not args.no_flip, init_from=args.init_from)
    train(config, resume=args.resume, progress=not args.quiet)


def _pretrain(args) -> None:
    from .train import pretrain_config, train

    config = pretrain_config(epochs=args.epochs, batch_size=args.batch_size, lr=args.lr,
                             optimizer=args.optimizer, schedule=args.schedule,
                             weight_decay=args.weight_decay, image_size=args.image_size,
                             train_size=args.train_size, val_size=args.val_size,
                             seed=args.seed, device=args.device, out=args.out,
                             flip=not args.no_flip)
    train(config, resume=args.resume, progress=not args.quiet)


def _load_model(path: str, device: str):
    from .checkpoint import load_checkpoint
    from .train import TrainConfig, build_for_config

    state = load_checkpoint(path)
    config = TrainConfig(**state.config)
    model = build_for_config(dataclasses.replace(config, device=device))
    model.load_state_dict(state.model_state)
    return model.eval(), config


def _evaluate(args) -> None:
    from .data import DataLoader, SegmentationFolder, ShapeLabels, Shapes
    from .train import evaluate, evaluate_classifier

    model, config = _load_model(args.checkpoint, args.device)
    if config.is_classifier:
        if args.data is not None:
            raise ValueError("--data is for segmenters; this checkpoint holds the classifier")
        dataset = ShapeLabels(config.val_size, config.image_size, config.seed, split="val")
        results = evaluate_classifier(model, DataLoader(dataset, config.batch_size,
                                                        device=args.device))
        print(f"{config.model} on {len(dataset)} validation images")
        print(f"  {'accuracy':<24}{results['accuracy']:.4f}")
        print(f"  {'mean accuracy':<24}{results['mean_acc']:.4f}")
        for name, value in zip(dataset.classes, results["per_class_acc"], strict=True):
            print(f"    {name:<22}{value:.4f}")
        return
    if args.data is not None:
        dataset = SegmentationFolder(args.data, split="val", image_size=config.image_size)
    else:
        dataset = Shapes(config.val_size, config.image_size, config.seed, split="val")
    results = evaluate(model, DataLoader(dataset, config.batch_size, device=args.device),
                       model.num_classes)
    print(f"{config.model} on {len(dataset)} validation images")
    for key, label in (("pixel_acc", "pixel accuracy"), ("mean_acc", "mean accuracy"),
                       ("mean_iou", "mean IoU"), ("fw_iou", "frequency-weighted IoU")):
        print(f"  {label:<24}{results[key]:.4f}")
    print("  per-class IoU:")
    names = getattr(dataset, "classes", None) or [str(i) for i in range(model.num_classes)]
    for name, iou in zip(names, results["per_class_iou"], strict=True):
        print(f"    {name:<22}{'absent' if np.isnan(iou) else f'{iou:.4f}'}")


def _predict(args) -> None:
    from .data import load_image, save_mask_png
    from .viz import predict_masks

    model, config = _load_model(args.checkpoint, args.device)
    if config.is_classifier:
        raise ValueError(f"{args.checkpoint} holds the classifier, which names one shape per "
                         f"image and draws no mask; predict needs a segmenter")
    os.makedirs(args.out, exist_ok=True)
    stride = model.encoder.stride
    for path in args.images:
        image = load_image(path)  # (3, H, W) float32 in [0, 1]
        height, width = image.shape[1:]
        # The encoder needs sizes divisible by its stride: pad by reflection, crop after.
        pad_h, pad_w = -height % stride, -width % stride
        padded = np.pad(image, ((0, 0), (0, pad_h), (0, pad_w)), mode="reflect"
                        if pad_h < height and pad_w < width else "edge")
        mask = predict_masks(model, padded[None])[0, :height, :width]
        name = os.path.splitext(os.path.basename(path))[0] + ".png"
        save_mask_png(os.path.join(args.out, name), mask)
        print(f"{path} -> {os.path.join(args.out, name)}")


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    from .train import TrainingDiverged

    command = {"train": _train, "pretrain": _pretrain, "evaluate": _evaluate,
               "predict": _predict}[args.command]
    try:
        command(args)
    except (*USER_ERRORS, TrainingDiverged) as error:
        message = str(error).splitlines()[0] if str(error) else type(error).__name__
        print(f"minifcn {args.command}: error: {message}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print(f"minifcn {args.command}: interrupted", file=sys.stderr)
        return 130
    return 0
