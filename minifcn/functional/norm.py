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

from .. import checks
from ..backend import get_array_module

__all__ = [
    "BatchNormCache",
    "batch_norm_backward",
    "batch_norm_forward",
    "channel_dot",
    "channel_sum",
    "check_batch_statistics",
    "merge_moments",
    "per_channel",
    "sync_batch_norm_backward",
    "sync_batch_norm_forward",
]


@dataclass(frozen=True)
class BatchNormCache:
    """What :func:`batch_norm_backward` needs, plus the updated running statistics.

    Attributes:
        training: True when batch statistics were used (their gradient flows into dx).
        centered: (N, C, H, W) ``x - mean`` (training); None in evaluation.
        x: (N, C, H, W) the input (evaluation, where ``x - mean`` is only needed for
            dweight and is recomputed in backward); None in training.
        mean: (C,) the mean used: the batch mean (training) or the running mean.
        inv_std: (C,) ``1 / sqrt(var + eps)`` with the variance used.
        weight: (C,) or None (no affine scale).
        has_bias: whether a bias was given (dbias is None otherwise).
        running_mean, running_var: (C,) the updated running statistics (training with
            running statistics given); None otherwise.
        count: M, the values per channel the statistics were taken over: N * H * W, or
            for a batch spread over several processes (:func:`sync_batch_norm_forward`)
            the whole batch's; None in evaluation.
    """

    training: bool
    centered: object
    x: object
    mean: object
    inv_std: object
    weight: object
    has_bias: bool
    running_mean: object = None
    running_var: object = None
    count: int | None = None


LARGE_MAP = 128 * 128
"""Maps of at least this many pixels combine with a per-channel vector by broadcasting."""


def per_channel(v, shape):
    """A (C,) vector shaped to combine with an (N, C, H, W) array: a contiguous (1, C, H, W)
    copy for small maps, the (1, C, 1, 1) view for maps of :data:`LARGE_MAP` pixels or more.

    Why the copy for small maps: broadcasting the view makes NumPy run one inner loop per
    (n, c) map, and short loops are slow: 1.5x slower than broadcasting the copy over N only
    at (8, 16, 64, 64), and worse for smaller maps. The copy is 1/N of the batch's size,
    though, and for large maps its extra pass costs more than the loops do: measured (one
    thread) 2x slower at (2, 16, 256, 256) and at (1, 16, 1504, 2016), a photo's first
    layers; 1.6x at (8, 16, 128, 128). The numbers are the same either way.
    """
    _, C, H, W = shape
    if H * W >= LARGE_MAP:
        return v.reshape(1, C, 1, 1)
    return get_array_module(v).repeat(v, H * W).reshape(1, C, H, W)


def channel_sum(a):
    """Per-channel sum over N, H, W: (N, C, H, W) -> (C,)."""
    return get_array_module(a).einsum("nchw->c", a)


def channel_dot(a, b):
    """Per-channel sum over N, H, W of ``a * b``: (N, C, H, W) twice -> (C,).

    A batch of N * C row-times-column products: BLAS accumulates, with no (N, C, H, W)
    temporary.
    """
    N, C, H, W = a.shape
    return (a.reshape(N, C, 1, H * W) @ b.reshape(N, C, H * W, 1)).reshape(N, C).sum(axis=0)


