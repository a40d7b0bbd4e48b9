"""Element-wise activations: ReLU and LeakyReLU.

Both cache a boolean mask ``x > 0`` (a quarter of a float32 copy of x) rather than x: the
backward pass needs only which side of zero each input was on, and a cached sign cannot
be spoiled by later changes to x. At x == 0 the gradient is that of the negative side
(0 for ReLU, ``negative_slope`` for LeakyReLU), as in PyTorch.
"""

from __future__ import annotations

from .. import checks
from ..backend import get_array_module

__all__ = ["leaky_relu_backward", "leaky_relu_forward", "relu_backward", "relu_forward"]


def relu_forward(x, *, keep_cache: bool = True):
    """``y = max(x, 0)``.

    Args:
        x: float array of any shape, e.g. (N, C, H, W).
        keep_cache: False when no backward will follow (``no_grad``): the mask, a quarter
            of x's size, is then not made.

    Returns:
        y: same shape and dtype as x.
        cache: boolean mask ``x > 0`` (True at NaN too), same shape (None without
        ``keep_cache``).
    """
    checks.check_operands("relu_forward", x, ndim=None)
    xp = get_array_module(x)
    # The mask is "not x <= 0" rather than "x > 0": the same but at NaN, whose gradient
    # passes, as in PyTorch (whose ReLU backward zeroes only where x <= 0).
    return xp.maximum(x, 0.0), (~(x <= 0.0) if keep_cache else None)


def relu_backward(dy, cache):
    """``dx = dy`` where x > 0, else 0.

    Args:
        dy: upstream gradient, the shape of x.
        cache: the boolean mask from :func:`relu_forward`.

    Returns:
        dx: same shape and dtype as dy.
    """
    return dy * cache


def leaky_relu_forward(x, negative_slope: float = 0.01, *, keep_cache: bool = True):
    """``y = x`` where x > 0, else ``negative_slope * x``.

    Args:
        x: float array of any shape, e.g. (N, C, H, W).
        negative_slope: the slope for x <= 0.
        keep_cache: False when no backward will follow: no mask is made.

    Returns:
        y: same shape and dtype as x.
        cache: ``(mask, negative_slope)`` with the boolean mask ``x > 0`` (None without
        ``keep_cache``).
    """
    checks.check_operands("leaky_relu_forward", x, ndim=None)
    checks.check_number("leaky_relu_forward", "negative_slope", negative_slope, -float("inf"))
    xp = get_array_module(x)
    # Arithmetic rather than xp.where, which branches on each element and is ~5x slower on
    # NumPy when signs are random. Exact: one of the two terms is always 0.
    y = xp.minimum(x, 0.0)
    y *= negative_slope
    y += xp.maximum(x, 0.0)
    return y, ((x > 0.0, negative_slope) if keep_cache else None)


def leaky_relu_backward(dy, cache):
    """``dx = dy`` where x > 0, else ``negative_slope * dy``.

    Args:
        dy: upstream gradient, the shape of x.
        cache: ``(mask, negative_slope)`` from :func:`leaky_relu_forward`.

    Returns:
        dx: same shape and dtype as dy.
    """
    mask, negative_slope = cache
    # As in the forward, arithmetic instead of xp.where; exact for finite dy:
    # where x > 0, positive = dy and dy - positive = 0; elsewhere positive = 0.
    positive = dy * mask
    dx = dy - positive
    dx *= negative_slope
    dx += positive
    return dx
