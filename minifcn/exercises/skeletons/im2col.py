"""Exercise 3: im2col and col2im.

Check your work with:   minifcn exercises check im2col
Read first:             lessons/01_convolution.py

Notation: N batch, C channels, H x W input, KH x KW kernel, SH x SW stride, PH x PW zero
padding, DH x DW dilation, OH x OW output, with

    OH = (H + 2*PH - DH*(KH - 1) - 1) // SH + 1        (and the same for OW)

A convolution applies the same weights to every window. im2col copies each KH x KW window
of the padded input into one COLUMN of a matrix, so that the whole convolution becomes one
matrix product (exercise 4):

    cols = im2col(x, ...)                            (C*KH*KW, N*OH*OW)
    cols[(c, i, j), (n, oh, ow)] = x_padded[n, c, oh*SH + i*DH, ow*SW + j*DW]
    y_mat = weight.reshape(F, C*KH*KW) @ cols        (F, N*OH*OW)

Rows run over (c, i, j) in that order (the order of weight.reshape(F, -1)), columns over
(n, oh, ow). col2im goes the other way: it puts every entry of cols back on the pixel it was
copied from. Windows overlap when the stride is smaller than the kernel, so a pixel gets
contributions from several columns: col2im ADDS them (it is im2col's transpose, which is
what the convolution's backward needs), and drops what lands on the padding.

Here kernel_size, stride, padding and dilation always come as (height, width) pairs.

Fast and portable: loop over the KH*KW kernel offsets only. Offset (i, j) sees, for all
windows at once, the strided slice

    x_padded[:, :, i*DH : i*DH + SH*(OH - 1) + 1 : SH, j*DW : j*DW + SW*(OW - 1) + 1 : SW]

of shape (N, C, OH, OW). Build cols as (C, KH, KW, N, OH, OW) and reshape at the end.

GPU: write xp = get_array_module(x) and use xp.zeros, ... never np.<name> on an array (and
no np.add.at), so that the same code runs on CuPy. The checker runs it on a strict stand-in.
"""

from minifcn.backend import get_array_module


def im2col(x, kernel_size, stride, padding, dilation):
    """The KH x KW windows of x as the columns of one matrix.

    Args:
        x: (N, C, H, W).
        kernel_size, stride, padding, dilation: (height, width) pairs.

    Returns:
        cols: (C*KH*KW, N*OH*OW), cols[(c, i, j), (n, oh, ow)] =
        x_padded[n, c, oh*SH + i*DH, ow*SW + j*DW].

    Hint: x_padded = xp.zeros((N, C, H + 2*PH, W + 2*PW), dtype=x.dtype) with x copied into
    its middle; cols[:, i, j] = (the slice above).transpose(1, 0, 2, 3).
    """
    xp = get_array_module(x)  # noqa: F841  (numpy or cupy: use it for every new array)
    raise NotImplementedError("Exercise 3: im2col")


def col2im(cols, x_shape, kernel_size, stride, padding, dilation):
    """im2col's adjoint: add every column back where its window came from.

    Args:
        cols: (C*KH*KW, N*OH*OW), laid out as im2col returns.
        x_shape: (N, C, H, W), the image to rebuild.
        kernel_size, stride, padding, dilation: (height, width) pairs.

    Returns:
        (N, C, H, W): each pixel holds the SUM of the entries of cols copied from it.

    Hint: a zero buffer of the padded size; for each offset (i, j), buffer[slice] += the
    (N, C, OH, OW) part of cols; finally crop the padding off.
    """
    xp = get_array_module(cols)  # noqa: F841
    raise NotImplementedError("Exercise 3: col2im")
