"""Linear and Flatten and their functional pairs: agreement with the definition (naive
loops), gradients, accumulation and frozen parameters, PyTorch parity (forward, gradients,
state_dict, repr, initial distribution), backends, bad inputs, summary."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st
from test_conv import assert_backend_gives_numpys_results, assert_close, assert_matches_torch

from minifcn import backend
from minifcn.functional import linear as F
from minifcn.gradcheck import gradcheck_module
from minifcn.models import summary
from minifcn.nn import AdaptiveAvgPool2d, Conv2d, Flatten, Linear, ReLU, Sequential
from minifcn.testing import assert_gradients_accumulate, strict_cupy
from minifcn.testing.strategies import LinearConfig, flatten_configs, linear_configs, seeds

# Linear is linear in x and in the weight: central differences have no truncation error, only
# rounding (about |L| * 1e-16 / eps), so a large step is the accurate one (as for Conv2d).
GRADCHECK_EPS = 1e-3


def problem(config: LinearConfig, seed: int, dtype="float64"):
    """Host arrays x (*, I), weight (O, I), bias (O,) for ``config``."""
    rng = np.random.default_rng(seed)
    x = rng.standard_normal(config.input_shape).astype(dtype)
    weight = rng.standard_normal((config.out_features, config.in_features)).astype(dtype)
    bias = rng.standard_normal(config.out_features).astype(dtype)
    return x, weight, bias


def make_linear(config: LinearConfig, weight, bias, device="cpu", dtype="float64") -> Linear:
    """The layer for ``config`` on ``device`` holding ``weight`` and ``bias`` (or no bias)."""
    layer = Linear(config.in_features, config.out_features, bias=bias is not None,
                   device=device, dtype=dtype)
    layer.load_state_dict({"weight": weight} if bias is None else
                          {"weight": weight, "bias": bias})
    return layer


# --- the definition ------------------------------------------------------------------------

@given(config=linear_configs(), seed=seeds, bias=st.booleans())
def test_linear_matches_the_naive_loops(config, seed, bias):
    x, weight, b = problem(config, seed)
    b = b if bias else None
    y, _ = F.linear_forward(x, weight, b)
    assert y.shape == (*config.leading, config.out_features)
    assert_close(y, F.linear_naive(x, weight, b), 1e-12)


def test_linear_naive_is_the_textbook_sum():
    """One case worked by hand: y = x W^T + b."""
    x = np.array([[1.0, 2.0], [3.0, -1.0]])
    weight = np.array([[1.0, 0.0], [2.0, 1.0], [0.5, -1.0]])
    bias = np.array([0.0, 1.0, -2.0])
    expected = np.array([[1.0, 5.0, -3.5], [3.0, 6.0, 0.5]])
    np.testing.assert_array_equal(F.linear_naive(x, weight, bias), expected)
    np.testing.assert_array_equal(F.linear_forward(x, weight, bias)[0], expected)


# --- gradients -----------------------------------------------------------------------------

@given(config=linear_configs(), seed=seeds, bias=st.booleans())
def test_linear_gradients_match_finite_differences(bk, config, seed, bias):
    x, weight, b = problem(config, seed)
    layer = make_linear(config, weight, b if bias else None, bk.device)
    report = gradcheck_module(layer, bk.asarray(x), eps=GRADCHECK_EPS, seed=seed % 1000)
    assert set(report.errors) == {"x", "weight"} | ({"bias"} if bias else set())
    assert report.max_error < 1e-6, report


def test_linear_gradients_are_the_matrix_products():
    """dx = dy W, dW = dy^T x and db = sum dy over every leading dimension, written out."""
    config = LinearConfig((2, 3), 4, 5)
    x, weight, b = problem(config, 0)
    dy = np.random.default_rng(1).standard_normal((2, 3, 5))
    _, cache = F.linear_forward(x, weight, b)
    dx, dweight, dbias = F.linear_backward(dy, cache)
    assert_close(dx, np.einsum("abo,oi->abi", dy, weight), 1e-12)
    assert_close(dweight, np.einsum("abo,abi->oi", dy, x), 1e-12)
    assert_close(dbias, dy.sum(axis=(0, 1)), 1e-12)


def test_linear_backward_accumulates_and_skips_frozen_parameters(bk):
    config = LinearConfig((4,), 3, 2)
    x, weight, b = problem(config, 0)
    dy = np.random.default_rng(1).standard_normal((4, 2))
    layer = make_linear(config, weight, b, bk.device)
    assert_gradients_accumulate(layer, bk.asarray(x), bk.asarray(dy), rtol=1e-12, atol=1e-12)
    assert layer._cache is None  # backward is once per forward


def test_linear_output_mask_skips_what_is_not_asked_for():
    x, weight, b = problem(LinearConfig((2,), 3, 4), 0)
    y, cache = F.linear_forward(x, weight, b)
    assert F.linear_backward(y, cache, output_mask=(False, False, False)) == (None,) * 3
    y, cache = F.linear_forward(x, weight, None)
    dx, dweight, dbias = F.linear_backward(y, cache, output_mask=(False, True, True))
    assert dx is None and dbias is None and dweight.shape == weight.shape


# --- Flatten -------------------------------------------------------------------------------

@given(config=flatten_configs(), seed=seeds)
def test_flatten_matches_torch(torch, bk, config, seed):
    shape, start_dim, end_dim = config
    x = np.random.default_rng(seed).standard_normal(shape)
    expected = torch.nn.Flatten(start_dim, end_dim)(torch.tensor(x)).numpy()
    layer = Flatten(start_dim, end_dim)
    y = layer(bk.asarray(x))
    assert bk.owns(y)
    assert y.shape == expected.shape
    np.testing.assert_array_equal(bk.numpy(y), expected)
    dy = np.random.default_rng(seed + 1).standard_normal(expected.shape)
    dx = layer.backward(bk.asarray(dy))
    assert bk.owns(dx)
    np.testing.assert_array_equal(bk.numpy(dx), dy.reshape(shape))  # the reshape back


@pytest.mark.parametrize("shape, start_dim, end_dim, expected", [
    ((2, 3, 4, 5), 1, -1, (2, 60)),
    ((2, 3, 4, 5), 0, -1, (120,)),
    ((2, 3, 4, 5), 1, 2, (2, 12, 5)),
    ((2, 3, 4, 5), -3, -2, (2, 12, 5)),
    ((2, 3, 4, 5), 2, 2, (2, 3, 4, 5)),
    ((7,), 0, -1, (7,)),
    ((), 0, -1, (1,)),
])
def test_flatten_shape_follows_torch_flatten(shape, start_dim, end_dim, expected):
    assert F.flatten_shape(shape, start_dim, end_dim) == expected


def test_flatten_gradients_match_finite_differences(bk):
    x = np.random.default_rng(0).standard_normal((2, 3, 2, 2))
    report = gradcheck_module(Flatten(), bk.asarray(x))
    assert report.max_error < 1e-6, report


def test_flatten_keeps_each_sample_in_row_major_order():
    """Flatten then Linear reads feature c*H*W + h*W + w: the order convolutionalize needs."""
    x = np.arange(2 * 3 * 2 * 2, dtype=np.float64).reshape(2, 3, 2, 2)
    y = Flatten()(x)
    assert y[1, 2 * 4 + 1 * 2 + 0] == x[1, 2, 1, 0]


# --- PyTorch parity ------------------------------------------------------------------------

@pytest.mark.torch
@given(config=linear_configs(), seed=seeds, bias=st.booleans())
def test_linear_matches_torch(torch, bk, config, seed, bias):
    """torch's state_dict loads unchanged; y, dx, dweight, dbias agree to 1e-9 in float64."""
    theirs = torch.nn.Linear(config.in_features, config.out_features, bias=bias,
                             dtype=torch.float64)
    ours = Linear(config.in_features, config.out_features, bias=bias, device=bk.device,
                  dtype="float64")
    ours.load_state_dict({k: v.numpy() for k, v in theirs.state_dict().items()})
    x = np.random.default_rng(seed).standard_normal(config.input_shape)
    assert_matches_torch(torch, bk, ours, theirs, x)


