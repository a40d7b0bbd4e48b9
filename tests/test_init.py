"""minifcn.nn.init: the bilinear up-sampling filter (values, symmetry, what it does in a
transposed convolution) and the torch.nn.init look-alikes (gains, fans, distributions,
generators, devices)."""

from __future__ import annotations

import math
import re

import numpy as np
import pytest

from minifcn import backend
from minifcn.nn import ConvTranspose2d, Parameter, init


def upsampler(bk, channels: int, scale: int) -> ConvTranspose2d:
    """FCN's x``scale`` up-sampling: kernel 2s, stride s, padding s/2, bilinear, no bias."""
    layer = ConvTranspose2d(channels, channels, 2 * scale, scale, scale // 2, bias=False,
                            device=bk.device, dtype="float64")
    init.bilinear_(layer.weight)
    return layer


# --- bilinear_ -----------------------------------------------------------------------------

@pytest.mark.parametrize("kernel_size, profile", [
    (1, [1.0]),
    (2, [0.5, 0.5]),
    (3, [0.5, 1.0, 0.5]),
    (4, [0.25, 0.75, 0.75, 0.25]),
    (5, [1 / 3, 2 / 3, 1.0, 2 / 3, 1 / 3]),
])
def test_bilinear_filter_values(kernel_size, profile):
    """The tent 1 - |i - centre| / factor on each axis (worked out by hand from FCN's
    ``upsample_filt``), the outer product on the channel diagonal, zeros elsewhere."""
    weight = np.full((3, 3, kernel_size, kernel_size), np.nan)
    assert init.bilinear_(weight) is weight
    expected = np.outer(profile, profile)
    for c_in in range(3):
        for c_out in range(3):
            np.testing.assert_allclose(weight[c_in, c_out],
                                       expected if c_in == c_out else 0.0, rtol=1e-15)


@pytest.mark.parametrize("kernel_size", [(1, 1), (2, 2), (3, 3), (4, 4), (7, 7), (16, 16),
                                         (64, 64), (3, 4), (6, 5)])
def test_bilinear_filter_is_symmetric_and_separable(kernel_size):
    weight = init.bilinear_(np.zeros((2, 2, *kernel_size)))
    filt = weight[1, 1]
    np.testing.assert_array_equal(filt, filt[::-1, :])  # mirror-symmetric on each axis
    np.testing.assert_array_equal(filt, filt[:, ::-1])
    if kernel_size[0] == kernel_size[1]:
        np.testing.assert_array_equal(filt, filt.T)
    peak = np.unravel_index(filt.argmax(), filt.shape)
    rank_one = np.outer(filt[:, peak[1]], filt[peak[0], :]) / filt[peak]
    np.testing.assert_allclose(filt, rank_one, rtol=1e-14)
    assert filt.max() <= 1.0 and filt.min() > 0.0


@pytest.mark.parametrize("scale", [2, 4, 8, 32])
def test_bilinear_upsampling_keeps_constants_in_the_interior(bk, scale):
    """Partition of unity: away from the border every output pixel's weights sum to 1,
    so a constant image (a different constant per channel) stays that constant."""
    layer = upsampler(bk, 2, scale)
    constants = np.array([1.5, -0.25]).reshape(1, 2, 1, 1)
    x = np.ones((1, 2, 5, 4)) * constants
    y = layer(bk.asarray(x))
    assert bk.owns(y) and y.shape == (1, 2, 5 * scale, 4 * scale)
    interior = bk.numpy(y)[:, :, scale:-scale, scale:-scale]
    np.testing.assert_allclose(interior, np.broadcast_to(constants, interior.shape),
                               rtol=1e-13)


@pytest.mark.parametrize("scale", [2, 4, 8])
def test_bilinear_upsampling_interpolates_linear_ramps(bk, scale):
    """A ramp a*h + b*w + c comes out sampled at the input coordinates of the output pixel
    centres, (o + 0.5) / s - 0.5: what bilinear interpolation with align_corners=False gives
    away from the border."""
    layer = upsampler(bk, 1, scale)
    a, b, c = 0.7, -1.3, 2.0
    H, W = 5, 6
    h, w = np.meshgrid(np.arange(H), np.arange(W), indexing="ij")
    y = bk.numpy(layer(bk.asarray((a * h + b * w + c).reshape(1, 1, H, W))))[0, 0]
    oh, ow = np.meshgrid((np.arange(H * scale) + 0.5) / scale - 0.5,
                         (np.arange(W * scale) + 0.5) / scale - 0.5, indexing="ij")
    expected = a * oh + b * ow + c
    inner = (slice(scale, -scale), slice(scale, -scale))
    np.testing.assert_allclose(y[inner], expected[inner], rtol=1e-12, atol=1e-12)


def test_bilinear_fills_parameters_in_place_on_every_device(bk):
    layer = ConvTranspose2d(3, 3, 4, 2, 1, device=bk.device)
    param, data = layer.weight, layer.weight.data
    assert init.bilinear_(param) is param and param.data is data and bk.owns(data)
    expected = init.bilinear_(np.zeros((3, 3, 4, 4), dtype=np.float32))
    np.testing.assert_array_equal(bk.numpy(data), expected)


def test_frozen_bilinear_upsampling_keeps_its_weight(bk):
    layer = upsampler(bk, 2, 2).requires_grad_(False)
    x = np.random.default_rng(0).standard_normal((2, 2, 3, 3))
    y = layer(bk.asarray(x))
    dx = layer.backward(bk.asarray(np.ones(y.shape)))
    assert bk.owns(dx) and dx.shape == x.shape
    assert not bk.numpy(layer.weight.grad).any()


