"""SegNet (Badrinarayanan, Kendall and Cipolla, 2017) at toy width.

The decoder mirrors the encoder. Instead of learning how to up-sample, each decoder stage
*unpools*: it puts every value back at the position its encoder's max-pool took it from
(the pool indices), leaves zeros elsewhere, and lets 3x3 convolutions fill the holes. The
indices carry the encoder's exact edge positions to the decoder at the cost of a few bits
per pixel, with no skip features and no learned up-sampling weights.
"""

from __future__ import annotations

from .. import backend, nn
from .common import DEFAULT_WIDTHS, Encoder, check_image, conv_bn_relu, make_upsampler

__all__ = ["SegNet", "segnet"]


class SegNet(nn.Module):
    """Encoder-decoder with max-unpooling from the encoder's pool indices.

    Args:
        num_classes: score maps produced (C).
        in_channels: image channels.
        widths: channels of the five encoder stages (the decoder uses them in reverse).
        upsample: ``"unpool"`` (SegNet's own), or ``"transposed"``, ``"bilinear"``,
            ``"resize-conv"`` to compare other up-samplers in the same decoder.
        transposed_kernel: kernel of the x2 transposed convolutions when ``upsample`` is
            ``"transposed"``.

    Shapes: x (N, in_channels, H, W), H and W multiples of 32 -> logits (N, C, H, W).
    """

    def __init__(self, num_classes: int = 4, in_channels: int = 3, widths=DEFAULT_WIDTHS,
                 upsample: str = "unpool", transposed_kernel: int | None = None,
                 device: str | None = None, dtype=None):
        super().__init__()
        self.num_classes, self.in_channels, self.upsample = num_classes, in_channels, upsample
        self.encoder = Encoder(in_channels, widths, keep_indices=upsample == "unpool")
        for k in reversed(range(len(widths))):
            width, target = widths[k], widths[max(k - 1, 0)]
            if upsample == "unpool":
                up = nn.MaxUnpool2d(2, 2)
            else:
                up = make_upsampler(width, width, 2, upsample, transposed_kernel)
            self.add_module(f"up{k + 1}", up)
            layers = conv_bn_relu(width, width) + (conv_bn_relu(width, target) if k else [])
            self.add_module(f"dec{k + 1}", nn.Sequential(*layers))
        self.classifier = nn.Conv2d(widths[0], num_classes, 3, padding=1, device="cpu")
        self.to(device or backend.default_device(), dtype)

    def decoder_stages(self):
        """(up-sampler, convolutions) from the coarsest stage to the finest."""
        return [(getattr(self, f"up{k}"), getattr(self, f"dec{k}"))
                for k in range(len(self.encoder.widths), 0, -1)]

    def forward(self, x):
        check_image("SegNet", x, self.in_channels, self.encoder.stride)
        last = len(self.encoder.widths) - 1
        features = self.encoder(x, before_pool=(), pooled=(last,))
        y = features.pooled[last]
        for k, (up, dec) in zip(reversed(range(len(self.encoder.widths))),
                                self.decoder_stages(), strict=True):
            if self.upsample == "unpool":
                y = up(y, features.indices[k], features.sizes[k])
                features.indices[k] = None  # used: let go
            else:
                y = up(y)
            y = dec(y)
        return self.classifier(y)

    def backward(self, dy):
        d = self.classifier.backward(dy)
        for up, dec in reversed(self.decoder_stages()):
            d = up.backward(dec.backward(d))
        return self.encoder.backward({len(self.encoder.widths) - 1: d})


def segnet(num_classes: int = 4, **options) -> SegNet:
    """``SegNet(num_classes, **options)``."""
    return SegNet(num_classes, **options)
