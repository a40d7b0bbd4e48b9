"""Dropout and Dropout2d: exact inverted scaling, the same mask forward and backward, mask
statistics, whole-channel masks, evaluation identity, seeding, gradients, bad inputs."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given

from minifcn import backend
from minifcn.functional.dropout import dropout2d_forward, dropout_backward, dropout_forward
from minifcn.gradcheck import gradcheck_module
from minifcn.nn.dropout import Dropout, Dropout2d
from minifcn.testing.strategies import seeds


def nonzero_input(rng, shape, dtype="float32"):
    """Values away from 0, so that a zero in the output can only be a dropped value."""
    signs = rng.choice([-1.0, 1.0], size=shape)
    return (signs * rng.uniform(0.5, 2.0, size=shape)).astype(dtype)


def kept_scaled(x, mask, p):
    """``x * mask / (1 - p)`` computed as PyTorch does it: the mask is scaled in x's dtype."""
    one = x.dtype.type(1.0)
    return x * (mask.astype(x.dtype) * (one / x.dtype.type(1.0 - p)))


# --- the functional pair, with injected masks (the same on NumPy and on the stand-in) ------

@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("p", [0.0, 0.3, 0.5])
def test_injected_mask_gives_exact_scaling(bk, rng, dtype, p):
    x = nonzero_input(rng, (2, 3, 4, 5), dtype)
    dy = rng.standard_normal(x.shape).astype(dtype)
    mask = rng.random(x.shape) >= 0.5
    y, cache = dropout_forward(bk.asarray(x), p, True, mask=bk.asarray(mask))
    dx = dropout_backward(bk.asarray(dy), cache)
    assert bk.owns(y) and bk.owns(dx) and y.dtype == dtype and dx.dtype == dtype
    np.testing.assert_array_equal(bk.numpy(y), kept_scaled(x, mask, p))
    np.testing.assert_array_equal(bk.numpy(dx), kept_scaled(dy, mask, p))


def test_injected_channel_mask(bk, rng):
    x = nonzero_input(rng, (3, 4, 5, 2))
    dy = rng.standard_normal(x.shape).astype("float32")
    mask = rng.random((3, 4, 1, 1)) >= 0.5
    y, cache = dropout2d_forward(bk.asarray(x), 0.4, True, mask=bk.asarray(mask))
    dx = dropout_backward(bk.asarray(dy), cache)
    np.testing.assert_array_equal(bk.numpy(y), kept_scaled(x, mask, 0.4))
    np.testing.assert_array_equal(bk.numpy(dx), kept_scaled(dy, mask, 0.4))


def test_functional_eval_is_the_identity(bk, rng):
    x = bk.asarray(nonzero_input(rng, (2, 3, 4, 4)))
    for forward in (dropout_forward, dropout2d_forward):
        y, cache = forward(x, 0.5, False)
        assert y is x and cache is None
        dy = bk.asarray(np.ones((2, 3, 4, 4), dtype="float32"))
        assert dropout_backward(dy, cache) is dy


@pytest.mark.parametrize("mask_shape, dtype, error, match", [
    ((2, 3, 4, 4), "float32", TypeError, r"dropout_forward: mask must be a boolean array"),
    ((2, 3, 2, 4), "bool", ValueError, r"mask of shape \(2, 3, 2, 4\) does not broadcast to "
                                       r"x of shape \(2, 3, 4, 4\)"),
    ((3, 4, 4), "bool", ValueError, r"does not broadcast"),
])
def test_functional_refuses_a_bad_mask(bk, mask_shape, dtype, error, match):
    x = bk.asarray(np.ones((2, 3, 4, 4), dtype="float32"))
    with pytest.raises(error, match=match):
        dropout_forward(x, 0.5, True, mask=bk.asarray(np.ones(mask_shape, dtype=dtype)))


def test_functional_channel_dropout_needs_a_channel_mask(bk):
    x = bk.asarray(np.ones((2, 3, 4, 4), dtype="float32"))
    with pytest.raises(ValueError, match=r"dropout2d_forward: expected a mask of shape "
                                         r"\(2, 3, 1, 1\)"):
        dropout2d_forward(x, 0.5, True, mask=bk.asarray(np.ones((2, 3, 4, 4), dtype=bool)))
    with pytest.raises(ValueError, match=r"dropout2d_forward: expected x of rank 4"):
        dropout2d_forward(bk.asarray(np.ones((3, 4, 4), dtype="float32")), 0.5, True)


def test_functional_refuses_a_mask_on_another_device(bk):
    if bk.name == "numpy":
        pytest.skip("needs a second device")
    x = bk.asarray(np.ones((2, 3), dtype="float32"))
    with pytest.raises(TypeError, match="arrays from two devices"):
        dropout_forward(x, 0.5, True, mask=np.ones((2, 3), dtype=bool))


# --- the layers ---------------------------------------------------------------------------

