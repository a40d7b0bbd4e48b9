"""Pooling: MaxPool2d, AvgPool2d, MaxUnpool2d, AdaptiveAvgPool2d and their functional pairs.
Output sizes, fast == naive, ties to the first maximum, PyTorch parity (forward, indices,
dx), finite differences, the backend stand-in, bad inputs."""

from __future__ import annotations

import re

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from minifcn.functional.pool import (
    adaptive_avg_pool2d_backward,
    adaptive_avg_pool2d_forward,
    adaptive_avg_pool2d_naive,
    adaptive_windows,
    avg_pool2d_backward,
    avg_pool2d_forward,
    avg_pool2d_naive,
    max_pool2d_backward,
    max_pool2d_forward,
    max_pool2d_indices,
    max_pool2d_naive,
    pool_output_size,
)
from minifcn.gradcheck import gradcheck_module
from minifcn.nn.pool import AdaptiveAvgPool2d, AvgPool2d, MaxPool2d, MaxUnpool2d
from minifcn.testing import strict_cupy
from minifcn.testing.strategies import (
    PoolConfig,
    adaptive_pool_configs,
    dilated_pool_configs,
    distinct_values,
    pool_configs,
    seeds,
    tied_values,
)


def pool_args(config: PoolConfig) -> dict:
    """The keyword arguments of any pooling for ``config``."""
    return dict(kernel_size=config.kernel_size, stride=config.stride, padding=config.padding,
                ceil_mode=config.ceil_mode)


def max_pool_args(config: PoolConfig, dilation=(1, 1)) -> dict:
    return dict(pool_args(config), dilation=dilation)


def scatter_add(dy: np.ndarray, indices: np.ndarray, input_shape) -> np.ndarray:
    """The max-pool gradient from the definition: each dy entry added at its window's index."""
    N, C, H, W = input_shape
    dx = np.zeros((N, C, H * W))
    n, c = np.meshgrid(np.arange(N), np.arange(C), indexing="ij")
    for oh in range(dy.shape[2]):
        for ow in range(dy.shape[3]):
            np.add.at(dx, (n, c, indices[:, :, oh, ow]), dy[:, :, oh, ow])
    return dx.reshape(input_shape)


# ---------------------------------------------------------------------------------------
# Output size


@pytest.mark.parametrize("size, kernel, stride, padding, dilation, ceil_mode, expected", [
    (6, 2, 2, 0, 1, False, 3),   # (6 - 2) / 2 + 1
    (5, 2, 2, 0, 1, False, 2),   # floor(3 / 2) + 1: the last pixel is dropped
    (5, 2, 2, 0, 1, True, 3),    # ceil(3 / 2) + 1: a last window hangs past the input
    (5, 2, 2, 1, 1, True, 3),    # ceil(5 / 2) + 1 = 4, but window 3 would start at 6 - 1 = 5,
                                 # in the right padding: dropped
    (5, 2, 2, 1, 1, False, 3),   # floor(5 / 2) + 1
    (7, 3, 2, 1, 2, False, 3),   # (7 + 2 - 2*2 - 1) / 2 + 1: dilation widens the kernel to 5
    (7, 3, 3, 1, 1, True, 3),    # ceil((7 + 2 - 3) / 3) + 1 = 3: exact, nothing to drop
    (4, 3, 3, 0, 1, True, 2),    # ceil(1 / 3) + 1: the second window starts at 3, inside
])
def test_pool_output_size(size, kernel, stride, padding, dilation, ceil_mode, expected):
    out = pool_output_size((size, 1), (kernel, 1), (stride, 1), (padding, 0), (dilation, 1),
                           ceil_mode)
    assert out == (expected, 1)


@pytest.mark.torch
@given(problem=dilated_pool_configs())
def test_pool_output_size_matches_torch(torch, problem):
    config, dilation = problem
    x = torch.zeros(config.input_shape)
    y = torch.nn.functional.max_pool2d(x, **max_pool_args(config, dilation))
    assert pool_output_size(config.size, config.kernel_size, config.stride, config.padding,
                            dilation, config.ceil_mode) == tuple(y.shape[2:])


# ---------------------------------------------------------------------------------------
# Fast == naive


@given(problem=dilated_pool_configs(), seed=seeds)
def test_max_pool_matches_naive(bk, problem, seed):
    config, dilation = problem
    rng = np.random.default_rng(seed)
    x = tied_values(rng, config.input_shape)
    y, cache = max_pool2d_forward(bk.asarray(x), **max_pool_args(config, dilation))
    indices = max_pool2d_indices(cache)
    y_naive, indices_naive = max_pool2d_naive(bk.asarray(x), **max_pool_args(config, dilation))
    assert bk.owns(y) and bk.owns(indices) and bk.owns(y_naive)
    assert y.dtype == np.float64 and indices.dtype == np.int64
    np.testing.assert_array_equal(bk.numpy(y), bk.numpy(y_naive))
    np.testing.assert_array_equal(bk.numpy(indices), bk.numpy(indices_naive))

    dy = tied_values(rng, y.shape)  # integer-valued: the sums are exact in any order
    dx = max_pool2d_backward(bk.asarray(dy), cache)
    assert bk.owns(dx) and dx.shape == x.shape
    np.testing.assert_array_equal(bk.numpy(dx),
                                  scatter_add(dy, bk.numpy(indices_naive), x.shape))


