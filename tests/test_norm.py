"""BatchNorm2d and batch_norm_forward/backward: statistics, running averages, gradients,
PyTorch parity (forward, dx, dweight, dbias, running stats, state_dict), bad inputs."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given

from minifcn import backend
from minifcn.functional.norm import batch_norm_forward
from minifcn.gradcheck import gradcheck_module
from minifcn.nn.norm import BatchNorm2d
from minifcn.testing import assert_gradients_accumulate
from minifcn.testing.strategies import nchw_shapes, seeds

# (affine, bias, track_running_stats): every combination PyTorch 2.13 accepts
# (bias=False only means something with affine=True).
FLAGS = [(True, True, True), (True, True, False), (True, False, True), (True, False, False),
         (False, True, True), (False, True, False)]


# The finite-difference step for the gradient checks. With the default 1e-6, rounding in
# the batch mean (x - mean cancels the channel's offset) reaches ~1e-9 of the objective's
# finite differences: up to 2e-6 relative error on entries near gradcheck's floor over
# 300 random problems. With 1e-5 the worst seen was 1.2e-7, and the truncation error
# (eps**2 times the third derivative) stays far below it.
GRADCHECK_EPS = 1e-5


def random_input(rng, shape, dtype="float64"):
    """Values with a per-channel offset and spread, so that the statistics matter.

    Each channel's noise is standardized first, so that its batch standard deviation is
    exactly the spread drawn (0.5 to 2). Three raw draws can land within 0.03 of each
    other (seed 972, (1, 3, 1, 3)); the normalization's curvature grows as 1 / std^3, and
    the central differences of a gradient check (eps 1e-5) were then 6e-6 off for a
    correct backward."""
    C = shape[1]
    offset = rng.uniform(-3.0, 3.0, size=(1, C, 1, 1))
    spread = rng.uniform(0.5, 2.0, size=(1, C, 1, 1))
    noise = rng.standard_normal(shape)
    if noise.size > C:  # more than one value per channel
        noise = (noise - noise.mean(axis=(0, 2, 3), keepdims=True)) / noise.std(
            axis=(0, 2, 3), keepdims=True)
    return (noise * spread + offset).astype(dtype)


def randomize(bn, rng):
    """Give ``bn`` random weight, bias and running statistics (via load_state_dict)."""
    C = bn.num_features
    values = {"weight": rng.uniform(0.5, 2.0, C), "bias": rng.standard_normal(C),
              "running_mean": rng.standard_normal(C), "running_var": rng.uniform(0.5, 2.0, C),
              "num_batches_tracked": np.array(5, dtype=np.int64)}
    bn.load_state_dict({key: values[key] for key in bn.state_dict()})
    return bn


def torch_twin(torch, bn):
    """A float64 torch.nn.BatchNorm2d with ``bn``'s flags, mode and state."""
    twin = torch.nn.BatchNorm2d(bn.num_features, eps=bn.eps, momentum=bn.momentum,
                                affine=bn.affine, bias=bn.bias is not None,
                                track_running_stats=bn.track_running_stats,
                                dtype=torch.float64)
    twin.load_state_dict({key: torch.from_numpy(backend.to_numpy(value).copy())
                          for key, value in bn.state_dict().items()})
    return twin.train(bn.training)


def torch_step(torch, twin, x, dy):
    """Forward and backward through ``twin``: y, dx, dweight, dbias as NumPy arrays."""
    xt = torch.from_numpy(x).requires_grad_()
    twin.zero_grad()
    y = twin(xt)
    y.backward(torch.from_numpy(dy))

    def grad(param):
        return None if param is None else param.grad.numpy()

    return y.detach().numpy(), xt.grad.numpy(), grad(twin.weight), grad(twin.bias)


def step(bk, bn, x, dy):
    """Forward and backward through ``bn`` on ``bk``: y, dx, dweight, dbias as NumPy arrays."""
    bn.zero_grad()
    y = bn(bk.asarray(x))
    dx = bn.backward(bk.asarray(dy))
    assert bk.owns(y) and bk.owns(dx)
    assert y.dtype == x.dtype and dx.dtype == x.dtype

    def grad(param):  # a copy: on NumPy, bk.numpy returns the live .grad array itself
        return None if param is None else bk.numpy(param.grad).copy()

    return bk.numpy(y), bk.numpy(dx), grad(bn.weight), grad(bn.bias)


