"""Batch normalization over (N, H, W) for each channel of an NCHW batch.

Notation:
    N: batch size         C: channels          H, W: height and width
    M = N * H * W: the number of values each channel's statistics are taken over

Training (batch statistics)::

    mean = sum(x) / M                    var = sum((x - mean)**2) / M   (biased)
    xhat = (x - mean) / sqrt(var + eps)  y = weight * xhat + bias

Evaluation (running statistics) is the same with ``running_mean``/``running_var`` in place
of ``mean``/``var``: a fixed affine map ``y = x * scale + shift`` per channel.

Stateless: ``running_mean`` and ``running_var`` are read, never written. In training the
updated running statistics come back in the cache (``cache.running_mean``,
``cache.running_var``) and the caller stores them, as ``nn.BatchNorm2d`` does::

    running_mean <- (1 - momentum) * running_mean + momentum * mean
    running_var  <- (1 - momentum) * running_var  + momentum * var * M / (M - 1)

(PyTorch's rule: the running variance is the unbiased one, the normalization uses the
biased one.) ``momentum`` is a number here; PyTorch's ``momentum=None`` (a cumulative
average) is the caller passing ``1 / num_batches_tracked``.
"""

from __future__ import annotations

from dataclasses import dataclass

from ..backend import get_array_module

__all__ = ["BatchNormCache", "batch_norm_backward", "batch_norm_forward", "check_batch_statistics"]

_SUM_NHW = "nchw->c"  # sum over N, H, W for each channel
_DOT_NHW = "nchw,nchw->c"  # per-channel sum of a product, with no (N, C, H, W) temporary


@dataclass(frozen=True)
class BatchNormCache:
    """What :func:`batch_norm_backward` needs, plus the updated running statistics.

    Attributes:
        training: True when batch statistics were used (their gradient flows into dx).
        xhat: (N, C, H, W) the normalized input (training); None in evaluation.
        x: (N, C, H, W) the input (evaluation, where xhat is only needed for dweight and
            is recomputed from x in backward); None in training.
        mean: (C,) the mean used: the batch mean (training) or the running mean.
        inv_std: (C,) ``1 / sqrt(var + eps)`` with the variance used.
        weight: (C,) or None (no affine scale).
        has_bias: whether a bias was given (dbias is None otherwise).
        running_mean, running_var: (C,) the updated running statistics (training with
            running statistics given); None otherwise.
    """

    training: bool
    xhat: object
    x: object
    mean: object
    inv_std: object
    weight: object
    has_bias: bool
    running_mean: object = None
    running_var: object = None


def _per_channel(v):
    """A (C,) vector as (1, C, 1, 1), to broadcast over an NCHW batch."""
    return v.reshape(1, -1, 1, 1)


def check_batch_statistics(where: str, x) -> None:
    """Batch statistics need at least two values per channel (PyTorch's rule)."""
    N, _, H, W = x.shape
    if N * H * W < 2:
        raise ValueError(f"{where}: expected more than 1 value per channel when training, "
                         f"got input of shape {tuple(x.shape)}")


def batch_norm_forward(x, weight, bias, running_mean, running_var, training: bool,
                       momentum: float, eps: float):
    """Batch normalization of an NCHW batch, per channel.

    Args:
        x: (N, C, H, W) float input.
        weight, bias: (C,) affine scale and shift, or None (scale 1, shift 0).
        running_mean, running_var: (C,) running statistics, or None (training only).
        training: normalize with the batch statistics (True) or the running ones (False).
        momentum: weight of the batch statistics in the running-statistics update.
        eps: added to the variance before the square root.

    Returns:
        y: (N, C, H, W), same dtype as x.
        cache: a :class:`BatchNormCache`; in training with running statistics given, its
            ``running_mean``/``running_var`` are the updated statistics (new arrays).
    """
    xp = get_array_module(x, weight, bias, running_mean, running_var)
    if not training:
        if running_mean is None or running_var is None:
            raise ValueError("batch_norm_forward: evaluation mode (training=False) needs "
                             "running_mean and running_var")
        inv_std = 1.0 / xp.sqrt(running_var + eps)
        scale = inv_std if weight is None else weight * inv_std
        shift = -running_mean * scale if bias is None else bias - running_mean * scale
        # One affine map per channel: two passes over x, no normalized copy kept.
        y = x * _per_channel(scale)
        y += _per_channel(shift)
        cache = BatchNormCache(False, None, x, running_mean, inv_std, weight, bias is not None)
        return y, cache

    check_batch_statistics("batch_norm_forward", x)
    N, _, H, W = x.shape
    M = N * H * W
    mean = xp.einsum(_SUM_NHW, x) / M
    xhat = x - _per_channel(mean)
    sum_sq = xp.einsum(_DOT_NHW, xhat, xhat)  # the variance from centered values: no
    inv_std = 1.0 / xp.sqrt(sum_sq / M + eps)  # cancellation, unlike E[x^2] - E[x]^2
    xhat *= _per_channel(inv_std)  # our own temporary: normalize it in place
    if weight is None:
        y = xhat.copy()  # y must not alias the cached xhat
    else:
        y = xhat * _per_channel(weight)
    if bias is not None:
        y += _per_channel(bias)

    new_mean = new_var = None
    if running_mean is not None and running_var is not None:
        new_mean = (1.0 - momentum) * running_mean + momentum * mean
        new_var = (1.0 - momentum) * running_var + momentum * (sum_sq / (M - 1))
    cache = BatchNormCache(True, xhat, None, mean, inv_std, weight, bias is not None,
                           new_mean, new_var)
    return y, cache


def batch_norm_backward(dy, cache: BatchNormCache):
    """Gradients of :func:`batch_norm_forward`.

    Args:
        dy: (N, C, H, W) upstream gradient.
        cache: from the forward pass.

    Returns:
        (dx, dweight, dbias): dx (N, C, H, W); dweight and dbias (C,), or None where the
        forward had no weight / no bias.

    Training: ``mean`` and ``var`` depend on every x of the channel, so dx has two
    correction terms. The closed form needs only two per-channel sums of dy::

        dbias   = sum(dy)                dweight = sum(dy * xhat)
        dx = (weight * inv_std / M) * (M * dy - dbias - xhat * dweight)

    Evaluation: the statistics are constants, so ``dx = dy * weight * inv_std``.
    """
    xp = get_array_module(dy)
    sum_dy = xp.einsum(_SUM_NHW, dy)
    dbias = sum_dy if cache.has_bias else None
    scale = cache.inv_std if cache.weight is None else cache.weight * cache.inv_std

    if not cache.training:
        dx = dy * _per_channel(scale)
        dweight = None
        if cache.weight is not None:
            centered = cache.x - _per_channel(cache.mean)
            dweight = xp.einsum(_DOT_NHW, dy, centered) * cache.inv_std
        return dx, dweight, dbias

    N, _, H, W = dy.shape
    M = N * H * W
    sum_dy_xhat = xp.einsum(_DOT_NHW, dy, cache.xhat)
    dweight = sum_dy_xhat if cache.weight is not None else None
    # The closed form above, rearranged to reuse one temporary:
    # dx = scale * (dy - (xhat * dweight + dbias) / M).
    dx = cache.xhat * _per_channel(sum_dy_xhat / M)
    dx += _per_channel(sum_dy / M)
    xp.subtract(dy, dx, out=dx)
    dx *= _per_channel(scale)
    return dx, dweight, dbias
