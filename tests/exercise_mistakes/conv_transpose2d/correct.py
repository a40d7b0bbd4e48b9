"""A correct learner solution of exercise 9 (conv_transpose2d), written as a learner would:
each input pixel stamps the kernel onto the output, one kernel offset at a time."""

from minifcn.backend import get_array_module


def _pair(value):
    return (value, value) if isinstance(value, int) else tuple(value)


def conv_transpose2d_forward(x, weight, bias=None, stride=1, padding=0, output_padding=0):
    xp = get_array_module(x)
    sh, sw = _pair(stride)
    ph, pw = _pair(padding)
    oph, opw = _pair(output_padding)
    n, c_in, h, w = x.shape
    _, c_out, kh, kw = weight.shape
    out_h = (h - 1) * sh - 2 * ph + kh + oph
    out_w = (w - 1) * sw - 2 * pw + kw + opw
    full_h = max((h - 1) * sh + kh, ph + out_h)
    full_w = max((w - 1) * sw + kw, pw + out_w)
    full = xp.zeros((n, c_out, full_h, full_w), dtype=x.dtype)
    for i in range(kh):
        for j in range(kw):
            stamp = xp.einsum("nchw,cd->ndhw", x, weight[:, :, i, j])
            full[:, :, i:i + sh * (h - 1) + 1:sh, j:j + sw * (w - 1) + 1:sw] += stamp
    y = full[:, :, ph:ph + out_h, pw:pw + out_w]
    if bias is not None:
        y = y + bias.reshape(1, c_out, 1, 1)
    return y, (x, weight, bias is not None, (sh, sw, ph, pw), (full_h, full_w))


def conv_transpose2d_backward(dy, cache):
    xp = get_array_module(dy)
    x, weight, has_bias, (sh, sw, ph, pw), (full_h, full_w) = cache
    n, c_in, h, w = x.shape
    _, c_out, kh, kw = weight.shape
    out_h, out_w = dy.shape[2:]
    dfull = xp.zeros((n, c_out, full_h, full_w), dtype=dy.dtype)
    dfull[:, :, ph:ph + out_h, pw:pw + out_w] = dy
    dx = xp.zeros(x.shape, dtype=dy.dtype)
    dweight = xp.zeros(weight.shape, dtype=dy.dtype)
    for i in range(kh):
        for j in range(kw):
            part = dfull[:, :, i:i + sh * (h - 1) + 1:sh, j:j + sw * (w - 1) + 1:sw]
            dx += xp.einsum("ndhw,cd->nchw", part, weight[:, :, i, j])
            dweight[:, :, i, j] = xp.einsum("nchw,ndhw->cd", x, part)
    dbias = dy.sum(axis=(0, 2, 3)) if has_bias else None
    return dx, dweight, dbias