def assert_close_all(ours, theirs, tol=1e-9):
    for name, a, b in zip(("y", "dx", "dweight", "dbias"), ours, theirs, strict=True):
        assert (a is None) == (b is None), name
        if a is not None:
            np.testing.assert_allclose(a, b, rtol=tol, atol=tol, err_msg=name)


# --- what it computes ---------------------------------------------------------------------

@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_training_output_has_zero_mean_unit_variance_per_channel(bk, rng, dtype):
    x = random_input(rng, (4, 3, 8, 8), dtype)
    bn = BatchNorm2d(3, device=bk.device, dtype=dtype)
    y = bn(bk.asarray(x))
    assert bk.owns(y) and y.dtype == dtype and y.shape == x.shape
    y = bk.numpy(y).astype("float64")
    tol = 1e-5 if dtype == "float32" else 1e-12
    np.testing.assert_allclose(y.mean(axis=(0, 2, 3)), 0.0, atol=tol)
    eps_share = 1e-5 / x.astype("float64").var(axis=(0, 2, 3))  # var(y) = var / (var + eps)
    np.testing.assert_allclose(y.var(axis=(0, 2, 3)), 1.0 / (1.0 + eps_share), rtol=tol)


def test_float32_keeps_precision_with_a_large_offset(bk, rng):
    """The variance is taken from centered values: E[x^2] - E[x]^2 would lose every digit
    of a channel at 1000 +- 0.01 in float32."""
    x = (1000.0 + 0.01 * rng.standard_normal((4, 2, 16, 16))).astype("float32")
    dy = rng.standard_normal(x.shape).astype("float32")
    ours = step(bk, BatchNorm2d(2, device=bk.device), x, dy)
    exact = step(bk, BatchNorm2d(2, device=bk.device, dtype="float64"),
                 x.astype("float64"), dy.astype("float64"))
    np.testing.assert_allclose(ours[0], exact[0], rtol=0, atol=5e-3)  # y is O(1)
    np.testing.assert_allclose(ours[1], exact[1], rtol=0, atol=0.5)  # dx is O(100)


def test_eval_is_an_affine_map_of_the_running_statistics(bk, rng):
    bn = randomize(BatchNorm2d(3, eps=1e-3, dtype="float64"), rng).to(bk.device).eval()
    x = random_input(rng, (2, 3, 5, 4))
    y = bn(bk.asarray(x))
    w, b, mean, var = (bk.numpy(a).reshape(1, -1, 1, 1) for a in
                       (bn.weight.data, bn.bias.data, bn.running_mean, bn.running_var))
    scale = w / np.sqrt(var + 1e-3)
    np.testing.assert_allclose(bk.numpy(y), x * scale + (b - mean * scale), rtol=1e-12,
                               atol=1e-12)
    assert int(bn.num_batches_tracked) == 5  # evaluation leaves the statistics alone


def test_running_statistics_follow_the_momentum_rule(bk, rng):
    bn = BatchNorm2d(3, momentum=0.25, device=bk.device, dtype="float64")
    mean, var = np.zeros(3), np.ones(3)
    for _ in range(3):
        x = random_input(rng, (2, 3, 4, 5))
        bn(bk.asarray(x))
        mean = 0.75 * mean + 0.25 * x.mean(axis=(0, 2, 3))
        var = 0.75 * var + 0.25 * x.var(axis=(0, 2, 3), ddof=1)  # unbiased, as PyTorch
    np.testing.assert_allclose(bk.numpy(bn.running_mean), mean, rtol=1e-12)
    np.testing.assert_allclose(bk.numpy(bn.running_var), var, rtol=1e-12)
    assert int(bn.num_batches_tracked) == 3
    assert bn.num_batches_tracked.dtype == np.int64 and bk.owns(bn.num_batches_tracked)


