"""Softmax, log-softmax and the cross-entropy loss over class scores (logits).

Notation: N batch, C classes, H x W spatial size. Logits are (N, C, H, W) for per-pixel
classification (or (N, C) for one label per sample; any (N, C, ...) works), targets are
integer class indices (N, H, W) (or (N,)), one per pixel.

For one pixel with logits ``z`` (C,), target class ``t`` and class weights ``w`` (C,)
(all ones by default), with ``log p = log_softmax(z)`` and label smoothing ``eps``:

    loss = (1 - eps) * w[t] * (-log p[t])  +  (eps / C) * sum_c w[c] * (-log p[c])
    d loss / d z = (1 - eps) * w[t] * (p - onehot(t))  +  (eps / C) * (sum(w) * p - w)

(without weights and smoothing: ``-log p[t]`` and ``p - onehot(t)``). Pixels whose target is
``ignore_index`` contribute nothing. Reductions, as PyTorch's:

- ``"mean"``: the sum over pixels divided by the sum of ``w[t]`` over non-ignored pixels
  (the weighted mean; the plain mean over non-ignored pixels without weights). If every
  pixel is ignored that is 0 / 0 and the loss is NaN, as in PyTorch; its gradient is zero.
- ``"sum"``: the sum over pixels; ``"none"``: the (N, H, W) array of per-pixel losses.

Class-probability targets (PyTorch's float targets, one distribution ``q`` (C,) per pixel,
logits' shape) are :func:`cross_entropy_probs_forward`: with smoothing, ``q`` becomes
``(1 - eps) * q + eps / C``, and::

    loss = -sum_c w[c] * q[c] * log p[c]
    d loss / d z = p * sum_c(w[c] * q[c]) - w * q

Their ``"mean"`` divides the sum by the number of pixels N*H*W, not by a sum of weights
(PyTorch 2.13's rule); there is no ``ignore_index``.
"""

from __future__ import annotations

from .. import checks
from ..backend import get_array_module, to_numpy

__all__ = [
    "REDUCTIONS",
    "cross_entropy_backward",
    "cross_entropy_forward",
    "cross_entropy_probs_backward",
    "cross_entropy_probs_forward",
    "log_softmax",
    "softmax",
]

REDUCTIONS = ("mean", "sum", "none")


def log_softmax(x, dim: int = 1):
    """``log(softmax(x))`` along ``dim`` (the channels of NCHW by default), same shape.

    Stable for any finite logits: the largest logit is subtracted before ``exp``, so the
    exponentials lie in (0, 1] and their sum in [1, C]; logits of 1e4 are fine.
    """
    _check_dim("log_softmax", x, dim)
    if x.size == 0:  # nothing to normalize (and no maximum to take)
        return x.copy()
    xp = get_array_module(x)
    shifted = x - x.max(axis=dim, keepdims=True)
    shifted -= xp.log(xp.exp(shifted).sum(axis=dim, keepdims=True))  # our own array
    return shifted


def softmax(x, dim: int = 1):
    """Class probabilities along ``dim``, same shape as ``x``, summing to 1 along ``dim``."""
    _check_dim("softmax", x, dim)
    return get_array_module(x).exp(log_softmax(x, dim))


def _check_dim(where: str, x, dim) -> None:
    checks.check_operands(where, x, ndim=None)
    if x.ndim == 0 or isinstance(dim, bool) or not isinstance(dim, int) or not (
            -x.ndim <= dim < x.ndim):
        raise ValueError(f"{where}: dim={dim!r} is out of range for x of shape "
                         f"{tuple(x.shape)} (expected a dimension in [-rank, rank - 1] of "
                         f"a rank >= 1)")


def check_cross_entropy_call(where: str, logits, target, weight, reduction: str,
                             label_smoothing, probabilities: bool) -> None:
    """The arguments of the two cross-entropy forwards, as PyTorch takes them: logits
    (N, C, ...) float; target class indices (N, ...) of an integer dtype or, with
    ``probabilities``, shares of the logits' shape and dtype; weight (C,) or None;
    reduction and label smoothing. (Whether each index is a class: see
    :func:`check_class_indices`.)"""
    checks.check_operands(where, logits, ndim=None)
    if logits.ndim < 2:
        raise ValueError(f"{where}: expected logits (N, C) or (N, C, H, W), got shape "
                         f"{tuple(logits.shape)} (for one sample, pass logits[None])")
    N, C = logits.shape[:2]
    shape = tuple(logits.shape) if probabilities else (N, *logits.shape[2:])
    if probabilities:
        checks.check_operands(where, logits, ndim=None, target=(target, shape))
    else:
        checks.check_input(where, target, ndim=None, name="target", floating=False)
        if tuple(target.shape) != shape:
            raise ValueError(f"{where}: expected target of shape {shape} for logits of "
                             f"shape {tuple(logits.shape)}, got {tuple(target.shape)}")
    checks.check_operands(where, logits, ndim=None, weight=(weight, (C,)))
    checks.check_same_device(where, logits, target)
    if reduction not in REDUCTIONS:
        raise ValueError(f"{where}: reduction must be one of {REDUCTIONS}, got {reduction!r}")
    checks.check_number(where, "label_smoothing", label_smoothing, 0.0, 1.0)


