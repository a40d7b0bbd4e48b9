"""relu_forward zeroes the negative entries of x in place and returns x itself.

Symptom: never write into x
"""


def relu_forward(x):
    x[x < 0] = 0.0
    return x, x > 0


def relu_backward(dy, cache):
    return dy * cache
