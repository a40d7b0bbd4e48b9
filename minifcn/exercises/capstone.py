"""The capstone: FCN-8s built from YOUR layers, wherever you have written them.

    layers = load_layers("my_minifcn")         # what your files provide, and what they don't
    model = build_model("fcn8s")
    rows = use_layers(model, layers)          # your functions inside the model's layers
    criterion = layers.criterion(CrossEntropyLoss(ignore_index=255))

or, from the command line, ``minifcn train --layers my_minifcn/``.

Each layer of the model is replaced by a thin layer that holds the same parameters and
buffers (so ``state_dict`` keys and checkpoints are unchanged) and calls your
``*_forward`` / ``*_backward`` functions where minifcn's layer calls its own. Reading
these small classes shows exactly how a functional pair becomes a layer. A layer whose
exercise file is missing or still raises ``NotImplementedError`` stays minifcn's, and
:func:`use_layers` says so.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass, field

from .. import backend, nn
from ..backend import get_array_module, np
from ..functional.upsample import upsample_output_size
from .framework import CheckFailed, Learner, NotImplementedYet, load_learner_file

__all__ = ["LAYER_EXERCISES", "LearnerLayers", "load_layers", "use_layers"]


def _probe_relu(f):
    y, cache = f.relu_forward(np.array([[-1.0, 2.0]]))
    f.relu_backward(np.ones_like(y), cache)


def _probe_conv2d(f):
    y, cache = f.conv2d_forward(np.ones((1, 1, 3, 3)), np.ones((1, 1, 2, 2)), np.zeros(1))
    f.conv2d_backward(np.ones_like(np.asarray(y)), cache)


def _probe_max_pool2d(f):
    y, cache = f.max_pool2d_forward(np.arange(16.0).reshape(1, 1, 4, 4), 2, 2)
    f.max_pool2d_backward(np.ones_like(np.asarray(y)), cache)


def _probe_dropout(f):
    x = np.ones((1, 1, 2, 2))
    y, cache = f.dropout_forward(x, 0.5, True, mask=np.ones(x.shape, dtype=bool))
    f.dropout_backward(np.ones_like(np.asarray(y)), cache)


def _probe_batch_norm(f):
    x = np.arange(8.0).reshape(2, 1, 2, 2)
    y, cache = f.batch_norm_forward(x, np.ones(1), np.zeros(1), np.zeros(1), np.ones(1),
                                    True, 0.1, 1e-5)
    f.batch_norm_backward(np.ones_like(np.asarray(y)), cache)


def _probe_conv_transpose2d(f):
    y, cache = f.conv_transpose2d_forward(np.ones((1, 1, 2, 2)), np.ones((1, 1, 2, 2)),
                                          np.zeros(1), 2)
    f.conv_transpose2d_backward(np.ones_like(np.asarray(y)), cache)


def _probe_bilinear_kernel(f):
    f.bilinear_kernel(4)
    f.bilinear_weight(1, 4)


def _probe_upsample(f):
    y, cache = f.upsample_forward(np.ones((1, 1, 2, 2)), (4, 4), "bilinear", False)
    f.upsample_backward(np.ones_like(np.asarray(y)), cache)


def _probe_cross_entropy(f):
    loss, cache = f.cross_entropy_forward(np.zeros((1, 2, 2, 2)), np.zeros((1, 2, 2), int),
                                          None, 255)
    f.cross_entropy_backward(1.0, cache)


def _probe_skip(f):
    y, cache = f.crop_forward(np.ones((1, 1, 4, 4)), (2, 2), f.center_crop_offset((4, 4),
                                                                                 (2, 2)))
    f.crop_backward(np.ones_like(np.asarray(y)), cache)
    y, cache = f.add_forward(np.ones(2), np.ones(2))
    f.add_backward(np.ones(2), cache)


# exercise -> (its functions, a tiny call of each that tells a stub from a real one)
LAYER_EXERCISES: dict[str, tuple[tuple[str, ...], Callable]] = {
    "relu": (("relu_forward", "relu_backward"), _probe_relu),
    "conv2d": (("conv2d_forward", "conv2d_backward"), _probe_conv2d),
    "max_pool2d": (("max_pool2d_forward", "max_pool2d_backward"), _probe_max_pool2d),
    "dropout": (("dropout_forward", "dropout_backward"), _probe_dropout),
    "batch_norm": (("batch_norm_forward", "batch_norm_backward"), _probe_batch_norm),
    "conv_transpose2d": (("conv_transpose2d_forward", "conv_transpose2d_backward"),
                         _probe_conv_transpose2d),
    "bilinear_kernel": (("bilinear_kernel", "bilinear_weight"), _probe_bilinear_kernel),
    "upsample": (("upsample_forward", "upsample_backward"), _probe_upsample),
    "cross_entropy": (("cross_entropy_forward", "cross_entropy_backward"),
                      _probe_cross_entropy),
    "skip": (("center_crop_offset", "crop_forward", "crop_backward", "add_forward",
              "add_backward"), _probe_skip),
}


@dataclass
class LearnerLayers:
    """What a folder of exercise files provides.

    ``functions``: name -> your function, from every exercise that is complete enough to
    run; ``sources``: exercise -> where its layers come from, in words.
    """

    folder: str
    functions: dict[str, Callable] = field(default_factory=dict)
    sources: dict[str, str] = field(default_factory=dict)

    def has(self, exercise: str) -> bool:
        return LAYER_EXERCISES[exercise][0][0] in self.functions

    @property
    def yours(self) -> Learner:
        return Learner(self.functions, self.folder)

    def criterion(self, criterion: nn.CrossEntropyLoss) -> nn.Module:
        """``criterion`` computed by your cross_entropy functions, where you have them."""
        if not self.has("cross_entropy"):
            return criterion
        if criterion.reduction != "mean" or criterion.label_smoothing:
            raise ValueError("--layers: your cross_entropy computes the mean loss without "
                             "label smoothing; this run asks for more")
        return YourCrossEntropyLoss(criterion, self.yours)


def load_layers(folder: str) -> LearnerLayers:
    """Read every layer exercise's file in ``folder``; keep the ones that run."""
    if not os.path.isdir(folder):
        raise ValueError(f"--layers: {folder} is not a folder; it should hold your exercise "
                         f"files (minifcn exercises start NAME writes them there)")
    layers = LearnerLayers(folder)
    for exercise, (names, probe) in LAYER_EXERCISES.items():
        path = os.path.join(folder, f"{exercise}.py")
        if not os.path.isfile(path):
            layers.sources[exercise] = "minifcn's (no file yet)"
            continue
        try:
            functions = load_learner_file(path, names)
            probe(Learner(functions, path))
        except NotImplementedYet as stub:
            layers.sources[exercise] = f"minifcn's ({stub})"
            continue
        except CheckFailed as failure:
            layers.sources[exercise] = f"minifcn's (your file fails to run: {failure.message})"
            continue
        layers.functions.update(functions)
        layers.sources[exercise] = f"yours ({path})"
    return layers


