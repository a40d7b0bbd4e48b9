"""Bilinear up-sampling (align_corners=False) that does not clamp the source position at 0.

Symptom: wrong only near the border
"""

from minifcn.backend import get_array_module


def _axis(in_size, out_size, align_corners, xp, dtype):
    """For one axis: the two input indices each output pixel blends, and the weight t."""
    dst = xp.arange(out_size, dtype=dtype)
    if out_size == in_size:
        src = dst
    elif align_corners:
        src = dst * ((in_size - 1) / (out_size - 1) if out_size > 1 else 0.0)
    else:
        src = (dst + 0.5) * (in_size / out_size) - 0.5
    i0 = xp.minimum(xp.floor(src).astype(xp.int64), in_size - 1)
    i1 = xp.minimum(i0 + 1, in_size - 1)
    return i0, i1, src - i0


def upsample_forward(x, size, mode="bilinear", align_corners=None):
    xp = get_array_module(x)
    N, C, H, W = x.shape
    OH, OW = size
    r0, r1, tr = _axis(H, OH, align_corners, xp, x.dtype)
    c0, c1, tc = _axis(W, OW, align_corners, xp, x.dtype)
    rows = x[:, :, r0, :] * (1 - tr)[:, None] + x[:, :, r1, :] * tr[:, None]
    y = rows[:, :, :, c0] * (1 - tc) + rows[:, :, :, c1] * tc
    return y, (x.shape, r0, r1, tr, c0, c1, tc)


def upsample_backward(dy, cache):
    xp = get_array_module(dy)
    (N, C, H, W), r0, r1, tr, c0, c1, tc = cache
    OH = dy.shape[2]
    # columns: every output column sends its gradient to the two input columns it read
    d_rows = xp.zeros((W, N, C, OH), dtype=dy.dtype)
    xp.add.at(d_rows, c0, (dy * (1 - tc)).transpose(3, 0, 1, 2))
    xp.add.at(d_rows, c1, (dy * tc).transpose(3, 0, 1, 2))
    d_rows = d_rows.transpose(3, 1, 2, 0)  # (OH, N, C, W)
    dx = xp.zeros((H, N, C, W), dtype=dy.dtype)
    xp.add.at(dx, r0, d_rows * (1 - tr)[:, None, None, None])
    xp.add.at(dx, r1, d_rows * tr[:, None, None, None])
    return dx.transpose(1, 2, 0, 3)
