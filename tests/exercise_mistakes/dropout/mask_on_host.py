"""Dropout that draws its mask without xp=xp: a NumPy mask multiplied into a GPU array.

Symptom: would fail on CuPy
"""

from minifcn.backend import Generator


def dropout_forward(x, p, training, mask=None, generator=None):
    if not training:
        return x, None
    if mask is None:
        generator = generator if generator is not None else Generator()
        mask = generator.random(x.shape, "float32") >= p  # drawn on the host, always
    keep = mask.astype(x.dtype) / (1.0 - p)
    return x * keep, keep


def dropout_backward(dy, cache):
    return dy if cache is None else dy * cache