@pytest.mark.parametrize("shape", [(3, 2, 4, 4), (3, 3, 4), (3,)])
def test_bilinear_refuses_weights_that_are_not_square_in_channels(shape):
    with pytest.raises(ValueError, match=r"bilinear_: expected a weight of shape \(C, C, KH, "
                                         r"KW\), got " + re.escape(str(shape))):
        init.bilinear_(np.zeros(shape))


# --- gains and fans ------------------------------------------------------------------------

@pytest.mark.torch
@pytest.mark.parametrize("nonlinearity, param", [
    ("linear", None), ("conv2d", None), ("conv_transpose2d", None), ("sigmoid", None),
    ("tanh", None), ("relu", None), ("leaky_relu", None), ("leaky_relu", 0.2),
    ("leaky_relu", math.sqrt(5)), ("leaky_relu", 0), ("selu", None)])
def test_gains_match_torch(torch, nonlinearity, param):
    assert init.calculate_gain(nonlinearity, param) == pytest.approx(
        torch.nn.init.calculate_gain(nonlinearity, param), rel=1e-15)


@pytest.mark.torch
@pytest.mark.parametrize("shape", [(16, 3, 3, 3), (64, 2, 4, 4), (2, 64, 1, 5), (10, 7)])
def test_fans_match_torch(torch, shape):
    fans = torch.nn.init._calculate_fan_in_and_fan_out(torch.empty(shape))
    assert init.calculate_fan_in_and_fan_out(shape) == fans


def test_gain_and_fan_errors():
    with pytest.raises(ValueError, match="unsupported nonlinearity 'gelu'"):
        init.calculate_gain("gelu")
    with pytest.raises(ValueError, match="negative_slope 'x' is not a valid number"):
        init.calculate_gain("leaky_relu", "x")
    with pytest.raises(ValueError, match=r"at least 2 dimensions, got shape \(5,\)"):
        init.calculate_fan_in_and_fan_out((5,))
    with pytest.raises(ValueError, match="mode must be 'fan_in' or 'fan_out'"):
        init.kaiming_uniform_(np.zeros((4, 4)), mode="fan_avg")
    with pytest.raises(TypeError, match="expected an array or a Parameter, got list"):
        init.zeros_([1.0, 2.0])


# --- distributions -------------------------------------------------------------------------

SHAPE = (64, 32, 3, 3)  # fan_in 288, fan_out 576; 18432 draws


@pytest.mark.parametrize("mode, fan", [("fan_in", 288), ("fan_out", 576)])
@pytest.mark.parametrize("nonlinearity, a, gain", [("relu", 0.0, math.sqrt(2.0)),
                                                   ("leaky_relu", math.sqrt(5), math.sqrt(1 / 3)),
                                                   ("linear", 0.0, 1.0)])
def test_kaiming_uniform_bound(mode, fan, nonlinearity, a, gain):
    """U(-b, b) with b = gain * sqrt(3 / fan): within the bound, reaching close to it, with
    the uniform's standard deviation b / sqrt(3) (18432 draws: 0.5% sampling error)."""
    weight = init.kaiming_uniform_(np.zeros(SHAPE, dtype=np.float32), a=a, mode=mode,
                                   nonlinearity=nonlinearity, generator=backend.Generator(0))
    bound = gain * math.sqrt(3.0 / fan)
    assert np.abs(weight).max() <= bound and np.abs(weight).max() > 0.999 * bound
    assert weight.std() == pytest.approx(bound / math.sqrt(3.0), rel=0.03)
    assert abs(weight.mean()) < 0.03 * bound


@pytest.mark.parametrize("mode, fan", [("fan_in", 288), ("fan_out", 576)])
def test_kaiming_normal_std(mode, fan):
    weight = init.kaiming_normal_(np.zeros(SHAPE), mode=mode, nonlinearity="relu",
                                  generator=backend.Generator(0))
    std = math.sqrt(2.0) / math.sqrt(fan)
    assert weight.std() == pytest.approx(std, rel=0.03)
    assert abs(weight.mean()) < 0.03 * std
    assert np.abs(weight).max() > 3.0 * std  # a normal's tails, not a uniform's


def test_uniform_and_zeros(bk):
    param = Parameter(bk.asarray(np.full((100, 100), np.nan, dtype=np.float32)))
    assert init.uniform_(param, -2.0, 3.0, generator=backend.Generator(1)) is param
    values = bk.numpy(param.data)
    assert bk.owns(param.data) and values.dtype == np.float32
    assert values.min() >= -2.0 and values.max() < 3.0
    assert values.min() < -1.9 and values.max() > 2.9
    assert init.zeros_(param) is param and not bk.numpy(param.data).any()


@pytest.mark.parametrize("fill", [
    lambda a, g: init.uniform_(a, -1.0, 1.0, generator=g),
    lambda a, g: init.kaiming_uniform_(a, generator=g),
    lambda a, g: init.kaiming_normal_(a, generator=g),
])
def test_same_generator_seed_gives_the_same_values_on_every_device(bk, fill):
    host = fill(np.zeros((8, 4, 3, 3)), backend.Generator(11))
    device = fill(bk.asarray(np.zeros((8, 4, 3, 3))), backend.Generator(11))
    assert bk.owns(device) and device.dtype == np.float64
    np.testing.assert_array_equal(bk.numpy(device), host)
    other = fill(np.zeros((8, 4, 3, 3)), backend.Generator(12))
    assert not np.array_equal(other, host)
    backend.manual_seed(4)
    first = fill(np.zeros((8, 4, 3, 3)), None)
    backend.manual_seed(4)
    np.testing.assert_array_equal(fill(np.zeros((8, 4, 3, 3)), None), first)
