"""Activation layers with PyTorch's names and arguments: ``ReLU``, ``LeakyReLU``."""

from __future__ import annotations

from numbers import Real

from .. import checks
from ..backend import get_array_module
from ..functional.activation import (
    leaky_relu_backward,
    leaky_relu_forward,
    relu_backward,
    relu_forward,
)
from ..grad_mode import is_grad_enabled
from .module import Module

__all__ = ["LeakyReLU", "ReLU"]


class _Elementwise(Module):
    """Shared forward/backward bookkeeping of a layer applying ``_forward``/``_backward``
    (a functional pair, with the layer's extra arguments from ``_arguments``)."""

    def __init__(self):
        super().__init__()
        self._cache = None

    def _where(self) -> str:
        return f"{type(self).__name__}({self.extra_repr()})"

    def _arguments(self) -> tuple:
        return ()

    def forward(self, x):
        """x: any shape, e.g. (N, C, H, W) -> y: same shape and dtype."""
        checks.check_input(self._where(), x, ndim=None)
        y, cache = self._forward(x, *self._arguments(), keep_cache=is_grad_enabled())
        y = get_array_module(x).asarray(y)  # NumPy answers a 0-d x with a scalar: an array
        self._cache = (cache, tuple(y.shape), y.dtype)
        return y

    def backward(self, dy):
        """dy: the shape of y -> dx: the shape of x."""
        checks.check_cache(self._where(), self._cache)
        cache, shape, dtype = self._cache
        checks.check_grad(self._where(), dy, shape, dtype)
        parts = cache if isinstance(cache, tuple) else (cache,)  # (mask,) or (mask, slope)
        checks.check_same_device(self._where(), dy, *parts)
        dx = get_array_module(dy).asarray(self._backward(dy, cache))  # 0-d: as forward
        self._cache = None
        return dx


class ReLU(_Elementwise):
    """``y = max(x, 0)``, element-wise."""

    _forward = staticmethod(relu_forward)
    _backward = staticmethod(relu_backward)

    def __init__(self, inplace: bool = False):
        super().__init__()
        self.inplace = checks.check_inplace("ReLU()", inplace)


class LeakyReLU(_Elementwise):
    """``y = x`` for x > 0, ``negative_slope * x`` otherwise, element-wise."""

    _forward = staticmethod(leaky_relu_forward)
    _backward = staticmethod(leaky_relu_backward)

    def __init__(self, negative_slope: float = 0.01, inplace: bool = False):
        super().__init__()
        if not isinstance(negative_slope, Real) or isinstance(negative_slope, bool):
            raise TypeError(f"LeakyReLU: negative_slope must be a number, "
                            f"got {negative_slope!r}")
        self.negative_slope = float(negative_slope)
        self.inplace = checks.check_inplace(self._where(), inplace)

    def _arguments(self) -> tuple:
        return (self.negative_slope,)

    def extra_repr(self) -> str:
        return f"negative_slope={self.negative_slope}"
