"""Segmenters over one VGG-style encoder: FCN-32s/16s/8s, SegNet and U-Net.

    model = build_model("fcn8s", num_classes=4)
    print(summary(model, (1, 3, 64, 64)))
"""

from __future__ import annotations

from .common import UPSAMPLE_MODES, Encoder
from .fcn import FCN, fcn8s, fcn16s, fcn32s
from .segnet import SegNet, segnet
from .summary import summary
from .unet import UNet, unet

__all__ = ["FCN", "MODELS", "UPSAMPLE_MODES", "Encoder", "SegNet", "UNet", "build_model",
           "fcn8s", "fcn16s", "fcn32s", "segnet", "summary", "unet"]

MODELS = {"fcn8s": fcn8s, "fcn16s": fcn16s, "fcn32s": fcn32s, "segnet": segnet, "unet": unet}


def build_model(name: str, num_classes: int = 4, **options):
    """A model by name (one of ``MODELS``); ``options`` go to its constructor."""
    if name not in MODELS:
        raise ValueError(f"unknown model {name!r}: expected one of {', '.join(MODELS)}")
    return MODELS[name](num_classes, **options)
