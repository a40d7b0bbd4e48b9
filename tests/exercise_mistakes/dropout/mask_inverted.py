"""Dropout that draws its own mask the wrong way round: keeps a value where the draw is < p.

Symptom: keeps the values whose random draw is < p
"""

from minifcn.backend import Generator, get_array_module


def dropout_forward(x, p, training, mask=None, generator=None):
    if not training:
        return x, None
    xp = get_array_module(x)
    if mask is None:
        generator = generator if generator is not None else Generator()
        mask = generator.random(x.shape, "float32", xp=xp) < p
    keep = mask.astype(x.dtype) / (1.0 - p)
    return x * keep, keep


def dropout_backward(dy, cache):
    return dy if cache is None else dy * cache
