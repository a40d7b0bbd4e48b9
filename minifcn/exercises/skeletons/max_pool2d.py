"""Exercise 5: Max pooling forward and backward.

Check your work with:   minifcn exercises check max_pool2d
Read first:             lessons/03_subsampling.py

Notation: N batch, C channels, H x W input, KH x KW window (kernel), SH x SW stride, PH x PW
padding, OH x OW output. kernel_size, stride and padding come as an int or a (height,
width) pair; stride=None means stride = kernel_size, as in PyTorch.

Window (oh, ow) covers the padded input's rows oh*SH ... oh*SH + KH - 1 and columns
ow*SW ... ow*SW + KW - 1; the padding is -inf, so it never wins. Then

    y[n, c, oh, ow] = max over the window of x_padded[n, c, ...]
    OH = (H + 2*PH - KH) // SH + 1                    (and the same for OW)

Backward: only the maximum of each window influenced y, so each window's gradient dy[n, c,
oh, ow] goes to that one pixel. Two rules that the checks test:

- With a stride smaller than the kernel, windows OVERLAP: a pixel may be the maximum of
  several windows, and then receives the SUM of their gradients (+=, never =).
- With a tie (two equal maxima in one window), the gradient goes to ONE of them: the FIRST
  in row-major order (row by row, left to right), as PyTorch does. argmax returns the first.

Fast and portable: loop over the KH*KW kernel offsets only; offset (i, j) sees, for all
windows at once, the strided slice x_padded[:, :, i : i + SH*(OH - 1) + 1 : SH,
j : j + SW*(OW - 1) + 1 : SW] (N, C, OH, OW). Or stack the windows and use argmax.

GPU: write xp = get_array_module(x) and use xp.full, xp.zeros, ... never np.<name> on an
array (and no np.add.at), so that the same code runs on CuPy. The checker runs it on a
strict stand-in.
"""

from minifcn.backend import get_array_module


def _pair(value):
    """kernel_size, stride and padding come as an int or a pair (height, width)."""
    return (value, value) if isinstance(value, int) else tuple(value)


def max_pool2d_forward(x, kernel_size, stride=None, padding=0):
    """Max pooling.

    Args:
        x: (N, C, H, W) float.
        kernel_size: int or pair.
        stride: int, pair or None (None: the kernel size).
        padding: int or pair, at most half the kernel (PyTorch's rule); padded with -inf.

    Returns:
        y: (N, C, OH, OW), the maximum of each window.
        cache: whatever your backward needs (e.g. x's shape, the geometry, and which
            offset of each window held its first maximum).

    Hint: y = xp.full((N, C, OH, OW), -inf); for each offset k = i*KW + j in row-major
    order, where the slice is STRICTLY greater than y, update y and remember k there: the
    first maximum keeps the window on a tie.
    """
    xp = get_array_module(x)  # noqa: F841  (numpy or cupy: use it for every new array)
    raise NotImplementedError("Exercise 5: max_pool2d_forward")


def max_pool2d_backward(dy, cache):
    """Gradient of max_pool2d_forward.

    Args:
        dy: (N, C, OH, OW).
        cache: what your forward returned.

    Returns:
        dx: (N, C, H, W); each window's dy ADDED at its first maximum, 0 elsewhere.

    Hint: a zero buffer of the padded size; for each offset k, add dy * (remembered == k)
    into the offset's slice; crop the padding off at the end.
    """
    raise NotImplementedError("Exercise 5: max_pool2d_backward")