@given(config=pool_configs(), count_include_pad=st.booleans(),
       divisor_override=st.one_of(st.none(), st.integers(1, 5)), seed=seeds)
def test_avg_pool_matches_naive(bk, config, count_include_pad, divisor_override, seed):
    rng = np.random.default_rng(seed)
    x = tied_values(rng, config.input_shape)  # integer sums: exact in any order
    args = dict(pool_args(config), count_include_pad=count_include_pad,
                divisor_override=divisor_override)
    y, _ = avg_pool2d_forward(bk.asarray(x), **args)
    y_naive = avg_pool2d_naive(bk.asarray(x), **args)
    assert bk.owns(y) and y.dtype == np.float64
    np.testing.assert_array_equal(bk.numpy(y), bk.numpy(y_naive))


@pytest.mark.parametrize("width, kernel, stride, padding, count_include_pad, expected", [
    # windows [-1, 1], [1, 3], [3, 5] of a padded 1 + 4 + 1 row; the last one hangs past the
    # padding (ceil_mode) and counts only its 2 taps inside it: 1/2, not 1/3
    (4, 3, 2, 1, True, [2 / 3, 1.0, 1 / 2]),
    (4, 3, 2, 1, False, [1.0, 1.0, 1.0]),  # real pixels only: 2, 3, 1 of them
    (5, 2, 2, 0, True, [1.0, 1.0, 1.0]),  # the last window [4, 5] holds one pixel, no padding
])
def test_avg_pool_divisor_rules(bk, width, kernel, stride, padding, count_include_pad,
                                expected):
    pool = AvgPool2d((1, kernel), (1, stride), (0, padding), ceil_mode=True,
                     count_include_pad=count_include_pad)
    y = pool(bk.asarray(np.ones((1, 1, 1, width))))
    np.testing.assert_allclose(bk.numpy(y)[0, 0, 0], expected, rtol=1e-15)


def test_avg_pool_backward_is_the_adjoint(bk, rng):
    """<avg_pool(x), dy> == <x, avg_pool_backward(dy)> for overlapping, padded, ceil_mode
    windows, the three divisor rules."""
    x = rng.standard_normal((2, 3, 7, 8))
    for args in [dict(kernel_size=3, stride=2, padding=1, ceil_mode=True),
                 dict(kernel_size=(3, 2), stride=(2, 1), padding=(1, 0), ceil_mode=True,
                      count_include_pad=False),
                 dict(kernel_size=2, stride=1, padding=1, divisor_override=3)]:
        y, cache = avg_pool2d_forward(bk.asarray(x), **args)
        dy = rng.standard_normal(y.shape)
        dx = avg_pool2d_backward(bk.asarray(dy), cache)
        np.testing.assert_allclose(float((bk.numpy(y) * dy).sum()),
                                   float((x * bk.numpy(dx)).sum()), rtol=1e-12)


# ---------------------------------------------------------------------------------------
# Ties, -inf and NaN


def first_pixel_expectation(shape, kernel, stride, padding, dilation, dy):
    """For a constant input every window's maximum is a tie: its first pixel inside the
    input in row-major order. Returns that pixel's flat index per window and the gradient
    that results (dy summed at those pixels)."""
    N, C, H, W = shape
    OH, OW = dy.shape[2:]
    indices = np.zeros(dy.shape, dtype=np.int64)
    dx = np.zeros(shape)
    for oh in range(OH):
        for ow in range(OW):
            h = next(h for h in range(oh * stride[0] - padding[0], H, dilation[0]) if h >= 0)
            w = next(w for w in range(ow * stride[1] - padding[1], W, dilation[1]) if w >= 0)
            indices[:, :, oh, ow] = h * W + w
            dx[:, :, h, w] += dy[:, :, oh, ow]
    return indices, dx


