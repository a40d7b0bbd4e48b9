"""Batch norm that normalizes with the unbiased variance (x.var(ddof=1)) instead of the biased one.

Symptom: normalized with the UNBIASED variance
"""

from minifcn.backend import get_array_module


def batch_norm_forward(x, weight, bias, running_mean, running_var, training, momentum, eps):
    xp = get_array_module(x)
    C = x.shape[1]
    w = weight.reshape(1, C, 1, 1)
    b = bias.reshape(1, C, 1, 1)
    if training:
        m = x.size // C
        mu = x.mean(axis=(0, 2, 3), keepdims=True)
        var = ((x - mu) ** 2).sum(axis=(0, 2, 3), keepdims=True) / (m - 1)
        running_mean[...] = (1 - momentum) * running_mean + momentum * mu.reshape(C)
        running_var[...] = (1 - momentum) * running_var + momentum * var.reshape(C)
    else:
        mu = running_mean.reshape(1, C, 1, 1)
        var = running_var.reshape(1, C, 1, 1)
    inv_std = 1.0 / xp.sqrt(var + eps)
    xhat = (x - mu) * inv_std
    return w * xhat + b, (training, xhat, inv_std, w)


def batch_norm_backward(dy, cache):
    training, xhat, inv_std, w = cache
    dbias = dy.sum(axis=(0, 2, 3))
    dweight = (dy * xhat).sum(axis=(0, 2, 3))
    if not training:
        return dy * w * inv_std, dweight, dbias
    m = dy.size // dy.shape[1]
    C = dy.shape[1]
    dx = w * inv_std * (dy - dbias.reshape(1, C, 1, 1) / m
                        - xhat * dweight.reshape(1, C, 1, 1) / m)
    return dx, dweight, dbias
