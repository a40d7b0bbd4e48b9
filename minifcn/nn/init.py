"""Weight initialisation, after ``torch.nn.init``: fill an array (or a ``Parameter``) in place.

Random values are drawn on the host with a :class:`minifcn.backend.Generator` (a fresh one
seeded from :func:`minifcn.manual_seed` when none is given) and then copied to the array's
device, so the same seed gives the same weights on the CPU and the GPU.

    init.kaiming_normal_(conv.weight, mode="fan_out", nonlinearity="relu")
    init.zeros_(conv.bias)
    init.bilinear_(up.weight)          # FCN's fixed (or starting) up-sampling filter
"""

from __future__ import annotations

import math
from numbers import Real

from .. import backend
from ..backend import Generator
from .module import Parameter

__all__ = [
    "bilinear_",
    "calculate_fan_in_and_fan_out",
    "calculate_gain",
    "kaiming_normal_",
    "kaiming_uniform_",
    "uniform_",
    "zeros_",
]

_LINEAR = ("linear", "conv1d", "conv2d", "conv3d", "conv_transpose1d", "conv_transpose2d",
           "conv_transpose3d", "sigmoid")


def _array(tensor):
    """The array to fill: a Parameter's ``data``, or the array itself."""
    array = tensor.data if isinstance(tensor, Parameter) else tensor
    if not backend.is_array(array):
        raise TypeError(f"expected an array or a Parameter, got {type(tensor).__name__}")
    return array


def _fill(tensor, host_values):
    """Copy host values into ``tensor`` in place, on its device and in its dtype."""
    array = _array(tensor)
    array[...] = backend.to_device(host_values.astype(array.dtype), backend.device_of(array))
    return tensor


def calculate_gain(nonlinearity: str, param: float | None = None) -> float:
    """The gain that keeps activations' variance steady through ``nonlinearity``, as PyTorch:
    1 for linear/conv/sigmoid, 5/3 for tanh, sqrt(2) for relu, sqrt(2 / (1 + slope^2)) for
    leaky_relu (slope ``param``, default 0.01), 3/4 for selu."""
    if nonlinearity in _LINEAR:
        return 1.0
    if nonlinearity == "tanh":
        return 5.0 / 3.0
    if nonlinearity == "relu":
        return math.sqrt(2.0)
    if nonlinearity == "leaky_relu":
        if param is None:
            slope = 0.01
        elif isinstance(param, Real) and not isinstance(param, bool):
            slope = float(param)
        else:
            raise ValueError(f"calculate_gain: negative_slope {param!r} is not a valid number")
        return math.sqrt(2.0 / (1.0 + slope**2))
    if nonlinearity == "selu":
        return 3.0 / 4.0
    raise ValueError(f"calculate_gain: unsupported nonlinearity {nonlinearity!r}")


def calculate_fan_in_and_fan_out(shape) -> tuple[int, int]:
    """(fan_in, fan_out) of a weight of ``shape``, as PyTorch counts them: dimension 1 and
    dimension 0, each times the kernel size (the product of the remaining dimensions).

    For a transposed convolution's weight (C_in, C_out, KH, KW) that makes fan_in
    ``C_out*KH*KW``: PyTorch's convention, kept so that initial weights match.
    """
    shape = tuple(shape)
    if len(shape) < 2:
        raise ValueError(f"fan in and fan out need a weight with at least 2 dimensions, "
                         f"got shape {shape}")
    receptive_field = math.prod(shape[2:])
    return shape[1] * receptive_field, shape[0] * receptive_field


def _fan(shape, mode: str) -> int:
    if mode not in ("fan_in", "fan_out"):
        raise ValueError(f"mode must be 'fan_in' or 'fan_out', got {mode!r}")
    fan_in, fan_out = calculate_fan_in_and_fan_out(shape)
    return fan_in if mode == "fan_in" else fan_out


def uniform_(tensor, a: float = 0.0, b: float = 1.0, generator: Generator | None = None):
    """Fill with U(a, b)."""
    array = _array(tensor)
    generator = generator or Generator()
    return _fill(tensor, generator.uniform(float(a), float(b), array.shape, dtype=array.dtype))


def zeros_(tensor):
    """Fill with zeros."""
    _array(tensor)[...] = 0.0
    return tensor


def kaiming_uniform_(tensor, a: float = 0.0, mode: str = "fan_in",
                     nonlinearity: str = "leaky_relu", generator: Generator | None = None):
    """He initialisation, uniform: U(-bound, bound), bound = gain * sqrt(3 / fan).

    ``a`` is the leaky_relu slope; ``mode="fan_in"`` keeps the forward activations' variance,
    ``"fan_out"`` the backward gradients'. PyTorch's default layer init is this with
    ``a=sqrt(5)``, which reduces to U(-1/sqrt(fan_in), 1/sqrt(fan_in)).
    """
    array = _array(tensor)
    bound = calculate_gain(nonlinearity, a) * math.sqrt(3.0 / _fan(array.shape, mode))
    return uniform_(tensor, -bound, bound, generator)


def kaiming_normal_(tensor, a: float = 0.0, mode: str = "fan_in",
                    nonlinearity: str = "leaky_relu", generator: Generator | None = None):
    """He initialisation, normal: N(0, std^2), std = gain / sqrt(fan) (arguments as
    :func:`kaiming_uniform_`)."""
    array = _array(tensor)
    std = calculate_gain(nonlinearity, a) / math.sqrt(_fan(array.shape, mode))
    generator = generator or Generator()
    return _fill(tensor, generator.standard_normal(array.shape, dtype=array.dtype) * std)


def _bilinear_profile(size: int):
    """The 1-D tent 1 - |i - centre| / factor, i = 0..size-1 (FCN's ``upsample_filt``)."""
    factor = (size + 1) // 2
    centre = factor - 1 if size % 2 == 1 else factor - 0.5
    return 1.0 - abs(backend.np.arange(size) - centre) / factor


def bilinear_(weight):
    """FCN's bilinear up-sampling filter, in place, for a transposed convolution's weight.

    ``weight`` is (C, C, KH, KW): channel c maps to channel c through the separable tent
    ``filt[i, j] = (1 - |i - ch| / fh) * (1 - |j - cw| / fw)`` with ``f = (K + 1) // 2`` and
    centre ``f - 1`` (K odd) or ``f - 0.5`` (K even); the other channel pairs get zeros.

    With ``kernel_size=2*s, stride=s, padding=s//2`` (s even) and a zero bias the layer
    enlarges by ``s`` as bilinear interpolation does (``align_corners=False``) away from the
    border. FCN may keep it fixed::

        up = ConvTranspose2d(21, 21, kernel_size=64, stride=32, padding=16, bias=False)
        init.bilinear_(up.weight)
        up.requires_grad_(False)      # frozen: backward skips its weight gradient
    """
    array = _array(weight)
    if array.ndim != 4 or array.shape[0] != array.shape[1]:
        raise ValueError(f"bilinear_: expected a weight of shape (C, C, KH, KW), "
                         f"got {tuple(array.shape)}")
    channels, _, KH, KW = array.shape
    filt = backend.np.outer(_bilinear_profile(KH), _bilinear_profile(KW))
    values = backend.np.zeros(array.shape)
    values[range(channels), range(channels)] = filt
    return _fill(weight, values)
