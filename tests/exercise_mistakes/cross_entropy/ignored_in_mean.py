"""Cross-entropy that zeroes the ignored pixels' losses but still divides by every pixel.

Symptom: divided by every pixel, ignored ones included
"""

from minifcn.backend import get_array_module


def cross_entropy_forward(logits, target, weight=None, ignore_index=-100):
    xp = get_array_module(logits)
    C = logits.shape[1]
    shifted = logits - logits.max(axis=1, keepdims=True)
    log_p = shifted - xp.log(xp.exp(shifted).sum(axis=1, keepdims=True))
    valid = target != ignore_index
    t = xp.where(valid, target, 0)
    picked = xp.take_along_axis(log_p, t[:, None], axis=1)[:, 0]
    if weight is None:
        w = valid.astype(logits.dtype)
    else:
        w = weight[t] * valid
    denominator = w.sum()
    loss = -(w * picked).mean()
    onehot = xp.arange(C).reshape(1, C, 1, 1) == t[:, None]
    return xp.asarray(loss), (xp.exp(log_p), onehot, w, denominator)


def cross_entropy_backward(dloss, cache):
    p, onehot, w, denominator = cache
    return (p - onehot) * (w / denominator * dloss)[:, None]