def check_class_indices(where: str, target, classes: int, ignore_index: int) -> None:
    """Every target a class in [0, classes) or ``ignore_index``: read on the host (one
    synchronisation on a GPU, where an index past the end would be wrapped silently)."""
    bad = (target != ignore_index) & ((target < 0) | (target >= classes))
    if not bool(to_numpy(bad.any())):
        return
    xp = get_array_module(target)
    position = tuple(int(to_numpy(axis[0])) for axis in xp.nonzero(bad)) if bad.ndim else ()
    value = int(to_numpy(target[position]))
    raise ValueError(f"{where}: target has {value} at {position}; class indices must be in "
                     f"[0, {classes}) (the logits have {classes} classes) or equal "
                     f"ignore_index={ignore_index}")


def _per_class(values, ndim: int):
    """A (C,) array shaped (1, C, 1, ...) to broadcast against (N, C, ...) logits."""
    return values.reshape((1, -1) + (1,) * (ndim - 2))


def cross_entropy_forward(logits, target, weight=None, ignore_index: int = -100,
                          reduction: str = "mean", label_smoothing: float = 0.0):
    """Cross-entropy of ``softmax(logits)`` against integer targets (``F.cross_entropy``).

    Args:
        logits: (N, C, H, W) or (N, C) float array of class scores.
        target: (N, H, W) or (N,) integer array: class indices in [0, C), or
            ``ignore_index`` (checked: one synchronisation on a GPU).
        weight: None or a (C,) array of per-class weights, logits' dtype and device.
        ignore_index: the target value of pixels to leave out (e.g. 255, the VOC border).
        reduction: ``"mean"``, ``"sum"`` or ``"none"``.
        label_smoothing: ``eps`` in [0, 1]: the target becomes ``(1 - eps) * onehot(t) +
            eps / C``.

    Returns:
        loss: a 0-d array (``"mean"``, ``"sum"``) or (N, H, W) (``"none"``), logits' dtype
        and device; cache for :func:`cross_entropy_backward`.
    """
    where = "cross_entropy_forward"
    check_cross_entropy_call(where, logits, target, weight, reduction, label_smoothing,
                             probabilities=False)
    checks.check_count(where, "ignore_index", ignore_index, -2**63)
    check_class_indices(where, target, logits.shape[1], ignore_index)
    return cross_entropy_unchecked(logits, target, weight, ignore_index, reduction,
                                   label_smoothing)


def cross_entropy_unchecked(logits, target, weight, ignore_index: int, reduction: str,
                            label_smoothing: float):
    """:func:`cross_entropy_forward` without its checks, for a caller that made them
    (``CrossEntropyLoss`` makes them in its own name)."""
    xp = get_array_module(logits, target, weight)
    C = logits.shape[1]
    logp = log_softmax(logits, dim=1)
    valid = target != ignore_index
    # Ignored pixels look up class 0 instead, so that every index is in range; their
    # weight below is zero, which removes them again.
    safe_target = xp.where(valid, target, 0)
    logp_target = xp.take_along_axis(logp, safe_target[:, None], axis=1)[:, 0]
    if weight is None:
        weight_target = valid.astype(logits.dtype)
    else:
        weight_target = xp.where(valid, weight[safe_target], 0.0)

    loss = (1.0 - label_smoothing) * weight_target * -logp_target
    if label_smoothing > 0.0:
        weighted_logp = logp if weight is None else logp * _per_class(weight, logits.ndim)
        smooth = -weighted_logp.sum(axis=1)
        loss = loss + (label_smoothing / C) * xp.where(valid, smooth, 0.0)
    # An ignored pixel counts for nothing even when its logits are NaN or infinite (a weight
    # of 0 times NaN would be NaN), as in PyTorch, which leaves it out.
    loss = xp.where(valid, loss, 0.0)

    total_weight = None
    if reduction == "none":
        out = loss
    elif reduction == "sum":
        out = xp.asarray(loss.sum())
    else:
        total_weight = weight_target.sum()
        out = xp.asarray(_divide_or_nan(loss.sum(), total_weight, xp))
    cache = (logp, safe_target, valid, weight, weight_target, total_weight, reduction,
             label_smoothing)
    return out, cache


