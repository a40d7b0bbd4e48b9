"""minifcn's models written in PyTorch, module for module, with the same attribute names.

The point is the state_dict: every parameter and buffer has minifcn's key, shape and order,
so weights cross between the two frameworks unchanged, in both directions::

    ours = minifcn.models.build_model("fcn8s", 4)
    twin = build_twin("fcn8s", 4)
    twin.load_state_dict({k: torch.from_numpy(v) for k, v in ours.state_dict().items()})
    ours.load_state_dict({k: v.numpy() for k, v in twin.state_dict().items()})

The benchmarks time the twin beside minifcn on the same weights; ``tests/test_torch_twin.py``
compares their logits, running statistics and every gradient. Read it beside
``minifcn/models/common.py``, ``fcn.py``, ``segnet.py`` and ``unet.py``: same arguments,
same layers, same wiring. PyTorch is imported only here and in the benchmarks; minifcn does
not depend on it.
"""

from __future__ import annotations

import torch
from torch import nn

from minifcn.backend import to_numpy
from minifcn.models.common import DEFAULT_WIDTHS, UPSAMPLE_MODES, transposed_padding

__all__ = ["FCN", "MODELS", "Add", "Concat", "Crop", "Encoder", "SegNet", "UNet",
           "build_twin", "from_minifcn", "make_upsampler"]


# --- the parameter-free merge layers minifcn names as modules ------------------------------

class Add(nn.Module):
    """``minifcn.nn.Add``: the sum of its inputs."""

    def forward(self, *xs):
        total = xs[0]
        for x in xs[1:]:
            total = total + x
        return total


class Concat(nn.Module):
    """``minifcn.nn.Concat``: ``torch.cat`` along ``dim``."""

    def __init__(self, dim: int = 1):
        super().__init__()
        self.dim = dim

    def forward(self, *xs):
        return torch.cat(xs, dim=self.dim)


class Crop(nn.Module):
    """``minifcn.nn.Crop`` with a fixed offset: ``x[..., top:top + OH, left:left + OW]`` for a
    reference of size (OH, OW)."""

    def __init__(self, offset: int = 0):
        super().__init__()
        self.offset = offset

    def forward(self, x, reference):
        (height, width), top = reference.shape[-2:], self.offset
        return x[..., top:top + height, top:top + width]


# --- building blocks (minifcn/models/common.py) --------------------------------------------

def conv_bn_relu(in_channels: int, out_channels: int) -> list[nn.Module]:
    return [nn.Conv2d(in_channels, out_channels, 3, padding=1, bias=False),
            nn.BatchNorm2d(out_channels),
            nn.ReLU()]


def double_conv(in_channels: int, out_channels: int) -> nn.Sequential:
    return nn.Sequential(*conv_bn_relu(in_channels, out_channels),
                         *conv_bn_relu(out_channels, out_channels))


@torch.no_grad()
def bilinear_(weight: torch.Tensor) -> torch.Tensor:
    """Fill a (C, C, K, K) transposed-convolution weight with bilinear up-sampling: channel c
    to channel c only, the outer product of a triangle of width K (as minifcn.nn.init)."""
    channels, _, size, _ = weight.shape
    factor = (size + 1) // 2
    center = factor - 1 if size % 2 == 1 else factor - 0.5
    taps = 1 - (torch.arange(size, dtype=weight.dtype) - center).abs() / factor
    weight.zero_()
    weight[range(channels), range(channels)] = taps[:, None] * taps[None, :]
    return weight


def make_upsampler(in_channels: int, out_channels: int, scale: int, mode: str = "transposed",
                   kernel_size: int | None = None) -> nn.Module:
    """``minifcn.models.common.make_upsampler``: (N, in, H, W) -> (N, out, scale*H, scale*W)."""
    if mode == "transposed":
        kernel_size = kernel_size or 2 * scale
        padding, output_padding = transposed_padding(kernel_size, scale)
        layer = nn.ConvTranspose2d(in_channels, out_channels, kernel_size, stride=scale,
                                   padding=padding, output_padding=output_padding, bias=False)
        if in_channels == out_channels:
            bilinear_(layer.weight)
        return layer
    resize = nn.Upsample(scale_factor=scale, mode="bilinear", align_corners=False)
    if mode == "bilinear":
        if in_channels == out_channels:
            return resize
        return nn.Sequential(resize, nn.Conv2d(in_channels, out_channels, 1))
    if mode == "resize-conv":
        return nn.Sequential(resize, nn.Conv2d(in_channels, out_channels, 3, padding=1))
    raise ValueError(f"unknown upsample mode {mode!r}: expected one of {UPSAMPLE_MODES}")