@pytest.mark.torch
@pytest.mark.parametrize("args, kwargs", [((3, 16), {}), ((20, 1), {"bias": False})])
def test_linear_parameters_and_repr_match_torch(torch, args, kwargs):
    ours, theirs = Linear(*args, **kwargs), torch.nn.Linear(*args, **kwargs)
    assert repr(ours) == repr(theirs)
    assert list(ours.state_dict()) == list(theirs.state_dict())
    assert [tuple(v.shape) for v in ours.state_dict().values()] == \
        [tuple(v.shape) for v in theirs.state_dict().values()]
    assert ours.weight.dtype == np.float32
    assert repr(Flatten(0, -2)) == repr(torch.nn.Flatten(0, -2))


def ks_distance(a: np.ndarray, b: np.ndarray) -> float:
    """The two-sample Kolmogorov-Smirnov statistic: the largest gap between the empirical
    distribution functions of ``a`` and ``b``."""
    points = np.concatenate([a, b])
    cdf_a = np.searchsorted(np.sort(a), points, side="right") / a.size
    cdf_b = np.searchsorted(np.sort(b), points, side="right") / b.size
    return float(np.abs(cdf_a - cdf_b).max())


@pytest.mark.torch
def test_default_init_is_torchs_distribution(torch):
    """PyTorch's default: weight and bias ~ U(-1/sqrt(in_features), 1/sqrt(in_features)). In
    and out features differ by 8x, so a fan taken from the wrong dimension would show."""
    torch.manual_seed(0)
    theirs = torch.nn.Linear(512, 64)
    ours = Linear(512, 64, generator=backend.Generator(0))
    bound = 1.0 / np.sqrt(512)
    ours_w, theirs_w = ours.weight.data.ravel(), theirs.weight.detach().numpy().ravel()
    for values in (ours_w, ours.bias.data):
        assert values.dtype == np.float32
        assert np.abs(values).max() <= bound
    # 32768 draws each: the largest is within 0.1% of the bound, and the two samples come
    # from one distribution (a KS distance of 0.03 has probability < 1e-6 if they do; a
    # bound off by a factor of 2 gives about 0.5).
    assert np.abs(ours_w).max() > 0.999 * bound
    assert ks_distance(ours_w, theirs_w) < 0.03
    theirs_b = theirs.bias.detach().numpy()
    assert np.abs(theirs_b).max() <= bound and np.abs(ours.bias.data).max() > 0.5 * bound


