"""im2col and col2im: a whole convolution as one matrix product.

Notation: N batch, C channels, H x W input, KH x KW kernel, SH x SW stride, PH x PW zero
padding, DH x DW dilation, OH x OW output. Sizes, strides, paddings and dilations are pairs
``(height, width)``.

A convolution applies the same weights to every KH x KW window of the padded input.
``im2col`` copies those windows into the columns of one matrix, so that convolving the whole
batch is ONE matrix product (a GEMM, the fastest thing a CPU or GPU does)::

    cols = im2col(x, (KH, KW), stride, padding, dilation)     # (C*KH*KW, N*OH*OW)
    y_mat = weight.reshape(F, C * KH * KW) @ cols              # (F, N*OH*OW)

Layout. The rows of ``cols`` run over (C, KH, KW), the order of ``weight.reshape(F,
C*KH*KW)`` for PyTorch's weight layout (F, C, KH, KW), so the weight is used as it is, with
no copy. The columns run over (N, OH, OW): the batch is part of the one GEMM rather than a
Python loop of N small ones.

How, without a loop over pixels: kernel offset (i, j) sees, for all output pixels at once, the
padded input pixels ``x_padded[:, :, i*DH + oh*SH, j*DW + ow*SW]``: one strided slice. So
``im2col`` loops over the KH*KW offsets only, copying one slice each (this works the same on
NumPy and CuPy). ``col2im`` is its adjoint: it adds each offset's slice back into a zero
padded buffer (windows overlap, so contributions add up) and crops the padding. That is how
the gradient of a convolution reaches its input. No index arrays or ``np.add.at``: slow on
NumPy and restricted on CuPy.

A kernel larger than its output grid (FCN's x32 up-sampling: 64x64 offsets on a 2x2 grid)
turns both loops around: output pixel (oh, ow) sees one strided KH x KW patch, so the loop
runs over the OH*OW pixels instead, whichever is shorter (measured on FCN's x32 layer at
batch 16, forward and backward: 77 ms with 4096 tiny copies, 7 ms with 4).

The padded buffer is laid out (C, N, H + 2*PH, W + 2*PW), the order of ``cols``, so that the
one (N, C) -> (C, N) transpose happens in the padding copy and each offset's copy then runs
over rows in memory order (measured: col2im up to 27% faster than with an (N, C, ...) buffer).

Channels never mix in either function, so both split their channels into blocks that
threads copy at the same time (:func:`~minifcn.functional.parallel.for_blocks`; NumPy lets
go of the GIL while it copies). The loops inside are the same for one block or all of them.

Memory and speed: ``cols`` holds each input pixel about KH*KW/(SH*SW) times (9x for a 3x3
stride-1 kernel). Callers split the batch into chunks (:func:`batch_chunks`) so that one
``cols`` stays under a budget, which depends on the device unless the context manager
:func:`im2col_budget` sets it:

- on a GPU, :data:`GPU_IM2COL_BUDGET` (256 MiB): the fewer and larger the GEMMs, the busier
  the GPU;
- on the CPU, :data:`CPU_IM2COL_BUDGET` (32 MiB, about a processor's L3 cache). Splitting
  costs the CPU little, and it keeps each buffer small: the workspace then holds a step's
  buffers from one step to the next instead of dropping the largest and page-faulting them
  in again, and each GEMM reads columns written a moment before. Measured on an FCN-8s
  training step, batch 8, against a 256 MiB budget: 256x256 images 3.5 -> 1.3 s a step
  with one thread, 1.7-1.9 -> 1.0 s with two; 128x128 up to 30% faster. On 64x64 images
  FCN-8s at batch 8 (``minifcn train``'s default) fits one chunk in every layer; at batch
  16, and U-Net at 8, the largest layers split in two or three, for -6% to +3% a step.

The buffers come from :mod:`~minifcn.functional.workspace`, which reuses the large arrays
of one training step in the next instead of page-faulting fresh memory in every time.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

from .. import checks
from ..backend import get_array_module, np
from .parallel import even_slices, for_blocks
from .workspace import give, take

__all__ = [
    "CPU_IM2COL_BUDGET",
    "GPU_IM2COL_BUDGET",
    "band_input_rows",
    "batch_chunks",
    "col2im",
    "conv_chunks",
    "conv_output_size",
    "conv_transpose_output_size",
    "default_im2col_budget",
    "im2col",
    "im2col_budget",
]

Pair = tuple[int, int]

GPU_IM2COL_BUDGET = 256 * 2**20
"""Bytes one ``cols`` buffer may take on a GPU (256 MiB) unless :func:`im2col_budget` says
otherwise."""

CPU_IM2COL_BUDGET = 32 * 2**20
"""Bytes one ``cols`` buffer may take on the CPU (32 MiB) unless :func:`im2col_budget` says
otherwise. Smaller budgets (2-12 MiB) made 64x64 steps 4-10% faster with one thread but
anywhere from 3% faster to 17% slower with OpenBLAS's two threads."""