@pytest.mark.parametrize("kernel, stride, padding, dilation, ceil_mode", [
    ((2, 2), (2, 2), (0, 0), (1, 1), False),
    ((3, 3), (1, 1), (1, 1), (1, 1), False),
    ((3, 2), (2, 1), (1, 1), (2, 1), True),
    ((4, 4), (3, 3), (2, 2), (1, 1), True),
])
def test_ties_go_to_the_first_pixel(bk, rng, kernel, stride, padding, dilation, ceil_mode):
    shape = (2, 3, 7, 6)
    x = np.full(shape, 0.5)
    pool = MaxPool2d(kernel, stride, padding, dilation, return_indices=True,
                     ceil_mode=ceil_mode)
    y, indices = pool(bk.asarray(x))
    dy = tied_values(rng, y.shape)  # integer-valued: the sums are exact in any order
    dx = pool.backward(bk.asarray(dy))
    expected_indices, expected_dx = first_pixel_expectation(shape, kernel, stride, padding,
                                                            dilation, dy)
    np.testing.assert_array_equal(bk.numpy(y), 0.5)
    np.testing.assert_array_equal(bk.numpy(indices), expected_indices)
    np.testing.assert_array_equal(bk.numpy(dx), expected_dx)


@pytest.mark.torch
@pytest.mark.parametrize("fill", [0.5, -np.inf])
def test_ties_and_minus_inf_match_torch(torch, rng, fill):
    """A constant input (all ties) and an all -inf one (PyTorch then points at each window's
    first real pixel, never at the padding)."""
    x = np.full((2, 2, 7, 6), fill)
    for args in [dict(kernel_size=3, stride=1, padding=1),
                 dict(kernel_size=(3, 2), stride=(2, 1), padding=(1, 1), dilation=(2, 1),
                      ceil_mode=True)]:
        y, indices = MaxPool2d(**args, return_indices=True)(x)
        y_torch, indices_torch = torch.nn.functional.max_pool2d(
            torch.from_numpy(x), **args, return_indices=True)
        np.testing.assert_array_equal(y, y_torch.numpy())
        np.testing.assert_array_equal(indices, indices_torch.numpy())


@pytest.mark.torch
def test_nan_propagates_like_torch(torch, rng):
    x = rng.standard_normal((2, 3, 8, 8))
    x[rng.random(x.shape) < 0.1] = np.nan
    args = dict(kernel_size=3, stride=2, padding=1)
    y = MaxPool2d(**args)(x)
    y_torch = torch.nn.functional.max_pool2d(torch.from_numpy(x), **args)
    np.testing.assert_array_equal(y, y_torch.numpy())  # NaN where torch has NaN, same values


# ---------------------------------------------------------------------------------------
# PyTorch parity


def torch_max_pool(torch, x, dy, args):
    xt = torch.from_numpy(x).requires_grad_()
    y, indices = torch.nn.functional.max_pool2d(xt, **args, return_indices=True)
    y.backward(torch.from_numpy(dy))
    return y.detach().numpy(), indices.numpy(), xt.grad.numpy()


@pytest.mark.torch
@given(problem=dilated_pool_configs(), ties=st.booleans(), seed=seeds)
def test_max_pool_matches_torch(torch, problem, ties, seed):
    config, dilation = problem
    rng = np.random.default_rng(seed)
    x = (tied_values if ties else distinct_values)(rng, config.input_shape)
    pool = MaxPool2d(**max_pool_args(config, dilation), return_indices=True)
    y, indices = pool(x)
    dy = rng.standard_normal(y.shape)
    dx = pool.backward(dy)
    y_torch, indices_torch, dx_torch = torch_max_pool(torch, x, dy,
                                                      max_pool_args(config, dilation))
    np.testing.assert_array_equal(y, y_torch)
    np.testing.assert_array_equal(indices, indices_torch)
    np.testing.assert_allclose(dx, dx_torch, rtol=1e-9, atol=1e-9)


@pytest.mark.torch
@given(config=pool_configs(), count_include_pad=st.booleans(),
       divisor_override=st.one_of(st.none(), st.integers(1, 5)), seed=seeds)
def test_avg_pool_matches_torch(torch, config, count_include_pad, divisor_override, seed):
    rng = np.random.default_rng(seed)
    x = rng.standard_normal(config.input_shape)
    args = dict(pool_args(config), count_include_pad=count_include_pad,
                divisor_override=divisor_override)
    pool = AvgPool2d(**args)
    y = pool(x)
    dy = rng.standard_normal(y.shape)
    dx = pool.backward(dy)
    xt = torch.from_numpy(x).requires_grad_()
    y_torch = torch.nn.functional.avg_pool2d(xt, **args)
    y_torch.backward(torch.from_numpy(dy))
    np.testing.assert_allclose(y, y_torch.detach().numpy(), rtol=1e-9, atol=1e-9)
    np.testing.assert_allclose(dx, xt.grad.numpy(), rtol=1e-9, atol=1e-9)


