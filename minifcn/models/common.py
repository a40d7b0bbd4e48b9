"""Pieces every segmenter here shares: the VGG-style encoder and the up-sampling choices.

The encoder follows the FCN paper's VGG at toy width: five stages of
(3x3 conv - batch norm - ReLU) x 2, each followed by a 2x2 max-pool, so the last map is 32
times smaller than the image (output stride 32). Decoders differ only in how they climb
back to full resolution, which is exactly what the models in this package compare.
"""

from __future__ import annotations

from dataclasses import dataclass

from .. import nn
from ..checks import check_input
from ..nn import init

__all__ = ["UPSAMPLE_MODES", "Encoder", "EncoderFeatures", "accumulate", "check_image",
           "conv_bn_relu", "double_conv", "make_upsampler", "transposed_padding"]

UPSAMPLE_MODES = ("transposed", "bilinear", "resize-conv")
"""How a decoder up-samples (its ``upsample`` option, see ``make_upsampler``): a learned
transposed convolution, fixed bilinear interpolation, or a bilinear resize then a learned
3x3 convolution (no checkerboard)."""
DEFAULT_WIDTHS = (16, 32, 64, 64, 128)


def conv_bn_relu(in_channels: int, out_channels: int) -> list[nn.Module]:
    """3x3 convolution (no bias: batch norm's shift replaces it), batch norm, ReLU."""
    return [nn.Conv2d(in_channels, out_channels, 3, padding=1, bias=False, device="cpu"),
            nn.BatchNorm2d(out_channels, device="cpu"),
            nn.ReLU()]


def double_conv(in_channels: int, out_channels: int) -> nn.Sequential:
    """Two conv-BN-ReLU blocks: one VGG/U-Net stage."""
    return nn.Sequential(*conv_bn_relu(in_channels, out_channels),
                         *conv_bn_relu(out_channels, out_channels))


def accumulate(*grads):
    """The sum of the gradients that reach one tensor along different paths (None = none).

    Always a new array, so no branch's gradient is modified by another's.
    """
    present = [g for g in grads if g is not None]
    if not present:
        return None
    total = present[0].copy() if len(present) == 1 else present[0] + present[1]
    for g in present[2:]:
        total += g
    return total


@dataclass
class EncoderFeatures:
    """What the encoder hands to a decoder, stage by stage (index 0 = stage 1).

    ``before_pool[k]``: stage k's output (N, C_k, H / 2**k, W / 2**k), U-Net's skip input.
    ``pooled[k]``: the same after 2x2 max-pooling; ``pooled[-1]`` is the stride-32 map.
    ``indices[k]``: where each pooled maximum came from (SegNet's unpooling needs them);
    None unless the encoder was built with ``keep_indices=True``.
    ``sizes[k]``: (H, W) of ``before_pool[k]``, kept even where the map itself is not.

    A decoder may ask the encoder to keep only the maps it reads (the others are None), and
    set an entry to None once it has read it: without a backward to come (``no_grad``), a
    map nobody holds is freed at once.
    """

    before_pool: list
    pooled: list
    indices: list
    sizes: list


