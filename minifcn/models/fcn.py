"""FCN-32s, FCN-16s and FCN-8s (Long, Shelhamer and Darrell, 2015) at toy width.

A classification network made fully convolutional: the encoder's stride-32 features go
through "fc6" and "fc7" (convolutions standing in for the fully connected layers) and a 1x1
"score" convolution giving one coarse map per class. Then:

- FCN-32s up-samples that coarse map x32 in one step: every 32x32 block of the output is
  decided by one coarse pixel and its neighbours, so edges come out blobby.
- FCN-16s first up-samples x2, adds a score map computed from pool4 (stride 16, finer
  detail), then up-samples x16.
- FCN-8s does the same once more with pool3 (stride 8), then up-samples x8.

Layer names follow the original Caffe/PyTorch ports (``score_fr``, ``upscore2``,
``score_pool4``, ``upscore_pool4``, ``score_pool3``, ``upscore8``) so the state_dict reads
like theirs. Where a skip map and an up-sampled map differ in placement, the skip map is
cropped at an offset computed from the layer geometry (:mod:`minifcn.models.geometry`).
"""

from __future__ import annotations

from .. import backend, nn
from .common import DEFAULT_WIDTHS, Encoder, check_image, make_upsampler
from .geometry import Geometry, chain_geometry, crop_offset

__all__ = ["FCN", "fcn8s", "fcn16s", "fcn32s"]

VARIANTS = {"32s": 32, "16s": 16, "8s": 8}


