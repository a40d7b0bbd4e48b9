"""A correct learner solution of exercise 10 (bilinear_kernel), written as a learner would."""

from minifcn.backend import np


def bilinear_kernel(kernel_size):
    factor = (kernel_size + 1) // 2
    if kernel_size % 2 == 1:
        centre = factor - 1
    else:
        centre = factor - 0.5
    rows, cols = np.ogrid[:kernel_size, :kernel_size]
    return ((1 - abs(rows - centre) / factor) * (1 - abs(cols - centre) / factor)).astype(
        np.float64)


def bilinear_weight(channels, kernel_size):
    weight = np.zeros((channels, channels, kernel_size, kernel_size), dtype=np.float64)
    kernel = bilinear_kernel(kernel_size)
    for c in range(channels):
        weight[c, c] = kernel
    return weight