@pytest.mark.torch
@given(config=pool_configs(), seed=seeds)
def test_max_unpool_matches_torch(torch, config, seed):
    """Unpool values at the indices of a max pooling, to the pooled input's size."""
    rng = np.random.default_rng(seed)
    x = distinct_values(rng, config.input_shape)
    y, indices = torch.nn.functional.max_pool2d(torch.from_numpy(x), **pool_args(config),
                                                return_indices=True)
    # Overlapping windows can share a maximum (a repeated index): unpool the pooled values
    # then, equal at a shared index, so which write wins does not matter.
    disjoint = all(s >= k for k, s in zip(config.kernel_size, config.stride, strict=True))
    values = rng.standard_normal(y.shape) if disjoint else y.numpy()
    unpool = MaxUnpool2d(config.kernel_size, config.stride, config.padding)
    vt = torch.from_numpy(values.copy()).requires_grad_()
    args = dict(kernel_size=config.kernel_size, stride=config.stride, padding=config.padding,
                output_size=config.size)
    try:
        z_torch = torch.nn.functional.max_unpool2d(vt, indices, **args)
    except ValueError:  # the pooled size is not one PyTorch's default allows
        with pytest.raises(ValueError, match="output_size"):
            unpool(values, indices.numpy(), output_size=config.size)
        return
    z = unpool(values, indices.numpy(), output_size=config.size)
    dz = rng.standard_normal(z.shape)
    dvalues = unpool.backward(dz)
    z_torch.backward(torch.from_numpy(dz))
    np.testing.assert_array_equal(z, z_torch.detach().numpy())
    np.testing.assert_array_equal(dvalues, vt.grad.numpy())


@pytest.mark.torch
def test_max_unpool_default_output_size_matches_torch(torch, rng):
    x = distinct_values(rng, (2, 3, 9, 7))  # (H - 1)*2 - 2 + 3 gives back 9 x 7
    y, indices = MaxPool2d(3, 2, 1, return_indices=True)(x)
    z = MaxUnpool2d(3, 2, 1)(y, indices)
    z_torch = torch.nn.functional.max_unpool2d(torch.from_numpy(y), torch.from_numpy(indices),
                                               3, 2, 1)
    np.testing.assert_array_equal(z, z_torch.numpy())


@pytest.mark.torch
def test_repr_matches_torch(torch):
    pairs = [(MaxPool2d(2), torch.nn.MaxPool2d(2)),
             (MaxPool2d((2, 3), 1, 1, 2, True, True),
              torch.nn.MaxPool2d((2, 3), 1, 1, 2, True, True)),
             (AvgPool2d(3, 2, 1, True, False, 4), torch.nn.AvgPool2d(3, 2, 1, True, False, 4)),
             (MaxUnpool2d(2), torch.nn.MaxUnpool2d(2)),
             (MaxUnpool2d((3, 2), 1, (1, 0)), torch.nn.MaxUnpool2d((3, 2), 1, (1, 0)))]
    for ours, theirs in pairs:
        assert repr(ours) == repr(theirs)


def test_repr():
    assert repr(MaxPool2d(2)) == ("MaxPool2d(kernel_size=2, stride=2, padding=0, dilation=1, "
                                  "ceil_mode=False)")
    assert repr(AvgPool2d(3, 1, 1)) == "AvgPool2d(kernel_size=3, stride=1, padding=1)"
    assert repr(MaxUnpool2d(2)) == "MaxUnpool2d(kernel_size=(2, 2), stride=(2, 2), padding=(0, 0))"


# ---------------------------------------------------------------------------------------
# Finite differences (float64, random dy, inputs without ties)


@pytest.mark.parametrize("args", [
    dict(kernel_size=2),
    dict(kernel_size=3, stride=2, padding=1, ceil_mode=True),
    dict(kernel_size=(3, 2), stride=1, padding=(1, 0), dilation=(2, 1)),
])
def test_max_pool_gradcheck(bk, rng, args):
    x = bk.asarray(distinct_values(rng, (2, 2, 7, 6)))
    report = gradcheck_module(MaxPool2d(**args), x)
    assert report.max_error < 1e-6, report


@pytest.mark.parametrize("args", [
    dict(kernel_size=2),
    dict(kernel_size=3, stride=2, padding=1, ceil_mode=True, count_include_pad=False),
    dict(kernel_size=(3, 2), stride=(1, 2), padding=(1, 1), ceil_mode=True),
    dict(kernel_size=2, stride=1, padding=1, divisor_override=3),
])
def test_avg_pool_gradcheck(bk, rng, args):
    x = bk.asarray(rng.standard_normal((2, 2, 7, 6)))
    report = gradcheck_module(AvgPool2d(**args), x)
    assert report.max_error < 1e-6, report


def test_max_unpool_gradcheck(bk, rng):
    _, indices = MaxPool2d(2, return_indices=True)(bk.asarray(distinct_values(rng, (2, 2, 6, 8))))
    values = bk.asarray(rng.standard_normal((2, 2, 3, 4)))
    report = gradcheck_module(MaxUnpool2d(2), values, indices)
    assert report.max_error < 1e-6, report


