"""Segmenters over one VGG-style encoder: FCN-32s/16s/8s, SegNet and U-Net; and the image
classifier on the same encoder that FCN-32s/16s/8s can start from.

    model = build_model("fcn8s", num_classes=4)
    print(summary(model, (1, 3, 64, 64)))
    net = build_model("classifier", num_classes=3)      # 96 x 96 images -> (N, 3) scores
    dense = convolutionalize(net)                       # any size -> a map of class scores
    fcn = FCN.from_classifier(net, num_classes=4, variant="8s")
    fcn16s = FCN.from_coarser(build_model("fcn32s"))   # staged training: 32s -> 16s -> 8s
"""

from __future__ import annotations

from .classifier import Classifier, ConvolutionalClassifier, classifier, convolutionalize
from .common import UPSAMPLE_MODES, Encoder
from .fcn import FCN, fcn8s, fcn16s, fcn32s
from .segnet import SegNet, segnet
from .summary import summary
from .unet import UNet, unet

__all__ = ["CLASSIFIERS", "FCN", "MODELS", "UPSAMPLE_MODES", "Classifier",
           "ConvolutionalClassifier", "Encoder", "SegNet", "UNet", "build_model", "classifier",
           "convolutionalize", "fcn8s", "fcn16s", "fcn32s", "segnet", "summary", "unet"]

MODELS = {"fcn8s": fcn8s, "fcn16s": fcn16s, "fcn32s": fcn32s, "segnet": segnet, "unet": unet}
"""The segmenters by name, for ``build_model``: images (N, 3, H, W) -> per-pixel scores
(N, C, H, W)."""
CLASSIFIERS = {"classifier": classifier}
"""The image classifiers by name, for ``build_model``: images (N, 3, S, S) -> scores (N, C)."""


def build_model(name: str, num_classes: int = 4, **options):
    """A model by name (one of ``MODELS`` or ``CLASSIFIERS``); ``options`` go to its
    constructor."""
    builders = {**MODELS, **CLASSIFIERS}
    if name not in builders:
        raise ValueError(f"unknown model {name!r}: expected one of {', '.join(builders)}")
    return builders[name](num_classes, **options)