def test_momentum_none_is_the_cumulative_average(bk, rng):
    bn = BatchNorm2d(2, momentum=None, device=bk.device, dtype="float64")
    batches = [random_input(rng, (2, 2, 3, 3)) for _ in range(4)]
    for x in batches:
        bn(bk.asarray(x))
    np.testing.assert_allclose(bk.numpy(bn.running_mean),
                               np.mean([x.mean(axis=(0, 2, 3)) for x in batches], axis=0),
                               rtol=1e-12)
    np.testing.assert_allclose(bk.numpy(bn.running_var),
                               np.mean([x.var(axis=(0, 2, 3), ddof=1) for x in batches],
                                       axis=0), rtol=1e-12)


def test_without_running_stats_eval_uses_the_batch(bk, rng):
    bn = BatchNorm2d(3, track_running_stats=False, device=bk.device, dtype="float64")
    assert bn.running_mean is None and bn.running_var is None
    assert bn.num_batches_tracked is None
    x = bk.asarray(random_input(rng, (2, 3, 4, 4)))
    y_train = bk.numpy(bn(x))
    y_eval = bk.numpy(bn.eval()(x))
    np.testing.assert_array_equal(y_eval, y_train)


def test_functional_is_stateless(bk, rng):
    x = bk.asarray(random_input(rng, (2, 3, 4, 4)))
    mean, var = bk.asarray(np.zeros(3)), bk.asarray(np.ones(3))
    _, cache = batch_norm_forward(x, None, None, mean, var, training=True, momentum=0.1,
                                  eps=1e-5)
    np.testing.assert_array_equal(bk.numpy(mean), 0.0)  # the inputs are not updated:
    np.testing.assert_array_equal(bk.numpy(var), 1.0)  # the new statistics are returned
    np.testing.assert_allclose(bk.numpy(cache.running_mean),
                               0.1 * bk.numpy(x).mean(axis=(0, 2, 3)), rtol=1e-12)


def test_backend_matches_numpy(bk, rng):
    x = random_input(rng, (2, 3, 6, 5), "float32")
    dy = rng.standard_normal(x.shape).astype("float32")

    def run(on):
        bn = randomize(BatchNorm2d(3), np.random.default_rng(7)).to(on.device)
        return [*step(on, bn, x, dy), on.numpy(bn.running_var), *step(on, bn.eval(), x, dy)]

    numpy_backend = type(bk)("numpy", np, "cpu")
    for ours, reference in zip(run(bk), run(numpy_backend), strict=True):
        np.testing.assert_array_equal(ours, reference)


def test_leaves_inputs_and_outputs_alone(bk, rng):
    """Neither x nor dy is written into, and y does not alias what backward reads."""
    x, dy = random_input(rng, (2, 3, 4, 4)), rng.standard_normal((2, 3, 4, 4))
    for affine in (True, False):
        bn = BatchNorm2d(3, affine=affine, device=bk.device, dtype="float64")
        x_dev, dy_dev = bk.asarray(x.copy()), bk.asarray(dy.copy())
        reference = step(bk, bn, x, dy)[1]
        y = bn(x_dev)
        y[...] = 0.0  # a later layer scribbling on y must not change dx
        dx = bn.backward(dy_dev)
        np.testing.assert_array_equal(bk.numpy(dx), reference)
        np.testing.assert_array_equal(bk.numpy(x_dev), x)
        np.testing.assert_array_equal(bk.numpy(dy_dev), dy)


def test_gradients_accumulate_and_frozen_parameters_stay_zero(bk, rng):
    x, dy = random_input(rng, (2, 3, 4, 4)), rng.standard_normal((2, 3, 4, 4))
    bn = BatchNorm2d(3, device=bk.device, dtype="float64")
    step(bk, bn, x, dy)  # outputs on the layer's backend, in its dtype
    assert_gradients_accumulate(bn, bk.asarray(x), bk.asarray(dy), rtol=1e-12, atol=1e-12)


def test_reset_parameters_restores_the_initial_state(bk, rng):
    bn = randomize(BatchNorm2d(3), rng).to(bk.device)
    bn.reset_parameters()
    initial = BatchNorm2d(3).state_dict()
    assert list(bn.state_dict()) == list(initial)
    for key, value in bn.state_dict().items():
        assert bk.owns(value)
        np.testing.assert_array_equal(bk.numpy(value), initial[key], err_msg=key)