# --- your functions inside layers ------------------------------------------------------------

class _Yours(nn.Module):
    """A layer that computes with the learner's functions; ``f`` calls them."""

    def __init__(self, layer: nn.Module, f: Learner):
        super().__init__()
        self.training = layer.training
        object.__setattr__(self, "f", f)
        self._cache = None

    def _share(self, layer: nn.Module, *names: str) -> None:
        """Hold ``layer``'s parameters and buffers under the same names (same state_dict)."""
        for name in names:
            value = getattr(layer, name)
            if name in layer._buffers:
                self.register_buffer(name, value)
            else:
                setattr(self, name, value)

    def _add_grad(self, param, grad) -> None:
        if param is not None and param.requires_grad and grad is not None:
            param.grad += grad

    def extra_repr(self) -> str:
        return "your functions"


def _data(param):
    return None if param is None else param.data


class YourConv2d(_Yours):
    def __init__(self, layer: nn.Conv2d, f: Learner):
        super().__init__(layer, f)
        self._share(layer, "weight", "bias")
        self.stride, self.padding, self.dilation = layer.stride, layer.padding, layer.dilation

    def forward(self, x):
        y, self._cache = self.f.conv2d_forward(x, self.weight.data, _data(self.bias),
                                               self.stride, self.padding, self.dilation)
        return y

    def backward(self, dy):
        dx, dweight, dbias = self.f.conv2d_backward(dy, self._cache)
        self._add_grad(self.weight, dweight)
        self._add_grad(self.bias, dbias)
        return dx


class YourConvTranspose2d(YourConv2d):
    def __init__(self, layer: nn.ConvTranspose2d, f: Learner):
        super().__init__(layer, f)
        self.output_padding = layer.output_padding

    def forward(self, x):
        y, self._cache = self.f.conv_transpose2d_forward(
            x, self.weight.data, _data(self.bias), self.stride, self.padding,
            self.output_padding)
        return y

    def backward(self, dy):
        dx, dweight, dbias = self.f.conv_transpose2d_backward(dy, self._cache)
        self._add_grad(self.weight, dweight)
        self._add_grad(self.bias, dbias)
        return dx


