"""Exercise 6: Average pooling forward and backward.

Check your work with:   minifcn exercises check avg_pool2d
Read first:             lessons/03_subsampling.py

Notation: N batch, C channels, H x W input, KH x KW window (kernel), SH x SW stride, PH x PW
zero padding, OH x OW output. kernel_size, stride and padding come as an int or a (height,
width) pair; stride=None means stride = kernel_size, as in PyTorch.

Window (oh, ow) covers the zero-padded input's rows oh*SH ... oh*SH + KH - 1 and columns
ow*SW ... ow*SW + KW - 1. Its mean, as PyTorch computes it by default
(count_include_pad=True: the padding's zeros count as pixels):

    y[n, c, oh, ow] = (sum of the window of x_padded[n, c]) / (KH*KW)
    OH = (H + 2*PH - KH) // SH + 1                    (and the same for OW)

Backward: every tap of a window influenced y with weight 1/(KH*KW), so each of them gets
dy[n, c, oh, ow] / (KH*KW). Windows OVERLAP when the stride is smaller than the kernel; a
pixel then receives the SUM of its windows' shares (+=, never =). Average pooling is
linear, so its backward is its transpose: the checks test <pool(x), dy> == <x, dx>.

Fast and portable: loop over the KH*KW kernel offsets only; offset (i, j) sees, for all
windows at once, the strided slice x_padded[:, :, i : i + SH*(OH - 1) + 1 : SH,
j : j + SW*(OW - 1) + 1 : SW] (N, C, OH, OW).

GPU: write xp = get_array_module(x) and use xp.zeros, xp.pad, ... never np.<name> on an
array, so that the same code runs on CuPy. The checker runs it on a strict stand-in.
"""

from minifcn.backend import get_array_module


def _pair(value):
    """kernel_size, stride and padding come as an int or a pair (height, width)."""
    return (value, value) if isinstance(value, int) else tuple(value)


def avg_pool2d_forward(x, kernel_size, stride=None, padding=0):
    """Average pooling with count_include_pad=True.

    Args:
        x: (N, C, H, W) float.
        kernel_size: int or pair.
        stride: int, pair or None (None: the kernel size).
        padding: int or pair, at most half the kernel (PyTorch's rule); zeros.

    Returns:
        y: (N, C, OH, OW), each window's sum divided by KH*KW.
        cache: whatever your backward needs (x's shape and the geometry suffice).
    """
    xp = get_array_module(x)  # noqa: F841  (numpy or cupy: use it for every new array)
    raise NotImplementedError("Exercise 6: avg_pool2d_forward")


def avg_pool2d_backward(dy, cache):
    """Gradient of avg_pool2d_forward.

    Args:
        dy: (N, C, OH, OW).
        cache: what your forward returned.

    Returns:
        dx: (N, C, H, W); every tap of every window gets dy / (KH*KW), ADDED.

    Hint: a zero buffer of the padded size; add dy / (KH*KW) into each offset's slice;
    crop the padding off at the end.
    """
    raise NotImplementedError("Exercise 6: avg_pool2d_backward")
