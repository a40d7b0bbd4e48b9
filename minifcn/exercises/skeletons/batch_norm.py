"""Exercise 8: Batch normalization: training, evaluation, running statistics, backward.

Check your work with:   minifcn exercises check batch_norm
Read first:             lessons/04_batchnorm_dropout.py

Notation: N batch, C channels, H x W spatial size; M = N * H * W, the number of values
each channel's statistics are taken over. weight, bias, running_mean, running_var are (C,).
A (C,) vector v meets an (N, C, H, W) array as v.reshape(1, C, 1, 1).

Training (the statistics of the current batch, per channel, over N, H and W):

    mean = sum(x) / M                     var = sum((x - mean)**2) / M     (biased)
    xhat = (x - mean) / sqrt(var + eps)   y = weight * xhat + bias

and the running statistics move towards the batch's, IN PLACE (as PyTorch's functional
batch_norm does; the caller's arrays must change):

    running_mean <- (1 - momentum) * running_mean + momentum * mean
    running_var  <- (1 - momentum) * running_var  + momentum * var * M / (M - 1)  (UNBIASED)

Evaluation (training=False) uses running_mean and running_var in place of mean and var and
changes nothing: a fixed affine map per channel, y = x * scale + shift.

Backward, with the sums over N, H and W:

    dbias   = sum(dy)                     dweight = sum(dy * xhat)
    training:   dx = weight / sqrt(var + eps) * (dy - dbias / M - xhat * dweight / M)
    evaluation: dx = weight / sqrt(running_var + eps) * dy

(In training the mean and the variance depend on every x of the channel: that is where the
two extra terms come from. Derive them once on paper with the chain rule through mean and
var.)

GPU: write xp = get_array_module(x) and use xp.<name>, never np.<name> on an array. The
checker runs your code on a strict CuPy stand-in.
"""

from minifcn.backend import get_array_module


def batch_norm_forward(x, weight, bias, running_mean, running_var, training, momentum, eps):
    """Batch normalization of an (N, C, H, W) batch, per channel.

    Args:
        x: (N, C, H, W) float input.
        weight, bias: (C,) scale and shift.
        running_mean, running_var: (C,) running statistics; in training, update them in
            place (running_mean[...] = ...), never rebind the names.
        training: True for the batch's statistics, False for the running ones.
        momentum: the weight of the batch's statistics in the update, e.g. 0.1.
        eps: added to the variance under the square root, e.g. 1e-5.

    Returns:
        y: (N, C, H, W).
        cache: whatever your backward needs (e.g. training, xhat, 1 / sqrt(var + eps),
            weight).

    Hint: x.mean(axis=(0, 2, 3), keepdims=True) gives (1, C, 1, 1), ready to broadcast.
    """
    xp = get_array_module(x)  # noqa: F841  (numpy or cupy: use it for every new array)
    raise NotImplementedError("Exercise 8: batch_norm_forward")


def batch_norm_backward(dy, cache):
    """Gradients of batch_norm_forward.

    Args:
        dy: (N, C, H, W), the gradient of the loss with respect to y.
        cache: what your forward returned.

    Returns:
        (dx, dweight, dbias): dx (N, C, H, W); dweight and dbias (C,).

    Hint: compute dbias and dweight first; the training dx needs exactly those two sums.
    """
    raise NotImplementedError("Exercise 8: batch_norm_backward")
