"""Dropout that zeroes the dropped values but never scales the kept ones by 1 / (1 - p).

Symptom: without the rescaling
"""

from minifcn.backend import Generator, get_array_module


def dropout_forward(x, p, training, mask=None, generator=None):
    if not training:
        return x, None
    xp = get_array_module(x)
    if mask is None:
        generator = generator if generator is not None else Generator()
        mask = generator.random(x.shape, "float32", xp=xp) >= p
    keep = mask.astype(x.dtype)
    return x * keep, keep


def dropout_backward(dy, cache):
    return dy if cache is None else dy * cache
