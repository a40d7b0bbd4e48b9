"""An image classifier on the segmenters' encoder, and how it becomes fully convolutional.

The FCN of Long et al. starts from a classification network: convolutions and poolings
(the encoder), then fully connected layers fc6, fc7 and a class score layer. This module
builds that network at toy size, with names chosen so that the FCN is a renaming of it:

    Classifier                                     FCN (minifcn.models.fcn)
    encoder (five stages, output stride 32)        encoder (the same modules, same keys)
    flatten: (N, 128, 3, 3) -> (N, 1152)           -
    fc6 = Linear(128*3*3, head), ReLU, Dropout     fc6 = Conv2d(128, head, 3, padding=1), ...
    fc7 = Linear(head, head), ReLU, Dropout        fc7 = Conv2d(head, head, 1), ...
    score_fr = Linear(head, C)                     score_fr = Conv2d(head, C, 1)

A ``Linear(C*h*w, F)`` reading a flattened (C, h, w) map computes, for each output, a dot
product of an (C, h, w) kernel with the map: that is a ``Conv2d(C, F, (h, w))`` evaluated
at the one position where the kernel fits. Its weight (F, C*h*w), reshaped to
(F, C, h, w), IS the convolution's weight (Flatten orders features (C, H, W), row-major,
as NCHW stores them). A later ``Linear(F, G)`` reads a vector, a 1x1 map: a
``Conv2d(F, G, 1)`` with the weight reshaped to (G, F, 1, 1). :func:`convolutionalize` does
exactly this and nothing else: no retraining, the same numbers in a new shape.

The converted network accepts any image size (multiple of 32): on a larger image its fc6
slides over the pool5 map, and the output is a map of class scores, one per 3 x 3 window of
pool5, i.e. one per 96 x 96 window of the image at stride 32, computed in one pass with the
encoder's work shared between overlapping windows.

Padding, the one difference from FCN's fc6: the converted fc6 has no padding, so it only
scores windows that lie wholly inside the image (a 64 x 64 image gives a 2 x 2 pool5 map
where no 3 x 3 window fits). FCN's fc6 pads by 1 so that its score map keeps the pool5 map's
size, H/32 x W/32, which its up-sampling layers need; at the border it then scores windows
whose missing cells are zero. Same weights, same key names: ``FCN.from_classifier`` copies
them over. (Also not a pixel-exact sliding window: each 96 x 96 crop run alone pads its own
border with zeros inside the encoder, where the big image has real neighbours; the dense
map equals the classifier applied to each 3 x 3 window of the big image's pool5 map, to
float rounding, and is close to, not equal to, the classifier run on each pixel crop.)
"""

from __future__ import annotations

from .. import backend, nn
from ..backend import to_numpy
from ..checks import check_input
from .common import DEFAULT_WIDTHS, Encoder

__all__ = ["Classifier", "ConvolutionalClassifier", "classifier", "convolutionalize",
           "transfer_to_fcn"]


class Classifier(nn.Module):
    """Encoder, flatten, fc6 and fc7 (Linear, ReLU, Dropout), and a Linear class score layer.

    Args:
        num_classes: scores produced (C).
        image_size: the side of the square images it takes; a multiple of 32. The default,
            96, makes pool5 3 x 3, the kernel of FCN's fc6, so that the classifier converts
            into FCN's fc6 exactly.
        in_channels, widths: as the segmenters' :class:`~minifcn.models.common.Encoder`.
        head_channels: features of fc6 and fc7 (FCN's ``head_channels``).
        dropout: drop probability after fc6 and fc7. 0 by default: on the toy task
            (:class:`~minifcn.data.ShapeLabels`) the PyTorch twin of this classifier
            (Adam lr 3e-4, 5 epochs of 1000 images) reached 86% validation accuracy
            without dropout and 42% with 0.5 (always naming the commonest class: 36%).
            The Dropout layers stay, so that the names match FCN's fc6 and fc7 (Conv2d,
            ReLU, Dropout).

    Shapes: x (N, in_channels, image_size, image_size) -> scores (N, C).
    """

    def __init__(self, num_classes: int = 3, image_size: int = 96, in_channels: int = 3,
                 widths=DEFAULT_WIDTHS, head_channels: int = 128, dropout: float = 0.0,
                 device: str | None = None, dtype=None):
        super().__init__()
        self.encoder = Encoder(in_channels, widths)
        stride = self.encoder.stride
        if not isinstance(image_size, int) or image_size < stride or image_size % stride:
            raise ValueError(f"Classifier: image_size must be a positive multiple of {stride} "
                             f"(the encoder's output stride), got {image_size!r}")
        self.num_classes, self.in_channels = num_classes, in_channels
        self.image_size, self.head_channels, self.dropout = image_size, head_channels, dropout
        side = self.pool5_size
        self.flatten = nn.Flatten()
        self.fc6 = nn.Sequential(nn.Linear(self.encoder.widths[-1] * side * side,
                                           head_channels, device="cpu"),
                                 nn.ReLU(), nn.Dropout(dropout))
        self.fc7 = nn.Sequential(nn.Linear(head_channels, head_channels, device="cpu"),
                                 nn.ReLU(), nn.Dropout(dropout))
        self.score_fr = nn.Linear(head_channels, num_classes, device="cpu")
        self.to(device or backend.default_device(), dtype)

    @property
    def pool5_size(self) -> int:
        """The side of the last feature map, which fc6 reads whole: image_size / 32."""
        return self.image_size // self.encoder.stride

    def forward(self, x):
        where = f"Classifier({self.image_size}x{self.image_size})"
        check_input(where, x, channels=self.in_channels)
        if tuple(x.shape[2:]) != (self.image_size, self.image_size):
            raise ValueError(f"{where}: its fully connected layers take images of exactly "
                             f"{self.image_size}x{self.image_size}, got x of shape "
                             f"{tuple(x.shape)}; convolutionalize(classifier) takes any size")
        features = self.encoder(x)
        return self.score_fr(self.fc7(self.fc6(self.flatten(features.pooled[-1]))))

    def backward(self, dy):
        d_pool5 = self.flatten.backward(self.fc6.backward(self.fc7.backward(
            self.score_fr.backward(dy))))
        return self.encoder.backward({len(self.encoder.widths) - 1: d_pool5})