# ---------------------------------------------------------------------------------------
# Layers on each backend: namespace, dtype, same results as NumPy, arguments untouched


@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("make", [
    lambda: MaxPool2d(2),
    lambda: MaxPool2d(3, 2, 1, dilation=(1, 2), ceil_mode=True),
    lambda: AvgPool2d(3, 2, 1, ceil_mode=True, count_include_pad=False),
    lambda: AvgPool2d(2, divisor_override=3),
], ids=["max2", "max3-dilated", "avg3", "avg2-override"])
def test_layers_agree_with_numpy_and_keep_namespace_and_dtype(bk, rng, dtype, make):
    x_host = rng.standard_normal((2, 3, 9, 10)).astype(dtype)
    reference = make()
    y_ref = reference(x_host)
    dy_host = rng.standard_normal(y_ref.shape).astype(dtype)
    dx_ref = reference.backward(dy_host)
    layer = make()
    y = layer(bk.asarray(x_host))
    dx = layer.backward(bk.asarray(dy_host))
    for got, want in ((y, y_ref), (dx, dx_ref)):
        assert bk.owns(got) and got.dtype == dtype
        np.testing.assert_array_equal(bk.numpy(got), want)


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_segnet_pair_on_backend(bk, rng, dtype):
    """MaxPool2d(return_indices) then MaxUnpool2d and back, on the backend, as on NumPy."""
    x_host = distinct_values(rng, (2, 3, 8, 6)).astype(dtype)

    def run(x, dz):
        pool, unpool = MaxPool2d(2, return_indices=True), MaxUnpool2d(2)
        y, indices = pool(x)
        z = unpool(y, indices, output_size=x.shape)
        dx = pool.backward(unpool.backward(dz))
        return y, indices, z, dx

    dz_host = rng.standard_normal(x_host.shape).astype(dtype)
    results = run(bk.asarray(x_host), bk.asarray(dz_host))
    expected = run(x_host, dz_host)
    for got, want in zip(results, expected, strict=True):
        assert bk.owns(got) and got.dtype == want.dtype
        np.testing.assert_array_equal(bk.numpy(got), want)
    assert expected[1].dtype == np.int64
    # what reaches x is dz at the maxima: the pooled values' positions
    np.testing.assert_array_equal(expected[3] != 0, expected[2] != 0)


@pytest.mark.parametrize("make", [lambda: MaxPool2d(3, 1, 1), lambda: AvgPool2d(3, 2, 1),
                                  lambda: MaxPool2d(2)])
def test_does_not_write_into_arguments(bk, rng, make):
    x = bk.asarray(rng.standard_normal((2, 2, 6, 6)))
    x_before = bk.numpy(x).copy()
    layer = make()
    y = layer(x)
    dy = bk.asarray(rng.standard_normal(y.shape))
    dy_before = bk.numpy(dy).copy()
    dx = layer.backward(dy)
    dx[...] = 7.0  # a caller may write into dx: that must not reach x or y
    np.testing.assert_array_equal(bk.numpy(x), x_before)
    np.testing.assert_array_equal(bk.numpy(dy), dy_before)
    assert not np.any(bk.numpy(y) == 7.0)


def test_unpool_does_not_write_into_arguments(bk, rng):
    y, indices = MaxPool2d(2, return_indices=True)(bk.asarray(distinct_values(rng, (1, 2, 4, 4))))
    y_before, indices_before = bk.numpy(y).copy(), bk.numpy(indices).copy()
    unpool = MaxUnpool2d(2)
    z = unpool(y, indices)
    unpool.backward(bk.asarray(rng.standard_normal(z.shape)))
    np.testing.assert_array_equal(bk.numpy(y), y_before)
    np.testing.assert_array_equal(bk.numpy(indices), indices_before)


# ---------------------------------------------------------------------------------------
# Bad arguments and inputs: clear errors naming the layer