class Encoder(nn.Module):
    """Five (conv-BN-ReLU) x 2 stages ``stage1..5``, each followed by ``pool1..5``."""

    def __init__(self, in_channels: int = 3, widths=DEFAULT_WIDTHS):
        super().__init__()
        self.widths = tuple(widths)
        channels = in_channels
        for k, width in enumerate(self.widths, start=1):
            self.add_module(f"stage{k}", double_conv(channels, width))
            self.add_module(f"pool{k}", nn.MaxPool2d(2, 2, return_indices=True))
            channels = width

    def forward(self, x):
        """-> (before_pool, pooled, indices): lists over the stages, as EncoderFeatures."""
        before_pool, pooled, indices = [], [], []
        for k in range(1, len(self.widths) + 1):
            x = getattr(self, f"stage{k}")(x)
            before_pool.append(x)
            x, where = getattr(self, f"pool{k}")(x)
            pooled.append(x)
            indices.append(where)
        return before_pool, pooled, indices


# --- the models ----------------------------------------------------------------------------

class FCN(nn.Module):
    """``minifcn.models.FCN``: FCN-32s/16s/8s with the same arguments and layer names.

    The skip crops are at offset 0: with this encoder (padded 3x3 convolutions, 2x2 pools)
    every supported up-sampler puts the pool4 and pool3 score maps exactly on the
    up-sampled map, which minifcn derives from the layer geometry (the original Caffe FCN
    needed offsets 5 and 9 because of its 100-pixel input padding).
    """

    def __init__(self, num_classes: int = 4, variant: str = "8s", in_channels: int = 3,
                 widths=DEFAULT_WIDTHS, head_channels: int = 128, dropout: float = 0.5,
                 upsample: str = "transposed", transposed_kernel: int | None = None):
        super().__init__()
        self.variant = variant
        C = num_classes
        self.encoder = Encoder(in_channels, widths)
        self.fc6 = nn.Sequential(nn.Conv2d(widths[-1], head_channels, 3, padding=1),
                                 nn.ReLU(), nn.Dropout(dropout))
        self.fc7 = nn.Sequential(nn.Conv2d(head_channels, head_channels, 1),
                                 nn.ReLU(), nn.Dropout(dropout))
        self.score_fr = nn.Conv2d(head_channels, C, 1)
        self.final_scale = {"32s": 32, "16s": 16, "8s": 8}[variant]
        if self.final_scale <= 16:
            self.upscore2 = make_upsampler(C, C, 2, upsample, transposed_kernel)
            self.score_pool4 = nn.Conv2d(widths[3], C, 1)
            self.crop_pool4 = Crop(0)
            self.fuse_pool4 = Add()
        if self.final_scale <= 8:
            self.upscore_pool4 = make_upsampler(C, C, 2, upsample, transposed_kernel)
            self.score_pool3 = nn.Conv2d(widths[2], C, 1)
            self.crop_pool3 = Crop(0)
            self.fuse_pool3 = Add()
        self.add_module(f"upscore{self.final_scale}", make_upsampler(C, C, self.final_scale,
                                                                     upsample))

    def forward(self, x):
        _, pooled, _ = self.encoder(x)
        scores = self.score_fr(self.fc7(self.fc6(pooled[4])))
        if self.variant != "32s":
            up = self.upscore2(scores)
            scores = self.fuse_pool4(up, self.crop_pool4(self.score_pool4(pooled[3]), up))
        if self.variant == "8s":
            up = self.upscore_pool4(scores)
            scores = self.fuse_pool3(up, self.crop_pool3(self.score_pool3(pooled[2]), up))
        return getattr(self, f"upscore{self.final_scale}")(scores)