class ConvolutionalClassifier(nn.Module):
    """A classifier whose fully connected layers have become convolutions
    (:func:`convolutionalize`): encoder, fc6, fc7, score_fr, the classifier's names and keys.

    Shapes: x (N, in_channels, H, W), H and W multiples of 32 and at least the classifier's
    image size -> scores (N, C, H/32 - k + 1, W/32 - k + 1), k = the classifier's pool5
    side; at the classifier's own image size, (N, C, 1, 1).
    """

    def __init__(self, encoder: Encoder, fc6: nn.Module, fc7: nn.Module, score_fr: nn.Module,
                 in_channels: int, image_size: int):
        super().__init__()
        self.encoder, self.fc6, self.fc7, self.score_fr = encoder, fc6, fc7, score_fr
        self.in_channels, self.image_size = in_channels, image_size
        self.num_classes = score_fr.out_channels

    def forward(self, x):
        where = f"ConvolutionalClassifier(windows of {self.image_size}x{self.image_size})"
        check_input(where, x, channels=self.in_channels)
        height, width = x.shape[2:]
        stride = self.encoder.stride
        if height % stride or width % stride or min(height, width) < self.image_size:
            raise ValueError(f"{where}: image height and width must be multiples of {stride} "
                             f"and at least {self.image_size} (one window), got "
                             f"{height}x{width}")
        features = self.encoder(x)
        return self.score_fr(self.fc7(self.fc6(features.pooled[-1])))

    def backward(self, dy):
        d_pool5 = self.fc6.backward(self.fc7.backward(self.score_fr.backward(dy)))
        return self.encoder.backward({len(self.encoder.widths) - 1: d_pool5})


def _linear_as_conv(linear: nn.Linear, channels: int, kernel: tuple[int, int]) -> nn.Conv2d:
    """The Conv2d computing ``linear`` on a (channels, *kernel) map it reads whole."""
    weight = to_numpy(linear.weight.data)
    conv = nn.Conv2d(channels, linear.out_features, kernel, bias=linear.bias is not None,
                     device="cpu", dtype=weight.dtype)
    state = {"weight": weight.reshape(linear.out_features, channels, *kernel)}
    if linear.bias is not None:
        state["bias"] = to_numpy(linear.bias.data)
    conv.load_state_dict(state)
    conv.weight.requires_grad = linear.weight.requires_grad
    if linear.bias is not None:
        conv.bias.requires_grad = linear.bias.requires_grad
    return conv


# Layers that act on each number alone (or return it), the same on a vector and on a map,
# and how to make a fresh one like a given one. (Dropout2d is not among them: it drops
# whole channels of a map but single numbers of a vector.)
_ELEMENTWISE = {nn.ReLU: lambda m: nn.ReLU(),
                nn.LeakyReLU: lambda m: nn.LeakyReLU(m.negative_slope),
                nn.Dropout: lambda m: nn.Dropout(m.p),
                nn.Identity: lambda m: nn.Identity()}


def _convert(module: nn.Module, reads, where: str):
    """``(module on maps, what the next layer reads)``. ``reads`` is ``(C, h, w)``, the map
    a Linear reads whole (flattened), or ``None`` once a Linear has made it a vector."""
    if isinstance(module, nn.Linear):
        channels, kernel = (reads[0], reads[1:]) if reads else (module.in_features, (1, 1))
        if channels * kernel[0] * kernel[1] != module.in_features:
            raise ValueError(f"{where}: {module!r} reads {module.in_features} features but "
                             f"the map before it holds {channels}x{kernel[0]}x{kernel[1]}")
        return _linear_as_conv(module, channels, kernel), None
    if isinstance(module, nn.Sequential):
        converted = []
        for child in module:
            child, reads = _convert(child, reads, where)
            converted.append(child)
        return nn.Sequential(*converted), reads
    if type(module) in _ELEMENTWISE:
        return _ELEMENTWISE[type(module)](module), reads
    raise TypeError(f"{where}: no convolutional form known for {type(module).__name__}; "
                    f"expected Linear, Sequential or an elementwise layer")


