"""The centre is factor - 1 for every K: right for odd K, half a pixel off for even K
(the kernels FCN uses), which shifts the up-sampled image.

Symptom: the kernel is off-centre by half a pixel
"""

from minifcn.backend import np


def bilinear_kernel(kernel_size):
    factor = (kernel_size + 1) // 2
    centre = factor - 1
    rows, cols = np.ogrid[:kernel_size, :kernel_size]
    return ((1 - abs(rows - centre) / factor) * (1 - abs(cols - centre) / factor)).astype(
        np.float64)


def bilinear_weight(channels, kernel_size):
    weight = np.zeros((channels, channels, kernel_size, kernel_size), dtype=np.float64)
    kernel = bilinear_kernel(kernel_size)
    for c in range(channels):
        weight[c, c] = kernel
    return weight
