"""Hypothesis strategies for layer tests: configurations PyTorch accepts, and their inputs.

Every configuration drawn here is one PyTorch 2.13 accepts (and minifcn too), so a failure is
the layer's, never the strategy's. Arrays are drawn on the host (NumPy); move them to the
backend under test with ``xp.asarray``.

- geometries: :func:`conv_configs`, :func:`transposed_configs` (:class:`ConvConfig`),
  :func:`pool_configs` (``overlapping=True``: stride < kernel), :func:`dilated_pool_configs`
  (:class:`PoolConfig`), :func:`batch_norm_configs` (:class:`BatchNormConfig`),
  :func:`upsample_configs`, :func:`loss_configs` (:class:`LossConfig`, with ignored pixels);
- shapes and inputs: :func:`nchw_shapes`, :func:`arrays` (``distinct=True``: no two values
  equal, so a max is never ambiguous; ``tied=True``: small integers, so windows tie),
  :func:`tied_arrays`, ``seeds``; the same values from a seeded NumPy generator for tests
  that do not draw with hypothesis: :func:`distinct_values`, :func:`tied_values`.

Needs hypothesis: ``pip install "minifcn[test]"``.
"""

from __future__ import annotations

import dataclasses
import functools
import math
from dataclasses import dataclass

try:
    from hypothesis import strategies as st
    from hypothesis.extra import numpy as hnp
except ImportError as error:  # pragma: no cover - depends on the environment
    raise ImportError('minifcn.testing.strategies needs hypothesis, which is not installed: '
                      'pip install "minifcn[test]" (or pip install hypothesis)') from error

from ..backend import np

__all__ = [
    "UPSAMPLE_MODES",
    "BatchNormConfig",
    "ConvConfig",
    "LossConfig",
    "PoolConfig",
    "arrays",
    "batch_norm_configs",
    "conv_configs",
    "dilated_pool_configs",
    "distinct_values",
    "loss_configs",
    "nchw_shapes",
    "pool_configs",
    "seeds",
    "tied_arrays",
    "tied_values",
    "transposed_configs",
    "upsample_configs",
]

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
    groups: int = 1

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


@st.composite
def grouped_conv_configs(draw, transposed: bool = False) -> ConvConfig:
    """A ``conv_configs`` problem (``transposed_configs`` when ``transposed``) with 2-3
    groups of 1-2 input and 1-3 output channels each; a third of the draws are depthwise
    (one input channel per group, the output channels a multiplier of 1-3 of them)."""
    config = draw(transposed_configs() if transposed else conv_configs())
    groups = draw(st.integers(2, 3))
    per_group_in = 1 if draw(st.integers(0, 2)) == 0 else draw(st.integers(1, 2))
    per_group_out = draw(st.integers(1, 3))
    return dataclasses.replace(config, in_channels=groups * per_group_in,
                               out_channels=groups * per_group_out, groups=groups)


PADDING_MODES = ("zeros", "reflect", "replicate", "circular")


@st.composite
def padding_mode_configs(draw) -> tuple[ConvConfig, str]:
    """(a ``conv_configs`` problem with groups 1-2, a padding mode) that PyTorch accepts:
    reflect padding smaller than the input, circular padding at most the input."""
    config = draw(conv_configs())
    mode = draw(st.sampled_from(PADDING_MODES))
    if draw(st.booleans()):
        config = dataclasses.replace(config, in_channels=2 * config.in_channels,
                                     out_channels=2 * config.out_channels, groups=2)
    limit = {"reflect": 1, "circular": 0}.get(mode)
    if limit is not None:  # grow the input until the padding fits the mode
        size = tuple(max(n, p + limit) for n, p in zip(config.size, config.padding,
                                                        strict=True))
        config = dataclasses.replace(config, size=size)
    return config, mode


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
def pool_configs(draw, max_extra: int = 6, overlapping: bool = False) -> PoolConfig:
    """Kernel 1-5, stride 1-3, padding at most half the kernel (PyTorch's rule), ceil_mode;
    kernel and stride drawn per axis (non-square windows).

    ``overlapping=True`` makes neighbouring windows overlap along both axes: kernel 2-5 and
    stride 1 to kernel - 1 per axis (where a max-pool backward must *add* the shares of the
    windows that share a pixel).
    """
    if overlapping:
        kernel = draw(_pair(st.integers(2, 5)))
        stride = (draw(st.integers(1, kernel[0] - 1)), draw(st.integers(1, kernel[1] - 1)))
    else:
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
class BatchNormConfig:
    """One ``BatchNorm2d`` problem: the input shape (at least three values per channel) and
    the layer's keyword arguments (``num_features`` is ``shape[1]``)."""

    shape: tuple[int, int, int, int]
    eps: float
    momentum: float | None
    affine: bool
    track_running_stats: bool

    @property
    def num_features(self) -> int:
        return self.shape[1]

    @property
    def kwargs(self) -> dict:
        """``BatchNorm2d(config.num_features, **config.kwargs)``, in minifcn and PyTorch."""
        return dict(eps=self.eps, momentum=self.momentum, affine=self.affine,
                    track_running_stats=self.track_running_stats)


