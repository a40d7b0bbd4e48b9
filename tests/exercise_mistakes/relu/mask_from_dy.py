"""relu_backward builds its mask from dy (dy > 0) instead of the forward's input x.

Symptom: the mask must come from the forward's INPUT
"""

from minifcn.backend import get_array_module


def relu_forward(x):
    xp = get_array_module(x)
    return xp.maximum(x, 0.0), x


def relu_backward(dy, cache):
    return dy * (dy > 0)
