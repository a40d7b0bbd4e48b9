"""Hypothesis strategies shared by the test modules: layer geometries that PyTorch accepts."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

from hypothesis import strategies as st

seeds = st.integers(0, 2**32 - 1)


@dataclass(frozen=True)
class ConvConfig:
    """One convolution (or transposed convolution) problem. Sizes are (height, width)."""

    batch: int
    in_channels: int
    out_channels: int
    size: tuple[int, int]
    kernel_size: tuple[int, int]
    stride: tuple[int, int]
    padding: tuple[int, int]
    dilation: tuple[int, int]
    output_padding: tuple[int, int] = (0, 0)

    @property
    def input_shape(self) -> tuple[int, int, int, int]:
        return (self.batch, self.in_channels, *self.size)


def _pair(strategy):
    return st.tuples(strategy, strategy)


@st.composite
def conv_configs(draw, transposed: bool = False, max_extra: int = 6) -> ConvConfig:
    """Kernel 1-5, stride 1-3, padding 0-2, dilation 1-2, batch 1-3, channels 1-4, inputs of
    independent height and width; for transposed convolutions ``output_padding < stride``.
    Every drawn problem has an output of at least one pixel."""
    kernel = draw(_pair(st.integers(1, 5)))
    stride = draw(_pair(st.integers(1, 3)))
    padding = draw(_pair(st.integers(0, 2)))
    dilation = draw(_pair(st.integers(1, 2)))
    output_padding = (0, 0)
    size = []
    for axis in range(2):
        span = dilation[axis] * (kernel[axis] - 1) + 1  # extent of the dilated kernel
        if transposed:
            op = draw(st.integers(0, stride[axis] - 1))
            output_padding = (output_padding[0], op) if axis else (op, 0)
            # out = (n - 1) * s - 2p + span + op must be >= 1
            smallest = 1
            while (smallest - 1) * stride[axis] - 2 * padding[axis] + span + op < 1:
                smallest += 1
        else:
            smallest = max(1, span - 2 * padding[axis])  # padded input must hold the kernel
        size.append(draw(st.integers(smallest, smallest + max_extra)))
    return ConvConfig(
        batch=draw(st.integers(1, 3)),
        in_channels=draw(st.integers(1, 4)),
        out_channels=draw(st.integers(1, 4)),
        size=(size[0], size[1]),
        kernel_size=kernel,
        stride=stride,
        padding=padding,
        dilation=dilation,
        output_padding=output_padding,
    )


@dataclass(frozen=True)
class PoolConfig:
    batch: int
    channels: int
    size: tuple[int, int]
    kernel_size: tuple[int, int]
    stride: tuple[int, int]
    padding: tuple[int, int]
    ceil_mode: bool

    @property
    def input_shape(self) -> tuple[int, int, int, int]:
        return (self.batch, self.channels, *self.size)


@st.composite
def pool_configs(draw, max_extra: int = 6) -> PoolConfig:
    """Kernel 1-5, stride 1-3, padding at most half the kernel (PyTorch's rule), ceil_mode."""
    kernel = draw(_pair(st.integers(1, 5)))
    stride = draw(_pair(st.integers(1, 3)))
    padding = (draw(st.integers(0, kernel[0] // 2)), draw(st.integers(0, kernel[1] // 2)))
    size = tuple(draw(st.integers(max(1, k - 2 * p), max(1, k - 2 * p) + max_extra))
                 for k, p in zip(kernel, padding, strict=True))
    return PoolConfig(
        batch=draw(st.integers(1, 3)),
        channels=draw(st.integers(1, 4)),
        size=size,
        kernel_size=kernel,
        stride=stride,
        padding=padding,
        ceil_mode=draw(st.booleans()),
    )


@st.composite
def transposed_configs(draw, max_extra: int = 6) -> ConvConfig:
    """``conv_configs(transposed=True)`` with output_padding up to PyTorch's limit,
    ``max(stride, dilation) - 1``; the shared strategy stops at ``stride - 1`` and so never
    reaches the case output_padding >= stride (dilation > stride). The drawn output_padding
    only grows, which only enlarges the output, so the drawn sizes stay valid."""
    config = draw(conv_configs(transposed=True, max_extra=max_extra))
    output_padding = tuple(draw(st.integers(op, max(s, d) - 1)) for op, s, d in
                           zip(config.output_padding, config.stride, config.dilation,
                               strict=True))
    return dataclasses.replace(config, output_padding=output_padding)


@st.composite
def dilated_pool_configs(draw) -> tuple[PoolConfig, tuple[int, int]]:
    """A pool_configs() problem with a dilation of 1-2 per axis. Along a dilated axis the input
    is at least the dilated kernel's extent, so that no window sees only padding (which
    PyTorch computes as -inf and minifcn refuses)."""
    config = draw(pool_configs())
    dilation = draw(st.tuples(st.integers(1, 2), st.integers(1, 2)))
    size = tuple(n if d == 1 else max(n, d * (k - 1) + 1)
                 for n, k, d in zip(config.size, config.kernel_size, dilation, strict=True))
    return dataclasses.replace(config, size=size), dilation


@st.composite
def nchw_shapes(draw, max_size: int = 4):
    """(N, C, H, W) with at least three values per channel. (Batch statistics need two;
    with exactly two, xhat is +-1 whatever x, so dx is eps-small and a finite-difference
    check would measure only rounding.)"""
    shape = draw(st.tuples(st.integers(1, 3), st.integers(1, 4),
                           st.integers(1, max_size), st.integers(1, max_size)))
    N, _, H, W = shape
    return shape if N * H * W >= 3 else (3, *shape[1:])


# Upsample's modes with the align_corners values PyTorch accepts for each.
UPSAMPLE_MODES = [("nearest", None), ("bilinear", False), ("bilinear", True)]


@st.composite
def upsample_configs(draw):
    """(input shape, Upsample keyword arguments): an input of 1-9 x 1-9 pixels and either an
    output size of 1-24 per axis or a scale factor of 0.5-4 per axis (integer or not) that
    leaves at least one pixel, with any mode and align_corners."""
    shape = (draw(st.integers(1, 2)), draw(st.integers(1, 3)),
             draw(st.integers(1, 9)), draw(st.integers(1, 9)))
    mode, align_corners = draw(st.sampled_from(UPSAMPLE_MODES))
    kwargs = dict(mode=mode, align_corners=align_corners)
    if draw(st.booleans()):
        kwargs["size"] = (draw(st.integers(1, 24)), draw(st.integers(1, 24)))
    else:
        factor = st.one_of(st.integers(1, 4).map(float),
                           st.floats(0.5, 4.0).map(lambda f: round(f, 2)))
        kwargs["scale_factor"] = tuple(max(draw(factor), 1.0 / n) for n in shape[2:])
    return shape, kwargs


@dataclass(frozen=True)
class LinearConfig:
    """One fully connected problem: x (*leading, in_features) -> y (*leading, out_features)."""

    leading: tuple[int, ...]
    in_features: int
    out_features: int

    @property
    def input_shape(self) -> tuple[int, ...]:
        return (*self.leading, self.in_features)


@st.composite
def linear_configs(draw, max_features: int = 6) -> LinearConfig:
    """0-3 leading dimensions of 1-3 each (none: a single sample, as PyTorch allows) and
    1-``max_features`` input and output features."""
    return LinearConfig(
        leading=tuple(draw(st.lists(st.integers(1, 3), max_size=3))),
        in_features=draw(st.integers(1, max_features)),
        out_features=draw(st.integers(1, max_features)),
    )


@st.composite
def flatten_configs(draw) -> tuple[tuple[int, ...], int, int]:
    """(shape, start_dim, end_dim): a shape of rank 1-5 (sizes 1-3) and dims PyTorch accepts,
    each either counted from the front or from the end (negative), start_dim <= end_dim."""
    shape = tuple(draw(st.lists(st.integers(1, 3), min_size=1, max_size=5)))
    rank = len(shape)
    start = draw(st.integers(0, rank - 1))
    end = draw(st.integers(start, rank - 1))
    return (shape, start - rank if draw(st.booleans()) else start,
            end - rank if draw(st.booleans()) else end)


@st.composite
def adaptive_pool_configs(draw):
    """(input shape, output_size): an input of 1-9 x 1-9 pixels and an output_size as
    PyTorch takes it: an int, or a pair whose entries are ints or None (keep that axis). The
    sizes run to 10, past the input's, where neighbouring windows share pixels."""
    shape = (draw(st.integers(1, 2)), draw(st.integers(1, 3)),
             draw(st.integers(1, 9)), draw(st.integers(1, 9)))
    size = st.integers(1, 10)
    output_size = draw(st.one_of(size, st.tuples(st.one_of(size, st.none()),
                                                 st.one_of(size, st.none()))))
    return shape, output_size