def test_to_casts_statistics_but_not_the_counter(bk):
    bn = BatchNorm2d(4).to(device=bk.device, dtype="float64")
    assert bn.running_mean.dtype == np.float64 and bn.weight.dtype == np.float64
    assert bn.num_batches_tracked.dtype == np.int64
    assert all(bk.owns(array) for array in bn.state_dict().values())


# --- gradients ----------------------------------------------------------------------------

@pytest.mark.parametrize("training", [True, False], ids=["train", "eval"])
@pytest.mark.parametrize("affine", [True, False], ids=["affine", "plain"])
def test_gradcheck(bk, rng, training, affine):
    bn = randomize(BatchNorm2d(3, affine=affine, dtype="float64"), rng).to(bk.device)
    bn.train(training)
    report = gradcheck_module(bn, bk.asarray(random_input(rng, (2, 3, 3, 4))),
                              eps=GRADCHECK_EPS)
    assert report.max_error < 1e-6, report


@given(shape=nchw_shapes(), seed=seeds)
def test_gradcheck_random_shapes(bk, shape, seed):
    rng = np.random.default_rng(seed)
    bn = randomize(BatchNorm2d(shape[1], dtype="float64"), rng).to(bk.device)
    report = gradcheck_module(bn, bk.asarray(random_input(rng, shape)), eps=GRADCHECK_EPS,
                              seed=seed % 1000)
    assert report.max_error < 1e-6, report


# --- PyTorch parity -----------------------------------------------------------------------

@pytest.mark.torch
@pytest.mark.parametrize("affine, bias, track", FLAGS)
@pytest.mark.parametrize("momentum", [0.1, None])
def test_training_matches_torch(bk, rng, torch, affine, bias, track, momentum):
    bn = randomize(BatchNorm2d(3, momentum=momentum, affine=affine, track_running_stats=track,
                               dtype="float64", bias=bias), rng).to(bk.device)
    twin = torch_twin(torch, bn)
    for _ in range(3):  # several steps: the running statistics and the counter too
        x, dy = random_input(rng, (3, 3, 5, 4)), rng.standard_normal((3, 3, 5, 4))
        assert_close_all(step(bk, bn, x, dy), torch_step(torch, twin, x, dy))
    ours, theirs = bn.state_dict(), twin.state_dict()
    assert list(ours) == list(theirs)
    for key in ours:
        np.testing.assert_allclose(bk.numpy(ours[key]), theirs[key].numpy(), rtol=1e-9,
                                   atol=1e-12, err_msg=key)


@pytest.mark.torch
@pytest.mark.parametrize("affine, bias, track", FLAGS)
def test_eval_matches_torch(bk, rng, torch, affine, bias, track):
    bn = randomize(BatchNorm2d(4, eps=1e-3, affine=affine, track_running_stats=track,
                               dtype="float64", bias=bias), rng).to(bk.device).eval()
    x, dy = random_input(rng, (2, 4, 3, 5)), rng.standard_normal((2, 4, 3, 5))
    assert_close_all(step(bk, bn, x, dy), torch_step(torch, torch_twin(torch, bn), x, dy))


@pytest.mark.torch
@pytest.mark.parametrize("affine, bias, track", FLAGS)
def test_state_dict_keys_and_repr_match_torch(torch, affine, bias, track):
    bn = BatchNorm2d(5, momentum=None, affine=affine, bias=bias, track_running_stats=track)
    twin = torch.nn.BatchNorm2d(5, momentum=None, affine=affine, bias=bias,
                                track_running_stats=track)
    assert list(bn.state_dict()) == list(twin.state_dict())
    assert [name for name, _ in bn.named_parameters()] == [
        name for name, _ in twin.named_parameters()]
    for key, value in twin.state_dict().items():
        assert bn.state_dict()[key].dtype == value.numpy().dtype, key
        np.testing.assert_array_equal(bn.state_dict()[key], value.numpy(), err_msg=key)
    assert repr(bn) == repr(twin)


# --- bad arguments and inputs -------------------------------------------------------------