_budget: int | None = None  # set by im2col_budget; None: the device's default


def default_im2col_budget(xp) -> int:
    """The budget on ``xp``'s device when :func:`im2col_budget` sets none: the CPU's for
    NumPy, the GPU's for CuPy (and for the strict stand-in, which plays CuPy)."""
    return CPU_IM2COL_BUDGET if xp is np else GPU_IM2COL_BUDGET


@contextlib.contextmanager
def im2col_budget(nbytes: int) -> Iterator[None]:
    """Within the block, one im2col buffer takes at most ``nbytes`` (by splitting the batch),
    on any device, instead of the device's default (:func:`default_im2col_budget`).

    A smaller budget saves memory on large images at the cost of more, smaller GEMMs, and of
    recomputing ``cols`` in backward instead of keeping it from forward (a layer whose whole
    batch fits keeps its ``cols`` until its backward)::

        with im2col_budget(64 * 2**20):
            y = model(x)
    """
    global _budget
    if int(nbytes) < 1:
        raise ValueError(f"im2col_budget: nbytes must be >= 1, got {nbytes!r}")
    previous, _budget = _budget, int(nbytes)
    try:
        yield
    finally:
        _budget = previous


def batch_chunks(xp, batch: int, bytes_per_sample: int) -> list[slice]:
    """Consecutive slices of ``range(batch)`` whose im2col buffers fit the budget on ``xp``'s
    device: the fewest chunks that fit, of sizes that differ by at most one (two chunks of
    4 rather than one of 5 and one of 3: the largest buffer is as small as it can be).

    A single sample larger than the budget still goes alone in one chunk; an empty batch
    has no chunks.
    """
    if batch == 0:
        return []
    per_chunk = max(1, _current_budget(xp) // max(1, bytes_per_sample))
    return even_slices(batch, -(-batch // per_chunk))  # the fewest chunks that fit


def _current_budget(xp) -> int:
    return default_im2col_budget(xp) if _budget is None else _budget


def conv_chunks(xp, batch: int, output_rows: int, bytes_per_row: int
                ) -> list[tuple[slice, slice]]:
    """The pieces a convolution works on, ``(samples, output rows)``, each piece's im2col
    buffer within the budget on ``xp``'s device.

    Whole images when one image's buffer (``output_rows * bytes_per_row``) fits: the
    fewest batch chunks, as :func:`batch_chunks`. Otherwise one image at a time, in bands
    of output rows, the fewest that fit, of near-equal heights (a band may be one row).
    This is what bounds memory for any image size: a 12-megapixel photo's first layers
    would need gigabytes of columns at once.
    """
    rows = slice(0, output_rows)
    per_row = max(1, bytes_per_row)
    if output_rows * per_row <= _current_budget(xp) or output_rows == 0:
        return [(samples, rows) for samples in
                batch_chunks(xp, batch, output_rows * per_row)]
    per_band = max(1, _current_budget(xp) // per_row)
    bands = even_slices(output_rows, -(-output_rows // per_band))
    return [(slice(n, n + 1), band) for n in range(batch) for band in bands]


def band_input_rows(rows: slice, height: int, kernel: int, stride: int, padding: int,
                    dilation: int) -> slice:
    """The input rows (of an unpadded input of ``height`` rows) that output rows ``rows``
    read: the band plus its halo, the ``dilation * (kernel - 1)`` rows below it that its
    last windows reach, clipped to the image (the rest is zero padding)."""
    first = rows.start * stride - padding
    last = (rows.stop - 1) * stride + dilation * (kernel - 1) - padding
    start = min(max(first, 0), height)
    return slice(start, max(start, min(last + 1, height)))  # empty: the band reads padding


def conv_output_size(size: Pair, kernel_size: Pair, stride: Pair, padding: Pair,
                     dilation: Pair) -> Pair:
    """``(OH, OW)`` of a convolution of an ``(H, W)`` input, per axis::

        OH = floor((H + 2*PH - DH*(KH - 1) - 1) / SH) + 1

    ``DH*(KH - 1) + 1`` is the extent of the dilated kernel; a ``ValueError`` when it is larger
    than the padded input (no window fits).

    Example: a 3x3 kernel with stride 2 and padding 1 halves a 32 x 48 input:

        >>> from minifcn.functional import conv_output_size
        >>> conv_output_size((32, 48), kernel_size=(3, 3), stride=(2, 2), padding=(1, 1),
        ...                  dilation=(1, 1))
        (16, 24)
    """
    span = tuple(d * (k - 1) + 1 for k, d in zip(kernel_size, dilation, strict=True))
    padded = tuple(n + 2 * p for n, p in zip(size, padding, strict=True))
    if any(e > n for e, n in zip(span, padded, strict=True)):
        raise ValueError(f"kernel_size={tuple(kernel_size)} with dilation={tuple(dilation)} "
                         f"spans {span} pixels, more than the padded input {padded} "
                         f"(input {tuple(size)} plus padding={tuple(padding)} on each side)")
    return tuple((n - e) // s + 1 for n, e, s in zip(padded, span, stride, strict=True))


def conv_transpose_output_size(size: Pair, kernel_size: Pair, stride: Pair, padding: Pair,
                               output_padding: Pair, dilation: Pair) -> Pair:
    """``(OH, OW)`` of a transposed convolution of an ``(H, W)`` input, per axis::

        OH = (H - 1)*SH - 2*PH + DH*(KH - 1) + output_padding_h + 1

    the largest input a convolution with these arguments maps to ``(H, W)``, less the rows
    ``output_padding`` does not add back. A ``ValueError`` when the padding crops it below 1.
    """
    out = tuple((n - 1) * s - 2 * p + d * (k - 1) + op + 1
                for n, k, s, p, op, d in zip(size, kernel_size, stride, padding,
                                             output_padding, dilation, strict=True))
    if min(out) < 1:
        raise ValueError(f"the output would be {out} pixels: padding={tuple(padding)} crops "
                         f"more than the input {tuple(size)} spreads to with "
                         f"kernel_size={tuple(kernel_size)}, stride={tuple(stride)}, "
                         f"dilation={tuple(dilation)}")
    return out


def _window(i: int, j: int, output_size: Pair, stride: Pair, dilation: Pair):
    """The (row, column) slices of the padded input that kernel offset (i, j) sees."""
    (OH, OW), (SH, SW), (DH, DW) = output_size, stride, dilation
    return (slice(i * DH, i * DH + SH * (OH - 1) + 1, SH),
            slice(j * DW, j * DW + SW * (OW - 1) + 1, SW))


def _patch(oh: int, ow: int, kernel_size: Pair, stride: Pair, dilation: Pair):
    """The (row, column) slices of the padded input that output pixel (oh, ow) sees."""
    (KH, KW), (SH, SW), (DH, DW) = kernel_size, stride, dilation
    return (slice(oh * SH, oh * SH + DH * (KH - 1) + 1, DH),
            slice(ow * SW, ow * SW + DW * (KW - 1) + 1, DW))


def _band(x_height: int, kernel_size: Pair, stride: Pair, padding: Pair, dilation: Pair,
          output_size: Pair, rows: slice | None):
    """Where a band of output rows reads its input, in the padded buffer of the band.

    Returns (band rows, band output size, rows of the band's padded buffer, input rows it
    copies, the buffer row they start at). The buffer's row 0 is padded row
    ``rows.start * SH``: output row ``r`` of the band reads buffer rows ``r*SH + i*DH``,
    exactly as a whole image's output row reads its padded rows. Without a band, the whole
    padded image.
    """
    (KH, _), (SH, _), (PH, _), (DH, _) = kernel_size, stride, padding, dilation
    if rows is None:  # the whole image: every padded row, as the windows may not reach all
        return slice(0, output_size[0]), output_size, x_height + 2 * PH, slice(0, x_height), PH
    band_height = (rows.stop - rows.start - 1) * SH + DH * (KH - 1) + 1
    inputs = band_input_rows(rows, x_height, KH, SH, PH, DH)
    at = inputs.start + PH - rows.start * SH  # buffer row of the first input row
    return rows, (rows.stop - rows.start, output_size[1]), band_height, inputs, at


def _window_pairs(where: str, kernel_size, stride, padding, dilation):
    """The four window arguments as pairs, each in its range."""
    return (checks.as_pair(where, "kernel_size", kernel_size, minimum=1),
            checks.as_pair(where, "stride", stride, minimum=1),
            checks.as_pair(where, "padding", padding, minimum=0),
            checks.as_pair(where, "dilation", dilation, minimum=1))


def im2col(x, kernel_size: Pair, stride: Pair, padding: Pair, dilation: Pair,
           output_size: Pair | None = None, rows: slice | None = None):
    """The KH x KW windows of ``x`` as the columns of one matrix: :func:`im2col_unchecked`
    (which says what they are) after checking its arguments, as PyTorch's ``F.unfold``
    takes them (ints or pairs; x (N, C, H, W) with channels and pixels)."""
    checks.check_operands("im2col", x)
    if x.shape[0] and min(x.shape[1:]) == 0:
        raise ValueError(f"im2col: expected x with channels and pixels (only the batch may be "
                         f"empty), got x of shape {tuple(x.shape)}")
    kernel_size, stride, padding, dilation = _window_pairs("im2col", kernel_size, stride,
                                                           padding, dilation)
    if output_size is None:
        output_size = checks.naming("im2col", conv_output_size, x.shape[2:], kernel_size,
                                    stride, padding, dilation)
    return im2col_unchecked(x, kernel_size, stride, padding, dilation, output_size, rows)


def im2col_unchecked(x, kernel_size: Pair, stride: Pair, padding: Pair, dilation: Pair,
                     output_size: Pair | None = None, rows: slice | None = None):
    """The KH x KW windows of ``x`` as the columns of one matrix.

    Args:
        x: (N, C, H, W).
        kernel_size, stride, padding, dilation: pairs (height, width).
        output_size: the (OH, OW) grid of windows to take; default :func:`conv_output_size`.
            A transposed convolution's backward asks for fewer (see ``conv.py``).
        rows: a band of output rows ``r0:r1`` to take the windows of (default all): the
            columns of a band read only its input rows and the halo below them
            (:func:`band_input_rows`), so a band's buffer is a band's size.

    Returns:
        cols: (C*KH*KW, N*R*OW) for the R output rows, ``cols[(c, i, j), (n, r, ow)] =
        x_padded[n, c, (r0 + r)*SH + i*DH, ow*SW + j*DW]``.
    """
    N, C, H, W = x.shape
    KH, KW = kernel_size
    PH, PW = padding
    if output_size is None:
        output_size = conv_output_size((H, W), kernel_size, stride, padding, dilation)
    rows, output_size, band_height, inputs, at = _band(H, kernel_size, stride, padding,
                                                       dilation, output_size, rows)
    OH, OW = output_size
    xp = get_array_module(x)
    x_padded = take(xp, (C, N, band_height, W + 2 * PW), x.dtype)
    cols = take(xp, (C, KH, KW, N, OH, OW), x.dtype)
    below = band_height - at - (inputs.stop - inputs.start)  # zero rows under the input

    def copy_channels(c0: int, c1: int) -> None:  # channels c0:c1, independent of the rest
        padded, block = x_padded[c0:c1], cols[c0:c1]
        _zero_border(padded, at, below, PW)  # a reused buffer: only the border needs clearing
        padded[:, :, at:at + inputs.stop - inputs.start, PW:PW + W] = (
            x[:, c0:c1, inputs].transpose(1, 0, 2, 3))
        if KH * KW <= OH * OW:
            for i in range(KH):
                for j in range(KW):
                    rows, columns = _window(i, j, output_size, stride, dilation)
                    block[:, i, j] = padded[:, :, rows, columns]
        else:  # a big kernel on a small grid (FCN's x32 layer: 64x64 on 2x2): loop the grid
            for oh in range(OH):
                for ow in range(OW):
                    rows, columns = _patch(oh, ow, kernel_size, stride, dilation)
                    block[:, :, :, :, oh, ow] = padded[:, :, rows, columns].transpose(0, 2, 3, 1)

    for_blocks(xp, C, cols.nbytes, copy_channels)
    give(x_padded)
    return cols.reshape(C * KH * KW, N * OH * OW)


def _zero_border(x_padded, top: int, bottom: int, PW: int) -> None:
    """Zero ``top`` and ``bottom`` rows and PW columns on each side of (..., rows, W + 2*PW)."""
    height = x_padded.shape[-2]
    if top:
        x_padded[..., :top, :] = 0
    if bottom:
        x_padded[..., height - bottom:, :] = 0
    if PW:
        x_padded[..., top:height - bottom, :PW] = 0
        x_padded[..., top:height - bottom, -PW:] = 0


def col2im(cols, x_shape: tuple[int, int, int, int], kernel_size: Pair, stride: Pair,
           padding: Pair, dilation: Pair, output_size: Pair | None = None,
           rows: slice | None = None):
    """The adjoint of :func:`im2col`: :func:`col2im_unchecked` (which says what it does)
    after checking its arguments, as PyTorch's ``F.fold`` takes them."""
    checks.check_operands("col2im", cols, ndim=2)
    if (not isinstance(x_shape, (tuple, list)) or len(x_shape) != 4 or not all(
            isinstance(n, int) and not isinstance(n, bool) and n >= 0 for n in x_shape)):
        raise ValueError(f"col2im: x_shape must be four ints >= 0 (N, C, H, W), got "
                         f"{x_shape!r}")
    kernel_size, stride, padding, dilation = _window_pairs("col2im", kernel_size, stride,
                                                           padding, dilation)
    N, C, H, W = x_shape
    if output_size is None:
        output_size = checks.naming("col2im", conv_output_size, (H, W), kernel_size, stride,
                                    padding, dilation)
    (KH, KW), (OH, OW) = kernel_size, output_size
    if rows is None and tuple(cols.shape) != (C * KH * KW, N * OH * OW):
        raise ValueError(f"col2im: expected cols of shape (C*KH*KW, N*OH*OW) = "
                         f"{(C * KH * KW, N * OH * OW)} for x_shape {tuple(x_shape)}, got "
                         f"{tuple(cols.shape)}")
    return col2im_unchecked(cols, x_shape, kernel_size, stride, padding, dilation,
                            output_size, rows)


def col2im_unchecked(cols, x_shape: tuple[int, int, int, int], kernel_size: Pair,
                     stride: Pair, padding: Pair, dilation: Pair,
                     output_size: Pair | None = None, rows: slice | None = None):
    """The adjoint of :func:`im2col`: add every column back where its window came from.

    ``<im2col(x), cols> == <x, col2im(cols)>`` for all ``x`` and ``cols``. An input pixel in
    several windows receives the sum of their entries.

    Args:
        cols: (C*KH*KW, N*R*OW), laid out as :func:`im2col` returns.
        x_shape: (N, C, H, W), the shape of the image to rebuild.
        kernel_size, stride, padding, dilation, output_size: as for :func:`im2col`.
        rows: the band of output rows ``cols`` holds (default all of them).

    Returns:
        (N, C, H, W) for the whole image, or for a band (N, C, R', W), its contributions to
        input rows :func:`band_input_rows` (a band's halo rows overlap the next band's, so
        add bands up): a new array (a transposed view of a larger buffer: copy it into
        place, after which a caller may hand the buffer back with ``workspace.give``).
    """
    N, C, H, W = x_shape
    KH, KW = kernel_size
    PW = padding[1]
    if output_size is None:
        output_size = conv_output_size((H, W), kernel_size, stride, padding, dilation)
    rows, output_size, band_height, inputs, at = _band(H, kernel_size, stride, padding,
                                                       dilation, output_size, rows)
    OH, OW = output_size
    xp = get_array_module(cols)
    cols = cols.reshape(C, KH, KW, N, OH, OW)
    x_padded = take(xp, (C, N, band_height, W + 2 * PW), cols.dtype)

    def add_channels(c0: int, c1: int) -> None:  # channels c0:c1, independent of the rest
        padded, block = x_padded[c0:c1], cols[c0:c1]
        padded[...] = 0
        if KH * KW <= OH * OW:
            for i in range(KH):
                for j in range(KW):
                    rows, columns = _window(i, j, output_size, stride, dilation)
                    padded[:, :, rows, columns] += block[:, i, j]
        else:  # as in im2col: the shorter loop, over the output grid
            for oh in range(OH):
                for ow in range(OW):
                    rows, columns = _patch(oh, ow, kernel_size, stride, dilation)
                    padded[:, :, rows, columns] += block[:, :, :, :, oh, ow].transpose(0, 3, 1, 2)

    for_blocks(xp, C, cols.nbytes, add_channels)
    return x_padded[:, :, at:at + inputs.stop - inputs.start, PW:PW + W].transpose(1, 0, 2, 3)
