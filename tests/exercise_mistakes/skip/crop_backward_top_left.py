"""A crop whose backward puts dy back at the top-left corner instead of at the offset.

Symptom: dx puts dy at the top-left corner
"""

from minifcn.backend import get_array_module


def center_crop_offset(input_size, output_size):
    return (input_size[0] - output_size[0]) // 2, (input_size[1] - output_size[1]) // 2


def crop_forward(x, size, offset):
    top, left = offset
    y = x[..., top:top + size[0], left:left + size[1]]
    return y, (x.shape, top, left)


def crop_backward(dy, cache):
    xp = get_array_module(dy)
    shape, top, left = cache
    dx = xp.zeros(shape, dtype=dy.dtype)
    dx[..., :dy.shape[-2], :dy.shape[-1]] = dy
    return dx


def add_forward(*xs):
    y = xs[0].copy()
    for x in xs[1:]:
        y = y + x
    return y, len(xs)


def add_backward(dy, cache):
    return tuple(dy for _ in range(cache))
