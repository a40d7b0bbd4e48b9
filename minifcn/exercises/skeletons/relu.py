"""Exercise 1: ReLU forward and backward.

Check your work with:   minifcn exercises check relu
Read first:             lessons/02_backward.py

Every layer in minifcn is a pair of plain functions:

    y, cache = relu_forward(x)        # cache: what backward will need
    dx = relu_backward(dy, cache)     # dy = dL/dy, dx = dL/dx, same shapes as y and x

ReLU keeps positive inputs and zeroes the rest:

    y = max(x, 0)
    dx = dy * (x > 0)                 # the slope is 1 where x > 0 and 0 elsewhere

At x == 0 exactly, the slope is taken as 0, as in PyTorch.

Never write into x or dy: the same array may feed two layers (FCN's skip connections), and
the caller still needs it. Return new arrays.

GPU: write xp = get_array_module(x) and use xp.maximum, xp.zeros, ... never np.<name> on
an array, so that the same code runs on CuPy. The checker runs it on a strict stand-in.
"""

from minifcn.backend import get_array_module


def relu_forward(x):
    """ReLU.

    Args:
        x: float array of any shape, e.g. (N, C, H, W).

    Returns:
        y: same shape and dtype as x, y = max(x, 0).
        cache: whatever relu_backward needs (the mask x > 0 is enough).

    Hint: xp.maximum(x, 0.0) makes a new array; x[x < 0] = 0 would change the caller's x.
    """
    xp = get_array_module(x)  # noqa: F841  (numpy or cupy: use it for every new array)
    raise NotImplementedError("Exercise 1: relu_forward")


def relu_backward(dy, cache):
    """Gradient of relu_forward.

    Args:
        dy: the gradient of the loss with respect to y, the shape of x.
        cache: what your forward returned.

    Returns:
        dx: the shape of x; dy where x > 0, else 0.

    Hint: the mask comes from the forward's input x, never from dy.
    """
    raise NotImplementedError("Exercise 1: relu_backward")