@st.composite
def batch_norm_configs(draw, max_size: int = 4) -> BatchNormConfig:
    """A shape from :func:`nchw_shapes`, eps 1e-6 to 0.1 (often PyTorch's 1e-5), momentum in
    [0, 1] or None (the cumulative average), affine and track_running_stats either way."""
    return BatchNormConfig(
        shape=draw(nchw_shapes(max_size=max_size)),
        eps=draw(st.one_of(st.just(1e-5), st.floats(1e-6, 0.1))),
        momentum=draw(st.one_of(st.none(), st.just(0.1), st.floats(0.0, 1.0))),
        affine=draw(st.booleans()),
        track_running_stats=draw(st.booleans()),
    )


@dataclass(frozen=True, eq=False)
class LossConfig:
    """One cross-entropy problem (``F.cross_entropy`` / ``CrossEntropyLoss``).

    ``target`` is a host int64 array, (N, H, W) for logits (N, C, H, W) or (N,) for (N, C),
    holding classes in [0, C) and ``ignore_index`` at the ignored pixels; at least one pixel
    is not ignored (so a ``"mean"`` is finite) and, when there are two or more, at least one
    is. ``weight`` is None or C positive per-class weights.
    """

    logits_shape: tuple[int, ...]
    target: object
    ignore_index: int
    weight: tuple[float, ...] | None
    label_smoothing: float
    reduction: str

    @property
    def num_classes(self) -> int:
        return self.logits_shape[1]

    @property
    def kwargs(self) -> dict:
        """The keyword arguments besides ``weight`` (an array on the backend under test)."""
        return dict(ignore_index=self.ignore_index, reduction=self.reduction,
                    label_smoothing=self.label_smoothing)


@st.composite
def loss_configs(draw, max_size: int = 5) -> LossConfig:
    """Logits (N, C, H, W) or (N, C) with N 1-3, C 2-5, H and W 1-``max_size``; targets with
    some pixels ignored (ignore_index 255 as in VOC, or PyTorch's default -100); optional class
    weights; label_smoothing 0 or in [0, 1]; reduction mean, sum or none."""
    batch, classes = draw(st.integers(1, 3)), draw(st.integers(2, 5))
    spatial = draw(st.one_of(st.just(()), _pair(st.integers(1, max_size))))
    target_shape = (batch, *spatial)
    ignore_index = draw(st.sampled_from([255, -100]))
    target = draw(hnp.arrays(np.int64, target_shape, elements=st.integers(0, classes - 1)))
    ignored = draw(hnp.arrays(np.bool_, target_shape))
    if ignored.all():
        ignored.flat[0] = False
    if target.size >= 2 and not ignored.any():
        ignored.flat[-1] = True
    target[ignored] = ignore_index
    weight = draw(st.one_of(st.none(), st.tuples(*[st.floats(0.1, 3.0)] * classes)))
    return LossConfig(
        logits_shape=(batch, classes, *spatial),
        target=target,
        ignore_index=ignore_index,
        weight=weight,
        label_smoothing=draw(st.one_of(st.just(0.0), st.floats(0.0, 1.0))),
        reduction=draw(st.sampled_from(["mean", "sum", "none"])),
    )


def distinct_values(rng, shape, dtype="float64"):
    """A host array of ``shape`` whose values are all different: a random permutation (from
    the NumPy generator ``rng``) of ``size`` evenly spaced values in (-3, 3), so no two are
    closer than ``6 / size``. What ``arrays(shape, distinct=True)`` draws, for tests that draw
    with a seed rather than with hypothesis."""
    size = math.prod(shape)
    order = rng.permutation(size)
    return ((order + 0.5) * (6.0 / max(size, 1)) - 3.0).astype(dtype).reshape(shape)


def tied_values(rng, shape, dtype="float64"):
    """A host array of ``shape`` of the integers -2 to 2 (from the NumPy generator ``rng``):
    most pooling windows hold ties, and sums of them are exact in any order. What
    ``arrays(shape, tied=True)`` draws, for tests that draw with a seed."""
    return rng.integers(-2, 3, size=shape).astype(dtype)


@st.composite
def arrays(draw, shape, dtype="float64", distinct: bool = False, tied: bool = False,
           elements=None):
    """A host array of ``shape`` (a tuple, or a strategy that draws one) and ``dtype``.

    - default: floats in [-3, 3] (hypothesis's choice of values: zeros, repeats, extremes);
    - ``elements``: a strategy for the values instead;
    - ``distinct=True``: :func:`distinct_values`, no two entries equal nor closer than
      ``6 / size``: a max-pool window's maximum is never ambiguous, and a finite-difference
      step of 1e-6 never changes which entry wins;
    - ``tied=True``: the integers -2 to 2, so that most pooling windows hold ties (to test
      which maximum wins), and sums are exact in any order.
    """
    if distinct + tied + (elements is not None) > 1:
        raise ValueError("arrays: choose at most one of distinct=True, tied=True, elements=")
    if isinstance(shape, st.SearchStrategy):
        shape = draw(shape)
    shape = tuple(int(n) for n in shape)
    dtype = np.dtype(dtype)
    if distinct:
        return distinct_values(np.random.default_rng(draw(seeds)), shape, dtype)
    if tied:
        elements = st.integers(-2, 2)
    elif elements is None:
        elements = (st.floats(-3.0, 3.0, width=8 * dtype.itemsize, allow_subnormal=False)
                    if dtype.kind == "f" else st.integers(-3, 3))
    return draw(hnp.arrays(dtype, shape, elements=elements))


tied_arrays = functools.partial(arrays, tied=True)
tied_arrays.__doc__ = "``arrays(shape, dtype, tied=True)``: the integers -2 to 2, so windows tie."


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
