"""The input is padded with zeros instead of -inf: a border window of negative values
returns 0.

Symptom: y is what padding with ZEROS gives
"""

from minifcn.backend import get_array_module


def _pair(value):
    return (value, value) if isinstance(value, int) else tuple(value)


def _windows(padded, kh, kw, sh, sw, oh, ow):
    """(N, C, OH, OW, KH*KW): every window, its taps in row-major order."""
    taps = []
    for i in range(kh):
        for j in range(kw):
            taps.append(padded[:, :, i:i + sh * (oh - 1) + 1:sh, j:j + sw * (ow - 1) + 1:sw])
    xp = get_array_module(padded)
    return xp.stack(taps, axis=-1)


def max_pool2d_forward(x, kernel_size, stride=None, padding=0):
    xp = get_array_module(x)
    kh, kw = _pair(kernel_size)
    sh, sw = _pair(kernel_size if stride is None else stride)
    ph, pw = _pair(padding)
    n, c, h, w = x.shape
    oh = (h + 2 * ph - kh) // sh + 1
    ow = (w + 2 * pw - kw) // sw + 1
    padded = xp.zeros((n, c, h + 2 * ph, w + 2 * pw), dtype=x.dtype)
    padded[:, :, ph:ph + h, pw:pw + w] = x
    windows = _windows(padded, kh, kw, sh, sw, oh, ow)
    first = windows.argmax(axis=-1)
    y = windows.max(axis=-1)
    return y, (x.shape, (kh, kw, sh, sw, ph, pw), first)


def max_pool2d_backward(dy, cache):
    xp = get_array_module(dy)
    (n, c, h, w), (kh, kw, sh, sw, ph, pw), first = cache
    oh, ow = dy.shape[2:]
    dx = xp.zeros((n, c, h + 2 * ph, w + 2 * pw), dtype=dy.dtype)
    for i in range(kh):
        for j in range(kw):
            share = dy * (first == i * kw + j)
            dx[:, :, i:i + sh * (oh - 1) + 1:sh, j:j + sw * (ow - 1) + 1:sw] += share
    return dx[:, :, ph:ph + h, pw:pw + w]
