"""Pooling: max pooling (with PyTorch's indices), average pooling, adaptive average pooling
and max unpooling.

Notation: N batch, C channels, H x W input, KH x KW window (kernel), SH x SW stride, PH x PW
padding, DH x DW dilation (max pooling only), OH x OW output. Sizes, strides, paddings and
dilations are pairs ``(height, width)``; the functions also take a single int for both, as
PyTorch does.

Window ``(oh, ow)`` covers the input pixels ``(oh*SH - PH + i*DH, ow*SW - PW + j*DW)`` for
the kernel offsets ``0 <= i < KH``, ``0 <= j < KW``. The output size, per axis, is
(:func:`pool_output_size`)::

    OH = floor((H + 2*PH - DH*(KH - 1) - 1) / SH) + 1       (ceil instead of floor with
                                                             ceil_mode=True)

With ``ceil_mode`` the last window may hang past the padded input; it is kept only if it
starts inside the input or the left padding (PyTorch's rule). With the padding at most half
the kernel, every window then sees at least one real pixel (a dilated one could step over a
small input entirely: :func:`pool_output_size` refuses that).

How, without a loop over pixels: kernel offset ``(i, j)`` sees, for all windows at once, the
strided slice ``x_padded[:, :, i*DH::SH, j*DW::SW]`` (OH x OW of it). Max and average pooling
loop over the KH*KW offsets only and does whole-array work on each slice, which runs the same on
NumPy and CuPy. Backward adds each offset's share of ``dy`` back into the same slices of a
zero buffer: no index arrays and no ``np.add.at``.

Adaptive average pooling fixes the output size instead of the window: its windows
(:func:`adaptive_windows`) vary in size, but a window mean is separable, so it is two small
matrix products rather than a loop over offsets (:func:`adaptive_avg_pool2d_forward`).

The poolings have naive twins (:func:`max_pool2d_naive`, :func:`avg_pool2d_naive`,
:func:`adaptive_avg_pool2d_naive`) that loop over output pixels, written from the
definition, kept as test oracles.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from numbers import Integral

from .. import checks
from ..backend import get_array_module, to_numpy
from ..checks import as_pair

__all__ = [
    "AdaptiveAvgPool2dCache",
    "AvgPool2dCache",
    "MaxPool2dCache",
    "MaxUnpool2dCache",
    "PoolGeometry",
    "adaptive_avg_pool2d_backward",
    "adaptive_avg_pool2d_forward",
    "adaptive_avg_pool2d_naive",
    "adaptive_output_size",
    "adaptive_windows",
    "avg_pool2d_backward",
    "avg_pool2d_forward",
    "avg_pool2d_naive",
    "check_pool_padding",
    "max_pool2d_backward",
    "max_pool2d_forward",
    "max_pool2d_indices",
    "max_pool2d_naive",
    "max_unpool2d_backward",
    "max_unpool2d_forward",
    "max_unpool_output_size",
    "pool_output_size",
]

Pair = tuple[int, int]

_NEG_INF = float("-inf")


# ---------------------------------------------------------------------------------------
# Geometry: where the windows lie


def check_pool_padding(where: str, kernel_size: Pair, padding: Pair) -> None:
    """PyTorch's rule: padding at most half the kernel size, along each axis."""
    if any(2 * p > k for k, p in zip(kernel_size, padding, strict=True)):
        raise ValueError(f"{where}: padding must be at most half of kernel_size, got "
                         f"padding={tuple(padding)} with kernel_size={tuple(kernel_size)}")


def check_pool_input(where: str, x) -> None:
    """An (N, C, H, W) float array in which only the batch may be empty (PyTorch's rule:
    there is no window of pixels to pool otherwise)."""
    checks.check_operands(where, x)
    if min(x.shape[1:]) == 0:
        raise ValueError(f"{where}: expected x with channels and pixels (only the batch may "
                         f"be empty), got x of shape {tuple(x.shape)}")


