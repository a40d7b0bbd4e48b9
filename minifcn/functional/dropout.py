"""Dropout (element-wise) and Dropout2d (whole channels), with inverted scaling.

Notation: N batch, C channels, H, W height and width; p the drop probability.

In training each value (Dropout) or each (sample, channel) map (Dropout2d) is kept with
probability ``1 - p`` and the kept ones are scaled by ``1 / (1 - p)``, so the expected
output equals the input and evaluation needs no rescaling::

    y = x * mask / (1 - p)          dx = dy * mask / (1 - p)   (the same mask)

In evaluation (``training=False``) both are the identity.

The mask is drawn with ``generator.random(shape) >= p`` (the only random method used is
one CuPy's generator also has), or injected by the caller: the tests give NumPy and the
CuPy stand-in the same mask instead of comparing two random streams.
"""

from __future__ import annotations

from .. import checks
from ..backend import Generator, get_array_module, is_array

__all__ = ["dropout2d_forward", "dropout_backward", "dropout_forward"]


def _check_call(where: str, x, p, training, ndim) -> None:
    checks.check_operands(where, x, ndim=ndim)
    checks.check_probability(where, p)
    checks.check_flag(where, "training", training)


def dropout_forward(x, p: float, training: bool, mask=None, generator: Generator | None = None):
    """Element-wise dropout.

    Args:
        x: float array of any shape, e.g. (N, C, H, W).
        p: drop probability in [0, 1]; with 1 every value is dropped (y = x * 0, so a NaN
            or an infinity in x stays NaN, as in PyTorch).
        training: drop (True) or pass x through unchanged (False).
        mask: optional boolean keep-mask (True = keep) broadcastable to x's shape, e.g.
            (N, C, H, W) or (N, C, 1, 1); drawn from ``generator`` when None.
        generator: a :class:`minifcn.backend.Generator`; a new one (seeded from the seed
            source, see ``manual_seed``) when None.

    Returns:
        y: same shape and dtype as x (x itself in evaluation, or in training when p == 0
            and no mask is given).
        cache: the scaled mask ``mask / (1 - p)`` in x's dtype, or None for the identity.
    """
    _check_call("dropout_forward", x, p, training, ndim=None)
    if not training or (p == 0.0 and mask is None):
        return x, None
    xp = get_array_module(x)
    if mask is None:
        generator = Generator() if generator is None else generator
        # float32 uniforms whatever x's dtype: the same seed gives the same mask.
        mask = generator.random(x.shape, "float32", xp=xp) >= p
    else:
        _check_mask("dropout_forward", x, mask)
    # As PyTorch: the mask is scaled once, then multiplied in (y and dx use the same array).
    # p = 1 keeps nothing, and 1 / (1 - p) has no value: the scaled mask is all zeros.
    scaled_mask = (mask.astype(x.dtype) / (1.0 - p) if p < 1.0
                   else get_array_module(x).zeros(mask.shape, dtype=x.dtype))
    return x * scaled_mask, scaled_mask


def dropout2d_forward(x, p: float, training: bool, mask=None,
                      generator: Generator | None = None):
    """Channel dropout: each (sample, channel) map of x (N, C, H, W) is kept or zeroed whole.

    Same arguments and results as :func:`dropout_forward`, with a mask of shape
    (N, C, 1, 1). Its backward is :func:`dropout_backward`.
    """
    _check_call("dropout2d_forward", x, p, training, ndim=4)
    N, C = x.shape[:2]
    if mask is not None and tuple(mask.shape) != (N, C, 1, 1):
        raise ValueError(f"dropout2d_forward: expected a mask of shape {(N, C, 1, 1)} for x "
                         f"of shape {tuple(x.shape)}, got {tuple(mask.shape)}")
    if training and mask is None and p != 0.0:
        generator = Generator() if generator is None else generator
        mask = generator.random((N, C, 1, 1), "float32", xp=get_array_module(x)) >= p
    return dropout_forward(x, p, training, mask=mask)


def dropout_backward(dy, cache):
    """Gradient of :func:`dropout_forward` and :func:`dropout2d_forward`.

    Args:
        dy: upstream gradient, the shape of the forward output.
        cache: the forward's cache (the scaled mask, or None for the identity).

    Returns:
        dx: same shape as dy (dy itself when the forward was the identity).
    """
    return dy if cache is None else dy * cache


def _check_mask(where: str, x, mask) -> None:
    if not is_array(mask):
        raise TypeError(f"{where}: mask must be an array, got {type(mask).__name__}")
    get_array_module(x, mask)  # TypeError if the mask is on another device
    if mask.dtype.kind != "b":
        raise TypeError(f"{where}: mask must be a boolean array (True = keep), "
                        f"got dtype {mask.dtype}")
    shape = tuple(mask.shape)
    if len(shape) != x.ndim or any(m not in (1, n) for m, n in zip(shape, x.shape, strict=True)):
        raise ValueError(f"{where}: mask of shape {shape} does not broadcast to x of shape "
                         f"{tuple(x.shape)}")