def convolutionalize(model: Classifier) -> ConvolutionalClassifier:
    """The fully convolutional network computing what ``model`` computes (Long et al. 2015).

    fc6, the Linear that reads the flattened (C, k, k) pool5 map, becomes a
    ``Conv2d(C, F, k)`` without padding; every Linear after it a 1x1 ``Conv2d``; weights
    reshaped (copied), not retrained; ReLU and dropout kept. The encoder is copied. The
    result has the classifier's state_dict keys (fc weights now 4-D) and is on its device
    and dtype, in its training mode.

    On a ``model.image_size`` image it returns the classifier's scores as (N, C, 1, 1);
    on a larger one a map of class scores, one per window (see the module docstring).
    """
    where = "convolutionalize"
    if not isinstance(model, Classifier):
        raise TypeError(f"{where}: expected a minifcn Classifier (build_model('classifier', "
                        f"...)), got {type(model).__name__}")
    widths = model.encoder.widths
    encoder = Encoder(model.in_channels, widths)
    encoder.load_state_dict({k: to_numpy(v) for k, v in model.encoder.state_dict().items()})
    reads = (widths[-1], model.pool5_size, model.pool5_size)  # what flatten hands fc6
    fc6, reads = _convert(model.fc6, reads, where)
    fc7, reads = _convert(model.fc7, reads, where)
    score_fr, _ = _convert(model.score_fr, reads, where)
    net = ConvolutionalClassifier(encoder, fc6, fc7, score_fr, model.in_channels,
                                  model.image_size)
    dtype = next(iter(model.parameters())).dtype
    return net.to(model.device, dtype).train(model.training)


def transfer_to_fcn(model: Classifier, fcn, keep_scores: bool = False):
    """Initialise ``fcn`` (an :class:`~minifcn.models.fcn.FCN`) from a trained classifier,
    in place, as Long et al. did: the encoder, fc6 and fc7 of the convolutionalized
    classifier are copied (same keys, same shapes); the class score layer keeps ``fcn``'s
    fresh initialisation unless ``keep_scores`` (which needs the same classes), because a
    classifier's classes (here: which shape an image shows) are not the
    segmenter's (background, circle, square, triangle). The skip and up-sampling layers
    keep theirs too. Returns the list of keys copied.

    ``ValueError`` when the two cannot match: other encoder widths or input channels, other
    fc6/fc7 width, or a classifier whose pool5 side is not FCN's fc6 kernel (3, i.e.
    ``image_size=96``).
    """
    where = "FCN.from_classifier"
    if not isinstance(model, Classifier):
        raise TypeError(f"{where}: expected a minifcn Classifier, got {type(model).__name__}")
    fc6 = fcn.fc6[0]
    differences = []
    if tuple(model.encoder.widths) != tuple(fcn.encoder.widths):
        differences.append(f"encoder widths {tuple(model.encoder.widths)} vs "
                           f"{tuple(fcn.encoder.widths)}")
    if model.in_channels != fcn.in_channels:
        differences.append(f"input channels {model.in_channels} vs {fcn.in_channels}")
    if model.head_channels != fc6.out_channels:
        differences.append(f"fc6/fc7 width {model.head_channels} vs {fc6.out_channels}")
    if (model.pool5_size,) * 2 != tuple(fc6.kernel_size):
        differences.append(f"the classifier's fc6 reads a {model.pool5_size}x"
                           f"{model.pool5_size} pool5 map ({model.image_size} px images) "
                           f"but the FCN's fc6 kernel is {fc6.kernel_size[0]}x"
                           f"{fc6.kernel_size[1]} (train the classifier on "
                           f"{fc6.kernel_size[0] * model.encoder.stride} px images)")
    if keep_scores and model.num_classes != fcn.num_classes:
        differences.append(f"keep_scores needs the same classes, got {model.num_classes} vs "
                           f"{fcn.num_classes}")
    if differences:
        raise ValueError(f"{where}: the classifier does not fit this FCN: "
                         + "; ".join(differences))
    state = {k: to_numpy(v) for k, v in convolutionalize(model).state_dict().items()
             if keep_scores or not k.startswith("score_fr.")}
    fcn.load_state_dict(state, strict=False)
    return list(state)


def classifier(num_classes: int = 3, **options) -> Classifier:
    """``Classifier(num_classes, **options)``."""
    return Classifier(num_classes, **options)
