"""Up-sampling by nearest-neighbour or bilinear interpolation, sampling exactly as PyTorch.

Notation: N batch, C channels, H x W the input's spatial size, OH x OW the output's.

Both modes are *separable*: every output row is a fixed blend of at most two input rows,
and every output column of at most two input columns. Written as two small dense
interpolation matrices, ``A_H`` (OH, H) and ``A_W`` (OW, W), each sample map is

    y[n, c] = A_H @ x[n, c] @ A_W.T          (forward)
    dx[n, c] = A_H.T @ dy[n, c] @ A_W        (backward: the adjoint is the transpose)

so the backward pass, the scatter-add of weighted gradients into the input pixels each
output read, needs neither ``add.at`` nor any loop: it is the same two matrix products with
the matrices transposed (:func:`_apply_separable` serves both directions). A row of ``A``
has at most two non-zeros, so the products do ``H`` (or ``W``) multiply-adds per output
where a gather does two; but each is one BLAS call with no temporaries, and for the score
maps FCN up-samples it is faster on NumPy than gathering rows and columns and blending them
(measured: 6x for (8, 21, 8, 8) -> x8, 3.5x for (1, 21, 16, 16) -> x32, 2.5x for
(8, 64, 32, 32) -> x2, still 1.5x for (4, 32, 128, 128) -> x2).
Nearest mode copies, so its forward pass gathers rows then columns instead: that is cheaper
and keeps every value bit-exact. The products are exact only for finite values: a NaN or an
infinity times a row's zero weights is NaN (``0 * inf``), which would spread over its whole
output row and column. So a bilinear forward whose input holds one blends each output pixel
from its two neighbours per axis instead, the terms PyTorch's kernel adds (slower: 2-10x on
the shapes above), and the non-finite value reaches only the pixels that read it, as in
PyTorch. The backward always uses the products: a non-finite ``dy`` spreads NaN over the
input rows and columns it reaches.

Where output pixel ``dst`` samples the input (PyTorch's ``area_pixel_compute_source_index``),
with ``ratio = 1 / scale_factor`` when a scale factor was given (PyTorch's default,
``recompute_scale_factor=None``) and ``ratio = in / out`` otherwise:

- nearest: ``src = min(floor(dst * ratio), in - 1)``, computed in float32 whatever the
  input's dtype, as PyTorch's float32 kernel does, including its two shortcuts: ``out ==
  in`` copies and ``out == 2 * in`` takes ``dst // 2``. This matters for non-integer factors:
  ``in = 5, scale_factor = 1.5`` gives ``out = 7`` sampled at ``dst / 1.5``, not ``dst * 5/7``;
  and ``in = 3, scale_factor = 1.1`` gives ``out = 3``, copied. (PyTorch's float64 kernels do
  this product in double precision, differently on the H and W axes, and differ from its
  float32 result by one pixel in rare cases where ``dst * ratio`` is an exact integer, e.g.
  2 -> 82 columns; we always follow the float32 rule.)
- bilinear, ``align_corners=False``: ``src = max(ratio * (dst + 0.5) - 0.5, 0)``: pixel
  centres line up, and borders replicate the edge pixel.
- bilinear, ``align_corners=True``: ``src = dst * (in - 1) / (out - 1)`` (0 when out == 1):
  the corner pixels line up and scale factors are ignored except for the output size.
- bilinear, either way: an axis whose size does not change is copied, ``src = dst``, even
  when a scale factor says otherwise (``in = 2, scale_factor = 1.25`` gives ``out = 2``).

and bilinear blends ``in[i0]`` and ``in[i1]`` with ``i0 = floor(src)``, ``i1 = min(i0 + 1,
in - 1)``, weights ``1 - (src - i0)`` and ``src - i0``, computed in the input's dtype as
PyTorch computes them.
"""

from __future__ import annotations

import math
from numbers import Real

from .. import checks
from ..backend import get_array_module, to_numpy

__all__ = [
    "upsample_backward",
    "upsample_forward",
    "upsample_output_size",
]

MODES = ("nearest", "bilinear")