def test_init_follows_the_generator_on_every_device(bk):
    a = Linear(5, 3, generator=backend.Generator(5), device=bk.device)
    b = Linear(5, 3, generator=backend.Generator(5))
    assert bk.owns(a.weight.data) and bk.owns(a.weight.grad) and bk.owns(a.bias.data)
    np.testing.assert_array_equal(bk.numpy(a.weight.data), b.weight.data)
    np.testing.assert_array_equal(bk.numpy(a.bias.data), b.bias.data)
    backend.manual_seed(3)
    c = Linear(5, 3)
    backend.manual_seed(3)
    np.testing.assert_array_equal(Linear(5, 3).weight.data, c.weight.data)
    assert not np.array_equal(b.weight.data, Linear(5, 3).weight.data)
    assert Linear(5, 3, dtype="float64").weight.dtype == np.float64


# --- backends ------------------------------------------------------------------------------

@pytest.mark.parametrize("dtype", ["float32", "float64"])
@given(config=linear_configs(), seed=seeds)
def test_every_backend_gives_numpys_results(bk, dtype, config, seed):
    """Same numbers as NumPy, arrays of the backend and the dtype, inputs left untouched."""
    x, weight, b = problem(config, seed, dtype)
    reference = make_linear(config, weight, b, dtype=dtype)
    dy = np.random.default_rng(seed + 1).standard_normal(reference(x).shape).astype(dtype)
    layer = make_linear(config, weight, b, bk.device, dtype)
    assert_backend_gives_numpys_results(bk, reference, layer, x, dy)


def test_linear_naive_runs_on_every_backend(bk):
    x, weight, b = problem(LinearConfig((2, 3), 4, 2), 0)
    y = F.linear_naive(*map(bk.asarray, (x, weight, b)))
    assert bk.owns(y)
    assert_close(bk.numpy(y), F.linear_naive(x, weight, b), 1e-15)


# --- summary -------------------------------------------------------------------------------

@pytest.mark.parametrize("pool", [False, True])
def test_summary_lists_flatten_and_linear(pool):
    """A classifier's tail: (global average pooling,) flatten, fully connected."""
    features = 4 if pool else 4 * 3 * 3
    tail = [AdaptiveAvgPool2d(1)] if pool else []
    model = Sequential(Conv2d(3, 4, 3, stride=2), ReLU(), *tail, Flatten(),
                       Linear(features, 5))
    table = summary(model, (2, 3, 7, 7))
    assert [row.kind for row in table.rows] == \
        ["Conv2d", "ReLU", *(["AdaptiveAvgPool2d"] if pool else []), "Flatten", "Linear"]
    assert [row.output_shape for row in table.rows][-2:] == [(2, features), (2, 5)]
    assert table.rows[-1].params == features * 5 + 5
    assert table.total_params == 4 * 3 * 9 + 4 + features * 5 + 5
    assert "Linear" in str(table)


# --- bad arguments and inputs --------------------------------------------------------------

LINEAR = r"Linear\(3->16\)"


