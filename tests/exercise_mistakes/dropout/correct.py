"""A correct dropout, written as a learner would (not a copy of minifcn's)."""

from minifcn.backend import Generator, get_array_module


def dropout_forward(x, p, training, mask=None, generator=None):
    if not training:
        return x, None
    xp = get_array_module(x)
    if mask is None:
        if generator is None:
            generator = Generator()
        mask = generator.random(x.shape, "float32", xp=xp) >= p
    keep = mask.astype(x.dtype) * (1.0 / (1.0 - p))
    return x * keep, keep


def dropout_backward(dy, cache):
    if cache is None:
        return dy
    return dy * cache
