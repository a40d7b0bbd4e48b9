"""Layers: thin stateful wrappers over ``minifcn.functional`` with PyTorch's signatures.

Each has ``forward(x) -> y`` (also ``layer(x)``) and ``backward(dy) -> dx``, which adds into
its parameters' ``.grad``.
"""

from . import init, parallel
from .activation import LeakyReLU, ReLU
from .conv import Conv2d, ConvTranspose2d
from .dropout import Dropout, Dropout2d
from .linear import Flatten, Linear
from .loss import CrossEntropyLoss
from .merge import Add, Concat, Crop
from .module import Identity, Module, Parameter, Sequential
from .norm import BatchNorm2d, SyncBatchNorm
from .pool import AdaptiveAvgPool2d, AvgPool2d, MaxPool2d, MaxUnpool2d
from .upsample import Upsample, UpsamplingBilinear2d, UpsamplingNearest2d

__all__ = [
    "AdaptiveAvgPool2d", "Add", "AvgPool2d", "BatchNorm2d", "Concat", "Conv2d",
    "ConvTranspose2d", "Crop", "CrossEntropyLoss", "Dropout", "Dropout2d", "Flatten",
    "Identity", "LeakyReLU", "Linear", "MaxPool2d", "MaxUnpool2d", "Module", "Parameter",
    "ReLU", "Sequential", "SyncBatchNorm", "Upsample", "UpsamplingBilinear2d",
    "UpsamplingNearest2d", "init", "parallel",
]
