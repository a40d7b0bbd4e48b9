"""Exercise 4: Conv2d forward as one matrix product, and its backward.

Check your work with:   minifcn exercises check conv2d
Read first:             lessons/01_convolution.py and lessons/02_backward.py

Notation: N batch, C input channels, F output channels (filters), H x W input, KH x KW
kernel, SH x SW stride, PH x PW zero padding, DH x DW dilation, OH x OW output.

    OH = (H + 2*PH - DH*(KH - 1) - 1) // SH + 1        (and the same for OW)

With cols = im2col(x) of shape (C*KH*KW, N*OH*OW) and W_mat = weight.reshape(F, C*KH*KW),
the whole layer is three matrix products (GEMMs):

    y_mat  = W_mat @ cols          forward           (F, N*OH*OW)
    dW_mat = dy_mat @ cols.T       weight gradient   (F, C*KH*KW)
    dcols  = W_mat.T @ dy_mat      input gradient    (C*KH*KW, N*OH*OW), then col2im

where y_mat is y laid out as (F, N*OH*OW): y.transpose(1, 0, 2, 3).reshape(F, -1).

You need im2col and col2im. Use yours from exercise 3 (`from im2col import im2col, col2im`:
the checker puts this folder on Python's path), or write them here.

GPU: write xp = get_array_module(x) and use xp.zeros, xp.matmul, ... never np.<name> on
an array, so that the same code runs on CuPy. The checker runs it on a strict stand-in.
"""

from minifcn.backend import get_array_module


def _pair(value):
    """stride, padding and dilation come as an int or a pair (height, width), as in PyTorch."""
    return (value, value) if isinstance(value, int) else tuple(value)


def conv2d_forward(x, weight, bias=None, stride=1, padding=0, dilation=1):
    """Convolution (cross-correlation, as PyTorch's: the kernel is NOT flipped).

    Args:
        x: (N, C, H, W) input.
        weight: (F, C, KH, KW), PyTorch's layout.
        bias: (F,) or None.
        stride, padding, dilation: int or (height, width) pair.

    Returns:
        y: (N, F, OH, OW), y[n, f, oh, ow] = bias[f] + sum over c, i, j of
           weight[f, c, i, j] * x_padded[n, c, oh*SH + i*DH, ow*SW + j*DW]
        cache: whatever your backward needs (e.g. a tuple of x, weight, cols, ...).

    Hint: im2col the input, one matrix product with weight.reshape(F, -1), then reshape
    (F, N, OH, OW) and transpose to (N, F, OH, OW); add bias.reshape(1, F, 1, 1).
    """
    xp = get_array_module(x)  # noqa: F841  (numpy or cupy: use it for every new array)
    raise NotImplementedError("Exercise 4: conv2d_forward")


def conv2d_backward(dy, cache):
    """Gradients of conv2d_forward.

    Args:
        dy: (N, F, OH, OW), the gradient of the loss with respect to y.
        cache: what your forward returned.

    Returns:
        (dx, dweight, dbias):
        dx: (N, C, H, W). Pixels that several windows read get the SUM of their gradients.
        dweight: (F, C, KH, KW).
        dbias: (F,), dy summed over N, OH and OW; None if the forward had no bias.

    Hint: bring dy to dy_mat (F, N*OH*OW) as the forward brought y; then the two GEMMs
    above; col2im turns dcols back into an image.
    """
    raise NotImplementedError("Exercise 4: conv2d_backward")
