"""Convolution and transposed convolution, forward and backward, as matrix products.

Notation: N batch, C input channels, F output channels (filters), H x W input, KH x KW
kernel, SH x SW stride, PH x PW zero padding, DH x DW dilation, OH x OW output, G groups.
``stride``, ``padding``, ``dilation`` and ``output_padding`` are ints or pairs (height,
width), as in PyTorch; weights have PyTorch's layouts.

With ``cols = im2col(x)`` of shape (C*KH*KW, N*OH*OW) and ``W_mat = weight.reshape(F,
C*KH*KW)``, a convolution and its gradients are three GEMMs::

    y_mat  = W_mat @ cols           forward                     (F, N*OH*OW)
    dW_mat = dy_mat @ cols.T        weight gradient             (F, C*KH*KW)
    dcols  = W_mat.T @ dy_mat       input gradient, then col2im (C*KH*KW, N*OH*OW)

At stride 1 with no more output than input channels, ``conv2d_input_grad`` computes the
same dx as one more convolution, of dy with the kernel flipped in space and its channels
swapped: copying dy's columns beats col2im's adding (measured numbers in the function).

A transposed convolution is the convolution's input gradient used as a layer: its forward
IS :func:`conv2d_input_grad`, so its backward is the adjoint of that, which is the
convolution's forward (for dx) and the convolution's weight gradient with x and dy trading
places (for dW). The code below says exactly that.

Groups (``groups=G``, PyTorch's grouped and depthwise convolutions): the C input channels
and the F output channels are cut into G consecutive blocks, and output block g sees input
block g only, so the weight is (F, C/G, KH, KW). The rows of ``cols`` run over (C, KH, KW),
so they already come in G blocks of C/G*KH*KW rows, and each of the three GEMMs becomes one
batched matrix product over a leading group axis (:func:`_group_matmul`); groups=1 keeps the
plain 2-D product. Depthwise is G = C (with F = k*C, a channel multiplier of k).

Memory: the work is split into pieces whose im2col buffer fits the budget of
:func:`minifcn.functional.im2col.conv_chunks` (by default 32 MiB on the CPU, where small
buffers stay in the workspace and nearer the cache, and 256 MiB on a GPU): chunks of the
batch, or, when one image alone is too large, bands of its output rows (with the halo rows
below each band that its windows reach), so that the columns stay within the budget for
any image size. When the whole batch fits in one piece, ``conv2d_forward`` keeps ``cols``
in its cache so backward needs no second im2col (measured: 3-11% of a forward+backward);
otherwise backward recomputes it piece by piece. So the budget also bounds what each layer
holds between its forward and backward.

Non-finite values: the GEMMs multiply the zero padding in like any other value, and 0 * NaN
and 0 * inf are NaN. So a NaN or an infinity in a transposed convolution's x whose taps
reach only the cropped-away border (``padding``) makes its weight gradient NaN, where
PyTorch, which skips padded taps, may keep it finite. Finite values are not affected.

``conv2d_naive`` and ``conv_transpose2d_naive`` compute the same things from the textbook
definitions, with loops. They are slow; they are here to read, and as test oracles.
"""

from __future__ import annotations

import math
from typing import NamedTuple

from .. import checks
from ..backend import get_array_module
from ..checks import as_pair
from .im2col import (
    band_input_rows,
    col2im_unchecked,
    conv_chunks,
    conv_output_size,
    conv_transpose_output_size,
    im2col_unchecked,
)
from .workspace import give, take

__all__ = [
    "Conv2dCache",
    "ConvTranspose2dCache",
    "conv2d_backward",
    "conv2d_forward",
    "conv2d_input_grad",
    "conv2d_naive",
    "conv2d_weight_grad",
    "conv_transpose2d_backward",
    "conv_transpose2d_forward",
    "conv_transpose2d_naive",
    "release",
]

Pair = tuple[int, int]


class Conv2dCache(NamedTuple):
    """What :func:`conv2d_backward` needs from :func:`conv2d_forward`."""

    x: object
    weight: object
    has_bias: bool
    stride: Pair
    padding: Pair
    dilation: Pair
    cols: object | None  # im2col(x) when the batch fitted in one chunk, else None
    groups: int = 1


