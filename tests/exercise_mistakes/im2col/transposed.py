"""im2col returns the matrix transposed, one ROW per window: (N*OH*OW, C*KH*KW).

Symptom: cols is transposed
"""

from minifcn.backend import get_array_module


def _out(size, k, s, p, d):
    return (size + 2 * p - d * (k - 1) - 1) // s + 1


def im2col(x, kernel_size, stride, padding, dilation):
    xp = get_array_module(x)
    n, c, h, w = x.shape
    kh, kw = kernel_size
    sh, sw = stride
    ph, pw = padding
    dh, dw = dilation
    oh, ow = _out(h, kh, sh, ph, dh), _out(w, kw, sw, pw, dw)
    padded = xp.zeros((n, c, h + 2 * ph, w + 2 * pw), dtype=x.dtype)
    padded[:, :, ph:ph + h, pw:pw + w] = x
    cols = xp.zeros((c, kh, kw, n, oh, ow), dtype=x.dtype)
    for i in range(kh):
        for j in range(kw):
            patch = padded[:, :, i * dh:i * dh + sh * (oh - 1) + 1:sh,
                           j * dw:j * dw + sw * (ow - 1) + 1:sw]
            cols[:, i, j] = patch.transpose(1, 0, 2, 3)
    return cols.reshape(c * kh * kw, n * oh * ow).T


def col2im(cols, x_shape, kernel_size, stride, padding, dilation):
    xp = get_array_module(cols)
    n, c, h, w = x_shape
    kh, kw = kernel_size
    sh, sw = stride
    ph, pw = padding
    dh, dw = dilation
    oh, ow = _out(h, kh, sh, ph, dh), _out(w, kw, sw, pw, dw)
    cols = cols.T.reshape(c, kh, kw, n, oh, ow)
    padded = xp.zeros((n, c, h + 2 * ph, w + 2 * pw), dtype=cols.dtype)
    for i in range(kh):
        for j in range(kw):
            padded[:, :, i * dh:i * dh + sh * (oh - 1) + 1:sh,
                   j * dw:j * dw + sw * (ow - 1) + 1:sw] += cols[:, i, j].transpose(1, 0, 2, 3)
    return padded[:, :, ph:ph + h, pw:pw + w]