@pytest.mark.parametrize("make, error, match", [
    (lambda: MaxPool2d(0), ValueError, r"MaxPool2d\(kernel_size=0.*kernel_size must be >= 1"),
    (lambda: MaxPool2d(2.5), TypeError, r"MaxPool2d\(kernel_size=2.5.*int or a pair"),
    (lambda: MaxPool2d(2, stride=0), ValueError, r"stride must be >= 1"),
    (lambda: MaxPool2d(2, padding=-1), ValueError, r"padding must be >= 0"),
    (lambda: MaxPool2d(2, padding=2), ValueError,
     r"MaxPool2d\(kernel_size=2, stride=2\): padding must be at most half of kernel_size"),
    (lambda: MaxPool2d((3, 2), padding=(1, 2)), ValueError, r"at most half"),
    (lambda: MaxPool2d(2, dilation=0), ValueError, r"dilation must be >= 1"),
    (lambda: MaxPool2d(2, ceil_mode=1), TypeError, r"ceil_mode must be True or False"),
    (lambda: MaxPool2d(2, return_indices="yes"), TypeError, r"return_indices must be True"),
    (lambda: AvgPool2d(3, padding=2), ValueError, r"AvgPool2d\(kernel_size=3.*at most half"),
    (lambda: AvgPool2d(2, divisor_override=0), ValueError, r"divisor_override must be >= 1"),
    (lambda: AvgPool2d(2, divisor_override=1.5), TypeError, r"divisor_override must be an int"),
    (lambda: AvgPool2d(2, count_include_pad=None), TypeError, r"count_include_pad must be"),
    (lambda: MaxUnpool2d((2, 0)), ValueError, r"MaxUnpool2d\(kernel_size=\(2, 0\).*>= 1"),
])
def test_bad_arguments(make, error, match):
    with pytest.raises(error, match=match):
        make()


@pytest.mark.parametrize("make", [lambda: MaxPool2d(2), lambda: AvgPool2d(2)])
def test_bad_inputs(bk, rng, make):
    layer = make()
    name = type(layer).__name__
    with pytest.raises(ValueError, match=rf"{name}\(kernel_size=2, stride=2\): expected x of "
                                         rf"rank 3 \(C, H, W\) or 4 \(N, C, H, W\)"):
        layer(bk.asarray(rng.standard_normal((4, 4))))
    with pytest.raises(TypeError, match=rf"{name}.*float32 or float64 x, got dtype int64"):
        layer(bk.asarray(np.ones((1, 1, 4, 4), dtype=np.int64)))
    with pytest.raises(TypeError, match=rf"{name}.*expected x to be an array"):
        layer([[[[1.0, 2.0], [3.0, 4.0]]]])
    with pytest.raises(ValueError, match=rf"{name}.*\(1, 5\) is too small"):
        layer(bk.asarray(rng.standard_normal((1, 1, 1, 5))))
    with pytest.raises(ValueError, match=rf"{name}.*backward called before forward"):
        layer.backward(bk.asarray(rng.standard_normal((1, 1, 2, 2))))
    y = layer(bk.asarray(rng.standard_normal((1, 2, 4, 4))))
    with pytest.raises(ValueError, match=rf"{name}.*expected dy of shape \(1, 2, 2, 2\)"):
        layer.backward(bk.asarray(rng.standard_normal((1, 2, 2, 3))))
    with pytest.raises(TypeError, match=rf"{name}.*expected dy of dtype float64"):
        layer.backward(bk.asarray(rng.standard_normal(y.shape).astype(np.float32)))
    layer.backward(bk.asarray(rng.standard_normal(y.shape)))
    with pytest.raises(ValueError, match=rf"{name}.*backward called before forward \(or twice"):
        layer.backward(bk.asarray(rng.standard_normal(y.shape)))


def test_window_in_padding_only_is_refused():
    """Dilation 2 with padding 1 steps over a one-pixel-wide input: PyTorch returns -inf
    and an index outside the window there; minifcn says why it cannot pool."""
    with pytest.raises(ValueError, match=r"MaxPool2d\(kernel_size=2.*only padding"):
        MaxPool2d(2, stride=1, padding=1, dilation=2)(np.zeros((1, 1, 3, 1)))


def test_backward_refuses_dy_on_another_device(rng):
    layer = MaxPool2d(2)
    layer(rng.standard_normal((1, 1, 4, 4)))
    with pytest.raises(TypeError, match=r"MaxPool2d\(kernel_size=2, stride=2\).*two devices"):
        layer.backward(strict_cupy.asarray(rng.standard_normal((1, 1, 2, 2))))