class SegNet(nn.Module):
    """``minifcn.models.SegNet``: decoder stages ``up5..up1`` (max-unpooling from the
    encoder's indices, or another up-sampler) and ``dec5..dec1``, then ``classifier``."""

    def __init__(self, num_classes: int = 4, in_channels: int = 3, widths=DEFAULT_WIDTHS,
                 upsample: str = "unpool", transposed_kernel: int | None = None):
        super().__init__()
        self.upsample = upsample
        self.encoder = Encoder(in_channels, widths)
        for k in reversed(range(len(widths))):
            width, target = widths[k], widths[max(k - 1, 0)]
            if upsample == "unpool":
                up = nn.MaxUnpool2d(2, 2)
            else:
                up = make_upsampler(width, width, 2, upsample, transposed_kernel)
            self.add_module(f"up{k + 1}", up)
            layers = conv_bn_relu(width, width) + (conv_bn_relu(width, target) if k else [])
            self.add_module(f"dec{k + 1}", nn.Sequential(*layers))
        self.classifier = nn.Conv2d(widths[0], num_classes, 3, padding=1)

    def forward(self, x):
        before_pool, pooled, indices = self.encoder(x)
        y = pooled[-1]
        for k in reversed(range(len(self.encoder.widths))):
            up, dec = getattr(self, f"up{k + 1}"), getattr(self, f"dec{k + 1}")
            if self.upsample == "unpool":
                y = up(y, indices[k], output_size=before_pool[k].shape[2:])
            else:
                y = up(y)
            y = dec(y)
        return self.classifier(y)


class UNet(nn.Module):
    """``minifcn.models.UNet``: ``center``, then ``up{k}``, ``cat{k}`` (up-sampled map first,
    encoder features second) and ``dec{k}`` for k = 5..1, then a 1x1 ``classifier``."""

    def __init__(self, num_classes: int = 4, in_channels: int = 3, widths=DEFAULT_WIDTHS,
                 upsample: str = "transposed", transposed_kernel: int | None = None):
        super().__init__()
        self.encoder = Encoder(in_channels, widths)
        self.center = double_conv(widths[-1], widths[-1])
        channels = widths[-1]
        for k in reversed(range(len(widths))):
            self.add_module(f"up{k + 1}", make_upsampler(channels, widths[k], 2, upsample,
                                                         transposed_kernel))
            self.add_module(f"cat{k + 1}", Concat(dim=1))
            self.add_module(f"dec{k + 1}", double_conv(2 * widths[k], widths[k]))
            channels = widths[k]
        self.classifier = nn.Conv2d(widths[0], num_classes, 1)

    def forward(self, x):
        before_pool, pooled, _ = self.encoder(x)
        y = self.center(pooled[-1])
        for k in reversed(range(len(self.encoder.widths))):
            up, cat, dec = (getattr(self, f"{part}{k + 1}") for part in ("up", "cat", "dec"))
            y = dec(cat(up(y), before_pool[k]))
        return self.classifier(y)


MODELS = {
    "fcn8s": lambda num_classes, **options: FCN(num_classes, variant="8s", **options),
    "fcn16s": lambda num_classes, **options: FCN(num_classes, variant="16s", **options),
    "fcn32s": lambda num_classes, **options: FCN(num_classes, variant="32s", **options),
    "segnet": SegNet,
    "unet": UNet,
}


def build_twin(name: str, num_classes: int = 4, **options) -> nn.Module:
    """The PyTorch twin of ``minifcn.models.build_model(name, num_classes, **options)``
    (minus ``device`` and ``dtype``: use ``.to(...)``)."""
    if name not in MODELS:
        raise ValueError(f"unknown model {name!r}: expected one of {', '.join(MODELS)}")
    return MODELS[name](num_classes, **options)


def from_minifcn(state_dict) -> dict:
    """A minifcn state_dict as PyTorch tensors for ``load_state_dict`` (which copies them);
    device (CuPy) arrays are copied to the host first."""
    return {key: torch.from_numpy(to_numpy(value)) for key, value in state_dict.items()}
