"""A correct learner solution of exercise 1 (relu), written as a learner would."""

from minifcn.backend import get_array_module


def relu_forward(x):
    xp = get_array_module(x)
    positive = x > 0
    y = xp.where(positive, x, xp.zeros_like(x))
    return y, positive


def relu_backward(dy, cache):
    positive = cache
    return dy * positive