def _divide_or_nan(numerator, denominator, xp):
    """``numerator / denominator``, NaN where the denominator is 0, without a warning (and
    without NumPy's ``errstate``, which CuPy lacks)."""
    nonzero = denominator != 0
    return xp.where(nonzero, numerator / xp.where(nonzero, denominator, 1.0), float("nan"))


def cross_entropy_backward(dloss, cache):
    """Gradient of :func:`cross_entropy_forward` with respect to the logits.

    Args:
        dloss: the upstream gradient: a Python float or 0-d array (``"mean"``, ``"sum"``),
            or (N, H, W) (``"none"``).
        cache: from the forward pass.

    Returns:
        dlogits: the logits' shape and dtype.
    """
    (logp, safe_target, valid, weight, weight_target, total_weight, reduction,
     label_smoothing) = cache
    xp = get_array_module(logp)
    C = logp.shape[1]
    if reduction == "mean":
        # All pixels ignored: every per-pixel term below is zero, so any finite scale will
        # do; 1 avoids 0 / 0.
        dloss = dloss / xp.where(total_weight != 0, total_weight, 1.0)
    # Per-pixel upstream gradient (N, H, W), zero on ignored pixels.
    dpixel = xp.where(valid, dloss, 0.0).astype(logp.dtype, copy=False)

    p = xp.exp(logp)
    onehot = _per_class(xp.arange(C), logp.ndim) == safe_target[:, None]
    # (p - onehot) * scale, built in place in a fresh array (it is the largest one here).
    dlogits = p - onehot
    dlogits *= ((1.0 - label_smoothing) * weight_target * dpixel)[:, None]
    if label_smoothing > 0.0:
        if weight is None:
            smooth = C * p - 1.0
        else:
            smooth = weight.sum() * p - _per_class(weight, logp.ndim)
        dlogits += (label_smoothing / C) * dpixel[:, None] * smooth
    return dlogits


def cross_entropy_probs_forward(logits, target, weight=None, reduction: str = "mean",
                                label_smoothing: float = 0.0):
    """Cross-entropy of ``softmax(logits)`` against class probabilities (PyTorch's float
    targets).

    Args:
        logits: (N, C, H, W) or (N, C) float array of class scores.
        target: float array of the logits' shape and dtype: per pixel, the share of each
            class (usually summing to 1; not checked, as in PyTorch).
        weight: None or a (C,) array of per-class weights, logits' dtype and device.
        reduction: ``"mean"`` (the sum divided by N*H*W: NaN for no pixels), ``"sum"`` or
            ``"none"`` ((N, H, W)).
        label_smoothing: ``eps``: the target becomes ``(1 - eps) * target + eps / C``.

    Returns:
        loss: a 0-d array or (N, H, W); cache for :func:`cross_entropy_probs_backward`.
    """
    check_cross_entropy_call("cross_entropy_probs_forward", logits, target, weight,
                             reduction, label_smoothing, probabilities=True)
    xp = get_array_module(logits, target, weight)
    C = logits.shape[1]
    logp = log_softmax(logits, dim=1)
    q = target if label_smoothing == 0.0 else (1.0 - label_smoothing) * target + (
        label_smoothing / C)
    wq = q if weight is None else q * _per_class(weight, logits.ndim)  # w[c] * q[c]
    loss = -(wq * logp).sum(axis=1)
    count = None
    if reduction == "none":
        out = loss
    elif reduction == "sum":
        out = xp.asarray(loss.sum())
    else:
        count = loss.size  # pixels, N*H*W (PyTorch divides by this, not by the weights)
        out = (xp.asarray(loss.sum() / count) if count else
               xp.full((), float("nan"), dtype=logits.dtype))  # no pixels: 0 / 0
    return out, (logp, wq, reduction, count)


def cross_entropy_probs_backward(dloss, cache):
    """Gradient of :func:`cross_entropy_probs_forward` with respect to the logits.

    Args:
        dloss: a Python float or 0-d array (``"mean"``, ``"sum"``), or (N, H, W)
            (``"none"``).
        cache: from the forward pass.

    Returns:
        dlogits: the logits' shape and dtype, ``(p * sum_c(w*q) - w*q) * dloss`` per pixel.
    """
    logp, wq, reduction, count = cache
    xp = get_array_module(logp)
    if reduction == "mean":
        dloss = dloss / max(count, 1)  # no pixels: dlogits is empty anyway
    dlogits = xp.exp(logp) * wq.sum(axis=1, keepdims=True)
    dlogits -= wq
    dlogits *= dloss[:, None] if reduction == "none" else dloss
    return dlogits
