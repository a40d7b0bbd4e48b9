"""Pooling layers with PyTorch's signatures: ``MaxPool2d``, ``AvgPool2d``, ``MaxUnpool2d``,
``AdaptiveAvgPool2d``.

They hold no parameters (so, as in PyTorch, no ``device``/``dtype`` arguments): they work on
whatever device and float dtype their input has. ``MaxPool2d(..., return_indices=True)``
and ``MaxUnpool2d`` together are SegNet's encoder/decoder pair::

    pool, unpool = MaxPool2d(2, return_indices=True), MaxUnpool2d(2)
    y, indices = pool(x)
    x_up = unpool(y, indices)       # the maxima back at their places, zeros elsewhere

Each also takes one unbatched sample (C, H, W) (and MaxUnpool2d its (C, H, W) indices),
answering unbatched, as PyTorch's.
"""

from __future__ import annotations

from .. import checks
from ..functional.pool import (
    adaptive_avg_pool2d_backward,
    adaptive_avg_pool2d_forward,
    adaptive_output_size,
    avg_pool2d_backward,
    avg_pool2d_forward,
    check_divisor_override,
    check_pool_input,
    check_pool_padding,
    check_unpool_arguments,
    max_pool2d_backward,
    max_pool2d_forward,
    max_pool2d_indices,
    max_unpool2d_backward,
    max_unpool2d_unchecked,
    max_unpool_output_size,
    pool_output_size,
)
from ..grad_mode import is_grad_enabled
from .module import Module, accepts_unbatched

__all__ = ["AdaptiveAvgPool2d", "AvgPool2d", "MaxPool2d", "MaxUnpool2d"]


class _Pool2d(Module):
    """What the pooling layers share: window arguments taken as PyTorch takes them (an int
    or a pair; ``stride=None`` means the kernel size), and a backward that checks ``dy``
    against the output of the forward before it.

    Subclasses set ``_backward`` to their functional backward and ``self._cache`` to
    ``(functional cache, y)`` in forward.
    """

    _backward = None

    def __init__(self, kernel_size, stride, padding):
        super().__init__()
        stride = kernel_size if stride is None else stride
        self._where = f"{type(self).__name__}(kernel_size={kernel_size!r}, stride={stride!r})"
        self._kernel = checks.as_pair(self._where, "kernel_size", kernel_size, minimum=1)
        self._stride = checks.as_pair(self._where, "stride", stride, minimum=1)
        self._padding = checks.as_pair(self._where, "padding", padding, minimum=0)
        self._cache = None

    def _check_input(self, x) -> None:
        check_pool_input(self._where, x)

    def backward(self, dy):
        """dy: (N, C, OH, OW), the gradient of the last forward's output -> dx: (N, C, H, W)."""
        checks.check_cache(self._where, self._cache)
        cache, y = self._cache
        checks.check_grad(self._where, dy, y.shape, y.dtype)
        checks.check_same_device(self._where, dy, y)
        dx = self._backward(dy, cache)
        self._cache = None
        return dx


@accepts_unbatched
class MaxPool2d(_Pool2d):
    """The maximum of each ``kernel_size`` window (taps ``dilation`` apart, moved by
    ``stride``) of an (N, C, H, W) input padded with -inf: y is (N, C, OH, OW), sizes as
    :func:`minifcn.functional.pool.pool_output_size`.

    The gradient goes to each window's maximum, the first one in row-major order on ties,
    as in PyTorch. With ``return_indices=True`` forward returns ``(y, indices)``, indices
    (N, C, OH, OW) int64 flat positions ``h*W + w`` of the maxima, for :class:`MaxUnpool2d`;
    backward still takes only ``dy``.
    """

    _backward = staticmethod(max_pool2d_backward)

    def __init__(self, kernel_size, stride=None, padding=0, dilation=1, return_indices=False,
                 ceil_mode=False):
        super().__init__(kernel_size, stride, padding)
        self._dilation = checks.as_pair(self._where, "dilation", dilation, minimum=1)
        check_pool_padding(self._where, self._kernel, self._padding)
        self.kernel_size = kernel_size  # as given, as PyTorch keeps them
        self.stride = kernel_size if stride is None else stride
        self.padding = padding
        self.dilation = dilation
        self.return_indices = checks.check_flag(self._where, "return_indices", return_indices)
        self.ceil_mode = checks.check_flag(self._where, "ceil_mode", ceil_mode)

    def forward(self, x):
        """x: (N, C, H, W) float -> y: (N, C, OH, OW), or (y, indices) with return_indices."""
        self._check_input(x)
        pool_output_size(x.shape[2:], self._kernel, self._stride, self._padding, self._dilation,
                         self.ceil_mode, where=self._where)  # an input too small: say so here
        keep_cache = is_grad_enabled() or self.return_indices  # the indices come from it
        y, cache = max_pool2d_forward(x, self._kernel, self._stride, self._padding,
                                      self._dilation, self.ceil_mode, keep_cache=keep_cache)
        self._cache = (cache, y)
        return (y, max_pool2d_indices(cache)) if self.return_indices else y

    def extra_repr(self) -> str:
        return (f"kernel_size={self.kernel_size}, stride={self.stride}, padding={self.padding}, "
                f"dilation={self.dilation}, ceil_mode={self.ceil_mode}")


