"""Exercise 11: Bilinear up-sampling, align_corners False and True, and its backward.

Check your work with:   minifcn exercises check upsample
Read first:             lessons/06_upsampling.py

Notation: N batch, C channels, H x W input, OH x OW output (size = (OH, OW)).

Each output pixel (oh, ow) samples the input at a real-valued source position, one axis at
a time (rows shown; columns the same with W and OW):

    OH == H:                 src = oh                          (an unchanged axis is copied)
    align_corners=True:      src = oh * (H - 1) / (OH - 1)     (0 when OH == 1)
    align_corners=False:     src = max((oh + 0.5) * H / OH - 0.5, 0)
    (None means False, PyTorch's default)

and blends the two nearest input rows:

    i0 = floor(src)    i1 = min(i0 + 1, H - 1)    t = src - i0
    row value = (1 - t) * x[..., i0, :] + t * x[..., i1, :]

With True the corner pixels of input and output line up; with False their pixel CENTRES
line up (and the edge pixels are repeated beyond the last centre).

The whole thing is linear in x. Along one axis it is a small (OH, H) matrix A_H with at most
two non-zeros per row, so y[n, c] = A_H @ x[n, c] @ A_W.T, and the backward pass is the
transpose: dx[n, c] = A_H.T @ dy[n, c] @ A_W. If you scatter instead, remember that several
outputs read the same input pixel: their gradients must be ADDED.

GPU: write xp = get_array_module(x) and use xp.<name>, never np.<name> on an array. The
checker runs your code on a strict CuPy stand-in.
"""

from minifcn.backend import get_array_module


def upsample_forward(x, size, mode="bilinear", align_corners=None):
    """Resize every (H, W) map of x to size (bilinear).

    Args:
        x: (N, C, H, W) float input.
        size: (OH, OW), the output size.
        mode: "bilinear" (the only mode the checks use).
        align_corners: True, False or None (= False).

    Returns:
        y: (N, C, OH, OW), x's dtype.
        cache: whatever your backward needs (e.g. the two interpolation matrices).

    Hint: build src for each axis with xp.arange(OH, dtype=x.dtype), then the (OH, H) matrix
    from i0, i1 and t; two matrix products give y.
    """
    xp = get_array_module(x)  # noqa: F841  (numpy or cupy: use it for every new array)
    raise NotImplementedError("Exercise 11: upsample_forward")


def upsample_backward(dy, cache):
    """Gradient of upsample_forward.

    Args:
        dy: (N, C, OH, OW), the gradient of the loss with respect to y.
        cache: what your forward returned.

    Returns:
        dx: (N, C, H, W): each input pixel collects the gradients of the outputs that read
        it, weighted as they read it.

    Hint: the transposes of the forward's matrices, in the same two products.
    """
    raise NotImplementedError("Exercise 11: upsample_backward")
