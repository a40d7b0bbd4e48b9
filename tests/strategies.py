"""Hypothesis strategies shared by the test modules: layer geometries that PyTorch accepts."""

from __future__ import annotations

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
