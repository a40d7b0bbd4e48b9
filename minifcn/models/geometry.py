"""Where a feature map's pixels sit on the input image: receptive field, stride, offset.

Follow one axis (rows) of the image through a network. Every feature map has

- ``jump``: how many input pixels apart two neighbouring pixels of the map are (the map's
  *output stride*: 32 after five 2x2 poolings);
- ``start``: the input coordinate of the centre of the map's pixel 0 (pixel ``i`` then sits
  at ``start + i * jump``);
- ``rf``: how many input pixels one pixel of the map can see (its *receptive field*).

Each layer maps the geometry of its input to that of its output (:func:`layer_geometry`).
Two maps that a skip connection adds must have the same ``jump`` and the same ``start``;
when their starts differ, the larger map is cropped by ``(start_small - start_big) / jump``
pixels first. That is the whole story behind the original FCN's "pad 100, crop 19":
the offsets are computed, never guessed (:func:`crop_offset`).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

__all__ = ["Geometry", "chain_geometry", "crop_offset", "layer_geometry", "merge_geometry"]


@dataclass(frozen=True)
class Geometry:
    """One axis of a feature map's placement on the input (see the module docstring)."""

    jump: float = 1.0
    start: float = 0.0
    rf: float = 1.0


def _first(value) -> int:
    """PyTorch layers store ints or (h, w) pairs; the row axis is the first."""
    return value if isinstance(value, int) else value[0]


def _padding(layer) -> int:
    padding = layer.padding
    if padding == "valid":
        return 0
    if padding == "same":
        return _first(layer.dilation) * (_first(layer.kernel_size) - 1) // 2
    return _first(padding)


def _window(g: Geometry, kernel: int, stride: int, padding: int, dilation: int) -> Geometry:
    """Convolution and pooling: output i looks at inputs i*S - P + t*D for t < K."""
    return Geometry(jump=g.jump * stride,
                    start=g.start + ((kernel - 1) * dilation / 2 - padding) * g.jump,
                    rf=g.rf + (kernel - 1) * dilation * g.jump)


def _transposed(g: Geometry, kernel: int, stride: int, padding: int, dilation: int) -> Geometry:
    """Transposed convolution: input i paints outputs i*S - P + t*D, so output j sits at
    input coordinate (j + P - (K-1)D/2) / S."""
    jump = g.jump / stride
    inputs_per_output = math.ceil(((kernel - 1) * dilation + 1) / stride)
    return Geometry(jump=jump,
                    start=g.start + (padding - (kernel - 1) * dilation / 2) * jump,
                    rf=g.rf + (inputs_per_output - 1) * g.jump)


def layer_geometry(layer, g: Geometry) -> Geometry:
    """The geometry of ``layer``'s output, given that of its (first) input.

    Layers that keep every pixel where it is (batch norm, activations, dropout, 1x1 maps of
    any kind) return ``g`` unchanged.
    """
    kind = type(layer).__name__
    if kind in ("Conv2d", "MaxPool2d", "AvgPool2d"):
        stride = layer.stride if layer.stride is not None else layer.kernel_size
        return _window(g, _first(layer.kernel_size), _first(stride), _padding(layer),
                       _first(getattr(layer, "dilation", 1)))
    if kind in ("ConvTranspose2d", "MaxUnpool2d"):
        stride = layer.stride if layer.stride is not None else layer.kernel_size
        return _transposed(g, _first(layer.kernel_size), _first(stride), _first(layer.padding),
                           _first(getattr(layer, "dilation", 1)))
    if kind == "Upsample":
        scale = layer.scale_factor
        if scale is None:
            raise ValueError("layer_geometry: Upsample(size=...) has no fixed scale; "
                             "use scale_factor to place its output")
        scale = _first(scale) if not isinstance(scale, float) else scale
        # bilinear/nearest with align_corners=False: output j samples input (j + 0.5)/s - 0.5
        taps = 2 if layer.mode == "bilinear" else 1
        return Geometry(jump=g.jump / scale, start=g.start + (0.5 / scale - 0.5) * g.jump,
                        rf=g.rf + (taps - 1) * g.jump)
    if kind == "Crop":
        offset = layer.offset if layer.offset is not None else (0, 0)
        return Geometry(jump=g.jump, start=g.start + _first(offset) * g.jump, rf=g.rf)
    return g


def chain_geometry(layers, g: Geometry | None = None) -> Geometry:
    """The geometry after applying ``layers`` in order (containers are walked to leaves)."""
    g = g or Geometry()
    for layer in layers:
        children = list(layer.children()) if hasattr(layer, "children") else []
        g = chain_geometry(children, g) if children else layer_geometry(layer, g)
    return g


def merge_geometry(where: str, *geometries: Geometry) -> Geometry:
    """Geometry of a sum or concatenation: inputs must be aligned pixel for pixel."""
    first = geometries[0]
    for other in geometries[1:]:
        if other.jump != first.jump or other.start != first.start:
            raise ValueError(f"{where}: inputs are not aligned (stride {first.jump} at "
                             f"{first.start} vs stride {other.jump} at {other.start}); "
                             f"crop one of them first")
    return Geometry(jump=first.jump, start=first.start, rf=max(g.rf for g in geometries))


def crop_offset(big: Geometry, small: Geometry) -> int:
    """Pixels to drop from the top (and left) of the ``big`` map so it aligns with ``small``.

    Both maps must have the same stride, and the offset must be a whole, non-negative number
    of pixels; anything else means the two cannot be aligned by cropping.
    """
    if big.jump != small.jump:
        raise ValueError(f"crop_offset: maps of different strides ({big.jump} vs {small.jump})")
    offset = (small.start - big.start) / big.jump
    if offset < 0 or offset != int(offset):
        raise ValueError(f"crop_offset: the maps are misaligned by {offset} pixels, which no "
                         f"crop can fix")
    return int(offset)
