"""Padding of the last two axes (H, W) by zeros, reflection, replication or wrapping, and its
adjoint: what ``Conv2d(..., padding_mode=...)`` pads its input with.

Notation: PT, PB rows added at the top and bottom, PL, PR columns at the left and right;
H x W the input. For one axis of size H and the padded index p (the input row p - PT when
``0 <= p - PT < H``), the modes read, before the input (p < PT) and after it::

    "zeros"      0                          0
    "reflect"    row PT - p                 mirrored about the last row, which is not repeated
    "replicate"  row 0                      row H - 1
    "circular"   row H - PT + p             row p - PT - H (the input wraps around)

(PyTorch's ``F.pad`` modes "constant", "reflect", "replicate", "circular".) Each padded
value is a copy of one input value (or zero), so the adjoint, the gradient of the padding,
adds each padded value's gradient back onto the input value it was copied from: the middle
block as it is, the bands onto the rows they mirror, repeat or wrap. As in PyTorch,
"reflect" needs each amount smaller than the axis's size and "circular" at most the size
(one wrap-around); "replicate" needs a non-empty axis.

The axes are padded one after the other (H, then W) with strided slices and one
concatenation each; the adjoint undoes them in reverse order (W, then H). Any leading axes
((N, C) or (C,)) ride along.
"""

from __future__ import annotations

from .. import checks
from ..backend import get_array_module

__all__ = ["PADDING_MODES", "check_padding_size", "pad2d_backward", "pad2d_forward"]

PADDING_MODES = ("zeros", "reflect", "replicate", "circular")

Pad4 = tuple[int, int, int, int]  # (top, bottom, left, right)


def _take(a, axis: int, start: int, stop: int):
    """``a[..., start:stop, ...]`` along ``axis`` (a view)."""
    index = [slice(None)] * a.ndim
    index[axis] = slice(start, stop)
    return a[tuple(index)]


def check_padding_size(where: str, size: tuple[int, int], pad: Pad4, mode: str) -> None:
    """Refuse the amounts PyTorch refuses for ``mode`` on an (H, W) input (ValueError)."""
    for n, amounts, axis in ((size[0], pad[:2], "height"), (size[1], pad[2:], "width")):
        largest = max(amounts)
        if mode == "reflect" and largest >= n:
            raise ValueError(f"{where}: padding_mode='reflect' needs padding smaller than the "
                             f"input's {axis} ({n}), got padding {largest} (as in PyTorch)")
        if mode == "circular" and largest > n:
            raise ValueError(f"{where}: padding_mode='circular' needs padding at most the "
                             f"input's {axis} ({n}) so that it wraps around once, got padding "
                             f"{largest} (as in PyTorch)")
        if mode == "replicate" and largest > 0 and n == 0:
            raise ValueError(f"{where}: padding_mode='replicate' needs a non-empty input, got "
                             f"{axis} 0")


def _pad_axis(x, axis: int, before: int, after: int, mode: str):
    """``x`` padded along ``axis`` by ``before`` and ``after`` entries of ``mode``."""
    if before == 0 and after == 0:
        return x
    xp = get_array_module(x)
    n = x.shape[axis]
    if mode == "zeros":
        shape = list(x.shape)
        shape[axis] = before
        top = xp.zeros(tuple(shape), dtype=x.dtype)
        shape[axis] = after
        bottom = xp.zeros(tuple(shape), dtype=x.dtype)
    elif mode == "reflect":  # rows before..1 and n-2..n-1-after, mirrored
        top = xp.flip(_take(x, axis, 1, before + 1), axis)
        bottom = xp.flip(_take(x, axis, n - 1 - after, n - 1), axis)
    elif mode == "replicate":
        top = xp.repeat(_take(x, axis, 0, 1), before, axis=axis)
        bottom = xp.repeat(_take(x, axis, n - 1, n), after, axis=axis)
    else:  # circular: the last `before` rows, then the first `after`
        top = _take(x, axis, n - before, n)
        bottom = _take(x, axis, 0, after)
    return xp.concatenate([top, x, bottom], axis=axis)


def _unpad_axis(dy, axis: int, before: int, after: int, mode: str):
    """The adjoint of :func:`_pad_axis`: the padded axis's gradient folded back onto the
    input's ``n = dy.shape[axis] - before - after`` entries (a new array)."""
    n = dy.shape[axis] - before - after
    dx = _take(dy, axis, before, before + n).copy()
    top, bottom = _take(dy, axis, 0, before), _take(dy, axis, before + n, before + n + after)
    xp = get_array_module(dy)
    if mode == "reflect":
        if before:
            _take(dx, axis, 1, before + 1)[...] += xp.flip(top, axis)
        if after:
            _take(dx, axis, n - 1 - after, n - 1)[...] += xp.flip(bottom, axis)
    elif mode == "replicate":
        if before:
            _take(dx, axis, 0, 1)[...] += top.sum(axis=axis, keepdims=True)
        if after:
            _take(dx, axis, n - 1, n)[...] += bottom.sum(axis=axis, keepdims=True)
    elif mode == "circular":
        if before:
            _take(dx, axis, n - before, n)[...] += top
        if after:
            _take(dx, axis, 0, after)[...] += bottom
    return dx  # "zeros": the bands were constants; their gradient goes nowhere


def pad2d_forward(x, pad: Pad4, mode: str = "zeros"):
    """Pad the last two axes of ``x`` (..., H, W) by ``pad`` = (PT, PB, PL, PR) in ``mode``.

    Returns:
        y: (..., H + PT + PB, W + PL + PR), a new array of x's dtype.
        cache: ``(pad, mode)`` for :func:`pad2d_backward`.

    As PyTorch's ``F.pad``: a mode other than "zeros" takes an (N, C, H, W) or (C, H, W)
    input with pixels; the amounts must suit the mode (:func:`check_padding_size`).
    """
    where = "pad2d_forward"
    checks.check_operands(where, x, ndim=None)
    if mode not in PADDING_MODES:
        raise ValueError(f"{where}: mode must be one of {PADDING_MODES}, got {mode!r}")
    if (not isinstance(pad, (tuple, list)) or len(pad) != 4 or not all(
            isinstance(p, int) and not isinstance(p, bool) and p >= 0 for p in pad)):
        raise ValueError(f"{where}: pad must be four ints >= 0 (top, bottom, left, right), "
                         f"got {pad!r}")
    if x.ndim < 2 or (mode != "zeros" and (x.ndim not in (3, 4) or min(x.shape[-3:]) == 0)):
        needed = "(..., H, W)" if mode == "zeros" else "(N, C, H, W) or (C, H, W) with pixels"
        raise ValueError(f"{where}: mode {mode!r} needs x {needed}, got x of shape "
                         f"{tuple(x.shape)}")
    check_padding_size(where, x.shape[-2:], tuple(pad), mode)
    top, bottom, left, right = pad
    y = _pad_axis(x, x.ndim - 2, top, bottom, mode)
    y = _pad_axis(y, x.ndim - 1, left, right, mode)
    return y, (tuple(pad), mode)


def pad2d_backward(dy, cache):
    """The gradient of :func:`pad2d_forward`: dy (..., H + PT + PB, W + PL + PR) ->
    dx (..., H, W), each padded value's gradient added onto the value it copied."""
    (top, bottom, left, right), mode = cache
    dx = _unpad_axis(dy, dy.ndim - 1, left, right, mode)
    return _unpad_axis(dx, dy.ndim - 2, top, bottom, mode)
