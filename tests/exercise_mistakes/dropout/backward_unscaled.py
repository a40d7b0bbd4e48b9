"""Dropout whose backward masks dy but forgets the 1 / (1 - p) the forward applied.

Symptom: dx is dy * mask without the 1 / (1 - p)
"""

from minifcn.backend import Generator, get_array_module


def dropout_forward(x, p, training, mask=None, generator=None):
    if not training:
        return x, None
    xp = get_array_module(x)
    if mask is None:
        generator = generator if generator is not None else Generator()
        mask = generator.random(x.shape, "float32", xp=xp) >= p
    return x * mask / (1.0 - p), mask


def dropout_backward(dy, cache):
    if cache is None:
        return dy
    return dy * cache
