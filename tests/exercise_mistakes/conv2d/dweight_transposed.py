"""dweight comes out with its channel axes swapped, (C, F, KH, KW): the weight gradient
was computed as cols @ dy_mat.T, (C*KH*KW, F), and reshaped as it came.

Symptom: dweight has its channel axes swapped (transposed)
"""

from minifcn.backend import get_array_module


def _pair(value):
    return (value, value) if isinstance(value, int) else tuple(value)


def _windows(kh, kw, sh, sw, dh, dw, oh, ow):
    """For each kernel offset: (i, j, the rows and columns of the padded input it reads)."""
    for i in range(kh):
        for j in range(kw):
            yield (i, j, slice(i * dh, i * dh + sh * (oh - 1) + 1, sh),
                   slice(j * dw, j * dw + sw * (ow - 1) + 1, sw))


def conv2d_forward(x, weight, bias=None, stride=1, padding=0, dilation=1):
    xp = get_array_module(x)
    sh, sw = _pair(stride)
    ph, pw = _pair(padding)
    dh, dw = _pair(dilation)
    n, c, h, w = x.shape
    f, _, kh, kw = weight.shape
    oh = (h + 2 * ph - dh * (kh - 1) - 1) // sh + 1
    ow = (w + 2 * pw - dw * (kw - 1) - 1) // sw + 1
    padded = xp.zeros((n, c, h + 2 * ph, w + 2 * pw), dtype=x.dtype)
    padded[:, :, ph:ph + h, pw:pw + w] = x
    cols = xp.zeros((c, kh, kw, n, oh, ow), dtype=x.dtype)
    for i, j, rows, columns in _windows(kh, kw, sh, sw, dh, dw, oh, ow):
        cols[:, i, j] = padded[:, :, rows, columns].transpose(1, 0, 2, 3)
    cols = cols.reshape(c * kh * kw, n * oh * ow)
    y_mat = weight.reshape(f, -1) @ cols
    y = y_mat.reshape(f, n, oh, ow).transpose(1, 0, 2, 3)
    if bias is not None:
        y = y + bias.reshape(1, f, 1, 1)
    cache = (x.shape, weight, bias is not None, cols, (sh, sw, ph, pw, dh, dw))
    return y, cache


def conv2d_backward(dy, cache):
    xp = get_array_module(dy)
    (n, c, h, w), weight, has_bias, cols, (sh, sw, ph, pw, dh, dw) = cache
    f, _, kh, kw = weight.shape
    oh, ow = dy.shape[2:]
    dy_mat = dy.transpose(1, 0, 2, 3).reshape(f, -1)
    dweight = (cols @ dy_mat.T).reshape(c, kh, kw, f).transpose(0, 3, 1, 2)
    dcols = (weight.reshape(f, -1).T @ dy_mat).reshape(c, kh, kw, n, oh, ow)
    dpadded = xp.zeros((n, c, h + 2 * ph, w + 2 * pw), dtype=dy.dtype)
    for i, j, rows, columns in _windows(kh, kw, sh, sw, dh, dw, oh, ow):
        dpadded[:, :, rows, columns] += dcols[:, i, j].transpose(1, 0, 2, 3)
    dx = dpadded[:, :, ph:ph + h, pw:pw + w]
    dbias = dy.sum(axis=(0, 2, 3)) if has_bias else None
    return dx, dweight, dbias
