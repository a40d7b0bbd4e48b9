"""The backward writes each window's share with = instead of +=: where windows overlap
only the last window's share survives.

Symptom: dx is wrong only at pixels that several windows read
"""

from minifcn.backend import get_array_module


def _pair(value):
    return (value, value) if isinstance(value, int) else tuple(value)


def avg_pool2d_forward(x, kernel_size, stride=None, padding=0):
    xp = get_array_module(x)
    kh, kw = _pair(kernel_size)
    sh, sw = _pair(kernel_size if stride is None else stride)
    ph, pw = _pair(padding)
    n, c, h, w = x.shape
    oh_count = (h + 2 * ph - kh) // sh + 1
    ow_count = (w + 2 * pw - kw) // sw + 1
    padded = xp.pad(x, ((0, 0), (0, 0), (ph, ph), (pw, pw)))
    y = xp.zeros((n, c, oh_count, ow_count), dtype=x.dtype)
    for oh in range(oh_count):
        for ow in range(ow_count):
            window = padded[:, :, oh * sh:oh * sh + kh, ow * sw:ow * sw + kw]
            y[:, :, oh, ow] = window.sum(axis=(2, 3)) / (kh * kw)
    return y, (x.shape, kh, kw, sh, sw, ph, pw)


def avg_pool2d_backward(dy, cache):
    xp = get_array_module(dy)
    (n, c, h, w), kh, kw, sh, sw, ph, pw = cache
    dx = xp.zeros((n, c, h + 2 * ph, w + 2 * pw), dtype=dy.dtype)
    for oh in range(dy.shape[2]):
        for ow in range(dy.shape[3]):
            share = dy[:, :, oh, ow] / (kh * kw)
            dx[:, :, oh * sh:oh * sh + kh, ow * sw:ow * sw + kw] = share[:, :, None, None]
    return dx[:, :, ph:ph + h, pw:pw + w]