@pytest.mark.parametrize("layer", [Dropout, Dropout2d])
@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_training_scales_exactly_and_backward_reuses_the_mask(bk, rng, layer, dtype):
    x = nonzero_input(rng, (2, 8, 5, 6), dtype)
    dy = rng.standard_normal(x.shape).astype(dtype)
    drop = layer(0.3)
    y = drop(bk.asarray(x))
    assert bk.owns(y) and y.dtype == dtype
    y = bk.numpy(y)
    mask = y != 0.0  # x has no zeros: the zeros of y are the dropped values
    assert 0 < mask.sum() < mask.size
    np.testing.assert_array_equal(y, kept_scaled(x, mask, 0.3))
    dx = drop.backward(bk.asarray(dy))
    assert bk.owns(dx) and dx.dtype == dtype
    np.testing.assert_array_equal(bk.numpy(dx), kept_scaled(dy, mask, 0.3))


@pytest.mark.parametrize("p", [0.2, 0.5, 0.8])
def test_fraction_kept_is_one_minus_p(bk, p):
    """Within 5 binomial standard deviations (a false alarm about once in 3.5 million)."""
    for layer, shape, draws in [(Dropout, (4, 8, 32, 32), 4 * 8 * 32 * 32),
                                (Dropout2d, (64, 64, 2, 2), 64 * 64)]:
        y = bk.numpy(layer(p)(bk.asarray(np.ones(shape, dtype="float32"))))
        kept = (y != 0.0).mean()
        assert abs(kept - (1.0 - p)) < 5.0 * np.sqrt(p * (1.0 - p) / draws), (layer, kept)


def test_dropout2d_zeroes_whole_channels(bk, rng):
    x = nonzero_input(rng, (8, 16, 5, 7))
    y = bk.numpy(Dropout2d(0.5)(bk.asarray(x)))
    zero = y == 0.0
    per_map = zero.reshape(8, 16, -1)
    assert np.all(per_map.all(axis=2) | ~per_map.any(axis=2))  # each map all or nothing
    assert 0 < zero.mean() < 1
    per_map = (bk.numpy(Dropout(0.5)(bk.asarray(x))) == 0.0).reshape(8, 16, -1)
    assert not np.all(per_map.all(axis=2) | ~per_map.any(axis=2))  # Dropout: element-wise


@pytest.mark.parametrize("layer", [Dropout, Dropout2d])
def test_eval_and_p_zero_are_the_identity(bk, rng, layer):
    x = bk.asarray(nonzero_input(rng, (2, 3, 4, 4)))
    dy = bk.asarray(rng.standard_normal((2, 3, 4, 4)).astype("float32"))
    for drop in (layer(0.5).eval(), layer(0.0)):
        np.testing.assert_array_equal(bk.numpy(drop(x)), bk.numpy(x))
        np.testing.assert_array_equal(bk.numpy(drop.backward(dy)), bk.numpy(dy))


@given(seed=seeds)
def test_the_same_seed_gives_the_same_masks(bk, seed):
    x = bk.asarray(np.ones((2, 4, 6, 6), dtype="float32"))
    runs = []
    for _ in range(2):
        backend.manual_seed(seed)
        element, channel = Dropout(0.5), Dropout2d(0.5)  # seeded from the seed source
        runs.append([bk.numpy(element(x)), bk.numpy(element(x)), bk.numpy(channel(x))])
    for first, second in zip(*runs, strict=True):
        np.testing.assert_array_equal(first, second)
    assert not np.array_equal(runs[0][0], runs[0][1])  # successive masks differ


def test_an_explicit_generator_fixes_the_masks(bk):
    x = bk.asarray(np.ones((2, 4, 6, 6), dtype="float32"))
    first = Dropout(0.5, generator=backend.Generator(3))(x)
    second = Dropout(0.5, generator=backend.Generator(3))(x)
    np.testing.assert_array_equal(bk.numpy(first), bk.numpy(second))


def test_leaves_inputs_alone(bk, rng):
    x, dy = nonzero_input(rng, (2, 3, 4, 4)), rng.standard_normal((2, 3, 4, 4)).astype("float32")
    x_dev, dy_dev = bk.asarray(x.copy()), bk.asarray(dy.copy())
    drop = Dropout(0.5)
    drop(x_dev)
    drop.backward(dy_dev)
    np.testing.assert_array_equal(bk.numpy(x_dev), x)
    np.testing.assert_array_equal(bk.numpy(dy_dev), dy)


def test_any_rank_for_element_wise_dropout(bk, rng):
    x = nonzero_input(rng, (50, 40))
    y = bk.numpy(Dropout(0.5)(bk.asarray(x)))
    np.testing.assert_array_equal(y, kept_scaled(x, y != 0.0, 0.5))


@pytest.mark.parametrize("layer", [Dropout, Dropout2d])
def test_gradcheck(bk, rng, layer):
    class FixedMask(layer):
        """Re-seeds before every forward: the repeated forwards of gradcheck see one mask."""

        def forward(self, x):
            self.generator = backend.Generator(7)
            return super().forward(x)

    x = nonzero_input(rng, (2, 3, 3, 4), "float64")
    report = gradcheck_module(FixedMask(0.4), bk.asarray(x))
    assert report.max_error < 1e-6, report


def test_repr():
    assert repr(Dropout()) == "Dropout(p=0.5, inplace=False)"
    assert repr(Dropout2d(0.25)) == "Dropout2d(p=0.25, inplace=False)"


