"""``Conv2d`` and ``ConvTranspose2d``: PyTorch's convolution layers, forward and backward.

Thin wrappers over :mod:`minifcn.functional.conv`: they hold the weight and bias, check
their arguments and inputs, keep the forward cache for backward and add the parameter
gradients. Signatures, weight layouts, initial distributions and ``state_dict`` keys are
PyTorch's, so ``layer.load_state_dict({k: v.numpy() for k, v in torch_layer.state_dict()
.items()})`` gives the same layer. Both take PyTorch's ``groups`` (grouped and depthwise
convolutions) and one unbatched sample (C, H, W) as well as a batch; ``Conv2d`` takes every
``padding_mode`` PyTorch has, ``ConvTranspose2d`` only ``"zeros"``, as in PyTorch.
"""

from __future__ import annotations

from numbers import Integral

from .. import backend, checks
from ..functional import conv as F
from ..functional.im2col import conv_output_size, conv_transpose_output_size
from ..functional.pad import PADDING_MODES, check_padding_size, pad2d_backward, pad2d_forward
from .module import Parameter, WeightedLayer, accepts_unbatched

__all__ = ["Conv2d", "ConvTranspose2d"]


class _ConvNd(WeightedLayer):
    """What both layers share: argument checks, parameters, initialisation, repr; the
    backward is :class:`~minifcn.nn.module.WeightedLayer`'s.

    Subclasses set ``_backward_fn`` (the functional backward) and validate their padding.
    """

    _release = staticmethod(F.release)  # the cache's im2col buffer serves the next step

    def __init__(self, in_channels, out_channels, kernel_size, stride, dilation, groups, bias,
                 padding_mode, transposed: bool, device, dtype, generator):
        super().__init__()
        name = type(self).__name__
        where = f"{name}({in_channels}->{out_channels})"
        self.in_channels = checks.check_count(where, "in_channels", in_channels, 1)
        self.out_channels = checks.check_count(where, "out_channels", out_channels, 1)
        self.kernel_size = checks.as_pair(where, "kernel_size", kernel_size, minimum=1)
        self.stride = checks.as_pair(where, "stride", stride, minimum=1)
        self.dilation = checks.as_pair(where, "dilation", dilation, minimum=1)
        self.groups = checks.check_count(where, "groups", groups, 1)
        for label, count in (("in_channels", self.in_channels),
                             ("out_channels", self.out_channels)):
            if count % self.groups:
                raise ValueError(f"{where}: {label} must be divisible by groups, got "
                                 f"{label}={count} and groups={self.groups} (as in PyTorch)")
        if padding_mode not in PADDING_MODES:
            raise ValueError(f"{where}: padding_mode must be one of {PADDING_MODES}, "
                             f"got {padding_mode!r}")
        if transposed and padding_mode != "zeros":
            raise ValueError(f"{where}: only padding_mode='zeros' is supported for "
                             f"ConvTranspose2d (as in PyTorch), got {padding_mode!r}")
        self.padding_mode = padding_mode
        self._where = (f"{name}({self.in_channels}->{self.out_channels}, "
                       f"kernel_size={self.kernel_size}, stride={self.stride}"
                       + (f", groups={self.groups})" if self.groups != 1 else ")"))
        # PyTorch's layouts: (F, C/G, KH, KW) and, transposed, (C_in, C_out/G, KH, KW).
        channels = ((self.in_channels, self.out_channels // self.groups) if transposed
                    else (self.out_channels, self.in_channels // self.groups))
        dtype = backend.resolve_dtype(dtype)
        self.weight = Parameter(backend.np.zeros((*channels, *self.kernel_size), dtype=dtype))
        self.bias = (Parameter(backend.np.zeros(self.out_channels, dtype=dtype))
                     if checks.check_flag(where, "bias", bias) else None)
        self.reset_parameters(generator)
        self._cache = None
        self.to(device=device or backend.default_device())

    def _check_input(self, x) -> None:
        if getattr(self, "_unbatched", False) and x.shape[1] != self.in_channels:
            raise ValueError(f"{self._where}: expected x with {self.in_channels} channels, "
                             f"got x of shape {tuple(x.shape[1:])}")
        checks.check_input(self._where, x, channels=self.in_channels, dtype=self.weight.dtype)
        checks.check_same_device(self._where, x, self.weight.data)
        if x.shape[0] and min(x.shape[2:]) == 0:  # PyTorch's rule: only the batch may be empty
            raise ValueError(f"{self._where}: expected an image of at least 1 x 1 pixels "
                             f"(only the batch may be empty), got x of shape {tuple(x.shape)}")

    def _output_size(self, size_fn, *args):
        """``size_fn(*args)``, with its ValueError (nothing fits) naming the layer."""
        return checks.naming(self._where, size_fn, *args)

    def extra_repr(self) -> str:
        text = (f"{self.in_channels}, {self.out_channels}, kernel_size={self.kernel_size}, "
                f"stride={self.stride}")
        if self.padding != (0, 0):
            text += f", padding={self.padding}"
        if self.dilation != (1, 1):
            text += f", dilation={self.dilation}"
        if getattr(self, "output_padding", (0, 0)) != (0, 0):
            text += f", output_padding={self.output_padding}"
        if self.groups != 1:
            text += f", groups={self.groups}"
        if self.bias is None:
            text += ", bias=False"
        if self.padding_mode != "zeros":
            text += f", padding_mode={self.padding_mode}"
        return text


@accepts_unbatched
class Conv2d(_ConvNd):
    """2-D convolution (cross-correlation), as ``torch.nn.Conv2d``, whose argument order it
    keeps.

    Args:
        in_channels (C), out_channels (F), kernel_size: int or (KH, KW).
        stride, dilation: int or pair, >= 1.
        padding: int or pair of padding on each side, or ``"valid"`` (none) or ``"same"``
            (stride 1 only; output as large as the input; when DH*(KH - 1) is odd the extra
            row goes at the bottom, the extra column at the right, as in PyTorch).
        groups: G, dividing C and F: output channel block g (F/G channels) sees input block
            g (C/G channels) only. ``groups=C`` is a depthwise convolution (with F = k*C, a
            channel multiplier of k).
        bias: learn a per-channel bias (F,).
        padding_mode: what the padding holds: ``"zeros"``, ``"reflect"`` (mirrored about the
            edge, which is not repeated; padding must be smaller than the input),
            ``"replicate"`` (the edge repeated) or ``"circular"`` (the input wrapped around;
            padding at most the input's size), as PyTorch's; see
            :mod:`minifcn.functional.pad`.
        device, dtype: where and in which float type to hold the parameters.
        generator: a :class:`minifcn.backend.Generator` for the initial weights.

    Shapes: x (N, C, H, W) -> y (N, F, OH, OW), or unbatched (C, H, W) -> (F, OH, OW); OH =
    floor((H + 2*PH - DH*(KH - 1) - 1) / SH) + 1. Parameters: weight (F, C/G, KH, KW), bias
    (F,), both ~ U(-1/sqrt(C/G*KH*KW), 1/sqrt(C/G*KH*KW)).

    Example: 3 channels to 16 with a 3x3 kernel; padding 1 keeps 32 x 32. The backward
    returns dx, shaped as x, and adds into ``weight.grad`` and ``bias.grad``:

        >>> import numpy as np
        >>> from minifcn import nn
        >>> conv = nn.Conv2d(3, 16, kernel_size=3, padding=1)
        >>> conv.weight.shape, conv.bias.shape
        ((16, 3, 3, 3), (16,))
        >>> x = np.zeros((2, 3, 32, 32), dtype=np.float32)
        >>> y = conv(x)
        >>> y.shape
        (2, 16, 32, 32)
        >>> dx = conv.backward(np.ones_like(y))
        >>> dx.shape, conv.weight.grad.shape
        ((2, 3, 32, 32), (16, 3, 3, 3))
    """

    _backward_fn = staticmethod(F.conv2d_backward)

    def __init__(self, in_channels, out_channels, kernel_size, stride=1, padding=0, dilation=1,
                 groups=1, bias=True, padding_mode="zeros", device=None, dtype=None, *,
                 generator: backend.Generator | None = None):
        super().__init__(in_channels, out_channels, kernel_size, stride, dilation, groups, bias,
                         padding_mode, False, device, dtype, generator)
        # _padding is the symmetric part the functional convolution pads; _extra the rows
        # and columns "same" adds at the bottom/right alone.
        self._extra = (0, 0)
        if isinstance(padding, str):
            if padding == "valid":
                self._padding = (0, 0)
            elif padding == "same":
                if self.stride != (1, 1):
                    raise ValueError(f"{self._where}: padding='same' is not supported for "
                                     f"strided convolutions (as in PyTorch)")
                total = [d * (k - 1) for k, d in zip(self.kernel_size, self.dilation,
                                                      strict=True)]
                self._padding = (total[0] // 2, total[1] // 2)
                self._extra = (total[0] % 2, total[1] % 2)
            else:
                raise ValueError(f"{self._where}: padding must be an int, a pair, 'valid' or "
                                 f"'same', got {padding!r}")
            self.padding = padding
        else:
            self.padding = self._padding = checks.as_pair(self._where, "padding", padding,
                                                          minimum=0)
        # (top, bottom, left, right): all the padding, which a padding_mode other than
        # "zeros" adds before a convolution without padding, as PyTorch does.
        (PH, PW), (EH, EW) = self._padding, self._extra
        self._pad4 = (PH, PH + EH, PW, PW + EW)

    def forward(self, x):
        """x (N, C, H, W) -> y (N, F, OH, OW)."""
        self._check_input(x)
        padding, pad_cache = self._padding, None
        if self.padding_mode != "zeros":
            check_padding_size(self._where, x.shape[2:], self._pad4, self.padding_mode)
            x, pad_cache = pad2d_forward(x, self._pad4, self.padding_mode)
            padding = (0, 0)
        elif self._extra != (0, 0):
            xp = backend.get_array_module(x)
            x = xp.pad(x, ((0, 0), (0, 0), (0, self._extra[0]), (0, self._extra[1])))
        self._output_size(conv_output_size, x.shape[2:], self.kernel_size, self.stride,
                          padding, self.dilation)
        bias = None if self.bias is None else self.bias.data
        y, cache = F.conv2d_forward(x, self.weight.data, bias, self.stride, padding,
                                    self.dilation, groups=self.groups)
        self._cache = (cache, y.shape)
        self._pad_cache = pad_cache
        return y

    def backward(self, dy):
        pad_cache = getattr(self, "_pad_cache", None)
        dx = super().backward(dy)
        if dx is None:  # needs_input_grad is False
            return None
        if pad_cache is not None:  # the padding_mode's padding: fold its gradient back
            return pad2d_backward(dx, pad_cache)
        if self._extra != (0, 0):  # the rows/columns forward added for "same"
            dx = dx[:, :, :dx.shape[2] - self._extra[0], :dx.shape[3] - self._extra[1]]
        return dx


@accepts_unbatched
class ConvTranspose2d(_ConvNd):
    """2-D transposed convolution, as ``torch.nn.ConvTranspose2d``: the input gradient of a
    ``Conv2d`` used as a layer, the learnable up-sampling of FCN. The arguments come in
    PyTorch's order: ``in_channels, out_channels, kernel_size, stride, padding,
    output_padding, groups, bias, dilation, padding_mode, device, dtype``.

    Args:
        in_channels (C_in), out_channels (C_out), kernel_size: int or (KH, KW).
        stride, dilation: int or pair, >= 1.
        padding: int or pair: rows/columns cropped from each side of the output.
        output_padding: int or pair, rows/columns added at the bottom/right; smaller than
            either stride or dilation (PyTorch's rule).
        groups: G, dividing C_in and C_out, as :class:`Conv2d`'s.
        bias: learn a per-channel bias (C_out,).
        padding_mode: ``"zeros"`` only, as in PyTorch.
        device, dtype, generator: as :class:`Conv2d`.

    Shapes: x (N, C_in, H, W) -> y (N, C_out, OH, OW), or unbatched (C_in, H, W) ->
    (C_out, OH, OW); OH = (H - 1)*SH - 2*PH + DH*(KH - 1) + output_padding_h + 1.
    Parameters: weight (C_in, C_out/G, KH, KW), bias (C_out,), both ~
    U(-1/sqrt(C_out/G*KH*KW), 1/sqrt(C_out/G*KH*KW)) (PyTorch takes fan_in from dimension 1).
    """

    _backward_fn = staticmethod(F.conv_transpose2d_backward)

    def __init__(self, in_channels, out_channels, kernel_size, stride=1, padding=0,
                 output_padding=0, groups=1, bias=True, dilation=1, padding_mode="zeros",
                 device=None, dtype=None, *, generator: backend.Generator | None = None):
        super().__init__(in_channels, out_channels, kernel_size, stride, dilation, groups, bias,
                         padding_mode, True, device, dtype, generator)
        self.padding = checks.as_pair(self._where, "padding", padding, minimum=0)
        self.output_padding = checks.as_pair(self._where, "output_padding", output_padding,
                                             minimum=0)
        if any(op >= max(s, d) for op, s, d in zip(self.output_padding, self.stride,
                                                    self.dilation, strict=True)):
            raise ValueError(f"{self._where}: output_padding must be smaller than either "
                             f"stride or dilation, got output_padding={self.output_padding}, "
                             f"stride={self.stride}, dilation={self.dilation}")

    def _output_padding_for(self, x, output_size) -> tuple[int, int]:
        """The output_padding that makes the output ``output_size`` (PyTorch's rule: the
        last two entries, each within ``stride - 1`` of the smallest output; (OH, OW) or as
        many entries as the input has axes)."""
        size = tuple(output_size)[-2:]
        full = "(C, OH, OW)" if self._unbatched else "(N, C, OH, OW)"
        if len(tuple(output_size)) not in (2, len(full.split(","))) or not all(
                isinstance(n, Integral) and not isinstance(n, bool) for n in size):
            raise TypeError(f"{self._where}: output_size must be (OH, OW) or {full} "
                            f"ints, got {output_size!r}")
        smallest = self._output_size(conv_transpose_output_size, x.shape[2:], self.kernel_size,
                                     self.stride, self.padding, (0, 0), self.dilation)
        largest = tuple(n + s - 1 for n, s in zip(smallest, self.stride, strict=True))
        if not all(lo <= n <= hi for n, lo, hi in zip(size, smallest, largest, strict=True)):
            raise ValueError(f"{self._where}: requested an output size of {size}, but valid "
                             f"sizes range from {smallest} to {largest} (for an input of "
                             f"{tuple(x.shape[2:])})")
        return tuple(n - lo for n, lo in zip(size, smallest, strict=True))

    def forward(self, x, output_size=None):
        """x (N, C_in, H, W) -> y (N, C_out, OH, OW); ``output_size`` (OH, OW), if given,
        picks the output_padding (overriding the layer's), as in PyTorch."""
        self._check_input(x)
        output_padding = (self.output_padding if output_size is None
                          else self._output_padding_for(x, output_size))
        self._output_size(conv_transpose_output_size, x.shape[2:], self.kernel_size,
                          self.stride, self.padding, output_padding, self.dilation)
        bias = None if self.bias is None else self.bias.data
        y, cache = F.conv_transpose2d_forward(x, self.weight.data, bias, self.stride,
                                              self.padding, output_padding, self.dilation,
                                              self.groups)
        self._cache = (cache, y.shape)
        return y