@pytest.mark.parametrize("kwargs, error, match", [
    (dict(num_features=0), ValueError, r"BatchNorm2d\(0\): num_features must be >= 1"),
    (dict(num_features=3.0), TypeError, r"num_features must be an int"),
    (dict(num_features=True), TypeError, r"num_features must be an int"),
    (dict(num_features=3, eps=-1e-5), ValueError, r"BatchNorm2d\(3\): eps must be >= 0"),
    (dict(num_features=3, eps="small"), TypeError, r"eps must be a number"),
    (dict(num_features=3, momentum=1.5), ValueError, r"momentum must be in \[0, 1\] or None"),
    (dict(num_features=3, momentum="0.1"), TypeError, r"momentum must be a number or None"),
    (dict(num_features=3, affine=1), TypeError, r"affine must be True or False"),
    (dict(num_features=3, track_running_stats=None), TypeError, r"track_running_stats must"),
    (dict(num_features=3, bias="yes"), TypeError, r"bias must be True or False"),
    (dict(num_features=3, dtype="int32"), ValueError, r"dtype must be float32 or float64"),
])
def test_bad_arguments(kwargs, error, match):
    with pytest.raises(error, match=match):
        BatchNorm2d(**kwargs)


@pytest.mark.parametrize("shape, dtype, error, match", [
    ((2, 4, 3, 3), "float32", ValueError, r"BatchNorm2d\(3\): expected x with 3 channels, "
                                          r"got x of shape \(2, 4, 3, 3\)"),
    ((2, 3, 3), "float32", ValueError, r"BatchNorm2d\(3\): expected x of rank 4"),
    ((2, 3, 3, 3), "int64", TypeError, r"BatchNorm2d\(3\): expected a float32 or float64 x"),
    ((2, 3, 3, 3), "float64", TypeError, r"x has dtype float64 but the layer's parameters"),
    ((1, 3, 1, 1), "float32", ValueError, r"BatchNorm2d\(3\): expected more than 1 value per "
                                          r"channel when training, got input of shape"),
])
def test_bad_inputs(bk, shape, dtype, error, match):
    bn = BatchNorm2d(3, device=bk.device)
    with pytest.raises(error, match=match):
        bn(bk.asarray(np.ones(shape, dtype=dtype)))
    assert int(bn.num_batches_tracked) == 0  # a refused batch is not counted


def test_a_single_value_per_channel_is_fine_in_eval(bk):
    bn = BatchNorm2d(3, device=bk.device).eval()
    assert bn(bk.asarray(np.ones((1, 3, 1, 1), dtype="float32"))).shape == (1, 3, 1, 1)
    bn_batch_stats = BatchNorm2d(3, track_running_stats=False, device=bk.device).eval()
    with pytest.raises(ValueError, match="more than 1 value per channel"):
        bn_batch_stats(bk.asarray(np.ones((1, 3, 1, 1), dtype="float32")))


def test_bad_backward(bk, rng):
    bn = BatchNorm2d(3, device=bk.device)
    dy = bk.asarray(np.ones((2, 3, 4, 4), dtype="float32"))
    with pytest.raises(ValueError, match=r"BatchNorm2d\(3\): backward called before forward"):
        bn.backward(dy)
    bn(bk.asarray(random_input(rng, (2, 3, 4, 4), "float32")))
    with pytest.raises(ValueError, match=r"BatchNorm2d\(3\): expected dy of shape "
                                         r"\(2, 3, 4, 4\) \(the forward output's\), got"):
        bn.backward(bk.asarray(np.ones((2, 3, 4, 5), dtype="float32")))
    with pytest.raises(TypeError, match=r"expected dy of dtype float32"):
        bn.backward(bk.asarray(np.ones((2, 3, 4, 4), dtype="float64")))
    bn.backward(dy)
    with pytest.raises(ValueError, match=r"backward called before forward \(or twice"):
        bn.backward(dy)


def test_input_on_another_device(bk, rng):
    if bk.name == "numpy":
        pytest.skip("needs a second device")
    bn = BatchNorm2d(3, device=bk.device)
    with pytest.raises(TypeError, match=r"BatchNorm2d\(3\): arrays from two devices"):
        bn(random_input(rng, (2, 3, 4, 4), "float32"))
