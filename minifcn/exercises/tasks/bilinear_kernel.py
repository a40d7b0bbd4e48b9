"""Exercise 10: FCN's bilinear up-sampling kernel, and the weight it initialises."""

from __future__ import annotations

from ... import functional as F
from ...backend import np
from ...nn import init
from ..framework import Check, CheckFailed, Exercise, compare, looks_like

KERNEL_SIZES = range(1, 17)


def reference_kernel(kernel_size: int) -> np.ndarray:
    """(K, K) float64: what minifcn.nn.init.bilinear_ puts on the diagonal."""
    weight = np.zeros((1, 1, kernel_size, kernel_size))
    init.bilinear_(weight)
    return weight[0, 0]


def reference_weight(channels: int, kernel_size: int) -> np.ndarray:
    """(C, C, K, K) float64: minifcn.nn.init.bilinear_ on a zero weight."""
    weight = np.zeros((channels, channels, kernel_size, kernel_size))
    return init.bilinear_(weight)


def _tent(kernel_size: int, factor: float, centre: float) -> np.ndarray:
    profile = 1.0 - np.abs(np.arange(kernel_size) - centre) / factor
    return np.outer(profile, profile)


def _host_float64(value, name: str, shape, config) -> np.ndarray:
    if not isinstance(value, np.ndarray):
        raise CheckFailed(f"{name} returned a {type(value).__name__}; expected a NumPy array "
                          f"of shape {shape}", config=config,
                          symptom="this one is built on the host: use np (from "
                                  "minifcn.backend import np) and return np.ndarray")
    if value.dtype != np.float64:
        raise CheckFailed(f"{name} returned dtype {value.dtype}; expected float64",
                          config=config, symptom="np.arange(K) is an integer array: divide "
                                                 "by a float, or give dtype=np.float64")
    return value


def check_kernel(learner):
    for K in KERNEL_SIZES:
        config = {"kernel_size": K}
        got = _host_float64(learner.bilinear_kernel(K), "bilinear_kernel", (K, K), config)
        factor, narrow = (K + 1) // 2, max(K // 2, 1)
        compare("kernel", got, reference_kernel(K), config=config, shape_hint="(K, K)",
                symptoms=(
                    looks_like(lambda e, K=K, f=factor: _tent(K, f, f - 1),
                               "the kernel is off-centre by half a pixel: for an EVEN K the "
                               "centre lies between two pixels, at factor - 0.5 (factor - 1 "
                               "is for odd K); it should be symmetric, kernel == "
                               "kernel[::-1, ::-1]"),
                    looks_like(lambda e, K=K, f=factor: _tent(K, f, K / 2),
                               "the kernel is off-centre: the centre is at (K - 1) / 2 (pixel "
                               "indices run 0 .. K-1), i.e. factor - 1 for odd K and factor - "
                               "0.5 for even K"),
                    looks_like(lambda e, K=K, f=narrow: _tent(
                        K, f, f - 1 if K % 2 else f - 0.5),
                        "the tent is too narrow and off-centre: factor = (K + 1) // 2, not "
                        "K // 2 (they differ for odd K), and the centre follows from it"),
                ))
    return f"kernel sizes {KERNEL_SIZES.start}-{KERNEL_SIZES.stop - 1}, odd and even"


def check_weight(learner):
    for channels, K in [(1, 4), (3, 4), (2, 5), (4, 16)]:
        config = {"channels": channels, "kernel_size": K}
        got = _host_float64(learner.bilinear_weight(channels, K), "bilinear_weight",
                            (channels, channels, K, K), config)
        compare("weight", got, reference_weight(channels, K), config=config,
                shape_hint="(C, C, K, K)", symptoms=(
                    looks_like(lambda e, c=channels, K=K: np.broadcast_to(
                        reference_kernel(K), (c, c, K, K)),
                        "every channel pair got the kernel: only weight[c, c] holds it (channel "
                        "c up-samples into channel c alone); the pairs c != d are 0, or each "
                        "output channel would sum all C input channels"),
                ))
    return "C = 1-4, K = 4, 5, 16: the kernel on the diagonal, zeros elsewhere"


def check_ramp(learner):
    """FCN's up-sampling layer: ConvTranspose2d(C, C, 2s, stride=s, padding=s//2) with the
    bilinear weight; a linear ramp must come out as the ramp sampled at the output pixels'
    centres, (o + 0.5)/s - 0.5 (bilinear interpolation, align_corners=False)."""
    H, W = 5, 7
    rows, cols = np.meshgrid(np.arange(H), np.arange(W), indexing="ij")
    ramps = [(0.3, -0.7, 1.0), (-0.5, 0.2, 0.0)]  # a*h + b*w + c, one per channel
    x = np.stack([a * rows + b * cols + c for a, b, c in ramps])[None].astype(np.float64)
    for s in (2, 4, 8):
        config = {"factor": s, "kernel_size": 2 * s, "stride": s, "padding": s // 2}
        weight = _host_float64(learner.bilinear_weight(2, 2 * s), "bilinear_weight",
                               (2, 2, 2 * s, 2 * s), config)
        y, _ = F.conv_transpose2d_forward(x, weight, None, stride=s, padding=s // 2)
        oh = (np.arange(H * s) + 0.5) / s - 0.5
        ow = (np.arange(W * s) + 0.5) / s - 0.5
        expected = np.stack([a * oh[:, None] + b * ow[None, :] + c for a, b, c in ramps])
        inner = (slice(None), slice(s // 2, H * s - s // 2), slice(s // 2, W * s - s // 2))
        compare(f"the ramp up-sampled x{s} (away from the border)", y[0][inner],
                expected[inner], config=config)
    return ("x2, x4, x8 (kernel 2s, stride s, padding s/2): the ramp comes out interpolated, "
            "exactly, away from the border")


EXERCISE = Exercise(
    number=10,
    name="bilinear_kernel",
    title="The bilinear up-sampling kernel and its initialisation",
    summary="FCN's upsample_filt; a transposed convolution that interpolates bilinearly",
    functions=("bilinear_kernel", "bilinear_weight"),
    lesson="07_bilinear_init",
    reference=lambda: {"bilinear_kernel": reference_kernel,
                       "bilinear_weight": reference_weight},
    checks=[
        Check("kernel", "bilinear_kernel(K) equals FCN's upsample_filt, K = 1-16",
              check_kernel),
        Check("weight", "bilinear_weight(C, K): the kernel on the channel diagonal",
              check_weight, ("kernel",)),
        Check("ramp", "a linear ramp up-sampled with your weight comes out interpolated",
              check_ramp, ("weight",)),
    ],
)
