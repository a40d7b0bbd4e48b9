"""ReLU and LeakyReLU: values and gradients (PyTorch parity, finite differences), the cached
sign, special values, any rank, bad inputs."""

from __future__ import annotations

import numpy as np
import pytest

from minifcn.functional.activation import relu_backward, relu_forward
from minifcn.gradcheck import gradcheck_module
from minifcn.nn.activation import LeakyReLU, ReLU

LAYERS = [(ReLU, {}), (LeakyReLU, {}), (LeakyReLU, {"negative_slope": 0.2}),
          (LeakyReLU, {"negative_slope": -1.5})]
LAYER_IDS = ["relu", "leaky", "leaky0.2", "leaky-1.5"]


def away_from_zero(rng, shape, dtype="float64"):
    """Values of both signs at least 0.1 from the kink at 0."""
    signs = rng.choice([-1.0, 1.0], size=shape)
    return (signs * rng.uniform(0.1, 2.0, size=shape)).astype(dtype)


def torch_twin(torch, layer):
    if isinstance(layer, LeakyReLU):
        return torch.nn.LeakyReLU(layer.negative_slope)
    return torch.nn.ReLU()


@pytest.mark.torch
@pytest.mark.parametrize("layer, kwargs", LAYERS, ids=LAYER_IDS)
def test_matches_torch(bk, rng, torch, layer, kwargs):
    """Random values, exact zeros (the gradient there is the negative side's) and infinities."""
    x = rng.standard_normal((2, 3, 4, 5))
    x.flat[:6] = [0.0, -0.0, np.inf, -np.inf, 1e-300, -1e-300]
    dy = rng.standard_normal(x.shape)
    ours = layer(**kwargs)
    y = ours(bk.asarray(x))
    dx = ours.backward(bk.asarray(dy))
    assert bk.owns(y) and bk.owns(dx) and y.dtype == np.float64 and dx.dtype == np.float64

    xt = torch.from_numpy(x).requires_grad_()
    yt = torch_twin(torch, ours)(xt)
    yt.backward(torch.from_numpy(dy))
    np.testing.assert_allclose(bk.numpy(y), yt.detach().numpy(), rtol=1e-9, atol=1e-9)
    np.testing.assert_allclose(bk.numpy(dx), xt.grad.numpy(), rtol=1e-9, atol=1e-9)


@pytest.mark.parametrize("layer, kwargs", LAYERS, ids=LAYER_IDS)
@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_values_and_gradients(bk, rng, layer, kwargs, dtype):
    """Against the definition, computed here with NumPy: on the stand-in too."""
    slope = kwargs.get("negative_slope", 0.01) if layer is LeakyReLU else 0.0
    x = rng.standard_normal((3, 4, 5)).astype(dtype)
    x.flat[:2] = 0.0
    dy = rng.standard_normal(x.shape).astype(dtype)
    ours = layer(**kwargs)
    y = ours(bk.asarray(x))
    dx = ours.backward(bk.asarray(dy))
    assert bk.owns(y) and bk.owns(dx) and y.dtype == dtype and dx.dtype == dtype
    positive = x > 0
    np.testing.assert_array_equal(bk.numpy(y), np.where(positive, x, x * x.dtype.type(slope)))
    np.testing.assert_array_equal(bk.numpy(dx),
                                  np.where(positive, dy, dy * dy.dtype.type(slope)))


@pytest.mark.parametrize("layer, kwargs", LAYERS, ids=LAYER_IDS)
def test_gradcheck(bk, rng, layer, kwargs):
    report = gradcheck_module(layer(**kwargs), bk.asarray(away_from_zero(rng, (2, 3, 4, 3))))
    assert report.max_error < 1e-6, report


@pytest.mark.parametrize("layer, kwargs", LAYERS, ids=LAYER_IDS)
def test_backward_uses_the_cached_sign_and_leaves_inputs_alone(bk, rng, layer, kwargs):
    x, dy = away_from_zero(rng, (2, 3, 4, 4)), rng.standard_normal((2, 3, 4, 4))
    reference = layer(**kwargs)
    reference(bk.asarray(x))
    expected = bk.numpy(reference.backward(bk.asarray(dy)))

    ours = layer(**kwargs)
    x_dev, dy_dev = bk.asarray(x.copy()), bk.asarray(dy.copy())
    ours(x_dev)
    x_dev[...] = -x_dev  # the caller reuses x's memory before backward
    np.testing.assert_array_equal(bk.numpy(ours.backward(dy_dev)), expected)
    np.testing.assert_array_equal(bk.numpy(dy_dev), dy)


