"""relu_backward passes the gradient where x >= 0, so also at x == 0 (PyTorch passes none).

Symptom: dx is wrong only where x == 0
"""

from minifcn.backend import get_array_module


def relu_forward(x):
    xp = get_array_module(x)
    return xp.maximum(x, 0.0), x >= 0


def relu_backward(dy, cache):
    return dy * cache