@pytest.mark.parametrize("make, error, match", [
    (lambda: Linear(0, 16), ValueError, r"Linear\(0->16\): in_features must be >= 1, got 0"),
    (lambda: Linear(3, 2.5), TypeError, r"Linear\(3->2.5\): out_features must be an int"),
    (lambda: Linear(3, True), TypeError, r"out_features must be an int, got True"),
    (lambda: Linear(3, 16, bias=1), TypeError, LINEAR + r": bias must be True or False"),
    (lambda: Linear(3, 16, dtype="int32"), ValueError, r"dtype must be float32 or float64"),
    (lambda: Flatten(1.0), TypeError, r"Flatten\(start_dim=1.0, end_dim=-1\): start_dim must"),
    (lambda: Flatten(1, None), TypeError, r"end_dim must be an int, got None"),
])
def test_bad_arguments_are_refused(make, error, match):
    with pytest.raises(error, match=match):
        make()


@pytest.mark.parametrize("x, error, match", [
    (np.zeros((2, 4), np.float32), ValueError,
     r"expected x of shape \(\*, 3\) \(the features last\), got x of shape \(2, 4\)"),
    (np.zeros((2, 3, 1, 1), np.float32), ValueError, r"expected x of shape \(\*, 3\)"),
    (np.zeros((), np.float32), ValueError, r"expected x of shape \(\*, 3\) .* of shape \(\)"),
    (np.zeros((2, 3), np.int64), TypeError, r"expected a float32 or float64 x"),
    (np.zeros((2, 3), np.float64), TypeError, r"x has dtype float64 but the layer's"),
    ([[0.0, 0.0, 0.0]], TypeError, r"expected x to be an array, got list"),
])
def test_bad_linear_inputs_are_refused(x, error, match):
    with pytest.raises(error, match=LINEAR + ": " + match):
        Linear(3, 16)(x)


@pytest.mark.parametrize("start_dim, end_dim, shape, match", [
    (1, -1, (5,), r"start_dim=1 is out of range for x of rank 1 \(expected a dimension in "
                  r"\[-1, 0\]\)"),
    (0, 4, (2, 3, 4, 5), r"end_dim=4 is out of range for x of rank 4"),
    (-5, -1, (2, 3, 4, 5), r"start_dim=-5 is out of range"),
    (2, 1, (2, 3, 4, 5), r"start_dim=2 comes after end_dim=1 for x of rank 4"),
    (-1, 2, (2, 3, 4, 5), r"start_dim=-1 comes after end_dim=2"),
])
def test_bad_flatten_dims_are_refused(torch, start_dim, end_dim, shape, match):
    with pytest.raises((IndexError, RuntimeError)):  # PyTorch refuses them too
        torch.nn.Flatten(start_dim, end_dim)(torch.zeros(shape))
    where = rf"Flatten\(start_dim={start_dim}, end_dim={end_dim}\): "
    with pytest.raises(ValueError, match=where + match):
        Flatten(start_dim, end_dim)(np.zeros(shape, np.float32))


def test_bad_backward_calls_are_refused():
    for layer, x in [(Linear(3, 16), np.zeros((2, 3), np.float32)),
                     (Flatten(), np.zeros((2, 4, 2), np.float32))]:
        where = LINEAR if isinstance(layer, Linear) else r"Flatten\(start_dim=1, end_dim=-1\)"
        with pytest.raises(ValueError, match=where + r": backward called before forward"):
            layer.backward(np.zeros((2, 16), np.float32))
        y = layer(x)
        with pytest.raises(ValueError, match=where + r": expected dy of shape " +
                           rf"\({y.shape[0]}, {y.shape[1]}\) \(the forward output's\)"):
            layer.backward(np.zeros((3, y.shape[1]), np.float32))
        with pytest.raises(TypeError, match=where + r": expected dy of dtype float32"):
            layer.backward(np.zeros(y.shape))
        layer.backward(np.zeros(y.shape, np.float32))
        with pytest.raises(ValueError, match=where + r": backward called before forward"):
            layer.backward(np.zeros(y.shape, np.float32))


def test_mixed_devices_are_refused():
    layer = Linear(3, 16)
    x = np.zeros((2, 3), np.float32)
    with backend.use_gpu_module(strict_cupy):
        with pytest.raises(TypeError, match=LINEAR + r": arrays from two devices"):
            layer(strict_cupy.asarray(x))
        y = layer(x)
        with pytest.raises(TypeError, match=LINEAR + r": arrays from two devices"):
            layer.backward(strict_cupy.asarray(np.zeros(y.shape, np.float32)))