def test_unpool_bad_inputs(bk, rng):
    unpool = MaxUnpool2d(2)
    values = bk.asarray(rng.standard_normal((1, 2, 3, 3)))
    indices = bk.asarray(np.zeros((1, 2, 3, 3), dtype=np.int64))
    where = r"MaxUnpool2d\(kernel_size=2, stride=2\)"
    with pytest.raises(ValueError, match=rf"{where}: expected indices of the shape of x "
                                         r"\(1, 2, 3, 3\), got \(1, 2, 3, 2\)"):
        unpool(values, indices[:, :, :, :2])
    with pytest.raises(TypeError, match=rf"{where}: expected integer indices"):
        unpool(values, bk.asarray(np.zeros((1, 2, 3, 3))))
    with pytest.raises(ValueError, match=rf"{where}: indices must lie in \[0, 36\)"):
        unpool(values, bk.asarray(np.full((1, 2, 3, 3), 36, dtype=np.int64)))
    with pytest.raises(ValueError, match=rf"{where}: indices must lie in \[0, 36\)"):
        unpool(values, bk.asarray(np.full((1, 2, 3, 3), -1, dtype=np.int64)))
    with pytest.raises(ValueError, match=rf"{where}: output_size \(8, 6\) is not a size"):
        unpool(values, indices, output_size=(8, 6))  # default 6: from 5 to 7 only
    with pytest.raises(TypeError, match=rf"{where}: output_size must be"):
        unpool(values, indices, output_size=(6.0, 6))
    with pytest.raises(ValueError, match=rf"{where}.*backward called before forward"):
        unpool.backward(bk.asarray(rng.standard_normal((1, 2, 6, 6))))
    z = unpool(values, indices, output_size=(1, 2, 7, 5))  # a full shape, as PyTorch takes
    assert z.shape == (1, 2, 7, 5)
    with pytest.raises(ValueError, match=rf"{where}.*expected dy of shape \(1, 2, 7, 5\)"):
        unpool.backward(bk.asarray(rng.standard_normal((1, 2, 6, 6))))
    assert unpool(values, indices, output_size=[np.int64(5), 7]).shape == (1, 2, 5, 7)


# ---------------------------------------------------------------------------------------
# Adaptive average pooling


@pytest.mark.parametrize("size, output_size, expected", [
    (6, 3, [(0, 2), (2, 4), (4, 6)]),          # a divisor: AvgPool2d(2)'s windows
    (5, 3, [(0, 2), (1, 4), (3, 5)]),          # floor(i*5/3), ceil((i+1)*5/3): overlaps
    (7, 1, [(0, 7)]),                          # global pooling
    (2, 4, [(0, 1), (0, 1), (1, 2), (1, 2)]),  # more outputs than pixels: repeats
])
def test_adaptive_windows_follow_torchs_rule(size, output_size, expected):
    assert adaptive_windows(size, output_size) == expected


@given(problem=adaptive_pool_configs(), seed=seeds)
def test_adaptive_avg_pool_matches_naive(bk, problem, seed):
    shape, output_size = problem
    x = np.random.default_rng(seed).standard_normal(shape)
    y, _ = adaptive_avg_pool2d_forward(bk.asarray(x), output_size)
    expected = adaptive_avg_pool2d_naive(x, output_size)
    assert bk.owns(y) and y.shape == expected.shape
    np.testing.assert_allclose(bk.numpy(y), expected, rtol=1e-12, atol=1e-12)
    naive = adaptive_avg_pool2d_naive(bk.asarray(x), output_size)
    assert bk.owns(naive)
    np.testing.assert_array_equal(bk.numpy(naive), expected)


def test_adaptive_avg_pool_of_a_divisor_is_avg_pool(bk, rng):
    x = bk.asarray(rng.standard_normal((2, 3, 8, 6)))
    y, _ = adaptive_avg_pool2d_forward(x, (4, 2))
    expected, _ = avg_pool2d_forward(x, (2, 3))
    np.testing.assert_allclose(bk.numpy(y), bk.numpy(expected), rtol=1e-12, atol=1e-12)


def test_adaptive_avg_pool_backward_is_the_adjoint(bk, rng):
    """<pool(x), dy> == <x, pool_backward(dy)> for overlapping, uneven windows."""
    x = rng.standard_normal((2, 3, 5, 7))
    y, cache = adaptive_avg_pool2d_forward(bk.asarray(x), (3, 9))
    dy = rng.standard_normal(y.shape)
    dx = bk.numpy(adaptive_avg_pool2d_backward(bk.asarray(dy), cache))
    np.testing.assert_allclose(np.vdot(bk.numpy(y), dy), np.vdot(x, dx), rtol=1e-12)


@pytest.mark.torch
@given(problem=adaptive_pool_configs(), seed=seeds)
def test_adaptive_avg_pool_matches_torch(torch, bk, problem, seed):
    shape, output_size = problem
    x = np.random.default_rng(seed).standard_normal(shape)
    tx = torch.tensor(x, requires_grad=True)
    ty = torch.nn.AdaptiveAvgPool2d(output_size)(tx)
    dy = np.random.default_rng(seed + 1).standard_normal(tuple(ty.shape))
    ty.backward(torch.tensor(dy))
    layer = AdaptiveAvgPool2d(output_size)
    y = layer(bk.asarray(x))
    dx = layer.backward(bk.asarray(dy))
    assert bk.owns(y) and bk.owns(dx)
    assert y.shape == tuple(ty.shape) and dx.shape == x.shape
    np.testing.assert_allclose(bk.numpy(y), ty.detach().numpy(), rtol=1e-9, atol=1e-9)
    np.testing.assert_allclose(bk.numpy(dx), tx.grad.numpy(), rtol=1e-9, atol=1e-9)


