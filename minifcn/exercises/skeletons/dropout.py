"""Exercise 7: Dropout: inverted scaling, the same mask forward and backward.

Check your work with:   minifcn exercises check dropout
Read first:             lessons/04_batchnorm_dropout.py

Notation: x of any shape, e.g. (N, C, H, W); p the probability of DROPPING a value;
mask a boolean keep-mask (True = keep), of x's shape or broadcastable to it (e.g.
(N, C, 1, 1) drops whole channels).

In training (inverted dropout), each value is kept with probability 1 - p and the kept ones
are scaled up, so that the expected output equals the input:

    y  = x  * mask / (1 - p)          E[y] = x
    dx = dy * mask / (1 - p)          (the SAME mask as the forward)

In evaluation (training=False) dropout is the identity: y = x, dx = dy.

When no mask is given, draw one exactly as minifcn does, so that a seeded model drops the
same values with your code as with minifcn's:

    generator = generator if generator is not None else Generator()
    mask = generator.random(x.shape, "float32", xp=xp) >= p

GPU: write xp = get_array_module(x) and pass xp=xp to the generator, so that the mask is
drawn on x's device; never np.<name> on an array. The checker runs your code on a strict
CuPy stand-in.
"""

from minifcn.backend import Generator, get_array_module  # noqa: F401  (Generator: see above)


def dropout_forward(x, p, training, mask=None, generator=None):
    """Inverted dropout.

    Args:
        x: float array, e.g. (N, C, H, W).
        p: drop probability, 0 <= p < 1.
        training: True to drop and scale, False for the identity.
        mask: optional boolean keep-mask (True = keep) broadcastable to x; when None (and
            training), draw it from the generator as the module docstring shows.
        generator: a minifcn.backend.Generator, or None for a new one.

    Returns:
        y: x's shape and dtype.
        cache: whatever your backward needs (e.g. the mask already scaled by 1 / (1 - p);
            None in evaluation).

    Hint: scale the mask once, mask.astype(x.dtype) / (1 - p), and multiply; keep that
    array for the backward.
    """
    xp = get_array_module(x)  # noqa: F841  (numpy or cupy: use it for every new array)
    raise NotImplementedError("Exercise 7: dropout_forward")


def dropout_backward(dy, cache):
    """Gradient of dropout_forward.

    Args:
        dy: the gradient of the loss with respect to y (y's shape).
        cache: what your forward returned.

    Returns:
        dx: dy's shape: dy * mask / (1 - p) in training, dy itself in evaluation.

    Hint: the values the forward dropped had no effect on y: their gradient is 0.
    """
    raise NotImplementedError("Exercise 7: dropout_backward")