@pytest.mark.torch
@pytest.mark.parametrize("layer, kwargs", LAYERS, ids=LAYER_IDS)
@pytest.mark.parametrize("value", [-1.5, 0.0, 2.5])
def test_a_0d_input_gives_0d_arrays_as_torch(bk, torch, layer, kwargs, value):
    """A 0-d x gives a 0-d array y and dx (PyTorch 2.13's module_db sample 'scalar'), not
    the NumPy scalar NumPy's ufuncs answer with, which no layer takes as its input."""
    x, dy = np.array(value), np.array(0.75)
    ours = layer(**kwargs)
    y = ours(bk.asarray(x))
    dx = ours.backward(bk.asarray(dy))
    assert bk.owns(y) and bk.owns(dx) and y.shape == dx.shape == ()
    assert bk.owns(layer(**kwargs)(y))  # the next layer takes it
    xt = torch.from_numpy(x).requires_grad_()
    yt = torch_twin(torch, ours)(xt)
    yt.backward(torch.from_numpy(dy))
    np.testing.assert_array_equal(bk.numpy(y), yt.detach().numpy())
    np.testing.assert_array_equal(bk.numpy(dx), xt.grad.numpy())


def test_functional_relu(bk):
    x = bk.asarray(np.array([-2.0, -0.0, 0.0, 3.0], dtype="float32"))
    y, mask = relu_forward(x)
    dx = relu_backward(bk.asarray(np.array([1.0, 2.0, 3.0, 4.0], dtype="float32")), mask)
    np.testing.assert_array_equal(bk.numpy(y), [0.0, 0.0, 0.0, 3.0])
    np.testing.assert_array_equal(bk.numpy(mask), [False, False, False, True])
    np.testing.assert_array_equal(bk.numpy(dx), [0.0, 0.0, 0.0, 4.0])


def test_repr():
    assert repr(ReLU()) == "ReLU()"
    assert repr(LeakyReLU()) == "LeakyReLU(negative_slope=0.01)"
    assert repr(LeakyReLU(0.2)) == "LeakyReLU(negative_slope=0.2)"


# --- bad arguments and inputs -------------------------------------------------------------

@pytest.mark.parametrize("make, error, match", [
    (lambda: ReLU(inplace=True), ValueError, r"ReLU\(\): inplace=True is not supported"),
    (lambda: ReLU(inplace="no"), TypeError, r"ReLU\(\): inplace must be True or False"),
    (lambda: LeakyReLU(0.1, inplace=True), ValueError,
     r"LeakyReLU\(negative_slope=0.1\): inplace=True is not supported"),
    (lambda: LeakyReLU("0.1"), TypeError, r"LeakyReLU: negative_slope must be a number"),
    (lambda: LeakyReLU(True), TypeError, r"LeakyReLU: negative_slope must be a number"),
])
def test_bad_arguments(make, error, match):
    with pytest.raises(error, match=match):
        make()


@pytest.mark.parametrize("layer, name", [(ReLU, r"ReLU\(\)"),
                                         (LeakyReLU, r"LeakyReLU\(negative_slope=0.01\)")])
def test_bad_inputs(bk, layer, name):
    with pytest.raises(TypeError, match=name + r": expected a float32 or float64 x, got dtype"):
        layer()(bk.asarray(np.ones((2, 3), dtype="int64")))
    with pytest.raises(TypeError, match=name + r": expected x to be an array, got list"):
        layer()([1.0, -1.0])
    act = layer()
    dy = bk.asarray(np.ones((2, 3), dtype="float32"))
    with pytest.raises(ValueError, match=name + r": backward called before forward"):
        act.backward(dy)
    act(bk.asarray(np.ones((2, 3), dtype="float32")))
    with pytest.raises(ValueError, match=name + r": expected dy of shape \(2, 3\)"):
        act.backward(bk.asarray(np.ones((3, 2), dtype="float32")))
    with pytest.raises(TypeError, match=name + r": expected dy of dtype float32"):
        act.backward(bk.asarray(np.ones((2, 3), dtype="float64")))
    act.backward(dy)
    with pytest.raises(ValueError, match="backward called before forward"):
        act.backward(dy)


def test_dy_on_another_device(bk, rng):
    if bk.name == "numpy":
        pytest.skip("needs a second device")
    for act in (ReLU(), LeakyReLU()):
        act(bk.asarray(away_from_zero(rng, (2, 3))))
        with pytest.raises(TypeError, match=f"{type(act).__name__}.*arrays from two devices"):
            act.backward(away_from_zero(rng, (2, 3)))
