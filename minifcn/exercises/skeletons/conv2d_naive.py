"""Exercise 2: Conv2d forward from its definition, with loops.

Check your work with:   minifcn exercises check conv2d_naive
Read first:             lessons/01_convolution.py

Notation: N batch, C input channels, F output channels (filters), H x W input, KH x KW
kernel, SH x SW stride, PH x PW zero padding, DH x DW dilation, OH x OW output.

A convolution slides each of the F kernels over the zero-padded input. Output pixel
(oh, ow) of filter f is the kernel's dot product with the window it covers:

    y[n, f, oh, ow] = bias[f] + sum over c, i, j of
                      weight[f, c, i, j] * x_padded[n, c, oh*SH + i*DH, ow*SW + j*DW]

This is a cross-correlation, as in PyTorch: the kernel is NOT flipped. The window's top-left
pixel is (oh*SH, ow*SW) in the padded input; its taps are DH rows and DW columns apart, so
the dilated kernel spans DH*(KH - 1) + 1 rows. The windows that fit:

    OH = (H + 2*PH - DH*(KH - 1) - 1) // SH + 1        (and the same for OW)

Loops are fine here (slow, but plain): over oh and ow, and the kernel offsets or the
window as a slice. Exercise 3 (im2col) and 4 (conv2d) make it one matrix product.

GPU: write xp = get_array_module(x) and use xp.zeros, xp.pad, ... never np.<name> on an
array, so that the same code runs on CuPy. The checker runs it on a strict stand-in.
"""

from minifcn.backend import get_array_module


def _pair(value):
    """stride, padding and dilation come as an int or a pair (height, width), as in PyTorch."""
    return (value, value) if isinstance(value, int) else tuple(value)


def conv2d_naive(x, weight, bias=None, stride=1, padding=0, dilation=1):
    """Convolution (cross-correlation) from its definition.

    Args:
        x: (N, C, H, W) input.
        weight: (F, C, KH, KW), PyTorch's layout.
        bias: (F,) or None.
        stride, padding, dilation: int or (height, width) pair.

    Returns:
        y: (N, F, OH, OW), as in the formula above.

    Hint: pad once, x_padded = xp.pad(x, ((0, 0), (0, 0), (PH, PH), (PW, PW))); then the
    window of (oh, ow) is x_padded[:, :, oh*SH : oh*SH + DH*(KH-1) + 1 : DH, ...] (N, C, KH,
    KW), and for all filters at once xp.tensordot(window, weight, axes=([1, 2, 3],
    [1, 2, 3])) is (N, F).
    """
    xp = get_array_module(x)  # noqa: F841  (numpy or cupy: use it for every new array)
    raise NotImplementedError("Exercise 2: conv2d_naive")