def pool_output_size(size: Pair, kernel_size: Pair, stride: Pair, padding: Pair,
                     dilation: Pair = (1, 1), ceil_mode: bool = False, *,
                     where: str = "pool_output_size") -> Pair:
    """``(OH, OW)`` of a pooling of an ``(H, W)`` input, per axis as PyTorch computes it::

        OH = floor_or_ceil((H + 2*PH - DH*(KH - 1) - 1) / SH) + 1
        if ceil_mode and (OH - 1)*SH >= H + PH: OH -= 1    (the last window would start in
                                                           the right padding or past it)

    A ``ValueError`` naming ``where`` when the padding breaks :func:`check_pool_padding`,
    when no window fits, or when a dilated window would see only padding.
    """
    check_pool_padding(where, kernel_size, padding)
    out = []
    for n, k, s, p, d in zip(size, kernel_size, stride, padding, dilation, strict=True):
        reach = n + 2 * p - d * (k - 1) - 1  # where the last possible window may start
        count = (-(-reach // s) if ceil_mode else reach // s) + 1
        if ceil_mode and (count - 1) * s >= n + p:
            count -= 1
        out.append(count)
        # A dilated window that starts in the padding may step over a small input entirely
        # (PyTorch then returns -inf and an index outside the window): refuse it.
        for o in range(min(count, -(-p // s))):  # the windows that start in the padding
            if not any(0 <= t < n for t in range(o * s - p, o * s - p + k * d, d)):
                raise ValueError(f"{where}: with kernel_size={tuple(kernel_size)}, "
                                 f"dilation={tuple(dilation)} and padding={tuple(padding)}, "
                                 f"a window would see only padding in an input of size "
                                 f"{tuple(size)}; use less padding or a larger input")
    if min(out) < 1:
        raise ValueError(f"{where}: an input of size {tuple(size)} is too small for "
                         f"kernel_size={tuple(kernel_size)} with padding={tuple(padding)} and "
                         f"dilation={tuple(dilation)}: the output would be {tuple(out)}")
    return out[0], out[1]


@dataclass(frozen=True)
class PoolGeometry:
    """Where the windows of one pooling lie. All pairs are (height, width).

    Attributes:
        size: (H, W) of the input.
        kernel_size, stride, padding, dilation: (KH, KW), (SH, SW), (PH, PW), (DH, DW).
        output_size: (OH, OW), from :func:`pool_output_size`.
    """

    size: Pair
    kernel_size: Pair
    stride: Pair
    padding: Pair
    dilation: Pair
    output_size: Pair

    @classmethod
    def build(cls, where: str, size: Pair, kernel_size, stride, padding, dilation,
              ceil_mode: bool) -> PoolGeometry:
        """Normalize PyTorch-style arguments (an int or a pair; ``stride=None`` means the
        kernel size) and compute the output size."""
        kernel_size = as_pair(where, "kernel_size", kernel_size, minimum=1)
        stride = kernel_size if stride is None else as_pair(where, "stride", stride, minimum=1)
        padding = as_pair(where, "padding", padding, minimum=0)
        dilation = as_pair(where, "dilation", dilation, minimum=1)
        output_size = pool_output_size(size, kernel_size, stride, padding, dilation, ceil_mode,
                                       where=where)
        return cls(tuple(size), kernel_size, stride, padding, dilation, output_size)

    @property
    def padded_size(self) -> Pair:
        """(HP, WP) of the padded input the windows read: PH (PW) before the input, and
        after it as far as the last window reaches (past the padding with ceil_mode)."""
        return tuple(max(p + n, (o - 1) * s + d * (k - 1) + 1)
                     for n, k, s, p, d, o in zip(self.size, self.kernel_size, self.stride,
                                                 self.padding, self.dilation,
                                                 self.output_size, strict=True))

    @property
    def disjoint(self) -> bool:
        """True when no pixel lies in two windows (stride >= the dilated kernel's extent)."""
        return all(s >= d * (k - 1) + 1
                   for k, s, d in zip(self.kernel_size, self.stride, self.dilation,
                                       strict=True))

    def windows(self) -> Iterator[tuple[int, slice, slice]]:
        """``(k, rows, cols)`` for each kernel offset ``(i, j)`` in PyTorch's scan order
        (row-major, ``k = i*KW + j``): ``x_padded[:, :, rows, cols]`` is the (N, C, OH, OW)
        array of the pixels that offset sees in every window."""
        (KH, KW), (SH, SW), (DH, DW) = self.kernel_size, self.stride, self.dilation
        OH, OW = self.output_size
        for i in range(KH):
            for j in range(KW):
                yield (i * KW + j,
                       slice(i * DH, i * DH + SH * (OH - 1) + 1, SH),
                       slice(j * DW, j * DW + SW * (OW - 1) + 1, SW))

    def pad(self, x, fill: float):
        """x (N, C, H, W) inside a ``fill`` border, as :attr:`padded_size`; x itself if
        none is needed (callers only read it)."""
        (H, W), (PH, PW), (HP, WP) = self.size, self.padding, self.padded_size
        if (PH, PW, HP, WP) == (0, 0, H, W):
            return x
        xp = get_array_module(x)
        return xp.pad(x, ((0, 0), (0, 0), (PH, HP - PH - H), (PW, WP - PW - W)),
                      constant_values=fill)

    def accumulate(self, dx_padded, rows, cols, share) -> None:
        """``dx_padded[:, :, rows, cols] += share``, the adjoint of reading a window slice.

        When the windows are disjoint no pixel receives two shares, so a plain write does:
        it skips reading back the zeros (the 2x2 stride-2 backward takes ~40% less time).
        """
        if self.disjoint:
            dx_padded[:, :, rows, cols] = share
        else:
            dx_padded[:, :, rows, cols] += share

    def crop(self, x_padded):
        """The (N, C, H, W) input part of a padded array (a view)."""
        (H, W), (PH, PW) = self.size, self.padding
        return x_padded[:, :, PH:PH + H, PW:PW + W]


# ---------------------------------------------------------------------------------------
# Max pooling


@dataclass(frozen=True)
class MaxPool2dCache:
    """What :func:`max_pool2d_backward` and :func:`max_pool2d_indices` need.

    Attributes:
        offset: (N, C, OH, OW) integer, the kernel offset ``k = i*KW + j`` of each window's
            (first) maximum.
        geometry: the windows' :class:`PoolGeometry`.
    """

    offset: object
    geometry: PoolGeometry


def _first_inside_offsets(geometry: PoolGeometry, xp):
    """(OH, OW): the offset ``k`` of each window's first pixel inside the input (not padding)."""
    first = []
    for n_out, s, p, d in zip(geometry.output_size, geometry.stride, geometry.padding,
                              geometry.dilation, strict=True):
        before = xp.maximum(p - xp.arange(n_out) * s, 0)  # padding pixels before the input
        first.append((before + d - 1) // d)  # taps that land on them
    first_row, first_col = first
    return first_row[:, None] * geometry.kernel_size[1] + first_col[None, :]


def max_pool2d_forward(x, kernel_size, stride=None, padding=0, dilation=1, ceil_mode=False,
                       *, keep_cache: bool = True):
    """The maximum of each KH x KW window (taps DH x DW apart) of ``x`` padded with -inf.

    Args:
        x: (N, C, H, W) float.
        kernel_size, stride (default: kernel_size), padding, dilation: ints or pairs.
        ceil_mode: round the output size up (see :func:`pool_output_size`).
        keep_cache: False when no backward will follow and no indices are wanted
            (``no_grad``): the maxima alone, without recording where each came from.

    Returns:
        y: (N, C, OH, OW).
        cache: a :class:`MaxPool2dCache` (None without ``keep_cache``);
            :func:`max_pool2d_indices` turns it into PyTorch's indices.

    Ties go to the first maximum in the window's row-major scan, as in PyTorch. A window
    holding a NaN outputs NaN, as in PyTorch; its recorded maximum (where the gradient
    goes) is then the first maximum of the values before its first NaN (the NaN itself if
    it comes first), where PyTorch's is the last NaN: matching that would cost a third more
    time.
    """
    check_pool_input("max_pool2d_forward", x)
    N, C, H, W = x.shape
    geometry = PoolGeometry.build("max_pool2d_forward", (H, W), kernel_size, stride, padding,
                                  dilation, ceil_mode)
    (KH, KW), (OH, OW) = geometry.kernel_size, geometry.output_size
    xp = get_array_module(x)
    x_padded = geometry.pad(x, _NEG_INF)  # -inf: a padding tap never wins

    y = xp.full((N, C, OH, OW), _NEG_INF, dtype=x.dtype)
    if not keep_cache:
        for _, rows, cols in geometry.windows():
            xp.maximum(y, x_padded[:, :, rows, cols], out=y)  # a NaN propagates into y
        return y, None
    # Each window starts at its first real pixel rather than a padding tap, so that a window
    # of -inf values points at a pixel, as PyTorch's does. A small integer type: the scan
    # reads and writes `offset` once per kernel offset.
    offset_type = xp.int16 if KH * KW <= 2**15 else xp.int32
    offset = (xp.zeros(y.shape, dtype=offset_type)
              + _first_inside_offsets(geometry, xp).astype(offset_type))
    for k, rows, cols in geometry.windows():
        tap = x_padded[:, :, rows, cols]
        better = tap > y  # strict: on a tie the earlier offset keeps the window
        xp.maximum(y, tap, out=y)  # a NaN propagates into y
        # Offsets grow along the scan, so the last one that beat the running maximum is the
        # largest: a maximum, which is branch-free (xp.where is ~10x slower on NumPy here).
        xp.maximum(offset, better * offset.dtype.type(k), out=offset)
    return y, MaxPool2dCache(offset, geometry)


def max_pool2d_backward(dy, cache: MaxPool2dCache):
    """dy: (N, C, OH, OW) -> dx: (N, C, H, W): each window's gradient goes to its maximum.

    (The recorded maximum is selected by multiplying ``dy`` with a 0/1 mask, branch-free; so
    an inf or NaN in ``dy`` spreads NaN over its window, where PyTorch keeps it at the
    maximum.)
    """
    N, C = dy.shape[:2]
    geometry = cache.geometry
    xp = get_array_module(dy)
    dx_padded = xp.zeros((N, C, *geometry.padded_size), dtype=dy.dtype)
    for k, rows, cols in geometry.windows():
        geometry.accumulate(dx_padded, rows, cols, dy * (cache.offset == k))
    return geometry.crop(dx_padded)


def max_pool2d_indices(cache: MaxPool2dCache):
    """PyTorch's ``return_indices``: (N, C, OH, OW) int64, the flat index ``h*W + w`` into its
    (H, W) input plane of each window's maximum (what :func:`max_unpool2d_forward` takes)."""
    geometry = cache.geometry
    KW, (SH, SW), (PH, PW) = geometry.kernel_size[1], geometry.stride, geometry.padding
    (DH, DW), (OH, OW), W = geometry.dilation, geometry.output_size, geometry.size[1]
    xp = get_array_module(cache.offset)
    offset = cache.offset.astype(xp.int64)
    h = (xp.arange(OH) * SH - PH)[:, None] + (offset // KW) * DH
    w = (xp.arange(OW) * SW - PW)[None, :] + (offset % KW) * DW
    return h * W + w


def max_pool2d_naive(x, kernel_size, stride=None, padding=0, dilation=1, ceil_mode=False):
    """:func:`max_pool2d_forward` from the definition, one output pixel at a time (a test
    oracle). Returns ``(y, indices)``, both (N, C, OH, OW), indices as
    :func:`max_pool2d_indices`. A NaN counts as the maximum (its first occurrence)."""
    check_pool_input("max_pool2d_naive", x)
    N, C, H, W = x.shape
    geometry = PoolGeometry.build("max_pool2d_naive", (H, W), kernel_size, stride, padding,
                                  dilation, ceil_mode)
    (KH, KW), (SH, SW), (PH, PW) = geometry.kernel_size, geometry.stride, geometry.padding
    (DH, DW), (OH, OW) = geometry.dilation, geometry.output_size
    xp = get_array_module(x)
    y = xp.empty((N, C, OH, OW), dtype=x.dtype)
    indices = xp.empty((N, C, OH, OW), dtype=xp.int64)
    for oh in range(OH):
        for ow in range(OW):
            # the window's pixels inside the input (padding never wins a maximum)
            rows = [h for h in range(oh * SH - PH, oh * SH - PH + KH * DH, DH) if 0 <= h < H]
            cols = [w for w in range(ow * SW - PW, ow * SW - PW + KW * DW, DW) if 0 <= w < W]
            window = x[:, :, rows[0]:rows[-1] + 1:DH, cols[0]:cols[-1] + 1:DW]
            window = window.reshape(N, C, len(rows) * len(cols))  # row-major scan order
            first = window.argmax(axis=2)  # the first maximum, as PyTorch picks on ties
            y[:, :, oh, ow] = window.max(axis=2)
            h = rows[0] + (first // len(cols)) * DH
            w = cols[0] + (first % len(cols)) * DW
            indices[:, :, oh, ow] = h * W + w
    return y, indices


# ---------------------------------------------------------------------------------------
# Average pooling


@dataclass(frozen=True)
class AvgPool2dCache:
    """What :func:`avg_pool2d_backward` needs.

    Attributes:
        divisor: (OH, OW), what each window's sum was divided by.
        geometry: the windows' :class:`PoolGeometry`.
    """

    divisor: object
    geometry: PoolGeometry


def check_divisor_override(where: str, divisor_override) -> None:
    """None, or a whole number >= 1 to divide every window's sum by."""
    if divisor_override is not None:
        checks.check_count(where, "divisor_override", divisor_override, 1)


def _avg_divisor(geometry: PoolGeometry, count_include_pad: bool, divisor_override, xp,
                 dtype):
    """(OH, OW): what each window's sum is divided by, as PyTorch does (see
    :func:`avg_pool2d_forward`)."""
    if divisor_override is not None:
        return xp.full(geometry.output_size, float(divisor_override), dtype=dtype)
    counts = []
    for n_out, n, k, s, p in zip(geometry.output_size, geometry.size, geometry.kernel_size,
                                 geometry.stride, geometry.padding, strict=True):
        start = xp.arange(n_out) * s - p
        end = xp.minimum(start + k, n + p)  # a ceil_mode window stops at the padding's end
        if not count_include_pad:
            start, end = xp.maximum(start, 0), xp.minimum(end, n)  # real pixels only
        counts.append(end - start)
    rows, cols = counts
    return (rows[:, None] * cols[None, :]).astype(dtype)


def avg_pool2d_forward(x, kernel_size, stride=None, padding=0, ceil_mode=False,
                       count_include_pad=True, divisor_override=None):
    """The mean of each KH x KW window of ``x`` padded with zeros.

    Args:
        x: (N, C, H, W) float.
        kernel_size, stride (default: kernel_size), padding: ints or pairs.
        ceil_mode: round the output size up (see :func:`pool_output_size`).
        count_include_pad: divide by the number of window taps inside the padded input
            (padding included, but not what a ceil_mode window hangs past it); with False,
            by the number of real pixels only.
        divisor_override: a positive int to divide every sum by instead.

    Returns:
        y: (N, C, OH, OW).
        cache: an :class:`AvgPool2dCache`.
    """
    check_pool_input("avg_pool2d_forward", x)
    N, C, H, W = x.shape
    check_divisor_override("avg_pool2d_forward", divisor_override)
    geometry = PoolGeometry.build("avg_pool2d_forward", (H, W), kernel_size, stride, padding,
                                  1, ceil_mode)
    xp = get_array_module(x)
    x_padded = geometry.pad(x, 0.0)
    total = xp.zeros((N, C, *geometry.output_size), dtype=x.dtype)
    for _, rows, cols in geometry.windows():
        total += x_padded[:, :, rows, cols]
    divisor = _avg_divisor(geometry, count_include_pad, divisor_override, xp, x.dtype)
    return total / divisor, AvgPool2dCache(divisor, geometry)


def avg_pool2d_backward(dy, cache: AvgPool2dCache):
    """dy: (N, C, OH, OW) -> dx: (N, C, H, W): each window's gradient, divided by its
    divisor, goes to every tap of the window."""
    N, C = dy.shape[:2]
    geometry = cache.geometry
    xp = get_array_module(dy)
    share = dy / cache.divisor
    dx_padded = xp.zeros((N, C, *geometry.padded_size), dtype=dy.dtype)
    for _, rows, cols in geometry.windows():
        geometry.accumulate(dx_padded, rows, cols, share)
    return geometry.crop(dx_padded)


def avg_pool2d_naive(x, kernel_size, stride=None, padding=0, ceil_mode=False,
                     count_include_pad=True, divisor_override=None):
    """:func:`avg_pool2d_forward` from the definition, one output pixel at a time, with
    PyTorch's divisor rules written out (a test oracle). Returns y (N, C, OH, OW)."""
    check_pool_input("avg_pool2d_naive", x)
    check_divisor_override("avg_pool2d_naive", divisor_override)
    N, C, H, W = x.shape
    geometry = PoolGeometry.build("avg_pool2d_naive", (H, W), kernel_size, stride, padding, 1,
                                  ceil_mode)
    (KH, KW), (SH, SW), (PH, PW) = geometry.kernel_size, geometry.stride, geometry.padding
    OH, OW = geometry.output_size
    xp = get_array_module(x)
    y = xp.empty((N, C, OH, OW), dtype=x.dtype)
    for oh in range(OH):
        for ow in range(OW):
            # the window in padded coordinates, stopped at the end of the padding
            h0, w0 = oh * SH - PH, ow * SW - PW
            h1, w1 = min(h0 + KH, H + PH), min(w0 + KW, W + PW)
            pixels = x[:, :, max(h0, 0):min(h1, H), max(w0, 0):min(w1, W)]
            if divisor_override is not None:
                divisor = divisor_override
            elif count_include_pad:
                divisor = (h1 - h0) * (w1 - w0)
            else:
                divisor = pixels.shape[2] * pixels.shape[3]
            y[:, :, oh, ow] = pixels.sum(axis=(2, 3)) / float(divisor)
    return y


# ---------------------------------------------------------------------------------------
# Adaptive average pooling (a fixed output size whatever the input's)


def adaptive_output_size(size: Pair, output_size, *,
                         where: str = "adaptive_output_size") -> Pair:
    """``(OH, OW)`` of an adaptive pooling of an ``(H, W)`` input, as PyTorch reads
    ``output_size``: an int for both axes, or a pair whose ``None`` entries keep that axis's
    input size. ``TypeError``/``ValueError`` naming ``where`` for anything else, and for
    sizes below 1 (PyTorch would return an empty map)."""
    if isinstance(output_size, Integral) and not isinstance(output_size, bool):
        pair = (output_size, output_size)
    elif (isinstance(output_size, (tuple, list)) and len(output_size) == 2
          and all(n is None or (isinstance(n, Integral) and not isinstance(n, bool))
                  for n in output_size)):
        pair = tuple(output_size)
    else:
        raise TypeError(f"{where}: output_size must be an int or a pair of ints (or None to "
                        f"keep that axis's size), got {output_size!r}")
    if any(n is not None and n < 1 for n in pair):
        raise ValueError(f"{where}: output_size must be >= 1, got {output_size!r}")
    return tuple(int(n if n is not None else s) for n, s in zip(pair, size, strict=True))


def adaptive_windows(size: int, output_size: int) -> list[tuple[int, int]]:
    """The ``[start, end)`` input range of each of ``output_size`` adaptive windows along an
    axis of ``size`` pixels, PyTorch's rule::

        start = floor(i * size / output_size),   end = ceil((i + 1) * size / output_size)

    Neighbouring windows may share a pixel, and every window holds at least one; with
    ``output_size`` a divisor of ``size`` they are the ``AvgPool2d(size // output_size)``
    windows. (A host-side list of Python ints: it is geometry, not data.)
    """
    return [(i * size // output_size, -(-(i + 1) * size // output_size))
            for i in range(output_size)]


def _averaging_matrix(size: int, output_size: int, xp, dtype):
    """(output_size, size): row i holds 1/len(window i) over window i and zeros elsewhere,
    so that ``matrix @ v`` averages each window of ``v``."""
    starts, ends = zip(*adaptive_windows(size, output_size), strict=True)
    start = xp.asarray(starts)[:, None]
    end = xp.asarray(ends)[:, None]
    pixel = xp.arange(size)[None, :]
    inside = (pixel >= start) & (pixel < end)
    return inside.astype(dtype) / (end - start).astype(dtype)


@dataclass(frozen=True)
class AdaptiveAvgPool2dCache:
    """What :func:`adaptive_avg_pool2d_backward` needs.

    Attributes:
        rows: (OH, H), the averaging matrix along the height (:func:`_averaging_matrix`).
        cols: (OW, W), the same along the width.
    """

    rows: object
    cols: object


def adaptive_avg_pool2d_forward(x, output_size):
    """The mean of each of OH x OW windows that tile ``x`` as evenly as whole pixels allow
    (:func:`adaptive_windows`), as ``torch.nn.functional.adaptive_avg_pool2d``; with
    ``output_size=1`` the global average pooling of a classifier.

    A window's mean is separable: the mean over its rows of the means over its columns. So
    the forward takes the OW column windows' means, then the OH row windows' means of those;
    with the averaging matrices R (OH, H) and C (OW, W) that is ``y = R @ x @ C.T``, and the
    gradient is the two transposed products::

        y  = R @ x @ C.T            (N, C, OH, OW)
        dx = R.T @ dy @ C           (N, C, H, W)

    The forward does not use the products: in them a NaN or an infinity, multiplied by a
    window's zeros, would spoil every window of its row and column (0 * inf is NaN), where
    it belongs to the windows that hold it, as in PyTorch.

    Args:
        x: (N, C, H, W) float.
        output_size: int or (OH, OW), entries None keep the input's size
            (:func:`adaptive_output_size`).

    Returns:
        y: (N, C, OH, OW).
        cache: an :class:`AdaptiveAvgPool2dCache`.
    """
    check_pool_input("adaptive_avg_pool2d_forward", x)
    H, W = x.shape[2:]
    OH, OW = adaptive_output_size((H, W), output_size, where="adaptive_avg_pool2d_forward")
    xp = get_array_module(x)
    column_means = xp.stack([x[:, :, :, w0:w1].mean(axis=3)
                             for w0, w1 in adaptive_windows(W, OW)], axis=3)  # (N, C, H, OW)
    y = xp.stack([column_means[:, :, h0:h1].mean(axis=2)
                  for h0, h1 in adaptive_windows(H, OH)], axis=2)  # (N, C, OH, OW)
    rows = _averaging_matrix(H, OH, xp, x.dtype)
    cols = _averaging_matrix(W, OW, xp, x.dtype)
    return y, AdaptiveAvgPool2dCache(rows, cols)


def adaptive_avg_pool2d_backward(dy, cache: AdaptiveAvgPool2dCache):
    """dy: (N, C, OH, OW) -> dx: (N, C, H, W): each window's gradient, divided by its pixel
    count, goes to every pixel of the window (added where windows overlap)."""
    return cache.rows.T @ (dy @ cache.cols)


def adaptive_avg_pool2d_naive(x, output_size):
    """:func:`adaptive_avg_pool2d_forward` from the definition, one output pixel at a time
    (a test oracle). Returns y (N, C, OH, OW)."""
    check_pool_input("adaptive_avg_pool2d_naive", x)
    N, C, H, W = x.shape
    OH, OW = adaptive_output_size((H, W), output_size, where="adaptive_avg_pool2d_naive")
    xp = get_array_module(x)
    y = xp.empty((N, C, OH, OW), dtype=x.dtype)
    for oh, (h0, h1) in enumerate(adaptive_windows(H, OH)):
        for ow, (w0, w1) in enumerate(adaptive_windows(W, OW)):
            y[:, :, oh, ow] = x[:, :, h0:h1, w0:w1].mean(axis=(2, 3))
    return y


# ---------------------------------------------------------------------------------------
# Max unpooling (SegNet's decoder step)


@dataclass(frozen=True)
class MaxUnpool2dCache:
    """What :func:`max_unpool2d_backward` needs.

    Attributes:
        indices: (N, C, H*W) int, where each input value went in its (OH*OW) output plane.
        input_shape: (N, C, H, W).
    """

    indices: object
    input_shape: tuple[int, int, int, int]


def max_unpool_output_size(size: Pair, kernel_size: Pair, stride: Pair, padding: Pair,
                           output_size=None, *, where: str = "max_unpool_output_size") -> Pair:
    """``(OH, OW)`` of a max unpooling of an ``(H, W)`` input, as PyTorch's ``MaxUnpool2d``.

    By default the size the matching max pooling came from, per axis::

        OH = (H - 1)*SH - 2*PH + KH

    A pooling with floor rounding maps several sizes to one, so ``output_size`` ((OH, OW),
    or a full (N, C, OH, OW) shape) may ask for one of them: strictly within ``stride`` of
    the default, else a ``ValueError`` naming ``where``.
    """
    default = tuple((n - 1) * s - 2 * p + k
                    for n, k, s, p in zip(size, kernel_size, stride, padding,
                                          strict=True))
    if output_size is None:
        out = default
    else:
        if not (isinstance(output_size, (tuple, list)) and len(output_size) in (2, 4)
                and all(isinstance(n, Integral) and not isinstance(n, bool)
                        for n in output_size)):
            raise TypeError(f"{where}: output_size must be (OH, OW) or (N, C, OH, OW) ints, "
                            f"got {output_size!r}")
        out = tuple(int(n) for n in output_size[-2:])
        for axis, (o, d, s) in enumerate(zip(out, default, stride, strict=True)):
            if not d - s < o < d + s:
                raise ValueError(f"{where}: output_size {out} is not a size the pooling could "
                                 f"have come from: axis {axis} must be between {d - s} and "
                                 f"{d + s} exclusive (default {default})")
    if min(out) < 1:
        raise ValueError(f"{where}: the output would be {out} pixels for an input of size "
                         f"{tuple(size)} with kernel_size={tuple(kernel_size)}, "
                         f"stride={tuple(stride)}, padding={tuple(padding)}")
    return out[0], out[1]


def check_unpool_arguments(where: str, x, indices, output_size) -> Pair:
    """x (N, C, H, W) float, indices of its shape, integers in ``[0, OH*OW)`` for the output
    plane ``output_size`` (OH, OW), returned as a pair. The range is read on the host (one
    synchronisation on a GPU), as CuPy would silently wrap an index past the end."""
    checks.check_operands(where, x)
    checks.check_input(where, indices, ndim=None, name="indices", floating=False,
                       hint=" (from a max pooling with return_indices=True)")
    if tuple(indices.shape) != tuple(x.shape):
        raise ValueError(f"{where}: expected indices of the shape of x {tuple(x.shape)}, got "
                         f"{tuple(indices.shape)}")
    checks.check_same_device(where, x, indices)
    OH, OW = as_pair(where, "output_size", output_size, minimum=1)
    if indices.size:
        low, high = (int(to_numpy(bound)) for bound in (indices.min(), indices.max()))
        if not 0 <= low <= high < OH * OW:
            raise ValueError(f"{where}: indices must lie in [0, {OH * OW}) for an output of "
                             f"size ({OH}, {OW}), got values in [{low}, {high}]")
    return OH, OW


def max_unpool2d_forward(x, indices, output_size: Pair):
    """Put each value of ``x`` back at its recorded position in a zero map.

    Args:
        x: (N, C, H, W) float, e.g. a max pooling's output.
        indices: (N, C, H, W) int, flat indices into the (OH, OW) output plane, e.g.
            :func:`max_pool2d_indices`; each in ``[0, OH*OW)``.
        output_size: (OH, OW).

    Returns:
        y: (N, C, OH, OW), ``y.reshape(N, C, -1)[n, c, indices[n, c, h, w]] = x[n, c, h, w]``
            and zero elsewhere. Where two values share an index (overlapping pooling
            windows with the same maximum) one of them is kept, which one is not defined.
        cache: a :class:`MaxUnpool2dCache`.
    """
    size = check_unpool_arguments("max_unpool2d_forward", x, indices, output_size)
    return max_unpool2d_unchecked(x, indices, size)


def max_unpool2d_unchecked(x, indices, output_size: Pair):
    """:func:`max_unpool2d_forward` after :func:`check_unpool_arguments` (a layer checks
    them in its own name)."""
    N, C, H, W = x.shape
    OH, OW = output_size
    xp = get_array_module(x, indices)
    flat_indices = indices.reshape(N, C, H * W)
    y = xp.zeros((N, C, OH * OW), dtype=x.dtype)
    xp.put_along_axis(y, flat_indices, x.reshape(N, C, H * W), axis=2)
    return y.reshape(N, C, OH, OW), MaxUnpool2dCache(flat_indices, (N, C, H, W))


def max_unpool2d_backward(dy, cache: MaxUnpool2dCache):
    """dy: (N, C, OH, OW) -> dx: (N, C, H, W), each value's gradient gathered from where it
    went (as PyTorch, also for a shared index)."""
    N, C, OH, OW = dy.shape
    xp = get_array_module(dy)
    dx = xp.take_along_axis(dy.reshape(N, C, OH * OW), cache.indices, axis=2)
    return dx.reshape(cache.input_shape)