@accepts_unbatched
class AvgPool2d(_Pool2d):
    """The mean of each ``kernel_size`` window (moved by ``stride``) of an (N, C, H, W) input
    padded with zeros: y is (N, C, OH, OW). Each window's sum is divided by, as PyTorch:

    - ``divisor_override`` if given;
    - else with ``count_include_pad`` (default) its taps inside the padded input (zeros of
      the padding included; what a ``ceil_mode`` window hangs past the padding is not);
    - else its real pixels only.
    """

    _backward = staticmethod(avg_pool2d_backward)

    def __init__(self, kernel_size, stride=None, padding=0, ceil_mode=False,
                 count_include_pad=True, divisor_override=None):
        super().__init__(kernel_size, stride, padding)
        check_pool_padding(self._where, self._kernel, self._padding)
        check_divisor_override(self._where, divisor_override)
        self.kernel_size = kernel_size  # as given, as PyTorch keeps them
        self.stride = kernel_size if stride is None else stride
        self.padding = padding
        self.ceil_mode = checks.check_flag(self._where, "ceil_mode", ceil_mode)
        self.count_include_pad = checks.check_flag(self._where, "count_include_pad",
                                             count_include_pad)
        self.divisor_override = divisor_override

    def forward(self, x):
        """x: (N, C, H, W) float -> y: (N, C, OH, OW)."""
        self._check_input(x)
        pool_output_size(x.shape[2:], self._kernel, self._stride, self._padding,
                         ceil_mode=self.ceil_mode, where=self._where)  # too small: say so here
        y, cache = avg_pool2d_forward(x, self._kernel, self._stride, self._padding,
                                      self.ceil_mode, self.count_include_pad,
                                      self.divisor_override)
        self._cache = (cache, y)
        return y

    def extra_repr(self) -> str:
        return f"kernel_size={self.kernel_size}, stride={self.stride}, padding={self.padding}"


@accepts_unbatched
class MaxUnpool2d(_Pool2d):
    """The inverse of a max pooling up to its lost values: each value of x goes back to the
    position its ``indices`` (from ``MaxPool2d(..., return_indices=True)``) record, in a
    zero map of size (N, C, OH, OW).

    ``output_size`` defaults to ``(H - 1)*stride - 2*padding + kernel_size`` per axis; pass
    the pooled input's size (``x.shape``) when the pooling rounded a size down. The gradient
    of each value is read back from its position.
    """

    _backward = staticmethod(max_unpool2d_backward)

    def __init__(self, kernel_size, stride=None, padding=0):
        super().__init__(kernel_size, stride, padding)
        self.kernel_size, self.stride, self.padding = self._kernel, self._stride, self._padding

    def forward(self, x, indices, output_size=None):
        """x: (N, C, H, W) float, indices: (N, C, H, W) int -> y: (N, C, OH, OW)."""
        checks.check_input(self._where, x)
        size = max_unpool_output_size(x.shape[2:], self._kernel, self._stride, self._padding,
                                      output_size, where=self._where)
        check_unpool_arguments(self._where, x, indices, size)
        y, cache = max_unpool2d_unchecked(x, indices, size)
        self._cache = (cache, y)
        return y

    def extra_repr(self) -> str:
        return f"kernel_size={self.kernel_size}, stride={self.stride}, padding={self.padding}"


@accepts_unbatched
class AdaptiveAvgPool2d(_Pool2d):
    """The mean of each of OH x OW windows that tile the input as evenly as whole pixels
    allow, as ``torch.nn.AdaptiveAvgPool2d``: the output size is fixed, the windows follow
    the input (window i along an axis of n pixels covers ``[floor(i*n/OH), ceil((i+1)*n/OH))``,
    :func:`minifcn.functional.pool.adaptive_windows`).

    ``output_size``: an int for both axes or a pair (OH, OW); a ``None`` entry keeps that
    axis's input size. ``AdaptiveAvgPool2d(1)`` is a classifier's global average pooling:
    (N, C, H, W) -> (N, C, 1, 1) for any H, W. One unbatched sample (C, H, W) gives
    (C, OH, OW), as in PyTorch.
    """

    _backward = staticmethod(adaptive_avg_pool2d_backward)

    def __init__(self, output_size):
        # No window arguments to parse (so not _Pool2d.__init__); the shared backward needs
        # only _where and _cache.
        Module.__init__(self)
        self._where = f"{type(self).__name__}(output_size={output_size!r})"
        adaptive_output_size((1, 1), output_size, where=self._where)  # refuse bad ones now
        self.output_size = output_size  # as given, as PyTorch keeps it
        self._cache = None

    def forward(self, x):
        """x: (N, C, H, W) float -> y: (N, C, OH, OW)."""
        self._check_input(x)  # PyTorch would average no pixels into NaN: refused instead
        y, cache = adaptive_avg_pool2d_forward(x, self.output_size)
        self._cache = (cache, y)
        return y

    def extra_repr(self) -> str:
        return f"output_size={self.output_size}"
