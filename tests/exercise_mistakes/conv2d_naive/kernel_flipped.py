"""The kernel is flipped (true convolution) where PyTorch cross-correlates.

Symptom: y is what a FLIPPED kernel gives
"""

from minifcn.backend import get_array_module


def _pair(value):
    return (value, value) if isinstance(value, int) else tuple(value)


def conv2d_naive(x, weight, bias=None, stride=1, padding=0, dilation=1):
    xp = get_array_module(x)
    sh, sw = _pair(stride)
    ph, pw = _pair(padding)
    dh, dw = _pair(dilation)
    n, c, h, w = x.shape
    f, _, kh, kw = weight.shape
    oh_count = (h + 2 * ph - dh * (kh - 1) - 1) // sh + 1
    ow_count = (w + 2 * pw - dw * (kw - 1) - 1) // sw + 1
    padded = xp.zeros((n, c, h + 2 * ph, w + 2 * pw), dtype=x.dtype)
    padded[:, :, ph:ph + h, pw:pw + w] = x
    y = xp.zeros((n, f, oh_count, ow_count), dtype=x.dtype)
    for oh in range(oh_count):
        for ow in range(ow_count):
            top, left = oh * sh, ow * sw
            window = padded[:, :, top:top + dh * (kh - 1) + 1:dh, left:left + dw * (kw - 1) + 1:dw]
            for k in range(f):
                y[:, k, oh, ow] = (window * weight[k, :, ::-1, ::-1]).sum(axis=(1, 2, 3))
    if bias is not None:
        y = y + bias.reshape(1, f, 1, 1)
    return y