class Encoder(nn.Module):
    """Five conv-BN-ReLU x2 stages, each followed by 2x2 max-pooling (output stride 32).

    ``keep_indices=True`` also records where each pooled maximum came from, which only a
    decoder that unpools (SegNet) needs.
    """

    def __init__(self, in_channels: int = 3, widths=DEFAULT_WIDTHS, keep_indices: bool = False):
        super().__init__()
        self.widths = tuple(widths)
        self.keep_indices = keep_indices
        channels = in_channels
        for k, width in enumerate(self.widths, start=1):
            self.add_module(f"stage{k}", double_conv(channels, width))
            self.add_module(f"pool{k}", nn.MaxPool2d(2, 2, return_indices=keep_indices))
            channels = width

    @property
    def stride(self) -> int:
        """The output stride: each stage halves H and W, so 2 ** (number of stages), 32."""
        return 2 ** len(self.widths)

    @property
    def needs_input_grad(self) -> bool:
        """Whether ``backward`` returns the gradient of the image (True, the default, as a
        gradient check needs). Training sets it False: nobody needs d(image), so the first
        convolution skips its input gradient (a GEMM and a col2im) and ``backward`` returns
        None."""
        return getattr(self.stage1[0], "needs_input_grad", True)

    @needs_input_grad.setter
    def needs_input_grad(self, value: bool) -> None:
        self.stage1[0].needs_input_grad = bool(value)

    def stages(self):
        """``[(stage1, pool1), ..., (stage5, pool5)]``: each stage's convolutions and the
        max-pooling after them."""
        return [(getattr(self, f"stage{k}"), getattr(self, f"pool{k}"))
                for k in range(1, len(self.widths) + 1)]

    def forward(self, x, before_pool=None, pooled=None) -> EncoderFeatures:
        """x (N, C, H, W) -> every stage's outputs; ``before_pool`` and ``pooled``, when
        given, are the stage indices whose maps to keep (a decoder's skips), the others
        None, so that a map nothing reads is freed as soon as the next stage has run."""
        features = EncoderFeatures([], [], [], [])
        for k, (stage, pool) in enumerate(self.stages()):
            x = stage(x)
            features.sizes.append(tuple(x.shape[2:]))
            features.before_pool.append(x if before_pool is None or k in before_pool else None)
            x, indices = pool(x) if self.keep_indices else (pool(x), None)
            features.pooled.append(x if pooled is None or k in pooled else None)
            features.indices.append(indices)
        return features

    def backward(self, d_pooled: dict, d_before_pool: dict | None = None):
        """Gradient of the input from the gradients that reach each stage's outputs.

        ``d_pooled[k]`` / ``d_before_pool[k]`` (0-based stage index): gradients arriving at a
        stage's pooled output / its pre-pool output from the decoder; missing keys mean none.
        Walking the stages in reverse, each pooled output also receives the gradient of the
        next stage's input, and the two are summed.
        """
        d_before_pool = d_before_pool or {}
        d_next = None
        for k in reversed(range(len(self.widths))):
            stage, pool = self.stages()[k]
            d = accumulate(d_pooled.get(k), d_next)
            d = pool.backward(d) if d is not None else None
            d = accumulate(d, d_before_pool.get(k))
            d_next = stage.backward(d)
        return d_next


def transposed_padding(kernel_size: int, scale: int) -> tuple[int, int]:
    """``(padding, output_padding)`` that make a transposed convolution scale sizes exactly.

    Output size is (H-1)S - 2P + K + output_padding; asking for exactly S*H gives
    output_padding - 2P = S - K, solved with the smallest P >= 0 (output_padding < S).
    """
    padding = max(0, -(-(kernel_size - scale) // 2))
    output_padding = 2 * padding - (kernel_size - scale)
    if not 0 <= output_padding < scale:
        raise ValueError(f"a transposed convolution with kernel {kernel_size} cannot up-sample "
                         f"exactly x{scale}")
    return padding, output_padding


def make_upsampler(in_channels: int, out_channels: int, scale: int, mode: str = "transposed",
                   kernel_size: int | None = None) -> nn.Module:
    """A layer taking (N, in, H, W) to (N, out, scale*H, scale*W), three ways:

    - ``"transposed"``: a learned transposed convolution, kernel ``2*scale`` unless
      ``kernel_size`` says otherwise (a kernel not divisible by the stride overlaps unevenly
      and draws a checkerboard); bilinear-initialised when it maps channels to themselves.
    - ``"bilinear"``: fixed bilinear interpolation (plus a 1x1 convolution if the channel
      count changes).
    - ``"resize-conv"``: bilinear resize, then a learned 3x3 convolution; every output pixel
      sees the same number of inputs, so no checkerboard.
    """
    if mode == "transposed":
        kernel_size = kernel_size or 2 * scale
        padding, output_padding = transposed_padding(kernel_size, scale)
        layer = nn.ConvTranspose2d(in_channels, out_channels, kernel_size, stride=scale,
                                   padding=padding, output_padding=output_padding, bias=False,
                                   device="cpu")
        if in_channels == out_channels:
            init.bilinear_(layer.weight.data)
        return layer
    if mode == "bilinear":
        resize = nn.Upsample(scale_factor=scale, mode="bilinear", align_corners=False)
        if in_channels == out_channels:
            return resize
        return nn.Sequential(resize, nn.Conv2d(in_channels, out_channels, 1, device="cpu"))
    if mode == "resize-conv":
        return nn.Sequential(nn.Upsample(scale_factor=scale, mode="bilinear",
                                         align_corners=False),
                             nn.Conv2d(in_channels, out_channels, 3, padding=1, device="cpu"))
    raise ValueError(f"unknown upsample mode {mode!r}: expected one of {UPSAMPLE_MODES}")


def check_image(where: str, x, in_channels: int, stride: int) -> None:
    """Segmenter input: (N, in_channels, H, W) with H and W multiples of the output stride."""
    check_input(where, x, channels=in_channels)
    height, width = x.shape[2:]
    if height % stride or width % stride:
        raise ValueError(f"{where}: image height and width must be multiples of {stride} (the "
                         f"encoder's output stride), got {height}x{width}")
