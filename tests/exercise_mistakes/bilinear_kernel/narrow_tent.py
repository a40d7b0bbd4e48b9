"""The tent's half-width is K // 2 instead of (K + 1) // 2: the same for even K, too
narrow for odd K.

Symptom: the tent is too narrow and off-centre
"""

from minifcn.backend import np


def bilinear_kernel(kernel_size):
    factor = max(kernel_size // 2, 1)
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