class FCN(nn.Module):
    """Fully convolutional network with FCN-32s/16s/8s decoders.

    Args:
        num_classes: score maps produced (C).
        variant: ``"32s"``, ``"16s"`` or ``"8s"``: the stride of the finest skip used.
        in_channels: image channels (3 for RGB).
        widths: channels of the five encoder stages.
        head_channels: channels of fc6 and fc7.
        dropout: drop probability after fc6 and fc7 (the paper's 0.5).
        upsample: ``"transposed"`` (learned, bilinear-initialised), ``"bilinear"`` (fixed)
            or ``"resize-conv"``; see :func:`minifcn.models.common.make_upsampler`.
        transposed_kernel: kernel of the x2 transposed convolutions (default 4); 3 makes
            the uneven overlap that draws checkerboards.

    Shapes: x (N, in_channels, H, W) with H, W multiples of 32 -> logits (N, C, H, W).
    """

    def __init__(self, num_classes: int = 4, variant: str = "8s", in_channels: int = 3,
                 widths=DEFAULT_WIDTHS, head_channels: int = 128, dropout: float = 0.5,
                 upsample: str = "transposed", transposed_kernel: int | None = None,
                 device: str | None = None, dtype=None):
        super().__init__()
        if variant not in VARIANTS:
            raise ValueError(f"FCN: variant must be one of {list(VARIANTS)}, got {variant!r}")
        self.variant, self.num_classes, self.in_channels = variant, num_classes, in_channels
        # kept so that from_coarser can build a finer twin with the same settings
        self.head_channels, self.dropout = head_channels, dropout
        self.upsample, self.transposed_kernel = upsample, transposed_kernel
        C = num_classes
        self.encoder = Encoder(in_channels, widths)
        self.fc6 = nn.Sequential(nn.Conv2d(widths[-1], head_channels, 3, padding=1,
                                           device="cpu"),
                                 nn.ReLU(), nn.Dropout(dropout))
        self.fc7 = nn.Sequential(nn.Conv2d(head_channels, head_channels, 1, device="cpu"),
                                 nn.ReLU(), nn.Dropout(dropout))
        self.score_fr = nn.Conv2d(head_channels, C, 1, device="cpu")

        final_scale = VARIANTS[variant]
        if final_scale <= 16:
            self.upscore2 = make_upsampler(C, C, 2, upsample, transposed_kernel)
            self.score_pool4 = nn.Conv2d(widths[3], C, 1, device="cpu")
            self.crop_pool4 = nn.Crop(offset=self._skip_offset(4, ["upscore2"]))
            self.fuse_pool4 = nn.Add()
        if final_scale <= 8:
            self.upscore_pool4 = make_upsampler(C, C, 2, upsample, transposed_kernel)
            self.score_pool3 = nn.Conv2d(widths[2], C, 1, device="cpu")
            self.crop_pool3 = nn.Crop(offset=self._skip_offset(3, ["upscore2",
                                                                   "upscore_pool4"]))
            self.fuse_pool3 = nn.Add()
        self.add_module(f"upscore{final_scale}", make_upsampler(C, C, final_scale, upsample))
        self.to(device or backend.default_device(), dtype)

    def _skip_offset(self, stage: int, up_path: list[str]) -> tuple[int, int]:
        """Where to crop the score map of pool<stage> so it lies on the up-sampled map."""
        encoder_layers = [layer for pair in self.encoder.stages() for layer in pair]
        skip = chain_geometry(encoder_layers[: 2 * stage], Geometry())
        coarse = chain_geometry(encoder_layers + [self.fc6, self.fc7, self.score_fr])
        up = chain_geometry([getattr(self, name) for name in up_path], coarse)
        try:
            offset = crop_offset(big=skip, small=up)
        except ValueError:
            # A transposed kernel not divisible by its stride (the checkerboard study) shifts
            # the up-sampled map by half a pixel; the maps have equal sizes, so the skip is
            # added uncropped and the shift stays: one more flaw of such kernels.
            offset = 0
        return (offset, offset)

    @classmethod
    def from_classifier(cls, classifier, num_classes: int, variant: str = "8s",
                        keep_scores: bool = False, **options) -> FCN:
        """An FCN started from a trained :class:`~minifcn.models.classifier.Classifier`, as
        Long et al. started from VGG: its encoder, fc6 and fc7 convolutionalized and copied
        (:func:`~minifcn.models.classifier.transfer_to_fcn`), the class score, skip and
        up-sampling layers freshly initialised (``keep_scores`` copies the class scores
        too, for the same classes). Built with the classifier's widths, head, in_channels,
        dropout, device and dtype unless ``options`` say otherwise."""
        from .classifier import transfer_to_fcn

        settings = dict(in_channels=classifier.in_channels, widths=classifier.encoder.widths,
                        head_channels=classifier.head_channels, dropout=classifier.dropout,
                        device=classifier.device,
                        dtype=next(iter(classifier.parameters())).dtype)
        settings.update(options)
        fcn = cls(num_classes, variant, **settings)
        transfer_to_fcn(classifier, fcn, keep_scores=keep_scores)
        return fcn

    @classmethod
    def from_coarser(cls, coarser: FCN, variant: str | None = None) -> FCN:
        """A finer FCN started from a trained coarser one, as Long et al. trained theirs in
        stages: FCN-16s from FCN-32s, FCN-8s from FCN-16s (``variant`` defaults to the next
        finer one). Every layer the two share (encoder, fc6, fc7, score_fr and, from
        FCN-16s, upscore2) is copied; the new skip's score layer (score_pool4 or
        score_pool3) is zero-initialised, so the skip adds nothing at first: the finer net
        starts from its parent's coarse scores, up-sampled in smaller steps (with bilinear
        up-sampling, the parent's prediction slightly smoothed). The final up-sampling
        layer is not copied (its scale differs); a learned one starts bilinear. Built with
        the parent's settings, device and dtype; the parent is not changed.

        Shapes as :class:`FCN`. ``ValueError`` when ``variant`` is not finer than the parent's.
        """
        if not isinstance(coarser, FCN):
            raise TypeError(f"FCN.from_coarser: expected a minifcn FCN, got "
                            f"{type(coarser).__name__}")
        finer_variants = [v for v in VARIANTS if VARIANTS[v] < VARIANTS[coarser.variant]]
        if not finer_variants:
            raise ValueError(f"FCN.from_coarser: FCN-{coarser.variant} is the finest FCN; "
                             f"start FCN-16s or FCN-8s from FCN-32s or FCN-16s")
        variant = finer_variants[0] if variant is None else variant
        if variant not in finer_variants:
            raise ValueError(f"FCN.from_coarser: variant must be finer than the parent's "
                             f"{coarser.variant!r} (one of {finer_variants}), got {variant!r}")
        finer = cls(coarser.num_classes, variant, in_channels=coarser.in_channels,
                    widths=coarser.encoder.widths, head_channels=coarser.head_channels,
                    dropout=coarser.dropout, upsample=coarser.upsample,
                    transposed_kernel=coarser.transposed_kernel, device=coarser.device,
                    dtype=next(iter(coarser.parameters())).dtype)
        final = {f"upscore{scale}." for scale in VARIANTS.values()}
        own = finer.state_dict()
        shared = {key: value for key, value in coarser.state_dict().items()
                  if key in own and not any(key.startswith(prefix) for prefix in final)}
        finer.load_state_dict(shared, strict=False)
        for name in ("score_pool4", "score_pool3"):
            if hasattr(finer, name) and not hasattr(coarser, name):
                for param in getattr(finer, name).parameters():
                    param.data[...] = 0.0
        finer.train(coarser.training)
        return finer

    @property
    def final_upsampler(self) -> nn.Module:
        """The last up-sampling layer, to the input's size: ``upscore32`` (FCN-32s),
        ``upscore16`` (FCN-16s) or ``upscore8`` (FCN-8s)."""
        return getattr(self, f"upscore{VARIANTS[self.variant]}")

    def forward(self, x):
        check_image(f"FCN-{self.variant}", x, self.in_channels, self.encoder.stride)
        skips = {"32s": (4,), "16s": (3, 4), "8s": (2, 3, 4)}[self.variant]
        pooled = self.encoder(x, before_pool=(), pooled=skips).pooled
        # Each pooled map is let go once its skip has read it (freed at once under no_grad).
        scores = self.score_fr(self.fc7(self.fc6(pooled[4])))
        if self.variant != "32s":
            up = self.upscore2(scores)
            skip = self.crop_pool4(self.score_pool4(pooled[3]), up)
            pooled[3] = None
            scores = self.fuse_pool4(up, skip)
        if self.variant == "8s":
            up = self.upscore_pool4(scores)
            skip = self.crop_pool3(self.score_pool3(pooled[2]), up)
            pooled[2] = None
            scores = self.fuse_pool3(up, skip)
        return self.final_upsampler(scores)

    def backward(self, dy):
        """The forward in reverse; each skip branch returns its gradient to its pool."""
        d_scores = self.final_upsampler.backward(dy)
        d_pooled = {}
        if self.variant == "8s":
            d_up, d_skip = self.fuse_pool3.backward(d_scores)
            d_pooled[2] = self.score_pool3.backward(self.crop_pool3.backward(d_skip))
            d_scores = self.upscore_pool4.backward(d_up)
        if self.variant != "32s":
            d_up, d_skip = self.fuse_pool4.backward(d_scores)
            d_pooled[3] = self.score_pool4.backward(self.crop_pool4.backward(d_skip))
            d_scores = self.upscore2.backward(d_up)
        d_pool5 = self.fc6.backward(self.fc7.backward(self.score_fr.backward(d_scores)))
        d_pooled[4] = d_pool5
        return self.encoder.backward(d_pooled)


def fcn32s(num_classes: int = 4, **options) -> FCN:
    """``FCN(num_classes, variant="32s", **options)``: one x32 up-sampling, no skip."""
    return FCN(num_classes, variant="32s", **options)


def fcn16s(num_classes: int = 4, **options) -> FCN:
    """``FCN(num_classes, variant="16s", **options)``: a skip from pool4, then x16."""
    return FCN(num_classes, variant="16s", **options)


def fcn8s(num_classes: int = 4, **options) -> FCN:
    """``FCN(num_classes, variant="8s", **options)``: skips from pool4 and pool3, then x8."""
    return FCN(num_classes, variant="8s", **options)
