"""Exercise 9: Transposed convolution forward and backward.

Check your work with:   minifcn exercises check conv_transpose2d
Read first:             lessons/06_upsampling.py

Notation: N batch, C_in input channels, C_out output channels, H x W input, KH x KW kernel,
SH x SW stride, PH x PW padding, OPH x OPW output_padding, OH x OW output. stride, padding
and output_padding come as an int or a (height, width) pair.

The up-sampling layer of FCN. Each input pixel STAMPS the kernel, scaled by its value, onto
the output; stamps of neighbouring pixels land SH rows and SW columns apart (so they overlap
when the kernel is larger than the stride, and ADD). Then PH rows are cropped off the top
and bottom, and output_padding adds OPH rows at the bottom:

    y_full[n, d, h*SH + i, w*SW + j] += x[n, c, h, w] * weight[c, d, i, j]
    y = y_full[:, :, PH : PH + OH, PW : PW + OW] (+ bias[d])
    OH = (H - 1)*SH - 2*PH + KH + OPH                 (and the same for OW)

weight is (C_in, C_out, KH, KW), PyTorch's layout. Two other ways to see the same map (the
checks test both):
  - insert SH - 1 zero rows (SW - 1 zero columns) between the input's pixels, pad KH - 1 - PH
    on each side (plus OPH at the bottom), and run a stride-1 convolution with the kernel
    FLIPPED and its channel axes swapped, weight[:, :, ::-1, ::-1].transpose(1, 0, 2, 3);
  - the transpose (adjoint) of conv2d(z, weight, stride, padding), the convolution from
    C_out to C_in channels: <conv2d(z), x> == <z, conv_transpose2d(x)> for all z and x.

Backward, from the stamp formula: dx[n, c, h, w] = sum of weight[c, d, i, j] * dy_full[n, d,
h*SH + i, w*SW + j] (a plain strided convolution of dy: no flip), dweight[c, d, i, j] = sum of
x[n, c, h, w] * dy_full[n, d, h*SH + i, w*SW + j], dbias = dy summed over N, OH, OW; dy_full
is dy put back into the uncropped frame.

Fast and portable: loop over the KH*KW kernel offsets; offset (i, j) touches the strided
slice y_full[:, :, i : i + SH*(H - 1) + 1 : SH, j : j + SW*(W - 1) + 1 : SW] (N, C_out, H, W).

GPU: write xp = get_array_module(x) and use xp.zeros, xp.einsum, ... never np.<name> on an
array, so that the same code runs on CuPy. The checker runs it on a strict stand-in.
"""

from minifcn.backend import get_array_module


def _pair(value):
    """stride, padding and output_padding come as an int or a pair (height, width)."""
    return (value, value) if isinstance(value, int) else tuple(value)


def conv_transpose2d_forward(x, weight, bias=None, stride=1, padding=0, output_padding=0):
    """Transposed convolution.

    Args:
        x: (N, C_in, H, W).
        weight: (C_in, C_out, KH, KW).
        bias: (C_out,) or None.
        stride, padding, output_padding: int or pair; output_padding < stride.

    Returns:
        y: (N, C_out, OH, OW), as the formula above.
        cache: whatever your backward needs.

    Hint: a zero y_full large enough for every stamp and for the crop (at least
    PH + OH rows); for each (i, j): y_full[slice] += xp.einsum("nchw,cd->ndhw", x,
    weight[:, :, i, j]); then crop.
    """
    xp = get_array_module(x)  # noqa: F841  (numpy or cupy: use it for every new array)
    raise NotImplementedError("Exercise 9: conv_transpose2d_forward")


def conv_transpose2d_backward(dy, cache):
    """Gradients of conv_transpose2d_forward.

    Args:
        dy: (N, C_out, OH, OW).
        cache: what your forward returned.

    Returns:
        (dx, dweight, dbias): (N, C_in, H, W), (C_in, C_out, KH, KW), and (C_out,) or None
        when the forward had no bias.

    Hint: put dy back into a zero array of y_full's shape; then each offset (i, j) reads
    the same slice the forward wrote.
    """
    raise NotImplementedError("Exercise 9: conv_transpose2d_backward")