def upsample_output_size(input_size, size=None, scale_factor=None,
                         recompute_scale_factor=None):
    """PyTorch's output size for ``F.interpolate`` and the scales its kernel samples with.

    Args:
        input_size: (H, W).
        size: (OH, OW) or None.
        scale_factor: a float or (SH, SW) floats, or None; exactly one of ``size`` and
            ``scale_factor``.
        recompute_scale_factor: if true, sample with ``in / out`` rather than ``1 / scale``.

    Returns:
        ``((OH, OW), scales)``: ``OH = floor(H * SH)`` in double precision as PyTorch
        computes it (so ``10 * 0.7`` gives 6, not 7), and ``scales``, the (SH, SW) that
        :func:`upsample_forward` should sample with, or None (sample with ``in / out``).
    """
    where = "upsample_output_size"
    if (size is None) == (scale_factor is None):
        raise ValueError(f"{where}: give exactly one of size and scale_factor, got "
                         f"size={size!r} and scale_factor={scale_factor!r}")
    input_size = checks.as_pair(where, "input_size", tuple(input_size), minimum=0)
    if size is not None:
        return checks.as_pair(where, "size", size, minimum=1), None
    if isinstance(scale_factor, Real) and not isinstance(scale_factor, bool):
        scale_factor = (scale_factor, scale_factor)
    if (not isinstance(scale_factor, (tuple, list)) or len(scale_factor) != 2 or not all(
            isinstance(s, Real) and not isinstance(s, bool) and s > 0 for s in scale_factor)):
        raise ValueError(f"{where}: scale_factor must be a positive number or a pair of "
                         f"them, got {scale_factor!r}")
    output_size = (int(input_size[0] * scale_factor[0]), int(input_size[1] * scale_factor[1]))
    return output_size, (None if recompute_scale_factor else tuple(scale_factor))


def _nearest_source(in_size: int, out_size: int, scale, xp):
    """(OUT,) int64 index of the input pixel that each output pixel copies."""
    if out_size == in_size:
        return xp.arange(out_size)
    if out_size == 2 * in_size:
        return xp.arange(out_size) // 2
    ratio = 1.0 / scale if scale else in_size / out_size
    # float32 on purpose (see the module docstring): a Python float times a float32 array
    # is rounded to float32 first, as PyTorch's ``static_cast<float>(ratio)``.
    src = xp.floor(xp.arange(out_size, dtype=xp.float32) * ratio)
    return xp.minimum(src.astype(xp.int64), in_size - 1)


def _linear_source(in_size: int, out_size: int, align_corners: bool, scale, xp, dtype):
    """Each output pixel as ``weight0 * in[index0] + weight1 * in[index1]``: four (OUT,)
    arrays, the indices int64, the weights in ``dtype``."""
    if out_size == in_size:  # PyTorch leaves an axis of unchanged size alone, whatever the
        index = xp.arange(out_size)  # scale factor: each pixel is its own
        return index, xp.ones(out_size, dtype=dtype), index, xp.zeros(out_size, dtype=dtype)
    dst = xp.arange(out_size, dtype=dtype)
    if align_corners:
        src = dst * ((in_size - 1) / (out_size - 1) if out_size > 1 else 0.0)
    else:
        ratio = 1.0 / scale if scale else in_size / out_size
        src = xp.maximum(ratio * (dst + 0.5) - 0.5, 0.0)
    floor = xp.floor(src)
    index0 = floor.astype(xp.int64)
    index1 = xp.minimum(index0 + 1, in_size - 1)
    weight1 = src - floor
    return index0, 1.0 - weight1, index1, weight1


def _one_hot(index, in_size: int, dtype, xp):
    """(OUT, IN) matrix with a 1 at ``[o, index[o]]``."""
    return (index[:, None] == xp.arange(in_size)).astype(dtype)


def _linear_matrix(source, in_size: int, dtype, xp):
    """(OUT, IN) matrix ``A`` of one axis, ``out = A @ in``, with two non-zeros per row, from
    :func:`_linear_source`'s indices and weights."""
    index0, weight0, index1, weight1 = source
    # Two terms, not one scattered assignment: index0 == index1 at the last pixel, and the
    # two weights must then add up rather than one overwrite the other.
    return (_one_hot(index0, in_size, dtype, xp) * weight0[:, None]
            + _one_hot(index1, in_size, dtype, xp) * weight1[:, None])


def _apply_separable(x, rows, cols):
    """``rows @ x[n, c] @ cols.T`` for every sample map: (N, C, H, W) -> (N, C, R, K) for
    ``rows`` (R, H) and ``cols`` (K, W)."""
    N, C, H, W = x.shape
    # Along W: one GEMM over all N * C * H rows at once.
    along_w = (x.reshape(N * C * H, W) @ cols.T).reshape(N, C, H, cols.shape[0])
    # Along H: (R, H) @ (N, C, H, K), one small GEMM per sample map.
    return rows @ along_w


