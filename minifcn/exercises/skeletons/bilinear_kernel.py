"""Exercise 10: The bilinear up-sampling kernel and its initialisation.

Check your work with:   minifcn exercises check bilinear_kernel
Read first:             lessons/07_bilinear_init.py (and 06_upsampling.py)

FCN up-samples its coarse score maps with transposed convolutions (exercise 9) whose
weights START as bilinear interpolation: ConvTranspose2d(C, C, kernel_size=2s, stride=s,
padding=s//2) with this kernel enlarges by s exactly as bilinear interpolation does (away
from the border). FCN's upsample_filt builds it as the outer product of a 1-D "tent":

    factor = (K + 1) // 2
    centre = factor - 1            if K is odd
             factor - 0.5          if K is even     (between the two middle pixels)
    tent[i] = 1 - |i - centre| / factor             for i = 0 .. K-1
    kernel[i, j] = tent[i] * tent[j]

For K = 4 (x2): tent = [0.25, 0.75, 0.75, 0.25]. The kernel is symmetric (kernel ==
kernel[::-1, ::-1]); an off-centre one shifts the up-sampled image.

The weight of a C -> C layer, (C, C, K, K), holds the kernel on its channel DIAGONAL:
weight[c, c] = kernel, and zeros for c != d, so that channel c up-samples into channel c
alone (as minifcn.nn.init.bilinear_ fills it).

These are built once, on the host: use NumPy (from minifcn.backend import np) and return
float64 NumPy arrays; minifcn copies them to the GPU where needed.
"""

from minifcn.backend import np  # noqa: F401  (NumPy: these arrays live on the host)


def bilinear_kernel(kernel_size):
    """FCN's bilinear kernel.

    Args:
        kernel_size: K, an int >= 1.

    Returns:
        (K, K) float64 NumPy array, kernel[i, j] = tent[i] * tent[j] as above.

    Hint: np.arange(K), np.abs and np.outer.
    """
    raise NotImplementedError("Exercise 10: bilinear_kernel")


def bilinear_weight(channels, kernel_size):
    """A transposed convolution's weight that up-samples each channel bilinearly.

    Args:
        channels: C, the layer's input and output channels.
        kernel_size: K.

    Returns:
        (C, C, K, K) float64 NumPy array: weight[c, c] = bilinear_kernel(K), 0 elsewhere.
    """
    raise NotImplementedError("Exercise 10: bilinear_weight")