def _scale(weight, inv_std):
    """The per-channel factor of the normalized output: ``weight * inv_std`` (C,)."""
    return inv_std if weight is None else weight * inv_std


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
    where = "batch_norm_forward"
    checks.check_operands(where, x)
    channel = (x.shape[1],)
    checks.check_operands(where, x, weight=(weight, channel), bias=(bias, channel),
                          running_mean=(running_mean, channel),
                          running_var=(running_var, channel))
    checks.check_flag(where, "training", training)
    momentum = checks.check_number(where, "momentum", momentum, 0.0, 1.0)
    # PyTorch's rule: a batch's own variance may be 0, so eps is what keeps 1 / std finite
    eps = checks.check_number(where, "eps", eps, 0.0)
    if training and eps == 0.0:
        raise ValueError(f"{where}: eps must be positive in training (a channel of equal "
                         f"values has variance 0), got {eps!r}")
    xp = get_array_module(x, weight, bias, running_mean, running_var)
    # y = weight * (x - mean) * inv_std + bias, applied as one scale and one shift per channel.
    M = None
    if training:
        check_batch_statistics("batch_norm_forward", x)
        N, _, H, W = x.shape
        M = N * H * W
        mean = channel_sum(x) / M
        # The variance from centered values (a second pass): E[x^2] - E[x]^2 in float32
        # would lose every digit of a channel like 1000 +- 0.01 to cancellation.
        centered = x - per_channel(mean, x.shape)
        sum_sq = channel_dot(centered, centered)
        inv_std = 1.0 / xp.sqrt(sum_sq / M + eps)
        y = _normalized(centered, weight, bias, inv_std)
    else:
        if running_mean is None or running_var is None:
            raise ValueError("batch_norm_forward: evaluation mode (training=False) needs "
                             "running_mean and running_var")
        mean, centered = running_mean, None
        inv_std = 1.0 / xp.sqrt(running_var + eps)
        scale = _scale(weight, inv_std)
        shift = -mean * scale if bias is None else bias - mean * scale
        y = x * per_channel(scale, x.shape)  # an affine map: no centered copy kept
        y += per_channel(shift, x.shape)

    new_mean = new_var = None
    if training and running_mean is not None and running_var is not None:
        new_mean, new_var = _running_update(running_mean, running_var, momentum, mean,
                                            sum_sq, M)
    cache = BatchNormCache(training, centered, None if training else x, mean, inv_std, weight,
                           bias is not None, new_mean, new_var, M)
    return y, cache


def _normalized(centered, weight, bias, inv_std):
    """``y = centered * weight * inv_std + bias``, per channel, as a new array."""
    y = centered * per_channel(_scale(weight, inv_std), centered.shape)
    if bias is not None:
        y += per_channel(bias, centered.shape)
    return y


def _running_update(running_mean, running_var, momentum: float, mean, sum_sq, M: int):
    """The running statistics after a batch of M values per channel with ``mean`` and
    ``sum_sq`` (the sum of squared deviations); the variance kept is the unbiased one."""
    new_mean = (1.0 - momentum) * running_mean + momentum * mean
    new_var = (1.0 - momentum) * running_var + momentum * (sum_sq / (M - 1))
    return new_mean, new_var


def batch_norm_backward(dy, cache: BatchNormCache):
    """Gradients of :func:`batch_norm_forward`.

    Args:
        dy: (N, C, H, W) upstream gradient.
        cache: from the forward pass.

    Returns:
        (dx, dweight, dbias): dx (N, C, H, W); dweight and dbias (C,), or None where the
        forward had no weight / no bias.

    With ``xhat = (x - mean) * inv_std``: ``dbias = sum(dy)``, ``dweight = sum(dy * xhat)``.

    Training: ``mean`` and ``var`` depend on every x of the channel, which adds two
    correction terms to dx. The closed form needs only the two sums above::

        dx = (weight * inv_std / M) * (M * dy - dbias - xhat * dweight)

    Evaluation: the statistics are constants, so ``dx = dy * weight * inv_std``.
    """
    sum_dy = channel_sum(dy)
    dbias = sum_dy if cache.has_bias else None

    if not cache.training:
        dx = dy * per_channel(_scale(cache.weight, cache.inv_std), dy.shape)
        dweight = None
        if cache.weight is not None:
            centered = cache.x - per_channel(cache.mean, dy.shape)
            dweight = channel_dot(dy, centered) * cache.inv_std
        return dx, dweight, dbias

    sum_dy_xhat = channel_dot(dy, cache.centered) * cache.inv_std
    dweight = sum_dy_xhat if cache.weight is not None else None
    return _training_dx(dy, cache, sum_dy, sum_dy_xhat), dweight, dbias


def _training_dx(dy, cache: BatchNormCache, sum_dy, sum_dy_xhat):
    """dx of a forward with batch statistics, from the two per-channel sums over the M
    values the statistics were taken over (``cache.count``)."""
    M = cache.count
    scale = _scale(cache.weight, cache.inv_std)
    # The closed form above, in four passes over one temporary:
    # dx = scale * (dy - (x - mean) * (inv_std * sum_dy_xhat / M) - sum_dy / M).
    dx = cache.centered * per_channel(cache.inv_std * sum_dy_xhat / M, dy.shape)
    dx += per_channel(sum_dy / M, dy.shape)
    get_array_module(dy).subtract(dy, dx, out=dx)
    dx *= per_channel(scale, dy.shape)
    return dx


# --- one batch spread over several processes (SyncBatchNorm) ---------------------------------
#
# Each process holds a shard of the batch. Normalizing each shard by its own statistics is
# what plain data parallelism does; these two functions normalize every shard by the whole
# batch's, so that N processes compute what one process computes on the whole batch. What
# crosses between the processes is per channel only: three numbers forward, two backward.

