"""Exercise 12: Cross-entropy over pixels, with class weights and ignored (void) pixels.

Check your work with:   minifcn exercises check cross_entropy
Read first:             lessons/12_metrics.py (void pixels) and lessons/02_backward.py

Notation: N batch, C classes, H x W pixels. logits z (N, C, H, W): one score per class and
pixel; target t (N, H, W): integer classes in [0, C), or ignore_index for void pixels
(e.g. 255, the border band of Pascal VOC masks); weight w (C,) per-class weights, or None
(all ones).

For one pixel, with p = softmax(z) over the C classes:

    log p[c] = z[c] - m - log(sum_k exp(z[k] - m))        with m = max_k z[k]
    loss_pixel = w[t] * -log p[t]

(Subtracting m changes nothing mathematically and keeps exp from overflowing: exp(1e4) is
inf, and inf / inf is NaN.)

The loss is the weighted MEAN over the pixels whose target is not ignore_index, as PyTorch:

    loss = sum of loss_pixel over counted pixels / sum of w[t] over counted pixels

Ignored pixels add nothing to either sum. Its gradient, for a counted pixel:

    dloss/dz = dloss * w[t] * (p - onehot(t)) / (sum of w[t] over counted pixels)

and 0 at an ignored pixel.

GPU: write xp = get_array_module(logits) and use xp.<name>, never np.<name> on an array.
The checker runs your code on a strict CuPy stand-in.
"""

from minifcn.backend import get_array_module


def cross_entropy_forward(logits, target, weight=None, ignore_index=-100):
    """The mean cross-entropy of softmax(logits) against integer targets.

    Args:
        logits: (N, C, H, W) float class scores.
        target: (N, H, W) integer classes in [0, C), or ignore_index.
        weight: (C,) per-class weights, or None.
        ignore_index: the target value of pixels to leave out.

    Returns:
        loss: a 0-d array (e.g. xp.asarray(total / count)), logits' dtype.
        cache: whatever your backward needs (e.g. p, the target, the mask of counted
            pixels, their weights, the denominator).

    Hint: give ignored pixels a harmless class (xp.where(valid, target, 0)) so that
    xp.take_along_axis(log_p, t[:, None], axis=1) can index with it, then give them weight
    0.
    """
    xp = get_array_module(logits)  # noqa: F841  (numpy or cupy: use it for every new array)
    raise NotImplementedError("Exercise 12: cross_entropy_forward")


def cross_entropy_backward(dloss, cache):
    """Gradient of cross_entropy_forward with respect to the logits.

    Args:
        dloss: the upstream gradient, a number (1.0 when the loss is the final output).
        cache: what your forward returned.

    Returns:
        dlogits: (N, C, H, W); 0 at ignored pixels.

    Hint: p - onehot(t), where onehot(t) is xp.arange(C).reshape(1, C, 1, 1) == t[:, None].
    """
    raise NotImplementedError("Exercise 12: cross_entropy_backward")
