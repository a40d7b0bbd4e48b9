"""U-Net (Ronneberger, Fischer and Brox, 2015) over the same encoder.

Each decoder stage up-samples x2 (a transposed convolution of kernel 2s by default) and
*concatenates* the encoder features of the same resolution, so the convolutions that follow
see both the coarse "what" and the fine "where". It passes whole feature maps where SegNet
passes pool indices and FCN passes one score map per class.
"""

from __future__ import annotations

from .. import backend, nn
from .common import DEFAULT_WIDTHS, Encoder, check_image, double_conv, make_upsampler

__all__ = ["UNet", "unet"]


class UNet(nn.Module):
    """Encoder-decoder with concatenated skip features at every scale.

    Args:
        num_classes: score maps produced (C).
        in_channels: image channels.
        widths: channels of the five encoder stages; decoder stage k ends with widths[k].
        upsample: ``"transposed"``, ``"bilinear"`` or ``"resize-conv"``.
        transposed_kernel: kernel of the x2 transposed convolutions (default 4 = 2s).

    Shapes: x (N, in_channels, H, W), H and W multiples of 32 -> logits (N, C, H, W).
    """

    def __init__(self, num_classes: int = 4, in_channels: int = 3, widths=DEFAULT_WIDTHS,
                 upsample: str = "transposed", transposed_kernel: int | None = None,
                 device: str | None = None, dtype=None):
        super().__init__()
        self.num_classes, self.in_channels = num_classes, in_channels
        self.encoder = Encoder(in_channels, widths)
        self.center = double_conv(widths[-1], widths[-1])
        channels = widths[-1]
        for k in reversed(range(len(widths))):
            self.add_module(f"up{k + 1}", make_upsampler(channels, widths[k], 2, upsample,
                                                         transposed_kernel))
            self.add_module(f"cat{k + 1}", nn.Concat(dim=1))
            self.add_module(f"dec{k + 1}", double_conv(2 * widths[k], widths[k]))
            channels = widths[k]
        self.classifier = nn.Conv2d(widths[0], num_classes, 1, device="cpu")
        self.to(device or backend.default_device(), dtype)

    def decoder_stages(self):
        """(stage index, up-sampler, concatenation, convolutions), coarsest first."""
        return [(k, getattr(self, f"up{k + 1}"), getattr(self, f"cat{k + 1}"),
                 getattr(self, f"dec{k + 1}"))
                for k in reversed(range(len(self.encoder.widths)))]

    def forward(self, x):
        check_image("UNet", x, self.in_channels, self.encoder.stride)
        last = len(self.encoder.widths) - 1
        features = self.encoder(x, before_pool=range(last + 1), pooled=(last,))
        y = self.center(features.pooled[last])
        for k, up, cat, dec in self.decoder_stages():
            y = cat(up(y), features.before_pool[k])
            features.before_pool[k] = None  # merged: the skip is let go
            y = dec(y)
        return self.classifier(y)

    def backward(self, dy):
        d = self.classifier.backward(dy)
        d_skips = {}
        for k, up, cat, dec in reversed(self.decoder_stages()):
            d_up, d_skips[k] = cat.backward(dec.backward(d))
            d = up.backward(d_up)
        d_bottom = self.center.backward(d)
        return self.encoder.backward({len(self.encoder.widths) - 1: d_bottom}, d_skips)


def unet(num_classes: int = 4, **options) -> UNet:
    """``UNet(num_classes, **options)``."""
    return UNet(num_classes, **options)
