"""A sum that adds into its first input (xs[0] += x) instead of building a new array.

Symptom: add_forward wrote into its input
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
    dx[..., top:top + dy.shape[-2], left:left + dy.shape[-1]] = dy
    return dx


def add_forward(*xs):
    y = xs[0]
    for x in xs[1:]:
        y += x
    return y, len(xs)


def add_backward(dy, cache):
    return tuple(dy for _ in range(cache))
