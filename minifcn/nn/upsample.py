"""``Upsample`` (nearest or bilinear), as ``torch.nn.Upsample``, and its two fixed-mode
shorthands ``UpsamplingNearest2d`` and ``UpsamplingBilinear2d``."""

from __future__ import annotations

from numbers import Real

from ..backend import is_array
from ..checks import as_pair, check_cache, check_grad, check_input
from ..functional.upsample import (
    MODES,
    upsample_backward,
    upsample_forward,
    upsample_output_size,
)
from .module import Module

__all__ = ["Upsample", "UpsamplingBilinear2d", "UpsamplingNearest2d"]


def _scale_pair(where: str, scale_factor) -> tuple[float, float]:
    """A positive scale factor, or a pair of them, as a pair of floats ``(SH, SW)``."""
    values = scale_factor if isinstance(scale_factor, (tuple, list)) else (scale_factor,) * 2
    if len(values) != 2 or not all(isinstance(v, Real) and not isinstance(v, bool)
                                    for v in values):
        raise TypeError(f"{where}: scale_factor must be a number or a pair of numbers, "
                        f"got {scale_factor!r}")
    if not all(float(v) > 0.0 for v in values):
        raise ValueError(f"{where}: scale_factor must be positive, got {scale_factor!r}")
    return float(values[0]), float(values[1])


class Upsample(Module):
    """Resize (N, C, H, W) to (N, C, OH, OW) by nearest-neighbour or bilinear interpolation.

    Give exactly one of ``size`` (an int or (OH, OW)) and ``scale_factor`` (a number or
    (SH, SW); then ``OH = floor(H * SH)``). Sampling follows PyTorch exactly; see
    :mod:`minifcn.functional.upsample` for the formulas, including how a non-integer scale
    factor samples with ``1 / scale_factor`` unless ``recompute_scale_factor=True``.

    ``align_corners`` is for ``"bilinear"`` only (None means False, PyTorch's default); with
    ``"nearest"`` it must stay None, as PyTorch requires.

    Only 4-D input: to PyTorch's ``Upsample`` a 3-D input is (N, C, L), resized along L
    alone (1-D interpolation), not one (C, H, W) image; minifcn does not do 1-D resizing and
    refuses it (pass ``x[None]`` for one image).
    """

    def __init__(self, size=None, scale_factor=None, mode: str = "nearest",
                 align_corners: bool | None = None, recompute_scale_factor: bool | None = None):
        super().__init__()
        where = f"{type(self).__name__}(size={size!r}, scale_factor={scale_factor!r})"
        if mode not in MODES:
            raise ValueError(f"{where}: mode must be one of {MODES}, got {mode!r}")
        if (size is None) == (scale_factor is None):
            raise ValueError(f"{where}: give exactly one of size and scale_factor")
        if align_corners is not None and mode == "nearest":
            raise ValueError(f"{where}: align_corners can only be set with mode 'bilinear', "
                             f"got align_corners={align_corners!r} with mode 'nearest'")
        if align_corners is not None and not isinstance(align_corners, bool):
            raise TypeError(f"{where}: align_corners must be True, False or None, "
                            f"got {align_corners!r}")
        if recompute_scale_factor and size is not None:
            raise ValueError(f"{where}: recompute_scale_factor is not meaningful with an "
                             f"explicit size")
        self._size = None if size is None else as_pair(where, "size", size, minimum=1)
        self._scale_factor = None if scale_factor is None else _scale_pair(where, scale_factor)
        # As PyTorch keeps them, which is what extra_repr shows.
        self.size = size
        if isinstance(scale_factor, Real):
            self.scale_factor = float(scale_factor)
        else:
            self.scale_factor = None if scale_factor is None else self._scale_factor
        self.mode = mode
        self.align_corners = align_corners
        self.recompute_scale_factor = recompute_scale_factor
        self._cache = None

    @property
    def _where(self) -> str:
        return f"{type(self).__name__}({self.extra_repr()})"

    def forward(self, x):
        """x (N, C, H, W) -> y (N, C, OH, OW)."""
        if is_array(x) and x.ndim == 3:
            raise ValueError(f"{self._where}: expected x of rank 4 (N, C, H, W), got x of shape "
                             f"{tuple(x.shape)}; PyTorch reads a 3-D input as (N, C, L) and "
                             f"resizes L alone, which minifcn does not do; for one (C, H, W) "
                             f"image pass x[None]")
        check_input(self._where, x, ndim=4)
        size, scales = upsample_output_size(x.shape[2:], self._size, self._scale_factor,
                                            self.recompute_scale_factor)
        if min(size) < 1 or min(x.shape[1:]) < 1:  # as PyTorch: nothing to interpolate
            raise ValueError(f"{self._where}: input and output sizes must be at least 1 "
                             f"pixel (and 1 channel), got x of shape {tuple(x.shape)} and "
                             f"an output of size {size}")
        y, cache = upsample_forward(x, size, self.mode, self.align_corners, scales)
        self._cache = (cache, y.shape, y.dtype)
        return y

    def backward(self, dy):
        """dy (N, C, OH, OW) -> dx (N, C, H, W)."""
        check_cache(self._where, self._cache)
        cache, shape, dtype = self._cache
        check_grad(self._where, dy, shape, dtype)
        dx = upsample_backward(dy, cache)
        self._cache = None
        return dx

    def extra_repr(self) -> str:
        if self.scale_factor is not None:
            return f"scale_factor={self.scale_factor!r}, mode={self.mode!r}"
        return f"size={self.size!r}, mode={self.mode!r}"


class UpsamplingNearest2d(Upsample):
    """``Upsample(size, scale_factor, mode="nearest")``, as PyTorch's."""

    def __init__(self, size=None, scale_factor=None):
        super().__init__(size, scale_factor, mode="nearest")


class UpsamplingBilinear2d(Upsample):
    """``Upsample(size, scale_factor, mode="bilinear", align_corners=True)``, as PyTorch's."""

    def __init__(self, size=None, scale_factor=None):
        super().__init__(size, scale_factor, mode="bilinear", align_corners=True)