class ConvTranspose2dCache(NamedTuple):
    """What :func:`conv_transpose2d_backward` needs from :func:`conv_transpose2d_forward`."""

    x: object
    weight: object
    has_bias: bool
    stride: Pair
    padding: Pair
    dilation: Pair
    groups: int = 1


def _geometry(where: str, stride, padding, dilation) -> tuple[Pair, Pair, Pair]:
    """``stride``, ``padding``, ``dilation`` as pairs (ints are used for both axes)."""
    return (as_pair(where, "stride", stride, minimum=1),
            as_pair(where, "padding", padding, minimum=0),
            as_pair(where, "dilation", dilation, minimum=1))


def _check_groups(where: str, channels: int, weight, groups: int, transposed: bool) -> None:
    """``groups`` divides both channel counts and the weight has its group-sized axis
    (PyTorch's layouts), so that a mismatch is one clear error, not a failed reshape."""
    if isinstance(groups, bool) or not isinstance(groups, int) or groups < 1:
        raise ValueError(f"{where}: groups must be an int >= 1, got {groups!r}")
    if transposed:
        layout, per_group_axis, expected = "(C_in, C_out/G, KH, KW)", 0, channels
    else:
        layout, per_group_axis, expected = "(F, C/G, KH, KW)", 1, channels // groups
    outer = weight.shape[0]
    if channels % groups or outer % groups or weight.shape[per_group_axis] != expected:
        raise ValueError(f"{where}: with groups={groups}, expected a weight {layout} for x "
                         f"with {channels} channels (both channel counts divisible by "
                         f"groups), got weight of shape {tuple(weight.shape)}")


def _check_call(where: str, x, weight, bias, groups: int, transposed: bool) -> None:
    """The arrays of a forward, as PyTorch takes them: x (N, C, H, W) of a float dtype, with
    pixels unless the batch or the channels are empty; the weight in x's dtype and the
    layout ``groups`` asks for; the bias (C_out,) or None."""
    checks.check_operands(where, x, weight=(weight, (None,) * 4))
    _check_groups(where, x.shape[1], weight, groups, transposed)
    out_channels = weight.shape[1] * groups if transposed else weight.shape[0]
    checks.check_operands(where, x, bias=(bias, (out_channels,)))
    if x.shape[0] and x.shape[1] and min(x.shape[2:]) == 0:
        raise ValueError(f"{where}: expected an image of at least 1 x 1 pixels (only the "
                         f"batch or the channels may be empty), got x of shape "
                         f"{tuple(x.shape)}")


def _check_output_padding(where: str, output_padding, stride: Pair, dilation: Pair) -> Pair:
    """PyTorch's rule: each output padding below that axis's stride or dilation (more
    would add rows no input pixel reaches)."""
    output_padding = as_pair(where, "output_padding", output_padding, minimum=0)
    if any(op >= max(s, d) for op, s, d in zip(output_padding, stride, dilation, strict=True)):
        raise ValueError(f"{where}: output_padding must be smaller than either stride or "
                         f"dilation, got output_padding={output_padding} with "
                         f"stride={stride} and dilation={dilation}")
    return output_padding


def _to_matrix(a):
    """(N, F, OH, OW) -> (F, N*OH*OW): channels first, the layout of ``W_mat @ cols``; a copy
    in a workspace buffer (give it back when done)."""
    N, F, OH, OW = a.shape
    matrix = take(get_array_module(a), (F, N, OH, OW), a.dtype)
    matrix[...] = a.transpose(1, 0, 2, 3)
    return matrix.reshape(F, N * OH * OW)


def _from_matrix(a_mat, batch: int, size: Pair):
    """(F, N*OH*OW) -> (N, F, OH, OW), a view: the inverse of :func:`_to_matrix`."""
    return a_mat.reshape(a_mat.shape[0], batch, *size).transpose(1, 0, 2, 3)