@pytest.mark.torch
@pytest.mark.parametrize("output_size", [3, (3, 4), (3, None), 1])
def test_adaptive_avg_pool_takes_one_unbatched_sample_as_torch(torch, bk, rng, output_size):
    """(C, H, W) -> (C, OH, OW) and back, as PyTorch 2.13 (its module_db sample
    'no_batch_dim'); it was refused as not rank 4."""
    x = rng.standard_normal((3, 5, 6))
    tx = torch.tensor(x, requires_grad=True)
    ty = torch.nn.AdaptiveAvgPool2d(output_size)(tx)
    dy = rng.standard_normal(tuple(ty.shape))
    ty.backward(torch.tensor(dy))
    layer = AdaptiveAvgPool2d(output_size)
    y = layer(bk.asarray(x))
    dx = layer.backward(bk.asarray(dy))
    assert y.shape == tuple(ty.shape) and dx.shape == x.shape
    np.testing.assert_allclose(bk.numpy(y), ty.detach().numpy(), rtol=0, atol=1e-12)
    np.testing.assert_allclose(bk.numpy(dx), tx.grad.numpy(), rtol=0, atol=1e-12)


@pytest.mark.torch
def test_adaptive_avg_pool_repr_matches_torch(torch):
    for output_size in (1, (3, 4), (None, 2)):
        assert repr(AdaptiveAvgPool2d(output_size)) == \
            repr(torch.nn.AdaptiveAvgPool2d(output_size))


@pytest.mark.parametrize("output_size", [1, (3, 4), (None, 2), (9, None)])
def test_adaptive_avg_pool_gradcheck(bk, rng, output_size):
    x = bk.asarray(rng.standard_normal((2, 2, 7, 6)))
    report = gradcheck_module(AdaptiveAvgPool2d(output_size), x)
    assert report.max_error < 1e-6, report


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_adaptive_avg_pool_agrees_with_numpy_and_keeps_dtype(bk, rng, dtype):
    x_host = rng.standard_normal((2, 3, 9, 10)).astype(dtype)
    reference = AdaptiveAvgPool2d((4, 3))
    y_ref = reference(x_host)
    dy_host = rng.standard_normal(y_ref.shape).astype(dtype)
    dx_ref = reference.backward(dy_host)
    layer = AdaptiveAvgPool2d((4, 3))
    x, dy = bk.asarray(x_host), bk.asarray(dy_host)
    y = layer(x)
    dx = layer.backward(dy)
    for got, want in ((y, y_ref), (dx, dx_ref)):
        assert bk.owns(got) and got.dtype == dtype
        np.testing.assert_array_equal(bk.numpy(got), want)
    np.testing.assert_array_equal(bk.numpy(x), x_host)
    np.testing.assert_array_equal(bk.numpy(dy), dy_host)


@pytest.mark.parametrize("output_size, error, match", [
    (0, ValueError, r"output_size must be >= 1, got 0"),
    ((2, -1), ValueError, r"output_size must be >= 1, got \(2, -1\)"),
    ((1, 2, 3), TypeError, r"output_size must be an int or a pair of ints \(or None"),
    (1.5, TypeError, r"output_size must be an int .*, got 1.5"),
    (True, TypeError, r"output_size must be an int .*, got True"),
    ("1", TypeError, r"output_size must be an int .*, got '1'"),
    (None, TypeError, r"output_size must be an int .*, got None"),
])
def test_adaptive_avg_pool_bad_arguments(output_size, error, match):
    where = rf"AdaptiveAvgPool2d\(output_size={re.escape(repr(output_size))}\): "
    with pytest.raises(error, match=where + match):
        AdaptiveAvgPool2d(output_size)


def test_adaptive_avg_pool_bad_inputs(rng):
    layer = AdaptiveAvgPool2d(1)
    where = r"AdaptiveAvgPool2d\(output_size=1\)"
    with pytest.raises(ValueError, match=where + r": expected x of rank 3 \(C, H, W\) or 4 "
                                                 r"\(N, C, H, W\), got x of shape \(4, 4\)"):
        layer(rng.standard_normal((4, 4)))
    with pytest.raises(TypeError, match=where + r": expected a float32 or float64 x"):
        layer(np.ones((1, 1, 4, 4), dtype=np.int64))
    with pytest.raises(ValueError, match=where + r": backward called before forward"):
        layer.backward(rng.standard_normal((1, 1, 1, 1)))
    y = layer(rng.standard_normal((2, 3, 4, 5)))
    assert y.shape == (2, 3, 1, 1)
    with pytest.raises(ValueError, match=where + r": expected dy of shape \(2, 3, 1, 1\)"):
        layer.backward(rng.standard_normal((2, 3)))
    with pytest.raises(TypeError, match=where + r": arrays from two devices"):
        layer.backward(strict_cupy.asarray(rng.standard_normal((2, 3, 1, 1))))