def upsample_forward(x, size, mode: str = "nearest", align_corners=None, scales=None):
    """Resize every sample map of ``x`` to ``size`` (PyTorch's ``F.interpolate``).

    Args:
        x: (N, C, H, W) float array.
        size: (OH, OW), e.g. from :func:`upsample_output_size`.
        mode: ``"nearest"`` or ``"bilinear"``.
        align_corners: bilinear only; None counts as False.
        scales: (SH, SW) scale factors to sample with (PyTorch's ``scales_h``,
            ``scales_w``), or None to sample with ``H / OH`` and ``W / OW``.

    Returns:
        y: (N, C, OH, OW), same dtype and device as ``x``; cache for
        :func:`upsample_backward`.
    """
    where = "upsample_forward"
    checks.check_operands(where, x)
    if min(x.shape[1:]) == 0:
        raise ValueError(f"{where}: expected x with channels and pixels (only the batch may "
                         f"be empty), got x of shape {tuple(x.shape)}")
    OH, OW = checks.as_pair(where, "size", size, minimum=1)
    if mode not in MODES:
        raise ValueError(f"{where}: mode must be one of {MODES}, got {mode!r}")
    if mode == "nearest" and align_corners is not None:
        raise ValueError(f"{where}: align_corners is for bilinear, not nearest (as in "
                         f"PyTorch); leave it None")
    xp = get_array_module(x)
    N, C, H, W = x.shape
    if (OH, OW) == (H, W):  # as PyTorch: the same size is a copy, whatever the mode
        return x.copy(), None
    scale_h, scale_w = scales if scales is not None else (None, None)
    if mode == "nearest":
        rows = _nearest_source(H, OH, scale_h, xp)
        cols = _nearest_source(W, OW, scale_w, xp)
        y = xp.take(xp.take(x, rows, axis=2), cols, axis=3)
        return y, ("nearest", rows, cols, (H, W), x.dtype)
    rows = _linear_source(H, OH, bool(align_corners), scale_h, xp, x.dtype)
    cols = _linear_source(W, OW, bool(align_corners), scale_w, xp, x.dtype)
    # A finite sum proves every value finite (one NaN or infinity makes it NaN or infinite;
    # huge finite values may overflow it, which only sends them the slower way): a reduction
    # without a temporary, and one explicit read of a scalar on a GPU.
    if math.isfinite(to_numpy(x.sum())):
        y = _apply_separable(x, _linear_matrix(rows, H, x.dtype, xp),
                             _linear_matrix(cols, W, x.dtype, xp))
    else:  # each output pixel from its neighbours (the module docstring says why)
        y = x if OW == W else _lerp(x, 3, *cols)
        y = y if OH == H else _lerp(y, 2, *rows)
    return y, ("bilinear", rows, cols, (H, W), x.dtype)


def _lerp(x, axis: int, index0, weight0, index1, weight1):
    """``weight0 * x[index0] + weight1 * x[index1]`` along ``axis`` (weights broadcast)."""
    xp = get_array_module(x)
    shape = [1] * x.ndim
    shape[axis] = -1
    return (xp.take(x, index0, axis=axis) * weight0.reshape(shape)
            + xp.take(x, index1, axis=axis) * weight1.reshape(shape))


def upsample_backward(dy, cache):
    """Gradient of :func:`upsample_forward`.

    Args:
        dy: (N, C, OH, OW).
        cache: from the forward pass (the two interpolation matrices).

    Returns:
        dx: (N, C, H, W): each input pixel collects the gradients of the outputs that read
        it, weighted as they read it: the transposed interpolation matrices, made here (a
        forward under ``no_grad`` never needs them).
    """
    if cache is None:  # the forward was a copy
        return dy.copy()
    mode, rows, cols, (H, W), dtype = cache
    xp = get_array_module(dy)
    if mode == "nearest":
        A_H, A_W = _one_hot(rows, H, dtype, xp), _one_hot(cols, W, dtype, xp)
    else:
        A_H, A_W = _linear_matrix(rows, H, dtype, xp), _linear_matrix(cols, W, dtype, xp)
    return _apply_separable(dy, A_H.T, A_W.T)