class YourMaxPool2d(_Yours):
    def __init__(self, layer: nn.MaxPool2d, f: Learner):
        super().__init__(layer, f)
        self.kernel_size, self.stride, self.padding = (layer.kernel_size, layer.stride,
                                                       layer.padding)

    def forward(self, x):
        y, self._cache = self.f.max_pool2d_forward(x, self.kernel_size, self.stride,
                                                   self.padding)
        return y

    def backward(self, dy):
        return self.f.max_pool2d_backward(dy, self._cache)


class YourReLU(_Yours):
    def forward(self, x):
        y, self._cache = self.f.relu_forward(x)
        return y

    def backward(self, dy):
        return self.f.relu_backward(dy, self._cache)


class YourDropout(_Yours):
    """The mask is drawn exactly as minifcn's Dropout draws it (same generator, same call),
    then handed to your dropout_forward: the same seed gives the same masks."""

    def __init__(self, layer: nn.Dropout, f: Learner):
        super().__init__(layer, f)
        self.p, self.generator = layer.p, layer.generator

    def forward(self, x):
        mask = None
        if self.training and self.p > 0:
            mask = self.generator.random(x.shape, "float32", xp=get_array_module(x)) >= self.p
        y, self._cache = self.f.dropout_forward(x, self.p, self.training, mask=mask)
        return y

    def backward(self, dy):
        return self.f.dropout_backward(dy, self._cache)


class YourBatchNorm2d(_Yours):
    """Your batch_norm_forward updates the running statistics in place, as PyTorch's
    functional batch_norm does; the layer keeps the count and the momentum rule."""

    def __init__(self, layer: nn.BatchNorm2d, f: Learner):
        super().__init__(layer, f)
        self._share(layer, "weight", "bias", "running_mean", "running_var",
                    "num_batches_tracked")
        self.momentum, self.eps = layer.momentum, layer.eps

    def forward(self, x):
        momentum = 0.0
        if self.training:
            self.num_batches_tracked[...] += 1
            momentum = (1.0 / float(self.num_batches_tracked) if self.momentum is None
                        else float(self.momentum))
        y, self._cache = self.f.batch_norm_forward(
            x, _data(self.weight), _data(self.bias), self.running_mean, self.running_var,
            self.training, momentum, float(self.eps))
        return y

    def backward(self, dy):
        dx, dweight, dbias = self.f.batch_norm_backward(dy, self._cache)
        self._add_grad(self.weight, dweight)
        self._add_grad(self.bias, dbias)
        return dx


class YourUpsample(_Yours):
    """Bilinear up-sampling to a size, or by whole-number factors (where sampling with
    ``H / OH`` is what PyTorch does too)."""

    def __init__(self, layer: nn.Upsample, f: Learner):
        super().__init__(layer, f)
        self.size, self.scale_factor = layer._size, layer._scale_factor
        self.align_corners = layer.align_corners

    def forward(self, x):
        size, _ = upsample_output_size(x.shape[2:], self.size, self.scale_factor)
        y, self._cache = self.f.upsample_forward(x, size, "bilinear", self.align_corners)
        return y

    def backward(self, dy):
        return self.f.upsample_backward(dy, self._cache)


class YourCrop(_Yours):
    def __init__(self, layer: nn.Crop, f: Learner):
        super().__init__(layer, f)
        self.offset = layer.offset

    def forward(self, x, reference):
        size = tuple(reference.shape[-2:]) if backend.is_array(reference) else tuple(reference)
        offset = self.offset or self.f.center_crop_offset(tuple(x.shape[-2:]), size)
        y, self._cache = self.f.crop_forward(x, size, offset)
        return y

    def backward(self, dy):
        return self.f.crop_backward(dy, self._cache)


class YourAdd(_Yours):
    def forward(self, *xs):
        y, self._cache = self.f.add_forward(*xs)
        return y

    def backward(self, dy):
        return tuple(self.f.add_backward(dy, self._cache))


class YourCrossEntropyLoss(_Yours):
    def __init__(self, criterion: nn.CrossEntropyLoss, f: Learner):
        super().__init__(criterion, f)
        self.weight, self.ignore_index = criterion.weight, criterion.ignore_index

    def forward(self, logits, target):
        loss, self._cache = self.f.cross_entropy_forward(logits, target, self.weight,
                                                         self.ignore_index)
        self._target = target
        return loss

    def backward(self, dloss=1.0):
        return self.f.cross_entropy_backward(dloss, self._cache)

    @property
    def mean_denominator(self):
        """What the mean divided by (the pixels that count, or their classes' summed
        weights), as minifcn's loss says it for data-parallel runs: from the targets, so
        that your cache may hold anything."""
        xp = get_array_module(self._target)
        valid = self._target != self.ignore_index
        if self.weight is None:
            return valid.sum()
        return xp.where(valid, self.weight[xp.where(valid, self._target, 0)], 0.0).sum()