def _group_matmul(a, b, groups: int, transpose_a: bool = False, transpose_b: bool = False):
    """``a @ b`` (with ``a.T``/``b.T`` as asked) done block by block for ``groups`` blocks.

    ``a`` (G*M, K) and ``b`` (G*K', L) are split along their first axis into G blocks,
    each block is transposed if asked, block g of ``a`` multiplies block g of ``b`` (one
    batched matmul over the group axis, no Python loop) and the products are stacked back
    along the first axis. With one group this is exactly ``a @ b``.
    """
    xp = get_array_module(a, b)
    if groups == 1:  # the product in a workspace buffer (give it back when done)
        a, b = (a.T if transpose_a else a), (b.T if transpose_b else b)
        return xp.matmul(a, b, out=take(xp, (a.shape[0], b.shape[1]), a.dtype))
    blocks_a = a.reshape(groups, a.shape[0] // groups, a.shape[1])
    blocks_b = b.reshape(groups, b.shape[0] // groups, b.shape[1])
    if transpose_a:
        blocks_a = blocks_a.transpose(0, 2, 1)
    if transpose_b:
        blocks_b = blocks_b.transpose(0, 2, 1)
    product = xp.matmul(blocks_a, blocks_b)  # (G, rows per group, columns)
    return product.reshape(-1, product.shape[2])


# The weight gradient dy_mat @ cols.T is (F, C*KH*KW) from a reduction over the N*OH*OW
# columns. OpenBLAS computes the same product far faster as (cols @ dy_mat.T).T when that
# reduction is long (measured, minima over repeats, 2 cores: 16->32 channels on (8,16,64,64)
# 19.4 -> 3.5 ms; (8,32,32,32) -> 32: 1.8 -> 1.2 ms) and a little slower when it is short
# (128 channels on 4x4 maps: 0.24 -> 0.33 ms); so the transposed form from this many columns.
_TRANSPOSED_DW_COLUMNS = 1024


def _weight_grad_mat(dy_mat, cols, groups: int):
    """``dy_mat @ cols.T`` per group, (F, C/G*KH*KW); the GEMM in its faster form."""
    if groups == 1 and cols.shape[1] >= _TRANSPOSED_DW_COLUMNS:
        return (cols @ dy_mat.T).T
    return _group_matmul(dy_mat, cols, groups, transpose_b=True)


def _pieces(xp, batch: int, channels: int, kernel_size: Pair, output_size: Pair, dtype):
    """:func:`~minifcn.functional.im2col.conv_chunks` for a convolution: one output row of
    one sample takes C*KH*KW*OW entries of im2col's buffer."""
    row_bytes = math.prod((channels, *kernel_size, output_size[1])) * dtype.itemsize
    return conv_chunks(xp, batch, output_size[0], row_bytes)


# --- convolution ---------------------------------------------------------------------------

def conv2d_forward(x, weight, bias=None, stride=1, padding=0, dilation=1, output_size=None,
                   groups: int = 1):
    """Convolution (cross-correlation, as in PyTorch) of a batch of images.

    Args:
        x: (N, C, H, W).
        weight: (F, C/G, KH, KW).
        bias: (F,) or None.
        output_size: the (OH, OW) windows to compute; default all that fit
            (:func:`~minifcn.functional.im2col.conv_output_size`). Fewer only for a transposed
            convolution's backward, see :func:`conv_transpose2d_backward`.
        groups: G, dividing C and F; output channels of block g see input block g only.

    Returns:
        y: (N, F, OH, OW), ``y[n, f] = bias[f] + sum_c correlate(x[n, g*C/G + c],
        weight[f, c])`` with g = f // (F/G) (with G = 1: every c).
        cache: a :class:`Conv2dCache` for :func:`conv2d_backward`.
    """
    stride, padding, dilation = _geometry("conv2d_forward", stride, padding, dilation)
    _check_call("conv2d_forward", x, weight, bias, groups, transposed=False)
    xp = get_array_module(x, weight, bias)
    N, C, H, W = x.shape
    F, _, KH, KW = weight.shape
    if output_size is None:
        output_size = checks.naming("conv2d_forward", conv_output_size, (H, W), (KH, KW),
                                    stride, padding, dilation)
    W_mat = weight.reshape(F, -1)  # (F, C/G*KH*KW)
    y = xp.empty((N, F, *output_size), dtype=x.dtype)
    chunks = _pieces(xp, N, C, (KH, KW), output_size, x.dtype)
    for batch, rows in chunks:
        band = None if len(chunks) == 1 else rows
        cols = im2col_unchecked(x[batch], (KH, KW), stride, padding, dilation, output_size,
                                band)
        y_mat = _group_matmul(W_mat, cols, groups)
        y[batch, :, rows] = _from_matrix(y_mat, batch.stop - batch.start,
                                         (rows.stop - rows.start, output_size[1]))
        give(y_mat)
        if len(chunks) > 1:
            give(cols)
    if bias is not None:
        y += bias.reshape(1, F, 1, 1)
    kept = cols if len(chunks) == 1 else None
    return y, Conv2dCache(x, weight, bias is not None, stride, padding, dilation, kept, groups)


def conv2d_weight_grad(x, dy, kernel_size, stride=1, padding=0, dilation=1, cols=None,
                       groups: int = 1, dy_mat=None):
    """The gradient of a convolution with respect to its weight.

    Args:
        x: (N, C, H, W), the convolution's input.
        dy: (N, F, OH, OW), the gradient of its output.
        kernel_size: (KH, KW).
        cols: ``im2col(x)`` of the whole batch if the caller kept it, else None (recomputed
            chunk by chunk under the budget).
        groups: G, as in :func:`conv2d_forward`.
        dy_mat: ``dy`` as the matrix (F, N*OH*OW) if the caller has it, with ``cols``.

    Returns:
        dW: (F, C/G, KH, KW), ``dy_mat @ cols.T`` (per group) summed over the batch.
    """
    stride, padding, dilation = _geometry("conv2d_weight_grad", stride, padding, dilation)
    kernel_size = as_pair("conv2d_weight_grad", "kernel_size", kernel_size, minimum=1)
    xp = get_array_module(x, dy, cols)
    N, C = x.shape[:2]
    F, output_size = dy.shape[1], dy.shape[2:]
    shape = (F, C // groups, *kernel_size)
    if cols is not None:
        own = dy_mat is None
        dy_mat = _to_matrix(dy) if own else dy_mat
        dW = _weight_grad_mat(dy_mat, cols, groups).reshape(shape)
        if own:
            give(dy_mat)
        return dW
    dW_mat = xp.zeros((F, math.prod(shape[1:])), dtype=dy.dtype)
    for batch, rows in _pieces(xp, N, C, kernel_size, output_size, x.dtype):
        cols = im2col_unchecked(x[batch], kernel_size, stride, padding, dilation, output_size,
                                rows)
        dy_chunk = _to_matrix(dy[batch, :, rows])
        dW_mat += _weight_grad_mat(dy_chunk, cols, groups)
        give(cols)
        give(dy_chunk)
    return dW_mat.reshape(shape)


def conv2d_input_grad(dy, weight, x_shape, stride=1, padding=0, dilation=1, groups: int = 1,
                      dy_mat=None):
    """The gradient of a convolution with respect to its input (GEMM, then col2im).

    Args:
        dy: (N, F, OH, OW), the gradient of the convolution's output.
        weight: (F, C/G, KH, KW).
        x_shape: (N, C, H, W), the shape of the convolution's input.
        groups: G, as in :func:`conv2d_forward`.
        dy_mat: ``dy`` as the matrix (F, N*OH*OW) if the caller has it and the whole batch
            fits one chunk (so that backward transposes ``dy`` once for dx and dW).

    Returns:
        dx: (N, C, H, W), ``col2im(W_mat.T @ dy_mat)``.
    """
    stride, padding, dilation = _geometry("conv2d_input_grad", stride, padding, dilation)
    xp = get_array_module(dy, weight)
    N, C, H, W = x_shape
    F, _, KH, KW = weight.shape
    output_size = dy.shape[2:]
    # Stride 1: dx is the convolution of dy with the kernel flipped in space and its channels
    # swapped (see conv_transpose2d_naive), padded by D*(K - 1) - P. Its im2col copies dy's F
    # channels where col2im adds into C: copying beats adding, and a GEMM with a long inner
    # dimension beats one that writes C*KH*KW rows from F. Measured (one thread, batch 8,
    # 3x3, ms): 32->16 at 64x64 27.5 -> 13.2, 32->32 at 32x32 3.95 -> 3.18, 128->128 at 4x4
    # 1.0 -> 0.65; but 16->32 at 64x64 12.5 -> 33.5, so only when F <= C.
    flipped_padding = tuple(d * (k - 1) - p for k, p, d in zip((KH, KW), padding, dilation,
                                                              strict=True))
    # (H, W) must be the size dy's convolution comes back to: not so after a transposed
    # convolution's output_padding, or when the rows the windows never reached were cut.
    natural = tuple(n + 2 * p for n, p in zip(output_size, flipped_padding, strict=True))
    natural = tuple(n - d * (k - 1) for n, k, d in zip(natural, (KH, KW), dilation,
                                                       strict=True))
    if (stride == (1, 1) and groups == 1 and F <= C and min(flipped_padding) >= 0
            and natural == (H, W)):
        flipped = weight[:, :, ::-1, ::-1].transpose(1, 0, 2, 3)  # (C, F, KH, KW)
        dx, cache = conv2d_forward(dy, flipped, None, 1, flipped_padding, dilation, (H, W))
        release(cache)  # nobody else sees this cache
        return dx
    W_mat = weight.reshape(F, -1)
    chunks = _pieces(xp, N, C, (KH, KW), output_size, dy.dtype)
    banded = any(rows != slice(0, output_size[0]) for _, rows in chunks)
    # Bands' halo rows overlap, so their contributions add up in a zeroed dx.
    dx = (xp.zeros if banded else xp.empty)((N, C, H, W), dtype=dy.dtype)
    for batch, rows in chunks:
        own = dy_mat is None or len(chunks) > 1
        chunk_mat = _to_matrix(dy[batch, :, rows]) if own else dy_mat
        dcols = _group_matmul(W_mat, chunk_mat, groups, transpose_a=True)
        if own:
            give(chunk_mat)
        shape = (batch.stop - batch.start, C, H, W)
        if banded:
            part = col2im_unchecked(dcols, shape, (KH, KW), stride, padding, dilation,
                                    output_size, rows)
            dx[batch, :, band_input_rows(rows, H, KH, stride[0], padding[0],
                                         dilation[0])] += part
        else:
            part = col2im_unchecked(dcols, shape, (KH, KW), stride, padding, dilation,
                                    output_size)
            dx[batch] = part
        give(dcols)
        give(part)
    return dx


def conv2d_backward(dy, cache: Conv2dCache, output_mask=(True, True, True)):
    """Gradients of :func:`conv2d_forward`.

    Args:
        dy: (N, F, OH, OW), the gradient of ``y``.
        cache: from :func:`conv2d_forward`; read, never modified.
        output_mask: which of (dx, dweight, dbias) to compute, as in PyTorch's
            ``convolution_backward``; a frozen layer skips its weight's GEMM.

    Returns:
        (dx, dweight, dbias): (N, C, H, W), (F, C/G, KH, KW), (F,); None where not asked
        for, and dbias None when there was no bias.
    """
    x, weight, has_bias, stride, padding, dilation, cols, groups = cache
    need_dx, need_dweight, need_dbias = output_mask
    dx = dweight = dbias = None
    # With cols kept (the batch fitted one chunk) both GEMMs read dy as one matrix: copy once.
    dy_mat = _to_matrix(dy) if cols is not None and need_dx and need_dweight else None
    if need_dx:
        dx = conv2d_input_grad(dy, weight, x.shape, stride, padding, dilation, groups, dy_mat)
    if need_dweight:
        dweight = conv2d_weight_grad(x, dy, weight.shape[2:], stride, padding, dilation, cols,
                                     groups, dy_mat)
    if need_dbias and has_bias:
        dbias = dy.sum(axis=(0, 2, 3))
    give(dy_mat)
    return dx, dweight, dbias


def release(cache) -> None:
    """Hand the im2col buffer a :class:`Conv2dCache` holds back to the workspace, for a
    caller that will never use ``cache`` again (the layers, after their backward); the
    next step's im2col of the same size then reuses it."""
    give(getattr(cache, "cols", None))


# --- transposed convolution ----------------------------------------------------------------

def conv_transpose2d_forward(x, weight, bias=None, stride=1, padding=0, output_padding=0,
                             dilation=1, groups: int = 1):
    """Transposed convolution: the input gradient of a convolution, used as a layer.

    Each input pixel spreads a KH x KW patch (its value times the kernel) onto the output,
    SH x SW pixels apart; ``padding`` crops the result on each side and ``output_padding``
    adds rows/columns at the bottom/right (it picks one of the SH sizes a stride-SH
    convolution maps to the same input size).

    Args:
        x: (N, C_in, H, W).
        weight: (C_in, C_out/G, KH, KW), PyTorch's layout: exactly a convolution's (F, C/G,
            KH, KW) weight for the convolution from C_out to C_in channels this one
            transposes (with the same groups).
        bias: (C_out,) or None.
        groups: G, dividing C_in and C_out; output block g sees input block g only.

    Returns:
        y: (N, C_out, OH, OW), OH from
        :func:`~minifcn.functional.im2col.conv_transpose_output_size`.
        cache: a :class:`ConvTranspose2dCache` for :func:`conv_transpose2d_backward`.
    """
    where = "conv_transpose2d_forward"
    stride, padding, dilation = _geometry(where, stride, padding, dilation)
    output_padding = _check_output_padding(where, output_padding, stride, dilation)
    _check_call(where, x, weight, bias, groups, transposed=True)
    N, _, H, W = x.shape
    _, C_out_per_group, KH, KW = weight.shape
    C_out = C_out_per_group * groups
    output_size = checks.naming(where, conv_transpose_output_size, (H, W), (KH, KW), stride,
                                padding, output_padding, dilation)
    # x plays the convolution's dy, y the convolution's dx.
    y = conv2d_input_grad(x, weight, (N, C_out, *output_size), stride, padding, dilation,
                          groups)
    if bias is not None:
        y += bias.reshape(1, C_out, 1, 1)
    return y, ConvTranspose2dCache(x, weight, bias is not None, stride, padding, dilation,
                                   groups)


def conv_transpose2d_backward(dy, cache: ConvTranspose2dCache, output_mask=(True, True, True)):
    """Gradients of :func:`conv_transpose2d_forward`.

    Forward was ``conv2d_input_grad(x, weight)``, a linear map in x; its adjoint is the
    convolution's forward, so ``dx = conv2d_forward(dy, weight)``. In the weight it is the
    convolution's weight gradient with the roles swapped: the transposed convolution's ``dy``
    is the convolution's input and its ``x`` the convolution's output gradient. Both need
    ``im2col(dy)``; the convolution's forward keeps it for the weight gradient.

    Args:
        dy: (N, C_out, OH, OW), the gradient of ``y``.
        cache: from :func:`conv_transpose2d_forward`; read, never modified.
        output_mask: which of (dx, dweight, dbias) to compute.

    Returns:
        (dx, dweight, dbias): (N, C_in, H, W), (C_in, C_out/G, KH, KW), (C_out,); None where
        not asked for, and dbias None when there was no bias.
    """
    x, weight, has_bias, stride, padding, dilation, groups = cache
    need_dx, need_dweight, need_dbias = output_mask
    dx = dweight = dbias = cols = None
    if need_dx:
        # output_size: with output_padding >= stride (allowed when dilation > stride) dy
        # holds more windows than x has pixels; the extra ones met no input.
        dx, conv_cache = conv2d_forward(dy, weight, None, stride, padding, dilation,
                                        output_size=x.shape[2:], groups=groups)
        cols = conv_cache.cols
    if need_dweight:
        dweight = conv2d_weight_grad(dy, x, weight.shape[2:], stride, padding, dilation, cols,
                                     groups)
    if need_dbias and has_bias:
        dbias = dy.sum(axis=(0, 2, 3))
    give(cols)  # made here, from dy: nobody else holds it
    return dx, dweight, dbias


# --- naive references ----------------------------------------------------------------------

def conv2d_naive(x, weight, bias=None, stride=1, padding=0, dilation=1, groups: int = 1):
    """The convolution from its definition, one output pixel and kernel offset at a time::

        y[n, f, oh, ow] = bias[f] + sum over c, i, j of
                          weight[f, c, i, j] * x_padded[n, c, oh*SH + i*DH, ow*SW + j*DW]

    With ``groups`` G, output block g (F/G channels) is that sum over input block g alone
    (C/G channels): G separate convolutions side by side.

    Shapes as :func:`conv2d_forward`; returns only ``y``. Slow: for reading and testing.
    """
    (SH, SW), (PH, PW), (DH, DW) = _geometry("conv2d_naive", stride, padding, dilation)
    _check_call("conv2d_naive", x, weight, bias, groups, transposed=False)
    xp = get_array_module(x, weight, bias)
    if groups > 1:
        C_g, F_g = x.shape[1] // groups, weight.shape[0] // groups
        y = xp.concatenate([conv2d_naive(x[:, g * C_g:(g + 1) * C_g],
                                         weight[g * F_g:(g + 1) * F_g], None, stride, padding,
                                         dilation) for g in range(groups)], axis=1)
        return y if bias is None else y + bias.reshape(1, -1, 1, 1)
    N, _, H, W = x.shape
    F, _, KH, KW = weight.shape
    OH, OW = checks.naming("conv2d_naive", conv_output_size, (H, W), (KH, KW), (SH, SW),
                           (PH, PW), (DH, DW))
    x_padded = xp.pad(x, ((0, 0), (0, 0), (PH, PH), (PW, PW)))
    y = xp.zeros((N, F, OH, OW), dtype=x.dtype)
    for oh in range(OH):
        for ow in range(OW):
            for i in range(KH):
                for j in range(KW):
                    pixel = x_padded[:, :, oh * SH + i * DH, ow * SW + j * DW]  # (N, C)
                    y[:, :, oh, ow] += pixel @ weight[:, :, i, j].T  # (N, C) @ (C, F)
    if bias is not None:
        y += bias.reshape(1, F, 1, 1)
    return y


def _pad_or_crop(x, rows: Pair, columns: Pair):
    """Zero-pad (positive amounts) or crop (negative amounts) each side of (N, C, H, W)."""
    (top, bottom), (left, right) = rows, columns
    H, W = x.shape[2:]
    x = x[:, :, max(-top, 0):H - max(-bottom, 0), max(-left, 0):W - max(-right, 0)]
    xp = get_array_module(x)
    return xp.pad(x, ((0, 0), (0, 0), (max(top, 0), max(bottom, 0)),
                      (max(left, 0), max(right, 0))))


def conv_transpose2d_naive(x, weight, bias=None, stride=1, padding=0, output_padding=0,
                           dilation=1, groups: int = 1):
    """The transposed convolution as a plain convolution of a spread-out input.

    1. Insert SH - 1 zero rows between the input's rows (SW - 1 zero columns between its
       columns): the input pixels land SH x SW apart, as the strided output windows were.
    2. Pad each side by DH*(KH - 1) - PH (plus ``output_padding`` at the bottom/right), so
       that every input pixel meets every kernel offset; a negative amount crops instead.
    3. Convolve (stride 1, the same dilation) with the kernel flipped in space and its in/out
       channels swapped, (C_in, C_out, KH, KW) -> (C_out, C_in, KH, KW). With ``groups`` G
       the swap is within each group's block, (C_in/G, C_out/G) -> (C_out/G, C_in/G), and
       the convolution has the same G groups.

    Shapes as :func:`conv_transpose2d_forward`; returns only ``y``. Slow: for reading and
    testing.
    """
    (SH, SW), (PH, PW), (DH, DW) = _geometry("conv_transpose2d_naive", stride, padding,
                                             dilation)
    where = "conv_transpose2d_naive"
    OPH, OPW = _check_output_padding(where, output_padding, (SH, SW), (DH, DW))
    _check_call(where, x, weight, bias, groups, transposed=True)
    xp = get_array_module(x, weight, bias)
    N, C_in, H, W = x.shape
    _, _, KH, KW = weight.shape
    checks.naming(where, conv_transpose_output_size, (H, W), (KH, KW), (SH, SW), (PH, PW),
                  (OPH, OPW), (DH, DW))
    spread = xp.zeros((N, C_in, (H - 1) * SH + 1, (W - 1) * SW + 1), dtype=x.dtype)
    spread[:, :, ::SH, ::SW] = x
    edge_h, edge_w = DH * (KH - 1) - PH, DW * (KW - 1) - PW
    framed = _pad_or_crop(spread, (edge_h, edge_h + OPH), (edge_w, edge_w + OPW))
    C_in_g = C_in // groups
    flipped = xp.concatenate([weight[g * C_in_g:(g + 1) * C_in_g, :, ::-1, ::-1]
                              .transpose(1, 0, 2, 3) for g in range(groups)], axis=0)
    return conv2d_naive(framed, flipped, bias, stride=1, padding=0, dilation=(DH, DW),
                        groups=groups)