# --- bad arguments and inputs -------------------------------------------------------------

@pytest.mark.parametrize("layer", [Dropout, Dropout2d])
@pytest.mark.parametrize("kwargs, error, match", [
    (dict(p=1.5), ValueError, r"LAYER\(p=1.5\): p must be in \[0, 1\], got 1.5"),
    (dict(p=-0.1), ValueError, r"LAYER\(p=-0.1\): p must be in \[0, 1\]"),
    (dict(p="0.5"), TypeError, r"LAYER\(p='0.5'\): p must be a number in \[0, 1\]"),
    (dict(p=0.5, inplace=True), ValueError, r"LAYER\(p=0.5\): inplace=True is not supported"),
    (dict(p=0.5, inplace=0), TypeError, r"LAYER\(p=0.5\): inplace must be True or False"),
    (dict(p=0.5, generator=42), TypeError, r"LAYER\(p=0.5\): generator must be a "
                                           r"minifcn.backend.Generator or None, got int"),
])
def test_bad_arguments(layer, kwargs, error, match):
    with pytest.raises(error, match=match.replace("LAYER", layer.__name__)):
        layer(**kwargs)


def test_bad_inputs(bk):
    with pytest.raises(TypeError, match=r"Dropout\(p=0.5\): expected a float32 or float64 x"):
        Dropout()(bk.asarray(np.ones((2, 3), dtype="int32")))
    with pytest.raises(TypeError, match=r"Dropout\(p=0.5\): expected x to be an array"):
        Dropout()([1.0, 2.0])
    with pytest.raises(ValueError, match=r"Dropout2d\(p=0.5\): expected x of rank 4"):
        Dropout2d()(bk.asarray(np.ones((3, 4, 4), dtype="float32")))


def test_bad_backward(bk):
    drop = Dropout2d(0.5)
    dy = bk.asarray(np.ones((2, 3, 4, 4), dtype="float32"))
    with pytest.raises(ValueError, match=r"Dropout2d\(p=0.5\): backward called before forward"):
        drop.backward(dy)
    drop(bk.asarray(np.ones((2, 3, 4, 4), dtype="float32")))
    with pytest.raises(ValueError, match=r"expected dy of shape \(2, 3, 4, 4\)"):
        drop.backward(bk.asarray(np.ones((2, 3, 4, 1), dtype="float32")))
    drop.backward(dy)
    with pytest.raises(ValueError, match="backward called before forward"):
        drop.backward(dy)


@pytest.mark.torch
@pytest.mark.parametrize("p, training", [(0.5, True), (0.0, True), (1.0, True), (0.5, False)])
def test_a_0d_input_gives_0d_arrays_as_torch(bk, torch, p, training):
    """A 0-d x gives a 0-d array y and dx, not the NumPy scalar NumPy's arithmetic answers
    with; where the result is not random (p = 0, p = 1, evaluation), PyTorch's values."""
    x, dy = np.array(-1.5), np.array(0.75)
    ours = Dropout(p).train(training)
    y = ours(bk.asarray(x))
    dx = ours.backward(bk.asarray(dy))
    assert bk.owns(y) and bk.owns(dx) and y.shape == dx.shape == ()
    if training and p == 0.5:
        kept = bk.numpy(y) != 0.0
        assert bk.numpy(y) == (-3.0 if kept else 0.0) and bk.numpy(dx) == (1.5 if kept else 0.0)
        return
    xt = torch.from_numpy(x).requires_grad_()
    yt = torch.nn.functional.dropout(xt, p=p, training=training)
    yt.backward(torch.from_numpy(dy))
    np.testing.assert_array_equal(bk.numpy(y), yt.detach().numpy())
    np.testing.assert_array_equal(bk.numpy(dx), xt.grad.numpy())


@pytest.mark.parametrize("layer", [Dropout, Dropout2d])
def test_p_one_drops_everything_as_pytorch_does(bk, layer, torch):
    """p = 1 is accepted, as in PyTorch: y = x * 0 in training (a NaN or an infinity stays
    NaN, a negative value gives -0), zero gradients; the identity in evaluation."""
    x = np.full((2, 3, 2, 2), -2.0)
    x[0, 0, 0, :2] = (np.nan, np.inf)
    dropout = layer(p=1.0)
    with np.errstate(invalid="ignore"):  # inf * 0: NumPy warns where PyTorch is silent
        y = bk.numpy(dropout(bk.asarray(x)))
    functional = torch.nn.functional.dropout if layer is Dropout else (
        torch.nn.functional.dropout2d)
    expected = functional(torch.from_numpy(x), p=1.0, training=True).numpy()
    np.testing.assert_array_equal(y, expected)  # NaN where PyTorch's is, -0 elsewhere
    assert np.array_equal(np.signbit(y), np.signbit(expected))
    dx = bk.numpy(dropout.backward(bk.asarray(np.ones_like(x))))
    assert not dx.any()
    dropout.eval()
    assert np.array_equal(bk.numpy(dropout(bk.asarray(x))), x, equal_nan=True)