def _replacement(module: nn.Module, layers: LearnerLayers):
    """(exercise, the layer computed with your functions) for ``module``, or None when it
    stays minifcn's (no such exercise done, or options your functions do not take)."""
    f = layers.yours
    if type(module) is nn.Conv2d and layers.has("conv2d"):
        if isinstance(module.padding, str):
            return None
        return "conv2d", YourConv2d(module, f)
    if type(module) is nn.ConvTranspose2d and layers.has("conv_transpose2d"):
        if module.dilation != (1, 1):
            return None
        return "conv_transpose2d", YourConvTranspose2d(module, f)
    if type(module) is nn.MaxPool2d and layers.has("max_pool2d"):
        if module.return_indices or module.ceil_mode or module.dilation not in (1, (1, 1)):
            return None
        return "max_pool2d", YourMaxPool2d(module, f)
    if type(module) is nn.ReLU and layers.has("relu"):
        return "relu", YourReLU(module, f)
    if type(module) is nn.Dropout and layers.has("dropout"):
        return "dropout", YourDropout(module, f)
    if type(module) is nn.BatchNorm2d and layers.has("batch_norm"):
        if module.weight is None or module.running_mean is None:
            return None
        return "batch_norm", YourBatchNorm2d(module, f)
    if (isinstance(module, nn.Upsample) and layers.has("upsample") and module.mode == "bilinear"
            and all(float(s).is_integer() for s in module._scale_factor or ())):
        return "upsample", YourUpsample(module, f)
    if type(module) is nn.Crop and layers.has("skip"):
        return "skip", YourCrop(module, f)
    if type(module) is nn.Add and layers.has("skip"):
        return "skip", YourAdd(module, f)
    return None


def use_layers(model: nn.Module, layers: LearnerLayers) -> list[tuple[str, str, str]]:
    """Put your functions into ``model``'s layers, in place.

    Returns one row per layer: (its name in the model, its type, "yours" or "minifcn's").
    Transposed convolutions that minifcn initialised as bilinear up-samplers are
    re-initialised with your ``bilinear_weight`` where you have written it.
    """
    rows = []
    for parent_name, parent in list(model.named_modules()):
        for name, child in list(parent._modules.items()):
            path = f"{parent_name}.{name}" if parent_name else name
            if child._modules:
                continue  # a container: its own children are visited in turn
            if (isinstance(child, nn.ConvTranspose2d) and layers.has("bilinear_kernel")
                    and _is_bilinear(child)):
                C, _, K, _ = child.weight.shape
                host = np.asarray(layers.yours.bilinear_weight(C, K), dtype=child.weight.dtype)
                child.weight.data[...] = backend.to_device(host, backend.device_of(
                    child.weight.data))
            found = _replacement(child, layers)
            if found is None:
                rows.append((path, type(child).__name__, "minifcn's"))
                continue
            # In place of the old entry, keeping the order Sequential runs its layers in.
            parent._modules[name] = found[1]
            object.__setattr__(parent, name, found[1])
            rows.append((path, type(child).__name__, f"yours ({found[0]})"))
    return rows


def _is_bilinear(layer: nn.ConvTranspose2d) -> bool:
    """True when the layer's weight is still minifcn's bilinear initialisation."""
    weight = backend.to_numpy(layer.weight.data)
    if weight.shape[0] != weight.shape[1] or weight.shape[2] != weight.shape[3]:
        return False
    expected = np.zeros_like(weight)
    nn.init.bilinear_(expected)
    return bool(np.array_equal(weight, expected))


def layers_preparer(folder: str) -> Callable:
    """What ``minifcn train --layers FOLDER`` hands the training loop: ``prepare(model,
    criterion, log) -> criterion``, which puts the learner's functions into ``model``'s
    layers (and the loss) and logs whose code computes each. The folder is read once,
    here, so that a missing folder fails before any training."""
    from .tasks.capstone import layer_table

    layers = load_layers(folder)

    def prepare(model: nn.Module, criterion, log):
        rows = use_layers(model, layers)
        log(f"layers from {folder}:")
        for exercise, source in layers.sources.items():
            log(f"  {exercise:<18}{source}")
        loss_source = "yours" if layers.has("cross_entropy") else "minifcn's"
        log(f"  {'the loss':<18}{loss_source}")
        log("the model's layers:\n" + layer_table(rows))
        return layers.criterion(criterion)

    return prepare