def merge_moments(counts, means, sums_sq):
    """The count, mean and sum of squared deviations of a batch from those of its parts.

    Args:
        counts: (R,) values per channel in each part.
        means: (R, C) each part's per-channel mean.
        sums_sq: (R, C) each part's per-channel sum of squared deviations from its own mean.

    Returns:
        (M, mean, sum_sq): M = sum(counts); mean (C,); sum_sq (C,) about the whole mean.

    The parallel form of the variance (Chan, Golub and LeVeque): the whole batch's spread
    is the parts' own spreads plus how far each part's mean lies from the whole mean::

        sum_sq = sum_r [ sums_sq[r] + counts[r] * (means[r] - mean)**2 ]

    It only ever subtracts means from means, so it keeps the digits that E[x^2] - E[x]^2
    would lose. A part with no values (count 0) adds nothing.
    """
    M = counts.sum()
    weights = counts[:, None]
    mean = (weights * means).sum(axis=0) / M
    spread = weights * (means - mean) ** 2
    return M, mean, (sums_sq + spread).sum(axis=0)


def sync_batch_norm_forward(x, weight, bias, running_mean, running_var, momentum: float,
                            eps: float, all_gather):
    """Batch normalization in training over a batch spread across processes.

    Args:
        x: (N, C, H, W) this process's shard of the batch.
        weight, bias, running_mean, running_var, momentum, eps: as :func:`batch_norm_forward`.
        all_gather: ``all_gather(stats) -> gathered``: stats (3, C) float64 (this shard's
            count, mean and sum of squared deviations) -> (R, 3, C), every process's, in
            rank order. One collective per call.

    Returns:
        (y, cache) as :func:`batch_norm_forward` with ``training=True``, normalized by the
        whole batch's mean and variance; ``cache.count`` is the whole batch's M.
    """
    xp = get_array_module(x, weight, bias, running_mean, running_var)
    N, C, H, W = x.shape
    n = N * H * W
    local_mean = channel_sum(x) / max(n, 1)  # an empty shard still takes part, with count 0
    centered = x - per_channel(local_mean, x.shape)
    stats = xp.stack([xp.full(C, float(n)), local_mean.astype(xp.float64),
                      channel_dot(centered, centered).astype(xp.float64)])
    gathered = all_gather(stats)
    M, mean, sum_sq = merge_moments(gathered[:, 0, 0], gathered[:, 1], gathered[:, 2])
    M = int(M)
    if M < 2:
        raise ValueError(f"sync_batch_norm_forward: expected more than 1 value per channel "
                         f"in the whole batch when training, got {M}")
    # Re-center this shard on the whole batch's mean: the shift is per channel.
    centered -= per_channel((mean.astype(x.dtype) - local_mean), x.shape)
    inv_std = (1.0 / xp.sqrt(sum_sq / M + eps)).astype(x.dtype)
    y = _normalized(centered, weight, bias, inv_std)
    new_mean = new_var = None
    if running_mean is not None and running_var is not None:
        new_mean, new_var = _running_update(running_mean, running_var, momentum,
                                            mean.astype(x.dtype), sum_sq.astype(x.dtype), M)
    cache = BatchNormCache(True, centered, None, mean.astype(x.dtype), inv_std, weight,
                           bias is not None, new_mean, new_var, M)
    return y, cache


def sync_batch_norm_backward(dy, cache: BatchNormCache, all_reduce):
    """Gradients of :func:`sync_batch_norm_forward`.

    Args:
        dy: (N, C, H, W) upstream gradient of this shard.
        cache: from the forward.
        all_reduce: ``all_reduce(sums)``: sums (2, C) -> None, summed over the processes
            in place. One collective per call.

    Returns:
        (dx, dweight, dbias): dx of this shard, from the whole batch's two sums (every
        value's mean and variance depend on every shard); dweight and dbias from this
        shard's sums only, since data parallelism adds (averages) parameter gradients
        over the processes afterwards, and they would otherwise be counted N times.
    """
    sum_dy = channel_sum(dy)
    sum_dy_xhat = channel_dot(dy, cache.centered) * cache.inv_std
    dbias = sum_dy if cache.has_bias else None
    dweight = sum_dy_xhat if cache.weight is not None else None
    sums = get_array_module(dy).stack([sum_dy, sum_dy_xhat])
    all_reduce(sums)
    return _training_dx(dy, cache, sums[0], sums[1]), dweight, dbias
