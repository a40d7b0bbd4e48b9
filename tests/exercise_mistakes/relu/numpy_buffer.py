"""relu_backward fills a NumPy buffer (np.zeros) where xp was meant: fine on NumPy, a
TypeError on CuPy (a GPU mask cannot index a host array).

Symptom: this runs on NumPy but would fail on CuPy
"""

import numpy as np

from minifcn.backend import get_array_module


def relu_forward(x):
    xp = get_array_module(x)
    return xp.maximum(x, 0.0), x > 0


def relu_backward(dy, cache):
    dx = np.zeros(dy.shape, dtype=dy.dtype)
    dx[cache] = dy[cache]
    return dx
